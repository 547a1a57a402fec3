//! `steward man`: manual pages rendered from the command-line definition with clap_mangen,
//! so they never disagree with `--help`.
//!
//! `cargo install` copies binaries only (it cannot install data files: rust-lang/cargo#2729),
//! so `steward man --install` writes the pages where man-db looks for a binary's pages:
//! for each directory BIN on PATH it searches `BIN/../share/man` (manpath(5), "SEARCH PATH").

use std::path::{Path, PathBuf};

use super::Exit;

/// `steward man`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct ManArgs {
    /// Write steward.1 and one page per command (steward-plan.1, ...) instead of printing
    /// steward.1.
    #[arg(long)]
    install: bool,
    /// Where --install writes the pages (default: `BIN/../share/man/man1`, BIN being the
    /// directory of the running steward).
    #[arg(long, value_name = "DIR", requires = "install")]
    dir: Option<PathBuf>,
}

/// Why the pages could not be rendered or written.
#[derive(Debug, thiserror::Error)]
enum ManError {
    /// Where the running binary is cannot be told.
    #[error("cannot tell where steward runs from (give --dir): {0}")]
    Exe(#[source] std::io::Error),
    /// The directory cannot be made, or a page written.
    #[error("{}: {source}", path.display())]
    Write {
        /// The directory or page.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Prints steward(1), or installs every page.
pub(crate) fn man(command: &clap::Command, args: &ManArgs) -> std::io::Result<Exit> {
    let mut command = command.clone();
    // NAME reads `steward - ABOUT`: the about without the `steward: ` that `--help` starts with.
    let about = command.get_about().map(ToString::to_string);
    if let Some(rest) = about
        .as_deref()
        .and_then(|about| about.strip_prefix("steward: "))
    {
        command = command.about(rest.to_string());
    }
    command.build();
    let pages = pages(&command)?;
    if !args.install {
        let top = pages
            .first()
            .map(|(_, page)| page.as_slice())
            .unwrap_or_default();
        return super::print_stdout(&String::from_utf8_lossy(top));
    }
    match install(args.dir.as_deref(), &pages) {
        Ok(dir) => {
            eprintln!(
                "installed {} manual pages in {}",
                pages.len(),
                dir.display()
            );
            Ok(Exit::Ok)
        }
        Err(err) => super::usage_error(&err.to_string()),
    }
}

/// Each page's file name and roff text: steward.1 first, then a page per command and per
/// subcommand (`steward-token-create.1`), named as their `SEE ALSO` lists them.
fn pages(command: &clap::Command) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut pages = Vec::new();
    let mut stack = vec![command.clone()];
    while let Some(command) = stack.pop() {
        let name = command.get_name().to_string();
        for sub in command
            .get_subcommands()
            .filter(|sub| sub.get_name() != "help")
        {
            let full = format!("{name}-{}", sub.get_name());
            stack.push(sub.clone().name(full.clone()).display_name(full));
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        pages.push((format!("{name}.1"), page));
    }
    Ok(pages)
}

/// Writes the pages to `dir`, or next to the running binary; gives the directory.
fn install(dir: Option<&Path>, pages: &[(String, Vec<u8>)]) -> Result<PathBuf, ManError> {
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => {
            let exe = std::env::current_exe().map_err(ManError::Exe)?;
            let bin = exe.parent().unwrap_or(Path::new("/"));
            bin.join("../share/man/man1")
        }
    };
    std::fs::create_dir_all(&dir).map_err(|source| ManError::Write {
        path: dir.clone(),
        source,
    })?;
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    for (name, page) in pages {
        let path = dir.join(name);
        std::fs::write(&path, page).map_err(|source| ManError::Write { path, source })?;
    }
    Ok(dir)
}
