//! The top level of a document: which sections it may have (a module fewer than a project
//! document) and the `steward:` schema version it declares. Only the top level's shape is
//! checked here: each section's content is checked by the file of its concern.

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

#[cfg(test)]
mod tests {
    use crate::schema::lower::testing::{
        add_module, ids_by_node, lower_plain, only, project, text_at,
    };

    #[test]
    fn a_well_formed_document_lowers_without_diagnostics() {
        let project = project(&[("site.yaml", "steward: 1\nresources:\n  package:nginx: {}\n")]);
        let (model, diagnostics) = lower_plain(&project);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(ids_by_node(&model)["local"], ["package:nginx"]);
    }

    #[test]
    fn a_document_without_a_version_is_reported_at_its_start() {
        let project = project(&[("site.yaml", "resources:\n  package:nginx: {}\n")]);
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::missing_version");
        assert_eq!(diag.span().unwrap().start, 0);
        assert!(diag.help.as_deref().unwrap().contains("steward: 1"));
    }

    #[test]
    fn a_newer_version_is_reported_at_the_number() {
        let project = project(&[("site.yaml", "steward: 2\n")]);
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::version");
        assert_eq!(text_at(&project, diag), "2");
        assert!(diag.message.contains("newer"), "{}", diag.message);
    }

    #[test]
    fn an_unknown_section_is_located_with_a_suggestion() {
        let project = project(&[("site.yaml", "steward: 1\nresource:\n  package:nginx: {}\n")]);
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::unknown_key");
        assert_eq!(text_at(&project, diag), "resource");
        assert!(diag.help.as_deref().unwrap().contains("resources"));
    }

    #[test]
    fn a_module_may_not_declare_nodes() {
        let mut project = project(&[("site.yaml", "steward: 1\nuse:\n  - module: m\n")]);
        add_module(&mut project, "m", "steward: 1\nnodes:\n  web-1: {}\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::unknown_key");
        assert_eq!(text_at(&project, diag), "nodes");
        assert_eq!(diag.message, "`nodes` is not allowed in a module");
    }
}
