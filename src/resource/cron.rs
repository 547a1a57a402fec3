//! `cron`: a job in `/etc/cron.d/NAME`, written whole by steward.
//!
//! Owns the job file's format (a header naming the resource, `NAME=VALUE` environment lines,
//! then one `SCHEDULE USER COMMAND` line), its NAME rule and the checks of its attributes.
//! It must not do its own path handling: the file is reached through [`ProviderCtx::entry`]
//! (beneath `--root`) and written through [`ProviderCtx::write_durably`], like a `file`.
//!
//! A file at the path that steward did not write, or cannot parse, is shown as differing so
//! that the plan rewrites it: the job file is steward's whole.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::diag::Diagnostic;
use crate::model::{Resource, ResourceId, Value};
use crate::resource::change::{Action, AttrChange, Change, Content, ContentChange, State};
use crate::resource::fsutil::{self, Kind};
use crate::resource::import::{self, ImportError};
use crate::resource::provider::{Applied, Declared, Provider, ProviderCtx, ProviderError};
use crate::resource::{
    AttrRule, AttrType, Candidate, Candidates, CustomNameRule, ENSURE_PRESENT_ABSENT, ImplicitDep,
    NameRule, ResourceType, TypeSchema, attr, check_schema_rules, diff_attrs,
};

pub(crate) struct Cron;

/// The directory cron reads job files from.
const CRON_DIR: &str = "/etc/cron.d";

/// The first line of every job file steward writes, before the resource id.
const HEADER: &str = "# managed by steward: ";

/// The account a job runs as when `user` is not given.
const DEFAULT_USER: &str = "root";

/// The mode of a job file: cron ignores job files that others may write.
const MODE: u32 = 0o644;

/// The job file names cron reads, as `run-parts` accepts them: cron skips names with a dot.
static NAME_RULE: CustomNameRule = CustomNameRule {
    accepts: is_job_name,
    pattern: "[A-Za-z0-9_-]{1,255}",
    problem: "is not a valid cron.d file name",
    help: "use letters, digits, `_` and `-` (cron ignores files whose name has a dot)",
};

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a cron job in /etc/cron.d/NAME, written whole",
    name_rule: NameRule::Custom(&NAME_RULE),
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        attr(
            "schedule",
            AttrType::String,
            "when the job runs: five cron fields (minute hour day month weekday)",
        ),
        attr(
            "command",
            AttrType::String,
            "the command line, run by the user's shell (`%` is written escaped)",
        )
        .with_rule(AttrRule::SingleLine),
        attr(
            "user",
            AttrType::String,
            "the account the job runs as (default root)",
        ),
        attr(
            "env",
            AttrType::StringMap,
            "environment variables, written as NAME=VALUE lines before the job",
        ),
    ],
    exclusive: &[],
    required_when_present: &["schedule", "command"],
    present_only: &["schedule", "command", "user", "env"],
    path_attr: None,
};

/// A job file name cron reads.
fn is_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// An environment variable name: a letter or `_`, then letters, digits and `_`.
fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why `text` is not a five-field cron schedule, or `None` when it is one.
fn schedule_problem(text: &str) -> Option<String> {
    let fields = text.split_whitespace().count();
    if fields != 5 {
        return Some(format!("has {fields} fields, not five"));
    }
    match text.parse::<croner::Cron>() {
        Ok(_) => None,
        Err(err) => Some(err.to_string()),
    }
}

/// The job file's absolute path.
fn job_path(name: &str) -> String {
    format!("{CRON_DIR}/{name}")
}

/// What a job file says.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Job {
    env: BTreeMap<String, String>,
    schedule: String,
    user: String,
    command: String,
}

impl Job {
    /// The job a resource declares, or `None` when it lacks a schedule or command (validation
    /// refuses that unless `ensure: absent`).
    fn desired(res: &Resource) -> Option<Job> {
        let env = match res.attr("env") {
            Some(Value::Map(map)) => map
                .iter()
                .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().into()))
                .collect(),
            _ => BTreeMap::new(),
        };
        Some(Job {
            env,
            schedule: normalize_schedule(res.attr_str("schedule")?),
            user: res.attr_str("user").unwrap_or(DEFAULT_USER).into(),
            command: res.attr_str("command")?.into(),
        })
    }

    /// The file steward writes for the job of resource `id`.
    fn render(&self, id: &str) -> String {
        let mut out = format!("{HEADER}{id}\n");
        for (name, value) in &self.env {
            out.push_str(&format!("{name}={value}\n"));
        }
        out.push_str(&format!(
            "{} {} {}\n",
            self.schedule,
            self.user,
            escape_percent(&self.command)
        ));
        out
    }

    /// Reads a file steward wrote for resource `id`: `None` when it has no such header or
    /// does not parse as [`Job::render`] writes it.
    fn parse(text: &str, id: &str) -> Option<Job> {
        let rest = text
            .strip_prefix(HEADER)?
            .strip_prefix(id)?
            .strip_prefix('\n')?;
        let mut lines: Vec<&str> = rest.lines().collect();
        let job_line = lines.pop()?;
        let mut env = BTreeMap::new();
        for line in lines {
            let (name, value) = line.split_once('=')?;
            if !is_env_name(name) {
                return None;
            }
            env.insert(name.to_string(), value.to_string());
        }
        let mut fields = job_line.splitn(7, ' ');
        let schedule: Vec<&str> = fields.by_ref().take(5).collect();
        let user = fields.next()?;
        let command = fields.next()?;
        if schedule.len() != 5 || schedule.iter().any(|f| f.is_empty()) || user.is_empty() {
            return None;
        }
        let job = Job {
            env,
            schedule: schedule.join(" "),
            user: user.into(),
            command: unescape_percent(command),
        };
        // Only what steward would write back is steward's: anything else is rewritten.
        (job.render(id) == text).then_some(job)
    }

    /// Reads a job file written by hand, as cron reads it, for `steward import`: comments
    /// and blank lines skipped, `NAME=VALUE` environment lines (spaces around `=` and
    /// quotes around the value allowed), and exactly one `SCHEDULE USER COMMAND` line. Why
    /// not, when the file holds what a `cron` resource cannot declare.
    fn parse_foreign(text: &str) -> Result<Job, String> {
        let mut env = BTreeMap::new();
        let mut jobs = Vec::new();
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((name, value)) = line.split_once('=')
                && is_env_name(name.trim())
            {
                let value = value.trim();
                let value = [('"', '"'), ('\'', '\'')]
                    .iter()
                    .find_map(|(open, close)| {
                        value
                            .strip_prefix(*open)
                            .and_then(|v| v.strip_suffix(*close))
                    })
                    .unwrap_or(value);
                env.insert(name.trim().to_string(), value.to_string());
                continue;
            }
            jobs.push(line);
        }
        let [line] = jobs[..] else {
            return Err(format!(
                "its job file holds {} job lines, and a `cron` resource declares exactly one",
                jobs.len()
            ));
        };
        let mut rest = line;
        let mut fields = Vec::new();
        for _ in 0..6 {
            let field = rest.split_whitespace().next().unwrap_or_default();
            fields.push(field);
            rest = rest.trim_start().get(field.len()..).unwrap_or_default();
        }
        let command = rest.trim();
        let schedule = fields[..5].join(" ");
        if let Some(problem) = schedule_problem(&schedule) {
            return Err(format!(
                "its job line `{line}` has no five-field schedule ({problem})"
            ));
        }
        let user = fields[5];
        if !NameRule::Account.accepts(user) || command.is_empty() {
            return Err(format!(
                "its job line `{line}` is not `SCHEDULE USER COMMAND`"
            ));
        }
        // cron turns an unescaped `%` into a newline and what follows into the command's
        // input, which the `command` attribute cannot say.
        if command.replace("\\%", "").contains('%') {
            return Err(format!(
                "its command `{command}` feeds input after an unescaped `%`, which a `cron` resource cannot declare"
            ));
        }
        Ok(Job {
            env,
            schedule,
            user: user.to_string(),
            command: unescape_percent(command),
        })
    }
}

/// A schedule with its fields separated by single spaces, as the job line holds it.
fn normalize_schedule(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// cron turns an unescaped `%` in a command into a newline: write every `%` as `\%` so the
/// command runs as declared.
fn escape_percent(command: &str) -> String {
    command.replace('%', "\\%")
}

/// The inverse of [`escape_percent`].
fn unescape_percent(command: &str) -> String {
    command.replace("\\%", "%")
}

impl ResourceType for Cron {
    fn kind(&self) -> &'static str {
        "cron"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn validate(&self, res: &Candidate<'_>, acc: &mut Vec<Diagnostic>) {
        check_schema_rules(res, &SCHEMA, acc);
        if let Some(schedule) = res.str("schedule")
            && let Some(problem) = schedule_problem(schedule)
        {
            acc.push(
                Diagnostic::error(
                    "schema::invalid_value",
                    res.span_of("schedule"),
                    format!("`{schedule}` is not a cron schedule: {problem}"),
                )
                .with_help("use five fields (minute hour day month weekday), e.g. \"0 */2 * * *\""),
            );
        }
        if let Some(user) = res.str("user")
            && !NameRule::Account.accepts(user)
        {
            acc.push(Diagnostic::error(
                "schema::invalid_value",
                res.span_of("user"),
                format!("`user` `{user}` is not a valid user name"),
            ));
        }
        if let Some(Value::Map(env)) = res.attrs.get("env").map(|a| &a.value) {
            for (name, value) in env {
                let problem = if !is_env_name(name) {
                    Some(format!("`{name}` is not an environment variable name"))
                } else if value.as_str().is_some_and(|v| v.contains('\n')) {
                    Some(format!("the value of `{name}` contains a newline"))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    acc.push(Diagnostic::error(
                        "schema::invalid_value",
                        res.span_of("env"),
                        format!("`env` of `{}`: {problem}", res.id),
                    ));
                }
            }
        }
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        let mut deps = vec![ImplicitDep {
            candidates: Candidates::Ancestors {
                kind: "directory",
                path: job_path(&res.id.name),
            },
            reason: "inside directory",
        }];
        if let Some(user) = res.attr_str("user") {
            deps.push(ImplicitDep {
                candidates: Candidates::one("user", user),
                reason: "runs as user",
            });
        }
        deps
    }

    fn managed_path<'r>(&self, res: &'r Resource) -> Option<Cow<'r, str>> {
        (res.attr_str("ensure") != Some("absent")).then(|| Cow::Owned(job_path(&res.id.name)))
    }

    fn diff(&self, res: &Resource, observed: &State) -> Change {
        let observed_text = observed.get("content").and_then(Value::as_str);
        let mut change = diff_attrs(res, observed, &["schedule", "command", "user", "env"]);
        let sensitive = res.attrs.iter().any(|(_, attr)| attr.sensitive);
        if change.action == Action::Delete {
            change.content = observed_text.map(|text| ContentChange {
                before: Some(Content::Text(text.into())),
                after: None,
                sensitive,
            });
            return change;
        }
        let Some(job) = Job::desired(res) else {
            return change;
        };
        let desired_text = job.render(&res.id.to_string());
        crate::resource::replace_if_in_the_way(res, observed, &mut change);
        if change.action == Action::Create {
            change.attrs.clear();
            push_attr(&mut change, res, "schedule", None, &job.schedule);
            push_attr(&mut change, res, "user", None, &job.user);
            push_attr(&mut change, res, "command", None, &job.command);
        } else if change.action != Action::Replace {
            if observed_text == Some(desired_text.as_str())
                && observed.get("mode").and_then(Value::as_str) == Some("0644")
            {
                return change;
            }
            change.action = Action::Update;
            match observed_text.and_then(|text| Job::parse(text, &res.id.to_string())) {
                Some(before) => {
                    for (name, before, after) in [
                        ("schedule", &before.schedule, &job.schedule),
                        ("user", &before.user, &job.user),
                        ("command", &before.command, &job.command),
                    ] {
                        if before != after {
                            push_attr(&mut change, res, name, Some(before), after);
                        }
                    }
                }
                None => change.reason = Some("not written by steward".into()),
            }
            if let Some(mode) = observed.get("mode").and_then(Value::as_str)
                && mode != "0644"
            {
                change.attrs.push(AttrChange {
                    name: "mode".into(),
                    before: Some(Value::String(mode.into())),
                    after: Some(Value::String("0644".into())),
                    sensitive: false,
                });
            }
        }
        if observed_text != Some(desired_text.as_str()) {
            change.content = Some(ContentChange {
                before: observed_text.map(|text| Content::Text(text.into())),
                after: Some(Content::Text(desired_text)),
                sensitive,
            });
        }
        change
    }

    fn provider(&self) -> &dyn Provider {
        self
    }

    /// A job file steward wrote declares what it read; one written by hand is read as cron
    /// reads it ([`Job::parse_foreign`]), and applying the document rewrites it in steward's
    /// form, after which a plan changes nothing. An empty `env` is left out.
    fn import_attrs(
        &self,
        id: &ResourceId,
        observed: &State,
        _live: bool,
    ) -> Result<Vec<(&'static str, Value)>, ImportError> {
        let mut attrs = import::attrs_from_state(id, &SCHEMA, observed)?;
        let present = observed.get("ensure").and_then(Value::as_str) == Some("present");
        if present && !observed.contains_key("schedule") {
            let text = observed
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let job = Job::parse_foreign(text).map_err(|why| ImportError::Unrepresentable {
                id: id.clone(),
                why,
            })?;
            let env = job
                .env
                .into_iter()
                .map(|(name, value)| (name, Value::String(value)))
                .collect();
            attrs = vec![
                ("schedule", Value::String(job.schedule)),
                ("command", Value::String(job.command)),
                ("user", Value::String(job.user)),
                ("env", Value::Map(env)),
            ];
        }
        attrs.retain(|(name, value)| {
            !(*name == "env" && matches!(value, Value::Map(map) if map.is_empty()))
        });
        Ok(attrs)
    }
}

/// Adds an attribute's before and after to a change, sensitive when the declared value is.
fn push_attr(change: &mut Change, res: &Resource, name: &str, before: Option<&str>, after: &str) {
    change.attrs.push(AttrChange {
        name: name.into(),
        before: before.map(|text| Value::String(text.into())),
        after: Some(Value::String(after.into())),
        sensitive: res.attrs.get(name).is_some_and(|attr| attr.sensitive),
    });
}

impl Provider for Cron {
    /// A job whose `/etc/cron.d` does not exist and is not declared cannot be written (an
    /// honest plan says so): the same refusal as a `file`'s missing parent.
    fn refusal(
        &self,
        ctx: &ProviderCtx<'_>,
        res: &Resource,
        observed: &State,
        declared: &Declared,
    ) -> Result<Option<String>, ProviderError> {
        let absent = observed.get("ensure").and_then(Value::as_str) == Some("absent");
        if res.attr_str("ensure") == Some("absent") || !absent {
            return Ok(None);
        }
        let located = ctx.locate(&job_path(&res.id.name))?;
        Ok(
            (located.entry.is_none() && !declared.paths.contains(CRON_DIR)).then(|| {
                format!(
                    "its parent directory {CRON_DIR} does not exist and no resource declares it"
                )
            }),
        )
    }

    fn read(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<State, ProviderError> {
        let located = ctx.locate(&job_path(&res.id.name))?;
        let (kind, meta) = fsutil::inspect_located(&located)?;
        let mut state = State::new();
        let ensure = match kind {
            Kind::File => "present",
            other => other.ensure(),
        };
        state.insert("ensure".into(), Value::String(ensure.into()));
        if let (Kind::File, Some(meta), Some(entry)) = (kind, meta, &located.entry) {
            let bytes = entry
                .read()
                .map_err(|err| ProviderError::io(entry.path(), err))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if let Some(job) = Job::parse(&text, &res.id.to_string()) {
                state.insert("schedule".into(), Value::String(job.schedule));
                state.insert("user".into(), Value::String(job.user));
                state.insert("command".into(), Value::String(job.command));
                let env = job
                    .env
                    .into_iter()
                    .map(|(name, value)| (name, Value::String(value)))
                    .collect();
                state.insert("env".into(), Value::Map(env));
            }
            state.insert("content".into(), Value::String(text));
            state.insert(
                "mode".into(),
                Value::String(format!("{:04o}", meta.mode & 0o7777)),
            );
        }
        Ok(state)
    }

    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        let entry = ctx.entry(&job_path(&res.id.name))?;
        let create = ctx.planned_absent() && res.attr_str("ensure") != Some("absent");
        let kind = if create {
            Kind::Absent
        } else {
            fsutil::inspect(&entry)?.0
        };
        if res.attr_str("ensure") == Some("absent") {
            return fsutil::remove(ctx, &entry, kind, &[Kind::File, Kind::Symlink], "file");
        }
        if matches!(kind, Kind::Directory | Kind::Other) {
            return Err(ProviderError::Refused {
                message: format!(
                    "a {} is in the way at {}; not replacing it",
                    kind.ensure(),
                    entry.path().display()
                ),
            });
        }
        let Some(job) = Job::desired(res) else {
            return Err(ProviderError::failed(format!(
                "`{}` needs `schedule` and `command`",
                res.id
            )));
        };
        let bytes = job.render(&res.id.to_string()).into_bytes();
        if kind == Kind::File {
            let existing = entry
                .read()
                .map_err(|err| ProviderError::io(entry.path(), err))?;
            let mode = fsutil::inspect(&entry)?.1.map(|meta| meta.mode & 0o7777);
            if existing == bytes && mode == Some(MODE) {
                return Ok(Applied::AlreadyConverged);
            }
        }
        if create {
            ctx.create_durably(&entry, &bytes, MODE, (None, None))?;
        } else {
            ctx.write_durably(&entry, &bytes, MODE, (None, None))?;
        }
        Ok(Applied::Converged { output: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            env: BTreeMap::from([
                ("MAILTO".to_string(), "ops@example.com".to_string()),
                ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ]),
            schedule: "0 3 * * *".into(),
            user: "backup".into(),
            command: "/usr/local/bin/backup --date $(date +%F)".into(),
        }
    }

    #[test]
    fn renders_header_env_then_the_job_line() {
        assert_eq!(
            job().render("cron:backup"),
            "# managed by steward: cron:backup\n\
             MAILTO=ops@example.com\n\
             PATH=/usr/bin:/bin\n\
             0 3 * * * backup /usr/local/bin/backup --date $(date +\\%F)\n"
        );
    }

    #[test]
    fn parses_what_it_renders() {
        let text = job().render("cron:backup");
        assert_eq!(Job::parse(&text, "cron:backup"), Some(job()));
        let bare = Job {
            env: BTreeMap::new(),
            ..job()
        };
        assert_eq!(
            Job::parse(&bare.render("cron:backup"), "cron:backup"),
            Some(bare)
        );
    }

    #[test]
    fn foreign_or_edited_files_do_not_parse() {
        let text = job().render("cron:backup");
        assert_eq!(Job::parse(&text, "cron:other"), None);
        assert_eq!(Job::parse("0 3 * * * root true\n", "cron:backup"), None);
        let edited = text.replace("0 3 * * *", "0  4 * * *");
        assert_eq!(Job::parse(&edited, "cron:backup"), None);
        let extra = format!("{text}# a comment\n");
        assert_eq!(Job::parse(&extra, "cron:backup"), None);
        assert_eq!(Job::parse("", "cron:backup"), None);
    }

    #[test]
    fn hand_written_files_are_read_as_cron_reads_them_for_import() {
        let text = "# nightly\nSHELL = \"/bin/sh\"\n\n  MAILTO=ops\n17 2 * * *\twww-data   /usr/bin/rotate  -q 50\\%\n";
        assert_eq!(
            Job::parse_foreign(text),
            Ok(Job {
                env: BTreeMap::from([
                    ("MAILTO".to_string(), "ops".to_string()),
                    ("SHELL".to_string(), "/bin/sh".to_string()),
                ]),
                schedule: "17 2 * * *".into(),
                user: "www-data".into(),
                command: "/usr/bin/rotate  -q 50%".into(),
            })
        );
        // What steward writes reads the same way.
        let rendered = job().render("cron:backup");
        assert_eq!(Job::parse_foreign(&rendered), Ok(job()));
        for (bad, why) in [
            ("", "0 job lines"),
            ("0 1 * * * root a\n0 2 * * * root b\n", "2 job lines"),
            ("@daily root true\n", "no five-field schedule"),
            ("0 1 * * * root\n", "not `SCHEDULE USER COMMAND`"),
            ("0 1 * * * root mail ops%hello\n", "unescaped `%`"),
        ] {
            let err = Job::parse_foreign(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn import_declares_a_hand_written_job_and_leaves_out_an_empty_env() {
        let id = ResourceId::new("cron", "rotate");
        let mut observed = State::new();
        observed.insert("ensure".into(), Value::String("present".into()));
        observed.insert(
            "content".into(),
            Value::String("5 4 * * * root /bin/true\n".into()),
        );
        let attrs = Cron.import_attrs(&id, &observed, false).unwrap();
        let names: Vec<&str> = attrs.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["schedule", "command", "user"]);
        observed.insert("content".into(), Value::String("# nothing\n".into()));
        let err = Cron.import_attrs(&id, &observed, false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`cron:rotate` cannot be imported: its job file holds 0 job lines"),
            "{err}"
        );
    }

    #[test]
    fn a_job_without_its_cron_d_is_refused_unless_declared() {
        use crate::resource::command::SystemRunner;
        use crate::resource::provider::testing::{TestNode, resource};
        let root = tempfile::tempdir().unwrap();
        let node = TestNode::at(root.path());
        let ctx = node.ctx(&SystemRunner);
        let res = resource(
            "cron",
            "backup",
            &[
                ("schedule", Value::String("0 3 * * *".into())),
                ("command", Value::String("true".into())),
            ],
        );
        let observed = Cron.read(&ctx, &res).unwrap();
        let refusal = |declared: &Declared| Cron.refusal(&ctx, &res, &observed, declared).unwrap();
        assert_eq!(
            refusal(&Declared::default()).as_deref(),
            Some("its parent directory /etc/cron.d does not exist and no resource declares it")
        );
        let declared = Declared {
            paths: ["/etc/cron.d".to_string()].into_iter().collect(),
            ..Declared::default()
        };
        assert_eq!(refusal(&declared), None);
        let gone = resource(
            "cron",
            "backup",
            &[("ensure", Value::String("absent".into()))],
        );
        assert_eq!(
            Cron.refusal(&ctx, &gone, &observed, &Declared::default())
                .unwrap(),
            None
        );
        std::fs::create_dir_all(root.path().join("etc/cron.d")).unwrap();
        let observed = Cron.read(&ctx, &res).unwrap();
        assert_eq!(
            Cron.refusal(&ctx, &res, &observed, &Declared::default())
                .unwrap(),
            None
        );
    }

    #[test]
    fn schedules_are_five_cron_fields() {
        assert_eq!(schedule_problem("0 */2 * * *"), None);
        assert_eq!(schedule_problem("*/5 1-5 * jan mon-fri"), None);
        assert!(schedule_problem("61 * * * *").is_some());
        assert_eq!(
            schedule_problem("every day").as_deref(),
            Some("has 2 fields, not five")
        );
        assert!(schedule_problem("0 0 * * * *").is_some());
    }

    #[test]
    fn job_names_follow_run_parts() {
        for good in ["backup", "log-rotate", "a_b", "X9"] {
            assert!(is_job_name(good), "{good}");
        }
        for bad in ["a.b", "", "a b", "a/b", "é"] {
            assert!(!is_job_name(bad), "{bad}");
        }
        let regex = regex::Regex::new(&format!("^(?:{})$", NAME_RULE.pattern)).unwrap();
        for sample in ["backup", "a.b", "", "a-b_c", &"x".repeat(256)] {
            assert_eq!(regex.is_match(sample), is_job_name(sample), "{sample}");
        }
    }
}
