//! The front half of every command: read the project, lower it, build each node's graph.
//!
//! `validate`, `graph` and `plan` all start here, so they agree on what a sound project is.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diag::Diagnostic;
use crate::document::Project;
use crate::model::{Facts, Model};
use crate::plan::graph::{EdgeList, ResourceGraph};
use crate::resource::Registry;
use crate::schema;

/// A read and checked project.
pub struct Validated {
    /// Sources and parsed documents.
    pub project: Project,
    /// The desired state (partial when there are errors).
    pub model: Model,
    /// Every problem, reading order first.
    pub diagnostics: Vec<Diagnostic>,
    /// The dependency graph of each of `model.nodes`, as found while validating.
    edges: Vec<EdgeList>,
}

impl Validated {
    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Each of `model.nodes`' dependency graph (diagnostics were collected by [`validate`]).
    pub fn graphs(&self, registry: &Registry) -> Vec<ResourceGraph<'_>> {
        (0..self.model.nodes.len())
            .map(|idx| self.graph(idx, registry))
            .collect()
    }

    /// The dependency graph of `model.nodes[idx]`: rebuilt from the edges validation found,
    /// or built again if the node changed since.
    pub fn graph(&self, idx: usize, registry: &Registry) -> ResourceGraph<'_> {
        let node = &self.model.nodes[idx];
        self.edges
            .get(idx)
            .and_then(|edges| ResourceGraph::from_edges(node, edges))
            .unwrap_or_else(|| ResourceGraph::build(node, registry, &mut Vec::new()))
    }
}

/// Reads, lowers and graph-checks the project at `path`.
pub fn validate(
    path: &Path,
    registry: &Registry,
    local_facts: Facts,
    overrides: BTreeMap<String, String>,
) -> Validated {
    validate_with(path, registry, local_facts, overrides, Vec::new(), None)
}

/// [`validate`] with nodes known beyond the documents (a controller's inventory) and, for
/// `steward run --document`, the nodes that get the documents no association covers.
pub fn validate_with(
    path: &Path,
    registry: &Registry,
    local_facts: Facts,
    overrides: BTreeMap<String, String>,
    inventory: Vec<schema::KnownNode>,
    adhoc: Option<Vec<String>>,
) -> Validated {
    let project = crate::load::load(path);
    let files = crate::load::ProjectReader::new(&project.root);
    let config = schema::Config {
        registry,
        files: &files,
        local_facts,
        overrides,
        inventory,
        adhoc,
    };
    let (model, lowered) = schema::lower(&project, &config);
    let mut diagnostics = project.diagnostics.clone();
    diagnostics.extend(lowered);
    // Graph problems are reported with the rest, so one run shows every mistake.
    let mut graph_diagnostics = Vec::new();
    let edges = model
        .nodes
        .iter()
        .map(|node| ResourceGraph::build(node, registry, &mut graph_diagnostics).edge_list())
        .collect();
    for node in &model.unassigned {
        ResourceGraph::build(node, registry, &mut graph_diagnostics);
    }
    // A document lowered for several nodes has the same graph problem on each.
    for diag in graph_diagnostics {
        let duplicate = diagnostics
            .iter()
            .any(|d| d.code == diag.code && d.span() == diag.span());
        if !duplicate {
            diagnostics.push(diag);
        }
    }
    Validated {
        project,
        model,
        diagnostics: crate::document::cap_per_file(diagnostics),
        edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_validation_found_is_the_graph_built_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("site.yaml"),
            "steward: 1
resources:
  directory:/srv: {}
  file:/srv/a: { content: a, notify: [\"exec:reload\"] }
  file:/srv/b: { content: b, require: [\"file:/srv/a\"] }
  exec:reload: { command: [/bin/true], refresh_only: true }
",
        )
        .unwrap();
        let registry = Registry::builtin();
        let validated = validate(
            dir.path(),
            &registry,
            crate::facts::local(Path::new("/")),
            BTreeMap::new(),
        );
        assert!(!validated.has_errors(), "{:?}", validated.diagnostics);
        let node = &validated.model.nodes[0];
        let built = ResourceGraph::build(node, &registry, &mut Vec::new());
        let again = validated.graph(0, &registry);
        assert_eq!(again.edges().len(), 4, "{:?}", again.edges());
        assert_eq!(again.edges(), built.edges());
        assert_eq!(again.order(), built.order());

        // A node that changed since is not given the old edges.
        let mut changed = node.clone();
        let mut resources = changed.resources.to_vec();
        resources.pop();
        changed.resources = resources.into();
        assert!(ResourceGraph::from_edges(&changed, &built.edge_list()).is_none());
    }
}
