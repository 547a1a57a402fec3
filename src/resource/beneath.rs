//! File-system access confined to the root: directories opened beneath a handle on the root,
//! and every change made relative to an open directory, never by a path walked again.
//!
//! Checking a path and then writing by that path is a race: a directory inside the root
//! swapped for a symlink between the two redirects the write outside (issue 12, finding 9).
//! So under `--root` a provider's parent directory is opened beneath a handle on the root with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` (or, on kernels without it, one
//! `O_NOFOLLOW` component at a time), and the provider then names only the entry's last
//! component relative to that directory, with primitives that do not follow a final symlink.
//! A directory swapped afterwards changes nothing: the handle still names the directory that
//! was opened, inside the root.
//!
//! Owns [`Root`], [`Dir`] and [`Entry`]. It knows nothing of resources or the path cache.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;

/// How directories are looked up below the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confine {
    /// The running system (`/`): symlinks are followed wherever they lead.
    Live,
    /// A tree under `--root`: nothing may lead outside it.
    Beneath,
}

/// The root, open, with its canonical path.
#[derive(Debug)]
pub struct Root {
    dir: Arc<Dir>,
    canonical: PathBuf,
    confine: Confine,
}

/// An open directory and the path it was opened as (for messages only: never reopened by it).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// A name in an open directory: what providers read, replace and remove.
#[derive(Clone, Debug)]
pub struct Entry {
    dir: Arc<Dir>,
    name: OsString,
    path: PathBuf,
}

/// Why a directory could not be opened beneath the root.
#[derive(Debug)]
pub enum OpenError {
    /// A component is missing.
    Missing,
    /// A symlink (or `..`) leads outside the root, to `real` when it could be read.
    Outside {
        /// Where the path really leads.
        real: PathBuf,
    },
    /// Any other failure.
    Io(std::io::Error),
}

/// The flags of every directory handle: readable (so it can be listed and fsynced).
fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

impl Root {
    /// Opens `path` as the root; `Live` follows symlinks below it as the system does.
    pub fn open(path: &Path, confine: Confine) -> std::io::Result<Root> {
        let canonical = path.canonicalize()?;
        let dir = Dir {
            fd: Dir::open(&canonical)?.fd,
            path: path.to_path_buf(),
        };
        Ok(Root {
            dir: Arc::new(dir),
            canonical,
            confine,
        })
    }

    /// The root's own handle.
    pub fn dir(&self) -> &Arc<Dir> {
        &self.dir
    }

    /// Opens the directory at `relative` (normal components only) beneath the root.
    ///
    /// Symlinks inside the root that stay inside are followed, as they always were; one that
    /// leads outside, or a `..`, is refused. The answer holds for the handle returned, however
    /// the tree is changed afterwards.
    pub fn open_dir(&self, relative: &Path) -> Result<Dir, OpenError> {
        let display = self.dir.path.join(relative);
        if relative.as_os_str().is_empty() {
            return self.dir.try_clone().map_err(OpenError::Io);
        }
        if self.confine == Confine::Live {
            return nix::fcntl::openat(self.dir.fd.as_fd(), relative, dir_flags(), Mode::empty())
                .map(|fd| Dir { fd, path: display })
                .map_err(missing_or_io);
        }
        let resolve = nix::fcntl::ResolveFlag::RESOLVE_BENEATH
            | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS;
        match self.open_with(relative, resolve) {
            Ok(fd) => Ok(Dir { fd, path: display }),
            // A symlink whose target is absolute (perhaps the root's own path) or climbs with
            // `..`: where does it really lead?
            Err(Errno::EXDEV | Errno::ELOOP) => self.open_canonical(relative),
            Err(errno) => Err(missing_or_io(errno)),
        }
    }

    /// `openat2` beneath the root, retried when a concurrent rename made the kernel unsure
    /// (`EAGAIN`); an `O_NOFOLLOW` walk where the kernel has no `openat2`.
    fn open_with(
        &self,
        relative: &Path,
        resolve: nix::fcntl::ResolveFlag,
    ) -> Result<OwnedFd, Errno> {
        let how = nix::fcntl::OpenHow::new()
            .flags(dir_flags())
            .resolve(resolve);
        let mut n_tries = 0;
        loop {
            match nix::fcntl::openat2(self.dir.fd.as_fd(), relative, how) {
                Err(Errno::EAGAIN) if n_tries < 16 => n_tries += 1,
                // No `openat2` (before Linux 5.6, or filtered by seccomp).
                Err(Errno::ENOSYS | Errno::EPERM) => return walk_nofollow(&self.dir.fd, relative),
                other => return other,
            }
        }
    }

    /// The slow way for a path through a symlink `openat2` would not follow: read where it
    /// leads (the deepest existing directory, canonicalized), refuse it outside the root, and
    /// open the real path beneath the root following no symlink at all, so a swap meanwhile
    /// makes the open fail rather than lead elsewhere.
    fn open_canonical(&self, relative: &Path) -> Result<Dir, OpenError> {
        let joined = self.canonical.join(relative);
        let mut probe = joined.as_path();
        let real = loop {
            match probe.canonicalize() {
                Ok(real) => break real,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(OpenError::Io(err)),
            }
            match probe.parent() {
                Some(up) if up.starts_with(&self.canonical) => probe = up,
                _ => return Err(OpenError::Missing),
            }
        };
        let Ok(inside) = real.strip_prefix(&self.canonical) else {
            return Err(OpenError::Outside { real });
        };
        if probe != joined {
            // Something below the deepest existing directory is missing.
            return Err(OpenError::Missing);
        }
        if inside.as_os_str().is_empty() {
            return self.dir.try_clone().map_err(OpenError::Io);
        }
        let display = self.dir.path.join(relative);
        match self.open_with(inside, nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS) {
            Ok(fd) => Ok(Dir { fd, path: display }),
            // A link appeared on the real path since it was read: someone is swapping.
            Err(Errno::ELOOP | Errno::EXDEV) => Err(OpenError::Outside { real }),
            Err(errno) => Err(missing_or_io(errno)),
        }
    }
}

fn missing_or_io(errno: Errno) -> OpenError {
    match errno {
        Errno::ENOENT => OpenError::Missing,
        // A file where a directory belongs is an error at that path, as it always was.
        other => OpenError::Io(other.into()),
    }
}

/// Opens `relative` below `start` one component at a time, following no symlink: `ELOOP`
/// when a component is one, `EXDEV` for anything but a plain name.
pub fn walk_nofollow(start: &OwnedFd, relative: &Path) -> Result<OwnedFd, Errno> {
    let mut current: Option<OwnedFd> = None;
    for component in relative.components() {
        let Component::Normal(name) = component else {
            return Err(Errno::EXDEV);
        };
        let at = current.as_ref().unwrap_or(start);
        let next = nix::fcntl::openat(
            at.as_fd(),
            name,
            dir_flags() | OFlag::O_NOFOLLOW,
            Mode::empty(),
        );
        current = match next {
            Ok(fd) => Some(fd),
            // A symlink opened as a directory without following it is "not a directory".
            Err(Errno::ENOTDIR)
                if nix::sys::stat::fstatat(at.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .is_ok_and(|stat| stat.st_mode & nix::libc::S_IFMT == nix::libc::S_IFLNK) =>
            {
                return Err(Errno::ELOOP);
            }
            Err(errno) => return Err(errno),
        };
    }
    match current {
        Some(fd) => Ok(fd),
        None => start.try_clone().map_err(|_| Errno::EMFILE),
    }
}

impl Dir {
    /// Opens a directory by path, following symlinks: for steward's own directories (the
    /// state directory), never for anything under `--root`.
    pub fn open(path: &Path) -> std::io::Result<Dir> {
        let fd = nix::fcntl::open(path, dir_flags(), Mode::empty())?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    fn try_clone(&self) -> std::io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
            path: self.path.clone(),
        })
    }

    /// The path the directory was opened as.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The handle.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Makes the directory's entries durable.
    pub fn sync(&self) -> std::io::Result<()> {
        nix::unistd::fsync(self.fd.as_fd()).map_err(Into::into)
    }

    /// The names in the directory (not `.` and `..`), with the kind the directory tells
    /// (`None` when it does not).
    pub fn list(&self) -> std::io::Result<Vec<(OsString, Option<nix::dir::Type>)>> {
        let fd = nix::fcntl::openat(self.fd.as_fd(), ".", dir_flags(), Mode::empty())?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let name = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name).to_os_string();
            names.push((name, entry.file_type()));
        }
        Ok(names)
    }
}

impl Entry {
    /// `name` in `dir`; `path` is how messages show it.
    pub fn new(dir: Arc<Dir>, name: impl Into<OsString>, path: PathBuf) -> Entry {
        Entry {
            dir,
            name: name.into(),
            path,
        }
    }

    /// The entry for a path of steward's own (the state directory), its parent opened by
    /// path: never for anything under `--root`.
    pub fn unconfined(path: &Path) -> std::io::Result<Entry> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a path with no parent",
            ));
        };
        Ok(Entry::new(
            Arc::new(Dir::open(parent)?),
            name,
            path.to_path_buf(),
        ))
    }

    /// The path messages show.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open directory holding the entry.
    pub fn dir(&self) -> &Arc<Dir> {
        &self.dir
    }

    /// The entry's name in its directory.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// Another name in the same directory.
    pub fn sibling(&self, name: impl Into<OsString>) -> Entry {
        let name = name.into();
        let path = self.dir.path.join(&name);
        Entry::new(self.dir.clone(), name, path)
    }

    /// What is at the entry, not following a symlink; `None` when nothing is.
    pub fn stat(&self) -> std::io::Result<Option<nix::sys::stat::FileStat>> {
        match nix::sys::stat::fstatat(
            self.dir.fd.as_fd(),
            self.name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::ENOENT) => Ok(None),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Opens the entry for reading; a symlink fails (`ELOOP`) instead of being followed, and
    /// a fifo does not block.
    pub fn open_read(&self) -> std::io::Result<std::fs::File> {
        let fd = nix::fcntl::openat(
            self.dir.fd.as_fd(),
            self.name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        )?;
        Ok(std::fs::File::from(fd))
    }

    /// The entry's whole content (see [`Entry::open_read`]).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        let mut file = self.open_read()?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes)?;
        Ok(bytes)
    }

    /// Opens the entry as a directory, not following a symlink.
    pub fn open_dir(&self) -> std::io::Result<Dir> {
        let fd = nix::fcntl::openat(
            self.dir.fd.as_fd(),
            self.name.as_os_str(),
            dir_flags() | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )?;
        Ok(Dir {
            fd,
            path: self.path.clone(),
        })
    }

    /// Where the symlink at the entry points.
    pub fn read_link(&self) -> std::io::Result<PathBuf> {
        nix::fcntl::readlinkat(self.dir.fd.as_fd(), self.name.as_os_str())
            .map(PathBuf::from)
            .map_err(Into::into)
    }

    /// Removes a file or symlink at the entry.
    pub fn remove_file(&self) -> std::io::Result<()> {
        nix::unistd::unlinkat(
            self.dir.fd.as_fd(),
            self.name.as_os_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
        .map_err(Into::into)
    }

    /// Removes an empty directory at the entry.
    pub fn remove_dir(&self) -> std::io::Result<()> {
        nix::unistd::unlinkat(
            self.dir.fd.as_fd(),
            self.name.as_os_str(),
            nix::unistd::UnlinkatFlags::RemoveDir,
        )
        .map_err(Into::into)
    }

    /// Removes the directory at the entry with everything in it, each level opened from the
    /// one above without following symlinks (a link inside is removed, not followed).
    pub fn remove_dir_all(&self) -> std::io::Result<()> {
        let dir = Arc::new(self.open_dir()?);
        for (name, ty) in dir.list()? {
            let child = Entry::new(dir.clone(), name.clone(), self.path.join(&name));
            let is_dir = match ty {
                Some(ty) => ty == nix::dir::Type::Directory,
                None => child
                    .stat()?
                    .is_some_and(|stat| stat.st_mode & nix::libc::S_IFMT == nix::libc::S_IFDIR),
            };
            if is_dir {
                child.remove_dir_all()?;
            } else {
                child.remove_file()?;
            }
        }
        self.remove_dir()
    }

    /// Creates a directory at the entry with `mode` (less the umask).
    pub fn mkdir(&self, mode: u32) -> std::io::Result<()> {
        nix::sys::stat::mkdirat(
            self.dir.fd.as_fd(),
            self.name.as_os_str(),
            Mode::from_bits_truncate(mode),
        )
        .map_err(Into::into)
    }

    /// Creates a symlink at the entry pointing to `target`.
    pub fn symlink(&self, target: &Path) -> std::io::Result<()> {
        nix::unistd::symlinkat(target, self.dir.fd.as_fd(), self.name.as_os_str())
            .map_err(Into::into)
    }

    /// Renames the entry to `to`, in the same directory, replacing what is there.
    pub fn rename_to(&self, to: &Entry) -> std::io::Result<()> {
        nix::fcntl::renameat(
            self.dir.fd.as_fd(),
            self.name.as_os_str(),
            to.dir.fd.as_fd(),
            to.name.as_os_str(),
        )
        .map_err(Into::into)
    }

    /// Sets the permission bits of the file or directory at the entry; a symlink is not
    /// followed (it fails instead: glibc changes the inode it opened with `O_PATH`).
    pub fn chmod(&self, mode: u32) -> std::io::Result<()> {
        nix::sys::stat::fchmodat(
            self.dir.fd.as_fd(),
            self.name.as_os_str(),
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::NoFollowSymlink,
        )
        .map_err(Into::into)
    }

    /// Sets the owner and group of the entry itself (a symlink is not followed).
    pub fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> std::io::Result<()> {
        nix::unistd::fchownat(
            self.dir.fd.as_fd(),
            self.name.as_os_str(),
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(Into::into)
    }
}

/// True when a file or directory created with `mode` gets exactly `mode`: the umask keeps
/// every bit of it, and nobody else may write it before its owner is set.
pub fn exact_at_creation(mode: u32) -> bool {
    mode & 0o7022 == 0 && process_umask().is_some_and(|umask| mode & umask == 0)
}

/// The process's umask, read once from `/proc/self/status` (steward never changes it);
/// `None` when it cannot be read.
fn process_umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(dir: &Path) -> Root {
        Root::open(dir, Confine::Beneath).unwrap()
    }

    #[test]
    fn a_directory_inside_opens_and_a_link_inside_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("a/b", dir.path().join("rel")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("abs")).unwrap();
        let root = root(dir.path());
        for path in ["a", "a/b", "rel", "abs/b"] {
            assert!(root.open_dir(Path::new(path)).is_ok(), "{path}");
        }
        assert!(matches!(
            root.open_dir(Path::new("a/missing")),
            Err(OpenError::Missing)
        ));
        std::fs::write(dir.path().join("a/file"), "x").unwrap();
        assert!(matches!(
            root.open_dir(Path::new("a/file/below")),
            Err(OpenError::Io(_))
        ));
    }

    #[test]
    fn a_link_to_outside_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink("../../..", dir.path().join("up")).unwrap();
        let root = root(dir.path());
        for path in ["out", "out/sub", "out/missing", "up"] {
            let opened = root.open_dir(Path::new(path));
            assert!(
                matches!(opened, Err(OpenError::Outside { .. })),
                "{path}: {opened:?}"
            );
        }
    }

    #[test]
    fn dot_dot_cannot_climb_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let root = root(dir.path());
        let opened = root.open_dir(Path::new("a/../.."));
        assert!(
            matches!(opened, Err(OpenError::Outside { .. })),
            "{opened:?}"
        );
        assert_eq!(
            walk_nofollow(&root.dir.fd, Path::new("a/..")).unwrap_err(),
            Errno::EXDEV
        );
    }

    #[test]
    fn the_component_walk_follows_no_link() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink("a", dir.path().join("l")).unwrap();
        let root = root(dir.path());
        assert!(walk_nofollow(&root.dir.fd, Path::new("a/b")).is_ok());
        assert_eq!(
            walk_nofollow(&root.dir.fd, Path::new("l/b")).unwrap_err(),
            Errno::ELOOP
        );
    }

    #[test]
    fn a_handle_keeps_naming_its_directory_after_a_swap() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let root = root(dir.path());
        let opened = Arc::new(root.open_dir(Path::new("a")).unwrap());
        std::fs::rename(dir.path().join("a"), dir.path().join("a.real")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("a")).unwrap();
        let entry = Entry::new(opened, "f", dir.path().join("a/f"));
        entry.mkdir(0o755).unwrap();
        assert!(dir.path().join("a.real/f").is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        let through_link = Entry::new(root.dir.clone(), "a", dir.path().join("a"));
        assert!(through_link.open_dir().is_err());
        assert!(through_link.chmod(0o700).is_err());
    }
}
