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

/// A PostgreSQL server of its own, for a test that stops and starts it (a shared server
/// cannot be restarted under tests running in parallel): `initdb` in a temporary directory,
/// on a free loopback port, as `nobody` when the test runs as root (initdb refuses root),
/// stopped at the end. The server's programs are found in `STEWARD_TEST_PG_BIN`, else in
/// the newest `/usr/lib/postgresql/*/bin` (Debian's `postgresql`); without them the test
/// fails, saying so.
pub(crate) struct Cluster {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_nobody: bool,
    /// The URL of its `postgres` database (role `steward`, trusted on loopback).
    pub(crate) url: String,
}

impl Cluster {
    /// A new, running cluster.
    pub(crate) fn start() -> Cluster {
        let bin = pg_bin();
        let dir = tempfile::tempdir().unwrap();
        let as_nobody = is_root();
        if as_nobody {
            let chown = std::process::Command::new("chown")
                .arg("nobody")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(chown.success(), "chown nobody {}", dir.path().display());
        }
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let cluster = Cluster {
            url: format!("postgres://steward@127.0.0.1:{port}/postgres"),
            bin,
            dir,
            port,
            as_nobody,
        };
        let data = cluster.dir.path().join("data");
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "steward".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--no-locale".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        cluster.start_again();
        cluster
    }

    /// Starts the stopped server, and waits until it accepts connections.
    pub(crate) fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.pg_ctl(&[
            "-l".as_ref(),
            self.dir.path().join("server.log").as_os_str(),
            "-w".as_ref(),
            "-t".as_ref(),
            "60".as_ref(),
            "-o".as_ref(),
            options.as_ref(),
            "start".as_ref(),
        ]);
    }

    /// Stops the server as an operator would (`pg_ctl stop -m fast`: every session is ended,
    /// open transactions are rolled back).
    pub(crate) fn stop(&self) {
        self.pg_ctl(&[
            "-m".as_ref(),
            "fast".as_ref(),
            "-w".as_ref(),
            "stop".as_ref(),
        ]);
    }

    /// The server's log, for a failing test's message.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn pg_ctl(&self, args: &[&std::ffi::OsStr]) {
        let data = self.dir.path().join("data");
        let mut all: Vec<&std::ffi::OsStr> = vec!["-D".as_ref(), data.as_os_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    /// Runs one of the server's programs (as `nobody` when we are root); panics when it fails.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let path = self.bin.join(program);
        let mut command = if self.as_nobody {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "nobody", "--"]).arg(&path);
            command
        } else {
            std::process::Command::new(&path)
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let mut command = if self.as_nobody {
            let mut command = std::process::Command::new("runuser");
            command
                .args(["-u", "nobody", "--"])
                .arg(self.bin.join("pg_ctl"));
            command
        } else {
            std::process::Command::new(self.bin.join("pg_ctl"))
        };
        let _ = command
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

/// Where the server's programs are; panics (the test fails) when they are not installed.
fn pg_bin() -> std::path::PathBuf {
    const WHY: &str = "this test starts a PostgreSQL server of its own and needs its programs \
         (initdb, pg_ctl): install Debian's postgresql (.ci/run does) or set STEWARD_TEST_PG_BIN";
    if let Some(dir) = std::env::var_os("STEWARD_TEST_PG_BIN") {
        let dir = std::path::PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file(),
            "STEWARD_TEST_PG_BIN={} has no initdb: {WHY}",
            dir.display()
        );
        return dir;
    }
    let mut found: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!("no /usr/lib/postgresql/*/bin/initdb: {WHY}"),
    }
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
