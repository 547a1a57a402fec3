//! `steward serve`: the controller process. Binds the agent port (mutual TLS) and the HTTP
//! API, and runs the scheduler.
//!
//! The addresses it actually bound (useful with port 0) are written to
//! `DATA_DIR/endpoints.json` once both listeners are up.
//!
//! The HTTP API is served by hyper directly rather than `axum::serve`, for what that lacks:
//! a time limit on reading a request's headers (and the TLS handshake), caps on connections
//! in total and per source, and TLS with the controller's CA (`serve --http-tls`). Each
//! request carries its connection's peer address (`ConnectInfo<SocketAddr>`), which the audit
//! log records as where a request came from.
//!
//! Why the controller cannot start, and why a scheduler pass failed, is a [`ServeError`];
//! the CLI prints it. Nothing here decides exit codes.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::fleet::api::Scheme;
use crate::fleet::audit;
use crate::fleet::controller::{Controller, ControllerError, ThrottledLog};
use crate::fleet::footing::{self, Backend};
use crate::fleet::pki::PkiError;
use crate::fleet::run::{self, Mode, RunRequest, Scope};
use crate::fleet::schedule;
use crate::fleet::schedules;
use crate::model;

/// Where and how the controller listens.
#[derive(Clone, Debug)]
pub struct Config {
    /// CA, keys, store, uploaded projects.
    pub data_dir: PathBuf,
    /// The agent port, `HOST:PORT`.
    pub listen: String,
    /// The HTTP API, `HOST:PORT`.
    pub http: String,
    /// Whether the HTTP API is served over TLS (with a certificate from the controller's CA).
    pub http_scheme: Scheme,
    /// Extra names (DNS or IP) for the server certificate.
    pub names: Vec<String>,
    /// How long agent certificates live.
    pub cert_lifetime: Duration,
    /// The resource types runs are validated and planned with, built once by the caller.
    pub registry: Arc<crate::resource::Registry>,
    /// Where the store, CA and admin token live: the data directory, or a shared database.
    pub backend: crate::fleet::footing::Backend,
    /// A controller's data directory to copy into the (empty) shared database first.
    pub migrate_from: Option<PathBuf>,
}

/// Opens the store, CA and admin token; with `migrate_from`, copies that controller into the
/// shared database first.
fn open_footing(
    data_dir: &Path,
    backend: &Backend,
    migrate_from: Option<PathBuf>,
) -> Result<footing::Footing, footing::FootingError> {
    let (Backend::Shared { url, key_file }, Some(source)) = (backend, migrate_from) else {
        return footing::open(data_dir, backend);
    };
    // Not from a controller that is running: its store would move on under the copy.
    let not_a_controller = |reason: String| footing::FootingError::NotAController {
        dir: source.display().to_string(),
        reason,
    };
    if !source.is_dir() {
        return Err(not_a_controller("not a directory".into()));
    }
    let _source_lock =
        DataDirLock::take(&source).map_err(|err| not_a_controller(err.to_string()))?;
    let (mut footing, copied) = footing::migrate_from(&source, data_dir, url, key_file)?;
    if let Some((dir, name)) = run::current_project(&source) {
        let not_copied = |reason: String| footing::FootingError::NotAController {
            dir: source.display().to_string(),
            reason: format!("its current project {}: {reason}", dir.display()),
        };
        let files = run::bundle_of(&dir).map_err(|err| not_copied(err.to_string()))?;
        footing.store.put_project(&crate::store::CurrentProject {
            name,
            digest: dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            files_json: serde_json::to_string(&files).map_err(|err| not_copied(err.to_string()))?,
        })?;
    }
    let rows: Vec<String> = copied
        .tables
        .iter()
        .map(|(table, n)| format!("{table} {n}"))
        .collect();
    tracing::info!(
        "copied the controller in {} into the database (rows: {})",
        source.display(),
        rows.join(", ")
    );
    Ok(footing)
}

/// Why the controller could not start, or a pass of its scheduler failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The data directory, CA, store or TLS configuration.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The store, CA or admin token (of the data directory or the shared database).
    #[error(transparent)]
    Footing(#[from] footing::FootingError),
    /// The data directory's lock file cannot be opened or written.
    #[error("lock file {}: {source}", path.display())]
    LockFile {
        /// `DATA_DIR/serve.lock`.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// Another `steward serve` holds the data directory.
    #[error(
        "data dir {} is in use by steward serve (pid {pid}); stop that one first, or give this one another --data-dir",
        data_dir.display()
    )]
    InUse {
        /// The data directory.
        data_dir: PathBuf,
        /// The holder's pid as its lock file says, or `unknown`.
        pid: String,
    },
    /// Runs a previous controller left running could not be closed.
    #[error("recovering interrupted runs: {0}")]
    Recover(#[source] crate::store::StoreError),
    /// The scheduler's reading or writing of the store failed.
    #[error(transparent)]
    Store(crate::store::StoreError),
    /// The scheduler could not read the current project's schedules.
    #[error(transparent)]
    Schedules(#[from] schedules::SchedulesError),
    /// A listener could not be bound, or its address read.
    #[error("{flag} {addr}: {source}")]
    Bind {
        /// `--listen` or `--http`.
        flag: &'static str,
        /// The address asked for.
        addr: String,
        /// What failed.
        source: std::io::Error,
    },
    /// `DATA_DIR/endpoints.json` could not be written.
    #[error("endpoints.json: {0}")]
    Endpoints(#[source] PkiError),
    /// An association's schedule cannot be evaluated.
    #[error("association `{name}`: {source}")]
    Schedule {
        /// The association.
        name: String,
        /// What is wrong with its schedule.
        source: schedule::ScheduleError,
    },
}

fn bind_error(flag: &'static str, addr: &str) -> impl FnOnce(std::io::Error) -> ServeError {
    let addr = addr.to_string();
    move |source| ServeError::Bind { flag, addr, source }
}

/// Why a connection to the HTTP API is closed at once.
#[derive(Debug, thiserror::Error)]
enum Full {
    /// A thread panicked holding the count.
    #[error("the connection count is unusable after a crash")]
    Poisoned,
    /// [`MAX_CONNECTIONS`] are open.
    #[error("{MAX_CONNECTIONS} connections are open")]
    Total,
    /// [`MAX_CONNECTIONS_PER_SOURCE`] are open from the connection's source.
    #[error("{MAX_CONNECTIONS_PER_SOURCE} connections from that source are open")]
    Source,
}

/// The lock a running controller holds on its data directory (`DATA_DIR/serve.lock`), so a
/// second `steward serve` on the same directory stops instead of scheduling the same runs
/// twice. It is an advisory `flock`, released by the kernel when the process ends however it
/// ends, so a lock file left by a killed controller does not block the next one. Other
/// commands that open the store (`token create`) do not take it.
pub struct DataDirLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

impl DataDirLock {
    /// Takes the lock (creating the data directory when missing) and writes our pid and start
    /// time into it; fails, naming the holder's pid, when another process holds it.
    pub fn take(data_dir: &Path) -> Result<DataDirLock, ServeError> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        crate::fleet::controller::private_data_dir(data_dir)?;
        let path = data_dir.join("serve.lock");
        let setup = |source: std::io::Error| ServeError::LockFile {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(setup)?;
        let mut lock =
            match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let pid = holder
                        .lines()
                        .find_map(|line| line.strip_prefix("pid "))
                        .unwrap_or("unknown");
                    return Err(ServeError::InUse {
                        data_dir: data_dir.to_path_buf(),
                        pid: pid.to_string(),
                    });
                }
                Err((_, errno)) => return Err(setup(std::io::Error::from(errno))),
            };
        let holder = format!(
            "pid {}\nstarted {}\n",
            std::process::id(),
            crate::engine::record::timestamp()
        );
        lock.set_len(0).map_err(setup)?;
        lock.rewind().map_err(setup)?;
        lock.write_all(holder.as_bytes()).map_err(setup)?;
        Ok(DataDirLock { _file: lock })
    }
}

/// Runs the controller until the process ends.
pub async fn serve(config: Config) -> Result<(), ServeError> {
    // Before anything in the data directory is opened or written.
    let _lock = DataDirLock::take(&config.data_dir)?;
    crate::fleet::controller::private_data_dir(&config.data_dir)?;
    // The PostgreSQL client blocks on a runtime of its own: off the async workers.
    let (data_dir, backend, migrate_from, cert_lifetime, registry) = (
        config.data_dir.clone(),
        config.backend.clone(),
        config.migrate_from.clone(),
        config.cert_lifetime,
        config.registry.clone(),
    );
    let controller = tokio::task::spawn_blocking(move || -> Result<_, ServeError> {
        let footing = open_footing(&data_dir, &backend, migrate_from)?;
        Ok(Controller::open_with(
            &data_dir,
            footing,
            cert_lifetime,
            registry,
            Arc::new(crate::fleet::run::record_late),
        )?)
    })
    .await
    .map_err(ControllerError::StoreTask)??;
    // Before any agent connects: a run a previous controller left running is recorded as
    // interrupted, with the results that arrived, so their re-deliveries count as late.
    controller
        .store(crate::fleet::run::recover_interrupted)
        .await?
        .map_err(ServeError::Recover)?;
    let agents = TcpListener::bind(&config.listen)
        .await
        .map_err(bind_error("--listen", &config.listen))?;
    let http = TcpListener::bind(&config.http)
        .await
        .map_err(bind_error("--http", &config.http))?;
    let agent_addr = agents
        .local_addr()
        .map_err(bind_error("--listen", &config.listen))?;
    let http_addr = http
        .local_addr()
        .map_err(bind_error("--http", &config.http))?;
    let mut names = config.names.clone();
    names.push(agent_addr.ip().to_string());
    names.push(http_addr.ip().to_string());
    for addr in [&config.listen, &config.http] {
        if let Some((host, _)) = addr.rsplit_once(':') {
            names.push(host.trim_matches(['[', ']']).to_string());
        }
    }
    let tls = controller.tls(&names)?;
    let scheme = config.http_scheme;
    let http_tls = match scheme {
        Scheme::Http => None,
        Scheme::Https => Some(http_tls(&tls)),
    };
    let origin = format!("{}://{http_addr}", scheme.as_str());
    let endpoints = serde_json::json!({
        "agents": agent_addr.to_string(),
        "http": origin,
        "pid": std::process::id(),
    });
    crate::fleet::pki::write_private(
        &config.data_dir.join("endpoints.json"),
        endpoints.to_string().as_bytes(),
    )
    .map_err(ServeError::Endpoints)?;
    tracing::info!(
        "agents on {agent_addr}, API on {origin}, data in {}",
        config.data_dir.display()
    );
    tokio::spawn(Arc::clone(&controller).serve_agents(agents, tls));
    tokio::spawn(scheduler(Arc::clone(&controller)));
    tokio::spawn(run::recover_orphans(Arc::clone(&controller)));
    let router = crate::fleet::api::router(controller).layer(axum::Extension(scheme));
    serve_http(http, router, http_tls).await;
    Ok(())
}

/// How long a client may take over its request's headers (and, over TLS, the handshake)
/// before its connection is closed; also how long a kept-alive connection may sit idle.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP API connections open at once, in total.
const MAX_CONNECTIONS: usize = 512;

/// HTTP API connections open at once from one source (an IPv4 address or an IPv6 /64).
const MAX_CONNECTIONS_PER_SOURCE: usize = 64;

/// The agent port's TLS config (its certificate, signed by the controller's CA) for HTTP/1.1.
fn http_tls(agent_tls: &Arc<rustls::ServerConfig>) -> tokio_rustls::TlsAcceptor {
    let mut config = rustls::ServerConfig::clone(agent_tls);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Serves `router` on `listener` until the process ends, one task per connection.
///
/// A connection over the caps is closed as soon as it is accepted; a failed accept (out of
/// file descriptors, say) is logged and the loop goes on after a short pause. Both are logged
/// at most every 10 seconds, as on the agent port.
async fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let connections = Arc::new(Mutex::new(Connections::default()));
    let mut accept_errors = ThrottledLog::default();
    let mut over_limit = ThrottledLog::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                accept_errors.log(&format!("HTTP API: accept: {err}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match Connections::admit(&connections, peer.ip()) {
            Ok(permit) => permit,
            Err(full) => {
                drop(stream);
                over_limit.log(&format!(
                    "HTTP API: closed a connection from {peer}: {full}"
                ));
                continue;
            }
        };
        // The peer rides on each request of the connection, for the audit log.
        let router = router
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let Some(acceptor) = tls else {
                return serve_connection(TokioIo::new(stream), router).await;
            };
            // A handshake that fails or stalls ends only this connection.
            let handshake = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream));
            if let Ok(Ok(stream)) = handshake.await {
                serve_connection(TokioIo::new(stream), router).await;
            }
        });
    }
}

/// An error of one incoming connection, not of the listener.
fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

async fn serve_connection<I>(io: I, router: axum::Router)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // An error here is the client's (a timeout, a malformed request, a closed socket): the
    // connection ends and nothing else is affected.
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, TowerToHyperService::new(router))
        .await;
}

/// The open HTTP API connections, by source.
#[derive(Default)]
struct Connections {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
struct ConnectionPermit {
    connections: Arc<Mutex<Connections>>,
    source: IpAddr,
}

impl Connections {
    /// A permit for a connection from `peer`, or which cap is reached.
    fn admit(
        connections: &Arc<Mutex<Connections>>,
        peer: IpAddr,
    ) -> Result<ConnectionPermit, Full> {
        let source = source_of(peer);
        let mut open = connections.lock().map_err(|_| Full::Poisoned)?;
        let from_source = open.per_source.get(&source).copied().unwrap_or(0);
        if open.total >= MAX_CONNECTIONS {
            return Err(Full::Total);
        }
        if from_source >= MAX_CONNECTIONS_PER_SOURCE {
            return Err(Full::Source);
        }
        open.total += 1;
        open.per_source.insert(source, from_source + 1);
        Ok(ConnectionPermit {
            connections: Arc::clone(connections),
            source,
        })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let Ok(mut open) = self.connections.lock() else {
            return;
        };
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_source.remove(&self.source);
            }
        }
    }
}

/// The source a connection is counted against: an IPv4 address, or the /64 of an IPv6 one
/// (one host commonly holds a whole /64).
fn source_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// Where controllers before issue 16 kept the last run of each scheduled association.
fn legacy_schedules_path(data_dir: &Path) -> PathBuf {
    data_dir.join("schedules.json")
}

/// Runs each scheduled association of the current project when it is due, in its mode, and
/// records the run as a hand-started one would be.
///
/// The store holds the current project and each association's last firing, so every
/// controller of a shared database sees the same ones: a firing is claimed in the store before
/// it runs ([`crate::store::FleetStore::claim_firing`]), so it runs once, on whichever
/// controller claims it first, and missed fires coalesce into one run
/// ([`schedule::firing`]). A firing is claimed when this controller is free to run it; one
/// whose controller dies after the claim is not run again (at most once), and the run it began
/// is recorded as interrupted.
///
/// An association switched off ([`crate::store::FleetStore::set_schedule_enabled`]) is not
/// claimed nor run: each of its firings is skipped, and logged once, at info. Switched on
/// again, it fires at its next due time ([`schedule::due_firing`]). The switch is read again
/// right before a firing is claimed, so a switch made during another run is obeyed.
async fn scheduler(controller: Arc<Controller>) {
    let me = crate::fleet::token::random_hex(8).unwrap_or_else(|_| std::process::id().to_string());
    if let Err(err) = adopt_legacy_state(&controller).await {
        tracing::warn!("scheduler: reading the state of an older controller: {err}");
    }
    let mut skipped = BTreeMap::new();
    loop {
        let wait = match tick(&controller, &me, &mut skipped).await {
            Ok(wait) => wait,
            Err(err) => {
                tracing::error!("scheduler: {err}");
                Duration::from_secs(30)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = controller.schedules_changed_notified() => {}
        }
    }
}

/// Takes a data directory's current project and last runs, as controllers before issue 16 kept
/// them in files, into the store when the store has none.
async fn adopt_legacy_state(controller: &Arc<Controller>) -> Result<(), ServeError> {
    let data_dir = controller.data_dir.clone();
    let legacy_runs: BTreeMap<String, DateTime<Utc>> =
        std::fs::read(legacy_schedules_path(&data_dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
    let legacy_project = run::current_project(&data_dir)
        .and_then(|(dir, name)| Some((dir.clone(), name, run::bundle_of(&dir).ok()?)));
    controller
        .store(move |store| -> Result<(), crate::store::StoreError> {
            if store.current_project()?.is_none()
                && let Some((dir, name, files)) = legacy_project
            {
                store.put_project(&crate::store::CurrentProject {
                    name,
                    digest: dir
                        .file_name()
                        .map(|n| n.to_string_lossy().to_string())
                        .unwrap_or_default(),
                    files_json: serde_json::to_string(&files).unwrap_or_default(),
                })?;
            }
            if store.last_firings()?.is_empty() {
                for (name, at) in &legacy_runs {
                    store.claim_firing(
                        name,
                        &schedule::instant_text(*at),
                        "an older controller",
                    )?;
                }
            }
            Ok(())
        })
        .await?
        .map_err(ServeError::Recover)
}

/// What the store said when the scheduler went to claim a firing.
enum Claim {
    /// Claimed: this controller runs it.
    Claimed,
    /// Another controller claimed it first.
    Taken,
    /// The association's switch is no longer the one the firing was reckoned with.
    Switched,
}

/// One pass: runs what is due; returns how long to sleep. `skipped` remembers the firings of
/// switched-off associations logged already, so each is logged once.
async fn tick(
    controller: &Arc<Controller>,
    me: &str,
    skipped: &mut BTreeMap<String, DateTime<Utc>>,
) -> Result<Duration, ServeError> {
    const IDLE: Duration = Duration::from_secs(30);
    let Some(current) = schedules::current_schedules(controller).await? else {
        return Ok(IDLE);
    };
    let (last_firings, switches) = controller
        .store(|store| -> Result<_, crate::store::StoreError> {
            Ok((store.last_firings()?, store.schedule_switches()?))
        })
        .await?
        .map_err(ServeError::Store)?;
    let last = |name: &str| {
        last_firings
            .get(name)
            .and_then(|at| schedule::parse_instant(at))
    };
    let mut fired: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut again = false;
    for schedule::Scheduled {
        name,
        schedule,
        mode,
    } in &current.scheduled
    {
        let now = Utc::now();
        let switch = switches.get(name);
        let due_at = schedule::due_firing(schedule, last(name), switch, now).map_err(|source| {
            ServeError::Schedule {
                name: name.clone(),
                source,
            }
        })?;
        let Some(due_at) = due_at else {
            continue;
        };
        fired.insert(name.clone(), due_at);
        if switch.is_some_and(|s| !s.enabled) {
            if skipped.get(name) != Some(&due_at) {
                tracing::info!(association = %name, "scheduled association `{name}` is disabled: its firing due at {} is skipped", schedule::instant_text(due_at));
                skipped.insert(name.clone(), due_at);
            }
            continue;
        }
        // Claimed only once this controller is free to run it (one fleet run at a time), so a
        // controller that dies while another run holds it leaves the firing unclaimed, for
        // the next controller to start.
        drop(controller.run_lock.lock().await);
        let claim = {
            let (name, at, me) = (name.clone(), schedule::instant_text(due_at), me.to_string());
            let reckoned = switch.cloned();
            controller
                .store(move |store| -> Result<Claim, crate::store::StoreError> {
                    // Switched off or on since the pass began (during another run, say): the
                    // firing is reckoned again on the next pass, at once.
                    if store.schedule_switches()?.get(&name) != reckoned.as_ref() {
                        return Ok(Claim::Switched);
                    }
                    Ok(if store.claim_firing(&name, &at, &me)? {
                        Claim::Claimed
                    } else {
                        Claim::Taken
                    })
                })
                .await?
                .map_err(ServeError::Store)?
        };
        match claim {
            Claim::Claimed => {}
            Claim::Taken => {
                tracing::info!(association = %name, "scheduled association `{name}`: the firing due at {} was claimed by another controller", schedule::instant_text(due_at));
                continue;
            }
            Claim::Switched => {
                fired.remove(name);
                again = true;
                continue;
            }
        }
        // In the audit log before it runs: a firing the log cannot show is not run (it is
        // claimed, so the next firing is the next chance).
        let act = audit::Act {
            run_id: Some(run::new_run_id()),
            ..audit::Act::new(
                audit::Actor::scheduler(),
                controller.id(),
                audit::SCHEDULE_FIRE,
                name,
            )
        };
        let fired = format!(
            "due at {}, {}",
            schedule::instant_text(due_at),
            format!("{mode:?}").to_lowercase()
        );
        if let Err(reason) = controller.audit_start(&act, &fired).await {
            tracing::error!(association = %name, "scheduled association `{name}`: {reason}; the firing due at {} is not run", schedule::instant_text(due_at));
            continue;
        }
        tracing::info!(association = %name, "running scheduled association `{name}` ({mode:?}), due at {}", schedule::instant_text(due_at));
        let request = RunRequest {
            mode: match mode {
                model::Mode::Detect => Mode::Drift,
                model::Mode::Enforce => Mode::Apply,
            },
            files: current.files.clone(),
            project: current.project.clone(),
            overrides: BTreeMap::new(),
            target: None,
            resources: Vec::new(),
            excludes: Vec::new(),
            parallel: 4,
            color: false,
            json: false,
            user: schedule::run_user(name),
            adhoc: None,
            saved: None,
        };
        let (tx, _rx) = mpsc::unbounded_channel();
        let response = run::run(
            controller,
            request,
            Scope {
                association: Some(name.clone()),
                adhoc: None,
                limit: None,
                run_id: act.run_id.clone(),
            },
            tx,
        )
        .await;
        let ended = audit::Act {
            run_id: response.run_id.clone(),
            ..act
        };
        let (outcome, detail) = if response.failed {
            (audit::Outcome::Failed, run_failure(&response))
        } else {
            (
                audit::Outcome::Ok,
                format!("{} node(s)", response.nodes.len()),
            )
        };
        controller.audit_end(&ended, outcome, None, &detail).await;
        let run_id = response.run_id.as_deref().unwrap_or("-");
        if response.failed {
            tracing::warn!(association = %name, run = run_id, errors = ?response.errors, "scheduled association `{name}`: run {run_id} failed");
        } else {
            tracing::info!(association = %name, run = run_id, "scheduled association `{name}`: run {run_id} done");
        }
    }
    if again {
        return Ok(Duration::ZERO);
    }
    // Each counts from its firing of this pass, or from where its next one is counted (a
    // switched-off association from its skipped firing, so the scheduler wakes at its next
    // due time and reads its switch again; one switched on again from the fires it missed).
    let items: Vec<(&model::Schedule, Option<DateTime<Utc>>)> = current
        .scheduled
        .iter()
        .map(|item| {
            let from = fired.get(&item.name).copied().or_else(|| {
                let switch = switches.get(&item.name);
                schedule::resumes_from(&item.schedule, last(&item.name), switch)
                    .ok()
                    .flatten()
            });
            (&item.schedule, from)
        })
        .collect();
    Ok(schedule::sleep_until_next(&items, Utc::now(), IDLE))
}

/// Why a scheduled run failed, in a line: its first error, or the nodes that did not end `ok`.
fn run_failure(response: &run::RunResponse) -> String {
    if let Some(error) = response.errors.first() {
        return error.clone();
    }
    let failed: Vec<String> = response
        .nodes
        .iter()
        .filter(|node| node.status != "ok")
        .map(|node| format!("{} {}", node.node, node.status))
        .collect();
    format!("not ok: {}", failed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_per_source_and_freed_when_dropped() {
        let connections = Arc::new(Mutex::new(Connections::default()));
        let attacker: IpAddr = "192.0.2.7".parse().unwrap();
        let held: Vec<_> = (0..MAX_CONNECTIONS_PER_SOURCE)
            .map(|_| Connections::admit(&connections, attacker).unwrap())
            .collect();
        assert!(Connections::admit(&connections, attacker).is_err());
        // The same host by its IPv4-mapped address, and another address of one IPv6 /64.
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(Connections::admit(&connections, mapped).is_err());
        let admin: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(Connections::admit(&connections, admin).is_ok());
        drop(held);
        assert!(Connections::admit(&connections, attacker).is_ok());
        assert_eq!(
            source_of("2001:db8:1:2:aaaa::1".parse().unwrap()),
            source_of("2001:db8:1:2:bbbb::2".parse().unwrap())
        );
        assert_ne!(
            source_of("2001:db8:1:2::1".parse().unwrap()),
            source_of("2001:db8:1:3::1".parse().unwrap())
        );
    }

    #[test]
    fn connections_are_capped_in_total() {
        let connections = Arc::new(Mutex::new(Connections::default()));
        let held: Vec<_> = (0..MAX_CONNECTIONS)
            .map(|n| {
                let peer = IpAddr::from([10, 0, (n / 256) as u8, (n % 256) as u8]);
                Connections::admit(&connections, peer).unwrap()
            })
            .collect();
        assert!(Connections::admit(&connections, "10.9.9.9".parse().unwrap()).is_err());
        drop(held);
        let open = connections.lock().unwrap();
        assert_eq!((open.total, open.per_source.len()), (0, 0));
    }
}
