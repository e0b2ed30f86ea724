//! Indexes set aside while a bulk load fills empty tables. Maintaining a table's secondary
//! indexes row by row, and on PostgreSQL checking each row's foreign keys with a query of
//! its own, cost most of a bulk load: on 200,000 synthetic patients, PostgreSQL spent 47 s
//! of CPU loading them with every index in place and 21 s without, and then built all the
//! indexes again in 4 s, sorted, instead of one insertion at a time.
//!
//! Everything happens in the load's own transaction (DDL is transactional on both
//! backends): a load that fails, or a process that dies, leaves the indexes and constraints
//! exactly as they were, and no reader ever sees the tables without them, since the drop
//! holds the tables locked until the commit. A unique index or a foreign key that the
//! loaded rows break fails the rebuild, and the load with it.

use crate::{Backend, DbError, Tx, on_tx};
use sqlx::AssertSqlSafe;

/// What [`DeferredIndexes::set_aside`] dropped: the statements that build it again.
#[derive(Debug)]
pub struct DeferredIndexes {
    rebuild: Vec<String>,
    truncated: bool,
}

/// `name` quoted as an SQL identifier (our table names, never input; quoted all the same).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl DeferredIndexes {
    /// Drops, in `tx`, the secondary indexes of `tables` (those behind no primary-key or
    /// unique constraint, which stay) and, on PostgreSQL, their foreign keys, if every one
    /// of the tables is empty; returns `None`, dropping nothing, if any holds a row: an
    /// index built again over rows already there would cost more than the load saves.
    /// `tables` are in the store's schema; on PostgreSQL `tx` must be its owner's.
    ///
    /// On PostgreSQL the empty tables are also emptied by `TRUNCATE`, with every table
    /// whose foreign keys lead to them (all empty too, or nothing is truncated), so that
    /// the load may write its rows frozen ([`Self::rows_may_be_frozen`]). The tables are
    /// locked before they are found empty: a row another transaction commits meanwhile
    /// waits for the load, and is never truncated away.
    pub async fn set_aside(tx: &mut Tx, tables: &[&str]) -> Result<Option<Self>, DbError> {
        let names: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
        // On PostgreSQL: the loaded tables, then those that lead to them, all quoted.
        let mut every: Vec<String> = names.iter().map(|n| ident(n)).collect();
        if let Tx::Postgres(t) = tx {
            every.extend(referencing_tables(t, &names).await?);
            let lock = format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", every.join(", "));
            sqlx::raw_sql(AssertSqlSafe(lock)).execute(&mut **t).await?;
        }
        for table in &every[..tables.len()] {
            if holds_rows(tx, table).await? {
                return Ok(None);
            }
        }
        let (drop, rebuild) = match tx.backend() {
            Backend::Postgres => postgres_definitions(tx, &names).await?,
            Backend::Sqlite => sqlite_definitions(tx, &names).await?,
        };
        for statement in drop {
            run(tx, statement).await?;
        }
        let mut truncated = false;
        if let Tx::Postgres(_) = tx {
            let mut others_empty = true;
            for table in &every[tables.len()..] {
                others_empty &= !holds_rows(tx, table).await?;
            }
            if others_empty {
                run(tx, format!("TRUNCATE {}", every.join(", "))).await?;
                truncated = true;
            }
        }
        Ok(Some(Self { rebuild, truncated }))
    }

    /// Whether rows loaded into the tables in this transaction may be written frozen
    /// (`COPY … (FREEZE)`, [`crate::copy_text::CopyLoad::freeze`]): on PostgreSQL, when
    /// the tables were truncated in it. Frozen rows need no `VACUUM` after the load to be
    /// visible to all without a lookup; PostgreSQL marks their pages so as they are written,
    /// where a `VACUUM` would write every page of the load a second time.
    pub fn rows_may_be_frozen(&self) -> bool {
        self.truncated
    }

    /// Builds in `tx` what was dropped, indexes first, then foreign keys (each checked by
    /// one join over the loaded rows). Call it before `tx` commits.
    pub async fn rebuild(self, tx: &mut Tx) -> Result<(), DbError> {
        if let Tx::Postgres(t) = tx {
            // Each index is built by one sort of its keys; under the default 64 MB the sort
            // of a million rows spills to disk. Measured at 200,000 patients: the server's
            // CPU for the seed 14.3 s -> 13.0 s. For this transaction only.
            sqlx::raw_sql(BUILD_MEMORY).execute(&mut **t).await?;
        }
        for statement in self.rebuild {
            run(tx, statement).await?;
        }
        Ok(())
    }

    /// How many indexes and constraints were set aside.
    pub fn len(&self) -> usize {
        self.rebuild.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rebuild.is_empty()
    }
}

/// Runs `statement`, one of ours, in `tx`.
async fn run(tx: &mut Tx, statement: String) -> Result<(), DbError> {
    on_tx!(&mut *tx, |c| sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(c)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// Whether `table` (an identifier, quoted) holds a row.
async fn holds_rows(tx: &mut Tx, table: &str) -> Result<bool, DbError> {
    let sql = format!("SELECT EXISTS (SELECT 1 FROM {table})");
    let any = on_tx!(&mut *tx, |c| sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(c)
        .await)?;
    Ok(any)
}

/// The tables, quoted as identifiers, whose foreign keys lead to `tables`, directly or
/// through others: those a `TRUNCATE` of `tables` must name too.
async fn referencing_tables(
    t: &mut sqlx::PgConnection,
    tables: &[String],
) -> Result<Vec<String>, DbError> {
    let found: Vec<(String,)> = sqlx::query_as(
        "WITH RECURSIVE loaded AS (
             SELECT oid FROM pg_class
             WHERE relname = ANY($1)
               AND relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
         ), referencing(oid) AS (
             SELECT oid FROM loaded
             UNION
             SELECT c.conrelid FROM pg_constraint c JOIN referencing r ON c.confrelid = r.oid
             WHERE c.contype = 'f'
         )
         SELECT oid::regclass::text FROM referencing
         WHERE oid NOT IN (SELECT oid FROM loaded) ORDER BY 1",
    )
    .bind(tables)
    .fetch_all(t)
    .await?;
    Ok(found.into_iter().map(|(name,)| name).collect())
}

/// What each index build may sort in memory on PostgreSQL, for the loading transaction.
const BUILD_MEMORY: &str = "SET LOCAL maintenance_work_mem TO '256MB'";

/// The statements that drop the secondary indexes and foreign keys of `tables`, foreign
/// keys first, and those that build them again, indexes first.
async fn postgres_definitions(
    tx: &mut Tx,
    tables: &[String],
) -> Result<(Vec<String>, Vec<String>), DbError> {
    let Tx::Postgres(t) = tx else {
        return Err(DbError::Invariant("PostgreSQL catalogs on another backend"));
    };
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
         FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
         WHERE t.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
           AND t.relname = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                           WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
         ORDER BY 1",
    )
    .bind(tables)
    .fetch_all(&mut **t)
    .await?;
    let foreign_keys: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, quote_ident(c.conname), pg_get_constraintdef(c.oid)
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
         WHERE c.contype = 'f'
           AND t.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
           AND t.relname = ANY($1)
         ORDER BY 1, 2",
    )
    .bind(tables)
    .fetch_all(&mut **t)
    .await?;
    let mut drop = Vec::new();
    let mut rebuild = Vec::new();
    for (table, name, _) in &foreign_keys {
        drop.push(format!("ALTER TABLE {table} DROP CONSTRAINT {name}"));
    }
    for (name, definition) in indexes {
        drop.push(format!("DROP INDEX {name}"));
        rebuild.push(definition);
    }
    for (table, name, definition) in foreign_keys {
        rebuild.push(format!(
            "ALTER TABLE {table} ADD CONSTRAINT {name} {definition}"
        ));
    }
    Ok((drop, rebuild))
}

/// SQLite keeps an index's `CREATE INDEX` as written; those behind a constraint have none.
/// Its foreign keys are part of their tables and stay: a check there is one lookup in the
/// parent's primary key, in the same process.
async fn sqlite_definitions(
    tx: &mut Tx,
    tables: &[String],
) -> Result<(Vec<String>, Vec<String>), DbError> {
    let mut drop = Vec::new();
    let mut rebuild = Vec::new();
    for table in tables {
        let indexes: Vec<(String, String)> = on_tx!(&mut *tx, |c| sqlx::query_as(
            "SELECT name, sql FROM sqlite_master
             WHERE type = 'index' AND sql IS NOT NULL AND tbl_name = ? ORDER BY name"
        )
        .bind(table)
        .fetch_all(c)
        .await)?;
        for (name, definition) in indexes {
            drop.push(format!("DROP INDEX {}", ident(&name)));
            rebuild.push(definition);
        }
    }
    Ok((drop, rebuild))
}
