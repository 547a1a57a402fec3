//! The console's pages: the overview, nodes (filtered by tag, status and name) and a node's
//! page, runs (paged) and a run's page with each node's results and diffs, findings (filtered,
//! resolved with a note) and compliance.
//!
//! Each handler reads the store once (through [`super::load`]) and renders; filters are plain
//! `GET` forms, so a filtered page is a link that can be shared.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::{Session, Viewer, error_page, load, page};
use crate::fleet::api_token::{Principal, Role};
use crate::fleet::audit::AuditNote;
use crate::fleet::controller::Controller;
use crate::store::{
    Finding, NodeRecord, ResultOutcome, ResultRecord, RunKind, RunRecord, RunStatus, RunSummary,
    Severity, StoreError,
};

/// Runs per page of `/runs`.
const RUNS_PER_PAGE: usize = 25;
/// Nodes whose results a run's page shows in full; the rest are counted (the JSON has all).
const NODES_SHOWN: usize = 200;
/// Runs read to find each node's latest compliance.
const COMPLIANCE_RUNS: usize = 20;

/// The viewer of a page request.
fn viewer(principal: Principal, session: Option<Extension<Session>>) -> Viewer {
    Viewer::of(principal, session.as_ref().map(|s| &s.0))
}

fn node_status(node: &NodeRecord, online: &std::collections::HashSet<String>) -> &'static str {
    if node.revoked_at.is_some() {
        "revoked"
    } else if online.contains(&node.name) {
        "online"
    } else {
        "offline"
    }
}

fn tags_text(tags: &BTreeMap<String, String>) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn counts_cells(counts: &[usize; 5]) -> Markup {
    let [unchanged, changed, drifted, failed, skipped] = counts;
    html! {
        td class=[(*changed > 0).then_some("changed")] { (changed) }
        td class=[(*drifted > 0).then_some("drifted")] { (drifted) }
        td class=[(*failed > 0).then_some("failed")] { (failed) }
        td { (skipped) }
        td { (unchanged) }
    }
}

fn runs_table(runs: &[RunSummary]) -> Markup {
    html! {
        table id="runs" {
            tr { th { "run" } th { "kind" } th { "started" } th { "by" } th { "changed" }
                 th { "drifted" } th { "failed" } th { "skipped" } th { "unchanged" } }
            @for run in runs {
                tr {
                    td { a href={ "/runs/" (run.id) } { (run.id) } }
                    td { (run.kind.as_str()) } td { (run.started_at) } td { (run.user) }
                    (counts_cells(&run.counts))
                }
            }
        }
    }
}

fn findings_table(viewer: &Viewer, findings: &[&Finding]) -> Markup {
    let resolving = viewer.may(Role::Operate);
    html! {
        table id="findings" {
            tr { th { "#" } th { "kind" } th { "severity" } th { "node" } th { "resource" }
                 th { "association" } th { "count" } th { "last seen" } th { "message" }
                 @if resolving { th { "resolve" } } }
            @for finding in findings {
                tr id={ "finding-" (finding.id) } {
                    td { (finding.id) }
                    td { (finding.kind.as_str()) }
                    td { (finding.severity.as_str()) }
                    td { a href={ "/nodes/" (finding.node) } { (finding.node) } }
                    td { (finding.resource) }
                    td { (finding.association.as_deref().unwrap_or("")) }
                    td { (finding.count) }
                    td { a href={ "/runs/" (finding.last_run) } { (finding.last_seen) } }
                    td {
                        (summary_line(&finding.message))
                        @if let Some(resolution) = &finding.resolution {
                            br; span class="muted" { (resolution) }
                        }
                    }
                    @if resolving {
                        td {
                            @if finding.open {
                                form method="post" action={ "/findings/" (finding.id) "/resolve" } {
                                    (viewer.csrf_field())
                                    input type="text" name="note" placeholder="why (kept in the audit log)"
                                        maxlength="1000";
                                    " "
                                    button type="submit" { "Resolve" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A finding's message in one line: its first, or, for a drift whose message is its change
/// (a unified diff), that the content differs (the run's page shows the diff).
fn summary_line(message: &str) -> &str {
    if message.starts_with("--- /") {
        return "content differs (the run shows the diff)";
    }
    message.lines().next().unwrap_or("")
}

/// `GET /`: what needs a look: nodes by status, open findings by severity, the latest runs.
pub async fn overview(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<Session>>,
) -> Response {
    let viewer = viewer(principal, session);
    let online = controller.online();
    let loaded = load(&controller, |s| {
        Ok((s.nodes()?, s.runs()?, s.findings(false)?))
    })
    .await;
    let (nodes, runs, findings) = match loaded {
        Ok(loaded) => loaded,
        Err(page) => return page,
    };
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for node in &nodes {
        *by_status.entry(node_status(node, &online)).or_default() += 1;
    }
    let mut by_severity: BTreeMap<Severity, usize> = BTreeMap::new();
    for finding in &findings {
        *by_severity.entry(finding.severity).or_default() += 1;
    }
    let body = html! {
        h1 { "Overview" }
        h2 { "Nodes" }
        @if nodes.is_empty() {
            p { "No nodes enrolled. " code { "steward token create --data-dir DIR" } " makes a join token." }
        } @else {
            p id="node-counts" {
                (nodes.len()) " enrolled: "
                @for (status, n) in &by_status {
                    a class=(status) href={ "/nodes?status=" (status) } { (n) " " (status) } " "
                }
            }
        }
        h2 { "Open findings" }
        @if findings.is_empty() {
            p { "None." }
        } @else {
            p {
                @for (severity, n) in by_severity.iter().rev() {
                    a href={ "/findings?severity=" (severity.as_str()) } { (n) " " (severity.as_str()) } " "
                }
            }
        }
        h2 { "Latest runs" }
        (runs_table(&runs[..runs.len().min(10)]))
        p { a href="/runs" { "all runs" } }
    };
    page(&viewer, "/", "overview", false, body).into_response()
}

/// The filters of `/nodes`.
#[derive(Debug, Default, Deserialize)]
pub struct NodesQuery {
    /// `KEY=VALUE`: only nodes with this tag.
    #[serde(default)]
    tag: Option<String>,
    /// `online`, `offline` or `revoked`.
    #[serde(default)]
    status: Option<String>,
    /// Part of the name.
    #[serde(default)]
    name: Option<String>,
}

/// `GET /nodes`: the inventory, filtered by tag, status and name.
pub async fn nodes(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<Session>>,
    Query(query): Query<NodesQuery>,
) -> Response {
    let viewer = viewer(principal, session);
    let online = controller.online();
    let nodes = match load(&controller, |s| s.nodes()).await {
        Ok(nodes) => nodes,
        Err(page) => return page,
    };
    let tag = query
        .tag
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let wanted_tag = match tag.map(|t| t.split_once('=')) {
        None => None,
        Some(Some((k, v))) => Some((k.trim(), v.trim())),
        Some(None) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "the tag filter is KEY=VALUE (for instance role=web)",
            );
        }
    };
    let status = query.status.as_deref().filter(|s| !s.is_empty());
    let name = query.name.as_deref().map(str::trim).unwrap_or("");
    let shown: Vec<&NodeRecord> = nodes
        .iter()
        .filter(|n| wanted_tag.is_none_or(|(k, v)| n.tags.get(k).is_some_and(|t| t == v)))
        .filter(|n| status.is_none_or(|s| node_status(n, &online) == s))
        .filter(|n| name.is_empty() || n.name.contains(name))
        .collect();
    let body = html! {
        h1 { "Nodes" }
        form class="filter" method="get" action="/nodes" {
            label { "tag" input type="text" name="tag" id="filter-tag" placeholder="role=web"
                value=(tag.unwrap_or("")); }
            label { "status"
                select name="status" id="filter-status" {
                    option value="" { "any" }
                    @for s in ["online", "offline", "revoked"] {
                        option value=(s) selected[status == Some(s)] { (s) }
                    }
                }
            }
            label { "name" input type="text" name="name" value=(name); }
            button type="submit" id="filter" { "Filter" }
        }
        p { (shown.len()) " of " (nodes.len()) " nodes" }
        table id="nodes" {
            tr { th { "node" } th { "status" } th { "tags" } th { "os" } th { "last seen" } }
            @for node in &shown {
                @let status = node_status(node, &online);
                tr {
                    td { a href={ "/nodes/" (node.name) } { (node.name) } }
                    td class=(status) { (status) }
                    td { (tags_text(&node.tags)) }
                    td { (node.facts["os_family"].as_str().unwrap_or("")) " "
                         (node.facts["os_release"].as_str().unwrap_or("")) }
                    td { (node.last_seen.as_deref().unwrap_or("never")) }
                }
            }
        }
    };
    page(&viewer, "/nodes", "nodes", false, body).into_response()
}

/// A fact's value as shown: text as is, anything else as JSON.
fn fact_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `GET /nodes/{name}`: a node's tags, facts, recent runs and open findings.
pub async fn node(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<Session>>,
    Path(name): Path<String>,
) -> Response {
    let viewer = viewer(principal, session);
    let online = controller.online();
    let wanted = name.clone();
    let loaded = load(&controller, move |s| {
        let Some(node) = s.node(&wanted)? else {
            return Ok(None);
        };
        let runs = s.node_runs(&wanted, 20)?;
        let findings: Vec<Finding> = s
            .findings(false)?
            .into_iter()
            .filter(|f| f.node == wanted)
            .collect();
        Ok(Some((node, runs, findings)))
    })
    .await;
    let (node, runs, findings) = match loaded {
        Ok(Some(loaded)) => loaded,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, &format!("no node `{name}`")),
        Err(page) => return page,
    };
    let status = node_status(&node, &online);
    let facts: Vec<(&String, &serde_json::Value)> = node
        .facts
        .as_object()
        .map(|facts| facts.iter().collect())
        .unwrap_or_default();
    let findings: Vec<&Finding> = findings.iter().collect();
    let body = html! {
        h1 { "Node " (node.name) }
        table id="node" {
            tr { th { "status" } td class=(status) { (status) } }
            tr { th { "tags" } td { (tags_text(&node.tags)) } }
            tr { th { "tags its agent claimed" } td { (tags_text(&node.claimed_tags)) } }
            tr { th { "enrolled" } td { (node.enrolled_at) } }
            tr { th { "last seen" } td { (node.last_seen.as_deref().unwrap_or("never")) } }
            tr { th { "certificate" } td { (node.cert_fingerprint) " until " (node.cert_not_after) } }
            @if let Some(revoked) = &node.revoked_at {
                tr { th { "revoked" } td class="revoked" { (revoked) } }
            }
        }
        h2 { "Open findings" }
        @if findings.is_empty() { p { "None." } } @else { (findings_table(&viewer, &findings)) }
        h2 { "Recent runs" }
        @if runs.is_empty() { p { "None." } } @else {
            p class="muted" { "Counts are this node's results." }
            (runs_table(&runs))
        }
        h2 { "Facts" }
        table id="facts" {
            @for (key, value) in &facts {
                tr { th { (key) } td { (fact_text(value)) } }
            }
        }
    };
    page(&viewer, "/nodes", &node.name, false, body).into_response()
}

/// `?page=` of `/runs`.
#[derive(Debug, Default, Deserialize)]
pub struct RunsQuery {
    #[serde(default)]
    page: Option<usize>,
}

/// `GET /runs`: the run history, newest first, a page at a time.
pub async fn runs(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<Session>>,
    Query(query): Query<RunsQuery>,
) -> Response {
    let viewer = viewer(principal, session);
    let runs = match load(&controller, |s| s.runs()).await {
        Ok(runs) => runs,
        Err(page) => return page,
    };
    let pages = runs.len().div_ceil(RUNS_PER_PAGE).max(1);
    let at = query.page.unwrap_or(1).clamp(1, pages);
    let shown =
        &runs[((at - 1) * RUNS_PER_PAGE).min(runs.len())..(at * RUNS_PER_PAGE).min(runs.len())];
    let body = html! {
        h1 { "Runs" }
        p { (runs.len()) " runs; page " (at) " of " (pages) }
        (runs_table(shown))
        p class="pager" {
            @if at > 1 { a href={ "/runs?page=" (at - 1) } rel="prev" { "newer" } }
            @if at < pages { a href={ "/runs?page=" (at + 1) } rel="next" id="older" { "older" } }
        }
    };
    page(&viewer, "/runs", "runs", false, body).into_response()
}

/// A result's change text, each line marked as added, removed or a hunk header.
fn diff_block(diff: &str) -> Markup {
    html! {
        pre class="diff" {
            @for line in diff.lines() {
                // A unified diff's file lines (files are named by absolute path), and hunks.
                @let header = line.starts_with("--- /") || line.starts_with("+++ /");
                @let class = if header || line.starts_with("@@") { Some("hunk") }
                    else if line.starts_with('+') { Some("add") }
                    else if line.starts_with('-') { Some("del") }
                    else { None };
                span class=[class] { (line) } "\n"
            }
        }
    }
}

fn result_rows(result: &ResultRecord) -> Markup {
    let what = result
        .change
        .as_ref()
        .map(|c| c.done.clone().unwrap_or_else(|| c.action.clone()))
        .unwrap_or_default();
    html! {
        tr {
            td { (result.resource) }
            td class=(result.outcome.as_str()) { (result.outcome.as_str()) }
            td { (what) }
            td { (result.association.as_deref().unwrap_or("")) }
            td { (result.message.as_deref().unwrap_or("")) }
            td { (result.duration_ms) " ms" }
        }
        @if let Some(diff) = &result.diff {
            tr class="diff" {
                td colspan="6" {
                    details open[result.outcome != ResultOutcome::Succeeded] {
                        summary { "change" }
                        (diff_block(diff))
                    }
                }
            }
        }
    }
}

/// `GET /runs/{id}`: a run's results per node, with the diffs, and its report downloads; a
/// running run's page follows its progress ([`super::live`]).
pub async fn run(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<Session>>,
    Path(id): Path<String>,
) -> Response {
    let viewer = viewer(principal, session);
    let wanted = id.clone();
    let run = match load(&controller, move |s| match s.run(Some(&wanted)) {
        Ok(run) => Ok(Some(run)),
        Err(StoreError::NoRun(_)) => Ok(None),
        Err(err) => Err(err),
    })
    .await
    {
        Ok(Some(run)) => run,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, &format!("no run `{id}`")),
        Err(page) => return page,
    };
    let running = run.status == RunStatus::Running;
    let by_node = run.by_node();
    let body = html! {
        h1 { "Run " (run.id) }
        table id="run" {
            tr { th { "kind" } td { (run.kind.as_str()) } }
            tr { th { "status" } td class=(run.status.as_str()) id="run-status" { (run.status.as_str()) } }
            tr { th { "started" } td { (run.started_at) } }
            @if !run.finished_at.is_empty() { tr { th { "finished" } td { (run.finished_at) } } }
            tr { th { "by" } td { (run.user) } }
            tr { th { "project" } td { (run.project) " (" (run.documents_digest) ")" } }
            tr { th { "results" } td { (outcome_summary(&run)) } }
        }
        p id="downloads" {
            "Download: "
            @for (format, ext) in [("json", "json"), ("junit", "xml"), ("sarif", "sarif"), ("markdown", "md")] {
                a href={ "/v1/runs/" (run.id) "?format=" (format) }
                  download={ "steward-run-" (run.id) "." (ext) } { (format) } " "
            }
        }
        @if running {
            section id="live" data-events={ "/runs/" (run.id) "/events" } {
                h2 { "Progress" }
                p id="live-count" { "waiting for the first node" }
                ul id="live-nodes" {}
            }
        }
        @for (node, results) in by_node.iter().take(NODES_SHOWN) {
            @let quiet = results.iter().filter(|r| r.outcome == ResultOutcome::Unchanged).count();
            section class="node" id={ "node-" (node) } {
                h2 { a href={ "/nodes/" (node) } { (node) } }
                @if quiet < results.len() {
                    table {
                        tr { th { "resource" } th { "outcome" } th { "done" } th { "association" }
                             th { "message" } th { "took" } }
                        @for result in results.iter().filter(|r| r.outcome != ResultOutcome::Unchanged) {
                            (result_rows(result))
                        }
                    }
                }
                @if quiet > 0 { p class="muted" { (quiet) " resources unchanged" } }
            }
        }
        @if by_node.len() > NODES_SHOWN {
            p { (by_node.len() - NODES_SHOWN) " more nodes: the JSON download has every result." }
        }
    };
    page(&viewer, "/runs", &run.id, running, body).into_response()
}

fn outcome_summary(run: &RunRecord) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for result in &run.results {
        *counts.entry(result.outcome.as_str()).or_default() += 1;
    }
    if counts.is_empty() {
        return "none yet".to_string();
    }
    counts
        .iter()
        .map(|(outcome, n)| format!("{n} {outcome}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The filters of `/findings`.
#[derive(Debug, Default, Deserialize)]
pub struct FindingsQuery {
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    association: Option<String>,
    /// `all` to show resolved findings too.
    #[serde(default)]
    state: Option<String>,
    /// The finding just resolved (after the form).
    #[serde(default)]
    resolved: Option<i64>,
}

/// `GET /findings`: findings filtered by severity, node and association; open ones unless
/// `state=all`.
pub async fn findings(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<Session>>,
    Query(query): Query<FindingsQuery>,
) -> Response {
    let viewer = viewer(principal, session);
    let all = query.state.as_deref() == Some("all");
    let findings = match load(&controller, move |s| s.findings(all)).await {
        Ok(findings) => findings,
        Err(page) => return page,
    };
    let severity = query.severity.as_deref().filter(|s| !s.is_empty());
    let node = query.node.as_deref().map(str::trim).unwrap_or("");
    let association = query.association.as_deref().filter(|a| !a.is_empty());
    let associations: std::collections::BTreeSet<&str> = findings
        .iter()
        .filter_map(|f| f.association.as_deref())
        .collect();
    let shown: Vec<&Finding> = findings
        .iter()
        .filter(|f| severity.is_none_or(|s| f.severity.as_str() == s))
        .filter(|f| node.is_empty() || f.node == node)
        .filter(|f| association.is_none_or(|a| f.association.as_deref() == Some(a)))
        .collect();
    let body = html! {
        h1 { "Findings" }
        @if let Some(id) = query.resolved {
            p class="notice" id="notice" { "Finding " (id) " resolved." }
        }
        form class="filter" method="get" action="/findings" {
            label { "severity"
                select name="severity" id="filter-severity" {
                    option value="" { "any" }
                    @for s in Severity::ALL.iter().rev() {
                        option value=(s.as_str()) selected[severity == Some(s.as_str())] { (s.as_str()) }
                    }
                }
            }
            label { "node" input type="text" name="node" value=(node); }
            label { "association"
                select name="association" {
                    option value="" { "any" }
                    @for a in &associations {
                        option value=(a) selected[association == Some(*a)] { (a) }
                    }
                }
            }
            label { "state"
                select name="state" {
                    option value="open" { "open" }
                    option value="all" selected[all] { "all" }
                }
            }
            button type="submit" { "Filter" }
        }
        @if shown.is_empty() { p { "None." } } @else {
            p { (shown.len()) " findings" }
            (findings_table(&viewer, &shown))
        }
    };
    page(&viewer, "/findings", "findings", false, body).into_response()
}

/// The fields of a finding's resolve form.
#[derive(Debug, Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    note: String,
}

/// `POST /findings/{id}/resolve` (a form): resolves the finding with the note, then shows the
/// findings again. The route needs `operate`, and the form its session's CSRF token.
pub async fn resolve(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Form(form): Form<ResolveForm>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            &format!("finding `{id}` is not a number"),
        );
    };
    let note = crate::fleet::web::resolution_note(&principal, Some(&form.note));
    match controller
        .store(move |s| s.resolve_finding(id, Some(&note)))
        .await
    {
        Ok(Ok(finding)) => {
            let note = form.note.trim();
            let detail = format!(
                "resolved by hand: {} of {} on {}{}",
                finding.kind.as_str(),
                finding.resource,
                finding.node,
                if note.is_empty() {
                    String::new()
                } else {
                    format!(" (note: {note})")
                }
            );
            AuditNote {
                detail: Some(detail),
                ..AuditNote::default()
            }
            .on(Redirect::to(&format!("/findings?resolved={id}")).into_response())
        }
        Ok(Err(err @ StoreError::NoFinding(_))) => {
            error_page(StatusCode::NOT_FOUND, &format!("error: {err}"))
        }
        Ok(Err(err @ StoreError::AlreadyResolved(_))) => {
            error_page(StatusCode::CONFLICT, &format!("error: {err}"))
        }
        Ok(Err(err)) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("error: {err}")),
        Err(err) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("error: {err}")),
    }
}

/// One association's compliance, as SSM's summary counts it.
#[derive(Debug, Default)]
struct AssociationCompliance {
    compliant_nodes: usize,
    noncompliant_nodes: usize,
    compliant_resources: usize,
    /// Non-compliant resources per severity.
    noncompliant: BTreeMap<Severity, usize>,
}

/// True when a result is not known to be compliant (as [`RunRecord::compliance`] counts).
fn noncompliant(outcome: ResultOutcome) -> bool {
    outcome.is_noncompliant()
        || matches!(outcome, ResultOutcome::Pending | ResultOutcome::Unreachable)
}

/// `GET /compliance`: per association and severity, from each node's latest apply or drift run
/// of it (SSM's compliance summary).
pub async fn compliance(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<Session>>,
) -> Response {
    let viewer = viewer(principal, session);
    let loaded = load(&controller, |s| {
        let summaries = s.runs()?;
        let mut runs = Vec::new();
        for summary in summaries
            .iter()
            .filter(|r| matches!(r.kind, RunKind::Apply | RunKind::Drift))
            .take(COMPLIANCE_RUNS)
        {
            runs.push(s.run(Some(&summary.id))?);
        }
        Ok(runs)
    })
    .await;
    let runs = match loaded {
        Ok(runs) => runs,
        Err(page) => return page,
    };
    // Each (node, association) counts once, from the newest run that has it.
    let mut seen: HashMap<(String, String), ()> = HashMap::new();
    let mut summary: BTreeMap<String, AssociationCompliance> = BTreeMap::new();
    let mut sources: Vec<&str> = Vec::new();
    for run in &runs {
        let mut used = false;
        let mut per_key: BTreeMap<(String, String), Vec<&ResultRecord>> = BTreeMap::new();
        for result in &run.results {
            let association = result
                .association
                .clone()
                .unwrap_or_else(|| "(no association)".to_string());
            per_key
                .entry((result.node.clone(), association))
                .or_default()
                .push(result);
        }
        for (key, results) in per_key {
            if seen.insert(key.clone(), ()).is_some() {
                continue;
            }
            used = true;
            let entry = summary.entry(key.1).or_default();
            let mut node_ok = true;
            for result in results {
                if noncompliant(result.outcome) {
                    node_ok = false;
                    *entry.noncompliant.entry(result.severity).or_default() += 1;
                } else if result.outcome != ResultOutcome::Skipped {
                    entry.compliant_resources += 1;
                }
            }
            if node_ok {
                entry.compliant_nodes += 1;
            } else {
                entry.noncompliant_nodes += 1;
            }
        }
        if used {
            sources.push(&run.id);
        }
    }
    let severities: Vec<Severity> = Severity::ALL.iter().rev().copied().collect();
    let body = html! {
        h1 { "Compliance" }
        @if summary.is_empty() {
            p { "No apply or drift run yet." }
        } @else {
            p class="muted" { "Each node counts once per association, from its newest apply or drift run ("
                (sources.len()) " runs read)." }
            table id="compliance" {
                tr {
                    th { "association" } th { "compliant nodes" } th { "non-compliant nodes" }
                    th { "compliant resources" }
                    @for s in &severities { th { (s.as_str()) } }
                }
                @for (association, c) in &summary {
                    tr {
                        td { (association) }
                        td class="compliant" { (c.compliant_nodes) }
                        td class=[(c.noncompliant_nodes > 0).then_some("noncompliant")] { (c.noncompliant_nodes) }
                        td { (c.compliant_resources) }
                        @for s in &severities {
                            @let n = c.noncompliant.get(s).copied().unwrap_or(0);
                            td class=[(n > 0).then_some("noncompliant")] { (n) }
                        }
                    }
                }
            }
            p class="muted" { "Severity columns count non-compliant resources (drifted, failed, pending or unreachable)." }
        }
    };
    page(&viewer, "/compliance", "compliance", false, body).into_response()
}

/// `?switched=` of `/schedules`: the association just switched, and how.
#[derive(Debug, Default, Deserialize)]
pub struct SchedulesQuery {
    #[serde(default)]
    switched: Option<String>,
}

/// `GET /schedules`: the current project's scheduled associations: schedule, next and last
/// firing, the last run and its outcome, and a switch for an `operate` session.
pub async fn schedules(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<Session>>,
    Query(query): Query<SchedulesQuery>,
) -> Response {
    let viewer = viewer(principal, session);
    let schedules = match crate::fleet::schedules::schedules(&controller).await {
        Ok(schedules) => schedules,
        Err(err) => {
            return error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("error: {err}"));
        }
    };
    let switching = viewer.may(Role::Operate);
    let body = html! {
        h1 { "Schedules" }
        @if let Some(switched) = &query.switched {
            p class="notice" id="notice" { (switched) }
        }
        @if schedules.is_empty() {
            p { "No scheduled association in the current project (the last one applied)." }
        } @else {
            table id="schedules" {
                tr { th { "association" } th { "mode" } th { "schedule" } th { "state" }
                     th { "next firing" } th { "last firing" } th { "last run" }
                     @if switching { th { "switch" } } }
                @for info in &schedules {
                    tr id={ "schedule-" (info.name) } {
                        td { (info.name) }
                        td { (info.mode) }
                        td { code { (info.schedule) } }
                        td class=(if info.enabled { "ok" } else { "muted" }) {
                            (if info.enabled { "enabled" } else { "disabled" })
                            @if let (Some(by), Some(at)) = (&info.changed_by, &info.changed_at) {
                                br; span class="muted" { "by " (by) " at " (at) }
                            }
                        }
                        td {
                            (info.next_firing.as_deref().unwrap_or("—"))
                            @if info.due { " (due)" }
                            @if let Some(error) = &info.error { br; span class="failed" { (error) } }
                        }
                        td { (info.last_firing.as_deref().unwrap_or("never")) }
                        td {
                            @if let Some(run) = &info.last_run {
                                a href={ "/runs/" (run.id) } { (run.id) } " "
                                span class=(run.outcome) { (run.outcome) }
                            } @else { "none" }
                        }
                        @if switching {
                            td {
                                @let (action, label) = if info.enabled { ("disable", "Disable") } else { ("enable", "Enable") };
                                form method="post" action={ "/schedules/" (info.name) "/" (action) } {
                                    (viewer.csrf_field())
                                    button type="submit" { (label) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page(&viewer, "/schedules", "schedules", false, body).into_response()
}

/// `POST /schedules/{name}/disable` and `/enable` (forms): switches the association off or
/// on, then shows the schedules again. The routes need `operate`, and the form its session's
/// CSRF token.
async fn switch(
    controller: Arc<Controller>,
    principal: Principal,
    name: String,
    on: bool,
) -> Response {
    let by = crate::fleet::web::recorded_user(&principal, "");
    match crate::fleet::schedules::switch_schedule(&controller, &name, on, &by).await {
        Ok(Some(_)) => {
            let word = if on { "enabled" } else { "disabled" };
            let notice = serde_urlencoded::to_string([("switched", format!("{name} {word}."))])
                .unwrap_or_default();
            AuditNote {
                detail: Some(format!("scheduled association `{name}` {word}")),
                ..AuditNote::default()
            }
            .on(Redirect::to(&format!("/schedules?{notice}")).into_response())
        }
        Ok(None) => error_page(
            StatusCode::NOT_FOUND,
            &format!("the current project schedules no association `{name}`"),
        ),
        Err(err) => error_page(StatusCode::INTERNAL_SERVER_ERROR, &format!("error: {err}")),
    }
}

/// `POST /schedules/{name}/disable`.
pub async fn disable_schedule(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    switch(controller, principal, name, false).await
}

/// `POST /schedules/{name}/enable`.
pub async fn enable_schedule(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
) -> Response {
    switch(controller, principal, name, true).await
}

/// The filters and page of `/audit`.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    /// Entries below this id (the next page).
    #[serde(default)]
    before: Option<i64>,
    /// Only this run's entries.
    #[serde(default)]
    run: Option<String>,
    /// Only this actor id's entries.
    #[serde(default)]
    actor: Option<String>,
}

/// Entries per page of `/audit`.
const AUDIT_PER_PAGE: usize = 50;

/// `GET /audit`: the audit log, newest first, a page at a time, of one run or actor when
/// asked.
pub async fn audit(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    session: Option<Extension<Session>>,
    Query(query): Query<AuditQuery>,
) -> Response {
    let viewer = viewer(principal, session);
    let wanted = crate::store::AuditQuery {
        limit: AUDIT_PER_PAGE,
        before: query.before,
        run_id: query.run.clone().filter(|r| !r.is_empty()),
        actor_id: query.actor.clone().filter(|a| !a.is_empty()),
    };
    let records = match load(&controller, move |s| s.audit(&wanted)).await {
        Ok(records) => records,
        Err(page) => return page,
    };
    let entries: Vec<crate::fleet::audit::AuditInfo> = records
        .iter()
        .map(crate::fleet::audit::AuditInfo::from)
        .collect();
    let run = query.run.as_deref().unwrap_or("");
    let actor = query.actor.as_deref().unwrap_or("");
    let older = (entries.len() == AUDIT_PER_PAGE)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let body = html! {
        h1 { "Audit log" }
        form class="filter" method="get" action="/audit" {
            label { "actor id" input type="text" name="actor" value=(actor); }
            label { "run" input type="text" name="run" value=(run); }
            button type="submit" { "Filter" }
        }
        @if entries.is_empty() { p { "No entries." } } @else {
            table id="audit" {
                tr { th { "#" } th { "when" } th { "who" } th { "from" } th { "what" }
                     th { "target" } th { "run" } th { "outcome" } th { "detail" } }
                @for e in &entries {
                    tr id={ "audit-" (e.id) } {
                        td { (e.id) }
                        td { (e.at) }
                        td { a href={ "/audit?actor=" (e.actor_id) } { (e.actor) } }
                        td { (e.source) }
                        td { (e.action) }
                        td { (e.target) }
                        td { @if let Some(run) = &e.run_id { a href={ "/runs/" (run) } { (run) } } }
                        td class=(match e.outcome.as_str() { "ok" => "ok", "started" => "muted", _ => "failed" }) {
                            (e.outcome) @if let Some(status) = e.status { " (" (status) ")" }
                        }
                        td { (e.detail) }
                    }
                }
            }
        }
        p class="pager" {
            @if query.before.is_some() { a href="/audit" { "newest" } }
            @if let Some(id) = older {
                a id="older" href={ "/audit?before=" (id)
                    @if !actor.is_empty() { "&actor=" (actor) }
                    @if !run.is_empty() { "&run=" (run) } } { "older" }
            }
        }
    };
    page(&viewer, "/audit", "audit log", false, body).into_response()
}
