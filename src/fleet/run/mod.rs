//! Fleet runs: a project uploaded to the controller is lowered against the inventory, each
//! targeted node's catalog goes to its agent, and the answers become plans, applies and
//! drift records, exactly as local mode makes them.
//!
//! Plans and drift checks probe every target at once (reading changes nothing). Applies go
//! association by association, each with its own SSM rate control (`max_concurrency`,
//! `max_errors`); a node several associations target is applied once, with its whole catalog,
//! by the first association that reaches it. Targets that are offline count as errors and
//! are named; targets never started because `max_errors` was exceeded are named too.
//!
//! - [`request`]: the API types (`POST /v1/runs` and its progress stream).
//! - [`bundle`]: the uploaded projects under the data directory.
//! - [`late`]: run records in the store, late results and interrupted runs.
//! - this file: the orchestration, [`run`].

pub mod bundle;
pub mod late;
pub mod request;

pub use bundle::{MAX_BUNDLE_BYTES, MAX_BUNDLE_FILES, bundle_of, current_project, materialize};
pub use late::{record_late, recover_interrupted};
pub use request::{
    AdhocRequest, BundleFile, Event, FLEET_ROOT, Mode, NodeStatus, RunRequest, RunResponse,
    SavedFleetPlan,
};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::fleet::command::CommandError;
use crate::fleet::controller::{Controller, ControllerError, TaskEvent, log};
use crate::fleet::rate::{self, Dispatched};
use crate::fleet::run::bundle::{BundleError, current_path};
use crate::fleet::run::late::store_run;
use crate::fleet::wire::{Catalog, TaskKind, TaskResult, WireFacts, WireObserved, WireOutcome};
use crate::local::{self, Planned};
use crate::model::{self, LOCAL_NODE};
use crate::plan::{self, Plan, graph::ResourceGraph};
use crate::report::plan::{Origin, Style};
use crate::resource::Registry;
use crate::schema::KnownNode;
use crate::store::{ResultOutcome, ResultRecord, RunKind, RunRecord, RunStatus, StoreError};
use crate::validate::{Validated, validate_with};

/// Why a fleet run could not start. Failures on nodes are not errors: they are in the
/// run's [`RunResponse`], node by node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// `steward run --document`'s selector or rate control.
    #[error(transparent)]
    Adhoc(#[from] CommandError),
    /// The uploaded project.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The controller's store could not be reached.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The store failed reading the inventory.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Validation did not finish (its task panicked).
    #[error("validating the project: {0}")]
    Validate(#[source] tokio::task::JoinError),
    /// A saved plan covers nodes the documents no longer target (named).
    #[error("the plan covers {0} that the documents no longer target; run `steward plan` again")]
    PlanNodesGone(String),
    /// A saved plan was made from other documents or parameters.
    #[error(
        "the documents (or parameters) changed since this plan was made; run `steward plan` again"
    )]
    PlanStale,
    /// The run could not be stored as `running`, so nothing was sent.
    #[error("the run could not be stored, so nothing was sent: {0}")]
    NotBegun(#[source] StoreError),
}

/// How long a probe may take on one node.
const PROBE_WAIT: Duration = Duration::from_secs(300);
/// How long an apply may take on one node.
const APPLY_WAIT: Duration = Duration::from_secs(3600);

impl AdhocRequest {
    /// The scope it asks for, with the selector resolved against the inventory.
    pub async fn scope(&self, controller: &Arc<Controller>) -> Result<Scope, RunError> {
        use crate::fleet::command::{parse_rate, resolve_targets};
        Ok(Scope {
            association: None,
            adhoc: Some(Adhoc {
                nodes: resolve_targets(controller, &self.target).await?,
                max_concurrency: parse_rate(&self.max_concurrency, "--max-concurrency")?,
                max_errors: parse_rate(&self.max_errors, "--max-errors")?,
            }),
        })
    }
}

/// The enrolled, unrevoked nodes as lowering sees them.
async fn inventory(controller: &Arc<Controller>) -> Result<Vec<KnownNode>, RunError> {
    let nodes = controller.store(|s| s.nodes()).await??;
    Ok(nodes
        .into_iter()
        .filter(|n| n.revoked_at.is_none())
        .map(|n| {
            let facts: WireFacts = serde_json::from_value(n.facts.clone()).unwrap_or_default();
            let mut facts = model::Facts::from(facts);
            if facts.hostname.is_empty() {
                facts.hostname = n.name.clone();
            }
            KnownNode {
                name: n.name,
                tags: n.tags,
                facts,
            }
        })
        .collect())
}

/// Diagnostics as `file:line:column: message` lines.
fn diagnostics_text(validated: &Validated) -> Vec<String> {
    validated
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| match d.span() {
            Some(span) => {
                let source = validated.project.sources.get(span.source);
                let at = source.line_col(span.start);
                // Named as in the project, not by where the controller keeps its copy.
                let root = format!("{}/", validated.project.root.display());
                let name = source.name.strip_prefix(&root).unwrap_or(&source.name);
                format!("{name}:{}:{}: {}", at.line, at.column, d.message)
            }
            None => d.message.clone(),
        })
        .collect()
}

/// Which association (if any) a run is narrowed to: the scheduler runs one at a time.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Only this association's resources and targets.
    pub association: Option<String>,
    /// `steward run --document`: these nodes, this rate control, no associations.
    pub adhoc: Option<Adhoc>,
}

/// A one-off apply of a document on selected nodes (Run Command with a document).
#[derive(Clone, Debug)]
pub struct Adhoc {
    /// The nodes.
    pub nodes: Vec<String>,
    /// How many at once.
    pub max_concurrency: model::Rate,
    /// How many failures before no new node starts.
    pub max_errors: model::Rate,
}

/// Runs a request; `progress` receives events as nodes start and finish.
pub async fn run(
    controller: &Arc<Controller>,
    request: RunRequest,
    scope: Scope,
    progress: mpsc::UnboundedSender<Event>,
) -> RunResponse {
    let _running = controller.run_lock.lock().await;
    let dir = match materialize(&controller.data_dir, &request.files) {
        Ok(dir) => dir,
        Err(err) => {
            return RunResponse::error(err);
        }
    };
    let inventory = match inventory(controller).await {
        Ok(inventory) => inventory,
        Err(err) => {
            return RunResponse::error(err);
        }
    };
    let registry = controller.registry.clone();
    let overrides = request.overrides.clone();
    let validated = {
        let dir = dir.clone();
        let local_facts = crate::facts::local(Path::new("/"));
        let adhoc = scope.adhoc.as_ref().map(|a| a.nodes.clone());
        let registry = registry.clone();
        match tokio::task::spawn_blocking(move || {
            validate_with(&dir, &registry, local_facts, overrides, inventory, adhoc)
        })
        .await
        {
            Ok(validated) => validated,
            Err(err) => {
                return RunResponse::error(RunError::Validate(err));
            }
        }
    };
    if validated.has_errors() {
        return RunResponse {
            failed: true,
            errors: diagnostics_text(&validated),
            ..RunResponse::default()
        };
    }
    if request.mode == Mode::Apply && scope.association.is_none() && scope.adhoc.is_none() {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let _ = crate::fleet::pki::write_private(
            &current_path(&controller.data_dir),
            format!("{name}\n{}\n", request.project).as_bytes(),
        );
        controller.schedules_changed();
    }
    let mut fleet = Fleet::new(&validated, &request, &scope);
    if let Some(saved) = &request.saved
        && let Err(err) = fleet.pin(saved, &request)
    {
        return RunResponse::error(err);
    }
    let nothing_targeted = fleet.targets.is_empty();
    let mut response = match request.mode {
        Mode::Plan | Mode::Drift => {
            fleet
                .probe(controller, &registry, &request, &progress)
                .await
        }
        Mode::Apply => {
            fleet
                .apply(controller, &registry, &request, &progress)
                .await
        }
    };
    if nothing_targeted {
        response.errors.push(match (&request.target, &scope.adhoc) {
            (_, Some(_)) => "the document gives the targeted nodes no resources".to_string(),
            (Some(target), None) => format!("--target `{target}` matches no node with resources"),
            (None, None) => {
                "no association targets a node with resources: nothing to do".to_string()
            }
        });
        response.failed = request.target.is_some() || scope.adhoc.is_some();
    }
    response
}

/// The nodes a run acts on, in dispatch order, grouped by association.
struct Fleet<'v> {
    validated: &'v Validated,
    /// Where the uploaded project was written: stripped from recorded file names.
    project_dir: PathBuf,
    /// Per association (in declaration order): its rate control (`max_concurrency`,
    /// `max_errors`) and its nodes.
    waves: Vec<(model::Rate, model::Rate, Vec<&'v model::Node>)>,
    /// Every target, in wave order.
    targets: Vec<&'v model::Node>,
}

impl<'v> Fleet<'v> {
    fn new(validated: &'v Validated, request: &RunRequest, scope: &Scope) -> Fleet<'v> {
        let model = &validated.model;
        let mut taken: HashSet<&str> = HashSet::new();
        let mut waves = Vec::new();
        if let Some(adhoc) = &scope.adhoc {
            let nodes: Vec<&model::Node> = model
                .nodes
                .iter()
                .filter(|n| adhoc.nodes.contains(&n.name) && !n.resources.is_empty())
                .collect();
            if !nodes.is_empty() {
                waves.push((adhoc.max_concurrency, adhoc.max_errors, nodes));
            }
        }
        for association in model.associations.iter().filter(|_| scope.adhoc.is_none()) {
            if scope
                .association
                .as_ref()
                .is_some_and(|only| *only != association.name)
            {
                continue;
            }
            let nodes: Vec<&model::Node> = model
                .nodes
                .iter()
                .filter(|n| n.name != LOCAL_NODE)
                .filter(|n| association.targets.matches(&n.name, &n.tags))
                .filter(|n| !n.resources.is_empty())
                .filter(|n| local::selected(n, request.target.as_deref()))
                .filter(|n| taken.insert(n.name.as_str()))
                .collect();
            if !nodes.is_empty() {
                waves.push((association.max_concurrency, association.max_errors, nodes));
            }
        }
        let targets: Vec<&model::Node> = waves
            .iter()
            .flat_map(|(_, _, n)| n.iter().copied())
            .collect();
        Fleet {
            validated,
            project_dir: validated.project.root.clone(),
            waves,
            targets,
        }
    }

    /// Narrows the run to a saved plan's nodes and checks its documents are the plan's.
    fn pin(&mut self, saved: &SavedFleetPlan, request: &RunRequest) -> Result<(), RunError> {
        let missing: Vec<&str> = saved
            .nodes
            .keys()
            .filter(|name| !self.targets.iter().any(|n| &n.name == *name))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(RunError::PlanNodesGone(missing.join(", ")));
        }
        for (_, _, nodes) in &mut self.waves {
            nodes.retain(|n| saved.nodes.contains_key(&n.name));
        }
        self.waves.retain(|(_, _, nodes)| !nodes.is_empty());
        self.targets.retain(|n| saved.nodes.contains_key(&n.name));
        if self.planned(request).digest != saved.documents_digest {
            return Err(RunError::PlanStale);
        }
        Ok(())
    }

    /// The fingerprints a saved plan expects of a node's resources, in catalog order.
    fn expected(&self, node: &model::Node, request: &RunRequest) -> Option<Vec<String>> {
        let saved = request.saved.as_ref()?.nodes.get(&node.name);
        Some(
            node.resources
                .iter()
                .map(|res| {
                    saved
                        .and_then(|changes| changes.get(&res.id.to_string()))
                        .cloned()
                        .unwrap_or_default()
                })
                .collect(),
        )
    }

    /// Completes a run's record: who ran it, a failed (or skipped) result for each resource
    /// of a node that never answered, and file names as the project names them.
    fn finish_record(
        &self,
        record: &mut RunRecord,
        request: &RunRequest,
        failures: &[(&model::Node, String)],
    ) {
        record.user = request.user.clone();
        for (node, err) in failures {
            record
                .results
                .extend(node_failure(self.validated, node, err));
        }
        self.relative_files(record);
    }

    /// Stores the run as `running` before any task is sent: if the controller dies during
    /// it, the next start records it as `interrupted` with what arrived. `Err` when the store
    /// cannot take it; then nothing is sent.
    async fn begin(
        &self,
        controller: &Arc<Controller>,
        request: &RunRequest,
        kind: RunKind,
        id: &str,
        started_at: &str,
    ) -> Result<(), RunError> {
        let run = RunRecord {
            id: id.to_string(),
            kind,
            started_at: started_at.to_string(),
            finished_at: String::new(),
            user: request.user.clone(),
            project: request.project.clone(),
            documents_digest: self.planned(request).digest,
            results: Vec::new(),
            status: RunStatus::Running,
        };
        controller
            .store(move |s| s.begin_run(&run))
            .await?
            .map_err(RunError::NotBegun)
    }

    /// Names files as the project names them, not by where the controller keeps its copy.
    fn relative_files(&self, record: &mut RunRecord) {
        let prefix = format!("{}/", self.project_dir.display());
        for result in &mut record.results {
            if let Some(file) = &mut result.file
                && let Some(relative) = file.strip_prefix(&prefix)
            {
                *file = relative.to_string();
            }
        }
    }

    fn catalog(&self, node: &model::Node) -> Catalog {
        Catalog::new(node, &self.validated.model.secrets)
    }

    /// Probes every target at once and builds the plans (or the drift record).
    async fn probe(
        self,
        controller: &Arc<Controller>,
        registry: &Registry,
        request: &RunRequest,
        progress: &mpsc::UnboundedSender<Event>,
    ) -> RunResponse {
        let started_at = local::timestamp();
        let id = new_run_id();
        if request.mode == Mode::Drift
            && let Err(err) = self
                .begin(controller, request, RunKind::Drift, &id, &started_at)
                .await
        {
            return RunResponse::error(err);
        }
        let mut probes = tokio::task::JoinSet::new();
        for (idx, node) in self.targets.iter().enumerate() {
            let controller = Arc::clone(controller);
            let catalog = self.catalog(node);
            let name = node.name.clone();
            let run_id = id.clone();
            let _ = progress.send(Event::NodeStarted { node: name.clone() });
            probes.spawn(async move {
                let result = controller
                    .dispatch(
                        &run_id,
                        &name,
                        TaskKind::Probe { catalog },
                        PROBE_WAIT,
                        None,
                    )
                    .await;
                (idx, result)
            });
        }
        let mut answers: Vec<Option<Result<Vec<WireObserved>, String>>> =
            vec![None; self.targets.len()];
        while let Some(joined) = probes.join_next().await {
            let Ok((idx, result)) = joined else { continue };
            answers[idx] = Some(match result {
                Ok(TaskResult::Observed { states }) => Ok(states),
                Ok(other) => Err(unexpected(&other, "a probe")),
                Err(err) => Err(err.to_string()),
            });
        }
        let mut planned = self.planned(request);
        let mut statuses = Vec::new();
        let mut failures: Vec<(&model::Node, String)> = Vec::new();
        for (node, answer) in self.targets.iter().zip(answers) {
            let states = answer.unwrap_or_else(|| Err("the probe was lost".to_string()));
            let observed = states.and_then(|states| observed_states(node, &states));
            match observed {
                Ok(observed) => {
                    let (n_changes, n_errors) =
                        push_planned(&mut planned, node, registry, &observed);
                    let status = NodeStatus {
                        node: node.name.clone(),
                        status: if n_errors > 0 { "failed" } else { "ok" }.to_string(),
                        changed: n_changes,
                        failed: n_errors,
                        message: None,
                    };
                    let _ = progress.send(Event::NodeFinished(status.clone()));
                    statuses.push(status);
                }
                Err(err) => {
                    let status = failed_status(&node.name, &err);
                    let _ = progress.send(Event::NodeFinished(status.clone()));
                    statuses.push(status);
                    failures.push((node, err));
                }
            }
        }
        let has_changes = planned.plan.has_changes();
        let failed = !failures.is_empty() || planned.plan.summary().errors > 0;
        let mut response = RunResponse {
            has_changes,
            failed,
            nodes: statuses,
            ..RunResponse::default()
        };
        if request.mode == Mode::Plan {
            let json = crate::report::plan::json(
                &planned.plan,
                &planned.nodes,
                &Origin {
                    project: &request.project,
                    root: FLEET_ROOT,
                    documents_digest: &planned.digest,
                },
            );
            response.output = if request.json {
                json.clone()
            } else {
                crate::report::plan::human(&planned.plan, &planned.nodes, Style::new(request.color))
            };
            response.plan_json = Some(json);
            // A plan is not stored: the probes' results go once it is rendered.
            let plan_id = id.clone();
            if let Ok(Err(err)) = controller
                .store(move |s| s.settle_plan_tasks(&plan_id))
                .await
            {
                log(&format!("plan {id}: dropping its probes' results: {err}"));
            }
            return response;
        }
        let mut record = local::observed_record(
            RunKind::Drift,
            self.validated,
            &planned,
            &id,
            &started_at,
            &request.project,
        );
        self.finish_record(&mut record, request, &failures);
        store_into(controller, &record, &mut response).await;
        response
    }

    /// An empty plan of this run, to fill.
    fn planned(&self, request: &RunRequest) -> Planned<'v> {
        let desired: Vec<String> = self
            .targets
            .iter()
            .map(|n| plan::desired_digest(n))
            .collect();
        Planned {
            plan: Plan { nodes: Vec::new() },
            nodes: Vec::new(),
            graphs: Vec::new(),
            envs: Vec::new(),
            unreachable: Vec::new(),
            digest: local::documents_digest(
                &self.validated.project,
                &request.overrides,
                Path::new(FLEET_ROOT),
                &desired,
            ),
            run_id: String::new(),
        }
    }

    /// Applies association by association with rate control, then records the run.
    async fn apply(
        self,
        controller: &Arc<Controller>,
        registry: &Registry,
        request: &RunRequest,
        progress: &mpsc::UnboundedSender<Event>,
    ) -> RunResponse {
        let started_at = local::timestamp();
        let id = new_run_id();
        if let Err(err) = self
            .begin(controller, request, RunKind::Apply, &id, &started_at)
            .await
        {
            return RunResponse::error(err);
        }
        let mut answers: Vec<(&model::Node, Result<TaskResult, String>)> = Vec::new();
        for &(max_concurrency, max_errors, ref nodes) in &self.waves {
            let jobs: Vec<(Catalog, Option<Vec<String>>)> = nodes
                .iter()
                .map(|node| (self.catalog(node), self.expected(node, request)))
                .collect();
            let parallel = request.parallel;
            let results = rate::dispatch(
                jobs,
                max_concurrency,
                max_errors,
                |result: &Result<TaskResult, String>| !matches!(result, Ok(TaskResult::Applied { outcomes, .. }) if !outcomes.iter().any(WireOutcome::is_failed)),
                |(catalog, fingerprints): (Catalog, Option<Vec<String>>)| {
                    let controller = Arc::clone(controller);
                    let progress = progress.clone();
                    let run_id = id.clone();
                    async move {
                        apply_node(
                            controller,
                            &run_id,
                            catalog,
                            fingerprints,
                            parallel,
                            progress,
                        )
                        .await
                    }
                },
            )
            .await;
            for (node, result) in nodes.iter().zip(results) {
                match result {
                    Dispatched::Done(result) => answers.push((node, result)),
                    Dispatched::Panicked(err) => {
                        answers.push((node, Err(format!("the dispatch crashed: {err}"))));
                    }
                    Dispatched::NotStarted => {
                        let status = NodeStatus {
                            node: node.name.clone(),
                            status: "not_started".to_string(),
                            changed: 0,
                            failed: 0,
                            message: Some("not started: max_errors was exceeded".to_string()),
                        };
                        let _ = progress.send(Event::NodeFinished(status));
                        answers.push((
                            node,
                            Err("not started: max_errors was exceeded".to_string()),
                        ));
                    }
                }
            }
        }

        let mut planned = self.planned(request);
        let mut reports = Vec::new();
        let mut statuses = Vec::new();
        let mut failures: Vec<(&model::Node, String)> = Vec::new();
        for (node, answer) in answers {
            let applied = match answer {
                Ok(TaskResult::Applied {
                    states,
                    outcomes,
                    duration_ms,
                }) => observed_states(node, &states).and_then(|observed| {
                    let report = crate::fleet::wire::run_report(node, &outcomes, duration_ms)
                        .map_err(|err| err.to_string())?;
                    Ok((observed, report))
                }),
                Ok(other) => Err(unexpected(&other, "an apply")),
                Err(err) => Err(err),
            };
            match applied {
                Ok((observed, report)) => {
                    push_planned(&mut planned, node, registry, &observed);
                    statuses.push(NodeStatus {
                        node: node.name.clone(),
                        status: if report.n_failed() > 0 {
                            "failed"
                        } else {
                            "ok"
                        }
                        .to_string(),
                        changed: report.n_changed(),
                        failed: report.n_failed(),
                        message: None,
                    });
                    reports.push(report);
                }
                Err(err) => {
                    if !err.starts_with("not started") {
                        statuses.push(failed_status(&node.name, &err));
                    } else {
                        statuses.push(NodeStatus {
                            node: node.name.clone(),
                            status: "not_started".to_string(),
                            changed: 0,
                            failed: 0,
                            message: Some(err.clone()),
                        });
                    }
                    failures.push((node, err));
                }
            }
        }
        let mut record = local::apply_record(
            self.validated,
            &planned,
            &reports,
            &id,
            &started_at,
            &request.project,
        );
        self.finish_record(&mut record, request, &failures);
        let failed = statuses.iter().any(|s| s.status != "ok");
        let mut response = RunResponse {
            run_id: None,
            has_changes: reports.iter().any(|r| r.n_changed() > 0),
            failed,
            output: String::new(),
            nodes: statuses,
            errors: Vec::new(),
            plan_json: None,
        };
        store_into(controller, &record, &mut response).await;
        response
    }
}

/// Plans a node from what its agent observed and adds it to the run's plan; returns how many
/// resources would change and how many could not be read.
fn push_planned<'v>(
    planned: &mut Planned<'v>,
    node: &'v model::Node,
    registry: &Registry,
    observed: &[Result<crate::resource::change::State, String>],
) -> (usize, usize) {
    let mut ignored = Vec::new();
    let graph = ResourceGraph::build(node, registry, &mut ignored);
    let node_plan = plan::build(&graph, registry, observed);
    let n_changes = node_plan.changes.iter().filter(|c| c.is_change()).count();
    let n_errors = node_plan
        .changes
        .iter()
        .filter(|c| c.change.is_err())
        .count();
    planned.plan.nodes.push(node_plan);
    planned.nodes.push(node);
    planned.graphs.push(graph);
    (n_changes, n_errors)
}

async fn apply_node(
    controller: Arc<Controller>,
    run_id: &str,
    catalog: Catalog,
    fingerprints: Option<Vec<String>>,
    parallel: usize,
    progress: mpsc::UnboundedSender<Event>,
) -> Result<TaskResult, String> {
    let node = catalog.node.clone();
    let _ = progress.send(Event::NodeStarted { node: node.clone() });
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<TaskEvent>();
    let forward = {
        let progress = progress.clone();
        let node = node.clone();
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                let TaskEvent::Outcome(outcome) = event else {
                    continue;
                };
                let _ = progress.send(Event::Resource {
                    node: node.clone(),
                    resource: outcome.id.clone(),
                    outcome: outcome_name(&outcome).to_string(),
                });
            }
        })
    };
    let result = controller
        .dispatch(
            run_id,
            &node,
            TaskKind::Apply {
                catalog,
                fingerprints,
                parallel,
            },
            APPLY_WAIT,
            Some(events_tx),
        )
        .await
        // A node's failure is a message in its status and the run's record.
        .map_err(|err| err.to_string());
    let _ = forward.await;
    let status = match &result {
        Ok(TaskResult::Applied { outcomes, .. }) => {
            let failed = outcomes.iter().filter(|o| o.is_failed()).count();
            NodeStatus {
                node: node.clone(),
                status: if failed > 0 { "failed" } else { "ok" }.to_string(),
                changed: outcomes
                    .iter()
                    .filter(|o| {
                        matches!(
                            o.outcome,
                            crate::fleet::wire::WireOutcomeKind::Changed { .. }
                                | crate::fleet::wire::WireOutcomeKind::Refreshed { .. }
                        )
                    })
                    .count(),
                failed,
                message: None,
            }
        }
        Ok(other) => failed_status(&node, &unexpected(other, "an apply")),
        Err(err) => failed_status(&node, err),
    };
    let _ = progress.send(Event::NodeFinished(status));
    result
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

fn failed_status(node: &str, err: &str) -> NodeStatus {
    NodeStatus {
        node: node.to_string(),
        status: if err.contains("offline") {
            "offline"
        } else {
            "failed"
        }
        .to_string(),
        changed: 0,
        failed: 0,
        message: Some(err.to_string()),
    }
}

/// The agent's observations, checked against the catalog it was sent.
fn observed_states(
    node: &model::Node,
    states: &[WireObserved],
) -> Result<Vec<Result<crate::resource::change::State, String>>, String> {
    if states.len() != node.resources.len() {
        return Err(format!(
            "the agent reported {} states for {} resources",
            states.len(),
            node.resources.len()
        ));
    }
    Ok(states.iter().map(WireObserved::to_model).collect())
}

/// A result per resource of a node that never answered: failed (or skipped when it was
/// never started), with the reason.
fn node_failure(validated: &Validated, node: &model::Node, err: &str) -> Vec<ResultRecord> {
    let outcome = if err.starts_with("not started") {
        ResultOutcome::Skipped
    } else {
        ResultOutcome::Failed
    };
    node.resources
        .iter()
        .map(|res| {
            let mut record = local::record(validated, &node.name, res, outcome);
            record.message = Some(format!("node `{}`: {err}", node.name));
            record
        })
        .collect()
}

/// A fleet run's id: sortable by time, unique even for two runs begun in one millisecond.
fn new_run_id() -> String {
    format!(
        "{}-{}",
        local::run_id(),
        crate::fleet::token::random_hex(2).unwrap_or_default()
    )
}

/// Stores the run and puts its id and summary in the response; when the store refuses it,
/// the response fails saying so, shows the results, and claims no run id.
async fn store_into(controller: &Arc<Controller>, record: &RunRecord, response: &mut RunResponse) {
    let stored = {
        let record = record.clone();
        controller.store(move |s| store_run(s, &record)).await
    };
    let stored = stored
        .map_err(RunError::from)
        .and_then(|r| r.map_err(RunError::from));
    match stored {
        Ok(output) => {
            response.run_id = Some(record.id.clone());
            response.output = output;
        }
        Err(err) => {
            response.failed = true;
            response.run_id = None;
            response.output = crate::report::run::human(record, &[], Style::new(false));
            response.errors.push(format!(
                "the run's results could not be stored: {err}; they are shown here only"
            ));
        }
    }
}
