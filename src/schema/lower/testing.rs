#![cfg(test)]

//! What the unit tests of lowering share: a project built in memory from YAML texts, a
//! [`ProjectFiles`] backed by a map, and lowering with the built-in resource types.
//!
//! Test-only: nothing here is compiled into steward.

use std::collections::BTreeMap;

use crate::diag::{Diagnostic, Source};
use crate::document::{self, Module, Project, Syntax};
use crate::model::{Facts, Model};
use crate::resource::Registry;
use crate::schema::lower::{Config, KnownNode, ProjectFiles, lower};

/// Files by the path documents name them with.
#[derive(Default)]
pub(super) struct MemFiles(pub(super) BTreeMap<String, Vec<u8>>);

impl MemFiles {
    /// One file.
    pub(super) fn with(path: &str, bytes: &[u8]) -> MemFiles {
        MemFiles(BTreeMap::from([(path.to_string(), bytes.to_vec())]))
    }
}

impl ProjectFiles for MemFiles {
    fn read(&self, _document: &Source, relative: &str) -> Result<Vec<u8>, String> {
        self.0
            .get(relative)
            .cloned()
            .ok_or_else(|| format!("no file `{relative}`"))
    }
}

/// A project of the YAML documents `(name, text)`, none of them on disk.
pub(super) fn project(documents: &[(&str, &str)]) -> Project {
    let mut project = Project::default();
    for (name, text) in documents {
        let source = project
            .sources
            .add(name.to_string(), None, text.to_string());
        let parsed = document::parse(source, text, Syntax::Yaml);
        assert!(
            parsed.diagnostics.is_empty(),
            "{name}: {:?}",
            parsed.diagnostics
        );
        project.documents.extend(parsed.documents);
    }
    project
}

/// Adds the module `name` of one document, `text`, which every top-level document (and the
/// module itself) may `use` as `name` (the loader's job in a real project).
pub(super) fn add_module(project: &mut Project, name: &str, text: &str) {
    let source = project
        .sources
        .add(format!("{name}/main.yaml"), None, text.to_string());
    let parsed = document::parse(source, text, Syntax::Yaml);
    assert!(
        parsed.diagnostics.is_empty(),
        "{name}: {:?}",
        parsed.diagnostics
    );
    project.modules.insert(
        name.to_string(),
        Module {
            name: name.to_string(),
            documents: parsed.documents,
        },
    );
    // The module's own documents may use it too (a loop, for the depth limit).
    let users: Vec<_> = project
        .documents
        .iter()
        .map(|doc| doc.source)
        .chain([source])
        .collect();
    for source in users {
        project
            .uses
            .insert((source, name.to_string()), name.to_string());
    }
}

/// The facts of the `local` node in these tests.
pub(super) fn local_facts() -> Facts {
    Facts {
        hostname: "here".into(),
        os_family: "debian".into(),
        os_release: "12".into(),
        arch: "x86_64".into(),
        addresses: Vec::new(),
        ..Facts::default()
    }
}

/// What a test may vary about lowering.
#[derive(Default)]
pub(super) struct Setup {
    pub(super) files: MemFiles,
    pub(super) overrides: Vec<(&'static str, &'static str)>,
    pub(super) inventory: Vec<KnownNode>,
    pub(super) adhoc: Option<Vec<String>>,
}

/// Lowers `project` with the built-in types and `setup`.
pub(super) fn lower_with(project: &Project, setup: Setup) -> (Model, Vec<Diagnostic>) {
    let registry = Registry::builtin();
    let config = Config {
        registry: &registry,
        files: &setup.files,
        local_facts: local_facts(),
        overrides: setup
            .overrides
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        inventory: setup.inventory,
        adhoc: setup.adhoc,
    };
    lower(project, &config)
}

/// Lowers `project` with nothing beyond its documents.
pub(super) fn lower_plain(project: &Project) -> (Model, Vec<Diagnostic>) {
    lower_with(project, Setup::default())
}

/// The only diagnostic with `code`; fails the test with all of them otherwise.
pub(super) fn only<'d>(diagnostics: &'d [Diagnostic], code: &str) -> &'d Diagnostic {
    let found: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.code == code).collect();
    assert_eq!(found.len(), 1, "one `{code}` expected in {diagnostics:#?}");
    found[0]
}

/// The text the primary span of `diag` covers.
pub(super) fn text_at<'p>(project: &'p Project, diag: &Diagnostic) -> &'p str {
    let span = diag.span().expect("a located diagnostic");
    project.sources.slice(span)
}

/// The resource ids each node of `model` got, by node name.
pub(super) fn ids_by_node(model: &Model) -> BTreeMap<String, Vec<String>> {
    model
        .nodes
        .iter()
        .map(|node| {
            let ids = node
                .resources
                .iter()
                .map(|res| res.id.to_string())
                .collect();
            (node.name.clone(), ids)
        })
        .collect()
}

/// The resource `id` on node `node`.
pub(super) fn resource<'m>(model: &'m Model, node: &str, id: &str) -> &'m crate::model::Resource {
    model
        .nodes
        .iter()
        .filter(|n| n.name == node)
        .flat_map(|n| n.resources.iter())
        .find(|res| res.id.to_string() == id)
        .unwrap_or_else(|| panic!("no `{id}` on `{node}` in {:#?}", ids_by_node(model)))
}
