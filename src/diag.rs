//! Diagnostics: user mistakes as located, structured values.
//!
//! Owns [`Span`], [`SourceId`], [`SourceMap`] and [`Diagnostic`]. Every stage before the plan
//! collects diagnostics instead of failing (parsing never fails, it returns a value plus
//! diagnostics), so one run reports every mistake. Spans are byte ranges into a source held by
//! the [`SourceMap`]; line and column are computed from the text, never stored or guessed.
//! Rendering to a terminal (miette, colours) happens only in `cli`.

use std::fmt;
use std::path::{Path, PathBuf};

/// Identifies one source text in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u32);

/// A byte range in one source text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    /// The source the range points into.
    pub source: SourceId,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` in `source`.
    pub fn new(source: SourceId, start: usize, end: usize) -> Span {
        Span {
            source,
            start,
            end: end.max(start),
        }
    }

    /// An empty span at the start of `source`, for problems with a file as a whole.
    pub fn file_start(source: SourceId) -> Span {
        Span::new(source, 0, 0)
    }
}

/// One source text: a document file, a module file from the standard library, a template.
#[derive(Debug)]
pub struct Source {
    /// The name shown to users: a path relative to where steward was run, or `stdlib/...`.
    pub name: String,
    /// The path on disk, when the source came from disk.
    pub path: Option<PathBuf>,
    /// The text; lossy when the file was not valid UTF-8, empty when it was not read.
    pub text: String,
    line_starts: Vec<usize>,
}

/// A 1-based line and column; the column counts characters, as editors do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineCol {
    /// 1-based line.
    pub line: usize,
    /// 1-based column in characters.
    pub column: usize,
}

impl Source {
    /// Line and column of a byte offset (clamped to the text).
    pub fn line_col(&self, offset: usize) -> LineCol {
        let offset = offset.min(self.text.len());
        let line_idx = match self.line_starts.binary_search(&offset) {
            Ok(idx) => idx,
            Err(idx) => idx.saturating_sub(1),
        };
        let line_start = self.line_starts.get(line_idx).copied().unwrap_or(0);
        let mut col_end = offset;
        while col_end > line_start && !self.text.is_char_boundary(col_end) {
            col_end -= 1;
        }
        let column = self
            .text
            .get(line_start..col_end)
            .map_or(0, |s| s.chars().count())
            + 1;
        LineCol {
            line: line_idx + 1,
            column,
        }
    }

    /// Byte offset of a 1-based line and character column (clamped to the text).
    pub fn offset_of(&self, line: usize, column: usize) -> usize {
        let Some(&line_start) = self.line_starts.get(line.saturating_sub(1)) else {
            return self.text.len();
        };
        let rest = self.text.get(line_start..).unwrap_or("");
        let in_line = rest
            .char_indices()
            .take_while(|&(_, c)| c != '\n')
            .nth(column.saturating_sub(1))
            .map_or_else(|| rest.find('\n').unwrap_or(rest.len()), |(idx, _)| idx);
        line_start + in_line
    }
}

/// All the source texts of one run.
#[derive(Debug, Default)]
pub struct SourceMap {
    sources: Vec<Source>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Adds a source and returns its id.
    pub fn add(&mut self, name: String, path: Option<PathBuf>, text: String) -> SourceId {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(idx, _)| idx + 1));
        let id = SourceId(u32::try_from(self.sources.len()).unwrap_or(u32::MAX));
        self.sources.push(Source {
            name,
            path,
            text,
            line_starts,
        });
        id
    }

    /// The source with this id.
    ///
    /// # Panics
    /// Never for ids handed out by this map; ids are only made by [`SourceMap::add`].
    pub fn get(&self, id: SourceId) -> &Source {
        &self.sources[id.0 as usize]
    }

    /// The source read from `path`, if any.
    pub fn find_path(&self, path: &Path) -> Option<SourceId> {
        self.sources
            .iter()
            .position(|source| source.path.as_deref() == Some(path))
            .map(|idx| SourceId(idx as u32))
    }

    /// Text covered by a span.
    pub fn slice(&self, span: Span) -> &str {
        self.get(span.source)
            .text
            .get(span.start..span.end)
            .unwrap_or("")
    }

    /// `name:line:column` of a span's start.
    pub fn location(&self, span: Span) -> String {
        let source = self.get(span.source);
        let at = source.line_col(span.start);
        format!("{}:{}:{}", source.name, at.line, at.column)
    }

    /// Number of sources.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// True when no source was added.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; does not fail the run.
    Warning,
    /// The project cannot be used as written.
    Error,
}

/// A span with a short message drawn under it.
#[derive(Clone, Debug)]
pub struct Label {
    /// What is pointed at.
    pub span: Span,
    /// What to say about it.
    pub message: String,
}

/// A user mistake (or warning) with where it is and what would fix it.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable code, `module::snake_case`.
    pub code: &'static str,
    /// Lowercase, no trailing period, names the thing.
    pub message: String,
    /// Where: the first label is the primary location.
    pub labels: Vec<Label>,
    /// What would fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            labels: vec![Label {
                span,
                message: String::new(),
            }],
            help: None,
        }
    }

    /// An error that belongs to no place in a document (a missing directory, say).
    pub fn plain(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
        }
    }

    /// A warning at `span`.
    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    /// Sets the primary label's text.
    pub fn with_label(mut self, message: impl Into<String>) -> Diagnostic {
        if let Some(first) = self.labels.first_mut() {
            first.message = message.into();
        }
        self
    }

    /// Adds a secondary location.
    pub fn with_secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    /// Adds what would fix it.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// The primary location.
    pub fn span(&self) -> Option<Span> {
        self.labels.first().map(|label| label.span)
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The closest candidate to `name` by edit distance, for "did you mean" help.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|&(distance, candidate)| {
            distance <= 2.max(name.len() / 3) && distance < candidate.len().max(name.len())
        })
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, candidate)| candidate)
}

/// "did you mean `x`?" when something is close, otherwise the list of valid names.
pub fn did_you_mean(name: &str, candidates: &[&str]) -> String {
    match suggest(name, candidates.iter().copied()) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!("expected one of: {}", candidates.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let mut map = SourceMap::new();
        let id = map.add("a".into(), None, "ab\nçd: x\n".into());
        let source = map.get(id);
        assert_eq!(source.line_col(0), LineCol { line: 1, column: 1 });
        assert_eq!(source.line_col(3), LineCol { line: 2, column: 1 });
        // `ç` is two bytes: `d` is byte 5 but column 2.
        assert_eq!(source.line_col(5), LineCol { line: 2, column: 2 });
        assert_eq!(source.offset_of(2, 2), 5);
        assert_eq!(source.offset_of(2, 99), 9);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("mdoe", ["mode", "owner", "group"]), Some("mode"));
        assert_eq!(suggest("zzzzzz", ["mode", "owner"]), None);
    }
}
