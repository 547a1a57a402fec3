//! --root confinement holds against a concurrent symlink swap (issue 12, finding 9).
