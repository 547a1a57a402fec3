//! Root-only tests of the package, service, user and group providers on the real system.
