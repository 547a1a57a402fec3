//! One-time join tokens: `stw1.<id>.<secret>.<ca-fingerprint-hex>`.
//!
//! The controller keeps only a hash of the secret, an expiry and what the token is bound to;
//! redeeming checks all of it and marks the token used in the transaction that records the
//! node, so a token enrolls one agent at most and a refused attempt spends nothing. The CA
//! fingerprint lets a new agent verify the controller before it trusts it.
//!
//! **Architecture Invariant:** an enrollment never takes over an enrolled node by accident:
//! an unbound or merely name-bound token enrolls only a name that is new or revoked; only a
//! token made with `--replace NAME` replaces the node of that name. The tags targeting uses
//! are the controller's (bound by the token, or set with `steward node tag`); the tags an
//! agent asks for are recorded apart, as claimed tags.
//!
//! **Architecture Invariant:** the peer learns one thing about a token that does not work:
//! [`INVALID`]. Whether its id exists, was used or expired is only in the controller's log.
//!
//! It also holds the naming rules enrollment applies ([`check_node_name`], [`check_tag`]) and
//! the random source of secrets and ids ([`random_hex`]). It works on the store and the CA it
//! is given and never reaches the controller.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::fleet::pki::Ca;
use crate::store::{FleetStore, NewCert, NodeRecord, StoredToken};

/// `n_bytes` random bytes from the kernel's generator, hex: secrets, salts and run ids.
pub fn random_hex(n_bytes: usize) -> Result<String, std::io::Error> {
    use std::io::Read;
    let mut bytes = vec![0u8; n_bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// A node name: what a certificate's CN and the store hold.
pub fn check_node_name(name: &str) -> Result<(), TokenError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(TokenError::NodeName(name.to_string()))
    }
}

/// A tag: what `--tags`, `token create --tags` and `steward node tag` may hold.
pub fn check_tag(key: &str, value: &str) -> Result<(), TokenError> {
    let good = |s: &str, allow_empty: bool| {
        (allow_empty || !s.is_empty())
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':'))
    };
    if good(key, false) && good(value, true) {
        Ok(())
    } else {
        Err(TokenError::Tag {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

/// What the peer is told when a token is unknown, used, expired or has a wrong secret.
pub const INVALID: &str = "the join token is not valid (unknown, used, expired or wrong)";

type Tags = BTreeMap<String, String>;

const PREFIX: &str = "stw1";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Public id (16 hex digits).
    pub id: String,
    /// The secret (64 hex digits).
    pub secret: String,
    /// `sha256:` fingerprint of the controller's CA.
    pub ca_fingerprint: String,
}

/// Why a token is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a token.
    #[error("malformed join token: {0}")]
    Malformed(String),
    /// Unknown, used, expired or a wrong secret. Shown as [`INVALID`]; the reason it
    /// carries is for the controller's log only.
    #[error("{INVALID}")]
    Invalid(String),
    /// A valid token that does not allow this enrollment (another name, other tags, a name
    /// that is enrolled already); told to the agent, which holds the secret.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
    /// Randomness or the store failed while creating one, or its binding is not valid.
    #[error("cannot create a join token: {0}")]
    Create(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A node name that is empty, too long, or has characters names may not have.
    #[error(
        "node name `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `-` or `.`",
        .0.escape_debug()
    )]
    NodeName(String),
    /// A tag whose key or value is too long or has characters tags may not have.
    #[error(
        "tag `{}={}` must use letters, digits, `-_./:`, at most 128 each",
        .key.escape_debug(),
        .value.escape_debug()
    )]
    Tag {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// A token that would replace a node without naming it.
    #[error("a token that replaces a node must name it")]
    ReplaceUnnamed,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fingerprint = self
            .ca_fingerprint
            .strip_prefix("sha256:")
            .unwrap_or(&self.ca_fingerprint);
        write!(f, "{PREFIX}.{}.{}.{fingerprint}", self.id, self.secret)
    }
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl JoinToken {
    /// Parses the text form strictly.
    pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
        let text = text.trim();
        if text.len() > 256 {
            return Err(TokenError::Malformed("it is too long".to_string()));
        }
        let parts: Vec<&str> = text.split('.').collect();
        let [prefix, id, secret, fingerprint] = parts[..] else {
            return Err(TokenError::Malformed(
                "expected stw1.<id>.<secret>.<fingerprint>".to_string(),
            ));
        };
        if prefix != PREFIX {
            return Err(TokenError::Malformed(format!(
                "it starts with `{}`, not `{PREFIX}`",
                prefix.escape_debug()
            )));
        }
        if !is_hex(id, 16) || !is_hex(secret, 64) || !is_hex(fingerprint, 64) {
            return Err(TokenError::Malformed(
                "the id, secret and fingerprint must be 16, 64 and 64 lowercase hex digits"
                    .to_string(),
            ));
        }
        Ok(JoinToken {
            id: id.to_string(),
            secret: secret.to_string(),
            ca_fingerprint: format!("sha256:{fingerprint}"),
        })
    }
}

fn secret_hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// What a new token is bound to; the default binds nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Binding {
    /// The only node name it enrolls.
    pub node: Option<String>,
    /// The tags the node gets (the agent may repeat them, or claim none).
    pub tags: Option<Tags>,
    /// It may replace the enrolled node `node`; needs `node`.
    pub replace: bool,
}

impl Binding {
    fn check(&self) -> Result<(), TokenError> {
        if let Some(node) = &self.node {
            check_node_name(node)?;
        } else if self.replace {
            return Err(TokenError::ReplaceUnnamed);
        }
        for (key, value) in self.tags.iter().flatten() {
            check_tag(key, value)?;
        }
        Ok(())
    }
}

/// Creates a token valid for `ttl`, bound as `binding` says, and records its hash in the
/// store.
pub fn create(
    store: &mut dyn FleetStore,
    ca: &Ca,
    ttl: Duration,
    binding: &Binding,
) -> Result<JoinToken, TokenError> {
    binding
        .check()
        .map_err(|err| TokenError::Create(err.into()))?;
    let token = JoinToken {
        id: random_hex(8).map_err(|err| TokenError::Create(err.into()))?,
        secret: random_hex(32).map_err(|err| TokenError::Create(err.into()))?,
        ca_fingerprint: ca.fingerprint(),
    };
    let ttl = chrono::Duration::from_std(ttl).map_err(|err| TokenError::Create(err.into()))?;
    let expires_at =
        (chrono::Utc::now() + ttl).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let stored = StoredToken {
        secret_hash: secret_hash(&token.secret),
        expires_at,
        used_by: None,
        node: binding.node.clone(),
        tags: binding.tags.clone(),
        replace_node: binding.replace,
    };
    store
        .insert_token(&token.id, &stored)
        .map_err(|err| TokenError::Create(err.into()))?;
    Ok(token)
}

/// What a redeemed token did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redeemed {
    /// The node's (controller's) tags.
    pub tags: Tags,
    /// An enrolled node of that name was replaced: its certificate is no longer accepted.
    pub replaced: bool,
}

/// Redeems `token` for the node `cert` names, once, and records the node with that
/// certificate, in one transaction; a refusal spends nothing.
pub fn redeem(
    store: &mut dyn FleetStore,
    token: &JoinToken,
    cert: &NewCert<'_>,
) -> Result<Redeemed, TokenError> {
    let mut decided = None;
    let enrolled = store
        .enroll_with_token(&token.id, cert, &mut |stored, existing| {
            let decision = decide(token, stored, existing, cert);
            let answer = match &decision {
                Ok(redeemed) => Ok(redeemed.tags.clone()),
                Err(refusal) => Err(refusal.to_string()),
            };
            decided = Some(decision);
            answer
        })
        .map_err(|err| TokenError::Store(err.to_string()))?;
    match (enrolled, decided) {
        (Ok(()), Some(Ok(redeemed))) => Ok(redeemed),
        // The refusal as `decide` made it (its kind tells the agent what to do).
        (Err(_), Some(Err(refusal))) => Err(refusal),
        _ => Err(TokenError::Store(
            "the enrollment was not decided".to_string(),
        )),
    }
}

/// The policy: may `token` enroll `cert.node`, and with which tags?
fn decide(
    token: &JoinToken,
    stored: Option<&StoredToken>,
    existing: Option<&NodeRecord>,
    cert: &NewCert<'_>,
) -> Result<Redeemed, TokenError> {
    let presented = blake3::hash(secret_hash(&token.secret).as_bytes());
    let Some(stored) = stored else {
        // The same work as for a known id, so timing does not tell them apart.
        let _ = blake3::hash(secret_hash("").as_bytes()) == presented;
        return Err(TokenError::Invalid(format!(
            "unknown token id {}",
            token.id
        )));
    };
    // Compared as blake3 hashes, whose equality is constant-time.
    if blake3::hash(stored.secret_hash.as_bytes()) != presented {
        return Err(TokenError::Invalid(format!(
            "token {}: the secret does not match",
            token.id
        )));
    }
    if let Some(used_by) = &stored.used_by {
        return Err(TokenError::Invalid(format!(
            "token {}: it was used already (by node `{used_by}`)",
            token.id
        )));
    }
    let expires = chrono::DateTime::parse_from_rfc3339(&stored.expires_at)
        .map_err(|err| TokenError::Store(format!("stored expiry: {err}")))?;
    if expires <= chrono::Utc::now() {
        return Err(TokenError::Invalid(format!(
            "token {}: it expired at {}",
            token.id, stored.expires_at
        )));
    }
    // The presenter holds the secret from here on: tell it plainly what is wrong.
    let node = cert.node;
    if let Some(bound) = &stored.node
        && bound != node
    {
        return Err(TokenError::Refused(format!(
            "this join token enrolls only node `{bound}`, not `{node}`"
        )));
    }
    if let Some(bound) = &stored.tags
        && !cert.claimed_tags.is_empty()
        && cert.claimed_tags != bound
    {
        return Err(TokenError::Refused(format!(
            "this join token gives the tags `{}`; --tags asked for `{}` (give the same, or leave --tags out)",
            tags_text(bound),
            tags_text(cert.claimed_tags)
        )));
    }
    let enrolled = existing.filter(|n| n.revoked_at.is_none());
    if enrolled.is_some() && !stored.replace_node {
        return Err(TokenError::Refused(format!(
            "node `{node}` is enrolled already; to replace it, revoke it first \
             (`steward node revoke {node}`) or use a token made with \
             `steward token create --replace {node}`"
        )));
    }
    let tags = match (&stored.tags, existing) {
        (Some(bound), _) => bound.clone(),
        // A replacement without tags of its own keeps the replaced node's.
        (None, Some(replaced)) if stored.replace_node => replaced.tags.clone(),
        (None, _) => Tags::new(),
    };
    Ok(Redeemed {
        tags,
        replaced: enrolled.is_some(),
    })
}

/// `k=v,k2=v2`.
pub fn tags_text(tags: &Tags) -> String {
    tags.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn node_names_and_tags() {
        assert!(check_node_name("web-1").is_ok());
        assert!(check_node_name("a.b_c").is_ok());
        for bad in ["", "../x", "a/b", "-x", ".x", "a b", &"x".repeat(65), "é"] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_tag("role", "web").is_ok());
        assert!(check_tag("role", "").is_ok());
        assert!(check_tag("", "web").is_err());
        assert!(check_tag("ro le", "web").is_err());
    }

    #[test]
    fn parse_is_strict() {
        let good = format!(
            "stw1.{}.{}.{}",
            "a".repeat(16),
            "b".repeat(64),
            "c".repeat(64)
        );
        let token = JoinToken::parse(&good).unwrap();
        assert_eq!(token.to_string(), good);
        assert_eq!(token.ca_fingerprint, format!("sha256:{}", "c".repeat(64)));
        for bad in [
            String::new(),
            "stw1".to_string(),
            "x".repeat(100_000),
            good.replace("stw1", "stw2"),
            good.replace('a', "A"),
            format!("{good}.x"),
            "\0\u{fffd}".to_string(),
        ] {
            assert!(JoinToken::parse(&bad).is_err(), "{bad:?}");
        }
        assert!(
            !format!("{token:?}").contains(&"b".repeat(64)),
            "Debug hides the secret"
        );
    }

    fn cert<'a>(node: &'a str, claimed: &'a Tags) -> NewCert<'a> {
        NewCert {
            node,
            fingerprint: "sha256:aa",
            not_after: "2999-01-01T00:00:00Z",
            claimed_tags: claimed,
        }
    }

    fn tags(text: &str) -> Tags {
        text.split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tokens_redeem_once_and_not_after_expiry_or_with_a_wrong_secret() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&dir.path().join("d")).unwrap();
        let mut store = SqliteStore::open(&dir.path().join("steward.db")).unwrap();
        let none = Tags::new();
        let unbound = Binding::default();
        let token = create(&mut store, &ca, Duration::from_secs(3600), &unbound).unwrap();
        assert_eq!(token.ca_fingerprint, ca.fingerprint());
        let parsed = JoinToken::parse(&token.to_string()).unwrap();

        let mut forged = parsed.clone();
        forged.secret = "0".repeat(64);
        let err = redeem(&mut store, &forged, &cert("web-1", &none)).unwrap_err();
        assert!(
            matches!(&err, TokenError::Invalid(why) if why.contains("secret")),
            "{err:?}"
        );
        assert_eq!(err.to_string(), INVALID);

        // An unbound token: the node's tags start empty; what it asked for is only claimed.
        let claimed = tags("role=db");
        let redeemed = redeem(&mut store, &parsed, &cert("web-1", &claimed)).unwrap();
        assert!(redeemed.tags.is_empty() && !redeemed.replaced);
        let node = store.node("web-1").unwrap().unwrap();
        assert!(node.tags.is_empty());
        assert_eq!(node.claimed_tags, claimed);
        let err = redeem(&mut store, &parsed, &cert("web-2", &none)).unwrap_err();
        assert!(matches!(&err, TokenError::Invalid(why) if why.contains("used already")));
        assert_eq!(err.to_string(), INVALID);

        let short = create(&mut store, &ca, Duration::from_millis(1), &unbound).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let err = redeem(&mut store, &short, &cert("web-3", &none)).unwrap_err();
        assert!(matches!(&err, TokenError::Invalid(why) if why.contains("expired")));

        let mut unknown = parsed;
        unknown.id = "0".repeat(16);
        let err = redeem(&mut store, &unknown, &cert("web-4", &none)).unwrap_err();
        assert_eq!(err.to_string(), INVALID);
    }

    #[test]
    fn bindings_decide_the_name_the_tags_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&dir.path().join("d")).unwrap();
        let mut store = SqliteStore::open(&dir.path().join("steward.db")).unwrap();
        let hour = Duration::from_secs(3600);
        let web = tags("role=web");
        let bound = Binding {
            node: Some("web-5".to_string()),
            tags: Some(web.clone()),
            replace: false,
        };
        let token = create(&mut store, &ca, hour, &bound).unwrap();
        let err = redeem(&mut store, &token, &cert("other", &web)).unwrap_err();
        assert!(err.to_string().contains("only node `web-5`"), "{err}");
        let evil = tags("role=db,evil=yes");
        let err = redeem(&mut store, &token, &cert("web-5", &evil)).unwrap_err();
        assert!(err.to_string().contains("--tags"), "{err}");
        // Refusals spent nothing: the token still enrolls what it is bound to.
        let redeemed = redeem(&mut store, &token, &cert("web-5", &Tags::new())).unwrap();
        assert_eq!(redeemed.tags, web);

        // An enrolled name is not taken over by an unbound or a merely name-bound token.
        for binding in [
            Binding::default(),
            Binding {
                node: Some("web-5".to_string()),
                ..Binding::default()
            },
        ] {
            let token = create(&mut store, &ca, hour, &binding).unwrap();
            let err = redeem(&mut store, &token, &cert("web-5", &evil)).unwrap_err();
            assert!(err.to_string().contains("enrolled already"), "{err}");
        }
        // A replacement does, and keeps the node's tags.
        let replace = Binding {
            node: Some("web-5".to_string()),
            tags: None,
            replace: true,
        };
        let token = create(&mut store, &ca, hour, &replace).unwrap();
        let redeemed = redeem(&mut store, &token, &cert("web-5", &evil)).unwrap();
        assert_eq!(
            redeemed,
            Redeemed {
                tags: web,
                replaced: true
            }
        );

        // A revoked name is free again; its tags are not inherited.
        store.revoke_node("web-5").unwrap();
        let token = create(&mut store, &ca, hour, &Binding::default()).unwrap();
        let redeemed = redeem(&mut store, &token, &cert("web-5", &Tags::new())).unwrap();
        assert_eq!(
            redeemed,
            Redeemed {
                tags: Tags::new(),
                replaced: false
            }
        );

        let nameless = Binding {
            replace: true,
            ..Binding::default()
        };
        assert!(create(&mut store, &ca, hour, &nameless).is_err());
        let bad = Binding {
            node: Some("../x".to_string()),
            ..Binding::default()
        };
        assert!(create(&mut store, &ca, hour, &bad).is_err());
    }
}
