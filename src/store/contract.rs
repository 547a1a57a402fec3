//! The contract of the controller's tables, which both backends keep: join tokens and the node
//! registry, API tokens, the task ledger and runs in progress, the audit log, and the state
//! several controllers of one database share (secrets, schedule firings and switches, the
//! current project).
//!
//! [`FleetStore`] extends [`Store`] with them and is object-safe, so the controller holds a
//! `Box<dyn FleetStore>` and does not know which backend it has. Every write is one
//! transaction; every operation two controllers may run at once on one database decides in
//! the database (a row lock, a unique key), never in the caller: a token is spent once, a task
//! closed once, a firing claimed once, an API token revoked once, and a secret has one value.
//!
//! Work routing (issue 16) is the part only a shared store keeps ([`FleetStore::is_shared`]):
//! a task whose node is connected to another controller is a row with its payload, claimed
//! by the controller that holds the node's connection for a lease, and closed with its result
//! for the coordinator that waits for it. SQLite is never shared and refuses those operations
//! ([`StoreError::NotShared`]); its controller works as it always did.

use std::collections::BTreeMap;

use crate::store::{
    LedgerOp, NewCert, NodeRecord, RunRecord, Store, StoreError, StoredToken, TaskState,
    UnfinishedRun,
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

/// Whether a scheduled association is switched on, and who switched it last
/// ([`FleetStore::set_schedule_enabled`]). An association without a switch is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleSwitch {
    /// False while the scheduler must not fire it.
    pub enabled: bool,
    /// When it was last turned off or on (RFC 3339 UTC, milliseconds).
    pub changed_at: String,
    /// Who turned it (the token that asked, as runs record it).
    pub changed_by: String,
}

/// An API token as the store keeps it ([`FleetStore::insert_api_token`]): what it may do and
/// the SHA-256 of its secret, never the secret. The store does not read the role or the
/// target; the fleet code gives them meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiTokenRecord {
    /// Its public id (short lowercase hex); the key.
    pub id: String,
    /// The name its maker gave it.
    pub name: String,
    /// `read`, `plan`, `operate` or `admin`.
    pub role: String,
    /// The target selector it was made with, as the user wrote it.
    pub target: Option<String>,
    /// Lowercase hex SHA-256 of its secret.
    pub secret_sha256: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC; `None` when it never expires.
    pub expires_at: Option<String>,
    /// RFC 3339 UTC, set once when it is revoked.
    pub revoked_at: Option<String>,
}

/// How far a run is ([`FleetStore::run_progress`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunProgress {
    /// Running, complete or interrupted.
    pub status: crate::store::RunStatus,
    /// Its tasks, in the order they were issued.
    pub tasks: Vec<TaskProgress>,
}

/// One task of a run in progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskProgress {
    /// The node it went to.
    pub node: String,
    /// RFC 3339 UTC.
    pub issued_at: String,
    /// When its result arrived (RFC 3339 UTC); `None` while it is awaited.
    pub closed_at: Option<String>,
}

/// One entry of the audit log, as it is appended ([`FleetStore::append_audit`]): who did what,
/// from where, to what, and how it ended. The store does not read the fields; the fleet code
/// (`fleet::audit`) gives them their vocabulary and keeps secrets out of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Who, by id: an API token's id, `admin`, `scheduler`, `local`, or a join token's id.
    pub actor_id: String,
    /// Who, for people: a token's name, `admin token`, `scheduler`, `local CLI (user X)`.
    pub actor: String,
    /// From where: the HTTP peer's `IP:PORT`, the controller's id, or `local`.
    pub source: String,
    /// What: a route (`POST /v1/runs`) or an act (`schedule fire`, `token create`).
    pub action: String,
    /// What it acted on (a node, a selector, a finding, a token id); empty when nothing.
    pub target: String,
    /// The run it started or belongs to, if any.
    pub run_id: Option<String>,
    /// `started`, `ok`, `refused` or `failed`.
    pub outcome: String,
    /// The HTTP status answered, for a request.
    pub status: Option<u16>,
    /// A short line: why it was refused or failed, or what was done.
    pub detail: String,
}

/// An entry of the audit log as stored: its id (which only grows) and the entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its id: larger for a later append, on every controller of one database.
    pub id: i64,
    /// What was appended.
    pub entry: AuditEntry,
}

/// Which entries [`FleetStore::audit`] reads: the newest `limit` below `before`, of one run or
/// one actor when asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// At most this many entries.
    pub limit: usize,
    /// Only entries whose id is below this one (the next page of a listing).
    pub before: Option<i64>,
    /// Only entries of this run.
    pub run_id: Option<String>,
    /// Only entries of this actor id.
    pub actor_id: Option<String>,
}

/// A task for the controller that holds its node's connection: stored before it is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedTask {
    /// The task id.
    pub id: String,
    /// The node it goes to.
    pub node: String,
    /// Its run.
    pub run_id: String,
    /// RFC 3339 UTC.
    pub issued_at: String,
    /// The task as it goes down the wire (JSON; the store does not read it).
    pub payload: String,
}

/// A task a controller claimed, to send down its node's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedTask {
    /// The task id.
    pub id: String,
    /// The node it goes to.
    pub node: String,
    /// The task as it goes down the wire (JSON).
    pub payload: String,
}

/// What a routed task's row says, for the coordinator that waits for its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutedState {
    /// Closed with this result (wire JSON).
    Answered(String),
    /// Claimed by a controller whose lease has not lapsed.
    Held,
    /// Not claimed yet (`claimed` false), or its lease lapsed; `expired` once its start window
    /// ended, after which no controller claims it.
    Waiting {
        /// Whether a controller ever claimed it.
        claimed: bool,
        /// Whether its start window ended.
        expired: bool,
    },
    /// No such open task (withdrawn, or closed without a result kept).
    Gone,
}

/// How storing a routed task's result went ([`FleetStore::close_routed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutedClose {
    /// Stored and announced to the coordinator.
    Stored,
    /// Its result was stored before: a re-delivery.
    Closed,
    /// Nobody waits for it any more (its coordinator gave up, or its run was recovered as
    /// interrupted): the caller records it as a late result, then closes it.
    Abandoned,
    /// No task of this id was issued to this node.
    NotIssued,
}

/// What a [`StoreListener`] heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A task was routed to this node, or released: claimers look.
    Task {
        /// The node.
        node: String,
    },
    /// A routed task was closed with its result.
    Result {
        /// The task id.
        id: String,
    },
}

/// A connection of its own that listens for routed tasks and results and writes its
/// controller's heartbeat; it reconnects by itself after the database went away, so the
/// heartbeat says when the database is back.
pub trait StoreListener: Send {
    /// Waits up to `timeout` for notices; an empty list when none came. `Err` when the
    /// database cannot be reached (the next call tries to connect again).
    fn wait(&mut self, timeout: std::time::Duration) -> Result<Vec<Notice>, StoreError>;

    /// Writes `controller`'s heartbeat (the database's clock), creating its row on the first.
    fn heartbeat(&mut self, controller: &str) -> Result<(), StoreError>;
}

/// Builds the interrupted record of an orphaned run from what it left: the run as begun and
/// its tasks, with the results that arrived ([`FleetStore::recover_orphaned_runs`]).
pub type BuildInterrupted<'a> = dyn FnMut(UnfinishedRun) -> RunRecord + 'a;

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

    /// How far a run is: its status and its tasks (each node's, in the order they were
    /// issued, and whether its result arrived); `None` for an unknown run. What the console's
    /// live progress polls, whichever controller coordinates the run.
    fn run_progress(&self, id: &str) -> Result<Option<RunProgress>, StoreError>;

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

    /// Turns `association`'s schedule off (`enabled` false) or on again, as `by`, in one
    /// statement that decides in the database: the switch changes (and takes the time and
    /// `by`) only when its state does, so turning on an association that is on, or off one
    /// that is off, keeps the switch as it was, whoever asks and however many at once. An
    /// association without a switch is on: turning it on writes nothing. The store does not
    /// check that the association exists or is scheduled.
    fn set_schedule_enabled(
        &mut self,
        association: &str,
        enabled: bool,
        by: &str,
    ) -> Result<(), StoreError>;

    /// Every switch, by association (byte by byte), those of associations no longer in the
    /// current project included.
    fn schedule_switches(&self) -> Result<BTreeMap<String, ScheduleSwitch>, StoreError>;

    /// Makes `project` the current project (the bundle last applied); the previous one is
    /// not kept.
    fn put_project(&mut self, project: &CurrentProject) -> Result<(), StoreError>;

    /// The current project, if one was ever applied.
    fn current_project(&self) -> Result<Option<CurrentProject>, StoreError>;

    /// Records a new API token; its `revoked_at` is ignored (a new token is not revoked). An
    /// id that exists already is an error.
    fn insert_api_token(&mut self, token: &ApiTokenRecord) -> Result<(), StoreError>;

    /// The API token `id`, revoked or not; `None` when there is none.
    fn api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>, StoreError>;

    /// Every API token, revoked and expired ones included, by id (byte by byte).
    fn api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError>;

    /// Revokes API token `id` now, once: the token as revoked. An unknown id is
    /// [`StoreError::NoApiToken`]; a token revoked before is [`StoreError::ApiTokenRevoked`]
    /// and keeps its first `revoked_at`.
    fn revoke_api_token(&mut self, id: &str) -> Result<ApiTokenRecord, StoreError>;

    /// Appends `entry` to the audit log, in a transaction of its own; returns its id. The log is
    /// append-only: the database itself refuses to change or delete an entry.
    fn append_audit(&mut self, entry: &AuditEntry) -> Result<i64, StoreError>;

    /// The entries `query` selects, newest (largest id) first.
    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;

    /// Whether several controllers may share this store, so that tasks are routed through it
    /// (PostgreSQL). SQLite's is one controller's: false.
    fn is_shared(&self) -> bool {
        false
    }

    /// [`FleetStore::begin_run`], naming the controller that coordinates the run, so another
    /// controller recovers it when that one's heartbeat stops. A store that is not shared
    /// keeps no coordinator.
    fn begin_run_by(&mut self, run: &RunRecord, coordinator: &str) -> Result<(), StoreError> {
        let _ = coordinator;
        self.begin_run(run)
    }

    /// [`FleetStore::begin_run_by`], tried again (`again`) after a try whose answer was lost
    /// with the connection: a run already there under its id is that try's.
    fn begin_run_again(
        &mut self,
        run: &RunRecord,
        coordinator: &str,
        again: bool,
    ) -> Result<(), StoreError> {
        if again && self.has_run(&run.id)? {
            return Ok(());
        }
        self.begin_run_by(run, coordinator)
    }

    /// [`Store::record_run`], tried again (`again`) after a try whose answer was lost with the
    /// connection: a run already recorded whole under its id is that try's.
    fn record_run_again(&mut self, run: &RunRecord, again: bool) -> Result<(), StoreError> {
        let recorded = again
            && self
                .run(Some(&run.id))
                .is_ok_and(|stored| stored.status != crate::store::RunStatus::Running);
        if recorded {
            return Ok(());
        }
        self.record_run(run)
    }

    /// Stores a task before it is sent: claimed by `held_by` (the controller that holds the
    /// node's connection and sends it down at once) for a lease of `lease_ms`, or unclaimed and
    /// announced to every controller's claimer. Unclaimed, it is claimable for `window_ms`
    /// (its start window). An id issued before is an error.
    fn route_task(
        &mut self,
        task: &RoutedTask,
        held_by: Option<&str>,
        window_ms: i64,
        lease_ms: i64,
    ) -> Result<(), StoreError> {
        let _ = (task, held_by, window_ms, lease_ms);
        Err(StoreError::NotShared("routing a task"))
    }

    /// Claims for `controller`, with a lease of `lease_ms`, the open tasks of `nodes` that no
    /// live lease holds and whose start window has not ended. A task is claimed by one caller
    /// however many claim at once (rows another claimer holds are skipped).
    fn claim_tasks(
        &mut self,
        controller: &str,
        nodes: &[String],
        lease_ms: i64,
    ) -> Result<Vec<ClaimedTask>, StoreError> {
        let _ = (controller, nodes, lease_ms);
        Err(StoreError::NotShared("claiming tasks"))
    }

    /// Extends the live leases `controller` holds on the open tasks of `nodes` (those whose
    /// connection it still holds) by `lease_ms` from now; returns how many. A lease that
    /// lapsed or was released is not renewed: its task must be claimed (and sent) again.
    fn renew_leases(
        &mut self,
        controller: &str,
        nodes: &[String],
        lease_ms: i64,
    ) -> Result<usize, StoreError> {
        let _ = (controller, nodes, lease_ms);
        Err(StoreError::NotShared("renewing leases"))
    }

    /// Ends at once the leases `controller` holds on `node`'s open tasks (its connection here
    /// ended), so the controller it reconnects to claims them without waiting; announced.
    fn release_tasks(&mut self, controller: &str, node: &str) -> Result<usize, StoreError> {
        let _ = (controller, node);
        Err(StoreError::NotShared("releasing tasks"))
    }

    /// Stores the result of routed task `id` from `node` and announces it to the coordinator,
    /// in one transaction that holds the task's row; see [`RoutedClose`].
    fn close_routed(
        &mut self,
        id: &str,
        node: &str,
        result: &str,
    ) -> Result<RoutedClose, StoreError> {
        let _ = (id, node, result);
        Err(StoreError::NotShared("storing a routed result"))
    }

    /// What routed task `id`'s row says now.
    fn routed_state(&self, id: &str) -> Result<RoutedState, StoreError> {
        let _ = id;
        Err(StoreError::NotShared("reading a routed task"))
    }

    /// The coordinator gives up waiting for task `id`: its result, when it was stored
    /// meanwhile, or `None`, and then the task is marked abandoned (a result that comes later
    /// is recorded as late), in one transaction that holds the row.
    fn abandon_task(&mut self, id: &str) -> Result<Option<String>, StoreError> {
        let _ = id;
        Err(StoreError::NotShared("abandoning a task"))
    }

    /// Forgets task `id` if no controller ever claimed it (its node is connected to none);
    /// true when it did.
    fn withdraw_unclaimed(&mut self, id: &str) -> Result<bool, StoreError> {
        let _ = id;
        Err(StoreError::NotShared("withdrawing a task"))
    }

    /// Records as interrupted, once across all controllers, each run still `running` whose
    /// coordinator wrote no heartbeat for `grace_ms` (or names none): in one transaction per
    /// run that holds its row, its open tasks are abandoned, `build` makes its record from the
    /// results that arrived, and the record replaces it. Returns the runs recorded.
    fn recover_orphaned_runs(
        &mut self,
        grace_ms: i64,
        build: &mut BuildInterrupted<'_>,
    ) -> Result<Vec<String>, StoreError> {
        let _ = (grace_ms, build);
        Err(StoreError::NotShared("recovering orphaned runs"))
    }

    /// Opens a [`StoreListener`] (a connection of its own).
    fn listen(&self) -> Result<Box<dyn StoreListener>, StoreError> {
        Err(StoreError::NotShared("listening for routed work"))
    }
}

/// A connection of its own that writes the task ledger: every write waiting when a batch
/// starts goes into one transaction, so one commit makes many tasks and results durable.
pub trait TaskLedger: Send {
    /// Applies `ops` in one transaction: per op, whether it took effect (an issue of an id
    /// that exists already is an error of its own, and the others still apply); `Err` when
    /// the transaction failed, and then none did.
    fn apply(&mut self, ops: &[&LedgerOp]) -> Result<Vec<Result<bool, String>>, StoreError>;
}
