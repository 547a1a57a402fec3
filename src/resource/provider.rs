//! The provider contract: reading real state and converging it.
//!
//! A provider is the impure half of a resource type (Puppet's split of type and provider).
//! It runs on the node: [`Provider::read`] observes without changing anything, and
//! [`Provider::apply`] converges in one call or returns an error (mgmt's rule), re-checking
//! first so a second apply changes nothing. Providers are synchronous: they do blocking
//! system calls and run commands; the executor runs them on blocking threads.

use foldhash::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::model::Resource;
use crate::resource::beneath::{Confine, Dir, Entry, OpenError, Root};
use crate::resource::change::State;
use crate::resource::command::CommandRunner;
use crate::resource::durability::{Durability, Ticket};

// The failure and output vocabulary lives below the contract, where the group commit and the
// command runner can use it too; callers name it through the contract.
pub use crate::resource::error::{CommandOutput, ProviderError};

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
    pub durability: &'a Durability,
    /// The root and the directories already opened beneath it: a plan or apply resolves
    /// thousands of paths under a few directories. Providers that create a symlink or remove
    /// a directory forget what lies below it, since paths through it can lead elsewhere.
    /// `None` opens every directory afresh.
    pub path_cache: Option<&'a PathCache>,
    /// Runs the providers' system commands (`systemctl`, `dpkg-query`, `apt-get`, `useradd`):
    /// [`crate::resource::command::SystemRunner`] on a node, a script in unit tests.
    pub runner: &'a dyn CommandRunner,
    /// Where to leave the writes and directory fsyncs this resource staged, when the caller
    /// makes them durable later in one batch (the executor). `None` waits for each one.
    pub staged: Option<&'a Staged>,
}

/// The durability tickets one resource's apply staged (see [`ProviderCtx::staged`]).
#[derive(Debug, Default)]
pub struct Staged {
    tickets: std::sync::Mutex<Vec<Ticket>>,
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

    fn push(&self, ticket: Ticket) -> Result<(), ProviderError> {
        self.tickets
            .lock()
            .map_err(|_| ProviderError::failed("staged writes lock poisoned"))?
            .push(ticket);
        Ok(())
    }

    /// The tickets staged so far, leaving none.
    pub fn take(&self) -> Vec<Ticket> {
        self.tickets
            .lock()
            .map(|mut tickets| std::mem::take(&mut *tickets))
            .unwrap_or_default()
    }
}

/// The directories opened inside the root, hashed for lookups and ordered for
/// [`PathCache::forget_under`].
#[derive(Debug, Default)]
struct Inside {
    hashed: foldhash::HashMap<PathBuf, Arc<Dir>>,
    /// Ordered by components, so the directories below one path are a contiguous range.
    ordered: std::collections::BTreeSet<PathBuf>,
}

/// Open directories beyond which the cache starts afresh: each holds a file descriptor, and
/// a process often has only 1,024 (staged writes hold up to as many again, see
/// [`crate::resource::durability::Durability`]).
const MAX_OPEN_DIRS: usize = 128;

/// The root and the directories opened beneath it (see [`ProviderCtx::path_cache`]).
///
/// A handle stays good however the tree changes: it names the directory that was opened,
/// which was inside the root then and stays inside unless moved out of it by someone with
/// the right to write outside. A symlink swapped in for it afterwards is not followed.
#[derive(Debug, Default)]
pub struct PathCache {
    root: std::sync::OnceLock<Arc<Root>>,
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

    /// Takes in the root `probe` opened. Not its directories: a prompt may stand between the
    /// plan and the apply, and a directory replaced meanwhile must be written at its path, not
    /// in the old one a handle still names. Nor the missing directories: applying creates them.
    pub fn adopt(&self, probe: &PathCache) {
        if let Some(root) = probe.root.get() {
            let _ = self.root.set(root.clone());
        }
    }

    /// True when `dir` or a directory above it was found missing.
    fn is_known_absent(&self, dir: &Path) -> bool {
        let Some(Ok(absent)) = self.absent.as_ref().map(|absent| absent.read()) else {
            return false;
        };
        !absent.is_empty() && dir.ancestors().any(|up| absent.contains(up))
    }

    fn remember_absent(&self, dir: &Path) {
        if let Some(Ok(mut absent)) = self.absent.as_ref().map(|absent| absent.write()) {
            absent.insert(dir.to_path_buf());
        }
    }

    fn dir(&self, path: &Path) -> Option<Arc<Dir>> {
        self.inside
            .read()
            .ok()
            .and_then(|inside| inside.hashed.get(path).cloned())
    }

    fn remember_dir(&self, path: &Path, dir: Arc<Dir>) {
        if let Ok(mut inside) = self.inside.write() {
            if inside.hashed.len() >= MAX_OPEN_DIRS {
                // Handles still in use elsewhere stay open until their users let go.
                inside.hashed.clear();
                inside.ordered.clear();
            }
            inside.hashed.insert(path.to_path_buf(), dir);
            inside.ordered.insert(path.to_path_buf());
        }
    }

    /// Forgets the directories at or below `path` (a symlink was created there, or a
    /// directory removed or replaced: paths through it now lead elsewhere).
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
}

impl ProviderCtx<'_> {
    /// Writes `bytes` to `entry` atomically and durably (see [`crate::resource::durability`]).
    /// With [`ProviderCtx::staged`] set, the write is only staged: the entry is replaced when
    /// the caller flushes the batch.
    pub fn write_durably(
        &self,
        entry: &Entry,
        bytes: &[u8],
        mode: u32,
        ids: (Option<u32>, Option<u32>),
    ) -> Result<(), ProviderError> {
        match self.staged {
            Some(staged) => staged.push(self.durability.stage(entry, bytes, mode, ids)?),
            None => self.durability.write(entry, bytes, mode, ids),
        }
    }

    /// True when the plan found nothing at the resource's path and the write is staged: the
    /// provider may skip looking again and create the path with [`ProviderCtx::create_durably`].
    pub fn planned_absent(&self) -> bool {
        self.staged.is_some_and(|staged| staged.planned_absent)
    }

    /// [`ProviderCtx::write_durably`] for a path the plan found absent: the staged rename
    /// never replaces anything. When something appeared at the entry since the plan, the
    /// flush leaves it alone and reports [`ProviderError::Appeared`], and the caller applies
    /// the resource again with the full checks. Without a staged batch, an ordinary write.
    pub fn create_durably(
        &self,
        entry: &Entry,
        bytes: &[u8],
        mode: u32,
        ids: (Option<u32>, Option<u32>),
    ) -> Result<(), ProviderError> {
        match self.staged {
            Some(staged) => staged.push(self.durability.stage_new(entry, bytes, mode, ids)?),
            None => self.durability.write(entry, bytes, mode, ids),
        }
    }

    /// Makes an entry created in `dir` durable: fsyncs it now, or stages the fsync with
    /// [`ProviderCtx::staged`] set.
    pub fn sync_dir(&self, dir: &Arc<Dir>) -> Result<(), ProviderError> {
        match self.staged {
            Some(staged) => staged.push(self.durability.stage_dir_sync(dir)?),
            None => dir.sync().map_err(|err| ProviderError::io(dir.path(), err)),
        }
    }

    /// Tells the path cache that what was at `path` was removed or replaced: directories
    /// opened through it are forgotten.
    pub fn replaced(&self, path: &Path) {
        if let Some(cache) = self.path_cache {
            cache.forget_under(path);
        }
    }

    /// True when acting on the running system rather than a file tree under `--root`.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    fn open_root(&self) -> Result<Arc<Root>, ProviderError> {
        if let Some(root) = self.path_cache.and_then(|cache| cache.root.get()) {
            return Ok(root.clone());
        }
        let confine = if self.is_live() {
            Confine::Live
        } else {
            Confine::Beneath
        };
        let root = Root::open(self.root, confine)
            .map(Arc::new)
            .map_err(|source| ProviderError::io(self.root, source))?;
        Ok(match self.path_cache {
            Some(cache) => cache.root.get_or_init(|| root).clone(),
            None => root,
        })
    }

    /// The entry for an absolute resource path: its parent directory opened beneath the root
    /// and its last component, which is never followed, so a provider can see (and replace)
    /// a symlink where a file belongs.
    ///
    /// Refuses a path that escapes the root: a `..` component, or a symlink among its parents
    /// that points outside. Fails with a plain message when the parent directory is missing.
    pub fn entry(&self, path: &str) -> Result<Entry, ProviderError> {
        let located = self.locate(path)?;
        match located.entry {
            Some(entry) => Ok(entry),
            None => Err(ProviderError::missing_parent(
                located.path.parent().unwrap_or(self.root),
            )),
        }
    }

    /// [`ProviderCtx::entry`], or no entry when the parent directory is missing, in which
    /// case nothing is at the path and a reader need not look.
    pub fn locate(&self, path: &str) -> Result<Located, ProviderError> {
        let relative = normalized(path)?;
        let joined = self.root.join(relative);
        let Some(name) = relative.file_name() else {
            // The root itself: `.` in its own handle.
            let root = self.open_root()?;
            let entry = Entry::new(root.dir().clone(), ".", joined.clone());
            return Ok(Located {
                path: joined,
                entry: Some(entry),
            });
        };
        let parent = joined.parent().unwrap_or(self.root);
        let dir = self.open_dir_at(path, relative.parent().unwrap_or(Path::new("")), parent)?;
        let entry = dir.map(|dir| Entry::new(dir, name, joined.clone()));
        Ok(Located {
            path: joined,
            entry,
        })
    }

    /// The directory at an absolute resource path opened beneath the root (following a
    /// final symlink that stays inside), or `None` when it is missing.
    pub fn open_dir(&self, path: &str) -> Result<Option<Arc<Dir>>, ProviderError> {
        let relative = normalized(path)?;
        let joined = self.root.join(relative);
        self.open_dir_at(path, relative, &joined)
    }

    fn open_dir_at(
        &self,
        path: &str,
        relative: &Path,
        joined: &Path,
    ) -> Result<Option<Arc<Dir>>, ProviderError> {
        if let Some(cache) = self.path_cache {
            if let Some(dir) = cache.dir(joined) {
                return Ok(Some(dir));
            }
            if cache.is_known_absent(joined) {
                return Ok(None);
            }
        }
        let root = self.open_root()?;
        match root.open_dir(relative) {
            Ok(dir) => {
                let dir = Arc::new(dir);
                if let Some(cache) = self.path_cache {
                    cache.remember_dir(joined, dir.clone());
                }
                Ok(Some(dir))
            }
            Err(OpenError::Missing) => {
                if let Some(cache) = self.path_cache {
                    cache.remember_absent(joined);
                }
                Ok(None)
            }
            Err(OpenError::Outside { real }) => Err(ProviderError::Refused {
                message: format!(
                    "`{path}` leads outside the root through a symlink (to `{}`)",
                    real.display()
                ),
            }),
            Err(OpenError::Io(source)) => Err(ProviderError::io(joined, source)),
        }
    }
}

/// An absolute, normalized resource path without its leading `/`.
fn normalized(path: &str) -> Result<&Path, ProviderError> {
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
    Ok(relative)
}

/// A resolved resource path (see [`ProviderCtx::locate`]).
#[derive(Debug)]
pub struct Located {
    /// The path inside the root, for messages.
    pub path: PathBuf,
    /// The entry, in its parent directory opened beneath the root; `None` when the parent
    /// directory is missing and nothing is at `path`.
    pub entry: Option<Entry>,
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

    /// What `apply` would refuse, found while planning (an honest plan): given the state
    /// `read` observed and what the node's documents declare, why applying this resource
    /// would fail for sure (a missing parent directory nothing declares, an owner that does
    /// not exist and is not declared, a change this node cannot make under `--root`).
    /// Changes nothing. The default refuses nothing.
    fn refusal(
        &self,
        _ctx: &ProviderCtx<'_>,
        _res: &Resource,
        _observed: &State,
        _declared: &Declared,
    ) -> Result<Option<String>, ProviderError> {
        Ok(None)
    }
}

/// Starts the error of a resource whose [`Provider::refusal`] found that applying it would
/// fail: the planner tells such an error from one of reading by this prefix, since an
/// observed state travels as `Result<State, String>` (to and from agents too).
pub const REFUSED: &str = "apply would refuse: ";

/// What a node's documents declare, for [`Provider::refusal`]: the paths its present
/// resources manage ([`crate::resource::ResourceType::managed_path`], without their
/// ancestors) and the users and groups its present `user` and `group` resources make
/// ([`crate::resource::ResourceType::declared_accounts`]).
#[derive(Clone, Debug, Default)]
pub struct Declared {
    /// Managed paths, without a trailing `/`.
    pub paths: HashSet<String>,
    /// Declared user names.
    pub users: HashSet<String>,
    /// Declared group names.
    pub groups: HashSet<String>,
}

/// An account a resource makes on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Account {
    /// A user, by name.
    User(String),
    /// A group, by name.
    Group(String),
}

/// What the providers' unit tests share: a context over a root with a scripted runner, and
/// resources built from attribute lists.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};

    use crate::diag::{SourceId, Span};
    use crate::model::{Attr, Resource, ResourceId, Value};
    use crate::resource::command::CommandRunner;
    use crate::resource::durability::Durability;
    use crate::resource::provider::ProviderCtx;

    /// The owned parts a test's provider context borrows.
    pub(crate) struct TestNode {
        root: PathBuf,
        managed_paths: foldhash::HashSet<String>,
        durability: Durability,
    }

    impl TestNode {
        /// A node whose file system is at `root` (`/` for the live system).
        pub(crate) fn at(root: &Path) -> TestNode {
            TestNode {
                root: root.to_path_buf(),
                managed_paths: Default::default(),
                durability: Durability::new(),
            }
        }

        /// A context whose commands go to `runner`.
        pub(crate) fn ctx<'a>(&'a self, runner: &'a dyn CommandRunner) -> ProviderCtx<'a> {
            ProviderCtx {
                root: &self.root,
                state_dir: &self.root,
                run_id: "test",
                managed_paths: &self.managed_paths,
                durability: &self.durability,
                path_cache: None,
                runner,
                staged: None,
            }
        }
    }

    /// A resource with these attributes.
    pub(crate) fn resource(kind: &str, name: &str, attrs: &[(&str, Value)]) -> Resource {
        let span = Span::new(SourceId(0), 0, 0);
        Resource {
            id: ResourceId::new(kind, name),
            span,
            source: SourceId(0),
            attrs: attrs
                .iter()
                .map(|(key, value)| {
                    let attr = Attr {
                        value: value.clone(),
                        span,
                        sensitive: false,
                    };
                    (key.to_string(), attr)
                })
                .collect(),
            relations: Vec::new(),
            association: None,
            secrets: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            runner: &crate::resource::command::SystemRunner,
            staged: None,
        }
    }

    #[test]
    fn forget_under_drops_the_path_and_what_is_below_it_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PathCache::new();
        for path in ["/r/a", "/r/a/b", "/r/a/b/c", "/r/ab", "/r/b", "/r"] {
            let opened = Arc::new(Dir::open(dir.path()).unwrap());
            cache.remember_dir(Path::new(path), opened);
        }
        cache.forget_under(Path::new("/r/a"));
        for gone in ["/r/a", "/r/a/b", "/r/a/b/c"] {
            assert!(cache.dir(Path::new(gone)).is_none(), "{gone}");
        }
        for kept in ["/r/ab", "/r/b", "/r"] {
            assert!(cache.dir(Path::new(kept)).is_some(), "{kept}");
        }
    }

    #[test]
    fn locate_says_when_the_parent_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("there")).unwrap();
        let (managed, durability) = (HashSet::default(), Durability::new());
        let cache = PathCache::for_probe();
        let ctx = ctx(dir.path(), &managed, &durability, &cache);
        assert!(ctx.locate("/there/f").unwrap().entry.is_some());
        assert!(ctx.locate("/f").unwrap().entry.is_some());
        assert!(ctx.locate("/gone/f").unwrap().entry.is_none());
        // The second path under the missing directory is answered from the cache.
        assert!(cache.is_known_absent(&dir.path().join("gone")));
        assert!(ctx.locate("/gone/g").unwrap().entry.is_none());
        assert!(ctx.locate("/gone/sub/f").unwrap().entry.is_none());
        // Only a probe's cache remembers missing directories.
        let applying = PathCache::new();
        let ctx = self::ctx(dir.path(), &managed, &durability, &applying);
        assert!(ctx.locate("/gone/f").unwrap().entry.is_none());
        assert!(!applying.is_known_absent(&dir.path().join("gone")));
        assert!(ctx.entry("/gone/f").is_err());
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
        assert!(ctx.locate("/out/f").is_err());
    }

    #[test]
    fn a_cached_directory_swapped_for_a_link_still_receives_the_writes() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let (managed, durability) = (HashSet::default(), Durability::new());
        let cache = PathCache::new();
        let ctx = ctx(dir.path(), &managed, &durability, &cache);
        ctx.entry("/a/first").unwrap();
        std::fs::rename(dir.path().join("a"), dir.path().join("a.real")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("a")).unwrap();
        let entry = ctx.entry("/a/second").unwrap();
        ctx.write_durably(&entry, b"x", 0o644, (None, None))
            .unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a.real/second")).unwrap(),
            b"x"
        );
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // Afresh, the link is refused.
        ctx.replaced(&dir.path().join("a"));
        assert!(ctx.entry("/a/third").is_err());
    }
}
