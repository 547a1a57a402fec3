//! The controller's agent port: enrollment, the live sessions of connected agents, and task
//! dispatch down them.
//!
//! Each connection is its own tokio task, so a hostile or broken peer (random bytes, a bad
//! certificate, an oversized frame) costs only its own connection. An agent that presents a
//! certificate is known by the name the CA put in it, and only while the store says that
//! certificate is its current one and the node is not revoked; an agent without one may only
//! enroll, with a one-time token.
//!
//! With a store several controllers share, tasks are routed between them through it (the
//! `routing` submodule); with SQLite, a task goes only down a session of this controller.
//!
//! **Architecture Invariant:** a result is accepted only from the node its task was sent to,
//! and acknowledged only after it is handed to its waiter or recorded.

mod routing;

pub use routing::DEAD_AFTER;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_rustls::TlsAcceptor;

use crate::fleet::audit;
use crate::fleet::footing::{self, Footing};
use crate::fleet::pki::{self, Ca};
use crate::fleet::token::{self, JoinToken, check_tag, random_hex};
use crate::fleet::wire::{
    self, AgentMsg, ControllerMsg, HELLO_TIMEOUT, IDLE_TIMEOUT, MAX_UNAUTHENTICATED_FRAME,
    PROTOCOL, Task, TaskKind, TaskResult, WireFacts, WireOutcome,
};
use crate::store::{FleetStore, LedgerOp, StoreError, TaskLedger, TaskState};

/// Node names are checked by the enrollment policy; re-exported for the CLI, which checks a
/// name before it asks the controller.
pub use crate::fleet::token::check_node_name;

/// How long an agent certificate lives by default; agents renew over the live connection
/// when a third of it is left.
pub const CERT_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// An agent whose certificate expires sooner than this is asked to renew.
const RENEW_BEFORE: Duration = Duration::from_secs(10 * 24 * 3600);

/// How long an agent has to start a task before it expires.
const TASK_START_WINDOW: Duration = Duration::from_secs(120);

/// Records a result that arrived when no run waited for it any more (the controller restarted,
/// or the agent reconnected late), given the node, the task id and the result; `Err` when it
/// could not be stored, and then the result is not acknowledged.
///
/// The controller knows agents and tasks, not runs: whoever builds it (`serve`) installs the
/// fleet's recorder (`fleet::run::record_late`), so the dependency goes from runs to the
/// controller only. It is called with the store, on a blocking thread.
pub type LateResults = Arc<
    dyn Fn(&mut dyn FleetStore, &str, &str, &TaskResult) -> Result<(), StoreError> + Send + Sync,
>;

/// The controller's shared state.
pub struct Controller {
    /// Random per start: names this controller in the runs it coordinates and its heartbeat.
    id: String,
    /// Whether the store is shared, so tasks are routed through it.
    shared: bool,
    /// Routed tasks and liveness (a shared store only).
    routing: routing::Routing,
    /// Where its CA, keys, store and projects live.
    pub data_dir: PathBuf,
    ca: Ca,
    /// The store; `None` only once the controller is dropped ([`Controller`]'s `Drop`).
    store: Mutex<Option<Box<dyn FleetStore>>>,
    admin_token: String,
    sessions: Mutex<HashMap<String, Session>>,
    waiters: Mutex<HashMap<String, Waiter>>,
    /// The task ledger's writer thread, started on first use ([`Controller::ledger`]).
    ledger: std::sync::OnceLock<Result<LedgerTx, LedgerError>>,
    /// The ledger's connection, opened with the store and taken by its thread when it starts.
    ledger_conn: Mutex<Option<Box<dyn TaskLedger>>>,
    next_id: AtomicU64,
    /// One fleet run at a time.
    pub(crate) run_lock: tokio::sync::Mutex<()>,
    /// Wakes the scheduler when a new project is applied.
    schedules: Notify,
    /// Records a result that arrived after its run ended (installed by `serve`).
    late_results: LateResults,
    /// How long the agent certificates it signs live.
    cert_lifetime: Duration,
    /// The resource types runs are validated and planned with.
    pub registry: Arc<crate::resource::Registry>,
}

struct Session {
    conn: u64,
    /// Bounded ([`SESSION_QUEUE`]): send with `try_send`. A full queue means the agent stopped
    /// reading; what does not fit is dropped (a task then fails as if the node were offline)
    /// rather than held in memory.
    tx: mpsc::Sender<ControllerMsg>,
    stop: Arc<Notify>,
}

/// Messages queued for one agent's connection before it counts as not reading.
const SESSION_QUEUE: usize = 256;

/// Connections the agent port holds at once (a fleet of a few thousand nodes, with room);
/// more are closed as soon as they are accepted.
const MAX_CONNECTIONS: usize = 4096;

/// Connections from one address that are not yet authenticated (in the TLS handshake, or
/// enrolling, or before the store confirmed their certificate); more are closed at once.
const MAX_UNAUTHENTICATED_PER_SOURCE: usize = 32;

/// How often the accept loop logs the same trouble (running out of file descriptors,
/// connections over the limits), so a flood does not flood the log too.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts the unauthenticated connections per source address.
#[derive(Clone, Default)]
struct Unauthenticated {
    by_source: Arc<Mutex<HashMap<std::net::IpAddr, usize>>>,
}

/// One unauthenticated connection, counted until it is dropped.
struct UnauthenticatedSlot {
    counts: Unauthenticated,
    source: std::net::IpAddr,
}

impl Unauthenticated {
    /// A slot for a new connection from `source`, or `None` when it has too many already.
    fn enter(&self, source: std::net::IpAddr) -> Option<UnauthenticatedSlot> {
        let mut by_source = self.by_source.lock().ok()?;
        let n = by_source.entry(source).or_insert(0);
        if *n >= MAX_UNAUTHENTICATED_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(UnauthenticatedSlot {
            counts: self.clone(),
            source,
        })
    }
}

impl Drop for UnauthenticatedSlot {
    fn drop(&mut self) {
        if let Ok(mut by_source) = self.counts.by_source.lock()
            && let Some(n) = by_source.get_mut(&self.source)
        {
            *n -= 1;
            if *n == 0 {
                by_source.remove(&self.source);
            }
        }
    }
}

/// Logs a recurring accept-loop problem at most every [`ACCEPT_LOG_EVERY`], with how many
/// times it happened since.
#[derive(Default)]
pub(crate) struct ThrottledLog {
    last: Option<std::time::Instant>,
    n_since: u64,
}

impl ThrottledLog {
    /// Logs `message` unless a message of this log went out less than [`ACCEPT_LOG_EVERY`] ago.
    pub(crate) fn log(&mut self, message: &str) {
        self.n_since += 1;
        if self.last.is_some_and(|at| at.elapsed() < ACCEPT_LOG_EVERY) {
            return;
        }
        let n = std::mem::take(&mut self.n_since);
        self.last = Some(std::time::Instant::now());
        tracing::warn!("{message} ({n} times since the last such message)");
    }
}

struct Waiter {
    node: String,
    result: oneshot::Sender<Result<TaskResult, DispatchError>>,
    events: Option<mpsc::UnboundedSender<TaskEvent>>,
}

/// What an agent reports while a task runs.
#[derive(Clone, Debug)]
pub enum TaskEvent {
    /// A resource finished (apply).
    Outcome(WireOutcome),
    /// The command's process started.
    Started,
    /// Live command output.
    Output {
        /// `stdout` or `stderr`.
        stream: String,
        /// The text.
        data: String,
    },
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The data directory, CA or store.
    #[error("{0}")]
    Setup(String),
    /// A thread panicked while it held the store: it is not used any more.
    #[error("the store is unusable after a crash")]
    StorePoisoned,
    /// The blocking task that held the store failed ([`Controller::store`]).
    #[error("the store's task failed: {0}")]
    StoreTask(#[source] tokio::task::JoinError),
}

/// Why a task sent to a node brought no result ([`Controller::dispatch`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The node has no live connection.
    #[error("node `{0}` is offline")]
    Offline(String),
    /// The node's connection went away as the task was sent.
    #[error("node `{0}` went offline")]
    WentOffline(String),
    /// The node's connection was lost or cut while it worked on the task.
    #[error("node `{node}` became unreachable: {reason}")]
    Unreachable {
        /// The node.
        node: String,
        /// What happened to its connection.
        reason: String,
    },
    /// The task could not be written to the ledger, so it was not sent.
    #[error("node `{node}`: the task could not be stored: {source}")]
    NotStored {
        /// The node.
        node: String,
        /// Why.
        source: LedgerError,
    },
    /// Nobody answers for the task any more (the controller is stopping).
    #[error("node `{0}`: the task was dropped")]
    Dropped(String),
    /// No result within the wait.
    #[error("node `{node}` sent no result within {secs}s")]
    NoResult {
        /// The node.
        node: String,
        /// The wait, in seconds.
        secs: u64,
    },
    /// A thread panicked while it held the sessions.
    #[error("sessions poisoned")]
    SessionsPoisoned,
}

/// Why an agent's connection ended, or was refused, or a renewal failed: logged, never
/// returned to callers outside this module.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    /// The TLS handshake did not finish within [`HELLO_TIMEOUT`].
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    /// The TLS handshake failed.
    #[error("refused at TLS: {0}")]
    Tls(#[source] std::io::Error),
    /// The client did not offer ALPN `steward/1`.
    #[error(
        "refused: the client did not offer the `{}` protocol (ALPN)",
        String::from_utf8_lossy(pki::ALPN)
    )]
    NoAlpn,
    /// The client's certificate cannot be read.
    #[error("unreadable client certificate: {0}")]
    BadCertificate(#[source] pki::PkiError),
    /// The node is revoked, or the certificate is not its current one.
    #[error("refused `{0}`: revoked or superseded certificate")]
    Superseded(String),
    /// A peer without a certificate closed before enrolling.
    #[error("closed before enrolling")]
    ClosedBeforeEnrolling,
    /// The enrollment was refused (the log's reason, which the peer may not have been told).
    #[error("enrollment refused: {0}")]
    EnrollmentRefused(String),
    /// An agent speaks another protocol version.
    #[error("protocol {0} is not supported")]
    Protocol(u32),
    /// An agent's first message was not `hello`.
    #[error("`{0}` did not say hello first")]
    NoHello(String),
    /// An agent closed before `hello`.
    #[error("`{0}` closed before hello")]
    ClosedBeforeHello(String),
    /// An agent's `hello` could not be read.
    #[error("`{node}`: {source}")]
    Hello {
        /// The node its certificate names.
        node: String,
        /// Why.
        source: wire::WireError,
    },
    /// A certificate the CA just signed does not read back as PEM.
    #[error("certificate PEM: {0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    /// The CA refused a CSR, or a certificate does not parse.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// A frame could not be read or written.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// The store could not be reached.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a write to the task ledger failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// Its connection or thread could not be started.
    #[error("{0}")]
    Start(String),
    /// Its thread stopped.
    #[error("the task ledger stopped")]
    Stopped,
    /// The store refused the write.
    #[error("{0}")]
    Write(String),
}

pub use footing::admin_token_path;

/// Why an audit entry could not be appended through the controller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditAppendError {
    /// The store refused it (or stayed out of reach through the tries).
    #[error(transparent)]
    Refused(audit::AuditError),
    /// The controller's store could not be used at all (poisoned, or its task failed).
    #[error("the audit log cannot be written: {0}")]
    Unreachable(#[source] ControllerError),
}

impl AuditAppendError {
    /// Whether the store was out of reach for now (a shared database going away), so the same
    /// act may be asked again later.
    pub fn is_transient(&self) -> bool {
        matches!(self, AuditAppendError::Refused(err) if err.source.is_transient())
    }
}

/// The store inside a data directory.
pub fn store_path(data_dir: &Path) -> PathBuf {
    crate::store::sqlite::path_in(data_dir)
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> ControllerError + '_ {
    move |err| ControllerError::Setup(format!("{what}: {err}"))
}

/// Creates the data directory private (0700), or makes an existing one private: it holds the
/// CA's key and the admin token. One that other users may read is set to 0700 when it is
/// ours (and the log says so), and refused when it belongs to another user.
pub(crate) fn private_data_dir(data_dir: &Path) -> Result<(), ControllerError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    crate::state_dir::create_private_dir(data_dir).map_err(setup("data directory"))?;
    let shown = data_dir.display();
    let metadata = std::fs::metadata(data_dir).map_err(setup("data directory"))?;
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let uid = nix::unistd::geteuid().as_raw();
    if metadata.uid() != uid {
        return Err(ControllerError::Setup(format!(
            "data dir {shown} is open to other users (mode {mode:04o}) and belongs to uid {}, not to this user (uid {uid}); make it private (chmod 700) or use another --data-dir",
            metadata.uid()
        )));
    }
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(setup("data directory"))?;
    tracing::warn!("data dir {shown} was open to other users (mode {mode:04o}); set it to 0700");
    Ok(())
}

/// The PostgreSQL client blocks on a runtime of its own when it closes, which panics inside
/// another: a controller dropped on an async worker (a `serve` that failed to bind, say)
/// closes its store and ledger connections on a thread of their own.
impl Drop for Controller {
    fn drop(&mut self) {
        let store = self.store.get_mut().ok().and_then(Option::take);
        let ledger = self.ledger_conn.get_mut().ok().and_then(Option::take);
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("store-close".into())
                .spawn(move || drop((store, ledger)));
        }
    }
}

impl Controller {
    /// Opens (or on first start creates) the data directory's CA, store and admin token
    /// (the embedded store, checked whole first).
    pub fn open(
        data_dir: &Path,
        cert_lifetime: Duration,
        registry: Arc<crate::resource::Registry>,
        late_results: LateResults,
    ) -> Result<Arc<Controller>, ControllerError> {
        private_data_dir(data_dir)?;
        let footing = footing::open(data_dir, &footing::Backend::Embedded)
            .map_err(|err| ControllerError::Setup(err.to_string()))?;
        Controller::open_with(data_dir, footing, cert_lifetime, registry, late_results)
    }

    /// [`Controller::open`] with the store, CA and admin token opened by the caller
    /// ([`footing::open`]): from the data directory, or from a shared database. The task
    /// ledger's connection is opened here, from the store.
    pub fn open_with(
        data_dir: &Path,
        footing: Footing,
        cert_lifetime: Duration,
        registry: Arc<crate::resource::Registry>,
        late_results: LateResults,
    ) -> Result<Arc<Controller>, ControllerError> {
        private_data_dir(data_dir)?;
        let Footing {
            store,
            ca,
            admin_token,
        } = footing;
        let ledger_conn = store.open_ledger().map_err(setup("task ledger"))?;
        let shared = store.is_shared();
        let id = format!("ctl-{}", random_hex(8).map_err(setup("random"))?);
        Ok(Arc::new(Controller {
            id,
            shared,
            routing: routing::Routing::new(),
            data_dir: data_dir.to_path_buf(),
            ca,
            store: Mutex::new(Some(store)),
            admin_token,
            sessions: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            ledger: std::sync::OnceLock::new(),
            ledger_conn: Mutex::new(Some(ledger_conn)),
            next_id: AtomicU64::new(0),
            run_lock: tokio::sync::Mutex::new(()),
            schedules: Notify::new(),
            late_results,
            cert_lifetime,
            registry,
        }))
    }

    /// The TLS config of the agent port, with a server certificate for `names`.
    pub fn tls(&self, names: &[String]) -> Result<Arc<rustls::ServerConfig>, ControllerError> {
        self.ca
            .server_config(&self.data_dir, names)
            .map_err(setup("server certificate"))
    }

    /// The key that signs the console's session cookies and CSRF tokens: derived from the admin
    /// token, so every controller of a shared store has the same one and a new admin token
    /// ends every session.
    pub fn console_key(&self) -> [u8; 32] {
        blake3::derive_key("steward console session v1", self.admin_token.as_bytes())
    }

    /// True when `presented` is the admin token (compared in constant time).
    pub fn is_admin(&self, presented: &str) -> bool {
        let a = blake3::hash(presented.as_bytes());
        let b = blake3::hash(self.admin_token.as_bytes());
        a == b
    }

    /// Runs `f` with the store on a blocking thread ([`tokio::task::spawn_blocking`]), so an
    /// async worker never waits on the store's lock or disk: what async code uses.
    pub async fn store<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut dyn FleetStore) -> T + Send + 'static,
    ) -> Result<T, ControllerError> {
        let controller = Arc::clone(self);
        tokio::task::spawn_blocking(move || controller.with_store(f))
            .await
            .map_err(ControllerError::StoreTask)?
    }

    /// [`Controller::store`] for a write a short outage must not lose (a run begun or
    /// recorded): tried again while the database is out of reach, for at most
    /// [`LEDGER_RETRY_FOR`]. `f` is told when it is a second try, for an earlier try may have
    /// been committed though its answer was lost.
    pub async fn store_write<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl Fn(&mut dyn FleetStore, bool) -> Result<T, crate::store::StoreError>
        + Send
        + Sync
        + 'static,
    ) -> Result<Result<T, crate::store::StoreError>, ControllerError> {
        let f = Arc::new(f);
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        let mut again = false;
        loop {
            let f = Arc::clone(&f);
            match self.store(move |s| f(s, again)).await? {
                Err(err) if err.is_transient() && started.elapsed() + pause < LEDGER_RETRY_FOR => {
                    tracing::warn!(
                        "the database is out of reach ({err}); trying again in {} ms",
                        pause.as_millis()
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                    again = true;
                }
                done => return Ok(done),
            }
        }
    }

    /// Runs `f` with the store, on this thread: for code that is not async (or already on a
    /// blocking thread).
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&mut dyn FleetStore) -> T,
    ) -> Result<T, ControllerError> {
        let mut store = self
            .store
            .lock()
            .map_err(|_| ControllerError::StorePoisoned)?;
        // Taken only by `drop`, which no caller outlives.
        let store = store.as_mut().ok_or(ControllerError::StorePoisoned)?;
        Ok(f(store.as_mut()))
    }

    /// Appends `act`'s `started` entry with `detail` to the audit log
    /// ([`Controller::audit_append`]): `Err` saying why when it cannot, and then the act must
    /// not be done.
    pub async fn audit_start(
        self: &Arc<Self>,
        act: &audit::Act,
        detail: &str,
    ) -> Result<(), AuditAppendError> {
        self.audit_append(act, audit::Outcome::Started, None, detail)
            .await
    }

    /// Appends `act`'s `outcome` to the audit log ([`Controller::audit_append`]); logs an
    /// error, and goes on, when it cannot (the act is done, and the log holds its `started`
    /// entry).
    pub async fn audit_end(
        self: &Arc<Self>,
        act: &audit::Act,
        outcome: audit::Outcome,
        status: Option<u16>,
        detail: &str,
    ) {
        if let Err(failure) = self.audit_append(act, outcome, status, detail).await {
            tracing::error!(actor = %act.actor.id, source = %act.source, action = %act.action, outcome = outcome.as_str(), "{failure}; this outcome is not in the audit log");
        }
    }

    /// Appends an entry of `act` through [`Controller::store_write`]: tried again while the
    /// database is out of reach, as a ledger write is, so a short outage loses no entry. A
    /// second try first looks for the entry among its actor's newest (a first try whose answer
    /// was lost with the connection may have been committed), so it is not appended twice.
    async fn audit_append(
        self: &Arc<Self>,
        act: &audit::Act,
        outcome: audit::Outcome,
        status: Option<u16>,
        detail: &str,
    ) -> Result<(), AuditAppendError> {
        let entry = act.entry(outcome, status, detail);
        let append = move |store: &mut dyn FleetStore, again: bool| {
            if again {
                let newest = store.audit(&crate::store::AuditQuery {
                    limit: 50,
                    actor_id: Some(entry.actor_id.clone()),
                    ..crate::store::AuditQuery::default()
                })?;
                if newest.iter().any(|record| record.entry == entry) {
                    return Ok(());
                }
            }
            store.append_audit(&entry).map(|_| ())
        };
        match self.store_write(append).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(AuditAppendError::Refused(act.error(err))),
            Err(err) => Err(AuditAppendError::Unreachable(err)),
        }
    }

    /// Tells the scheduler the current project changed.
    pub fn schedules_changed(&self) {
        self.schedules.notify_one();
    }

    /// Resolves when [`Controller::schedules_changed`] was called.
    pub async fn schedules_changed_notified(&self) {
        self.schedules.notified().await;
    }

    /// Names of the nodes with a live connection.
    pub fn online(&self) -> HashSet<String> {
        self.sessions
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Cuts a node's live connection (after it was revoked).
    pub fn disconnect(&self, node: &str) {
        if let Ok(mut sessions) = self.sessions.lock()
            && let Some(session) = sessions.remove(node)
        {
            session.stop.notify_one();
        }
        self.fail_waiters(node, "the node was disconnected");
    }

    /// Asks a node to stop a running command task.
    pub fn cancel_task(&self, node: &str, task_id: &str) {
        if let Ok(sessions) = self.sessions.lock()
            && let Some(session) = sessions.get(node)
        {
            let _ = session.tx.try_send(ControllerMsg::Cancel {
                task_id: task_id.to_string(),
            });
        }
    }

    /// A fresh, unique task id.
    pub fn new_task_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let salt = random_hex(6).unwrap_or_default();
        format!(
            "{}-{n}-{salt}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%3f")
        )
    }

    /// Writes to the task ledger and waits until the write is committed. Writes from many
    /// sessions and runs share one transaction (one fsync) on a thread of their own, so
    /// storing every task and result before acting on it costs little and no async worker
    /// waits for the disk.
    async fn ledger(&self, op: LedgerOp) -> Result<bool, LedgerError> {
        let tx = self
            .ledger
            .get_or_init(|| {
                let conn = self
                    .ledger_conn
                    .lock()
                    .ok()
                    .and_then(|mut conn| conn.take());
                start_ledger(conn.ok_or_else(|| {
                    LedgerError::Start("the task ledger's connection was taken".to_string())
                })?)
            })
            .as_ref()
            .map_err(Clone::clone)?;
        let (done_tx, done_rx) = oneshot::channel();
        tx.send((op, done_tx)).map_err(|_| LedgerError::Stopped)?;
        done_rx
            .await
            .map_err(|_| LedgerError::Stopped)?
            .map_err(LedgerError::Write)
    }

    /// Sends a task of run `run_id` to a node and waits up to `wait` for its result;
    /// `events` receives what the agent reports as it works. `Err` names why no result came:
    /// the node is offline, went away, or took too long, or the task could not be stored.
    pub async fn dispatch(
        self: &Arc<Self>,
        run_id: &str,
        node: &str,
        kind: TaskKind,
        wait: Duration,
        events: Option<mpsc::UnboundedSender<TaskEvent>>,
    ) -> Result<TaskResult, DispatchError> {
        let id = self.new_task_id();
        self.dispatch_task(run_id, node, id, kind, wait, events)
            .await
    }

    /// [`Controller::dispatch`] with a task id from [`Controller::new_task_id`], so the
    /// caller can cancel it.
    ///
    /// The task is stored as issued to the node before it is sent (and forgotten when it
    /// could not be sent), so its result is accepted from this node only, once, even after a
    /// restart of the controller ([`Controller::result`]).
    pub async fn dispatch_task(
        self: &Arc<Self>,
        run_id: &str,
        node: &str,
        id: String,
        kind: TaskKind,
        wait: Duration,
        events: Option<mpsc::UnboundedSender<TaskEvent>>,
    ) -> Result<TaskResult, DispatchError> {
        let expires_at = chrono::Utc::now()
            + chrono::Duration::from_std(TASK_START_WINDOW).unwrap_or(chrono::Duration::zero());
        let task = Task {
            id: id.clone(),
            expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind,
        };
        if self.shared {
            return self.dispatch_routed(run_id, task, node, wait, events).await;
        }
        let (tx, rx) = oneshot::channel();
        let session_tx = {
            let sessions = self
                .sessions
                .lock()
                .map_err(|_| DispatchError::SessionsPoisoned)?;
            match sessions.get(node) {
                Some(session) => session.tx.clone(),
                None => return Err(DispatchError::Offline(node.to_string())),
            }
        };
        self.ledger(LedgerOp::Issue {
            id: id.clone(),
            node: node.to_string(),
            run_id: run_id.to_string(),
            issued_at: crate::engine::record::timestamp(),
        })
        .await
        .map_err(|source| DispatchError::NotStored {
            node: node.to_string(),
            source,
        })?;
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.insert(
                id.clone(),
                Waiter {
                    node: node.to_string(),
                    result: tx,
                    events,
                },
            );
        }
        if session_tx.try_send(ControllerMsg::Task(task)).is_err() {
            self.take_waiter(&id);
            let _ = self.ledger(LedgerOp::Withdraw { id: id.clone() }).await;
            return Err(DispatchError::WentOffline(node.to_string()));
        }
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(DispatchError::Dropped(node.to_string())),
            Err(_) => {
                self.take_waiter(&id);
                Err(DispatchError::NoResult {
                    node: node.to_string(),
                    secs: wait.as_secs(),
                })
            }
        }
    }

    fn take_waiter(&self, id: &str) -> Option<Waiter> {
        self.waiters.lock().ok()?.remove(id)
    }

    fn fail_waiters(&self, node: &str, reason: &str) {
        let failed: Vec<Waiter> = match self.waiters.lock() {
            Ok(mut waiters) => {
                let ids: Vec<String> = waiters
                    .iter()
                    .filter(|(_, w)| w.node == node)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.iter().filter_map(|id| waiters.remove(id)).collect()
            }
            Err(_) => Vec::new(),
        };
        for waiter in failed {
            let _ = waiter.result.send(Err(DispatchError::Unreachable {
                node: node.to_string(),
                reason: reason.to_string(),
            }));
        }
    }

    /// Accepts agents forever; each connection runs on its own task.
    ///
    /// At most [`MAX_CONNECTIONS`] at once, and [`MAX_UNAUTHENTICATED_PER_SOURCE`] from one
    /// address before they are authenticated; more are closed at once. An accept error (such
    /// as running out of file descriptors) is logged and the loop goes on after a pause, so
    /// the port works again as soon as descriptors are free.
    pub async fn serve_agents(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) {
        if let Err(err) = self.start_routing() {
            tracing::error!(
                "work routing could not start, so tasks for nodes of other controllers fail: {err}"
            );
        }
        let acceptor = TlsAcceptor::from(tls);
        let total = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let unauthenticated = Unauthenticated::default();
        let mut accept_errors = ThrottledLog::default();
        let mut over_limit = ThrottledLog::default();
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(conn) => conn,
                Err(err) => {
                    accept_errors.log(&format!("agent port: accept: {err}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // A controller that lost its database takes no agents: they go to another.
            if self.is_stalled() {
                continue;
            }
            let Ok(permit) = Arc::clone(&total).try_acquire_owned() else {
                over_limit.log(&format!(
                    "agent port: closed a connection from {addr}: {MAX_CONNECTIONS} connections are open"
                ));
                continue;
            };
            let Some(slot) = unauthenticated.enter(addr.ip()) else {
                over_limit.log(&format!(
                    "agent port: closed a connection from {addr}: {MAX_UNAUTHENTICATED_PER_SOURCE} from that address are not yet authenticated"
                ));
                continue;
            };
            let controller = Arc::clone(&self);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(reason) = controller.connection(tcp, addr, acceptor, slot).await {
                    tracing::warn!(peer = %addr, "{reason}");
                }
            });
        }
    }

    /// One connection: TLS (with ALPN `steward/1` required), then enrollment for a peer
    /// without a certificate or a session for one with a current certificate. `slot` counts
    /// it as unauthenticated until the store confirmed its certificate.
    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        addr: SocketAddr,
        acceptor: TlsAcceptor,
        slot: UnauthenticatedSlot,
    ) -> Result<(), SessionError> {
        let _ = tcp.set_nodelay(true);
        let mut stream = tokio::time::timeout(HELLO_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| SessionError::HandshakeTimeout)?
            .map_err(SessionError::Tls)?;
        // rustls refuses a client whose protocols do not include ours, but lets in one that
        // offers none.
        if stream.get_ref().1.alpn_protocol() != Some(pki::ALPN) {
            return Err(SessionError::NoAlpn);
        }
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .map(|cert| pki::peer_identity(cert.as_ref()));
        match peer {
            None => self.enrollment(&mut stream, addr).await,
            Some(Err(err)) => Err(SessionError::BadCertificate(err)),
            Some(Ok(identity)) => {
                let (who, fingerprint) = (identity.node.clone(), identity.fingerprint.clone());
                let known = self
                    .store(move |s| s.node_cert_ok(&who, &fingerprint))
                    .await??;
                if !known {
                    let _ = wire::write_msg(
                        &mut stream,
                        &ControllerMsg::Refused {
                            reason: format!(
                                "node `{}` is revoked or this certificate is not its current one",
                                identity.node
                            ),
                        },
                    )
                    .await;
                    return Err(SessionError::Superseded(identity.node));
                }
                drop(slot);
                self.agent_session(stream, addr, identity).await
            }
        }
    }

    /// An agent without a certificate: one `Enroll` message, then the connection ends.
    async fn enrollment(
        self: &Arc<Self>,
        stream: &mut tokio_rustls::server::TlsStream<TcpStream>,
        addr: SocketAddr,
    ) -> Result<(), SessionError> {
        let msg =
            wire::read_msg_within::<AgentMsg, _>(stream, HELLO_TIMEOUT, MAX_UNAUTHENTICATED_FRAME)
                .await?;
        let reply = match msg {
            Some(AgentMsg::Enroll {
                protocol,
                token,
                node,
                tags,
                csr_pem,
            }) => {
                self.enroll(protocol, &token, &node, &tags, &csr_pem, addr)
                    .await
            }
            Some(_) => Err(Refusal::plain(
                "only enrollment is allowed without a certificate",
            )),
            None => return Err(SessionError::ClosedBeforeEnrolling),
        };
        match reply {
            Ok((node, msg)) => {
                wire::write_msg(stream, &msg).await?;
                tracing::info!(node, "enrolled node `{node}`");
                Ok(())
            }
            Err(refusal) => {
                let _ = wire::write_msg(
                    stream,
                    &ControllerMsg::Refused {
                        reason: refusal.told,
                    },
                )
                .await;
                Err(SessionError::EnrollmentRefused(refusal.why))
            }
        }
    }

    /// Checks an enrollment and, when it may, signs the node's certificate and records it.
    /// The token is spent only when everything else passed (a bad CSR spends nothing).
    ///
    /// The audit log gets an entry for an enrolment, and for a refusal of a token whose
    /// secret matched (its holder is known); not for an unknown, wrong, spent or expired
    /// token, which anyone could send. The entry follows the enrolment's transaction, under the
    /// same hold of the store.
    async fn enroll(
        self: &Arc<Self>,
        protocol: u32,
        token: &str,
        node: &str,
        tags: &BTreeMap<String, String>,
        csr_pem: &str,
        addr: SocketAddr,
    ) -> Result<(String, ControllerMsg), Refusal> {
        if protocol != PROTOCOL {
            return Err(Refusal::plain(format!(
                "protocol {protocol} is not supported (this controller speaks {PROTOCOL})"
            )));
        }
        check_node_name(node).map_err(|err| Refusal::plain(err.to_string()))?;
        for (key, value) in tags {
            check_tag(key, value).map_err(|err| Refusal::plain(err.to_string()))?;
        }
        let token = JoinToken::parse(token).map_err(|err| Refusal::plain(err.to_string()))?;
        if token.ca_fingerprint != self.ca.fingerprint() {
            return Err(Refusal::plain("the token was made by another controller"));
        }
        let cert_pem = self
            .ca
            .sign_agent(node, csr_pem, self.cert_lifetime)
            .map_err(|err| Refusal::plain(err.to_string()))?;
        let (fingerprint, not_after) =
            cert_facts(&cert_pem).map_err(|err| Refusal::plain(err.to_string()))?;
        let (owner, claimed_tags) = (node.to_string(), tags.clone());
        let act = audit::Act::new(
            audit::Actor::join_token(&token.id),
            &addr.to_string(),
            audit::NODE_ENROL,
            node,
        );
        let redeemed = self
            .store(move |s| {
                let cert = crate::store::NewCert {
                    node: &owner,
                    fingerprint: &fingerprint,
                    not_after: &not_after,
                    claimed_tags: &claimed_tags,
                };
                let redeemed = token::redeem(s, &token, &cert);
                let noted = match &redeemed {
                    Ok(done) => Some((
                        audit::Outcome::Ok,
                        format!(
                            "enrolled with tags {}{}",
                            match token::tags_text(&done.tags) {
                                text if text.is_empty() => "(none)".to_string(),
                                text => text,
                            },
                            if done.replaced {
                                "; replaced the node of that name"
                            } else {
                                ""
                            }
                        ),
                    )),
                    Err(err @ token::TokenError::Refused(_)) => {
                        Some((audit::Outcome::Refused, err.to_string()))
                    }
                    Err(_) => None,
                };
                if let Some((outcome, detail)) = noted
                    && let Err(err) = act.append(s, outcome, None, &detail)
                {
                    tracing::error!(node = %owner, "{err}");
                }
                redeemed
            })
            .await
            .map_err(|err| Refusal::plain(err.to_string()))?
            .map_err(|err| match &err {
                // The peer is not told which: that would say whether the token id exists.
                token::TokenError::Invalid(why) => Refusal {
                    told: err.to_string(),
                    why: format!("node `{node}`: {why}"),
                },
                _ => Refusal::plain(format!("node `{node}`: {err}")),
            })?;
        if redeemed.replaced {
            tracing::warn!(
                node,
                "node `{node}` was replaced by a new enrollment; its old certificate is refused"
            );
            self.disconnect(node);
        }
        Ok((
            node.to_string(),
            ControllerMsg::Enrolled {
                cert_pem,
                ca_pem: self.ca.cert_pem().to_string(),
            },
        ))
    }

    async fn agent_session(
        self: Arc<Self>,
        stream: tokio_rustls::server::TlsStream<TcpStream>,
        addr: SocketAddr,
        identity: pki::PeerIdentity,
    ) -> Result<(), SessionError> {
        let node = identity.node.clone();
        let (mut reader, mut writer) = tokio::io::split(stream);
        let hello = wire::read_msg_within::<AgentMsg, _>(
            &mut reader,
            HELLO_TIMEOUT,
            MAX_UNAUTHENTICATED_FRAME,
        );
        let facts = match hello.await {
            Ok(Some(AgentMsg::Hello {
                protocol, facts, ..
            })) if protocol == PROTOCOL => facts,
            Ok(Some(AgentMsg::Hello { protocol, .. })) => {
                let refused = SessionError::Protocol(protocol);
                let _ = wire::write_msg(
                    &mut writer,
                    &ControllerMsg::Refused {
                        reason: refused.to_string(),
                    },
                )
                .await;
                return Err(refused);
            }
            Ok(Some(_)) => return Err(SessionError::NoHello(node)),
            Ok(None) => return Err(SessionError::ClosedBeforeHello(node)),
            Err(source) => return Err(SessionError::Hello { node, source }),
        };
        let facts = sanitize_facts(facts, addr);
        let seen = crate::engine::record::timestamp();
        let facts_json = serde_json::to_value(&facts).unwrap_or(serde_json::Value::Null);
        // A store that cannot take the node's facts (a full disk) does not keep the node
        // away: its results are refused until they can be stored, but it gets its tasks.
        let (who, seen_facts) = (node.clone(), facts_json.clone());
        match self
            .store(move |s| s.node_seen(&who, &seen_facts, &seen))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::error!(node, "its facts could not be stored: {err}"),
            Err(err) => tracing::error!(node, "its facts could not be stored: {err}"),
        }
        let renew = identity
            .not_after
            .duration_since(std::time::SystemTime::now())
            .map_or(true, |left| left < RENEW_BEFORE);
        wire::write_msg(
            &mut writer,
            &ControllerMsg::Welcome {
                node: node.clone(),
                renew,
            },
        )
        .await?;

        let (tx, mut rx) = mpsc::channel::<ControllerMsg>(SESSION_QUEUE);
        let stop = Arc::new(Notify::new());
        let conn = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut sessions) = self.sessions.lock()
            && let Some(old) = sessions.insert(
                node.clone(),
                Session {
                    conn,
                    tx: tx.clone(),
                    stop: Arc::clone(&stop),
                },
            )
        {
            old.stop.notify_one();
        }
        tracing::info!(node, peer = %addr, "`{node}` connected from {addr}");
        self.session_started();
        let writer_task = tokio::spawn(async move {
            let mut heartbeat = tokio::time::interval(wire::HEARTBEAT);
            loop {
                let msg = tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(msg) => msg,
                        None => break,
                    },
                    _ = heartbeat.tick() => ControllerMsg::Heartbeat,
                };
                if wire::write_msg(&mut writer, &msg).await.is_err() {
                    break;
                }
            }
        });

        let end = loop {
            let msg = tokio::select! {
                msg = wire::read_msg::<AgentMsg, _>(&mut reader, IDLE_TIMEOUT) => msg,
                () = stop.notified() => break "disconnected by the controller".to_string(),
            };
            let msg = match msg {
                Ok(Some(msg)) => msg,
                Ok(None) => break "closed".to_string(),
                Err(err) => break err.to_string(),
            };
            match msg {
                AgentMsg::Heartbeat => {}
                AgentMsg::Event { task_id, outcome } => {
                    self.event(&node, &task_id, TaskEvent::Outcome(outcome));
                }
                AgentMsg::Started { task_id } => self.event(&node, &task_id, TaskEvent::Started),
                AgentMsg::Output {
                    task_id,
                    stream,
                    data,
                } => self.event(&node, &task_id, TaskEvent::Output { stream, data }),
                AgentMsg::Result { task_id, result } => {
                    match self.result(&node, &task_id, result).await {
                        Taken::Ack => {
                            let _ = tx.try_send(ControllerMsg::Ack { task_id });
                        }
                        Taken::Refused => {}
                        // The agent delivers what it was not acknowledged for again when it
                        // connects (here or to another controller), not before.
                        Taken::NotStored => {
                            break format!(
                                "its result for task {task_id} could not be stored; it delivers it again when it reconnects"
                            );
                        }
                    }
                }
                AgentMsg::Renew { csr_pem } => match self.renew(&node, &csr_pem, addr).await {
                    Ok(cert_pem) => {
                        let _ = tx.try_send(ControllerMsg::Renewed { cert_pem });
                    }
                    Err(err) => tracing::warn!(node, "renewal refused: {err}"),
                },
                AgentMsg::Hello { .. } | AgentMsg::Enroll { .. } => {
                    break "sent a second hello".to_string();
                }
            }
        };
        writer_task.abort();
        let current = self
            .sessions
            .lock()
            .map(|mut sessions| {
                if sessions.get(&node).is_some_and(|s| s.conn == conn) {
                    sessions.remove(&node);
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        // Whether it ended by itself or was cut (a newer session, a revocation), the leases
        // of its tasks end: whichever session the node has next is sent them again.
        self.session_ended(&node).await;
        if current {
            self.fail_waiters(&node, &end);
            let at = crate::engine::record::timestamp();
            let (seen, facts_json) = (node.clone(), facts_json.clone());
            let _ = self
                .store(move |s| s.node_seen(&seen, &facts_json, &at))
                .await;
        }
        tracing::info!(node, "`{node}` disconnected: {end}");
        Ok(())
    }

    /// Passes an event to the run waiting for the task, if it is this node's.
    fn event(&self, node: &str, task_id: &str, event: TaskEvent) {
        if self.shared {
            if let Some(events) = self.routing.events_for(node, task_id) {
                let _ = events.send(event);
            }
            return;
        }
        if let Ok(waiters) = self.waiters.lock()
            && let Some(waiter) = waiters.get(task_id)
            && waiter.node == node
            && let Some(events) = &waiter.events
        {
            let _ = events.send(event);
        }
    }

    /// Signs a node's new certificate and records it, with an entry in the audit log (after
    /// the renewal's write, under the same hold of the store).
    async fn renew(
        self: &Arc<Self>,
        node: &str,
        csr_pem: &str,
        addr: SocketAddr,
    ) -> Result<String, SessionError> {
        let cert_pem = self.ca.sign_agent(node, csr_pem, self.cert_lifetime)?;
        let (fingerprint, not_after) = cert_facts(&cert_pem)?;
        let act = audit::Act::new(
            audit::Actor::node(node),
            &addr.to_string(),
            audit::NODE_RENEW,
            node,
        );
        let node = node.to_string();
        self.store(move |s| {
            s.renew_node_cert(&node, &fingerprint, &not_after)?;
            let detail = format!("a new certificate, valid until {not_after}");
            if let Err(err) = act.append(s, audit::Outcome::Ok, None, &detail) {
                tracing::error!(node, "{err}");
            }
            Ok::<(), crate::store::StoreError>(())
        })
        .await??;
        Ok(cert_pem)
    }

    /// Takes a node's result for a task: whether it may be acknowledged.
    ///
    /// Only a task issued to this node and still open is taken. Its result is stored
    /// (committed) before it is handed to the run waiting for it, or recorded as a late run
    /// when nobody waits any more; only then is it acknowledged, so the agent keeps it and
    /// delivers it again after a failure. A result stored before is acknowledged again and
    /// not recorded twice. Not acknowledged when it is not this node's to give
    /// ([`Taken::Refused`]) or could not be stored ([`Taken::NotStored`]).
    async fn result(self: &Arc<Self>, node: &str, task_id: &str, result: TaskResult) -> Taken {
        if self.shared {
            return self.result_routed(node, task_id, result).await;
        }
        let (owner, task) = (node.to_string(), task_id.to_string());
        let state = match self
            .store(move |s| s.task_state(&task, &owner))
            .await
            .map_err(|err| err.to_string())
            .and_then(|r| r.map_err(|err| err.to_string()))
        {
            Ok(state) => state,
            Err(err) => {
                tracing::error!(node, task = task_id, "result not taken: {err}");
                return Taken::NotStored;
            }
        };
        match state {
            TaskState::NotIssued => return refused(node, task_id),
            TaskState::Closed => return Taken::Ack,
            TaskState::Open { .. } => {}
        }
        let waiter = match self.waiters.lock() {
            Ok(mut waiters) => match waiters.get(task_id) {
                Some(w) if w.node == node => waiters.remove(task_id),
                _ => None,
            },
            Err(_) => None,
        };
        let late = match waiter {
            Some(_) => Ok(()),
            None => {
                let record_late = Arc::clone(&self.late_results);
                let (owner, task, answer) = (node.to_string(), task_id.to_string(), result.clone());
                self.store(move |s| record_late(s, &owner, &task, &answer))
                    .await
                    .map_err(|err| err.to_string())
                    .and_then(|r| r.map_err(|err| err.to_string()))
            }
        };
        if let Err(err) = late {
            tracing::error!(
                node,
                task = task_id,
                "the late result could not be recorded (not acknowledged): {err}"
            );
            return Taken::NotStored;
        }
        let stored = match serde_json::to_string(&result) {
            Ok(json) => self
                .ledger(LedgerOp::Close {
                    id: task_id.to_string(),
                    node: node.to_string(),
                    result: json,
                    at: crate::engine::record::timestamp(),
                })
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Some(waiter) = waiter {
            // The run waiting for it records it with the rest, or fails saying why.
            let _ = waiter.result.send(Ok(result));
        }
        match stored {
            Ok(_) => Taken::Ack,
            Err(err) => {
                tracing::error!(
                    node,
                    task = task_id,
                    "the result could not be stored, so it is not acknowledged: {err}"
                );
                Taken::NotStored
            }
        }
    }
}

/// What became of a result an agent delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Taken {
    /// Stored (now or before): acknowledged, so the agent forgets it.
    Ack,
    /// Not this node's to give: not acknowledged.
    Refused,
    /// The store failed: not acknowledged, and the session ends, so the agent delivers it
    /// again when it reconnects.
    NotStored,
}

/// A result for a task that was not issued to `node`.
fn refused(node: &str, task_id: &str) -> Taken {
    tracing::warn!(
        node,
        task = task_id,
        "`{node}` sent a result for task {task_id}, which was not issued to it: refused"
    );
    Taken::Refused
}

/// Why an enrollment was refused: what the agent is told, and what the log says.
struct Refusal {
    told: String,
    why: String,
}

impl Refusal {
    /// A refusal the agent may read in full.
    fn plain(reason: impl Into<String>) -> Refusal {
        let reason = reason.into();
        Refusal {
            told: reason.clone(),
            why: reason,
        }
    }
}

/// A write to the ledger and where its outcome goes.
type LedgerTx = std::sync::mpsc::Sender<(LedgerOp, LedgerDone)>;

/// Where the ledger thread tells a write's outcome (the store's refusal, as text).
type LedgerDone = oneshot::Sender<Result<bool, String>>;

/// Most ledger writes in one transaction.
const LEDGER_BATCH: usize = 1024;

/// Starts the ledger's writer thread on its own connection to the store: it takes every
/// write waiting, applies them in one transaction, and tells each its outcome after the
/// commit.
fn start_ledger(mut ledger: Box<dyn TaskLedger>) -> Result<LedgerTx, LedgerError> {
    let (tx, rx) = std::sync::mpsc::channel::<(LedgerOp, LedgerDone)>();
    std::thread::Builder::new()
        .name("steward-ledger".to_string())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < LEDGER_BATCH
                    && let Ok(more) = rx.try_recv()
                {
                    batch.push(more);
                }
                let ops: Vec<&LedgerOp> = batch.iter().map(|(op, _)| op).collect();
                match apply_retrying(ledger.as_mut(), &ops) {
                    Ok(outcomes) => {
                        for ((_, done), outcome) in batch.into_iter().zip(outcomes) {
                            let _ = done.send(outcome);
                        }
                    }
                    Err(err) => {
                        let err = err.to_string();
                        for (_, done) in batch {
                            let _ = done.send(Err(err.clone()));
                        }
                    }
                }
            }
        })
        .map_err(|err| LedgerError::Start(format!("starting the task ledger: {err}")))?;
    Ok(tx)
}

/// How long a ledger batch is tried again while the database is out of reach (a restart, a
/// lost connection): less than a stalled controller waits before it stops taking work.
const LEDGER_RETRY_FOR: Duration = Duration::from_secs(15);

/// Applies a batch, trying it again while the database is out of reach (for at most
/// [`LEDGER_RETRY_FOR`]); the ops queued meanwhile wait for the next batch. Trying again is
/// safe: a batch that was committed though its answer was lost takes its tasks and results
/// as already there.
fn apply_retrying(
    ledger: &mut dyn TaskLedger,
    ops: &[&LedgerOp],
) -> Result<Vec<Result<bool, String>>, crate::store::StoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match ledger.apply(ops) {
            Err(err) if err.is_transient() && started.elapsed() + pause < LEDGER_RETRY_FOR => {
                tracing::warn!(
                    "the task ledger's database is out of reach ({err}); trying its batch of {} again in {} ms",
                    ops.len(),
                    pause.as_millis()
                );
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            done => return done,
        }
    }
}

/// `sha256:` fingerprint and RFC 3339 expiry of a certificate the CA just signed.
fn cert_facts(cert_pem: &str) -> Result<(String, String), SessionError> {
    let der = pem_der(cert_pem)?;
    let identity = pki::peer_identity(&der)?;
    let not_after: chrono::DateTime<chrono::Utc> = identity.not_after.into();
    Ok((
        identity.fingerprint,
        not_after.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    ))
}

fn pem_der(pem: &str) -> Result<Vec<u8>, SessionError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|der| der.as_ref().to_vec())
        .map_err(SessionError::Pem)
}

/// Facts are data from the network: bound their sizes, and record the address the
/// connection really came from.
fn sanitize_facts(mut facts: WireFacts, addr: SocketAddr) -> WireFacts {
    let cut = |s: &mut String| {
        if s.len() > 256 {
            let mut end = 256;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
    };
    cut(&mut facts.hostname);
    cut(&mut facts.os_family);
    cut(&mut facts.os_release);
    cut(&mut facts.arch);
    cut(&mut facts.kernel);
    cut(&mut facts.virtualization);
    facts.addresses.truncate(16);
    facts.addresses.iter_mut().for_each(cut);
    facts.interfaces = std::mem::take(&mut facts.interfaces)
        .into_iter()
        .take(16)
        .map(|(mut name, mut addresses)| {
            cut(&mut name);
            addresses.truncate(16);
            addresses.iter_mut().for_each(cut);
            (name, addresses)
        })
        .collect();
    let peer = addr.ip().to_string();
    if !facts.addresses.contains(&peer) {
        facts.addresses.push(peer);
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_bounded() {
        let facts = WireFacts {
            hostname: "h".repeat(10_000),
            addresses: vec!["1.2.3.4".into(); 100],
            interfaces: (0..100)
                .map(|i| {
                    (
                        format!("{i:03}{}", "n".repeat(10_000)),
                        vec!["a".repeat(10_000); 100],
                    )
                })
                .collect(),
            kernel: "k".repeat(10_000),
            virtualization: "v".repeat(10_000),
            ..WireFacts::default()
        };
        let facts = sanitize_facts(facts, "127.0.0.1:9".parse().unwrap());
        assert_eq!(facts.hostname.len(), 256);
        assert_eq!(facts.kernel.len(), 256);
        assert_eq!(facts.interfaces.len(), 16);
        for (name, addresses) in &facts.interfaces {
            assert_eq!(name.len(), 256);
            assert_eq!(addresses.len(), 16);
            assert!(addresses.iter().all(|a| a.len() == 256));
        }
        assert_eq!(facts.virtualization.len(), 256);
        assert_eq!(facts.addresses.len(), 17);
        assert_eq!(facts.addresses.last().unwrap(), "127.0.0.1");
    }
}
