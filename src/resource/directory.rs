//! `directory`: a directory's existence, mode and ownership, optionally purged.

use crate::model::Value;
use crate::resource::beneath::{Dir, Entry};
use crate::resource::change::{Action, AttrChange, Change, State};
use crate::resource::fsutil::{self, Kind};
use crate::resource::provider::{Applied, Declared, Provider, ProviderCtx, ProviderError};

use crate::diag::Diagnostic;
use crate::model::Resource;
use crate::resource::{
    AttrType, Candidate, ENSURE_PRESENT_ABSENT, GROUP, ImplicitDep, MODE, NameRule, OWNER,
    ResourceType, TypeSchema, attr, check_schema_rules, path_deps,
};

pub(crate) struct Directory;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a directory; NAME is its absolute path",
    name_rule: NameRule::AbsPath,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        MODE,
        OWNER,
        GROUP,
        attr(
            "purge",
            AttrType::Bool,
            "remove entries that no resource manages",
        ),
    ],
    exclusive: &[],
    required_when_present: &[],
    present_only: &["mode", "owner", "group", "purge"],
    path_attr: None,
};

impl ResourceType for Directory {
    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn diff(&self, res: &Resource, observed: &State) -> Change {
        let mut change = crate::resource::diff_attrs(res, observed, &["purge"]);
        crate::resource::replace_if_in_the_way(res, observed, &mut change);
        if res.attr_str("ensure") != Some("absent")
            && let Some(Value::List(unmanaged)) = observed.get("purge")
            && !unmanaged.is_empty()
        {
            change.attrs.push(AttrChange {
                name: "purge".into(),
                before: Some(Value::List(unmanaged.clone())),
                after: Some(Value::List(Vec::new())),
                sensitive: false,
            });
            if change.action == Action::NoOp {
                change.action = Action::Update;
            }
        }
        change
    }

    fn kind(&self) -> &'static str {
        "directory"
    }

    fn managed_path<'r>(&self, res: &'r Resource) -> Option<std::borrow::Cow<'r, str>> {
        crate::resource::present_path(res)
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn validate(&self, res: &Candidate<'_>, acc: &mut Vec<Diagnostic>) {
        check_schema_rules(res, &SCHEMA, acc);
        if res.id.name == "/" && res.str("ensure") == Some("absent") {
            acc.push(Diagnostic::error(
                "schema::refused",
                res.span,
                "refusing to remove `/`",
            ));
        }
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        path_deps(res, &res.id.name)
    }
}

impl Provider for Directory {
    fn refusal(
        &self,
        ctx: &ProviderCtx<'_>,
        res: &Resource,
        observed: &State,
        declared: &Declared,
    ) -> Result<Option<String>, ProviderError> {
        fsutil::path_refusal(ctx, res, observed, declared)
    }

    fn read(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<State, ProviderError> {
        let located = ctx.locate(&res.id.name)?;
        let (kind, meta) = fsutil::inspect_located(&located)?;
        let mut state = State::new();
        let ensure = match kind {
            Kind::Directory => "present",
            other => other.ensure(),
        };
        state.insert("ensure".into(), Value::String(ensure.into()));
        if let (Kind::Directory, Some(meta), Some(entry)) = (kind, meta, &located.entry) {
            fsutil::observe_ownership(ctx, res, &meta, &mut state)?;
            if res.attr("purge").and_then(Value::as_bool) == Some(true) {
                let unmanaged = unmanaged_entries(ctx, &res.id.name, &open(entry)?)?;
                state.insert(
                    "purge".into(),
                    Value::List(
                        unmanaged
                            .into_iter()
                            .map(|name| Value::String(name.to_string_lossy().into_owned()))
                            .collect(),
                    ),
                );
            }
        }
        Ok(state)
    }

    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        let entry = ctx.entry(&res.id.name)?;
        let path = entry.path();
        let (kind, _) = fsutil::inspect(&entry)?;
        if res.attr_str("ensure") == Some("absent") {
            return fsutil::remove(ctx, &entry, kind, &[Kind::Directory], "directory");
        }
        let mut changed = false;
        match kind {
            Kind::Directory => {}
            Kind::Absent => {
                create(ctx, res, &entry)?;
                ctx.sync_dir(entry.dir())?;
                changed = true;
            }
            Kind::Symlink => {
                entry
                    .remove_file()
                    .map_err(|err| ProviderError::io(path, err))?;
                // Directories opened through the link are elsewhere.
                ctx.replaced(path);
                create(ctx, res, &entry)?;
                ctx.sync_dir(entry.dir())?;
                changed = true;
            }
            other => {
                return Err(ProviderError::Refused {
                    message: format!(
                        "a {} is in the way at {}; remove it by hand or manage it as a `file`",
                        other.ensure(),
                        path.display()
                    ),
                });
            }
        }
        changed |= fsutil::converge_ownership(ctx, res, &entry)?;
        if res.attr("purge").and_then(Value::as_bool) == Some(true) {
            let dir = std::sync::Arc::new(open(&entry)?);
            let mut purged = false;
            for name in unmanaged_entries(ctx, &res.id.name, &dir)? {
                let inner = Entry::new(dir.clone(), name.clone(), path.join(&name));
                let (kind, _) = fsutil::inspect(&inner)?;
                let removed = if kind == Kind::Directory {
                    inner.remove_dir_all()
                } else {
                    inner.remove_file()
                };
                ctx.replaced(inner.path());
                removed.map_err(|err| ProviderError::io(inner.path(), err))?;
                purged = true;
            }
            if purged {
                dir.sync().map_err(|err| ProviderError::io(path, err))?;
            }
            changed |= purged;
        }
        Ok(if changed {
            Applied::Converged { output: None }
        } else {
            Applied::AlreadyConverged
        })
    }
}

/// The directory at `entry`, opened without following a symlink.
fn open(entry: &Entry) -> Result<Dir, ProviderError> {
    entry
        .open_dir()
        .map_err(|err| ProviderError::io(entry.path(), err))
}

/// Creates the directory with its desired mode (default 0755) and owner.
fn create(ctx: &ProviderCtx<'_>, res: &Resource, entry: &Entry) -> Result<(), ProviderError> {
    let path = entry.path();
    let mode = res
        .attr_str("mode")
        .map(fsutil::parse_mode)
        .transpose()?
        .unwrap_or(0o755);
    // Made with its final mode when the umask keeps every bit of it; otherwise private,
    // then given its mode.
    let exact = crate::resource::beneath::exact_at_creation(mode);
    entry
        .mkdir(if exact { mode } else { 0o700 })
        .map_err(|err| match err.kind() {
            // The parent was removed since it was opened.
            std::io::ErrorKind::NotFound => ProviderError::missing_parent(entry.dir().path()),
            _ => ProviderError::io(path, err),
        })?;
    if !exact {
        entry
            .chmod(mode)
            .map_err(|err| ProviderError::io(path, err))?;
    }
    // Created just now: no temporary file of a killed run to sweep before writing in it.
    ctx.durability.created(path);
    // The mode is set; only a declared owner or group is left to converge.
    if res.attrs.contains_key("owner") || res.attrs.contains_key("group") {
        fsutil::converge_ownership(ctx, res, entry)?;
    }
    Ok(())
}

/// Names of entries in the directory that no resource on the node manages, sorted.
fn unmanaged_entries(
    ctx: &ProviderCtx<'_>,
    name: &str,
    dir: &Dir,
) -> Result<Vec<std::ffi::OsString>, ProviderError> {
    let mut res = Vec::new();
    let entries = dir
        .list()
        .map_err(|err| ProviderError::io(dir.path(), err))?;
    for (entry_name, _) in entries {
        let managed = format!(
            "{}/{}",
            name.trim_end_matches('/'),
            entry_name.to_string_lossy()
        );
        if !ctx.managed_paths.contains(&managed) {
            res.push(entry_name);
        }
    }
    res.sort();
    Ok(res)
}
