//! Stored runs rendered for people, CI and code hosts.
//!
//! Owns five renderings of a [`RunRecord`], one file each: [`human()`] text (`human.rs`),
//! versioned [`json()`] (`json.rs`), [`junit()`] XML for test-report viewers (`junit.rs`),
//! [`sarif()`] 2.1.0 for code-scanning annotations (`sarif.rs`), and [`markdown()`] for a
//! pull-request comment or a CI job summary (`markdown.rs`); plus the [`runs_table`] and
//! [`findings_table`] listings (`tables.rs`). This file holds what several formats share: the
//! order outcomes are listed in, a result's location, the open findings on a run, and the text
//! of a failure.
//!
//! **Architecture Invariant:** every function here is pure: it takes records and returns a
//! `String`. Reading the store, choosing the run and writing files belong to `cli`. The store
//! types never derive `Serialize`; the wire shapes in the format files map them by hand
//! (docs/architecture.md). A format's own helpers stay in its file; only what two formats use lives here.
//!
//! ```
//! use steward::report::run;
//! use steward::store::{RunKind, RunRecord};
//!
//! let run = RunRecord {
//!     id: "r1".into(),
//!     kind: RunKind::Drift,
//!     started_at: "2026-01-01T00:00:00Z".into(),
//!     finished_at: "2026-01-01T00:00:01Z".into(),
//!     user: "ci".into(),
//!     project: ".".into(),
//!     documents_digest: "d".into(),
//!     results: Vec::new(),
//!     status: steward::store::RunStatus::Complete,
//! };
//! assert!(run::json(&run, &[]).contains("\"format_version\": \"1\""));
//! ```

use std::fmt::Write;

use crate::store::{Finding, FindingKind, ResultOutcome, ResultRecord, RunKind, RunRecord};

mod human;
mod json;
mod junit;
mod markdown;
mod sarif;
mod tables;

pub use self::human::human;
pub use self::json::{FORMAT_VERSION, RUN_KIND, json};
pub use self::junit::junit;
pub use self::markdown::{MAX_MARKDOWN_BYTES, markdown};
pub use self::sarif::{SARIF_SCHEMA, SARIF_VERSION, sarif};
pub use self::tables::{findings_table, runs_table};

/// Outcomes in the order reports list them: what moved first, unchanged last.
const REPORT_ORDER: [ResultOutcome; 5] = [
    ResultOutcome::Changed,
    ResultOutcome::Drifted,
    ResultOutcome::Failed,
    ResultOutcome::Skipped,
    ResultOutcome::Unchanged,
];

/// The same for a command run (Run Command's statuses).
const COMMAND_ORDER: [ResultOutcome; 5] = [
    ResultOutcome::Succeeded,
    ResultOutcome::Failed,
    ResultOutcome::TimedOut,
    ResultOutcome::Cancelled,
    ResultOutcome::Skipped,
];

/// The outcomes a run's counts show: [`REPORT_ORDER`] (or [`COMMAND_ORDER`]), then
/// `pending` and `unreachable` when a fleet run has any.
fn report_order(run: &RunRecord) -> Vec<ResultOutcome> {
    if run.kind == RunKind::Command {
        return COMMAND_ORDER.to_vec();
    }
    let mut order = REPORT_ORDER.to_vec();
    for outcome in [ResultOutcome::Pending, ResultOutcome::Unreachable] {
        if run.count(outcome) > 0 {
            order.push(outcome);
        }
    }
    order
}

/// `file:line:column` as far as it is known.
fn location(result: &ResultRecord) -> Option<String> {
    let file = result.file.as_deref()?;
    Some(match (result.line, result.column) {
        (Some(line), Some(column)) => format!("{file}:{line}:{column}"),
        (Some(line), None) => format!("{file}:{line}"),
        _ => file.to_string(),
    })
}

/// Open findings about a resource this run saw, or about one of its nodes, in the order
/// given.
fn open_findings<'a>(run: &RunRecord, findings: &'a [Finding]) -> Vec<&'a Finding> {
    let seen: std::collections::HashSet<(&str, &str)> = run
        .results
        .iter()
        .map(|r| (r.node.as_str(), r.resource.as_str()))
        .collect();
    let nodes: std::collections::HashSet<&str> = seen.iter().map(|(node, _)| *node).collect();
    findings
        .iter()
        .filter(|f| {
            // A node's own finding (unreachable) is about each of its results.
            f.open
                && if f.kind == FindingKind::Unreachable {
                    nodes.contains(f.node.as_str())
                } else {
                    seen.contains(&(f.node.as_str(), f.resource.as_str()))
                }
        })
        .collect()
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The message, then the diff, as one text block.
fn failure_text(result: &ResultRecord) -> String {
    let mut text = String::new();
    if let Some(message) = result.message.as_deref().filter(|m| !m.is_empty()) {
        text.push_str(message);
        if !message.ends_with('\n') {
            text.push('\n');
        }
    }
    if let Some(diff) = result.diff.as_deref().filter(|d| !d.is_empty()) {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(diff);
        if !diff.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}

/// A stored document path as a relative URI reference: no leading `./`, `\` as `/`, and
/// anything outside RFC 3986's path characters percent-encoded.
fn relative_uri_path(file: &str) -> String {
    let mut path = file.replace('\\', "/");
    while let Some(rest) = path.strip_prefix("./") {
        path = rest.to_string();
    }
    let mut res = String::with_capacity(path.len());
    for byte in path.bytes() {
        let allowed = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte);
        if allowed {
            res.push(char::from(byte));
        } else {
            let _ = write!(res, "%{byte:02X}");
        }
    }
    res
}
