//! Run Command: an ad-hoc command on selected nodes, at a controlled pace, with every node's
//! output collected and the invocation stored as a run.
//!
//! Each node's invocation moves through SSM's statuses: `pending` → `in_progress` →
//! `success` / `failed` / `timed_out` (killed at `--timeout`) / `cancelled`, or
//! `delivery_timed_out` when the command never reached the node, or `not_started` when
//! `max_errors` was exceeded before its turn. Rate control is [`crate::fleet::rate`]'s, the
//! same as applies use.
//!
//! **Architecture Invariant:** secret environment values travel to the agent in memory only:
//! they are redacted from every output and never written to the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::engine::select::Part;
use crate::fleet::controller::{Controller, ControllerError, TaskEvent};
use crate::fleet::rate::{self, Dispatched};
use crate::fleet::wire::{CommandTask, TaskKind, TaskResult, WireOutput};
use crate::model::{self, Rate};
use crate::resource::command::OUTPUT_CAP;
use crate::store::{ResultOutcome, ResultRecord, RunKind, RunRecord, StoreError};

/// Why a command run, its targets or its cancellation were refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// `--max-concurrency` or `--max-errors` is neither a count nor a percentage.
    #[error("{what} {source}")]
    BadRate {
        /// The option.
        what: String,
        /// What is wrong with its value.
        source: model::grammar::RateError,
    },
    /// A `--target` that does not parse (an empty part such as `a,,b`, an empty tag key).
    #[error(transparent)]
    Selector(#[from] crate::engine::SelectError),
    /// A `KEY=VALUE` selector whose key no enrolled node has.
    #[error("unknown target selector `{part}`: no enrolled node has a tag `{key}`")]
    UnknownTag {
        /// The selector.
        part: String,
        /// Its key.
        key: String,
    },
    /// A name selector no enrolled node has.
    #[error("unknown target selector `{0}`: no enrolled node has that name")]
    UnknownNode(String),
    /// A `--target` that picks no node.
    #[error("--target `{0}` matched no nodes")]
    NoMatch(String),
    /// No command run of that id is in progress.
    #[error("no command run `{0}` is in progress")]
    NotRunning(String),
    /// A thread panicked while it held the runs in progress.
    #[error("the controller's run list is unusable")]
    RunsPoisoned,
    /// The controller's store could not be reached.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A command asked of the controller (`POST /v1/commands`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// Which nodes: `all`, `NAME` or `KEY=VALUE`, several joined by commas.
    pub target: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// `N` or `P%` nodes at once.
    pub max_concurrency: String,
    /// `N` or `P%` failures before no new node starts.
    pub max_errors: String,
    /// Seconds before a running command is killed.
    pub timeout_secs: u64,
    /// Seconds to wait for an offline node to connect before giving up on it.
    pub delivery_timeout_secs: u64,
    /// Run as this user on the nodes.
    pub user: Option<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secret environment variables: passed on, redacted from output, never stored.
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
    /// Who asked.
    #[serde(default)]
    pub user_name: String,
    /// The nodes the asking token may reach (set by the API from the token, never read from
    /// the request).
    #[serde(skip)]
    pub limit: Option<crate::fleet::api_token::Limit>,
    /// The run's id, chosen by the API (so the audit log can name it before the run begins);
    /// a new one when `None`. Never read from the request.
    #[serde(skip)]
    pub run_id: Option<String>,
}

/// Run Command's per-node statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting its turn.
    Pending,
    /// Running on the node.
    InProgress,
    /// Exited 0.
    Success,
    /// Exited non-zero, could not start, or the agent refused it.
    Failed,
    /// Killed at its timeout, or the node went away while it ran.
    TimedOut,
    /// Never reached the node (offline until the delivery timeout).
    DeliveryTimedOut,
    /// Stopped by `steward run cancel`.
    Cancelled,
    /// Never started: `max_errors` was exceeded first.
    NotStarted,
}

impl Status {
    /// The stored outcome.
    fn outcome(self) -> ResultOutcome {
        match self {
            Status::Success => ResultOutcome::Succeeded,
            Status::Failed | Status::Pending | Status::InProgress => ResultOutcome::Failed,
            Status::TimedOut | Status::DeliveryTimedOut => ResultOutcome::TimedOut,
            Status::Cancelled => ResultOutcome::Cancelled,
            Status::NotStarted => ResultOutcome::Skipped,
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in_progress",
            Status::Success => "success",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::DeliveryTimedOut => "delivery_timed_out",
            Status::Cancelled => "cancelled",
            Status::NotStarted => "not_started",
        }
    }
}

/// How the command went on one node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeResult {
    /// The node.
    pub node: String,
    /// Where it ended.
    pub status: Status,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// How long it ran.
    pub duration_ms: u64,
    /// Standard output (the first 64 KiB).
    pub stdout: String,
    /// Standard error (the first 64 KiB).
    pub stderr: String,
    /// Bytes written to standard output in all.
    pub stdout_bytes: u64,
    /// Bytes written to standard error in all.
    pub stderr_bytes: u64,
    /// Why it failed, timed out or never ran.
    pub message: Option<String>,
}

/// The end of a command run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CommandResponse {
    /// The stored run.
    pub run_id: Option<String>,
    /// Per node, in target order.
    pub nodes: Vec<NodeResult>,
    /// Nodes never started (max_errors exceeded).
    pub not_started: usize,
    /// A node did not succeed.
    pub failed: bool,
    /// Why nothing ran.
    pub errors: Vec<String>,
}

/// A line of a command run's stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CommandEvent {
    /// The run began: its id (for `steward run cancel`) and targets.
    Begin {
        /// The run.
        run_id: String,
        /// The targeted nodes.
        nodes: Vec<String>,
    },
    /// A node's status changed.
    Status {
        /// The node.
        node: String,
        /// Its new status.
        status: Status,
    },
    /// Output from a node, as it arrives.
    Output {
        /// The node.
        node: String,
        /// `stdout` or `stderr`.
        stream: String,
        /// The text.
        data: String,
    },
    /// The run is over.
    Done(CommandResponse),
}

/// A command run in progress, for `steward run cancel`.
#[derive(Default)]
pub struct Active {
    cancelled: AtomicBool,
    tasks: std::sync::Mutex<Vec<(String, String)>>,
}

/// The command runs in progress, by run id: what `steward run cancel` can stop.
///
/// Held by the HTTP API, which starts and cancels them; the controller does not know them.
pub type ActiveRuns = std::sync::Mutex<HashMap<String, Arc<Active>>>;

/// `N` or `P%` ([`model::grammar::rate`]), at least `min`, given to the option `what`.
pub fn parse_rate(text: &str, what: &str, min: u32) -> Result<Rate, CommandError> {
    model::grammar::rate(text, min).map_err(|source| CommandError::BadRate {
        what: what.to_string(),
        source,
    })
}

/// The enrolled, unrevoked nodes a selector picks, in name order. A name nobody has, or a
/// tag key no node has, is an unknown selector; a selector that picks nothing is an error
/// too.
pub async fn resolve_targets(
    controller: &Arc<Controller>,
    selector: &str,
) -> Result<Vec<String>, CommandError> {
    let nodes = controller.store(|s| s.nodes()).await??;
    let nodes: Vec<_> = nodes
        .into_iter()
        .filter(|n| n.revoked_at.is_none())
        .collect();
    let mut picked: Vec<String> = Vec::new();
    let parsed = crate::engine::Selector::parse(&[selector])?
        .map(|parsed| parsed.parts)
        .unwrap_or_default();
    for part in parsed {
        match &part {
            Part::All => {}
            Part::Tag(key, _) => {
                if !nodes.iter().any(|n| n.tags.contains_key(key)) {
                    return Err(CommandError::UnknownTag {
                        part: part.to_string(),
                        key: key.clone(),
                    });
                }
            }
            Part::Name(name) => {
                if !nodes.iter().any(|n| &n.name == name) {
                    return Err(CommandError::UnknownNode(name.clone()));
                }
            }
        }
        for node in nodes.iter().filter(|n| part.matches(&n.name, &n.tags)) {
            if !picked.contains(&node.name) {
                picked.push(node.name.clone());
            }
        }
    }
    if picked.is_empty() {
        return Err(CommandError::NoMatch(selector.to_string()));
    }
    picked.sort();
    Ok(picked)
}

/// Runs a command on its targets with rate control, streaming progress to `progress`, and
/// stores the invocation as a run.
pub async fn run(
    controller: &Arc<Controller>,
    commands: &ActiveRuns,
    request: CommandRequest,
    progress: mpsc::UnboundedSender<CommandEvent>,
) -> CommandResponse {
    let failed = |error: String| CommandResponse {
        failed: true,
        errors: vec![error],
        ..CommandResponse::default()
    };
    if request.argv.is_empty() || request.argv[0].is_empty() {
        return failed("no command given".to_string());
    }
    let max_concurrency = match parse_rate(
        &request.max_concurrency,
        "--max-concurrency",
        model::grammar::MAX_CONCURRENCY_MIN,
    ) {
        Ok(rate) => rate,
        Err(err) => return failed(err.to_string()),
    };
    let max_errors = match parse_rate(
        &request.max_errors,
        "--max-errors",
        model::grammar::MAX_ERRORS_MIN,
    ) {
        Ok(rate) => rate,
        Err(err) => return failed(err.to_string()),
    };
    let targets = match resolve_targets(controller, &request.target).await {
        Ok(targets) => targets,
        Err(err) => return failed(err.to_string()),
    };
    if let Some(limit) = &request.limit {
        let nodes = match controller.store(|s| s.nodes()).await {
            Ok(Ok(nodes)) => nodes,
            Ok(Err(err)) => return failed(err.to_string()),
            Err(err) => return failed(err.to_string()),
        };
        let picked = nodes
            .iter()
            .filter(|node| targets.contains(&node.name))
            .map(|node| (node.name.as_str(), &node.tags));
        if let Err(refusal) = limit.check(picked) {
            return failed(refusal);
        }
    }
    // Unique even for two runs started in the same millisecond by one controller.
    let run_id = request.run_id.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            crate::engine::record::run_id(),
            crate::fleet::token::random_hex(2).unwrap_or_default()
        )
    });
    let started_at = crate::engine::record::timestamp();
    // Stored as running before any node is sent the command: a controller that dies during
    // the run leaves it `interrupted`, with what arrived, never nowhere.
    let begun = RunRecord {
        id: run_id.clone(),
        kind: RunKind::Command,
        started_at: started_at.clone(),
        finished_at: String::new(),
        user: request.user_name.clone(),
        project: request.argv.join(" "),
        documents_digest: String::new(),
        results: Vec::new(),
        status: crate::store::RunStatus::Running,
    };
    let coordinator = controller.id().to_string();
    if let Err(err) = controller
        .store_write(move |s, again| s.begin_run_again(&begun, &coordinator, again))
        .await
        .map_err(CommandError::from)
        .and_then(|r| r.map_err(CommandError::from))
    {
        return failed(format!(
            "the run could not be stored, so no node was sent the command: {err}"
        ));
    }
    let active = Arc::new(Active::default());
    if let Ok(mut runs) = commands.lock() {
        runs.insert(run_id.clone(), Arc::clone(&active));
    }
    let _ = progress.send(CommandEvent::Begin {
        run_id: run_id.clone(),
        nodes: targets.clone(),
    });
    let mut env = request.env.clone();
    env.extend(request.secret_env.clone());
    let secrets: Vec<String> = request
        .secret_env
        .values()
        .filter(|v| !v.is_empty())
        .cloned()
        .collect();
    let task = CommandTask {
        argv: request.argv.clone(),
        user: request.user.clone(),
        timeout_secs: request.timeout_secs.max(1),
        env,
        secrets: secrets.clone(),
    };
    for node in &targets {
        let _ = progress.send(CommandEvent::Status {
            node: node.clone(),
            status: Status::Pending,
        });
    }
    let delivery = Duration::from_secs(request.delivery_timeout_secs);
    let results = rate::dispatch(
        targets.clone(),
        max_concurrency,
        max_errors,
        |result: &NodeResult| !matches!(result.status, Status::Success | Status::Cancelled),
        |node: String| {
            let controller = Arc::clone(controller);
            let progress = progress.clone();
            let task = task.clone();
            let active = Arc::clone(&active);
            let run_id = run_id.clone();
            async move {
                on_node(
                    controller, &run_id, node, task, delivery, active, progress,
                )
                .await
            }
        },
    )
    .await;
    if let Ok(mut runs) = commands.lock() {
        runs.remove(&run_id);
    }
    let mut nodes = Vec::new();
    for (node, result) in targets.iter().zip(results) {
        let result = match result {
            Dispatched::Done(result) => result,
            Dispatched::Panicked(err) => blank(node, Status::Failed, format!("crashed: {err}")),
            Dispatched::NotStarted => blank(
                node,
                Status::NotStarted,
                "never started: max_errors was exceeded".to_string(),
            ),
        };
        if result.status == Status::NotStarted {
            let _ = progress.send(CommandEvent::Status {
                node: node.clone(),
                status: Status::NotStarted,
            });
        }
        nodes.push(result);
    }
    let record = RunRecord {
        id: run_id.clone(),
        kind: RunKind::Command,
        started_at,
        finished_at: crate::engine::record::timestamp(),
        user: request.user_name.clone(),
        project: request.argv.join(" "),
        documents_digest: String::new(),
        results: nodes.iter().map(|n| record(n, &request.argv)).collect(),
        status: crate::store::RunStatus::Complete,
    };
    let mut errors = Vec::new();
    let stored = controller
        .store_write({
            let record = record.clone();
            move |s, again| s.record_run_again(&record, again)
        })
        .await
        .map_err(CommandError::from)
        .and_then(|r| r.map_err(CommandError::from));
    if let Err(err) = &stored {
        tracing::error!(run = %run_id, "recording the command run: {err}");
        errors.push(format!(
            "the run's results could not be stored: {err}; they are shown here only"
        ));
    }
    CommandResponse {
        run_id: stored.is_ok().then_some(run_id),
        not_started: nodes
            .iter()
            .filter(|n| n.status == Status::NotStarted)
            .count(),
        failed: nodes.iter().any(|n| n.status != Status::Success) || !errors.is_empty(),
        nodes,
        errors,
    }
}

/// Stops a command run: no node starts any more, and running commands are killed.
pub fn cancel(
    controller: &Controller,
    commands: &ActiveRuns,
    run_id: &str,
) -> Result<usize, CommandError> {
    let active = commands
        .lock()
        .map_err(|_| CommandError::RunsPoisoned)?
        .get(run_id)
        .cloned()
        .ok_or_else(|| CommandError::NotRunning(run_id.to_string()))?;
    active.cancelled.store(true, Ordering::Relaxed);
    let tasks = active
        .tasks
        .lock()
        .map(|tasks| tasks.clone())
        .unwrap_or_default();
    for (node, task_id) in &tasks {
        controller.cancel_task(node, task_id);
    }
    Ok(tasks.len())
}

fn blank(node: &str, status: Status, message: String) -> NodeResult {
    NodeResult {
        node: node.to_string(),
        status,
        exit_code: None,
        duration_ms: 0,
        stdout: String::new(),
        stderr: String::new(),
        stdout_bytes: 0,
        stderr_bytes: 0,
        message: Some(message),
    }
}

async fn on_node(
    controller: Arc<Controller>,
    run_id: &str,
    node: String,
    task: CommandTask,
    delivery: Duration,
    active: Arc<Active>,
    progress: mpsc::UnboundedSender<CommandEvent>,
) -> NodeResult {
    let status = |status: Status| {
        let _ = progress.send(CommandEvent::Status {
            node: node.clone(),
            status,
        });
    };
    if active.cancelled.load(Ordering::Relaxed) {
        status(Status::Cancelled);
        return blank(
            &node,
            Status::Cancelled,
            "cancelled before it started".to_string(),
        );
    }
    // An offline node gets until the delivery timeout to connect. With a shared store the
    // node may be connected to another controller: the routed task finds it there (and a
    // node connected to none counts as offline once its task stayed unclaimed a few seconds).
    let waiting = Instant::now();
    while !controller.is_shared() && !controller.online().contains(&node) {
        if waiting.elapsed() >= delivery || active.cancelled.load(Ordering::Relaxed) {
            let result = if active.cancelled.load(Ordering::Relaxed) {
                blank(
                    &node,
                    Status::Cancelled,
                    "cancelled before it started".to_string(),
                )
            } else {
                blank(
                    &node,
                    Status::DeliveryTimedOut,
                    format!(
                        "delivery timed out: the node was offline for {}s",
                        delivery.as_secs()
                    ),
                )
            };
            status(result.status);
            return result;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let task_id = controller.new_task_id();
    if let Ok(mut tasks) = active.tasks.lock() {
        tasks.push((node.clone(), task_id.clone()));
    }
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<TaskEvent>();
    let started = Arc::new(AtomicBool::new(false));
    let forward = {
        let progress = progress.clone();
        let node = node.clone();
        let started = Arc::clone(&started);
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                let event = match event {
                    TaskEvent::Started => {
                        started.store(true, Ordering::Relaxed);
                        CommandEvent::Status {
                            node: node.clone(),
                            status: Status::InProgress,
                        }
                    }
                    TaskEvent::Output { stream, data } => CommandEvent::Output {
                        node: node.clone(),
                        stream,
                        data,
                    },
                    TaskEvent::Outcome(_) => continue,
                };
                let _ = progress.send(event);
            }
        })
    };
    let wait = Duration::from_secs(task.timeout_secs) + Duration::from_secs(30);
    let began = Instant::now();
    let answer = controller
        .dispatch_task(
            run_id,
            &node,
            task_id.clone(),
            TaskKind::Command(task),
            wait,
            Some(events_tx),
        )
        .await;
    if let Ok(mut tasks) = active.tasks.lock() {
        tasks.retain(|(_, id)| *id != task_id);
    }
    let _ = forward.await;
    let ran = started.load(Ordering::Relaxed);
    let result = match answer {
        Ok(TaskResult::Command {
            output,
            duration_ms,
        }) => from_output(&node, output, duration_ms),
        Ok(TaskResult::Failed { error }) => blank(&node, Status::Failed, error),
        Ok(TaskResult::Refused { reason }) => blank(
            &node,
            Status::Failed,
            format!("the agent refused it: {reason}"),
        ),
        Ok(_) => blank(
            &node,
            Status::Failed,
            "the agent answered something else".into(),
        ),
        Err(err) if ran => {
            let mut result = blank(
                &node,
                Status::TimedOut,
                format!("execution timed out: {err}"),
            );
            result.duration_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(0);
            result
        }
        Err(err) => blank(
            &node,
            Status::DeliveryTimedOut,
            format!("delivery timed out: {err}"),
        ),
    };
    status(result.status);
    result
}

fn from_output(node: &str, output: WireOutput, duration_ms: u64) -> NodeResult {
    let (status, message) = if output.cancelled {
        (
            Status::Cancelled,
            Some("cancelled while it ran".to_string()),
        )
    } else if output.timed_out {
        (
            Status::TimedOut,
            Some(format!("killed at its timeout after {duration_ms} ms")),
        )
    } else if output.exit_code == Some(0) {
        (Status::Success, None)
    } else {
        (
            Status::Failed,
            Some(match output.exit_code {
                Some(code) => format!("exited {code}"),
                None => "killed by a signal".to_string(),
            }),
        )
    };
    NodeResult {
        node: node.to_string(),
        status,
        exit_code: output.exit_code,
        duration_ms,
        stdout: output.stdout,
        stderr: output.stderr,
        stdout_bytes: output.stdout_bytes,
        stderr_bytes: output.stderr_bytes,
        message,
    }
}

/// The stored result of one node: the status and exit code in the message, the output
/// (saying when it was cut) as the result's text.
fn record(node: &NodeResult, argv: &[String]) -> ResultRecord {
    let mut summary = node.status.as_str().to_string();
    if let Some(code) = node.exit_code {
        summary.push_str(&format!(", exit {code}"));
    }
    if let Some(message) = &node.message {
        summary.push_str(&format!(": {message}"));
    }
    let mut output = String::new();
    for (name, text, total) in [
        ("stdout", &node.stdout, node.stdout_bytes),
        ("stderr", &node.stderr, node.stderr_bytes),
    ] {
        if text.is_empty() && total == 0 {
            continue;
        }
        output.push_str(&format!("--- {name}"));
        // The note gives no size: the kept text is redacted, so its length next to a total
        // would tell how long each secret in it is. Agents count a redacted stream's total
        // as shown (a secret as long as `(sensitive)`), so a total beyond the text is a cut.
        if total > OUTPUT_CAP as u64 || total > text.len() as u64 {
            output.push_str(&format!(" (cut to its first {} KiB)", OUTPUT_CAP / 1024));
        }
        output.push('\n');
        output.push_str(text);
        if !text.ends_with('\n') {
            output.push('\n');
        }
    }
    ResultRecord {
        node: node.node.clone(),
        resource: format!("command:{}", label(argv)),
        outcome: node.status.outcome(),
        file: None,
        line: None,
        column: None,
        diff: (!output.is_empty()).then_some(output),
        change: None,
        message: Some(summary),
        duration_ms: node.duration_ms,
        association: None,
        severity: model::ComplianceSeverity::Unspecified,
    }
}

/// The record of a command's result that arrived after its run ended.
pub fn late_record(node: &str, output: &WireOutput, duration_ms: u64) -> ResultRecord {
    let argv = output.argv.clone();
    record(&from_output(node, output.clone(), duration_ms), &argv)
}

/// The command as a short label.
fn label(argv: &[String]) -> String {
    let text = argv.join(" ");
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("2", "x", 1).unwrap(), Rate::Count(2));
        assert_eq!(parse_rate("50%", "x", 1).unwrap(), Rate::Percent(50));
        for bad in ["", "-1", "101%", "x", "2.5", "%", "0"] {
            assert!(parse_rate(bad, "x", 1).is_err(), "{bad}");
        }
        let err = parse_rate("x", "--max-errors", 0).unwrap_err().to_string();
        assert!(err.starts_with("--max-errors `x` is not a rate"), "{err}");
    }

    #[test]
    fn records_say_when_output_was_cut_without_sizes() {
        let result = |stdout: String, stdout_bytes: u64| NodeResult {
            node: "web-1".into(),
            status: Status::Success,
            exit_code: Some(0),
            duration_ms: 5,
            stdout,
            stderr: String::new(),
            stdout_bytes,
            stderr_bytes: 0,
            message: None,
        };
        let argv = ["echo".to_string(), "hi".to_string()];
        let cut = record(&result("x".repeat(65_525), 1_000_000), &argv);
        assert_eq!(cut.resource, "command:echo hi");
        assert_eq!(cut.outcome, ResultOutcome::Succeeded);
        assert_eq!(cut.message.as_deref(), Some("success, exit 0"));
        let diff = cut.diff.unwrap();
        assert!(
            diff.starts_with("--- stdout (cut to its first 64 KiB)\n"),
            "{diff}"
        );
        assert!(
            !diff.contains("65525") && !diff.contains("1000000"),
            "{diff}"
        );
        // An agent counts a redacted stream as shown, so a whole one is not taken for a cut.
        let whole = record(&result("(sensitive)\n".into(), 12), &argv);
        assert_eq!(whole.diff.unwrap(), "--- stdout\n(sensitive)\n");
    }
}
