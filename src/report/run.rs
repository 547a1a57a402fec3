//! Stored runs rendered for people, CI and code hosts.
//!
//! Owns five renderings of a [`RunRecord`]: [`human`] text, versioned [`json`], [`junit`] XML
//! for test-report viewers, [`sarif`] 2.1.0 for code-scanning annotations, and [`markdown`] for
//! a pull-request comment or a CI job summary.
//!
//! **Architecture Invariant:** every function here is pure: it takes records and returns a
//! `String`. Reading the store, choosing the run and writing files belong to `cli`. The store
//! types never derive `Serialize`; the wire shapes below map them by hand (STYLE 1.3).
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
use std::time::Duration;

use serde::Serialize;

use crate::report::plan::Style;
use crate::store::{
    Compliance, Finding, FindingKind, ResultOutcome, ResultRecord, RunKind, RunRecord, Severity,
};

/// Version of the JSON run below; bump on a breaking change.
pub const FORMAT_VERSION: &str = "1";

/// Marks a JSON document as a stored run.
pub const RUN_KIND: &str = "steward-run";

/// The `$schema` written into SARIF logs.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The SARIF version written.
pub const SARIF_VERSION: &str = "2.1.0";

/// Upper bound on the Markdown report. GitHub caps comments at 65,536 characters and job
/// summaries at 1 MiB; staying under 60 KB leaves room for whatever a CI step wraps around it.
pub const MAX_MARKDOWN_BYTES: usize = 60_000;

/// Longest diff (or message) shown in one Markdown block before it is cut at a line boundary.
const MAX_MARKDOWN_DIFF_BYTES: usize = 8_000;

/// Room kept at the end of the Markdown budget for the closing note.
const MARKDOWN_TAIL_BYTES: usize = 1_000;

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

fn report_order(run: &RunRecord) -> &'static [ResultOutcome; 5] {
    if run.kind == RunKind::Command {
        &COMMAND_ORDER
    } else {
        &REPORT_ORDER
    }
}

// ---------------------------------------------------------------------------------------------
// Human

/// The run for people: a header, per node what did not stay unchanged (with diffs), compliance,
/// the open findings on this run's resources, and a summary line.
pub fn human(run: &RunRecord, findings: &[Finding], style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Run {} ({})", run.id, run.kind.as_str());
    match run.status {
        crate::store::RunStatus::Complete => {}
        crate::store::RunStatus::Running => {
            let _ = writeln!(
                out,
                "  status:   running (the results so far are not shown)"
            );
        }
        crate::store::RunStatus::Interrupted => {
            let _ = writeln!(
                out,
                "  status:   interrupted (the controller stopped during this run; it holds the results that arrived)"
            );
        }
    }
    let _ = writeln!(out, "  started:  {}", run.started_at);
    let _ = writeln!(out, "  finished: {}", run.finished_at);
    let _ = writeln!(out, "  user:     {}", run.user);
    let _ = writeln!(out, "  project:  {}", run.project);
    out.push('\n');

    for node in run.nodes() {
        let results: Vec<&ResultRecord> = run.results.iter().filter(|r| r.node == node).collect();
        let moved: Vec<&ResultRecord> = results
            .iter()
            .copied()
            .filter(|r| r.outcome != ResultOutcome::Unchanged)
            .collect();
        if moved.is_empty() {
            let _ = writeln!(
                out,
                "{node}: {} unchanged",
                count(results.len(), "resource")
            );
            continue;
        }
        let n_unchanged = results.len() - moved.len();
        let _ = writeln!(out, "{node}:");
        for result in moved {
            human_result(&mut out, result, style);
        }
        if n_unchanged > 0 {
            let _ = writeln!(out, "  ({n_unchanged} unchanged)");
        }
    }

    let compliance = run.compliance();
    if !compliance.is_empty() {
        out.push_str("\nCompliance:\n");
        for entry in &compliance {
            let status = if entry.compliant {
                paint(style, GREEN, "COMPLIANT")
            } else {
                let severity = entry.severity.unwrap_or(Severity::Unspecified).as_str();
                paint(style, RED, &format!("NON-COMPLIANT ({severity})"))
            };
            let mut line = format!("  {}: {status}", compliance_subject(entry));
            if !entry.compliant {
                let _ = write!(line, ", {} non-compliant", entry.n_noncompliant);
            }
            let _ = writeln!(out, "{line}");
        }
    }

    let open = open_findings(run, findings);
    if !open.is_empty() {
        out.push_str("\nOpen findings:\n");
        for finding in open {
            let _ = writeln!(
                out,
                "  #{} {} {} on {} ({}): seen {} since {}, last in run {}",
                finding.id,
                finding.kind.as_str(),
                finding.resource,
                finding.node,
                finding.severity.as_str(),
                times(finding.count),
                finding.first_seen,
                finding.last_run
            );
            if !finding.message.is_empty() {
                for line in finding.message.lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }

    let counts: Vec<String> = report_order(run)
        .iter()
        .map(|outcome| format!("{} {}", run.count(*outcome), outcome.as_str()))
        .collect();
    let _ = writeln!(out, "\nRun: {}.", counts.join(", "));
    out
}

fn human_result(out: &mut String, result: &ResultRecord, style: Style) {
    let (marker, code) = match result.outcome {
        ResultOutcome::Changed => ("~", YELLOW),
        ResultOutcome::Drifted => ("!", MAGENTA),
        ResultOutcome::Failed => ("x", RED),
        ResultOutcome::Skipped | ResultOutcome::Cancelled => ("o", YELLOW),
        ResultOutcome::Unchanged => (" ", ""),
        ResultOutcome::Succeeded => ("+", GREEN),
        ResultOutcome::TimedOut => ("x", RED),
    };
    let mut head = format!(
        "  {} {}: {}",
        paint(style, code, marker),
        result.resource,
        result.outcome.as_str()
    );
    if let Some(location) = location(result) {
        let _ = write!(head, " ({location})");
    }
    // A one-line message reads best on the resource's own line; longer ones get their own lines.
    let message = result.message.as_deref().filter(|m| !m.is_empty());
    match message {
        Some(message) if !message.contains('\n') => {
            let _ = write!(head, ": {message}");
            let _ = writeln!(out, "{head}");
        }
        Some(message) => {
            let _ = writeln!(out, "{head}:");
            for line in message.lines() {
                let _ = writeln!(out, "      {line}");
            }
        }
        None => {
            let _ = writeln!(out, "{head}");
        }
    }
    if let Some(diff) = result.diff.as_deref() {
        for line in diff.lines() {
            let painted = match line.as_bytes().first() {
                Some(b'+') if !line.starts_with("+++") => paint(style, GREEN, line),
                Some(b'-') if !line.starts_with("---") => paint(style, RED, line),
                Some(b'@') => paint(style, CYAN, line),
                _ => line.to_string(),
            };
            let _ = writeln!(out, "      {painted}");
        }
    }
}

const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const MAGENTA: &str = "35";
const CYAN: &str = "36";

/// Colours `text` when `style` asks for colour.
fn paint(style: Style, code: &str, text: &str) -> String {
    style.paint(code, text)
}

fn compliance_subject(entry: &Compliance) -> String {
    match &entry.association {
        Some(association) => format!("{} (association {association})", entry.node),
        None => entry.node.clone(),
    }
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

/// Open findings about a resource this run saw, in the order given.
fn open_findings<'a>(run: &RunRecord, findings: &'a [Finding]) -> Vec<&'a Finding> {
    findings
        .iter()
        .filter(|f| {
            f.open
                && run
                    .results
                    .iter()
                    .any(|r| r.node == f.node && r.resource == f.resource)
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

fn times(n: u64) -> String {
    if n == 1 {
        "once".to_string()
    } else {
        format!("{n} times")
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

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

// ---------------------------------------------------------------------------------------------
// JUnit

/// The run as JUnit XML: a test suite per node, a test case per resource (`TYPE:NAME`, class
/// name the node). Drifted and failed resources are failures (type `drift` / `failure`) whose
/// text is the diff and the message; skipped resources are skipped; the rest pass.
pub fn junit(run: &RunRecord) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

    let mut report = Report::new(format!("steward {} run {}", run.kind.as_str(), run.id));
    let started = chrono::DateTime::parse_from_rfc3339(&run.started_at).ok();
    let finished = chrono::DateTime::parse_from_rfc3339(&run.finished_at).ok();
    if let Some(started) = started {
        report.set_timestamp(started);
    }
    if let (Some(started), Some(finished)) = (started, finished)
        && let Ok(elapsed) = (finished - started).to_std()
    {
        report.set_time(elapsed);
    }
    for node in run.nodes() {
        let mut suite = TestSuite::new(node);
        let mut node_ms = 0u64;
        for result in run.results.iter().filter(|r| r.node == node) {
            node_ms = node_ms.saturating_add(result.duration_ms);
            let status = match result.outcome {
                ResultOutcome::Drifted | ResultOutcome::Failed | ResultOutcome::TimedOut => {
                    let (kind, verb) = match result.outcome {
                        ResultOutcome::Drifted => {
                            (FindingKind::Drift, "drifted from its desired state")
                        }
                        ResultOutcome::TimedOut => (FindingKind::Failure, "timed out"),
                        _ => (FindingKind::Failure, "failed"),
                    };
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status.set_type(kind.as_str());
                    let first_line = result.message.as_deref().and_then(|m| m.lines().next());
                    status.set_message(match first_line {
                        Some(line) => format!("{} on {node} {verb}: {line}", result.resource),
                        None => format!("{} on {node} {verb}", result.resource),
                    });
                    let text = failure_text(result);
                    if !text.is_empty() {
                        status.set_description(text);
                    }
                    status
                }
                ResultOutcome::Skipped | ResultOutcome::Cancelled => {
                    let mut status = TestCaseStatus::skipped();
                    if let Some(message) = result.message.as_deref() {
                        status.set_message(message);
                    }
                    status
                }
                ResultOutcome::Changed | ResultOutcome::Unchanged | ResultOutcome::Succeeded => {
                    TestCaseStatus::success()
                }
            };
            let mut case = TestCase::new(result.resource.as_str(), status);
            case.set_classname(node);
            // A command's output, as CI systems show a test's output.
            if run.kind == RunKind::Command
                && let Some(output) = result.diff.as_deref()
            {
                case.set_system_out(output);
            }
            case.set_time(Duration::from_millis(result.duration_ms));
            // GitLab shows a test case's `file` attribute next to the failure.
            if let Some(file) = result.file.as_deref() {
                case.extra
                    .insert("file".into(), relative_uri_path(file).into());
            }
            suite.add_test_case(case);
        }
        suite.set_time(Duration::from_millis(node_ms));
        report.add_test_suite(suite);
    }
    // Writing into memory cannot fail.
    report.to_string().unwrap_or_default()
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

// ---------------------------------------------------------------------------------------------
// SARIF

#[derive(Serialize)]
struct SarifLog {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<SarifRun>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRun {
    tool: SarifTool,
    automation_details: SarifAutomationDetails,
    results: Vec<SarifResult>,
}

#[derive(Serialize)]
struct SarifTool {
    driver: SarifDriver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifDriver {
    name: &'static str,
    version: &'static str,
    rules: Vec<SarifRule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRule {
    id: String,
    name: String,
    short_description: SarifMessage,
}

/// Ties the log to its run; code hosts also use the part before the last `/` as a category.
#[derive(Serialize)]
struct SarifAutomationDetails {
    id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: String,
    rule_index: usize,
    level: &'static str,
    message: SarifMessage,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    locations: Vec<SarifLocation>,
    properties: SarifProperties,
}

#[derive(Serialize)]
struct SarifMessage {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifLocation {
    physical_location: SarifPhysicalLocation,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifPhysicalLocation {
    artifact_location: SarifArtifactLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<SarifRegion>,
}

#[derive(Serialize)]
struct SarifArtifactLocation {
    uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRegion {
    start_line: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_column: Option<u32>,
}

#[derive(Serialize)]
struct SarifProperties {
    node: String,
    resource: String,
    severity: &'static str,
}

/// The run as a SARIF 2.1.0 log: a result per drifted or failed resource, located at the
/// declaration's key in its document when the file is known, with rule ids
/// `steward/drift/<type>` and `steward/failure/<type>` and the level from the severity.
pub fn sarif(run: &RunRecord) -> String {
    let mut rules: Vec<SarifRule> = Vec::new();
    let mut results = Vec::new();
    for result in run.results.iter().filter(|r| r.outcome.is_noncompliant()) {
        let kind = if result.outcome == ResultOutcome::Drifted {
            FindingKind::Drift
        } else {
            FindingKind::Failure
        };
        let ty = resource_type(&result.resource);
        let rule_id = format!("steward/{}/{ty}", kind.as_str());
        let rule_index = match rules.iter().position(|r| r.id == rule_id) {
            Some(idx) => idx,
            None => {
                rules.push(sarif_rule(kind, ty, rule_id.clone()));
                rules.len() - 1
            }
        };
        let verb = match kind {
            FindingKind::Drift => "drifted from its desired state",
            FindingKind::Failure => "failed",
        };
        let mut text = format!("{} on {} {verb}", result.resource, result.node);
        if let Some(message) = result.message.as_deref().filter(|m| !m.is_empty()) {
            let _ = write!(text, ": {message}");
        } else {
            text.push('.');
        }
        let locations = match result.file.as_deref() {
            Some(file) => vec![SarifLocation {
                physical_location: SarifPhysicalLocation {
                    artifact_location: SarifArtifactLocation {
                        uri: relative_uri_path(file),
                    },
                    region: result
                        .line
                        .filter(|line| *line > 0)
                        .map(|start_line| SarifRegion {
                            start_line,
                            start_column: result.column.filter(|column| *column > 0),
                        }),
                },
            }],
            None => Vec::new(),
        };
        results.push(SarifResult {
            rule_id,
            rule_index,
            level: sarif_level(result.severity),
            message: SarifMessage { text },
            locations,
            properties: SarifProperties {
                node: result.node.clone(),
                resource: result.resource.clone(),
                severity: result.severity.as_str(),
            },
        });
    }
    let log = SarifLog {
        schema: SARIF_SCHEMA,
        version: SARIF_VERSION,
        runs: vec![SarifRun {
            tool: SarifTool {
                driver: SarifDriver {
                    name: "steward",
                    version: env!("CARGO_PKG_VERSION"),
                    rules,
                },
            },
            automation_details: SarifAutomationDetails {
                id: format!("steward/{}/{}", run.kind.as_str(), run.id),
            },
            results,
        }],
    };
    // Serializing plain structs of strings and numbers into memory cannot fail.
    let mut text = serde_json::to_string_pretty(&log).unwrap_or_default();
    text.push('\n');
    text
}

fn sarif_rule(kind: FindingKind, ty: &str, id: String) -> SarifRule {
    let (name, text) = match kind {
        FindingKind::Drift => (
            "Drift",
            format!(
                "{} `{ty}` resource drifted: what is on the node differs from its documents",
                article(ty)
            ),
        ),
        FindingKind::Failure => (
            "Failure",
            format!(
                "{} `{ty}` resource failed to apply or could not be read",
                article(ty)
            ),
        ),
    };
    SarifRule {
        id,
        name: format!("{}{name}", pascal_case(ty)),
        short_description: SarifMessage { text },
    }
}

/// SARIF's three levels from the six compliance severities.
fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Informational | Severity::Unspecified => "note",
    }
}

/// `TYPE` of a `TYPE:NAME` resource.
fn resource_type(resource: &str) -> &str {
    resource.split_once(':').map_or(resource, |(ty, _)| ty)
}

fn pascal_case(text: &str) -> String {
    let mut res = String::new();
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            res.push(first.to_ascii_uppercase());
            res.extend(chars);
        }
    }
    res
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

// ---------------------------------------------------------------------------------------------
// Markdown

/// The run in GitHub-flavoured Markdown, for a pull-request comment or a CI job summary: a
/// summary table per node, a collapsible block per drifted or failed resource with its diff,
/// and the open findings. Stays under [`MAX_MARKDOWN_BYTES`]: long diffs are cut, and blocks
/// that no longer fit are counted in a closing note.
pub fn markdown(run: &RunRecord, findings: &[Finding]) -> String {
    let mut out = String::new();
    let n_drifted = run.count(ResultOutcome::Drifted);
    let n_failed = run.count(ResultOutcome::Failed) + run.count(ResultOutcome::TimedOut);
    let verdict = if n_drifted + n_failed == 0 {
        "no drift, no failures".to_string()
    } else {
        format!("{n_drifted} drifted, {n_failed} failed")
    };
    let _ = writeln!(
        out,
        "## steward {} run `{}`: {verdict}\n",
        run.kind.as_str(),
        md_code_text(&run.id)
    );
    let _ = writeln!(
        out,
        "Started {} by {} in `{}`.\n",
        md_text(&run.started_at),
        md_text(&run.user),
        md_code_text(&run.project)
    );

    let mut n_left_out = 0usize;
    let order = report_order(run);
    let _ = writeln!(
        out,
        "| node | {} |",
        order.map(ResultOutcome::as_str).join(" | ")
    );
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for node in run.nodes() {
        let n = |outcome: ResultOutcome| {
            run.results
                .iter()
                .filter(|r| r.node == node && r.outcome == outcome)
                .count()
        };
        let counts: Vec<String> = order.iter().map(|o| n(*o).to_string()).collect();
        let row = format!("| {} | {} |\n", md_text(node), counts.join(" | "));
        if !push_within_budget(&mut out, &row) {
            n_left_out += 1;
        }
    }
    if n_left_out > 0 {
        let _ = writeln!(
            out,
            "\n_{} left out of the table._",
            count(n_left_out, "node")
        );
        n_left_out = 0;
    }
    out.push('\n');

    for result in run.results.iter().filter(|r| r.outcome.is_noncompliant()) {
        if !push_within_budget(&mut out, &markdown_block(result)) {
            n_left_out += 1;
        }
    }

    let open = open_findings(run, findings);
    if !open.is_empty() {
        let mut section = String::from("### Open findings\n\n");
        section.push_str("| id | node | resource | kind | severity | seen | since |\n");
        section.push_str("|---:|---|---|---|---|---:|---|\n");
        if push_within_budget(&mut out, &section) {
            for finding in open {
                let row = format!(
                    "| {} | {} | `{}` | {} | {} | {} | {} |\n",
                    finding.id,
                    md_text(&finding.node),
                    md_code_text(&finding.resource),
                    finding.kind.as_str(),
                    finding.severity.as_str(),
                    finding.count,
                    md_text(&finding.first_seen)
                );
                if !push_within_budget(&mut out, &row) {
                    n_left_out += 1;
                }
            }
            out.push('\n');
        }
    }

    if n_left_out > 0 {
        let _ = writeln!(
            out,
            "_Report cut to fit: {n_left_out} left out. Run `steward report {}` for all of it._",
            md_code_text(&run.id)
        );
    }
    out
}

/// One drifted or failed resource as a collapsible block.
fn markdown_block(result: &ResultRecord) -> String {
    let mut block = String::new();
    let _ = write!(
        block,
        "<details><summary><code>{}</code> on <code>{}</code>: {}",
        html_escape(&result.resource),
        html_escape(&result.node),
        result.outcome.as_str()
    );
    if result.severity != Severity::Unspecified {
        let _ = write!(block, " ({})", result.severity.as_str());
    }
    block.push_str("</summary>\n\n");
    if let Some(location) = location(result) {
        let _ = writeln!(block, "Declared at `{}`.\n", md_code_text(&location));
    }
    let text = failure_text(result);
    if !text.is_empty() {
        let (shown, n_lines_cut) = truncate_lines(&text, MAX_MARKDOWN_DIFF_BYTES);
        let fence = fence_for(shown);
        let _ = writeln!(block, "{fence}diff");
        block.push_str(shown);
        if !shown.ends_with('\n') {
            block.push('\n');
        }
        let _ = writeln!(block, "{fence}");
        if n_lines_cut > 0 {
            let _ = writeln!(block, "\n_{} cut._", count(n_lines_cut, "more line"));
        }
        block.push('\n');
    }
    block.push_str("</details>\n\n");
    block
}

/// Appends `text` when it leaves room for the closing note; says whether it did.
fn push_within_budget(out: &mut String, text: &str) -> bool {
    if out.len() + text.len() + MARKDOWN_TAIL_BYTES > MAX_MARKDOWN_BYTES {
        return false;
    }
    out.push_str(text);
    true
}

/// The longest prefix of whole lines within `max_bytes` (at least the first line, itself cut
/// at a character boundary), and how many lines were left out.
fn truncate_lines(text: &str, max_bytes: usize) -> (&str, usize) {
    if text.len() <= max_bytes {
        return (text, 0);
    }
    let mut end = 0;
    for (idx, _) in text.match_indices('\n') {
        if idx + 1 > max_bytes {
            break;
        }
        end = idx + 1;
    }
    if end == 0 {
        end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
    }
    let shown = &text[..end];
    let n_lines_cut = text.lines().count().saturating_sub(shown.lines().count());
    (shown, n_lines_cut.max(1))
}

/// A backtick fence longer than any run of backticks in `text`, so a diff cannot close it.
fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut current = 0;
    for c in text.chars() {
        if c == '`' {
            current += 1;
            longest = longest.max(current);
        } else {
            current = 0;
        }
    }
    "`".repeat(longest.max(2) + 1)
}

/// Text for a Markdown table cell or paragraph: pipes, HTML and emphasis characters escaped.
fn md_text(text: &str) -> String {
    let mut res = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' | '\\' | '*' | '_' | '`' | '[' | ']' => {
                res.push('\\');
                res.push(c);
            }
            '<' => res.push_str("&lt;"),
            '>' => res.push_str("&gt;"),
            '&' => res.push_str("&amp;"),
            '\n' | '\r' => res.push(' '),
            _ => res.push(c),
        }
    }
    res
}

/// Text inside a single-backtick code span: backticks and pipes cannot be escaped there, so
/// they are replaced (GitHub would otherwise end the span or the table cell).
fn md_code_text(text: &str) -> String {
    text.replace('`', "'")
        .replace('|', "¦")
        .replace(['\n', '\r'], " ")
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// "A" or "An" before a resource type.
fn article(ty: &str) -> &'static str {
    if ty.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "An"
    } else {
        "A"
    }
}

/// `steward runs` as a table.
pub fn runs_table(runs: &[crate::store::RunSummary]) -> String {
    use std::fmt::Write as _;
    let mut out = String::from(
        "RUN                              KIND    STARTED                   USER      CHANGED DRIFTED FAILED SKIPPED UNCHANGED\n",
    );
    for run in runs {
        let [unchanged, changed, drifted, failed, skipped] = run.counts;
        let _ = writeln!(
            out,
            "{:<32} {:<7} {:<25} {:<9} {changed:>7} {drifted:>7} {failed:>6} {skipped:>7} {unchanged:>9}",
            run.id,
            run.kind.as_str(),
            run.started_at,
            run.user
        );
    }
    out
}

/// `steward findings` as a table (open ones unless `all`).
pub fn findings_table(findings: &[Finding], all: bool) -> String {
    use std::fmt::Write as _;
    if findings.is_empty() {
        return if all {
            "No findings.\n"
        } else {
            "No open findings.\n"
        }
        .to_string();
    }
    let mut out = String::from(
        "ID  STATUS    KIND     SEVERITY       NODE        RESOURCE                          COUNT  LAST SEEN\n",
    );
    for finding in findings {
        let _ = writeln!(
            out,
            "{:<3} {:<9} {:<8} {:<14} {:<11} {:<33} {:>5}  {}",
            finding.id,
            if finding.open { "open" } else { "resolved" },
            finding.kind.as_str(),
            finding.severity.as_str(),
            finding.node,
            finding.resource,
            finding.count,
            finding.last_seen
        );
    }
    out
}
