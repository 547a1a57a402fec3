//! Users and groups as the root's `/etc/passwd` and `/etc/group` list them.
//!
//! Read from files under the root, not through NSS, so `--root` sees the image's accounts.

use std::path::Path;

/// One `/etc/passwd` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// GECOS comment.
    pub comment: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One `/etc/group` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// Supplementary members.
    pub members: Vec<String>,
}

/// The accounts of one root.
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    /// Users in file order.
    pub users: Vec<PasswdEntry>,
    /// Groups in file order.
    pub groups: Vec<GroupEntry>,
}

impl Accounts {
    /// Reads `etc/passwd` and `etc/group` under `root`; missing files are empty.
    pub fn read(root: &Path) -> std::io::Result<Accounts> {
        let passwd = read_optional(&root.join("etc/passwd"))?;
        let group = read_optional(&root.join("etc/group"))?;
        Ok(Accounts {
            users: parse_passwd(&passwd),
            groups: parse_group(&group),
        })
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    /// A group by name.
    pub fn group(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Why naming `name` as a user would fail: it is not a number, not in the root's
    /// `etc/passwd`, and not in `declared` (users the node's documents create).
    pub fn missing_user(
        &self,
        name: &str,
        declared: &foldhash::HashSet<String>,
        root: &Path,
    ) -> Option<String> {
        (self.user(name).is_none() && name.parse::<u32>().is_err() && !declared.contains(name))
            .then(|| {
                format!(
                    "user `{name}` is not in {} and no `user` resource declares it",
                    root.join("etc/passwd").display()
                )
            })
    }

    /// Why naming `name` as a group would fail: it is not a number, not in the root's
    /// `etc/group`, and not in `declared` (groups the node's documents create).
    pub fn missing_group(
        &self,
        name: &str,
        declared: &foldhash::HashSet<String>,
        root: &Path,
    ) -> Option<String> {
        (self.group(name).is_none() && name.parse::<u32>().is_err() && !declared.contains(name))
            .then(|| {
                format!(
                    "group `{name}` is not in {} and no `group` resource declares it",
                    root.join("etc/group").display()
                )
            })
    }

    /// A user's name by id.
    pub fn user_name(&self, uid: u32) -> Option<&str> {
        self.users
            .iter()
            .find(|u| u.uid == uid)
            .map(|u| u.name.as_str())
    }

    /// A group's name by id.
    pub fn group_name(&self, gid: u32) -> Option<&str> {
        self.groups
            .iter()
            .find(|g| g.gid == gid)
            .map(|g| g.name.as_str())
    }
}

fn read_optional(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(err) => Err(err),
    }
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let [name, _, uid, gid, comment, home, shell] = fields.as_slice() else {
                return None;
            };
            Some(PasswdEntry {
                name: name.to_string(),
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                comment: comment.to_string(),
                home: home.to_string(),
                shell: shell.to_string(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let [name, _, gid, members] = fields.as_slice() else {
                return None;
            };
            Some(GroupEntry {
                name: name.to_string(),
                gid: gid.parse().ok()?,
                members: members
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries() {
        let users = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nbroken\napp:x:1000:1000::/srv/app:/usr/sbin/nologin\n",
        );
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].home, "/srv/app");
        let groups = parse_group("root:x:0:\nops:x:1001:alice,bob\n");
        assert_eq!(groups[1].members, ["alice", "bob"]);
    }
}
