//! The run as versioned JSON for machines: every result with all its fields, compliance per
//! node and association, and the open findings. The shapes below map the store's records by
//! hand; renaming or removing a field is a breaking change that bumps [`FORMAT_VERSION`]
//! (adding one is not: `diff_cut_bytes`, `action`, `done` and `reason` came within version 1).

use serde::Serialize;

use crate::report::run::open_findings;
use crate::store::{Compliance, Finding, ResultOutcome, ResultRecord, RunRecord, Severity};

/// Version of the JSON run below; bump on a breaking change.
pub const FORMAT_VERSION: &str = "1";

/// Marks a JSON document as a stored run.
pub const RUN_KIND: &str = "steward-run";

#[derive(Serialize)]
struct JsonRun<'a> {
    format_version: &'static str,
    kind: &'static str,
    steward_version: &'static str,
    id: &'a str,
    /// `apply` or `drift`; `kind` names the document type, as in the plan JSON.
    run_kind: &'static str,
    /// `complete`, `running` or `interrupted`.
    status: &'static str,
    started_at: &'a str,
    finished_at: &'a str,
    user: &'a str,
    project: &'a str,
    documents_digest: &'a str,
    summary: JsonSummary,
    compliance: Vec<JsonCompliance>,
    results: Vec<JsonResult<'a>>,
    findings: Vec<JsonFinding<'a>>,
}

#[derive(Serialize)]
struct JsonSummary {
    total: usize,
    changed: usize,
    drifted: usize,
    failed: usize,
    skipped: usize,
    unchanged: usize,
    /// Command runs: commands that exited 0, were killed at their timeout, were cancelled.
    succeeded: usize,
    timed_out: usize,
    cancelled: usize,
    /// Fleet runs: resources of nodes never applied (drift), and of nodes not reached.
    pending: usize,
    unreachable: usize,
    compliant: bool,
}

#[derive(Serialize)]
struct JsonCompliance {
    node: String,
    association: Option<String>,
    compliant: bool,
    /// `COMPLIANT` or `NON_COMPLIANT`, SSM's spelling.
    status: &'static str,
    severity: Option<&'static str>,
    noncompliant: usize,
}

#[derive(Serialize)]
struct JsonResult<'a> {
    node: &'a str,
    resource: &'a str,
    outcome: &'static str,
    file: Option<&'a str>,
    line: Option<u32>,
    column: Option<u32>,
    diff: Option<&'a str>,
    /// Bytes of the change's text cut from `diff` (it keeps the first 64 KiB).
    diff_cut_bytes: u64,
    /// The plan's action for a changed or drifted resource: `create`, `update`, ...
    action: Option<&'a str>,
    /// How the apply said it did it: `created`, `updated and refreshed`, `restarted`.
    done: Option<&'a str>,
    /// Why the plan chose its action, when it said.
    reason: Option<&'a str>,
    message: Option<&'a str>,
    duration_ms: u64,
    association: Option<&'a str>,
    severity: &'static str,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    id: i64,
    node: &'a str,
    resource: &'a str,
    kind: &'static str,
    open: bool,
    severity: &'static str,
    first_seen: &'a str,
    last_seen: &'a str,
    count: u64,
    last_run: &'a str,
    message: &'a str,
    resolution: Option<&'a str>,
}

impl From<&Compliance> for JsonCompliance {
    fn from(entry: &Compliance) -> JsonCompliance {
        JsonCompliance {
            node: entry.node.clone(),
            association: entry.association.clone(),
            compliant: entry.compliant,
            status: if entry.compliant {
                "COMPLIANT"
            } else {
                "NON_COMPLIANT"
            },
            severity: entry.severity.map(Severity::as_str),
            noncompliant: entry.n_noncompliant,
        }
    }
}

impl<'a> From<&'a ResultRecord> for JsonResult<'a> {
    fn from(result: &'a ResultRecord) -> JsonResult<'a> {
        JsonResult {
            node: &result.node,
            resource: &result.resource,
            outcome: result.outcome.as_str(),
            file: result.file.as_deref(),
            line: result.line,
            column: result.column,
            diff: result.diff.as_deref(),
            diff_cut_bytes: result.change.as_ref().map_or(0, |c| c.n_cut_bytes),
            action: result.change.as_ref().map(|c| c.action.as_str()),
            done: result.change.as_ref().and_then(|c| c.done.as_deref()),
            reason: result.change.as_ref().and_then(|c| c.reason.as_deref()),
            message: result.message.as_deref(),
            duration_ms: result.duration_ms,
            association: result.association.as_deref(),
            severity: result.severity.as_str(),
        }
    }
}

impl<'a> From<&'a Finding> for JsonFinding<'a> {
    fn from(finding: &'a Finding) -> JsonFinding<'a> {
        JsonFinding {
            id: finding.id,
            node: &finding.node,
            resource: &finding.resource,
            kind: finding.kind.as_str(),
            open: finding.open,
            severity: finding.severity.as_str(),
            first_seen: &finding.first_seen,
            last_seen: &finding.last_seen,
            count: finding.count,
            last_run: &finding.last_run,
            message: &finding.message,
            resolution: finding.resolution.as_deref(),
        }
    }
}

/// The run as JSON (format version [`FORMAT_VERSION`], kind [`RUN_KIND`]): every result with
/// all its fields, compliance per node and association, and the open findings on this run's
/// resources. Absent values are `null`, never left out.
pub fn json(run: &RunRecord, findings: &[Finding]) -> String {
    let compliance = run.compliance();
    let json = JsonRun {
        format_version: FORMAT_VERSION,
        kind: RUN_KIND,
        steward_version: env!("CARGO_PKG_VERSION"),
        id: &run.id,
        run_kind: run.kind.as_str(),
        status: run.status.as_str(),
        started_at: &run.started_at,
        finished_at: &run.finished_at,
        user: &run.user,
        project: &run.project,
        documents_digest: &run.documents_digest,
        summary: JsonSummary {
            total: run.results.len(),
            changed: run.count(ResultOutcome::Changed),
            drifted: run.count(ResultOutcome::Drifted),
            failed: run.count(ResultOutcome::Failed),
            skipped: run.count(ResultOutcome::Skipped),
            unchanged: run.count(ResultOutcome::Unchanged),
            succeeded: run.count(ResultOutcome::Succeeded),
            timed_out: run.count(ResultOutcome::TimedOut),
            cancelled: run.count(ResultOutcome::Cancelled),
            pending: run.count(ResultOutcome::Pending),
            unreachable: run.count(ResultOutcome::Unreachable),
            compliant: compliance.iter().all(|c| c.compliant),
        },
        compliance: compliance.iter().map(JsonCompliance::from).collect(),
        results: run.results.iter().map(JsonResult::from).collect(),
        findings: open_findings(run, findings)
            .into_iter()
            .map(JsonFinding::from)
            .collect(),
    };
    // Serializing plain structs of strings and numbers into memory cannot fail.
    let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
    text.push('\n');
    text
}
