//! The inbox: which events a consumer has already applied. A consumer records an event id
//! in the same transaction as the event's effects, so a redelivered event has no second
//! effect (exactly-once effects over at-least-once delivery).

use crate::{Backend, DbError, Migration, MigrationSet, Tx};
use chrono::Utc;
use uuid::Uuid;

pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: "inbox",
    sqlite: &[Migration {
        version: 1,
        name: "create inbox",
        sql: "CREATE TABLE inbox (
            consumer TEXT NOT NULL,
            event_id BLOB NOT NULL,
            processed_at TEXT NOT NULL,
            PRIMARY KEY (consumer, event_id)
        );",
    }],
    postgres: &[Migration {
        version: 1,
        name: "create inbox",
        sql: "CREATE TABLE inbox (
            consumer VARCHAR(100) NOT NULL,
            event_id UUID NOT NULL,
            processed_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (consumer, event_id)
        );",
    }],
};

/// Whether `consumer` has applied `event_id`.
pub async fn seen(db: &crate::Db, consumer: &str, event_id: Uuid) -> Result<bool, DbError> {
    let found: Option<i32> = crate::on_pool!(db, |c| sqlx::query_scalar(
        "SELECT 1 FROM inbox WHERE consumer = $1 AND event_id = $2"
    )
    .bind(consumer)
    .bind(event_id)
    .fetch_optional(c)
    .await)?;
    Ok(found.is_some())
}

/// Records that `consumer` applies each of `event_ids` in `tx`, in one statement per chunk;
/// returns those it had not applied before (an id twice in `event_ids` is returned once).
pub async fn record_many(
    tx: &mut Tx,
    consumer: &str,
    event_ids: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, DbError> {
    let mut fresh = std::collections::HashSet::with_capacity(event_ids.len());
    let backend = tx.backend();
    let now = Utc::now();
    for chunk in event_ids.chunks(crate::bulk::rows_per_statement(backend)) {
        if backend == Backend::Sqlite {
            fresh.extend(record_sqlite(tx, consumer, chunk, now).await?);
            continue;
        }
        let sql = format!(
            "INSERT INTO inbox (consumer, event_id, processed_at) VALUES {} ON CONFLICT DO NOTHING RETURNING event_id",
            crate::bulk::placeholders(backend, chunk.len(), 3)
        );
        let inserted: Vec<Uuid> = crate::on_tx!(&mut *tx, |c| {
            let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()));
            for id in chunk {
                q = q.bind(consumer).bind(*id).bind(now);
            }
            q.fetch_all(c).await
        })?;
        fresh.extend(inserted);
    }
    Ok(fresh)
}

/// [`record_many`]'s chunk on SQLite, where `tx` holds the database's one write lock, so
/// nothing can record an id between its two statements: the ids already recorded are
/// read first (usually none), and the rest inserted without `RETURNING`. Through sqlx
/// each row returned is a message from the connection's thread, and a batch of events
/// is hundreds of rows: in a profile of the hub under HL7 batches the insert with
/// `RETURNING` took 5 ms per batch. PostgreSQL needs `RETURNING`: there, two consumers'
/// transactions could both read an id as new before either commits.
async fn record_sqlite(
    tx: &mut Tx,
    consumer: &str,
    chunk: &[Uuid],
    now: chrono::DateTime<Utc>,
) -> Result<std::collections::HashSet<Uuid>, DbError> {
    let backend = Backend::Sqlite;
    // `?` throughout: sqlx numbers a bare `?` by the bare ones before it, so after a `$1`
    // the first `?` would be bound the consumer again.
    let sql = format!(
        "SELECT event_id FROM inbox WHERE consumer = ? AND event_id IN ({})",
        crate::bulk::params(backend, 2, chunk.len())
    );
    let seen: Vec<Uuid> = crate::on_tx!(&mut *tx, |c| {
        let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str())).bind(consumer);
        for id in chunk {
            q = q.bind(*id);
        }
        q.fetch_all(c).await
    })?;
    let seen: std::collections::HashSet<Uuid> = seen.into_iter().collect();
    let mut fresh = std::collections::HashSet::with_capacity(chunk.len());
    // In the batch's order, each id once.
    let new: Vec<Uuid> = chunk
        .iter()
        .filter(|id| !seen.contains(*id) && fresh.insert(**id))
        .copied()
        .collect();
    if new.is_empty() {
        return Ok(fresh);
    }
    let sql = format!(
        "INSERT INTO inbox (consumer, event_id, processed_at) VALUES {}",
        crate::bulk::placeholders(backend, new.len(), 3)
    );
    crate::execute!(&mut *tx, {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for id in &new {
            q = q.bind(consumer).bind(*id).bind(now);
        }
        q
    })?;
    Ok(fresh)
}

/// Records that `consumer` applies `event_id` in `tx`. `false` means it already had.
pub async fn record(tx: &mut Tx, consumer: &str, event_id: Uuid) -> Result<bool, DbError> {
    let inserted = crate::execute!(
        tx,
        sqlx::query("INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(consumer)
            .bind(event_id)
            .bind(Utc::now())
    )?;
    Ok(inserted == 1)
}
