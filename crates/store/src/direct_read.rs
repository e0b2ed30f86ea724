//! Reads on SQLite that run on the calling thread, on a connection of their own.
//!
//! Through sqlx, a read is a trip to the connection's thread and back, and sqlx then pings
//! the connection on its way back to the pool (`PoolConnection::return_to_pool`, no
//! setting turns it off), a second trip: four thread wake-ups for one statement. Profiling
//! the hub under GET patient put sqlx's connection threads at a third of its CPU, most of
//! it waking up and going back to sleep. A point read (a row by its key, from a
//! page-cached file) costs tens of microseconds, less than those wake-ups, so a direct read
//! runs it where it is asked for, on a pooled rusqlite connection over the same SQLite
//! library as sqlx. Only for reads whose cost does not grow with the data: a search or a
//! scan would hold an async worker thread, and goes through sqlx.
//!
//! In WAL mode a reader never waits for a writer: each statement reads one snapshot, the
//! last commit before it began. Values read back as sqlx wrote them (UUIDs as 16-byte
//! blobs, times as RFC 3339 text; rusqlite's `uuid` and `chrono` conversions read both).

use crate::DbError;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// A time as sqlx and [`crate::direct::time`] store it, read back: RFC 3339 parsed
/// directly. rusqlite's own chrono conversion parses a format string each time, which
/// profiling put at a sixth of the CPU of reading a lab order with its results.
pub fn at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    let value = row.get_ref(i)?;
    match value.as_str().map(DateTime::parse_from_rfc3339) {
        Ok(Ok(t)) => Ok(t.with_timezone(&Utc)),
        // Any other form SQLite may hold: rusqlite's own reading.
        _ => row.get(i),
    }
}

/// As [`at`], for a column that may be NULL.
pub fn maybe_at(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    match row.get_ref(i)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => at(row, i).map(Some),
    }
}

/// Idle connections kept at most: one per concurrent reader, which on this runtime is at
/// most one per worker thread; a burst opens more and closes them after it.
const IDLE: usize = 8;

#[derive(Debug, Clone)]
pub(crate) struct DirectReads {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl DirectReads {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Arc::default(),
        }
    }

    fn take(&self) -> rusqlite::Result<Connection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < IDLE {
            idle.push(conn);
        }
    }
}

/// Opened read-write so that the WAL's shared memory works as for any connection, and then
/// refused every write (`query_only`): a direct read cannot change the database.
fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
    crate::direct::open_with(path, "PRAGMA query_only = ON;")
}

impl crate::SqliteDb {
    /// Runs `read`, a point read, on this thread on a pooled connection. Prepare its
    /// statement with `prepare_cached`: each connection keeps what it prepared.
    pub fn read_direct<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        let conn = self.reads.take()?;
        let result = read(&conn);
        // A connection left inside a transaction by its read would give later reads an old
        // snapshot; it is closed instead.
        if conn.is_autocommit() {
            self.reads.give_back(conn);
        }
        Ok(result?)
    }

    /// [`Self::read_direct`] on a blocking thread, for a read of many rows that its caller
    /// bounds (a batch of events): through sqlx each row is a message from the
    /// connection's thread to the task, and a profile of the hub under HL7 batches put
    /// the relay's and the event log's batch reads at 30 and 5 ms each that way. On a
    /// blocking thread, so that an async worker does not hold the requests behind it
    /// meanwhile.
    pub async fn read_blocking<T, F>(&self, read: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.read_direct(read))
            .await
            .map_err(|_| DbError::Invariant("a direct read's thread panicked"))?
    }

    /// A read transaction on a pooled connection, for point reads that must see one
    /// snapshot: see [`Snapshot`].
    pub fn snapshot(&self) -> Result<Snapshot, DbError> {
        let conn = self.reads.take()?;
        conn.prepare_cached("BEGIN")?.execute([])?;
        Ok(Snapshot {
            conn: Some(conn),
            reads: self.reads.clone(),
        })
    }
}

/// Point reads that must agree with each other (an order and its children, read to be
/// changed and written back at the version read), on one pooled connection in one read
/// transaction: every statement sees the snapshot the first one saw. Deref to the
/// connection; the transaction ends when this is dropped. Held across `.await`s only by
/// code whose awaits are reads on it, so a worker thread never waits on another task.
#[derive(Debug)]
pub struct Snapshot {
    conn: Option<Connection>,
    reads: DirectReads,
}

impl std::ops::Deref for Snapshot {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
            .as_ref()
            .expect("a snapshot's connection until it is dropped")
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            // Only reads ran: ending the transaction either way releases the snapshot.
            && conn
                .prepare_cached("COMMIT")
                .and_then(|mut s| s.execute([]))
                .is_ok()
        {
            self.reads.give_back(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::direct::tests::sqlite;
    use crate::{Db, SqliteDb};
    use rusqlite::OptionalExtension;

    async fn db(name: &str) -> Db {
        crate::direct::tests::db(name).await.0
    }

    fn n_of(db: &SqliteDb, id: uuid::Uuid) -> Option<i64> {
        db.read_direct(|c| {
            c.prepare_cached("SELECT n FROM t WHERE id = $1")?
                .query_row([id], |r| r.get(0))
                .optional()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn times_read_back_as_sqlx_and_direct_writes_stored_them() {
        let db = db("direct-read-times").await;
        let written = chrono::Utc::now();
        let (by_sqlx, by_direct, other_form) = (
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
        );
        sqlx::query("INSERT INTO t (id, at, n) VALUES ($1, $2, 1)")
            .bind(by_sqlx)
            .bind(written)
            .execute(&**sqlite(&db))
            .await
            .unwrap();
        for (id, at) in [
            (by_direct, crate::direct::time(written)),
            (other_form, "2026-01-02 03:04:05".to_owned()),
        ] {
            sqlx::query("INSERT INTO t (id, at, n) VALUES ($1, $2, NULL)")
                .bind(id)
                .bind(at)
                .execute(&**sqlite(&db))
                .await
                .unwrap();
        }
        let read = |id: uuid::Uuid| {
            sqlite(&db)
                .read_direct(|c| {
                    c.query_row("SELECT at FROM t WHERE id = $1", [id], |r| super::at(r, 0))
                })
                .unwrap()
        };
        assert_eq!(read(by_sqlx), written, "to the nanosecond");
        assert_eq!(read(by_direct), written);
        assert_eq!(read(other_form).to_rfc3339(), "2026-01-02T03:04:05+00:00");
        let none = sqlite(&db)
            .read_direct(|c| {
                c.query_row("SELECT n FROM t WHERE id = $1", [by_direct], |r| {
                    super::maybe_at(r, 0)
                })
            })
            .unwrap();
        assert_eq!(none, None);
    }

    #[tokio::test]
    async fn a_direct_read_sees_what_sqlx_wrote_and_each_later_commit() {
        let db = db("direct-read").await;
        let (id, at) = (uuid::Uuid::now_v7(), chrono::Utc::now());
        sqlx::query("INSERT INTO t (id, at, n) VALUES ($1, $2, 1)")
            .bind(id)
            .bind(at)
            .execute(&**sqlite(&db))
            .await
            .unwrap();
        let read_at: chrono::DateTime<chrono::Utc> = sqlite(&db)
            .read_direct(|c| c.query_row("SELECT at FROM t WHERE id = $1", [id], |r| r.get(0)))
            .unwrap();
        assert_eq!(read_at, at);
        assert_eq!(n_of(sqlite(&db), id), Some(1));
        // The pooled connection, its statement cached, sees the next commit too.
        sqlx::query("UPDATE t SET n = 2 WHERE id = $1")
            .bind(id)
            .execute(&**sqlite(&db))
            .await
            .unwrap();
        assert_eq!(n_of(sqlite(&db), id), Some(2));
        assert_eq!(n_of(sqlite(&db), uuid::Uuid::now_v7()), None);
    }

    #[tokio::test]
    async fn a_direct_read_cannot_write() {
        let db = db("direct-read-only").await;
        let refused = sqlite(&db).read_direct(|c| {
            c.execute(
                "INSERT INTO t (id, at, n) VALUES (x'00', '2026-01-01T00:00:00Z', 1)",
                [],
            )
        });
        assert!(refused.is_err());
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&**sqlite(&db))
            .await
            .unwrap();
        assert_eq!(rows, 0);
    }

    #[tokio::test]
    async fn a_read_that_leaves_a_transaction_open_does_not_pin_later_reads_to_its_snapshot() {
        let db = db("direct-read-tx").await;
        let id = uuid::Uuid::now_v7();
        sqlite(&db)
            .read_direct(|c| {
                c.execute_batch("BEGIN")?;
                c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))
            })
            .unwrap();
        sqlx::query("INSERT INTO t (id, at, n) VALUES ($1, '2026-01-01T00:00:00Z', 3)")
            .bind(id)
            .execute(&**sqlite(&db))
            .await
            .unwrap();
        assert_eq!(n_of(sqlite(&db), id), Some(3));
    }

    #[tokio::test]
    async fn a_snapshot_reads_as_of_its_first_read_until_it_is_dropped() {
        let db = db("direct-read-snapshot").await;
        let insert = |n: i64| {
            sqlx::query("INSERT INTO t (id, at, n) VALUES ($1, '2026-01-01T00:00:00Z', $2)")
                .bind(uuid::Uuid::now_v7())
                .bind(n)
        };
        insert(1).execute(&**sqlite(&db)).await.unwrap();
        let count = |c: &rusqlite::Connection| {
            c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        let snapshot = sqlite(&db).snapshot().unwrap();
        assert_eq!(count(&snapshot), 1);
        insert(2).execute(&**sqlite(&db)).await.unwrap();
        // A commit after the snapshot's first read is not in it...
        assert_eq!(count(&snapshot), 1);
        // ...but a read outside it sees the commit,
        assert_eq!(sqlite(&db).read_direct(|c| Ok(count(c))).unwrap(), 2);
        drop(snapshot);
        // and so does the next snapshot.
        assert_eq!(count(&sqlite(&db).snapshot().unwrap()), 2);
    }
}
