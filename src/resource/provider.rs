//! The provider contract: reading real state and converging it.
//!
//! A provider is the impure half of a resource type (Puppet's split of type and provider).
//! It runs on the node: [`Provider::read`] observes without changing anything, and
//! [`Provider::apply`] converges in one call or returns an error (mgmt's rule), re-checking
//! first so a second apply changes nothing. Providers are synchronous: they do blocking
//! system calls and run commands; the executor runs them on blocking threads.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use crate::model::Resource;
use crate::resource::change::State;

/// Everything a provider may use besides the resource.
pub struct ProviderCtx<'a> {
    /// Where the node's file system is: `/`, or `--root`.
    pub root: &'a Path,
    /// steward's own state directory (backups live here).
    pub state_dir: &'a Path,
    /// The run's id, for naming backups.
    pub run_id: &'a str,
    /// Every path a `file`, `directory` or `symlink` resource on this node manages (for `purge`).
    pub managed_paths: &'a HashSet<String>,
    /// Batches the durability of content writes across concurrent providers.
    pub durability: &'a crate::resource::fsutil::Durability,
    /// Directories already found inside the root: a plan or apply resolves thousands of
    /// paths under a few directories. Providers that create a symlink forget what lies below
    /// it, since paths through the new link can lead elsewhere. `None` checks every path afresh.
    pub path_cache: Option<&'a PathCache>,
}

/// Directories known to resolve inside the root (see [`ProviderCtx::path_cache`]).
#[derive(Debug, Default)]
pub struct PathCache {
    root: std::sync::OnceLock<PathBuf>,
    inside: std::sync::RwLock<HashSet<PathBuf>>,
}

impl PathCache {
    /// An empty cache.
    pub fn new() -> PathCache {
        PathCache::default()
    }

    fn root(&self) -> Option<PathBuf> {
        self.root.get().cloned()
    }

    fn set_root(&self, root: PathBuf) {
        let _ = self.root.set(root);
    }

    fn is_known_inside(&self, dir: &Path) -> bool {
        self.inside.read().is_ok_and(|inside| inside.contains(dir))
    }

    /// Forgets the directories at or below `path` (a symlink was created there: paths
    /// through it may now lead elsewhere).
    pub fn forget_under(&self, path: &Path) {
        if let Ok(mut inside) = self.inside.write() {
            inside.retain(|dir| !dir.starts_with(path));
        }
    }

    fn remember_inside(&self, dir: &Path) {
        if let Ok(mut inside) = self.inside.write() {
            inside.insert(dir.to_path_buf());
        }
    }
}

impl ProviderCtx<'_> {
    /// True when acting on the running system rather than a file tree under `--root`.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    fn canonical_root(&self) -> Result<PathBuf, ProviderError> {
        if let Some(root) = self.path_cache.and_then(PathCache::root) {
            return Ok(root);
        }
        let root = self
            .root
            .canonicalize()
            .map_err(|source| ProviderError::Io {
                path: self.root.to_path_buf(),
                source,
            })?;
        if let Some(cache) = self.path_cache {
            cache.set_root(root.clone());
        }
        Ok(root)
    }

    /// The real location of an absolute resource path, inside the root.
    ///
    /// Refuses a path that escapes the root: a `..` component, or an existing symlink among
    /// its parents that points outside. The final component itself is not followed, so a
    /// provider can see (and replace) a symlink where a file belongs.
    pub fn resolve(&self, path: &str) -> Result<PathBuf, ProviderError> {
        let relative = Path::new(path)
            .strip_prefix("/")
            .map_err(|_| ProviderError::Refused {
                message: format!("`{path}` is not absolute"),
            })?;
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(ProviderError::Refused {
                message: format!("`{path}` is not a normalized path"),
            });
        }
        let joined = self.root.join(relative);
        if self.is_live() || relative.as_os_str().is_empty() {
            return Ok(joined);
        }
        // Check the deepest existing parent: canonicalizing it resolves every symlink on the way.
        let mut parent = joined.parent();
        while let Some(dir) = parent {
            if let Some(cache) = self.path_cache
                && cache.is_known_inside(dir)
            {
                break;
            }
            // A missing directory is skipped with one `lstat`; canonicalizing it would
            // read every link on the way only to fail.
            if std::fs::symlink_metadata(dir).is_err() {
                parent = dir.parent();
                continue;
            }
            match dir.canonicalize() {
                Ok(real) => {
                    let root = self.canonical_root()?;
                    if !real.starts_with(&root) {
                        return Err(ProviderError::Refused {
                            message: format!(
                                "`{path}` leads outside the root through a symlink (to `{}`)",
                                real.display()
                            ),
                        });
                    }
                    if let Some(cache) = self.path_cache {
                        cache.remember_inside(dir);
                    }
                    break;
                }
                Err(_) => parent = dir.parent(),
            }
        }
        Ok(joined)
    }
}

/// Captured output of a command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// The arguments that ran.
    pub argv: Vec<String>,
    /// Exit code, `None` when killed by a signal or a timeout.
    pub exit_code: Option<i32>,
    /// Standard output, capped.
    pub stdout: String,
    /// Standard error, capped.
    pub stderr: String,
    /// True when either stream was cut at the cap.
    pub truncated: bool,
    /// True when the command was killed at its timeout.
    pub timed_out: bool,
    /// True when the command was killed because its run was cancelled.
    pub cancelled: bool,
    /// Bytes written to standard output in all (more than kept when truncated).
    pub stdout_bytes: u64,
    /// Bytes written to standard error in all.
    pub stderr_bytes: u64,
}

/// What an apply did.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    /// Nothing needed doing.
    AlreadyConverged,
    /// The resource was changed and is now as desired.
    Converged {
        /// Output of any command that ran (exec, package manager).
        output: Option<CommandOutput>,
    },
}

/// Why a provider could not read or converge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// A system call on a path failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{}` {}", argv.join(" "), describe_status(output))]
    Command {
        /// The arguments.
        argv: Vec<String>,
        /// What it printed and how it ended.
        output: Box<CommandOutput>,
    },
    /// steward will not do this (a path escaping the root, an unsafe request).
    #[error("refused: {message}")]
    Refused {
        /// Why.
        message: String,
    },
    /// The node cannot do this (no systemd, no dpkg, not under `--root`).
    #[error("unsupported: {message}")]
    Unsupported {
        /// Why.
        message: String,
    },
    /// Anything else, said plainly.
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
    },
}

impl ProviderError {
    /// An [`ProviderError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ProviderError {
        ProviderError::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`ProviderError::Failed`].
    pub fn failed(message: impl Into<String>) -> ProviderError {
        ProviderError::Failed {
            message: message.into(),
        }
    }
}

fn describe_status(output: &CommandOutput) -> String {
    let status = match (output.timed_out, output.exit_code) {
        (true, _) => "timed out".to_string(),
        (false, Some(code)) => format!("exited with {code}"),
        (false, None) => "was killed by a signal".to_string(),
    };
    let stderr = output.stderr.trim();
    if stderr.is_empty() {
        status
    } else {
        let last = stderr.lines().last().unwrap_or(stderr);
        format!("{status}: {last}")
    }
}

/// The impure half of a resource type.
pub trait Provider: Send + Sync {
    /// Observes the resource's current state. Changes nothing.
    fn read(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<State, ProviderError>;

    /// Converges the resource to its desired state, re-checking first; returns
    /// [`Applied::AlreadyConverged`] when nothing needed doing.
    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError>;

    /// Reacts to a change in a resource it subscribes to (a service restarts, a
    /// `refresh_only` exec runs). The default does nothing.
    fn refresh(&self, _ctx: &ProviderCtx<'_>, _res: &Resource) -> Result<Applied, ProviderError> {
        Ok(Applied::AlreadyConverged)
    }
}
