//! The test harness: a temporary project directory and a way to run steward in it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary directory that steward runs in.
pub struct TestEnv {
    dir: tempfile::TempDir,
}

/// What a run printed and how it exited.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Both streams, for assertion messages.
    pub fn all(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl TestEnv {
    pub fn new() -> TestEnv {
        TestEnv {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file under the project, creating parent directories.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Runs steward with the project directory as working directory, colour off.
    pub fn run(&self, args: &[&str]) -> Output {
        run_in(self.dir.path(), args)
    }
}

/// The steward binary under test: this build's, or `STEWARD_TEST_BIN` when set (to show that a
/// new test fails against an older build: `STEWARD_TEST_BIN=/old/steward cargo test ...`).
pub fn steward_bin() -> std::path::PathBuf {
    std::env::var_os("STEWARD_TEST_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_steward").into())
}

/// Runs the steward binary in `dir` with a clean, colourless environment.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    run_in_with_env(dir, args, &[])
}

/// [`run_in`] with these variables added to the clean environment.
pub fn run_in_with_env(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let output = Command::new(steward_bin())
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The repository's root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

impl TestEnv {
    /// Copies a directory of the repository (an example) into the test directory.
    pub fn copy_from_repo(&self, from: &str, to: &str) -> PathBuf {
        let source = repo().join(from);
        let target = self.dir.path().join(to);
        for entry in walk(&source) {
            let relative = entry.strip_prefix(&source).unwrap();
            let dest = target.join(relative);
            if entry.is_dir() {
                std::fs::create_dir_all(&dest).unwrap();
            } else {
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(&entry, &dest).unwrap();
            }
        }
        target
    }

    /// A fresh directory under the test directory, for `--root`.
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Reads a file under the test directory.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap()
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut res = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            res.extend(walk(&path));
        } else {
            res.push(path);
        }
    }
    res
}

/// Replaces machine-specific text (the host name) so snapshots are stable.
pub fn normalize(text: &str) -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let hostname = hostname.trim();
    if hostname.is_empty() {
        text.to_string()
    } else {
        text.replace(&format!(" {hostname}\n"), " HOST\n")
            .replace(&format!(" {hostname},"), " HOST,")
    }
}
