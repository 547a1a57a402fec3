//! YAML and KDL are two spellings of one model: the quickstart and its KDL twin load the same.

use steward::model::Facts;
use steward::resource::Registry;

fn facts() -> Facts {
    Facts {
        hostname: "twin".into(),
        os_family: "debian".into(),
        os_release: "12".into(),
        arch: "x86_64".into(),
        addresses: Vec::new(),
        ..Facts::default()
    }
}

fn canonical(path: &str) -> String {
    let registry = Registry::builtin();
    let dir = crate::common::repo().join(path);
    let validated = steward::validate::validate(&dir, &registry, facts(), Default::default());
    assert!(
        !validated.has_errors(),
        "{path}: {:?}",
        validated.diagnostics
    );
    validated.model.canonical_text()
}

#[test]
fn quickstart_yaml_and_kdl_load_to_the_same_model() {
    let yaml = canonical("examples/quickstart");
    let kdl = canonical("examples/quickstart-kdl");
    assert_eq!(yaml, kdl);
    // The comparison means something: both hold every resource of the quickstart.
    assert!(yaml.contains("file:/srv/app/admins/bob"), "{yaml}");
    assert!(yaml.contains("subscribe file:/srv/app/app.conf"), "{yaml}");
    insta::assert_snapshot!(yaml);
}
