//! Work routing between the controllers of one database (issue 16): routed tasks, their
//! claims and leases, controllers' heartbeats, orphaned runs, and the listener.
//!
//! Every decision is made by a row: a task is claimed under `FOR UPDATE SKIP LOCKED` (a row
//! another claimer holds is skipped; one it claimed and committed no longer matches), its
//! result is stored and its abandonment marked each while holding its row, and an orphaned run
//! is recovered while holding its row and the recording lock. Times are the database's clock
//! in milliseconds ([`NOW_MS`]), so the controllers' clocks need not agree.
//!
//! An abandoned task keeps its row with `payload` NULL: no controller claims it again, and a
//! result that comes for it is recorded as late by the controller that receives it.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls, Transaction};

use crate::store::postgres::{LOCK_SPACE, RECORD_LOCK, describe, error_text, record_in};
use crate::store::{
    BuildInterrupted, ClaimedTask, IssuedTask, Notice, RoutedClose, RoutedState, RoutedTask,
    StoreError, StoreListener, UnfinishedRun,
};

/// The database's clock, in milliseconds since the epoch.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// The channel routed tasks are announced on (the payload: node names).
const TASKS_CHANNEL: &str = "steward_tasks";
/// The channel stored results are announced on (the payload: task ids).
const RESULTS_CHANNEL: &str = "steward_results";

/// The statement that stores a routed task: `$1` id, `$2` node, `$3` run, `$4` issued at, `$5`
/// payload, `$6` its start window and `$8` the lease (milliseconds), `$7` the controller that
/// claims it at once (NULL: announced, for the claimers). No row when the id was issued already.
pub(super) fn insert_routed_sql() -> String {
    format!(
        "INSERT INTO tasks (id, node, run_id, issued_at, payload, expires_ms, claimed_by, lease_ms)
         VALUES ($1, $2, $3, $4, $5, {NOW_MS} + $6, $7,
                 CASE WHEN $7::text IS NULL THEN NULL ELSE {NOW_MS} + $8 END)
         ON CONFLICT (id) DO NOTHING"
    )
}

/// The statement that stores a routed task's result while the task is open and still wanted
/// (not abandoned): `$1` id, `$2` node, `$3` at, `$4` result. One row when it was stored.
pub(super) const STORE_RESULT: &str = "UPDATE tasks SET closed_at = $3, result = $4
     WHERE id = $1 AND node = $2 AND closed_at IS NULL AND payload IS NOT NULL";

/// Stores a routed task (see `FleetStore::route_task`).
pub(super) fn route_task(
    client: &mut Client,
    task: &RoutedTask,
    held_by: Option<&str>,
    window_ms: i64,
    lease_ms: i64,
) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    let n = tx.execute(
        &insert_routed_sql(),
        &[
            &task.id,
            &task.node,
            &task.run_id,
            &task.issued_at,
            &task.payload,
            &window_ms,
            &held_by,
            &lease_ms,
        ],
    )?;
    if n != 1 {
        return Err(StoreError::Postgres(format!(
            "task {} was issued already",
            task.id
        )));
    }
    if held_by.is_none() {
        announce_tasks(&mut tx, &[task.node.as_str()])?;
    }
    tx.commit()?;
    Ok(())
}

/// Announces that tasks were routed to (or released from) `nodes`, when the transaction
/// commits.
pub(super) fn announce_tasks(tx: &mut Transaction<'_>, nodes: &[&str]) -> Result<(), StoreError> {
    announce(tx, TASKS_CHANNEL, nodes)
}

/// Announces that the results of tasks `ids` were stored, when the transaction commits.
pub(super) fn announce_results(tx: &mut Transaction<'_>, ids: &[&str]) -> Result<(), StoreError> {
    announce(tx, RESULTS_CHANNEL, ids)
}

/// The most a notice's payload carries (the server's limit is 8,000 bytes).
const NOTICE_BYTES: usize = 7_000;

/// `NOTIFY channel` with `items` separated by spaces (node names and task ids have none), as
/// few notices as their size allows: a batch of a thousand results is a handful of notices.
fn announce(tx: &mut Transaction<'_>, channel: &str, items: &[&str]) -> Result<(), StoreError> {
    let mut payload = String::new();
    for item in items {
        if !payload.is_empty() && payload.len() + 1 + item.len() > NOTICE_BYTES {
            notify(tx, channel, &payload)?;
            payload.clear();
        }
        if !payload.is_empty() {
            payload.push(' ');
        }
        payload.push_str(item);
    }
    if !payload.is_empty() {
        notify(tx, channel, &payload)?;
    }
    Ok(())
}

/// `NOTIFY channel, payload`, delivered when the transaction commits.
fn notify(tx: &mut Transaction<'_>, channel: &str, payload: &str) -> Result<(), StoreError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])?;
    Ok(())
}

/// Claims the claimable tasks of `nodes` for `controller`.
pub(super) fn claim_tasks(
    client: &mut Client,
    controller: &str,
    nodes: &[String],
    lease_ms: i64,
) -> Result<Vec<ClaimedTask>, StoreError> {
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client.query(
        &format!(
            "UPDATE tasks SET claimed_by = $1, lease_ms = {NOW_MS} + $3
             WHERE id IN (
                 SELECT id FROM tasks
                 WHERE node = ANY($2) AND closed_at IS NULL AND payload IS NOT NULL
                   AND expires_ms > {NOW_MS}
                   AND (claimed_by IS NULL OR lease_ms < {NOW_MS})
                 ORDER BY issued_at, id
                 FOR UPDATE SKIP LOCKED)
             RETURNING id, node, payload"
        ),
        &[&controller, &nodes, &lease_ms],
    )?;
    Ok(rows
        .iter()
        .map(|row| {
            Ok(ClaimedTask {
                id: row.try_get(0)?,
                node: row.try_get(1)?,
                payload: row.try_get(2)?,
            })
        })
        .collect::<Result<_, postgres::Error>>()?)
}

/// Renews `controller`'s live leases on the open tasks of `nodes`. A lapsed (or released)
/// lease is not renewed: its task is claimed again, and so sent again.
pub(super) fn renew_leases(
    client: &mut Client,
    controller: &str,
    nodes: &[String],
    lease_ms: i64,
) -> Result<usize, StoreError> {
    if nodes.is_empty() {
        return Ok(0);
    }
    let n = client.execute(
        &format!(
            "UPDATE tasks SET lease_ms = {NOW_MS} + $3
             WHERE claimed_by = $1 AND node = ANY($2) AND closed_at IS NULL
               AND payload IS NOT NULL AND lease_ms >= {NOW_MS}"
        ),
        &[&controller, &nodes, &lease_ms],
    )?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Ends `controller`'s leases on `node`'s open tasks, and announces them.
pub(super) fn release_tasks(
    client: &mut Client,
    controller: &str,
    node: &str,
) -> Result<usize, StoreError> {
    let mut tx = client.transaction()?;
    // The claim stays named (the task was sent once), with a lease that has lapsed.
    let n = tx.execute(
        "UPDATE tasks SET lease_ms = 0
         WHERE claimed_by = $1 AND node = $2 AND closed_at IS NULL AND payload IS NOT NULL",
        &[&controller, &node],
    )?;
    if n > 0 {
        announce_tasks(&mut tx, &[node])?;
    }
    tx.commit()?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Stores a routed task's result (see `FleetStore::close_routed`).
pub(super) fn close_routed(
    client: &mut Client,
    id: &str,
    node: &str,
    result: &str,
    at: &str,
) -> Result<RoutedClose, StoreError> {
    let mut tx = client.transaction()?;
    if tx.execute(STORE_RESULT, &[&id, &node, &at, &result])? == 1 {
        announce_results(&mut tx, &[id])?;
        tx.commit()?;
        return Ok(RoutedClose::Stored);
    }
    why_not_stored(&mut tx, id, node)
}

/// Why [`STORE_RESULT`] stored no result for task `id` of `node`.
pub(super) fn why_not_stored(
    tx: &mut Transaction<'_>,
    id: &str,
    node: &str,
) -> Result<RoutedClose, StoreError> {
    let row = tx.query_opt(
        "SELECT closed_at IS NOT NULL, payload IS NULL FROM tasks WHERE id = $1 AND node = $2",
        &[&id, &node],
    )?;
    let Some(row) = row else {
        return Ok(RoutedClose::NotIssued);
    };
    let (closed, abandoned): (bool, bool) = (row.try_get(0)?, row.try_get(1)?);
    if closed {
        Ok(RoutedClose::Closed)
    } else if abandoned {
        Ok(RoutedClose::Abandoned)
    } else {
        // Open and wanted, yet the update matched nothing: the row changed in between. The
        // result is not taken (so not acknowledged); the agent sends it again.
        Err(StoreError::Postgres(format!(
            "task {id} changed while its result was stored"
        )))
    }
}

/// What routed task `id`'s row says.
pub(super) fn routed_state(client: &mut Client, id: &str) -> Result<RoutedState, StoreError> {
    let row = client.query_opt(
        &format!(
            "SELECT closed_at IS NOT NULL, result, payload IS NULL, claimed_by IS NOT NULL,
                    coalesce(lease_ms, 0) >= {NOW_MS}, coalesce(expires_ms, 0) <= {NOW_MS}
             FROM tasks WHERE id = $1"
        ),
        &[&id],
    )?;
    let Some(row) = row else {
        return Ok(RoutedState::Gone);
    };
    let closed: bool = row.try_get(0)?;
    let result: Option<String> = row.try_get(1)?;
    let abandoned: bool = row.try_get(2)?;
    Ok(match (closed, result) {
        (true, Some(result)) => RoutedState::Answered(result),
        (true, None) => RoutedState::Gone,
        (false, _) if abandoned => RoutedState::Gone,
        (false, _) => {
            let (claimed, live, expired): (bool, bool, bool) =
                (row.try_get(3)?, row.try_get(4)?, row.try_get(5)?);
            if claimed && live {
                RoutedState::Held
            } else {
                RoutedState::Waiting { claimed, expired }
            }
        }
    })
}

/// The coordinator gives up on task `id` (see `FleetStore::abandon_task`).
pub(super) fn abandon_task(client: &mut Client, id: &str) -> Result<Option<String>, StoreError> {
    let mut tx = client.transaction()?;
    let row = tx.query_opt(
        "SELECT closed_at IS NOT NULL, result FROM tasks WHERE id = $1 FOR UPDATE",
        &[&id],
    )?;
    let answer = match row {
        Some(row) if row.try_get::<_, bool>(0)? => row.try_get(1)?,
        Some(_) => {
            tx.execute(
                "UPDATE tasks SET payload = NULL WHERE id = $1 AND closed_at IS NULL",
                &[&id],
            )?;
            None
        }
        None => None,
    };
    tx.commit()?;
    Ok(answer)
}

/// Forgets task `id` when it was never claimed.
pub(super) fn withdraw_unclaimed(client: &mut Client, id: &str) -> Result<bool, StoreError> {
    let n = client.execute(
        "DELETE FROM tasks WHERE id = $1 AND claimed_by IS NULL AND closed_at IS NULL",
        &[&id],
    )?;
    Ok(n == 1)
}

/// Records the orphaned runs as interrupted (see `FleetStore::recover_orphaned_runs`).
pub(super) fn recover_orphaned_runs(
    client: &mut Client,
    grace_ms: i64,
    build: &mut BuildInterrupted<'_>,
) -> Result<Vec<String>, StoreError> {
    let mut tx = client.transaction()?;
    // The recording lock first (as `record_run` takes it), then the runs' rows: two
    // controllers recovering at once take turns, and the second finds nothing left.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_SPACE, &RECORD_LOCK],
    )?;
    let runs = tx.query(
        &format!(
            "SELECT r.id, r.kind, r.started_at, r.\"user\", r.project, r.documents_digest
             FROM runs r
             WHERE r.status = 'running'
               AND NOT EXISTS (SELECT 1 FROM controllers c
                               WHERE c.id = r.coordinator AND c.heartbeat_ms >= {NOW_MS} - $1)
             ORDER BY r.started_at, r.id
             FOR UPDATE OF r"
        ),
        &[&grace_ms],
    )?;
    let mut recovered = Vec::with_capacity(runs.len());
    for row in &runs {
        let run = super::running_run(row)?;
        // First abandon what is still open, then read what arrived: a result stored after
        // this sees its task abandoned and is recorded as late.
        tx.execute(
            "UPDATE tasks SET payload = NULL WHERE run_id = $1 AND closed_at IS NULL",
            &[&run.id],
        )?;
        let tasks = tx
            .query(
                "SELECT id, node, result FROM tasks WHERE run_id = $1 ORDER BY issued_at, id",
                &[&run.id],
            )?
            .iter()
            .map(|row| {
                Ok(IssuedTask {
                    id: row.try_get(0)?,
                    node: row.try_get(1)?,
                    result: row.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, postgres::Error>>()?;
        let id = run.id.clone();
        let record = build(UnfinishedRun { run, tasks });
        record_in(&mut tx, &record)?;
        recovered.push(id);
    }
    tx.commit()?;
    Ok(recovered)
}

/// PostgreSQL's [`StoreListener`]: a connection of its own, opened again after it failed.
pub(super) struct PgListener {
    config: Config,
    client: Option<Client>,
}

impl PgListener {
    /// A listener that connects on first use.
    pub(super) fn new(config: Config) -> PgListener {
        PgListener {
            config,
            client: None,
        }
    }

    /// The connection, listening; opened when there is none.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        let client = match self.client.take() {
            Some(client) if !client.is_closed() => client,
            _ => {
                let mut client =
                    self.config
                        .connect(NoTls)
                        .map_err(|err| StoreError::Database {
                            database: describe(&self.config),
                            reason: error_text(&err),
                        })?;
                client
                    .batch_execute(&format!("LISTEN {TASKS_CHANNEL}; LISTEN {RESULTS_CHANNEL}"))?;
                client
            }
        };
        Ok(self.client.insert(client))
    }

    /// Drops the connection after `err`, so the next call connects again.
    fn failed(&mut self, err: StoreError) -> StoreError {
        self.client = None;
        err
    }
}

impl StoreListener for PgListener {
    fn wait(&mut self, timeout: Duration) -> Result<Vec<Notice>, StoreError> {
        let heard = {
            let client = self.client()?;
            notices(client, timeout)
        };
        heard.map_err(|err| self.failed(StoreError::from(err)))
    }

    fn heartbeat(&mut self, controller: &str) -> Result<(), StoreError> {
        let client = self.client()?;
        let done = client.execute(
            &format!(
                "INSERT INTO controllers (id, started_ms, heartbeat_ms)
                 VALUES ($1, {NOW_MS}, {NOW_MS})
                 ON CONFLICT (id) DO UPDATE SET heartbeat_ms = EXCLUDED.heartbeat_ms"
            ),
            &[&controller],
        );
        match done {
            Ok(_) => Ok(()),
            Err(err) => {
                let err = StoreError::from(err);
                Err(self.failed(err))
            }
        }
    }
}

/// The notices that arrive within `timeout`, with whatever else came at once.
fn notices(client: &mut Client, timeout: Duration) -> Result<Vec<Notice>, postgres::Error> {
    let mut out = Vec::new();
    // A notice names one or more nodes or task ids, separated by spaces (see `announce`).
    let mut push = |n: postgres::Notification| match n.channel() {
        TASKS_CHANNEL => out.extend(n.payload().split(' ').map(|node| Notice::Task {
            node: node.to_string(),
        })),
        RESULTS_CHANNEL => out.extend(
            n.payload()
                .split(' ')
                .map(|id| Notice::Result { id: id.to_string() }),
        ),
        _ => {}
    };
    let mut heard = client.notifications();
    match heard.timeout_iter(timeout).next()? {
        Some(n) => push(n),
        None => return Ok(out),
    }
    let mut more = heard.iter();
    while let Some(n) = more.next()? {
        push(n);
    }
    Ok(out)
}
