//! One-time join tokens: `stw1.<id>.<secret>.<ca-fingerprint-hex>`.
//!
//! The controller keeps only a hash of the secret and an expiry; redeeming marks the token
//! used in the same transaction that checks it, so a token enrolls one agent at most. The CA
//! fingerprint lets a new agent verify the controller before it trusts it.

use std::fmt;
use std::time::Duration;

use crate::fleet::controller::random_hex;
use crate::fleet::pki::Ca;
use crate::store::sqlite::SqliteStore;

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
    /// The store refused it (unknown, used, expired, wrong secret) or failed.
    #[error("join token refused: {0}")]
    Refused(String),
    /// Randomness or the store failed while creating one.
    #[error("cannot create a join token: {0}")]
    Create(String),
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

/// Creates a token valid for `ttl` and records its hash in the store.
pub fn create(store: &mut SqliteStore, ca: &Ca, ttl: Duration) -> Result<JoinToken, TokenError> {
    let token = JoinToken {
        id: random_hex(8).map_err(|err| TokenError::Create(err.to_string()))?,
        secret: random_hex(32).map_err(|err| TokenError::Create(err.to_string()))?,
        ca_fingerprint: ca.fingerprint(),
    };
    let ttl = chrono::Duration::from_std(ttl).map_err(|err| TokenError::Create(err.to_string()))?;
    let expires_at =
        (chrono::Utc::now() + ttl).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    store
        .insert_token(&token.id, &secret_hash(&token.secret), &expires_at)
        .map_err(|err| TokenError::Create(err.to_string()))?;
    Ok(token)
}

/// Redeems a token for `node`, once: unknown, wrong secret, expired and used tokens are
/// refused, each with its reason.
pub fn redeem(store: &mut SqliteStore, token: &JoinToken, node: &str) -> Result<(), TokenError> {
    let presented = blake3::hash(secret_hash(&token.secret).as_bytes());
    store
        .redeem_token(&token.id, node, |hash, expires_at, used_by| {
            // Compared as blake3 hashes, whose equality is constant-time.
            if blake3::hash(hash.as_bytes()) != presented {
                return Err("the secret does not match".to_string());
            }
            if let Some(used_by) = used_by {
                return Err(format!("it was used already (by node `{used_by}`)"));
            }
            let expires = chrono::DateTime::parse_from_rfc3339(expires_at)
                .map_err(|err| format!("stored expiry: {err}"))?;
            if expires <= chrono::Utc::now() {
                return Err(format!("it expired at {expires_at}"));
            }
            Ok(())
        })
        .map_err(|err| TokenError::Refused(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn tokens_redeem_once_and_not_after_expiry_or_with_a_wrong_secret() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(&dir.path().join("d")).unwrap();
        let mut store = SqliteStore::open(&dir.path().join("steward.db")).unwrap();
        let token = create(&mut store, &ca, Duration::from_secs(3600)).unwrap();
        assert_eq!(token.ca_fingerprint, ca.fingerprint());
        let parsed = JoinToken::parse(&token.to_string()).unwrap();

        let mut forged = parsed.clone();
        forged.secret = "0".repeat(64);
        let err = redeem(&mut store, &forged, "web-1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("secret"), "{err}");

        redeem(&mut store, &parsed, "web-1").unwrap();
        let err = redeem(&mut store, &parsed, "web-2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("used already"), "{err}");

        let short = create(&mut store, &ca, Duration::from_millis(1)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let err = redeem(&mut store, &short, "web-3").unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");

        let mut unknown = parsed;
        unknown.id = "0".repeat(16);
        assert!(redeem(&mut store, &unknown, "web-4").is_err());
    }
}
