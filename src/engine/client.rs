//! How the engine reaches a node: the [`AgentClient`] trait, and [`LocalClient`], the client
//! of this machine.
//!
//! The trait is the seam between layers: the engine defines what it needs, and whoever
//! reaches nodes implements it (`fleet` over the controller's dispatch, tests with an
//! in-process fake).
//!
//! **Architecture Invariant:** a client moves observations and outcomes; it never plans or
//! records (the engine does both, the same way for every client).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use crate::exec::{self, Env, ResourceOutcome, RunReport};
use crate::model;
use crate::plan::graph::ResourceGraph;
use crate::plan::{self, NodePlan};
use crate::resource::Registry;
use crate::resource::change::State;

/// A boxed future a client returns (object-safe, and `Send` so the fleet can spawn it).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One resource's observed state, or why it could not be read.
pub type Observed = Result<State, String>;

/// Why a node did not do what it was asked (its resources' own failures are outcomes, not
/// this).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The node has no live connection (it is offline, or went offline as the task was
    /// sent).
    #[error("{0}")]
    Offline(String),
    /// The node could not be reached, or did not answer in time.
    #[error("{0}")]
    Unreachable(String),
    /// The node answered, but not with what the task asked for (it refused, failed, or
    /// answered something else).
    #[error("{0}")]
    Failed(String),
    /// The node refused the task as a whole and changed nothing (what a saved plan expects
    /// of it moved since the plan, or it could not use the catalog).
    #[error("{0}")]
    Refused(String),
    /// The node was never asked: the run stopped starting nodes (`max_errors`).
    #[error("{0}")]
    NotStarted(String),
    /// This machine's IO failed around an in-process apply.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What an apply asks of a node.
pub struct ApplyTask<'a> {
    /// The plan to apply, when the caller made one; without it the client observes and
    /// plans on the node.
    pub plan: Option<&'a NodePlan>,
    /// The observed fingerprints a saved plan expects, in resource order: a node refuses a
    /// resource that moved since.
    pub fingerprints: Option<Vec<String>>,
    /// At most this many resources applied at once.
    pub parallel: usize,
    /// Called as each resource finishes, for progress displays (a remote client streams
    /// its own events instead).
    pub on_done: Option<&'a (dyn Fn(&ResourceOutcome) + Sync)>,
}

/// What an apply did.
pub struct Applied {
    /// What the node observed before applying, when it observed again (the plan is rebuilt
    /// from it); `None` when it applied the plan it was given.
    pub observed: Option<Vec<Observed>>,
    /// Every resource's outcome.
    pub report: RunReport,
}

/// A way to reach nodes: observe their resources, apply their plans.
pub trait AgentClient: Send + Sync {
    /// Reads every resource of `node`, in resource order. Changes nothing.
    fn observe<'a>(
        &'a self,
        node: &'a model::Node,
    ) -> BoxFuture<'a, Result<Vec<Observed>, AgentError>>;

    /// Converges the node of `graph`.
    fn apply<'a>(
        &'a self,
        graph: &'a ResourceGraph<'a>,
        task: ApplyTask<'a>,
    ) -> BoxFuture<'a, Result<Applied, AgentError>>;
}

/// This machine, reached in process: providers read and apply under `--root`.
///
/// The provider environment of a node is made when it is first observed and kept for its
/// apply: the directories found while probing are not looked up again.
pub struct LocalClient<'r> {
    registry: &'r Registry,
    root: PathBuf,
    state_dir: PathBuf,
    run_id: String,
    secrets: Vec<String>,
    envs: Mutex<Vec<(String, Arc<Env>)>>,
}

impl<'r> LocalClient<'r> {
    /// The client of a run under `root`, with the state directory, the run's id and the
    /// secrets to scrub from messages.
    pub fn new(
        registry: &'r Registry,
        root: PathBuf,
        state_dir: PathBuf,
        run_id: String,
        secrets: Vec<String>,
    ) -> LocalClient<'r> {
        LocalClient {
            registry,
            root,
            state_dir,
            run_id,
            secrets,
            envs: Mutex::new(Vec::new()),
        }
    }

    /// The registry the client reads and applies with.
    pub fn registry(&self) -> &'r Registry {
        self.registry
    }

    /// The provider environment of `node`, made on first use.
    fn env(&self, node: &model::Node) -> Arc<Env> {
        let mut envs = match self.envs.lock() {
            Ok(envs) => envs,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((_, env)) = envs.iter().find(|(name, _)| *name == node.name) {
            return Arc::clone(env);
        }
        let env = Arc::new(Env::new(
            node,
            self.registry,
            self.root.clone(),
            self.state_dir.clone(),
            self.run_id.clone(),
            self.secrets.clone(),
        ));
        envs.push((node.name.clone(), Arc::clone(&env)));
        env
    }

    /// Applies a plan in process.
    fn apply_plan(
        &self,
        graph: &ResourceGraph<'_>,
        plan: &NodePlan,
        env: &Env,
        task: &ApplyTask<'_>,
    ) -> Result<RunReport, AgentError> {
        let on_done = task.on_done.unwrap_or(&|_: &ResourceOutcome| {});
        exec::apply(
            graph,
            self.registry,
            plan,
            env,
            exec::Config {
                parallel: task.parallel,
            },
            on_done,
        )
        .map_err(|source| AgentError::Io {
            path: self.state_dir.clone(),
            source,
        })
    }
}

impl AgentClient for LocalClient<'_> {
    fn observe<'a>(
        &'a self,
        node: &'a model::Node,
    ) -> BoxFuture<'a, Result<Vec<Observed>, AgentError>> {
        Box::pin(async move {
            let env = self.env(node);
            Ok(exec::observe(node, self.registry, &env))
        })
    }

    fn apply<'a>(
        &'a self,
        graph: &'a ResourceGraph<'a>,
        task: ApplyTask<'a>,
    ) -> BoxFuture<'a, Result<Applied, AgentError>> {
        Box::pin(async move {
            let env = self.env(graph.node);
            match task.plan {
                Some(plan) => Ok(Applied {
                    observed: None,
                    report: self.apply_plan(graph, plan, &env, &task)?,
                }),
                None => {
                    let observed = exec::observe(graph.node, self.registry, &env);
                    let plan = plan::build(graph, self.registry, &observed);
                    Ok(Applied {
                        report: self.apply_plan(graph, &plan, &env, &task)?,
                        observed: Some(observed),
                    })
                }
            }
        })
    }
}

/// Wakes a thread parked in [`block_on`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread, for callers without an async runtime
/// (local mode): no runtime is started, and [`LocalClient`]'s futures are ready at their
/// first poll.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            // A spurious unpark only polls again.
            Poll::Pending => std::thread::park(),
        }
    }
}
