//! Scheduled associations that operators see and switch off and on (issue 17): `steward
//! schedules`, `steward schedules disable|enable NAME`, and the scheduler obeying the switch,
//! through a real controller and agent. The PostgreSQL case (a switch made through one
//! controller obeyed by another) is in fleet_database.rs, whose ignored tests `.ci/run` runs
//! with a server.
//!
//! A disabled association's skipped firing is proven by the firing of another association of
//! the same schedule, declared after it, which the scheduler decides in the same pass: no
//! sleeping and hoping.

use std::time::Duration;

use crate::fleet_harness::*;

/// Writes a project of two associations of one rate on the `role=web` nodes into `dir`,
/// each with a document of its own (one document may not reach a node twice): `paused`
/// first, so each pass of the scheduler decides it before `watch`, whose firings fall on the
/// same instants (both first fire at once, at the latest whole minute, and every minute
/// after). A scheduled run checks the whole catalog of its nodes: a change to `/motd` is
/// drift for both.
pub(crate) fn write_two_schedules(env: &crate::common::TestEnv, dir: &str) {
    let association = |name: &str| {
        format!(
            "  {name}:\n    targets: {{ tags: {{ role: web }} }}\n    documents: [{name}.yaml]\n    \
             schedule: rate(1 minute)\n    mode: detect\n"
        )
    };
    env.write(
        &format!("{dir}/site.yaml"),
        format!(
            "steward: 1\nassociations:\n{}{}",
            association("paused"),
            association("watch")
        ),
    );
    env.write(
        &format!("{dir}/paused.yaml"),
        "steward: 1\nresources:\n  file:/paused:\n    content: \"paused\\n\"\n",
    );
    env.write(
        &format!("{dir}/watch.yaml"),
        "steward: 1\nresources:\n  file:/motd:\n    content: \"scheduled\\n\"\n",
    );
}

/// The runs the scheduler started for `association`, newest first, as `runs --format json`
/// lists them.
pub(crate) fn scheduled_runs(fleet: &Fleet, association: &str) -> Vec<serde_json::Value> {
    let out = fleet.cli(&["runs", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let runs: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let user = format!("scheduler ({association})");
    runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|run| run["user"] == user.as_str())
        .cloned()
        .collect()
}

/// `steward schedules --format json`: the object printed.
pub(crate) fn schedules_json(fleet: &Fleet) -> serde_json::Value {
    let out = fleet.cli(&["schedules", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["kind"], "steward-schedules", "{answer}");
    answer
}

/// The association `name` in `steward schedules --format json`.
pub(crate) fn schedule_of(fleet: &Fleet, name: &str) -> serde_json::Value {
    let answer = schedules_json(fleet);
    answer["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no `{name}` in {answer}"))
        .clone()
}

/// Waits until `association` has `n` scheduled runs and the last one is complete.
pub(crate) fn wait_for_runs(fleet: &Fleet, association: &str, n: usize) {
    wait_for(
        &format!("{n} complete run(s) of `{association}`"),
        Duration::from_secs(150),
        || {
            let complete = schedule_of(fleet, association)["last_run"]["status"] == "complete";
            let done = scheduled_runs(fleet, association).len() == n && complete;
            if !done {
                std::thread::sleep(Duration::from_millis(400));
            }
            done.then_some(())
        },
    );
}

/// Waits for a quiet moment between two firings of [`write_two_schedules`], whose firings fall on
/// whole minutes: the clock 5 to 40 seconds past a minute, and every association of `names`
/// fired at that minute with its run over. A switch made then is at least 20 seconds from the
/// next firing, and no pass of the scheduler is under way. That minute's firing.
pub(crate) fn between_firings(fleet: &Fleet, names: &[&str]) -> String {
    wait_for(
        &format!("{names:?} fired this minute, with time to spare"),
        Duration::from_secs(150),
        || {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            if !(5..40).contains(&(now % 60)) {
                return None;
            }
            let minute = chrono::DateTime::from_timestamp(i64::try_from(now / 60 * 60).unwrap(), 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let settled = names.iter().all(|name| {
                let shown = schedule_of(fleet, name);
                shown["last_firing"] == minute.as_str()
                    && shown["last_run"]["status"] == "complete"
                    && shown["last_run"]["started_at"].as_str() >= Some(minute.as_str())
            });
            if !settled {
                std::thread::sleep(Duration::from_millis(400));
            }
            settled.then_some(minute)
        },
    )
}

/// The whole minute after the instant `text` (RFC 3339), as the scheduler writes instants.
pub(crate) fn next_minute_after(text: &str) -> String {
    let at = chrono::DateTime::parse_from_rfc3339(text).unwrap();
    let next = (at.timestamp() / 60 + 1) * 60;
    chrono::DateTime::from_timestamp(next, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `steward schedules disable|enable NAME --format json`: the association's state after it.
pub(crate) fn switch(fleet: &Fleet, action: &str, name: &str) -> serde_json::Value {
    let out = fleet.cli(&["schedules", action, name, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.all());
    let answer: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(answer["kind"], "steward-schedule", "{answer}");
    answer["schedule"].clone()
}

/// A disabled association is skipped at a firing where another association of the same
/// schedule fires (the scheduler logs the skip, naming that firing), and the listing shows it
/// off with no next firing; enabled again, it fires at its next due time, not at once for the
/// firing it missed. The listing shows each one's next and last firing and its last run's
/// outcome.
#[test]
fn a_disabled_association_is_skipped_while_another_fires_and_enabled_again_waits_its_turn() {
    let fleet = Fleet::with_agents(&[("web-1", "role=web")]);

    // Before any project is applied nothing is scheduled, and there is nothing to switch.
    let none = fleet.cli(&["schedules"]);
    assert_eq!(none.code, 0, "{}", none.all());
    assert!(
        none.stdout.starts_with("No scheduled associations"),
        "{}",
        none.all()
    );
    let missing = fleet.cli(&["schedules", "disable", "paused"]);
    assert_eq!(missing.code, 1, "{}", missing.all());
    assert!(
        missing
            .stderr
            .contains("the current project has no scheduled association `paused`"),
        "{}",
        missing.all()
    );

    // Applied as a whole, the project is current: both never-fired associations fire at once,
    // and every minute after.
    write_two_schedules(&fleet.env, "project");
    let applied = fleet.cli(&["apply", "project", "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.all(), fleet.logs());
    wait_for_runs(&fleet, "paused", 1);
    wait_for_runs(&fleet, "watch", 1);
    // Someone changes the node by hand: the next drift checks find it drifted.
    std::fs::write(fleet.root("web-1").join("motd"), "changed by hand\n").unwrap();

    let fired = between_firings(&fleet, &["paused", "watch"]);
    let (n_paused, n_watch) = (
        scheduled_runs(&fleet, "paused").len(),
        scheduled_runs(&fleet, "watch").len(),
    );
    let off = fleet.cli(&["schedules", "disable", "paused"]);
    assert_eq!(off.code, 0, "{}", off.all());
    assert!(
        off.stdout
            .starts_with("scheduled association `paused` is disabled (since ")
            && off
                .stdout
                .contains(", by admin token): it does not fire until it is enabled again"),
        "{}",
        off.all()
    );
    // Disabled again: the switch keeps who turned it and when.
    let again = switch(&fleet, "disable", "paused");
    assert_eq!(again["enabled"], false, "{again}");
    assert_eq!(again["changed_by"], "admin token", "{again}");
    assert!(
        off.stdout.contains(again["changed_at"].as_str().unwrap()),
        "{again} vs {}",
        off.stdout
    );
    assert_eq!(again["next_firing"], serde_json::Value::Null, "{again}");

    // `watch` fires at the next minute; `paused`, due at the same instant and decided first
    // in the same pass, is skipped, and the log says so once.
    wait_for_runs(&fleet, "watch", n_watch + 1);
    assert_eq!(
        scheduled_runs(&fleet, "paused").len(),
        n_paused,
        "{}",
        fleet.logs()
    );
    let watch = schedule_of(&fleet, "watch");
    let skipped = next_minute_after(&fired);
    assert_eq!(watch["last_firing"], skipped.as_str(), "{watch}");
    let logs = fleet.logs();
    assert!(
        logs.contains(&format!(
            "scheduled association `paused` is disabled: its firing due at {skipped} is skipped"
        )),
        "{logs}"
    );
    assert_eq!(
        logs.matches("scheduled association `paused` is disabled: its firing due at")
            .count(),
        1,
        "logged once per firing: {logs}"
    );
    // The listing: `watch` on, its last run drifted, its next firing a minute after its last.
    assert_eq!(watch["enabled"], true, "{watch}");
    assert_eq!(watch["mode"], "detect", "{watch}");
    assert_eq!(watch["schedule"], "rate(1 minute)", "{watch}");
    assert_eq!(watch["changed_by"], serde_json::Value::Null, "{watch}");
    assert_eq!(watch["last_run"]["outcome"], "drifted", "{watch}");
    assert_eq!(watch["last_run"]["kind"], "drift", "{watch}");
    assert_eq!(
        watch["last_run"]["id"],
        scheduled_runs(&fleet, "watch")[0]["id"],
        "{watch}"
    );
    assert_eq!(watch["next_firing"], next_minute_after(&skipped), "{watch}");
    // `paused` off, with no next firing; its last firing is the one before the switch.
    let paused = schedule_of(&fleet, "paused");
    assert_eq!(paused["enabled"], false, "{paused}");
    assert_eq!(paused["next_firing"], serde_json::Value::Null, "{paused}");
    assert_eq!(paused["last_firing"], fired.as_str(), "{paused}");
    assert_eq!(
        paused["last_run"]["id"],
        scheduled_runs(&fleet, "paused")[0]["id"],
        "{paused}"
    );
    let table = fleet.cli(&["schedules"]);
    assert_eq!(table.code, 0, "{}", table.all());
    // ASSOCIATION MODE SCHEDULE (two words) STATE LAST-FIRING NEXT-FIRING LAST-RUN OUTCOME
    let row = |name: &str| -> Vec<String> {
        table
            .stdout
            .lines()
            .find(|line| line.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {}", table.stdout))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(
        row("paused")[4..7],
        ["disabled", &fired, "-"],
        "{}",
        table.stdout
    );
    assert_eq!(row("watch")[4], "enabled", "{}", table.stdout);
    assert_eq!(row("watch")[8], "drifted", "{}", table.stdout);

    // Enabled again between firings: not at once for the firing it missed, but at its next
    // due time, the whole minute after it was enabled.
    between_firings(&fleet, &["watch"]);
    let n_paused = scheduled_runs(&fleet, "paused").len();
    let on = switch(&fleet, "enable", "paused");
    assert_eq!(on["enabled"], true, "{on}");
    assert_eq!(on["due"], false, "{on}");
    let next = next_minute_after(on["changed_at"].as_str().unwrap());
    assert_eq!(on["next_firing"], next.as_str(), "{on}");
    wait_for_runs(&fleet, "paused", n_paused + 1);
    let paused = schedule_of(&fleet, "paused");
    assert_eq!(paused["last_firing"], next.as_str(), "{paused}");
    assert_eq!(paused["last_run"]["outcome"], "drifted", "{paused}");
    let started = scheduled_runs(&fleet, "paused")[0]["started_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(started >= next, "{started} before {next}");
}
