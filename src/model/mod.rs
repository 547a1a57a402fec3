//! The resolved desired state as inert data.
//!
//! Owns [`Model`], [`Node`], [`Resource`], [`ResourceId`], [`Value`] and [`Association`].
//! Everything here is already rendered and validated: no templates, no YAML or KDL, and no
//! knowledge of how anything is applied.
//!
//! **Architecture Invariant:** inert data. Spans are kept only to point diagnostics at the
//! declaration; they never influence behaviour. The types do not derive `Serialize`: their
//! public JSON forms live at the edges, each with its own version.

use std::collections::BTreeMap;
use std::fmt;

pub mod grammar;

use crate::diag::{SourceId, Span};

/// `TYPE:NAME`, the identity of a resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    /// The resource type, such as `file`.
    pub kind: String,
    /// The type's name for the thing, such as `/etc/motd`.
    pub name: String,
}

impl ResourceId {
    /// A resource id.
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> ResourceId {
        ResourceId {
            kind: kind.into(),
            name: name.into(),
        }
    }

    /// Splits `TYPE:NAME` at the first colon; `None` when there is no colon or either side is
    /// empty. The one place that reads the text form.
    pub fn parse(text: &str) -> Option<ResourceId> {
        let (kind, name) = text.split_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(ResourceId::new(kind, name))
    }
}

/// The one place that writes the text form (`TYPE:NAME`, docs/guide/documents.md).
impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// A rendered value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    String(String),
    /// Bytes that are not UTF-8 text (a binary `source` file).
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<Value>),
    /// A map, sorted by key.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The string when this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The boolean when this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(value) => Some(*value),
            _ => None,
        }
    }

    /// The integer when this is an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(value) => Some(*value),
            _ => None,
        }
    }

    /// The items when this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// A compact JSON-like spelling for messages and canonical dumps.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(value) => write!(f, "{value}"),
            Value::Int(value) => write!(f, "{value}"),
            Value::Float(value) => write!(f, "{value}"),
            Value::String(text) => write!(f, "{text:?}"),
            Value::Bytes(bytes) => write!(f, "({} bytes)", bytes.len()),
            Value::List(items) => {
                f.write_str("[")?;
                for (idx, item) in items.iter().enumerate() {
                    if idx > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Map(entries) => {
                f.write_str("{")?;
                for (idx, (key, value)) in entries.iter().enumerate() {
                    if idx > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key:?}: {value}")?;
                }
                f.write_str("}")
            }
        }
    }
}

/// One attribute of a resource.
#[derive(Clone, Debug)]
pub struct Attr {
    /// The rendered, normalized value.
    pub value: Value,
    /// Where it is written.
    pub span: Span,
    /// Derived from a `sensitive` parameter: never shown.
    pub sensitive: bool,
}

/// A resource's attributes by name, in name order. A resource has a handful: a sorted vector
/// of them costs a fraction of a B-tree node (eleven slots) per resource, which a project of
/// thousands of resources feels.
#[derive(Clone, Debug, Default)]
pub struct Attrs(Vec<(String, Attr)>);

/// [`Attrs::iter`]'s iterator.
pub type AttrsIter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, Attr)>,
    fn(&'a (String, Attr)) -> (&'a String, &'a Attr),
>;

impl Attrs {
    /// No attributes.
    pub fn new() -> Attrs {
        Attrs(Vec::new())
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(key, _)| key.as_str().cmp(name))
    }

    /// The attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&Attr> {
        self.find(name).ok().map(|idx| &self.0[idx].1)
    }

    /// The attribute called `name`, to change.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Attr> {
        self.find(name).ok().map(|idx| &mut self.0[idx].1)
    }

    /// True when there is an attribute called `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Sets an attribute; the one it replaces, if any.
    pub fn insert(&mut self, name: String, attr: Attr) -> Option<Attr> {
        match self.find(&name) {
            Ok(idx) => Some(std::mem::replace(&mut self.0[idx].1, attr)),
            Err(idx) => {
                self.0.insert(idx, (name, attr));
                None
            }
        }
    }

    /// Removes an attribute and gives it back.
    pub fn remove(&mut self, name: &str) -> Option<Attr> {
        self.find(name).ok().map(|idx| self.0.remove(idx).1)
    }

    /// The attributes in name order.
    pub fn iter(&self) -> AttrsIter<'_> {
        self.0.iter().map(|(name, attr)| (name, attr))
    }

    /// The names in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(name, _)| name)
    }

    /// How many attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True without attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Attrs {
    type Item = (&'a String, &'a Attr);
    type IntoIter = AttrsIter<'a>;

    fn into_iter(self) -> AttrsIter<'a> {
        self.iter()
    }
}

impl FromIterator<(String, Attr)> for Attrs {
    /// As a map is collected: a later attribute of the same name replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = (String, Attr)>>(items: I) -> Attrs {
        let mut attrs = Attrs::new();
        for (name, attr) in items {
            attrs.insert(name, attr);
        }
        attrs
    }
}

/// How two resources are related.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RelationKind {
    /// This resource comes after the target.
    Require,
    /// This resource comes before the target.
    Before,
    /// Before the target, and a change here refreshes it.
    Notify,
    /// After the target, and a change there refreshes this.
    Subscribe,
}

impl RelationKind {
    /// All kinds, in document order.
    pub const ALL: [RelationKind; 4] = [
        RelationKind::Require,
        RelationKind::Before,
        RelationKind::Notify,
        RelationKind::Subscribe,
    ];

    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            RelationKind::Require => "require",
            RelationKind::Before => "before",
            RelationKind::Notify => "notify",
            RelationKind::Subscribe => "subscribe",
        }
    }

    /// True for `notify` and `subscribe`.
    pub fn refreshes(self) -> bool {
        matches!(self, RelationKind::Notify | RelationKind::Subscribe)
    }
}

/// A declared relationship to another resource.
#[derive(Clone, Debug)]
pub struct Relation {
    /// Which relationship.
    pub kind: RelationKind,
    /// The other resource.
    pub target: ResourceId,
    /// Where the reference is written.
    pub span: Span,
}

/// One piece of desired state on one node.
#[derive(Clone, Debug)]
pub struct Resource {
    /// `TYPE:NAME`.
    pub id: ResourceId,
    /// The declaration's key.
    pub span: Span,
    /// The document it was declared in (a module's file for module resources).
    pub source: SourceId,
    /// Attributes by name, rendered and normalized.
    pub attrs: Attrs,
    /// Declared relationships.
    pub relations: Vec<Relation>,
    /// The association that put it on its node; `None` for documents no association covers.
    pub association: Option<String>,
    /// Indices in [`Model::secrets`] of the sensitive values its templates read (its name,
    /// attributes, relations, template file and `for_each`), ascending: what its node is sent.
    /// Over-approximates (a template that reads `params` whole reads every sensitive
    /// parameter) and never misses a value the resource can see.
    pub secrets: Vec<usize>,
}

impl Resource {
    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&Value> {
        self.attrs.get(name).map(|attr| &attr.value)
    }

    /// An attribute's string value.
    pub fn attr_str(&self, name: &str) -> Option<&str> {
        self.attr(name).and_then(Value::as_str)
    }
}

/// What is known about a node's machine. An empty string or `None` is a fact that could not
/// be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// Host name.
    pub hostname: String,
    /// OS family, such as `debian`.
    pub os_family: String,
    /// OS release, such as `12`.
    pub os_release: String,
    /// CPU architecture, such as `x86_64`.
    pub arch: String,
    /// IP addresses (IPv4 first), loopback and link-local ones left out.
    pub addresses: Vec<String>,
    /// The same addresses by interface name; an interface without one is left out.
    pub interfaces: BTreeMap<String, Vec<String>>,
    /// How many CPUs steward may use (the affinity mask and cgroup quota counted).
    pub cpus: Option<u64>,
    /// Memory in bytes (`MemTotal`).
    pub memory: Option<u64>,
    /// Kernel release, such as `6.1.0-18-amd64`.
    pub kernel: String,
    /// `physical`, or the virtual machine or container it is (`kvm`, `docker`, ...).
    pub virtualization: String,
}

/// A managed machine and the resources it gets.
#[derive(Clone, Debug)]
pub struct Node {
    /// The node's name (`local` for the machine steward runs on).
    pub name: String,
    /// Tags used by association targets.
    pub tags: BTreeMap<String, String>,
    /// Facts used by templates.
    pub facts: Facts,
    /// Desired resources, in declaration order. Shared, so an executor can hand them to
    /// worker threads without copying.
    pub resources: std::sync::Arc<Vec<Resource>>,
}

/// The name of the node that always exists: the machine steward runs on.
pub const LOCAL_NODE: &str = "local";

/// How an association picks its nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    /// Every node.
    All,
    /// Nodes by name.
    Names(Vec<String>),
    /// Nodes carrying all of these tags.
    Tags(BTreeMap<String, String>),
}

impl Targets {
    /// Whether a node is targeted.
    pub fn matches(&self, name: &str, tags: &BTreeMap<String, String>) -> bool {
        match self {
            Targets::All => true,
            Targets::Names(names) => names.iter().any(|n| n == name),
            Targets::Tags(wanted) => wanted.iter().all(|(k, v)| tags.get(k) == Some(v)),
        }
    }
}

/// What a scheduled association does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Drift check only: plan and record, change nothing.
    Detect,
    /// Apply.
    Enforce,
}

/// A count or a percentage of targets (SSM's MaxConcurrency and MaxErrors).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// An absolute number of nodes.
    Count(u32),
    /// A percentage of the targets, 0 to 100.
    Percent(u8),
}

/// When an association runs on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// `rate(N unit)`: every so many seconds.
    Rate {
        /// Interval in seconds.
        seconds: u64,
        /// As written.
        text: String,
    },
    /// A five-field cron expression.
    Cron(String),
}

/// Compliance severity of an association's findings (SSM's values), lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ComplianceSeverity {
    /// Not specified.
    Unspecified,
    /// Informational.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl ComplianceSeverity {
    /// Every severity, lowest first.
    pub const ALL: [ComplianceSeverity; 6] = [
        ComplianceSeverity::Unspecified,
        ComplianceSeverity::Informational,
        ComplianceSeverity::Low,
        ComplianceSeverity::Medium,
        ComplianceSeverity::High,
        ComplianceSeverity::Critical,
    ];

    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            ComplianceSeverity::Unspecified => "unspecified",
            ComplianceSeverity::Informational => "informational",
            ComplianceSeverity::Low => "low",
            ComplianceSeverity::Medium => "medium",
            ComplianceSeverity::High => "high",
            ComplianceSeverity::Critical => "critical",
        }
    }

    /// The severity for a stored name.
    pub fn parse(text: &str) -> Option<ComplianceSeverity> {
        ComplianceSeverity::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// Binds documents to nodes (SSM State Manager association).
#[derive(Clone, Debug)]
pub struct Association {
    /// Its name.
    pub name: String,
    /// Where it is declared.
    pub span: Span,
    /// The document that declares it.
    pub source: SourceId,
    /// Which nodes.
    pub targets: Targets,
    /// The documents it applies; empty means the declaring document.
    pub documents: Vec<SourceId>,
    /// Parameter values for its documents.
    pub parameters: BTreeMap<String, Value>,
    /// When it runs on its own.
    pub schedule: Option<Schedule>,
    /// Detect or enforce.
    pub mode: Mode,
    /// How many targets at once.
    pub max_concurrency: Rate,
    /// How many failures before no new target starts.
    pub max_errors: Rate,
    /// Severity of its findings.
    pub compliance_severity: ComplianceSeverity,
}

/// The whole desired state of a project.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Nodes with their resources; `local` first.
    pub nodes: Vec<Node>,
    /// Associations in declaration order.
    pub associations: Vec<Association>,
    /// Resources of documents whose associations match no known node, rendered against the
    /// local facts so they are checked; never planned.
    pub unassigned: Vec<Node>,
    /// Values of sensitive parameters (as text), longest first, to scrub from command output
    /// and messages. Never rendered. The controller keeps them all; a node is sent only the
    /// ones its resources use ([`secrets_used`]).
    pub secrets: Vec<String>,
}

/// The values of `secrets` (a [`Model::secrets`]) that `resources` read, in the same order
/// (longest first, as [`scrub`] needs): all that a node applying them may be sent.
pub fn secrets_used(secrets: &[String], resources: &[Resource]) -> Vec<String> {
    let used: std::collections::BTreeSet<usize> = resources
        .iter()
        .flat_map(|res| res.secrets.iter().copied())
        .collect();
    used.into_iter()
        .filter_map(|idx| secrets.get(idx).cloned())
        .collect()
}

/// Replaces every secret in `text` with `(sensitive)`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut res = text.to_string();
    for secret in secrets {
        if res.contains(secret.as_str()) {
            res = res.replace(secret.as_str(), "(sensitive)");
        }
    }
    res
}

impl Model {
    /// Number of resources over all nodes.
    pub fn n_resources(&self) -> usize {
        self.nodes.iter().map(|node| node.resources.len()).sum()
    }

    /// A canonical text form without spans or file names: two models that mean the same
    /// desired state print the same text, whichever spelling they came from.
    pub fn canonical_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for node in &self.nodes {
            let _ = writeln!(out, "node {} tags={:?}", node.name, node.tags);
            let mut resources: Vec<&Resource> = node.resources.iter().collect();
            resources.sort_by(|a, b| a.id.cmp(&b.id));
            for res in resources {
                let _ = writeln!(out, "  {}", res.id);
                for (name, attr) in &res.attrs {
                    let sensitive = if attr.sensitive { " (sensitive)" } else { "" };
                    let _ = writeln!(out, "    {name} = {}{sensitive}", attr.value);
                }
                let mut relations: Vec<String> = res
                    .relations
                    .iter()
                    .map(|r| format!("{} {}", r.kind.as_str(), r.target))
                    .collect();
                relations.sort();
                for relation in relations {
                    let _ = writeln!(out, "    {relation}");
                }
            }
        }
        for association in &self.associations {
            let _ = writeln!(
                out,
                "association {} targets={:?} mode={:?} schedule={:?} max_concurrency={:?} max_errors={:?} severity={:?} parameters={:?} documents={}",
                association.name,
                association.targets,
                association.mode,
                association.schedule,
                association.max_concurrency,
                association.max_errors,
                association.compliance_severity,
                association.parameters,
                association.documents.len(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(text: &str) -> Attr {
        Attr {
            value: Value::String(text.into()),
            span: Span::new(SourceId(0), 0, 0),
            sensitive: false,
        }
    }

    #[test]
    fn attrs_behave_as_a_map_in_name_order() {
        let mut attrs: Attrs = [("mode", "0644"), ("content", "x"), ("mode", "0600")]
            .into_iter()
            .map(|(name, text)| (name.to_string(), attr(text)))
            .collect();
        assert_eq!(attrs.len(), 2, "a later attribute replaces an earlier one");
        assert_eq!(attrs.keys().collect::<Vec<_>>(), ["content", "mode"]);
        assert_eq!(attrs.get("mode").unwrap().value.as_str(), Some("0600"));
        assert!(attrs.insert("group".into(), attr("adm")).is_none());
        let replaced = attrs.insert("content".into(), attr("y")).unwrap();
        assert_eq!(replaced.value.as_str(), Some("x"));
        assert_eq!(
            attrs
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>(),
            ["content", "group", "mode"]
        );
        attrs.get_mut("group").unwrap().sensitive = true;
        assert!(attrs.get("group").unwrap().sensitive);
        assert!(attrs.remove("group").is_some());
        assert!(!attrs.contains_key("group") && attrs.remove("group").is_none());
        assert!(attrs.get("owner").is_none() && !attrs.is_empty());
    }
}
