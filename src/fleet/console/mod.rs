//! The operator console: the controller's server-rendered HTML pages (maud escapes every
//! value), behind the same tokens and roles as the API.
//!
//! A person signs in with a token (`/login`), which becomes a session cookie ([`session`]);
//! pages list and filter nodes, runs, findings, schedules, compliance and the audit log
//! ([`pages`]), and a running run's page follows its progress through server-sent events
//! ([`live`]). Everything works without JavaScript but the live progress, which falls back to
//! reloading the page while the run lasts; a finished page never reloads.
//!
//! **Architecture Invariant:** a page shows a form only to a session whose token's role may
//! make that change, and the server checks the role (the route's, in `api::ROUTES`) and the
//! form's CSRF token again on every change, whatever the page showed. The pages load one
//! script, `/console.js`, from this origin; the content security policy allows nothing else
//! (no inline script, no other origin).

pub mod live;
pub mod pages;
pub mod session;

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use crate::fleet::api_token::{Principal, Role};
use crate::fleet::audit;
use crate::fleet::controller::Controller;
use crate::fleet::web::Scheme;

pub use session::Session;

/// Who is looking at a page: the token's principal, and the session's CSRF token when the
/// page was reached through a console session (only then does it show forms).
#[derive(Clone, Debug)]
pub struct Viewer {
    /// The token.
    pub principal: Principal,
    /// The CSRF token of the session's forms; `None` without a session (HTTP Basic).
    pub csrf: Option<String>,
}

impl Viewer {
    /// The viewer of a request, from what `api::authenticate` put in its extensions.
    pub fn of(principal: Principal, session: Option<&Session>) -> Viewer {
        Viewer {
            principal,
            csrf: session.map(|s| s.csrf.clone()),
        }
    }

    /// True when the page may offer a change that needs `role`: a session whose token has it.
    pub fn may(&self, role: Role) -> bool {
        self.csrf.is_some() && self.principal.role.allows(role)
    }

    /// The hidden CSRF field of this viewer's forms.
    pub fn csrf_field(&self) -> Markup {
        html! {
            @if let Some(csrf) = &self.csrf {
                input type="hidden" name=(session::CSRF_FIELD) value=(csrf);
            }
        }
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#222}\
main{margin:1.5em 2em}header{background:#1f2933;color:#eee;padding:.6em 2em;display:flex;\
gap:1.2em;align-items:center;flex-wrap:wrap}header a{color:#cde;text-decoration:none}\
header a.here{color:#fff;font-weight:bold;border-bottom:2px solid #8bd}\
header .who{margin-left:auto;font-size:.9em}header form{display:inline}\
table{border-collapse:collapse;margin-bottom:1.5em}td,th{padding:.25em .8em;text-align:left;\
border-bottom:1px solid #ddd;vertical-align:top}th{background:#f4f4f4}\
.online,.compliant,.unchanged,.succeeded,.ok,.complete{color:#070}\
.offline,.noncompliant,.failed,.timed_out,.unreachable,.interrupted{color:#a00}\
.drifted,.changed,.running,.pending{color:#a60}.revoked,.skipped,.cancelled,.muted{color:#888}\
pre{background:#f8f8f8;padding:.8em;overflow:auto;margin:.3em 0}\
pre .add{color:#070}pre .del{color:#a00}pre .hunk{color:#36c}\
form.filter{margin-bottom:1em;display:flex;gap:.6em;align-items:end;flex-wrap:wrap}\
label{display:flex;flex-direction:column;font-size:.85em;gap:.2em}\
.notice{background:#eef7ee;border:1px solid #9c9;padding:.5em 1em;margin-bottom:1em}\
.error{background:#fbeeee;border:1px solid #c99;padding:.5em 1em;margin-bottom:1em}\
.pager a{margin-right:1em}";

/// The console's sections: path and title, in the menu's order.
const SECTIONS: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/nodes", "Nodes"),
    ("/runs", "Runs"),
    ("/findings", "Findings"),
    ("/schedules", "Schedules"),
    ("/compliance", "Compliance"),
    ("/audit", "Audit log"),
];

/// A whole page: the menu (with `here` marked), who is signed in, and `body`. `live` adds the
/// console's script and, for a browser without it, a reload every 5 seconds (a running run's
/// page); every other page stays as it was rendered.
pub fn page(viewer: &Viewer, here: &str, title: &str, live: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · steward" }
                style { (PreEscaped(CSS)) }
                @if live {
                    script src="/console.js" defer {}
                    noscript { meta http-equiv="refresh" content="5"; }
                }
            }
            body {
                header {
                    strong { "steward" }
                    @for (path, name) in SECTIONS {
                        a href=(path) class=[(*path == here).then_some("here")] { (name) }
                    }
                    span class="who" {
                        "signed in as " strong { (viewer.principal.name) }
                        " (" (viewer.principal.role) ")"
                        @if viewer.csrf.is_some() {
                            " "
                            form method="post" action="/logout" {
                                (viewer.csrf_field())
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error page with its status (the request's viewer is not always known).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "error · steward" }
                style { (PreEscaped(CSS)) }
            }
            body {
                main {
                    p class="error" { (message) }
                    p { a href="/" { "back to the console" } }
                }
            }
        }
    };
    (status, body).into_response()
}

/// Runs `f` with the store; a failure is an error page (503 when the store is unreachable).
pub async fn load<T: Send + 'static>(
    controller: &Arc<Controller>,
    f: impl FnOnce(&mut dyn crate::store::FleetStore) -> Result<T, crate::store::StoreError>
    + Send
    + 'static,
) -> Result<T, Response> {
    match controller.store(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => {
            let status = if err.is_transient() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            Err(error_page(status, &format!("error: {err}")))
        }
        Err(err) => Err(error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("error: {err}"),
        )),
    }
}

/// Where to go after signing in: `next`, when it is a path of this console (never another
/// site, nor the API), else the overview.
fn next_path(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.starts_with("/\\")
                && !next.starts_with("/v1/")
                && !next.starts_with("/login")
                && next.len() <= 2000
                && !next.chars().any(char::is_control) =>
        {
            next
        }
        _ => "/",
    }
}

/// `?next=` of the sign-in page.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_page(next: &str, refused: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "sign in · steward" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header { strong { "steward" } }
                main {
                    h1 { "Sign in" }
                    @if let Some(refused) = refused {
                        p class="error" id="refused" { (refused) }
                    }
                    p { "Paste an API token (" code { "steward token create --api --role read" }
                        ") or the admin token. It is kept by this page's session, never shown again." }
                    form method="post" action="/login" {
                        input type="hidden" name="next" value=(next);
                        label { "Token"
                            input type="password" name="token" id="token" size="80"
                                autocomplete="off" required;
                        }
                        p { button type="submit" id="sign-in" { "Sign in" } }
                    }
                }
            }
        }
    }
}

/// `GET /login`: the sign-in form.
pub async fn login_form(Query(query): Query<LoginQuery>) -> Response {
    login_page(next_path(query.next.as_deref()), None).into_response()
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`: a valid token starts a session (the cookie) and goes on to `next`; any
/// other is refused with 401 and the form again, saying no more than that.
pub async fn login(State(controller): State<Arc<Controller>>, request: Request) -> Response {
    if let Some(why) = crate::fleet::web::refuse_cross_site(&request) {
        return error_page(StatusCode::FORBIDDEN, &why);
    }
    let secure = request.extensions().get::<Scheme>() == Some(&Scheme::Https);
    let source = crate::fleet::web::source_of(&request);
    let form = match <Form<LoginForm> as axum::extract::FromRequest<()>>::from_request(request, &())
        .await
    {
        Ok(Form(form)) => form,
        Err(err) => return error_page(StatusCode::BAD_REQUEST, &format!("sign-in: {err}")),
    };
    let next = next_path(form.next.as_deref()).to_string();
    use crate::fleet::web::{TokenCheck, check_token};
    let principal = match check_token(&controller, form.token.trim().to_string()).await {
        TokenCheck::Valid(principal) => Some(principal),
        TokenCheck::Refused(why) => {
            tracing::info!("console sign-in refused: {why}");
            None
        }
        TokenCheck::Store(err) => return unavailable(err),
        TokenCheck::Controller(err) => return unavailable(err),
        TokenCheck::Other(err) => return unavailable(err),
    };
    let Some(principal) = principal else {
        return (
            StatusCode::UNAUTHORIZED,
            login_page(&next, Some("That token was not accepted.")),
        )
            .into_response();
    };
    // In the audit log before the session exists: a sign-in the log cannot show is refused.
    let act = audit::Act::new(
        audit::Actor::of(&principal),
        &source,
        audit::CONSOLE_SIGN_IN,
        "",
    );
    if let Err(reason) = controller.audit_start(&act, "").await {
        tracing::error!(token = %principal.id, "console sign-in refused: {reason}");
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{reason}: no session was started; try again when the store is back"),
        );
    }
    tracing::info!(token = %principal.id, "console sign-in: {}", principal.name);
    controller
        .audit_end(
            &act,
            audit::Outcome::Ok,
            Some(303),
            "console session started (8 hours)",
        )
        .await;
    let value = session::start(&controller, &principal.id);
    let mut response = Redirect::to(&next).into_response();
    match session::set_cookie(&value, secure) {
        Some(cookie) => {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        None => error_page(StatusCode::INTERNAL_SERVER_ERROR, "the session cookie"),
    }
}

/// The sign-in's answer when the token could not be checked.
fn unavailable(err: impl std::fmt::Display) -> Response {
    error_page(StatusCode::SERVICE_UNAVAILABLE, &format!("error: {err}"))
}

/// `POST /logout`: ends the session (its cookie) and goes back to the sign-in form.
pub async fn logout(request: Request) -> Response {
    let secure = request.extensions().get::<Scheme>() == Some(&Scheme::Https);
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie(secure));
    response
}

#[cfg(test)]
mod tests {
    use super::next_path;

    #[test]
    fn sign_in_goes_on_only_to_a_console_path() {
        assert_eq!(next_path(Some("/runs/1?x=2")), "/runs/1?x=2");
        for elsewhere in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "evil",
            "/v1/runs",
            "/login?next=/",
            "/a\nb",
        ] {
            assert_eq!(next_path(Some(elsewhere)), "/", "{elsewhere}");
        }
        assert_eq!(next_path(None), "/");
    }
}
