//! Associations: which nodes they target, which documents they apply, the parameters they
//! give, and how a run goes (schedule, mode, rates, compliance severity). Which node gets
//! which document follows from them in the walk (`mod.rs`); running on a schedule is `fleet`'s.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use crate::diag::{Diagnostic, SourceId, Span, did_you_mean};
use crate::document::{self, Document, Key, Node};
use crate::model::{
    Association, ComplianceSeverity, Mode, Rate, Schedule, Targets, Value, grammar,
};
use crate::schema::lower::Lowerer;
use crate::schema::lower::params::{ParamDecl, coerce_param};
use crate::schema::value::{check, param_type_matches, string_map, to_model};

pub(crate) const ASSOCIATION_KEYS: &[&str] = &[
    "targets",
    "documents",
    "parameters",
    "schedule",
    "mode",
    "max_concurrency",
    "max_errors",
    "compliance_severity",
];
pub(crate) const TARGET_KEYS: &[&str] = &["tags", "names", "all"];
pub(crate) const SEVERITIES: &[&str] = &[
    "critical",
    "high",
    "medium",
    "low",
    "informational",
    "unspecified",
];
/// Association modes.
pub(crate) const MODES: &[&str] = &["detect", "enforce"];
pub(crate) use crate::model::grammar::{MAX_CONCURRENCY_MIN, MAX_ERRORS_MIN, PERCENT_MAX};

/// The longest period a `rate(...)` schedule may have: ten years.
const MAX_RATE_SECONDS: u64 = 10 * 365 * 86_400;

impl Lowerer<'_> {
    pub(super) fn collect_associations(
        &mut self,
        docs: &[&Document],
        params: &BTreeMap<String, ParamDecl>,
    ) -> Vec<Association> {
        let by_path: HashMap<PathBuf, SourceId> = docs
            .iter()
            .filter_map(|doc| {
                let path = self.project.sources.get(doc.source).path.as_ref()?;
                Some((path.canonicalize().ok()?, doc.source))
            })
            .collect();
        let mut associations: Vec<Association> = Vec::new();
        for doc in docs {
            let Some(section) = doc.root.get("associations") else {
                continue;
            };
            for (key, body) in self.map_entries(section, "`associations`") {
                if let Some(first) = associations.iter().find(|a| a.name == key.name) {
                    let first = first.span;
                    self.declared_twice(
                        "schema::duplicate_association",
                        &format!("association `{}`", key.name),
                        key.span,
                        first,
                    );
                    continue;
                }
                if let Some(association) = self.association(doc, key, body, params, &by_path) {
                    associations.push(association);
                }
            }
        }
        associations
    }

    fn association(
        &mut self,
        doc: &Document,
        key: &Key,
        body: &Node,
        params: &BTreeMap<String, ParamDecl>,
        by_path: &HashMap<PathBuf, SourceId>,
    ) -> Option<Association> {
        let mut association = Association {
            name: key.name.clone(),
            span: key.span,
            source: doc.source,
            targets: Targets::Names(Vec::new()),
            documents: vec![doc.source],
            parameters: BTreeMap::new(),
            schedule: None,
            mode: Mode::Enforce,
            max_concurrency: Rate::Percent(100),
            max_errors: Rate::Percent(100),
            compliance_severity: ComplianceSeverity::Unspecified,
        };
        let mut has_targets = false;
        let mut has_targets_error = false;
        for (k, v) in self.map_entries(body, &format!("association `{}`", key.name)) {
            match k.name.as_str() {
                "targets" => match self.targets(v) {
                    Some(targets) => {
                        has_targets = true;
                        association.targets = targets;
                    }
                    // Reported; the rest of the association is still checked.
                    None => has_targets_error = true,
                },
                "documents" => {
                    association.documents = self.association_documents(v, by_path);
                }
                "parameters" => {
                    for (pk, pv) in self.map_entries(v, "`parameters`") {
                        let Some(decl) = params.get(&pk.name) else {
                            let message = format!("no parameter `{}` is declared", pk.name);
                            self.unknown_parameter(
                                pk,
                                message,
                                params,
                                "declare it under `parameters` first",
                            );
                            continue;
                        };
                        let value = coerce_param(&decl.ty, to_model(pv));
                        if param_type_matches(&decl.ty, &value) == Some(false) {
                            let decl_span = decl.span;
                            let ty = decl.ty.clone();
                            self.acc.push(
                                Diagnostic::error(
                                    "schema::wrong_type",
                                    pv.span,
                                    format!(
                                        "`{}` is a {ty} parameter, found {}",
                                        pk.name,
                                        pv.value.type_name()
                                    ),
                                )
                                .with_secondary(decl_span, "declared here"),
                            );
                            continue;
                        }
                        association.parameters.insert(pk.name.clone(), value);
                    }
                }
                "schedule" => association.schedule = self.schedule(v),
                "mode" => match v.as_str() {
                    Some("detect") => association.mode = Mode::Detect,
                    Some("enforce") => association.mode = Mode::Enforce,
                    Some(other) => {
                        self.error(
                            "schema::invalid_value",
                            v.span,
                            format!("`{other}` is not a mode"),
                        )
                        .help = Some(did_you_mean(other, MODES));
                    }
                    None => self.wrong_type(v, "`mode`", "detect or enforce"),
                },
                "max_concurrency" => {
                    if let Some(rate) = self.rate(v, MAX_CONCURRENCY_MIN) {
                        association.max_concurrency = rate;
                    }
                }
                "max_errors" => {
                    if let Some(rate) = self.rate(v, MAX_ERRORS_MIN) {
                        association.max_errors = rate;
                    }
                }
                "compliance_severity" => match v.as_str() {
                    Some(text) if SEVERITIES.contains(&text) => {
                        association.compliance_severity = severity(text);
                    }
                    Some(text) => {
                        self.error(
                            "schema::invalid_value",
                            v.span,
                            format!("`{text}` is not a severity"),
                        )
                        .help = Some(did_you_mean(text, SEVERITIES));
                    }
                    None => self.wrong_type(v, "`compliance_severity`", "a severity"),
                },
                _ => self.unknown_key(k, "an association", ASSOCIATION_KEYS),
            }
        }
        if has_targets_error {
            return None;
        }
        if !has_targets {
            self.error(
                "schema::missing_attribute",
                key.span,
                format!("association `{}` has no `targets`", key.name),
            )
            .help = Some(
                "add `targets: { tags: { role: web } }`, `{ names: [web-1] }` or `{ all: true }`"
                    .into(),
            );
            return None;
        }
        Some(association)
    }

    fn targets(&mut self, node: &Node) -> Option<Targets> {
        let entries = self.map_entries(node, "`targets`");
        let mut found: Option<(Targets, Span)> = None;
        for (k, v) in entries {
            let targets = match k.name.as_str() {
                "tags" => match string_map(v) {
                    Ok(tags) if !tags.is_empty() => Targets::Tags(tags),
                    Ok(_) => {
                        self.error("schema::invalid_value", v.span, "`tags` is empty");
                        continue;
                    }
                    Err(mismatch) => {
                        self.error(
                            "schema::wrong_type",
                            v.span,
                            format!("`tags`: {}", mismatch.message),
                        );
                        continue;
                    }
                },
                "names" => match check(crate::resource::AttrType::StringList, v) {
                    Ok(Value::List(items)) => Targets::Names(
                        items
                            .iter()
                            .filter_map(|i| i.as_str().map(String::from))
                            .collect(),
                    ),
                    _ => {
                        self.wrong_type(v, "`names`", "a list of node names");
                        continue;
                    }
                },
                "all" => match v.value {
                    document::Value::Bool(true) => Targets::All,
                    _ => {
                        self.error("schema::invalid_value", v.span, "`all` must be true")
                            .help = Some("to target nothing, remove the association".into());
                        continue;
                    }
                },
                _ => {
                    self.unknown_key(k, "`targets`", TARGET_KEYS);
                    continue;
                }
            };
            if let Some((_, first)) = &found {
                let first = *first;
                self.acc.push(
                    Diagnostic::error(
                        "schema::conflicting_attributes",
                        k.span,
                        "`targets` takes one of tags, names or all",
                    )
                    .with_secondary(first, "already given here"),
                );
                continue;
            }
            found = Some((targets, k.span));
        }
        match found {
            Some((targets, _)) => Some(targets),
            None if entries
                .iter()
                .any(|(k, _)| !TARGET_KEYS.contains(&k.name.as_str())) =>
            {
                None
            }
            None => {
                self.error(
                    "schema::missing_attribute",
                    node.span,
                    "`targets` selects no nodes",
                )
                .help = Some("give `tags`, `names` or `all: true`".into());
                None
            }
        }
    }

    fn association_documents(
        &mut self,
        node: &Node,
        by_path: &HashMap<PathBuf, SourceId>,
    ) -> Vec<SourceId> {
        let items: Vec<&Node> = match &node.value {
            document::Value::List(items) => items.iter().collect(),
            document::Value::String(_) => vec![node],
            _ => {
                self.wrong_type(node, "`documents`", "a list of document paths");
                return Vec::new();
            }
        };
        let mut res = Vec::new();
        for item in items {
            let Some(text) = item.as_str() else {
                self.wrong_type(item, "a document path", "a string");
                continue;
            };
            let path = self.project.root.join(text);
            match path.canonicalize().ok().and_then(|p| by_path.get(&p)) {
                Some(&source) => res.push(source),
                None => {
                    let known: Vec<String> = by_path
                        .values()
                        .filter_map(|&s| {
                            let p = self.project.sources.get(s).path.as_ref()?;
                            Some(
                                p.strip_prefix(&self.project.root)
                                    .unwrap_or(p)
                                    .display()
                                    .to_string(),
                            )
                        })
                        .collect();
                    let refs: Vec<&str> = known.iter().map(String::as_str).collect();
                    self.error(
                        "schema::unknown_document",
                        item.span,
                        format!("no document `{text}` in the project"),
                    )
                    .help = Some(format!(
                        "paths are relative to the project directory; {}",
                        did_you_mean(text, &refs)
                    ));
                }
            }
        }
        res
    }

    fn schedule(&mut self, node: &Node) -> Option<Schedule> {
        let Some(text) = node.as_str() else {
            self.wrong_type(node, "`schedule`", "a cron expression or rate(...)");
            return None;
        };
        if let Some(inner) = text.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) {
            let mut parts = inner.split_whitespace();
            let amount = parts
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|n| *n > 0);
            let unit = match parts.next() {
                Some("minute" | "minutes") => Some(60),
                Some("hour" | "hours") => Some(3600),
                Some("day" | "days") => Some(86_400),
                _ => None,
            };
            // Ten years at most: a longer period is a typo, and keeps time arithmetic exact.
            let seconds = amount
                .zip(unit)
                .and_then(|(amount, unit)| amount.checked_mul(unit))
                .filter(|&seconds| seconds <= MAX_RATE_SECONDS);
            return match (seconds, parts.next()) {
                (Some(seconds), None) => Some(Schedule::Rate {
                    seconds,
                    text: text.to_string(),
                }),
                _ => {
                    self.error(
                        "schema::invalid_schedule",
                        node.span,
                        format!("`{text}` is not a rate"),
                    )
                    .help = Some(
                        "write rate(N minutes), rate(N hours) or rate(N days) with N > 0, at most ten years"
                            .into(),
                    );
                    None
                }
            };
        }
        match text.parse::<croner::Cron>() {
            Ok(_) => Some(Schedule::Cron(text.to_string())),
            Err(err) => {
                self.error("schema::invalid_schedule", node.span, format!("`{text}` is not a cron expression: {err}"))
                    .help = Some("use five fields (minute hour day month weekday), e.g. \"0 */2 * * *\", or rate(30 minutes)".into());
                None
            }
        }
    }

    fn rate(&mut self, node: &Node, min: u32) -> Option<Rate> {
        let parsed = match &node.value {
            document::Value::Int(n) => u32::try_from(*n)
                .ok()
                .filter(|n| *n >= min)
                .map(Rate::Count),
            document::Value::String(text) => grammar::rate(text, min).ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                "schema::invalid_value",
                node.span,
                "expected a count or a percentage",
            )
            .help = Some(format!(
                "write a number ({min} or more) such as 2, or a percentage such as \"20%\""
            ));
        }
        parsed
    }
}

fn severity(text: &str) -> ComplianceSeverity {
    ComplianceSeverity::parse(text).unwrap_or(ComplianceSeverity::Unspecified)
}

#[cfg(test)]
mod tests {
    use crate::model::{ComplianceSeverity, Mode, Rate, Schedule, Value};
    use crate::schema::lower::testing::{
        ids_by_node, lower_plain, only, project, resource, text_at,
    };

    /// A project of two nodes whose association is `association` (indented under its name).
    fn with_association(association: &str) -> crate::document::Project {
        project(&[(
            "site.yaml",
            &format!(
                "steward: 1
parameters:
  motd: {{ type: string, default: plain }}
  port: {{ type: number, default: 80 }}
nodes:
  a: {{}}
  b: {{}}
associations:
  web:
{association}
resources:
  file:/etc/motd: {{ content: \"{{{{ params.motd }}}}\" }}
"
            ),
        )])
    }

    #[test]
    fn an_association_applies_its_document_to_its_targets_with_its_parameters() {
        let project = with_association(
            "    targets: { names: [a] }\n    parameters: { motd: from-association }",
        );
        let (model, diagnostics) = lower_plain(&project);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let ids = ids_by_node(&model);
        assert_eq!(ids["a"], ["file:/etc/motd"]);
        assert!(ids["b"].is_empty() && ids["local"].is_empty(), "{ids:?}");
        let res = resource(&model, "a", "file:/etc/motd");
        assert_eq!(res.association.as_deref(), Some("web"));
        let content = &res.attrs.get("content").unwrap().value;
        assert_eq!(content, &Value::String("from-association".into()));
    }

    #[test]
    fn schedule_mode_rates_and_severity_are_read() {
        let project = with_association(
            "    targets: { all: true }
    schedule: rate(30 minutes)
    mode: detect
    max_concurrency: \"20%\"
    max_errors: 1
    compliance_severity: high",
        );
        let (model, diagnostics) = lower_plain(&project);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let association = &model.associations[0];
        assert_eq!(
            association.schedule,
            Some(Schedule::Rate {
                seconds: 1800,
                text: "rate(30 minutes)".into()
            })
        );
        assert_eq!(association.mode, Mode::Detect);
        assert_eq!(association.max_concurrency, Rate::Percent(20));
        assert_eq!(association.max_errors, Rate::Count(1));
        assert_eq!(association.compliance_severity, ComplianceSeverity::High);
    }

    #[test]
    fn a_bad_cron_expression_is_located_at_the_schedule() {
        let project = with_association("    targets: { all: true }\n    schedule: \"61 * * * *\"");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::invalid_schedule");
        assert!(text_at(&project, diag).contains("61 * * * *"));
        assert!(
            diag.message.contains("is not a cron expression"),
            "{}",
            diag.message
        );
    }

    #[test]
    fn a_rate_longer_than_ten_years_is_refused() {
        let project = with_association("    targets: { all: true }\n    schedule: rate(4000 days)");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::invalid_schedule");
        assert_eq!(diag.message, "`rate(4000 days)` is not a rate");
    }

    #[test]
    fn targets_take_one_selector() {
        let project = with_association("    targets: { names: [a], all: true }");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::conflicting_attributes");
        assert_eq!(text_at(&project, diag), "all");
    }

    #[test]
    fn a_parameter_of_the_wrong_type_is_located_at_its_value() {
        let project =
            with_association("    targets: { all: true }\n    parameters: { port: eighty }");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::wrong_type");
        assert_eq!(text_at(&project, diag), "eighty");
        assert_eq!(diag.labels.len(), 2, "the declaration is pointed at too");
    }
}
