//! Report formats of stored runs.
