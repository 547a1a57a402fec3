//! The fleet test harness: a real controller and real agents as processes on loopback, each
//! agent with its own `--root`, driven through the CLI. Shared by the fleet test files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Output, TestEnv};

/// A controller with its agents; every process is killed on drop.
pub(crate) struct Fleet {
    pub(crate) env: TestEnv,
    pub(crate) data: PathBuf,
    pub(crate) serve: Option<Child>,
    pub(crate) agents: Vec<(String, Reaped)>,
    pub(crate) agent_addr: String,
    pub(crate) http: String,
    pub(crate) serve_args: Vec<String>,
}

pub(crate) fn bin() -> Command {
    let mut cmd = Command::new(crate::common::steward_bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1");
    cmd
}

pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Fleet {
    pub(crate) fn start() -> Fleet {
        Fleet::start_with(&[])
    }

    /// A controller started with extra `serve` arguments.
    pub(crate) fn start_with(serve_args: &[&str]) -> Fleet {
        let mut fleet = Fleet::unstarted(serve_args);
        fleet.start_controller("127.0.0.1:0", "127.0.0.1:0");
        fleet
    }

    /// A fleet whose controller is not started yet ([`Fleet::start_controller`] starts it).
    pub(crate) fn unstarted(serve_args: &[&str]) -> Fleet {
        let env = TestEnv::new();
        let data = env.path().join("controller");
        Fleet {
            env,
            data,
            serve: None,
            agents: Vec::new(),
            agent_addr: String::new(),
            http: String::new(),
            serve_args: serve_args.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub(crate) fn start_controller(&mut self, listen: &str, http: &str) {
        let _ = std::fs::remove_file(self.data.join("endpoints.json"));
        let log = std::fs::File::create(self.env.path().join("serve.log")).unwrap();
        let child = bin()
            .args(["serve", "--data-dir"])
            .arg(&self.data)
            .args(["--listen", listen, "--http", http])
            .args(&self.serve_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.serve = Some(child);
        let endpoints: serde_json::Value =
            wait_for("endpoints.json", Duration::from_secs(30), || {
                let text = std::fs::read_to_string(self.data.join("endpoints.json")).ok()?;
                serde_json::from_str(&text).ok()
            });
        self.agent_addr = endpoints["agents"].as_str().unwrap().to_string();
        self.http = endpoints["http"].as_str().unwrap().to_string();
    }

    pub(crate) fn kill_controller(&mut self) {
        if let Some(mut child) = self.serve.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// An unbound join token: it enrolls any new name, with no tags of its own.
    pub(crate) fn token(&self, ttl: &str) -> String {
        self.token_with(&["--ttl", ttl])
    }

    /// `steward token create` with these arguments (besides `--data-dir`).
    pub(crate) fn token_with(&self, args: &[&str]) -> String {
        let mut all = vec!["token", "create", "--data-dir", self.data.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert_eq!(out.code, 0, "{}", out.all());
        out.stdout.trim().to_string()
    }

    /// A token that enrolls only `name`, with `tags` (the quick path of the guide). A build
    /// without bound tokens (STEWARD_TEST_BIN pointing at an old one) gets an unbound token.
    pub(crate) fn bound_token(&self, name: &str, tags: &str) -> String {
        let mut args = vec!["token", "create", "--data-dir", self.data.to_str().unwrap()];
        args.extend(["--ttl", "1h", "--name", name]);
        if !tags.is_empty() {
            args.extend(["--tags", tags]);
        }
        let out = self.cli(&args);
        if out.code != 0 && out.stderr.contains("unexpected argument") {
            return self.token("1h");
        }
        assert_eq!(out.code, 0, "{}", out.all());
        out.stdout.trim().to_string()
    }

    pub(crate) fn root(&self, name: &str) -> PathBuf {
        self.env.path().join("roots").join(name)
    }

    pub(crate) fn state(&self, name: &str) -> PathBuf {
        self.env.path().join("agents").join(name)
    }

    /// Starts an agent (enrolling with `token` when given).
    pub(crate) fn agent_process(&self, name: &str, tags: &str, token: Option<&str>) -> Reaped {
        let mut cmd = self.agent_command(name, name, tags);
        if let Some(token) = token {
            cmd.args(["--token", token]);
        }
        Reaped(cmd.spawn().unwrap())
    }

    /// The command of an agent asking to be `name`, whose root, state directory and log
    /// (`agent-LABEL.log`) are those of `label`: two agents may ask for one name.
    pub(crate) fn agent_command(&self, label: &str, name: &str, tags: &str) -> Command {
        self.agent_command_to(&self.agent_addr, label, name, tags)
    }

    /// [`Fleet::agent_command`] with `connect` as the agent's `--connect` (a list, for
    /// failover).
    pub(crate) fn agent_command_to(
        &self,
        connect: &str,
        label: &str,
        name: &str,
        tags: &str,
    ) -> Command {
        let root = self.root(label);
        std::fs::create_dir_all(&root).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.agent_log(label))
            .unwrap();
        let mut cmd = bin();
        cmd.args(["agent", "--root"])
            .arg(&root)
            .args(["--connect", connect, "--name", name, "--tags", tags])
            .arg("--data-dir")
            .arg(self.state(label))
            .stdout(Stdio::null())
            .stderr(log);
        cmd
    }

    /// The log file of the agent `label`.
    pub(crate) fn agent_log(&self, label: &str) -> PathBuf {
        self.env.path().join(format!("agent-{label}.log"))
    }

    /// A controller with these agents (`(name, tags)`), all online.
    pub(crate) fn with_agents(agents: &[(&str, &str)]) -> Fleet {
        let mut fleet = Fleet::start();
        for (name, tags) in agents {
            fleet.add_agent(name, tags);
        }
        let names: Vec<&str> = agents.iter().map(|(name, _)| *name).collect();
        fleet.wait_online(&names);
        fleet
    }

    /// Enrolls an agent with a token bound to its name and tags.
    pub(crate) fn add_agent(&mut self, name: &str, tags: &str) {
        let token = self.bound_token(name, tags);
        let child = self.agent_process(name, tags, Some(&token));
        self.agents.push((name.to_string(), child));
    }

    pub(crate) fn kill_agent(&mut self, name: &str) {
        if let Some(idx) = self.agents.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.agents.remove(idx);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The command of steward against the controller, to run or spawn.
    pub(crate) fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.args(args)
            .current_dir(self.env.path())
            .env("STEWARD_CONTROLLER", &self.http)
            .env("STEWARD_TOKEN_FILE", self.data.join("admin.token"));
        cmd
    }

    /// Runs steward against the controller.
    pub(crate) fn cli(&self, args: &[&str]) -> Output {
        let output = self.cli_command(args).output().unwrap();
        Output {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub(crate) fn online(&self) -> Vec<String> {
        let out = self.cli(&["nodes", "--format", "json"]);
        if out.code != 0 {
            return Vec::new();
        }
        let nodes: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["online"] == true)
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    }

    pub(crate) fn wait_online(&self, names: &[&str]) {
        wait_for(
            &format!("{names:?} online"),
            Duration::from_secs(60),
            || {
                let online = self.online();
                names
                    .iter()
                    .all(|n| online.iter().any(|o| o == n))
                    .then_some(())
            },
        );
    }

    pub(crate) fn logs(&self) -> String {
        let mut out = String::new();
        for entry in std::fs::read_dir(self.env.path()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "log") {
                out.push_str(&format!("--- {}\n", path.display()));
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for (_, child) in &mut self.agents {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.kill_controller();
    }
}

/// A loopback address no process listens on (yet).
pub(crate) fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A process the test holds itself, killed if the test ends early.
pub(crate) struct Reaped(pub(crate) Child);

impl std::ops::Deref for Reaped {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every file under a directory, relative.
pub(crate) fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

pub(crate) fn poke(addr: &str, bytes: &[u8]) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
}

/// Connects over TLS (pinning the controller by fingerprint, or with a client certificate),
/// sends `bytes`, and returns the first frame the controller answers with, if any.
pub(crate) fn tls_poke(
    addr: &str,
    fingerprint: &str,
    client: Option<(&str, &str, &str)>,
    bytes: &[u8],
) -> Option<Vec<u8>> {
    let config = match client {
        None => steward::fleet::pki::enroll_client_config(fingerprint).unwrap(),
        Some((ca, cert, key)) => steward::fleet::pki::agent_client_config(ca, cert, key).unwrap(),
    };
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tls_exchange(addr, tokio_rustls::TlsConnector::from(config), name, bytes)
}

/// A request to the HTTP API: its status and body.
pub(crate) fn http(http: &str, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    http_body(http, method, path, auth, "{}", Duration::from_secs(10))
}

/// [`http`] with a JSON `body` of the caller's and a read timeout.
pub(crate) fn http_body(
    http: &str,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
    timeout: Duration,
) -> (u16, String) {
    let addr = http.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// One answer of the API.
pub(crate) struct Answer {
    pub(crate) status: u16,
    /// Header names in lowercase.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The media type of `Content-Type`, without parameters.
    pub(crate) fn media_type(&self) -> &str {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .trim()
    }

    /// The body as JSON; panics with the answer when it is not.
    pub(crate) fn json(&self, what: &str) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|err| panic!("{what}: not JSON ({err}): {} {}", self.status, self.body))
    }

    /// The `code` and `message` of a JSON error body, checking it is one.
    pub(crate) fn error(&self, what: &str) -> (String, String) {
        assert_eq!(
            self.media_type(),
            "application/json",
            "{what}: {}",
            self.body
        );
        let body = self.json(what);
        let error = body["error"].as_object().unwrap_or_else(|| {
            panic!("{what}: no `error` object: {}", self.body);
        });
        assert_eq!(
            body.as_object().map(|o| o.len()),
            Some(1),
            "{what}: {}",
            self.body
        );
        let code = error["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no code"));
        let message = error["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no message"));
        assert!(!message.is_empty(), "{what}: empty message");
        (code.to_string(), message.to_string())
    }
}

/// Sends one request to `origin` (`http://HOST:PORT`) with exactly these headers and body.
pub(crate) fn send(
    origin: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let addr = origin.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// The HTTP status of a request without credentials.
pub(crate) fn status_without_token(http_addr: &str, method: &str, path: &str) -> u16 {
    http(http_addr, method, path, None).0
}

// trust_secrets helpers
impl Fleet {
    /// Adds an agent (as [`Fleet::add_agent`]) that appends every task it receives to the
    /// returned file, one JSON line each (the agent's `STEWARD_TEST_TRACE_TASKS` test hook).
    pub(crate) fn add_traced_agent(&mut self, name: &str, tags: &str) -> PathBuf {
        let trace = self.env.path().join(format!("tasks-{name}.jsonl"));
        let root = self.root(name);
        std::fs::create_dir_all(&root).unwrap();
        let log = std::fs::File::create(self.env.path().join(format!("agent-{name}.log"))).unwrap();
        let child = bin()
            .args(["agent", "--root"])
            .arg(&root)
            .args(["--connect", &self.agent_addr, "--name", name])
            .args(["--tags", tags, "--token", &self.bound_token(name, tags)])
            .arg("--data-dir")
            .arg(self.state(name))
            .env("STEWARD_TEST_TRACE_TASKS", &trace)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agents.push((name.to_string(), Reaped(child)));
        trace
    }
}

/// True when some file under `dir` holds `needle`.
pub(crate) fn any_file_holds(dir: &Path, needle: &str) -> Option<PathBuf> {
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                return Some(path);
            }
        }
    }
    None
}
// end trust_secrets helpers

/// Connects to `addr` with `connector`, sends `bytes`, and returns the first frame the
/// controller answers with, if any (within 15 s).
pub(crate) fn tls_exchange(
    addr: &str,
    connector: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
    bytes: &[u8],
) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut tls = connector.connect(name, tcp).await.ok()?;
        tls.write_all(bytes).await.ok()?;
        tls.flush().await.ok()?;
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(15), tls.read_exact(&mut len))
            .await
            .ok()?
            .ok()?;
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        tls.read_exact(&mut frame).await.ok()?;
        Some(frame)
    })
}
