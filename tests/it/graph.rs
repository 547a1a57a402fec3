//! `steward graph`: explicit and implicit edges, DOT and JSON.

use crate::common::TestEnv;

const PROJECT: &str = "\
steward: 1
resources:
  user:app: { group: app }
  group:app: {}
  package:nginx: {}
  service:nginx: { ensure: running }
  directory:/srv: {}
  directory:/srv/app: { owner: app }
  file:/srv/app/conf:
    content: x
    notify: [service:nginx]
  line:/srv/app/conf: { line: y }
";

#[test]
fn implicit_and_explicit_edges() {
    let env = TestEnv::new();
    env.write("site.yaml", PROJECT);
    let out = env.run(&["graph", ".", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let edges: Vec<String> = json["nodes"][0]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} -> {} ({})",
                e["from"].as_str().unwrap(),
                e["to"].as_str().unwrap(),
                e["reason"].as_str().unwrap_or(e["kind"].as_str().unwrap())
            )
        })
        .collect();
    insta::assert_snapshot!(edges.join("\n"), @r"
    user:app -> directory:/srv/app (owned by user)
    group:app -> user:app (member of group)
    package:nginx -> service:nginx (installed by package)
    directory:/srv -> directory:/srv/app (inside directory)
    directory:/srv/app -> file:/srv/app/conf (inside directory)
    file:/srv/app/conf -> service:nginx (notify)
    file:/srv/app/conf -> line:/srv/app/conf (edits file)
    ");
    let order: Vec<&str> = json["nodes"][0]["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let pos = |id: &str| order.iter().position(|o| *o == id).unwrap();
    assert!(pos("group:app") < pos("user:app"));
    assert!(pos("file:/srv/app/conf") < pos("service:nginx"));
}

#[test]
fn dot_output() {
    let env = TestEnv::new();
    env.write("site.yaml", PROJECT);
    let out = env.run(&["graph", "."]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.starts_with("digraph steward {"));
    assert!(out.stdout.contains("\"local/file:/srv/app/conf\" -> \"local/service:nginx\" [label=\"notify\", color=\"darkorange\"];"), "{}", out.stdout);
}

#[test]
fn graph_of_a_bad_project_fails() {
    let env = TestEnv::new();
    env.write("site.yaml", "steward: 1\nresources:\n  fiel:/a: {}\n");
    let out = env.run(&["graph", "."]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("./site.yaml:3:3"), "{}", out.all());
}
