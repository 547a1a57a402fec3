//! Parses YAML and KDL text into one spanned tree.
//!
//! Owns [`Node`], [`Value`] and [`Syntax`]. YAML and KDL are two spellings of one model: both
//! readers produce the same tree shape (a YAML mapping is a [`Value::Map`]; a KDL node becomes a
//! map entry, see [`kdl`]), so everything after this module is spelling-blind.
//!
//! **Architecture Invariant:** no file-system access; the caller passes text in. Parsing never
//! fails: it returns the documents it could read plus diagnostics. Every [`Node`] carries the
//! real byte span of its text, and nesting is bounded by [`MAX_DEPTH`] so later recursive walks
//! cannot overflow the stack.

pub mod kdl;
pub mod yaml;

use crate::diag::{Diagnostic, SourceId, Span};

/// The deepest nesting of maps and lists a document may have.
pub const MAX_DEPTH: usize = 64;

/// The most values (scalars, lists and maps, keys not counted) one file may hold, in either
/// spelling: bounds the memory a small, repetitive text can make the readers allocate.
pub const MAX_NODES: usize = 250_000;

/// The most documents one file may hold (a YAML stream separated by `---`; a KDL file is one).
pub const MAX_DOCUMENTS: usize = 1_024;

/// The most diagnostics one file reports; the rest are counted in one last diagnostic.
pub const MAX_DIAGNOSTICS_PER_FILE: usize = 100;

/// The spelling of a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// `.yaml` / `.yml`
    Yaml,
    /// `.kdl`
    Kdl,
}

impl Syntax {
    /// The syntax for a file name, by extension.
    pub fn from_file_name(name: &str) -> Option<Syntax> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Some(Syntax::Yaml)
        } else if lower.ends_with(".kdl") {
            Some(Syntax::Kdl)
        } else {
            None
        }
    }
}

/// A value with the span of its text.
#[derive(Clone, Debug)]
pub struct Node {
    /// Where the value is written.
    pub span: Span,
    /// The value.
    pub value: Value,
}

/// A map key with the span of its text.
#[derive(Clone, Debug)]
pub struct Key {
    /// The key.
    pub name: String,
    /// Where the key is written.
    pub span: Span,
}

/// A document value.
#[derive(Clone, Debug)]
pub enum Value {
    /// `null`, `~`, an empty YAML value, `#null`.
    Null,
    /// `true` / `false` (`#true` / `#false` in KDL).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (possibly a template).
    String(String),
    /// A list.
    List(Vec<Node>),
    /// A map in source order. Keys are unique (readers report duplicates).
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// A short name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

impl Node {
    /// The entries when this is a map.
    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The string when this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// Looks up a key in a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }
}

/// One document of a file (a YAML file may hold several).
#[derive(Clone, Debug)]
pub struct Document {
    /// The file it came from.
    pub source: SourceId,
    /// Its spelling.
    pub syntax: Syntax,
    /// The top-level value (a map in a well-formed document).
    pub root: Node,
}

/// Documents plus what went wrong while reading them.
#[derive(Debug)]
pub struct Parsed {
    /// What could be read; empty when the text was unreadable.
    pub documents: Vec<Document>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses the text of one file. A file that holds nothing but comments and blank lines is
/// an error: steward never lets a file pass silently for want of anything in it.
pub fn parse(source: SourceId, text: &str, syntax: Syntax) -> Parsed {
    let mut parsed = match syntax {
        Syntax::Yaml => yaml::parse(source, text),
        Syntax::Kdl => kdl::parse(source, text),
    };
    let empty = parsed.diagnostics.is_empty()
        && parsed
            .documents
            .iter()
            .all(|doc| doc.root.as_map().is_some_and(<[_]>::is_empty));
    if empty {
        parsed.documents.clear();
        let start = match syntax {
            Syntax::Yaml => "steward: 1",
            Syntax::Kdl => "steward 1",
        };
        parsed.diagnostics.push(
            Diagnostic::error(
                "document::empty",
                Span::file_start(source),
                "the file holds no document",
            )
            .with_label("nothing but comments and blank lines")
            .with_help(format!(
                "start it with `{start}`, or remove it: every .yaml, .yml and .kdl file of a project is read"
            )),
        );
    }
    parsed
}

/// `250000` as `250,000`, for messages.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (idx, digit) in digits.chars().enumerate() {
        if idx > 0 && (digits.len() - idx).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A file's documents as its reader returns them: refused with one diagnostic at the first
/// value past [`MAX_NODES`], counting values (keys not counted) in document order. Each reader
/// has a looser bound of its own, which keeps its memory in check before the tree is built.
fn within_value_limit(
    syntax: Syntax,
    documents: Vec<Document>,
    diagnostics: Vec<Diagnostic>,
) -> Parsed {
    match value_past_limit(documents.iter().map(|doc| &doc.root)) {
        Some(span) => Parsed {
            documents: Vec::new(),
            diagnostics: vec![too_many_values(syntax, span)],
        },
        None => Parsed {
            documents,
            diagnostics,
        },
    }
}

fn value_past_limit<'a>(roots: impl IntoIterator<Item = &'a Node>) -> Option<Span> {
    fn walk(node: &Node, seen: &mut usize) -> Option<Span> {
        *seen += 1;
        if *seen > MAX_NODES {
            return Some(node.span);
        }
        match &node.value {
            Value::List(items) => items.iter().find_map(|item| walk(item, seen)),
            Value::Map(entries) => entries.iter().find_map(|(_, value)| walk(value, seen)),
            _ => None,
        }
    }
    let mut seen = 0;
    roots.into_iter().find_map(|root| walk(root, &mut seen))
}

/// The diagnostic for a file past [`MAX_NODES`], at the first value too many.
fn too_many_values(syntax: Syntax, span: Span) -> Diagnostic {
    let (code, spelling) = match syntax {
        Syntax::Yaml => ("document::yaml", "YAML"),
        Syntax::Kdl => ("document::kdl", "KDL"),
    };
    Diagnostic::error(
        code,
        span,
        format!(
            "invalid {spelling}: more than {} values in one file",
            thousands(MAX_NODES)
        ),
    )
    .with_label(format!("value {} starts here", thousands(MAX_NODES + 1)))
    .with_help(format!(
        "steward reads at most {} values (scalars, lists and maps; keys not counted) per file; \
         split the documents over several files",
        thousands(MAX_NODES)
    ))
}

/// The diagnostic that stands for `count` problems of one file left unreported.
pub fn more_problems(source: SourceId, count: usize) -> Diagnostic {
    let noun = if count == 1 { "problem" } else { "problems" };
    Diagnostic::error(
        "document::more_problems",
        Span::file_start(source),
        format!("{count} more {noun} in this file not shown"),
    )
    .with_help(format!(
        "steward reports the first {MAX_DIAGNOSTICS_PER_FILE} problems of a file; fix those and run it again"
    ))
}

/// Keeps the first [`MAX_DIAGNOSTICS_PER_FILE`] diagnostics located in each file, in order,
/// and stands one [`more_problems`] for the rest of each.
pub fn cap_per_file(diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut shown: std::collections::HashMap<SourceId, usize> = std::collections::HashMap::new();
    let mut hidden: std::collections::BTreeMap<SourceId, usize> = std::collections::BTreeMap::new();
    let mut kept = Vec::with_capacity(diagnostics.len().min(1024));
    for diag in diagnostics {
        let Some(source) = diag.span().map(|span| span.source) else {
            kept.push(diag);
            continue;
        };
        let count = shown.entry(source).or_insert(0);
        if *count < MAX_DIAGNOSTICS_PER_FILE || diag.code == "document::more_problems" {
            *count += 1;
            kept.push(diag);
        } else {
            *hidden.entry(source).or_insert(0) += 1;
        }
    }
    kept.extend(
        hidden
            .into_iter()
            .map(|(source, count)| more_problems(source, count)),
    );
    kept
}

/// A module's documents, as `use` found them.
#[derive(Debug)]
pub struct Module {
    /// `std/NAME` or the module's path as shown to users.
    pub name: String,
    /// Its documents.
    pub documents: Vec<Document>,
}

/// Every document of a project, read and parsed, with its modules.
#[derive(Debug, Default)]
pub struct Project {
    /// All source texts.
    pub sources: crate::diag::SourceMap,
    /// The project directory (documents' paths are relative to it).
    pub root: std::path::PathBuf,
    /// Top-level documents, in path order (module files excluded).
    pub documents: Vec<Document>,
    /// Modules by canonical key.
    pub modules: std::collections::BTreeMap<String, Module>,
    /// `use` entries resolved: (using document, `module` as written) → canonical key.
    pub uses: std::collections::HashMap<(SourceId, String), String>,
    /// Problems found while reading.
    pub diagnostics: Vec<Diagnostic>,
}

/// The `module` strings of a document's `use` list, with their spans.
pub fn module_refs(document: &Document) -> Vec<(String, Span)> {
    let Some(Node {
        value: Value::List(items),
        ..
    }) = document.root.get("use")
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| item.get("module"))
        .filter_map(|module| module.as_str().map(|name| (name.to_string(), module.span)))
        .collect()
}
