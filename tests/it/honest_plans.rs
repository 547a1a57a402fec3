//! Honest plans (issue 15): what apply would refuse is found when planning and reported as
//! an error located at the resource's declaration (exit 1), for `plan` and for `apply`, and
//! `apply` then changes nothing; what the documents declare is not refused.

use crate::common::{Output, TestEnv};

/// A project `p/site.yaml` with these resources, and an empty root.
fn project(resources: &str) -> TestEnv {
    let env = TestEnv::new();
    env.write(
        "p/site.yaml",
        format!("steward: 1\nresources:\n{resources}"),
    );
    env.mkdir("root");
    env
}

fn run(env: &TestEnv, args: &[&str]) -> Output {
    let root = env.path().join("root");
    let mut all = vec!["--root", root.to_str().unwrap()];
    all.extend_from_slice(args);
    env.run(&all)
}

/// `plan` and `apply --yes` both exit 1 with an error located at `at` (`site.yaml:LINE:COL`),
/// the plan says `why`,
/// the plan promises no change for `id`, and the root stays empty.
fn refused(env: &TestEnv, id: &str, at: &str, why: &str) {
    let plan = run(env, &["plan", "p"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(plan.stderr.contains("plan::refused"), "{}", plan.all());
    assert!(plan.stderr.contains(at), "located at {at}: {}", plan.all());
    // The error names the resource (the renderer wraps its long lines); the plan's line
    // says why in full.
    let named = format!("`{id}` cannot be applied: ");
    assert!(plan.stderr.contains(&named), "{}", plan.all());
    assert!(
        plan.stdout
            .contains(&format!("x {id}: apply would refuse: {why}")),
        "{}",
        plan.all()
    );
    assert!(!plan.stdout.contains(&format!("+ {id}")), "{}", plan.all());
    assert!(
        plan.stdout.contains("1 would be refused."),
        "{}",
        plan.all()
    );

    let apply = run(env, &["apply", "p", "--yes"]);
    assert_eq!(apply.code, 1, "{}", apply.all());
    assert!(apply.stderr.contains(at), "{}", apply.all());
    assert!(apply.stderr.contains(&named), "{}", apply.all());
    assert!(apply.stdout.contains(why), "{}", apply.all());
    let left: Vec<_> = std::fs::read_dir(env.path().join("root"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "apply changed {left:?}: {}", apply.all());
}

#[test]
fn a_missing_parent_nothing_declares_is_refused_and_nothing_applies() {
    // The independent file at the top would be creatable: it is not created either.
    let env =
        project("  file:/fine:\n    content: \"ok\\n\"\n  file:/x/y/z:\n    content: \"z\\n\"\n");
    refused(
        &env,
        "file:/x/y/z",
        "site.yaml:5:3",
        "its parent directory /x/y does not exist and no resource declares it",
    );
}

#[test]
fn a_parent_declared_as_a_directory_plans_and_applies() {
    let env = project(
        "  directory:/x: {}\n  directory:/x/y: {}\n  file:/x/y/z:\n    content: \"z\\n\"\n",
    );
    let plan = run(&env, &["plan", "p", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("+ file:/x/y/z"), "{}", plan.all());
    let apply = run(&env, &["apply", "p", "--yes"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(env.read("root/x/y/z"), "z\n");
}

#[test]
fn a_declared_parent_whose_own_parent_is_missing_is_refused_itself() {
    let env = project("  directory:/x/y: {}\n  file:/x/y/z:\n    content: \"z\\n\"\n");
    refused(
        &env,
        "directory:/x/y",
        "site.yaml:3:3",
        "its parent directory /x does not exist and no resource declares it",
    );
}

#[test]
fn an_owner_that_does_not_exist_is_refused() {
    let env = project("  file:/motd:\n    content: \"hi\\n\"\n    owner: nosuchuser\n");
    refused(
        &env,
        "file:/motd",
        "site.yaml:3:3",
        "user `nosuchuser` is not in",
    );
}

#[test]
fn a_group_that_does_not_exist_is_refused() {
    let env = project("  directory:/srv:\n    group: nosuchgroup\n");
    refused(
        &env,
        "directory:/srv",
        "site.yaml:3:3",
        "group `nosuchgroup` is not in",
    );
}

#[test]
fn a_users_missing_group_is_refused() {
    let env = project("  user:alice:\n    groups: [nosuchgroup]\n");
    refused(
        &env,
        "user:alice",
        "site.yaml:3:3",
        "group `nosuchgroup` is not in",
    );
}

#[test]
fn owners_in_the_roots_accounts_declared_or_numeric_plan_fine() {
    let env = project(
        "  user:alice: {}\n  group:staff: {}\n  file:/a:\n    content: \"a\\n\"\n    owner: alice\n    group: staff\n  file:/b:\n    content: \"b\\n\"\n    owner: root\n    group: alice\n  file:/c:\n    content: \"c\\n\"\n    owner: \"4321\"\n",
    );
    env.write("root/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    env.write("root/etc/group", "root:x:0:\n");
    let plan = run(&env, &["plan", "p", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    for id in ["user:alice", "group:staff", "file:/a", "file:/b", "file:/c"] {
        assert!(
            plan.stdout.contains(&format!("+ {id}")),
            "{id}: {}",
            plan.all()
        );
    }
    assert!(!plan.stderr.contains("refused"), "{}", plan.all());
}

#[test]
fn a_package_under_root_is_refused() {
    // No dpkg database in the root: the package reads as absent, and installing it there is
    // what steward cannot do.
    let env = project("  package:hello: {}\n");
    refused(
        &env,
        "package:hello",
        "site.yaml:3:3",
        "packages cannot be installed or removed under --root",
    );
}
