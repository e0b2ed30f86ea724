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
//! Direct writes are group-committed, as the sqlx writers are ([`crate::group_commit`]):
//! they queue, and one blocking thread at a time takes a turn from the database's writers
//! (committing the open sqlx group first, so in this process direct writes never meet its
//! lock), then runs every queued write, each in a savepoint of one transaction, and
//! commits once. One fsync makes the whole group durable, and a write
//! that fails rolls back to its savepoint without touching the others. Another process's
//! writers they meet in SQLite's busy handler, as every writer does.
//! Values are stored as sqlx stores them ([`time`], UUIDs as 16-byte blobs, JSON as text),
//! so rows written either way read back either way.

use crate::DbError;
use crate::group_commit::Writer;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// The most writes one group commits: a bound on how long the writers of other kinds (and
/// readers of a checkpoint) wait behind one.
const MAX_GROUP: usize = 256;

/// The connection of a database's direct writes, opened at the first, and their queue.
#[derive(Debug, Clone)]
pub(crate) struct DirectConn {
    path: PathBuf,
    conn: Arc<Mutex<Option<Connection>>>,
    queue: Arc<Mutex<Queue>>,
    commits: Arc<AtomicU64>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Box<dyn Job>>,
    /// Whether a task is draining the queue; it stops when it finds the queue empty.
    draining: bool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("jobs", &self.jobs.len())
            .finish()
    }
}

impl DirectConn {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            conn: Arc::default(),
            queue: Arc::default(),
            commits: Arc::default(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job`; `true` when no task is draining the queue and the caller must start one.
    fn push(&self, job: Box<dyn Job>) -> bool {
        let mut queue = self.queue();
        queue.jobs.push(job);
        !std::mem::replace(&mut queue.draining, true)
    }

    /// `true` when the queue is empty, and then the draining task stops.
    fn idle(&self) -> bool {
        let mut queue = self.queue();
        if queue.jobs.is_empty() {
            queue.draining = false;
        }
        !queue.draining
    }

    fn take(&self) -> Vec<Box<dyn Job>> {
        let mut queue = self.queue();
        let n = queue.jobs.len().min(MAX_GROUP);
        queue.jobs.drain(..n).collect()
    }
}

impl crate::SqliteDb {
    /// Groups of direct writes committed so far.
    pub fn direct_commits(&self) -> u64 {
        self.direct.commits.load(Ordering::Relaxed)
    }

    /// Runs `write` in a savepoint of a group's transaction (`BEGIN IMMEDIATE`) on the
    /// direct connection, on a blocking thread; when this returns `Ok`, the group has
    /// committed and the write is durable (`synchronous = FULL`, as for every connection).
    /// An error rolls back this write only. If the caller stops waiting, the write still
    /// runs.
    pub async fn write_direct<T, F>(&self, write: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Queued {
            write: Some(write),
            result: None,
            reply,
        });
        if self.direct.push(job) {
            let (writer, direct) = (self.writer.clone(), self.direct.clone());
            let runtime = tokio::runtime::Handle::current();
            // Not a task: under load each wake-up of a task waits behind the requests in the
            // runtime's queues, and a group's cycle with two more of them made GET patient
            // (whose audit entries are direct writes) a third slower.
            tokio::task::spawn_blocking(move || drain(&runtime, &writer, &direct));
        }
        answer
            .await
            .map_err(|_| DbError::Invariant("a direct write's thread panicked"))?
    }
}

/// Commits the queued writes group by group until the queue is empty, on a blocking thread.
fn drain(runtime: &tokio::runtime::Handle, writer: &Writer, direct: &DirectConn) {
    let _draining = Draining(direct);
    while !direct.idle() {
        let turn = runtime.block_on(writer.solo());
        let mut jobs = direct.take();
        let turn = match turn {
            Ok(turn) => turn,
            Err(e) => {
                let failure = Failure::Turn(matches!(e, DbError::Sqlx(sqlx::Error::PoolClosed)));
                for job in jobs {
                    job.reply(Err(&failure));
                }
                continue;
            }
        };
        let committed = {
            let mut slot = direct.conn.lock().unwrap_or_else(PoisonError::into_inner);
            match run(&mut slot, &direct.path, &mut jobs) {
                Ok(committed) => {
                    if committed {
                        direct.commits.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }
                Err(e) => {
                    // Its state after a failure is unknown to us: the next group opens
                    // another.
                    *slot = None;
                    Err(e)
                }
            }
        };
        drop(turn);
        for job in jobs {
            job.reply(committed.as_ref().map(|_| ()));
        }
    }
}

/// Should the draining thread panic (the writes' own panics are caught), the next write
/// starts another instead of queueing for good; the writes it held see an error.
struct Draining<'a>(&'a DirectConn);

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.queue().draining = false;
        }
    }
}

/// A queued write, its result's type hidden.
trait Job: Send {
    /// Runs the write; `false` when it failed, and its savepoint must be rolled back.
    fn run(&mut self, tx: &Transaction<'_>) -> bool;
    /// Answers the writer once the group's commit came to `committed`.
    fn reply(self: Box<Self>, committed: Result<(), &Failure>);
}

struct Queued<T, F> {
    write: Option<F>,
    result: Option<Result<T, DbError>>,
    reply: oneshot::Sender<Result<T, DbError>>,
}

impl<T, F> Job for Queued<T, F>
where
    T: Send,
    F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let Some(write) = self.write.take() else {
            return false;
        };
        let result = match catch_unwind(AssertUnwindSafe(|| write(tx))) {
            Ok(result) => result.map_err(DbError::from),
            Err(_) => Err(DbError::Invariant("a direct write panicked")),
        };
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn reply(self: Box<Self>, committed: Result<(), &Failure>) {
        let answer = match (self.result, committed) {
            (Some(Err(e)), _) => Err(e),
            (_, Err(failure)) => Err(failure.error()),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Ok(())) => Err(DbError::Invariant("a direct write did not run")),
        };
        let _ = self.reply.send(answer);
    }
}

/// Why a whole group failed, for each of its writers.
#[derive(Debug)]
enum Failure {
    Sqlite(rusqlite::ffi::Error, Option<String>),
    Other,
    /// No turn came in time, or (`true`) the database was closed.
    Turn(bool),
}

impl Failure {
    fn error(&self) -> DbError {
        match self {
            Failure::Sqlite(code, message) => {
                DbError::Direct(rusqlite::Error::SqliteFailure(*code, message.clone()))
            }
            Failure::Other => DbError::Invariant("a direct write's group failed"),
            Failure::Turn(true) => DbError::Sqlx(sqlx::Error::PoolClosed),
            Failure::Turn(false) => DbError::Sqlx(sqlx::Error::PoolTimedOut),
        }
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(code, message) => Failure::Sqlite(code, message),
            _ => Failure::Other,
        }
    }
}

const SAVEPOINT: &str = "SAVEPOINT direct";
const RELEASE: &str = "RELEASE direct";
const ROLLBACK: &str = "ROLLBACK TO direct; RELEASE direct";

/// Runs `jobs` in one transaction and commits: `false` if every one failed, and nothing
/// was committed. Each job but the first runs in a savepoint, so that one that fails is
/// undone alone. The first needs none: should it fail, the transaction rolls back, which
/// undoes as much, and the others start another. A savepoint copies each page its job
/// first changes into SQLite's sub-journal, which was 5 % of the hub's CPU under GET
/// patient, whose groups are one job each (the trail's batch).
fn run(
    slot: &mut Option<Connection>,
    path: &Path,
    jobs: &mut [Box<dyn Job>],
) -> Result<bool, Failure> {
    let conn = match slot {
        Some(conn) => conn,
        None => slot.insert(open(path)?),
    };
    let mut rest = jobs;
    while let Some((first, others)) = std::mem::take(&mut rest).split_first_mut() {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !first.run(&tx) {
            tx.rollback()?;
            rest = others;
            continue;
        }
        for job in others {
            tx.execute_batch(SAVEPOINT)?;
            let ok = job.run(&tx);
            tx.execute_batch(if ok { RELEASE } else { ROLLBACK })?;
        }
        tx.commit()?;
        return Ok(true);
    }
    Ok(false)
}

/// The file exists (migrations made it, in WAL mode, which the file keeps); the settings
/// are those of the sqlx connections ([`crate::Db::connect_sqlite`]).
fn open(path: &Path) -> rusqlite::Result<Connection> {
    // The savepoints' sub-journals in memory: they hold a group's pages at most. A group
    // keeps its dirty pages until its commit instead of spilling them into the WAL once
    // the page cache is full (`cache_spill`): a spilled page changed again is written
    // twice, and the commit reads the frames back for their checksums; a profile of HL7
    // batches put spilling at 6 % of the hub's CPU. A group is bounded (`MAX_GROUP`
    // writes, each bounded by its caller), and so is the memory it holds.
    let conn = open_with(
        path,
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
         PRAGMA cache_spill = OFF;",
    )?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        crate::checkpointer::BACKSTOP_PAGES,
    )?;
    Ok(conn)
}

/// A rusqlite connection to the file at `path`, waiting for locks as the sqlx connections
/// do, with `pragmas` run on it.
pub(crate) fn open_with(path: &Path, pragmas: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(crate::db::BUSY_TIMEOUT)?;
    conn.pragma_update(None, "cache_size", -crate::db::PAGE_CACHE_KIB)?;
    conn.execute_batch(pragmas)?;
    Ok(conn)
}

/// A time as sqlx stores a `DateTime<Utc>` in SQLite.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{Db, Scope, on_tx};

    /// A database of one table `t (id BLOB PRIMARY KEY, at TEXT NOT NULL, n INTEGER)`.
    pub(crate) async fn db(name: &str) -> (Db, PathBuf) {
        let dir = std::env::temp_dir().join(format!("store-{name}-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::connect_sqlite(dir.join("t.db"), 2).await.unwrap();
        sqlx::raw_sql("CREATE TABLE t (id BLOB PRIMARY KEY, at TEXT NOT NULL, n INTEGER)")
            .execute(&**sqlite(&db))
            .await
            .unwrap();
        (db, dir)
    }

    pub(crate) fn sqlite(db: &Db) -> &crate::SqliteDb {
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

    /// Every kind of connection the hub holds keeps the small page cache (see
    /// `PAGE_CACHE_KIB`): sqlx's, the direct writer's and a direct reader's.
    #[tokio::test]
    async fn every_connection_keeps_a_small_page_cache() {
        let (db, dir) = db("page-cache").await;
        let s = sqlite(&db);
        let pooled: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&**s)
            .await
            .unwrap();
        let written = s
            .write_direct(|tx| tx.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        let read = s
            .read_direct(|c| c.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0)))
            .unwrap();
        let expected = -crate::db::PAGE_CACHE_KIB;
        assert_eq!((pooled, written, read), (expected, expected, expected));
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

    /// Ten direct writes queued in order behind a sqlx writer, the `failing` one of them
    /// failing after a write of its own: one commit for the group, that write undone.
    async fn grouped_with_one_failing(failing: u8) {
        let (db, dir) = db(&format!("direct-grouped-{failing}")).await;
        // A sqlx writer holds the turn while the direct writes queue behind it.
        let held = db.begin().await.unwrap();
        let mut writes = Vec::new();
        for i in 0..10u8 {
            let s = sqlite(&db).clone();
            writes.push(tokio::spawn(async move {
                s.write_direct(move |tx| {
                    tx.execute("INSERT INTO t (id, at) VALUES (?1, 'x')", [vec![i]])?;
                    if i == failing {
                        tx.execute("INSERT INTO t (id, at) VALUES (x'00', NULL)", [])?;
                    }
                    Ok(i)
                })
                .await
            }));
            // Queued in this order.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let before = sqlite(&db).direct_commits();
        held.commit().await.unwrap();
        let mut failed = Vec::new();
        for (i, w) in (0u8..).zip(writes) {
            match w.await.unwrap() {
                Ok(n) => assert_eq!(n, i),
                Err(_) => failed.push(i),
            }
        }
        assert_eq!(failed, [failing]);
        assert_eq!(
            sqlite(&db).direct_commits() - before,
            1,
            "one group, one commit"
        );
        let ids: Vec<Vec<u8>> = sqlx::query_scalar("SELECT id FROM t ORDER BY id")
            .fetch_all(&**sqlite(&db))
            .await
            .unwrap();
        let expected: Vec<Vec<u8>> = (0..10u8)
            .filter(|i| *i != failing)
            .map(|i| vec![i])
            .collect();
        assert_eq!(ids, expected);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn direct_writes_queued_meanwhile_commit_together_and_a_failed_one_alone_is_undone() {
        grouped_with_one_failing(3).await;
    }

    #[tokio::test]
    async fn when_the_first_write_of_a_group_fails_the_others_are_kept() {
        grouped_with_one_failing(0).await;
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
