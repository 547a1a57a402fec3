//! `user`: a local account, managed with the system's own tools.
//!
//! The provider reads the root's `/etc/passwd` and `/etc/group` ([`Accounts`], not NSS) and
//! converges with `useradd`, `usermod` and `userdel` (with `--prefix ROOT` under `--root`).
//! Observed state has `ensure` plus the attributes the desired resource sets: `uid`, `group`
//! (the primary group's name), `groups` (supplementary groups, sorted), `home`, `shell`,
//! `comment`. `system` only matters when the account is created, so it is never compared.
//! No home directory is created or removed: that is a `directory` resource's job.

use crate::model::{Resource, Value};
use crate::resource::accounts::Accounts;
use crate::resource::change::{Action, Change, State};
use crate::resource::command::{Run, argv};
use crate::resource::provider::{Account, Applied, Declared, Provider, ProviderCtx, ProviderError};
use crate::resource::{
    AttrType, Candidates, ENSURE_PRESENT_ABSENT, ImplicitDep, NameRule, ResourceType, TypeSchema,
    attr, diff_attrs,
};

pub(crate) struct User;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a local user account; NAME is the login name",
    name_rule: NameRule::Account,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        attr(
            "uid",
            AttrType::Int {
                min: 0,
                max: 4_294_967_294,
            },
            "numeric user id",
        ),
        attr("group", AttrType::String, "primary group name"),
        attr("groups", AttrType::StringList, "supplementary groups"),
        attr("home", AttrType::AbsPath, "home directory"),
        attr("shell", AttrType::AbsPath, "login shell"),
        attr("comment", AttrType::String, "the GECOS comment"),
        attr("system", AttrType::Bool, "create as a system account"),
    ],
    exclusive: &[],
    required_when_present: &[],
    present_only: &[
        "uid", "group", "groups", "home", "shell", "comment", "system",
    ],
    path_attr: None,
};

impl ResourceType for User {
    fn provider(&self) -> &dyn Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "user"
    }

    /// The user, and a group of its name when it names no primary group: `useradd` makes
    /// one where the system's `USERGROUPS_ENAB` says so, and the plan refuses only what
    /// would fail for sure.
    fn declared_accounts(&self, res: &Resource) -> Vec<Account> {
        if res.attr_str("ensure") == Some("absent") {
            return Vec::new();
        }
        let mut accounts = vec![Account::User(res.id.name.clone())];
        if res.attr("group").is_none() {
            accounts.push(Account::Group(res.id.name.clone()));
        }
        accounts
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        let mut groups: Vec<&str> = res.attr_str("group").into_iter().collect();
        if let Some(Value::List(items)) = res.attr("groups") {
            groups.extend(items.iter().filter_map(Value::as_str));
        }
        groups
            .into_iter()
            .map(|group| ImplicitDep {
                candidates: Candidates::one("group", group),
                reason: "member of group",
            })
            .collect()
    }

    /// The usual diff, with `groups` compared as sets: their order in the document and in
    /// `/etc/group` means nothing.
    fn diff(&self, res: &Resource, observed: &State) -> Change {
        let mut desired = res.clone();
        if let Some(attr) = desired.attrs.get_mut("groups") {
            attr.value = sorted_names(&attr.value);
        }
        let mut observed = observed.clone();
        if let Some(value) = observed.get_mut("groups") {
            *value = sorted_names(value);
        }
        diff_attrs(&desired, &observed, &["system"])
    }
}

impl Provider for User {
    fn read(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<State, ProviderError> {
        Ok(observe(&read_accounts(ctx)?, res))
    }

    /// A primary or supplementary group that neither the root nor the documents have.
    fn refusal(
        &self,
        ctx: &ProviderCtx<'_>,
        res: &Resource,
        _observed: &State,
        declared: &Declared,
    ) -> Result<Option<String>, ProviderError> {
        if res.attr_str("ensure") == Some("absent") {
            return Ok(None);
        }
        let mut groups: Vec<&str> = res.attr_str("group").into_iter().collect();
        if let Some(Value::List(items)) = res.attr("groups") {
            groups.extend(items.iter().filter_map(Value::as_str));
        }
        if groups.is_empty() {
            return Ok(None);
        }
        let accounts = read_accounts(ctx)?;
        Ok(groups
            .into_iter()
            .find_map(|group| accounts.missing_group(group, &declared.groups, ctx.root)))
    }

    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        let observed = self.read(ctx, res)?;
        let change = self.diff(res, &observed);
        let mut command = match change.action {
            Action::NoOp => return Ok(Applied::AlreadyConverged),
            Action::Create => argv(&["useradd"]),
            Action::Update => argv(&["usermod"]),
            Action::Delete => argv(&["userdel"]),
            Action::Replace | Action::Run => {
                return Err(ProviderError::failed(format!(
                    "`{}`: a user has no `{}` change",
                    res.id,
                    change.action.as_str()
                )));
            }
        };
        command.extend(shadow_prefix(ctx)?);
        match change.action {
            Action::Create => {
                // Never create a home directory, whatever login.defs says.
                command.push("-M".into());
                if res.attr("system").and_then(Value::as_bool) == Some(true) {
                    command.push("-r".into());
                }
                for (name, attr) in &res.attrs {
                    command.extend(user_option(name, &attr.value)?);
                }
            }
            Action::Update => {
                for attr_change in &change.attrs {
                    if let Some(value) = res.attr(&attr_change.name) {
                        command.extend(user_option(&attr_change.name, value)?);
                    }
                }
            }
            _ => {}
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

/// The root's accounts, as an IO error naming the root's `etc` when they cannot be read.
pub(crate) fn read_accounts(ctx: &ProviderCtx<'_>) -> Result<Accounts, ProviderError> {
    Accounts::read(ctx.root).map_err(|source| ProviderError::io(ctx.root.join("etc"), source))
}

/// `--prefix ROOT` for the shadow tools when not live: they then edit `ROOT/etc/*`.
pub(crate) fn shadow_prefix(ctx: &ProviderCtx<'_>) -> Result<Vec<String>, ProviderError> {
    if ctx.is_live() {
        return Ok(Vec::new());
    }
    let root = ctx.root.to_str().ok_or_else(|| ProviderError::Refused {
        message: format!("the root `{}` is not valid UTF-8", ctx.root.display()),
    })?;
    Ok(vec!["--prefix".into(), root.into()])
}

/// Fails when a command succeeded but the account still differs from the desired one.
pub(crate) fn check_converged(
    res: &Resource,
    command: &[String],
    left: &Change,
) -> Result<(), ProviderError> {
    if !left.is_change() {
        return Ok(());
    }
    let differing: Vec<String> = left
        .attrs
        .iter()
        .map(|a| {
            let observed = a.before.as_ref().map_or("nothing".into(), Value::to_string);
            format!("{} is {observed}", a.name)
        })
        .collect();
    Err(ProviderError::failed(format!(
        "`{}` succeeded but `{}` still needs {}: {}",
        command.join(" "),
        res.id,
        left.action.as_str(),
        differing.join(", ")
    )))
}

/// What the accounts say about the desired user: `ensure` and the attributes it sets.
fn observe(accounts: &Accounts, res: &Resource) -> State {
    let mut state = State::new();
    let Some(user) = accounts.user(&res.id.name) else {
        state.insert("ensure".into(), Value::String("absent".into()));
        // Every desired attribute is listed without a value, so a create shows them all.
        for name in res.attrs.keys().filter(|name| *name != "ensure") {
            state.insert(name.clone(), Value::Null);
        }
        return state;
    };
    state.insert("ensure".into(), Value::String("present".into()));
    for name in res.attrs.keys() {
        let value = match name.as_str() {
            "uid" => Value::Int(user.uid.into()),
            "group" => Value::String(
                accounts
                    .group_name(user.gid)
                    .map_or_else(|| user.gid.to_string(), String::from),
            ),
            "groups" => {
                let mut names: Vec<&str> = accounts
                    .groups
                    .iter()
                    .filter(|group| group.members.contains(&user.name))
                    .map(|group| group.name.as_str())
                    .collect();
                names.sort_unstable();
                names.dedup();
                Value::List(names.into_iter().map(|n| Value::String(n.into())).collect())
            }
            "home" => Value::String(user.home.clone()),
            "shell" => Value::String(user.shell.clone()),
            "comment" => Value::String(user.comment.clone()),
            // `ensure` is set above; `system` is a creation-time flag and never compared.
            _ => continue,
        };
        state.insert(name.clone(), value);
    }
    state
}

/// A list of names, sorted and without repeats; anything else unchanged.
fn sorted_names(value: &Value) -> Value {
    let Value::List(items) = value else {
        return value.clone();
    };
    let mut items = items.clone();
    items.sort_by_key(Value::to_string);
    items.dedup();
    Value::List(items)
}

/// The `useradd`/`usermod` option that sets one attribute; none for `ensure` and `system`.
fn user_option(name: &str, value: &Value) -> Result<Vec<String>, ProviderError> {
    let flag = match name {
        "uid" => "-u",
        "group" => "-g",
        "groups" => "-G",
        "home" => "-d",
        "shell" => "-s",
        "comment" => "-c",
        _ => return Ok(Vec::new()),
    };
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Int(number) => number.to_string(),
        Value::List(items) => {
            let mut names = Vec::new();
            for item in items {
                let Some(group) = item.as_str() else {
                    return Err(ProviderError::failed(format!(
                        "`{name}` must list group names, not {item}"
                    )));
                };
                // `-G` takes one comma-separated argument.
                if group.contains(',') {
                    return Err(ProviderError::Refused {
                        message: format!("the group name `{group}` contains a comma"),
                    });
                }
                names.push(group);
            }
            names.join(",")
        }
        other => {
            return Err(ProviderError::failed(format!(
                "`{name}` has an unexpected value {other}"
            )));
        }
    };
    Ok(vec![flag.to_string(), text])
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::resource::command::scripted::ScriptedRunner;
    use crate::resource::provider::testing::{TestNode, resource};

    /// A root whose account files say `passwd` and `group`.
    fn root_with(passwd: &str, group: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        write_accounts(dir.path(), passwd, group);
        dir
    }

    fn write_accounts(root: &Path, passwd: &str, group: &str) {
        std::fs::write(root.join("etc/passwd"), passwd).unwrap();
        std::fs::write(root.join("etc/group"), group).unwrap();
    }

    /// What a shadow tool would leave in the root's account files.
    fn writes(
        root: &Path,
        passwd: &'static str,
        group: &'static str,
    ) -> impl Fn() + Send + Sync + use<> {
        let root: PathBuf = root.to_path_buf();
        move || write_accounts(&root, passwd, group)
    }

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\n";
    const GROUP: &str = "root:x:0:\nadm:x:4:\n";

    fn alice(attrs: &[(&str, Value)]) -> Resource {
        resource("user", "alice", attrs)
    }

    #[test]
    fn apply_creates_with_useradd_under_the_root() {
        let dir = root_with(PASSWD, GROUP);
        let prefix = dir.path().to_str().unwrap();
        let desired = alice(&[
            ("ensure", Value::String("present".into())),
            ("uid", Value::Int(1001)),
            ("shell", Value::String("/bin/bash".into())),
            ("groups", Value::List(vec![Value::String("adm".into())])),
            ("system", Value::Bool(true)),
        ]);
        let runner = ScriptedRunner::new()
            .answer(
                &[
                    "useradd",
                    "--prefix",
                    prefix,
                    "-M",
                    "-r",
                    // One option per attribute, in the attributes' (sorted) order.
                    "-G",
                    "adm",
                    "-s",
                    "/bin/bash",
                    "-u",
                    "1001",
                    "--",
                    "alice",
                ],
                0,
                "",
            )
            .then(writes(
                dir.path(),
                "root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/bash\n",
                "root:x:0:\nadm:x:4:alice\n",
            ));
        let node = TestNode::at(dir.path());
        let applied = User.apply(&node.ctx(&runner), &desired).unwrap();
        assert!(matches!(applied, Applied::Converged { output: Some(_) }));
        runner.finished();
        // Converged now: nothing runs.
        let applied = User.apply(&node.ctx(&runner), &desired).unwrap();
        assert_eq!(applied, Applied::AlreadyConverged);
    }

    #[test]
    fn apply_updates_only_what_differs_with_usermod() {
        let dir = root_with(
            "alice:x:1001:1001::/home/alice:/bin/sh\n",
            "alice:x:1001:\nadm:x:4:alice\n",
        );
        let prefix = dir.path().to_str().unwrap();
        let desired = alice(&[
            ("uid", Value::Int(1001)),
            ("shell", Value::String("/bin/zsh".into())),
            ("groups", Value::List(vec![Value::String("adm".into())])),
        ]);
        let usermod = [
            "usermod", "--prefix", prefix, "-s", "/bin/zsh", "--", "alice",
        ];
        let runner = ScriptedRunner::new().answer(&usermod, 0, "").then(writes(
            dir.path(),
            "alice:x:1001:1001::/home/alice:/bin/zsh\n",
            "alice:x:1001:\nadm:x:4:alice\n",
        ));
        let node = TestNode::at(dir.path());
        User.apply(&node.ctx(&runner), &desired).unwrap();
        runner.finished();
        // A usermod that changes nothing is a failure, not a convergence.
        let desired = alice(&[("shell", Value::String("/bin/fish".into()))]);
        let usermod = [
            "usermod",
            "--prefix",
            prefix,
            "-s",
            "/bin/fish",
            "--",
            "alice",
        ];
        let runner = ScriptedRunner::new().answer(&usermod, 0, "");
        let err = User.apply(&node.ctx(&runner), &desired).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("succeeded but `user:alice` still needs update"),
            "{message}"
        );
        runner.finished();
    }

    #[test]
    fn apply_removes_with_userdel_and_reports_its_failure() {
        let dir = root_with("alice:x:1001:1001::/home/alice:/bin/sh\n", "");
        let prefix = dir.path().to_str().unwrap();
        let desired = alice(&[("ensure", Value::String("absent".into()))]);
        let userdel = ["userdel", "--prefix", prefix, "--", "alice"];
        let runner = ScriptedRunner::new().answer_with(
            &userdel,
            Some(8),
            "",
            "userdel: user alice is currently used by process 42\n",
        );
        let node = TestNode::at(dir.path());
        let err = User.apply(&node.ctx(&runner), &desired).unwrap_err();
        assert!(matches!(err, ProviderError::Command { .. }), "{err}");
        let runner = ScriptedRunner::new()
            .answer(&userdel, 0, "")
            .then(writes(dir.path(), "", ""));
        User.apply(&node.ctx(&runner), &desired).unwrap();
        runner.finished();
    }

    #[test]
    fn options() {
        let groups = Value::List(vec![Value::String("b".into()), Value::String("a".into())]);
        assert_eq!(user_option("groups", &groups).unwrap(), ["-G", "b,a"]);
        assert_eq!(
            user_option("uid", &Value::Int(1001)).unwrap(),
            ["-u", "1001"]
        );
        assert!(
            user_option("system", &Value::Bool(true))
                .unwrap()
                .is_empty()
        );
        let comma = Value::List(vec![Value::String("a,b".into())]);
        assert!(user_option("groups", &comma).is_err());
    }

    #[test]
    fn sorts_names() {
        let list = Value::List(vec![
            Value::String("b".into()),
            Value::String("a".into()),
            Value::String("b".into()),
        ]);
        assert_eq!(
            sorted_names(&list),
            Value::List(vec![Value::String("a".into()), Value::String("b".into())])
        );
    }
}
