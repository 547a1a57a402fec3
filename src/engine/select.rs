//! What a run selects: nodes by `--target` and resources by `--resource` and `--exclude`.
//!
//! One selector grammar for every command that picks nodes (`plan`, `apply`, `drift`, in
//! local mode and through the controller, and `steward run`): `all`, a node `NAME`, or
//! `KEY=VALUE` for a tag, joined by commas, and the flag repeatable; a node is selected when
//! any part matches it.
//!
//! **Architecture Invariant:** selection only reads the model; narrowing to resources
//! replaces a node's resource list and drops relations to what it left out, so every later
//! stage sees one consistent, smaller node.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::diag::did_you_mean;
use crate::model::{self, Model};
use crate::resource::Registry;
use crate::validate::Validated;

/// One comma-separated part of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// `all`: every node.
    All,
    /// A node name.
    Name(String),
    /// `KEY=VALUE`: nodes with this tag.
    Tag(String, String),
}

impl Part {
    /// Whether this part picks a node with this name and these tags.
    pub fn matches(&self, name: &str, tags: &BTreeMap<String, String>) -> bool {
        match self {
            Part::All => true,
            Part::Name(wanted) => wanted == name,
            Part::Tag(key, value) => tags.get(key).is_some_and(|v| v == value),
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::All => f.write_str("all"),
            Part::Name(name) => f.write_str(name),
            Part::Tag(key, value) => write!(f, "{key}={value}"),
        }
    }
}

/// A node selector: the parts of every `--target` given, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// The parts, as written.
    pub parts: Vec<Part>,
}

/// Why a selector or a resource address cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SelectError {
    /// A comma list with an empty part (`web-1,,db-1`, a trailing comma, an empty value).
    #[error(
        "--target `{0}` has an empty part; give node names, KEY=VALUE or all, joined by commas"
    )]
    EmptyPart(String),
    /// `KEY=VALUE` with an empty key.
    #[error("--target `{0}` has an empty tag key; write KEY=VALUE")]
    EmptyKey(String),
    /// A `--resource` or `--exclude` that is not `TYPE:NAME`.
    #[error("{flag} `{text}` is not TYPE:NAME (such as file:/etc/motd)")]
    NotAnAddress {
        /// `--resource` or `--exclude`.
        flag: &'static str,
        /// What was given.
        text: String,
    },
    /// A `--resource` or `--exclude` that no selected node declares.
    #[error("{flag} `{text}` is not declared for any selected node; {help}")]
    UnknownResource {
        /// `--resource` or `--exclude`.
        flag: &'static str,
        /// What was given.
        text: String,
        /// "did you mean" or the resources there are.
        help: String,
    },
}

impl Selector {
    /// Parses every `--target` value (each a comma list); `None` when none was given.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<Option<Selector>, SelectError> {
        if values.is_empty() {
            return Ok(None);
        }
        let mut parts = Vec::new();
        for value in values {
            let value = value.as_ref();
            for part in value.split(',').map(str::trim) {
                let part = if part.is_empty() {
                    return Err(SelectError::EmptyPart(value.to_string()));
                } else if part == "all" {
                    Part::All
                } else if let Some((key, tag)) = part.split_once('=') {
                    if key.trim().is_empty() {
                        return Err(SelectError::EmptyKey(part.to_string()));
                    }
                    Part::Tag(key.trim().to_string(), tag.trim().to_string())
                } else {
                    Part::Name(part.to_string())
                };
                if !parts.contains(&part) {
                    parts.push(part);
                }
            }
        }
        Ok(Some(Selector { parts }))
    }

    /// Whether any part picks a node with this name and these tags.
    pub fn matches(&self, name: &str, tags: &BTreeMap<String, String>) -> bool {
        self.parts.iter().any(|part| part.matches(name, tags))
    }
}

impl fmt::Display for Selector {
    /// The parts joined by commas: one value that parses back to the same selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (idx, part) in self.parts.iter().enumerate() {
            if idx > 0 {
                f.write_str(",")?;
            }
            write!(f, "{part}")?;
        }
        Ok(())
    }
}

/// Whether a selector (none: every node) picks a node.
pub fn selected(node: &model::Node, target: Option<&Selector>) -> bool {
    target.is_none_or(|selector| selector.matches(&node.name, &node.tags))
}

/// `--resource` and `--exclude`: resource addresses (`TYPE:NAME`), sorted and without
/// repeats, so two runs given the same set in any order compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceFilter {
    /// Only these resources and what they depend on, transitively (empty: every resource).
    pub resources: Vec<String>,
    /// Not these resources, nor what depends on them, transitively.
    pub excludes: Vec<String>,
}

impl ResourceFilter {
    /// Checks the form of each address and sorts them.
    pub fn new(resources: &[String], excludes: &[String]) -> Result<ResourceFilter, SelectError> {
        let clean = |flag: &'static str, values: &[String]| {
            let mut out: Vec<String> = Vec::new();
            for text in values {
                let text = text.trim();
                match text.split_once(':') {
                    Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
                    _ => {
                        return Err(SelectError::NotAnAddress {
                            flag,
                            text: text.to_string(),
                        });
                    }
                }
                out.push(text.to_string());
            }
            out.sort();
            out.dedup();
            Ok(out)
        };
        Ok(ResourceFilter {
            resources: clean("--resource", resources)?,
            excludes: clean("--exclude", excludes)?,
        })
    }

    /// True when neither flag was given.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.excludes.is_empty()
    }
}

/// Narrows the selected nodes of `validated` to what `filter` keeps: the `--resource`s with
/// what they depend on (explicit and implicit edges), without the `--exclude`s and what
/// depends on them. Relations to a resource left out are dropped with it, so a kept
/// resource that notifies one left out is planned alone. An address that no selected node
/// declares is an error with a "did you mean".
pub fn narrow(
    validated: &mut Validated,
    registry: &Registry,
    target: Option<&Selector>,
    filter: &ResourceFilter,
) -> Result<(), SelectError> {
    if filter.is_empty() {
        return Ok(());
    }
    let picked: Vec<usize> = (0..validated.model.nodes.len())
        .filter(|&idx| selected(&validated.model.nodes[idx], target))
        .collect();
    check_declared(&validated.model, &picked, filter)?;
    let mut keeps: Vec<(usize, Vec<bool>)> = Vec::new();
    for &idx in &picked {
        let graph = validated.graph(idx, registry);
        let node = graph.node;
        let n = node.resources.len();
        let mut predecessors: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut successors: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (from, to, _) in graph.edges() {
            successors[from].push(to);
            predecessors[to].push(from);
        }
        let named = |list: &[String]| -> Vec<usize> {
            (0..n)
                .filter(|&i| list.contains(&node.resources[i].id.to_string()))
                .collect()
        };
        let mut keep = if filter.resources.is_empty() {
            vec![true; n]
        } else {
            reach(&named(&filter.resources), &predecessors, n)
        };
        for (i, dropped) in reach(&named(&filter.excludes), &successors, n)
            .into_iter()
            .enumerate()
        {
            if dropped {
                keep[i] = false;
            }
        }
        keeps.push((idx, keep));
    }
    for (idx, keep) in keeps {
        let node = &mut validated.model.nodes[idx];
        let kept: Vec<model::Resource> = node
            .resources
            .iter()
            .zip(&keep)
            .filter(|(_, keep)| **keep)
            .map(|(res, _)| res.clone())
            .collect();
        let ids: Vec<String> = kept.iter().map(|r| r.id.to_string()).collect();
        let kept = kept
            .into_iter()
            .map(|mut res| {
                res.relations
                    .retain(|rel| ids.contains(&rel.target.to_string()));
                res
            })
            .collect();
        node.resources = Arc::new(kept);
    }
    Ok(())
}

/// Every resource reachable from `start` along `next`, `start` included.
fn reach(start: &[usize], next: &[Vec<usize>], n: usize) -> Vec<bool> {
    let mut seen = vec![false; n];
    let mut stack: Vec<usize> = start.to_vec();
    while let Some(i) = stack.pop() {
        if !seen[i] {
            seen[i] = true;
            stack.extend(next[i].iter().copied());
        }
    }
    seen
}

/// Refuses an address that none of the `picked` nodes declares.
fn check_declared(
    model: &Model,
    picked: &[usize],
    filter: &ResourceFilter,
) -> Result<(), SelectError> {
    let declared: Vec<String> = picked
        .iter()
        .flat_map(|&idx| model.nodes[idx].resources.iter())
        .map(|res| res.id.to_string())
        .collect();
    let candidates: Vec<&str> = declared.iter().map(String::as_str).collect();
    let lists = [
        ("--resource", &filter.resources),
        ("--exclude", &filter.excludes),
    ];
    for (flag, list) in lists {
        for text in list {
            if !declared.contains(text) {
                let help = if candidates.is_empty() {
                    "the selected nodes declare no resources".to_string()
                } else {
                    did_you_mean(text, &candidates)
                };
                return Err(SelectError::UnknownResource {
                    flag,
                    text: text.clone(),
                    help,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn repeated_and_comma_targets_make_one_selector() {
        let selector = Selector::parse(&["role=web,db-1", "cache-1"])
            .unwrap()
            .unwrap();
        assert_eq!(selector.to_string(), "role=web,db-1,cache-1");
        assert!(selector.matches("web-9", &tags(&[("role", "web")])));
        assert!(selector.matches("db-1", &tags(&[])));
        assert!(selector.matches("cache-1", &tags(&[])));
        assert!(!selector.matches("db-2", &tags(&[("role", "db")])));
        assert_eq!(Selector::parse::<&str>(&[]).unwrap(), None);
        assert!(
            Selector::parse(&["all"])
                .unwrap()
                .unwrap()
                .matches("x", &tags(&[]))
        );
    }

    #[test]
    fn empty_parts_and_keys_are_refused() {
        assert_eq!(
            Selector::parse(&["web-1,"]),
            Err(SelectError::EmptyPart("web-1,".into()))
        );
        assert_eq!(
            Selector::parse(&[""]),
            Err(SelectError::EmptyPart(String::new()))
        );
        assert_eq!(
            Selector::parse(&["=web"]),
            Err(SelectError::EmptyKey("=web".into()))
        );
    }

    #[test]
    fn resource_addresses_need_a_type_and_a_name() {
        let filter =
            ResourceFilter::new(&["file:/b".into(), "file:/a".into()], &["file:/a".into()])
                .unwrap();
        assert_eq!(filter.resources, ["file:/a", "file:/b"]);
        assert!(matches!(
            ResourceFilter::new(&["motd".into()], &[]),
            Err(SelectError::NotAnAddress { .. })
        ));
        assert!(matches!(
            ResourceFilter::new(&[], &[":x".into()]),
            Err(SelectError::NotAnAddress { .. })
        ));
    }
}
