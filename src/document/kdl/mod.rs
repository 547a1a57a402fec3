//! The KDL spelling, read with the `kdl` crate and mapped onto the shared tree.
//!
//! A KDL document is a list of nodes; each top-level node becomes one entry of the same
//! top-level map a YAML document has:
//!
//! | KDL | tree (as YAML) |
//! |---|---|
//! | `steward 1` | `steward: 1` |
//! | `parameter "motd" type="string" default="hi"` | `parameters: { motd: { type: string, default: hi } }` |
//! | `node "web-1" { tags role="web" }` | `nodes: { web-1: { tags: { role: web } } }` |
//! | `association "a" mode="detect" { targets role="web" }` | `associations: { a: { mode: detect, targets: { tags: { role: web } } } }` |
//! | `use "std/sshd" permit_root_login=#false` | `use: [ { module: std/sshd, with: { permit_root_login: false } } ]` |
//! | `file "/etc/motd" mode="0644" { content "hi" }` | `resources: { "file:/etc/motd": { mode: "0644", content: hi } }` |
//!
//! Inside a node, properties and child nodes are attributes. A child with one argument is a
//! scalar, with several a list, with properties or children a map; children all named `-`
//! make a list of maps. The text is read by [`parser`], which refuses blocks nested past
//! [`MAX_DEPTH`].

pub mod parser;

use parser::{Entry as KdlEntry, KdlNode, Scalar as KdlValue, TextRange};

use crate::diag::{Diagnostic, SourceId, Span};
use crate::document::{
    Document, Key, MAX_DEPTH, MAX_DIAGNOSTICS_PER_FILE, Node, Parsed, Syntax, Value,
};

/// Parses one KDL file into a single [`Document`]; a file with syntax errors gives none.
pub fn parse(source: SourceId, text: &str) -> Parsed {
    let parsed = parser::parse(text, MAX_DIAGNOSTICS_PER_FILE);
    if !parsed.errors.is_empty() {
        let mut diagnostics: Vec<Diagnostic> = parsed
            .errors
            .into_iter()
            .map(|err| {
                let code = if err.message.starts_with("KDL nesting deeper") {
                    "document::too_deep"
                } else {
                    "document::kdl"
                };
                let span = Span::new(source, err.span.start, err.span.end.min(text.len()));
                let message = if code == "document::kdl" {
                    format!("invalid KDL: {}", err.message)
                } else {
                    err.message
                };
                let mut diag = Diagnostic::error(code, span, message).with_label(err.label);
                if let Some(help) = err.help {
                    diag = diag.with_help(help);
                }
                diag
            })
            .collect();
        if parsed.more_errors > 0 {
            diagnostics.push(super::more_problems(source, parsed.more_errors));
        }
        return Parsed {
            documents: Vec::new(),
            diagnostics,
        };
    }
    let mut reader = Reader {
        source,
        text,
        diagnostics: Vec::new(),
    };
    let root = reader.top_level(&parsed.nodes);
    let document = Document {
        source,
        syntax: Syntax::Kdl,
        root,
    };
    super::within_value_limit(Syntax::Kdl, vec![document], reader.diagnostics)
}

struct Reader<'a> {
    source: SourceId,
    text: &'a str,
    diagnostics: Vec<Diagnostic>,
}

/// Collects map entries, reporting a key given twice.
struct MapBuilder {
    entries: Vec<(Key, Node)>,
    /// Index of each key in `entries`: a section may hold tens of thousands of resources.
    index: foldhash::HashMap<String, usize>,
}

impl MapBuilder {
    fn new() -> MapBuilder {
        MapBuilder {
            entries: Vec::new(),
            index: foldhash::HashMap::default(),
        }
    }

    fn insert(&mut self, key: Key, node: Node, diagnostics: &mut Vec<Diagnostic>) {
        if let Some(first) = self.index.get(&key.name).map(|&idx| &self.entries[idx].0) {
            diagnostics.push(
                Diagnostic::error(
                    "document::duplicate_key",
                    key.span,
                    format!("`{}` is given twice", key.name),
                )
                .with_label("given again here")
                .with_secondary(first.span, "first given here"),
            );
            return;
        }
        self.index.insert(key.name.clone(), self.entries.len());
        self.entries.push((key, node));
    }

    /// Inserts `nested` as the map under `name`, spanned by its first key; nothing when it
    /// is empty.
    fn insert_nested(&mut self, name: &str, nested: MapBuilder, diagnostics: &mut Vec<Diagnostic>) {
        let Some(span) = nested.entries.first().map(|(key, _)| key.span) else {
            return;
        };
        let key = Key {
            name: name.to_string(),
            span,
        };
        self.insert(key, nested.into_node(span), diagnostics);
    }

    fn into_node(self, span: Span) -> Node {
        Node {
            span,
            value: Value::Map(self.entries),
        }
    }
}

/// Top-level sections that collect named nodes, by KDL node name.
const SECTIONS: &[(&str, &str)] = &[
    ("parameter", "parameters"),
    ("node", "nodes"),
    ("association", "associations"),
];

impl Reader<'_> {
    fn span(&self, span: TextRange) -> Span {
        let end = span.end.min(self.text.len());
        Span::new(self.source, span.start.min(end), end)
    }

    fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::error("document::kdl_shape", span, message));
    }

    fn top_level(&mut self, kdl_nodes: &[KdlNode]) -> Node {
        let doc_span = Span::new(self.source, 0, self.text.len());
        let mut root = MapBuilder::new();
        let mut sections: Vec<(&'static str, Span, MapBuilder)> = Vec::new();
        let mut uses: Vec<Node> = Vec::new();
        let mut uses_span = None;
        for kdl_node in kdl_nodes {
            let name = kdl_node.name.value.as_str();
            let name_span = self.span(kdl_node.name.span);
            let node_span = self.span(kdl_node.span);
            if name == "steward" {
                let value = self.single_value(kdl_node);
                root.insert(
                    Key {
                        name: "steward".into(),
                        span: name_span,
                    },
                    value,
                    &mut self.diagnostics,
                );
                continue;
            }
            if name == "use" {
                uses_span.get_or_insert(name_span);
                uses.push(self.use_node(kdl_node));
                continue;
            }
            // Resources are keyed `TYPE:NAME`; the other sections by their name argument.
            let (section, key_name, key_span) = match SECTIONS.iter().find(|(kdl, _)| *kdl == name)
            {
                Some(&(_, section)) => {
                    let Some((arg, arg_span)) = self.name_argument(kdl_node) else {
                        continue;
                    };
                    (section, arg, name_span_to(name_span, arg_span))
                }
                None => {
                    let Some((arg, arg_span)) = self.name_argument(kdl_node) else {
                        continue;
                    };
                    (
                        "resources",
                        format!("{name}:{arg}"),
                        name_span_to(name_span, arg_span),
                    )
                }
            };
            let body = if section == "associations" {
                self.association_body(kdl_node, node_span)
            } else {
                self.body(kdl_node, 1, node_span, 0)
            };
            let builder = match sections.iter_mut().position(|(s, _, _)| *s == section) {
                Some(idx) => &mut sections[idx].2,
                None => {
                    sections.push((section, name_span, MapBuilder::new()));
                    let last = sections.len() - 1;
                    &mut sections[last].2
                }
            };
            builder.insert(
                Key {
                    name: key_name,
                    span: key_span,
                },
                body,
                &mut self.diagnostics,
            );
        }
        for (section, span, builder) in sections {
            root.entries.push((
                Key {
                    name: section.to_string(),
                    span,
                },
                builder.into_node(span),
            ));
        }
        if let Some(span) = uses_span {
            root.entries.push((
                Key {
                    name: "use".into(),
                    span,
                },
                Node {
                    span,
                    value: Value::List(uses),
                },
            ));
        }
        root.into_node(doc_span)
    }

    /// The first argument of a named top-level node (`file "/etc/motd"`), which must be a string.
    fn name_argument(&mut self, kdl_node: &KdlNode) -> Option<(String, Span)> {
        let node_span = self.span(kdl_node.name.span);
        let kind = kdl_node.name.value.clone();
        let first = kdl_node
            .entries
            .iter()
            .find(|entry| entry.name.as_ref().is_none());
        match first {
            Some(entry) => {
                let span = self.value_span(entry);
                match &entry.value {
                    KdlValue::String(text) => Some((text.clone(), span)),
                    other => {
                        self.error(
                            span,
                            format!(
                                "the name of `{kind}` must be a string, found {}",
                                kdl_type(other)
                            ),
                        );
                        None
                    }
                }
            }
            None => {
                self.diagnostics.push(
                    Diagnostic::error(
                        "document::kdl_shape",
                        node_span,
                        format!("`{kind}` needs a name"),
                    )
                    .with_help(format!("write it as `{kind} \"NAME\" ...`")),
                );
                None
            }
        }
    }

    /// Properties and children of a node as a map, skipping the first `skip_args` arguments.
    fn body(&mut self, kdl_node: &KdlNode, skip_args: usize, span: Span, depth: usize) -> Node {
        let mut map = MapBuilder::new();
        for entry in kdl_node
            .entries
            .iter()
            .filter(|e| e.name.as_ref().is_none())
            .skip(skip_args)
        {
            let span = self.value_span(entry);
            self.error(
                span,
                format!(
                    "unexpected argument to `{}`; give attributes as `key=value` or child nodes",
                    kdl_node.name.value.as_str()
                ),
            );
        }
        self.insert_properties(&mut map, kdl_node);
        if let Some(children) = kdl_node.children.as_deref() {
            for child in children {
                let key = Key {
                    name: child.name.value.clone(),
                    span: self.span(child.name.span),
                };
                let value = self.child_value(child, depth + 1);
                map.insert(key, value, &mut self.diagnostics);
            }
        }
        map.into_node(span)
    }

    /// A node's `key=value` properties as map entries.
    fn insert_properties(&mut self, map: &mut MapBuilder, kdl_node: &KdlNode) {
        for entry in &kdl_node.entries {
            if let Some(name) = entry.name.as_ref() {
                let key = Key {
                    name: name.value.as_str().to_string(),
                    span: self.span(name.span),
                };
                let value = self.scalar(entry);
                map.insert(key, value, &mut self.diagnostics);
            }
        }
    }

    /// The value of an attribute written as a child node.
    fn child_value(&mut self, kdl_node: &KdlNode, depth: usize) -> Node {
        let span = self.span(kdl_node.span);
        let args: Vec<&KdlEntry> = kdl_node
            .entries
            .iter()
            .filter(|e| e.name.as_ref().is_none())
            .collect();
        let has_props = kdl_node.entries.iter().any(|e| e.name.as_ref().is_some());
        let children = kdl_node.children.as_deref().unwrap_or(&[]);
        if depth > MAX_DEPTH {
            self.error(span, "nesting too deep");
            return Node {
                span,
                value: Value::Null,
            };
        }
        if !args.is_empty() && (has_props || !children.is_empty()) {
            self.error(
                span,
                format!(
                    "`{}` mixes arguments with properties or children; use one or the other",
                    kdl_node.name.value.as_str()
                ),
            );
            return Node {
                span,
                value: Value::Null,
            };
        }
        if !children.is_empty() && children.iter().all(|c| c.name.value.as_str() == "-") {
            let items = children
                .iter()
                .map(|c| self.list_item(c, depth + 1))
                .collect();
            return Node {
                span,
                value: Value::List(items),
            };
        }
        match args.as_slice() {
            [] if !has_props && children.is_empty() => {
                self.error(
                    span,
                    format!("`{}` has no value", kdl_node.name.value.as_str()),
                );
                Node {
                    span,
                    value: Value::Null,
                }
            }
            [] => self.body(kdl_node, 0, span, depth),
            [single] => self.scalar(single),
            many => Node {
                span,
                value: Value::List(many.iter().map(|e| self.scalar(e)).collect()),
            },
        }
    }

    /// One `-` child: a scalar with one argument, a map with properties or children.
    fn list_item(&mut self, kdl_node: &KdlNode, depth: usize) -> Node {
        self.child_value(kdl_node, depth)
    }

    fn single_value(&mut self, kdl_node: &KdlNode) -> Node {
        let span = self.span(kdl_node.span);
        match kdl_node.entries.as_slice() {
            [entry] if entry.name.as_ref().is_none() => self.scalar(entry),
            _ => {
                self.error(
                    span,
                    format!(
                        "`{}` takes exactly one argument",
                        kdl_node.name.value.as_str()
                    ),
                );
                Node {
                    span,
                    value: Value::Null,
                }
            }
        }
    }

    /// `use "std/sshd" key=value` or `use "std/sshd" { with key=value }`.
    fn use_node(&mut self, kdl_node: &KdlNode) -> Node {
        let span = self.span(kdl_node.span);
        let mut map = MapBuilder::new();
        if let Some((module, module_span)) = self.name_argument(kdl_node) {
            let key = Key {
                name: "module".into(),
                span: self.span(kdl_node.name.span),
            };
            map.insert(
                key,
                Node {
                    span: module_span,
                    value: Value::String(module),
                },
                &mut self.diagnostics,
            );
        }
        let body = self.body(kdl_node, 1, span, 0);
        let mut with = MapBuilder::new();
        if let Value::Map(entries) = body.value {
            for (key, value) in entries {
                if key.name == "with" {
                    map.insert(key, value, &mut self.diagnostics);
                } else {
                    with.insert(key, value, &mut self.diagnostics);
                }
            }
        }
        map.insert_nested("with", with, &mut self.diagnostics);
        map.into_node(span)
    }

    /// An association: like any body, but `targets` has its own short spelling:
    /// `targets role="web"` (tags), `targets "web-1" "web-2"` (names), `targets all=#true`.
    fn association_body(&mut self, kdl_node: &KdlNode, span: Span) -> Node {
        let mut map = MapBuilder::new();
        for entry in kdl_node
            .entries
            .iter()
            .filter(|e| e.name.as_ref().is_none())
            .skip(1)
        {
            let span = self.value_span(entry);
            self.error(span, "unexpected argument to `association`; give attributes as `key=value` or child nodes");
        }
        self.insert_properties(&mut map, kdl_node);
        for child in kdl_node.children.as_deref().unwrap_or(&[]) {
            let key = Key {
                name: child.name.value.clone(),
                span: self.span(child.name.span),
            };
            let value = if key.name == "targets" {
                self.targets(child)
            } else {
                self.child_value(child, 1)
            };
            map.insert(key, value, &mut self.diagnostics);
        }
        map.into_node(span)
    }

    fn targets(&mut self, kdl_node: &KdlNode) -> Node {
        let span = self.span(kdl_node.span);
        let mut map = MapBuilder::new();
        let mut tags = MapBuilder::new();
        let mut names = Vec::new();
        let mut names_span = None;
        for entry in &kdl_node.entries {
            match entry.name.as_ref() {
                None => {
                    names_span.get_or_insert(self.value_span(entry));
                    names.push(self.scalar(entry));
                }
                Some(name) if name.value.as_str() == "all" => {
                    let key = Key {
                        name: "all".into(),
                        span: self.span(name.span),
                    };
                    let value = self.scalar(entry);
                    map.insert(key, value, &mut self.diagnostics);
                }
                Some(name) => {
                    let key = Key {
                        name: name.value.as_str().to_string(),
                        span: self.span(name.span),
                    };
                    let value = self.scalar(entry);
                    tags.insert(key, value, &mut self.diagnostics);
                }
            }
        }
        if let Some(names_span) = names_span {
            let key = Key {
                name: "names".into(),
                span: names_span,
            };
            map.insert(
                key,
                Node {
                    span: names_span,
                    value: Value::List(names),
                },
                &mut self.diagnostics,
            );
        }
        map.insert_nested("tags", tags, &mut self.diagnostics);
        if let Some(children) = kdl_node.children.as_deref() {
            for child in children {
                let key = Key {
                    name: child.name.value.clone(),
                    span: self.span(child.name.span),
                };
                let value = self.child_value(child, 2);
                map.insert(key, value, &mut self.diagnostics);
            }
        }
        map.into_node(span)
    }

    /// The span of an entry's value: for `key=value`, the part after `=`.
    fn value_span(&self, entry: &KdlEntry) -> Span {
        self.span(entry.value_span)
    }

    fn scalar(&mut self, entry: &KdlEntry) -> Node {
        let span = self.value_span(entry);
        let value = match &entry.value {
            KdlValue::String(text) => Value::String(text.clone()),
            KdlValue::Integer(number) => match i64::try_from(*number) {
                Ok(number) => Value::Int(number),
                Err(_) => {
                    self.error(span, format!("integer {number} is too large"));
                    Value::Null
                }
            },
            KdlValue::Float(number) => Value::Float(*number),
            KdlValue::Bool(value) => Value::Bool(*value),
            KdlValue::Null => Value::Null,
        };
        Node { span, value }
    }
}

fn name_span_to(name_span: Span, arg_span: Span) -> Span {
    Span::new(name_span.source, name_span.start, arg_span.end)
}

fn kdl_type(value: &KdlValue) -> &'static str {
    match value {
        KdlValue::String(_) => "a string",
        KdlValue::Integer(_) | KdlValue::Float(_) => "a number",
        KdlValue::Bool(_) => "a boolean",
        KdlValue::Null => "null",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Parsed {
        parse(SourceId(0), text)
    }

    #[test]
    fn resources_become_type_name_keys() {
        let text = "steward 1\nfile \"/srv/é/motd\" mode=\"0644\" {\n    content \"hi\"\n}\n";
        let parsed = check(text);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let root = &parsed.documents[0].root;
        let resources = root.get("resources").unwrap().as_map().unwrap();
        let (key, body) = &resources[0];
        assert_eq!(key.name, "file:/srv/é/motd");
        assert_eq!(&text[key.span.start..key.span.end], "file \"/srv/é/motd\"");
        let mode = body.get("mode").unwrap();
        assert_eq!(&text[mode.span.start..mode.span.end], "\"0644\"");
        let content = body.get("content").unwrap();
        assert_eq!(&text[content.span.start..content.span.end], "\"hi\"");
    }

    #[test]
    fn braces_in_strings_do_not_count() {
        let text = format!("steward 1\nfile \"/a\" content=\"{}\"\n", "{".repeat(200));
        assert!(check(&text).diagnostics.is_empty());
        let deep = format!("a {}{}", "{ b ".repeat(100), "}".repeat(100));
        let parsed = check(&deep);
        assert_eq!(parsed.diagnostics.len(), 1, "{:?}", parsed.diagnostics);
        assert_eq!(parsed.diagnostics[0].code, "document::too_deep");
    }
}
