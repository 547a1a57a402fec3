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
//! - `dispatch`: the engine's client over the controller's agent sessions.
//! - this file: the orchestration, [`run`]: which nodes, in which waves, under which rate
//!   control; each node goes through the [`engine`] (observe, plan, apply) and the engine's
//!   record builders.

pub mod bundle;
mod dispatch;
pub mod late;
pub mod request;

pub use bundle::{MAX_BUNDLE_BYTES, MAX_BUNDLE_FILES, bundle_of, current_project, materialize};
pub use late::{record_late, recover_interrupted, recover_orphans};
pub use request::{
    AdhocRequest, BundleFile, Event, FLEET_ROOT, Mode, NodeStatus, RunRequest, RunResponse,
    SavedFleetPlan,
};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::engine::{self, AgentError, ApplyTask, Planned, record};
use crate::exec::RunReport;
use crate::fleet::command::CommandError;
use crate::fleet::controller::{Controller, ControllerError};
use crate::fleet::rate::{self, Dispatched};
use crate::fleet::run::bundle::BundleError;
use crate::fleet::run::dispatch::DispatchClient;
use crate::fleet::run::late::store_run_again;
use crate::fleet::wire::WireFacts;
use crate::model::{self, LOCAL_NODE};
use crate::plan::{self, graph::ResourceGraph};
use crate::report::plan::{Origin, Style};
use crate::resource::Registry;
use crate::schema::KnownNode;
use crate::store::{ResultOutcome, RunKind, RunRecord, RunStatus, StoreError};
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
    /// A saved plan was made from other documents or parameters (says which documents,
    /// when the plan names them).
    #[error("{0}; run `steward plan` again")]
    PlanStale(String),
    /// The run could not be stored as `running`, so nothing was sent.
    #[error("the run could not be stored, so nothing was sent: {0}")]
    NotBegun(#[source] StoreError),
}

impl AdhocRequest {
    /// The scope it asks for, with the selector resolved against the inventory.
    pub async fn scope(&self, controller: &Arc<Controller>) -> Result<Scope, RunError> {
        use crate::fleet::command::{parse_rate, resolve_targets};
        use crate::model::grammar::{MAX_CONCURRENCY_MIN, MAX_ERRORS_MIN};
        Ok(Scope {
            association: None,
            run_id: None,
            adhoc: Some(Adhoc {
                nodes: resolve_targets(controller, &self.target).await?,
                max_concurrency: parse_rate(
                    &self.max_concurrency,
                    "--max-concurrency",
                    MAX_CONCURRENCY_MIN,
                )?,
                max_errors: parse_rate(&self.max_errors, "--max-errors", MAX_ERRORS_MIN)?,
            }),
            limit: None,
        })
    }
}

/// The enrolled, unrevoked nodes as lowering sees them.
async fn inventory(controller: &Arc<Controller>) -> Result<Vec<KnownNode>, RunError> {
    let nodes = controller.store(|s| s.nodes()).await??;
    Ok(nodes
        .into_iter()
        .filter(|n| n.revoked_at.is_none())
        .map(|n| KnownNode {
            facts: WireFacts::stored(&n.name, &n.facts),
            name: n.name,
            tags: n.tags,
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
    /// The nodes the asking token may reach; a run that targets any other is refused.
    pub limit: Option<crate::fleet::api_token::Limit>,
    /// The id the recorded run (an apply or a drift check) takes, chosen by the caller (so
    /// the audit log can name it before the run begins); a new one when `None`.
    pub run_id: Option<String>,
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
    mut request: RunRequest,
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
    let mut validated = validated;
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
        // The store, not the data directory: every controller of a shared database runs the
        // schedules of the project any of them applied last.
        let current = crate::store::CurrentProject {
            name: request.project.clone(),
            digest: name,
            files_json: serde_json::to_string(&request.files).unwrap_or_default(),
        };
        match controller
            .store(move |store| store.put_project(&current))
            .await
        {
            Ok(Ok(())) => controller.schedules_changed(),
            Ok(Err(err)) => tracing::warn!("storing the current project for schedules: {err}"),
            Err(err) => tracing::warn!("storing the current project for schedules: {err}"),
        }
    }
    let target = match engine::Selector::parse(request.target.as_slice()) {
        Ok(target) => target,
        Err(err) => {
            return RunResponse {
                failed: true,
                errors: vec![err.to_string()],
                ..RunResponse::default()
            };
        }
    };
    // `--resource` and `--exclude`: every selected node keeps only what they select, so
    // each agent is sent, probes and applies only that.
    let narrowed =
        engine::ResourceFilter::new(&request.resources, &request.excludes).and_then(|filter| {
            engine::select::narrow(&mut validated, &registry, target.as_ref(), &filter)
                .map(|()| filter)
        });
    match narrowed {
        Ok(filter) => {
            // Sorted and without repeats, as the plan header and a saved plan name them.
            request.resources = filter.resources;
            request.excludes = filter.excludes;
        }
        Err(err) => {
            return RunResponse {
                failed: true,
                errors: vec![err.to_string()],
                ..RunResponse::default()
            };
        }
    }
    // Shared with the per-node work the run spawns.
    let validated = Arc::new(validated);
    let mut fleet = Fleet::new(&validated, target.as_ref(), &scope);
    if let Some(saved) = &request.saved
        && let Err(err) = fleet.pin(saved, &request)
    {
        return RunResponse::error(err);
    }
    if let Some(limit) = &scope.limit
        && let Err(refusal) = limit.check(
            fleet
                .targets
                .iter()
                .map(|node| (node.name.as_str(), &node.tags)),
        )
    {
        return RunResponse {
            failed: true,
            errors: vec![refusal],
            ..RunResponse::default()
        };
    }
    let nothing_targeted = fleet.targets.is_empty();
    let mut response = match request.mode {
        Mode::Plan | Mode::Drift => {
            fleet
                .probe(controller, &registry, &request, &progress)
                .await
        }
        Mode::Apply => {
            match fleet
                .refusals(controller, &registry, &request, &progress)
                .await
            {
                None => {
                    fleet
                        .apply(controller, &registry, &request, &progress)
                        .await
                }
                Some(refused) => refused,
            }
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
    /// The same, for the per-node work the run spawns.
    shared: Arc<Validated>,
    /// Where the uploaded project was written: stripped from recorded file names.
    project_dir: PathBuf,
    /// Per association (in declaration order): its rate control (`max_concurrency`,
    /// `max_errors`) and its nodes.
    waves: Vec<(model::Rate, model::Rate, Vec<&'v model::Node>)>,
    /// Every target, in wave order.
    targets: Vec<&'v model::Node>,
    /// The id the recorded run takes ([`Scope::run_id`]), or a new one.
    run_id: String,
}

impl<'v> Fleet<'v> {
    fn new(
        shared: &'v Arc<Validated>,
        target: Option<&engine::Selector>,
        scope: &Scope,
    ) -> Fleet<'v> {
        let validated: &'v Validated = shared;
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
                .filter(|n| engine::selected(n, target))
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
            shared: Arc::clone(shared),
            project_dir: validated.project.root.clone(),
            waves,
            targets,
            run_id: scope.run_id.clone().unwrap_or_else(new_run_id),
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
            let now = engine::document_digests(&self.validated.project);
            let changed = engine::changed_documents(&saved.documents, &now);
            return Err(RunError::PlanStale(if saved.documents.is_empty() {
                "the documents (or parameters) changed since this plan was made".to_string()
            } else if changed.is_empty() {
                "the documents are the plan's, but the parameters or what the documents read changed since this plan was made".to_string()
            } else {
                format!(
                    "documents changed since this plan was made: {}",
                    changed.join(", ")
                )
            }));
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

    /// Completes a run's record: who ran it, a result for each resource of a node that did
    /// not do its task ([`record::node_failure`]), and file names as the project names them.
    fn finish_record(
        &self,
        record: &mut RunRecord,
        request: &RunRequest,
        failures: &[(&model::Node, AgentError)],
    ) {
        record.user = request.user.clone();
        for (node, err) in failures {
            record
                .results
                .extend(record::node_failure(self.validated, node, err));
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
        let coordinator = controller.id().to_string();
        controller
            .store_write(move |s, again| s.begin_run_again(&run, &coordinator, again))
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

    /// The client that reaches this run's nodes through the controller.
    fn client(
        &self,
        controller: &Arc<Controller>,
        run_id: &str,
        progress: &mpsc::UnboundedSender<Event>,
    ) -> DispatchClient {
        DispatchClient {
            controller: Arc::clone(controller),
            run_id: run_id.to_string(),
            secrets: Arc::new(self.validated.model.secrets.clone()),
            progress: progress.clone(),
        }
    }

    /// Where `node` is in the model (the spawned per-node work finds it again there).
    fn index_of(&self, node: &model::Node) -> usize {
        self.validated
            .model
            .nodes
            .iter()
            .position(|n| std::ptr::eq(n, node))
            .unwrap_or(usize::MAX)
    }

    /// Probes every target at once and builds the plans (or the drift record).
    async fn probe(
        self,
        controller: &Arc<Controller>,
        registry: &Arc<Registry>,
        request: &RunRequest,
        progress: &mpsc::UnboundedSender<Event>,
    ) -> RunResponse {
        let started_at = record::timestamp();
        let id = self.run_id.clone();
        // A drift check of a node never applied finds it pending, not drifted. Asked before
        // the run is stored, so a store that cannot answer leaves no `running` run behind.
        let never_applied: Vec<&str> = if request.mode == Mode::Drift {
            let names: Vec<String> = self.targets.iter().map(|n| n.name.clone()).collect();
            let applied = match controller.store(move |s| s.applied_nodes(&names)).await {
                Ok(Ok(applied)) => applied,
                Ok(Err(err)) => return RunResponse::error(RunError::Store(err)),
                Err(err) => return RunResponse::error(RunError::Controller(err)),
            };
            self.targets
                .iter()
                .map(|n| n.name.as_str())
                .filter(|name| !applied.contains(*name))
                .collect()
        } else {
            Vec::new()
        };
        if request.mode == Mode::Drift
            && let Err(err) = self
                .begin(controller, request, RunKind::Drift, &id, &started_at)
                .await
        {
            return RunResponse::error(err);
        }
        for node in &self.targets {
            let _ = progress.send(Event::NodeStarted {
                node: node.name.clone(),
            });
        }
        let answers = self
            .plan_all(&self.client(controller, &id, progress), registry)
            .await;
        let mut planned = self.planned(request);
        let mut statuses = Vec::new();
        let mut failures: Vec<(&model::Node, AgentError)> = Vec::new();
        for (node, answer) in self.targets.iter().zip(answers) {
            match answer
                .unwrap_or_else(|| Err(AgentError::Failed("the probe was lost".to_string())))
            {
                Ok(node_plan) => {
                    let n_changes = node_plan.changes.iter().filter(|c| c.is_change()).count();
                    let n_errors = node_plan
                        .changes
                        .iter()
                        .filter(|c| c.change.is_err())
                        .count();
                    planned.push(node, node_plan);
                    let pending = never_applied.contains(&node.name.as_str());
                    let mut status = node_status(
                        &node.name,
                        match (n_errors > 0, pending) {
                            (true, _) => "failed",
                            (false, true) => "pending",
                            (false, false) => "ok",
                        },
                        None,
                    );
                    status.failed = n_errors;
                    match (request.mode, pending) {
                        (Mode::Drift, true) => status.pending = n_changes,
                        (Mode::Drift, false) => status.drifted = n_changes,
                        _ => status.changed = n_changes,
                    }
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
            ..RunResponse::default()
        };
        if request.mode == Mode::Plan {
            // What applying would refuse fails the plan, located (a drift records it).
            response.errors = engine::refusals(self.validated, &planned);
            let json = crate::report::plan::json(
                &planned.plan,
                &planned.nodes,
                &Origin {
                    project: &request.project,
                    root: FLEET_ROOT,
                    documents_digest: &planned.digest,
                    documents: &engine::document_digests(&self.validated.project),
                    target: request.target.as_deref(),
                    resources: &request.resources,
                    excludes: &request.excludes,
                    parameters: &std::collections::BTreeMap::new(),
                },
            );
            response.output = if request.json {
                json.clone()
            } else {
                let mut text =
                    crate::report::plan::targeting_header(&request.resources, &request.excludes);
                text.push_str(&crate::report::plan::human(
                    &planned.plan,
                    &planned.nodes,
                    Style::new(request.color),
                ));
                text
            };
            response.plan_json = Some(json);
            response.nodes = statuses;
            // A plan is not stored: the probes' results go once it is rendered.
            let plan_id = id.clone();
            if let Ok(Err(err)) = controller
                .store(move |s| s.settle_plan_tasks(&plan_id))
                .await
            {
                tracing::error!(run = %id, "plan {id}: dropping its probes' results: {err}");
            }
            return response;
        }
        let mut record = record::observed_record(
            RunKind::Drift,
            self.validated,
            &planned,
            &id,
            &started_at,
            &request.project,
        );
        self.finish_record(&mut record, request, &failures);
        record::mark_pending(&mut record, &never_applied);
        // Pending is no drift: only drifted resources make a drift check find changes.
        response.has_changes = record.count(ResultOutcome::Drifted) > 0;
        response.nodes = tally(statuses, &record);
        store_into(controller, &record, &mut response).await;
        response
    }

    /// Observes every target at once and plans each (the answers in target order).
    async fn plan_all(
        &self,
        client: &DispatchClient,
        registry: &Arc<Registry>,
    ) -> Vec<Option<Result<plan::NodePlan, AgentError>>> {
        let mut probes = tokio::task::JoinSet::new();
        for (idx, node) in self.targets.iter().enumerate() {
            let (validated, registry, client) = (
                Arc::clone(&self.shared),
                Arc::clone(registry),
                client.clone(),
            );
            let node_idx = self.index_of(node);
            probes.spawn(async move {
                let result = match validated.model.nodes.get(node_idx) {
                    Some(_) => {
                        let graph = validated.graph(node_idx, &registry);
                        engine::plan_node(&client, &registry, &graph).await
                    }
                    None => Err(AgentError::Failed("the node left the model".to_string())),
                };
                (idx, result)
            });
        }
        let mut answers: Vec<Option<Result<plan::NodePlan, AgentError>>> =
            (0..self.targets.len()).map(|_| None).collect();
        while let Some(joined) = probes.join_next().await {
            let Ok((idx, result)) = joined else { continue };
            answers[idx] = Some(result);
        }
        answers
    }

    /// An apply plans every target first, as Terraform does, and applies nothing anywhere
    /// when any node's plan holds a refusal: then the failed response, with the plan and
    /// what it refuses as [`engine::refusals`] words it. Nodes that cannot be probed are
    /// left to the apply to report.
    async fn refusals(
        &self,
        controller: &Arc<Controller>,
        registry: &Arc<Registry>,
        request: &RunRequest,
        progress: &mpsc::UnboundedSender<Event>,
    ) -> Option<RunResponse> {
        let id = new_run_id();
        let answers = self
            .plan_all(&self.client(controller, &id, progress), registry)
            .await;
        let mut planned = self.planned(request);
        for (node, answer) in self.targets.iter().zip(answers) {
            if let Some(Ok(node_plan)) = answer {
                planned.push(node, node_plan);
            }
        }
        // Like a plan's, these probes' results are not kept.
        let plan_id = id.clone();
        if let Ok(Err(err)) = controller
            .store(move |s| s.settle_plan_tasks(&plan_id))
            .await
        {
            tracing::error!(run = %id, "apply {id}: dropping its probes' results: {err}");
        }
        let errors = engine::refusals(self.validated, &planned);
        (!errors.is_empty()).then(|| RunResponse {
            failed: true,
            errors,
            output: crate::report::plan::human(
                &planned.plan,
                &planned.nodes,
                Style::new(request.color),
            ),
            ..RunResponse::default()
        })
    }

    /// An empty plan of this run, to fill.
    fn planned(&self, request: &RunRequest) -> Planned<'v> {
        let desired: Vec<String> = self
            .targets
            .iter()
            .map(|n| plan::desired_digest(n))
            .collect();
        Planned::new(
            String::new(),
            engine::documents_digest(
                &self.validated.project,
                &request.overrides,
                Path::new(FLEET_ROOT),
                &desired,
            ),
        )
    }

    /// Applies association by association with rate control, then records the run.
    async fn apply(
        self,
        controller: &Arc<Controller>,
        registry: &Arc<Registry>,
        request: &RunRequest,
        progress: &mpsc::UnboundedSender<Event>,
    ) -> RunResponse {
        let started_at = record::timestamp();
        let id = self.run_id.clone();
        if let Err(err) = self
            .begin(controller, request, RunKind::Apply, &id, &started_at)
            .await
        {
            return RunResponse::error(err);
        }
        let client = self.client(controller, &id, progress);
        let mut answers: Vec<(&model::Node, NodeApplied)> = Vec::new();
        for &(max_concurrency, max_errors, ref nodes) in &self.waves {
            let jobs: Vec<(usize, Option<Vec<String>>)> = nodes
                .iter()
                .map(|node| (self.index_of(node), self.expected(node, request)))
                .collect();
            let parallel = request.parallel;
            let results = rate::dispatch(
                jobs,
                max_concurrency,
                max_errors,
                |result: &NodeApplied| !matches!(result, Ok((_, report)) if report.n_failed() == 0),
                |(node_idx, fingerprints): (usize, Option<Vec<String>>)| {
                    let (validated, registry, client) = (
                        Arc::clone(&self.shared),
                        Arc::clone(registry),
                        client.clone(),
                    );
                    async move {
                        let Some(node) = validated.model.nodes.get(node_idx) else {
                            return Err(AgentError::Failed("the node left the model".to_string()));
                        };
                        let graph = validated.graph(node_idx, &registry);
                        apply_node(&client, &registry, &graph, fingerprints, parallel, node).await
                    }
                },
            )
            .await;
            for (node, result) in nodes.iter().zip(results) {
                match result {
                    Dispatched::Done(result) => answers.push((node, result)),
                    Dispatched::Panicked(err) => {
                        answers.push((
                            node,
                            Err(AgentError::Failed(format!("the dispatch crashed: {err}"))),
                        ));
                    }
                    Dispatched::NotStarted => {
                        let status = node_status(
                            &node.name,
                            "not_started",
                            Some("not started: max_errors was exceeded".to_string()),
                        );
                        let _ = progress.send(Event::NodeFinished(status));
                        answers.push((
                            node,
                            Err(AgentError::NotStarted(
                                "not started: max_errors was exceeded".to_string(),
                            )),
                        ));
                    }
                }
            }
        }

        let mut planned = self.planned(request);
        let mut reports = Vec::new();
        let mut statuses = Vec::new();
        let mut failures: Vec<(&model::Node, AgentError)> = Vec::new();
        for (node, answer) in answers {
            match answer {
                Ok((node_plan, report)) => {
                    planned.push(node, node_plan);
                    statuses.push(applied_status(&node.name, &report));
                    reports.push(report);
                }
                Err(err) => {
                    statuses.push(failed_status(&node.name, &err));
                    failures.push((node, err));
                }
            }
        }
        let mut record = record::apply_record(
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
            nodes: tally(statuses, &record),
            errors: Vec::new(),
            plan_json: None,
        };
        store_into(controller, &record, &mut response).await;
        response
    }
}

/// What applying a node gave: the plan rebuilt from what its agent observed and the
/// report, or why the node did not apply.
type NodeApplied = Result<(plan::NodePlan, RunReport), AgentError>;

/// Applies one node through the engine, announcing when it starts and how it finished; the
/// agent observes again, so the plan recorded is the one rebuilt from what it saw.
async fn apply_node(
    client: &DispatchClient,
    registry: &Registry,
    graph: &ResourceGraph<'_>,
    fingerprints: Option<Vec<String>>,
    parallel: usize,
    node: &model::Node,
) -> NodeApplied {
    let _ = client.progress.send(Event::NodeStarted {
        node: node.name.clone(),
    });
    let task = ApplyTask {
        plan: None,
        fingerprints,
        parallel,
        on_done: None,
    };
    let result = engine::apply_node(client, registry, graph, task)
        .await
        .and_then(|(node_plan, report)| match node_plan {
            Some(node_plan) => Ok((node_plan, report)),
            None => Err(AgentError::Failed(
                "the agent did not say what it observed".to_string(),
            )),
        });
    let status = match &result {
        Ok((_, report)) => applied_status(&node.name, report),
        Err(err) => failed_status(&node.name, err),
    };
    let _ = client.progress.send(Event::NodeFinished(status));
    result
}

/// A node's status with no counts yet.
fn node_status(node: &str, status: &str, message: Option<String>) -> NodeStatus {
    NodeStatus {
        node: node.to_string(),
        status: status.to_string(),
        changed: 0,
        drifted: 0,
        pending: 0,
        failed: 0,
        skipped: 0,
        message,
    }
}

/// The status of a node that did not do its task: offline or unreachable when it could not
/// be reached, refused when it refused the task as a whole (a saved plan's state moved),
/// not started when it was never asked.
fn failed_status(node: &str, err: &AgentError) -> NodeStatus {
    let status = match err {
        AgentError::Offline(_) => "offline",
        AgentError::Unreachable(_) => "unreachable",
        AgentError::Refused(_) => "refused",
        AgentError::NotStarted(_) => "not_started",
        AgentError::Failed(_) | AgentError::Io { .. } => "failed",
    };
    node_status(node, status, Some(err.to_string()))
}

/// A node that answered: its outcomes' counts.
fn applied_status(node: &str, report: &RunReport) -> NodeStatus {
    let failed = report.n_failed();
    let mut status = node_status(node, if failed > 0 { "failed" } else { "ok" }, None);
    status.changed = report.n_changed();
    status.failed = failed;
    status.skipped = report
        .outcomes
        .iter()
        .filter(|o| matches!(o.outcome, crate::exec::Outcome::Skipped { .. }))
        .count();
    status
}

/// The nodes' statuses with their counts taken from the run's record, so each count is
/// the number of the node's results with that outcome (the record is what `report` shows).
fn tally(mut statuses: Vec<NodeStatus>, record: &RunRecord) -> Vec<NodeStatus> {
    let by_node = record::node_counts(record);
    for status in &mut statuses {
        let counts = by_node.get(status.node.as_str());
        let count = |outcome: ResultOutcome| {
            counts
                .and_then(|counts| counts.get(&outcome))
                .copied()
                .unwrap_or(0)
        };
        status.changed = count(ResultOutcome::Changed);
        status.drifted = count(ResultOutcome::Drifted);
        status.pending = count(ResultOutcome::Pending);
        status.failed = count(ResultOutcome::Failed);
        status.skipped = count(ResultOutcome::Skipped);
    }
    statuses
}

/// A fleet run's id: sortable by time, unique even for two runs begun in one millisecond.
pub fn new_run_id() -> String {
    format!(
        "{}-{}",
        record::run_id(),
        crate::fleet::token::random_hex(2).unwrap_or_default()
    )
}

/// Stores the run and puts its id and summary in the response; when the store refuses it,
/// the response fails saying so, shows the results, and claims no run id.
async fn store_into(controller: &Arc<Controller>, record: &RunRecord, response: &mut RunResponse) {
    let stored = {
        let record = record.clone();
        controller
            .store_write(move |s, again| store_run_again(s, &record, again))
            .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ResultRecord, Severity};

    fn result(node: &str, outcome: ResultOutcome) -> ResultRecord {
        ResultRecord {
            node: node.into(),
            resource: "file:/a".into(),
            outcome,
            file: None,
            line: None,
            column: None,
            diff: None,
            change: None,
            message: None,
            duration_ms: 0,
            association: None,
            severity: Severity::Unspecified,
        }
    }

    #[test]
    fn node_statuses_say_why_and_count_the_recorded_results() {
        let statuses = vec![
            failed_status("a", &AgentError::Offline("node `a` is offline".into())),
            failed_status("b", &AgentError::Refused("refused the task: moved".into())),
            failed_status("c", &AgentError::Unreachable("timed out".into())),
            node_status("d", "ok", None),
        ];
        let names: Vec<&str> = statuses.iter().map(|s| s.status.as_str()).collect();
        assert_eq!(names, ["offline", "refused", "unreachable", "ok"]);
        let record = RunRecord {
            id: "r".into(),
            kind: RunKind::Apply,
            started_at: String::new(),
            finished_at: String::new(),
            user: "u".into(),
            project: "p".into(),
            documents_digest: "d".into(),
            results: vec![
                result("a", ResultOutcome::Unreachable),
                result("b", ResultOutcome::Skipped),
                result("b", ResultOutcome::Skipped),
                result("d", ResultOutcome::Changed),
                result("d", ResultOutcome::Failed),
                result("d", ResultOutcome::Failed),
                result("d", ResultOutcome::Drifted),
                result("d", ResultOutcome::Pending),
            ],
            status: RunStatus::Complete,
        };
        let counts: Vec<[usize; 5]> = tally(statuses, &record)
            .iter()
            .map(|s| [s.changed, s.drifted, s.pending, s.failed, s.skipped])
            .collect();
        assert_eq!(
            counts,
            [
                [0, 0, 0, 0, 0],
                [0, 0, 0, 0, 2],
                [0, 0, 0, 0, 0],
                [1, 1, 1, 2, 0]
            ]
        );
    }
}
