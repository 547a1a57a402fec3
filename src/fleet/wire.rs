//! The agent protocol: length-prefixed JSON frames over mutually authenticated TLS.
//!
//! Every frame is a 4-byte big-endian length followed by that many bytes of one JSON message.
//! An agent sends [`AgentMsg`]s, the controller [`ControllerMsg`]s. The payloads are the
//! model's own data in an edge form (this module's `Wire*` types), so one data model runs from
//! documents to the agent and back. `docs/reference/wire.md` documents it for a second
//! implementation.
//!
//! **Architecture Invariant:** nothing here trusts the peer. Frames are bounded by
//! [`MAX_FRAME`], every read has a deadline chosen by the caller, and decoding errors are
//! values, never panics. A node's identity never comes from a message field: the controller
//! takes it from the verified certificate.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::diag::{SourceId, Span};
use crate::exec::{Outcome, ResourceOutcome, RunReport};
use crate::model::{self, Attr, Relation, RelationKind, Resource, ResourceId, Value};
use crate::resource::change::{Action, State};
use crate::resource::provider::CommandOutput;

/// The protocol version this steward speaks; a peer with another version is refused.
pub const PROTOCOL: u32 = 1;

/// The largest frame either side accepts (a 10,000-resource catalog is a few MB).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// The largest frame the controller reads before the peer is authenticated: the `enroll`
/// message of a connection without a certificate, and the `hello` of one with a certificate
/// (whose node the store has not yet confirmed). A CSR and tags take a few KB, a hello's
/// facts less; only sessions past their `hello` may send up to [`MAX_FRAME`], so a stranger
/// cannot make the controller hold megabytes.
pub const MAX_UNAUTHENTICATED_FRAME: usize = 64 * 1024;

/// How long a peer may take to send its first message after the TLS handshake.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an agent sends a heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// Silence after which the controller drops an agent (three missed heartbeats).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(35);

/// Why a frame could not be read or written, or a message does not map back to the model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The connection failed or closed mid-frame.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame over the limit (the frame's length, the limit).
    #[error("frame of {0} bytes is over the {1}-byte limit")]
    TooLarge(usize, usize),
    /// The frame is not a message of this protocol.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer said nothing in time.
    #[error("no message within {0:?}")]
    Timeout(Duration),
    /// A bytes value that is not hex.
    #[error("bytes: {0}")]
    Bytes(#[source] hex::FromHexError),
    /// A resource id that is not `TYPE:NAME`.
    #[error("resource `{0}` is not TYPE:NAME")]
    ResourceId(String),
    /// An attribute whose value does not map back.
    #[error("{resource}: `{attr}`: {source}")]
    Attr {
        /// The resource's id.
        resource: String,
        /// The attribute's name.
        attr: String,
        /// What is wrong with its value.
        source: Box<WireError>,
    },
    /// A relation this version does not know.
    #[error("{resource}: unknown relation `{relation}`")]
    Relation {
        /// The resource's id.
        resource: String,
        /// The relation's name.
        relation: String,
    },
    /// A relation's target that is not `TYPE:NAME`.
    #[error("{resource}: relation target `{target}`")]
    RelationTarget {
        /// The resource's id.
        resource: String,
        /// The target as sent.
        target: String,
    },
    /// An outcome for a resource index the catalog does not have.
    #[error("outcome for resource #{index} of {id}")]
    OutcomeIndex {
        /// The index sent.
        index: usize,
        /// The id sent with it.
        id: String,
    },
    /// An outcome whose id is not the catalog's at its index.
    #[error("outcome #{index} names `{id}` but the catalog has `{catalog}` there")]
    OutcomeId {
        /// The index sent.
        index: usize,
        /// The id sent with it.
        id: String,
        /// The catalog's id at that index.
        catalog: String,
    },
    /// An action this version does not know.
    #[error("unknown action `{0}`")]
    Action(String),
    /// A skipped outcome whose cause is not `TYPE:NAME`.
    #[error("skipped because of `{0}`: not TYPE:NAME")]
    SkipCause(String),
}

/// Reads one message of up to [`MAX_FRAME`] bytes; `Ok(None)` when the peer closed the
/// connection cleanly between frames.
pub async fn read_msg<T, R>(reader: &mut R, deadline: Duration) -> Result<Option<T>, WireError>
where
    T: for<'de> Deserialize<'de>,
    R: AsyncRead + Unpin,
{
    read_msg_within(reader, deadline, MAX_FRAME).await
}

/// [`read_msg`] with a smaller frame limit (such as [`MAX_UNAUTHENTICATED_FRAME`]): a larger
/// length prefix fails at once, before any of the frame is read or memory set aside for it.
pub async fn read_msg_within<T, R>(
    reader: &mut R,
    deadline: Duration,
    max_frame: usize,
) -> Result<Option<T>, WireError>
where
    T: for<'de> Deserialize<'de>,
    R: AsyncRead + Unpin,
{
    let frame = tokio::time::timeout(deadline, read_frame(reader, max_frame))
        .await
        .map_err(|_| WireError::Timeout(deadline))??;
    let Some(frame) = frame else {
        return Ok(None);
    };
    serde_json::from_slice(&frame)
        .map(Some)
        .map_err(|err| WireError::Malformed(err.to_string()))
}

async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame: usize,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max_frame {
        return Err(WireError::TooLarge(len, max_frame));
    }
    let mut frame = vec![0u8; len];
    reader.read_exact(&mut frame).await?;
    Ok(Some(frame))
}

/// Writes one message as a frame and flushes it.
pub async fn write_msg<T, W>(writer: &mut W, msg: &T) -> Result<(), WireError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let body = serde_json::to_vec(msg).map_err(|err| WireError::Malformed(err.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len(), MAX_FRAME));
    }
    let len = u32::try_from(body.len()).map_err(|_| WireError::TooLarge(body.len(), MAX_FRAME))?;
    writer.write_all(&len.to_be_bytes()).await?;
    writer.write_all(&body).await?;
    writer.flush().await?;
    Ok(())
}

/// What an agent sends.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentMsg {
    /// First message of an enrollment connection (no client certificate).
    Enroll {
        /// [`PROTOCOL`].
        protocol: u32,
        /// The one-time join token.
        token: String,
        /// The name the node asks for.
        node: String,
        /// The tags the agent asks for: recorded as its claimed tags, never used for
        /// targeting (the node's tags are the controller's).
        tags: BTreeMap<String, String>,
        /// A certificate request; only its public key is used.
        csr_pem: String,
    },
    /// First message of a mutually authenticated connection.
    Hello {
        /// [`PROTOCOL`].
        protocol: u32,
        /// The agent's steward version.
        version: String,
        /// What the node is.
        facts: WireFacts,
    },
    /// Still here.
    Heartbeat,
    /// One resource finished during an apply.
    Event {
        /// The task.
        task_id: String,
        /// The resource's outcome.
        outcome: WireOutcome,
    },
    /// A task's result (also re-sent from the agent's outbox after a reconnect).
    Result {
        /// The task.
        task_id: String,
        /// What came of it.
        result: TaskResult,
    },
    /// A command task's process started (Run Command's "in progress").
    Started {
        /// The task.
        task_id: String,
    },
    /// Live output of a command task: the kept part of a stream, as it arrives.
    Output {
        /// The task.
        task_id: String,
        /// `stdout` or `stderr`.
        stream: String,
        /// The bytes, as text (invalid UTF-8 replaced).
        data: String,
    },
    /// A new certificate request for the same key's successor, over the live connection.
    Renew {
        /// The request; only its public key is used.
        csr_pem: String,
    },
}

/// What the controller sends.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControllerMsg {
    /// Enrollment accepted.
    Enrolled {
        /// The node's certificate.
        cert_pem: String,
        /// The controller's CA certificate.
        ca_pem: String,
    },
    /// The connection is refused; it will be closed.
    Refused {
        /// Why, for the agent's log.
        reason: String,
    },
    /// The hello was accepted.
    Welcome {
        /// The node name the controller knows this agent by (from its certificate).
        node: String,
        /// Renew the certificate now: it expires soon.
        renew: bool,
    },
    /// Work to do.
    Task(Task),
    /// Stop a running command task (the run was cancelled).
    Cancel {
        /// The task.
        task_id: String,
    },
    /// A result was stored: the agent may forget it.
    Ack {
        /// The task.
        task_id: String,
    },
    /// Still here (sent every [`HEARTBEAT`], so a quiet agent knows the link is alive).
    Heartbeat,
    /// A renewed certificate.
    Renewed {
        /// The node's new certificate.
        cert_pem: String,
    },
}

/// One unit of work for one agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Unique; an agent never runs the same id twice.
    pub id: String,
    /// RFC 3339; an agent never starts a task after this.
    pub expires_at: String,
    /// What to do.
    pub kind: TaskKind,
}

/// The kinds of task.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskKind {
    /// Read every resource of the catalog; change nothing.
    Probe {
        /// The node's desired resources.
        catalog: Catalog,
    },
    /// Plan the catalog and apply it.
    Apply {
        /// The node's desired resources.
        catalog: Catalog,
        /// The fingerprints of the observed states the user saw in the plan: the agent
        /// refuses when what it reads now differs.
        fingerprints: Option<Vec<String>>,
        /// At most this many resources at once.
        parallel: usize,
    },
    /// Run a command (Run Command).
    Command(CommandTask),
}

/// A command to run on a node, with the agent's root as working directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandTask {
    /// Program and arguments (never a shell string built from data).
    pub argv: Vec<String>,
    /// Run as this user (default: the agent's).
    pub user: Option<String>,
    /// Killed after this many seconds.
    pub timeout_secs: u64,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Values to redact from the output (secret environment values).
    pub secrets: Vec<String>,
}

/// What came of a task.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskResult {
    /// A probe: per resource, the observed state or why it could not be read.
    Observed {
        /// In catalog order.
        states: Vec<WireObserved>,
    },
    /// An apply.
    Applied {
        /// What was observed before applying, in catalog order.
        states: Vec<WireObserved>,
        /// Each resource's outcome, in plan order.
        outcomes: Vec<WireOutcome>,
        /// Wall time.
        duration_ms: u64,
    },
    /// A command ran (or was killed at its timeout or by a cancel).
    Command {
        /// What it printed (capped, redacted) and how it ended.
        output: WireOutput,
        /// Wall time.
        duration_ms: u64,
    },
    /// The agent would not run it (expired, already run, malformed, state moved).
    Refused {
        /// Why.
        reason: String,
    },
    /// It failed as a whole.
    Failed {
        /// Why.
        error: String,
    },
}

/// A node's facts as agents report them. Data: never rendered as a template.
///
/// The one object of the protocol that takes unknown fields (ignored) and missing ones
/// (unknown facts), so facts can be added within a protocol version: an agent reporting fewer
/// or more facts than the controller knows still joins.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireFacts {
    /// Host name.
    pub hostname: String,
    /// OS family.
    pub os_family: String,
    /// OS release.
    pub os_release: String,
    /// CPU architecture.
    pub arch: String,
    /// IP addresses.
    pub addresses: Vec<String>,
    /// The addresses by interface name.
    #[serde(default)]
    pub interfaces: BTreeMap<String, Vec<String>>,
    /// CPUs steward may use; `null` when unknown.
    #[serde(default)]
    pub cpus: Option<u64>,
    /// Memory in bytes; `null` when unknown.
    #[serde(default)]
    pub memory: Option<u64>,
    /// Kernel release; empty when unknown.
    #[serde(default)]
    pub kernel: String,
    /// `physical`, or the virtual machine or container kind; empty when unknown.
    #[serde(default, rename = "virtual")]
    pub virtualization: String,
}

impl From<&model::Facts> for WireFacts {
    fn from(facts: &model::Facts) -> WireFacts {
        WireFacts {
            hostname: facts.hostname.clone(),
            os_family: facts.os_family.clone(),
            os_release: facts.os_release.clone(),
            arch: facts.arch.clone(),
            addresses: facts.addresses.clone(),
            interfaces: facts.interfaces.clone(),
            cpus: facts.cpus,
            memory: facts.memory,
            kernel: facts.kernel.clone(),
            virtualization: facts.virtualization.clone(),
        }
    }
}

impl From<WireFacts> for model::Facts {
    fn from(facts: WireFacts) -> model::Facts {
        model::Facts {
            hostname: facts.hostname,
            os_family: facts.os_family,
            os_release: facts.os_release,
            arch: facts.arch,
            addresses: facts.addresses,
            interfaces: facts.interfaces,
            cpus: facts.cpus,
            memory: facts.memory,
            kernel: facts.kernel,
            virtualization: facts.virtualization,
        }
    }
}

impl WireFacts {
    /// A node's facts as the controller stored them (the JSON its agent reported), for
    /// rendering documents: what does not parse is no fact, and a node that reported no
    /// hostname has its name as one.
    pub fn stored(node: &str, facts: &serde_json::Value) -> model::Facts {
        let facts: WireFacts = serde_json::from_value(facts.clone()).unwrap_or_default();
        let mut facts = model::Facts::from(facts);
        if facts.hostname.is_empty() {
            facts.hostname = node.to_string();
        }
        facts
    }
}

/// A node's desired resources, rendered: what an agent needs to probe and apply.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// The node.
    pub node: String,
    /// Resources in declaration order; outcomes refer to them by index.
    pub resources: Vec<WireResource>,
    /// The sensitive values this node's resources read (longest first), so the agent scrubs
    /// them from command output and messages. Never the project's other secrets: a node is
    /// sent only what its own rendered resources use.
    pub secrets: Vec<String>,
}

/// One resource.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireResource {
    /// `TYPE:NAME`.
    pub id: String,
    /// Attributes.
    pub attrs: BTreeMap<String, WireAttr>,
    /// Relationships: `[kind, "TYPE:NAME"]`.
    pub relations: Vec<(String, String)>,
    /// The association that put it here.
    pub association: Option<String>,
}

/// One attribute.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireAttr {
    /// The value.
    pub value: WireValue,
    /// Derived from a sensitive parameter.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// A value, tagged by its type so strings, numbers and bytes never blur.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireValue {
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
    /// Bytes, as lowercase hex.
    Bytes(String),
    /// A list.
    List(Vec<WireValue>),
    /// A map.
    Map(BTreeMap<String, WireValue>),
}

impl From<&Value> for WireValue {
    fn from(value: &Value) -> WireValue {
        match value {
            Value::Null => WireValue::Null,
            Value::Bool(v) => WireValue::Bool(*v),
            Value::Int(v) => WireValue::Int(*v),
            Value::Float(v) => WireValue::Float(*v),
            Value::String(v) => WireValue::String(v.clone()),
            Value::Bytes(v) => WireValue::Bytes(hex::encode(v)),
            Value::List(items) => WireValue::List(items.iter().map(WireValue::from).collect()),
            Value::Map(entries) => WireValue::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), WireValue::from(v)))
                    .collect(),
            ),
        }
    }
}

impl WireValue {
    /// The model value; errors on bytes that are not hex.
    pub fn to_model(&self) -> Result<Value, WireError> {
        Ok(match self {
            WireValue::Null => Value::Null,
            WireValue::Bool(v) => Value::Bool(*v),
            WireValue::Int(v) => Value::Int(*v),
            WireValue::Float(v) => Value::Float(*v),
            WireValue::String(v) => Value::String(v.clone()),
            WireValue::Bytes(v) => Value::Bytes(hex::decode(v).map_err(WireError::Bytes)?),
            WireValue::List(items) => Value::List(
                items
                    .iter()
                    .map(WireValue::to_model)
                    .collect::<Result<_, _>>()?,
            ),
            WireValue::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.to_model()?)))
                    .collect::<Result<_, WireError>>()?,
            ),
        })
    }
}

/// The observed state of one resource, or why it could not be read.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WireObserved {
    /// Attribute values as read.
    State(BTreeMap<String, WireValue>),
    /// The read failed.
    Error(String),
}

impl WireObserved {
    /// The edge form of an observation.
    pub fn new(observed: &Result<State, String>) -> WireObserved {
        match observed {
            Ok(state) => WireObserved::State(
                state
                    .iter()
                    .map(|(k, v)| (k.clone(), WireValue::from(v)))
                    .collect(),
            ),
            Err(err) => WireObserved::Error(err.clone()),
        }
    }

    /// Back to the planner's form, where a read error is text; a malformed value becomes a
    /// read error.
    pub fn to_model(&self) -> Result<State, String> {
        match self {
            WireObserved::State(state) => state
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.to_model().map_err(|err| err.to_string())?)))
                .collect(),
            WireObserved::Error(err) => Err(err.clone()),
        }
    }
}

/// One resource's outcome in an apply.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireOutcome {
    /// Index in the catalog.
    pub resource: usize,
    /// `TYPE:NAME`, so a result is readable without its catalog.
    pub id: String,
    /// The planned action.
    pub action: Option<String>,
    /// What happened.
    pub outcome: WireOutcomeKind,
    /// How long it took.
    pub duration_ms: u64,
}

/// What happened to a resource.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum WireOutcomeKind {
    /// Nothing to do.
    Unchanged,
    /// Changed.
    Changed {
        /// Command output.
        output: Option<WireOutput>,
        /// Also refreshed.
        refreshed: bool,
    },
    /// Refreshed only.
    Refreshed {
        /// Command output.
        output: Option<WireOutput>,
    },
    /// Failed.
    Failed {
        /// Why.
        error: String,
        /// Command output.
        output: Option<WireOutput>,
    },
    /// Not attempted.
    Skipped {
        /// The dependency that failed, `TYPE:NAME`.
        because: String,
    },
}

/// A command's captured output (already capped and scrubbed by the agent).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireOutput {
    /// The arguments that ran.
    pub argv: Vec<String>,
    /// Exit code; none when killed.
    pub exit_code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Cut at the cap.
    pub truncated: bool,
    /// Killed at its timeout.
    pub timed_out: bool,
    /// Killed because its run was cancelled.
    #[serde(default)]
    pub cancelled: bool,
    /// Bytes written to standard output in all.
    #[serde(default)]
    pub stdout_bytes: u64,
    /// Bytes written to standard error in all.
    #[serde(default)]
    pub stderr_bytes: u64,
}

impl From<&CommandOutput> for WireOutput {
    fn from(out: &CommandOutput) -> WireOutput {
        WireOutput {
            argv: out.argv.clone(),
            exit_code: out.exit_code,
            stdout: out.stdout.clone(),
            stderr: out.stderr.clone(),
            truncated: out.truncated,
            timed_out: out.timed_out,
            cancelled: out.cancelled,
            stdout_bytes: out.stdout_bytes,
            stderr_bytes: out.stderr_bytes,
        }
    }
}

impl From<WireOutput> for CommandOutput {
    fn from(out: WireOutput) -> CommandOutput {
        CommandOutput {
            argv: out.argv,
            exit_code: out.exit_code,
            stdout: out.stdout,
            stderr: out.stderr,
            truncated: out.truncated,
            timed_out: out.timed_out,
            cancelled: out.cancelled,
            stdout_bytes: out.stdout_bytes,
            stderr_bytes: out.stderr_bytes,
        }
    }
}

impl From<&ResourceOutcome> for WireOutcome {
    fn from(outcome: &ResourceOutcome) -> WireOutcome {
        let output = |o: &Option<CommandOutput>| o.as_ref().map(WireOutput::from);
        WireOutcome {
            resource: outcome.resource,
            id: outcome.id.to_string(),
            action: outcome.action.map(|a| a.as_str().to_string()),
            outcome: match &outcome.outcome {
                Outcome::Unchanged => WireOutcomeKind::Unchanged,
                Outcome::Changed {
                    output: out,
                    refreshed,
                } => WireOutcomeKind::Changed {
                    output: output(out),
                    refreshed: *refreshed,
                },
                Outcome::Refreshed { output: out } => WireOutcomeKind::Refreshed {
                    output: output(out),
                },
                Outcome::Failed { error, output: out } => WireOutcomeKind::Failed {
                    error: error.clone(),
                    output: output(out),
                },
                Outcome::Skipped { because } => WireOutcomeKind::Skipped {
                    because: because.to_string(),
                },
            },
            duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl WireOutcome {
    /// Back to the executor's form, checked against the node's resources.
    pub fn to_model(&self, node: &model::Node) -> Result<ResourceOutcome, WireError> {
        let res = node
            .resources
            .get(self.resource)
            .ok_or_else(|| WireError::OutcomeIndex {
                index: self.resource,
                id: self.id.clone(),
            })?;
        if res.id.to_string() != self.id {
            return Err(WireError::OutcomeId {
                index: self.resource,
                id: self.id.clone(),
                catalog: res.id.to_string(),
            });
        }
        let action = match &self.action {
            None => None,
            Some(text) => Some(parse_action(text)?),
        };
        let outcome = match self.outcome.clone() {
            WireOutcomeKind::Unchanged => Outcome::Unchanged,
            WireOutcomeKind::Changed { output, refreshed } => Outcome::Changed {
                output: output.map(CommandOutput::from),
                refreshed,
            },
            WireOutcomeKind::Refreshed { output } => Outcome::Refreshed {
                output: output.map(CommandOutput::from),
            },
            WireOutcomeKind::Failed { error, output } => Outcome::Failed {
                error,
                output: output.map(CommandOutput::from),
            },
            WireOutcomeKind::Skipped { because } => Outcome::Skipped {
                because: ResourceId::parse(&because).ok_or(WireError::SkipCause(because))?,
            },
        };
        Ok(ResourceOutcome {
            resource: self.resource,
            id: res.id.clone(),
            action,
            outcome,
            duration: Duration::from_millis(self.duration_ms),
        })
    }

    /// True for failures.
    pub fn is_failed(&self) -> bool {
        matches!(self.outcome, WireOutcomeKind::Failed { .. })
    }
}

fn parse_action(text: &str) -> Result<Action, WireError> {
    Action::from_name(text).ok_or_else(|| WireError::Action(text.to_string()))
}

/// A run report from an agent's outcomes.
pub fn run_report(
    node: &model::Node,
    outcomes: &[WireOutcome],
    duration_ms: u64,
) -> Result<RunReport, WireError> {
    Ok(RunReport {
        node: node.name.clone(),
        outcomes: outcomes
            .iter()
            .map(|o| o.to_model(node))
            .collect::<Result<_, _>>()?,
        duration: Duration::from_millis(duration_ms),
    })
}

impl Catalog {
    /// The catalog of a lowered node. `secrets` are the model's ([`model::Model::secrets`]);
    /// the catalog takes only those the node's resources read ([`model::secrets_used`]).
    pub fn new(node: &model::Node, secrets: &[String]) -> Catalog {
        Catalog {
            node: node.name.clone(),
            resources: node
                .resources
                .iter()
                .map(|res| WireResource {
                    id: res.id.to_string(),
                    attrs: res
                        .attrs
                        .iter()
                        .map(|(name, attr)| {
                            (
                                name.clone(),
                                WireAttr {
                                    value: WireValue::from(&attr.value),
                                    sensitive: attr.sensitive,
                                },
                            )
                        })
                        .collect(),
                    relations: res
                        .relations
                        .iter()
                        .map(|r| (r.kind.as_str().to_string(), r.target.to_string()))
                        .collect(),
                    association: res.association.clone(),
                })
                .collect(),
            secrets: model::secrets_used(secrets, &node.resources),
        }
    }

    /// The node an agent works on; every field is checked, since it came off the network.
    /// Spans point nowhere: an agent never reports a location.
    pub fn to_node(&self, facts: model::Facts) -> Result<model::Node, WireError> {
        let nowhere = Span::new(SourceId(0), 0, 0);
        let mut resources = Vec::with_capacity(self.resources.len());
        for res in &self.resources {
            let id =
                ResourceId::parse(&res.id).ok_or_else(|| WireError::ResourceId(res.id.clone()))?;
            let mut attrs = model::Attrs::new();
            for (name, attr) in &res.attrs {
                let value = attr.value.to_model().map_err(|err| WireError::Attr {
                    resource: res.id.clone(),
                    attr: name.clone(),
                    source: Box::new(err),
                })?;
                attrs.insert(
                    name.clone(),
                    Attr {
                        value,
                        span: nowhere,
                        sensitive: attr.sensitive,
                    },
                );
            }
            let mut relations = Vec::new();
            for (kind, target) in &res.relations {
                let kind = RelationKind::ALL
                    .into_iter()
                    .find(|k| k.as_str() == kind)
                    .ok_or_else(|| WireError::Relation {
                        resource: res.id.clone(),
                        relation: kind.clone(),
                    })?;
                let target =
                    ResourceId::parse(target).ok_or_else(|| WireError::RelationTarget {
                        resource: res.id.clone(),
                        target: target.clone(),
                    })?;
                relations.push(Relation {
                    kind,
                    target,
                    span: nowhere,
                });
            }
            resources.push(Resource {
                id,
                span: nowhere,
                source: SourceId(0),
                attrs,
                relations,
                association: res.association.clone(),
                // The agent scrubs with the catalog's `secrets`; it needs no per-resource list.
                secrets: Vec::new(),
            });
        }
        Ok(model::Node {
            name: self.node.clone(),
            tags: BTreeMap::new(),
            facts,
            resources: Arc::new(resources),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_refuse_oversized_and_junk() {
        let mut buf = Vec::new();
        write_msg(&mut buf, &AgentMsg::Heartbeat).await.unwrap();
        let msg: Option<AgentMsg> = read_msg(&mut buf.as_slice(), HELLO_TIMEOUT).await.unwrap();
        assert!(matches!(msg, Some(AgentMsg::Heartbeat)));

        let huge = ((MAX_FRAME + 1) as u32).to_be_bytes();
        let err = read_msg::<AgentMsg, _>(&mut huge.as_slice(), HELLO_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::TooLarge(..)), "{err}");
        // Before authentication the limit is small, and a larger prefix fails at once.
        let big = ((MAX_UNAUTHENTICATED_FRAME + 1) as u32).to_be_bytes();
        let err = read_msg_within::<AgentMsg, _>(
            &mut big.as_slice(),
            HELLO_TIMEOUT,
            MAX_UNAUTHENTICATED_FRAME,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, WireError::TooLarge(..)), "{err}");

        let mut junk = 5u32.to_be_bytes().to_vec();
        junk.extend_from_slice(b"\xff\x00{]x");
        let err = read_msg::<AgentMsg, _>(&mut junk.as_slice(), HELLO_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, WireError::Malformed(_)), "{err}");

        let mut cut = 50u32.to_be_bytes().to_vec();
        cut.extend_from_slice(b"{\"type\":");
        assert!(
            read_msg::<AgentMsg, _>(&mut cut.as_slice(), HELLO_TIMEOUT)
                .await
                .is_err()
        );
        let empty: Option<AgentMsg> = read_msg(&mut &b""[..], HELLO_TIMEOUT).await.unwrap();
        assert!(empty.is_none());
    }

    #[test]
    fn hellos_with_fewer_or_more_facts_are_read() {
        let hello = |facts: serde_json::Value| {
            serde_json::from_value::<AgentMsg>(serde_json::json!({
                "type": "hello", "protocol": PROTOCOL, "version": "0.1.0", "facts": facts,
            }))
        };
        // An agent from before interfaces, cpus, memory, kernel and virtual: those are unknown.
        let old = hello(serde_json::json!({
            "hostname": "h", "os_family": "debian", "os_release": "12", "arch": "x86_64",
            "addresses": ["10.0.0.1"],
        }));
        let Ok(AgentMsg::Hello { facts, .. }) = old else {
            panic!("{old:?}")
        };
        assert_eq!((facts.cpus, facts.memory), (None, None));
        assert!(facts.interfaces.is_empty());
        assert_eq!(facts.virtualization, "");
        // A newer agent's fact this controller does not know is left out.
        let new = hello(serde_json::json!({
            "hostname": "h", "os_family": "debian", "os_release": "12", "arch": "x86_64",
            "addresses": [], "cpus": 4, "memory": 1024, "kernel": "6.1.0", "virtual": "kvm",
            "gpus": 2,
        }));
        let Ok(AgentMsg::Hello { facts, .. }) = new else {
            panic!("{new:?}")
        };
        assert_eq!(facts.cpus, Some(4));
        assert_eq!(model::Facts::from(facts).virtualization, "kvm");
        // The rest of the message still refuses unknown fields.
        assert!(
            serde_json::from_value::<AgentMsg>(serde_json::json!({
                "type": "hello", "protocol": PROTOCOL, "version": "0.1.0", "extra": 1,
                "facts": { "hostname": "h", "os_family": "", "os_release": "", "arch": "",
                           "addresses": [] },
            }))
            .is_err()
        );
    }

    #[test]
    fn values_keep_their_types() {
        let value = Value::Map(BTreeMap::from([
            ("s".to_string(), Value::String("1".into())),
            ("i".to_string(), Value::Int(1)),
            ("b".to_string(), Value::Bytes(vec![0, 255])),
            (
                "l".to_string(),
                Value::List(vec![Value::Null, Value::Bool(true)]),
            ),
        ]));
        let text = serde_json::to_string(&WireValue::from(&value)).unwrap();
        let back: WireValue = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_model().unwrap(), value);
        let bad: WireValue = serde_json::from_str(r#"{"bytes":"zz"}"#).unwrap();
        assert!(bad.to_model().is_err());
    }

    #[test]
    fn catalogs_refuse_bad_ids_and_relations() {
        let catalog: Catalog = serde_json::from_value(serde_json::json!({
            "node": "n", "secrets": [],
            "resources": [{"id": "nocolon", "attrs": {}, "relations": [], "association": null}]
        }))
        .unwrap();
        let facts = crate::facts::local(std::path::Path::new("/nonexistent"));
        assert!(
            catalog
                .to_node(facts.clone())
                .unwrap_err()
                .to_string()
                .contains("TYPE:NAME")
        );
        let catalog: Catalog = serde_json::from_value(serde_json::json!({
            "node": "n", "secrets": [],
            "resources": [{"id": "file:/a", "attrs": {}, "relations": [["likes", "file:/b"]], "association": null}]
        }))
        .unwrap();
        assert!(
            catalog
                .to_node(facts)
                .unwrap_err()
                .to_string()
                .contains("likes")
        );
    }
}
