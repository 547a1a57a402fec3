//! Running commands: argv only (never a shell string built from data), a clean environment,
//! a timeout, and output capped so a chatty command cannot exhaust memory.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wait_timeout::ChildExt;

use crate::resource::error::{CommandOutput, ProviderError};

/// Bytes kept of each output stream.
pub const OUTPUT_CAP: usize = 64 * 1024;

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
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
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
        let output = self.output()?;
        if output.exit_code == Some(0) {
            Ok(output)
        } else {
            Err(ProviderError::Command {
                argv: self.argv.to_vec(),
                output: Box::new(output),
            })
        }
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
