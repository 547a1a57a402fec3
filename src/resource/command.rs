//! Running commands: argv only (never a shell string built from data), a clean environment,
//! a timeout, and output capped so a chatty command cannot exhaust memory.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

use crate::resource::provider::{CommandOutput, ProviderError};

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
        let out_reader = std::thread::spawn(move || capped(stdout));
        let err_reader = std::thread::spawn(move || capped(stderr));
        let status = child
            .wait_timeout(self.timeout)
            .map_err(|err| ProviderError::failed(err.to_string()))?;
        let (status, timed_out) = match status {
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
        let (stdout, out_cut) = out_reader.join().unwrap_or_default();
        let (stderr, err_cut) = err_reader.join().unwrap_or_default();
        Ok(CommandOutput {
            argv: self.argv.to_vec(),
            exit_code: if timed_out {
                None
            } else {
                status.and_then(|s| s.code())
            },
            stdout,
            stderr,
            truncated: out_cut || err_cut,
            timed_out,
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

/// Reads a stream to the end, keeping the first [`OUTPUT_CAP`] bytes.
fn capped(stream: Option<impl Read>) -> (String, bool) {
    let Some(mut stream) = stream else {
        return (String::new(), false);
    };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    let mut truncated = false;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), truncated)
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
    fn times_out() {
        let cmd = argv(&["/bin/sleep", "10"]);
        let mut run = Run::new(&cmd);
        run.timeout = Duration::from_millis(100);
        let out = run.output().unwrap();
        assert!(out.timed_out);
        assert!(run.check().is_err());
    }
}
