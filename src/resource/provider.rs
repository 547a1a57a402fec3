//! The provider contract: reading real state and converging it.
//!
//! A provider is the impure half of a resource type (Puppet's split of type and provider).
//! It runs on the node: [`Provider::read`] observes without changing anything, and
//! [`Provider::apply`] converges in one call or returns an error (mgmt's rule), re-checking
//! first so a second apply changes nothing. Providers are synchronous: they do blocking
//! system calls and run commands; the executor runs them on blocking threads.

use foldhash::HashSet;
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
    /// Where to leave the writes and directory fsyncs this resource staged, when the caller
    /// makes them durable later in one batch (the executor). `None` waits for each one.
    pub staged: Option<&'a Staged>,
}

/// The durability tickets one resource's apply staged (see [`ProviderCtx::staged`]).
#[derive(Debug, Default)]
pub struct Staged {
    tickets: std::sync::Mutex<Vec<crate::resource::fsutil::Ticket>>,
    /// The plan found nothing at the resource's path (see [`ProviderCtx::planned_absent`]).
    planned_absent: bool,
}

impl Staged {
    /// Nothing staged.
    pub fn new() -> Staged {
        Staged::default()
    }

    /// Nothing staged, for a resource the plan found absent: a provider may create its path
    /// without looking first, with a primitive that fails when something appeared there since
    /// ([`ProviderCtx::create_durably`]).
    pub fn planned_absent() -> Staged {
        Staged {
            planned_absent: true,
            ..Staged::default()
        }
    }

    fn push(&self, ticket: crate::resource::fsutil::Ticket) -> Result<(), ProviderError> {
        self.tickets
            .lock()
            .map_err(|_| ProviderError::failed("staged writes lock poisoned"))?
            .push(ticket);
        Ok(())
    }

    /// The tickets staged so far, leaving none.
    pub fn take(&self) -> Vec<crate::resource::fsutil::Ticket> {
        self.tickets
            .lock()
            .map(|mut tickets| std::mem::take(&mut *tickets))
            .unwrap_or_default()
    }
}

/// The directories known inside the root, hashed for lookups and ordered for
/// [`PathCache::forget_under`].
#[derive(Debug, Default)]
struct Inside {
    hashed: HashSet<PathBuf>,
    /// Ordered by components, so the directories below one path are a contiguous range.
    ordered: std::collections::BTreeSet<PathBuf>,
}

/// Directories known to resolve inside the root (see [`ProviderCtx::path_cache`]).
#[derive(Debug, Default)]
pub struct PathCache {
    root: std::sync::OnceLock<PathBuf>,
    inside: std::sync::RwLock<Inside>,
    /// Directories found missing, remembered only by a cache made for a probe
    /// ([`PathCache::for_probe`]): nothing is created while a plan reads the node, so one
    /// missing directory answers for everything below it.
    absent: Option<std::sync::RwLock<HashSet<PathBuf>>>,
}

impl PathCache {
    /// An empty cache.
    pub fn new() -> PathCache {
        PathCache::default()
    }

    /// An empty cache for reading the node while nothing changes on it: it also remembers
    /// missing directories. Never use it while applying.
    pub fn for_probe() -> PathCache {
        PathCache {
            absent: Some(std::sync::RwLock::default()),
            ..PathCache::default()
        }
    }

    /// Takes in what `probe` learned about the root and the directories inside it (not the
    /// missing ones: applying creates them).
    pub fn adopt(&self, probe: &PathCache) {
        if let Some(root) = probe.root() {
            self.set_root(root);
        }
        if let (Ok(mut inside), Ok(found)) = (self.inside.write(), probe.inside.read()) {
            inside.hashed.extend(found.hashed.iter().cloned());
            inside.ordered.extend(found.ordered.iter().cloned());
        }
    }

    fn is_known_absent(&self, dir: &Path) -> bool {
        self.absent
            .as_ref()
            .is_some_and(|absent| absent.read().is_ok_and(|absent| absent.contains(dir)))
    }

    fn remember_absent(&self, dir: &Path) {
        if let Some(Ok(mut absent)) = self.absent.as_ref().map(|absent| absent.write()) {
            absent.insert(dir.to_path_buf());
        }
    }

    fn root(&self) -> Option<PathBuf> {
        self.root.get().cloned()
    }

    fn set_root(&self, root: PathBuf) {
        let _ = self.root.set(root);
    }

    fn is_known_inside(&self, dir: &Path) -> bool {
        self.inside
            .read()
            .is_ok_and(|inside| inside.hashed.contains(dir))
    }

    /// Forgets the directories at or below `path` (a symlink was created there: paths
    /// through it may now lead elsewhere).
    pub fn forget_under(&self, path: &Path) {
        // The paths at or below `path` sort right after it (paths compare by components):
        // a range, not a scan of every known directory for each symlink created.
        let below = |inside: &Inside| -> Vec<PathBuf> {
            inside
                .ordered
                .range::<Path, _>((std::ops::Bound::Included(path), std::ops::Bound::Unbounded))
                .take_while(|dir| dir.starts_with(path))
                .cloned()
                .collect()
        };
        let stale = match self.inside.read() {
            Ok(inside) => below(&inside),
            Err(_) => return,
        };
        if stale.is_empty() {
            return;
        }
        if let Ok(mut inside) = self.inside.write() {
            for dir in below(&inside) {
                inside.ordered.remove(&dir);
                inside.hashed.remove(&dir);
            }
        }
    }

    fn remember_inside(&self, dir: &Path) {
        if let Ok(mut inside) = self.inside.write() {
            inside.hashed.insert(dir.to_path_buf());
            inside.ordered.insert(dir.to_path_buf());
        }
    }
}

impl ProviderCtx<'_> {
    /// Writes `bytes` to `path` atomically and durably (see [`crate::resource::fsutil`]).
    /// With [`ProviderCtx::staged`] set, the write is only staged: `path` is replaced when the
    /// caller flushes the batch.
    pub fn write_durably(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
        ids: (Option<u32>, Option<u32>),
    ) -> Result<(), ProviderError> {
        match self.staged {
            Some(staged) => staged.push(self.durability.stage(path, bytes, mode, ids)?),
            None => self.durability.write(path, bytes, mode, ids),
        }
    }

    /// True when the plan found nothing at the resource's path and the write is staged: the
    /// provider may skip looking again and create the path with [`ProviderCtx::create_durably`].
    pub fn planned_absent(&self) -> bool {
        self.staged.is_some_and(|staged| staged.planned_absent)
    }

    /// [`ProviderCtx::write_durably`] for a path the plan found absent: the staged rename
    /// never replaces anything. When something appeared at `path` since the plan, the flush
    /// leaves it alone and reports [`ProviderError::Appeared`], and the caller applies the
    /// resource again with the full checks. Without a staged batch, an ordinary write.
    pub fn create_durably(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
        ids: (Option<u32>, Option<u32>),
    ) -> Result<(), ProviderError> {
        match self.staged {
            Some(staged) => staged.push(self.durability.stage_new(path, bytes, mode, ids)?),
            None => self.durability.write(path, bytes, mode, ids),
        }
    }

    /// Makes an entry created in `dir` durable: fsyncs it now, or stages the fsync with
    /// [`ProviderCtx::staged`] set.
    pub fn sync_dir(&self, dir: &Path) -> Result<(), ProviderError> {
        match self.staged {
            Some(staged) => staged.push(self.durability.stage_dir_sync(dir)?),
            None => crate::resource::fsutil::fsync_dir(dir),
        }
    }

    /// Tells the path cache that this apply just created the real directory `dir` (`mkdir`
    /// makes a directory, not a link): when its parent is known inside the root, so is `dir`,
    /// and the files released into it together need no `lstat` of it each.
    pub fn created_dir(&self, dir: &Path) {
        if let Some(cache) = self.path_cache
            && dir.parent().is_some_and(|up| cache.is_known_inside(up))
        {
            cache.remember_inside(dir);
        }
    }

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
        self.locate(path).map(|located| located.path)
    }

    /// [`ProviderCtx::resolve`], also telling whether the parent directory is known to be
    /// missing, in which case nothing is at the path and a reader need not look.
    pub fn locate(&self, path: &str) -> Result<Located, ProviderError> {
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
            return Ok(Located {
                path: joined,
                parent_missing: false,
            });
        }
        // Check the deepest existing parent: canonicalizing it resolves every symlink on the way.
        let mut parent_missing = false;
        let mut parent = joined.parent();
        let mut immediate = true;
        while let Some(dir) = parent {
            if let Some(cache) = self.path_cache {
                if cache.is_known_inside(dir) {
                    break;
                }
                if cache.is_known_absent(dir) {
                    parent_missing |= immediate;
                    immediate = false;
                    parent = dir.parent();
                    continue;
                }
            }
            // A missing directory is skipped with one `lstat`; canonicalizing it would
            // read every link on the way only to fail.
            match std::fs::symlink_metadata(dir) {
                Err(err) => {
                    if err.kind() == std::io::ErrorKind::NotFound {
                        parent_missing |= immediate;
                        if let Some(cache) = self.path_cache {
                            cache.remember_absent(dir);
                        }
                    }
                    immediate = false;
                    parent = dir.parent();
                    continue;
                }
                Ok(meta) => {
                    immediate = false;
                    // A real directory (not a link) in a directory known inside is inside
                    // too: no need to read every link from `/` down again. Files released
                    // together look up their new directory together.
                    if let Some(cache) = self.path_cache
                        && meta.file_type().is_dir()
                        && dir.parent().is_some_and(|up| cache.is_known_inside(up))
                    {
                        cache.remember_inside(dir);
                        break;
                    }
                }
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
        Ok(Located {
            path: joined,
            parent_missing,
        })
    }
}

/// A resolved resource path (see [`ProviderCtx::locate`]).
#[derive(Debug)]
pub struct Located {
    /// The path inside the root.
    pub path: PathBuf,
    /// The parent directory does not exist: nothing is at `path`.
    pub parent_missing: bool,
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
    /// Something appeared at a path the plan found absent, so a staged creation left it
    /// alone; the executor applies the resource again with every check.
    #[error("{}: appeared since the plan", path.display())]
    Appeared {
        /// The path.
        path: PathBuf,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::fsutil::Durability;

    fn ctx<'a>(
        root: &'a Path,
        managed: &'a HashSet<String>,
        durability: &'a Durability,
        cache: &'a PathCache,
    ) -> ProviderCtx<'a> {
        ProviderCtx {
            root,
            state_dir: root,
            run_id: "test",
            managed_paths: managed,
            durability,
            path_cache: Some(cache),
            staged: None,
        }
    }

    #[test]
    fn forget_under_drops_the_path_and_what_is_below_it_only() {
        let cache = PathCache::new();
        for dir in ["/r/a", "/r/a/b", "/r/a/b/c", "/r/ab", "/r/b", "/r"] {
            cache.remember_inside(Path::new(dir));
        }
        cache.forget_under(Path::new("/r/a"));
        for gone in ["/r/a", "/r/a/b", "/r/a/b/c"] {
            assert!(!cache.is_known_inside(Path::new(gone)), "{gone}");
        }
        for kept in ["/r/ab", "/r/b", "/r"] {
            assert!(cache.is_known_inside(Path::new(kept)), "{kept}");
        }
    }

    #[test]
    fn locate_says_when_the_parent_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("there")).unwrap();
        let (managed, durability) = (HashSet::default(), Durability::new());
        let cache = PathCache::for_probe();
        let ctx = ctx(dir.path(), &managed, &durability, &cache);
        assert!(!ctx.locate("/there/f").unwrap().parent_missing);
        assert!(!ctx.locate("/f").unwrap().parent_missing);
        assert!(ctx.locate("/gone/f").unwrap().parent_missing);
        // The second path under the missing directory is answered from the cache.
        assert!(cache.is_known_absent(&dir.path().join("gone")));
        assert!(ctx.locate("/gone/g").unwrap().parent_missing);
        assert!(ctx.locate("/gone/sub/f").unwrap().parent_missing);
        // Only a probe's cache remembers missing directories.
        let applying = PathCache::new();
        let ctx = self::ctx(dir.path(), &managed, &durability, &applying);
        assert!(ctx.locate("/gone/f").unwrap().parent_missing);
        assert!(!applying.is_known_absent(&dir.path().join("gone")));
    }

    #[test]
    fn locate_still_refuses_a_parent_link_leading_outside() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        let (managed, durability) = (HashSet::default(), Durability::new());
        let cache = PathCache::for_probe();
        let ctx = ctx(dir.path(), &managed, &durability, &cache);
        assert!(ctx.locate("/out/missing/f").is_err());
    }
}
