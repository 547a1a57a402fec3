//! steward's private directories: creating a directory only its owner can read (state,
//! backups, the controller's data), and the apply lock in a state directory, which local
//! mode and the agent both take before they change anything.
//!
//! **Architecture Invariant:** only directory creation and the lock live here; what goes in
//! the directories belongs to their owners (`store`, `exec`, `fleet`).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Why a private directory or the lock could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateDirError {
    /// Another apply holds the lock.
    #[error("another apply is running on this state directory: {0}")]
    Locked(String),
    /// IO on the directory or the lock file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Creates a directory readable only by its owner (state, backups and locks are private).
pub fn create_private_dir(path: &Path) -> Result<(), StateDirError> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| StateDirError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The apply lock: an exclusive `flock` on `<state>/apply.lock`, released when dropped or when
/// the holder dies (so a stale lock from a dead process is taken over safely).
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock or says who holds it.
    pub fn acquire(state_dir: &Path) -> Result<Lock, StateDirError> {
        create_private_dir(state_dir)?;
        let path = state_dir.join("apply.lock");
        let io = |source| StateDirError::Io {
            path: path.clone(),
            source,
        };
        let mut file =
            std::os::unix::fs::OpenOptionsExt::mode(&mut std::fs::OpenOptions::new(), 0o600)
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StateDirError::Locked(if holder.is_empty() {
                    "holder unknown".into()
                } else {
                    holder.to_string()
                }));
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(io(err)),
        }
        let user = crate::engine::record::user();
        let holder = format!(
            "pid {} ({user}) since {}",
            std::process::id(),
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(holder.as_bytes()).map_err(io)?;
        Ok(Lock { _file: file })
    }
}
