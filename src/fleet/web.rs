//! What the HTTP side of the controller shares between the API and the console: how it is
//! served ([`Scheme`]), the check that refuses a change another site's page sent, a request's
//! source, the check of a presented token ([`check_token`]), and how the token that asked is
//! named in what it recorded.
//!
//! **Architecture Invariant:** imports no other fleet module but `api_token` and `controller`;
//! `api` and `console` both import it, and neither imports the other through it.

use axum::extract::Request;
use axum::http::header;

use crate::fleet::api_token::Principal;

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

/// Why a state-changing request is refused (403) as one another site's page sent: an `Origin`
/// that is not this server's own, or `Sec-Fetch-Site: cross-site`. The console's sign-in
/// form, which has no session yet, is checked by this alone.
pub fn refuse_cross_site(request: &Request) -> Option<String> {
    let headers = request.headers();
    let method = request.method();
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
            return Some(format!(
                "cross-origin {method} refused: Origin `{origin}` is not this API's own \
                 origin ({})",
                own.as_deref().unwrap_or("no Host header")
            ));
        }
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site == Some("cross-site") {
        return Some(format!(
            "cross-site {method} refused (Sec-Fetch-Site: cross-site)"
        ));
    }
    None
}

/// Who a run or command is recorded as: the token that asked (the admin token, or an API
/// token by name and id); the user name the client sends is only a claim, and is recorded as
/// one.
pub fn recorded_user(principal: &Principal, claimed: &str) -> String {
    let who = if principal.id == Principal::admin().id {
        "admin token".to_string()
    } else {
        format!("API token {} ({})", principal.name, principal.id)
    };
    let claimed: String = claimed
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if claimed.is_empty() {
        who
    } else {
        format!("{who} (claims {claimed})")
    }
}

/// The longest note a finding is resolved with, in characters.
pub const MAX_NOTE: usize = 1000;

/// The resolution note of a finding resolved by `principal`: who, then their note (control
/// characters dropped, cut to [`MAX_NOTE`]).
pub fn resolution_note(principal: &Principal, note: Option<&str>) -> String {
    let who = recorded_user(principal, "");
    let note: String = note
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_NOTE)
        .collect();
    let note = note.trim();
    if note.is_empty() {
        format!("by {who}")
    } else {
        format!("by {who}: {note}")
    }
}

/// The source of a request: its peer's `IP:PORT` (the server adds it to each request), or
/// `unknown`.
pub fn source_of(request: &Request) -> String {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |peer| peer.0.to_string())
}

/// What a token presented to the API or at the console's sign-in is.
#[derive(Debug)]
pub enum TokenCheck {
    /// The admin token, or a valid API token: its principal.
    Valid(Principal),
    /// Not a token that is valid now; why, in a few words (for the log, not the caller).
    Refused(&'static str),
    /// The store could not be read.
    Store(crate::store::StoreError),
    /// The controller could not reach its store.
    Controller(crate::fleet::controller::ControllerError),
    /// The stored token could not be read back (a role that does not parse).
    Other(crate::fleet::api_token::ApiTokenError),
}

/// Checks `token` (already trimmed): the admin token without a store read, a text not shaped
/// like an API token without one either, an API token by its stored hash.
pub async fn check_token(
    controller: &std::sync::Arc<crate::fleet::controller::Controller>,
    token: String,
) -> TokenCheck {
    use crate::fleet::api_token::{ApiToken, ApiTokenError, verify};
    if controller.is_admin(&token) {
        return TokenCheck::Valid(Principal::admin());
    }
    if ApiToken::parse(&token).is_err() {
        return TokenCheck::Refused("not a token");
    }
    let now = chrono::Utc::now();
    match controller.store(move |s| verify(s, &token, now)).await {
        Ok(Ok(principal)) => TokenCheck::Valid(principal),
        Ok(Err(err)) if err.is_refusal() => {
            tracing::info!(reason = %err, "API token refused");
            TokenCheck::Refused("an unknown, revoked or expired API token")
        }
        Ok(Err(ApiTokenError::Store(err))) => TokenCheck::Store(err),
        Ok(Err(err)) => TokenCheck::Other(err),
        Err(err) => TokenCheck::Controller(err),
    }
}
