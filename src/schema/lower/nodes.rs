//! Nodes declared in the documents' `nodes` section, with their tags, and the `node`
//! variable templates see. Nodes known from outside the documents (a controller's
//! inventory) are merged in by the walk in `mod.rs`, not here.

use std::collections::{BTreeMap, HashMap};

use crate::diag::Span;
use crate::document::Document;
use crate::model::Facts;
use crate::schema::lower::Lowerer;
use crate::schema::value::string_map;

pub(crate) const NODE_KEYS: &[&str] = &["tags"];

pub(super) struct StaticNode {
    pub(super) name: String,
    pub(super) tags: BTreeMap<String, String>,
}

impl Lowerer<'_> {
    pub(super) fn collect_nodes(&mut self, docs: &[&Document]) -> Vec<StaticNode> {
        let mut nodes: Vec<StaticNode> = Vec::new();
        let mut first_span: HashMap<String, Span> = HashMap::new();
        for doc in docs {
            let Some(section) = doc.root.get("nodes") else {
                continue;
            };
            for (key, body) in self.map_entries(section, "`nodes`") {
                if !is_node_name(&key.name) {
                    self.error(
                        "schema::invalid_name",
                        key.span,
                        format!("`{}` is not a valid node name", key.name),
                    )
                    .help = Some("use letters, digits, `.`, `_` and `-`".into());
                    continue;
                }
                if let Some(&first) = first_span.get(&key.name) {
                    self.declared_twice(
                        "schema::duplicate_node",
                        &format!("node `{}`", key.name),
                        key.span,
                        first,
                    );
                    continue;
                }
                first_span.insert(key.name.clone(), key.span);
                let mut tags = BTreeMap::new();
                for (k, v) in self.map_entries(body, &format!("node `{}`", key.name)) {
                    match k.name.as_str() {
                        "tags" => match string_map(v) {
                            Ok(map) => tags = map,
                            Err(mismatch) => {
                                self.error(
                                    "schema::wrong_type",
                                    v.span,
                                    format!("`tags`: {}", mismatch.message),
                                );
                            }
                        },
                        _ => self.unknown_key(k, "a node", NODE_KEYS),
                    }
                }
                nodes.push(StaticNode {
                    name: key.name.clone(),
                    tags,
                });
            }
        }
        nodes
    }
}

/// The `node` template variable.
pub(super) fn node_context(
    name: &str,
    tags: &BTreeMap<String, String>,
    facts: &Facts,
) -> minijinja::Value {
    minijinja::context! {
        name => name,
        hostname => facts.hostname.clone(),
        os => minijinja::context! { family => facts.os_family.clone(), release => facts.os_release.clone() },
        arch => facts.arch.clone(),
        tags => tags.clone(),
        addresses => facts.addresses.clone(),
        interfaces => facts.interfaces.clone(),
        cpus => facts.cpus,
        memory => facts.memory,
        kernel => facts.kernel.clone(),
        virtual => facts.virtualization.clone(),
    }
}

/// [`is_node_name`] as a JSON Schema pattern; a test holds the two to the same verdicts.
pub(crate) const NODE_NAME_PATTERN: &str = "^[-A-Za-z0-9._]{1,253}$";

/// A node name: letters, digits, `.`, `_` and `-`.
fn is_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
}

#[cfg(test)]
mod tests {
    use crate::schema::lower::nodes::{NODE_NAME_PATTERN, is_node_name};

    use crate::model::Value;
    use crate::schema::lower::testing::{
        ids_by_node, lower_plain, only, project, resource, text_at,
    };

    #[test]
    fn declared_nodes_get_their_tags_and_templates_see_them() {
        let project = project(&[(
            "site.yaml",
            "steward: 1
nodes:
  web-1: { tags: { role: web } }
  db-1: { tags: { role: db } }
associations:
  web: { targets: { tags: { role: web } } }
resources:
  file:/etc/role: { content: \"{{ node.name }} is {{ node.tags.role }}\" }
",
        )]);
        let (model, diagnostics) = lower_plain(&project);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        let ids = ids_by_node(&model);
        assert_eq!(ids["web-1"], ["file:/etc/role"]);
        assert!(ids["db-1"].is_empty() && ids["local"].is_empty(), "{ids:?}");
        let content = &resource(&model, "web-1", "file:/etc/role")
            .attrs
            .get("content")
            .unwrap();
        assert_eq!(content.value, Value::String("web-1 is web".into()));
    }

    #[test]
    fn an_invalid_node_name_is_located_at_its_key() {
        let project = project(&[("site.yaml", "steward: 1\nnodes:\n  web/1: {}\n")]);
        let (model, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::invalid_name");
        assert_eq!(text_at(&project, diag), "web/1");
        assert!(model.nodes.iter().all(|node| node.name != "web/1"));
    }

    #[test]
    fn a_node_declared_in_two_documents_is_reported_at_the_second() {
        let project = project(&[
            ("a.yaml", "steward: 1\nnodes:\n  web-1: {}\n"),
            ("b.yaml", "steward: 1\nnodes:\n  web-1: {}\n"),
        ]);
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::duplicate_node");
        assert_eq!(
            project.sources.get(diag.span().unwrap().source).name,
            "b.yaml"
        );
        assert_eq!(
            diag.labels.len(),
            2,
            "the first declaration is pointed at too"
        );
    }

    #[test]
    fn an_unknown_key_in_a_node_suggests_tags() {
        let project = project(&[("site.yaml", "steward: 1\nnodes:\n  web-1: { tag: {} }\n")]);
        let (_, diagnostics) = lower_plain(&project);
        let diag = only(&diagnostics, "schema::unknown_key");
        assert_eq!(text_at(&project, diag), "tag");
        assert!(diag.help.as_deref().unwrap().contains("tags"));
    }

    /// The node-name check and its JSON Schema pattern agree.
    #[test]
    fn node_name_pattern_matches_the_check() {
        let node = regex::Regex::new(NODE_NAME_PATTERN).unwrap();
        let long = "a".repeat(254);
        for name in [
            "web-1",
            "db.example.com",
            "a_b",
            "",
            "a b",
            "a/b",
            "é",
            &long[1..],
            &long,
        ] {
            assert_eq!(node.is_match(name), is_node_name(name), "{name:?}");
        }
    }
}
