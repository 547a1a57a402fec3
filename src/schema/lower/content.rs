//! A file's `template` or `source` read through [`ProjectFiles`](crate::schema::ProjectFiles)
//! into its desired `content`; the templates of a large `for_each` are rendered together, in
//! parallel, after the loop. This is the only file of lowering that reads files, and only
//! through `ProjectFiles`: lowering does no IO of its own.

use std::collections::{BTreeSet, HashMap};

use crate::diag::SourceId;
use crate::model::{Attr, Attrs, Resource, Value};
use crate::schema::lower::Lowerer;
use crate::schema::lower::params::Scope;

/// Items of a `for_each` from which templated file contents render in parallel.
pub(super) const PARALLEL_RENDER_MIN: usize = 64;

/// Template contents of a `for_each` waiting to be rendered together.
#[derive(Default)]
pub(super) struct PendingContents {
    /// The distinct template texts (one, usually, for thousands of items).
    texts: Vec<std::sync::Arc<str>>,
    /// Index in `texts` by text.
    known: HashMap<std::sync::Arc<str>, usize>,
    jobs: Vec<PendingContent>,
}

struct PendingContent {
    /// Index of the resource in the lowered resources.
    resource: usize,
    /// Index in `texts`.
    text: usize,
    ctx: minijinja::Value,
}

impl PendingContents {
    fn push(&mut self, resource: usize, text: std::sync::Arc<str>, ctx: minijinja::Value) {
        // Items of one loop share the text they were given: no hashing of it per item.
        let last = self
            .texts
            .last()
            .filter(|last| std::sync::Arc::ptr_eq(last, &text))
            .map(|_| self.texts.len() - 1);
        let idx = match last.or_else(|| self.known.get(&*text).copied()) {
            Some(idx) => idx,
            None => {
                self.texts.push(std::sync::Arc::clone(&text));
                self.known.insert(text, self.texts.len() - 1);
                self.texts.len() - 1
            }
        };
        self.jobs.push(PendingContent {
            resource,
            text: idx,
            ctx,
        });
    }
}

/// A template file read and compiled for deferred rendering (see `Lowerer::last_template`).
pub(super) struct DeferredTemplate {
    source: SourceId,
    path: String,
    /// The sensitive names it was checked against.
    sensitive: BTreeSet<String>,
    text: std::sync::Arc<str>,
    /// The sensitive names it reads.
    tainted: BTreeSet<String>,
}

impl Lowerer<'_> {
    /// Renders the deferred contents of a `for_each` in parallel and puts them in place; a
    /// failed one is rendered again alone, which reports the error and drops the content.
    pub(super) fn render_pending(
        &mut self,
        pending: PendingContents,
        source: SourceId,
        scope: &Scope,
        out: &mut [Resource],
    ) {
        let texts: Vec<&str> = pending.texts.iter().map(|text| &**text).collect();
        let jobs: Vec<(usize, &minijinja::Value)> = pending
            .jobs
            .iter()
            .map(|job| (job.text, &job.ctx))
            .collect();
        let rendered = self.renderer.render_prepared(&texts, &jobs);
        for (job, rendered) in pending.jobs.iter().zip(rendered) {
            let Some(resource) = out.get_mut(job.resource) else {
                continue;
            };
            match rendered {
                Some(text) => {
                    if let Some(content) = resource.attrs.get_mut("content") {
                        content.value = Value::String(text);
                    }
                }
                None => {
                    resource.attrs.remove("content");
                    let mut attrs = std::mem::take(&mut resource.attrs);
                    // The same text as prepared: its reads were counted then.
                    self.resolve_content(source, &mut attrs, &job.ctx, scope, None);
                    if let Some(resource) = out.get_mut(job.resource) {
                        resource.attrs = attrs;
                    }
                }
            }
        }
    }

    /// A file's `template` or `source` becomes its desired `content` (text, or bytes for a
    /// binary source), read from the project and, for templates, rendered like any value.
    /// Returns the sensitive names the template reads.
    pub(super) fn resolve_content(
        &mut self,
        source: SourceId,
        attrs: &mut Attrs,
        ctx: &minijinja::Value,
        scope: &Scope,
        deferred: Option<(&mut PendingContents, usize)>,
    ) -> BTreeSet<String> {
        let (name, path, span) = match (attrs.get("template"), attrs.get("source")) {
            (Some(attr), _) => (
                "template",
                attr.value.as_str().unwrap_or_default().to_string(),
                attr.span,
            ),
            (None, Some(attr)) => (
                "source",
                attr.value.as_str().unwrap_or_default().to_string(),
                attr.span,
            ),
            (None, None) => return BTreeSet::new(),
        };
        let mut deferred = deferred;
        if name == "template"
            && let Some((pending, resource)) = deferred.as_mut()
            && let Some(known) = self.last_template.as_ref().filter(|known| {
                known.source == source && known.path == path && known.sensitive == scope.sensitive
            })
        {
            // The same file as the item before: read and compiled already.
            pending.push(*resource, std::sync::Arc::clone(&known.text), ctx.clone());
            attrs.insert(
                "content".into(),
                Attr {
                    value: Value::String(String::new()),
                    span,
                    sensitive: !known.tainted.is_empty(),
                },
            );
            return known.tainted.clone();
        }
        let document = self.project.sources.get(source);
        let bytes = match self.files.read(document, &path) {
            Ok(bytes) => bytes,
            Err(message) => {
                self.error("schema::missing_file", span, message).help = Some(format!(
                    "`{name}` paths are relative to the document's directory"
                ));
                return BTreeSet::new();
            }
        };
        let (value, reads) = if name == "source" {
            match String::from_utf8(bytes) {
                Ok(text) => (Value::String(text), BTreeSet::new()),
                Err(err) => (Value::Bytes(err.into_bytes()), BTreeSet::new()),
            }
        } else {
            let Ok(text) = String::from_utf8(bytes) else {
                self.error(
                    "schema::missing_file",
                    span,
                    format!("template `{path}` is not UTF-8 text"),
                );
                return BTreeSet::new();
            };
            if let Some((pending, resource)) = deferred
                && let Some(reads) = self.renderer.prepare_file(&text, &scope.sensitive)
            {
                // Rendered after the loop; the attribute holds its place meanwhile.
                let text: std::sync::Arc<str> = text.into();
                self.last_template = Some(DeferredTemplate {
                    source,
                    path: path.clone(),
                    sensitive: scope.sensitive.clone(),
                    text: std::sync::Arc::clone(&text),
                    tainted: reads.clone(),
                });
                pending.push(resource, text, ctx.clone());
                attrs.insert(
                    "content".into(),
                    Attr {
                        value: Value::String(String::new()),
                        span,
                        sensitive: !reads.is_empty(),
                    },
                );
                return reads;
            }
            match self.renderer.render_file(&text, ctx, &scope.sensitive) {
                Ok((rendered, reads)) => (Value::String(rendered), reads),
                Err(problem) => {
                    self.error(
                        "template::error",
                        span,
                        format!("in template `{path}`: {problem}"),
                    )
                    .help = Some(
                        "the template context has `params`, `node` and, inside `for_each`, `item`"
                            .into(),
                    );
                    return BTreeSet::new();
                }
            }
        };
        attrs.insert(
            "content".into(),
            Attr {
                value,
                span,
                sensitive: !reads.is_empty(),
            },
        );
        reads
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::model::{Model, Value};
    use crate::schema::lower::content::PARALLEL_RENDER_MIN;
    use crate::schema::lower::testing::{
        MemFiles, Setup, lower_with, only, project, resource, text_at,
    };

    fn content<'m>(model: &'m Model, id: &str) -> &'m Value {
        &resource(model, "local", id)
            .attrs
            .get("content")
            .unwrap()
            .value
    }

    fn lower_with_files(
        site: &str,
        files: MemFiles,
    ) -> (
        crate::document::Project,
        Model,
        Vec<crate::diag::Diagnostic>,
    ) {
        let project = project(&[("site.yaml", site)]);
        let (model, diagnostics) = lower_with(
            &project,
            Setup {
                files,
                ..Setup::default()
            },
        );
        (project, model, diagnostics)
    }

    #[test]
    fn a_template_renders_into_content() {
        let (_, model, diagnostics) = lower_with_files(
            "steward: 1
parameters:
  who: { type: string, default: world }
resources:
  file:/etc/motd: { template: motd.j2 }
",
            MemFiles::with("motd.j2", b"hello {{ params.who }}"),
        );
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(
            content(&model, "file:/etc/motd"),
            &Value::String("hello world".into())
        );
    }

    #[test]
    fn a_binary_source_is_kept_as_bytes() {
        let (_, model, diagnostics) = lower_with_files(
            "steward: 1\nresources:\n  file:/etc/blob: { source: blob }\n",
            MemFiles::with("blob", &[0xff, 0x00]),
        );
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(
            content(&model, "file:/etc/blob"),
            &Value::Bytes(vec![0xff, 0x00])
        );
    }

    #[test]
    fn a_missing_file_is_located_at_the_attribute() {
        let (project, _, diagnostics) = lower_with_files(
            "steward: 1\nresources:\n  file:/etc/motd: { template: nope.j2 }\n",
            MemFiles::default(),
        );
        let diag = only(&diagnostics, "schema::missing_file");
        assert_eq!(text_at(&project, diag), "nope.j2");
        assert!(
            diag.help
                .as_deref()
                .unwrap()
                .contains("relative to the document")
        );
    }

    #[test]
    fn a_failing_template_is_reported_with_its_path() {
        let (project, _, diagnostics) = lower_with_files(
            "steward: 1\nresources:\n  file:/etc/motd: { template: bad.j2 }\n",
            MemFiles::with("bad.j2", b"{{ nope( }}"),
        );
        let diag = only(&diagnostics, "template::error");
        assert_eq!(text_at(&project, diag), "bad.j2");
        assert!(
            diag.message.starts_with("in template `bad.j2`"),
            "{}",
            diag.message
        );
    }

    #[test]
    fn a_large_for_each_renders_every_item_s_template() {
        let n_items = PARALLEL_RENDER_MIN + 6;
        let items: Vec<String> = (0..n_items).map(|idx| format!("i{idx}")).collect();
        let site = format!(
            "steward: 1\nresources:\n  file:/tmp/{{{{ item }}}}: {{ for_each: [{}], template: item.j2 }}\n",
            items.join(", ")
        );
        let files = MemFiles(BTreeMap::from([(
            "item.j2".to_string(),
            b"<{{ item }}>".to_vec(),
        )]));
        let (_, model, diagnostics) = lower_with_files(&site, files);
        assert!(diagnostics.is_empty(), "{diagnostics:#?}");
        assert_eq!(model.nodes[0].resources.len(), n_items);
        for item in &items {
            let id = format!("file:/tmp/{item}");
            assert_eq!(content(&model, &id), &Value::String(format!("<{item}>")));
        }
    }
}
