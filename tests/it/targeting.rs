//! Targeting: `--target` repeated and in comma lists, `--resource` with what it depends on,
//! `--exclude`, the plan header that names them, and a saved plan applied with other flags.

use crate::common::TestEnv;

/// An inventory of four nodes, one association for all of them, and resources of `local`.
const SITE: &str = r#"steward: 1
nodes:
  web-1: { tags: { role: web } }
  web-2: { tags: { role: web } }
  db-1: { tags: { role: db } }
  db-2: { tags: { role: db } }
  local: { tags: { role: workstation } }
associations:
  everyone:
    targets: { all: true }
    documents: [every.yaml]
"#;

const EVERY: &str = r#"steward: 1
resources:
  file:/motd: { content: "{{ node.name }}\n" }
"#;

/// `file:/srv/app/conf` depends on its directories (implicitly) and on `file:/srv/key`
/// (explicitly); `file:/other` stands alone; `exec:reload` depends on the conf.
const LOCAL: &str = r#"steward: 1
resources:
  directory:/srv: {}
  directory:/srv/app: {}
  file:/srv/key: { content: "k\n" }
  file:/srv/app/conf: { content: "c\n", require: ["file:/srv/key"] }
  file:/other: { content: "o\n" }
  exec:reload: { command: ["/bin/true"], refresh_only: true, subscribe: ["file:/srv/app/conf"] }
"#;

fn project(env: &TestEnv) -> String {
    env.write("p/site.yaml", SITE);
    env.write("p/every.yaml", EVERY);
    env.mkdir("root").display().to_string()
}

fn local_project(env: &TestEnv) -> String {
    env.write("q/site.yaml", LOCAL);
    env.mkdir("root").display().to_string()
}

/// The resources a JSON plan lists for `local`, in plan order.
fn planned_ids(stdout: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(stdout).unwrap();
    json["nodes"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
}

#[test]
fn repeated_and_comma_targets_select_exactly_their_nodes() {
    let env = TestEnv::new();
    let root = project(&env);
    // Without --target: every node with resources is named.
    let all = env.run(&["--root", &root, "plan", "p"]);
    assert_eq!(all.code, 0, "{}", all.all());
    assert!(
        all.stderr
            .contains("note: web-1, web-2, db-1, db-2 have resources"),
        "{}",
        all.all()
    );
    // A comma list and a repeated flag are one selector: any part picks a node.
    for args in [
        vec!["--target", "role=web,db-1,local"],
        vec![
            "--target", "role=web", "--target", "db-1", "--target", "local",
        ],
        vec!["--target", "role=web,db-1", "--target", "role=workstation"],
    ] {
        let mut full = vec!["--root", root.as_str(), "plan", "p"];
        full.extend(args.iter().copied());
        let out = env.run(&full);
        assert_eq!(out.code, 0, "{args:?}: {}", out.all());
        assert!(
            out.stderr
                .contains("note: web-1, web-2, db-1 have resources"),
            "{args:?}: {}",
            out.all()
        );
        assert!(
            out.stdout.contains("+ file:/motd"),
            "{args:?}: {}",
            out.all()
        );
    }
    // Selecting only nodes local mode cannot reach is the usual error, naming the whole list.
    let remote = env.run(&["--root", &root, "plan", "p", "--target", "role=web,db-1"]);
    assert_eq!(remote.code, 1, "{}", remote.all());
    assert!(
        remote
            .stderr
            .contains("--target `role=web,db-1` matches no node this machine can act on"),
        "{}",
        remote.all()
    );
}

#[test]
fn a_malformed_target_is_a_usage_error() {
    let env = TestEnv::new();
    let root = project(&env);
    for (target, says) in [
        ("web-1,", "--target `web-1,` has an empty part"),
        ("=web", "--target `=web` has an empty tag key"),
    ] {
        for command in ["plan", "apply", "drift"] {
            let out = env.run(&["--root", &root, command, "p", "--target", target]);
            assert_eq!(out.code, 1, "{command} {target}: {}", out.all());
            assert!(
                out.stderr.contains(says),
                "{command} {target}: {}",
                out.all()
            );
            assert!(!out.stderr.contains("panicked"), "{}", out.all());
        }
    }
}

#[test]
fn a_resource_brings_what_it_depends_on_and_the_header_says_so() {
    let env = TestEnv::new();
    let root = local_project(&env);
    let out = env.run(&[
        "--root",
        &root,
        "plan",
        "q",
        "--resource",
        "file:/srv/app/conf",
        "--format",
        "json",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert_eq!(
        planned_ids(&out.stdout),
        [
            "directory:/srv",
            "directory:/srv/app",
            "file:/srv/key",
            "file:/srv/app/conf"
        ]
    );
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["resources"], serde_json::json!(["file:/srv/app/conf"]));
    assert!(json.get("excludes").is_none(), "{}", out.stdout);

    let human = env.run(&[
        "--root",
        &root,
        "plan",
        "q",
        "--resource",
        "file:/srv/app/conf",
    ]);
    assert_eq!(human.code, 0, "{}", human.all());
    assert!(
        human.stdout.starts_with(
            "Only file:/srv/app/conf and what it depends on (--resource).\n\nlocal:\n"
        ),
        "{}",
        human.all()
    );
    assert!(!human.stdout.contains("file:/other"), "{}", human.all());
    assert!(!human.stdout.contains("exec:reload"), "{}", human.all());

    // Applied, it changes exactly that set.
    let apply = env.run(&[
        "--root",
        &root,
        "apply",
        "q",
        "--yes",
        "--resource",
        "file:/srv/app/conf",
    ]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let root = std::path::Path::new(&root);
    assert_eq!(
        std::fs::read_to_string(root.join("srv/app/conf")).unwrap(),
        "c\n"
    );
    assert!(!root.join("other").exists());
}

#[test]
fn an_exclude_drops_a_resource_and_what_depends_on_it() {
    let env = TestEnv::new();
    let root = local_project(&env);
    let plan = |args: &[&str]| {
        let mut full = vec!["--root", root.as_str(), "plan", "q", "--format", "json"];
        full.extend(args);
        let out = env.run(&full);
        assert_eq!(out.code, 0, "{args:?}: {}", out.all());
        planned_ids(&out.stdout)
    };
    assert_eq!(
        plan(&["--exclude", "file:/other"]),
        [
            "directory:/srv",
            "directory:/srv/app",
            "file:/srv/key",
            "file:/srv/app/conf",
            "exec:reload"
        ]
    );
    // The key goes, and the conf that requires it, and the exec that subscribes to that.
    assert_eq!(
        plan(&["--exclude", "file:/srv/key"]),
        ["directory:/srv", "directory:/srv/app", "file:/other"]
    );
    // Both flags: the resource's closure without what is excluded.
    assert_eq!(
        plan(&[
            "--resource",
            "exec:reload",
            "--exclude",
            "directory:/srv/app",
            "--resource",
            "file:/other"
        ]),
        ["directory:/srv", "file:/srv/key", "file:/other"]
    );
    let human = env.run(&[
        "--root",
        &root,
        "plan",
        "q",
        "--exclude",
        "file:/other",
        "--exclude",
        "file:/srv/key",
    ]);
    assert!(
        human.stdout.starts_with(
            "Leaving out file:/other, file:/srv/key and what depends on them (--exclude).\n\n"
        ),
        "{}",
        human.all()
    );
}

#[test]
fn an_unknown_or_malformed_resource_is_an_error_with_a_suggestion() {
    let env = TestEnv::new();
    let root = local_project(&env);
    for command in ["plan", "apply", "drift"] {
        let out = env.run(&[
            "--root",
            &root,
            command,
            "q",
            "--resource",
            "file:/srv/app/cnf",
        ]);
        assert_eq!(out.code, 1, "{command}: {}", out.all());
        assert!(
            out.stderr.contains(
                "--resource `file:/srv/app/cnf` is not declared for any selected node; did you mean `file:/srv/app/conf`?"
            ),
            "{command}: {}",
            out.all()
        );
        let out = env.run(&["--root", &root, command, "q", "--exclude", "other"]);
        assert_eq!(out.code, 1, "{command}: {}", out.all());
        assert!(
            out.stderr
                .contains("--exclude `other` is not TYPE:NAME (such as file:/etc/motd)"),
            "{command}: {}",
            out.all()
        );
    }
    assert!(
        !std::path::Path::new(&root).join("srv").exists(),
        "nothing was applied"
    );
}

#[test]
fn a_saved_plan_is_refused_when_the_resource_flags_differ() {
    let env = TestEnv::new();
    let root = local_project(&env);
    let plan = env.run(&[
        "--root",
        &root,
        "plan",
        "q",
        "--resource",
        "file:/other",
        "-o",
        "plan.json",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    // Without the flag, and with another one: refused, naming both sides.
    let bare = env.run(&["apply", "plan.json"]);
    assert_eq!(bare.code, 1, "{}", bare.all());
    assert!(
        bare.stderr
            .contains("--resource: the plan has `file:/other`, this apply has none"),
        "{}",
        bare.all()
    );
    let other = env.run(&[
        "apply",
        "plan.json",
        "--resource",
        "file:/other",
        "--exclude",
        "file:/srv/key",
    ]);
    assert_eq!(other.code, 1, "{}", other.all());
    assert!(
        other
            .stderr
            .contains("--exclude: the plan has none, this apply has `file:/srv/key`"),
        "{}",
        other.all()
    );
    assert!(!other.stderr.contains("--resource:"), "{}", other.all());
    assert!(!std::path::Path::new(&root).join("other").exists());
    // The same flags apply it, and only it.
    let same = env.run(&["apply", "plan.json", "--resource", "file:/other"]);
    assert_eq!(same.code, 0, "{}", same.all());
    assert!(std::path::Path::new(&root).join("other").exists());
    assert!(!std::path::Path::new(&root).join("srv").exists());
}

#[test]
fn through_a_controller_repeated_and_comma_targets_plan_exactly_their_nodes() {
    use crate::fleet_harness::Fleet;
    let fleet = Fleet::with_agents(&[
        ("web-1", "role=web"),
        ("web-2", "role=web"),
        ("db-1", "role=db"),
        ("db-2", "role=db"),
    ]);
    fleet.env.write(
        "project/site.yaml",
        "steward: 1\nassociations:\n  everyone:\n    targets: { all: true }\n    documents: [every.yaml]\n",
    );
    fleet.env.write("project/every.yaml", EVERY);
    let project = fleet.env.path().join("project");
    let p = project.to_str().unwrap();
    let planned = |args: &[&str]| {
        let mut full = vec!["plan", p, "--format", "json"];
        full.extend(args);
        let out = fleet.cli(&full);
        assert_eq!(out.code, 0, "{args:?}: {}\n{}", out.all(), fleet.logs());
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let mut names: Vec<String> = json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    let want = ["db-1", "web-1", "web-2"];
    assert_eq!(planned(&["--target", "role=web,db-1"]), want);
    assert_eq!(planned(&["--target", "role=web", "--target", "db-1"]), want);
    assert_eq!(planned(&[]), ["db-1", "db-2", "web-1", "web-2"]);

    let empty = fleet.cli(&["plan", p, "--target", "db-1,,web-1"]);
    assert_eq!(empty.code, 1, "{}", empty.all());
    assert!(
        empty
            .stderr
            .contains("--target `db-1,,web-1` has an empty part"),
        "{}",
        empty.all()
    );
}

#[test]
fn through_a_controller_resources_and_excludes_plan_exactly_their_set() {
    use crate::fleet_harness::Fleet;
    let fleet = Fleet::with_agents(&[("web-1", "role=web"), ("db-1", "role=db")]);
    fleet.env.write(
        "project/site.yaml",
        "steward: 1\nassociations:\n  everyone:\n    targets: { all: true }\n    documents: [every.yaml]\n",
    );
    fleet.env.write(
        "project/every.yaml",
        "steward: 1\nresources:\n  directory:/srv: {}\n  file:/srv/conf: { content: \"c\\n\", require: [\"file:/key\"] }\n  file:/key: { content: \"k\\n\" }\n  file:/other: { content: \"o\\n\" }\n",
    );
    let project = fleet.env.path().join("project");
    let p = project.to_str().unwrap();
    // Per node, the resources its plan lists.
    let planned = |args: &[&str]| {
        let mut full = vec!["plan", p, "--format", "json"];
        full.extend(args);
        let out = fleet.cli(&full);
        assert_eq!(out.code, 0, "{args:?}: {}\n{}", out.all(), fleet.logs());
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let mut nodes: Vec<(String, Vec<String>)> = json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let mut ids: Vec<String> = n["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["id"].as_str().unwrap().to_string())
                    .collect();
                ids.sort();
                (n["name"].as_str().unwrap().to_string(), ids)
            })
            .collect();
        nodes.sort();
        nodes
    };
    let conf = vec![
        "directory:/srv".to_string(),
        "file:/key".to_string(),
        "file:/srv/conf".to_string(),
    ];
    assert_eq!(
        planned(&["--resource", "file:/srv/conf", "--target", "web-1"]),
        [("web-1".to_string(), conf.clone())]
    );
    assert_eq!(
        planned(&["--resource", "file:/srv/conf"]),
        [
            ("db-1".to_string(), conf.clone()),
            ("web-1".to_string(), conf)
        ]
    );
    let other = vec!["file:/other".to_string()];
    assert_eq!(
        planned(&["--exclude", "file:/key", "--exclude", "directory:/srv"]),
        [
            ("db-1".to_string(), other.clone()),
            ("web-1".to_string(), other)
        ]
    );

    // The human plan says it is narrowed.
    let human = fleet.cli(&["plan", p, "--resource", "file:/other"]);
    assert_eq!(human.code, 0, "{}", human.all());
    assert!(
        human
            .stdout
            .starts_with("Only file:/other and what it depends on (--resource).\n"),
        "{}",
        human.all()
    );
    // An address no selected node declares: located by its flag, with a suggestion.
    let unknown = fleet.cli(&["plan", p, "--resource", "file:/otter"]);
    assert_eq!(unknown.code, 1, "{}", unknown.all());
    assert!(
        unknown
            .stderr
            .contains("--resource `file:/otter` is not declared for any selected node"),
        "{}",
        unknown.all()
    );

    // A saved plan keeps them: applied with others, refused naming both; with the same,
    // it applies exactly that set.
    let plan_path = fleet.env.path().join("narrow.json");
    let plan_path = plan_path.to_str().unwrap();
    let plan = fleet.cli(&["plan", p, "--resource", "file:/other", "-o", plan_path]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(plan_path).unwrap()).unwrap();
    // Named relative to where the plan was made, as a local plan names its project.
    assert_eq!(saved["project"], "project");
    assert_eq!(saved["resources"], serde_json::json!(["file:/other"]));
    let bare = fleet.cli(&["apply", plan_path]);
    assert_eq!(bare.code, 1, "{}", bare.all());
    assert!(
        bare.stderr
            .contains("--resource: the plan has `file:/other`, this apply has none"),
        "{}",
        bare.all()
    );
    assert!(!fleet.root("web-1").join("other").exists());
    let same = fleet.cli(&["apply", plan_path, "--resource", "file:/other"]);
    assert_eq!(same.code, 0, "{}\n{}", same.all(), fleet.logs());
    for node in ["web-1", "db-1"] {
        assert_eq!(
            std::fs::read_to_string(fleet.root(node).join("other")).unwrap(),
            "o\n"
        );
        assert!(!fleet.root(node).join("key").exists());
    }
}
