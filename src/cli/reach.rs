//! Where a project's documents go: the nodes a fleet run acts on, the documents that reach no
//! node (checked for syntax and schema only), and what a run that targets nothing considered.
//!
//! It reads the lowered model the way the controller's run picks its nodes
//! (`fleet::run`): every node but `local` that an association selects and that has resources.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::diag::SourceId;
use crate::model::{self, LOCAL_NODE, Targets};
use crate::validate::Validated;

/// The nodes a fleet run acts on, in model order: not `local`, with resources, selected by an
/// association and by `--target`.
pub(super) fn fleet_targets<'v>(
    validated: &'v Validated,
    target: Option<&crate::engine::Selector>,
) -> Vec<&'v model::Node> {
    let model = &validated.model;
    model
        .nodes
        .iter()
        .filter(|node| node.name != LOCAL_NODE && !node.resources.is_empty())
        .filter(|node| {
            model
                .associations
                .iter()
                .any(|a| a.targets.matches(&node.name, &node.tags))
        })
        .filter(|node| crate::engine::selected(node, target))
        .collect()
}

/// One line for each document that declares something to apply (`resources` or `use`) but
/// reaches no node: its associations select none of the known nodes, or (in fleet mode) no
/// association applies it.
pub(super) fn nowhere(validated: &Validated, fleet: bool) -> Vec<String> {
    let mut lines = Vec::new();
    for source in applying_documents(validated) {
        let name = document_name(validated, source);
        let associations = associations_of(validated, source);
        if associations.is_empty() {
            if fleet {
                lines.push(format!(
                    "`{name}` goes nowhere: no association applies it, and fleet mode applies \
                     only the documents of associations (without a controller it applies to \
                     `local`, this machine)"
                ));
            }
            continue;
        }
        let reached =
            known_nodes(validated, fleet).any(|node| associations.iter().any(|a| selects(a, node)));
        if !reached {
            let by: Vec<String> = associations
                .iter()
                .map(|a| format!("`{}` targets {}", a.name, targets_text(&a.targets)))
                .collect();
            lines.push(format!(
                "`{name}` goes nowhere: association {}, which selects none of {}; it was checked \
                 for syntax and schema only",
                by.join(", association "),
                known_text(validated, fleet),
            ));
        }
    }
    lines
}

/// What a fleet run that targets no node considered: the documents, where each association
/// points, and the nodes known (the controller's inventory and the declared nodes).
pub(super) fn nothing_to_do(validated: &Validated) -> String {
    let mut out = String::from("Nothing to do: no association selects a node with resources.\n");
    let documents: Vec<String> = applying_documents(validated)
        .into_iter()
        .map(|source| document_name(validated, source))
        .collect();
    let _ = writeln!(
        out,
        "  documents considered: {}",
        if documents.is_empty() {
            "none declares resources".to_string()
        } else {
            documents.join(", ")
        }
    );
    let associations = &validated.model.associations;
    if associations.is_empty() {
        let _ = writeln!(
            out,
            "  associations: none (fleet mode applies only the documents of associations)"
        );
    }
    for association in associations {
        let documents: Vec<String> = association_documents(association)
            .iter()
            .map(|&source| document_name(validated, source))
            .collect();
        let _ = writeln!(
            out,
            "  association `{}` applies {} to {}",
            association.name,
            documents.join(", "),
            targets_text(&association.targets),
        );
    }
    let _ = writeln!(out, "  nodes considered: {}", known_text(validated, true));
    out
}

/// The top-level documents with something to apply, in reading order, each once.
fn applying_documents(validated: &Validated) -> Vec<SourceId> {
    let mut sources: Vec<SourceId> = Vec::new();
    for doc in &validated.project.documents {
        let applies = doc.root.get("resources").is_some() || doc.root.get("use").is_some();
        if applies && !sources.contains(&doc.source) {
            sources.push(doc.source);
        }
    }
    sources
}

/// The associations that apply the document `source`.
fn associations_of(validated: &Validated, source: SourceId) -> Vec<&model::Association> {
    validated
        .model
        .associations
        .iter()
        .filter(|a| association_documents(a).contains(&source))
        .collect()
}

/// The documents an association applies; none listed means the one declaring it.
fn association_documents(association: &model::Association) -> Vec<SourceId> {
    if association.documents.is_empty() {
        vec![association.source]
    } else {
        association.documents.clone()
    }
}

fn selects(association: &model::Association, node: &model::Node) -> bool {
    association.targets.matches(&node.name, &node.tags)
}

/// The nodes a document can reach: in fleet mode every node but `local`.
fn known_nodes(validated: &Validated, fleet: bool) -> impl Iterator<Item = &model::Node> {
    validated
        .model
        .nodes
        .iter()
        .filter(move |node| !fleet || node.name != LOCAL_NODE)
}

/// The known nodes with their tags, for a message.
fn known_text(validated: &Validated, fleet: bool) -> String {
    let nodes: Vec<String> = known_nodes(validated, fleet)
        .map(|node| {
            if node.tags.is_empty() {
                format!("`{}`", node.name)
            } else {
                format!("`{}` ({})", node.name, tags_text(&node.tags))
            }
        })
        .collect();
    match (nodes.len(), fleet) {
        (0, true) => "the controller's nodes: it has none enrolled".to_string(),
        (_, true) => format!("the controller's nodes {}", nodes.join(", ")),
        (_, false) => format!("the nodes {}", nodes.join(", ")),
    }
}

fn targets_text(targets: &Targets) -> String {
    match targets {
        Targets::All => "all nodes".to_string(),
        Targets::Names(names) => format!("the nodes named {}", names.join(", ")),
        Targets::Tags(tags) => format!("the nodes tagged {}", tags_text(tags)),
    }
}

fn tags_text(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn document_name(validated: &Validated, source: SourceId) -> String {
    validated.project.sources.get(source).name.clone()
}
