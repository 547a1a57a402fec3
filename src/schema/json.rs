//! JSON Schema (placeholder)
