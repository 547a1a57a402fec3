//! One conformance suite for every `Store` backend: each case is written once against
//! `dyn FleetStore` (runs, findings, and the controller's tables) and runs on SQLite (always) and on PostgreSQL (ignored unless
//! `STEWARD_TEST_POSTGRES` names a server; `.ci/run` starts one). Each case gets a store of
//! its own (a temporary file, or a database created for it and dropped after), so they run in
//! parallel.

use crate::pg::Postgres;

use steward::store::postgres::PostgresStore;
use steward::store::sqlite::SqliteStore;
use steward::store::{
    ApiTokenRecord, AuditEntry, AuditQuery, AuditRecord, CurrentProject, FindingKind, FleetStore,
    LedgerOp, NewCert, ResultChange, ResultOutcome, ResultRecord, RoutedClose, RoutedState,
    RoutedTask, RunKind, RunRecord, RunStatus, STORE_VERSION, Severity, Store, StoreError,
    StoredToken, Tags, TaskState,
};

/// Where a case gets its stores: every `open` is a new connection to the case's one store.
trait Backend: Sync {
    /// Opens (creating or migrating) the store.
    fn try_open(&self) -> Result<Box<dyn FleetStore>, StoreError>;
    /// Builds the store at an older schema version, before it is first opened.
    fn create_at_version(&self, version: usize);
    /// The schema version the store says it has.
    fn version(&self) -> i64;
    /// Marks the store as written by a steward of schema `version`.
    fn set_version(&self, version: i64);
    /// Gives the (empty) store another program's table, before it is first opened.
    fn add_foreign_table(&self);
    /// Runs `sql` on a connection of its own, past the store's API (as another program, or a
    /// person with the database's password, would): the database's own error when it refuses.
    fn raw(&self, sql: &str) -> Result<(), String>;
    /// Whether the store is PostgreSQL's.
    fn is_postgres(&self) -> bool;

    fn open(&self) -> Box<dyn FleetStore> {
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
    fn try_open(&self) -> Result<Box<dyn FleetStore>, StoreError> {
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

    fn raw(&self, sql: &str) -> Result<(), String> {
        self.conn()
            .execute_batch(sql)
            .map_err(|err| err.to_string())
    }

    fn is_postgres(&self) -> bool {
        false
    }
}

impl Backend for Postgres {
    fn try_open(&self) -> Result<Box<dyn FleetStore>, StoreError> {
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

    fn raw(&self, sql: &str) -> Result<(), String> {
        self.client().batch_execute(sql).map_err(|err| {
            let cause = std::error::Error::source(&err).map(|c| c.to_string());
            format!("{err}: {}", cause.unwrap_or_default())
        })
    }

    fn is_postgres(&self) -> bool {
        true
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
    a_nodes_runs_are_its_own_newest_first,
    a_runs_progress_is_its_status_and_tasks,
    prune_keeps_the_newest_runs_and_every_finding,
    two_stores_recording_at_once_lose_and_duplicate_nothing,
    stores_opened_at_once_create_and_migrate_once,
    an_old_store_is_migrated_and_reads_back,
    a_store_from_a_newer_steward_is_refused,
    another_programs_database_is_refused,
    a_token_enrolls_once_and_a_refusal_spends_nothing,
    a_token_binding_reads_back_as_stored,
    nodes_renew_tag_and_revoke,
    nodes_list_by_name_byte_by_byte,
    a_token_redeemed_by_two_at_once_is_spent_once,
    tags_set_by_two_at_once_all_land,
    a_result_is_accepted_once_and_only_from_its_node,
    a_ledger_batch_applies_each_op_on_its_own,
    a_begun_run_is_unfinished_until_recorded_whole,
    settled_and_old_closed_tasks_are_forgotten_but_open_ones_stay,
    a_task_closed_by_two_ledgers_at_once_is_closed_once,
    a_secret_keeps_its_first_value,
    secrets_put_by_two_at_once_agree,
    a_firing_is_claimed_once_and_the_latest_is_known,
    a_firing_claimed_by_two_at_once_is_claimed_once,
    a_schedule_switch_changes_only_when_its_state_does,
    schedule_switches_flipped_by_two_at_once_all_land,
    a_store_of_the_previous_version_gains_schedule_switches,
    the_current_project_is_the_newest,
    a_store_of_the_previous_version_gains_the_shared_tables,
    only_a_shared_store_routes_work,
    a_task_claimed_by_two_at_once_is_claimed_once,
    an_expired_lease_is_claimable_again_and_an_expired_task_is_not,
    a_closed_task_is_never_claimed_again,
    an_abandoned_task_takes_no_result_for_its_coordinator,
    only_runs_of_dead_coordinators_are_recovered_and_once,
    a_listener_hears_routed_tasks_and_results,
    a_ledger_batch_routes_tasks_and_stores_their_results,
    a_batch_of_a_thousand_is_announced_whole,
    an_api_token_reads_back_as_stored,
    api_tokens_list_by_id_byte_by_byte,
    an_api_token_is_revoked_once,
    an_api_token_revoked_by_two_at_once_is_revoked_once,
    a_store_of_the_previous_version_gains_api_tokens,
    an_audit_entry_reads_back_as_appended,
    the_audit_log_pages_newest_first_and_filters,
    appends_by_two_at_once_all_land_with_ids_of_their_own,
    the_database_refuses_to_change_or_delete_audit_entries,
    a_store_of_the_previous_version_gains_the_audit_log,
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
            vec![ResultRecord {
                association: Some("baseline".into()),
                ..result("web", "file:/a", ResultOutcome::Drifted)
            }],
        ))
        .unwrap();
    let finding = &store.findings(false).unwrap()[0];
    assert_eq!(finding.association.as_deref(), Some("baseline"));
    let id = finding.id;
    let resolved = store
        .resolve_finding(id, Some("by ops: the disk was replaced"))
        .unwrap();
    assert!(!resolved.open);
    let resolution = resolved.resolution.as_deref().unwrap();
    assert!(
        resolution.starts_with("resolved by hand at "),
        "{resolution}"
    );
    assert!(
        resolution.ends_with(": by ops: the disk was replaced"),
        "{resolution}"
    );
    assert_eq!(store.findings(true).unwrap(), [resolved]);
    assert!(
        matches!(store.resolve_finding(id, None), Err(StoreError::AlreadyResolved(n)) if n == id)
    );
    assert!(matches!(
        store.resolve_finding(id + 100, None),
        Err(StoreError::NoFinding(_))
    ));
}

fn a_nodes_runs_are_its_own_newest_first(backend: &dyn Backend) {
    let mut store = backend.open();
    for (id, nodes) in [
        ("01", &["web", "db"][..]),
        ("02", &["db"]),
        ("03", &["web"]),
    ] {
        let results = nodes
            .iter()
            .flat_map(|node| {
                [
                    result(node, "file:/a", ResultOutcome::Changed),
                    result(node, "file:/b", ResultOutcome::Failed),
                ]
            })
            .collect();
        store.record_run(&run(id, RunKind::Apply, results)).unwrap();
    }
    let web = store.node_runs("web", 10).unwrap();
    let ids: Vec<&str> = web.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["03", "01"]);
    // The counts are the node's own: one changed, one failed, though run 01 had two nodes.
    assert_eq!(web[1].counts, [0, 1, 0, 1, 0]);
    assert_eq!(store.node_runs("web", 1).unwrap().len(), 1);
    assert!(store.node_runs("nobody", 10).unwrap().is_empty());
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

// The controller's tables: join tokens and nodes.

fn token() -> StoredToken {
    StoredToken {
        secret_hash: "h".into(),
        expires_at: "2999-01-01T00:00:00Z".into(),
        ..StoredToken::default()
    }
}

fn cert<'a>(node: &'a str, fingerprint: &'a str, claimed: &'a Tags) -> NewCert<'a> {
    NewCert {
        node,
        fingerprint,
        not_after: "2027-01-01T00:00:00Z",
        claimed_tags: claimed,
    }
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Enrolls `node` with a fresh token `id` whose decision gives `given`.
fn enroll(store: &mut dyn FleetStore, id: &str, node: &str, fingerprint: &str, given: &Tags) {
    store.insert_token(id, &token()).unwrap();
    store
        .enroll_with_token(id, &cert(node, fingerprint, &Tags::new()), &mut |_, _| {
            Ok(given.clone())
        })
        .unwrap()
        .unwrap();
}

fn a_token_enrolls_once_and_a_refusal_spends_nothing(backend: &dyn Backend) {
    let mut store = backend.open();
    store.insert_token("t1", &token()).unwrap();
    assert!(
        store.insert_token("t1", &token()).is_err(),
        "an id is one token"
    );
    let claimed = tags(&[("evil", "yes")]);
    let refused = store
        .enroll_with_token(
            "t1",
            &cert("web-1", "sha256:aa", &claimed),
            &mut |seen, node| {
                assert_eq!(seen, Some(&token()));
                assert!(node.is_none());
                Err("no".into())
            },
        )
        .unwrap();
    assert_eq!(refused, Err("no".to_string()));
    assert!(
        store.node("web-1").unwrap().is_none(),
        "a refusal records no node"
    );
    store
        .enroll_with_token(
            "t1",
            &cert("web-1", "sha256:aa", &claimed),
            &mut |seen, _| {
                assert_eq!(seen.unwrap().used_by, None, "a refusal spent the token");
                Ok(tags(&[("role", "web")]))
            },
        )
        .unwrap()
        .unwrap();
    let node = store.node("web-1").unwrap().unwrap();
    assert_eq!(node.tags, tags(&[("role", "web")]));
    assert_eq!(
        node.claimed_tags, claimed,
        "kept apart from the controller's tags"
    );
    assert_eq!(node.cert_fingerprint, "sha256:aa");
    assert_eq!(node.cert_not_after, "2027-01-01T00:00:00Z");
    assert_eq!(node.facts, serde_json::Value::Null);
    assert!(node.last_seen.is_none() && node.revoked_at.is_none());
    // Spent: the decision sees who used it, and accepting again is the store's refusal.
    let again = store.enroll_with_token(
        "t1",
        &cert("web-2", "sha256:bb", &Tags::new()),
        &mut |seen, _| {
            assert_eq!(seen.unwrap().used_by.as_deref(), Some("web-1"));
            Ok(Tags::new())
        },
    );
    assert!(matches!(again, Err(StoreError::Token(_))), "{again:?}");
    assert!(store.node("web-2").unwrap().is_none());
    let unknown = store
        .enroll_with_token(
            "nope",
            &cert("x", "sha256:aa", &Tags::new()),
            &mut |seen, _| {
                assert!(seen.is_none());
                Err("unknown".into())
            },
        )
        .unwrap();
    assert_eq!(unknown, Err("unknown".to_string()));
    // Another connection sees the same.
    assert_eq!(backend.open().node("web-1").unwrap().unwrap(), node);
}

fn a_token_binding_reads_back_as_stored(backend: &dyn Backend) {
    let mut store = backend.open();
    let bound = StoredToken {
        node: Some("web-5".into()),
        tags: Some(tags(&[("role", "web"), ("zone", "a")])),
        replace_node: true,
        ..token()
    };
    store.insert_token("t1", &bound).unwrap();
    let mut seen_token = None;
    store
        .enroll_with_token(
            "t1",
            &cert("web-5", "sha256:aa", &Tags::new()),
            &mut |seen, _| {
                seen_token = seen.cloned();
                Err("look only".into())
            },
        )
        .unwrap()
        .unwrap_err();
    assert_eq!(seen_token, Some(bound));
}

fn nodes_renew_tag_and_revoke(backend: &dyn Backend) {
    let mut store = backend.open();
    enroll(
        &mut *store,
        "t1",
        "web-1",
        "sha256:aa",
        &tags(&[("role", "web")]),
    );
    assert!(store.node_cert_ok("web-1", "sha256:aa").unwrap());
    assert!(!store.node_cert_ok("web-1", "sha256:bb").unwrap());
    store
        .renew_node_cert("web-1", "sha256:bb", "2027-02-01T00:00:00Z")
        .unwrap();
    assert!(store.node_cert_ok("web-1", "sha256:bb").unwrap());
    assert!(!store.node_cert_ok("web-1", "sha256:aa").unwrap());
    assert!(matches!(
        store.renew_node_cert("nope", "sha256:cc", "2027-02-01T00:00:00Z"),
        Err(StoreError::NoNode(_))
    ));
    let facts = serde_json::json!({"hostname": "h", "os": {"name": "debian"}});
    store
        .node_seen("web-1", &facts, "2026-12-03T10:00:00Z")
        .unwrap();
    let node = store.node("web-1").unwrap().unwrap();
    assert_eq!(node.facts, facts);
    assert_eq!(node.last_seen.as_deref(), Some("2026-12-03T10:00:00Z"));
    assert_eq!(node.cert_not_after, "2027-02-01T00:00:00Z");
    let node = store
        .set_node_tags("web-1", &tags(&[("zone", "a")]), &["role".to_string()])
        .unwrap();
    assert_eq!(node.tags, tags(&[("zone", "a")]));
    assert_eq!(
        store.node("web-1").unwrap().unwrap().tags,
        tags(&[("zone", "a")])
    );
    assert!(matches!(
        store.set_node_tags("nope", &Tags::new(), &[]),
        Err(StoreError::NoNode(_))
    ));
    let revoked = store.revoke_node("web-1").unwrap();
    let at = revoked.revoked_at.clone().expect("revoked");
    assert!(!store.node_cert_ok("web-1", "sha256:bb").unwrap());
    assert_eq!(
        store.revoke_node("web-1").unwrap().revoked_at,
        Some(at),
        "revoked once"
    );
    assert!(matches!(
        store.set_node_tags("web-1", &Tags::new(), &[]),
        Err(StoreError::Revoked(_))
    ));
    assert!(matches!(
        store.renew_node_cert("web-1", "sha256:cc", "2027-03-01T00:00:00Z"),
        Err(StoreError::NoNode(_))
    ));
    assert!(matches!(
        store.revoke_node("nope"),
        Err(StoreError::NoNode(_))
    ));
    assert!(!store.node_cert_ok("nope", "sha256:aa").unwrap());
    // A revoked name enrolls again (when the decision allows it), un-revoked and fresh.
    enroll(&mut *store, "t2", "web-1", "sha256:cc", &Tags::new());
    let node = store.node("web-1").unwrap().unwrap();
    assert!(node.revoked_at.is_none() && node.last_seen.is_none());
    assert!(node.tags.is_empty());
    assert_eq!(node.facts, serde_json::Value::Null);
    assert!(store.node_cert_ok("web-1", "sha256:cc").unwrap());
}

fn nodes_list_by_name_byte_by_byte(backend: &dyn Backend) {
    let mut store = backend.open();
    assert!(store.nodes().unwrap().is_empty());
    for (n, name) in ["web-b", "Web-c", "web-a"].into_iter().enumerate() {
        enroll(
            &mut *store,
            &format!("t{n}"),
            name,
            "sha256:aa",
            &Tags::new(),
        );
    }
    let names: Vec<String> = store.nodes().unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["Web-c", "web-a", "web-b"]);
}

fn a_token_redeemed_by_two_at_once_is_spent_once(backend: &dyn Backend) {
    const ROUNDS: usize = 5;
    let mut stores = [backend.open(), backend.open()];
    for round in 0..ROUNDS {
        stores[0]
            .insert_token(&format!("t{round}"), &token())
            .unwrap();
    }
    let barrier = std::sync::Barrier::new(2);
    let wins: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter_mut()
            .enumerate()
            .map(|(n, store)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut wins = 0;
                    for round in 0..ROUNDS {
                        barrier.wait();
                        let name = format!("n{n}-{round}");
                        let enrolled = store.enroll_with_token(
                            &format!("t{round}"),
                            &cert(&name, "sha256:aa", &Tags::new()),
                            // The policy: an unused token enrolls.
                            &mut |seen, _| match seen {
                                Some(t) if t.used_by.is_none() => Ok(Tags::new()),
                                _ => Err("used".into()),
                            },
                        );
                        if matches!(enrolled, Ok(Ok(()))) {
                            wins += 1;
                        }
                    }
                    wins
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        wins.iter().sum::<usize>(),
        ROUNDS,
        "one enrollment per token: {wins:?}"
    );
    assert_eq!(backend.open().nodes().unwrap().len(), ROUNDS);
}

fn tags_set_by_two_at_once_all_land(backend: &dyn Backend) {
    const PER_STORE: usize = 10;
    let mut first = backend.open();
    enroll(&mut *first, "t1", "web-1", "sha256:aa", &Tags::new());
    let mut stores = [first, backend.open()];
    std::thread::scope(|scope| {
        for (n, store) in stores.iter_mut().enumerate() {
            scope.spawn(move || {
                for i in 0..PER_STORE {
                    let key = format!("k{n}-{i:02}");
                    store
                        .set_node_tags("web-1", &tags(&[(&key, "v")]), &[])
                        .unwrap();
                }
            });
        }
    });
    let node = backend.open().node("web-1").unwrap().unwrap();
    assert_eq!(
        node.tags.len(),
        2 * PER_STORE,
        "a tag was lost: {:?}",
        node.tags
    );
}

// The task ledger and runs in progress.

fn begun(id: &str) -> RunRecord {
    let mut record = run("00", RunKind::Apply, Vec::new());
    record.id = id.into();
    record.status = RunStatus::Running;
    record.finished_at = String::new();
    record
}

fn issue(id: &str, node: &str, run_id: &str) -> LedgerOp {
    LedgerOp::Issue {
        id: id.into(),
        node: node.into(),
        run_id: run_id.into(),
        issued_at: format!("2026-12-03T10:00:00.{id}Z"),
    }
}

fn close(id: &str, node: &str, result: &str) -> LedgerOp {
    LedgerOp::Close {
        id: id.into(),
        node: node.into(),
        result: result.into(),
        at: "2026-12-03T10:00:00.500Z".into(),
    }
}

fn withdraw(id: &str) -> LedgerOp {
    LedgerOp::Withdraw { id: id.into() }
}

fn a_runs_progress_is_its_status_and_tasks(backend: &dyn Backend) {
    let mut store = backend.open();
    assert_eq!(store.run_progress("r1").unwrap(), None);
    store.begin_run(&begun("r1")).unwrap();
    let mut ledger = store.open_ledger().unwrap();
    ledger
        .apply(&[&issue("001", "web-1", "r1"), &issue("002", "web-2", "r1")])
        .unwrap();
    ledger.apply(&[&close("002", "web-2", "{}")]).unwrap();
    let progress = store.run_progress("r1").unwrap().unwrap();
    assert_eq!(progress.status, RunStatus::Running);
    let tasks: Vec<(&str, bool)> = progress
        .tasks
        .iter()
        .map(|t| (t.node.as_str(), t.closed_at.is_some()))
        .collect();
    assert_eq!(tasks, [("web-1", false), ("web-2", true)]);
    let mut finished = run("00", RunKind::Apply, Vec::new());
    finished.id = "r1".into();
    store.record_run(&finished).unwrap();
    assert_eq!(
        store.run_progress("r1").unwrap().unwrap().status,
        RunStatus::Complete
    );
}

fn a_result_is_accepted_once_and_only_from_its_node(backend: &dyn Backend) {
    let mut store = backend.open();
    store.begin_run(&begun("r1")).unwrap();
    let mut ledger = store.open_ledger().unwrap();
    assert_eq!(
        ledger.apply(&[&issue("001", "web-1", "r1")]).unwrap(),
        [Ok(true)]
    );
    assert_eq!(
        store.task_state("001", "web-2").unwrap(),
        TaskState::NotIssued
    );
    assert_eq!(
        store.task_state("009", "web-1").unwrap(),
        TaskState::NotIssued
    );
    assert_eq!(
        ledger.apply(&[&close("001", "web-2", "{}")]).unwrap(),
        [Ok(false)],
        "another node's result"
    );
    assert_eq!(
        store.task_state("001", "web-1").unwrap(),
        TaskState::Open {
            run_id: "r1".into()
        }
    );
    let twice = close("001", "web-1", "{}");
    assert_eq!(
        ledger.apply(&[&twice, &twice]).unwrap(),
        [Ok(true), Ok(false)]
    );
    assert_eq!(store.task_state("001", "web-1").unwrap(), TaskState::Closed);
    assert_eq!(
        backend.open().task_state("001", "web-1").unwrap(),
        TaskState::Closed
    );
}

fn a_ledger_batch_applies_each_op_on_its_own(backend: &dyn Backend) {
    let store = backend.open();
    let mut ledger = store.open_ledger().unwrap();
    let (t1, t2, c1) = (
        issue("001", "web-1", "r1"),
        issue("002", "web-1", "r1"),
        close("001", "web-1", "{}"),
    );
    let done = ledger.apply(&[&t1, &t2, &t1, &c1]).unwrap();
    assert_eq!(done[..2], [Ok(true), Ok(true)]);
    assert!(done[2].is_err(), "an id is issued once: {:?}", done[2]);
    assert_eq!(done[3], Ok(true), "the batch went on after the refused op");
    let done = ledger.apply(&[&withdraw("001"), &withdraw("002")]).unwrap();
    assert_eq!(done, [Ok(false), Ok(true)], "a closed task stays");
    assert_eq!(store.task_state("001", "web-1").unwrap(), TaskState::Closed);
    assert_eq!(
        store.task_state("002", "web-1").unwrap(),
        TaskState::NotIssued
    );
    assert_eq!(ledger.apply(&[]).unwrap(), []);
}

fn a_begun_run_is_unfinished_until_recorded_whole(backend: &dyn Backend) {
    let mut store = backend.open();
    assert!(!store.has_run("r1").unwrap());
    store.begin_run(&begun("r1")).unwrap();
    assert!(store.has_run("r1").unwrap());
    assert!(store.begin_run(&begun("r1")).is_err(), "a run begins once");
    let mut ledger = store.open_ledger().unwrap();
    let ops = [
        issue("002", "web-2", "r1"),
        issue("001", "web-1", "r1"),
        close("001", "web-1", "{\"x\":1}"),
    ];
    ledger.apply(&ops.iter().collect::<Vec<_>>()).unwrap();
    let unfinished = store.unfinished_runs().unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(unfinished[0].run, begun("r1"));
    let tasks: Vec<(&str, &str, Option<&str>)> = unfinished[0]
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), t.node.as_str(), t.result.as_deref()))
        .collect();
    assert_eq!(
        tasks,
        [("001", "web-1", Some("{\"x\":1}")), ("002", "web-2", None)],
        "in the order they were issued"
    );
    let mut whole = run("01", RunKind::Apply, Vec::new());
    whole.id = "r1".into();
    store.record_run(&whole).unwrap();
    assert!(store.unfinished_runs().unwrap().is_empty());
    assert_eq!(store.run(Some("r1")).unwrap(), whole);
    assert!(store.has_run("r1").unwrap());
    // The stored result went with the record; the closed task is still known.
    assert_eq!(store.task_state("001", "web-1").unwrap(), TaskState::Closed);
}

fn settled_and_old_closed_tasks_are_forgotten_but_open_ones_stay(backend: &dyn Backend) {
    let mut store = backend.open();
    let mut ledger = store.open_ledger().unwrap();
    let ops = [
        issue("001", "web-1", "plan1"),
        issue("002", "web-1", "plan1"),
        close("001", "web-1", "{}"),
    ];
    ledger.apply(&ops.iter().collect::<Vec<_>>()).unwrap();
    store.settle_plan_tasks("plan1").unwrap();
    assert!(
        store.unfinished_runs().unwrap().is_empty(),
        "a plan is no run"
    );
    assert!(!store.has_run("plan1").unwrap());
    assert_eq!(store.task_state("001", "web-1").unwrap(), TaskState::Closed);
    assert_eq!(store.prune_tasks("2026-12-03T10:00:00.400Z").unwrap(), 0);
    assert_eq!(store.prune_tasks("2026-12-04T00:00:00.000Z").unwrap(), 1);
    assert_eq!(
        store.task_state("001", "web-1").unwrap(),
        TaskState::NotIssued
    );
    assert!(matches!(
        store.task_state("002", "web-1").unwrap(),
        TaskState::Open { .. }
    ));
}

fn a_task_closed_by_two_ledgers_at_once_is_closed_once(backend: &dyn Backend) {
    const TASKS: usize = 40;
    let store = backend.open();
    let ids: Vec<String> = (0..TASKS).map(|i| format!("{i:03}")).collect();
    let issues: Vec<LedgerOp> = ids.iter().map(|id| issue(id, "web-1", "r1")).collect();
    store
        .open_ledger()
        .unwrap()
        .apply(&issues.iter().collect::<Vec<_>>())
        .unwrap();
    let barrier = std::sync::Barrier::new(2);
    let closed: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|n| {
                let (barrier, ids) = (&barrier, &ids);
                let mut ledger = store.open_ledger().unwrap();
                scope.spawn(move || {
                    barrier.wait();
                    let mut closed = 0;
                    // One close per batch, so the two ledgers' transactions interleave.
                    for id in ids {
                        let op = close(id, "web-1", &format!("{{\"by\":{n}}}"));
                        if ledger.apply(&[&op]).unwrap() == [Ok(true)] {
                            closed += 1;
                        }
                    }
                    closed
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        closed.iter().sum::<usize>(),
        TASKS,
        "each task closed once: {closed:?}"
    );
}

// What the controllers of one database share.

fn a_secret_keeps_its_first_value(backend: &dyn Backend) {
    let mut store = backend.open();
    assert_eq!(store.get_secret("ca.key").unwrap(), None);
    // Opaque bytes: every value, NUL and invalid UTF-8 included.
    let first: Vec<u8> = (0..=255).collect();
    assert_eq!(store.put_secret_if_absent("ca.key", &first).unwrap(), first);
    assert_eq!(
        store.put_secret_if_absent("ca.key", b"second").unwrap(),
        first,
        "the first writer wins"
    );
    assert_eq!(store.get_secret("ca.key").unwrap(), Some(first.clone()));
    assert_eq!(store.put_secret_if_absent("empty", b"").unwrap(), b"");
    assert_eq!(store.get_secret("empty").unwrap(), Some(Vec::new()));
    assert_eq!(store.get_secret("CA.KEY").unwrap(), None, "names are exact");
    assert_eq!(backend.open().get_secret("ca.key").unwrap(), Some(first));
}

fn secrets_put_by_two_at_once_agree(backend: &dyn Backend) {
    const ROUNDS: usize = 10;
    let mut stores = [backend.open(), backend.open()];
    let barrier = std::sync::Barrier::new(2);
    let got: Vec<Vec<Vec<u8>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter_mut()
            .enumerate()
            .map(|(n, store)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    (0..ROUNDS)
                        .map(|round| {
                            barrier.wait();
                            let mine = format!("value of {n}").into_bytes();
                            store
                                .put_secret_if_absent(&format!("s{round}"), &mine)
                                .unwrap()
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let store = backend.open();
    for (round, (first, second)) in got[0].iter().zip(&got[1]).enumerate() {
        let stored = store.get_secret(&format!("s{round}")).unwrap().unwrap();
        assert_eq!((first, second), (&stored, &stored), "round {round}");
    }
    assert_eq!(got[0].len(), ROUNDS);
}

fn a_firing_is_claimed_once_and_the_latest_is_known(backend: &dyn Backend) {
    let mut store = backend.open();
    assert!(store.last_firings().unwrap().is_empty());
    let due = |minute: u32| format!("2026-12-03T10:{minute:02}:00Z");
    assert!(store.claim_firing("nightly", &due(0), "c1").unwrap());
    assert!(
        !store.claim_firing("nightly", &due(0), "c1").unwrap(),
        "once"
    );
    assert!(
        !backend
            .open()
            .claim_firing("nightly", &due(0), "c2")
            .unwrap(),
        "once, whichever controller asks"
    );
    assert!(store.claim_firing("nightly", &due(30), "c2").unwrap());
    assert!(
        store.claim_firing("nightly", &due(15), "c1").unwrap(),
        "a missed one, late"
    );
    assert!(store.claim_firing("Hourly", &due(5), "c1").unwrap());
    let last: Vec<(String, String)> = store.last_firings().unwrap().into_iter().collect();
    assert_eq!(
        last,
        [
            ("Hourly".to_string(), due(5)),
            ("nightly".to_string(), due(30))
        ]
    );
}

fn a_firing_claimed_by_two_at_once_is_claimed_once(backend: &dyn Backend) {
    const DUE_TIMES: usize = 20;
    let mut stores = [backend.open(), backend.open()];
    let barrier = std::sync::Barrier::new(2);
    let claims: Vec<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter_mut()
            .enumerate()
            .map(|(n, store)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut claims = 0;
                    for i in 0..DUE_TIMES {
                        barrier.wait();
                        let due = format!("2026-12-03T10:{i:02}:00Z");
                        if store
                            .claim_firing("nightly", &due, &format!("c{n}"))
                            .unwrap()
                        {
                            claims += 1;
                        }
                    }
                    claims
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        claims.iter().sum::<usize>(),
        DUE_TIMES,
        "each due time once: {claims:?}"
    );
    assert_eq!(
        backend.open().last_firings().unwrap()["nightly"],
        format!("2026-12-03T10:{:02}:00Z", DUE_TIMES - 1)
    );
}

fn a_schedule_switch_changes_only_when_its_state_does(backend: &dyn Backend) {
    let mut store = backend.open();
    assert!(store.schedule_switches().unwrap().is_empty());
    // Without a switch an association is on: turning it on writes nothing.
    store
        .set_schedule_enabled("nightly", true, "alice")
        .unwrap();
    assert!(store.schedule_switches().unwrap().is_empty());

    store
        .set_schedule_enabled("nightly", false, "alice")
        .unwrap();
    let off = store.schedule_switches().unwrap()["nightly"].clone();
    assert!(!off.enabled);
    assert_eq!(off.changed_by, "alice");
    assert!(
        chrono::DateTime::parse_from_rfc3339(&off.changed_at).is_ok(),
        "{off:?}"
    );
    // Off again, by someone else: the switch is as the first one left it.
    std::thread::sleep(std::time::Duration::from_millis(5));
    backend
        .open()
        .set_schedule_enabled("nightly", false, "bob")
        .unwrap();
    assert_eq!(store.schedule_switches().unwrap()["nightly"], off);

    std::thread::sleep(std::time::Duration::from_millis(5));
    store
        .set_schedule_enabled("nightly", true, "carol")
        .unwrap();
    let on = store.schedule_switches().unwrap()["nightly"].clone();
    assert!(on.enabled);
    assert_eq!(on.changed_by, "carol");
    assert!(on.changed_at > off.changed_at, "{on:?} after {off:?}");
    store.set_schedule_enabled("nightly", true, "dave").unwrap();
    assert_eq!(store.schedule_switches().unwrap()["nightly"], on);

    // By association, byte by byte, whichever connection asks.
    for name in ["web", "Zeta", "alpha"] {
        store.set_schedule_enabled(name, false, "alice").unwrap();
    }
    let names: Vec<String> = backend
        .open()
        .schedule_switches()
        .unwrap()
        .into_keys()
        .collect();
    assert_eq!(names, ["Zeta", "alpha", "nightly", "web"]);
}

fn schedule_switches_flipped_by_two_at_once_all_land(backend: &dyn Backend) {
    const ROUNDS: usize = 20;
    let mut stores = [backend.open(), backend.open()];
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter_mut()
            .enumerate()
            .map(|(n, store)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    for round in 0..ROUNDS {
                        // Both turn a new switch off at once (two inserts of one key), then
                        // both turn it on again at once.
                        let name = format!("a{round:02}");
                        barrier.wait();
                        store
                            .set_schedule_enabled(&name, false, &format!("c{n}"))
                            .unwrap();
                        barrier.wait();
                        if round % 2 == 0 {
                            store
                                .set_schedule_enabled(&name, true, &format!("c{n}"))
                                .unwrap();
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
    let switches = backend.open().schedule_switches().unwrap();
    assert_eq!(switches.len(), ROUNDS, "{switches:?}");
    for (round, (name, switch)) in switches.iter().enumerate() {
        assert_eq!(name, &format!("a{round:02}"));
        assert_eq!(switch.enabled, round % 2 == 0, "{name}: {switch:?}");
        assert!(
            ["c0", "c1"].contains(&switch.changed_by.as_str()),
            "{switch:?}"
        );
    }
}

fn a_store_of_the_previous_version_gains_schedule_switches(backend: &dyn Backend) {
    // Version 8: before the switches of version 9.
    backend.create_at_version(8);
    let mut store = backend.open();
    assert_eq!(backend.version(), STORE_VERSION);
    assert!(store.schedule_switches().unwrap().is_empty());
    store
        .set_schedule_enabled("nightly", false, "alice")
        .unwrap();
    assert!(!store.schedule_switches().unwrap()["nightly"].enabled);
}

fn the_current_project_is_the_newest(backend: &dyn Backend) {
    let mut store = backend.open();
    assert_eq!(store.current_project().unwrap(), None);
    let project = |name: &str, digest: &str| CurrentProject {
        name: name.into(),
        digest: digest.into(),
        files_json: format!("{{\"{name}.yaml\":\"é 🦀\"}}"),
    };
    store.put_project(&project("web", "sha256:01")).unwrap();
    assert_eq!(
        store.current_project().unwrap(),
        Some(project("web", "sha256:01"))
    );
    backend
        .open()
        .put_project(&project("db", "sha256:02"))
        .unwrap();
    assert_eq!(
        store.current_project().unwrap(),
        Some(project("db", "sha256:02")),
        "the newest, whoever stored it"
    );
}

fn a_store_of_the_previous_version_gains_the_shared_tables(backend: &dyn Backend) {
    // Version 5: before the shared tables of version 6.
    backend.create_at_version(5);
    let mut store = backend.open();
    assert_eq!(backend.version(), STORE_VERSION);
    assert_eq!(
        store.put_secret_if_absent("ca.crt", b"pem").unwrap(),
        b"pem"
    );
    assert!(
        store
            .claim_firing("nightly", "2026-12-03T10:00:00Z", "c1")
            .unwrap()
    );
    assert_eq!(store.current_project().unwrap(), None);
}

// Work routing between the controllers of one database (PostgreSQL only).

/// A routed task of run `r1` for `node`.
fn routed(id: &str, node: &str) -> RoutedTask {
    RoutedTask {
        id: id.into(),
        node: node.into(),
        run_id: "r1".into(),
        issued_at: format!("2026-12-03T10:00:00.{id}Z"),
        payload: format!("{{\"task\":\"{id}\"}}"),
    }
}

/// A start window and a lease long enough that no test outlives them.
const HOUR_MS: i64 = 3_600_000;

/// The store, or `None` (after checking that it refuses routing) when it is not shared.
fn shared(backend: &dyn Backend) -> Option<Box<dyn FleetStore>> {
    let mut store = backend.open();
    if store.is_shared() {
        return Some(store);
    }
    let refused = store.route_task(&routed("001", "web-1"), None, HOUR_MS, HOUR_MS);
    assert!(
        matches!(refused, Err(StoreError::NotShared(_))),
        "{refused:?}"
    );
    None
}

fn claimed_ids(store: &mut dyn FleetStore, by: &str, nodes: &[&str], lease_ms: i64) -> Vec<String> {
    let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    store
        .claim_tasks(by, &nodes, lease_ms)
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect()
}

fn only_a_shared_store_routes_work(backend: &dyn Backend) {
    let mut store = backend.open();
    if store.is_shared() {
        store
            .route_task(&routed("001", "web-1"), None, HOUR_MS, HOUR_MS)
            .unwrap();
        let twice = store.route_task(&routed("001", "web-1"), None, HOUR_MS, HOUR_MS);
        assert!(twice.is_err(), "an id is routed once");
        let claimed = store
            .claim_tasks("c1", &["web-1".to_string()], HOUR_MS)
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].payload, "{\"task\":\"001\"}");
        assert_eq!(store.routed_state("001").unwrap(), RoutedState::Held);
    } else {
        for refused in [
            store
                .route_task(&routed("001", "web-1"), None, HOUR_MS, HOUR_MS)
                .map(|_| ()),
            store.claim_tasks("c1", &[], HOUR_MS).map(|_| ()),
            store.close_routed("001", "web-1", "{}").map(|_| ()),
            store.listen().map(|_| ()),
        ] {
            assert!(
                matches!(refused, Err(StoreError::NotShared(_))),
                "{refused:?}"
            );
        }
    }
}

fn a_task_claimed_by_two_at_once_is_claimed_once(backend: &dyn Backend) {
    const TASKS: usize = 60;
    let Some(mut store) = shared(backend) else {
        return;
    };
    for i in 0..TASKS {
        let node = format!("web-{}", i % 3);
        store
            .route_task(&routed(&format!("{i:03}"), &node), None, HOUR_MS, HOUR_MS)
            .unwrap();
    }
    let barrier = std::sync::Barrier::new(2);
    let claims: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["c1", "c2"]
            .into_iter()
            .map(|by| {
                let barrier = &barrier;
                let mut store = backend.open();
                scope.spawn(move || {
                    barrier.wait();
                    let mut mine = Vec::new();
                    // Many small rounds, so the two claimers' transactions interleave.
                    for _ in 0..TASKS {
                        mine.extend(claimed_ids(
                            store.as_mut(),
                            by,
                            &["web-0", "web-1", "web-2"],
                            HOUR_MS,
                        ));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<&String> = claims.iter().flatten().collect();
    all.sort();
    let n_claimed = all.len();
    all.dedup();
    assert_eq!(
        (n_claimed, all.len()),
        (TASKS, TASKS),
        "every task claimed, and once: {claims:?}"
    );
    assert!(claimed_ids(store.as_mut(), "c3", &["web-0", "web-1", "web-2"], HOUR_MS).is_empty());
}

fn an_expired_lease_is_claimable_again_and_an_expired_task_is_not(backend: &dyn Backend) {
    let Some(mut store) = shared(backend) else {
        return;
    };
    store
        .route_task(&routed("001", "web-1"), None, HOUR_MS, HOUR_MS)
        .unwrap();
    // Only the nodes asked for are claimed.
    assert!(claimed_ids(store.as_mut(), "c1", &["web-2"], HOUR_MS).is_empty());
    // A lease that ends before it begins has lapsed at once.
    assert_eq!(claimed_ids(store.as_mut(), "c1", &["web-1"], -1), ["001"]);
    assert_eq!(
        store.routed_state("001").unwrap(),
        RoutedState::Waiting {
            claimed: true,
            expired: false
        }
    );
    assert_eq!(
        claimed_ids(store.as_mut(), "c2", &["web-1"], HOUR_MS),
        ["001"]
    );
    // A live lease holds it, and its holder renews it while it holds the node.
    assert!(claimed_ids(store.as_mut(), "c1", &["web-1"], HOUR_MS).is_empty());
    assert_eq!(
        store
            .renew_leases("c1", &["web-1".into()], HOUR_MS)
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .renew_leases("c2", &["web-1".into()], HOUR_MS)
            .unwrap(),
        1
    );
    // Released (the node left c2), it is claimable at once, and still counts as sent; its
    // holder does not renew it back.
    assert_eq!(store.release_tasks("c2", "web-1").unwrap(), 1);
    assert_eq!(
        store
            .renew_leases("c2", &["web-1".into()], HOUR_MS)
            .unwrap(),
        0
    );
    assert!(
        !store.withdraw_unclaimed("001").unwrap(),
        "it was sent once"
    );
    assert_eq!(
        claimed_ids(store.as_mut(), "c1", &["web-1"], HOUR_MS),
        ["001"]
    );
    // A task whose start window ended is claimed by nobody, even with its lease lapsed.
    store
        .route_task(&routed("002", "web-1"), None, -1, HOUR_MS)
        .unwrap();
    assert_eq!(
        store.routed_state("002").unwrap(),
        RoutedState::Waiting {
            claimed: false,
            expired: true
        }
    );
    assert!(claimed_ids(store.as_mut(), "c1", &["web-1"], HOUR_MS).is_empty());
    // One never claimed can be withdrawn (its node is connected nowhere).
    assert!(store.withdraw_unclaimed("002").unwrap());
    assert_eq!(store.routed_state("002").unwrap(), RoutedState::Gone);
}

fn a_closed_task_is_never_claimed_again(backend: &dyn Backend) {
    let Some(mut store) = shared(backend) else {
        return;
    };
    // Held by the controller that sends it down its own session.
    store
        .route_task(&routed("001", "web-1"), Some("c1"), HOUR_MS, -1)
        .unwrap();
    assert_eq!(
        store.close_routed("001", "web-2", "{}").unwrap(),
        RoutedClose::NotIssued,
        "another node's result"
    );
    assert_eq!(
        store.close_routed("001", "web-1", "{\"ok\":1}").unwrap(),
        RoutedClose::Stored
    );
    assert_eq!(
        store.close_routed("001", "web-1", "{\"ok\":2}").unwrap(),
        RoutedClose::Closed
    );
    assert_eq!(
        store.routed_state("001").unwrap(),
        RoutedState::Answered("{\"ok\":1}".into())
    );
    assert_eq!(store.task_state("001", "web-1").unwrap(), TaskState::Closed);
    // Its lease lapsed, and still nobody claims it, nor renews or releases it.
    assert!(claimed_ids(store.as_mut(), "c2", &["web-1"], HOUR_MS).is_empty());
    assert_eq!(
        store
            .renew_leases("c1", &["web-1".into()], HOUR_MS)
            .unwrap(),
        0
    );
    assert_eq!(store.release_tasks("c1", "web-1").unwrap(), 0);
    assert!(claimed_ids(store.as_mut(), "c2", &["web-1"], HOUR_MS).is_empty());
    // The coordinator that gives up late still gets the stored result.
    assert_eq!(
        store.abandon_task("001").unwrap().as_deref(),
        Some("{\"ok\":1}")
    );
}

fn an_abandoned_task_takes_no_result_for_its_coordinator(backend: &dyn Backend) {
    let Some(mut store) = shared(backend) else {
        return;
    };
    store
        .route_task(&routed("001", "web-1"), None, HOUR_MS, HOUR_MS)
        .unwrap();
    assert_eq!(claimed_ids(store.as_mut(), "c1", &["web-1"], -1), ["001"]);
    assert_eq!(store.abandon_task("001").unwrap(), None);
    assert_eq!(store.routed_state("001").unwrap(), RoutedState::Gone);
    assert!(
        claimed_ids(store.as_mut(), "c2", &["web-1"], HOUR_MS).is_empty(),
        "nobody sends an abandoned task"
    );
    // Its result is the late result's to record; then the ledger closes it.
    assert_eq!(
        store.close_routed("001", "web-1", "{}").unwrap(),
        RoutedClose::Abandoned
    );
    assert!(matches!(
        store.task_state("001", "web-1").unwrap(),
        TaskState::Open { .. }
    ));
    let mut ledger = store.open_ledger().unwrap();
    assert_eq!(
        ledger.apply(&[&close("001", "web-1", "{}")]).unwrap(),
        [Ok(true)]
    );
    assert_eq!(
        store.close_routed("001", "web-1", "{}").unwrap(),
        RoutedClose::Closed
    );
}

fn only_runs_of_dead_coordinators_are_recovered_and_once(backend: &dyn Backend) {
    let Some(mut store) = shared(backend) else {
        return;
    };
    let mut listener = store.listen().unwrap();
    listener.heartbeat("live").unwrap();
    store.begin_run_by(&begun("r-live"), "live").unwrap();
    store.begin_run_by(&begun("r-dead"), "dead").unwrap();
    store.begin_run(&begun("r-none")).unwrap();
    let mut answered = routed("001", "web-1");
    answered.run_id = "r-dead".into();
    let mut open = routed("002", "web-2");
    open.run_id = "r-dead".into();
    for task in [&answered, &open] {
        store
            .route_task(task, Some("dead"), HOUR_MS, HOUR_MS)
            .unwrap();
    }
    assert_eq!(
        store.close_routed("001", "web-1", "{\"ok\":1}").unwrap(),
        RoutedClose::Stored
    );
    let barrier = std::sync::Barrier::new(2);
    let recovered: Vec<Vec<(String, Vec<Option<String>>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let barrier = &barrier;
                let mut store = backend.open();
                scope.spawn(move || {
                    barrier.wait();
                    let mut seen = Vec::new();
                    let ids = store
                        .recover_orphaned_runs(HOUR_MS, &mut |unfinished| {
                            seen.push((
                                unfinished.run.id.clone(),
                                unfinished.tasks.iter().map(|t| t.result.clone()).collect(),
                            ));
                            let mut record = unfinished.run;
                            record.status = RunStatus::Interrupted;
                            record.finished_at = "2026-12-03T10:01:00Z".into();
                            record
                        })
                        .unwrap();
                    assert_eq!(
                        ids,
                        seen.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>()
                    );
                    seen
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<_> = recovered.into_iter().flatten().collect();
    all.sort();
    assert_eq!(
        all,
        [
            (
                "r-dead".to_string(),
                vec![Some("{\"ok\":1}".to_string()), None]
            ),
            ("r-none".to_string(), vec![]),
        ],
        "each orphan recovered once, with the results that arrived; the live one left alone"
    );
    assert_eq!(
        store.run(Some("r-dead")).unwrap().status,
        RunStatus::Interrupted
    );
    assert_eq!(
        store.run(Some("r-live")).unwrap().status,
        RunStatus::Running
    );
    // Its open task is abandoned: claimed by nobody, its result a late one.
    assert!(claimed_ids(store.as_mut(), "live", &["web-2"], -1).is_empty());
    assert_eq!(
        store.close_routed("002", "web-2", "{}").unwrap(),
        RoutedClose::Abandoned
    );
}

fn a_listener_hears_routed_tasks_and_results(backend: &dyn Backend) {
    use steward::store::Notice;
    let Some(mut store) = shared(backend) else {
        return;
    };
    let mut listener = store.listen().unwrap();
    // The first wait connects and listens; nothing was said yet.
    assert_eq!(
        listener.wait(std::time::Duration::from_millis(10)).unwrap(),
        []
    );
    store
        .route_task(&routed("001", "web-1"), None, HOUR_MS, HOUR_MS)
        .unwrap();
    // A held task is not announced: its holder sends it itself.
    store
        .route_task(&routed("002", "web-2"), Some("c1"), HOUR_MS, HOUR_MS)
        .unwrap();
    store.close_routed("002", "web-2", "{}").unwrap();
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let more = listener.wait(std::time::Duration::from_secs(30)).unwrap();
        assert!(!more.is_empty(), "no notice within 30 s; heard {heard:?}");
        heard.extend(more);
    }
    assert_eq!(
        heard,
        [
            Notice::Task {
                node: "web-1".into()
            },
            Notice::Result { id: "002".into() },
        ]
    );
}

fn route(id: &str, node: &str, held_by: Option<&str>) -> LedgerOp {
    LedgerOp::Route {
        task: routed(id, node),
        held_by: held_by.map(str::to_string),
        window_ms: HOUR_MS,
        lease_ms: HOUR_MS,
    }
}

fn answer(id: &str, node: &str, result: &str) -> LedgerOp {
    LedgerOp::Answer {
        id: id.into(),
        node: node.into(),
        result: result.into(),
        at: "2026-12-03T10:00:05Z".into(),
    }
}

fn a_ledger_batch_routes_tasks_and_stores_their_results(backend: &dyn Backend) {
    let mut store = backend.open();
    let mut ledger = store.open_ledger().unwrap();
    if !store.is_shared() {
        let refused = ledger
            .apply(&[&route("001", "web-1", None), &answer("001", "web-1", "{}")])
            .unwrap();
        assert!(
            refused
                .iter()
                .all(|r| r.as_ref().is_err_and(|e| e.contains("shared"))),
            "{refused:?}"
        );
        return;
    }
    // One batch: a task held at once, one for the claimers, another task under a used id,
    // and the same task again (a batch tried again after its commit's answer was lost).
    let mut other = route("001", "web-1", None);
    if let LedgerOp::Route { task, .. } = &mut other {
        task.payload = "{\"task\":\"other\"}".into();
    }
    let outcomes = ledger
        .apply(&[
            &route("001", "web-1", Some("c1")),
            &route("002", "web-2", None),
            &other,
            &route("001", "web-1", Some("c1")),
        ])
        .unwrap();
    assert_eq!(outcomes[..2], [Ok(true), Ok(true)]);
    assert!(outcomes[2].is_err(), "an id is routed once: {outcomes:?}");
    assert_eq!(outcomes[3], Ok(true), "the same task again is taken");
    assert_eq!(store.routed_state("001").unwrap(), RoutedState::Held);
    assert_eq!(
        claimed_ids(store.as_mut(), "c2", &["web-1", "web-2"], HOUR_MS),
        ["002"]
    );
    // Results: stored once, only from the task's node, never for an abandoned task.
    store
        .route_task(&routed("003", "web-3"), Some("c1"), HOUR_MS, HOUR_MS)
        .unwrap();
    assert_eq!(store.abandon_task("003").unwrap(), None);
    let outcomes = ledger
        .apply(&[
            &answer("001", "web-9", "{\"from\":9}"),
            &answer("001", "web-1", "{\"ok\":1}"),
            &answer("001", "web-1", "{\"ok\":2}"),
            &answer("003", "web-3", "{}"),
            &answer("404", "web-1", "{}"),
        ])
        .unwrap();
    assert_eq!(
        outcomes,
        [Ok(false), Ok(true), Ok(false), Ok(false), Ok(false)]
    );
    assert_eq!(
        store.routed_state("001").unwrap(),
        RoutedState::Answered("{\"ok\":1}".into())
    );
    // The store tells why the others were not stored.
    assert_eq!(
        store.close_routed("001", "web-1", "{}").unwrap(),
        RoutedClose::Closed
    );
    assert_eq!(
        store.close_routed("003", "web-3", "{}").unwrap(),
        RoutedClose::Abandoned
    );
    assert_eq!(
        store.close_routed("404", "web-1", "{}").unwrap(),
        RoutedClose::NotIssued
    );
}

fn a_batch_of_a_thousand_is_announced_whole(backend: &dyn Backend) {
    use steward::store::Notice;
    let Some(mut store) = shared(backend) else {
        return;
    };
    const TASKS: usize = 1000;
    let mut listener = store.listen().unwrap();
    assert_eq!(
        listener.wait(std::time::Duration::from_millis(10)).unwrap(),
        []
    );
    let mut ledger = store.open_ledger().unwrap();
    // Long names, so the notices of one batch are several.
    let node = |i: usize| format!("node-{i:04}-{}", "x".repeat(40));
    let routes: Vec<LedgerOp> = (0..TASKS)
        .map(|i| route(&format!("{i:04}"), &node(i), None))
        .collect();
    let outcomes = ledger.apply(&routes.iter().collect::<Vec<_>>()).unwrap();
    assert!(outcomes.iter().all(|o| *o == Ok(true)));
    let nodes: Vec<String> = (0..TASKS).map(node).collect();
    let claimed = store.claim_tasks("c1", &nodes, HOUR_MS).unwrap();
    assert_eq!(claimed.len(), TASKS);
    let answers: Vec<LedgerOp> = (0..TASKS)
        .map(|i| answer(&format!("{i:04}"), &node(i), "{}"))
        .collect();
    let outcomes = ledger.apply(&answers.iter().collect::<Vec<_>>()).unwrap();
    assert!(outcomes.iter().all(|o| *o == Ok(true)));
    let mut tasks = std::collections::BTreeSet::new();
    let mut results = std::collections::BTreeSet::new();
    while tasks.len() < TASKS || results.len() < TASKS {
        let heard = listener.wait(std::time::Duration::from_secs(30)).unwrap();
        assert!(
            !heard.is_empty(),
            "no notice within 30 s; heard {} tasks and {} results",
            tasks.len(),
            results.len()
        );
        for notice in heard {
            match notice {
                Notice::Task { node } => assert!(tasks.insert(node), "a node announced twice"),
                Notice::Result { id } => assert!(results.insert(id), "a result announced twice"),
            }
        }
    }
    assert_eq!(tasks, nodes.into_iter().collect());
}

// API tokens.

/// An API token `id` of `role`, made at second `n`, never revoked.
fn api_token(id: &str, role: &str, n: u32) -> ApiTokenRecord {
    ApiTokenRecord {
        id: id.into(),
        name: format!("ci é {id}"),
        role: role.into(),
        target: None,
        secret_sha256: format!("{:064x}", n),
        created_at: format!("2026-12-03T10:00:{n:02}.000Z"),
        expires_at: None,
        revoked_at: None,
    }
}

fn an_api_token_reads_back_as_stored(backend: &dyn Backend) {
    let mut store = backend.open();
    let plain = api_token("0a1b2c3d4e5f6071", "read", 1);
    let scoped = ApiTokenRecord {
        target: Some("role=web,db-1".into()),
        expires_at: Some("2026-12-04T10:00:02.000Z".into()),
        ..api_token("8899aabbccddeeff", "operate", 2)
    };
    store.insert_api_token(&plain).unwrap();
    // A revoked_at given to insert is not stored: a new token is not revoked.
    store
        .insert_api_token(&ApiTokenRecord {
            revoked_at: Some("2026-12-03T10:00:03.000Z".into()),
            ..scoped.clone()
        })
        .unwrap();
    let other = backend.open();
    assert_eq!(other.api_token(&plain.id).unwrap(), Some(plain.clone()));
    assert_eq!(other.api_token(&scoped.id).unwrap(), Some(scoped.clone()));
    assert_eq!(other.api_token("ffffffffffffffff").unwrap(), None);
    // An id is one token's.
    assert!(
        store
            .insert_api_token(&api_token(&plain.id, "admin", 4))
            .is_err()
    );
    assert_eq!(other.api_token(&plain.id).unwrap(), Some(plain));
}

fn api_tokens_list_by_id_byte_by_byte(backend: &dyn Backend) {
    let mut store = backend.open();
    assert_eq!(store.api_tokens().unwrap(), Vec::new());
    for (n, id) in ["b0", "a1", "B2", "a10"].iter().enumerate() {
        store
            .insert_api_token(&api_token(id, "plan", n as u32))
            .unwrap();
    }
    store.revoke_api_token("a1").unwrap();
    let ids: Vec<String> = backend
        .open()
        .api_tokens()
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["B2", "a1", "a10", "b0"], "revoked ones included");
}

fn an_api_token_is_revoked_once(backend: &dyn Backend) {
    let mut store = backend.open();
    store
        .insert_api_token(&api_token("00aa", "admin", 1))
        .unwrap();
    store
        .insert_api_token(&api_token("00bb", "admin", 2))
        .unwrap();
    let revoked = store.revoke_api_token("00aa").unwrap();
    let at = revoked.revoked_at.clone().expect("revoked_at is set");
    assert_eq!(
        revoked,
        ApiTokenRecord {
            revoked_at: Some(at.clone()),
            ..api_token("00aa", "admin", 1)
        }
    );
    assert_eq!(backend.open().api_token("00aa").unwrap(), Some(revoked));
    match backend.open().revoke_api_token("00aa") {
        Err(StoreError::ApiTokenRevoked { id, revoked_at }) => {
            assert_eq!((id.as_str(), revoked_at.as_str()), ("00aa", at.as_str()));
        }
        other => panic!("a second revoke: {other:?}"),
    }
    assert_eq!(
        store.api_token("00aa").unwrap().unwrap().revoked_at,
        Some(at),
        "the first revocation's time stays"
    );
    assert_eq!(store.api_token("00bb").unwrap().unwrap().revoked_at, None);
    assert!(matches!(
        store.revoke_api_token("00cc"),
        Err(StoreError::NoApiToken(id)) if id == "00cc"
    ));
    assert_eq!(store.api_token("00cc").unwrap(), None);
}

fn an_api_token_revoked_by_two_at_once_is_revoked_once(backend: &dyn Backend) {
    backend
        .open()
        .insert_api_token(&api_token("0123", "read", 1))
        .unwrap();
    let barrier = std::sync::Barrier::new(2);
    let answers: Vec<Result<ApiTokenRecord, StoreError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut store = backend.open();
                    barrier.wait();
                    store.revoke_api_token("0123")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let revoked: Vec<&ApiTokenRecord> = answers.iter().filter_map(|a| a.as_ref().ok()).collect();
    assert_eq!(revoked.len(), 1, "{answers:?}");
    let at = revoked[0].revoked_at.clone().unwrap();
    let refused = answers.iter().find_map(|a| a.as_ref().err()).unwrap();
    assert!(
        matches!(refused, StoreError::ApiTokenRevoked { revoked_at, .. } if *revoked_at == at),
        "{refused:?}"
    );
    assert_eq!(
        backend
            .open()
            .api_token("0123")
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at)
    );
}

fn a_store_of_the_previous_version_gains_api_tokens(backend: &dyn Backend) {
    // Version 7: before the API tokens of version 8.
    backend.create_at_version(7);
    let mut store = backend.open();
    assert_eq!(backend.version(), STORE_VERSION);
    assert_eq!(store.api_tokens().unwrap(), Vec::new());
    store.insert_api_token(&api_token("77", "read", 7)).unwrap();
    assert_eq!(
        store.api_token("77").unwrap(),
        Some(api_token("77", "read", 7))
    );
}

// The audit log.

/// Entry `n` of the actor `actor_id`, for run `run` when given.
fn audit_entry(n: u32, actor_id: &str, run: Option<&str>) -> AuditEntry {
    AuditEntry {
        at: format!("2026-12-03T10:00:{:02}.000Z", n % 60),
        actor_id: actor_id.into(),
        actor: format!("ci é {actor_id}"),
        source: format!("127.0.0.1:{}", 40000 + n),
        action: "POST /v1/runs".into(),
        target: format!("role=web,n{n}"),
        run_id: run.map(String::from),
        outcome: "ok".into(),
        status: Some(200),
        detail: format!("entry {n} 🦀"),
    }
}

/// The ids of `records`, in their order.
fn audit_ids(records: &[AuditRecord]) -> Vec<i64> {
    records.iter().map(|r| r.id).collect()
}

fn an_audit_entry_reads_back_as_appended(backend: &dyn Backend) {
    let mut store = backend.open();
    let all = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    assert_eq!(store.audit(&all).unwrap(), Vec::new());
    let first = audit_entry(1, "0a1b2c3d4e5f6071", Some("20261203T100001.000Z-ab12"));
    let bare = AuditEntry {
        run_id: None,
        status: None,
        target: String::new(),
        outcome: "refused".into(),
        ..audit_entry(2, "scheduler", None)
    };
    let a = store.append_audit(&first).unwrap();
    let b = store.append_audit(&bare).unwrap();
    assert!(b > a, "ids grow: {a} then {b}");
    let read = backend.open().audit(&all).unwrap();
    assert_eq!(
        read,
        vec![
            AuditRecord { id: b, entry: bare },
            AuditRecord {
                id: a,
                entry: first
            },
        ],
        "as appended, newest first"
    );
}

fn the_audit_log_pages_newest_first_and_filters(backend: &dyn Backend) {
    let mut store = backend.open();
    let mut ids = Vec::new();
    for n in 0..25 {
        let actor = if n % 5 == 0 { "admin" } else { "0123" };
        let run = (n % 2 == 0).then(|| format!("run-{n}"));
        ids.push(
            store
                .append_audit(&audit_entry(n, actor, run.as_deref()))
                .unwrap(),
        );
    }
    let newest: Vec<i64> = ids.iter().rev().copied().collect();
    let page = |query: AuditQuery| audit_ids(&backend.open().audit(&query).unwrap());
    let first = page(AuditQuery {
        limit: 10,
        ..AuditQuery::default()
    });
    assert_eq!(first, newest[..10]);
    let second = page(AuditQuery {
        limit: 10,
        before: first.last().copied(),
        ..AuditQuery::default()
    });
    assert_eq!(second, newest[10..20]);
    let last = page(AuditQuery {
        limit: 10,
        before: second.last().copied(),
        ..AuditQuery::default()
    });
    assert_eq!(last, newest[20..], "the last page is short");
    assert_eq!(
        page(AuditQuery {
            limit: 10,
            before: Some(ids[0]),
            ..AuditQuery::default()
        }),
        Vec::<i64>::new(),
        "nothing before the first"
    );
    assert_eq!(
        page(AuditQuery {
            limit: 0,
            ..AuditQuery::default()
        }),
        Vec::<i64>::new()
    );
    // Of one actor, of one run, and both with a page.
    let of_admin = page(AuditQuery {
        limit: 100,
        actor_id: Some("admin".into()),
        ..AuditQuery::default()
    });
    assert_eq!(of_admin, [ids[20], ids[15], ids[10], ids[5], ids[0]]);
    let of_run = backend
        .open()
        .audit(&AuditQuery {
            limit: 100,
            run_id: Some("run-4".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(audit_ids(&of_run), [ids[4]]);
    assert_eq!(of_run[0].entry, audit_entry(4, "0123", Some("run-4")));
    assert_eq!(
        page(AuditQuery {
            limit: 2,
            before: Some(ids[15]),
            actor_id: Some("admin".into()),
            run_id: Some("run-10".into()),
        }),
        [ids[10]]
    );
}

fn appends_by_two_at_once_all_land_with_ids_of_their_own(backend: &dyn Backend) {
    const EACH: u32 = 40;
    let barrier = std::sync::Barrier::new(2);
    let appended: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["aaaa", "bbbb"]
            .into_iter()
            .map(|actor| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut store = backend.open();
                    barrier.wait();
                    (0..EACH)
                        .map(|n| store.append_audit(&audit_entry(n, actor, None)).unwrap())
                        .collect::<Vec<i64>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut given: Vec<i64> = appended.concat();
    given.sort_unstable();
    given.dedup();
    assert_eq!(given.len(), 2 * EACH as usize, "an id given twice");
    let stored = backend
        .open()
        .audit(&AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        })
        .unwrap();
    let mut stored_ids = audit_ids(&stored);
    stored_ids.reverse();
    assert_eq!(
        stored_ids, given,
        "every append landed, under the id it was given"
    );
    for (actor, ids) in ["aaaa", "bbbb"].iter().zip(&appended) {
        for (n, id) in ids.iter().enumerate() {
            let record = stored.iter().find(|r| r.id == *id).unwrap();
            assert_eq!(record.entry, audit_entry(n as u32, actor, None));
        }
    }
}

fn the_database_refuses_to_change_or_delete_audit_entries(backend: &dyn Backend) {
    let mut store = backend.open();
    let a = store
        .append_audit(&audit_entry(1, "0123", Some("r1")))
        .unwrap();
    let b = store.append_audit(&audit_entry(2, "0123", None)).unwrap();
    let before = store
        .audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .unwrap();
    let mut attempts = vec![
        format!("UPDATE audit_log SET outcome = 'ok', detail = 'nothing' WHERE id = {a}"),
        "UPDATE audit_log SET actor = 'someone else'".to_string(),
        format!("DELETE FROM audit_log WHERE id = {b}"),
        "DELETE FROM audit_log".to_string(),
    ];
    if backend.is_postgres() {
        // PostgreSQL empties a table without deleting its rows one by one: refused too.
        attempts.push("TRUNCATE audit_log".to_string());
    }
    for sql in &attempts {
        let refused = backend.raw(sql);
        assert!(
            refused
                .as_ref()
                .is_err_and(|err| err.contains("the audit log is append-only")),
            "{sql}: {refused:?}"
        );
    }
    assert_eq!(
        backend
            .open()
            .audit(&AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            })
            .unwrap(),
        before,
        "nothing changed"
    );
    // Appending still works.
    let c = store.append_audit(&audit_entry(3, "0123", None)).unwrap();
    assert!(c > b);
}

fn a_store_of_the_previous_version_gains_the_audit_log(backend: &dyn Backend) {
    // Version 8: before the audit log of version 9.
    backend.create_at_version(8);
    let mut store = backend.open();
    assert_eq!(backend.version(), STORE_VERSION);
    let query = AuditQuery {
        limit: 10,
        ..AuditQuery::default()
    };
    assert_eq!(store.audit(&query).unwrap(), Vec::new());
    let id = store.append_audit(&audit_entry(8, "local", None)).unwrap();
    assert_eq!(
        store.audit(&query).unwrap(),
        vec![AuditRecord {
            id,
            entry: audit_entry(8, "local", None)
        }]
    );
}
