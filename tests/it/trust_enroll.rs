//! Enrollment bound to identity: tokens bound to a name and tags, no takeover of an enrolled node (issue 12, finding 1).
