//! Plain tables for listings (`steward runs`, `findings`, `nodes`, the per-node summaries of
//! fleet runs): a header row and aligned columns, without borders, as `kubectl get` prints.
//!
//! Owns [`Table`], a thin layer over comfy-table that fixes the look: two spaces between
//! columns, counts aligned right, no trailing spaces. Columns are as wide as their longest
//! cell, so a long node name widens its column instead of shifting the ones after it.
//!
//! **Architecture Invariant:** the width is the caller's to give. `report` never asks the
//! terminal (the controller renders these tables for the HTTP API): with `None` nothing is
//! wrapped. With `Some(width)`, the [`Column::Text`] columns (messages, users, tags, resources)
//! wrap within their column so that the lines fit `width`, down to [`MIN_TEXT_WIDTH`]
//! characters; names, ids, times and counts never wrap, so a line is wider than `width` only
//! when those and the narrowest text columns alone are. Nothing is ever cut.
//!
//! ```
//! use steward::report::table::{Column, Table};
//!
//! let mut table = Table::new(&[("NODE", Column::Fixed), ("FAILED", Column::Count)]);
//! table.row(vec!["a-node-with-a-rather-long-name".to_string(), "3".to_string()]);
//! assert_eq!(
//!     table.render(None),
//!     "NODE                            FAILED\na-node-with-a-rather-long-name       3\n"
//! );
//! ```

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Width};

/// Spaces between two columns.
const GAP: u16 = 2;

/// The narrowest a wrapped [`Column::Text`] gets (its header or its longest cell when
/// narrower): below it, a cell would be a tall ribbon of a few letters a line.
const MIN_TEXT_WIDTH: u16 = 16;

/// What a column holds, which decides how it lines up and whether it may wrap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    /// A name, an id, a status or a time: left-aligned, never wrapped.
    Fixed,
    /// A number: right-aligned, never wrapped.
    Count,
    /// Free text (a message, a user, tags, a resource): left-aligned, wrapped to fit a width.
    Text,
}

/// A table being filled: its header, then one row at a time.
pub struct Table {
    kinds: Vec<Column>,
    inner: comfy_table::Table,
}

impl Table {
    /// A table with these column headers and kinds.
    pub fn new(columns: &[(&str, Column)]) -> Table {
        let mut inner = comfy_table::Table::new();
        inner
            .load_style(comfy_table::presets::NOTHING)
            // comfy-table would otherwise look at the process's own stdout.
            .force_no_tty()
            .set_header(columns.iter().map(|(name, _)| *name).collect::<Vec<_>>());
        Table {
            kinds: columns.iter().map(|(_, kind)| *kind).collect(),
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
        let n_columns = self.kinds.len();
        let content_widths = self.inner.column_max_content_widths();
        for (idx, column) in self.inner.column_iter_mut().enumerate() {
            // The last column needs no gap after it.
            let right = if idx + 1 == n_columns { 0 } else { GAP };
            column.set_padding((0, right));
            let kind = self.kinds.get(idx).copied().unwrap_or(Column::Text);
            if kind == Column::Count {
                column.set_cell_alignment(CellAlignment::Right);
            }
            if kind == Column::Text {
                let content = content_widths.get(idx).copied().unwrap_or(0);
                // comfy-table's widths count the padding too.
                let floor = content.min(MIN_TEXT_WIDTH) + column.padding_width();
                column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(floor)));
            } else {
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
            ("NODE", Column::Fixed),
            ("COUNT", Column::Count),
            ("MESSAGE", Column::Text),
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

    #[test]
    fn a_narrow_width_keeps_text_readable() {
        // Too narrow for the table: the names and counts keep their width and the text
        // column stays at its floor rather than a ribbon of letters.
        let text = table().render(Some(10));
        assert!(
            text.contains("a-34-character-node-name-for-tests"),
            "{text}"
        );
        assert!(text.contains("the agent did"), "{text}");
        assert!(
            text.lines()
                .all(|line| line.chars().count() <= 34 + 2 + 5 + 2 + 16),
            "{text}"
        );
    }
}
