//! `line`: one line in a file, optionally replacing the line that matches `match`.

use crate::model::Value;
use crate::resource::beneath::Entry;
use crate::resource::change::{Change, State};
use crate::resource::fsutil;
use crate::resource::provider::{Applied, Provider, ProviderCtx, ProviderError};

use crate::model::Resource;
use crate::resource::{
    AttrRule, AttrType, Candidates, ENSURE_PRESENT_ABSENT, ImplicitDep, NameRule, ResourceType,
    TypeSchema, attr,
};

pub(crate) struct Line;

static SCHEMA: TypeSchema = TypeSchema {
    doc: "a line in an existing file; NAME is the file's path unless `path` is given",
    name_rule: NameRule::Label,
    attrs: &[
        ENSURE_PRESENT_ABSENT,
        attr("path", AttrType::AbsPath, "the file (default: NAME)"),
        attr("line", AttrType::String, "the exact line").with_rule(AttrRule::SingleLine),
        attr(
            "match",
            AttrType::Regex,
            "a regular expression; the first matching line is replaced",
        ),
    ],
    exclusive: &[],
    required_when_present: &["line"],
    present_only: &[],
    path_attr: Some("path"),
};

/// The file a `line` resource edits.
fn path_of(res: &Resource) -> &str {
    res.attr_str("path").unwrap_or(&res.id.name)
}

impl ResourceType for Line {
    fn import_probe(&self) -> Result<Vec<&'static str>, crate::resource::import::ImportError> {
        Err(crate::resource::import::ImportError::NotImportable {
            kind: "line",
            why: "which line to keep is not read from the file; import the whole `file` instead",
        })
    }

    fn provider(&self) -> &dyn crate::resource::provider::Provider {
        self
    }

    fn diff(&self, res: &Resource, observed: &State) -> Change {
        crate::resource::diff_attrs(res, observed, &["path", "match"])
    }

    fn kind(&self) -> &'static str {
        "line"
    }

    fn schema(&self) -> &TypeSchema {
        &SCHEMA
    }

    fn implicit_deps(&self, res: &Resource) -> Vec<ImplicitDep> {
        vec![ImplicitDep {
            candidates: Candidates::one("file", path_of(res)),
            reason: "edits file",
        }]
    }
}

impl Provider for Line {
    fn read(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<State, ProviderError> {
        let mut state = State::new();
        let Some((_, text, _)) = read_file(ctx, res)? else {
            // The file may be created earlier in the same apply; the plan shows the line as new.
            state.insert("ensure".into(), Value::String("absent".into()));
            return Ok(state);
        };
        let wanted = res.attr_str("line").unwrap_or_default();
        let matcher = matcher(res)?;
        let found = find(&text, wanted, matcher.as_ref());
        let (ensure, line) = match found {
            Found::Exact => ("present", Some(wanted.to_string())),
            Found::Matching(line) => ("present", Some(line)),
            Found::Nothing => ("absent", None),
        };
        state.insert("ensure".into(), Value::String(ensure.into()));
        if let Some(line) = line {
            state.insert("line".into(), Value::String(line));
        }
        Ok(state)
    }

    fn apply(&self, ctx: &ProviderCtx<'_>, res: &Resource) -> Result<Applied, ProviderError> {
        let Some((entry, text, meta)) = read_file(ctx, res)? else {
            return Err(ProviderError::failed(format!(
                "{} does not exist; `line` edits existing files (declare the file as a `file` resource)",
                ctx.root
                    .join(path_of(res).trim_start_matches('/'))
                    .display()
            )));
        };
        let wanted = res.attr_str("line").unwrap_or_default();
        let matcher = matcher(res)?;
        let absent = res.attr_str("ensure") == Some("absent");
        let new_text = if absent {
            remove(&text, wanted, matcher.as_ref())
        } else {
            ensure(&text, wanted, matcher.as_ref())
        };
        if new_text == text {
            return Ok(Applied::AlreadyConverged);
        }
        // The new content is written beside the file, in the directory it was read from.
        ctx.durability.write(
            &entry,
            new_text.as_bytes(),
            meta.mode,
            (Some(meta.uid), Some(meta.gid)),
        )?;
        Ok(Applied::Converged { output: None })
    }
}

/// The file a `line` edits, its text and its metadata; `None` when it does not exist. It must
/// not be a symlink: editing through one would copy whatever it points at (perhaps outside
/// the root) into a plain file.
fn read_file(
    ctx: &ProviderCtx<'_>,
    res: &Resource,
) -> Result<Option<(Entry, String, fsutil::Meta)>, ProviderError> {
    let located = ctx.locate(path_of(res))?;
    let Some(entry) = located.entry else {
        return Ok(None);
    };
    let refused = || ProviderError::Refused {
        message: format!(
            "{} is a symlink; `line` edits regular files (name the link's target instead)",
            entry.path().display()
        ),
    };
    if let (fsutil::Kind::Symlink, _) = fsutil::inspect(&entry)? {
        return Err(refused());
    }
    // Opened without following a symlink: one swapped in since the look above fails.
    let mut file = match entry.open_read() {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) if err.raw_os_error() == Some(nix::libc::ELOOP) => return Err(refused()),
        Err(err) => return Err(ProviderError::io(entry.path(), err)),
    };
    let meta = fsutil::Meta::of_file(&file).map_err(|err| ProviderError::io(entry.path(), err))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text)
        .map_err(|err| ProviderError::io(entry.path(), err))?;
    Ok(Some((entry, text, meta)))
}

enum Found {
    Exact,
    Matching(String),
    Nothing,
}

fn matcher(res: &Resource) -> Result<Option<regex::Regex>, ProviderError> {
    res.attr_str("match")
        .map(|pattern| {
            regex::Regex::new(pattern)
                .map_err(|err| ProviderError::failed(format!("bad `match`: {err}")))
        })
        .transpose()
}

fn find(text: &str, wanted: &str, matcher: Option<&regex::Regex>) -> Found {
    if text.lines().any(|line| line == wanted) {
        return Found::Exact;
    }
    match matcher.and_then(|m| text.lines().find(|line| m.is_match(line))) {
        Some(line) => Found::Matching(line.to_string()),
        None => Found::Nothing,
    }
}

/// The text with the line present: an exact line is left alone, else the first line that
/// matches `match` is replaced, else the line is appended.
fn ensure(text: &str, wanted: &str, matcher: Option<&regex::Regex>) -> String {
    if text.lines().any(|line| line == wanted) {
        return text.to_string();
    }
    if let Some(matcher) = matcher {
        let mut res = String::with_capacity(text.len() + wanted.len());
        let mut replaced = false;
        for line in text.split_inclusive('\n') {
            let bare = line.strip_suffix('\n').unwrap_or(line);
            if !replaced && matcher.is_match(bare) {
                replaced = true;
                res.push_str(wanted);
                if line.ends_with('\n') {
                    res.push('\n');
                }
            } else {
                res.push_str(line);
            }
        }
        if replaced {
            return res;
        }
    }
    let mut res = text.to_string();
    if !res.is_empty() && !res.ends_with('\n') {
        res.push('\n');
    }
    res.push_str(wanted);
    res.push('\n');
    res
}

/// The text without the line (or, with `match`, without every matching line).
fn remove(text: &str, wanted: &str, matcher: Option<&regex::Regex>) -> String {
    text.split_inclusive('\n')
        .filter(|line| {
            let bare = line.strip_suffix('\n').unwrap_or(line);
            bare != wanted && !matcher.is_some_and(|m| m.is_match(bare))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_first_match_or_appends() {
        let matcher = regex::Regex::new("^a =").unwrap();
        assert_eq!(
            ensure("x\na = 1\na = 2\n", "a = 3", Some(&matcher)),
            "x\na = 3\na = 2\n"
        );
        assert_eq!(ensure("x", "a = 3", Some(&matcher)), "x\na = 3\n");
        assert_eq!(ensure("a = 3\n", "a = 3", None), "a = 3\n");
        assert_eq!(remove("x\na = 1\ny\n", "zzz", Some(&matcher)), "x\ny\n");
    }
}
