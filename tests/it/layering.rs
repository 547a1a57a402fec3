//! The module layering of docs/architecture.md, enforced (STYLE.md 1.5): data flows one way,
//! and the pure stages never reach for IO, tokio, the store or the command line.

use std::path::Path;

use crate::common::repo;

/// Every `.rs` file under `src/<module>` (or the file `src/<module>.rs`).
fn rust_files(module: &str) -> Vec<std::path::PathBuf> {
    let dir = repo().join("src").join(module);
    let file = repo().join("src").join(format!("{module}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut res = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                res.push(path);
            }
        }
    }
    res
}

fn check(module: &str, banned: &[&str]) {
    for file in rust_files(module) {
        let text = std::fs::read_to_string(&file).unwrap();
        for banned in banned {
            assert!(
                !text.contains(banned),
                "{} uses `{banned}`, which module `{module}` must not",
                file.strip_prefix(repo())
                    .unwrap_or(Path::new("?"))
                    .display()
            );
        }
    }
}

#[test]
fn layering() {
    let outer = [
        "crate::cli",
        "crate::local",
        "crate::store",
        "crate::exec",
        "crate::report",
        "crate::load",
        "tokio::",
    ];
    check("diag", &["crate::"]);
    check(
        "document",
        &[
            &[
                "crate::model",
                "crate::schema",
                "crate::template",
                "crate::resource",
                "std::fs",
            ][..],
            &outer,
        ]
        .concat(),
    );
    check(
        "template",
        &[
            &[
                "crate::model",
                "crate::schema",
                "crate::resource",
                "std::fs",
                "std::env",
            ][..],
            &outer,
        ]
        .concat(),
    );
    check(
        "model",
        &[
            &[
                "crate::document",
                "crate::schema",
                "crate::template",
                "crate::resource",
            ][..],
            &outer,
        ]
        .concat(),
    );
    check("schema", &[&["std::fs"][..], &outer].concat());
    check("plan", &[&["std::fs"][..], &outer].concat());
    check(
        "store",
        &["crate::cli", "crate::local", "crate::exec", "tokio::"],
    );
    check(
        "report",
        &["crate::cli", "crate::local", "std::fs", "tokio::"],
    );
}
