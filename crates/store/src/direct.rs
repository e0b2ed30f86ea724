//! Writes on SQLite that run whole on one thread, on a connection of their own.
//!
//! Through sqlx, each statement is a round trip between the async task and the driver's
//! thread for the connection, and on this 2-core machine each round trip is a thread
//! wake-up (tens of microseconds under load). A writer that only appends, whose
//! transaction is a fixed sequence of statements and is the whole of its caller's wait,
//! pays for those trips on every request: the audit trail, whose batch of entries every
//! audited request waits for, made GET patient a third as fast as without it. A direct
//! write is one trip: the whole transaction runs on a blocking thread, with rusqlite over
//! the same SQLite library as sqlx.
//!
//! Direct writes take a turn from the database's writers ([`crate::group_commit`]) and
//! commit the open group first, so in this process they never meet the group's lock;
//! another process's writers they meet in SQLite's busy handler, as every writer does.
//! Values are stored as sqlx stores them ([`time`], UUIDs as 16-byte blobs, JSON as text),
//! so rows written either way read back either way.

use crate::DbError;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The connection of a database's direct writes, opened at the first.
#[derive(Debug, Clone)]
pub(crate) struct DirectConn {
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
}

impl DirectConn {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            conn: Arc::default(),
        }
    }
}

impl crate::SqliteDb {
    /// Runs `write` in one transaction (`BEGIN IMMEDIATE`) on the direct connection, on a
    /// blocking thread, and commits it; when this returns `Ok`, the write is durable
    /// (`synchronous = FULL`, as for every connection). An error rolls it all back.
    pub async fn write_direct<T, F>(&self, write: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let turn = self.writer.solo().await?;
        let direct = self.direct.clone();
        tokio::task::spawn_blocking(move || {
            // Held until the transaction has ended, even if the caller stopped waiting.
            let _turn = turn;
            let mut slot = direct.conn.lock().unwrap_or_else(|p| p.into_inner());
            let result = run(&mut slot, &direct.path, write);
            if result.is_err() {
                // Its state after a failure is unknown to us: the next write opens another.
                *slot = None;
            }
            result
        })
        .await
        .map_err(|_| DbError::Invariant("a direct write's thread panicked"))?
        .map_err(DbError::from)
    }
}

fn run<T>(
    slot: &mut Option<Connection>,
    path: &Path,
    write: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let conn = match slot {
        Some(conn) => conn,
        None => slot.insert(open(path)?),
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = write(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// The file exists (migrations made it, in WAL mode, which the file keeps); the settings
/// are those of the sqlx connections ([`crate::Db::connect_sqlite`]).
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(crate::db::BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(conn)
}

/// A time as sqlx stores a `DateTime<Utc>` in SQLite.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Db, Scope, on_tx};

    async fn db(name: &str) -> (Db, PathBuf) {
        let dir = std::env::temp_dir().join(format!("store-{name}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::connect_sqlite(dir.join("t.db"), 2).await.unwrap();
        sqlx::raw_sql("CREATE TABLE t (id BLOB PRIMARY KEY, at TEXT NOT NULL, n INTEGER)")
            .execute(&**sqlite(&db))
            .await
            .unwrap();
        (db, dir)
    }

    fn sqlite(db: &Db) -> &crate::SqliteDb {
        match db {
            Db::Sqlite(s) => s,
            Db::Postgres(_) => unreachable!(),
        }
    }

    #[tokio::test]
    async fn a_direct_write_reads_back_through_sqlx_with_the_same_types() {
        let (db, dir) = db("direct-types").await;
        let (id, at) = (uuid::Uuid::now_v7(), Utc::now());
        sqlite(&db)
            .write_direct(move |tx| {
                tx.execute(
                    "INSERT INTO t (id, at, n) VALUES (?1, ?2, ?3)",
                    rusqlite::params![id.as_bytes().as_slice(), time(at), 7],
                )
            })
            .await
            .unwrap();
        let mut tx = db.read_in(Scope::AllTenants).await.unwrap();
        let (read_id, read_at, n): (uuid::Uuid, DateTime<Utc>, i64) =
            on_tx!(&mut tx, |c| sqlx::query_as("SELECT id, at, n FROM t")
                .fetch_one(c)
                .await)
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!((read_id, read_at, n), (id, at, 7));
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_failed_direct_write_leaves_nothing_and_the_next_one_works() {
        let (db, dir) = db("direct-rollback").await;
        let failed = sqlite(&db)
            .write_direct(|tx| {
                tx.execute("INSERT INTO t (id, at) VALUES (x'01', 'a')", [])?;
                tx.execute("INSERT INTO t (id, at) VALUES (x'01', 'b')", [])
            })
            .await;
        assert!(failed.is_err());
        sqlite(&db)
            .write_direct(|tx| tx.execute("INSERT INTO t (id, at) VALUES (x'02', 'c')", []))
            .await
            .unwrap();
        let ats: Vec<String> = sqlx::query_scalar("SELECT at FROM t")
            .fetch_all(&**sqlite(&db))
            .await
            .unwrap();
        assert_eq!(ats, ["c"]);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_direct_write_commits_the_open_group_first_and_both_are_kept() {
        let (db, dir) = db("direct-group").await;
        // A group writer's turn has ended, its group still open (not yet committed).
        let mut tx = db.begin().await.unwrap();
        crate::execute!(
            &mut tx,
            sqlx::query("INSERT INTO t (id, at) VALUES (x'01', 'group')")
        )
        .unwrap();
        let group = tokio::spawn(tx.commit());
        sqlite(&db)
            .write_direct(|tx| tx.execute("INSERT INTO t (id, at) VALUES (x'02', 'direct')", []))
            .await
            .unwrap();
        group.await.unwrap().unwrap();
        let ats: Vec<String> = sqlx::query_scalar("SELECT at FROM t ORDER BY id")
            .fetch_all(&**sqlite(&db))
            .await
            .unwrap();
        assert_eq!(ats, ["group", "direct"]);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
