//! What a controller stands on: its store, its CA and the admin token.
//!
//! Embedded (the default), all three live in the controller's data directory: the SQLite
//! store, `ca.key` + `ca.crt`, `admin.token`. Shared (`serve --database URL --key-file K`),
//! they live in one PostgreSQL database that every controller of the fleet opens: the store's
//! tables, the CA (its certificate in the clear, its key sealed with the key file), and the
//! admin token (sealed too). So any controller enrols and verifies any node, and the admin
//! token one controller wrote works on all of them.
//!
//! **Architecture Invariant:** a shared fleet has one CA and one admin token, whichever
//! controller made them: each is stored with `put_secret_if_absent`, so controllers that
//! start together agree on the first one written, and a controller never replaces them.
//! Their secrets are stored only sealed; a controller whose key file does not open them
//! refuses to start rather than make new ones.
//!
//! **Architecture Invariant:** the data directory of a shared controller keeps only what is
//! its own (its server certificate, uploaded projects, `endpoints.json`) and copies for
//! local clients (`ca.crt`, `admin.token`), written from the database at each start.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::fleet::pki::{self, Ca, PkiError};
use crate::fleet::seal::{KeyFile, SealError};
use crate::fleet::token::random_hex;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Copied, FleetStore, StoreError};

/// Where a controller's store, CA and admin token live.
#[derive(Clone, Debug)]
pub enum Backend {
    /// In the data directory: the embedded SQLite store, `ca.key`, `admin.token`.
    Embedded,
    /// In a PostgreSQL database shared by every controller of the fleet.
    Shared {
        /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`.
        url: String,
        /// The key that seals the CA key and the admin token in the database.
        key_file: PathBuf,
    },
}

/// A controller's store, CA and admin token, opened.
pub struct Footing {
    /// The store.
    pub store: Box<dyn FleetStore>,
    /// The fleet's CA.
    pub ca: Ca,
    /// The admin token (the API's credential).
    pub admin_token: String,
}

impl std::fmt::Debug for Footing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Footing")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// Why a controller's footing could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum FootingError {
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The CA could not be loaded, made or checked.
    #[error("CA: {0}")]
    Ca(#[from] PkiError),
    /// The key file could not be read or made, or does not open the database's secrets.
    #[error("{0}")]
    Key(#[from] SealError),
    /// The data directory could not be written.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A secret in the database is not what steward stores there.
    #[error("the database's {name} is damaged: {reason}; restore the database from a backup")]
    Damaged {
        /// The secret.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A migration source holds a CA or admin token other than the database's.
    #[error(
        "{dir} belongs to another fleet than the database: its {what} differs from the one stored; --migrate-from copies one controller into a new database only"
    )]
    OtherFleet {
        /// The data directory migrated from.
        dir: String,
        /// `CA` or `admin token`.
        what: &'static str,
    },
    /// A migration source that is not a controller's data directory.
    #[error("--migrate-from {dir}: {reason}")]
    NotAController {
        /// The directory.
        dir: String,
        /// What is missing.
        reason: String,
    },
}

/// The secret that holds the CA: its certificate and its sealed key, one value so that
/// controllers starting at once cannot store one's certificate with another's key.
const CA_SECRET: &str = "ca";
/// The purpose the CA key is sealed for.
const CA_KEY_PURPOSE: &str = "ca.key";
/// The secret (and the purpose) of the sealed admin token.
const ADMIN_TOKEN_SECRET: &str = "admin-token";

/// The stored CA: `cert_pem`, then the sealed key in base64.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredCa {
    cert_pem: String,
    key_sealed: String,
}

/// Opens (on first start, makes) the store, CA and admin token of a controller whose data
/// directory is `data_dir` (made private first, by the caller).
pub fn open(data_dir: &Path, backend: &Backend) -> Result<Footing, FootingError> {
    match backend {
        Backend::Embedded => open_embedded(data_dir),
        Backend::Shared { url, key_file } => {
            let key = load_key(key_file)?;
            let mut store = PostgresStore::connect(url)?;
            let (ca, admin_token) = shared_secrets(data_dir, &mut store, &key, None)?;
            Ok(Footing {
                store: Box::new(store),
                ca,
                admin_token,
            })
        }
    }
}

/// Copies the embedded controller in `source` (its store, CA and admin token) into the shared
/// database, which must hold no fleet yet, then opens it. Its current project is the
/// caller's to store (`serve`, which knows projects).
///
/// The CA and admin token go first, then the tables in one transaction: a copy cut short
/// between the two is done again whole by the next try, as the secrets it finds are the same
/// and the tables still empty.
pub fn migrate_from(
    source: &Path,
    data_dir: &Path,
    url: &str,
    key_file: &Path,
) -> Result<(Footing, Copied), FootingError> {
    let shown = source.display().to_string();
    let not_a_controller = |reason: String| FootingError::NotAController {
        dir: shown.clone(),
        reason,
    };
    let store_path = crate::store::sqlite::path_in(source);
    for needed in [
        store_path.clone(),
        source.join("ca.key"),
        source.join("ca.crt"),
    ] {
        if !needed.is_file() {
            return Err(not_a_controller(format!(
                "{} is missing: give the data directory of a controller that ran without --database",
                needed.display()
            )));
        }
    }
    let source_ca = Ca::load_or_create(source).map_err(|err| not_a_controller(err.to_string()))?;
    let token_path = admin_token_path(source);
    let source_token = std::fs::read_to_string(&token_path)
        .map(|text| text.trim().to_string())
        .ok()
        .filter(|text| !text.is_empty())
        .ok_or_else(|| not_a_controller(format!("{} is missing or empty", token_path.display())))?;
    let key = load_key(key_file)?;
    let mut store = PostgresStore::connect(url)?;
    let (ca, admin_token) = shared_secrets(
        data_dir,
        &mut store,
        &key,
        Some((&source_ca, source_token.as_str(), &shown)),
    )?;
    let copied = store.copy_from_sqlite(&store_path)?;
    Ok((
        Footing {
            store: Box::new(store),
            ca,
            admin_token,
        },
        copied,
    ))
}

/// Loads the key file, making it on first use (and saying so: the other controllers need it).
fn load_key(key_file: &Path) -> Result<KeyFile, FootingError> {
    let key = KeyFile::load_or_create(key_file)?;
    if key.created() {
        tracing::warn!(
            "created the key file {} (key id {}): every controller of this database needs a copy of it",
            key_file.display(),
            key.id()
        );
    }
    Ok(key)
}

/// Today's controller: everything in the data directory.
fn open_embedded(data_dir: &Path) -> Result<Footing, FootingError> {
    // The store first: a damaged one is refused before anything else is written.
    let path = crate::store::sqlite::path_in(data_dir);
    let store = SqliteStore::open(&path)?;
    store.quick_check(&path)?;
    let ca = Ca::load_or_create(data_dir)?;
    let token_path = admin_token_path(data_dir);
    let admin_token = match std::fs::read_to_string(&token_path) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        _ => {
            let token = new_admin_token()?;
            write_private(&token_path, &format!("{token}\n"), "admin token")?;
            token
        }
    };
    Ok(Footing {
        store: Box::new(store),
        ca,
        admin_token,
    })
}

/// A shared controller's CA and admin token, from the database: made by the first controller
/// (or, migrating, taken from `from`: the source's CA, admin token and name).
fn shared_secrets(
    data_dir: &Path,
    store: &mut dyn FleetStore,
    key: &KeyFile,
    from: Option<(&Ca, &str, &str)>,
) -> Result<(Ca, String), FootingError> {
    let ca = match store.get_secret(CA_SECRET)? {
        Some(stored) => ca_from_secret(&stored, key)?,
        None => {
            let (cert_pem, key_pem) = match from {
                Some((ca, _, _)) => (ca.cert_pem().to_string(), ca.key_pem()),
                None => Ca::generate()?,
            };
            let sealed = key.seal(CA_KEY_PURPOSE, key_pem.as_bytes())?;
            let value = serde_json::to_vec(&StoredCa {
                cert_pem,
                key_sealed: base64_encode(&sealed),
            })
            .map_err(|err| FootingError::Damaged {
                name: "CA",
                reason: err.to_string(),
            })?;
            let stored = store.put_secret_if_absent(CA_SECRET, &value)?;
            ca_from_secret(&stored, key)?
        }
    };
    if let Some((source_ca, _, dir)) = from
        && source_ca.fingerprint() != ca.fingerprint()
    {
        return Err(FootingError::OtherFleet {
            dir: dir.to_string(),
            what: "CA",
        });
    }
    let admin_token = match store.get_secret(ADMIN_TOKEN_SECRET)? {
        Some(stored) => admin_token_from_secret(&stored, key)?,
        None => {
            let token = match from {
                Some((_, token, _)) => token.to_string(),
                None => new_admin_token()?,
            };
            let sealed = key.seal(ADMIN_TOKEN_SECRET, token.as_bytes())?;
            let stored = store.put_secret_if_absent(ADMIN_TOKEN_SECRET, &sealed)?;
            admin_token_from_secret(&stored, key)?
        }
    };
    if let Some((_, token, dir)) = from
        && token != admin_token
    {
        return Err(FootingError::OtherFleet {
            dir: dir.to_string(),
            what: "admin token",
        });
    }
    // Copies for the clients on this machine, as an embedded controller leaves them.
    write_public(&data_dir.join("ca.crt"), ca.cert_pem())?;
    write_private(
        &admin_token_path(data_dir),
        &format!("{admin_token}\n"),
        "admin token",
    )?;
    Ok((ca, admin_token))
}

fn ca_from_secret(stored: &[u8], key: &KeyFile) -> Result<Ca, FootingError> {
    let damaged = |reason: String| FootingError::Damaged { name: "CA", reason };
    let stored: StoredCa =
        serde_json::from_slice(stored).map_err(|err| damaged(err.to_string()))?;
    let sealed = base64_decode(&stored.key_sealed).map_err(damaged)?;
    let key_pem = key.open(CA_KEY_PURPOSE, &sealed)?;
    let key_pem = Zeroizing::new(
        String::from_utf8(key_pem.to_vec()).map_err(|err| damaged(err.to_string()))?,
    );
    Ok(Ca::from_pems(&stored.cert_pem, &key_pem)?)
}

fn admin_token_from_secret(stored: &[u8], key: &KeyFile) -> Result<String, FootingError> {
    let token = key.open(ADMIN_TOKEN_SECRET, stored)?;
    String::from_utf8(token.to_vec()).map_err(|err| FootingError::Damaged {
        name: "admin token",
        reason: err.to_string(),
    })
}

fn new_admin_token() -> Result<String, FootingError> {
    random_hex(32).map_err(|source| FootingError::Io {
        what: "random".into(),
        source,
    })
}

/// The file holding the admin token of the HTTP API, in a data directory.
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

fn write_private(path: &Path, text: &str, what: &str) -> Result<(), FootingError> {
    pki::write_private(path, text.as_bytes()).map_err(|err| FootingError::Io {
        what: format!("{what} {}", path.display()),
        source: std::io::Error::other(err.to_string()),
    })
}

fn write_public(path: &Path, text: &str) -> Result<(), FootingError> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    write_private(path, text, "CA certificate")
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|err| err.to_string())
}
