//! `directory`: a directory's existence, mode and ownership, optionally purged.

use crate::model::Value;
use crate::resource::change::{Action, AttrChange, Change, State};
use crate::resource::fsutil::{self, Kind};
use crate::resource::provider::{Applied, Provider, ProviderCtx, ProviderError};

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
    fn read(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<State, ProviderError> {
        let located = ctx.locate(&res.id.name)?;
        let (kind, meta) = fsutil::inspect_located(&located)?;
        let path = located.path;
        let mut state = State::new();
        let ensure = match kind {
            Kind::Directory => "present",
            other => other.ensure(),
        };
        state.insert("ensure".into(), Value::String(ensure.into()));
        if let (Kind::Directory, Some(meta)) = (kind, meta) {
            fsutil::observe_ownership(ctx, res, &meta, &mut state)?;
            if res.attr("purge").and_then(Value::as_bool) == Some(true) {
                let unmanaged = unmanaged_entries(ctx, &res.id.name, &path)?;
                state.insert(
                    "purge".into(),
                    Value::List(unmanaged.into_iter().map(Value::String).collect()),
                );
            }
        }
        Ok(state)
    }

    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        let path = ctx.resolve(&res.id.name)?;
        let (kind, _) = fsutil::inspect(&path)?;
        let parent = path.parent().unwrap_or(ctx.root).to_path_buf();
        if res.attr_str("ensure") == Some("absent") {
            return fsutil::remove(&path, kind, &[Kind::Directory], "directory");
        }
        let mut changed = false;
        match kind {
            Kind::Directory => {}
            Kind::Absent => {
                // A missing parent makes `mkdir` fail: `create` reports it then, instead of a
                // `stat` of the parent before every directory created.
                create(ctx, res, &path)?;
                ctx.sync_dir(&parent)?;
                changed = true;
            }
            Kind::Symlink => {
                std::fs::remove_file(&path).map_err(|err| ProviderError::io(&path, err))?;
                create(ctx, res, &path)?;
                ctx.sync_dir(&parent)?;
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
        changed |= fsutil::converge_ownership(ctx, res, &path)?;
        if res.attr("purge").and_then(Value::as_bool) == Some(true) {
            for name in unmanaged_entries(ctx, &res.id.name, &path)? {
                let entry = path.join(&name);
                let (kind, _) = fsutil::inspect(&entry)?;
                let removed = if kind == Kind::Directory {
                    std::fs::remove_dir_all(&entry)
                } else {
                    std::fs::remove_file(&entry)
                };
                removed.map_err(|err| ProviderError::io(&entry, err))?;
                changed = true;
            }
            if changed {
                fsutil::fsync_dir(&path)?;
            }
        }
        Ok(if changed {
            Applied::Converged { output: None }
        } else {
            Applied::AlreadyConverged
        })
    }
}

/// Creates the directory with its desired mode (default 0755) and owner.
fn create(
    ctx: &ProviderCtx<'_>,
    res: &Resource,
    path: &std::path::Path,
) -> Result<(), ProviderError> {
    std::fs::create_dir(path).map_err(|err| match (err.kind(), path.parent()) {
        (std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory, Some(parent))
            if !parent.is_dir() =>
        {
            fsutil::missing_parent(parent)
        }
        _ => ProviderError::io(path, err),
    })?;
    let mode = res
        .attr_str("mode")
        .map(fsutil::parse_mode)
        .transpose()?
        .unwrap_or(0o755);
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(|err| ProviderError::io(path, err))?;
    // Created just now: no temporary file of a killed run to sweep before writing in it.
    ctx.durability.created(path);
    ctx.created_dir(path);
    // The mode is set; only a declared owner or group is left to converge.
    if res.attrs.contains_key("owner") || res.attrs.contains_key("group") {
        fsutil::converge_ownership(ctx, res, path)?;
    }
    Ok(())
}

/// Names of entries in the directory that no resource on the node manages, sorted.
fn unmanaged_entries(
    ctx: &ProviderCtx<'_>,
    name: &str,
    path: &std::path::Path,
) -> Result<Vec<String>, ProviderError> {
    let mut res = Vec::new();
    let entries = std::fs::read_dir(path).map_err(|err| ProviderError::io(path, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| ProviderError::io(path, err))?;
        let entry_name = entry.file_name().to_string_lossy().into_owned();
        let managed = format!("{}/{entry_name}", name.trim_end_matches('/'));
        if !ctx.managed_paths.contains(&managed) {
            res.push(entry_name);
        }
    }
    res.sort();
    Ok(res)
}
