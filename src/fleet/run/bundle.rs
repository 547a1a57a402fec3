//! Bundle storage: the projects uploaded to the controller, kept under its data directory.
//!
//! An upload is written once per content ([`materialize`]), privately (0700 / 0600), with
//! every path checked; the most recently used are kept, and the current project (the one whose
//! schedules run, [`current_project`]) never is pruned. A scheduled run reads it back as a
//! bundle ([`bundle_of`]).
//! **Architecture Invariant:** no path from an upload leaves the project's directory, and
//! nothing here knows runs, agents or the controller.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use base64::Engine;

use crate::fleet::run::request::BundleFile;

/// Why an uploaded project was refused or could not be stored or read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// More files than [`MAX_BUNDLE_FILES`].
    #[error("the project has {0} files; the limit is {MAX_BUNDLE_FILES}")]
    TooManyFiles(usize),
    /// More bytes than [`MAX_BUNDLE_BYTES`].
    #[error("the project is over the {MAX_BUNDLE_BYTES}-byte limit")]
    TooLarge,
    /// A path that is absolute, climbs out, is hidden or too long.
    #[error("project path `{}` must be relative, without `..` or hidden parts", .0.escape_debug())]
    BadPath(String),
    /// The same path twice.
    #[error("`{0}` appears twice in the project")]
    Duplicate(String),
    /// A file's data is not base64.
    #[error("`{path}`: {source}")]
    Base64 {
        /// The file, as uploaded.
        path: String,
        /// What is wrong with its data.
        source: base64::DecodeError,
    },
    /// The directory of uploads could not be made.
    #[error("{0}")]
    ProjectsDir(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The staging directory could not be made.
    #[error("staging the project: {0}")]
    Staging(#[source] std::io::Error),
    /// A file could not be written.
    #[error("{}: {source}", .path.display())]
    Write {
        /// The file, relative to the project.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The staged project could not be moved in place.
    #[error("storing the project: {0}")]
    Store(#[source] std::io::Error),
    /// A stored project could not be walked.
    #[error("{0}")]
    Walk(#[from] walkdir::Error),
    /// A walked file was not under the project (it cannot happen).
    #[error("{0}")]
    Outside(#[from] std::path::StripPrefixError),
    /// A stored file could not be read.
    #[error("{0}")]
    Read(#[source] std::io::Error),
    /// The current project in the store does not read as a project.
    #[error("the current project in the store does not read: {0}")]
    Stored(String),
}

/// The largest project the controller accepts.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;
/// The most files a project may have.
pub const MAX_BUNDLE_FILES: usize = 50_000;

/// Where uploaded projects are kept.
fn projects_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("projects")
}

/// The file naming the project whose schedules the controller runs.
pub(crate) fn current_path(data_dir: &Path) -> PathBuf {
    data_dir.join("current-project")
}

/// Writes an uploaded project under the data directory (once per content) and returns its
/// directory. Every path is checked: relative, no `..`, no hidden components, bounded.
pub fn materialize(data_dir: &Path, files: &[BundleFile]) -> Result<PathBuf, BundleError> {
    if files.len() > MAX_BUNDLE_FILES {
        return Err(BundleError::TooManyFiles(files.len()));
    }
    let mut decoded = Vec::with_capacity(files.len());
    let mut total = 0usize;
    let mut seen = HashSet::new();
    for file in files {
        let path = check_bundle_path(&file.path)?;
        if !seen.insert(path.clone()) {
            return Err(BundleError::Duplicate(file.path.clone()));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&file.data)
            .map_err(|source| BundleError::Base64 {
                path: file.path.clone(),
                source,
            })?;
        total += bytes.len();
        if total > MAX_BUNDLE_BYTES {
            return Err(BundleError::TooLarge);
        }
        decoded.push((path, bytes));
    }
    decoded.sort();
    let mut hasher = blake3::Hasher::new();
    for (path, bytes) in &decoded {
        hasher.update(path.as_os_str().as_encoded_bytes());
        hasher.update(&[0]);
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    let digest = hasher.finalize().to_hex().to_string();
    let dir = projects_dir(data_dir).join(&digest[..32]);
    if dir.is_dir() {
        // Used again: it counts as recent for pruning.
        let _ =
            std::fs::File::open(&dir).and_then(|d| d.set_modified(std::time::SystemTime::now()));
        return Ok(dir);
    }
    crate::state_dir::create_private_dir(&projects_dir(data_dir))
        .map_err(|err| BundleError::ProjectsDir(err.into()))?;
    let staging = tempfile::Builder::new()
        .prefix(".upload-")
        .tempdir_in(projects_dir(data_dir))
        .map_err(BundleError::Staging)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(BundleError::Staging)?;
    }
    // Projects can hold secrets: everything is private to the controller (0700 / 0600).
    for (path, bytes) in &decoded {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let target = staging.path().join(path);
        let failed = |source: std::io::Error| BundleError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = target.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(failed)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .and_then(|mut file| file.write_all(bytes))
            .map_err(failed)?;
    }
    let staged = staging.keep();
    match std::fs::rename(&staged, &dir) {
        Ok(()) => {
            prune_projects(data_dir, KEEP_PROJECTS);
            Ok(dir)
        }
        // Another upload of the same content won the race.
        Err(_) if dir.is_dir() => {
            let _ = std::fs::remove_dir_all(&staged);
            Ok(dir)
        }
        Err(err) => Err(BundleError::Store(err)),
    }
}

/// Uploaded projects kept besides the current one.
const KEEP_PROJECTS: usize = 20;

/// Deletes all but the `keep` most recently used uploaded projects, never the current one
/// (its schedules read it). Runs hold the run lock, so no run reads a project being deleted.
fn prune_projects(data_dir: &Path, keep: usize) {
    let current = current_project(data_dir).map(|(dir, _)| dir);
    let Ok(entries) = std::fs::read_dir(projects_dir(data_dir)) else {
        return;
    };
    let mut projects: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| current.as_deref() != Some(e.path().as_path()))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    projects.sort_by_key(|p| std::cmp::Reverse(p.0));
    for (_, old) in projects.into_iter().skip(keep) {
        if let Err(err) = std::fs::remove_dir_all(&old) {
            tracing::info!("pruning {}: {err}", old.display());
        }
    }
}

fn check_bundle_path(text: &str) -> Result<PathBuf, BundleError> {
    let path = Path::new(text);
    let bad = text.is_empty()
        || text.len() > 1024
        || text.contains('\0')
        || text.contains('\\')
        || path.components().any(|c| match c {
            Component::Normal(part) => part.to_string_lossy().starts_with('.'),
            _ => true,
        });
    if bad {
        Err(BundleError::BadPath(text.to_string()))
    } else {
        Ok(path.to_path_buf())
    }
}

/// The project whose schedules run, and its name for records, if one was applied.
pub fn current_project(data_dir: &Path) -> Option<(PathBuf, String)> {
    let text = std::fs::read_to_string(current_path(data_dir)).ok()?;
    let mut lines = text.lines();
    let dir = lines.next()?.trim();
    let project = lines.next().unwrap_or_default().to_string();
    if dir.is_empty() || check_bundle_path(dir).is_err() {
        return None;
    }
    Some((projects_dir(data_dir).join(dir), project))
}

/// Reads back a stored project as a bundle, for a scheduled run.
pub fn bundle_of(dir: &Path) -> Result<Vec<BundleFile>, BundleError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(dir)?
            .to_string_lossy()
            .to_string();
        let bytes = std::fs::read(entry.path()).map_err(BundleError::Read)?;
        files.push(BundleFile {
            path: relative,
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_paths_stay_inside() {
        assert!(check_bundle_path("site.yaml").is_ok());
        assert!(check_bundle_path("templates/a.j2").is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            ".steward/x",
            "a/.git/config",
            "a\\b",
        ] {
            assert!(check_bundle_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn materialize_refuses_bad_bundles_and_dedupes() {
        let dir = tempfile::tempdir().unwrap();
        let file = |path: &str, data: &str| BundleFile {
            path: path.to_string(),
            data: data.to_string(),
        };
        let ok = vec![file("site.yaml", "c3Rld2FyZDogMQo=")];
        let a = materialize(dir.path(), &ok).unwrap();
        let b = materialize(dir.path(), &ok).unwrap();
        assert_eq!(a, b);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&a.join("site.yaml")), 0o600);
        assert_eq!(mode(&a), 0o700);
        assert_eq!(
            std::fs::read_to_string(a.join("site.yaml")).unwrap(),
            "steward: 1\n"
        );
        assert!(materialize(dir.path(), &[file("../x", "")]).is_err());

        // Old uploads are pruned; the current project never is.
        let current = a.clone();
        std::fs::write(
            dir.path().join("current-project"),
            format!("{}\n/p\n", current.file_name().unwrap().to_string_lossy()),
        )
        .unwrap();
        for n in 0..(KEEP_PROJECTS + 5) {
            use base64::Engine;
            let data =
                base64::engine::general_purpose::STANDARD.encode(format!("steward: 1\n# {n}\n"));
            materialize(dir.path(), &[file("site.yaml", &data)]).unwrap();
        }
        let kept = std::fs::read_dir(dir.path().join("projects"))
            .unwrap()
            .count();
        assert_eq!(kept, KEEP_PROJECTS + 1);
        assert!(current.is_dir());
        assert!(materialize(dir.path(), &[file("x", "!!!")]).is_err());
        assert!(materialize(dir.path(), &[file("x", ""), file("x", "")]).is_err());
    }
}
