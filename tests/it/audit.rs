//! The audit log through real processes: a controller, agents and the CLI. The census makes one
//! call of every route of `api::ROUTES` that changes state (walking the table, so a new route
//! cannot be forgotten), a refused call, a scheduled firing, enrolments and token commands,
//! then reads `steward audit` and checks each is there with who, from where, what, on what, in
//! which run and how it ended, and that no secret is in the log, printed or stored.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use steward::fleet::api::ROUTES;

use crate::common::Output;
use crate::fleet_harness::{Fleet, http, http_body, wait_for};

/// One association on `role=web` that checks the file every minute (a schedule that never
/// fired fires at once, once an apply made the project the controller's current one).
const PROJECT: &str = "steward: 1
associations:
  watch:
    targets: { tags: { role: web } }
    schedule: \"* * * * *\"
    mode: detect
resources:
  file:/motd:
    content: \"hello\\n\"
";

/// The CLI against `fleet`'s controller with the token in `token_file`.
fn cli_as(fleet: &Fleet, token_file: &Path, args: &[&str]) -> Output {
    let output = fleet
        .cli_command(args)
        .env("STEWARD_TOKEN_FILE", token_file)
        .output()
        .unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The audit log as `steward audit --format json` prints it, oldest first.
fn audit_entries(fleet: &Fleet) -> Vec<serde_json::Value> {
    let out = fleet.cli(&["audit", "--format", "json", "--limit", "1000"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["kind"], "steward-audit", "{}", out.stdout);
    let mut entries = answer["entries"].as_array().unwrap().clone();
    entries.reverse();
    entries
}

/// A made call and what its audit entries must say.
#[derive(Debug)]
struct Expected {
    /// The route, as `ROUTES` writes it, or the act.
    action: String,
    actor_id: String,
    actor: String,
    /// `Some`: the source is exactly this; `None`: a loopback peer `127.0.0.1:PORT`.
    source: Option<String>,
    target: String,
    run_id: Option<String>,
    outcome: &'static str,
    status: Option<u16>,
}

impl Expected {
    /// Whether `entry` is this call's outcome.
    fn matches(&self, entry: &serde_json::Value) -> bool {
        let source = entry["source"].as_str().unwrap_or_default();
        let source_ok = match &self.source {
            Some(source_wanted) => source == source_wanted,
            None => source
                .strip_prefix("127.0.0.1:")
                .is_some_and(|port| port.parse::<u16>().is_ok()),
        };
        entry["action"] == self.action.as_str()
            && entry["actor_id"] == self.actor_id.as_str()
            && entry["actor"] == self.actor.as_str()
            && source_ok
            && entry["target"] == self.target.as_str()
            && entry["run_id"].as_str() == self.run_id.as_deref()
            && entry["outcome"] == self.outcome
            && entry["status"].as_u64() == self.status.map(u64::from)
    }
}

/// Reads `steward run --format json`'s events from `stdout` until the run began: its id.
fn command_run_id(stdout: &mut impl BufRead) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the command run ended before it began"
        );
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "begin" {
            return event["run_id"].as_str().unwrap().to_string();
        }
    }
}

#[test]
fn every_mutating_route_and_scheduled_act_is_in_the_audit_log_without_a_secret() {
    let mut fleet = Fleet::start();
    let data = fleet.data.clone();
    let admin_token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let admin_token = admin_token.trim().to_string();
    let local_user = {
        let uid = nix::unistd::getuid();
        nix::unistd::User::from_uid(uid).unwrap().unwrap().name
    };
    let local = format!("local CLI (user {local_user})");
    let mut expected: Vec<Expected> = Vec::new();

    // Join tokens (`token create`, local) and the enrolments they make.
    let mut join_tokens = Vec::new();
    for (name, tags) in [("web-1", "role=web"), ("db-1", "role=db")] {
        let token = fleet.bound_token(name, tags);
        let id = steward::fleet::token::JoinToken::parse(&token).unwrap().id;
        expected.push(Expected {
            action: "token create".into(),
            actor_id: "local".into(),
            actor: local.clone(),
            source: Some("local".into()),
            target: id.clone(),
            run_id: None,
            outcome: "ok",
            status: None,
        });
        expected.push(Expected {
            action: "node enrol".into(),
            actor_id: id,
            actor: "join token".into(),
            source: None,
            target: name.into(),
            run_id: None,
            outcome: "ok",
            status: None,
        });
        let child = fleet.agent_process(name, tags, Some(&token));
        fleet.agents.push((name.to_string(), child));
        join_tokens.push(token);
    }
    fleet.wait_online(&["web-1", "db-1"]);

    // API tokens (`token create --api`, local).
    let api_token = |role: &str, name: &str| -> (String, String, std::path::PathBuf) {
        let token = fleet.token_with(&["--api", "--role", role, "--name", name]);
        let id = token.split('_').nth(1).unwrap().to_string();
        let file = fleet
            .env
            .write(&format!("{name}.token"), format!("{token}\n"));
        (token, id, file)
    };
    let (ops_token, ops_id, ops_file) = api_token("operate", "ops é");
    let (reader_token, reader_id, _) = api_token("read", "reader");
    let (planner_token, planner_id, _) = api_token("plan", "planner");
    let (doomed_token, doomed_id, _) = api_token("read", "doomed");
    let db_ops = fleet.token_with(&[
        "--api", "--role", "operate", "--name", "db-ops", "--target", "role=db",
    ]);
    let db_ops_id = db_ops.split('_').nth(1).unwrap().to_string();
    let db_ops_file = fleet.env.write("db-ops.token", format!("{db_ops}\n"));
    for id in [&ops_id, &reader_id, &planner_id, &doomed_id, &db_ops_id] {
        expected.push(Expected {
            action: "token create".into(),
            actor_id: "local".into(),
            actor: local.clone(),
            source: Some("local".into()),
            target: id.clone(),
            run_id: None,
            outcome: "ok",
            status: None,
        });
    }
    let revoked = fleet.cli(&[
        "token",
        "revoke",
        "--data-dir",
        data.to_str().unwrap(),
        &doomed_id,
    ]);
    assert_eq!(revoked.code, 0, "{}", revoked.all());
    expected.push(Expected {
        action: "token revoke".into(),
        actor_id: "local".into(),
        actor: local.clone(),
        source: Some("local".into()),
        target: doomed_id.clone(),
        run_id: None,
        outcome: "ok",
        status: None,
    });

    let ops = |target: &str, route: &str, run_id: Option<String>, outcome, status| Expected {
        action: route.into(),
        actor_id: ops_id.clone(),
        actor: "ops é".into(),
        source: None,
        target: target.into(),
        run_id,
        outcome,
        status: Some(status),
    };
    let admin = |target: &str, route: &str| Expected {
        action: route.into(),
        actor_id: "admin".into(),
        actor: "admin token".into(),
        source: None,
        target: target.into(),
        run_id: None,
        outcome: "ok",
        status: Some(200),
    };
    let runs = |fleet: &Fleet| -> Vec<serde_json::Value> {
        let out = fleet.cli(&["runs", "--format", "json"]);
        assert_eq!(out.code, 0, "{}", out.all());
        let runs: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        runs["runs"].as_array().unwrap().clone()
    };

    // POST /v1/runs: an apply (with an operate token), then a drift that finds a change.
    fleet.env.write("project/site.yaml", PROJECT);
    let apply = cli_as(&fleet, &ops_file, &["apply", "project", "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let apply_id = runs(&fleet)
        .iter()
        .find(|run| run["kind"] == "apply")
        .map(|run| run["id"].as_str().unwrap().to_string())
        .expect("the apply is recorded");
    expected.push(ops(
        "(every association)",
        "POST /v1/runs",
        Some(apply_id),
        "ok",
        200,
    ));
    std::fs::write(fleet.root("web-1").join("motd"), "tampered\n").unwrap();
    let drift = cli_as(&fleet, &ops_file, &["drift", "project"]);
    assert_eq!(drift.code, 0, "{}", drift.all());
    let drift_id = runs(&fleet)
        .iter()
        .find(|run| run["kind"] == "drift" && run["user"] != "scheduler")
        .map(|run| run["id"].as_str().unwrap().to_string())
        .expect("the drift is recorded");
    expected.push(ops(
        "(every association)",
        "POST /v1/runs",
        Some(drift_id),
        "ok",
        200,
    ));

    // POST /v1/findings/{id}/resolve: the finding that drift opened.
    let findings = cli_as(&fleet, &ops_file, &["findings", "--format", "json"]);
    let findings: serde_json::Value = serde_json::from_str(&findings.stdout).unwrap();
    let finding = findings["findings"][0]["id"]
        .as_i64()
        .expect("an open finding");
    let resolved = cli_as(
        &fleet,
        &ops_file,
        &["findings", "resolve", &finding.to_string()],
    );
    assert_eq!(resolved.code, 0, "{}", resolved.all());
    expected.push(ops(
        &finding.to_string(),
        "POST /v1/findings/{id}/resolve",
        None,
        "ok",
        200,
    ));

    // POST /v1/commands and POST /v1/runs/{id}/cancel: a command stopped while it runs.
    let mut command = fleet
        .cli_command(&[
            "run",
            "--target",
            "web-1",
            "--format",
            "json",
            "--",
            "/bin/sleep",
            "60",
        ])
        .env("STEWARD_TOKEN_FILE", &ops_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(command.stdout.take().unwrap());
    let command_id = command_run_id(&mut stdout);
    let cancel = cli_as(&fleet, &ops_file, &["run", "cancel", &command_id]);
    assert_eq!(cancel.code, 0, "{}", cancel.all());
    wait_for(
        "the cancelled command to end",
        Duration::from_secs(30),
        || command.try_wait().unwrap(),
    );
    expected.push(ops(
        "web-1",
        "POST /v1/commands",
        Some(command_id.clone()),
        "ok",
        200,
    ));
    expected.push(ops(
        &command_id,
        "POST /v1/runs/{id}/cancel",
        Some(command_id.clone()),
        "ok",
        200,
    ));

    // POST /v1/nodes/{name}/tags and POST /v1/nodes/{name}/revoke, with the admin token.
    let tagged = fleet.cli(&["node", "tag", "web-1", "zone=a"]);
    assert_eq!(tagged.code, 0, "{}", tagged.all());
    expected.push(admin("web-1", "POST /v1/nodes/{name}/tags"));
    let revoked = fleet.cli(&["node", "revoke", "db-1"]);
    assert_eq!(revoked.code, 0, "{}", revoked.all());
    expected.push(admin("db-1", "POST /v1/nodes/{name}/revoke"));

    // Refused for its role: a read token asking to resolve a finding (the principal is known).
    let (status, body) = http(
        &fleet.http,
        "POST",
        &format!("/v1/findings/{finding}/resolve"),
        Some(&format!("Bearer {reader_token}")),
    );
    assert_eq!(status, 403, "{body}");
    expected.push(Expected {
        action: "POST /v1/findings/{id}/resolve".into(),
        actor_id: reader_id.clone(),
        actor: "reader".into(),
        source: None,
        target: finding.to_string(),
        run_id: None,
        outcome: "refused",
        status: Some(403),
    });
    // Refused in its handler: an apply with a plan token (its body is not in the log). The
    // parameter is no run of hex digits, which the log would hide anyway.
    let secret_param = format!("hunter2-{}", "zq".repeat(10));
    let body = format!(
        r#"{{"mode":"apply","files":[],"project":"p","overrides":{{"password":"{secret_param}"}}}}"#
    );
    let auth = format!("Bearer {planner_token}");
    let (status, answer) = http_body(
        &fleet.http,
        "POST",
        "/v1/runs",
        Some(&auth),
        &body,
        Duration::from_secs(30),
    );
    assert_eq!(status, 403, "{answer}");
    // A malformed body whose parser error would quote it.
    let (status, answer) = http_body(
        &fleet.http,
        "POST",
        "/v1/nodes/web-1/tags",
        Some(&format!("Bearer {admin_token}")),
        &format!(r#"{{"set":"{secret_param}"}}"#),
        Duration::from_secs(30),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains(&secret_param),
        "the parser quotes it: {answer}"
    );

    // Accepted, then refused before it began: a command beyond its token's target.
    let beyond = cli_as(
        &fleet,
        &db_ops_file,
        &["run", "--target", "web-1", "--", "/bin/true"],
    );
    assert_eq!(beyond.code, 1, "{}", beyond.all());
    assert!(beyond.all().contains("web-1"), "{}", beyond.all());

    // Not recorded: no token, a revoked token, a token that is no token (401).
    for auth in [
        None,
        Some(format!("Bearer {doomed_token}")),
        Some("Bearer not-a-token".to_string()),
    ] {
        let (status, body) = http(
            &fleet.http,
            "POST",
            "/v1/nodes/web-1/revoke",
            auth.as_deref(),
        );
        assert_eq!(status, 401, "{body}");
    }

    // The scheduled association `watch` fired once the apply made the project current.
    let scheduled_run = wait_for("the scheduled run", Duration::from_secs(60), || {
        runs(&fleet)
            .iter()
            .find(|run| {
                run["user"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("scheduler"))
            })
            .map(|run| run["id"].as_str().unwrap().to_string())
    });
    let fired = wait_for(
        "the scheduled run's end in the log",
        Duration::from_secs(60),
        || {
            audit_entries(&fleet).into_iter().find(|e| {
                e["action"] == "schedule fire"
                    && e["outcome"] != "started"
                    && e["run_id"] == scheduled_run.as_str()
            })
        },
    );
    assert_eq!(fired["actor_id"], "scheduler", "{fired}");
    assert!(
        fired["source"].as_str().unwrap().starts_with("ctl-"),
        "{fired}"
    );
    assert_eq!(fired["target"], "watch", "{fired}");
    // The drift on a tampered file: not compliant, so the run is `failed`, or `ok` when it ran
    // before the tampering.
    assert!(
        fired["outcome"] == "ok" || fired["outcome"] == "failed",
        "{fired}"
    );
    let entries = audit_entries(&fleet);
    assert!(
        entries.iter().any(|e| e["action"] == "schedule fire"
            && e["outcome"] == "started"
            && e["run_id"] == scheduled_run.as_str()
            && e["id"].as_i64() < fired["id"].as_i64()),
        "no `started` entry of the firing before {fired}"
    );

    // The schedule switches of the API, with the admin token's CLI.
    for (word, route) in [
        ("disable", "POST /v1/schedules/{name}/disable"),
        ("enable", "POST /v1/schedules/{name}/enable"),
    ] {
        let switched = fleet.cli(&["schedules", word, "watch"]);
        assert_eq!(switched.code, 0, "{}", switched.all());
        expected.push(admin("watch", route));
    }

    // The console's forms, in the operate token's session: resolving the finding again (it
    // is resolved: 409, failed), switching the schedule off and on, signing out.
    use crate::console::{csrf_of, page, post_form, session_of, sign_in};
    let cookie = session_of(&sign_in(&fleet, &ops_token, "/"));
    expected.push(ops("", "POST /login", None, "ok", 303));
    let csrf = csrf_of(&page(&fleet, &cookie, "/findings?state=all").body);
    let again = post_form(
        &fleet,
        &cookie,
        &format!("/findings/{finding}/resolve"),
        &[("csrf", &csrf), ("note", "checked twice")],
        &[],
    );
    assert_eq!(again.status, 409, "{}", again.body);
    expected.push(ops(
        &finding.to_string(),
        "POST /findings/{id}/resolve",
        None,
        "failed",
        409,
    ));
    for word in ["disable", "enable"] {
        let switched = post_form(
            &fleet,
            &cookie,
            &format!("/schedules/watch/{word}"),
            &[("csrf", &csrf)],
            &[],
        );
        assert_eq!(switched.status, 303, "{}", switched.body);
        expected.push(ops(
            "watch",
            &format!("POST /schedules/{{name}}/{word}"),
            None,
            "ok",
            303,
        ));
    }
    let out = post_form(&fleet, &cookie, "/logout", &[("csrf", &csrf)], &[]);
    assert_eq!(out.status, 303, "{}", out.body);
    expected.push(ops("", "POST /logout", None, "ok", 303));

    let entries = audit_entries(&fleet);
    let shown = serde_json::to_string_pretty(&entries).unwrap();

    // Every route of ROUTES that changes state was called, and is in the log as made.
    for route in ROUTES.iter().filter(|route| route.method != "GET") {
        let action = format!("{} {}", route.method, route.path);
        assert!(
            expected.iter().any(|call| call.action == action),
            "the audit census makes no call of {action}: add one"
        );
    }
    for call in &expected {
        let at = entries
            .iter()
            .position(|entry| call.matches(entry))
            .unwrap_or_else(|| panic!("no entry for {call:?} in\n{shown}"));
        let outcome = &entries[at];
        // Nothing is done that the log does not show begun: the `started` entry before it,
        // for all but enrolments (one entry, after) and refusals `authenticate` made itself.
        let begun = call.action != "node enrol" && call.outcome != "refused";
        if begun {
            let started = entries[..at].iter().rev().find(|e| {
                e["outcome"] == "started"
                    && e["action"] == outcome["action"]
                    && e["actor_id"] == outcome["actor_id"]
                    && e["source"] == outcome["source"]
            });
            assert!(started.is_some(), "no `started` entry before {outcome}");
            assert!(
                started.unwrap()["id"].as_i64() < outcome["id"].as_i64(),
                "{outcome}"
            );
        }
    }
    // The refusal in the handler, and the malformed body, say why without the body.
    let refused_apply = entries
        .iter()
        .find(|e| e["action"] == "POST /v1/runs" && e["outcome"] == "refused")
        .unwrap_or_else(|| panic!("no refused apply in\n{shown}"));
    assert_eq!(refused_apply["actor_id"], planner_id.as_str());
    assert_eq!(refused_apply["actor"], "planner");
    assert_eq!(refused_apply["status"], 403);
    assert!(
        refused_apply["detail"]
            .as_str()
            .unwrap()
            .contains("needs the operate role"),
        "{refused_apply}"
    );
    let malformed = entries
        .iter()
        .find(|e| e["status"] == 400)
        .unwrap_or_else(|| panic!("no malformed request in\n{shown}"));
    assert_eq!(malformed["outcome"], "failed");
    assert!(
        malformed["detail"]
            .as_str()
            .unwrap()
            .contains("malformed tag request: JSON of another shape"),
        "{malformed}"
    );
    // The command beyond its token's target: accepted under a run id, then `failed`, saying
    // why, under the same id; it never began, so no run has it.
    let of_db_ops: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["actor_id"] == db_ops_id.as_str() && e["action"] == "POST /v1/commands")
        .collect();
    let outcomes: Vec<&str> = of_db_ops
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["started", "ok", "failed"], "{shown}");
    let (accepted, unbegun) = (of_db_ops[1], of_db_ops[2]);
    assert_eq!(accepted["run_id"], unbegun["run_id"], "{unbegun}");
    assert_eq!(unbegun["target"], "web-1", "{unbegun}");
    assert!(
        unbegun["detail"]
            .as_str()
            .unwrap()
            .starts_with("did not begin: ")
            && unbegun["detail"].as_str().unwrap().contains("web-1"),
        "{unbegun}"
    );
    let unbegun_run = unbegun["run_id"].as_str().unwrap();
    assert!(
        !runs(&fleet).iter().any(|run| run["id"] == unbegun_run),
        "a run that never began is recorded"
    );

    // A request without a valid token is not recorded.
    assert!(
        !entries.iter().any(|e| e["status"] == 401),
        "a 401 is recorded:\n{shown}"
    );
    assert!(
        !entries.iter().any(|e| e["actor_id"] == doomed_id.as_str()),
        "the revoked token's refusal is recorded:\n{shown}"
    );

    // Paging: the newest two, then the two before them.
    let page = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["audit", "--format", "json"];
        all.extend_from_slice(args);
        let out = fleet.cli(&all);
        assert_eq!(out.code, 0, "{}", out.all());
        let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        answer["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };
    let first = page(&["--limit", "2"]);
    let second = page(&["--limit", "2", "--before", &first[1].to_string()]);
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 2);
    assert!(first[0] > first[1] && first[1] > second[0] && second[0] > second[1]);
    let of_reader = page(&["--actor", &reader_id]);
    assert_eq!(of_reader.len(), 1, "the read token's refusal, one entry");
    let of_planner = page(&["--actor", &planner_id]);
    assert_eq!(
        of_planner.len(),
        2,
        "the plan token's apply: started, then refused"
    );

    // No secret anywhere: not in what `steward audit` prints, in JSON or as a table, nor in
    // the store's files (the audit log's rows among them).
    let table = fleet.cli(&["audit", "--limit", "1000"]);
    assert_eq!(table.code, 0, "{}", table.all());
    assert!(table.stdout.contains("POST /v1/runs"), "{}", table.stdout);
    let mut secrets = vec![
        admin_token.clone(),
        ops_token.clone(),
        reader_token.clone(),
        planner_token.clone(),
        doomed_token.clone(),
        db_ops.clone(),
        secret_param.clone(),
    ];
    for token in &join_tokens {
        secrets.push(
            steward::fleet::token::JoinToken::parse(token)
                .unwrap()
                .secret,
        );
    }
    for token in [&ops_token, &reader_token, &planner_token, &doomed_token] {
        secrets.push(token.rsplit('_').next().unwrap().to_string());
    }
    for secret in &secrets {
        assert!(!shown.contains(secret.as_str()), "{secret} in\n{shown}");
        assert!(
            !table.stdout.contains(secret.as_str()),
            "{secret} in the table"
        );
    }
    let rows = audit_rows(&data.join("steward.db"));
    assert!(rows.len() >= expected.len(), "{rows:?}");
    for secret in &secrets {
        for row in &rows {
            assert!(!row.contains(secret.as_str()), "{secret} in the row {row}");
        }
        for file in ["steward.db", "steward.db-wal"] {
            let bytes = std::fs::read(data.join(file)).unwrap_or_default();
            assert!(
                !bytes
                    .windows(secret.len())
                    .any(|window| window == secret.as_bytes()),
                "{secret} in {file}"
            );
        }
    }
}

/// Every row of the store's `audit_log`, each column's text joined.
fn audit_rows(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut statement = conn.prepare("SELECT * FROM audit_log ORDER BY id").unwrap();
    let n = statement.column_count();
    statement
        .query_map([], |row| {
            let mut text = Vec::new();
            for idx in 0..n {
                let value: rusqlite::types::Value = row.get(idx)?;
                text.push(format!("{value:?}"));
            }
            Ok(text.join(" | "))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A node renewing its certificate over its connection is in the log as itself, from its
/// address.
#[test]
fn a_certificate_renewal_is_in_the_audit_log() {
    // A one-minute certificate has less than a third of its life left at once.
    let mut fleet = Fleet::start_with(&["--agent-cert-lifetime", "60s"]);
    fleet.add_agent("web-1", "role=web");
    fleet.wait_online(&["web-1"]);
    let renewal = wait_for("the renewal's entry", Duration::from_secs(60), || {
        let out = fleet.cli(&["audit", "--format", "json", "--actor", "node:web-1"]);
        assert_eq!(out.code, 0, "{}", out.all());
        let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        answer["entries"].as_array().unwrap().first().cloned()
    });
    assert_eq!(renewal["action"], "node renew", "{renewal}");
    assert_eq!(renewal["actor"], "node web-1", "{renewal}");
    assert_eq!(renewal["target"], "web-1", "{renewal}");
    assert_eq!(renewal["outcome"], "ok", "{renewal}");
    assert!(
        renewal["source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{renewal}"
    );
    assert!(
        renewal["detail"]
            .as_str()
            .unwrap()
            .starts_with("a new certificate, valid until "),
        "{renewal}"
    );
}

/// When the log cannot take an entry, a change is not made: the API answers 500 and the
/// node's tags stay; `token create` exits 1 and makes no token. Reads go on. Once the log
/// takes entries again, the same change is made and recorded.
#[test]
fn a_change_whose_audit_entry_cannot_be_written_is_not_made() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    let store = rusqlite::Connection::open(fleet.data.join("steward.db")).unwrap();
    // As a full disk would: every append refused, everything else as it was.
    store
        .execute_batch(
            "CREATE TRIGGER audit_log_full BEFORE INSERT ON audit_log
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
    let tags = |fleet: &Fleet| -> serde_json::Value {
        let out = fleet.cli(&["nodes", "--format", "json"]);
        assert_eq!(out.code, 0, "reads go on: {}", out.all());
        let nodes: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        nodes["nodes"][0]["tags"].clone()
    };

    let tagged = fleet.cli(&["node", "tag", "web-1", "zone=a"]);
    assert_eq!(tagged.code, 1, "{}", tagged.all());
    assert!(
        tagged.stderr.contains("500")
            && tagged
                .stderr
                .contains("the audit log cannot be written (POST /v1/nodes/{name}/tags web-1)")
            && tagged.stderr.contains("database or disk is full")
            && tagged.stderr.contains("nothing was done"),
        "{}",
        tagged.all()
    );
    assert_eq!(tags(&fleet), serde_json::json!({ "role": "web" }));
    let made = fleet.cli(&[
        "token",
        "create",
        "--data-dir",
        fleet.data.to_str().unwrap(),
        "--api",
        "--role",
        "read",
    ]);
    assert_eq!(made.code, 1, "{}", made.all());
    assert!(
        made.stderr
            .contains("the audit log cannot be written (token create)")
            && made.stderr.contains("nothing was done"),
        "{}",
        made.all()
    );
    assert!(!made.stdout.contains("stw_"), "{}", made.all());
    let listed = fleet.cli(&[
        "token",
        "list",
        "--data-dir",
        fleet.data.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(listed["tokens"], serde_json::json!([]), "a token was made");
    assert!(
        fleet
            .logs()
            .contains("the audit log cannot be written (POST /v1/nodes/{name}/tags web-1)"),
        "{}",
        fleet.logs()
    );

    store.execute_batch("DROP TRIGGER audit_log_full").unwrap();
    let tagged = fleet.cli(&["node", "tag", "web-1", "zone=a"]);
    assert_eq!(tagged.code, 0, "{}", tagged.all());
    assert_eq!(
        tags(&fleet),
        serde_json::json!({ "role": "web", "zone": "a" })
    );
    let entries = audit_entries(&fleet);
    let outcomes: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["action"] == "POST /v1/nodes/{name}/tags")
        .map(|e| {
            (
                e["outcome"].as_str().unwrap(),
                e["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [("started", ""), ("ok", "tags now role=web,zone=a")],
        "only the change that was made is in the log"
    );
}
