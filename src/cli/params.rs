//! Parameter values from the command line: `--params-file`, `STEWARD_PARAM_*` and `--param`.
//!
//! Every source ends as text, the way `--param NAME=VALUE` gives it: the schema reads each
//! value by the parameter's declared type (lists and maps as JSON). Precedence, lowest first:
//! each `--params-file` in the order given, then `STEWARD_PARAM_<NAME>` variables, then each
//! `--param`. A params file is read with the documents' YAML reader (JSON is YAML), so its
//! problems are located as `FILE:LINE:COL`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diag::{SourceMap, Span};
use crate::document::{self, Node, Syntax, Value};

/// The parameter values of `--params-file` files (later wins), `STEWARD_PARAM_*` variables
/// and `--param NAME=VALUE` flags, in that order of precedence.
pub(crate) fn collect(
    files: &[std::path::PathBuf],
    env: impl IntoIterator<Item = (String, String)>,
    flags: &[String],
) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    for file in files {
        values.extend(read_file(file)?);
    }
    values.extend(env.into_iter().filter_map(|(key, value)| {
        key.strip_prefix("STEWARD_PARAM_")
            .map(|name| (name.to_string(), value))
    }));
    for param in flags {
        if let Some(file) = param.strip_prefix('@') {
            return Err(format!(
                "`--param {param}`: to read parameters from a file, use `--params-file {file}`"
            ));
        }
        let Some((name, value)) = param.split_once('=') else {
            return Err(format!("`--param {param}` must be NAME=VALUE"));
        };
        values.insert(name.to_string(), value.to_string());
    }
    Ok(values)
}

/// The values of one params file: a YAML or JSON map of parameter names to values.
fn read_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|err| format!("--params-file {name}: {err}"))?;
    let Ok(text) = String::from_utf8(bytes) else {
        return Err(format!("{name}:1:1: a params file must be UTF-8 text"));
    };
    // A `.json` file must be JSON, which YAML's flow style would accept more loosely
    // (a trailing comma, say).
    let is_json = path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
    if is_json && let Err(err) = serde_json::from_str::<serde_json::Value>(&text) {
        let message = err.to_string();
        let message = message
            .rfind(" at line ")
            .map_or(message.as_str(), |idx| &message[..idx]);
        return Err(format!(
            "{name}:{}:{}: not valid JSON: {message}",
            err.line(),
            err.column()
        ));
    }
    let mut sources = SourceMap::new();
    let source = sources.add(name, Some(path.to_path_buf()), text);
    let parsed = document::parse(source, &sources.get(source).text, Syntax::Yaml);
    let at = |span: Span| sources.location(span);
    if let Some(diag) = parsed.diagnostics.iter().find(|d| d.is_error()) {
        let span = diag.span().unwrap_or_else(|| Span::file_start(source));
        return Err(format!("{}: {}", at(span), diag.message));
    }
    let [doc] = parsed.documents.as_slice() else {
        let span = parsed
            .documents
            .get(1)
            .map_or_else(|| Span::file_start(source), |doc| doc.root.span);
        return Err(format!(
            "{}: a params file holds one map of parameter names to values, not several documents",
            at(span)
        ));
    };
    let Some(entries) = doc.root.as_map() else {
        return Err(format!(
            "{}: a params file holds a map of parameter names to values, not {}",
            at(doc.root.span),
            doc.root.value.type_name()
        ));
    };
    let mut values = BTreeMap::new();
    for (key, node) in entries {
        let text = match &node.value {
            Value::Null => {
                return Err(format!(
                    "{}: parameter `{}` has no value",
                    at(key.span),
                    key.name
                ));
            }
            Value::String(text) => text.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Float(x) => x.to_string(),
            Value::List(_) | Value::Map(_) => to_json(node).to_string(),
        };
        values.insert(key.name.clone(), text);
    }
    Ok(values)
}

/// A list or map value as JSON, the text `--param` takes for them.
fn to_json(node: &Node) -> serde_json::Value {
    match &node.value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(n) => serde_json::Value::from(*n),
        Value::Float(x) => serde_json::Value::from(*x),
        Value::String(text) => serde_json::Value::String(text.clone()),
        Value::List(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(key, value)| (key.name.clone(), to_json(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("params.yaml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    #[test]
    fn later_sources_win() {
        let (_a, first) = file("port: 80\nmotd: hi\nlist: [1, two]\n");
        let (_b, second) = file("{\"port\": 81, \"on\": true}");
        let values = collect(
            &[first, second],
            [("STEWARD_PARAM_motd".to_string(), "env".to_string())],
            &["on=false".to_string()],
        )
        .expect("values");
        assert_eq!(values["port"], "81");
        assert_eq!(values["motd"], "env");
        assert_eq!(values["on"], "false");
        assert_eq!(values["list"], "[1,\"two\"]");
    }

    #[test]
    fn problems_are_located() {
        let (_a, path) = file("port: 80\nmotd:\n");
        let err = collect(std::slice::from_ref(&path), [], &[]).expect_err("null");
        assert_eq!(
            err,
            format!("{}:2:1: parameter `motd` has no value", path.display())
        );
        let (_b, path) = file("- 1\n- 2\n");
        let err = collect(std::slice::from_ref(&path), [], &[]).expect_err("list");
        assert!(
            err.starts_with(&format!("{}:1:1: ", path.display())),
            "{err}"
        );
    }
}
