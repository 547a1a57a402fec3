//! `file`: a regular file's content, mode and ownership.

use crate::model::{Resource, Value};
use crate::resource::change::{Action, Change, Content, ContentChange, State};
use crate::resource::fsutil::{self, Kind};
use crate::resource::provider::{Applied, Declared, Provider, ProviderCtx, ProviderError};
use crate::resource::{
    AttrType, ENSURE_PRESENT_ABSENT, GROUP, ImplicitDep, MODE, NameRule, OWNER, ResourceType,
    TypeSchema, attr, diff_attrs, path_deps,
};

pub(crate) struct File;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a regular file; NAME is its absolute path",
    name_rule: NameRule::AbsPath,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        attr(
            "content",
            AttrType::String,
            "the file's exact content (a template)",
        ),
        attr(
            "source",
            AttrType::ProjectPath,
            "copy this file from the project",
        ),
        attr(
            "template",
            AttrType::ProjectPath,
            "render this minijinja template from the project",
        ),
        MODE,
        OWNER,
        GROUP,
        attr(
            "backup",
            AttrType::Bool,
            "keep replaced content under the state directory (default true)",
        ),
    ],
    exclusive: &[&["content", "source", "template"]],
    required_when_present: &[],
    present_only: &["content", "source", "template", "mode", "owner", "group"],
    path_attr: None,
};

impl ResourceType for File {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn has_project_content(&self) -> bool {
        true
    }

    fn managed_path<'r>(&self, res: &'r Resource) -> Option<std::borrow::Cow<'r, str>> {
        crate::resource::present_path(res)
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        path_deps(res, &res.id.name)
    }

    fn diff(&self, res: &Resource, observed: &State) -> Change {
        // `content` is in NOT_STATE: the attributes' diff never looks at it.
        let observed_content = observed.get("content");
        let mut change = diff_attrs(res, observed, NOT_STATE);
        if res.attr_str("ensure") == Some("absent") {
            if change.action == Action::Delete
                && let Some(before) = observed_content
            {
                change.content = Some(ContentChange {
                    before: Some(content_of(before)),
                    after: None,
                    sensitive: false,
                });
            }
            return change;
        }
        crate::resource::replace_if_in_the_way(res, observed, &mut change);
        if let Some(desired) = res.attrs.get("content")
            && observed_content != Some(&desired.value)
        {
            let after = match &desired.value {
                Value::String(_) => Content::Desired,
                other => content_of(other),
            };
            change.content = Some(ContentChange {
                before: observed_content.map(content_of),
                after: Some(after),
                sensitive: desired.sensitive,
            });
            if change.action == Action::NoOp {
                change.action = Action::Update;
            }
        }
        change
    }

    fn provider(&self) -> &dyn Provider {
        self
    }
}

/// Desired attributes that are not observable state.
const NOT_STATE: &[&str] = &["content", "source", "template", "backup"];

/// Content as a diff shows it.
fn content_of(value: &Value) -> Content {
    match value {
        Value::String(text) => Content::Text(text.clone()),
        Value::Bytes(bytes) => Content::Binary {
            len: bytes.len(),
            sha256: sha256(bytes),
        },
        other => Content::Text(other.to_string()),
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn desired_bytes(res: &Resource) -> Option<&[u8]> {
    match res.attr("content")? {
        Value::String(text) => Some(text.as_bytes()),
        Value::Bytes(bytes) => Some(bytes),
        _ => None,
    }
}

impl Provider for File {
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
        // Apply would refuse to replace a directory that holds anything: say so in the plan
        // instead of promising a replacement.
        let wanted = res.attr_str("ensure") != Some("absent");
        if let (true, Kind::Directory, Some(entry)) = (wanted, kind, &located.entry)
            && entry
                .open_dir()
                .and_then(|dir| dir.list())
                .is_ok_and(|names| !names.is_empty())
        {
            return Err(ProviderError::Refused {
                message: format!(
                    "a directory that is not empty is in the way at {}; remove it by hand or manage it as a `directory`",
                    located.path.display()
                ),
            });
        }
        let mut state = State::new();
        let ensure = match kind {
            Kind::File => "present",
            other => other.ensure(),
        };
        state.insert("ensure".into(), Value::String(ensure.into()));
        if let (Kind::File, Some(meta), Some(entry)) = (kind, meta, &located.entry) {
            if res.attrs.contains_key("content") || res.attr_str("ensure") == Some("absent") {
                let bytes = entry
                    .read()
                    .map_err(|err| ProviderError::io(entry.path(), err))?;
                let value = match String::from_utf8(bytes) {
                    Ok(text) => Value::String(text),
                    Err(err) => Value::Bytes(err.into_bytes()),
                };
                state.insert("content".into(), value);
            }
            fsutil::observe_ownership(ctx, res, &meta, &mut state)?;
        }
        Ok(state)
    }

    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        let entry = ctx.entry(&res.id.name)?;
        let path = entry.path();
        // Planned absent: no second look; the staged rename refuses to replace anything
        // that appeared since, and the executor then applies the file again from the top.
        let create = ctx.planned_absent() && res.attr_str("ensure") != Some("absent");
        let (kind, meta) = if create {
            (Kind::Absent, None)
        } else {
            fsutil::inspect(&entry)?
        };
        if res.attr_str("ensure") == Some("absent") {
            return fsutil::remove(ctx, &entry, kind, &[Kind::File, Kind::Symlink], "file");
        }
        if kind == Kind::Directory {
            // Only an empty directory is replaced; anything else would lose data.
            entry.remove_dir().map_err(|_| ProviderError::Refused {
                message: format!("a directory is in the way at {}; remove it by hand or manage it as a `directory`", path.display()),
            })?;
            ctx.replaced(path);
        } else if kind == Kind::Other {
            return Err(ProviderError::Refused {
                message: format!("{} is a special file; not replacing it", path.display()),
            });
        }
        let desired = desired_bytes(res);
        let existing = match kind {
            Kind::File => Some(entry.read().map_err(|err| ProviderError::io(path, err))?),
            _ => None,
        };
        let needs_write = match (&existing, desired) {
            (None, _) => true,
            (Some(old), Some(new)) => old.as_slice() != new,
            (Some(_), None) => false,
        };
        if !needs_write {
            let changed = fsutil::converge_ownership(ctx, res, &entry)?;
            return Ok(if changed {
                Applied::Converged { output: None }
            } else {
                Applied::AlreadyConverged
            });
        }
        if let Some(old) = &existing
            && res.attr("backup").and_then(Value::as_bool) != Some(false)
        {
            fsutil::backup(ctx, &res.id.name, old)?;
        }
        let file_meta = meta.filter(|_| kind == Kind::File);
        let mode = match (res.attr_str("mode"), file_meta) {
            (Some(mode), _) => fsutil::parse_mode(mode)?,
            (None, Some(meta)) => meta.mode,
            (None, None) => 0o644,
        };
        // Undeclared ownership stays as it was, like an undeclared mode.
        let (uid, gid) = fsutil::desired_ids(ctx, res)?;
        let ids = (
            uid.or(file_meta.map(|meta| meta.uid)),
            gid.or(file_meta.map(|meta| meta.gid)),
        );
        let bytes = desired.or(existing.as_deref()).unwrap_or_default();
        if create {
            ctx.create_durably(&entry, bytes, mode, ids)?;
        } else {
            ctx.write_durably(&entry, bytes, mode, ids)?;
        }
        Ok(Applied::Converged { output: None })
    }
}
