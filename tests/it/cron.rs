//! The `cron` type through the binary under `--root`: plan, apply, a second plan, drift,
//! removal, and the located errors of a bad schedule or NAME, in YAML and in KDL.

use std::os::unix::fs::PermissionsExt;

use crate::common::TestEnv;

const YAML: &str = r#"steward: 1
resources:
  directory:/etc: {}
  directory:/etc/cron.d: {}
  cron:backup:
    schedule: "0 3 * * *"
    command: /usr/local/bin/backup --date $(date +%F)
    user: backup
    env:
      MAILTO: ops@example.com
      PATH: /usr/bin:/bin
"#;

const KDL: &str = r#"steward 1
directory "/etc"
directory "/etc/cron.d"
cron "backup" schedule="0 3 * * *" user="backup" {
    command "/usr/local/bin/backup --date $(date +%F)"
    env MAILTO="ops@example.com" PATH="/usr/bin:/bin"
}
"#;

/// What steward writes for the job above: `%` escaped, as cron reads it.
const JOB_FILE: &str = "# managed by steward: cron:backup
MAILTO=ops@example.com
PATH=/usr/bin:/bin
0 3 * * * backup /usr/local/bin/backup --date $(date +\\%F)
";

/// A project of one document and an empty root; returns the root.
fn project(env: &TestEnv, name: &str, text: &str) -> String {
    env.write(&format!("p/{name}"), text);
    env.mkdir("root").to_str().unwrap().to_string()
}

fn plan_apply_drift_remove(name: &str, text: &str) {
    let env = TestEnv::new();
    let root = project(&env, name, text);

    let plan = env.run(&["--root", &root, "plan", "p"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    for line in [
        "  + cron:backup",
        "      schedule: \"0 3 * * *\"",
        "      user: \"backup\"",
        "      +# managed by steward: cron:backup",
        "      +MAILTO=ops@example.com",
        "      +0 3 * * * backup /usr/local/bin/backup --date $(date +\\%F)",
        "Plan: 3 to create, 0 to update, 0 to replace, 0 to delete, 0 to run.",
    ] {
        assert!(plan.stdout.contains(line), "{line}\n{}", plan.all());
    }

    let apply = env.run(&["--root", &root, "apply", "p", "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert!(
        apply.stdout.contains("  + cron:backup: created"),
        "{}",
        apply.all()
    );
    assert_eq!(env.read("root/etc/cron.d/backup"), JOB_FILE);
    let mode = std::fs::metadata(env.path().join("root/etc/cron.d/backup"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o644);

    let again = env.run(&["--root", &root, "plan", "p", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(again.stdout.contains("No changes."), "{}", again.all());

    // Edited by hand: drift sees it and records it, and changes nothing.
    let edited = JOB_FILE.replace("0 3 * * *", "0 4 * * *");
    std::fs::write(env.path().join("root/etc/cron.d/backup"), &edited).unwrap();
    let drift = env.run(&[
        "--root",
        &root,
        "drift",
        "p",
        "--format",
        "json",
        "--detailed-exitcode",
    ]);
    assert_eq!(drift.code, 2, "{}", drift.all());
    let json: serde_json::Value = serde_json::from_str(&drift.stdout).unwrap();
    assert_eq!(json["summary"]["drifted"], 1, "{}", drift.all());
    assert!(drift.stdout.contains("drifted"), "{}", drift.all());
    assert_eq!(env.read("root/etc/cron.d/backup"), edited);
    let plan = env.run(&["--root", &root, "plan", "p"]);
    assert!(
        plan.stdout
            .contains("      schedule: \"0 4 * * *\" → \"0 3 * * *\""),
        "{}",
        plan.all()
    );

    // A file steward did not write is shown as differing and rewritten whole.
    std::fs::write(
        env.path().join("root/etc/cron.d/backup"),
        "0 3 * * * root /bin/true\n",
    )
    .unwrap();
    let plan = env.run(&["--root", &root, "plan", "p"]);
    assert!(
        plan.stdout
            .contains("  ~ cron:backup (not written by steward)"),
        "{}",
        plan.all()
    );
    let apply = env.run(&["--root", &root, "apply", "p", "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(env.read("root/etc/cron.d/backup"), JOB_FILE);

    // `ensure: absent` removes the job file.
    let absent = if name.ends_with(".kdl") {
        "steward 1\ncron \"backup\" ensure=\"absent\"\n"
    } else {
        "steward: 1\nresources:\n  cron:backup: { ensure: absent }\n"
    };
    env.write(&format!("p/{name}"), absent);
    let apply = env.run(&["--root", &root, "apply", "p", "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert!(
        apply.stdout.contains("  - cron:backup: deleted"),
        "{}",
        apply.all()
    );
    assert!(!env.path().join("root/etc/cron.d/backup").exists());
    let again = env.run(&["--root", &root, "plan", "p", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.all());
}

#[test]
fn yaml_job_is_planned_applied_drifts_and_is_removed() {
    plan_apply_drift_remove("site.yaml", YAML);
}

#[test]
fn kdl_job_is_planned_applied_drifts_and_is_removed() {
    plan_apply_drift_remove("site.kdl", KDL);
}

/// One diagnostic of `validate --format json`: code, `file:line:column` and message.
fn diagnostics(name: &str, text: &str) -> Vec<(String, String, String)> {
    let env = TestEnv::new();
    env.write(name, text);
    let out = env.run(&["validate", ".", "--format", "json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|diag| {
            (
                diag["code"].as_str().unwrap().to_string(),
                format!("{}:{}", diag["line"], diag["column"]),
                diag["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn bad_schedules_and_names_are_located_errors() {
    let yaml = r#"steward: 1
resources:
  cron:minute:
    schedule: "61 * * * *"
    command: /bin/true
  cron:daily:
    schedule: every day
    command: /bin/true
  cron:a.b:
    schedule: "* * * * *"
    command: /bin/true
"#;
    let found = diagnostics("site.yaml", yaml);
    let expected = [
        (
            "schema::invalid_value",
            "4:15",
            "`61 * * * *` is not a cron schedule: ",
        ),
        (
            "schema::invalid_value",
            "7:15",
            "`every day` is not a cron schedule: has 2 fields, not five",
        ),
        (
            "schema::invalid_name",
            "9:3",
            "invalid name for `cron`: `a.b` is not a valid cron.d file name",
        ),
    ];
    assert_eq!(found.len(), expected.len(), "{found:?}");
    for ((code, at, message), (want_code, want_at, want_message)) in found.iter().zip(expected) {
        assert_eq!(
            (code.as_str(), at.as_str()),
            (want_code, want_at),
            "{found:?}"
        );
        assert!(message.starts_with(want_message), "{found:?}");
    }

    let kdl = "steward 1\ncron \"nightly\" schedule=\"61 * * * *\" command=\"/bin/true\"\ncron \"a.b\" schedule=\"* * * * *\" command=\"/bin/true\"\n";
    let found = diagnostics("site.kdl", kdl);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        (found[0].0.as_str(), found[0].1.as_str()),
        ("schema::invalid_value", "2:25"),
        "{found:?}"
    );
    assert!(
        found[0]
            .2
            .starts_with("`61 * * * *` is not a cron schedule")
    );
    assert_eq!(found[1].0, "schema::invalid_name", "{found:?}");
    assert!(found[1].2.contains("`a.b` is not a valid cron.d file name"));
}

#[test]
fn human_diagnostic_points_at_the_schedule() {
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        "steward: 1\nresources:\n  cron:x:\n    schedule: every day\n    command: /bin/true\n",
    );
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1, "{}", out.all());
    for fragment in [
        "schema::invalid_value",
        "`every day` is not a cron schedule: has 2 fields, not five",
        "./site.yaml:4:15",
        "help: use five fields (minute hour day month weekday)",
    ] {
        assert!(out.stderr.contains(fragment), "{fragment}\n{}", out.all());
    }
}

#[test]
fn a_job_needs_a_schedule_and_a_command_and_a_valid_user_and_env() {
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        "steward: 1\nresources:\n  cron:x: { user: Root, env: { 1A: x } }\n",
    );
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 1, "{}", out.all());
    for fragment in [
        "`cron:x` needs `schedule`",
        "`cron:x` needs `command`",
        "`user` `Root` is not a valid user name",
        "`1A` is not an environment variable name",
    ] {
        assert!(out.stderr.contains(fragment), "{fragment}\n{}", out.all());
    }
}

#[test]
fn a_job_comes_after_its_user() {
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        "steward: 1\nresources:\n  cron:x: { schedule: \"* * * * *\", command: /bin/true, user: app }\n  user:app: {}\n",
    );
    let out = env.run(&["graph", ".", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.contains("runs as user"), "{}", out.all());
}
