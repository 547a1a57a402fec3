//! `steward serve`: the controller process. Binds the agent port (mutual TLS) and the HTTP
//! API, and runs the scheduler.
//!
//! The addresses it actually bound (useful with port 0) are written to
//! `DATA_DIR/endpoints.json` once both listeners are up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::fleet::controller::{Controller, ControllerError, log};
use crate::fleet::run::{self, Mode, RunRequest, Scope};
use crate::fleet::schedule;
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
    /// Extra names (DNS or IP) for the server certificate.
    pub names: Vec<String>,
    /// How long agent certificates live.
    pub cert_lifetime: Duration,
}

fn bind_error(what: &str, addr: &str) -> impl FnOnce(std::io::Error) -> ControllerError {
    let message = format!("{what} {addr}");
    move |err| ControllerError::Setup(format!("{message}: {err}"))
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
    pub fn take(data_dir: &Path) -> Result<DataDirLock, ControllerError> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        crate::fleet::controller::private_data_dir(data_dir)?;
        let path = data_dir.join("serve.lock");
        let setup = |err: std::io::Error| {
            ControllerError::Setup(format!("lock file {}: {err}", path.display()))
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(setup)?;
        let mut lock = match nix::fcntl::Flock::lock(
            file,
            nix::fcntl::FlockArg::LockExclusiveNonblock,
        ) {
            Ok(lock) => lock,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let pid = holder
                    .lines()
                    .find_map(|line| line.strip_prefix("pid "))
                    .unwrap_or("unknown");
                return Err(ControllerError::Setup(format!(
                    "data dir {} is in use by steward serve (pid {pid}); stop that one first, or give this one another --data-dir",
                    data_dir.display()
                )));
            }
            Err((_, errno)) => return Err(setup(std::io::Error::from(errno))),
        };
        let holder = format!(
            "pid {}\nstarted {}\n",
            std::process::id(),
            crate::local::timestamp()
        );
        lock.set_len(0).map_err(setup)?;
        lock.rewind().map_err(setup)?;
        lock.write_all(holder.as_bytes()).map_err(setup)?;
        Ok(DataDirLock { _file: lock })
    }
}

/// Runs the controller until the process ends.
pub async fn serve(config: Config) -> Result<(), ControllerError> {
    // Before anything in the data directory is opened or written.
    let _lock = DataDirLock::take(&config.data_dir)?;
    let controller = Controller::open(&config.data_dir, config.cert_lifetime)?;
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
    if let Some((host, _)) = config.listen.rsplit_once(':') {
        names.push(host.trim_matches(['[', ']']).to_string());
    }
    let tls = controller.tls(&names)?;
    let endpoints = serde_json::json!({
        "agents": agent_addr.to_string(),
        "http": format!("http://{http_addr}"),
        "pid": std::process::id(),
    });
    crate::fleet::pki::write_private(
        &config.data_dir.join("endpoints.json"),
        endpoints.to_string().as_bytes(),
    )
    .map_err(|err| ControllerError::Setup(format!("endpoints.json: {err}")))?;
    log(&format!(
        "agents on {agent_addr}, API on http://{http_addr}, data in {}",
        config.data_dir.display()
    ));
    tokio::spawn(Arc::clone(&controller).serve_agents(agents, tls));
    tokio::spawn(scheduler(Arc::clone(&controller)));
    axum::serve(http, crate::fleet::api::router(controller))
        .await
        .map_err(|err| ControllerError::Setup(format!("HTTP API: {err}")))
}

fn schedules_path(data_dir: &Path) -> PathBuf {
    data_dir.join("schedules.json")
}

fn read_last_runs(data_dir: &Path) -> BTreeMap<String, DateTime<Utc>> {
    std::fs::read(schedules_path(data_dir))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Runs each scheduled association of the current project when it is due, in its mode, and
/// records the run as a hand-started one would be. Missed fires coalesce into one run.
async fn scheduler(controller: Arc<Controller>) {
    let data_dir = controller.data_dir.clone();
    let mut last_runs = read_last_runs(&data_dir);
    loop {
        let wait = match tick(&controller, &mut last_runs).await {
            Ok(wait) => wait,
            Err(err) => {
                log(&format!("scheduler: {err}"));
                Duration::from_secs(30)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = controller.schedules_changed_notified() => {}
        }
    }
}

/// One pass: runs what is due; returns how long to sleep.
async fn tick(
    controller: &Arc<Controller>,
    last_runs: &mut BTreeMap<String, DateTime<Utc>>,
) -> Result<Duration, String> {
    const IDLE: Duration = Duration::from_secs(30);
    let Some((dir, project)) = run::current_project(&controller.data_dir) else {
        return Ok(IDLE);
    };
    let scheduled = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let validated = crate::validate::validate(
                &dir,
                &crate::resource::Registry::builtin(),
                crate::facts::local(Path::new("/")),
                BTreeMap::new(),
            );
            validated
                .model
                .associations
                .iter()
                .filter_map(|a| Some((a.name.clone(), a.schedule.clone()?, a.mode)))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|err| err.to_string())?
    };
    let now = Utc::now();
    for (name, schedule, mode) in &scheduled {
        let due = schedule::due(schedule, last_runs.get(name).copied(), now)
            .map_err(|err| format!("association `{name}`: {err}"))?;
        if !due {
            continue;
        }
        log(&format!(
            "running scheduled association `{name}` ({mode:?})"
        ));
        let request = RunRequest {
            mode: match mode {
                model::Mode::Detect => Mode::Drift,
                model::Mode::Enforce => Mode::Apply,
            },
            files: run::bundle_of(&dir)?,
            project: project.clone(),
            overrides: BTreeMap::new(),
            target: None,
            parallel: 4,
            color: false,
            json: false,
            user: "scheduler".to_string(),
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
            },
            tx,
        )
        .await;
        log(&format!(
            "scheduled association `{name}`: run {} {}",
            response.run_id.as_deref().unwrap_or("-"),
            if response.failed { "failed" } else { "done" }
        ));
        last_runs.insert(name.clone(), Utc::now());
        let _ = crate::fleet::pki::write_private(
            &schedules_path(&controller.data_dir),
            serde_json::to_vec(&last_runs)
                .unwrap_or_default()
                .as_slice(),
        );
    }
    let items: Vec<(&model::Schedule, Option<DateTime<Utc>>)> = scheduled
        .iter()
        .map(|(name, schedule, _)| (schedule, last_runs.get(name).copied()))
        .collect();
    Ok(schedule::sleep_until_next(&items, Utc::now(), IDLE))
}
