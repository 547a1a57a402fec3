//! The fleet, end to end: a real controller and real agents as processes on loopback, each
//! agent with its own `--root`, driven through the CLI as docs/guide/fleet.md's quick path says.

use std::io::{Read, Write};
use std::process::Command;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::TestEnv;
use crate::fleet_harness::*;

/// Four web nodes and two db nodes.
const SIX_AGENTS: [(&str, &str); 6] = [
    ("web-1", "role=web"),
    ("web-2", "role=web"),
    ("web-3", "role=web"),
    ("web-4", "role=web"),
    ("db-1", "role=db"),
    ("db-2", "role=db"),
];

const WEB_PROJECT: &str = r#"steward: 1
associations:
  web:
    targets: { tags: { role: web } }
    documents: [web.yaml]
    max_concurrency: 2
    max_errors: 1
    compliance_severity: high
"#;

const WEB_DOC: &str = r#"steward: 1
parameters:
  stamp_dir: { type: string }
resources:
  directory:/app: { mode: "0755" }
  file:/app/motd:
    content: "hello from {{ node.name }}\n"
    mode: "0644"
  exec:stamp:
    command: ["/bin/sh", "-c", "echo start $(date +%s%N) >> {{ params.stamp_dir }}/{{ node.name }}; sleep 0.4; echo end $(date +%s%N) >> {{ params.stamp_dir }}/{{ node.name }}"]
    creates: /app/stamped
    require: [file:/app/motd]
  file:/app/stamped:
    content: "stamped\n"
    require: [exec:stamp]
"#;

#[test]
fn six_agents_apply_to_web_with_rate_control_and_drift_becomes_a_finding() {
    let mut fleet = Fleet::with_agents(&SIX_AGENTS);
    let nodes = fleet.cli(&["nodes"]);
    assert_eq!(nodes.code, 0, "{}", nodes.all());
    assert!(
        nodes.stdout.contains("web-1") && nodes.stdout.contains("online"),
        "{}",
        nodes.stdout
    );
    assert!(nodes.stdout.contains("role=db"), "{}", nodes.stdout);

    let project = fleet.env.path().join("project");
    fleet.env.write("project/site.yaml", WEB_PROJECT);
    fleet.env.write("project/web.yaml", WEB_DOC);
    let stamps = fleet.env.path().join("stamps");
    std::fs::create_dir_all(&stamps).unwrap();
    let param = format!("stamp_dir={}", stamps.display());
    let p = project.to_str().unwrap();

    let plan = fleet.cli(&["plan", p, "--param", &param, "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}\n{}", plan.all(), fleet.logs());
    for web in ["web-1", "web-2", "web-3", "web-4"] {
        assert!(plan.stdout.contains(web), "{}", plan.stdout);
    }
    assert!(!plan.stdout.contains("db-1"), "{}", plan.stdout);
    assert!(plan.stdout.contains("file:/app/motd"), "{}", plan.stdout);

    let apply = fleet.cli(&["apply", p, "--param", &param, "--yes"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
    for web in ["web-1", "web-2", "web-3", "web-4"] {
        let motd = std::fs::read_to_string(fleet.root(web).join("app/motd")).unwrap();
        assert_eq!(motd, format!("hello from {web}\n"));
        assert!(apply.stdout.contains(web), "{}", apply.stdout);
    }
    for db in ["db-1", "db-2"] {
        assert_eq!(
            files_under(&fleet.root(db)),
            Vec::<String>::new(),
            "{db} was touched"
        );
    }

    // Never more than two nodes at once: the intervals the commands stamped overlap at most
    // pairwise.
    let mut intervals = Vec::new();
    for web in ["web-1", "web-2", "web-3", "web-4"] {
        let text = std::fs::read_to_string(stamps.join(web)).unwrap();
        let at = |word: &str| -> u128 {
            text.lines()
                .find_map(|l| l.strip_prefix(word))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        intervals.push((at("start "), at("end ")));
    }
    for &(start, _) in &intervals {
        let running = intervals
            .iter()
            .filter(|(s, e)| *s <= start && start < *e)
            .count();
        assert!(running <= 2, "{running} nodes ran at once: {intervals:?}");
    }

    let again = fleet.cli(&["plan", p, "--param", &param, "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "{}", again.all());

    let runs = fleet.cli(&["runs"]);
    assert_eq!(runs.code, 0, "{}", runs.all());
    assert!(runs.stdout.contains("apply"), "{}", runs.stdout);
    let junit = fleet.cli(&["report", "--format", "junit"]);
    assert_eq!(junit.code, 0, "{}", junit.all());
    assert!(junit.stdout.contains("<testsuites"), "{}", junit.stdout);
    assert!(junit.stdout.contains("web-3"), "{}", junit.stdout);

    // The console shows the nodes and the run to a browser with the token as password.
    let token = std::fs::read_to_string(fleet.data.join("admin.token")).unwrap();
    let basic = {
        use base64::Engine;
        let pair = format!("admin:{}", token.trim());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let (status, page) = http(&fleet.http, "GET", "/nodes", Some(&basic));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("web-3") && page.contains("role=db"), "{page}");
    let (status, _) = http(&fleet.http, "GET", "/", Some("Basic YWRtaW46d3Jvbmc="));
    assert_eq!(status, 401);
    let run_id = runs
        .stdout
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let (status, page) = http(&fleet.http, "GET", &format!("/runs/{run_id}"), Some(&basic));
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("file:/app/motd"), "{page}");

    // Drift on one node becomes a finding.
    std::fs::write(fleet.root("web-2").join("app/motd"), "edited by hand\n").unwrap();
    let drift = fleet.cli(&["drift", p, "--param", &param, "--detailed-exitcode"]);
    assert_eq!(drift.code, 2, "{}\n{}", drift.all(), fleet.logs());
    let findings = fleet.cli(&["findings"]);
    assert_eq!(findings.code, 0, "{}", findings.all());
    assert!(findings.stdout.contains("web-2"), "{}", findings.stdout);
    assert!(
        findings.stdout.contains("file:/app/motd"),
        "{}",
        findings.stdout
    );
    assert!(!findings.stdout.contains("web-1 "), "{}", findings.stdout);

    // Offline targets count as errors and are named; the others are applied.
    fleet.kill_agent("web-4");
    wait_for("web-4 offline", Duration::from_secs(30), || {
        (!fleet.online().contains(&"web-4".to_string())).then_some(())
    });
    let plan = fleet.cli(&["plan", p, "--param", &param]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(
        plan.stderr.contains("node `web-4` (offline)"),
        "{}",
        plan.stderr
    );
    let apply = fleet.cli(&["apply", p, "--param", &param, "--yes"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply.stdout.contains("web-4") && apply.stdout.contains("offline"),
        "{}",
        apply.stdout
    );
    let motd = std::fs::read_to_string(fleet.root("web-2").join("app/motd")).unwrap();
    assert_eq!(motd, "hello from web-2\n", "the drift was repaired");
}

/// Sends `bytes` to the agent port and reads whatever comes back until it closes.
#[test]
fn hostile_tokens_connections_and_callers_are_refused_and_the_controller_keeps_serving() {
    let mut fleet = Fleet::start();

    // Every API route refuses a caller without a token; a console page sends a browser to
    // the sign-in form instead.
    for route in steward::fleet::api::ROUTES {
        let method = route.method;
        let path = route.path.replace("{name}", "web-1").replace("{id}", "1");
        let status = status_without_token(&fleet.http, method, &path);
        let expected = if method == "GET" && !path.starts_with("/v1/") {
            303
        } else {
            401
        };
        assert_eq!(
            status, expected,
            "{method} {path} answered {status} without a token"
        );
    }
    let wrong = bin()
        .args(["nodes"])
        .env("STEWARD_CONTROLLER", &fleet.http)
        .env(
            "STEWARD_TOKEN_FILE",
            fleet.env.write("wrong.token", "not-the-token\n"),
        )
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"));

    // Junk on the agent port: random bytes, an oversized frame, a malformed message.
    poke(
        &fleet.agent_addr,
        b"\x16\x03\x01garbage that is not TLS at all",
    );
    poke(&fleet.agent_addr, &[0xff; 4096]);

    // A forged token (right id and fingerprint, wrong secret) and one from another controller.
    let token = fleet.token("1h");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 4, "{token}");
    let forged = format!(
        "{}.{}.{}.{}",
        parts[0],
        parts[1],
        "0".repeat(parts[2].len()),
        parts[3]
    );
    let mut child = fleet.agent_process("forged", "role=web", Some(&forged));
    let status = wait_for(
        "the forged agent to give up",
        Duration::from_secs(30),
        || child.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(1));

    let other = TestEnv::new();
    let other_token = bin()
        .args(["token", "create", "--data-dir"])
        .arg(other.path().join("d"))
        .output()
        .unwrap();
    let other_token = String::from_utf8_lossy(&other_token.stdout)
        .trim()
        .to_string();
    let mut child = fleet.agent_process("foreign", "role=web", Some(&other_token));
    let status = wait_for(
        "the foreign-token agent to give up",
        Duration::from_secs(60),
        || child.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(1), "{}", fleet.logs());

    // Over TLS too: an oversized frame, a malformed message, and a client certificate from
    // another CA are refused.
    let fingerprint = format!("sha256:{}", parts[3]);
    assert!(
        tls_poke(
            &fleet.agent_addr,
            &fingerprint,
            None,
            &u32::MAX.to_be_bytes()
        )
        .is_none()
    );
    let mut junk = 9u32.to_be_bytes().to_vec();
    junk.extend_from_slice(b"{\"type\":1}");
    assert!(tls_poke(&fleet.agent_addr, &fingerprint, None, &junk).is_none());
    let other_ca = steward::fleet::pki::Ca::load_or_create(&other.path().join("d")).unwrap();
    let key = steward::fleet::pki::new_agent_key("intruder").unwrap();
    let cert = other_ca
        .sign_agent("intruder", &key.csr_pem, Duration::from_secs(3600))
        .unwrap();
    let real_ca = std::fs::read_to_string(fleet.data.join("ca.crt")).unwrap();
    // A hello: were the certificate let in, the controller would answer it (if only to refuse).
    let hello = serde_json::to_vec(&steward::fleet::wire::AgentMsg::Hello {
        protocol: steward::fleet::wire::PROTOCOL,
        version: "0".into(),
        facts: Default::default(),
    })
    .unwrap();
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&hello);
    assert!(
        tls_poke(
            &fleet.agent_addr,
            &fingerprint,
            Some((&real_ca, &cert, &key.key_pem)),
            &frame
        )
        .is_none(),
        "a certificate from another CA was let in"
    );

    // The real token still works once, then is used up.
    let mut first = fleet.agent_process("web-1", "role=web", Some(&token));
    fleet.wait_online(&["web-1"]);
    let mut reused = fleet.agent_process("web-2", "role=web", Some(&token));
    let status = wait_for(
        "the reused-token agent to give up",
        Duration::from_secs(30),
        || reused.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(1));

    // An expired token.
    let short = fleet.token("1s");
    std::thread::sleep(Duration::from_millis(1500));
    let mut late = fleet.agent_process("web-3", "role=web", Some(&short));
    let status = wait_for(
        "the expired-token agent to give up",
        Duration::from_secs(30),
        || late.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(1));
    let logs = fleet.logs();
    assert!(logs.contains("expired"), "{logs}");

    // Revoking cuts the agent off for good.
    let revoke = fleet.cli(&["node", "revoke", "web-1"]);
    assert_eq!(revoke.code, 0, "{}", revoke.all());
    let status = wait_for("the revoked agent to stop", Duration::from_secs(60), || {
        first.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(1), "{}", fleet.logs());
    let nodes = fleet.cli(&["nodes"]);
    assert!(nodes.stdout.contains("revoked"), "{}", nodes.all());

    // And the controller still serves everyone else.
    fleet.add_agent("web-4", "role=web");
    fleet.wait_online(&["web-4"]);
    for path in ["identity.json", "tasks.json"] {
        let file = fleet.state("web-4").join(path);
        if file.exists() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(fleet.data.join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

const SLOW_DOC: &str = r#"steward: 1
parameters:
  stamp_dir: { type: string }
associations:
  web:
    targets: { tags: { role: web } }
    max_concurrency: "100%"
    max_errors: "100%"
resources:
  exec:slow:
    command: ["/bin/sh", "-c", "touch {{ params.stamp_dir }}/{{ node.name }}.started; sleep 3"]
    creates: /done
  file:/done:
    content: "done\n"
    require: [exec:slow]
"#;

#[test]
fn a_killed_agent_fails_its_node_alone_and_a_rerun_converges() {
    let mut fleet = Fleet::with_agents(&[
        ("web-1", "role=web"),
        ("web-2", "role=web"),
        ("web-3", "role=web"),
    ]);
    let project = fleet.env.write("project/site.yaml", SLOW_DOC);
    let p = project.parent().unwrap().to_str().unwrap().to_string();
    let stamps = fleet.env.path().join("stamps");
    std::fs::create_dir_all(&stamps).unwrap();
    let param = format!("stamp_dir={}", stamps.display());

    let apply = {
        let mut cmd = bin();
        cmd.args(["apply", &p, "--yes", "--param", &param])
            .env("STEWARD_CONTROLLER", &fleet.http)
            .env("STEWARD_TOKEN_FILE", fleet.data.join("admin.token"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    // Killed while its command runs.
    wait_for(
        "web-2 to start its command",
        Duration::from_secs(60),
        || stamps.join("web-2.started").exists().then_some(()),
    );
    fleet.kill_agent("web-2");
    let output = apply.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{}", fleet.logs());
    assert!(stdout.contains("web-2"), "{stdout}");
    for ok in ["web-1", "web-3"] {
        assert!(fleet.root(ok).join("done").exists(), "{ok} did not finish");
    }

    // The agent comes back with its certificate (no token) and a re-run converges.
    let child = fleet.agent_process("web-2", "role=web", None);
    fleet.agents.push(("web-2".to_string(), child));
    fleet.wait_online(&["web-2"]);
    let rerun = fleet.cli(&["apply", &p, "--yes", "--param", &param]);
    assert_eq!(rerun.code, 0, "{}\n{}", rerun.all(), fleet.logs());
    assert!(fleet.root("web-2").join("done").exists());
}

#[test]
fn a_schedule_fires_and_results_survive_a_controller_restart() {
    let mut fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    let stamps = fleet.env.path().join("stamps");
    std::fs::create_dir_all(&stamps).unwrap();
    let doc = r#"steward: 1
associations:
  watch:
    targets: { names: [web-1] }
    schedule: rate(30 minutes)
    mode: detect
resources:
  file:/motd:
    content: "scheduled\n"
  exec:slow:
    command: ["/bin/sh", "-c", "touch STAMPS/started; sleep 3"]
    creates: /marker
  file:/marker:
    content: "x\n"
    require: [exec:slow]
"#;
    let doc = doc.replace("STAMPS", stamps.to_str().unwrap());
    let project = fleet.env.write("project/site.yaml", doc);
    let p = project.parent().unwrap().to_str().unwrap().to_string();

    // The controller dies while the agent applies; its result arrives after the restart.
    let apply = {
        let mut cmd = bin();
        cmd.args(["apply", &p, "--yes"])
            .env("STEWARD_CONTROLLER", &fleet.http)
            .env("STEWARD_TOKEN_FILE", fleet.data.join("admin.token"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    wait_for(
        "web-1 to start its command",
        Duration::from_secs(60),
        || stamps.join("started").exists().then_some(()),
    );
    let (agents, http) = (fleet.agent_addr.clone(), fleet.http.clone());
    fleet.kill_controller();
    let output = apply.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    fleet.start_controller(&agents, http.trim_start_matches("http://"));
    fleet.wait_online(&["web-1"]);
    let late = wait_for("the late result", Duration::from_secs(60), || {
        let runs = fleet.cli(&["runs"]);
        runs.stdout.contains("late-").then_some(runs.stdout)
    });
    assert!(late.contains("agent"), "{late}");
    assert!(fleet.root("web-1").join("marker").exists());
    // The late run says what the agent did, as the live output would have.
    let late_id = late
        .split_whitespace()
        .find(|word| word.starts_with("late-"))
        .unwrap();
    let report = fleet.cli(&["report", late_id]);
    assert!(
        report.stdout.contains("exec:slow: ran") && report.stdout.contains("file:/marker: created"),
        "{}",
        report.all()
    );

    // Applying through the controller makes the project current; its never-run scheduled
    // association runs at once, in detect mode, recorded like a hand-started drift check.
    let apply = fleet.cli(&["apply", &p, "--yes"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
    let runs = wait_for("a scheduled run", Duration::from_secs(60), || {
        let runs = fleet.cli(&["runs"]);
        runs.stdout.contains("scheduler").then_some(runs.stdout)
    });
    assert!(runs.contains("drift"), "{runs}");
}

/// When each node's command started and ended, from the files it wrote in its root.
fn stamps(fleet: &Fleet, nodes: &[&str]) -> Vec<(u128, u128)> {
    nodes
        .iter()
        .map(|node| {
            let read = |name: &str| -> u128 {
                std::fs::read_to_string(fleet.root(node).join(name))
                    .unwrap_or_else(|err| panic!("{node}/{name}: {err}"))
                    .trim()
                    .parse()
                    .unwrap()
            };
            (read("start"), read("end"))
        })
        .collect()
}

#[test]
fn run_command_paces_collects_output_stops_at_max_errors_times_out_and_stores_the_run() {
    let fleet = Fleet::with_agents(&SIX_AGENTS);

    // At most two at once, output prefixed by node, only the web tier.
    let script =
        "date +%s%N > start; sleep 0.4; date +%s%N > end; echo hello from $(basename $PWD)";
    let out = fleet.cli(&[
        "run",
        "--target",
        "role=web",
        "--max-concurrency",
        "2",
        "--",
        "/bin/sh",
        "-c",
        script,
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());
    let webs = ["web-1", "web-2", "web-3", "web-4"];
    for web in webs {
        assert!(
            out.stdout.contains(&format!("{web}: hello from {web}")),
            "{}",
            out.stdout
        );
    }
    for db in ["db-1", "db-2"] {
        assert!(
            !fleet.root(db).join("start").exists(),
            "{db} ran the command"
        );
    }
    let intervals = stamps(&fleet, &webs);
    for &(start, _) in &intervals {
        let running = intervals
            .iter()
            .filter(|(s, e)| *s <= start && start < *e)
            .count();
        assert!(
            running <= 2,
            "{running} commands ran at once: {intervals:?}"
        );
    }
    let junit = fleet.cli(&["report", "--format", "junit"]);
    assert_eq!(junit.code, 0, "{}", junit.all());
    let doc = roxmltree::Document::parse(&junit.stdout).unwrap();
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 4, "{}", junit.stdout);
    assert!(
        junit.stdout.contains("hello from web-3"),
        "{}",
        junit.stdout
    );

    // A failure on the first node stops dispatch at max-errors 0; the rest never start.
    let out = fleet.cli(&[
        "run",
        "--target",
        "role=web",
        "--max-concurrency",
        "1",
        "--max-errors",
        "0",
        "--",
        "/bin/sh",
        "-c",
        "test \"$(basename $PWD)\" != web-1",
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains("3 node(s) never started"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("not_started"), "{}", out.stdout);
    let junit = fleet.cli(&["report", "--format", "junit"]);
    assert!(junit.stdout.contains("<failure"), "{}", junit.stdout);
    assert!(junit.stdout.contains("<skipped"), "{}", junit.stdout);
    let findings = fleet.cli(&["findings"]);
    assert!(
        findings.stdout.contains("No open findings"),
        "a command opened a finding: {}",
        findings.stdout
    );

    // A command that never ends is killed at --timeout.
    let started = Instant::now();
    let out = fleet.cli(&[
        "run",
        "--target",
        "web-1",
        "--timeout",
        "1s",
        "--",
        "/bin/sleep",
        "60",
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stdout.contains("timed_out"), "{}", out.stdout);
    assert!(started.elapsed() < Duration::from_secs(30));

    // A gigabyte-sized output is capped, with its size said.
    let out = fleet.cli(&[
        "run",
        "--target",
        "web-2",
        "--format",
        "json",
        "--",
        "/bin/sh",
        "-c",
        "head -c 1000000000 /dev/zero | tr '\\0' x",
    ]);
    assert_eq!(out.code, 0, "{}", out.all());
    // The agent read a gigabyte and kept 64 KiB of it.
    let pid = fleet
        .agents
        .iter()
        .find(|(n, _)| n == "web-2")
        .unwrap()
        .1
        .id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(peak_kb < 100 * 1024, "the agent peaked at {peak_kb} kB");
    let done: serde_json::Value = serde_json::from_str(out.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(done["event"], "done");
    assert_eq!(done["nodes"][0]["stdout_bytes"], 1_000_000_000u64);
    assert_eq!(done["nodes"][0]["stdout"].as_str().unwrap().len(), 65_536);
    let report = fleet.cli(&["report"]);
    assert!(
        report
            .stdout
            .contains("--- stdout (cut to its first 64 KiB)"),
        "{}",
        report.stdout
    );

    // A secret passed by name is redacted and never stored.
    let secret = "s3cr3t-value-4711";
    let out = bin()
        .args([
            "run",
            "--target",
            "web-1",
            "--env-secret",
            "API_TOKEN",
            "--",
        ])
        .args(["/bin/sh", "-c", "echo token=$API_TOKEN"])
        .env("STEWARD_CONTROLLER", &fleet.http)
        .env("STEWARD_TOKEN_FILE", fleet.data.join("admin.token"))
        .env("API_TOKEN", secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("token=(sensitive)"), "{stdout}");
    assert!(!stdout.contains(secret));
    for file in ["steward.db", "steward.db-wal"] {
        let bytes = std::fs::read(fleet.data.join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{file} holds the secret"
        );
    }

    // Selectors that name nothing, or match nothing, are errors.
    let out = fleet.cli(&["run", "--target", "rol=web", "--", "/bin/true"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("rol=web"), "{}", out.stderr);
    let out = fleet.cli(&["run", "--target", "role=cache", "--", "/bin/true"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("matched no nodes"), "{}", out.stderr);

    // A document, applied once on the db tier with the same rate control; the command's
    // flags do not apply to it.
    let out = fleet.cli(&[
        "run",
        "--target",
        "role=db",
        "--timeout",
        "5s",
        "--document",
        "x",
    ]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("--timeout"), "{}", out.stderr);
    fleet.env.write(
        "oneoff/fix.yaml",
        "steward: 1\nresources:\n  file:/fixed:\n    content: \"fixed on {{ node.name }}\\n\"\n",
    );
    let doc = fleet.env.path().join("oneoff");
    let out = fleet.cli(&[
        "run",
        "--target",
        "role=db",
        "--max-concurrency",
        "1",
        "--document",
        doc.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());
    for db in ["db-1", "db-2"] {
        let text = std::fs::read_to_string(fleet.root(db).join("fixed")).unwrap();
        assert_eq!(text, format!("fixed on {db}\n"));
    }
    assert!(!fleet.root("web-1").join("fixed").exists());
}

#[test]
fn run_cancel_stops_dispatch_and_kills_running_commands() {
    let fleet = Fleet::with_agents(&[
        ("web-1", "role=web"),
        ("web-2", "role=web"),
        ("web-3", "role=web"),
    ]);
    let mut child = bin()
        .args([
            "run",
            "--target",
            "role=web",
            "--max-concurrency",
            "1",
            "--",
            "/bin/sleep",
            "60",
        ])
        .env("STEWARD_CONTROLLER", &fleet.http)
        .env("STEWARD_TOKEN_FILE", fleet.data.join("admin.token"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    let run_id = first.split_whitespace().nth(1).unwrap().to_string();
    // Wait until the first node runs it.
    let mut line = String::new();
    while !line.contains("in_progress") {
        line.clear();
        std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    }
    let cancel = fleet.cli(&["run", "cancel", &run_id]);
    assert_eq!(cancel.code, 0, "{}", cancel.all());
    let status = wait_for("the cancelled run to end", Duration::from_secs(30), || {
        child.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(30));
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let cancelled = stdout
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("cancelled"))
        .count();
    assert_eq!(cancelled, 3, "{stdout}");
    let again = fleet.cli(&["run", "cancel", &run_id]);
    assert_eq!(again.code, 1, "a finished run cannot be cancelled");
}

#[test]
fn a_node_lost_mid_command_times_out_alone() {
    let mut fleet = Fleet::with_agents(&[
        ("web-1", "role=web"),
        ("web-2", "role=web"),
        ("web-3", "role=web"),
    ]);
    let child = bin()
        .args([
            "run",
            "--target",
            "role=web",
            "--max-concurrency",
            "3",
            "--",
        ])
        .args(["/bin/sh", "-c", "touch started; sleep 2; echo finished"])
        .env("STEWARD_CONTROLLER", &fleet.http)
        .env("STEWARD_TOKEN_FILE", fleet.data.join("admin.token"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        "web-2 to start the command",
        Duration::from_secs(60),
        || fleet.root("web-2").join("started").exists().then_some(()),
    );
    fleet.kill_agent("web-2");
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let status = |node: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{node} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(status("web-2"), "timed_out", "{stdout}");
    assert_eq!(status("web-1"), "success", "{stdout}");
    assert_eq!(status("web-3"), "success", "{stdout}");
}

#[test]
fn agents_renew_their_certificates_over_the_live_connection() {
    // A one-minute certificate has less than a third of its life left at once.
    let mut fleet = Fleet::start_with(&["--agent-cert-lifetime", "60s"]);
    fleet.add_agent("web-1", "role=web");
    fleet.wait_online(&["web-1"]);
    wait_for("the renewal", Duration::from_secs(30), || {
        fleet.logs().contains("certificate renewed").then_some(())
    });
    // The renewed certificate is the one the controller accepts now.
    fleet.kill_agent("web-1");
    wait_for("web-1 offline", Duration::from_secs(30), || {
        (!fleet.online().contains(&"web-1".to_string())).then_some(())
    });
    let child = fleet.agent_process("web-1", "role=web", None);
    fleet.agents.push(("web-1".to_string(), child));
    fleet.wait_online(&["web-1"]);
}

#[test]
fn a_saved_fleet_plan_applies_exactly_or_is_refused() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web"), ("web-2", "role=web")]);
    let doc = "steward: 1\nassociations:\n  web:\n    targets: { tags: { role: web } }\nresources:\n  file:/motd:\n    content: \"planned\\n\"\n";
    let project = fleet.env.write("project/site.yaml", doc);
    let p = project.parent().unwrap().to_str().unwrap().to_string();
    let plan_file = fleet.env.path().join("fleet.plan");
    let plan_path = plan_file.to_str().unwrap();

    // Plan, save, apply the saved plan.
    let plan = fleet.cli(&["plan", &p, "-o", plan_path]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    assert_eq!(saved["root"], "(agents)");
    let local = crate::common::run_in(fleet.env.path(), &["apply", plan_path]);
    assert_eq!(
        local.code,
        1,
        "a fleet plan needs the controller: {}",
        local.all()
    );
    assert!(
        local.stderr.contains("STEWARD_CONTROLLER"),
        "{}",
        local.stderr
    );
    let apply = fleet.cli(&["apply", plan_path]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
    for web in ["web-1", "web-2"] {
        assert_eq!(
            std::fs::read_to_string(fleet.root(web).join("motd")).unwrap(),
            "planned\n"
        );
    }

    // A node that moved after the plan refuses it; the other applies.
    std::fs::remove_file(fleet.root("web-1").join("motd")).unwrap();
    std::fs::remove_file(fleet.root("web-2").join("motd")).unwrap();
    let plan = fleet.cli(&["plan", &p, "-o", plan_path]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    std::fs::write(fleet.root("web-1").join("motd"), "hand-made\n").unwrap();
    let apply = fleet.cli(&["apply", plan_path]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply.stdout.contains("moved since the plan"),
        "{}",
        apply.stdout
    );
    assert_eq!(
        std::fs::read_to_string(fleet.root("web-1").join("motd")).unwrap(),
        "hand-made\n"
    );
    assert_eq!(
        std::fs::read_to_string(fleet.root("web-2").join("motd")).unwrap(),
        "planned\n"
    );

    // Documents that changed since the plan: refused before any node is touched.
    let plan = fleet.cli(&["plan", &p, "-o", plan_path]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    fleet
        .env
        .write("project/site.yaml", doc.replace("planned", "changed"));
    let apply = fleet.cli(&["apply", plan_path]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply
            .stderr
            .contains("documents changed since this plan was made: site.yaml (changed)"),
        "{}",
        apply.stderr
    );
    assert_eq!(
        std::fs::read_to_string(fleet.root("web-1").join("motd")).unwrap(),
        "hand-made\n"
    );
}

#[test]
fn an_interactive_fleet_apply_applies_exactly_the_plan_it_showed() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web"), ("web-2", "role=web")]);
    let doc = "steward: 1\nassociations:\n  web:\n    targets: { tags: { role: web } }\nresources:\n  file:/motd:\n    content: \"shown\\n\"\n";
    let project = fleet.env.write("project/site.yaml", doc);
    let command = format!(
        "{} apply {}",
        env!("CARGO_BIN_EXE_steward"),
        project.parent().unwrap().display()
    );
    // `script` gives the CLI a terminal, so it shows the plan and asks.
    let mut script = Command::new("script");
    script
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1");
    let mut child = Reaped(
        script
            .args(["-qec", &command, "/dev/null"])
            .env("STEWARD_CONTROLLER", &fleet.http)
            .env("STEWARD_TOKEN_FILE", fleet.data.join("admin.token"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("Only `yes` is accepted") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "no question: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("file:/motd"));
    // Between the plan and the answer, web-1 moves.
    std::fs::write(fleet.root("web-1").join("motd"), "moved\n").unwrap();
    child.stdin.take().unwrap().write_all(b"yes\n").unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    let text = String::from_utf8_lossy(&seen).to_string();
    assert!(text.contains("moved since the plan"), "{text}");
    assert_eq!(
        std::fs::read_to_string(fleet.root("web-1").join("motd")).unwrap(),
        "moved\n"
    );
    assert_eq!(
        std::fs::read_to_string(fleet.root("web-2").join("motd")).unwrap(),
        "shown\n"
    );
}
