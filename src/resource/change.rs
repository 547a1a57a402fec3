//! The change vocabulary shared by resource types, the planner and renderers.
//!
//! Owns [`Change`], [`Action`], [`AttrChange`], [`Content`] and the observed [`State`].
//! Types produce changes (pure `diff`); providers read states and converge. Pure data: no IO.

use std::collections::BTreeMap;

use crate::model::{Resource, ResourceId, Value};

/// What a provider observed: attribute values under the same names as the desired ones.
/// `ensure` is always present (`present`/`absent`, a package's version, `running`/`stopped`).
pub type State = BTreeMap<String, Value>;

/// What the plan will do to a resource (Terraform's actions, plus `Run` for commands).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Already as desired.
    NoOp,
    /// Does not exist; will be created.
    Create,
    /// Exists; some attributes will change.
    Update,
    /// Exists as the wrong kind of thing (a directory where a file belongs); removed and
    /// created again.
    Replace,
    /// Exists; will be removed.
    Delete,
    /// A command that will run.
    Run,
}

impl Action {
    /// The one-character marker in human plans.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::NoOp => " ",
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::Run => "!",
        }
    }

    /// The lowercase name in JSON and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::NoOp => "no-op",
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Run => "run",
        }
    }

    /// The action [`Action::as_str`] names.
    pub fn from_name(name: &str) -> Option<Action> {
        [
            Action::NoOp,
            Action::Create,
            Action::Update,
            Action::Replace,
            Action::Delete,
            Action::Run,
        ]
        .into_iter()
        .find(|action| action.as_str() == name)
    }
}

/// One attribute's before and after.
#[derive(Clone, Debug, PartialEq)]
pub struct AttrChange {
    /// The attribute.
    pub name: String,
    /// Observed value; `None` when absent.
    pub before: Option<Value>,
    /// Desired value; `None` when it will be removed.
    pub after: Option<Value>,
    /// Derived from a sensitive parameter: render as `(sensitive)`.
    pub sensitive: bool,
}

/// File content as far as a diff needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// UTF-8 text.
    Text(String),
    /// The resource's desired text, its `content` attribute, which the change does not copy
    /// (a cold plan of thousands of files would hold every file twice); [`Content::text`]
    /// reads it from the resource.
    Desired,
    /// Anything else: only its size and digest are shown.
    Binary {
        /// Size in bytes.
        len: usize,
        /// `sha256:` hex digest.
        sha256: String,
    },
}

impl Content {
    /// The text, [`Content::Desired`] read from `res`; `None` for binary content.
    pub fn text<'a>(&'a self, res: &'a Resource) -> Option<&'a str> {
        match self {
            Content::Text(text) => Some(text),
            Content::Desired => res.attr_str("content"),
            Content::Binary { .. } => None,
        }
    }
}

/// A content change, for a unified diff.
#[derive(Clone, Debug, PartialEq)]
pub struct ContentChange {
    /// Observed content; `None` when the file does not exist.
    pub before: Option<Content>,
    /// Desired content; `None` when the file will be removed.
    pub after: Option<Content>,
    /// Either side derives from a sensitive value: never shown.
    pub sensitive: bool,
}

/// The planned change of one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Which resource.
    pub id: ResourceId,
    /// What happens.
    pub action: Action,
    /// Attribute-level before → after, only for attributes that differ.
    pub attrs: Vec<AttrChange>,
    /// For files: the content change, when content differs.
    pub content: Option<ContentChange>,
    /// Why, when it is not obvious (`replace`: "a directory is in the way").
    pub reason: Option<String>,
}

impl Change {
    /// A change with no attribute detail.
    pub fn new(id: ResourceId, action: Action) -> Change {
        Change {
            id,
            action,
            attrs: Vec::new(),
            content: None,
            reason: None,
        }
    }

    /// True unless the action is [`Action::NoOp`].
    pub fn is_change(&self) -> bool {
        self.action != Action::NoOp
    }
}
