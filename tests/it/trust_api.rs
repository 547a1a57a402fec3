//! The HTTP API against cross-site requests and slow clients (issue 12, findings 3 and 10).
