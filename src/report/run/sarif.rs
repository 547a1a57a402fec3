//! The run as a SARIF 2.1.0 log for code-scanning annotations: a result per drifted or failed
//! resource, located at its declaration relative to the project root (`uriBaseId`
//! [`PROJECT_ROOT`]), with one rule per finding kind and resource type, each with the
//! descriptions and help that code hosts show (GitHub's code scanning requires them).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use crate::report::run::relative_uri_path;
use crate::store::{FindingKind, ResultOutcome, RunRecord, Severity};

/// The `$schema` written into SARIF logs.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The SARIF version written.
pub const SARIF_VERSION: &str = "2.1.0";

/// The `uriBaseId` of every location: document paths are relative to the project's root
/// directory (the directory given to `apply` or `drift`, or the one holding the document given).
pub const PROJECT_ROOT: &str = "PROJECTROOT";

/// Where to learn about steward, as `tool.driver.informationUri` says: the package's
/// `homepage` in Cargo.toml. Until it has one, a URN that names the tool and its version:
/// SARIF wants an absolute URI, and steward has no public home to point at.
fn information_uri() -> String {
    match env!("CARGO_PKG_HOMEPAGE") {
        "" => format!("urn:steward:{}", env!("CARGO_PKG_VERSION")),
        homepage => homepage.to_string(),
    }
}

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
    original_uri_base_ids: BTreeMap<&'static str, SarifBaseUri>,
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
    information_uri: String,
    rules: Vec<SarifRule>,
}

/// What a `uriBaseId` stands for: the project root, as an absolute `file` URI when the run
/// recorded an absolute project path.
#[derive(Serialize)]
struct SarifBaseUri {
    #[serde(skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
    description: SarifMessage,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRule {
    id: String,
    name: String,
    short_description: SarifMessage,
    full_description: SarifMessage,
    help: SarifHelp,
}

#[derive(Serialize)]
struct SarifHelp {
    text: String,
    markdown: String,
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
    region: SarifRegion,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifArtifactLocation {
    uri: String,
    /// [`PROJECT_ROOT`] for a path relative to the project; absent for an absolute `file` URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    uri_base_id: Option<&'static str>,
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
/// declaration's key in its document when the file is known (relative to the project root,
/// [`PROJECT_ROOT`]), with rule ids `steward/drift/<type>` and `steward/failure/<type>` and
/// the level from the severity.
pub fn sarif(run: &RunRecord) -> String {
    let mut rules: Vec<SarifRule> = Vec::new();
    let mut results = Vec::new();
    // GitHub's code scanning refuses a whole log if one result has no location, so a result
    // whose declaration was not recorded (a resource of a standard-library module, a node
    // that could not be reached) is anchored at the first line of the run's first document.
    let anchor = run.results.iter().find_map(|r| r.file.as_deref());
    // An unreachable node is one result, as it is one finding, not one per resource.
    let mut unreachable_nodes = std::collections::BTreeSet::new();
    // What opens a finding is a result: drifted and failed resources, unreachable nodes (a
    // node never applied, `pending`, has nothing to fix yet).
    let reported =
        |outcome: ResultOutcome| outcome.is_noncompliant() || outcome == ResultOutcome::Unreachable;
    for result in run.results.iter().filter(|r| reported(r.outcome)) {
        let kind = match result.outcome {
            ResultOutcome::Drifted => FindingKind::Drift,
            ResultOutcome::Unreachable => {
                if !unreachable_nodes.insert(result.node.as_str()) {
                    continue;
                }
                FindingKind::Unreachable
            }
            _ => FindingKind::Failure,
        };
        let ty = match kind {
            FindingKind::Unreachable => "node",
            _ => resource_type(&result.resource),
        };
        let rule_id = format!("steward/{}/{ty}", kind.as_str());
        let rule_index = match rules.iter().position(|r| r.id == rule_id) {
            Some(idx) => idx,
            None => {
                rules.push(sarif_rule(kind, ty, rule_id.clone()));
                rules.len() - 1
            }
        };
        let mut text = match kind {
            FindingKind::Drift => format!(
                "{} on {} drifted from its desired state",
                result.resource, result.node
            ),
            FindingKind::Failure => format!("{} on {} failed", result.resource, result.node),
            FindingKind::Unreachable => format!("node {} could not be reached", result.node),
        };
        if let Some(message) = result.message.as_deref().map(str::trim_end)
            && !message.is_empty()
        {
            let _ = write!(text, ": {message}");
        }
        // SARIF's messages are sentences.
        if !text.ends_with(['.', '!', '?']) {
            text.push('.');
        }
        // GitHub also wants a line: the declaration's, or the document's first.
        let region = match (&result.file, result.line.filter(|line| *line > 0)) {
            (Some(_), Some(start_line)) => SarifRegion {
                start_line,
                start_column: result.column.filter(|column| *column > 0),
            },
            _ => SarifRegion {
                start_line: 1,
                start_column: None,
            },
        };
        let locations = match result.file.as_deref().or(anchor) {
            Some(file) => vec![SarifLocation {
                physical_location: SarifPhysicalLocation {
                    artifact_location: artifact_location(file),
                    region,
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
    let project_root = SarifBaseUri {
        uri: project_root_uri(&run.project),
        description: SarifMessage {
            text: "The project's root directory: the directory of documents given to steward, \
                   or the one holding the document given."
                .to_string(),
        },
    };
    let log = SarifLog {
        schema: SARIF_SCHEMA,
        version: SARIF_VERSION,
        runs: vec![SarifRun {
            tool: SarifTool {
                driver: SarifDriver {
                    name: "steward",
                    version: env!("CARGO_PKG_VERSION"),
                    information_uri: information_uri(),
                    rules,
                },
            },
            original_uri_base_ids: BTreeMap::from([(PROJECT_ROOT, project_root)]),
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

/// A recorded document path as a SARIF artifact location: relative to [`PROJECT_ROOT`], as
/// runs record it; an absolute path (a run recorded before paths were relative to the
/// project) is an absolute `file` URI with no base, since a base applies to relative
/// references only.
fn artifact_location(file: &str) -> SarifArtifactLocation {
    if file.starts_with('/') {
        SarifArtifactLocation {
            uri: format!("file://{}", relative_uri_path(file)),
            uri_base_id: None,
        }
    } else {
        SarifArtifactLocation {
            uri: relative_uri_path(file),
            uri_base_id: Some(PROJECT_ROOT),
        }
    }
}

/// The project root as an absolute `file` URI ending in `/`, when the run recorded an
/// absolute project path: the project directory, or the directory of a project that is one
/// document (a `.yaml`, `.yml` or `.kdl` file).
fn project_root_uri(project: &str) -> Option<String> {
    let path = Path::new(project);
    if !path.is_absolute() {
        return None;
    }
    let is_document = path
        .extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| matches!(ext, "yaml" | "yml" | "kdl"));
    let dir = if is_document {
        path.parent().unwrap_or(path)
    } else {
        path
    };
    let mut uri = format!("file://{}", relative_uri_path(&dir.to_string_lossy()));
    if !uri.ends_with('/') {
        uri.push('/');
    }
    Some(uri)
}

fn sarif_rule(kind: FindingKind, ty: &str, id: String) -> SarifRule {
    let text = rule_text(kind, ty);
    SarifRule {
        id,
        name: format!("{}{}", pascal_case(ty), text.name),
        short_description: SarifMessage { text: text.short },
        full_description: SarifMessage { text: text.full },
        help: SarifHelp {
            text: text.help_text,
            markdown: text.help_markdown,
        },
    }
}

/// What a rule says about itself, from its kind of finding and resource type.
struct RuleText {
    name: &'static str,
    short: String,
    full: String,
    help_text: String,
    help_markdown: String,
}

fn rule_text(kind: FindingKind, ty: &str) -> RuleText {
    let a_ty = format!("{} `{ty}`", article(ty));
    match kind {
        FindingKind::Drift => RuleText {
            name: "Drift",
            short: format!(
                "{a_ty} resource drifted: what is on the node differs from its documents"
            ),
            full: format!(
                "What steward read on the node for {} `{ty}` resource differs from the desired \
                 state its documents declare, for example because it was changed by hand since \
                 the last apply. The result is located at the resource's declaration, and its \
                 message names the node.",
                article(ty).to_lowercase()
            ),
            help_text: "See the difference with `steward plan PROJECT`, or in the run's report \
                        (`steward report RUN`). If the node should match its documents, \
                        `steward apply PROJECT` puts it back. If the change on the node is \
                        what you want, declare it in the document, so the next drift check \
                        passes."
                .to_string(),
            help_markdown: "See the difference with `steward plan PROJECT`, or in the run's \
                            report (`steward report RUN`).\n\n\
                            - If the node should match its documents, `steward apply PROJECT` \
                            puts it back.\n\
                            - If the change on the node is what you want, declare it in the \
                            document, so the next drift check passes.\n"
                .to_string(),
        },
        FindingKind::Unreachable => RuleText {
            name: "Unreachable",
            short: "A node could not be reached, so none of its resources was checked".to_string(),
            full: "The controller could not reach the node's agent (it was offline, or did not \
                   answer in time), so nothing on the node was read or applied in this run. \
                   The result is one per node; its message says why."
                .to_string(),
            help_text: "Check that the node's agent runs and can connect to the controller \
                        (`steward nodes` shows when it was last seen), then run the check \
                        again; the finding resolves when the node next reports."
                .to_string(),
            help_markdown: "Check that the node's agent runs and can connect to the controller \
                            (`steward nodes` shows when it was last seen), then run the check \
                            again.\n\nThe finding resolves when the node next reports.\n"
                .to_string(),
        },
        FindingKind::Failure if ty == "command" => RuleText {
            name: "Failure",
            short: "A command run by `steward run` failed on a node".to_string(),
            full: "The command that `steward run` sent to the node exited with a failure status \
                   or could not be started. The result's message says why; the run's report \
                   holds the command's output."
                .to_string(),
            help_text: "Read the command's output in the run's report (`steward report RUN`), \
                        fix the command or the node, and run it again."
                .to_string(),
            help_markdown: "Read the command's output in the run's report \
                            (`steward report RUN`), fix the command or the node, and run it \
                            again.\n"
                .to_string(),
        },
        FindingKind::Failure => RuleText {
            name: "Failure",
            short: format!("{a_ty} resource failed to apply or could not be read"),
            full: format!(
                "steward could not read {} `{ty}` resource on the node, or could not apply its \
                 change, so the node is not in the state its documents declare; in an apply, \
                 the resources that depend on it were skipped. The result is located at the \
                 resource's declaration, and its message says why, as the node reported it.",
                article(ty).to_lowercase()
            ),
            help_text: "Read why in the result's message and in the run's report \
                        (`steward report RUN`). Fix the cause on the node or in the document \
                        (a permission, a missing dependency, a wrong value), then run \
                        `steward apply PROJECT` again."
                .to_string(),
            help_markdown: "Read why in the result's message and in the run's report \
                            (`steward report RUN`).\n\n\
                            Fix the cause on the node or in the document (a permission, a \
                            missing dependency, a wrong value), then run \
                            `steward apply PROJECT` again.\n"
                .to_string(),
        },
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
