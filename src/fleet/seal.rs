//! The key file and sealed secrets: how controllers that share one database share its secrets.
//!
//! Owns [`KeyFile`] (a 256-bit key in a file of mode 0600, made by the first controller and
//! copied to the others) and the sealed format: [`KeyFile::seal`] encrypts a secret (the CA's
//! key, the admin token) with ChaCha20-Poly1305 so it can be stored in the database, and
//! [`KeyFile::open`] gives it back only to a controller with the same key file.
//!
//! A key file is one line of text, `steward-key-v1:` and 64 hex digits, so an operator can
//! copy it between machines. A file readable or writable by group or others, a directory, an
//! empty file and anything not of that form are refused, each naming the path. The key is
//! known by its id ([`KeyFile::id`]): 16 hex digits derived from the key, which name it in
//! errors and logs without revealing it.
//!
//! A sealed secret is `1` (the format version), the key id (8 bytes), the purpose's length (1
//! byte) and the purpose, a nonce (12 bytes, fresh from the system's random source for each
//! seal), then the ciphertext and its 16-byte tag. Everything before the nonce is the AEAD's
//! associated data, so the version, key id and purpose cannot be changed without the tag
//! failing.
//!
//! **Architecture Invariant:** the key never leaves the key file and this module: no error,
//! `Debug` output or log names it, only its id. Opened secrets are [`Zeroizing`], wiped
//! when dropped.
//!
//! **Architecture Invariant:** a sealed secret names its purpose, and opens only for that
//! purpose: a sealed CA key cannot be passed off as a sealed admin token.
//!
//! **Architecture Invariant:** a key file appears whole or not at all. It is written to a
//! temporary file in the same directory, synced, then moved into place without replacing one
//! that exists; when several controllers create it at once, one wins and the others read and
//! use the winner's key.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// The first characters of a key file's line.
const KEY_PREFIX: &str = "steward-key-v1:";

/// The key's length in bytes.
const KEY_LEN: usize = 32;

/// A key file is read up to this many bytes; a longer one is refused.
const MAX_KEY_FILE: usize = 256;

/// The version byte of the sealed format.
const SEAL_VERSION: u8 = 1;

/// The key id's length in bytes.
const KEY_ID_LEN: usize = 8;

/// The length of ChaCha20-Poly1305's tag.
const TAG_LEN: usize = 16;

/// The longest purpose, in bytes (its length is one byte of the sealed format).
const MAX_PURPOSE: usize = 255;

/// The BLAKE3 contexts the key id and the encryption key are derived with, so neither says
/// anything about the other.
const KEY_ID_CONTEXT: &str = "steward 2025-01-01 key file v1: key id";
const SEAL_KEY_CONTEXT: &str = "steward 2025-01-01 key file v1: ChaCha20-Poly1305 sealing key";

/// A controller's key: seals the secrets it keeps in a shared database and opens them.
///
/// Every controller of one database must have the same key file. `Debug` shows the path and
/// the key id, never the key.
pub struct KeyFile {
    path: PathBuf,
    id: [u8; KEY_ID_LEN],
    aead: LessSafeKey,
    rng: SystemRandom,
    created: bool,
}

/// Why a key file could not be read or made, or a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The key file or its directory could not be read, created or synced.
    #[error("key file {path}: {source}")]
    Io {
        /// The key file, or the directory it is created in.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The key file's path names a directory.
    #[error("key file {path} is a directory: give the path of a file (it is created when missing)")]
    Directory {
        /// The path.
        path: PathBuf,
    },
    /// The key file's path names something other than a file or directory.
    #[error("key file {path} is not a regular file")]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The key file may be read or written by group or others.
    #[error(
        "key file {path} has mode {mode:04o}: a key file must be readable by its owner only (run `chmod 600 {path}`)"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is empty (or only white space).
    #[error(
        "key file {path} is empty: expected one line, `steward-key-v1:` and 64 hex digits (copy the key file of the database's first controller)"
    )]
    Empty {
        /// The key file.
        path: PathBuf,
    },
    /// The key file is not of the key file's form. The contents are not repeated.
    #[error(
        "key file {path} is not a steward key file: {problem}; expected one line, `steward-key-v1:` and 64 hex digits"
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong, without the contents.
        problem: String,
    },
    /// A secret was sealed with another key.
    #[error(
        "the key file {path} (key {ours}) does not open this database's secrets (sealed with key {theirs}): every controller of one database needs the same key file (copy the first controller's)"
    )]
    WrongKey {
        /// The key file in use.
        path: PathBuf,
        /// Its key id.
        ours: String,
        /// The key id the secret was sealed with.
        theirs: String,
    },
    /// A sealed secret of another purpose was given.
    #[error("a sealed `{found}` was given where a sealed `{expected}` was expected")]
    PurposeMismatch {
        /// The purpose asked for.
        expected: String,
        /// The purpose the secret was sealed for (escaped).
        found: String,
    },
    /// A sealed secret does not verify under the right key: it was changed or damaged.
    #[error(
        "the sealed `{purpose}` does not verify under the key file {path} (key {id}): it was altered or damaged"
    )]
    Tampered {
        /// The key file in use.
        path: PathBuf,
        /// Its key id.
        id: String,
        /// The purpose asked for.
        purpose: String,
    },
    /// The bytes are not a sealed secret this steward reads.
    #[error("not a sealed secret: {0}")]
    NotSealed(String),
    /// A purpose that cannot go into the sealed format.
    #[error(
        "invalid purpose `{0}`: a purpose is 1 to 255 bytes of ASCII letters, digits and punctuation"
    )]
    InvalidPurpose(String),
    /// The system's random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// ChaCha20-Poly1305 refused the key or the input (not expected: the key is always 32
    /// bytes, and only a secret of more than 256 GiB is too long).
    #[error("ChaCha20-Poly1305: {0}")]
    Cipher(&'static str),
}

impl KeyFile {
    /// Reads the key file at `path`, or creates it with a new random key when it does not
    /// exist (mode 0600; missing parent directories are created with mode 0700).
    ///
    /// When several processes or threads create the same key file at once, exactly one
    /// file is made and all of them use its key: each writes a complete file under a
    /// temporary name in the same directory and moves it into place only if nothing is there
    /// yet; the others read the one that is. An existing file that is refused by
    /// [`KeyFile::load`] is never replaced.
    pub fn load_or_create(path: &Path) -> Result<KeyFile, SealError> {
        match read_key(path) {
            Ok(key) => return KeyFile::new(path, &key, false),
            Err(SealError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let rng = SystemRandom::new();
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill(&mut key[..]).map_err(|_| SealError::Random)?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let dir_err = |source| SealError::Io {
            path: dir.to_path_buf(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_err)?;
        let mut temp = tempfile::Builder::new()
            .prefix(".steward-key-")
            .suffix(".tmp")
            .permissions(std::fs::Permissions::from_mode(0o600))
            .tempfile_in(dir)
            .map_err(dir_err)?;
        let line = Zeroizing::new(format!("{KEY_PREFIX}{}\n", hex::encode(&key[..])));
        let io_err = |source| SealError::Io {
            path: path.to_path_buf(),
            source,
        };
        temp.write_all(line.as_bytes()).map_err(io_err)?;
        temp.as_file().sync_all().map_err(io_err)?;
        match temp.persist_noclobber(path) {
            Ok(_) => {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(dir_err)?;
                KeyFile::new(path, &key, true)
            }
            // Another process made it first (the temporary file is removed as `err` drops):
            // use its key.
            Err(err) if err.error.kind() == ErrorKind::AlreadyExists => {
                drop(err);
                KeyFile::load(path)
            }
            Err(err) => Err(io_err(err.error)),
        }
    }

    /// Reads the key file at `path`; never creates it.
    pub fn load(path: &Path) -> Result<KeyFile, SealError> {
        let key = read_key(path)?;
        KeyFile::new(path, &key, false)
    }

    fn new(path: &Path, key: &[u8; KEY_LEN], created: bool) -> Result<KeyFile, SealError> {
        let id_bytes = Zeroizing::new(blake3::derive_key(KEY_ID_CONTEXT, key));
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&id_bytes[..KEY_ID_LEN]);
        let seal_key = Zeroizing::new(blake3::derive_key(SEAL_KEY_CONTEXT, key));
        // ring refuses only a key of the wrong length, which this cannot be.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &seal_key[..])
            .map_err(|_| SealError::Cipher("the sealing key was refused"))?;
        Ok(KeyFile {
            path: path.to_path_buf(),
            id,
            aead: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
            created,
        })
    }

    /// The key file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key id: 16 lowercase hex digits derived from the key (BLAKE3), safe to log.
    pub fn id(&self) -> String {
        hex::encode(self.id)
    }

    /// True when this call of [`KeyFile::load_or_create`] made the file.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Seals `plaintext` for `purpose` (1 to 255 bytes of printable ASCII, such as
    /// `ca.key`): the result can be stored where others can read it, and only
    /// [`KeyFile::open`] with the same key and purpose gives the plaintext back. Sealing the
    /// same plaintext twice gives different bytes (a fresh random nonce each time).
    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        check_purpose(purpose)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut res = Vec::with_capacity(
            2 + KEY_ID_LEN + purpose.len() + NONCE_LEN + plaintext.len() + TAG_LEN,
        );
        res.push(SEAL_VERSION);
        res.extend_from_slice(&self.id);
        // `check_purpose` bounds the length to 255.
        res.push(u8::try_from(purpose.len()).map_err(|_| invalid_purpose(purpose))?);
        res.extend_from_slice(purpose.as_bytes());
        let aad_len = res.len();
        res.extend_from_slice(&nonce);
        // Encrypted in place: the plaintext is never copied elsewhere.
        res.extend_from_slice(plaintext);
        let (aad, rest) = res.split_at_mut(aad_len);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&*aad),
                &mut rest[NONCE_LEN..],
            )
            .map_err(|_| SealError::Cipher("the secret is too long to seal"))?;
        res.extend_from_slice(tag.as_ref());
        Ok(res)
    }

    /// Opens a secret sealed by [`KeyFile::seal`] for `purpose`.
    ///
    /// Refuses a secret sealed with another key ([`SealError::WrongKey`]), for another
    /// purpose ([`SealError::PurposeMismatch`]), changed in any byte ([`SealError::Tampered`]),
    /// or not in the sealed format ([`SealError::NotSealed`]).
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        check_purpose(purpose)?;
        let (&version, rest) = sealed
            .split_first()
            .ok_or_else(|| SealError::NotSealed("no bytes".into()))?;
        if version != SEAL_VERSION {
            return Err(SealError::NotSealed(format!(
                "format version {version}, this steward reads version {SEAL_VERSION} (sealed by a newer steward?)"
            )));
        }
        let too_short = || SealError::NotSealed(format!("too short ({} bytes)", sealed.len()));
        let (id, rest) = rest.split_at_checked(KEY_ID_LEN).ok_or_else(too_short)?;
        let (&purpose_len, rest) = rest.split_first().ok_or_else(too_short)?;
        let (found, rest) = rest
            .split_at_checked(usize::from(purpose_len))
            .ok_or_else(too_short)?;
        let (nonce, body) = rest.split_at_checked(NONCE_LEN).ok_or_else(too_short)?;
        if body.len() < TAG_LEN {
            return Err(too_short());
        }
        if id != self.id {
            return Err(SealError::WrongKey {
                path: self.path.clone(),
                ours: self.id(),
                theirs: hex::encode(id),
            });
        }
        if found != purpose.as_bytes() {
            return Err(SealError::PurposeMismatch {
                expected: purpose.to_string(),
                found: found.escape_ascii().to_string(),
            });
        }
        let aad_len = sealed.len() - NONCE_LEN - body.len();
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(nonce);
        let mut buf = Zeroizing::new(body.to_vec());
        let plain_len = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(&sealed[..aad_len]),
                &mut buf,
            )
            .map_err(|_| SealError::Tampered {
                path: self.path.clone(),
                id: self.id(),
                purpose: purpose.to_string(),
            })?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("KeyFile")
            .field("path", &self.path)
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

/// Reads and checks a key file: a regular file, mode without group or other bits, one line
/// of the key file's form.
fn read_key(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, SealError> {
    let io_err = |source| SealError::Io {
        path: path.to_path_buf(),
        source,
    };
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is then refused as not a file).
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
        .map_err(io_err)?;
    // The checks are on the file opened, not the path, so the file cannot change in between.
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_dir() {
        return Err(SealError::Directory {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_file() {
        return Err(SealError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SealError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    // Room for one more byte than allowed, so the buffer never grows (and leaves a copy).
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE + 2));
    file.take(MAX_KEY_FILE as u64 + 1)
        .read_to_end(&mut text)
        .map_err(io_err)?;
    parse_key(path, &text)
}

/// The key of a key file's contents.
fn parse_key(path: &Path, text: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, SealError> {
    let malformed = |problem: &str| SealError::Malformed {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    if text.len() > MAX_KEY_FILE {
        return Err(malformed(&format!(
            "it is longer than {MAX_KEY_FILE} bytes"
        )));
    }
    let line = text.trim_ascii();
    if line.is_empty() {
        return Err(SealError::Empty {
            path: path.to_path_buf(),
        });
    }
    if line.contains(&b'\n') {
        return Err(malformed("it has more than one line"));
    }
    let digits = line
        .strip_prefix(KEY_PREFIX.as_bytes())
        .ok_or_else(|| malformed(&format!("it does not start with `{KEY_PREFIX}`")))?;
    if digits.len() != 2 * KEY_LEN {
        return Err(malformed(&format!(
            "the key has {} characters, not {}",
            digits.len(),
            2 * KEY_LEN
        )));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    hex::decode_to_slice(digits, &mut key[..])
        .map_err(|_| malformed("the key is not hex digits"))?;
    Ok(key)
}

fn check_purpose(purpose: &str) -> Result<(), SealError> {
    let valid = !purpose.is_empty()
        && purpose.len() <= MAX_PURPOSE
        && purpose.bytes().all(|b| b.is_ascii_graphic());
    if valid {
        Ok(())
    } else {
        Err(invalid_purpose(purpose))
    }
}

fn invalid_purpose(purpose: &str) -> SealError {
    SealError::InvalidPurpose(purpose.escape_debug().to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Barrier;

    use super::*;

    /// Writes a key file by hand with `mode`.
    fn write_file(path: &Path, contents: &[u8], mode: u32) {
        std::fs::write(path, contents).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn good_line() -> String {
        format!("{KEY_PREFIX}{}\n", "0123456789abcdef".repeat(4))
    }

    #[test]
    fn sealed_secrets_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyFile::load_or_create(&dir.path().join("key")).unwrap();
        for plaintext in [&b""[..], b"x", &[0u8; 5000], b"-----BEGIN PRIVATE KEY-----"] {
            let sealed = key.seal("ca.key", plaintext).unwrap();
            assert_eq!(&key.open("ca.key", &sealed).unwrap()[..], plaintext);
        }
        // A fresh nonce each time; the plaintext is not in the sealed bytes.
        let secret = b"the admin token 0123456789";
        let first = key.seal("admin-token", secret).unwrap();
        let second = key.seal("admin-token", secret).unwrap();
        assert_ne!(first, second);
        assert!(!first.windows(secret.len()).any(|w| w == secret));
        // The format: version, key id, purpose, nonce, ciphertext, tag.
        assert_eq!(first[0], SEAL_VERSION);
        assert_eq!(hex::encode(&first[1..9]), key.id());
        assert_eq!(usize::from(first[9]), "admin-token".len());
        assert_eq!(&first[10..21], b"admin-token");
        assert_eq!(first.len(), 21 + NONCE_LEN + secret.len() + TAG_LEN);
    }

    #[test]
    fn a_copy_of_the_key_file_opens_what_the_first_sealed() {
        let first_dir = tempfile::tempdir().unwrap();
        let second_dir = tempfile::tempdir().unwrap();
        let first_path = first_dir.path().join("key");
        let first = KeyFile::load_or_create(&first_path).unwrap();
        assert!(first.created());
        let sealed = first.seal("ca.key", b"secret").unwrap();
        // The operator copies the file to the second controller's machine.
        let second_path = second_dir.path().join("steward.key");
        std::fs::copy(&first_path, &second_path).unwrap();
        let second = KeyFile::load_or_create(&second_path).unwrap();
        assert!(!second.created());
        assert_eq!(second.id(), first.id());
        assert_eq!(&second.open("ca.key", &sealed).unwrap()[..], b"secret");
        // Loaded again, the first is the same key.
        let again = KeyFile::load(&first_path).unwrap();
        assert_eq!(again.id(), first.id());
        assert_eq!(&again.open("ca.key", &sealed).unwrap()[..], b"secret");
    }

    #[test]
    fn a_key_file_written_by_hand_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_file(&path, good_line().as_bytes(), 0o600);
        let key = KeyFile::load(&path).unwrap();
        // Upper case, no newline, CRLF and surrounding white space are the same key.
        for (text, mode) in [
            good_line()
                .trim_end()
                .to_uppercase()
                .replace("STEWARD-KEY-V1:", KEY_PREFIX),
            format!("  {}\r\n", good_line().trim_end()),
        ]
        .into_iter()
        .zip([0o400, 0o600])
        {
            let other = dir.path().join("other");
            write_file(&other, text.as_bytes(), mode);
            assert_eq!(KeyFile::load(&other).unwrap().id(), key.id());
            std::fs::remove_file(&other).unwrap();
        }
        assert_eq!(key.id().len(), 16);
        assert!(key.id().bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn the_wrong_key_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyFile::load_or_create(&dir.path().join("a")).unwrap();
        let second = KeyFile::load_or_create(&dir.path().join("b")).unwrap();
        assert_ne!(first.id(), second.id());
        let sealed = first.seal("ca.key", b"secret").unwrap();
        let err = second.open("ca.key", &sealed).unwrap_err();
        match &err {
            SealError::WrongKey { ours, theirs, .. } => {
                assert_eq!(ours, &second.id());
                assert_eq!(theirs, &first.id());
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains(&dir.path().join("b").display().to_string()));
        assert!(message.contains("every controller of one database needs the same key file"));
        assert!(message.contains("copy the first controller's"));
    }

    #[test]
    fn a_changed_byte_anywhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyFile::load_or_create(&dir.path().join("key")).unwrap();
        let sealed = key.seal("ca.key", b"the CA key").unwrap();
        for idx in 0..sealed.len() {
            let mut changed = sealed.clone();
            changed[idx] ^= 0x01;
            let err = key.open("ca.key", &changed).unwrap_err();
            let expected = match idx {
                0 => matches!(err, SealError::NotSealed(_)),
                1..=8 => matches!(err, SealError::WrongKey { .. }),
                // The length byte: the purpose is read short or long.
                9 => matches!(
                    err,
                    SealError::PurposeMismatch { .. } | SealError::NotSealed(_)
                ),
                10..=15 => matches!(err, SealError::PurposeMismatch { .. }),
                // Nonce, ciphertext, tag.
                _ => matches!(err, SealError::Tampered { .. }),
            };
            assert!(expected, "byte {idx}: {err:?}");
        }
        // Cut short anywhere.
        for len in 0..sealed.len() {
            assert!(key.open("ca.key", &sealed[..len]).is_err(), "{len} bytes");
        }
        let err = key.open("ca.key", &sealed[..sealed.len() - 1]).unwrap_err();
        assert!(matches!(err, SealError::Tampered { .. }), "{err:?}");
        let err = key.open("ca.key", &[]).unwrap_err();
        assert!(matches!(err, SealError::NotSealed(_)), "{err:?}");
        // Still opens unchanged.
        assert_eq!(&key.open("ca.key", &sealed).unwrap()[..], b"the CA key");
    }

    #[test]
    fn a_secret_opens_only_for_its_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyFile::load_or_create(&dir.path().join("key")).unwrap();
        let sealed = key.seal("ca.key", b"the CA key").unwrap();
        let err = key.open("admin-token", &sealed).unwrap_err();
        match &err {
            SealError::PurposeMismatch { expected, found } => {
                assert_eq!(expected, "admin-token");
                assert_eq!(found, "ca.key");
            }
            other => panic!("{other:?}"),
        }
        // Relabelled with the other purpose (same length), the tag no longer verifies.
        let sealed = key.seal("ca.key", b"the CA key").unwrap();
        let mut relabelled = sealed.clone();
        relabelled[10..16].copy_from_slice(b"ca.crt");
        let err = key.open("ca.crt", &relabelled).unwrap_err();
        assert!(matches!(err, SealError::Tampered { .. }), "{err:?}");
        // Relabelled with a purpose of another length.
        let mut relabelled = sealed[..9].to_vec();
        relabelled.push(11);
        relabelled.extend_from_slice(b"admin-token");
        relabelled.extend_from_slice(&sealed[16..]);
        let err = key.open("admin-token", &relabelled).unwrap_err();
        assert!(matches!(err, SealError::Tampered { .. }), "{err:?}");

        for purpose in ["", "with space", "ünï", &"p".repeat(256)] {
            let err = key.seal(purpose, b"x").unwrap_err();
            assert!(matches!(err, SealError::InvalidPurpose(_)), "{err:?}");
            let err = key.open(purpose, &sealed).unwrap_err();
            assert!(matches!(err, SealError::InvalidPurpose(_)), "{err:?}");
        }
        let longest = "p".repeat(255);
        let sealed = key.seal(&longest, b"x").unwrap();
        assert_eq!(&key.open(&longest, &sealed).unwrap()[..], b"x");
    }

    #[test]
    fn a_key_file_open_to_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o660] {
            write_file(&path, good_line().as_bytes(), mode);
            let err = KeyFile::load(&path).unwrap_err();
            assert!(
                matches!(err, SealError::Permissions { mode: m, .. } if m == mode),
                "{mode:o}: {err:?}"
            );
            let message = err.to_string();
            assert!(
                message.contains(&format!("chmod 600 {}", path.display())),
                "{message}"
            );
            // Not replaced by load_or_create either.
            let err = KeyFile::load_or_create(&path).unwrap_err();
            assert!(matches!(err, SealError::Permissions { .. }), "{err:?}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), good_line());
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        KeyFile::load(&path).unwrap();
    }

    #[test]
    fn malformed_key_files_are_refused_without_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let digits = "0123456789abcdef".repeat(4);
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("\n \n".into(), "empty"),
            (format!("{KEY_PREFIX}{}", &digits[..62]), "62 characters"),
            (format!("{KEY_PREFIX}{digits}00"), "66 characters"),
            (format!("steward-key-v2:{digits}"), "does not start"),
            (digits.clone(), "does not start"),
            (format!("{KEY_PREFIX}{}zz", &digits[..62]), "not hex"),
            (
                format!("{KEY_PREFIX}{digits}\n{KEY_PREFIX}{digits}"),
                "more than one line",
            ),
            (
                format!("{KEY_PREFIX}{}", "a".repeat(1 << 20)),
                "longer than",
            ),
        ];
        for (text, problem) in cases {
            write_file(&path, text.as_bytes(), 0o600);
            let err = KeyFile::load(&path).unwrap_err();
            let message = err.to_string();
            if problem == "empty" {
                assert!(matches!(err, SealError::Empty { .. }), "{err:?}");
            } else {
                assert!(matches!(err, SealError::Malformed { .. }), "{err:?}");
            }
            assert!(message.contains(problem), "{problem}: {message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(!message.contains(&digits[..16]), "{message}");
            // load_or_create refuses it too, and leaves it alone.
            assert!(KeyFile::load_or_create(&path).is_err());
            assert_eq!(std::fs::read(&path).unwrap(), text.as_bytes());
        }
    }

    #[test]
    fn a_directory_or_a_missing_file_is_refused_by_load() {
        let dir = tempfile::tempdir().unwrap();
        let err = KeyFile::load(dir.path()).unwrap_err();
        assert!(matches!(err, SealError::Directory { .. }), "{err:?}");
        let err = KeyFile::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, SealError::Directory { .. }), "{err:?}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));

        let missing = dir.path().join("missing");
        let err = KeyFile::load(&missing).unwrap_err();
        assert!(
            matches!(&err, SealError::Io { path, source } if path == &missing && source.kind() == ErrorKind::NotFound),
            "{err:?}"
        );
        assert!(!missing.exists());

        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = KeyFile::load(&fifo).unwrap_err();
        assert!(matches!(err, SealError::NotAFile { .. }), "{err:?}");
    }

    #[test]
    fn a_created_key_file_is_0600_in_a_0700_directory_and_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let parent = dir.path().join("etc").join("steward");
        let path = parent.join("key");
        let key = KeyFile::load_or_create(&path).unwrap();
        assert!(key.created());
        assert_eq!(key.path(), path);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        for dir in [dir.path().join("etc"), parent.clone()] {
            assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let digits = text
            .strip_prefix(KEY_PREFIX)
            .unwrap()
            .strip_suffix('\n')
            .unwrap();
        assert_eq!(digits.len(), 64);
        assert!(digits.bytes().all(|b| b.is_ascii_hexdigit()));
        // No temporary file is left.
        let names: Vec<_> = std::fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["key"]);
        // The key is not in Debug, errors or the id.
        let sealed = key.seal("ca.key", b"x").unwrap();
        let other = KeyFile::load_or_create(&dir.path().join("other")).unwrap();
        let err = other.open("ca.key", &sealed).unwrap_err();
        let tampered = key.open("ca.key", &sealed[..sealed.len() - 1]).unwrap_err();
        for shown in [
            format!("{key:?}"),
            err.to_string(),
            format!("{err:?}"),
            tampered.to_string(),
            key.id(),
        ] {
            assert!(!shown.contains(&digits[..16]), "{shown}");
        }
        // An existing directory's mode is left alone.
        let open_dir = dir.path().join("shared");
        std::fs::create_dir(&open_dir).unwrap();
        std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        KeyFile::load_or_create(&open_dir.join("key")).unwrap();
        assert_eq!(std::fs::metadata(&open_dir).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn threads_creating_one_key_file_at_once_share_one_key() {
        const THREADS: usize = 8;
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("new").join("key");
            let barrier = Barrier::new(THREADS);
            let keys: Vec<KeyFile> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            KeyFile::load_or_create(&path)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap().unwrap())
                    .collect()
            });
            assert_eq!(keys.iter().filter(|k| k.created()).count(), 1);
            let sealed = keys[0].seal("ca.key", b"shared").unwrap();
            for key in &keys {
                assert_eq!(key.id(), keys[0].id());
                assert_eq!(&key.open("ca.key", &sealed).unwrap()[..], b"shared");
            }
            assert_eq!(KeyFile::load(&path).unwrap().id(), keys[0].id());
            // The losers' temporary files are gone.
            assert_eq!(
                std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
                1
            );
        }
    }

    #[test]
    fn the_key_file_is_shareable_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<KeyFile>();
    }
}
