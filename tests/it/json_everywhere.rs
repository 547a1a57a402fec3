//! Every command that prints results prints JSON with `--format json` (docs/reference/json.md),
//! in local mode and against a real controller with real agents; and the plain tables keep
//! their columns aligned whatever the length of a node name.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Output, TestEnv};
use crate::fleet_harness::{Fleet, wait_for};

const SITE: &str = "steward: 1
resources:
  directory:/srv: { mode: \"0755\" }
  file:/srv/motd: { content: \"hello\\n\" }
";

/// Standard output as JSON, after checking the exit code.
#[track_caller]
fn json(out: &Output, code: i32) -> serde_json::Value {
    assert_eq!(out.code, code, "{}", out.all());
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}):\n{}", out.stdout))
}

/// A versioned answer of this kind.
#[track_caller]
fn answer(out: &Output, kind: &str) -> serde_json::Value {
    let value = json(out, 0);
    assert_eq!(value["format_version"], "1", "{}", out.stdout);
    assert_eq!(value["kind"], kind, "{}", out.stdout);
    value
}

fn local_project() -> TestEnv {
    let env = TestEnv::new();
    env.write("site.yaml", SITE);
    env.mkdir("root");
    env
}

#[test]
fn validate_plan_and_graph() {
    let env = local_project();
    let validate = json(&env.run(&["validate", ".", "--format", "json"]), 0);
    assert_eq!(validate["format_version"], "1");
    assert_eq!(validate["valid"], true);
    let plan = answer(
        &env.run(&["plan", ".", "--root", "root", "--format", "json"]),
        "steward-plan",
    );
    assert_eq!(plan["summary"]["create"], 2);
    let graph = json(&env.run(&["graph", ".", "--format", "json"]), 0);
    assert_eq!(graph["format_version"], "1");
    assert_eq!(graph["nodes"][0]["name"], "local");
}

#[test]
fn apply_prints_the_recorded_run() {
    let env = local_project();
    let apply = env.run(&["apply", ".", "--root", "root", "--yes", "--format", "json"]);
    let run = answer(&apply, "steward-run");
    assert_eq!(run["run_kind"], "apply");
    assert_eq!(run["summary"]["changed"], 2);
    assert_eq!(env.read("root/srv/motd"), "hello\n");
    // Nothing left to do is still a recorded run, as JSON too.
    let again = env.run(&["apply", ".", "--root", "root", "--yes", "--format", "json"]);
    assert_eq!(answer(&again, "steward-run")["summary"]["unchanged"], 2);
    // `report` prints the same run.
    let report = answer(&env.run(&["report", "--format", "json"]), "steward-run");
    assert_eq!(report["id"], answer(&again, "steward-run")["id"]);
}

#[test]
fn apply_as_json_needs_yes() {
    let env = local_project();
    let out = env.run(&["apply", ".", "--root", "root", "--format", "json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("apply --format json needs --yes"),
        "{}",
        out.stderr
    );
    assert!(!env.path().join("root/srv").exists());
}

#[test]
fn apply_of_a_saved_plan_as_json() {
    let env = local_project();
    let plan = env.run(&["plan", ".", "--root", "root", "-o", "plan.json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let run = answer(
        &env.run(&["apply", "plan.json", "--format", "json"]),
        "steward-run",
    );
    assert_eq!(run["summary"]["changed"], 2);
}

#[test]
fn drift_runs_findings_and_resolve() {
    let env = local_project();
    assert_eq!(env.run(&["apply", ".", "--root", "root", "--yes"]).code, 0);
    env.write("root/srv/motd", "edited\n");
    let drift = env.run(&["drift", ".", "--root", "root", "--format", "json"]);
    let drift = answer(&drift, "steward-run");
    assert_eq!(drift["run_kind"], "drift");
    assert_eq!(drift["summary"]["drifted"], 1);

    let runs = answer(&env.run(&["runs", "--format", "json"]), "steward-runs");
    let kinds: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["drift", "apply"]);
    assert_eq!(runs["runs"][0]["counts"]["drifted"], 1);

    let findings = answer(
        &env.run(&["findings", "--format", "json"]),
        "steward-findings",
    );
    assert_eq!(findings["all"], false);
    let finding = &findings["findings"][0];
    assert_eq!(finding["resource"], "file:/srv/motd");
    assert_eq!(finding["open"], true);
    let id = finding["id"].to_string();

    let resolved = env.run(&["findings", "resolve", &id, "--format", "json"]);
    let resolved = answer(&resolved, "steward-finding");
    assert_eq!(resolved["finding"]["open"], false);
    assert_eq!(resolved["finding"]["resource"], "file:/srv/motd");
    let open = answer(
        &env.run(&["findings", "--format", "json"]),
        "steward-findings",
    );
    assert_eq!(open["findings"], serde_json::json!([]));
}

#[test]
fn facts_and_schema() {
    let env = TestEnv::new();
    let facts = json(&env.run(&["facts", "--format", "json"]), 0);
    assert!(facts["hostname"].is_string(), "{facts}");
    let schema = json(&env.run(&["schema"]), 0);
    assert!(schema["$schema"].is_string());
}

/// `import --format json` prints the document as JSON, which steward reads as YAML: saved
/// as a `.yaml` file it validates, and plans no change.
#[test]
fn import_as_json_is_a_document() {
    let env = local_project();
    assert_eq!(env.run(&["apply", ".", "--root", "root", "--yes"]).code, 0);
    let import = env.run(&[
        "--root",
        "root",
        "import",
        "directory:/srv",
        "file:/srv/motd",
        "--format",
        "json",
    ]);
    let document = json(&import, 0);
    assert_eq!(document["steward"], 1);
    assert_eq!(
        document["resources"]["file:/srv/motd"]["content"],
        "hello\n"
    );
    env.write("imported/site.yaml", &import.stdout);
    let validate = env.run(&["validate", "imported"]);
    assert_eq!(validate.code, 0, "{}", validate.all());
    let plan = env.run(&["plan", "imported", "--root", "root", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
}

/// The cells of a table row, cut at the offsets where the header's columns start.
fn cells(header: &str, names: &[&str], row: &str) -> Vec<String> {
    let mut starts: Vec<usize> = names
        .iter()
        .map(|name| {
            header
                .find(name)
                .unwrap_or_else(|| panic!("no {name} in {header}"))
        })
        .collect();
    starts.push(usize::MAX);
    let chars: Vec<char> = row.chars().collect();
    starts
        .windows(2)
        .map(|pair| {
            let (start, end) = (pair[0], pair[1].min(chars.len()));
            // An empty last cell leaves the row shorter than the header.
            if start > 0 && start <= chars.len() {
                assert_eq!(chars.get(start - 1), Some(&' '), "a cell overflows: {row}");
            }
            chars[start.min(end)..end]
                .iter()
                .collect::<String>()
                .trim()
                .to_string()
        })
        .collect()
}

/// The rows of a table starting at its header line, cut into cells; the header's own cells
/// are its names.
fn table(stdout: &str, names: &[&str]) -> Vec<Vec<String>> {
    let mut lines = stdout
        .lines()
        .skip_while(|line| !line.starts_with(names[0]))
        .take_while(|line| !line.is_empty() && !line.starts_with("Recorded as run"));
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no table in {stdout}"));
    assert_eq!(cells(header, names, header), names, "{stdout}");
    lines.map(|row| cells(header, names, row)).collect()
}

const LONG: &str = "node-with-a-34-character-long-name";

#[test]
fn long_node_names_keep_columns_aligned() {
    assert_eq!(LONG.len(), 34);
    let fleet = Fleet::with_agents(&[(LONG, "role=web"), ("web-2", "role=web")]);
    let nodes = fleet.cli(&["nodes"]);
    assert_eq!(nodes.code, 0, "{}", nodes.all());
    let rows = table(
        &nodes.stdout,
        &["NODE", "STATUS", "TAGS", "CLAIMED", "OS", "LAST SEEN"],
    );
    let names: Vec<&str> = rows.iter().map(|row| row[0].as_str()).collect();
    assert_eq!(names, [LONG, "web-2"], "{}", nodes.stdout);
    assert!(
        rows.iter()
            .all(|row| row[1] == "online" && row[2] == "role=web")
    );

    let site = fleet.env.write(
        "project/site.yaml",
        "steward: 1
associations:
  web:
    targets: { tags: { role: web } }
resources:
  file:/motd: { content: \"hi\\n\" }
",
    );
    let project = site.parent().unwrap().to_str().unwrap().to_string();
    let apply = fleet.cli(&["apply", &project, "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let names = [
        "NODE", "STATUS", "CHANGED", "DRIFTED", "PENDING", "FAILED", "SKIPPED", "MESSAGE",
    ];
    let rows = table(&apply.stdout, &names);
    assert_eq!(rows.len(), 2, "{}", apply.stdout);
    for row in &rows {
        assert!(
            [LONG, "web-2"].contains(&row[0].as_str()),
            "{}",
            apply.stdout
        );
        assert_eq!(
            row[1..7],
            ["ok", "1", "0", "0", "0", "0"],
            "{}",
            apply.stdout
        );
    }

    std::fs::write(fleet.root(LONG).join("motd"), "edited\n").unwrap();
    let drift = fleet.cli(&["drift", &project]);
    assert_eq!(drift.code, 0, "{}", drift.all());

    let runs = fleet.cli(&["runs"]);
    assert_eq!(runs.code, 0, "{}", runs.all());
    let names = [
        "RUN",
        "KIND",
        "STARTED",
        "USER",
        "CHANGED",
        "DRIFTED",
        "FAILED",
        "SKIPPED",
        "UNCHANGED",
    ];
    let rows = table(&runs.stdout, &names);
    let kinds: Vec<&str> = rows.iter().map(|row| row[1].as_str()).collect();
    assert_eq!(kinds, ["drift", "apply"], "{}", runs.stdout);
    assert_eq!(rows[0][4..], ["0", "1", "0", "0", "1"], "{}", runs.stdout);
    assert_eq!(rows[1][4..], ["2", "0", "0", "0", "0"], "{}", runs.stdout);

    let findings = fleet.cli(&["findings"]);
    assert_eq!(findings.code, 0, "{}", findings.all());
    let names = [
        "ID",
        "STATUS",
        "KIND",
        "SEVERITY",
        "NODE",
        "RESOURCE",
        "COUNT",
        "LAST SEEN",
    ];
    let rows = table(&findings.stdout, &names);
    assert_eq!(rows.len(), 1, "{}", findings.stdout);
    assert_eq!(
        rows[0][1..7],
        ["open", "drift", "unspecified", LONG, "file:/motd", "1"]
    );
}

#[test]
fn fleet_commands_print_json() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    let data = fleet.data.to_str().unwrap().to_string();

    let token = fleet.cli(&[
        "token",
        "create",
        "--data-dir",
        &data,
        "--name",
        "web-9",
        "--tags",
        "role=db",
        "--format",
        "json",
    ]);
    let token = answer(&token, "steward-join-token");
    assert!(token["token"].as_str().unwrap().len() > 20, "{token}");
    assert_eq!(token["node"], "web-9");
    assert_eq!(token["tags"]["role"], "db");
    assert_eq!(token["ttl_seconds"], 3600);

    let nodes = answer(&fleet.cli(&["nodes", "--format", "json"]), "steward-nodes");
    assert_eq!(nodes["nodes"][0]["name"], "web-1");
    assert_eq!(nodes["nodes"][0]["online"], true);

    let tagged = fleet.cli(&["node", "tag", "web-1", "zone=a", "--format", "json"]);
    let tagged = answer(&tagged, "steward-node-tags");
    assert_eq!(tagged["node"], "web-1");
    assert_eq!(tagged["tags"]["zone"], "a");
    assert_eq!(tagged["tags"]["role"], "web");

    let site = fleet.env.write(
        "project/site.yaml",
        "steward: 1
associations:
  web:
    targets: { tags: { role: web } }
resources:
  file:/motd: { content: \"hi\\n\" }
",
    );
    let project = site.parent().unwrap().to_str().unwrap().to_string();
    let validate = json(&fleet.cli(&["validate", &project, "--format", "json"]), 0);
    assert_eq!(validate["valid"], true);
    let graph = json(&fleet.cli(&["graph", &project, "--format", "json"]), 0);
    assert_eq!(graph["format_version"], "1");
    let plan = answer(
        &fleet.cli(&["plan", &project, "--format", "json"]),
        "steward-plan",
    );
    assert_eq!(plan["summary"]["create"], 1);

    let refused = fleet.cli(&["apply", &project, "--format", "json"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stderr.contains("needs --yes"), "{}", refused.stderr);
    let apply = fleet.cli(&["apply", &project, "--yes", "--format", "json"]);
    let apply = answer(&apply, "steward-run");
    assert_eq!(apply["run_kind"], "apply");
    assert_eq!(apply["summary"]["changed"], 1);

    std::fs::write(fleet.root("web-1").join("motd"), "edited\n").unwrap();
    let drift = answer(
        &fleet.cli(&["drift", &project, "--format", "json"]),
        "steward-run",
    );
    assert_eq!(drift["run_kind"], "drift");
    assert_eq!(drift["summary"]["drifted"], 1);
    let report = answer(&fleet.cli(&["report", "--format", "json"]), "steward-run");
    assert_eq!(report["id"], drift["id"]);

    let runs = answer(&fleet.cli(&["runs", "--format", "json"]), "steward-runs");
    assert_eq!(runs["runs"][0]["id"], drift["id"]);
    assert_eq!(runs["runs"][1]["kind"], "apply");
    let findings = answer(
        &fleet.cli(&["findings", "--format", "json"]),
        "steward-findings",
    );
    let finding = &findings["findings"][0];
    assert_eq!(finding["node"], "web-1");
    let id = finding["id"].to_string();
    let resolved = fleet.cli(&["findings", "resolve", &id, "--format", "json"]);
    assert_eq!(
        answer(&resolved, "steward-finding")["finding"]["open"],
        false
    );

    // `run --format json` prints JSON lines; a document run prints the recorded run.
    let run = fleet.cli(&["run", "--target", "all", "--format", "json", "--", "true"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events[0]["event"], "begin");
    assert_eq!(events.last().unwrap()["event"], "done");
    let document = fleet.cli(&[
        "run",
        "--target",
        "web-1",
        "--document",
        &project,
        "--format",
        "json",
    ]);
    assert_eq!(answer(&document, "steward-run")["run_kind"], "apply");

    // A command in progress, cancelled.
    let mut long = fleet
        .cli_command(&[
            "run", "--target", "all", "--format", "json", "--", "sleep", "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut begin = String::new();
    BufReader::new(long.stdout.take().unwrap())
        .read_line(&mut begin)
        .unwrap();
    let begin: serde_json::Value = serde_json::from_str(&begin).unwrap();
    let run_id = begin["run_id"].as_str().unwrap().to_string();
    let cancel = fleet.cli(&["run", "cancel", &run_id, "--format", "json"]);
    let cancel = answer(&cancel, "steward-run-cancel");
    assert_eq!(cancel["run"], run_id.as_str());
    assert!(cancel["signalled"].is_u64(), "{cancel}");
    wait_for("the cancelled run", Duration::from_secs(30), || {
        long.try_wait().unwrap()
    });

    let revoked = answer(
        &fleet.cli(&["node", "revoke", "web-1", "--format", "json"]),
        "steward-node-revoked",
    );
    assert_eq!(revoked["node"], "web-1");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
}
