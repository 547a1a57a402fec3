//! The logs of the long-running processes (issue 13, structured logs): levels, timestamps
//! and fields, human by default, JSON with `--log-format json`, filtered by `STEWARD_LOG`.

use std::time::Duration;

use crate::fleet_harness::*;

/// The controller's log, once `want` appears in it.
fn serve_log_with(fleet: &Fleet, want: &str) -> String {
    wait_for(
        &format!("`{want}` in serve.log"),
        Duration::from_secs(30),
        || {
            let log = std::fs::read_to_string(fleet.env.path().join("serve.log")).ok()?;
            log.contains(want).then_some(log)
        },
    )
}

#[test]
fn serve_logs_json_lines_with_levels_and_fields() {
    let mut fleet = Fleet::start_with(&["--log-format", "json"]);
    fleet.add_agent("web-1", "role=web");
    fleet.wait_online(&["web-1"]);
    let log = serve_log_with(&fleet, "connected from");
    let mut saw_node_field = false;
    for line in log.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"));
        assert!(
            event["timestamp"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{line}"
        );
        assert!(event["level"].is_string(), "{line}");
        assert!(event["message"].is_string(), "{line}");
        saw_node_field |= event["node"] == "web-1";
    }
    assert!(saw_node_field, "no event names the node as a field:\n{log}");
}

#[test]
fn serve_logs_human_lines_by_default() {
    let mut fleet = Fleet::start();
    fleet.add_agent("web-1", "role=web");
    fleet.wait_online(&["web-1"]);
    let log = serve_log_with(&fleet, "connected from");
    let first = log.lines().next().unwrap();
    // `2026-12-03T10:00:00.123Z  INFO steward serve: agents on ...`
    let (stamp, rest) = first.split_once(' ').unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{first}"
    );
    assert!(
        rest.trim_start()
            .starts_with("INFO steward serve: agents on "),
        "{first}"
    );
}

#[test]
fn steward_log_filters_the_log_and_a_bad_filter_is_a_usage_error() {
    let env = crate::common::TestEnv::new();
    let serve = |filter: &str, dir: &str| {
        bin()
            .args(["serve", "--data-dir"])
            .arg(env.path().join(dir))
            .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .env("STEWARD_LOG", filter)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // At `warn`, a start (an `info` line) logs nothing.
    let mut quiet = serve("warn", "quiet");
    wait_for("endpoints.json", Duration::from_secs(30), || {
        env.path()
            .join("quiet/endpoints.json")
            .exists()
            .then_some(())
    });
    let _ = quiet.kill();
    let out = quiet.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    let out = serve("bogus[", "bad").wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("STEWARD_LOG=`bogus[` is not a log filter"),
        "{stderr}"
    );
    assert!(!env.path().join("bad").exists(), "it started anyway");
}
