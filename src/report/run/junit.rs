//! The run as JUnit XML for CI test-report viewers: a suite per node, a case per resource.

use std::time::Duration;

use crate::report::run::{failure_text, relative_uri_path};
use crate::store::{FindingKind, ResultOutcome, RunKind, RunRecord};

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
    for (node, results) in run.by_node() {
        let mut suite = TestSuite::new(node);
        let mut node_ms = 0u64;
        for result in results {
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
                ResultOutcome::Skipped
                | ResultOutcome::Cancelled
                | ResultOutcome::Pending
                | ResultOutcome::Unreachable => {
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
            // A command's output, or what an apply changed, as CI systems show a test's output.
            if (run.kind == RunKind::Command || result.outcome == ResultOutcome::Changed)
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
