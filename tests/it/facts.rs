//! `steward facts`: what documents read as `node.*`, printed for people and as JSON.

use crate::common::TestEnv;
use crate::fleet_harness::{Fleet, http};

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
    assert_eq!(facts["format_version"], "1");
    assert_eq!(facts["kind"], "steward-facts");
    assert_eq!(facts["os"]["family"], "debian");
    assert_eq!(facts["os"]["release"], "24.04");
    assert_eq!(facts["arch"], std::env::consts::ARCH);
    assert_host_facts(&facts);

    let project = TestEnv::new();
    project.write(
        "site.yaml",
        "steward: 1\nresources:\n  file:/facts:\n    content: \"{{ node.hostname }} {{ node.os.family }} {{ node.os.release }} {{ node.arch }} {{ node.addresses | length }} {{ node.interfaces | length }} {{ node.cpus }} {{ node.memory }} {{ node.kernel }} {{ node.virtual }}\"\n",
    );
    let apply = project.run(&["apply", ".", "--root", root_arg, "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let rendered = std::fs::read_to_string(root.path().join("facts")).unwrap();
    let expected = format!(
        "{} debian 24.04 {} {} {} {} {} {} {}",
        facts["hostname"].as_str().unwrap(),
        std::env::consts::ARCH,
        facts["addresses"].as_array().unwrap().len(),
        facts["interfaces"].as_object().unwrap().len(),
        facts["cpus"],
        facts["memory"],
        facts["kernel"].as_str().unwrap(),
        facts["virtual"].as_str().unwrap(),
    );
    assert_eq!(rendered, expected);

    let human = root.run(&["facts", "--root", root_arg]);
    assert_eq!(human.code, 0, "{}", human.all());
    assert!(
        human.stdout.contains("node.os.family   debian\n"),
        "{}",
        human.all()
    );
    for name in [
        "node.addresses",
        "node.interfaces",
        "node.cpus",
        "node.memory",
        "node.kernel",
        "node.virtual",
    ] {
        assert!(
            human.stdout.contains(&format!("\n{name:<16} ")),
            "{}",
            human.all()
        );
    }
    assert!(
        human.stdout.contains(&format!(
            "node.kernel      {}\n",
            facts["kernel"].as_str().unwrap()
        )),
        "{}",
        human.all()
    );
}

/// The facts that describe the running machine (whatever `--root` says), with sane types.
fn assert_host_facts(facts: &serde_json::Value) {
    assert!(facts["cpus"].as_u64().unwrap() >= 1, "{facts:#}");
    assert!(facts["memory"].as_u64().unwrap() > 0, "{facts:#}");
    assert!(!facts["kernel"].as_str().unwrap().is_empty(), "{facts:#}");
    assert!(facts["virtual"].is_string(), "{facts:#}");
    let addresses = facts["addresses"].as_array().unwrap();
    for address in addresses {
        let ip: std::net::IpAddr = address.as_str().unwrap().parse().unwrap();
        assert!(!ip.is_loopback(), "{facts:#}");
    }
    // Each interface's addresses are among them, and every one of them is on an interface.
    let interfaces = facts["interfaces"].as_object().unwrap();
    let on_interfaces: Vec<&serde_json::Value> = interfaces
        .values()
        .flat_map(|ips| ips.as_array().unwrap())
        .collect();
    assert!(
        on_interfaces.iter().all(|ip| addresses.contains(ip)),
        "{facts:#}"
    );
    assert!(
        addresses.iter().all(|ip| on_interfaces.contains(&ip)),
        "{facts:#}"
    );
}

/// A document reading the new facts plans, and counts: `node.cpus * 2` is a number.
#[test]
fn documents_compute_with_numeric_facts() {
    let root = TestEnv::new();
    let root_arg = root.path().to_str().unwrap();
    let facts: serde_json::Value =
        serde_json::from_str(&root.run(&["facts", "--format", "json"]).stdout).unwrap();
    let project = TestEnv::new();
    project.write(
        "site.yaml",
        "steward: 1\nresources:\n  file:/sized:\n    content: \"{{ node.cpus * 2 }} {{ (node.memory / 1024) | int }}\"\n",
    );
    let plan = project.run(&["plan", ".", "--root", root_arg, "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    let apply = project.run(&["apply", ".", "--root", root_arg, "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let expected = format!(
        "{} {}",
        facts["cpus"].as_u64().unwrap() * 2,
        facts["memory"].as_u64().unwrap() / 1024
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("sized")).unwrap(),
        expected
    );
}

/// The controller's inventory holds what the agent reported, and documents sent to the node
/// render with it.
#[test]
fn agents_report_their_facts_to_the_controller() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    let bearer = format!(
        "Bearer {}",
        std::fs::read_to_string(fleet.data.join("admin.token"))
            .unwrap()
            .trim()
    );
    let (status, body) = http(&fleet.http, "GET", "/v1/nodes", Some(&bearer));
    assert_eq!(status, 200, "{body}");
    let nodes: serde_json::Value = serde_json::from_str(&body).unwrap();
    let node = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "web-1")
        .unwrap_or_else(|| panic!("{nodes:#}"));
    let facts = &node["facts"];
    assert!(facts["cpus"].as_u64().unwrap() >= 1, "{facts:#}");
    assert!(facts["memory"].as_u64().unwrap() > 0, "{facts:#}");
    assert!(!facts["kernel"].as_str().unwrap().is_empty(), "{facts:#}");
    assert!(facts["virtual"].is_string(), "{facts:#}");
    assert!(facts["interfaces"].is_object(), "{facts:#}");
    // The address the agent reached the controller from, once.
    let addresses: Vec<&str> = facts["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        addresses.iter().filter(|a| **a == "127.0.0.1").count(),
        1,
        "{facts:#}"
    );

    fleet.env.write(
        "project/site.yaml",
        "steward: 1\nassociations:\n  web:\n    targets: { tags: { role: web } }\n    documents: [web.yaml]\n",
    );
    fleet.env.write(
        "project/web.yaml",
        "steward: 1\nresources:\n  file:/facts:\n    content: \"{{ node.cpus }} {{ node.memory }} {{ node.kernel }}\"\n",
    );
    let project = fleet.env.path().join("project");
    let apply = fleet.cli(&["apply", project.to_str().unwrap(), "--yes"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
    let expected = format!(
        "{} {} {}",
        facts["cpus"],
        facts["memory"],
        facts["kernel"].as_str().unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(fleet.root("web-1").join("facts")).unwrap(),
        expected
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
