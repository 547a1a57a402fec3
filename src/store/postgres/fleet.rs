//! PostgreSQL's side of [`FleetStore`]: join tokens, the node registry, API tokens, the task
//! ledger, runs
//! in progress and the state controllers share (secrets, schedule firings and switches, the
//! current project), with the semantics of SQLite's (the conformance suite checks both).
//!
//! SQLite serializes every writer with the file's lock; here the rows decide. An enrollment
//! holds its token's row (`FOR UPDATE`) from reading it to spending it, so a second one with
//! the same token waits and then sees it spent; a tag change holds its node's row; a task is
//! issued once (its id is the key) and closed once (`WHERE closed_at IS NULL`, re-checked
//! after the row's lock is had); a secret is inserted once and a firing claimed once (their
//! keys, `ON CONFLICT DO NOTHING`, which waits for a concurrent insert of the same key); a
//! schedule's switch changes only when its state does (`WHERE` on the row, re-checked once a
//! concurrent change of it committed).

use std::collections::BTreeMap;

use postgres::{Client, GenericClient, NoTls, Row, Statement};

use crate::store::fleet::{now, tags_json};
use crate::store::postgres::routing;
use crate::store::postgres::{PostgresStore, describe, error_text};
use crate::store::{
    ApiTokenRecord, AuditEntry, AuditQuery, AuditRecord, BuildInterrupted, ClaimedTask,
    CurrentProject, Decide, FleetStore, IssuedTask, LedgerOp, NewCert, NodeRecord, RoutedClose,
    RoutedState, RoutedTask, RunRecord, ScheduleSwitch, StoreError, StoreListener, StoredToken,
    Tags, TaskLedger, TaskState, UnfinishedRun,
};

/// The columns [`node_from_row`] reads.
const NODE_COLUMNS: &str = "name, cert_fingerprint, cert_not_after, tags, facts, enrolled_at, \
                            last_seen, revoked_at, claimed_tags";

fn node_from_row(row: &Row) -> Result<NodeRecord, postgres::Error> {
    let tags: String = row.try_get(3)?;
    let facts: String = row.try_get(4)?;
    let claimed_tags: String = row.try_get(8)?;
    Ok(NodeRecord {
        name: row.try_get(0)?,
        cert_fingerprint: row.try_get(1)?,
        cert_not_after: row.try_get(2)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        claimed_tags: serde_json::from_str(&claimed_tags).unwrap_or_default(),
        facts: serde_json::from_str(&facts).unwrap_or(serde_json::Value::Null),
        enrolled_at: row.try_get(5)?,
        last_seen: row.try_get(6)?,
        revoked_at: row.try_get(7)?,
    })
}

/// The columns [`api_token_from_row`] reads.
const API_TOKEN_COLUMNS: &str =
    "id, name, role, target, secret_sha256, created_at, expires_at, revoked_at";

fn api_token_from_row(row: &Row) -> Result<ApiTokenRecord, postgres::Error> {
    Ok(ApiTokenRecord {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        role: row.try_get(2)?,
        target: row.try_get(3)?,
        secret_sha256: row.try_get(4)?,
        created_at: row.try_get(5)?,
        expires_at: row.try_get(6)?,
        revoked_at: row.try_get(7)?,
    })
}

/// The node `name`; with `lock`, its row is held until the transaction ends.
fn node_in(
    client: &mut impl GenericClient,
    name: &str,
    lock: bool,
) -> Result<Option<NodeRecord>, StoreError> {
    let row = client.query_opt(
        &format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE name = $1{}",
            if lock { " FOR UPDATE" } else { "" }
        ),
        &[&name],
    )?;
    Ok(row.as_ref().map(node_from_row).transpose()?)
}

/// The token `id`, its row held until the transaction ends.
fn stored_token_for_update(
    client: &mut impl GenericClient,
    id: &str,
) -> Result<Option<StoredToken>, StoreError> {
    let Some(row) = client.query_opt(
        "SELECT secret_hash, expires_at, used_by, node, replace_node, tags
         FROM join_tokens WHERE id = $1 FOR UPDATE",
        &[&id],
    )?
    else {
        return Ok(None);
    };
    let tags = match row.try_get::<_, Option<String>>(5)? {
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|err| StoreError::Token(format!("join token {id}: stored tags: {err}")))?,
        ),
        None => None,
    };
    Ok(Some(StoredToken {
        secret_hash: row.try_get(0)?,
        expires_at: row.try_get(1)?,
        used_by: row.try_get(2)?,
        node: row.try_get(3)?,
        tags,
        replace_node: row.try_get::<_, i64>(4)? != 0,
    }))
}

/// A count of rows as `usize`.
fn rows(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl FleetStore for PostgresStore {
    fn insert_token(&mut self, id: &str, token: &StoredToken) -> Result<(), StoreError> {
        let tags = token.tags.as_ref().map(tags_json);
        self.client_mut().execute(
            "INSERT INTO join_tokens (id, secret_hash, created_at, expires_at, node, tags,
                                      replace_node)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &id,
                &token.secret_hash,
                &now(),
                &token.expires_at,
                &token.node,
                &tags,
                &i64::from(token.replace_node),
            ],
        )?;
        Ok(())
    }

    fn enroll_with_token(
        &mut self,
        token_id: &str,
        cert: &NewCert<'_>,
        decide: &mut Decide<'_>,
    ) -> Result<Result<(), String>, StoreError> {
        let mut tx = self.client_mut().transaction()?;
        let token = stored_token_for_update(&mut tx, token_id)?;
        let existing = node_in(&mut tx, cert.node, true)?;
        let tags = match decide(token.as_ref(), existing.as_ref()) {
            Ok(tags) => tags,
            // Dropping the transaction rolls it back: nothing is spent.
            Err(refusal) => return Ok(Err(refusal)),
        };
        let at = now();
        let spent = tx.execute(
            "UPDATE join_tokens SET used_at = $1, used_by = $2 WHERE id = $3 AND used_at IS NULL",
            &[&at, &cert.node, &token_id],
        )?;
        if spent != 1 {
            return Err(StoreError::Token(
                "the join token was used already".to_string(),
            ));
        }
        tx.execute(
            "INSERT INTO nodes (name, cert_fingerprint, cert_not_after, tags, claimed_tags, facts,
                                enrolled_at)
             VALUES ($1, $2, $3, $4, $5, 'null', $6)
             ON CONFLICT (name) DO UPDATE SET cert_fingerprint = $2, cert_not_after = $3,
                 tags = $4, claimed_tags = $5, facts = 'null', enrolled_at = $6,
                 last_seen = NULL, revoked_at = NULL",
            &[
                &cert.node,
                &cert.fingerprint,
                &cert.not_after,
                &tags_json(&tags),
                &tags_json(cert.claimed_tags),
                &at,
            ],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    fn set_node_tags(
        &mut self,
        name: &str,
        set: &Tags,
        remove: &[String],
    ) -> Result<NodeRecord, StoreError> {
        let mut tx = self.client_mut().transaction()?;
        let mut node = match node_in(&mut tx, name, true)? {
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
            "UPDATE nodes SET tags = $2 WHERE name = $1",
            &[&name, &tags_json(&node.tags)],
        )?;
        tx.commit()?;
        Ok(node)
    }

    fn renew_node_cert(
        &mut self,
        name: &str,
        cert_fingerprint: &str,
        cert_not_after: &str,
    ) -> Result<(), StoreError> {
        let n = self.client_mut().execute(
            "UPDATE nodes SET cert_fingerprint = $2, cert_not_after = $3
             WHERE name = $1 AND revoked_at IS NULL",
            &[&name, &cert_fingerprint, &cert_not_after],
        )?;
        if n == 0 {
            return Err(StoreError::NoNode(name.to_string()));
        }
        Ok(())
    }

    fn node_seen(
        &mut self,
        name: &str,
        facts: &serde_json::Value,
        at: &str,
    ) -> Result<(), StoreError> {
        self.client_mut().execute(
            "UPDATE nodes SET facts = $2, last_seen = $3 WHERE name = $1",
            &[&name, &facts.to_string(), &at],
        )?;
        Ok(())
    }

    fn node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        node_in(&mut *self.client(), name, false)
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let rows = self.client().query(
            &format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name"),
            &[],
        )?;
        Ok(rows.iter().map(node_from_row).collect::<Result<_, _>>()?)
    }

    fn revoke_node(&mut self, name: &str) -> Result<NodeRecord, StoreError> {
        let client = self.client_mut();
        client.execute(
            "UPDATE nodes SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
            &[&name, &now()],
        )?;
        node_in(client, name, false)?.ok_or_else(|| StoreError::NoNode(name.to_string()))
    }

    fn insert_api_token(&mut self, token: &ApiTokenRecord) -> Result<(), StoreError> {
        self.client_mut().execute(
            "INSERT INTO api_tokens (id, name, role, target, secret_sha256, created_at,
                                     expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &token.id,
                &token.name,
                &token.role,
                &token.target,
                &token.secret_sha256,
                &token.created_at,
                &token.expires_at,
            ],
        )?;
        Ok(())
    }

    fn api_token(&self, id: &str) -> Result<Option<ApiTokenRecord>, StoreError> {
        let row = self.client().query_opt(
            &format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
            &[&id],
        )?;
        Ok(row.as_ref().map(api_token_from_row).transpose()?)
    }

    fn api_tokens(&self) -> Result<Vec<ApiTokenRecord>, StoreError> {
        let rows = self.client().query(
            &format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens ORDER BY id"),
            &[],
        )?;
        Ok(rows
            .iter()
            .map(api_token_from_row)
            .collect::<Result<_, _>>()?)
    }

    fn revoke_api_token(&mut self, id: &str) -> Result<ApiTokenRecord, StoreError> {
        let mut tx = self.client_mut().transaction()?;
        // The update holds the row: a second revoke at once waits, then changes nothing.
        let changed = tx.execute(
            "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &now()],
        )?;
        let row = tx.query_opt(
            &format!("SELECT {API_TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
            &[&id],
        )?;
        let token = row
            .as_ref()
            .map(api_token_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NoApiToken(id.to_string()))?;
        if changed == 0 {
            return Err(StoreError::ApiTokenRevoked {
                id: id.to_string(),
                revoked_at: token.revoked_at.unwrap_or_default(),
            });
        }
        tx.commit()?;
        Ok(token)
    }

    fn append_audit(&mut self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let status = entry.status.map(i32::from);
        let row = self.client_mut().query_one(
            "INSERT INTO audit_log (at, actor_id, actor, source, action, target, run_id, outcome,
                                    status, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            &[
                &entry.at,
                &entry.actor_id,
                &entry.actor,
                &entry.source,
                &entry.action,
                &entry.target,
                &entry.run_id,
                &entry.outcome,
                &status,
                &entry.detail,
            ],
        )?;
        Ok(row.try_get(0)?)
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql = String::from(
            "SELECT id, at, actor_id, actor, source, action, target, run_id, outcome, status,
                    detail
             FROM audit_log WHERE true",
        );
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = Vec::new();
        if let Some(before) = &query.before {
            params.push(before);
            sql.push_str(&format!(" AND id < ${}", params.len()));
        }
        if let Some(run_id) = &query.run_id {
            params.push(run_id);
            sql.push_str(&format!(" AND run_id = ${}", params.len()));
        }
        if let Some(actor_id) = &query.actor_id {
            params.push(actor_id);
            sql.push_str(&format!(" AND actor_id = ${}", params.len()));
        }
        params.push(&limit);
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", params.len()));
        let rows = self.client().query(&sql, &params)?;
        rows.iter()
            .map(|row| {
                let status: Option<i32> = row.try_get(9)?;
                let status = status
                    .map(|n| {
                        u16::try_from(n).map_err(|_| {
                            StoreError::Postgres(format!("audit_log.status {n} is no HTTP status"))
                        })
                    })
                    .transpose()?;
                Ok(AuditRecord {
                    id: row.try_get(0)?,
                    entry: AuditEntry {
                        at: row.try_get(1)?,
                        actor_id: row.try_get(2)?,
                        actor: row.try_get(3)?,
                        source: row.try_get(4)?,
                        action: row.try_get(5)?,
                        target: row.try_get(6)?,
                        run_id: row.try_get(7)?,
                        outcome: row.try_get(8)?,
                        status,
                        detail: row.try_get(10)?,
                    },
                })
            })
            .collect()
    }

    fn begin_run(&mut self, run: &RunRecord) -> Result<(), StoreError> {
        self.client_mut().execute(
            "INSERT INTO runs (id, kind, started_at, finished_at, \"user\", project,
                               documents_digest, status)
             VALUES ($1, $2, $3, '', $4, $5, $6, 'running')",
            &[
                &run.id,
                &run.kind.as_str(),
                &run.started_at,
                &run.user,
                &run.project,
                &run.documents_digest,
            ],
        )?;
        Ok(())
    }

    fn task_state(&self, id: &str, node: &str) -> Result<TaskState, StoreError> {
        let row = self.client().query_opt(
            "SELECT run_id, closed_at FROM tasks WHERE id = $1 AND node = $2",
            &[&id, &node],
        )?;
        let Some(row) = row else {
            return Ok(TaskState::NotIssued);
        };
        Ok(match row.try_get::<_, Option<String>>(1)? {
            Some(_) => TaskState::Closed,
            None => TaskState::Open {
                run_id: row.try_get(0)?,
            },
        })
    }

    fn unfinished_runs(&self) -> Result<Vec<UnfinishedRun>, StoreError> {
        let mut client = self.client();
        let runs = client.query(
            "SELECT id, kind, started_at, \"user\", project, documents_digest FROM runs
             WHERE status = 'running' ORDER BY started_at, id",
            &[],
        )?;
        let tasks = client.prepare(
            "SELECT id, node, result FROM tasks WHERE run_id = $1 ORDER BY issued_at, id",
        )?;
        let mut out = Vec::with_capacity(runs.len());
        for row in &runs {
            let run = super::running_run(row)?;
            let issued = client
                .query(&tasks, &[&run.id])?
                .iter()
                .map(|row| {
                    Ok(IssuedTask {
                        id: row.try_get(0)?,
                        node: row.try_get(1)?,
                        result: row.try_get(2)?,
                    })
                })
                .collect::<Result<Vec<_>, postgres::Error>>()?;
            out.push(UnfinishedRun { run, tasks: issued });
        }
        Ok(out)
    }

    fn settle_plan_tasks(&mut self, plan_id: &str) -> Result<(), StoreError> {
        self.client_mut().execute(
            "UPDATE tasks SET result = NULL WHERE run_id = $1 AND closed_at IS NOT NULL",
            &[&plan_id],
        )?;
        Ok(())
    }

    fn prune_tasks(&mut self, before: &str) -> Result<usize, StoreError> {
        let n = self.client_mut().execute(
            "DELETE FROM tasks WHERE closed_at IS NOT NULL AND closed_at < $1",
            &[&before],
        )?;
        Ok(rows(n))
    }

    fn has_run(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .client()
            .query_one("SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)", &[&id])?
            .try_get(0)?)
    }

    fn run_progress(&self, id: &str) -> Result<Option<crate::store::RunProgress>, StoreError> {
        let mut client = self.client();
        let Some(row) = client.query_opt("SELECT status FROM runs WHERE id = $1", &[&id])? else {
            return Ok(None);
        };
        let status: String = row.try_get(0)?;
        let tasks = client
            .query(
                "SELECT node, issued_at, closed_at FROM tasks WHERE run_id = $1
                 ORDER BY issued_at, id",
                &[&id],
            )?
            .iter()
            .map(|row| {
                Ok(crate::store::TaskProgress {
                    node: row.try_get(0)?,
                    issued_at: row.try_get(1)?,
                    closed_at: row.try_get(2)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()?;
        Ok(Some(crate::store::RunProgress {
            status: crate::store::RunStatus::parse(&status)
                .unwrap_or(crate::store::RunStatus::Complete),
            tasks,
        }))
    }

    fn open_ledger(&self) -> Result<Box<dyn TaskLedger>, StoreError> {
        Ok(Box::new(PostgresLedger::connect(&self.config)?))
    }

    fn get_secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .client()
            .query_opt("SELECT value FROM secrets WHERE name = $1", &[&name])?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    fn put_secret_if_absent(&mut self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut tx = self.client_mut().transaction()?;
        // A concurrent insert of the same name makes this one wait for its commit, then do
        // nothing; the read after it (a statement of its own) sees the winner's value.
        tx.execute(
            "INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
            &[&name, &value, &now()],
        )?;
        let stored: Vec<u8> = tx
            .query_one("SELECT value FROM secrets WHERE name = $1", &[&name])?
            .try_get(0)?;
        tx.commit()?;
        Ok(stored)
    }

    fn claim_firing(
        &mut self,
        association: &str,
        due_at: &str,
        controller: &str,
    ) -> Result<bool, StoreError> {
        let n = self.client_mut().execute(
            "INSERT INTO schedule_firings (association, due_at, controller, claimed_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (association, due_at) DO NOTHING",
            &[&association, &due_at, &controller, &now()],
        )?;
        Ok(n == 1)
    }

    fn last_firings(&self) -> Result<BTreeMap<String, String>, StoreError> {
        let rows = self.client().query(
            "SELECT association, max(due_at) FROM schedule_firings GROUP BY association",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, postgres::Error>>()?)
    }

    fn set_schedule_enabled(
        &mut self,
        association: &str,
        enabled: bool,
        by: &str,
    ) -> Result<(), StoreError> {
        // One statement each: a concurrent change of the same switch waits for the row (or,
        // for a new one, for the key) and then finds the state it left.
        let sql = if enabled {
            "UPDATE schedule_switches SET enabled = TRUE, changed_at = $2, changed_by = $3
             WHERE association = $1 AND NOT enabled"
        } else {
            "INSERT INTO schedule_switches (association, enabled, changed_at, changed_by)
             VALUES ($1, FALSE, $2, $3)
             ON CONFLICT (association) DO UPDATE SET enabled = FALSE,
                 changed_at = EXCLUDED.changed_at, changed_by = EXCLUDED.changed_by
             WHERE schedule_switches.enabled"
        };
        self.client_mut()
            .execute(sql, &[&association, &now(), &by])?;
        Ok(())
    }

    fn schedule_switches(&self) -> Result<BTreeMap<String, ScheduleSwitch>, StoreError> {
        let rows = self.client().query(
            "SELECT association, enabled, changed_at, changed_by FROM schedule_switches
             ORDER BY association",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    ScheduleSwitch {
                        enabled: row.try_get(1)?,
                        changed_at: row.try_get(2)?,
                        changed_by: row.try_get(3)?,
                    },
                ))
            })
            .collect::<Result<_, postgres::Error>>()?)
    }

    fn put_project(&mut self, project: &CurrentProject) -> Result<(), StoreError> {
        self.client_mut().execute(
            "INSERT INTO current_project (id, name, digest, files_json, stored_at)
             VALUES (1, $1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, digest = EXCLUDED.digest,
                 files_json = EXCLUDED.files_json, stored_at = EXCLUDED.stored_at",
            &[&project.name, &project.digest, &project.files_json, &now()],
        )?;
        Ok(())
    }

    fn current_project(&self) -> Result<Option<CurrentProject>, StoreError> {
        let row = self.client().query_opt(
            "SELECT name, digest, files_json FROM current_project WHERE id = 1",
            &[],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(CurrentProject {
            name: row.try_get(0)?,
            digest: row.try_get(1)?,
            files_json: row.try_get(2)?,
        }))
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn begin_run_by(&mut self, run: &RunRecord, coordinator: &str) -> Result<(), StoreError> {
        self.client_mut().execute(
            "INSERT INTO runs (id, kind, started_at, finished_at, \"user\", project,
                               documents_digest, status, coordinator)
             VALUES ($1, $2, $3, '', $4, $5, $6, 'running', $7)",
            &[
                &run.id,
                &run.kind.as_str(),
                &run.started_at,
                &run.user,
                &run.project,
                &run.documents_digest,
                &coordinator,
            ],
        )?;
        Ok(())
    }

    fn route_task(
        &mut self,
        task: &RoutedTask,
        held_by: Option<&str>,
        window_ms: i64,
        lease_ms: i64,
    ) -> Result<(), StoreError> {
        routing::route_task(self.client_mut(), task, held_by, window_ms, lease_ms)
    }

    fn claim_tasks(
        &mut self,
        controller: &str,
        nodes: &[String],
        lease_ms: i64,
    ) -> Result<Vec<ClaimedTask>, StoreError> {
        routing::claim_tasks(self.client_mut(), controller, nodes, lease_ms)
    }

    fn renew_leases(
        &mut self,
        controller: &str,
        nodes: &[String],
        lease_ms: i64,
    ) -> Result<usize, StoreError> {
        routing::renew_leases(self.client_mut(), controller, nodes, lease_ms)
    }

    fn release_tasks(&mut self, controller: &str, node: &str) -> Result<usize, StoreError> {
        routing::release_tasks(self.client_mut(), controller, node)
    }

    fn close_routed(
        &mut self,
        id: &str,
        node: &str,
        result: &str,
    ) -> Result<RoutedClose, StoreError> {
        routing::close_routed(self.client_mut(), id, node, result, &now())
    }

    fn routed_state(&self, id: &str) -> Result<RoutedState, StoreError> {
        routing::routed_state(&mut self.client(), id)
    }

    fn abandon_task(&mut self, id: &str) -> Result<Option<String>, StoreError> {
        routing::abandon_task(self.client_mut(), id)
    }

    fn withdraw_unclaimed(&mut self, id: &str) -> Result<bool, StoreError> {
        routing::withdraw_unclaimed(self.client_mut(), id)
    }

    fn recover_orphaned_runs(
        &mut self,
        grace_ms: i64,
        build: &mut BuildInterrupted<'_>,
    ) -> Result<Vec<String>, StoreError> {
        routing::recover_orphaned_runs(self.client_mut(), grace_ms, build)
    }

    fn listen(&self) -> Result<Box<dyn StoreListener>, StoreError> {
        Ok(Box::new(routing::PgListener::new(self.config.clone())))
    }
}

/// PostgreSQL's [`TaskLedger`]: a client of its own, one transaction per batch.
struct PostgresLedger {
    client: Client,
    issue: Statement,
    withdraw: Statement,
    close: Statement,
    route: Statement,
    routed_already: Statement,
    answer: Statement,
    /// How it connected, to connect again after the server closed the connection.
    config: postgres::Config,
}

impl PostgresLedger {
    /// The ledger's own connection, with its statements prepared.
    fn connect(config: &postgres::Config) -> Result<PostgresLedger, StoreError> {
        let mut client = config.connect(NoTls).map_err(|err| StoreError::Database {
            database: describe(config),
            reason: error_text(&err),
        })?;
        let issue = client.prepare(
            "INSERT INTO tasks (id, node, run_id, issued_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING",
        )?;
        let withdraw = client
            .prepare("DELETE FROM tasks WHERE id = $1 AND closed_at IS NULL AND result IS NULL")?;
        let close = client.prepare(
            "UPDATE tasks SET closed_at = $1, result = $2
             WHERE id = $3 AND node = $4 AND closed_at IS NULL",
        )?;
        let route = client.prepare(&routing::insert_routed_sql())?;
        let routed_already = client.prepare(
            "SELECT 1 FROM tasks WHERE id = $1 AND node = $2 AND run_id = $3 AND payload = $4",
        )?;
        let answer = client.prepare(routing::STORE_RESULT)?;
        Ok(PostgresLedger {
            client,
            issue,
            withdraw,
            close,
            route,
            routed_already,
            answer,
            config: config.clone(),
        })
    }
}

impl TaskLedger for PostgresLedger {
    fn apply(&mut self, ops: &[&LedgerOp]) -> Result<Vec<Result<bool, String>>, StoreError> {
        // A connection the server closed is replaced, with its statements, before the batch
        // (the batch that found it closed failed whole, and was not acknowledged).
        if self.client.is_closed() {
            *self = PostgresLedger::connect(&self.config)?;
        }
        let mut tx = self.client.transaction()?;
        let mut out = Vec::with_capacity(ops.len());
        // What the batch announces when it commits: nodes with routed tasks for the claimers,
        // stored results for their coordinators (one notice per thousand or so, not per task).
        let mut routed_to: Vec<&str> = Vec::new();
        let mut answered: Vec<&str> = Vec::new();
        for op in ops {
            // A failed statement aborts the whole transaction in PostgreSQL, so an id issued
            // twice is no statement error here: the conflict is skipped and reported.
            let done = match op {
                LedgerOp::Issue {
                    id,
                    node,
                    run_id,
                    issued_at,
                } => match tx.execute(&self.issue, &[id, node, run_id, issued_at])? {
                    1 => Ok(true),
                    _ => Err(format!("task {id} was issued already")),
                },
                LedgerOp::Withdraw { id } => Ok(tx.execute(&self.withdraw, &[id])? == 1),
                LedgerOp::Close {
                    id,
                    node,
                    result,
                    at,
                } => Ok(tx.execute(&self.close, &[at, result, id, node])? == 1),
                LedgerOp::Route {
                    task,
                    held_by,
                    window_ms,
                    lease_ms,
                } => {
                    let params: [&(dyn postgres::types::ToSql + Sync); 8] = [
                        &task.id,
                        &task.node,
                        &task.run_id,
                        &task.issued_at,
                        &task.payload,
                        window_ms,
                        held_by,
                        lease_ms,
                    ];
                    if tx.execute(&self.route, &params)? == 1 {
                        if held_by.is_none() {
                            routed_to.push(&task.node);
                        }
                        Ok(true)
                    } else if tx
                        .query_opt(
                            &self.routed_already,
                            &[&task.id, &task.node, &task.run_id, &task.payload],
                        )?
                        .is_some()
                    {
                        // The same task again: a batch tried again after its commit's answer
                        // was lost with the connection.
                        Ok(true)
                    } else {
                        Err(format!("task {} was issued already", task.id))
                    }
                }
                LedgerOp::Answer {
                    id,
                    node,
                    result,
                    at,
                } => {
                    let stored = tx.execute(&self.answer, &[id, node, at, result])? == 1;
                    if stored {
                        answered.push(id);
                    }
                    Ok(stored)
                }
            };
            out.push(done);
        }
        routed_to.sort_unstable();
        routed_to.dedup();
        routing::announce_tasks(&mut tx, &routed_to)?;
        routing::announce_results(&mut tx, &answered)?;
        tx.commit()?;
        Ok(out)
    }
}
