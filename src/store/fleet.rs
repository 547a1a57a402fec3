//! The controller's tables in the SQLite store: one-time join tokens and the node registry.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::store::sqlite::SqliteStore;
use crate::store::{NodeRecord, StoreError};

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl SqliteStore {
    /// Records a new join token by the hash of its secret.
    pub fn insert_token(
        &mut self,
        id: &str,
        secret_hash: &str,
        expires_at: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO join_tokens (id, secret_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, secret_hash, now(), expires_at],
        )?;
        Ok(())
    }

    /// Redeems a token once, atomically: `check` sees `(secret_hash, expires_at, used_by)`
    /// and says why it is refused; otherwise the token is marked used by `node`.
    pub fn redeem_token(
        &mut self,
        id: &str,
        node: &str,
        check: impl FnOnce(&str, &str, Option<&str>) -> Result<(), String>,
    ) -> Result<(), StoreError> {
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row: Option<(String, String, Option<String>)> = tx
            .query_row(
                "SELECT secret_hash, expires_at, used_by FROM join_tokens WHERE id = ?1",
                params![id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        let Some((hash, expires_at, used_by)) = row else {
            return Err(StoreError::Token("unknown join token".to_string()));
        };
        check(&hash, &expires_at, used_by.as_deref()).map_err(StoreError::Token)?;
        let n = tx.execute(
            "UPDATE join_tokens SET used_at = ?1, used_by = ?2 WHERE id = ?3 AND used_at IS NULL",
            params![now(), node, id],
        )?;
        if n != 1 {
            return Err(StoreError::Token(
                "the join token was used already".to_string(),
            ));
        }
        tx.commit()?;
        Ok(())
    }

    /// Enrolls (or re-enrolls) a node with its new certificate; a revoked name is refused.
    pub fn enroll_node(
        &mut self,
        name: &str,
        cert_fingerprint: &str,
        cert_not_after: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        if self.node(name)?.is_some_and(|n| n.revoked_at.is_some()) {
            return Err(StoreError::Revoked(name.to_string()));
        }
        let tags = serde_json::to_string(tags).unwrap_or_else(|_| "{}".to_string());
        self.conn().execute(
            "INSERT INTO nodes (name, cert_fingerprint, cert_not_after, tags, facts, enrolled_at)
             VALUES (?1, ?2, ?3, ?4, 'null', ?5)
             ON CONFLICT (name) DO UPDATE SET cert_fingerprint = ?2, cert_not_after = ?3,
                 tags = ?4, enrolled_at = ?5",
            params![name, cert_fingerprint, cert_not_after, tags, now()],
        )?;
        Ok(())
    }

    /// Replaces a node's certificate after renewal.
    pub fn renew_node_cert(
        &mut self,
        name: &str,
        cert_fingerprint: &str,
        cert_not_after: &str,
    ) -> Result<(), StoreError> {
        let n = self.conn().execute(
            "UPDATE nodes SET cert_fingerprint = ?2, cert_not_after = ?3
             WHERE name = ?1 AND revoked_at IS NULL",
            params![name, cert_fingerprint, cert_not_after],
        )?;
        if n == 0 {
            return Err(StoreError::NoNode(name.to_string()));
        }
        Ok(())
    }

    /// Records that a node connected (or disconnected) with these facts.
    pub fn node_seen(
        &mut self,
        name: &str,
        facts: &serde_json::Value,
        at: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE nodes SET facts = ?2, last_seen = ?3 WHERE name = ?1",
            params![name, facts.to_string(), at],
        )?;
        Ok(())
    }

    /// One node.
    pub fn node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT name, cert_fingerprint, cert_not_after, tags, facts, enrolled_at,
                        last_seen, revoked_at FROM nodes WHERE name = ?1",
                params![name],
                node_from_row,
            )
            .optional()?)
    }

    /// Every node, by name.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let mut stmt = self.conn().prepare(
            "SELECT name, cert_fingerprint, cert_not_after, tags, facts, enrolled_at,
                    last_seen, revoked_at FROM nodes ORDER BY name",
        )?;
        let rows = stmt.query_map([], node_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a node for good.
    pub fn revoke_node(&mut self, name: &str) -> Result<NodeRecord, StoreError> {
        self.conn().execute(
            "UPDATE nodes SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
            params![name, now()],
        )?;
        self.node(name)?
            .ok_or_else(|| StoreError::NoNode(name.to_string()))
    }

    /// True when `fingerprint` is the node's current certificate and it is not revoked: the
    /// check made on every connection.
    pub fn node_cert_ok(&self, name: &str, fingerprint: &str) -> Result<bool, StoreError> {
        Ok(self
            .node(name)?
            .is_some_and(|n| n.revoked_at.is_none() && n.cert_fingerprint == fingerprint))
    }
}

fn node_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRecord> {
    let tags: String = row.get(3)?;
    let facts: String = row.get(4)?;
    Ok(NodeRecord {
        name: row.get(0)?,
        cert_fingerprint: row.get(1)?,
        cert_not_after: row.get(2)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        facts: serde_json::from_str(&facts).unwrap_or(serde_json::Value::Null),
        enrolled_at: row.get(5)?,
        last_seen: row.get(6)?,
        revoked_at: row.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("steward.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn nodes_enroll_renew_and_revoke() {
        let (_dir, mut store) = store();
        let tags = BTreeMap::from([("role".to_string(), "web".to_string())]);
        store
            .enroll_node("web-1", "sha256:aa", "2027-01-01T00:00:00Z", &tags)
            .unwrap();
        assert!(store.node_cert_ok("web-1", "sha256:aa").unwrap());
        assert!(!store.node_cert_ok("web-1", "sha256:bb").unwrap());
        store
            .renew_node_cert("web-1", "sha256:bb", "2027-02-01T00:00:00Z")
            .unwrap();
        assert!(store.node_cert_ok("web-1", "sha256:bb").unwrap());
        assert!(!store.node_cert_ok("web-1", "sha256:aa").unwrap());
        store
            .node_seen("web-1", &serde_json::json!({"hostname": "h"}), "now")
            .unwrap();
        let node = store.node("web-1").unwrap().unwrap();
        assert_eq!(node.tags, tags);
        assert_eq!(node.facts["hostname"], "h");
        store.revoke_node("web-1").unwrap();
        assert!(!store.node_cert_ok("web-1", "sha256:bb").unwrap());
        assert!(matches!(
            store.enroll_node("web-1", "sha256:cc", "x", &tags),
            Err(StoreError::Revoked(_))
        ));
        assert!(matches!(
            store.revoke_node("nope"),
            Err(StoreError::NoNode(_))
        ));
        assert!(!store.node_cert_ok("nope", "sha256:aa").unwrap());
    }

    #[test]
    fn a_token_is_redeemed_once_even_from_two_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steward.db");
        let mut store = SqliteStore::open(&path).unwrap();
        store
            .insert_token("t1", "h", "2999-01-01T00:00:00Z")
            .unwrap();
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut store = SqliteStore::open(&path).unwrap();
                    store
                        .redeem_token("t1", &format!("n{i}"), |_, _, _| Ok(()))
                        .is_ok()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|won| *won)
            .count();
        assert_eq!(wins, 1);
        let used: Option<String> = store
            .conn()
            .query_row("SELECT used_by FROM join_tokens WHERE id = 't1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(used.is_some());
        assert!(store.redeem_token("t1", "again", |_, _, _| Ok(())).is_err());
        assert!(store.redeem_token("nope", "x", |_, _, _| Ok(())).is_err());
    }
}
