//! The dependency graph of one node's resources.
//!
//! An edge `a → b` means `a` is applied before `b`. Built as a list of named steps, as
//! Terraform's graph builder is, each of which may add diagnostics.

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};

use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::model::{self, RelationKind, ResourceId};
use crate::resource::{Candidates, Registry, ancestors};

/// Why one resource comes before another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// Declared with a relationship attribute.
    Explicit {
        /// Which relationship.
        relation: RelationKind,
        /// Where it is written.
        span: Span,
    },
    /// Implied by the resources' attributes.
    Implicit {
        /// Why, such as "inside directory".
        reason: &'static str,
    },
}

impl EdgeKind {
    /// True for `notify`/`subscribe`: a change in the source refreshes the target.
    pub fn refreshes(&self) -> bool {
        matches!(self, EdgeKind::Explicit { relation, .. } if relation.refreshes())
    }

    /// A short label for output.
    pub fn label(&self) -> &'static str {
        match self {
            EdgeKind::Explicit { relation, .. } => relation.as_str(),
            EdgeKind::Implicit { reason } => reason,
        }
    }
}

/// A node's graph edges, `(from, to, kind)` by resource index: a graph without the borrow of
/// its node, kept beside the model.
#[derive(Clone, Debug, Default)]
pub struct EdgeList {
    /// How many resources the node had.
    n_resources: usize,
    edges: Vec<(usize, usize, EdgeKind)>,
}

/// One step of building the graph (Terraform's graph transformers).
type Step<'m> = fn(&mut ResourceGraph<'m>, &Registry, &mut Vec<Diagnostic>);

/// One node's resources as a DAG. Vertex weights are indices into `node.resources`.
pub struct ResourceGraph<'m> {
    /// The node whose resources these are.
    pub node: &'m model::Node,
    /// The graph.
    pub graph: StableDiGraph<usize, EdgeKind>,
    vertices: Vec<NodeIndex>,
}

impl<'m> ResourceGraph<'m> {
    /// Builds the graph of one node, reporting missing references and cycles to `acc`.
    pub fn build(
        node: &'m model::Node,
        registry: &Registry,
        acc: &mut Vec<Diagnostic>,
    ) -> ResourceGraph<'m> {
        let mut res = ResourceGraph {
            node,
            graph: StableDiGraph::new(),
            vertices: Vec::new(),
        };
        let steps: [(&str, Step<'m>); 4] = [
            ("add_resources", ResourceGraph::add_resources),
            ("add_explicit_edges", ResourceGraph::add_explicit_edges),
            ("add_implicit_edges", ResourceGraph::add_implicit_edges),
            ("reject_cycles", ResourceGraph::reject_cycles),
        ];
        for (_name, step) in steps {
            step(&mut res, registry, acc);
        }
        res
    }

    /// The graph's edges as resource indices, in the order they were added: what
    /// [`ResourceGraph::from_edges`] needs to build the same graph again without looking at
    /// any resource.
    pub fn edge_list(&self) -> EdgeList {
        EdgeList {
            n_resources: self.node.resources.len(),
            edges: (&self.graph)
                .edge_references()
                .map(|e| {
                    (
                        self.graph[e.source()],
                        self.graph[e.target()],
                        e.weight().clone(),
                    )
                })
                .collect(),
        }
    }

    /// The graph of `node` with the edges an earlier [`ResourceGraph::build`] of the same node
    /// found (validation builds every graph once; planning reuses them); `None` when the node
    /// has a different number of resources than then.
    pub fn from_edges(node: &'m model::Node, edges: &EdgeList) -> Option<ResourceGraph<'m>> {
        if edges.n_resources != node.resources.len() {
            return None;
        }
        let mut graph = StableDiGraph::with_capacity(node.resources.len(), edges.edges.len());
        let vertices: Vec<NodeIndex> = (0..node.resources.len())
            .map(|idx| graph.add_node(idx))
            .collect();
        for (from, to, kind) in &edges.edges {
            if let (Some(&from), Some(&to)) = (vertices.get(*from), vertices.get(*to)) {
                graph.add_edge(from, to, kind.clone());
            }
        }
        Some(ResourceGraph {
            node,
            graph,
            vertices,
        })
    }

    /// The resource at a vertex.
    pub fn resource(&self, vertex: NodeIndex) -> &'m model::Resource {
        &self.node.resources[self.graph[vertex]]
    }

    /// The vertex of resource `idx` in `node.resources`.
    pub fn vertex(&self, idx: usize) -> NodeIndex {
        self.vertices[idx]
    }

    /// Edges as `(from, to, kind)` with resource indices, in a stable order.
    pub fn edges(&self) -> Vec<(usize, usize, &EdgeKind)> {
        let mut edges: Vec<_> = (&self.graph)
            .edge_references()
            .map(|e| (self.graph[e.source()], self.graph[e.target()], e.weight()))
            .collect();
        edges.sort_by_key(|(from, to, _)| (*from, *to));
        edges
    }

    /// Resource indices in an order that respects every edge, declaration order among
    /// resources that do not depend on each other (Kahn's algorithm, smallest index first);
    /// `None` when the graph has a cycle.
    pub fn order(&self) -> Option<Vec<usize>> {
        let n = self.node.resources.len();
        let mut n_predecessors = vec![0usize; n];
        let mut successors: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (from, to, _) in self.edges() {
            n_predecessors[to] += 1;
            successors[from].push(to);
        }
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> = (0..n)
            .filter(|&idx| n_predecessors[idx] == 0)
            .map(std::cmp::Reverse)
            .collect();
        let mut order = Vec::with_capacity(n);
        while let Some(std::cmp::Reverse(idx)) = ready.pop() {
            order.push(idx);
            for &next in &successors[idx] {
                n_predecessors[next] -= 1;
                if n_predecessors[next] == 0 {
                    ready.push(std::cmp::Reverse(next));
                }
            }
        }
        (order.len() == n).then_some(order)
    }

    fn add_resources(&mut self, _: &Registry, _: &mut Vec<Diagnostic>) {
        self.vertices = (0..self.node.resources.len())
            .map(|idx| self.graph.add_node(idx))
            .collect();
    }

    fn index(&self) -> foldhash::HashMap<&'m ResourceId, usize> {
        self.node
            .resources
            .iter()
            .enumerate()
            .map(|(idx, res)| (&res.id, idx))
            .collect()
    }

    fn add_explicit_edges(&mut self, _: &Registry, acc: &mut Vec<Diagnostic>) {
        let index = self.index();
        let node = self.node;
        for (idx, res) in node.resources.iter().enumerate() {
            for relation in &res.relations {
                let Some(&target) = index.get(&relation.target) else {
                    let same_kind: Vec<String> = node
                        .resources
                        .iter()
                        .filter(|r| r.id.kind == relation.target.kind)
                        .map(|r| r.id.to_string())
                        .collect();
                    let refs: Vec<&str> = same_kind.iter().map(String::as_str).collect();
                    let help = if refs.is_empty() {
                        format!(
                            "no `{}` resource is declared for node `{}`",
                            relation.target.kind, node.name
                        )
                    } else {
                        did_you_mean(&relation.target.to_string(), &refs)
                    };
                    acc.push(
                        Diagnostic::error(
                            "graph::missing_reference",
                            relation.span,
                            format!(
                                "`{}` of `{}` names `{}`, which is not declared for node `{}`",
                                relation.kind.as_str(),
                                res.id,
                                relation.target,
                                node.name
                            ),
                        )
                        .with_label("not declared")
                        .with_help(help),
                    );
                    continue;
                };
                if target == idx {
                    acc.push(Diagnostic::error(
                        "graph::self_reference",
                        relation.span,
                        format!("`{}` refers to itself", res.id),
                    ));
                    continue;
                }
                let (from, to) = match relation.kind {
                    RelationKind::Require | RelationKind::Subscribe => (target, idx),
                    RelationKind::Before | RelationKind::Notify => (idx, target),
                };
                let kind = EdgeKind::Explicit {
                    relation: relation.kind,
                    span: relation.span,
                };
                self.graph
                    .add_edge(self.vertices[from], self.vertices[to], kind);
            }
        }
    }

    fn add_implicit_edges(&mut self, registry: &Registry, _: &mut Vec<Diagnostic>) {
        let index = self.index();
        // Declared resources of a kind by name, built for each kind an `Ancestors` candidate
        // asks for and looked up by slices of a path: no id per ancestor.
        let mut by_kind: foldhash::HashMap<&str, foldhash::HashMap<&str, usize>> =
            foldhash::HashMap::default();
        let node = self.node;
        for (idx, res) in self.node.resources.iter().enumerate() {
            let Some(ty) = registry.get(&res.id.kind) else {
                continue;
            };
            for dep in ty.implicit_deps(res) {
                let found = match &dep.candidates {
                    Candidates::Ids(ids) => ids.iter().find_map(|id| index.get(id).copied()),
                    Candidates::Ancestors { kind, path } => {
                        let named = by_kind.entry(kind).or_insert_with(|| {
                            node.resources
                                .iter()
                                .enumerate()
                                .filter(|(_, res)| res.id.kind == *kind)
                                .map(|(idx, res)| (res.id.name.as_str(), idx))
                                .collect()
                        });
                        ancestors(path).find_map(|dir| named.get(dir).copied())
                    }
                };
                if let Some(from) = found.filter(|&from| from != idx) {
                    let (from, to) = (self.vertices[from], self.vertices[idx]);
                    if self.graph.edges_connecting(from, to).next().is_none() {
                        self.graph
                            .add_edge(from, to, EdgeKind::Implicit { reason: dep.reason });
                    }
                }
            }
        }
    }

    fn reject_cycles(&mut self, _: &Registry, acc: &mut Vec<Diagnostic>) {
        for component in tarjan_scc(&self.graph) {
            if component.len() < 2 {
                continue;
            }
            let cycle = self.find_cycle(&component);
            let names: Vec<String> = cycle
                .iter()
                .map(|&v| self.resource(v).id.to_string())
                .collect();
            let mut text = names.join(" → ");
            if let Some(first) = names.first() {
                text.push_str(&format!(" → {first}"));
            }
            let mut explicit = Vec::new();
            let mut implicit = Vec::new();
            for (pos, &from) in cycle.iter().enumerate() {
                let to = cycle[(pos + 1) % cycle.len()];
                let Some(edge) = self.graph.edges_connecting(from, to).next() else {
                    continue;
                };
                match edge.weight() {
                    EdgeKind::Explicit { relation, span } => {
                        explicit.push((*span, relation.as_str(), from, to))
                    }
                    EdgeKind::Implicit { reason } => implicit.push((*reason, from, to)),
                }
            }
            let primary = explicit
                .first()
                .map_or_else(|| self.resource(cycle[0]).span, |(span, ..)| *span);
            let mut diag = Diagnostic::error(
                "graph::cycle",
                primary,
                format!("dependency cycle on node `{}`: {text}", self.node.name),
            );
            for (pos, (span, relation, _, _)) in explicit.iter().enumerate() {
                if pos == 0 {
                    diag = diag.with_label(format!("`{relation}` here"));
                } else {
                    diag = diag.with_secondary(*span, format!("`{relation}` here"));
                }
            }
            let notes: Vec<String> = implicit
                .iter()
                .map(|(reason, from, to)| {
                    format!(
                        "`{}` comes before `{}` implicitly ({reason})",
                        self.resource(*from).id,
                        self.resource(*to).id
                    )
                })
                .collect();
            let mut help = "remove one of these relationships to break the cycle".to_string();
            if !notes.is_empty() {
                help = format!("{help}; {}", notes.join("; "));
            }
            acc.push(diag.with_help(help));
        }
    }

    /// A simple cycle through the component's first vertex, following edges inside it.
    fn find_cycle(&self, component: &[NodeIndex]) -> Vec<NodeIndex> {
        let start = *component.iter().min().unwrap_or(&component[0]);
        let inside = |v: NodeIndex| component.contains(&v);
        // Breadth-first search for the shortest path back to `start`.
        let mut previous: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(v) = queue.pop_front() {
            let mut successors: Vec<NodeIndex> = self
                .graph
                .neighbors_directed(v, Direction::Outgoing)
                .filter(|&n| inside(n))
                .collect();
            successors.sort();
            for next in successors {
                if next == start {
                    let mut path = vec![v];
                    let mut current = v;
                    while current != start {
                        current = previous[&current];
                        path.push(current);
                    }
                    path.reverse();
                    return path;
                }
                if let std::collections::hash_map::Entry::Vacant(entry) = previous.entry(next) {
                    entry.insert(v);
                    queue.push_back(next);
                }
            }
        }
        component.to_vec()
    }
}
