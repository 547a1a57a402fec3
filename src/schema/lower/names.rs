//! Resource identities: a name must follow its type's name rule, and each `TYPE:NAME` is
//! declared once in a project. What a valid name is belongs to the resource types
//! (`NameRule`); this file applies the rule and reports.

use crate::diag::{Diagnostic, Span};
use crate::model::{Model, Resource, ResourceId};
use crate::resource::ResourceType;
use crate::schema::lower::Lowerer;

impl Lowerer<'_> {
    pub(super) fn check_name(
        &mut self,
        ty: &dyn ResourceType,
        id: &ResourceId,
        span: Span,
    ) -> bool {
        let name = id.name.as_str();
        let problem = ty.schema().name_rule.check(name).err();
        match problem {
            Some((message, help)) => {
                self.error(
                    "schema::invalid_name",
                    span,
                    format!("invalid name for `{}`: {message}", id.kind),
                )
                .help = Some(help);
                false
            }
            None => true,
        }
    }

    /// One identity declared in two places is an error even when the two land on different
    /// nodes (docs/guide/documents.md: once in a project). The same declaration reaching
    /// several nodes is not a duplicate.
    pub(super) fn check_project_duplicates(&mut self, model: &Model) {
        let mut first: foldhash::HashMap<&ResourceId, Span> = foldhash::HashMap::default();
        let all = model
            .nodes
            .iter()
            .chain(&model.unassigned)
            .flat_map(|node| node.resources.iter());
        for res in all {
            match first.get(&res.id) {
                Some(span) if *span != res.span => {
                    let (earlier, later) =
                        if (span.source, span.start) <= (res.span.source, res.span.start) {
                            (*span, res.span)
                        } else {
                            (res.span, *span)
                        };
                    self.acc.push(
                        Diagnostic::error("schema::duplicate_resource", later, format!("`{}` is declared twice", res.id))
                            .with_label("declared again here")
                            .with_secondary(earlier, "first declared here")
                            .with_help("each `TYPE:NAME` may be declared once in a project; remove one or rename it"),
                    );
                }
                Some(_) => {}
                None => {
                    first.insert(&res.id, res.span);
                }
            }
        }
    }

    /// The same declaration twice on one node: `for_each` gave two items one name.
    pub(super) fn check_duplicates(&mut self, resources: &[Resource]) {
        let mut seen: foldhash::HashSet<(&ResourceId, Span)> = foldhash::HashSet::default();
        for res in resources {
            if !seen.insert((&res.id, res.span)) {
                self.error(
                    "schema::duplicate_resource",
                    res.span,
                    format!("`{}` is declared more than once here", res.id),
                )
                .help = Some("`for_each` gives two items the same name".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::lower::testing::{ids_by_node, lower_plain, only, project, text_at};

    fn site(resources: &str) -> crate::document::Project {
        project(&[("site.yaml", &format!("steward: 1\nresources:\n{resources}"))])
    }

    #[test]
    fn a_relative_file_path_is_an_invalid_name() {
        let project = site("  file:etc/motd: { content: x }\n");
        let (model, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::invalid_name");
        assert_eq!(text_at(&project, diag), "file:etc/motd");
        assert!(
            diag.message.starts_with("invalid name for `file`"),
            "{}",
            diag.message
        );
        assert!(ids_by_node(&model)["local"].is_empty());
    }

    #[test]
    fn a_package_name_follows_the_package_rule() {
        let project = site("  package:Nginx!: {}\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::invalid_name");
        assert!(
            diag.message.contains("is not a valid package name"),
            "{}",
            diag.message
        );
    }

    #[test]
    fn one_identity_declared_in_two_documents_is_reported_at_the_later() {
        let project = project(&[
            ("a.yaml", "steward: 1\nresources:\n  package:nginx: {}\n"),
            ("b.yaml", "steward: 1\nresources:\n  package:nginx: {}\n"),
        ]);
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::duplicate_resource");
        assert_eq!(diag.message, "`package:nginx` is declared twice");
        assert_eq!(
            project.sources.get(diag.span().unwrap().source).name,
            "b.yaml"
        );
        assert_eq!(
            diag.labels.len(),
            2,
            "the first declaration is pointed at too"
        );
    }

    #[test]
    fn two_items_of_one_for_each_with_one_name_are_a_duplicate_here() {
        let project = site("  package:{{ item }}: { for_each: [nginx, nginx] }\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::duplicate_resource");
        assert_eq!(
            diag.message,
            "`package:nginx` is declared more than once here"
        );
    }
}
