//! Controllers on one shared PostgreSQL database (issue 16): `serve --database URL --key-file
//! K` keeps the store, the CA and the admin token in the database, so every controller of it
//! enrols and verifies every node, and `serve --migrate-from DIR` moves an embedded controller
//! there. Real controllers, agents and a real server (`STEWARD_TEST_POSTGRES`, which `.ci/run`
//! starts); without it these tests fail, saying so.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fleet_harness::*;
use crate::pg::Postgres;

/// `--database URL --key-file K`, as every shared controller and `token create` take them.
fn shared(db: &Postgres, key: &Path) -> Vec<String> {
    vec![
        "--database".into(),
        db.url.clone(),
        "--key-file".into(),
        key.display().to_string(),
    ]
}

/// A controller on the shared database, in a test directory of its own.
fn shared_controller(db: &Postgres, key: &Path) -> Fleet {
    let args = shared(db, key);
    Fleet::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// A join token for `name` made by `token create` against the shared database.
fn shared_token(fleet: &Fleet, db: &Postgres, key: &Path, name: &str) -> String {
    let args = shared(db, key);
    let mut all: Vec<&str> = vec!["--name", name, "--tags", "role=web", "--ttl", "1h"];
    all.extend(args.iter().map(String::as_str));
    fleet.token_with(&all)
}

fn node_names(fleet: &Fleet) -> Vec<String> {
    let out = fleet.cli(&["nodes", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let nodes: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

/// A shared `serve` on `data` that must fail before it serves: its standard error, after
/// checking it exited 1. `extra` goes after `--database URL --key-file KEY`.
fn serve_refused(db: &Postgres, key: &Path, data: &Path, extra: &[&std::ffi::OsStr]) -> String {
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .args(["--database", &db.url, "--key-file"])
        .arg(key)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    stderr
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("keys").join("steward.key")
}

/// The first controller makes the key file, the CA and the admin token; the second, given
/// the same key file, uses them: both data directories hold the same `ca.crt` and
/// `admin.token`. A node enrolled through one is known to the other, and when its controller
/// dies it fails over to the other, which accepts its certificate.
#[test]
#[ignore = "needs PostgreSQL: STEWARD_TEST_POSTGRES (.ci/run starts one)"]
fn two_controllers_share_the_ca_the_admin_token_and_the_nodes() {
    let db = Postgres::new();
    let keys = tempfile::tempdir().unwrap();
    let key = key_path(keys.path());
    let a = shared_controller(&db, &key);
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert!(key_text.starts_with("steward-key-v1:"), "{key_text}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let mut b = shared_controller(&db, &key);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), key_text);
    for file in ["ca.crt", "admin.token"] {
        assert_eq!(
            std::fs::read(a.data.join(file)).unwrap(),
            std::fs::read(b.data.join(file)).unwrap(),
            "{file} differs between the controllers"
        );
    }
    assert!(!b.data.join("ca.key").exists(), "a shared CA key on disk");

    // A token made against the database enrols through the other controller.
    let token = shared_token(&a, &db, &key, "web-1");
    let mut agent = b.agent_command_to(
        &format!("{},{}", b.agent_addr, a.agent_addr),
        "web-1",
        "web-1",
        "",
    );
    agent.args(["--token", &token]);
    b.agents
        .push(("web-1".to_string(), Reaped(agent.spawn().unwrap())));
    b.wait_online(&["web-1"]);
    assert_eq!(node_names(&a), ["web-1"], "{}", a.logs());

    // Its controller dies: the agent fails over to the other, which verifies its certificate.
    b.kill_controller();
    a.wait_online(&["web-1"]);
    let log = std::fs::read_to_string(b.agent_log("web-1")).unwrap();
    assert_eq!(log.matches("enrolled with").count(), 1, "{log}");
    assert!(
        log.contains(&format!("connected to {} as web-1", a.agent_addr)),
        "{log}"
    );

    // And it is managed there: an apply through the first controller.
    let project = a.env.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("site.yaml"),
        "steward: 1\nassociations:\n  web:\n    targets: { tags: { role: web } }\nresources:\n  file:/motd:\n    content: \"shared\\n\"\n",
    )
    .unwrap();
    let out = a.cli(&["apply", "project", "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.all(), a.logs());
    assert_eq!(
        std::fs::read_to_string(b.root("web-1").join("motd")).ok(),
        Some("shared\n".to_string()),
        "{}",
        out.all()
    );
}

/// A controller given another key file than the one that sealed the database's CA refuses
/// to start, naming the key file, and makes no CA of its own.
#[test]
#[ignore = "needs PostgreSQL: STEWARD_TEST_POSTGRES (.ci/run starts one)"]
fn a_controller_with_another_key_file_refuses_to_start() {
    let db = Postgres::new();
    let keys = tempfile::tempdir().unwrap();
    let _first = shared_controller(&db, &key_path(keys.path()));
    let other = keys.path().join("other.key");
    let data = keys.path().join("second");
    let stderr = serve_refused(&db, &other, &data, &[]);
    assert!(
        stderr.contains(&format!("the key file {} (key ", other.display()))
            && stderr.contains("does not open this database's secrets"),
        "{stderr}"
    );
    assert!(!data.join("ca.key").exists() && !data.join("ca.crt").exists());
}

/// `--key-file` without `--database` (and the reverse) is a usage error before anything is
/// made.
#[test]
fn database_and_key_file_go_together() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for args in [
        vec!["--database", "postgres://steward@127.0.0.1:1/x"],
        vec!["--key-file", "k"],
    ] {
        let out = bin()
            .args(["serve", "--data-dir", data.to_str().unwrap()])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("required"), "{args:?}: {stderr}");
        assert!(!data.exists(), "{args:?} made the data directory");
    }
}

/// An embedded controller with an enrolled node and an applied run moves into an empty
/// database: the new controller has its CA (the agent's certificate is accepted with no new
/// enrollment), its admin token, its nodes and its runs, and the plan after the apply is a
/// no-op through it. A second copy into the same database is refused.
#[test]
#[ignore = "needs PostgreSQL: STEWARD_TEST_POSTGRES (.ci/run starts one)"]
fn an_embedded_controller_migrates_into_an_empty_database() {
    let db = Postgres::new();
    let mut old = Fleet::start();
    let next = free_addr();
    let token = old.bound_token("web-1", "role=web");
    let mut agent =
        old.agent_command_to(&format!("{},{next}", old.agent_addr), "web-1", "web-1", "");
    agent.args(["--token", &token]);
    old.agents
        .push(("web-1".to_string(), Reaped(agent.spawn().unwrap())));
    old.wait_online(&["web-1"]);
    let project = old.env.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("site.yaml"),
        "steward: 1\nassociations:\n  web:\n    targets: { tags: { role: web } }\nresources:\n  file:/motd:\n    content: \"before the move\\n\"\n",
    )
    .unwrap();
    let out = old.cli(&["apply", "project", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let runs_before = old.cli(&["runs", "--format", "json"]);
    assert_eq!(runs_before.code, 0, "{}", runs_before.all());
    let audit_before = audit_log(&old);
    assert!(
        audit_before
            .iter()
            .any(|e| e["action"] == "POST /v1/runs" && e["outcome"] == "ok"),
        "{audit_before:?}"
    );

    // Not while its controller runs: the store would move on under the copy.
    let keys = tempfile::tempdir().unwrap();
    let key = key_path(keys.path());
    let old_data = old.data.clone();
    let migrate_old = ["--migrate-from".as_ref(), old_data.as_os_str()];
    let stderr = serve_refused(&db, &key, &keys.path().join("early"), &migrate_old);
    assert!(
        stderr.contains(&format!("--migrate-from {}", old.data.display()))
            && stderr.contains("is in use by steward serve"),
        "{stderr}"
    );
    old.kill_controller();

    let migrate = ["--migrate-from".to_string(), old.data.display().to_string()];
    let mut args = shared(&db, &key);
    args.extend(migrate.iter().cloned());
    let mut new = Fleet::unstarted(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // At the address the agent knows.
    std::fs::write(new.env.path().join("serve.log"), "").unwrap();
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        new.start_controller(&next, "127.0.0.1:0")
    }));
    assert!(started.is_ok(), "{}", new.logs());
    let serve_log = std::fs::read_to_string(new.env.path().join("serve.log")).unwrap();
    assert!(
        serve_log.contains("copied the controller in"),
        "{serve_log}"
    );
    assert_eq!(
        std::fs::read(new.data.join("admin.token")).unwrap(),
        std::fs::read(old.data.join("admin.token")).unwrap()
    );
    assert_eq!(
        std::fs::read(new.data.join("ca.crt")).unwrap(),
        std::fs::read(old.data.join("ca.crt")).unwrap()
    );

    // The agent reaches the new controller with its old certificate.
    wait_for("web-1 online", Duration::from_secs(60), || {
        new.online().contains(&"web-1".to_string()).then_some(())
    });
    let log = std::fs::read_to_string(old.agent_log("web-1")).unwrap();
    assert_eq!(log.matches("enrolled with").count(), 1, "{log}");
    assert_eq!(node_names(&new), ["web-1"]);
    let runs_after = new.cli(&["runs", "--format", "json"]);
    let ids = |out: &crate::common::Output| -> Vec<String> {
        let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        value["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&runs_after), ids(&runs_before));
    std::fs::create_dir_all(new.env.path().join("project")).unwrap();
    std::fs::copy(
        project.join("site.yaml"),
        new.env.path().join("project/site.yaml"),
    )
    .unwrap();
    let plan = new.cli(&["plan", "project", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());

    // The audit log came along whole, and what the new controller appends (the plan's
    // request) takes ids after the copied ones: PostgreSQL's sequence was moved past them.
    let audit_after = audit_log(&new);
    let copied_max = audit_before
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .max()
        .unwrap();
    let (copied, appended): (Vec<_>, Vec<_>) = audit_after
        .iter()
        .cloned()
        .partition(|e| e["id"].as_i64().unwrap() <= copied_max);
    assert_eq!(copied, audit_before);
    assert!(
        appended
            .iter()
            .any(|e| e["action"] == "POST /v1/runs" && e["outcome"] == "ok"),
        "{appended:?}"
    );

    // Once is all: the database holds a fleet now.
    let again = tempfile::tempdir().unwrap();
    let stderr = serve_refused(&db, &key, &again.path().join("data"), &migrate_old);
    assert!(
        stderr.contains("the PostgreSQL store is not empty"),
        "{stderr}"
    );
}

/// The audit log as `steward audit --format json` prints it through `fleet`'s controller,
/// oldest first.
fn audit_log(fleet: &Fleet) -> Vec<serde_json::Value> {
    let out = fleet.cli(&["audit", "--format", "json", "--limit", "1000"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let mut entries = answer["entries"].as_array().unwrap().clone();
    entries.reverse();
    entries
}

/// A scheduled association's firing runs once across the controllers of one database, also
/// when it fell due while every controller was down: both start, both find it due, and it
/// runs once (one claims it in the store; the other finds it claimed, or already fired).
#[test]
#[ignore = "needs PostgreSQL: STEWARD_TEST_POSTGRES (.ci/run starts one)"]
fn a_schedule_due_while_every_controller_was_down_fires_once() {
    let db = Postgres::new();
    let keys = tempfile::tempdir().unwrap();
    let key = key_path(keys.path());
    let mut a = shared_controller(&db, &key);
    let token = shared_token(&a, &db, &key, "web-1");
    let mut agent = a.agent_command("web-1", "web-1", "");
    agent.args(["--token", &token]);
    a.agents
        .push(("web-1".to_string(), Reaped(agent.spawn().unwrap())));
    a.wait_online(&["web-1"]);
    let doc = "steward: 1\nassociations:\n  watch:\n    targets: { tags: { role: web } }\n    schedule: \"* * * * *\"\n    mode: detect\nresources:\n  file:/motd:\n    content: \"watched\\n\"\n";
    a.env.write("project/site.yaml", doc);
    let out = a.cli(&["apply", "project", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let scheduled = |fleet: &Fleet| -> Vec<String> {
        let out = fleet.cli(&["runs", "--format", "json"]);
        let runs: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        runs["runs"]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .filter(|r| r["user"] == "scheduler (watch)")
                    .map(|r| r["id"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // A never-run association runs at once.
    wait_for("the first scheduled run", Duration::from_secs(60), || {
        (scheduled(&a).len() == 1).then_some(())
    });

    // Every controller down across a minute's firing.
    let (agents, http) = (a.agent_addr.clone(), a.http.clone());
    a.kill_controller();
    let minute =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60;
    let down = minute(std::time::SystemTime::now());
    while minute(std::time::SystemTime::now()) == down {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));

    // Both start; the missed firing runs once.
    let args = shared(&db, &key);
    let mut b = Fleet::unstarted(&args.iter().map(String::as_str).collect::<Vec<_>>());
    a.start_controller(&agents, http.trim_start_matches("http://"));
    b.start_controller("127.0.0.1:0", "127.0.0.1:0");
    wait_for("the missed firing's run", Duration::from_secs(30), || {
        (scheduled(&b).len() == 2).then_some(())
    });
    // Both schedulers have made their first pass by now; give a second one time to run it
    // twice if it were going to.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        minute(std::time::SystemTime::now()),
        down + 1,
        "the check ran into the next firing; the machine is too slow for this test"
    );
    assert_eq!(scheduled(&a).len(), 2, "{}{}", a.logs(), b.logs());
    let logs = format!("{}{}", a.logs(), b.logs());
    assert_eq!(
        logs.matches("running scheduled association `watch`")
            .count(),
        1,
        "{logs}"
    );
}

/// The store's connections come back by themselves after the server ended them (as a
/// PostgreSQL restart does): the call that finds its connection gone fails, saying so, and the
/// next one works on a new connection, for the store and for the task ledger alike.
#[test]
#[ignore = "needs PostgreSQL: STEWARD_TEST_POSTGRES (.ci/run starts one)"]
fn the_store_connects_again_after_the_server_ended_its_sessions() {
    use steward::store::postgres::PostgresStore;
    use steward::store::{FleetStore, LedgerOp, RunKind, RunRecord, RunStatus, Store};
    let db = Postgres::new();
    let mut store = PostgresStore::connect(&db.url).unwrap();
    let mut ledger = store.open_ledger().unwrap();
    let run = |id: &str| RunRecord {
        id: id.into(),
        kind: RunKind::Apply,
        started_at: "2026-12-03T10:00:00.000Z".into(),
        finished_at: "2026-12-03T10:00:01.000Z".into(),
        user: "u".into(),
        project: "p".into(),
        documents_digest: "d".into(),
        results: Vec::new(),
        status: RunStatus::Complete,
    };
    store.record_run(&run("r1")).unwrap();
    let issue = |id: &str| LedgerOp::Issue {
        id: id.into(),
        node: "web-1".into(),
        run_id: "r1".into(),
        issued_at: "2026-12-03T10:00:00.000Z".into(),
    };
    assert_eq!(ledger.apply(&[&issue("t1")]).unwrap(), vec![Ok(true)]);

    // What a restart does to every session of the database.
    let ended: i64 = db
        .client()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(ended, 2, "the store's and the ledger's connections");

    // The calls that find the connection gone fail with the client's error (the server's
    // "terminating connection", then the socket's reset, as the client learns of it); the
    // client is closed after them, and the next call connects again.
    let connection_error = |text: String| {
        assert!(
            [
                "terminating connection",
                "closed",
                "communicating with the server"
            ]
            .iter()
            .any(|words| text.contains(words)),
            "{text}"
        );
    };
    let mut tries = 0;
    while let Err(err) = store.record_run(&run("r2")) {
        connection_error(err.to_string());
        tries += 1;
        assert!(tries < 3, "still failing after {tries} calls: {err}");
    }
    assert_eq!(store.run(Some("r2")).unwrap().id, "r2");
    let mut tries = 0;
    loop {
        match ledger.apply(&[&issue("t2")]) {
            Ok(done) => {
                assert_eq!(done, vec![Ok(true)]);
                break;
            }
            Err(err) => connection_error(err.to_string()),
        }
        tries += 1;
        assert!(tries < 3, "the ledger still fails after {tries} calls");
    }
    assert_eq!(
        store.task_state("t2", "web-1").unwrap(),
        steward::store::TaskState::Open {
            run_id: "r1".into()
        }
    );
}

/// On a shared database an API token made with `--database --key-file` works on every
/// controller of it, and once revoked is refused by all of them.
#[test]
#[ignore = "needs PostgreSQL: STEWARD_TEST_POSTGRES (.ci/run starts one)"]
fn an_api_token_of_the_database_is_known_and_revoked_on_every_controller() {
    let db = Postgres::new();
    let keys = tempfile::tempdir().unwrap();
    let key = key_path(keys.path());
    let shared = shared(&db, &key);
    let shared: Vec<&str> = shared.iter().map(String::as_str).collect();
    let first = shared_controller(&db, &key);
    let second = shared_controller(&db, &key);
    let mut args = vec!["--api", "--role", "read", "--name", "shared"];
    args.extend(&shared);
    let auth = format!("Bearer {}", first.token_with(&args));
    for fleet in [&first, &second] {
        assert_eq!(http(&fleet.http, "GET", "/v1/nodes", Some(&auth)).0, 200);
        assert_eq!(
            http(&fleet.http, "POST", "/v1/commands", Some(&auth)).0,
            403
        );
    }
    let mut list = vec!["token", "list", "--data-dir", second.data.to_str().unwrap()];
    list.extend(&shared);
    list.extend(["--format", "json"]);
    let listed = second.cli(&list);
    assert_eq!(listed.code, 0, "{}", listed.all());
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let id = listed["tokens"][0]["id"].as_str().unwrap().to_string();
    let mut revoke = vec![
        "token",
        "revoke",
        "--data-dir",
        second.data.to_str().unwrap(),
    ];
    revoke.extend(&shared);
    revoke.push(&id);
    let revoked = second.cli(&revoke);
    assert_eq!(revoked.code, 0, "{}", revoked.all());
    for fleet in [&first, &second] {
        assert_eq!(http(&fleet.http, "GET", "/v1/nodes", Some(&auth)).0, 401);
    }
}

/// `serve --migrate-from` copies the API tokens with the rest (`store::copy` reads the tables
/// from SQLite): revoked ones stay revoked.
#[test]
#[ignore = "needs PostgreSQL: STEWARD_TEST_POSTGRES (.ci/run starts one)"]
fn a_copy_into_the_database_carries_the_api_tokens() {
    use steward::store::{ApiTokenRecord, FleetStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    let token = |id: &str, role: &str, target: Option<&str>| ApiTokenRecord {
        id: id.into(),
        name: format!("ci {id}"),
        role: role.into(),
        target: target.map(String::from),
        secret_sha256: "ab".repeat(32),
        created_at: "2026-12-03T10:00:00.000Z".into(),
        expires_at: target.map(|_| "2027-01-01T00:00:00.000Z".to_string()),
        revoked_at: None,
    };
    let scoped = token("aa01", "operate", Some("role=web"));
    let mut source = steward::store::sqlite::SqliteStore::open(&path).unwrap();
    source.insert_api_token(&scoped).unwrap();
    source
        .insert_api_token(&token("aa02", "read", None))
        .unwrap();
    let revoked = source.revoke_api_token("aa02").unwrap();
    drop(source);
    let db = Postgres::new();
    let mut target = steward::store::postgres::PostgresStore::open(&db.config).unwrap();
    let copied = target.copy_from_sqlite(&path).unwrap();
    assert_eq!(copied.rows("api_tokens"), 2);
    assert_eq!(target.api_tokens().unwrap(), vec![scoped, revoked]);
}

/// A schedule switched off through one controller is obeyed by the other, which was not told
/// but reads the switch from the database: at the next firing, B skips the disabled
/// association (and says so in its log) while another association of the same schedule fires.
/// Switched on again through B, it fires at its next due time, and A shows who switched it.
#[test]
#[ignore = "needs PostgreSQL: STEWARD_TEST_POSTGRES (.ci/run starts one)"]
fn a_schedule_switched_off_through_one_controller_is_skipped_by_the_other() {
    use crate::fleet_schedules::{
        between_firings, next_minute_after, schedule_of, scheduled_runs, switch, wait_for_runs,
        write_two_schedules,
    };
    let db = Postgres::new();
    let keys = tempfile::tempdir().unwrap();
    let key = key_path(keys.path());
    let mut a = shared_controller(&db, &key);
    let b = shared_controller(&db, &key);
    let token = shared_token(&a, &db, &key, "web-1");
    let mut agent = a.agent_command("web-1", "web-1", "");
    agent.args(["--token", &token]);
    a.agents
        .push(("web-1".to_string(), Reaped(agent.spawn().unwrap())));
    a.wait_online(&["web-1"]);
    write_two_schedules(&a.env, "project");
    let out = a.cli(&["apply", "project", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.all());
    wait_for_runs(&a, "paused", 1);
    wait_for_runs(&a, "watch", 1);

    let fired = between_firings(&b, &["paused", "watch"]);
    let (n_paused, n_watch) = (
        scheduled_runs(&b, "paused").len(),
        scheduled_runs(&b, "watch").len(),
    );
    let off = switch(&a, "disable", "paused");
    assert_eq!(off["enabled"], false, "{off}");
    wait_for_runs(&b, "watch", n_watch + 1);
    assert_eq!(
        scheduled_runs(&b, "paused").len(),
        n_paused,
        "{}{}",
        a.logs(),
        b.logs()
    );
    let skipped = next_minute_after(&fired);
    assert_eq!(schedule_of(&b, "watch")["last_firing"], skipped.as_str());
    let shown = schedule_of(&b, "paused");
    assert_eq!(shown["enabled"], false, "{shown}");
    assert_eq!(shown["changed_by"], "admin token", "{shown}");
    assert_eq!(shown["next_firing"], serde_json::Value::Null, "{shown}");
    let skip = format!(
        "scheduled association `paused` is disabled: its firing due at {skipped} is skipped"
    );
    assert!(b.logs().contains(&skip), "{}", b.logs());

    between_firings(&a, &["watch"]);
    let n_paused = scheduled_runs(&a, "paused").len();
    let on = switch(&b, "enable", "paused");
    let next = next_minute_after(on["changed_at"].as_str().unwrap());
    assert_eq!(on["next_firing"], next.as_str(), "{on}");
    let seen = schedule_of(&a, "paused");
    assert_eq!(
        (&seen["enabled"], &seen["changed_at"]),
        (&serde_json::json!(true), &on["changed_at"]),
        "{seen}"
    );
    wait_for_runs(&a, "paused", n_paused + 1);
    assert_eq!(schedule_of(&a, "paused")["last_firing"], next.as_str());
    let logs = format!("{}{}", a.logs(), b.logs());
    assert_eq!(
        logs.matches("running scheduled association `paused`")
            .count(),
        n_paused + 1,
        "each firing ran once, on one controller: {logs}"
    );
}

/// `serve --migrate-from`'s copy carries the audit log whole, and PostgreSQL's sequence of its
/// ids goes on past the ids copied, so the next entry appended gets an id of its own; a
/// schedule switch (`enabled`, an integer in SQLite) lands as PostgreSQL's boolean.
#[test]
#[ignore = "needs PostgreSQL: STEWARD_TEST_POSTGRES (.ci/run starts one)"]
fn a_copy_into_the_database_carries_the_audit_log_and_its_ids_go_on() {
    use steward::store::{AuditEntry, AuditQuery, FleetStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    let entry = |n: u16, outcome: &str| AuditEntry {
        at: format!("2026-12-03T10:00:{n:02}.000Z"),
        actor_id: "0123456789abcdef".into(),
        actor: "ci".into(),
        source: "127.0.0.1:40000".into(),
        action: "POST /v1/runs".into(),
        target: "role=web".into(),
        run_id: (n == 2).then(|| "20261203T100002.000Z-ab12".to_string()),
        outcome: outcome.into(),
        status: (outcome != "started").then_some(200 + n),
        detail: format!("entry {n}"),
    };
    let mut source = steward::store::sqlite::SqliteStore::open(&path).unwrap();
    for (n, outcome) in [(1, "started"), (2, "ok"), (3, "refused")] {
        source.append_audit(&entry(n, outcome)).unwrap();
    }
    let query = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    let before = source.audit(&query).unwrap();
    drop(source);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "INSERT INTO schedule_switches (association, enabled, changed_at, changed_by)
             VALUES ('nightly', 0, '2026-12-03T10:00:00.000Z', 'admin'),
                    ('hourly', 1, '2026-12-03T10:00:01.000Z', 'admin')",
        )
        .unwrap();
    let db = Postgres::new();
    let mut target = steward::store::postgres::PostgresStore::open(&db.config).unwrap();
    let copied = target.copy_from_sqlite(&path).unwrap();
    assert_eq!(copied.rows("audit_log"), 3);
    assert_eq!(copied.rows("schedule_switches"), 2);
    assert_eq!(target.audit(&query).unwrap(), before);
    let last = before[0].id;
    let next = target.append_audit(&entry(4, "ok")).unwrap();
    assert!(next > last, "the next id {next} is past the copied {last}");
    assert_eq!(target.audit(&query).unwrap().len(), 4);
    let switches: Vec<(String, bool)> = db
        .client()
        .query(
            "SELECT association, enabled FROM schedule_switches ORDER BY association",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        switches,
        [("hourly".to_string(), true), ("nightly".to_string(), false)]
    );
}
