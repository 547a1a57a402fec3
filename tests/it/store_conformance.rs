//! One conformance suite for every `Store` backend: each case is written once against
//! `dyn Store` and runs on SQLite (always) and on PostgreSQL (ignored unless
//! `STEWARD_TEST_POSTGRES` names a server; `.ci/run` starts one). Each case gets a store of
//! its own (a temporary file, or a database created for it and dropped after), so they run in
//! parallel.

use std::sync::atomic::{AtomicU32, Ordering};

use steward::store::postgres::PostgresStore;
use steward::store::sqlite::SqliteStore;
use steward::store::{
    FindingKind, ResultChange, ResultOutcome, ResultRecord, RunKind, RunRecord, RunStatus,
    STORE_VERSION, Severity, Store, StoreError,
};

/// Where a case gets its stores: every `open` is a new connection to the case's one store.
trait Backend: Sync {
    /// Opens (creating or migrating) the store.
    fn try_open(&self) -> Result<Box<dyn Store + Send>, StoreError>;
    /// Builds the store at an older schema version, before it is first opened.
    fn create_at_version(&self, version: usize);
    /// The schema version the store says it has.
    fn version(&self) -> i64;
    /// Marks the store as written by a steward of schema `version`.
    fn set_version(&self, version: i64);
    /// Gives the (empty) store another program's table, before it is first opened.
    fn add_foreign_table(&self);

    fn open(&self) -> Box<dyn Store + Send> {
        self.try_open().unwrap()
    }
}

struct Sqlite {
    dir: tempfile::TempDir,
}

impl Sqlite {
    fn new() -> Sqlite {
        Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("steward.db")
    }

    fn conn(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path()).unwrap()
    }
}

impl Backend for Sqlite {
    fn try_open(&self) -> Result<Box<dyn Store + Send>, StoreError> {
        Ok(Box::new(SqliteStore::open(&self.path())?))
    }

    fn create_at_version(&self, version: usize) {
        SqliteStore::create_at_version(&self.path(), version).unwrap();
    }

    fn version(&self) -> i64 {
        self.conn()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap()
    }

    fn set_version(&self, version: i64) {
        self.conn()
            .pragma_update(None, "user_version", version)
            .unwrap();
    }

    fn add_foreign_table(&self) {
        self.conn()
            .execute_batch("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
            .unwrap();
    }
}

/// A database of its own on the server `STEWARD_TEST_POSTGRES` names, dropped at the end.
struct Postgres {
    admin: ::postgres::Config,
    config: ::postgres::Config,
    name: String,
}

const NEEDS_POSTGRES: &str = "needs PostgreSQL: STEWARD_TEST_POSTGRES=postgres://USER@HOST:PORT/DB \
     (a role that may create databases; .ci/run starts one)";

impl Postgres {
    fn new() -> Postgres {
        static N: AtomicU32 = AtomicU32::new(0);
        let url = std::env::var("STEWARD_TEST_POSTGRES").unwrap_or_else(|_| {
            panic!("STEWARD_TEST_POSTGRES is not set: this test {NEEDS_POSTGRES}")
        });
        let admin: ::postgres::Config = url
            .parse()
            .unwrap_or_else(|err| panic!("STEWARD_TEST_POSTGRES={url} is not a URL: {err}"));
        let name = format!(
            "steward_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut client = admin.connect(::postgres::NoTls).unwrap_or_else(|err| {
            let cause = std::error::Error::source(&err).map(|c| format!(": {c}"));
            panic!(
                "cannot reach PostgreSQL at STEWARD_TEST_POSTGRES={url}: {err}{} (is it running?)",
                cause.unwrap_or_default()
            )
        });
        // A locale that does not sort byte by byte ("a" < "b" < "B"), where the server has
        // ICU (PostgreSQL 15 and later), so the store's own collation is what is tested.
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
        );
        if client.batch_execute(&icu).is_err() {
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap();
        }
        let mut config = admin.clone();
        config.dbname(&name);
        Postgres {
            admin,
            config,
            name,
        }
    }

    fn client(&self) -> ::postgres::Client {
        self.config.connect(::postgres::NoTls).unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Ok(mut client) = self.admin.connect(::postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

impl Backend for Postgres {
    fn try_open(&self) -> Result<Box<dyn Store + Send>, StoreError> {
        Ok(Box::new(PostgresStore::open(&self.config)?))
    }

    fn create_at_version(&self, version: usize) {
        PostgresStore::create_at_version(&self.config, version).unwrap();
    }

    fn version(&self) -> i64 {
        self.client()
            .query_one("SELECT version FROM steward_store", &[])
            .unwrap()
            .get(0)
    }

    fn set_version(&self, version: i64) {
        self.client()
            .execute("UPDATE steward_store SET version = $1", &[&version])
            .unwrap();
    }

    fn add_foreign_table(&self) {
        self.client()
            .batch_execute("CREATE TABLE accounts (id BIGINT PRIMARY KEY)")
            .unwrap();
    }
}

/// Each case, as a test on SQLite and an ignored test on PostgreSQL of the same name.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $case() {
                    super::$case(&super::Sqlite::new());
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                #[ignore = "needs PostgreSQL: STEWARD_TEST_POSTGRES=postgres://... (.ci/run starts one)"]
                fn $case() {
                    super::$case(&super::Postgres::new());
                }
            )*
        }
    };
}

conformance!(
    a_run_reads_back_as_recorded,
    runs_list_newest_first_with_counts,
    run_ids_sort_byte_by_byte,
    drift_and_failure_open_bump_and_resolve_findings,
    an_unreachable_node_is_one_finding_resolved_when_it_answers,
    skipped_pending_and_commands_open_nothing,
    applied_nodes_are_those_an_apply_reached,
    resolving_by_hand_is_once,
    prune_keeps_the_newest_runs_and_every_finding,
    two_stores_recording_at_once_lose_and_duplicate_nothing,
    stores_opened_at_once_create_and_migrate_once,
    an_old_store_is_migrated_and_reads_back,
    a_store_from_a_newer_steward_is_refused,
    another_programs_database_is_refused,
);

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

/// A run whose id and times are `2026-12-03T10:00:ID`.
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

/// The open findings as (node, resource, kind, count).
fn open(store: &dyn Store) -> Vec<(String, String, FindingKind, u64)> {
    store
        .findings(false)
        .unwrap()
        .into_iter()
        .map(|f| (f.node, f.resource, f.kind, f.count))
        .collect()
}

fn finding(
    node: &str,
    resource: &str,
    kind: FindingKind,
    count: u64,
) -> (String, String, FindingKind, u64) {
    (node.into(), resource.into(), kind, count)
}

fn a_run_reads_back_as_recorded(backend: &dyn Backend) {
    let mut store = backend.open();
    let mut full = result("web", "file:/etc/motd", ResultOutcome::Changed);
    full.file = Some("web.yaml".into());
    full.line = Some(12);
    full.column = Some(u32::MAX);
    full.diff = Some("--- a\n+++ b\n-é\n+ü 🦀\n".into());
    full.change = Some(ResultChange {
        action: "update".into(),
        done: Some("updated and refreshed".into()),
        reason: Some("content".into()),
        n_cut_bytes: u64::from(u32::MAX) + 7,
    });
    full.duration_ms = 1234;
    full.association = Some("baseline".into());
    full.severity = Severity::Critical;
    let mut bare = result("db", "service:pg", ResultOutcome::Unchanged);
    bare.message = None;
    let mut recorded = run("01", RunKind::Apply, vec![full, bare]);
    recorded.status = RunStatus::Interrupted;
    recorded.user = "O'Brien \"ops\"".into();
    store.record_run(&recorded).unwrap();
    assert_eq!(store.run(Some("01")).unwrap(), recorded);
    assert_eq!(store.run(None).unwrap(), recorded, "the latest run");
    // A run with no results at all.
    let empty = run("02", RunKind::Drift, Vec::new());
    store.record_run(&empty).unwrap();
    assert_eq!(store.run(None).unwrap(), empty);
    // Another connection sees the same.
    assert_eq!(backend.open().run(Some("01")).unwrap(), recorded);
    assert!(matches!(store.run(Some("nope")), Err(StoreError::NoRun(id)) if id == "nope"));
}

fn runs_list_newest_first_with_counts(backend: &dyn Backend) {
    let mut store = backend.open();
    assert!(matches!(store.run(None), Err(StoreError::NoRun(_))));
    assert_eq!(store.oldest_run_id().unwrap(), None);
    store
        .record_run(&run(
            "01",
            RunKind::Apply,
            ResultOutcome::ALL
                .iter()
                .map(|&o| result("web", &format!("file:/{o}"), o))
                .collect(),
        ))
        .unwrap();
    store
        .record_run(&run(
            "02",
            RunKind::Command,
            vec![result("web", "command:true", ResultOutcome::Succeeded)],
        ))
        .unwrap();
    let runs = store.runs().unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["02", "01"]);
    assert_eq!(runs[0].kind, RunKind::Command);
    assert_eq!(runs[0].counts, [0, 1, 0, 0, 0]);
    // unchanged; changed + succeeded; drifted; failed + timed out; the rest.
    assert_eq!(runs[1].counts, [1, 2, 1, 2, 4]);
    assert_eq!(runs[1].user, "u");
    assert_eq!(runs[1].started_at, "2026-12-03T10:00:01Z");
    assert_eq!(store.oldest_run_id().unwrap().as_deref(), Some("01"));
}

fn run_ids_sort_byte_by_byte(backend: &dyn Backend) {
    let mut store = backend.open();
    // Same start time: the id decides, byte by byte ("B" < "a" < "b"), whatever the locale.
    for id in ["a", "B", "b"] {
        let mut record = run("00", RunKind::Apply, Vec::new());
        record.id = id.into();
        store.record_run(&record).unwrap();
    }
    assert_eq!(store.run(None).unwrap().id, "b");
    let ids: Vec<String> = store.runs().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["b", "a", "B"]);
    assert_eq!(store.oldest_run_id().unwrap().as_deref(), Some("B"));
}

fn drift_and_failure_open_bump_and_resolve_findings(backend: &dyn Backend) {
    let mut store = backend.open();
    let drifted = |id: &str| {
        run(
            id,
            RunKind::Drift,
            vec![
                result("web", "file:/a", ResultOutcome::Drifted),
                result("web", "file:/b", ResultOutcome::Failed),
            ],
        )
    };
    store.record_run(&drifted("01")).unwrap();
    store.record_run(&drifted("02")).unwrap();
    assert_eq!(
        open(&*store),
        [
            finding("web", "file:/a", FindingKind::Drift, 2),
            finding("web", "file:/b", FindingKind::Failure, 2)
        ]
    );
    let first = &store.findings(false).unwrap()[0];
    assert_eq!(first.first_seen, "2026-12-03T10:00:01Z");
    assert_eq!(first.last_seen, "2026-12-03T10:00:02Z");
    assert_eq!(first.last_run, "02");
    assert_eq!(first.message, "drifted here");
    assert_eq!(first.severity, Severity::Medium);
    assert!(first.open && first.resolution.is_none());
    let first_id = first.id;
    // An unchanged result resolves the resource's findings; a changed one too.
    store
        .record_run(&run(
            "03",
            RunKind::Apply,
            vec![
                result("web", "file:/a", ResultOutcome::Unchanged),
                result("web", "file:/b", ResultOutcome::Changed),
            ],
        ))
        .unwrap();
    assert_eq!(open(&*store), []);
    let all = store.findings(true).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[0].resolution.as_deref(),
        Some("resolved by run 03 at 2026-12-03T10:00:03Z")
    );
    // It comes back: a new finding, not the resolved one reopened.
    store.record_run(&drifted("04")).unwrap();
    let again = store.findings(false).unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|f| f.id > first_id && f.count == 1));
    assert_eq!(store.findings(true).unwrap().len(), 4);
}

fn an_unreachable_node_is_one_finding_resolved_when_it_answers(backend: &dyn Backend) {
    let mut store = backend.open();
    let offline = |id: &str| {
        let mut critical = result("web", "file:/b", ResultOutcome::Unreachable);
        critical.severity = Severity::Critical;
        critical.message = Some("later reason".into());
        run(
            id,
            RunKind::Apply,
            vec![
                result("web", "file:/a", ResultOutcome::Unreachable),
                critical,
                result("db", "file:/c", ResultOutcome::Unchanged),
            ],
        )
    };
    store.record_run(&offline("01")).unwrap();
    store.record_run(&offline("02")).unwrap();
    assert_eq!(
        open(&*store),
        [finding("web", "node:web", FindingKind::Unreachable, 2)]
    );
    let node = &store.findings(false).unwrap()[0];
    assert_eq!(node.message, "unreachable here", "the first reason");
    assert_eq!(node.severity, Severity::Critical, "the highest severity");
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
        open(&*store),
        [finding("web", "file:/a", FindingKind::Drift, 1)]
    );
    let all = store.findings(true).unwrap();
    assert!(all[0].resolution.as_deref().unwrap().contains("run 03"));
}

fn skipped_pending_and_commands_open_nothing(backend: &dyn Backend) {
    let mut store = backend.open();
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
    assert_eq!(open(&*store).len(), 1);
    store
        .record_run(&run(
            "03",
            RunKind::Drift,
            vec![result("new", "file:/a", ResultOutcome::Pending)],
        ))
        .unwrap();
    assert_eq!(open(&*store).len(), 1, "pending opens no finding");
    store
        .record_run(&run(
            "04",
            RunKind::Command,
            vec![
                result("db", "command:false", ResultOutcome::Failed),
                result("web", "command:true", ResultOutcome::Succeeded),
                result("mq", "command:sleep", ResultOutcome::Unreachable),
            ],
        ))
        .unwrap();
    assert_eq!(
        open(&*store),
        [finding("web", "node:web", FindingKind::Unreachable, 1)],
        "a command run opens and resolves nothing"
    );
}

fn applied_nodes_are_those_an_apply_reached(backend: &dyn Backend) {
    let mut store = backend.open();
    store
        .record_run(&run(
            "01",
            RunKind::Apply,
            vec![
                result("web", "file:/a", ResultOutcome::Failed),
                result("db", "file:/a", ResultOutcome::Unreachable),
                result("mq", "file:/a", ResultOutcome::Skipped),
                result("log", "file:/a", ResultOutcome::Changed),
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
    assert_eq!(applied, ["web"], "log was not asked about");
    assert!(store.applied_nodes(&[]).unwrap().is_empty());
}

fn resolving_by_hand_is_once(backend: &dyn Backend) {
    let mut store = backend.open();
    store
        .record_run(&run(
            "01",
            RunKind::Drift,
            vec![result("web", "file:/a", ResultOutcome::Drifted)],
        ))
        .unwrap();
    let id = store.findings(false).unwrap()[0].id;
    let resolved = store.resolve_finding(id).unwrap();
    assert!(!resolved.open);
    assert!(
        resolved
            .resolution
            .as_deref()
            .unwrap()
            .starts_with("resolved by hand at ")
    );
    assert_eq!(store.findings(true).unwrap(), [resolved]);
    assert!(matches!(store.resolve_finding(id), Err(StoreError::AlreadyResolved(n)) if n == id));
    assert!(matches!(
        store.resolve_finding(id + 100),
        Err(StoreError::NoFinding(_))
    ));
}

fn prune_keeps_the_newest_runs_and_every_finding(backend: &dyn Backend) {
    let mut store = backend.open();
    for id in ["01", "02", "03", "04"] {
        store
            .record_run(&run(
                id,
                RunKind::Drift,
                vec![result(
                    "web",
                    &format!("file:/{id}"),
                    ResultOutcome::Drifted,
                )],
            ))
            .unwrap();
    }
    assert_eq!(store.prune(2).unwrap(), 2);
    let ids: Vec<String> = store.runs().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["04", "03"]);
    assert_eq!(store.oldest_run_id().unwrap().as_deref(), Some("03"));
    assert!(matches!(store.run(Some("01")), Err(StoreError::NoRun(_))));
    assert_eq!(store.findings(false).unwrap().len(), 4, "findings stay");
    assert_eq!(store.prune(5).unwrap(), 0);
}

fn two_stores_recording_at_once_lose_and_duplicate_nothing(backend: &dyn Backend) {
    const PER_STORE: usize = 15;
    let mut stores = [backend.open(), backend.open()];
    std::thread::scope(|scope| {
        for (n, store) in stores.iter_mut().enumerate() {
            scope.spawn(move || {
                for i in 0..PER_STORE {
                    let mut record = run(
                        "00",
                        RunKind::Drift,
                        vec![
                            result("web", "file:/shared", ResultOutcome::Drifted),
                            result("web", "file:/flaky", ResultOutcome::Failed),
                            result("db", "file:/x", ResultOutcome::Unreachable),
                            result(&format!("own{n}"), "file:/a", ResultOutcome::Drifted),
                        ],
                    );
                    record.id = format!("{n}-{i:02}");
                    store.record_run(&record).unwrap();
                }
            });
        }
    });
    let store = backend.open();
    assert_eq!(store.runs().unwrap().len(), 2 * PER_STORE);
    let total = (2 * PER_STORE) as u64;
    let per = PER_STORE as u64;
    let mut found = open(&*store);
    found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        found,
        [
            finding("db", "node:db", FindingKind::Unreachable, total),
            finding("own0", "file:/a", FindingKind::Drift, per),
            finding("own1", "file:/a", FindingKind::Drift, per),
            finding("web", "file:/flaky", FindingKind::Failure, total),
            finding("web", "file:/shared", FindingKind::Drift, total),
        ]
    );
    assert_eq!(store.findings(true).unwrap().len(), 5, "none duplicated");
}

fn stores_opened_at_once_create_and_migrate_once(backend: &dyn Backend) {
    // Several controllers starting at once on an empty store.
    let open_at_once = || {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| backend.try_open())).collect();
            for handle in handles {
                handle.join().unwrap().unwrap();
            }
        });
    };
    open_at_once();
    assert_eq!(backend.version(), STORE_VERSION);
    let mut store = backend.open();
    store
        .record_run(&run("01", RunKind::Apply, Vec::new()))
        .unwrap();
    assert_eq!(store.runs().unwrap().len(), 1);
}

fn an_old_store_is_migrated_and_reads_back(backend: &dyn Backend) {
    // Version 4: results without the change columns of version 5.
    backend.create_at_version(4);
    assert_eq!(backend.version(), 4);
    let mut store = backend.open();
    assert_eq!(backend.version(), STORE_VERSION);
    let recorded = run(
        "01",
        RunKind::Apply,
        vec![result("web", "file:/a", ResultOutcome::Failed)],
    );
    store.record_run(&recorded).unwrap();
    assert_eq!(store.run(None).unwrap(), recorded);
    drop(store);
    // Opening again migrates nothing.
    backend.open();
    assert_eq!(backend.version(), STORE_VERSION);
}

fn a_store_from_a_newer_steward_is_refused(backend: &dyn Backend) {
    let mut store = backend.open();
    store
        .record_run(&run("01", RunKind::Apply, Vec::new()))
        .unwrap();
    drop(store);
    backend.set_version(STORE_VERSION + 1);
    let err = backend.try_open().err().expect("refused");
    match &err {
        StoreError::TooNew {
            found, supported, ..
        } => assert_eq!((*found, *supported), (STORE_VERSION + 1, STORE_VERSION)),
        other => panic!("not TooNew: {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("written by a newer steward"), "{text}");
    assert!(text.contains("upgrade steward"), "{text}");
    // Nothing was changed.
    assert_eq!(backend.version(), STORE_VERSION + 1);
}

#[test]
fn an_unreachable_postgresql_server_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let err = PostgresStore::connect("postgres://steward:secret@127.0.0.1:1/fleet")
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Database { .. }), "{text}");
    assert!(
        text.starts_with(
            "cannot use PostgreSQL database `fleet` on 127.0.0.1:1: error connecting to server: "
        ),
        "{text}"
    );
    assert!(
        !text.contains("secret"),
        "the password is never shown: {text}"
    );
    let err = PostgresStore::connect("postgres://[nope")
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .starts_with("cannot use the PostgreSQL URL: invalid connection string"),
        "{err}"
    );
}

fn another_programs_database_is_refused(backend: &dyn Backend) {
    backend.add_foreign_table();
    let err = backend.try_open().err().expect("refused");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("is not a steward store"), "{err}");
}
