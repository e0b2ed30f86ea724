//! The transactional outbox: events are written in the same transaction as the state they
//! describe, so both commit or neither does. A relay publishes them onward (issue 4).

use crate::{DbError, Migration, MigrationSet, Tx};
use chrono::{DateTime, Utc};
use events::EventEnvelope;
use sqlx::types::Json;

pub const MIGRATIONS: MigrationSet = MigrationSet {
    component: "outbox",
    sqlite: &[Migration {
        version: 1,
        name: "create outbox",
        sql: "CREATE TABLE outbox (
            position INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id BLOB NOT NULL UNIQUE,
            event_type TEXT NOT NULL,
            topic TEXT NOT NULL,
            tenant_id TEXT NOT NULL,
            event_key TEXT NOT NULL,
            envelope TEXT NOT NULL,
            created_at TEXT NOT NULL,
            published_at TEXT
        );
        CREATE INDEX idx_outbox_unpublished ON outbox (position) WHERE published_at IS NULL;",
    }],
    postgres: &[
        Migration {
        version: 1,
        name: "create outbox",
        sql: "CREATE TABLE outbox (
            position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id UUID NOT NULL UNIQUE,
            event_type VARCHAR(100) NOT NULL,
            topic VARCHAR(100) NOT NULL,
            tenant_id VARCHAR(50) NOT NULL,
            event_key VARCHAR(100) NOT NULL,
            envelope JSONB NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            published_at TIMESTAMPTZ
        );
        CREATE INDEX idx_outbox_unpublished ON outbox (position) WHERE published_at IS NULL;",
    },
        // Events carry their tenant's data: a transaction writes only its own tenant's, and
        // only the relay, which publishes every tenant's, reads them all (`Scope::AllTenants`).
        Migration {
            version: 2,
            name: "row-level security",
            sql: "ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
            CREATE POLICY tenant_rows ON outbox
                USING (tenant_id = current_setting('app.current_tenant', true) OR current_setting('app.all_tenants', true) = 'on');",
        },
    ],
};

/// Appends `events` inside `tx`. Events without a known topic are a programming error and
/// fail the whole transaction rather than being dropped.
pub async fn append(tx: &mut Tx, events: &[EventEnvelope]) -> Result<(), DbError> {
    // Several rows per statement: the audit trail appends a whole group commit's events.
    for chunk in events.chunks(crate::bulk::rows_per_statement(tx.backend())) {
        let sql = insert_sql(tx.backend(), 1, chunk.len());
        crate::execute!(
            &mut *tx,
            bind(sqlx::query(sqlx::AssertSqlSafe(sql.as_str())), chunk)
        )?;
    }
    Ok(())
}

/// Parameters of each event's row.
pub const COLUMNS: usize = 7;

/// The INSERT of events, up to `VALUES`: [`COLUMNS`] parameters a row, which [`bind`]
/// binds. For a writer that stores its own rows and their events in one statement.
pub const INSERT: &str =
    "INSERT INTO outbox (event_id, event_type, topic, tenant_id, event_key, envelope, created_at)";

/// The INSERT of `count` events, its parameters numbered from the `first`th.
fn insert_sql(backend: crate::Backend, first: usize, count: usize) -> String {
    format!(
        "{INSERT} VALUES {}",
        crate::bulk::placeholders_from(backend, first, count, COLUMNS)
    )
}

/// Binds `events` to the parameters of [`insert_sql`] (or of [`INSERT`]).
pub fn bind<'q, DB>(
    mut q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    events: &'q [EventEnvelope],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    uuid::Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Json<&'q EventEnvelope>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let now = Utc::now();
    for event in events {
        q = q
            .bind(event.event_id.as_uuid())
            .bind(event.event_type.as_str())
            .bind(topic_of(event))
            .bind(event.tenant_id.as_str())
            .bind(event.key.as_str())
            .bind(Json(event))
            .bind(now);
    }
    q
}

/// [`append`] in a direct SQLite write ([`crate::direct`]), the rows stored as `append`
/// stores them.
pub fn append_direct(
    tx: &rusqlite::Transaction<'_>,
    events: &[EventEnvelope],
) -> rusqlite::Result<()> {
    let now = crate::direct::time(Utc::now());
    let mut insert = tx.prepare_cached(
        "INSERT INTO outbox (event_id, event_type, topic, tenant_id, event_key, envelope, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for event in events {
        let topic = topic_of(event);
        let envelope = serde_json::to_string(event)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        insert.execute(rusqlite::params![
            event.event_id.as_uuid().as_bytes().as_slice(),
            event.event_type,
            topic,
            event.tenant_id,
            event.key,
            envelope,
            now,
        ])?;
    }
    Ok(())
}

/// Marks the outbox rows at `positions` published, in a direct write ([`crate::direct`]).
pub async fn mark_published_direct(
    db: &crate::SqliteDb,
    positions: Vec<i64>,
    at: DateTime<Utc>,
) -> Result<(), DbError> {
    let sql = format!(
        "UPDATE outbox SET published_at = ? WHERE position IN ({})",
        crate::bulk::params(crate::Backend::Sqlite, 2, positions.len())
    );
    db.write_direct(move |tx| {
        let at = crate::direct::time(at);
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(positions.len() + 1);
        params.push(&at);
        params.extend(positions.iter().map(|p| p as &dyn rusqlite::ToSql));
        tx.prepare(&sql)?.execute(params.as_slice()).map(|_| ())
    })
    .await
}

fn topic_of(event: &EventEnvelope) -> &str {
    event.topic().map(|t| t.name()).unwrap_or("unrouted")
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub position: i64,
    pub topic: String,
    pub envelope: Json<EventEnvelope>,
}

/// Rows after `after`, every tenant's, oldest first: for tests that look at the outbox.
pub async fn read(db: &crate::Db, after: i64, limit: i64) -> Result<Vec<OutboxRow>, DbError> {
    let mut tx = db.read_in(crate::Scope::AllTenants).await?;
    let rows = crate::on_tx!(&mut tx, |c| {
        sqlx::query_as(
            "SELECT position, topic, envelope FROM outbox WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(c)
        .await
    })?;
    tx.commit().await?;
    Ok(rows)
}

/// How long a published event stays in its service's outbox. The backbone holds it after
/// that, for its topic's retention (000 §3.1); in the outbox it only waited to be
/// published, and kept for good, every change a service ever made would stay in its
/// database a second time.
pub fn keep_published() -> chrono::TimeDelta {
    chrono::TimeDelta::days(7)
}

/// Deletes the rows published before `before` among the `window` oldest rows, every
/// tenant's; how many. Only the oldest rows are looked at: published rows leave from the
/// front, so the statement costs the same however large the outbox, and a call that
/// deletes the whole window says there may be more.
pub async fn purge_published(
    db: &crate::Db,
    before: DateTime<Utc>,
    window: i64,
) -> Result<u64, DbError> {
    let mut tx = db.begin_in(crate::Scope::AllTenants).await?;
    let purged = crate::execute!(
        &mut tx,
        sqlx::query(
            "DELETE FROM outbox WHERE position IN (
                SELECT position FROM (SELECT position, published_at FROM outbox ORDER BY position LIMIT $2) AS oldest
                WHERE published_at < $1)",
        )
        .bind(before)
        .bind(window)
    )?;
    tx.commit().await?;
    Ok(purged)
}
