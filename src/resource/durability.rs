//! The group commit of content writes: temporary files, their syncs, renames and directory
//! fsyncs, batched across the providers of a run.
//!
//! Every write of file content is atomic: a temporary file in the same directory, written,
//! given its mode and owner, made durable, renamed over the target, then the directory
//! fsynced. A run killed at any instant leaves the old content or the new, never a mix.
//!
//! During an apply the durability is batched ([`Durability`], a group commit): writers that
//! arrive together share one `syncfs` per file system instead of one `fsync` each, then their
//! renames and directory fsyncs happen, and only then does each writer return.
//! A small batch (fewer than [`PER_FILE_SYNC_BELOW`] files) fsyncs each of its files instead:
//! applying one file must not flush every dirty page of a busy file system.
//!
//! Owns [`Durability`], [`Ticket`], [`atomic_write`] and the `.steward-*` temporary files.
//! It knows nothing of resources or the provider context, and imports neither
//! [`crate::resource::provider`] nor [`crate::resource::fsutil`] (both build on it); its
//! failures are [`crate::resource::error::ProviderError`]s.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use crate::resource::beneath::{Dir, Entry, exact_at_creation};
use crate::resource::error::ProviderError;

/// Group commit of atomic writes: one `syncfs` per file system for every write that arrives
/// while the previous batch is being made durable (an fsync per file for a batch of fewer
/// than [`PER_FILE_SYNC_BELOW`] files).
///
/// The first writer to arrive leads: it takes every pending write, syncs, renames, fsyncs the
/// directories and hands each writer its result. Writers that arrive meanwhile wait and form
/// the next batch, so batches grow with concurrency and no writer waits on a timer.
///
/// The executor goes further: it [stages](Durability::stage) writes (and the directory fsyncs
/// of created directories and links) without waiting, keeps applying other resources, and
/// [waits](Durability::wait) for them all at once, so one batch holds hundreds of writes.
///
/// Every operation holds its directory open: the temporary file is created, renamed and its
/// directory fsynced through the same handle, never by path.
#[derive(Default, Debug)]
pub struct Durability {
    state: std::sync::Mutex<Batches>,
    done: std::sync::Condvar,
    /// Directories already swept of temporary files left by a killed run.
    swept: std::sync::Mutex<foldhash::HashSet<std::path::PathBuf>>,
}

/// A staged write or directory fsync; [`Durability::wait`] gives its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// What a batch makes durable.
#[derive(Debug)]
enum Op {
    /// A written temporary file, renamed over its target (in the same directory) once synced.
    Rename(Temp, Entry),
    /// A written temporary file, renamed to its target once synced unless something is
    /// there (the plan found the target absent).
    Create(Temp, Entry),
    /// A directory whose entries changed (a directory or link created in it).
    SyncDir(Arc<Dir>),
}

#[derive(Default, Debug)]
struct Batches {
    next_ticket: u64,
    pending: Vec<(u64, Op)>,
    /// The written files among the pending operations.
    pending_files: usize,
    /// The distinct directories the pending operations hold open (their addresses).
    pending_dirs: foldhash::HashSet<usize>,
    results: std::collections::HashMap<u64, Result<(), ProviderError>>,
    leading: bool,
    /// How the batches flushed so far made their files durable (for tests).
    synced: Synced,
}

/// Batches flushed with each file fsynced, and with `syncfs` (see [`flush`]).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
struct Synced {
    each_file: u64,
    file_systems: u64,
}

/// Written files in a batch below which each file is fsynced before its rename; at or above
/// it, the batch calls `syncfs` once per file system.
///
/// `syncfs` writes back every dirty page of the file system, not only steward's: applying one
/// file on a busy machine would wait for whatever other programs left unwritten (gigabytes
/// from a database or a build), so a small batch fsyncs its own files only. Each `fsync` costs
/// about one journal commit (~4.5 ms on the disk this was measured on) and they run one after
/// the other, so 16 of them (~70 ms) already cost more than one `syncfs` of a quiet file
/// system, and a large apply's batches of hundreds of files stay with `syncfs`. Below 16, a
/// batch also holds at most 15 temporary files open until its flush.
pub const PER_FILE_SYNC_BELOW: usize = 16;

/// Distinct directories the pending operations may hold open before the writer that queues
/// one more flushes them: each is a file descriptor, and a process often has only 1,024.
const MAX_PENDING_DIRS: usize = 128;

impl Durability {
    /// A committer with nothing pending.
    pub fn new() -> Durability {
        Durability::default()
    }

    /// Writes `bytes` to `target` atomically with the given mode and ownership, sharing the
    /// sync with concurrent writers.
    pub fn write(
        &self,
        target: &Entry,
        bytes: &[u8],
        mode: u32,
        ids: (Option<u32>, Option<u32>),
    ) -> Result<(), ProviderError> {
        let ticket = self.stage(target, bytes, mode, ids)?;
        self.wait(ticket)
    }

    /// Writes `bytes` to a temporary file beside `target` and queues its sync and rename for
    /// the next batch; `target` is not replaced until a [`Durability::wait`] flushes the batch.
    pub fn stage(
        &self,
        target: &Entry,
        bytes: &[u8],
        mode: u32,
        ids: (Option<u32>, Option<u32>),
    ) -> Result<Ticket, ProviderError> {
        let temp = self.write_staged(target, bytes, mode, ids)?;
        self.queue(Op::Rename(temp, target.clone()))
    }

    /// [`Durability::stage`] for a target the plan found absent: the rename fails with
    /// [`ProviderError::Appeared`] instead of replacing whatever appeared there since.
    pub fn stage_new(
        &self,
        target: &Entry,
        bytes: &[u8],
        mode: u32,
        ids: (Option<u32>, Option<u32>),
    ) -> Result<Ticket, ProviderError> {
        let temp = self.write_staged(target, bytes, mode, ids)?;
        self.queue(Op::Create(temp, target.clone()))
    }

    /// The temporary file beside `target` that a staged write renames, its directory swept
    /// first.
    fn write_staged(
        &self,
        target: &Entry,
        bytes: &[u8],
        mode: u32,
        ids: (Option<u32>, Option<u32>),
    ) -> Result<Temp, ProviderError> {
        self.sweep(target.dir());
        let (file, mut temp) = write_temp(target, bytes, mode, ids)?;
        // Kept open for an fsync at the flush, in case the batch stays small (see `queue`).
        temp.open = Some(file);
        Ok(temp)
    }

    /// Queues an fsync of `dir` (an entry was created in it) for the next batch.
    pub fn stage_dir_sync(&self, dir: &Arc<Dir>) -> Result<Ticket, ProviderError> {
        self.queue(Op::SyncDir(dir.clone()))
    }

    fn queue(&self, mut op: Op) -> Result<Ticket, ProviderError> {
        let poisoned = |_| ProviderError::failed("durability lock poisoned");
        let mut state = self.state.lock().map_err(poisoned)?;
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        if let Op::Rename(temp, _) | Op::Create(temp, _) = &mut op {
            state.pending_files += 1;
            // The batch is too large for an fsync per file now: its files will be synced by
            // `syncfs`, so their descriptors are closed instead of held until the flush.
            if state.pending_files >= PER_FILE_SYNC_BELOW {
                temp.open = None;
                if state.pending_files == PER_FILE_SYNC_BELOW {
                    for (_, pending) in &mut state.pending {
                        if let Op::Rename(temp, _) | Op::Create(temp, _) = pending {
                            temp.open = None;
                        }
                    }
                }
            }
        }
        state
            .pending_dirs
            .insert(Arc::as_ptr(op.directory()).addr());
        state.pending.push((ticket, op));
        // Too many directories held open: this writer flushes them now (after the flush in
        // progress, if any) instead of letting the batch grow until someone waits.
        while state.pending_dirs.len() >= MAX_PENDING_DIRS {
            if state.leading {
                state = self.done.wait(state).map_err(poisoned)?;
                continue;
            }
            state = self.lead(state)?;
        }
        Ok(Ticket(ticket))
    }

    /// Flushes every pending operation as the leader and records their results; called
    /// with the lock held and no other leader.
    fn lead<'a>(
        &'a self,
        mut state: std::sync::MutexGuard<'a, Batches>,
    ) -> Result<std::sync::MutexGuard<'a, Batches>, ProviderError> {
        state.leading = true;
        let batch = std::mem::take(&mut state.pending);
        state.pending_dirs.clear();
        state.pending_files = 0;
        drop(state);
        let (results, file_sync) = flush(batch);
        let mut state = self
            .state
            .lock()
            .map_err(|_| ProviderError::failed("durability lock poisoned"))?;
        state.results.extend(results);
        match file_sync {
            FileSync::EachFile => state.synced.each_file += 1,
            FileSync::FileSystems => state.synced.file_systems += 1,
        }
        state.leading = false;
        self.done.notify_all();
        Ok(state)
    }

    /// Notes a directory this run created: it holds no temporary file of a killed run, so
    /// writing in it needs no sweep.
    pub fn created(&self, dir: &Path) {
        if let Ok(mut swept) = self.swept.lock() {
            swept.insert(dir.to_path_buf());
        }
    }

    /// Removes `.steward-*` temporary files that a killed run left in `dir`, once per run.
    /// Only one apply runs on a state directory at a time (the lock), so any such file in a
    /// directory this apply writes to is stale.
    ///
    /// The sweep happens under the lock, so no writer of this run creates a temporary file in
    /// a directory while it is being swept.
    fn sweep(&self, dir: &Arc<Dir>) {
        let Ok(mut swept) = self.swept.lock() else {
            return;
        };
        if !swept.insert(dir.path().to_path_buf()) {
            return;
        }
        let Ok(entries) = dir.list() else {
            return;
        };
        for (name, ty) in entries {
            // `.steward-` and six random characters: the temporary files of content writes.
            let stale = name
                .to_str()
                .and_then(|n| n.strip_prefix(".steward-"))
                .is_some_and(|rest| {
                    rest.len() == 6 && rest.chars().all(|c| c.is_ascii_alphanumeric())
                });
            if !stale {
                continue;
            }
            let entry = Entry::new(dir.clone(), name.clone(), dir.path().join(&name));
            let is_file = match ty {
                Some(ty) => ty == nix::dir::Type::File,
                None => matches!(
                    entry.stat(),
                    Ok(Some(stat)) if stat.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG
                ),
            };
            if is_file {
                let _ = entry.remove_file();
            }
        }
    }

    /// The result of a staged operation, once it is durable: flushes every pending operation
    /// when no other thread is flushing, else waits for that flush (and leads the next one if
    /// the ticket was staged too late for it).
    pub fn wait(&self, ticket: Ticket) -> Result<(), ProviderError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| ProviderError::failed("durability lock poisoned"))?;
        loop {
            if let Some(result) = state.results.remove(&ticket.0) {
                return result;
            }
            if !state.leading {
                state = self.lead(state)?;
                continue;
            }
            state = self
                .done
                .wait(state)
                .map_err(|_| ProviderError::failed("durability lock poisoned"))?;
        }
    }
}

/// How a batch makes its written files durable before renaming them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileSync {
    /// An `fsync` of each file just before its rename: a small batch.
    EachFile,
    /// `syncfs` once per file system, before any rename.
    FileSystems,
}

/// Makes a batch durable: an fsync of each written file when the batch is small
/// ([`PER_FILE_SYNC_BELOW`]), else `syncfs` once per file system holding a written file; then
/// the renames, then one fsync per directory.
///
/// Each operation carries its open directory: the renames name their entries relative to it,
/// and its fsync uses the same handle. A large batch is renamed and synced by one thread per
/// processor, each with its own directories: the last batch of an apply is otherwise a tail
/// that one thread works through alone.
fn flush(batch: Vec<(u64, Op)>) -> (Vec<TicketResult>, FileSync) {
    use std::collections::BTreeMap;
    let mut n_files = 0;
    let mut all_open = true;
    for (_, op) in &batch {
        if let Op::Rename(temp, _) | Op::Create(temp, _) = op {
            n_files += 1;
            all_open &= temp.open.is_some();
        }
    }
    if n_files < PER_FILE_SYNC_BELOW && all_open {
        let (results, renamed) = rename_and_sync(&batch, FileSync::EachFile, None);
        keep_renamed(batch, renamed);
        return (results, FileSync::EachFile);
    }
    // One file system per directory: look each directory up once, not each file.
    let mut devices: BTreeMap<u64, Arc<Dir>> = BTreeMap::new();
    let mut seen_dirs: foldhash::HashSet<*const Dir> = foldhash::HashSet::default();
    let mut last_dir: Option<*const Dir> = None;
    for (_, op) in &batch {
        let (Op::Rename(_, target) | Op::Create(_, target)) = op else {
            continue;
        };
        let dir = Arc::as_ptr(target.dir());
        // A batch holds runs of files of one directory: most need no set lookup.
        if last_dir == Some(dir) || !seen_dirs.insert(dir) {
            continue;
        }
        last_dir = Some(dir);
        if let Ok(stat) = nix::sys::stat::fstat(target.dir().fd()) {
            devices
                .entry(stat.st_dev)
                .or_insert_with(|| target.dir().clone());
        }
    }
    let mut sync_error = None;
    for dir in devices.values() {
        if let Err(errno) = nix::unistd::syncfs(dir.fd()) {
            sync_error = Some(ProviderError::io(dir.path(), errno.into()).to_string());
        }
    }
    // Asked once: the answer comes from cgroup files, read anew on each call.
    static PROCESSORS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let processors =
        *PROCESSORS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from));
    let groups = split_by_directory(batch, processors);
    let sync_error = sync_error.as_deref();
    let (results, renamed) = std::thread::scope(|scope| {
        let helpers: Vec<_> = groups
            .iter()
            .skip(1)
            .map(|group| {
                let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
                    rename_and_sync(group, FileSync::FileSystems, sync_error)
                });
                (group, spawned)
            })
            .collect();
        let (mut results, mut renamed) = match groups.first() {
            Some(group) => rename_and_sync(group, FileSync::FileSystems, sync_error),
            None => (Vec::new(), Vec::new()),
        };
        for (group, helper) in helpers {
            // No thread to spare (or it panicked): this one does the group.
            let (more, more_renamed) = match helper.map(|helper| helper.join()) {
                Ok(Ok(done)) => done,
                _ => rename_and_sync(group, FileSync::FileSystems, sync_error),
            };
            results.extend(more);
            renamed.extend(more_renamed);
        }
        (results, renamed)
    });
    keep_renamed(groups.into_iter().flatten(), renamed);
    (results, FileSync::FileSystems)
}

/// Disarms the temporary files renamed into place: nothing is left at their names. Dropping
/// the others removes their temporary files.
fn keep_renamed(batch: impl IntoIterator<Item = (u64, Op)>, renamed: Vec<u64>) {
    let renamed: std::collections::HashSet<u64> = renamed.into_iter().collect();
    for (ticket, op) in batch {
        if let (true, Op::Rename(temp, _) | Op::Create(temp, _)) = (renamed.contains(&ticket), op) {
            temp.keep();
        }
    }
}

/// Splits a batch into groups that can be renamed and synced in parallel: every operation on
/// one directory in the same group (its fsync follows all its renames), the directories dealt
/// out in turn, at most one group per processor and one per ~512 operations.
fn split_by_directory(batch: Vec<(u64, Op)>, processors: usize) -> Vec<Vec<(u64, Op)>> {
    let n_groups = processors.min(batch.len().div_ceil(512)).max(1);
    let mut groups: Vec<Vec<(u64, Op)>> = (0..n_groups).map(|_| Vec::new()).collect();
    if n_groups == 1 {
        groups[0] = batch;
        return groups;
    }
    let mut group_of: foldhash::HashMap<std::path::PathBuf, usize> = foldhash::HashMap::default();
    let mut last: Option<(std::path::PathBuf, usize)> = None;
    for (ticket, op) in batch {
        let dir = op.directory().path();
        let group = match &last {
            // A batch holds runs of one directory: most operations need no lookup.
            Some((last_dir, group)) if last_dir.as_os_str() == dir.as_os_str() => *group,
            _ => {
                let next = group_of.len() % n_groups;
                let group = *group_of.entry(dir.to_path_buf()).or_insert(next);
                last = Some((dir.to_path_buf(), group));
                group
            }
        };
        groups[group].push((ticket, op));
    }
    groups
}

impl Op {
    /// The directory whose entries the operation changes.
    fn directory(&self) -> &Arc<Dir> {
        match self {
            Op::Rename(_, target) | Op::Create(_, target) => target.dir(),
            Op::SyncDir(dir) => dir,
        }
    }
}

/// The results of a group's operations, and the tickets of the files renamed into place.
type Renamed = (Vec<TicketResult>, Vec<u64>);

/// One operation's ticket and how it ended.
type TicketResult = (u64, Result<(), ProviderError>);

/// Renames a group's written files into place (each fsynced first with
/// [`FileSync::EachFile`]; none when `sync_error` says their `syncfs` failed), then fsyncs
/// each directory it changed once.
fn rename_and_sync(batch: &[(u64, Op)], file_sync: FileSync, sync_error: Option<&str>) -> Renamed {
    let mut placed = Vec::new();
    let mut results = Vec::with_capacity(batch.len());
    // Keyed by path: one fsync per directory, whichever handle of it the writes came through.
    let mut dirs: std::collections::BTreeMap<std::path::PathBuf, Arc<Dir>> =
        std::collections::BTreeMap::new();
    let mut last_dir: Option<*const Dir> = None;
    for (ticket, op) in batch {
        let ticket = *ticket;
        let (temp, target, replace) = match op {
            Op::Rename(temp, target) => (temp, target, true),
            Op::Create(temp, target) => (temp, target, false),
            Op::SyncDir(dir) => {
                dirs.insert(dir.path().to_path_buf(), dir.clone());
                results.push((ticket, dir.path().to_path_buf(), Ok(())));
                continue;
            }
        };
        let parent = target.dir();
        let synced = match (file_sync, &temp.open) {
            (FileSync::FileSystems, _) => sync_error.map(String::from),
            (FileSync::EachFile, Some(file)) => file
                .sync_all()
                .err()
                .map(|err| ProviderError::io(temp.entry.path(), err).to_string()),
            // `flush` chooses an fsync per file only when every file is still open.
            (FileSync::EachFile, None) => Some("its temporary file was closed".to_string()),
        };
        if let Some(message) = synced {
            let message = format!("cannot make {} durable: {message}", target.path().display());
            results.push((
                ticket,
                parent.path().to_path_buf(),
                Err(ProviderError::failed(message)),
            ));
            continue;
        }
        let renamed = rename_at(parent.fd(), temp.entry.name(), target.name(), replace);
        // Dropping the temporary file's guard on failure removes it.
        match renamed {
            Ok(()) => {
                placed.push(ticket);
                // Same run-of-one-directory shortcut as in `flush`.
                if last_dir != Some(Arc::as_ptr(parent)) {
                    dirs.entry(parent.path().to_path_buf())
                        .or_insert_with(|| parent.clone());
                    last_dir = Some(Arc::as_ptr(parent));
                }
                results.push((ticket, parent.path().to_path_buf(), Ok(())));
            }
            Err(err) if !replace && appeared_or_unsupported(&err) => {
                results.push((
                    ticket,
                    parent.path().to_path_buf(),
                    Err(ProviderError::Appeared {
                        path: target.path().to_path_buf(),
                    }),
                ));
            }
            Err(err) => {
                results.push((
                    ticket,
                    parent.path().to_path_buf(),
                    Err(ProviderError::io(target.path(), err)),
                ));
            }
        }
    }
    let mut dir_errors = std::collections::HashMap::new();
    for (path, dir) in &dirs {
        if let Err(err) = dir.sync() {
            dir_errors.insert(path.clone(), ProviderError::io(path, err).to_string());
        }
    }
    let results = results
        .into_iter()
        .map(
            |(ticket, dir, result)| match (result, dir_errors.get(&dir)) {
                (Ok(()), Some(message)) => (ticket, Err(ProviderError::failed(message.clone()))),
                (result, _) => (ticket, result),
            },
        )
        .collect();
    (results, placed)
}

/// Renames `from` to `to` (both names in `dir`), replacing what is at `to` or, without
/// `replace`, failing when anything is there (`renameat2(RENAME_NOREPLACE)`).
fn rename_at(
    dir: std::os::fd::BorrowedFd<'_>,
    from: &std::ffi::OsStr,
    to: &std::ffi::OsStr,
    replace: bool,
) -> std::io::Result<()> {
    if replace {
        return nix::fcntl::renameat(dir, from, dir, to).map_err(Into::into);
    }
    rename_noreplace(dir, from, to)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename_noreplace(
    dir: std::os::fd::BorrowedFd<'_>,
    from: &std::ffi::OsStr,
    to: &std::ffi::OsStr,
) -> std::io::Result<()> {
    use nix::fcntl::{RenameFlags, renameat2};
    renameat2(dir, from, dir, to, RenameFlags::RENAME_NOREPLACE).map_err(Into::into)
}

/// Without `renameat2`: unsupported, so the caller takes the fully checked path.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rename_noreplace(
    _dir: std::os::fd::BorrowedFd<'_>,
    _from: &std::ffi::OsStr,
    _to: &std::ffi::OsStr,
) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// A no-replace rename that found its target taken, or that the file system or kernel does
/// not offer: either way the resource is applied again with every check.
fn appeared_or_unsupported(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::AlreadyExists
        || err.kind() == std::io::ErrorKind::Unsupported
        || matches!(
            err.raw_os_error(),
            Some(code) if code == nix::libc::EINVAL || code == nix::libc::ENOSYS || code == nix::libc::ENOTDIR || code == nix::libc::EISDIR
        )
}

/// Writes `bytes` to `target` atomically with the given mode and ownership, syncing on its
/// own (for writes outside an apply's batch, such as backups).
pub fn atomic_write(
    target: &Entry,
    bytes: &[u8],
    mode: u32,
    ids: (Option<u32>, Option<u32>),
) -> Result<(), ProviderError> {
    let (file, temp) = write_temp(target, bytes, mode, ids)?;
    file.sync_all()
        .map_err(|err| ProviderError::io(target.path(), err))?;
    drop(file);
    temp.entry
        .rename_to(target)
        .map_err(|err| ProviderError::io(target.path(), err))?;
    temp.keep();
    target
        .dir()
        .sync()
        .map_err(|err| ProviderError::io(target.dir().path(), err))
}

/// A temporary file created by steward, removed when dropped unless [kept](Temp::keep)
/// (renamed into place).
#[derive(Debug)]
struct Temp {
    entry: Entry,
    armed: bool,
    /// The file, still open for its fsync while its batch is small (see
    /// [`PER_FILE_SYNC_BELOW`]); `None` once it is to be synced by `syncfs`.
    open: Option<std::fs::File>,
}

impl Temp {
    /// Leaves the file where it is (it was renamed away).
    fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.entry.remove_file();
        }
    }
}

/// A temporary file beside `target` holding `bytes`, with its mode and owner set, not yet
/// synced; created in the target's open directory, never through a symlink.
fn write_temp(
    target: &Entry,
    bytes: &[u8],
    mode: u32,
    ids: (Option<u32>, Option<u32>),
) -> Result<(std::fs::File, Temp), ProviderError> {
    // Created with its final mode when the umask keeps every bit of it and nobody else may
    // write it: no `fchmod` per file. Otherwise created private and given its mode below.
    let exact_at_creation = exact_at_creation(mode);
    let create_mode = if exact_at_creation { mode } else { 0o600 };
    let dir = target.dir();
    let (fd, temp) = loop {
        let entry = target.sibling(temp_name());
        let created = nix::fcntl::openat(
            dir.fd(),
            entry.name(),
            nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_CREAT
                | nix::fcntl::OFlag::O_EXCL
                | nix::fcntl::OFlag::O_NOFOLLOW
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::from_bits_truncate(create_mode),
        );
        match created {
            Ok(fd) => {
                let temp = Temp {
                    entry,
                    armed: true,
                    open: None,
                };
                break (fd, temp);
            }
            Err(nix::errno::Errno::EEXIST) => continue,
            // The directory was removed since it was opened.
            Err(nix::errno::Errno::ENOENT) => {
                return Err(ProviderError::missing_parent(dir.path()));
            }
            Err(errno) => return Err(ProviderError::io(dir.path(), errno.into())),
        }
    };
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)
        .map_err(|err| ProviderError::io(temp.entry.path(), err))?;
    if !exact_at_creation {
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|err| ProviderError::io(target.path(), err))?;
    }
    if ids.0.is_some() || ids.1.is_some() {
        std::os::unix::fs::fchown(&file, ids.0, ids.1)
            .map_err(|err| ProviderError::io(target.path(), err))?;
    }
    Ok((file, temp))
}

/// `.steward-` and six random letters or digits: the name of a content write's temporary
/// file, which [`Durability`]'s sweep recognizes.
fn temp_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let seed = *SEED.get_or_init(|| getrandom::u64().unwrap_or(u64::from(std::process::id())));
    // splitmix64 of a counter: distinct names in a run, unpredictable across runs.
    let mut bits = seed.wrapping_add(
        NEXT.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    bits = (bits ^ (bits >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    bits = (bits ^ (bits >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    bits ^= bits >> 31;
    let mut name = String::with_capacity(15);
    name.push_str(".steward-");
    for _ in 0..6 {
        name.push(char::from(ALPHABET[(bits % 62) as usize]));
        bits /= 62;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn entry(path: &Path) -> Entry {
        Entry::unconfined(path).unwrap()
    }

    #[test]
    fn written_files_get_their_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let durability = Durability::new();
        for mode in [0o644, 0o600, 0o666, 0o755, 0o640, 0o4755, 0o000] {
            let path = dir.path().join(format!("f{mode:o}"));
            durability
                .write(&entry(&path), b"x", mode, (None, None))
                .unwrap();
            let meta = fs::symlink_metadata(&path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, mode, "{mode:o}");
        }
    }

    #[test]
    fn staged_writes_land_when_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let durability = Durability::new();
        let first = dir.path().join("a");
        let second = dir.path().join("sub/b");
        let root = Arc::new(Dir::open(dir.path()).unwrap());
        let tickets = [
            durability
                .stage(&entry(&first), b"one", 0o644, (None, None))
                .unwrap(),
            durability
                .stage(&entry(&second), b"two", 0o644, (None, None))
                .unwrap(),
            durability.stage_dir_sync(&root).unwrap(),
        ];
        assert!(!first.exists() && !second.exists());
        for ticket in tickets {
            durability.wait(ticket).unwrap();
        }
        assert_eq!(fs::read(&first).unwrap(), b"one");
        assert_eq!(fs::read(&second).unwrap(), b"two");
        let leftovers = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".steward-")
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn a_staged_creation_leaves_alone_what_appeared_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let durability = Durability::new();
        let fresh = dir.path().join("fresh");
        let taken = dir.path().join("taken");
        let tickets = [
            durability
                .stage_new(&entry(&fresh), b"one", 0o644, (None, None))
                .unwrap(),
            durability
                .stage_new(&entry(&taken), b"two", 0o644, (None, None))
                .unwrap(),
        ];
        fs::write(&taken, b"appeared").unwrap();
        durability.wait(tickets[0]).unwrap();
        let err = durability.wait(tickets[1]).unwrap_err();
        assert!(matches!(err, ProviderError::Appeared { .. }), "{err}");
        assert_eq!(fs::read(&fresh).unwrap(), b"one");
        assert_eq!(fs::read(&taken).unwrap(), b"appeared");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_large_batch_lands_whole_when_split_over_threads() {
        let dir = tempfile::tempdir().unwrap();
        let durability = Durability::new();
        let mut tickets = Vec::new();
        for d in 0..40 {
            let sub = dir.path().join(format!("d{d:02}"));
            fs::create_dir(&sub).unwrap();
            let opened = Arc::new(Dir::open(&sub).unwrap());
            for f in 0..30 {
                let path = sub.join(format!("f{f:02}"));
                let target = Entry::new(opened.clone(), format!("f{f:02}"), path.clone());
                let ticket = durability
                    .stage_new(
                        &target,
                        path.to_string_lossy().as_bytes(),
                        0o644,
                        (None, None),
                    )
                    .unwrap();
                tickets.push((path, ticket));
            }
            tickets.push((sub.clone(), durability.stage_dir_sync(&opened).unwrap()));
        }
        let taken = dir.path().join("d39/f29");
        fs::write(&taken, b"appeared").unwrap();
        for (path, ticket) in tickets {
            match durability.wait(ticket) {
                Err(ProviderError::Appeared { path: appeared }) => assert_eq!(appeared, taken),
                Err(err) => panic!("{}: {err}", path.display()),
                Ok(()) if path.is_dir() => {}
                Ok(()) => assert_eq!(fs::read(&path).unwrap(), path.to_string_lossy().as_bytes()),
            }
        }
        assert_eq!(fs::read(&taken).unwrap(), b"appeared");
        for d in 0..40 {
            let names = fs::read_dir(dir.path().join(format!("d{d:02}")))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(".steward-"))
                .collect::<Vec<_>>();
            assert!(names.is_empty(), "temporary files left: {names:?}");
        }
    }

    #[test]
    fn a_batch_splits_by_directory() {
        let root = tempfile::tempdir().unwrap();
        let dirs: foldhash::HashMap<&str, Arc<Dir>> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|name| {
                fs::create_dir(root.path().join(name)).unwrap();
                (name, Arc::new(Dir::open(&root.path().join(name)).unwrap()))
            })
            .collect();
        let op = |dir: &str, file: &str| {
            let target = Entry::new(dirs[dir].clone(), file, root.path().join(dir).join(file));
            let temp = Temp {
                entry: target.sibling(".steward-x"),
                armed: false,
                open: None,
            };
            Op::Rename(temp, target)
        };
        let mut batch = Vec::new();
        for (n, dir) in ["a", "b", "c", "a", "d", "b"].into_iter().enumerate() {
            for f in 0..200 {
                batch.push((batch.len() as u64, op(dir, &format!("{n}-{f}"))));
            }
        }
        batch.push((batch.len() as u64, Op::SyncDir(dirs["c"].clone())));
        let n_ops = batch.len();
        assert_eq!(split_by_directory(Vec::new(), 4).len(), 1);
        let groups = split_by_directory(batch, 2);
        assert_eq!(groups.len(), 2);
        let mut tickets: Vec<u64> = groups.iter().flatten().map(|(t, _)| *t).collect();
        tickets.sort_unstable();
        assert_eq!(tickets, (0..n_ops as u64).collect::<Vec<_>>());
        // Every directory's operations in one group: its fsync follows all its renames.
        let dirs_of = |group: &Vec<(u64, Op)>| {
            group
                .iter()
                .map(|(_, op)| op.directory().path().to_path_buf())
                .collect::<std::collections::BTreeSet<_>>()
        };
        let (first, second) = (dirs_of(&groups[0]), dirs_of(&groups[1]));
        assert!(first.is_disjoint(&second), "{first:?} {second:?}");
        assert_eq!(first.len() + second.len(), 4);
    }

    #[test]
    fn a_staged_write_into_a_removed_directory_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("gone")).unwrap();
        let target = entry(&dir.path().join("gone/f"));
        fs::remove_dir(dir.path().join("gone")).unwrap();
        let durability = Durability::new();
        let err = durability
            .stage(&target, b"x", 0o644, (None, None))
            .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn staged_writes_hold_a_bounded_number_of_directories_open() {
        let dir = tempfile::tempdir().unwrap();
        let durability = Durability::new();
        let mut tickets = Vec::new();
        for d in 0..(MAX_PENDING_DIRS * 2 + 10) {
            let sub = dir.path().join(format!("d{d}"));
            fs::create_dir(&sub).unwrap();
            let ticket = durability
                .stage(&entry(&sub.join("f")), b"x", 0o644, (None, None))
                .unwrap();
            tickets.push((sub, ticket));
            let state = durability.state.lock().unwrap();
            assert!(state.pending_dirs.len() < MAX_PENDING_DIRS);
        }
        for (sub, ticket) in tickets {
            durability.wait(ticket).unwrap();
            assert_eq!(fs::read(sub.join("f")).unwrap(), b"x");
        }
    }

    #[test]
    fn temporary_names_are_what_the_sweep_removes() {
        let name = temp_name();
        let rest = name.strip_prefix(".steward-").unwrap();
        assert_eq!(rest.len(), 6);
        assert!(rest.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
        assert_ne!(temp_name(), temp_name());
    }

    #[test]
    fn a_small_batch_fsyncs_its_files_and_a_large_one_syncs_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let durability = Durability::new();
        let synced = || durability.state.lock().unwrap().synced;
        let stage = |name: String| {
            let path = dir.path().join(name);
            let ticket = durability
                .stage(
                    &entry(&path),
                    path.to_string_lossy().as_bytes(),
                    0o644,
                    (None, None),
                )
                .unwrap();
            (path, ticket)
        };
        let check = |staged: Vec<(std::path::PathBuf, Ticket)>| {
            for (path, ticket) in staged {
                durability.wait(ticket).unwrap();
                assert_eq!(fs::read(&path).unwrap(), path.to_string_lossy().as_bytes());
            }
        };
        // One file alone, as `steward apply` of one changed file does.
        durability
            .write(&entry(&dir.path().join("one")), b"1", 0o644, (None, None))
            .unwrap();
        assert_eq!(
            synced(),
            Synced {
                each_file: 1,
                file_systems: 0
            }
        );
        let small: Vec<_> = (0..PER_FILE_SYNC_BELOW - 1)
            .map(|n| stage(format!("small{n}")))
            .collect();
        // A directory fsync is not a file: it does not count towards the threshold.
        let root = Arc::new(Dir::open(dir.path()).unwrap());
        let dir_ticket = durability.stage_dir_sync(&root).unwrap();
        check(small);
        durability.wait(dir_ticket).unwrap();
        assert_eq!(
            synced(),
            Synced {
                each_file: 2,
                file_systems: 0
            }
        );
        let large: Vec<_> = (0..PER_FILE_SYNC_BELOW)
            .map(|n| stage(format!("large{n}")))
            .collect();
        // Past the threshold, no temporary file is held open until the flush.
        assert!(
            durability
                .state
                .lock()
                .unwrap()
                .pending
                .iter()
                .all(|(_, op)| match op {
                    Op::Rename(temp, _) | Op::Create(temp, _) => temp.open.is_none(),
                    Op::SyncDir(_) => true,
                })
        );
        check(large);
        assert_eq!(
            synced(),
            Synced {
                each_file: 2,
                file_systems: 1
            }
        );
        let leftovers = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".steward-")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
}
