//! API tokens: `stw_<id>_<secret>`, each with a role (`read`, `plan`, `operate`, `admin`) and
//! an optional target selector, for the controller's HTTP API.
//!
//! The store keeps a token's id, name, role, target, the SHA-256 of its secret, when it was
//! made, when it expires and when it was revoked ([`ApiTokenRecord`]). The secret is shown
//! once, when the token is made ([`create`]), and kept nowhere. [`verify`] parses the text,
//! reads the row by id and compares the digests in constant time; a revoked or expired token
//! is refused like an unknown one.
//!
//! Roles are ordered: each may do what the one below it may ([`Role::allows`]). The admin
//! token (`DATA_DIR/admin.token`) is the principal [`Principal::admin`]. The target selector
//! is stored and shown; this module does not apply it.
//!
//! **Architecture Invariant:** a token's secret is never stored, logged or listed: only its
//! SHA-256 reaches the store, and [`ApiToken`]'s `Debug` leaves it out.

use std::fmt;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

use crate::store::{ApiTokenRecord, FleetStore, StoreError};

/// What a token may do; each role may also do all that those below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read nodes, runs, reports and findings.
    Read,
    /// Also start plan and drift runs.
    Plan,
    /// Also apply, run and cancel commands, and resolve findings.
    Operate,
    /// Also revoke nodes and set their tags.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 4] = [Role::Read, Role::Plan, Role::Operate, Role::Admin];

    /// Its name: `read`, `plan`, `operate` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Plan => "plan",
            Role::Operate => "operate",
            Role::Admin => "admin",
        }
    }

    /// The role named `text` (exactly, lowercase).
    pub fn parse(text: &str) -> Result<Role, ApiTokenError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| ApiTokenError::UnknownRole(text.to_string()))
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a request: the token it presented, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's id (`admin` for the admin token).
    pub id: String,
    /// The token's name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The target selector it was made with, as written ([`Limit`] applies it).
    pub target: Option<String>,
}

impl Principal {
    /// The admin token's principal: id `admin`, role admin, no target.
    pub fn admin() -> Principal {
        Principal {
            id: "admin".to_string(),
            name: "admin token".to_string(),
            role: Role::Admin,
            target: None,
        }
    }
}

/// The text form's prefix.
const PREFIX: &str = "stw_";
/// Random bytes of an id (hex: twice as many digits).
const ID_BYTES: usize = 8;
/// Random bytes of a secret.
const SECRET_BYTES: usize = 32;
/// The longest name a token may have, in characters.
const MAX_NAME: usize = 64;

/// An API token as given to its user: `stw_<id>_<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// Public id (16 lowercase hex digits).
    pub id: String,
    /// The secret (64 lowercase hex digits).
    pub secret: String,
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}_{}", self.id, self.secret)
    }
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl ApiToken {
    /// Parses the text form strictly (surrounding white space aside).
    pub fn parse(text: &str) -> Result<ApiToken, ApiTokenError> {
        let text = text.trim();
        let malformed = || ApiTokenError::Malformed;
        let rest = text.strip_prefix(PREFIX).ok_or_else(malformed)?;
        let (id, secret) = rest.split_once('_').ok_or_else(malformed)?;
        if !is_hex(id, ID_BYTES * 2) || !is_hex(secret, SECRET_BYTES * 2) {
            return Err(malformed());
        }
        Ok(ApiToken {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }
}

/// Why an API token could not be made, listed, revoked or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiTokenError {
    /// Not `stw_<16 hex>_<64 hex>`.
    #[error("not an API token (stw_<16 hex digits>_<64 hex digits>)")]
    Malformed,
    /// No token has this id.
    #[error("no API token `{0}`")]
    Unknown(String),
    /// The id exists but the secret is not its.
    #[error("API token `{0}`: wrong secret")]
    WrongSecret(String),
    /// The token was revoked.
    #[error("API token `{id}` was revoked at {at}")]
    Revoked {
        /// Its id.
        id: String,
        /// When.
        at: String,
    },
    /// The token expired.
    #[error("API token `{id}` expired at {at}")]
    Expired {
        /// Its id.
        id: String,
        /// When.
        at: String,
    },
    /// A role name that is none of the four.
    #[error("unknown role `{}`: use read, plan, operate or admin", .0.escape_debug())]
    UnknownRole(String),
    /// A name that is empty, too long or has control characters.
    #[error(
        "token name `{}` must be 1 to {MAX_NAME} characters, none of them control characters",
        .0.escape_debug()
    )]
    Name(String),
    /// The time-to-live is too long to add to now.
    #[error("--ttl {0:?} is too long")]
    Ttl(Duration),
    /// The system's random generator failed.
    #[error("cannot make an API token: the system's random generator failed")]
    Random,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiTokenError {
    /// Whether the presented token is simply not valid (malformed, unknown, wrong, revoked or
    /// expired), as opposed to the store failing.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ApiTokenError::Malformed
                | ApiTokenError::Unknown(_)
                | ApiTokenError::WrongSecret(_)
                | ApiTokenError::Revoked { .. }
                | ApiTokenError::Expired { .. }
        )
    }
}

/// What a new token is: its name, role, target selector and lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiToken {
    /// Its name (shown in listings and refusals).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The target selector, as the user wrote it (stored and shown).
    pub target: Option<String>,
    /// How long it stays valid; `None`: until revoked.
    pub ttl: Option<Duration>,
}

fn random_hex(n_bytes: usize) -> Result<String, ApiTokenError> {
    let mut bytes = vec![0u8; n_bytes];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiTokenError::Random)?;
    Ok(hex::encode(bytes))
}

/// The SHA-256 of a secret's text, lowercase hex: what the store keeps.
fn sha256_hex(secret: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        secret.as_bytes(),
    ))
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Makes a token as `new` says and stores it: the token (shown once) and its stored row.
pub fn create(
    store: &mut dyn FleetStore,
    new: &NewApiToken,
) -> Result<(ApiToken, ApiTokenRecord), ApiTokenError> {
    let name_ok = !new.name.is_empty()
        && new.name.chars().count() <= MAX_NAME
        && !new.name.chars().any(char::is_control);
    if !name_ok {
        return Err(ApiTokenError::Name(new.name.clone()));
    }
    let now = chrono::Utc::now();
    let expires_at = match new.ttl {
        None => None,
        Some(ttl) => {
            let at = chrono::Duration::from_std(ttl)
                .ok()
                .and_then(|ttl| now.checked_add_signed(ttl))
                .ok_or(ApiTokenError::Ttl(ttl))?;
            Some(rfc3339(at))
        }
    };
    let token = ApiToken {
        id: random_hex(ID_BYTES)?,
        secret: random_hex(SECRET_BYTES)?,
    };
    let record = ApiTokenRecord {
        id: token.id.clone(),
        name: new.name.clone(),
        role: new.role.as_str().to_string(),
        target: new.target.clone(),
        secret_sha256: sha256_hex(&token.secret),
        created_at: rfc3339(now),
        expires_at,
        revoked_at: None,
    };
    store.insert_api_token(&record)?;
    Ok((token, record))
}

/// The principal of the token `presented` (its text form) at time `now`: refused when it is
/// malformed, unknown, has another secret, was revoked or expired.
pub fn verify(
    store: &dyn FleetStore,
    presented: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Principal, ApiTokenError> {
    let token = ApiToken::parse(presented)?;
    let record = store
        .api_token(&token.id)?
        .ok_or_else(|| ApiTokenError::Unknown(token.id.clone()))?;
    let presented_hash = ring::digest::digest(&ring::digest::SHA256, token.secret.as_bytes());
    let stored_hash = hex::decode(&record.secret_sha256).unwrap_or_default();
    if !same_bytes(presented_hash.as_ref(), &stored_hash) {
        return Err(ApiTokenError::WrongSecret(token.id));
    }
    admit(record, now)
}

/// The principal of the token with this id at time `now`, its secret already proven (a console
/// session): refused when it is unknown, was revoked or expired.
pub fn principal_by_id(
    store: &dyn FleetStore,
    id: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Principal, ApiTokenError> {
    let record = store
        .api_token(id)?
        .ok_or_else(|| ApiTokenError::Unknown(id.to_string()))?;
    admit(record, now)
}

/// The principal of a stored token whose secret was proven, unless it was revoked or expired.
fn admit(
    record: crate::store::ApiTokenRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Principal, ApiTokenError> {
    if let Some(at) = record.revoked_at {
        return Err(ApiTokenError::Revoked { id: record.id, at });
    }
    if let Some(at) = record.expires_at {
        // A time that does not parse counts as past: the token is refused, never let through.
        let expired = chrono::DateTime::parse_from_rfc3339(&at)
            .map_or(true, |expires| expires.with_timezone(&chrono::Utc) <= now);
        if expired {
            return Err(ApiTokenError::Expired { id: record.id, at });
        }
    }
    let role = Role::parse(&record.role)?;
    Ok(Principal {
        id: record.id,
        name: record.name,
        role,
        target: record.target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("steward.db")).unwrap();
        (dir, store)
    }

    fn new(role: Role, ttl: Option<Duration>) -> NewApiToken {
        NewApiToken {
            name: "ci".to_string(),
            role,
            target: Some("role=web".to_string()),
            ttl,
        }
    }

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Admin.allows(Role::Operate));
        assert!(Role::Plan.allows(Role::Plan));
        assert!(!Role::Plan.allows(Role::Operate));
        assert!(!Role::Read.allows(Role::Plan));
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).unwrap(), role);
        }
        assert_eq!(
            Role::parse("Admin").unwrap_err().to_string(),
            "unknown role `Admin`: use read, plan, operate or admin"
        );
    }

    #[test]
    fn a_token_verifies_and_its_secret_is_not_stored() {
        let (_dir, mut store) = store();
        let (token, record) = create(&mut store, &new(Role::Plan, None)).unwrap();
        let text = token.to_string();
        assert!(
            text.starts_with("stw_") && text.len() == 4 + 16 + 1 + 64,
            "{text}"
        );
        assert_eq!(ApiToken::parse(&text).unwrap(), token);
        assert!(!format!("{token:?}").contains(&token.secret));
        let stored = store.api_token(&token.id).unwrap().unwrap();
        assert_eq!(stored, record);
        assert_ne!(stored.secret_sha256, token.secret);
        assert_eq!(stored.secret_sha256, sha256_hex(&token.secret));
        let principal = verify(&store, &format!(" {text}\n"), chrono::Utc::now()).unwrap();
        assert_eq!(
            principal,
            Principal {
                id: token.id.clone(),
                name: "ci".to_string(),
                role: Role::Plan,
                target: Some("role=web".to_string()),
            }
        );
    }

    #[test]
    fn wrong_unknown_malformed_revoked_and_expired_tokens_are_refused() {
        let (_dir, mut store) = store();
        let now = chrono::Utc::now();
        let (token, _) = create(&mut store, &new(Role::Read, None)).unwrap();
        let mut flipped = token.clone();
        flipped.secret.replace_range(
            0..1,
            if token.secret.starts_with('0') {
                "1"
            } else {
                "0"
            },
        );
        assert!(matches!(
            verify(&store, &flipped.to_string(), now),
            Err(ApiTokenError::WrongSecret(id)) if id == token.id
        ));
        let stranger = ApiToken {
            id: "0".repeat(16),
            secret: token.secret.clone(),
        };
        assert!(matches!(
            verify(&store, &stranger.to_string(), now),
            Err(ApiTokenError::Unknown(_))
        ));
        for text in [
            "",
            "stw_",
            &token.to_string().to_uppercase(),
            &format!("stw_{}-{}", token.id, token.secret),
            &format!("stw1_{}_{}", token.id, token.secret),
            &format!("stw_{}_{}0", token.id, token.secret),
        ] {
            assert!(
                matches!(verify(&store, text, now), Err(ApiTokenError::Malformed)),
                "{text}"
            );
        }
        store.revoke_api_token(&token.id).unwrap();
        assert!(matches!(
            verify(&store, &token.to_string(), now),
            Err(ApiTokenError::Revoked { .. })
        ));

        let (short, record) = create(
            &mut store,
            &new(Role::Operate, Some(Duration::from_secs(60))),
        )
        .unwrap();
        assert!(verify(&store, &short.to_string(), now).is_ok());
        let after = now + chrono::Duration::seconds(61);
        match verify(&store, &short.to_string(), after) {
            Err(ApiTokenError::Expired { at, .. }) => assert_eq!(Some(at), record.expires_at),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_name_is_refused_before_anything_is_stored() {
        let (_dir, mut store) = store();
        for name in ["", "a\nb", &"x".repeat(65)] {
            let refused = create(
                &mut store,
                &NewApiToken {
                    name: name.to_string(),
                    ..new(Role::Read, None)
                },
            );
            assert!(matches!(refused, Err(ApiTokenError::Name(_))), "{name:?}");
        }
        assert!(store.api_tokens().unwrap().is_empty());
    }

    #[test]
    fn constant_time_compare_is_equality() {
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"ab"));
    }
}

/// What a token made with a target selector may reach: the nodes its selector picks, by name
/// and by the controller's tags (never an agent's claimed ones). A run or command that would
/// reach any other node is refused whole, naming them.
#[derive(Clone, Debug)]
pub struct Limit {
    selector: crate::engine::Selector,
    /// The selector as the token was made with it.
    text: String,
    /// The token, as refusals name it: `NAME (ID)`.
    token: String,
}

impl Limit {
    /// The limit of `principal`'s token; `None` when it has no target selector.
    pub fn of(principal: &Principal) -> Result<Option<Limit>, crate::engine::SelectError> {
        let Some(text) = &principal.target else {
            return Ok(None);
        };
        Ok(
            crate::engine::Selector::parse(&[text])?.map(|selector| Limit {
                selector,
                text: text.clone(),
                token: format!("{} ({})", principal.name, principal.id),
            }),
        )
    }

    /// `Err` naming the nodes of `nodes` (name, tags) the selector does not pick.
    pub fn check<'a>(
        &self,
        nodes: impl IntoIterator<Item = (&'a str, &'a std::collections::BTreeMap<String, String>)>,
    ) -> Result<(), String> {
        let mut outside: Vec<&str> = nodes
            .into_iter()
            .filter(|(name, tags)| !self.selector.matches(name, tags))
            .map(|(name, _)| name)
            .collect();
        if outside.is_empty() {
            return Ok(());
        }
        outside.sort_unstable();
        outside.dedup();
        Err(format!(
            "API token {} may act only on the nodes its target `{}` selects; this would also reach {}: {} (nothing was run)",
            self.token,
            self.text,
            if outside.len() == 1 {
                "1 node"
            } else {
                "these nodes"
            },
            outside.join(", ")
        ))
    }
}
