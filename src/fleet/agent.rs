//! `steward agent`: enrolls once, then holds one connection to a controller and runs the
//! tasks pushed down it.
//!
//! The agent dials out (nodes open no port). On first start it makes a key pair and trades a
//! one-time join token and a CSR for a certificate, pinning the controller by the CA
//! fingerprint the token carries. From then on it connects with mutual TLS, says hello with its
//! facts, heartbeats, and runs tasks with the same providers as local mode under its `--root`.
//! A result is written to the outbox before it is sent and forgotten only when the controller
//! acknowledges it, so results survive a lost connection or a restart of either side.
//!
//! `--connect` may list several controllers: the agent tries them in order and fails over to
//! the next one when a connection cannot be made or is lost ([`Rotation`]). Its identity and
//! its outbox are its own, not a controller's, so they are the same whichever one it reaches.
//!
//! **Architecture Invariant:** a task id runs at most once, and never after its expiry: the
//! ledger claims it (durably) before any work starts.
//!
//! Errors are values: [`AgentError`] says why the agent stopped, and the private
//! `ConnectError`, `EnrollError` and `SessionError` say whether a failed attempt is worth
//! retrying. A task's failure is not an error of the agent: it goes back to the controller in
//! the task's result.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::engine::client::block_on;
use crate::engine::{AgentClient, ApplyTask, LocalClient};
use crate::exec::ResourceOutcome;
use crate::fleet::outbox::{Claim, Ledger, Outbox, OutboxError};
use crate::fleet::pki::{self, PkiError};
use crate::fleet::token::{JoinToken, TokenError};
use crate::fleet::wire::{
    self, AgentMsg, Catalog, CommandTask, ControllerMsg, HELLO_TIMEOUT, IDLE_TIMEOUT, PROTOCOL,
    Task, TaskKind, TaskResult, WireFacts, WireObserved, WireOutcome, WireOutput,
};
use crate::plan::{self, graph::ResourceGraph};
use crate::resource::Registry;
use crate::resource::command::{Run, Stream};
use std::sync::atomic::{AtomicBool, Ordering};

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The controllers' agent ports, in the order they are tried (see [`parse_connect`]).
    pub controllers: Vec<ControllerAddr>,
    /// A join token, needed only until the agent is enrolled.
    pub token: Option<String>,
    /// A file holding the join token, read only when the agent enrolls.
    pub token_file: Option<PathBuf>,
    /// The node name to enroll as.
    pub name: String,
    /// Tags the agent asks for at enrollment (recorded as claimed; the controller's tags
    /// are what targeting uses).
    pub tags: BTreeMap<String, String>,
    /// Where the node's file system is.
    pub root: PathBuf,
    /// Keys, certificate, outbox and task ledger.
    pub state_dir: PathBuf,
    /// The resource types tasks are run with, built once by the caller.
    pub registry: std::sync::Arc<Registry>,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// Not enrolled and no token to enroll with.
    #[error(
        "this agent is not enrolled yet ({} has no identity): give a join token with \
         --join-token-file FILE or STEWARD_JOIN_TOKEN",
        .0.display()
    )]
    NoToken(PathBuf),
    /// The join token does not parse.
    #[error("join token: {0}")]
    BadToken(#[source] TokenError),
    /// The join token's CA fingerprint cannot pin a TLS connection.
    #[error("join token: {0}")]
    TokenPin(#[source] PkiError),
    /// The join token's file cannot be read.
    #[error("join token: {}: {source}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The join token's file is empty.
    #[error("join token: {} is empty", .0.display())]
    EmptyTokenFile(PathBuf),
    /// The controller refused enrollment or the connection for good (its reason, or why the
    /// agent cannot go on talking to it).
    #[error("the controller refused this agent: {0}")]
    Refused(String),
    /// The state directory cannot be created or made private.
    #[error("state directory: {0}")]
    StateDir(#[source] crate::state_dir::StateDirError),
    /// The stored identity cannot be read.
    #[error("state directory: {}: {source}", path.display())]
    ReadIdentity {
        /// `identity.json`.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The stored identity is not one.
    #[error("state directory: {}: {source}", path.display())]
    ParseIdentity {
        /// `identity.json`.
        path: PathBuf,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// The identity cannot be encoded (it cannot happen with these fields, but is not worth a
    /// panic).
    #[error("state directory: {0}")]
    EncodeIdentity(#[source] serde_json::Error),
    /// The identity cannot be written, or a key made.
    #[error("state directory: {0}")]
    Pki(#[from] PkiError),
    /// The outbox or the task ledger cannot be opened.
    #[error("state directory: {0}")]
    Outbox(#[from] OutboxError),
    /// A `--connect` address is not `HOST:PORT`.
    #[error("--connect: `{0}` is not HOST:PORT (a host name or IP address, and a port 1 to 65535)")]
    BadAddress(String),
    /// A `--connect` value holds an empty item (`a:1,,b:2`, a trailing comma, or nothing).
    #[error("--connect `{0}`: an empty address in the list; give HOST:PORT[,HOST:PORT...]")]
    EmptyAddress(String),
    /// No `--connect` address at all.
    #[error("--connect: no controller address; give HOST:PORT[,HOST:PORT...]")]
    NoController,
}

/// A controller's agent port as `--connect` gives it: `HOST:PORT`, and the name the
/// controller's certificate is checked against (HOST).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerAddr {
    addr: String,
    server: rustls::pki_types::ServerName<'static>,
}

impl ControllerAddr {
    /// Reads one `HOST:PORT` (an IPv6 host in brackets: `[::1]:7443`).
    pub fn parse(text: &str) -> Result<ControllerAddr, AgentError> {
        let bad = || AgentError::BadAddress(text.to_string());
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || !matches!(port.parse::<u16>(), Ok(1..)) {
            return Err(bad());
        }
        let host = match host.strip_prefix('[') {
            Some(bracketed) => bracketed.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        let server =
            rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| bad())?;
        Ok(ControllerAddr {
            addr: text.to_string(),
            server,
        })
    }

    /// `HOST:PORT`, as given.
    pub fn as_str(&self) -> &str {
        &self.addr
    }
}

impl std::fmt::Display for ControllerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.addr)
    }
}

/// The controllers `--connect` names, in order: each value is one `HOST:PORT` or a
/// comma-separated list of them, and the flag may be repeated. White space around an item is
/// ignored; an empty item is an error, not skipped, so a typo does not drop a controller.
pub fn parse_connect<S: AsRef<str>>(values: &[S]) -> Result<Vec<ControllerAddr>, AgentError> {
    let mut controllers = Vec::new();
    for value in values {
        let value = value.as_ref();
        for item in value.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(AgentError::EmptyAddress(value.to_string()));
            }
            controllers.push(ControllerAddr::parse(item)?);
        }
    }
    if controllers.is_empty() {
        return Err(AgentError::NoController);
    }
    Ok(controllers)
}

/// What enrollment leaves in the state directory (`identity.json`, mode 0600).
#[derive(Clone, Serialize, Deserialize)]
struct Identity {
    node: String,
    key_pem: String,
    cert_pem: String,
    ca_pem: String,
}

fn identity_path(state_dir: &Path) -> PathBuf {
    state_dir.join("identity.json")
}

fn read_identity(state_dir: &Path) -> Result<Option<Identity>, AgentError> {
    let path = identity_path(state_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| AgentError::ParseIdentity { path, source }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AgentError::ReadIdentity { path, source }),
    }
}

fn write_identity(state_dir: &Path, identity: &Identity) -> Result<(), AgentError> {
    let bytes = serde_json::to_vec(identity).map_err(AgentError::EncodeIdentity)?;
    Ok(pki::write_private(&identity_path(state_dir), &bytes)?)
}

/// Runs the agent until it is refused for good (revoked, bad token) or the process ends.
pub async fn run(config: Config) -> Result<(), AgentError> {
    let mut rotation = Rotation::new(&config.controllers).ok_or(AgentError::NoController)?;
    crate::state_dir::create_private_dir(&config.state_dir).map_err(AgentError::StateDir)?;
    let mut identity = match read_identity(&config.state_dir)? {
        Some(identity) => {
            if identity.node != config.name {
                tracing::warn!(
                    node = %identity.node,
                    "enrolled as `{}`; --name `{}` is ignored (re-enroll with a new state directory to change it)",
                    identity.node,
                    config.name
                );
            }
            identity
        }
        None => {
            let token = join_token(&config)?;
            let identity = enroll(&config, &mut rotation, &token).await?;
            write_identity(&config.state_dir, &identity)?;
            identity
        }
    };
    let outbox = Arc::new(Outbox::open(&config.state_dir)?);
    let ledger = Arc::new(std::sync::Mutex::new(Ledger::open(&config.state_dir)?));
    let link: Link = Arc::new(std::sync::Mutex::new(None));
    let cancels: Cancels = Arc::default();
    loop {
        let controller = rotation.current().clone();
        let shared = Shared {
            outbox: &outbox,
            ledger: &ledger,
            link: &link,
            cancels: &cancels,
        };
        let connection = match open(&config, &controller, &identity).await {
            Ok(connection) => connection,
            Err(err) if err.is_final() => return Err(AgentError::Refused(err.to_string())),
            Err(err) => {
                let wait = rotation.advance(Attempt::Failed);
                tracing::warn!(
                    controller = %controller,
                    next = %rotation.current(),
                    "cannot connect to {controller}: {err}; {}",
                    rotation.then(&controller, wait)
                );
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        tracing::info!(
            controller = %controller,
            node = %identity.node,
            "connected to {controller} as {}",
            identity.node
        );
        let started = Instant::now();
        let ended = session(&config, connection, &mut identity, &shared).await;
        let wait = rotation.advance(Attempt::Ended {
            lasted: started.elapsed(),
        });
        let then = rotation.then(&controller, wait);
        let next = rotation.current();
        match ended {
            Ok(()) => {
                tracing::info!(controller = %controller, next = %next, "connection to {controller} closed; {then}")
            }
            Err(err) if err.is_final() => return Err(AgentError::Refused(err.to_string())),
            Err(err) => {
                tracing::warn!(controller = %controller, next = %next, "connection to {controller} lost: {err}; {then}");
            }
        }
        tokio::time::sleep(wait).await;
    }
}

/// A connection shorter than this counts as a failed attempt, so a controller that accepts
/// the agent and then drops it cannot make it spin.
const STABLE: Duration = Duration::from_secs(30);

/// What became of one attempt at a controller.
#[derive(Clone, Copy, Debug)]
enum Attempt {
    /// No connection (or no enrollment) was made.
    Failed,
    /// A connection was made, and it ended after `lasted`.
    Ended { lasted: Duration },
}

/// The order the agent tries its controllers in, and how long it waits between attempts.
///
/// The controllers are tried in the order `--connect` gives, starting with the first; after
/// each attempt the agent moves to the next one (wrapping around). A failed attempt moves on
/// at once; when every controller has failed in a row (a round), the agent waits
/// [`Backoff`]'s jittered, doubling time (0.5 s to 30 s) before the next round. A connection
/// that lasted [`STABLE`] resets both the round and the backoff, and is followed by a short
/// jittered pause (0.25 to 0.5 s) so that a fleet losing its controller does not reach the next
/// one all in the same instant; a shorter one counts as a failed attempt.
struct Rotation<'c> {
    /// Never empty.
    controllers: &'c [ControllerAddr],
    /// Index into `controllers` of the one to try next.
    current: usize,
    /// Attempts in a row without a stable connection, within this round.
    n_failed: usize,
    backoff: Backoff,
}

impl<'c> Rotation<'c> {
    /// `None` when there is no controller to try.
    fn new(controllers: &'c [ControllerAddr]) -> Option<Rotation<'c>> {
        (!controllers.is_empty()).then(|| Rotation {
            controllers,
            current: 0,
            n_failed: 0,
            backoff: Backoff::new(),
        })
    }

    /// The controller to try next.
    fn current(&self) -> &'c ControllerAddr {
        &self.controllers[self.current % self.controllers.len()]
    }

    /// Moves to the next controller after `attempt`; returns how long to wait before trying it.
    fn advance(&mut self, attempt: Attempt) -> Duration {
        let stable = matches!(attempt, Attempt::Ended { lasted } if lasted >= STABLE);
        if stable {
            self.n_failed = 0;
            self.backoff = Backoff::new();
        } else {
            self.n_failed += 1;
        }
        self.current = (self.current + 1) % self.controllers.len();
        if self.n_failed >= self.controllers.len() {
            self.n_failed = 0;
            return self.backoff.next();
        }
        match attempt {
            Attempt::Failed => Duration::ZERO,
            Attempt::Ended { .. } => Backoff::new().next(),
        }
    }

    /// The current controller answered (enrollment): it is tried next, in a new round.
    fn succeeded(&mut self) {
        self.n_failed = 0;
        self.backoff = Backoff::new();
    }

    /// What the agent does next, after an attempt at `previous`, for its log line.
    fn then(&self, previous: &ControllerAddr, wait: Duration) -> String {
        let next = self.current();
        let verb = if next == previous {
            "retrying"
        } else {
            "failing over to"
        };
        if wait.is_zero() {
            format!("{verb} {next}")
        } else {
            format!("{verb} {next} in {:.1} s", wait.as_secs_f64())
        }
    }
}

/// Jittered exponential backoff: 0.5 s doubling to 30 s, each wait between half and all of it.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: Duration::from_millis(500),
        }
    }

    fn next(&mut self) -> Duration {
        let full = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(30));
        let jitter = jitter_fraction();
        full.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// A number in [0, 1) that differs between agents and attempts.
fn jitter_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = blake3::hash(&[nanos.to_le_bytes(), std::process::id().to_le_bytes()].concat());
    let bytes = mixed.as_bytes();
    f64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])) / f64::from(u32::MAX)
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    /// No TCP connection in time: worth retrying.
    #[error("connecting to {0} timed out")]
    Timeout(String),
    /// No TCP connection: worth retrying.
    #[error("connecting to {addr}: {source}")]
    Tcp {
        /// The controller's `HOST:PORT`.
        addr: String,
        /// What failed.
        source: std::io::Error,
    },
    /// No TLS handshake in time: worth retrying.
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    /// The TLS handshake broke off on the network: worth retrying.
    #[error("TLS: {0}")]
    Handshake(#[source] std::io::Error),
    /// The TLS handshake failed: the peer is not the controller we trust (or refused us).
    #[error("TLS: {0}")]
    Tls(#[source] std::io::Error),
}

async fn connect(
    controller: &ControllerAddr,
    tls: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
    let addr = controller.as_str();
    let tcp = tokio::time::timeout(HELLO_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(addr.to_string()))?
        .map_err(|source| ConnectError::Tcp {
            addr: addr.to_string(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(
        HELLO_TIMEOUT,
        TlsConnector::from(tls).connect(controller.server.clone(), tcp),
    )
    .await
    {
        Err(_) => Err(ConnectError::HandshakeTimeout),
        Ok(Err(err)) if err.kind() == std::io::ErrorKind::InvalidData => {
            Err(ConnectError::Tls(err))
        }
        Ok(Err(err)) => Err(ConnectError::Handshake(err)),
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// Trades the join token and a CSR for a certificate with the first controller that answers,
/// in `rotation`'s order. Network trouble moves on to the next one; a refusal is final.
async fn enroll(
    config: &Config,
    rotation: &mut Rotation<'_>,
    token: &JoinToken,
) -> Result<Identity, AgentError> {
    let key = pki::new_agent_key(&config.name)?;
    let tls = pki::enroll_client_config(&token.ca_fingerprint).map_err(AgentError::TokenPin)?;
    loop {
        let controller = rotation.current();
        match enroll_once(config, controller, token, &key, Arc::clone(&tls)).await {
            Ok(identity) => {
                rotation.succeeded();
                tracing::info!(controller = %controller, node = %identity.node, "enrolled with {controller} as {}", identity.node);
                return Ok(identity);
            }
            Err(err) if err.is_final() => return Err(AgentError::Refused(err.to_string())),
            Err(err) => {
                let wait = rotation.advance(Attempt::Failed);
                tracing::warn!(
                    controller = %controller,
                    next = %rotation.current(),
                    "enrolling with {controller}: {err}; {}",
                    rotation.then(controller, wait)
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The join token: from `--join-token-file` (warning when others may read the file), else
/// from `--token` or `STEWARD_JOIN_TOKEN`.
fn join_token(config: &Config) -> Result<JoinToken, AgentError> {
    let text = match (&config.token_file, &config.token) {
        (Some(path), _) => read_token_file(path)?,
        (None, Some(token)) => token.clone(),
        (None, None) => return Err(AgentError::NoToken(config.state_dir.clone())),
    };
    JoinToken::parse(&text).map_err(AgentError::BadToken)
}

fn read_token_file(path: &Path) -> Result<String, AgentError> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |source: std::io::Error| AgentError::TokenFile {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            "{} can be read by other users (mode {:o}); `chmod 600` it",
            path.display(),
            mode & 0o777
        );
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(AgentError::EmptyTokenFile(path.to_path_buf()));
    }
    Ok(text.to_string())
}

/// Why one attempt to enroll failed.
#[derive(Debug, thiserror::Error)]
enum EnrollError {
    /// The controller said no: final.
    #[error("{0}")]
    Refused(String),
    /// The TLS handshake failed: the peer is not the controller that made the token (final).
    #[error("{source} (the controller at {controller} is not the one the token was made by)")]
    NotTheTokensController {
        /// The controller's `HOST:PORT`.
        controller: String,
        /// The handshake's failure.
        source: ConnectError,
    },
    /// No connection: worth retrying.
    #[error(transparent)]
    Connect(ConnectError),
    /// The exchange broke off: worth retrying.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// The controller answered something else: worth retrying.
    #[error("unexpected reply to enrollment: {0}")]
    Unexpected(String),
    /// The controller hung up without an answer: worth retrying.
    #[error("the controller closed the connection")]
    Closed,
}

impl EnrollError {
    /// True when retrying cannot help.
    fn is_final(&self) -> bool {
        matches!(
            self,
            EnrollError::Refused(_) | EnrollError::NotTheTokensController { .. }
        )
    }
}

/// One attempt to enroll.
async fn enroll_once(
    config: &Config,
    controller: &ControllerAddr,
    token: &JoinToken,
    key: &pki::AgentKey,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Identity, EnrollError> {
    let mut stream = match connect(controller, tls).await {
        Ok(stream) => stream,
        Err(source @ ConnectError::Tls(_)) => {
            return Err(EnrollError::NotTheTokensController {
                controller: controller.to_string(),
                source,
            });
        }
        Err(err) => return Err(EnrollError::Connect(err)),
    };
    let hello = AgentMsg::Enroll {
        protocol: PROTOCOL,
        token: token.to_string(),
        node: config.name.clone(),
        tags: config.tags.clone(),
        csr_pem: key.csr_pem.clone(),
    };
    wire::write_msg(&mut stream, &hello).await?;
    match wire::read_msg::<ControllerMsg, _>(&mut stream, HELLO_TIMEOUT * 3).await? {
        Some(ControllerMsg::Enrolled { cert_pem, ca_pem }) => Ok(Identity {
            node: config.name.clone(),
            key_pem: key.key_pem.clone(),
            cert_pem,
            ca_pem,
        }),
        Some(ControllerMsg::Refused { reason }) => Err(EnrollError::Refused(reason)),
        Some(other) => Err(EnrollError::Unexpected(format!("{other:?}"))),
        None => Err(EnrollError::Closed),
    }
}

/// The sender of the live connection, if any: a task that finishes after a reconnect sends
/// its result down the new connection.
type Link = Arc<std::sync::Mutex<Option<mpsc::UnboundedSender<AgentMsg>>>>;

/// Cancel flags of the running command tasks, by task id.
type Cancels = Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<AtomicBool>>>>;

/// What outlives a connection.
struct Shared<'a> {
    outbox: &'a Arc<Outbox>,
    ledger: &'a Arc<std::sync::Mutex<Ledger>>,
    link: &'a Link,
    cancels: &'a Cancels,
}

fn send(link: &Link, msg: AgentMsg) {
    if let Ok(current) = link.lock()
        && let Some(tx) = current.as_ref()
    {
        let _ = tx.send(msg);
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    /// The controller said no: stop.
    #[error("{0}")]
    Refused(String),
    /// The stored identity cannot make a TLS configuration: stop.
    #[error("stored identity: {0}")]
    Identity(#[source] PkiError),
    /// No connection: reconnect.
    #[error(transparent)]
    Connect(ConnectError),
    /// The connection failed: reconnect.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// The controller answered the hello with something else: reconnect.
    #[error("unexpected {0}")]
    Unexpected(String),
    /// The controller hung up on the hello: reconnect.
    #[error("the controller closed the connection (revoked or unknown certificate?)")]
    Closed,
    /// The outbox cannot be read: reconnect (and try again).
    #[error("outbox: {0}")]
    Outbox(#[source] OutboxError),
}

impl SessionError {
    /// True when reconnecting cannot help.
    fn is_final(&self) -> bool {
        matches!(self, SessionError::Refused(_) | SessionError::Identity(_))
    }
}

/// The agent's facts: the machine under `--root`, and the address it reaches the controller
/// from (added when the machine's addresses leave it out, as they do loopback).
fn facts(root: &Path, local_addr: Option<std::net::SocketAddr>) -> WireFacts {
    let mut facts = WireFacts::from(&crate::facts::local(root));
    if let Some(addr) = local_addr.map(|addr| addr.ip().to_string())
        && !facts.addresses.contains(&addr)
    {
        facts.addresses.push(addr);
    }
    facts
}

/// A connection the controller has welcomed.
struct Connection {
    reader: tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>,
    writer: tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>,
    /// The controller asked for a renewal at welcome.
    renew: bool,
}

/// Connects to `controller` with the agent's certificate and says hello; `Ok` once welcomed.
async fn open(
    config: &Config,
    controller: &ControllerAddr,
    identity: &Identity,
) -> Result<Connection, SessionError> {
    let tls = pki::agent_client_config(&identity.ca_pem, &identity.cert_pem, &identity.key_pem)
        .map_err(SessionError::Identity)?;
    let stream = connect(controller, tls)
        .await
        .map_err(SessionError::Connect)?;
    let local_addr = stream.get_ref().0.local_addr().ok();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let hello = AgentMsg::Hello {
        protocol: PROTOCOL,
        version: env!("CARGO_PKG_VERSION").to_string(),
        facts: facts(&config.root, local_addr),
    };
    wire::write_msg(&mut writer, &hello).await?;
    match wire::read_msg::<ControllerMsg, _>(&mut reader, HELLO_TIMEOUT * 3).await? {
        Some(ControllerMsg::Welcome { renew, .. }) => Ok(Connection {
            reader,
            writer,
            renew,
        }),
        Some(ControllerMsg::Refused { reason }) => Err(SessionError::Refused(reason)),
        Some(other) => Err(SessionError::Unexpected(format!("{other:?}"))),
        None => Err(SessionError::Closed),
    }
}

/// One welcomed connection: outbox replay, then tasks until the connection ends.
async fn session(
    config: &Config,
    connection: Connection,
    identity: &mut Identity,
    shared: &Shared<'_>,
) -> Result<(), SessionError> {
    let Shared { outbox, link, .. } = *shared;
    let Connection {
        mut reader,
        mut writer,
        renew,
    } = connection;

    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<AgentMsg>();
    let writer_task = tokio::spawn(async move {
        let mut heartbeat = tokio::time::interval(wire::HEARTBEAT);
        loop {
            tokio::select! {
                msg = out_rx.recv() => match msg {
                    Some(msg) => {
                        if wire::write_msg(&mut writer, &msg).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                _ = heartbeat.tick() => {
                    if wire::write_msg(&mut writer, &AgentMsg::Heartbeat).await.is_err() {
                        break;
                    }
                }
            }
        }
    });

    if let Ok(mut current) = link.lock() {
        *current = Some(out_tx.clone());
    }
    let pending = outbox.pending().map_err(SessionError::Outbox)?;
    for (task_id, bytes) in pending {
        match serde_json::from_slice::<TaskResult>(&bytes) {
            Ok(result) => {
                let _ = out_tx.send(AgentMsg::Result { task_id, result });
            }
            Err(err) => {
                tracing::warn!(task = %task_id, "outbox entry {task_id} is unreadable, dropped: {err}");
                let _ = outbox.ack(&task_id);
            }
        }
    }
    // Renewal over the live connection: when the controller asks at welcome, or when the
    // certificate has less than a third of its life left (checked at each heartbeat).
    let mut renewal_key: Option<pki::AgentKey> = None;
    let ask_renewal = |identity: &Identity, renewal_key: &mut Option<pki::AgentKey>| {
        if renewal_key.is_some() {
            return;
        }
        match pki::new_agent_key(&identity.node) {
            Ok(key) => {
                let _ = out_tx.send(AgentMsg::Renew {
                    csr_pem: key.csr_pem.clone(),
                });
                *renewal_key = Some(key);
            }
            Err(err) => tracing::error!("cannot make a renewal key: {err}"),
        }
    };
    if renew || pki::due_for_renewal(&identity.cert_pem, std::time::SystemTime::now()) {
        ask_renewal(identity, &mut renewal_key);
    }

    let result = loop {
        let msg = match wire::read_msg::<ControllerMsg, _>(&mut reader, IDLE_TIMEOUT).await {
            Ok(Some(msg)) => msg,
            Ok(None) => break Ok(()),
            Err(err) => break Err(SessionError::from(err)),
        };
        match msg {
            ControllerMsg::Task(task) => start_task(config, task, shared),
            ControllerMsg::Cancel { task_id } => {
                if let Ok(cancels) = shared.cancels.lock()
                    && let Some(flag) = cancels.get(&task_id)
                {
                    tracing::info!(task = %task_id, "task {task_id}: cancelled");
                    flag.store(true, Ordering::Relaxed);
                }
            }
            ControllerMsg::Ack { task_id } => {
                if let Err(err) = outbox.ack(&task_id) {
                    tracing::error!(task = %task_id, "outbox: {err}");
                }
            }
            ControllerMsg::Renewed { cert_pem } => {
                if let Some(key) = renewal_key.take() {
                    let renewed = Identity {
                        cert_pem,
                        key_pem: key.key_pem,
                        ..identity.clone()
                    };
                    match write_identity(&config.state_dir, &renewed) {
                        Ok(()) => {
                            *identity = renewed;
                            tracing::info!(node = %identity.node, "certificate renewed");
                        }
                        Err(err) => {
                            tracing::error!("cannot store the renewed certificate: {err}")
                        }
                    }
                }
            }
            ControllerMsg::Refused { reason } => break Err(SessionError::Refused(reason)),
            ControllerMsg::Heartbeat => {
                if pki::due_for_renewal(&identity.cert_pem, std::time::SystemTime::now()) {
                    ask_renewal(identity, &mut renewal_key);
                }
            }
            other => tracing::warn!("ignoring unexpected {other:?}"),
        }
    };
    if let Ok(mut current) = link.lock() {
        *current = None;
    }
    drop(out_tx);
    writer_task.abort();
    result
}

/// Claims the task and runs it on a thread of its own; the result goes to the outbox, then
/// to the controller.
fn start_task(config: &Config, task: Task, shared: &Shared<'_>) {
    trace_task(&task);
    let Shared {
        outbox,
        ledger,
        link,
        cancels,
    } = *shared;
    let refuse = |reason: String| {
        send(
            link,
            AgentMsg::Result {
                task_id: task.id.clone(),
                result: TaskResult::Refused { reason },
            },
        );
    };
    let expires_at = match DateTime::parse_from_rfc3339(&task.expires_at) {
        Ok(at) => at.with_timezone(&Utc),
        Err(err) => return refuse(format!("expires_at `{}`: {err}", task.expires_at)),
    };
    let claim = match ledger.lock() {
        Ok(mut ledger) => ledger.claim(&task.id, expires_at, Utc::now()),
        Err(_) => return refuse("the task ledger is unusable".to_string()),
    };
    match claim {
        Ok(Claim::Run) => {}
        Ok(Claim::Duplicate) => return resend_duplicate(&task, shared, &refuse),
        Ok(Claim::Expired) => {
            tracing::warn!(
                task = %task.id,
                "task {} expired at {}: not running it",
                task.id,
                task.expires_at
            );
            return refuse(format!("task {} expired at {}", task.id, task.expires_at));
        }
        Err(err) => return refuse(format!("task ledger: {err}")),
    }
    let config = config.clone();
    let outbox = Arc::clone(outbox);
    let link = Arc::clone(link);
    let cancel = Arc::new(AtomicBool::new(false));
    if let Ok(mut cancels) = cancels.lock() {
        cancels.insert(task.id.clone(), Arc::clone(&cancel));
    }
    let cancels = Arc::clone(cancels);
    std::thread::spawn(move || {
        let events = Arc::clone(&link);
        let emit = move |msg: AgentMsg| send(&events, msg);
        let result = run_task(&config, &task, &emit, &cancel);
        match serde_json::to_vec(&result) {
            Ok(bytes) => {
                if let Err(err) = outbox.put(&task.id, &bytes) {
                    tracing::error!(task = %task.id, "outbox: {err}");
                }
            }
            Err(err) => {
                tracing::error!(task = %task.id, "cannot encode the result of {}: {err}", task.id)
            }
        }
        // Only once its result is kept: a copy of the task sent meanwhile finds it running,
        // or finds its result.
        if let Ok(mut cancels) = cancels.lock() {
            cancels.remove(&task.id);
        }
        send(
            &link,
            AgentMsg::Result {
                task_id: task.id,
                result,
            },
        );
    });
}

/// A task this agent claimed before, sent again (a controller took it over from one that went
/// away, or sent it twice): it is never run again. Its kept result, not yet acknowledged, is
/// sent again; while it still runs nothing is said (its result follows when it ends); only
/// one whose result was acknowledged already (or lost) is refused.
fn resend_duplicate(task: &Task, shared: &Shared<'_>, refuse: &dyn Fn(String)) {
    let running = shared
        .cancels
        .lock()
        .is_ok_and(|cancels| cancels.contains_key(&task.id));
    if running {
        tracing::info!(task = %task.id, "task {} was sent again while it runs: its result follows", task.id);
        return;
    }
    let kept = shared.outbox.get(&task.id).ok().flatten();
    match kept.map(|bytes| serde_json::from_slice::<TaskResult>(&bytes)) {
        Some(Ok(result)) => {
            tracing::info!(task = %task.id, "task {} was sent again: sending its kept result, not running it again", task.id);
            send(
                shared.link,
                AgentMsg::Result {
                    task_id: task.id.clone(),
                    result,
                },
            );
        }
        _ => {
            tracing::warn!(
                task = %task.id,
                "task {} was already run: not running it again",
                task.id
            );
            refuse(format!("task {} was already run", task.id));
        }
    }
}

/// Test hook: with `STEWARD_TEST_TRACE_TASKS=FILE` in the environment, each task received is
/// appended to FILE as one line of JSON, so tests see what a node was sent (the agent keeps
/// no catalog on disk). For tests only; not in the user documentation.
fn trace_task(task: &Task) {
    use std::io::Write;
    let Some(path) = std::env::var_os("STEWARD_TEST_TRACE_TASKS") else {
        return;
    };
    let Ok(mut line) = serde_json::to_vec(task) else {
        return;
    };
    line.push(b'\n');
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(&line));
    if let Err(err) = appended {
        tracing::warn!("STEWARD_TEST_TRACE_TASKS: {err}");
    }
}

/// Does the work of one task, as local mode would, under the agent's root. `emit` sends
/// progress (events, live output) to the controller; `cancel` stops a command.
pub fn run_task(
    config: &Config,
    task: &Task,
    emit: &(dyn Fn(AgentMsg) + Sync),
    cancel: &AtomicBool,
) -> TaskResult {
    let registry = std::sync::Arc::clone(&config.registry);
    let on_event = |outcome: WireOutcome| {
        emit(AgentMsg::Event {
            task_id: task.id.clone(),
            outcome,
        });
    };
    let (catalog, apply) = match &task.kind {
        TaskKind::Command(command) => return run_command(config, &task.id, command, emit, cancel),
        TaskKind::Probe { catalog } => (catalog, None),
        TaskKind::Apply {
            catalog,
            fingerprints,
            parallel,
        } => (catalog, Some((fingerprints, *parallel))),
    };
    let node = match catalog_node(catalog, &config.root) {
        Ok(node) => node,
        Err(err) => {
            return TaskResult::Refused {
                reason: err.to_string(),
            };
        }
    };
    let mut diagnostics = Vec::new();
    let graph = ResourceGraph::build(&node, &registry, &mut diagnostics);
    if let Some(diag) = diagnostics.iter().find(|d| d.is_error()) {
        return TaskResult::Refused {
            reason: format!("the catalog's graph: {}", diag.message),
        };
    }
    let _lock = match apply {
        Some(_) => match crate::state_dir::Lock::acquire(&config.state_dir) {
            Ok(lock) => Some(lock),
            Err(err) => {
                return TaskResult::Failed {
                    error: err.to_string(),
                };
            }
        },
        None => None,
    };
    // The node side of a task is local mode's: the same client reads and applies.
    let client = LocalClient::new(
        &registry,
        config.root.clone(),
        config.state_dir.clone(),
        task.id.clone(),
        catalog.secrets.clone(),
    );
    let observed = match block_on(client.observe(&node)) {
        Ok(observed) => observed,
        Err(err) => {
            return TaskResult::Failed {
                error: err.to_string(),
            };
        }
    };
    let states: Vec<WireObserved> = observed.iter().map(WireObserved::new).collect();
    let Some((fingerprints, parallel)) = apply else {
        return TaskResult::Observed { states };
    };
    let node_plan = plan::build(&graph, &registry, &observed);
    if let Some(expected) = fingerprints {
        let moved: Vec<String> = node_plan
            .changes
            .iter()
            .filter(|c| expected.get(c.resource) != Some(&c.fingerprint))
            .map(|c| node.resources[c.resource].id.to_string())
            .collect();
        if !moved.is_empty() {
            return TaskResult::Refused {
                reason: format!("actual state moved since the plan: {}", moved.join(", ")),
            };
        }
    }
    let started = Instant::now();
    let on_done = |outcome: &ResourceOutcome| on_event(WireOutcome::from(outcome));
    let task = ApplyTask {
        plan: Some(&node_plan),
        fingerprints: None,
        parallel: parallel.max(1),
        on_done: Some(&on_done),
    };
    match block_on(client.apply(&graph, task)) {
        Ok(applied) => TaskResult::Applied {
            states,
            outcomes: applied
                .report
                .outcomes
                .iter()
                .map(WireOutcome::from)
                .collect(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
        Err(err) => TaskResult::Failed {
            error: format!("apply: {err}"),
        },
    }
}

/// Runs a Run Command task: argv, the root as working directory, output capped and redacted.
fn run_command(
    config: &Config,
    task_id: &str,
    command: &CommandTask,
    emit: &(dyn Fn(AgentMsg) + Sync),
    cancel: &AtomicBool,
) -> TaskResult {
    let user = match &command.user {
        None => None,
        Some(name) => match nix::unistd::User::from_name(name) {
            Ok(Some(user)) => Some((user.uid.as_raw(), user.gid.as_raw())),
            Ok(None) => {
                return TaskResult::Failed {
                    error: format!("no user `{name}` on this node"),
                };
            }
            Err(err) => {
                return TaskResult::Failed {
                    error: format!("looking up user `{name}`: {err}"),
                };
            }
        },
    };
    let env: Vec<(String, String)> = command
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let live = LiveRedactor::new(&command.secrets);
    let send_output = |stream: Stream, data: String| {
        if !data.is_empty() {
            emit(AgentMsg::Output {
                task_id: task_id.to_string(),
                stream: stream.as_str().to_string(),
                data,
            });
        }
    };
    let on_output = |stream: Stream, bytes: &[u8]| send_output(stream, live.push(stream, bytes));
    let run = Run {
        argv: &command.argv,
        cwd: Some(&config.root),
        env: &env,
        user,
        timeout: Duration::from_secs(command.timeout_secs.max(1)),
        on_output: Some(&on_output),
        cancel: Some(cancel),
    };
    emit(AgentMsg::Started {
        task_id: task_id.to_string(),
    });
    let started = Instant::now();
    let result = run.output();
    for stream in [Stream::Stdout, Stream::Stderr] {
        send_output(stream, live.finish(stream));
    }
    match result {
        Ok(output) => {
            let mut output = WireOutput::from(&output);
            redact_stream(
                &mut output.stdout,
                &mut output.stdout_bytes,
                &command.secrets,
            );
            redact_stream(
                &mut output.stderr,
                &mut output.stderr_bytes,
                &command.secrets,
            );
            output.argv = output
                .argv
                .iter()
                .map(|a| crate::model::scrub(a, &command.secrets))
                .collect();
            TaskResult::Command {
                output,
                duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            }
        }
        Err(err) => TaskResult::Failed {
            error: crate::model::scrub(&err.to_string(), &command.secrets),
        },
    }
}

/// Replaces the secrets in a stream's kept text and counts its size as shown: each secret
/// as long as `(sensitive)`, so neither the size nor the kept text beside it tells how long a
/// secret is. The bytes not kept are counted as they were.
fn redact_stream(text: &mut String, total: &mut u64, secrets: &[String]) {
    let redacted = crate::model::scrub(text, secrets);
    if redacted != *text {
        *total = total.saturating_sub(text.len() as u64) + redacted.len() as u64;
        *text = redacted;
    }
}

/// Redacts secrets from output that arrives in chunks. The tail of each chunk that could be
/// the start of a secret is held back until the next chunk (or the end), so a secret split
/// across two chunks is still caught.
struct LiveRedactor<'s> {
    secrets: &'s [String],
    /// Bytes of text to hold back: the longest secret, less one.
    hold: usize,
    /// Per stream (stdout, stderr), redacted text not sent yet.
    pending: std::sync::Mutex<[String; 2]>,
}

impl<'s> LiveRedactor<'s> {
    fn new(secrets: &'s [String]) -> LiveRedactor<'s> {
        LiveRedactor {
            secrets,
            hold: secrets
                .iter()
                .map(String::len)
                .max()
                .unwrap_or(0)
                .saturating_sub(1),
            pending: std::sync::Mutex::new([String::new(), String::new()]),
        }
    }

    fn slot(stream: Stream) -> usize {
        match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    /// Takes a chunk; returns the redacted text that is safe to show now.
    fn push(&self, stream: Stream, bytes: &[u8]) -> String {
        let Ok(mut pending) = self.pending.lock() else {
            return String::new();
        };
        let text = &mut pending[Self::slot(stream)];
        text.push_str(&String::from_utf8_lossy(bytes));
        *text = crate::model::scrub(text, self.secrets);
        let mut cut = text.len().saturating_sub(self.hold);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let rest = text.split_off(cut);
        std::mem::replace(text, rest)
    }

    /// What is still held back, at the end of the output.
    fn finish(&self, stream: Stream) -> String {
        self.pending
            .lock()
            .map(|mut pending| std::mem::take(&mut pending[Self::slot(stream)]))
            .unwrap_or_default()
    }
}

fn catalog_node(catalog: &Catalog, root: &Path) -> Result<crate::model::Node, wire::WireError> {
    catalog.to_node(crate::facts::local(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages the agent stops with, and which failures end it.
    #[test]
    fn errors_keep_their_messages_and_say_what_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("token");
        std::fs::write(&empty, "\n").unwrap();
        let err = read_token_file(&empty).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("join token: {} is empty", empty.display())
        );
        let missing = dir.path().join("missing");
        let err = read_token_file(&missing).unwrap_err();
        assert!(matches!(err, AgentError::TokenFile { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("join token: {}: ", missing.display()))
        );

        let tls = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad certificate");
        let wrong = EnrollError::NotTheTokensController {
            controller: "c:7443".to_string(),
            source: ConnectError::Tls(tls()),
        };
        assert!(wrong.is_final());
        assert_eq!(
            wrong.to_string(),
            "TLS: bad certificate (the controller at c:7443 is not the one the token was made by)"
        );
        assert!(!EnrollError::Closed.is_final());
        assert!(!EnrollError::Connect(ConnectError::Timeout("c:7443".to_string())).is_final());
        assert!(SessionError::Refused("revoked".to_string()).is_final());
        let lost = SessionError::Connect(ConnectError::Handshake(tls()));
        assert!(!lost.is_final());
        assert_eq!(lost.to_string(), "TLS: bad certificate");
        assert_eq!(
            SessionError::Closed.to_string(),
            "the controller closed the connection (revoked or unknown certificate?)"
        );
    }

    /// `--connect`: the list, its order, and each bad item named with the flag.
    #[test]
    fn connect_lists_parse_in_order_and_name_the_flag_when_bad() {
        let controllers = parse_connect(&["a.example:7443, 127.0.0.1:1", "[::1]:7443"]).unwrap();
        let addrs: Vec<&str> = controllers.iter().map(ControllerAddr::as_str).collect();
        assert_eq!(addrs, ["a.example:7443", "127.0.0.1:1", "[::1]:7443"]);
        for (values, message) in [
            (
                &["a:1,,b:2"][..],
                "--connect `a:1,,b:2`: an empty address in the list; give HOST:PORT[,HOST:PORT...]",
            ),
            (
                &["a:1,"],
                "--connect `a:1,`: an empty address in the list; give HOST:PORT[,HOST:PORT...]",
            ),
            (
                &[""],
                "--connect ``: an empty address in the list; give HOST:PORT[,HOST:PORT...]",
            ),
            (
                &[],
                "--connect: no controller address; give HOST:PORT[,HOST:PORT...]",
            ),
        ] {
            let err = parse_connect(values).unwrap_err();
            assert_eq!(err.to_string(), message, "{values:?}");
        }
        for bad in [
            "no-port",
            ":7443",
            "a:",
            "a:0",
            "a:65536",
            "a:x",
            "::1:7443",
            "[::1:7443",
            "a b:1",
        ] {
            let err = parse_connect(&["ok:1", bad]).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "--connect: `{bad}` is not HOST:PORT (a host name or IP address, and a port 1 to 65535)"
                ),
            );
        }
    }

    /// The order controllers are tried in, and when the agent waits.
    #[test]
    fn the_rotation_fails_over_in_order_and_backs_off_after_a_round() {
        let controllers = parse_connect(&["a:1,b:2,c:3"]).unwrap();
        let mut rotation = Rotation::new(&controllers).unwrap();
        let mut tried = vec![rotation.current().to_string()];
        let mut waits = Vec::new();
        for _ in 0..6 {
            waits.push(rotation.advance(Attempt::Failed));
            tried.push(rotation.current().to_string());
        }
        assert_eq!(tried, ["a:1", "b:2", "c:3", "a:1", "b:2", "c:3", "a:1"]);
        // At once within a round; after each failed round, the doubling backoff (jittered
        // between half and all of 0.5 s, then of 1 s).
        assert_eq!(waits[..2], [Duration::ZERO; 2]);
        assert!((250..=500).contains(&waits[2].as_millis()), "{waits:?}");
        assert_eq!(waits[3..5], [Duration::ZERO; 2]);
        assert!((500..=1000).contains(&waits[5].as_millis()), "{waits:?}");

        // A connection lost after a while: the next controller after a short pause, and the
        // backoff starts again.
        let lost = rotation.advance(Attempt::Ended {
            lasted: Duration::from_secs(60),
        });
        assert_eq!(rotation.current().as_str(), "b:2");
        assert!((250..=500).contains(&lost.as_millis()), "{lost:?}");
        assert_eq!(
            rotation.then(&controllers[0], lost),
            format!("failing over to b:2 in {:.1} s", lost.as_secs_f64())
        );
        assert_eq!(rotation.advance(Attempt::Failed), Duration::ZERO);
        // A connection dropped at once counts as a failure (after the short pause): the
        // round b, c, a ends with the first backoff step, the next one with the second.
        let dropped = rotation.advance(Attempt::Ended {
            lasted: Duration::from_millis(10),
        });
        assert!((250..=500).contains(&dropped.as_millis()), "{dropped:?}");
        let round = rotation.advance(Attempt::Failed);
        assert!((250..=500).contains(&round.as_millis()), "{round:?}");
        assert_eq!(rotation.advance(Attempt::Failed), Duration::ZERO);
        assert_eq!(rotation.advance(Attempt::Failed), Duration::ZERO);
        let round = rotation.advance(Attempt::Failed);
        assert!((500..=1000).contains(&round.as_millis()), "{round:?}");

        // One controller: every failure is a round.
        let one = parse_connect(&["a:1"]).unwrap();
        let mut rotation = Rotation::new(&one).unwrap();
        assert!(rotation.advance(Attempt::Failed) > Duration::ZERO);
        assert_eq!(rotation.then(&one[0], Duration::ZERO), "retrying a:1");
        assert!(Rotation::new(&[]).is_none());

        // An enrollment that succeeds after a failure starts a new round at its controller.
        let mut rotation = Rotation::new(&controllers).unwrap();
        assert_eq!(rotation.advance(Attempt::Failed), Duration::ZERO);
        assert_eq!(rotation.advance(Attempt::Failed), Duration::ZERO);
        rotation.succeeded();
        assert_eq!(rotation.current().as_str(), "c:3");
        assert_eq!(rotation.advance(Attempt::Failed), Duration::ZERO);
        assert_eq!(rotation.advance(Attempt::Failed), Duration::ZERO);
    }

    #[test]
    fn a_secret_split_across_chunks_is_still_redacted() {
        let secrets = vec!["hunter2-secret".to_string()];
        let live = LiveRedactor::new(&secrets);
        let mut shown = String::new();
        for chunk in ["token=hun", "ter2-sec", "ret and more ", "é"] {
            shown.push_str(&live.push(Stream::Stdout, chunk.as_bytes()));
        }
        shown.push_str(&live.finish(Stream::Stdout));
        assert_eq!(shown, "token=(sensitive) and more é");
        let none = LiveRedactor::new(&[]);
        assert_eq!(none.push(Stream::Stderr, b"plain"), "plain");
    }

    #[test]
    fn a_redacted_streams_size_does_not_tell_the_secrets_length() {
        let sizes: Vec<(String, u64)> = ["short-1", "a-much-longer-secret-2"]
            .into_iter()
            .map(|secret| {
                let mut text = format!("token={secret}\n");
                // 1,000 more bytes were printed and not kept.
                let mut total = text.len() as u64 + 1_000;
                redact_stream(&mut text, &mut total, &[secret.to_string()]);
                (text, total)
            })
            .collect();
        assert_eq!(sizes[0], ("token=(sensitive)\n".to_string(), 1_018));
        assert_eq!(sizes[0], sizes[1]);
        let (mut text, mut total) = ("plain".to_string(), 5_000);
        redact_stream(&mut text, &mut total, &["absent".to_string()]);
        assert_eq!((text.as_str(), total), ("plain", 5_000));
    }
}
