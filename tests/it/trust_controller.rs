//! The controller's data dir, store and agent port against faults and hostile clients (issue 12, findings 6 and 10).
//!
//! Real `steward serve` processes on loopback, a real agent where one must still get in, and
//! store files damaged the way disks and people damage them.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Output, TestEnv};
use crate::fleet_harness::{Fleet, Reaped, bin, tls_exchange, wait_for};

/// Starts `steward serve` on `data` (free ports) and waits for it to exit; a controller that
/// is still serving after `within` is killed and reported as `None`.
fn serve_expecting_exit(env: &TestEnv, data: &Path, within: Duration) -> Option<Output> {
    let stderr = env.path().join("refused-serve.log");
    let mut child = Reaped(
        bin()
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap(),
    );
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Some(Output {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: std::fs::read_to_string(&stderr).unwrap(),
    })
}

fn private_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

// Finding 6: a 0-byte store was silently re-created, and every enrolled agent then refused.
#[test]
fn an_empty_store_is_refused_with_its_path_and_never_recreated() {
    let env = TestEnv::new();
    let data = env.path().join("controller");
    private_dir(&data);
    let store = data.join("steward.db");
    std::fs::write(&store, b"").unwrap();
    let out = serve_expecting_exit(&env, &data, Duration::from_secs(20))
        .expect("the controller started on an empty store");
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains(&store.display().to_string()) && out.stderr.contains("empty"),
        "{}",
        out.all()
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.all());
    assert_eq!(
        std::fs::metadata(&store).unwrap().len(),
        0,
        "the store was re-created"
    );
    assert!(!data.join("ca.key").exists(), "a CA was made beside it");

    // Local mode: the project's store is refused the same way.
    env.write(
        "p/site.yaml",
        "steward: 1\nresources:\n  file:/motd: { content: \"hi\\n\" }\n",
    );
    let local_store = env.write("p/.steward/steward.db", b"");
    let root = env.mkdir("root");
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("steward.db is damaged"),
        "{}",
        out.all()
    );
    assert_eq!(std::fs::metadata(&local_store).unwrap().len(), 0);
    assert!(!root.join("motd").exists(), "applied without a store");
    // A missing store is still created, as before.
    std::fs::remove_file(&local_store).unwrap();
    let out = env.run(&["--root", root.to_str().unwrap(), "apply", "p", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(std::fs::metadata(&local_store).unwrap().len() > 0);
}

// Finding 6: pages damaged in the middle of the store were not noticed at start-up.
#[test]
fn a_store_with_a_damaged_page_is_refused_at_start() {
    // A store made by a real controller, with a token in it.
    let mut fleet = Fleet::start();
    fleet.token("1h");
    fleet.kill_controller();
    let store = fleet.data.join("steward.db");
    // Fold the WAL into the file (the controller was killed), so the page on disk is the one
    // SQLite reads.
    let (page_size, root_page): (u64, u64) = {
        let conn = rusqlite::Connection::open(&store).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .unwrap();
        let root_page: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'runs'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        (page_size as u64, root_page as u64)
    };
    let len = std::fs::metadata(&store).unwrap().len();
    assert!(len >= 4 * page_size, "{len} bytes");
    assert!(
        root_page > 1 && root_page * page_size < len,
        "page {root_page}"
    );
    // Garbage over the page holding the table of runs, the file's size unchanged.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .unwrap();
    file.seek(SeekFrom::Start((root_page - 1) * page_size))
        .unwrap();
    file.write_all(&[0xA5; 64]).unwrap();
    drop(file);
    let damaged = std::fs::read(&store).unwrap();

    let out = serve_expecting_exit(&fleet.env, &fleet.data, Duration::from_secs(20))
        .expect("the controller started on a damaged store");
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains(&store.display().to_string()) && out.stderr.contains("damaged"),
        "{}",
        out.all()
    );
    assert!(
        std::fs::read(&store).unwrap() == damaged,
        "the damaged store was written to"
    );
}

// Finding 6: two controllers ran on one data dir and recorded every scheduled run twice.
#[test]
fn a_second_controller_on_the_same_data_dir_is_refused_and_the_first_keeps_serving() {
    let fleet = Fleet::start();
    let first = fleet.serve.as_ref().unwrap().id();
    let endpoints = std::fs::read_to_string(fleet.data.join("endpoints.json")).unwrap();
    let out = serve_expecting_exit(&fleet.env, &fleet.data, Duration::from_secs(20))
        .expect("a second controller runs on the same data dir");
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr
            .contains(&format!("is in use by steward serve (pid {first})")),
        "{}",
        out.all()
    );
    assert_eq!(
        std::fs::read_to_string(fleet.data.join("endpoints.json")).unwrap(),
        endpoints
    );
    let nodes = fleet.cli(&["nodes"]);
    assert_eq!(nodes.code, 0, "{}", nodes.all());
    // `token create` opens the same store while the controller runs.
    let token = fleet.token("1h");
    assert!(!token.is_empty());
}

// Finding 6 (lower): a data dir that existed as 0755 was kept 0755 silently.
#[test]
fn a_data_dir_open_to_other_users_is_made_private() {
    let env = TestEnv::new();
    let data = env.path().join("controller");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut fleet = Fleet {
        env,
        data: data.clone(),
        serve: None,
        agents: Vec::new(),
        agent_addr: String::new(),
        http: String::new(),
        serve_args: Vec::new(),
    };
    fleet.start_controller("127.0.0.1:0", "127.0.0.1:0");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{:o}\n{}", mode, fleet.logs());
    assert!(fleet.logs().contains("set it to 0700"), "{}", fleet.logs());
}

// Lower (a 0755 data dir kept silently): `token create`, which may run first, makes it
// private too, before it writes the CA's key into it.
#[test]
fn token_create_makes_an_open_data_dir_private() {
    let env = TestEnv::new();
    let data = env.path().join("controller");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = crate::common::run_in(
        env.path(),
        &["token", "create", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

/// The controller's CA fingerprint, as a join token carries it.
fn fingerprint(fleet: &Fleet) -> String {
    let token = fleet.token("1h");
    format!("sha256:{}", token.rsplit('.').next().unwrap())
}

fn tls_client(
    fleet: &Fleet,
    alpn: &[&[u8]],
) -> (
    tokio_rustls::TlsConnector,
    rustls::pki_types::ServerName<'static>,
) {
    let pinned = steward::fleet::pki::enroll_client_config(&fingerprint(fleet)).unwrap();
    let mut config = (*pinned).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
    )
}

fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

// Finding 10: before authentication the agent port read frames of up to 64 MiB (8
// connections: 417 MB of memory).
#[test]
fn frames_before_authentication_are_capped_small() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const N_CONNECTIONS: usize = 8;
    const ANNOUNCED: u32 = 60 * 1024 * 1024;
    const SENT: usize = 24 * 1024 * 1024;
    let fleet = Fleet::start();
    let pid = fleet.serve.as_ref().unwrap().id();
    let (connector, name) = tls_client(&fleet, &[steward::fleet::pki::ALPN]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sent, rss_kb) = runtime.block_on(async {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(N_CONNECTIONS + 1));
        let mut tasks = Vec::new();
        for _ in 0..N_CONNECTIONS {
            let connector = connector.clone();
            let name = name.clone();
            let addr = fleet.agent_addr.clone();
            let barrier = std::sync::Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let mut tls = connector.connect(name, tcp).await.unwrap();
                let chunk = vec![b' '; 256 * 1024];
                let mut sent = 0;
                let mut ok = tls.write_all(&ANNOUNCED.to_be_bytes()).await.is_ok();
                while ok && sent < SENT {
                    ok = tls.write_all(&chunk).await.is_ok() && tls.flush().await.is_ok();
                    if ok {
                        sent += chunk.len();
                    }
                }
                // Hold the connection while the controller's memory is read.
                barrier.wait().await;
                let mut byte = [0u8; 1];
                let _ = tokio::time::timeout(Duration::from_secs(15), tls.read(&mut byte)).await;
                sent
            }));
        }
        barrier.wait().await;
        let rss_kb = vm_rss_kb(pid);
        let mut sent = Vec::new();
        for task in tasks {
            sent.push(task.await.unwrap());
        }
        (sent, rss_kb)
    });
    // A connection closed after its length prefix takes no more than the socket buffers hold.
    for bytes in &sent {
        assert!(
            *bytes < SENT,
            "the controller read {bytes} bytes of an oversized frame"
        );
    }
    assert!(rss_kb < 150 * 1024, "controller RSS {rss_kb} kB");
    // It keeps serving.
    assert_eq!(fleet.cli(&["nodes"]).code, 0);
}

/// Sends an `enroll` with a real token over a client offering `alpn`; the first frame back.
fn enroll_with_alpn(fleet: &Fleet, token: &str, alpn: &[&[u8]]) -> Option<Vec<u8>> {
    let (connector, name) = tls_client(fleet, alpn);
    let key = steward::fleet::pki::new_agent_key("sneaky").unwrap();
    let enroll = serde_json::to_vec(&steward::fleet::wire::AgentMsg::Enroll {
        protocol: steward::fleet::wire::PROTOCOL,
        token: token.to_string(),
        node: "sneaky".to_string(),
        tags: Default::default(),
        csr_pem: key.csr_pem,
    })
    .unwrap();
    let mut frame = (enroll.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&enroll);
    tls_exchange(&fleet.agent_addr, connector, name, &frame)
}

// Finding 10: the agent port accepted clients that offer no ALPN.
#[test]
fn clients_that_do_not_offer_the_steward_protocol_are_dropped() {
    let mut fleet = Fleet::start();
    let token = fleet.token("1h");
    let answer = enroll_with_alpn(&fleet, &token, &[]);
    assert!(
        answer.is_none(),
        "a client without ALPN was answered: {}",
        String::from_utf8_lossy(&answer.unwrap_or_default())
    );
    let answer = enroll_with_alpn(&fleet, &token, &[b"h2", b"http/1.1"]);
    assert!(answer.is_none(), "a client offering only h2 was answered");
    // The token was not spent: a real agent enrolls with it.
    let child = fleet.agent_process("web-1", "role=web", Some(&token));
    fleet.agents.push(("web-1".to_string(), child));
    fleet.wait_online(&["web-1"]);
    assert!(!fleet.logs().contains("enrolled node `sneaky`"));
}

/// Whether the controller closed this connection (it never sends first).
fn closed_by_peer(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
    }
}

// Finding 10: unauthenticated connections are capped per source, and many idle ones (which
// never start TLS) do not keep a real agent out.
#[test]
fn unauthenticated_connections_are_capped_per_source_and_idle_ones_do_not_keep_agents_out() {
    let mut fleet = Fleet::start();
    // From one address: the first 32 wait in the TLS handshake, the rest are closed at once
    // (before, every one was held until the handshake timed out, the oldest first).
    let mut idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| {
            let stream = std::net::TcpStream::connect(&fleet.agent_addr).unwrap();
            stream.set_nonblocking(true).unwrap();
            stream
        })
        .collect();
    let closed = wait_for(
        "the controller to close a connection",
        Duration::from_secs(30),
        || {
            let closed: Vec<usize> = (0..idle.len())
                .filter(|&idx| closed_by_peer(&mut idle[idx]))
                .collect();
            (!closed.is_empty()).then_some(closed)
        },
    );
    assert!(
        closed.iter().all(|&idx| idx >= 32),
        "connections closed first: {closed:?}"
    );
    idle.extend((0..300).map(|_| std::net::TcpStream::connect(&fleet.agent_addr).unwrap()));
    fleet.add_agent("web-1", "role=web");
    fleet.wait_online(&["web-1"]);
    let out = fleet.cli(&["run", "--target", "role=web", "--", "/bin/true"]);
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());
    drop(idle);
}

/// A controller started under `ulimit -n LIMIT`.
fn fleet_with_fd_limit(limit: u32) -> Fleet {
    let env = TestEnv::new();
    let data = env.path().join("controller");
    let log = std::fs::File::create(env.path().join("serve.log")).unwrap();
    let child = Command::new("sh")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(crate::common::steward_bin())
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let endpoints: serde_json::Value = wait_for("endpoints.json", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(data.join("endpoints.json")).ok()?;
        serde_json::from_str(&text).ok()
    });
    Fleet {
        agent_addr: endpoints["agents"].as_str().unwrap().to_string(),
        http: endpoints["http"].as_str().unwrap().to_string(),
        env,
        data,
        serve: Some(child),
        agents: Vec::new(),
        serve_args: Vec::new(),
    }
}

/// A TCP connection to `addr` from the loopback address `127.0.0.SOURCE`.
fn connect_from(source: u8, addr: &str) -> std::net::TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(format!("127.0.0.{source}:0").parse().unwrap())
            .unwrap();
        let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
        stream.into_std().unwrap()
    })
}

// Finding 10: running out of file descriptors must not stop the accept loops.
#[test]
fn running_out_of_file_descriptors_does_not_stop_the_agent_port() {
    let mut fleet = fleet_with_fd_limit(64);
    let pid = fleet.serve.as_ref().unwrap().id();
    // From several source addresses, so no per-source cap closes them before the
    // descriptors run out.
    let flood: Vec<std::net::TcpStream> = (0..80)
        .map(|idx| connect_from(2 + (idx % 8) as u8, &fleet.agent_addr))
        .collect();
    wait_for(
        "the controller to run out of file descriptors",
        Duration::from_secs(30),
        || fleet.logs().contains("Too many open files").then_some(()),
    );
    let n_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(n_fds >= 60, "{n_fds} descriptors open");
    drop(flood);
    fleet.add_agent("web-1", "role=web");
    fleet.wait_online(&["web-1"]);
    let out = fleet.cli(&["run", "--target", "role=web", "--", "/bin/true"]);
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());
}
