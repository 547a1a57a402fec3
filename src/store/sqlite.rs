//! The embedded store: SQLite (bundled, so a fresh build needs nothing installed), in WAL
//! mode with a busy timeout so two processes recording at once both land.
//!
//! The file is marked with an application id and a schema version (`user_version`). A file
//! that is not SQLite, or another program's database, is refused and never written; one
//! written by a newer steward is refused rather than misread; an older one is migrated in a
//! transaction.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::store::findings::{FindingOp, finding_ops};
use crate::store::{
    ApiTokenRecord, AuditEntry, AuditQuery, AuditRecord, CurrentProject, Decide, Finding,
    FindingKind, FleetStore, NewCert, NodeRecord, ResultChange, ResultOutcome, ResultRecord,
    RunKind, RunRecord, RunStatus, RunSummary, ScheduleSwitch, Severity, Store, StoreError,
    StoredToken, Tags, TaskLedger, TaskState, UnfinishedRun, fleet, tasks,
};

use crate::store::migrations::MIGRATIONS;
pub use crate::store::migrations::STORE_VERSION;

/// Marks the database as steward's ("STWD").
const APPLICATION_ID: i64 = 0x5354_5744;

/// A steward store in one SQLite file.
pub struct SqliteStore {
    conn: Connection,
    /// The file, for the task ledger's second connection.
    path: PathBuf,
}

impl SqliteStore {
    /// The connection, for the store's own modules (the copy into PostgreSQL).
    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Opens and migrates the store at `path`, creating it when missing (mode 0600).
    ///
    /// An existing file is checked before anything is written to it: one that is empty, cut
    /// short (not whole pages) or not SQLite is refused with its path and never re-created
    /// over, since it may hold what a backup can bring back. A new store is built aside and
    /// linked into place whole, so no process ever sees a half-made (or empty) store. Pages
    /// damaged in the middle of the file are found by [`SqliteStore::quick_check`].
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => create_new(path)?,
            Err(err) => return Err(err.into()),
        }
        check_header(path)?;
        let corrupt = |err| corrupt_or_sqlite(path, err);
        let conn = Connection::open(path).map_err(corrupt)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let application_id: i64 = conn
            .query_row("PRAGMA application_id", [], |row| row.get(0))
            .map_err(corrupt)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(corrupt)?;
        let n_tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .map_err(corrupt)?;
        if application_id != APPLICATION_ID && !(application_id == 0 && n_tables == 0) {
            return Err(StoreError::Foreign {
                path: shown,
                reason: format!("application id {application_id:#x}"),
            });
        }
        if version > STORE_VERSION {
            return Err(StoreError::TooNew {
                path: shown,
                found: version,
                supported: STORE_VERSION,
            });
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(corrupt)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate(version).map_err(|err| match err {
            StoreError::Sqlite(err) => corrupt_or_sqlite(path, err),
            err => err,
        })?;
        Ok(store)
    }

    /// Reads every page of the store and checks its structure (`PRAGMA quick_check`), so a
    /// file damaged in the middle is refused at start rather than failing on some later
    /// read. It reads the whole file (0.1 s for a 66 MB store of 10,000 runs of 20 results,
    /// from the page cache), so the controller runs it when it starts, and local commands do
    /// not: they rely on the checks of [`SqliteStore::open`] and on SQLite's own errors.
    pub fn quick_check(&self, path: &Path) -> Result<(), StoreError> {
        let corrupt = |err| corrupt_or_sqlite(path, err);
        let mut statement = self
            .conn
            .prepare("PRAGMA quick_check(5)")
            .map_err(corrupt)?;
        let problems: Vec<String> = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(corrupt)?
            .collect::<Result<_, _>>()
            .map_err(corrupt)?;
        if problems.iter().all(|p| p == "ok") {
            return Ok(());
        }
        Err(StoreError::Corrupt {
            path: path.display().to_string(),
            reason: format!("SQLite's check found: {}", problems.join("; ")),
        })
    }

    /// Runs the migrations from `version` to [`STORE_VERSION`] in one transaction.
    fn migrate(&mut self, version: i64) -> Result<(), StoreError> {
        if version == STORE_VERSION {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated while we waited for the lock.
        let current: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
            tx.execute_batch(migration.sqlite)?;
            tx.pragma_update(None, "user_version", migration.version)?;
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
        Ok(())
    }

    /// Opens a store at an older schema version, for migration tests.
    #[doc(hidden)]
    pub fn create_at_version(path: &Path, version: usize) -> Result<Connection, StoreError> {
        create_private(path)?;
        let conn = Connection::open(path)?;
        for migration in MIGRATIONS.iter().take(version) {
            conn.execute_batch(migration.sqlite)?;
            conn.pragma_update(None, "user_version", migration.version)?;
        }
        conn.pragma_update(None, "application_id", APPLICATION_ID)?;
        Ok(conn)
    }

    fn latest_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()?)
    }
}

/// The size of a SQLite file header.
const HEADER_LEN: usize = 100;

/// Refuses a file that is not a SQLite database, or one that is empty or cut short, without
/// writing to it.
fn check_header(path: &Path) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.display().to_string(),
        reason,
    };
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Err(corrupt(
            "it is empty (0 bytes), and steward never leaves its store empty: what it held is lost"
                .to_string(),
        ));
    }
    let mut header = Vec::with_capacity(HEADER_LEN);
    file.by_ref()
        .take(HEADER_LEN as u64)
        .read_to_end(&mut header)?;
    if !header.starts_with(b"SQLite format 3\0") {
        return Err(StoreError::Foreign {
            path: path.display().to_string(),
            reason: "not a SQLite database".into(),
        });
    }
    if header.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "it is {len} bytes, shorter than a SQLite header"
        )));
    }
    // Bytes 16 and 17 hold the page size, big-endian; 1 stands for 65,536.
    let page_size = match u32::from(u16::from_be_bytes([header[16], header[17]])) {
        1 => 65_536,
        size => size,
    };
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(corrupt(format!(
            "its header names a page size of {page_size}"
        )));
    }
    if len % u64::from(page_size) != 0 {
        return Err(corrupt(format!(
            "it is {len} bytes, not a whole number of {page_size}-byte pages: it was cut short"
        )));
    }
    Ok(())
}

/// A SQLite error on a file SQLite says is damaged (or not a database) becomes
/// [`StoreError::Corrupt`] with the file's path; any other stays as it is.
fn corrupt_or_sqlite(path: &Path, err: rusqlite::Error) -> StoreError {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            StoreError::Corrupt {
                path: path.display().to_string(),
                reason: err.to_string(),
            }
        }
        _ => StoreError::Sqlite(err),
    }
}

/// Creates a new, migrated store at `path`: built in a file beside it, then hard-linked into
/// place, so the store appears whole or not at all. When another process linked its own
/// first, that one is kept.
fn create_new(path: &Path) -> Result<(), StoreError> {
    // One name per process and attempt: threads of one process that create the store at
    // once each build their own.
    static ATTEMPT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".new-{}-{}",
        std::process::id(),
        ATTEMPT.fetch_add(1, Ordering::Relaxed)
    ));
    let aside = path.with_file_name(name);
    // Left by a process with our pid that died while creating; nobody else uses this name.
    remove_with_journal(&aside);
    let built = build_new(&aside).and_then(|()| match std::fs::hard_link(&aside, path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err.into()),
    });
    remove_with_journal(&aside);
    built?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn build_new(aside: &Path) -> Result<(), StoreError> {
    create_private(aside)?;
    let conn = Connection::open(aside)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let mut store = SqliteStore {
        conn,
        path: aside.to_path_buf(),
    };
    store.migrate(0)?;
    // Closing the last connection checkpoints the WAL into the file and removes it.
    store
        .conn
        .close()
        .map_err(|(_, err)| StoreError::Sqlite(err))
}

fn remove_with_journal(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_os_string();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err.into()),
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Store for SqliteStore {
    fn record_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // A controller's run was stored as `running` when it began (`begin_run`): the whole
        // record replaces that row.
        tx.execute(
            "DELETE FROM runs WHERE id = ?1 AND status = 'running'",
            [&run.id],
        )?;
        tx.execute(
            "INSERT INTO runs (id, kind, started_at, finished_at, user, project, documents_digest, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                run.id,
                run.kind.as_str(),
                run.started_at,
                run.finished_at,
                run.user,
                run.project,
                run.documents_digest,
                run.status.as_str()
            ],
        )?;
        tasks::settle_tasks(&tx, &run.id)?;
        // Resolving a finding is one UPDATE per unchanged or changed resource: skipped when no
        // finding is open at all (a cold apply of thousands of files opens none).
        let mut any_open: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM findings WHERE open = 1)",
            [],
            |row| row.get(0),
        )?;
        let resolution = format!("resolved by run {} at {}", run.id, run.finished_at);
        let mut insert_result = tx.prepare_cached(
            "INSERT INTO results (run_id, position, node, resource, outcome, file, line, column_, diff, message,
                                  duration_ms, association, severity, action, done, reason, diff_cut_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )?;
        for (position, result) in run.results.iter().enumerate() {
            let change = result.change.as_ref();
            insert_result.execute(params![
                run.id,
                position as i64,
                result.node,
                result.resource,
                result.outcome.as_str(),
                result.file,
                result.line,
                result.column,
                result.diff,
                result.message,
                i64::try_from(result.duration_ms).unwrap_or(i64::MAX),
                result.association,
                result.severity.as_str(),
                change.map(|c| c.action.as_str()),
                change.and_then(|c| c.done.as_deref()),
                change.and_then(|c| c.reason.as_deref()),
                change.map_or(0, |c| i64::try_from(c.n_cut_bytes).unwrap_or(i64::MAX)),
            ])?;
        }
        drop(insert_result);
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
                        &tx,
                        run,
                        (node, &resource, kind),
                        severity,
                        message,
                        association,
                    )?
                }
                FindingOp::ResolveResource { .. } | FindingOp::ResolveUnreachable { .. }
                    if !any_open => {}
                FindingOp::ResolveResource { node, resource } => {
                    tx.prepare_cached(
                        "UPDATE findings SET open = 0, resolution = ?1
                         WHERE node = ?2 AND resource = ?3 AND open = 1",
                    )?
                    .execute(params![resolution, node, resource])?;
                }
                FindingOp::ResolveUnreachable { node, resource } => {
                    tx.prepare_cached(
                        "UPDATE findings SET open = 0, resolution = ?1
                         WHERE node = ?2 AND resource = ?3 AND kind = ?4 AND open = 1",
                    )?
                    .execute(params![
                        resolution,
                        node,
                        resource,
                        FindingKind::Unreachable.as_str()
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn run(&self, id: Option<&str>) -> Result<RunRecord, StoreError> {
        let id = match id {
            Some(id) => id.to_string(),
            None => self
                .latest_id()?
                .ok_or_else(|| StoreError::NoRun("(latest)".into()))?,
        };
        let run = self
            .conn
            .query_row(
                "SELECT id, kind, started_at, finished_at, user, project, documents_digest, status FROM runs WHERE id = ?1",
                [&id],
                |row| {
                    Ok(RunRecord {
                        id: row.get(0)?,
                        kind: RunKind::parse(&row.get::<_, String>(1)?).unwrap_or(RunKind::Apply),
                        started_at: row.get(2)?,
                        finished_at: row.get(3)?,
                        user: row.get(4)?,
                        project: row.get(5)?,
                        documents_digest: row.get(6)?,
                        results: Vec::new(),
                        status: RunStatus::parse(&row.get::<_, String>(7)?)
                            .unwrap_or(RunStatus::Interrupted),
                    })
                },
            )
            .optional()?;
        let mut run = run.ok_or(StoreError::NoRun(id))?;
        let mut statement = self.conn.prepare(
            "SELECT node, resource, outcome, file, line, column_, diff, message, duration_ms, association, severity,
                    action, done, reason, diff_cut_bytes
             FROM results WHERE run_id = ?1 ORDER BY position",
        )?;
        let rows = statement.query_map([&run.id], |row| {
            Ok(ResultRecord {
                node: row.get(0)?,
                resource: row.get(1)?,
                outcome: ResultOutcome::parse(&row.get::<_, String>(2)?)
                    .unwrap_or(ResultOutcome::Failed),
                file: row.get(3)?,
                line: row.get(4)?,
                column: row.get(5)?,
                diff: row.get(6)?,
                message: row.get(7)?,
                duration_ms: u64::try_from(row.get::<_, i64>(8)?).unwrap_or(0),
                association: row.get(9)?,
                severity: Severity::parse(&row.get::<_, String>(10)?)
                    .unwrap_or(Severity::Unspecified),
                // A result stored before version 5 has no action: it is shown as it was.
                change: match row.get::<_, Option<String>>(11)? {
                    Some(action) => Some(ResultChange {
                        action,
                        done: row.get(12)?,
                        reason: row.get(13)?,
                        n_cut_bytes: u64::try_from(row.get::<_, i64>(14)?).unwrap_or(0),
                    }),
                    None => None,
                },
            })
        })?;
        for row in rows {
            run.results.push(row?);
        }
        Ok(run)
    }

    fn runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM runs r LEFT JOIN results x ON x.run_id = r.id
             GROUP BY r.id ORDER BY r.started_at DESC, r.id DESC"
        ))?;
        let rows = statement.query_map([], summary_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn node_runs(&self, node: &str, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM results x JOIN runs r ON r.id = x.run_id
             WHERE x.node = ?1
             GROUP BY r.id ORDER BY r.started_at DESC, r.id DESC LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = statement.query_map(params![node, limit], summary_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn applied_nodes(
        &self,
        nodes: &[String],
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        // One scan of the results (they have no index by node), whatever the fleet's size.
        let mut statement = self.conn.prepare_cached(
            "SELECT DISTINCT x.node FROM results x JOIN runs r ON r.id = x.run_id
             WHERE r.kind = 'apply' AND x.outcome IN ('unchanged', 'changed', 'failed')",
        )?;
        let mut applied = std::collections::BTreeSet::new();
        for node in statement.query_map([], |row| row.get::<_, String>(0))? {
            let node = node?;
            if nodes.contains(&node) {
                applied.insert(node);
            }
        }
        Ok(applied)
    }

    fn oldest_run_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT min(id) FROM runs", [], |row| row.get(0))?)
    }

    fn findings(&self, all: bool) -> Result<Vec<Finding>, StoreError> {
        let sql = format!(
            "SELECT id, node, resource, kind, open, severity, first_seen, last_seen, count, last_run, message, resolution, association
             FROM findings {} ORDER BY id",
            if all { "" } else { "WHERE open = 1" }
        );
        let mut statement = self.conn.prepare(&sql)?;
        let rows = statement.query_map([], finding_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn resolve_finding(&mut self, id: i64, note: Option<&str>) -> Result<Finding, StoreError> {
        let open: Option<i64> = self
            .conn
            .query_row("SELECT open FROM findings WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()?;
        match open {
            None => return Err(StoreError::NoFinding(id)),
            Some(0) => return Err(StoreError::AlreadyResolved(id)),
            Some(_) => {}
        }
        self.conn.execute(
            "UPDATE findings SET open = 0, resolution = ?1 WHERE id = ?2",
            params![crate::store::resolution_by_hand(note), id],
        )?;
        Ok(self.conn.query_row(
            "SELECT id, node, resource, kind, open, severity, first_seen, last_seen, count, last_run, message, resolution, association
             FROM findings WHERE id = ?1",
            [id],
            finding_from_row,
        )?)
    }

    fn prune(&mut self, keep: usize) -> Result<usize, StoreError> {
        let deleted = self.conn.execute(
            "DELETE FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?1)",
            [i64::try_from(keep).unwrap_or(i64::MAX)],
        )?;
        Ok(deleted)
    }
}

impl FleetStore for SqliteStore {
    fn insert_token(&mut self, id: &str, token: &StoredToken) -> Result<(), StoreError> {
        fleet::insert_token(&self.conn, id, token)
    }

    fn enroll_with_token(
        &mut self,
        token_id: &str,
        cert: &NewCert<'_>,
        decide: &mut Decide<'_>,
    ) -> Result<Result<(), String>, StoreError> {
        fleet::enroll_with_token(&mut self.conn, token_id, cert, decide)
    }

    fn set_node_tags(
        &mut self,
        name: &str,
        set: &Tags,
        remove: &[String],
    ) -> Result<NodeRecord, StoreError> {
        fleet::set_node_tags(&mut self.conn, name, set, remove)
    }

    fn renew_node_cert(
        &mut self,
        name: &str,
        cert_fingerprint: &str,
        cert_not_after: &str,
    ) -> Result<(), StoreError> {
        fleet::renew_node_cert(&self.conn, name, cert_fingerprint, cert_not_after)
    }

    fn node_seen(
        &mut self,
        name: &str,
        facts: &serde_json::Value,
        at: &str,
    ) -> Result<(), StoreError> {
        fleet::node_seen(&self.conn, name, facts, at)
    }

    fn node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        fleet::node_in(&self.conn, name)
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        fleet::nodes(&self.conn)
    }

    fn revoke_node(&mut self, name: &str) -> Result<NodeRecord, StoreError> {
        fleet::revoke_node(&self.conn, name)
    }

    fn insert_api_token(&mut self, token: &ApiTokenRecord) -> Result<(), StoreError> {
        fleet::insert_api_token(&self.conn, token)
    }

    fn api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        fleet::api_token(&self.conn, id)
    }

    fn api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError> {
        fleet::api_tokens(&self.conn)
    }

    fn revoke_api_token(&mut self, id: &str) -> Result<ApiTokenRecord, StoreError> {
        fleet::revoke_api_token(&mut self.conn, id)
    }

    fn append_audit(&mut self, entry: &AuditEntry) -> Result<i64, StoreError> {
        fleet::append_audit(&self.conn, entry)
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        fleet::audit(&self.conn, query)
    }

    fn begin_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        tasks::begin_run(&self.conn, run)
    }

    fn task_state(&self, id: &str, node: &str) -> Result<TaskState, StoreError> {
        tasks::task_state(&self.conn, id, node)
    }

    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>, StoreError> {
        tasks::unfinished_runs(&self.conn)
    }

    fn settle_plan_tasks(&mut self, plan_id: &str) -> Result<(), StoreError> {
        tasks::settle_tasks(&self.conn, plan_id)
    }

    fn prune_tasks(&mut self, before: &str) -> Result<usize, StoreError> {
        tasks::prune_tasks(&self.conn, before)
    }

    fn has_run(&self, id: &str) -> Result<bool, StoreError> {
        tasks::has_run(&self.conn, id)
    }

    fn run_progress(&self, id: &str) -> Result<Option<crate::store::RunProgress>, StoreError> {
        tasks::run_progress(&self.conn, id)
    }

    fn open_ledger(&self) -> Result<Box<dyn TaskLedger>, StoreError> {
        Ok(Box::new(tasks::Ledger::open(&self.path)?))
    }

    fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM secrets WHERE name = ?1", [name], |row| {
                row.get(0)
            })
            .optional()?)
    }

    fn put_secret_if_absent(&mut self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO secrets (name, value, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO NOTHING",
            params![name, value, now()],
        )?;
        let stored: Vec<u8> =
            tx.query_row("SELECT value FROM secrets WHERE name = ?1", [name], |row| {
                row.get(0)
            })?;
        tx.commit()?;
        Ok(stored)
    }

    fn claim_firing(
        &mut self,
        association: &str,
        due_at: &str,
        controller: &str,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "INSERT INTO schedule_firings (association, due_at, controller, claimed_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (association, due_at) DO NOTHING",
            params![association, due_at, controller, now()],
        )?;
        Ok(n == 1)
    }

    fn last_firings(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let mut statement = self.conn.prepare(
            "SELECT association, max(due_at) FROM schedule_firings GROUP BY association",
        )?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn set_schedule_enabled(
        &mut self,
        association: &str,
        enabled: bool,
        by: &str,
    ) -> Result<(), StoreError> {
        let sql = if enabled {
            // No switch is on already: only a switch that is off changes.
            "UPDATE schedule_switches SET enabled = 1, changed_at = ?2, changed_by = ?3
             WHERE association = ?1 AND enabled = 0"
        } else {
            "INSERT INTO schedule_switches (association, enabled, changed_at, changed_by)
             VALUES (?1, 0, ?2, ?3)
             ON CONFLICT (association) DO UPDATE SET enabled = 0,
                 changed_at = excluded.changed_at, changed_by = excluded.changed_by
             WHERE schedule_switches.enabled <> 0"
        };
        self.conn
            .execute(sql, params![association, fleet::now(), by])?;
        Ok(())
    }

    fn schedule_switches(&self) -> Result<BTreeMap<String, ScheduleSwitch>, StoreError> {
        let mut statement = self.conn.prepare(
            "SELECT association, enabled, changed_at, changed_by FROM schedule_switches
             ORDER BY association",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                ScheduleSwitch {
                    enabled: row.get::<_, i64>(1)? != 0,
                    changed_at: row.get(2)?,
                    changed_by: row.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_project(&mut self, project: &CurrentProject) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO current_project (id, name, digest, files_json, stored_at)
             VALUES (1, ?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, digest = excluded.digest,
                 files_json = excluded.files_json, stored_at = excluded.stored_at",
            params![project.name, project.digest, project.files_json, now()],
        )?;
        Ok(())
    }

    fn current_project(&self) -> Result<Option<CurrentProject>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, digest, files_json FROM current_project WHERE id = 1",
                [],
                |row| {
                    Ok(CurrentProject {
                        name: row.get(0)?,
                        digest: row.get(1)?,
                        files_json: row.get(2)?,
                    })
                },
            )
            .optional()?)
    }
}

/// Bumps the open finding of `(node, resource, kind)` with this run, or opens one; `true`
/// when it opened one.
fn open_or_bump(
    tx: &rusqlite::Transaction<'_>,
    run: &RunRecord,
    (node, resource, kind): (&str, &str, FindingKind),
    severity: Severity,
    message: &str,
    association: Option<&str>,
) -> Result<bool, StoreError> {
    let updated = tx
        .prepare_cached(
            "UPDATE findings SET last_seen = ?1, count = count + 1, last_run = ?2, message = ?3,
                    severity = ?4, association = ?8
             WHERE node = ?5 AND resource = ?6 AND kind = ?7 AND open = 1",
        )?
        .execute(params![
            run.finished_at,
            run.id,
            message,
            severity.as_str(),
            node,
            resource,
            kind.as_str(),
            association
        ])?;
    if updated > 0 {
        return Ok(false);
    }
    tx.prepare_cached(
        "INSERT INTO findings (node, resource, kind, open, severity, first_seen, last_seen, count,
                               last_run, message, association)
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?5, 1, ?6, ?7, ?8)",
    )?
    .execute(params![
        node,
        resource,
        kind.as_str(),
        severity.as_str(),
        run.finished_at,
        run.id,
        message,
        association
    ])?;
    Ok(true)
}

/// The columns [`summary_from_row`] reads, over `runs r` and `results x` grouped by run.
const SUMMARY_COLUMNS: &str = "r.id, r.kind, r.started_at, r.user,
    sum(x.outcome = 'unchanged'), sum(x.outcome IN ('changed', 'succeeded')),
    sum(x.outcome = 'drifted'), sum(x.outcome IN ('failed', 'timed_out')),
    sum(x.outcome IN ('skipped', 'cancelled', 'pending', 'unreachable'))";

fn summary_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunSummary> {
    let count = |idx: usize| -> rusqlite::Result<usize> {
        Ok(usize::try_from(row.get::<_, Option<i64>>(idx)?.unwrap_or(0)).unwrap_or(0))
    };
    Ok(RunSummary {
        id: row.get(0)?,
        kind: RunKind::parse(&row.get::<_, String>(1)?).unwrap_or(RunKind::Apply),
        started_at: row.get(2)?,
        user: row.get(3)?,
        counts: [count(4)?, count(5)?, count(6)?, count(7)?, count(8)?],
    })
}

fn finding_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Finding> {
    Ok(Finding {
        id: row.get(0)?,
        node: row.get(1)?,
        resource: row.get(2)?,
        kind: FindingKind::parse(&row.get::<_, String>(3)?).unwrap_or(FindingKind::Failure),
        open: row.get::<_, i64>(4)? != 0,
        severity: Severity::parse(&row.get::<_, String>(5)?).unwrap_or(Severity::Unspecified),
        first_seen: row.get(6)?,
        last_seen: row.get(7)?,
        count: u64::try_from(row.get::<_, i64>(8)?).unwrap_or(0),
        last_run: row.get(9)?,
        message: row.get(10)?,
        resolution: row.get(11)?,
        association: row.get(12)?,
    })
}

/// Where a project's store lives inside its state directory.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("steward.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(node: &str, resource: &str, outcome: ResultOutcome) -> ResultRecord {
        ResultRecord {
            node: node.into(),
            resource: resource.into(),
            outcome,
            file: None,
            line: None,
            column: None,
            diff: None,
            change: None,
            message: Some(format!("{outcome} here")),
            duration_ms: 0,
            association: None,
            severity: Severity::Medium,
        }
    }

    fn run(id: &str, kind: RunKind, results: Vec<ResultRecord>) -> RunRecord {
        RunRecord {
            id: id.into(),
            kind,
            started_at: format!("2026-12-03T10:00:{id}Z"),
            finished_at: format!("2026-12-03T10:00:{id}Z"),
            user: "u".into(),
            project: "p".into(),
            documents_digest: "d".into(),
            results,
            status: RunStatus::Complete,
        }
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("steward.db")).unwrap();
        (dir, store)
    }

    fn open(store: &SqliteStore) -> Vec<(String, String, FindingKind, u64)> {
        store
            .findings(false)
            .unwrap()
            .into_iter()
            .map(|f| (f.node, f.resource, f.kind, f.count))
            .collect()
    }

    #[test]
    fn an_unreachable_node_is_one_finding_resolved_when_it_answers() {
        let (_dir, mut store) = store();
        let offline = |id: &str| {
            run(
                id,
                RunKind::Apply,
                vec![
                    result("web", "file:/a", ResultOutcome::Unreachable),
                    result("web", "file:/b", ResultOutcome::Unreachable),
                    result("db", "file:/c", ResultOutcome::Unchanged),
                ],
            )
        };
        store.record_run(&offline("01")).unwrap();
        store.record_run(&offline("02")).unwrap();
        assert_eq!(
            open(&store),
            [(
                "web".to_string(),
                "node:web".to_string(),
                FindingKind::Unreachable,
                2
            )]
        );
        assert_eq!(
            store.findings(false).unwrap()[0].message,
            "unreachable here"
        );
        // A run where the node answers, even with drift, resolves it.
        store
            .record_run(&run(
                "03",
                RunKind::Drift,
                vec![
                    result("web", "file:/a", ResultOutcome::Drifted),
                    result("web", "file:/b", ResultOutcome::Unchanged),
                ],
            ))
            .unwrap();
        assert_eq!(
            open(&store),
            [(
                "web".to_string(),
                "file:/a".to_string(),
                FindingKind::Drift,
                1
            )]
        );
        let all = store.findings(true).unwrap();
        assert!(all[0].resolution.as_deref().unwrap().contains("run 03"));
    }

    #[test]
    fn skipped_nodes_leave_the_node_finding_open_and_pending_opens_nothing() {
        let (_dir, mut store) = store();
        store
            .record_run(&run(
                "01",
                RunKind::Apply,
                vec![result("web", "file:/a", ResultOutcome::Unreachable)],
            ))
            .unwrap();
        // Not asked (max_errors) or refused: the node said nothing of its reachability.
        store
            .record_run(&run(
                "02",
                RunKind::Apply,
                vec![result("web", "file:/a", ResultOutcome::Skipped)],
            ))
            .unwrap();
        assert_eq!(open(&store).len(), 1);
        store
            .record_run(&run(
                "03",
                RunKind::Drift,
                vec![result("new", "file:/a", ResultOutcome::Pending)],
            ))
            .unwrap();
        assert_eq!(open(&store).len(), 1, "pending opens no finding");
    }

    #[test]
    fn applied_nodes_are_those_an_apply_reached() {
        let (_dir, mut store) = store();
        store
            .record_run(&run(
                "01",
                RunKind::Apply,
                vec![
                    result("web", "file:/a", ResultOutcome::Failed),
                    result("db", "file:/a", ResultOutcome::Unreachable),
                    result("mq", "file:/a", ResultOutcome::Skipped),
                ],
            ))
            .unwrap();
        store
            .record_run(&run(
                "02",
                RunKind::Drift,
                vec![result("cache", "file:/a", ResultOutcome::Unchanged)],
            ))
            .unwrap();
        let nodes: Vec<String> = ["web", "db", "mq", "cache", "gone"]
            .map(String::from)
            .to_vec();
        let applied: Vec<String> = store.applied_nodes(&nodes).unwrap().into_iter().collect();
        assert_eq!(applied, ["web"]);
    }
}
