//! The `--help` blocks quoted in docs/ are what the binary prints: a flag renamed or a help line
//! reworded fails here until the page is regenerated.
//!
//! A quoted block is a ```` ```text ```` fence whose first line is `$ steward ... --help` (or
//! `... -h`). `STEWARD_BLESS_DOCS=1 cargo test --test it docs_help` rewrites the blocks from the
//! binary; read the diff before committing it.

use std::path::{Path, PathBuf};

use crate::common::steward_bin;

/// One quoted help block: where it is and what command printed it.
struct Block {
    /// Byte range of the quoted output (after the `$ ...` line, up to the closing fence).
    output: std::ops::Range<usize>,
    /// The arguments after `steward`.
    args: Vec<String>,
    line: usize,
}

fn help_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut offset = 0;
    let mut lines = text.split_inclusive('\n').enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        offset += line.len();
        if line.trim_end() != "```text" {
            continue;
        }
        let Some((_, command)) = lines.peek().copied() else {
            break;
        };
        let Some(args) = command.trim_end().strip_prefix("$ steward ") else {
            continue;
        };
        let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
        let asks_help = args
            .last()
            .is_some_and(|last| last == "--help" || last == "-h");
        if !asks_help || args.iter().any(|arg| arg == "--") {
            continue;
        }
        lines.next();
        offset += command.len();
        let output_start = offset;
        for (_, line) in lines.by_ref() {
            if line.trim_end() == "```" {
                break;
            }
            offset += line.len();
        }
        blocks.push(Block {
            output: output_start..offset,
            args,
            line: index + 2,
        });
        // The closing fence.
        offset += text[offset..].find('\n').map_or(0, |end| end + 1);
    }
    blocks
}

/// What the binary prints for `args`, at the width the docs are written for, with no
/// `STEWARD_*` variable set (clap would show their values).
fn help_of(args: &[String]) -> String {
    let mut command = std::process::Command::new(steward_bin());
    command.args(args).env("COLUMNS", "100");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("STEWARD_") {
            command.env_remove(name);
        }
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "steward {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

fn doc_pages() -> Vec<PathBuf> {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let mut pages: Vec<PathBuf> = walkdir::WalkDir::new(&docs)
        .into_iter()
        .map(|entry| entry.unwrap().into_path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"));
    pages.sort();
    pages
}

#[test]
fn quoted_help_is_what_the_binary_prints() {
    let bless = std::env::var_os("STEWARD_BLESS_DOCS").is_some_and(|value| value == "1");
    let mut stale = Vec::new();
    let mut quoted = 0;
    for page in doc_pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let blocks = help_blocks(&text);
        quoted += blocks.len();
        let mut fixed = text.clone();
        for block in blocks.iter().rev() {
            let printed = help_of(&block.args);
            if text[block.output.clone()] != printed {
                stale.push(format!(
                    "{}:{}: `steward {}`",
                    page.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                        .unwrap_or(&page)
                        .display(),
                    block.line,
                    block.args.join(" ")
                ));
                fixed.replace_range(block.output.clone(), &printed);
            }
        }
        if bless && fixed != text {
            std::fs::write(&page, fixed).unwrap();
        }
    }
    assert!(quoted >= 10, "only {quoted} quoted help blocks found");
    assert!(
        bless || stale.is_empty(),
        "help quoted in docs differs from the binary's (STEWARD_BLESS_DOCS=1 rewrites them):\n{}",
        stale.join("\n")
    );
}
