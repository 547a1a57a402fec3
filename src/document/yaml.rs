//! The YAML spelling, read with serde-saphyr.
//!
//! serde-saphyr gives every value its location through `Spanned<T>`, rejects duplicate keys,
//! and budgets alias expansion and nesting, so alias bombs and deep nesting end in an error
//! rather than exhausting memory or the stack. This is the one file that knows the YAML
//! front end; swapping it touches only this file.
//!
//! The reader's limits are the ones [`crate::document`] defines for both spellings
//! ([`MAX_DEPTH`], [`MAX_NODES`], [`MAX_DOCUMENTS`]), plus YAML's own alias limits. Every error
//! the reader can return is put in the user's words here ([`describe`]): which limit, its
//! number, and where; never the library's type or option names.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::budget::BudgetBreach;
use serde_saphyr::granit_parser::ErrorKind;
use serde_saphyr::{Budget, DuplicateKeyPolicy, Error, ExternalMessageSource, Options, Spanned};

use crate::diag::{Diagnostic, SourceId, Span};
use crate::document::{
    Document, Key, MAX_DEPTH, MAX_DOCUMENTS, MAX_NODES, Node, Parsed, Syntax, Value, thousands,
};

/// The most aliases (`*name`) one file may use.
const MAX_ALIASES: usize = 1_000;

/// The most values that aliases may repeat in one file, all aliases together.
const MAX_ALIAS_REPLAY: usize = 100_000;

/// Marks the messages steward's own visitor raises, so [`describe`] can tell them from the
/// reader's internal ones.
const OWN_MESSAGE: &str = "steward: ";

const ALIAS_HELP: &str = "steward limits YAML aliases; write the values out instead";
const DEPTH_HELP: &str = "flatten the document; steward documents never need this much nesting";
const SPLIT_HELP: &str = "split the documents over several files";
const BUG_HELP: &str = "this is a bug in steward's YAML reader; please report it with the document";

/// Parses a YAML stream; each non-empty document of the stream becomes a [`Document`].
pub fn parse(source: SourceId, text: &str) -> Parsed {
    let options = options();
    let raws = match serde_saphyr::from_multiple_with_options::<Spanned<Raw>>(text, options) {
        Ok(raws) => raws,
        Err(err) => return failed(diagnostic(source, text, &err)),
    };
    let lowering = Lowering { source, text };
    let documents = raws
        .into_iter()
        .filter(|raw| !matches!(raw.value, Raw::Null))
        .map(|raw| Document {
            source,
            syntax: Syntax::Yaml,
            root: lowering.lower(raw),
        })
        .collect();
    super::within_value_limit(Syntax::Yaml, documents, Vec::new())
}

fn failed(diag: Diagnostic) -> Parsed {
    Parsed {
        documents: Vec::new(),
        diagnostics: vec![diag],
    }
}

fn options() -> Options {
    let mut options = Options::default();
    options.strict_booleans = true;
    // `mode: 0644` stays the string "0644" instead of silently becoming decimal 644.
    options.leading_zero_numbers_as_strings = true;
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options.budget = Some(budget());
    options.alias_limits.max_total_replayed_events = MAX_ALIAS_REPLAY;
    options
}

/// The reader's budget, built from the limits both spellings share.
fn budget() -> Budget {
    let mut budget = Budget::default();
    budget.max_depth = MAX_DEPTH;
    // One more than the depth limit: flow nesting is never deeper than the whole nesting, so
    // the depth limit (and its message) always trips first.
    budget.flow_nesting_limit = MAX_DEPTH + 1;
    budget.max_documents = MAX_DOCUMENTS;
    // The reader counts keys as well as values; a key always has a value, so twice the value
    // limit is a bound that never refuses a file within it. The exact count of values is made
    // while lowering.
    budget.max_nodes = 2 * MAX_NODES;
    // Each node is at most two events (a start and an end), plus aliases and document
    // markers: the event limit never trips before the node limit, except for comments.
    budget.max_events = 2 * budget.max_nodes + MAX_ALIASES + 2 * MAX_DOCUMENTS + 16;
    budget.max_aliases = MAX_ALIASES;
    budget
}

fn diagnostic(source: SourceId, text: &str, err: &Error) -> Diagnostic {
    let described = describe(err, &budget());
    let span = err.location().map_or(Span::file_start(source), |location| {
        span_of(source, text, location)
    });
    let mut diag = Diagnostic::error(
        "document::yaml",
        span,
        format!("invalid YAML: {}", described.message),
    );
    if let Some(help) = described.help {
        diag = diag.with_help(help);
    }
    diag
}

/// A reader error in the user's words.
struct Described {
    message: String,
    help: Option<String>,
}

impl Described {
    fn new(message: impl Into<String>) -> Described {
        Described {
            message: message.into(),
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> Described {
        self.help = Some(help.into());
        self
    }
}

/// Puts every error serde-saphyr can return in the user's words: which limit and its number,
/// or what is wrong with the text. The location comes from the error's span, not from here.
/// Errors that only other target types or disabled features can cause still get a plain
/// message, so no library type or option name ever reaches a user.
fn describe(err: &Error, budget: &Budget) -> Described {
    match err {
        Error::WithSnippet { error, .. } | Error::AliasError { error, .. } => {
            describe(error, budget)
        }
        Error::Budget { breach, .. } => describe_breach(breach, budget),
        Error::ExternalMessage { source, msg, .. } => match source.as_ref() {
            ExternalMessageSource::Parser(scan) => describe_scan(scan.kind(), msg),
            _ => Described::new("the text could not be read"),
        },
        Error::Message { msg, .. } => match msg.strip_prefix(OWN_MESSAGE) {
            Some(own) => Described::new(own),
            None => reader_bug(),
        },
        Error::Eof { .. } => Described::new("the file ends in the middle of a value"),
        Error::Unexpected { expected, .. } if *expected == "string scalar" => key_not_string(),
        Error::Unexpected { .. } => Described::new("unexpected YAML structure here"),
        Error::UnexpectedSequenceEnd { .. } => Described::new("a list ends here unexpectedly"),
        Error::UnexpectedMappingEnd { .. } => Described::new("a map ends here unexpectedly"),
        Error::UnexpectedContainerEndWhileReadingKeyNode { .. } => {
            Described::new("a list or map ends where a key was expected")
        }
        Error::ContainerEndMismatch { .. } | Error::UnexpectedContainerEndWhileSkippingNode { .. } => {
            Described::new("a list or map ends here but never started")
        }
        Error::NullIntoString { .. } => Described::new("a map key is null or empty")
            .help("a key must be text; write it out, and quote it (\"null\", \"~\") to mean the word"),
        Error::TaggedScalarCannotDeserializeIntoString { .. } => {
            Described::new("a map key has a tag (`!name`)")
                .help("a key must be plain text; remove the tag")
        }
        Error::InvalidBinaryBase64 { .. } => {
            Described::new("a `!!binary` value is not valid base64")
                .help("steward values are text; write the value as a plain string")
        }
        Error::BinaryNotUtf8 { .. } | Error::BytesNotSupportedMissingBinaryTag { .. } => {
            Described::new("a `!!binary` value is not UTF-8 text; steward has no binary values")
                .help("write the value as a plain string, or put the bytes in a file and use `source`")
        }
        Error::NonFiniteFloat { value, .. } => {
            Described::new(format!("`{value}` is not a finite number; steward refuses NaN and infinity"))
                .help(format!("quote it (\"{value}\") to mean the text"))
        }
        Error::InvalidBooleanStrict { .. } => Described::new("expected true or false"),
        Error::DuplicateMappingKey { key: Some(key), .. } => {
            Described::new(format!("duplicate key `{key}`")).help("a key may appear once in a map")
        }
        Error::DuplicateMappingKey { key: None, .. } => {
            Described::new("duplicate key").help("a key may appear once in a map")
        }
        Error::UnknownAnchor { .. } => Described::new("this alias names no anchor defined before it")
            .help("an alias `*name` needs an anchor `&name` earlier in the same document"),
        Error::MergeValueNotMapOrSeqOfMaps { .. } => {
            Described::new("the value of a merge key `<<` must be a map or a list of maps")
        }
        Error::MergeKeyNotAllowed { .. } => Described::new("merge keys (`<<`) are not allowed here"),
        Error::FoldedBlockScalarMustIndentContent { .. } => {
            Described::new("the text of a folded block (`>`) must be indented")
        }
        Error::UnsupportedTag { tag, .. } | Error::TaggedStructFieldName { tag, .. } => {
            Described::new(format!("the tag `{}` is not supported here", clip(tag)))
        }
        Error::AliasReplayLimitExceeded {
            max_total_replayed_events,
            ..
        } => Described::new(format!(
            "aliases repeat more than {} values in one file",
            thousands(*max_total_replayed_events)
        ))
        .help(ALIAS_HELP),
        Error::AliasExpansionLimitExceeded {
            max_expansions_per_anchor,
            ..
        } => Described::new(format!(
            "one anchor is repeated through aliases more than {} times",
            thousands(*max_expansions_per_anchor)
        ))
        .help(ALIAS_HELP),
        Error::AliasReplayStackDepthExceeded { max_depth, .. } => Described::new(format!(
            "aliases inside aliases nest more than {} deep",
            thousands(*max_depth)
        ))
        .help(ALIAS_HELP),
        Error::AliasReplayCounterOverflow { .. } | Error::RecursiveReferencesRequireWeakTypes { .. } => {
            Described::new("aliases repeat too many values").help(ALIAS_HELP)
        }
        Error::IOError { cause } if cause.kind() == std::io::ErrorKind::FileTooLarge => {
            Described::new("the file is too large")
        }
        Error::IOError { cause } if cause.kind() != std::io::ErrorKind::InvalidData => {
            Described::new("the text could not be read")
        }
        Error::IOError { .. } | Error::InvalidUtf8Input => {
            Described::new("the text could not be read as UTF-8")
        }
        Error::CyclicInclude { .. }
        | Error::UnsupportedIncludeForm { .. }
        | Error::ResolverError { .. } => Described::new("`!include` is not supported")
            .help("put the values in the document, or split the project into files and `use` modules"),
        Error::UnresolvedProperty { .. }
        | Error::InvalidPropertyName { .. }
        | Error::PropertyRequiredButUnset { .. }
        | Error::PropertyRequiredButEmpty { .. } => Described::new("`${...}` substitution is not supported")
            .help("use a template expression `{{ ... }}` with a parameter instead"),
        Error::QuotingRequired { value, .. } => {
            Described::new(format!("the value `{}` must be quoted", clip(value)))
        }
        Error::IndentationError { actual, .. } => {
            Described::new(format!("wrong indentation ({actual} spaces)"))
        }
        Error::SerdeInvalidType { unexpected, .. } | Error::SerdeInvalidValue { unexpected, .. } => {
            Described::new(format!("unexpected {}", clip(unexpected)))
        }
        // With any value accepted, only a type tag (`!!int abc`) can make a scalar invalid.
        Error::InvalidScalar { .. } => Described::new("the value does not match its type tag")
            .help("remove the tag (`!!int`, `!!float`, ...), or write a value of that type"),
        Error::InvalidCharNull { .. }
        | Error::InvalidCharNotSingleScalar { .. }
        | Error::SerdeInvalidLength { .. }
        | Error::SerdeUnknownVariant { .. }
        | Error::SerdeUnknownField { .. }
        | Error::SerdeMissingField { .. }
        | Error::SerdeVariantId { .. }
        | Error::UnexpectedValueForUnit { .. }
        | Error::ExpectedEmptyMappingForUnitStruct { .. }
        | Error::ExpectedStringKeyForExternallyTaggedEnum { .. }
        | Error::ExternallyTaggedEnumExpectedScalarOrMapping { .. }
        | Error::UnexpectedValueForUnitEnumVariant { .. }
        | Error::ExpectedMappingEndAfterEnumVariantValue { .. }
        | Error::TaggedEnumMismatch { .. }
        | Error::CannotBorrowTransformedString { .. } => {
            Described::new("this value cannot be read here")
        }
        Error::MultipleDocuments { .. }
        | Error::InvalidOptions { .. }
        | Error::HookError { .. }
        | Error::InternalSeedReusedForMapKey { .. }
        | Error::ValueRequestedBeforeKey { .. }
        | Error::InternalDepthUnderflow { .. }
        | Error::InternalRecursionStackEmpty { .. } => reader_bug(),
        // `Error` is non-exhaustive: a variant added by a later serde-saphyr gets a plain
        // message until it is mapped above.
        _ => Described::new("the text could not be read"),
    }
}

fn describe_breach(breach: &BudgetBreach, budget: &Budget) -> Described {
    match breach {
        BudgetBreach::Depth { .. } => Described::new(format!(
            "nesting deeper than {MAX_DEPTH} levels of maps and lists"
        ))
        .help(DEPTH_HELP),
        BudgetBreach::Nodes { .. } => Described::new(format!(
            "more than {} values in one file",
            thousands(MAX_NODES)
        ))
        .help(format!(
            "steward reads at most {} values (scalars, lists and maps; keys not counted) per \
             file; {SPLIT_HELP}",
            thousands(MAX_NODES)
        )),
        BudgetBreach::Documents { .. } => Described::new(format!(
            "more than {} documents in one file",
            thousands(MAX_DOCUMENTS)
        ))
        .help(format!(
            "steward reads at most {} documents (separated by `---`) per file; {SPLIT_HELP}",
            thousands(MAX_DOCUMENTS)
        )),
        BudgetBreach::Events { .. } => Described::new(format!(
            "more than {} values, keys and comments in one file",
            thousands(budget.max_events)
        ))
        .help(SPLIT_HELP),
        BudgetBreach::Aliases { .. } => Described::new(format!(
            "more than {} aliases (`*name`) in one file",
            thousands(budget.max_aliases)
        ))
        .help(ALIAS_HELP),
        BudgetBreach::Anchors { .. } => Described::new(format!(
            "more than {} anchors (`&name`) in one file",
            thousands(budget.max_anchors)
        ))
        .help(ALIAS_HELP),
        BudgetBreach::AliasAnchorRatio { aliases, anchors } => Described::new(format!(
            "{} aliases repeat only {}; at most {} aliases per anchor are allowed once a file \
             has {} aliases",
            thousands(*aliases),
            plural(*anchors, "anchor"),
            thousands(budget.alias_anchor_ratio_multiplier),
            thousands(budget.alias_anchor_min_aliases),
        ))
        .help(ALIAS_HELP),
        BudgetBreach::RecordedAnchorEvents { .. } | BudgetBreach::RecordedAnchorBytes { .. } => {
            Described::new("anchored values are too large to repeat through aliases")
                .help(ALIAS_HELP)
        }
        BudgetBreach::MergeKeys { .. } => Described::new(format!(
            "more than {} merge keys (`<<`) in one file",
            thousands(budget.max_merge_keys)
        )),
        BudgetBreach::ScalarBytes { .. } => Described::new(format!(
            "more than {} bytes of text in values in one file",
            thousands(budget.max_total_scalar_bytes)
        ))
        .help(SPLIT_HELP),
        BudgetBreach::CommentBytes { .. } => Described::new(format!(
            "more than {} bytes of comments in one file",
            thousands(budget.max_total_comment_bytes)
        )),
        BudgetBreach::InputBytes { .. } => Described::new("the file is too large"),
        BudgetBreach::SequenceUnbalanced => {
            Described::new("a list or map ends here but never started")
        }
        BudgetBreach::InclusionDepth { .. } => Described::new("`!include` is not supported"),
        BudgetBreach::PropertyExpansionDepth { .. }
        | BudgetBreach::PropertyInterpolationWork { .. } => {
            Described::new("`${...}` substitution is not supported")
        }
        _ => Described::new("the file is beyond what steward reads"),
    }
}

/// The parser's own messages describe YAML syntax in YAML's words and pass through; its
/// limits are put in ours.
fn describe_scan(kind: &ErrorKind, message: &str) -> Described {
    match kind {
        ErrorKind::RecursionLimitExceeded => Described::new(format!(
            "nesting deeper than {MAX_DEPTH} levels of maps and lists"
        ))
        .help(DEPTH_HELP),
        ErrorKind::TooManyComments => {
            Described::new("too many comments in a row inside a list or map")
        }
        ErrorKind::DirectiveByteLimitExceeded { limit } => Described::new(format!(
            "a `%` directive longer than {} bytes",
            thousands(*limit)
        )),
        ErrorKind::TooManyReservedDirectiveParams { limit } => Described::new(format!(
            "a `%` directive with more than {} parameters",
            thousands(*limit)
        )),
        ErrorKind::InputIo { .. } | ErrorKind::InputDecoding { .. } => {
            Described::new("the text could not be read as UTF-8")
        }
        ErrorKind::InputByteLimitExceeded { .. } => Described::new("the file is too large"),
        ErrorKind::Custom(_)
        | ErrorKind::MissingIncludeResolver
        | ErrorKind::InputOffsetsWithoutSlice
        | ErrorKind::InputSlicingUnavailable => reader_bug(),
        _ => Described::new(message.lines().next().unwrap_or(message).trim()),
    }
}

fn key_not_string() -> Described {
    Described::new("a map key must be text, not null, a list or a map")
        .help("write the key as a string; quote it (\"null\", \"~\") to mean the word")
}

fn reader_bug() -> Described {
    Described::new("the YAML reader failed on this text").help(BUG_HELP)
}

/// At most 80 characters of a value echoed in a message.
fn clip(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((idx, _)) => format!("{}…", &text[..idx]),
        None => text.to_string(),
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{} {noun}s", thousands(n))
    }
}

/// `250000` as `250,000`.
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

/// Turns the reader's values into [`Node`]s, counting values against [`MAX_NODES`].
struct Lowering<'a> {
    source: SourceId,
    text: &'a str,
}

impl Lowering<'_> {
    fn lower(&self, raw: Spanned<Raw>) -> Node {
        let span = span_of(self.source, self.text, raw.referenced);
        let value = match raw.value {
            Raw::Null => Value::Null,
            Raw::Bool(value) => Value::Bool(value),
            Raw::Int(value) => Value::Int(value),
            Raw::Float(value) => Value::Float(value),
            Raw::String(value) => Value::String(value),
            Raw::List(items) => {
                Value::List(items.into_iter().map(|item| self.lower(item)).collect())
            }
            Raw::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(key, value)| {
                        let key_span = span_of(self.source, self.text, key.referenced);
                        (
                            Key {
                                name: key.value,
                                span: key_span,
                            },
                            self.lower(value),
                        )
                    })
                    .collect(),
            ),
        };
        Node { span, value }
    }
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

/// A serde error carrying steward's own message, which [`describe`] shows as it is.
fn own_error<E: de::Error>(message: impl fmt::Display) -> E {
    E::custom(format!("{OWN_MESSAGE}{message}"))
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
        i64::try_from(value).map(Raw::Int).map_err(|_| {
            own_error(format!(
                "integer {value} is too large; integers must fit in 64 bits"
            ))
        })
    }
    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Raw, E> {
        i64::try_from(value).map(Raw::Int).map_err(|_| {
            own_error(format!(
                "integer {value} is too large; integers must fit in 64 bits"
            ))
        })
    }
    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Raw, E> {
        i64::try_from(value).map(Raw::Int).map_err(|_| {
            own_error(format!(
                "integer {value} is too large; integers must fit in 64 bits"
            ))
        })
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
        Err(own_error(
            "binary values are not supported; steward values are text",
        ))
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
    fn numbers_have_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_024), "1,024");
        assert_eq!(thousands(250_000), "250,000");
        assert_eq!(thousands(1_003_064), "1,003,064");
    }

    #[test]
    fn messages_are_in_the_users_words() {
        let deep = format!("x: {}{}\n", "[".repeat(64), "]".repeat(64));
        let many = format!("x: [{}]\n", vec!["1"; MAX_NODES + 1].join(","));
        let documents = "---\na: 1\n".repeat(MAX_DOCUMENTS + 1);
        let cases = [
            ("~: 1\n", "a map key is null"),
            ("? : 1\n", "a map key must be text"),
            ("x: !!binary //79\n", "`!!binary` value is not UTF-8"),
            ("x: .inf\n", "`.inf` is not a finite number"),
            (deep.as_str(), "nesting deeper than 64 levels"),
            (many.as_str(), "more than 250,000 values in one file"),
            (documents.as_str(), "more than 1,024 documents in one file"),
        ];
        for (text, expected) in cases {
            let parsed = check(text);
            assert_eq!(parsed.diagnostics.len(), 1, "{expected}");
            let diag = &parsed.diagnostics[0];
            let shown = format!("{} {}", diag.message, diag.help.as_deref().unwrap_or(""));
            assert!(shown.contains(expected), "{shown}");
            for leak in [
                "Options", "Option<", "Spanned", "{ ", "budget", "Policy", "policy",
            ] {
                assert!(!shown.contains(leak), "{leak:?} in {shown}");
            }
        }
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let parsed = check("a: 1\na: 2\n");
        assert_eq!(parsed.diagnostics.len(), 1);
    }
}
