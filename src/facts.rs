//! Facts about the machine steward runs on: the `local` node's `node.*` template context.
//!
//! Read from the file system under `--root` (`/etc/os-release`) and from the kernel (host
//! name), cheaply and without running commands.

use std::path::Path;

use crate::model::Facts;

/// Facts of the local machine; `root` is where its file system is (`/` unless `--root`).
pub fn local(root: &Path) -> Facts {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|text| text.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    let os_release = std::fs::read_to_string(root.join("etc/os-release"))
        .or_else(|_| std::fs::read_to_string(root.join("usr/lib/os-release")))
        .unwrap_or_default();
    let (os_family, os_release) = parse_os_release(&os_release);
    Facts {
        hostname,
        os_family,
        os_release,
        arch: std::env::consts::ARCH.to_string(),
        addresses: Vec::new(),
    }
}

/// `(family, release)` from os-release text: the family is the first `ID_LIKE` entry (so
/// Ubuntu is `debian`), or `ID` itself.
fn parse_os_release(text: &str) -> (String, String) {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .map(|value| value.trim().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let id = field("ID");
    let like = field("ID_LIKE");
    let family = like
        .split_whitespace()
        .next()
        .map_or(id.clone(), str::to_string);
    let family = if family.is_empty() {
        std::env::consts::OS.to_string()
    } else {
        family
    };
    (family, field("VERSION_ID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families() {
        assert_eq!(
            parse_os_release("ID=debian\nVERSION_ID=\"12\"\n"),
            ("debian".into(), "12".into())
        );
        assert_eq!(
            parse_os_release("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n").0,
            "debian"
        );
    }
}
