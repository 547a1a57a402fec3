//! `symlink`: a symbolic link and where it points.

use crate::model::Value;
use crate::resource::change::{Change, State};
use crate::resource::fsutil::{self, Kind};
use crate::resource::provider::{Applied, Declared, Provider, ProviderCtx, ProviderError};

use crate::model::Resource;
use crate::resource::{
    AttrRule, AttrType, Candidates, ENSURE_PRESENT_ABSENT, ImplicitDep, NameRule, ResourceType,
    TypeSchema, attr,
};

pub(crate) struct Symlink;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a symbolic link; NAME is the link's absolute path",
    name_rule: NameRule::AbsPath,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        attr("target", AttrType::String, "what the link points to").with_rule(AttrRule::NonEmpty),
    ],
    exclusive: &[],
    required_when_present: &["target"],
    present_only: &["target"],
    path_attr: None,
};

impl ResourceType for Symlink {
    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn diff(&self, res: &Resource, observed: &State) -> Change {
        let mut change = crate::resource::diff_attrs(res, observed, &[]);
        crate::resource::replace_if_in_the_way(res, observed, &mut change);
        change
    }

    fn kind(&self) -> &'static str {
        "symlink"
    }

    fn managed_path<'r>(&self, res: &'r Resource) -> Option<std::borrow::Cow<'r, str>> {
        crate::resource::present_path(res)
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        vec![ImplicitDep {
            candidates: Candidates::Ancestors {
                kind: "directory",
                path: res.id.name.clone(),
            },
            reason: "inside directory",
        }]
    }
}

impl Provider for Symlink {
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
        let (kind, _) = fsutil::inspect_located(&located)?;
        let mut state = State::new();
        let ensure = match kind {
            Kind::Symlink => "present",
            other => other.ensure(),
        };
        state.insert("ensure".into(), Value::String(ensure.into()));
        if let (Kind::Symlink, Some(entry)) = (kind, &located.entry) {
            let target = entry
                .read_link()
                .map_err(|err| ProviderError::io(entry.path(), err))?;
            state.insert(
                "target".into(),
                Value::String(target.to_string_lossy().into_owned()),
            );
        }
        Ok(state)
    }

    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        let entry = ctx.entry(&res.id.name)?;
        let path = entry.path();
        let (kind, _) = fsutil::inspect(&entry)?;
        if res.attr_str("ensure") == Some("absent") {
            return fsutil::remove(ctx, &entry, kind, &[Kind::Symlink], "symlink");
        }
        let target = res.attr_str("target").unwrap_or_default();
        if kind == Kind::Symlink {
            let current = entry
                .read_link()
                .map_err(|err| ProviderError::io(path, err))?;
            if current == std::path::Path::new(target) {
                return Ok(Applied::AlreadyConverged);
            }
        }
        if kind == Kind::File {
            // A file replaced by a link is kept, as `file` keeps replaced content.
            let old = entry.read().map_err(|err| ProviderError::io(path, err))?;
            fsutil::backup(ctx, &res.id.name, &old)?;
        }
        if kind == Kind::Directory {
            entry.remove_dir().map_err(|_| ProviderError::Refused {
                message: format!(
                    "a directory is in the way at {}; remove it by hand",
                    path.display()
                ),
            })?;
        }
        // A link made beside the target and renamed over it replaces any old link atomically.
        let temp = entry.sibling(format!(".steward-link-{}-{}", std::process::id(), unique()));
        temp.symlink(std::path::Path::new(target))
            .map_err(|err| match err.kind() {
                // The parent was removed since it was opened.
                std::io::ErrorKind::NotFound => ProviderError::missing_parent(entry.dir().path()),
                _ => ProviderError::io(temp.path(), err),
            })?;
        if let Err(err) = temp.rename_to(&entry) {
            let _ = temp.remove_file();
            return Err(ProviderError::io(path, err));
        }
        // Paths through the new link can lead elsewhere.
        ctx.replaced(path);
        ctx.sync_dir(entry.dir())?;
        Ok(Applied::Converged { output: None })
    }
}

/// A process-unique counter for temporary names.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
