//! Saved plans: the project named relative to where the plan was made, a refusal that names
//! what changed (documents, `--root`, `--target`, what the documents read), and
//! `steward show` printing a plan again.

use crate::common::{TestEnv, run_in};

const WEB: &str = r#"steward: 1
resources:
  file:/web: { content: "web\n" }
  file:/conf: { content: "a\nb\nc\n" }
  exec:reload: { command: ["/bin/true"], refresh_only: true, subscribe: ["file:/conf"] }
"#;

const DB: &str = "steward: 1\nresources:\n  file:/db: { content: \"db\\n\" }\n";

/// A project `p` of two documents and a root with `conf` already there (an update).
fn project(env: &TestEnv) -> String {
    env.write("p/web.yaml", WEB);
    env.write("p/db.yaml", DB);
    env.write("root/conf", "a\nB\nc\n");
    env.path().join("root").display().to_string()
}

#[test]
fn a_saved_plan_names_its_project_relative_to_where_it_was_made() {
    let env = TestEnv::new();
    env.write("t/p/web.yaml", DB);
    // The root is where to act, outside the tree that moves (and kept absolute).
    let root = env.mkdir("root").display().to_string();
    let here = env.path().join("t");
    let plan = run_in(&here, &["--root", &root, "plan", "p", "-o", "plan.json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let text = std::fs::read_to_string(here.join("plan.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["project"], "p");
    assert!(
        !text.contains(here.to_str().unwrap()),
        "the project's absolute path in {text}"
    );
    // The whole tree moves; applied from the same place in it, the plan finds its project.
    let moved = env.path().join("moved");
    std::fs::rename(&here, &moved).unwrap();
    // From elsewhere, it says where it looked.
    let elsewhere = run_in(env.path(), &["apply", "moved/plan.json"]);
    assert_eq!(elsewhere.code, 1, "{}", elsewhere.all());
    let looked = env.path().join("p").display().to_string();
    assert!(
        elsewhere.stderr.contains(&format!(
            "the project of this plan, `p`, is not at {looked}"
        )),
        "{}",
        elsewhere.all()
    );
    let apply = run_in(&moved, &["apply", "plan.json"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(env.read("root/db"), "db\n");
}

#[test]
fn a_refused_saved_plan_names_the_documents_that_changed() {
    let env = TestEnv::new();
    let root = project(&env);
    let plan = env.run(&["--root", &root, "plan", "p", "-o", "plan.json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    env.write("p/web.yaml", WEB.replace("web\\n", "changed\\n"));
    env.write(
        "p/extra.yaml",
        "steward: 1\nresources:\n  file:/extra: {}\n",
    );
    std::fs::remove_file(env.path().join("p/db.yaml")).unwrap();
    let apply = env.run(&["apply", "plan.json"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply.stderr.contains(
            "documents changed since this plan was made: db.yaml (removed), extra.yaml (added), web.yaml (changed)"
        ),
        "{}",
        apply.all()
    );
    assert!(!env.path().join("root/web").exists());
}

#[test]
fn a_refused_saved_plan_says_when_what_the_documents_read_changed() {
    let env = TestEnv::new();
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/motd: { template: motd.j2 }\n",
    );
    env.write("p/motd.j2", "hello\n");
    let root = env.mkdir("root").display().to_string();
    let plan = env.run(&["--root", &root, "plan", "p", "-o", "plan.json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    env.write("p/motd.j2", "goodbye\n");
    let apply = env.run(&["apply", "plan.json"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply
            .stderr
            .contains("the documents are the plan's, but what they read changed"),
        "{}",
        apply.all()
    );
    assert!(!env.path().join("root/motd").exists());
}

#[test]
fn a_saved_plan_is_refused_with_another_root() {
    let env = TestEnv::new();
    let root = project(&env);
    let other = env.mkdir("other").display().to_string();
    let plan = env.run(&["--root", &root, "plan", "p", "-o", "plan.json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let apply = env.run(&["--root", &other, "apply", "plan.json"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply.stderr.contains(&format!(
            "--root differs: this plan was made with {root}, this apply has {other}"
        )),
        "{}",
        apply.all()
    );
    assert!(!env.path().join("other/web").exists());
    assert!(!env.path().join("root/web").exists());
}

#[test]
fn a_saved_plan_is_refused_with_another_target() {
    let env = TestEnv::new();
    let root = project(&env);
    let plan = env.run(&[
        "--root",
        &root,
        "plan",
        "p",
        "--target",
        "local",
        "-o",
        "plan.json",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let json: serde_json::Value = serde_json::from_str(&env.read("plan.json")).unwrap();
    assert_eq!(json["target"], "local");
    let bare = env.run(&["apply", "plan.json"]);
    assert_eq!(bare.code, 1, "{}", bare.all());
    assert!(
        bare.stderr
            .contains("--target: the plan has `local`, this apply has none"),
        "{}",
        bare.all()
    );
    let other = env.run(&["apply", "plan.json", "--target", "all"]);
    assert_eq!(other.code, 1, "{}", other.all());
    assert!(
        other
            .stderr
            .contains("--target: the plan has `local`, this apply has `all`"),
        "{}",
        other.all()
    );
    assert!(!env.path().join("root/web").exists());
    let same = env.run(&["apply", "plan.json", "--target", "local"]);
    assert_eq!(same.code, 0, "{}", same.all());
    assert_eq!(env.read("root/web"), "web\n");
}

#[test]
fn show_prints_a_saved_plan_as_plan_printed_it() {
    let env = TestEnv::new();
    let root = project(&env);
    let plan = env.run(&[
        "--root",
        &root,
        "plan",
        "p",
        "--exclude",
        "file:/db",
        "-o",
        "plan.json",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    // A header, a create with its content, an update with its diff, a refresh.
    for line in [
        "Leaving out file:/db",
        "  + file:/web",
        "      +web",
        "  ~ file:/conf",
        "      +b",
        "(runs: refreshed by file:/conf)",
    ] {
        assert!(plan.stdout.contains(line), "{line}: {}", plan.all());
    }
    let show = env.run(&["show", "plan.json"]);
    assert_eq!(show.code, 0, "{}", show.all());
    // The plan as `plan` printed it, then what it was made with.
    let made_with = show.stdout.strip_prefix(&plan.stdout).unwrap_or_else(|| {
        panic!(
            "show does not start with the plan:\n{}\n{}",
            show.all(),
            plan.all()
        )
    });
    assert_eq!(
        made_with,
        format!(
            "\nSaved plan plan.json: made from the project `p`, --root {root}.\n\
             Apply it with `steward apply plan.json`.\n"
        )
    );

    let json = env.run(&["show", "plan.json", "--format", "json"]);
    assert_eq!(json.code, 0, "{}", json.all());
    assert_eq!(json.stdout, env.read("plan.json"));
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed["kind"], "steward-plan");
    assert_eq!(parsed["excludes"], serde_json::json!(["file:/db"]));
}

#[test]
fn show_refuses_what_is_not_a_saved_plan() {
    let env = TestEnv::new();
    project(&env);
    env.write(
        "broken.json",
        "{\"kind\": \"steward-plan\", \"format_version\": \"1\"}",
    );
    let cases = [
        ("p/web.yaml", "p/web.yaml is not a saved steward plan"),
        ("p", "p is a directory, not a saved plan"),
        ("missing.json", "missing.json: "),
        ("broken.json", "broken.json is not a readable steward plan"),
    ];
    for (path, message) in cases {
        let out = env.run(&["show", path]);
        assert_eq!(out.code, 1, "{path}: {}", out.all());
        assert!(out.stderr.contains(message), "{path}: {}", out.all());
        assert!(!out.stderr.contains("panicked"), "{path}: {}", out.all());
    }
}

#[test]
fn a_plan_saved_before_these_fields_still_applies_and_shows() {
    let env = TestEnv::new();
    let root = project(&env);
    let plan = env.run(&["--root", &root, "plan", "p", "-o", "plan.json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    // As an older steward wrote it: the project absolute, no per-document digests, no
    // target, no lines under the changes, no refused count.
    let mut json: serde_json::Value = serde_json::from_str(&env.read("plan.json")).unwrap();
    let object = json.as_object_mut().unwrap();
    object.remove("documents");
    object["project"] = env.path().join("p").display().to_string().into();
    object["summary"].as_object_mut().unwrap().remove("refused");
    for change in object["nodes"][0]["changes"].as_array_mut().unwrap() {
        let change = change.as_object_mut().unwrap();
        change.remove("text");
        change.remove("refresh");
    }
    env.write("old.json", serde_json::to_string_pretty(&json).unwrap());

    // Shown without the lines under each change; the heads and the summary as before.
    let show = env.run(&["show", "old.json"]);
    assert_eq!(show.code, 0, "{}", show.all());
    let heads: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|line| !line.starts_with("      "))
        .collect();
    let shown: Vec<&str> = show.stdout.lines().collect();
    assert_eq!(shown[..heads.len()], heads[..], "{}", show.all());
    assert!(
        shown[heads.len()..]
            .join("\n")
            .starts_with("\nSaved plan old.json"),
        "{}",
        show.all()
    );

    // Applied from anywhere, since its project is absolute.
    let elsewhere = env.mkdir("elsewhere");
    let apply = run_in(&elsewhere, &["apply", "../old.json"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(env.read("root/web"), "web\n");

    // Stale, it cannot say which document changed.
    let plan = env.run(&["--root", &root, "plan", "p", "-o", "plan.json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let mut json: serde_json::Value = serde_json::from_str(&env.read("plan.json")).unwrap();
    json.as_object_mut().unwrap().remove("documents");
    env.write("old.json", serde_json::to_string_pretty(&json).unwrap());
    env.write("p/db.yaml", DB.replace("db\\n", "other\\n"));
    let stale = env.run(&["apply", "old.json"]);
    assert_eq!(stale.code, 1, "{}", stale.all());
    assert!(
        stale
            .stderr
            .contains("the documents (or parameters, or --root) changed since this plan was made"),
        "{}",
        stale.all()
    );
}
