//! When an association's `schedule` is due.
//!
//! Owns the arithmetic of [`model::Schedule`]: the next fire after a given instant, whether an
//! association is due, and how long the scheduler loop may sleep. Cron expressions are the
//! five-field kind lowering already accepted, parsed the same way (`croner`) and evaluated in
//! UTC; `rate(N unit)` fires every `seconds` after the last run.
//!
//! **Architecture Invariant:** pure functions of their arguments. Nothing here reads the clock,
//! sleeps, or remembers last runs: the caller passes `now` and the last run in, and records the
//! new last run itself.
//!
//! Missed fires coalesce, as in SSM State Manager: a controller that was down for several
//! periods runs a due association once, records `now` as its last run, and the next fire is
//! counted from there.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use steward::{fleet::schedule, model};
//!
//! let hourly = model::Schedule::Cron("0 * * * *".into());
//! let last_run = Utc.with_ymd_and_hms(2025, 1, 1, 10, 15, 0).unwrap();
//! let now = Utc.with_ymd_and_hms(2025, 1, 1, 11, 0, 0).unwrap();
//! assert!(schedule::due(&hourly, Some(last_run), now).unwrap());
//! ```

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::model;

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
}
