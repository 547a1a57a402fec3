//! steward: a declarative desired-state engine.
//!
//! Data flows one way: [`load`] reads a project and [`document`] parses YAML/KDL into a
//! spanned tree → [`template`] (minijinja rendering) → [`schema`] (validation and lowering) →
//! [`model`] (inert desired state) → [`plan`] (the dependency graph and the plan, from what
//! [`exec::observe`] read through the [`resource`] providers) → [`exec::apply`] → [`report`].
//! [`engine`] runs a plan, apply or drift through one path for every node, reached in
//! process or through an agent, and builds the run records; [`local`] is local mode over it,
//! [`store`] keeps the runs and findings they leave; [`cli`] owns arguments and exit codes.
//! See `docs/architecture.md` for each module's invariants.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod cli;
pub mod diag;
pub mod document;
pub mod engine;
pub mod exec;
pub mod facts;
pub mod fleet;
pub mod load;
pub mod local;
pub mod model;
pub mod plan;
pub mod report;
pub mod resource;
pub mod schema;
pub mod state_dir;
pub mod store;
pub mod template;
pub mod validate;
