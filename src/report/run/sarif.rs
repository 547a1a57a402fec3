//! The run as a SARIF 2.1.0 log for code-scanning annotations: a result per drifted or failed
//! resource, located at its declaration, with one rule per finding kind and resource type.

use std::fmt::Write;

use serde::Serialize;

use crate::report::run::relative_uri_path;
use crate::store::{FindingKind, ResultOutcome, RunRecord, Severity};

/// The `$schema` written into SARIF logs.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The SARIF version written.
pub const SARIF_VERSION: &str = "2.1.0";

#[derive(Serialize)]
struct SarifLog {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<SarifRun>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRun {
    tool: SarifTool,
    automation_details: SarifAutomationDetails,
    results: Vec<SarifResult>,
}

#[derive(Serialize)]
struct SarifTool {
    driver: SarifDriver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifDriver {
    name: &'static str,
    version: &'static str,
    rules: Vec<SarifRule>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRule {
    id: String,
    name: String,
    short_description: SarifMessage,
}

/// Ties the log to its run; code hosts also use the part before the last `/` as a category.
#[derive(Serialize)]
struct SarifAutomationDetails {
    id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: String,
    rule_index: usize,
    level: &'static str,
    message: SarifMessage,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    locations: Vec<SarifLocation>,
    properties: SarifProperties,
}

#[derive(Serialize)]
struct SarifMessage {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifLocation {
    physical_location: SarifPhysicalLocation,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifPhysicalLocation {
    artifact_location: SarifArtifactLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<SarifRegion>,
}

#[derive(Serialize)]
struct SarifArtifactLocation {
    uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRegion {
    start_line: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_column: Option<u32>,
}

#[derive(Serialize)]
struct SarifProperties {
    node: String,
    resource: String,
    severity: &'static str,
}

/// The run as a SARIF 2.1.0 log: a result per drifted or failed resource, located at the
/// declaration's key in its document when the file is known, with rule ids
/// `steward/drift/<type>` and `steward/failure/<type>` and the level from the severity.
pub fn sarif(run: &RunRecord) -> String {
    let mut rules: Vec<SarifRule> = Vec::new();
    let mut results = Vec::new();
    for result in run.results.iter().filter(|r| r.outcome.is_noncompliant()) {
        let kind = if result.outcome == ResultOutcome::Drifted {
            FindingKind::Drift
        } else {
            FindingKind::Failure
        };
        let ty = resource_type(&result.resource);
        let rule_id = format!("steward/{}/{ty}", kind.as_str());
        let rule_index = match rules.iter().position(|r| r.id == rule_id) {
            Some(idx) => idx,
            None => {
                rules.push(sarif_rule(kind, ty, rule_id.clone()));
                rules.len() - 1
            }
        };
        let verb = match kind {
            FindingKind::Drift => "drifted from its desired state",
            FindingKind::Failure | FindingKind::Unreachable => "failed",
        };
        let mut text = format!("{} on {} {verb}", result.resource, result.node);
        if let Some(message) = result.message.as_deref().filter(|m| !m.is_empty()) {
            let _ = write!(text, ": {message}");
        } else {
            text.push('.');
        }
        let locations = match result.file.as_deref() {
            Some(file) => vec![SarifLocation {
                physical_location: SarifPhysicalLocation {
                    artifact_location: SarifArtifactLocation {
                        uri: relative_uri_path(file),
                    },
                    region: result
                        .line
                        .filter(|line| *line > 0)
                        .map(|start_line| SarifRegion {
                            start_line,
                            start_column: result.column.filter(|column| *column > 0),
                        }),
                },
            }],
            None => Vec::new(),
        };
        results.push(SarifResult {
            rule_id,
            rule_index,
            level: sarif_level(result.severity),
            message: SarifMessage { text },
            locations,
            properties: SarifProperties {
                node: result.node.clone(),
                resource: result.resource.clone(),
                severity: result.severity.as_str(),
            },
        });
    }
    let log = SarifLog {
        schema: SARIF_SCHEMA,
        version: SARIF_VERSION,
        runs: vec![SarifRun {
            tool: SarifTool {
                driver: SarifDriver {
                    name: "steward",
                    version: env!("CARGO_PKG_VERSION"),
                    rules,
                },
            },
            automation_details: SarifAutomationDetails {
                id: format!("steward/{}/{}", run.kind.as_str(), run.id),
            },
            results,
        }],
    };
    // Serializing plain structs of strings and numbers into memory cannot fail.
    let mut text = serde_json::to_string_pretty(&log).unwrap_or_default();
    text.push('\n');
    text
}

fn sarif_rule(kind: FindingKind, ty: &str, id: String) -> SarifRule {
    let (name, text) = match kind {
        FindingKind::Drift => (
            "Drift",
            format!(
                "{} `{ty}` resource drifted: what is on the node differs from its documents",
                article(ty)
            ),
        ),
        FindingKind::Failure | FindingKind::Unreachable => (
            "Failure",
            format!(
                "{} `{ty}` resource failed to apply or could not be read",
                article(ty)
            ),
        ),
    };
    SarifRule {
        id,
        name: format!("{}{name}", pascal_case(ty)),
        short_description: SarifMessage { text },
    }
}

/// SARIF's three levels from the six compliance severities.
fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Informational | Severity::Unspecified => "note",
    }
}

/// `TYPE` of a `TYPE:NAME` resource.
fn resource_type(resource: &str) -> &str {
    resource.split_once(':').map_or(resource, |(ty, _)| ty)
}

fn pascal_case(text: &str) -> String {
    let mut res = String::new();
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            res.push(first.to_ascii_uppercase());
            res.extend(chars);
        }
    }
    res
}

/// "A" or "An" before a resource type.
fn article(ty: &str) -> &'static str {
    if ty.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "An"
    } else {
        "A"
    }
}
