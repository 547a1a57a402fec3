//! `service`: a systemd unit, running or stopped, enabled or not.
//!
//! The provider asks `systemctl is-active` and `systemctl is-enabled` (their non-zero exits
//! are answers, not failures) and converges with `start`/`stop` and `enable`/`disable`.
//! Observed state: `ensure` is `running` or `stopped`, `enable` a boolean. Under `--root`
//! nothing runs, so only `enable` can be managed (`systemctl --root=...`); `ensure` there is
//! unsupported. A unit name without a suffix is a `.service` (systemctl adds it).

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
    fn import_attrs(
        &self,
        id: &crate::model::ResourceId,
        observed: &State,
        live: bool,
    ) -> Result<Vec<(&'static str, Value)>, crate::resource::import::ImportError> {
        let mut attrs = crate::resource::import::attrs_from_state(id, self.schema(), observed)?;
        if !live {
            // Nothing under a root directory runs, and `ensure` is refused there.
            attrs.retain(|(name, _)| *name != "ensure");
        }
        Ok(attrs)
    }

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

impl Provider for Service {
    fn read(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<State, ProviderError> {
        let unit = &res.id.name;
        let mut state = State::new();
        if ctx.is_live() {
            require_systemd(ctx)?;
            state.insert(
                "ensure".into(),
                Value::String(active_state(ctx, unit)?.into()),
            );
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
                require_systemd(ctx)?;
                active_state(ctx, unit)? == "running"
            }
        };
        if !should_restart {
            return Ok(Applied::AlreadyConverged);
        }
        if !ctx.is_live() {
            return Err(ensure_under_root(ctx, res));
        }
        require_systemd(ctx)?;
        let output = systemctl(ctx, &["restart", "--", unit])?;
        Ok(Applied::Converged {
            output: Some(output),
        })
    }
}

fn require_systemd(ctx: &ProviderCtx<'_>) -> Result<(), ProviderError> {
    if ctx.runner.systemd_booted() {
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
fn active_state(ctx: &ProviderCtx<'_>, unit: &str) -> Result<&'static str, ProviderError> {
    let command = argv(&["systemctl", "is-active", "--", unit]);
    let output = systemctl_query(ctx, &command)?;
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
    let output = systemctl_query(ctx, &command)?;
    Ok(output.exit_code == Some(0) && output.stdout.trim() != "indirect")
}

/// Runs a systemctl question; any exit code is an answer, but a timeout or signal is not.
fn systemctl_query(
    ctx: &ProviderCtx<'_>,
    command: &[String],
) -> Result<CommandOutput, ProviderError> {
    let mut run = Run::new(command);
    run.timeout = SYSTEMCTL_TIMEOUT;
    let output = ctx.runner.output(&run)?;
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
    ctx.runner.check(&run)
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::resource::command::scripted::ScriptedRunner;
    use crate::resource::provider::testing::{TestNode, resource};

    fn live() -> TestNode {
        TestNode::at(Path::new("/"))
    }

    fn nginx(attrs: &[(&str, Value)]) -> Resource {
        resource("service", "nginx", attrs)
    }

    fn state(ensure: &str, enable: bool) -> State {
        let mut state = State::new();
        state.insert("ensure".into(), Value::String(ensure.into()));
        state.insert("enable".into(), Value::Bool(enable));
        state
    }

    #[test]
    fn read_of_an_inactive_disabled_unit() {
        let runner = ScriptedRunner::new()
            .answer(&["systemctl", "is-active", "--", "nginx"], 3, "inactive\n")
            .answer(&["systemctl", "is-enabled", "--", "nginx"], 1, "disabled\n");
        let node = live();
        let observed = Service.read(&node.ctx(&runner), &nginx(&[])).unwrap();
        assert_eq!(observed, state("stopped", false));
        runner.finished();
    }

    #[test]
    fn read_of_a_missing_unit_is_stopped_and_disabled() {
        let runner = ScriptedRunner::new()
            .answer(&["systemctl", "is-active", "--", "nginx"], 4, "inactive\n")
            .answer_with(
                &["systemctl", "is-enabled", "--", "nginx"],
                Some(1),
                "",
                "Failed to get unit file state for nginx.service: No such file or directory\n",
            );
        let node = live();
        let observed = Service.read(&node.ctx(&runner), &nginx(&[])).unwrap();
        assert_eq!(observed, state("stopped", false));
        runner.finished();
    }

    #[test]
    fn read_counts_static_as_enabled_and_indirect_as_not() {
        for (answer, enabled) in [("static\n", true), ("indirect\n", false), ("alias\n", true)] {
            let runner = ScriptedRunner::new()
                .answer(&["systemctl", "is-active", "--", "nginx"], 0, "reloading\n")
                .answer(&["systemctl", "is-enabled", "--", "nginx"], 0, answer);
            let node = live();
            let observed = Service.read(&node.ctx(&runner), &nginx(&[])).unwrap();
            assert_eq!(observed, state("running", enabled), "{answer}");
        }
    }

    #[test]
    fn a_killed_query_is_an_error_not_an_answer() {
        let runner = ScriptedRunner::new().answer_with(
            &["systemctl", "is-active", "--", "nginx"],
            None,
            "",
            "",
        );
        let node = live();
        let err = Service.read(&node.ctx(&runner), &nginx(&[])).unwrap_err();
        assert!(matches!(err, ProviderError::Command { .. }), "{err}");
    }

    #[test]
    fn without_systemd_nothing_runs() {
        let runner = ScriptedRunner::new().without_systemd();
        let node = live();
        let err = Service.read(&node.ctx(&runner), &nginx(&[])).unwrap_err();
        assert!(matches!(err, ProviderError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn apply_starts_before_enabling_and_reads_again() {
        let desired = nginx(&[
            ("ensure", Value::String("running".into())),
            ("enable", Value::Bool(true)),
        ]);
        let runner = ScriptedRunner::new()
            .answer(&["systemctl", "is-active", "--", "nginx"], 3, "inactive\n")
            .answer(&["systemctl", "is-enabled", "--", "nginx"], 1, "disabled\n")
            .answer(&["systemctl", "start", "--", "nginx"], 0, "")
            .answer(&["systemctl", "enable", "--", "nginx"], 0, "")
            .answer(&["systemctl", "is-active", "--", "nginx"], 0, "active\n")
            .answer(&["systemctl", "is-enabled", "--", "nginx"], 0, "enabled\n");
        let node = live();
        let applied = Service.apply(&node.ctx(&runner), &desired).unwrap();
        // Two commands ran: `Applied` keeps the output of one only.
        assert_eq!(applied, Applied::Converged { output: None });
        runner.finished();
    }

    #[test]
    fn apply_does_nothing_when_converged() {
        let desired = nginx(&[("ensure", Value::String("running".into()))]);
        let runner = ScriptedRunner::new()
            .answer(&["systemctl", "is-active", "--", "nginx"], 0, "active\n")
            .answer(&["systemctl", "is-enabled", "--", "nginx"], 0, "enabled\n");
        let node = live();
        let applied = Service.apply(&node.ctx(&runner), &desired).unwrap();
        assert_eq!(applied, Applied::AlreadyConverged);
        runner.finished();
    }

    #[test]
    fn apply_fails_when_the_unit_does_not_stay_up() {
        let desired = nginx(&[("ensure", Value::String("running".into()))]);
        let runner = ScriptedRunner::new()
            .answer(&["systemctl", "is-active", "--", "nginx"], 3, "inactive\n")
            .answer(&["systemctl", "is-enabled", "--", "nginx"], 0, "enabled\n")
            .answer(&["systemctl", "start", "--", "nginx"], 0, "")
            .answer(&["systemctl", "is-active", "--", "nginx"], 3, "failed\n")
            .answer(&["systemctl", "is-enabled", "--", "nginx"], 0, "enabled\n");
        let node = live();
        let err = Service.apply(&node.ctx(&runner), &desired).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("still not as desired"), "{message}");
        assert!(message.contains("journalctl -u nginx"), "{message}");
        runner.finished();
    }

    #[test]
    fn a_failing_start_is_the_command_error() {
        let desired = nginx(&[("ensure", Value::String("running".into()))]);
        let runner = ScriptedRunner::new()
            .answer(&["systemctl", "is-active", "--", "nginx"], 3, "inactive\n")
            .answer(&["systemctl", "is-enabled", "--", "nginx"], 0, "enabled\n")
            .answer_with(
                &["systemctl", "start", "--", "nginx"],
                Some(1),
                "",
                "Job for nginx.service failed.\n",
            );
        let node = live();
        let err = Service.apply(&node.ctx(&runner), &desired).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`systemctl start -- nginx` exited with 1: Job for nginx.service failed."
        );
        runner.finished();
    }

    #[test]
    fn under_a_root_only_enable_is_managed_with_the_root_flag() {
        let dir = tempfile::tempdir().unwrap();
        let root_flag = format!("--root={}", dir.path().display());
        let desired = nginx(&[("enable", Value::Bool(true))]);
        let runner = ScriptedRunner::new()
            .answer(
                &["systemctl", &root_flag, "is-enabled", "--", "nginx"],
                1,
                "disabled\n",
            )
            .answer(&["systemctl", &root_flag, "enable", "--", "nginx"], 0, "")
            .answer(
                &["systemctl", &root_flag, "is-enabled", "--", "nginx"],
                0,
                "enabled\n",
            );
        let node = TestNode::at(dir.path());
        let applied = Service.apply(&node.ctx(&runner), &desired).unwrap();
        assert!(matches!(applied, Applied::Converged { output: Some(_) }));
        runner.finished();
        let running = nginx(&[("ensure", Value::String("running".into()))]);
        let err = Service.read(&node.ctx(&runner), &running).unwrap_err();
        assert!(matches!(err, ProviderError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn refresh_restarts_a_running_unit_without_ensure() {
        let runner = ScriptedRunner::new()
            .answer(&["systemctl", "is-active", "--", "nginx"], 0, "active\n")
            .answer(&["systemctl", "restart", "--", "nginx"], 0, "");
        let node = live();
        let applied = Service.refresh(&node.ctx(&runner), &nginx(&[])).unwrap();
        assert!(matches!(applied, Applied::Converged { output: Some(_) }));
        runner.finished();
        let stopped = ScriptedRunner::new().answer(
            &["systemctl", "is-active", "--", "nginx"],
            3,
            "inactive\n",
        );
        let applied = Service.refresh(&node.ctx(&stopped), &nginx(&[])).unwrap();
        assert_eq!(applied, Applied::AlreadyConverged);
        stopped.finished();
    }
}
