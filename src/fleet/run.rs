//! Fleet runs: a project uploaded to the controller is lowered against the inventory, each
//! targeted node's catalog goes to its agent, and the answers become plans, applies and
//! drift records, exactly as local mode makes them.
//!
//! Plans and drift checks probe every target at once (reading changes nothing). Applies go
//! association by association, each with its own SSM rate control (`max_concurrency`,
//! `max_errors`); a node several associations target is applied once, with its whole catalog,
//! by the first association that reaches it. Targets that are offline count as errors and
//! are named; targets never started because `max_errors` was exceeded are named too.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::engine::{self, Planned, record};
use crate::fleet::controller::{Controller, TaskEvent, log};
use crate::fleet::rate::{self, Dispatched};
use crate::fleet::wire::{Catalog, TaskKind, TaskResult, WireFacts, WireObserved, WireOutcome};
use crate::model::{self, LOCAL_NODE};
use crate::plan::{self, graph::ResourceGraph};
use crate::report::plan::{Origin, Style};
use crate::resource::Registry;
use crate::schema::KnownNode;
use crate::store::{ResultOutcome, ResultRecord, RunKind, RunRecord, RunStatus, Store};
use crate::validate::{Validated, validate_with};

/// The largest project the controller accepts.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;
/// The most files a project may have.
pub const MAX_BUNDLE_FILES: usize = 50_000;

/// How long a probe may take on one node.
const PROBE_WAIT: Duration = Duration::from_secs(300);
/// How long an apply may take on one node.
const APPLY_WAIT: Duration = Duration::from_secs(3600);

/// What a run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Probe and show the per-node plans.
    Plan,
    /// Plan and apply with rate control.
    Apply,
    /// Probe and record drift and findings.
    Drift,
}

/// One file of an uploaded project.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    /// Relative to the project, `/`-separated.
    pub path: String,
    /// The bytes, base64.
    pub data: String,
}

/// A run asked of the controller (`POST /v1/runs`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Plan, apply or drift.
    pub mode: Mode,
    /// The project's files.
    pub files: Vec<BundleFile>,
    /// The project as the user named it, for records.
    pub project: String,
    /// `--param` overrides.
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
    /// `--target`: a node name or `KEY=VALUE`.
    #[serde(default)]
    pub target: Option<String>,
    /// `--parallel` on each node.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Colour the human text.
    #[serde(default)]
    pub color: bool,
    /// Return the plan as the plan JSON document instead of text.
    #[serde(default)]
    pub json: bool,
    /// Who asked.
    #[serde(default)]
    pub user: String,
    /// `steward run --document`: apply the documents on these targets with this rate
    /// control, ignoring associations.
    #[serde(default)]
    pub adhoc: Option<AdhocRequest>,
    /// Apply exactly this saved plan: refused when the documents changed since, and each
    /// agent refuses when what it reads moved since.
    #[serde(default)]
    pub saved: Option<SavedFleetPlan>,
}

/// What a saved fleet plan pins (from `plan -o` against a controller).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedFleetPlan {
    /// The plan's `documents_digest`.
    pub documents_digest: String,
    /// Per node, each resource's (`TYPE:NAME`) observed fingerprint.
    pub nodes: BTreeMap<String, BTreeMap<String, String>>,
}

/// The root a fleet plan names: its nodes are reached through agents.
pub const FLEET_ROOT: &str = "(agents)";

/// The targets and rate control of `steward run --document`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdhocRequest {
    /// The selector, as `steward run --target`.
    pub target: String,
    /// `N` or `P%`.
    pub max_concurrency: String,
    /// `N` or `P%`.
    pub max_errors: String,
}

impl AdhocRequest {
    /// The scope it asks for, with the selector resolved against the inventory.
    pub fn scope(&self, controller: &Controller) -> Result<Scope, String> {
        use crate::fleet::command::{parse_rate, resolve_targets};
        Ok(Scope {
            association: None,
            adhoc: Some(Adhoc {
                nodes: resolve_targets(controller, &self.target)?,
                max_concurrency: parse_rate(&self.max_concurrency, "--max-concurrency")?,
                max_errors: parse_rate(&self.max_errors, "--max-errors")?,
            }),
        })
    }
}

fn default_parallel() -> usize {
    4
}

/// A line of the run's progress stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A node started (probe or apply).
    NodeStarted {
        /// The node.
        node: String,
    },
    /// A resource finished on a node during an apply.
    Resource {
        /// The node.
        node: String,
        /// `TYPE:NAME`.
        resource: String,
        /// `changed`, `failed`, ...
        outcome: String,
    },
    /// A node finished.
    NodeFinished(NodeStatus),
    /// The run is over.
    Done(RunResponse),
}

/// How one node fared.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub node: String,
    /// `ok`, `failed`, `offline` or `not_started`.
    pub status: String,
    /// Resources changed (apply) or to change (plan, drift).
    pub changed: usize,
    /// Resources failed.
    pub failed: usize,
    /// Why it failed, when it did.
    pub message: Option<String>,
}

/// The end of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunResponse {
    /// The stored run, for apply and drift.
    pub run_id: Option<String>,
    /// Something would change (plan) or drifted (drift).
    pub has_changes: bool,
    /// A node failed, was offline, or a resource failed.
    pub failed: bool,
    /// The rendered plan (human text or JSON) or the run's summary.
    pub output: String,
    /// Per node.
    pub nodes: Vec<NodeStatus>,
    /// Problems with the project itself (then nothing ran).
    pub errors: Vec<String>,
    /// A plan as the plan JSON document (for `plan -o`).
    #[serde(default)]
    pub plan_json: Option<String>,
}

impl RunResponse {
    /// A run that could not start.
    fn error(error: String) -> RunResponse {
        RunResponse {
            failed: true,
            errors: vec![error],
            ..RunResponse::default()
        }
    }
}

/// Where uploaded projects are kept.
fn projects_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("projects")
}

/// The file naming the project whose schedules the controller runs.
fn current_path(data_dir: &Path) -> PathBuf {
    data_dir.join("current-project")
}

/// Writes an uploaded project under the data directory (once per content) and returns its
/// directory. Every path is checked: relative, no `..`, no hidden components, bounded.
pub fn materialize(data_dir: &Path, files: &[BundleFile]) -> Result<PathBuf, String> {
    if files.len() > MAX_BUNDLE_FILES {
        return Err(format!(
            "the project has {} files; the limit is {MAX_BUNDLE_FILES}",
            files.len()
        ));
    }
    let mut decoded = Vec::with_capacity(files.len());
    let mut total = 0usize;
    let mut seen = HashSet::new();
    for file in files {
        let path = check_bundle_path(&file.path)?;
        if !seen.insert(path.clone()) {
            return Err(format!("`{}` appears twice in the project", file.path));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&file.data)
            .map_err(|err| format!("`{}`: {err}", file.path))?;
        total += bytes.len();
        if total > MAX_BUNDLE_BYTES {
            return Err(format!(
                "the project is over the {MAX_BUNDLE_BYTES}-byte limit"
            ));
        }
        decoded.push((path, bytes));
    }
    decoded.sort();
    let mut hasher = blake3::Hasher::new();
    for (path, bytes) in &decoded {
        hasher.update(path.as_os_str().as_encoded_bytes());
        hasher.update(&[0]);
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let digest = hasher.finalize().to_hex().to_string();
    let dir = projects_dir(data_dir).join(&digest[..32]);
    if dir.is_dir() {
        // Used again: it counts as recent for pruning.
        let _ =
            std::fs::File::open(&dir).and_then(|d| d.set_modified(std::time::SystemTime::now()));
        return Ok(dir);
    }
    crate::state_dir::create_private_dir(&projects_dir(data_dir)).map_err(|err| err.to_string())?;
    let staging = tempfile::Builder::new()
        .prefix(".upload-")
        .tempdir_in(projects_dir(data_dir))
        .map_err(|err| format!("staging the project: {err}"))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|err| format!("staging the project: {err}"))?;
    }
    // Projects can hold secrets: everything is private to the controller (0700 / 0600).
    for (path, bytes) in &decoded {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let target = staging.path().join(path);
        let failed = |err: std::io::Error| format!("{}: {err}", path.display());
        if let Some(parent) = target.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(failed)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .and_then(|mut file| file.write_all(bytes))
            .map_err(failed)?;
    }
    let staged = staging.keep();
    match std::fs::rename(&staged, &dir) {
        Ok(()) => {
            prune_projects(data_dir, KEEP_PROJECTS);
            Ok(dir)
        }
        // Another upload of the same content won the race.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&staged);
            Ok(dir)
        }
        Err(err) => Err(format!("storing the project: {err}")),
    }
}

/// Uploaded projects kept besides the current one.
const KEEP_PROJECTS: usize = 20;

/// Deletes all but the `keep` most recently used uploaded projects, never the current one
/// (its schedules read it). Runs hold the run lock, so no run reads a project being deleted.
fn prune_projects(data_dir: &Path, keep: usize) {
    let current = current_project(data_dir).map(|(dir, _)| dir);
    let Ok(entries) = std::fs::read_dir(projects_dir(data_dir)) else {
        return;
    };
    let mut projects: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| current.as_deref() != Some(e.path().as_path()))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    projects.sort_by_key(|p| std::cmp::Reverse(p.0));
    for (_, old) in projects.into_iter().skip(keep) {
        if let Err(err) = std::fs::remove_dir_all(&old) {
            log(&format!("pruning {}: {err}", old.display()));
        }
    }
}

fn check_bundle_path(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    let bad = text.is_empty()
        || text.len() > 1024
        || text.contains('\0')
        || text.contains('\\')
        || path.components().any(|c| match c {
            Component::Normal(part) => part.to_string_lossy().starts_with('.'),
            _ => true,
        });
    if bad {
        Err(format!(
            "project path `{}` must be relative, without `..` or hidden parts",
            text.escape_debug()
        ))
    } else {
        Ok(path.to_path_buf())
    }
}

/// The enrolled, unrevoked nodes as lowering sees them.
fn inventory(controller: &Controller) -> Result<Vec<KnownNode>, String> {
    let nodes = controller
        .with_store(|s| s.nodes())?
        .map_err(|err| err.to_string())?;
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
    let inventory = match inventory(controller) {
        Ok(inventory) => inventory,
        Err(err) => {
            return RunResponse::error(err);
        }
    };
    let registry = Registry::builtin();
    let overrides = request.overrides.clone();
    let validated = {
        let dir = dir.clone();
        let local_facts = crate::facts::local(Path::new("/"));
        let adhoc = scope.adhoc.as_ref().map(|a| a.nodes.clone());
        match tokio::task::spawn_blocking(move || {
            validate_with(
                &dir,
                &Registry::builtin(),
                local_facts,
                overrides,
                inventory,
                adhoc,
            )
        })
        .await
        {
            Ok(validated) => validated,
            Err(err) => {
                return RunResponse::error(format!("validating the project: {err}"));
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
                .filter(|n| engine::selected(n, request.target.as_deref()))
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
    fn pin(&mut self, saved: &SavedFleetPlan, request: &RunRequest) -> Result<(), String> {
        let missing: Vec<&str> = saved
            .nodes
            .keys()
            .filter(|name| !self.targets.iter().any(|n| &n.name == *name))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the plan covers {} that the documents no longer target; run `steward plan` again",
                missing.join(", ")
            ));
        }
        for (_, _, nodes) in &mut self.waves {
            nodes.retain(|n| saved.nodes.contains_key(&n.name));
        }
        self.waves.retain(|(_, _, nodes)| !nodes.is_empty());
        self.targets.retain(|n| saved.nodes.contains_key(&n.name));
        if self.planned(request).digest != saved.documents_digest {
            return Err("the documents (or parameters) changed since this plan was made; run `steward plan` again".to_string());
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
    fn begin(
        &self,
        controller: &Controller,
        request: &RunRequest,
        kind: RunKind,
        id: &str,
        started_at: &str,
    ) -> Result<(), String> {
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
            .with_store(|s| s.begin_run(&run))?
            .map_err(|err| format!("the run could not be stored, so nothing was sent: {err}"))
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
        let started_at = record::timestamp();
        let id = new_run_id();
        if request.mode == Mode::Drift
            && let Err(err) = self.begin(controller, request, RunKind::Drift, &id, &started_at)
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
                Err(err) => Err(err),
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
            if let Ok(Err(err)) = controller.with_store(|s| s.settle_plan_tasks(&id)) {
                log(&format!("plan {id}: dropping its probes' results: {err}"));
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
        store_into(controller, &record, &mut response);
        response
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
        registry: &Registry,
        request: &RunRequest,
        progress: &mpsc::UnboundedSender<Event>,
    ) -> RunResponse {
        let started_at = record::timestamp();
        let id = new_run_id();
        if let Err(err) = self.begin(controller, request, RunKind::Apply, &id, &started_at) {
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
                    let report = crate::fleet::wire::run_report(node, &outcomes, duration_ms)?;
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
            nodes: statuses,
            errors: Vec::new(),
            plan_json: None,
        };
        store_into(controller, &record, &mut response);
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
    planned.push(node, node_plan);
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
        .await;
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
            let mut record = record::record(validated, &node.name, res, outcome);
            record.message = Some(format!("node `{}`: {err}", node.name));
            record
        })
        .collect()
}

/// A fleet run's id: sortable by time, unique even for two runs begun in one millisecond.
fn new_run_id() -> String {
    format!(
        "{}-{}",
        record::run_id(),
        crate::fleet::controller::random_hex(2).unwrap_or_default()
    )
}

/// Records a run in the controller's store; returns its human summary, or why it could not
/// be stored.
fn store_run(controller: &Controller, record: &RunRecord) -> Result<String, String> {
    controller
        .with_store(|s| s.record_run(record))?
        .map_err(|err| {
            tracing::error!(run = %record.id, "recording the run: {err}");
            err.to_string()
        })?;
    let findings = controller
        .with_store(|s| s.findings(false))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Ok(crate::report::run::human(
        record,
        &findings,
        Style::new(false),
    ))
}

/// Stores the run and puts its id and summary in the response; when the store refuses it,
/// the response fails saying so, shows the results, and claims no run id.
fn store_into(controller: &Controller, record: &RunRecord, response: &mut RunResponse) {
    match store_run(controller, record) {
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

/// The results a task's answer stands for, without its catalog: what the agent did,
/// resource by resource (an apply), or the command's output. Nothing for a probe.
fn answer_results(node: &str, result: &TaskResult) -> Option<(RunKind, Vec<ResultRecord>)> {
    if let TaskResult::Command {
        output,
        duration_ms,
    } = result
    {
        let result = crate::fleet::command::late_record(node, output, *duration_ms);
        return Some((RunKind::Command, vec![result]));
    }
    let TaskResult::Applied { outcomes, .. } = result else {
        return None;
    };
    use crate::fleet::wire::WireOutcomeKind;
    let results = outcomes
        .iter()
        .map(|o| {
            let (outcome, message) = match &o.outcome {
                WireOutcomeKind::Unchanged => (ResultOutcome::Unchanged, None),
                WireOutcomeKind::Changed { .. } | WireOutcomeKind::Refreshed { .. } => {
                    (ResultOutcome::Changed, None)
                }
                WireOutcomeKind::Failed { error, .. } => {
                    (ResultOutcome::Failed, Some(error.clone()))
                }
                WireOutcomeKind::Skipped { because } => (
                    ResultOutcome::Skipped,
                    Some(format!("skipped because {because} failed")),
                ),
            };
            ResultRecord {
                node: node.to_string(),
                resource: o.id.clone(),
                outcome,
                file: None,
                line: None,
                column: None,
                diff: None,
                message,
                duration_ms: o.duration_ms,
                association: None,
                severity: crate::store::Severity::Unspecified,
            }
        })
        .collect();
    Some((RunKind::Apply, results))
}

/// Records a result that arrived after its run ended (the controller restarted, or the
/// agent reconnected late) as run `late-TASK_ID`: nothing an agent changed goes
/// unreported. Recording it twice is a no-op; `Err` when it could not be stored.
pub fn record_late(
    controller: &Controller,
    node: &str,
    task_id: &str,
    result: &TaskResult,
) -> Result<(), String> {
    let Some((kind, results)) = answer_results(node, result) else {
        return Ok(());
    };
    let now = record::timestamp();
    let record = RunRecord {
        id: format!("late-{task_id}"),
        kind,
        started_at: now.clone(),
        finished_at: now,
        user: "agent".to_string(),
        project: format!("(result of task {task_id}, delivered after its run ended)"),
        documents_digest: String::new(),
        results,
        status: RunStatus::Complete,
    };
    if controller
        .with_store(|s| s.has_run(&record.id))?
        .map_err(|err| err.to_string())?
    {
        return Ok(());
    }
    log(&format!(
        "recording the late result of task {task_id} from `{node}`"
    ));
    store_run(controller, &record).map(|_| ())
}

/// Marks the runs a previous controller left `running` as `interrupted`, each with every
/// result that arrived before it stopped, and a skipped `task:ID` entry for each node whose
/// result had not (recorded as `late-ID` if its agent delivers it later). Called at start,
/// before agents connect.
pub fn recover_interrupted(controller: &Controller) -> Result<usize, String> {
    // Closed tasks a week old: their results were acknowledged then, and no agent keeps a
    // result that long after an acknowledgement (its ledger keeps ids a day).
    let week_ago = (chrono::Utc::now() - chrono::Duration::days(7))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let pruned = controller
        .with_store(|s| s.prune_tasks(&week_ago))?
        .map_err(|err| err.to_string())?;
    if pruned > 0 {
        log(&format!(
            "forgot {pruned} task(s) closed more than a week ago"
        ));
    }
    let unfinished = controller
        .with_store(|s| s.unfinished_runs())?
        .map_err(|err| err.to_string())?;
    let count = unfinished.len();
    for crate::store::UnfinishedRun { mut run, tasks } in unfinished {
        for task in &tasks {
            let answer = task
                .result
                .as_deref()
                .and_then(|json| serde_json::from_str::<TaskResult>(json).ok());
            let results = answer
                .as_ref()
                .and_then(|answer| answer_results(&task.node, answer))
                .map(|(_, results)| results);
            match (answer.is_some(), results) {
                (_, Some(results)) => run.results.extend(results),
                (true, None) => run.results.push(interrupted_entry(
                    &task.node,
                    &task.id,
                    "the node answered, but the controller stopped before comparing its answer",
                )),
                (false, _) => run.results.push(interrupted_entry(
                    &task.node,
                    &task.id,
                    &format!(
                        "no result arrived before the controller stopped; if the agent delivers it later, it is recorded as run late-{}",
                        task.id
                    ),
                )),
            }
        }
        run.finished_at = record::timestamp();
        run.status = RunStatus::Interrupted;
        log(&format!(
            "run {} was interrupted by a controller stop: recorded with the {} result(s) that arrived",
            run.id,
            tasks.iter().filter(|t| t.result.is_some()).count()
        ));
        store_run(controller, &run)?;
    }
    Ok(count)
}

/// The entry of an interrupted run for a node whose answer it does not hold.
fn interrupted_entry(node: &str, task_id: &str, message: &str) -> ResultRecord {
    ResultRecord {
        node: node.to_string(),
        resource: format!("task:{task_id}"),
        outcome: ResultOutcome::Skipped,
        file: None,
        line: None,
        column: None,
        diff: None,
        message: Some(message.to_string()),
        duration_ms: 0,
        association: None,
        severity: crate::store::Severity::Unspecified,
    }
}

/// The project whose schedules run, and its name for records, if one was applied.
pub fn current_project(data_dir: &Path) -> Option<(PathBuf, String)> {
    let text = std::fs::read_to_string(current_path(data_dir)).ok()?;
    let mut lines = text.lines();
    let dir = lines.next()?.trim();
    let project = lines.next().unwrap_or_default().to_string();
    if dir.is_empty() || check_bundle_path(dir).is_err() {
        return None;
    }
    Some((projects_dir(data_dir).join(dir), project))
}

/// Reads back a stored project as a bundle, for a scheduled run.
pub fn bundle_of(dir: &Path) -> Result<Vec<BundleFile>, String> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|err| err.to_string())?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(dir)
            .map_err(|err| err.to_string())?
            .to_string_lossy()
            .to_string();
        let bytes = std::fs::read(entry.path()).map_err(|err| err.to_string())?;
        files.push(BundleFile {
            path: relative,
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_paths_stay_inside() {
        assert!(check_bundle_path("site.yaml").is_ok());
        assert!(check_bundle_path("templates/a.j2").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            ".steward/x",
            "a/.git/config",
            "a\\b",
        ] {
            assert!(check_bundle_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn materialize_refuses_bad_bundles_and_dedupes() {
        let dir = tempfile::tempdir().unwrap();
        let file = |path: &str, data: &str| BundleFile {
            path: path.to_string(),
            data: data.to_string(),
        };
        let ok = vec![file("site.yaml", "c3Rld2FyZDogMQo=")];
        let a = materialize(dir.path(), &ok).unwrap();
        let b = materialize(dir.path(), &ok).unwrap();
        assert_eq!(a, b);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&a.join("site.yaml")), 0o600);
        assert_eq!(mode(&a), 0o700);
        assert_eq!(
            std::fs::read_to_string(a.join("site.yaml")).unwrap(),
            "steward: 1\n"
        );
        assert!(materialize(dir.path(), &[file("../x", "")]).is_err());

        // Old uploads are pruned; the current project never is.
        let current = a.clone();
        std::fs::write(
            dir.path().join("current-project"),
            format!("{}\n/p\n", current.file_name().unwrap().to_string_lossy()),
        )
        .unwrap();
        for n in 0..(KEEP_PROJECTS + 5) {
            use base64::Engine;
            let data =
                base64::engine::general_purpose::STANDARD.encode(format!("steward: 1\n# {n}\n"));
            materialize(dir.path(), &[file("site.yaml", &data)]).unwrap();
        }
        let kept = std::fs::read_dir(dir.path().join("projects"))
            .unwrap()
            .count();
        assert_eq!(kept, KEEP_PROJECTS + 1);
        assert!(current.is_dir());
        assert!(materialize(dir.path(), &[file("x", "!!!")]).is_err());
        assert!(materialize(dir.path(), &[file("x", ""), file("x", "")]).is_err());
    }
}
