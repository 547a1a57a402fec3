//! Diagnostics for people: miette's graphical reports, coloured only when wanted.
//!
//! miette pads with Rust's width formatting, whose width is a `u16`: a label past column
//! 65,535 made it panic. So miette never sees a long line: each line longer than
//! [`MAX_LINE_CHARS`] is clipped around the labels on it (`…` marks what is left out), every
//! line is kept so line numbers stay real, and [`ClippedSource`] reports the real column of
//! each label for the `[file:line:column]` header. Messages are clipped too.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::Arc;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents,
    SourceCode, SourceSpan, SpanContents,
};

use crate::diag::{Diagnostic, Severity, Source, SourceId, SourceMap, Span};

/// Most diagnostics printed in one run; the rest are counted.
const MAX_SHOWN: usize = 200;

/// Longest line shown whole, in characters.
const MAX_LINE_CHARS: usize = 120;

/// Characters kept before a label's start on a clipped line.
const CHARS_BEFORE: usize = 40;

/// Characters kept from a label's start on a clipped line.
const CHARS_AFTER: usize = 80;

/// Most windows kept on one clipped line: with their markers, at most about a thousand
/// characters, far from the 65,535 columns miette can pad to.
const MAX_WINDOWS: usize = 8;

/// Longest message, label or help shown, in characters.
const MAX_TEXT_CHARS: usize = 300;

/// Marks text left out of a clipped line or message.
const ELLIPSIS: char = '…';

/// One diagnostic in miette's terms, with its source attached (the "delayed source" pattern:
/// the library hands out spans, only the CLI attaches text).
struct Report {
    message: String,
    code: String,
    severity: miette::Severity,
    help: Option<String>,
    source: Option<ClippedSource>,
    labels: Vec<LabeledSpan>,
    related: Vec<Report>,
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        (!self.code.is_empty()).then(|| Box::new(&self.code) as Box<dyn fmt::Display>)
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        (!self.labels.is_empty())
            .then(|| Box::new(self.labels.iter().cloned()) as Box<dyn Iterator<Item = LabeledSpan>>)
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        (!self.related.is_empty()).then(|| {
            Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic))
                as Box<dyn Iterator<Item = _>>
        })
    }
}

/// Writes diagnostics as graphical reports, then a summary line.
pub fn human(
    out: &mut dyn Write,
    diagnostics: &[Diagnostic],
    sources: &SourceMap,
    color: bool,
) -> std::io::Result<()> {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_context_lines(1)
        .with_width(100);
    let mut texts: HashMap<SourceId, Shared> = HashMap::new();
    for diag in diagnostics.iter().take(MAX_SHOWN) {
        let report = to_report(diag, sources, &mut texts);
        let mut text = String::new();
        if handler.render_report(&mut text, &report).is_err() {
            text = format!("{}\n", diag.message);
        }
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
    }
    if diagnostics.len() > MAX_SHOWN {
        writeln!(out, "... and {} more", diagnostics.len() - MAX_SHOWN)?;
    }
    Ok(())
}

fn to_report(
    diag: &Diagnostic,
    sources: &SourceMap,
    texts: &mut HashMap<SourceId, Shared>,
) -> Report {
    let primary = diag.span().map(|span| span.source);
    let primary_spans: Vec<Span> = diag
        .labels
        .iter()
        .map(|label| label.span)
        .filter(|span| Some(span.source) == primary)
        .collect();
    let (source, mut remapped) = match primary {
        Some(id) => {
            let (source, spans) =
                clipped(sources.get(id), shared(texts, sources, id), &primary_spans);
            (Some(source), spans.into_iter())
        }
        None => (None, Vec::new().into_iter()),
    };
    let mut labels = Vec::new();
    let mut related = Vec::new();
    for (idx, label) in diag.labels.iter().enumerate() {
        let message = (!label.message.is_empty()).then(|| clip_text(&label.message));
        if Some(label.span.source) == primary {
            // A label clipped out of its line is not drawn (the message still names it).
            let Some(Some(span)) = remapped.next() else {
                continue;
            };
            let labeled = if idx == 0 {
                LabeledSpan::new_primary_with_span(message, span)
            } else {
                LabeledSpan::new_with_span(message, span)
            };
            labels.push(labeled);
        } else {
            let id = label.span.source;
            let (source, spans) =
                clipped(sources.get(id), shared(texts, sources, id), &[label.span]);
            related.push(Report {
                message: clip_text(&label.message),
                code: String::new(),
                severity: miette::Severity::Advice,
                help: None,
                source: Some(source),
                labels: spans
                    .into_iter()
                    .flatten()
                    .map(|span| LabeledSpan::new_with_span(None, span))
                    .collect(),
                related: Vec::new(),
            });
        }
    }
    Report {
        message: clip_text(&diag.message),
        code: diag.code.to_string(),
        severity: match diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        },
        help: diag.help.as_deref().map(clip_text),
        source,
        labels,
        related,
    }
}

/// A source's text, shared by every report that shows it, and whether any line needs clipping.
#[derive(Clone)]
struct Shared {
    text: Arc<String>,
    has_long_line: bool,
}

fn shared(texts: &mut HashMap<SourceId, Shared>, sources: &SourceMap, id: SourceId) -> Shared {
    texts
        .entry(id)
        .or_insert_with(|| {
            let text = &sources.get(id).text;
            Shared {
                text: Arc::new(text.clone()),
                has_long_line: text.split('\n').any(is_long),
            }
        })
        .clone()
}

fn is_long(line: &str) -> bool {
    line.len() > MAX_LINE_CHARS && line.chars().nth(MAX_LINE_CHARS).is_some()
}

/// The text miette reads, with every line longer than [`MAX_LINE_CHARS`] clipped, plus the
/// real column of each label's start for the report's header.
struct ClippedSource {
    name: String,
    text: Arc<String>,
    /// Label starts as offsets into `text`, with their real 0-based character column.
    starts: Vec<(usize, usize)>,
}

impl SourceCode for ClippedSource {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let contents =
            self.text
                .as_str()
                .read_span(span, context_lines_before, context_lines_after)?;
        // The header reads a label's own span with no context lines. miette counts its
        // column in bytes and in the clipped text; the header must name the real one, in
        // characters, as the JSON diagnostics do. Lines need nothing: every line is kept.
        let column = match (context_lines_before, context_lines_after) {
            (0, 0) => self
                .starts
                .iter()
                .find(|(start, _)| *start == span.offset())
                .map_or(contents.column(), |&(_, column)| column),
            _ => contents.column(),
        };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            contents.data(),
            *contents.span(),
            contents.line(),
            column,
            contents.line_count(),
        )))
    }
}

/// The source as miette should read it, and `spans` mapped into it; `None` for a span whose
/// start was clipped out (more than [`MAX_WINDOWS`] labels on one long line). The first span
/// is the primary one and always kept.
fn clipped(
    source: &Source,
    shared: Shared,
    spans: &[Span],
) -> (ClippedSource, Vec<Option<SourceSpan>>) {
    let text = source.text.as_str();
    // Spans come from every module; one that splits a character or runs past the end must
    // not make the renderer slice text wrongly.
    let spans: Vec<(usize, usize)> = spans
        .iter()
        .map(|span| {
            let start = text.floor_char_boundary(span.start);
            (start, text.floor_char_boundary(span.end).max(start))
        })
        .collect();
    let starts = |map: &dyn Fn(usize) -> usize| -> Vec<(usize, usize)> {
        spans
            .iter()
            .map(|&(start, _)| (map(start), source.line_col(start).column - 1))
            .collect()
    };
    if !shared.has_long_line {
        let res = ClippedSource {
            name: source.name.clone(),
            starts: starts(&|offset| offset),
            text: shared.text,
        };
        let spans = spans
            .iter()
            .map(|&(start, end)| Some(source_span(start, end)))
            .collect();
        return (res, spans);
    }
    let anchors: Vec<usize> = spans.iter().map(|&(start, _)| start).collect();
    let clip = Clip::new(text, &anchors);
    let mapped = spans
        .iter()
        .map(|&(start, end)| {
            clip.shows(start).then(|| {
                let mapped = clip.map(start);
                source_span(mapped, clip.map(end).max(mapped))
            })
        })
        .collect();
    let res = ClippedSource {
        name: source.name.clone(),
        starts: starts(&|offset| clip.map(offset)),
        text: Arc::new(clip.text),
    };
    (res, mapped)
}

fn source_span(start: usize, end: usize) -> SourceSpan {
    SourceSpan::from((start, end.saturating_sub(start)))
}

/// A copy of a text whose long lines keep only windows around given offsets.
struct Clip {
    text: String,
    /// Kept ranges of the original, `(start, end, start in text)`, in order.
    kept: Vec<(usize, usize, usize)>,
}

impl Clip {
    /// Keeps every line; a line longer than [`MAX_LINE_CHARS`] keeps a window around each of
    /// the `anchors` (character boundaries) on it, at most [`MAX_WINDOWS`] with the first
    /// anchor always among them, or its start when it has none.
    fn new(original: &str, anchors: &[usize]) -> Clip {
        let mut sorted = anchors.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut clip = Clip {
            text: String::with_capacity(original.len().min(1 << 20)),
            kept: Vec::new(),
        };
        let mut line_start = 0;
        while line_start <= original.len() {
            let line_end = original[line_start..]
                .find('\n')
                .map_or(original.len(), |idx| line_start + idx);
            let next = (line_end + 1).min(original.len());
            let line = &original[line_start..line_end];
            if !is_long(line) {
                clip.keep(original, line_start, next);
            } else {
                let first = sorted.partition_point(|&a| a < line_start);
                let mut on_line: Vec<usize> = sorted[first..]
                    .iter()
                    .take_while(|&&a| a <= line_end)
                    .copied()
                    .collect();
                if on_line.len() > MAX_WINDOWS {
                    let primary = anchors.first().copied();
                    let mut chosen: Vec<usize> = primary
                        .filter(|primary| on_line.contains(primary))
                        .into_iter()
                        .collect();
                    chosen.extend(
                        on_line
                            .iter()
                            .filter(|&&a| Some(a) != primary)
                            .take(MAX_WINDOWS - chosen.len()),
                    );
                    chosen.sort_unstable();
                    on_line = chosen;
                }
                let mut windows: Vec<(usize, usize)> = Vec::new();
                for anchor in on_line {
                    let window = (
                        back(original, line_start, anchor, CHARS_BEFORE),
                        forward(original, anchor, line_end, CHARS_AFTER),
                    );
                    match windows.last_mut() {
                        Some(last) if window.0 <= last.1 => last.1 = last.1.max(window.1),
                        _ => windows.push(window),
                    }
                }
                if windows.is_empty() {
                    windows.push((
                        line_start,
                        forward(original, line_start, line_end, MAX_LINE_CHARS),
                    ));
                }
                let mut pos = line_start;
                for (start, end) in windows {
                    if start > pos {
                        clip.text.push(ELLIPSIS);
                    }
                    clip.keep(original, start, end);
                    pos = end;
                }
                if pos < line_end {
                    clip.text.push(ELLIPSIS);
                }
                clip.keep(original, line_end, next);
            }
            if next == line_end {
                break;
            }
            line_start = next;
        }
        clip
    }

    fn keep(&mut self, original: &str, start: usize, end: usize) {
        self.kept.push((start, end, self.text.len()));
        self.text.push_str(&original[start..end]);
    }

    /// Whether an offset of the original is in the kept text.
    fn shows(&self, offset: usize) -> bool {
        let idx = self.kept.partition_point(|&(start, _, _)| start <= offset);
        idx.checked_sub(1)
            .and_then(|idx| self.kept.get(idx))
            .is_some_and(|&(_, end, _)| offset <= end)
    }

    /// Where an offset of the original is in the clipped text; an offset that was left out
    /// maps to the end of the kept text before it.
    fn map(&self, offset: usize) -> usize {
        let idx = self.kept.partition_point(|&(start, _, _)| start <= offset);
        match idx.checked_sub(1).and_then(|idx| self.kept.get(idx)) {
            Some(&(start, end, at)) => at + offset.min(end) - start,
            None => 0,
        }
    }
}

/// The offset `n` characters before `offset`, not before `line_start`.
fn back(text: &str, line_start: usize, offset: usize, n: usize) -> usize {
    text[line_start..offset]
        .char_indices()
        .rev()
        .nth(n.saturating_sub(1))
        .map_or(line_start, |(idx, _)| line_start + idx)
}

/// The offset `n` characters after `offset`, not past `line_end`.
fn forward(text: &str, offset: usize, line_end: usize, n: usize) -> usize {
    text[offset..line_end]
        .char_indices()
        .nth(n)
        .map_or(line_end, |(idx, _)| offset + idx)
}

/// At most [`MAX_TEXT_CHARS`] of a message, label or help.
fn clip_text(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((idx, _)) => format!("{}{ELLIPSIS}", &text[..idx]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str, start: usize, end: usize) -> String {
        let mut sources = SourceMap::new();
        let id = sources.add("site.yaml".into(), None, text.to_string());
        let diag = Diagnostic::error(
            "schema::unknown_attribute",
            Span::new(id, start, end),
            "oops",
        )
        .with_label("here");
        let mut out = Vec::new();
        human(&mut out, &[diag], &sources, false).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_label_past_column_65535_names_the_real_column_and_a_clipped_line() {
        let text = format!(
            "a: {}\nb: \"{}\", mdoe: 1\nc: 2\n",
            "x".repeat(80_000),
            "é".repeat(70_000)
        );
        let start = text.find("mdoe").unwrap();
        let shown = render(&text, start, start + 4);
        assert!(shown.contains("[site.yaml:2:70008]"), "{shown}");
        assert!(shown.contains(" 2 │ …éé"), "{shown}");
        assert!(shown.contains("mdoe: 1"), "{shown}");
        assert!(shown.contains(" 1 │ a: xxx"), "{shown}");
        assert!(shown.contains(" 3 │ c: 2"), "{shown}");
        assert!(
            shown.lines().all(|line| line.chars().count() < 200),
            "{shown}"
        );
    }

    #[test]
    fn a_long_span_is_underlined_to_the_clip() {
        let text = format!("a: \"{}\"\n", "7".repeat(100_000));
        let shown = render(&text, 3, text.len() - 1);
        assert!(shown.contains("[site.yaml:1:4]"), "{shown}");
        assert!(shown.contains("…"), "{shown}");
        assert!(
            shown.lines().all(|line| line.chars().count() < 200),
            "{shown}"
        );
    }

    #[test]
    fn short_lines_are_untouched() {
        let text = "steward: 1\nresources:\n  file:/x: {content: \"é\", mdoe: 1}\n";
        let start = text.find("mdoe").unwrap();
        let shown = render(text, start, start + 4);
        assert!(shown.contains("[site.yaml:3:27]"), "{shown}");
        assert!(
            shown.contains(" 3 │   file:/x: {content: \"é\", mdoe: 1}"),
            "{shown}"
        );
        assert!(!shown.contains('…'), "{shown}");
    }

    #[test]
    fn clipping_keeps_every_line_and_maps_offsets() {
        let text = format!("{}\nshort\n{}\n", "a".repeat(500), "b".repeat(500));
        let anchor = 502 + "short\n".len() + 250;
        let clip = Clip::new(&text, &[anchor]);
        assert_eq!(clip.text.lines().count(), 3);
        assert_eq!(clip.text.lines().nth(1), Some("short"));
        let mapped = clip.map(anchor);
        assert_eq!(&clip.text[mapped..mapped + 1], "b");
        assert!(clip.map(text.len()) <= clip.text.len());
        for line in clip.text.lines() {
            assert!(line.chars().count() <= MAX_LINE_CHARS + 2, "{line}");
        }
    }

    #[test]
    fn many_labels_on_one_long_line_keep_a_bounded_line() {
        let text = format!("x: [{}]\n", vec!["a".repeat(300); 400].join(", "));
        let mut sources = SourceMap::new();
        let id = sources.add("site.yaml".into(), None, text.clone());
        let starts: Vec<usize> = text.match_indices("aaa,").map(|(idx, _)| idx).collect();
        let primary = starts[200];
        let mut diag =
            Diagnostic::error("graph::cycle", Span::new(id, primary, primary + 3), "oops")
                .with_label("primary");
        for &start in starts.iter().step_by(7) {
            diag = diag.with_secondary(Span::new(id, start, start + 3), "also");
        }
        let mut out = Vec::new();
        human(&mut out, &[diag], &sources, false).unwrap();
        let shown = String::from_utf8(out).unwrap();
        let column = primary + 1;
        assert!(
            shown.contains(&format!("[site.yaml:1:{column}]")),
            "{shown}"
        );
        assert!(shown.contains("primary"), "{shown}");
        assert!(
            shown.lines().all(|line| line.chars().count() < 1_200),
            "{shown}"
        );
    }

    #[test]
    fn spans_that_split_a_character_or_overrun_do_not_panic() {
        let text = format!("a: \"{}\"\n", "é".repeat(70_000));
        render(&text, 6, 7);
        render(&text, text.len() + 10, text.len() + 20);
        render(&text, 9, 4);
        render("short: é\n", 8, 100);
    }

    #[test]
    fn long_messages_are_clipped() {
        let long = "n".repeat(100_000);
        assert_eq!(clip_text(&long).chars().count(), MAX_TEXT_CHARS + 1);
        assert_eq!(clip_text("short"), "short");
    }
}
