//! The audit log's vocabulary: who acted ([`Actor`]), from where, what they did and to what
//! ([`Act`]), and how it ended ([`Outcome`]), as entries of the store's append-only log
//! ([`AuditEntry`]); and how the log is shown ([`AuditInfo`], [`table`]).
//!
//! Its writers are elsewhere, each where its act happens: the API's audit layer (every
//! authenticated request that is not safe, refusals for a weak role included), the scheduler
//! (a firing and the end of its run), the agent port (an enrolment with a join token, a
//! certificate renewal) and `steward token create` / `token revoke`, which write the store
//! directly. A request without a valid token (401) is not recorded: who sent it is not known,
//! and recording it would let anyone grow the log. The API logs it (`tracing`) instead.
//!
//! An act is two entries: `started` before it acts, then `ok`, `refused` or `failed` once it
//! ended (a run or command the API accepted, `ok`, that then never began has a third,
//! `failed`). An act whose `started` entry cannot be written is not done (the API answers 500
//! or 503, the scheduler skips the firing, the CLI stops): nothing is done that the log does
//! not show begun. A `started` entry without an outcome after it is an act whose process died,
//! or whose outcome could not be written (logged as an error). An enrolment or a renewal is
//! one entry, written after it under the same hold of the store: the node's certificate is the
//! record of it, and only a token whose secret matched (or the node's certificate) is
//! recorded.
//!
//! **Architecture Invariant:** no entry holds a secret. Nothing copies a token's text, the
//! `Authorization` header or a request's body into an entry (parameters and environments may
//! hold secrets); a malformed body is described, never quoted. Every field goes through
//! [`one_line`] (or its shorter twin for actions, targets and sources), which also hides any run
//! of 32 or more hex digits (the shape of every steward secret: API and join token secrets, the
//! admin token).

use axum::http::StatusCode;

use crate::fleet::api_token::Principal;
use crate::store::{AuditEntry, AuditRecord, FleetStore, StoreError};

/// The entries `GET /v1/audit` answers when no `limit` is given.
pub const DEFAULT_PAGE: usize = 100;
/// The most entries one `GET /v1/audit` answers.
pub const MAX_PAGE: usize = 1000;

/// The longest detail kept, in characters; a longer one is cut and ends with `…`.
pub const MAX_DETAIL: usize = 300;

/// The longest action or target kept, in characters (a path of an unknown route is the
/// caller's).
const MAX_FIELD: usize = 200;

/// The action of a scheduled association's firing.
pub const SCHEDULE_FIRE: &str = "schedule fire";
/// The action of `steward token create`.
pub const TOKEN_CREATE: &str = "token create";
/// The action of `steward token revoke`.
pub const TOKEN_REVOKE: &str = "token revoke";
/// The action of an agent's enrolment with a join token.
pub const NODE_ENROL: &str = "node enrol";
/// The action of a node's certificate renewal.
pub const NODE_RENEW: &str = "node renew";
/// The action of a console sign-in (a session started with a token).
pub const CONSOLE_SIGN_IN: &str = "POST /login";

/// How an act ended, as the log words it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// About to act: written before anything is done.
    Started,
    /// Done (a request answered 2xx).
    Ok,
    /// Refused for who asked (a request answered 401 or 403 after its token was known).
    Refused,
    /// Failed (any other answer).
    Failed,
}

impl Outcome {
    /// `started`, `ok`, `refused` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Started => "started",
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome of a request answered with `status`.
    pub fn of_status(status: StatusCode) -> Outcome {
        // A console form answers a done change with a redirection (303 See Other).
        if status.is_success() || status.is_redirection() {
            Outcome::Ok
        } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            Outcome::Refused
        } else {
            Outcome::Failed
        }
    }
}

/// Who acted: an id (what `steward audit --actor` filters on) and a name for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// An API token's id, `admin`, `scheduler`, `local`, `node:NAME`, or a join token's id.
    pub id: String,
    /// The token's name, `admin token`, `scheduler`, `local CLI (user NAME)`, `node NAME`,
    /// `join token`.
    pub name: String,
}

impl Actor {
    /// The token a request presented.
    pub fn of(principal: &Principal) -> Actor {
        Actor {
            id: principal.id.clone(),
            name: principal.name.clone(),
        }
    }

    /// The controller's scheduler.
    pub fn scheduler() -> Actor {
        Actor {
            id: "scheduler".to_string(),
            name: "scheduler".to_string(),
        }
    }

    /// The CLI writing the store directly, as the user the process runs as (by its uid, which
    /// the environment cannot change; `USER` only when the uid has no name).
    pub fn local() -> Actor {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|user| user.name)
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| format!("uid {uid}"));
        Actor {
            id: "local".to_string(),
            name: format!("local CLI (user {})", one_line(&user)),
        }
    }

    /// A node, by its certificate (a renewal): id `node:NAME`.
    pub fn node(name: &str) -> Actor {
        Actor {
            id: one_field(&format!("node:{name}")),
            name: one_field(&format!("node {name}")),
        }
    }

    /// A join token, by its id.
    pub fn join_token(id: &str) -> Actor {
        Actor {
            id: one_field(id),
            name: "join token".to_string(),
        }
    }
}

/// One act: who, from where, what, to what and in which run; [`Act::entry`] words it at each
/// step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Act {
    /// Who.
    pub actor: Actor,
    /// The HTTP peer's `IP:PORT`, the controller's id, or `local`.
    pub source: String,
    /// A route (`POST /v1/runs`) or one of this module's actions.
    pub action: String,
    /// What it acts on; empty when nothing in particular.
    pub target: String,
    /// The run it starts or belongs to.
    pub run_id: Option<String>,
}

impl Act {
    /// An act of `actor` from `source`: `action` on `target`.
    pub fn new(actor: Actor, source: &str, action: &str, target: &str) -> Act {
        Act {
            actor,
            source: one_field(source),
            action: one_field(action),
            target: one_field(target),
            run_id: None,
        }
    }

    /// The entry saying it reached `outcome` now, with the HTTP `status` of a request and a
    /// `detail`; every field one line without anything shaped like a secret ([`one_line`]),
    /// however the act was built.
    pub fn entry(&self, outcome: Outcome, status: Option<u16>, detail: &str) -> AuditEntry {
        AuditEntry {
            at: crate::engine::record::timestamp(),
            actor_id: one_field(&self.actor.id),
            actor: one_field(&self.actor.name),
            source: one_field(&self.source),
            action: one_field(&self.action),
            target: one_field(&self.target),
            run_id: self.run_id.as_deref().map(one_field),
            outcome: outcome.as_str().to_string(),
            status,
            detail: one_line(detail),
        }
    }

    /// Appends the entry of `outcome` ([`Act::entry`]).
    pub fn append(
        &self,
        store: &mut dyn FleetStore,
        outcome: Outcome,
        status: Option<u16>,
        detail: &str,
    ) -> Result<i64, AuditError> {
        store
            .append_audit(&self.entry(outcome, status, detail))
            .map_err(|source| self.error(source))
    }

    /// The error of an entry of this act that `source` kept from being appended.
    pub fn error(&self, source: StoreError) -> AuditError {
        AuditError {
            act: if self.target.is_empty() {
                self.action.clone()
            } else {
                format!("{} {}", self.action, self.target)
            },
            source,
        }
    }
}

/// An entry could not be appended.
#[derive(Debug, thiserror::Error)]
#[error("the audit log cannot be written ({act}): {source}")]
pub struct AuditError {
    /// The act's action and target, as one text (`POST /v1/nodes/{name}/tags web-1`).
    pub act: String,
    /// Why the store refused.
    #[source]
    pub source: StoreError,
}

/// `text` as one line for a detail: control characters (new lines included) become spaces,
/// runs of white space one space, any run of 32 or more hex digits `(hidden)`, and a text over
/// [`MAX_DETAIL`] characters is cut, ending with `…`.
pub fn one_line(text: &str) -> String {
    cut(&hide_hex_runs(text), MAX_DETAIL)
}

/// An action, target, source or actor: [`one_line`], within [`MAX_FIELD`] characters.
pub(crate) fn one_field(text: &str) -> String {
    cut(&hide_hex_runs(text), MAX_FIELD)
}

fn cut(text: &str, max: usize) -> String {
    let mut words = String::with_capacity(text.len().min(max * 4));
    for word in text.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !words.is_empty() {
            words.push(' ');
        }
        words.push_str(word);
    }
    if words.chars().count() <= max {
        return words;
    }
    let mut kept: String = words.chars().take(max - 1).collect();
    kept.push('…');
    kept
}

/// `text` with each run of 32 or more ASCII hex digits replaced by `(hidden)`.
fn hide_hex_runs(text: &str) -> String {
    const SECRET_LIKE: usize = 32;
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= SECRET_LIKE {
            out.push_str("(hidden)");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// One entry in `GET /v1/audit` and `steward audit --format json`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditInfo {
    /// Its id: larger for a later entry (`?before=` pages by it).
    pub id: i64,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Who, by id: an API token's id, `admin`, `scheduler`, `local`, or a join token's id.
    pub actor_id: String,
    /// Who, for people: the token's name, `admin token`, `scheduler`, `local CLI (user X)`,
    /// `join token`.
    pub actor: String,
    /// From where: the HTTP peer's `IP:PORT`, the controller's id, or `local`.
    pub source: String,
    /// What: the route (`POST /v1/runs`) or the act (`schedule fire`, `token create`, ...).
    pub action: String,
    /// What it acted on (a node, a selector, an association, a finding, a token id), or `""`.
    pub target: String,
    /// The run it started or belongs to, or `null`.
    pub run_id: Option<String>,
    /// `started`, `ok`, `refused` or `failed`.
    pub outcome: String,
    /// The HTTP status answered, for a request; else `null`.
    pub status: Option<u16>,
    /// A short line: what was done, or why it was refused or failed.
    pub detail: String,
}

impl From<&AuditRecord> for AuditInfo {
    fn from(record: &AuditRecord) -> AuditInfo {
        let entry = &record.entry;
        AuditInfo {
            id: record.id,
            at: entry.at.clone(),
            actor_id: entry.actor_id.clone(),
            actor: entry.actor.clone(),
            source: entry.source.clone(),
            action: entry.action.clone(),
            target: entry.target.clone(),
            run_id: entry.run_id.clone(),
            outcome: entry.outcome.clone(),
            status: entry.status,
            detail: entry.detail.clone(),
        }
    }
}

/// `steward audit` as a table, newest first; `width` bounds its lines.
pub fn table(entries: &[AuditInfo], width: Option<u16>) -> String {
    use crate::report::table::{Column, Table};
    if entries.is_empty() {
        return "No audit entries.\n".to_string();
    }
    let mut table = Table::new(&[
        ("ID", Column::Fixed),
        ("TIME", Column::Fixed),
        ("WHO", Column::Text),
        ("FROM", Column::Fixed),
        ("ACTION", Column::Fixed),
        ("TARGET", Column::Text),
        ("RUN", Column::Fixed),
        ("OUTCOME", Column::Fixed),
        ("DETAIL", Column::Text),
    ]);
    for entry in entries {
        let who = if entry.actor == entry.actor_id || entry.actor_id == "local" {
            entry.actor.clone()
        } else {
            format!("{} ({})", entry.actor, entry.actor_id)
        };
        let outcome = match entry.status {
            Some(status) => format!("{} {status}", entry.outcome),
            None => entry.outcome.clone(),
        };
        table.row(vec![
            entry.id.to_string(),
            entry.at.clone(),
            who,
            entry.source.clone(),
            entry.action.clone(),
            entry.target.clone(),
            entry.run_id.clone().unwrap_or_else(|| "-".to_string()),
            outcome,
            entry.detail.clone(),
        ]);
    }
    table.render(width)
}

/// What a handler tells the audit layer about the request it answered, as an extension of its
/// response (the layer takes it off before the answer goes out). Each field, when set,
/// replaces what the layer would record: the target (else the path's parameters), the run
/// (else none) and the detail (else, for an answer that is not 2xx, the error's message).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditNote {
    /// What the request acted on.
    pub target: Option<String>,
    /// The run it started or acted on.
    pub run_id: Option<String>,
    /// A short line on what was done, or why it failed (never a request's body).
    pub detail: Option<String>,
}

impl AuditNote {
    /// `response` carrying this note.
    pub fn on(self, mut response: axum::response::Response) -> axum::response::Response {
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_is_one_short_line_without_anything_shaped_like_a_secret() {
        assert_eq!(
            one_line("  two\nlines\t and\r\n spaces "),
            "two lines and spaces"
        );
        let admin = "ab".repeat(32);
        let api = format!("stw_0123456789abcdef_{}", "cd".repeat(32));
        assert_eq!(
            one_line(&format!("token {admin} or {api}!")),
            "token (hidden) or stw_0123456789abcdef_(hidden)!"
        );
        // Short hex (ids, run ids, statuses) stays.
        assert_eq!(
            one_line("run 20261203T100000.000Z-ab12 of token 0123456789abcdef"),
            "run 20261203T100000.000Z-ab12 of token 0123456789abcdef"
        );
        let long = "é".repeat(MAX_DETAIL + 10);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), MAX_DETAIL);
        assert!(cut.ends_with('…'));
        assert_eq!(one_line(&"é".repeat(MAX_DETAIL)), "é".repeat(MAX_DETAIL));
    }

    #[test]
    fn an_answer_becomes_an_outcome_by_its_status() {
        assert_eq!(Outcome::of_status(StatusCode::OK), Outcome::Ok);
        assert_eq!(Outcome::of_status(StatusCode::NO_CONTENT), Outcome::Ok);
        assert_eq!(Outcome::of_status(StatusCode::FORBIDDEN), Outcome::Refused);
        assert_eq!(
            Outcome::of_status(StatusCode::UNAUTHORIZED),
            Outcome::Refused
        );
        assert_eq!(Outcome::of_status(StatusCode::NOT_FOUND), Outcome::Failed);
        assert_eq!(Outcome::of_status(StatusCode::CONFLICT), Outcome::Failed);
        assert_eq!(
            Outcome::of_status(StatusCode::SERVICE_UNAVAILABLE),
            Outcome::Failed
        );
    }
}
