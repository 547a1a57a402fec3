//! Stored runs rendered for people, CI and code hosts (written next).
