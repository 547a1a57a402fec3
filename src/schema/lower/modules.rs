//! `use` of modules: a module's parameters bound from `with`, and its documents lowered in
//! that scope, nested at most [`MAX_MODULE_DEPTH`] deep. Finding the module is `load`'s job.

use crate::diag::Diagnostic;
use crate::document::{Document, Key, Node};
use crate::model::Resource;
use crate::schema::lower::Lowerer;
use crate::schema::lower::params::{Scope, coerce_param};
use crate::schema::value::{param_type_matches, to_model};

pub(crate) const USE_KEYS: &[&str] = &["module", "with"];

/// How deep `use` may nest before we call it a loop.
const MAX_MODULE_DEPTH: usize = 16;

impl Lowerer<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lower_use(
        &mut self,
        doc: &Document,
        item: &Node,
        scope: &Scope,
        base_ctx: &minijinja::Value,
        node_ctx: &minijinja::Value,
        out: &mut Vec<Resource>,
        depth: usize,
    ) {
        let entries = self.map_entries(item, "a `use` entry");
        let mut module_name = None;
        let mut with: &[(Key, Node)] = &[];
        let mut with_node = None;
        for (k, v) in entries {
            match k.name.as_str() {
                "module" => match v.as_str() {
                    Some(name) => module_name = Some(name.to_string()),
                    None => self.wrong_type(v, "`module`", "a module name"),
                },
                "with" => {
                    with = self.map_entries(v, "`with`");
                    with_node = Some(v);
                }
                _ => self.unknown_key(k, "a `use` entry", USE_KEYS),
            }
        }
        let Some(module_name) = module_name else {
            self.error(
                "schema::missing_attribute",
                item.span,
                "`use` entry has no `module`",
            )
            .help = Some("write `- module: std/motd`".into());
            return;
        };
        if depth >= MAX_MODULE_DEPTH {
            self.error(
                "schema::module_loop",
                item.span,
                format!("modules nest more than {MAX_MODULE_DEPTH} deep at `{module_name}`"),
            )
            .help = Some("a module probably uses itself".into());
            return;
        }
        // The loader reported modules it could not find.
        let project = self.project;
        let Some(key) = project.uses.get(&(doc.source, module_name.clone())) else {
            return;
        };
        let Some(module) = project.modules.get(key) else {
            return;
        };
        let module_docs: Vec<&Document> = module.documents.iter().collect();
        let params = self.collect_params(&module_docs);
        let mut module_scope = Scope::new();
        for (k, v) in with {
            let Some(decl) = params.get(&k.name) else {
                let message = format!("module `{module_name}` has no parameter `{}`", k.name);
                self.unknown_parameter(k, message, &params, "this module takes no parameters");
                continue;
            };
            let rendered = self.renderer.render(
                self.text(doc.source),
                v,
                base_ctx,
                &scope.sensitive,
                &mut self.acc,
            );
            let value = coerce_param(&decl.ty, to_model(&rendered.node));
            if param_type_matches(&decl.ty, &value) == Some(false) {
                let decl_span = decl.span;
                let ty = decl.ty.clone();
                self.acc.push(
                    Diagnostic::error(
                        "schema::wrong_type",
                        v.span,
                        format!(
                            "`{}` is a {ty} parameter, found {}",
                            k.name,
                            rendered.node.value.type_name()
                        ),
                    )
                    .with_secondary(decl_span, "declared here"),
                );
                continue;
            }
            if rendered.is_sensitive() || decl.sensitive {
                // The module sees the value passed and every secret it was made from.
                let mut ids = self.secrets.collect(&value);
                ids.extend(scope.ids_of(&rendered.reads));
                module_scope.add_sensitive(format!("params.{}", k.name), ids);
            }
            module_scope.values.insert(k.name.clone(), value);
        }
        let mut missing_any = false;
        for (name, decl) in &params {
            if module_scope.values.contains_key(name) {
                continue;
            }
            if decl.sensitive {
                let ids = decl
                    .default
                    .as_ref()
                    .map(|default| self.secrets.collect(default))
                    .unwrap_or_default();
                module_scope.add_sensitive(format!("params.{name}"), ids);
            }
            match &decl.default {
                Some(default) => {
                    module_scope.values.insert(name.clone(), default.clone());
                }
                None => {
                    missing_any = true;
                    let span = with_node.map_or(item.span, |n| n.span);
                    self.acc.push(
                        Diagnostic::error(
                            "schema::missing_parameter",
                            span,
                            format!("module `{module_name}` needs parameter `{name}`"),
                        )
                        .with_secondary(decl.span, "declared here without a default")
                        .with_help(format!("add `{name}: ...` under `with`")),
                    );
                }
            }
        }
        // Rendering the module without its parameters would only repeat the error.
        if missing_any {
            return;
        }
        for module_doc in module_docs {
            self.lower_document(module_doc, &module_scope, node_ctx, out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::lower::testing::{
        add_module, ids_by_node, lower_plain, only, project, text_at,
    };

    const MODULE: &str = "steward: 1
parameters:
  name: { type: string }
resources:
  file:/etc/{{ params.name }}: { content: x }
";

    fn using(site: &str) -> crate::document::Project {
        let mut project = project(&[("site.yaml", site)]);
        add_module(&mut project, "m", MODULE);
        project
    }

    #[test]
    fn a_module_lowers_with_the_values_of_with() {
        let project = using("steward: 1\nuse:\n  - module: m\n    with: { name: motd }\n");
        let (model, diagnostics) = lower_plain(&project);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(ids_by_node(&model)["local"], ["file:/etc/motd"]);
    }

    #[test]
    fn a_missing_module_parameter_is_located_at_with() {
        let site = "steward: 1\nuse:\n  - module: m\n    with: {}\n";
        let project = using(site);
        let (model, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::missing_parameter");
        assert_eq!(diag.span().unwrap().start, site.find("{}").unwrap());
        assert_eq!(diag.message, "module `m` needs parameter `name`");
        assert!(ids_by_node(&model)["local"].is_empty());
    }

    #[test]
    fn an_unknown_with_parameter_suggests_the_declared_one() {
        let project = using("steward: 1\nuse:\n  - module: m\n    with: { nmae: motd }\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::unknown_parameter");
        assert_eq!(text_at(&project, diag), "nmae");
        assert!(diag.help.as_deref().unwrap().contains("name"));
    }

    #[test]
    fn a_use_entry_without_a_module_is_reported() {
        let project = using("steward: 1\nuse:\n  - with: { name: motd }\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::missing_attribute");
        assert_eq!(diag.message, "`use` entry has no `module`");
    }

    #[test]
    fn a_module_that_uses_itself_stops_at_the_depth_limit() {
        let mut project = project(&[("site.yaml", "steward: 1\nuse:\n  - module: loop\n")]);
        add_module(&mut project, "loop", "steward: 1\nuse:\n  - module: loop\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::module_loop");
        let source = project.sources.get(diag.span().unwrap().source);
        assert_eq!(source.name, "loop/main.yaml");
        assert_eq!(diag.message, "modules nest more than 16 deep at `loop`");
    }
}
