//! Parameters: their declarations, values given on the command line or in the environment,
//! and the scope a document renders with (given, else the association's, else the default).
//! Sensitive parameters are marked in the scope here; what that means for names is
//! `secrets.rs`'s job.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::document::{self, Document, Key, Node};
use crate::model::{Association, Value};
use crate::schema::lower::{Lowerer, is_template_node, to_jinja};
use crate::schema::value::{PARAM_TYPES, param_type_matches, to_model};

pub(crate) const PARAM_KEYS: &[&str] = &["type", "default", "sensitive", "description"];

/// A declared parameter.
#[derive(Clone)]
pub(super) struct ParamDecl {
    pub(super) ty: String,
    pub(super) default: Option<Value>,
    /// Given on the command line or in the environment: wins over everything.
    given: Option<Value>,
    pub(super) sensitive: bool,
    pub(super) span: Span,
}

/// The parameter values a document renders with.
#[derive(Clone)]
pub(super) struct Scope {
    pub(super) values: BTreeMap<String, Value>,
    /// Dotted names (`params.x`) whose use taints a value.
    pub(super) sensitive: BTreeSet<String>,
    /// For each sensitive name, the secrets (indices in `Lowerer::secrets`) a template that
    /// reads it can see.
    secret_ids: BTreeMap<String, Vec<usize>>,
}

impl Scope {
    pub(super) fn new() -> Scope {
        Scope {
            values: BTreeMap::new(),
            sensitive: BTreeSet::new(),
            secret_ids: BTreeMap::new(),
        }
    }

    /// Marks `name` sensitive, carrying `ids`.
    pub(super) fn add_sensitive(&mut self, name: String, ids: Vec<usize>) {
        self.secret_ids.entry(name.clone()).or_default().extend(ids);
        self.sensitive.insert(name);
    }

    /// The secrets that templates reading `reads` can see.
    pub(super) fn ids_of<'s>(
        &'s self,
        reads: &'s BTreeSet<String>,
    ) -> impl Iterator<Item = usize> + 's {
        reads
            .iter()
            .filter_map(|name| self.secret_ids.get(name))
            .flatten()
            .copied()
    }

    pub(super) fn jinja(&self) -> minijinja::Value {
        minijinja::Value::from(
            self.values
                .iter()
                .map(|(k, v)| (k.clone(), to_jinja(v)))
                .collect::<BTreeMap<_, _>>(),
        )
    }
}

impl Lowerer<'_> {
    pub(super) fn unknown_parameter(
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

    pub(super) fn collect_params(&mut self, docs: &[&Document]) -> BTreeMap<String, ParamDecl> {
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

    pub(super) fn apply_overrides(
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
    pub(super) fn scope(
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
}

/// A value in a parameter's declared type where the spelling differs harmlessly: a list
/// parameter given one string is a list of one.
pub(super) fn coerce_param(ty: &str, value: Value) -> Value {
    match (ty, value) {
        ("list", Value::String(text)) => Value::List(vec![Value::String(text)]),
        ("number", Value::Int(n)) => Value::Int(n),
        (_, value) => value,
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

#[cfg(test)]
mod tests {
    use crate::schema::lower::params::{IDENTIFIER_PATTERN, is_identifier};

    use crate::model::Value;
    use crate::schema::lower::testing::{
        Setup, lower_plain, lower_with, only, project, resource, text_at,
    };

    const MOTD: &str = "steward: 1
parameters:
  motd: { type: string, default: hello }
resources:
  file:/etc/motd: { content: \"{{ params.motd }}\" }
";

    fn content(model: &crate::model::Model) -> &Value {
        &resource(model, "local", "file:/etc/motd")
            .attrs
            .get("content")
            .unwrap()
            .value
    }

    #[test]
    fn the_default_renders_into_attributes() {
        let project = project(&[("site.yaml", MOTD)]);
        let (model, diagnostics) = lower_plain(&project);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(content(&model), &Value::String("hello".into()));
    }

    #[test]
    fn a_value_given_on_the_command_line_wins_over_the_default() {
        let project = project(&[("site.yaml", MOTD)]);
        let setup = Setup {
            overrides: vec![("motd", "bye")],
            ..Setup::default()
        };
        let (model, diagnostics) = lower_with(&project, setup);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(content(&model), &Value::String("bye".into()));
    }

    #[test]
    fn a_given_value_of_the_wrong_type_is_refused() {
        let project = project(&[(
            "site.yaml",
            "steward: 1\nparameters:\n  port: { type: number, default: 80 }\n",
        )]);
        let setup = Setup {
            overrides: vec![("port", "eighty")],
            ..Setup::default()
        };
        let (_, diagnostics) = lower_with(&project, setup);
        let diag = only(&diagnostics, "schema::wrong_type");
        assert_eq!(
            diag.message,
            "the value given for parameter `port` is not a number"
        );
    }

    #[test]
    fn a_parameter_without_a_type_is_located_at_its_name() {
        let project = project(&[(
            "site.yaml",
            "steward: 1\nparameters:\n  motd: { default: hello }\n",
        )]);
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::missing_attribute");
        assert_eq!(text_at(&project, diag), "motd");
        assert_eq!(diag.message, "parameter `motd` has no `type`");
    }

    #[test]
    fn a_parameter_without_a_value_is_reported_once_for_all_nodes() {
        let project = project(&[(
            "site.yaml",
            "steward: 1
parameters:
  motd: { type: string }
nodes:
  a: {}
  b: {}
associations:
  all: { targets: { all: true } }
",
        )]);
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::missing_parameter");
        assert_eq!(text_at(&project, diag), "motd");
    }

    /// The parameter-name check and its JSON Schema pattern agree.
    #[test]
    fn identifier_pattern_matches_the_check() {
        let identifier = regex::Regex::new(IDENTIFIER_PATTERN).unwrap();
        for name in ["a", "port", "a_1", "A9", "", "1a", "_a", "a-b", "a b", "é"] {
            assert_eq!(identifier.is_match(name), is_identifier(name), "{name:?}");
        }
    }
}
