//! Scoped API tokens: made, listed and revoked with the CLI (`steward token create --api`,
//! `token list`, `token revoke`), and the role census of the HTTP API.

use steward::fleet::api::ROUTES;
use steward::fleet::api_token::Role;

use crate::common::TestEnv;
use crate::fleet_harness::{Fleet, http};

/// `steward token ...` on the data directory `data`, besides `--data-dir`.
fn token_cli(env: &TestEnv, data: &std::path::Path, args: &[&str]) -> crate::common::Output {
    let (command, rest) = args.split_first().unwrap();
    let mut all = vec!["token", command, "--data-dir", data.to_str().unwrap()];
    all.extend_from_slice(rest);
    env.run(&all)
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|err| panic!("{err}: {text}"))
}

#[test]
fn api_tokens_are_made_listed_and_revoked_without_showing_a_secret_twice() {
    let env = TestEnv::new();
    let data = env.path().join("controller");
    let made = token_cli(
        &env,
        &data,
        &[
            "create", "--api", "--role", "plan", "--name", "ci", "--target", "role=web", "--ttl",
            "30d", "--format", "json",
        ],
    );
    assert_eq!(made.code, 0, "{}", made.all());
    let made = json(&made.stdout);
    assert_eq!(made["kind"], "steward-api-token");
    assert_eq!(made["role"], "plan");
    assert_eq!(made["name"], "ci");
    assert_eq!(made["target"], "role=web");
    assert!(made["expires_at"].is_string(), "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    let token = made["token"].as_str().unwrap().to_string();
    let secret = token
        .strip_prefix(&format!("stw_{id}_"))
        .unwrap_or_else(|| panic!("{token}"))
        .to_string();
    assert_eq!(secret.len(), 64);

    let plain = token_cli(&env, &data, &["create", "--api", "--role", "read"]);
    assert_eq!(plain.code, 0, "{}", plain.all());
    assert!(plain.stdout.trim().starts_with("stw_"), "{}", plain.all());

    let listed = token_cli(&env, &data, &["list", "--format", "json"]);
    assert_eq!(listed.code, 0, "{}", listed.all());
    assert!(!listed.stdout.contains(&secret), "{}", listed.stdout);
    let listed = json(&listed.stdout);
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{listed}");
    let ci = tokens.iter().find(|t| t["id"] == id.as_str()).unwrap();
    assert_eq!(ci["role"], "plan");
    assert_eq!(ci["target"], "role=web");
    assert_eq!(ci["status"], "active");
    assert!(ci.get("secret_sha256").is_none(), "{ci}");
    let table = token_cli(&env, &data, &["list"]);
    assert!(
        table.stdout.contains(&id) && table.stdout.contains("role=web"),
        "{}",
        table.all()
    );
    assert!(!table.stdout.contains(&secret), "{}", table.stdout);
    // The secret is nowhere in the data directory: only its hash is stored.
    assert_eq!(crate::fleet_harness::any_file_holds(&data, &secret), None);

    let revoked = token_cli(&env, &data, &["revoke", &id]);
    assert_eq!(revoked.code, 0, "{}", revoked.all());
    assert!(revoked.stdout.contains(&id), "{}", revoked.all());
    let again = token_cli(&env, &data, &["revoke", &id]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(
        again
            .stderr
            .contains(&format!("API token `{id}` was revoked already")),
        "{}",
        again.all()
    );
    let listed = json(&token_cli(&env, &data, &["list", "--format", "json"]).stdout);
    let ci = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(ci["status"], "revoked");
    assert!(ci["revoked_at"].is_string(), "{ci}");
    let unknown = token_cli(&env, &data, &["revoke", "0000000000000000"]);
    assert_eq!(unknown.code, 1, "{}", unknown.all());
    assert!(
        unknown.stderr.contains("no API token `0000000000000000`"),
        "{}",
        unknown.all()
    );
}

#[test]
fn a_bad_role_or_target_is_refused_naming_its_flag() {
    let env = TestEnv::new();
    let data = env.path().join("controller");
    let bad_role = token_cli(&env, &data, &["create", "--api", "--role", "root"]);
    assert_eq!(bad_role.code, 1, "{}", bad_role.all());
    assert!(
        bad_role
            .stderr
            .contains("--role: unknown role `root`: use read, plan, operate or admin"),
        "{}",
        bad_role.all()
    );
    let no_role = token_cli(&env, &data, &["create", "--api"]);
    assert_eq!(no_role.code, 1, "{}", no_role.all());
    assert!(
        no_role.stderr.contains("--role: an API token needs a role"),
        "{}",
        no_role.all()
    );
    let bad_ttl = token_cli(
        &env,
        &data,
        &["create", "--api", "--role", "read", "--ttl", "0s"],
    );
    assert_eq!(bad_ttl.code, 1, "{}", bad_ttl.all());
    assert!(bad_ttl.stderr.contains("--ttl"), "{}", bad_ttl.all());
    let listed = json(&token_cli(&env, &data, &["list", "--format", "json"]).stdout);
    assert_eq!(listed["tokens"], serde_json::json!([]), "nothing was made");
}

/// A route's path with every `{param}` filled in.
fn filled(path: &str) -> String {
    path.replace("{name}", "web-1").replace("{id}", "1")
}

/// `POST path` with a JSON `body`: the status and the body of the answer.
fn post_json(addr: &str, path: &str, auth: &str, body: &str) -> (u16, String) {
    crate::fleet_harness::http_body(
        addr,
        "POST",
        path,
        Some(auth),
        body,
        std::time::Duration::from_secs(30),
    )
}

/// The role census: for every route of `ROUTES` (the table itself, so a new route is in it),
/// each role below the route's is refused with 403 naming both roles and the token, the
/// route's own role (and every one above) is not refused, and a revoked token gets 401.
#[test]
fn every_route_refuses_each_role_below_its_own() {
    let fleet = Fleet::start();
    let tokens: Vec<(Role, String)> = Role::ALL
        .iter()
        .map(|role| {
            let name = format!("census {role}");
            let token = fleet.token_with(&["--api", "--role", role.as_str(), "--name", &name]);
            (*role, format!("Bearer {token}"))
        })
        .collect();
    let listed = fleet.cli(&[
        "token",
        "list",
        "--data-dir",
        fleet.data.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let id_of = |role: Role| {
        listed["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["role"] == role.as_str())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Every role is needed by some route, and read by the reads.
    for role in Role::ALL {
        assert!(
            ROUTES.iter().any(|route| route.role == role),
            "no route needs {role}"
        );
    }
    let mut census = Vec::new();
    for route in ROUTES {
        let path = filled(route.path);
        for (role, auth) in &tokens {
            let (status, body) = http(&fleet.http, route.method, &path, Some(auth));
            let shown = format!("{} {path} as {role}: {status} {body}", route.method);
            if *role < route.role {
                assert_eq!(status, 403, "{shown}");
                let error: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(error["error"]["code"], "forbidden", "{shown}");
                let message = error["error"]["message"].as_str().unwrap();
                let expected = format!(
                    "{} {} needs the {} role; this token (census {role}, {}) has {role}",
                    route.method,
                    route.path,
                    route.role,
                    id_of(*role)
                );
                assert_eq!(message, expected, "{shown}");
            } else {
                assert!(status != 401 && status != 403 && status != 0, "{shown}");
            }
        }
        census.push(format!("{} {} {}", route.method, route.path, route.role));
    }
    assert_eq!(census.len(), ROUTES.len());
    // A path or method no route has is the admin's: a weaker token learns nothing of it.
    for (method, path) in [("GET", "/v1/nope"), ("DELETE", "/v1/nodes")] {
        for (role, auth) in &tokens {
            let (status, body) = http(&fleet.http, method, path, Some(auth));
            let expected = if *role == Role::Admin {
                [404, 405]
            } else {
                [403, 403]
            };
            assert!(
                expected.contains(&status),
                "{method} {path} as {role}: {status} {body}"
            );
        }
    }

    // A revoked token is refused everywhere as unknown: 401, whatever its role was.
    let (_, admin_token) = &tokens[3];
    let revoked = fleet.cli(&[
        "token",
        "revoke",
        "--data-dir",
        fleet.data.to_str().unwrap(),
        &id_of(Role::Admin),
    ]);
    assert_eq!(revoked.code, 0, "{}", revoked.all());
    for route in ROUTES {
        let path = filled(route.path);
        let (status, body) = http(&fleet.http, route.method, &path, Some(admin_token));
        assert_eq!(status, 401, "{} {path} revoked: {body}", route.method);
    }
    // The others still work, as Bearer and, for reading only, as the dashboard's Basic
    // password.
    let (_, read_token) = &tokens[0];
    assert_eq!(
        http(&fleet.http, "GET", "/v1/nodes", Some(read_token)).0,
        200
    );
    let (_, operate_token) = &tokens[2];
    let basic = |bearer: &str| {
        let secret = bearer.trim_start_matches("Bearer ");
        let encoded = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("anyone:{secret}"),
        );
        format!("Basic {encoded}")
    };
    let (status, page) = http(&fleet.http, "GET", "/", Some(&basic(read_token)));
    assert_eq!(status, 200, "{page}");
    let (status, body) = http(
        &fleet.http,
        "POST",
        "/v1/findings/1/resolve",
        Some(&basic(operate_token)),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("is read-only"), "{body}");
}

/// `POST /v1/runs` asks `plan` of a plan or drift run and `operate` of an apply, once the
/// body says which.
#[test]
fn an_apply_needs_operate_where_a_plan_needs_plan() {
    let fleet = Fleet::start();
    let token = |role: &str| {
        format!(
            "Bearer {}",
            fleet.token_with(&["--api", "--role", role, "--name", role])
        )
    };
    let (plan, operate) = (token("plan"), token("operate"));
    let body = |mode: &str| format!(r#"{{"mode":"{mode}","files":[],"project":"p"}}"#);
    let (status, answer) = post_json(&fleet.http, "/v1/runs", &plan, &body("apply"));
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer.contains("POST /v1/runs (mode apply) needs the operate role; this token (plan, "),
        "{answer}"
    );
    for (auth, mode) in [(&plan, "plan"), (&plan, "drift"), (&operate, "apply")] {
        let (status, answer) = post_json(&fleet.http, "/v1/runs", auth, &body(mode));
        assert!(
            status != 401 && status != 403 && status != 0,
            "{mode}: {status} {answer}"
        );
    }
}

/// The CLI through `fleet`'s controller with the token in `token_file`.
fn cli_with_token(
    fleet: &Fleet,
    token_file: &std::path::Path,
    args: &[&str],
) -> crate::common::Output {
    let output = fleet
        .cli_command(args)
        .env("STEWARD_TOKEN_FILE", token_file)
        .output()
        .unwrap();
    crate::common::Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The CLI with an API token in `STEWARD_TOKEN_FILE`: a plan token plans and is refused an
/// apply, which runs nothing.
#[test]
fn the_cli_with_a_plan_token_plans_and_is_refused_an_apply() {
    let mut fleet = Fleet::start();
    fleet.add_agent("web-1", "role=web");
    fleet.wait_online(&["web-1"]);
    let token = fleet.token_with(&["--api", "--role", "plan", "--name", "ci"]);
    let token_file = fleet.env.write("ci.token", format!("{token}\n"));
    fleet.env.write(
        "project/site.yaml",
        "steward: 1\nassociations:\n  web:\n    targets: { tags: { role: web } }\nresources:\n  file:/motd:\n    content: \"hello\\n\"\n",
    );
    let as_ci = |args: &[&str]| cli_with_token(&fleet, &token_file, args);
    let plan = as_ci(&["plan", "project", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "a plan with changes: {}", plan.all());
    assert!(plan.stdout.contains("+ file:/motd"), "{}", plan.all());
    let apply = as_ci(&["apply", "project", "--yes"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply
            .stderr
            .contains("POST /v1/runs (mode apply) needs the operate role; this token (ci, "),
        "{}",
        apply.all()
    );
    assert!(!fleet.root("web-1").join("motd").exists(), "the apply ran");
    let runs = fleet.cli(&["runs", "--format", "json"]);
    assert!(!runs.stdout.contains("\"apply\""), "{}", runs.all());
}

/// A token made with `--target role=web` acts only on the nodes that selects: an apply or a
/// command that would also reach `db-1` is refused whole, naming it, and runs nothing; the
/// same narrowed to `role=web` runs.
#[test]
fn a_token_with_a_target_acts_only_on_the_nodes_it_selects() {
    let mut fleet = Fleet::start();
    fleet.add_agent("web-1", "role=web");
    fleet.add_agent("db-1", "role=db");
    fleet.wait_online(&["web-1", "db-1"]);
    let token = fleet.token_with(&[
        "--api", "--role", "operate", "--name", "web-ops", "--target", "role=web",
    ]);
    let token_file = fleet.env.write("web-ops.token", format!("{token}\n"));
    fleet.env.write(
        "project/site.yaml",
        "steward: 1\nassociations:\n  web:\n    targets: { tags: { role: web } }\n  db:\n    targets: { tags: { role: db } }\nresources:\n  file:/motd:\n    content: \"hello\\n\"\n",
    );
    let as_web_ops = |args: &[&str]| cli_with_token(&fleet, &token_file, args);
    let refusal = "API token web-ops (";
    let apply = as_web_ops(&["apply", "project", "--yes"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(
        apply.all().contains(refusal) && apply.all().contains("would also reach 1 node: db-1"),
        "{}",
        apply.all()
    );
    assert!(!fleet.root("web-1").join("motd").exists(), "the apply ran");
    let command = as_web_ops(&["run", "--target", "all", "--", "/bin/sh", "-c", "touch ran"]);
    assert_eq!(command.code, 1, "{}", command.all());
    assert!(
        command.all().contains(refusal) && command.all().contains("db-1"),
        "{}",
        command.all()
    );
    assert!(!fleet.root("web-1").join("ran").exists(), "the command ran");

    let apply = as_web_ops(&["apply", "project", "--yes", "--target", "role=web"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert!(fleet.root("web-1").join("motd").exists(), "{}", apply.all());
    assert!(!fleet.root("db-1").join("motd").exists(), "{}", apply.all());
    let command = as_web_ops(&[
        "run",
        "--target",
        "role=web",
        "--",
        "/bin/sh",
        "-c",
        "touch ran",
    ]);
    assert_eq!(command.code, 0, "{}", command.all());
}

/// The API reference's routes table lists every route of `ROUTES` with the role it needs, as
/// `| `METHOD` | `PATH` | `ROLE` |`, so what the docs say is what the server checks.
#[test]
fn the_api_reference_lists_every_route_with_its_role() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference/api.md"),
    )
    .unwrap();
    for route in ROUTES {
        let row = format!(
            "| `{}` | `{}` | `{}`",
            route.method,
            route.path,
            route.role.as_str()
        );
        assert!(
            doc.contains(&row),
            "docs/reference/api.md lists no `{row} |` row"
        );
    }
    for (method, path) in steward::fleet::api::PUBLIC_ROUTES {
        let row = format!("| `{method}` | `{path}` | none");
        assert!(
            doc.contains(&row),
            "docs/reference/api.md lists no `{row} |` row"
        );
    }
}
