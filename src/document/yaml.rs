//! The YAML spelling, read with serde-saphyr.
//!
//! serde-saphyr gives every value its location through `Spanned<T>`, rejects duplicate keys,
//! and budgets alias expansion and nesting, so alias bombs and deep nesting end in an error
//! rather than exhausting memory or the stack. This is the one function that knows the YAML
//! front end; swapping it touches only this file.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Options, Spanned};

use crate::diag::{Diagnostic, SourceId, Span};
use crate::document::{Document, Key, MAX_DEPTH, Node, Parsed, Syntax, Value};

/// Parses a YAML stream; each non-empty document of the stream becomes a [`Document`].
pub fn parse(source: SourceId, text: &str) -> Parsed {
    let options = options();
    match serde_saphyr::from_multiple_with_options::<Spanned<Raw>>(text, options) {
        Ok(raws) => {
            let documents = raws
                .into_iter()
                .filter(|raw| !matches!(raw.value, Raw::Null))
                .map(|raw| Document {
                    source,
                    syntax: Syntax::Yaml,
                    root: lower(source, text, raw),
                })
                .collect();
            Parsed {
                documents,
                diagnostics: Vec::new(),
            }
        }
        Err(err) => Parsed {
            documents: Vec::new(),
            diagnostics: vec![diagnostic(source, text, &err)],
        },
    }
}

fn options() -> Options {
    let mut options = Options::default();
    options.strict_booleans = true;
    // `mode: 0644` stays the string "0644" instead of silently becoming decimal 644.
    options.leading_zero_numbers_as_strings = true;
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    let mut budget = options.budget.clone().unwrap_or_default();
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = budget.flow_nesting_limit.min(MAX_DEPTH);
    budget.max_aliases = 1_000;
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 100_000;
    options
}

fn diagnostic(source: SourceId, text: &str, err: &serde_saphyr::Error) -> Diagnostic {
    let plain = err.without_snippet();
    let message = plain.render_with_options(serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    });
    let message = strip_location_suffix(&message);
    let span = err.location().map_or(Span::file_start(source), |location| {
        span_of(source, text, location)
    });
    let help = if message.contains("budget") || message.contains("alias") {
        Some("steward limits YAML aliases and nesting; write the values out instead".to_string())
    } else {
        None
    };
    let mut diag = Diagnostic::error("document::yaml", span, format!("invalid YAML: {message}"));
    if let Some(help) = help {
        diag = diag.with_help(help);
    }
    diag
}

/// serde-saphyr appends " at line X column Y" to plain messages; our renderer shows the
/// location itself.
fn strip_location_suffix(message: &str) -> String {
    let joined = message.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let mut text = match joined.find(" at line ") {
        Some(idx) => joined[..idx].to_string(),
        None => joined,
    };
    // Advice meant for programs embedding the parser, not for users.
    for advice in [
        "; set DuplicateKeyPolicy",
        " (set DuplicateKeyPolicy",
        ", set DuplicateKeyPolicy",
    ] {
        if let Some(idx) = text.find(advice) {
            text.truncate(idx);
        }
    }
    text
}

fn span_of(source: SourceId, text: &str, location: serde_saphyr::Location) -> Span {
    let span = location.span();
    match (span.byte_offset(), span.byte_len()) {
        (Some(offset), Some(len)) => {
            let start = usize::try_from(offset)
                .unwrap_or(text.len())
                .min(text.len());
            let end = start
                .saturating_add(usize::try_from(len).unwrap_or(0))
                .min(text.len());
            Span::new(source, start, end)
        }
        _ => {
            // Only line and character column are known; convert them exactly.
            let start = offset_of(text, location.line() as usize, location.column() as usize);
            Span::new(source, start, start)
        }
    }
}

fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let line_start = text
        .match_indices('\n')
        .nth(line.saturating_sub(2))
        .map_or(0, |(idx, _)| if line <= 1 { 0 } else { idx + 1 });
    let rest = &text[line_start..];
    line_start
        + rest
            .char_indices()
            .take_while(|&(_, c)| c != '\n')
            .nth(column.saturating_sub(1))
            .map_or(rest.find('\n').unwrap_or(rest.len()), |(idx, _)| idx)
}

fn lower(source: SourceId, text: &str, raw: Spanned<Raw>) -> Node {
    let span = span_of(source, text, raw.referenced);
    let value = match raw.value {
        Raw::Null => Value::Null,
        Raw::Bool(value) => Value::Bool(value),
        Raw::Int(value) => Value::Int(value),
        Raw::Float(value) => Value::Float(value),
        Raw::String(value) => Value::String(value),
        Raw::List(items) => Value::List(
            items
                .into_iter()
                .map(|item| lower(source, text, item))
                .collect(),
        ),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(key, value)| {
                    let key_span = span_of(source, text, key.referenced);
                    (
                        Key {
                            name: key.value,
                            span: key_span,
                        },
                        lower(source, text, value),
                    )
                })
                .collect(),
        ),
    };
    Node { span, value }
}

/// What serde-saphyr hands us: any YAML value, with spans on every element.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Raw, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Raw, D::Error> {
        Raw::deserialize(deserializer)
    }
    fn visit_bool<E>(self, value: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Raw, E> {
        Ok(Raw::Int(value))
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Raw, E> {
        i64::try_from(value)
            .map(Raw::Int)
            .map_err(|_| E::custom(format!("integer {value} is too large")))
    }
    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Raw, E> {
        i64::try_from(value)
            .map(Raw::Int)
            .map_err(|_| E::custom(format!("integer {value} is too large")))
    }
    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Raw, E> {
        i64::try_from(value)
            .map(Raw::Int)
            .map_err(|_| E::custom(format!("integer {value} is too large")))
    }
    fn visit_f64<E>(self, value: f64) -> Result<Raw, E> {
        Ok(Raw::Float(value))
    }
    fn visit_str<E>(self, value: &str) -> Result<Raw, E> {
        Ok(Raw::String(value.to_string()))
    }
    fn visit_string<E>(self, value: String) -> Result<Raw, E> {
        Ok(Raw::String(value))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Raw, E> {
        Err(E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw::List(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Raw>>()?;
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Parsed {
        parse(SourceId(0), text)
    }

    #[test]
    fn spans_are_byte_ranges() {
        let text = "a: 1\nbé: \"x\"\nlist:\n  - 0644\n";
        let parsed = check(text);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let root = &parsed.documents[0].root;
        let entries = root.as_map().unwrap();
        assert_eq!(&text[entries[1].0.span.start..entries[1].0.span.end], "bé");
        let value = &entries[1].1;
        assert_eq!(&text[value.span.start..value.span.end], "\"x\"");
        let Value::List(items) = &entries[2].1.value else {
            panic!()
        };
        assert!(matches!(&items[0].value, Value::String(s) if s == "0644"));
        assert_eq!(&text[items[0].span.start..items[0].span.end], "0644");
    }

    #[test]
    fn yaml_11_booleans_stay_strings() {
        let parsed = check("a: no\nb: true\n");
        let root = &parsed.documents[0].root;
        assert!(matches!(root.get("a").unwrap().value, Value::String(_)));
        assert!(matches!(root.get("b").unwrap().value, Value::Bool(true)));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let parsed = check("a: 1\na: 2\n");
        assert_eq!(parsed.diagnostics.len(), 1);
    }
}
