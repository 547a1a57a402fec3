//! The controller's HTTP API (axum), which the CLI uses with `STEWARD_CONTROLLER` and
//! `STEWARD_TOKEN_FILE`.
//!
//! Every route but those of [`PUBLIC_ROUTES`] (`GET /healthz`) requires a token as
//! `Authorization: Bearer TOKEN`: the admin token (`DATA_DIR/admin.token`, role admin) or an
//! API token (`stw_...`, `steward token create --api`) with its role; a browser may send it as
//! the password of HTTP Basic authentication, for reading only (`GET`, `HEAD`). Each route of
//! [`ROUTES`] names the weakest role that may call it; `POST /v1/runs` asks `operate` of an
//! apply once its body is read ([`run_role`]). A token that is unknown, revoked or expired is
//! answered 401, one that is valid but too weak 403. A request that changes state must carry
//! Bearer, `Content-Type: application/json` and no foreign `Origin`: a browser resends Basic
//! credentials and may post `text/plain` across sites by itself, never a Bearer header. Every
//! answer, refusals included, carries the headers of [`SECURITY_HEADERS`].
//!
//! Answers are JSON unless the client asks for text (`Accept: text/plain` or `?format=text`;
//! `negotiate` decides, `?format=` first); reports come back rendered (the same renderers as
//! local mode) with their own media types; runs stream their progress as JSON lines. Every
//! error is `{"error": {"code", "message"}}` ([`ErrorBody`]), those the HTTP framework makes
//! included (`json_errors`). `docs/reference/api.md` lists the routes.
//!
//! **Architecture Invariant:** [`ROUTES`] and [`PUBLIC_ROUTES`] are the whole surface: the
//! router is built from the same handlers, `authenticate` lets only [`PUBLIC_ROUTES`] through
//! without a token and checks every other request's role against its route's in [`ROUTES`],
//! and tests prove each route of [`ROUTES`] refuses a caller without a token (401) and each
//! role below the route's (403).
//!
//! A token's target selector becomes the [`Limit`](crate::fleet::api_token::Limit) of the runs
//! and commands it starts (refused whole when they reach a node it does not select).
//!
//! Every authenticated request that changes state is in the audit log
//! (`record_requests`, a layer inside `authenticate`), refusals for a weak role
//! included: a `started` entry before the handler runs (500, or 503 while the database is
//! out of reach, and nothing done, when it cannot be written) and its outcome after. Handlers name what they acted on with an
//! [`AuditNote`] on their answer. A request without a valid token (401) is logged, not recorded.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::fleet::api_token::{Principal, Role};
use crate::fleet::audit;
use crate::fleet::command::{self, ActiveRuns, CommandError, CommandEvent, CommandRequest};
use crate::fleet::console;
use crate::fleet::controller::{Controller, ControllerError};
use crate::fleet::run::bundle::BundleError;
use crate::fleet::run::{self, Event, RunError, RunRequest, Scope};
use crate::fleet::token::TokenError;
use crate::fleet::web::{TokenCheck, check_token, recorded_user, resolution_note, source_of};
use crate::report::plan::Style;
use crate::store::StoreError;

/// One route of the API: its method, its path (with `{param}` segments, as the router
/// takes it) and the weakest role that may call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// `GET` or `POST` (a `GET` route answers `HEAD` too).
    pub method: &'static str,
    /// The path, as the router takes it.
    pub path: &'static str,
    /// The weakest role that may call it. `POST /v1/runs` asks more of an apply, once its
    /// body is read: [`run_role`].
    pub role: Role,
}

const fn route(method: &'static str, path: &'static str, role: Role) -> Route {
    Route { method, path, role }
}

/// Every route with the role it needs: the router, `authenticate` and the tests use it.
pub const ROUTES: &[Route] = &[
    // The console's pages and forms (HTML).
    route("GET", "/", Role::Read),
    route("GET", "/nodes", Role::Read),
    route("GET", "/nodes/{name}", Role::Read),
    route("GET", "/runs", Role::Read),
    route("GET", "/runs/{id}", Role::Read),
    route("GET", "/runs/{id}/events", Role::Read),
    route("GET", "/findings", Role::Read),
    route("POST", "/findings/{id}/resolve", Role::Operate),
    route("GET", "/compliance", Role::Read),
    route("GET", "/schedules", Role::Read),
    route("GET", "/audit", Role::Read),
    route("POST", "/schedules/{name}/disable", Role::Operate),
    route("POST", "/schedules/{name}/enable", Role::Operate),
    route("POST", "/logout", Role::Read),
    // The API (JSON and text).
    route("GET", "/v1/nodes", Role::Read),
    route("POST", "/v1/nodes/{name}/revoke", Role::Admin),
    route("POST", "/v1/nodes/{name}/tags", Role::Admin),
    route("POST", "/v1/runs", Role::Plan),
    route("GET", "/v1/runs", Role::Read),
    route("GET", "/v1/runs/{id}", Role::Read),
    route("POST", "/v1/runs/{id}/cancel", Role::Operate),
    route("POST", "/v1/commands", Role::Operate),
    route("GET", "/v1/findings", Role::Read),
    route("POST", "/v1/findings/{id}/resolve", Role::Operate),
    route("GET", "/v1/schedules", Role::Read),
    route("POST", "/v1/schedules/{name}/disable", Role::Operate),
    route("POST", "/v1/schedules/{name}/enable", Role::Operate),
    route("GET", "/v1/audit", Role::Read),
];

/// The role a run of `mode` needs: plan and drift runs `plan`, an apply `operate`.
pub fn run_role(mode: run::Mode) -> Role {
    match mode {
        run::Mode::Plan | run::Mode::Drift => Role::Plan,
        run::Mode::Apply => Role::Operate,
    }
}

/// The route of [`ROUTES`] a request to `method` and `path` reaches (`HEAD` reaches a `GET`
/// route); `None` for a path no route has.
pub fn route_of(method: &Method, path: &str) -> Option<&'static Route> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES.iter().find(|route| {
        if route.method != method {
            return false;
        }
        let mut want = route.path.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                    if g.is_empty() {
                        return false;
                    }
                }
                (Some(w), Some(g)) if w == g => {}
                _ => return false,
            }
        }
    })
}

/// The routes that answer without a token, as `(method, path)`: liveness and the store's
/// health (no version, no counts), the console's sign-in form and its script.
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/console.js"),
];

/// How long `GET /healthz` waits for the store before it calls it unavailable.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The router, with authentication on every route.
pub fn router(controller: Arc<Controller>) -> Router {
    use crate::fleet::console::{live, pages};
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(console::login_form).post(console::login))
        .route("/logout", post(console::logout))
        .route("/console.js", get(live::script))
        .route("/nodes", get(pages::nodes))
        .route("/nodes/{name}", get(pages::node))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/runs/{id}/events", get(live::events))
        .route("/findings", get(pages::findings))
        .route("/findings/{id}/resolve", post(pages::resolve))
        .route("/compliance", get(pages::compliance))
        .route("/schedules", get(pages::schedules))
        .route("/audit", get(pages::audit))
        .route("/schedules/{name}/disable", post(pages::disable_schedule))
        .route("/schedules/{name}/enable", post(pages::enable_schedule))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{name}/revoke", post(revoke))
        .route("/v1/nodes/{name}/tags", post(node_tags))
        .route("/v1/runs", post(start_run).get(runs))
        .route("/v1/runs/{id}", get(report))
        .route("/v1/runs/{id}/cancel", post(cancel))
        .route("/v1/commands", post(start_command))
        .route("/v1/findings", get(findings))
        .route("/v1/findings/{id}/resolve", post(resolve))
        .route("/v1/schedules", get(schedules))
        .route("/v1/schedules/{name}/disable", post(disable_schedule))
        .route("/v1/schedules/{name}/enable", post(enable_schedule))
        .route("/v1/audit", get(audit_log))
        .route("/healthz", get(healthz))
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(
            run::MAX_BUNDLE_BYTES / 3 * 4 + (1 << 20),
        ))
        // Inside `authenticate`: it sees the principal of every request let through.
        .layer(middleware::from_fn_with_state(
            Arc::clone(&controller),
            record_requests,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&controller),
            authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&controller),
            refuse_when_stalled,
        ))
        .layer(middleware::map_response(json_errors))
        .layer(middleware::from_fn(console_errors))
        .layer(middleware::map_response(add_security_headers))
        // The command runs in progress live with the API that starts and cancels them.
        .layer(Extension(Arc::new(ActiveRuns::default())))
        .with_state(controller)
}

pub use crate::fleet::web::Scheme;

/// Headers on every answer: no framing, no content sniffing, no caching, no referrer, and a
/// content security policy that allows only the dashboard's inline style sheet.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; \
         connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
    // Not `no-referrer`: with it a browser sends `Origin: null` on a form's POST, and the
    // console's forms could not be told from another site's. `same-origin` sends no address to
    // another site either.
    ("referrer-policy", "same-origin"),
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

/// True for a request to one of [`PUBLIC_ROUTES`] (a `GET` route answers `HEAD` too).
fn is_public(method: &Method, path: &str) -> bool {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    PUBLIC_ROUTES
        .iter()
        .any(|(public_method, public_path)| *public_method == method && *public_path == path)
}

/// A controller that lost its shared database answers 503 to everything until it is back:
/// what it would answer could be stale, and the runs it would start could not be recorded.
async fn refuse_when_stalled(
    State(controller): State<Arc<Controller>>,
    request: Request,
    next: Next,
) -> Response {
    if controller.is_stalled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this controller cannot reach its database; use another controller",
        )
            .into_response();
    }
    next.run(request).await
}

/// Resolves the token a request presents to its [`Principal`] (the admin token, or an API
/// token read from the store) and lets it through when its role is at least its route's
/// (a change only with Bearer and the checks of [`refuse_change`]), with the principal as a
/// request extension; a request to [`PUBLIC_ROUTES`] goes through without a token. No token,
/// or one unknown, revoked or expired: 401. A token too weak for the route: 403.
async fn authenticate(
    State(controller): State<Arc<Controller>>,
    request: Request,
    next: Next,
) -> Response {
    if is_public(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(presented_token);
    let Some((credential, token)) = presented else {
        // No token: a console session, or the sign-in form for a page a browser asked for.
        let Some(cookie) = console::session::cookie_of(request.headers()) else {
            log_unauthenticated(&request, "no token");
            return sign_in_needed(&request);
        };
        let session = match session_principal(&controller, &cookie).await {
            Ok(Some(session)) => session,
            Ok(None) => {
                log_unauthenticated(&request, "a console session that ended or is not valid");
                return sign_in_needed(&request);
            }
            Err(refusal) => return refusal,
        };
        return admit(
            &controller,
            request,
            next,
            session.0,
            Credential::Session(session.1),
        )
        .await;
    };
    let principal = match check_token(&controller, token.trim().to_string()).await {
        TokenCheck::Valid(principal) => principal,
        TokenCheck::Refused(why) => {
            log_unauthenticated(&request, why);
            return unauthorized();
        }
        TokenCheck::Store(err) => return ApiError::from(err).into_response(),
        TokenCheck::Controller(err) => return ApiError::from(err).into_response(),
        TokenCheck::Other(err) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string());
        }
    };
    admit(&controller, request, next, principal, credential).await
}

/// Lets a request with a known principal through when its role is at least its route's (a
/// change only with the checks of [`refuse_change`], a session's with its form's CSRF token),
/// with the principal (and a session) as request extensions. A change refused here is in the
/// audit log, as the principal's.
async fn admit(
    controller: &Arc<Controller>,
    mut request: Request,
    next: Next,
    principal: Principal,
    credential: Credential,
) -> Response {
    let path = request.uri().path();
    let (needed, shown) = match route_of(request.method(), path) {
        Some(route) => (route.role, format!("{} {}", route.method, route.path)),
        // No route of the table: the router can only answer 404 or 405, but should it ever
        // route a request the table does not match, it is the admin's (fail closed).
        None => (Role::Admin, format!("{} {path}", request.method())),
    };
    if let Some(refusal) = forbidden(&principal, needed, &shown) {
        return record_refusal(controller, &principal, &request, refusal).await;
    }
    let safe = request.method().is_safe();
    if !safe && let Some(refusal) = refuse_change(&request, &credential) {
        return record_refusal(controller, &principal, &request, refusal).await;
    }
    if let Credential::Session(session) = &credential {
        request.extensions_mut().insert(session.clone());
        if !safe {
            request = match checked_form(request, session).await {
                Ok(request) => request,
                Err((refusal, request)) => {
                    return record_refusal(controller, &principal, &request, refusal).await;
                }
            };
        }
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

pub use crate::fleet::audit::AuditNote;

/// The act of an authenticated request: its principal, peer, route (as [`ROUTES`] writes it,
/// or the method and path when it matches none) and, as its target, the values of the route's
/// `{param}` segments.
fn act_of(principal: &Principal, request: &Request) -> audit::Act {
    let path = request.uri().path();
    let method = request.method();
    let (action, target) = match route_of(method, path) {
        Some(route) => {
            let values: Vec<&str> = route
                .path
                .split('/')
                .zip(path.split('/'))
                .filter(|(pattern, _)| pattern.starts_with('{'))
                .map(|(_, value)| value)
                .collect();
            (format!("{} {}", route.method, route.path), values.join(" "))
        }
        None => (format!("{method} {path}"), String::new()),
    };
    audit::Act::new(
        audit::Actor::of(principal),
        &source_of(request),
        &action,
        &target,
    )
}

/// Whether a request to `method` is recorded: every method but the safe ones.
fn is_recorded(method: &Method) -> bool {
    !method.is_safe()
}

/// The audit layer, inside `authenticate`: for an authenticated request that is recorded, its
/// `started` entry before the handler runs (answering 500, or 503 while the database is out of
/// reach, and doing nothing, when it cannot be written) and its outcome once the handler
/// answered: the status, the handler's [`AuditNote`] (taken off the answer) and, for an answer
/// that is not 2xx, the error's message. An outcome that cannot be written is logged as an
/// error; the answer stands (the act is done, and the `started` entry says it was begun).
async fn record_requests(
    State(controller): State<Arc<Controller>>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = request.extensions().get::<Principal>().cloned();
    let (Some(principal), true) = (principal, is_recorded(request.method())) else {
        return next.run(request).await;
    };
    let act = act_of(&principal, &request);
    if let Err(err) = controller.audit_start(&act, "").await {
        tracing::error!(actor = %act.actor.id, source = %act.source, action = %act.action, "{err}; the request was refused");
        // A database out of reach for now is 503 (another controller, or a retry, may do);
        // a store that fails (a full disk) is 500.
        let (status, hint) = if err.is_transient() {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "; try again when the store is back",
            )
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, "")
        };
        return error(status, format!("{err}: nothing was done{hint}"));
    }
    // For a handler whose act goes on after it answered (a run, a command).
    request.extensions_mut().insert(act.clone());
    let response = next.run(request).await;
    finish(&controller, act, response).await
}

/// After a run or command the API accepted ended: when it never began (nothing was sent to
/// any node: a project with errors, a selector that matches nothing, a node outside the
/// token's target), a third entry for its request, `failed`, saying why; the accepting entry
/// named a run that has no record.
async fn record_unbegun(
    controller: &Arc<Controller>,
    act: Option<audit::Act>,
    began: bool,
    errors: &[String],
) {
    let Some(act) = act.filter(|_| !began) else {
        return;
    };
    let why = errors.first().map_or("no reason given", String::as_str);
    controller
        .audit_end(
            &act,
            audit::Outcome::Failed,
            None,
            &format!("did not begin: {why}"),
        )
        .await;
}

/// Records the outcome of `act`, answered with `response`; the response, without its note.
async fn finish(
    controller: &Arc<Controller>,
    mut act: audit::Act,
    mut response: Response,
) -> Response {
    let note = response
        .extensions_mut()
        .remove::<AuditNote>()
        .unwrap_or_default();
    let status = response.status();
    let outcome = audit::Outcome::of_status(status);
    let (response, message) = if outcome == audit::Outcome::Ok {
        (response, None)
    } else {
        let (response, message) = error_message(response).await;
        (response, Some(message))
    };
    if let Some(target) = note.target {
        act.target = audit::one_field(&target);
    }
    act.run_id = note.run_id.or(act.run_id);
    let detail = note.detail.or(message).unwrap_or_default();
    controller
        .audit_end(&act, outcome, Some(status.as_u16()), &detail)
        .await;
    response
}

/// The message of an error answer (its [`ErrorBody`]'s, or its text), and the answer rebuilt.
/// Error answers are small; a body over 64 KiB is not read past that.
async fn error_message(response: Response) -> (Response, String) {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(error) => error.error.message,
        Err(_) => String::from_utf8_lossy(&bytes).trim().to_string(),
    };
    let message = if message.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string()
    } else {
        message
    };
    (Response::from_parts(parts, bytes.into()), message)
}

/// Records a request `authenticate` refused itself once its token was known (a role too weak,
/// or a change without Bearer, from another origin, or not JSON), and answers `refusal`. One
/// entry (nothing was begun); a store that cannot take it is logged, and the refusal stands.
/// The future holds no borrow of the request (a request's body is not `Sync`).
fn record_refusal(
    controller: &Arc<Controller>,
    principal: &Principal,
    request: &Request,
    refusal: Response,
) -> impl std::future::Future<Output = Response> + Send + 'static {
    let act = is_recorded(request.method()).then(|| act_of(principal, request));
    let controller = Arc::clone(controller);
    async move {
        match act {
            Some(act) => finish(&controller, act, refusal).await,
            None => refusal,
        }
    }
}

/// Logs a request refused for want of a valid token (401), which the log does not record.
fn log_unauthenticated(request: &Request, why: &str) {
    if is_recorded(request.method()) {
        tracing::warn!(
            source = %source_of(request),
            method = %request.method(),
            path = %audit::one_field(request.uri().path()),
            "refused a request without a valid token ({why}); not in the audit log"
        );
    }
}

/// The session a console cookie holds and its token's principal, when the cookie is one this
/// controller signed, has not ended, and its token is still valid; `None` otherwise.
async fn session_principal(
    controller: &Arc<Controller>,
    cookie: &str,
) -> Result<Option<(Principal, console::Session)>, Response> {
    let key = controller.console_key();
    let now = chrono::Utc::now();
    let Some(session) = console::session::open(&key, cookie, now.timestamp()) else {
        return Ok(None);
    };
    if session.token_id == Principal::admin().id {
        return Ok(Some((Principal::admin(), session)));
    }
    let id = session.token_id.clone();
    match controller
        .store(move |s| crate::fleet::api_token::principal_by_id(s, &id, now))
        .await
    {
        Ok(Ok(principal)) => Ok(Some((principal, session))),
        Ok(Err(err)) if err.is_refusal() => {
            tracing::info!(reason = %err, "console session refused");
            Ok(None)
        }
        Ok(Err(crate::fleet::api_token::ApiTokenError::Store(err))) => {
            Err(ApiError::from(err).into_response())
        }
        Ok(Err(err)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())),
        Err(err) => Err(ApiError::from(err).into_response()),
    }
}

/// The answer to a request with no token and no valid session: a browser asking for a console
/// page is sent to the sign-in form (and back afterwards); anything else is 401.
fn sign_in_needed(request: &Request) -> Response {
    let path = request.uri().path();
    let page = request.method() == Method::GET && !path.starts_with("/v1/");
    if !page || route_of(request.method(), path).is_none() {
        return unauthorized();
    }
    let back = request
        .uri()
        .path_and_query()
        .map_or(path, |p| p.as_str())
        .to_string();
    let query = serde_urlencoded::to_string([("next", back)]).unwrap_or_default();
    Redirect::to(&format!("/login?{query}")).into_response()
}

/// The largest console form taken (a note is at most a few KiB).
const MAX_FORM: usize = 64 * 1024;

/// A session's form, its CSRF field checked: the request again with the same body, or the
/// refusal (403 without the right token).
async fn checked_form(
    request: Request,
    session: &console::Session,
) -> Result<Request, (Response, Request)> {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_FORM).await {
        Ok(bytes) => bytes,
        Err(err) => {
            return Err((
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the form is too large or was cut short: {err}"),
                ),
                Request::from_parts(parts, Body::empty()),
            ));
        }
    };
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let presented = fields
        .iter()
        .find(|(name, _)| name == console::session::CSRF_FIELD)
        .map_or("", |(_, value)| value.as_str());
    if !session.csrf_matches(presented) {
        return Err((
            error(
                StatusCode::FORBIDDEN,
                "this form's CSRF token is missing or not this session's: reload the page and \
                 try again",
            ),
            Request::from_parts(parts, Body::empty()),
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The answer to a request without a valid token.
fn unauthorized() -> Response {
    let mut refusal = error(
        StatusCode::UNAUTHORIZED,
        "this API needs a token as Authorization: Bearer: the admin token (DATA_DIR/admin.token) \
         or an API token (steward token create --api)",
    );
    // Browsers prompt for Basic; the CLI sends Bearer.
    refusal.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"steward\", charset=\"UTF-8\""),
    );
    refusal
}

/// 403 when `principal`'s role is weaker than `needed` for `what` (a route, or a kind of
/// run), naming both roles and the token.
fn forbidden(principal: &Principal, needed: Role, what: &str) -> Option<Response> {
    if principal.role.allows(needed) {
        return None;
    }
    Some(error(
        StatusCode::FORBIDDEN,
        format!(
            "{what} needs the {needed} role; this token ({}, {}) has {}",
            principal.name, principal.id, principal.role
        ),
    ))
}

/// How the token was presented.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Credential {
    /// `Authorization: Bearer TOKEN`: only a program sets it.
    Bearer,
    /// HTTP Basic, which a browser resends by itself on every request to this origin, those
    /// that another site's page makes it send included.
    Basic,
    /// A console session's cookie (`SameSite=Strict`), which changes state only through the
    /// console's forms, each with its CSRF token.
    Session(console::Session),
}

/// Why a state-changing request (any method but GET, HEAD, OPTIONS, TRACE) is refused, if it
/// is: each check stops a request a browser could send from another site with the
/// credentials it remembers.
fn refuse_change(request: &Request, credential: &Credential) -> Option<Response> {
    let headers = request.headers();
    let method = request.method();
    let path = request.uri().path();
    match credential {
        Credential::Basic => {
            return Some(error(
                StatusCode::FORBIDDEN,
                format!(
                    "{method} needs its token as Authorization: Bearer; Basic authentication \
                     is read-only"
                ),
            ));
        }
        Credential::Session(_) if path.starts_with("/v1/") => {
            return Some(error(
                StatusCode::FORBIDDEN,
                format!(
                    "{method} {path} needs its token as Authorization: Bearer; a console \
                     session changes state only through the console's forms"
                ),
            ));
        }
        Credential::Session(_) | Credential::Bearer => {}
    }
    if let Some(why) = crate::fleet::web::refuse_cross_site(request) {
        return Some(error(StatusCode::FORBIDDEN, why));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let wanted = match credential {
        Credential::Session(_) => "application/x-www-form-urlencoded",
        Credential::Basic | Credential::Bearer => "application/json",
    };
    if !media_type.eq_ignore_ascii_case(wanted) {
        return Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "{method} needs Content-Type: {wanted}{}; got `{}`",
                if wanted == "application/json" {
                    " (even without a body)"
                } else {
                    ""
                },
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

/// Why an API request failed. Its status is decided in one place: [`HttpStatus`], one
/// `match` per error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request itself is wrong (malformed JSON, an unknown report format).
    #[error("{0}")]
    BadRequest(String),
    /// The `Accept` header names no form this route answers in.
    #[error("{0}")]
    NotAcceptable(String),
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

    /// The `code` of its JSON error body: the status's, from [`error_code`].
    fn code(&self) -> &'static str {
        error_code(self.status())
    }
}

/// The `code` of an error answered with `status`: a word that names the status, so a program
/// can tell the errors apart without reading the message.
pub fn error_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        status if status.is_server_error() => "internal",
        _ => "error",
    }
}

impl HttpStatus for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
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
            StoreError::NoRun(_)
            | StoreError::NoFinding(_)
            | StoreError::NoNode(_)
            | StoreError::NoApiToken(_) => StatusCode::NOT_FOUND,
            StoreError::AlreadyResolved(_)
            | StoreError::Revoked(_)
            | StoreError::ApiTokenRevoked { .. } => StatusCode::CONFLICT,
            StoreError::Token(_) => StatusCode::BAD_REQUEST,
            // The database is out of reach for now: another controller (or a retry) may do.
            err if err.is_transient() => StatusCode::SERVICE_UNAVAILABLE,
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
            RunError::PlanNodesGone(_) | RunError::PlanStale(_) => StatusCode::CONFLICT,
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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
            },
        };
        (self.status(), axum::Json(body)).into_response()
    }
}

/// Every error's body: `{"error": {"code": "not_found", "message": "no run `x`"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The error of an [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// The status as a word ([`error_code`]): `bad_request`, `not_found`, `conflict`, ...
    pub code: String,
    /// What the CLI prints after `error: `.
    pub message: String,
}

/// An error answer: `status`, with `message` in an [`ErrorBody`].
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: error_code(status).to_string(),
            message: message.into(),
        },
    };
    (status, axum::Json(body)).into_response()
}

/// True when `headers` say the body is JSON.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Turns an error answer that is not JSON into an [`ErrorBody`] with the same status and
/// headers: those the HTTP framework makes itself (a path or query parameter of the wrong
/// type, a method the route does not take, a body over the limit) and the dashboard's.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || is_json(response.headers())
        || is_html(response.headers())
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    // The framework's messages are one line; a longer body is cut, never waited for.
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let message = text.trim();
    let message = message.strip_prefix("error: ").unwrap_or(message).trim();
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error")
    } else {
        message
    };
    let mut answer = error(status, message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// True for an answer that is an HTML page (the console's, errors included).
fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"))
}

/// A browser asking for a console page gets its refusals and errors as a page, not JSON (a
/// program, which does not ask for `text/html`, gets the JSON error as from any route).
async fn console_errors(request: Request, next: Next) -> Response {
    let page = !request.uri().path().starts_with("/v1/")
        && request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"));
    let response = next.run(request).await;
    let status = response.status();
    if !page
        || !(status.is_client_error() || status.is_server_error())
        || !is_json(response.headers())
    {
        return response;
    }
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    console::error_page(status, &message)
}

/// A request to no route: JSON 404 (after authentication, so a caller without the token
/// learns nothing of which paths exist).
async fn unknown_route(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route {method} {}; docs/reference/api.md lists the routes",
            uri.path()
        ),
    )
}

/// The answer of `GET /healthz`: liveness and the store's health, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `ok`, or `unavailable` when the store is.
    pub status: String,
    /// `ok`, or `unavailable` when the store did not answer a query within 5 seconds.
    pub store: String,
}

/// `GET /healthz`, without the token: 200 `{"status":"ok","store":"ok"}`, or 503 with both
/// `unavailable` when the store fails a trivial query (or takes over [`HEALTH_TIMEOUT`]).
async fn healthz(State(controller): State<Arc<Controller>>) -> Response {
    let check = tokio::time::timeout(HEALTH_TIMEOUT, controller.store(|s| s.oldest_run_id())).await;
    let failure = match check {
        Ok(Ok(Ok(_))) => None,
        Ok(Ok(Err(err))) => Some(err.to_string()),
        Ok(Err(err)) => Some(err.to_string()),
        Err(_) => Some(format!("no answer within {} s", HEALTH_TIMEOUT.as_secs())),
    };
    let (status, word) = match &failure {
        None => (StatusCode::OK, "ok"),
        Some(reason) => {
            tracing::warn!(%reason, "health check: the store is unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    };
    let health = Health {
        status: word.to_string(),
        store: word.to_string(),
    };
    (status, axum::Json(health)).into_response()
}

/// A form an answer can take: its `?format=` name, its media type, and what renders it.
#[derive(Clone, Copy, Debug)]
struct Offer<T> {
    format: &'static str,
    media: &'static str,
    form: T,
}

/// The forms of a listing or an action's answer: JSON (the default) or text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listing {
    Json,
    Text,
}

const LISTING: &[Offer<Listing>] = &[
    Offer {
        format: "json",
        media: "application/json",
        form: Listing::Json,
    },
    Offer {
        format: "text",
        media: "text/plain; charset=utf-8",
        form: Listing::Text,
    },
];

/// The forms of a report: the renderers of `steward report --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReportForm {
    Json,
    Human,
    Sarif,
    Junit,
    Markdown,
}

const REPORT: &[Offer<ReportForm>] = &[
    Offer {
        format: "json",
        media: "application/json",
        form: ReportForm::Json,
    },
    Offer {
        format: "human",
        media: "text/plain; charset=utf-8",
        form: ReportForm::Human,
    },
    Offer {
        format: "sarif",
        media: "application/sarif+json",
        form: ReportForm::Sarif,
    },
    Offer {
        format: "junit",
        media: "application/xml",
        form: ReportForm::Junit,
    },
    Offer {
        format: "markdown",
        media: "text/markdown; charset=utf-8",
        form: ReportForm::Markdown,
    },
];

/// Which of `offers` to answer with: the one `?format=` names (400 for another name), else
/// the one `Accept` prefers (highest `q`, then the most specific range, then the order of
/// `offers`), else the first. 406 when `Accept` excludes them all.
fn negotiate<T: Copy>(
    offers: &'static [Offer<T>],
    format: Option<&str>,
    headers: &HeaderMap,
) -> Result<&'static Offer<T>, ApiError> {
    let names = || {
        offers
            .iter()
            .map(|offer| offer.format)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(format) = format {
        return offers
            .iter()
            .find(|offer| offer.format.eq_ignore_ascii_case(format.trim()))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("unknown format `{format}`: use one of {}", names()))
            });
    }
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let ranges: Vec<MediaRange> = accept
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(MediaRange::parse)
        .collect();
    let Some(first) = offers.first() else {
        return Err(ApiError::NotAcceptable(
            "this route has no answer".to_string(),
        ));
    };
    if ranges.is_empty() {
        return Ok(first);
    }
    let mut best: Option<(&Offer<T>, (u16, u8))> = None;
    for offer in offers {
        let media = offer.media.split(';').next().unwrap_or("").trim();
        let Some(rank) = ranges
            .iter()
            .filter_map(|range| range.rank(media))
            .max_by_key(|(_, specificity)| *specificity)
        else {
            continue;
        };
        if rank.0 > 0 && best.is_none_or(|(_, kept)| rank > kept) {
            best = Some((offer, rank));
        }
    }
    best.map(|(offer, _)| offer).ok_or_else(|| {
        ApiError::NotAcceptable(format!(
            "Accept `{}` names no form of this route: it answers {}",
            accept.join(", "),
            offers
                .iter()
                .map(|offer| offer.media.split(';').next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// One range of an `Accept` header: `type/subtype` (either may be `*`) and its weight.
#[derive(Debug, PartialEq, Eq)]
struct MediaRange {
    kind: String,
    subtype: String,
    /// `q` in thousandths.
    quality: u16,
}

impl MediaRange {
    fn parse(text: &str) -> Option<MediaRange> {
        let mut parts = text.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let mut quality = 1000;
        for parameter in parts {
            let Some((name, value)) = parameter.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("q") {
                let value: f32 = value.trim().parse().ok()?;
                quality = (value.clamp(0.0, 1.0) * 1000.0).round() as u16;
            }
        }
        Some(MediaRange {
            kind: kind.trim().to_ascii_lowercase(),
            subtype: subtype.trim().to_ascii_lowercase(),
            quality,
        })
    }

    /// Its weight for `media` and how specific the match is (2 exact, 1 `type/*`, 0
    /// `*/*`), or `None` when it does not match.
    fn rank(&self, media: &str) -> Option<(u16, u8)> {
        let (kind, subtype) = media.split_once('/')?;
        let specificity = match (self.kind.as_str(), self.subtype.as_str()) {
            ("*", "*") => 0,
            (k, "*") if k.eq_ignore_ascii_case(kind) => 1,
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(subtype) => 2,
            _ => return None,
        };
        Some((self.quality, specificity))
    }
}

/// `body` as the answer in form `offer`, with `Vary: Accept`.
fn answer<T>(offer: &Offer<T>, body: String) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(offer.media));
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    response
}

/// `value` as JSON in form `offer` (pretty, one value, ending with a newline).
fn json_answer<T>(offer: &Offer<T>, value: &impl Serialize) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(mut text) => {
            text.push('\n');
            answer(offer, text)
        }
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the answer: {err}"),
        ),
    }
}

/// A listing or an action's answer: `json` as JSON, or `text` as text, as negotiated.
fn listing(
    format: Option<&str>,
    headers: &HeaderMap,
    json: &impl Serialize,
    text: impl FnOnce() -> String,
) -> Response {
    match negotiate(LISTING, format, headers) {
        Ok(offer) => match offer.form {
            Listing::Json => json_answer(offer, json),
            Listing::Text => answer(offer, text()),
        },
        Err(err) => err.into_response(),
    }
}

/// The query of a listing or an action: `?format=json` or `?format=text`.
#[derive(Deserialize)]
struct FormatQuery {
    #[serde(default)]
    format: Option<String>,
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

/// `GET /v1/nodes`: the inventory, as JSON (there is no text form; the CLI renders its table).
async fn nodes(
    State(controller): State<Arc<Controller>>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Response {
    const NODES: &[Offer<()>] = &[Offer {
        format: "json",
        media: "application/json",
        form: (),
    }];
    let offer = match negotiate(NODES, query.format.as_deref(), &headers) {
        Ok(offer) => offer,
        Err(err) => return err.into_response(),
    };
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
            json_answer(offer, &infos)
        }
        Ok(Err(err)) => ApiError::from(err).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// The JSON answer of `POST /v1/nodes/{name}/revoke`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Revoked {
    /// The node.
    pub node: String,
    /// When it was revoked (the first time, for a node revoked again).
    pub revoked_at: Option<String>,
}

async fn revoke(
    State(controller): State<Arc<Controller>>,
    Path(name): Path<String>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Response {
    let who = name.clone();
    match controller.store(move |s| s.revoke_node(&who)).await {
        Ok(Ok(node)) => {
            controller.disconnect(&name);
            let note = AuditNote {
                detail: Some(format!(
                    "revoked at {}",
                    node.revoked_at.as_deref().unwrap_or("?")
                )),
                ..AuditNote::default()
            };
            let revoked = Revoked {
                node: node.name,
                revoked_at: node.revoked_at,
            };
            note.on(listing(query.format.as_deref(), &headers, &revoked, || {
                format!("revoked node `{name}`; its certificate is no longer accepted\n")
            }))
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

/// The JSON answer of `POST /v1/nodes/{name}/tags`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeTags {
    /// The node.
    pub node: String,
    /// Its tags now.
    pub tags: std::collections::BTreeMap<String, String>,
}

async fn node_tags(
    State(controller): State<Arc<Controller>>,
    Path(name): Path<String>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: TagRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return malformed("tag request", &err)
                .on(ApiError::BadRequest(format!("malformed tag request: {err}")).into_response());
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
        Ok(Ok(node)) => {
            let text = || {
                format!(
                    "node `{name}`: tags {}\n",
                    match crate::fleet::token::tags_text(&node.tags) {
                        text if text.is_empty() => "(none)".to_string(),
                        text => text,
                    }
                )
            };
            let tags = NodeTags {
                node: node.name.clone(),
                tags: node.tags.clone(),
            };
            let note = AuditNote {
                detail: Some(format!(
                    "tags now {}",
                    match crate::fleet::token::tags_text(&node.tags) {
                        text if text.is_empty() => "(none)".to_string(),
                        text => text,
                    }
                )),
                ..AuditNote::default()
            };
            note.on(listing(query.format.as_deref(), &headers, &tags, text))
        }
        Ok(Err(err)) => ApiError::from(err).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn start_run(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    act: Option<Extension<audit::Act>>,
    body: Bytes,
) -> Response {
    let mut request: RunRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return malformed("run request", &err)
                .on(ApiError::BadRequest(format!("malformed run request: {err}")).into_response());
        }
    };
    let mode = match request.mode {
        run::Mode::Plan => "plan",
        run::Mode::Apply => "apply",
        run::Mode::Drift => "drift",
    };
    // What the run acts on, for the audit log: the nodes it asks for.
    let target = match (&request.adhoc, &request.target) {
        (Some(adhoc), _) => adhoc.target.clone(),
        (None, Some(target)) => target.clone(),
        (None, None) => "(every association)".to_string(),
    };
    let noted = |response: Response| {
        AuditNote {
            target: Some(target.clone()),
            ..AuditNote::default()
        }
        .on(response)
    };
    let what = format!("POST /v1/runs (mode {mode})");
    if let Some(refusal) = forbidden(&principal, run_role(request.mode), &what) {
        return noted(refusal);
    }
    let mut scope = match &request.adhoc {
        Some(adhoc) => match adhoc.scope(&controller).await {
            Ok(scope) => scope,
            Err(err) => return noted(ApiError::from(err).into_response()),
        },
        None => Scope::default(),
    };
    scope.limit = match crate::fleet::api_token::Limit::of(&principal) {
        Ok(limit) => limit,
        Err(err) => {
            return noted(
                ApiError::BadRequest(format!("the token's target: {err}")).into_response(),
            );
        }
    };
    // The id of a run that is recorded (apply, drift) is chosen now, so the audit log names
    // it when the run is accepted; a plan is not recorded.
    if request.mode != run::Mode::Plan {
        scope.run_id = Some(run::new_run_id());
    }
    let note = AuditNote {
        target: Some(target.clone()),
        run_id: scope.run_id.clone(),
        detail: Some(format!(
            "{mode}{} of project `{}` accepted; the run's progress and outcome go to the caller and its record",
            if request.saved.is_some() {
                " of a saved plan"
            } else {
                ""
            },
            request.project
        )),
    };
    request.user = recorded_user(&principal, &request.user);
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    let act = act.map(|Extension(act)| audit::Act {
        target: target.clone(),
        run_id: note.run_id.clone(),
        ..act
    });
    tokio::spawn(async move {
        let response = run::run(&controller, request, scope, tx.clone()).await;
        let began = !(response.failed && response.nodes.is_empty());
        record_unbegun(&controller, act, began, &response.errors).await;
        let _ = tx.send(Event::Done(response));
    });
    let stream = json_lines(rx);
    note.on((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The note of a request whose body is not what its route takes: it says so without quoting
/// the parser's message, which may quote the body (and a body may hold secrets).
fn malformed(what: &str, err: &serde_json::Error) -> AuditNote {
    let kind = match err.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "JSON of another shape",
        serde_json::error::Category::Eof => "cut short",
    };
    AuditNote {
        detail: Some(format!(
            "malformed {what}: {kind} at line {} column {} (the body is not recorded)",
            err.line(),
            err.column()
        )),
        ..AuditNote::default()
    }
}

async fn start_command(
    State(controller): State<Arc<Controller>>,
    Extension(commands): Extension<Arc<ActiveRuns>>,
    Extension(principal): Extension<Principal>,
    act: Option<Extension<audit::Act>>,
    body: Bytes,
) -> Response {
    let mut request: CommandRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return malformed("command request", &err).on(ApiError::BadRequest(format!(
                "malformed command request: {err}"
            ))
            .into_response());
        }
    };
    request.user_name = recorded_user(&principal, &request.user_name);
    request.limit = match crate::fleet::api_token::Limit::of(&principal) {
        Ok(limit) => limit,
        Err(err) => {
            return AuditNote {
                target: Some(request.target.clone()),
                ..AuditNote::default()
            }
            .on(ApiError::BadRequest(format!("the token's target: {err}")).into_response());
        }
    };
    // Chosen now, so the audit log names the run when it is accepted.
    let run_id = run::new_run_id();
    request.run_id = Some(run_id.clone());
    // The program only: its arguments and environment may hold secrets.
    let program = request.argv.first().map(String::as_str).unwrap_or("");
    let note = AuditNote {
        target: Some(request.target.clone()),
        run_id: Some(run_id),
        detail: Some(format!(
            "command `{}` accepted; its progress and outcome go to the caller and its record",
            program.rsplit('/').next().unwrap_or(program)
        )),
    };
    let (tx, rx) = mpsc::unbounded_channel::<CommandEvent>();
    let act = act.map(|Extension(act)| audit::Act {
        target: request.target.clone(),
        run_id: note.run_id.clone(),
        ..act
    });
    tokio::spawn(async move {
        let response = command::run(&controller, &commands, request, tx.clone()).await;
        let began = !response.nodes.is_empty() || response.errors.is_empty();
        record_unbegun(&controller, act, began, &response.errors).await;
        let _ = tx.send(CommandEvent::Done(response));
    });
    note.on((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(json_lines(rx)),
    )
        .into_response())
}

/// The JSON answer of `POST /v1/runs/{id}/cancel`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Cancelling {
    /// The command run.
    pub run: String,
    /// How many commands were sent so far (finished ones included), each now told to stop.
    pub signalled: usize,
}

async fn cancel(
    State(controller): State<Arc<Controller>>,
    Extension(commands): Extension<Arc<ActiveRuns>>,
    Path(id): Path<String>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Response {
    let note = |detail: Option<String>| AuditNote {
        run_id: Some(id.clone()),
        detail,
        ..AuditNote::default()
    };
    match command::cancel(&controller, &commands, &id) {
        Ok(n) => {
            let cancelling = Cancelling {
                run: id.clone(),
                signalled: n,
            };
            note(Some(format!("{n} command(s) told to stop"))).on(listing(
                query.format.as_deref(),
                &headers,
                &cancelling,
                || {
                    format!(
                        "cancelling run {id}: no new node starts; {n} running command(s) stopped\n"
                    )
                },
            ))
        }
        Err(err) => note(None).on(ApiError::from(err).into_response()),
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

/// One run in `GET /v1/runs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run id.
    pub id: String,
    /// `apply`, `drift` or `command`.
    pub kind: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// Who ran it (`admin token (claims NAME)`, `API token NAME (ID)`, `scheduler`, `agent`).
    pub user: String,
    /// Its results by outcome, as the columns of `steward runs` count them.
    pub counts: RunCounts,
}

/// The counts of a [`RunInfo`].
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct RunCounts {
    /// Changed (and, for a command run, succeeded).
    pub changed: usize,
    /// Drifted.
    pub drifted: usize,
    /// Failed (and timed out).
    pub failed: usize,
    /// Skipped (and cancelled, or not started).
    pub skipped: usize,
    /// Unchanged.
    pub unchanged: usize,
}

impl From<&crate::store::RunSummary> for RunInfo {
    fn from(run: &crate::store::RunSummary) -> RunInfo {
        let [unchanged, changed, drifted, failed, skipped] = run.counts;
        RunInfo {
            id: run.id.clone(),
            kind: run.kind.as_str().to_string(),
            started_at: run.started_at.clone(),
            user: run.user.clone(),
            counts: RunCounts {
                changed,
                drifted,
                failed,
                skipped,
                unchanged,
            },
        }
    }
}

/// One finding in `GET /v1/findings` (and the answer of its `resolve`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FindingInfo {
    /// Its number.
    pub id: i64,
    /// The node.
    pub node: String,
    /// `TYPE:NAME`.
    pub resource: String,
    /// `drift`, `failure` or `unreachable`.
    pub kind: String,
    /// Open until a compliant run (or a person) resolves it.
    pub open: bool,
    /// `CRITICAL`, `HIGH`, ...
    pub severity: String,
    /// RFC 3339 UTC.
    pub first_seen: String,
    /// RFC 3339 UTC.
    pub last_seen: String,
    /// How many runs saw it.
    pub count: u64,
    /// The last run that saw it.
    pub last_run: String,
    /// What was seen last, scrubbed of secrets.
    pub message: String,
    /// How and when it was resolved.
    pub resolution: Option<String>,
    /// The association that put the resource on the node, when one did.
    #[serde(default)]
    pub association: Option<String>,
}

impl From<&crate::store::Finding> for FindingInfo {
    fn from(finding: &crate::store::Finding) -> FindingInfo {
        FindingInfo {
            id: finding.id,
            node: finding.node.clone(),
            resource: finding.resource.clone(),
            kind: finding.kind.as_str().to_string(),
            open: finding.open,
            severity: finding.severity.as_str().to_string(),
            first_seen: finding.first_seen.clone(),
            last_seen: finding.last_seen.clone(),
            count: finding.count,
            last_run: finding.last_run.clone(),
            message: finding.message.clone(),
            resolution: finding.resolution.clone(),
            association: finding.association.clone(),
        }
    }
}

/// `GET /v1/runs`: the run history, newest first.
async fn runs(
    State(controller): State<Arc<Controller>>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Response {
    match controller.store(|s| s.runs()).await {
        Ok(Ok(runs)) => {
            let infos: Vec<RunInfo> = runs.iter().map(RunInfo::from).collect();
            listing(query.format.as_deref(), &headers, &infos, || {
                crate::report::run::runs_table(&runs, None)
            })
        }
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

/// `GET /v1/runs/{id}`: one run, rendered in the form `?format=` or `Accept` asks for.
async fn report(
    State(controller): State<Arc<Controller>>,
    Path(id): Path<String>,
    Query(query): Query<ReportQuery>,
    headers: HeaderMap,
) -> Response {
    let offer = match negotiate(REPORT, query.format.as_deref(), &headers) {
        Ok(offer) => offer,
        Err(err) => return err.into_response(),
    };
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
    let text = match offer.form {
        ReportForm::Human => crate::report::run::human(&run, &findings, Style::new(query.color)),
        ReportForm::Json => crate::report::run::json(&run, &findings),
        ReportForm::Junit => crate::report::run::junit(&run),
        ReportForm::Sarif => crate::report::run::sarif(&run),
        ReportForm::Markdown => crate::report::run::markdown(&run, &findings),
    };
    answer(offer, text)
}

#[derive(Deserialize)]
struct FindingsQuery {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    format: Option<String>,
}

/// `GET /v1/findings`: the open findings, or all with `?all=true`.
async fn findings(
    State(controller): State<Arc<Controller>>,
    Query(query): Query<FindingsQuery>,
    headers: HeaderMap,
) -> Response {
    let all = query.all;
    match controller.store(move |s| s.findings(all)).await {
        Ok(Ok(findings)) => {
            let infos: Vec<FindingInfo> = findings.iter().map(FindingInfo::from).collect();
            listing(query.format.as_deref(), &headers, &infos, || {
                crate::report::run::findings_table(&findings, all, None)
            })
        }
        Ok(Err(err)) => ApiError::from(err).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// The body of `POST /v1/findings/{id}/resolve` (it may be empty).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// Why it is resolved, kept in the finding's resolution after who resolved it.
    #[serde(default)]
    pub note: Option<String>,
}

/// `POST /v1/findings/{id}/resolve`: the finding, now resolved.
async fn resolve(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return ApiError::BadRequest(format!("finding `{id}` is not a number")).into_response();
    };
    let request: ResolveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResolveRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(err) => {
                return ApiError::BadRequest(format!("malformed resolve request: {err}"))
                    .into_response();
            }
        }
    };
    let note = resolution_note(&principal, request.note.as_deref());
    match controller
        .store(move |s| s.resolve_finding(id, Some(&note)))
        .await
    {
        Ok(Ok(finding)) => {
            let what = format!(
                "{} of {} on {}",
                finding.kind.as_str(),
                finding.resource,
                finding.node
            );
            let note = AuditNote {
                detail: Some(format!(
                    "resolved by hand: {what}{}",
                    request
                        .note
                        .as_deref()
                        .map(str::trim)
                        .filter(|n| !n.is_empty())
                        .map(|n| format!(" (note: {})", crate::fleet::audit::one_field(n)))
                        .unwrap_or_default()
                )),
                ..AuditNote::default()
            };
            note.on(listing(
                query.format.as_deref(),
                &headers,
                &FindingInfo::from(&finding),
                || format!("resolved finding {}: {what}\n", finding.id),
            ))
        }
        Ok(Err(err)) => ApiError::from(err).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// The query of `GET /v1/audit`.
#[derive(Deserialize)]
struct AuditParams {
    /// At most this many entries ([`audit::DEFAULT_PAGE`] when not given).
    #[serde(default)]
    limit: Option<usize>,
    /// Only entries whose id is below this one.
    #[serde(default)]
    before: Option<i64>,
    /// Only entries of this run.
    #[serde(default)]
    run: Option<String>,
    /// Only entries of this actor id.
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

/// `GET /v1/audit`: the audit log, newest first, a page at a time (`?limit=N&before=ID`), of
/// one run or actor when asked (`?run=ID`, `?actor=ID`).
async fn audit_log(
    State(controller): State<Arc<Controller>>,
    Query(query): Query<AuditParams>,
    headers: HeaderMap,
) -> Response {
    let limit = query.limit.unwrap_or(audit::DEFAULT_PAGE);
    if !(1..=audit::MAX_PAGE).contains(&limit) {
        return ApiError::BadRequest(format!(
            "limit {limit}: give 1 to {} entries",
            audit::MAX_PAGE
        ))
        .into_response();
    }
    let wanted = crate::store::AuditQuery {
        limit,
        before: query.before,
        run_id: query.run,
        actor_id: query.actor,
    };
    match controller.store(move |s| s.audit(&wanted)).await {
        Ok(Ok(records)) => {
            let entries: Vec<audit::AuditInfo> =
                records.iter().map(audit::AuditInfo::from).collect();
            listing(query.format.as_deref(), &headers, &entries, || {
                audit::table(&entries, None)
            })
        }

        Ok(Err(err)) => ApiError::from(err).into_response(),
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// An error of the schedules' routes: the store's and the controller's as elsewhere; any
/// other (the stored project cannot be read back) is the controller's failure, 500.
fn schedules_error(err: crate::fleet::schedules::SchedulesError) -> Response {
    use crate::fleet::schedules::SchedulesError;
    match err {
        SchedulesError::Store(err) => ApiError::from(err).into_response(),
        SchedulesError::Controller(err) => ApiError::from(err).into_response(),
        err => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the schedules: {err}"),
        ),
    }
}

/// `GET /v1/schedules`: the current project's scheduled associations, as JSON
/// ([`ScheduleInfo`](crate::fleet::schedule::ScheduleInfo)) or as the table `steward
/// schedules` prints.
async fn schedules(
    State(controller): State<Arc<Controller>>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Response {
    match crate::fleet::schedules::schedules(&controller).await {
        Ok(infos) => listing(query.format.as_deref(), &headers, &infos, || {
            crate::fleet::schedule::table(&infos, None)
        }),
        Err(err) => schedules_error(err),
    }
}

/// `POST /v1/schedules/{name}/disable`: the association, switched off.
async fn disable_schedule(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Response {
    switch_schedule(&controller, &principal, &name, false, &query, &headers).await
}

/// `POST /v1/schedules/{name}/enable`: the association, switched on again.
async fn enable_schedule(
    State(controller): State<Arc<Controller>>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Query(query): Query<FormatQuery>,
    headers: HeaderMap,
) -> Response {
    switch_schedule(&controller, &principal, &name, true, &query, &headers).await
}

/// Switches `name` as `principal` ([`crate::fleet::schedules::switch_schedule`]) and answers
/// with its state now; 404 when the current project has no scheduled association `name`.
async fn switch_schedule(
    controller: &Arc<Controller>,
    principal: &Principal,
    name: &str,
    enabled: bool,
    query: &FormatQuery,
    headers: &HeaderMap,
) -> Response {
    let by = recorded_user(principal, "");
    match crate::fleet::schedules::switch_schedule(controller, name, enabled, &by).await {
        Ok(Some(info)) => listing(query.format.as_deref(), headers, &info, || {
            let since = match (&info.changed_at, &info.changed_by) {
                (Some(at), Some(by)) => format!(" (since {at}, by {by})"),
                _ => String::new(),
            };
            match (&info.next_firing, info.enabled) {
                (_, false) => format!(
                    "scheduled association `{name}` is disabled{since}: it does not fire until \
                     it is enabled again\n"
                ),
                (Some(next), true) => format!(
                    "scheduled association `{name}` is enabled{since}; it next fires at \
                     {next}{}\n",
                    if info.due { " (due)" } else { "" }
                ),
                (None, true) => format!("scheduled association `{name}` is enabled{since}\n"),
            }
        }),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("the current project has no scheduled association `{name}`"),
        ),
        Err(err) => schedules_error(err),
    }
}

#[cfg(test)]
mod tests {
    use super::{HeaderMap, LISTING, Listing, REPORT, ReportForm, is_public, negotiate};
    use axum::http::{HeaderValue, Method, header};

    fn accepting(accept: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(header::ACCEPT, HeaderValue::from_str(accept).unwrap());
        }
        headers
    }

    #[test]
    fn a_listing_is_json_unless_text_is_asked_for() {
        let form = |format: Option<&str>, accept: Option<&str>| {
            negotiate(LISTING, format, &accepting(accept)).map(|offer| offer.form)
        };
        assert_eq!(form(None, None).unwrap(), Listing::Json);
        assert_eq!(form(None, Some("*/*")).unwrap(), Listing::Json);
        assert_eq!(form(None, Some("application/json")).unwrap(), Listing::Json);
        assert_eq!(form(None, Some("text/plain")).unwrap(), Listing::Text);
        assert_eq!(form(None, Some("text/*")).unwrap(), Listing::Text);
        // A browser's: HTML first, which the API has not, then anything.
        assert_eq!(
            form(
                None,
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
            )
            .unwrap(),
            Listing::Json
        );
        // The explicit range wins over the wildcard of the same weight; weights decide first.
        assert_eq!(form(None, Some("text/plain, */*")).unwrap(), Listing::Text);
        assert_eq!(
            form(None, Some("application/json;q=0.5, text/plain")).unwrap(),
            Listing::Text
        );
        assert_eq!(
            form(None, Some("*/*;q=0.1, application/json;q=0")).unwrap(),
            Listing::Text
        );
        // ?format= wins over Accept.
        assert_eq!(
            form(Some("json"), Some("text/plain")).unwrap(),
            Listing::Json
        );
        assert_eq!(
            form(Some("text"), Some("application/json")).unwrap(),
            Listing::Text
        );
        let unknown = form(Some("yaml"), None).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "unknown format `yaml`: use one of json, text"
        );
        let refused = form(None, Some("image/png")).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Accept `image/png` names no form of this route: it answers application/json, \
             text/plain"
        );
    }

    #[test]
    fn a_report_takes_the_form_its_media_type_names() {
        let form = |format: Option<&str>, accept: Option<&str>| {
            negotiate(REPORT, format, &accepting(accept))
                .map(|offer| (offer.form, offer.media))
                .unwrap()
        };
        assert_eq!(form(None, None), (ReportForm::Json, "application/json"));
        assert_eq!(
            form(None, Some("application/sarif+json")),
            (ReportForm::Sarif, "application/sarif+json")
        );
        assert_eq!(
            form(None, Some("application/xml")),
            (ReportForm::Junit, "application/xml")
        );
        assert_eq!(
            form(None, Some("text/markdown")),
            (ReportForm::Markdown, "text/markdown; charset=utf-8")
        );
        assert_eq!(
            form(None, Some("text/plain")),
            (ReportForm::Human, "text/plain; charset=utf-8")
        );
        assert_eq!(
            form(Some("markdown"), Some("application/json")).0,
            ReportForm::Markdown
        );
    }

    #[test]
    fn a_request_reaches_the_route_whose_path_it_fills() {
        use super::{ROUTES, Role, route_of};
        let role = |method: Method, path: &str| route_of(&method, path).map(|r| r.role);
        assert_eq!(role(Method::GET, "/"), Some(Role::Read));
        assert_eq!(role(Method::HEAD, "/v1/runs"), Some(Role::Read));
        assert_eq!(role(Method::POST, "/v1/runs"), Some(Role::Plan));
        assert_eq!(
            role(Method::POST, "/v1/runs/r1/cancel"),
            Some(Role::Operate)
        );
        assert_eq!(
            role(Method::POST, "/v1/nodes/web-1/tags"),
            Some(Role::Admin)
        );
        assert_eq!(
            role(Method::POST, "/v1/nodes/web-1/revoke"),
            Some(Role::Admin)
        );
        assert_eq!(role(Method::GET, "/v1/runs/r1"), Some(Role::Read));
        assert_eq!(role(Method::GET, "/v1/schedules"), Some(Role::Read));
        assert_eq!(
            role(Method::POST, "/v1/schedules/nightly%2Fdrift/disable"),
            Some(Role::Operate)
        );
        assert_eq!(role(Method::POST, "/v1/schedules/nightly"), None);
        assert_eq!(role(Method::POST, "/v1/nodes//tags"), None);
        assert_eq!(role(Method::GET, "/v1/runs/r1/cancel"), None);
        assert_eq!(role(Method::DELETE, "/v1/nodes"), None);
        assert_eq!(role(Method::GET, "/v1/nodes/"), None);
        // Every route is reached by its own path.
        for route in ROUTES {
            let path = route.path.replace("{name}", "n").replace("{id}", "1");
            let method = Method::from_bytes(route.method.as_bytes()).unwrap();
            assert_eq!(route_of(&method, &path), Some(route), "{path}");
        }
    }

    #[test]
    fn only_healthz_the_sign_in_form_and_the_script_are_public() {
        assert!(is_public(&Method::GET, "/login"));
        assert!(is_public(&Method::POST, "/login"));
        assert!(is_public(&Method::GET, "/console.js"));
        assert!(!is_public(&Method::POST, "/console.js"));
        assert!(!is_public(&Method::POST, "/logout"));
        assert!(is_public(&Method::GET, "/healthz"));
        assert!(is_public(&Method::HEAD, "/healthz"));
        assert!(!is_public(&Method::POST, "/healthz"));
        assert!(!is_public(&Method::GET, "/healthz/"));
        assert!(!is_public(&Method::GET, "/v1/nodes"));
        assert!(!is_public(&Method::GET, "/"));
    }

    #[test]
    fn a_request_acts_on_its_routes_parameters() {
        use crate::fleet::api_token::Principal;
        use crate::fleet::audit;
        use axum::extract::{ConnectInfo, Request};
        use std::net::SocketAddr;
        let request = |method: Method, path: &str| {
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap();
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4242))));
            request
        };
        let admin = Principal::admin();
        let act = super::act_of(&admin, &request(Method::POST, "/v1/nodes/web-1/tags"));
        assert_eq!(
            act,
            audit::Act {
                actor: audit::Actor {
                    id: "admin".into(),
                    name: "admin token".into()
                },
                source: "127.0.0.1:4242".into(),
                action: "POST /v1/nodes/{name}/tags".into(),
                target: "web-1".into(),
                run_id: None,
            }
        );
        let act = super::act_of(&admin, &request(Method::POST, "/v1/runs"));
        assert_eq!(
            (act.action.as_str(), act.target.as_str()),
            ("POST /v1/runs", "")
        );
        let act = super::act_of(&admin, &request(Method::DELETE, "/v1/nodes"));
        assert_eq!(act.action, "DELETE /v1/nodes");
        let entry = act.entry(audit::Outcome::Failed, Some(405), "no\nsuch route");
        assert_eq!(
            (entry.outcome.as_str(), entry.status, entry.detail.as_str()),
            ("failed", Some(405), "no such route")
        );
    }
}
