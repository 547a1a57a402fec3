//! Integration tests: all compile into one binary (one link step for the whole suite).
//!
//! Each test drives the real `steward` binary in a temporary directory.

mod api_json;
mod api_roles;
mod audit;
mod browser;
mod common;
mod console;
mod crash;
mod cron;
mod docs_help;
mod drift;
mod facts;
mod flags;
mod fleet;
mod fleet_database;
mod fleet_failover;
mod fleet_faults;
mod fleet_findings;
mod fleet_harness;
mod fleet_mode;
mod fleet_refusals;
mod fleet_schedules;
mod fleet_shared;
mod front_door;
mod front_door_kdl;
mod fuzz;
mod graph;
mod honest_plans;
mod import;
mod json_everywhere;
mod kdl_spec;
mod layering;
mod logging;
mod params;
mod pg;
mod plan_apply;
mod reports;
mod root_race;
mod sarif;
mod saved_plans;
mod schema;
mod schema_parity;
mod store;
mod store_conformance;
mod system_providers;
mod targeting;
mod trust_api;
mod trust_controller;
mod trust_durability;
mod trust_enroll;
mod trust_secrets;
mod twin;
mod validate;

/// Every file in tests/it is listed above, so no test file is forgotten.
#[test]
fn no_forgotten_test_files() {
    let listed = include_str!("main.rs");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(module) = name.strip_suffix(".rs") else {
            continue;
        };
        if module != "main" {
            assert!(
                listed.contains(&format!("mod {module};")),
                "tests/it/{name} is not listed in main.rs"
            );
        }
    }
}
