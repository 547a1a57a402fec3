//! `steward drift`, `runs` and `findings` through the binary, with the real SQLite store.

use crate::common::TestEnv;

fn project(env: &TestEnv) -> String {
    env.write(
        "p/site.yaml",
        "steward: 1
resources:
  directory:/etc: {}
  file:/etc/motd: { content: \"hello\\n\", mode: \"0644\" }
  file:/etc/issue: { content: \"welcome\\n\" }
",
    );
    env.mkdir("root").to_str().unwrap().to_string()
}

#[test]
fn apply_then_manual_edit_then_drift_opens_a_finding_and_apply_resolves_it() {
    let env = TestEnv::new();
    let root = project(&env);
    assert_eq!(env.run(&["--root", &root, "apply", "p", "--yes"]).code, 0);
    let clean = env.run(&["--root", &root, "drift", "p", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "{}", clean.all());

    std::fs::write(env.path().join("root/etc/motd"), "edited\n").unwrap();
    let drift = env.run(&["--root", &root, "drift", "p", "--detailed-exitcode"]);
    assert_eq!(drift.code, 2, "{}", drift.all());
    assert!(
        drift.stdout.contains("Drift: 1 drifted, 0 failed"),
        "{}",
        drift.all()
    );
    assert_eq!(
        env.read("root/etc/motd"),
        "edited\n",
        "drift changes nothing"
    );

    let findings = env.run(&["findings", "--project", "p"]);
    assert_eq!(findings.code, 0, "{}", findings.all());
    assert!(
        findings
            .stdout
            .lines()
            .any(|line| line.split_whitespace().take(3).eq(["1", "open", "drift"])),
        "{}",
        findings.all()
    );
    assert!(
        findings.stdout.contains("file:/etc/motd"),
        "{}",
        findings.all()
    );

    // Seen again: the same finding, counted twice.
    env.run(&["--root", &root, "drift", "p"]);
    let findings = env.run(&["findings", "--project", "p"]);
    assert_eq!(findings.stdout.lines().count(), 2, "{}", findings.all());
    assert!(findings.stdout.contains("    2  "), "{}", findings.all());

    // A repairing apply resolves it.
    assert_eq!(env.run(&["--root", &root, "apply", "p", "--yes"]).code, 0);
    let open = env.run(&["findings", "--project", "p"]);
    assert!(open.stdout.contains("No open findings."), "{}", open.all());
    let all = env.run(&["findings", "--project", "p", "--all"]);
    assert!(all.stdout.contains("resolved  drift"), "{}", all.all());

    let runs = env.run(&["runs", "--project", "p"]);
    assert_eq!(
        runs.stdout
            .lines()
            .filter(|l| l.contains(" drift "))
            .count(),
        3,
        "{}",
        runs.all()
    );
    assert_eq!(
        runs.stdout
            .lines()
            .filter(|l| l.contains(" apply "))
            .count(),
        2,
        "{}",
        runs.all()
    );
}

#[test]
fn findings_resolve_by_hand() {
    let env = TestEnv::new();
    let root = project(&env);
    assert_eq!(env.run(&["--root", &root, "apply", "p", "--yes"]).code, 0);
    std::fs::remove_file(env.path().join("root/etc/issue")).unwrap();
    assert_eq!(
        env.run(&["--root", &root, "drift", "p", "--detailed-exitcode"])
            .code,
        2
    );
    let out = env.run(&["findings", "--project", "p", "resolve", "1"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("resolved finding 1: drift of file:/etc/issue on local"),
        "{}",
        out.all()
    );
    assert_eq!(
        env.run(&["findings", "--project", "p", "resolve", "99"])
            .code,
        1
    );
}

#[test]
fn a_corrupt_store_is_refused_and_kept() {
    let env = TestEnv::new();
    let root = project(&env);
    env.mkdir("p/.steward");
    let junk = b"definitely not sqlite, and long enough to have a header".to_vec();
    env.write("p/.steward/steward.db", &junk);
    let out = env.run(&["--root", &root, "drift", "p"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("is not a steward store (not a SQLite database)"),
        "{}",
        out.all()
    );
    assert_eq!(
        std::fs::read(env.path().join("p/.steward/steward.db")).unwrap(),
        junk
    );
    assert_eq!(env.run(&["runs", "--project", "p"]).code, 1);
}

#[test]
fn reading_commands_without_a_store() {
    let env = TestEnv::new();
    project(&env);
    let out = env.run(&["runs", "--project", "p"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("no runs recorded"), "{}", out.all());
    assert!(!env.path().join("p/.steward/steward.db").exists());
}

#[test]
fn two_drift_runs_at_once_both_land() {
    let env = TestEnv::new();
    let root = project(&env);
    assert_eq!(env.run(&["--root", &root, "apply", "p", "--yes"]).code, 0);
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
            .args(["--root", &root, "drift", "p"])
            .current_dir(env.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..4).map(|_| spawn()).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let runs = env.run(&["runs", "--project", "p"]);
    assert_eq!(
        runs.stdout
            .lines()
            .filter(|l| l.contains(" drift "))
            .count(),
        4,
        "{}",
        runs.all()
    );
}

/// Issue 4's "Done when": apply → manual edit → drift (exit 2) → every report format renders
/// that run for its consumers → the finding is open → a repairing apply resolves it.
#[test]
fn every_report_format_renders_the_drift_run() {
    let env = TestEnv::new();
    let root = project(&env);
    assert_eq!(env.run(&["--root", &root, "apply", "p", "--yes"]).code, 0);
    std::fs::write(env.path().join("root/etc/motd"), "edited\n").unwrap();
    assert_eq!(
        env.run(&["--root", &root, "drift", "p", "--detailed-exitcode"])
            .code,
        2
    );

    let report = |format: &str| {
        let out = env.run(&["report", "--project", "p", "--format", format]);
        assert_eq!(out.code, 0, "{format}: {}", out.all());
        out.stdout
    };

    let json: serde_json::Value = serde_json::from_str(&report("json")).unwrap();
    assert_eq!(json["format_version"], "1");
    assert_eq!(json["run_kind"], "drift");
    let drifted: Vec<&str> = json["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "drifted")
        .map(|r| r["resource"].as_str().unwrap())
        .collect();
    assert_eq!(drifted, ["file:/etc/motd"]);

    let junit = report("junit");
    let doc = roxmltree::Document::parse(&junit).unwrap();
    let failures: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase") && n.children().any(|c| c.has_tag_name("failure")))
        .map(|n| n.attribute("name").unwrap())
        .collect();
    assert_eq!(failures, ["file:/etc/motd"]);
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .count(),
        3
    );

    let sarif_text = report("sarif");
    let sarif: serde_json::Value = serde_json::from_str(&sarif_text).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/sarif/sarif-schema-2.1.0.json")).unwrap();
    let validator = jsonschema::draft7::options().build(&schema).unwrap();
    assert!(validator.is_valid(&sarif), "{sarif_text}");
    let result = &sarif["runs"][0]["results"][0];
    let location = &result["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], "site.yaml");
    assert_eq!(location["region"]["startLine"], 4);
    assert_eq!(sarif["runs"][0]["results"].as_array().unwrap().len(), 1);

    let markdown = report("markdown");
    assert!(markdown.contains("| node |"), "{markdown}");
    assert!(markdown.contains("| local | 0 | 1 |"), "{markdown}");
    assert!(markdown.contains("file:/etc/motd"), "{markdown}");

    let human = report("human");
    assert!(human.contains("NON-COMPLIANT"), "{human}");

    assert!(
        env.run(&["findings", "--project", "p"])
            .stdout
            .contains("file:/etc/motd")
    );
    assert_eq!(env.run(&["--root", &root, "apply", "p", "--yes"]).code, 0);
    assert!(
        env.run(&["findings", "--project", "p"])
            .stdout
            .contains("No open findings.")
    );
}

#[test]
fn a_report_of_a_run_that_does_not_exist_lists_the_runs() {
    let env = TestEnv::new();
    let root = project(&env);
    assert_eq!(env.run(&["--root", &root, "drift", "p"]).code, 0);
    let out = env.run(&["report", "no-such-run", "--project", "p"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("no run `no-such-run`; the recorded runs are:"),
        "{}",
        out.all()
    );
    assert!(out.stderr.contains(" drift "), "{}", out.all());
}

#[test]
fn stored_runs_hold_no_secrets() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    env.mkdir("root/etc");
    env.write(
        "p/site.yaml",
        "steward: 1
parameters:
  token: { type: string, sensitive: true }
resources:
  file:/etc/token: { content: \"{{ params.token }}\\n\" }
  exec:use-token:
    command: [/bin/sh, -c, 'echo \"{{ params.token }} rejected\" >&2; exit 1']
",
    );
    let root = root.to_str().unwrap();
    let secret = "tok-4f9a-secret";
    let param = format!("token={secret}");
    assert_eq!(
        env.run(&["--root", root, "apply", "p", "--yes", "--param", &param])
            .code,
        1
    );
    std::fs::write(env.path().join("root/etc/token"), "changed\n").unwrap();
    env.run(&["--root", root, "drift", "p", "--param", &param]);
    for format in ["human", "json", "junit", "sarif", "markdown"] {
        let out = env.run(&["report", "--project", "p", "--format", format]);
        assert!(!out.stdout.contains(secret), "{format}: {}", out.stdout);
    }
    let apply_run = env
        .run(&["runs", "--project", "p"])
        .stdout
        .lines()
        .find(|l| l.contains(" apply "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let out = env.run(&["report", &apply_run, "--project", "p", "--format", "json"]);
    assert!(
        out.stdout.contains("(sensitive) rejected"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(secret));
    let db = std::fs::read(env.path().join("p/.steward/steward.db")).unwrap();
    assert!(
        !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret reached the store file"
    );
}

#[test]
fn drift_as_json() {
    let env = TestEnv::new();
    let root = project(&env);
    let out = env.run(&[
        "--root",
        &root,
        "drift",
        "p",
        "--format",
        "json",
        "--detailed-exitcode",
    ]);
    assert_eq!(out.code, 2, "{}", out.all());
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["run_kind"], "drift");
    assert_eq!(json["summary"]["drifted"], 3);
}

#[test]
fn store_flags_after_the_subcommand_and_a_second_resolve() {
    let env = TestEnv::new();
    let root = project(&env);
    assert_eq!(env.run(&["--root", &root, "drift", "p"]).code, 0);
    let out = env.run(&["findings", "resolve", "1", "--project", "p"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let again = env.run(&["findings", "resolve", "1", "--project", "p"]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(
        again.stderr.contains("finding 1 is already resolved"),
        "{}",
        again.all()
    );
}

#[test]
fn apply_refuses_a_foreign_store_before_changing_anything() {
    let env = TestEnv::new();
    let root = project(&env);
    env.mkdir("p/.steward");
    rusqlite::Connection::open(env.path().join("p/.steward/steward.db"))
        .unwrap()
        .execute_batch("CREATE TABLE mine (x TEXT);")
        .unwrap();
    let out = env.run(&["--root", &root, "apply", "p", "--yes"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("is not a steward store"),
        "{}",
        out.all()
    );
    assert!(
        !env.path().join("root/etc/motd").exists(),
        "nothing was applied"
    );
}

#[test]
fn an_apply_with_nothing_to_do_resolves_findings() {
    let env = TestEnv::new();
    let root = project(&env);
    assert_eq!(env.run(&["--root", &root, "apply", "p", "--yes"]).code, 0);
    std::fs::write(env.path().join("root/etc/motd"), "edited\n").unwrap();
    assert_eq!(
        env.run(&["--root", &root, "drift", "p", "--detailed-exitcode"])
            .code,
        2
    );
    std::fs::write(env.path().join("root/etc/motd"), "hello\n").unwrap();
    assert_eq!(env.run(&["--root", &root, "apply", "p", "--yes"]).code, 0);
    assert!(
        env.run(&["findings", "--project", "p"])
            .stdout
            .contains("No open findings.")
    );
}
