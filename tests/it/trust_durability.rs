//! No lost or forged results: stored before acknowledged, interrupted runs, failed writes (issue 12, findings 4, 5 and 7).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use steward::store::sqlite::SqliteStore;
use steward::store::{FindingKind, ResultOutcome, RunStatus, Store};

use crate::fleet_harness::*;

/// Every run in the controller's store, read through the library (the controller keeps
/// running: the store is SQLite in WAL mode).
fn stored_runs(fleet: &Fleet) -> Vec<steward::store::RunRecord> {
    let store = SqliteStore::open(&fleet.data.join("steward.db")).unwrap();
    store
        .runs()
        .unwrap()
        .iter()
        .map(|summary| store.run(Some(&summary.id)).unwrap())
        .collect()
}

/// The nodes for which some stored run records `resource` as changed.
fn recorded_changed(fleet: &Fleet, resource: &str) -> BTreeSet<String> {
    stored_runs(fleet)
        .iter()
        .flat_map(|run| run.results.iter())
        .filter(|r| r.resource == resource && r.outcome == ResultOutcome::Changed)
        .map(|r| r.node.clone())
        .collect()
}

/// `steward apply` through the controller, running in the background.
fn apply_in_background(fleet: &Fleet, project: &str) -> Child {
    fleet
        .cli_command(&["apply", project, "--yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Restarts the controller on the same ports and data dir, with SIGXFSZ ignored, so that a
/// file-size limit set later (`prlimit --fsize`) makes its writes fail with EFBIG, as a full
/// disk makes them fail with ENOSPC, instead of killing it.
fn restart_controller_ignoring_xfsz(fleet: &mut Fleet) {
    use std::os::unix::process::CommandExt;
    let (agents, http) = (
        fleet.agent_addr.clone(),
        fleet.http.trim_start_matches("http://").to_string(),
    );
    fleet.kill_controller();
    let _ = std::fs::remove_file(fleet.data.join("endpoints.json"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(fleet.env.path().join("serve.log"))
        .unwrap();
    let mut cmd = bin();
    cmd.args(["serve", "--data-dir"])
        .arg(&fleet.data)
        .args(["--listen", &agents, "--http", &http])
        .stdout(Stdio::null())
        // Through a pipe: the file-size limit would stop its writes to a log file too.
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGXFSZ,
                nix::sys::signal::SigHandler::SigIgn,
            )
            .map(|_| ())
            .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut log = log;
        let _ = std::io::copy(&mut stderr, &mut log);
    });
    fleet.serve = Some(child);
    wait_for("endpoints.json", Duration::from_secs(30), || {
        std::fs::read_to_string(fleet.data.join("endpoints.json")).ok()
    });
}

/// Sets the controller's file-size limit: 0 makes every write to a file fail (EFBIG).
fn limit_file_size(fleet: &Fleet, limit: &str) {
    let pid = fleet.serve.as_ref().unwrap().id().to_string();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--fsize={limit}:unlimited")])
        .status()
        .expect("prlimit (util-linux) must be installed");
    assert!(status.success());
}

const SLOW_DOC: &str = r#"steward: 1
associations:
  all:
    targets: { tags: { role: web } }
    documents: [site.yaml]
    max_concurrency: 3
"#;

const SLOW_SITE: &str = r#"steward: 1
resources:
  directory:/app: {}
  file:/app/motd:
    content: "hello {{ node.name }}\n"
  exec:slow:
    command: ["/bin/sh", "-c", "sleep 1"]
    creates: /app/done
    require: [file:/app/motd]
  file:/app/done:
    content: "done\n"
    require: [exec:slow]
"#;

// Finding 4: kill -9 of the controller during an apply; every change an agent made is
// recorded somewhere (the interrupted run, or a late run once the agent delivers it).
#[test]
fn a_controller_killed_mid_apply_loses_no_result() {
    let agents: Vec<(String, String)> = (1..=12)
        .map(|i| (format!("web-{i:02}"), "role=web".to_string()))
        .collect();
    let pairs: Vec<(&str, &str)> = agents
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let mut fleet = Fleet::with_agents(&pairs);
    fleet.env.write("project/main.yaml", SLOW_DOC);
    fleet.env.write("project/site.yaml", SLOW_SITE);
    let project = fleet.env.path().join("project");
    let mut apply = apply_in_background(&fleet, project.to_str().unwrap());

    // Some nodes have finished (and sent their results), others have not started.
    let done = |fleet: &Fleet| -> usize {
        agents
            .iter()
            .filter(|(n, _)| fleet.root(n).join("app/done").exists())
            .count()
    };
    wait_for("a first wave to finish", Duration::from_secs(90), || {
        if let Ok(Some(_)) = apply.try_wait() {
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(apply.stdout.as_mut().unwrap(), &mut out);
            let _ = std::io::Read::read_to_string(apply.stderr.as_mut().unwrap(), &mut out);
            panic!("the apply ended early: {out}\n{}", fleet.logs());
        }
        (done(&fleet) >= 4).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let (agent_addr, http) = (
        fleet.agent_addr.clone(),
        fleet.http.trim_start_matches("http://").to_string(),
    );
    fleet.kill_controller();
    let _ = apply.kill();
    let _ = apply.wait();
    assert!(
        done(&fleet) < agents.len(),
        "the apply ended before the controller was killed; the test proves nothing"
    );

    fleet.start_controller(&agent_addr, &http);
    let names: Vec<&str> = agents.iter().map(|(n, _)| n.as_str()).collect();
    fleet.wait_online(&names);

    // Every node whose motd the apply wrote is recorded as changed, once the agents that
    // were still working have delivered their results.
    let changed_on_disk = || -> BTreeSet<String> {
        agents
            .iter()
            .filter(|(n, _)| fleet.root(n).join("app/motd").exists())
            .map(|(n, _)| n.clone())
            .collect()
    };
    let outcome = wait_for_or_last(Duration::from_secs(60), || {
        let on_disk = changed_on_disk();
        let recorded = recorded_changed(&fleet, "file:/app/motd");
        (on_disk == recorded, (on_disk, recorded))
    });
    let (on_disk, recorded) = outcome;
    assert_eq!(
        on_disk,
        recorded,
        "changed on the nodes but recorded nowhere: {:?}\n{}",
        on_disk.difference(&recorded).collect::<Vec<_>>(),
        fleet.logs()
    );

    // The run is recorded as interrupted, with the results that arrived.
    let runs = stored_runs(&fleet);
    let interrupted: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Interrupted)
        .collect();
    assert_eq!(interrupted.len(), 1, "{}", fleet.logs());
    assert!(
        interrupted[0]
            .results
            .iter()
            .any(|r| r.outcome == ResultOutcome::Changed),
        "the interrupted run holds no result that arrived: {:?}",
        interrupted[0].results
    );
    let report = fleet.cli(&["report", &interrupted[0].id]);
    assert!(report.stdout.contains("interrupted"), "{}", report.all());
}

/// Polls `probe` until it says done, or until `timeout`; returns its last value.
fn wait_for_or_last<T>(timeout: Duration, mut probe: impl FnMut() -> (bool, T)) -> T {
    let start = std::time::Instant::now();
    loop {
        let (done, value) = probe();
        if done || start.elapsed() > timeout {
            return value;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One file on web-1.
const MOTD_SITE: &str = r#"steward: 1
associations:
  base:
    targets: { names: [web-1] }
resources:
  file:/motd:
    content: "hello\n"
"#;

/// Resources to add to [`MOTD_SITE`]: a command that takes 3 s (touching STAMPS/started
/// when it begins) and a file after it.
const SLOW_MARKER: &str = r#"  exec:slow:
    command: ["/bin/sh", "-c", "touch STAMPS/started; sleep 3"]
    creates: /marker
  file:/marker:
    content: "x\n"
    require: [exec:slow]
"#;

// Finding 5: the store cannot be written (a full disk): the CLI exits 1, claims no run, and
// no node is changed; a late result that cannot be stored is not acknowledged, so the agent
// keeps it and delivers it once the store can take it.
#[test]
fn a_store_that_cannot_be_written_is_an_error_and_no_result_is_acknowledged_unstored() {
    let mut fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    let stamps = fleet.env.path().join("stamps");
    std::fs::create_dir_all(&stamps).unwrap();
    fleet.env.write("project/site.yaml", MOTD_SITE);
    let project = fleet.env.path().join("project");
    let p = project.to_str().unwrap();
    let first = fleet.cli(&["apply", p, "--yes"]);
    assert_eq!(first.code, 0, "{}", first.all());

    restart_controller_ignoring_xfsz(&mut fleet);
    fleet.wait_online(&["web-1"]);
    std::fs::remove_file(fleet.root("web-1").join("motd")).unwrap();
    let runs_before = stored_runs(&fleet).len();
    limit_file_size(&fleet, "0");
    let apply = fleet.cli(&["apply", p, "--yes"]);
    limit_file_size(&fleet, "unlimited");
    assert_eq!(apply.code, 1, "{}\n{}", apply.all(), fleet.logs());
    assert!(!apply.stdout.contains("Recorded as run"), "{}", apply.all());
    // Refused before anything is done: its audit entry is the first write it needs.
    assert!(
        apply
            .all()
            .contains("the audit log cannot be written (POST /v1/runs)")
            && apply.all().contains("nothing was done"),
        "{}",
        apply.all()
    );
    assert!(
        !fleet.root("web-1").join("motd").exists(),
        "a node was changed by a run that could not be recorded"
    );
    assert_eq!(stored_runs(&fleet).len(), runs_before);

    // A late result while the store cannot take it: not acknowledged, kept by the agent.
    let slow = format!("{MOTD_SITE}{SLOW_MARKER}").replace("STAMPS", stamps.to_str().unwrap());
    fleet.env.write("project/site.yaml", slow);
    let mut apply = apply_in_background(&fleet, p);
    wait_for("the slow command", Duration::from_secs(60), || {
        stamps.join("started").exists().then_some(())
    });
    restart_controller_ignoring_xfsz(&mut fleet);
    let _ = apply.kill();
    let _ = apply.wait();
    limit_file_size(&fleet, "0");
    let outbox = fleet.state("web-1").join("outbox");
    wait_for("the agent to finish", Duration::from_secs(60), || {
        fleet.root("web-1").join("marker").exists().then_some(())
    });
    wait_for(
        "the agent to deliver its result",
        Duration::from_secs(60),
        || fleet.logs().contains("could not be recorded").then_some(()),
    );
    assert!(
        outbox_len(&outbox) > 0,
        "the agent dropped a result the controller could not store\n{}",
        fleet.logs()
    );
    assert!(
        !stored_runs(&fleet)
            .iter()
            .any(|r| r.id.starts_with("late-"))
    );

    // Once the store can take it, the next connection delivers it.
    limit_file_size(&fleet, "unlimited");
    let (agents, http) = (
        fleet.agent_addr.clone(),
        fleet.http.trim_start_matches("http://").to_string(),
    );
    fleet.kill_controller();
    fleet.start_controller(&agents, &http);
    wait_for("the late run", Duration::from_secs(60), || {
        stored_runs(&fleet)
            .iter()
            .any(|r| r.id.starts_with("late-"))
            .then_some(())
    });
    wait_for("the outbox to empty", Duration::from_secs(30), || {
        (outbox_len(&outbox) == 0).then_some(())
    });
}

fn outbox_len(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

// Finding 7: a node sends a "late" result for a task never issued to it. It is refused (not
// acknowledged), no run is recorded, and the node's open finding stays open.
#[test]
fn a_result_for_a_task_never_issued_is_refused() {
    let mut fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    fleet.env.write(
        "project/site.yaml",
        r#"steward: 1
associations:
  base:
    targets: { names: [web-1] }
    compliance_severity: high
resources:
  file:/motd:
    content: "hello\n"
"#,
    );
    let project = fleet.env.path().join("project");
    let p = project.to_str().unwrap();
    let apply = fleet.cli(&["apply", p, "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    std::fs::write(fleet.root("web-1").join("motd"), "tampered\n").unwrap();
    let drift = fleet.cli(&["drift", p, "--detailed-exitcode"]);
    assert_eq!(drift.code, 2, "{}", drift.all());
    let open_findings = |fleet: &Fleet| {
        let store = SqliteStore::open(&fleet.data.join("steward.db")).unwrap();
        store
            .findings(false)
            .unwrap()
            .into_iter()
            .filter(|f| f.node == "web-1" && f.kind == FindingKind::Drift)
            .count()
    };
    assert_eq!(open_findings(&fleet), 1);
    let runs_before = stored_runs(&fleet).len();

    // The node itself (its own certificate) forges a result for a made-up task.
    fleet.kill_agent("web-1");
    let identity: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fleet.state("web-1").join("identity.json")).unwrap(),
    )
    .unwrap();
    let forged = serde_json::json!({
        "type": "result",
        "task_id": "20261202T000000000-1-0123456789ab",
        "result": {"status": "applied", "states": [], "duration_ms": 1, "outcomes": [
            {"resource": 0, "id": "file:/motd", "action": null,
             "outcome": {"outcome": "unchanged"}, "duration_ms": 1}
        ]}
    });
    let answers = session_exchange(
        &fleet.agent_addr,
        identity["ca_pem"].as_str().unwrap(),
        identity["cert_pem"].as_str().unwrap(),
        identity["key_pem"].as_str().unwrap(),
        &forged,
    );
    assert!(
        answers.iter().any(|a| a["type"] == "welcome"),
        "the session did not start: {answers:?}\n{}",
        fleet.logs()
    );
    assert!(
        !answers.iter().any(|a| a["type"] == "ack"),
        "a forged result was acknowledged: {answers:?}"
    );
    assert_eq!(stored_runs(&fleet).len(), runs_before, "{}", fleet.logs());
    assert_eq!(open_findings(&fleet), 1, "a forged result closed a finding");
    assert!(
        fleet.logs().contains("not issued to it"),
        "{}",
        fleet.logs()
    );
}

/// Opens a session as a node (its certificate), says hello, sends `msg`, and returns every
/// message the controller sent within three seconds.
fn session_exchange(
    addr: &str,
    ca: &str,
    cert: &str,
    key: &str,
    msg: &serde_json::Value,
) -> Vec<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = steward::fleet::pki::agent_client_config(ca, cert, key).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        let hello = serde_json::json!({
            "type": "hello", "protocol": 1, "version": "test",
            "facts": {"hostname": "web-1", "os_family": "debian", "os_release": "12",
                      "arch": "x86_64", "addresses": []}
        });
        for frame in [&hello, msg] {
            let bytes = serde_json::to_vec(frame).unwrap();
            tls.write_all(&(bytes.len() as u32).to_be_bytes())
                .await
                .unwrap();
            tls.write_all(&bytes).await.unwrap();
        }
        tls.flush().await.unwrap();
        let mut answers = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let mut len = [0u8; 4];
            let read = tokio::time::timeout_at(deadline, tls.read_exact(&mut len)).await;
            let Ok(Ok(_)) = read else { break };
            let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
            if tls.read_exact(&mut frame).await.is_err() {
                break;
            }
            answers.push(serde_json::from_slice(&frame).unwrap());
        }
        answers
    })
}

// Issue 13 (errors mapped in one place): a store that fails during a revoke is a server
// error (500), never "no such node" (404).
#[test]
fn a_store_failure_on_revoke_is_a_server_error_not_a_missing_node() {
    let mut fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    restart_controller_ignoring_xfsz(&mut fleet);
    fleet.wait_online(&["web-1"]);
    limit_file_size(&fleet, "0");
    let revoke = fleet.cli(&["node", "revoke", "web-1"]);
    limit_file_size(&fleet, "unlimited");
    assert_eq!(revoke.code, 1, "{}", revoke.all());
    assert!(revoke.stderr.contains("500"), "{}", revoke.all());
    assert!(!revoke.stderr.contains("404"), "{}", revoke.all());
    let missing = fleet.cli(&["node", "revoke", "web-9"]);
    assert!(missing.stderr.contains("404"), "{}", missing.all());
}
