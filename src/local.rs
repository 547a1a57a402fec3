//! Local mode: plan and apply on the machine steward runs on, with no server set up.
//!
//! Wires the pieces for the `local` node: probes (under `--root`), the plan, the saved-plan
//! checks, the apply lock in the state directory, and the executor.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::document::Project;
use crate::exec::{self, Env, RunReport};
use crate::model::{self, LOCAL_NODE};
use crate::plan::graph::ResourceGraph;
use crate::plan::{self, NodePlan, Plan};
use crate::resource::Registry;
use crate::validate::Validated;

/// Where and how local mode acts.
pub struct Config {
    /// `/` or `--root`.
    pub root: PathBuf,
    /// steward's state directory (`.steward/` beside the project unless moved).
    pub state_dir: PathBuf,
    /// Only nodes matching this selector (`NAME` or `KEY=VALUE`).
    pub target: Option<String>,
    /// Parameter overrides, for the documents digest.
    pub overrides: BTreeMap<String, String>,
}

/// A plan of the local node with what applying it needs.
pub struct Planned<'v> {
    /// The plan.
    pub plan: Plan,
    /// The planned nodes (same order as `plan.nodes`).
    pub nodes: Vec<&'v model::Node>,
    /// Their graphs.
    pub graphs: Vec<ResourceGraph<'v>>,
    /// Their provider environments.
    pub envs: Vec<Env>,
    /// Nodes with resources that local mode cannot reach.
    pub unreachable: Vec<String>,
    /// Digest of the documents, overrides and root.
    pub digest: String,
    /// This run's id (backups and the stored run use it).
    pub run_id: String,
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
}

/// A fresh id for a run: UTC time and process id.
pub fn run_id() -> String {
    format!(
        "{}-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        std::process::id()
    )
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
    let sources = &project.sources;
    for idx in 0..sources.len() {
        let source = sources.get(crate::diag::SourceId(idx as u32));
        // Named relative to the project, so the same project reached by another path agrees.
        let name = match &source.path {
            Some(path) => path
                .strip_prefix(&project.root)
                .unwrap_or(path)
                .display()
                .to_string(),
            None => source.name.clone(),
        };
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(&(source.text.len() as u64).to_le_bytes());
        hasher.update(source.text.as_bytes());
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

/// Whether `--target` (`NAME` or `KEY=VALUE`) selects a node.
pub(crate) fn selected(node: &model::Node, target: Option<&str>) -> bool {
    match target {
        None => true,
        Some(selector) => match selector.split_once('=') {
            Some((key, value)) => node.tags.get(key).is_some_and(|v| v == value),
            None => node.name == selector,
        },
    }
}

/// Probes the local node and plans it.
pub fn plan<'v>(
    validated: &'v Validated,
    registry: &Registry,
    config: &Config,
) -> Result<Planned<'v>, LocalError> {
    let run_id = run_id();
    let mut planned = Planned {
        plan: Plan { nodes: Vec::new() },
        nodes: Vec::new(),
        graphs: Vec::new(),
        envs: Vec::new(),
        unreachable: Vec::new(),
        digest: String::new(),
        run_id: run_id.clone(),
    };
    let mut desired = Vec::new();
    for (idx, node) in validated.model.nodes.iter().enumerate() {
        if !selected(node, config.target.as_deref()) {
            continue;
        }
        if node.name != LOCAL_NODE {
            if !node.resources.is_empty() {
                planned.unreachable.push(node.name.clone());
            }
            continue;
        }
        // The digest hashes every desired content; the graph is built and the node probed
        // meanwhile.
        let (digest, (graph, env, observed)) = rayon::join(
            || plan::desired_digest(node),
            || {
                let graph = validated.graph(idx, registry);
                let env = Env::new(
                    node,
                    registry,
                    config.root.clone(),
                    config.state_dir.clone(),
                    run_id.clone(),
                    validated.model.secrets.clone(),
                );
                let observed = exec::observe(node, registry, &env);
                (graph, env, observed)
            },
        );
        desired.push(digest);
        planned
            .plan
            .nodes
            .push(plan::build(&graph, registry, &observed));
        planned.nodes.push(node);
        planned.graphs.push(graph);
        planned.envs.push(env);
    }
    planned.digest = documents_digest(
        &validated.project,
        &config.overrides,
        &config.root,
        &desired,
    );
    if planned.nodes.is_empty()
        && let Some(target) = &config.target
    {
        return Err(LocalError::NoTarget(target.clone()));
    }
    Ok(planned)
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
    for ((graph, node_plan), env) in planned
        .graphs
        .iter()
        .zip(&planned.plan.nodes)
        .zip(&planned.envs)
    {
        let report = exec::apply(graph, registry, node_plan, env, exec_config, on_done).map_err(
            |source| LocalError::Io {
                path: config.state_dir.clone(),
                source,
            },
        )?;
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
    /// The project path as given to `plan`.
    pub project: String,
    /// The root it was planned against.
    pub root: String,
    /// Digest of documents, overrides and root.
    pub documents_digest: String,
    /// Per node, each resource's observed fingerprint.
    pub nodes: Vec<SavedNode>,
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
        Ok(Some(plan))
    }

    /// Refuses a plan whose documents or observed state moved since it was made: names
    /// every resource that moved.
    pub fn check(&self, planned: &Planned<'_>) -> Result<(), LocalError> {
        if self.documents_digest != planned.digest {
            return Err(LocalError::StalePlan(
                "the documents (or parameters, or --root) changed since this plan was made; run `steward plan` again".into(),
            ));
        }
        let mut moved = Vec::new();
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
}

/// The apply lock: an exclusive `flock` on `<state>/apply.lock`, released when dropped or when
/// the holder dies (so a stale lock from a dead process is taken over safely).
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock or says who holds it.
    pub fn acquire(state_dir: &Path) -> Result<Lock, LocalError> {
        create_private_dir(state_dir)?;
        let path = state_dir.join("apply.lock");
        let io = |source| LocalError::Io {
            path: path.clone(),
            source,
        };
        let mut file =
            std::os::unix::fs::OpenOptionsExt::mode(&mut std::fs::OpenOptions::new(), 0o600)
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LocalError::Locked(if holder.is_empty() {
                    "holder unknown".into()
                } else {
                    holder.to_string()
                }));
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(io(err)),
        }
        let user = user();
        let holder = format!(
            "pid {} ({user}) since {}",
            std::process::id(),
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(holder.as_bytes()).map_err(io)?;
        Ok(Lock { _file: file })
    }
}

/// Creates a directory readable only by its owner (state, backups and locks are private).
pub fn create_private_dir(path: &Path) -> Result<(), LocalError> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| LocalError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The nodes of a plan, for renderers.
pub fn node_plans<'a>(
    planned: &'a Planned<'_>,
) -> impl Iterator<Item = (&'a NodePlan, &'a model::Node)> {
    planned.plan.nodes.iter().zip(planned.nodes.iter().copied())
}

/// When a run started, for its record.
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Who is running steward.
pub fn user() -> String {
    let uid = nix::unistd::getuid();
    std::env::var("USER")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|user| user.name)
        })
        .unwrap_or_else(|| uid.to_string())
}

/// Where a resource is declared, as the store keeps it.
fn location(
    validated: &Validated,
    res: &model::Resource,
) -> (Option<String>, Option<u32>, Option<u32>) {
    let source = validated.project.sources.get(res.span.source);
    // A standard-library module is not a file of the user's repository.
    if source.path.is_none() {
        return (None, None, None);
    }
    let at = source.line_col(res.span.start);
    let name = source
        .name
        .strip_prefix("./")
        .unwrap_or(&source.name)
        .to_string();
    (
        Some(name),
        u32::try_from(at.line).ok(),
        u32::try_from(at.column).ok(),
    )
}

/// The severity of a resource's association (unspecified without one).
fn severity(validated: &Validated, res: &model::Resource) -> crate::store::Severity {
    res.association
        .as_ref()
        .and_then(|name| {
            validated
                .model
                .associations
                .iter()
                .find(|a| &a.name == name)
        })
        .map_or(crate::store::Severity::Unspecified, |a| {
            a.compliance_severity
        })
}

pub(crate) fn record(
    validated: &Validated,
    node: &str,
    res: &model::Resource,
    outcome: crate::store::ResultOutcome,
) -> crate::store::ResultRecord {
    let (file, line, column) = location(validated, res);
    crate::store::ResultRecord {
        node: node.to_string(),
        resource: res.id.to_string(),
        outcome,
        file,
        line,
        column,
        diff: None,
        message: None,
        duration_ms: 0,
        association: res.association.clone(),
        severity: severity(validated, res),
    }
}

fn run_record(
    kind: crate::store::RunKind,
    planned: &Planned<'_>,
    id: &str,
    started_at: &str,
    project: &str,
    results: Vec<crate::store::ResultRecord>,
) -> crate::store::RunRecord {
    crate::store::RunRecord {
        id: id.to_string(),
        kind,
        started_at: started_at.to_string(),
        finished_at: timestamp(),
        user: user(),
        project: project.to_string(),
        documents_digest: planned.digest.clone(),
        results,
        status: crate::store::RunStatus::Complete,
    }
}

/// A run from observation alone (a drift check, or an apply with nothing to do): every
/// resource whose observed state differs from its desired state drifted.
pub fn observed_record(
    kind: crate::store::RunKind,
    validated: &Validated,
    planned: &Planned<'_>,
    id: &str,
    started_at: &str,
    project: &str,
) -> crate::store::RunRecord {
    use crate::store::ResultOutcome;
    let mut results = Vec::new();
    for (node_plan, node) in node_plans(planned) {
        for change in &node_plan.changes {
            let res = &node.resources[change.resource];
            let mut result = match &change.change {
                Err(message) => {
                    let mut result = record(validated, &node_plan.node, res, ResultOutcome::Failed);
                    result.message = Some(format!("cannot read: {message}"));
                    result
                }
                Ok(diff) if diff.is_change() => {
                    let mut result =
                        record(validated, &node_plan.node, res, ResultOutcome::Drifted);
                    result.diff = Some(crate::report::plan::change_text(diff, res));
                    result
                }
                Ok(_) => record(validated, &node_plan.node, res, ResultOutcome::Unchanged),
            };
            result.message = result
                .message
                .map(|m| model::scrub(&m, &validated.model.secrets));
            results.push(result);
        }
    }
    run_record(kind, planned, id, started_at, project, results)
}

/// An apply run: each resource's outcome, with the change it made or why it failed.
pub fn apply_record(
    validated: &Validated,
    planned: &Planned<'_>,
    reports: &[RunReport],
    id: &str,
    started_at: &str,
    project: &str,
) -> crate::store::RunRecord {
    use crate::exec::Outcome;
    use crate::store::ResultOutcome;
    let mut results = Vec::new();
    for ((report, node), node_plan) in reports.iter().zip(&planned.nodes).zip(&planned.plan.nodes) {
        // Each resource's planned change by resource index: one lookup per outcome, not a
        // scan of the plan (quadratic in a cold apply of thousands of files).
        let mut changes = vec![None; node.resources.len()];
        for planned in &node_plan.changes {
            if let (Some(slot), Ok(change)) = (changes.get_mut(planned.resource), &planned.change) {
                *slot = Some(change);
            }
        }
        // Thousands of results after a large apply: built in parallel, kept in order.
        use rayon::prelude::*;
        let node_results: Vec<crate::store::ResultRecord> = report
            .outcomes
            .par_iter()
            .map(|outcome| {
                let res = &node.resources[outcome.resource];
                let change = changes.get(outcome.resource).copied().flatten();
                let (kind, diff, message) = match &outcome.outcome {
                    Outcome::Unchanged => (ResultOutcome::Unchanged, None, None),
                    Outcome::Changed { .. } | Outcome::Refreshed { .. } => (
                        ResultOutcome::Changed,
                        change.map(|c| crate::report::plan::change_summary(c, res)),
                        None,
                    ),
                    Outcome::Failed { error, output } => {
                        let tail = output
                            .as_ref()
                            .map(|o| o.stderr.trim().to_string())
                            .filter(|t| !t.is_empty());
                        let message = match tail {
                            Some(tail) => format!("{error}\n{tail}"),
                            None => error.clone(),
                        };
                        (ResultOutcome::Failed, None, Some(message))
                    }
                    Outcome::Skipped { because } => (
                        ResultOutcome::Skipped,
                        None,
                        Some(format!("skipped because {because} failed")),
                    ),
                };
                let mut result = record(validated, &report.node, res, kind);
                result.diff = diff;
                result.message = message.map(|m| model::scrub(&m, &validated.model.secrets));
                result.duration_ms =
                    u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX);
                result
            })
            .collect();
        results.extend(node_results);
    }
    run_record(
        crate::store::RunKind::Apply,
        planned,
        id,
        started_at,
        project,
        results,
    )
}
