//! Run records in the controller's store, and the results that arrive after their run ended.
//!
//! Every fleet run record is stored through [`store_run`]. A result delivered after its run
//! ended (the controller restarted, or the agent reconnected late) is recorded as run
//! `late-TASK_ID` ([`record_late`]); runs a previous controller left `running` are recorded as
//! `interrupted` at start ([`recover_interrupted`]). With a shared store, the runs recovered
//! are those whose coordinator's heartbeat stopped ([`DEAD_AFTER`]), at start and then
//! periodically ([`recover_orphans`]), never a live controller's.
//! **Architecture Invariant:** nothing an agent changed goes unreported, and nothing is
//! recorded twice.
//!
//! Everything here is synchronous and takes the store itself, not the controller: async
//! callers run it on a blocking thread (`Controller::store`), and the controller calls
//! [`record_late`] through the hook `serve` installs, without knowing runs. Its errors are the
//! store's ([`StoreError`]).

use std::sync::Arc;

use crate::engine::record;
use crate::fleet::controller::{Controller, DEAD_AFTER};
use crate::fleet::wire::TaskResult;
use crate::report::plan::{Style, done_word, parse_action};
use crate::store::{
    FleetStore, ResultOutcome, ResultRecord, RunKind, RunRecord, RunStatus, StoreError,
};

/// Records a run in the store; returns its human summary, or why it could not be stored.
pub(crate) fn store_run(
    store: &mut dyn FleetStore,
    record: &RunRecord,
) -> Result<String, StoreError> {
    store_run_again(store, record, false)
}

/// [`store_run`], for a try that may come after one whose commit's answer was lost
/// (`again`): a run already recorded whole is then this record.
pub(crate) fn store_run_again(
    store: &mut dyn FleetStore,
    record: &RunRecord,
    again: bool,
) -> Result<String, StoreError> {
    store
        .record_run_again(record, again)
        .inspect_err(|err| tracing::error!(run = %record.id, "recording the run: {err}"))?;
    let findings = store.findings(false).unwrap_or_default();
    Ok(crate::report::run::human(
        record,
        &findings,
        Style::new(false),
    ))
}

/// The results a task's answer stands for, without its catalog: what the agent did,
/// resource by resource (an apply), or the command's output. Nothing for a probe.
fn answer_results(node: &str, result: &TaskResult) -> Option<(RunKind, Vec<ResultRecord>)> {
    if let TaskResult::Command {
        output,
        duration_ms,
    } = result
    {
        let result = crate::fleet::command::late_record(node, output, *duration_ms);
        return Some((RunKind::Command, vec![result]));
    }
    let TaskResult::Applied { outcomes, .. } = result else {
        return None;
    };
    use crate::fleet::wire::WireOutcomeKind;
    let results = outcomes
        .iter()
        .map(|o| {
            let (outcome, message) = match &o.outcome {
                WireOutcomeKind::Unchanged => (ResultOutcome::Unchanged, None),
                WireOutcomeKind::Changed { .. } | WireOutcomeKind::Refreshed { .. } => {
                    (ResultOutcome::Changed, None)
                }
                WireOutcomeKind::Failed { error, .. } => {
                    (ResultOutcome::Failed, Some(error.clone()))
                }
                WireOutcomeKind::Skipped { because } => (
                    ResultOutcome::Skipped,
                    Some(format!("skipped because {because} failed")),
                ),
            };
            ResultRecord {
                node: node.to_string(),
                resource: o.id.clone(),
                outcome,
                file: None,
                line: None,
                column: None,
                diff: None,
                change: late_change(o),
                message,
                duration_ms: o.duration_ms,
                association: None,
                severity: crate::store::Severity::Unspecified,
            }
        })
        .collect();
    Some((RunKind::Apply, results))
}

/// What a late result keeps of a change: the action the agent reported and the word the
/// apply's output uses for it. The change's text stays with the plan, which a late result
/// no longer has.
fn late_change(outcome: &crate::fleet::wire::WireOutcome) -> Option<crate::store::ResultChange> {
    use crate::fleet::wire::WireOutcomeKind;
    let action = outcome.action.as_deref().and_then(parse_action);
    let done = match (&outcome.outcome, action) {
        (WireOutcomeKind::Refreshed { .. }, _) => "refreshed".to_string(),
        (WireOutcomeKind::Changed { refreshed, .. }, Some(action)) => {
            let word = done_word(action);
            if *refreshed {
                format!("{word} and refreshed")
            } else {
                word.to_string()
            }
        }
        _ => return None,
    };
    Some(crate::store::ResultChange {
        action: action.map_or("run", |a| a.as_str()).to_string(),
        done: Some(done),
        reason: None,
        n_cut_bytes: 0,
    })
}

/// Records a result that arrived after its run ended (the controller restarted, or the
/// agent reconnected late) as run `late-TASK_ID`: nothing an agent changed goes
/// unreported. Recording it twice is a no-op; `Err` when it could not be stored.
pub fn record_late(
    store: &mut dyn FleetStore,
    node: &str,
    task_id: &str,
    result: &TaskResult,
) -> Result<(), StoreError> {
    let Some((kind, results)) = answer_results(node, result) else {
        return Ok(());
    };
    let now = record::timestamp();
    let record = RunRecord {
        id: format!("late-{task_id}"),
        kind,
        started_at: now.clone(),
        finished_at: now,
        user: "agent".to_string(),
        project: format!("(result of task {task_id}, delivered after its run ended)"),
        documents_digest: String::new(),
        results,
        status: RunStatus::Complete,
    };
    if store.has_run(&record.id)? {
        return Ok(());
    }
    tracing::info!("recording the late result of task {task_id} from `{node}`");
    store_run(store, &record).map(|_| ())
}

/// Marks the runs a previous controller left `running` as `interrupted`, each with every
/// result that arrived before it stopped, and a skipped `task:ID` entry for each node whose
/// result had not (recorded as `late-ID` if its agent delivers it later). Called at start,
/// before agents connect.
///
/// With a shared store, only the runs whose coordinator wrote no heartbeat for
/// [`DEAD_AFTER`] (or that name none) are recovered, each once across all controllers; their
/// open tasks are abandoned first, so a result that comes later is recorded as late.
pub fn recover_interrupted(store: &mut dyn FleetStore) -> Result<usize, StoreError> {
    // Closed tasks a week old: their results were acknowledged then, and no agent keeps a
    // result that long after an acknowledgement (its ledger keeps ids a day).
    let week_ago = (chrono::Utc::now() - chrono::Duration::days(7))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let pruned = store.prune_tasks(&week_ago)?;
    if pruned > 0 {
        tracing::info!("forgot {pruned} task(s) closed more than a week ago");
    }
    if store.is_shared() {
        let grace = i64::try_from(DEAD_AFTER.as_millis()).unwrap_or(i64::MAX);
        let recovered = store.recover_orphaned_runs(grace, &mut interrupted_record)?;
        for id in &recovered {
            tracing::info!(
                "run {id} was interrupted: its coordinator stopped; recorded with the results that arrived"
            );
        }
        return Ok(recovered.len());
    }
    let unfinished = store.unfinished_runs()?;
    let count = unfinished.len();
    for unfinished in unfinished {
        let arrived = unfinished
            .tasks
            .iter()
            .filter(|t| t.result.is_some())
            .count();
        let run = interrupted_record(unfinished);
        tracing::info!(
            "run {} was interrupted by a controller stop: recorded with the {arrived} result(s) that arrived",
            run.id
        );
        store_run(store, &run)?;
    }
    Ok(count)
}

/// How often a controller of a shared store looks for runs whose coordinator died.
const ORPHANS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// With a shared store, recovers the runs of dead coordinators every [`ORPHANS_EVERY`], for
/// as long as the controller runs (returns at once for a store that is not shared).
pub async fn recover_orphans(controller: Arc<Controller>) {
    if !controller.is_shared() {
        return;
    }
    loop {
        tokio::time::sleep(ORPHANS_EVERY).await;
        if controller.is_stalled() {
            continue;
        }
        let recovered = controller
            .store(recover_interrupted)
            .await
            .map_err(|err| err.to_string())
            .and_then(|r| r.map_err(|err| err.to_string()));
        if let Err(err) = recovered {
            tracing::warn!("recovering the runs of stopped controllers: {err}");
        }
    }
}

/// The record of an interrupted run: the run as begun, with what each task's answer stands
/// for, or an entry saying why it is missing.
fn interrupted_record(unfinished: crate::store::UnfinishedRun) -> RunRecord {
    let crate::store::UnfinishedRun { mut run, tasks } = unfinished;
    for task in &tasks {
        let answer = task
            .result
            .as_deref()
            .and_then(|json| serde_json::from_str::<TaskResult>(json).ok());
        let results = answer
            .as_ref()
            .and_then(|answer| answer_results(&task.node, answer))
            .map(|(_, results)| results);
        match (answer.is_some(), results) {
            (_, Some(results)) => run.results.extend(results),
            (true, None) => run.results.push(interrupted_entry(
                &task.node,
                &task.id,
                "the node answered, but the controller stopped before comparing its answer",
            )),
            (false, _) => run.results.push(interrupted_entry(
                &task.node,
                &task.id,
                &format!(
                    "no result arrived before the controller stopped; if the agent delivers it later, it is recorded as run late-{}",
                    task.id
                ),
            )),
        }
    }
    run.finished_at = record::timestamp();
    run.status = RunStatus::Interrupted;
    run
}

/// The entry of an interrupted run for a node whose answer it does not hold.
fn interrupted_entry(node: &str, task_id: &str, message: &str) -> ResultRecord {
    ResultRecord {
        node: node.to_string(),
        resource: format!("task:{task_id}"),
        outcome: ResultOutcome::Skipped,
        file: None,
        line: None,
        column: None,
        diff: None,
        change: None,
        message: Some(message.to_string()),
        duration_ms: 0,
        association: None,
        severity: crate::store::Severity::Unspecified,
    }
}
