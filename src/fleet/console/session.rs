//! Console sessions: a token presented once at sign-in becomes a signed cookie, and every form
//! carries a CSRF token derived from it.
//!
//! The cookie is `TOKEN_ID.EXPIRES.MAC`: the id of the token that signed in (`admin` for the
//! admin token; never its secret), when the session ends (Unix seconds), and a keyed BLAKE3 MAC
//! of both under [`Controller::console_key`]. A session is stateless: any controller of a
//! shared store accepts it, and it is checked against the token on every request, so revoking
//! the token (or replacing the admin token) ends it at once. A form's CSRF token is a second MAC,
//! of the cookie's value, under the same key: a page of another site can neither read it nor
//! make one.
//!
//! **Architecture Invariant:** the cookie is `HttpOnly` and `SameSite=Strict`, and `Secure`
//! when the console is served over TLS; it names a token and never holds a secret. A session
//! changes state only through the console's own forms, each with its CSRF token; the API
//! (`/v1/...`) takes changes only with `Authorization: Bearer`.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::fleet::controller::Controller;

/// The session cookie's name.
pub const COOKIE: &str = "steward_session";

/// How long a session lasts after sign-in.
pub const LIFETIME_SECS: i64 = 8 * 60 * 60;

/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// A session cookie that checked out: who signed in, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The id of the token that signed in (`admin` for the admin token).
    pub token_id: String,
    /// The CSRF token of this session's forms.
    pub csrf: String,
}

fn mac(key: &[u8; 32], what: &str, text: &str) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(what.as_bytes());
    hasher.update(&[0]);
    hasher.update(text.as_bytes());
    hasher.finalize()
}

/// True for a token id the cookie may name: `admin`, or an API token's lowercase hex id.
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// The cookie value of a session of `token_id` that ends at `expires` (Unix seconds).
pub fn issue(key: &[u8; 32], token_id: &str, expires: i64) -> String {
    let body = format!("{token_id}.{expires}");
    format!("{body}.{}", mac(key, "session", &body).to_hex())
}

/// The session a cookie value holds, when its MAC is right and it has not ended at `now`
/// (Unix seconds).
pub fn open(key: &[u8; 32], value: &str, now: i64) -> Option<Session> {
    let (body, presented) = value.rsplit_once('.')?;
    let (token_id, expires) = body.split_once('.')?;
    let presented = blake3::Hash::from_hex(presented).ok()?;
    // blake3::Hash compares in constant time.
    if presented != mac(key, "session", body) || !plausible_id(token_id) {
        return None;
    }
    if expires.parse::<i64>().ok()? <= now {
        return None;
    }
    Some(Session {
        token_id: token_id.to_string(),
        csrf: csrf(key, value),
    })
}

/// The CSRF token of the session whose cookie value is `value`.
pub fn csrf(key: &[u8; 32], value: &str) -> String {
    mac(key, "csrf", value).to_hex().to_string()
}

impl Session {
    /// True when `presented` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        match (
            blake3::Hash::from_hex(&self.csrf),
            blake3::Hash::from_hex(presented),
        ) {
            (Ok(expected), Ok(presented)) => expected == presented,
            _ => false,
        }
    }
}

/// The session cookie's value among a request's cookies, if any.
pub fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_string())
        })
}

/// The `Set-Cookie` header that starts a session (`secure` when served over TLS).
pub fn set_cookie(value: &str, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={LIFETIME_SECS}{secure}"
    ))
    .ok()
}

/// The `Set-Cookie` header that ends a session.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    if secure {
        HeaderValue::from_static(
            "steward_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure",
        )
    } else {
        HeaderValue::from_static("steward_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}

/// The cookie value of a new session for `token_id`, from now.
pub fn start(controller: &Controller, token_id: &str) -> String {
    let expires = chrono::Utc::now().timestamp() + LIFETIME_SECS;
    issue(&controller.console_key(), token_id, expires)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn a_session_opens_until_it_ends_and_only_as_issued() {
        let value = issue(&KEY, "0123abcd0123abcd", 1_000);
        let session = open(&KEY, &value, 999).unwrap();
        assert_eq!(session.token_id, "0123abcd0123abcd");
        assert!(open(&KEY, &value, 1_000).is_none(), "ended");
        assert!(open(&[8; 32], &value, 999).is_none(), "another key");
        // Another token id, or a later end, under the same MAC: refused.
        let forged = value.replacen("0123abcd0123abcd", "admin", 1);
        assert!(open(&KEY, &forged, 999).is_none());
        let longer = value.replacen(".1000.", ".9999.", 1);
        assert!(open(&KEY, &longer, 999).is_none());
        for junk in ["", ".", "a.b", "a.b.c", "admin.1000.zz"] {
            assert!(open(&KEY, junk, 0).is_none(), "{junk}");
        }
    }

    #[test]
    fn a_csrf_token_is_its_sessions_own() {
        let one = issue(&KEY, "admin", 1_000);
        let two = issue(&KEY, "admin", 2_000);
        let session = open(&KEY, &one, 0).unwrap();
        assert!(session.csrf_matches(&csrf(&KEY, &one)));
        assert!(!session.csrf_matches(&csrf(&KEY, &two)));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&session.csrf[..10]));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; steward_session=x.y.z; b=2"),
        );
        assert_eq!(cookie_of(&headers).as_deref(), Some("x.y.z"));
        let set = set_cookie("v", true).unwrap();
        let set = set.to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.ends_with("; Secure"));
    }
}
