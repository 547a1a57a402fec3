//! Copying an embedded SQLite store into an empty PostgreSQL store, for a controller that moves
//! to a shared database (`steward serve --migrate-from DIR`).
//!
//! Both stores are at [`STORE_VERSION`](crate::store::STORE_VERSION) (each was opened, and so
//! migrated, first), so their tables and columns are the same by construction: both come from
//! one list of versions. The copy reads the table and column names from SQLite and the column
//! types from PostgreSQL, so a new schema version needs nothing here.
//!
//! The `secrets` table is not the copy's: an embedded store keeps none (its CA and admin token
//! are files), and the caller stores the shared CA and admin token, sealed, before the copy.
//!
//! **Architecture Invariant:** the copy is one PostgreSQL transaction, under steward's lock for
//! it: it lands whole or not at all, and two controllers migrating at once copy once (the
//! second finds the store no longer empty). It writes only into a store that holds no row in
//! any table; it never merges two fleets.

use std::collections::BTreeMap;

use postgres::types::ToSql;
use postgres::{Client, Transaction};
use rusqlite::types::Value;

use crate::store::StoreError;

/// The first key of steward's advisory locks, as in `postgres.rs`.
const LOCK_SPACE: i32 = 0x5354_5744;
/// The second key of the lock a copy holds.
const COPY_LOCK: i32 = 2;

/// The table the copy leaves to its caller.
const SECRETS: &str = "secrets";

/// What a copy moved: rows per table, in copy order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// `(table, rows)`, in the order the tables were copied.
    pub tables: Vec<(String, u64)>,
}

impl Copied {
    /// Rows copied from `table` (0 when it was not copied).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(name, _)| name == table)
            .map_or(0, |(_, n)| *n)
    }
}

/// One value as PostgreSQL takes it, converted from SQLite's by the target column's type.
#[derive(Debug)]
enum PgValue {
    /// SQL NULL, typed as its column is (the client checks a parameter's Rust type against
    /// the column's even for NULL).
    Null(NullOf),
    BigInt(i64),
    Int(i32),
    Bool(bool),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
}

/// The type of a NULL, by its column.
#[derive(Debug)]
enum NullOf {
    BigInt,
    Int,
    Bool,
    Float,
    Text,
    Bytes,
}

impl PgValue {
    fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            PgValue::Null(NullOf::BigInt) => &None::<i64>,
            PgValue::Null(NullOf::Int) => &None::<i32>,
            PgValue::Null(NullOf::Bool) => &None::<bool>,
            PgValue::Null(NullOf::Float) => &None::<f64>,
            PgValue::Null(NullOf::Text) => &None::<String>,
            PgValue::Null(NullOf::Bytes) => &None::<Vec<u8>>,
            PgValue::BigInt(n) => n,
            PgValue::Int(n) => n,
            PgValue::Bool(b) => b,
            PgValue::Float(x) => x,
            PgValue::Text(s) => s,
            PgValue::Bytes(b) => b,
        }
    }
}

/// Copies every row of the SQLite store `source` into the PostgreSQL store of `target`, in one
/// transaction. `shown` names the source in errors.
///
/// Refused, with nothing written, when the target holds any row already, or when a table or
/// column of the source has no counterpart in the target (a store of another version).
pub(crate) fn sqlite_into_postgres(
    source: &rusqlite::Connection,
    target: &mut Client,
    shown: &str,
) -> Result<Copied, StoreError> {
    let tables = source_tables(source)?;
    let mut tx = target.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_SPACE, &COPY_LOCK],
    )?;
    let target_columns = target_columns(&mut tx)?;
    let mut held = Vec::new();
    for name in target_columns.keys().filter(|name| *name != SECRETS) {
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", quote(name)), &[])?
            .try_get(0)?;
        if n > 0 {
            held.push(format!("{name}: {n}"));
        }
    }
    if !held.is_empty() {
        return Err(StoreError::NotEmpty {
            held: held.join(", "),
        });
    }
    let mut copied = Copied::default();
    for table in tables.iter().filter(|name| *name != SECRETS) {
        let columns = target_columns
            .get(table)
            .ok_or_else(|| StoreError::CopyMismatch {
                source_store: shown.to_string(),
                reason: format!("table `{table}` is not in the PostgreSQL store"),
            })?;
        let n = copy_table(source, &mut tx, table, columns, shown)?;
        copied.tables.push((table.clone(), n));
    }
    // Generated ids (identity columns, and the sequences of `BIGSERIAL` ones such as the audit
    // log's) go on from the largest id copied, as SQLite's AUTOINCREMENT would: the next row
    // appended gets an id of its own, never one copied.
    let identities = tx.query(
        "SELECT table_name, column_name FROM information_schema.columns
         WHERE table_schema = current_schema()
           AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')",
        &[],
    )?;
    for row in identities {
        let (table, column): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        let max: Option<i64> = tx
            .query_one(
                &format!("SELECT max({}) FROM {}", quote(&column), quote(&table)),
                &[],
            )?
            .try_get(0)?;
        if let Some(max) = max {
            tx.execute(
                "SELECT setval(pg_get_serial_sequence($1, $2), $3, true)",
                &[&quote(&table), &column, &max],
            )?;
        }
    }
    tx.commit()?;
    Ok(copied)
}

/// The source's tables, in the order they were created (a table is created after those it
/// refers to).
fn source_tables(source: &rusqlite::Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = source.prepare(
        "SELECT name FROM sqlite_master
         WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
    )?;
    let names = stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

/// Each table of the target (but steward's version row) with its columns' types.
fn target_columns(
    tx: &mut Transaction<'_>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, StoreError> {
    let rows = tx.query(
        "SELECT c.table_name, c.column_name, c.data_type
         FROM information_schema.columns c
         JOIN information_schema.tables t
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
           AND c.table_name <> 'steward_store'",
        &[],
    )?;
    let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for row in rows {
        let (table, column, kind): (String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        tables.entry(table).or_default().insert(column, kind);
    }
    Ok(tables)
}

/// Copies one table, row by row through one prepared statement; returns the rows copied.
fn copy_table(
    source: &rusqlite::Connection,
    tx: &mut Transaction<'_>,
    table: &str,
    target: &BTreeMap<String, String>,
    shown: &str,
) -> Result<u64, StoreError> {
    let mut stmt = source.prepare(&format!("SELECT * FROM \"{}\"", table.replace('"', "\"\"")))?;
    let columns: Vec<String> = stmt.column_names().map(String::from).collect();
    let mut kinds = Vec::with_capacity(columns.len());
    for column in &columns {
        let kind = target.get(column).ok_or_else(|| StoreError::CopyMismatch {
            source_store: shown.to_string(),
            reason: format!("column `{table}.{column}` is not in the PostgreSQL store"),
        })?;
        kinds.push(kind.clone());
    }
    let insert = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote(table),
        columns
            .iter()
            .map(|c| quote(c))
            .collect::<Vec<_>>()
            .join(", "),
        (1..=columns.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let insert = tx.prepare(&insert)?;
    let mut rows = stmt.query([])?;
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for (idx, kind) in kinds.iter().enumerate() {
            let value: Value = row.get(idx)?;
            values.push(
                convert(value, kind).map_err(|reason| StoreError::CopyMismatch {
                    source_store: shown.to_string(),
                    reason: format!("{table}.{}: {reason}", columns[idx]),
                })?,
            );
        }
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(PgValue::as_sql).collect();
        tx.execute(&insert, &params)?;
        n += 1;
    }
    Ok(n)
}

/// SQLite's value as the PostgreSQL column of type `kind` takes it.
fn convert(value: Value, kind: &str) -> Result<PgValue, String> {
    Ok(match (value, kind) {
        (Value::Null, "bigint") => PgValue::Null(NullOf::BigInt),
        (Value::Null, "integer") => PgValue::Null(NullOf::Int),
        (Value::Null, "boolean") => PgValue::Null(NullOf::Bool),
        (Value::Null, "double precision") => PgValue::Null(NullOf::Float),
        (Value::Null, "bytea") => PgValue::Null(NullOf::Bytes),
        (Value::Null, _) => PgValue::Null(NullOf::Text),
        (Value::Integer(n), "bigint") => PgValue::BigInt(n),
        (Value::Integer(n), "integer") => {
            PgValue::Int(i32::try_from(n).map_err(|_| format!("{n} does not fit an integer"))?)
        }
        (Value::Integer(n), "boolean") => PgValue::Bool(n != 0),
        (Value::Integer(n), "double precision") => PgValue::Float(n as f64),
        (Value::Real(x), "double precision") => PgValue::Float(x),
        (Value::Text(s), "text") => PgValue::Text(s),
        (Value::Blob(b), "bytea") => PgValue::Bytes(b),
        (Value::Text(s), "bytea") => PgValue::Bytes(s.into_bytes()),
        (value, kind) => {
            let found = match value {
                Value::Null => "null",
                Value::Integer(_) => "an integer",
                Value::Real(_) => "a real",
                Value::Text(_) => "text",
                Value::Blob(_) => "a blob",
            };
            return Err(format!("{found} where PostgreSQL's column is {kind}"));
        }
    })
}

/// An identifier, double-quoted.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
