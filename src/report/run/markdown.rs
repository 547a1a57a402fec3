//! The run as GitHub-flavoured Markdown for a pull-request comment or a CI job summary, kept
//! under a size budget: long diffs are cut and what no longer fits is counted.

use std::fmt::Write;

use crate::report::run::{count, failure_text, location, open_findings, report_order};
use crate::store::{Finding, ResultOutcome, ResultRecord, RunRecord, Severity};

/// Upper bound on the Markdown report. GitHub caps comments at 65,536 characters and job
/// summaries at 1 MiB; staying under 60 KB leaves room for whatever a CI step wraps around it.
pub const MAX_MARKDOWN_BYTES: usize = 60_000;

/// Longest diff (or message) shown in one Markdown block before it is cut at a line boundary.
const MAX_MARKDOWN_DIFF_BYTES: usize = 8_000;

/// Room kept at the end of the Markdown budget for the closing note.
const MARKDOWN_TAIL_BYTES: usize = 1_000;

/// The run in GitHub-flavoured Markdown, for a pull-request comment or a CI job summary: a
/// summary table per node, a collapsible block per drifted or failed resource with its diff
/// (then one per changed resource), and the open findings. Stays under
/// [`MAX_MARKDOWN_BYTES`]: long diffs are cut, and blocks that no longer fit are counted in a
/// closing note.
pub fn markdown(run: &RunRecord, findings: &[Finding]) -> String {
    let mut out = String::new();
    let n_drifted = run.count(ResultOutcome::Drifted);
    let n_failed = run.count(ResultOutcome::Failed) + run.count(ResultOutcome::TimedOut);
    let n_unreachable = run.count(ResultOutcome::Unreachable);
    let verdict = if n_drifted + n_failed + n_unreachable == 0 {
        "no drift, no failures".to_string()
    } else if n_unreachable > 0 {
        format!("{n_drifted} drifted, {n_failed} failed, {n_unreachable} unreachable")
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
        order
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    out.push_str(&format!("|---|{}\n", "---:|".repeat(order.len())));
    for (node, results) in run.by_node() {
        let n = |outcome: ResultOutcome| results.iter().filter(|r| r.outcome == outcome).count();
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

    // What needs attention first, then what an apply changed.
    let noncompliant = run.results.iter().filter(|r| r.outcome.is_noncompliant());
    let changed = run
        .results
        .iter()
        .filter(|r| r.outcome == ResultOutcome::Changed);
    for result in noncompliant.chain(changed) {
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

/// One drifted, failed or changed resource as a collapsible block; a change is worded as the
/// apply's output worded it (`created`).
fn markdown_block(result: &ResultRecord) -> String {
    let mut block = String::new();
    let done = result
        .change
        .as_ref()
        .filter(|_| result.outcome == ResultOutcome::Changed)
        .and_then(|c| c.done.as_deref());
    let _ = write!(
        block,
        "<details><summary><code>{}</code> on <code>{}</code>: {}",
        html_escape(&result.resource),
        html_escape(&result.node),
        html_escape(done.unwrap_or(result.outcome.as_str()))
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
