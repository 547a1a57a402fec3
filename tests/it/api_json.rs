//! The HTTP API answers JSON (issue 14): every listing by `Accept` and by `?format=json`, each
//! report form with its media type, JSON error bodies with a code and a message, a JSON 404
//! for an unknown route, and `GET /healthz` without a token.
//!
//! A real controller and agent on loopback; requests are written by hand so that each header
//! is exactly the one sent.

use crate::fleet_harness::{Answer, Fleet, send};

const PROJECT: &str = r#"steward: 1
associations:
  web:
    targets: { tags: { role: web } }
    documents: [web.yaml]
"#;

const DOC: &str = r#"steward: 1
resources:
  directory:/app: { mode: "0755" }
  file:/app/motd:
    content: "hello\n"
    mode: "0644"
"#;

/// A fleet of one agent with an apply and a drift run recorded, and one open drift finding.
fn fleet_with_history() -> (Fleet, String) {
    let fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    fleet.env.write("project/site.yaml", PROJECT);
    fleet.env.write("project/web.yaml", DOC);
    let project = fleet.env.path().join("project");
    let p = project.to_str().unwrap();
    let apply = fleet.cli(&["apply", p, "--yes"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
    std::fs::write(fleet.root("web-1").join("app/motd"), "edited by hand\n").unwrap();
    let drift = fleet.cli(&["drift", p]);
    assert!(drift.code == 0 || drift.code == 2, "{}", drift.all());
    let bearer = format!(
        "Bearer {}",
        std::fs::read_to_string(fleet.data.join("admin.token"))
            .unwrap()
            .trim()
    );
    (fleet, bearer)
}

#[test]
fn listings_reports_and_errors_answer_json() {
    let (fleet, bearer) = fleet_with_history();
    let get = |path: &str, accept: Option<&str>| {
        let mut headers = vec![("Authorization", bearer.as_str())];
        if let Some(accept) = accept {
            headers.push(("Accept", accept));
        }
        send(&fleet.http, "GET", path, &headers, "")
    };

    // Every listing, by Accept, by ?format=json, and by default.
    for (path, at_least) in [
        ("/v1/nodes", 1),
        ("/v1/runs", 2),
        ("/v1/findings", 1),
        ("/v1/findings?all=true", 1),
    ] {
        let with_query = if path.contains('?') {
            format!("{path}&format=json")
        } else {
            format!("{path}?format=json")
        };
        for (what, answer) in [
            ("Accept", get(path, Some("application/json"))),
            ("?format=json", get(&with_query, None)),
            (
                "?format=json over Accept",
                get(&with_query, Some("text/plain")),
            ),
            ("no Accept", get(path, None)),
            ("*/*", get(path, Some("*/*"))),
        ] {
            let what = format!("{path} ({what})");
            assert_eq!(answer.status, 200, "{what}: {}", answer.body);
            assert_eq!(answer.media_type(), "application/json", "{what}");
            let list = answer.json(&what);
            let list = list
                .as_array()
                .unwrap_or_else(|| panic!("{what}: not a list"));
            assert!(list.len() >= at_least, "{what}: {}", answer.body);
        }
    }
    let runs = get("/v1/runs", Some("application/json")).json("runs");
    let run = &runs[0];
    for field in ["id", "kind", "started_at", "user"] {
        assert!(run[field].is_string(), "{field}: {run}");
    }
    for count in ["changed", "drifted", "failed", "skipped", "unchanged"] {
        assert!(run["counts"][count].is_u64(), "{count}: {run}");
    }
    assert_eq!(run["kind"], "drift", "newest first: {runs}");
    let findings = get("/v1/findings", None).json("findings");
    let finding = &findings[0];
    assert_eq!(finding["node"], "web-1", "{finding}");
    assert_eq!(finding["resource"], "file:/app/motd", "{finding}");
    assert_eq!(finding["kind"], "drift", "{finding}");
    assert_eq!(finding["open"], true, "{finding}");
    let finding_id = finding["id"].as_i64().unwrap();

    // Text only when asked for: the tables of `steward runs` and `steward findings`.
    for (path, accept, header_line) in [
        ("/v1/runs", Some("text/plain"), "RUN "),
        ("/v1/runs?format=text", None, "RUN "),
        ("/v1/findings", Some("text/plain"), "ID "),
    ] {
        let answer = get(path, accept);
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        assert_eq!(answer.media_type(), "text/plain", "{path}");
        assert!(
            answer.body.starts_with(header_line),
            "{path}: {}",
            answer.body
        );
    }

    // Each report form with its media type, by ?format= and by Accept.
    let id = run["id"].as_str().unwrap();
    for (format, media) in [
        ("json", "application/json"),
        ("sarif", "application/sarif+json"),
        ("junit", "application/xml"),
        ("markdown", "text/markdown"),
        ("human", "text/plain"),
    ] {
        for (what, answer) in [
            (
                "?format=",
                get(&format!("/v1/runs/{id}?format={format}"), None),
            ),
            ("Accept", get(&format!("/v1/runs/{id}"), Some(media))),
            (
                "latest",
                get(&format!("/v1/runs/latest?format={format}"), None),
            ),
        ] {
            let what = format!("{format} by {what}");
            assert_eq!(answer.status, 200, "{what}: {}", answer.body);
            assert_eq!(answer.media_type(), media, "{what}");
            match format {
                "json" => assert_eq!(answer.json(&what)["id"], id, "{what}"),
                "sarif" => assert_eq!(answer.json(&what)["version"], "2.1.0", "{what}"),
                "junit" => assert!(answer.body.contains("<testsuites"), "{what}"),
                _ => assert!(answer.body.contains("file:/app/motd"), "{what}"),
            }
        }
    }
    let default = get(&format!("/v1/runs/{id}"), None);
    assert_eq!(default.media_type(), "application/json");

    // Errors: JSON with a code and a message, and the status.
    let cases: Vec<(&str, Answer, u16, &str, &str)> = vec![
        (
            "no token",
            send(&fleet.http, "GET", "/v1/runs", &[], ""),
            401,
            "unauthorized",
            "admin token",
        ),
        (
            "no such run",
            get("/v1/runs/no-such-run", None),
            404,
            "not_found",
            "no-such-run",
        ),
        (
            "unknown report format",
            get(&format!("/v1/runs/{id}?format=yaml"), None),
            400,
            "bad_request",
            "unknown format `yaml`",
        ),
        (
            "unknown listing format",
            get("/v1/runs?format=yaml", None),
            400,
            "bad_request",
            "unknown format `yaml`: use one of json, text",
        ),
        (
            "a query parameter of the wrong type",
            get("/v1/findings?all=maybe", None),
            400,
            "bad_request",
            "all",
        ),
        (
            "no acceptable form",
            get("/v1/runs", Some("image/png")),
            406,
            "not_acceptable",
            "image/png",
        ),
        (
            "another method",
            send(
                &fleet.http,
                "DELETE",
                "/v1/nodes",
                &[
                    ("Authorization", &bearer),
                    ("Content-Type", "application/json"),
                ],
                "",
            ),
            405,
            "method_not_allowed",
            "Method Not Allowed",
        ),
        (
            "a change without JSON",
            send(
                &fleet.http,
                "POST",
                &format!("/v1/findings/{finding_id}/resolve"),
                &[("Authorization", &bearer), ("Content-Type", "text/plain")],
                "",
            ),
            415,
            "unsupported_media_type",
            "Content-Type: application/json",
        ),
        (
            "a finding that is not a number",
            send(
                &fleet.http,
                "POST",
                "/v1/findings/abc/resolve",
                &[
                    ("Authorization", &bearer),
                    ("Content-Type", "application/json"),
                ],
                "",
            ),
            400,
            "bad_request",
            "finding `abc` is not a number",
        ),
        (
            "unknown route",
            get("/v1/no/such/route", None),
            404,
            "not_found",
            "no route GET /v1/no/such/route",
        ),
    ];
    for (what, answer, status, code, message) in &cases {
        assert_eq!(answer.status, *status, "{what}: {}", answer.body);
        let (found_code, found_message) = answer.error(what);
        assert_eq!(found_code, *code, "{what}");
        assert!(found_message.contains(message), "{what}: {found_message}");
    }
    let refused = &cases[0].1;
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Basic")),
        "the 401 still asks a browser for Basic"
    );
    assert!(
        cases[6].1.header("allow").is_some(),
        "the 405 keeps its Allow header"
    );
    // An unknown route without the token is refused like any other: 401, not 404.
    let unknown = send(&fleet.http, "GET", "/v1/no/such/route", &[], "");
    assert_eq!(unknown.status, 401, "{}", unknown.body);

    // Resolving answers the finding (JSON by default); resolving it again is a conflict.
    let resolve = |accept: &str| {
        send(
            &fleet.http,
            "POST",
            &format!("/v1/findings/{finding_id}/resolve"),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
                ("Accept", accept),
            ],
            "",
        )
    };
    let resolved = resolve("application/json");
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    assert_eq!(resolved.media_type(), "application/json");
    let resolved = resolved.json("resolve");
    assert_eq!(resolved["id"], finding_id, "{resolved}");
    assert_eq!(resolved["open"], false, "{resolved}");
    let again = resolve("application/json");
    assert_eq!(again.status, 409, "{}", again.body);
    let (code, message) = again.error("resolve again");
    assert_eq!(code, "conflict");
    assert!(message.contains(&finding_id.to_string()), "{message}");

    // The CLI still prints its tables, and the message of a JSON error.
    let runs = fleet.cli(&["runs"]);
    assert_eq!(runs.code, 0, "{}", runs.all());
    assert!(runs.stdout.starts_with("RUN "), "{}", runs.stdout);
    let findings = fleet.cli(&["findings", "--all"]);
    assert_eq!(findings.code, 0, "{}", findings.all());
    assert!(findings.stdout.starts_with("ID "), "{}", findings.stdout);
    let report = fleet.cli(&["report", "no-such-run"]);
    assert_eq!(report.code, 1, "{}", report.all());
    assert!(
        report
            .stderr
            .contains("error: controller answered 404 Not Found: no run `no-such-run`"),
        "{}",
        report.all()
    );
    let again = fleet.cli(&["findings", "resolve", &finding_id.to_string()]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(
        again.stderr.contains("controller answered 409 Conflict: ") && !again.stderr.contains("{"),
        "{}",
        again.all()
    );
    let nodes = fleet.cli(&["nodes"]);
    assert_eq!(nodes.code, 0, "{}", nodes.all());
    assert!(nodes.stdout.starts_with("NODE "), "{}", nodes.stdout);
}

#[test]
fn healthz_answers_without_a_token_and_says_nothing_else() {
    let fleet = Fleet::start();
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("Accept", "text/plain")],
    ] {
        let answer = send(&fleet.http, "GET", "/healthz", &headers, "");
        assert_eq!(answer.status, 200, "{headers:?}: {}", answer.body);
        assert_eq!(answer.media_type(), "application/json");
        assert_eq!(
            answer.json("healthz"),
            serde_json::json!({"status": "ok", "store": "ok"}),
            "{headers:?}"
        );
        for (name, _) in steward::fleet::api::SECURITY_HEADERS {
            assert!(answer.header(name).is_some(), "healthz lacks {name}");
        }
        for (name, _) in &answer.headers {
            assert!(
                !["server", "x-powered-by", "www-authenticate"].contains(&name.as_str()),
                "healthz says {name}"
            );
        }
    }
    let head = send(&fleet.http, "HEAD", "/healthz", &[], "");
    assert_eq!(head.status, 200, "{}", head.body);
    // Only GET: a change to it needs the token like any other request.
    let post = send(
        &fleet.http,
        "POST",
        "/healthz",
        &[("Content-Type", "application/json")],
        "",
    );
    assert_eq!(post.status, 401, "{}", post.body);
}

// The route census: every route of ROUTES refuses a caller without a token with a JSON 401,
// but a console page, which sends a browser to the sign-in form; every route of PUBLIC_ROUTES
// (/healthz, the sign-in form and the console's script) answers without one.
#[test]
fn the_route_census_lists_the_public_routes_and_guards_every_other() {
    assert_eq!(
        steward::fleet::api::PUBLIC_ROUTES,
        &[
            ("GET", "/healthz"),
            ("GET", "/login"),
            ("POST", "/login"),
            ("GET", "/console.js")
        ]
    );
    for (method, path) in steward::fleet::api::PUBLIC_ROUTES {
        assert!(
            !steward::fleet::api::ROUTES
                .iter()
                .any(|route| (route.method, route.path) == (*method, *path)),
            "{method} {path} is both public and guarded"
        );
    }
    let fleet = Fleet::start();
    for route in steward::fleet::api::ROUTES {
        let method = route.method;
        let path = route.path.replace("{name}", "web-1").replace("{id}", "1");
        let answer = send(
            &fleet.http,
            method,
            &path,
            &[("Content-Type", "application/json")],
            "{}",
        );
        if method == "GET" && !path.starts_with("/v1/") {
            assert_eq!(answer.status, 303, "{method} {path}: {}", answer.body);
            let to = answer.header("location").unwrap_or_default();
            assert!(to.starts_with("/login?next=%2F"), "{method} {path}: {to}");
            continue;
        }
        assert_eq!(answer.status, 401, "{method} {path}: {}", answer.body);
        let (code, _) = answer.error(&format!("{method} {path}"));
        assert_eq!(code, "unauthorized", "{method} {path}");
    }
    for (method, path) in steward::fleet::api::PUBLIC_ROUTES {
        let answer = if *method == "POST" {
            // The sign-in form answers a token that is not valid with 401 and the form again.
            send(
                &fleet.http,
                method,
                path,
                &[("Content-Type", "application/x-www-form-urlencoded")],
                "token=stw_00_00",
            )
        } else {
            send(&fleet.http, method, path, &[], "")
        };
        let want = if *method == "POST" { 401 } else { 200 };
        assert_eq!(answer.status, want, "{method} {path}: {}", answer.body);
        assert!(answer.header("set-cookie").is_none(), "{method} {path}");
    }
}

// A store that fails its check: 503 with the store unavailable, and still nothing else.
#[test]
fn healthz_says_unavailable_when_the_store_fails() {
    let fleet = Fleet::start();
    let answer = send(&fleet.http, "GET", "/healthz", &[], "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Another program damages the store: the table the check reads is gone.
    let store = steward::fleet::controller::store_path(&fleet.data);
    let damage = rusqlite::Connection::open(&store).unwrap();
    damage
        .execute_batch("ALTER TABLE runs RENAME TO runs_gone")
        .unwrap();
    drop(damage);
    let answer = send(&fleet.http, "GET", "/healthz", &[], "");
    assert_eq!(answer.status, 503, "{}\n{}", answer.body, fleet.logs());
    assert_eq!(answer.media_type(), "application/json");
    assert_eq!(
        answer.json("healthz"),
        serde_json::json!({"status": "unavailable", "store": "unavailable"})
    );
}
