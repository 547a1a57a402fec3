//! `service`: a systemd unit, running or stopped, enabled or not.
//!
//! The provider asks `systemctl is-active` and `systemctl is-enabled` (their non-zero exits
//! are answers, not failures) and converges with `start`/`stop` and `enable`/`disable`.
//! Observed state: `ensure` is `running` or `stopped`, `enable` a boolean. Under `--root`
//! nothing runs, so only `enable` can be managed (`systemctl --root=...`); `ensure` there is
//! unsupported. A unit name without a suffix is a `.service` (systemctl adds it).

use std::path::Path;
use std::time::Duration;

use crate::model::{Resource, Value};
use crate::resource::change::State;
use crate::resource::command::{Run, argv};
use crate::resource::provider::{Applied, CommandOutput, Provider, ProviderCtx, ProviderError};
use crate::resource::{
    AttrType, Candidates, ImplicitDep, NameRule, ResourceType, TypeSchema, attr,
};

pub(crate) struct Service;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a systemd service; NAME is the unit name",
    name_rule: NameRule::Service,
    attrs: &[
        attr(
            "ensure",
            AttrType::Enum(&["running", "stopped"]),
            "running or stopped (default: leave as is)",
        ),
        attr("enable", AttrType::Bool, "start at boot"),
    ],
    exclusive: &[],
    required_when_present: &[],
    present_only: &[],
    path_attr: None,
};

impl ResourceType for Service {
    fn provider(&self) -> &dyn Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "service"
    }

    /// A running service restarts on refresh; a stopped one stays stopped.
    fn refreshable(&self, res: &Resource) -> bool {
        res.attr_str("ensure") != Some("stopped")
    }

    fn refresh_words(&self) -> crate::resource::RefreshWords {
        crate::resource::RefreshWords {
            planned: "restarts",
            done: "restarted",
        }
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        let package = res.id.name.strip_suffix(".service").unwrap_or(&res.id.name);
        vec![ImplicitDep {
            candidates: Candidates::one("package", package),
            reason: "installed by package",
        }]
    }
}

/// How long `systemctl` may take; `start` waits for the unit's start-up job.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(300);

/// Present while systemd is the running init system (`sd_booted(3)`).
const SYSTEMD_RUNTIME_DIR: &str = "/run/systemd/system";

impl Provider for Service {
    fn read(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<State, ProviderError> {
        let unit = &res.id.name;
        let mut state = State::new();
        if ctx.is_live() {
            require_systemd()?;
            state.insert("ensure".into(), Value::String(active_state(unit)?.into()));
        } else if res.attr("ensure").is_some() {
            return Err(ensure_under_root(ctx, res));
        } else {
            // Nothing under a root directory is running. The desired resource has no
            // `ensure`, so the diff never compares this value.
            state.insert("ensure".into(), Value::String("stopped".into()));
        }
        state.insert("enable".into(), Value::Bool(is_enabled(ctx, unit)?));
        Ok(state)
    }

    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        let observed = self.read(ctx, res)?;
        let change = self.diff(res, &observed);
        if !change.is_change() {
            return Ok(Applied::AlreadyConverged);
        }
        let unit = &res.id.name;
        let mut outputs = Vec::new();
        // Start before enabling, as an administrator would: a unit that fails to start is
        // not left enabled by this run.
        for name in ["ensure", "enable"] {
            let Some(attr_change) = change.attrs.iter().find(|a| a.name == name) else {
                continue;
            };
            let verb = match (name, &attr_change.after) {
                ("ensure", Some(Value::String(ensure))) if ensure == "running" => "start",
                ("ensure", _) => "stop",
                ("enable", Some(Value::Bool(true))) => "enable",
                _ => "disable",
            };
            outputs.push(systemctl(ctx, &[verb, "--", unit])?);
        }
        let after = self.read(ctx, res)?;
        let left = self.diff(res, &after);
        if left.is_change() {
            let mut differing: Vec<String> = left
                .attrs
                .iter()
                .map(|a| {
                    let observed = a.before.as_ref().map_or("nothing".into(), Value::to_string);
                    format!("{} is {observed}", a.name)
                })
                .collect();
            if left.attrs.iter().any(|a| a.name == "ensure") {
                differing.push(format!("see `journalctl -u {unit}`"));
            }
            if left.attrs.iter().any(|a| a.name == "enable") {
                differing
                    .push("a static, indirect or masked unit cannot be enabled or disabled".into());
            }
            return Err(ProviderError::failed(format!(
                "`{}` is still not as desired after systemctl: {}",
                res.id,
                differing.join("; ")
            )));
        }
        // `Applied` carries one command's output: keep it when exactly one ran.
        let output = if outputs.len() == 1 {
            outputs.pop()
        } else {
            None
        };
        Ok(Applied::Converged { output })
    }

    /// Restarts the unit when it should be running; with no `ensure`, when it is running now
    /// (Puppet's rule). A stopped service stays stopped.
    fn refresh(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        let unit = &res.id.name;
        let should_restart = match res.attr_str("ensure") {
            Some("running") => true,
            Some(_) => false,
            None if !ctx.is_live() => false,
            None => {
                require_systemd()?;
                active_state(unit)? == "running"
            }
        };
        if !should_restart {
            return Ok(Applied::AlreadyConverged);
        }
        if !ctx.is_live() {
            return Err(ensure_under_root(ctx, res));
        }
        require_systemd()?;
        let output = systemctl(ctx, &["restart", "--", unit])?;
        Ok(Applied::Converged {
            output: Some(output),
        })
    }
}

fn require_systemd() -> Result<(), ProviderError> {
    if Path::new(SYSTEMD_RUNTIME_DIR).is_dir() {
        Ok(())
    } else {
        Err(ProviderError::Unsupported {
            message: "systemd is not running on this node".into(),
        })
    }
}

fn ensure_under_root(ctx: &ProviderCtx<'_>, res: &Resource) -> ProviderError {
    ProviderError::Unsupported {
        message: format!(
            "`ensure` of `{}` cannot be managed under --root ({}): nothing runs there; only \
             `enable` can be",
            res.id,
            ctx.root.display()
        ),
    }
}

/// `running` or `stopped`, from `systemctl is-active` (which exits non-zero when inactive).
fn active_state(unit: &str) -> Result<&'static str, ProviderError> {
    let command = argv(&["systemctl", "is-active", "--", unit]);
    let output = systemctl_query(&command)?;
    Ok(match output.stdout.trim() {
        "active" | "reloading" => "running",
        _ => "stopped",
    })
}

/// Whether the unit starts at boot, from `systemctl is-enabled` (which exits non-zero when
/// disabled, masked or unknown). Like Puppet, an `indirect` unit counts as not enabled and
/// every other answer with exit 0 (`enabled`, `static`, `alias`, ...) as enabled.
fn is_enabled(ctx: &ProviderCtx<'_>, unit: &str) -> Result<bool, ProviderError> {
    let mut command = argv(&["systemctl"]);
    command.extend(root_flag(ctx)?);
    command.extend(argv(&["is-enabled", "--", unit]));
    let output = systemctl_query(&command)?;
    Ok(output.exit_code == Some(0) && output.stdout.trim() != "indirect")
}

/// Runs a systemctl question; any exit code is an answer, but a timeout or signal is not.
fn systemctl_query(command: &[String]) -> Result<CommandOutput, ProviderError> {
    let mut run = Run::new(command);
    run.timeout = SYSTEMCTL_TIMEOUT;
    let output = run.output()?;
    if output.exit_code.is_none() {
        return Err(ProviderError::Command {
            argv: command.to_vec(),
            output: Box::new(output),
        });
    }
    Ok(output)
}

/// Runs `systemctl [--root=ROOT] ARGS` and fails unless it exits 0.
fn systemctl(ctx: &ProviderCtx<'_>, args: &[&str]) -> Result<CommandOutput, ProviderError> {
    let mut command = argv(&["systemctl"]);
    command.extend(root_flag(ctx)?);
    command.extend(argv(args));
    let mut run = Run::new(&command);
    run.timeout = SYSTEMCTL_TIMEOUT;
    run.check()
}

/// `--root=ROOT` when not live.
fn root_flag(ctx: &ProviderCtx<'_>) -> Result<Option<String>, ProviderError> {
    if ctx.is_live() {
        return Ok(None);
    }
    let root = ctx.root.to_str().ok_or_else(|| ProviderError::Refused {
        message: format!("the root `{}` is not valid UTF-8", ctx.root.display()),
    })?;
    Ok(Some(format!("--root={root}")))
}
