//! From desired state to an ordered plan.
//!
//! Owns the per-node dependency graph ([`graph::ResourceGraph`]), built by named steps:
//! resources, explicit edges (`require`/`before`/`notify`/`subscribe`), implicit edges (a
//! path after its parent directory, a file after its owner, a service after its package),
//! then cycle rejection.
//!
//! **Architecture Invariant:** no IO, no tokio, no agents, no text output. Observed state,
//! when planning needs it, is an argument.

mod build;
pub mod graph;

pub use build::{NodePlan, Plan, PlannedChange, Summary, build, desired_digest, fingerprint};
