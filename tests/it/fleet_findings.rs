//! Fleet findings and outcomes with SSM's meanings, on a real controller and agents: an
//! unreachable node is one finding for the node, a node never applied is pending, a stale
//! saved plan is refused for its node as a whole, and every per-node count in the node table
//! is the number of that node's results with that outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::Output;
use crate::fleet_harness::{Fleet, wait_for};

/// Three files under a directory on every `role=web` node.
const DOC: &str = "steward: 1
associations:
  web:
    targets: { tags: { role: web } }
resources:
  directory:/app: { mode: \"0755\" }
  file:/app/a: { content: \"a\\n\" }
  file:/app/b: { content: \"b\\n\" }
";

/// One row of the node table printed after a fleet apply or drift.
#[derive(Debug, PartialEq)]
struct Row {
    status: String,
    /// `changed`, `drifted`, `pending`, `failed`, `skipped`, as the table counts them.
    counts: BTreeMap<&'static str, usize>,
    message: String,
}

const COLUMNS: [&str; 5] = ["changed", "drifted", "pending", "failed", "skipped"];

/// The node table's rows by node.
fn node_table(stdout: &str) -> BTreeMap<String, Row> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("NODE "));
    let header = lines.next().expect("a node table");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "NODE", "STATUS", "CHANGED", "DRIFTED", "PENDING", "FAILED", "SKIPPED", "MESSAGE"
        ],
        "{stdout}"
    );
    let mut rows = BTreeMap::new();
    for line in lines.take_while(|l| !l.starts_with("Recorded as run")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let counts = COLUMNS
            .iter()
            .zip(&words[2..7])
            .map(|(name, n)| (*name, n.parse().unwrap()))
            .collect();
        rows.insert(
            words[0].to_string(),
            Row {
                status: words[1].to_string(),
                counts,
                message: words[7..].join(" "),
            },
        );
    }
    rows
}

/// The run id the node table names.
fn run_id(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Recorded as run "))
        .unwrap_or_else(|| panic!("no run recorded: {stdout}"));
    line["Recorded as run ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Per node, per outcome: the stored run's results (`steward report RUN --format json`).
fn stored_counts(fleet: &Fleet, run: &str) -> BTreeMap<String, BTreeMap<String, usize>> {
    let report = fleet.cli(&["report", run, "--format", "json"]);
    assert_eq!(report.code, 0, "{}", report.all());
    let json: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for result in json["results"].as_array().unwrap() {
        let node = result["node"].as_str().unwrap().to_string();
        let outcome = result["outcome"].as_str().unwrap().to_string();
        *counts.entry(node).or_default().entry(outcome).or_default() += 1;
    }
    counts
}

/// Every count in the node table is the number of the node's stored results with that
/// outcome.
fn assert_counts_match(fleet: &Fleet, out: &Output) -> BTreeMap<String, Row> {
    let rows = node_table(&out.stdout);
    let stored = stored_counts(fleet, &run_id(&out.stdout));
    for (node, row) in &rows {
        for (column, n) in &row.counts {
            let results = stored
                .get(node)
                .and_then(|c| c.get(*column))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                *n, results,
                "{node}: {column} is {n} in the table, {results} in the run\n{}",
                out.stdout
            );
        }
    }
    rows
}

/// Open findings as `(kind, node, resource, count)`, from `steward findings`.
fn open_findings(fleet: &Fleet) -> Vec<(String, String, String, u64)> {
    let out = fleet.cli(&["findings"]);
    assert_eq!(out.code, 0, "{}", out.all());
    out.stdout
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("No open findings"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (
                w[2].to_string(),
                w[4].to_string(),
                w[5].to_string(),
                w[6].parse().unwrap(),
            )
        })
        .collect()
}

fn project(fleet: &Fleet) -> String {
    let site = fleet.env.write("project/site.yaml", DOC);
    site.parent().unwrap().to_str().unwrap().to_string()
}

fn finding(kind: &str, node: &str, resource: &str, count: u64) -> (String, String, String, u64) {
    (kind.into(), node.into(), resource.into(), count)
}

#[test]
fn an_offline_node_is_one_finding_resolved_when_it_is_back() {
    let mut fleet = Fleet::with_agents(&[("web-1", "role=web"), ("web-2", "role=web")]);
    let p = project(&fleet);
    let apply = fleet.cli(&["apply", &p, "--yes"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());

    fleet.kill_agent("web-2");
    wait_for("web-2 offline", Duration::from_secs(30), || {
        (!fleet.online().contains(&"web-2".to_string())).then_some(())
    });
    for count in [1, 2] {
        let apply = fleet.cli(&["apply", &p, "--yes"]);
        assert_eq!(apply.code, 1, "{}", apply.all());
        let rows = assert_counts_match(&fleet, &apply);
        assert_eq!(rows["web-2"].status, "offline", "{}", apply.stdout);
        assert_eq!(rows["web-1"].status, "ok", "{}", apply.stdout);
        // One finding for the node, bumped by the second run; none per resource.
        assert_eq!(
            open_findings(&fleet),
            [finding("unreachable", "web-2", "node:web-2", count)]
        );
        let stored = stored_counts(&fleet, &run_id(&apply.stdout));
        assert_eq!(stored["web-2"].get("unreachable"), Some(&3), "{stored:?}");
    }
    // The reports count the unreachable resources too, and show the node's finding.
    let report = fleet.cli(&["report"]);
    assert!(
        report.stdout.contains(", 3 unreachable."),
        "{}",
        report.stdout
    );
    let json = fleet.cli(&["report", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["summary"]["unreachable"], 3, "{json}");
    assert_eq!(json["summary"]["compliant"], false, "{json}");
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{json}");
    assert_eq!(findings[0]["resource"], "node:web-2", "{json}");
    let markdown = fleet.cli(&["report", "--format", "markdown"]);
    assert!(
        markdown
            .stdout
            .contains("0 drifted, 0 failed, 3 unreachable")
            && markdown
                .stdout
                .contains("| skipped | unchanged | unreachable |")
            && markdown
                .stdout
                .contains("| web-2 | 0 | 0 | 0 | 0 | 0 | 3 |"),
        "{}",
        markdown.stdout
    );

    // A drift check while it is still away bumps the same finding.
    let drift = fleet.cli(&["drift", &p]);
    assert_eq!(drift.code, 1, "{}", drift.all());
    assert_eq!(
        open_findings(&fleet),
        [finding("unreachable", "web-2", "node:web-2", 3)]
    );

    // Back, and reached by a run: resolved.
    let child = fleet.agent_process("web-2", "role=web", None);
    fleet.agents.push(("web-2".to_string(), child));
    fleet.wait_online(&["web-2"]);
    let drift = fleet.cli(&["drift", &p, "--detailed-exitcode"]);
    assert_eq!(drift.code, 0, "{}\n{}", drift.all(), fleet.logs());
    let rows = assert_counts_match(&fleet, &drift);
    assert_eq!(rows["web-2"].status, "ok", "{}", drift.stdout);
    assert!(open_findings(&fleet).is_empty());
    let all = fleet.cli(&["findings", "--all"]);
    assert!(
        all.stdout.contains("resolved  unreachable"),
        "{}",
        all.stdout
    );
}

#[test]
fn a_node_never_applied_is_pending_in_drift_not_drifted() {
    let mut fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    let p = project(&fleet);
    let apply = fleet.cli(&["apply", &p, "--yes"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());

    // A node enrolled after the apply: nothing was ever asked of it.
    fleet.add_agent("web-2", "role=web");
    fleet.wait_online(&["web-2"]);
    let drift = fleet.cli(&["drift", &p, "--detailed-exitcode"]);
    assert_eq!(drift.code, 0, "pending is no drift: {}", drift.all());
    let rows = assert_counts_match(&fleet, &drift);
    assert_eq!(rows["web-2"].status, "pending", "{}", drift.stdout);
    assert_eq!(rows["web-2"].counts["pending"], 3, "{}", drift.stdout);
    assert_eq!(rows["web-2"].counts["drifted"], 0, "{}", drift.stdout);
    assert_eq!(rows["web-1"].status, "ok", "{}", drift.stdout);
    assert!(open_findings(&fleet).is_empty(), "{}", drift.stdout);

    // Once applied, the node's drift is drift: counted under DRIFTED, never CHANGED.
    let apply = fleet.cli(&["apply", &p, "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    std::fs::write(fleet.root("web-2").join("app/a"), "edited\n").unwrap();
    std::fs::remove_file(fleet.root("web-1").join("app/b")).unwrap();
    let drift = fleet.cli(&["drift", &p, "--detailed-exitcode"]);
    assert_eq!(drift.code, 2, "{}", drift.all());
    let rows = assert_counts_match(&fleet, &drift);
    for node in ["web-1", "web-2"] {
        assert_eq!(rows[node].counts["drifted"], 1, "{}", drift.stdout);
        assert_eq!(rows[node].counts["changed"], 0, "{}", drift.stdout);
    }
    let mut findings = open_findings(&fleet);
    findings.sort();
    assert_eq!(
        findings,
        [
            finding("drift", "web-1", "file:/app/b", 1),
            finding("drift", "web-2", "file:/app/a", 1),
        ]
    );
}

#[test]
fn a_stale_saved_fleet_plan_is_refused_for_its_node_as_a_whole() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web"), ("web-2", "role=web")]);
    let p = project(&fleet);
    let plan_file = fleet.env.path().join("fleet.plan");
    let plan_path = plan_file.to_str().unwrap();
    let plan = fleet.cli(&["plan", &p, "-o", plan_path]);
    assert_eq!(plan.code, 0, "{}", plan.all());

    // On web-1 some of the three resources move after the plan (`/app` and `/app/a`).
    std::fs::create_dir_all(fleet.root("web-1").join("app")).unwrap();
    std::fs::write(fleet.root("web-1").join("app/a"), "hand-made\n").unwrap();
    let apply = fleet.cli(&["apply", plan_path]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    let rows = assert_counts_match(&fleet, &apply);
    assert_eq!(rows["web-1"].status, "refused", "{}", apply.stdout);
    assert!(
        rows["web-1"].message.contains("moved since the plan")
            && rows["web-1"].message.contains("file:/app/a"),
        "{}",
        apply.stdout
    );
    assert_eq!(rows["web-1"].counts["failed"], 0, "{}", apply.stdout);
    assert_eq!(rows["web-1"].counts["skipped"], 3, "{}", apply.stdout);
    assert_eq!(rows["web-2"].status, "ok", "{}", apply.stdout);
    assert_eq!(rows["web-2"].counts["changed"], 3, "{}", apply.stdout);
    // Nothing on web-1 moved, not even what had not moved since the plan.
    assert!(!fleet.root("web-1").join("app/b").exists());
    assert_eq!(
        std::fs::read_to_string(fleet.root("web-1").join("app/a")).unwrap(),
        "hand-made\n"
    );
    // A refused plan is no failure of the node's resources.
    assert!(open_findings(&fleet).is_empty(), "{}", apply.stdout);
}

#[test]
fn node_table_counts_are_the_recorded_results() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web"), ("web-2", "role=web")]);
    let p = project(&fleet);
    // On web-1 `/app` is a file: the directory fails and the files in it are skipped.
    std::fs::write(fleet.root("web-1").join("app"), "not a directory\n").unwrap();
    let apply = fleet.cli(&["apply", &p, "--yes"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    let rows = assert_counts_match(&fleet, &apply);
    assert_eq!(rows["web-1"].status, "failed", "{}", apply.stdout);
    assert!(rows["web-1"].counts["failed"] >= 1, "{}", apply.stdout);
    assert_eq!(
        rows["web-1"].counts["failed"] + rows["web-1"].counts["skipped"],
        3,
        "{}",
        apply.stdout
    );
    assert_eq!(rows["web-2"].counts["changed"], 3, "{}", apply.stdout);
    let failures: Vec<_> = open_findings(&fleet)
        .into_iter()
        .filter(|f| f.0 == "failure")
        .collect();
    assert_eq!(
        failures.len(),
        rows["web-1"].counts["failed"],
        "{failures:?}"
    );
}
