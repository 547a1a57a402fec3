//! The plan: per node, each resource's change in dependency order, with refreshes foreseen.

use std::collections::{BTreeSet, HashMap};

use rayon::prelude::*;

use crate::model::{self, ResourceId, Value};
use crate::plan::graph::ResourceGraph;
use crate::resource::Registry;
use crate::resource::change::{Action, Change, State};

/// The changes that would make every planned node match its documents (Terraform's plan).
///
/// A value: it can be rendered, saved and applied. It holds no secrets beyond what the model
/// holds, and renderers redact sensitive attributes.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Per node, in model order.
    pub nodes: Vec<NodePlan>,
}

/// One node's part of a plan.
#[derive(Clone, Debug)]
pub struct NodePlan {
    /// The node's name.
    pub node: String,
    /// Every resource, in an order that respects the dependency graph.
    pub changes: Vec<PlannedChange>,
}

/// One resource's entry in a plan.
#[derive(Clone, Debug)]
pub struct PlannedChange {
    /// Index of the resource in the node's `resources`.
    pub resource: usize,
    /// What would change; for a resource that could not be read, the error instead.
    pub change: Result<Change, String>,
    /// Resources that would change and notify this one (a service restart, a
    /// `refresh_only` exec running).
    pub refreshed_by: Vec<ResourceId>,
    /// Fingerprint of the observed state the change was computed from.
    pub fingerprint: String,
}

impl PlannedChange {
    /// The planned action; reading errors count as no-op.
    pub fn action(&self) -> Action {
        self.change.as_ref().map_or(Action::NoOp, |c| c.action)
    }

    /// True when applying would do something here.
    pub fn is_change(&self) -> bool {
        self.action() != Action::NoOp || !self.refreshed_by.is_empty()
    }
}

/// Counts by action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// To create.
    pub create: usize,
    /// To update in place.
    pub update: usize,
    /// To replace.
    pub replace: usize,
    /// To delete.
    pub delete: usize,
    /// Commands to run and refreshes (restarts) foreseen.
    pub run: usize,
    /// Resources that could not be read.
    pub errors: usize,
}

impl Summary {
    /// Total changes (not errors).
    pub fn n_changes(&self) -> usize {
        self.create + self.update + self.replace + self.delete + self.run
    }
}

impl Plan {
    /// Counts by action over all nodes.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for change in self.nodes.iter().flat_map(|n| &n.changes) {
            match change.change.as_ref().map(|c| c.action) {
                Err(_) => summary.errors += 1,
                Ok(Action::Create) => summary.create += 1,
                Ok(Action::Update) => summary.update += 1,
                Ok(Action::Replace) => summary.replace += 1,
                Ok(Action::Delete) => summary.delete += 1,
                Ok(Action::Run) => summary.run += 1,
                Ok(Action::NoOp) if !change.refreshed_by.is_empty() => summary.run += 1,
                Ok(Action::NoOp) => {}
            }
        }
        summary
    }

    /// True when applying would change anything.
    pub fn has_changes(&self) -> bool {
        self.nodes
            .iter()
            .flat_map(|n| &n.changes)
            .any(PlannedChange::is_change)
    }
}

/// Builds the plan of one node from its graph and what was observed.
///
/// `observed` holds, per resource index, the state read from the node or the read error.
/// Pure: no IO.
pub fn build(
    graph: &ResourceGraph<'_>,
    registry: &Registry,
    observed: &[Result<State, String>],
) -> NodePlan {
    let node: &model::Node = graph.node;
    let order = graph
        .order()
        .unwrap_or_else(|| (0..node.resources.len()).collect());
    // Diffs and fingerprints are independent per resource: compute them in parallel.
    let mut changes: Vec<Option<PlannedChange>> = (0..node.resources.len())
        .into_par_iter()
        .map(|idx| {
            let res = &node.resources[idx];
            let change = match (&observed[idx], registry.get(&res.id.kind)) {
                (Ok(state), Some(ty)) => Ok(ty.diff(res, state)),
                (Err(message), _) => Err(message.clone()),
                (Ok(_), None) => Err(format!("unknown resource type `{}`", res.id.kind)),
            };
            let fingerprint = match &observed[idx] {
                Ok(state) => fingerprint(state),
                Err(message) => format!("error:{message}"),
            };
            Some(PlannedChange {
                resource: idx,
                change,
                refreshed_by: Vec::new(),
                fingerprint,
            })
        })
        .collect();
    // A change in a resource refreshes those it notifies (and that subscribe to it).
    let mut refreshes: HashMap<usize, BTreeSet<ResourceId>> = HashMap::new();
    for (from, to, kind) in graph.edges() {
        let source_changes = changes[from]
            .as_ref()
            .is_some_and(|c| c.action() != Action::NoOp);
        if kind.refreshes() && source_changes {
            refreshes
                .entry(to)
                .or_default()
                .insert(node.resources[from].id.clone());
        }
    }
    for (idx, sources) in refreshes {
        if let Some(change) = changes[idx].as_mut()
            && refreshable(&node.resources[idx])
        {
            change.refreshed_by = sources.into_iter().collect();
        }
    }
    let mut by_index: Vec<Option<PlannedChange>> = changes;
    let changes = order
        .into_iter()
        .filter_map(|idx| by_index[idx].take())
        .collect();
    NodePlan {
        node: node.name.clone(),
        changes,
    }
}

/// Whether a refresh does anything for this resource: services restart, commands run.
fn refreshable(res: &model::Resource) -> bool {
    match res.id.kind.as_str() {
        "service" => res.attr_str("ensure") != Some("stopped"),
        "exec" => true,
        _ => false,
    }
}

/// A stable digest of an observed state, to tell later whether it moved.
pub fn fingerprint(state: &State) -> String {
    let mut hasher = blake3::Hasher::new();
    for (key, value) in state {
        hasher.update(key.as_bytes());
        hasher.update(&[0]);
        hash_value(&mut hasher, value);
    }
    format!("blake3:{}", hasher.finalize().to_hex())
}

/// A stable digest of a node's desired state: every resource's identity, rendered attributes
/// (so template and source files and node facts count) and relationships.
pub fn desired_digest(node: &model::Node) -> String {
    let per_resource: Vec<blake3::Hash> = node
        .resources
        .par_iter()
        .map(|res| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(res.id.to_string().as_bytes());
            for (name, attr) in &res.attrs {
                hasher.update(&[0]);
                hasher.update(name.as_bytes());
                hasher.update(&[u8::from(attr.sensitive)]);
                hash_value(&mut hasher, &attr.value);
            }
            for relation in &res.relations {
                hasher.update(&[2]);
                hasher.update(relation.kind.as_str().as_bytes());
                hasher.update(relation.target.to_string().as_bytes());
            }
            hasher.finalize()
        })
        .collect();
    let mut hasher = blake3::Hasher::new();
    hasher.update(node.name.as_bytes());
    for hash in per_resource {
        hasher.update(hash.as_bytes());
    }
    format!("blake3:{}", hasher.finalize().to_hex())
}

fn hash_value(hasher: &mut blake3::Hasher, value: &Value) {
    match value {
        Value::Null => {
            hasher.update(b"n");
        }
        Value::Bool(flag) => {
            hasher.update(if *flag { b"t" } else { b"f" });
        }
        Value::Int(number) => {
            hasher.update(b"i");
            hasher.update(&number.to_le_bytes());
        }
        Value::Float(number) => {
            hasher.update(b"d");
            hasher.update(&number.to_le_bytes());
        }
        Value::String(text) => {
            hasher.update(b"s");
            hasher.update(&(text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
        Value::Bytes(bytes) => {
            hasher.update(b"b");
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        Value::List(items) => {
            hasher.update(b"l");
            hasher.update(&(items.len() as u64).to_le_bytes());
            for item in items {
                hash_value(hasher, item);
            }
        }
        Value::Map(entries) => {
            hasher.update(b"m");
            hasher.update(&(entries.len() as u64).to_le_bytes());
            for (key, item) in entries {
                hasher.update(key.as_bytes());
                hasher.update(&[0]);
                hash_value(hasher, item);
            }
        }
    }
}
