//! SQLite (placeholder until written)
