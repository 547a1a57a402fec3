//! The fleet: a controller (`steward serve`) and agents (`steward agent`) that dial out to it.
//!
//! Like the SSM Agent, an agent opens one long-lived connection to the controller over mutual
//! TLS and the controller pushes tasks down it: probe these resources, apply this catalog.
//! Agents run them with the same providers as local mode, under their `--root`, and report
//! back; the controller turns the answers into plans, runs and findings with the same code as
//! local mode.
//!
//! - [`pki`]: the controller's CA, its server certificate, agent certificates, TLS configs.
//! - [`seal`]: the key file, and secrets sealed with it for a database several controllers share.
//! - [`footing`]: a controller's store, CA and admin token: in its data directory, or shared
//!   by every controller of one PostgreSQL database.
//! - [`token`]: one-time join tokens that carry the CA's fingerprint.
//! - [`wire`]: the agent protocol (framed JSON over mutual TLS) and its data types.
//! - [`agent`]: enrollment, the connection loop and task execution on a node.
//! - [`controller`]: the agent port, sessions and task dispatch.
//! - [`run`]: fleet plan / apply / drift with SSM rate control.
//! - [`command`]: Run Command, ad-hoc commands on selected nodes.
//! - [`schedule`]: when an association's `schedule` is due, and the operators' overview.
//! - [`schedules`]: the current project's scheduled associations, read, shown and switched.
//! - [`rate`]: SSM's `max_concurrency` / `max_errors` dispatch.
//! - [`outbox`]: an agent's undelivered results and the task ids it has already run.
//! - [`api`], [`client`]: the HTTP API and the CLI's side of it; [`dashboard`]: its HTML
//!   pages; [`serve`]: the process; [`logging`]: the logs of `serve` and `agent`.
//! - [`api_token`]: scoped API tokens; [`audit`]: the audit log of what changed state, who
//!   did it and from where.

pub mod agent;
pub mod api;
pub mod api_token;
pub mod audit;
pub mod client;
pub mod command;
pub mod console;
pub mod controller;
pub mod footing;
pub mod logging;
pub mod outbox;
pub mod pki;
pub mod rate;
pub mod run;
pub mod schedule;
pub mod schedules;
pub mod seal;
pub mod serve;
pub mod token;
pub mod web;
pub mod wire;
