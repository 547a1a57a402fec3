//! Local mode: plan and apply on the machine steward runs on, with no server set up.
//!
//! Chooses what local mode acts on (the `local` node, narrowed by `--target`), runs it
//! through the [`engine`] with a [`LocalClient`] (probes and applies under `--root`, in
//! process), checks a saved plan against a fresh one, and holds the state directory's apply
//! lock while it applies.
//!
//! **Architecture Invariant:** local mode only; the fleet never reaches in here. Run ids,
//! records and target selection are the engine's, private directories and the lock
//! `state_dir`'s.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::client::block_on;
use crate::engine::{self, AgentError, ApplyTask, LocalClient, record};
use crate::exec::{self, RunReport};
use crate::model::LOCAL_NODE;
use crate::plan::{self, graph::ResourceGraph};
use crate::report::plan::{PlanParameter, parameter_hash};
use crate::resource::Registry;
use crate::state_dir::{Lock, StateDirError};
use crate::validate::Validated;

/// Where and how local mode acts.
pub struct Config {
    /// `/` or `--root`.
    pub root: PathBuf,
    /// steward's state directory (`.steward/` beside the project unless moved).
    pub state_dir: PathBuf,
    /// Only nodes this selector picks (every `--target`); `None`: every node.
    pub target: Option<engine::Selector>,
    /// `--resource` and `--exclude`, recorded in a saved plan and checked when it is
    /// applied (the model is already narrowed by [`engine::select::narrow`]).
    pub filter: engine::ResourceFilter,
    /// Parameter overrides, for the documents digest.
    pub overrides: BTreeMap<String, String>,
}

/// A plan of the local node with what applying it needs.
pub struct Planned<'v> {
    /// The plans, the planned nodes, the digest and the run id.
    pub run: engine::Planned<'v>,
    /// The planned nodes' graphs (same order as `run.nodes`).
    pub graphs: Vec<ResourceGraph<'v>>,
    /// The client that observed the nodes, and applies them with the same provider
    /// environments.
    pub client: LocalClient<'v>,
    /// Each document's digest ([`engine::document_digests`]), for a saved plan.
    pub documents: BTreeMap<String, String>,
}

/// Why local mode could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// `--target` selects nothing local mode can act on.
    #[error(
        "--target `{0}` matches no node this machine can act on (local mode manages the `local` node)"
    )]
    NoTarget(String),
    /// Another apply holds the lock.
    #[error("another apply is running on this state directory: {0}")]
    Locked(String),
    /// The saved plan cannot be used.
    #[error("{0}")]
    StalePlan(String),
    /// IO on the state directory or the plan file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The local client failed otherwise.
    #[error(transparent)]
    Client(AgentError),
}

impl From<StateDirError> for LocalError {
    fn from(err: StateDirError) -> LocalError {
        match err {
            StateDirError::Locked(holder) => LocalError::Locked(holder),
            StateDirError::Io { path, source } => LocalError::Io { path, source },
        }
    }
}

impl From<AgentError> for LocalError {
    fn from(err: AgentError) -> LocalError {
        match err {
            AgentError::Io { path, source } => LocalError::Io { path, source },
            other => LocalError::Client(other),
        }
    }
}

/// Probes the local node and plans it.
pub fn plan<'v>(
    validated: &'v Validated,
    registry: &'v Registry,
    config: &Config,
) -> Result<Planned<'v>, LocalError> {
    let run_id = record::run_id();
    let client = LocalClient::new(
        registry,
        config.root.clone(),
        config.state_dir.clone(),
        run_id.clone(),
        validated.model.secrets.clone(),
    );
    let mut run = engine::Planned::new(run_id, String::new());
    let mut graphs = Vec::new();
    let mut desired = Vec::new();
    for (idx, node) in validated.model.nodes.iter().enumerate() {
        if !engine::selected(node, config.target.as_ref()) {
            continue;
        }
        if node.name != LOCAL_NODE {
            if !node.resources.is_empty() {
                run.unreachable.push(node.name.clone());
            }
            continue;
        }
        // The digest hashes every desired content; the graph is built and the node probed
        // and planned meanwhile.
        let (digest, (graph, node_plan)) = rayon::join(
            || plan::desired_digest(node),
            || {
                let graph = validated.graph(idx, registry);
                let node_plan = block_on(engine::plan_node(&client, registry, &graph));
                (graph, node_plan)
            },
        );
        desired.push(digest);
        run.push(node, node_plan?);
        graphs.push(graph);
    }
    run.digest = engine::documents_digest(
        &validated.project,
        &config.overrides,
        &config.root,
        &desired,
    );
    if run.nodes.is_empty()
        && let Some(target) = &config.target
    {
        return Err(LocalError::NoTarget(target.to_string()));
    }
    Ok(Planned {
        run,
        graphs,
        client,
        documents: engine::document_digests(&validated.project),
    })
}

/// Applies a plan with the resource types it was planned with, holding the state
/// directory's lock.
pub fn apply(
    planned: &Planned<'_>,
    registry: &Registry,
    config: &Config,
    exec_config: exec::Config,
    on_done: &(dyn Fn(&exec::ResourceOutcome) + Sync),
) -> Result<Vec<RunReport>, LocalError> {
    let _lock = Lock::acquire(&config.state_dir)?;
    let mut reports = Vec::new();
    for (graph, node_plan) in planned.graphs.iter().zip(&planned.run.plan.nodes) {
        let task = ApplyTask {
            plan: Some(node_plan),
            fingerprints: None,
            parallel: exec_config.parallel,
            on_done: Some(on_done),
        };
        let (_, report) = block_on(engine::apply_node(&planned.client, registry, graph, task))?;
        reports.push(report);
    }
    Ok(reports)
}

/// The parts of a saved plan that apply checks.
#[derive(Deserialize)]
pub struct SavedPlan {
    /// Must be [`crate::report::plan::PLAN_KIND`].
    pub kind: String,
    /// The JSON format version.
    pub format_version: String,
    /// The project path relative to the directory `plan` ran in (absolute in a plan made
    /// before plans kept it relative, and in a fleet plan).
    pub project: String,
    /// The root it was planned against.
    pub root: String,
    /// Digest of documents, overrides and root.
    pub documents_digest: String,
    /// Each document's digest by its path in the project (absent in older plans).
    #[serde(default)]
    pub documents: BTreeMap<String, String>,
    /// Every `--target` it was made with, joined by commas (absent: none).
    #[serde(default)]
    pub target: Option<String>,
    /// The parameter values it was made with; `None` in a plan made before plans kept them
    /// (then `apply` is given them again).
    #[serde(default)]
    pub parameters: Option<BTreeMap<String, PlanParameter>>,
    /// Per node, each resource's observed fingerprint.
    pub nodes: Vec<SavedNode>,
    /// The `--resource`s it was made with (absent: none).
    #[serde(default)]
    pub resources: Vec<String>,
    /// The `--exclude`s it was made with (absent: none).
    #[serde(default)]
    pub excludes: Vec<String>,
}

/// A node of a saved plan.
#[derive(Deserialize)]
pub struct SavedNode {
    /// Node name.
    pub name: String,
    /// Resources.
    pub changes: Vec<SavedChange>,
}

/// A resource of a saved plan.
#[derive(Deserialize)]
pub struct SavedChange {
    /// `TYPE:NAME`.
    pub id: String,
    /// Observed fingerprint at plan time.
    pub observed: String,
}

impl SavedPlan {
    /// Reads a saved plan; `Ok(None)` when the file is not one (so it is a document).
    pub fn read(path: &Path) -> Result<Option<SavedPlan>, LocalError> {
        Ok(SavedPlan::read_text(path)?.map(|(plan, _)| plan))
    }

    /// [`SavedPlan::read`], with the file's text.
    pub fn read_text(path: &Path) -> Result<Option<(SavedPlan, String)>, LocalError> {
        let mut text = String::new();
        let mut file = File::open(path).map_err(|source| LocalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // Saved plans are JSON; anything else is not one.
        let mut first = [0u8; 1];
        if file.read(&mut first).map_err(|source| LocalError::Io {
            path: path.to_path_buf(),
            source,
        })? == 0
            || first[0] != b'{'
        {
            return Ok(None);
        }
        file.rewind().map_err(|source| LocalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        file.read_to_string(&mut text)
            .map_err(|source| LocalError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        // A flow-style YAML document starts with `{` too: only JSON marked as a plan is one.
        let is_plan = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .is_some_and(|json| {
                json.get("kind").and_then(serde_json::Value::as_str)
                    == Some(crate::report::plan::PLAN_KIND)
            });
        if !is_plan {
            return Ok(None);
        }
        let plan: SavedPlan = serde_json::from_str(&text).map_err(|err| {
            LocalError::StalePlan(format!(
                "{} is not a readable steward plan: {err}",
                path.display()
            ))
        })?;
        if plan.format_version != crate::report::plan::FORMAT_VERSION {
            return Err(LocalError::StalePlan(format!(
                "{} has plan format {}; this steward reads {}",
                path.display(),
                plan.format_version,
                crate::report::plan::FORMAT_VERSION
            )));
        }
        Ok(Some((plan, text)))
    }

    /// The project this plan was made from: its path is relative to the directory `plan`
    /// ran in, so it is found from that same directory (`cwd`), wherever the tree has moved.
    /// Says where it looked when it is not there.
    pub fn project_path(&self, cwd: &Path) -> Result<PathBuf, LocalError> {
        let path = cwd.join(&self.project);
        if path.exists() {
            Ok(path)
        } else {
            Err(LocalError::StalePlan(format!(
                "the project of this plan, `{}`, is not at {}: the path is relative to the directory the plan was made in, so apply it from there",
                self.project,
                path.display()
            )))
        }
    }

    /// Refuses a plan made with another `--root` than the one given to apply.
    pub fn check_root(&self, root: &Path) -> Result<(), LocalError> {
        let now = root.display().to_string();
        if now == self.root {
            Ok(())
        } else {
            Err(LocalError::StalePlan(format!(
                "--root differs: this plan was made with {}, this apply has {now}; apply it with the root it was made with, or run `steward plan` again",
                self.root
            )))
        }
    }

    /// Refuses a plan made with other `--target`, `--resource` or `--exclude` flags than the
    /// apply's: names each flag that differs and what the plan was made with.
    pub fn check_selection(
        &self,
        target: Option<&engine::Selector>,
        filter: &engine::ResourceFilter,
    ) -> Result<(), LocalError> {
        let mut differ = Vec::new();
        let planned_target = engine::Selector::parse(self.target.as_slice())
            .map_err(|err| LocalError::StalePlan(format!("this plan's target: {err}")))?;
        let same_parts = |a: &engine::Selector, b: &engine::Selector| {
            a.parts.len() == b.parts.len() && a.parts.iter().all(|part| b.parts.contains(part))
        };
        let same_target = match (&planned_target, target) {
            (None, None) => true,
            (Some(a), Some(b)) => same_parts(a, b),
            _ => false,
        };
        if !same_target {
            let shown = |target: Option<&engine::Selector>| {
                target.map_or("none".to_string(), |t| format!("`{t}`"))
            };
            differ.push(format!(
                "--target: the plan has {}, this apply has {}",
                shown(planned_target.as_ref()),
                shown(target)
            ));
        }
        let lists = [
            ("--resource", &self.resources, &filter.resources),
            ("--exclude", &self.excludes, &filter.excludes),
        ];
        for (flag, planned, given) in lists {
            if planned != given {
                differ.push(format!(
                    "{flag}: the plan has {}, this apply has {}",
                    flag_values(planned),
                    flag_values(given)
                ));
            }
        }
        if differ.is_empty() {
            Ok(())
        } else {
            Err(LocalError::StalePlan(format!(
                "this plan was made with other targets than this apply's:\n  {}\napply it with the flags it was made with, or run `steward plan` again",
                differ.join("\n  ")
            )))
        }
    }

    /// The parameter values to apply this plan with: the ones it was made with. `given` (the
    /// values given to `apply`) may repeat them; a sensitive one, kept only as a hash, must be
    /// given again. Names every parameter that is missing or differs.
    pub fn parameters(
        &self,
        given: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, LocalError> {
        let Some(parameters) = &self.parameters else {
            return Ok(given.clone());
        };
        let mut values = BTreeMap::new();
        let mut problems = Vec::new();
        for name in given.keys().filter(|name| !parameters.contains_key(*name)) {
            problems.push(format!(
                "parameter `{name}` is given, but was not set when this plan was made"
            ));
        }
        for (name, saved) in parameters {
            let now = given.get(name);
            match (saved, now) {
                (PlanParameter::Value(value), None) => {
                    values.insert(name.clone(), value.clone());
                }
                (PlanParameter::Value(value), Some(now)) if now == value => {
                    values.insert(name.clone(), value.clone());
                }
                (PlanParameter::Value(value), Some(now)) => problems.push(format!(
                    "parameter `{name}` is `{now}`, but this plan was made with `{value}`"
                )),
                (PlanParameter::Hash(_), None) => problems.push(format!(
                    "parameter `{name}` is sensitive, so this plan keeps only its hash: give it again (--param, --params-file or STEWARD_PARAM_{name})"
                )),
                (PlanParameter::Hash(hash), Some(now)) if parameter_hash(now) == *hash => {
                    values.insert(name.clone(), now.clone());
                }
                (PlanParameter::Hash(_), Some(_)) => problems.push(format!(
                    "sensitive parameter `{name}` is not the value this plan was made with"
                )),
            }
        }
        if problems.is_empty() {
            Ok(values)
        } else {
            Err(LocalError::StalePlan(format!(
                "this plan cannot be applied with these parameters:\n  {}",
                problems.join("\n  ")
            )))
        }
    }

    /// Refuses a plan whose documents or observed state moved since it was made: names
    /// every document that changed, or every resource that moved.
    pub fn check(&self, planned: &Planned<'_>) -> Result<(), LocalError> {
        if self.documents_digest != planned.run.digest {
            return Err(LocalError::StalePlan(self.why_stale(&planned.documents)));
        }
        let mut moved = Vec::new();
        let planned = &planned.run;
        for (node_plan, node) in planned.plan.nodes.iter().zip(&planned.nodes) {
            let saved = self.nodes.iter().find(|n| n.name == node_plan.node);
            for change in &node_plan.changes {
                let id = node.resources[change.resource].id.to_string();
                let was = saved
                    .and_then(|n| n.changes.iter().find(|c| c.id == id))
                    .map(|c| c.observed.as_str());
                if was != Some(change.fingerprint.as_str()) {
                    moved.push(format!("{}: {id}", node_plan.node));
                }
            }
        }
        if moved.is_empty() {
            Ok(())
        } else {
            Err(LocalError::StalePlan(format!(
                "the system changed since this plan was made; these resources moved:\n  {}\nrun `steward plan` again",
                moved.join("\n  ")
            )))
        }
    }

    /// Why the documents digest differs, given each document's digest now. The root and
    /// the parameters were checked before (`check_root`, `parameters`).
    fn why_stale(&self, documents: &BTreeMap<String, String>) -> String {
        let changed = engine::changed_documents(&self.documents, documents);
        if self.documents.is_empty() {
            // A plan made before plans kept each document's digest.
            "the documents (or parameters, or --root) changed since this plan was made; run `steward plan` again".to_string()
        } else if !changed.is_empty() {
            format!(
                "documents changed since this plan was made: {}; run `steward plan` again",
                changed.join(", ")
            )
        } else {
            "the documents are the plan's, but what they read changed since this plan was made (a file named by `source` or `template`, or a fact of this machine); run `steward plan` again".to_string()
        }
    }
}

/// A flag's values for a message: `none`, or each one quoted.
fn flag_values(values: &[String]) -> String {
    if values.is_empty() {
        "none".to_string()
    } else {
        values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
