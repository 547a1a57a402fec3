//! Lowering: documents → [`Model`], with every mistake reported at its span.
//!
//! This file owns the entry point [`lower`], its [`Config`], the [`ProjectFiles`] trait through
//! which the files documents name are read, and the walk: which documents go to which node
//! (through associations, to `local`, or to the nodes of `steward run --document`), each
//! document's `resources` and `use` lowered in its parameter scope, and the diagnostics
//! helpers every concern shares. Each concern has its own file, extending `Lowerer`:
//! `sections.rs` (top-level sections, schema version), `params.rs` (parameters and where their
//! values come from), `nodes.rs` (declared nodes, the `node` template variable),
//! `associations.rs` (targets, documents, modes, rates, schedules), `modules.rs` (`use`),
//! `resources.rs` (resources, `for_each`, `when`, attributes, relationships), `content.rs`
//! (`template` and `source` read into `content`), `secrets.rs` (sensitive values kept out of
//! identities) and `names.rs` (name rules, each identity declared once).
//!
//! **Architecture Invariant:** no IO but through [`ProjectFiles`]. Lowering never stops at the
//! first mistake: it returns a partial model and every diagnostic, located at its span.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::diag::{Diagnostic, Source, SourceId, Span, did_you_mean};
use crate::document::{self, Document, Key, Node, Project};
use crate::model::{self, Association, Facts, Model, Resource, Value};
use crate::resource::Registry;
use crate::schema::lower::content::DeferredTemplate;
use crate::schema::lower::nodes::node_context;
use crate::schema::lower::params::Scope;
use crate::schema::lower::secrets::Secrets;
use crate::schema::lower::sections::MODULE_LEVEL;
use crate::template::{Renderer, is_template};

mod associations;
mod content;
mod modules;
mod names;
mod nodes;
mod params;
mod resources;
mod secrets;
mod sections;
#[cfg(test)]
mod testing;

// The JSON Schema (`schema::json`) states the same rules; these are the paths it reads them by.
pub(crate) use crate::schema::lower::associations::{
    MAX_CONCURRENCY_MIN, MAX_ERRORS_MIN, MODES, PERCENT_MAX, SEVERITIES,
};
pub(crate) use crate::schema::lower::nodes::NODE_NAME_PATTERN;
pub(crate) use crate::schema::lower::params::IDENTIFIER_PATTERN;
pub(crate) use crate::schema::lower::sections::{SCHEMA_VERSION, TOP_LEVEL};
#[cfg(test)]
pub(crate) use crate::schema::lower::{
    associations::ASSOCIATION_KEYS, modules::USE_KEYS, nodes::NODE_KEYS, params::PARAM_KEYS,
};

/// Reads files that documents name (`template`, `source`), relative to the document.
pub trait ProjectFiles {
    /// The bytes of `relative` next to `document`; an error message when it cannot be read
    /// or lies outside the project.
    fn read(&self, document: &Source, relative: &str) -> Result<Vec<u8>, String>;
}

/// What lowering needs besides the documents.
pub struct Config<'a> {
    /// The resource types.
    pub registry: &'a Registry,
    /// Where `template` and `source` files come from.
    pub files: &'a dyn ProjectFiles,
    /// Facts of the `local` node.
    pub local_facts: Facts,
    /// Parameter values given on the command line or environment, as text; parsed by each
    /// parameter's declared type.
    pub overrides: BTreeMap<String, String>,
    /// Nodes known beyond the documents' `nodes` section: a controller's enrolled agents,
    /// with the tags they enrolled with and the facts they report. Their facts win over a
    /// declaration of the same name.
    pub inventory: Vec<KnownNode>,
    /// `steward run --document`: the documents no association covers go to these nodes
    /// instead of `local`.
    pub adhoc: Option<Vec<String>>,
}

/// A node known from outside the documents (an enrolled agent).
#[derive(Clone, Debug)]
pub struct KnownNode {
    /// Its name.
    pub name: String,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
    /// What it reported.
    pub facts: Facts,
}

/// Validates a project and lowers it to a model. Never fails: the model is partial when the
/// diagnostics hold errors.
pub fn lower(project: &Project, config: &Config<'_>) -> (Model, Vec<Diagnostic>) {
    let mut lowerer = Lowerer {
        project,
        registry: config.registry,
        files: config.files,
        renderer: Renderer::new(),
        last_template: None,
        acc: Vec::new(),
        missing_reported: HashSet::new(),
        secrets: Secrets::default(),
    };
    let model = lowerer.run(config);
    (model, dedupe(lowerer.acc))
}

/// The state of one lowering: the project, where diagnostics go, and what is shared between
/// documents (secrets seen, parameters reported missing, the last template file read).
struct Lowerer<'a> {
    project: &'a Project,
    registry: &'a Registry,
    files: &'a dyn ProjectFiles,
    renderer: Renderer,
    acc: Vec<Diagnostic>,
    /// Parameters already reported as missing a value, by declaration span.
    missing_reported: HashSet<Span>,
    /// Values of sensitive parameters, as text.
    secrets: Secrets,
    /// The last template file deferred for rendering: the items of a `for_each` name the
    /// same file, which is then read, checked and looked up once, not once per item.
    last_template: Option<DeferredTemplate>,
}

impl<'a> Lowerer<'a> {
    fn run(&mut self, config: &Config<'_>) -> Model {
        let project = self.project;
        for doc in &project.documents {
            self.check_sections(doc, TOP_LEVEL, "a document");
        }
        for module in project.modules.values() {
            for doc in &module.documents {
                self.check_sections(doc, MODULE_LEVEL, "a module");
            }
        }
        let top: Vec<&Document> = project.documents.iter().collect();
        let mut params = self.collect_params(&top);
        self.apply_overrides(&mut params, &config.overrides);
        let static_nodes = self.collect_nodes(&top);
        let associations = self.collect_associations(&top, &params);

        let mut nodes = vec![model::Node {
            name: model::LOCAL_NODE.to_string(),
            tags: BTreeMap::new(),
            facts: config.local_facts.clone(),
            resources: Default::default(),
        }];
        for declared in static_nodes {
            match nodes.iter_mut().find(|n| n.name == declared.name) {
                Some(local) => local.tags = declared.tags,
                None => nodes.push(model::Node {
                    facts: Facts {
                        hostname: declared.name.clone(),
                        ..Facts::default()
                    },
                    name: declared.name,
                    tags: declared.tags,
                    resources: Default::default(),
                }),
            }
        }
        for known in &config.inventory {
            match nodes.iter_mut().find(|n| n.name == known.name) {
                Some(node) => {
                    node.facts = known.facts.clone();
                    node.tags.extend(known.tags.clone());
                }
                None => nodes.push(model::Node {
                    name: known.name.clone(),
                    tags: known.tags.clone(),
                    facts: known.facts.clone(),
                    resources: Default::default(),
                }),
            }
        }

        let sources: Vec<SourceId> = dedup_sources(top.iter().map(|doc| doc.source));
        let covered: BTreeSet<SourceId> = associations
            .iter()
            .flat_map(|a| a.documents.iter().copied())
            .collect();
        let mut assigned: BTreeSet<SourceId> = BTreeSet::new();
        for node in &mut nodes {
            let mut work: Vec<(SourceId, Option<&Association>)> = Vec::new();
            let gets_uncovered = match &config.adhoc {
                Some(names) => names.contains(&node.name),
                None => node.name == model::LOCAL_NODE,
            };
            if gets_uncovered {
                work.extend(
                    sources
                        .iter()
                        .filter(|s| !covered.contains(s))
                        .map(|&s| (s, None)),
                );
            }
            for association in associations
                .iter()
                .filter(|a| a.targets.matches(&node.name, &node.tags))
            {
                work.extend(
                    association
                        .documents
                        .iter()
                        .map(|&s| (s, Some(association))),
                );
            }
            let mut resources = Vec::new();
            let mut applied: HashMap<SourceId, &Association> = HashMap::new();
            for (source, association) in work {
                if let Some(association) = association {
                    if let Some(first) = applied.get(&source) {
                        let document = &self.project.sources.get(source).name;
                        self.acc.push(
                            Diagnostic::error(
                                "schema::overlapping_associations",
                                association.span,
                                format!(
                                    "association `{}` applies `{document}` to node `{}`, which association `{}` already does",
                                    association.name, node.name, first.name
                                ),
                            )
                            .with_secondary(first.span, "applied here first")
                            .with_help("target each document at a node through one association"),
                        );
                        continue;
                    }
                    applied.insert(source, association);
                }
                assigned.insert(source);
                let scope = self.scope(&params, association);
                let node_ctx = node_context(&node.name, &node.tags, &node.facts);
                let first = resources.len();
                for doc in top.iter().filter(|doc| doc.source == source) {
                    self.lower_document(doc, &scope, &node_ctx, &mut resources, 0);
                }
                if let Some(association) = association {
                    for res in &mut resources[first..] {
                        res.association = Some(association.name.clone());
                    }
                }
            }
            self.check_duplicates(&resources);
            node.resources = std::sync::Arc::new(resources);
        }
        // Documents whose associations target no known node are still checked, for syntax
        // and schema only: with no node to render for, a variable the template reads from
        // a node (`node.tags.role`) is not an error.
        let mut unassigned = Vec::new();
        for &source in covered.iter().filter(|s| !assigned.contains(s)) {
            let association = associations.iter().find(|a| a.documents.contains(&source));
            let scope = self.scope(&params, association);
            let node_ctx = node_context(model::LOCAL_NODE, &BTreeMap::new(), &config.local_facts);
            let mut resources = Vec::new();
            let checked_from = self.acc.len();
            for doc in top.iter().filter(|doc| doc.source == source) {
                self.lower_document(doc, &scope, &node_ctx, &mut resources, 0);
            }
            let rendered = self.acc.split_off(checked_from);
            self.acc.extend(
                rendered
                    .into_iter()
                    .filter(|d| d.code != "template::undefined"),
            );
            self.check_duplicates(&resources);
            unassigned.push(model::Node {
                name: model::LOCAL_NODE.to_string(),
                tags: BTreeMap::new(),
                facts: config.local_facts.clone(),
                resources: std::sync::Arc::new(resources),
            });
        }
        let secrets = self.take_secrets(&mut nodes, &mut unassigned);
        let model = Model {
            nodes,
            associations,
            unassigned,
            secrets,
        };
        self.check_project_duplicates(&model);
        self.check_names_hold_no_secret(&model);
        model
    }

    fn text(&self, source: SourceId) -> &'a str {
        &self.project.sources.get(source).text
    }

    fn error(
        &mut self,
        code: &'static str,
        span: Span,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.acc.push(Diagnostic::error(code, span, message));
        let last = self.acc.len() - 1;
        &mut self.acc[last]
    }

    fn declared_twice(&mut self, code: &'static str, what: &str, span: Span, first: Span) {
        self.acc.push(
            Diagnostic::error(code, span, format!("{what} is declared twice"))
                .with_label("declared again here")
                .with_secondary(first, "first declared here"),
        );
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        self.acc.push(
            Diagnostic::error(
                "schema::wrong_type",
                node.span,
                format!(
                    "{what} must be {expected}, found {}",
                    node.value.type_name()
                ),
            )
            .with_label(format!("expected {expected}")),
        );
    }

    fn unknown_key(&mut self, key: &Key, what: &str, valid: &[&str]) {
        self.acc.push(
            Diagnostic::error(
                "schema::unknown_key",
                key.span,
                format!("unknown key `{}` in {what}", key.name),
            )
            .with_label("not allowed here")
            .with_help(did_you_mean(&key.name, valid)),
        );
    }

    /// Entries of a map-valued node; reports and returns nothing otherwise (null is empty).
    fn map_entries<'n>(&mut self, node: &'n Node, what: &str) -> &'n [(Key, Node)] {
        match &node.value {
            document::Value::Map(entries) => entries,
            document::Value::Null => &[],
            _ => {
                self.wrong_type(node, what, "a map");
                &[]
            }
        }
    }

    fn lower_document(
        &mut self,
        doc: &Document,
        scope: &Scope,
        node_ctx: &minijinja::Value,
        out: &mut Vec<Resource>,
        depth: usize,
    ) {
        let base_ctx = minijinja::context! { params => scope.jinja(), node => node_ctx.clone() };
        if let Some(section) = doc.root.get("resources") {
            for (key, body) in self.map_entries(section, "`resources`") {
                self.lower_resource(doc, key, body, scope, &base_ctx, out);
            }
        }
        if let Some(section) = doc.root.get("use") {
            let items: &[Node] = match &section.value {
                document::Value::List(items) => items,
                _ => {
                    self.wrong_type(section, "`use`", "a list of modules");
                    &[]
                }
            };
            for item in items {
                self.lower_use(doc, item, scope, &base_ctx, node_ctx, out, depth);
            }
        }
    }
}

fn is_template_node(node: &Node) -> bool {
    node.as_str().is_some_and(is_template)
}

fn dedup_sources(sources: impl Iterator<Item = SourceId>) -> Vec<SourceId> {
    let mut seen = HashSet::new();
    sources.filter(|s| seen.insert(*s)).collect()
}

/// A model value as a template value.
pub(crate) fn to_jinja(value: &Value) -> minijinja::Value {
    match value {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(flag) => minijinja::Value::from(*flag),
        Value::Int(number) => minijinja::Value::from(*number),
        Value::Float(number) => minijinja::Value::from(*number),
        Value::String(text) => minijinja::Value::from(text.clone()),
        Value::Bytes(bytes) => minijinja::Value::from_bytes(bytes.clone()),
        Value::List(items) => {
            minijinja::Value::from(items.iter().map(to_jinja).collect::<Vec<_>>())
        }
        Value::Map(entries) => minijinja::Value::from(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_jinja(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

/// Drops repeats: a document lowered for several nodes reports each mistake once.
fn dedupe(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut seen = HashSet::new();
    diagnostics
        .into_iter()
        .filter(|d| {
            let spans: Vec<(u32, usize, usize)> = d
                .labels
                .iter()
                .map(|l| (l.span.source.0, l.span.start, l.span.end))
                .collect();
            seen.insert((d.code, d.message.clone(), spans))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::model::Facts;
    use crate::schema::KnownNode;
    use crate::schema::lower::testing::{
        Setup, ids_by_node, lower_plain, lower_with, only, project, text_at,
    };

    const NGINX: &str = "steward: 1\nresources:\n  package:nginx: {}\n";

    #[test]
    fn documents_no_association_covers_go_to_local() {
        let project = project(&[("site.yaml", NGINX)]);
        let (model, diagnostics) = lower_plain(&project);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(ids_by_node(&model)["local"], ["package:nginx"]);
        assert!(model.unassigned.is_empty());
    }

    #[test]
    fn ad_hoc_nodes_get_the_uncovered_documents_instead_of_local() {
        let project = project(&[("site.yaml", NGINX)]);
        let facts = Facts {
            hostname: "web-1.example".into(),
            os_family: "debian".into(),
            os_release: "12".into(),
            arch: "aarch64".into(),
            addresses: Vec::new(),
            ..Facts::default()
        };
        let setup = Setup {
            inventory: vec![KnownNode {
                name: "web-1".into(),
                tags: BTreeMap::from([("role".into(), "web".into())]),
                facts: facts.clone(),
            }],
            adhoc: Some(vec!["web-1".into()]),
            ..Setup::default()
        };
        let (model, diagnostics) = lower_with(&project, setup);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let ids = ids_by_node(&model);
        assert_eq!(ids["web-1"], ["package:nginx"]);
        assert!(ids["local"].is_empty(), "{ids:?}");
        let web = model
            .nodes
            .iter()
            .find(|node| node.name == "web-1")
            .unwrap();
        assert_eq!(web.facts, facts);
        assert_eq!(web.tags["role"], "web");
    }

    #[test]
    fn two_associations_applying_one_document_to_a_node_overlap() {
        let project = project(&[(
            "site.yaml",
            "steward: 1
nodes:
  a: {}
associations:
  first: { targets: { all: true } }
  second: { targets: { names: [a] } }
resources:
  package:nginx: {}
",
        )]);
        let (model, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::overlapping_associations");
        assert_eq!(text_at(&project, diag), "second");
        assert_eq!(ids_by_node(&model)["a"], ["package:nginx"]);
    }

    #[test]
    fn a_document_whose_association_targets_no_node_is_still_checked() {
        let project = project(&[(
            "site.yaml",
            "steward: 1
associations:
  ghost: { targets: { names: [nowhere] } }
resources:
  package:nginx: { colour: blue }
",
        )]);
        let (model, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::unknown_attribute");
        assert_eq!(text_at(&project, diag), "colour");
        assert_eq!(model.unassigned.len(), 1);
    }

    #[test]
    fn a_document_no_node_receives_is_not_rendered_for_a_node_it_never_meets() {
        let project = project(&[(
            "site.yaml",
            "steward: 1
associations:
  web: { targets: { tags: { role: web } } }
resources:
  file:/etc/role: { content: \"{{ node.tags.role }}\", colour: blue }
",
        )]);
        let (model, diagnostics) = lower_plain(&project);
        // The schema is checked; the template's node variables are not.
        let diag = only(&diagnostics, "schema::unknown_attribute");
        assert_eq!(text_at(&project, diag), "colour");
        assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
        assert_eq!(model.unassigned.len(), 1);
    }

    #[test]
    fn a_mistake_in_a_document_lowered_for_several_nodes_is_reported_once() {
        let project = project(&[(
            "site.yaml",
            "steward: 1
nodes:
  a: {}
  b: {}
associations:
  all: { targets: { all: true } }
resources:
  package:nginx: { colour: blue }
",
        )]);
        let (_, diagnostics) = lower_plain(&project);
        only(&diagnostics, "schema::unknown_attribute");
    }
}
