//! What a run does to findings, worked out once for every backend: each backend's
//! `record_run` writes the run and carries out these [`FindingOp`]s in order, in one
//! transaction.

use crate::store::{FindingKind, ResultOutcome, RunKind, RunRecord, Severity, node_resource};

/// One change a run makes to the findings.
#[derive(Debug, PartialEq)]
pub(super) enum FindingOp<'r> {
    /// Bump the open finding of `(node, resource, kind)` with this run, or open one.
    OpenOrBump {
        node: &'r str,
        resource: String,
        kind: FindingKind,
        severity: Severity,
        message: &'r str,
        /// The association that put the resource on the node, if any.
        association: Option<&'r str>,
    },
    /// Resolve every open finding of `(node, resource)`: it is as desired.
    ResolveResource { node: &'r str, resource: &'r str },
    /// Resolve the node's open `unreachable` finding: it answered.
    ResolveUnreachable { node: &'r str, resource: String },
}

/// The findings `run` opens, bumps and resolves, in the order they are carried out: per
/// result in plan order, then per node. A command run changes none.
pub(super) fn finding_ops(run: &RunRecord) -> Vec<FindingOp<'_>> {
    let mut ops = Vec::new();
    // Commands say nothing about desired state: a command run opens no findings.
    if run.kind == RunKind::Command {
        return ops;
    }
    for result in &run.results {
        let kind = match result.outcome {
            ResultOutcome::Drifted => FindingKind::Drift,
            ResultOutcome::Failed => FindingKind::Failure,
            ResultOutcome::Unchanged | ResultOutcome::Changed => {
                ops.push(FindingOp::ResolveResource {
                    node: &result.node,
                    resource: &result.resource,
                });
                continue;
            }
            // A skipped or pending resource says nothing about its state, and an
            // unreachable one is its node's finding (below).
            ResultOutcome::Skipped
            | ResultOutcome::Pending
            | ResultOutcome::Unreachable
            | ResultOutcome::Succeeded
            | ResultOutcome::TimedOut
            | ResultOutcome::Cancelled => continue,
        };
        ops.push(FindingOp::OpenOrBump {
            node: &result.node,
            resource: result.resource.clone(),
            kind,
            severity: result.severity,
            message: result
                .message
                .as_deref()
                .or(result.diff.as_deref())
                .unwrap_or_default(),
            association: result.association.as_deref(),
        });
    }
    for node in node_findings(run) {
        let resource = node_resource(node.node);
        match node.unreachable {
            Some((message, severity)) => ops.push(FindingOp::OpenOrBump {
                node: node.node,
                resource,
                kind: FindingKind::Unreachable,
                severity,
                message,
                association: None,
            }),
            None if node.answered => ops.push(FindingOp::ResolveUnreachable {
                node: node.node,
                resource,
            }),
            None => {}
        }
    }
    ops
}

/// What a run says of one node as a whole, for its node finding.
#[derive(Debug, PartialEq)]
struct NodeFinding<'r> {
    node: &'r str,
    /// It answered for at least one resource: it was reached.
    answered: bool,
    /// It could not be reached: the first reason given, and the highest severity among
    /// its unreachable resources.
    unreachable: Option<(&'r str, Severity)>,
}

/// Per node of a run (in first-seen order), whether it answered or could not be reached.
fn node_findings(run: &RunRecord) -> Vec<NodeFinding<'_>> {
    let mut nodes: Vec<NodeFinding<'_>> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for result in &run.results {
        let idx = *index.entry(result.node.as_str()).or_insert_with(|| {
            nodes.push(NodeFinding {
                node: &result.node,
                answered: false,
                unreachable: None,
            });
            nodes.len() - 1
        });
        let entry = &mut nodes[idx];
        entry.answered |= result.outcome.node_answered();
        if result.outcome == ResultOutcome::Unreachable {
            let message = result.message.as_deref().unwrap_or("unreachable");
            entry.unreachable = Some(match entry.unreachable {
                Some((first, severity)) => (first, severity.max(result.severity)),
                None => (message, result.severity),
            });
        }
    }
    // A node that answered for a resource was reached, whatever else the run says of it.
    for node in &mut nodes {
        if node.answered {
            node.unreachable = None;
        }
    }
    nodes
}
