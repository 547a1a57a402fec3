//! The controller's HTTP API (axum), which the CLI uses with `STEWARD_CONTROLLER` and
//! `STEWARD_TOKEN_FILE`.
//!
//! Every route requires the admin token as `Authorization: Bearer TOKEN`; a browser may send it
//! as the password of HTTP Basic authentication, for reading only (`GET`, `HEAD`). A request
//! that changes state must carry Bearer, `Content-Type: application/json` and no foreign
//! `Origin`: a browser resends Basic credentials and may post `text/plain` across sites by
//! itself, never a Bearer header. Every answer, refusals included, carries the headers of
//! [`SECURITY_HEADERS`]. Reports come back rendered (the same renderers as local mode); runs
//! stream their progress as JSON lines. `docs/reference/api.md` lists the routes.
//!
//! **Architecture Invariant:** [`ROUTES`] is the whole surface: the router is built from the
//! same handlers and a test proves each route refuses a caller without the token.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::fleet::command::{self, ActiveRuns, CommandError, CommandEvent, CommandRequest};
use crate::fleet::controller::{Controller, ControllerError};
use crate::fleet::run::bundle::BundleError;
use crate::fleet::run::{self, Event, RunError, RunRequest, Scope};
use crate::fleet::token::TokenError;
use crate::report::plan::Style;
use crate::store::{Store, StoreError};

/// Every route, as `(method, path)`: the router and the authentication test use it.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/runs/{id}"),
    ("GET", "/v1/nodes"),
    ("POST", "/v1/nodes/{name}/revoke"),
    ("POST", "/v1/nodes/{name}/tags"),
    ("POST", "/v1/runs"),
    ("GET", "/v1/runs"),
    ("GET", "/v1/runs/{id}"),
    ("POST", "/v1/runs/{id}/cancel"),
    ("POST", "/v1/commands"),
    ("GET", "/v1/findings"),
    ("POST", "/v1/findings/{id}/resolve"),
];

/// The router, with authentication on every route.
pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/", get(crate::fleet::dashboard::index))
        .route("/runs/{id}", get(crate::fleet::dashboard::run))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{name}/revoke", post(revoke))
        .route("/v1/nodes/{name}/tags", post(node_tags))
        .route("/v1/runs", post(start_run).get(runs))
        .route("/v1/runs/{id}", get(report))
        .route("/v1/runs/{id}/cancel", post(cancel))
        .route("/v1/commands", post(start_command))
        .route("/v1/findings", get(findings))
        .route("/v1/findings/{id}/resolve", post(resolve))
        .layer(DefaultBodyLimit::max(
            run::MAX_BUNDLE_BYTES / 3 * 4 + (1 << 20),
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&controller),
            authenticate,
        ))
        .layer(middleware::map_response(add_security_headers))
        // The command runs in progress live with the API that starts and cancels them.
        .layer(Extension(Arc::new(ActiveRuns::default())))
        .with_state(controller)
}

/// How the API is served; the server adds it to each request as an extension (plain HTTP
/// when absent). The origin a same-site `Origin` header must name is `SCHEME://HOST`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS, with a certificate from the controller's CA.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Headers on every answer: no framing, no content sniffing, no caching, no referrer, and a
/// content security policy that allows only the dashboard's inline style sheet.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
         base-uri 'none'; form-action 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
    ("referrer-policy", "no-referrer"),
];

async fn add_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            header::HeaderName::from_static(name),
            header::HeaderValue::from_static(value),
        );
    }
    response
}

async fn authenticate(
    State(controller): State<Arc<Controller>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(presented_token);
    let credential = match presented {
        Some((credential, token)) if controller.is_admin(token.trim()) => credential,
        _ => {
            return (
                StatusCode::UNAUTHORIZED,
                // Browsers prompt for Basic; the CLI sends Bearer.
                [(header::WWW_AUTHENTICATE, "Basic realm=\"steward\", charset=\"UTF-8\"")],
                "error: this API needs the admin token (Authorization: Bearer, from DATA_DIR/admin.token)\n",
            )
                .into_response();
        }
    };
    if request.method().is_safe() {
        return next.run(request).await;
    }
    match refuse_change(&request, credential) {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

/// How the admin token was presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credential {
    /// `Authorization: Bearer TOKEN`: only a program sets it.
    Bearer,
    /// HTTP Basic, which a browser resends by itself on every request to this origin, those
    /// that another site's page makes it send included.
    Basic,
}

/// Why a state-changing request (any method but GET, HEAD, OPTIONS, TRACE) is refused, if it
/// is: each check stops a request a browser could send from another site with the
/// credentials it remembers.
fn refuse_change(request: &Request, credential: Credential) -> Option<Response> {
    let headers = request.headers();
    let method = request.method();
    if credential == Credential::Basic {
        return Some(error(
            StatusCode::FORBIDDEN,
            format!(
                "{method} needs the admin token as Authorization: Bearer; Basic authentication \
                 (the dashboard's) is read-only"
            ),
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let scheme = request
            .extensions()
            .get::<Scheme>()
            .copied()
            .unwrap_or(Scheme::Http);
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let own = host.map(|host| format!("{}://{host}", scheme.as_str()));
        let origin = origin.to_str().unwrap_or("");
        if !own
            .as_deref()
            .is_some_and(|own| own.eq_ignore_ascii_case(origin))
        {
            return Some(error(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin {method} refused: Origin `{origin}` is not this API's own \
                     origin ({})",
                    own.as_deref().unwrap_or("no Host header")
                ),
            ));
        }
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site == Some("cross-site") {
        return Some(error(
            StatusCode::FORBIDDEN,
            format!("cross-site {method} refused (Sec-Fetch-Site: cross-site)"),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{method} needs Content-Type: application/json (even without a body); got `{}`",
                if content_type.is_empty() {
                    "none"
                } else {
                    content_type
                }
            ),
        ));
    }
    None
}

/// How the token was presented and the token: `Bearer TOKEN`, or the password of
/// `Basic base64(user:TOKEN)`.
fn presented_token(header: &str) -> Option<(Credential, String)> {
    if let Some(token) = header.strip_prefix("Bearer ") {
        return Some((Credential::Bearer, token.to_string()));
    }
    let encoded = header.strip_prefix("Basic ")?;
    let decoded =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| (Credential::Basic, password.to_string()))
}

/// Who a run or command is recorded as: the API knows one credential, the admin token, so
/// the user name the client sends is only a claim, and is recorded as one.
fn recorded_user(claimed: &str) -> String {
    let claimed: String = claimed
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if claimed.is_empty() {
        "admin token".to_string()
    } else {
        format!("admin token (claims {claimed})")
    }
}

/// Why an API request failed. Its status is decided in one place: [`HttpStatus`], one
/// `match` per error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request itself is wrong (malformed JSON, an unknown report format).
    #[error("{0}")]
    BadRequest(String),
    /// The store answered no.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The controller's store could not be reached.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// A run could not start.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A command run could not be found or cancelled.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A node name or tag is not valid.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The HTTP status an error is answered with: what was asked for does not exist (404), is
/// in the wrong state for it (409), the request is wrong (400), or the controller failed
/// (500; a failing store is never reported as a missing thing).
pub trait HttpStatus {
    /// The status for this error.
    fn status(&self) -> StatusCode;
}

impl HttpStatus for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Store(err) => err.status(),
            ApiError::Controller(err) => err.status(),
            ApiError::Run(err) => err.status(),
            ApiError::Command(err) => err.status(),
            ApiError::Token(err) => err.status(),
        }
    }
}

impl HttpStatus for StoreError {
    fn status(&self) -> StatusCode {
        match self {
            StoreError::NoRun(_) | StoreError::NoFinding(_) | StoreError::NoNode(_) => {
                StatusCode::NOT_FOUND
            }
            StoreError::AlreadyResolved(_) | StoreError::Revoked(_) => StatusCode::CONFLICT,
            StoreError::Token(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl HttpStatus for ControllerError {
    fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl HttpStatus for RunError {
    fn status(&self) -> StatusCode {
        match self {
            RunError::Adhoc(err) => err.status(),
            RunError::Bundle(err) => err.status(),
            RunError::Store(err) => err.status(),
            RunError::PlanNodesGone(_) | RunError::PlanStale => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl HttpStatus for BundleError {
    fn status(&self) -> StatusCode {
        match self {
            BundleError::TooManyFiles(_)
            | BundleError::TooLarge
            | BundleError::BadPath(_)
            | BundleError::Duplicate(_)
            | BundleError::Base64 { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl HttpStatus for CommandError {
    fn status(&self) -> StatusCode {
        match self {
            CommandError::NotRunning(_) => StatusCode::NOT_FOUND,
            CommandError::Store(err) => err.status(),
            CommandError::Controller(_) | CommandError::RunsPoisoned => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl HttpStatus for TokenError {
    fn status(&self) -> StatusCode {
        match self {
            TokenError::Store(_) | TokenError::Create(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status(), self.to_string())
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, format!("error: {}\n", message.into())).into_response()
}

/// One node in `GET /v1/nodes`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its name.
    pub name: String,
    /// Connected now.
    pub online: bool,
    /// The controller's tags, which targeting uses.
    pub tags: std::collections::BTreeMap<String, String>,
    /// The tags its agent asked for at enrollment (not used for targeting).
    #[serde(default)]
    pub claimed_tags: std::collections::BTreeMap<String, String>,
    /// Facts it last reported.
    pub facts: serde_json::Value,
    /// When it enrolled.
    pub enrolled_at: String,
    /// When it was last connected.
    pub last_seen: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
}

async fn nodes(State(controller): State<Arc<Controller>>) -> Response {
    let online = controller.online();
    match controller.store(|s| s.nodes()).await {
        Ok(Ok(nodes)) => {
            let infos: Vec<NodeInfo> = nodes
                .into_iter()
                .map(|n| NodeInfo {
                    online: online.contains(&n.name),
                    name: n.name,
                    tags: n.tags,
                    claimed_tags: n.claimed_tags,
                    facts: n.facts,
                    enrolled_at: n.enrolled_at,
                    last_seen: n.last_seen,
                    revoked_at: n.revoked_at,
                })
                .collect();
            axum::Json(infos).into_response()
        }
        Ok(Err(err)) => ApiError::from(err).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn revoke(State(controller): State<Arc<Controller>>, Path(name): Path<String>) -> Response {
    let who = name.clone();
    match controller.store(move |s| s.revoke_node(&who)).await {
        Ok(Ok(_)) => {
            controller.disconnect(&name);
            (
                StatusCode::OK,
                format!("revoked node `{name}`; its certificate is no longer accepted\n"),
            )
                .into_response()
        }
        Ok(Err(err)) => ApiError::from(err).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// The body of `POST /v1/nodes/{name}/tags`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    /// Tags to set (replacing a tag of the same key).
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    /// Tag keys to remove (before setting).
    #[serde(default)]
    pub remove: Vec<String>,
}

async fn node_tags(
    State(controller): State<Arc<Controller>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let request: TagRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return ApiError::BadRequest(format!("malformed tag request: {err}")).into_response();
        }
    };
    let checked = request
        .set
        .iter()
        .try_for_each(|(key, value)| crate::fleet::token::check_tag(key, value));
    if let Err(err) = checked {
        return ApiError::from(err).into_response();
    }
    let who = name.clone();
    let changed = controller
        .store(move |s| s.set_node_tags(&who, &request.set, &request.remove))
        .await;
    match changed {
        Ok(Ok(node)) => format!(
            "node `{name}`: tags {}\n",
            match crate::fleet::token::tags_text(&node.tags) {
                text if text.is_empty() => "(none)".to_string(),
                text => text,
            }
        )
        .into_response(),
        Ok(Err(err)) => ApiError::from(err).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn start_run(State(controller): State<Arc<Controller>>, body: Bytes) -> Response {
    let mut request: RunRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return ApiError::BadRequest(format!("malformed run request: {err}")).into_response();
        }
    };
    let scope = match &request.adhoc {
        Some(adhoc) => match adhoc.scope(&controller).await {
            Ok(scope) => scope,
            Err(err) => return ApiError::from(err).into_response(),
        },
        None => Scope::default(),
    };
    request.user = recorded_user(&request.user);
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    tokio::spawn(async move {
        let response = run::run(&controller, request, scope, tx.clone()).await;
        let _ = tx.send(Event::Done(response));
    });
    let stream = json_lines(rx);
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn start_command(
    State(controller): State<Arc<Controller>>,
    Extension(commands): Extension<Arc<ActiveRuns>>,
    body: Bytes,
) -> Response {
    let mut request: CommandRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return ApiError::BadRequest(format!("malformed command request: {err}"))
                .into_response();
        }
    };
    request.user_name = recorded_user(&request.user_name);
    let (tx, rx) = mpsc::unbounded_channel::<CommandEvent>();
    tokio::spawn(async move {
        let response = command::run(&controller, &commands, request, tx.clone()).await;
        let _ = tx.send(CommandEvent::Done(response));
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(json_lines(rx)),
    )
        .into_response()
}

async fn cancel(
    State(controller): State<Arc<Controller>>,
    Extension(commands): Extension<Arc<ActiveRuns>>,
    Path(id): Path<String>,
) -> Response {
    match command::cancel(&controller, &commands, &id) {
        Ok(n) => {
            format!("cancelling run {id}: no new node starts; {n} running command(s) stopped\n")
                .into_response()
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// The events as JSON lines.
fn json_lines<E: Serialize + Send + 'static>(
    rx: mpsc::UnboundedReceiver<E>,
) -> impl tokio_stream::Stream<Item = Result<Bytes, std::io::Error>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::UnboundedReceiverStream::new(rx).map(|event| {
        let mut line = serde_json::to_vec(&event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        Ok(Bytes::from(line))
    })
}

async fn runs(State(controller): State<Arc<Controller>>) -> Response {
    match controller.store(|s| s.runs()).await {
        Ok(Ok(runs)) => crate::report::run::runs_table(&runs).into_response(),
        Ok(Err(err)) => ApiError::from(err).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

#[derive(Deserialize)]
struct ReportQuery {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    color: bool,
}

async fn report(
    State(controller): State<Arc<Controller>>,
    Path(id): Path<String>,
    Query(query): Query<ReportQuery>,
) -> Response {
    let id = (id != "latest").then_some(id);
    let found = controller
        .store(move |s| {
            let run = s.run(id.as_deref())?;
            let findings = s.findings(true)?;
            Ok::<_, crate::store::StoreError>((run, findings))
        })
        .await;
    let (run, findings) = match found {
        Ok(Ok(found)) => found,
        Ok(Err(err)) => return ApiError::from(err).into_response(),
        Err(err) => return ApiError::from(err).into_response(),
    };
    let text = match query.format.as_deref().unwrap_or("human") {
        "human" => crate::report::run::human(&run, &findings, Style::new(query.color)),
        "json" => crate::report::run::json(&run, &findings),
        "junit" => crate::report::run::junit(&run),
        "sarif" => crate::report::run::sarif(&run),
        "markdown" => crate::report::run::markdown(&run, &findings),
        other => {
            return ApiError::BadRequest(format!("unknown format `{other}`")).into_response();
        }
    };
    text.into_response()
}

#[derive(Deserialize)]
struct FindingsQuery {
    #[serde(default)]
    all: bool,
}

async fn findings(
    State(controller): State<Arc<Controller>>,
    Query(query): Query<FindingsQuery>,
) -> Response {
    let all = query.all;
    match controller.store(move |s| s.findings(all)).await {
        Ok(Ok(findings)) => {
            crate::report::run::findings_table(&findings, query.all).into_response()
        }
        Ok(Err(err)) => ApiError::from(err).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn resolve(State(controller): State<Arc<Controller>>, Path(id): Path<i64>) -> Response {
    match controller.store(move |s| s.resolve_finding(id)).await {
        Ok(Ok(finding)) => format!(
            "resolved finding {}: {} of {} on {}\n",
            finding.id,
            finding.kind.as_str(),
            finding.resource,
            finding.node
        )
        .into_response(),
        Ok(Err(err)) => ApiError::from(err).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}
