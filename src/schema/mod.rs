//! Validates documents and lowers them to the [`model`](crate::model).
//!
//! Owns the document language's rules (docs/guide/documents.md): top-level sections, parameters,
//! nodes, associations, `use` of modules, resources with `for_each`/`when`/relationships, and
//! each attribute's type per the [`resource::Registry`](crate::resource::Registry). Which resources go to which node
//! follows the associations; documents no association covers belong to `local`.
//!
//! **Architecture Invariant:** no IO. Lowering never stops at the first mistake: it returns a
//! (possibly partial) [`model::Model`](crate::model::Model) and every diagnostic, each at the span of the text that
//! is wrong. A document covered only by associations whose targets match no known node is
//! still rendered (against the local facts) so its mistakes are reported.

pub mod json;
mod lower;
mod value;

pub use lower::{Config, KnownNode, ProjectFiles, lower};
