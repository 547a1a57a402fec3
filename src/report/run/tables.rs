//! The listings of `steward runs` and `steward findings`: one line per run or finding, in
//! the plain columns of [`crate::report::table`].

use crate::report::table::{Column, Table};
use crate::store::Finding;

/// `steward runs` as a table; `width` bounds its lines ([`Table::render`]).
pub fn runs_table(runs: &[crate::store::RunSummary], width: Option<u16>) -> String {
    let mut table = Table::new(&[
        ("RUN", Column::Fixed),
        ("KIND", Column::Fixed),
        ("STARTED", Column::Fixed),
        ("USER", Column::Text),
        ("CHANGED", Column::Count),
        ("DRIFTED", Column::Count),
        ("FAILED", Column::Count),
        ("SKIPPED", Column::Count),
        ("UNCHANGED", Column::Count),
    ]);
    for run in runs {
        let [unchanged, changed, drifted, failed, skipped] = run.counts;
        let mut cells = vec![
            run.id.clone(),
            run.kind.as_str().to_string(),
            run.started_at.clone(),
            run.user.clone(),
        ];
        cells.extend([changed, drifted, failed, skipped, unchanged].map(|n| n.to_string()));
        table.row(cells);
    }
    table.render(width)
}

/// `steward findings` as a table (open ones unless `all`); `width` bounds its lines.
pub fn findings_table(findings: &[Finding], all: bool, width: Option<u16>) -> String {
    if findings.is_empty() {
        return if all {
            "No findings.\n"
        } else {
            "No open findings.\n"
        }
        .to_string();
    }
    let mut table = Table::new(&[
        ("ID", Column::Fixed),
        ("STATUS", Column::Fixed),
        ("KIND", Column::Fixed),
        ("SEVERITY", Column::Fixed),
        ("NODE", Column::Fixed),
        ("RESOURCE", Column::Text),
        ("COUNT", Column::Count),
        ("LAST SEEN", Column::Fixed),
    ]);
    for finding in findings {
        table.row(vec![
            finding.id.to_string(),
            if finding.open { "open" } else { "resolved" }.to_string(),
            finding.kind.as_str().to_string(),
            finding.severity.as_str().to_string(),
            finding.node.clone(),
            finding.resource.clone(),
            finding.count.to_string(),
            finding.last_seen.clone(),
        ]);
    }
    table.render(width)
}
