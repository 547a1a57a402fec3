//! Resources: the `TYPE:NAME` key, `for_each` and `when`, each attribute rendered and checked
//! against its type's schema, and relationships. A file's content is `content.rs`'s job.

use std::collections::BTreeSet;

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::document::{self, Document, Key, Node};
use crate::model::{Attr, Attrs, Relation, RelationKind, Resource, ResourceId};
use crate::resource::{Candidate, ResourceType};
use crate::schema::lower::content::{PARALLEL_RENDER_MIN, PendingContents};
use crate::schema::lower::params::Scope;
use crate::schema::lower::{Lowerer, is_template_node, to_jinja};
use crate::schema::value::{check, to_model};
use crate::template::{is_template, item_slot};

pub(crate) const META: &[&str] = &[
    "for_each",
    "when",
    "require",
    "before",
    "notify",
    "subscribe",
];

impl Lowerer<'_> {
    pub(super) fn lower_resource(
        &mut self,
        doc: &Document,
        key: &Key,
        body: &Node,
        scope: &Scope,
        base_ctx: &minijinja::Value,
        out: &mut Vec<Resource>,
    ) {
        let Some((kind, name_template)) = key
            .name
            .split_once(':')
            .filter(|(k, n)| !k.is_empty() && !n.is_empty())
        else {
            self.error(
                "schema::invalid_key",
                key.span,
                format!("`{}` is not a resource key", key.name),
            )
            .help = Some(
                "resources are keyed `TYPE:NAME`, such as `file:/etc/motd` or `package:nginx`"
                    .into(),
            );
            return;
        };
        let registry = self.registry;
        let Some(ty) = registry.get(kind) else {
            let kinds = registry.kinds();
            let kind_span = Span::new(
                key.span.source,
                key.span.start,
                key.span.start + kind.len().min(key.span.end - key.span.start),
            );
            let kind_span = if self.project.sources.slice(kind_span) == kind {
                kind_span
            } else {
                key.span
            };
            self.error(
                "schema::unknown_type",
                kind_span,
                format!("unknown resource type `{kind}`"),
            )
            .help = Some(did_you_mean(kind, &kinds));
            return;
        };
        let entries = self.map_entries(body, &format!("`{}`", key.name));
        let text = self.text(doc.source);
        // The sensitive names `for_each` read: each item carries them.
        let mut for_each_reads = BTreeSet::new();
        let items: Vec<Option<minijinja::Value>> = match entries
            .iter()
            .find(|(k, _)| k.name == "for_each")
        {
            None => vec![None],
            Some((_, node)) if matches!(node.value, document::Value::Null) => {
                // Written empty (`for_each: ~`): not a failed render, which is reported.
                self.wrong_type(node, "`for_each`", "a list or a map");
                Vec::new()
            }
            Some((_, node)) => {
                let rendered =
                    self.renderer
                        .render(text, node, base_ctx, &scope.sensitive, &mut self.acc);
                for_each_reads.clone_from(&rendered.reads);
                match &rendered.node.value {
                    document::Value::List(items) => items.iter().map(|i| Some(to_jinja(&to_model(i)))).collect(),
                    document::Value::Map(entries) => entries
                        .iter()
                        .map(|(k, v)| Some(minijinja::context! { key => k.name.clone(), value => to_jinja(&to_model(v)) }))
                        .collect(),
                    document::Value::Null => Vec::new(), // A failed render was reported.
                    _ => {
                        self.wrong_type(&rendered.node, "`for_each`", "a list or a map");
                        Vec::new()
                    }
                }
            }
        };
        if !items.iter().all(Option::is_none) && !is_template(name_template) {
            let count = items.len();
            if count > 1 {
                self.error(
                    "schema::duplicate_resource",
                    key.span,
                    format!(
                        "`{}` uses `for_each` over {count} items but its name does not use `item`",
                        key.name
                    ),
                )
                .help = Some(format!(
                    "put the item in the name, such as `{kind}:{{{{ item }}}}`"
                ));
                return;
            }
        }
        // Items of a sensitive value are sensitive: `item` reads what `for_each` read.
        let item_scope;
        let scope = if for_each_reads.is_empty() {
            scope
        } else {
            let mut with_item = scope.clone();
            let ids: Vec<usize> = scope.ids_of(&for_each_reads).collect();
            with_item.add_sensitive("item".to_string(), ids);
            item_scope = with_item;
            &item_scope
        };
        // A large `for_each` of templated files renders their content in parallel after
        // the loop; a small one (and every error message) renders in order.
        let mut pending = (items.len() >= PARALLEL_RENDER_MIN).then(PendingContents::default);
        // `{{ item }}` in a name of plain text renders without the template engine.
        let name_slot = item_slot(name_template);
        for item in items {
            let ctx = match &item {
                Some(item) => minijinja::context! { item => item.clone(), ..base_ctx.clone() },
                None => base_ctx.clone(),
            };
            if let Some((_, when)) = entries.iter().find(|(k, _)| k.name == "when")
                && self.renderer.condition(text, when, &ctx, &mut self.acc) != Some(true)
            {
                continue;
            }
            // The sensitive names this resource's templates read: what its node is sent.
            let mut reads: BTreeSet<String> = BTreeSet::new();
            let slotted = name_slot.zip(item.as_ref().and_then(minijinja::Value::as_str));
            let name = if let Some(((before, after), item)) = slotted {
                if scope.sensitive.contains("item") {
                    reads.insert("item".to_string());
                }
                format!("{before}{item}{after}")
            } else if is_template(name_template) {
                let name_node = Node {
                    span: key.span,
                    value: document::Value::String(name_template.to_string()),
                };
                let rendered =
                    self.renderer
                        .render(text, &name_node, &ctx, &scope.sensitive, &mut self.acc);
                reads.clone_from(&rendered.reads);
                match rendered.node.value {
                    document::Value::String(name) => name,
                    document::Value::Null => continue,
                    other => {
                        self.error(
                            "schema::invalid_name",
                            key.span,
                            format!("the name renders to {}, not a string", other.type_name()),
                        );
                        continue;
                    }
                }
            } else {
                name_template.to_string()
            };
            if !reads.is_empty() {
                // Identities are shown, stored and sent unredacted: the value must not get there.
                self.sensitive_in_name(key.span, &format!("the name `{}`", key.name), &reads);
                continue;
            }
            let id = ResourceId::new(kind, name);
            if !self.check_name(ty, &id, key.span) {
                continue;
            }
            let mut attrs = Attrs::new();
            let mut relations = Vec::new();
            for (k, v) in entries {
                if let Some(relation) = RelationKind::ALL.iter().find(|r| r.as_str() == k.name) {
                    self.relations(text, *relation, v, &ctx, scope, &mut relations);
                    continue;
                }
                if k.name == "for_each" || k.name == "when" {
                    continue;
                }
                let Some(schema) = ty.schema().attr(&k.name) else {
                    let mut valid: Vec<&str> = ty.schema().attrs.iter().map(|a| a.name).collect();
                    valid.extend_from_slice(META);
                    self.acc.push(
                        Diagnostic::error(
                            "schema::unknown_attribute",
                            k.span,
                            format!("unknown attribute `{}` for `{kind}`", k.name),
                        )
                        .with_label("not in the schema")
                        .with_help(did_you_mean(&k.name, &valid)),
                    );
                    continue;
                };
                let rendered = self
                    .renderer
                    .render(text, v, &ctx, &scope.sensitive, &mut self.acc);
                let sensitive = rendered.is_sensitive();
                reads.extend(rendered.reads);
                if matches!(rendered.node.value, document::Value::Null) && is_template_node(v) {
                    continue; // The template error was reported.
                }
                let rendered_node = stringify_for_text(schema.ty, v, rendered.node);
                match check(schema.ty, &rendered_node) {
                    Ok(value) => {
                        attrs.insert(
                            k.name.clone(),
                            Attr {
                                value,
                                span: v.span,
                                sensitive,
                            },
                        );
                    }
                    Err(mismatch) => {
                        // A sensitive value never reaches a message, not even a wrong one.
                        let problem = if sensitive {
                            "(sensitive value not shown)".to_string()
                        } else {
                            mismatch.message
                        };
                        let mut diag = Diagnostic::error(
                            "schema::wrong_type",
                            v.span,
                            format!("invalid value for `{}` of `{id}`: {problem}", k.name),
                        )
                        .with_label(format!("expected {}", schema.ty.describe()));
                        if let Some(help) = mismatch.help {
                            diag = diag.with_help(help);
                        }
                        self.acc.push(diag);
                    }
                }
            }
            self.check_required(ty, &id, key.span, entries);
            self.check_exclusive(ty, &attrs);
            let absent = attrs.get("ensure").and_then(|a| a.value.as_str()) == Some("absent");
            if ty.has_project_content() && !absent {
                let deferred = pending.as_mut().map(|pending| (pending, out.len()));
                reads.extend(self.resolve_content(doc.source, &mut attrs, &ctx, scope, deferred));
            }
            let mut secrets: Vec<usize> = scope.ids_of(&reads).collect();
            secrets.sort_unstable();
            secrets.dedup();
            ty.validate(
                &Candidate {
                    id: &id,
                    span: key.span,
                    attrs: &attrs,
                },
                &mut self.acc,
            );
            out.push(Resource {
                id,
                span: key.span,
                source: doc.source,
                attrs,
                relations,
                association: None,
                secrets,
            });
        }
        if let Some(pending) = pending {
            self.render_pending(pending, doc.source, scope, out);
        }
    }

    fn relations(
        &mut self,
        text: &str,
        kind: RelationKind,
        node: &Node,
        ctx: &minijinja::Value,
        scope: &Scope,
        out: &mut Vec<Relation>,
    ) {
        let items: Vec<&Node> = match &node.value {
            document::Value::List(items) => items.iter().collect(),
            document::Value::String(_) => vec![node],
            _ => {
                self.wrong_type(
                    node,
                    &format!("`{}`", kind.as_str()),
                    "a list of `TYPE:NAME` references",
                );
                return;
            }
        };
        for item in items {
            let rendered = self
                .renderer
                .render(text, item, ctx, &scope.sensitive, &mut self.acc);
            if rendered.is_sensitive() {
                let what = format!("a `{}` reference", kind.as_str());
                self.sensitive_in_name(item.span, &what, &rendered.reads);
                continue;
            }
            let target_text = match &rendered.node.value {
                document::Value::String(target) => target.clone(),
                document::Value::Null if is_template_node(item) => continue,
                _ => {
                    self.wrong_type(item, "a reference", "a `TYPE:NAME` string");
                    continue;
                }
            };
            let Some(target) = ResourceId::parse(&target_text) else {
                self.error(
                    "schema::invalid_reference",
                    item.span,
                    format!("`{target_text}` is not a `TYPE:NAME` reference"),
                )
                .help = Some("refer to resources as `TYPE:NAME`, such as `package:nginx`".into());
                continue;
            };
            if self.registry.get(&target.kind).is_none() {
                let kinds = self.registry.kinds();
                self.error(
                    "schema::unknown_type",
                    item.span,
                    format!("unknown resource type `{}` in reference", target.kind),
                )
                .help = Some(did_you_mean(&target.kind, &kinds));
                continue;
            }
            out.push(Relation {
                kind,
                target,
                span: item.span,
            });
        }
    }

    fn check_required(
        &mut self,
        ty: &dyn ResourceType,
        id: &ResourceId,
        span: Span,
        entries: &[(Key, Node)],
    ) {
        for attr in ty.schema().attrs.iter().filter(|a| a.required) {
            if !entries.iter().any(|(k, _)| k.name == attr.name) {
                self.error(
                    "schema::missing_attribute",
                    span,
                    format!("`{id}` needs `{}`", attr.name),
                )
                .help = Some(format!("add `{}`: {}", attr.name, attr.doc));
            }
        }
    }

    fn check_exclusive(&mut self, ty: &dyn ResourceType, attrs: &Attrs) {
        for group in ty.schema().exclusive {
            let given: Vec<(&str, Span)> = group
                .iter()
                .filter_map(|name| attrs.get(name).map(|a| (*name, a.span)))
                .collect();
            if let [(first, first_span), (second, second_span), ..] = given.as_slice() {
                self.acc.push(
                    Diagnostic::error(
                        "schema::conflicting_attributes",
                        *second_span,
                        format!("`{second}` conflicts with `{first}`"),
                    )
                    .with_secondary(*first_span, "given here")
                    .with_help(format!("give only one of {}", group.join(", "))),
                );
            }
        }
    }
}

/// A template written in quotes for a text attribute gives text, even when it is a single
/// expression of another type (`content: "{{ params.port }}"`).
fn stringify_for_text(ty: crate::resource::AttrType, written: &Node, rendered: Node) -> Node {
    use crate::resource::AttrType;
    if !matches!(ty, AttrType::String | AttrType::AbsPath | AttrType::Mode)
        || !is_template_node(written)
    {
        return rendered;
    }
    let text = match &rendered.value {
        document::Value::Int(number) => number.to_string(),
        document::Value::Float(number) => number.to_string(),
        document::Value::Bool(flag) => flag.to_string(),
        _ => return rendered,
    };
    Node {
        span: rendered.span,
        value: document::Value::String(text),
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{RelationKind, ResourceId};
    use crate::schema::lower::testing::{
        ids_by_node, lower_plain, only, project, resource, text_at,
    };

    fn site(resources: &str) -> crate::document::Project {
        project(&[("site.yaml", &format!("steward: 1\nresources:\n{resources}"))])
    }

    #[test]
    fn for_each_makes_one_resource_per_item() {
        let project = site("  package:{{ item }}: { for_each: [nginx, curl] }\n");
        let (model, diagnostics) = lower_plain(&project);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(
            ids_by_node(&model)["local"],
            ["package:nginx", "package:curl"]
        );
    }

    #[test]
    fn when_false_leaves_the_resource_out() {
        let project = site(
            "  package:nginx: { when: \"node.name == 'elsewhere'\" }\n  package:curl: { when: true }\n",
        );
        let (model, diagnostics) = lower_plain(&project);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(ids_by_node(&model)["local"], ["package:curl"]);
    }

    #[test]
    fn for_each_over_a_name_without_item_is_refused() {
        let project = site("  package:nginx: { for_each: [a, b] }\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::duplicate_resource");
        assert_eq!(text_at(&project, diag), "package:nginx");
    }

    #[test]
    fn an_unknown_type_is_located_at_the_type_with_a_suggestion() {
        let project = site("  packag:nginx: {}\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::unknown_type");
        assert_eq!(text_at(&project, diag), "packag");
        assert!(diag.help.as_deref().unwrap().contains("package"));
    }

    #[test]
    fn an_unknown_attribute_is_located_with_a_suggestion() {
        let project = site("  file:/etc/motd: { contnet: x }\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::unknown_attribute");
        assert_eq!(text_at(&project, diag), "contnet");
        assert!(diag.help.as_deref().unwrap().contains("content"));
    }

    #[test]
    fn relationships_are_lowered_and_checked() {
        let project = site(
            "  package:nginx: {}\n  file:/etc/motd: { content: x, require: package:nginx, notify: [srvice:nginx] }\n",
        );
        let (model, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::unknown_type");
        assert_eq!(text_at(&project, diag), "srvice:nginx");
        let res = resource(&model, "local", "file:/etc/motd");
        assert_eq!(res.relations.len(), 1);
        assert_eq!(res.relations[0].kind, RelationKind::Require);
        assert_eq!(res.relations[0].target, ResourceId::new("package", "nginx"));
    }

    #[test]
    fn conflicting_attributes_are_reported_at_the_second() {
        let project = site("  file:/etc/motd: { content: x, template: motd.j2 }\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::conflicting_attributes");
        assert_eq!(text_at(&project, diag), "motd.j2");
    }
}
