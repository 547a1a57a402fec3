//! The provider failure and command output vocabulary: [`ProviderError`] and [`CommandOutput`].
//!
//! Pure data shared by the provider contract ([`crate::resource::provider`], which re-exports
//! both) and the layers it builds on, the group commit ([`crate::resource::durability`]) and
//! the command runner ([`crate::resource::command`]): they sit below the contract and report
//! their failures in its terms without importing it.
//! Nothing here does IO or knows a resource kind.

use std::path::{Path, PathBuf};

/// Captured output of a command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// The arguments that ran.
    pub argv: Vec<String>,
    /// Exit code, `None` when killed by a signal or a timeout.
    pub exit_code: Option<i32>,
    /// Standard output, capped.
    pub stdout: String,
    /// Standard error, capped.
    pub stderr: String,
    /// True when either stream was cut at the cap.
    pub truncated: bool,
    /// True when the command was killed at its timeout.
    pub timed_out: bool,
    /// True when the command was killed because its run was cancelled.
    pub cancelled: bool,
    /// Bytes written to standard output in all (more than kept when truncated).
    pub stdout_bytes: u64,
    /// Bytes written to standard error in all.
    pub stderr_bytes: u64,
}

/// Why a provider could not read or converge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// A system call on a path failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{}` {}", argv.join(" "), describe_status(output))]
    Command {
        /// The arguments.
        argv: Vec<String>,
        /// What it printed and how it ended.
        output: Box<CommandOutput>,
    },
    /// steward will not do this (a path escaping the root, an unsafe request).
    #[error("refused: {message}")]
    Refused {
        /// Why.
        message: String,
    },
    /// The node cannot do this (no systemd, no dpkg, not under `--root`).
    #[error("unsupported: {message}")]
    Unsupported {
        /// Why.
        message: String,
    },
    /// Something appeared at a path the plan found absent, so a staged creation left it
    /// alone; the executor applies the resource again with every check.
    #[error("{}: appeared since the plan", path.display())]
    Appeared {
        /// The path.
        path: PathBuf,
    },
    /// Anything else, said plainly.
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
    },
}

impl ProviderError {
    /// An [`ProviderError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ProviderError {
        ProviderError::Io {
            path: path.into(),
            source,
        }
    }

    /// A [`ProviderError::Failed`].
    pub fn failed(message: impl Into<String>) -> ProviderError {
        ProviderError::Failed {
            message: message.into(),
        }
    }

    /// The error for a missing parent directory.
    pub fn missing_parent(parent: &Path) -> ProviderError {
        ProviderError::failed(format!(
            "parent directory {} does not exist; declare it as a `directory` resource",
            parent.display()
        ))
    }
}

fn describe_status(output: &CommandOutput) -> String {
    let status = match (output.timed_out, output.exit_code) {
        (true, _) => "timed out".to_string(),
        (false, Some(code)) => format!("exited with {code}"),
        (false, None) => "was killed by a signal".to_string(),
    };
    let stderr = output.stderr.trim();
    if stderr.is_empty() {
        status
    } else {
        let last = stderr.lines().last().unwrap_or(stderr);
        format!("{status}: {last}")
    }
}
