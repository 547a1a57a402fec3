//! Observing and converging a node: probes in parallel, then the plan applied in dependency
//! order.
//!
//! Owns [`observe`] (every resource's provider `read`, in parallel with rayon) and [`apply`]
//! (a tokio walk of the node's graph with at most `parallel` providers at once). A failed
//! resource marks its dependents skipped while independent branches go on; a resource that
//! actually changed refreshes the resources it notifies. A panic in a provider becomes that
//! resource's failure, not a crash.
//!
//! **Architecture Invariant:** the executor never re-plans: it applies the changes the plan
//! holds, and providers re-check before they change anything.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::model::{self, ResourceId};
use crate::plan::graph::ResourceGraph;
use crate::plan::{NodePlan, PlannedChange};
use crate::resource::Registry;
use crate::resource::change::{Action, State};
use crate::resource::fsutil::Durability;
use crate::resource::provider::{Applied, CommandOutput, PathCache, ProviderCtx, ProviderError};

/// The owned settings a provider context borrows from.
#[derive(Clone, Debug)]
pub struct Env {
    /// `/` or `--root`.
    pub root: PathBuf,
    /// steward's state directory.
    pub state_dir: PathBuf,
    /// This run's id.
    pub run_id: String,
    /// Paths that `file`, `directory` and `symlink` resources manage on the node.
    pub managed_paths: HashSet<String>,
    /// Group commit of file writes, shared by every provider of the run.
    pub durability: Arc<Durability>,
    /// Sensitive values to scrub from messages and command output.
    pub secrets: Arc<Vec<String>>,
    /// Directories found inside the root while probing.
    pub path_cache: Arc<PathCache>,
}

impl Env {
    /// The environment for one node's resources.
    pub fn new(
        node: &model::Node,
        root: PathBuf,
        state_dir: PathBuf,
        run_id: String,
        secrets: Vec<String>,
    ) -> Env {
        let managed_paths = node
            .resources
            .iter()
            .filter(|res| matches!(res.id.kind.as_str(), "file" | "directory" | "symlink"))
            .filter(|res| res.attr_str("ensure") != Some("absent"))
            .map(|res| res.id.name.trim_end_matches('/').to_string())
            .collect();
        let managed_paths = with_ancestors(managed_paths);
        Env {
            root,
            state_dir,
            run_id,
            managed_paths,
            durability: Arc::new(Durability::new()),
            secrets: Arc::new(secrets),
            path_cache: Arc::new(PathCache::new()),
        }
    }

    /// A provider context borrowing from this environment.
    pub fn ctx(&self) -> ProviderCtx<'_> {
        ProviderCtx {
            root: &self.root,
            state_dir: &self.state_dir,
            run_id: &self.run_id,
            managed_paths: &self.managed_paths,
            durability: &self.durability,
            path_cache: Some(&self.path_cache),
        }
    }
}

/// The paths and every directory above them: `purge` must not remove a directory that
/// holds a managed path, even when the directory itself is not declared.
fn with_ancestors(paths: Vec<String>) -> HashSet<String> {
    let mut res = HashSet::with_capacity(paths.len() * 2);
    for path in paths {
        let mut current = path.as_str();
        while let Some(idx) = current.rfind('/') {
            current = &current[..idx];
            if current.is_empty() || !res.insert(current.to_string()) {
                break;
            }
        }
        res.insert(path);
    }
    res
}

/// Reads every resource of a node, in parallel. Changes nothing.
pub fn observe(node: &model::Node, registry: &Registry, env: &Env) -> Vec<Result<State, String>> {
    let ctx = env.ctx();
    node.resources
        .par_iter()
        .map(|res| match registry.get(&res.id.kind) {
            Some(ty) => ty
                .provider()
                .read(&ctx, res)
                .map_err(|err| model::scrub(&err.to_string(), &env.secrets)),
            None => Err(format!("unknown resource type `{}`", res.id.kind)),
        })
        .collect()
}

/// What happened to one resource in an apply.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Already as desired; nothing was done.
    Unchanged,
    /// Changed (and possibly refreshed afterwards).
    Changed {
        /// Output of a command that ran.
        output: Option<CommandOutput>,
        /// Also refreshed because a resource it subscribes to changed.
        refreshed: bool,
    },
    /// Not changed itself, but refreshed (a restart, a `refresh_only` command).
    Refreshed {
        /// Output of a command that ran.
        output: Option<CommandOutput>,
    },
    /// Failed; the message says why.
    Failed {
        /// Why.
        error: String,
        /// Output of the command that failed, if one ran.
        output: Option<CommandOutput>,
    },
    /// Not attempted because a resource it depends on failed or was skipped.
    Skipped {
        /// The dependency that failed.
        because: ResourceId,
    },
}

impl Outcome {
    /// True for failures.
    pub fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }

    /// True when the resource (or a refresh of it) changed the system.
    pub fn is_changed(&self) -> bool {
        matches!(self, Outcome::Changed { .. } | Outcome::Refreshed { .. })
    }
}

/// One resource's result.
#[derive(Clone, Debug)]
pub struct ResourceOutcome {
    /// Index in the node's resources.
    pub resource: usize,
    /// Its identity.
    pub id: ResourceId,
    /// The action that was planned.
    pub action: Option<Action>,
    /// What happened.
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
}

/// Every resource's result on one node, in plan order.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The node.
    pub node: String,
    /// Results in plan order.
    pub outcomes: Vec<ResourceOutcome>,
    /// Wall time of the apply.
    pub duration: Duration,
}

impl RunReport {
    /// Number of failed resources.
    pub fn n_failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.outcome.is_failed())
            .count()
    }

    /// Number of changed or refreshed resources.
    pub fn n_changed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.outcome.is_changed())
            .count()
    }

    /// Number of skipped resources.
    pub fn n_skipped(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Skipped { .. }))
            .count()
    }
}

/// How to apply.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// At most this many resources are applied at once.
    pub parallel: usize,
}

/// Applies a node's plan in dependency order and reports each resource's outcome.
/// `on_done` is called as each resource finishes (for progress displays).
pub fn apply(
    graph: &ResourceGraph<'_>,
    plan: &NodePlan,
    env: &Env,
    config: Config,
    on_done: &(dyn Fn(&ResourceOutcome) + Sync),
) -> std::io::Result<RunReport> {
    let started = Instant::now();
    let node = graph.node;
    let n = node.resources.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(config.parallel.max(1))
        .build()?;
    let planned: Vec<Option<&PlannedChange>> = {
        let mut by_index = vec![None; n];
        for change in &plan.changes {
            by_index[change.resource] = Some(change);
        }
        by_index
    };
    let edges = graph.edges();
    let mut successors: Vec<Vec<(usize, bool)>> = vec![Vec::new(); n];
    let mut n_predecessors = vec![0usize; n];
    for (from, to, kind) in &edges {
        successors[*from].push((*to, kind.refreshes()));
        n_predecessors[*to] += 1;
    }
    let shared = Arc::new(Shared {
        resources: Arc::clone(&node.resources),
        env: env.clone(),
        registry: Registry::builtin(),
    });
    let outcomes = runtime.block_on(async {
        let semaphore = Arc::new(Semaphore::new(config.parallel.max(1)));
        let mut outcomes: Vec<Option<ResourceOutcome>> = vec![None; n];
        let mut blocked_by: Vec<Option<ResourceId>> = vec![None; n];
        let mut refresh = vec![false; n];
        let mut tasks: JoinSet<(usize, Outcome, Duration)> = JoinSet::new();
        let mut ready: Vec<usize> = (0..n).filter(|&idx| n_predecessors[idx] == 0).collect();
        loop {
            // Start (or skip) everything whose dependencies are done.
            while let Some(idx) = ready.pop() {
                let action = planned[idx]
                    .and_then(|p| p.change.as_ref().ok())
                    .map(|c| c.action);
                if let Some(because) = blocked_by[idx].clone() {
                    let outcome = ResourceOutcome {
                        resource: idx,
                        id: node.resources[idx].id.clone(),
                        action,
                        outcome: Outcome::Skipped { because },
                        duration: Duration::ZERO,
                    };
                    finish(
                        idx,
                        &outcome,
                        &successors,
                        &mut n_predecessors,
                        &mut ready,
                        &mut blocked_by,
                        &mut refresh,
                    );
                    on_done(&outcome);
                    outcomes[idx] = Some(outcome);
                    continue;
                }
                let step = match planned[idx].map(|p| &p.change) {
                    Some(Err(message)) => Step::Fail(message.clone()),
                    Some(Ok(change)) if change.action != Action::NoOp => Step::Apply,
                    _ => Step::Nothing,
                };
                let wants_refresh = refresh[idx];
                let shared = Arc::clone(&shared);
                let semaphore = Arc::clone(&semaphore);
                tasks.spawn(async move {
                    let _permit = semaphore.acquire_owned().await;
                    let started = Instant::now();
                    let outcome = tokio::task::spawn_blocking(move || {
                        scrubbed(
                            run_one(&shared, idx, step, wants_refresh),
                            &shared.env.secrets,
                        )
                    })
                    .await
                    .unwrap_or_else(|err| Outcome::Failed {
                        error: format!("provider panicked: {err}"),
                        output: None,
                    });
                    (idx, outcome, started.elapsed())
                });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let Ok((idx, outcome, duration)) = joined else {
                continue;
            };
            let action = planned[idx]
                .and_then(|p| p.change.as_ref().ok())
                .map(|c| c.action);
            let outcome = ResourceOutcome {
                resource: idx,
                id: node.resources[idx].id.clone(),
                action,
                outcome,
                duration,
            };
            finish(
                idx,
                &outcome,
                &successors,
                &mut n_predecessors,
                &mut ready,
                &mut blocked_by,
                &mut refresh,
            );
            on_done(&outcome);
            outcomes[idx] = Some(outcome);
        }
        outcomes
    });
    let mut by_index = outcomes;
    let ordered = plan
        .changes
        .iter()
        .filter_map(|p| by_index[p.resource].take())
        .collect();
    Ok(RunReport {
        node: node.name.clone(),
        outcomes: ordered,
        duration: started.elapsed(),
    })
}

struct Shared {
    resources: Arc<Vec<model::Resource>>,
    env: Env,
    registry: Registry,
}

#[derive(Clone, Debug)]
enum Step {
    /// The plan says nothing changes; only a refresh may run.
    Nothing,
    /// Converge the resource.
    Apply,
    /// The resource could not be read at plan time.
    Fail(String),
}

/// The outcome with every secret removed from its message and output.
fn scrubbed(outcome: Outcome, secrets: &[String]) -> Outcome {
    if secrets.is_empty() {
        return outcome;
    }
    let scrub_output = |output: Option<CommandOutput>| {
        output.map(|output| CommandOutput {
            argv: output
                .argv
                .iter()
                .map(|arg| model::scrub(arg, secrets))
                .collect(),
            stdout: model::scrub(&output.stdout, secrets),
            stderr: model::scrub(&output.stderr, secrets),
            ..output
        })
    };
    match outcome {
        Outcome::Changed { output, refreshed } => Outcome::Changed {
            output: scrub_output(output),
            refreshed,
        },
        Outcome::Refreshed { output } => Outcome::Refreshed {
            output: scrub_output(output),
        },
        Outcome::Failed { error, output } => Outcome::Failed {
            error: model::scrub(&error, secrets),
            output: scrub_output(output),
        },
        other => other,
    }
}

fn run_one(shared: &Shared, idx: usize, step: Step, wants_refresh: bool) -> Outcome {
    let res = &shared.resources[idx];
    let Some(ty) = shared.registry.get(&res.id.kind) else {
        return Outcome::Failed {
            error: format!("unknown resource type `{}`", res.id.kind),
            output: None,
        };
    };
    let provider = ty.provider();
    let ctx = shared.env.ctx();
    let failed = |err: ProviderError| {
        let output = match &err {
            ProviderError::Command { output, .. } => Some((**output).clone()),
            _ => None,
        };
        Outcome::Failed {
            error: err.to_string(),
            output,
        }
    };
    let (changed, output) = match step {
        Step::Fail(message) => {
            return Outcome::Failed {
                error: message,
                output: None,
            };
        }
        Step::Nothing => (false, None),
        Step::Apply => match provider.apply(&ctx, res) {
            Ok(Applied::AlreadyConverged) => (false, None),
            Ok(Applied::Converged { output }) => (true, output),
            Err(err) => return failed(err),
        },
    };
    if !wants_refresh {
        return if changed {
            Outcome::Changed {
                output,
                refreshed: false,
            }
        } else {
            Outcome::Unchanged
        };
    }
    match provider.refresh(&ctx, res) {
        Ok(Applied::Converged {
            output: refresh_output,
        }) if changed => Outcome::Changed {
            output: refresh_output.or(output),
            refreshed: true,
        },
        Ok(Applied::Converged { output }) => Outcome::Refreshed { output },
        Ok(Applied::AlreadyConverged) if changed => Outcome::Changed {
            output,
            refreshed: false,
        },
        Ok(Applied::AlreadyConverged) => Outcome::Unchanged,
        Err(err) => failed(err),
    }
}

/// Records a finished resource: its successors lose a dependency, learn whether to skip,
/// and whether to refresh.
fn finish(
    idx: usize,
    outcome: &ResourceOutcome,
    successors: &[Vec<(usize, bool)>],
    n_predecessors: &mut [usize],
    ready: &mut Vec<usize>,
    blocked_by: &mut [Option<ResourceId>],
    refresh: &mut [bool],
) {
    for &(next, refreshes) in &successors[idx] {
        match &outcome.outcome {
            Outcome::Failed { .. } => {
                blocked_by[next].get_or_insert_with(|| outcome.id.clone());
            }
            Outcome::Skipped { because } => {
                blocked_by[next].get_or_insert_with(|| because.clone());
            }
            Outcome::Changed { .. } if refreshes => refresh[next] = true,
            _ => {}
        }
        n_predecessors[next] -= 1;
        if n_predecessors[next] == 0 {
            ready.push(next);
        }
    }
}
