//! Plans and apply results for people (grouped per node, `+ ~ -` markers, unified diffs) and
//! for machines (versioned JSON, also the saved-plan file format).
//!
//! A sensitive value, and every content line derived from one, renders as `(sensitive)`.

use std::fmt::Write;

use serde::Serialize;

use crate::exec::{Outcome, RunReport};
use crate::model::{self, Value};
use crate::plan::{NodePlan, Plan, PlannedChange, Summary};
use crate::resource::change::{Action, AttrChange, Change, Content, ContentChange};
use crate::resource::provider::REFUSED;
use crate::resource::{RefreshWords, Registry};

/// Version of the JSON plan below; bump on a breaking change.
pub const FORMAT_VERSION: &str = "1";

/// Marks a JSON document as a saved plan.
pub const PLAN_KIND: &str = "steward-plan";

/// Lines of content shown for a file being created before the rest is elided.
const MAX_CREATE_LINES: usize = 200;

/// Terminal colours, or none.
#[derive(Clone, Copy)]
pub struct Style {
    color: bool,
}

impl Style {
    /// Colours on or off.
    pub fn new(color: bool) -> Style {
        Style { color }
    }

    pub(crate) fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn action(self, action: Action, text: &str) -> String {
        match action {
            Action::Create => self.paint("32", text),
            Action::Delete => self.paint("31", text),
            Action::Update | Action::Replace => self.paint("33", text),
            Action::Run => self.paint("36", text),
            Action::NoOp => text.to_string(),
        }
    }
}

/// The plan header for `--resource` and `--exclude`: one line per flag given, before the
/// plan, so a narrowed plan never reads as the whole one. Empty when neither was given.
pub fn targeting_header(resources: &[String], excludes: &[String]) -> String {
    let mut out = String::new();
    if !resources.is_empty() {
        let _ = writeln!(
            out,
            "Only {} and what {} on (--resource).",
            resources.join(", "),
            if resources.len() == 1 {
                "it depends"
            } else {
                "they depend"
            }
        );
    }
    if !excludes.is_empty() {
        let _ = writeln!(
            out,
            "Leaving out {} and what depends on {} (--exclude).",
            excludes.join(", "),
            if excludes.len() == 1 { "it" } else { "them" }
        );
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// The human plan: per node, each change with its attributes and content diff, then a summary.
pub fn human(plan: &Plan, nodes: &[&model::Node], style: Style) -> String {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_human(&mut out, plan, nodes, style);
    String::from_utf8_lossy(&out).into_owned()
}

/// [`human`], written as it is rendered: a plan of thousands of created files is never held
/// whole in memory.
pub fn write_human(
    writer: &mut dyn std::io::Write,
    plan: &Plan,
    nodes: &[&model::Node],
    style: Style,
) -> std::io::Result<()> {
    let mut out = String::new();
    for (node_plan, node) in plan.nodes.iter().zip(nodes) {
        let changed: Vec<&PlannedChange> = node_plan
            .changes
            .iter()
            .filter(|c| c.is_change() || c.change.is_err())
            .collect();
        node_head(
            &mut out,
            &node_plan.node,
            changed.is_empty().then_some(node_plan.changes.len()),
        );
        for planned in changed {
            let res = &node.resources[planned.resource];
            human_change(&mut out, planned, res, style);
            if out.len() > 64 * 1024 {
                writer.write_all(out.as_bytes())?;
                out.clear();
            }
        }
    }
    summary_line(&mut out, plan.summary(), plan.has_changes());
    writer.write_all(out.as_bytes())
}

/// A node's line in a plan: `NAME:` before its changes, or, when `unchanged` holds its
/// number of resources, that they all match.
fn node_head(out: &mut String, node: &str, unchanged: Option<usize>) {
    let _ = match unchanged {
        Some(n) => writeln!(
            out,
            "{node}: {} match their documents",
            count(n, "resource")
        ),
        None => writeln!(out, "{node}:"),
    };
}

/// The plan's last line: the counts by action, or that nothing changes.
fn summary_line(out: &mut String, summary: Summary, has_changes: bool) {
    if !has_changes && summary.errors == 0 {
        out.push_str("\nNo changes. Every node matches its documents.\n");
    } else {
        let _ = write!(
            out,
            "\nPlan: {} to create, {} to update, {} to replace, {} to delete, {} to run.",
            summary.create, summary.update, summary.replace, summary.delete, summary.run
        );
        let unreadable = summary.errors - summary.refused;
        if unreadable > 0 {
            let _ = write!(out, " {unreadable} could not be read.");
        }
        if summary.refused > 0 {
            let _ = write!(out, " {} would be refused.", summary.refused);
        }
        out.push('\n');
    }
}

/// How far a change's lines are indented under their resource in a plan.
const INDENT: &str = "      ";

fn human_change(out: &mut String, planned: &PlannedChange, res: &model::Resource, style: Style) {
    let change = match &planned.change {
        Ok(change) => change,
        Err(message) => {
            resource_head(out, &res.id, Head::Error(message), style);
            return;
        }
    };
    let refreshed_by = (!planned.refreshed_by.is_empty()).then(|| {
        let sources: Vec<String> = planned
            .refreshed_by
            .iter()
            .map(|id| id.to_string())
            .collect();
        (planned.refresh_words.planned, sources.join(", "))
    });
    let head = Head::Change {
        action: change.action,
        reason: change.reason.as_deref(),
        refreshed_by,
    };
    resource_head(out, &res.id, head, style);
    change_lines(out, INDENT, change, res, style);
}

/// What heads a resource in a plan.
enum Head<'a> {
    /// It could not be read, or applying would refuse it (the message starts with
    /// [`REFUSED`]).
    Error(&'a str),
    /// It changes.
    Change {
        /// The action (no-op: only refreshed, shown as a run).
        action: Action,
        /// Why, as the provider says.
        reason: Option<&'a str>,
        /// The type's word for a refresh and the resources that notify it.
        refreshed_by: Option<(&'a str, String)>,
    },
}

/// Writes a resource's line in a plan: its marker, address, reason and refreshes, or why it
/// cannot be read or applied.
fn resource_head(out: &mut String, id: &dyn std::fmt::Display, head: Head<'_>, style: Style) {
    let (action, reason, refreshed_by) = match head {
        Head::Error(message) => {
            let x = style.paint("31", "x");
            let _ = match message.strip_prefix(REFUSED) {
                Some(why) => writeln!(out, "  {x} {id}: apply would refuse: {why}"),
                None => writeln!(out, "  {x} {id}: cannot read: {message}"),
            };
            return;
        }
        Head::Change {
            action,
            reason,
            refreshed_by,
        } => (action, reason, refreshed_by),
    };
    let action = if action == Action::NoOp {
        Action::Run
    } else {
        action
    };
    let _ = write!(out, "  {} {id}", style.action(action, action.symbol()));
    if let Some(reason) = reason {
        let _ = write!(out, " ({reason})");
    }
    if let Some((verb, sources)) = refreshed_by {
        let _ = write!(out, " ({verb}: refreshed by {sources})");
    }
    out.push('\n');
}

/// A change's attribute lines and content diff, without colour or header: what a stored run
/// keeps of a drifted or changed resource (sensitive values stay `(sensitive)`).
pub fn change_text(change: &Change, res: &model::Resource) -> String {
    let mut out = String::new();
    change_lines(&mut out, "", change, res, Style::new(false));
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

/// Writes a change's text as [`change_text`] made it (a stored run's diff), each line after
/// `indent` and painted as a plan paints it: what a report of the run shows under the
/// resource, the same lines the live plan showed.
pub fn write_change_text(out: &mut String, indent: &str, text: &str, style: Style) {
    for line in text.lines() {
        out.push_str(indent);
        out.push_str(&paint_diff_line(style, line));
        out.push('\n');
    }
}

/// A line of a change's text in its colour: added lines green, removed lines red, hunk
/// headers cyan, the rest as it is.
fn paint_diff_line(style: Style, line: &str) -> String {
    match line.as_bytes().first() {
        Some(b'+') if !line.starts_with("+++") => style.paint("32", line),
        Some(b'-') if !line.starts_with("---") => style.paint("31", line),
        Some(b'@') => style.paint("36", line),
        _ => line.to_string(),
    }
}

/// A change's marker (`+`, `~`, `-/+`, `-`, `!`) in its action's colour, as plans and apply
/// results show it.
pub fn action_marker(action: Action, style: Style) -> String {
    style.action(action, action.symbol())
}

/// What an apply's output says it did for an action: `created`, `updated`, `replaced`,
/// `deleted`, `ran`.
pub fn done_word(action: Action) -> &'static str {
    match action {
        Action::Create => "created",
        Action::Delete => "deleted",
        Action::Replace => "replaced",
        Action::Run => "ran",
        Action::Update | Action::NoOp => "updated",
    }
}

/// The action named by [`Action::as_str`] (as a stored run keeps it), but no-op.
pub fn parse_action(name: &str) -> Option<Action> {
    Action::from_name(name).filter(|action| *action != Action::NoOp)
}

/// Writes a change's attribute lines and content, each line after `indent`.
fn change_lines(
    out: &mut String,
    indent: &str,
    change: &Change,
    res: &model::Resource,
    style: Style,
) {
    for attr in &change.attrs {
        out.push_str(indent);
        attr_line(out, attr);
    }
    if let Some(content) = &change.content {
        content_lines(out, indent, res, change, content, style);
    }
}

/// Writes `name: after` (a created attribute) or `name: before → after`, and a line end.
fn attr_line(out: &mut String, attr: &AttrChange) {
    let show = |out: &mut String, value: &Option<Value>| {
        let _ = match value {
            _ if attr.sensitive => write!(out, "(sensitive)"),
            Some(value) => write!(out, "{value}"),
            None => write!(out, "(none)"),
        };
    };
    out.push_str(&attr.name);
    out.push_str(": ");
    if !matches!((&attr.before, &attr.after), (None, Some(_))) {
        show(out, &attr.before);
        out.push_str(" → ");
    }
    show(out, &attr.after);
    out.push('\n');
}

fn content_lines(
    out: &mut String,
    indent: &str,
    res: &model::Resource,
    change: &Change,
    content: &ContentChange,
    style: Style,
) {
    if content.sensitive {
        let _ = writeln!(out, "{indent}content: (sensitive)");
        return;
    }
    let path = res.id.name.as_str();
    let before = content.before.as_ref().map(|c| (c, c.text(res)));
    let after = content.after.as_ref().map(|c| (c, c.text(res)));
    match (before, after) {
        (Some((_, Some(before))), Some((_, Some(after)))) => {
            let diff = similar::TextDiff::from_lines(before, after);
            let unified = diff
                .unified_diff()
                .context_radius(3)
                .header(path, path)
                .to_string();
            for line in unified.lines() {
                let _ = writeln!(out, "{indent}{}", paint_diff_line(style, line));
            }
            if !after.ends_with('\n') && !after.is_empty() {
                let _ = writeln!(out, "{indent}\\ No newline at end of file");
            }
        }
        (None, Some((_, Some(after)))) => {
            let _ = writeln!(out, "{indent}content:");
            // Written straight into `out`: a cold plan of thousands of files shows millions
            // of lines, and a String per line is most of its cost.
            let (open, close) = if style.color {
                ("\x1b[32m", "\x1b[0m")
            } else {
                ("", "")
            };
            let mut lines = lines(after);
            for line in lines.by_ref().take(MAX_CREATE_LINES) {
                out.reserve(line.len() + indent.len() + 2 + open.len() + close.len());
                out.push_str(indent);
                out.push_str(open);
                out.push('+');
                out.push_str(line);
                out.push_str(close);
                out.push('\n');
            }
            let n_more = lines.count();
            if n_more > 0 {
                let _ = writeln!(out, "{indent}... {n_more} more lines");
            }
        }
        (before, _) if change.action == Action::Delete => {
            let _ = writeln!(
                out,
                "{indent}content: {} → (none)",
                describe(before.map(|(c, _)| c), res)
            );
        }
        (before, after) => {
            let _ = writeln!(
                out,
                "{indent}content: {} → {}",
                describe(before.map(|(c, _)| c), res),
                describe(after.map(|(c, _)| c), res)
            );
        }
    }
}

/// [`str::lines`] with a vectorized search for line ends: a cold plan of thousands of files
/// shows millions of lines.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match memchr::memchr(b'\n', rest.as_bytes()) {
            Some(end) => {
                let line = &rest[..end];
                rest = &rest[end + 1..];
                Some(line.strip_suffix('\r').unwrap_or(line))
            }
            // A last line without a line end keeps a `\r` it ends with, as `str::lines` does.
            None => Some(std::mem::take(&mut rest)),
        }
    })
}

fn describe(content: Option<&Content>, res: &model::Resource) -> String {
    match content {
        None => "(none)".to_string(),
        Some(Content::Binary { len, sha256 }) => {
            format!("{} of binary, {sha256}", count(*len, "byte"))
        }
        Some(text) => format!(
            "{} of text",
            count(text.text(res).map_or(0, str::len), "byte")
        ),
    }
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Where a plan came from, recorded in its JSON so a saved plan can be checked before apply.
pub struct Origin<'a> {
    /// The project path, relative to the directory the plan was made in (local mode), or
    /// as the controller was sent it.
    pub project: &'a str,
    /// The root acted on.
    pub root: &'a str,
    /// Digest of every document, parameter override and the root.
    pub documents_digest: &'a str,
    /// Each document's digest by its path in the project, so a refused apply names the
    /// documents that changed (empty: not recorded).
    pub documents: &'a std::collections::BTreeMap<String, String>,
    /// Every `--target`, joined by commas (a saved plan's apply must select the same).
    pub target: Option<&'a str>,
    /// `--resource`s the plan was narrowed to (a saved plan's apply must give the same).
    pub resources: &'a [String],
    /// `--exclude`s the plan left out (a saved plan's apply must give the same).
    pub excludes: &'a [String],
    /// The parameter values the plan was made with (`--params-file`, `STEWARD_PARAM_*`,
    /// `--param`): a saved plan applies with them.
    pub parameters: &'a std::collections::BTreeMap<String, PlanParameter>,
}

/// A parameter value a plan was made with: the text itself, or only its hash
/// ([`parameter_hash`]) when the parameter is sensitive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanParameter {
    /// The text, as `--param NAME=VALUE` takes it.
    Value(String),
    /// `blake3:` and the hex digest of the text of a sensitive value.
    Hash(String),
}

/// The hash a saved plan keeps of a sensitive parameter's text.
pub fn parameter_hash(text: &str) -> String {
    format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex())
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'static str,
    kind: &'static str,
    steward_version: &'static str,
    project: &'a str,
    root: &'a str,
    documents_digest: &'a str,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    documents: &'a std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    resources: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    excludes: &'a [String],
    parameters: &'a std::collections::BTreeMap<String, PlanParameter>,
    summary: JsonSummary,
    nodes: Vec<JsonNodePlan<'a>>,
}

#[derive(Serialize)]
struct JsonSummary {
    create: usize,
    update: usize,
    replace: usize,
    delete: usize,
    run: usize,
    errors: usize,
    refused: usize,
    changes: bool,
}

#[derive(Serialize)]
struct JsonNodePlan<'a> {
    name: &'a str,
    changes: Vec<JsonChange>,
}

#[derive(Serialize)]
struct JsonChange {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    name: String,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    attributes: Vec<JsonAttr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<JsonContent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    refreshed_by: Vec<String>,
    /// The type's word for a refresh (`restarts`), when `refreshed_by` is not empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The lines the human plan shows under the resource ([`change_text`]), for `show`.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    /// Fingerprint of the observed state the change was computed from.
    observed: String,
}

#[derive(Serialize)]
struct JsonAttr {
    name: String,
    before: serde_json::Value,
    after: serde_json::Value,
    sensitive: bool,
}

#[derive(Serialize)]
struct JsonContent {
    sensitive: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

/// A value as JSON; sensitive values become the string `(sensitive)`.
pub fn json_value(value: Option<&Value>, sensitive: bool) -> serde_json::Value {
    match value {
        None => serde_json::Value::Null,
        Some(_) if sensitive => serde_json::Value::String("(sensitive)".into()),
        Some(value) => to_json(value),
    }
}

fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(flag) => serde_json::Value::Bool(*flag),
        Value::Int(number) => serde_json::Value::from(*number),
        Value::Float(number) => serde_json::Value::from(*number),
        Value::String(text) => serde_json::Value::String(text.clone()),
        Value::Bytes(bytes) => serde_json::json!({ "bytes": bytes.len() }),
        Value::List(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

fn json_content(res: &model::Resource, content: &ContentChange) -> JsonContent {
    if content.sensitive {
        return JsonContent {
            sensitive: true,
            diff: None,
            before: None,
            after: None,
        };
    }
    let path = res.id.name.as_str();
    // Text (or nothing) on both sides gives a diff; binary content is described.
    fn text<'a>(c: &'a Option<Content>, res: &'a model::Resource) -> Option<&'a str> {
        match c {
            None => Some(""),
            Some(c) => c.text(res),
        }
    }
    let described = |c: &Option<Content>| match (c, text(c, res)) {
        (Some(c), None) => Some(describe(Some(c), res)),
        _ => None,
    };
    let diff = match (text(&content.before, res), text(&content.after, res)) {
        (Some(before), Some(after)) => Some(
            similar::TextDiff::from_lines(before, after)
                .unified_diff()
                .context_radius(3)
                .header(path, path)
                .to_string(),
        ),
        _ => None,
    };
    JsonContent {
        sensitive: false,
        diff,
        before: described(&content.before),
        after: described(&content.after),
    }
}

fn json_change(planned: &PlannedChange, res: &model::Resource) -> JsonChange {
    let mut json = JsonChange {
        id: res.id.to_string(),
        kind: res.id.kind.clone(),
        name: res.id.name.clone(),
        action: planned.action().as_str(),
        reason: None,
        attributes: Vec::new(),
        content: None,
        refreshed_by: planned
            .refreshed_by
            .iter()
            .map(|id| id.to_string())
            .collect(),
        refresh: (!planned.refreshed_by.is_empty()).then_some(planned.refresh_words.planned),
        error: None,
        text: None,
        observed: planned.fingerprint.clone(),
    };
    match &planned.change {
        Ok(change) => {
            json.reason = change.reason.clone();
            json.attributes = change
                .attrs
                .iter()
                .map(|a| JsonAttr {
                    name: a.name.clone(),
                    before: json_value(a.before.as_ref(), a.sensitive),
                    after: json_value(a.after.as_ref(), a.sensitive),
                    sensitive: a.sensitive,
                })
                .collect();
            json.content = change.content.as_ref().map(|c| json_content(res, c));
            if planned.is_change() {
                json.text = Some(change_text(change, res)).filter(|text| !text.is_empty());
            }
        }
        Err(message) => json.error = Some(message.clone()),
    }
    json
}

/// The plan as JSON (see docs/reference/json.md); also the saved-plan format.
pub fn json(plan: &Plan, nodes: &[&model::Node], origin: &Origin<'_>) -> String {
    let summary = plan.summary();
    let json = JsonPlan {
        format_version: FORMAT_VERSION,
        kind: PLAN_KIND,
        steward_version: env!("CARGO_PKG_VERSION"),
        project: origin.project,
        root: origin.root,
        documents_digest: origin.documents_digest,
        documents: origin.documents,
        target: origin.target,
        resources: origin.resources,
        excludes: origin.excludes,
        parameters: origin.parameters,
        summary: JsonSummary {
            create: summary.create,
            update: summary.update,
            replace: summary.replace,
            delete: summary.delete,
            run: summary.run,
            errors: summary.errors,
            refused: summary.refused,
            changes: plan.has_changes(),
        },
        nodes: plan
            .nodes
            .iter()
            .zip(nodes)
            .map(
                |(node_plan, node): (&NodePlan, &&model::Node)| JsonNodePlan {
                    name: &node_plan.node,
                    changes: node_plan
                        .changes
                        .iter()
                        .map(|p| json_change(p, &node.resources[p.resource]))
                        .collect(),
                },
            )
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
    text.push('\n');
    text
}

/// A saved plan (the JSON above) as `steward show` renders it again: what the human plan is
/// made of.
#[derive(serde::Deserialize)]
pub struct SavedView {
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    excludes: Vec<String>,
    nodes: Vec<SavedViewNode>,
}

#[derive(serde::Deserialize)]
struct SavedViewNode {
    name: String,
    changes: Vec<SavedViewChange>,
}

#[derive(serde::Deserialize)]
struct SavedViewChange {
    id: String,
    action: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    refreshed_by: Vec<String>,
    #[serde(default)]
    refresh: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

impl SavedViewChange {
    fn action(&self) -> Action {
        Action::from_name(&self.action).unwrap_or(Action::NoOp)
    }

    /// As [`PlannedChange::is_change`], or an error.
    fn is_shown(&self) -> bool {
        self.error.is_some() || self.action() != Action::NoOp || !self.refreshed_by.is_empty()
    }
}

/// A saved plan for people, as `plan` printed it when it was made: the `--resource` and
/// `--exclude` header, per node each change with the lines under it, then the summary. A
/// plan saved before plans kept those lines shows each change without them.
pub fn saved_human(saved: &SavedView, style: Style) -> String {
    let mut out = targeting_header(&saved.resources, &saved.excludes);
    let mut summary = Summary::default();
    let mut has_changes = false;
    for node in &saved.nodes {
        let changed: Vec<&SavedViewChange> = node.changes.iter().filter(|c| c.is_shown()).collect();
        node_head(
            &mut out,
            &node.name,
            changed.is_empty().then_some(node.changes.len()),
        );
        for change in &node.changes {
            let action = change.action();
            match (&change.error, action) {
                (Some(message), _) => {
                    summary.errors += 1;
                    summary.refused += usize::from(message.starts_with(REFUSED));
                }
                (None, Action::Create) => summary.create += 1,
                (None, Action::Update) => summary.update += 1,
                (None, Action::Replace) => summary.replace += 1,
                (None, Action::Delete) => summary.delete += 1,
                (None, Action::Run) => summary.run += 1,
                (None, Action::NoOp) => summary.run += usize::from(!change.refreshed_by.is_empty()),
            }
            has_changes |= change.error.is_none() && change.is_shown();
        }
        for change in changed {
            let head = match &change.error {
                Some(message) => Head::Error(message),
                None => Head::Change {
                    action: change.action(),
                    reason: change.reason.as_deref(),
                    refreshed_by: (!change.refreshed_by.is_empty()).then(|| {
                        (
                            change.refresh.as_deref().unwrap_or("runs"),
                            change.refreshed_by.join(", "),
                        )
                    }),
                },
            };
            resource_head(&mut out, &change.id, head, style);
            if let Some(text) = &change.text {
                write_change_text(&mut out, INDENT, text, style);
            }
        }
    }
    summary_line(&mut out, summary, has_changes);
    out
}

/// The result of an apply for people: what changed, failed or was skipped, then a summary.
/// `registry` words each refresh as the resource's type does.
pub fn human_apply(reports: &[RunReport], registry: &Registry, style: Style) -> String {
    let mut out = String::new();
    let (mut changed, mut failed, mut skipped, mut unchanged) = (0, 0, 0, 0);
    for report in reports {
        let _ = writeln!(out, "{}:", report.node);
        for outcome in &report.outcomes {
            let id = &outcome.id;
            match &outcome.outcome {
                Outcome::Unchanged => unchanged += 1,
                Outcome::Changed { refreshed, .. } => {
                    changed += 1;
                    let action = outcome.action.unwrap_or(Action::Update);
                    let verb = done_word(action);
                    let refreshed = if *refreshed { " and refreshed" } else { "" };
                    let _ = writeln!(
                        out,
                        "  {} {id}: {verb}{refreshed}",
                        action_marker(action, style)
                    );
                }
                Outcome::Refreshed { .. } => {
                    changed += 1;
                    let verb = registry
                        .get(&id.kind)
                        .map_or(RefreshWords::RUN, |ty| ty.refresh_words())
                        .done;
                    let _ = writeln!(out, "  {} {id}: {verb}", style.action(Action::Run, "!"));
                }
                Outcome::Failed { error, output } => {
                    failed += 1;
                    let _ = writeln!(out, "  {} {id}: failed: {error}", style.paint("31", "x"));
                    if let Some(output) = output {
                        for line in output
                            .stderr
                            .lines()
                            .rev()
                            .take(5)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                        {
                            let _ = writeln!(out, "      {line}");
                        }
                    }
                }
                Outcome::Skipped { because } => {
                    skipped += 1;
                    let _ = writeln!(
                        out,
                        "  {} {id}: skipped because {because} failed",
                        style.paint("33", "o")
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "\nApply: {changed} changed, {failed} failed, {skipped} skipped, {unchanged} unchanged."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{SourceId, Span};
    use crate::model::{Attr, ResourceId};

    fn file_with(content: &str) -> model::Resource {
        let span = Span::new(SourceId(0), 0, 0);
        let attr = |value: Value| Attr {
            value,
            span,
            sensitive: false,
        };
        model::Resource {
            id: ResourceId::new("file", "/etc/motd"),
            span,
            source: SourceId(0),
            attrs: [
                ("content".to_string(), attr(Value::String(content.into()))),
                ("mode".to_string(), attr(Value::String("0644".into()))),
            ]
            .into_iter()
            .collect(),
            relations: Vec::new(),
            association: None,
            secrets: Vec::new(),
        }
    }

    fn change(action: Action, before: Option<Content>) -> Change {
        let mut change = Change::new(ResourceId::new("file", "/etc/motd"), action);
        change.content = Some(ContentChange {
            before,
            after: Some(Content::Desired),
            sensitive: false,
        });
        change
    }

    /// A stored change's text is written back as the plan wrote it under its resource.
    #[test]
    fn stored_change_text_renders_as_the_plan_did() {
        let res = file_with("one\ntwo\n");
        let updated = change(Action::Update, Some(Content::Text("one\n".into())));
        for style in [Style::new(false), Style::new(true)] {
            let mut live = String::new();
            change_lines(&mut live, INDENT, &updated, &res, style);
            let mut stored = String::new();
            write_change_text(&mut stored, INDENT, &change_text(&updated, &res), style);
            assert_eq!(stored, live);
        }
        for action in [
            Action::Create,
            Action::Update,
            Action::Replace,
            Action::Delete,
        ] {
            assert_eq!(parse_action(action.as_str()), Some(action));
        }
        assert_eq!(parse_action("no-op"), None);
    }

    /// `show` renders a saved plan's JSON as the plan printed it: changes with their lines,
    /// a refresh, a read error, a refusal, the summary.
    #[test]
    fn a_saved_plan_renders_as_the_plan_did() {
        let mut resources = Vec::new();
        let mut changes = Vec::new();
        let outcomes: [Result<Change, String>; 4] = [
            Ok(change(Action::Update, Some(Content::Text("one\n".into())))),
            Ok(Change::new(ResourceId::new("file", "/x"), Action::NoOp)),
            Err("permission denied".into()),
            Err(format!("{REFUSED}its parent does not exist")),
        ];
        for (idx, outcome) in outcomes.into_iter().enumerate() {
            let mut res = file_with("one\ntwo\n");
            res.id = ResourceId::new("file", format!("/f{idx}"));
            resources.push(res);
            changes.push(PlannedChange {
                resource: idx,
                change: outcome,
                refreshed_by: if idx == 1 {
                    vec![ResourceId::new("file", "/f0")]
                } else {
                    Vec::new()
                },
                refresh_words: RefreshWords::RUN,
                fingerprint: "blake3:0".into(),
            });
        }
        let node = model::Node {
            name: "local".into(),
            tags: Default::default(),
            facts: crate::facts::local(std::path::Path::new("/")),
            resources: std::sync::Arc::new(resources),
        };
        let plan = Plan {
            nodes: vec![NodePlan {
                node: "local".into(),
                changes,
            }],
        };
        let parameters = Default::default();
        let origin = Origin {
            project: "p",
            root: "/",
            documents_digest: "blake3:0",
            documents: &Default::default(),
            target: None,
            resources: &[],
            excludes: &["file:/y".to_string()],
            parameters: &parameters,
        };
        let saved: SavedView = serde_json::from_str(&json(&plan, &[&node], &origin)).unwrap();
        for style in [Style::new(false), Style::new(true)] {
            let live =
                targeting_header(&[], &["file:/y".to_string()]) + &human(&plan, &[&node], style);
            assert_eq!(saved_human(&saved, style), live);
        }
    }

    #[test]
    fn lines_are_split_as_str_lines_splits_them() {
        for text in [
            "",
            "a",
            "a\n",
            "a\nb",
            "a\r\nb\r\n",
            "a\r",
            "\n\n",
            "a\rb\n",
            "\r\n",
            "x\n\r\ny",
        ] {
            assert_eq!(
                lines(text).collect::<Vec<_>>(),
                text.lines().collect::<Vec<_>>(),
                "{text:?}"
            );
        }
    }

    /// The desired text a change does not copy is read from its resource wherever the
    /// change is shown: plan text, stored runs and JSON.
    #[test]
    fn desired_content_is_read_from_the_resource() {
        let res = file_with("one\ntwo\n");
        let created = change(Action::Create, None);
        assert_eq!(change_text(&created, &res), "content:\n+one\n+two");
        let json = json_content(&res, created.content.as_ref().unwrap());
        assert!(json.diff.unwrap().contains("+one\n+two\n"));
        assert_eq!((json.before, json.after), (None, None));

        let updated = change(Action::Update, Some(Content::Text("one\n".into())));
        let text = change_text(&updated, &res);
        assert!(text.contains("\n one\n+two"), "{text}");

        let binary = change(
            Action::Update,
            Some(Content::Binary {
                len: 3,
                sha256: "sha256:x".into(),
            }),
        );
        assert_eq!(
            change_text(&binary, &res),
            "content: 3 bytes of binary, sha256:x → 8 bytes of text"
        );
        let json = json_content(&res, binary.content.as_ref().unwrap());
        assert_eq!(json.diff, None);
        assert_eq!(json.before.as_deref(), Some("3 bytes of binary, sha256:x"));
    }
}
