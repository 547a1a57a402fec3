//! Honest plans through a controller (issue 15): what an agent's apply would refuse is found
//! when the fleet plans, and comes back to the CLI as an error located at the declaration
//! that names the node (exit 1). A plan with a refusal applies nothing, on any node, as
//! Terraform's; a drift check records a refusal as a failed resource with its reason.

use crate::fleet_harness::{Fleet, files_under};

/// A file under a parent nothing declares, beside one that could be created.
const DOC: &str = "steward: 1
associations:
  web:
    targets: { tags: { role: web } }
resources:
  file:/fine: { content: \"ok\\n\" }
  file:/x/y/z: { content: \"z\\n\" }
";

/// The error `plan` and `apply` print for `node`.
fn refusal(node: &str) -> String {
    format!(
        "error: site.yaml:7:3: node `{node}`: `file:/x/y/z` cannot be applied: \
         its parent directory /x/y does not exist and no resource declares it"
    )
}

#[test]
fn a_refusal_on_one_node_fails_the_plan_and_applies_nothing_anywhere() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web"), ("web-2", "role=web")]);
    let site = fleet.env.write("project/site.yaml", DOC);
    let p = site.parent().unwrap().to_str().unwrap().to_string();
    // web-2 has the parent: only web-1's plan holds a refusal.
    std::fs::create_dir_all(fleet.root("web-2").join("x/y")).unwrap();
    std::fs::create_dir_all(fleet.root("web-1")).unwrap();

    let plan = fleet.cli(&["plan", &p]);
    assert_eq!(plan.code, 1, "{}\n{}", plan.all(), fleet.logs());
    assert!(plan.stderr.contains(&refusal("web-1")), "{}", plan.all());
    assert!(!plan.stderr.contains("node `web-2`"), "{}", plan.all());
    // The plan is shown, as in local mode, with the refusal in place of a promised change.
    assert!(
        plan.stdout
            .contains("x file:/x/y/z: apply would refuse: its parent directory /x/y"),
        "{}",
        plan.all()
    );
    let web1 = plan.stdout.split("web-2:").next().unwrap();
    assert!(!web1.contains("+ file:/x/y/z"), "{}", plan.all());

    let apply = fleet.cli(&["apply", &p, "--yes"]);
    assert_eq!(apply.code, 1, "{}\n{}", apply.all(), fleet.logs());
    assert!(apply.stderr.contains(&refusal("web-1")), "{}", apply.all());
    assert!(
        apply.stdout.contains("1 would be refused."),
        "{}",
        apply.all()
    );
    // Nothing changed on either node, nor was a run recorded.
    assert!(files_under(&fleet.root("web-1")).is_empty());
    let web2 = files_under(&fleet.root("web-2"));
    assert!(
        !web2.iter().any(|f| f == "fine" || f == "x/y/z"),
        "{web2:?}"
    );
    let runs = fleet.cli(&["runs"]);
    assert!(!runs.stdout.contains("apply"), "{}", runs.all());

    // Once the parent exists there too, both nodes plan and apply.
    std::fs::create_dir_all(fleet.root("web-1").join("x/y")).unwrap();
    let plan = fleet.cli(&["plan", &p, "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    let apply = fleet.cli(&["apply", &p, "--yes"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
    for node in ["web-1", "web-2"] {
        let z = std::fs::read_to_string(fleet.root(node).join("x/y/z")).unwrap();
        assert_eq!(z, "z\n", "{node}");
    }

    // The parent goes away on web-1: a drift check records the refusal as a failure with
    // its reason, not as drift.
    std::fs::remove_dir_all(fleet.root("web-1").join("x")).unwrap();
    let drift = fleet.cli(&["drift", &p]);
    assert_eq!(drift.code, 1, "{}\n{}", drift.all(), fleet.logs());
    let report = fleet.cli(&["report", "--format", "json"]);
    assert_eq!(report.code, 0, "{}", report.all());
    let json: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let results = json["results"].as_array().unwrap();
    let z = |node: &str| {
        results
            .iter()
            .find(|r| r["node"] == node && r["resource"] == "file:/x/y/z")
            .unwrap_or_else(|| panic!("no result for {node}: {json}"))
    };
    assert_eq!(z("web-1")["outcome"], "failed", "{json}");
    assert_eq!(
        z("web-1")["message"],
        "apply would refuse: its parent directory /x/y does not exist and no resource declares it",
        "{json}"
    );
    assert_eq!(z("web-1")["file"], "site.yaml", "{json}");
    assert_eq!(z("web-2")["outcome"], "unchanged", "{json}");
}
