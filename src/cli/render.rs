//! Diagnostics for people: miette's graphical reports, coloured only when wanted.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};

use crate::diag::{Diagnostic, Severity, SourceId, SourceMap};

/// Most diagnostics printed in one run; the rest are counted.
const MAX_SHOWN: usize = 200;

/// One diagnostic in miette's terms, with its source attached (the "delayed source" pattern:
/// the library hands out spans, only the CLI attaches text).
struct Report {
    message: String,
    code: String,
    severity: miette::Severity,
    help: Option<String>,
    source: Option<NamedSource<Arc<String>>>,
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
    let mut texts: HashMap<SourceId, Arc<String>> = HashMap::new();
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
    texts: &mut HashMap<SourceId, Arc<String>>,
) -> Report {
    let mut named = |id: SourceId| {
        let source = sources.get(id);
        let text = texts
            .entry(id)
            .or_insert_with(|| Arc::new(source.text.clone()))
            .clone();
        NamedSource::new(&source.name, text)
    };
    let primary = diag.span().map(|span| span.source);
    let mut labels = Vec::new();
    let mut related = Vec::new();
    for (idx, label) in diag.labels.iter().enumerate() {
        let message = (!label.message.is_empty()).then(|| label.message.clone());
        let span = miette::SourceSpan::from((label.span.start, label.span.end - label.span.start));
        if Some(label.span.source) == primary {
            let labeled = if idx == 0 {
                LabeledSpan::new_primary_with_span(message, span)
            } else {
                LabeledSpan::new_with_span(message, span)
            };
            labels.push(labeled);
        } else {
            related.push(Report {
                message: label.message.clone(),
                code: String::new(),
                severity: miette::Severity::Advice,
                help: None,
                source: Some(named(label.span.source)),
                labels: vec![LabeledSpan::new_with_span(None, span)],
                related: Vec::new(),
            });
        }
    }
    Report {
        message: diag.message.clone(),
        code: diag.code.to_string(),
        severity: match diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        },
        help: diag.help.clone(),
        source: primary.map(&mut named),
        labels,
        related,
    }
}
