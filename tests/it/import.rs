//! `steward import`: live state under --root becomes a document that plans no change.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{Output, TestEnv};

/// A root with accounts, a directory, a file (with template syntax in it) and a symlink.
fn machine() -> TestEnv {
    let root = TestEnv::new();
    root.write(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n",
    );
    root.write(
        "etc/group",
        "root:x:0:\nalice:x:1000:\nadm:x:4:alice\nstaff:x:50:alice\n",
    );
    let motd = root.write("srv/app/motd", "hello {{ name }} {% raw %}\n\n  indented\n");
    std::fs::set_permissions(&motd, std::fs::Permissions::from_mode(0o640)).unwrap();
    root.write("srv/app/one-line", "no newline at the end");
    std::os::unix::fs::symlink("/srv/app/motd", root.path().join("srv/current")).unwrap();
    root
}

const RESOURCES: &[&str] = &[
    "file:/srv/app/motd",
    "file:/srv/app/one-line",
    "directory:/srv/app",
    "symlink:/srv/current",
    "user:alice",
    "group:adm",
    "file:/srv/gone",
    "directory:/srv/gone",
    "user:nobody-here",
    "group:nobody-here",
    "package:hello",
    "service:stw-none.service",
];

fn import(root: &Path, format: &str, resources: &[&str]) -> Output {
    let mut args = vec![
        "import",
        "--root",
        root.to_str().unwrap(),
        "--format",
        format,
    ];
    args.extend(resources);
    crate::common::run_in(root, &args)
}

/// Writes `document` as a project, checks it validates, and plans it against `root`.
fn plan_of(document: &str, file: &str, root: &Path) -> Output {
    let project = TestEnv::new();
    project.write(file, document);
    let valid = project.run(&["validate", "."]);
    assert_eq!(valid.code, 0, "{}\n{document}", valid.all());
    project.run(&[
        "plan",
        ".",
        "--root",
        root.to_str().unwrap(),
        "--detailed-exitcode",
    ])
}

#[test]
fn yaml_round_trips_with_no_change() {
    let root = machine();
    let out = import(root.path(), "yaml", RESOURCES);
    assert_eq!(out.code, 0, "{}", out.all());
    for expected in [
        "\"file:/srv/app/motd\":\n    content: |\n      hello {{ \"{{\" }} name }} {{ \"{%\" }} raw %}\n",
        "    mode: \"0640\"\n",
        "\"symlink:/srv/current\":\n    target: \"/srv/app/motd\"\n",
        "    uid: 1000\n    group: \"alice\"\n    groups: [\"adm\", \"staff\"]\n",
        "\"group:adm\":\n    gid: 4\n",
        "\"file:/srv/gone\":\n    ensure: \"absent\"\n",
        "\"user:nobody-here\":\n    ensure: \"absent\"\n",
        "\"package:hello\":\n    ensure: \"absent\"\n",
        "\"service:stw-none.service\":\n    enable: false\n",
    ] {
        assert!(out.stdout.contains(expected), "{expected}\n{}", out.all());
    }
    let plan = plan_of(&out.stdout, "site.yaml", root.path());
    assert_eq!(plan.code, 0, "{}\n{}", plan.all(), out.stdout);
    assert!(plan.stdout.contains("No changes"), "{}", plan.all());
}

#[test]
fn kdl_round_trips_with_no_change() {
    let root = machine();
    let out = import(root.path(), "kdl", RESOURCES);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(out.stdout.starts_with("// Imported"), "{}", out.all());
    assert!(
        out.stdout
            .contains("file \"/srv/app/motd\" {\n    content \"hello {{ \\\"{{\\\" }} name }}"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout.contains("groups \"adm\" \"staff\"\n"),
        "{}",
        out.all()
    );
    let plan = plan_of(&out.stdout, "site.kdl", root.path());
    assert_eq!(plan.code, 0, "{}\n{}", plan.all(), out.stdout);
}

/// After the state changes, the imported document plans the change back.
#[test]
fn the_document_declares_what_was_imported() {
    let root = machine();
    let out = import(
        root.path(),
        "yaml",
        &["file:/srv/app/motd", "symlink:/srv/current"],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    root.write("srv/app/motd", "changed\n");
    let plan = plan_of(&out.stdout, "site.yaml", root.path());
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("file:/srv/app/motd"), "{}", plan.all());
}

#[test]
fn binary_content_is_refused() {
    let root = machine();
    root.write("srv/app/logo.png", [0x89, b'P', b'N', b'G', 0xff, 0x00]);
    let out = import(
        root.path(),
        "yaml",
        &["file:/srv/app/motd", "file:/srv/app/logo.png"],
    );
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(out.stdout, "", "nothing is printed when one fails");
    assert!(
        out.stderr.contains(
            "error: `file:/srv/app/logo.png` cannot be imported: its `content` is binary"
        ),
        "{}",
        out.all()
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let root = machine();
    std::fs::create_dir(root.path().join("srv/empty")).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["motd"], "`motd` is not TYPE:NAME"),
        (
            &["fil:/x"],
            "unknown resource type `fil` (known: file, directory",
        ),
        (
            &["file:etc/motd"],
            "`file:etc/motd`: `etc/motd` is not an absolute path",
        ),
        (&["user:Alice"], "`Alice` is not a valid user or group name"),
        (
            &["file:/srv/empty"],
            "`file:/srv/empty` cannot be imported: a directory is at that path, not a file",
        ),
        (
            &["file:/srv/app"],
            "a directory that is not empty is in the way",
        ),
        (
            &["directory:/srv/app/motd"],
            "a file is at that path, not a directory",
        ),
        (&["exec:reload"], "`exec` resources cannot be imported"),
        (
            &["line:/srv/app/motd"],
            "`line` resources cannot be imported",
        ),
    ];
    for (resources, message) in cases {
        let out = import(root.path(), "yaml", resources);
        assert_eq!(out.code, 1, "{resources:?}\n{}", out.all());
        assert!(out.stderr.contains(message), "{resources:?}\n{}", out.all());
        assert!(!out.stderr.contains("panicked"), "{}", out.all());
    }
    let none = crate::common::run_in(root.path(), &["import"]);
    assert_eq!(none.code, 1, "{}", none.all());
    let format = import(root.path(), "toml", &["file:/srv/app/motd"]);
    assert_eq!(format.code, 1, "{}", format.all());
}

/// What the opt-in Debian tests lack here, if anything.
fn missing_debian_tools() -> Option<String> {
    let missing: Vec<_> = ["dpkg-query", "systemctl"]
        .into_iter()
        .filter(|program| {
            !std::process::Command::new(program)
                .arg("--version")
                .output()
                .is_ok_and(|out| out.status.success())
        })
        .collect();
    (!missing.is_empty()).then(|| format!("{} not installed", missing.join(" and ")))
}

#[test]
#[ignore = "needs Debian's dpkg-query and systemctl (STEWARD_TEST_DEBIAN=1)"]
fn package_and_service_round_trip_under_root() {
    crate::system_providers::opt_in("STEWARD_TEST_DEBIAN", missing_debian_tools());
    let root = machine();
    root.write(
        "var/lib/dpkg/status",
        "Package: foo\nStatus: install ok installed\nMaintainer: Nobody <nobody@example.com>\n\
         Architecture: all\nVersion: 1.2-3\nDescription: an installed package\n",
    );
    root.write(
        "usr/lib/systemd/system/stw-test.service",
        "[Unit]\nDescription=steward test\n[Service]\nExecStart=/bin/true\n\
         [Install]\nWantedBy=multi-user.target\n",
    );
    let wants = root
        .path()
        .join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/usr/lib/systemd/system/stw-test.service",
        wants.join("stw-test.service"),
    )
    .unwrap();
    let resources = ["package:foo", "package:hello", "service:stw-test.service"];
    let out = import(root.path(), "yaml", &resources);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout
            .contains("\"package:foo\":\n    ensure: \"1.2-3\"\n"),
        "{}",
        out.all()
    );
    assert!(
        out.stdout
            .contains("\"service:stw-test.service\":\n    enable: true\n"),
        "{}",
        out.all()
    );
    let plan = plan_of(&out.stdout, "site.yaml", root.path());
    assert_eq!(plan.code, 0, "{}\n{}", plan.all(), out.stdout);
    let out = import(root.path(), "kdl", &resources);
    let plan = plan_of(&out.stdout, "site.kdl", root.path());
    assert_eq!(plan.code, 0, "{}\n{}", plan.all(), out.stdout);
}

/// `cron` jobs under `--root/etc/cron.d`: one steward wrote and one written by hand. Once the
/// imported document is applied (the hand-written file is rewritten in steward's form, the
/// job unchanged), a plan changes nothing.
#[test]
fn cron_jobs_round_trip_once_applied() {
    let root = machine();
    root.write(
        "etc/cron.d/backup",
        "# managed by steward: cron:backup\nMAILTO=ops\n0 3 * * * root /usr/bin/backup --all 50\\%\n",
    );
    root.write(
        "etc/cron.d/rotate",
        "# rotate the logs\nSHELL=/bin/sh\n\n17 2 * * *   alice  /usr/bin/rotate -q {{ x }}\n",
    );
    let jobs = ["cron:backup", "cron:rotate", "cron:none"];
    for (format, file) in [("yaml", "site.yaml"), ("kdl", "site.kdl")] {
        let out = import(root.path(), format, &jobs);
        assert_eq!(out.code, 0, "{}", out.all());
        if format == "yaml" {
            for expected in [
                "\"cron:backup\":\n    schedule: \"0 3 * * *\"\n    command: \"/usr/bin/backup --all 50%\"\n    user: \"root\"\n    env: {\"MAILTO\": \"ops\"}\n",
                "\"cron:rotate\":\n    schedule: \"17 2 * * *\"\n    command: \"/usr/bin/rotate -q {{ \\\"{{\\\" }} x }}\"\n    user: \"alice\"\n    env: {\"SHELL\": \"/bin/sh\"}\n",
                "\"cron:none\":\n    ensure: \"absent\"\n",
            ] {
                assert!(out.stdout.contains(expected), "{expected}\n{}", out.all());
            }
        }
        let project = TestEnv::new();
        project.write(file, &out.stdout);
        let at = root.path().to_str().unwrap();
        let apply = project.run(&["apply", ".", "--root", at, "--yes"]);
        assert_eq!(apply.code, 0, "{}\n{}", apply.all(), out.stdout);
        let plan = project.run(&["plan", ".", "--root", at, "--detailed-exitcode"]);
        assert_eq!(plan.code, 0, "{}\n{}", plan.all(), out.stdout);
    }
    assert_eq!(
        root.read("etc/cron.d/rotate"),
        "# managed by steward: cron:rotate\nSHELL=/bin/sh\n17 2 * * * alice /usr/bin/rotate -q {{ x }}\n"
    );
}

#[test]
fn a_cron_file_a_resource_cannot_declare_is_a_clear_error() {
    let root = machine();
    root.write("etc/cron.d/two", "0 1 * * * root a\n0 2 * * * root b\n");
    root.write("etc/cron.d/daily", "@daily root true\n");
    std::fs::create_dir(root.path().join("etc/cron.d/dir")).unwrap();
    for (job, message) in [
        (
            "cron:two",
            "error: `cron:two` cannot be imported: its job file holds 2 job lines, and a `cron` resource declares exactly one",
        ),
        (
            "cron:daily",
            "error: `cron:daily` cannot be imported: its job line `@daily root true` has no five-field schedule",
        ),
        (
            "cron:dir",
            "error: `cron:dir` cannot be imported: a directory is at that path, not a cron",
        ),
        ("cron:a.b", "`a.b` is not a valid cron.d file name"),
    ] {
        let out = import(root.path(), "yaml", &[job]);
        assert_eq!(out.code, 1, "{job}\n{}", out.all());
        assert!(out.stderr.contains(message), "{job}\n{}", out.all());
        assert_eq!(out.stdout, "", "{}", out.all());
    }
}

/// The imported document rebuilds what it read on a machine that has only the accounts and
/// `/srv`: applied there, a plan after it changes nothing.
#[test]
fn the_document_rebuilds_the_state_on_a_bare_machine() {
    let source = machine();
    let out = import(
        source.path(),
        "yaml",
        &[
            "directory:/srv/app",
            "file:/srv/app/motd",
            "file:/srv/app/one-line",
            "symlink:/srv/current",
            "file:/srv/gone",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.all());
    let bare = TestEnv::new();
    for file in ["etc/passwd", "etc/group"] {
        bare.write(file, std::fs::read(source.path().join(file)).unwrap());
    }
    std::fs::create_dir(bare.path().join("srv")).unwrap();
    bare.write("srv/gone", "to be removed\n");
    let project = TestEnv::new();
    project.write("site.yaml", &out.stdout);
    let root = bare.path().to_str().unwrap();
    let applied = project.run(&["apply", ".", "--root", root, "--yes"]);
    assert_eq!(applied.code, 0, "{}\n{}", applied.all(), out.stdout);
    assert_eq!(
        std::fs::read(bare.path().join("srv/app/motd")).unwrap(),
        std::fs::read(source.path().join("srv/app/motd")).unwrap()
    );
    let mode = |root: &Path| {
        std::fs::metadata(root.join("srv/app/motd"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(bare.path()), mode(source.path()));
    assert_eq!(
        std::fs::read_link(bare.path().join("srv/current")).unwrap(),
        Path::new("/srv/app/motd")
    );
    assert!(!bare.path().join("srv/gone").exists());
    let plan = project.run(&["plan", ".", "--root", root, "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.all(), out.stdout);
}
