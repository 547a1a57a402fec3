//! `steward import`'s half in the types: which attributes a provider is asked to read, and
//! how an observed [`State`] becomes the attributes of a document that declares it.
//!
//! Pure: the command line reads the state through the provider and writes the document.

use crate::model::{ResourceId, Value};
use crate::resource::change::State;
use crate::resource::{AttrType, TypeSchema};

/// Why a resource's observed state cannot become a document.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// A value a document cannot spell, such as content that is not UTF-8 text.
    #[error(
        "`{id}` cannot be imported: its `{attr}` is binary (not UTF-8 text), which a document cannot hold; keep the file in the project and declare it with `source`"
    )]
    Binary {
        /// The resource.
        id: ResourceId,
        /// The attribute.
        attr: String,
    },
    /// Something of another kind is there (a directory where a file was asked for).
    #[error("`{id}` cannot be imported: a {found} is at that path, not a {}; import it as that type", id.kind)]
    OtherKind {
        /// The resource.
        id: ResourceId,
        /// What is there, as the provider's `ensure` says it.
        found: String,
    },
    /// What is there cannot be declared by the type's attributes (a cron job file holding
    /// two jobs, say).
    #[error("`{id}` cannot be imported: {why}")]
    Unrepresentable {
        /// The resource.
        id: ResourceId,
        /// Why, for the message.
        why: String,
    },
    /// The type has no state of its own to read.
    #[error("`{kind}` resources cannot be imported: {why}")]
    NotImportable {
        /// The kind.
        kind: &'static str,
        /// Why, for the message.
        why: &'static str,
    },
}

/// The attributes of `schema` a provider is asked to read: every one but `ensure`, which
/// providers always observe. Providers read only what a resource declares.
pub fn probe_attrs(schema: &TypeSchema) -> Vec<&'static str> {
    schema
        .attrs
        .iter()
        .map(|attr| attr.name)
        .filter(|name| *name != "ensure")
        .collect()
}

/// The document attributes that declare `observed`, in the schema's order: `ensure: absent`
/// alone for a resource that is not there; otherwise every observed attribute the schema
/// has, leaving out `ensure: present` (the default) and values the provider did not read.
pub fn attrs_from_state(
    id: &ResourceId,
    schema: &TypeSchema,
    observed: &State,
) -> Result<Vec<(&'static str, Value)>, ImportError> {
    let ensure = observed.get("ensure").and_then(Value::as_str);
    if ensure == Some("absent") {
        return Ok(vec![("ensure", Value::String("absent".into()))]);
    }
    if let (Some(found), Some(attr)) = (ensure, schema.attr("ensure"))
        && let AttrType::Enum(allowed) = attr.ty
        && !allowed.contains(&found)
    {
        return Err(ImportError::OtherKind {
            id: id.clone(),
            found: found.to_string(),
        });
    }
    let mut attrs = Vec::new();
    for attr in schema.attrs {
        let Some(value) = observed.get(attr.name) else {
            continue;
        };
        match value {
            Value::Null => continue,
            Value::String(text) if attr.name == "ensure" && text == "present" => continue,
            Value::Bytes(_) => {
                return Err(ImportError::Binary {
                    id: id.clone(),
                    attr: attr.name.to_string(),
                });
            }
            _ => attrs.push((attr.name, value.clone())),
        }
    }
    Ok(attrs)
}
