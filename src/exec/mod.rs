//! Observing and converging a node: probes in parallel, then the plan applied in dependency
//! order.
//!
//! Owns [`observe`] (every resource's provider `read`, in parallel with rayon) and [`apply`]
//! (a walk of the node's graph by `parallel` worker threads, file writes made durable in
//! batches). A failed
//! resource marks its dependents skipped while independent branches go on; a resource that
//! actually changed refreshes the resources it notifies. A panic in a provider becomes that
//! resource's failure, not a crash.
//!
//! **Architecture Invariant:** the executor never re-plans: it applies the changes the plan
//! holds, and providers re-check before they change anything.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::model::{self, ResourceId};
use crate::plan::NodePlan;
use crate::plan::graph::ResourceGraph;
use crate::resource::Registry;
use crate::resource::change::{Action, State};
use crate::resource::command::{CommandRunner, SystemRunner};
use crate::resource::durability::{Durability, Ticket};
use crate::resource::provider::{
    Account, Applied, CommandOutput, Declared, PathCache, ProviderCtx, ProviderError, REFUSED,
    Staged,
};

/// The owned settings a provider context borrows from.
#[derive(Clone, Debug)]
pub struct Env {
    /// `/` or `--root`.
    pub root: PathBuf,
    /// steward's state directory.
    pub state_dir: PathBuf,
    /// This run's id.
    pub run_id: String,
    /// Paths that resources manage on the node ([`ResourceType::managed_path`]), with their
    /// ancestors.
    pub managed_paths: foldhash::HashSet<String>,
    /// What the node's documents declare (managed paths, users, groups), for the refusals
    /// found while observing ([`crate::resource::provider::Provider::refusal`]).
    pub declared: Declared,
    /// Group commit of file writes, shared by every provider of the run.
    pub durability: Arc<Durability>,
    /// Sensitive values to scrub from messages and command output.
    pub secrets: Arc<Vec<String>>,
    /// Directories found inside the root while probing.
    pub path_cache: Arc<PathCache>,
    /// Runs the providers' system commands.
    pub runner: Arc<dyn CommandRunner>,
}

impl Env {
    /// The environment for one node's resources.
    pub fn new(
        node: &model::Node,
        registry: &Registry,
        root: PathBuf,
        state_dir: PathBuf,
        run_id: String,
        secrets: Vec<String>,
    ) -> Env {
        let paths: Vec<String> = node
            .resources
            .iter()
            .filter_map(|res| registry.get(&res.id.kind)?.managed_path(res))
            .map(|path| path.trim_end_matches('/').to_string())
            .collect();
        let mut declared = Declared {
            paths: paths.iter().cloned().collect(),
            ..Declared::default()
        };
        for res in node.resources.iter() {
            let Some(ty) = registry.get(&res.id.kind) else {
                continue;
            };
            for account in ty.declared_accounts(res) {
                match account {
                    Account::User(name) => declared.users.insert(name),
                    Account::Group(name) => declared.groups.insert(name),
                };
            }
        }
        let managed_paths = with_ancestors(paths);
        Env {
            root,
            state_dir,
            run_id,
            managed_paths,
            declared,
            durability: Arc::new(Durability::new()),
            secrets: Arc::new(secrets),
            path_cache: Arc::new(PathCache::new()),
            runner: Arc::new(SystemRunner),
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
            runner: &*self.runner,
            staged: None,
        }
    }
}

/// The paths and every directory above them: `purge` must not remove a directory that
/// holds a managed path, even when the directory itself is not declared.
fn with_ancestors(paths: Vec<String>) -> foldhash::HashSet<String> {
    let mut res =
        <foldhash::HashSet<String> as foldhash::HashSetExt>::with_capacity(paths.len() * 2);
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
///
/// A resource that reads fine but that applying would refuse ([`crate::resource::provider::Provider::refusal`]) is
/// observed as an error starting with [`REFUSED`], which the planner reports as a refusal.
pub fn observe(node: &model::Node, registry: &Registry, env: &Env) -> Vec<Result<State, String>> {
    // Nothing changes while reading: a missing directory can be remembered as missing, so
    // the thousands of paths below a directory not created yet cost no `lstat` each.
    let probe_cache = PathCache::for_probe();
    let ctx = ProviderCtx {
        path_cache: Some(&probe_cache),
        ..env.ctx()
    };
    let observed = node
        .resources
        .par_iter()
        .map(|res| match registry.get(&res.id.kind) {
            Some(ty) => {
                let provider = ty.provider();
                let observed = provider.read(&ctx, res).and_then(|state| {
                    match provider.refusal(&ctx, res, &state, &env.declared)? {
                        Some(why) => Ok(Err(format!("{REFUSED}{why}"))),
                        None => Ok(Ok(state)),
                    }
                });
                match observed {
                    Ok(Ok(state)) => Ok(state),
                    Ok(Err(refused)) => Err(model::scrub(&refused, &env.secrets)),
                    Err(err) => Err(model::scrub(&err.to_string(), &env.secrets)),
                }
            }
            None => Err(format!("unknown resource type `{}`", res.id.kind)),
        })
        .collect();
    env.path_cache.adopt(&probe_cache);
    observed
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
/// `on_done` is called as each resource finishes (for progress displays), from the worker
/// threads, one call at a time.
///
/// `parallel` worker threads take ready resources from one queue and, when one finishes,
/// release its dependents themselves: no thread hand-off per resource.
///
/// File writes and directory fsyncs are staged, not waited for: a worker goes on with other
/// ready resources, and the staged resources finish together when the queue runs dry (or
/// [`MAX_AWAITING`] wait), in one durable batch ([`Durability`]). A resource's dependents
/// start only once its writes are durable.
pub fn apply(
    graph: &ResourceGraph<'_>,
    registry: &Registry,
    plan: &NodePlan,
    env: &Env,
    config: Config,
    on_done: &(dyn Fn(&ResourceOutcome) + Sync),
) -> std::io::Result<RunReport> {
    let started = Instant::now();
    let node = graph.node;
    if let Some(report) = refused(node, plan, started) {
        return Ok(report);
    }
    let n = node.resources.len();
    let n_workers = config.parallel.clamp(1, n.max(1));
    let mut steps: Vec<(Step, Option<Action>)> = vec![(Step::Nothing, None); n];
    for planned in &plan.changes {
        steps[planned.resource] = match &planned.change {
            Err(message) => (Step::Fail(message.clone()), None),
            Ok(change) if change.action != Action::NoOp => (Step::Apply, Some(change.action)),
            Ok(change) => (Step::Nothing, Some(change.action)),
        };
    }
    let mut successors: Vec<Vec<(usize, bool)>> = vec![Vec::new(); n];
    let mut n_predecessors = vec![0usize; n];
    for (from, to, kind) in graph.edges() {
        successors[from].push((to, kind.refreshes()));
        n_predecessors[to] += 1;
    }
    let ready = (0..n).filter(|&idx| n_predecessors[idx] == 0).collect();
    let pool = Pool {
        walk: Mutex::new(Walk {
            ready,
            n_predecessors,
            blocked_by: vec![None; n],
            refresh: vec![false; n],
            awaiting: Vec::new(),
            outcomes: (0..n).map(|_| None).collect(),
            n_left: n,
        }),
        more: Condvar::new(),
        successors,
        steps,
        shared: Shared {
            resources: &node.resources,
            env,
            registry,
        },
        on_done: Mutex::new(on_done),
    };
    std::thread::scope(|scope| -> std::io::Result<()> {
        let mut workers = Vec::with_capacity(n_workers);
        for idx in 0..n_workers {
            let pool = &pool;
            let worker = std::thread::Builder::new()
                .name(format!("steward-apply-{idx}"))
                .spawn_scoped(scope, move || pool.work());
            match worker {
                Ok(worker) => workers.push(worker),
                // The workers started so far finish the walk.
                Err(err) if workers.is_empty() => return Err(err),
                Err(_) => break,
            }
        }
        for worker in workers {
            // A panic outside a provider (which `work` catches) leaves its resources unfinished;
            // they are reported as failed below.
            let _ = worker.join();
        }
        Ok(())
    })?;
    let mut by_index = pool
        .walk
        .into_inner()
        .map(|walk| walk.outcomes)
        .unwrap_or_else(|poisoned| poisoned.into_inner().outcomes);
    let ordered = plan
        .changes
        .iter()
        .map(|p| {
            by_index[p.resource]
                .take()
                .unwrap_or_else(|| ResourceOutcome {
                    resource: p.resource,
                    id: node.resources[p.resource].id.clone(),
                    action: p.change.as_ref().ok().map(|c| c.action),
                    outcome: Outcome::Failed {
                        error: "the executor stopped before this resource finished".into(),
                        output: None,
                    },
                    duration: Duration::ZERO,
                })
        })
        .collect();
    Ok(RunReport {
        node: node.name.clone(),
        outcomes: ordered,
        duration: started.elapsed(),
    })
}

/// A plan that holds a refusal ([`crate::plan::PlannedChange::refusal`]) changes nothing: each refused
/// resource fails with its reason and every other one is skipped because of the first.
fn refused(node: &model::Node, plan: &NodePlan, started: Instant) -> Option<RunReport> {
    let first = plan.changes.iter().find(|c| c.refusal().is_some())?;
    let because = node.resources.get(first.resource)?.id.clone();
    let outcomes = plan
        .changes
        .iter()
        .filter_map(|planned| {
            let res = node.resources.get(planned.resource)?;
            let outcome = match planned.refusal() {
                Some(why) => Outcome::Failed {
                    error: format!("{REFUSED}{why}"),
                    output: None,
                },
                None => Outcome::Skipped {
                    because: because.clone(),
                },
            };
            Some(ResourceOutcome {
                resource: planned.resource,
                id: res.id.clone(),
                action: planned.change.as_ref().ok().map(|c| c.action),
                outcome,
                duration: Duration::ZERO,
            })
        })
        .collect();
    Some(RunReport {
        node: node.name.clone(),
        outcomes,
        duration: started.elapsed(),
    })
}

/// Staged resources waiting for their writes to become durable, beyond which a worker
/// flushes them even though other resources are ready (bounds the batch and its latency).
pub const MAX_AWAITING: usize = 1024;

/// What the workers share.
struct Pool<'a> {
    walk: Mutex<Walk>,
    /// Signalled when resources become ready or the walk ends.
    more: Condvar,
    successors: Vec<Vec<(usize, bool)>>,
    steps: Vec<(Step, Option<Action>)>,
    shared: Shared<'a>,
    /// Serializes the progress callback.
    on_done: Mutex<&'a (dyn Fn(&ResourceOutcome) + Sync)>,
}

/// The walk's progress.
struct Walk {
    ready: VecDeque<usize>,
    n_predecessors: Vec<usize>,
    blocked_by: Vec<Option<ResourceId>>,
    refresh: Vec<bool>,
    /// Applied resources whose staged writes are not durable yet.
    awaiting: Vec<(ResourceOutcome, Vec<Ticket>)>,
    /// Finished resources' outcomes, by resource index.
    outcomes: Vec<Option<ResourceOutcome>>,
    /// Resources not finished yet.
    n_left: usize,
}

/// What a worker does next.
enum Job {
    /// Apply (or skip) this resource.
    Run(usize, Option<ResourceId>, bool),
    /// Wait for these resources' staged writes, then finish them.
    Settle(Vec<(ResourceOutcome, Vec<Ticket>)>),
}

impl Pool<'_> {
    /// One worker: takes ready resources until every resource is finished.
    fn work(&self) {
        while let Some(job) = self.next() {
            match job {
                Job::Run(idx, blocked_by, wants_refresh) => {
                    self.run(idx, blocked_by, wants_refresh)
                }
                Job::Settle(awaiting) => {
                    for (mut outcome, tickets) in awaiting {
                        let mut appeared = false;
                        for ticket in tickets {
                            let result = self.shared.env.durability.wait(ticket);
                            match (result, outcome.outcome.is_failed()) {
                                (Err(ProviderError::Appeared { .. }), false) => appeared = true,
                                (Err(err), false) => {
                                    outcome.outcome = Outcome::Failed {
                                        error: model::scrub(
                                            &err.to_string(),
                                            &self.shared.env.secrets,
                                        ),
                                        output: None,
                                    }
                                }
                                _ => {}
                            }
                        }
                        if appeared && !outcome.outcome.is_failed() {
                            // Something appeared where the plan saw nothing: apply again,
                            // looking first and waiting for the write.
                            outcome.outcome = self.apply_checked(outcome.resource);
                        }
                        self.finish(outcome);
                    }
                }
            }
        }
    }

    /// Applies one resource; finishes it now, or once its staged writes are durable.
    fn run(&self, idx: usize, blocked_by: Option<ResourceId>, wants_refresh: bool) {
        let started = Instant::now();
        let (step, action) = self.steps[idx].clone();
        // A resource that refreshes after its change sees that change on disk first.
        let staged = (!wants_refresh).then(|| match action {
            Some(Action::Create) => Staged::planned_absent(),
            _ => Staged::new(),
        });
        let outcome = match blocked_by {
            Some(because) => Outcome::Skipped { because },
            None => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                scrubbed(
                    run_one(&self.shared, idx, step, wants_refresh, staged.as_ref()),
                    &self.shared.env.secrets,
                )
            }))
            .unwrap_or_else(|_| Outcome::Failed {
                error: "provider panicked".into(),
                output: None,
            }),
        };
        let outcome = ResourceOutcome {
            resource: idx,
            id: self.shared.resources[idx].id.clone(),
            action,
            outcome,
            duration: started.elapsed(),
        };
        let tickets = staged.map(|staged| staged.take()).unwrap_or_default();
        if tickets.is_empty() {
            self.finish(outcome);
            return;
        }
        let Ok(mut walk) = self.walk.lock() else {
            return;
        };
        walk.awaiting.push((outcome, tickets));
    }

    /// Applies one resource with every check and its writes waited for, not staged.
    fn apply_checked(&self, idx: usize) -> Outcome {
        let step = self.steps[idx].0.clone();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            scrubbed(
                run_one(&self.shared, idx, step, false, None),
                &self.shared.env.secrets,
            )
        }))
        .unwrap_or_else(|_| Outcome::Failed {
            error: "provider panicked".into(),
            output: None,
        })
    }

    /// The next job, waiting for one; `None` when the walk is over.
    fn next(&self) -> Option<Job> {
        let mut walk = self.walk.lock().ok()?;
        loop {
            if walk.awaiting.len() >= MAX_AWAITING {
                return Some(Job::Settle(std::mem::take(&mut walk.awaiting)));
            }
            if let Some(idx) = walk.ready.pop_front() {
                return Some(Job::Run(
                    idx,
                    walk.blocked_by[idx].clone(),
                    walk.refresh[idx],
                ));
            }
            if !walk.awaiting.is_empty() {
                return Some(Job::Settle(std::mem::take(&mut walk.awaiting)));
            }
            if walk.n_left == 0 {
                return None;
            }
            walk = self.more.wait(walk).ok()?;
        }
    }

    /// Records a finished resource: its successors lose a dependency, learn whether to skip,
    /// and whether to refresh.
    fn finish(&self, outcome: ResourceOutcome) {
        if let Ok(on_done) = self.on_done.lock() {
            on_done(&outcome);
        }
        let Ok(mut walk) = self.walk.lock() else {
            return;
        };
        let mut released = 0;
        for &(next, refreshes) in &self.successors[outcome.resource] {
            match &outcome.outcome {
                Outcome::Failed { .. } => {
                    walk.blocked_by[next].get_or_insert_with(|| outcome.id.clone());
                }
                Outcome::Skipped { because } => {
                    walk.blocked_by[next].get_or_insert_with(|| because.clone());
                }
                Outcome::Changed { .. } if refreshes => walk.refresh[next] = true,
                _ => {}
            }
            walk.n_predecessors[next] -= 1;
            if walk.n_predecessors[next] == 0 {
                walk.ready.push_back(next);
                released += 1;
            }
        }
        walk.n_left -= 1;
        let idx = outcome.resource;
        walk.outcomes[idx] = Some(outcome);
        if walk.n_left == 0 {
            self.more.notify_all();
        } else {
            // One waiting worker per released resource, not every worker for each.
            for _ in 0..released {
                self.more.notify_one();
            }
        }
    }
}

struct Shared<'a> {
    resources: &'a [model::Resource],
    env: &'a Env,
    registry: &'a Registry,
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

fn run_one(
    shared: &Shared<'_>,
    idx: usize,
    step: Step,
    wants_refresh: bool,
    staged: Option<&Staged>,
) -> Outcome {
    let res = &shared.resources[idx];
    let Some(ty) = shared.registry.get(&res.id.kind) else {
        return Outcome::Failed {
            error: format!("unknown resource type `{}`", res.id.kind),
            output: None,
        };
    };
    let provider = ty.provider();
    let ctx = ProviderCtx {
        staged,
        ..shared.env.ctx()
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{SourceId, Span};
    use crate::model::{Attr, Value};

    fn file(path: &str) -> model::Resource {
        let span = Span::new(SourceId(0), 0, 0);
        model::Resource {
            id: ResourceId::new("file", path),
            span,
            source: SourceId(0),
            attrs: [(
                "content".to_string(),
                Attr {
                    value: Value::String("x\n".into()),
                    span,
                    sensitive: false,
                },
            )]
            .into_iter()
            .collect(),
            relations: Vec::new(),
            association: None,
            secrets: Vec::new(),
        }
    }

    /// The executor refuses a plan with a refusal as a whole: an agent handed one (fleet
    /// mode, where no `cli` stops it first) changes nothing.
    #[test]
    fn a_plan_holding_a_refusal_changes_nothing() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let node = model::Node {
            name: "local".into(),
            tags: Default::default(),
            facts: crate::facts::local(root.path()),
            resources: Arc::new(vec![file("/fine"), file("/x/y/z")]),
        };
        let registry = Registry::builtin();
        let env = Env::new(
            &node,
            &registry,
            root.path().to_path_buf(),
            state.path().to_path_buf(),
            "run".into(),
            Vec::new(),
        );
        let observed = observe(&node, &registry, &env);
        assert!(observed[0].is_ok(), "{:?}", observed[0]);
        let graph = ResourceGraph::build(&node, &registry, &mut Vec::new());
        let plan = crate::plan::build(&graph, &registry, &observed);
        let refused: Vec<_> = plan.changes.iter().filter_map(|c| c.refusal()).collect();
        assert_eq!(
            refused,
            ["its parent directory /x/y does not exist and no resource declares it"]
        );

        let report = apply(
            &graph,
            &registry,
            &plan,
            &env,
            Config { parallel: 2 },
            &|_| {},
        )
        .unwrap();
        let outcome = |path: &str| {
            report
                .outcomes
                .iter()
                .find(|o| o.id.name == path)
                .map(|o| o.outcome.clone())
                .unwrap()
        };
        assert!(outcome("/x/y/z").is_failed());
        assert_eq!(
            outcome("/fine"),
            Outcome::Skipped {
                because: ResourceId::new("file", "/x/y/z")
            }
        );
        assert!(!root.path().join("fine").exists());
    }
}
