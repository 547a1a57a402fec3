//! Secrets travel only to the nodes whose resources use them, and never into names (issue 12, findings 2 and 8).

use std::path::Path;

use crate::common::{Output, TestEnv, run_in_with_env};
use crate::fleet_harness::*;

const DB_PASS: &str = "db-pass-7f3a91c2";
const WEB_KEY: &str = "web-key-0b44e8d5";

const TWO_TIERS: &str = r#"steward: 1
parameters:
  db_pass: { type: string, sensitive: true }
  web_key: { type: string, sensitive: true }
associations:
  web:
    targets: { tags: { role: web } }
    documents: [web.yaml]
  db:
    targets: { tags: { role: db } }
    documents: [db.yaml]
"#;

const WEB_DOC: &str = r#"steward: 1
resources:
  file:/web.key:
    content: "{{ params.web_key }}\n"
    mode: "0600"
  file:/motd:
    content: "hello from {{ node.name }}\n"
"#;

const DB_DOC: &str = r#"steward: 1
resources:
  file:/db.conf:
    content: "password={{ params.db_pass }}\n"
    mode: "0600"
"#;

/// The tasks an agent received (its trace), as text.
fn read_trace(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

// Issue 12, finding 2: every sensitive parameter went to every targeted agent.
#[test]
fn a_node_is_sent_only_the_secrets_its_own_resources_use() {
    let mut fleet = Fleet::start();
    let web_trace = fleet.add_traced_agent("web-1", "role=web");
    let db_trace = fleet.add_traced_agent("db-1", "role=db");
    fleet.wait_online(&["web-1", "db-1"]);
    fleet.env.write("project/site.yaml", TWO_TIERS);
    fleet.env.write("project/web.yaml", WEB_DOC);
    fleet.env.write("project/db.yaml", DB_DOC);
    let project = fleet.env.path().join("project");
    let p = project.to_str().unwrap();
    let db_param = format!("db_pass={DB_PASS}");
    let web_param = format!("web_key={WEB_KEY}");
    let params = ["--param", &db_param, "--param", &web_param];

    let plan = fleet.cli(&[&["plan", p][..], &params].concat());
    assert_eq!(plan.code, 0, "{}\n{}", plan.all(), fleet.logs());
    let apply = fleet.cli(&[&["apply", p, "--yes"][..], &params].concat());
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
    let db_conf = std::fs::read_to_string(fleet.root("db-1").join("db.conf")).unwrap();
    assert_eq!(db_conf, format!("password={DB_PASS}\n"));
    let web_key = std::fs::read_to_string(fleet.root("web-1").join("web.key")).unwrap();
    assert_eq!(web_key, format!("{WEB_KEY}\n"));

    let (web, db) = (read_trace(&web_trace), read_trace(&db_trace));
    assert!(
        web.lines().count() >= 2 && db.lines().count() >= 2,
        "both agents got a probe and an apply:\n{web}\n{db}"
    );
    for line in web.lines().chain(db.lines()) {
        let task: serde_json::Value = serde_json::from_str(line).unwrap();
        let catalog = task["kind"]
            .get("catalog")
            .unwrap_or_else(|| panic!("a task without a catalog: {line}"));
        let secrets = catalog["secrets"].as_array().unwrap();
        let expected = if catalog["node"] == "web-1" {
            WEB_KEY
        } else {
            DB_PASS
        };
        assert_eq!(secrets, &[serde_json::json!(expected)], "{line}");
    }
    assert!(web.contains(WEB_KEY), "{web}");
    assert!(!web.contains(DB_PASS), "web-1 was sent db_pass: {web}");
    assert!(db.contains(DB_PASS), "{db}");
    assert!(!db.contains(WEB_KEY), "db-1 was sent web_key: {db}");
}

const SECRET: &str = "k3y-material-9431";

/// A project whose sensitive value would become part of an identity, one way per case: what,
/// the resource, and the line of the refused name or reference.
const NAME_CASES: [(&str, &str, u32); 3] = [
    (
        "a resource name",
        "\"file:/srv/key-{{ params.secret }}\":\n    content: \"x\\n\"\n",
        7,
    ),
    (
        "a `for_each` item in a name",
        "\"file:/srv/{{ item }}\":\n    for_each: \"{{ [params.secret] }}\"\n    content: \"x\\n\"\n",
        7,
    ),
    (
        "a `require` reference",
        "file:/srv/app:\n    content: \"x\\n\"\n    require: [\"file:/srv/{{ params.secret | lower }}\"]\n",
        9,
    ),
];

fn name_case_project(resource: &str) -> String {
    format!(
        "steward: 1\nparameters:\n  secret: {{ type: string, sensitive: true }}\nresources:\n  file:/srv/ok:\n    content: \"ok\\n\"\n  {resource}"
    )
}

/// Refused as a located error that names the parameter, not its value.
fn assert_refused(out: &Output, what: &str, line: u32) {
    assert_eq!(out.code, 1, "{what}: {}", out.all());
    let all = out.all();
    assert!(all.contains("schema::sensitive_in_name"), "{what}: {all}");
    assert!(all.contains("params.secret"), "{what}: {all}");
    let located = format!("site.yaml:{line}:");
    assert!(all.contains(&located), "{what}: not at {located}: {all}");
    assert!(!all.contains(SECRET), "{what}: the value was shown: {all}");
}

// Issue 12, finding 8: a sensitive value used in a name reached the plan, reports and stores.
#[test]
fn a_sensitive_value_in_a_name_is_refused_locally_and_nothing_is_stored() {
    for (what, resource, line) in NAME_CASES {
        let env = TestEnv::new();
        env.write("project/site.yaml", name_case_project(resource));
        let root = env.mkdir("root");
        let project = env.path().join("project");
        let vars = [("STEWARD_PARAM_secret", SECRET)];
        let (p, r) = (project.to_str().unwrap(), root.to_str().unwrap());
        for args in [
            &["validate", p][..],
            &["validate", p, "--format", "json"][..],
            &["plan", p, "--root", r, "-o", "saved.json"][..],
            &["apply", p, "--root", r, "--yes"][..],
            &["drift", p, "--root", r][..],
        ] {
            let out = run_in_with_env(env.path(), args, &vars);
            if args.contains(&"json") {
                assert_eq!(out.code, 1, "{what}: {}", out.all());
                assert!(
                    out.stdout.contains("schema::sensitive_in_name"),
                    "{what}: {}",
                    out.all()
                );
                assert!(!out.all().contains(SECRET), "{what}: {}", out.all());
            } else {
                assert_refused(&out, &format!("{what}, {}", args[0]), line);
            }
        }
        assert_eq!(
            files_under(&root),
            Vec::<String>::new(),
            "{what}: the root was touched"
        );
        assert_eq!(
            any_file_holds(env.path(), SECRET),
            None,
            "{what}: a file holds the value"
        );
        let runs = run_in_with_env(env.path(), &["runs", "--project", p], &vars);
        assert!(!runs.stdout.contains("apply"), "{what}: {}", runs.all());
    }
}

// Issue 12, finding 8, through the controller: nothing is planned, stored or sent.
#[test]
fn a_sensitive_value_in_a_name_is_refused_by_the_fleet_and_nothing_is_stored() {
    let mut fleet = Fleet::start();
    let trace = fleet.add_traced_agent("web-1", "role=web");
    fleet.wait_online(&["web-1"]);
    for (what, resource, line) in NAME_CASES {
        // Targeted at the agent, so an older build plans, applies and stores the name.
        let targeted = "associations:\n  web:\n    targets: { tags: { role: web } }\n";
        let document = name_case_project(resource) + targeted;
        fleet.env.write("project/site.yaml", document);
        let project = fleet.env.path().join("project");
        let p = project.to_str().unwrap();
        let param = format!("secret={SECRET}");
        for args in [
            &["plan", p, "--param", &param][..],
            &["plan", p, "--param", &param, "-o", "fleet-plan.json"][..],
            &["apply", p, "--param", &param, "--yes"][..],
            &["drift", p, "--param", &param][..],
        ] {
            let out = fleet.cli(args);
            assert_refused(&out, &format!("fleet {what}, {}", args[0]), line);
        }
        let runs = fleet.cli(&["runs"]);
        assert!(!runs.all().contains(SECRET), "{what}: {}", runs.all());
    }
    assert_eq!(files_under(&fleet.root("web-1")), Vec::<String>::new());
    assert_eq!(read_trace(&trace), "", "the agent was sent a task");
    assert_eq!(
        any_file_holds(&fleet.data, SECRET),
        None,
        "the controller stored the value"
    );
    assert_eq!(
        any_file_holds(fleet.env.path(), SECRET),
        None,
        "a file holds the value"
    );
}

/// Runs a command on `web-1` with `TOKEN` as a secret environment variable.
fn run_with_secret(fleet: &Fleet, secret: &str, script: &str) -> Output {
    let out = bin()
        .args(["run", "--target", "web-1", "--format", "json"])
        .args(["--env-secret", "TOKEN", "--"])
        .args(["/bin/sh", "-c", script])
        .env("STEWARD_CONTROLLER", &fleet.http)
        .env("STEWARD_TOKEN_FILE", fleet.data.join("admin.token"))
        .env("TOKEN", secret)
        .output()
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// Issue 12: "`first 8922 of 8931 bytes kept` reveals a redacted secret's length"; so did the
// output's size beside its redacted text.
#[test]
fn the_note_on_cut_output_does_not_reveal_a_secrets_length() {
    let mut fleet = Fleet::start();
    let trace = fleet.add_traced_agent("web-1", "role=web");
    fleet.wait_online(&["web-1"]);
    let (mut notes, mut sizes) = (Vec::new(), Vec::new());
    for secret in [
        "short-secret-1",
        "a-much-longer-secret-value-with-more-bytes-2",
    ] {
        // The secret, then 100,000 bytes the reader knows: the cut falls after the secret.
        let script = "echo \"$TOKEN\"; head -c 100000 /dev/zero | tr '\\0' x";
        let out = run_with_secret(&fleet, secret, script);
        assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());
        let done = out.stdout.lines().last().unwrap_or_default();
        let done: serde_json::Value = serde_json::from_str(done).unwrap();
        sizes.push(done["nodes"][0]["stdout_bytes"].clone());
        let report = fleet.cli(&["report"]);
        assert_eq!(report.code, 0, "{}", report.all());
        assert!(!report.all().contains(secret), "{}", report.all());
        assert!(report.stdout.contains("(sensitive)"), "{}", report.stdout);
        let note = report
            .stdout
            .lines()
            .find(|line| line.contains("--- stdout"))
            .unwrap_or_else(|| panic!("no stdout section: {}", report.stdout))
            .trim()
            .to_string();
        notes.push(note);
        assert!(
            any_file_holds(&fleet.data, secret).is_none(),
            "the controller stored it"
        );
    }
    assert_eq!(
        notes[0], notes[1],
        "the note differs with the secret's length"
    );
    assert_eq!(
        sizes[0], sizes[1],
        "the output's size differs with the secret's length"
    );
    assert!(
        notes[0].contains("cut"),
        "the note does not say the output was cut: {notes:?}"
    );
    // Run Command sends the one secret named, and only to the node it runs on.
    let sent = read_trace(&trace);
    assert!(sent.contains("short-secret-1"), "{sent}");
}

// Issue 12, finding 2: what each resource reads decides what its node is sent, through
// attributes, template files, `for_each` items and module parameters, and nothing else.
#[test]
fn each_resource_records_the_secrets_its_templates_read() {
    let env = TestEnv::new();
    env.write(
        "site.yaml",
        r#"steward: 1
parameters:
  a: { type: string, default: "secret-a-1111", sensitive: true }
  b: { type: string, default: "secret-b-2222", sensitive: true }
  c: { type: list, default: ["secret-c-3333"], sensitive: true }
  d: { type: string, default: "secret-d-4444", sensitive: true }
  plain: { type: string, default: "not-secret" }
resources:
  file:/attr: { content: "{{ params.a }}" }
  file:/template: { template: t.j2 }
  file:/item:
    for_each: "{{ params.c }}"
    content: "{{ item }}"
  file:/plain: { content: "{{ params.plain }} {{ node.name }}" }
  file:/guarded:
    when: "params.d != ''"
    content: "x"
use:
  - module: modules/m
    with: { pw: "wrapped-{{ params.b }}" }
"#,
    );
    env.write("t.j2", "{{ params.d }}\n");
    env.write(
        "modules/m/main.yaml",
        "steward: 1\nparameters:\n  pw: { type: string }\nresources:\n  file:/module: { content: \"{{ params.pw }}\" }\n",
    );
    let registry = steward::resource::Registry::builtin();
    let facts = steward::facts::local(Path::new("/"));
    let validated = steward::validate::validate(env.path(), &registry, facts, Default::default());
    assert!(!validated.has_errors(), "{:?}", validated.diagnostics);
    let model = &validated.model;
    let node = &model.nodes[0];
    let sent = |name: &str| {
        let res = node
            .resources
            .iter()
            .find(|res| res.id.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        steward::model::secrets_used(&model.secrets, std::slice::from_ref(res))
    };
    assert_eq!(sent("/attr"), ["secret-a-1111"]);
    assert_eq!(sent("/template"), ["secret-d-4444"]);
    assert_eq!(sent("/item"), ["secret-c-3333"]);
    assert_eq!(sent("/plain"), Vec::<String>::new());
    assert_eq!(
        sent("/guarded"),
        Vec::<String>::new(),
        "a `when` puts no value in it"
    );
    // The module sees the value it was given and the secret it was made from.
    assert_eq!(sent("/module"), ["wrapped-secret-b-2222", "secret-b-2222"]);
    // The node gets the union; the controller keeps every secret to redact with.
    let all = steward::model::secrets_used(&model.secrets, &node.resources);
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(model.secrets.len() >= all.len());
    // An attribute read through a sensitive `for_each` item is hidden like any other.
    let item = node
        .resources
        .iter()
        .find(|res| res.id.name == "/item")
        .unwrap();
    assert!(item.attrs.get("content").unwrap().sensitive);
}
