//! Diagnostics for machines: `--format json`.

use serde::Serialize;

use crate::diag::{Diagnostic, Severity, SourceMap, Span};

/// Version of the JSON shape below; bump on a breaking change.
pub const FORMAT_VERSION: &str = "1";

#[derive(Serialize)]
struct JsonReport<'a> {
    format_version: &'static str,
    valid: bool,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiagnostic<'a>>,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    severity: &'static str,
    code: &'static str,
    message: &'a str,
    #[serde(flatten)]
    location: Option<JsonLocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<&'a str>,
    labels: Vec<JsonLabel<'a>>,
}

#[derive(Serialize)]
struct JsonLocation {
    file: String,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    #[serde(flatten)]
    location: JsonLocation,
    message: &'a str,
}

fn location(sources: &SourceMap, span: Span) -> JsonLocation {
    let source = sources.get(span.source);
    let start = source.line_col(span.start);
    let end = source.line_col(span.end);
    JsonLocation {
        file: source.name.clone(),
        line: start.line,
        column: start.column,
        end_line: end.line,
        end_column: end.column,
    }
}

/// Every diagnostic with file, line, column, code and message, as one JSON object.
pub fn json(diagnostics: &[Diagnostic], sources: &SourceMap) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let report = JsonReport {
        format_version: FORMAT_VERSION,
        valid: errors == 0,
        errors,
        warnings: diagnostics.len() - errors,
        diagnostics: diagnostics
            .iter()
            .map(|d| JsonDiagnostic {
                severity: match d.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                },
                code: d.code,
                message: &d.message,
                location: d.span().map(|span| location(sources, span)),
                help: d.help.as_deref(),
                labels: d
                    .labels
                    .iter()
                    .map(|label| JsonLabel {
                        location: location(sources, label.span),
                        message: &label.message,
                    })
                    .collect(),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
    text.push('\n');
    text
}
