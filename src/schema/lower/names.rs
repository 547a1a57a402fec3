//! Resource identities: a name must follow its type's name rule, and each `TYPE:NAME` is
//! declared once in a project.

use crate::diag::{Diagnostic, Span};
use crate::model::{Model, Resource, ResourceId};
use crate::resource::{NameRule, ResourceType, check_abs_path};
use crate::schema::lower::Lowerer;

impl Lowerer<'_> {
    pub(super) fn check_name(
        &mut self,
        ty: &dyn ResourceType,
        id: &ResourceId,
        span: Span,
    ) -> bool {
        let name = id.name.as_str();
        let problem = match ty.schema().name_rule {
            NameRule::AbsPath => check_abs_path(name).err().map(|p| (p, "NAME is an absolute path such as `/etc/motd`".to_string())),
            NameRule::Package => (!NameRule::Package.accepts(name)).then(|| {
                (format!("`{name}` is not a valid package name"), "package names use lowercase letters, digits and `+ - .`".to_string())
            }),
            NameRule::Service => (!NameRule::Service.accepts(name)).then(|| {
                (format!("`{name}` is not a valid unit name"), "unit names use letters, digits and `: _ . @ -`".to_string())
            }),
            NameRule::Account => (!NameRule::Account.accepts(name)).then(|| {
                (format!("`{name}` is not a valid user or group name"), "start with a lowercase letter or `_`; use lowercase letters, digits, `_` and `-`; at most 32 characters".to_string())
            }),
            NameRule::Label => (!NameRule::Label.accepts(name)).then(|| {
                (format!("`{}` contains control characters", name.escape_debug()), "use printable characters".to_string())
            }),
        };
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
    /// nodes (SPEC: once anywhere in a project). The same declaration reaching several
    /// nodes is not a duplicate.
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
