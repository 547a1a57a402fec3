//! The JSON Schema of the YAML spelling, generated from the resource registry.
//!
//! Editors use it (`# yaml-language-server: $schema=...`) to complete and check documents.
//! `schema/steward.schema.json` in the repository is this output; a test fails when it is
//! stale. Every typed attribute also accepts a template string, since any value may be one.

use serde_json::{Map, Value as Json, json};

use crate::model::RelationKind;
use crate::resource::{AttrType, Registry};

/// The schema as pretty JSON text with a trailing newline.
pub fn render(registry: &Registry) -> String {
    let mut text = serde_json::to_string_pretty(&schema(registry)).unwrap_or_default();
    text.push('\n');
    text
}

/// The schema as a JSON value.
pub fn schema(registry: &Registry) -> Json {
    let mut defs = Map::new();
    defs.insert(
        "template".into(),
        json!({
            "type": "string",
            "pattern": "\\{[{%#]",
            "description": "a minijinja template; context: params, node, item"
        }),
    );
    defs.insert(
        "reference".into(),
        json!({
            "type": "string",
            "pattern": "^[a-z_]+:.+$",
            "description": "a resource reference, TYPE:NAME"
        }),
    );
    defs.insert("references".into(), json!({
        "anyOf": [{ "$ref": "#/$defs/reference" }, { "type": "array", "items": { "$ref": "#/$defs/reference" } }]
    }));
    let mut resource_patterns = Map::new();
    for ty in registry.iter() {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for attr in ty.schema().attrs {
            let mut attr_schema = attr_type(attr.ty);
            if let Json::Object(object) = &mut attr_schema {
                object.insert("description".into(), Json::String(attr.doc.into()));
            }
            properties.insert(attr.name.into(), attr_schema);
            if attr.required {
                required.push(Json::String(attr.name.into()));
            }
        }
        properties.insert("for_each".into(), json!({
            "description": "declare the resource once per item (a list or map, or a template giving one)",
            "anyOf": [{ "type": "array" }, { "type": "object" }, { "$ref": "#/$defs/template" }]
        }));
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
        let mut def = json!({
            "type": ["object", "null"],
            "description": ty.schema().doc,
            "properties": properties,
            "additionalProperties": false,
        });
        if !required.is_empty()
            && let Json::Object(object) = &mut def
        {
            object.insert("required".into(), Json::Array(required));
        }
        defs.insert(ty.kind().into(), def);
        resource_patterns.insert(
            format!("^{}:.+$", ty.kind()),
            json!({ "$ref": format!("#/$defs/{}", ty.kind()) }),
        );
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:steward:document:1",
        "title": "steward document",
        "description": "A steward document (schema version 1): parameters, nodes, resources, associations and modules.",
        "type": "object",
        "required": ["steward"],
        "additionalProperties": false,
        "properties": {
            "steward": { "const": 1, "description": "the document schema version" },
            "parameters": {
                "type": "object",
                "propertyNames": { "pattern": "^[A-Za-z][A-Za-z0-9_]*$" },
                "additionalProperties": {
                    "type": "object",
                    "required": ["type"],
                    "additionalProperties": false,
                    "properties": {
                        "type": { "enum": ["string", "number", "bool", "list", "map"] },
                        "default": {},
                        "sensitive": { "type": "boolean", "description": "never shown in plans, reports, logs or the store" },
                        "description": { "type": "string" }
                    }
                }
            },
            "nodes": {
                "type": "object",
                "additionalProperties": {
                    "type": ["object", "null"],
                    "additionalProperties": false,
                    "properties": { "tags": { "type": "object", "additionalProperties": { "type": ["string", "number", "boolean"] } } }
                }
            },
            "resources": {
                "type": "object",
                "patternProperties": resource_patterns,
                "additionalProperties": false
            },
            "associations": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": ["targets"],
                    "additionalProperties": false,
                    "properties": {
                        "targets": {
                            "type": "object",
                            "minProperties": 1,
                            "maxProperties": 1,
                            "additionalProperties": false,
                            "properties": {
                                "tags": { "type": "object", "additionalProperties": { "type": ["string", "number", "boolean"] } },
                                "names": { "type": "array", "items": { "type": "string" } },
                                "all": { "const": true }
                            }
                        },
                        "documents": { "type": "array", "items": { "type": "string" }, "description": "paths relative to the project; default: this document" },
                        "parameters": { "type": "object" },
                        "schedule": { "type": "string", "description": "a cron expression or rate(N minutes|hours|days)" },
                        "mode": { "enum": ["detect", "enforce"] },
                        "max_concurrency": { "anyOf": [{ "type": "integer", "minimum": 1 }, { "type": "string", "pattern": "^([0-9]+|[0-9]{1,3}%)$" }] },
                        "max_errors": { "anyOf": [{ "type": "integer", "minimum": 0 }, { "type": "string", "pattern": "^([0-9]+|[0-9]{1,3}%)$" }] },
                        "compliance_severity": { "enum": ["critical", "high", "medium", "low", "informational", "unspecified"] }
                    }
                }
            },
            "use": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["module"],
                    "additionalProperties": false,
                    "properties": {
                        "module": { "type": "string", "description": "std/NAME, or a path relative to this document" },
                        "with": { "type": "object" }
                    }
                }
            }
        },
        "$defs": defs,
    })
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

fn attr_type(ty: AttrType) -> Json {
    match ty {
        AttrType::String | AttrType::Regex | AttrType::PackageEnsure => json!({ "type": "string" }),
        AttrType::ProjectPath => json!({ "type": "string", "not": { "pattern": "^/" } }),
        AttrType::Bool => or_template(json!({ "type": "boolean" })),
        AttrType::Int { min, max } => {
            or_template(json!({ "type": "integer", "minimum": min, "maximum": max }))
        }
        AttrType::Mode => or_template(json!({ "type": "string", "pattern": "^[0-7]{3,4}$" })),
        AttrType::AbsPath => or_template(json!({ "type": "string", "pattern": "^/" })),
        AttrType::Enum(values) => or_template(json!({ "enum": values })),
        AttrType::StringList => {
            json!({ "anyOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }] })
        }
        AttrType::StringMap => or_template(
            json!({ "type": "object", "additionalProperties": { "type": ["string", "number", "boolean"] } }),
        ),
        AttrType::Command => {
            json!({ "anyOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" }, "minItems": 1 }] })
        }
        AttrType::Duration => {
            json!({ "anyOf": [{ "type": "integer", "minimum": 0 }, { "type": "string", "pattern": "^[0-9]+[smh]?$" }, { "$ref": "#/$defs/template" }] })
        }
    }
}
