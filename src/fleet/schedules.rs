//! The current project's scheduled associations as the controller holds them: read from the
//! store (the project validated, as the scheduler reads it), shown (the overview of `GET
//! /v1/schedules`) and switched off and on.
//!
//! The scheduler (`serve`) and the API both read the schedules through
//! [`current_schedules`], so the associations the overview shows are the ones the scheduler
//! fires. The arithmetic and the overview itself are [`schedule`]'s, pure; this module reads
//! and writes the store around them.
//!
//! **Architecture Invariant:** a switch is written only for an association the current
//! project schedules; every other name is refused before anything is written.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use crate::fleet::controller::{Controller, ControllerError};
use crate::fleet::run;
use crate::fleet::schedule;

/// Why the schedules could not be read or switched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulesError {
    /// The controller's store could not be reached.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The store failed.
    #[error(transparent)]
    Store(crate::store::StoreError),
    /// The stored current project cannot be read back or written out to be validated.
    #[error("the current project: {0}")]
    Bundle(#[from] run::bundle::BundleError),
    /// The validation of the current project ended abnormally.
    #[error("reading the current project: {0}")]
    Validate(#[from] tokio::task::JoinError),
}

/// The scheduled associations of the current project, and the project they come from.
#[derive(Clone, Debug)]
pub struct CurrentSchedules {
    /// The project's name, as the apply that made it current recorded it.
    pub project: String,
    /// Its files, as the scheduler sends them in its runs.
    pub files: Vec<run::BundleFile>,
    /// Its associations that have a schedule, in declaration order.
    pub scheduled: Vec<schedule::Scheduled>,
}

impl CurrentSchedules {
    /// The scheduled association `name`, if the project has one.
    pub fn get(&self, name: &str) -> Option<&schedule::Scheduled> {
        self.scheduled.iter().find(|item| item.name == name)
    }
}

/// The current project's scheduled associations, as the scheduler reads them: the project
/// from the store, written under the data directory and validated (without the inventory:
/// the associations are what is wanted); `None` when no project was ever applied. Every
/// controller of a shared database reads the same ones.
pub async fn current_schedules(
    controller: &Arc<Controller>,
) -> Result<Option<CurrentSchedules>, SchedulesError> {
    let project = controller
        .store(|store| store.current_project())
        .await?
        .map_err(SchedulesError::Store)?;
    let Some(project) = project else {
        return Ok(None);
    };
    let files: Vec<run::BundleFile> = serde_json::from_str(&project.files_json)
        .map_err(|err| run::bundle::BundleError::Stored(err.to_string()))?;
    let dir = run::materialize(&controller.data_dir, &files)?;
    let registry = controller.registry.clone();
    let scheduled = tokio::task::spawn_blocking(move || {
        let validated = crate::validate::validate(
            &dir,
            &registry,
            crate::facts::local(Path::new("/")),
            BTreeMap::new(),
        );
        validated
            .model
            .associations
            .iter()
            .filter_map(|a| {
                Some(schedule::Scheduled {
                    name: a.name.clone(),
                    schedule: a.schedule.clone()?,
                    mode: a.mode,
                })
            })
            .collect::<Vec<_>>()
    })
    .await?;
    Ok(Some(CurrentSchedules {
        project: project.name,
        files,
        scheduled,
    }))
}

/// The overview of the current project's scheduled associations at this moment
/// ([`schedule::overview`]): what `GET /v1/schedules` answers. Empty when no project was
/// applied.
pub async fn schedules(
    controller: &Arc<Controller>,
) -> Result<Vec<schedule::ScheduleInfo>, SchedulesError> {
    match current_schedules(controller).await? {
        Some(current) => overview_of(controller, &current).await,
        None => Ok(Vec::new()),
    }
}

/// [`schedules`], of schedules read already.
async fn overview_of(
    controller: &Arc<Controller>,
    current: &CurrentSchedules,
) -> Result<Vec<schedule::ScheduleInfo>, SchedulesError> {
    let names: Vec<String> = current.scheduled.iter().map(|s| s.name.clone()).collect();
    let (switches, last_firings, last_runs) = controller
        .store(move |store| -> Result<_, crate::store::StoreError> {
            let switches = store.schedule_switches()?;
            let last_firings = store.last_firings()?;
            let latest = schedule::latest_runs(&store.runs()?, names.iter().map(String::as_str));
            let mut last_runs = BTreeMap::new();
            for (name, id) in latest {
                match store.run(Some(&id)) {
                    Ok(run) => {
                        last_runs.insert(name, schedule::LastRun::of(&run));
                    }
                    // Pruned since the listing: as though it were never there.
                    Err(crate::store::StoreError::NoRun(_)) => {}
                    Err(err) => return Err(err),
                }
            }
            Ok((switches, last_firings, last_runs))
        })
        .await?
        .map_err(SchedulesError::Store)?;
    Ok(schedule::overview(
        &current.scheduled,
        &switches,
        &last_firings,
        &last_runs,
        Utc::now(),
    ))
}

/// Switches the scheduled association `name` of the current project off (`enabled` false)
/// or on again, as `by`, and wakes this controller's scheduler (another controller of a
/// shared database reads the switch at its next pass, at the latest at the association's
/// next due time). Its overview entry after the switch; `None`, with nothing written, when
/// the current project has no scheduled association of that name.
pub async fn switch_schedule(
    controller: &Arc<Controller>,
    name: &str,
    enabled: bool,
    by: &str,
) -> Result<Option<schedule::ScheduleInfo>, SchedulesError> {
    let Some(current) = current_schedules(controller).await? else {
        return Ok(None);
    };
    if current.get(name).is_none() {
        return Ok(None);
    }
    {
        let (name, by) = (name.to_string(), by.to_string());
        controller
            .store(move |store| store.set_schedule_enabled(&name, enabled, &by))
            .await?
            .map_err(SchedulesError::Store)?;
    }
    controller.schedules_changed();
    let word = if enabled { "enabled" } else { "disabled" };
    tracing::info!(association = %name, "scheduled association `{name}` {word} by {by}");
    let shown = overview_of(controller, &current).await?;
    Ok(shown.into_iter().find(|info| info.name == name))
}
