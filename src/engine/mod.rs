//! The run engine: the one path a run (plan, apply, drift) takes through a node, whichever
//! way the node is reached.
//!
//! Named `engine` because it is the "one engine" of issue 13: local mode and the fleet are
//! two front ends over it.
//! Per node it observes through an [`AgentClient`], plans with [`plan::build`], applies
//! through the same client, and [`record`] turns the plans and reports into the run record.
//! The two clients are [`LocalClient`] (this machine, in process, under `--root`) and the
//! fleet's client over the controller's dispatch (in `fleet`).
//!
//! **Architecture Invariant:** the engine never names a transport, a runtime or the command
//! line: it drives futures a client hands it, and callers choose how to wait for them
//! (local mode with [`client::block_on`], the fleet on its tokio runtime).
//! Rate control, events and saved-plan checks stay with the front ends.

pub mod client;
pub mod record;
pub mod select;

use std::collections::BTreeMap;
use std::path::Path;

pub use client::{AgentClient, AgentError, Applied, ApplyTask, BoxFuture, LocalClient, Observed};
pub use select::{ResourceFilter, SelectError, Selector, selected};

use crate::document::Project;
use crate::exec::RunReport;
use crate::model;
use crate::plan::graph::ResourceGraph;
use crate::plan::{self, NodePlan, Plan};
use crate::resource::Registry;
use crate::validate::Validated;

/// The plans of a run's nodes, with what the records and renderers need beside them.
pub struct Planned<'v> {
    /// The plan.
    pub plan: Plan,
    /// The planned nodes (same order as `plan.nodes`).
    pub nodes: Vec<&'v model::Node>,
    /// Selected nodes with resources that this run's client cannot reach (local mode names
    /// them).
    pub unreachable: Vec<String>,
    /// Digest of the documents, overrides and root ([`documents_digest`]).
    pub digest: String,
    /// This run's id (backups and the stored run use it).
    pub run_id: String,
}

impl<'v> Planned<'v> {
    /// A run with no node planned yet.
    pub fn new(run_id: String, digest: String) -> Planned<'v> {
        Planned {
            plan: Plan { nodes: Vec::new() },
            nodes: Vec::new(),
            unreachable: Vec::new(),
            digest,
            run_id,
        }
    }

    /// Adds a node's plan.
    pub fn push(&mut self, node: &'v model::Node, node_plan: NodePlan) {
        self.plan.nodes.push(node_plan);
        self.nodes.push(node);
    }

    /// The nodes of the plan with their plans, for renderers and records.
    pub fn node_plans(&self) -> impl Iterator<Item = (&NodePlan, &'v model::Node)> {
        self.plan.nodes.iter().zip(self.nodes.iter().copied())
    }
}

/// What applying the planned nodes would refuse ([`crate::plan::PlannedChange::refusal`]),
/// one line per refused resource: `FILE:LINE:COL: node `NODE`: `ID` cannot be applied: WHY`,
/// the file named relative to the project (as run records name it). A plan holding any
/// of them applies nothing, on any node.
pub fn refusals(validated: &Validated, planned: &Planned<'_>) -> Vec<String> {
    let mut lines = Vec::new();
    for (node_plan, node) in planned.node_plans() {
        for change in &node_plan.changes {
            let (Some(why), Some(res)) = (change.refusal(), node.resources.get(change.resource))
            else {
                continue;
            };
            let at = match record::location(validated, res) {
                (Some(file), Some(line), Some(column)) => format!("{file}:{line}:{column}: "),
                _ => String::new(),
            };
            lines.push(format!(
                "{at}node `{}`: `{}` cannot be applied: {why}",
                node.name, res.id
            ));
        }
    }
    lines
}

/// Observes a node through its client and plans it against what was seen.
pub async fn plan_node(
    client: &dyn AgentClient,
    registry: &Registry,
    graph: &ResourceGraph<'_>,
) -> Result<NodePlan, AgentError> {
    let observed = client.observe(graph.node).await?;
    Ok(plan::build(graph, registry, &observed))
}

/// Applies a node through its client.
///
/// A client given a plan applies it; a client that observes again before it applies (the
/// fleet's agent does, and checks the saved fingerprints) returns what it saw, and the plan
/// is rebuilt from that, so the record shows what the node really did.
/// Returns the rebuilt plan (`None` when the given plan stands) and the report.
pub async fn apply_node(
    client: &dyn AgentClient,
    registry: &Registry,
    graph: &ResourceGraph<'_>,
    task: ApplyTask<'_>,
) -> Result<(Option<NodePlan>, RunReport), AgentError> {
    let applied = client.apply(graph, task).await?;
    let rebuilt = applied
        .observed
        .map(|observed| plan::build(graph, registry, &observed));
    Ok((rebuilt, applied.report))
}

/// Digest of every source text, the overrides, the root and the planned nodes' rendered
/// desired state (which covers template and source files and node facts): equal digests
/// mean the same desired state.
pub fn documents_digest(
    project: &Project,
    overrides: &BTreeMap<String, String>,
    root: &Path,
    desired: &[String],
) -> String {
    let mut hasher = blake3::Hasher::new();
    for (name, text) in named_sources(project) {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    for (name, value) in overrides {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(blake3::hash(value.as_bytes()).as_bytes());
    }
    hasher.update(root.as_os_str().as_encoded_bytes());
    for digest in desired {
        hasher.update(digest.as_bytes());
    }
    format!("blake3:{}", hasher.finalize().to_hex())
}

/// Each document file's digest (`blake3:` and hex), by its path relative to the project
/// (standard-library modules by their `stdlib/...` name): what a saved plan keeps so that a
/// refused apply can say which documents changed.
pub fn document_digests(project: &Project) -> BTreeMap<String, String> {
    named_sources(project)
        .map(|(name, text)| {
            (
                name,
                format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex()),
            )
        })
        .collect()
}

/// What changed between two [`document_digests`]: each document that differs, as
/// `web.yaml (changed)`, `db.kdl (added)` or `old.yaml (removed)`, in path order.
pub fn changed_documents(
    was: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut names: Vec<&String> = was.keys().chain(now.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| match (was.get(name), now.get(name)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(_), Some(_)) => Some(format!("{name} (changed)")),
            (None, _) => Some(format!("{name} (added)")),
            (_, None) => Some(format!("{name} (removed)")),
        })
        .collect()
}

/// Every source with its name relative to the project, so the same project reached by
/// another path agrees.
fn named_sources(project: &Project) -> impl Iterator<Item = (String, &str)> {
    let sources = &project.sources;
    (0..sources.len()).map(move |idx| {
        let source = sources.get(crate::diag::SourceId(idx as u32));
        let name = match &source.path {
            Some(path) => path
                .strip_prefix(&project.root)
                .unwrap_or(path)
                .display()
                .to_string(),
            None => source.name.clone(),
        };
        (name, source.text.as_str())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::exec::{Outcome, ResourceOutcome};
    use crate::store::{ResultOutcome, RunKind};
    use crate::validate::{Validated, validate};

    #[test]
    fn changed_documents_names_each_change_in_path_order() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let was = map(&[("a.yaml", "1"), ("b.yaml", "2"), ("c.yaml", "3")]);
        let now = map(&[("a.yaml", "1"), ("b.yaml", "9"), ("d.kdl", "4")]);
        assert_eq!(
            changed_documents(&was, &now),
            ["b.yaml (changed)", "c.yaml (removed)", "d.kdl (added)"]
        );
        assert!(changed_documents(&was, &was).is_empty());
    }

    /// A node reached in process, answering as it is told.
    struct FakeAgent {
        /// What observe answers; `None` reads every resource as unreadable.
        observe: Option<AgentError>,
        /// What apply answers, built from the graph it is given.
        apply: fn(&ResourceGraph<'_>) -> Result<Applied, AgentError>,
    }

    impl AgentClient for FakeAgent {
        fn observe<'a>(
            &'a self,
            node: &'a model::Node,
        ) -> BoxFuture<'a, Result<Vec<Observed>, AgentError>> {
            Box::pin(async move {
                match &self.observe {
                    Some(err) => Err(AgentError::Unreachable(err.to_string())),
                    None => Ok(node
                        .resources
                        .iter()
                        .map(|_| Err("permission denied".to_string()))
                        .collect()),
                }
            })
        }

        fn apply<'a>(
            &'a self,
            graph: &'a ResourceGraph<'a>,
            _task: ApplyTask<'a>,
        ) -> BoxFuture<'a, Result<Applied, AgentError>> {
            Box::pin(async move { (self.apply)(graph) })
        }
    }

    fn project(dir: &Path) -> Validated {
        std::fs::write(
            dir.join("site.yaml"),
            "steward: 1
resources:
  directory:/srv: {}
  file:/srv/a: { content: a }
  file:/srv/b: { content: b, require: [\"file:/srv/a\"] }
",
        )
        .unwrap();
        let validated = validate(
            dir,
            &Registry::builtin(),
            crate::facts::local(Path::new("/")),
            BTreeMap::new(),
        );
        assert!(!validated.has_errors(), "{:?}", validated.diagnostics);
        validated
    }

    fn task() -> ApplyTask<'static> {
        ApplyTask {
            plan: None,
            fingerprints: None,
            parallel: 2,
            on_done: None,
        }
    }

    fn outcome(graph: &ResourceGraph<'_>, idx: usize, outcome: Outcome) -> ResourceOutcome {
        ResourceOutcome {
            resource: idx,
            id: graph.node.resources[idx].id.clone(),
            action: None,
            outcome,
            duration: Duration::from_millis(3),
        }
    }

    #[test]
    fn an_unreachable_node_leaves_every_resource_unreachable_in_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let validated = project(dir.path());
        let registry = Registry::builtin();
        let graph = validated.graph(0, &registry);
        let agent = FakeAgent {
            observe: Some(AgentError::Unreachable("node local is offline".into())),
            apply: |_| Err(AgentError::Failed("unused".into())),
        };
        let err = client::block_on(plan_node(&agent, &registry, &graph)).unwrap_err();
        let results = record::node_failure(&validated, graph.node, &err);
        assert_eq!(results.len(), 3);
        for result in &results {
            assert_eq!(result.outcome, ResultOutcome::Unreachable);
            assert_eq!(
                result.message.as_deref(),
                Some("node `local` could not be reached: node local is offline")
            );
            assert!(result.file.as_deref().unwrap().ends_with("site.yaml"));
        }
        let skipped = record::node_failure(
            &validated,
            graph.node,
            &AgentError::NotStarted("not started: max_errors was exceeded".into()),
        );
        assert!(skipped.iter().all(|r| r.outcome == ResultOutcome::Skipped));
        // A stale saved plan is refused whole: nothing was tried, nothing failed.
        let refused = record::node_failure(
            &validated,
            graph.node,
            &AgentError::Refused("refused the task: actual state moved since the plan".into()),
        );
        assert!(refused.iter().all(|r| r.outcome == ResultOutcome::Skipped));
        assert!(
            refused[0]
                .message
                .as_deref()
                .unwrap()
                .starts_with("node `local` refused the task as a whole")
        );
    }

    #[test]
    fn unreadable_resources_are_planned_as_errors_and_recorded_failed() {
        let dir = tempfile::tempdir().unwrap();
        let validated = project(dir.path());
        let registry = Registry::builtin();
        let graph = validated.graph(0, &registry);
        let agent = FakeAgent {
            observe: None,
            apply: |_| Err(AgentError::Failed("unused".into())),
        };
        let node_plan = client::block_on(plan_node(&agent, &registry, &graph)).unwrap();
        let mut planned = Planned::new("run-1".into(), "blake3:x".into());
        planned.push(graph.node, node_plan);
        assert_eq!(planned.plan.summary().errors, 3);
        let record = record::observed_record(
            RunKind::Drift,
            &validated,
            &planned,
            "run-1",
            "2026-01-01T00:00:00.000Z",
            "/p",
        );
        assert_eq!(record.documents_digest, "blake3:x");
        assert_eq!(record.count(ResultOutcome::Failed), 3);
        assert_eq!(
            record.results[0].message.as_deref(),
            Some("cannot read: permission denied")
        );
    }

    #[test]
    fn a_failed_apply_is_recorded_with_why_and_what_it_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let validated = project(dir.path());
        let registry = Registry::builtin();
        let graph = validated.graph(0, &registry);
        let agent = FakeAgent {
            observe: None,
            apply: |graph| {
                Ok(Applied {
                    observed: Some(
                        graph
                            .node
                            .resources
                            .iter()
                            .map(|_| Err("gone".to_string()))
                            .collect(),
                    ),
                    report: RunReport {
                        node: graph.node.name.clone(),
                        outcomes: vec![
                            outcome(
                                graph,
                                0,
                                Outcome::Failed {
                                    error: "disk full".into(),
                                    output: None,
                                },
                            ),
                            outcome(
                                graph,
                                1,
                                Outcome::Skipped {
                                    because: graph.node.resources[0].id.clone(),
                                },
                            ),
                        ],
                        duration: Duration::from_millis(5),
                    },
                })
            },
        };
        let (rebuilt, report) =
            client::block_on(apply_node(&agent, &registry, &graph, task())).unwrap();
        // The agent observed again: the plan is rebuilt from what it saw.
        let rebuilt = rebuilt.unwrap();
        assert!(rebuilt.changes.iter().all(|c| c.change.is_err()));
        let mut planned = Planned::new("run-2".into(), "blake3:y".into());
        planned.push(graph.node, rebuilt);
        let record = record::apply_record(&validated, &planned, &[report], "run-2", "t0", "/p");
        assert_eq!(record.kind, RunKind::Apply);
        assert_eq!(record.results[0].outcome, ResultOutcome::Failed);
        assert_eq!(record.results[0].message.as_deref(), Some("disk full"));
        assert_eq!(record.results[0].duration_ms, 3);
        assert_eq!(record.results[1].outcome, ResultOutcome::Skipped);
        assert_eq!(
            record.results[1].message.as_deref(),
            Some("skipped because directory:/srv failed")
        );
    }

    #[test]
    fn the_local_client_plans_and_applies_under_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let validated = project(dir.path());
        let registry = Registry::builtin();
        let graph = validated.graph(0, &registry);
        let client = LocalClient::new(
            &registry,
            root.path().to_path_buf(),
            dir.path().join(".steward"),
            "run-3".into(),
            Vec::new(),
        );
        let node_plan = client::block_on(plan_node(&client, &registry, &graph)).unwrap();
        assert_eq!(
            node_plan.changes.iter().filter(|c| c.is_change()).count(),
            3
        );
        let task = ApplyTask {
            plan: Some(&node_plan),
            ..task()
        };
        let (rebuilt, report) =
            client::block_on(apply_node(&client, &registry, &graph, task)).unwrap();
        assert!(rebuilt.is_none(), "the plan given was applied");
        assert_eq!(report.n_changed(), 3);
        assert_eq!(
            std::fs::read_to_string(root.path().join("srv/b")).unwrap(),
            "b"
        );
        // Observed again, nothing is left to do.
        let again = client::block_on(plan_node(&client, &registry, &graph)).unwrap();
        assert!(!again.changes.iter().any(|c| c.is_change()));
    }
}
