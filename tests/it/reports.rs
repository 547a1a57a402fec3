//! Report formats of stored runs, rendered from a hand-built run by the library itself.
//!
//! Each format is checked by the kind of consumer that reads it: JSON by a JSON parser, JUnit by
//! an XML parser, SARIF by the official SARIF 2.1.0 schema; human text and Markdown by snapshot.

use std::collections::BTreeSet;

use steward::report::plan::Style;
use steward::report::run;
use steward::store::{
    Finding, FindingKind, ResultOutcome, ResultRecord, RunKind, RunRecord, Severity,
};

const MOTD_DIFF: &str = "--- /etc/motd\n+++ /etc/motd\n@@ -1,2 +1,2 @@\n welcome\n-managed by steward\n+edited by hand\n";

/// One result with everything absent but what a case sets.
fn result(node: &str, resource: &str, outcome: ResultOutcome) -> ResultRecord {
    ResultRecord {
        node: node.into(),
        resource: resource.into(),
        outcome,
        file: None,
        line: None,
        column: None,
        diff: None,
        change: None,
        message: None,
        duration_ms: 5,
        association: None,
        severity: Severity::Unspecified,
    }
}

/// Two nodes: `web1` with a drifted file (diff, file and line), a failed service (message, no
/// file), a skipped package and an unchanged file; `db1` with a changed package and an
/// unchanged file.
fn sample_run() -> RunRecord {
    let drifted = ResultRecord {
        file: Some("./site.yaml".into()),
        line: Some(7),
        column: Some(3),
        diff: Some(MOTD_DIFF.into()),
        duration_ms: 12,
        association: Some("baseline".into()),
        severity: Severity::High,
        ..result("web1", "file:/etc/motd", ResultOutcome::Drifted)
    };
    let failed = ResultRecord {
        message: Some("cannot read: systemctl exited with status 1".into()),
        duration_ms: 40,
        association: Some("baseline".into()),
        severity: Severity::Medium,
        ..result("web1", "service:nginx", ResultOutcome::Failed)
    };
    let skipped = ResultRecord {
        message: Some("skipped because service:nginx failed".into()),
        file: Some("site.yaml".into()),
        line: Some(15),
        column: Some(3),
        ..result("web1", "pkg:curl", ResultOutcome::Skipped)
    };
    let changed = ResultRecord {
        diff: Some("version: 15 → 16\n".into()),
        file: Some("db.yaml".into()),
        line: Some(4),
        column: Some(3),
        duration_ms: 900,
        ..result("db1", "pkg:postgresql", ResultOutcome::Changed)
    };
    RunRecord {
        id: "20260301T120000Z-0001".into(),
        kind: RunKind::Drift,
        started_at: "2026-03-01T12:00:00Z".into(),
        finished_at: "2026-03-01T12:00:02Z".into(),
        user: "ci".into(),
        project: "/srv/site".into(),
        documents_digest: "blake3:0123abcd".into(),
        results: vec![
            drifted,
            failed,
            skipped,
            result("web1", "file:/etc/hosts", ResultOutcome::Unchanged),
            changed,
            result("db1", "file:/etc/motd", ResultOutcome::Unchanged),
        ],
        status: steward::store::RunStatus::Complete,
    }
}

fn finding(id: i64, node: &str, resource: &str, kind: FindingKind, open: bool) -> Finding {
    Finding {
        id,
        node: node.into(),
        resource: resource.into(),
        kind,
        open,
        severity: Severity::High,
        first_seen: "2026-02-28T12:00:00Z".into(),
        last_seen: "2026-03-01T12:00:00Z".into(),
        count: 2,
        last_run: "20260301T120000Z-0001".into(),
        message: "content differs".into(),
        resolution: if open { None } else { Some("by hand".into()) },
        association: Some("web".into()),
    }
}

/// An open finding on a resource of the run, one on a resource the run did not see, and a
/// resolved one: only the first belongs in a report.
fn sample_findings() -> Vec<Finding> {
    vec![
        finding(1, "web1", "file:/etc/motd", FindingKind::Drift, true),
        finding(2, "web9", "file:/etc/motd", FindingKind::Drift, true),
        finding(3, "web1", "service:nginx", FindingKind::Failure, false),
    ]
}

#[test]
fn json_parses_and_has_the_fields() {
    let text = run::json(&sample_run(), &sample_findings());
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();

    assert_eq!(json["format_version"], "1");
    assert_eq!(json["kind"], "steward-run");
    assert_eq!(json["run_kind"], "drift");
    assert_eq!(json["id"], "20260301T120000Z-0001");
    for field in [
        "started_at",
        "finished_at",
        "user",
        "project",
        "documents_digest",
    ] {
        assert!(json[field].is_string(), "{field} missing");
    }
    let summary = &json["summary"];
    assert_eq!(
        [
            &summary["changed"],
            &summary["drifted"],
            &summary["failed"],
            &summary["skipped"],
            &summary["unchanged"]
        ],
        [1, 1, 1, 1, 2]
    );
    assert_eq!(summary["compliant"], false);

    let results = json["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    let keys: BTreeSet<&str> = results[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "node",
        "resource",
        "outcome",
        "file",
        "line",
        "column",
        "diff",
        "diff_cut_bytes",
        "action",
        "done",
        "reason",
        "message",
        "duration_ms",
        "association",
        "severity",
    ]
    .into();
    assert_eq!(keys, expected);
    assert_eq!(results[0]["outcome"], "drifted");
    assert_eq!(results[0]["severity"], "high");
    assert_eq!(results[0]["line"], 7);
    assert_eq!(results[0]["diff"], MOTD_DIFF);
    assert_eq!(results[1]["file"], serde_json::Value::Null);

    let compliance = json["compliance"].as_array().unwrap();
    let web1 = compliance
        .iter()
        .find(|c| c["node"] == "web1" && c["association"] == "baseline")
        .unwrap();
    assert_eq!(web1["status"], "NON_COMPLIANT");
    assert_eq!(web1["severity"], "high");
    assert_eq!(web1["noncompliant"], 2);
    let db1 = compliance.iter().find(|c| c["node"] == "db1").unwrap();
    assert_eq!(db1["compliant"], true);

    let findings = json["findings"].as_array().unwrap();
    assert_eq!(
        findings.len(),
        1,
        "only open findings on this run's resources"
    );
    assert_eq!(findings[0]["id"], 1);
    assert_eq!(findings[0]["kind"], "drift");
}

#[test]
fn human_text() {
    insta::assert_snapshot!(run::human(
        &sample_run(),
        &sample_findings(),
        Style::new(false)
    ));
}

#[test]
fn markdown_summary() {
    let text = run::markdown(&sample_run(), &sample_findings());
    assert!(text.contains("| web1 | 0 | 1 | 1 | 1 | 1 |"), "{text}");
    assert!(text.contains("| db1 | 1 | 0 | 0 | 0 | 1 |"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn markdown_stays_under_its_budget() {
    let big_diff: String = (0..5_000)
        .map(|i| format!("-old line {i}\n+new line {i}\n"))
        .collect();
    let mut record = sample_run();
    record.results = (0..40)
        .map(|i| ResultRecord {
            diff: Some(big_diff.clone()),
            ..result("web1", &format!("file:/etc/big{i}"), ResultOutcome::Drifted)
        })
        .collect();
    let text = run::markdown(&record, &[]);
    assert!(
        text.len() <= run::MAX_MARKDOWN_BYTES,
        "{} bytes",
        text.len()
    );
    assert!(text.contains("more lines cut._"));
    assert!(text.contains("_Report cut to fit: "));
    assert!(text.contains("| web1 | 0 | 40 | 0 | 0 | 0 |"));
}

/// (classname, name) of each test case with the given child element.
fn cases_with(doc: &roxmltree::Document<'_>, child: &str) -> BTreeSet<(String, String)> {
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .filter(|n| n.children().any(|c| c.has_tag_name(child)))
        .map(|n| {
            (
                n.attribute("classname").unwrap().to_string(),
                n.attribute("name").unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn junit_parses_with_failures_for_drifted_and_failed() {
    let text = run::junit(&sample_run());
    let doc = roxmltree::Document::parse(&text).unwrap();

    let suites: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .map(|n| n.attribute("name").unwrap())
        .collect();
    assert_eq!(suites, ["web1", "db1"]);
    let n_cases = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count();
    assert_eq!(n_cases, 6);

    let pair = |node: &str, resource: &str| (node.to_string(), resource.to_string());
    assert_eq!(
        cases_with(&doc, "failure"),
        [
            pair("web1", "file:/etc/motd"),
            pair("web1", "service:nginx")
        ]
        .into()
    );
    assert_eq!(
        cases_with(&doc, "skipped"),
        [pair("web1", "pkg:curl")].into()
    );
    assert!(cases_with(&doc, "error").is_empty());

    let failure = |resource: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(resource))
            .and_then(|n| n.children().find(|c| c.has_tag_name("failure")))
            .unwrap()
    };
    let drift = failure("file:/etc/motd");
    assert_eq!(drift.attribute("type"), Some("drift"));
    assert_eq!(drift.text(), Some(MOTD_DIFF));
    let failed = failure("service:nginx");
    assert_eq!(failed.attribute("type"), Some("failure"));
    assert!(
        failed
            .text()
            .unwrap()
            .contains("systemctl exited with status 1")
    );

    let db_case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("pkg:postgresql"))
        .unwrap();
    assert_eq!(db_case.attribute("time"), Some("0.900"));
}

/// The SARIF 2.1.0 schema (draft-07), the OASIS TC's `sarif-schema-2.1.0.json`
/// (`$id` https://raw.githubusercontent.com/oasis-tcs/sarif-spec/master/Schemata/sarif-schema-2.1.0.json).
/// Vendored from the npm package `@datadog/datadog-ci@2.48.0` (Apache-2.0), which ships it
/// unchanged at `dist/commands/sarif/json-schema/sarif-schema-2.1.0.json` (sha256
/// 10666d46649b52e262001e70d43e6c52f7c0279ca3dbdfe9a7dc2e4071556454): the tests have no
/// network, so the schema cannot be fetched at test time.
const SARIF_SCHEMA: &str = include_str!("../fixtures/sarif/sarif-schema-2.1.0.json");

#[test]
fn sarif_validates_against_the_schema_and_points_at_the_declaration() {
    let text = run::sarif(&sample_run());
    let sarif: serde_json::Value = serde_json::from_str(&text).unwrap();

    let schema: serde_json::Value = serde_json::from_str(SARIF_SCHEMA).unwrap();
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{text}");
    // The schema does reject what is not SARIF 2.1.0.
    let mut broken = sarif.clone();
    broken["runs"][0]["results"][0]["level"] = "fatal".into();
    assert!(!validator.is_valid(&broken));

    assert_eq!(sarif["version"], "2.1.0");
    let sarif_run = &sarif["runs"][0];
    assert_eq!(sarif_run["tool"]["driver"]["name"], "steward");
    let rule_ids: Vec<&str> = sarif_run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(rule_ids, ["steward/drift/file", "steward/failure/service"]);

    let results = sarif_run["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "one per drifted or failed resource");
    let drift = &results[0];
    assert_eq!(drift["ruleId"], "steward/drift/file");
    assert_eq!(drift["level"], "error");
    let location = &drift["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], "site.yaml");
    assert_eq!(location["region"]["startLine"], 7);
    assert_eq!(location["region"]["startColumn"], 3);
    assert_eq!(drift["properties"]["node"], "web1");
    assert_eq!(drift["properties"]["resource"], "file:/etc/motd");
    assert_eq!(drift["properties"]["severity"], "high");

    let failure = &results[1];
    assert_eq!(failure["ruleId"], "steward/failure/service");
    assert_eq!(failure["level"], "warning");
    // No file recorded: anchored at the run's first document, line 1 (GitHub wants a location).
    let anchored = &failure["locations"][0]["physicalLocation"];
    assert_eq!(anchored["artifactLocation"]["uri"], "site.yaml");
    assert_eq!(anchored["region"]["startLine"], 1);
    assert!(
        failure["message"]["text"]
            .as_str()
            .unwrap()
            .contains("service:nginx on web1 failed")
    );
}

#[test]
fn sarif_uri_is_a_relative_reference() {
    let mut record = sample_run();
    record.results[0].file = Some("./docs/my site.yaml".into());
    let sarif: serde_json::Value = serde_json::from_str(&run::sarif(&record)).unwrap();
    let location = &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], "docs/my%20site.yaml");
}

// Issue 14: a stored run keeps what the live output showed, so `steward report RUN` prints
// what `apply` printed.

/// A report's text with its run id, times, user and project path replaced.
fn normalized_report(text: &str) -> String {
    text.lines()
        .map(|line| {
            for prefix in ["  started:", "  finished:", "  user:", "  project:"] {
                if line.starts_with(prefix) {
                    return format!("{prefix} [..]");
                }
            }
            if line.starts_with("Run ") && line.ends_with(')') {
                let kind = line.rsplit('(').next().unwrap_or_default();
                return format!("Run [id] ({kind}");
            }
            line.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The result about `resource` in a JSON run report.
fn result_of<'a>(json: &'a serde_json::Value, resource: &str) -> &'a serde_json::Value {
    json["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == resource)
        .unwrap_or_else(|| panic!("no {resource} in {json}"))
}

/// The lines under the line `head` (starting with it) up to the next resource or blank line.
fn block_under<'a>(text: &'a str, head: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(head));
    assert!(lines.next().is_some(), "no `{head}` in\n{text}");
    lines.take_while(|l| l.starts_with("      ")).collect()
}

/// Each changed resource's lines in the report are the lines the apply's plan showed under it,
/// and its head is worded as the apply worded it.
fn assert_report_shows_apply(apply: &str, report: &str, changed: &[(&str, &str)]) {
    for (marker_id, done) in changed {
        let live = block_under(apply, &format!("  {marker_id}"));
        let stored = block_under(report, &format!("  {marker_id}: {done} ("));
        assert!(
            !live.is_empty(),
            "{marker_id}: nothing under it in\n{apply}"
        );
        assert_eq!(
            stored, live,
            "{marker_id}\n--- apply\n{apply}\n--- report\n{report}"
        );
        assert!(
            apply.contains(&format!("  {marker_id}: {done}\n")),
            "{marker_id}\n{apply}"
        );
    }
}

#[test]
fn report_of_a_local_apply_shows_what_the_apply_printed() {
    let env = crate::common::TestEnv::new();
    let root = env.mkdir("root");
    let root = root.to_str().unwrap();
    env.write(
        "p/site.yaml",
        "steward: 1
resources:
  file:/motd:
    content: \"welcome\\nmanaged by steward\\n\"
  file:/old.conf:
    content: \"port = 1\\n\"
    mode: \"0600\"
  exec:reload: { command: [/bin/true], refresh_only: true, subscribe: [file:/motd] }
",
    );
    let created = env.run(&["--root", root, "apply", "p", "--yes"]);
    assert_eq!(created.code, 0, "{}", created.all());
    let report = env.run(&["report", "--project", "p"]);
    assert_eq!(report.code, 0, "{}", report.all());
    assert_report_shows_apply(
        &created.stdout,
        &report.stdout,
        &[("+ file:/motd", "created"), ("+ file:/old.conf", "created")],
    );
    assert!(
        report
            .stdout
            .contains("  ! exec:reload: ran (refresh) (site.yaml:8:3)\n"),
        "{}",
        report.stdout
    );
    insta::assert_snapshot!("local_apply_created", normalized_report(&report.stdout));

    env.write(
        "p/site.yaml",
        "steward: 1
resources:
  file:/motd:
    content: \"welcome\\nedited by steward\\n\"
    mode: \"0640\"
  file:/old.conf:
    ensure: absent
  exec:reload: { command: [/bin/true], refresh_only: true, subscribe: [file:/motd] }
",
    );
    let updated = env.run(&["--root", root, "apply", "p", "--yes"]);
    assert_eq!(updated.code, 0, "{}", updated.all());
    let report = env.run(&["report", "--project", "p"]);
    assert_eq!(report.code, 0, "{}", report.all());
    assert_report_shows_apply(
        &updated.stdout,
        &report.stdout,
        &[("~ file:/motd", "updated"), ("- file:/old.conf", "deleted")],
    );
    insta::assert_snapshot!(
        "local_apply_updated_and_deleted",
        normalized_report(&report.stdout)
    );

    let json = env.run(&["report", "--project", "p", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let motd = result_of(&json, "file:/motd");
    assert_eq!(
        (&motd["action"], &motd["done"], &motd["diff_cut_bytes"]),
        (&"update".into(), &"updated".into(), &0.into())
    );
    assert!(
        motd["diff"]
            .as_str()
            .unwrap()
            .contains("-managed by steward\n+edited by steward"),
        "{json}"
    );
    assert_eq!(result_of(&json, "file:/old.conf")["action"], "delete");
    let reload = result_of(&json, "exec:reload");
    assert_eq!(
        (&reload["action"], &reload["done"], &reload["diff"]),
        (
            &"run".into(),
            &"ran (refresh)".into(),
            &serde_json::Value::Null
        )
    );

    // A drift run keeps what an apply would do.
    std::fs::write(env.path().join("root/motd"), "welcome\nedited by hand\n").unwrap();
    let drift = env.run(&["--root", root, "drift", "p"]);
    assert!(drift.stdout.contains("file:/motd"), "{}", drift.all());
    let report = env.run(&["report", "--project", "p"]);
    assert!(
        report.stdout.contains(
            "  ! file:/motd: drifted, apply would update (site.yaml:3:3)\n      --- /motd\n"
        ),
        "{}",
        report.stdout
    );
    let json = env.run(&["report", "--project", "p", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let motd = result_of(&json, "file:/motd");
    assert_eq!(
        (&motd["outcome"], &motd["action"], &motd["done"]),
        (
            &"drifted".into(),
            &"update".into(),
            &serde_json::Value::Null
        )
    );
    assert!(
        motd["diff"]
            .as_str()
            .unwrap()
            .contains("-edited by hand\n+edited by steward"),
        "{json}"
    );
}

#[test]
fn a_sensitive_contents_diff_is_not_stored() {
    let env = crate::common::TestEnv::new();
    let root = env.mkdir("root");
    let root = root.to_str().unwrap();
    env.write(
        "p/site.yaml",
        "steward: 1
parameters:
  token: { type: string, sensitive: true }
resources:
  file:/app.env:
    content: \"TOKEN={{ params.token }}\\n\"
  file:/plain: { content: \"visible\\n\" }
",
    );
    for secret in ["first-secret-5a1b", "second-secret-9c2d"] {
        let param = format!("token={secret}");
        let out = env.run(&["--root", root, "apply", "p", "--yes", "--param", &param]);
        assert_eq!(out.code, 0, "{}", out.all());
        for format in ["human", "json", "junit", "markdown"] {
            let report = env.run(&["report", "--project", "p", "--format", format]);
            assert_eq!(report.code, 0, "{}", report.all());
            assert!(
                !report.all().contains("secret-"),
                "{format}: {}",
                report.all()
            );
        }
        let report = env.run(&["report", "--project", "p"]);
        assert!(
            report.stdout.contains("content: (sensitive)"),
            "{}",
            report.stdout
        );
    }
    let report = env.run(&["report", "--project", "p"]);
    assert!(
        report.stdout.contains("~ file:/app.env: updated"),
        "{}",
        report.stdout
    );
    // Not in the SQLite file (nor a journal beside it) either; the backups of the file the
    // apply replaced hold its old content, as they must.
    let mut n_store_files = 0;
    for entry in std::fs::read_dir(env.path().join("p/.steward")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("steward.db")
        {
            n_store_files += 1;
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(7).any(|w| w == b"secret-"),
                "{}",
                path.display()
            );
        }
    }
    assert!(n_store_files > 0);
}

#[test]
fn a_big_contents_diff_is_cut_with_a_note() {
    let env = crate::common::TestEnv::new();
    let root = env.mkdir("root");
    let root = root.to_str().unwrap();
    // 20,000 changed lines: a unified diff of about 400 KB.
    let before: String = (0..20_000).map(|i| format!("old line {i}\n")).collect();
    std::fs::write(env.path().join("root/big.txt"), &before).unwrap();
    let after: String = (0..20_000).map(|i| format!("new line {i}\\n")).collect();
    env.write(
        "p/site.yaml",
        format!("steward: 1\nresources:\n  file:/big.txt:\n    content: \"{after}\"\n"),
    );
    let out = env.run(&["--root", root, "apply", "p", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains("+new line 19999"),
        "the live plan shows it whole"
    );
    let json = env.run(&["report", "--project", "p", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let result = &json["results"][0];
    let diff = result["diff"].as_str().unwrap();
    let cut = result["diff_cut_bytes"].as_u64().unwrap();
    assert!(cut > 300_000, "{cut}");
    let (kept, note) = diff.rsplit_once('\n').unwrap();
    assert!(kept.len() <= 64 * 1024, "{}", kept.len());
    assert!(
        kept.starts_with("--- /big.txt\n+++ /big.txt\n"),
        "{kept:.200}"
    );
    assert!(
        note.starts_with("... ") && note.contains(&format!("({cut} bytes) not kept")),
        "{note}"
    );
    let report = env.run(&["report", "--project", "p"]);
    assert!(
        report.stdout.contains(&format!("      {note}\n")),
        "{}",
        report.stdout
    );
}

#[test]
fn a_store_from_before_actions_is_migrated_and_its_runs_still_render() {
    use steward::store::Store;
    use steward::store::sqlite::{STORE_VERSION, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    let conn = SqliteStore::create_at_version(&path, 4).unwrap();
    conn.execute_batch(
        "INSERT INTO runs (id, kind, started_at, finished_at, user, project, documents_digest)
             VALUES ('r1', 'apply', '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z', 'old', 'p', 'd');
         INSERT INTO results (run_id, position, node, resource, outcome, diff, duration_ms)
             VALUES ('r1', 0, 'local', 'file:/a', 'changed', 'content: 25 bytes', 3);",
    )
    .unwrap();
    drop(conn);
    let mut store = SqliteStore::open(&path).unwrap();
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, STORE_VERSION);
    let old = store.run(Some("r1")).unwrap();
    assert_eq!(old.results[0].change, None);
    let text = run::human(&old, &[], Style::new(false));
    assert!(
        text.contains("  ~ file:/a: changed\n      content: 25 bytes\n"),
        "{text}"
    );

    // A new run in the migrated store keeps its change.
    let mut new = sample_run();
    new.id = "r2".into();
    new.results[4].change = Some(steward::store::ResultChange {
        action: "replace".into(),
        done: Some("replaced".into()),
        reason: Some("a directory is in the way".into()),
        n_cut_bytes: 12,
    });
    store.record_run(&new).unwrap();
    assert_eq!(store.run(Some("r2")).unwrap(), new);
    let text = run::human(&new, &[], Style::new(false));
    assert!(
        text.contains("  -/+ pkg:postgresql: replaced (a directory is in the way) (db.yaml:4:3)\n      version: 15 → 16\n"),
        "{text}"
    );
}

#[test]
fn a_fleet_apply_prints_and_reports_its_diffs() {
    let fleet = crate::fleet_harness::Fleet::with_agents(&[("web-1", "role=web")]);
    fleet.env.write(
        "project/site.yaml",
        "steward: 1
associations:
  web:
    targets: { tags: { role: web } }
    documents: [web.yaml]
",
    );
    let web = |greeting: &str| {
        format!(
            "steward: 1\nresources:\n  file:/motd:\n    content: \"{greeting} from {{{{ node.name }}}}\\n\"\n"
        )
    };
    let project = fleet.env.path().join("project");
    let p = project.to_str().unwrap();
    for (greeting, head, lines) in [
        (
            "hello",
            "  + file:/motd: created",
            "      content:\n      +hello from web-1\n",
        ),
        (
            "bye",
            "  ~ file:/motd: updated",
            "      @@ -1 +1 @@\n      -hello from web-1\n      +bye from web-1\n",
        ),
    ] {
        fleet.env.write("project/web.yaml", web(greeting));
        let apply = fleet.cli(&["apply", p, "--yes"]);
        assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
        assert!(apply.stdout.contains(head), "{}", apply.stdout);
        assert!(apply.stdout.contains(lines), "{}", apply.stdout);
        let report = fleet.cli(&["report"]);
        assert_eq!(report.code, 0, "{}", report.all());
        assert!(report.stdout.contains(head), "{}", report.stdout);
        assert!(report.stdout.contains(lines), "{}", report.stdout);
    }
    assert_eq!(
        std::fs::read_to_string(fleet.root("web-1").join("motd")).unwrap(),
        "bye from web-1\n"
    );
}
