//! A run killed at any instant leaves every file either its old or its new content, and a
//! re-run completes the work.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestEnv;

const N: usize = 2000;

const PROJECT: &str = r#"steward: 1
parameters:
  version: { type: string, default: old }
resources:
  directory:/data: {}
  "file:/data/f{{ item }}":
    for_each: "{{ range(2000) | list }}"
    content: "{% for line in range(40) %}{{ params.version }} file {{ item }} line {{ line }}\n{% endfor %}"
"#;

fn expected(version: &str, idx: usize) -> String {
    (0..40)
        .map(|line| format!("{version} file {idx} line {line}\n"))
        .collect()
}

/// Times the kill may miss the middle of the run (the apply finished first) before the test
/// gives up: each attempt starts again from the old content.
const ATTEMPTS: usize = 5;

#[test]
fn kill_9_during_a_large_apply_leaves_old_or_new_content() {
    let env = TestEnv::new();
    env.write("p/site.yaml", PROJECT);
    let root = env.mkdir("root");
    let root_arg = root.to_str().unwrap();
    let mut landed = None;
    for attempt in 1..=ATTEMPTS {
        let first = env.run(&["--root", root_arg, "apply", "p", "--yes"]);
        assert_eq!(first.code, 0, "{}", first.all());
        match kill_mid_apply(&env, &root) {
            Ok(n_new) => {
                landed = Some(n_new);
                break;
            }
            Err(missed) => eprintln!("attempt {attempt} of {ATTEMPTS}: {missed}"),
        }
    }
    // Without this the test would pass on a run that finished before the kill, which proves
    // nothing about being killed.
    let Some(n_new) = landed else {
        panic!("the kill never landed mid-run in {ATTEMPTS} attempts");
    };
    eprintln!("killed after {n_new} of {N} files were replaced");

    // The lock died with the process; a re-run completes the work.
    let rerun = env.run(&[
        "--root",
        root_arg,
        "apply",
        "p",
        "--yes",
        "--param",
        "version=new",
    ]);
    assert_eq!(rerun.code, 0, "{}", rerun.all());
    for idx in 0..N {
        assert_eq!(
            std::fs::read_to_string(root.join(format!("data/f{idx}"))).unwrap(),
            expected("new", idx)
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(root.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".steward-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
    let noop = env.run(&[
        "--root",
        root_arg,
        "plan",
        "p",
        "--detailed-exitcode",
        "--param",
        "version=new",
    ]);
    assert_eq!(noop.code, 0, "{}", noop.all());
}

/// Starts `apply --param version=new`, SIGKILLs it as soon as the first new file appears, and
/// checks every file is whole, old or new. `Ok(n_new)` when the kill landed mid-run: the
/// process died of the signal with some, but not all, files replaced.
fn kill_mid_apply(env: &TestEnv, root: &Path) -> Result<usize, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
        // One resource at a time, so each write is its own durable batch and the kill lands
        // between them.
        .args([
            "--root",
            root.to_str().unwrap(),
            "apply",
            "p",
            "--yes",
            "--parallel",
            "1",
            "--param",
            "version=new",
        ])
        .current_dir(env.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let probes: Vec<_> = (0..N)
        .step_by(97)
        .map(|idx| root.join(format!("data/f{idx}")))
        .collect();
    let mut killed = false;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if probes
            .iter()
            .any(|probe| std::fs::read_to_string(probe).is_ok_and(|text| text.starts_with("new")))
        {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if !killed {
        // Past the deadline, or finished: either way, not killed mid-run.
        let _ = child.kill();
    }
    let status = child.wait().unwrap();

    let (mut n_old, mut n_new) = (0, 0);
    for idx in 0..N {
        let text = std::fs::read_to_string(root.join(format!("data/f{idx}"))).unwrap();
        if text == expected("old", idx) {
            n_old += 1;
        } else if text == expected("new", idx) {
            n_new += 1;
        } else {
            panic!("data/f{idx} is neither old nor new: {text:?}");
        }
    }
    assert_eq!(n_old + n_new, N);
    if !killed {
        return Err(format!(
            "the apply ended ({status}) before a new file was seen; {n_new} of {N} new"
        ));
    }
    if status.signal() != Some(nix::sys::signal::Signal::SIGKILL as i32) {
        return Err(format!("the apply ended with {status}, not by the kill"));
    }
    if n_new == 0 || n_old == 0 {
        return Err(format!("killed with {n_new} of {N} files new: not mid-run"));
    }
    Ok(n_new)
}
