//! A PostgreSQL database of its own for a test, on the server `STEWARD_TEST_POSTGRES` names
//! (`.ci/run` starts one): created empty, dropped at the end. A test that needs one and finds
//! no server fails, saying so; it never passes without it.

use std::sync::atomic::{AtomicU32, Ordering};

/// A database of its own on the server `STEWARD_TEST_POSTGRES` names, dropped at the end.
pub(crate) struct Postgres {
    admin: ::postgres::Config,
    /// The connection configuration of the database.
    pub(crate) config: ::postgres::Config,
    name: String,
    /// Its URL, for a steward command (`--database`).
    pub(crate) url: String,
}

pub(crate) const NEEDS_POSTGRES: &str = "needs PostgreSQL: STEWARD_TEST_POSTGRES=postgres://USER@HOST:PORT/DB \
     (a role that may create databases; .ci/run starts one)";

impl Postgres {
    /// A new database; panics (the test fails) when no server is named or reachable.
    pub(crate) fn new() -> Postgres {
        static N: AtomicU32 = AtomicU32::new(0);
        let url = std::env::var("STEWARD_TEST_POSTGRES").unwrap_or_else(|_| {
            panic!("STEWARD_TEST_POSTGRES is not set: this test {NEEDS_POSTGRES}")
        });
        let admin: ::postgres::Config = url
            .parse()
            .unwrap_or_else(|err| panic!("STEWARD_TEST_POSTGRES={url} is not a URL: {err}"));
        let name = format!(
            "steward_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let mut client = admin.connect(::postgres::NoTls).unwrap_or_else(|err| {
            let cause = std::error::Error::source(&err).map(|c| format!(": {c}"));
            panic!(
                "cannot reach PostgreSQL at STEWARD_TEST_POSTGRES={url}: {err}{} (is it running?)",
                cause.unwrap_or_default()
            )
        });
        // A locale that does not sort byte by byte ("a" < "b" < "B"), where the server has
        // ICU (PostgreSQL 15 and later), so the store's own collation is what is tested.
        let icu = format!(
            "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
        );
        if client.batch_execute(&icu).is_err() {
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap();
        }
        let mut config = admin.clone();
        config.dbname(&name);
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (url.as_str(), String::new()),
        };
        let server = match base.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
            }
            None => panic!("STEWARD_TEST_POSTGRES={url} is not a postgres:// URL"),
        };
        Postgres {
            admin,
            config,
            url: format!("{server}/{name}{query}"),
            name,
        }
    }

    /// A client of the database.
    pub(crate) fn client(&self) -> ::postgres::Client {
        self.config.connect(::postgres::NoTls).unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Ok(mut client) = self.admin.connect(::postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
