//! A KDL 2.0 parser with bounded stack, linear time and one diagnostic per broken node.
//!
//! steward reads KDL with this parser rather than the `kdl` crate: that crate's parser recurses
//! once per character of a comment holding `*` or `/`, once per `/-` of a chain, and once per
//! unparsable top-level character while it recovers (a 20 KB comment, or `}` repeated 7,500
//! times, overflowed the stack), and it read 40,000 resources five times slower than the YAML
//! reader. The `kdl` crate stays as the reference: a test runs the official KDL test suite
//! (`tests/fixtures/kdl-spec/`) through both and requires the same verdict and the same tree.
//!
//! **Architecture Invariant:** the only recursion is into child blocks, and it stops at
//! [`MAX_DEPTH`]; everything else (comments, strings, slashdash chains, error recovery) is a
//! loop. Every loop advances the position, so parsing is linear in the text's length.

use crate::document::{MAX_DEPTH, MAX_NODES, thousands};

/// The most nodes and entries the parser reads, a bound on its memory. Every node (with its
/// first argument) and every other entry makes at least one value of the document's tree, so
/// a file within the value limit, [`MAX_NODES`], is never refused here; the exact count of
/// values is made on the tree, as for YAML.
pub const MAX_ELEMENTS: usize = 2 * MAX_NODES;

/// A byte range of the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextRange {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl TextRange {
    fn new(start: usize, end: usize) -> TextRange {
        TextRange { start, end }
    }
}

/// A string as written in the text: a node name, a property key or a type annotation.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The string after escapes.
    pub value: String,
    /// Where it is written (quotes included).
    pub span: TextRange,
}

/// A value of an argument or property.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// Any kind of string.
    String(String),
    /// An integer; KDL has no size limit, this parser stops at 128 bits.
    Integer(i128),
    /// A float, `#inf`, `#-inf` or `#nan`.
    Float(f64),
    /// `#true` or `#false`.
    Bool(bool),
    /// `#null`.
    Null,
}

/// An argument (`name` is `None`) or a property of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The property key.
    pub name: Option<Ident>,
    /// The type annotation of the value, `(type)`.
    pub ty: Option<Ident>,
    /// The value.
    pub value: Scalar,
    /// The whole entry, `key=value` for a property.
    pub span: TextRange,
    /// The value alone (after its type annotation).
    pub value_span: TextRange,
}

/// A KDL node.
#[derive(Clone, Debug, PartialEq)]
pub struct KdlNode {
    /// The type annotation, `(type)`.
    pub ty: Option<Ident>,
    /// The node name.
    pub name: Ident,
    /// Arguments and properties in source order (slashdashed ones removed).
    pub entries: Vec<Entry>,
    /// The child block, when there is one (slashdashed ones removed).
    pub children: Option<Vec<KdlNode>>,
    /// From the type annotation or name to the end of the last entry or child block.
    pub span: TextRange,
}

/// A syntax error.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    /// What is wrong, lowercase.
    pub message: String,
    /// Where.
    pub span: TextRange,
    /// What to write under the span.
    pub label: &'static str,
    /// What would fix it.
    pub help: Option<String>,
}

/// What [`parse`] found.
#[derive(Debug, Default)]
pub struct ParsedKdl {
    /// The document's top-level nodes; partial when there are errors.
    pub nodes: Vec<KdlNode>,
    /// The first errors, at most `max_errors` of them.
    pub errors: Vec<SyntaxError>,
    /// Errors found beyond those kept.
    pub more_errors: usize,
}

/// Parses a KDL 2.0 document. Never panics; keeps at most `max_errors` errors.
pub fn parse(text: &str, max_errors: usize) -> ParsedKdl {
    let mut parser = Parser {
        text,
        pos: 0,
        depth: 0,
        values: 0,
        stopped: false,
        max_errors,
        out: ParsedKdl::default(),
    };
    if text.starts_with('\u{FEFF}') {
        parser.pos = '\u{FEFF}'.len_utf8();
    }
    let nodes = parser.nodes(None);
    parser.out.nodes = nodes;
    parser.out
}

/// KDL's newlines; `\r\n` is one.
fn newline_len(rest: &str) -> Option<usize> {
    let c = rest.chars().next()?;
    match c {
        '\r' if rest.as_bytes().get(1) == Some(&b'\n') => Some(2),
        '\r' | '\n' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
            Some(c.len_utf8())
        }
        _ => None,
    }
}

fn is_unicode_space(c: char) -> bool {
    matches!(
        c,
        '\t' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

fn is_newline_char(c: char) -> bool {
    matches!(
        c,
        '\r' | '\n' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Code points KDL forbids anywhere in a document (a leading BOM aside).
fn is_disallowed(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}'
        | '\u{E}'..='\u{1F}'
        | '\u{7F}'
        | '\u{200E}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}'
    )
}

/// A character for a message: `x`, or its code point when it is not printable.
fn describe(c: char) -> String {
    if c.is_control() || is_disallowed(c) || (is_unicode_space(c) && c != ' ') {
        format!("U+{:04X}", c as u32)
    } else {
        format!("`{c}`")
    }
}

fn is_identifier_char(c: char) -> bool {
    !(matches!(
        c,
        '\\' | '/' | '(' | ')' | '{' | '}' | '[' | ']' | ';' | '"' | '#' | '='
    ) || is_unicode_space(c)
        || is_newline_char(c)
        || is_disallowed(c))
}

type Result<T> = std::result::Result<T, SyntaxError>;

fn error(start: usize, end: usize, message: impl Into<String>, label: &'static str) -> SyntaxError {
    SyntaxError {
        message: message.into(),
        span: TextRange::new(start, end.max(start)),
        label,
        help: None,
    }
}

fn with_help(mut err: SyntaxError, help: impl Into<String>) -> SyntaxError {
    err.help = Some(help.into());
    err
}

struct Parser<'t> {
    text: &'t str,
    pos: usize,
    depth: usize,
    /// Nodes and entries read so far, against [`MAX_ELEMENTS`].
    values: usize,
    /// Set when the value limit is reached: nothing more is read.
    stopped: bool,
    max_errors: usize,
    out: ParsedKdl,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_byte(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn starts_with(&self, prefix: &str) -> bool {
        self.rest().starts_with(prefix)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    fn record(&mut self, err: SyntaxError) {
        if self.out.errors.len() < self.max_errors {
            self.out.errors.push(err);
        } else {
            self.out.more_errors += 1;
        }
    }

    /// Counts one more node or entry; past [`MAX_ELEMENTS`] reports it once and stops reading.
    fn count_value(&mut self, start: usize) -> Result<()> {
        self.values += 1;
        if self.values > MAX_ELEMENTS {
            self.stopped = true;
            return Err(with_help(
                error(
                    start,
                    start,
                    format!(
                        "more than {} nodes and entries in one file",
                        thousands(MAX_ELEMENTS)
                    ),
                    "limit reached here",
                ),
                format!(
                    "steward reads at most {} values per file; split it into several documents",
                    thousands(MAX_NODES)
                ),
            ));
        }
        Ok(())
    }

    // ---- whitespace and comments -------------------------------------------------------

    /// `/* ... */`, nested; the position is at `/*`.
    fn block_comment(&mut self) -> Result<()> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut level = 0usize;
        let mut idx = self.pos;
        while idx < bytes.len() {
            if bytes[idx] == b'/' && bytes.get(idx + 1) == Some(&b'*') {
                level += 1;
                idx += 2;
            } else if bytes[idx] == b'*' && bytes.get(idx + 1) == Some(&b'/') {
                level -= 1;
                idx += 2;
                if level == 0 {
                    self.pos = idx;
                    return Ok(());
                }
            } else {
                idx += 1;
            }
        }
        self.pos = self.text.len();
        Err(with_help(
            error(start, start + 2, "comment is never closed", "opened here"),
            "close it with `*/` (comments nest: each `/*` needs its own `*/`)",
        ))
    }

    /// `// ...` to the end of the line, newline included.
    fn line_comment(&mut self) {
        while let Some(c) = self.peek() {
            if let Some(len) = newline_len(self.rest()) {
                self.pos += len;
                return;
            }
            self.pos += c.len_utf8();
        }
    }

    /// `ws*`: spaces and block comments. True when anything was skipped.
    fn ws(&mut self) -> Result<bool> {
        let start = self.pos;
        loop {
            match self.peek() {
                Some(c) if is_unicode_space(c) => self.pos += c.len_utf8(),
                Some('/') if self.starts_with("/*") => self.block_comment()?,
                _ => return Ok(self.pos > start),
            }
        }
    }

    /// `node-space*`: spaces, block comments and line continuations (`\` then a newline).
    fn node_space(&mut self) -> Result<bool> {
        let start = self.pos;
        loop {
            self.ws()?;
            if self.peek_byte() != Some(b'\\') {
                break;
            }
            let backslash = self.pos;
            self.pos += 1;
            self.ws()?;
            if self.starts_with("//") {
                self.line_comment();
            } else if let Some(len) = newline_len(self.rest()) {
                self.pos += len;
            } else if !self.at_end() {
                return Err(with_help(
                    error(backslash, backslash + 1, "unexpected `\\`", "here"),
                    "a `\\` outside a string continues the node on the next line and must end its line",
                ));
            }
        }
        Ok(self.pos > start)
    }

    /// `line-space*`: node space, newlines and line comments.
    fn line_space(&mut self) -> Result<()> {
        loop {
            let before = self.pos;
            self.node_space()?;
            if let Some(len) = newline_len(self.rest()) {
                self.pos += len;
            } else if self.starts_with("//") {
                self.line_comment();
            }
            if self.pos == before {
                return Ok(());
            }
        }
    }

    // ---- nodes -----------------------------------------------------------------------

    /// Nodes up to the end of the text, or to the `}` closing the block opened at `open`.
    fn nodes(&mut self, open: Option<usize>) -> Vec<KdlNode> {
        let mut nodes = Vec::new();
        while !self.stopped {
            if let Err(err) = self.line_space() {
                self.record(err);
                self.skip_to_node_end(open.is_some());
                continue;
            }
            match self.peek() {
                None => {
                    if let Some(open) = open {
                        self.record(with_help(
                            error(open, open + 1, "`{` is never closed", "opened here"),
                            "close the block with `}`",
                        ));
                    }
                    break;
                }
                Some('}') if open.is_some() => break,
                Some('}') => {
                    let at = self.pos;
                    self.pos += 1;
                    self.record(with_help(
                        error(at, at + 1, "unexpected `}`", "nothing to close"),
                        "remove it, or open the block it closes with `{`",
                    ));
                    self.skip_to_node_end(false);
                    continue;
                }
                Some(_) => {}
            }
            let start = self.pos;
            let node = self.slashdashed(Parser::node);
            match node.and_then(|node| self.terminator().map(|()| node)) {
                Ok(Some(node)) => nodes.push(node),
                Ok(None) => {}
                Err(err) => {
                    self.record(err);
                    if self.pos == start {
                        self.bump();
                    }
                    self.skip_to_node_end(open.is_some());
                }
            }
        }
        nodes
    }

    /// After a node: `;`, a newline or a line comment (consumed), or `}` or the end (left).
    fn terminator(&mut self) -> Result<()> {
        self.node_space()?;
        match self.peek() {
            None | Some('}') => Ok(()),
            Some(';') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) if self.starts_with("//") => {
                self.line_comment();
                Ok(())
            }
            Some(c) => match newline_len(self.rest()) {
                Some(len) => {
                    self.pos += len;
                    Ok(())
                }
                None => Err(with_help(
                    error(
                        self.pos,
                        self.pos + c.len_utf8(),
                        format!("unexpected {}", describe(c)),
                        "here",
                    ),
                    "end the node with a new line or `;` before starting another",
                )),
            },
        }
    }

    /// Runs `item` after an optional `/-`; `Ok(None)` when it was slashdashed.
    fn slashdashed<T>(&mut self, item: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        if !self.starts_with("/-") {
            return item(self).map(Some);
        }
        let at = self.pos;
        self.pos += 2;
        self.line_space()?;
        if self.starts_with("/-") {
            return Err(error(at, self.pos + 2, "`/-` twice in a row", "here"));
        }
        if self.at_end() || self.peek() == Some('}') {
            return Err(with_help(
                error(at, at + 2, "`/-` comments out nothing", "here"),
                "`/-` comments out the node, argument, property or child block right after it",
            ));
        }
        item(self).map(|_| None)
    }

    /// One node, up to (not including) its terminator.
    fn node(&mut self) -> Result<KdlNode> {
        let start = self.pos;
        self.count_value(start)?;
        let ty = if self.peek() == Some('(') {
            let ty = self.type_annotation()?;
            self.node_space()?;
            Some(ty)
        } else {
            None
        };
        let name = self.node_name()?;
        let mut entries = Vec::new();
        let mut children: Option<Vec<KdlNode>> = None;
        let mut end = self.pos;
        // Once a child block (even a commented-out one) is seen, only commented-out blocks
        // may follow.
        let mut seen_block = false;
        loop {
            let before_space = self.pos;
            let spaced = self.node_space()?;
            let Some(c) = self.peek() else { break };
            if c == ';' || c == '}' || is_newline_char(c) || self.starts_with("//") {
                break;
            }
            if c == '{' {
                if children.is_some() {
                    return Err(with_help(
                        error(
                            self.pos,
                            self.pos + 1,
                            "a node has one child block",
                            "second block",
                        ),
                        "merge the blocks, or comment one out with `/-`",
                    ));
                }
                children = Some(self.children()?);
                seen_block = true;
                end = self.pos;
                continue;
            }
            if self.starts_with("/-") {
                let at = self.pos;
                self.pos += 2;
                self.line_space()?;
                match self.peek() {
                    Some('{') => {
                        self.children()?;
                        seen_block = true;
                    }
                    Some(_) if !spaced => {
                        return Err(with_help(
                            error(at, at + 2, "unexpected `/-`", "here"),
                            "put a space before `/-`",
                        ));
                    }
                    None | Some('}') | Some(';') => {
                        return Err(with_help(
                            error(at, at + 2, "`/-` comments out nothing", "here"),
                            "`/-` comments out the argument, property or child block right after it",
                        ));
                    }
                    Some(_) if seen_block => {
                        return Err(self.entry_after_block());
                    }
                    Some(_) => {
                        if self.starts_with("/-") {
                            return Err(error(at, self.pos + 2, "`/-` twice in a row", "here"));
                        }
                        self.entry()?;
                    }
                }
                end = self.pos;
                continue;
            }
            if !spaced {
                self.pos = before_space;
                let at = self.pos;
                return Err(with_help(
                    error(
                        at,
                        at + c.len_utf8(),
                        format!("unexpected {}", describe(c)),
                        "here",
                    ),
                    "separate arguments and properties with a space",
                ));
            }
            if seen_block {
                return Err(self.entry_after_block());
            }
            entries.push(self.entry()?);
            end = self.pos;
        }
        Ok(KdlNode {
            ty,
            name,
            entries,
            children,
            span: TextRange::new(start, end),
        })
    }

    fn entry_after_block(&self) -> SyntaxError {
        with_help(
            error(
                self.pos,
                self.pos + 1,
                "arguments and properties come before the child block",
                "after the block",
            ),
            "move it before the `{`",
        )
    }

    /// `{ nodes }`, the position at `{`.
    fn children(&mut self) -> Result<Vec<KdlNode>> {
        let open = self.pos;
        if self.depth >= MAX_DEPTH {
            self.skip_block();
            return Err(with_help(
                error(
                    open,
                    open + 1,
                    format!("KDL nesting deeper than {MAX_DEPTH} levels"),
                    "too deep",
                ),
                "flatten the document; steward documents never need this much nesting",
            ));
        }
        self.pos += 1;
        self.depth += 1;
        let nodes = self.nodes(Some(open));
        self.depth -= 1;
        if self.peek() == Some('}') {
            self.pos += 1;
        }
        Ok(nodes)
    }

    fn node_name(&mut self) -> Result<Ident> {
        let start = self.pos;
        match self.string()? {
            Some(ident) => Ok(ident),
            None => {
                let end = self.word_end();
                let found = self.text.get(start..end).unwrap_or("");
                let message = if found.is_empty() {
                    match self.peek() {
                        Some(c) => format!("expected a node name, found {}", describe(c)),
                        None => "expected a node name".to_string(),
                    }
                } else {
                    format!("expected a node name, found `{found}`")
                };
                let end = if end > start {
                    end
                } else {
                    start + self.peek().map_or(0, char::len_utf8)
                };
                Err(with_help(
                    error(start, end, message, "node name"),
                    "a node starts with its name: an identifier such as `file`, or a quoted string",
                ))
            }
        }
    }

    /// `(type)`, the position at `(`.
    fn type_annotation(&mut self) -> Result<Ident> {
        let open = self.pos;
        self.pos += 1;
        self.node_space()?;
        let Some(ty) = self.string()? else {
            return Err(error(
                open,
                self.pos.max(open + 1),
                "expected a type name inside `( )`",
                "type annotation",
            ));
        };
        self.node_space()?;
        if self.peek() != Some(')') {
            return Err(with_help(
                error(
                    open,
                    self.pos,
                    "type annotation is never closed",
                    "opened here",
                ),
                "close it with `)`",
            ));
        }
        self.pos += 1;
        Ok(ty)
    }

    /// An argument or a property.
    fn entry(&mut self) -> Result<Entry> {
        let start = self.pos;
        self.count_value(start)?;
        if self.peek() == Some('(') {
            let ty = self.type_annotation()?;
            self.node_space()?;
            let value_start = self.pos;
            let value = self.value()?;
            if self.peek() == Some('=') {
                return Err(with_help(
                    error(
                        start,
                        self.pos,
                        "a property name cannot have a type annotation",
                        "here",
                    ),
                    "write the annotation before the value: `key=(type)value`",
                ));
            }
            return Ok(Entry {
                name: None,
                ty: Some(ty),
                value,
                span: TextRange::new(start, self.pos),
                value_span: TextRange::new(value_start, self.pos),
            });
        }
        let key = self.string()?;
        let Some(key) = key else {
            let value = self.value()?;
            if self.peek() == Some('=') {
                return Err(with_help(
                    error(
                        start,
                        self.pos,
                        "a property name must be a string",
                        "property name",
                    ),
                    "quote it: `\"1\"=value`",
                ));
            }
            return Ok(Entry {
                name: None,
                ty: None,
                value,
                span: TextRange::new(start, self.pos),
                value_span: TextRange::new(start, self.pos),
            });
        };
        let after_key = self.pos;
        self.node_space()?;
        if self.peek() != Some('=') {
            self.pos = after_key;
            return Ok(Entry {
                name: None,
                ty: None,
                value: Scalar::String(key.value),
                span: key.span,
                value_span: key.span,
            });
        }
        self.pos += 1;
        self.node_space()?;
        let ty = if self.peek() == Some('(') {
            let ty = self.type_annotation()?;
            self.node_space()?;
            Some(ty)
        } else {
            None
        };
        let value_start = self.pos;
        if self.starts_with("/-") {
            return Err(with_help(
                error(
                    value_start,
                    value_start + 2,
                    "`/-` cannot comment out a property's value",
                    "here",
                ),
                "comment out the whole property: `/-key=value`",
            ));
        }
        let value = self.value()?;
        Ok(Entry {
            name: Some(key),
            ty,
            value,
            span: TextRange::new(start, self.pos),
            value_span: TextRange::new(value_start, self.pos),
        })
    }

    /// A value: a string, a number or a keyword.
    fn value(&mut self) -> Result<Scalar> {
        let start = self.pos;
        if let Some(text) = self.string()? {
            return Ok(Scalar::String(text.value));
        }
        let value = match self.peek() {
            Some('#') => self.keyword()?,
            Some(c) if c.is_ascii_digit() || c == '+' || c == '-' || c == '.' => self.number()?,
            Some(c) => {
                return Err(with_help(
                    error(
                        start,
                        start + c.len_utf8(),
                        format!("expected a value, found {}", describe(c)),
                        "value",
                    ),
                    "values are strings, numbers, `#true`, `#false` or `#null`",
                ));
            }
            None => return Err(error(start, start, "expected a value", "value")),
        };
        self.value_end(start)?;
        Ok(value)
    }

    /// After a value: something that may follow one.
    fn value_end(&self, start: usize) -> Result<()> {
        let rest = self.rest();
        let ok = match rest.chars().next() {
            None => true,
            Some(c) => {
                is_unicode_space(c)
                    || is_newline_char(c)
                    || matches!(c, ';' | '}' | '{' | ')' | '=' | '\\')
                    || rest.starts_with("/*")
                    || rest.starts_with("//")
            }
        };
        if ok {
            return Ok(());
        }
        let c = rest.chars().next().unwrap_or(' ');
        Err(with_help(
            error(
                start,
                self.pos + c.len_utf8(),
                format!("unexpected {} after a value", describe(c)),
                "here",
            ),
            "separate values with a space",
        ))
    }

    /// Where a run of identifier characters starting here ends.
    fn word_end(&self) -> usize {
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|&(_, c)| !is_identifier_char(c))
            .map_or(rest.len(), |(idx, _)| idx);
        self.pos + len
    }

    /// `#true`, `#false`, `#null`, `#inf`, `#-inf`, `#nan`; the position at `#`.
    fn keyword(&mut self) -> Result<Scalar> {
        let start = self.pos;
        self.pos += 1;
        let end = self.word_end();
        let word = self.text.get(self.pos..end).unwrap_or("");
        let value = match word {
            "true" => Scalar::Bool(true),
            "false" => Scalar::Bool(false),
            "null" => Scalar::Null,
            "inf" => Scalar::Float(f64::INFINITY),
            "-inf" => Scalar::Float(f64::NEG_INFINITY),
            "nan" => Scalar::Float(f64::NAN),
            _ => {
                return Err(with_help(
                    error(
                        start,
                        end.max(start + 1),
                        format!("unknown keyword `#{word}`"),
                        "keyword",
                    ),
                    "KDL's keywords are #true, #false, #null, #inf, #-inf and #nan",
                ));
            }
        };
        self.pos = end;
        Ok(value)
    }

    /// A number; the position at a digit, a sign or `.`.
    fn number(&mut self) -> Result<Scalar> {
        let start = self.pos;
        let end = self.word_end();
        let word = self.text.get(start..end).unwrap_or("");
        let bad = |what: &str| {
            with_help(
                error(
                    start,
                    end.max(start + 1),
                    format!("invalid number `{word}`{what}"),
                    "number",
                ),
                "numbers look like 42, -1.5, 2e10, 0x1f, 0o755 or 0b101; quote anything else",
            )
        };
        let (negative, unsigned) = match word.as_bytes().first() {
            Some(b'-') => (true, &word[1..]),
            Some(b'+') => (false, &word[1..]),
            _ => (false, word),
        };
        let radix = match unsigned.get(..2) {
            Some("0x" | "0X") => Some(16),
            Some("0o") => Some(8),
            Some("0b") => Some(2),
            _ => None,
        };
        let value = if let Some(radix) = radix {
            let digits = &unsigned[2..];
            if !digits.chars().next().is_some_and(|c| c.is_digit(radix))
                || !digits.chars().all(|c| c == '_' || c.is_digit(radix))
            {
                return Err(bad(""));
            }
            let clean: String = digits.chars().filter(|&c| c != '_').collect();
            let magnitude = u128::from_str_radix(&clean, radix).map_err(|_| bad(": too large"))?;
            Scalar::Integer(signed(negative, magnitude).ok_or_else(|| bad(": too large"))?)
        } else if is_decimal(unsigned) {
            let clean: String = unsigned.chars().filter(|&c| c != '_').collect();
            if clean.contains(['.', 'e', 'E']) {
                let number: f64 = clean.parse().map_err(|_| bad(""))?;
                Scalar::Float(if negative { -number } else { number })
            } else {
                let magnitude: u128 = clean.parse().map_err(|_| bad(": too large"))?;
                Scalar::Integer(signed(negative, magnitude).ok_or_else(|| bad(": too large"))?)
            }
        } else {
            return Err(bad(""));
        };
        self.pos = end;
        Ok(value)
    }

    // ---- strings ---------------------------------------------------------------------

    /// An identifier, quoted or raw string; `Ok(None)` when none starts here.
    fn string(&mut self) -> Result<Option<Ident>> {
        let start = self.pos;
        let value = match self.peek() {
            Some('"') => self.quoted()?,
            Some('#') => {
                let hashes = self.rest().bytes().take_while(|&b| b == b'#').count();
                if self.text.as_bytes().get(self.pos + hashes) != Some(&b'"') {
                    return Ok(None);
                }
                self.raw(hashes)?
            }
            Some(c) if is_identifier_char(c) => match self.identifier()? {
                Some(text) => text,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        Ok(Some(Ident {
            value,
            span: TextRange::new(start, self.pos),
        }))
    }

    /// A bare identifier; `Ok(None)` when the word here is a number.
    fn identifier(&mut self) -> Result<Option<String>> {
        let start = self.pos;
        let end = self.word_end();
        let word = self.text.get(start..end).unwrap_or("");
        let unsigned = word.strip_prefix(['+', '-']).unwrap_or(word);
        let starts_number = unsigned.starts_with(|c: char| c.is_ascii_digit())
            || (unsigned.starts_with('.')
                && unsigned[1..].starts_with(|c: char| c.is_ascii_digit()));
        if starts_number {
            return Ok(None);
        }
        if matches!(word, "true" | "false" | "null" | "inf" | "-inf" | "nan") {
            return Err(with_help(
                error(
                    start,
                    end,
                    format!("`{word}` must be written `#{word}`"),
                    "bare keyword",
                ),
                format!("KDL 2 spells it `#{word}`; quote it (`\"{word}\"`) to mean the string"),
            ));
        }
        self.pos = end;
        self.value_end(start)?;
        Ok(Some(word.to_string()))
    }

    /// `"..."` or `"""` multi-line `"""`; the position at the first `"`.
    fn quoted(&mut self) -> Result<String> {
        let start = self.pos;
        if self.starts_with("\"\"\"") {
            self.pos += 3;
            let Some(len) = newline_len(self.rest()) else {
                return Err(with_help(
                    error(
                        start,
                        start + 3,
                        "`\"\"\"` must be followed by a new line",
                        "multi-line string",
                    ),
                    "start the text on the next line, or use one `\"` for a one-line string",
                ));
            };
            self.pos += len;
            let value = self.multi_line(start, None)?;
            self.value_end(start)?;
            return Ok(value);
        }
        self.pos += 1;
        let value = self.quoted_body(start);
        if value.is_err() {
            self.skip_quoted_rest();
        }
        let value = value?;
        self.value_end(start)?;
        Ok(value)
    }

    /// After an error inside a one-line string: on after its closing quote, or to the end of
    /// its line.
    fn skip_quoted_rest(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                '\\' => {
                    self.pos += 1;
                    self.bump();
                }
                '"' => {
                    self.pos += 1;
                    return;
                }
                c if is_newline_char(c) => return,
                c => self.pos += c.len_utf8(),
            }
        }
    }

    /// A one-line quoted string's text, the position after its opening quote.
    fn quoted_body(&mut self, start: usize) -> Result<String> {
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(with_help(
                    error(start, start + 1, "string is never closed", "opened here"),
                    "close it with `\"`",
                ));
            };
            match c {
                '"' => {
                    self.pos += 1;
                    break;
                }
                '\\' => self.escape(&mut value)?,
                c if is_newline_char(c) => {
                    return Err(with_help(
                        error(
                            start,
                            self.pos,
                            "string is not closed on its line",
                            "opened here",
                        ),
                        "close it with `\"`; for text over several lines use `\"\"\"`",
                    ));
                }
                c if is_disallowed(c) => return Err(self.disallowed_here(c)),
                c => {
                    value.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
        Ok(value)
    }

    fn disallowed_here(&self, c: char) -> SyntaxError {
        with_help(
            error(
                self.pos,
                self.pos + c.len_utf8(),
                format!("character U+{:04X} is not allowed in KDL", c as u32),
                "here",
            ),
            "write it as an escape such as `\\u{7f}` inside a quoted string",
        )
    }

    /// A `\` escape inside a quoted string, appended to `value`.
    fn escape(&mut self, value: &mut String) -> Result<()> {
        let at = self.pos;
        self.pos += 1;
        let Some(c) = self.peek() else {
            return Err(error(
                at,
                at + 1,
                "string is never closed",
                "escape at the end",
            ));
        };
        let plain = match c {
            '\\' => Some('\\'),
            '"' => Some('"'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{C}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            's' => Some(' '),
            _ => None,
        };
        if let Some(plain) = plain {
            value.push(plain);
            self.pos += 1;
            return Ok(());
        }
        if is_unicode_space(c) || is_newline_char(c) {
            // A whitespace escape: the backslash and all whitespace after it vanish.
            while let Some(c) = self.peek() {
                if is_unicode_space(c) || is_newline_char(c) {
                    self.pos += c.len_utf8();
                } else {
                    break;
                }
            }
            return Ok(());
        }
        if c == 'u' && self.text.as_bytes().get(self.pos + 1) == Some(&b'{') {
            let digits_start = self.pos + 2;
            let rest = self.text.get(digits_start..).unwrap_or("");
            let count = rest.bytes().take_while(u8::is_ascii_hexdigit).count();
            if (1..=6).contains(&count) && rest.as_bytes().get(count) == Some(&b'}') {
                let scalar = u32::from_str_radix(&rest[..count], 16)
                    .ok()
                    .and_then(char::from_u32);
                if let Some(scalar) = scalar {
                    value.push(scalar);
                    self.pos = digits_start + count + 1;
                    return Ok(());
                }
            }
            let end = (digits_start + count + 1).min(self.text.len());
            return Err(with_help(
                error(at, end, "invalid unicode escape", "escape"),
                "write `\\u{` then 1 to 6 hex digits of a Unicode scalar value, then `}`",
            ));
        }
        Err(with_help(
            error(
                at,
                self.pos + c.len_utf8(),
                format!("unknown escape `\\{c}`"),
                "escape",
            ),
            "escapes are \\n \\r \\t \\\\ \\\" \\b \\f \\s and \\u{HEX}; raw strings (#\"...\"#) need none",
        ))
    }

    /// `#"..."#` with `hashes` hashes; the position at the first `#`.
    fn raw(&mut self, hashes: usize) -> Result<String> {
        let start = self.pos;
        self.pos += hashes;
        let mut closing = String::with_capacity(hashes + 1);
        closing.push('"');
        closing.extend(std::iter::repeat_n('#', hashes));
        if self.starts_with("\"\"\"") && newline_len(&self.rest()[3..]).is_some() {
            self.pos += 3;
            self.pos += newline_len(self.rest()).unwrap_or(0);
            let value = self.multi_line(start, Some(&closing))?;
            self.value_end(start)?;
            return Ok(value);
        }
        self.pos += 1;
        let body_start = self.pos;
        loop {
            let Some(c) = self.peek() else {
                return Err(with_help(
                    error(
                        start,
                        body_start,
                        "raw string is never closed",
                        "opened here",
                    ),
                    format!("close it with `{closing}`"),
                ));
            };
            if self.starts_with(&closing) {
                break;
            }
            if is_newline_char(c) {
                return Err(with_help(
                    error(
                        start,
                        self.pos,
                        "raw string is not closed on its line",
                        "opened here",
                    ),
                    format!("close it with `{closing}`; for text over several lines use `#\"\"\"`"),
                ));
            }
            if is_disallowed(c) {
                return Err(self.disallowed_here(c));
            }
            self.pos += c.len_utf8();
        }
        let value = self
            .text
            .get(body_start..self.pos)
            .unwrap_or("")
            .to_string();
        self.pos += closing.len();
        // KDL: a one-line raw string cannot look like a multi-line one.
        if value == "\"" || value.starts_with("\"\"") {
            return Err(with_help(
                error(
                    start,
                    self.pos,
                    "a one-line raw string cannot start with `\"\"`",
                    "here",
                ),
                "for text over several lines put a new line after the opening `#\"\"\"`",
            ));
        }
        self.value_end(start)?;
        Ok(value)
    }

    /// The body of a multi-line string, the position after the opening line; `raw` holds
    /// the closing quote and hashes of a raw string (no escapes), `None` for a quoted one.
    ///
    /// Every line but whitespace-only ones must start with the exact whitespace before the
    /// closing `"""`, which is removed; whitespace-only lines become empty; newlines become
    /// `\n`; the newline before the closing line is not part of the value.
    fn multi_line(&mut self, start: usize, raw: Option<&str>) -> Result<String> {
        let closing = raw.map_or("\"\"\"".to_string(), |c| format!("\"\"{c}"));
        let body_start = self.pos;
        // First pass: find the closing line and its indentation.
        let prefix = self.find_closing(start, &closing, raw.is_none())?;
        let closing_end = self.pos;
        self.pos = body_start;
        let value = self.multi_line_body(start, raw.is_some(), &closing, &prefix);
        if value.is_err() {
            // Go on after the string, not inside it.
            self.pos = closing_end;
        }
        value
    }

    /// The second pass of [`Parser::multi_line`], once the closing line is known.
    fn multi_line_body(
        &mut self,
        start: usize,
        is_raw: bool,
        closing: &str,
        prefix: &str,
    ) -> Result<String> {
        let raw = is_raw.then_some(());
        let mut value = String::new();
        loop {
            let line_start = self.pos;
            // The closing line?
            let mut probe = self.pos;
            if raw.is_none() {
                probe = skip_ws_escapes_and_spaces(self.text, probe);
            } else {
                probe = skip_spaces(self.text, probe);
            }
            if self
                .text
                .get(probe..)
                .is_some_and(|r| r.starts_with(closing))
            {
                let indent = self.text.get(line_start..probe).unwrap_or("");
                if raw.is_none() && strip_ws_escapes(indent) != prefix
                    || raw.is_some() && indent != prefix
                {
                    return Err(self.bad_indent(line_start));
                }
                self.pos = probe + closing.len();
                break;
            }
            // A whitespace-only line.
            let blank_end = if raw.is_none() {
                skip_ws_escapes_and_spaces(self.text, self.pos)
            } else {
                skip_spaces(self.text, self.pos)
            };
            if let Some(len) = self.text.get(blank_end..).and_then(newline_len) {
                value.push('\n');
                self.pos = blank_end + len;
                continue;
            }
            if !self.starts_with(prefix) {
                return Err(self.bad_indent(line_start));
            }
            self.pos += prefix.len();
            // The line's content, to and including its newline.
            loop {
                let Some(c) = self.peek() else {
                    return Err(self.unclosed_multi_line(start, closing));
                };
                if let Some(len) = newline_len(self.rest()) {
                    self.pos += len;
                    value.push('\n');
                    break;
                }
                if raw.is_none() && c == '\\' {
                    self.escape(&mut value)?;
                    continue;
                }
                if is_disallowed(c) {
                    return Err(self.disallowed_here(c));
                }
                value.push(c);
                self.pos += c.len_utf8();
            }
        }
        value.pop();
        Ok(value)
    }

    fn bad_indent(&self, line_start: usize) -> SyntaxError {
        let end = self.text.get(line_start..).map_or(line_start, |rest| {
            line_start + rest.find(is_newline_char).unwrap_or(rest.len())
        });
        with_help(
            error(
                line_start,
                end,
                "line of a multi-line string is not indented like its closing `\"\"\"`",
                "this line",
            ),
            "every line must start with the same whitespace as the line of the closing quotes",
        )
    }

    fn unclosed_multi_line(&self, start: usize, closing: &str) -> SyntaxError {
        with_help(
            error(
                start,
                start + 3,
                "multi-line string is never closed",
                "opened here",
            ),
            format!("close it with `{closing}` on a line of its own"),
        )
    }

    /// Finds the line that closes a multi-line string; returns its indentation.
    fn find_closing(&mut self, start: usize, closing: &str, escapes: bool) -> Result<String> {
        loop {
            let line_start = self.pos;
            let probe = if escapes {
                skip_ws_escapes_and_spaces(self.text, self.pos)
            } else {
                skip_spaces(self.text, self.pos)
            };
            if self
                .text
                .get(probe..)
                .is_some_and(|r| r.starts_with(closing))
            {
                let indent = self.text.get(line_start..probe).unwrap_or("");
                self.pos = probe + closing.len();
                return Ok(if escapes {
                    strip_ws_escapes(indent)
                } else {
                    indent.to_string()
                });
            }
            // Skip to the next line.
            loop {
                let Some(c) = self.peek() else {
                    return Err(self.unclosed_multi_line(start, closing));
                };
                if let Some(len) = newline_len(self.rest()) {
                    self.pos += len;
                    break;
                }
                if escapes && c == '\\' {
                    // Skip the escaped character; a whitespace escape may run across lines,
                    // which then continue this logical line.
                    self.pos += 1;
                    let after = skip_spaces_and_newlines(self.text, self.pos);
                    if after > self.pos {
                        self.pos = after;
                    } else {
                        self.bump();
                    }
                    continue;
                }
                if self.starts_with(closing) {
                    return Err(with_help(
                        error(
                            self.pos,
                            self.pos + closing.len(),
                            "the closing `\"\"\"` of a multi-line string must be on a line of its own",
                            "here",
                        ),
                        "put a new line before it, or escape a quote in the text as `\\\"`",
                    ));
                }
                self.pos += c.len_utf8();
            }
        }
    }

    // ---- error recovery --------------------------------------------------------------

    /// Skips the rest of a broken node: to the end of its line outside strings, comments and
    /// blocks (nodes after a `;` on that line are not read: their errors would mostly echo
    /// this one), or to the `}` of the enclosing block (not consumed; at the top
    /// level, where none can close, a stray `}` is skipped too).
    fn skip_to_node_end(&mut self, in_block: bool) {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                '{' => {
                    depth += 1;
                    self.pos += 1;
                }
                '}' if depth == 0 && in_block => return,
                '}' if depth == 0 => self.pos += 1,
                '}' => {
                    depth -= 1;
                    self.pos += 1;
                }
                '"' | '#' => self.skip_string(),
                '/' if self.starts_with("/*") => {
                    if self.block_comment().is_err() {
                        return;
                    }
                }
                '/' if self.starts_with("//") => {
                    self.line_comment();
                    if depth == 0 {
                        return;
                    }
                }
                c if is_newline_char(c) && depth == 0 => {
                    self.pos += newline_len(self.rest()).unwrap_or(1);
                    return;
                }
                c => self.pos += c.len_utf8(),
            }
        }
    }

    /// Skips a `{ ... }` block without reading it; the position at `{`.
    fn skip_block(&mut self) {
        self.pos += 1;
        let mut depth = 1usize;
        while let Some(c) = self.peek() {
            match c {
                '{' => {
                    depth += 1;
                    self.pos += 1;
                }
                '}' => {
                    depth -= 1;
                    self.pos += 1;
                    if depth == 0 {
                        return;
                    }
                }
                '"' | '#' => self.skip_string(),
                '/' if self.starts_with("/*") => {
                    if self.block_comment().is_err() {
                        return;
                    }
                }
                '/' if self.starts_with("//") => self.line_comment(),
                c => self.pos += c.len_utf8(),
            }
        }
    }

    /// Skips a quoted or raw string (or a lone `#`) without checking it.
    fn skip_string(&mut self) {
        let hashes = self.rest().bytes().take_while(|&b| b == b'#').count();
        if self.text.as_bytes().get(self.pos + hashes) != Some(&b'"') {
            self.pos += hashes.max(1);
            return;
        }
        let multi = self.rest()[hashes..].starts_with("\"\"\"");
        let quote = if multi { "\"\"\"" } else { "\"" };
        let mut closing = quote.to_string();
        closing.extend(std::iter::repeat_n('#', hashes));
        self.pos += hashes + quote.len();
        while let Some(c) = self.peek() {
            if hashes == 0 && c == '\\' {
                self.pos += 1;
                self.bump();
                continue;
            }
            if self.starts_with(&closing) {
                self.pos += closing.len();
                return;
            }
            if !multi && is_newline_char(c) {
                return;
            }
            self.pos += c.len_utf8();
        }
    }
}

fn signed(negative: bool, magnitude: u128) -> Option<i128> {
    if negative {
        0i128.checked_sub_unsigned(magnitude)
    } else {
        i128::try_from(magnitude).ok()
    }
}

/// `integer ('.' integer)? (('e' | 'E') sign? integer)?` where `integer := digit (digit | '_')*`.
fn is_decimal(text: &str) -> bool {
    fn integer(bytes: &[u8], idx: &mut usize) -> bool {
        if !bytes.get(*idx).is_some_and(u8::is_ascii_digit) {
            return false;
        }
        while bytes
            .get(*idx)
            .is_some_and(|b| b.is_ascii_digit() || *b == b'_')
        {
            *idx += 1;
        }
        true
    }
    let bytes = text.as_bytes();
    let mut idx = 0;
    if !integer(bytes, &mut idx) {
        return false;
    }
    if bytes.get(idx) == Some(&b'.') {
        idx += 1;
        if !integer(bytes, &mut idx) {
            return false;
        }
    }
    if matches!(bytes.get(idx), Some(b'e' | b'E')) {
        idx += 1;
        if matches!(bytes.get(idx), Some(b'+' | b'-')) {
            idx += 1;
        }
        if !integer(bytes, &mut idx) {
            return false;
        }
    }
    idx == bytes.len()
}

fn skip_spaces(text: &str, mut pos: usize) -> usize {
    while let Some(c) = text.get(pos..).and_then(|r| r.chars().next()) {
        if !is_unicode_space(c) {
            break;
        }
        pos += c.len_utf8();
    }
    pos
}

fn skip_spaces_and_newlines(text: &str, mut pos: usize) -> usize {
    while let Some(c) = text.get(pos..).and_then(|r| r.chars().next()) {
        if !is_unicode_space(c) && !is_newline_char(c) {
            break;
        }
        pos += c.len_utf8();
    }
    pos
}

/// Spaces and whitespace escapes (`\` then spaces or newlines) from `pos`.
fn skip_ws_escapes_and_spaces(text: &str, mut pos: usize) -> usize {
    loop {
        pos = skip_spaces(text, pos);
        if text.as_bytes().get(pos) != Some(&b'\\') {
            return pos;
        }
        let after = skip_spaces_and_newlines(text, pos + 1);
        if after == pos + 1 {
            return pos;
        }
        pos = after;
    }
}

/// Indentation with its whitespace escapes removed.
fn strip_ws_escapes(indent: &str) -> String {
    let mut out = String::new();
    let mut chars = indent.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            while chars
                .next_if(|&c| is_unicode_space(c) || is_newline_char(c))
                .is_some()
            {}
            continue;
        }
        out.push(c);
    }
    out
}
