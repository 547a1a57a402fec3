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
