//! The one place run records are built: the store's [`RunRecord`] and [`ResultRecord`] of
//! a plan observed (drift, an apply with nothing to do), of an apply's reports, and of a
//! node that never answered; with the ids, times and user a record carries.
//!
//! **Architecture Invariant:** records are built from the plans and reports alone, the same
//! way for local and fleet runs; nothing here reads the system or the store.

use crate::engine::{AgentError, Planned};
use crate::exec::RunReport;
use crate::model;
use crate::store::{ResultOutcome, ResultRecord, RunRecord};
use crate::validate::Validated;

/// A fresh id for a run: UTC time and process id.
pub fn run_id() -> String {
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    )
}

/// The current time as records keep it (RFC 3339, UTC, milliseconds).
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Who is running steward.
pub fn user() -> String {
    let uid = nix::unistd::getuid();
    std::env::var("USER")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|user| user.name)
        })
        .unwrap_or_else(|| uid.to_string())
}

/// Where a resource is declared, as the store keeps it: the document relative to the
/// project's root, so a local and a fleet run of one project name it alike, wherever
/// steward ran.
fn location(
    validated: &Validated,
    res: &model::Resource,
) -> (Option<String>, Option<u32>, Option<u32>) {
    let source = validated.project.sources.get(res.span.source);
    // A standard-library module is not a file of the user's repository.
    let Some(path) = &source.path else {
        return (None, None, None);
    };
    let at = source.line_col(res.span.start);
    let name = match path.strip_prefix(&validated.project.root) {
        Ok(relative) => without_dot_segments(relative).display().to_string(),
        Err(_) => source
            .name
            .strip_prefix("./")
            .unwrap_or(&source.name)
            .to_string(),
    };
    (
        Some(name),
        u32::try_from(at.line).ok(),
        u32::try_from(at.column).ok(),
    )
}

/// `a/./b/../c` as `a/c`: a module reached through `..` (which stays inside the project) is
/// named by the path a reader would write.
fn without_dot_segments(path: &std::path::Path) -> std::path::PathBuf {
    use std::path::Component;
    let mut res = std::path::PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(res.components().next_back(), Some(Component::Normal(_))) =>
            {
                res.pop();
            }
            other => res.push(other),
        }
    }
    res
}

/// The severity of a resource's association (unspecified without one).
fn severity(validated: &Validated, res: &model::Resource) -> crate::store::Severity {
    res.association
        .as_ref()
        .and_then(|name| {
            validated
                .model
                .associations
                .iter()
                .find(|a| &a.name == name)
        })
        .map_or(crate::store::Severity::Unspecified, |a| {
            a.compliance_severity
        })
}

/// One resource's result, with where it is declared and its association's severity;
/// the caller sets the diff, message and duration.
pub fn record(
    validated: &Validated,
    node: &str,
    res: &model::Resource,
    outcome: crate::store::ResultOutcome,
) -> ResultRecord {
    let (file, line, column) = location(validated, res);
    ResultRecord {
        node: node.to_string(),
        resource: res.id.to_string(),
        outcome,
        file,
        line,
        column,
        diff: None,
        message: None,
        duration_ms: 0,
        association: res.association.clone(),
        severity: severity(validated, res),
    }
}

/// A run's record around its results: who ran it, when it ended, the documents digest.
fn run_record(
    kind: crate::store::RunKind,
    planned: &Planned<'_>,
    id: &str,
    started_at: &str,
    project: &str,
    results: Vec<ResultRecord>,
) -> RunRecord {
    RunRecord {
        id: id.to_string(),
        kind,
        started_at: started_at.to_string(),
        finished_at: timestamp(),
        user: user(),
        project: project.to_string(),
        documents_digest: planned.digest.clone(),
        results,
        status: crate::store::RunStatus::Complete,
    }
}

/// A run from observation alone (a drift check, or an apply with nothing to do): every
/// resource whose observed state differs from its desired state drifted.
pub fn observed_record(
    kind: crate::store::RunKind,
    validated: &Validated,
    planned: &Planned<'_>,
    id: &str,
    started_at: &str,
    project: &str,
) -> RunRecord {
    let mut results = Vec::new();
    for (node_plan, node) in planned.node_plans() {
        for change in &node_plan.changes {
            let res = &node.resources[change.resource];
            let mut result = match &change.change {
                Err(message) => {
                    let mut result = record(validated, &node_plan.node, res, ResultOutcome::Failed);
                    result.message = Some(format!("cannot read: {message}"));
                    result
                }
                Ok(diff) if diff.is_change() => {
                    let mut result =
                        record(validated, &node_plan.node, res, ResultOutcome::Drifted);
                    result.diff = Some(crate::report::plan::change_text(diff, res));
                    result
                }
                Ok(_) => record(validated, &node_plan.node, res, ResultOutcome::Unchanged),
            };
            result.message = result
                .message
                .map(|m| model::scrub(&m, &validated.model.secrets));
            results.push(result);
        }
    }
    run_record(kind, planned, id, started_at, project, results)
}

/// An apply run: each resource's outcome, with the change it made or why it failed.
pub fn apply_record(
    validated: &Validated,
    planned: &Planned<'_>,
    reports: &[RunReport],
    id: &str,
    started_at: &str,
    project: &str,
) -> RunRecord {
    use crate::exec::Outcome;
    let mut results = Vec::new();
    for ((report, node), node_plan) in reports.iter().zip(&planned.nodes).zip(&planned.plan.nodes) {
        // Each resource's planned change by resource index: one lookup per outcome, not a
        // scan of the plan (quadratic in a cold apply of thousands of files).
        let mut changes = vec![None; node.resources.len()];
        for planned in &node_plan.changes {
            if let (Some(slot), Ok(change)) = (changes.get_mut(planned.resource), &planned.change) {
                *slot = Some(change);
            }
        }
        // Thousands of results after a large apply: built in parallel, kept in order.
        use rayon::prelude::*;
        let node_results: Vec<ResultRecord> = report
            .outcomes
            .par_iter()
            .map(|outcome| {
                let res = &node.resources[outcome.resource];
                let change = changes.get(outcome.resource).copied().flatten();
                let (kind, diff, message) = match &outcome.outcome {
                    Outcome::Unchanged => (ResultOutcome::Unchanged, None, None),
                    Outcome::Changed { .. } | Outcome::Refreshed { .. } => (
                        ResultOutcome::Changed,
                        change.map(|c| crate::report::plan::change_summary(c, res)),
                        None,
                    ),
                    Outcome::Failed { error, output } => {
                        let tail = output
                            .as_ref()
                            .map(|o| o.stderr.trim().to_string())
                            .filter(|t| !t.is_empty());
                        let message = match tail {
                            Some(tail) => format!("{error}\n{tail}"),
                            None => error.clone(),
                        };
                        (ResultOutcome::Failed, None, Some(message))
                    }
                    Outcome::Skipped { because } => (
                        ResultOutcome::Skipped,
                        None,
                        Some(format!("skipped because {because} failed")),
                    ),
                };
                let mut result = record(validated, &report.node, res, kind);
                result.diff = diff;
                result.message = message.map(|m| model::scrub(&m, &validated.model.secrets));
                result.duration_ms =
                    u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX);
                result
            })
            .collect();
        results.extend(node_results);
    }
    run_record(
        crate::store::RunKind::Apply,
        planned,
        id,
        started_at,
        project,
        results,
    )
}

/// A result per resource of a node that never answered: failed (or skipped when it was
/// never started), with the reason.
pub fn node_failure(
    validated: &Validated,
    node: &model::Node,
    err: &AgentError,
) -> Vec<ResultRecord> {
    let outcome = if matches!(err, AgentError::NotStarted(_)) {
        ResultOutcome::Skipped
    } else {
        ResultOutcome::Failed
    };
    node.resources
        .iter()
        .map(|res| {
            let mut record = record(validated, &node.name, res, outcome);
            record.message = Some(format!("node `{}`: {err}", node.name));
            record
        })
        .collect()
}
