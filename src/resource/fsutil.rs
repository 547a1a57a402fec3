//! File-system helpers shared by the path providers: what is at a path, modes, ownership,
//! removal and backups.
//!
//! Every change is made relative to the target's parent directory, opened beneath the root
//! ([`crate::resource::beneath`]): nothing here walks a path under the root again, so a
//! directory swapped for a symlink meanwhile cannot redirect a write outside the root.
//!
//! Content writes are not made here: they go through the provider context
//! ([`crate::resource::provider::ProviderCtx::write_durably`]) to the group commit in
//! [`crate::resource::durability`], which owns the temporary files and their syncs.
//! This module builds on the provider contract; neither the contract nor the group commit
//! imports it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::model::{Resource, Value};
use crate::resource::accounts::Accounts;
use crate::resource::beneath::Entry;
use crate::resource::provider::{Applied, Declared, ProviderCtx, ProviderError};

/// What exists at a path, without following a final symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Nothing.
    Absent,
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A socket, device or fifo.
    Other,
}

impl Kind {
    /// The `ensure` value a provider reports for it.
    pub fn ensure(self) -> &'static str {
        match self {
            Kind::Absent => "absent",
            Kind::File => "file",
            Kind::Directory => "directory",
            Kind::Symlink => "symlink",
            Kind::Other => "other",
        }
    }

    fn of_mode(st_mode: u32) -> Kind {
        match st_mode & nix::libc::S_IFMT {
            nix::libc::S_IFREG => Kind::File,
            nix::libc::S_IFDIR => Kind::Directory,
            nix::libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// The permission bits and owner of what is at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl Meta {
    fn of(stat: &nix::sys::stat::FileStat) -> Meta {
        Meta {
            mode: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
        }
    }

    /// The metadata of an open file.
    pub fn of_file(file: &std::fs::File) -> std::io::Result<Meta> {
        let meta = file.metadata()?;
        Ok(Meta {
            mode: meta.permissions().mode() & 0o7777,
            uid: std::os::unix::fs::MetadataExt::uid(&meta),
            gid: std::os::unix::fs::MetadataExt::gid(&meta),
        })
    }
}

/// What is at `entry`, with its metadata.
pub fn inspect(entry: &Entry) -> Result<(Kind, Option<Meta>), ProviderError> {
    match entry.stat() {
        Ok(Some(stat)) => Ok((Kind::of_mode(stat.st_mode), Some(Meta::of(&stat)))),
        Ok(None) => Ok((Kind::Absent, None)),
        Err(err) => Err(ProviderError::io(entry.path(), err)),
    }
}

/// [`inspect`] of a located path; absent without a system call when its parent is missing.
pub fn inspect_located(
    located: &crate::resource::provider::Located,
) -> Result<(Kind, Option<Meta>), ProviderError> {
    match &located.entry {
        Some(entry) => inspect(entry),
        None => Ok((Kind::Absent, None)),
    }
}

/// `"0644"` for a metadata's permission bits.
pub fn mode_string(meta: &Meta) -> String {
    format!("{:04o}", meta.mode)
}

/// Parses a normalized mode string (`"0644"`).
pub fn parse_mode(text: &str) -> Result<u32, ProviderError> {
    u32::from_str_radix(text, 8)
        .map_err(|_| ProviderError::failed(format!("`{text}` is not an octal mode")))
}

/// Adds `mode`, `owner` and `group` to an observed state for the ones the resource manages.
pub fn observe_ownership(
    ctx: &ProviderCtx<'_>,
    res: &Resource,
    meta: &Meta,
    state: &mut crate::resource::change::State,
) -> Result<(), ProviderError> {
    if res.attrs.contains_key("mode") {
        state.insert("mode".into(), Value::String(mode_string(meta)));
    }
    let wants_owner = res.attrs.contains_key("owner");
    let wants_group = res.attrs.contains_key("group");
    if wants_owner || wants_group {
        let accounts = Accounts::read(ctx.root)
            .map_err(|err| ProviderError::io(ctx.root.join("etc/passwd"), err))?;
        if wants_owner {
            let name = accounts
                .user_name(meta.uid)
                .map_or_else(|| meta.uid.to_string(), String::from);
            state.insert("owner".into(), Value::String(name));
        }
        if wants_group {
            let name = accounts
                .group_name(meta.gid)
                .map_or_else(|| meta.gid.to_string(), String::from);
            state.insert("group".into(), Value::String(name));
        }
    }
    Ok(())
}

/// What applying a path resource (`file`, `directory`, `symlink`) would refuse for sure:
/// creating it when its parent directory is missing and no resource declares the parent,
/// or giving it an owner or group that neither the root's account files nor the node's
/// documents have. Nothing for a resource that should be absent.
pub fn path_refusal(
    ctx: &ProviderCtx<'_>,
    res: &Resource,
    observed: &crate::resource::change::State,
    declared: &Declared,
) -> Result<Option<String>, ProviderError> {
    if res.attr_str("ensure") == Some("absent") {
        return Ok(None);
    }
    let absent = observed.get("ensure").and_then(Value::as_str) == Some("absent");
    if absent {
        let located = ctx.locate(&res.id.name)?;
        let parent = Path::new(&res.id.name)
            .parent()
            .map(|parent| parent.to_string_lossy().into_owned());
        if located.entry.is_none()
            && let Some(parent) = parent
            && !declared.paths.contains(parent.trim_end_matches('/'))
        {
            return Ok(Some(format!(
                "its parent directory {parent} does not exist and no resource declares it"
            )));
        }
    }
    let owner = res.attr_str("owner");
    let group = res.attr_str("group");
    if owner.is_none() && group.is_none() {
        return Ok(None);
    }
    let accounts = Accounts::read(ctx.root)
        .map_err(|err| ProviderError::io(ctx.root.join("etc/passwd"), err))?;
    let missing = owner
        .and_then(|name| accounts.missing_user(name, &declared.users, ctx.root))
        .or_else(|| {
            group.and_then(|name| accounts.missing_group(name, &declared.groups, ctx.root))
        });
    Ok(missing)
}

/// The uid and gid a resource asks for, looked up in the root's accounts.
pub fn desired_ids(
    ctx: &ProviderCtx<'_>,
    res: &Resource,
) -> Result<(Option<u32>, Option<u32>), ProviderError> {
    let owner = res.attr_str("owner");
    let group = res.attr_str("group");
    if owner.is_none() && group.is_none() {
        return Ok((None, None));
    }
    let accounts = Accounts::read(ctx.root)
        .map_err(|err| ProviderError::io(ctx.root.join("etc/passwd"), err))?;
    // A name from the root's account files, or a numeric id as given.
    let id = |name: &str, found: Option<u32>, what: &str, file: &str| {
        found.or_else(|| name.parse().ok()).ok_or_else(|| {
            ProviderError::failed(format!(
                "no {what} `{name}` in {}",
                ctx.root.join(file).display()
            ))
        })
    };
    let uid = owner
        .map(|name| {
            id(
                name,
                accounts.user(name).map(|u| u.uid),
                "user",
                "etc/passwd",
            )
        })
        .transpose()?;
    let gid = group
        .map(|name| {
            id(
                name,
                accounts.group(name).map(|g| g.gid),
                "group",
                "etc/group",
            )
        })
        .transpose()?;
    Ok((uid, gid))
}

/// Brings mode and ownership of an existing entry in line; true when anything changed.
pub fn converge_ownership(
    ctx: &ProviderCtx<'_>,
    res: &Resource,
    entry: &Entry,
) -> Result<bool, ProviderError> {
    let path = entry.path();
    let meta = match inspect(entry)? {
        (_, Some(meta)) => meta,
        (_, None) => {
            return Err(ProviderError::io(path, std::io::ErrorKind::NotFound.into()));
        }
    };
    let mut changed = false;
    if let Some(mode) = res.attr_str("mode") {
        let mode = parse_mode(mode)?;
        if meta.mode != mode {
            entry
                .chmod(mode)
                .map_err(|err| ProviderError::io(path, err))?;
            changed = true;
        }
    }
    let (uid, gid) = desired_ids(ctx, res)?;
    let uid = uid.filter(|&uid| uid != meta.uid);
    let gid = gid.filter(|&gid| gid != meta.gid);
    if uid.is_some() || gid.is_some() {
        entry
            .chown(uid, gid)
            .map_err(|err| ProviderError::io(path, err))?;
        changed = true;
    }
    Ok(changed)
}

/// Converges `ensure: absent`: removes what is at `entry` when it is one of `removable`
/// (a directory with everything in it), refuses anything else, does nothing when absent.
pub fn remove(
    ctx: &ProviderCtx<'_>,
    entry: &Entry,
    kind: Kind,
    removable: &[Kind],
    noun: &str,
) -> Result<Applied, ProviderError> {
    let path = entry.path();
    if kind == Kind::Absent {
        return Ok(Applied::AlreadyConverged);
    }
    if !removable.contains(&kind) {
        return Err(ProviderError::Refused {
            message: format!(
                "{} is a {}, not a {noun}; not removing it",
                path.display(),
                kind.ensure()
            ),
        });
    }
    let removed = if kind == Kind::Directory {
        entry.remove_dir_all()
    } else {
        entry.remove_file()
    };
    ctx.replaced(path);
    removed.map_err(|err| ProviderError::io(path, err))?;
    entry
        .dir()
        .sync()
        .map_err(|err| ProviderError::io(entry.dir().path(), err))?;
    Ok(Applied::Converged { output: None })
}

/// Keeps a copy of content about to be replaced, under `<state>/backups/<run>/<path>`.
pub fn backup(
    ctx: &ProviderCtx<'_>,
    resource_path: &str,
    bytes: &[u8],
) -> Result<(), ProviderError> {
    let target = ctx
        .state_dir
        .join("backups")
        .join(ctx.run_id)
        .join(resource_path.trim_start_matches('/'));
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|err| ProviderError::io(parent, err))?;
    }
    let entry = Entry::unconfined(&target).map_err(|err| ProviderError::io(&target, err))?;
    crate::resource::durability::atomic_write(&entry, bytes, 0o600, (None, None))
}
