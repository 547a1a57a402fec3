//! The fleet commands: `serve`, `agent`, `token create`, `nodes`, `node revoke`, and `plan`,
//! `apply`, `drift`, `runs`, `report`, `findings` against a controller.
//!
//! The fleet modules return typed errors; [`FleetError`] gathers those a command meets, and
//! [`fail`] is the one place where they become the message printed after `error: ` and the
//! exit code. Nothing here parses an error's text to decide anything.
//!
//! With `--format json`, the listings and answers are asked of the API as JSON and printed in
//! the versioned objects of [`crate::cli::output`]; `runs` and `findings` draw their tables
//! here from the same JSON, to fit the terminal; an `apply` or `drift` prints the recorded
//! run as the controller renders it for `report --format json`.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use crate::cli::output::{APPLY_JSON_NEEDS_YES, json_answer, table_width};
use crate::cli::{
    AgentArgs, Context, Exit, FindingsAction, FindingsArgs, NodesArgs, OutputFormat, ProjectArgs,
    RemoteArgs, RunArgs, SchedulesArgs, ServeArgs, overrides, print_stdout, report_human,
    usage_error,
};
use crate::fleet::agent::AgentError;
use crate::fleet::audit::Outcome;
use crate::fleet::client::{self, BundleError, Client, ClientError};
use crate::fleet::logging::LoggingError;
use crate::fleet::run::{Event, Mode, RunRequest, RunResponse};
use crate::fleet::serve::ServeError;
use crate::report::table::{Column, Table};

/// Why a fleet command failed: the errors of the fleet modules, and of the arguments this
/// module parses itself.
#[derive(Debug, thiserror::Error)]
enum FleetError {
    /// Logging could not start (`STEWARD_LOG`).
    #[error(transparent)]
    Logging(#[from] LoggingError),
    /// The controller could not start.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The agent stopped.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A call to the controller's API, or its preparation.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The project could not be bundled for upload.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A duration argument (`--ttl`, `--timeout`, ...) that does not parse.
    #[error("{flag} {source}")]
    Duration {
        /// The flag, such as `--ttl`.
        flag: &'static str,
        /// What is wrong with its value.
        source: DurationError,
    },
    /// A `--tags` part that is not `KEY=VALUE`.
    #[error("--tags: `{0}` must be KEY=VALUE")]
    Tag(String),
    /// The data directory cannot be made private (`token create`).
    #[error(transparent)]
    DataDir(#[from] crate::fleet::controller::ControllerError),
    /// The controller's store, CA or admin token cannot be opened or made (`token create`).
    #[error("{}: {source}", data_dir.display())]
    Footing {
        /// The data directory.
        data_dir: std::path::PathBuf,
        /// What failed.
        source: crate::fleet::footing::FootingError,
    },
    /// The controller's store cannot be opened (`token create`).
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A join token cannot be made, or a node name is not one.
    #[error(transparent)]
    Token(#[from] crate::fleet::token::TokenError),
    /// An API token cannot be made, listed or revoked.
    #[error(transparent)]
    ApiToken(#[from] crate::fleet::api_token::ApiTokenError),
    /// A flag of `token create --api` that is missing or not valid.
    #[error("{flag}: {reason}")]
    ApiTokenFlag {
        /// The flag, such as `--role`.
        flag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The agent's `--name` is not a node name.
    #[error("--name: {0}")]
    Name(#[source] crate::fleet::token::TokenError),
    /// The file given to `apply` could not be read as a saved plan.
    #[error("{0}")]
    ReadPlan(#[source] crate::local::LocalError),
    /// A saved plan made in local mode, given to a fleet `apply`.
    #[error(
        "{} was planned in local mode (root {root}); apply it without STEWARD_CONTROLLER",
        path.display()
    )]
    LocalPlan {
        /// The saved plan.
        path: std::path::PathBuf,
        /// The root it was planned for.
        root: String,
    },
    /// An answer of the controller's API that is not the shape this steward reads.
    #[error("the controller's answer to {path} cannot be read: {reason}")]
    Answer {
        /// The API path asked.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `plan -o FILE` could not write the plan.
    #[error("-o {}: {source}", path.display())]
    WritePlan {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        source: crate::fleet::pki::PkiError,
    },
    /// The audit log cannot be written, so `token create` or `token revoke` did nothing.
    #[error("{0}; nothing was done")]
    Audit(#[from] crate::fleet::audit::AuditError),
}

impl FleetError {
    /// The exit code of a command that failed this way.
    ///
    /// Every failure exits 1 today, whatever the controller answered; a call refused with an
    /// HTTP status keeps it ([`ClientError::status`]), so a finer code can be chosen here.
    fn exit(&self) -> Exit {
        match self {
            FleetError::Logging(_)
            | FleetError::Serve(_)
            | FleetError::Agent(_)
            | FleetError::Client(_)
            | FleetError::Bundle(_)
            | FleetError::Duration { .. }
            | FleetError::Tag(_)
            | FleetError::DataDir(_)
            | FleetError::Footing { .. }
            | FleetError::Store(_)
            | FleetError::Token(_)
            | FleetError::ApiToken(_)
            | FleetError::ApiTokenFlag { .. }
            | FleetError::Name(_)
            | FleetError::ReadPlan(_)
            | FleetError::LocalPlan { .. }
            | FleetError::Answer { .. }
            | FleetError::WritePlan { .. }
            | FleetError::Audit(_) => Exit::Error,
        }
    }
}

/// Prints `err` as `error: MESSAGE` and gives its exit code: the one place a fleet error
/// reaches the user.
fn fail(err: impl Into<FleetError>) -> std::io::Result<Exit> {
    let err = err.into();
    eprintln!("error: {err}");
    Ok(err.exit())
}

/// Why a duration argument does not parse; shown after its flag's name.
#[derive(Debug, thiserror::Error)]
enum DurationError {
    /// Not the duration grammar ([`crate::model::grammar::duration`]).
    #[error(transparent)]
    Grammar(#[from] crate::model::grammar::DurationError),
    /// Zero, or more than a year.
    #[error("`{0}` must be between 1s and 365d")]
    Range(String),
}

impl DurationError {
    /// The error as the value of `flag`.
    fn of(self, flag: &'static str) -> FleetError {
        FleetError::Duration { flag, source: self }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

pub(super) fn serve(ctx: &Context, args: &ServeArgs) -> std::io::Result<Exit> {
    if let Err(err) = crate::fleet::logging::init("serve", args.log_format) {
        return fail(err);
    }
    let cert_lifetime = match parse_ttl(&args.agent_cert_lifetime) {
        Ok(lifetime) => lifetime,
        Err(err) => return fail(err.of("--agent-cert-lifetime")),
    };
    let config = crate::fleet::serve::Config {
        data_dir: args.data_dir.clone(),
        listen: args.listen.clone(),
        http: args.http.clone(),
        http_scheme: if args.http_tls {
            crate::fleet::api::Scheme::Https
        } else {
            crate::fleet::api::Scheme::Http
        },
        names: args.names.clone(),
        cert_lifetime,
        registry: ctx.registry.clone(),
        backend: args.shared.backend(),
        migrate_from: args.migrate_from.clone(),
    };
    match runtime()?.block_on(crate::fleet::serve::serve(config)) {
        Ok(()) => Ok(Exit::Ok),
        Err(err) => fail(err),
    }
}

pub(super) fn agent(ctx: &Context, args: &AgentArgs) -> std::io::Result<Exit> {
    if let Err(err) = crate::fleet::logging::init("agent", args.log_format) {
        return fail(err);
    }
    if !ctx.root.is_dir() {
        return usage_error(&format!(
            "--root `{}` is not a directory",
            ctx.root.display()
        ));
    }
    if let Err(err) = crate::fleet::controller::check_node_name(&args.name) {
        return fail(FleetError::Name(err));
    }
    let tags = match parse_tags(args.tags.as_deref().unwrap_or("")) {
        Ok(tags) => tags,
        Err(err) => return fail(err),
    };
    if args.join_token_file.is_some() && args.token.is_some() {
        return usage_error(
            "give the join token once: --join-token-file, or --token (or STEWARD_JOIN_TOKEN)",
        );
    }
    let controllers = match crate::fleet::agent::parse_connect(&args.connect) {
        Ok(controllers) => controllers,
        Err(err) => return fail(err),
    };
    let config = crate::fleet::agent::Config {
        controllers,
        token: args.token.clone(),
        token_file: args.join_token_file.clone(),
        name: args.name.clone(),
        tags,
        root: ctx.root.clone(),
        state_dir: args.data_dir.clone(),
        registry: ctx.registry.clone(),
    };
    match runtime()?.block_on(crate::fleet::agent::run(config)) {
        Ok(()) => Ok(Exit::Ok),
        Err(err) => fail(err),
    }
}

/// `k=v,k2=v2`.
fn parse_tags(text: &str) -> Result<std::collections::BTreeMap<String, String>, FleetError> {
    let mut tags = std::collections::BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(FleetError::Tag(part.to_string()));
        };
        tags.insert(key.trim().to_string(), value.trim().to_string());
    }
    Ok(tags)
}

/// `steward run`: a command, a script or a document on the targets.
pub(super) fn run_command(ctx: &Context, args: &RunArgs) -> std::io::Result<Exit> {
    if args.target.is_empty() {
        return usage_error("steward run needs --target (a node name, KEY=VALUE, or all)");
    }
    // Every --target as one comma list: the controller reads the same grammar.
    let target = args.target.join(",");
    // The controller reads the rates again; checked here too, so a typo costs no connection.
    for (flag, text, min) in [
        (
            "--max-concurrency",
            &args.max_concurrency,
            crate::model::grammar::MAX_CONCURRENCY_MIN,
        ),
        (
            "--max-errors",
            &args.max_errors,
            crate::model::grammar::MAX_ERRORS_MIN,
        ),
    ] {
        if let Err(err) = crate::model::grammar::rate(text, min) {
            return usage_error(&format!("{flag} {err}"));
        }
    }
    if let Some(document) = &args.document {
        if !args.command.is_empty() {
            return usage_error("give either --document or a command after `--`, not both");
        }
        let project = ProjectArgs {
            path: document.clone(),
            params: args.params.clone(),
            params_files: Vec::new(),
        };
        let adhoc = crate::fleet::run::AdhocRequest {
            target,
            max_concurrency: args.max_concurrency.clone(),
            max_errors: args.max_errors.clone(),
        };
        return remote_run(
            ctx,
            &RemoteRun {
                mode: Mode::Apply,
                project: &project,
                remote: &args.remote,
                local: None,
                parallel: 4,
                detailed_exitcode: false,
                format: args.format,
                yes: true,
                out: None,
                adhoc: Some(&adhoc),
            },
        );
    }
    let argv = match (&args.shell, args.command.is_empty()) {
        (Some(script), true) => vec!["/bin/sh".to_string(), "-c".to_string(), script.clone()],
        (Some(_), false) => {
            return usage_error("give either --shell SCRIPT or a command after `--`, not both");
        }
        (None, true) => {
            return usage_error("no command: give it after `--`, or use --shell or --document");
        }
        (None, false) => args.command.clone(),
    };
    let timeout = match parse_ttl(&args.timeout) {
        Ok(timeout) => timeout,
        Err(err) => return fail(err.of("--timeout")),
    };
    let delivery = match parse_ttl(&args.delivery_timeout) {
        Ok(delivery) => delivery,
        Err(err) => return fail(err.of("--delivery-timeout")),
    };
    let mut env = std::collections::BTreeMap::new();
    for pair in &args.env {
        let Some((name, value)) = pair.split_once('=') else {
            return usage_error(&format!("--env `{pair}` must be NAME=VALUE"));
        };
        env.insert(name.to_string(), value.to_string());
    }
    let mut secret_env = std::collections::BTreeMap::new();
    for name in &args.env_secret {
        match std::env::var(name) {
            Ok(value) => {
                secret_env.insert(name.clone(), value);
            }
            Err(_) => {
                return usage_error(&format!(
                    "--env-secret {name}: no such variable in steward's environment"
                ));
            }
        }
    }
    let client = match client(&args.remote) {
        Ok(client) => client,
        Err(err) => return fail(err),
    };
    let request = crate::fleet::command::CommandRequest {
        target,
        argv,
        max_concurrency: args.max_concurrency.clone(),
        max_errors: args.max_errors.clone(),
        timeout_secs: timeout.as_secs(),
        delivery_timeout_secs: delivery.as_secs(),
        user: args.user.clone(),
        env,
        secret_env,
        user_name: crate::engine::record::user(),
        limit: None,
        run_id: None,
    };
    let json = args.format == OutputFormat::Json;
    let mut stdout = std::io::stdout().lock();
    // Output arrives in chunks: print whole lines, each prefixed by its node.
    let mut partial: std::collections::BTreeMap<(String, String), String> = Default::default();
    let mut on_event = |event: &crate::fleet::command::CommandEvent| {
        use crate::fleet::command::CommandEvent;
        if json {
            if let Ok(line) = serde_json::to_string(event) {
                let _ = writeln!(stdout, "{line}");
            }
            return;
        }
        match event {
            CommandEvent::Begin { run_id, nodes } => eprintln!(
                "run {run_id} on {} node(s) (`steward run cancel {run_id}` stops it)",
                nodes.len()
            ),
            CommandEvent::Status { node, status } => {
                // A node that ended: what it printed without a final newline.
                if !matches!(status.as_str(), "pending" | "in_progress") {
                    for stream in ["stdout", "stderr"] {
                        if let Some(rest) = partial.remove(&(node.clone(), stream.to_string()))
                            && !rest.is_empty()
                        {
                            let _ = writeln!(stdout, "{node}: {rest}");
                        }
                    }
                }
                eprintln!("{node}: {}", status.as_str());
            }
            CommandEvent::Output { node, stream, data } => {
                let buffer = partial.entry((node.clone(), stream.clone())).or_default();
                buffer.push_str(data);
                while let Some(end) = buffer.find('\n') {
                    let line: String = buffer.drain(..=end).collect();
                    let _ = writeln!(stdout, "{node}: {}", line.trim_end_matches(['\n', '\r']));
                }
            }
            CommandEvent::Done(_) => {}
        }
    };
    let response = match client.command(&request, &mut on_event) {
        Ok(response) => response,
        Err(err) => return fail(err),
    };
    drop(stdout);
    for error in &response.errors {
        eprintln!("error: {error}");
    }
    if json {
        let line =
            serde_json::to_string(&crate::fleet::command::CommandEvent::Done(response.clone()))
                .map_err(std::io::Error::other)?;
        print_stdout(&format!("{line}\n"))?;
    } else if !response.nodes.is_empty() {
        print_stdout(&command_table(&response))?;
    }
    Ok(if response.failed || !response.errors.is_empty() {
        Exit::Error
    } else {
        Exit::Ok
    })
}

/// The per-node summary of a command run.
fn command_table(response: &crate::fleet::command::CommandResponse) -> String {
    use std::fmt::Write as _;
    let mut table = Table::new(&[
        ("NODE", Column::Fixed),
        ("STATUS", Column::Fixed),
        ("EXIT", Column::Count),
        ("DURATION", Column::Count),
        ("MESSAGE", Column::Text),
    ]);
    for node in &response.nodes {
        table.row(vec![
            node.node.clone(),
            node.status.as_str().to_string(),
            node.exit_code.map_or("-".to_string(), |c| c.to_string()),
            format!("{:.1}s", node.duration_ms as f64 / 1000.0),
            node.message.clone().unwrap_or_default(),
        ]);
    }
    let mut out = format!("\n{}", table.render(table_width()));
    if response.not_started > 0 {
        let _ = writeln!(
            out,
            "{} node(s) never started: max-errors was exceeded.",
            response.not_started
        );
    }
    if let Some(id) = &response.run_id {
        let _ = writeln!(out, "Recorded as run {id} (`steward report {id}`).");
    }
    out
}

/// A duration flag's value: the shared grammar (`90`, `30s`, `1h30m`, `7d`), from one second
/// to a year.
fn parse_ttl(text: &str) -> Result<Duration, DurationError> {
    let duration = crate::model::grammar::duration(text)?;
    if duration.is_zero() || duration > Duration::from_secs(365 * 86_400) {
        return Err(DurationError::Range(text.to_string()));
    }
    Ok(duration)
}

pub(super) fn token_create(
    data_dir: &Path,
    backend: &crate::fleet::footing::Backend,
    ttl: &str,
    name: Option<String>,
    tags: Option<&str>,
    replace: Option<String>,
    format: OutputFormat,
) -> std::io::Result<Exit> {
    let ttl = match parse_ttl(ttl) {
        Ok(ttl) => ttl,
        Err(err) => return fail(err.of("--ttl")),
    };
    let tags = match tags.map(parse_tags).transpose() {
        Ok(tags) => tags,
        Err(err) => return fail(err),
    };
    let binding = crate::fleet::token::Binding {
        replace: replace.is_some(),
        node: replace.or(name),
        tags,
    };
    let crate::fleet::footing::Footing { mut store, ca, .. } = match footing(data_dir, backend) {
        Ok(footing) => footing,
        Err(err) => return fail(err),
    };
    let what = format!(
        "join token{}{}, valid {}",
        match (&binding.node, binding.replace) {
            (Some(node), true) => format!(" replacing node {node}"),
            (Some(node), false) => format!(" for node {node}"),
            (None, _) => " for any new node".to_string(),
        },
        match &binding.tags {
            Some(tags) => format!(", tags {}", crate::fleet::token::tags_text(tags)),
            None => String::new(),
        },
        humantime::format_duration(ttl)
    );
    let act = local_act(crate::fleet::audit::TOKEN_CREATE, "");
    if let Err(err) = act.append(store.as_mut(), Outcome::Started, None, &what) {
        return fail(err);
    }
    let token = match crate::fleet::token::create(store.as_mut(), &ca, ttl, &binding) {
        Ok(token) => token,
        Err(err) => {
            local_outcome(store.as_mut(), &act, Outcome::Failed, &err.to_string());
            return fail(err);
        }
    };
    let made = crate::fleet::audit::Act {
        target: token.id.clone(),
        ..act
    };
    local_outcome(store.as_mut(), &made, Outcome::Ok, &what);
    match format {
        OutputFormat::Human => print_stdout(&format!("{token}\n")),
        OutputFormat::Json => print_stdout(&json_answer(
            "steward-join-token",
            serde_json::json!({
                "token": token.to_string(),
                "node": binding.node,
                "tags": binding.tags,
                "replace": binding.replace,
                "ttl_seconds": ttl.as_secs(),
            }),
        )),
    }
}

/// An act of this command on the store, for the audit log: the user it runs as, from `local`.
fn local_act(action: &str, target: &str) -> crate::fleet::audit::Act {
    use crate::fleet::audit::{Act, Actor};
    Act::new(Actor::local(), "local", action, target)
}

/// Appends `act`'s `outcome`; when the store refuses, says so on standard error (the act is
/// done, or failed, either way; its `started` entry is in the log).
fn local_outcome(
    store: &mut dyn crate::store::FleetStore,
    act: &crate::fleet::audit::Act,
    outcome: Outcome,
    detail: &str,
) {
    if let Err(err) = act.append(store, outcome, None, detail) {
        eprintln!("warning: {err}; this outcome is not in the audit log");
    }
}

/// The controller's store, CA and admin token, as `serve` opens them: the data directory is
/// made private (or refused) first, before a key lands in it.
fn footing(
    data_dir: &Path,
    backend: &crate::fleet::footing::Backend,
) -> Result<crate::fleet::footing::Footing, FleetError> {
    crate::fleet::controller::private_data_dir(data_dir)?;
    crate::fleet::footing::open(data_dir, backend).map_err(|source| FleetError::Footing {
        data_dir: data_dir.to_path_buf(),
        source,
    })
}

/// The flags of `token create --api`, as given.
pub(super) struct ApiTokenArgs<'a> {
    /// `--role`.
    pub(super) role: Option<&'a str>,
    /// `--target`.
    pub(super) target: Option<String>,
    /// `--ttl` (none: until revoked).
    pub(super) ttl: Option<&'a str>,
    /// `--name`.
    pub(super) name: Option<String>,
}

impl ApiTokenArgs<'_> {
    /// The token these flags describe, every flag checked before the store is opened.
    fn check(self) -> Result<crate::fleet::api_token::NewApiToken, FleetError> {
        use crate::fleet::api_token::{NewApiToken, Role};
        let role = self.role.ok_or_else(|| FleetError::ApiTokenFlag {
            flag: "--role",
            reason: "an API token needs a role: read, plan, operate or admin".to_string(),
        })?;
        let role = Role::parse(role).map_err(|err| FleetError::ApiTokenFlag {
            flag: "--role",
            reason: err.to_string(),
        })?;
        if let Some(target) = &self.target {
            crate::engine::Selector::parse(&[target.as_str()]).map_err(|err| {
                FleetError::ApiTokenFlag {
                    flag: "--target",
                    reason: err.to_string(),
                }
            })?;
        }
        let ttl = self
            .ttl
            .map(parse_ttl)
            .transpose()
            .map_err(|err| err.of("--ttl"))?;
        Ok(NewApiToken {
            name: self.name.unwrap_or_else(|| format!("{role} token")),
            role,
            target: self.target,
            ttl,
        })
    }
}

/// `steward token create --api`: prints the token once.
pub(super) fn api_token_create(
    data_dir: &Path,
    backend: &crate::fleet::footing::Backend,
    args: ApiTokenArgs<'_>,
    format: OutputFormat,
) -> std::io::Result<Exit> {
    let new = match args.check() {
        Ok(new) => new,
        Err(err) => return fail(err),
    };
    let mut store = match footing(data_dir, backend) {
        Ok(footing) => footing.store,
        Err(err) => return fail(err),
    };
    let what = format!(
        "API token `{}`, role {}{}{}",
        new.name,
        new.role,
        match &new.target {
            Some(target) => format!(", target {target}"),
            None => String::new(),
        },
        match new.ttl {
            Some(ttl) => format!(", valid {}", humantime::format_duration(ttl)),
            None => ", valid until revoked".to_string(),
        }
    );
    let act = local_act(crate::fleet::audit::TOKEN_CREATE, "");
    if let Err(err) = act.append(store.as_mut(), Outcome::Started, None, &what) {
        return fail(err);
    }
    let (token, record) = match crate::fleet::api_token::create(store.as_mut(), &new) {
        Ok(made) => made,
        Err(err) => {
            local_outcome(store.as_mut(), &act, Outcome::Failed, &err.to_string());
            return fail(err);
        }
    };
    let made = crate::fleet::audit::Act {
        target: record.id.clone(),
        ..act
    };
    local_outcome(store.as_mut(), &made, Outcome::Ok, &what);
    match format {
        OutputFormat::Human => print_stdout(&format!("{token}\n")),
        OutputFormat::Json => print_stdout(&json_answer(
            "steward-api-token",
            serde_json::json!({
                "id": record.id,
                "name": record.name,
                "role": record.role,
                "target": record.target,
                "expires_at": record.expires_at,
                "token": token.to_string(),
            }),
        )),
    }
}

/// An API token as `token list` and `token revoke` show it: never its secret or hash.
fn api_token_json(token: &crate::store::ApiTokenRecord, status: &str) -> serde_json::Value {
    serde_json::json!({
        "id": token.id,
        "name": token.name,
        "role": token.role,
        "target": token.target,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
        "status": status,
    })
}

/// `active`, `revoked` or `expired`, now.
fn api_token_status(token: &crate::store::ApiTokenRecord) -> &'static str {
    let now = chrono::Utc::now();
    let expired = token.expires_at.as_deref().is_some_and(|at| {
        chrono::DateTime::parse_from_rfc3339(at)
            .map_or(true, |at| at.with_timezone(&chrono::Utc) <= now)
    });
    if token.revoked_at.is_some() {
        "revoked"
    } else if expired {
        "expired"
    } else {
        "active"
    }
}

/// `steward token list`.
pub(super) fn api_token_list(
    data_dir: &Path,
    backend: &crate::fleet::footing::Backend,
    format: OutputFormat,
) -> std::io::Result<Exit> {
    let store = match footing(data_dir, backend) {
        Ok(footing) => footing.store,
        Err(err) => return fail(err),
    };
    let tokens = match store.api_tokens() {
        Ok(tokens) => tokens,
        Err(err) => return fail(err),
    };
    if format == OutputFormat::Json {
        let tokens: Vec<serde_json::Value> = tokens
            .iter()
            .map(|t| api_token_json(t, api_token_status(t)))
            .collect();
        return print_stdout(&json_answer(
            "steward-api-tokens",
            serde_json::json!({ "tokens": tokens }),
        ));
    }
    if tokens.is_empty() {
        return print_stdout(
            "No API tokens. `steward token create --api --role ROLE` makes one.\n",
        );
    }
    let mut table = Table::new(&[
        ("ID", Column::Fixed),
        ("NAME", Column::Text),
        ("ROLE", Column::Fixed),
        ("TARGET", Column::Text),
        ("STATUS", Column::Fixed),
        ("EXPIRES", Column::Fixed),
    ]);
    for token in &tokens {
        table.row(vec![
            token.id.clone(),
            token.name.clone(),
            token.role.clone(),
            token.target.clone().unwrap_or_else(|| "-".to_string()),
            api_token_status(token).to_string(),
            token
                .expires_at
                .clone()
                .unwrap_or_else(|| "never".to_string()),
        ]);
    }
    print_stdout(&table.render(table_width()))
}

/// `steward token revoke ID`.
pub(super) fn api_token_revoke(
    data_dir: &Path,
    backend: &crate::fleet::footing::Backend,
    id: &str,
    format: OutputFormat,
) -> std::io::Result<Exit> {
    let mut store = match footing(data_dir, backend) {
        Ok(footing) => footing.store,
        Err(err) => return fail(err),
    };
    let act = local_act(crate::fleet::audit::TOKEN_REVOKE, id);
    if let Err(err) = act.append(store.as_mut(), Outcome::Started, None, "API token") {
        return fail(err);
    }
    let token = match store.revoke_api_token(id) {
        Ok(token) => token,
        Err(err) => {
            local_outcome(store.as_mut(), &act, Outcome::Failed, &err.to_string());
            return fail(err);
        }
    };
    local_outcome(
        store.as_mut(),
        &act,
        Outcome::Ok,
        &format!("revoked API token `{}`", token.name),
    );
    match format {
        OutputFormat::Human => print_stdout(&format!(
            "revoked API token {} ({}); it is refused from now on\n",
            token.id, token.name
        )),
        OutputFormat::Json => print_stdout(&json_answer(
            "steward-api-token-revoked",
            api_token_json(&token, "revoked"),
        )),
    }
}

fn client(remote: &RemoteArgs) -> Result<Client, ClientError> {
    let url = remote
        .controller
        .as_deref()
        .ok_or(ClientError::NoController)?;
    Client::new(url, remote.token_file.as_deref(), remote.ca_file.as_deref())
}

pub(super) fn nodes(args: &NodesArgs) -> std::io::Result<Exit> {
    let nodes = match client(&args.remote).and_then(|c| c.nodes()) {
        Ok(nodes) => nodes,
        Err(err) => return fail(err),
    };
    if args.format == OutputFormat::Json {
        return print_stdout(&json_answer(
            "steward-nodes",
            serde_json::json!({ "nodes": nodes }),
        ));
    }
    if nodes.is_empty() {
        return print_stdout("No nodes enrolled. `steward token create` makes a join token.\n");
    }
    let mut table = Table::new(&[
        ("NODE", Column::Fixed),
        ("STATUS", Column::Fixed),
        ("TAGS", Column::Text),
        ("CLAIMED", Column::Text),
        ("OS", Column::Text),
        ("LAST SEEN", Column::Fixed),
    ]);
    for node in &nodes {
        let status = if node.revoked_at.is_some() {
            "revoked"
        } else if node.online {
            "online"
        } else {
            "offline"
        };
        let tags = crate::fleet::token::tags_text(&node.tags);
        let claimed = crate::fleet::token::tags_text(&node.claimed_tags);
        let os = format!(
            "{} {}",
            node.facts["os_family"].as_str().unwrap_or(""),
            node.facts["os_release"].as_str().unwrap_or("")
        );
        let or_dash = |text: String| {
            if text.is_empty() {
                "-".to_string()
            } else {
                text
            }
        };
        table.row(vec![
            node.name.clone(),
            status.to_string(),
            or_dash(tags),
            or_dash(claimed),
            os.trim().to_string(),
            node.last_seen
                .clone()
                .unwrap_or_else(|| "never".to_string()),
        ]);
    }
    print_stdout(&table.render(table_width()))
}

pub(super) fn node_revoke(
    name: &str,
    remote: &RemoteArgs,
    format: OutputFormat,
) -> std::io::Result<Exit> {
    post_answer(
        remote,
        &format!("/v1/nodes/{name}/revoke"),
        format,
        "steward-node-revoked",
    )
}

/// `steward run cancel RUN`.
pub(super) fn run_cancel(
    run: &str,
    remote: &RemoteArgs,
    format: OutputFormat,
) -> std::io::Result<Exit> {
    post_answer(
        remote,
        &format!("/v1/runs/{run}/cancel"),
        format,
        "steward-run-cancel",
    )
}

/// POSTs to `path` and prints the controller's answer: its text for people, or its JSON as
/// the answer `kind`.
fn post_answer(
    remote: &RemoteArgs,
    path: &str,
    format: OutputFormat,
    kind: &str,
) -> std::io::Result<Exit> {
    match format {
        OutputFormat::Human => remote_text(remote, path, true),
        OutputFormat::Json => match post_json::<serde_json::Value>(remote, path) {
            Ok(answer) => print_stdout(&json_answer(kind, answer)),
            Err(err) => fail(err),
        },
    }
}

/// `steward runs` against a controller: its listing, as JSON or as the table `runs` prints in
/// local mode (rendered here, to fit this terminal).
pub(super) fn remote_runs(remote: &RemoteArgs, format: OutputFormat) -> std::io::Result<Exit> {
    let path = "/v1/runs";
    let runs = match get_json::<Vec<crate::fleet::api::RunInfo>>(remote, path) {
        Ok(runs) => runs,
        Err(err) => return fail(err),
    };
    if format == OutputFormat::Json {
        return print_stdout(&json_answer(
            "steward-runs",
            serde_json::json!({ "runs": runs }),
        ));
    }
    let summaries: Result<Vec<_>, FleetError> =
        runs.iter().map(|run| run_summary(path, run)).collect();
    match summaries {
        Ok(summaries) => print_stdout(&crate::report::run::runs_table(&summaries, table_width())),
        Err(err) => fail(err),
    }
}

/// `steward findings` (and `findings resolve ID`) against a controller.
pub(super) fn remote_findings(remote: &RemoteArgs, args: &FindingsArgs) -> std::io::Result<Exit> {
    if let Some(FindingsAction::Resolve { id, note }) = &args.action {
        let request = crate::fleet::api::ResolveRequest { note: note.clone() };
        let answer_format = match args.format {
            OutputFormat::Human => "text",
            OutputFormat::Json => "json",
        };
        let text =
            match client(remote).and_then(|c| c.resolve_finding(*id, &request, answer_format)) {
                Ok(text) => text,
                Err(err) => return fail(err),
            };
        return match args.format {
            OutputFormat::Human => print_stdout(&text),
            OutputFormat::Json => {
                let path = format!("/v1/findings/{id}/resolve");
                match parse_answer::<crate::fleet::api::FindingInfo>(&path, &text) {
                    Ok(finding) => print_stdout(&json_answer(
                        "steward-finding",
                        serde_json::json!({ "finding": finding }),
                    )),
                    Err(err) => fail(err),
                }
            }
        };
    }
    let path = format!("/v1/findings?all={}", args.all);
    let findings = match get_json::<Vec<crate::fleet::api::FindingInfo>>(remote, &path) {
        Ok(findings) => findings,
        Err(err) => return fail(err),
    };
    if args.format == OutputFormat::Json {
        return print_stdout(&json_answer(
            "steward-findings",
            serde_json::json!({ "all": args.all, "findings": findings }),
        ));
    }
    let findings: Result<Vec<_>, FleetError> = findings
        .iter()
        .map(|finding| stored_finding(&path, finding))
        .collect();
    match findings {
        Ok(findings) => print_stdout(&crate::report::run::findings_table(
            &findings,
            args.all,
            table_width(),
        )),
        Err(err) => fail(err),
    }
}

/// `steward schedules`: the controller's scheduled associations, as JSON or as a table
/// (drawn here from the JSON, to fit the terminal).
pub(super) fn schedules(args: &SchedulesArgs) -> std::io::Result<Exit> {
    let infos = match get_json::<Vec<crate::fleet::schedule::ScheduleInfo>>(
        &args.remote,
        "/v1/schedules",
    ) {
        Ok(infos) => infos,
        Err(err) => return fail(err),
    };
    match args.format {
        OutputFormat::Json => print_stdout(&json_answer(
            "steward-schedules",
            serde_json::json!({ "schedules": infos }),
        )),
        OutputFormat::Human => print_stdout(&crate::fleet::schedule::table(&infos, table_width())),
    }
}

/// `steward schedules disable NAME` (`enabled` false) and `steward schedules enable NAME`.
pub(super) fn schedule_switch(
    name: &str,
    enabled: bool,
    remote: &RemoteArgs,
    format: OutputFormat,
) -> std::io::Result<Exit> {
    let path = format!(
        "/v1/schedules/{}/{}",
        path_segment(name),
        if enabled { "enable" } else { "disable" }
    );
    match format {
        OutputFormat::Human => remote_text(remote, &path, true),
        OutputFormat::Json => {
            match post_json::<crate::fleet::schedule::ScheduleInfo>(remote, &path) {
                Ok(info) => print_stdout(&json_answer(
                    "steward-schedule",
                    serde_json::json!({ "schedule": info }),
                )),
                Err(err) => fail(err),
            }
        }
    }
}

/// `steward audit` against a controller: `GET /v1/audit` with the flags as its query.
pub(super) fn remote_audit(
    remote: &RemoteArgs,
    args: &crate::cli::AuditArgs,
) -> std::io::Result<Exit> {
    let mut path = format!("/v1/audit?limit={}", args.limit);
    if let Some(before) = args.before {
        path.push_str(&format!("&before={before}"));
    }
    for (name, value) in [("run", &args.run), ("actor", &args.actor)] {
        if let Some(value) = value {
            path.push_str(&format!("&{name}={}", query_value(value)));
        }
    }
    match get_json::<Vec<crate::fleet::audit::AuditInfo>>(remote, &path) {
        Ok(entries) => print_stdout(&audit_text(&entries, args.format)),
        Err(err) => fail(err),
    }
}

/// `steward audit` on a store read directly (a controller's data directory as --state-dir).
pub(super) fn local_audit(args: &crate::cli::AuditArgs) -> std::io::Result<Exit> {
    let store = match super::commands::open_existing_store(&args.store) {
        Ok(store) => store,
        Err(message) => return usage_error(&message),
    };
    match crate::store::FleetStore::audit(&store, &args.query()) {
        Ok(records) => {
            let entries: Vec<_> = records
                .iter()
                .map(crate::fleet::audit::AuditInfo::from)
                .collect();
            print_stdout(&audit_text(&entries, args.format))
        }
        Err(err) => fail(err),
    }
}

/// The audit entries as `steward audit` prints them: a table, or one object whose `entries`
/// are those of `GET /v1/audit`.
fn audit_text(entries: &[crate::fleet::audit::AuditInfo], format: OutputFormat) -> String {
    match format {
        OutputFormat::Human => crate::fleet::audit::table(entries, table_width()),
        OutputFormat::Json => {
            json_answer("steward-audit", serde_json::json!({ "entries": entries }))
        }
    }
}

/// `text` as one segment of a URL's path: every byte but letters, digits and `-_~`
/// percent-encoded (an association's name may hold any character, and a `.` or `..` segment
/// would be taken for a step of the path).
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// `text` as a query parameter's value: every byte but unreserved ones percent-encoded.
fn query_value(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A run of `GET /v1/runs` as the store lists it, for the table.
fn run_summary(
    path: &str,
    run: &crate::fleet::api::RunInfo,
) -> Result<crate::store::RunSummary, FleetError> {
    let kind = crate::store::RunKind::parse(&run.kind).ok_or_else(|| FleetError::Answer {
        path: path.to_string(),
        reason: format!("unknown run kind `{}`", run.kind),
    })?;
    let counts = &run.counts;
    Ok(crate::store::RunSummary {
        id: run.id.clone(),
        kind,
        started_at: run.started_at.clone(),
        user: run.user.clone(),
        counts: [
            counts.unchanged,
            counts.changed,
            counts.drifted,
            counts.failed,
            counts.skipped,
        ],
    })
}

/// A finding of `GET /v1/findings` as the store holds it, for the table.
fn stored_finding(
    path: &str,
    finding: &crate::fleet::api::FindingInfo,
) -> Result<crate::store::Finding, FleetError> {
    let unknown = |what: &str, value: &str| FleetError::Answer {
        path: path.to_string(),
        reason: format!("unknown finding {what} `{value}`"),
    };
    Ok(crate::store::Finding {
        id: finding.id,
        node: finding.node.clone(),
        resource: finding.resource.clone(),
        kind: crate::store::FindingKind::parse(&finding.kind)
            .ok_or_else(|| unknown("kind", &finding.kind))?,
        open: finding.open,
        severity: crate::store::Severity::parse(&finding.severity)
            .ok_or_else(|| unknown("severity", &finding.severity))?,
        first_seen: finding.first_seen.clone(),
        last_seen: finding.last_seen.clone(),
        count: finding.count,
        last_run: finding.last_run.clone(),
        message: finding.message.clone(),
        resolution: finding.resolution.clone(),
        association: finding.association.clone(),
    })
}

/// `GET path` as JSON (`?format=json`, which the API obeys whatever `Accept` says).
fn get_json<T: serde::de::DeserializeOwned>(
    remote: &RemoteArgs,
    path: &str,
) -> Result<T, FleetError> {
    let text = client(remote)?.get_text(&with_json_format(path))?;
    parse_answer(path, &text)
}

/// `POST path` (no body), its answer as JSON.
fn post_json<T: serde::de::DeserializeOwned>(
    remote: &RemoteArgs,
    path: &str,
) -> Result<T, FleetError> {
    let text = client(remote)?.post_text(&with_json_format(path))?;
    parse_answer(path, &text)
}

fn with_json_format(path: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}format=json")
}

fn parse_answer<T: serde::de::DeserializeOwned>(path: &str, text: &str) -> Result<T, FleetError> {
    serde_json::from_str(text).map_err(|err| FleetError::Answer {
        path: path.to_string(),
        reason: err.to_string(),
    })
}

/// `steward node tag NAME K=V... --remove K`.
pub(super) fn node_tag(
    name: &str,
    set: &[String],
    remove: &[String],
    remote: &RemoteArgs,
    format: OutputFormat,
) -> std::io::Result<Exit> {
    if let Err(err) = crate::fleet::controller::check_node_name(name) {
        return fail(err);
    }
    if set.is_empty() && remove.is_empty() {
        return usage_error("nothing to do: give KEY=VALUE tags to set, or --remove KEY");
    }
    let mut request = crate::fleet::api::TagRequest {
        set: Default::default(),
        remove: remove.to_vec(),
    };
    for pair in set {
        let Some((key, value)) = pair.split_once('=') else {
            return usage_error(&format!("`{pair}` must be KEY=VALUE"));
        };
        request.set.insert(key.to_string(), value.to_string());
    }
    let answer_format = match format {
        OutputFormat::Human => "text",
        OutputFormat::Json => "json",
    };
    let text = match client(remote).and_then(|c| c.node_tags(name, &request, answer_format)) {
        Ok(text) => text,
        Err(err) => return fail(err),
    };
    match format {
        OutputFormat::Human => print_stdout(&text),
        OutputFormat::Json => match parse_answer::<serde_json::Value>("/v1/nodes/NAME/tags", &text)
        {
            Ok(tags) => print_stdout(&json_answer("steward-node-tags", tags)),
            Err(err) => fail(err),
        },
    }
}

/// Text answers of the API (`runs`, `report`, `findings`).
pub(super) fn remote_text(remote: &RemoteArgs, path: &str, post: bool) -> std::io::Result<Exit> {
    let answer = client(remote).and_then(|c| {
        if post {
            c.post_text(path)
        } else {
            c.get_text(path)
        }
    });
    match answer {
        Ok(text) => print_stdout(&text),
        Err(err) => fail(err),
    }
}

/// What a remote `plan`, `apply` or `drift` was asked.
#[derive(Clone, Copy)]
pub(super) struct RemoteRun<'a> {
    pub(super) mode: Mode,
    pub(super) project: &'a ProjectArgs,
    pub(super) remote: &'a RemoteArgs,
    /// `--target`, `--resource` and `--exclude` of `plan`, `apply` and `drift`.
    pub(super) local: Option<&'a super::LocalArgs>,
    pub(super) parallel: usize,
    pub(super) detailed_exitcode: bool,
    pub(super) format: OutputFormat,
    pub(super) yes: bool,
    /// `steward run --document`.
    pub(super) adhoc: Option<&'a crate::fleet::run::AdhocRequest>,
    /// `plan -o FILE`: save the plan there.
    pub(super) out: Option<&'a Path>,
}

/// A saved fleet plan given to `apply`: the project it names and what it pins. `Ok(None)`
/// when the path is not a saved plan; refused when it was made with other `--target`,
/// `--resource` or `--exclude` flags than these.
fn saved_fleet_plan(
    path: &Path,
    target: Option<&crate::engine::Selector>,
    filter: &crate::engine::ResourceFilter,
) -> Result<Option<(ProjectArgs, crate::fleet::run::SavedFleetPlan)>, FleetError> {
    if !path.is_file() {
        return Ok(None);
    }
    let Some(saved) = crate::local::SavedPlan::read(path).map_err(FleetError::ReadPlan)? else {
        return Ok(None);
    };
    if saved.root != crate::fleet::run::FLEET_ROOT {
        return Err(FleetError::LocalPlan {
            path: path.to_path_buf(),
            root: saved.root,
        });
    }
    saved
        .check_selection(target, filter)
        .map_err(FleetError::ReadPlan)?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let project = saved.project_path(&cwd).map_err(FleetError::ReadPlan)?;
    Ok(Some((
        ProjectArgs {
            path: project,
            params: Vec::new(),
            params_files: Vec::new(),
        },
        pinned(saved),
    )))
}

/// A plan's JSON with its `project` relative to the current directory (the controller names
/// the absolute path it was sent, which its records keep).
fn with_relative_project(json: &str, project: &Path) -> String {
    let Ok(mut plan) = serde_json::from_str::<serde_json::Value>(json) else {
        return json.to_string();
    };
    if let Some(fields) = plan.as_object_mut() {
        fields.insert(
            "project".into(),
            super::commands::relative_to_cwd(project).into(),
        );
    }
    match serde_json::to_string_pretty(&plan) {
        Ok(text) => text + "\n",
        Err(_) => json.to_string(),
    }
}

/// What applying exactly a plan pins: its documents digest and every observed fingerprint.
fn pinned(saved: crate::local::SavedPlan) -> crate::fleet::run::SavedFleetPlan {
    let nodes = saved
        .nodes
        .iter()
        .map(|node| {
            let changes = node
                .changes
                .iter()
                .map(|c| (c.id.clone(), c.observed.clone()))
                .collect();
            (node.name.clone(), changes)
        })
        .collect();
    crate::fleet::run::SavedFleetPlan {
        documents_digest: saved.documents_digest,
        documents: saved.documents,
        nodes,
    }
}

pub(super) fn remote_run(ctx: &Context, run: &RemoteRun<'_>) -> std::io::Result<Exit> {
    let (target, filter) = match run.local {
        Some(local) => {
            let selection = crate::engine::Selector::parse(&local.target).and_then(|target| {
                crate::engine::ResourceFilter::new(&local.resource, &local.exclude)
                    .map(|filter| (target, filter))
            });
            match selection {
                Ok(selection) => selection,
                Err(err) => return usage_error(&err.to_string()),
            }
        }
        None => (None, crate::engine::ResourceFilter::default()),
    };
    let saved = match run.mode {
        Mode::Apply => match saved_fleet_plan(&run.project.path, target.as_ref(), &filter) {
            Ok(saved) => saved,
            Err(err) => return fail(err),
        },
        _ => None,
    };
    // A saved plan names its project (and was reviewed: it applies without asking).
    let (saved_project, saved) = match saved {
        Some((project, pinned)) => (
            Some(ProjectArgs {
                params: run.project.params.clone(),
                ..project
            }),
            Some(pinned),
        ),
        None => (None, None),
    };
    let project_args = saved_project.as_ref().unwrap_or(run.project);
    let run = &RemoteRun {
        project: project_args,
        yes: run.yes || saved.is_some(),
        ..*run
    };
    let client = match client(run.remote) {
        Ok(client) => client,
        Err(err) => return fail(err),
    };
    let overrides = match overrides(run.project) {
        Ok(overrides) => overrides,
        Err(message) => return usage_error(&message),
    };
    // The project is checked here first, so mistakes show with their source lines: rendered,
    // as the controller will, for each node of its inventory its associations select.
    let adhoc = run.adhoc.map(|adhoc| adhoc.target.as_str());
    let mut validated =
        match validate_for_fleet(ctx, &client, &run.project.path, overrides.clone(), adhoc) {
            Ok(validated) => validated,
            Err(err) => return fail(err),
        };
    if validated.has_errors() {
        report_human(ctx, &validated)?;
        return Ok(Exit::Error);
    }
    // A `--resource` or `--exclude` no selected node declares is said here, with a "did you
    // mean"; the controller narrows the run the same way.
    if let Err(err) =
        crate::engine::select::narrow(&mut validated, &ctx.registry, target.as_ref(), &filter)
    {
        return usage_error(&err.to_string());
    }
    // Said here, where the documents and the inventory are known, rather than as the
    // controller's bare error; the run is still sent, so an apply registers the project's
    // schedules.
    let nothing = (run.format == OutputFormat::Human
        && run.adhoc.is_none()
        && target.is_none()
        && super::reach::fleet_targets(&validated, None).is_empty())
    .then(|| super::reach::nothing_to_do(&validated));
    if run.format == OutputFormat::Human && run.adhoc.is_none() && nothing.is_none() {
        for line in super::reach::nowhere(&validated, true) {
            eprintln!("note: {line}");
        }
    }
    let files = match client::bundle(&run.project.path) {
        Ok(files) => files,
        Err(err) => return fail(err),
    };
    let mut request = RunRequest {
        mode: run.mode,
        files,
        project: std::fs::canonicalize(&run.project.path)
            .unwrap_or_else(|_| run.project.path.clone())
            .display()
            .to_string(),
        overrides,
        target: target.as_ref().map(ToString::to_string),
        resources: filter.resources.clone(),
        excludes: filter.excludes.clone(),
        parallel: run.parallel,
        color: ctx.stdout_color,
        json: run.format == OutputFormat::Json,
        user: crate::engine::record::user(),
        adhoc: run.adhoc.cloned(),
        saved,
    };
    if run.mode == Mode::Apply && !run.yes {
        if run.format == OutputFormat::Json {
            return usage_error(APPLY_JSON_NEEDS_YES);
        }
        if !std::io::stdin().is_terminal() {
            return usage_error("refusing to apply without --yes: no terminal to ask on");
        }
        request.mode = Mode::Plan;
        let response = match send_checked(&client, &request, nothing.as_deref())? {
            Ok(response) => response,
            Err(exit) => return Ok(exit),
        };
        print_stdout(&response.output)?;
        if !response.has_changes {
            return Ok(Exit::Ok);
        }
        if !super::confirm_apply()? {
            return Ok(Exit::Error);
        }
        // Apply exactly what was shown: refused where anything moved since.
        request.saved = response
            .plan_json
            .as_deref()
            .and_then(|json| serde_json::from_str::<crate::local::SavedPlan>(json).ok())
            .map(pinned);
        request.mode = Mode::Apply;
    }
    let mut response = match send_checked(&client, &request, nothing.as_deref())? {
        Ok(response) => response,
        Err(exit) => return Ok(exit),
    };
    // The plan names its project relative to here, as a local plan does, so a saved one
    // still finds it when the tree has moved.
    if let Some(json) = &mut response.plan_json {
        *json = with_relative_project(json, &run.project.path);
        if request.json && request.mode == Mode::Plan {
            response.output = json.clone();
        }
    }
    if run.mode != Mode::Plan && run.format == OutputFormat::Json {
        // The controller answers an apply or a drift with the run for people; as JSON, the
        // run is the recorded one, as `steward report --format json` prints it.
        let Some(run_id) = &response.run_id else {
            return usage_error("the run was not recorded, so there is no run to print as JSON");
        };
        match client.get_text(&format!("/v1/runs/{run_id}?format=json")) {
            Ok(text) => print_stdout(&text)?,
            Err(err) => return fail(err),
        };
    } else {
        print_stdout(&response.output)?;
    }
    if let (Some(out), Some(json)) = (run.out, &response.plan_json) {
        if let Err(source) = crate::fleet::pki::write_private(out, json.as_bytes()) {
            return fail(FleetError::WritePlan {
                path: out.to_path_buf(),
                source,
            });
        }
        eprintln!(
            "Saved the plan to {}; `steward apply {}` applies exactly it.",
            out.display(),
            out.display()
        );
    }
    if run.mode != Mode::Plan && run.format == OutputFormat::Human {
        print_stdout(&node_table(&response))?;
    } else {
        // A plan shows the nodes that answered; say which did not.
        for node in response.nodes.iter().filter(|n| n.status != "ok") {
            let why = node
                .message
                .as_deref()
                .unwrap_or("resources could not be read");
            eprintln!("error: node `{}` ({}): {why}", node.node, node.status);
        }
    }
    Ok(if response.failed {
        Exit::Error
    } else if run.mode != Mode::Apply && run.detailed_exitcode && response.has_changes {
        Exit::Changes
    } else {
        Exit::Ok
    })
}

/// Sends a run, showing progress on a terminal.
fn send(client: &Client, request: &RunRequest) -> Result<RunResponse, ClientError> {
    let live = std::io::stderr().is_terminal();
    client.run(request, &mut |event| {
        if !live {
            return;
        }
        match event {
            Event::NodeStarted { node } => eprintln!("{node}: started"),
            Event::NodeFinished(status) => eprintln!(
                "{}: {}{}",
                status.node,
                status.status,
                status
                    .message
                    .as_ref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default()
            ),
            Event::Resource {
                node,
                resource,
                outcome,
            } if outcome != "unchanged" => eprintln!("{node}: {resource} {outcome}"),
            _ => {}
        }
    })
}

/// Sends a run; `Err` carries the exit code when nothing ran (the reasons are printed).
/// `nothing` is what to say when the run, as expected, targeted no node.
fn send_checked(
    client: &Client,
    request: &RunRequest,
    nothing: Option<&str>,
) -> std::io::Result<Result<RunResponse, Exit>> {
    let response = match send(client, request) {
        Ok(response) => response,
        Err(err) => return fail(err).map(Err),
    };
    Ok(match print_errors(&response, nothing)? {
        Some(exit) => Err(exit),
        None => Ok(response),
    })
}

/// Prints why a run did nothing: `error:` lines when it failed; otherwise it had nothing to
/// do, which is no error (exit 0).
fn print_errors(response: &RunResponse, nothing: Option<&str>) -> std::io::Result<Option<Exit>> {
    if response.errors.is_empty() {
        return Ok(None);
    }
    if response.failed {
        // What the run did show (a plan with refusals, results it could not store) first.
        print_stdout(&response.output)?;
        for error in &response.errors {
            eprintln!("error: {error}");
        }
        return Ok(Some(Exit::Error));
    }
    match nothing {
        Some(text) if response.nodes.is_empty() => print_stdout(text)?,
        _ => {
            for note in &response.errors {
                eprintln!("note: {note}");
            }
            Exit::Ok
        }
    };
    Ok(Some(Exit::Ok))
}

/// Lowers the project at `path` as the controller will: for each node of its inventory, with
/// that node's facts and tags. `adhoc` is `steward run --document`'s `--target`: the
/// documents go to the nodes it selects.
fn validate_for_fleet(
    ctx: &Context,
    client: &Client,
    path: &Path,
    overrides: std::collections::BTreeMap<String, String>,
    adhoc: Option<&str>,
) -> Result<crate::validate::Validated, ClientError> {
    let inventory = client.inventory()?;
    let adhoc = adhoc
        .map(|selector| adhoc_nodes(&inventory, selector))
        .filter(|nodes| !nodes.is_empty());
    Ok(crate::validate::validate_with(
        path,
        &ctx.registry,
        crate::facts::local(&ctx.root),
        overrides,
        inventory,
        adhoc,
    ))
}

/// The nodes of `inventory` a `--target` selector picks (`all`, names, `KEY=VALUE`, joined by
/// commas), for rendering only: the controller resolves it again, and refuses a selector
/// that names an unknown node or tag.
fn adhoc_nodes(inventory: &[crate::schema::KnownNode], selector: &str) -> Vec<String> {
    inventory
        .iter()
        .filter(|node| {
            selector.split(',').map(str::trim).any(|part| match part {
                "all" => true,
                _ => match part.split_once('=') {
                    Some((key, value)) => node.tags.get(key).is_some_and(|v| v == value),
                    None => node.name == part,
                },
            })
        })
        .map(|node| node.name.clone())
        .collect()
}

/// `validate` and `graph` with a controller: the project lowered against its inventory.
/// `Err` holds the exit code once the problem has been reported.
pub(super) fn validated(
    ctx: &Context,
    project: &ProjectArgs,
    remote: &RemoteArgs,
) -> std::io::Result<Result<crate::validate::Validated, Exit>> {
    let overrides = match overrides(project) {
        Ok(overrides) => overrides,
        Err(message) => return usage_error(&message).map(Err),
    };
    match client(remote).and_then(|c| validate_for_fleet(ctx, &c, &project.path, overrides, None)) {
        Ok(validated) => Ok(Ok(validated)),
        Err(err) => fail(err).map(Err),
    }
}

/// The per-node summary at the end of an apply or drift: each count is the number of the
/// node's results with that outcome in the recorded run.
fn node_table(response: &RunResponse) -> String {
    use std::fmt::Write as _;
    let mut table = Table::new(&[
        ("NODE", Column::Fixed),
        ("STATUS", Column::Fixed),
        ("CHANGED", Column::Count),
        ("DRIFTED", Column::Count),
        ("PENDING", Column::Count),
        ("FAILED", Column::Count),
        ("SKIPPED", Column::Count),
        ("MESSAGE", Column::Text),
    ]);
    for node in &response.nodes {
        let mut cells = vec![node.node.clone(), node.status.clone()];
        cells.extend(
            [
                node.changed,
                node.drifted,
                node.pending,
                node.failed,
                node.skipped,
            ]
            .map(|n| n.to_string()),
        );
        cells.push(node.message.clone().unwrap_or_default());
        table.row(cells);
    }
    let mut out = format!("\n{}", table.render(table_width()));
    if let Some(id) = &response.run_id {
        let _ = writeln!(out, "Recorded as run {id} (`steward report {id}`).");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_and_tags() {
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_ttl("1w").unwrap(), Duration::from_secs(604_800));
        for bad in [
            "",
            "h",
            "0s",
            "0",
            "-1h",
            "99999999999999999999s",
            "400d",
            "53w",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        for (bad, message) in [
            (
                "x",
                "--ttl `x` is not a duration: write seconds (90) or numbers with units (30s, 5m, 1h30m, 2d, 1w)",
            ),
            ("0s", "--ttl `0s` must be between 1s and 365d"),
        ] {
            let err = parse_ttl(bad).unwrap_err().of("--ttl");
            assert_eq!(err.to_string(), message);
        }
        assert_eq!(
            parse_tags("a=1,b").unwrap_err().to_string(),
            "--tags: `b` must be KEY=VALUE"
        );
        let tags = parse_tags("role=web, zone=a").unwrap();
        assert_eq!(tags["role"], "web");
        assert_eq!(tags["zone"], "a");
        assert!(parse_tags("role").is_err());
        assert!(parse_tags("").unwrap().is_empty());
    }
}
