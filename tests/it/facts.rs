//! `steward facts`: what documents read as `node.*`, printed for people and as JSON.

use crate::common::TestEnv;

#[test]
fn facts_are_what_templates_read() {
    let root = TestEnv::new();
    root.write(
        "etc/os-release",
        "ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n",
    );
    let root_arg = root.path().to_str().unwrap();
    let out = root.run(&["facts", "--format", "json", "--root", root_arg]);
    assert_eq!(out.code, 0, "{}", out.all());
    let facts: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(facts["os"]["family"], "debian");
    assert_eq!(facts["os"]["release"], "24.04");
    assert_eq!(facts["arch"], std::env::consts::ARCH);
    assert_eq!(facts["addresses"], serde_json::json!([]));

    let project = TestEnv::new();
    project.write(
        "site.yaml",
        "steward: 1\nresources:\n  file:/facts:\n    content: \"{{ node.hostname }} {{ node.os.family }} {{ node.os.release }} {{ node.arch }} {{ node.addresses | length }}\"\n",
    );
    let apply = project.run(&["apply", ".", "--root", root_arg, "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let rendered = std::fs::read_to_string(root.path().join("facts")).unwrap();
    let expected = format!(
        "{} debian 24.04 {} 0",
        facts["hostname"].as_str().unwrap(),
        std::env::consts::ARCH
    );
    assert_eq!(rendered, expected);

    let human = root.run(&["facts", "--root", root_arg]);
    assert_eq!(human.code, 0, "{}", human.all());
    assert!(
        human.stdout.contains("node.os.family   debian\n"),
        "{}",
        human.all()
    );
    assert!(
        human.stdout.contains("node.addresses   (none known)\n"),
        "{}",
        human.all()
    );
}

#[test]
fn facts_refuses_bad_flags() {
    let env = TestEnv::new();
    let out = env.run(&["facts", "--format", "yaml"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("invalid value 'yaml'"), "{}", out.all());
    let out = env.run(&["facts", "extra"]);
    assert_eq!(out.code, 1, "{}", out.all());
}
