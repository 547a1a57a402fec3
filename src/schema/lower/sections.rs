//! The top level of a document: which sections it may have (a module fewer than a project
//! document) and the `steward:` schema version it declares.

use crate::diag::Span;
use crate::document::{self, Document, Node};
use crate::schema::lower::Lowerer;

/// The highest document schema version this steward reads.
pub const SCHEMA_VERSION: i64 = 1;

pub(crate) const TOP_LEVEL: &[&str] = &[
    "steward",
    "parameters",
    "nodes",
    "resources",
    "associations",
    "use",
];
pub(crate) const MODULE_LEVEL: &[&str] = &["steward", "parameters", "resources", "use"];

impl Lowerer<'_> {
    pub(super) fn check_sections(&mut self, doc: &Document, allowed: &[&str], what: &str) {
        let Some(entries) = doc.root.as_map() else {
            self.wrong_type(&doc.root, &format!("{what}'s top level"), "a map");
            return;
        };
        for (key, _) in entries {
            if !allowed.contains(&key.name.as_str()) {
                if TOP_LEVEL.contains(&key.name.as_str()) {
                    self.error(
                        "schema::unknown_key",
                        key.span,
                        format!("`{}` is not allowed in {what}", key.name),
                    )
                    .help = Some(
                        "declare nodes and associations in the project, not in modules".into(),
                    );
                } else {
                    self.unknown_key(key, what, allowed);
                }
            }
        }
        match doc.root.get("steward") {
            None => {
                let span = Span::new(doc.source, doc.root.span.start, doc.root.span.start);
                self.error(
                    "schema::missing_version",
                    span,
                    "the document does not say `steward: 1`",
                )
                .help = Some("start every document with `steward: 1` (KDL: `steward 1`)".into());
            }
            Some(Node {
                value: document::Value::Int(SCHEMA_VERSION),
                ..
            }) => {}
            Some(Node {
                value: document::Value::Int(version),
                span,
            }) if *version > SCHEMA_VERSION => {
                self.error(
                    "schema::version",
                    *span,
                    format!("document schema version {version} is newer than this steward reads ({SCHEMA_VERSION})"),
                )
                .help = Some("upgrade steward".into());
            }
            Some(other) => {
                self.error(
                    "schema::version",
                    other.span,
                    "unsupported document schema version",
                )
                .help = Some(format!("write `steward: {SCHEMA_VERSION}`"));
            }
        }
    }
}
