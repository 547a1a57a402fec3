//! The fleet: a controller (`steward serve`) and agents (`steward agent`) that dial out to it.
//!
//! Like the SSM Agent, an agent opens one long-lived connection to the controller over mutual
//! TLS and the controller pushes tasks down it: probe these resources, apply this plan, run
//! this drift check. Agents run them with the same providers as local mode, under their
//! `--root`, and report back.
//!
//! - [`pki`]: the controller's CA, its server certificate, agent certificates, TLS configs.
//! - [`token`]: one-time join tokens that carry the CA's fingerprint.
//! - [`schedule`]: when an association's `schedule` is due.
//! - [`rate`]: SSM's `max_concurrency` / `max_errors` dispatch.
//! - [`outbox`]: an agent's undelivered results and the task ids it has already run.

pub mod outbox;
pub mod pki;
pub mod rate;
pub mod schedule;
pub mod token;
