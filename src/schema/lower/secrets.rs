//! Sensitive values: collected from sensitive parameters so resources can record which they
//! read, ordered for scrubbing, and kept out of identities (names, references, association
//! names), which are shown, stored and sent unredacted. A secret's value never reaches a
//! message: the diagnostics here name the parameters read.

use std::collections::{BTreeSet, HashMap};

use crate::diag::Span;
use crate::model::{self, Model, Value};
use crate::schema::lower::Lowerer;

/// The help of `schema::sensitive_in_name`.
const SENSITIVE_IN_NAME_HELP: &str = "names and references appear unredacted in plans, reports and the store; keep the secret in an attribute (such as `content`), which is redacted";

/// The values of sensitive parameters, each once, in the order first seen.
#[derive(Default)]
pub(super) struct Secrets {
    values: Vec<String>,
    index: HashMap<String, usize>,
}

impl Secrets {
    /// The text forms of a sensitive value worth scrubbing (three characters or more: shorter
    /// ones would garble every message and protect nothing), as indices.
    pub(super) fn collect(&mut self, value: &Value) -> Vec<usize> {
        let mut ids = Vec::new();
        self.collect_into(value, &mut ids);
        ids
    }

    fn collect_into(&mut self, value: &Value, ids: &mut Vec<usize>) {
        let text = match value {
            Value::String(text) if text.chars().count() >= 3 => text.clone(),
            Value::Int(_) | Value::Float(_) if value.to_string().len() >= 3 => value.to_string(),
            Value::List(items) => {
                items.iter().for_each(|item| self.collect_into(item, ids));
                return;
            }
            Value::Map(entries) => {
                entries
                    .values()
                    .for_each(|item| self.collect_into(item, ids));
                return;
            }
            _ => return,
        };
        let next = self.values.len();
        let idx = *self.index.entry(text.clone()).or_insert(next);
        if idx == next {
            self.values.push(text);
        }
        ids.push(idx);
    }
}

impl Lowerer<'_> {
    /// The values of sensitive parameters for `Model::secrets`, and every resource's
    /// `secrets` renumbered to their new places.
    pub(super) fn take_secrets(
        &mut self,
        nodes: &mut [model::Node],
        unassigned: &mut [model::Node],
    ) -> Vec<String> {
        let secrets = std::mem::take(&mut self.secrets).values;
        // Longest first, so a secret that contains another is scrubbed whole; resources
        // refer to them by their new places.
        let mut order: Vec<usize> = (0..secrets.len()).collect();
        order.sort_by_key(|&idx| (std::cmp::Reverse(secrets[idx].len()), idx));
        let mut new_place = vec![0; secrets.len()];
        for (place, &idx) in order.iter().enumerate() {
            new_place[idx] = place;
        }
        for node in nodes.iter_mut().chain(unassigned.iter_mut()) {
            if node.resources.iter().all(|res| res.secrets.is_empty()) {
                continue;
            }
            for res in std::sync::Arc::make_mut(&mut node.resources) {
                for idx in &mut res.secrets {
                    *idx = new_place[*idx];
                }
                res.secrets.sort_unstable();
            }
        }
        order.into_iter().map(|idx| secrets[idx].clone()).collect()
    }

    /// Refuses a sensitive value where it would become part of an identity: identities are
    /// shown, stored and sent to every node unredacted. The message names the parameters
    /// read, never the value.
    pub(super) fn sensitive_in_name(&mut self, span: Span, what: &str, reads: &BTreeSet<String>) {
        let names: Vec<String> = reads.iter().map(|name| format!("`{name}`")).collect();
        self.error(
            "schema::sensitive_in_name",
            span,
            format!(
                "{what} uses the sensitive {} {}",
                if names.len() == 1 { "value" } else { "values" },
                names.join(", ")
            ),
        )
        .help = Some(SENSITIVE_IN_NAME_HELP.into());
    }

    /// The last line of defence for [`Lowerer::sensitive_in_name`]: an identity that contains
    /// a sensitive value however it got there (written out, or through a value that was not
    /// marked sensitive) is refused too.
    pub(super) fn check_names_hold_no_secret(&mut self, model: &Model) {
        if model.secrets.is_empty() {
            return;
        }
        let holds_secret = |text: &str| model.secrets.iter().any(|secret| text.contains(secret));
        let mut found: Vec<(Span, String)> = Vec::new();
        for res in model
            .nodes
            .iter()
            .chain(&model.unassigned)
            .flat_map(|node| node.resources.iter())
        {
            if holds_secret(&res.id.name) {
                found.push((res.span, format!("the name of `{}` resource", res.id.kind)));
            }
            for relation in &res.relations {
                if holds_secret(&relation.target.name) {
                    let what = format!("a `{}` reference", relation.kind.as_str());
                    found.push((relation.span, what));
                }
            }
        }
        for association in &model.associations {
            if holds_secret(&association.name) {
                found.push((association.span, "an association's name".to_string()));
            }
        }
        for (span, what) in found {
            self.error(
                "schema::sensitive_in_name",
                span,
                format!("{what} contains the value of a sensitive parameter"),
            )
            .help = Some(SENSITIVE_IN_NAME_HELP.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::lower::testing::{
        ids_by_node, lower_plain, only, project, resource, text_at,
    };

    const TOKEN: &str = "steward: 1
parameters:
  token: { type: string, sensitive: true, default: s3cret-value }
resources:
";

    fn site(resources: &str) -> crate::document::Project {
        project(&[("site.yaml", &format!("{TOKEN}{resources}"))])
    }

    #[test]
    fn a_sensitive_parameter_in_a_name_is_refused_without_its_value() {
        let project = site("  file:/etc/{{ params.token }}: { content: x }\n");
        let (model, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::sensitive_in_name");
        assert_eq!(text_at(&project, diag), "file:/etc/{{ params.token }}");
        assert!(diag.message.contains("`params.token`"), "{}", diag.message);
        assert!(!format!("{diag:?}").contains("s3cret"));
        assert!(ids_by_node(&model)["local"].is_empty());
    }

    #[test]
    fn a_sensitive_reference_is_refused() {
        let project =
            site("  file:/etc/motd: { content: x, require: \"package:{{ params.token }}\" }\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::sensitive_in_name");
        assert_eq!(
            diag.message,
            "a `require` reference uses the sensitive value `params.token`"
        );
    }

    #[test]
    fn a_name_holding_a_secret_written_out_is_refused() {
        let project = site("  file:/etc/s3cret-value: { content: x }\n");
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::sensitive_in_name");
        assert_eq!(text_at(&project, diag), "file:/etc/s3cret-value");
        assert_eq!(
            diag.message,
            "the name of `file` resource contains the value of a sensitive parameter"
        );
    }

    #[test]
    fn resources_record_the_secrets_they_read_longest_first() {
        let project = project(&[(
            "site.yaml",
            "steward: 1
parameters:
  short: { type: string, sensitive: true, default: abc }
  long: { type: string, sensitive: true, default: abcdef }
resources:
  file:/etc/both: { content: \"{{ params.short }}{{ params.long }}\" }
  file:/etc/short: { content: \"{{ params.short }}\" }
  file:/etc/plain: { content: x }
",
        )]);
        let (model, diagnostics) = lower_plain(&project);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(model.secrets, ["abcdef", "abc"]);
        let both = resource(&model, "local", "file:/etc/both");
        assert_eq!(both.secrets, [0, 1]);
        assert!(both.attrs.get("content").unwrap().sensitive);
        assert_eq!(resource(&model, "local", "file:/etc/short").secrets, [1]);
        let plain = resource(&model, "local", "file:/etc/plain");
        assert!(plain.secrets.is_empty());
        assert!(!plain.attrs.get("content").unwrap().sensitive);
    }
}
