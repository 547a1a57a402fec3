//! What the listing and answer commands print for tools and on terminals: the versioned
//! JSON answers of `--format json` (docs/reference/json.md) and the width the plain tables
//! of [`crate::report::table`] may take.
//!
//! Plans, runs, diagnostics and graphs have their own versioned JSON in `report`; this file
//! holds the shapes of the commands that print a listing (`runs`, `findings`, `nodes`) or a
//! short answer (`findings resolve`, `node tag`, `node revoke`, `run cancel`,
//! `token create`). Each answer is one object whose first fields are `format_version` and
//! `kind`; the fields after them are the HTTP API's shapes (docs/reference/api.md), so local
//! and fleet mode print the same.

use std::io::IsTerminal;

/// The version of every shape written here; it changes when one changes in a way that breaks
/// readers.
pub(crate) const FORMAT_VERSION: &str = "1";

/// Why `apply --format json` without `--yes` (or a saved plan) is refused: the plan to confirm
/// is for people, and standard output is for a tool.
pub(crate) const APPLY_JSON_NEEDS_YES: &str =
    "apply --format json needs --yes (or a saved plan): there is no one to ask to confirm the plan";

/// One JSON answer: `format_version`, `kind`, then `fields` (an object) in their order,
/// pretty-printed with a final newline.
pub(crate) fn json_answer(kind: &str, fields: serde_json::Value) -> String {
    let mut answer = serde_json::Map::new();
    answer.insert("format_version".into(), FORMAT_VERSION.into());
    answer.insert("kind".into(), kind.into());
    if let serde_json::Value::Object(fields) = fields {
        answer.extend(fields);
    }
    format!("{:#}\n", serde_json::Value::Object(answer))
}

/// The width a table may take on standard output: the terminal's, or `None` (no bound, so
/// nothing wraps) when standard output is a file or a pipe.
pub(crate) fn table_width() -> Option<u16> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    // comfy-table asks the terminal itself (through crossterm) when it is one. A terminal
    // that reports no size (0 columns) is taken as none, not as one column.
    comfy_table::Table::new().width().filter(|width| *width > 0)
}
