//! `group`: a local group, managed with the system's own tools.
//!
//! The provider reads the root's `/etc/group` ([`crate::resource::accounts::Accounts`]) and
//! converges with `groupadd`, `groupmod` and `groupdel` (with `--prefix ROOT` under
//! `--root`). Observed state has `ensure` and, when the desired resource sets it, `gid`.
//! `system` only matters when the group is created, so it is never compared.

use crate::model::{Resource, Value};
use crate::resource::change::{Action, State};
use crate::resource::command::{Run, argv};
use crate::resource::provider::{Account, Applied, Provider, ProviderCtx, ProviderError};
use crate::resource::user::{check_converged, read_accounts, shadow_prefix};
use crate::resource::{AttrType, ENSURE_PRESENT_ABSENT, NameRule, ResourceType, TypeSchema, attr};

pub(crate) struct Group;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a local group; NAME is the group name",
    name_rule: NameRule::Account,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        attr(
            "gid",
            AttrType::Int {
                min: 0,
                max: 4_294_967_294,
            },
            "numeric group id",
        ),
        attr("system", AttrType::Bool, "create as a system group"),
    ],
    exclusive: &[],
    required_when_present: &[],
    present_only: &["gid", "system"],
    path_attr: None,
};

impl ResourceType for Group {
    fn provider(&self) -> &dyn Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "group"
    }

    fn declared_accounts(&self, res: &Resource) -> Vec<Account> {
        if res.attr_str("ensure") == Some("absent") {
            return Vec::new();
        }
        vec![Account::Group(res.id.name.clone())]
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }
}

impl Provider for Group {
    fn read(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<State, ProviderError> {
        let accounts = read_accounts(ctx)?;
        let mut state = State::new();
        let Some(group) = accounts.group(&res.id.name) else {
            state.insert("ensure".into(), Value::String("absent".into()));
            // Every desired attribute is listed without a value, so a create shows them all.
            for name in res.attrs.keys().filter(|name| *name != "ensure") {
                state.insert(name.clone(), Value::Null);
            }
            return Ok(state);
        };
        state.insert("ensure".into(), Value::String("present".into()));
        // `system` is a creation-time flag and never compared.
        if res.attrs.contains_key("gid") {
            state.insert("gid".into(), Value::Int(group.gid.into()));
        }
        Ok(state)
    }

    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        let observed = self.read(ctx, res)?;
        let change = self.diff(res, &observed);
        let mut command = match change.action {
            Action::NoOp => return Ok(Applied::AlreadyConverged),
            Action::Create => argv(&["groupadd"]),
            Action::Update => argv(&["groupmod"]),
            Action::Delete => argv(&["groupdel"]),
            Action::Replace | Action::Run => {
                return Err(ProviderError::failed(format!(
                    "`{}`: a group has no `{}` change",
                    res.id,
                    change.action.as_str()
                )));
            }
        };
        command.extend(shadow_prefix(ctx)?);
        if change.action == Action::Create
            && res.attr("system").and_then(Value::as_bool) == Some(true)
        {
            command.push("-r".into());
        }
        // `gid` is the only attribute groupadd and groupmod set; a delete sets nothing.
        if matches!(change.action, Action::Create | Action::Update)
            && let Some(gid) = res.attr("gid").and_then(Value::as_int)
        {
            command.extend(["-g".to_string(), gid.to_string()]);
        }
        command.extend(["--".to_string(), res.id.name.clone()]);
        let output = ctx.runner.check(&Run::new(&command))?;
        let after = self.read(ctx, res)?;
        check_converged(res, &command, &self.diff(res, &after))?;
        Ok(Applied::Converged {
            output: Some(output),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::resource::command::scripted::ScriptedRunner;
    use crate::resource::provider::testing::{TestNode, resource};

    fn root_with_group(group: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/group"), group).unwrap();
        dir
    }

    fn writes_group(root: &Path, group: &'static str) -> impl Fn() + Send + Sync + use<> {
        let path = root.join("etc/group");
        move || std::fs::write(&path, group).unwrap()
    }

    fn ops(attrs: &[(&str, Value)]) -> Resource {
        resource("group", "ops", attrs)
    }

    #[test]
    fn apply_creates_a_system_group_with_its_gid() {
        let dir = root_with_group("root:x:0:\n");
        let prefix = dir.path().to_str().unwrap();
        let desired = ops(&[
            ("ensure", Value::String("present".into())),
            ("gid", Value::Int(500)),
            ("system", Value::Bool(true)),
        ]);
        let runner = ScriptedRunner::new()
            .answer(
                &[
                    "groupadd", "--prefix", prefix, "-r", "-g", "500", "--", "ops",
                ],
                0,
                "",
            )
            .then(writes_group(dir.path(), "root:x:0:\nops:x:500:\n"));
        let node = TestNode::at(dir.path());
        let applied = Group.apply(&node.ctx(&runner), &desired).unwrap();
        assert!(matches!(applied, Applied::Converged { output: Some(_) }));
        runner.finished();
    }

    #[test]
    fn apply_changes_the_gid_with_groupmod_and_checks_it() {
        let dir = root_with_group("ops:x:500:\n");
        let prefix = dir.path().to_str().unwrap();
        let desired = ops(&[("gid", Value::Int(501))]);
        let groupmod = ["groupmod", "--prefix", prefix, "-g", "501", "--", "ops"];
        let node = TestNode::at(dir.path());
        // groupmod said yes but the group file did not change.
        let runner = ScriptedRunner::new().answer(&groupmod, 0, "");
        let err = Group.apply(&node.ctx(&runner), &desired).unwrap_err();
        assert!(
            err.to_string().contains("still needs update: gid is 500"),
            "{err}"
        );
        runner.finished();
        let runner = ScriptedRunner::new()
            .answer(&groupmod, 0, "")
            .then(writes_group(dir.path(), "ops:x:501:\n"));
        Group.apply(&node.ctx(&runner), &desired).unwrap();
        runner.finished();
    }

    #[test]
    fn apply_removes_with_groupdel() {
        let dir = root_with_group("ops:x:500:\n");
        let prefix = dir.path().to_str().unwrap();
        let desired = ops(&[("ensure", Value::String("absent".into()))]);
        let runner = ScriptedRunner::new()
            .answer(&["groupdel", "--prefix", prefix, "--", "ops"], 0, "")
            .then(writes_group(dir.path(), ""));
        let node = TestNode::at(dir.path());
        Group.apply(&node.ctx(&runner), &desired).unwrap();
        runner.finished();
    }
}
