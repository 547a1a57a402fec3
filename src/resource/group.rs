//! `group`: a local group, managed with the system's own tools.
//!
//! The provider reads the root's `/etc/group` ([`crate::resource::accounts::Accounts`]) and
//! converges with `groupadd`, `groupmod` and `groupdel` (with `--prefix ROOT` under
//! `--root`). Observed state has `ensure` and, when the desired resource sets it, `gid`.
//! `system` only matters when the group is created, so it is never compared.

use crate::model::{Resource, Value};
use crate::resource::change::{Action, State};
use crate::resource::command::{Run, argv};
use crate::resource::provider::{Applied, Provider, ProviderCtx, ProviderError};
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
        let output = Run::new(&command).check()?;
        let after = self.read(ctx, res)?;
        check_converged(res, &command, &self.diff(res, &after))?;
        Ok(Applied::Converged {
            output: Some(output),
        })
    }
}
