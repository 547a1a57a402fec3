//! The module layering of docs/architecture.md, enforced.
//!
//! The allowed dependencies are the table between the `layering` markers of
//! docs/architecture.md, read by this test, so the page and the check cannot disagree.
//! Every module of `src/` must have a row. The test reads the real paths each file names:
//! `use` declarations (grouped imports, `self` and `super::` included) and paths written inline
//! (`crate::local::timestamp()`), with comments, strings and `#[cfg(test)]` modules left out.
//! Inside every directory module (`fleet/`, `resource/`, ...) the dependencies between its
//! submodules must have no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::common::repo;

/// One source file: the module path it defines and the paths it names.
struct SourceFile {
    /// `src/fleet/run.rs` and `src/fleet/run/mod.rs` both define `["fleet", "run"]`.
    module: Vec<String>,
    rel: PathBuf,
    /// Every path the file names, from its root (`crate` and `super` resolved), such as
    /// `["fleet", "controller", "Controller"]` or `["std", "fs", "read"]`.
    crate_paths: Vec<Vec<String>>,
    other_paths: Vec<Vec<String>>,
}

fn source_files() -> Vec<SourceFile> {
    let src = repo().join("src");
    let mut res = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap().to_path_buf();
            if rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
                continue;
            }
            let module = module_of(&rel);
            let text = strip(&std::fs::read_to_string(&path).unwrap());
            let tokens = tokenize(&text);
            let mut crate_paths = Vec::new();
            let mut other_paths = Vec::new();
            for path in paths(&tokens) {
                match resolve(&module, &path) {
                    Some(absolute) => crate_paths.push(absolute),
                    None => other_paths.push(path),
                }
            }
            res.push(SourceFile {
                module,
                rel,
                crate_paths,
                other_paths,
            });
        }
    }
    res.sort_by(|a, b| a.rel.cmp(&b.rel));
    res
}

fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    if last != "mod.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

/// A path from `crate` or `super` as a path from the crate root; `None` for any other root.
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "super" | "self" => module.to_vec(),
        _ => return None,
    };
    // `crate` and `self` are the base itself; each `super` climbs one level.
    let mut rest = if path[0] == "super" { path } else { &path[1..] };
    while rest.first().is_some_and(|part| part == "super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The text with comments, string and character literals, and `#[cfg(test)]` items removed
/// (each replaced by a space, so tokens stay apart).
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut idx = 0;
    while idx < chars.len() {
        let rest = &chars[idx..];
        if rest.starts_with(&['/', '/']) {
            while idx < chars.len() && chars[idx] != '\n' {
                idx += 1;
            }
            out.push(' ');
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            while idx < chars.len() {
                if chars[idx..].starts_with(&['/', '*']) {
                    depth += 1;
                    idx += 2;
                } else if chars[idx..].starts_with(&['*', '/']) {
                    depth -= 1;
                    idx += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    idx += 1;
                }
            }
            out.push(' ');
        } else if let Some(len) = raw_string_len(rest) {
            idx += len;
            out.push(' ');
        } else if chars[idx] == '"' {
            idx += 1;
            while idx < chars.len() && chars[idx] != '"' {
                idx += if chars[idx] == '\\' { 2 } else { 1 };
            }
            idx += 1;
            out.push(' ');
        } else if chars[idx] == '\'' {
            // A character literal ('x', '\n', '\''), or else a lifetime, which stays.
            if rest.len() >= 3 && rest[1] != '\\' && rest[2] == '\'' {
                idx += 3;
                out.push(' ');
            } else if rest.len() >= 2 && rest[1] == '\\' {
                idx += 2;
                while idx < chars.len() && chars[idx] != '\'' {
                    idx += 1;
                }
                idx += 1;
                out.push(' ');
            } else {
                out.push('\'');
                idx += 1;
            }
        } else if !is_ident_char(chars.get(idx.wrapping_sub(1)).copied().unwrap_or(' '))
            && rest.starts_with(&"#[cfg(test)]".chars().collect::<Vec<_>>())
        {
            idx = end_of_item(&chars, idx);
            out.push(' ');
        } else {
            out.push(chars[idx]);
            idx += 1;
        }
    }
    out
}

/// The length of a raw string literal (`r"..."`, `r#"..."#`, `br"..."`) at the start of
/// `rest`, if there is one.
fn raw_string_len(rest: &[char]) -> Option<usize> {
    let mut idx = usize::from(rest.first() == Some(&'b'));
    if rest.get(idx) != Some(&'r') {
        return None;
    }
    idx += 1;
    let mut hashes = 0;
    while rest.get(idx) == Some(&'#') {
        hashes += 1;
        idx += 1;
    }
    if rest.get(idx) != Some(&'"') {
        return None;
    }
    idx += 1;
    while idx < rest.len() {
        if rest[idx] == '"'
            && rest[idx + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == '#')
                .count()
                == hashes
        {
            return Some(idx + 1 + hashes);
        }
        idx += 1;
    }
    Some(rest.len())
}

/// The end of the item that starts at `start` (at its attribute): after its matching `}`, or
/// its `;` when no block comes first. Comments and strings are already gone from what
/// follows only once `strip` reaches them, so braces inside strings of a test module could
/// miscount; test modules here keep their braces balanced in code, which is what counts.
fn end_of_item(chars: &[char], start: usize) -> usize {
    let mut idx = start + "#[cfg(test)]".len();
    let mut depth = 0;
    let mut in_string = false;
    while idx < chars.len() {
        let ch = chars[idx];
        if in_string {
            if ch == '\\' {
                idx += 1;
            } else if ch == '"' {
                in_string = false;
            }
        } else if chars[idx..].starts_with(&['/', '/']) {
            while idx < chars.len() && chars[idx] != '\n' {
                idx += 1;
            }
            continue;
        } else if let Some(len) = raw_string_len(&chars[idx..])
            .filter(|_| !is_ident_char(chars.get(idx.wrapping_sub(1)).copied().unwrap_or(' ')))
        {
            idx += len;
            continue;
        } else if ch == '\'' && chars.get(idx + 2) == Some(&'\'') {
            idx += 3;
            continue;
        } else if ch == '"' {
            in_string = true;
        } else if ch == '{' {
            depth += 1;
        } else if ch == '}' {
            depth -= 1;
            if depth == 0 {
                return idx + 1;
            }
        } else if ch == ';' && depth == 0 {
            return idx + 1;
        }
        idx += 1;
    }
    chars.len()
}

fn is_ident_char(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Open,
    Close,
    Comma,
    Star,
    Other,
}

fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut res = Vec::new();
    let mut idx = 0;
    while idx < chars.len() {
        let ch = chars[idx];
        if is_ident_char(ch) {
            let start = idx;
            while idx < chars.len() && is_ident_char(chars[idx]) {
                idx += 1;
            }
            let ident: String = chars[start..idx].iter().collect();
            res.push(Token::Ident(ident.trim_start_matches("r#").to_string()));
            continue;
        }
        if ch == '#' && chars.get(idx + 1) == Some(&'[') {
            // Attributes name no modules we track, and `#[path = ...]` is not used.
            res.push(Token::Other);
        } else if ch == ':' && chars.get(idx + 1) == Some(&':') {
            res.push(Token::PathSep);
            idx += 2;
            continue;
        } else if ch == '{' {
            res.push(Token::Open);
        } else if ch == '}' {
            res.push(Token::Close);
        } else if ch == ',' {
            res.push(Token::Comma);
        } else if ch == '*' {
            res.push(Token::Star);
        } else if !ch.is_whitespace() {
            res.push(Token::Other);
        }
        idx += 1;
    }
    res
}

/// Every path in the token stream that has at least one `::`, with groups expanded:
/// `crate::{a, b::{c, d}}` gives `crate::a`, `crate::b::c` and `crate::b::d`.
fn paths(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut res = Vec::new();
    let mut idx = 0;
    while idx < tokens.len() {
        let preceded_by_sep = idx > 0 && tokens[idx - 1] == Token::PathSep;
        if let Token::Ident(_) = &tokens[idx]
            && !preceded_by_sep
            && tokens.get(idx + 1) == Some(&Token::PathSep)
        {
            idx = path_tree(tokens, idx, Vec::new(), &mut res);
        } else {
            idx += 1;
        }
    }
    res
}

/// Reads `ident (:: ident)* (:: (group | *))?` from `idx`, with `prefix` before it, pushes the
/// full paths to `out`, and returns the index after it.
fn path_tree(
    tokens: &[Token],
    mut idx: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        match tokens.get(idx) {
            Some(Token::Ident(ident)) => {
                prefix.push(ident.clone());
                idx += 1;
            }
            Some(Token::Open) => {
                idx += 1;
                loop {
                    match tokens.get(idx) {
                        Some(Token::Close) => return idx + 1,
                        Some(Token::Comma) => idx += 1,
                        Some(Token::Ident(_)) => idx = path_tree(tokens, idx, prefix.clone(), out),
                        Some(_) => idx += 1,
                        None => return idx,
                    }
                }
            }
            Some(Token::Star) => {
                out.push(prefix);
                return idx + 1;
            }
            _ => {
                out.push(prefix);
                return idx;
            }
        }
        if tokens.get(idx) == Some(&Token::PathSep) {
            idx += 1;
        } else {
            out.push(prefix);
            return idx;
        }
    }
}

/// One row of the layering table.
struct Rule {
    may_import: BTreeSet<String>,
    must_not_use: Vec<String>,
}

/// The table between `<!-- layering:begin -->` and `<!-- layering:end -->` in
/// docs/architecture.md: `| `module` | `a`, `b` | `tokio`, `std::fs` |`.
fn layering_table() -> BTreeMap<String, Rule> {
    let doc = std::fs::read_to_string(repo().join("docs/architecture.md")).unwrap();
    let begin = doc
        .find("<!-- layering:begin -->")
        .expect("docs/architecture.md has no layering table");
    let end = doc[begin..].find("<!-- layering:end -->").unwrap() + begin;
    let mut table = BTreeMap::new();
    for line in doc[begin..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || !cells[1].starts_with('`') {
            continue;
        }
        let names = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        let module = names(cells[1]).remove(0);
        let rule = Rule {
            may_import: names(cells[2]).into_iter().collect(),
            must_not_use: names(cells[3]),
        };
        assert!(
            table.insert(module.clone(), rule).is_none(),
            "`{module}` has two rows in the layering table"
        );
    }
    table
}

/// Every dependency between the top-level modules of `src/` is allowed by the table, every
/// module has a row, and no module uses what its row forbids (tokio, the file system...).
#[test]
fn layering() {
    let table = layering_table();
    let files = source_files();
    let modules: BTreeSet<String> = files.iter().map(|file| file.module[0].clone()).collect();
    let mut problems = Vec::new();
    for module in &modules {
        if !table.contains_key(module) {
            problems.push(format!(
                "`{module}` has no row in the layering table of docs/architecture.md"
            ));
        }
    }
    for module in table.keys() {
        if !modules.contains(module) {
            problems.push(format!(
                "the layering table names `{module}`, which is not a module of src/"
            ));
        }
    }
    for file in &files {
        let Some(rule) = table.get(&file.module[0]) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for path in &file.crate_paths {
            let Some(target) = path.first() else { continue };
            if *target == file.module[0] || !modules.contains(target) {
                continue;
            }
            if !rule.may_import.contains(target) && seen.insert(target.clone()) {
                problems.push(format!(
                    "{} uses `crate::{}`, which `{}` may not import",
                    file.rel.display(),
                    path.join("::"),
                    file.module[0]
                ));
            }
        }
        for path in &file.other_paths {
            let text = path.join("::");
            for banned in &rule.must_not_use {
                if (text == *banned || text.starts_with(&format!("{banned}::")))
                    && seen.insert(banned.clone())
                {
                    problems.push(format!(
                        "{} uses `{text}`, which `{}` must not",
                        file.rel.display(),
                        file.module[0]
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Inside every directory module, and between the top-level modules, dependencies go one
/// way: no cycle.
#[test]
fn no_import_cycles() {
    let files = source_files();
    let known: BTreeSet<Vec<String>> = files.iter().map(|file| file.module.clone()).collect();
    // Edges between siblings, per parent: for a file in `fleet::run`, a path to
    // `fleet::controller::X` is an edge `run -> controller` under `fleet`.
    let mut edges: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        for path in &file.crate_paths {
            for depth in 0..file.module.len() {
                let parent = &file.module[..depth];
                if path.len() <= depth || path[..depth] != *parent {
                    break;
                }
                let from = &file.module[depth];
                let to = &path[depth];
                let mut target = parent.to_vec();
                target.push(to.clone());
                if from != to && known.contains(&target) {
                    edges
                        .entry(parent.to_vec())
                        .or_default()
                        .entry(from.clone())
                        .or_default()
                        .insert(to.clone());
                }
            }
        }
    }
    let mut problems = Vec::new();
    for (parent, graph) in &edges {
        if let Some(cycle) = find_cycle(graph) {
            let scope = if parent.is_empty() {
                "src/".to_string()
            } else {
                format!("src/{}/", parent.join("/"))
            };
            problems.push(format!("import cycle in {scope}: {}", cycle.join(" -> ")));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|seen| seen == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

/// The reader finds what it must: grouped imports, `super::`, inline paths, and nothing in
/// comments, strings or test modules.
#[test]
fn the_reader_sees_real_paths_only() {
    let text = r#"
        use crate::{exec::{self, Env}, plan};
        use super::super::store::Store;
        use std::{fs, io::Write};
        // use crate::cli;
        /* crate::local::x() */
        fn f() { let _ = "crate::report"; crate::template::render(); let _c = '"'; }
        fn g<'a>(x: &'a str) -> &'a str { crate::diag::f(x) }
        #[cfg(test)]
        mod tests { use crate::load; fn t() { let _ = "}"; } }
        fn h() { tokio::spawn(async {}); }
    "#;
    let module = vec!["fleet".to_string(), "run".to_string(), "x".to_string()];
    let found: BTreeSet<String> = paths(&tokenize(&strip(text)))
        .into_iter()
        .map(|path| match resolve(&module, &path) {
            Some(absolute) => format!("crate::{}", absolute.join("::")),
            None => path.join("::"),
        })
        .collect();
    let expected: BTreeSet<String> = [
        "crate::exec::self",
        "crate::exec::Env",
        "crate::plan",
        "crate::fleet::store::Store",
        "std::fs",
        "std::io::Write",
        "crate::template::render",
        "crate::diag::f",
        "tokio::spawn",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    assert_eq!(found, expected);
}
