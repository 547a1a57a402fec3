//! --root confinement holds against a concurrent symlink swap (issue 12, finding 9).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::TestEnv;

/// Directories under the swapped `/srv/a`, mirrored empty outside the root (as an attacker
/// would prepare them) so a redirected write has somewhere to land.
const N_DIRS: usize = 4;

/// Files, links, edited lines and commands under `/srv/a`: every kind of path the finding
/// names (`file`, `directory`, `symlink`, `line`, `exec`'s `cwd` and `creates`).
const PROJECT: &str = r#"steward: 1
resources:
  "directory:/srv/a/d{{ item }}":
    for_each: "{{ range(4) | list }}"
  "file:/srv/a/d{{ item % 4 }}/f{{ item }}":
    for_each: "{{ range(2000) | list }}"
    content: "file {{ item }}\n"
  "symlink:/srv/a/d{{ item % 4 }}/l{{ item }}":
    for_each: "{{ range(100) | list }}"
    target: "f{{ item }}"
  "file:/srv/a/d{{ item % 4 }}/conf{{ item }}":
    for_each: "{{ range(40) | list }}"
    content: "a = 0\n"
  "line:/srv/a/d{{ item % 4 }}/conf{{ item }}":
    for_each: "{{ range(40) | list }}"
    line: "b = 1"
  "directory:/srv/a/d{{ item % 4 }}/sub{{ item }}":
    for_each: "{{ range(40) | list }}"
  "exec:touch{{ item }}":
    for_each: "{{ range(8) | list }}"
    command: ["touch", "made{{ item }}"]
    cwd: "/srv/a/d{{ item % 4 }}"
    creates: "/srv/a/d{{ item % 4 }}/made{{ item }}"
"#;

// Finding 9: a directory inside the root swapped for a symlink during an apply must not
// redirect any write (content, temporary file, directory, link, line edit, command) outside.
#[test]
fn a_directory_swapped_for_a_symlink_during_apply_redirects_nothing_outside() {
    let env = TestEnv::new();
    env.write("p/site.yaml", PROJECT);
    let mut total_swaps = 0;
    for round in 0..3 {
        let root = env.mkdir(&format!("root{round}"));
        let state = env.mkdir(&format!("state{round}"));
        let outside = env.mkdir(&format!("outside{round}"));
        std::fs::create_dir_all(root.join("srv/a")).unwrap();
        for dir in 0..N_DIRS {
            std::fs::create_dir(outside.join(format!("d{dir}"))).unwrap();
        }
        let swapper = Swapper::start(root.join("srv/a"), root.join("srv/a/d0"), outside.clone());
        let out = env.run(&[
            "--root",
            root.to_str().unwrap(),
            "apply",
            "p",
            "--yes",
            "--state-dir",
            state.to_str().unwrap(),
        ]);
        let n_swaps = swapper.stop();
        total_swaps += n_swaps;
        assert!(
            out.code == 0 || out.code == 1,
            "round {round}: neither converged nor failed cleanly\n{}",
            out.all()
        );
        assert!(!out.stderr.contains("panicked"), "{}", out.all());
        // The apply did run: its first directory is in the root, where the swapper put it back.
        assert!(
            root.join("srv/a/d0").is_dir(),
            "round {round}: nothing was written\n{}",
            out.all()
        );
        let escaped = written_outside(&outside);
        assert!(
            escaped.is_empty(),
            "round {round}: {} writes landed outside the root ({n_swaps} swaps), e.g. {:?}\n{}",
            escaped.len(),
            &escaped[..escaped.len().min(5)],
            out.all()
        );
    }
    assert!(total_swaps > 0, "the swapper never ran during an apply");
}

/// A thread that swaps a directory for a symlink to `outside` and back, over and over.
struct Swapper {
    stop: Arc<AtomicBool>,
    n_swaps: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Swapper {
    /// Starts a thread that begins swapping `dir` as soon as `trigger` exists (the apply has
    /// got past its plan and is writing).
    fn start(dir: PathBuf, trigger: PathBuf, outside: PathBuf) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let n_swaps = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, n_swaps) = (stop.clone(), n_swaps.clone());
            std::thread::spawn(move || {
                while !trigger.exists() && !stop.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                swap_until(&dir, &outside, &stop, &n_swaps);
            })
        };
        Swapper {
            stop,
            n_swaps,
            thread,
        }
    }

    /// Stops swapping (leaving the real directory in place) and tells how many swaps ran.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        self.n_swaps.load(Ordering::SeqCst)
    }
}

/// The rename dance: the directory moves aside, a symlink to `outside` takes its name for a
/// moment, then the directory comes back. Steps that fail (steward replaced something
/// meanwhile) are skipped; the dance goes on.
fn swap_until(dir: &Path, outside: &Path, stop: &AtomicBool, n_swaps: &AtomicUsize) {
    let aside = dir.with_extension("real");
    let pause = Duration::from_micros(200);
    while !stop.load(Ordering::SeqCst) {
        if std::fs::rename(dir, &aside).is_err() {
            std::thread::yield_now();
            continue;
        }
        let _ = std::os::unix::fs::symlink(outside, dir);
        n_swaps.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(pause);
        if std::fs::symlink_metadata(dir).is_ok_and(|meta| meta.file_type().is_symlink()) {
            let _ = std::fs::remove_file(dir);
        }
        let _ = std::fs::rename(&aside, dir);
        std::thread::sleep(pause);
    }
    if std::fs::symlink_metadata(dir).is_ok_and(|meta| meta.file_type().is_symlink()) {
        let _ = std::fs::remove_file(dir);
    }
    let _ = std::fs::rename(&aside, dir);
}

/// Everything under `outside` but the empty directories the test made there.
fn written_outside(outside: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![outside.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let is_mirror = dir == outside
                && (0..N_DIRS).any(|idx| path.file_name() == Some(format!("d{idx}").as_ref()));
            if path.is_dir() && !path.is_symlink() {
                pending.push(path.clone());
            }
            if !is_mirror {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}
