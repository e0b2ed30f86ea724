//! Database plumbing shared by every service: a pool over SQLite (the embedded default) or
//! PostgreSQL, migrations, transactions and the transactional outbox.
//!
//! Services write one statement and run it on either backend through [`on_pool!`] and
//! [`on_tx!`]: the statement is written once and type-checked against both drivers.
//! The SQL that runs on both is kept to the common subset (`$N` placeholders,
//! `ON CONFLICT`, `RETURNING`, row values); where the dialects differ, migrations differ.

pub mod app_role;
pub mod bulk;
mod checkpointer;
pub mod copy_text;
pub mod db;
pub mod deferred_indexes;
pub mod direct;
pub mod direct_read;
pub mod error;
pub mod group_commit;
pub mod inbox;
pub mod migrate;
pub mod outbox;
pub mod statistics;
pub mod tenant_read;

pub use app_role::{APP_ROLE, open};
pub use db::{Backend, Db, Scope, SqliteDb, SqliteTx, StoreConfig, Tx};
pub use deferred_indexes::DeferredIndexes;
pub use error::DbError;
pub use migrate::{Migration, MigrationSet, migrate};
pub use statistics::analyze;

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

/// Runs `$body`, one read statement, with `$c` bound to where it reads the rows of `$scope`,
/// yielding `Result<_, DbError>`. On PostgreSQL that is a read-only transaction, since
/// row-level security takes the tenant from it. On SQLite it is the pool: one statement
/// reads one snapshot by itself, and the `BEGIN` and `COMMIT` around it were two more trips
/// to the connection's thread (a third of a GET's). Two statements that must agree with
/// each other take [`Db::read_in`] instead.
#[macro_export]
macro_rules! on_read {
    ($db:expr, $scope:expr, |$c:ident| $body:expr) => {
        async {
            match $db {
                $crate::Db::Sqlite(db) => {
                    let $c = &**db;
                    $body.map_err($crate::DbError::from)
                }
                db @ $crate::Db::Postgres(_) => {
                    let mut tx = db.read_in($scope).await?;
                    let out = $crate::on_tx!(&mut tx, |$c| $body)?;
                    tx.commit().await?;
                    Ok::<_, $crate::DbError>(out)
                }
            }
        }
    };
}
