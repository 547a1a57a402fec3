//! The contract of the controller's tables, which both backends keep: join tokens and the node
//! registry, the task ledger and runs in progress, and the state several controllers of one
//! database share (secrets, schedule firings, the current project).
//!
//! [`FleetStore`] extends [`Store`] with them and is object-safe, so the controller holds a
//! `Box<dyn FleetStore>` and does not know which backend it has. Every write is one
//! transaction; every operation two controllers may run at once on one database decides in
//! the database (a row lock, a unique key), never in the caller: a token is spent once, a task
//! closed once, a firing claimed once, and a secret has one value.

use std::collections::BTreeMap;

use crate::store::{
    LedgerOp, NewCert, NodeRecord, Store, StoreError, StoredToken, TaskState, UnfinishedRun,
};

/// Tags: key to value.
pub type Tags = BTreeMap<String, String>;

/// How an enrollment decides: given the stored token (`None` for an unknown id) and the node
/// already of that name (if any), the node's tags, or a refusal in words.
pub type Decide<'a> =
    dyn FnMut(Option<&StoredToken>, Option<&NodeRecord>) -> Result<Tags, String> + 'a;

/// The project schedules run: the bundle last applied, as one controller stored it for all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentProject {
    /// The project's name.
    pub name: String,
    /// Digest of its documents and parameters.
    pub digest: String,
    /// Its files, as JSON (the bundle's own encoding; the store does not read it).
    pub files_json: String,
}

/// Everything the fleet code asks of its store, on SQLite and on PostgreSQL alike.
pub trait FleetStore: Store + Send {
    /// Records a new join token (`used_by` is ignored: a new token is unused). An id that
    /// exists already is an error.
    fn insert_token(&mut self, id: &str, token: &StoredToken) -> Result<(), StoreError>;

    /// Enrolls a node with a join token, in one transaction that holds the token's row:
    /// `decide` sees the stored token and the node already of that name, and answers with
    /// the node's tags or a refusal. Only on its answer is the token spent and the node
    /// recorded (created, or given the new certificate, tags and claimed tags, and
    /// un-revoked). Two enrollments with one token at once: the second sees it spent.
    ///
    /// The outer `Err` is the store failing; the inner one is `decide`'s refusal, which
    /// leaves the token unspent.
    fn enroll_with_token(
        &mut self,
        token_id: &str,
        cert: &NewCert<'_>,
        decide: &mut Decide<'_>,
    ) -> Result<Result<(), String>, StoreError>;

    /// Sets and removes a node's (controller's) tags; `remove` goes first. A revoked or
    /// unknown node is refused.
    fn set_node_tags(
        &mut self,
        name: &str,
        set: &Tags,
        remove: &[String],
    ) -> Result<NodeRecord, StoreError>;

    /// Replaces a node's certificate after renewal; an unknown or revoked node is
    /// [`StoreError::NoNode`].
    fn renew_node_cert(
        &mut self,
        name: &str,
        cert_fingerprint: &str,
        cert_not_after: &str,
    ) -> Result<(), StoreError>;

    /// Records that a node connected (or disconnected) with these facts.
    fn node_seen(
        &mut self,
        name: &str,
        facts: &serde_json::Value,
        at: &str,
    ) -> Result<(), StoreError>;

    /// One node.
    fn node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError>;

    /// Every node, by name (byte by byte).
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;

    /// Revokes a node for good (revoking it again changes nothing); an unknown node is
    /// [`StoreError::NoNode`].
    fn revoke_node(&mut self, name: &str) -> Result<NodeRecord, StoreError>;

    /// True when `fingerprint` is the node's current certificate and it is not revoked: the
    /// check made on every connection.
    fn node_cert_ok(&self, name: &str, fingerprint: &str) -> Result<bool, StoreError> {
        Ok(self
            .node(name)?
            .is_some_and(|n| n.revoked_at.is_none() && n.cert_fingerprint == fingerprint))
    }

    /// Stores a run as `running`, before any of its tasks is sent; its results come with
    /// [`Store::record_run`], which replaces this row.
    fn begin_run(&mut self, run: &crate::store::RunRecord) -> Result<(), StoreError>;

    /// What the ledger says of task `id` for `node`.
    fn task_state(&self, id: &str, node: &str) -> Result<TaskState, StoreError>;

    /// The runs still marked `running`, oldest first, with their tasks in the order they were
    /// issued.
    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>, StoreError>;

    /// Drops the stored results of a plan's closed tasks once the plan used them (a plan is
    /// not recorded); the tasks stay, so a re-delivery is recognised.
    fn settle_plan_tasks(&mut self, plan_id: &str) -> Result<(), StoreError>;

    /// Forgets the closed tasks closed before `before` (RFC 3339 UTC); open tasks stay.
    /// Returns how many were forgotten.
    fn prune_tasks(&mut self, before: &str) -> Result<usize, StoreError>;

    /// Whether the store holds a run with this id, in any state.
    fn has_run(&self, id: &str) -> Result<bool, StoreError>;

    /// Opens a second connection that writes the task ledger in batches (see
    /// [`TaskLedger`]).
    fn open_ledger(&self) -> Result<Box<dyn TaskLedger>, StoreError>;

    /// The secret stored under `name` (an opaque blob; the caller seals it).
    fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `value` under `name` unless a value is stored there already, and returns the
    /// value stored after the call: the first writer wins, so controllers that start at once
    /// all use one value.
    fn put_secret_if_absent(&mut self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError>;

    /// Claims the firing of `association`'s schedule due at `due_at` (RFC 3339 UTC, one
    /// format for all, so they sort as text) for `controller`: true for exactly one caller
    /// per association and due time, whichever controller or process asks.
    fn claim_firing(
        &mut self,
        association: &str,
        due_at: &str,
        controller: &str,
    ) -> Result<bool, StoreError>;

    /// Per association, the latest due time claimed.
    fn last_firings(&self) -> Result<BTreeMap<String, String>, StoreError>;

    /// Makes `project` the current project (the bundle last applied); the previous one is
    /// not kept.
    fn put_project(&mut self, project: &CurrentProject) -> Result<(), StoreError>;

    /// The current project, if one was ever applied.
    fn current_project(&self) -> Result<Option<CurrentProject>, StoreError>;
}

/// A connection of its own that writes the task ledger: every write waiting when a batch
/// starts goes into one transaction, so one commit makes many tasks and results durable.
pub trait TaskLedger: Send {
    /// Applies `ops` in one transaction: per op, whether it took effect (an issue of an id
    /// that exists already is an error of its own, and the others still apply); `Err` when
    /// the transaction failed, and then none did.
    fn apply(&mut self, ops: &[&LedgerOp]) -> Result<Vec<Result<bool, String>>, StoreError>;
}
