//! The listings of `steward runs` and `steward findings`: one line per run or finding, in
//! fixed-width columns.

use crate::store::Finding;

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
        "ID  STATUS    KIND        SEVERITY       NODE        RESOURCE                          COUNT  LAST SEEN\n",
    );
    for finding in findings {
        let _ = writeln!(
            out,
            "{:<3} {:<9} {:<11} {:<14} {:<11} {:<33} {:>5}  {}",
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
