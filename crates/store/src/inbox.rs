//! The inbox: which events a consumer has already applied. A consumer records an event id
//! in the same transaction as the event's effects, so a redelivered event has no second
//! effect (exactly-once effects over at-least-once delivery).

use crate::{DbError, Migration, MigrationSet, Tx};
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
