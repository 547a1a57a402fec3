//! When an association's `schedule` is due, and what the operators' overview of the scheduled
//! associations says.
//!
//! Owns the arithmetic of [`model::Schedule`]: the next fire after a given instant, whether an
//! association is due, and how long the scheduler loop may sleep. Cron expressions are the
//! five-field kind lowering already accepted, parsed the same way (`croner`) and evaluated in
//! UTC; `rate(N unit)` fires every `seconds` after the last run. It also owns what a switch
//! ([`ScheduleSwitch`]) does to that arithmetic ([`due_firing`]), how a scheduled run is
//! recorded as its association's ([`run_user`]), and the overview built from all of it
//! ([`overview`], [`table`]), which the API, the CLI and the console show.
//!
//! **Architecture Invariant:** pure functions of their arguments. Nothing here reads the clock,
//! sleeps, reads the store, or remembers last runs: the caller passes `now`, the last firing,
//! the switches and the runs in, and records the new firing itself.
//!
//! Missed fires coalesce, as in SSM State Manager: a controller that was down for several
//! periods runs a due association once, records `now` as its last run, and the next fire is
//! counted from there.
//!
//! An association that is switched off does not fire. Switched on again, it fires at its next
//! due time after that, counted as though it had fired at each fire it missed while off: the
//! missed fires are not made up, not even as one coalesced run (SSM State Manager has no such
//! switch; this is what its associations do with `ApplyOnlyAtCronInterval`, and what a
//! re-enabled EventBridge schedule or maintenance window does: they wait for their next time).
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use steward::{fleet::schedule, model};
//!
//! let hourly = model::Schedule::Cron("0 * * * *".into());
//! let at = |h, m| Utc.with_ymd_and_hms(2025, 1, 1, h, m, 0).single().ok_or("no such time");
//! let (last_run, now) = (at(10, 15)?, at(11, 0)?);
//! assert!(schedule::due(&hourly, Some(last_run), now)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::model;
use crate::store::{ResultOutcome, RunRecord, RunStatus, RunSummary, ScheduleSwitch};

/// Why a schedule has no next fire.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The cron text does not parse (lowering should have rejected it).
    #[error("`{text}` is not a cron expression")]
    InvalidCron {
        /// The expression as written.
        text: String,
        /// What croner said.
        #[source]
        source: croner::errors::CronError,
    },
    /// The cron expression parses but croner found no time matching it after `after`.
    #[error("`{text}` never fires after {after}")]
    NoNextFire {
        /// The expression as written.
        text: String,
        /// The instant searched from.
        after: DateTime<Utc>,
        /// What croner said.
        #[source]
        source: croner::errors::CronError,
    },
    /// `after` plus the rate's interval is past the end of the calendar `chrono` can hold.
    #[error("`{text}` fires after the last representable time, counting from {after}")]
    OutOfRange {
        /// The rate as written.
        text: String,
        /// The instant counted from.
        after: DateTime<Utc>,
    },
}

/// The first time the schedule fires strictly after `after` (UTC).
///
/// Cron: standard five fields, evaluated in UTC by `croner`, at whole-second resolution (the
/// fraction of `after` is ignored, and the result is still strictly later than `after`).
/// Rate: `after + seconds`.
pub fn next_after(
    schedule: &model::Schedule,
    after: DateTime<Utc>,
) -> Result<DateTime<Utc>, ScheduleError> {
    match schedule {
        model::Schedule::Rate { seconds, text } => i64::try_from(*seconds)
            .ok()
            .and_then(TimeDelta::try_seconds)
            .and_then(|interval| after.checked_add_signed(interval))
            .ok_or_else(|| ScheduleError::OutOfRange {
                text: text.clone(),
                after,
            }),
        model::Schedule::Cron(text) => {
            // The same parse as lowering (`schema::lower`), so what validated there runs here.
            let cron =
                text.parse::<croner::Cron>()
                    .map_err(|source| ScheduleError::InvalidCron {
                        text: text.clone(),
                        source,
                    })?;
            cron.find_next_occurrence(&after, false)
                .map_err(|source| ScheduleError::NoNextFire {
                    text: text.clone(),
                    after,
                    source,
                })
        }
    }
}

/// Whether an association is due at `now` given when it last ran (`None`: never).
///
/// A never-run association is due at once (SSM applies a new association right away).
/// Otherwise it is due when `next_after(schedule, last_run) <= now`. However many fires were
/// missed, this only says "due": the caller runs once and records `now` as the last run, so
/// missed fires coalesce into one run.
pub fn due(
    schedule: &model::Schedule,
    last_run: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<bool, ScheduleError> {
    match last_run {
        None => Ok(true),
        Some(last_run) => Ok(next_after(schedule, last_run)? <= now),
    }
}

/// The firing of a schedule that is due at `now`, given the last firing claimed (`None`:
/// never): the latest fire at or before `now`, when it is later than `last`.
///
/// Every controller of a fleet computes the same instant from the same `last` and `now`s within
/// one period, so the instant names the firing: claimed once in the store, it runs once,
/// whichever controller claims it. However many fires were missed, only the latest is due:
/// missed fires coalesce into one run. A never-fired association is due at once, at the latest
/// fire before `now` (SSM applies a new association right away): for a cron schedule its
/// previous occurrence, for a rate one the latest multiple of the rate since the Unix epoch.
pub fn firing(
    schedule: &model::Schedule,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    let latest = match schedule {
        model::Schedule::Rate { seconds, text } => {
            let out_of_range = || ScheduleError::OutOfRange {
                text: text.clone(),
                after: last.unwrap_or(now),
            };
            let interval = i64::try_from(*seconds)
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(out_of_range)?;
            let anchor = last.map_or(0, |l| l.timestamp());
            let elapsed = now.timestamp() - anchor;
            if elapsed < 0 {
                return Ok(None);
            }
            let at = anchor + elapsed / interval * interval;
            DateTime::from_timestamp(at, 0).ok_or_else(out_of_range)?
        }
        model::Schedule::Cron(text) => {
            let cron =
                text.parse::<croner::Cron>()
                    .map_err(|source| ScheduleError::InvalidCron {
                        text: text.clone(),
                        source,
                    })?;
            match cron.find_previous_occurrence(&now, true) {
                Ok(at) => at,
                // No occurrence before now (a date that never came): nothing is due.
                Err(_) => return Ok(None),
            }
        }
    };
    Ok(match last {
        Some(last) if latest <= last => None,
        _ => Some(latest),
    })
}

/// How long to sleep from `now` until the earliest next fire among `items` (each a schedule
/// with its last run, `None` for never), capped at `max`.
///
/// A never-run or overdue item gives zero. An item whose next fire cannot be computed (see
/// [`ScheduleError`]) never fires, so it does not shorten the sleep; [`due`] reports its error
/// to the caller. No items: `max`.
pub fn sleep_until_next(
    items: &[(&model::Schedule, Option<DateTime<Utc>>)],
    now: DateTime<Utc>,
    max: Duration,
) -> Duration {
    items
        .iter()
        .filter_map(|(schedule, last_run)| match last_run {
            None => Some(Duration::ZERO),
            Some(last_run) => next_after(schedule, *last_run)
                .ok()
                // A fire in the past gives a negative delta, which `to_std` refuses: sleep 0.
                .map(|next| (next - now).to_std().unwrap_or(Duration::ZERO)),
        })
        .fold(max, Duration::min)
}

/// An instant as the store and the overview write it: RFC 3339 UTC with milliseconds, one
/// format for all, so instants sort as text.
pub fn instant_text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An instant the store wrote ([`instant_text`], or any RFC 3339 text); `None` when it is not
/// one.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// The firing to count the next one from: `last`, the latest firing claimed (`None`: never);
/// or, for an association switched on again at `enabled_at`, the latest fire at or before
/// `enabled_at` when that is later than `last`. The fires an association missed while it was
/// switched off thus count as fired, and it next fires at its first due time after it was
/// switched on again.
pub fn counted_from(
    schedule: &model::Schedule,
    last: Option<DateTime<Utc>>,
    enabled_at: Option<DateTime<Utc>>,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    let Some(enabled_at) = enabled_at else {
        return Ok(last);
    };
    Ok(firing(schedule, last, enabled_at)?.or(last))
}

/// The firing of an association due at `now` ([`firing`]), its switch considered: counted
/// from [`counted_from`] when it was switched on again (a switch that is on), from `last`
/// otherwise. A switched-off association has a due firing too, which the scheduler skips
/// (and logs) rather than claims; a switch whose time does not parse counts as none.
pub fn due_firing(
    schedule: &model::Schedule,
    last: Option<DateTime<Utc>>,
    switch: Option<&ScheduleSwitch>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    firing(schedule, resumes_from(schedule, last, switch)?, now)
}

/// [`counted_from`] with the switch's time: the firing an association's next one is counted
/// from, `last` unless it was switched on again since (a switch that is on). What
/// [`due_firing`] counts from, and what the scheduler's sleep ([`sleep_until_next`]) must
/// count from too, or an association switched on again would look overdue.
pub fn resumes_from(
    schedule: &model::Schedule,
    last: Option<DateTime<Utc>>,
    switch: Option<&ScheduleSwitch>,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    let enabled_at = switch
        .filter(|s| s.enabled)
        .and_then(|s| parse_instant(&s.changed_at));
    counted_from(schedule, last, enabled_at)
}

/// Who a run the scheduler started for `association` is recorded as (the `user` of the run):
/// `scheduler (ASSOCIATION)`, so its runs can be told from each other's and from hand-started
/// ones. Runs recorded before this said only `scheduler`.
pub fn run_user(association: &str) -> String {
    format!("scheduler ({association})")
}

/// Per association of `names`, the id of the newest run of `runs` (newest first, as
/// [`crate::store::Store::runs`] lists them) that the scheduler started for it ([`run_user`]).
pub fn latest_runs<'a>(
    runs: &[RunSummary],
    names: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, String> {
    let mut wanted: BTreeMap<String, String> = names
        .into_iter()
        .map(|name| (run_user(name), name.to_string()))
        .collect();
    let mut found = BTreeMap::new();
    for run in runs {
        if wanted.is_empty() {
            break;
        }
        if let Some(name) = wanted.remove(&run.user) {
            found.insert(name, run.id.clone());
        }
    }
    found
}

/// An association with a schedule, as the scheduler reads it from the current project.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// The association's name.
    pub name: String,
    /// When it fires.
    pub schedule: model::Schedule,
    /// Detect (a drift run) or enforce (an apply).
    pub mode: model::Mode,
}

/// The last run the scheduler started for an association, and how it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// The run id.
    pub id: String,
    /// `drift` (detect) or `apply` (enforce).
    pub kind: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// RFC 3339 UTC; `None` while it runs.
    pub finished_at: Option<String>,
    /// `complete`, `running` or `interrupted` (its controller stopped during it).
    pub status: String,
    /// One word for how it went ([`LastRun::of`]).
    pub outcome: String,
}

impl LastRun {
    /// The last run as `run`'s record says. Its outcome is `running` or `interrupted` until
    /// the run is complete; then the first of: `failed` (a resource failed or timed out, or a
    /// node could not be reached), `drifted`, `pending` (a drift check of a node never
    /// applied), `changed`, `unchanged` (every resource as desired), and `empty` (it had no
    /// result: no node targeted).
    pub fn of(run: &RunRecord) -> LastRun {
        let has = |outcomes: &[ResultOutcome]| {
            run.results
                .iter()
                .any(|result| outcomes.contains(&result.outcome))
        };
        let outcome = match run.status {
            RunStatus::Running => "running",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Complete if run.results.is_empty() => "empty",
            RunStatus::Complete
                if has(&[
                    ResultOutcome::Failed,
                    ResultOutcome::TimedOut,
                    ResultOutcome::Unreachable,
                ]) =>
            {
                "failed"
            }
            RunStatus::Complete if has(&[ResultOutcome::Drifted]) => "drifted",
            RunStatus::Complete if has(&[ResultOutcome::Pending]) => "pending",
            RunStatus::Complete if has(&[ResultOutcome::Changed]) => "changed",
            RunStatus::Complete => "unchanged",
        };
        LastRun {
            id: run.id.clone(),
            kind: run.kind.as_str().to_string(),
            started_at: run.started_at.clone(),
            finished_at: (run.status != RunStatus::Running && !run.finished_at.is_empty())
                .then(|| run.finished_at.clone()),
            status: run.status.as_str().to_string(),
            outcome: outcome.to_string(),
        }
    }
}

/// One scheduled association of the current project, as operators see it (`GET
/// /v1/schedules`, `steward schedules`, the console's schedules page).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// The association.
    pub name: String,
    /// `detect` or `enforce`.
    pub mode: String,
    /// The schedule as written: `rate(30 minutes)`, or a cron expression.
    pub schedule: String,
    /// False while it is switched off: it does not fire.
    pub enabled: bool,
    /// When it was last switched off or on (RFC 3339 UTC); `None` when it never was.
    pub changed_at: Option<String>,
    /// Who switched it last; `None` when nobody did.
    pub changed_by: Option<String>,
    /// The latest firing claimed (RFC 3339 UTC); `None` when it never fired.
    pub last_firing: Option<String>,
    /// When it fires next (RFC 3339 UTC): a time to come, or, when it is `due`, the firing
    /// the scheduler is about to run (it waits for another run to end, or for its next
    /// pass). `None` while it is switched off, or when the schedule cannot be evaluated.
    pub next_firing: Option<String>,
    /// Whether `next_firing` is due already.
    pub due: bool,
    /// The last run the scheduler started for it, if the store still holds one.
    pub last_run: Option<LastRun>,
    /// Why its schedule cannot be evaluated (lowering accepts only schedules that can, so
    /// this is not expected); `None` otherwise.
    pub error: Option<String>,
}

/// The overview of the scheduled associations `scheduled` (in their order) at `now`, from
/// the store's `switches`, `last_firings` (association to the latest firing claimed, as
/// [`crate::store::FleetStore::last_firings`] gives them) and the `last_runs` the scheduler
/// started (association to run). The next firing is the scheduler's own reckoning
/// ([`due_firing`], then [`next_after`]), so what is shown is what will happen.
pub fn overview(
    scheduled: &[Scheduled],
    switches: &BTreeMap<String, ScheduleSwitch>,
    last_firings: &BTreeMap<String, String>,
    last_runs: &BTreeMap<String, LastRun>,
    now: DateTime<Utc>,
) -> Vec<ScheduleInfo> {
    scheduled
        .iter()
        .map(|item| {
            let switch = switches.get(&item.name);
            let enabled = switch.is_none_or(|s| s.enabled);
            let last = last_firings.get(&item.name).and_then(|t| parse_instant(t));
            let next = if enabled {
                next_firing(&item.schedule, last, switch, now).map(Some)
            } else {
                Ok(None)
            };
            let (next_firing, error) = match next {
                Ok(next) => (next, None),
                Err(err) => (None, Some(err.to_string())),
            };
            ScheduleInfo {
                name: item.name.clone(),
                mode: match item.mode {
                    model::Mode::Detect => "detect",
                    model::Mode::Enforce => "enforce",
                }
                .to_string(),
                schedule: match &item.schedule {
                    model::Schedule::Rate { text, .. } => text.clone(),
                    model::Schedule::Cron(text) => text.clone(),
                },
                enabled,
                changed_at: switch.map(|s| s.changed_at.clone()),
                changed_by: switch.map(|s| s.changed_by.clone()),
                last_firing: last_firings.get(&item.name).cloned(),
                due: next_firing.is_some_and(|next| next <= now),
                next_firing: next_firing.map(instant_text),
                last_run: last_runs.get(&item.name).cloned(),
                error,
            }
        })
        .collect()
}

/// The next firing of a switched-on association: the one due at `now`, or the first after
/// the firing it counts from.
fn next_firing(
    schedule: &model::Schedule,
    last: Option<DateTime<Utc>>,
    switch: Option<&ScheduleSwitch>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ScheduleError> {
    let from = resumes_from(schedule, last, switch)?;
    if let Some(due) = firing(schedule, from, now)? {
        return Ok(due);
    }
    next_after(schedule, from.unwrap_or(now))
}

/// The overview as the table `steward schedules` prints; `width` bounds its lines.
pub fn table(schedules: &[ScheduleInfo], width: Option<u16>) -> String {
    use crate::report::table::{Column, Table};
    if schedules.is_empty() {
        return "No scheduled associations: the current project (the one last applied as a \
                whole through the controller) has none, or none was applied.\n"
            .to_string();
    }
    let mut table = Table::new(&[
        ("ASSOCIATION", Column::Fixed),
        ("MODE", Column::Fixed),
        ("SCHEDULE", Column::Text),
        ("STATE", Column::Fixed),
        ("LAST FIRING", Column::Fixed),
        ("NEXT FIRING", Column::Fixed),
        ("LAST RUN", Column::Fixed),
        ("OUTCOME", Column::Fixed),
    ]);
    let or_dash = |text: Option<&String>| text.cloned().unwrap_or_else(|| "-".to_string());
    for info in schedules {
        let next = match (&info.next_firing, &info.error) {
            (_, Some(_)) => "error".to_string(),
            (None, None) => "-".to_string(),
            (Some(next), None) if info.due => format!("{next} (due)"),
            (Some(next), None) => next.clone(),
        };
        table.row(vec![
            info.name.clone(),
            info.mode.clone(),
            info.schedule.clone(),
            if info.enabled { "enabled" } else { "disabled" }.to_string(),
            or_dash(info.last_firing.as_ref()),
            next,
            or_dash(info.last_run.as_ref().map(|run| &run.id)),
            or_dash(info.last_run.as_ref().map(|run| &run.outcome)),
        ]);
    }
    let mut text = table.render(width);
    for info in schedules {
        if let Some(err) = &info.error {
            text.push_str(&format!("association `{}`: {err}\n", info.name));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 14, hour, minute, second)
            .unwrap()
    }

    fn cron(text: &str) -> model::Schedule {
        model::Schedule::Cron(text.into())
    }

    fn rate(seconds: u64) -> model::Schedule {
        model::Schedule::Rate {
            seconds,
            text: format!("rate({seconds} seconds)"),
        }
    }

    #[test]
    fn next_after_cron() {
        // (schedule, after, expected next)
        let cases = [
            ("*/15 * * * *", at(10, 0, 0), at(10, 15, 0)), // strictly after: not 10:00 itself
            ("*/15 * * * *", at(10, 7, 30), at(10, 15, 0)),
            ("0 * * * *", at(10, 59, 59), at(11, 0, 0)),
            (
                "30 2 * * *",
                at(10, 0, 0),
                Utc.with_ymd_and_hms(2025, 3, 15, 2, 30, 0).unwrap(),
            ),
            // 2025-03-14 is a Friday; the next Monday is the 17th.
            (
                "0 9 * * MON",
                at(10, 0, 0),
                Utc.with_ymd_and_hms(2025, 3, 17, 9, 0, 0).unwrap(),
            ),
        ];
        for (text, after, expected) in cases {
            assert_eq!(
                next_after(&cron(text), after).unwrap(),
                expected,
                "{text} after {after}"
            );
        }
    }

    #[test]
    fn next_after_cron_ignores_the_fraction_but_stays_strictly_after() {
        let after = at(10, 15, 0) + TimeDelta::milliseconds(500);
        let next = next_after(&cron("*/15 * * * *"), after).unwrap();
        assert_eq!(next, at(10, 30, 0));
        let after = at(10, 14, 59) + TimeDelta::milliseconds(999);
        assert_eq!(
            next_after(&cron("*/15 * * * *"), after).unwrap(),
            at(10, 15, 0)
        );
    }

    #[test]
    fn next_after_rate() {
        assert_eq!(
            next_after(&rate(1800), at(10, 7, 0)).unwrap(),
            at(10, 37, 0)
        );
        assert_eq!(
            next_after(&rate(86_400), at(10, 0, 0)).unwrap(),
            at(10, 0, 0) + TimeDelta::days(1)
        );
    }

    #[test]
    fn next_after_errors() {
        let err = next_after(&cron("not a cron"), at(10, 0, 0)).unwrap_err();
        assert!(matches!(err, ScheduleError::InvalidCron { .. }), "{err:?}");
        assert_eq!(err.to_string(), "`not a cron` is not a cron expression");
        let err = next_after(&rate(u64::MAX), at(10, 0, 0)).unwrap_err();
        assert!(matches!(err, ScheduleError::OutOfRange { .. }), "{err:?}");
        let err = next_after(&rate(1), DateTime::<Utc>::MAX_UTC).unwrap_err();
        assert!(matches!(err, ScheduleError::OutOfRange { .. }), "{err:?}");
    }

    #[test]
    fn due_cases() {
        let hourly = cron("0 * * * *");
        let half_hour = rate(1800);
        // (schedule, last run, now, due)
        let cases = [
            (&hourly, None, at(10, 5, 0), true), // never run: at once
            (&half_hour, None, at(10, 5, 0), true),
            (&hourly, Some(at(10, 0, 0)), at(10, 59, 59), false),
            (&hourly, Some(at(10, 0, 0)), at(11, 0, 0), true), // exactly at the fire
            (&hourly, Some(at(10, 15, 0)), at(11, 0, 1), true),
            (&half_hour, Some(at(10, 15, 0)), at(10, 44, 59), false),
            (&half_hour, Some(at(10, 15, 0)), at(10, 45, 0), true),
        ];
        for (schedule, last_run, now, expected) in cases {
            assert_eq!(
                due(schedule, last_run, now).unwrap(),
                expected,
                "{schedule:?} last run {last_run:?} now {now}"
            );
        }
        assert!(due(&cron("bad"), Some(at(10, 0, 0)), at(11, 0, 0)).is_err());
        assert!(
            due(&cron("bad"), None, at(11, 0, 0)).unwrap(),
            "never run: due without parsing"
        );
    }

    /// The controller was down from 10:00 to 15:20 and missed five hourly fires: the scheduler,
    /// ticking every minute from then on, runs the association once, not once per miss.
    #[test]
    fn a_firing_is_the_latest_fire_before_now_and_only_once() {
        // Cron: every hour at :15.
        let hourly = cron("15 * * * *");
        assert_eq!(
            firing(&hourly, None, at(10, 20, 0)).unwrap(),
            Some(at(10, 15, 0)),
            "never fired: due at once, named by the latest occurrence"
        );
        assert_eq!(
            firing(&hourly, Some(at(10, 15, 0)), at(11, 14, 59)).unwrap(),
            None
        );
        assert_eq!(
            firing(&hourly, Some(at(10, 15, 0)), at(11, 15, 0)).unwrap(),
            Some(at(11, 15, 0))
        );
        assert_eq!(
            firing(&hourly, Some(at(7, 15, 0)), at(11, 40, 0)).unwrap(),
            Some(at(11, 15, 0)),
            "missed fires coalesce into the latest"
        );
        // Two controllers ticking at different moments of one period name one firing.
        assert_eq!(
            firing(&hourly, Some(at(9, 15, 0)), at(10, 16, 0)).unwrap(),
            firing(&hourly, Some(at(9, 15, 0)), at(10, 59, 59)).unwrap()
        );
        // Rate: every 30 minutes from the last firing.
        let half_hour = rate(1800);
        assert_eq!(
            firing(&half_hour, Some(at(10, 5, 0)), at(10, 34, 59)).unwrap(),
            None
        );
        assert_eq!(
            firing(&half_hour, Some(at(10, 5, 0)), at(11, 20, 0)).unwrap(),
            Some(at(11, 5, 0))
        );
        assert_eq!(
            firing(&half_hour, None, at(10, 44, 0)).unwrap(),
            Some(at(10, 30, 0)),
            "never fired: the latest multiple of the rate since the epoch"
        );
        assert_eq!(
            firing(&half_hour, Some(at(12, 0, 0)), at(11, 0, 0)).unwrap(),
            None,
            "a clock behind the last firing fires nothing"
        );
    }

    #[test]
    fn missed_fires_coalesce_into_one_run() {
        for schedule in [cron("0 * * * *"), rate(3600)] {
            let mut last_run = Some(at(10, 0, 0));
            let mut runs = Vec::new();
            let mut now = at(15, 20, 0);
            while now < at(16, 30, 0) {
                if due(&schedule, last_run, now).unwrap() {
                    runs.push(now);
                    last_run = Some(now);
                }
                now += TimeDelta::minutes(1);
            }
            let expected_second = match schedule {
                model::Schedule::Cron(_) => at(16, 0, 0), // back on the hour
                model::Schedule::Rate { .. } => at(16, 20, 0), // an hour after the catch-up
            };
            assert_eq!(runs, [at(15, 20, 0), expected_second], "{schedule:?}");
        }
    }

    #[test]
    fn sleep_until_next_cases() {
        let hourly = cron("0 * * * *");
        let half_hour = rate(1800);
        let bad = cron("bad");
        let max = Duration::from_secs(600);
        let now = at(10, 50, 0);
        // (items, expected)
        type Items<'a> = Vec<(&'a model::Schedule, Option<DateTime<Utc>>)>;
        let cases: [(Items, Duration); 7] = [
            (vec![], max),
            (vec![(&hourly, None)], Duration::ZERO),
            (
                vec![(&hourly, Some(at(10, 0, 0)))],
                Duration::from_secs(600),
            ),
            (
                vec![
                    (&hourly, Some(at(10, 0, 0))),
                    (&half_hour, Some(at(10, 30, 0))),
                ],
                Duration::from_secs(600),
            ),
            (
                vec![
                    (&hourly, Some(at(10, 0, 0))),
                    (&half_hour, Some(at(10, 25, 0))),
                ],
                Duration::from_secs(300),
            ),
            (vec![(&half_hour, Some(at(9, 0, 0)))], Duration::ZERO), // overdue
            (
                vec![
                    (&bad, Some(at(10, 0, 0))),
                    (&half_hour, Some(at(10, 21, 30))),
                ],
                Duration::from_secs(90),
            ),
        ];
        for (items, expected) in cases {
            assert_eq!(sleep_until_next(&items, now, max), expected, "{items:?}");
        }
        let short_max = Duration::from_secs(5);
        assert_eq!(
            sleep_until_next(&[(&hourly, Some(at(10, 0, 0)))], now, short_max),
            short_max
        );
    }

    fn switch(enabled: bool, at: DateTime<Utc>) -> ScheduleSwitch {
        ScheduleSwitch {
            enabled,
            changed_at: instant_text(at),
            changed_by: "alice".into(),
        }
    }

    /// Switched off over two fires and on again between fires: nothing is due at once, and
    /// the next fire after the switch is; a switch that is off never moves the count.
    #[test]
    fn an_association_switched_on_again_fires_at_its_next_due_time() {
        let hourly = cron("15 * * * *");
        let half_hour = rate(1800);
        // Last fired at 10:15 (10:05 for the rate), off since, on again at 12:40.
        let on_again = switch(true, at(12, 40, 0));
        assert_eq!(
            counted_from(&hourly, Some(at(10, 15, 0)), Some(at(12, 40, 0))).unwrap(),
            Some(at(12, 15, 0)),
            "the missed 11:15 and 12:15 count as fired"
        );
        assert_eq!(
            due_firing(&hourly, Some(at(10, 15, 0)), Some(&on_again), at(12, 41, 0)).unwrap(),
            None,
            "not at once"
        );
        assert_eq!(
            due_firing(&hourly, Some(at(10, 15, 0)), Some(&on_again), at(13, 15, 0)).unwrap(),
            Some(at(13, 15, 0))
        );
        // The scheduler sleeps until then (counted from its last firing it would not sleep).
        let from = resumes_from(&hourly, Some(at(10, 15, 0)), Some(&on_again)).unwrap();
        let hour = Duration::from_secs(3600);
        assert_eq!(
            sleep_until_next(&[(&hourly, from)], at(12, 41, 0), hour),
            Duration::from_secs(34 * 60)
        );
        // The rate keeps its cadence from the last firing: 10:05, (10:35 ... 12:35 missed).
        assert_eq!(
            due_firing(
                &half_hour,
                Some(at(10, 5, 0)),
                Some(&on_again),
                at(13, 4, 59)
            )
            .unwrap(),
            None
        );
        assert_eq!(
            due_firing(
                &half_hour,
                Some(at(10, 5, 0)),
                Some(&on_again),
                at(13, 5, 0)
            )
            .unwrap(),
            Some(at(13, 5, 0))
        );
        // Without the switch, the missed fires coalesce into one at once.
        assert_eq!(
            due_firing(&hourly, Some(at(10, 15, 0)), None, at(12, 41, 0)).unwrap(),
            Some(at(12, 15, 0))
        );
        // Off and on again within one period changes nothing.
        let blink = switch(true, at(10, 30, 0));
        assert_eq!(
            due_firing(&hourly, Some(at(10, 15, 0)), Some(&blink), at(11, 15, 0)).unwrap(),
            Some(at(11, 15, 0))
        );
        // A switch that is off: the due firing is computed as without one (to be skipped).
        let off = switch(false, at(12, 40, 0));
        assert_eq!(
            due_firing(&hourly, Some(at(10, 15, 0)), Some(&off), at(12, 41, 0)).unwrap(),
            Some(at(12, 15, 0))
        );
        // Never fired, switched on again: it waits for its next fire too.
        assert_eq!(
            due_firing(&hourly, None, Some(&on_again), at(12, 50, 0)).unwrap(),
            None
        );
        assert_eq!(
            due_firing(&hourly, None, None, at(12, 50, 0)).unwrap(),
            Some(at(12, 15, 0))
        );
    }

    fn summary(id: &str, user: &str) -> RunSummary {
        RunSummary {
            id: id.into(),
            kind: crate::store::RunKind::Drift,
            started_at: String::new(),
            user: user.into(),
            counts: [0; 5],
        }
    }

    #[test]
    fn the_latest_run_of_each_association_is_the_newest_it_started() {
        let runs = [
            summary("05", "admin token"),
            summary("04", &run_user("web")),
            summary("03", "scheduler"),
            summary("02", &run_user("db")),
            summary("01", &run_user("web")),
        ];
        let latest = latest_runs(&runs, ["web", "db", "mq", "scheduler"]);
        assert_eq!(
            latest.into_iter().collect::<Vec<_>>(),
            [
                ("db".to_string(), "02".to_string()),
                ("web".to_string(), "04".to_string())
            ]
        );
    }

    fn record(status: RunStatus, outcomes: &[ResultOutcome]) -> RunRecord {
        RunRecord {
            id: "r1".into(),
            kind: crate::store::RunKind::Drift,
            started_at: "2025-03-14T10:00:00.000Z".into(),
            finished_at: if status == RunStatus::Running {
                String::new()
            } else {
                "2025-03-14T10:00:05.000Z".into()
            },
            user: run_user("web"),
            project: "p".into(),
            documents_digest: "d".into(),
            results: outcomes
                .iter()
                .map(|outcome| crate::store::ResultRecord {
                    node: "web-1".into(),
                    resource: "file:/a".into(),
                    outcome: *outcome,
                    file: None,
                    line: None,
                    column: None,
                    diff: None,
                    change: None,
                    message: None,
                    duration_ms: 0,
                    association: Some("web".into()),
                    severity: crate::store::Severity::Unspecified,
                })
                .collect(),
            status,
        }
    }

    #[test]
    fn a_last_runs_outcome_is_its_worst_result() {
        use ResultOutcome::*;
        let cases: [(RunStatus, &[ResultOutcome], &str); 9] = [
            (RunStatus::Running, &[Failed], "running"),
            (RunStatus::Interrupted, &[Unchanged], "interrupted"),
            (RunStatus::Complete, &[], "empty"),
            (RunStatus::Complete, &[Drifted, Unreachable], "failed"),
            (RunStatus::Complete, &[Changed, TimedOut], "failed"),
            (RunStatus::Complete, &[Pending, Drifted], "drifted"),
            (RunStatus::Complete, &[Unchanged, Pending], "pending"),
            (RunStatus::Complete, &[Unchanged, Changed], "changed"),
            (RunStatus::Complete, &[Unchanged, Skipped], "unchanged"),
        ];
        for (status, outcomes, expected) in cases {
            let last = LastRun::of(&record(status, outcomes));
            assert_eq!(last.outcome, expected, "{status:?} {outcomes:?}");
            assert_eq!(last.status, status.as_str());
            assert_eq!(last.finished_at.is_none(), status == RunStatus::Running);
        }
    }

    #[test]
    fn the_overview_shows_what_the_scheduler_will_do() {
        let scheduled = [
            Scheduled {
                name: "watch".into(),
                schedule: rate(1800),
                mode: model::Mode::Detect,
            },
            Scheduled {
                name: "fix".into(),
                schedule: cron("15 * * * *"),
                mode: model::Mode::Enforce,
            },
            Scheduled {
                name: "new".into(),
                schedule: cron("15 * * * *"),
                mode: model::Mode::Detect,
            },
            Scheduled {
                name: "back".into(),
                schedule: cron("15 * * * *"),
                mode: model::Mode::Detect,
            },
        ];
        let switches = BTreeMap::from([
            ("fix".to_string(), switch(false, at(10, 20, 0))),
            ("back".to_string(), switch(true, at(10, 50, 0))),
        ]);
        let last_firings = BTreeMap::from([
            ("watch".to_string(), instant_text(at(10, 30, 0))),
            ("fix".to_string(), instant_text(at(10, 15, 0))),
            ("back".to_string(), instant_text(at(9, 15, 0))),
        ]);
        let last = LastRun::of(&record(RunStatus::Complete, &[ResultOutcome::Drifted]));
        let last_runs = BTreeMap::from([("watch".to_string(), last.clone())]);
        let shown = overview(
            &scheduled,
            &switches,
            &last_firings,
            &last_runs,
            at(10, 55, 0),
        );
        let brief: Vec<(&str, bool, Option<&str>, bool)> = shown
            .iter()
            .map(|i| (i.name.as_str(), i.enabled, i.next_firing.as_deref(), i.due))
            .collect();
        assert_eq!(
            brief,
            [
                ("watch", true, Some("2025-03-14T11:00:00.000Z"), false),
                ("fix", false, None, false),
                ("new", true, Some("2025-03-14T10:15:00.000Z"), true),
                // Missed 10:15 while off: it waits for 11:15.
                ("back", true, Some("2025-03-14T11:15:00.000Z"), false),
            ]
        );
        assert_eq!(shown[0].mode, "detect");
        assert_eq!(shown[0].schedule, "rate(1800 seconds)");
        assert_eq!(shown[0].last_run, Some(last));
        assert_eq!(shown[1].mode, "enforce");
        assert_eq!(shown[1].changed_by.as_deref(), Some("alice"));
        assert_eq!(
            shown[1].last_firing.as_deref(),
            Some("2025-03-14T10:15:00.000Z")
        );
        assert_eq!(shown[2].last_firing, None);
        assert_eq!(shown[2].changed_at, None);

        let text = table(&shown, None);
        assert!(text.starts_with("ASSOCIATION"), "{text}");
        let row = |name: &str| {
            text.lines()
                .find(|line| line.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name}: {text}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            row("watch"),
            [
                "watch",
                "detect",
                "rate(1800",
                "seconds)",
                "enabled",
                "2025-03-14T10:30:00.000Z",
                "2025-03-14T11:00:00.000Z",
                "r1",
                "drifted"
            ]
        );
        // A cron expression is five words.
        assert_eq!(
            row("fix")[7..],
            ["disabled", "2025-03-14T10:15:00.000Z", "-", "-", "-"]
        );
        assert_eq!(
            row("new")[7..],
            [
                "enabled",
                "-",
                "2025-03-14T10:15:00.000Z",
                "(due)",
                "-",
                "-"
            ]
        );
        assert!(table(&[], None).starts_with("No scheduled associations"));
    }
}
