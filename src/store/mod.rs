//! What runs leave behind: the run history, per-resource results and findings.
//!
//! Owns the [`Store`] trait and its record types ([`RunRecord`], [`ResultRecord`],
//! [`Finding`]), the [`FleetStore`] contract of the controller's tables (tokens, nodes, the
//! task ledger, the audit log) on top of it, the schema versions both backends share, and the
//! backends: the embedded SQLite store ([`sqlite`]) and the PostgreSQL store ([`postgres`])
//! that several controllers will share. A conformance suite (tests/it/store_conformance.rs)
//! runs unchanged on both. The fleet code sees only `dyn FleetStore`.
//!
//! **Architecture Invariant:** records hold no secrets: diffs and messages are redacted and
//! scrubbed before they reach a record; the `secrets` table holds only blobs its caller sealed.
//! The store never interprets resource attributes. The audit log is append-only in the database
//! itself (triggers refuse an update or a delete, and on PostgreSQL a truncate).

mod contract;
mod copy;
mod findings;
mod fleet;
mod migrations;
pub mod postgres;
pub mod sqlite;

mod tasks;

pub use contract::{
    ApiTokenRecord, AuditEntry, AuditQuery, AuditRecord, BuildInterrupted, ClaimedTask,
    CurrentProject, Decide, FleetStore, Notice, RoutedClose, RoutedState, RoutedTask, RunProgress,
    ScheduleSwitch, StoreListener, Tags, TaskLedger, TaskProgress,
};
pub use copy::Copied;
pub use fleet::{NewCert, StoredToken};
pub use migrations::STORE_VERSION;
pub use tasks::{IssuedTask, Ledger, LedgerOp, TaskState, UnfinishedRun};

use std::fmt;

/// What kind of run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunKind {
    /// `steward apply`.
    Apply,
    /// `steward drift` (a plan in detect mode).
    Drift,
    /// `steward run`: a command on nodes (Run Command).
    Command,
}

impl RunKind {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Apply => "apply",
            RunKind::Drift => "drift",
            RunKind::Command => "command",
        }
    }

    /// The kind for a stored name.
    pub fn parse(text: &str) -> Option<RunKind> {
        match text {
            "apply" => Some(RunKind::Apply),
            "drift" => Some(RunKind::Drift),
            "command" => Some(RunKind::Command),
            _ => None,
        }
    }
}

/// What happened to one resource in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResultOutcome {
    /// As desired; nothing done.
    Unchanged,
    /// Changed by an apply.
    Changed,
    /// Observed state differs from desired state (a drift run).
    Drifted,
    /// Failed (or could not be read).
    Failed,
    /// Not attempted because a dependency failed (or, for a command, never started).
    Skipped,
    /// A command exited 0.
    Succeeded,
    /// A command was killed at its timeout, or never reached its node in time.
    TimedOut,
    /// A command was cancelled.
    Cancelled,
    /// Not yet applied on its node: a drift check of a node the controller never applied
    /// (SSM's `Pending`). It differs from its desired state, but nothing was ever asked of
    /// it, so it is no drift; it opens and resolves no finding.
    Pending,
    /// Its node could not be reached, so nothing is known of it. The node's one
    /// `unreachable` finding says so; no finding is opened for the resource.
    Unreachable,
}

impl ResultOutcome {
    /// Every outcome.
    pub const ALL: [ResultOutcome; 10] = [
        ResultOutcome::Unchanged,
        ResultOutcome::Changed,
        ResultOutcome::Drifted,
        ResultOutcome::Failed,
        ResultOutcome::Skipped,
        ResultOutcome::Succeeded,
        ResultOutcome::TimedOut,
        ResultOutcome::Cancelled,
        ResultOutcome::Pending,
        ResultOutcome::Unreachable,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultOutcome::Unchanged => "unchanged",
            ResultOutcome::Changed => "changed",
            ResultOutcome::Drifted => "drifted",
            ResultOutcome::Failed => "failed",
            ResultOutcome::Skipped => "skipped",
            ResultOutcome::Succeeded => "succeeded",
            ResultOutcome::TimedOut => "timed_out",
            ResultOutcome::Cancelled => "cancelled",
            ResultOutcome::Pending => "pending",
            ResultOutcome::Unreachable => "unreachable",
        }
    }

    /// The outcome for a stored name.
    pub fn parse(text: &str) -> Option<ResultOutcome> {
        ResultOutcome::ALL.into_iter().find(|o| o.as_str() == text)
    }

    /// Drifted and failed resources are not compliant.
    pub fn is_noncompliant(self) -> bool {
        matches!(self, ResultOutcome::Drifted | ResultOutcome::Failed)
    }

    /// Whether the node answered for this resource: every outcome but `unreachable` (and
    /// `skipped`, which was never asked of it).
    pub fn node_answered(self) -> bool {
        !matches!(self, ResultOutcome::Unreachable | ResultOutcome::Skipped)
    }
}

/// Compliance severity (SSM's values), highest last: the model's, as records keep it.
pub use crate::model::ComplianceSeverity as Severity;

/// One resource's result in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultRecord {
    /// The node.
    pub node: String,
    /// `TYPE:NAME`.
    pub resource: String,
    /// What happened.
    pub outcome: ResultOutcome,
    /// The document that declares the resource, relative to the project's root (runs recorded
    /// before issue 14 kept it relative to where steward ran), for SARIF locations.
    pub file: Option<String>,
    /// 1-based line of the declaration's key.
    pub line: Option<u32>,
    /// 1-based column of the declaration's key.
    pub column: Option<u32>,
    /// The change as the plan showed it (attribute lines and a unified diff), redacted and
    /// cut to a size (see [`ResultChange::n_cut_bytes`]); a command's output in a command run.
    pub diff: Option<String>,
    /// What the change did (or, in a drift run, would do), as the live output said it; `None`
    /// for a result that did not move, a command, and results stored before store version 5.
    pub change: Option<ResultChange>,
    /// Why it failed or was skipped, scrubbed.
    pub message: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// The association that put it on the node, if any.
    pub association: Option<String>,
    /// Severity of non-compliance.
    pub severity: Severity,
}

/// What a changed or drifted resource's change did, or would do: the action and words the live
/// output showed, beside the change's text in [`ResultRecord::diff`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultChange {
    /// The plan's action: `create`, `update`, `replace`, `delete` or `run` (also a refresh).
    pub action: String,
    /// How the apply's output said what it did (`created`, `updated and refreshed`,
    /// `restarted`); `None` in a drift run, where nothing was done.
    pub done: Option<String>,
    /// Why the plan chose its action, when it said (a replace's reason).
    pub reason: Option<String>,
    /// Bytes of the (redacted) change text left out of the diff, which keeps its first
    /// 64 KiB and a note; 0 when it is whole.
    pub n_cut_bytes: u64,
}

/// One run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    /// The run id (sortable by time).
    pub id: String,
    /// Apply or drift.
    pub kind: RunKind,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC.
    pub finished_at: String,
    /// Who ran it.
    pub user: String,
    /// The project path.
    pub project: String,
    /// Digest of the documents and parameters.
    pub documents_digest: String,
    /// Per node and resource, in plan order.
    pub results: Vec<ResultRecord>,
    /// Whether the run ended, or was cut short by a controller that stopped during it.
    pub status: RunStatus,
}

/// How a recorded run ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunStatus {
    /// It ran to its end: every result it waited for is in it.
    #[default]
    Complete,
    /// It is still running (only a controller's runs are stored before they end).
    Running,
    /// The controller stopped during it; it holds every result that arrived before that.
    Interrupted,
}

impl RunStatus {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Complete => "complete",
            RunStatus::Running => "running",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// The status of a stored name.
    pub fn parse(text: &str) -> Option<RunStatus> {
        match text {
            "complete" => Some(RunStatus::Complete),
            "running" => Some(RunStatus::Running),
            "interrupted" => Some(RunStatus::Interrupted),
            _ => None,
        }
    }
}

impl RunRecord {
    /// Number of results with this outcome.
    pub fn count(&self, outcome: ResultOutcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }

    /// The nodes in the run, in first-seen order.
    pub fn nodes(&self) -> Vec<&str> {
        self.by_node().into_iter().map(|(node, _)| node).collect()
    }

    /// Each node's results, nodes in first-seen order: one pass, for a fleet run holds
    /// nodes × resources results.
    pub fn by_node(&self) -> Vec<(&str, Vec<&ResultRecord>)> {
        let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut nodes: Vec<(&str, Vec<&ResultRecord>)> = Vec::new();
        for result in &self.results {
            let at = *index.entry(result.node.as_str()).or_insert_with(|| {
                nodes.push((result.node.as_str(), Vec::new()));
                nodes.len() - 1
            });
            nodes[at].1.push(result);
        }
        nodes
    }

    /// Per node (and association): compliant or not, with the highest severity among the
    /// non-compliant results (drifted, failed, and the pending and unreachable resources
    /// that are not known to be compliant).
    pub fn compliance(&self) -> Vec<Compliance> {
        let mut res: Vec<Compliance> = Vec::new();
        let mut index: std::collections::HashMap<(&str, &_), usize> =
            std::collections::HashMap::new();
        for result in &self.results {
            let idx = *index
                .entry((result.node.as_str(), &result.association))
                .or_insert_with(|| {
                    res.push(Compliance {
                        node: result.node.clone(),
                        association: result.association.clone(),
                        compliant: true,
                        severity: None,
                        n_noncompliant: 0,
                    });
                    res.len() - 1
                });
            // A resource whose node could not be reached, or was never applied, is not
            // known to be compliant.
            if result.outcome.is_noncompliant()
                || matches!(
                    result.outcome,
                    ResultOutcome::Pending | ResultOutcome::Unreachable
                )
            {
                let entry = &mut res[idx];
                entry.compliant = false;
                entry.n_noncompliant += 1;
                entry.severity = Some(
                    entry
                        .severity
                        .map_or(result.severity, |s| s.max(result.severity)),
                );
            }
        }
        res
    }
}

/// A node's (and association's) compliance in a run (SSM Compliance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compliance {
    /// The node.
    pub node: String,
    /// The association, when resources came through one.
    pub association: Option<String>,
    /// No drifted, failed, pending or unreachable resource.
    pub compliant: bool,
    /// The highest severity among non-compliant resources.
    pub severity: Option<Severity>,
    /// How many resources are not compliant.
    pub n_noncompliant: usize,
}

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FindingKind {
    /// The resource drifted from its desired state.
    Drift,
    /// The resource failed to apply or to be read.
    Failure,
    /// The node could not be reached: one finding for the node (its resource is
    /// [`node_resource`]), resolved when the node next answers.
    Unreachable,
}

/// The `resource` of a finding about a whole node (`node:NAME`).
pub fn node_resource(node: &str) -> String {
    format!("node:{node}")
}

impl FindingKind {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Drift => "drift",
            FindingKind::Failure => "failure",
            FindingKind::Unreachable => "unreachable",
        }
    }

    /// The kind for a stored name.
    pub fn parse(text: &str) -> Option<FindingKind> {
        match text {
            "drift" => Some(FindingKind::Drift),
            "failure" => Some(FindingKind::Failure),
            "unreachable" => Some(FindingKind::Unreachable),
            _ => None,
        }
    }
}

/// An operational item opened by a failure or drift (SSM OpsCenter's OpsItem), deduplicated
/// by node + resource + kind; or by an unreachable node, one for the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Its id.
    pub id: i64,
    /// The node.
    pub node: String,
    /// `TYPE:NAME`.
    pub resource: String,
    /// Drift or failure.
    pub kind: FindingKind,
    /// Open until a compliant run (or a person) resolves it.
    pub open: bool,
    /// Severity.
    pub severity: Severity,
    /// RFC 3339 UTC.
    pub first_seen: String,
    /// RFC 3339 UTC.
    pub last_seen: String,
    /// How many runs saw it.
    pub count: u64,
    /// The last run that saw it.
    pub last_run: String,
    /// What was seen last, scrubbed.
    pub message: String,
    /// How and when it was resolved (`resolved by run ID at TIME` or `resolved by hand at TIME`).
    pub resolution: Option<String>,
    /// The association that put the resource on the node (`None` for a node's `unreachable`
    /// finding, a resource of no association, and findings stored before store version 9).
    pub association: Option<String>,
}

/// The resolution a finding resolved by hand is given: when, and the note, if any.
pub(crate) fn resolution_by_hand(note: Option<&str>) -> String {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match note.map(str::trim).filter(|n| !n.is_empty()) {
        Some(note) => format!("resolved by hand at {at}: {note}"),
        None => format!("resolved by hand at {at}"),
    }
}

/// A short summary of a stored run, for `steward runs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSummary {
    /// The run id.
    pub id: String,
    /// Apply or drift.
    pub kind: RunKind,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// Who ran it.
    pub user: String,
    /// Counts of unchanged, changed (and succeeded), drifted, failed (and timed out), and
    /// skipped (and cancelled, pending and unreachable) results.
    pub counts: [usize; 5],
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file is not a steward store (another program's database, or not a database).
    #[error("{path} is not a steward store ({reason}); steward will not touch it")]
    Foreign {
        /// The file.
        path: String,
        /// What was found.
        reason: String,
    },
    /// Written by a newer steward.
    #[error(
        "{path} was written by a newer steward (store version {found}; this steward reads up to {supported}); upgrade steward"
    )]
    TooNew {
        /// The file.
        path: String,
        /// Its version.
        found: i64,
        /// Ours.
        supported: i64,
    },
    /// The file is damaged: empty, cut short, or with pages SQLite cannot read. It is never
    /// re-created or written over: what it held (runs, enrolled nodes, tokens) may be wanted
    /// back from a backup.
    #[error(
        "{path} is damaged: {reason}; steward will not use it, nor create a new store over it (restore it from a backup, or move it away to start an empty store)"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// No such run.
    #[error("no run `{0}`")]
    NoRun(String),
    /// No such finding.
    #[error("no finding {0}")]
    NoFinding(i64),
    /// The finding was resolved already.
    #[error("finding {0} is already resolved")]
    AlreadyResolved(i64),
    /// No such node.
    #[error("no node `{0}` is enrolled")]
    NoNode(String),
    /// The node was revoked.
    #[error("node `{0}` is revoked")]
    Revoked(String),
    /// No API token has this id.
    #[error("no API token `{0}`")]
    NoApiToken(String),
    /// The API token was revoked already.
    #[error("API token `{id}` was revoked already, at {revoked_at}")]
    ApiTokenRevoked {
        /// The token's id.
        id: String,
        /// When it was revoked (the first time).
        revoked_at: String,
    },
    /// A join token cannot be redeemed.
    #[error("{0}")]
    Token(String),
    /// The database failed.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A PostgreSQL store's database could not be reached or refused the connection.
    #[error("cannot use {database}: {reason}")]
    Database {
        /// The database (its name, host and port; never its password).
        database: String,
        /// What went wrong.
        reason: String,
    },
    /// A PostgreSQL query failed: the client's error and its causes (the client's own text
    /// alone says only `db error`).
    #[error("store: {0}")]
    Postgres(String),
    /// The connection to the PostgreSQL server was lost or the server is going away (it
    /// restarted, ended the session, or the network failed): the same call may work once it
    /// is back. Whether a write in flight was committed is not known.
    #[error("store: {0}")]
    Disconnected(String),
    /// The file system failed.
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
    /// A copy into a shared store found it holding a fleet already.
    #[error(
        "the PostgreSQL store is not empty ({held}): --migrate-from copies into an empty store only, and never merges two fleets"
    )]
    NotEmpty {
        /// Rows per table, `table: n, ...`.
        held: String,
    },
    /// A store that is not shared (SQLite) was asked to route work between controllers.
    #[error("{0}: only a shared (PostgreSQL) store routes work between controllers")]
    NotShared(&'static str),
    /// A copy found a table or column of the source that the target does not have.
    #[error("cannot copy {source_store}: {reason}")]
    CopyMismatch {
        /// The source store.
        source_store: String,
        /// What does not match.
        reason: String,
    },
}

impl From<::postgres::Error> for StoreError {
    fn from(err: ::postgres::Error) -> StoreError {
        let text = postgres::error_text(&err);
        if postgres::is_disconnection(&err) {
            StoreError::Disconnected(text)
        } else {
            StoreError::Postgres(text)
        }
    }
}

impl StoreError {
    /// Whether the database was out of reach (a lost connection, a server going away or not
    /// accepting connections yet), so the same call may work later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Disconnected(_) | StoreError::Database { .. }
        )
    }
}

/// An enrolled node in the controller's registry.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRecord {
    /// Its name (its certificate's CN).
    pub name: String,
    /// `sha256:` fingerprint of its current certificate.
    pub cert_fingerprint: String,
    /// When that certificate expires (RFC 3339).
    pub cert_not_after: String,
    /// The controller's tags, which targeting uses: bound by its join token or set with
    /// `steward node tag`.
    pub tags: std::collections::BTreeMap<String, String>,
    /// The tags its agent asked for at enrollment: shown, never used for targeting.
    pub claimed_tags: std::collections::BTreeMap<String, String>,
    /// Facts it last reported (JSON).
    pub facts: serde_json::Value,
    /// When it enrolled.
    pub enrolled_at: String,
    /// When it last connected or disconnected.
    pub last_seen: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
}

/// Run history, results and findings: the contract both backends keep, SQLite locally and
/// PostgreSQL for shared controllers.
pub trait Store {
    /// Records a run and updates findings: every drifted or failed result opens (or bumps)
    /// its finding; an unchanged or changed result of a resource resolves its open findings;
    /// a node with unreachable results opens (or bumps) one `unreachable` finding for the
    /// node, and a node that answered resolves it. Pending, skipped and command results open
    /// and resolve nothing.
    fn record_run(&mut self, run: &RunRecord) -> Result<(), StoreError>;
    /// Which of `nodes` were ever applied: some stored apply run has a result its node
    /// answered for (a node never applied is `pending` in a drift check).
    fn applied_nodes(
        &self,
        nodes: &[String],
    ) -> Result<std::collections::BTreeSet<String>, StoreError>;
    /// A run by id, or the latest when `id` is `None`.
    fn run(&self, id: Option<&str>) -> Result<RunRecord, StoreError>;
    /// The runs, newest first.
    fn runs(&self) -> Result<Vec<RunSummary>, StoreError>;
    /// The smallest run id kept (run ids sort by time), without reading any results.
    fn oldest_run_id(&self) -> Result<Option<String>, StoreError>;
    /// Findings, open only unless `all`.
    fn findings(&self, all: bool) -> Result<Vec<Finding>, StoreError>;
    /// Resolves a finding by hand; its resolution says when, and `note` (who and why) when
    /// given.
    fn resolve_finding(&mut self, id: i64, note: Option<&str>) -> Result<Finding, StoreError>;
    /// The newest `limit` runs with a result on `node`, newest first, each with the counts of
    /// that node's results only.
    fn node_runs(&self, node: &str, limit: usize) -> Result<Vec<RunSummary>, StoreError>;
    /// Deletes all but the newest `keep` runs (findings stay).
    fn prune(&mut self, keep: usize) -> Result<usize, StoreError>;
}

impl fmt::Display for ResultOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
