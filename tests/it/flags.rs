//! One meaning per flag name, `--root` only where a file system is acted on, one duration and
//! one rate grammar for documents and flags, and man pages from the CLI definition (issue 15).

use std::process::Stdio;

use crate::common::{TestEnv, steward_bin};
use crate::fleet_harness::{Fleet, Reaped, bin};

/// The commands that take `--root`, and some that do not.
const WITH_ROOT: &[&[&str]] = &[
    &["validate"],
    &["plan"],
    &["apply"],
    &["drift"],
    &["graph"],
    &["import"],
    &["facts"],
    &["agent"],
];
const WITHOUT_ROOT: &[&[&str]] = &[
    &["schema"],
    &["completions"],
    &["token", "create"],
    &["serve"],
    &["nodes"],
    &["runs"],
    &["report"],
    &["findings"],
    &["run"],
    &["man"],
    &["node", "tag"],
];

#[test]
fn root_is_offered_only_by_commands_that_act_on_a_file_system() {
    let env = TestEnv::new();
    for (commands, offered) in [(WITH_ROOT, true), (WITHOUT_ROOT, false)] {
        for command in commands {
            let mut args = command.to_vec();
            args.push("--help");
            let out = env.run(&args);
            assert_eq!(out.code, 0, "{args:?}: {}", out.all());
            assert_eq!(
                out.stdout.contains("--root <DIR>"),
                offered,
                "{args:?}:\n{}",
                out.stdout
            );
        }
    }
    assert!(!env.run(&["--help"]).stdout.contains("--root <DIR>"));

    // Given after a command that does not take it: clap's usage error.
    let out = env.run(&["schema", "--root", "/tmp"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("unexpected argument '--root'"),
        "{}",
        out.stderr
    );
    // Given before the command, as while it was global: read for the commands that take it,
    // refused with the list of them for the others.
    let out = env.run(&["--root", "/tmp", "schema"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("error: --root /tmp does not apply to `steward schema`: only validate, plan, apply, drift, graph, import, facts, agent act on a file system"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    let root = env.mkdir("image");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=alpine\nVERSION_ID=3.20\n").unwrap();
    let root = root.to_str().unwrap();
    for args in [
        &["--root", root, "facts", "--format", "json"][..],
        &["facts", "--format", "json", "--root", root][..],
    ] {
        let out = env.run(args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.all());
        assert!(
            out.stdout.contains("\"alpine\""),
            "{args:?}: {}",
            out.stdout
        );
    }
    let out = env.run(&["--root", root, "facts", "--root", root]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("--root is given twice"),
        "{}",
        out.stderr
    );
}

#[test]
fn report_given_a_project_says_to_use_project() {
    let env = TestEnv::new();
    env.copy_from_repo("examples/quickstart", "examples/quickstart");
    for (given, project) in [
        ("examples/quickstart", "examples/quickstart"),
        (
            "examples/quickstart/site.yaml",
            "examples/quickstart/site.yaml",
        ),
    ] {
        let out = env.run(&["report", given]);
        assert_eq!(out.code, 1, "{}", out.all());
        assert_eq!(
            out.stderr,
            format!("error: `{given}` is a project, not a run id: use --project {project}\n")
        );
        assert!(out.stdout.is_empty());
    }
    // A run id that is no path still reads the store (which has no such run).
    let out = env.run(&["report", "20261125T101500.000Z-4242"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(!out.stderr.contains("is a project"), "{}", out.stderr);
}

/// `runs PATH` and `findings PATH` are refused with the same hint; `findings resolve` is still
/// the subcommand.
#[test]
fn runs_and_findings_given_a_project_say_to_use_project() {
    let env = TestEnv::new();
    env.copy_from_repo("examples/quickstart", "examples/quickstart");
    for command in ["runs", "findings"] {
        let out = env.run(&[command, "examples/quickstart"]);
        assert_eq!(out.code, 1, "{}", out.all());
        assert_eq!(
            out.stderr,
            "error: `examples/quickstart` is a project: `runs`, `report` and `findings` take it as --project examples/quickstart\n"
        );
        assert!(out.stdout.is_empty());
    }
    let out = env.run(&[
        "findings",
        "resolve",
        "3",
        "--project",
        "examples/quickstart",
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(!out.stderr.contains("is a project"), "{}", out.stderr);
}

/// Each bad value with the error line it gives: the flag named, the grammar said.
#[test]
fn bad_durations_and_rates_name_their_flag() {
    let env = TestEnv::new();
    let duration_help =
        "is not a duration: write seconds (90) or numbers with units (30s, 5m, 1h30m, 2d, 1w)";
    let run = ["run", "--target", "all"];
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            [&run[..], &["--timeout", "1h30x", "--", "true"]].concat(),
            format!("error: --timeout `1h30x` {duration_help}"),
        ),
        (
            [&run[..], &["--timeout", "1.5h", "--", "true"]].concat(),
            format!("error: --timeout `1.5h` {duration_help}"),
        ),
        (
            [&run[..], &["--delivery-timeout", "soon", "--", "true"]].concat(),
            format!("error: --delivery-timeout `soon` {duration_help}"),
        ),
        (
            [&run[..], &["--timeout", "0", "--", "true"]].concat(),
            "error: --timeout `0` must be between 1s and 365d".to_string(),
        ),
        (
            vec!["token", "create", "--data-dir", "d", "--ttl", "1 0m"],
            format!("error: --ttl `1 0m` {duration_help}"),
        ),
        (
            vec!["serve", "--data-dir", "d", "--agent-cert-lifetime", "30 days ago"],
            format!("error: --agent-cert-lifetime `30 days ago` {duration_help}"),
        ),
        (
            [&run[..], &["--max-concurrency", "0", "--", "true"]].concat(),
            "error: --max-concurrency `0` is not a rate: write a count (1 or more) such as 2, or a percentage such as 20%".to_string(),
        ),
        (
            [&run[..], &["--max-errors", "101%", "--", "true"]].concat(),
            "error: --max-errors `101%` is not a rate: write a count (0 or more) such as 2, or a percentage such as 20%".to_string(),
        ),
    ];
    for (args, line) in cases {
        let out = env.run(&args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.all());
        assert_eq!(out.stderr.trim_end(), line, "{args:?}");
        assert!(
            !env.path().join("d").exists(),
            "{args:?} made its directory"
        );
    }
}

/// A document's durations take the flags' forms; a bad one is located at its value, and a bad
/// rate too.
#[test]
fn document_durations_and_rates_share_the_grammar() {
    let env = TestEnv::new();
    let exec = |timeout: &str| {
        format!(
            "steward: 1\nresources:\n  exec:reload:\n    command: /bin/true\n    timeout: {timeout}\n"
        )
    };
    for good in [
        "90",
        "\"90\"",
        "\"1h30m\"",
        "\"1h 30m\"",
        "\"2 days\"",
        "\"1w\"",
        "\"45 sec\"",
    ] {
        env.write("site.yaml", exec(good));
        let out = env.run(&["validate", "site.yaml"]);
        assert_eq!(out.code, 0, "{good}: {}", out.all());
    }
    for bad in ["\"1.5h\"", "\"500ms\"", "\"1 0m\"", "\"0s\"", "\"5M\""] {
        env.write("site.yaml", exec(bad));
        let out = env.run(&["validate", "site.yaml", "--format", "json"]);
        assert_eq!(out.code, 1, "{bad}: {}", out.all());
        let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let diagnostic = &json["diagnostics"][0];
        assert_eq!(diagnostic["line"], 5, "{bad}: {}", out.stdout);
        assert_eq!(diagnostic["column"], 14, "{bad}: {}", out.stdout);
    }
    env.write("site.yaml", exec("\"1.5h\""));
    let out = env.run(&["validate", "site.yaml"]);
    assert!(
        out.stderr
            .contains("`1.5h` is not a duration: write seconds (90) or"),
        "{}",
        out.stderr
    );

    let association = |max_errors: &str| {
        format!(
            "steward: 1\nnodes:\n  web-1: {{ tags: {{ role: web }} }}\nassociations:\n  web:\n    targets: {{ all: true }}\n    documents: [web.yaml]\n    max_errors: {max_errors}\n"
        )
    };
    env.write("web.yaml", "steward: 1\nresources:\n  directory:/srv: {}\n");
    env.write("site.yaml", association("\"10 %\""));
    let out = env.run(&["validate", "."]);
    assert_eq!(out.code, 0, "{}", out.all());
    env.write("site.yaml", association("\"101%\""));
    let out = env.run(&["validate", ".", "--format", "json"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stdout.contains("expected a count or a percentage"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("\"line\": 8"), "{}", out.stdout);
}

/// The agent's renamed flags: the old spellings still work and each prints one warning line;
/// the command durations take bare seconds and compound forms.
#[test]
fn old_agent_flags_warn_and_still_work_and_run_takes_the_duration_grammar() {
    let mut fleet = Fleet::start();
    let root = fleet.root("old-1");
    std::fs::create_dir_all(&root).unwrap();
    let log = fleet.env.path().join("agent-old-1.log");
    let token = fleet.bound_token("old-1", "role=old");
    let child = bin()
        .args(["agent", "--root"])
        .arg(&root)
        .args(["--controller", &fleet.agent_addr, "--name", "old-1"])
        .args(["--token", &token])
        .arg(format!("--state-dir={}", fleet.state("old-1").display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    fleet.agents.push(("old-1".to_string(), Reaped(child)));
    fleet.wait_online(&["old-1"]);
    assert!(fleet.state("old-1").is_dir(), "--state-dir was not read");
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(
        warnings,
        [
            "warning: `steward agent --controller` is now --connect; --controller will stop working in the next release",
            "warning: `steward agent --state-dir` is now --data-dir; --state-dir will stop working in the next release",
        ],
        "{text}"
    );

    for timeout in ["90", "1h30m", "2 min"] {
        let out = fleet.cli(&[
            "run",
            "--target",
            "old-1",
            "--timeout",
            timeout,
            "--delivery-timeout",
            "45",
            "--max-errors",
            "50 %",
            "--",
            "/bin/true",
        ]);
        assert_eq!(out.code, 0, "{timeout}: {}\n{}", out.all(), fleet.logs());
    }
}

/// `steward man` prints steward(1); `--install` writes a page per command next to the binary,
/// where `man` finds it through PATH alone; groff renders every page without a warning.
#[test]
fn man_pages_install_next_to_the_binary_and_man_finds_them() {
    let env = TestEnv::new();
    let out = env.run(&["man"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.starts_with(".ie \\n(.g .ds Aq"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(".TH steward 1"), "{}", out.stdout);

    let bin_dir = env.mkdir("prefix/bin");
    let exe = bin_dir.join("steward");
    std::fs::copy(steward_bin(), &exe).unwrap();
    let out = std::process::Command::new(&exe)
        .args(["man", "--install"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let man1 = env.path().join("prefix/share/man/man1");
    for page in [
        "steward.1",
        "steward-plan.1",
        "steward-agent.1",
        "steward-token-create.1",
        "steward-findings-resolve.1",
    ] {
        assert!(man1.join(page).is_file(), "{page} missing");
    }
    assert!(!man1.join("steward-help.1").exists());
    let agent = std::fs::read_to_string(man1.join("steward-agent.1")).unwrap();
    assert!(agent.contains("\\-\\-connect"), "{agent}");
    assert!(agent.contains("\\-\\-root"), "{agent}");
    let schema = std::fs::read_to_string(man1.join("steward-schema.1")).unwrap();
    assert!(!schema.contains("\\-\\-root"), "{schema}");

    // man-db adds BIN/../share/man for each BIN on PATH (manpath(5), "SEARCH PATH").
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let man = |args: &[&str]| {
        std::process::Command::new("man")
            .args(args)
            .env("PATH", &path)
            .env("MANPATH", "")
            .output()
            .expect("`man` (man-db) is needed: apt-get install man-db (.ci/run installs it)")
    };
    let canonical = std::fs::canonicalize(&man1).unwrap();
    for (page, file) in [("steward", "steward.1"), ("steward-plan", "steward-plan.1")] {
        let out = man(&["-w", page]);
        assert!(out.status.success(), "man -w {page}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            canonical.join(file).display().to_string()
        );
    }

    for entry in std::fs::read_dir(&man1).unwrap() {
        let page = entry.unwrap().path();
        let out = std::process::Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&page)
            .output()
            .expect("`groff` is needed: apt-get install groff-base (man-db depends on it)");
        assert!(out.status.success(), "{}: {out:?}", page.display());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "{}",
            page.display()
        );
    }

    // --dir writes elsewhere; a directory that cannot be made is an error, not a panic.
    let out = env.run(&["man", "--install", "--dir", "pages"]);
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(env.path().join("pages/steward-run.1").is_file());
    env.write("file", "");
    let out = env.run(&["man", "--install", "--dir", "file/pages"]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.starts_with("error: file/pages: "),
        "{}",
        out.stderr
    );
    let out = env.run(&["man", "--dir", "pages"]);
    assert_eq!(out.code, 1, "{}", out.all());
}

/// `serve --name` was a certificate name where `agent --name` and `token create --name` are a
/// node's: now `--cert-name`, the old spelling warned about.
#[test]
fn serve_cert_name_with_the_old_spelling_warned() {
    let env = TestEnv::new();
    let help = env.run(&["serve", "--help"]).stdout;
    assert!(help.contains("--cert-name <NAME>"), "{help}");
    assert!(!help.contains("--name <NAME>"), "{help}");
    // A bad lifetime stops it before it starts: the warning, then the error.
    let out = env.run(&[
        "serve",
        "--data-dir",
        "d",
        "--name",
        "ctl.example.com",
        "--agent-cert-lifetime",
        "0",
    ]);
    assert_eq!(out.code, 1, "{}", out.all());
    assert_eq!(
        out.stderr,
        "warning: `steward serve --name` is now --cert-name; --name will stop working in the next release\n\
         error: --agent-cert-lifetime `0` must be between 1s and 365d\n"
    );
    let out = env.run(&[
        "serve",
        "--data-dir",
        "d",
        "--cert-name",
        "ctl.example.com",
        "--agent-cert-lifetime",
        "0",
    ]);
    assert_eq!(
        out.stderr,
        "error: --agent-cert-lifetime `0` must be between 1s and 365d\n"
    );
}
