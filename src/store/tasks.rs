//! The controller's ledger of the tasks it issued and of its runs in progress.
//!
//! A run is stored as `running` before its first task is sent, and each task before it is
//! sent; an agent's result is stored (committed) before the agent is told it was received.
//! So when the controller dies mid-run, the next start finds the run and every result that
//! arrived ([`FleetStore::unfinished_runs`](crate::store::FleetStore::unfinished_runs)), and
//! an agent can deliver a result only for a task that was issued to it and is still open
//! ([`FleetStore::task_state`](crate::store::FleetStore::task_state)). This module is SQLite's
//! side of it; PostgreSQL's is in [`crate::store::postgres`].

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{RoutedTask, RunKind, RunRecord, RunStatus, StoreError, TaskLedger};

/// What the ledger says of a task id presented by a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Never issued to this node (unknown, or another node's).
    NotIssued,
    /// Issued to this node and waiting for its result.
    Open {
        /// The run it belongs to.
        run_id: String,
    },
    /// Its result was stored already: a re-delivery.
    Closed,
}

/// A task of an unfinished run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedTask {
    /// The task id.
    pub id: String,
    /// The node it was sent to.
    pub node: String,
    /// The stored result (wire JSON), if it arrived.
    pub result: Option<String>,
}

/// A run that was still `running` when its controller stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnfinishedRun {
    /// The run as begun (no results).
    pub run: RunRecord,
    /// Its tasks, in the order they were issued.
    pub tasks: Vec<IssuedTask>,
}

/// Stores a run as `running`, before any of its tasks is sent.
pub(super) fn begin_run(conn: &Connection, run: &RunRecord) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO runs (id, kind, started_at, finished_at, user, project, documents_digest, status)
         VALUES (?1, ?2, ?3, '', ?4, ?5, ?6, 'running')",
        params![
            run.id,
            run.kind.as_str(),
            run.started_at,
            run.user,
            run.project,
            run.documents_digest
        ],
    )?;
    Ok(())
}

/// What the ledger says of task `id` for `node`.
pub(super) fn task_state(conn: &Connection, id: &str, node: &str) -> Result<TaskState, StoreError> {
    let row: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT run_id, closed_at FROM tasks WHERE id = ?1 AND node = ?2",
            params![id, node],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    Ok(match row {
        None => TaskState::NotIssued,
        Some((_, Some(_))) => TaskState::Closed,
        Some((run_id, None)) => TaskState::Open { run_id },
    })
}

/// The runs still marked `running`, oldest first, with their tasks.
pub(super) fn unfinished_runs(conn: &Connection) -> Result<Vec<UnfinishedRun>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT id, kind, started_at, user, project, documents_digest FROM runs
         WHERE status = 'running' ORDER BY started_at, id",
    )?;
    let runs = statement
        .query_map([], |row| {
            Ok(RunRecord {
                id: row.get(0)?,
                kind: RunKind::parse(&row.get::<_, String>(1)?).unwrap_or(RunKind::Apply),
                started_at: row.get(2)?,
                finished_at: String::new(),
                user: row.get(3)?,
                project: row.get(4)?,
                documents_digest: row.get(5)?,
                results: Vec::new(),
                status: RunStatus::Running,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut tasks = conn
        .prepare("SELECT id, node, result FROM tasks WHERE run_id = ?1 ORDER BY issued_at, id")?;
    let mut out = Vec::new();
    for run in runs {
        let issued = tasks
            .query_map([&run.id], |row| {
                Ok(IssuedTask {
                    id: row.get(0)?,
                    node: row.get(1)?,
                    result: row.get(2)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        out.push(UnfinishedRun { run, tasks: issued });
    }
    Ok(out)
}

/// Drops the stored results of a run's closed tasks once they are used (recorded with the
/// run, or rendered as a plan, which is not stored); the tasks stay, so a re-delivery is
/// recognised.
pub(super) fn settle_tasks(conn: &Connection, run_id: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE tasks SET result = NULL WHERE run_id = ?1 AND closed_at IS NOT NULL",
        [run_id],
    )?;
    Ok(())
}

/// Forgets the closed tasks closed before `before` (RFC 3339 UTC).
pub(super) fn prune_tasks(conn: &Connection, before: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM tasks WHERE closed_at IS NOT NULL AND closed_at < ?1",
        [before],
    )?)
}

/// Whether the store holds a run with this id, in any state.
pub(super) fn has_run(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = conn
        .query_row("SELECT 1 FROM runs WHERE id = ?1", [id], |row| row.get(0))
        .optional()?;
    Ok(found.is_some())
}

/// How far a run is: its status and its tasks, in the order they were issued.
pub(super) fn run_progress(
    conn: &Connection,
    id: &str,
) -> Result<Option<crate::store::RunProgress>, StoreError> {
    let status: Option<String> = conn
        .query_row("SELECT status FROM runs WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .optional()?;
    let Some(status) = status else {
        return Ok(None);
    };
    let mut statement = conn.prepare(
        "SELECT node, issued_at, closed_at FROM tasks WHERE run_id = ?1 ORDER BY issued_at, id",
    )?;
    let tasks = statement
        .query_map([id], |row| {
            Ok(crate::store::TaskProgress {
                node: row.get(0)?,
                issued_at: row.get(1)?,
                closed_at: row.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(crate::store::RunProgress {
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Complete),
        tasks,
    }))
}

/// A write to the task ledger, batched by [`TaskLedger::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerOp {
    /// Stores a task as issued to a node, before it is sent.
    Issue {
        /// The task id.
        id: String,
        /// The node it goes to.
        node: String,
        /// Its run.
        run_id: String,
        /// RFC 3339 UTC.
        issued_at: String,
    },
    /// Forgets a task that was never sent (its node went offline); a closed one stays.
    Withdraw {
        /// The task id.
        id: String,
    },
    /// Stores a task's result and closes it; takes effect only for the node it was issued
    /// to, and only once.
    Close {
        /// The task id.
        id: String,
        /// The node that answered.
        node: String,
        /// The result (wire JSON).
        result: String,
        /// RFC 3339 UTC.
        at: String,
    },
    /// Stores a task routed through a shared store (see `FleetStore::route_task`), claimed at
    /// once by `held_by` or announced to the claimers; refused by a store that is not shared.
    Route {
        /// The task.
        task: RoutedTask,
        /// The controller that sends it down its session of the node at once, if any.
        held_by: Option<String>,
        /// How long the task may wait to start, in milliseconds.
        window_ms: i64,
        /// The claim's lease, in milliseconds.
        lease_ms: i64,
    },
    /// Stores a routed task's result while the task is open and still wanted, and announces
    /// it; false when nothing was stored (`FleetStore::close_routed` says why).
    Answer {
        /// The task id.
        id: String,
        /// The node that answered.
        node: String,
        /// The result (wire JSON).
        result: String,
        /// RFC 3339 UTC.
        at: String,
    },
}

/// SQLite's [`TaskLedger`]: a second connection to the store file, whose batches are one
/// immediate transaction each (one commit, one fsync, for many tasks and results). The store
/// must have been opened (and migrated) by
/// [`SqliteStore::open`](crate::store::sqlite::SqliteStore::open) first.
pub struct Ledger {
    conn: rusqlite::Connection,
}

impl Ledger {
    /// Opens the ledger's connection to the store at `path`.
    pub fn open(path: &std::path::Path) -> Result<Ledger, StoreError> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Ledger { conn })
    }
}

impl TaskLedger for Ledger {
    fn apply(&mut self, ops: &[&LedgerOp]) -> Result<Vec<Result<bool, String>>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let done = match op {
                LedgerOp::Issue {
                    id,
                    node,
                    run_id,
                    issued_at,
                } => tx
                    .prepare_cached(
                        "INSERT INTO tasks (id, node, run_id, issued_at) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![id, node, run_id, issued_at]),
                LedgerOp::Withdraw { id } => tx
                    .prepare_cached(
                        "DELETE FROM tasks WHERE id = ?1 AND closed_at IS NULL AND result IS NULL",
                    )?
                    .execute([id]),
                LedgerOp::Close {
                    id,
                    node,
                    result,
                    at,
                } => tx
                    .prepare_cached(
                        "UPDATE tasks SET closed_at = ?1, result = ?2
                         WHERE id = ?3 AND node = ?4 AND closed_at IS NULL",
                    )?
                    .execute(params![at, result, id, node]),
                LedgerOp::Route { .. } | LedgerOp::Answer { .. } => {
                    out.push(Err(StoreError::NotShared("routing a task").to_string()));
                    continue;
                }
            };
            out.push(done.map(|n| n == 1).map_err(|err| err.to_string()));
        }
        tx.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{FleetStore, Store};

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("steward.db")).unwrap();
        (dir, store)
    }

    fn run(id: &str) -> RunRecord {
        RunRecord {
            id: id.into(),
            kind: RunKind::Apply,
            started_at: "2026-12-02T10:00:00.000Z".into(),
            finished_at: "2026-12-02T10:00:01.000Z".into(),
            user: "u".into(),
            project: "p".into(),
            documents_digest: "d".into(),
            results: Vec::new(),
            status: RunStatus::Complete,
        }
    }

    fn issue(id: &str, node: &str) -> LedgerOp {
        LedgerOp::Issue {
            id: id.into(),
            node: node.into(),
            run_id: "r1".into(),
            issued_at: id.into(),
        }
    }

    fn close(id: &str, node: &str, result: &str) -> LedgerOp {
        LedgerOp::Close {
            id: id.into(),
            node: node.into(),
            result: result.into(),
            at: "2026-12-02T10:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_result_is_accepted_once_and_only_from_the_node_it_was_issued_to() {
        let (dir, mut store) = store();
        store.begin_run(&run("r1")).unwrap();
        let mut ledger = Ledger::open(&dir.path().join("steward.db")).unwrap();
        ledger.apply(&[&issue("t1", "web-1")]).unwrap();
        assert_eq!(
            store.task_state("t1", "web-2").unwrap(),
            TaskState::NotIssued
        );
        assert_eq!(
            store.task_state("t9", "web-1").unwrap(),
            TaskState::NotIssued
        );
        assert_eq!(
            ledger.apply(&[&close("t1", "web-2", "{}")]).unwrap(),
            vec![Ok(false)]
        );
        assert_eq!(
            store.task_state("t1", "web-1").unwrap(),
            TaskState::Open {
                run_id: "r1".into()
            }
        );
        let twice = close("t1", "web-1", "{}");
        assert_eq!(
            ledger.apply(&[&twice, &twice]).unwrap(),
            vec![Ok(true), Ok(false)]
        );
        assert_eq!(store.task_state("t1", "web-1").unwrap(), TaskState::Closed);
    }

    #[test]
    fn the_ledger_writes_a_batch_in_one_transaction() {
        let (dir, mut store) = store();
        store.begin_run(&run("r1")).unwrap();
        let mut ledger = Ledger::open(&dir.path().join("steward.db")).unwrap();
        let (t1, t2, c1) = (
            issue("t1", "web-1"),
            issue("t2", "web-1"),
            close("t1", "web-1", "{}"),
        );
        let done = ledger.apply(&[&t1, &t2, &t1, &c1]).unwrap();
        assert_eq!(done[0], Ok(true));
        assert_eq!(done[1], Ok(true));
        assert!(done[2].is_err(), "an id is issued once");
        assert_eq!(done[3], Ok(true));
        let withdraw = |id: &str| LedgerOp::Withdraw { id: id.into() };
        let done = ledger.apply(&[&withdraw("t1"), &withdraw("t2")]).unwrap();
        assert_eq!(done, vec![Ok(false), Ok(true)], "a closed task stays");
        assert_eq!(store.task_state("t1", "web-1").unwrap(), TaskState::Closed);
        assert_eq!(
            store.task_state("t2", "web-1").unwrap(),
            TaskState::NotIssued
        );
    }

    #[test]
    fn settled_and_old_closed_tasks_are_forgotten_but_open_ones_stay() {
        let (dir, mut store) = store();
        let mut ledger = Ledger::open(&dir.path().join("steward.db")).unwrap();
        let ops = [
            issue("t1", "web-1"),
            issue("t2", "web-1"),
            close("t1", "web-1", "{}"),
        ];
        ledger.apply(&ops.iter().collect::<Vec<_>>()).unwrap();
        store.settle_plan_tasks("r1").unwrap();
        assert!(
            store.unfinished_runs().unwrap().is_empty(),
            "a plan is no run"
        );
        assert_eq!(store.prune_tasks("2026-12-02T09:00:00.000Z").unwrap(), 0);
        assert_eq!(store.prune_tasks("2026-12-03T00:00:00.000Z").unwrap(), 1);
        assert_eq!(
            store.task_state("t1", "web-1").unwrap(),
            TaskState::NotIssued
        );
        assert!(matches!(
            store.task_state("t2", "web-1").unwrap(),
            TaskState::Open { .. }
        ));
    }

    #[test]
    fn a_begun_run_is_unfinished_until_recorded_whole() {
        let (dir, mut store) = store();
        store.begin_run(&run("r1")).unwrap();
        let mut ledger = Ledger::open(&dir.path().join("steward.db")).unwrap();
        let ops = [
            issue("t1", "web-1"),
            issue("t2", "web-2"),
            close("t1", "web-1", "{\"x\":1}"),
        ];
        ledger.apply(&ops.iter().collect::<Vec<_>>()).unwrap();
        let unfinished = store.unfinished_runs().unwrap();
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].run.id, "r1");
        assert_eq!(unfinished[0].tasks[0].result.as_deref(), Some("{\"x\":1}"));
        assert_eq!(unfinished[0].tasks[1].result, None);
        store.record_run(&run("r1")).unwrap();
        assert!(store.unfinished_runs().unwrap().is_empty());
        assert_eq!(store.run(Some("r1")).unwrap().status, RunStatus::Complete);
        // The stored result went with the record; the closed task is still known.
        assert_eq!(store.task_state("t1", "web-1").unwrap(), TaskState::Closed);
    }
}
