//! An agent's durable outbox and task ledger, kept in its state directory `S`.
//!
//! - [`Outbox`]: results the controller has not acknowledged yet, one file per task under
//!   `S/outbox/`, delivered again on reconnect until acknowledged.
//! - [`Ledger`]: the ids of tasks already started, with their expiry, in `S/tasks.json`, so an
//!   agent never runs the same task twice, nor an expired one, even across restarts.
//!
//! Every write is atomic (a temporary file in the same directory, fsynced, renamed over the
//! target, then the directory fsynced), files are 0600 and the outbox directory 0700. Task ids
//! come from the network, so they are checked by [`validate_task_id`] before they name a file.
//!
//! **Architecture Invariant:** result bytes are opaque here; this module never parses or builds
//! a wire message. One agent process owns a state directory; nothing here locks it against a
//! second one.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// The longest task id accepted.
pub const MAX_TASK_ID_LEN: usize = 64;

/// What went wrong keeping results or task ids.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// A task id that may not name a file: not 1 to 64 of `A-Z a-z 0-9 _ -`.
    #[error("task id {id:?} is not 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`")]
    InvalidTaskId {
        /// The id as received, cut to its first 80 characters.
        id: String,
    },
    /// Reading or writing the state directory failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done, e.g. "writing".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file in the outbox directory with a task id's name that this module did not write.
    #[error("{} is not an outbox entry", path.display())]
    CorruptEntry {
        /// The file.
        path: PathBuf,
    },
    /// `tasks.json` does not hold a task ledger; the agent must not guess which tasks ran.
    #[error("{} is not a task ledger: {reason}", path.display())]
    CorruptLedger {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Checks that a task id may name a file: 1 to [`MAX_TASK_ID_LEN`] characters of `A-Z`, `a-z`,
/// `0-9`, `_` and `-`. So `..`, `a/b` and the empty id are refused.
pub fn validate_task_id(task_id: &str) -> Result<(), OutboxError> {
    let valid = (1..=MAX_TASK_ID_LEN).contains(&task_id.len())
        && task_id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-');
    if valid {
        Ok(())
    } else {
        Err(OutboxError::InvalidTaskId {
            id: task_id.chars().take(80).collect(),
        })
    }
}

/// Results not yet acknowledged by the controller, one file per task under `S/outbox/`.
///
/// Each file holds a header line with a sequence number, then the result bytes. The sequence
/// number, not the file's mtime, orders [`Outbox::pending`]: mtimes are too coarse to order two
/// results written in the same tick.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    next_seq: AtomicU64,
}

impl Outbox {
    /// Opens (creating if needed) `state_dir/outbox`, sets it to 0700, and sweeps temporary
    /// files a crash left behind. A file named like a task id that is not an outbox entry is
    /// an error ([`OutboxError::CorruptEntry`]), here and in [`Outbox::pending`].
    pub fn open(state_dir: &Path) -> Result<Outbox, OutboxError> {
        let dir = state_dir.join("outbox");
        create_private_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(io_error("setting the mode of", &dir))?;
        let mut max_seq = 0;
        for entry in fs::read_dir(&dir).map_err(io_error("listing", &dir))? {
            let entry = entry.map_err(io_error("listing", &dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_error("removing", &path))?;
            } else if validate_task_id(name).is_ok() {
                let (seq, _) = read_entry(&entry.path())?;
                max_seq = max_seq.max(seq);
            }
        }
        Ok(Outbox {
            dir,
            next_seq: AtomicU64::new(max_seq + 1),
        })
    }

    /// Keeps a result (opaque bytes) for `task_id`; replaces an older one for the same id, which
    /// then counts as the newest.
    pub fn put(&self, task_id: &str, bytes: &[u8]) -> Result<(), OutboxError> {
        validate_task_id(task_id)?;
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        let mut contents = format!("{ENTRY_MAGIC} {seq}\n").into_bytes();
        contents.extend_from_slice(bytes);
        write_atomically(&self.dir, task_id, &contents)
    }

    /// Every kept result as `(task_id, bytes)`, oldest first.
    pub fn pending(&self) -> Result<Vec<(String, Vec<u8>)>, OutboxError> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_error("listing", &self.dir))? {
            let entry = entry.map_err(io_error("listing", &self.dir))?;
            let Ok(task_id) = entry.file_name().into_string() else {
                continue;
            };
            // Temporary files of a write in progress are not results yet.
            if validate_task_id(&task_id).is_err() {
                continue;
            }
            let (seq, bytes) = read_entry(&entry.path())?;
            entries.push((seq, task_id, bytes));
        }
        entries.sort();
        Ok(entries
            .into_iter()
            .map(|(_, task_id, bytes)| (task_id, bytes))
            .collect())
    }

    /// The result kept for `task_id`, if it is not acknowledged yet: what the agent sends again
    /// when a controller re-sends a task it ran already (another controller took over the
    /// task after the one that sent it went away).
    pub fn get(&self, task_id: &str) -> Result<Option<Vec<u8>>, OutboxError> {
        validate_task_id(task_id)?;
        let path = self.dir.join(task_id);
        match fs::metadata(&path) {
            Ok(_) => Ok(Some(read_entry(&path)?.1)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_error("reading", &path)(err)),
        }
    }

    /// The controller acknowledged `task_id`'s result: forget it. Acknowledging a result that
    /// is not kept (already acknowledged) is not an error.
    pub fn ack(&self, task_id: &str) -> Result<(), OutboxError> {
        validate_task_id(task_id)?;
        let path = self.dir.join(task_id);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_error("removing", &path)(err)),
        }
    }
}

/// Task ids already started, with their expiry, persisted in `S/tasks.json`.
///
/// Entries whose expiry passed more than [`Ledger::KEEP_AFTER_EXPIRY`] ago are pruned on the
/// next write: by then a redelivered task is refused as expired anyway.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    path: PathBuf,
    tasks: BTreeMap<String, DateTime<Utc>>,
}

/// The answer to [`Ledger::claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// First time seen and not expired: run it (the claim is already on disk).
    Run,
    /// Claimed before, in this process or an earlier one: do not run it again.
    Duplicate,
    /// Its expiry is not in the future: do not run it.
    Expired,
}

impl Ledger {
    /// How long an entry is kept after its task expired.
    pub const KEEP_AFTER_EXPIRY: TimeDelta = TimeDelta::days(1);

    /// Opens `state_dir/tasks.json` (creating `state_dir` if needed); no file is an empty
    /// ledger. A file that does not parse is an error, not an empty ledger, since guessing
    /// could run a task twice.
    pub fn open(state_dir: &Path) -> Result<Ledger, OutboxError> {
        create_private_dir(state_dir)?;
        let path = state_dir.join(LEDGER_FILE);
        let tasks = match fs::read(&path) {
            Ok(bytes) => parse_ledger(&path, &bytes)?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => return Err(io_error("reading", &path)(err)),
        };
        Ok(Ledger {
            dir: state_dir.to_path_buf(),
            path,
            tasks,
        })
    }

    /// Claims a task id before running it.
    ///
    /// [`Claim::Duplicate`] when seen before (even if also expired), else [`Claim::Expired`]
    /// when `expires_at <= now`, else [`Claim::Run`], persisted before this returns, so a crash
    /// after claiming never runs the task again. Expired claims are not recorded. On an error
    /// nothing is claimed.
    pub fn claim(
        &mut self,
        task_id: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Claim, OutboxError> {
        validate_task_id(task_id)?;
        if self.tasks.contains_key(task_id) {
            return Ok(Claim::Duplicate);
        }
        if expires_at <= now {
            return Ok(Claim::Expired);
        }
        let mut tasks = self.tasks.clone();
        if let Some(horizon) = now.checked_sub_signed(Self::KEEP_AFTER_EXPIRY) {
            tasks.retain(|_, expiry| *expiry >= horizon);
        }
        tasks.insert(task_id.to_string(), expires_at);
        let bytes = render_ledger(&self.path, &tasks)?;
        write_atomically(&self.dir, LEDGER_FILE, &bytes)?;
        self.tasks = tasks;
        Ok(Claim::Run)
    }
}

/// Names of temporary files; a task id cannot start with a dot, so they never pass for one.
const TEMP_PREFIX: &str = ".tmp-";
/// The first word of an outbox entry's header line; bump the number on a format change.
const ENTRY_MAGIC: &str = "steward-outbox 1";
const LEDGER_FILE: &str = "tasks.json";
/// `tasks.json`'s format version.
const LEDGER_FORMAT_VERSION: u32 = 1;

/// `tasks.json` on disk: `{"format_version": 1, "tasks": {"<id>": "<RFC 3339 expiry>"}}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct LedgerFile {
    format_version: u32,
    tasks: BTreeMap<String, String>,
}

fn render_ledger(
    path: &Path,
    tasks: &BTreeMap<String, DateTime<Utc>>,
) -> Result<Vec<u8>, OutboxError> {
    let file = LedgerFile {
        format_version: LEDGER_FORMAT_VERSION,
        tasks: tasks
            .iter()
            .map(|(task_id, expiry)| (task_id.clone(), expiry.to_rfc3339()))
            .collect(),
    };
    serde_json::to_vec_pretty(&file)
        .map_err(|err| io_error("encoding", path)(io::Error::other(err)))
}

fn parse_ledger(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, DateTime<Utc>>, OutboxError> {
    let corrupt = |reason: String| OutboxError::CorruptLedger {
        path: path.to_path_buf(),
        reason,
    };
    let file: LedgerFile = serde_json::from_slice(bytes).map_err(|err| corrupt(err.to_string()))?;
    if file.format_version != LEDGER_FORMAT_VERSION {
        return Err(corrupt(format!(
            "unsupported format_version {}",
            file.format_version
        )));
    }
    file.tasks
        .into_iter()
        .map(|(task_id, expiry)| {
            let expiry = DateTime::parse_from_rfc3339(&expiry)
                .map_err(|err| corrupt(format!("task {task_id:?}: expiry {expiry:?}: {err}")))?;
            Ok((task_id, expiry.with_timezone(&Utc)))
        })
        .collect()
}

/// Reads an outbox entry: its sequence number and the result bytes.
fn read_entry(path: &Path) -> Result<(u64, Vec<u8>), OutboxError> {
    let contents = fs::read(path).map_err(io_error("reading", path))?;
    let corrupt = || OutboxError::CorruptEntry {
        path: path.to_path_buf(),
    };
    let newline = contents
        .iter()
        .position(|byte| *byte == b'\n')
        .ok_or_else(corrupt)?;
    let seq = std::str::from_utf8(&contents[..newline])
        .ok()
        .and_then(|header| header.strip_prefix(ENTRY_MAGIC))
        .and_then(|rest| rest.strip_prefix(' '))
        .and_then(|seq| seq.parse::<u64>().ok())
        .ok_or_else(corrupt)?;
    Ok((seq, contents[newline + 1..].to_vec()))
}

/// Writes `dir/name` atomically: a 0600 temporary file in `dir`, fsynced, renamed over
/// `dir/name`, then `dir` fsynced so the rename survives a crash.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), OutboxError> {
    let path = dir.join(name);
    let mut temp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io_error("creating a temporary file in", dir))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(io_error("writing", temp.path()))?;
    temp.persist(&path)
        .map_err(|err| io_error("renaming a temporary file to", &path)(err.error))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    fs::File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("syncing", dir))
}

/// Creates `dir` and its missing parents, new ones 0700; an existing `dir` keeps its mode.
fn create_private_dir(dir: &Path) -> Result<(), OutboxError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("creating", dir))
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> OutboxError {
    let path = path.to_path_buf();
    move |source| OutboxError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 14, hour, 0, 0).unwrap()
    }

    #[test]
    fn task_ids() {
        for good in ["a", "task-01_B", "x".repeat(64).as_str()] {
            assert!(validate_task_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../x",
            "..",
            ".",
            "a/b",
            "a b",
            "é",
            ".tmp-x",
            "x\0",
            "x".repeat(65).as_str(),
        ] {
            let err = validate_task_id(bad).unwrap_err();
            assert!(
                matches!(err, OutboxError::InvalidTaskId { .. }),
                "{bad:?}: {err:?}"
            );
        }
        let err = validate_task_id("../x").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"task id "../x" is not 1 to 64 characters of A-Z, a-z, 0-9, `_` and `-`"#
        );
    }

    #[test]
    fn outbox_keeps_results_until_acknowledged() {
        let state = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(state.path()).unwrap();
        assert_eq!(mode(&state.path().join("outbox")), 0o700);
        assert!(outbox.pending().unwrap().is_empty());

        outbox.put("t2", b"second").unwrap();
        outbox.put("t1", b"first\nwith lines\n").unwrap();
        outbox.put("t3", b"").unwrap();
        assert_eq!(mode(&state.path().join("outbox/t1")), 0o600);
        let pending = outbox.pending().unwrap();
        let expected = [
            ("t2".to_string(), b"second".to_vec()),
            ("t1".to_string(), b"first\nwith lines\n".to_vec()),
            ("t3".to_string(), Vec::new()),
        ];
        assert_eq!(pending, expected, "oldest first, not by name");

        // Replacing moves it to the end; acknowledging forgets it, twice is fine.
        outbox.put("t2", b"second, again").unwrap();
        outbox.ack("t1").unwrap();
        outbox.ack("t1").unwrap();
        let pending = outbox.pending().unwrap();
        let expected = [
            ("t3".to_string(), Vec::new()),
            ("t2".to_string(), b"second, again".to_vec()),
        ];
        assert_eq!(pending, expected);
    }

    #[test]
    fn a_kept_result_reads_back_until_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.get("t1").unwrap(), None);
        outbox.put("t1", b"{\"r\":1}").unwrap();
        assert_eq!(
            outbox.get("t1").unwrap().as_deref(),
            Some(&b"{\"r\":1}"[..])
        );
        outbox.ack("t1").unwrap();
        assert_eq!(outbox.get("t1").unwrap(), None);
        assert!(outbox.get("../t1").is_err());
    }

    #[test]
    fn outbox_survives_a_restart_and_sweeps_temporary_files() {
        let state = tempfile::tempdir().unwrap();
        {
            let outbox = Outbox::open(state.path()).unwrap();
            outbox.put("b", b"1").unwrap();
            outbox.put("a", b"2").unwrap();
        }
        // A crash in the middle of a write leaves a temporary file behind.
        let leftover = state.path().join("outbox/.tmp-crashed");
        fs::write(&leftover, b"half").unwrap();
        let outbox = Outbox::open(state.path()).unwrap();
        assert!(!leftover.exists());
        outbox.put("c", b"3").unwrap();
        let names: Vec<String> = outbox
            .pending()
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            names,
            ["b", "a", "c"],
            "the sequence continues after a restart"
        );
    }

    #[test]
    fn outbox_refuses_bad_ids_and_foreign_files() {
        let state = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(state.path()).unwrap();
        for bad in ["../x", "", "a/b"] {
            assert!(matches!(
                outbox.put(bad, b"x"),
                Err(OutboxError::InvalidTaskId { .. })
            ));
            assert!(matches!(
                outbox.ack(bad),
                Err(OutboxError::InvalidTaskId { .. })
            ));
        }
        assert!(!state.path().join("x").exists());

        fs::write(state.path().join("outbox/foreign"), b"no header").unwrap();
        let err = outbox.pending().unwrap_err();
        assert!(matches!(err, OutboxError::CorruptEntry { .. }), "{err:?}");
    }

    #[test]
    fn ledger_claims() {
        let state = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(state.path()).unwrap();
        let now = at(10);
        // (task id, expires at, claim)
        let cases = [
            ("t1", at(11), Claim::Run),
            ("t1", at(11), Claim::Duplicate),
            ("t1", at(9), Claim::Duplicate), // seen before wins over expired
            ("t2", at(10), Claim::Expired),  // expiring now is expired
            ("t2", at(9), Claim::Expired),
            ("t3", at(12), Claim::Run),
        ];
        for (task_id, expires_at, expected) in cases {
            assert_eq!(
                ledger.claim(task_id, expires_at, now).unwrap(),
                expected,
                "{task_id}"
            );
        }
        assert_eq!(mode(&state.path().join("tasks.json")), 0o600);
        let err = ledger.claim("../x", at(11), now).unwrap_err();
        assert!(matches!(err, OutboxError::InvalidTaskId { .. }), "{err:?}");
    }

    #[test]
    fn ledger_claims_survive_a_restart() {
        let state = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(state.path()).unwrap();
        assert_eq!(ledger.claim("t1", at(11), at(10)).unwrap(), Claim::Run);
        drop(ledger);
        let mut ledger = Ledger::open(state.path()).unwrap();
        assert_eq!(
            ledger.claim("t1", at(11), at(10)).unwrap(),
            Claim::Duplicate
        );
        assert_eq!(ledger.claim("t2", at(11), at(10)).unwrap(), Claim::Run);
    }

    #[test]
    fn ledger_prunes_a_day_after_expiry() {
        let state = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::open(state.path()).unwrap();
        assert_eq!(ledger.claim("old", at(1), at(0)).unwrap(), Claim::Run);
        assert_eq!(ledger.claim("recent", at(3), at(0)).unwrap(), Claim::Run);
        // A day and two hours after `old` expired, but only 23 hours after `recent`.
        let now = at(1) + TimeDelta::hours(26);
        assert_eq!(
            ledger.claim("new", now + TimeDelta::hours(1), now).unwrap(),
            Claim::Run
        );
        let ledger = Ledger::open(state.path()).unwrap();
        let ids: Vec<&str> = ledger.tasks.keys().map(String::as_str).collect();
        assert_eq!(ids, ["new", "recent"]);
    }

    #[test]
    fn ledger_refuses_a_corrupt_file() {
        let state = tempfile::tempdir().unwrap();
        for contents in [
            "{not json",
            r#"{"format_version": 2, "tasks": {}}"#,
            r#"{"format_version": 1, "tasks": {"t": "yesterday"}}"#,
        ] {
            fs::write(state.path().join("tasks.json"), contents).unwrap();
            let err = Ledger::open(state.path()).unwrap_err();
            assert!(
                matches!(err, OutboxError::CorruptLedger { .. }),
                "{contents}: {err:?}"
            );
        }
    }
}
