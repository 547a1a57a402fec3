//! The controller's tables in the SQLite store: one-time join tokens, the node registry, API
//! tokens and the audit log.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::store::{
    ApiTokenRecord, AuditEntry, AuditQuery, AuditRecord, Decide, NodeRecord, StoreError,
};

pub(super) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

use crate::store::contract::Tags;

pub(super) fn tags_json(tags: &Tags) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".to_string())
}

/// A join token as the store keeps it: the hash of its secret, its expiry, who used it, and
/// what it is bound to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredToken {
    /// Hash of the secret (the secret itself is never stored).
    pub secret_hash: String,
    /// RFC 3339.
    pub expires_at: String,
    /// The node that redeemed it.
    pub used_by: Option<String>,
    /// The only node name it enrolls, when bound to one.
    pub node: Option<String>,
    /// The tags a node enrolled with it gets, when bound to them.
    pub tags: Option<Tags>,
    /// It may replace the enrolled node `node` (an admin's explicit act).
    pub replace_node: bool,
}

/// A node's certificate and the tags its agent asked for, as enrollment records them.
#[derive(Clone, Copy, Debug)]
pub struct NewCert<'a> {
    /// The node name (the certificate's CN).
    pub node: &'a str,
    /// `sha256:` fingerprint of the certificate.
    pub fingerprint: &'a str,
    /// Its expiry (RFC 3339).
    pub not_after: &'a str,
    /// The tags the agent claimed; kept apart from the controller's tags.
    pub claimed_tags: &'a Tags,
}

/// The columns [`api_token_from_row`] reads.
const API_TOKEN_COLUMNS: &str =
    "id, name, role, target, secret_sha256, created_at, expires_at, revoked_at";

fn api_token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        role: row.get(2)?,
        target: row.get(3)?,
        secret_sha256: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        revoked_at: row.get(7)?,
    })
}

/// Records a new API token (not revoked).
pub(super) fn insert_api_token(
    conn: &Connection,
    token: &ApiTokenRecord,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO api_tokens (id, name, role, target, secret_sha256, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            token.id,
            token.name,
            token.role,
            token.target,
            token.secret_sha256,
            token.created_at,
            token.expires_at
        ],
    )?;
    Ok(())
}

/// The API token `id`.
pub(super) fn api_token(conn: &Connection, id: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
            [id],
            api_token_from_row,
        )
        .optional()?)
}

/// Every API token, by id.
pub(super) fn api_tokens(conn: &Connection) -> Result<Vec<ApiTokenRecord>, StoreError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {API_TOKEN_COLUMNS} FROM api_tokens ORDER BY id"
    ))?;
    let rows = statement.query_map([], api_token_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes API token `id` once, in one immediate transaction (which holds the file's write
/// lock from the update to the read of the row).
pub(super) fn revoke_api_token(
    conn: &mut Connection,
    id: &str,
) -> Result<ApiTokenRecord, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let changed = tx.execute(
        "UPDATE api_tokens SET revoked_at = ?1 WHERE id = ?2 AND revoked_at IS NULL",
        params![now(), id],
    )?;
    let token = api_token(&tx, id)?.ok_or_else(|| StoreError::NoApiToken(id.to_string()))?;
    if changed == 0 {
        return Err(StoreError::ApiTokenRevoked {
            id: id.to_string(),
            revoked_at: token.revoked_at.unwrap_or_default(),
        });
    }
    tx.commit()?;
    Ok(token)
}

/// Appends an entry to the audit log (one statement: its own transaction); its id.
pub(super) fn append_audit(conn: &Connection, entry: &AuditEntry) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO audit_log (at, actor_id, actor, source, action, target, run_id, outcome,
                                status, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            entry.at,
            entry.actor_id,
            entry.actor,
            entry.source,
            entry.action,
            entry.target,
            entry.run_id,
            entry.outcome,
            entry.status,
            entry.detail
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The entries `query` selects, newest first.
pub(super) fn audit(conn: &Connection, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
    let mut sql = String::from(
        "SELECT id, at, actor_id, actor, source, action, target, run_id, outcome, status, detail
         FROM audit_log WHERE 1 = 1",
    );
    let mut values: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(before) = query.before {
        values.push(before.into());
        sql.push_str(&format!(" AND id < ?{}", values.len()));
    }
    if let Some(run_id) = &query.run_id {
        values.push(run_id.clone().into());
        sql.push_str(&format!(" AND run_id = ?{}", values.len()));
    }
    if let Some(actor_id) = &query.actor_id {
        values.push(actor_id.clone().into());
        sql.push_str(&format!(" AND actor_id = ?{}", values.len()));
    }
    values.push(i64::try_from(query.limit).unwrap_or(i64::MAX).into());
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", values.len()));
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(rusqlite::params_from_iter(values), |row| {
        Ok(AuditRecord {
            id: row.get(0)?,
            entry: AuditEntry {
                at: row.get(1)?,
                actor_id: row.get(2)?,
                actor: row.get(3)?,
                source: row.get(4)?,
                action: row.get(5)?,
                target: row.get(6)?,
                run_id: row.get(7)?,
                outcome: row.get(8)?,
                status: row.get(9)?,
                detail: row.get(10)?,
            },
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The SQLite side of [`crate::store::FleetStore`]'s tokens and nodes, over the store's
/// connection.
pub(super) fn insert_token(
    conn: &Connection,
    id: &str,
    token: &StoredToken,
) -> Result<(), StoreError> {
    let tags = token.tags.as_ref().map(tags_json);
    conn.execute(
        "INSERT INTO join_tokens (id, secret_hash, created_at, expires_at, node, tags, replace_node)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id,
            token.secret_hash,
            now(),
            token.expires_at,
            token.node,
            tags,
            token.replace_node
        ],
    )?;
    Ok(())
}

/// Enrolls a node with a join token, in one immediate transaction (which holds the file's
/// write lock, so a second enrollment with the token waits and then sees it spent).
pub(super) fn enroll_with_token(
    conn: &mut Connection,
    token_id: &str,
    cert: &NewCert<'_>,
    decide: &mut Decide<'_>,
) -> Result<Result<(), String>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let token = stored_token(&tx, token_id)?;
    let existing = node_in(&tx, cert.node)?;
    let tags = match decide(token.as_ref(), existing.as_ref()) {
        Ok(tags) => tags,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let at = now();
    let spent = tx.execute(
        "UPDATE join_tokens SET used_at = ?1, used_by = ?2 WHERE id = ?3 AND used_at IS NULL",
        params![at, cert.node, token_id],
    )?;
    if spent != 1 {
        return Err(StoreError::Token(
            "the join token was used already".to_string(),
        ));
    }
    tx.execute(
        "INSERT INTO nodes (name, cert_fingerprint, cert_not_after, tags, claimed_tags, facts,
                            enrolled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'null', ?6)
         ON CONFLICT (name) DO UPDATE SET cert_fingerprint = ?2, cert_not_after = ?3,
             tags = ?4, claimed_tags = ?5, facts = 'null', enrolled_at = ?6,
             last_seen = NULL, revoked_at = NULL",
        params![
            cert.node,
            cert.fingerprint,
            cert.not_after,
            tags_json(&tags),
            tags_json(cert.claimed_tags),
            at
        ],
    )?;
    tx.commit()?;
    Ok(Ok(()))
}

/// Sets and removes a node's tags in one immediate transaction.
pub(super) fn set_node_tags(
    conn: &mut Connection,
    name: &str,
    set: &Tags,
    remove: &[String],
) -> Result<NodeRecord, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut node = match node_in(&tx, name)? {
        Some(node) if node.revoked_at.is_some() => {
            return Err(StoreError::Revoked(name.to_string()));
        }
        Some(node) => node,
        None => return Err(StoreError::NoNode(name.to_string())),
    };
    for key in remove {
        node.tags.remove(key);
    }
    node.tags
        .extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    tx.execute(
        "UPDATE nodes SET tags = ?2 WHERE name = ?1",
        params![name, tags_json(&node.tags)],
    )?;
    tx.commit()?;
    Ok(node)
}

/// Replaces a node's certificate after renewal.
pub(super) fn renew_node_cert(
    conn: &Connection,
    name: &str,
    cert_fingerprint: &str,
    cert_not_after: &str,
) -> Result<(), StoreError> {
    let n = conn.execute(
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
pub(super) fn node_seen(
    conn: &Connection,
    name: &str,
    facts: &serde_json::Value,
    at: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE nodes SET facts = ?2, last_seen = ?3 WHERE name = ?1",
        params![name, facts.to_string(), at],
    )?;
    Ok(())
}

/// Every node, by name.
pub(super) fn nodes(conn: &Connection) -> Result<Vec<NodeRecord>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name"))?;
    let rows = stmt.query_map([], node_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes a node for good.
pub(super) fn revoke_node(conn: &Connection, name: &str) -> Result<NodeRecord, StoreError> {
    conn.execute(
        "UPDATE nodes SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, now()],
    )?;
    node_in(conn, name)?.ok_or_else(|| StoreError::NoNode(name.to_string()))
}

const NODE_COLUMNS: &str = "name, cert_fingerprint, cert_not_after, tags, facts, enrolled_at, \
                            last_seen, revoked_at, claimed_tags";

pub(super) fn node_in(conn: &Connection, name: &str) -> Result<Option<NodeRecord>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name = ?1"),
            params![name],
            node_from_row,
        )
        .optional()?)
}

fn node_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRecord> {
    let tags: String = row.get(3)?;
    let facts: String = row.get(4)?;
    let claimed_tags: String = row.get(8)?;
    Ok(NodeRecord {
        name: row.get(0)?,
        cert_fingerprint: row.get(1)?,
        cert_not_after: row.get(2)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        claimed_tags: serde_json::from_str(&claimed_tags).unwrap_or_default(),
        facts: serde_json::from_str(&facts).unwrap_or(serde_json::Value::Null),
        enrolled_at: row.get(5)?,
        last_seen: row.get(6)?,
        revoked_at: row.get(7)?,
    })
}

fn stored_token(conn: &Connection, id: &str) -> Result<Option<StoredToken>, StoreError> {
    let row = conn
        .query_row(
            "SELECT secret_hash, expires_at, used_by, node, replace_node, tags
             FROM join_tokens WHERE id = ?1",
            params![id],
            |row| {
                let token = StoredToken {
                    secret_hash: row.get(0)?,
                    expires_at: row.get(1)?,
                    used_by: row.get(2)?,
                    node: row.get(3)?,
                    tags: None,
                    replace_node: row.get(4)?,
                };
                Ok((token, row.get::<_, Option<String>>(5)?))
            },
        )
        .optional()?;
    let Some((mut token, tags)) = row else {
        return Ok(None);
    };
    if let Some(text) = tags {
        token.tags =
            Some(serde_json::from_str(&text).map_err(|err| {
                StoreError::Token(format!("join token {id}: stored tags: {err}"))
            })?);
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FleetStore;
    use crate::store::sqlite::SqliteStore;
    use std::collections::BTreeMap;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("steward.db")).unwrap();
        (dir, store)
    }

    fn token() -> StoredToken {
        StoredToken {
            secret_hash: "h".to_string(),
            expires_at: "2999-01-01T00:00:00Z".to_string(),
            ..StoredToken::default()
        }
    }

    fn cert<'a>(node: &'a str, fingerprint: &'a str, claimed: &'a Tags) -> NewCert<'a> {
        NewCert {
            node,
            fingerprint,
            not_after: "2027-01-01T00:00:00Z",
            claimed_tags: claimed,
        }
    }

    fn web() -> Tags {
        BTreeMap::from([("role".to_string(), "web".to_string())])
    }

    /// Enrolls with a fresh token whose decision gives `tags`.
    fn enroll(store: &mut SqliteStore, id: &str, cert: &NewCert<'_>, tags: Tags) {
        store.insert_token(id, &token()).unwrap();
        store
            .enroll_with_token(id, cert, &mut |_, _| Ok(tags.clone()))
            .unwrap()
            .unwrap();
    }

    #[test]
    fn nodes_enroll_renew_and_revoke() {
        let (_dir, mut store) = store();
        let claimed = BTreeMap::from([("evil".to_string(), "yes".to_string())]);
        enroll(
            &mut store,
            "t1",
            &cert("web-1", "sha256:aa", &claimed),
            web(),
        );
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
        assert_eq!(node.tags, web());
        assert_eq!(node.claimed_tags, claimed);
        assert_eq!(node.facts["hostname"], "h");
        store.revoke_node("web-1").unwrap();
        assert!(!store.node_cert_ok("web-1", "sha256:bb").unwrap());
        assert!(matches!(
            store.set_node_tags("web-1", &web(), &[]),
            Err(StoreError::Revoked(_))
        ));
        // A revoked name enrolls again (when the decision allows it), un-revoked.
        enroll(
            &mut store,
            "t2",
            &cert("web-1", "sha256:cc", &Tags::new()),
            Tags::new(),
        );
        let node = store.node("web-1").unwrap().unwrap();
        assert!(node.revoked_at.is_none());
        assert!(node.tags.is_empty());
        assert!(store.node_cert_ok("web-1", "sha256:cc").unwrap());
        assert!(!store.node_cert_ok("web-1", "sha256:bb").unwrap());
        assert!(matches!(
            store.revoke_node("nope"),
            Err(StoreError::NoNode(_))
        ));
        assert!(!store.node_cert_ok("nope", "sha256:aa").unwrap());
    }

    #[test]
    fn node_tags_are_set_and_removed() {
        let (_dir, mut store) = store();
        enroll(
            &mut store,
            "t1",
            &cert("web-1", "sha256:aa", &Tags::new()),
            web(),
        );
        let zone = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let node = store
            .set_node_tags("web-1", &zone, &["role".to_string()])
            .unwrap();
        assert_eq!(node.tags, zone);
        assert_eq!(store.node("web-1").unwrap().unwrap().tags, zone);
        assert!(matches!(
            store.set_node_tags("nope", &zone, &[]),
            Err(StoreError::NoNode(_))
        ));
    }

    #[test]
    fn a_refusal_spends_nothing_and_the_binding_round_trips() {
        let (_dir, mut store) = store();
        let bound = StoredToken {
            node: Some("web-5".to_string()),
            tags: Some(web()),
            replace_node: true,
            ..token()
        };
        store.insert_token("t1", &bound).unwrap();
        let refused = store
            .enroll_with_token(
                "t1",
                &cert("web-5", "sha256:aa", &Tags::new()),
                &mut |seen, node| {
                    assert_eq!(seen, Some(&bound));
                    assert!(node.is_none());
                    Err("no".to_string())
                },
            )
            .unwrap();
        assert_eq!(refused, Err("no".to_string()));
        assert!(store.node("web-5").unwrap().is_none());
        store
            .enroll_with_token(
                "t1",
                &cert("web-5", "sha256:aa", &Tags::new()),
                &mut |seen, _| {
                    assert!(seen.unwrap().used_by.is_none(), "a refusal spent the token");
                    Ok(web())
                },
            )
            .unwrap()
            .unwrap();
        let unknown = store
            .enroll_with_token(
                "nope",
                &cert("x", "sha256:aa", &Tags::new()),
                &mut |seen, _| {
                    assert!(seen.is_none());
                    Err("unknown".to_string())
                },
            )
            .unwrap();
        assert_eq!(unknown, Err("unknown".to_string()));
    }

    #[test]
    fn a_token_is_redeemed_once_even_from_two_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steward.db");
        let mut store = SqliteStore::open(&path).unwrap();
        store.insert_token("t1", &token()).unwrap();
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut store = SqliteStore::open(&path).unwrap();
                    let name = format!("n{i}");
                    let claimed = Tags::new();
                    matches!(
                        store.enroll_with_token(
                            "t1",
                            &cert(&name, "sha256:aa", &claimed),
                            &mut |t, _| {
                                match t {
                                    Some(t) if t.used_by.is_none() => Ok(Tags::new()),
                                    _ => Err("used".to_string()),
                                }
                            }
                        ),
                        Ok(Ok(()))
                    )
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|won| *won)
            .count();
        assert_eq!(wins, 1);
        assert_eq!(store.nodes().unwrap().len(), 1);
    }
}
