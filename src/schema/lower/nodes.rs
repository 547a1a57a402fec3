//! Nodes declared in the documents' `nodes` section, with their tags, and the `node`
//! variable templates see.

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
