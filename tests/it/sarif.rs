//! SARIF that code hosts accept (issue 14): locations relative to the project root with a
//! `uriBaseId`, the same from a local and a fleet run of one project, rules with the
//! descriptions and help GitHub requires, and the level from the compliance severity.
//!
//! Every log is checked offline by the SARIF 2.1.0 schema
//! (`tests/fixtures/sarif/sarif-schema-2.1.0.json`) plus [`github_rules`], this file's
//! restatement of the checks of Microsoft's SARIF multitool that a steward log could break
//! (SARIF1004 and GitHub's GH1001 ... GH2012). The multitool itself runs in an ignored test
//! opted in by `STEWARD_SARIF_MULTITOOL` (`.ci/run` installs it from npm).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use steward::report::run;
use steward::store::{ResultOutcome, ResultRecord, RunKind, RunRecord, RunStatus, Severity};

use crate::common::{TestEnv, repo, run_in};
use crate::fleet_harness::Fleet;

/// The SARIF 2.1.0 schema (see `tests/it/reports.rs` for where it comes from).
const SCHEMA: &str = include_str!("../fixtures/sarif/sarif-schema-2.1.0.json");

/// The multitool's settings: every GitHub rule and every SARIF conformance rule on.
const MULTITOOL_CONFIG: &str = "tests/fixtures/sarif/multitool-github.xml";

/// What the schema and [`github_rules`] find wrong with a log.
fn problems(sarif: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let mut problems: Vec<String> = validator
        .iter_errors(sarif)
        .map(|e| format!("schema: {}: {e}", e.instance_path()))
        .collect();
    problems.extend(github_rules(sarif));
    problems
}

/// The multitool's GitHub rules (`--rule-kind Gh`, with those it leaves off by default) and
/// the SARIF rules about base URIs, restated for what a steward log holds.
fn github_rules(sarif: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |rule: &str, at: String, what: &str| {
        problems.push(format!("{rule}: {at}: {what}"));
    };
    // GH1013, GH1011: a SARIF 2.1.0 log that names its schema.
    if sarif["version"] != "2.1.0" {
        problem("GH1013", "version".into(), "not 2.1.0");
    }
    if !sarif["$schema"]
        .as_str()
        .is_some_and(|s| s.ends_with("sarif-2.1.0.json"))
    {
        problem("GH1011", "$schema".into(), "not the SARIF 2.1.0 schema");
    }
    let Some(runs) = sarif["runs"].as_array().filter(|runs| !runs.is_empty()) else {
        problem("GH1014", "runs".into(), "no run");
        return problems;
    };
    for (r, sarif_run) in runs.iter().enumerate() {
        let at = format!("runs[{r}]");
        // GH1018, SARIF2005: the tool names itself, its version and where to learn about it.
        let driver = &sarif_run["tool"]["driver"];
        for key in ["name", "version"] {
            if blank(&driver[key]) {
                problem("GH1018", format!("{at}.tool.driver"), &format!("no {key}"));
            }
        }
        if !driver["informationUri"]
            .as_str()
            .is_some_and(is_absolute_uri)
        {
            problem(
                "SARIF2005",
                format!("{at}.tool.driver"),
                "no absolute informationUri",
            );
        }
        // GH2012: each rule has a short and a full description and help text.
        let rules = driver["rules"].as_array().cloned().unwrap_or_default();
        for (i, rule) in rules.iter().enumerate() {
            let at = format!("{at}.tool.driver.rules[{i}]");
            for key in ["id", "name"] {
                if blank(&rule[key]) {
                    problem("GH2012", at.clone(), &format!("no {key}"));
                }
            }
            for key in ["shortDescription", "fullDescription", "help"] {
                if blank(&rule[key]["text"]) {
                    problem("GH2012", at.clone(), &format!("no {key}.text"));
                }
            }
        }
        // SARIF1004: base ids are defined, with an absolute URI ending in `/` when given.
        let bases = sarif_run["originalUriBaseIds"].as_object();
        for (id, base) in bases.into_iter().flatten() {
            if let Some(uri) = base.get("uri").and_then(Value::as_str)
                && !(is_absolute_uri(uri) && uri.ends_with('/'))
            {
                problem(
                    "SARIF1004",
                    format!("{at}.originalUriBaseIds.{id}"),
                    "not an absolute URI ending in /",
                );
            }
        }
        let results = sarif_run["results"].as_array().cloned().unwrap_or_default();
        // GH1004: within GitHub's limit of results per run.
        if results.len() > 25_000 {
            problem("GH1004", format!("{at}.results"), "over 25,000 results");
        }
        for (i, result) in results.iter().enumerate() {
            let at = format!("{at}.results[{i}]");
            // GH1015, SARIF1009, SARIF1010: a rule id that its index agrees with.
            let rule_id = result["ruleId"].as_str().unwrap_or_default();
            let indexed = result["ruleIndex"]
                .as_u64()
                .and_then(|idx| rules.get(usize::try_from(idx).unwrap()));
            if rule_id.is_empty() || indexed.is_none_or(|rule| rule["id"] != rule_id) {
                problem("SARIF1010", at.clone(), "ruleId and ruleIndex disagree");
            }
            // GH1007, SARIF2001: a plain message that is a sentence.
            match result["message"]["text"].as_str() {
                Some(text) if !text.trim().is_empty() => {
                    if !text.ends_with('.') {
                        problem("SARIF2001", format!("{at}.message"), "no final period");
                    }
                }
                _ => problem("GH1007", format!("{at}.message"), "no text"),
            }
            // GH1001, GH1015, GH1017: at least one location (GitHub refuses the whole log
            // otherwise), each with a URI and a line.
            let locations = result["locations"].as_array().cloned().unwrap_or_default();
            if locations.is_empty() {
                problem("GH1001", at.clone(), "no location");
            }
            for (l, location) in locations.iter().enumerate() {
                let at = format!("{at}.locations[{l}].physicalLocation");
                let artifact = &location["physicalLocation"]["artifactLocation"];
                let Some(uri) = artifact["uri"].as_str().filter(|uri| !uri.is_empty()) else {
                    problem("GH1001", at, "no artifactLocation.uri");
                    continue;
                };
                // GH1005, GH1006, SARIF1004: a relative reference from a defined base.
                if is_absolute_uri(uri) || uri.starts_with('/') {
                    problem("GH1006", at.clone(), &format!("`{uri}` is not relative"));
                }
                match artifact["uriBaseId"].as_str() {
                    Some(id) if bases.is_some_and(|b| b.contains_key(id)) => {}
                    Some(id) => problem("SARIF1004", at.clone(), &format!("`{id}` undefined")),
                    None => problem("SARIF1004", at.clone(), "no uriBaseId"),
                }
                if location["physicalLocation"]["region"]["startLine"]
                    .as_u64()
                    .is_none_or(|line| line == 0)
                {
                    problem("GH1003", at, "no region.startLine");
                }
            }
        }
    }
    problems
}

fn blank(value: &Value) -> bool {
    value.as_str().is_none_or(|s| s.trim().is_empty())
}

/// RFC 3986's `scheme ":"` at the start.
fn is_absolute_uri(uri: &str) -> bool {
    uri.split_once(':').is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

fn result(resource: &str, outcome: ResultOutcome, severity: Severity) -> ResultRecord {
    ResultRecord {
        node: "web-1".into(),
        resource: resource.into(),
        outcome,
        file: Some("conf/web.yaml".into()),
        line: Some(4),
        column: Some(3),
        diff: None,
        change: None,
        message: None,
        duration_ms: 1,
        association: Some("web".into()),
        severity,
    }
}

fn record(project: &str, results: Vec<ResultRecord>) -> RunRecord {
    RunRecord {
        id: "20260301T120000Z-0001".into(),
        kind: RunKind::Drift,
        started_at: "2026-03-01T12:00:00Z".into(),
        finished_at: "2026-03-01T12:00:01Z".into(),
        user: "ci".into(),
        project: project.into(),
        documents_digest: "d".into(),
        results,
        status: RunStatus::Complete,
    }
}

fn sarif_of(record: &RunRecord) -> Value {
    serde_json::from_str(&run::sarif(record)).unwrap()
}

#[test]
fn a_run_passes_the_schema_and_the_github_rules_with_levels_from_the_severity() {
    let failed = ResultRecord {
        message: Some("permission denied\n".into()),
        ..result("service:nginx", ResultOutcome::Failed, Severity::Medium)
    };
    let from_stdlib = ResultRecord {
        file: None,
        line: None,
        column: None,
        ..result("file:/etc/std", ResultOutcome::Drifted, Severity::Low)
    };
    let record = record(
        "/srv/my site",
        vec![
            result("file:/etc/motd", ResultOutcome::Drifted, Severity::Critical),
            result(
                "file:/etc/issue",
                ResultOutcome::Unchanged,
                Severity::Critical,
            ),
            failed,
            from_stdlib,
        ],
    );
    let sarif = sarif_of(&record);
    let problems = problems(&sarif);
    assert!(problems.is_empty(), "{problems:#?}\n{sarif:#}");

    let sarif_run = &sarif["runs"][0];
    let driver = &sarif_run["tool"]["driver"];
    assert!(driver["informationUri"].as_str().unwrap().contains(':'));
    let rules = driver["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["steward/drift/file", "steward/failure/service"]);
    assert!(
        rules[0]["fullDescription"]["text"]
            .as_str()
            .unwrap()
            .contains("`file` resource")
    );
    assert!(
        rules[1]["help"]["markdown"]
            .as_str()
            .unwrap()
            .contains("`steward apply PROJECT`")
    );
    assert_eq!(
        sarif_run["originalUriBaseIds"]["PROJECTROOT"]["uri"],
        "file:///srv/my%20site/"
    );

    let results = sarif_run["results"].as_array().unwrap();
    let levels: Vec<&str> = results
        .iter()
        .map(|r| r["level"].as_str().unwrap())
        .collect();
    assert_eq!(
        levels,
        ["error", "warning", "note"],
        "critical, medium, low"
    );
    let location = &results[0]["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], "conf/web.yaml");
    assert_eq!(location["artifactLocation"]["uriBaseId"], "PROJECTROOT");
    assert_eq!(location["region"]["startLine"], 4);
    assert_eq!(
        results[1]["message"]["text"],
        "service:nginx on web-1 failed: permission denied."
    );
    // A declaration not recorded is anchored at the run's first document, line 1.
    let anchored = &results[2]["locations"][0]["physicalLocation"];
    assert_eq!(anchored["artifactLocation"]["uri"], "conf/web.yaml");
    assert_eq!(anchored["region"]["startLine"], 1);
    assert!(anchored["region"].get("startColumn").is_none());
}

#[test]
fn the_project_root_of_a_one_document_project_is_its_directory() {
    let sarif = sarif_of(&record(
        "/srv/site/site.yaml",
        vec![result("file:/a", ResultOutcome::Drifted, Severity::High)],
    ));
    let base = &sarif["runs"][0]["originalUriBaseIds"]["PROJECTROOT"];
    assert_eq!(base["uri"], "file:///srv/site/");
    // A relative project path gives the base no URI: only what it stands for.
    let sarif = sarif_of(&record(
        "site",
        vec![result("file:/a", ResultOutcome::Drifted, Severity::High)],
    ));
    let base = &sarif["runs"][0]["originalUriBaseIds"]["PROJECTROOT"];
    assert!(base.get("uri").is_none(), "{base}");
    assert!(
        base["description"]["text"]
            .as_str()
            .unwrap()
            .contains("root")
    );
    assert!(problems(&sarif).is_empty());
}

/// An unreachable node is one result for the node (as it is one finding), not one per
/// resource; a node never applied (pending) has nothing to report yet.
#[test]
fn an_unreachable_node_is_one_result_and_a_pending_one_none() {
    let offline = |resource: &str| {
        let mut r = result(resource, ResultOutcome::Unreachable, Severity::High);
        r.node = "web-2".into();
        r.message = Some("node `web-2` is offline".into());
        r
    };
    let sarif = sarif_of(&record(
        "/srv/site",
        vec![
            result("file:/a", ResultOutcome::Drifted, Severity::High),
            offline("file:/a"),
            offline("file:/b"),
            result("file:/c", ResultOutcome::Pending, Severity::High),
        ],
    ));
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let rule_ids: Vec<&str> = results
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    assert_eq!(rule_ids, ["steward/drift/file", "steward/unreachable/node"]);
    let text = results[1]["message"]["text"].as_str().unwrap();
    assert!(text.contains("node web-2 could not be reached"), "{text}");
    assert!(problems(&sarif).is_empty(), "{:?}", problems(&sarif));
}

/// The checks do catch what GitHub refuses: an absolute path (as runs recorded before issue
/// 14 when the project path was absolute), a rule without its descriptions, a result with
/// no location.
#[test]
fn the_github_checks_refuse_what_github_refuses() {
    let old = ResultRecord {
        file: Some("/home/ci/site/site.yaml".into()),
        ..result("file:/a", ResultOutcome::Drifted, Severity::High)
    };
    let sarif = sarif_of(&record("/home/ci/site", vec![old]));
    let artifact =
        &sarif["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"];
    assert_eq!(artifact["uri"], "file:///home/ci/site/site.yaml");
    assert!(
        artifact.get("uriBaseId").is_none(),
        "a base is for relative references"
    );
    let problems = github_rules(&sarif);
    assert!(
        problems.iter().any(|p| p.starts_with("GH1006")),
        "{problems:#?}"
    );

    let mut sarif = sarif_of(&record(
        "/srv/site",
        vec![result("file:/a", ResultOutcome::Drifted, Severity::High)],
    ));
    let rule = sarif["runs"][0]["tool"]["driver"]["rules"][0]
        .as_object_mut()
        .unwrap();
    rule.remove("fullDescription");
    rule.remove("help");
    sarif["runs"][0]["results"][0]
        .as_object_mut()
        .unwrap()
        .remove("locations");
    let problems = github_rules(&sarif);
    for expected in [
        "GH2012: runs[0].tool.driver.rules[0]: no fullDescription.text",
        "GH2012: runs[0].tool.driver.rules[0]: no help.text",
        "GH1001: runs[0].results[0]: no location",
    ] {
        assert!(problems.iter().any(|p| p == expected), "{problems:#?}");
    }
}

const SITE: &str = r#"steward: 1
associations:
  web:
    targets: { all: true }
    documents: [conf/web.yaml]
    compliance_severity: high
"#;

const WEB: &str = r#"steward: 1
use:
  - module: ../mods/issue.yaml
resources:
  directory:/app: { mode: "0755" }
  file:/app/motd:
    content: "managed\n"
    mode: "0644"
"#;

/// A module reached through `..`: its location is `mods/issue.yaml`, not `conf/../mods/...`.
const ISSUE_MODULE: &str = r#"steward: 1
resources:
  file:/app/issue:
    content: "welcome\n"
    require: [directory:/app]
"#;

/// Writes the project under `dir/proj` and returns its path.
fn write_project(env: &TestEnv) -> PathBuf {
    env.write("proj/site.yaml", SITE);
    env.write("proj/conf/web.yaml", WEB);
    env.write("proj/mods/issue.yaml", ISSUE_MODULE);
    env.path().join("proj")
}

/// The drift SARIF of a local run of the project: applied, edited by hand, drift-checked
/// from `cwd` with `project` as the project argument.
fn local_sarif(env: &TestEnv, cwd: &Path, project: &str) -> String {
    let root = env.mkdir("root");
    let root = root.to_str().unwrap();
    let apply = run_in(cwd, &["--root", root, "apply", project, "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    std::fs::write(env.path().join("root/app/motd"), "edited\n").unwrap();
    std::fs::write(env.path().join("root/app/issue"), "edited\n").unwrap();
    let drift = run_in(
        cwd,
        &["--root", root, "drift", project, "--detailed-exitcode"],
    );
    assert_eq!(drift.code, 2, "{}", drift.all());
    let report = run_in(cwd, &["report", "--project", project, "--format", "sarif"]);
    assert_eq!(report.code, 0, "{}", report.all());
    report.stdout
}

/// The drift SARIF of a fleet run of the same project on one agent.
fn fleet_sarif() -> String {
    let fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    let project = write_project(&fleet.env);
    let p = project.to_str().unwrap();
    let apply = fleet.cli(&["apply", p, "--yes"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
    std::fs::write(fleet.root("web-1").join("app/motd"), "edited\n").unwrap();
    std::fs::write(fleet.root("web-1").join("app/issue"), "edited\n").unwrap();
    let drift = fleet.cli(&["drift", p, "--detailed-exitcode"]);
    assert_eq!(drift.code, 2, "{}\n{}", drift.all(), fleet.logs());
    let report = fleet.cli(&["report", "--format", "sarif"]);
    assert_eq!(report.code, 0, "{}", report.all());
    report.stdout
}

/// What a log locates: (rule, uri, base, line, column) per result.
fn locations(text: &str) -> BTreeSet<(String, String, String, u64, u64)> {
    let sarif: Value = serde_json::from_str(text).unwrap();
    sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let location = &r["locations"][0]["physicalLocation"];
            (
                r["ruleId"].as_str().unwrap().to_string(),
                location["artifactLocation"]["uri"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                location["artifactLocation"]["uriBaseId"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                location["region"]["startLine"].as_u64().unwrap(),
                location["region"]["startColumn"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The three logs of one project: local with an absolute project path from elsewhere, local
/// from inside the project (`.`), and the fleet's.
fn three_logs() -> [(&'static str, String); 3] {
    let env = TestEnv::new();
    let project = write_project(&env);
    let absolute = local_sarif(&env, env.path(), project.to_str().unwrap());
    let env = TestEnv::new();
    let project = write_project(&env);
    let inside = local_sarif(&env, &project, ".");
    [
        ("local, absolute project path", absolute),
        ("local, from inside the project", inside),
        ("fleet", fleet_sarif()),
    ]
}

#[test]
fn local_and_fleet_runs_of_a_project_locate_results_alike_relative_to_its_root() {
    let logs = three_logs();
    let drift = |uri: &str, line| {
        (
            "steward/drift/file".to_string(),
            uri.to_string(),
            "PROJECTROOT".to_string(),
            line,
            3,
        )
    };
    let expected = BTreeSet::from([drift("conf/web.yaml", 6), drift("mods/issue.yaml", 3)]);
    for (what, text) in &logs {
        let sarif: Value = serde_json::from_str(text).unwrap();
        let problems = problems(&sarif);
        assert!(problems.is_empty(), "{what}: {problems:#?}\n{text}");
        assert_eq!(locations(text), expected, "{what}:\n{text}");
        assert_eq!(sarif["runs"][0]["results"][0]["level"], "error", "{what}");
    }
}

/// Microsoft's SARIF multitool (`validate`, SARIF and GitHub rules, all on) accepts the logs
/// of a local and a fleet run. `STEWARD_SARIF_MULTITOOL` is the path of its `Sarif.Multitool`
/// binary (npm `@microsoft/sarif-multitool`; `.ci/run` installs it).
#[test]
#[ignore = "needs Microsoft's SARIF multitool (STEWARD_SARIF_MULTITOOL=/path/to/Sarif.Multitool)"]
fn the_sarif_multitool_accepts_local_and_fleet_logs() {
    let Some(multitool) = std::env::var_os("STEWARD_SARIF_MULTITOOL") else {
        panic!(
            "this test needs Microsoft's SARIF multitool: set STEWARD_SARIF_MULTITOOL to the \
             path of its Sarif.Multitool binary (npm @microsoft/sarif-multitool; .ci/run \
             installs it; docs/architecture.md, \"Tests\")"
        );
    };
    let multitool = PathBuf::from(multitool);
    assert!(
        multitool.is_file(),
        "STEWARD_SARIF_MULTITOOL={} is not a file",
        multitool.display()
    );
    let dir = tempfile::tempdir().unwrap();
    for (i, (what, text)) in three_logs().iter().enumerate() {
        let log = dir.path().join(format!("steward-{i}.sarif"));
        let out = dir.path().join(format!("validation-{i}.sarif"));
        std::fs::write(&log, text).unwrap();
        let run = std::process::Command::new(&multitool)
            .arg("validate")
            .arg("--config")
            .arg(repo().join(MULTITOOL_CONFIG))
            .args(["--rule-kind", "Sarif;Gh", "--output"])
            .arg(&out)
            .arg(&log)
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            run.status.success(),
            "{what}: the multitool failed:\n{printed}"
        );
        // The multitool exits 0 with findings; they are in its own SARIF output.
        let validation: Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap_or_default())
                .unwrap_or_else(|err| panic!("{what}: no validation log ({err}):\n{printed}"));
        let findings: Vec<String> = validation["runs"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["results"].as_array().cloned().unwrap_or_default())
            .filter(|r| r["level"] != "note" && r["level"] != "none")
            .map(|r| format!("{}: {}", r["ruleId"], r["message"]))
            .collect();
        assert!(
            findings.is_empty(),
            "{what}: {findings:#?}\n{printed}\n{text}"
        );
    }
}
