//! Secrets travel only to the nodes whose resources use them, and never into names (issue 12, findings 2 and 8).
