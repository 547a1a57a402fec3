//! The controller's data dir, store and agent port against faults and hostile clients (issue 12, findings 6 and 10).
