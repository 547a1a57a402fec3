//! The one place run records are built: the store's [`RunRecord`] and [`ResultRecord`] of
//! a plan observed (drift, an apply with nothing to do), of an apply's reports, and of a
//! node that never answered; with the ids, times and user a record carries.
//!
//! **Architecture Invariant:** records are built from the plans and reports alone, the same
//! way for local and fleet runs; nothing here reads the system or the store.

use crate::engine::{AgentError, Planned};
use crate::exec::RunReport;
use crate::model;
use crate::plan::PlannedChange;
use crate::resource::change::{Action, Change};
use crate::store::{ResultChange, ResultOutcome, ResultRecord, RunRecord};
use crate::validate::Validated;

/// The most of one change's text a record keeps: 64 KiB of it (cut at a line end), then a
/// note saying how much was left out. The live plan showed it whole.
pub const MAX_STORED_DIFF_BYTES: usize = 64 * 1024;

/// The most change text one run keeps in all (8 MiB): past it, a change keeps only a note. A
/// cold apply of thousands of files would otherwise store every file's content once more, in
/// each of the runs the store keeps.
pub const MAX_STORED_RUN_DIFF_BYTES: usize = 8 * 1024 * 1024;

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
pub(super) fn location(
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
        change: None,
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
    mut results: Vec<ResultRecord>,
) -> RunRecord {
    cap_run_diffs(&mut results, MAX_STORED_RUN_DIFF_BYTES);
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
                    // A refusal is no reading error: its message already says what it is.
                    result.message = Some(match change.refusal() {
                        Some(_) => message.clone(),
                        None => format!("cannot read: {message}"),
                    });
                    result
                }
                Ok(diff) if diff.is_change() => {
                    let mut result =
                        record(validated, &node_plan.node, res, ResultOutcome::Drifted);
                    let (text, n_cut_bytes) = stored_text(validated, diff, res);
                    result.diff = text;
                    result.change = Some(ResultChange {
                        action: change.action().as_str().to_string(),
                        done: None,
                        reason: diff.reason.clone(),
                        n_cut_bytes,
                    });
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
        let mut changes: Vec<Option<&PlannedChange>> = vec![None; node.resources.len()];
        for planned in &node_plan.changes {
            if let Some(slot) = changes.get_mut(planned.resource) {
                *slot = Some(planned);
            }
        }
        // Thousands of results after a large apply: built in parallel, kept in order.
        use rayon::prelude::*;
        let node_results: Vec<ResultRecord> = report
            .outcomes
            .par_iter()
            .map(|outcome| {
                let res = &node.resources[outcome.resource];
                let planned = changes.get(outcome.resource).copied().flatten();
                let (kind, message) = match &outcome.outcome {
                    Outcome::Unchanged => (ResultOutcome::Unchanged, None),
                    Outcome::Changed { .. } | Outcome::Refreshed { .. } => {
                        (ResultOutcome::Changed, None)
                    }
                    Outcome::Failed { error, output } => {
                        let tail = output
                            .as_ref()
                            .map(|o| o.stderr.trim().to_string())
                            .filter(|t| !t.is_empty());
                        let message = match tail {
                            Some(tail) => format!("{error}\n{tail}"),
                            None => error.clone(),
                        };
                        (ResultOutcome::Failed, Some(message))
                    }
                    Outcome::Skipped { because } => (
                        ResultOutcome::Skipped,
                        Some(format!("skipped because {because} failed")),
                    ),
                };
                let mut result = record(validated, &report.node, res, kind);
                if kind == ResultOutcome::Changed {
                    let (text, change) = applied_change(validated, outcome, planned, res);
                    result.diff = text;
                    result.change = Some(change);
                }
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

/// What a changed resource's record keeps of its change: the text the plan showed for it and
/// the action and words the apply's output showed.
fn applied_change(
    validated: &Validated,
    outcome: &crate::exec::ResourceOutcome,
    planned: Option<&PlannedChange>,
    res: &model::Resource,
) -> (Option<String>, ResultChange) {
    use crate::exec::Outcome;
    let change = planned.and_then(|p| p.change.as_ref().ok());
    let (text, n_cut_bytes) = match change {
        Some(change) => stored_text(validated, change, res),
        None => (None, 0),
    };
    let reason = change.and_then(|c| c.reason.clone());
    // Worded as `report::plan::human_apply` words it.
    let (action, done) = match &outcome.outcome {
        Outcome::Refreshed { .. } => {
            let words = planned.map_or(crate::resource::RefreshWords::RUN, |p| p.refresh_words);
            (Action::Run, words.done.to_string())
        }
        Outcome::Changed { refreshed, .. } => {
            let action = outcome
                .action
                .or(change.map(|c| c.action))
                .filter(|a| *a != Action::NoOp)
                .unwrap_or(Action::Update);
            let word = crate::report::plan::done_word(action);
            let done = if *refreshed {
                format!("{word} and refreshed")
            } else {
                word.to_string()
            };
            (action, done)
        }
        _ => (
            Action::Update,
            crate::report::plan::done_word(Action::Update).to_string(),
        ),
    };
    let change = ResultChange {
        action: action.as_str().to_string(),
        done: Some(done),
        reason,
        n_cut_bytes,
    };
    (text, change)
}

/// A change's text as a record keeps it: rendered by the plan's renderer (sensitive values
/// already `(sensitive)`), any secret left scrubbed, then cut to [`MAX_STORED_DIFF_BYTES`] at a
/// line end with a note; and how many bytes were cut. The sizes are of the scrubbed text, so
/// they tell nothing of a secret's length.
fn stored_text(
    validated: &Validated,
    change: &Change,
    res: &model::Resource,
) -> (Option<String>, u64) {
    let text = crate::report::plan::change_text(change, res);
    let text = if validated.model.secrets.is_empty() {
        text
    } else {
        model::scrub(&text, &validated.model.secrets)
    };
    if text.is_empty() {
        return (None, 0);
    }
    let (kept, n_cut_bytes) = cap_text(text, MAX_STORED_DIFF_BYTES);
    (Some(kept), n_cut_bytes)
}

/// `text` cut to at most `max_bytes` at its last line end within them (or at a character
/// boundary when its first line is longer), with a note on a line of its own saying how many
/// lines and bytes were left out; and that number of bytes.
fn cap_text(mut text: String, max_bytes: usize) -> (String, u64) {
    if text.len() <= max_bytes {
        return (text, 0);
    }
    let end = match memchr::memrchr(b'\n', &text.as_bytes()[..max_bytes]) {
        Some(end) => end,
        None => {
            let mut end = max_bytes;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            end
        }
    };
    let rest = &text[end..];
    let rest = rest.strip_prefix('\n').unwrap_or(rest);
    let n_cut_bytes = rest.len();
    let n_cut_lines = rest.lines().count();
    text.truncate(end);
    let lines = if n_cut_lines == 1 { "line" } else { "lines" };
    text.push_str(&format!(
        "\n... {n_cut_lines} more {lines} ({n_cut_bytes} bytes) not kept: a stored run keeps the first 64 KiB of a change"
    ));
    (text, u64::try_from(n_cut_bytes).unwrap_or(u64::MAX))
}

/// Keeps the change texts of a run's results, in plan order, while they fit in `max_bytes` in
/// all; each one past that becomes a note saying how many bytes were not kept.
fn cap_run_diffs(results: &mut [ResultRecord], max_bytes: usize) {
    let mut n_kept_bytes = 0usize;
    for result in results.iter_mut() {
        // Only changes: a command's output has caps of its own.
        let (Some(change), Some(diff)) = (result.change.as_mut(), result.diff.as_mut()) else {
            continue;
        };
        if n_kept_bytes + diff.len() <= max_bytes {
            n_kept_bytes += diff.len();
            continue;
        }
        // A text cut to its own cap ends with a note, which is not change text.
        let text_len = if change.n_cut_bytes > 0 {
            diff.rfind('\n').unwrap_or(diff.len())
        } else {
            diff.len()
        };
        change.n_cut_bytes = change
            .n_cut_bytes
            .saturating_add(u64::try_from(text_len).unwrap_or(u64::MAX));
        *diff = format!(
            "... {} bytes not kept: a stored run keeps 8 MiB of changes in all",
            change.n_cut_bytes
        );
    }
}

/// A result per resource of a node that did not do its task, with the reason: unreachable
/// when it could not be reached (its node's one finding says so), skipped when it was never
/// asked or refused the task as a whole (nothing was done), failed otherwise.
pub fn node_failure(
    validated: &Validated,
    node: &model::Node,
    err: &AgentError,
) -> Vec<ResultRecord> {
    let (outcome, why) = match err {
        AgentError::Offline(_) | AgentError::Unreachable(_) => {
            (ResultOutcome::Unreachable, "could not be reached")
        }
        AgentError::NotStarted(_) => (ResultOutcome::Skipped, "was not asked"),
        AgentError::Refused(_) => (ResultOutcome::Skipped, "refused the task as a whole"),
        AgentError::Failed(_) | AgentError::Io { .. } => (ResultOutcome::Failed, "failed"),
    };
    let message = model::scrub(
        &format!("node `{}` {why}: {err}", node.name),
        &validated.model.secrets,
    );
    node.resources
        .iter()
        .map(|res| {
            let mut record = record(validated, &node.name, res, outcome);
            record.message = Some(message.clone());
            record
        })
        .collect()
}

/// Marks a drift record's resources on nodes never applied as `pending` rather than
/// `drifted` (SSM's Pending: nothing was asked of them yet). Their diffs stay: what the
/// first apply will do.
pub fn mark_pending(record: &mut RunRecord, never_applied: &[&str]) {
    for result in &mut record.results {
        if result.outcome == ResultOutcome::Drifted && never_applied.contains(&result.node.as_str())
        {
            result.outcome = ResultOutcome::Pending;
            result.message = Some(format!(
                "pending: node `{}` was never applied; drift is checked after its first apply",
                result.node
            ));
        }
    }
}

/// Per node, per outcome, how many of its results have it: one pass over the record
/// (a fleet run holds nodes × resources results).
pub fn node_counts(
    record: &RunRecord,
) -> std::collections::HashMap<&str, std::collections::BTreeMap<ResultOutcome, usize>> {
    let mut counts: std::collections::HashMap<&str, std::collections::BTreeMap<_, usize>> =
        std::collections::HashMap::new();
    for result in &record.results {
        *counts
            .entry(result.node.as_str())
            .or_default()
            .entry(result.outcome)
            .or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunKind, RunStatus, Severity};

    fn result(node: &str, resource: &str, outcome: ResultOutcome) -> ResultRecord {
        ResultRecord {
            node: node.into(),
            resource: resource.into(),
            outcome,
            file: None,
            line: None,
            column: None,
            diff: Some("+ content".into()),
            change: None,
            message: None,
            duration_ms: 0,
            association: None,
            severity: Severity::Unspecified,
        }
    }

    fn drift(results: Vec<ResultRecord>) -> RunRecord {
        RunRecord {
            id: "r".into(),
            kind: RunKind::Drift,
            started_at: String::new(),
            finished_at: String::new(),
            user: "u".into(),
            project: "p".into(),
            documents_digest: "d".into(),
            results,
            status: RunStatus::Complete,
        }
    }

    #[test]
    fn drift_on_a_node_never_applied_is_pending_and_counted_so() {
        let mut record = drift(vec![
            result("new", "file:/a", ResultOutcome::Drifted),
            result("new", "file:/b", ResultOutcome::Unchanged),
            result("new", "file:/c", ResultOutcome::Failed),
            result("old", "file:/a", ResultOutcome::Drifted),
        ]);
        mark_pending(&mut record, &["new"]);
        let outcomes: Vec<ResultOutcome> = record.results.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [
                ResultOutcome::Pending,
                ResultOutcome::Unchanged,
                ResultOutcome::Failed,
                ResultOutcome::Drifted
            ]
        );
        // What the first apply will do stays.
        assert_eq!(record.results[0].diff.as_deref(), Some("+ content"));
        assert!(
            record.results[0]
                .message
                .as_deref()
                .unwrap()
                .contains("never applied")
        );
        let counts = node_counts(&record);
        assert_eq!(counts["new"][&ResultOutcome::Pending], 1);
        assert_eq!(counts["new"][&ResultOutcome::Failed], 1);
        assert!(!counts["new"].contains_key(&ResultOutcome::Drifted));
        assert_eq!(counts["old"][&ResultOutcome::Drifted], 1);
        // Not known to be compliant.
        let compliance = record.compliance();
        assert!(!compliance[0].compliant);
        assert_eq!(compliance[0].n_noncompliant, 2);
    }

    #[test]
    fn a_long_change_text_is_cut_at_a_line_end_with_a_note() {
        assert_eq!(cap_text("a\nb".to_string(), 3), ("a\nb".to_string(), 0));
        let (kept, n_cut) = cap_text("one\ntwo\nthree\n".to_string(), 9);
        assert_eq!(n_cut, 6);
        assert_eq!(
            kept,
            "one\ntwo\n... 1 more line (6 bytes) not kept: a stored run keeps the first 64 KiB of a change"
        );
        // A first line longer than the cap is cut inside it, at a character boundary.
        let (kept, n_cut) = cap_text("ééé\nx".to_string(), 3);
        assert!(kept.starts_with("é\n... 2 more lines (6 bytes)"), "{kept}");
        assert_eq!(n_cut, 6);
    }

    #[test]
    fn a_run_keeps_change_texts_up_to_its_budget() {
        let result = |diff: &str, n_cut_bytes: u64| ResultRecord {
            node: "local".into(),
            resource: "file:/x".into(),
            outcome: ResultOutcome::Changed,
            file: None,
            line: None,
            column: None,
            diff: Some(diff.into()),
            change: Some(ResultChange {
                action: "create".into(),
                done: Some("created".into()),
                reason: None,
                n_cut_bytes,
            }),
            message: None,
            duration_ms: 0,
            association: None,
            severity: crate::store::Severity::Unspecified,
        };
        let mut command = result("--- stdout\nxxxxxxxxxx", 0);
        command.change = None;
        let mut results = vec![
            result("123456", 0),
            command,
            result("1234", 0),
            result("ab\n... 1 more line (3 bytes) not kept", 3),
            result("1", 0),
        ];
        cap_run_diffs(&mut results, 8);
        let diffs: Vec<(&str, u64)> = results
            .iter()
            .map(|r| {
                let cut = r.change.as_ref().map_or(0, |c| c.n_cut_bytes);
                (r.diff.as_deref().unwrap_or_default(), cut)
            })
            .collect();
        let note =
            |n: u64| format!("... {n} bytes not kept: a stored run keeps 8 MiB of changes in all");
        assert_eq!(
            diffs,
            [
                ("123456", 0),
                ("--- stdout\nxxxxxxxxxx", 0),
                (note(4).as_str(), 4),
                (note(5).as_str(), 5),
                ("1", 0),
            ]
        );
    }
}
