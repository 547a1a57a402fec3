//! The JSON Schema of the YAML spelling, generated from the resource registry.
//!
//! Editors use it (`# yaml-language-server: $schema=...`) to complete and check documents.
//! `schema/steward.schema.json` in the repository is this output; a test fails when it is
//! stale. It states the rules validation applies wherever JSON Schema can say them, read from
//! the same declarations: each [`NameRule`]'s pattern, each type's required, exclusive and
//! `ensure: absent` attributes and [`AttrRule`]s, and the patterns and constants next to the
//! checks in `schema::value` and `schema::lower`. Every typed attribute, and every NAME, also
//! accepts a template string, since any value may be one. What only `validate` can check is
//! listed in `docs/reference/schema.md`.

use serde_json::{Map, Value as Json, json};

use crate::model::RelationKind;
use crate::resource::{ABS_PATH_PATTERN, AttrRule, AttrSchema, AttrType, Registry, TypeSchema};
use crate::schema::lower::{
    IDENTIFIER_PATTERN, MAX_CONCURRENCY_MIN, MAX_ERRORS_MIN, MODES, NODE_NAME_PATTERN, PERCENT_MAX,
    SCHEMA_VERSION, SEVERITIES,
};
use crate::schema::value::{
    COMMAND_PATTERN, DURATION_PATTERN, MODE_PATTERN, PARAM_TYPES, POSITIVE_DURATION_PATTERN,
    PROJECT_PATH_PATTERN, VERSION_PATTERN, param_json_types,
};

/// Text that makes a string a template (`template::is_template`), unanchored.
const TEMPLATE_PATTERN: &str = "\\{[{%#]";

/// The schema as pretty JSON text with a trailing newline.
pub fn render(registry: &Registry) -> String {
    let mut text = serde_json::to_string_pretty(&schema(registry)).unwrap_or_default();
    text.push('\n');
    text
}

/// The schema as a JSON value.
pub fn schema(registry: &Registry) -> Json {
    let kinds = registry.kinds().join("|");
    let mut defs = Map::new();
    defs.insert(
        "template".into(),
        json!({
            "type": "string",
            "pattern": TEMPLATE_PATTERN,
            "description": "a minijinja template; context: params, node, item"
        }),
    );
    defs.insert(
        "reference".into(),
        json!({
            "anyOf": [
                { "type": "string", "pattern": format!("^(?:{kinds}):[\\s\\S]+$") },
                { "$ref": "#/$defs/template" }
            ],
            "description": "a resource reference, TYPE:NAME"
        }),
    );
    defs.insert(
        "references".into(),
        json!({
            "anyOf": [
                { "$ref": "#/$defs/reference" },
                { "type": "array", "items": { "$ref": "#/$defs/reference" } }
            ]
        }),
    );
    defs.insert(
        "string_map".into(),
        json!({
            "type": "object",
            "additionalProperties": { "type": ["string", "number", "boolean"] }
        }),
    );
    defs.insert("string_list".into(), string_list());
    let mut resource_patterns = Map::new();
    for ty in registry.iter() {
        let kind = ty.kind();
        defs.insert(kind.into(), type_def(ty.schema()));
        // A NAME follows the type's rule, or is a template (rendered, then checked).
        resource_patterns.insert(
            format!(
                "^{kind}:(?:{}|[\\s\\S]*{TEMPLATE_PATTERN}[\\s\\S]*)$",
                ty.schema().name_rule.pattern()
            ),
            json!({ "$ref": format!("#/$defs/{kind}") }),
        );
        // A NAME that is neither an absolute path nor a template needs the path attribute.
        if let Some(path_attr) = ty.schema().path_attr {
            resource_patterns.insert(
                format!(
                    "^{kind}:(?!(?:{ABS_PATH_PATTERN})$)(?![\\s\\S]*{TEMPLATE_PATTERN})[\\s\\S]+$"
                ),
                json!({
                    "type": "object",
                    "required": [path_attr],
                    "description": format!("NAME is not an absolute path, so `{path_attr}` names the file")
                }),
            );
        }
    }
    let param_type_rules: Vec<Json> = PARAM_TYPES
        .iter()
        .map(|ty| {
            json!({
                "if": { "properties": { "type": { "const": ty } }, "required": ["type"] },
                "then": { "properties": { "default": { "type": param_json_types(ty) } } }
            })
        })
        .collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:steward:document:1",
        "title": "steward document",
        "description": "A steward document (schema version 1): parameters, nodes, resources, associations and modules.",
        "type": "object",
        "required": ["steward"],
        "additionalProperties": false,
        "properties": {
            "steward": { "type": "integer", "const": SCHEMA_VERSION, "description": "the document schema version" },
            "parameters": {
                "type": ["object", "null"],
                "propertyNames": { "pattern": IDENTIFIER_PATTERN },
                "additionalProperties": {
                    "type": "object",
                    "required": ["type"],
                    "additionalProperties": false,
                    "properties": {
                        "type": { "enum": PARAM_TYPES },
                        "default": { "not": { "$ref": "#/$defs/template" }, "description": "a value of the declared type; not a template" },
                        "sensitive": { "type": "boolean", "description": "never shown in plans, reports, logs or the store" },
                        "description": { "type": "string" }
                    },
                    "allOf": param_type_rules
                }
            },
            "nodes": {
                "type": ["object", "null"],
                "propertyNames": { "pattern": NODE_NAME_PATTERN },
                "additionalProperties": {
                    "type": ["object", "null"],
                    "additionalProperties": false,
                    "properties": { "tags": { "$ref": "#/$defs/string_map" } }
                }
            },
            "resources": {
                "type": ["object", "null"],
                "description": "resources keyed TYPE:NAME",
                "propertyNames": { "pattern": "^[^:]+:[\\s\\S]+$" },
                "patternProperties": resource_patterns,
                "additionalProperties": false
            },
            "associations": {
                "type": ["object", "null"],
                "additionalProperties": association()
            },
            "use": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["module"],
                    "additionalProperties": false,
                    "properties": {
                        "module": { "type": "string", "description": "std/NAME, or a path relative to this document" },
                        "with": { "type": ["object", "null"], "description": "the module's parameters" }
                    }
                }
            }
        },
        "$defs": defs,
    })
}

fn association() -> Json {
    json!({
        "type": "object",
        "required": ["targets"],
        "additionalProperties": false,
        "properties": {
            "targets": {
                "type": "object",
                "description": "one of tags, names or all",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": false,
                "properties": {
                    "tags": { "$ref": "#/$defs/string_map", "minProperties": 1 },
                    "names": { "$ref": "#/$defs/string_list" },
                    "all": { "const": true }
                }
            },
            "documents": {
                "$ref": "#/$defs/string_list",
                "description": "paths relative to the project; default: this document"
            },
            "parameters": { "type": ["object", "null"] },
            "schedule": {
                "description": "a cron expression or rate(N minutes|hours|days)",
                "anyOf": [
                    {
                        "type": "string",
                        "pattern": "^rate\\(\\s*\\+?0*[1-9][0-9]*\\s+(?:minute|minutes|hour|hours|day|days)\\s*\\)$"
                    },
                    {
                        "type": "string",
                        "pattern": "^\\s*(?:@[A-Za-z]+|[0-9A-Za-z*/,?#-]+(?:\\s+[0-9A-Za-z*/,?#-]+){4,6})\\s*$"
                    }
                ]
            },
            "mode": { "enum": MODES },
            "max_concurrency": rate(MAX_CONCURRENCY_MIN),
            "max_errors": rate(MAX_ERRORS_MIN),
            "compliance_severity": { "enum": SEVERITIES }
        }
    })
}

/// A count of at least `min` or a percentage from `min` to [`PERCENT_MAX`].
fn rate(min: u32) -> Json {
    let count = decimal_at_most(u64::from(u32::MAX));
    let count = if min == 0 {
        format!("0|{count}")
    } else {
        count
    };
    let percent = if min == 0 {
        "[0-9]{1,2}"
    } else {
        "[1-9][0-9]?"
    };
    // `parse::<u8>` takes a leading `+` and zeros; the percentage is trimmed before `%`.
    json!({
        "anyOf": [
            { "type": "integer", "minimum": min, "maximum": u32::MAX },
            { "type": "string", "pattern": format!("^\\+?0*(?:{count})$") },
            {
                "type": "string",
                "pattern": format!("^\\s*\\+?0*(?:{percent}|{PERCENT_MAX})\\s*%$")
            }
        ],
        "description": format!("a count ({min} or more) or a percentage such as \"20%\"")
    })
}

/// A pattern for the decimal numbers from 1 to `max` without leading zeros.
fn decimal_at_most(max: u64) -> String {
    let digits = max.to_string();
    let n_digits = digits.len();
    let mut alternatives = vec![format!("[1-9][0-9]{{0,{}}}", n_digits - 2)];
    for (idx, digit) in digits.bytes().enumerate() {
        let digit = digit - b'0';
        let first = u8::from(idx == 0);
        if digit > first {
            alternatives.push(format!(
                "{}[{first}-{}][0-9]{{{}}}",
                &digits[..idx],
                digit - 1,
                n_digits - idx - 1
            ));
        }
    }
    alternatives.push(digits);
    alternatives.join("|")
}

fn string_list() -> Json {
    json!({ "anyOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }] })
}

/// The schema of one type's body.
fn type_def(schema: &TypeSchema) -> Json {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for attr in schema.attrs {
        let mut attr_schema = attr_json(attr);
        if let Json::Object(object) = &mut attr_schema {
            object.insert("description".into(), Json::String(attr.doc.into()));
        }
        properties.insert(attr.name.into(), attr_schema);
        if attr.required {
            required.push(attr.name);
        }
    }
    properties.insert(
        "for_each".into(),
        json!({
            "description": "declare the resource once per item (a list or map, or a template giving one)",
            "anyOf": [{ "type": "array" }, { "type": "object" }, { "$ref": "#/$defs/template" }]
        }),
    );
    properties.insert(
        "when".into(),
        json!({
            "description": "an expression; the resource is planned only when it is true",
            "type": ["string", "boolean"]
        }),
    );
    for relation in RelationKind::ALL {
        properties.insert(
            relation.as_str().into(),
            json!({
                "$ref": "#/$defs/references",
                "description": relation_doc(relation)
            }),
        );
    }
    let mut rules = Vec::new();
    for group in schema.exclusive {
        for (idx, first) in group.iter().enumerate() {
            for second in &group[idx + 1..] {
                // `required` holds for a null body, which has neither.
                rules.push(json!({ "not": { "type": "object", "required": [first, second] } }));
            }
        }
    }
    let absent =
        json!({ "required": ["ensure"], "properties": { "ensure": { "const": "absent" } } });
    if !schema.present_only.is_empty() {
        let forbidden: Map<String, Json> = schema
            .present_only
            .iter()
            .map(|name| ((*name).to_string(), Json::Bool(false)))
            .collect();
        rules.push(json!({ "if": absent, "then": { "properties": forbidden } }));
    }
    for name in schema.required_when_present {
        // A templated `ensure` may render to `absent`; only `validate` knows.
        rules.push(json!({
            "anyOf": [
                { "required": [name] },
                { "required": ["ensure"], "properties": { "ensure": { "anyOf": [{ "const": "absent" }, { "$ref": "#/$defs/template" }] } } }
            ]
        }));
    }
    // Lowering reads a null body as empty, which is fine unless something is required.
    let body_type = if required.is_empty() && schema.required_when_present.is_empty() {
        json!(["object", "null"])
    } else {
        json!("object")
    };
    let mut def = Map::new();
    def.insert("type".into(), body_type);
    def.insert("description".into(), Json::String(schema.doc.into()));
    def.insert("properties".into(), Json::Object(properties));
    def.insert("additionalProperties".into(), Json::Bool(false));
    if !required.is_empty() {
        def.insert("required".into(), json!(required));
    }
    if !rules.is_empty() {
        def.insert("allOf".into(), Json::Array(rules));
    }
    Json::Object(def)
}

fn relation_doc(relation: RelationKind) -> &'static str {
    match relation {
        RelationKind::Require => "apply after these resources",
        RelationKind::Before => "apply before these resources",
        RelationKind::Notify => {
            "apply before these resources and refresh them when this one changes"
        }
        RelationKind::Subscribe => "apply after these resources and refresh when they change",
    }
}

fn or_template(schema: Json) -> Json {
    json!({ "anyOf": [schema, { "$ref": "#/$defs/template" }] })
}

/// The schema of one attribute's value: its type, then its rule.
fn attr_json(attr: &AttrSchema) -> Json {
    match (attr.ty, attr.rule) {
        (AttrType::String, AttrRule::NonEmpty) => json!({ "type": "string", "minLength": 1 }),
        (AttrType::String, AttrRule::SingleLine) => {
            or_template(json!({ "type": "string", "pattern": "^[^\\n]*$" }))
        }
        (AttrType::Int { min, max }, AttrRule::Positive) => {
            or_template(json!({ "type": "integer", "minimum": min.max(1), "maximum": max }))
        }
        (AttrType::Duration, AttrRule::Positive) => json!({
            "anyOf": [
                { "type": "integer", "minimum": 1 },
                { "type": "string", "pattern": POSITIVE_DURATION_PATTERN },
                { "$ref": "#/$defs/template" }
            ]
        }),
        (ty, _) => attr_type(ty),
    }
}

fn attr_type(ty: AttrType) -> Json {
    match ty {
        // Regular expressions compile with Rust's `regex`, which JSON Schema cannot check.
        AttrType::String | AttrType::Regex => json!({ "type": "string" }),
        AttrType::PackageEnsure => or_template(json!({
            "anyOf": [
                { "enum": ["present", "absent", "latest"] },
                { "type": "string", "pattern": VERSION_PATTERN }
            ]
        })),
        // Rendering cannot make a path that starts with `/` relative.
        AttrType::ProjectPath => json!({ "type": "string", "pattern": PROJECT_PATH_PATTERN }),
        AttrType::Bool => or_template(json!({ "type": "boolean" })),
        AttrType::Int { min, max } => {
            or_template(json!({ "type": "integer", "minimum": min, "maximum": max }))
        }
        AttrType::Mode => or_template(json!({ "type": "string", "pattern": MODE_PATTERN })),
        AttrType::AbsPath => {
            or_template(json!({ "type": "string", "pattern": format!("^(?:{ABS_PATH_PATTERN})$") }))
        }
        AttrType::Enum(values) => or_template(json!({ "enum": values })),
        AttrType::StringList => string_list(),
        AttrType::StringMap => or_template(json!({ "$ref": "#/$defs/string_map" })),
        AttrType::Command => json!({
            "anyOf": [
                { "type": "string", "pattern": COMMAND_PATTERN },
                {
                    "type": "array",
                    "minItems": 1,
                    "prefixItems": [{ "anyOf": [{ "type": "string", "minLength": 1 }, { "type": "integer" }] }],
                    "items": { "type": ["string", "integer"] }
                },
                { "$ref": "#/$defs/template" }
            ]
        }),
        AttrType::Duration => json!({
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": DURATION_PATTERN },
                { "$ref": "#/$defs/template" }
            ]
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::lower::{ASSOCIATION_KEYS, NODE_KEYS, PARAM_KEYS, TOP_LEVEL, USE_KEYS};

    fn keys(value: &Json) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    fn sorted<'a>(names: &[&'a str]) -> Vec<&'a str> {
        let mut names = names.to_vec();
        names.sort_unstable();
        names
    }

    /// The sections and keys the schema allows are the ones lowering reads.
    #[test]
    fn keys_are_lowerings() {
        let schema = schema(&Registry::builtin());
        let properties = &schema["properties"];
        assert_eq!(keys(properties), sorted(TOP_LEVEL));
        let param = &properties["parameters"]["additionalProperties"]["properties"];
        assert_eq!(keys(param), sorted(PARAM_KEYS));
        let node = &properties["nodes"]["additionalProperties"]["properties"];
        assert_eq!(keys(node), sorted(NODE_KEYS));
        let association = &properties["associations"]["additionalProperties"]["properties"];
        assert_eq!(keys(association), sorted(ASSOCIATION_KEYS));
        let use_entry = &properties["use"]["items"]["properties"];
        assert_eq!(keys(use_entry), sorted(USE_KEYS));
    }

    #[test]
    fn decimal_ranges() {
        let pattern = format!("^(?:{})$", decimal_at_most(4_294_967_295));
        let regex = regex::Regex::new(&pattern).unwrap();
        for number in [
            1u64,
            9,
            10,
            99,
            4_000_000_000,
            4_294_967_295,
            4_294_967_296,
            4_295_000_000,
            5_000_000_000,
            10_000_000_000,
            3_999_999_999,
        ] {
            let text = number.to_string();
            assert_eq!(regex.is_match(&text), number <= 4_294_967_295, "{number}");
        }
        assert!(!regex.is_match("0"));
        assert!(!regex.is_match("01"));
    }
}
