//! `exec`: a command, run when its guards say so or when refreshed.

use std::time::Duration;

use crate::model::Value;
use crate::resource::accounts::Accounts;
use crate::resource::change::{Action, AttrChange, Change, State};
use crate::resource::command::Run;
use crate::resource::provider::{Applied, CommandOutput, Provider, ProviderCtx, ProviderError};

use crate::model::Resource;
use crate::resource::{
    AttrRule, AttrType, Candidates, ImplicitDep, NameRule, ResourceType, TypeSchema, attr, required,
};

pub(crate) struct Exec;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a command; NAME is a label",
    name_rule: NameRule::Label,
    attrs: &[
        required(
            "command",
            AttrType::Command,
            "what runs: a list of arguments, or a string split into arguments (no shell)",
        ),
        attr("cwd", AttrType::AbsPath, "working directory"),
        attr("env", AttrType::StringMap, "environment variables"),
        attr("user", AttrType::String, "run as this user"),
        attr("creates", AttrType::AbsPath, "skip when this path exists"),
        attr(
            "unless",
            AttrType::Command,
            "skip when this command succeeds",
        ),
        attr(
            "onlyif",
            AttrType::Command,
            "run only when this command succeeds",
        ),
        attr(
            "refresh_only",
            AttrType::Bool,
            "run only when notified by a change",
        ),
        attr(
            "timeout",
            AttrType::Duration,
            "kill the command after this long (default 300s)",
        )
        .with_rule(AttrRule::Positive),
    ],
    exclusive: &[],
    required_when_present: &[],
    present_only: &[],
    path_attr: None,
};

impl ResourceType for Exec {
    fn import_probe(&self) -> Result<Vec<&'static str>, crate::resource::import::ImportError> {
        Err(crate::resource::import::ImportError::NotImportable {
            kind: "exec",
            why: "a command leaves no state to read back",
        })
    }

    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn diff(&self, res: &Resource, observed: &State) -> Change {
        let refresh_only = res.attr("refresh_only").and_then(Value::as_bool) == Some(true);
        let pending = observed.get("ensure").and_then(Value::as_str) == Some("pending");
        let mut change = Change::new(res.id.clone(), Action::NoOp);
        if pending && !refresh_only {
            change.action = Action::Run;
            if let Some(attr) = res.attrs.get("command") {
                change.attrs.push(AttrChange {
                    name: "command".into(),
                    before: None,
                    after: Some(attr.value.clone()),
                    sensitive: attr.sensitive,
                });
            }
        }
        change
    }

    fn kind(&self) -> &'static str {
        "exec"
    }

    /// A command runs on refresh (a `refresh_only` one runs only then).
    fn refreshable(&self, _res: &Resource) -> bool {
        true
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        let mut deps = Vec::new();
        if let Some(user) = res.attr_str("user") {
            deps.push(ImplicitDep {
                candidates: Candidates::one("user", user),
                reason: "runs as user",
            });
        }
        if let Some(cwd) = res.attr_str("cwd") {
            deps.push(ImplicitDep {
                candidates: Candidates::one("directory", cwd),
                reason: "runs in directory",
            });
        }
        deps
    }
}

impl Exec {
    /// Whether the guards (`creates`, `unless`, `onlyif`) say the command should run.
    fn should_run(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<bool, ProviderError> {
        if let Some(creates) = res.attr_str("creates") {
            let located = ctx.locate(creates)?;
            if let Some(entry) = located.entry
                && entry.stat().is_ok_and(|stat| stat.is_some())
            {
                return Ok(false);
            }
        }
        if let Some(unless) = res.attr("unless") {
            let output = self.command(ctx, res, &argv_of(unless))?.output()?;
            if output.exit_code == Some(0) {
                return Ok(false);
            }
        }
        if let Some(onlyif) = res.attr("onlyif") {
            let output = self.command(ctx, res, &argv_of(onlyif))?.output()?;
            if output.exit_code != Some(0) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Runs the command unless a guard says not to.
    fn run(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        if !self.should_run(ctx, res)? {
            return Ok(Applied::AlreadyConverged);
        }
        let argv = argv_of(res.attr("command").unwrap_or(&Value::Null));
        let holder = self.command(ctx, res, &argv)?;
        let output = holder.output()?;
        if output.exit_code == Some(0) {
            Ok(Applied::Converged {
                output: Some(output),
            })
        } else {
            Err(ProviderError::Command {
                argv,
                output: Box::new(output),
            })
        }
    }

    fn command<'a>(
        &self,
        ctx: &ProviderCtx<'_>,
        res: &Resource,
        argv: &'a [String],
    ) -> Result<Prepared<'a>, ProviderError> {
        let cwd = res
            .attr_str("cwd")
            .map(|cwd| working_dir(ctx, cwd))
            .transpose()?;
        let env: Vec<(String, String)> = match res.attr("env") {
            Some(Value::Map(entries)) => entries
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            _ => Vec::new(),
        };
        let user = match res.attr_str("user") {
            Some(name) => {
                let accounts = Accounts::read(ctx.root)
                    .map_err(|err| ProviderError::io(ctx.root.join("etc/passwd"), err))?;
                let entry = accounts.user(name).ok_or_else(|| {
                    ProviderError::failed(format!(
                        "no user `{name}` in {}",
                        ctx.root.join("etc/passwd").display()
                    ))
                })?;
                Some((entry.uid, entry.gid))
            }
            None => None,
        };
        let timeout = res
            .attr("timeout")
            .and_then(Value::as_int)
            .map_or(DEFAULT_TIMEOUT, |s| s.max(1) as u64);
        Ok(Prepared {
            argv,
            cwd,
            env,
            user,
            timeout: Duration::from_secs(timeout),
        })
    }
}

/// The working directory at `cwd`. Under `--root` it is opened beneath the root and the
/// command starts in that open directory (through `/proc/self/fd`), so a directory swapped
/// for a symlink meanwhile cannot move it outside the root.
fn working_dir(ctx: &ProviderCtx<'_>, cwd: &str) -> Result<WorkingDir, ProviderError> {
    let path = ctx.root.join(cwd.trim_start_matches('/'));
    if ctx.is_live() {
        return Ok(WorkingDir { path, _held: None });
    }
    match ctx.open_dir(cwd)? {
        Some(dir) => Ok(WorkingDir {
            path: format!(
                "/proc/self/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&dir.fd())
            )
            .into(),
            _held: Some(dir),
        }),
        None => Err(ProviderError::failed(format!(
            "working directory {} does not exist",
            path.display()
        ))),
    }
}

/// A working directory: its path, and the open directory the path names, if any (kept open
/// until the command has started).
struct WorkingDir {
    path: std::path::PathBuf,
    _held: Option<std::sync::Arc<crate::resource::beneath::Dir>>,
}

/// Default `timeout` in seconds.
const DEFAULT_TIMEOUT: u64 = 300;

/// A command with its settings resolved.
struct Prepared<'a> {
    argv: &'a [String],
    cwd: Option<WorkingDir>,
    env: Vec<(String, String)>,
    user: Option<(u32, u32)>,
    timeout: Duration,
}

impl Prepared<'_> {
    fn output(&self) -> Result<CommandOutput, ProviderError> {
        Run {
            argv: self.argv,
            cwd: self.cwd.as_ref().map(|cwd| cwd.path.as_path()),
            env: &self.env,
            user: self.user,
            timeout: self.timeout,
            on_output: None,
            cancel: None,
        }
        .output()
    }
}

/// A normalized `command` value (a list of strings) as argv.
fn argv_of(value: &Value) -> Vec<String> {
    value
        .as_list()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

impl Provider for Exec {
    fn read(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<State, ProviderError> {
        let pending = self.should_run(ctx, res)?;
        let ensure = if pending { "pending" } else { "satisfied" };
        Ok(State::from([(
            "ensure".to_string(),
            Value::String(ensure.into()),
        )]))
    }

    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        if res.attr("refresh_only").and_then(Value::as_bool) == Some(true) {
            return Ok(Applied::AlreadyConverged);
        }
        self.run(ctx, res)
    }

    fn refresh(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        self.run(ctx, res)
    }
}
