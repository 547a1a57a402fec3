//! The HTTP API against cross-site requests and slow clients (issue 12, findings 3 and 10).
//!
//! A real controller (and, where a command could run, a real agent) on loopback; requests are
//! written by hand so that each header is the one a browser or an attacker would send.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fleet_harness::{Fleet, Reaped, bin, send, wait_for};

fn admin_token(fleet: &Fleet) -> String {
    std::fs::read_to_string(fleet.data.join("admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// `POST /v1/commands` asking web-1 to create `file` in its root.
fn command_creating(file: &str) -> String {
    serde_json::json!({
        "target": "web-1",
        "argv": ["/bin/sh", "-c", format!("echo ran > {file}")],
        "max_concurrency": "1",
        "max_errors": "0",
        "timeout_secs": 30,
        "delivery_timeout_secs": 10,
        "user": null,
        "env": {},
        "secret_env": {},
        "user_name": "mallory",
    })
    .to_string()
}

/// A request the API must refuse: the file its command would create, its headers, the status.
type Refused<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);

// Finding 3: a page on another site makes the browser post a command with the Basic
// credentials it remembers (text/plain needs no preflight); the API must refuse it.
#[test]
fn cross_site_and_basic_authenticated_commands_are_refused_and_run_nothing() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    let token = admin_token(&fleet);
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("admin:{token}")
        )
    );
    let bearer = format!("Bearer {token}");

    let refused: [Refused; 5] = [
        (
            "pwned-by-form",
            vec![
                ("Authorization", &basic),
                ("Content-Type", "text/plain"),
                ("Origin", "https://evil.example"),
            ],
            403,
        ),
        (
            "pwned-by-basic",
            vec![
                ("Authorization", &basic),
                ("Content-Type", "application/json"),
            ],
            403,
        ),
        (
            "pwned-by-origin",
            vec![
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("Origin", "https://evil.example"),
            ],
            403,
        ),
        (
            "pwned-by-fetch",
            vec![
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
            403,
        ),
        (
            "pwned-by-text",
            vec![("Authorization", &bearer), ("Content-Type", "text/plain")],
            415,
        ),
    ];
    for (file, headers, status) in &refused {
        // A command that is let through runs to its end before the answer ends.
        let answer = send(
            &fleet.http,
            "POST",
            "/v1/commands",
            headers,
            &command_creating(file),
        );
        assert_eq!(answer.status, *status, "{file}: {}", answer.body);
        let body: serde_json::Value = serde_json::from_str(&answer.body)
            .unwrap_or_else(|err| panic!("{file}: {err}: {}", answer.body));
        assert!(
            body["error"]["message"].is_string() && body["error"]["code"].is_string(),
            "{file}: {}",
            answer.body
        );
    }
    // Basic authentication still reads the dashboard.
    let dashboard = send(&fleet.http, "GET", "/", &[("Authorization", &basic)], "");
    assert_eq!(dashboard.status, 200, "{}", dashboard.body);

    // The API's own origin and the CLI's requests (Bearer, JSON, no Origin) work.
    let own_origin = fleet.http.clone();
    let same_origin = send(
        &fleet.http,
        "POST",
        "/v1/commands",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
            ("Origin", &own_origin),
        ],
        &command_creating("same-origin"),
    );
    assert_eq!(same_origin.status, 200, "{}", same_origin.body);
    let out = fleet.cli(&[
        "run",
        "--target",
        "web-1",
        "--",
        "/bin/sh",
        "-c",
        "echo ran > cli",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());

    let root = fleet.root("web-1");
    assert!(root.join("same-origin").exists(), "{}", fleet.logs());
    assert!(root.join("cli").exists(), "{}", fleet.logs());
    for (file, _, _) in &refused {
        assert!(!root.join(file).exists(), "the refused request {file} ran");
    }

    // Lower finding: who ran it is the credential; the client's user name is only a claim.
    let runs = fleet.cli(&["runs"]);
    assert_eq!(runs.code, 0, "{}", runs.all());
    assert!(
        runs.stdout.contains("admin token (claims"),
        "{}",
        runs.stdout
    );
}

// Finding 3: every answer, refusals and errors included, carries the headers that stop
// framing, sniffing, caching and referrer leaks, and a content security policy.
#[test]
fn every_answer_carries_the_security_headers() {
    let fleet = Fleet::start();
    let bearer = format!("Bearer {}", admin_token(&fleet));
    let mut requests: Vec<(String, String)> = steward::fleet::api::ROUTES
        .iter()
        .map(|route| (route.method.to_string(), fill_placeholders(route.path)))
        .collect();
    requests.push(("GET".to_string(), "/no/such/page".to_string()));
    requests.push(("DELETE".to_string(), "/v1/nodes".to_string()));
    for (method, path) in &requests {
        for auth in [None, Some(bearer.as_str())] {
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(auth) = auth {
                headers.push(("Authorization", auth));
            }
            let answer = send(&fleet.http, method, path, &headers, "{}");
            assert_ne!(answer.status, 0, "{method} {path}: no answer");
            for (name, value) in [
                ("x-frame-options", Some("DENY")),
                ("x-content-type-options", Some("nosniff")),
                ("cache-control", Some("no-store")),
                ("referrer-policy", Some("same-origin")),
                ("content-security-policy", None),
            ] {
                let found = answer.header(name);
                assert!(
                    found.is_some() && value.is_none_or(|v| found == Some(v)),
                    "{method} {path} ({} with auth {}): {name} is {found:?}",
                    answer.status,
                    auth.is_some(),
                );
            }
            let csp = answer.header("content-security-policy").unwrap_or("");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert!(csp.contains("default-src 'none'"), "{csp}");
        }
    }
}

/// `/v1/nodes/{name}/revoke` as `/v1/nodes/1/revoke`.
fn fill_placeholders(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => inside = true,
            '}' => {
                inside = false;
                out.push('1');
            }
            _ if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

/// Restarts the fleet's controller with at most `limit` open files (the usual default soft
/// limit is 1,024, systemd's included).
fn restart_with_open_file_limit(fleet: &mut Fleet, limit: u32) {
    fleet.kill_controller();
    let _ = std::fs::remove_file(fleet.data.join("endpoints.json"));
    let log = std::fs::File::create(fleet.env.path().join("serve.log")).unwrap();
    let child = Command::new("/bin/sh")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg("-c")
        .arg(format!("ulimit -S -n {limit} && exec \"$0\" \"$@\""))
        .arg(crate::common::steward_bin())
        .args(["serve", "--data-dir"])
        .arg(&fleet.data)
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    fleet.serve = Some(child);
    let endpoints: serde_json::Value = wait_for("endpoints.json", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(fleet.data.join("endpoints.json")).ok()?;
        serde_json::from_str(&text).ok()
    });
    fleet.http = endpoints["http"].as_str().unwrap().to_string();
}

/// Makes sure this process may hold `n` more open files.
fn allow_open_files(n: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < n {
        assert!(
            hard >= n,
            "the test needs {n} open files; the hard limit is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, n, hard).unwrap();
    }
}

// Finding 10 (HTTP): 1,100 requests whose headers never end took every file descriptor of a
// controller (soft limit 1,024) and the API stopped answering.
#[test]
fn half_sent_requests_neither_exhaust_the_api_nor_stay_open() {
    const HALF_SENT: usize = 1_100;
    allow_open_files(HALF_SENT as u64 + 1_024);
    let mut fleet = Fleet::start();
    restart_with_open_file_limit(&mut fleet, 1_024);
    let addr: std::net::SocketAddr = fleet.http.trim_start_matches("http://").parse().unwrap();
    let bearer = format!("Bearer {}", admin_token(&fleet));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // From another loopback address than the admin's requests below, as an attacker would be.
    let attackers: Vec<_> = (0..HALF_SENT)
        .map(|_| runtime.spawn(half_sent_request(addr)))
        .collect();
    let streams: Vec<tokio::net::TcpStream> = runtime.block_on(async {
        let mut streams = Vec::new();
        for attacker in attackers {
            if let Some(stream) = attacker.await.unwrap() {
                streams.push(stream);
            }
        }
        streams
    });

    // The API still answers while they are held open.
    let answer = send(
        &fleet.http,
        "GET",
        "/v1/nodes",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(
        answer.status,
        200,
        "the API did not answer with {} half-sent requests open\n{}",
        streams.len(),
        fleet.logs()
    );

    // And the controller closes each of them (after its header timeout, or at once when over
    // a cap): none is left open after a minute.
    let still_open = runtime.block_on(async {
        let waits: Vec<_> = streams
            .into_iter()
            .map(|stream| tokio::spawn(closed_within(stream, Duration::from_secs(60))))
            .collect();
        let mut still_open = 0;
        for wait in waits {
            if !wait.await.unwrap() {
                still_open += 1;
            }
        }
        still_open
    });
    assert_eq!(
        still_open, 0,
        "{still_open} half-sent requests still open after a minute"
    );
    let answer = send(
        &fleet.http,
        "GET",
        "/v1/nodes",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(answer.status, 200, "{}", fleet.logs());
}

/// Opens a connection from 127.0.0.2 and sends the start of a request that never ends.
async fn half_sent_request(addr: std::net::SocketAddr) -> Option<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    // A listener whose backlog is full leaves a connect pending for minutes.
    let mut stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
        .await
        .ok()?
        .ok()?;
    let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
    Some(stream)
}

/// True when the peer closes `stream` (or resets it) within `limit`.
async fn closed_within(mut stream: tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let drain = async {
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, drain).await.is_ok()
}

/// `steward nodes` against `controller` with these extra variables; waits at most a minute.
fn nodes_with(fleet: &Fleet, controller: &str, ca_file: Option<&Path>) -> crate::common::Output {
    let mut cmd = bin();
    cmd.arg("nodes")
        .env("STEWARD_CONTROLLER", controller)
        .env("STEWARD_TOKEN_FILE", fleet.data.join("admin.token"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(ca_file) = ca_file {
        cmd.env("STEWARD_CA_FILE", ca_file);
    }
    let mut child = Reaped(cmd.spawn().unwrap());
    let status = wait_for("steward nodes", Duration::from_secs(60), || {
        child.try_wait().unwrap()
    });
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    crate::common::Output {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

// Required by issue 12 (finding 3): the API can be served over TLS with the controller's CA,
// and the CLI never sends the admin token in clear text off this machine.
#[test]
fn the_api_over_tls_is_trusted_through_the_ca_file_and_plain_http_stays_on_loopback() {
    let fleet = Fleet::start_with(&["--http-tls"]);
    assert!(
        fleet.http.starts_with("https://127.0.0.1:"),
        "{}",
        fleet.http
    );
    let ca = fleet.data.join("ca.crt");

    let out = nodes_with(&fleet, &fleet.http, Some(&ca));
    assert_eq!(out.code, 0, "{}\n{}", out.all(), fleet.logs());

    let out = nodes_with(&fleet, &fleet.http, None);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("STEWARD_CA_FILE"), "{}", out.all());

    // Another controller's CA does not vouch for this one.
    let other = crate::common::TestEnv::new();
    let created = bin()
        .args(["token", "create", "--data-dir"])
        .arg(other.path().join("d"))
        .output()
        .unwrap();
    assert!(created.status.success());
    let out = nodes_with(&fleet, &fleet.http, Some(&other.path().join("d/ca.crt")));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("certificate"), "{}", out.all());

    // Plain HTTP to another machine is refused before connecting (this address never
    // answers: a connection attempt would hang).
    let out = nodes_with(&fleet, "http://10.255.255.1:9", None);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("plain HTTP"), "{}", out.all());
    assert!(out.stderr.contains("https"), "{}", out.all());
}
