//! Plain tables for listings (`steward runs`, `findings`, `nodes`, the per-node summaries of
//! fleet runs): a header row and aligned columns, without borders, as `kubectl get` prints.
//!
//! Owns [`Table`], a thin layer over comfy-table that fixes the look: two spaces between
//! columns, numbers aligned right, no trailing spaces. Columns are as wide as their longest
//! cell, so a long node name widens its column instead of shifting the ones after it.
//!
//! **Architecture Invariant:** the width is the caller's to give. `report` never asks the
//! terminal (the controller renders these tables for the HTTP API): with `None` nothing is
//! wrapped or cut, with `Some(width)` long cells wrap within their column so that no line is
//! wider than `width`, except the first column's, which names the row and keeps its width.
//! Nothing is ever truncated.
//!
//! ```
//! use steward::report::table::{Align, Table};
//!
//! let mut table = Table::new(&[("NODE", Align::Left), ("FAILED", Align::Right)]);
//! table.row(vec!["a-node-with-a-rather-long-name".to_string(), "3".to_string()]);
//! assert_eq!(
//!     table.render(None),
//!     "NODE                            FAILED\na-node-with-a-rather-long-name       3\n"
//! );
//! ```

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement};

/// Spaces between two columns.
const GAP: u16 = 2;

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text: left-aligned.
    Left,
    /// Counts: right-aligned.
    Right,
}

/// A table being filled: its header, then one row at a time.
pub struct Table {
    aligns: Vec<Align>,
    inner: comfy_table::Table,
}

impl Table {
    /// A table with these column headers and alignments.
    pub fn new(columns: &[(&str, Align)]) -> Table {
        let mut inner = comfy_table::Table::new();
        inner
            .load_style(comfy_table::presets::NOTHING)
            // comfy-table would otherwise look at the process's own stdout.
            .force_no_tty()
            .set_header(columns.iter().map(|(name, _)| *name).collect::<Vec<_>>());
        Table {
            aligns: columns.iter().map(|(_, align)| *align).collect(),
            inner,
        }
    }

    /// Adds a row: one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        self.inner.add_row(cells);
    }

    /// The table as text, one line per row (more where a cell wraps), each ending in a
    /// newline; `width` bounds the lines (see the module doc).
    pub fn render(mut self, width: Option<u16>) -> String {
        let n_columns = self.aligns.len();
        for (idx, column) in self.inner.column_iter_mut().enumerate() {
            // The last column needs no gap after it.
            let right = if idx + 1 == n_columns { 0 } else { GAP };
            column.set_padding((0, right));
            if self.aligns.get(idx) == Some(&Align::Right) {
                column.set_cell_alignment(CellAlignment::Right);
            }
            // The first column names the row (a node, a run, a finding): it keeps its width
            // and the others wrap.
            if idx == 0 {
                column.set_constraint(ColumnConstraint::ContentWidth);
            }
        }
        match width {
            Some(width) => {
                self.inner
                    .set_width(width)
                    .set_content_arrangement(ContentArrangement::Dynamic);
            }
            None => {
                self.inner
                    .set_content_arrangement(ContentArrangement::Disabled);
            }
        }
        let mut out = String::new();
        for line in self.inner.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        let mut table = Table::new(&[
            ("NODE", Align::Left),
            ("COUNT", Align::Right),
            ("MESSAGE", Align::Left),
        ]);
        table.row(vec![
            "web-1".to_string(),
            "12".to_string(),
            "fine".to_string(),
        ]);
        table.row(vec![
            "a-34-character-node-name-for-tests".to_string(),
            "3".to_string(),
            "the agent did not answer within the delivery timeout".to_string(),
        ]);
        table
    }

    #[test]
    fn columns_follow_the_longest_cell() {
        insta::assert_snapshot!(table().render(None), @r"
        NODE                                COUNT  MESSAGE
        web-1                                  12  fine
        a-34-character-node-name-for-tests      3  the agent did not answer within the delivery timeout
        ");
    }

    #[test]
    fn a_width_wraps_and_never_cuts() {
        let text = table().render(Some(60));
        assert!(
            text.lines().all(|line| line.chars().count() <= 60),
            "{text}"
        );
        assert!(
            text.contains("a-34-character-node-name-for-tests  "),
            "{text}"
        );
        let words: String = text.split_whitespace().collect();
        assert!(words.contains("deliverytimeout"), "{text}");
    }
}
