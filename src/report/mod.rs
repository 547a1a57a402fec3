//! Renders steward's values for people and machines.
//!
//! Owns the output formats. Each machine-readable format carries its own `format_version`,
//! and maps model types by hand: the model itself never derives `Serialize`.
//!
//! **Architecture Invariant:** rendering decides nothing and changes nothing.

pub mod diagnostics;
pub mod graph;
pub mod plan;
pub mod run;
pub mod table;
