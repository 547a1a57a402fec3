//! Running commands: argv only (never a shell string built from data), a clean environment,
//! a timeout, and output capped so a chatty command cannot exhaust memory.
//!
//! Owns [`Run`] (one command and how to run it) and the [`CommandRunner`] trait that providers
//! run their system commands through (`systemctl`, `dpkg-query`, `apt-get`, `useradd`...):
//! the provider context carries one, [`SystemRunner`] on a real node, a scripted one in unit
//! tests, so a provider's handling of each answer is tested without the system.
//! It knows nothing of resources or the provider context.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use crate::resource::error::{CommandOutput, ProviderError};

/// Bytes kept of each output stream.
pub const OUTPUT_CAP: usize = 64 * 1024;

/// The directories on the `PATH` every command runs with, in order.
pub const SEARCH_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Present while systemd is the running init system (`sd_booted(3)`).
const SYSTEMD_RUNTIME_DIR: &str = "/run/systemd/system";

/// Runs providers' system commands, and tells what the system has to run them with.
///
/// Carried in [`crate::resource::provider::ProviderCtx::runner`]: [`SystemRunner`] on a node,
/// a script of canned answers in unit tests. Only fixed system commands go through it; the
/// commands of `exec` resources run with [`Run::output`] itself, for their live output.
/// `Debug` so that what holds one (the executor's environment) can derive it.
pub trait CommandRunner: Send + Sync + std::fmt::Debug {
    /// Runs `run` to completion (or its timeout) and returns what happened. A non-zero exit
    /// is not an error here; [`CommandRunner::check`] makes it one.
    fn output(&self, run: &Run<'_>) -> Result<CommandOutput, ProviderError>;

    /// True when `program` is a file in one of the [`SEARCH_PATH`] directories, to tell
    /// "not installed" from "failed to run".
    fn has_program(&self, program: &str) -> bool;

    /// True when systemd is the running init system, so `systemctl` can reach it.
    fn systemd_booted(&self) -> bool;

    /// [`CommandRunner::output`], failing unless the command exits 0.
    fn check(&self, run: &Run<'_>) -> Result<CommandOutput, ProviderError> {
        exited_zero(run.argv, self.output(run)?)
    }
}

/// The real system: spawns the command ([`Run::output`]) and looks at the real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemRunner;

impl CommandRunner for SystemRunner {
    fn output(&self, run: &Run<'_>) -> Result<CommandOutput, ProviderError> {
        run.output()
    }

    fn has_program(&self, program: &str) -> bool {
        SEARCH_PATH
            .iter()
            .any(|dir| Path::new(dir).join(program).is_file())
    }

    fn systemd_booted(&self) -> bool {
        Path::new(SYSTEMD_RUNTIME_DIR).is_dir()
    }
}

/// How to run a command.
pub struct Run<'a> {
    /// Program and arguments.
    pub argv: &'a [String],
    /// Working directory.
    pub cwd: Option<&'a Path>,
    /// Extra environment on top of a minimal one (`PATH`, `LANG=C`).
    pub env: &'a [(String, String)],
    /// Run as this uid/gid.
    pub user: Option<(u32, u32)>,
    /// Kill after this long.
    pub timeout: Duration,
    /// Called with each chunk of output as it arrives (Run Command's live output).
    pub on_output: Option<OnOutput<'a>>,
    /// Set from elsewhere to kill the command (a cancelled run).
    pub cancel: Option<&'a AtomicBool>,
}

/// Called with each chunk of kept output as it arrives.
pub type OnOutput<'a> = &'a (dyn Fn(Stream, &[u8]) + Sync);

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl<'a> Run<'a> {
    /// A command with defaults: no cwd, no extra env, as the current user, 300 s timeout.
    pub fn new(argv: &'a [String]) -> Run<'a> {
        Run {
            argv,
            cwd: None,
            env: &[],
            user: None,
            timeout: Duration::from_secs(300),
            on_output: None,
            cancel: None,
        }
    }

    /// Runs it to completion (or timeout) and returns what happened. A non-zero exit is not
    /// an error here; [`Run::check`] makes it one.
    pub fn output(&self) -> Result<CommandOutput, ProviderError> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(ProviderError::failed("empty command"));
        };
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("PATH", SEARCH_PATH.join(":"))
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group, so a timeout kills everything it started, not only the
        // direct child (whose children would keep the output pipes open).
        {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        if let Some(cwd) = self.cwd {
            command.current_dir(cwd);
        }
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        let mut child = command
            .spawn()
            .map_err(|err| ProviderError::failed(format!("cannot run `{program}`: {err}")))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let on_output = self.on_output;
        let deadline = Instant::now() + self.timeout;
        std::thread::scope(|scope| {
            let out_reader = scope.spawn(move || capped(stdout, Stream::Stdout, on_output));
            let err_reader = scope.spawn(move || capped(stderr, Stream::Stderr, on_output));
            let mut cancelled = false;
            // Waits in slices so a cancel is noticed within a tenth of a second.
            let status = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let slice = left.min(Duration::from_millis(100));
                match child.wait_timeout(slice) {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if left.is_zero() => break None,
                    Ok(None) => {
                        if self.cancel.is_some_and(|flag| flag.load(Ordering::Relaxed)) {
                            cancelled = true;
                            break None;
                        }
                    }
                    Err(err) => return Err(ProviderError::failed(err.to_string())),
                }
            };
            let (status, stopped) = match status {
                Some(status) => (Some(status), false),
                None => {
                    if let Ok(pid) = i32::try_from(child.id()) {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    let _ = child.kill();
                    (child.wait().ok(), true)
                }
            };
            let out = out_reader.join().unwrap_or_default();
            let err = err_reader.join().unwrap_or_default();
            Ok(CommandOutput {
                argv: self.argv.to_vec(),
                exit_code: if stopped {
                    None
                } else {
                    status.and_then(|s| s.code())
                },
                stdout: out.text,
                stderr: err.text,
                truncated: out.total > OUTPUT_CAP as u64 || err.total > OUTPUT_CAP as u64,
                timed_out: stopped && !cancelled,
                cancelled,
                stdout_bytes: out.total,
                stderr_bytes: err.total,
            })
        })
    }

    /// Runs it and fails unless it exits 0.
    pub fn check(&self) -> Result<CommandOutput, ProviderError> {
        exited_zero(self.argv, self.output()?)
    }
}

/// The output of `argv`, or a [`ProviderError::Command`] unless it exited 0.
fn exited_zero(argv: &[String], output: CommandOutput) -> Result<CommandOutput, ProviderError> {
    if output.exit_code == Some(0) {
        Ok(output)
    } else {
        Err(ProviderError::Command {
            argv: argv.to_vec(),
            output: Box::new(output),
        })
    }
}

/// What was read of one stream.
#[derive(Default)]
struct Captured {
    /// The first [`OUTPUT_CAP`] bytes, as text.
    text: String,
    /// Every byte the command wrote.
    total: u64,
}

/// Reads a stream to the end, keeping the first [`OUTPUT_CAP`] bytes (and showing only those
/// live): a command that prints a gigabyte costs its reader nothing but time.
fn capped(stream: Option<impl Read>, which: Stream, on_output: Option<OnOutput<'_>>) -> Captured {
    let Some(mut stream) = stream else {
        return Captured::default();
    };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                let keep = &buffer[..n.min(room)];
                if !keep.is_empty() {
                    kept.extend_from_slice(keep);
                    if let Some(on_output) = on_output {
                        on_output(which, keep);
                    }
                }
            }
        }
    }
    Captured {
        text: String::from_utf8_lossy(&kept).into_owned(),
        total,
    }
}

/// `argv` from string arguments, for providers' own fixed commands.
pub fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A [`CommandRunner`] for unit tests: it checks each command against a script and gives
/// the canned answer, so a provider's handling of every answer is tested without the system.
#[cfg(test)]
pub(crate) mod scripted {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use crate::resource::command::{CommandRunner, Run};
    use crate::resource::error::{CommandOutput, ProviderError};

    /// A side effect of a scripted command (what `useradd` would write), run as it answers.
    type Effect = Box<dyn Fn() + Send + Sync>;

    /// One expected command and its answer.
    struct Answer {
        argv: Vec<String>,
        exit_code: Option<i32>,
        stdout: String,
        stderr: String,
        effect: Option<Effect>,
    }

    /// Expected commands in order, each with its answer; every program installed and systemd
    /// booted unless told otherwise.
    #[derive(Default)]
    pub(crate) struct ScriptedRunner {
        script: Mutex<VecDeque<Answer>>,
        missing_programs: Vec<String>,
        no_systemd: bool,
        /// The extra environment of each command run, in order.
        envs: Mutex<Vec<Vec<(String, String)>>>,
    }

    impl ScriptedRunner {
        /// An empty script: any command fails the test.
        pub(crate) fn new() -> ScriptedRunner {
            ScriptedRunner::default()
        }

        /// Expects `argv` next, answering with its exit code and standard output.
        pub(crate) fn answer(self, argv: &[&str], exit_code: i32, stdout: &str) -> Self {
            self.answer_with(argv, Some(exit_code), stdout, "")
        }

        /// Expects `argv` next, answering with everything given (`None`: killed).
        pub(crate) fn answer_with(
            self,
            argv: &[&str],
            exit_code: Option<i32>,
            stdout: &str,
            stderr: &str,
        ) -> Self {
            if let Ok(mut script) = self.script.lock() {
                script.push_back(Answer {
                    argv: argv.iter().map(|s| s.to_string()).collect(),
                    exit_code,
                    stdout: stdout.into(),
                    stderr: stderr.into(),
                    effect: None,
                });
            }
            self
        }

        /// Runs `effect` when the command scripted last answers (what it changes on disk).
        pub(crate) fn then(self, effect: impl Fn() + Send + Sync + 'static) -> Self {
            if let Some(last) = self.script.lock().unwrap().back_mut() {
                last.effect = Some(Box::new(effect));
            }
            self
        }

        /// `program` is not installed.
        pub(crate) fn without_program(mut self, program: &str) -> Self {
            self.missing_programs.push(program.into());
            self
        }

        /// systemd is not the init system.
        pub(crate) fn without_systemd(mut self) -> Self {
            self.no_systemd = true;
            self
        }

        /// The extra environment the `n`th command ran with.
        pub(crate) fn env_of(&self, n: usize) -> Vec<(String, String)> {
            self.envs.lock().unwrap()[n].clone()
        }

        /// Fails the test unless every scripted command ran.
        pub(crate) fn finished(&self) {
            let script = self.script.lock().unwrap();
            let left: Vec<String> = script.iter().map(|a| a.argv.join(" ")).collect();
            assert!(
                left.is_empty(),
                "scripted commands that never ran: {left:?}"
            );
        }
    }

    impl std::fmt::Debug for ScriptedRunner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let script = self.script.lock().map_err(|_| std::fmt::Error)?;
            let left: Vec<String> = script.iter().map(|a| a.argv.join(" ")).collect();
            f.debug_struct("ScriptedRunner")
                .field("left", &left)
                .finish()
        }
    }

    impl CommandRunner for ScriptedRunner {
        fn output(&self, run: &Run<'_>) -> Result<CommandOutput, ProviderError> {
            let next = self.script.lock().unwrap().pop_front();
            let Some(answer) = next else {
                panic!("unexpected command: {}", run.argv.join(" "));
            };
            assert_eq!(
                run.argv,
                answer.argv.as_slice(),
                "not the command scripted next"
            );
            self.envs.lock().unwrap().push(run.env.to_vec());
            if let Some(effect) = &answer.effect {
                effect();
            }
            Ok(CommandOutput {
                argv: answer.argv,
                exit_code: answer.exit_code,
                stdout_bytes: answer.stdout.len() as u64,
                stderr_bytes: answer.stderr.len() as u64,
                stdout: answer.stdout,
                stderr: answer.stderr,
                ..CommandOutput::default()
            })
        }

        fn has_program(&self, program: &str) -> bool {
            !self
                .missing_programs
                .iter()
                .any(|missing| missing == program)
        }

        fn systemd_booted(&self) -> bool {
            !self.no_systemd
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_and_caps() {
        let cmd = argv(&[
            "/bin/sh",
            "-c",
            "head -c 100000 /dev/zero | tr '\\0' x; echo err >&2; exit 3",
        ]);
        let out = Run::new(&cmd).output().unwrap();
        assert_eq!(out.exit_code, Some(3));
        assert_eq!(out.stdout.len(), OUTPUT_CAP);
        assert_eq!(out.stdout_bytes, 100_000);
        assert!(out.truncated);
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn a_timeout_kills_the_whole_process_group() {
        let cmd = argv(&["/bin/sh", "-c", "sleep 30; echo done"]);
        let mut run = Run::new(&cmd);
        run.timeout = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let out = run.output().unwrap();
        assert!(out.timed_out);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited for the grandchild"
        );
    }

    #[test]
    fn streams_live_and_stops_when_cancelled() {
        let cmd = argv(&["/bin/sh", "-c", "echo first; sleep 30"]);
        let seen = std::sync::Mutex::new(Vec::new());
        let cancel = AtomicBool::new(false);
        let on_output = |stream: Stream, bytes: &[u8]| {
            seen.lock().unwrap().push((stream, bytes.to_vec()));
            cancel.store(true, Ordering::Relaxed);
        };
        let mut run = Run::new(&cmd);
        run.on_output = Some(&on_output);
        run.cancel = Some(&cancel);
        let started = Instant::now();
        let out = run.output().unwrap();
        assert!(out.cancelled && !out.timed_out);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            seen.lock().unwrap()[0],
            (Stream::Stdout, b"first\n".to_vec())
        );
    }

    #[test]
    fn times_out() {
        let cmd = argv(&["/bin/sleep", "10"]);
        let mut run = Run::new(&cmd);
        run.timeout = Duration::from_millis(100);
        let out = run.output().unwrap();
        assert!(out.timed_out);
        assert!(run.check().is_err());
    }
}
