//! `steward graph`: each node's dependency graph as Graphviz DOT or JSON.

use std::fmt::Write;

use serde::Serialize;

use crate::diag::SourceMap;
use crate::plan::graph::{EdgeKind, ResourceGraph};

/// Version of the JSON shape below; bump on a breaking change.
pub const FORMAT_VERSION: &str = "1";

/// Graphviz DOT: one cluster per node; implicit edges dashed.
pub fn dot(graphs: &[ResourceGraph<'_>]) -> String {
    let mut out = String::from(
        "digraph steward {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for (cluster, graph) in graphs.iter().enumerate() {
        let node = graph.node;
        let _ = writeln!(
            out,
            "  subgraph cluster_{cluster} {{\n    label={};",
            quote(&node.name)
        );
        for res in node.resources.iter() {
            let id = format!("{}/{}", node.name, res.id);
            let _ = writeln!(
                out,
                "    {} [label={}];",
                quote(&id),
                quote(&res.id.to_string())
            );
        }
        out.push_str("  }\n");
        for (from, to, kind) in graph.edges() {
            let from = format!("{}/{}", node.name, node.resources[from].id);
            let to = format!("{}/{}", node.name, node.resources[to].id);
            let style = match kind {
                EdgeKind::Explicit { .. } if kind.refreshes() => ", color=\"darkorange\"",
                EdgeKind::Explicit { .. } => "",
                EdgeKind::Implicit { .. } => ", style=dashed",
            };
            let _ = writeln!(
                out,
                "  {} -> {} [label={}{style}];",
                quote(&from),
                quote(&to),
                quote(kind.label())
            );
        }
    }
    out.push_str("}\n");
    out
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[derive(Serialize)]
struct JsonGraph {
    format_version: &'static str,
    nodes: Vec<JsonNode>,
}

#[derive(Serialize)]
struct JsonNode {
    name: String,
    resources: Vec<JsonResource>,
    edges: Vec<JsonEdge>,
    /// Resource ids in an order that respects every edge.
    order: Vec<String>,
}

#[derive(Serialize)]
struct JsonResource {
    id: String,
    file: String,
    line: usize,
    column: usize,
}

#[derive(Serialize)]
struct JsonEdge {
    from: String,
    to: String,
    /// `require`, `before`, `notify`, `subscribe` or `implicit`.
    kind: &'static str,
    /// For implicit edges: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    refresh: bool,
}

/// The graphs as JSON (see docs/reference/json.md).
pub fn json(graphs: &[ResourceGraph<'_>], sources: &SourceMap) -> String {
    let nodes = graphs
        .iter()
        .map(|graph| {
            let node = graph.node;
            let resources = node
                .resources
                .iter()
                .map(|res| {
                    let source = sources.get(res.span.source);
                    let at = source.line_col(res.span.start);
                    JsonResource {
                        id: res.id.to_string(),
                        file: source.name.clone(),
                        line: at.line,
                        column: at.column,
                    }
                })
                .collect();
            let edges = graph
                .edges()
                .into_iter()
                .map(|(from, to, kind)| JsonEdge {
                    from: node.resources[from].id.to_string(),
                    to: node.resources[to].id.to_string(),
                    kind: match kind {
                        EdgeKind::Explicit { relation, .. } => relation.as_str(),
                        EdgeKind::Implicit { .. } => "implicit",
                    },
                    reason: match kind {
                        EdgeKind::Implicit { reason } => Some(*reason),
                        EdgeKind::Explicit { .. } => None,
                    },
                    refresh: kind.refreshes(),
                })
                .collect();
            let order = graph
                .order()
                .unwrap_or_default()
                .into_iter()
                .map(|idx| node.resources[idx].id.to_string())
                .collect();
            JsonNode {
                name: node.name.clone(),
                resources,
                edges,
                order,
            }
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&JsonGraph {
        format_version: FORMAT_VERSION,
        nodes,
    })
    .unwrap_or_default();
    text.push('\n');
    text
}
