//! Fleet mode renders per target, and there is one explicit mode: documents are rendered for
//! each node of the controller's inventory their associations select (`validate`, `graph`,
//! `plan` and `apply` alike); a flag of the other mode is a usage error; nothing to do is not
//! an error.

use crate::common::{Output, TestEnv};
use crate::fleet_harness::*;

const SITE: &str = r#"steward: 1
associations:
  web:
    targets: { tags: { role: web } }
    documents: [web.yaml]
  cache:
    targets: { tags: { role: cache } }
    documents: [cache.yaml]
"#;

const WEB: &str = r#"steward: 1
resources:
  file:/role:
    content: "{{ node.tags.role }} on {{ node.name }}\n"
"#;

/// Targets `role: cache`, which no node has.
const CACHE: &str = r#"steward: 1
resources:
  file:/cache:
    content: "{{ node.tags.size }}\n"
"#;

#[test]
fn a_tag_templated_document_is_rendered_for_each_node_of_the_inventory() {
    let fleet = Fleet::with_agents(&[
        ("web-1", "role=web"),
        ("web-2", "role=web"),
        ("db-1", "role=db"),
    ]);
    fleet.env.write("project/site.yaml", SITE);
    fleet.env.write("project/web.yaml", WEB);
    fleet.env.write("project/cache.yaml", CACHE);
    let project = fleet.env.path().join("project");
    let p = project.to_str().unwrap();

    // validate reports the inventory's nodes, and that cache.yaml goes nowhere.
    let validate = fleet.cli(&["validate", p]);
    assert_eq!(validate.code, 0, "{}", validate.all());
    assert!(
        validate
            .stdout
            .contains("1 resource on 2 nodes of the controller's inventory (web-1, web-2)")
            || validate
                .stdout
                .contains("2 resources on 2 nodes of the controller's inventory (web-1, web-2)"),
        "{}",
        validate.all()
    );
    assert!(
        validate
            .stderr
            .contains("`project/cache.yaml` goes nowhere")
            || validate.stderr.contains("cache.yaml` goes nowhere"),
        "{}",
        validate.all()
    );
    assert!(
        validate.stderr.contains("the nodes tagged role=cache")
            && validate
                .stderr
                .contains("checked for syntax and schema only"),
        "{}",
        validate.all()
    );
    assert!(!validate.all().contains("error"), "{}", validate.all());

    // graph: one cluster per targeted node of the inventory, not this machine.
    let graph = fleet.cli(&["graph", p]);
    assert_eq!(graph.code, 0, "{}", graph.all());
    assert!(
        graph.stdout.contains("\"web-1/file:/role\""),
        "{}",
        graph.stdout
    );
    assert!(
        graph.stdout.contains("\"web-2/file:/role\""),
        "{}",
        graph.stdout
    );
    assert!(!graph.stdout.contains("db-1"), "{}", graph.stdout);
    assert!(!graph.stdout.contains("\"local\""), "{}", graph.stdout);

    let plan = fleet.cli(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}\n{}", plan.all(), fleet.logs());
    assert!(
        plan.stdout.contains("web-1") && plan.stdout.contains("web-2"),
        "{}",
        plan.all()
    );
    assert!(!plan.stdout.contains("db-1"), "{}", plan.all());

    let apply = fleet.cli(&["apply", p, "--yes"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
    assert!(!apply.stderr.contains("error"), "{}", apply.all());
    for web in ["web-1", "web-2"] {
        let role = std::fs::read_to_string(fleet.root(web).join("role")).unwrap();
        assert_eq!(role, format!("web on {web}\n"));
        assert!(!fleet.root(web).join("cache").exists());
    }
    assert_eq!(files_under(&fleet.root("db-1")), Vec::<String>::new());

    // `steward run --document` renders the document for each node its --target selects.
    fleet.env.write(
        "adhoc.yaml",
        "steward: 1\nresources:\n  file:/adhoc:\n    content: \"{{ node.tags.role }}-{{ node.name }}\\n\"\n",
    );
    let adhoc = fleet.cli(&["run", "--target", "role=web", "--document", "adhoc.yaml"]);
    assert_eq!(adhoc.code, 0, "{}\n{}", adhoc.all(), fleet.logs());
    assert!(!adhoc.stderr.contains("goes nowhere"), "{}", adhoc.all());
    for web in ["web-1", "web-2"] {
        let text = std::fs::read_to_string(fleet.root(web).join("adhoc")).unwrap();
        assert_eq!(text, format!("web-{web}\n"));
    }
    assert_eq!(files_under(&fleet.root("db-1")), Vec::<String>::new());

    // Converged: the same rendering, so nothing to change.
    let again = fleet.cli(&["plan", p, "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.all());

    // A project whose only association selects no node: nothing to do, which is no error.
    fleet.env.write(
        "idle/site.yaml",
        "steward: 1\nassociations:\n  cache:\n    targets: { tags: { role: cache } }\n    documents: [cache.yaml]\n",
    );
    fleet.env.write("idle/cache.yaml", CACHE);
    let idle = fleet.env.path().join("idle");
    let i = idle.to_str().unwrap();
    for args in [vec!["plan", i], vec!["apply", i, "--yes"]] {
        let mode = args[0];
        let out = fleet.cli(&args);
        assert_eq!(out.code, 0, "{mode}: {}", out.all());
        assert!(!out.all().contains("error"), "{mode}: {}", out.all());
        assert!(
            out.stdout.contains("Nothing to do"),
            "{mode}: {}",
            out.all()
        );
        assert!(out.stdout.contains("cache.yaml"), "{mode}: {}", out.all());
        assert!(
            out.stdout.contains("association `cache`")
                && out.stdout.contains("the nodes tagged role=cache"),
            "{mode}: {}",
            out.all()
        );
        for node in ["web-1 (role=web)", "web-2 (role=web)", "db-1 (role=db)"] {
            let (name, tags) = node.split_once(' ').unwrap();
            assert!(
                out.stdout.contains(&format!("`{name}` {tags}")),
                "{mode}: {}",
                out.all()
            );
        }
    }
}

/// Runs steward with only these variables set.
fn run(dir: &std::path::Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = bin();
    cmd.args(args).current_dir(dir);
    for (name, value) in vars {
        cmd.env(name, value);
    }
    let output = cmd.output().unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The arguments, the environment, the flag in conflict and what chose the mode.
type Conflict<'a> = (Vec<&'a str>, &'a [(&'a str, &'a str)], &'a str, &'a str);

#[test]
fn a_flag_of_the_other_mode_is_a_usage_error_naming_it_and_what_chose_the_mode() {
    let env = TestEnv::new();
    let project = env.copy_from_repo("examples/quickstart", "quickstart");
    let p = project.to_str().unwrap();
    let root = env.mkdir("demo");
    let r = root.to_str().unwrap();
    // Nothing listens here: each conflict is refused before any call.
    let url = "http://127.0.0.1:9";
    let controller = [("STEWARD_CONTROLLER", url)];
    let cases: Vec<Conflict> = vec![
        (
            vec!["apply", p, "--root", r, "--yes"],
            &controller,
            "--root",
            "STEWARD_CONTROLLER chose fleet mode",
        ),
        (
            vec!["--root", r, "plan", p],
            &controller,
            "--root",
            "STEWARD_CONTROLLER chose fleet mode",
        ),
        (
            vec!["plan", p, "--state-dir", r, "--controller", url],
            &[],
            "--state-dir",
            "--controller chose fleet mode",
        ),
        (
            vec!["drift", p, "--keep-runs", "3"],
            &controller,
            "--keep-runs",
            "STEWARD_CONTROLLER chose fleet mode",
        ),
        (
            vec!["validate", p, "--root", r],
            &controller,
            "--root",
            "STEWARD_CONTROLLER chose fleet mode",
        ),
        (
            vec!["report", "--state-dir", r],
            &controller,
            "--state-dir",
            "STEWARD_CONTROLLER chose fleet mode",
        ),
        (
            vec!["findings", "--project", p],
            &controller,
            "--project",
            "STEWARD_CONTROLLER chose fleet mode",
        ),
        (
            vec!["plan", p, "--token-file", "admin.token"],
            &[],
            "--token-file",
            "no controller is configured",
        ),
        (
            vec!["runs", "--ca-file", "ca.crt"],
            &[],
            "--ca-file",
            "no controller is configured",
        ),
    ];
    for (args, vars, flag, chosen) in cases {
        let out = run(env.path(), &args, vars);
        assert_eq!(out.code, 1, "{args:?}: {}", out.all());
        let first = out.stderr.lines().next().unwrap_or("");
        assert!(first.starts_with("error: "), "{args:?}: {}", out.all());
        assert!(
            first.contains(&format!("{flag} belongs to")),
            "{args:?}: {}",
            out.all()
        );
        assert!(first.contains(chosen), "{args:?}: {}", out.all());
        assert!(
            first.contains("STEWARD_CONTROLLER") && first.contains("--controller"),
            "{args:?}: {}",
            out.all()
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.all());
    }
    // The local apply that was asked for did not silently become a fleet one, nor happen.
    assert!(std::fs::read_dir(&root).unwrap().next().is_none());

    // Without a conflict each command goes to the controller (here unreachable).
    let token = env.write("admin.token", "not a token\n");
    let reachable = [
        ("STEWARD_CONTROLLER", url),
        ("STEWARD_TOKEN_FILE", token.to_str().unwrap()),
    ];
    for args in [
        vec!["runs"],
        vec!["report"],
        vec!["findings", "resolve", "3"],
        vec!["validate", p],
        vec!["graph", p],
        vec!["plan", p],
        vec!["apply", p, "--yes"],
        vec!["drift", p],
    ] {
        let out = run(env.path(), &args, &reachable);
        assert_eq!(out.code, 1, "{args:?}: {}", out.all());
        assert!(
            out.stderr.starts_with(&format!("error: controller {url}")),
            "{args:?}: {}",
            out.all()
        );
    }

    // Fleet flags from the environment are not flags given: a local run goes on.
    let local = run(
        env.path(),
        &["apply", p, "--root", r, "--yes"],
        &[("STEWARD_TOKEN_FILE", "admin.token")],
    );
    assert_eq!(local.code, 0, "{}", local.all());
}

#[test]
fn local_validate_says_which_documents_go_nowhere() {
    let env = TestEnv::new();
    env.write("site.yaml", SITE);
    env.write("web.yaml", WEB);
    env.write("cache.yaml", CACHE);
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.starts_with("valid: "), "{}", out.all());
    for document in ["web.yaml", "cache.yaml"] {
        assert!(
            out.stderr.contains(&format!("`./{document}` goes nowhere"))
                || out.stderr.contains(&format!("`{document}` goes nowhere")),
            "{}",
            out.all()
        );
    }
    assert!(
        out.stderr.contains("selects none of the nodes `local`"),
        "{}",
        out.all()
    );
    assert!(!out.all().contains("error"), "{}", out.all());
}
