//! Agents fail over across a list of controllers (issue 16): `agent --connect A,B` tries them
//! in order, keeps its identity and its undelivered results whichever it reaches, and refuses
//! a list it cannot read.

use std::process::Stdio;
use std::time::Duration;

use crate::common::TestEnv;
use crate::fleet_harness::*;

/// Each bad `--connect` is an error naming the flag, exit 1, before anything is created.
#[test]
fn a_connect_list_that_does_not_read_is_refused_naming_the_flag() {
    let env = TestEnv::new();
    let data = env.path().join("agent");
    let empty = "an empty address in the list; give HOST:PORT[,HOST:PORT...]";
    let not_host_port = "is not HOST:PORT (a host name or IP address, and a port 1 to 65535)";
    let cases: &[(&[&str], String)] = &[
        (
            &["--connect", "127.0.0.1:7443,,127.0.0.1:7444"],
            format!("--connect `127.0.0.1:7443,,127.0.0.1:7444`: {empty}"),
        ),
        (
            &["--connect", "127.0.0.1:7443,"],
            format!("--connect `127.0.0.1:7443,`: {empty}"),
        ),
        (
            &["--connect", "127.0.0.1:7443", "--connect", ""],
            format!("--connect ``: {empty}"),
        ),
        (
            &["--connect", "ctl.example.com"],
            format!("--connect: `ctl.example.com` {not_host_port}"),
        ),
        (
            &["--connect", "127.0.0.1:7443,ctl:0"],
            format!("--connect: `ctl:0` {not_host_port}"),
        ),
        (
            &["--connect", "127.0.0.1:7443", "--connect", "::1:7443"],
            format!("--connect: `::1:7443` {not_host_port}"),
        ),
    ];
    for (connect, message) in cases {
        let mut args = vec!["agent"];
        args.extend_from_slice(connect);
        args.extend(["--name", "web-1", "--data-dir", data.to_str().unwrap()]);
        let out = env.run(&args);
        assert_eq!(out.code, 1, "{connect:?}: {}", out.all());
        assert_eq!(out.stderr, format!("error: {message}\n"), "{connect:?}");
        assert!(!data.exists(), "{connect:?} created the data directory");
    }
}

/// kill -9 of the controller an agent is connected to, mid-command; a second controller on
/// the same data directory (the same CA and store) at the next address of the agent's list.
/// The agent fails over to it with the same identity, delivers the command's result that was
/// not delivered when the first died, and runs the next command through it.
#[test]
fn an_agent_fails_over_to_the_next_controller_with_its_identity_and_results() {
    let mut fleet = Fleet::start();
    let first = fleet.agent_addr.clone();
    let second = free_addr();
    let token = fleet.bound_token("web-1", "role=web");
    let mut agent = fleet.agent_command_to(&format!("{first},{second}"), "web-1", "web-1", "");
    agent.args(["--token", &token]);
    fleet
        .agents
        .push(("web-1".to_string(), Reaped(agent.spawn().unwrap())));
    fleet.wait_online(&["web-1"]);
    let identity = fleet.state("web-1").join("identity.json");
    let enrolled = std::fs::read(&identity).unwrap();

    // A command that outlives the first controller: its result is not delivered when it dies.
    let mut run = fleet
        .cli_command(&[
            "run",
            "--target",
            "web-1",
            "--",
            "/bin/sh",
            "-c",
            "touch started; sleep 3; echo delivered-after-failover",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = fleet.root("web-1").join("started");
    wait_for("the command to start", Duration::from_secs(60), || {
        started.exists().then_some(())
    });
    fleet.kill_controller();
    let _ = run.kill();
    let _ = run.wait();

    fleet.start_controller(&second, "127.0.0.1:0");
    assert_eq!(fleet.agent_addr, second);
    fleet.wait_online(&["web-1"]);
    let log = std::fs::read_to_string(fleet.agent_log("web-1")).unwrap();
    assert!(
        log.contains(&format!("connected to {first} as web-1")),
        "{log}"
    );
    assert!(
        log.contains(&format!("connection to {first} lost"))
            || log.contains(&format!("connection to {first} closed")),
        "{log}"
    );
    assert!(log.contains(&format!("failing over to {second}")), "{log}");
    assert!(
        log.contains(&format!("connected to {second} as web-1")),
        "{log}"
    );

    // The same identity: not enrolled again, one node.
    assert_eq!(std::fs::read(&identity).unwrap(), enrolled);
    assert_eq!(log.matches("enrolled with").count(), 1, "{log}");
    let nodes = fleet.cli(&["nodes", "--format", "json"]);
    assert_eq!(nodes.code, 0, "{}", nodes.all());
    let nodes: serde_json::Value = serde_json::from_str(&nodes.stdout).unwrap();
    let names: Vec<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1"]);

    // The result the first controller never got reaches the store through the second.
    let late = wait_for("the late result", Duration::from_secs(60), || {
        let runs = fleet.cli(&["runs", "--format", "json"]);
        let runs: serde_json::Value = serde_json::from_str(&runs.stdout).ok()?;
        runs["runs"]
            .as_array()?
            .iter()
            .filter_map(|r| r["id"].as_str())
            .find(|id| id.starts_with("late-"))
            .map(str::to_string)
    });
    let report = fleet.cli(&["report", &late, "--format", "json"]);
    assert_eq!(report.code, 0, "{}", report.all());
    assert!(
        report.stdout.contains("delivered-after-failover"),
        "{}",
        report.all()
    );
    wait_for("the outbox to empty", Duration::from_secs(30), || {
        let outbox = fleet.state("web-1").join("outbox");
        (std::fs::read_dir(outbox).map_or(0, |d| d.count()) == 0).then_some(())
    });

    // A new run through the second controller.
    let out = fleet.cli(&[
        "run",
        "--target",
        "web-1",
        "--",
        "echo",
        "through-the-second",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());
    assert!(out.stdout.contains("through-the-second"), "{}", out.all());
}

/// Enrollment goes to the first controller of the list that answers: here the second, the
/// first being down.
#[test]
fn an_agent_enrolls_with_the_first_controller_of_its_list_that_answers() {
    let mut fleet = Fleet::start();
    let down = free_addr();
    let up = fleet.agent_addr.clone();
    let token = fleet.bound_token("web-1", "");
    let mut agent = fleet.agent_command_to(&format!("{down}, {up}"), "web-1", "web-1", "");
    agent.args(["--token", &token]);
    fleet
        .agents
        .push(("web-1".to_string(), Reaped(agent.spawn().unwrap())));
    fleet.wait_online(&["web-1"]);
    let log = std::fs::read_to_string(fleet.agent_log("web-1")).unwrap();
    assert!(
        log.contains(&format!("enrolling with {down}: connecting to {down}: "))
            && log.contains(&format!("failing over to {up}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("enrolled with {up} as web-1")),
        "{log}"
    );
    assert!(
        log.contains(&format!("connected to {up} as web-1")),
        "{log}"
    );
}
