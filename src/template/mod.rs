//! Renders minijinja templates inside document values.
//!
//! Owns [`Renderer`]: a fixed, pure minijinja environment (strict undefined, no auto-escape,
//! no loader, fuel-limited) that renders strings of a [`document::Node`] against a context
//! (`params`, `node`, `item`) and keeps every span. A string that is exactly one expression
//! (`"{{ params.admins }}"`) keeps the expression's type, so a list stays a list.
//!
//! **Architecture Invariant:** templates see only the context they are given: no file, no
//! environment variable, no clock, no network. An undefined variable is an error located at
//! the template text.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use minijinja::value::ValueKind;
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::diag::{Diagnostic, Span, suggest};
use crate::document::{self, Key, Node, Value};

/// Instructions a single template may execute before it is stopped.
const FUEL: u64 = 200_000;

/// The most operators (`+`, `|`, `.`, `[`, `(`, `and`, ...) one `{{ }}` or `{% %}` block, or
/// one bare expression, may hold. minijinja nests its syntax tree one level per link of an
/// operator chain and walks it recursively, without a limit of its own for chains: 40,000
/// terms of `{{ 1 + 1 + ... }}` overflowed the main thread's stack, fewer a worker thread's.
/// Real templates use a handful per expression.
pub const MAX_OPERATORS: usize = 1_000;

/// Renders templates with a fixed environment.
pub struct Renderer {
    env: RefCell<Environment<'static>>,
    /// Templates compiled so far (keyed by their text), with the variables they read: a
    /// `for_each` over thousands of items renders one template thousands of times.
    compiled: RefCell<HashMap<String, Arc<HashSet<String>>>>,
}

/// Compiled templates kept before the cache starts over.
const CACHE_LIMIT: usize = 4096;

/// A rendered value, and the sensitive variables it was derived from.
#[derive(Debug)]
pub struct Rendered {
    /// The value with templates rendered; spans unchanged.
    pub node: Node,
    /// The sensitive names (as given to [`Renderer::render`]) its templates read. Found from
    /// the variables each template mentions, so it over-approximates: a template that reads
    /// `params` whole reads every sensitive parameter.
    pub reads: BTreeSet<String>,
}

impl Rendered {
    /// True when any template in it read a sensitive variable.
    pub fn is_sensitive(&self) -> bool {
        !self.reads.is_empty()
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new()
    }
}

impl Renderer {
    /// The one environment steward renders with.
    pub fn new() -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(64);
        // Content ending in a newline keeps it: `content: "hi\n"` must write "hi\n".
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        Renderer {
            env: RefCell::new(env),
            compiled: RefCell::new(HashMap::new()),
        }
    }

    /// Renders every template string in `node`.
    ///
    /// `sensitive` names the dotted variables (`params.db_password`) whose use taints the result;
    /// the result says which of them it read. Errors go to `acc`; a value that failed to render
    /// comes back as `Null`.
    pub fn render(
        &self,
        source_text: &str,
        node: &Node,
        ctx: &minijinja::Value,
        sensitive: &BTreeSet<String>,
        acc: &mut Vec<Diagnostic>,
    ) -> Rendered {
        let mut reads = BTreeSet::new();
        let node = self.render_node(source_text, node, ctx, sensitive, &mut reads, acc);
        Rendered { node, reads }
    }

    fn render_node(
        &self,
        source_text: &str,
        node: &Node,
        ctx: &minijinja::Value,
        sensitive: &BTreeSet<String>,
        reads: &mut BTreeSet<String>,
        acc: &mut Vec<Diagnostic>,
    ) -> Node {
        let value = match &node.value {
            Value::String(text) if is_template(text) => {
                return self.render_string(
                    source_text,
                    text,
                    node.span,
                    ctx,
                    sensitive,
                    reads,
                    acc,
                );
            }
            Value::List(items) => Value::List(
                items
                    .iter()
                    .map(|item| self.render_node(source_text, item, ctx, sensitive, reads, acc))
                    .collect(),
            ),
            Value::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(key, value)| {
                        (
                            key.clone(),
                            self.render_node(source_text, value, ctx, sensitive, reads, acc),
                        )
                    })
                    .collect(),
            ),
            other => other.clone(),
        };
        Node {
            span: node.span,
            value,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn render_string(
        &self,
        source_text: &str,
        text: &str,
        span: Span,
        ctx: &minijinja::Value,
        sensitive: &BTreeSet<String>,
        reads: &mut BTreeSet<String>,
        acc: &mut Vec<Diagnostic>,
    ) -> Node {
        let failed = Node {
            span,
            value: Value::Null,
        };
        // `{{ expr }}` alone keeps the expression's own type.
        if let Some(expr) = single_expression(text) {
            let env = self.env.borrow();
            let expression =
                match check_operators(expr, true).and_then(|()| env.compile_expression(expr)) {
                    Ok(expression) => expression,
                    Err(err) => {
                        acc.push(self.diagnostic(source_text, text, span, &err, ctx, None));
                        return failed;
                    }
                };
            reads.extend(sensitive_reads(
                sensitive,
                &expression.undeclared_variables(true),
            ));
            return match expression.eval(ctx) {
                // Strict mode errors when an undefined value is used; an expression that
                // merely returns one must be caught here.
                Ok(value) if value.is_undefined() => {
                    let vars = expression.undeclared_variables(true);
                    let err = minijinja::Error::new(ErrorKind::UndefinedError, "undefined value");
                    acc.push(self.diagnostic(source_text, text, span, &err, ctx, Some(&vars)));
                    failed
                }
                Ok(value) => match from_jinja(&value, span, 0) {
                    Ok(node) => node,
                    Err(message) => {
                        acc.push(Diagnostic::error("template::value", span, message));
                        failed
                    }
                },
                Err(err) => {
                    let vars = expression.undeclared_variables(true);
                    acc.push(self.diagnostic(source_text, text, span, &err, ctx, Some(&vars)));
                    failed
                }
            };
        }
        let vars = match self.compile(text) {
            Ok(vars) => vars,
            Err(err) => {
                acc.push(self.diagnostic(source_text, text, span, &err, ctx, None));
                return failed;
            }
        };
        reads.extend(sensitive_reads(sensitive, &vars));
        let env = self.env.borrow();
        let template = match env.get_template(text) {
            Ok(template) => template,
            Err(err) => {
                acc.push(self.diagnostic(source_text, text, span, &err, ctx, None));
                return failed;
            }
        };
        match template.render(ctx) {
            Ok(mut rendered) => {
                rendered.shrink_to_fit();
                Node {
                    span,
                    value: Value::String(rendered),
                }
            }
            Err(err) => {
                acc.push(self.diagnostic(source_text, text, span, &err, ctx, Some(&vars)));
                failed
            }
        }
    }

    /// Compiles `text` once and returns the variables it reads.
    fn compile(&self, text: &str) -> Result<Arc<HashSet<String>>, minijinja::Error> {
        if let Some(vars) = self.compiled.borrow().get(text) {
            return Ok(Arc::clone(vars));
        }
        check_operators(text, false)?;
        let mut env = self.env.borrow_mut();
        let mut compiled = self.compiled.borrow_mut();
        if compiled.len() >= CACHE_LIMIT {
            env.clear_templates();
            compiled.clear();
        }
        env.add_template_owned(text.to_string(), text.to_string())?;
        let vars = Arc::new(env.get_template(text)?.undeclared_variables(true));
        compiled.insert(text.to_string(), Arc::clone(&vars));
        Ok(vars)
    }

    /// Renders a whole template file (`template:` of a `file`). Returns the text and the
    /// sensitive names it read, or a message naming the line of the problem.
    pub fn render_file(
        &self,
        text: &str,
        ctx: &minijinja::Value,
        sensitive: &BTreeSet<String>,
    ) -> Result<(String, BTreeSet<String>), String> {
        let describe = |err: &minijinja::Error| {
            let line = err
                .line()
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            let detail = err.detail().map(|d| format!(" ({d})")).unwrap_or_default();
            format!("{line}{}{detail}", err.kind())
        };
        let vars = self.compile(text).map_err(|e| describe(&e))?;
        let tainted = sensitive_reads(sensitive, &vars);
        let env = self.env.borrow();
        let template = env.get_template(text).map_err(|e| describe(&e))?;
        match template.render(ctx) {
            // Rendering grows its buffer in steps; thousands of files keep only what they use.
            Ok(mut rendered) => {
                rendered.shrink_to_fit();
                Ok((rendered, tainted))
            }
            Err(err) if err.kind() == ErrorKind::UndefinedError => {
                let missing = first_undefined(&vars, ctx)
                    .map(|(name, _)| format!(" `{name}`"))
                    .unwrap_or_default();
                let line = err
                    .line()
                    .map(|l| format!("line {l}: "))
                    .unwrap_or_default();
                Err(format!("{line}undefined variable{missing}"))
            }
            Err(err) => Err(describe(&err)),
        }
    }

    /// Compiles a template file ahead of [`Renderer::render_prepared`] and tells which
    /// sensitive names it reads; `None` when it does not compile (render it with
    /// [`Renderer::render_file`] for the message).
    pub fn prepare_file(
        &self,
        text: &str,
        sensitive: &BTreeSet<String>,
    ) -> Option<BTreeSet<String>> {
        let vars = self.compile(text).ok()?;
        Some(sensitive_reads(sensitive, &vars))
    }

    /// Renders prepared template files with their contexts, in parallel, in order. `None`
    /// for a job that failed (or whose template left the cache): [`Renderer::render_file`]
    /// renders it again and says what went wrong, exactly as it would have alone.
    ///
    /// Each job names its template by its index in `texts`; each distinct text is looked
    /// up once (a template's name is its whole text), not once per job.
    pub fn render_prepared(
        &self,
        texts: &[&str],
        jobs: &[(usize, &minijinja::Value)],
    ) -> Vec<Option<String>> {
        use rayon::prelude::*;
        let env = self.env.borrow();
        let env: &Environment<'static> = &env;
        let templates: Vec<Option<minijinja::Template<'_, '_>>> = texts
            .iter()
            .map(|text| env.get_template(text).ok())
            .collect();
        jobs.par_iter()
            .map(|(text, ctx)| {
                let template = templates.get(*text)?.as_ref()?;
                let mut rendered = template.render(*ctx).ok()?;
                rendered.shrink_to_fit();
                Some(rendered)
            })
            .collect()
    }

    /// Evaluates a `when` condition: a bare expression (`node.os.family == "debian"`), a
    /// `{{ }}` template, or a boolean. `None` after an error (reported to `acc`).
    pub fn condition(
        &self,
        source_text: &str,
        node: &Node,
        ctx: &minijinja::Value,
        acc: &mut Vec<Diagnostic>,
    ) -> Option<bool> {
        match &node.value {
            Value::Bool(value) => Some(*value),
            Value::String(text) => {
                let expr = single_expression(text).unwrap_or(text);
                let env = self.env.borrow();
                let expression = match check_operators(expr, true)
                    .and_then(|()| env.compile_expression(expr))
                {
                    Ok(expression) => expression,
                    Err(err) => {
                        acc.push(self.diagnostic(source_text, text, node.span, &err, ctx, None));
                        return None;
                    }
                };
                match expression.eval(ctx) {
                    Ok(value) => Some(value.is_true()),
                    Err(err) => {
                        let vars = expression.undeclared_variables(true);
                        acc.push(self.diagnostic(
                            source_text,
                            text,
                            node.span,
                            &err,
                            ctx,
                            Some(&vars),
                        ));
                        None
                    }
                }
            }
            other => {
                acc.push(
                    Diagnostic::error(
                        "schema::wrong_type",
                        node.span,
                        format!(
                            "`when` must be an expression or a boolean, found {}",
                            other.type_name()
                        ),
                    )
                    .with_help("write a condition such as `node.os.family == \"debian\"`"),
                );
                None
            }
        }
    }

    fn diagnostic(
        &self,
        source_text: &str,
        text: &str,
        span: Span,
        err: &minijinja::Error,
        ctx: &minijinja::Value,
        vars: Option<&HashSet<String>>,
    ) -> Diagnostic {
        let precise = err
            .range()
            .and_then(|range| precise_span(source_text, text, span, range))
            .unwrap_or(span);
        if err.kind() == ErrorKind::UndefinedError
            && let Some((missing, known)) = vars.and_then(|vars| first_undefined(vars, ctx))
        {
            let last = missing.rsplit('.').next().unwrap_or(&missing);
            let help = if missing.starts_with("params.")
                && !missing[7..].contains('.')
                && known.is_empty()
            {
                format!("no parameters are declared; declare `{last}` under `parameters`")
            } else if known.is_empty() {
                "the template context has `params`, `node` and, inside `for_each`, `item`"
                    .to_string()
            } else {
                let refs: Vec<&str> = known.iter().map(String::as_str).collect();
                let parent = missing
                    .rsplit_once('.')
                    .map_or("the context", |(parent, _)| parent);
                match suggest(last, refs.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("`{parent}` has: {}", refs.join(", ")),
                }
            };
            return Diagnostic::error(
                "template::undefined",
                precise,
                format!("undefined variable `{missing}`"),
            )
            .with_label("not defined")
            .with_help(help);
        }
        if err.kind() == ErrorKind::OutOfFuel {
            return Diagnostic::error(
                "template::too_expensive",
                precise,
                "template stopped: it ran too long",
            )
            .with_help("templates are for small computations; simplify this one");
        }
        let detail = err.detail().map(|d| format!(": {d}")).unwrap_or_default();
        Diagnostic::error(
            "template::error",
            precise,
            format!("template error: {}{detail}", err.kind()),
        )
        .with_label("in this template")
    }
}

/// Refuses a template (or, with `bare`, an expression) with a block of more than
/// [`MAX_OPERATORS`] operators, before minijinja builds a tree too deep to walk.
fn check_operators(text: &str, bare: bool) -> Result<(), minijinja::Error> {
    let bytes = text.as_bytes();
    let mut idx = 0;
    while idx < bytes.len() {
        let block_end = if bare {
            bytes.len()
        } else {
            // The next `{{` or `{%` (comments, `{#`, hold no operators).
            let Some(open) = memchr::memchr_iter(b'{', &bytes[idx..])
                .map(|at| idx + at)
                .find(|&at| matches!(bytes.get(at + 1), Some(b'{' | b'%')))
            else {
                return Ok(());
            };
            idx = open + 2;
            let close: &[u8] = if bytes[open + 1] == b'{' {
                b"}}"
            } else {
                b"%}"
            };
            memchr::memmem::find(&bytes[idx..], close).map_or(bytes.len(), |at| idx + at)
        };
        if count_operators(&bytes[idx..block_end]) > MAX_OPERATORS {
            return Err(minijinja::Error::new(
                ErrorKind::SyntaxError,
                format!(
                    "an expression with more than {} operators; split it with `{{% set %}}`",
                    document::thousands(MAX_OPERATORS)
                ),
            ));
        }
        if bare {
            return Ok(());
        }
        idx = block_end + 2;
    }
    Ok(())
}

/// Operators in one block: symbols and the word operators, outside string literals.
fn count_operators(block: &[u8]) -> usize {
    let is_word_operator =
        |word: &[u8]| matches!(word, b"and" | b"or" | b"not" | b"in" | b"is" | b"if");
    let mut operators = 0usize;
    let mut word_start: Option<usize> = None;
    let mut idx = 0;
    while idx < block.len() {
        let byte = block[idx];
        if byte.is_ascii_alphanumeric() || byte == b'_' {
            word_start.get_or_insert(idx);
            idx += 1;
            continue;
        }
        if let Some(start) = word_start.take() {
            operators += usize::from(is_word_operator(&block[start..idx]));
        }
        match byte {
            b'"' | b'\'' => {
                idx += 1;
                while idx < block.len() && block[idx] != byte {
                    idx += if block[idx] == b'\\' { 2 } else { 1 };
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'~' | b'=' | b'!' | b'<' | b'>' | b'|' | b'.'
            | b'[' | b'(' => operators += 1,
            _ => {}
        }
        idx += 1;
    }
    if let Some(start) = word_start {
        operators += usize::from(is_word_operator(&block[start..]));
    }
    operators
}

/// True when the string contains template syntax.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// `Some((before, after))` for a string that is `before{{ item }}after` with no other template
/// syntax: with a string `item` it renders to `before`, the item and `after`, which a caller
/// may put together without a template context (the names of a large `for_each`).
pub fn item_slot(text: &str) -> Option<(&str, &str)> {
    let (before, rest) = text.split_once("{{")?;
    let (expr, after) = rest.split_once("}}")?;
    let plain = |part: &str| !part.contains(['{', '}']);
    (expr.trim() == "item" && plain(before) && plain(after)).then_some((before, after))
}

/// `Some(expr)` for a string that is exactly `{{ expr }}`.
fn single_expression(text: &str) -> Option<&str> {
    // Untrimmed: `"{{ x }}\n"` is text (the newline is content), not a single expression.
    let inner = text.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    Some(inner.trim())
}

/// The sensitive names that reading `vars` reads: `params.x` is read by `params.x`, by
/// `params.x.y` and by `params` (the whole map).
fn sensitive_reads(sensitive: &BTreeSet<String>, vars: &HashSet<String>) -> BTreeSet<String> {
    let reads_name = |var: &str, name: &str| {
        let within = |outer: &str, inner: &str| {
            inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        };
        within(name, var) || within(var, name)
    };
    sensitive
        .iter()
        .filter(|name| vars.iter().any(|var| reads_name(var, name)))
        .cloned()
        .collect()
}

/// The span of `range` inside the template when the source text holds the template verbatim
/// (plain or quoted without escapes); otherwise `None` and the whole value is pointed at.
fn precise_span(
    source_text: &str,
    text: &str,
    span: Span,
    range: std::ops::Range<usize>,
) -> Option<Span> {
    let written = source_text.get(span.start..span.end)?;
    let offset = if written == text {
        0
    } else if written.len() == text.len() + 2
        && (written.starts_with('"') || written.starts_with('\''))
        && &written[1..written.len() - 1] == text
    {
        1
    } else {
        return None;
    };
    let start = span.start + offset + range.start.min(text.len());
    let end = span.start + offset + range.end.min(text.len());
    // minijinja widens an empty error range by one byte, which can end inside a multi-byte
    // character: keep the span on character boundaries.
    Some(Span::new(
        span.source,
        source_text.floor_char_boundary(start),
        source_text.ceil_char_boundary(end),
    ))
}

/// The first dotted variable that does not resolve in `ctx`, with the names that do exist at
/// the level where it fails.
fn first_undefined(
    vars: &std::collections::HashSet<String>,
    ctx: &minijinja::Value,
) -> Option<(String, Vec<String>)> {
    let mut sorted: Vec<&String> = vars.iter().collect();
    sorted.sort();
    for var in sorted {
        let mut current = ctx.clone();
        let mut path = Vec::new();
        for part in var.split('.') {
            let next = current.get_attr(part).ok().filter(|v| !v.is_undefined());
            path.push(part);
            match next {
                Some(next) => current = next,
                None => {
                    let known = match current.kind() {
                        ValueKind::Map => current
                            .try_iter()
                            .map(|iter| iter.filter_map(|k| k.as_str().map(String::from)).collect())
                            .unwrap_or_default(),
                        _ => Vec::new(),
                    };
                    return Some((path.join("."), known));
                }
            }
        }
    }
    None
}

/// Converts an expression's result back into a document value.
fn from_jinja(value: &minijinja::Value, span: Span, depth: usize) -> Result<Node, String> {
    if depth > document::MAX_DEPTH {
        return Err("template result nested too deeply".into());
    }
    let converted = match value.kind() {
        ValueKind::Undefined | ValueKind::None => Value::Null,
        ValueKind::Bool => Value::Bool(value.is_true()),
        ValueKind::Number => {
            if let Ok(int) = i64::try_from(value.clone()) {
                Value::Int(int)
            } else if let Ok(float) = f64::try_from(value.clone()) {
                Value::Float(float)
            } else {
                return Err(format!("number {value} is out of range"));
            }
        }
        ValueKind::String => Value::String(value.as_str().unwrap_or_default().to_string()),
        ValueKind::Seq | ValueKind::Iterable => {
            let iter = value.try_iter().map_err(|e| e.to_string())?;
            Value::List(
                iter.map(|item| from_jinja(&item, span, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        ValueKind::Map => {
            let iter = value.try_iter().map_err(|e| e.to_string())?;
            let mut entries = Vec::new();
            for key in iter {
                let item = value.get_item(&key).map_err(|e| e.to_string())?;
                let name = key.as_str().map_or_else(|| key.to_string(), String::from);
                entries.push((Key { name, span }, from_jinja(&item, span, depth + 1)?));
            }
            Value::Map(entries)
        }
        _ => Value::String(value.to_string()),
    };
    Ok(Node {
        span,
        value: converted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceId;

    fn node(text: &str) -> Node {
        Node {
            span: Span::new(SourceId(0), 0, text.len()),
            value: Value::String(text.to_string()),
        }
    }

    fn ctx() -> minijinja::Value {
        minijinja::context! { params => minijinja::context! { motd => "hi", admins => vec!["a", "b"], secret => "s" } }
    }

    #[test]
    fn an_item_slot_renders_like_the_template() {
        for text in [
            "/data/{{ item }}",
            "{{item}}.conf",
            "{{ item }}",
            "a{{  item }}b",
        ] {
            let (before, after) = item_slot(text).unwrap();
            let mut acc = Vec::new();
            let ctx = minijinja::context! { item => "x/y" };
            let rendered =
                Renderer::new().render(text, &node(text), &ctx, &BTreeSet::new(), &mut acc);
            assert!(acc.is_empty(), "{acc:?}");
            let expected = format!("{before}x/y{after}");
            assert!(
                matches!(&rendered.node.value, Value::String(name) if *name == expected),
                "{text}: {:?}",
                rendered.node.value
            );
        }
        for text in [
            "/data/{{ item | upper }}",
            "{{- item }}",
            "{{ item }}{{ item }}",
            "{% if x %}{{ item }}{% endif %}",
            "/data/{{ items }}",
            "/data/item",
        ] {
            assert_eq!(item_slot(text), None, "{text}");
        }
    }

    #[test]
    fn single_expression_keeps_type() {
        let mut acc = Vec::new();
        let text = "{{ params.admins }}";
        let rendered =
            Renderer::new().render(text, &node(text), &ctx(), &BTreeSet::new(), &mut acc);
        assert!(acc.is_empty());
        assert!(matches!(rendered.node.value, Value::List(ref items) if items.len() == 2));
    }

    #[test]
    fn undefined_is_located_with_suggestion() {
        let mut acc = Vec::new();
        let text = "x {{ params.mtod }} y";
        Renderer::new().render(text, &node(text), &ctx(), &BTreeSet::new(), &mut acc);
        assert_eq!(acc.len(), 1);
        assert_eq!(acc[0].message, "undefined variable `params.mtod`");
        assert_eq!(acc[0].help.as_deref(), Some("did you mean `motd`?"));
        let span = acc[0].span().unwrap();
        assert!(span.start >= 2 && span.end <= text.len(), "{span:?}");
    }

    #[test]
    fn sensitive_taints() {
        let mut acc = Vec::new();
        let text = "pw={{ params.secret }}";
        let sensitive = BTreeSet::from(["params.secret".to_string()]);
        let rendered = Renderer::new().render(text, &node(text), &ctx(), &sensitive, &mut acc);
        assert!(rendered.is_sensitive());
    }

    #[test]
    fn a_render_names_the_sensitive_variables_it_read() {
        let sensitive: BTreeSet<String> = ["params.secret", "params.other", "item"]
            .into_iter()
            .map(String::from)
            .collect();
        for (text, expected) in [
            ("{{ params.motd }}", &[][..]),
            ("pw={{ params.secret }}", &["params.secret"][..]),
            ("{{ params.secret | upper }}", &["params.secret"][..]),
            ("{% set x = params.secret %}{{ x }}", &["params.secret"][..]),
            ("{{ params }}", &["params.other", "params.secret"][..]),
            ("{{ params.secretive }}", &[][..]),
            ("{{ item.value }}", &["item"][..]),
        ] {
            let mut acc = Vec::new();
            let ctx = minijinja::context! { params => minijinja::context! { motd => "hi", secret => "s", other => "o", secretive => "x" }, item => minijinja::context! { value => "v" } };
            let rendered = Renderer::new().render(text, &node(text), &ctx, &sensitive, &mut acc);
            assert!(acc.is_empty(), "{text}: {acc:?}");
            let reads: Vec<&str> = rendered.reads.iter().map(String::as_str).collect();
            assert_eq!(reads, expected, "{text}");
        }
    }

    #[test]
    fn runaway_templates_stop() {
        let mut acc = Vec::new();
        let text =
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        Renderer::new().render(text, &node(text), &ctx(), &BTreeSet::new(), &mut acc);
        assert_eq!(acc.len(), 1);
    }
}
