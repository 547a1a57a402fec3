//! The front half of every command: read the project, lower it, build each node's graph.
//!
//! `validate`, `graph` and `plan` all start here, so they agree on what a sound project is.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diag::Diagnostic;
use crate::document::Project;
use crate::model::{Facts, Model};
use crate::plan::graph::ResourceGraph;
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
}

impl Validated {
    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Each node's dependency graph (diagnostics were collected by [`validate`]).
    pub fn graphs<'m>(&'m self, registry: &Registry) -> Vec<ResourceGraph<'m>> {
        let mut ignored = Vec::new();
        self.model
            .nodes
            .iter()
            .map(|node| ResourceGraph::build(node, registry, &mut ignored))
            .collect()
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
    for node in model.nodes.iter().chain(&model.unassigned) {
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
        diagnostics,
    }
}
