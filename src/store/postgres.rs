//! The shared store: PostgreSQL, for controllers that share one database (issue 16).
//!
//! It keeps what [`SqliteStore`](crate::store::sqlite::SqliteStore) keeps, with the same
//! semantics (the conformance suite, tests/it/store_conformance.rs, runs unchanged against
//! both). The client is the `postgres` crate's: pure Rust, no libpq, and no TLS yet, so the
//! server is reached in the clear (loopback or a trusted network only, for now).
//!
//! The schema lives in the connection's current schema (`search_path`). Its version is the one
//! row of `steward_store`; a database that has tables but no `steward_store` is another
//! program's and is refused, one written by a newer steward is refused rather than misread,
//! and an older one is migrated in a transaction.
//!
//! The client blocks on a runtime of its own: call it from a blocking thread, never from
//! inside an async task.
//!
//! The controller's tables ([`FleetStore`](crate::store::FleetStore)) are in the `fleet`
//! submodule; the task ledger there is a second client, one transaction per batch.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard, PoisonError};

mod fleet;
mod routing;

use postgres::config::Host;
use postgres::{Client, Config, GenericClient, NoTls, Row, Transaction};

use crate::store::findings::{FindingOp, finding_ops};
use crate::store::migrations::{MIGRATIONS, STORE_VERSION};
use crate::store::{
    Copied, Finding, FindingKind, ResultChange, ResultOutcome, ResultRecord, RunKind, RunRecord,
    RunStatus, RunSummary, Severity, Store, StoreError,
};

/// The first key of steward's advisory locks ("STWD", as SQLite's application id).
pub(super) const LOCK_SPACE: i32 = 0x5354_5744;
/// The second key of the lock that migrations hold.
const MIGRATE_LOCK: i32 = 0;
/// The second key of the lock that `record_run` holds.
pub(super) const RECORD_LOCK: i32 = 1;

/// How long a connection attempt waits for the server, unless the URL says otherwise: a host
/// that drops packets would otherwise hold it for the system's TCP timeout (minutes).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The columns [`finding_from_row`] reads.
const FINDING_COLUMNS: &str = "id, node, resource, kind, open, severity, first_seen, last_seen, \
                               count, last_run, message, resolution, association";

/// A steward store in a PostgreSQL database.
pub struct PostgresStore {
    /// The connection. `Store` reads through `&self` and the client queries through `&mut`:
    /// the lock is never contended (one caller at a time holds the store).
    client: Mutex<Client>,
    /// How it connected, for the task ledger's second connection.
    config: Config,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, or
    /// `key=value` pairs), then checks and migrates its store, creating it when the database
    /// (its current schema) is empty.
    pub fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let config = Config::from_str(url).map_err(|err| StoreError::Database {
            database: "the PostgreSQL URL".into(),
            reason: error_text(&err),
        })?;
        PostgresStore::open(&config)
    }

    /// [`PostgresStore::connect`] with a parsed configuration. A connection attempt that
    /// names no `connect_timeout` gives up after [`CONNECT_TIMEOUT`].
    pub fn open(config: &Config) -> Result<PostgresStore, StoreError> {
        let shown = describe(config);
        let mut config = config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let mut client = config.connect(NoTls).map_err(|err| StoreError::Database {
            database: shown.clone(),
            reason: error_text(&err),
        })?;
        migrate(&mut client, &shown)?;
        Ok(PostgresStore {
            client: Mutex::new(client),
            config,
        })
    }

    /// Builds a store at an older schema version in the empty database of `config`, for
    /// migration tests.
    #[doc(hidden)]
    pub fn create_at_version(config: &Config, version: usize) -> Result<(), StoreError> {
        let mut client = config.connect(NoTls)?;
        let mut tx = client.transaction()?;
        tx.batch_execute("CREATE TABLE steward_store (version BIGINT NOT NULL)")?;
        tx.execute("INSERT INTO steward_store (version) VALUES (0)", &[])?;
        for migration in MIGRATIONS.iter().take(version) {
            tx.batch_execute(migration.postgres)?;
            tx.execute(
                "UPDATE steward_store SET version = $1",
                &[&migration.version],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The connection, for a read (a new one when the server closed it).
    fn client(&self) -> MutexGuard<'_, Client> {
        let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        reconnect_if_closed(&mut client, &self.config);
        client
    }

    /// The connection, for a write (a new one when the server closed it).
    fn client_mut(&mut self) -> &mut Client {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        reconnect_if_closed(client, &self.config);
        client
    }
}

/// Replaces a connection the server closed (it restarted, or ended the session) before it is
/// used. The client learns of the closing only when calls fail, so after a restart a call or
/// two fail (the server's farewell, then the socket's reset) and the next has a new connection; while the server is still away the closed one
/// stays, and each call fails with the client's error, which says so.
pub(super) fn reconnect_if_closed(client: &mut Client, config: &Config) -> bool {
    if !client.is_closed() {
        return false;
    }
    match config.connect(NoTls) {
        Ok(fresh) => {
            tracing::info!("{}: connected again", describe(config));
            *client = fresh;
            true
        }
        Err(err) => {
            tracing::warn!(
                "{}: cannot connect again: {}",
                describe(config),
                error_text(&err)
            );
            false
        }
    }
}

/// The database as errors name it, without its password: `PostgreSQL database NAME on HOST:PORT`.
pub(super) fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(dir)) => dir.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let name = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("PostgreSQL database `{name}` on {host}:{port}")
}

/// Checks the store in the connection's schema and brings it to [`STORE_VERSION`], in one
/// transaction under steward's migration lock, so two controllers starting at once migrate
/// it once. Nothing is written to a foreign database or to a newer store.
fn migrate(client: &mut Client, shown: &str) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_SPACE, &MIGRATE_LOCK],
    )?;
    let marked: bool = tx
        .query_one("SELECT to_regclass('steward_store') IS NOT NULL", &[])?
        .try_get(0)?;
    if !marked {
        let n_tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
                &[],
            )?
            .try_get(0)?;
        if n_tables > 0 {
            return Err(StoreError::Foreign {
                path: shown.to_string(),
                reason: format!("{n_tables} tables and no `steward_store` table"),
            });
        }
        tx.batch_execute("CREATE TABLE steward_store (version BIGINT NOT NULL)")?;
        tx.execute("INSERT INTO steward_store (version) VALUES (0)", &[])?;
    }
    let version: i64 = tx
        .query_one("SELECT version FROM steward_store", &[])?
        .try_get(0)?;
    if version > STORE_VERSION {
        return Err(StoreError::TooNew {
            path: shown.to_string(),
            found: version,
            supported: STORE_VERSION,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > version) {
        tx.batch_execute(migration.postgres)?;
        tx.execute(
            "UPDATE steward_store SET version = $1",
            &[&migration.version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// A client error with its causes, `: `-separated: the client's own text (`db error`,
/// `error connecting to server`) says nothing of what the server or the socket said.
pub(super) fn error_text(err: &postgres::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether `err` says the connection is gone or the server is going away, not that a
/// statement failed: a closed connection, an I/O error, or the server's connection-exception
/// (`08`) and operator-intervention (`57P`) classes.
pub(super) fn is_disconnection(err: &postgres::Error) -> bool {
    if err.is_closed() {
        return true;
    }
    if let Some(code) = err.code() {
        let code = code.code();
        return code.starts_with("08") || code.starts_with("57P");
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// A count or size as PostgreSQL's BIGINT.
fn big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Inserts a run's results in one statement (one round trip, whatever their number).
fn insert_results(tx: &mut Transaction<'_>, run: &RunRecord) -> Result<(), StoreError> {
    let results = &run.results;
    let position: Vec<i64> = (0..results.len()).map(|p| big(p as u64)).collect();
    let node: Vec<&str> = results.iter().map(|r| r.node.as_str()).collect();
    let resource: Vec<&str> = results.iter().map(|r| r.resource.as_str()).collect();
    let outcome: Vec<&str> = results.iter().map(|r| r.outcome.as_str()).collect();
    let file: Vec<Option<&str>> = results.iter().map(|r| r.file.as_deref()).collect();
    let line: Vec<Option<i64>> = results.iter().map(|r| r.line.map(i64::from)).collect();
    let column: Vec<Option<i64>> = results.iter().map(|r| r.column.map(i64::from)).collect();
    let diff: Vec<Option<&str>> = results.iter().map(|r| r.diff.as_deref()).collect();
    let message: Vec<Option<&str>> = results.iter().map(|r| r.message.as_deref()).collect();
    let duration: Vec<i64> = results.iter().map(|r| big(r.duration_ms)).collect();
    let association: Vec<Option<&str>> = results.iter().map(|r| r.association.as_deref()).collect();
    let severity: Vec<&str> = results.iter().map(|r| r.severity.as_str()).collect();
    fn change(r: &ResultRecord) -> Option<&ResultChange> {
        r.change.as_ref()
    }
    let action: Vec<Option<&str>> = results
        .iter()
        .map(|r| change(r).map(|c| c.action.as_str()))
        .collect();
    let done: Vec<Option<&str>> = results
        .iter()
        .map(|r| change(r).and_then(|c| c.done.as_deref()))
        .collect();
    let reason: Vec<Option<&str>> = results
        .iter()
        .map(|r| change(r).and_then(|c| c.reason.as_deref()))
        .collect();
    let cut: Vec<i64> = results
        .iter()
        .map(|r| change(r).map_or(0, |c| big(c.n_cut_bytes)))
        .collect();
    tx.execute(
        "INSERT INTO results (run_id, position, node, resource, outcome, file, line, column_, diff,
                              message, duration_ms, association, severity, action, done, reason,
                              diff_cut_bytes)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                                  $7::bigint[], $8::bigint[], $9::text[], $10::text[],
                                  $11::bigint[], $12::text[], $13::text[], $14::text[],
                                  $15::text[], $16::text[], $17::bigint[])",
        &[
            &run.id,
            &position,
            &node,
            &resource,
            &outcome,
            &file,
            &line,
            &column,
            &diff,
            &message,
            &duration,
            &association,
            &severity,
            &action,
            &done,
            &reason,
            &cut,
        ],
    )?;
    Ok(())
}

/// Bumps the open finding of `(node, resource, kind)` with this run, or opens one; `true`
/// when it opened one.
fn open_or_bump(
    tx: &mut Transaction<'_>,
    run: &RunRecord,
    (node, resource, kind): (&str, &str, FindingKind),
    severity: Severity,
    message: &str,
    association: Option<&str>,
) -> Result<bool, StoreError> {
    let updated = tx.execute(
        "UPDATE findings SET last_seen = $1, count = count + 1, last_run = $2, message = $3,
                severity = $4, association = $8
         WHERE node = $5 AND resource = $6 AND kind = $7 AND open = 1",
        &[
            &run.finished_at,
            &run.id,
            &message,
            &severity.as_str(),
            &node,
            &resource,
            &kind.as_str(),
            &association,
        ],
    )?;
    if updated > 0 {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO findings (node, resource, kind, open, severity, first_seen, last_seen, count,
                               last_run, message, association)
         VALUES ($1, $2, $3, 1, $4, $5, $5, 1, $6, $7, $8)",
        &[
            &node,
            &resource,
            &kind.as_str(),
            &severity.as_str(),
            &run.finished_at,
            &run.id,
            &message,
            &association,
        ],
    )?;
    Ok(true)
}

/// The columns [`summary_from_row`] reads, over `runs r` and `results x` grouped by run.
const SUMMARY_COLUMNS: &str = "r.id, r.kind, r.started_at, r.\"user\",
    count(*) FILTER (WHERE x.outcome = 'unchanged'),
    count(*) FILTER (WHERE x.outcome IN ('changed', 'succeeded')),
    count(*) FILTER (WHERE x.outcome = 'drifted'),
    count(*) FILTER (WHERE x.outcome IN ('failed', 'timed_out')),
    count(*) FILTER (WHERE x.outcome IN ('skipped', 'cancelled', 'pending', 'unreachable'))";

fn summary_from_row(row: &Row) -> Result<RunSummary, postgres::Error> {
    let count = |idx: usize| -> Result<usize, postgres::Error> {
        Ok(usize::try_from(row.try_get::<_, i64>(idx)?).unwrap_or(0))
    };
    Ok(RunSummary {
        id: row.try_get(0)?,
        kind: RunKind::parse(row.try_get(1)?).unwrap_or(RunKind::Apply),
        started_at: row.try_get(2)?,
        user: row.try_get(3)?,
        counts: [count(4)?, count(5)?, count(6)?, count(7)?, count(8)?],
    })
}

fn finding_from_row(row: &Row) -> Result<Finding, postgres::Error> {
    Ok(Finding {
        id: row.try_get(0)?,
        node: row.try_get(1)?,
        resource: row.try_get(2)?,
        kind: FindingKind::parse(row.try_get(3)?).unwrap_or(FindingKind::Failure),
        open: row.try_get::<_, i64>(4)? != 0,
        severity: Severity::parse(row.try_get(5)?).unwrap_or(Severity::Unspecified),
        first_seen: row.try_get(6)?,
        last_seen: row.try_get(7)?,
        count: u64::try_from(row.try_get::<_, i64>(8)?).unwrap_or(0),
        last_run: row.try_get(9)?,
        message: row.try_get(10)?,
        resolution: row.try_get(11)?,
        association: row.try_get(12)?,
    })
}

fn result_from_row(row: &Row) -> Result<ResultRecord, postgres::Error> {
    let small = |value: Option<i64>| value.and_then(|v| u32::try_from(v).ok());
    Ok(ResultRecord {
        node: row.try_get(0)?,
        resource: row.try_get(1)?,
        outcome: ResultOutcome::parse(row.try_get(2)?).unwrap_or(ResultOutcome::Failed),
        file: row.try_get(3)?,
        line: small(row.try_get(4)?),
        column: small(row.try_get(5)?),
        diff: row.try_get(6)?,
        message: row.try_get(7)?,
        duration_ms: u64::try_from(row.try_get::<_, i64>(8)?).unwrap_or(0),
        association: row.try_get(9)?,
        severity: Severity::parse(row.try_get(10)?).unwrap_or(Severity::Unspecified),
        // A result stored before version 5 has no action: it is shown as it was.
        change: match row.try_get::<_, Option<String>>(11)? {
            Some(action) => Some(ResultChange {
                action,
                done: row.try_get(12)?,
                reason: row.try_get(13)?,
                n_cut_bytes: u64::try_from(row.try_get::<_, i64>(14)?).unwrap_or(0),
            }),
            None => None,
        },
    })
}

/// The finding `id`, read through `client`.
fn finding(client: &mut impl GenericClient, id: i64) -> Result<Option<Finding>, StoreError> {
    let row = client.query_opt(
        &format!("SELECT {FINDING_COLUMNS} FROM findings WHERE id = $1"),
        &[&id],
    )?;
    Ok(row.as_ref().map(finding_from_row).transpose()?)
}

/// Records `run` in `tx` (see [`Store::record_run`]); the caller commits.
pub(super) fn record_in(tx: &mut Transaction<'_>, run: &RunRecord) -> Result<(), StoreError> {
    // Recordings are serialized across connections (controllers), as SQLite's immediate
    // transaction serializes them across processes: a finding is bumped or opened once.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_SPACE, &RECORD_LOCK],
    )?;
    // A controller's run was stored as `running` when it began: the whole record
    // replaces that row.
    tx.execute(
        "DELETE FROM runs WHERE id = $1 AND status = 'running'",
        &[&run.id],
    )?;
    tx.execute(
        "INSERT INTO runs (id, kind, started_at, finished_at, \"user\", project, documents_digest, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &run.id,
            &run.kind.as_str(),
            &run.started_at,
            &run.finished_at,
            &run.user,
            &run.project,
            &run.documents_digest,
            &run.status.as_str(),
        ],
    )?;
    // The run's delivered task results are in its record now (as SQLite's `settle_tasks`).
    tx.execute(
        "UPDATE tasks SET result = NULL WHERE run_id = $1 AND closed_at IS NOT NULL",
        &[&run.id],
    )?;
    insert_results(tx, run)?;
    // Resolving is skipped when no finding is open at all (a cold apply opens none).
    let mut any_open: bool = tx
        .query_one("SELECT EXISTS (SELECT 1 FROM findings WHERE open = 1)", &[])?
        .try_get(0)?;
    let resolution = format!("resolved by run {} at {}", run.id, run.finished_at);
    for op in finding_ops(run) {
        match op {
            FindingOp::OpenOrBump {
                node,
                resource,
                kind,
                severity,
                message,
                association,
            } => {
                any_open |= open_or_bump(
                    tx,
                    run,
                    (node, &resource, kind),
                    severity,
                    message,
                    association,
                )?;
            }
            FindingOp::ResolveResource { .. } | FindingOp::ResolveUnreachable { .. }
                if !any_open => {}
            FindingOp::ResolveResource { node, resource } => {
                tx.execute(
                    "UPDATE findings SET open = 0, resolution = $1
                     WHERE node = $2 AND resource = $3 AND open = 1",
                    &[&resolution, &node, &resource],
                )?;
            }
            FindingOp::ResolveUnreachable { node, resource } => {
                tx.execute(
                    "UPDATE findings SET open = 0, resolution = $1
                     WHERE node = $2 AND resource = $3 AND kind = $4 AND open = 1",
                    &[
                        &resolution,
                        &node,
                        &resource,
                        &FindingKind::Unreachable.as_str(),
                    ],
                )?;
            }
        }
    }
    Ok(())
}

impl Store for PostgresStore {
    fn record_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        let mut tx = self.client_mut().transaction()?;
        record_in(&mut tx, run)?;
        tx.commit()?;
        Ok(())
    }

    fn applied_nodes(&self, nodes: &[String]) -> Result<BTreeSet<String>, StoreError> {
        let rows = self.client().query(
            "SELECT DISTINCT x.node FROM results x JOIN runs r ON r.id = x.run_id
             WHERE r.kind = 'apply' AND x.outcome IN ('unchanged', 'changed', 'failed')
               AND x.node = ANY($1)",
            &[&nodes],
        )?;
        Ok(rows
            .iter()
            .map(|row| row.try_get::<_, String>(0))
            .collect::<Result<_, _>>()?)
    }

    fn run(&self, id: Option<&str>) -> Result<RunRecord, StoreError> {
        let mut client = self.client();
        let id = match id {
            Some(id) => id.to_string(),
            None => client
                .query_opt(
                    "SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 1",
                    &[],
                )?
                .map(|row| row.try_get(0))
                .transpose()?
                .ok_or_else(|| StoreError::NoRun("(latest)".into()))?,
        };
        let row = client
            .query_opt(
                "SELECT id, kind, started_at, finished_at, \"user\", project, documents_digest, status
                 FROM runs WHERE id = $1",
                &[&id],
            )?
            .ok_or(StoreError::NoRun(id))?;
        let mut run = RunRecord {
            id: row.try_get(0)?,
            kind: RunKind::parse(row.try_get(1)?).unwrap_or(RunKind::Apply),
            started_at: row.try_get(2)?,
            finished_at: row.try_get(3)?,
            user: row.try_get(4)?,
            project: row.try_get(5)?,
            documents_digest: row.try_get(6)?,
            results: Vec::new(),
            status: RunStatus::parse(row.try_get(7)?).unwrap_or(RunStatus::Interrupted),
        };
        let rows = client.query(
            "SELECT node, resource, outcome, file, line, column_, diff, message, duration_ms,
                    association, severity, action, done, reason, diff_cut_bytes
             FROM results WHERE run_id = $1 ORDER BY position",
            &[&run.id],
        )?;
        run.results = rows.iter().map(result_from_row).collect::<Result<_, _>>()?;
        Ok(run)
    }

    fn runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        let rows = self.client().query(
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM runs r LEFT JOIN results x ON x.run_id = r.id
                 GROUP BY r.id ORDER BY r.started_at DESC, r.id DESC"
            ),
            &[],
        )?;
        Ok(rows
            .iter()
            .map(summary_from_row)
            .collect::<Result<_, _>>()?)
    }

    fn node_runs(&self, node: &str, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.client().query(
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM results x JOIN runs r ON r.id = x.run_id
                 WHERE x.node = $1
                 GROUP BY r.id ORDER BY r.started_at DESC, r.id DESC LIMIT $2"
            ),
            &[&node, &limit],
        )?;
        Ok(rows
            .iter()
            .map(summary_from_row)
            .collect::<Result<_, _>>()?)
    }

    fn oldest_run_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .client()
            .query_one("SELECT min(id) FROM runs", &[])?
            .try_get(0)?)
    }

    fn findings(&self, all: bool) -> Result<Vec<Finding>, StoreError> {
        let sql = format!(
            "SELECT {FINDING_COLUMNS} FROM findings {} ORDER BY id",
            if all { "" } else { "WHERE open = 1" }
        );
        let rows = self.client().query(&sql, &[])?;
        Ok(rows
            .iter()
            .map(finding_from_row)
            .collect::<Result<_, _>>()?)
    }

    fn resolve_finding(&mut self, id: i64, note: Option<&str>) -> Result<Finding, StoreError> {
        let client = self.client_mut();
        let row = client.query_opt(
            &format!(
                "UPDATE findings SET open = 0, resolution = $1 WHERE id = $2 AND open = 1
                 RETURNING {FINDING_COLUMNS}"
            ),
            &[&crate::store::resolution_by_hand(note), &id],
        )?;
        if let Some(row) = row {
            return Ok(finding_from_row(&row)?);
        }
        match finding(client, id)? {
            None => Err(StoreError::NoFinding(id)),
            Some(_) => Err(StoreError::AlreadyResolved(id)),
        }
    }

    fn prune(&mut self, keep: usize) -> Result<usize, StoreError> {
        let deleted = self.client_mut().execute(
            "DELETE FROM runs WHERE id NOT IN
                 (SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT $1)",
            &[&i64::try_from(keep).unwrap_or(i64::MAX)],
        )?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }
}

impl PostgresStore {
    /// Copies the SQLite store at `path` (opened, and so checked and migrated, first) into
    /// this store, which must be empty: one transaction (see `store/copy.rs`).
    pub fn copy_from_sqlite(&mut self, path: &std::path::Path) -> Result<Copied, StoreError> {
        let source = crate::store::sqlite::SqliteStore::open(path)?;
        source.quick_check(path)?;
        crate::store::copy::sqlite_into_postgres(
            source.conn(),
            self.client_mut(),
            &path.display().to_string(),
        )
    }
}

/// A run as begun (no results yet) from a row of `id, kind, started_at, user, project,
/// documents_digest`.
pub(super) fn running_run(row: &Row) -> Result<RunRecord, StoreError> {
    Ok(RunRecord {
        id: row.try_get(0)?,
        kind: RunKind::parse(row.try_get(1)?).unwrap_or(RunKind::Apply),
        started_at: row.try_get(2)?,
        finished_at: String::new(),
        user: row.try_get(3)?,
        project: row.try_get(4)?,
        documents_digest: row.try_get(5)?,
        results: Vec::new(),
        status: RunStatus::Running,
    })
}
