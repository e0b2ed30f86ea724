//! Database plumbing shared by every service: a pool over SQLite (the embedded default) or
//! PostgreSQL, migrations, transactions and the transactional outbox.
//!
//! Services write one statement and run it on either backend through [`on_pool!`] and
//! [`on_tx!`]: the statement is written once and type-checked against both drivers.
//! The SQL that runs on both is kept to the common subset (`$N` placeholders,
//! `ON CONFLICT`, `RETURNING`, row values); where the dialects differ, migrations differ.

pub mod app_role;
pub mod bulk;
pub mod db;
pub mod error;
pub mod inbox;
pub mod migrate;
pub mod outbox;

pub use app_role::{APP_ROLE, open};
pub use db::{Backend, Db, Scope, SqliteDb, SqliteTx, StoreConfig, Tx};
pub use error::DbError;
pub use migrate::{Migration, MigrationSet, migrate};

/// Runs `$body` with `$c` bound to the pool of whichever backend `$db` is.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$c:ident| $body:expr) => {
        match $db {
            $crate::Db::Sqlite(db) => {
                let $c = &**db;
                $body
            }
            $crate::Db::Postgres(pool) => {
                let $c = pool;
                $body
            }
        }
    };
}

/// Runs `$body` with `$c` bound to the connection of the transaction `$tx` (a `&mut Tx`).
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            $crate::Tx::Sqlite(tx) => {
                let $c = tx.conn();
                $body
            }
            $crate::Tx::Postgres(tx) => {
                let $c = &mut **tx;
                $body
            }
        }
    };
}

/// Executes `$query` (a `sqlx::query(…).bind(…)` chain) in the transaction `$tx` on either
/// backend, yielding `Result<rows_affected, sqlx::Error>`.
#[macro_export]
macro_rules! execute {
    ($tx:expr, $query:expr) => {
        $crate::on_tx!($tx, |c| $query.execute(c).await.map(|r| r.rows_affected()))
    };
}
