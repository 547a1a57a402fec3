//! The checked-in JSON Schema is the generated one.

use crate::common::{repo, run_in};

#[test]
fn checked_in_schema_is_current() {
    let generated = steward::schema::json::render(&steward::resource::Registry::builtin());
    let path = repo().join("schema/steward.schema.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if std::env::var_os("STEWARD_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    assert!(
        checked_in == generated,
        "schema/steward.schema.json is stale: run `cargo run -- schema > schema/steward.schema.json`"
    );
    let out = run_in(repo(), &["schema"]);
    assert_eq!(out.stdout, generated);
}

#[test]
fn examples_carry_the_schema_line() {
    for example in ["examples/quickstart/site.yaml", "examples/fleet/site.yaml"] {
        let text = std::fs::read_to_string(repo().join(example)).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../../schema/steward.schema.json"),
            "{example}"
        );
    }
}

#[test]
fn schema_is_a_valid_draft_2020_12_schema() {
    let schema = steward::schema::json::schema(&steward::resource::Registry::builtin());
    if let Err(error) = jsonschema::meta::validate(&schema) {
        panic!("the schema breaks the meta-schema: {error}");
    }
    assert!(jsonschema::draft202012::new(&schema).is_ok());
}
