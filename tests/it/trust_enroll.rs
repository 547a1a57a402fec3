//! Enrollment bound to identity: tokens bound to a name and tags, no takeover of an enrolled node (issue 12, finding 1).

use std::process::Child;
use std::time::Duration;

use crate::fleet_harness::{Fleet, Reaped, tls_poke, wait_for};

/// Waits for an agent process to end and returns its exit code.
fn exit_code(what: &str, child: &mut Child) -> Option<i32> {
    wait_for(what, Duration::from_secs(60), || child.try_wait().unwrap()).code()
}

/// The node's entry in `steward nodes --format json`.
fn node(fleet: &Fleet, name: &str) -> serde_json::Value {
    let out = fleet.cli(&["nodes", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let nodes: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no node {name} in {}", out.stdout))
}

/// Runs a shell line on the targets; each node writes into its agent's `--root`.
fn run_shell(fleet: &Fleet, target: &str, script: &str) -> crate::common::Output {
    fleet.cli(&["run", "--target", target, "--shell", script])
}

/// Starts an agent `label` asking to be `name`, enrolling with `token`.
fn enroll(fleet: &Fleet, label: &str, name: &str, tags: &str, token: &str) -> Reaped {
    let mut cmd = fleet.agent_command(label, name, tags);
    cmd.args(["--token", token]);
    Reaped(cmd.spawn().unwrap())
}

/// Waits until the agent is online, or fails early when it exits.
fn wait_enrolled(fleet: &Fleet, name: &str, child: &mut Child) {
    let exited = wait_for(&format!("{name} online"), Duration::from_secs(60), || {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(Some(status));
        }
        fleet.online().iter().any(|n| n == name).then_some(None)
    });
    assert!(
        exited.is_none(),
        "{name} exited: {exited:?}\n{}",
        fleet.logs()
    );
}

/// An enroll frame as an agent sends it.
fn enroll_frame(token: &str, node: &str, csr_pem: &str) -> Vec<u8> {
    let msg = serde_json::to_vec(&steward::fleet::wire::AgentMsg::Enroll {
        protocol: steward::fleet::wire::PROTOCOL,
        token: token.to_string(),
        node: node.to_string(),
        tags: Default::default(),
        csr_pem: csr_pem.to_string(),
    })
    .unwrap();
    let mut frame = (msg.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&msg);
    frame
}

/// The `reason` of the controller's `refused` answer to an enroll frame.
fn refusal(fleet: &Fleet, token: &str, node: &str, csr_pem: &str) -> String {
    let fingerprint = format!("sha256:{}", token.rsplit('.').next().unwrap());
    let frame = tls_poke(
        &fleet.agent_addr,
        &fingerprint,
        None,
        &enroll_frame(token, node, csr_pem),
    )
    .expect("an answer to the enroll frame");
    let answer: serde_json::Value = serde_json::from_slice(&frame).unwrap();
    assert_eq!(answer["type"], "refused", "{answer}");
    answer["reason"].as_str().unwrap().to_string()
}

#[test]
fn a_fresh_token_does_not_take_over_an_enrolled_node() {
    // Finding 1: any unused token enrolled under an enrolled node's name and replaced it.
    let mut fleet = Fleet::start();
    let token = fleet.token("1h");
    let real = fleet.agent_process("web-2", "role=web", Some(&token));
    fleet.agents.push(("web-2".to_string(), real));
    fleet.wait_online(&["web-2"]);

    let fresh = fleet.token("1h");
    let mut impostor = enroll(&fleet, "impostor", "web-2", "role=db,evil=yes", &fresh);
    assert_eq!(
        exit_code("the impostor to be refused", &mut impostor),
        Some(1),
        "{}",
        fleet.logs()
    );
    let log = std::fs::read_to_string(fleet.agent_log("impostor")).unwrap();
    assert!(log.contains("node `web-2` is enrolled already"), "{log}");
    assert!(!fleet.state("impostor").join("identity.json").exists());

    // The real agent is still the node: connected, and its tasks reach it, not the impostor.
    let (_, real) = fleet.agents.iter_mut().find(|(n, _)| n == "web-2").unwrap();
    assert!(real.try_wait().unwrap().is_none(), "{}", fleet.logs());
    let out = run_shell(&fleet, "web-2", "echo real > marker");
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());
    assert!(fleet.root("web-2").join("marker").exists());
    assert!(!fleet.root("impostor").join("marker").exists());
    let web2 = node(&fleet, "web-2");
    assert!(!web2.to_string().contains("evil"), "{web2}");
}

#[test]
fn a_bound_token_enrolls_only_its_name_and_tags() {
    // Finding 1: the agent picked its own name and tags with any token.
    let fleet = Fleet::start();
    let token = fleet.token_with(&["--name", "web-5", "--tags", "role=web"]);

    let mut other = enroll(&fleet, "other", "other", "role=web", &token);
    assert_eq!(exit_code("another name to be refused", &mut other), Some(1));
    let log = std::fs::read_to_string(fleet.agent_log("other")).unwrap();
    assert!(log.contains("enrolls only node `web-5`"), "{log}");

    let mut evil = enroll(&fleet, "evil", "web-5", "role=db,evil=yes", &token);
    assert_eq!(exit_code("other tags to be refused", &mut evil), Some(1));
    let log = std::fs::read_to_string(fleet.agent_log("evil")).unwrap();
    assert!(log.contains("--tags"), "{log}");

    // The refusals spent nothing: the token enrolls web-5, with the bound tags.
    let mut web5 = enroll(&fleet, "web-5", "web-5", "", &token);
    wait_enrolled(&fleet, "web-5", &mut web5);
    let info = node(&fleet, "web-5");
    assert_eq!(info["tags"], serde_json::json!({"role": "web"}), "{info}");
    assert_eq!(info["claimed_tags"], serde_json::json!({}), "{info}");
    let out = run_shell(&fleet, "role=web", "echo hit > marker");
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());
    assert!(fleet.root("web-5").join("marker").exists());
}

#[test]
fn claimed_tags_do_not_target_until_the_controller_sets_them() {
    // Finding 1: targeting tags are the controller's, not the agent's claim.
    let fleet = Fleet::start();
    let token = fleet.token("1h");
    let mut web7 = enroll(&fleet, "web-7", "web-7", "role=db", &token);
    wait_enrolled(&fleet, "web-7", &mut web7);
    let info = node(&fleet, "web-7");
    assert_eq!(
        info["claimed_tags"],
        serde_json::json!({"role": "db"}),
        "{info}"
    );
    assert_eq!(info["tags"], serde_json::json!({}), "{info}");
    let table = fleet.cli(&["nodes"]);
    assert!(table.stdout.contains("CLAIMED"), "{}", table.all());

    let out = run_shell(&fleet, "role=db", "echo claimed > marker");
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(!fleet.root("web-7").join("marker").exists());

    let tag = fleet.cli(&["node", "tag", "web-7", "role=db", "zone=a"]);
    assert_eq!(tag.code, 0, "{}", tag.all());
    let out = run_shell(&fleet, "role=db", "echo tagged > marker");
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());
    assert!(fleet.root("web-7").join("marker").exists());

    let untag = fleet.cli(&["node", "tag", "web-7", "--remove", "role"]);
    assert_eq!(untag.code, 0, "{}", untag.all());
    assert_eq!(
        node(&fleet, "web-7")["tags"],
        serde_json::json!({"zone": "a"})
    );
    let bad = fleet.cli(&["node", "tag", "web-7", "ro le=x"]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    let missing = fleet.cli(&["node", "tag", "nope", "role=x"]);
    assert_eq!(missing.code, 1, "{}", missing.all());
    assert!(missing.stderr.contains("nope"), "{}", missing.all());
}

#[test]
fn replacing_a_node_takes_an_admin_act() {
    // Finding 1: replacing an enrolled node needs `--replace NAME` or a revoke first.
    let mut fleet = Fleet::start();
    let token = fleet.token_with(&["--name", "web-2", "--tags", "role=web"]);
    let mut old = enroll(&fleet, "old", "web-2", "role=web", &token);
    wait_enrolled(&fleet, "web-2", &mut old);

    let replace = fleet.token_with(&["--replace", "web-2"]);
    let mut new = enroll(&fleet, "new", "web-2", "", &replace);
    assert_eq!(
        exit_code("the replaced agent to be refused", &mut old),
        Some(1),
        "{}",
        fleet.logs()
    );
    wait_enrolled(&fleet, "web-2", &mut new);
    fleet.agents.push(("web-2".to_string(), new));
    let info = node(&fleet, "web-2");
    assert_eq!(info["tags"], serde_json::json!({"role": "web"}), "{info}");
    let out = run_shell(&fleet, "role=web", "echo new > marker");
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());
    assert!(fleet.root("new").join("marker").exists());
    assert!(!fleet.root("old").join("marker").exists());

    // Or revoke, then enroll with a new token.
    let revoke = fleet.cli(&["node", "revoke", "web-2"]);
    assert_eq!(revoke.code, 0, "{}", revoke.all());
    fleet.kill_agent("web-2");
    let again = fleet.token("1h");
    let mut third = enroll(&fleet, "third", "web-2", "role=web", &again);
    wait_enrolled(&fleet, "web-2", &mut third);
    let info = node(&fleet, "web-2");
    assert!(info["revoked_at"].is_null(), "{info}");
    assert_eq!(info["tags"], serde_json::json!({}), "{info}");
    let out = run_shell(&fleet, "web-2", "echo third > marker");
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());
    assert!(fleet.root("third").join("marker").exists());
}

#[test]
fn a_bad_csr_does_not_spend_the_token() {
    // Finding 1 (lower): a malformed certificate request used up the token.
    let fleet = Fleet::start();
    let token = fleet.token("1h");
    let reason = refusal(&fleet, &token, "web-8", "not a certificate request");
    assert!(!reason.is_empty());
    let mut web8 = enroll(&fleet, "web-8", "web-8", "", &token);
    wait_enrolled(&fleet, "web-8", &mut web8);
}

#[test]
fn token_refusals_do_not_tell_whether_the_id_exists() {
    // Finding 1 (lower): enrollment errors revealed whether a token id exists.
    let fleet = Fleet::start();
    let token = fleet.token("1h");
    let parts: Vec<&str> = token.split('.').collect();
    let csr = steward::fleet::pki::new_agent_key("web-9").unwrap().csr_pem;
    let unknown = format!("stw1.{}.{}.{}", "0".repeat(16), parts[2], parts[3]);
    let wrong_secret = format!("stw1.{}.{}.{}", parts[1], "0".repeat(64), parts[3]);
    let short = fleet.token("1s");
    let made = std::time::Instant::now();
    let mut used_by = enroll(&fleet, "web-10", "web-10", "", &token);
    wait_enrolled(&fleet, "web-10", &mut used_by);
    // Let the one-second token expire (waiting, not asserting on time).
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(made.elapsed()));
    let answers = [
        refusal(&fleet, &unknown, "web-9", &csr),
        refusal(&fleet, &short, "web-9", &csr),
        refusal(&fleet, &wrong_secret, "web-9", &csr),
        refusal(&fleet, &token, "web-9", &csr),
    ];
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert!(answers[0].contains("not valid"), "{answers:?}");
    // The controller's log says which (written after the answer is sent, so waited for).
    for why in [
        "unknown token id",
        "secret does not match",
        "used already",
        "expired",
    ] {
        wait_for(
            &format!("`{why}` in the log"),
            Duration::from_secs(30),
            || fleet.logs().contains(why).then_some(()),
        );
    }
}

#[test]
fn the_join_token_comes_from_a_file_or_the_environment() {
    // Finding 1 (lower): `--token` was the documented way, and shows in `ps`.
    let fleet = Fleet::start();
    let file = fleet
        .env
        .write("web-11.token", format!("{}\n", fleet.token("1h")));
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let mut cmd = fleet.agent_command("web-11", "web-11", "");
    cmd.arg("--join-token-file").arg(&file);
    let mut from_file = Reaped(cmd.spawn().unwrap());
    wait_enrolled(&fleet, "web-11", &mut from_file);
    let log = std::fs::read_to_string(fleet.agent_log("web-11")).unwrap();
    assert!(log.contains("can be read by other users"), "{log}");

    let mut cmd = fleet.agent_command("web-12", "web-12", "");
    cmd.env("STEWARD_JOIN_TOKEN", fleet.token("1h"));
    let mut from_env = Reaped(cmd.spawn().unwrap());
    wait_enrolled(&fleet, "web-12", &mut from_env);

    // Not enrolled, and no token: a clear error naming the ways to give one.
    let mut none = Reaped(fleet.agent_command("web-13", "web-13", "").spawn().unwrap());
    assert_eq!(exit_code("the tokenless agent", &mut none), Some(1));
    let log = std::fs::read_to_string(fleet.agent_log("web-13")).unwrap();
    assert!(log.contains("--join-token-file"), "{log}");
}
