//! The package, service, user and group providers, called through the library.
//!
//! Two groups of tests. The first always runs: reads and diffs against a temporary root
//! whose `etc/passwd`, `etc/group` and dpkg database are written here (nothing is changed),
//! and the refusals under `--root`. The second needs Debian's tools, root or systemd, and
//! may change the real system: it creates and removes uniquely named accounts and the small
//! `hello` package, cleaning up through guards even when an assertion fails. Those tests are
//! `#[ignore = "why"]` and opt-in by an environment variable (see [`opt_in`] and
//! docs/architecture.md, "Tests"); run with the variable set, a test whose machine lacks
//! what it needs fails and says what is missing. None of them returns early and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use steward::diag::{SourceId, Span};
use steward::model::{Attr, Resource, ResourceId, Value};
use steward::resource::change::{Action, Change, State};
use steward::resource::provider::{Applied, ProviderCtx, ProviderError};
use steward::resource::{Registry, ResourceType};

// ---------------------------------------------------------------------------------------
// Harness

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::builtin)
}

fn ty(kind: &str) -> &'static dyn ResourceType {
    registry().get(kind).unwrap()
}

fn text(value: &str) -> Value {
    Value::String(value.into())
}

fn list(values: &[&str]) -> Value {
    Value::List(values.iter().map(|v| text(v)).collect())
}

/// A desired resource built by hand, as the schema would lower it.
fn resource(kind: &str, name: &str, attrs: &[(&str, Value)]) -> Resource {
    let span = Span::new(SourceId(0), 0, 0);
    Resource {
        id: ResourceId::new(kind, name),
        span,
        source: SourceId(0),
        attrs: attrs
            .iter()
            .map(|(key, value)| {
                let attr = Attr {
                    value: value.clone(),
                    span,
                    sensitive: false,
                };
                (key.to_string(), attr)
            })
            .collect(),
        relations: Vec::new(),
        association: None,
        secrets: Vec::new(),
    }
}

/// A node to run providers against: a root (`/` or a temporary tree) and a state dir.
struct TestNode {
    root: PathBuf,
    _root_dir: Option<tempfile::TempDir>,
    state_dir: tempfile::TempDir,
    managed_paths: foldhash::HashSet<String>,
    durability: steward::resource::durability::Durability,
}

impl TestNode {
    /// A node rooted in a fresh temporary directory.
    fn temp() -> TestNode {
        let root_dir = tempfile::tempdir().unwrap();
        TestNode {
            root: root_dir.path().to_path_buf(),
            _root_dir: Some(root_dir),
            state_dir: tempfile::tempdir().unwrap(),
            managed_paths: Default::default(),
            durability: steward::resource::durability::Durability::new(),
        }
    }

    /// The machine the tests run on.
    fn live() -> TestNode {
        TestNode {
            root: PathBuf::from("/"),
            _root_dir: None,
            state_dir: tempfile::tempdir().unwrap(),
            managed_paths: Default::default(),
            durability: steward::resource::durability::Durability::new(),
        }
    }

    fn ctx(&self) -> ProviderCtx<'_> {
        ProviderCtx {
            root: &self.root,
            state_dir: self.state_dir.path(),
            run_id: "test-run",
            managed_paths: &self.managed_paths,
            durability: &self.durability,
            path_cache: None,
            runner: &steward::resource::command::SystemRunner,
            staged: None,
        }
    }

    /// Writes a file under the root.
    fn write(&self, path: &str, contents: &str) {
        let path = self.root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    fn read(&self, res: &Resource) -> Result<State, ProviderError> {
        ty(&res.id.kind).provider().read(&self.ctx(), res)
    }

    fn apply(&self, res: &Resource) -> Result<Applied, ProviderError> {
        ty(&res.id.kind).provider().apply(&self.ctx(), res)
    }

    /// Reads, then diffs as the planner would.
    fn plan(&self, res: &Resource) -> Change {
        let observed = self.read(res).unwrap();
        ty(&res.id.kind).diff(res, &observed)
    }
}

/// One diff case: NAME, the desired attributes, the expected action and changed attributes.
type DiffCase<'a> = (&'a str, &'a [(&'a str, Value)], Action, &'a [&'a str]);

/// Reads and diffs each case against the node.
fn check_diffs(node: &TestNode, kind: &str, cases: &[DiffCase<'_>]) {
    for (name, attrs, action, changed) in cases {
        let change = node.plan(&resource(kind, name, attrs));
        assert_eq!(
            summary(&change),
            (*action, changed.to_vec()),
            "{kind}:{name} {attrs:?}"
        );
    }
}

/// The action and the names of the attributes that change, for compact assertions.
fn summary(change: &Change) -> (Action, Vec<&str>) {
    let names = change.attrs.iter().map(|a| a.name.as_str()).collect();
    (change.action, names)
}

fn is_unsupported(result: &Result<impl std::fmt::Debug, ProviderError>) -> bool {
    matches!(result, Err(ProviderError::Unsupported { .. }))
}

fn program_exists(program: &str) -> bool {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .any(|dir| Path::new(dir).join(program).is_file())
}

/// Present while systemd is the running init system (`sd_booted(3)`).
const SYSTEMD_RUNTIME_DIR: &str = "/run/systemd/system";

/// The gate of an ignored test: the test runs only with `var` set to `1` (`.ci/run` sets it
/// where the machine can run the test), and then fails loudly when `missing` says the
/// machine lacks something. So a test is never reported ok without having run.
pub(crate) fn opt_in(var: &str, missing: Option<String>) {
    if std::env::var(var).as_deref() != Ok("1") {
        panic!(
            "this test needs a prepared machine and is opt-in: set {var}=1 to run it \
             (docs/architecture.md, \"Tests\")"
        );
    }
    if let Some(missing) = missing {
        panic!("{var}=1 is set, but this machine cannot run the test: {missing}");
    }
}

/// What the Debian-tool tests lack here, if anything.
fn missing_debian_tools() -> Option<String> {
    let missing: Vec<_> = ["dpkg-query", "systemctl"]
        .into_iter()
        .filter(|program| !program_exists(program))
        .collect();
    (!missing.is_empty()).then(|| format!("{} not installed", missing.join(" and ")))
}

/// What the real-system tests lack here, if anything: root on Debian.
fn missing_root_on_debian() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    if !program_exists("dpkg-query") || !Path::new("/etc/debian_version").exists() {
        return Some("not a Debian machine (no dpkg-query or /etc/debian_version)".into());
    }
    None
}

/// What the real-service test lacks here, if anything: root on Debian with systemd running.
fn missing_systemd() -> Option<String> {
    missing_root_on_debian().or_else(|| {
        (!Path::new(SYSTEMD_RUNTIME_DIR).is_dir())
            .then(|| format!("systemd is not running ({SYSTEMD_RUNTIME_DIR} is missing)"))
    })
}

/// `stw` and 8 hex digits from the pid, the clock and a counter: a valid, unused name.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mixed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
        .wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(40_503));
    format!("{prefix}{mixed:08x}")
}

/// Runs a cleanup command, ignoring how it ends.
fn run_quietly(argv: &[&str]) {
    let _ = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Removes test accounts when dropped, whatever happened to the test.
struct AccountGuard {
    prefix: Option<PathBuf>,
    users: Vec<String>,
    groups: Vec<String>,
}

impl Drop for AccountGuard {
    fn drop(&mut self) {
        let prefix: Vec<String> = match &self.prefix {
            Some(root) => vec!["--prefix".into(), root.display().to_string()],
            None => Vec::new(),
        };
        let commands = self
            .users
            .iter()
            .map(|user| ("userdel", user))
            .chain(self.groups.iter().map(|group| ("groupdel", group)));
        for (tool, name) in commands {
            let mut argv = vec![tool];
            argv.extend(prefix.iter().map(String::as_str));
            argv.push(name);
            run_quietly(&argv);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Always run: accounts read from a hand-written root

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000:Alice Liddell:/home/alice:/bin/bash
orphan:x:1001:4242::/nonexistent:/usr/sbin/nologin
";

const GROUP: &str = "\
root:x:0:
alice:x:1000:
ops:x:1001:alice
web:x:1002:bob,alice
";

fn accounts_root() -> TestNode {
    let node = TestNode::temp();
    node.write("etc/passwd", PASSWD);
    node.write("etc/group", GROUP);
    node
}

#[test]
fn user_read_reports_only_desired_attributes() {
    let node = accounts_root();
    let res = resource(
        "user",
        "alice",
        &[
            ("uid", Value::Int(1000)),
            ("group", text("alice")),
            ("groups", list(&["web", "ops"])),
        ],
    );
    let state = node.read(&res).unwrap();
    let expected = State::from([
        ("ensure".to_string(), text("present")),
        ("uid".to_string(), Value::Int(1000)),
        ("group".to_string(), text("alice")),
        ("groups".to_string(), list(&["ops", "web"])),
    ]);
    assert_eq!(state, expected);

    // A primary group missing from /etc/group reads as its number.
    let orphan = resource("user", "orphan", &[("group", text("4242"))]);
    assert_eq!(node.read(&orphan).unwrap()["group"], text("4242"));

    // Reading changed nothing.
    let passwd = std::fs::read_to_string(node.root.join("etc/passwd")).unwrap();
    assert_eq!(passwd, PASSWD);
}

#[test]
fn user_diffs() {
    let node = accounts_root();
    let cases: &[DiffCase<'_>] = &[
        ("alice", &[("shell", text("/bin/bash"))], Action::NoOp, &[]),
        (
            "alice",
            &[
                ("uid", Value::Int(1000)),
                ("group", text("alice")),
                ("home", text("/home/alice")),
                ("comment", text("Alice Liddell")),
            ],
            Action::NoOp,
            &[],
        ),
        // Group order does not matter, and neither do repeats.
        (
            "alice",
            &[("groups", list(&["web", "ops", "web"]))],
            Action::NoOp,
            &[],
        ),
        (
            "alice",
            &[("groups", list(&["ops"]))],
            Action::Update,
            &["groups"],
        ),
        (
            "alice",
            &[("groups", list(&[]))],
            Action::Update,
            &["groups"],
        ),
        (
            "alice",
            &[("shell", text("/bin/zsh")), ("uid", Value::Int(1000))],
            Action::Update,
            &["shell"],
        ),
        // `system` only matters at creation.
        ("alice", &[("system", Value::Bool(true))], Action::NoOp, &[]),
        (
            "alice",
            &[("ensure", text("absent"))],
            Action::Delete,
            &["ensure"],
        ),
        (
            "bob",
            &[("shell", text("/bin/sh")), ("system", Value::Bool(true))],
            Action::Create,
            &["shell"],
        ),
        ("bob", &[("ensure", text("absent"))], Action::NoOp, &[]),
    ];
    check_diffs(&node, "user", cases);
}

#[test]
fn user_update_shows_before_and_after() {
    let node = accounts_root();
    let res = resource("user", "alice", &[("shell", text("/bin/zsh"))]);
    let change = node.plan(&res);
    assert_eq!(change.attrs[0].before, Some(text("/bin/bash")));
    assert_eq!(change.attrs[0].after, Some(text("/bin/zsh")));

    let create = node.plan(&resource("user", "bob", &[("uid", Value::Int(1500))]));
    assert_eq!(create.attrs[0].before, None);
    assert_eq!(create.attrs[0].after, Some(Value::Int(1500)));
}

#[test]
fn group_diffs() {
    let node = accounts_root();
    let cases: &[DiffCase<'_>] = &[
        ("ops", &[], Action::NoOp, &[]),
        ("ops", &[("gid", Value::Int(1001))], Action::NoOp, &[]),
        ("ops", &[("system", Value::Bool(true))], Action::NoOp, &[]),
        (
            "ops",
            &[("gid", Value::Int(2000))],
            Action::Update,
            &["gid"],
        ),
        (
            "web",
            &[("ensure", text("absent"))],
            Action::Delete,
            &["ensure"],
        ),
        ("dev", &[], Action::Create, &[]),
        (
            "dev",
            &[("gid", Value::Int(3000))],
            Action::Create,
            &["gid"],
        ),
        ("dev", &[("ensure", text("absent"))], Action::NoOp, &[]),
    ];
    check_diffs(&node, "group", cases);
    let state = node.read(&resource("group", "ops", &[])).unwrap();
    assert_eq!(
        state,
        State::from([("ensure".to_string(), text("present"))])
    );
}

#[test]
fn accounts_of_an_empty_root_are_absent() {
    let node = TestNode::temp();
    let user = node.read(&resource("user", "alice", &[])).unwrap();
    assert_eq!(user["ensure"], text("absent"));
    let group = node.read(&resource("group", "ops", &[])).unwrap();
    assert_eq!(group["ensure"], text("absent"));
}

// ---------------------------------------------------------------------------------------
// Always run: packages

const DPKG_STATUS: &str = "\
Package: foo
Status: install ok installed
Maintainer: Nobody <nobody@example.com>
Architecture: all
Version: 1.2-3
Description: an installed package

Package: bar
Status: deinstall ok config-files
Maintainer: Nobody <nobody@example.com>
Architecture: all
Version: 0.9
Description: a removed package that left its configuration

Package: baz
Status: install ok half-configured
Maintainer: Nobody <nobody@example.com>
Architecture: all
Version: 2.0
Description: a package whose configuration failed
";

/// The package diff is pure: these states stand for what apt would report.
#[test]
fn package_diff_rules() {
    let state = |installed: &str, candidate: Option<&str>| {
        let mut state = State::from([("ensure".to_string(), text(installed))]);
        if let Some(candidate) = candidate {
            state.insert("candidate".into(), text(candidate));
        }
        state
    };
    let cases: &[(&str, State, Action, Option<&str>)] = &[
        ("present", state("1.0", None), Action::NoOp, None),
        (
            "present",
            state("absent", None),
            Action::Create,
            Some("present"),
        ),
        ("absent", state("absent", None), Action::NoOp, None),
        ("absent", state("1.0", None), Action::Delete, Some("absent")),
        ("1.0", state("1.0", None), Action::NoOp, None),
        ("1.1", state("1.0", None), Action::Update, Some("1.1")),
        ("1.1", state("absent", None), Action::Create, Some("1.1")),
        ("latest", state("1.1", Some("1.1")), Action::NoOp, None),
        (
            "latest",
            state("1.0", Some("1.1")),
            Action::Update,
            Some("latest (1.1)"),
        ),
        (
            "latest",
            state("absent", Some("1.1")),
            Action::Create,
            Some("latest (1.1)"),
        ),
        // With no candidate known there is nothing newer to install.
        ("latest", state("1.0", None), Action::NoOp, None),
    ];
    for (ensure, observed, action, after) in cases {
        let res = resource("package", "foo", &[("ensure", text(ensure))]);
        let change = ty("package").diff(&res, observed);
        assert_eq!(
            change.action, *action,
            "ensure {ensure} against {observed:?}"
        );
        assert_eq!(
            change.attrs.first().and_then(|a| a.after.clone()),
            after.map(text),
            "ensure {ensure} against {observed:?}"
        );
        if let Some(attr_change) = change.attrs.first() {
            assert_eq!(attr_change.before, Some(observed["ensure"].clone()));
        }
    }
    // No `ensure` means present.
    let bare = resource("package", "foo", &[]);
    let change = ty("package").diff(&bare, &state("absent", None));
    assert_eq!(change.action, Action::Create);
}

#[test]
#[ignore = "needs Debian's dpkg-query (STEWARD_TEST_DEBIAN=1)"]
fn package_read_from_root_dpkg_database() {
    opt_in("STEWARD_TEST_DEBIAN", missing_debian_tools());
    let node = TestNode::temp();
    node.write("var/lib/dpkg/status", DPKG_STATUS);
    let foo = node.read(&resource("package", "foo", &[])).unwrap();
    assert_eq!(foo, State::from([("ensure".to_string(), text("1.2-3"))]));
    let cases: &[(&str, &str, Action)] = &[
        ("foo", "present", Action::NoOp),
        ("foo", "1.2-3", Action::NoOp),
        ("foo", "1.2-4", Action::Update),
        ("foo", "absent", Action::Delete),
        // apt's candidates describe the host, not the root: none is read there.
        ("foo", "latest", Action::NoOp),
        ("bar", "present", Action::Create),
        ("bar", "absent", Action::NoOp),
        ("baz", "present", Action::Update),
        ("baz", "absent", Action::Delete),
        ("nope", "present", Action::Create),
        ("nope", "absent", Action::NoOp),
    ];
    for (name, ensure, action) in cases {
        let res = resource("package", name, &[("ensure", text(ensure))]);
        assert_eq!(node.plan(&res).action, *action, "package:{name} {ensure}");
    }
    let half = node.plan(&resource("package", "baz", &[]));
    assert_eq!(
        half.reason.as_deref(),
        Some("dpkg reports the package as half-configured")
    );
    // Nothing to do is not an error, even under --root.
    let present = node.apply(&resource("package", "foo", &[]));
    assert_eq!(present.unwrap(), Applied::AlreadyConverged);
}

#[test]
fn package_root_without_dpkg_database_has_nothing_installed() {
    let node = TestNode::temp();
    let state = node.read(&resource("package", "bash", &[])).unwrap();
    assert_eq!(state, State::from([("ensure".to_string(), text("absent"))]));
}

#[test]
fn package_apply_under_root_is_unsupported() {
    let node = TestNode::temp();
    node.write("var/lib/dpkg/status", DPKG_STATUS);
    let result = node.apply(&resource("package", "nope", &[]));
    assert!(is_unsupported(&result), "{result:?}");
    let removal = node.apply(&resource("package", "foo", &[("ensure", text("absent"))]));
    assert!(is_unsupported(&removal), "{removal:?}");
    // That a converged package needs nothing under --root is in the dpkg-query test.
}

// ---------------------------------------------------------------------------------------
// Always run: services

#[test]
fn service_ensure_under_root_is_unsupported() {
    let node = TestNode::temp();
    let res = resource("service", "nginx", &[("ensure", text("running"))]);
    let apply = node.apply(&res);
    assert!(is_unsupported(&apply), "{apply:?}");
    let read = node.read(&res);
    assert!(is_unsupported(&read), "{read:?}");
    let refresh = ty("service").provider().refresh(&node.ctx(), &res);
    assert!(is_unsupported(&refresh), "{refresh:?}");
    // A service that need not run is not restarted.
    let stopped = resource("service", "nginx", &[("ensure", text("stopped"))]);
    let refresh = ty("service").provider().refresh(&node.ctx(), &stopped);
    assert_eq!(refresh.unwrap(), Applied::AlreadyConverged);
}

#[test]
#[ignore = "needs a machine where systemd is not running (STEWARD_TEST_NO_SYSTEMD=1)"]
fn service_without_systemd_is_unsupported() {
    opt_in(
        "STEWARD_TEST_NO_SYSTEMD",
        Path::new(SYSTEMD_RUNTIME_DIR)
            .exists()
            .then(|| format!("systemd is running ({SYSTEMD_RUNTIME_DIR} exists)")),
    );
    let node = TestNode::live();
    let res = resource("service", "cron", &[("enable", Value::Bool(true))]);
    match node.read(&res) {
        Err(ProviderError::Unsupported { message }) => {
            assert_eq!(message, "systemd is not running on this node");
        }
        other => panic!("expected unsupported, got {other:?}"),
    }
}

#[test]
#[ignore = "needs Debian's systemctl (STEWARD_TEST_DEBIAN=1)"]
fn service_enable_under_root() {
    opt_in("STEWARD_TEST_DEBIAN", missing_debian_tools());
    let node = TestNode::temp();
    node.write(
        "usr/lib/systemd/system/stw-test.service",
        "[Unit]\nDescription=steward test\n[Service]\nExecStart=/bin/true\n\
         [Install]\nWantedBy=multi-user.target\n",
    );
    let wants = node
        .root
        .join("etc/systemd/system/multi-user.target.wants/stw-test.service");
    let enabled = resource("service", "stw-test", &[("enable", Value::Bool(true))]);
    let change = node.plan(&enabled);
    assert_eq!(summary(&change), (Action::Update, vec!["enable"]));
    let applied = node.apply(&enabled).unwrap();
    let Applied::Converged {
        output: Some(output),
    } = applied
    else {
        panic!("expected a converge with output, got {applied:?}");
    };
    assert!(output.argv.iter().any(|arg| arg == "enable"), "{output:?}");
    assert!(wants.is_symlink());
    assert_eq!(node.read(&enabled).unwrap()["enable"], Value::Bool(true));
    assert_eq!(node.apply(&enabled).unwrap(), Applied::AlreadyConverged);

    let disabled = resource(
        "service",
        "stw-test.service",
        &[("enable", Value::Bool(false))],
    );
    assert!(matches!(
        node.apply(&disabled).unwrap(),
        Applied::Converged { .. }
    ));
    assert!(!wants.is_symlink());
    assert_eq!(node.apply(&disabled).unwrap(), Applied::AlreadyConverged);

    // A unit that does not exist reads as disabled, and enabling it fails with systemctl's
    // own message.
    let missing = resource("service", "stw-missing", &[("enable", Value::Bool(true))]);
    assert_eq!(node.read(&missing).unwrap()["enable"], Value::Bool(false));
    let err = node.apply(&missing).unwrap_err();
    assert!(matches!(err, ProviderError::Command { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------
// Root only: accounts

/// Creates a group and a user, changes the user, then removes both, checking each step
/// converges once and then reports nothing to do.
fn account_lifecycle(node: &TestNode, prefix: Option<PathBuf>) {
    let group_name = unique_name("stwg");
    let user_name = unique_name("stw");
    let _guard = AccountGuard {
        prefix,
        users: vec![user_name.clone()],
        groups: vec![group_name.clone()],
    };
    let home = format!("/nonexistent/{user_name}");

    let group = resource("group", &group_name, &[]);
    assert_eq!(node.plan(&group).action, Action::Create);
    assert!(matches!(
        node.apply(&group).unwrap(),
        Applied::Converged { .. }
    ));
    assert_eq!(node.read(&group).unwrap()["ensure"], text("present"));
    assert_eq!(node.apply(&group).unwrap(), Applied::AlreadyConverged);

    let user_attrs = |shell: &str| {
        vec![
            ("group", text(&group_name)),
            ("groups", list(&[&group_name])),
            ("home", text(&home)),
            ("shell", text(shell)),
            ("comment", text("steward test")),
        ]
    };
    let user = resource("user", &user_name, &user_attrs("/bin/sh"));
    assert_eq!(node.plan(&user).action, Action::Create);
    let Applied::Converged {
        output: Some(output),
    } = node.apply(&user).unwrap()
    else {
        panic!("useradd did not report its output");
    };
    assert_eq!(output.argv[0], "useradd");
    let state = node.read(&user).unwrap();
    assert_eq!(state["ensure"], text("present"));
    assert_eq!(state["group"], text(&group_name));
    assert_eq!(state["groups"], list(&[&group_name]));
    assert_eq!(state["home"], text(&home));
    assert_eq!(state["shell"], text("/bin/sh"));
    assert_eq!(state["comment"], text("steward test"));
    assert!(!node.root.join(home.trim_start_matches('/')).exists());
    assert_eq!(node.apply(&user).unwrap(), Applied::AlreadyConverged);

    // usermod changes just the shell.
    let changed = resource("user", &user_name, &user_attrs("/bin/bash"));
    assert_eq!(
        summary(&node.plan(&changed)),
        (Action::Update, vec!["shell"])
    );
    let Applied::Converged {
        output: Some(output),
    } = node.apply(&changed).unwrap()
    else {
        panic!("usermod did not report its output");
    };
    assert_eq!(output.argv[0], "usermod");
    assert!(output.argv.contains(&"-s".to_string()), "{:?}", output.argv);
    assert!(
        !output.argv.contains(&"-g".to_string()),
        "{:?}",
        output.argv
    );
    assert_eq!(node.read(&changed).unwrap()["shell"], text("/bin/bash"));
    assert_eq!(node.apply(&changed).unwrap(), Applied::AlreadyConverged);

    // A missing primary group fails with useradd's own message.
    let stray_name = unique_name("stw");
    let stray = resource(
        "user",
        &stray_name,
        &[("group", text(&unique_name("stwx")))],
    );
    let err = node.apply(&stray).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_eq!(node.read(&stray).unwrap()["ensure"], text("absent"));

    let user_gone = resource("user", &user_name, &[("ensure", text("absent"))]);
    assert_eq!(node.plan(&user_gone).action, Action::Delete);
    assert!(matches!(
        node.apply(&user_gone).unwrap(),
        Applied::Converged { .. }
    ));
    assert_eq!(node.read(&user_gone).unwrap()["ensure"], text("absent"));
    assert_eq!(node.apply(&user_gone).unwrap(), Applied::AlreadyConverged);

    let group_gone = resource("group", &group_name, &[("ensure", text("absent"))]);
    assert_eq!(node.plan(&group_gone).action, Action::Delete);
    assert!(matches!(
        node.apply(&group_gone).unwrap(),
        Applied::Converged { .. }
    ));
    assert_eq!(node.read(&group_gone).unwrap()["ensure"], text("absent"));
    assert_eq!(node.apply(&group_gone).unwrap(), Applied::AlreadyConverged);
}

#[test]
#[ignore = "needs root on Debian; adds and removes real accounts (STEWARD_TEST_ROOT=1)"]
fn root_accounts_on_the_live_system() {
    opt_in("STEWARD_TEST_ROOT", missing_root_on_debian());
    account_lifecycle(&TestNode::live(), None);
}

#[test]
#[ignore = "needs root on Debian for useradd --prefix (STEWARD_TEST_ROOT=1)"]
fn root_accounts_under_a_prefix() {
    opt_in("STEWARD_TEST_ROOT", missing_root_on_debian());
    let node = accounts_root();
    account_lifecycle(&node, Some(node.root.clone()));

    // A gid change goes through groupmod, and a system group through groupadd -r.
    let ops = resource("group", "ops", &[("gid", Value::Int(2001))]);
    let Applied::Converged {
        output: Some(output),
    } = node.apply(&ops).unwrap()
    else {
        panic!("groupmod did not report its output");
    };
    let root = node.root.display().to_string();
    assert_eq!(output.argv[..3], ["groupmod", "--prefix", root.as_str()]);
    assert_eq!(node.read(&ops).unwrap()["gid"], Value::Int(2001));
    let system = resource("group", "daemonish", &[("system", Value::Bool(true))]);
    let Applied::Converged {
        output: Some(output),
    } = node.apply(&system).unwrap()
    else {
        panic!("groupadd did not report its output");
    };
    assert!(output.argv.contains(&"-r".to_string()), "{:?}", output.argv);
    assert_eq!(node.apply(&system).unwrap(), Applied::AlreadyConverged);
    // The host's accounts were not touched.
    let host = std::fs::read_to_string("/etc/group").unwrap();
    assert!(!host.lines().any(|line| line.starts_with("daemonish:")));
}

// ---------------------------------------------------------------------------------------
// Root only: a real package

/// Removes the test package when dropped, whatever happened to the test.
struct PackageGuard(&'static str);

impl Drop for PackageGuard {
    fn drop(&mut self) {
        run_quietly(&["apt-get", "remove", "-y", "-q", self.0]);
    }
}

/// True when apt could not download: the machine has no way to the mirror.
fn download_failed(err: &ProviderError) -> bool {
    let ProviderError::Command { output, .. } = err else {
        return false;
    };
    [
        "Failed to fetch",
        "Unable to fetch",
        "Temporary failure resolving",
    ]
    .iter()
    .any(|needle| output.stderr.contains(needle) || output.stdout.contains(needle))
}

#[test]
#[ignore = "needs root on Debian, apt lists and a mirror; installs and removes `hello` \
            (STEWARD_TEST_APT=1)"]
fn root_package_install_and_remove() {
    const NAME: &str = "hello";
    opt_in(
        "STEWARD_TEST_APT",
        missing_root_on_debian().or_else(|| {
            (!program_exists("apt-get")).then(|| "apt-get is not installed".to_string())
        }),
    );
    let node = TestNode::live();
    let latest = resource("package", NAME, &[("ensure", text("latest"))]);
    let observed = node.read(&latest).unwrap();
    // The test must not remove a package someone installed on purpose.
    assert_eq!(
        observed["ensure"],
        text("absent"),
        "`{NAME}` is already installed here; remove it, or unset STEWARD_TEST_APT"
    );
    let Some(Value::String(candidate)) = observed.get("candidate").cloned() else {
        panic!("apt knows no candidate for `{NAME}`: run `apt-get update` first");
    };
    let _guard = PackageGuard(NAME);

    let pinned = resource("package", NAME, &[("ensure", text(&candidate))]);
    let change = node.plan(&pinned);
    assert_eq!(change.action, Action::Create);
    assert_eq!(change.attrs[0].after, Some(text(&candidate)));
    let output = match node.apply(&pinned) {
        Ok(Applied::Converged {
            output: Some(output),
        }) => output,
        Err(err) if download_failed(&err) => {
            panic!("apt cannot download `{NAME}` (no way to the mirror?): {err}");
        }
        other => panic!("installing {NAME} {candidate}: {other:?}"),
    };
    assert!(
        output.argv.contains(&format!("{NAME}={candidate}")),
        "{output:?}"
    );
    assert_eq!(node.read(&pinned).unwrap()["ensure"], text(&candidate));
    assert_eq!(node.apply(&pinned).unwrap(), Applied::AlreadyConverged);
    for ensure in ["present", "latest"] {
        let res = resource("package", NAME, &[("ensure", text(ensure))]);
        assert_eq!(node.plan(&res).action, Action::NoOp, "{ensure}");
        assert_eq!(
            node.apply(&res).unwrap(),
            Applied::AlreadyConverged,
            "{ensure}"
        );
    }

    let absent = resource("package", NAME, &[("ensure", text("absent"))]);
    let change = node.plan(&absent);
    assert_eq!(change.action, Action::Delete);
    assert_eq!(change.attrs[0].before, Some(text(&candidate)));
    let Applied::Converged {
        output: Some(output),
    } = node.apply(&absent).unwrap()
    else {
        panic!("apt-get remove did not report its output");
    };
    assert!(output.argv.contains(&"remove".to_string()), "{output:?}");
    assert_eq!(node.read(&absent).unwrap()["ensure"], text("absent"));
    assert_eq!(node.apply(&absent).unwrap(), Applied::AlreadyConverged);
}

// ---------------------------------------------------------------------------------------
// Root only: a real service

/// Stops, disables and removes the test unit when dropped.
struct UnitGuard(PathBuf);

impl Drop for UnitGuard {
    fn drop(&mut self) {
        let Some(unit) = self
            .0
            .file_name()
            .and_then(|n| n.to_str())
            .map(String::from)
        else {
            return;
        };
        run_quietly(&["systemctl", "stop", &unit]);
        run_quietly(&["systemctl", "disable", &unit]);
        let _ = std::fs::remove_file(&self.0);
        run_quietly(&["systemctl", "daemon-reload"]);
    }
}

#[test]
#[ignore = "needs root and a running systemd; starts a real unit (STEWARD_TEST_SYSTEMD=1)"]
fn root_service_lifecycle() {
    opt_in("STEWARD_TEST_SYSTEMD", missing_systemd());
    let name = unique_name("stw");
    let unit_path = PathBuf::from(format!("/etc/systemd/system/{name}.service"));
    let _guard = UnitGuard(unit_path.clone());
    std::fs::write(
        &unit_path,
        "[Unit]\nDescription=steward test\n[Service]\nExecStart=/bin/sleep infinity\n\
         [Install]\nWantedBy=multi-user.target\n",
    )
    .unwrap();
    run_quietly(&["systemctl", "daemon-reload"]);
    let node = TestNode::live();

    let running = resource(
        "service",
        &name,
        &[("ensure", text("running")), ("enable", Value::Bool(true))],
    );
    assert_eq!(
        summary(&node.plan(&running)),
        (Action::Update, vec!["enable", "ensure"])
    );
    assert!(matches!(
        node.apply(&running).unwrap(),
        Applied::Converged { .. }
    ));
    let state = node.read(&running).unwrap();
    assert_eq!(state["ensure"], text("running"));
    assert_eq!(state["enable"], Value::Bool(true));
    assert_eq!(node.apply(&running).unwrap(), Applied::AlreadyConverged);
    let refresh = ty("service")
        .provider()
        .refresh(&node.ctx(), &running)
        .unwrap();
    assert!(matches!(refresh, Applied::Converged { .. }));

    let stopped = resource(
        "service",
        &name,
        &[("ensure", text("stopped")), ("enable", Value::Bool(false))],
    );
    assert!(matches!(
        node.apply(&stopped).unwrap(),
        Applied::Converged { .. }
    ));
    assert_eq!(node.read(&stopped).unwrap()["ensure"], text("stopped"));
    assert_eq!(node.apply(&stopped).unwrap(), Applied::AlreadyConverged);
    let refresh = ty("service")
        .provider()
        .refresh(&node.ctx(), &stopped)
        .unwrap();
    assert_eq!(refresh, Applied::AlreadyConverged);
}
