//! The controller's dashboard: server-rendered HTML (maud escapes every value), no
//! JavaScript, no forms, refreshed every ten seconds. Behind the same tokens as the API (the
//! admin token, or an API token of any role: its pages need `read`); a browser sends one as
//! the password of HTTP Basic authentication (any user name), which the API accepts for
//! reading only.
//!
//! **Architecture Invariant:** the pages only read. Anything that changes state is an API route
//! that needs `Authorization: Bearer`, which a browser never sends by itself. The content
//! security policy of every answer (the API's `SECURITY_HEADERS`) allows the inline
//! style sheet and nothing else: a page that needs a script, an image or a form must change it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::fleet::controller::Controller;
use crate::report::plan::Style;

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-bottom:2em}td,th{padding:.25em .8em;text-align:left;\
border-bottom:1px solid #ddd}th{background:#f4f4f4}.online{color:#070}.offline{color:#a00}\
.revoked{color:#888}pre{background:#f8f8f8;padding:1em;overflow:auto}";

fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content="10";
                title { (title) " · steward" }
                style { (CSS) }
            }
            body {
                p { a href="/" { "steward controller" } }
                (body)
            }
        }
    }
}

fn failure(err: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("error: {err}\n")).into_response()
}

/// `GET /`: nodes, recent runs, open findings.
pub async fn index(State(controller): State<Arc<Controller>>) -> Response {
    let online = controller.online();
    let loaded = controller
        .store(|s| -> Result<_, crate::store::StoreError> {
            Ok((s.nodes()?, s.runs()?, s.findings(false)?))
        })
        .await;
    let (nodes, runs, findings) = match loaded {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(err)) => return failure(err),
        Err(err) => return failure(err),
    };
    let body = html! {
        h1 { "Nodes" }
        @if nodes.is_empty() {
            p { "No nodes enrolled. " code { "steward token create --data-dir DIR" } " makes a join token." }
        } @else {
            table {
                tr { th { "node" } th { "status" } th { "tags" } th { "os" } th { "last seen" } }
                @for node in &nodes {
                    @let status = if node.revoked_at.is_some() { "revoked" }
                        else if online.contains(&node.name) { "online" } else { "offline" };
                    tr {
                        td { (node.name) }
                        td class=(status) { (status) }
                        td { @for (k, v) in &node.tags { (k) "=" (v) " " } }
                        td { (node.facts["os_family"].as_str().unwrap_or("")) " "
                             (node.facts["os_release"].as_str().unwrap_or("")) }
                        td { (node.last_seen.as_deref().unwrap_or("never")) }
                    }
                }
            }
        }
        h1 { "Runs" }
        table {
            tr { th { "run" } th { "kind" } th { "started" } th { "user" } th { "changed" }
                 th { "drifted" } th { "failed" } th { "skipped" } th { "unchanged" } }
            @for run in runs.iter().take(30) {
                @let [unchanged, changed, drifted, failed, skipped] = run.counts;
                tr {
                    td { a href={ "/runs/" (run.id) } { (run.id) } }
                    td { (run.kind.as_str()) } td { (run.started_at) } td { (run.user) }
                    td { (changed) } td { (drifted) } td { (failed) } td { (skipped) } td { (unchanged) }
                }
            }
        }
        h1 { "Open findings" }
        @if findings.is_empty() {
            p { "None." }
        } @else {
            table {
                tr { th { "#" } th { "kind" } th { "severity" } th { "node" } th { "resource" }
                     th { "count" } th { "last seen" } th { "message" } }
                @for finding in &findings {
                    tr {
                        td { (finding.id) } td { (finding.kind.as_str()) }
                        td { (finding.severity.as_str()) } td { (finding.node) }
                        td { (finding.resource) } td { (finding.count) } td { (finding.last_seen) }
                        td { (finding.message.lines().next().unwrap_or("")) }
                    }
                }
            }
        }
    };
    page("controller", body).into_response()
}

/// `GET /runs/{id}`: one run's report, with links to its other formats.
pub async fn run(State(controller): State<Arc<Controller>>, Path(id): Path<String>) -> Response {
    let wanted = id.clone();
    let found = controller
        .store(move |s| -> Result<_, crate::store::StoreError> {
            Ok((s.run(Some(&wanted))?, s.findings(true)?))
        })
        .await;
    let (run, findings) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(crate::store::StoreError::NoRun(id))) => {
            return (StatusCode::NOT_FOUND, format!("error: no run `{id}`\n")).into_response();
        }
        Ok(Err(err)) => return failure(err),
        Err(err) => return failure(err),
    };
    let text = crate::report::run::human(&run, &findings, Style::new(false));
    let body = html! {
        h1 { "Run " (run.id) }
        p {
            @for format in ["json", "junit", "sarif", "markdown"] {
                a href={ "/v1/runs/" (run.id) "?format=" (format) } { (format) } " "
            }
        }
        pre { (text) }
    };
    page(&run.id, body).into_response()
}
