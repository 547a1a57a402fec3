//! The operator console over HTTP, as a browser speaks to it (the browser itself drives it in
//! `browser`): sign-in with a token becomes a session cookie, forms carry a CSRF token, the
//! server refuses what a role may not do and every change another site could make, and the
//! pages show the fleet's nodes, runs, findings and compliance.

use std::io::{Read, Write};
use std::time::Duration;

use crate::fleet_harness::{Answer, Fleet, send};

pub(crate) const PROJECT: &str = r#"steward: 1
associations:
  web:
    targets: { tags: { role: web } }
    documents: [web.yaml]
    compliance_severity: high
"#;

const WEB_DOC: &str = r#"steward: 1
resources:
  directory:/app: { mode: "0755" }
  file:/app/motd:
    content: "hello from {{ node.name }}\n"
    mode: "0644"
"#;

/// A fleet of web-1 and db-1 with the project applied, web-1's motd drifted and a drift run
/// recorded: one open finding on web-1.
pub(crate) fn drifted_fleet() -> Fleet {
    let fleet = Fleet::with_agents(&[("web-1", "role=web"), ("db-1", "role=db")]);
    fleet.env.write("project/site.yaml", PROJECT);
    fleet.env.write("project/web.yaml", WEB_DOC);
    let project = fleet.env.path().join("project");
    let p = project.to_str().unwrap();
    let apply = fleet.cli(&["apply", p, "--yes"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
    std::fs::write(fleet.root("web-1").join("app/motd"), "edited by hand\n").unwrap();
    let drift = fleet.cli(&["drift", p, "--detailed-exitcode"]);
    assert_eq!(drift.code, 2, "{}\n{}", drift.all(), fleet.logs());
    fleet
}

/// The id of the one open finding.
pub(crate) fn open_finding(fleet: &Fleet) -> i64 {
    let listed = fleet.cli(&["findings", "--format", "json"]);
    assert_eq!(listed.code, 0, "{}", listed.all());
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let findings = listed["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{listed}");
    findings[0]["id"].as_i64().unwrap()
}

/// `POST /login` with `token`: the answer.
pub(crate) fn sign_in(fleet: &Fleet, token: &str, next: &str) -> Answer {
    let body = serde_urlencoded::to_string([("token", token), ("next", next)]).unwrap();
    let origin = fleet.http.clone();
    send(
        &fleet.http,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", &origin),
        ],
        &body,
    )
}

/// The session cookie (`steward_session=VALUE`) a sign-in set.
pub(crate) fn session_of(answer: &Answer) -> String {
    assert_eq!(answer.status, 303, "{}", answer.body);
    let set = answer
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no cookie"));
    set.split(';').next().unwrap().to_string()
}

/// A page with the session cookie.
pub(crate) fn page(fleet: &Fleet, cookie: &str, path: &str) -> Answer {
    send(&fleet.http, "GET", path, &[("Cookie", cookie)], "")
}

/// The CSRF token of a page's forms.
pub(crate) fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {page}"));
    page[at + 19..at + 19 + 64].to_string()
}

/// A form post with the session cookie and these extra headers.
pub(crate) fn post_form(
    fleet: &Fleet,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Answer {
    let body = serde_urlencoded::to_string(fields).unwrap();
    let mut headers = vec![
        ("Cookie", cookie),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    headers.extend_from_slice(extra);
    send(&fleet.http, "POST", path, &headers, &body)
}

fn finding_json(fleet: &Fleet, id: i64) -> serde_json::Value {
    let listed = fleet.cli(&["findings", "--all", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    listed["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .cloned()
        .unwrap()
}

#[test]
fn a_session_resolves_a_finding_only_through_its_own_form_and_role() {
    let fleet = drifted_fleet();
    let id = open_finding(&fleet);
    let operate = fleet.token_with(&["--api", "--role", "operate", "--name", "on-call"]);
    let read = fleet.token_with(&["--api", "--role", "read", "--name", "viewer"]);

    // A page without a session goes to the sign-in form, and back after it.
    let away = send(&fleet.http, "GET", "/findings?state=all", &[], "");
    assert_eq!(away.status, 303, "{}", away.body);
    assert_eq!(
        away.header("location"),
        Some("/login?next=%2Ffindings%3Fstate%3Dall")
    );
    let form = send(&fleet.http, "GET", "/login?next=/findings", &[], "");
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"token\""), "{}", form.body);

    // A wrong token is refused, and no cookie is set.
    let wrong = sign_in(&fleet, "stw_0123456789abcdef_00", "/findings");
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.header("set-cookie").is_none());
    assert!(wrong.body.contains("That token was not accepted."));
    // Nor may another site sign a browser in.
    let body = serde_urlencoded::to_string([("token", operate.as_str())]).unwrap();
    let forced = send(
        &fleet.http,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "http://evil.example"),
        ],
        &body,
    );
    assert_eq!(forced.status, 403, "{}", forced.body);
    assert!(forced.header("set-cookie").is_none());

    // The operate token signs in: an HttpOnly, SameSite=Strict cookie naming no secret.
    let signed_in = sign_in(&fleet, &operate, "/findings");
    assert_eq!(signed_in.header("location"), Some("/findings"));
    let set = signed_in.header("set-cookie").unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let secret = operate.rsplit('_').next().unwrap();
    assert!(!set.contains(secret), "{set}");
    let cookie = session_of(&signed_in);

    let findings = page(&fleet, &cookie, "/findings");
    assert_eq!(findings.status, 200, "{}", findings.body);
    assert!(findings.body.contains("on-call") && findings.body.contains("(operate)"));
    assert!(
        findings.body.contains(">Resolve</button>"),
        "{}",
        findings.body
    );
    assert!(
        findings.body.contains("file:/app/motd"),
        "{}",
        findings.body
    );
    let csrf = csrf_of(&findings.body);
    let resolve = format!("/findings/{id}/resolve");

    // Every forged or careless post is refused, and the finding stays open.
    let zeros = "00".repeat(32);
    let refused = [
        (vec![("note", "x")], vec![], 403, "CSRF token"),
        (
            vec![("note", "x"), ("csrf", zeros.as_str())],
            vec![],
            403,
            "CSRF token",
        ),
        (
            vec![("note", "x"), ("csrf", csrf.as_str())],
            vec![("Origin", "http://evil.example")],
            403,
            "cross-origin",
        ),
        (
            vec![("note", "x"), ("csrf", csrf.as_str())],
            vec![("Sec-Fetch-Site", "cross-site")],
            403,
            "cross-site",
        ),
    ];
    for (fields, extra, status, says) in &refused {
        let answer = post_form(&fleet, &cookie, &resolve, fields, extra);
        assert_eq!(
            answer.status, *status,
            "{fields:?} {extra:?}: {}",
            answer.body
        );
        assert!(answer.body.contains(says), "{}", answer.body);
    }
    // The API's own route takes no session, only Bearer.
    let api = send(
        &fleet.http,
        "POST",
        &format!("/v1/findings/{id}/resolve"),
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        "{}",
    );
    assert_eq!(api.status, 403, "{}", api.body);
    assert!(api.body.contains("console session"), "{}", api.body);
    assert_eq!(finding_json(&fleet, id)["open"], true);

    // The read token's session sees the findings but no form, and its post is refused.
    let viewer = session_of(&sign_in(&fleet, &read, "/"));
    let seen = page(&fleet, &viewer, "/findings");
    assert_eq!(seen.status, 200);
    assert!(seen.body.contains("file:/app/motd"), "{}", seen.body);
    assert!(!seen.body.contains("Resolve</button>"), "{}", seen.body);
    let viewer_csrf = csrf_of(&seen.body); // the sign-out form's
    let denied = post_form(
        &fleet,
        &viewer,
        &resolve,
        &[("note", "x"), ("csrf", &viewer_csrf)],
        &[],
    );
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(
        denied.body.contains("needs the operate role"),
        "{}",
        denied.body
    );
    assert_eq!(finding_json(&fleet, id)["open"], true);

    // The operate session resolves it with a note, which the finding keeps with who.
    let done = post_form(
        &fleet,
        &cookie,
        &resolve,
        &[("note", "the disk was replaced"), ("csrf", &csrf)],
        &[("Origin", &fleet.http.clone())],
    );
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        done.header("location"),
        Some(format!("/findings?resolved={id}").as_str())
    );
    let resolved = finding_json(&fleet, id);
    assert_eq!(resolved["open"], false);
    let resolution = resolved["resolution"].as_str().unwrap();
    assert!(
        resolution.contains("on-call") && resolution.ends_with("the disk was replaced"),
        "{resolution}"
    );
    let again = post_form(&fleet, &cookie, &resolve, &[("csrf", &csrf)], &[]);
    assert_eq!(again.status, 409, "{}", again.body);

    // A revoked token's session ends at once.
    let read_id = read.split('_').nth(1).unwrap();
    let revoked = fleet.cli(&[
        "token",
        "revoke",
        read_id,
        "--data-dir",
        fleet.data.to_str().unwrap(),
    ]);
    assert_eq!(revoked.code, 0, "{}", revoked.all());
    let gone = page(&fleet, &viewer, "/nodes");
    assert_eq!(gone.status, 303, "{}", gone.body);

    // Signing out clears the cookie.
    let out = post_form(&fleet, &cookie, "/logout", &[("csrf", &csrf)], &[]);
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.header("location"), Some("/login"));
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
}

#[test]
fn the_pages_show_nodes_runs_diffs_findings_and_compliance() {
    let fleet = drifted_fleet();
    let read = fleet.token_with(&["--api", "--role", "read", "--name", "viewer"]);
    let cookie = session_of(&sign_in(&fleet, &read, "/"));

    let web = page(&fleet, &cookie, "/nodes?tag=role%3Dweb");
    assert_eq!(web.status, 200, "{}", web.body);
    assert!(web.body.contains("href=\"/nodes/web-1\""), "{}", web.body);
    assert!(!web.body.contains("href=\"/nodes/db-1\""), "{}", web.body);
    let online = page(&fleet, &cookie, "/nodes?status=online");
    assert!(online.body.contains("web-1") && online.body.contains("db-1"));
    let bad = page(&fleet, &cookie, "/nodes?tag=web");
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("KEY=VALUE"), "{}", bad.body);

    let node = page(&fleet, &cookie, "/nodes/web-1");
    assert_eq!(node.status, 200, "{}", node.body);
    for shown in ["role=web", "os_family", "file:/app/motd", "drift"] {
        assert!(node.body.contains(shown), "{shown}: {}", node.body);
    }
    assert_eq!(page(&fleet, &cookie, "/nodes/nobody").status, 404);

    let runs = page(&fleet, &cookie, "/runs");
    assert_eq!(runs.status, 200, "{}", runs.body);
    let listed = fleet.cli(&["runs", "--format", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let drift_id = listed["runs"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed["runs"][0]["kind"], "drift");
    assert!(runs.body.contains(&drift_id), "{}", runs.body);

    // The drift run's page shows web-1's diff and offers the reports; it does not reload.
    let run = page(&fleet, &cookie, &format!("/runs/{drift_id}"));
    assert_eq!(run.status, 200, "{}", run.body);
    assert!(run.body.contains("drifted"), "{}", run.body);
    assert!(
        run.body
            .contains("<span class=\"add\">+hello from web-1</span>"),
        "{}",
        run.body
    );
    assert!(
        run.body
            .contains("<span class=\"del\">-edited by hand</span>"),
        "{}",
        run.body
    );
    for format in ["json", "junit", "sarif", "markdown"] {
        let link = format!("/v1/runs/{drift_id}?format={format}");
        assert!(run.body.contains(&link), "{link}: {}", run.body);
        let download = page(&fleet, &cookie, &link);
        assert_eq!(download.status, 200, "{link}: {}", download.body);
    }
    assert!(!run.body.contains("http-equiv=\"refresh\""), "{}", run.body);
    assert!(!run.body.contains("console.js"), "{}", run.body);
    // A finished run's events say it is done, at once.
    let events = page(&fleet, &cookie, &format!("/runs/{drift_id}/events"));
    assert_eq!(events.status, 200, "{}", events.body);
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    assert!(events.body.contains("event: done"), "{}", events.body);

    let findings = page(&fleet, &cookie, "/findings?severity=high&association=web");
    assert!(
        findings.body.contains("file:/app/motd"),
        "{}",
        findings.body
    );
    let none = page(&fleet, &cookie, "/findings?severity=low");
    assert!(!none.body.contains("file:/app/motd"), "{}", none.body);

    // web-1 drifted, so its association has one non-compliant node, of high severity.
    let compliance = page(&fleet, &cookie, "/compliance");
    assert_eq!(compliance.status, 200, "{}", compliance.body);
    let row = compliance
        .body
        .split("<tr>")
        .find(|row| row.contains("<td>web</td>"))
        .unwrap_or_else(|| panic!("{}", compliance.body));
    let cells: Vec<&str> = row
        .split("</td>")
        .filter_map(|cell| cell.rsplit('>').next())
        .collect();
    // association, compliant nodes, non-compliant nodes, compliant resources (the
    // directory), critical, high
    assert_eq!(&cells[..6], ["web", "0", "1", "1", "0", "1"], "{row}");
}

#[test]
fn a_running_runs_page_follows_it_live_and_stops_when_it_ends() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    fleet.env.write("project/site.yaml", PROJECT);
    fleet.env.write(
        "project/web.yaml",
        "steward: 1\nresources:\n  exec:slow:\n    command: [\"/bin/sleep\", \"3\"]\n",
    );
    let read = fleet.token_with(&["--api", "--role", "read", "--name", "viewer"]);
    let cookie = session_of(&sign_in(&fleet, &read, "/"));
    let project = fleet.env.path().join("project");
    let mut apply = fleet
        .cli_command(&["apply", project.to_str().unwrap(), "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // The run is stored as running before its task is sent: find it, and follow it.
    let id = crate::fleet_harness::wait_for("a running run", Duration::from_secs(60), || {
        let runs = page(&fleet, &cookie, "/runs");
        let at = runs.body.find("href=\"/runs/")? + 12;
        let id = runs.body[at..].split('"').next()?.to_string();
        let run = page(&fleet, &cookie, &format!("/runs/{id}"));
        run.body.contains("id=\"live\"").then_some((id, run.body))
    });
    let (id, running) = id;
    assert!(running.contains("<script src=\"/console.js\""), "{running}");
    assert!(
        running.contains("http-equiv=\"refresh\""),
        "no-script fallback: {running}"
    );
    let addr = fleet.http.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET /runs/{id}/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    assert!(text.contains("event: progress"), "{text}");
    assert!(text.contains("\"node\":\"web-1\""), "{text}");
    let done = text.find("event: done").unwrap_or_else(|| panic!("{text}"));
    assert!(text.find("event: progress").unwrap() < done, "{text}");
    assert!(apply.wait().unwrap().success());
    let finished = page(&fleet, &cookie, &format!("/runs/{id}"));
    assert!(!finished.body.contains("id=\"live\""), "{}", finished.body);
}

#[test]
fn an_operate_session_switches_a_schedule_off_and_a_read_session_cannot() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web")]);
    fleet.env.write(
        "project/site.yaml",
        "steward: 1\nassociations:\n  nightly:\n    targets: { tags: { role: web } }\n    \
         documents: [web.yaml]\n    schedule: rate(1 day)\n    mode: detect\n",
    );
    fleet.env.write("project/web.yaml", WEB_DOC);
    let project = fleet.env.path().join("project");
    let apply = fleet.cli(&["apply", project.to_str().unwrap(), "--yes"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.all(), fleet.logs());
    let operate = fleet.token_with(&["--api", "--role", "operate", "--name", "on-call"]);
    let read = fleet.token_with(&["--api", "--role", "read", "--name", "viewer"]);

    let viewer = session_of(&sign_in(&fleet, &read, "/"));
    let seen = page(&fleet, &viewer, "/schedules");
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert!(seen.body.contains("rate(1 day)"), "{}", seen.body);
    assert!(!seen.body.contains(">Disable</button>"), "{}", seen.body);
    let denied = post_form(
        &fleet,
        &viewer,
        "/schedules/nightly/disable",
        &[("csrf", &csrf_of(&seen.body))],
        &[],
    );
    assert_eq!(denied.status, 403, "{}", denied.body);

    let cookie = session_of(&sign_in(&fleet, &operate, "/"));
    let shown = page(&fleet, &cookie, "/schedules");
    assert!(shown.body.contains(">Disable</button>"), "{}", shown.body);
    let csrf = csrf_of(&shown.body);
    let off = post_form(
        &fleet,
        &cookie,
        "/schedules/nightly/disable",
        &[("csrf", &csrf)],
        &[],
    );
    assert_eq!(off.status, 303, "{}", off.body);
    let listed = fleet.cli(&["schedules", "--format", "json"]);
    assert_eq!(listed.code, 0, "{}", listed.all());
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let nightly = &listed["schedules"][0];
    assert_eq!(nightly["enabled"], false, "{listed}");
    assert!(
        nightly["changed_by"].as_str().unwrap().contains("on-call"),
        "{listed}"
    );
    let after = page(&fleet, &cookie, "/schedules?switched=nightly+disabled.");
    assert!(after.body.contains(">Enable</button>"), "{}", after.body);
    let unknown = post_form(
        &fleet,
        &cookie,
        "/schedules/nope/enable",
        &[("csrf", &csrf)],
        &[],
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);
}

/// `request` to the controller's HTTPS listener, trusting only its CA: the answer's head.
fn https_head(fleet: &Fleet, request: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(fleet.data.join("ca.crt")).unwrap()
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let addr = fleet.http.trim_start_matches("https://").to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(request.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        answer
            .split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_string()
    })
}

#[test]
fn over_tls_the_session_cookie_is_secure() {
    let fleet = Fleet::start_with(&["--http-tls"]);
    assert!(fleet.http.starts_with("https://"), "{}", fleet.http);
    let token = fleet.token_with(&["--api", "--role", "read", "--name", "viewer"]);
    let body = serde_urlencoded::to_string([("token", token.as_str())]).unwrap();
    let addr = fleet.http.trim_start_matches("https://");
    let head = https_head(
        &fleet,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nOrigin: {}\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            fleet.http,
            body.len()
        ),
    );
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{head}"));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(cookie.trim_end().ends_with("; Secure"), "{cookie}");
}
