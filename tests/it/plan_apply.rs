//! `steward plan` and `steward apply` on the local node, under `--root`, as a user runs them.

use std::path::Path;

use crate::common::{TestEnv, normalize};

/// The lifecycle: plan → apply → no-op plan → manual drift → plan shows exactly it →
/// apply repairs → a saved plan made before a manual edit is refused.
fn lifecycle(example: &str, document: &str) {
    let env = TestEnv::new();
    env.copy_from_repo(example, "project");
    let root = env.mkdir("root");
    let root = root.to_str().unwrap();

    let plan = env.run(&["--root", root, "plan", "project", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(
        plan.stdout.contains("+ file:/srv/app/motd"),
        "{}",
        plan.all()
    );

    let apply = env.run(&["--root", root, "apply", "project", "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert!(
        apply.stdout.contains("! exec:app-reload: ran (refresh)"),
        "{}",
        apply.all()
    );
    assert_eq!(
        env.read("root/srv/app/admins/bob"),
        "bob administers this node\n"
    );
    assert_eq!(
        std::fs::read_link(env.path().join("root/srv/app/current")).unwrap(),
        Path::new("/srv/app/app.conf")
    );

    let noop = env.run(&["--root", root, "plan", "project", "--detailed-exitcode"]);
    assert_eq!(noop.code, 0, "{}", noop.all());
    assert!(noop.stdout.contains("No changes."), "{}", noop.all());
    let again = env.run(&["--root", root, "apply", "project", "--yes"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        !again.stdout.contains("app-reload"),
        "a second apply must fire no refresh: {}",
        again.all()
    );

    // Drift: edit a managed file, delete a symlink.
    let motd = env.path().join("root/srv/app/motd");
    let original = std::fs::read_to_string(&motd).unwrap();
    std::fs::write(&motd, format!("{original}edited by hand\n")).unwrap();
    std::fs::remove_file(env.path().join("root/srv/app/current")).unwrap();
    let drift = env.run(&[
        "--root",
        root,
        "plan",
        "project",
        "--detailed-exitcode",
        "-o",
        "saved.json",
    ]);
    assert_eq!(drift.code, 2, "{}", drift.all());
    insta::assert_snapshot!(format!("{document}_drift"), normalize(&drift.stdout));

    // The saved plan applies and repairs exactly that.
    let repair = env.run(&["apply", "saved.json"]);
    assert_eq!(repair.code, 0, "{}", repair.all());
    assert!(
        repair.stdout.contains("~ file:/srv/app/motd: updated"),
        "{}",
        repair.all()
    );
    assert!(
        repair
            .stdout
            .contains("+ symlink:/srv/app/current: created"),
        "{}",
        repair.all()
    );
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), original);
    let clean = env.run(&["--root", root, "plan", "project", "--detailed-exitcode"]);
    assert_eq!(clean.code, 0, "{}", clean.all());

    // A saved plan made before a manual edit is refused, naming what moved.
    let saved = env.run(&["--root", root, "plan", "project", "-o", "stale.json"]);
    assert_eq!(saved.code, 0, "{}", saved.all());
    std::fs::write(
        env.path().join("root/srv/app/admins/alice"),
        "someone else\n",
    )
    .unwrap();
    let stale = env.run(&["apply", "stale.json"]);
    assert_eq!(stale.code, 1, "{}", stale.all());
    assert!(
        stale.stderr.contains("these resources moved"),
        "{}",
        stale.all()
    );
    assert!(
        stale.stderr.contains("local: file:/srv/app/admins/alice"),
        "{}",
        stale.all()
    );
    assert_eq!(
        env.read("root/srv/app/admins/alice"),
        "someone else\n",
        "a refused plan changes nothing"
    );

    // The replaced content was backed up.
    let backups = env.path().join("project/.steward/backups");
    let found = walk_files(&backups)
        .into_iter()
        .any(|p| p.ends_with("srv/app/motd"));
    assert!(
        found,
        "no backup of /srv/app/motd under {}",
        backups.display()
    );
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut res = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return res;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            res.extend(walk_files(&path));
        } else {
            res.push(path);
        }
    }
    res
}

#[test]
fn lifecycle_yaml() {
    lifecycle("examples/quickstart", "yaml");
}

#[test]
fn lifecycle_kdl() {
    lifecycle("examples/quickstart-kdl", "kdl");
}

#[test]
fn saved_plan_refused_when_documents_change() {
    let env = TestEnv::new();
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/a: { content: one }\n",
    );
    let root = env.mkdir("root");
    let root = root.to_str().unwrap();
    assert_eq!(
        env.run(&["--root", root, "plan", "p", "-o", "plan.json"])
            .code,
        0
    );
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/a: { content: two }\n",
    );
    let out = env.run(&["apply", "plan.json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("documents changed since this plan was made: site.yaml (changed)"),
        "{}",
        out.all()
    );
    assert!(!env.path().join("root/a").exists());
}

#[test]
fn a_failure_skips_its_dependents_only() {
    let env = TestEnv::new();
    env.write(
        "p/site.yaml",
        "steward: 1
resources:
  exec:fails:
    command: [/bin/sh, -c, 'echo boom >&2; exit 3']
  file:/dependent:
    content: y
    require: [exec:fails]
  file:/independent: { content: z }
",
    );
    let root = env.mkdir("root");
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 1, "{}", out.all());
    // (A missing parent directory is refused when planning now: tests/it/honest_plans.rs.)
    assert!(
        out.stdout
            .contains("o file:/dependent: skipped because exec:fails failed"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains("+ file:/independent: created"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains(
            "x exec:fails: failed: `/bin/sh -c echo boom >&2; exit 3` exited with 3: boom"
        ),
        "{}",
        out.all()
    );
    assert_eq!(env.read("root/independent"), "z");
    assert!(!env.path().join("root/dependent").exists());
}

#[test]
fn refresh_runs_only_when_a_source_changed() {
    let env = TestEnv::new();
    let log = env.path().join("refresh.log");
    env.write(
        "p/site.yaml",
        format!(
            "steward: 1
parameters:
  version: {{ type: string, default: one }}
resources:
  file:/app.conf: {{ content: \"version={{{{ params.version }}}}\\n\" }}
  exec:reload:
    command: [/bin/sh, -c, 'echo reloaded >> {}']
    refresh_only: true
    subscribe: [file:/app.conf]
",
            log.display()
        ),
    );
    let root = env.mkdir("root");
    let root = root.to_str().unwrap();
    assert_eq!(env.run(&["--root", root, "apply", "p", "--yes"]).code, 0);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "reloaded\n");
    assert_eq!(env.run(&["--root", root, "apply", "p", "--yes"]).code, 0);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "reloaded\n",
        "no change, no refresh"
    );
    let plan = env.run(&["--root", root, "plan", "p", "--param", "version=two"]);
    assert!(
        plan.stdout
            .contains("! exec:reload (runs: refreshed by file:/app.conf)"),
        "{}",
        plan.all()
    );
    assert_eq!(
        env.run(&[
            "--root",
            root,
            "apply",
            "p",
            "--yes",
            "--param",
            "version=two"
        ])
        .code,
        0
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "reloaded\nreloaded\n"
    );
}

#[test]
fn guards_decide_whether_commands_run() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    env.write(
        "p/site.yaml",
        "steward: 1
resources:
  exec:create-marker:
    command: [/bin/touch, marker]
    cwd: /
    creates: /marker
  exec:never:
    command: [/bin/false]
    onlyif: [/bin/false]
  exec:skipped-by-unless:
    command: [/bin/false]
    unless: /bin/true
",
    );
    let plan = env.run(&["--root", root.to_str().unwrap(), "plan", "p"]);
    assert!(
        plan.stdout.contains("! exec:create-marker"),
        "{}",
        plan.all()
    );
    assert!(!plan.stdout.contains("exec:never"), "{}", plan.all());
    assert!(!plan.stdout.contains("skipped-by-unless"), "{}", plan.all());
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(root.join("marker").exists());
    assert_noop_plan(&env, root.to_str().unwrap());
}

#[test]
fn commands_time_out() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  exec:slow:\n    command: [/bin/sleep, '30']\n    timeout: 1\n",
    );
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("timed out"), "{}", out.all());
}

#[test]
fn sensitive_values_never_show() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    env.mkdir("root/etc");
    env.write(
        "p/site.yaml",
        "steward: 1
parameters:
  db_password: { type: string, sensitive: true }
resources:
  file:/etc/app.env:
    content: \"PASSWORD={{ params.db_password }}\\n\"
    mode: \"0600\"
  file:/etc/plain: { content: \"visible\\n\" }
",
    );
    let root = root.to_str().unwrap();
    for format in ["human", "json"] {
        let out = env.run(&[
            "--root",
            root,
            "plan",
            "p",
            "--format",
            format,
            "--param",
            "db_password=hunter2",
            "-o",
            "saved.json",
        ]);
        assert_eq!(out.code, 0, "{}", out.all());
        assert!(
            !out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"),
            "{}",
            out.all()
        );
        assert!(
            out.stdout.contains("(sensitive)") || out.stdout.contains("\"sensitive\": true"),
            "{}",
            out.all()
        );
        assert!(out.stdout.contains("visible"), "{}", out.all());
        assert!(!env.read("saved.json").contains("hunter2"));
    }
    let out = env.run(&[
        "--root",
        root,
        "apply",
        "p",
        "--yes",
        "--param",
        "db_password=hunter2",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(!out.stdout.contains("hunter2"), "{}", out.all());
    assert_eq!(env.read("root/etc/app.env"), "PASSWORD=hunter2\n");
    // Drift of a sensitive file shows no content either.
    std::fs::write(env.path().join("root/etc/app.env"), "PASSWORD=changed\n").unwrap();
    let out = env.run(&[
        "--root",
        root,
        "plan",
        "p",
        "--param",
        "db_password=hunter2",
    ]);
    assert!(
        !out.stdout.contains("hunter2") && !out.stdout.contains("changed"),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains("content: (sensitive)"), "{}", out.all());
}

#[test]
fn apply_without_yes_refuses_without_a_terminal() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/a: { content: x }\n",
    );
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("refusing to apply without --yes"),
        "{}",
        out.all()
    );
    assert!(!root.join("a").exists());
}

#[test]
fn the_lock_stops_a_second_apply_and_a_stale_one_is_taken_over() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/a: { content: x }\n",
    );
    let state = env.mkdir("p/.steward");
    let lock_path = state.join("apply.lock");
    std::fs::write(&lock_path, "pid 1 (someone) since long ago").unwrap();
    // Nobody holds it: a stale lock from a dead process is taken over.
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_path)
        .unwrap();
    held.lock().unwrap();
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains("another apply is running on this state directory: pid 1 (someone)"),
        "{}",
        out.all()
    );
    held.unlock().unwrap();
    drop(held);
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.all());
}

#[test]
fn symlinks_out_of_the_root_are_refused() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    let outside = env.mkdir("outside");
    std::os::unix::fs::symlink(&outside, root.join("srv")).unwrap();
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/srv/x: { content: x }\n  file:/ok: { content: ok }\n",
    );
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout
            .contains("leads outside the root through a symlink"),
        "{}",
        out.all()
    );
    assert!(!outside.join("x").exists());
    assert_eq!(env.read("root/ok"), "ok");
}

#[test]
fn purge_removes_unmanaged_entries() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    std::fs::create_dir_all(root.join("conf.d/old")).unwrap();
    std::fs::write(root.join("conf.d/stale.conf"), "x").unwrap();
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  directory:/conf.d: { purge: true }\n  file:/conf.d/app.conf: { content: x }\n",
    );
    let plan = env.run(&["--root", root.to_str().unwrap(), "plan", "p"]);
    assert!(
        plan.stdout
            .contains("purge: [\"old\", \"stale.conf\"] → []"),
        "{}",
        plan.all()
    );
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let mut names: Vec<String> = std::fs::read_dir(root.join("conf.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["app.conf"]);
}

#[test]
fn lines_replace_the_matching_line() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    std::fs::write(
        root.join("sshd_config"),
        "Port 22\nPermitRootLogin yes\nX11Forwarding no\n",
    )
    .unwrap();
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/sshd_config: {}\n  line:/sshd_config:\n    line: PermitRootLogin no\n    match: ^PermitRootLogin\n",
    );
    let plan = env.run(&["--root", root.to_str().unwrap(), "plan", "p"]);
    assert!(
        plan.stdout
            .contains("line: \"PermitRootLogin yes\" → \"PermitRootLogin no\""),
        "{}",
        plan.all()
    );
    assert_eq!(
        env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"])
            .code,
        0
    );
    assert_eq!(
        env.read("root/sshd_config"),
        "Port 22\nPermitRootLogin no\nX11Forwarding no\n"
    );
    assert_noop_plan(&env, root.to_str().unwrap());
}

#[test]
fn json_plan() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/a: { content: \"x\\n\", mode: \"0640\" }\n",
    );
    let out = env.run(&[
        "--root",
        root.to_str().unwrap(),
        "plan",
        "p",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["format_version"], "1");
    assert_eq!(json["kind"], "steward-plan");
    assert_eq!(json["summary"]["create"], 1);
    let change = &json["nodes"][0]["changes"][0];
    assert_eq!(change["id"], "file:/a");
    assert_eq!(change["action"], "create");
    assert_eq!(change["attributes"][0]["name"], "mode");
    assert_eq!(change["attributes"][0]["after"], "0640");
    assert!(change["content"]["diff"].as_str().unwrap().contains("+x"));
}

#[test]
fn target_that_matches_nothing() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/a: { content: x }\n",
    );
    let out = env.run(&[
        "--root",
        root.to_str().unwrap(),
        "plan",
        "p",
        "--target",
        "web-9",
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("--target `web-9` matches no node"),
        "{}",
        out.all()
    );
}

#[test]
fn a_directory_in_the_way_of_a_file() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    std::fs::create_dir_all(root.join("a/full")).unwrap();
    std::fs::create_dir_all(root.join("b")).unwrap();
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/a: { content: x }\n  file:/b: { content: y }\n",
    );
    // A non-empty directory: the plan says it cannot be replaced (exit 1) instead of promising it.
    let plan = env.run(&["--root", root.to_str().unwrap(), "plan", "p"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(
        plan.stdout.contains(
            "x file:/a: cannot read: refused: a directory that is not empty is in the way"
        ),
        "{}",
        plan.all()
    );
    // An empty one is replaced.
    assert!(
        plan.stdout
            .contains("-/+ file:/b (a directory is in the way)"),
        "{}",
        plan.all()
    );
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(root.join("a/full").is_dir(), "nothing is lost");
    assert_eq!(env.read("root/b"), "y");
}

#[test]
fn secrets_are_scrubbed_from_command_output_and_errors() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    env.write(
        "p/site.yaml",
        "steward: 1
parameters:
  token: { type: string, sensitive: true }
resources:
  exec:login:
    command: [/bin/sh, -c, 'echo \"using {{ params.token }}\" >&2; exit 1']
",
    );
    let out = env.run(&[
        "--root",
        root.to_str().unwrap(),
        "apply",
        "p",
        "--yes",
        "--param",
        "token=s3cr3t-value",
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        !out.stdout.contains("s3cr3t-value") && !out.stderr.contains("s3cr3t-value"),
        "{}",
        out.all()
    );
    assert!(out.stdout.contains("using (sensitive)"), "{}", out.all());
}

#[test]
fn saved_plan_refused_when_a_template_file_changes() {
    let env = TestEnv::new();
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/a: { template: a.j2 }\n",
    );
    env.write("p/a.j2", "one\n");
    let root = env.mkdir("root");
    let root = root.to_str().unwrap();
    assert_eq!(env.run(&["--root", root, "apply", "p", "--yes"]).code, 0);
    assert_eq!(
        env.run(&["--root", root, "plan", "p", "-o", "plan.json"])
            .code,
        0
    );
    env.write("p/a.j2", "two\n");
    let out = env.run(&["apply", "plan.json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(env.read("root/a"), "one\n");
}

#[test]
fn purge_keeps_directories_that_hold_managed_paths() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::write(root.join("a/junk"), "x").unwrap();
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  directory:/a: { purge: true }\n  file:/a/b/c: { content: c }\n",
    );
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(env.read("root/a/b/c"), "c");
    assert!(!root.join("a/junk").exists());
    assert_noop_plan(&env, root.to_str().unwrap());
}

#[test]
fn line_refuses_to_edit_through_a_symlink() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    let outside = env.write("outside.conf", "secret = 1\n");
    std::os::unix::fs::symlink(&outside, root.join("app.conf")).unwrap();
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  line:/app.conf: { line: x = 1 }\n",
    );
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout
            .contains("is a symlink; `line` edits regular files"),
        "{}",
        out.all()
    );
    assert_eq!(env.read("outside.conf"), "secret = 1\n");
    assert!(root.join("app.conf").is_symlink());
}

#[test]
#[ignore = "needs root to chown (STEWARD_TEST_ROOT=1)"]
fn rewriting_a_file_keeps_its_owner_unless_told() {
    crate::system_providers::opt_in(
        "STEWARD_TEST_ROOT",
        (!nix::unistd::geteuid().is_root()).then(|| "not running as root".to_string()),
    );
    let env = TestEnv::new();
    let root = env.mkdir("root");
    std::fs::write(root.join("f"), "old").unwrap();
    std::os::unix::fs::chown(root.join("f"), Some(65534), Some(65534)).unwrap();
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/f: { content: new }\n",
    );
    assert_eq!(
        env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"])
            .code,
        0
    );
    let meta = std::fs::metadata(root.join("f")).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            std::os::unix::fs::MetadataExt::gid(&meta)
        ),
        (65534, 65534)
    );
}

#[test]
fn a_relative_root_and_a_saved_plan_from_elsewhere() {
    let env = TestEnv::new();
    env.mkdir("root");
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/a: { content: x }\n",
    );
    env.mkdir("plans");
    let plan = env.run(&["--root", "root", "plan", "p", "-o", "plans/plan.json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    // The project is kept relative to where the plan was made: from elsewhere, the plan
    // says where it looked; from there, it applies (the root was made absolute).
    let plans = env.path().join("plans");
    let out = crate::common::run_in(&plans, &["apply", "plan.json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains(&format!(
            "the project of this plan, `p`, is not at {}",
            plans.join("p").display()
        )),
        "{}",
        out.all()
    );
    let out = env.run(&["apply", "plans/plan.json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(env.read("root/a"), "x");
}

#[test]
fn a_flow_style_yaml_document_is_not_mistaken_for_a_saved_plan() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    env.write(
        "site.yaml",
        "{steward: 1, resources: {\"file:/a\": {content: x}}}\n",
    );
    let out = env.run(&[
        "--root",
        root.to_str().unwrap(),
        "apply",
        "site.yaml",
        "--yes",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(env.read("root/a"), "x");
}

/// On a terminal, apply shows the plan and asks; only `yes` proceeds. Runs the binary under a
/// real pseudo-terminal with util-linux `script`, which every Linux has (Debian's `bsdutils`
/// is essential), so a missing `script` fails the test rather than skipping it.
#[test]
fn apply_asks_on_a_terminal() {
    let script = std::process::Command::new("script")
        .arg("--version")
        .output();
    assert!(
        script.is_ok(),
        "util-linux `script` is needed for a pseudo-terminal (Debian: apt-get install \
         bsdutils): {script:?}"
    );
    let env = TestEnv::new();
    let root = env.mkdir("root");
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/a: { content: x }\n",
    );
    let steward = env!("CARGO_BIN_EXE_steward");
    let run = |answer: &str| {
        let command = format!("{steward} --root {} apply p", root.display());
        let mut child = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(env.path())
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, out) = run("no\n");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("Apply these changes? Only `yes` is accepted"),
        "{out}"
    );
    assert!(!root.join("a").exists(), "a refused prompt changes nothing");
    let (code, out) = run("yes\n");
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("+ file:/a: created"), "{out}");
    assert_eq!(env.read("root/a"), "x");
}

#[test]
fn backups_follow_the_run_retention() {
    let env = TestEnv::new();
    let root = env.mkdir("root");
    let root = root.to_str().unwrap();
    for version in ["one", "two", "three", "four"] {
        env.write(
            "p/site.yaml",
            format!("steward: 1\nresources:\n  file:/a: {{ content: {version} }}\n"),
        );
        let out = env.run(&["--root", root, "apply", "p", "--yes", "--keep-runs", "2"]);
        assert_eq!(out.code, 0, "{}", out.all());
    }
    let backups: Vec<_> = std::fs::read_dir(env.path().join("p/.steward/backups"))
        .unwrap()
        .collect();
    assert_eq!(
        backups.len(),
        2,
        "the backups of the two kept runs (three and four replaced content)"
    );
    let runs = env.run(&["runs", "--project", "p"]);
    assert_eq!(runs.stdout.lines().count(), 3, "{}", runs.all());
}

/// Piped output is streamed while the apply runs; when nobody reads it any more the apply
/// still finishes and is recorded.
#[test]
fn an_apply_whose_output_is_closed_still_applies_and_records_its_run() {
    let env = TestEnv::new();
    let files: String = (0..200)
        .map(|n| format!("  file:/srv/f{n}: {{ content: \"line one\\nline two\\n\" }}\n"))
        .collect();
    env.write(
        "p/site.yaml",
        format!("steward: 1\nresources:\n  directory:/srv: {{}}\n{files}"),
    );
    let root = env.mkdir("root");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
        .args(["--root", root.to_str().unwrap(), "apply", "p", "--yes"])
        .current_dir(env.path())
        .env_clear()
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody reads what it prints.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for n in 0..200 {
        assert_eq!(env.read(&format!("root/srv/f{n}")), "line one\nline two\n");
    }
    let runs = env.run(&["runs", "--project", "p"]);
    assert_eq!(runs.stdout.lines().count(), 2, "{}", runs.all());
    assert!(runs.stdout.contains("201"), "{}", runs.all());
    assert_noop_plan(&env, root.to_str().unwrap());
}

/// A file the plan found absent is created without a second look and never replaces what
/// appeared there since: the executor applies it again with every check (a backup of what
/// appeared, then the write).
#[test]
fn a_file_that_appears_between_plan_and_apply_is_replaced_with_every_check() {
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        "steward: 1\nresources:\n  directory:/srv: {}\n  file:/srv/a: { content: \"new a\\n\" }\n  file:/srv/b: { content: \"new b\\n\" }\n",
    );
    let root = env.mkdir("root");
    let state = env.mkdir("state");
    let registry = steward::resource::Registry::builtin();
    let validated = steward::validate::validate(
        env.path(),
        &registry,
        steward::facts::local(Path::new("/")),
        Default::default(),
    );
    assert!(!validated.has_errors(), "{:?}", validated.diagnostics);
    std::fs::create_dir(root.join("srv")).unwrap();
    let config = steward::local::Config {
        root: root.clone(),
        state_dir: state.clone(),
        target: None,
        filter: Default::default(),
        overrides: Default::default(),
    };
    let planned = steward::local::plan(&validated, &registry, &config).unwrap();
    std::fs::write(root.join("srv/a"), "appeared\n").unwrap();
    let reports = steward::local::apply(
        &planned,
        &registry,
        &config,
        steward::exec::Config { parallel: 2 },
        &|_| {},
    )
    .unwrap();
    assert_eq!(reports[0].n_failed(), 0, "{:?}", reports[0].outcomes);
    assert_eq!(
        std::fs::read_to_string(root.join("srv/a")).unwrap(),
        "new a\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("srv/b")).unwrap(),
        "new b\n"
    );
    let backups: Vec<_> = walk(&state.join("backups"))
        .into_iter()
        .filter(|path| path.ends_with("srv/a"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), "appeared\n");
    let leftovers: Vec<_> = std::fs::read_dir(root.join("srv"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with(".steward-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The plan of project `p` under `root` is a no-op (exit 0 with `--detailed-exitcode`).
fn assert_noop_plan(env: &TestEnv, root: &str) {
    let plan = env.run(&["--root", root, "plan", "p", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
