//! The engine's [`AgentClient`] for enrolled nodes: observations and applies travel as
//! tasks through [`Controller::dispatch`] to the node's agent.
//!
//! **Architecture Invariant:** this client only maps between the engine's types and the
//! wire (catalogs, fingerprints, observed states, outcomes) and streams the agent's outcome
//! events; planning and records are the engine's, rate control and run events the run's.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::engine::{AgentClient, AgentError, Applied, ApplyTask, BoxFuture, Observed};
use crate::fleet::controller::{Controller, DispatchError, TaskEvent};
use crate::fleet::run::request::Event;
use crate::fleet::wire::{Catalog, TaskKind, TaskResult, WireObserved, WireOutcome};
use crate::model;
use crate::plan::graph::ResourceGraph;

/// How long a probe may take on one node.
const PROBE_WAIT: Duration = Duration::from_secs(300);
/// How long an apply may take on one node.
const APPLY_WAIT: Duration = Duration::from_secs(3600);

/// Reaches nodes through the controller's agent sessions, for one run.
#[derive(Clone)]
pub(crate) struct DispatchClient {
    /// The controller whose sessions carry the tasks.
    pub controller: Arc<Controller>,
    /// The run the tasks belong to.
    pub run_id: String,
    /// The model's secrets: a catalog carries those its resources read.
    pub secrets: Arc<Vec<String>>,
    /// Where each applied resource's outcome is announced.
    pub progress: mpsc::UnboundedSender<Event>,
}

impl DispatchClient {
    fn catalog(&self, node: &model::Node) -> Catalog {
        Catalog::new(node, &self.secrets)
    }
}

/// Why a task got no result from its node, in the engine's terms.
fn unreachable(err: DispatchError) -> AgentError {
    match err {
        DispatchError::Offline(_) | DispatchError::WentOffline(_) => {
            AgentError::Offline(err.to_string())
        }
        _ => AgentError::Unreachable(err.to_string()),
    }
}

impl AgentClient for DispatchClient {
    fn observe<'a>(
        &'a self,
        node: &'a model::Node,
    ) -> BoxFuture<'a, Result<Vec<Observed>, AgentError>> {
        Box::pin(async move {
            let catalog = self.catalog(node);
            let result = self
                .controller
                .dispatch(
                    &self.run_id,
                    &node.name,
                    TaskKind::Probe { catalog },
                    PROBE_WAIT,
                    None,
                )
                .await;
            match result {
                Ok(TaskResult::Observed { states }) => {
                    observed_states(node, &states).map_err(AgentError::Failed)
                }
                Ok(other) => Err(AgentError::Failed(unexpected(&other, "a probe"))),
                Err(err) => Err(unreachable(err)),
            }
        })
    }

    /// The agent always observes again and plans on the node, and refuses the task when a
    /// resource moved from the fingerprints; a plan made here is not sent, and the agent's
    /// outcome events go to the run's progress stream instead of `task.on_done`.
    fn apply<'a>(
        &'a self,
        graph: &'a ResourceGraph<'a>,
        task: ApplyTask<'a>,
    ) -> BoxFuture<'a, Result<Applied, AgentError>> {
        Box::pin(async move {
            let node = graph.node;
            let (events_tx, mut events_rx) = mpsc::unbounded_channel::<TaskEvent>();
            let forward = {
                let progress = self.progress.clone();
                let name = node.name.clone();
                tokio::spawn(async move {
                    while let Some(event) = events_rx.recv().await {
                        let TaskEvent::Outcome(outcome) = event else {
                            continue;
                        };
                        let _ = progress.send(Event::Resource {
                            node: name.clone(),
                            resource: outcome.id.clone(),
                            outcome: outcome_name(&outcome).to_string(),
                        });
                    }
                })
            };
            let result = self
                .controller
                .dispatch(
                    &self.run_id,
                    &node.name,
                    TaskKind::Apply {
                        catalog: self.catalog(node),
                        fingerprints: task.fingerprints,
                        parallel: task.parallel,
                    },
                    APPLY_WAIT,
                    Some(events_tx),
                )
                .await;
            let _ = forward.await;
            match result {
                Ok(TaskResult::Applied {
                    states,
                    outcomes,
                    duration_ms,
                }) => {
                    let observed = observed_states(node, &states).map_err(AgentError::Failed)?;
                    let report = crate::fleet::wire::run_report(node, &outcomes, duration_ms)
                        .map_err(|err| AgentError::Failed(err.to_string()))?;
                    Ok(Applied {
                        observed: Some(observed),
                        report,
                    })
                }
                // Refused as a whole (a saved plan's state moved): nothing was applied.
                Ok(TaskResult::Refused { reason }) => {
                    Err(AgentError::Refused(format!("refused the task: {reason}")))
                }
                Ok(other) => Err(AgentError::Failed(unexpected(&other, "an apply"))),
                Err(err) => Err(unreachable(err)),
            }
        })
    }
}

fn outcome_name(outcome: &WireOutcome) -> &'static str {
    use crate::fleet::wire::WireOutcomeKind;
    match outcome.outcome {
        WireOutcomeKind::Unchanged => "unchanged",
        WireOutcomeKind::Changed { .. } => "changed",
        WireOutcomeKind::Refreshed { .. } => "refreshed",
        WireOutcomeKind::Failed { .. } => "failed",
        WireOutcomeKind::Skipped { .. } => "skipped",
    }
}

/// Why an answer is not the one a task asked for.
fn unexpected(result: &TaskResult, task: &str) -> String {
    match result {
        TaskResult::Refused { reason } => format!("refused the task: {reason}"),
        TaskResult::Failed { error } => error.clone(),
        _ => format!("answered {task} with something else"),
    }
}

/// The agent's observations, checked against the catalog it was sent.
fn observed_states(node: &model::Node, states: &[WireObserved]) -> Result<Vec<Observed>, String> {
    if states.len() != node.resources.len() {
        return Err(format!(
            "the agent reported {} states for {} resources",
            states.len(),
            node.resources.len()
        ));
    }
    Ok(states.iter().map(WireObserved::to_model).collect())
}
