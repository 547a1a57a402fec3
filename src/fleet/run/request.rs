//! The API types of a fleet run: what `POST /v1/runs` takes ([`RunRequest`]) and the progress
//! stream it answers with ([`Event`], ending with a [`RunResponse`]).
//!
//! Plain serde data shared by the HTTP API, the CLI's client and the orchestration.
//! **Architecture Invariant:** nothing here reaches the controller, the store or the disk;
//! resolving a request against the inventory is the orchestration's job ([`super::Scope`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Probe and show the per-node plans.
    Plan,
    /// Plan and apply with rate control.
    Apply,
    /// Probe and record drift and findings.
    Drift,
}

/// One file of an uploaded project.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    /// Relative to the project, `/`-separated.
    pub path: String,
    /// The bytes, base64.
    pub data: String,
}

/// A run asked of the controller (`POST /v1/runs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Plan, apply or drift.
    pub mode: Mode,
    /// The project's files.
    pub files: Vec<BundleFile>,
    /// The project as the user named it, for records.
    pub project: String,
    /// `--param` overrides.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
    /// Every `--target`, joined by commas (the selector grammar of [`crate::engine::Selector`]).
    #[serde(default)]
    pub target: Option<String>,
    /// `--resource`s: only these resources (`TYPE:NAME`) and what they depend on, on every
    /// selected node that declares them (empty: every resource).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// `--exclude`s: these resources (`TYPE:NAME`) and what depends on them are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excludes: Vec<String>,
    /// `--parallel` on each node.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Colour the human text.
    #[serde(default)]
    pub color: bool,
    /// Return the plan as the plan JSON document instead of text.
    #[serde(default)]
    pub json: bool,
    /// Who asked.
    #[serde(default)]
    pub user: String,
    /// `steward run --document`: apply the documents on these targets with this rate
    /// control, ignoring associations.
    #[serde(default)]
    pub adhoc: Option<AdhocRequest>,
    /// Apply exactly this saved plan: refused when the documents changed since, and each
    /// agent refuses when what it reads moved since.
    #[serde(default)]
    pub saved: Option<SavedFleetPlan>,
}

/// What a saved fleet plan pins (from `plan -o` against a controller).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedFleetPlan {
    /// The plan's `documents_digest`.
    pub documents_digest: String,
    /// The plan's `documents`: each document's digest by its path in the project, so a
    /// refusal names the documents that changed (empty: not known).
    #[serde(default)]
    pub documents: BTreeMap<String, String>,
    /// Per node, each resource's (`TYPE:NAME`) observed fingerprint.
    pub nodes: BTreeMap<String, BTreeMap<String, String>>,
}

/// The root a fleet plan names: its nodes are reached through agents.
pub const FLEET_ROOT: &str = "(agents)";

/// The targets and rate control of `steward run --document`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdhocRequest {
    /// The selector, as `steward run --target`.
    pub target: String,
    /// `N` or `P%`.
    pub max_concurrency: String,
    /// `N` or `P%`.
    pub max_errors: String,
}

fn default_parallel() -> usize {
    4
}

/// A line of the run's progress stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A node started (probe or apply).
    NodeStarted {
        /// The node.
        node: String,
    },
    /// A resource finished on a node during an apply.
    Resource {
        /// The node.
        node: String,
        /// `TYPE:NAME`.
        resource: String,
        /// `changed`, `failed`, ...
        outcome: String,
    },
    /// A node finished.
    NodeFinished(NodeStatus),
    /// The run is over.
    Done(RunResponse),
}

/// How one node fared.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub node: String,
    /// `ok`, `failed`, `offline`, `unreachable`, `refused` (a saved plan's state moved),
    /// `not_started`, or `pending` (a drift check of a node never applied).
    pub status: String,
    /// Resources changed (apply) or to change (plan).
    pub changed: usize,
    /// Resources drifted (drift).
    #[serde(default)]
    pub drifted: usize,
    /// Resources pending: not yet applied on a node never applied (drift).
    #[serde(default)]
    pub pending: usize,
    /// Resources failed.
    pub failed: usize,
    /// Resources skipped: not attempted (a dependency failed, or the node was not asked or
    /// refused the task).
    #[serde(default)]
    pub skipped: usize,
    /// Why it failed, when it did.
    pub message: Option<String>,
}

/// The end of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResponse {
    /// The stored run, for apply and drift.
    pub run_id: Option<String>,
    /// Something would change (plan) or drifted (drift).
    pub has_changes: bool,
    /// A node failed, was offline, or a resource failed.
    pub failed: bool,
    /// The rendered plan (human text or JSON) or the run's summary.
    pub output: String,
    /// Per node.
    pub nodes: Vec<NodeStatus>,
    /// Problems with the project itself (then nothing ran).
    pub errors: Vec<String>,
    /// A plan as the plan JSON document (for `plan -o`).
    #[serde(default)]
    pub plan_json: Option<String>,
}

impl RunResponse {
    /// A run that could not start.
    pub(crate) fn error(error: impl std::fmt::Display) -> RunResponse {
        RunResponse {
            failed: true,
            errors: vec![error.to_string()],
            ..RunResponse::default()
        }
    }
}
