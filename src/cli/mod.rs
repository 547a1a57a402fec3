//! The command line: clap arguments → a command → an exit code.
//!
//! Owns argument parsing, the exit-code table, colour choice and rendering diagnostics for
//! people (miette's `fancy` reports live only here). Everything a library caller would need
//! lives in the library modules; this module only wires them.

mod commands;
mod facts;
mod fleet;
mod import;
mod man;
mod mode;
mod output;
mod params;
mod reach;
mod render;
mod show;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::resource::Registry;
use crate::validate::{Validated, validate};

/// Exit codes (docs/guide/commands.md, Terraform's convention). Usage errors are 1, never 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Success; no changes (with `--detailed-exitcode`).
    Ok = 0,
    /// Any error, including usage errors.
    Error = 1,
    /// Success with changes or drift (with `--detailed-exitcode`).
    Changes = 2,
    /// steward itself failed: a panic, a bug in steward, never a problem with the input.
    /// 70 is `EX_SOFTWARE` of sysexits.h ("internal software error"), so CI can tell a
    /// crash from a validation error.
    Internal = 70,
}

/// The environment variable that makes `steward` panic on purpose at the start of
/// [`run_with`], so tests can drive the internal-error path through the real binary: `1`
/// panics on the main thread, `rayon` in a rayon worker. A test hook only; never documented
/// for users (docs/architecture.md, "Test hooks").
const TEST_PANIC_VAR: &str = "STEWARD_TEST_PANIC";

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

const ABOUT: &str =
    "steward: declare the desired state of your nodes in YAML or KDL, see the plan, make it so";

const LONG_ABOUT: &str = "\
steward reads a project (a directory of YAML or KDL documents), checks it, builds each node's
dependency graph, and shows or applies the changes that make each node match its documents.

Exit codes: 0 success, 1 error (including usage errors), 2 changes or drift (with --detailed-exitcode), 70 internal error (a bug in steward; please report it).";

#[derive(Parser, Debug)]
#[command(name = "steward", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    /// When to colour output; NO_COLOR in the environment means never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// `--root` before the command, as it was given while it was global: still read, for the
    /// commands that take `--root` ([`ROOT_COMMANDS`]) only, and hidden from help.
    #[arg(long, value_name = "DIR", hide = true)]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// The commands that read or change a file system, and so take `--root`: the others never
/// look at one, so their help does not offer it.
const ROOT_COMMANDS: &[&str] = &[
    "validate", "plan", "apply", "drift", "graph", "import", "facts", "agent",
];

/// Flags renamed so that one name means one thing in every command: `(command, old, new)`.
/// The old spelling stays a hidden alias for one release and prints one warning line.
const RENAMED_FLAGS: &[(&str, &str, &str)] = &[
    ("agent", "--controller", "--connect"),
    ("agent", "--state-dir", "--data-dir"),
    ("serve", "--name", "--cert-name"),
];

/// steward's command line: the derived definition, with `--root` on [`ROOT_COMMANDS`]. Parsing,
/// completions and man pages all read this one.
pub(crate) fn cli_command() -> clap::Command {
    let mut command = Cli::command();
    for name in ROOT_COMMANDS {
        command = command.mut_subcommand(name, |sub| {
            sub.arg(
                clap::Arg::new("root")
                    .long("root")
                    .value_name("DIR")
                    .value_parser(clap::value_parser!(PathBuf))
                    .help("Act on (and read facts from) a file system rooted at DIR instead of `/` (tests, images)"),
            )
        });
    }
    command
}

/// One warning line on stderr for each old spelling of a renamed flag in `args`.
fn warn_renamed(command: &str, args: &[std::ffi::OsString]) {
    for (_, old, new) in RENAMED_FLAGS.iter().filter(|(c, _, _)| *c == command) {
        let used = args.iter().skip(1).any(|arg| {
            arg.to_str().is_some_and(|arg| {
                arg == *old || arg.strip_prefix(old).is_some_and(|v| v.starts_with('='))
            })
        });
        if used {
            eprintln!(
                "warning: `steward {command} {old}` is now {new}; {old} will stop working in the next release"
            );
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load, template-check and graph-check a project.
    #[command(after_help = "\
Examples:
  steward validate                        # the project in the current directory
  steward validate examples/quickstart
  steward validate site.kdl --format json # diagnostics with file, line, column, code, message

Exit: 0 when the project is sound, 1 on any error, 70 on an internal error (a bug in steward).")]
    Validate(ValidateArgs),
    /// Probe the nodes and print the changes that would make them match the documents.
    #[command(after_help = "\
Examples:
  steward plan examples/quickstart
  steward plan examples/quickstart --root /tmp/demo -o plan.json   # save it for `apply plan.json`
  steward plan . --detailed-exitcode       # exit 2 when there are changes (for CI)
  steward plan . --format json | jq .summary

Exit: 0 success, 1 error, 2 changes (with --detailed-exitcode), 70 internal error.")]
    Plan(PlanArgs),
    /// Make the nodes match the documents: a fresh plan, or a saved one.
    #[command(after_help = "\
Examples:
  steward apply examples/quickstart --root /tmp/demo --yes
  steward apply plan.json                  # a saved plan; refused if the system moved since

Without --yes, apply shows the plan and asks on a terminal; without a terminal it refuses.
A saved plan was reviewed already and applies without asking.
Exit: 0 success, 1 error (any resource failed), 70 internal error.")]
    Apply(ApplyArgs),
    /// Check the nodes against the documents and record what drifted, as a run with findings.
    #[command(after_help = "\
Examples:
  steward drift . --detailed-exitcode        # exit 2 when anything drifted
  steward drift examples/quickstart --root /tmp/demo
  steward report --format sarif > drift.sarif

A drift run changes nothing.
Each drifted or failed resource opens a finding, or bumps the open one.
A later run where the resource is compliant resolves it.
Exit: 0 no drift, 1 error, 2 drift (with --detailed-exitcode), 70 internal error.")]
    Drift(DriftArgs),
    /// Render a recorded run for people, CI systems and code hosts.
    #[command(after_help = "\
Examples:
  steward report                                  # the latest run, for people
  steward report --format junit > steward.xml     # a test case per node x resource
  steward report --format sarif > steward.sarif   # annotations on the declaring lines
  steward report --format markdown >> \"$GITHUB_STEP_SUMMARY\"
  steward report 20261125T101500.000Z-4242 --format json --project examples/quickstart

Exit: 0, or 1 when the run does not exist (the runs are listed), 70 internal error.")]
    Report(ReportArgs),
    /// List the recorded runs, newest first.
    #[command(after_help = "\
Examples:
  steward runs                              # the store in ./.steward
  steward runs --project examples/quickstart")]
    Runs(RunsArgs),
    /// List findings (open ones unless --all), or resolve one by hand.
    #[command(after_help = "\
Examples:
  steward findings
  steward findings --all
  steward findings resolve 3")]
    Findings(FindingsArgs),
    /// List the audit log: who changed what, from where, and how it ended; newest first.
    #[command(after_help = "\
Examples:
  steward audit                                  # the controller's (STEWARD_CONTROLLER)
  steward audit --limit 20 --before 1234         # the 20 entries before entry 1234
  steward audit --run 20261203T101500.000Z-4242 --format json
  steward audit --state-dir /var/lib/steward     # a controller's store, read directly

Each act is a `started` entry, then one saying how it ended (ok, refused or failed).
Requests without a valid token (401) are not recorded; the controller logs them.")]
    Audit(AuditArgs),
    /// Run the controller: the agent port (mutual TLS), the scheduler, the HTTP API and dashboard.
    #[command(after_help = "\
Examples:
  steward serve --data-dir /var/lib/steward --listen 0.0.0.0:7443 --http 127.0.0.1:7080
  steward serve --data-dir D --listen 127.0.0.1:0 --http 127.0.0.1:0   # ports in D/endpoints.json
  steward serve --data-dir D --listen 0.0.0.0:7443 --http 0.0.0.0:7080 --http-tls --cert-name ctl.example.com

On first start it creates its CA, server certificate and D/admin.token (mode 0600).")]
    Serve(ServeArgs),
    /// Run an agent: enroll once with a join token, then keep a connection and run tasks.
    #[command(after_help = "\
Examples:
  steward agent --connect ctl.example.com:7443 --join-token-file /root/web-1.token \\
                --name web-1 --data-dir /var/lib/steward-agent
  STEWARD_JOIN_TOKEN=\"$T\" steward agent --connect 127.0.0.1:7443 --name web-1 --data-dir D
  steward agent --connect 127.0.0.1:7443 --name web-1 --data-dir D --root R   # enrolled already
  steward agent --connect ctl-a:7443,ctl-b:7443 --name web-1 --data-dir D     # fails over a -> b

The join token is needed only to enroll. Give it in a file or in STEWARD_JOIN_TOKEN: --token
shows it to every user of the machine (in `ps`). The node's tags are the controller's (bound by
the token or set with `steward node tag`); --tags is only what the agent asks for.")]
    Agent(AgentArgs),
    /// Manage join tokens and API tokens.
    #[command(
        subcommand,
        after_help = "\
Examples:
  steward token create --data-dir D --name web-1 --tags role=web > web-1.token
  steward token create --data-dir D --replace web-1 --ttl 30m   # re-enroll web-1 on a new machine
  steward token create --data-dir D                              # any new name, no tags
  steward token create --data-dir D --api --role plan --name ci --ttl 30d > ci.token
  steward token list --data-dir D
  steward token revoke --data-dir D 0123456789abcdef"
    )]
    Token(TokenCommand),
    /// List the enrolled nodes of a controller.
    #[command(after_help = "\
Example:
  STEWARD_CONTROLLER=http://127.0.0.1:7080 STEWARD_TOKEN_FILE=D/admin.token steward nodes")]
    Nodes(NodesArgs),
    /// Manage one node of a controller.
    #[command(subcommand)]
    Node(NodeCommand),
    /// List a controller's scheduled associations, or switch one off or on.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "\
Examples:
  steward schedules
  steward schedules --format json
  steward schedules disable nightly-drift
  steward schedules enable nightly-drift

The scheduled associations are those of the controller's current project (the project last
applied as a whole through a controller). A disabled association does not fire; enabled again,
it fires at its next due time (the firings it missed while disabled are not made up).
Exit: 0, or 1 on an error (such as an association the current project does not schedule)."
    )]
    Schedules(SchedulesArgs),
    /// Run a command (or a document) on nodes through their agents, at a controlled pace.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "\
Examples:
  steward run --target role=web --max-concurrency 2 -- systemctl restart nginx
  steward run --target all -- df -h
  steward run --target web-1 --shell 'tail -n 50 /var/log/syslog | grep -i error'
  steward run --target role=web --document ops/rotate-key.yaml --param key_id=42
  steward run cancel 20261126T101500.000Z-4242

The command runs with argv (never through a shell) in each agent's --root, as the agent's user
or --user. Each node's status: pending, in_progress, success, failed, timed_out,
delivery_timed_out, cancelled or not_started (max-errors was exceeded first).
Exit: 0 when every node succeeded, 1 otherwise (including no node matched), 70 internal error."
    )]
    Run(Box<RunArgs>),
    /// Print each node's dependency graph.
    #[command(after_help = "\
Examples:
  steward graph examples/quickstart | dot -Tsvg > graph.svg
  steward graph examples/quickstart --format json")]
    Graph(GraphArgs),
    /// Read resources' live state and print a document that declares it.
    #[command(after_help = "\
Examples:
  steward import file:/etc/motd user:alice > imported.yaml
  steward import directory:/srv/app symlink:/srv/current --format kdl --root /tmp/demo

The document, applied, changes nothing (`steward plan` exits 0). A resource that is not there
is imported as `ensure: absent`. Content that is not UTF-8 text is refused.
Exit: 0, or 1 when any resource cannot be read or imported (nothing is printed then).")]
    Import(import::ImportArgs),
    /// Print the facts steward knows of this machine, as documents read them.
    #[command(after_help = "\
Examples:
  steward facts
  steward facts --format json | jq -r .os.family
  steward facts --root /tmp/image          # the OS release of an image

Documents read these facts as `node.hostname`, `node.os.family`, `node.os.release`,
`node.arch`, `node.addresses` (not loopback or link-local), `node.interfaces` (the same
addresses by interface), `node.cpus`, `node.memory` (bytes), `node.kernel` and
`node.virtual` (`physical`, `kvm`, `docker`, ...). Only the OS comes from --root; the rest
describes the running machine. A fact that cannot be read is empty (none for cpus and
memory, null in JSON).")]
    Facts(facts::FactsArgs),
    /// Print a saved plan again: as `plan` printed it, or its JSON.
    #[command(after_help = "\
Examples:
  steward plan examples/quickstart -o repair.json
  steward show repair.json
  steward show repair.json --format json | jq .parameters

Exit: 0, or 1 when the file is not a saved plan.")]
    Show(show::ShowArgs),
    /// Print the JSON Schema of the YAML document spelling.
    #[command(after_help = "\
Editors use it to complete and check documents: put this line at the top of a YAML document:
  # yaml-language-server: $schema=path/to/steward.schema.json

Example:
  steward schema > schema/steward.schema.json")]
    Schema,
    /// Print shell completions.
    #[command(after_help = "\
Examples:
  steward completions bash > /etc/bash_completion.d/steward
  steward completions zsh > \"${fpath[1]}/_steward\"")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print steward's manual page, or install one page per command.
    #[command(after_help = "\
Examples:
  steward man | man -l -                     # read it now
  steward man --install                      # next to the binary: BIN/../share/man/man1
  steward man --install --dir ~/.local/share/man/man1

man finds pages installed next to a binary on PATH (BIN/../share/man), so after
`cargo install` the default needs no MANPATH.")]
    Man(man::ManArgs),
}

/// Where the controller's HTTP API is; set, `plan`, `apply`, `drift`, `runs`, `report`,
/// `findings` and `audit` act on the fleet instead of this machine.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct RemoteArgs {
    /// The controller's HTTP API, such as http://127.0.0.1:7080 or https://ctl.example.com:7080.
    #[arg(long, value_name = "URL", env = "STEWARD_CONTROLLER")]
    pub(crate) controller: Option<String>,
    /// The file holding the controller's admin token (`DATA_DIR/admin.token`).
    #[arg(long, value_name = "FILE", env = "STEWARD_TOKEN_FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// The controller's CA certificate (`DATA_DIR/ca.crt`), the only one trusted for https.
    #[arg(long, value_name = "FILE", env = "STEWARD_CA_FILE")]
    pub(crate) ca_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// Where the CA, keys, store and uploaded projects live.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
    /// The agent port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7443")]
    pub(crate) listen: String,
    /// The HTTP API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7080")]
    pub(crate) http: String,
    /// Serve the HTTP API over HTTPS, with a certificate from the controller's CA (clients
    /// trust DATA_DIR/ca.crt through STEWARD_CA_FILE).
    #[arg(long)]
    pub(crate) http_tls: bool,
    /// Another name (DNS or IP) agents reach the controller by, for its certificate;
    /// repeatable. Was --name, which agent and token create read as a node's name.
    #[arg(long = "cert-name", value_name = "NAME", alias = "name")]
    pub(crate) names: Vec<String>,
    /// How long agent certificates live (agents renew when a third is left): 12h, 30d, 2w.
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    pub(crate) agent_cert_lifetime: String,
    /// Log lines for people (human) or one JSON object each (json); STEWARD_LOG filters.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "human")]
    pub(crate) log_format: crate::fleet::logging::LogFormat,
    #[command(flatten)]
    pub(crate) shared: SharedArgs,
    /// Copy the controller whose data directory is DIR (run without --database: its store,
    /// CA, admin token and current project) into the empty database, then serve.
    #[arg(long, value_name = "DIR", requires = "database")]
    pub(crate) migrate_from: Option<PathBuf>,
}

/// Where several controllers share their store, CA and admin token.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct SharedArgs {
    /// The PostgreSQL database every controller of the fleet shares
    /// (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE); without it, the store is the
    /// embedded SQLite one in --data-dir.
    #[arg(
        long,
        value_name = "URL",
        env = "STEWARD_DATABASE",
        hide_env_values = true,
        requires = "key_file"
    )]
    pub(crate) database: Option<String>,
    /// The key that seals the CA key and the admin token in the database (0600; created
    /// when missing: copy it to every controller).
    #[arg(
        long,
        value_name = "FILE",
        env = "STEWARD_KEY_FILE",
        requires = "database"
    )]
    pub(crate) key_file: Option<PathBuf>,
}

impl SharedArgs {
    /// The backend these flags choose.
    pub(crate) fn backend(&self) -> crate::fleet::footing::Backend {
        match (&self.database, &self.key_file) {
            (Some(url), Some(key_file)) => crate::fleet::footing::Backend::Shared {
                url: url.clone(),
                key_file: key_file.clone(),
            },
            _ => crate::fleet::footing::Backend::Embedded,
        }
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct AgentArgs {
    /// The controller's agent port (`serve --listen`), HOST:PORT; several, comma-separated or
    /// repeated, are tried in order (failover). Was --controller, which every other command
    /// reads as the controller's HTTP API URL.
    #[arg(
        long,
        value_name = "HOST:PORT[,...]",
        alias = "controller",
        required = true,
        action = clap::ArgAction::Append
    )]
    pub(crate) connect: Vec<String>,
    /// The node's name.
    #[arg(long, value_name = "NAME")]
    pub(crate) name: String,
    /// A file holding the join token from `steward token create` (needed only to enroll).
    #[arg(long, value_name = "FILE")]
    pub(crate) join_token_file: Option<PathBuf>,
    /// The join token itself; visible in `ps`: prefer --join-token-file or STEWARD_JOIN_TOKEN.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "STEWARD_JOIN_TOKEN",
        hide_env_values = true
    )]
    pub(crate) token: Option<String>,
    /// Tags the agent asks for, KEY=VALUE,... (recorded as claimed; targeting uses the
    /// controller's tags).
    #[arg(long, value_name = "TAGS")]
    pub(crate) tags: Option<String>,
    /// The agent's own directory: its key, certificate and undelivered results. Was
    /// --state-dir, which plan, apply and drift read as the project's store.
    #[arg(long, value_name = "DIR", alias = "state-dir")]
    pub(crate) data_dir: PathBuf,
    /// Log lines for people (human) or one JSON object each (json); STEWARD_LOG filters.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "human")]
    pub(crate) log_format: crate::fleet::logging::LogFormat,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Print a one-time join token (it carries the CA's fingerprint), or with --api an API
    /// token for the HTTP API (shown once; only its hash is stored).
    Create {
        /// The controller's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Make an API token (stw_...) instead of a join token; needs --role.
        #[arg(long, conflicts_with_all = ["tags", "replace"])]
        api: bool,
        /// The API token's role: read, plan (also plan and drift runs), operate (also apply,
        /// commands, cancel, resolve findings) or admin (also revoke and tag nodes).
        #[arg(long, value_name = "ROLE", requires = "api")]
        role: Option<String>,
        /// The API token's target selector (`all`, a name, KEY=VALUE; comma-separated),
        /// stored and shown with the token.
        #[arg(long, value_name = "SELECTOR", requires = "api")]
        target: Option<String>,
        /// How long the token stays valid: 30m, 1h, 1h30m, 7d (a bare number is seconds).
        /// A join token: 1h when not given; an API token: until revoked.
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
        /// A join token: enroll only this node name. An API token: its name (shown in `token
        /// list` and in refusals).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// The node's tags, KEY=VALUE,... (the controller's: targeting uses them).
        #[arg(long, value_name = "TAGS")]
        tags: Option<String>,
        /// Replace the enrolled node NAME (a new machine or a lost key): its certificate is
        /// refused from then on; without --tags it keeps its tags.
        #[arg(long, value_name = "NAME", conflicts_with = "name")]
        replace: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        #[command(flatten)]
        shared: SharedArgs,
    },
    /// List the API tokens: id, name, role, target, expiry and whether revoked (never a
    /// secret or its hash).
    List {
        /// The controller's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        #[command(flatten)]
        shared: SharedArgs,
    },
    /// Revoke an API token by id: it is refused from then on.
    Revoke {
        /// The token's id (the part after `stw_`, as `token list` shows it).
        #[arg(value_name = "ID")]
        id: String,
        /// The controller's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        #[command(flatten)]
        shared: SharedArgs,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct NodesArgs {
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub(crate) format: OutputFormat,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    #[command(subcommand)]
    pub(crate) action: Option<RunAction>,
    /// Which nodes: `all`, a name, or `KEY=VALUE`; several joined by commas or the flag
    /// repeated.
    #[arg(long, value_name = "SEL")]
    pub(crate) target: Vec<String>,
    /// Nodes at once: a count or a percentage of the targets.
    #[arg(long, value_name = "N|P%", default_value = "50")]
    pub(crate) max_concurrency: String,
    /// Failures after which no new node starts: a count or a percentage.
    #[arg(long, value_name = "N|P%", default_value = "0")]
    pub(crate) max_errors: String,
    /// Kill a command that runs longer: 90 (seconds), 30s, 10m, 1h30m.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "1h",
        conflicts_with = "document"
    )]
    pub(crate) timeout: String,
    /// How long to wait for an offline node to connect: 90 (seconds), 30s, 5m.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        conflicts_with = "document"
    )]
    pub(crate) delivery_timeout: String,
    /// Run as this user on the nodes.
    #[arg(long, value_name = "USER", conflicts_with = "document")]
    pub(crate) user: Option<String>,
    /// Run this script with /bin/sh -c instead of a command.
    #[arg(long, value_name = "SCRIPT", conflicts_with = "document")]
    pub(crate) shell: Option<String>,
    /// Apply this document (or project directory) on the targets, once.
    #[arg(long, value_name = "PATH")]
    pub(crate) document: Option<PathBuf>,
    /// A parameter of --document.
    #[arg(long = "param", value_name = "NAME=VALUE", requires = "document")]
    pub(crate) params: Vec<String>,
    /// An environment variable for the command.
    #[arg(long = "env", value_name = "NAME=VALUE", conflicts_with = "document")]
    pub(crate) env: Vec<String>,
    /// Pass this variable from steward's environment; its value is redacted and never stored.
    #[arg(long = "env-secret", value_name = "NAME", conflicts_with = "document")]
    pub(crate) env_secret: Vec<String>,
    /// Output format: lines prefixed by node name, or JSON lines.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum RunAction {
    /// Stop a command run: no new node starts and running commands are killed.
    Cancel {
        /// The run id (printed when the run begins).
        run: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct SchedulesArgs {
    #[command(subcommand)]
    pub(crate) action: Option<SchedulesAction>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum SchedulesAction {
    /// Switch a scheduled association off: it does not fire until it is enabled again.
    Disable {
        /// The association (from `steward schedules`).
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Switch a scheduled association on again: it fires at its next due time.
    Enable {
        /// The association (from `steward schedules`).
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Subcommand, Debug)]
enum NodeCommand {
    /// Cut a node off: its certificate is refused from now on; the name may enroll again
    /// with a new token.
    Revoke {
        /// The node.
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Set or remove a node's tags (the controller's, which targeting uses).
    #[command(after_help = "\
Examples:
  steward node tag web-1 role=web zone=eu-1
  steward node tag web-1 --remove zone")]
    Tag {
        /// The node.
        name: String,
        /// Tags to set, KEY=VALUE.
        #[arg(value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A tag key to remove.
        #[arg(long, value_name = "KEY")]
        remove: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct ProjectArgs {
    /// The project: a directory of documents, or one document.
    #[arg(value_name = "PATH", default_value = ".")]
    path: PathBuf,
    /// Set a parameter (parsed by its declared type; lists and maps as JSON).
    /// STEWARD_PARAM_<NAME> in the environment does the same; --param wins.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Read parameters from a YAML or JSON map of names to values; repeatable, later files
    /// win; STEWARD_PARAM_<NAME> and --param win over every file.
    #[arg(long = "params-file", value_name = "FILE")]
    params_files: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ValidateArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
    format: DiagnosticFormat,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Save the plan to FILE (JSON) for `steward apply FILE`.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    local: LocalArgs,
    /// Exit 2 when there are changes, 0 when there are none, 1 on errors.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ApplyArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[command(flatten)]
    local: LocalArgs,
    /// Apply without asking.
    #[arg(long)]
    yes: bool,
    /// Output format: the plan and the report for people, or the recorded run as JSON (as
    /// `steward report --format json`; needs --yes or a saved plan).
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    format: OutputFormat,
    /// Apply at most N resources at once.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1024))]
    parallel: u16,
    /// Keep this many runs in the store; older ones are deleted (findings stay).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    keep_runs: u32,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(clap::Args, Debug)]
pub(crate) struct DriftArgs {
    #[command(flatten)]
    pub(crate) project: ProjectArgs,
    #[command(flatten)]
    pub(crate) local: LocalArgs,
    /// Exit 2 when anything drifted, 0 when nothing did, 1 on errors.
    #[arg(long)]
    pub(crate) detailed_exitcode: bool,
    /// Keep this many runs in the store; older ones are deleted (findings stay).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) keep_runs: u32,
    /// Output format: the drift for people, or the recorded run as JSON (as `steward report --format json`).
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub(crate) format: OutputFormat,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

/// Where the store is: the project's `.steward/`, or `--state-dir`.
#[derive(clap::Args, Debug)]
pub(crate) struct StoreArgs {
    /// The project whose store to read.
    #[arg(long, value_name = "PATH", default_value = ".", global = true)]
    pub(crate) project: PathBuf,
    /// The state directory (default: `.steward/` in the project).
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) state_dir: Option<PathBuf>,
    /// The controller's HTTP API (then its store is read instead).
    #[arg(long, value_name = "URL", env = "STEWARD_CONTROLLER", global = true)]
    pub(crate) controller: Option<String>,
    /// The file holding the controller's admin token.
    #[arg(long, value_name = "FILE", env = "STEWARD_TOKEN_FILE", global = true)]
    pub(crate) token_file: Option<PathBuf>,
    /// The controller's CA certificate, for an https API.
    #[arg(long, value_name = "FILE", env = "STEWARD_CA_FILE", global = true)]
    pub(crate) ca_file: Option<PathBuf>,
}

impl StoreArgs {
    /// The controller to ask, when one is set.
    pub(crate) fn remote(&self) -> Option<RemoteArgs> {
        self.controller.as_ref().map(|controller| RemoteArgs {
            controller: Some(controller.clone()),
            token_file: self.token_file.clone(),
            ca_file: self.ca_file.clone(),
        })
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct RunsArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// A project given where `plan` takes it: refused with a hint (the store commands take
    /// `--project`, as `report`'s argument is a run).
    #[arg(value_name = "PATH", hide = true)]
    pub(crate) stray_project: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub(crate) format: OutputFormat,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ReportArgs {
    /// The run (default: the latest).
    #[arg(value_name = "RUN")]
    pub(crate) run: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Human)]
    pub(crate) format: ReportFormat,
    #[command(flatten)]
    pub(crate) store: StoreArgs,
}

impl ReportArgs {
    /// Whether the run given is a path to a directory or a document: a project, which
    /// `report` takes with `--project`.
    fn names_a_project(&self) -> bool {
        self.run.as_deref().is_some_and(|run| {
            let path = Path::new(run);
            path.is_dir()
                || (path.is_file()
                    && path
                        .extension()
                        .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "kdl"))
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ReportFormat {
    Human,
    Json,
    Junit,
    Sarif,
    Markdown,
}

#[derive(clap::Args, Debug)]
pub(crate) struct FindingsArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// As [`RunsArgs::stray_project`].
    #[arg(value_name = "PATH", hide = true)]
    pub(crate) stray_project: Option<PathBuf>,
    /// Also list resolved findings.
    #[arg(long)]
    pub(crate) all: bool,
    /// Output format (of the listing, or of `resolve`'s answer).
    #[arg(long, value_enum, default_value_t = OutputFormat::Human, global = true)]
    pub(crate) format: OutputFormat,
    #[command(subcommand)]
    pub(crate) action: Option<FindingsAction>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    pub(crate) store: StoreArgs,
    /// At most N entries, newest first.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub(crate) limit: u16,
    /// Only entries older than entry ID (the next page: the last ID shown).
    #[arg(long, value_name = "ID")]
    pub(crate) before: Option<i64>,
    /// Only the entries of this run.
    #[arg(long, value_name = "RUN")]
    pub(crate) run: Option<String>,
    /// Only the entries of this actor: an API token's id, admin, scheduler, local, node:NAME,
    /// or a join token's id.
    #[arg(long, value_name = "ID")]
    pub(crate) actor: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub(crate) format: OutputFormat,
}

impl AuditArgs {
    /// The entries these flags select.
    pub(crate) fn query(&self) -> crate::store::AuditQuery {
        crate::store::AuditQuery {
            limit: usize::from(self.limit),
            before: self.before,
            run_id: self.run.clone(),
            actor_id: self.actor.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum FindingsAction {
    /// Close a finding by hand.
    Resolve {
        /// The finding's id (from `steward findings`).
        id: i64,
        /// Why it is resolved; kept in the finding's resolution (and, on a controller, in the
        /// audit log).
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
pub(crate) struct LocalArgs {
    /// Only these nodes: `all`, a name, or `KEY=VALUE`; several joined by commas or the flag
    /// repeated.
    #[arg(long, value_name = "SEL")]
    target: Vec<String>,
    /// Only this resource (`TYPE:NAME`) and what it depends on; repeatable.
    #[arg(long, value_name = "TYPE:NAME")]
    resource: Vec<String>,
    /// Leave out this resource (`TYPE:NAME`) and what depends on it; repeatable.
    #[arg(long, value_name = "TYPE:NAME")]
    exclude: Vec<String>,
    /// Where steward keeps its state (default: `.steward/` in the project).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    Human,
    Json,
}

#[derive(clap::Args, Debug)]
struct GraphArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    format: GraphFormat,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DiagnosticFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum GraphFormat {
    Dot,
    Json,
}

/// glibc gives every thread that allocates its own heap (up to 8 per core), each grown a
/// few pages at a time: a cold apply's worker and rayon threads touched ~9 MB more at their
/// peak and made ~8,600 more `mprotect` calls than with two arenas, for no measurable
/// speed. Two arenas keep the threads from waiting on one lock.
fn bound_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets a tunable of the allocator; it is called first thing in
    // `run`, before steward starts any thread, and its result (0 on failure) changes nothing
    // we rely on.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}

/// Runs steward with the process's arguments and returns its exit code.
///
/// On the main thread: glibc grows the main thread's heap with `brk`, in large steps, while
/// another thread's heap grows a few pages at a time, each an `mprotect` that stalls the
/// other threads' page faults (a cold apply of 10,000 files made ~3,000 of them). Deep
/// nesting needs no large stack: the readers refuse it before they recurse.
pub fn run() -> ExitCode {
    bound_malloc_arenas();
    install_panic_hook();
    // A panic in a rayon worker is carried to the thread that waits for it, so it ends here
    // too; the hook has already told the user what happened.
    match std::panic::catch_unwind(|| run_with(std::env::args_os())) {
        Ok(exit) => exit.into(),
        Err(_) => Exit::Internal.into(),
    }
}

/// Replaces Rust's panic message with one block on stderr: where it panicked and why, that
/// it is a bug in steward, and what to attach to a report. The report note is printed once,
/// however many threads panic. With `RUST_BACKTRACE` set, Rust's own message and backtrace
/// come first, as without this hook.
fn install_panic_hook() {
    static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let mut text = String::new();
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|value| value != "0") {
            default_hook(info);
        } else {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|text| (*text).to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string());
            let location = info.location().map_or_else(
                || "an unknown place".to_string(),
                |location| location.to_string(),
            );
            text.push_str(&format!(
                "error: internal error: steward panicked at {location}:\n  {message}\n"
            ));
        }
        if !REPORTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            text.push_str(&format!(
                "This is a bug in steward, not a problem with your documents.\n\
                 Please report it, attaching:\n\
                 \x20 - the steward version: {version}\n\
                 \x20 - the command line you ran\n\
                 \x20 - the documents, or a minimal set of documents that reproduces it\n\
                 \x20 - the output of the same command run with RUST_BACKTRACE=1\n",
                version = env!("CARGO_PKG_VERSION"),
            ));
        }
        // One write, so lines of threads that panic together do not interleave.
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }));
}

/// Panics on purpose when [`TEST_PANIC_VAR`] asks for it.
fn test_panic() {
    match std::env::var(TEST_PANIC_VAR).as_deref() {
        Ok("1") => panic!("{TEST_PANIC_VAR}=1: a deliberate panic to test the internal-error path"),
        // Called from outside the pool, `join` runs both closures on pool workers.
        Ok("rayon") => {
            rayon::join(
                || (),
                || panic!("{TEST_PANIC_VAR}=rayon: a deliberate panic in a rayon worker"),
            );
        }
        _ => {}
    }
}

/// Runs steward with the given arguments (the first is the program name).
pub fn run_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> Exit {
    test_panic();
    // Parsed in two steps to keep where each value came from: the mode check needs it.
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let parsed = cli_command()
        .try_get_matches_from(&args)
        .and_then(|matches| Cli::from_arg_matches(&matches).map(|cli| (cli, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => {
            let _ = err.print();
            return match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    Exit::Ok
                }
                _ => Exit::Error,
            };
        }
    };
    if let Err(conflict) = mode::check(&matches) {
        eprintln!("error: {conflict}");
        return Exit::Error;
    }
    let (command_name, command_matches) = matches.subcommand().unzip();
    if let Some(name) = command_name {
        warn_renamed(name, &args);
    }
    // Defined only on ROOT_COMMANDS: `try_get_one` answers `Err` for the others.
    let command_root = command_matches
        .and_then(|sub| sub.try_get_one::<PathBuf>("root").ok().flatten())
        .cloned();
    let root = match (cli.root, command_root) {
        (Some(_), Some(_)) => {
            eprintln!("error: --root is given twice, before and after the command: give it once");
            return Exit::Error;
        }
        (Some(root), None) if !command_name.is_some_and(|name| ROOT_COMMANDS.contains(&name)) => {
            eprintln!(
                "error: --root {} does not apply to `steward {}`: only {} act on a file system",
                root.display(),
                command_name.unwrap_or_default(),
                ROOT_COMMANDS.join(", ")
            );
            return Exit::Error;
        }
        (before, after) => before.or(after),
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !no_color && std::io::stderr().is_terminal(),
    };
    let stdout_color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => !no_color && std::io::stdout().is_terminal(),
    };
    let ctx = Context {
        registry: std::sync::Arc::new(Registry::builtin()),
        color,
        stdout_color,
        root_given: root.is_some(),
        // Absolute from here on: tools such as useradd need it, and saved plans compare it.
        root: root.map_or_else(
            || PathBuf::from("/"),
            |root| std::fs::canonicalize(&root).unwrap_or(root),
        ),
    };
    let result = match cli.command {
        Command::Validate(args) => cmd_validate(&ctx, &args),
        Command::Plan(args) if args.remote.controller.is_some() => fleet::remote_run(
            &ctx,
            &fleet::RemoteRun {
                mode: crate::fleet::run::Mode::Plan,
                project: &args.project,
                remote: &args.remote,
                local: Some(&args.local),
                parallel: 4,
                detailed_exitcode: args.detailed_exitcode,
                format: args.format,
                yes: false,
                adhoc: None,
                out: args.out.as_deref(),
            },
        ),
        Command::Apply(args) if args.remote.controller.is_some() => fleet::remote_run(
            &ctx,
            &fleet::RemoteRun {
                mode: crate::fleet::run::Mode::Apply,
                project: &args.project,
                remote: &args.remote,
                local: Some(&args.local),
                parallel: usize::from(args.parallel),
                detailed_exitcode: false,
                format: args.format,
                yes: args.yes,
                adhoc: None,
                out: None,
            },
        ),
        Command::Drift(args) if args.remote.controller.is_some() => fleet::remote_run(
            &ctx,
            &fleet::RemoteRun {
                mode: crate::fleet::run::Mode::Drift,
                project: &args.project,
                remote: &args.remote,
                local: Some(&args.local),
                parallel: 4,
                detailed_exitcode: args.detailed_exitcode,
                format: args.format,
                yes: false,
                adhoc: None,
                out: None,
            },
        ),
        Command::Plan(args) => commands::plan(&ctx, &args),
        Command::Apply(args) => commands::apply(&ctx, &args),
        Command::Drift(args) => commands::drift(&ctx, &args),
        Command::Runs(RunsArgs {
            stray_project: Some(path),
            ..
        })
        | Command::Findings(FindingsArgs {
            stray_project: Some(path),
            ..
        }) => usage_error(&format!(
            "`{path}` is a project: `runs`, `report` and `findings` take it as --project {path}",
            path = path.display()
        )),
        Command::Runs(args) => match args.store.remote() {
            Some(remote) => fleet::remote_runs(&remote, args.format),
            None => commands::runs(&args),
        },
        Command::Report(args) if args.store.remote().is_none() && args.names_a_project() => {
            usage_error(&format!(
                "`{run}` is a project, not a run id: use --project {run}",
                run = args.run.as_deref().unwrap_or_default()
            ))
        }
        Command::Report(args) => match args.store.remote() {
            Some(remote) => {
                let id = args.run.as_deref().unwrap_or("latest");
                let format = format!("{:?}", args.format).to_lowercase();
                fleet::remote_text(
                    &remote,
                    &format!("/v1/runs/{id}?format={format}&color={}", ctx.stdout_color),
                    false,
                )
            }
            None => commands::report(&ctx, &args),
        },
        Command::Findings(args) => match args.store.remote() {
            Some(remote) => fleet::remote_findings(&remote, &args),
            None => commands::findings(&args),
        },
        Command::Audit(args) => match args.store.remote() {
            Some(remote) => fleet::remote_audit(&remote, &args),
            None => fleet::local_audit(&args),
        },
        Command::Serve(args) => fleet::serve(&ctx, &args),
        Command::Agent(args) => fleet::agent(&ctx, &args),
        Command::Token(TokenCommand::Create {
            data_dir,
            api: true,
            role,
            target,
            ttl,
            name,
            format,
            shared,
            ..
        }) => fleet::api_token_create(
            &data_dir,
            &shared.backend(),
            fleet::ApiTokenArgs {
                role: role.as_deref(),
                target,
                ttl: ttl.as_deref(),
                name,
            },
            format,
        ),
        Command::Token(TokenCommand::Create {
            data_dir,
            ttl,
            name,
            tags,
            replace,
            format,
            shared,
            ..
        }) => fleet::token_create(
            &data_dir,
            &shared.backend(),
            ttl.as_deref().unwrap_or("1h"),
            name,
            tags.as_deref(),
            replace,
            format,
        ),
        Command::Token(TokenCommand::List {
            data_dir,
            format,
            shared,
        }) => fleet::api_token_list(&data_dir, &shared.backend(), format),
        Command::Token(TokenCommand::Revoke {
            id,
            data_dir,
            format,
            shared,
        }) => fleet::api_token_revoke(&data_dir, &shared.backend(), &id, format),
        Command::Nodes(args) => fleet::nodes(&args),
        Command::Node(NodeCommand::Revoke {
            name,
            remote,
            format,
        }) => fleet::node_revoke(&name, &remote, format),
        Command::Node(NodeCommand::Tag {
            name,
            set,
            remove,
            remote,
            format,
        }) => fleet::node_tag(&name, &set, &remove, &remote, format),
        Command::Schedules(args) => match &args.action {
            Some(SchedulesAction::Disable {
                name,
                format,
                remote,
            }) => fleet::schedule_switch(name, false, remote, *format),
            Some(SchedulesAction::Enable {
                name,
                format,
                remote,
            }) => fleet::schedule_switch(name, true, remote, *format),
            None => fleet::schedules(&args),
        },
        Command::Run(args) => match &args.action {
            Some(RunAction::Cancel {
                run,
                remote,
                format,
            }) => fleet::run_cancel(run, remote, *format),
            None => fleet::run_command(&ctx, &args),
        },
        Command::Graph(args) => cmd_graph(&ctx, &args),
        Command::Import(args) => import::import(&ctx, &args),
        Command::Facts(args) => facts::facts(&ctx, &args),
        Command::Show(args) => show::show(&ctx, &args),
        Command::Schema => print_stdout(&crate::schema::json::render(&ctx.registry)),
        Command::Man(args) => man::man(&cli_command(), &args),
        Command::Completions { shell } => {
            let mut command = cli_command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command, "steward", &mut out);
            print_stdout(&String::from_utf8_lossy(&out))
        }
    };
    match result {
        Ok(exit) => exit,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Exit::Ok,
        Err(err) => {
            eprintln!("error: {err}");
            Exit::Error
        }
    }
}

/// Settings every command shares.
pub(crate) struct Context {
    /// Colour diagnostics on stderr.
    color: bool,
    /// Colour plans and reports on stdout.
    stdout_color: bool,
    root: PathBuf,
    /// True when `--root` was given (a saved plan's root is used otherwise).
    root_given: bool,
    /// The resource types, built once here for the whole run and passed down.
    registry: std::sync::Arc<Registry>,
}

pub(crate) fn print_stdout(text: &str) -> std::io::Result<Exit> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(Exit::Ok)
}

/// The parameter values: `--params-file` files, then `STEWARD_PARAM_*` variables, then
/// `--param` flags, later winning ([`params::collect`]).
pub(crate) fn overrides(args: &ProjectArgs) -> Result<BTreeMap<String, String>, String> {
    params::collect(&args.params_files, std::env::vars(), &args.params)
}

fn load(ctx: &Context, args: &ProjectArgs, registry: &Registry) -> Result<Validated, String> {
    let overrides = overrides(args)?;
    Ok(validate(
        &args.path,
        registry,
        crate::facts::local(&ctx.root),
        overrides,
    ))
}

pub(crate) fn report_human(ctx: &Context, validated: &Validated) -> std::io::Result<()> {
    let mut stderr = std::io::stderr().lock();
    render::human(
        &mut stderr,
        &validated.diagnostics,
        &validated.project.sources,
        ctx.color,
    )?;
    let errors = validated
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .count();
    if errors > 0 {
        let files: std::collections::BTreeSet<_> = validated
            .diagnostics
            .iter()
            .filter_map(|d| d.span())
            .map(|s| s.source)
            .collect();
        let noun = if errors == 1 { "error" } else { "errors" };
        let in_files = match files.len() {
            0 => String::new(),
            1 => " in 1 file".to_string(),
            n => format!(" in {n} files"),
        };
        writeln!(stderr, "error: {errors} {noun}{in_files}")?;
    }
    Ok(())
}

/// Asks on the terminal whether to apply the plan just shown; only `yes` is accepted.
pub(crate) fn confirm_apply() -> std::io::Result<bool> {
    use std::io::BufRead;
    print!("\nApply these changes? Only `yes` is accepted: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() == "yes" {
        Ok(true)
    } else {
        eprintln!("Apply cancelled.");
        Ok(false)
    }
}

pub(crate) fn usage_error(message: &str) -> std::io::Result<Exit> {
    eprintln!("error: {message}");
    Ok(Exit::Error)
}

/// The project lowered for this machine, or with a controller for each node of its
/// inventory. `Err` holds the exit code once the problem has been reported.
fn load_for_mode(
    ctx: &Context,
    project: &ProjectArgs,
    remote: &RemoteArgs,
) -> std::io::Result<Result<Validated, Exit>> {
    if remote.controller.is_some() {
        return fleet::validated(ctx, project, remote);
    }
    match load(ctx, project, &ctx.registry) {
        Ok(validated) => Ok(Ok(validated)),
        Err(message) => usage_error(&message).map(Err),
    }
}

fn cmd_validate(ctx: &Context, args: &ValidateArgs) -> std::io::Result<Exit> {
    let fleet = args.remote.controller.is_some();
    let validated = match load_for_mode(ctx, &args.project, &args.remote)? {
        Ok(validated) => validated,
        Err(exit) => return Ok(exit),
    };
    match args.format {
        DiagnosticFormat::Json => {
            print_stdout(&crate::report::diagnostics::json(
                &validated.diagnostics,
                &validated.project.sources,
            ))?;
        }
        DiagnosticFormat::Human => {
            report_human(ctx, &validated)?;
            if !validated.has_errors() {
                let n_documents = validated
                    .project
                    .documents
                    .iter()
                    .map(|doc| doc.source)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                let model = &validated.model;
                if fleet {
                    // The nodes the controller would act on, from its inventory.
                    let targets = reach::fleet_targets(&validated, None);
                    let names: Vec<&str> = targets.iter().map(|n| n.name.as_str()).collect();
                    let n_resources: usize = targets.iter().map(|n| n.resources.len()).sum();
                    print_stdout(&format!(
                        "valid: {} in {}, {} on {} of the controller's inventory{}\n",
                        plural(n_documents, "document"),
                        display_path(&args.project.path),
                        plural(n_resources, "resource"),
                        plural(targets.len(), "node"),
                        if names.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", names.join(", "))
                        },
                    ))?;
                } else {
                    let n_nodes = model
                        .nodes
                        .iter()
                        .filter(|n| !n.resources.is_empty())
                        .count();
                    print_stdout(&format!(
                        "valid: {} in {}, {} on {}\n",
                        plural(n_documents, "document"),
                        display_path(&args.project.path),
                        plural(model.n_resources(), "resource"),
                        plural(n_nodes, "node"),
                    ))?;
                }
                for line in reach::nowhere(&validated, fleet) {
                    eprintln!("note: {line}");
                }
            }
        }
    }
    Ok(if validated.has_errors() {
        Exit::Error
    } else {
        Exit::Ok
    })
}

fn cmd_graph(ctx: &Context, args: &GraphArgs) -> std::io::Result<Exit> {
    let registry: &Registry = &ctx.registry;
    let validated = match load_for_mode(ctx, &args.project, &args.remote)? {
        Ok(validated) => validated,
        Err(exit) => return Ok(exit),
    };
    if validated.has_errors() {
        report_human(ctx, &validated)?;
        return Ok(Exit::Error);
    }
    let mut graphs = validated.graphs(registry);
    if args.remote.controller.is_some() {
        // The nodes the controller would act on, from its inventory.
        let targets: Vec<&str> = reach::fleet_targets(&validated, None)
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        graphs.retain(|graph| targets.contains(&graph.node.name.as_str()));
    }
    let text = match args.format {
        GraphFormat::Dot => crate::report::graph::dot(&graphs),
        GraphFormat::Json => crate::report::graph::json(&graphs, &validated.project.sources),
    };
    print_stdout(&text)
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn display_path(path: &Path) -> String {
    path.display().to_string()
}
