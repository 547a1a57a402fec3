//! The contract between resource types and the rest of steward.
//!
//! Owns the [`ResourceType`] trait, attribute schemas ([`TypeSchema`], [`AttrSchema`],
//! [`AttrType`]), the change vocabulary ([`change`]), the provider contract ([`provider`]) and
//! the explicit [`Registry::builtin`] list of v1 types, one file per type.
//!
//! A type's schema, `validate`, `implicit_deps` and `diff` are pure and run in the planner.
//! Its provider (`read`, `apply`, `refresh`) is the impure half and runs on the node; the
//! helpers it shares live in [`fsutil`], [`accounts`] and [`command`].

pub mod accounts;
pub mod beneath;
pub mod change;
pub mod command;
pub mod durability;
pub mod error;
pub mod fsutil;
pub mod import;
pub mod provider;

mod cron;
mod directory;
mod exec;
mod file;
mod group;
mod line;
mod package;
mod service;
mod symlink;
mod user;

use std::borrow::Cow;

use crate::diag::{Diagnostic, Span};
use crate::model::{Attrs, Resource, ResourceId, Value};
use crate::resource::change::{Action, AttrChange, Change, State};
use crate::resource::provider::Provider;

/// The value shape of one attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrType {
    /// Any string.
    String,
    /// `true` or `false`.
    Bool,
    /// An integer in a range.
    Int {
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// A permission mode as an octal string, `"0644"`; normalized to four digits.
    Mode,
    /// An absolute, normalized path (no `..`, `.` or `//`).
    AbsPath,
    /// A path relative to the declaring document, staying inside the project.
    ProjectPath,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// A list of strings; a single string is a list of one.
    StringList,
    /// A map of string to string.
    StringMap,
    /// A command: a list of arguments, or a string split like a shell would (no shell runs).
    Command,
    /// A duration: seconds as an integer, or `"30s"`, `"5m"`, `"1h"`; normalized to seconds.
    Duration,
    /// A regular expression.
    Regex,
    /// `present`, `absent`, `latest` or a version string.
    PackageEnsure,
}

impl AttrType {
    /// How the type reads in messages and the schema.
    pub fn describe(self) -> String {
        match self {
            AttrType::String => "a string".into(),
            AttrType::Bool => "true or false".into(),
            AttrType::Int { min, max } => format!("an integer from {min} to {max}"),
            AttrType::Mode => "an octal mode string such as \"0644\"".into(),
            AttrType::AbsPath => "an absolute path".into(),
            AttrType::ProjectPath => "a path relative to the document".into(),
            AttrType::Enum(values) => format!("one of {}", values.join(", ")),
            AttrType::StringList => "a list of strings".into(),
            AttrType::StringMap => "a map of strings".into(),
            AttrType::Command => "a command (a string or a list of arguments)".into(),
            AttrType::Duration => "a duration such as 30, \"30s\", \"5m\" or \"1h\"".into(),
            AttrType::Regex => "a regular expression".into(),
            AttrType::PackageEnsure => "present, absent, latest or a version".into(),
        }
    }
}

/// One attribute of a type.
#[derive(Clone, Copy, Debug)]
pub struct AttrSchema {
    /// Its name.
    pub name: &'static str,
    /// Its value shape.
    pub ty: AttrType,
    /// One line for users (schema descriptions, docs).
    pub doc: &'static str,
    /// Whether it must be given.
    pub required: bool,
    /// What the value must satisfy beyond its type.
    pub rule: AttrRule,
}

impl AttrSchema {
    const fn with_rule(self, rule: AttrRule) -> AttrSchema {
        AttrSchema { rule, ..self }
    }
}

/// A rule on an attribute's value beyond its [`AttrType`]. Types check it in `validate`
/// ([`check_schema_rules`]) and the JSON Schema states it, from this one declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrRule {
    /// Nothing beyond the type.
    None,
    /// Not the empty string.
    NonEmpty,
    /// Text without a newline.
    SingleLine,
    /// A number above zero (a duration of at least one second).
    Positive,
}

const fn attr(name: &'static str, ty: AttrType, doc: &'static str) -> AttrSchema {
    AttrSchema {
        name,
        ty,
        doc,
        required: false,
        rule: AttrRule::None,
    }
}

const fn required(name: &'static str, ty: AttrType, doc: &'static str) -> AttrSchema {
    AttrSchema {
        name,
        ty,
        doc,
        required: true,
        rule: AttrRule::None,
    }
}

/// What a type's NAME must look like.
#[derive(Clone, Copy, Debug)]
pub enum NameRule {
    /// An absolute, normalized path.
    AbsPath,
    /// A Debian package name.
    Package,
    /// A systemd unit name.
    Service,
    /// A POSIX user or group name.
    Account,
    /// Any label.
    Label,
    /// A rule a type declares in its own file, so that a new type needs no variant here.
    Custom(&'static CustomNameRule),
}

/// A NAME rule declared by the type that uses it (see [`NameRule::Custom`]).
#[derive(Debug)]
pub struct CustomNameRule {
    /// Whether a NAME follows the rule.
    pub accepts: fn(&str) -> bool,
    /// The rule as an unanchored regular expression, as [`NameRule::pattern`] gives it.
    pub pattern: &'static str,
    /// What is wrong with a NAME that does not follow it, after the quoted NAME
    /// (`is not a valid job name`).
    pub problem: &'static str,
    /// The help line for a refused NAME.
    pub help: &'static str,
}

impl NameRule {
    /// Whether `name` follows the rule. Lowering reports a NAME for which this is false.
    pub fn accepts(self, name: &str) -> bool {
        match self {
            NameRule::AbsPath => check_abs_path(name).is_ok(),
            NameRule::Package => is_package_name(name),
            NameRule::Service => is_unit_name(name),
            NameRule::Account => is_account_name(name),
            NameRule::Label => !name.chars().any(char::is_control),
            NameRule::Custom(rule) => (rule.accepts)(name),
        }
    }

    /// Checks `name` against the rule: on failure, the problem and a help line for the
    /// `schema::invalid_name` diagnostic lowering reports.
    pub fn check(self, name: &str) -> Result<(), (String, String)> {
        if let NameRule::AbsPath = self {
            return check_abs_path(name).map_err(|p| {
                (
                    p,
                    "NAME is an absolute path such as `/etc/motd`".to_string(),
                )
            });
        }
        if self.accepts(name) {
            return Ok(());
        }
        Err(match self {
            NameRule::Package => (
                format!("`{name}` is not a valid package name"),
                "package names use lowercase letters, digits and `+ - .`".to_string(),
            ),
            NameRule::Service => (
                format!("`{name}` is not a valid unit name"),
                "unit names use letters, digits and `: _ . @ -`".to_string(),
            ),
            NameRule::Account => (
                format!("`{name}` is not a valid user or group name"),
                "start with a lowercase letter or `_`; use lowercase letters, digits, `_` and `-`; at most 32 characters".to_string(),
            ),
            NameRule::Custom(rule) => (format!("`{name}` {}", rule.problem), rule.help.to_string()),
            NameRule::AbsPath | NameRule::Label => (
                format!("`{}` contains control characters", name.escape_debug()),
                "use printable characters".to_string(),
            ),
        })
    }

    /// The same rule as a regular expression for the JSON Schema (ECMA-262 and Rust `regex`
    /// syntax alike), without anchors: a NAME follows the rule exactly when `^(?:PATTERN)$`
    /// matches it. A test holds [`NameRule::accepts`] and this to the same verdicts.
    pub fn pattern(self) -> &'static str {
        match self {
            NameRule::AbsPath => ABS_PATH_PATTERN,
            NameRule::Package => "[a-z0-9][a-z0-9+.-]+(?::[A-Za-z0-9-]+)?",
            NameRule::Service => "[-A-Za-z0-9:_.@\\\\]{1,255}",
            NameRule::Account => "[a-z_][a-z0-9_-]{0,31}|[a-z_][a-z0-9_-]{0,30}\\$",
            NameRule::Label => "[^\\u0000-\\u001F\\u007F-\\u009F]*",
            NameRule::Custom(rule) => rule.pattern,
        }
    }
}

/// [`check_abs_path`] as a regular expression, without anchors: `/`, or components that are
/// neither empty, `.` nor `..`, with an optional trailing `/`, and no NUL.
pub const ABS_PATH_PATTERN: &str = concat!(
    "/|(?:/(?:",
    "[^/.\\u0000][^/\\u0000]*",
    "|\\.[^/.\\u0000][^/\\u0000]*",
    "|\\.\\.[^/\\u0000]+",
    "))+/?"
);

/// A Debian package name, optionally with `:ARCH`.
fn is_package_name(name: &str) -> bool {
    let (base, arch) = name.split_once(':').unwrap_or((name, "x"));
    base.len() >= 2
        && base.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && base
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        && !arch.is_empty()
        && arch.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A systemd unit name.
fn is_unit_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.@-\\".contains(c))
}

/// A POSIX user or group name (a trailing `$` for machine accounts).
fn is_account_name(name: &str) -> bool {
    let core = name.strip_suffix('$').unwrap_or(name);
    !core.is_empty()
        && name.len() <= 32
        && core.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && core
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Everything the validator needs to know about a type.
#[derive(Debug)]
pub struct TypeSchema {
    /// One line for users.
    pub doc: &'static str,
    /// What NAME must look like.
    pub name_rule: NameRule,
    /// Attributes (relationship and `for_each`/`when` meta-attributes are common to all).
    pub attrs: &'static [AttrSchema],
    /// Groups of attributes of which at most one may be given.
    pub exclusive: &'static [&'static [&'static str]],
    /// Attributes that must be given unless `ensure: absent`.
    pub required_when_present: &'static [&'static str],
    /// Attributes that are an error with `ensure: absent` (they would have no effect).
    pub present_only: &'static [&'static str],
    /// For a type whose NAME is a label: the attribute that names the file when given.
    /// Without it, NAME must be an absolute path.
    pub path_attr: Option<&'static str>,
}

impl TypeSchema {
    /// Looks up an attribute.
    pub fn attr(&self, name: &str) -> Option<&AttrSchema> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

/// A rendered resource as a type sees it during validation.
pub struct Candidate<'a> {
    /// Its identity.
    pub id: &'a ResourceId,
    /// Its declaration key.
    pub span: Span,
    /// Rendered attributes.
    pub attrs: &'a Attrs,
}

impl Candidate<'_> {
    fn str(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).and_then(|attr| attr.value.as_str())
    }

    fn span_of(&self, name: &str) -> Span {
        self.attrs.get(name).map_or(self.span, |attr| attr.span)
    }
}

/// A resource this one comes after, when it is declared on the same node.
#[derive(Clone, Debug)]
pub struct ImplicitDep {
    /// Candidates, nearest first: the first one declared wins.
    pub candidates: Candidates,
    /// Why, for graph output and cycle messages.
    pub reason: &'static str,
}

/// The resources an [`ImplicitDep`] may point at, nearest first.
#[derive(Clone, Debug)]
pub enum Candidates {
    /// These resources.
    Ids(Vec<ResourceId>),
    /// The resources of `kind` named by the ancestors of this absolute path, nearest first.
    /// Kept as the path, not as one id per ancestor: the ancestors of a deep path are many,
    /// and long (their total length grows with the square of the depth).
    Ancestors {
        /// The kind of the candidates, such as `directory`.
        kind: &'static str,
        /// The absolute path whose ancestors name them.
        path: String,
    },
}

impl Candidates {
    /// One resource.
    pub fn one(kind: &str, name: &str) -> Candidates {
        Candidates::Ids(vec![ResourceId::new(kind, name)])
    }
}

/// The ancestors of an absolute path, nearest first (excluding `/`), as slices of it.
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut current = path.trim_end_matches('/');
    std::iter::from_fn(move || {
        let idx = current.rfind('/')?;
        current = &current[..idx];
        (!current.is_empty()).then_some(current)
    })
}

/// A kind of resource: its schema and its pure rules.
pub trait ResourceType: Send + Sync {
    /// The kind, such as `file`.
    fn kind(&self) -> &'static str;

    /// Attribute schema.
    fn schema(&self) -> &TypeSchema;

    /// Checks a rendered resource: the rules its schema declares ([`check_schema_rules`]),
    /// then any the schema cannot state. Pure; no IO.
    fn validate(&self, res: &Candidate<'_>, acc: &mut Vec<Diagnostic>) {
        check_schema_rules(res, self.schema(), acc);
    }

    /// Resources this one implicitly comes after (mgmt's AutoEdges, Puppet's autorequire).
    fn implicit_deps(&self, _res: &Resource) -> Vec<ImplicitDep> {
        Vec::new()
    }

    /// The change that would make `observed` match `res`. Pure and deterministic: the same
    /// inputs always give the same change.
    fn diff(&self, res: &Resource, observed: &State) -> Change {
        diff_attrs(res, observed, &["system"])
    }

    /// The provider that reads and converges this type on a node.
    fn provider(&self) -> &dyn Provider;

    /// Whether this type's `content`, `template` and `source` attributes name project
    /// content, which lowering resolves (reading it through the project's files) unless the
    /// resource is `ensure: absent`.
    fn has_project_content(&self) -> bool {
        false
    }

    /// Whether a refresh does anything for this resource (a service restarts, a command
    /// runs). Only a refreshable resource is refreshed by the resources that notify it.
    fn refreshable(&self, _res: &Resource) -> bool {
        false
    }

    /// How reports word a refresh of this type.
    fn refresh_words(&self) -> RefreshWords {
        RefreshWords::RUN
    }

    /// The absolute path this resource manages on the node, when it manages one and is
    /// present: a purging `directory` leaves these paths (and their ancestors) alone.
    fn managed_path<'r>(&self, _res: &'r Resource) -> Option<Cow<'r, str>> {
        None
    }

    /// The attributes `steward import` asks the provider to read, since providers read only
    /// what a resource declares: by default every attribute of the schema but `ensure`. A
    /// type with no state to read back refuses here, before anything is read.
    fn import_probe(&self) -> Result<Vec<&'static str>, import::ImportError> {
        Ok(import::probe_attrs(self.schema()))
    }

    /// The document attributes that declare `observed`, so that a plan of them changes
    /// nothing (`steward import`). `live` is false when the state was read under `--root`.
    /// By default every observed attribute of the schema ([`import::attrs_from_state`]).
    fn import_attrs(
        &self,
        id: &ResourceId,
        observed: &State,
        _live: bool,
    ) -> Result<Vec<(&'static str, Value)>, import::ImportError> {
        import::attrs_from_state(id, self.schema(), observed)
    }

    /// The accounts this resource makes on the node when it is present (`user`, `group`):
    /// an owner or group that names one is declared, so the plan does not refuse it.
    fn declared_accounts(&self, _res: &Resource) -> Vec<provider::Account> {
        Vec::new()
    }
}

/// How reports word a refresh of one type ([`ResourceType::refresh_words`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshWords {
    /// What a plan says will happen, such as `restarts`.
    pub planned: &'static str,
    /// What an apply report says happened, such as `restarted`.
    pub done: &'static str,
}

impl RefreshWords {
    /// A refresh that runs something: `runs` in a plan, `ran (refresh)` after an apply.
    pub const RUN: RefreshWords = RefreshWords {
        planned: "runs",
        done: "ran (refresh)",
    };
}

/// The path of a path type's resource (its NAME) while it is present.
fn present_path(res: &Resource) -> Option<Cow<'_, str>> {
    (res.attr_str("ensure") != Some("absent")).then_some(Cow::Borrowed(res.id.name.as_str()))
}

/// For the path types: when the resource should exist and the wrong kind of thing is at its
/// path (a directory where a file belongs), the change is a replace that says what is there.
fn replace_if_in_the_way(res: &Resource, observed: &State, change: &mut Change) {
    let observed_ensure = observed
        .get("ensure")
        .and_then(Value::as_str)
        .unwrap_or("absent");
    if res.attr_str("ensure") != Some("absent") && !matches!(observed_ensure, "present" | "absent")
    {
        change.action = Action::Replace;
        change.reason = Some(format!("a {observed_ensure} is in the way"));
    }
}

/// The usual diff: `ensure` decides create/delete; otherwise every desired attribute that
/// the provider observed (a key of `observed`) is compared. A create lists every desired
/// attribute except those in `not_state` (settings that are not observable state).
pub fn diff_attrs(res: &Resource, observed: &State, not_state: &[&str]) -> Change {
    let desired_ensure = res.attr_str("ensure").unwrap_or("present");
    let observed_ensure = observed
        .get("ensure")
        .and_then(Value::as_str)
        .unwrap_or("absent");
    let mut change = Change::new(res.id.clone(), Action::NoOp);
    if desired_ensure == "absent" {
        if observed_ensure != "absent" {
            change.action = Action::Delete;
            change.attrs.push(AttrChange {
                name: "ensure".into(),
                before: Some(Value::String(observed_ensure.into())),
                after: Some(Value::String("absent".into())),
                sensitive: false,
            });
        }
        return change;
    }
    let creating = observed_ensure == "absent";
    for (name, attr) in &res.attrs {
        if not_state.contains(&name.as_str()) || (creating && name == "ensure") {
            continue;
        }
        let before = observed.get(name);
        if !creating && before.is_none() {
            continue;
        }
        if name == "ensure" && !creating && before.and_then(Value::as_str) == Some(desired_ensure) {
            continue;
        }
        if creating || before != Some(&attr.value) {
            change.attrs.push(AttrChange {
                name: name.clone(),
                before: if creating { None } else { before.cloned() },
                after: Some(attr.value.clone()),
                sensitive: attr.sensitive,
            });
        }
    }
    change.action = if creating {
        Action::Create
    } else if change.attrs.is_empty() {
        Action::NoOp
    } else {
        Action::Update
    };
    change
}

/// The registered resource types. Built once per run (by the command line's entry point, or
/// by a program embedding steward) and passed down by reference: nothing below builds its own.
pub struct Registry {
    types: Vec<Box<dyn ResourceType>>,
}

/// A type whose kind is already registered ([`Registry::register`]).
#[derive(Debug, thiserror::Error)]
#[error("a resource type `{0}` is already registered")]
pub struct KindTaken(pub &'static str);

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Registry").field(&self.kinds()).finish()
    }
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new()
    }
}

impl Registry {
    /// A registry without types, to [`Registry::register`] types into.
    pub fn new() -> Registry {
        Registry { types: Vec::new() }
    }

    /// Adds a type. A kind is registered once: a second type of the same kind is refused.
    pub fn register(&mut self, ty: Box<dyn ResourceType>) -> Result<(), KindTaken> {
        if let Some(taken) = self.get(ty.kind()) {
            return Err(KindTaken(taken.kind()));
        }
        self.types.push(ty);
        Ok(())
    }

    /// The v1 core types, in one explicit list.
    pub fn builtin() -> Registry {
        Registry {
            types: vec![
                Box::new(file::File),
                Box::new(directory::Directory),
                Box::new(symlink::Symlink),
                Box::new(line::Line),
                Box::new(package::Package),
                Box::new(service::Service),
                Box::new(user::User),
                Box::new(group::Group),
                Box::new(exec::Exec),
                Box::new(cron::Cron),
            ],
        }
    }

    /// The type of a kind.
    pub fn get(&self, kind: &str) -> Option<&dyn ResourceType> {
        self.types
            .iter()
            .find(|ty| ty.kind() == kind)
            .map(|ty| ty.as_ref())
    }

    /// All kinds, in registration order.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.types.iter().map(|ty| ty.kind()).collect()
    }

    /// All types.
    pub fn iter(&self) -> impl Iterator<Item = &dyn ResourceType> {
        self.types.iter().map(|ty| ty.as_ref())
    }
}

// Attributes shared by several types.
const ENSURE_PRESENT_ABSENT: AttrSchema = attr(
    "ensure",
    AttrType::Enum(&["present", "absent"]),
    "present (default) or absent",
);
const MODE: AttrSchema = attr(
    "mode",
    AttrType::Mode,
    "permission bits, an octal string such as \"0644\"",
);
const OWNER: AttrSchema = attr("owner", AttrType::String, "owning user name");
const GROUP: AttrSchema = attr("group", AttrType::String, "owning group name");

/// Whether `path` is absolute and normalized: starts with `/`, no empty, `.` or `..` parts.
pub fn check_abs_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` is not an absolute path"));
    }
    if path.contains('\0') {
        return Err("the path contains a NUL byte".into());
    }
    if path == "/" {
        return Ok(());
    }
    if path.len() > PATH_MAX {
        return Err(format!(
            "`{}` is longer than 4,095 bytes, the longest path Linux accepts",
            clip(path)
        ));
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    for part in trimmed[1..].split('/') {
        match part {
            "" => return Err(format!("`{path}` has an empty path component (`//`)")),
            "." => return Err(format!("`{path}` has a `.` component")),
            ".." => return Err(format!("`{path}` has a `..` component")),
            part if part.len() > NAME_MAX => {
                return Err(format!(
                    "`{}` has a component longer than 255 bytes, the longest file name Linux accepts",
                    clip(path)
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The longest path Linux accepts, in bytes with the final NUL left out (`PATH_MAX`).
const PATH_MAX: usize = 4_095;

/// The longest file name Linux accepts, in bytes (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// The start of a long path, for a message.
fn clip(path: &str) -> String {
    match path.char_indices().nth(60) {
        Some((idx, _)) => format!("{}…", &path[..idx]),
        None => path.to_string(),
    }
}

/// Implicit edges of anything at a path: its nearest managed parent directory, and the user
/// and group that own it.
fn path_deps(res: &Resource, path: &str) -> Vec<ImplicitDep> {
    let mut deps = vec![ImplicitDep {
        candidates: Candidates::Ancestors {
            kind: "directory",
            path: path.to_string(),
        },
        reason: "inside directory",
    }];
    if let Some(owner) = res.attr_str("owner") {
        deps.push(ImplicitDep {
            candidates: Candidates::one("user", owner),
            reason: "owned by user",
        });
    }
    if let Some(group) = res.attr_str("group") {
        deps.push(ImplicitDep {
            candidates: Candidates::one("group", group),
            reason: "owned by group",
        });
    }
    deps
}

/// The checks a type's schema declares as data, in the order types report them:
/// `required_when_present`, `present_only`, `path_attr`, then each attribute's [`AttrRule`].
/// Every type's `validate` runs this first; `schema::json` states the same rules.
pub fn check_schema_rules(res: &Candidate<'_>, schema: &TypeSchema, acc: &mut Vec<Diagnostic>) {
    for name in schema.required_when_present {
        required_when_present(res, name, acc);
    }
    absent_with(res, schema.present_only, acc);
    if let Some(path_attr) = schema.path_attr
        && !res.attrs.contains_key(path_attr)
        && let Err(problem) = check_abs_path(&res.id.name)
    {
        acc.push(
            Diagnostic::error(
                "schema::invalid_name",
                res.span,
                format!("invalid name for `{}`: {problem}", res.id.kind),
            )
            .with_help(format!(
                "NAME is the file's absolute path; give `{path_attr}` to use a label as NAME"
            )),
        );
    }
    for attr in schema.attrs {
        let problem = match attr.rule {
            AttrRule::None => None,
            AttrRule::NonEmpty => (res.str(attr.name) == Some("")).then_some("is empty"),
            AttrRule::SingleLine => res
                .str(attr.name)
                .is_some_and(|text| text.contains('\n'))
                .then_some("contains a newline"),
            AttrRule::Positive => res
                .attrs
                .get(attr.name)
                .and_then(|a| a.value.as_int())
                .is_some_and(|number| number <= 0)
                .then_some("must be positive"),
        };
        if let Some(problem) = problem {
            acc.push(Diagnostic::error(
                "schema::invalid_value",
                res.span_of(attr.name),
                format!("`{}` {problem}", attr.name),
            ));
        }
    }
}

/// An error for each of `attrs` given with `ensure: absent`, where it would have no effect.
fn absent_with(res: &Candidate<'_>, attrs: &[&str], acc: &mut Vec<Diagnostic>) {
    if res.str("ensure") != Some("absent") {
        return;
    }
    for name in attrs {
        if res.attrs.contains_key(name) {
            acc.push(
                Diagnostic::error(
                    "schema::conflicting_attributes",
                    res.span_of(name),
                    format!(
                        "`{name}` has no effect on `{}` with `ensure: absent`",
                        res.id
                    ),
                )
                .with_label("remove this")
                .with_secondary(res.span_of("ensure"), "because of this"),
            );
        }
    }
}

/// An error when `name` is missing unless `ensure: absent`.
fn required_when_present(res: &Candidate<'_>, name: &str, acc: &mut Vec<Diagnostic>) {
    if res.str("ensure") != Some("absent") && !res.attrs.contains_key(name) {
        acc.push(
            Diagnostic::error(
                "schema::missing_attribute",
                res.span,
                format!("`{}` needs `{name}`", res.id),
            )
            .with_label(format!("`{name}` missing"))
            .with_help(format!("add `{name}`, or set `ensure: absent`")),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abs_paths() {
        assert!(check_abs_path("/etc/motd").is_ok());
        assert!(check_abs_path("/etc/").is_ok());
        assert!(check_abs_path("etc/motd").is_err());
        assert!(check_abs_path("/etc/../shadow").is_err());
        assert!(check_abs_path("/etc//x").is_err());
        assert!(check_abs_path("/etc/./x").is_err());
    }

    #[test]
    fn parents_nearest_first() {
        assert_eq!(ancestors("/a/b/c").collect::<Vec<_>>(), ["/a/b", "/a"]);
        assert_eq!(ancestors("/a/b/").collect::<Vec<_>>(), ["/a"]);
        assert_eq!(ancestors("/a").count(), 0);
    }

    #[test]
    fn paths_the_kernel_refuses_are_refused() {
        let long = format!("/{}", "v/".repeat(2_048));
        assert!(
            check_abs_path(&long)
                .unwrap_err()
                .contains("longer than 4,095 bytes")
        );
        let wide = format!("/srv/{}", "x".repeat(256));
        assert!(
            check_abs_path(&wide)
                .unwrap_err()
                .contains("longer than 255 bytes")
        );
        assert!(check_abs_path(&format!("/srv/{}", "x".repeat(255))).is_ok());
    }

    /// Each name rule's JSON Schema pattern gives its checker's verdict on a list of samples.
    #[test]
    fn name_patterns_match_checks() {
        let long_unit = format!("{}.service", "a".repeat(247));
        let samples = [
            "/etc/motd",
            "/",
            "/etc/",
            "//",
            "/etc//x",
            "/etc/./x",
            "/etc/../x",
            "/..",
            "/.x",
            "/..x",
            "/...",
            "/a/.",
            "/a/..",
            "/a\0b",
            "etc/motd",
            "",
            "nginx",
            "Nginx",
            "g++",
            "libc6:amd64",
            "libc6:",
            "libc6:a:b",
            "a",
            "0ad",
            "-a",
            "nginx.service",
            "getty@tty1.service",
            "a\\x2db.mount",
            "a b",
            "a/b",
            &long_unit,
            &long_unit[1..],
            "www-data",
            "_apt",
            "host$",
            "$",
            "a$$",
            "9a",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa$",
            "app-reload",
            "tab\there",
            "del\u{7f}",
            "c1\u{85}",
            "é",
            "nbsp\u{a0}",
        ];
        for rule in [
            NameRule::AbsPath,
            NameRule::Package,
            NameRule::Service,
            NameRule::Account,
            NameRule::Label,
        ] {
            let regex = regex::Regex::new(&format!("^(?:{})$", rule.pattern())).unwrap();
            for sample in samples {
                assert_eq!(
                    regex.is_match(sample),
                    rule.accepts(sample),
                    "{rule:?} {sample:?}"
                );
            }
        }
    }

    fn resource(kind: &str, name: &str, attrs: &[(&str, &str)]) -> Resource {
        let span = Span::new(crate::diag::SourceId(0), 0, 0);
        Resource {
            id: ResourceId::new(kind, name),
            span,
            source: crate::diag::SourceId(0),
            attrs: attrs
                .iter()
                .map(|(key, value)| {
                    let attr = crate::model::Attr {
                        value: Value::String((*value).into()),
                        span,
                        sensitive: false,
                    };
                    ((*key).to_string(), attr)
                })
                .collect(),
            relations: Vec::new(),
            association: None,
            secrets: Vec::new(),
        }
    }

    /// The kind-specific answers the rest of steward used to hard-code, now the types' own.
    #[test]
    fn types_answer_for_their_kind() {
        let registry = Registry::builtin();
        let ty = |kind: &str| registry.get(kind).unwrap();
        let service = resource("service", "nginx", &[]);
        let stopped = resource("service", "nginx", &[("ensure", "stopped")]);
        assert!(ty("service").refreshable(&service));
        assert!(!ty("service").refreshable(&stopped));
        assert!(ty("exec").refreshable(&resource("exec", "reload", &[])));
        assert!(!ty("file").refreshable(&resource("file", "/etc/motd", &[])));
        assert_eq!(ty("service").refresh_words().planned, "restarts");
        assert_eq!(ty("service").refresh_words().done, "restarted");
        assert_eq!(ty("exec").refresh_words(), RefreshWords::RUN);

        for kind in ["file", "directory", "symlink"] {
            let present = resource(kind, "/srv/a", &[]);
            let absent = resource(kind, "/srv/a", &[("ensure", "absent")]);
            assert_eq!(ty(kind).managed_path(&present).as_deref(), Some("/srv/a"));
            assert_eq!(ty(kind).managed_path(&absent), None);
        }
        assert_eq!(
            ty("line").managed_path(&resource("line", "/srv/a", &[])),
            None
        );

        let with_content: Vec<&str> = registry
            .iter()
            .filter(|ty| ty.has_project_content())
            .map(|ty| ty.kind())
            .collect();
        assert_eq!(with_content, ["file"]);
    }

    #[test]
    fn name_rules_give_their_message_and_help() {
        assert!(NameRule::Package.check("nginx").is_ok());
        let (problem, help) = NameRule::Package.check("Nginx").unwrap_err();
        assert_eq!(problem, "`Nginx` is not a valid package name");
        assert!(help.starts_with("package names use"));
        let (problem, _) = NameRule::AbsPath.check("etc/motd").unwrap_err();
        assert_eq!(problem, "`etc/motd` is not an absolute path");
        let (problem, help) = NameRule::Label.check("a\tb").unwrap_err();
        assert_eq!(
            (problem.as_str(), help.as_str()),
            (
                "`a\\tb` contains control characters",
                "use printable characters"
            )
        );
    }

    #[test]
    fn registry_refuses_a_kind_twice() {
        let mut registry = Registry::new();
        assert!(registry.register(Box::new(file::File)).is_ok());
        let taken = registry.register(Box::new(file::File)).unwrap_err();
        assert_eq!(taken.0, "file");
        assert_eq!(registry.kinds(), ["file"]);
    }

    #[test]
    fn registry_has_unique_kinds() {
        let kinds = Registry::builtin().kinds();
        let mut sorted = kinds.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(kinds.len(), sorted.len());
    }
}
