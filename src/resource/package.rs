//! `package`: a Debian package through dpkg/apt.
//!
//! The provider reads the dpkg database with `dpkg-query` and converges with `apt-get`.
//! Observed state: `ensure` is the installed version or `absent`; `candidate` is the version
//! apt would install (read only for `ensure: latest`); `status` is dpkg's status when the
//! package is half-way (unpacked, half-configured, ...). Under `--root` only the root's dpkg
//! database is read: nothing is ever installed there.

use std::time::Duration;

use crate::model::{Resource, Value};
use crate::resource::change::{Action, AttrChange, Change, State};
use crate::resource::command::{Run, argv};
use crate::resource::provider::{Applied, Declared, Provider, ProviderCtx, ProviderError};
use crate::resource::{AttrType, NameRule, ResourceType, TypeSchema, attr};

pub(crate) struct Package;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a Debian package; NAME is the package name",
    name_rule: NameRule::Package,
    attrs: &[attr(
        "ensure",
        AttrType::PackageEnsure,
        "present (default), absent, latest, or an exact version",
    )],
    exclusive: &[],
    required_when_present: &[],
    present_only: &[],
    path_attr: None,
};

/// How long a query (`dpkg-query`, `apt-cache`) may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `apt-get` may take: downloads and maintainer scripts can be slow.
const APT_TIMEOUT: Duration = Duration::from_secs(600);

/// dpkg states in which the package is fully there.
const INSTALLED_STATES: [&str; 3] = ["installed", "triggers-awaiting", "triggers-pending"];

/// dpkg states in which nothing but (at most) configuration files is left.
const ABSENT_STATES: [&str; 2] = ["not-installed", "config-files"];

impl ResourceType for Package {
    fn provider(&self) -> &dyn Provider {
        self
    }

    fn kind(&self) -> &'static str {
        "package"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    /// `present` is satisfied by any installed version, `latest` by the candidate version, a
    /// version by exactly that version, `absent` by a package that is not installed.
    fn diff(&self, res: &Resource, observed: &State) -> Change {
        let desired = res.attr_str("ensure").unwrap_or("present");
        let installed = observed
            .get("ensure")
            .and_then(Value::as_str)
            .filter(|version| *version != "absent");
        let candidate = observed.get("candidate").and_then(Value::as_str);
        let half_done = observed.get("status").and_then(Value::as_str);
        let mut change = Change::new(res.id.clone(), Action::NoOp);
        let after = match (desired, installed) {
            ("absent", None) => return change,
            ("absent", Some(_)) => {
                change.action = Action::Delete;
                "absent".to_string()
            }
            (_, None) => {
                change.action = Action::Create;
                desired_label(desired, candidate)
            }
            (_, Some(version)) => {
                let satisfied = match desired {
                    "present" => true,
                    // Without a candidate there is nothing newer to go to.
                    "latest" => candidate.is_none_or(|candidate| candidate == version),
                    exact => exact == version,
                };
                if satisfied && half_done.is_none() {
                    return change;
                }
                change.action = Action::Update;
                if let Some(status) = half_done {
                    change.reason = Some(format!("dpkg reports the package as {status}"));
                }
                desired_label(desired, candidate)
            }
        };
        change.attrs.push(AttrChange {
            name: "ensure".into(),
            before: Some(Value::String(installed.unwrap_or("absent").to_string())),
            after: Some(Value::String(after)),
            sensitive: false,
        });
        change
    }
}

impl Provider for Package {
    fn read(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<State, ProviderError> {
        let name = &res.id.name;
        let mut state = State::new();
        let installed = query_dpkg(ctx, name)?;
        let version = match &installed {
            Some(Installed { status, version }) => {
                if !INSTALLED_STATES.contains(&status.as_str()) {
                    state.insert("status".into(), Value::String(status.clone()));
                }
                version.as_str()
            }
            None => "absent",
        };
        state.insert("ensure".into(), Value::String(version.to_string()));
        // apt-cache reads the host's package lists, which say nothing about an image under
        // `--root`, so the candidate is only known on the live system.
        if ctx.is_live()
            && res.attr_str("ensure") == Some("latest")
            && let Some(candidate) = query_candidate(ctx, name)?
        {
            state.insert("candidate".into(), Value::String(candidate));
        }
        Ok(state)
    }

    /// Under `--root` only the root's dpkg database is read: a change is refused.
    fn refusal(
        &self,
        ctx: &ProviderCtx<'_>,
        res: &Resource,
        observed: &State,
        _declared: &Declared,
    ) -> Result<Option<String>, ProviderError> {
        let change = self.diff(res, observed);
        Ok((!ctx.is_live() && change.is_change()).then(|| not_under_root(ctx, res, &change)))
    }

    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        let observed = self.read(ctx, res)?;
        let change = self.diff(res, &observed);
        if !change.is_change() {
            return Ok(Applied::AlreadyConverged);
        }
        if !ctx.is_live() {
            return Err(ProviderError::Unsupported {
                message: not_under_root(ctx, res, &change),
            });
        }
        let command = apt_command(&res.id.name, res.attr_str("ensure").unwrap_or("present"));
        let env = [("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string())];
        let mut run = Run::new(&command);
        run.env = &env;
        run.timeout = APT_TIMEOUT;
        let output = ctx.runner.check(&run)?;
        let after = self.read(ctx, res)?;
        let left = self.diff(res, &after);
        if left.is_change() {
            return Err(ProviderError::failed(format!(
                "`{}` succeeded but `{}` is still not as desired: dpkg reports {}",
                command.join(" "),
                res.id,
                describe_observed(&after)
            )));
        }
        Ok(Applied::Converged {
            output: Some(output),
        })
    }
}

/// Why a package cannot change under `--root`.
fn not_under_root(ctx: &ProviderCtx<'_>, res: &Resource, change: &Change) -> String {
    format!(
        "packages cannot be installed or removed under --root ({}): `{}` needs {}",
        ctx.root.display(),
        res.id,
        change.action.as_str()
    )
}

/// A package dpkg knows about, in any state but `not-installed`/`config-files`.
struct Installed {
    status: String,
    version: String,
}

/// Asks the dpkg database (the root's, under `--root`) about one package.
fn query_dpkg(ctx: &ProviderCtx<'_>, name: &str) -> Result<Option<Installed>, ProviderError> {
    let mut command = argv(&["dpkg-query"]);
    if !ctx.is_live() {
        let admin_dir = ctx.root.join("var/lib/dpkg");
        // An image without a dpkg database has no packages at all.
        if !admin_dir.join("status").is_file() {
            return Ok(None);
        }
        let admin_dir = admin_dir.to_str().ok_or_else(|| ProviderError::Refused {
            message: format!("the root `{}` is not valid UTF-8", ctx.root.display()),
        })?;
        command.push(format!("--admindir={admin_dir}"));
    }
    if !ctx.runner.has_program("dpkg-query") {
        return Err(ProviderError::Unsupported {
            message: "dpkg-query is not installed: packages are managed only on Debian-like nodes"
                .into(),
        });
    }
    command.extend(argv(&[
        "-W",
        "--showformat=${db:Status-Status} ${Version}\\n",
        "--",
        name,
    ]));
    let mut run = Run::new(&command);
    run.timeout = QUERY_TIMEOUT;
    let output = ctx.runner.output(&run)?;
    match output.exit_code {
        Some(0) => Ok(parse_dpkg_query(&output.stdout)),
        // dpkg-query exits 1 when it knows no package of that name.
        Some(1) if output.stderr.contains("no packages found") => Ok(None),
        _ => Err(ProviderError::Command {
            argv: command,
            output: Box::new(output),
        }),
    }
}

/// Reads `dpkg-query -W` lines (`STATUS VERSION`). A multi-arch package may have one line per
/// architecture: a fully installed one wins, then a half-installed one.
fn parse_dpkg_query(stdout: &str) -> Option<Installed> {
    let entries: Vec<Installed> = stdout
        .lines()
        .filter_map(|line| {
            let (status, version) = line.split_once(' ')?;
            // A half-installed package may have lost its version.
            let version = match version.trim() {
                "" => "unknown",
                version => version,
            };
            Some(Installed {
                status: status.to_string(),
                version: version.to_string(),
            })
        })
        .filter(|entry| !ABSENT_STATES.contains(&entry.status.as_str()))
        .collect();
    let mut fallback = None;
    for entry in entries {
        if INSTALLED_STATES.contains(&entry.status.as_str()) {
            return Some(entry);
        }
        fallback.get_or_insert(entry);
    }
    fallback
}

/// The version `apt-get install` would pick, from `apt-cache policy`; `None` when apt knows
/// no candidate.
fn query_candidate(ctx: &ProviderCtx<'_>, name: &str) -> Result<Option<String>, ProviderError> {
    if !ctx.runner.has_program("apt-cache") {
        return Err(ProviderError::Unsupported {
            message: "apt-cache is not installed: `ensure: latest` needs apt".into(),
        });
    }
    let command = argv(&["apt-cache", "policy", "--", name]);
    let mut run = Run::new(&command);
    run.timeout = QUERY_TIMEOUT;
    let output = ctx.runner.check(&run)?;
    Ok(parse_candidate(&output.stdout))
}

fn parse_candidate(stdout: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|candidate| !candidate.is_empty() && *candidate != "(none)")
        .map(String::from)
}

/// The `apt-get` command that converges `name` to `ensure`.
fn apt_command(name: &str, ensure: &str) -> Vec<String> {
    let mut command = argv(&[
        "apt-get",
        "-y",
        "-q",
        // Wait for another package manager instead of failing at once.
        "-o",
        "DPkg::Lock::Timeout=120",
        // Never stop at a configuration file prompt: keep the local file when it was changed.
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
    ]);
    match ensure {
        "absent" => command.extend(argv(&["remove", "--", name])),
        "present" | "latest" => {
            command.extend(argv(&["install", "--no-install-recommends", "--", name]))
        }
        version => {
            // The document names the version, so going down to it is what the user asked.
            command.extend(argv(&[
                "install",
                "--no-install-recommends",
                "--allow-downgrades",
                "--",
            ]));
            command.push(format!("{name}={version}"));
        }
    }
    command
}

/// How the desired side of a change reads: `present`, `1.2-3`, `latest (1.2-4)`.
fn desired_label(desired: &str, candidate: Option<&str>) -> String {
    match (desired, candidate) {
        ("latest", Some(candidate)) => format!("latest ({candidate})"),
        _ => desired.to_string(),
    }
}

fn describe_observed(state: &State) -> String {
    let version = state
        .get("ensure")
        .and_then(Value::as_str)
        .unwrap_or("absent");
    match state.get("status").and_then(Value::as_str) {
        Some(status) => format!("{version} ({status})"),
        None => version.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::resource::command::scripted::ScriptedRunner;
    use crate::resource::provider::testing::{TestNode, resource};

    #[test]
    fn multi_arch_prefers_installed() {
        let found = parse_dpkg_query("config-files 1.0\nhalf-configured 2.0\ninstalled 2.1\n");
        assert_eq!(found.map(|entry| entry.version).as_deref(), Some("2.1"));
        let half = parse_dpkg_query("unpacked 2.0\n");
        assert_eq!(half.map(|entry| entry.status).as_deref(), Some("unpacked"));
        let lost = parse_dpkg_query("half-installed \n");
        assert_eq!(lost.map(|entry| entry.version).as_deref(), Some("unknown"));
        assert!(parse_dpkg_query("config-files 1.0\n").is_none());
        assert!(parse_dpkg_query("").is_none());
    }

    #[test]
    fn candidate_lines() {
        let policy = "hello:\n  Installed: (none)\n  Candidate: 2.10-3\n  Version table:\n";
        assert_eq!(parse_candidate(policy).as_deref(), Some("2.10-3"));
        assert_eq!(parse_candidate("x:\n  Candidate: (none)\n"), None);
        assert_eq!(parse_candidate(""), None);
    }

    #[test]
    fn apt_commands() {
        let install = apt_command("hello", "latest");
        assert_eq!(
            &install[install.len() - 3..],
            ["--no-install-recommends", "--", "hello"]
        );
        let pinned = apt_command("hello", "2.10-3");
        assert_eq!(pinned.last().map(String::as_str), Some("hello=2.10-3"));
        assert!(pinned.iter().any(|arg| arg == "--allow-downgrades"));
        let remove = apt_command("hello", "absent");
        assert!(remove.iter().any(|arg| arg == "remove"));
    }

    const SHOW: &str = "--showformat=${db:Status-Status} ${Version}\\n";

    fn live() -> TestNode {
        TestNode::at(Path::new("/"))
    }

    fn hello(ensure: &str) -> Resource {
        resource(
            "package",
            "hello",
            &[("ensure", Value::String(ensure.into()))],
        )
    }

    fn query() -> [&'static str; 5] {
        ["dpkg-query", "-W", SHOW, "--", "hello"]
    }

    fn ensure_of(state: &State) -> Option<&str> {
        state.get("ensure").and_then(Value::as_str)
    }

    #[test]
    fn read_of_an_installed_package_and_its_candidate() {
        let runner = ScriptedRunner::new()
            .answer(&query(), 0, "installed 2.10-2\n")
            .answer(
                &["apt-cache", "policy", "--", "hello"],
                0,
                "hello:\n  Installed: 2.10-2\n  Candidate: 2.10-3\n",
            );
        let node = live();
        let observed = Package.read(&node.ctx(&runner), &hello("latest")).unwrap();
        assert_eq!(ensure_of(&observed), Some("2.10-2"));
        assert_eq!(
            observed.get("candidate").and_then(Value::as_str),
            Some("2.10-3")
        );
        assert!(!observed.contains_key("status"));
        runner.finished();
        // Only `latest` asks apt for the candidate.
        let runner = ScriptedRunner::new().answer(&query(), 0, "installed 2.10-2\n");
        let observed = Package.read(&node.ctx(&runner), &hello("present")).unwrap();
        assert!(!observed.contains_key("candidate"));
        runner.finished();
    }

    #[test]
    fn read_of_an_unknown_or_half_installed_package() {
        let runner = ScriptedRunner::new().answer_with(
            &query(),
            Some(1),
            "",
            "dpkg-query: no packages found matching hello\n",
        );
        let node = live();
        let observed = Package.read(&node.ctx(&runner), &hello("present")).unwrap();
        assert_eq!(ensure_of(&observed), Some("absent"));
        let runner = ScriptedRunner::new().answer(&query(), 0, "half-configured 2.10-3\n");
        let observed = Package.read(&node.ctx(&runner), &hello("present")).unwrap();
        assert_eq!(ensure_of(&observed), Some("2.10-3"));
        assert_eq!(
            observed.get("status").and_then(Value::as_str),
            Some("half-configured")
        );
        // Any other failure of dpkg-query is the command's error.
        let runner =
            ScriptedRunner::new().answer_with(&query(), Some(2), "", "dpkg-query: error\n");
        let err = Package
            .read(&node.ctx(&runner), &hello("present"))
            .unwrap_err();
        assert!(matches!(err, ProviderError::Command { .. }), "{err}");
    }

    #[test]
    fn read_without_dpkg_is_unsupported() {
        let runner = ScriptedRunner::new().without_program("dpkg-query");
        let node = live();
        let err = Package
            .read(&node.ctx(&runner), &hello("present"))
            .unwrap_err();
        assert!(matches!(err, ProviderError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn apply_installs_with_apt_get_and_reads_again() {
        let install = [
            "apt-get",
            "-y",
            "-q",
            "-o",
            "DPkg::Lock::Timeout=120",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "install",
            "--no-install-recommends",
            "--",
            "hello",
        ];
        let runner = ScriptedRunner::new()
            .answer_with(
                &query(),
                Some(1),
                "",
                "dpkg-query: no packages found matching hello\n",
            )
            .answer(&install, 0, "Setting up hello (2.10-3) ...\n")
            .answer(&query(), 0, "installed 2.10-3\n");
        let node = live();
        let applied = Package
            .apply(&node.ctx(&runner), &hello("present"))
            .unwrap();
        let Applied::Converged {
            output: Some(output),
        } = applied
        else {
            panic!("{applied:?}");
        };
        assert_eq!(output.stdout, "Setting up hello (2.10-3) ...\n");
        assert_eq!(
            runner.env_of(1),
            [("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string())]
        );
        runner.finished();
    }

    #[test]
    fn apply_fails_when_dpkg_still_differs() {
        let mut pinned = apt_command("hello", "2.10-3");
        let tail = pinned.split_off(9);
        assert_eq!(
            tail,
            [
                "install",
                "--no-install-recommends",
                "--allow-downgrades",
                "--",
                "hello=2.10-3"
            ]
        );
        pinned.extend(tail);
        let pinned: Vec<&str> = pinned.iter().map(String::as_str).collect();
        let runner = ScriptedRunner::new()
            .answer(&query(), 0, "installed 2.10-2\n")
            .answer(&pinned, 0, "")
            .answer(&query(), 0, "half-configured 2.10-3\n");
        let node = live();
        let err = Package
            .apply(&node.ctx(&runner), &hello("2.10-3"))
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("hello=2.10-3"), "{message}");
        assert!(
            message.ends_with("dpkg reports 2.10-3 (half-configured)"),
            "{message}"
        );
        runner.finished();
    }

    #[test]
    fn under_a_root_only_its_database_is_read_and_nothing_installed() {
        let dir = tempfile::tempdir().unwrap();
        let node = TestNode::at(dir.path());
        // No dpkg database in the image: no packages, and no command asked.
        let runner = ScriptedRunner::new();
        let observed = Package.read(&node.ctx(&runner), &hello("present")).unwrap();
        assert_eq!(ensure_of(&observed), Some("absent"));
        std::fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(dir.path().join("var/lib/dpkg/status"), "").unwrap();
        let admin_dir = format!("--admindir={}", dir.path().join("var/lib/dpkg").display());
        let runner = ScriptedRunner::new().answer(
            &["dpkg-query", &admin_dir, "-W", SHOW, "--", "hello"],
            0,
            "installed 2.10-2\n",
        );
        let err = Package
            .apply(&node.ctx(&runner), &hello("2.10-3"))
            .unwrap_err();
        assert!(matches!(err, ProviderError::Unsupported { .. }), "{err}");
        runner.finished();
    }
}
