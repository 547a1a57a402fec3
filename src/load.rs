//! Reads a project from disk: the IO edge in front of [`document`].
//!
//! Walks the project directory (hidden entries and `.steward/` skipped), reads every
//! `.yaml`/`.yml`/`.kdl` file with a size limit and a UTF-8 check, parses them in parallel,
//! and resolves `use` of modules from the embedded standard library (`std/NAME`) or from a
//! path inside the project. A file used as a module is part of that module, not a top-level
//! document.
//!
//! **Architecture Invariant:** every problem becomes a located [`Diagnostic`]; nothing here
//! panics or stops at the first bad file.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Component, Path, PathBuf};

use include_dir::{Dir, include_dir};
use rayon::prelude::*;

use crate::diag::{Diagnostic, SourceId, SourceMap, Span};
use crate::document::{self, Document, Module, Project, Syntax};

/// The largest document steward reads; larger files are refused unread.
pub const MAX_DOCUMENT_BYTES: u64 = 8 * 1024 * 1024;

/// The standard library, embedded so the binary needs nothing beside it.
static STDLIB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/stdlib");

/// Names of the standard library's modules (`std/NAME`).
pub fn stdlib_modules() -> Vec<String> {
    STDLIB
        .dirs()
        .map(|dir| format!("std/{}", dir.path().display()))
        .collect()
}

/// Reads the project at `path`: a directory of documents, or a single document file.
pub fn load(path: &Path) -> Project {
    let mut project = Project {
        root: path.to_path_buf(),
        ..Project::default()
    };
    let files = match discover(path) {
        Ok(files) => files,
        Err(diag) => {
            project.diagnostics.push(diag);
            return project;
        }
    };
    if path.is_file() {
        project.root = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    }
    let texts: Vec<(PathBuf, Result<String, FileProblem>)> = files
        .into_par_iter()
        .map(|file| {
            let text = read(&file);
            (file, text)
        })
        .collect();
    let mut to_parse = Vec::new();
    for (file, text) in texts {
        let name = file.display().to_string();
        match text {
            Ok(text) => {
                let id = project.sources.add(name, Some(file.clone()), text);
                to_parse.push((id, syntax_of(&file)));
            }
            Err(problem) => {
                let (text, offset, message, help) = match problem {
                    FileProblem::TooLarge(size) => (
                        String::new(),
                        0,
                        format!(
                            "document is {} MB; the limit is {} MB",
                            size / 1_000_000,
                            MAX_DOCUMENT_BYTES / 1_000_000
                        ),
                        "split it into several documents, or move data into a `source` file"
                            .to_string(),
                    ),
                    FileProblem::NotUtf8 { text, offset } => (
                        text,
                        offset,
                        "document is not UTF-8 text".to_string(),
                        "documents must be UTF-8; is this a binary file?".to_string(),
                    ),
                    FileProblem::Io(err) => (
                        String::new(),
                        0,
                        format!("cannot read document: {err}"),
                        String::new(),
                    ),
                };
                let id = project.sources.add(name, Some(file.clone()), text);
                let mut diag =
                    Diagnostic::error("load::unreadable", Span::new(id, offset, offset), message);
                if !help.is_empty() {
                    diag = diag.with_help(help);
                }
                project.diagnostics.push(diag);
            }
        }
    }
    let parsed = parse_all(&project.sources, &to_parse);
    for parsed in parsed {
        project.documents.extend(parsed.documents);
        project.diagnostics.extend(parsed.diagnostics);
    }
    if project.sources.is_empty() {
        project.diagnostics.push(
            Diagnostic::plain(
                "load::no_documents",
                format!("no documents in `{}`", path.display()),
            )
            .with_help(
                "steward reads the .yaml, .yml and .kdl files of a directory and its subdirectories (hidden ones skipped); start one with `steward: 1`",
            ),
        );
    }
    resolve_modules(&mut project);
    project
}

/// Parses sources in parallel, in order.
fn parse_all(sources: &SourceMap, to_parse: &[(SourceId, Syntax)]) -> Vec<document::Parsed> {
    to_parse
        .par_iter()
        .map(|&(id, syntax)| document::parse(id, &sources.get(id).text, syntax))
        .collect()
}

fn syntax_of(path: &Path) -> Syntax {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(Syntax::from_file_name)
        .unwrap_or(Syntax::Yaml)
}

enum FileProblem {
    TooLarge(u64),
    NotUtf8 { text: String, offset: usize },
    Io(std::io::Error),
}

fn read(path: &Path) -> Result<String, FileProblem> {
    let size = std::fs::metadata(path).map_err(FileProblem::Io)?.len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(FileProblem::TooLarge(size));
    }
    let bytes = std::fs::read(path).map_err(FileProblem::Io)?;
    String::from_utf8(bytes).map_err(|err| {
        let offset = err.utf8_error().valid_up_to();
        let text = String::from_utf8_lossy(err.as_bytes()).into_owned();
        // The lossy text replaces bad bytes with U+FFFD; the valid prefix is byte-identical.
        FileProblem::NotUtf8 { text, offset }
    })
}

/// The document files of a project, sorted by path.
fn discover(path: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let metadata = std::fs::metadata(path).map_err(|err| {
        Diagnostic::plain(
            "load::no_project",
            format!("cannot read project `{}`: {err}", path.display()),
        )
    })?;
    if metadata.is_file() {
        if Syntax::from_file_name(&path.to_string_lossy()).is_none() {
            return Err(Diagnostic::plain(
                "load::not_a_document",
                format!(
                    "`{}` is not a document: steward reads .yaml, .yml and .kdl files",
                    path.display()
                ),
            ));
        }
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(path)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| {
            entry.depth() == 0
                || !entry
                    .file_name()
                    .to_str()
                    .is_some_and(|name| name.starts_with('.'))
        });
    for entry in walker {
        let entry = entry.map_err(|err| {
            Diagnostic::plain("load::walk", format!("cannot read project: {err}"))
        })?;
        let is_document = entry
            .file_name()
            .to_str()
            .and_then(Syntax::from_file_name)
            .is_some();
        if entry.file_type().is_file() && is_document {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// Finds and loads every module that documents `use`, transitively.
fn resolve_modules(project: &mut Project) {
    let mut queue: VecDeque<(SourceId, String, Span, PathBuf)> = VecDeque::new();
    let enqueue = |queue: &mut VecDeque<_>, project: &Project, doc: &Document| {
        let dir = project
            .sources
            .get(doc.source)
            .path
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf);
        for (name, span) in document::module_refs(doc) {
            queue.push_back((doc.source, name, span, dir.clone().unwrap_or_default()));
        }
    };
    for doc in &project.documents {
        enqueue(&mut queue, project, doc);
    }
    let mut module_files: BTreeSet<PathBuf> = BTreeSet::new();
    while let Some((user, name, span, dir)) = queue.pop_front() {
        let key = match canonical_key(project, &name, &dir) {
            Ok(key) => key,
            Err(message) => {
                let known = stdlib_modules();
                let refs: Vec<&str> = known.iter().map(String::as_str).collect();
                let mut diag =
                    Diagnostic::error("load::module", span, message).with_label("module not found");
                if name.starts_with("std/") {
                    diag = diag.with_help(crate::diag::did_you_mean(&name, &refs));
                }
                project.diagnostics.push(diag);
                continue;
            }
        };
        project.uses.insert((user, name.clone()), key.clone());
        if project.modules.contains_key(&key) {
            continue;
        }
        let documents = match &key {
            key if key.starts_with("std/") => load_stdlib(project, &key[4..]),
            key => {
                let path = PathBuf::from(key);
                let files = match discover(&path) {
                    Ok(files) => files,
                    Err(diag) => {
                        project.diagnostics.push(diag);
                        Vec::new()
                    }
                };
                module_files.extend(files.iter().filter_map(|f| f.canonicalize().ok()));
                load_files(project, &files)
            }
        };
        for doc in &documents {
            enqueue(&mut queue, project, doc);
        }
        project.modules.insert(
            key.clone(),
            Module {
                name: key,
                documents,
            },
        );
    }
    // A document used as a module belongs to its module, not to the top level.
    let sources = &project.sources;
    project.documents.retain(|doc| {
        let path = sources
            .get(doc.source)
            .path
            .as_ref()
            .and_then(|p| p.canonicalize().ok());
        !path.is_some_and(|p| module_files.contains(&p))
    });
}

fn canonical_key(project: &Project, name: &str, dir: &Path) -> Result<String, String> {
    if let Some(std_name) = name.strip_prefix("std/") {
        return if STDLIB.get_dir(std_name).is_some() {
            Ok(name.to_string())
        } else {
            Err(format!("no module `{name}` in the standard library"))
        };
    }
    if Path::new(name).is_absolute()
        || Path::new(name)
            .components()
            .any(|c| c == Component::ParentDir)
    {
        let root = project.root.canonicalize().map_err(|err| err.to_string())?;
        let joined = dir
            .join(name)
            .canonicalize()
            .map_err(|_| format!("module `{name}` not found"))?;
        if !joined.starts_with(&root) {
            return Err(format!(
                "module `{name}` is outside the project; modules come from the project or `std/`"
            ));
        }
    }
    let path = dir.join(name);
    if !path.exists() {
        return Err(format!(
            "module `{name}` not found (looked for `{}`)",
            path.display()
        ));
    }
    Ok(path.display().to_string())
}

fn load_files(project: &mut Project, files: &[PathBuf]) -> Vec<Document> {
    let mut to_parse = Vec::new();
    for file in files {
        if let Some(id) = project.sources.find_path(file) {
            to_parse.push((id, syntax_of(file)));
            continue;
        }
        match read(file) {
            Ok(text) => {
                let id = project
                    .sources
                    .add(file.display().to_string(), Some(file.clone()), text);
                to_parse.push((id, syntax_of(file)));
            }
            Err(_) => project.diagnostics.push(Diagnostic::plain(
                "load::unreadable",
                format!("cannot read module file `{}`", file.display()),
            )),
        }
    }
    let mut documents = Vec::new();
    for parsed in parse_all(&project.sources, &to_parse) {
        documents.extend(parsed.documents);
        // Files inside the project were parsed (and reported) already.
        project.diagnostics.extend(parsed.diagnostics);
    }
    documents
}

fn load_stdlib(project: &mut Project, name: &str) -> Vec<Document> {
    let Some(dir) = STDLIB.get_dir(name) else {
        return Vec::new();
    };
    let mut documents = Vec::new();
    let mut files: Vec<_> = dir.files().collect();
    files.sort_by_key(|f| f.path());
    for file in files {
        let file_name = file.path().to_string_lossy().to_string();
        let Some(syntax) = Syntax::from_file_name(&file_name) else {
            continue;
        };
        let Some(text) = file.contents_utf8() else {
            continue;
        };
        let id = project
            .sources
            .add(format!("stdlib/{file_name}"), None, text.to_string());
        let parsed = document::parse(id, text, syntax);
        documents.extend(parsed.documents);
        project.diagnostics.extend(parsed.diagnostics);
    }
    documents
}

/// The text of a standard-library file (`sshd/sshd_config.j2`), for module templates.
pub fn stdlib_file(path: &str) -> Option<&'static str> {
    STDLIB.get_file(path).and_then(|f| f.contents_utf8())
}

/// Reads `template` and `source` files for lowering: relative to their document, never
/// outside the project (checked after resolving symlinks), from the embedded standard
/// library for its modules.
pub struct ProjectReader {
    root: Option<PathBuf>,
    /// Files already read, by the path as named: a `for_each` over thousands of items names
    /// one template thousands of times.
    cache: std::sync::Mutex<std::collections::HashMap<PathBuf, FileResult>>,
}

/// A file's bytes, or why it could not be read.
type FileResult = Result<std::sync::Arc<Vec<u8>>, String>;

/// The largest `source` or `template` file steward reads.
pub const MAX_PROJECT_FILE_BYTES: u64 = 64 * 1024 * 1024;

impl ProjectReader {
    /// A reader for the project at `root`.
    pub fn new(root: &Path) -> ProjectReader {
        ProjectReader {
            root: root.canonicalize().ok(),
            cache: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl crate::schema::ProjectFiles for ProjectReader {
    fn read(&self, document: &crate::diag::Source, relative: &str) -> Result<Vec<u8>, String> {
        let Some(path) = &document.path else {
            // A standard-library module: its files are embedded beside it.
            let dir = document
                .name
                .strip_prefix("stdlib/")
                .and_then(|n| n.rsplit_once('/'))
                .map_or("", |(dir, _)| dir);
            let embedded = format!("{dir}/{relative}");
            return STDLIB
                .get_file(&embedded)
                .map(|file| file.contents().to_vec())
                .ok_or_else(|| format!("no file `{relative}` in the standard library"));
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let target = dir.join(relative);
        if let Ok(cache) = self.cache.lock()
            && let Some(found) = cache.get(&target)
        {
            return found
                .as_ref()
                .map(|bytes| bytes.to_vec())
                .map_err(Clone::clone);
        }
        let result = self.read_uncached(&target, relative);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(target, result.clone().map(std::sync::Arc::new));
        }
        result
    }
}

impl ProjectReader {
    fn read_uncached(&self, target: &Path, relative: &str) -> Result<Vec<u8>, String> {
        let real = target
            .canonicalize()
            .map_err(|err| format!("cannot read `{}`: {err}", target.display()))?;
        let inside = self
            .root
            .as_ref()
            .is_some_and(|root| real.starts_with(root));
        if !inside {
            return Err(format!(
                "`{relative}` resolves outside the project (to `{}`)",
                real.display()
            ));
        }
        let size = std::fs::metadata(&real)
            .map_err(|err| format!("cannot read `{}`: {err}", target.display()))?
            .len();
        if size > MAX_PROJECT_FILE_BYTES {
            return Err(format!(
                "`{relative}` is {} MB; the limit is {} MB",
                size / 1_000_000,
                MAX_PROJECT_FILE_BYTES / 1_000_000
            ));
        }
        std::fs::read(&real).map_err(|err| format!("cannot read `{}`: {err}", target.display()))
    }
}
