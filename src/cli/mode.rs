//! One explicit mode: `validate`, `plan`, `apply`, `drift`, `graph`, `runs`, `report`,
//! `findings` and `audit` act on this machine (local mode) unless a controller is configured, by
//! `STEWARD_CONTROLLER` or `--controller` (fleet mode). A flag that belongs to the other mode
//! is a usage error that names it and what chose the mode, never silently ignored.

use clap::ArgMatches;
use clap::parser::ValueSource;

/// The commands that have a local and a fleet mode.
const TWO_MODE_COMMANDS: &[&str] = &[
    "validate", "plan", "apply", "drift", "graph", "runs", "report", "findings", "audit",
];

/// Flags only local mode reads: the file system to act on, and the store in the project.
const LOCAL_FLAGS: &[(&str, &str)] = &[
    ("root", "--root"),
    ("state_dir", "--state-dir"),
    ("keep_runs", "--keep-runs"),
    ("project", "--project"),
];

/// Flags only fleet mode reads: how to reach and trust the controller.
const FLEET_FLAGS: &[(&str, &str)] = &[("token_file", "--token-file"), ("ca_file", "--ca-file")];

/// A flag given in the mode it does not belong to.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum ModeConflict {
    /// A local-mode flag while a controller is configured.
    #[error(
        "{flag} belongs to local mode, but {chosen_by} chose fleet mode, where the controller \
         acts on its agents' file systems and keeps runs in its own store: drop {flag}, or \
         unset STEWARD_CONTROLLER (and --controller) to act on this machine"
    )]
    LocalFlag {
        /// The flag, such as `--root`.
        flag: &'static str,
        /// `STEWARD_CONTROLLER` or `--controller`.
        chosen_by: &'static str,
    },
    /// A fleet-mode flag while no controller is configured.
    #[error(
        "{flag} belongs to fleet mode, but no controller is configured (neither \
         STEWARD_CONTROLLER nor --controller is set), so this command acts on this machine: \
         set STEWARD_CONTROLLER (or --controller) to the controller's API, or drop {flag}"
    )]
    FleetFlag {
        /// The flag, such as `--token-file`.
        flag: &'static str,
    },
}

/// Checks that the flags given on the command line belong to the mode the command runs in.
pub(super) fn check(matches: &ArgMatches) -> Result<(), ModeConflict> {
    let Some((command, sub)) = matches.subcommand() else {
        return Ok(());
    };
    if !TWO_MODE_COMMANDS.contains(&command) {
        return Ok(());
    }
    let chosen_by = match source(sub, "controller") {
        Some(ValueSource::EnvVariable) => Some("STEWARD_CONTROLLER"),
        Some(ValueSource::CommandLine) => Some("--controller"),
        _ => None,
    };
    match chosen_by {
        Some(chosen_by) => {
            // `--root` is the command's, or the top level's when given before the command.
            let local = LOCAL_FLAGS
                .iter()
                .find(|(id, _)| given(sub, id) || (*id == "root" && given(matches, id)));
            match local {
                Some(&(_, flag)) => Err(ModeConflict::LocalFlag { flag, chosen_by }),
                None => Ok(()),
            }
        }
        None => match FLEET_FLAGS.iter().find(|(id, _)| given(sub, id)) {
            Some(&(_, flag)) => Err(ModeConflict::FleetFlag { flag }),
            None => Ok(()),
        },
    }
}

/// Where the value of `id` came from, when the command has that argument and it has a value.
fn source(matches: &ArgMatches, id: &str) -> Option<ValueSource> {
    if matches.ids().any(|known| known.as_str() == id) {
        matches.value_source(id)
    } else {
        None
    }
}

/// True when `id` was given on the command line.
fn given(matches: &ArgMatches, id: &str) -> bool {
    source(matches, id) == Some(ValueSource::CommandLine)
}
