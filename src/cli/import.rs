//! `steward import`: live state, read through the providers, printed as a document that
//! declares it (Terraform's `import`, Puppet's `puppet resource`). Applied, it keeps that state (a plan after it is a no-op).
//!
//! The types decide which attributes to read and how a state becomes attributes
//! ([`crate::resource::ResourceType::import_attrs`]); this module only reads and writes text.

use std::fmt::Write as _;

use crate::diag::{SourceId, Span};
use crate::model::{Attr, Attrs, Resource, ResourceId, Value};
use crate::resource::command::SystemRunner;
use crate::resource::durability::Durability;
use crate::resource::provider::ProviderCtx;

use super::{Context, Exit, print_stdout};

/// The spelling of the printed document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ImportFormat {
    /// YAML, as `site.yaml`.
    Yaml,
    /// KDL v2, as `site.kdl`.
    Kdl,
    /// JSON: the YAML document's shape, which steward reads from a `.yaml` file (JSON is
    /// YAML); it has no room for the header comment.
    Json,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs {
    /// The resources to read, such as `file:/etc/motd` or `user:alice`.
    #[arg(value_name = "TYPE:NAME", required = true)]
    pub(crate) resources: Vec<String>,
    /// The document's spelling.
    #[arg(long, value_enum, default_value_t = ImportFormat::Yaml)]
    pub(crate) format: ImportFormat,
}

/// One imported resource: its identity and the attributes that declare it.
struct Imported {
    id: ResourceId,
    attrs: Vec<(&'static str, Value)>,
}

/// Reads each resource and prints one document declaring them all, or, when any cannot be
/// imported, says why for each such resource and prints nothing (exit 1).
pub(crate) fn import(ctx: &Context, args: &ImportArgs) -> std::io::Result<Exit> {
    let durability = Durability::new();
    let managed_paths = foldhash::HashSet::default();
    let state_dir = std::env::temp_dir();
    let provider_ctx = ProviderCtx {
        root: &ctx.root,
        state_dir: &state_dir,
        run_id: "import",
        managed_paths: &managed_paths,
        durability: &durability,
        path_cache: None,
        runner: &SystemRunner,
        staged: None,
    };
    let mut imported = Vec::new();
    let mut failed = false;
    for text in &args.resources {
        match import_one(ctx, &provider_ctx, text) {
            Ok(one) => imported.push(one),
            Err(message) => {
                eprintln!("error: {message}");
                failed = true;
            }
        }
    }
    if failed {
        return Ok(Exit::Error);
    }
    let from = if provider_ctx.is_live() {
        "this machine".to_string()
    } else {
        format!("the root {}", ctx.root.display())
    };
    print_stdout(&match args.format {
        ImportFormat::Yaml => yaml(&imported, &from),
        ImportFormat::Kdl => kdl(&imported, &from),
        ImportFormat::Json => json(&imported),
    })
}

fn import_one(
    ctx: &Context,
    provider_ctx: &ProviderCtx<'_>,
    text: &str,
) -> Result<Imported, String> {
    let id = ResourceId::parse(text)
        .ok_or_else(|| format!("`{text}` is not TYPE:NAME, such as `file:/etc/motd`"))?;
    let ty = ctx.registry.get(&id.kind).ok_or_else(|| {
        format!(
            "`{text}`: unknown resource type `{}` (known: {})",
            id.kind,
            ctx.registry.kinds().join(", ")
        )
    })?;
    ty.schema()
        .name_rule
        .check(&id.name)
        .map_err(|(problem, help)| format!("`{text}`: {problem} ({help})"))?;
    let span = Span::new(SourceId(0), 0, 0);
    // Providers read only the attributes a resource declares: ask for every one the type
    // can say, with no value.
    let attrs: Attrs = ty
        .import_probe()
        .map_err(|err| err.to_string())?
        .into_iter()
        .map(|name| {
            let attr = Attr {
                value: Value::Null,
                span,
                sensitive: false,
            };
            (name.to_string(), attr)
        })
        .collect();
    let probe = Resource {
        id: id.clone(),
        span,
        source: SourceId(0),
        attrs,
        relations: Vec::new(),
        association: None,
        secrets: Vec::new(),
    };
    let observed = ty
        .provider()
        .read(provider_ctx, &probe)
        .map_err(|err| format!("`{id}`: {err}"))?;
    let attrs = ty
        .import_attrs(&id, &observed, provider_ctx.is_live())
        .map_err(|err| err.to_string())?;
    Ok(Imported { id, attrs })
}

/// Text that renders to itself: the openers of template syntax (`{{`, `{%`, `{#`) become
/// expressions that print them, since documents render every string with syntax in it.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{'
            && let Some(&next) = chars.peek()
            && matches!(next, '{' | '%' | '#')
        {
            chars.next();
            let _ = write!(out, "{{{{ \"{{{next}\" }}}}");
            continue;
        }
        out.push(c);
    }
    out
}

fn header(from: &str, comment: &str) -> String {
    format!(
        "{comment} Imported by `steward import` from {from}.\n{comment} Applied, it keeps that state: `steward plan` then exits 0.\n"
    )
}

/// The document in YAML.
fn yaml(imported: &[Imported], from: &str) -> String {
    let mut out = header(from, "#");
    out.push_str("steward: 1\n\nresources:\n");
    for one in imported {
        let key = yaml_quoted(&literal(&one.id.to_string()));
        if one.attrs.is_empty() {
            let _ = writeln!(out, "  {key}: {{}}");
            continue;
        }
        let _ = writeln!(out, "  {key}:");
        for (name, value) in &one.attrs {
            let _ = writeln!(out, "    {name}: {}", yaml_value(value));
        }
    }
    out
}

/// The document in JSON, shaped as the YAML one.
fn json(imported: &[Imported]) -> String {
    let resources: serde_json::Map<String, serde_json::Value> = imported
        .iter()
        .map(|one| {
            let attrs: serde_json::Map<String, serde_json::Value> = one
                .attrs
                .iter()
                .map(|(name, value)| ((*name).to_string(), json_value(value)))
                .collect();
            (literal(&one.id.to_string()), attrs.into())
        })
        .collect();
    let document = serde_json::json!({ "steward": 1, "resources": resources });
    format!("{document:#}\n")
}

fn json_value(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(flag) => (*flag).into(),
        Value::Int(n) => (*n).into(),
        Value::Float(x) => {
            serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, Into::into)
        }
        Value::String(text) => literal(text).into(),
        // Content that is not UTF-8 text is refused before anything is printed.
        Value::Bytes(bytes) => literal(&String::from_utf8_lossy(bytes)).into(),
        Value::List(items) => items.iter().map(json_value).collect(),
        Value::Map(map) => map
            .iter()
            .map(|(key, value)| (key.clone(), json_value(value)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

fn yaml_value(value: &Value) -> String {
    match value {
        Value::String(text) => yaml_text(&literal(text)),
        Value::List(items) => {
            let items: Vec<String> = items.iter().map(yaml_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Map(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(key, value)| format!("{}: {}", yaml_quoted(key), yaml_value(value)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        other => other.to_string(),
    }
}

/// A string as YAML: a literal block (`|`) for printable text of several lines ending in one
/// newline, a double-quoted scalar otherwise.
fn yaml_text(text: &str) -> String {
    let block = text.ends_with('\n')
        && !text.ends_with("\n\n")
        && text.len() > 1
        && !text.starts_with([' ', '\t', '\n'])
        && text[..text.len() - 1].contains('\n')
        && text
            .chars()
            .all(|c| c == '\n' || c == '\t' || !c.is_control())
        && !text.contains('\u{feff}');
    if !block {
        return yaml_quoted(text);
    }
    let mut out = String::from("|");
    for line in text.lines() {
        out.push_str("\n      ");
        out.push_str(line);
    }
    out
}

/// A double-quoted YAML scalar: JSON's string syntax is YAML's.
fn yaml_quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// The document in KDL v2.
fn kdl(imported: &[Imported], from: &str) -> String {
    let mut out = header(from, "//");
    out.push_str("steward 1\n\n");
    for one in imported {
        let _ = write!(
            out,
            "{} {}",
            one.id.kind,
            kdl_string(&literal(&one.id.name))
        );
        let children: Vec<String> = one
            .attrs
            .iter()
            .filter_map(|(name, value)| kdl_child(name, value))
            .collect();
        if children.is_empty() {
            out.push('\n');
            continue;
        }
        out.push_str(" {\n");
        for child in children {
            let _ = writeln!(out, "    {child}");
        }
        out.push_str("}\n");
    }
    out
}

/// One attribute as a child node; `None` for an empty list or map, which KDL cannot write
/// (a child needs a value). Leaving it out leaves that attribute unmanaged.
fn kdl_child(name: &str, value: &Value) -> Option<String> {
    match value {
        Value::List(items) if items.is_empty() => None,
        Value::List(items) if items.len() == 1 => Some(format!(
            "{name} {{\n        - {}\n    }}",
            kdl_value(&items[0])
        )),
        Value::List(items) => {
            let items: Vec<String> = items.iter().map(kdl_value).collect();
            Some(format!("{name} {}", items.join(" ")))
        }
        Value::Map(map) if map.is_empty() => None,
        Value::Map(map) => {
            let props: Vec<String> = map
                .iter()
                .map(|(key, value)| format!("{}={}", kdl_string(key), kdl_value(value)))
                .collect();
            Some(format!("{name} {}", props.join(" ")))
        }
        other => Some(format!("{name} {}", kdl_value(other))),
    }
}

fn kdl_value(value: &Value) -> String {
    match value {
        Value::String(text) => kdl_string(&literal(text)),
        Value::Bool(true) => "#true".into(),
        Value::Bool(false) => "#false".into(),
        Value::Null => "#null".into(),
        other => other.to_string(),
    }
}

/// A KDL v2 quoted string; control characters and those KDL forbids are escaped.
fn kdl_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}') =>
            {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_syntax_is_kept_literal() {
        assert_eq!(
            literal("a {{ b }} {% c %} {# d"),
            "a {{ \"{{\" }} b }} {{ \"{%\" }} c %} {{ \"{#\" }} d"
        );
        assert_eq!(literal("{ x }"), "{ x }");
    }

    #[test]
    fn yaml_strings() {
        assert_eq!(yaml_text("one\ntwo\n"), "|\n      one\n      two");
        assert_eq!(yaml_text("one\n\ntwo\n"), "|\n      one\n      \n      two");
        assert_eq!(yaml_text("hi\n"), "\"hi\\n\"");
        assert_eq!(yaml_text(" lead\nx\n"), "\" lead\\nx\\n\"");
        assert_eq!(yaml_text("no end\nx"), "\"no end\\nx\"");
    }

    #[test]
    fn kdl_strings() {
        assert_eq!(kdl_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u{1}\"");
    }
}
