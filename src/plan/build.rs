//! The plan: per node, each resource's change in dependency order, with refreshes foreseen.

use std::collections::{BTreeSet, HashMap};

use rayon::prelude::*;

use crate::diag::Diagnostic;
use crate::model::{self, ResourceId, Value};
use crate::plan::graph::ResourceGraph;
use crate::resource::change::{Action, Change, State};
use crate::resource::provider::REFUSED;
use crate::resource::{RefreshWords, Registry};

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
    /// How reports word a refresh of this resource, from its type.
    pub refresh_words: RefreshWords,
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

    /// Why applying this resource would fail for sure, when its provider found so while
    /// observing ([`crate::resource::provider::Provider::refusal`]).
    pub fn refusal(&self) -> Option<&str> {
        self.change.as_ref().err()?.strip_prefix(REFUSED)
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
    /// Resources that could not be read, or that applying would refuse.
    pub errors: usize,
    /// Of `errors`, the resources that applying would refuse.
    pub refused: usize,
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
                Err(_) => {
                    summary.errors += 1;
                    summary.refused += usize::from(change.refusal().is_some());
                }
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

    /// What applying would refuse, as errors located at each refused resource's
    /// declaration (code `plan::refused`); `nodes` are the planned nodes, in plan order.
    /// Applying a plan that holds any of them changes nothing.
    pub fn refusals(&self, nodes: &[&model::Node]) -> Vec<Diagnostic> {
        let mut refusals = Vec::new();
        for (node_plan, node) in self.nodes.iter().zip(nodes) {
            for planned in &node_plan.changes {
                let (Some(why), Some(res)) =
                    (planned.refusal(), node.resources.get(planned.resource))
                else {
                    continue;
                };
                refusals.push(
                    Diagnostic::error(
                        "plan::refused",
                        res.span,
                        format!("`{}` cannot be applied: {why}", res.id),
                    )
                    .with_label("declared here"),
                );
            }
        }
        refusals
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
            let refresh_words = registry
                .get(&res.id.kind)
                .map_or(RefreshWords::RUN, |ty| ty.refresh_words());
            Some(PlannedChange {
                resource: idx,
                change,
                refreshed_by: Vec::new(),
                refresh_words,
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
            && registry
                .get(&node.resources[idx].id.kind)
                .is_some_and(|ty| ty.refreshable(&node.resources[idx]))
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

/// Resources hashed together in a [`desired_digest`]: blake3 hashes a long input many 1 KiB
/// chunks at a time, a short one a chunk at a time, so hashing thousands of small files one
/// by one was four times slower than hashing them in batches. Fixed, so the digest does not
/// depend on how the batches are scheduled.
const DIGEST_BATCH: usize = 64;

/// A stable digest of a node's desired state: every resource's identity, rendered attributes
/// (so template and source files and node facts count) and relationships.
pub fn desired_digest(node: &model::Node) -> String {
    let per_batch: Vec<blake3::Hash> = node
        .resources
        .par_chunks(DIGEST_BATCH)
        .map(|batch| {
            let mut encoded = Vec::new();
            for res in batch {
                encode_resource(&mut encoded, res);
            }
            blake3::hash(&encoded)
        })
        .collect();
    let mut hasher = blake3::Hasher::new();
    hasher.update(node.name.as_bytes());
    for hash in per_batch {
        hasher.update(hash.as_bytes());
    }
    format!("blake3:{}", hasher.finalize().to_hex())
}

/// A resource's identity, attributes and relationships, every part delimited (strings and
/// lists carry their lengths), so a batch of them reads back one way only.
fn encode_resource(out: &mut Vec<u8>, res: &model::Resource) {
    let text = |out: &mut Vec<u8>, text: &str| {
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    };
    text(out, &res.id.kind);
    text(out, &res.id.name);
    out.extend_from_slice(&(res.attrs.len() as u64).to_le_bytes());
    for (name, attr) in &res.attrs {
        text(out, name);
        out.push(u8::from(attr.sensitive));
        hash_value(out, &attr.value);
    }
    out.extend_from_slice(&(res.relations.len() as u64).to_le_bytes());
    for relation in &res.relations {
        text(out, relation.kind.as_str());
        text(out, &relation.target.kind);
        text(out, &relation.target.name);
    }
}

/// Where [`hash_value`] puts its bytes: a hasher, or a buffer hashed later.
trait Sink {
    fn update(&mut self, bytes: &[u8]);
}

impl Sink for blake3::Hasher {
    fn update(&mut self, bytes: &[u8]) {
        blake3::Hasher::update(self, bytes);
    }
}

impl Sink for Vec<u8> {
    fn update(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A value with its type and lengths (map keys end with a zero byte), so different values
/// encode differently. Part of the saved-plan format through [`fingerprint`]: keep it stable.
fn hash_value(hasher: &mut impl Sink, value: &Value) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{SourceId, Span};
    use crate::model::Attr;

    fn node(files: &[(String, String)]) -> model::Node {
        let span = Span::new(SourceId(0), 0, 0);
        let resources = files
            .iter()
            .map(|(path, content)| model::Resource {
                id: ResourceId::new("file", path.as_str()),
                span,
                source: SourceId(0),
                attrs: [(
                    "content".to_string(),
                    Attr {
                        value: Value::String(content.clone()),
                        span,
                        sensitive: false,
                    },
                )]
                .into_iter()
                .collect(),
                relations: Vec::new(),
                association: None,
                secrets: Vec::new(),
            })
            .collect();
        model::Node {
            name: "local".into(),
            tags: Default::default(),
            facts: crate::facts::local(std::path::Path::new("/")),
            resources: std::sync::Arc::new(resources),
        }
    }

    #[test]
    fn the_desired_digest_sees_every_byte_and_every_boundary() {
        let files: Vec<(String, String)> = (0..200)
            .map(|n| (format!("/srv/f{n}"), format!("content of {n}\n")))
            .collect();
        let digest = desired_digest(&node(&files));
        assert_eq!(digest, desired_digest(&node(&files)), "stable");
        assert!(digest.starts_with("blake3:"));

        // One byte of one file in a later batch.
        let mut edited = files.clone();
        edited[150].1.push('x');
        assert_ne!(digest, desired_digest(&node(&edited)));

        // The same bytes split differently between a name and a content.
        let mut moved = files.clone();
        moved[70].0.push('c');
        moved[70].1.remove(0);
        assert_ne!(digest, desired_digest(&node(&moved)));

        // The same resources in another order.
        let mut swapped = files.clone();
        swapped.swap(0, 1);
        assert_ne!(digest, desired_digest(&node(&swapped)));
    }
}
