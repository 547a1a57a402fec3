//! A run killed at any instant leaves every file either its old or its new content, and a
//! re-run completes the work.

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

#[test]
fn kill_9_during_a_large_apply_leaves_old_or_new_content() {
    let env = TestEnv::new();
    env.write("p/site.yaml", PROJECT);
    let root = env.mkdir("root");
    let root_arg = root.to_str().unwrap();
    let first = env.run(&["--root", root_arg, "apply", "p", "--yes"]);
    assert_eq!(first.code, 0, "{}", first.all());

    let mut child = Command::new(env!("CARGO_BIN_EXE_steward"))
        // One resource at a time, so each write is its own durable batch and the kill lands
        // between them.
        .args([
            "--root",
            root_arg,
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
    // Kill it as soon as the first new file appears, mid-way through the writes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let probes: Vec<_> = (0..N)
        .step_by(97)
        .map(|idx| root.join(format!("data/f{idx}")))
        .collect();
    let mut killed_mid_run = false;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if probes
            .iter()
            .any(|probe| std::fs::read_to_string(probe).is_ok_and(|text| text.starts_with("new")))
        {
            child.kill().unwrap(); // SIGKILL
            killed_mid_run = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = child.wait();

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
    if killed_mid_run {
        eprintln!("killed after {n_new} of {N} files were replaced");
    }

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
