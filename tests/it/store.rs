//! The embedded store on real SQLite files: records, findings, migrations, refusals, concurrency.

use steward::store::sqlite::{STORE_VERSION, SqliteStore};
use steward::store::{
    ResultOutcome, ResultRecord, RunKind, RunRecord, Severity, Store, StoreError,
};

fn result(node: &str, resource: &str, outcome: ResultOutcome) -> ResultRecord {
    ResultRecord {
        node: node.into(),
        resource: resource.into(),
        outcome,
        file: Some("site.yaml".into()),
        line: Some(3),
        column: Some(3),
        diff: (outcome == ResultOutcome::Drifted).then(|| "-old\n+new\n".to_string()),
        change: None,
        message: (outcome == ResultOutcome::Failed).then(|| "permission denied".to_string()),
        duration_ms: 5,
        association: None,
        severity: Severity::High,
    }
}

fn run(id: &str, kind: RunKind, results: Vec<ResultRecord>) -> RunRecord {
    RunRecord {
        id: id.into(),
        kind,
        started_at: format!("2026-11-25T10:00:{id}Z"),
        finished_at: format!("2026-11-25T10:00:{id}Z"),
        user: "tester".into(),
        project: "p".into(),
        documents_digest: "blake3:x".into(),
        results,
        status: steward::store::RunStatus::Complete,
    }
}

#[test]
fn runs_round_trip_and_findings_follow_drift() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    let mut store = SqliteStore::open(&path).unwrap();
    let drifted = run(
        "01",
        RunKind::Drift,
        vec![
            result("local", "file:/a", ResultOutcome::Drifted),
            result("local", "file:/b", ResultOutcome::Unchanged),
        ],
    );
    store.record_run(&drifted).unwrap();
    assert_eq!(store.run(None).unwrap(), drifted);
    let findings = store.findings(false).unwrap();
    assert_eq!(findings.len(), 1);
    assert_eq!(
        (findings[0].resource.as_str(), findings[0].count),
        ("file:/a", 1)
    );

    // The same drift again bumps the finding instead of opening a second one.
    store
        .record_run(&run(
            "02",
            RunKind::Drift,
            vec![result("local", "file:/a", ResultOutcome::Drifted)],
        ))
        .unwrap();
    let findings = store.findings(false).unwrap();
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].count, 2);
    assert_eq!(findings[0].last_run, "02");

    // A repairing apply resolves it.
    store
        .record_run(&run(
            "03",
            RunKind::Apply,
            vec![result("local", "file:/a", ResultOutcome::Changed)],
        ))
        .unwrap();
    assert!(store.findings(false).unwrap().is_empty());
    let all = store.findings(true).unwrap();
    assert!(!all[0].open);
    assert!(all[0].resolution.as_deref().unwrap().contains("run 03"));

    let runs = store.runs().unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["03", "02", "01"]
    );
    assert!(matches!(store.run(Some("nope")), Err(StoreError::NoRun(_))));
    assert_eq!(store.prune(2).unwrap(), 1);
    assert_eq!(store.runs().unwrap().len(), 2);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn findings_can_be_resolved_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
    store
        .record_run(&run(
            "01",
            RunKind::Apply,
            vec![result("local", "exec:x", ResultOutcome::Failed)],
        ))
        .unwrap();
    let id = store.findings(false).unwrap()[0].id;
    let resolved = store.resolve_finding(id, None).unwrap();
    assert!(!resolved.open);
    assert!(matches!(
        store.resolve_finding(999, None),
        Err(StoreError::NoFinding(999))
    ));
}

#[test]
fn an_old_store_is_migrated_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let conn = SqliteStore::create_at_version(&path, 1).unwrap();
    conn.execute_batch(
        "INSERT INTO runs VALUES ('r1', 'drift', '2026-01-01T00:00:00Z', '2026-01-01T00:00:01Z', 'old', 'p', 'd');
         INSERT INTO results (run_id, position, node, resource, outcome, duration_ms) VALUES ('r1', 0, 'local', 'file:/a', 'drifted', 3);",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).unwrap();
    let run = store.run(Some("r1")).unwrap();
    assert_eq!(run.results[0].outcome, ResultOutcome::Drifted);
    assert_eq!(run.results[0].severity, Severity::Unspecified);
    assert!(store.findings(true).unwrap().is_empty());
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, STORE_VERSION);
}

#[test]
fn a_newer_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", STORE_VERSION + 1)
        .unwrap();
    let err = SqliteStore::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    assert!(err.to_string().contains("upgrade steward"));
}

#[test]
fn foreign_and_corrupt_files_are_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(
        &junk,
        b"this is not a database at all, but it is long enough",
    )
    .unwrap();
    let before = std::fs::read(&junk).unwrap();
    let err = SqliteStore::open(&junk).err().unwrap();
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(std::fs::read(&junk).unwrap(), before);

    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")
        .unwrap();
    let before = std::fs::read(&foreign).unwrap();
    let err = SqliteStore::open(&foreign).err().unwrap();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert_eq!(std::fs::read(&foreign).unwrap(), before);
}

#[test]
fn concurrent_writers_both_land() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    drop(SqliteStore::open(&path).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|writer| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut store = SqliteStore::open(&path).unwrap();
                for idx in 0..10 {
                    let id = format!("{writer}{idx:02}");
                    store
                        .record_run(&run(
                            &id,
                            RunKind::Drift,
                            vec![result("local", "file:/a", ResultOutcome::Drifted)],
                        ))
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.runs().unwrap().len(), 40);
    let findings = store.findings(false).unwrap();
    assert_eq!(findings.len(), 1, "one finding, deduplicated");
    assert_eq!(findings[0].count, 40);
}
