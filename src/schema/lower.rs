//! Lowering: documents → [`Model`], with every mistake reported at its span.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use crate::diag::{Diagnostic, Source, SourceId, Span, did_you_mean};
use crate::document::{self, Document, Key, Node, Project};
use crate::model::{
    self, Association, Attr, Attrs, ComplianceSeverity, Facts, Mode, Model, Rate, Relation,
    RelationKind, Resource, ResourceId, Schedule, Targets, Value,
};
use crate::resource::{Candidate, Registry, ResourceType};
use crate::schema::value::{PARAM_TYPES, check, param_type_matches, string_map, to_model};
use crate::template::{Renderer, is_template, item_slot};

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
pub(crate) const META: &[&str] = &[
    "for_each",
    "when",
    "require",
    "before",
    "notify",
    "subscribe",
];
pub(crate) const PARAM_KEYS: &[&str] = &["type", "default", "sensitive", "description"];
pub(crate) const NODE_KEYS: &[&str] = &["tags"];
pub(crate) const USE_KEYS: &[&str] = &["module", "with"];
pub(crate) const ASSOCIATION_KEYS: &[&str] = &[
    "targets",
    "documents",
    "parameters",
    "schedule",
    "mode",
    "max_concurrency",
    "max_errors",
    "compliance_severity",
];
pub(crate) const TARGET_KEYS: &[&str] = &["tags", "names", "all"];
pub(crate) const SEVERITIES: &[&str] = &[
    "critical",
    "high",
    "medium",
    "low",
    "informational",
    "unspecified",
];
/// Association modes.
pub(crate) const MODES: &[&str] = &["detect", "enforce"];
/// The smallest `max_concurrency`, as a count or a percentage.
pub(crate) const MAX_CONCURRENCY_MIN: u32 = 1;
/// The help of `schema::sensitive_in_name`.
const SENSITIVE_IN_NAME_HELP: &str = "names and references appear unredacted in plans, reports and the store; keep the secret in an attribute (such as `content`), which is redacted";
/// The smallest `max_errors`, as a count or a percentage.
pub(crate) const MAX_ERRORS_MIN: u32 = 0;
/// The largest percentage of `max_concurrency` and `max_errors`.
pub(crate) const PERCENT_MAX: u8 = 100;
/// How deep `use` may nest before we call it a loop.
const MAX_MODULE_DEPTH: usize = 16;

/// The longest period a `rate(...)` schedule may have: ten years.
const MAX_RATE_SECONDS: u64 = 10 * 365 * 86_400;

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

/// A declared parameter.
#[derive(Clone)]
struct ParamDecl {
    ty: String,
    default: Option<Value>,
    /// Given on the command line or in the environment: wins over everything.
    given: Option<Value>,
    sensitive: bool,
    span: Span,
}

/// The parameter values a document renders with.
#[derive(Clone)]
struct Scope {
    values: BTreeMap<String, Value>,
    /// Dotted names (`params.x`) whose use taints a value.
    sensitive: BTreeSet<String>,
    /// For each sensitive name, the secrets (indices in `Lowerer::secrets`) a template that
    /// reads it can see.
    secret_ids: BTreeMap<String, Vec<usize>>,
}

impl Scope {
    fn new() -> Scope {
        Scope {
            values: BTreeMap::new(),
            sensitive: BTreeSet::new(),
            secret_ids: BTreeMap::new(),
        }
    }

    /// Marks `name` sensitive, carrying `ids`.
    fn add_sensitive(&mut self, name: String, ids: Vec<usize>) {
        self.secret_ids.entry(name.clone()).or_default().extend(ids);
        self.sensitive.insert(name);
    }

    /// The secrets that templates reading `reads` can see.
    fn ids_of<'s>(&'s self, reads: &'s BTreeSet<String>) -> impl Iterator<Item = usize> + 's {
        reads
            .iter()
            .filter_map(|name| self.secret_ids.get(name))
            .flatten()
            .copied()
    }

    fn jinja(&self) -> minijinja::Value {
        minijinja::Value::from(
            self.values
                .iter()
                .map(|(k, v)| (k.clone(), to_jinja(v)))
                .collect::<BTreeMap<_, _>>(),
        )
    }
}

struct StaticNode {
    name: String,
    tags: BTreeMap<String, String>,
}

/// Items of a `for_each` from which templated file contents render in parallel.
const PARALLEL_RENDER_MIN: usize = 64;

/// Template contents of a `for_each` waiting to be rendered together.
#[derive(Default)]
struct PendingContents {
    /// The distinct template texts (one, usually, for thousands of items).
    texts: Vec<std::sync::Arc<str>>,
    /// Index in `texts` by text.
    known: HashMap<std::sync::Arc<str>, usize>,
    jobs: Vec<PendingContent>,
}

struct PendingContent {
    /// Index of the resource in the lowered resources.
    resource: usize,
    /// Index in `texts`.
    text: usize,
    ctx: minijinja::Value,
}

impl PendingContents {
    fn push(&mut self, resource: usize, text: std::sync::Arc<str>, ctx: minijinja::Value) {
        // Items of one loop share the text they were given: no hashing of it per item.
        let last = self
            .texts
            .last()
            .filter(|last| std::sync::Arc::ptr_eq(last, &text))
            .map(|_| self.texts.len() - 1);
        let idx = match last.or_else(|| self.known.get(&*text).copied()) {
            Some(idx) => idx,
            None => {
                self.texts.push(std::sync::Arc::clone(&text));
                self.known.insert(text, self.texts.len() - 1);
                self.texts.len() - 1
            }
        };
        self.jobs.push(PendingContent {
            resource,
            text: idx,
            ctx,
        });
    }
}

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

/// A template file read and compiled for deferred rendering (see `Lowerer::last_template`).
struct DeferredTemplate {
    source: SourceId,
    path: String,
    /// The sensitive names it was checked against.
    sensitive: BTreeSet<String>,
    text: std::sync::Arc<str>,
    /// The sensitive names it reads.
    tainted: BTreeSet<String>,
}

/// The values of sensitive parameters, each once, in the order first seen.
#[derive(Default)]
struct Secrets {
    values: Vec<String>,
    index: HashMap<String, usize>,
}

impl Secrets {
    /// The text forms of a sensitive value worth scrubbing (three characters or more: shorter
    /// ones would garble every message and protect nothing), as indices.
    fn collect(&mut self, value: &Value) -> Vec<usize> {
        let mut ids = Vec::new();
        self.collect_into(value, &mut ids);
        ids
    }

    fn collect_into(&mut self, value: &Value, ids: &mut Vec<usize>) {
        let text = match value {
            Value::String(text) if text.chars().count() >= 3 => text.clone(),
            Value::Int(_) | Value::Float(_) if value.to_string().len() >= 3 => value.to_string(),
            Value::List(items) => {
                items.iter().for_each(|item| self.collect_into(item, ids));
                return;
            }
            Value::Map(entries) => {
                entries
                    .values()
                    .for_each(|item| self.collect_into(item, ids));
                return;
            }
            _ => return,
        };
        let next = self.values.len();
        let idx = *self.index.entry(text.clone()).or_insert(next);
        if idx == next {
            self.values.push(text);
        }
        ids.push(idx);
    }
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
                        os_family: String::new(),
                        os_release: String::new(),
                        arch: String::new(),
                        addresses: Vec::new(),
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
        // Documents whose associations target no known node are still checked.
        let mut unassigned = Vec::new();
        for &source in covered.iter().filter(|s| !assigned.contains(s)) {
            let association = associations.iter().find(|a| a.documents.contains(&source));
            let scope = self.scope(&params, association);
            let node_ctx = node_context(model::LOCAL_NODE, &BTreeMap::new(), &config.local_facts);
            let mut resources = Vec::new();
            for doc in top.iter().filter(|doc| doc.source == source) {
                self.lower_document(doc, &scope, &node_ctx, &mut resources, 0);
            }
            self.check_duplicates(&resources);
            unassigned.push(model::Node {
                name: model::LOCAL_NODE.to_string(),
                tags: BTreeMap::new(),
                facts: config.local_facts.clone(),
                resources: std::sync::Arc::new(resources),
            });
        }
        let secrets = std::mem::take(&mut self.secrets).values;
        // Longest first, so a secret that contains another is scrubbed whole; resources
        // refer to them by their new places.
        let mut order: Vec<usize> = (0..secrets.len()).collect();
        order.sort_by_key(|&idx| (std::cmp::Reverse(secrets[idx].len()), idx));
        let mut new_place = vec![0; secrets.len()];
        for (place, &idx) in order.iter().enumerate() {
            new_place[idx] = place;
        }
        for node in nodes.iter_mut().chain(unassigned.iter_mut()) {
            if node.resources.iter().all(|res| res.secrets.is_empty()) {
                continue;
            }
            for res in std::sync::Arc::make_mut(&mut node.resources) {
                for idx in &mut res.secrets {
                    *idx = new_place[*idx];
                }
                res.secrets.sort_unstable();
            }
        }
        let secrets = order.into_iter().map(|idx| secrets[idx].clone()).collect();
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

    fn unknown_parameter(
        &mut self,
        key: &Key,
        message: String,
        params: &BTreeMap<String, ParamDecl>,
        none_help: &str,
    ) {
        let names: Vec<&str> = params.keys().map(String::as_str).collect();
        let help = if names.is_empty() {
            none_help.to_string()
        } else {
            did_you_mean(&key.name, &names)
        };
        self.error("schema::unknown_parameter", key.span, message)
            .help = Some(help);
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

    fn check_sections(&mut self, doc: &Document, allowed: &[&str], what: &str) {
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

    fn collect_params(&mut self, docs: &[&Document]) -> BTreeMap<String, ParamDecl> {
        let mut params: BTreeMap<String, ParamDecl> = BTreeMap::new();
        let mut first_span: HashMap<String, Span> = HashMap::new();
        for doc in docs {
            let Some(section) = doc.root.get("parameters") else {
                continue;
            };
            for (key, body) in self.map_entries(section, "`parameters`") {
                let Some(decl) = self.param_decl(key, body) else {
                    continue;
                };
                if let Some(&first) = first_span.get(&key.name) {
                    self.declared_twice(
                        "schema::duplicate_parameter",
                        &format!("parameter `{}`", key.name),
                        key.span,
                        first,
                    );
                    continue;
                }
                first_span.insert(key.name.clone(), key.span);
                params.insert(key.name.clone(), decl);
            }
        }
        params
    }

    fn param_decl(&mut self, key: &Key, body: &Node) -> Option<ParamDecl> {
        if !is_identifier(&key.name) {
            self.error(
                "schema::invalid_name",
                key.span,
                format!("`{}` is not a valid parameter name", key.name),
            )
            .help = Some("use letters, digits and `_`, starting with a letter".into());
        }
        let entries = self.map_entries(body, &format!("parameter `{}`", key.name));
        let mut decl = ParamDecl {
            ty: String::new(),
            default: None,
            given: None,
            sensitive: false,
            span: key.span,
        };
        let mut default_node = None;
        for (k, v) in entries {
            match k.name.as_str() {
                "type" => match v.as_str() {
                    Some(ty) if PARAM_TYPES.contains(&ty) => decl.ty = ty.to_string(),
                    Some(ty) => {
                        self.error(
                            "schema::invalid_value",
                            v.span,
                            format!("unknown parameter type `{ty}`"),
                        )
                        .help = Some(did_you_mean(ty, PARAM_TYPES));
                    }
                    None => self.wrong_type(v, "`type`", "a string"),
                },
                "default" => {
                    if is_template_node(v) {
                        self.error(
                            "schema::template_in_default",
                            v.span,
                            "parameter defaults cannot be templates",
                        );
                    }
                    default_node = Some(v);
                    decl.default = Some(to_model(v));
                }
                "sensitive" => match v.value {
                    document::Value::Bool(flag) => decl.sensitive = flag,
                    _ => self.wrong_type(v, "`sensitive`", "true or false"),
                },
                "description" => {
                    if v.as_str().is_none() {
                        self.wrong_type(v, "`description`", "a string");
                    }
                }
                _ => self.unknown_key(k, "a parameter", PARAM_KEYS),
            }
        }
        if decl.ty.is_empty() {
            if !entries.iter().any(|(k, _)| k.name == "type") {
                self.error(
                    "schema::missing_attribute",
                    key.span,
                    format!("parameter `{}` has no `type`", key.name),
                )
                .help = Some(format!(
                    "add `type:` with one of {}",
                    PARAM_TYPES.join(", ")
                ));
            }
            return None;
        }
        if let (Some(default), Some(node)) = (&decl.default, default_node) {
            let default = coerce_param(&decl.ty, default.clone());
            if param_type_matches(&decl.ty, &default) == Some(false) {
                self.acc.push(
                    Diagnostic::error(
                        "schema::wrong_type",
                        node.span,
                        format!(
                            "the default of `{}` is {}, but its type is {}",
                            key.name,
                            node.value.type_name(),
                            decl.ty
                        ),
                    )
                    .with_secondary(key.span, "declared here"),
                );
            }
            decl.default = Some(default);
        }
        Some(decl)
    }

    fn apply_overrides(
        &mut self,
        params: &mut BTreeMap<String, ParamDecl>,
        overrides: &BTreeMap<String, String>,
    ) {
        for (name, text) in overrides {
            let Some(decl) = params.get_mut(name) else {
                let names: Vec<&str> = params.keys().map(String::as_str).collect();
                let help = if names.is_empty() {
                    "the project declares no parameters".to_string()
                } else {
                    did_you_mean(name, &names)
                };
                self.acc.push(
                    Diagnostic::plain(
                        "schema::unknown_parameter",
                        format!("no parameter `{name}` to set"),
                    )
                    .with_help(help),
                );
                continue;
            };
            let value = match decl.ty.as_str() {
                "string" => Some(Value::String(text.clone())),
                "number" => text
                    .parse::<i64>()
                    .map(Value::Int)
                    .ok()
                    .or_else(|| text.parse::<f64>().map(Value::Float).ok()),
                "bool" => text.parse::<bool>().map(Value::Bool).ok(),
                _ => serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .map(from_json),
            };
            match value.filter(|v| param_type_matches(&decl.ty, v) == Some(true)) {
                Some(value) => decl.given = Some(value),
                None => self.acc.push(
                    Diagnostic::plain(
                        "schema::wrong_type",
                        format!(
                            "the value given for parameter `{name}` is not a {}",
                            decl.ty
                        ),
                    )
                    .with_help(if matches!(decl.ty.as_str(), "list" | "map") {
                        "give lists and maps as JSON"
                    } else {
                        "check the value"
                    }),
                ),
            }
        }
    }

    /// Values for every declared parameter: given on the command line, else the
    /// association's, else the default.
    fn scope(
        &mut self,
        params: &BTreeMap<String, ParamDecl>,
        association: Option<&Association>,
    ) -> Scope {
        let mut scope = Scope::new();
        for (name, decl) in params {
            if decl.sensitive {
                scope.add_sensitive(format!("params.{name}"), Vec::new());
            }
            let value = decl
                .given
                .as_ref()
                .or_else(|| association.and_then(|a| a.parameters.get(name)))
                .or(decl.default.as_ref());
            match value {
                Some(value) => {
                    if decl.sensitive {
                        let ids = self.secrets.collect(value);
                        scope.add_sensitive(format!("params.{name}"), ids);
                    }
                    scope.values.insert(name.clone(), value.clone());
                }
                None => {
                    if self.missing_reported.insert(decl.span) {
                        self.acc.push(
                            Diagnostic::error("schema::missing_parameter", decl.span, format!("parameter `{name}` has no value"))
                                .with_label("no default")
                                .with_help(format!(
                                    "give it a `default`, set it in an association's `parameters`, or pass `--param {name}=...` (or STEWARD_PARAM_{name})"
                                )),
                        );
                    }
                }
            }
        }
        scope
    }

    fn collect_nodes(&mut self, docs: &[&Document]) -> Vec<StaticNode> {
        let mut nodes: Vec<StaticNode> = Vec::new();
        let mut first_span: HashMap<String, Span> = HashMap::new();
        for doc in docs {
            let Some(section) = doc.root.get("nodes") else {
                continue;
            };
            for (key, body) in self.map_entries(section, "`nodes`") {
                if !is_node_name(&key.name) {
                    self.error(
                        "schema::invalid_name",
                        key.span,
                        format!("`{}` is not a valid node name", key.name),
                    )
                    .help = Some("use letters, digits, `.`, `_` and `-`".into());
                    continue;
                }
                if let Some(&first) = first_span.get(&key.name) {
                    self.declared_twice(
                        "schema::duplicate_node",
                        &format!("node `{}`", key.name),
                        key.span,
                        first,
                    );
                    continue;
                }
                first_span.insert(key.name.clone(), key.span);
                let mut tags = BTreeMap::new();
                for (k, v) in self.map_entries(body, &format!("node `{}`", key.name)) {
                    match k.name.as_str() {
                        "tags" => match string_map(v) {
                            Ok(map) => tags = map,
                            Err(mismatch) => {
                                self.error(
                                    "schema::wrong_type",
                                    v.span,
                                    format!("`tags`: {}", mismatch.message),
                                );
                            }
                        },
                        _ => self.unknown_key(k, "a node", NODE_KEYS),
                    }
                }
                nodes.push(StaticNode {
                    name: key.name.clone(),
                    tags,
                });
            }
        }
        nodes
    }

    fn collect_associations(
        &mut self,
        docs: &[&Document],
        params: &BTreeMap<String, ParamDecl>,
    ) -> Vec<Association> {
        let by_path: HashMap<PathBuf, SourceId> = docs
            .iter()
            .filter_map(|doc| {
                let path = self.project.sources.get(doc.source).path.as_ref()?;
                Some((path.canonicalize().ok()?, doc.source))
            })
            .collect();
        let mut associations: Vec<Association> = Vec::new();
        for doc in docs {
            let Some(section) = doc.root.get("associations") else {
                continue;
            };
            for (key, body) in self.map_entries(section, "`associations`") {
                if let Some(first) = associations.iter().find(|a| a.name == key.name) {
                    let first = first.span;
                    self.declared_twice(
                        "schema::duplicate_association",
                        &format!("association `{}`", key.name),
                        key.span,
                        first,
                    );
                    continue;
                }
                if let Some(association) = self.association(doc, key, body, params, &by_path) {
                    associations.push(association);
                }
            }
        }
        associations
    }

    fn association(
        &mut self,
        doc: &Document,
        key: &Key,
        body: &Node,
        params: &BTreeMap<String, ParamDecl>,
        by_path: &HashMap<PathBuf, SourceId>,
    ) -> Option<Association> {
        let mut association = Association {
            name: key.name.clone(),
            span: key.span,
            source: doc.source,
            targets: Targets::Names(Vec::new()),
            documents: vec![doc.source],
            parameters: BTreeMap::new(),
            schedule: None,
            mode: Mode::Enforce,
            max_concurrency: Rate::Percent(100),
            max_errors: Rate::Percent(100),
            compliance_severity: ComplianceSeverity::Unspecified,
        };
        let mut has_targets = false;
        let mut has_targets_error = false;
        for (k, v) in self.map_entries(body, &format!("association `{}`", key.name)) {
            match k.name.as_str() {
                "targets" => match self.targets(v) {
                    Some(targets) => {
                        has_targets = true;
                        association.targets = targets;
                    }
                    // Reported; the rest of the association is still checked.
                    None => has_targets_error = true,
                },
                "documents" => {
                    association.documents = self.association_documents(v, by_path);
                }
                "parameters" => {
                    for (pk, pv) in self.map_entries(v, "`parameters`") {
                        let Some(decl) = params.get(&pk.name) else {
                            let message = format!("no parameter `{}` is declared", pk.name);
                            self.unknown_parameter(
                                pk,
                                message,
                                params,
                                "declare it under `parameters` first",
                            );
                            continue;
                        };
                        let value = coerce_param(&decl.ty, to_model(pv));
                        if param_type_matches(&decl.ty, &value) == Some(false) {
                            let decl_span = decl.span;
                            let ty = decl.ty.clone();
                            self.acc.push(
                                Diagnostic::error(
                                    "schema::wrong_type",
                                    pv.span,
                                    format!(
                                        "`{}` is a {ty} parameter, found {}",
                                        pk.name,
                                        pv.value.type_name()
                                    ),
                                )
                                .with_secondary(decl_span, "declared here"),
                            );
                            continue;
                        }
                        association.parameters.insert(pk.name.clone(), value);
                    }
                }
                "schedule" => association.schedule = self.schedule(v),
                "mode" => match v.as_str() {
                    Some("detect") => association.mode = Mode::Detect,
                    Some("enforce") => association.mode = Mode::Enforce,
                    Some(other) => {
                        self.error(
                            "schema::invalid_value",
                            v.span,
                            format!("`{other}` is not a mode"),
                        )
                        .help = Some(did_you_mean(other, MODES));
                    }
                    None => self.wrong_type(v, "`mode`", "detect or enforce"),
                },
                "max_concurrency" => {
                    if let Some(rate) = self.rate(v, MAX_CONCURRENCY_MIN) {
                        association.max_concurrency = rate;
                    }
                }
                "max_errors" => {
                    if let Some(rate) = self.rate(v, MAX_ERRORS_MIN) {
                        association.max_errors = rate;
                    }
                }
                "compliance_severity" => match v.as_str() {
                    Some(text) if SEVERITIES.contains(&text) => {
                        association.compliance_severity = severity(text);
                    }
                    Some(text) => {
                        self.error(
                            "schema::invalid_value",
                            v.span,
                            format!("`{text}` is not a severity"),
                        )
                        .help = Some(did_you_mean(text, SEVERITIES));
                    }
                    None => self.wrong_type(v, "`compliance_severity`", "a severity"),
                },
                _ => self.unknown_key(k, "an association", ASSOCIATION_KEYS),
            }
        }
        if has_targets_error {
            return None;
        }
        if !has_targets {
            self.error(
                "schema::missing_attribute",
                key.span,
                format!("association `{}` has no `targets`", key.name),
            )
            .help = Some(
                "add `targets: { tags: { role: web } }`, `{ names: [web-1] }` or `{ all: true }`"
                    .into(),
            );
            return None;
        }
        Some(association)
    }

    fn targets(&mut self, node: &Node) -> Option<Targets> {
        let entries = self.map_entries(node, "`targets`");
        let mut found: Option<(Targets, Span)> = None;
        for (k, v) in entries {
            let targets = match k.name.as_str() {
                "tags" => match string_map(v) {
                    Ok(tags) if !tags.is_empty() => Targets::Tags(tags),
                    Ok(_) => {
                        self.error("schema::invalid_value", v.span, "`tags` is empty");
                        continue;
                    }
                    Err(mismatch) => {
                        self.error(
                            "schema::wrong_type",
                            v.span,
                            format!("`tags`: {}", mismatch.message),
                        );
                        continue;
                    }
                },
                "names" => match check(crate::resource::AttrType::StringList, v) {
                    Ok(Value::List(items)) => Targets::Names(
                        items
                            .iter()
                            .filter_map(|i| i.as_str().map(String::from))
                            .collect(),
                    ),
                    _ => {
                        self.wrong_type(v, "`names`", "a list of node names");
                        continue;
                    }
                },
                "all" => match v.value {
                    document::Value::Bool(true) => Targets::All,
                    _ => {
                        self.error("schema::invalid_value", v.span, "`all` must be true")
                            .help = Some("to target nothing, remove the association".into());
                        continue;
                    }
                },
                _ => {
                    self.unknown_key(k, "`targets`", TARGET_KEYS);
                    continue;
                }
            };
            if let Some((_, first)) = &found {
                let first = *first;
                self.acc.push(
                    Diagnostic::error(
                        "schema::conflicting_attributes",
                        k.span,
                        "`targets` takes one of tags, names or all",
                    )
                    .with_secondary(first, "already given here"),
                );
                continue;
            }
            found = Some((targets, k.span));
        }
        match found {
            Some((targets, _)) => Some(targets),
            None if entries
                .iter()
                .any(|(k, _)| !TARGET_KEYS.contains(&k.name.as_str())) =>
            {
                None
            }
            None => {
                self.error(
                    "schema::missing_attribute",
                    node.span,
                    "`targets` selects no nodes",
                )
                .help = Some("give `tags`, `names` or `all: true`".into());
                None
            }
        }
    }

    fn association_documents(
        &mut self,
        node: &Node,
        by_path: &HashMap<PathBuf, SourceId>,
    ) -> Vec<SourceId> {
        let items: Vec<&Node> = match &node.value {
            document::Value::List(items) => items.iter().collect(),
            document::Value::String(_) => vec![node],
            _ => {
                self.wrong_type(node, "`documents`", "a list of document paths");
                return Vec::new();
            }
        };
        let mut res = Vec::new();
        for item in items {
            let Some(text) = item.as_str() else {
                self.wrong_type(item, "a document path", "a string");
                continue;
            };
            let path = self.project.root.join(text);
            match path.canonicalize().ok().and_then(|p| by_path.get(&p)) {
                Some(&source) => res.push(source),
                None => {
                    let known: Vec<String> = by_path
                        .values()
                        .filter_map(|&s| {
                            let p = self.project.sources.get(s).path.as_ref()?;
                            Some(
                                p.strip_prefix(&self.project.root)
                                    .unwrap_or(p)
                                    .display()
                                    .to_string(),
                            )
                        })
                        .collect();
                    let refs: Vec<&str> = known.iter().map(String::as_str).collect();
                    self.error(
                        "schema::unknown_document",
                        item.span,
                        format!("no document `{text}` in the project"),
                    )
                    .help = Some(format!(
                        "paths are relative to the project directory; {}",
                        did_you_mean(text, &refs)
                    ));
                }
            }
        }
        res
    }

    fn schedule(&mut self, node: &Node) -> Option<Schedule> {
        let Some(text) = node.as_str() else {
            self.wrong_type(node, "`schedule`", "a cron expression or rate(...)");
            return None;
        };
        if let Some(inner) = text.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) {
            let mut parts = inner.split_whitespace();
            let amount = parts
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n > 0);
            let unit = match parts.next() {
                Some("minute" | "minutes") => Some(60),
                Some("hour" | "hours") => Some(3600),
                Some("day" | "days") => Some(86_400),
                _ => None,
            };
            // Ten years at most: a longer period is a typo, and keeps time arithmetic exact.
            let seconds = amount
                .zip(unit)
                .and_then(|(amount, unit)| amount.checked_mul(unit))
                .filter(|&seconds| seconds <= MAX_RATE_SECONDS);
            return match (seconds, parts.next()) {
                (Some(seconds), None) => Some(Schedule::Rate {
                    seconds,
                    text: text.to_string(),
                }),
                _ => {
                    self.error(
                        "schema::invalid_schedule",
                        node.span,
                        format!("`{text}` is not a rate"),
                    )
                    .help = Some(
                        "write rate(N minutes), rate(N hours) or rate(N days) with N > 0, at most ten years"
                            .into(),
                    );
                    None
                }
            };
        }
        match text.parse::<croner::Cron>() {
            Ok(_) => Some(Schedule::Cron(text.to_string())),
            Err(err) => {
                self.error("schema::invalid_schedule", node.span, format!("`{text}` is not a cron expression: {err}"))
                    .help = Some("use five fields (minute hour day month weekday), e.g. \"0 */2 * * *\", or rate(30 minutes)".into());
                None
            }
        }
    }

    fn rate(&mut self, node: &Node, min: u32) -> Option<Rate> {
        let parsed = match &node.value {
            document::Value::Int(n) => u32::try_from(*n)
                .ok()
                .filter(|n| *n >= min)
                .map(Rate::Count),
            document::Value::String(text) => match text.strip_suffix('%') {
                Some(pct) => pct
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= PERCENT_MAX && u32::from(*p) >= min)
                    .map(Rate::Percent),
                None => text
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= min)
                    .map(Rate::Count),
            },
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                "schema::invalid_value",
                node.span,
                "expected a count or a percentage",
            )
            .help = Some(format!(
                "write a number ({min} or more) such as 2, or a percentage such as \"20%\""
            ));
        }
        parsed
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

    #[allow(clippy::too_many_arguments)]
    fn lower_use(
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

    fn lower_resource(
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

    /// Renders the deferred contents of a `for_each` in parallel and puts them in place; a
    /// failed one is rendered again alone, which reports the error and drops the content.
    fn render_pending(
        &mut self,
        pending: PendingContents,
        source: SourceId,
        scope: &Scope,
        out: &mut [Resource],
    ) {
        let texts: Vec<&str> = pending.texts.iter().map(|text| &**text).collect();
        let jobs: Vec<(usize, &minijinja::Value)> = pending
            .jobs
            .iter()
            .map(|job| (job.text, &job.ctx))
            .collect();
        let rendered = self.renderer.render_prepared(&texts, &jobs);
        for (job, rendered) in pending.jobs.iter().zip(rendered) {
            let Some(resource) = out.get_mut(job.resource) else {
                continue;
            };
            match rendered {
                Some(text) => {
                    if let Some(content) = resource.attrs.get_mut("content") {
                        content.value = Value::String(text);
                    }
                }
                None => {
                    resource.attrs.remove("content");
                    let mut attrs = std::mem::take(&mut resource.attrs);
                    // The same text as prepared: its reads were counted then.
                    self.resolve_content(source, &mut attrs, &job.ctx, scope, None);
                    if let Some(resource) = out.get_mut(job.resource) {
                        resource.attrs = attrs;
                    }
                }
            }
        }
    }

    /// A file's `template` or `source` becomes its desired `content` (text, or bytes for a
    /// binary source), read from the project and, for templates, rendered like any value.
    /// Returns the sensitive names the template reads.
    fn resolve_content(
        &mut self,
        source: SourceId,
        attrs: &mut Attrs,
        ctx: &minijinja::Value,
        scope: &Scope,
        deferred: Option<(&mut PendingContents, usize)>,
    ) -> BTreeSet<String> {
        let (name, path, span) = match (attrs.get("template"), attrs.get("source")) {
            (Some(attr), _) => (
                "template",
                attr.value.as_str().unwrap_or_default().to_string(),
                attr.span,
            ),
            (None, Some(attr)) => (
                "source",
                attr.value.as_str().unwrap_or_default().to_string(),
                attr.span,
            ),
            (None, None) => return BTreeSet::new(),
        };
        let mut deferred = deferred;
        if name == "template"
            && let Some((pending, resource)) = deferred.as_mut()
            && let Some(known) = self.last_template.as_ref().filter(|known| {
                known.source == source && known.path == path && known.sensitive == scope.sensitive
            })
        {
            // The same file as the item before: read and compiled already.
            pending.push(*resource, std::sync::Arc::clone(&known.text), ctx.clone());
            attrs.insert(
                "content".into(),
                Attr {
                    value: Value::String(String::new()),
                    span,
                    sensitive: !known.tainted.is_empty(),
                },
            );
            return known.tainted.clone();
        }
        let document = self.project.sources.get(source);
        let bytes = match self.files.read(document, &path) {
            Ok(bytes) => bytes,
            Err(message) => {
                self.error("schema::missing_file", span, message).help = Some(format!(
                    "`{name}` paths are relative to the document's directory"
                ));
                return BTreeSet::new();
            }
        };
        let (value, reads) = if name == "source" {
            match String::from_utf8(bytes) {
                Ok(text) => (Value::String(text), BTreeSet::new()),
                Err(err) => (Value::Bytes(err.into_bytes()), BTreeSet::new()),
            }
        } else {
            let Ok(text) = String::from_utf8(bytes) else {
                self.error(
                    "schema::missing_file",
                    span,
                    format!("template `{path}` is not UTF-8 text"),
                );
                return BTreeSet::new();
            };
            if let Some((pending, resource)) = deferred
                && let Some(reads) = self.renderer.prepare_file(&text, &scope.sensitive)
            {
                // Rendered after the loop; the attribute holds its place meanwhile.
                let text: std::sync::Arc<str> = text.into();
                self.last_template = Some(DeferredTemplate {
                    source,
                    path: path.clone(),
                    sensitive: scope.sensitive.clone(),
                    text: std::sync::Arc::clone(&text),
                    tainted: reads.clone(),
                });
                pending.push(resource, text, ctx.clone());
                attrs.insert(
                    "content".into(),
                    Attr {
                        value: Value::String(String::new()),
                        span,
                        sensitive: !reads.is_empty(),
                    },
                );
                return reads;
            }
            match self.renderer.render_file(&text, ctx, &scope.sensitive) {
                Ok((rendered, reads)) => (Value::String(rendered), reads),
                Err(problem) => {
                    self.error(
                        "template::error",
                        span,
                        format!("in template `{path}`: {problem}"),
                    )
                    .help = Some(
                        "the template context has `params`, `node` and, inside `for_each`, `item`"
                            .into(),
                    );
                    return BTreeSet::new();
                }
            }
        };
        attrs.insert(
            "content".into(),
            Attr {
                value,
                span,
                sensitive: !reads.is_empty(),
            },
        );
        reads
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

    /// Refuses a sensitive value where it would become part of an identity: identities are
    /// shown, stored and sent to every node unredacted. The message names the parameters
    /// read, never the value.
    fn sensitive_in_name(&mut self, span: Span, what: &str, reads: &BTreeSet<String>) {
        let names: Vec<String> = reads.iter().map(|name| format!("`{name}`")).collect();
        self.error(
            "schema::sensitive_in_name",
            span,
            format!(
                "{what} uses the sensitive {} {}",
                if names.len() == 1 { "value" } else { "values" },
                names.join(", ")
            ),
        )
        .help = Some(SENSITIVE_IN_NAME_HELP.into());
    }

    /// The last line of defence for [`Lowerer::sensitive_in_name`]: an identity that contains
    /// a sensitive value however it got there (written out, or through a value that was not
    /// marked sensitive) is refused too.
    fn check_names_hold_no_secret(&mut self, model: &Model) {
        if model.secrets.is_empty() {
            return;
        }
        let holds_secret = |text: &str| model.secrets.iter().any(|secret| text.contains(secret));
        let mut found: Vec<(Span, String)> = Vec::new();
        for res in model
            .nodes
            .iter()
            .chain(&model.unassigned)
            .flat_map(|node| node.resources.iter())
        {
            if holds_secret(&res.id.name) {
                found.push((res.span, format!("the name of `{}` resource", res.id.kind)));
            }
            for relation in &res.relations {
                if holds_secret(&relation.target.name) {
                    let what = format!("a `{}` reference", relation.kind.as_str());
                    found.push((relation.span, what));
                }
            }
        }
        for association in &model.associations {
            if holds_secret(&association.name) {
                found.push((association.span, "an association's name".to_string()));
            }
        }
        for (span, what) in found {
            self.error(
                "schema::sensitive_in_name",
                span,
                format!("{what} contains the value of a sensitive parameter"),
            )
            .help = Some(SENSITIVE_IN_NAME_HELP.into());
        }
    }

    fn check_name(&mut self, ty: &dyn ResourceType, id: &ResourceId, span: Span) -> bool {
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

    /// One identity declared in two places is an error even when the two land on different
    /// nodes (SPEC: once anywhere in a project). The same declaration reaching several
    /// nodes is not a duplicate.
    fn check_project_duplicates(&mut self, model: &Model) {
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
    fn check_duplicates(&mut self, resources: &[Resource]) {
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

fn is_template_node(node: &Node) -> bool {
    node.as_str().is_some_and(is_template)
}

/// A value in a parameter's declared type where the spelling differs harmlessly: a list
/// parameter given one string is a list of one.
fn coerce_param(ty: &str, value: Value) -> Value {
    match (ty, value) {
        ("list", Value::String(text)) => Value::List(vec![Value::String(text)]),
        ("number", Value::Int(n)) => Value::Int(n),
        (_, value) => value,
    }
}

fn severity(text: &str) -> ComplianceSeverity {
    ComplianceSeverity::parse(text).unwrap_or(ComplianceSeverity::Unspecified)
}

fn dedup_sources(sources: impl Iterator<Item = SourceId>) -> Vec<SourceId> {
    let mut seen = HashSet::new();
    sources.filter(|s| seen.insert(*s)).collect()
}

/// The `node` template variable.
fn node_context(name: &str, tags: &BTreeMap<String, String>, facts: &Facts) -> minijinja::Value {
    minijinja::context! {
        name => name,
        hostname => facts.hostname.clone(),
        os => minijinja::context! { family => facts.os_family.clone(), release => facts.os_release.clone() },
        arch => facts.arch.clone(),
        tags => tags.clone(),
        addresses => facts.addresses.clone(),
    }
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

fn from_json(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(flag) => Value::Bool(flag),
        serde_json::Value::Number(number) => number
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Float(number.as_f64().unwrap_or(0.0))),
        serde_json::Value::String(text) => Value::String(text),
        serde_json::Value::Array(items) => Value::List(items.into_iter().map(from_json).collect()),
        serde_json::Value::Object(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k, from_json(v)))
                .collect(),
        ),
    }
}

/// [`is_identifier`] as a JSON Schema pattern; a test holds the two to the same verdicts.
pub(crate) const IDENTIFIER_PATTERN: &str = "^[A-Za-z][A-Za-z0-9_]*$";

/// A parameter name.
fn is_identifier(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// [`is_node_name`] as a JSON Schema pattern; a test holds the two to the same verdicts.
pub(crate) const NODE_NAME_PATTERN: &str = "^[-A-Za-z0-9._]{1,253}$";

/// A node name: letters, digits, `.`, `_` and `-`.
fn is_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
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
    use super::*;

    /// The name checks and their JSON Schema patterns agree.
    #[test]
    fn name_patterns_match_checks() {
        let identifier = regex::Regex::new(IDENTIFIER_PATTERN).unwrap();
        for name in ["a", "port", "a_1", "A9", "", "1a", "_a", "a-b", "a b", "é"] {
            assert_eq!(identifier.is_match(name), is_identifier(name), "{name:?}");
        }
        let node = regex::Regex::new(NODE_NAME_PATTERN).unwrap();
        let long = "a".repeat(254);
        for name in [
            "web-1",
            "db.example.com",
            "a_b",
            "",
            "a b",
            "a/b",
            "é",
            &long[1..],
            &long,
        ] {
            assert_eq!(node.is_match(name), is_node_name(name), "{name:?}");
        }
    }
}
