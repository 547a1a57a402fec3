//! The run for people: a header, per node what moved (with diffs), compliance, open findings
//! and a summary line, coloured when the terminal asks for it.

use std::fmt::Write;

use crate::report::plan::{self, Style};
use crate::report::run::{count, location, open_findings, report_order};
use crate::store::{Compliance, Finding, ResultOutcome, ResultRecord, RunRecord, Severity};

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

    for (node, results) in run.by_node() {
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

/// One result: a changed resource as the apply's output showed it (`+ file:/x: created`, the
/// marker in its action's colour), anything else by its outcome; then the change's lines as
/// the plan showed them.
fn human_result(out: &mut String, result: &ResultRecord, style: Style) {
    let (marker, code) = match result.outcome {
        ResultOutcome::Changed => ("~", YELLOW),
        ResultOutcome::Drifted => ("!", MAGENTA),
        ResultOutcome::Failed => ("x", RED),
        ResultOutcome::Skipped | ResultOutcome::Cancelled | ResultOutcome::Pending => ("o", YELLOW),
        ResultOutcome::Unreachable => ("?", RED),
        ResultOutcome::Unchanged => (" ", ""),
        ResultOutcome::Succeeded => ("+", GREEN),
        ResultOutcome::TimedOut => ("x", RED),
    };
    // Results stored before the action was kept (store version 5) say `changed`.
    let done = result
        .change
        .as_ref()
        .filter(|_| result.outcome == ResultOutcome::Changed)
        .and_then(|change| Some((plan::parse_action(&change.action)?, change.done.as_deref()?)));
    let mut head = match done {
        Some((action, done)) => format!(
            "  {} {}: {done}",
            plan::action_marker(action, style),
            result.resource
        ),
        None => format!(
            "  {} {}: {}",
            paint(style, code, marker),
            result.resource,
            result.outcome.as_str()
        ),
    };
    // A drift says what an apply would do about it, as the drift's plan showed.
    if let Some(action) = result
        .change
        .as_ref()
        .filter(|_| result.outcome == ResultOutcome::Drifted)
    {
        let _ = write!(head, ", apply would {}", action.action);
    }
    if let Some(reason) = result.change.as_ref().and_then(|c| c.reason.as_deref()) {
        let _ = write!(head, " ({reason})");
    }
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
        plan::write_change_text(out, "      ", diff, style);
    }
}

const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const MAGENTA: &str = "35";

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

fn times(n: u64) -> String {
    if n == 1 {
        "once".to_string()
    } else {
        format!("{n} times")
    }
}
