//! Group commit for SQLite writers.
//!
//! SQLite lets one transaction write at a time, and with `synchronous=FULL` every commit
//! waits for an fsync: one writer at a time, one fsync each, capped the embedded hub at
//! about 650 registrations a second (profiled: the writer's lock was busy, the CPU was
//! not). Here writers still take turns, first come first served, but each turn is a
//! savepoint inside a transaction that several turns share, and the transaction commits
//! once for all of them, so one fsync makes a whole group durable.
//!
//! - The writer that finds no group open begins one (`BEGIN IMMEDIATE`) and leads it:
//!   when its own turn ends, a task is started that queues for a turn like any writer and,
//!   when it gets one, commits the group. Everyone who queued meanwhile is in the group.
//! - A turn is `SAVEPOINT`; `commit` releases it, a rollback (or a dropped transaction)
//!   rolls back to it, so one writer's failure never touches the others' work.
//! - No writer's `commit` returns before the group's `COMMIT` did: "accepted" still means
//!   durable. If the group's commit fails, every writer of the group gets the error.
//!   Only `commit_unawaited` returns at the end of its turn (see [`crate::Tx`]).
//!
//! The commit runs in its own task so that a request whose future is dropped (a client
//! that hung up) cannot leave its group open.
//!
//! Every group runs on the same connection, kept between groups (detached from the pool,
//! so readers keep all of theirs). SQLite empties a connection's page cache whenever
//! another connection changed the file since its last transaction; with each group on
//! whichever pooled connection came next (the pool hands them out in turn), every group
//! began by reading its B-tree pages from the file again. Profiled under GET load, whose
//! audit entries are written in groups: `pread` was 5 % of the driver threads' samples,
//! 2 % with the kept connection.

use crate::DbError;
use sqlx::{Connection, SqliteConnection, SqlitePool};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// What the group's `COMMIT` came to: `None` until it ran.
type Outcome = Option<Result<(), String>>;

/// An open group between turns: its connection, inside its transaction.
struct Open {
    conn: SqliteConnection,
    done: Arc<watch::Sender<Outcome>>,
}

/// The writers of one SQLite database.
pub(crate) struct Writer {
    pool: SqlitePool,
    turns: Arc<Semaphore>,
    open: Mutex<Option<Open>>,
    /// The connection of the last group, for the next: its page cache is current. It is
    /// detached from the pool.
    spare: Mutex<Option<SqliteConnection>>,
    timeout: Duration,
    commits: AtomicU64,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

/// One writer's turn: a savepoint in its group's transaction.
pub struct WriteTx {
    writer: Arc<Writer>,
    conn: Option<SqliteConnection>,
    done: Arc<watch::Sender<Outcome>>,
    /// Whether this turn began the group, and so sees to its commit.
    leads: bool,
    turn: Option<OwnedSemaphorePermit>,
}

impl std::fmt::Debug for WriteTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx")
            .field("leads", &self.leads)
            .finish()
    }
}

const SAVEPOINT: &str = "SAVEPOINT turn";
const RELEASE: &str = "RELEASE turn";
const ROLLBACK: &str = "ROLLBACK TO turn; RELEASE turn";

impl Writer {
    /// `timeout`: how long a writer waits for its turn before failing, as SQLite's own
    /// busy timeout would have.
    pub(crate) fn new(pool: SqlitePool, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            pool,
            turns: Arc::new(Semaphore::new(1)),
            open: Mutex::new(None),
            spare: Mutex::new(None),
            timeout,
            commits: AtomicU64::new(0),
        })
    }

    async fn turn(&self) -> Result<OwnedSemaphorePermit, DbError> {
        tokio::time::timeout(self.timeout, self.turns.clone().acquire_owned())
            .await
            .map_err(|_| DbError::Sqlx(sqlx::Error::PoolTimedOut))?
            .map_err(|_| DbError::Sqlx(sqlx::Error::PoolClosed))
    }

    fn take_open(&self) -> Option<Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn put_open(&self, open: Open) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = Some(open);
    }

    fn take_spare(&self) -> Option<SqliteConnection> {
        self.spare.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Closes the kept connection, with the pool.
    pub(crate) async fn close(&self) {
        if let Some(conn) = self.take_spare() {
            let _ = conn.close().await;
        }
    }

    /// Waits for a turn and starts a savepoint in the open group, or in a new one.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<WriteTx, DbError> {
        let turn = self.turn().await?;
        let (mut conn, done, leads) = match self.take_open() {
            Some(open) => (open.conn, open.done, false),
            None => {
                let mut conn = match self.take_spare() {
                    Some(conn) => conn,
                    // Out of the pool's count: readers keep all of theirs, even a pool of one.
                    None => self.pool.acquire().await?.detach(),
                };
                sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut conn).await?;
                (conn, Arc::new(watch::channel(None).0), true)
            }
        };
        if let Err(e) = sqlx::raw_sql(SAVEPOINT).execute(&mut conn).await {
            // The group's transaction is unusable: it ends here, failed, for everyone in it.
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
            done.send_replace(Some(Err(e.to_string())));
            drop(turn);
            return Err(e.into());
        }
        Ok(WriteTx {
            writer: self.clone(),
            conn: Some(conn),
            done,
            leads,
            turn: Some(turn),
        })
    }

    /// Waits for a turn, commits the open group if there is one, and holds the turn: for a
    /// writer with a connection of its own ([`crate::direct`]), which would otherwise wait
    /// in SQLite's busy handler for the group's lock.
    pub(crate) async fn solo(&self) -> Result<OwnedSemaphorePermit, DbError> {
        let turn = self.turn().await?;
        self.commit_open().await;
        Ok(turn)
    }

    /// Commits the open group, if any: run by the group's leader once everyone who queued
    /// before it has had their turn.
    async fn commit_group(self: Arc<Self>) {
        // No timeout: the group's writers are waiting for this, and it must come.
        let Ok(_turn) = self.turns.clone().acquire_owned().await else {
            return;
        };
        self.commit_open().await;
    }

    /// Commits the open group, if any. The caller holds a turn.
    async fn commit_open(&self) {
        let Some(mut open) = self.take_open() else {
            return;
        };
        let result = sqlx::raw_sql("COMMIT")
            .execute(&mut open.conn)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        let done = open.done;
        if result.is_ok() {
            self.commits.fetch_add(1, Ordering::Relaxed);
            *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(open.conn);
        } else {
            // A connection whose transaction state is unknown does not go back to the pool.
            let _ = open.conn.close().await;
        }
        done.send_replace(Some(result));
    }

    /// Groups committed so far.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

impl WriteTx {
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        match &mut self.conn {
            Some(c) => c,
            None => unreachable!("a WriteTx holds its connection until it ends"),
        }
    }

    /// Releases the savepoint and waits until the group it joined is durable.
    pub(crate) async fn commit(self) -> Result<(), DbError> {
        let mut done = self.end().await?;
        let outcome = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| group_lost())?
            .clone();
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(DbError::Sqlx(sqlx::Error::Protocol(format!(
                "the group commit failed: {e}"
            )))),
            None => Err(group_lost()),
        }
    }

    /// Releases the savepoint and returns without waiting for the group's commit.
    pub(crate) async fn commit_unawaited(self) -> Result<(), DbError> {
        self.end().await.map(|_| ())
    }

    /// Ends the turn, its work kept, and hands back the watch on its group's outcome.
    async fn end(mut self) -> Result<watch::Receiver<Outcome>, DbError> {
        let mut conn = self.conn.take();
        let released = match &mut conn {
            Some(c) => sqlx::raw_sql(RELEASE).execute(c).await.map(|_| ()),
            None => Ok(()),
        };
        // Subscribed before the turn ends, so the group's outcome cannot be missed.
        let done = self.done.subscribe();
        if let Some(c) = conn {
            let roll_back = released.is_err();
            end_turn(
                self.writer.clone(),
                c,
                self.done.clone(),
                self.turn.take(),
                roll_back,
            )
            .await;
        }
        self.start_commit();
        released?;
        Ok(done)
    }

    fn start_commit(&mut self) {
        if std::mem::take(&mut self.leads) {
            tokio::spawn(self.writer.clone().commit_group());
        }
    }
}

fn group_lost() -> DbError {
    DbError::Sqlx(sqlx::Error::Protocol(
        "the group commit ended without an outcome".to_owned(),
    ))
}

/// Hands the group back for the next turn, rolling this turn's work back first when asked.
async fn end_turn(
    writer: Arc<Writer>,
    mut conn: SqliteConnection,
    done: Arc<watch::Sender<Outcome>>,
    turn: Option<OwnedSemaphorePermit>,
    roll_back: bool,
) {
    if roll_back && let Err(e) = sqlx::raw_sql(ROLLBACK).execute(&mut conn).await {
        // Without its savepoint the group cannot be trusted: it fails as a whole.
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
        let _ = conn.close().await;
        done.send_replace(Some(Err(e.to_string())));
        drop(turn);
        return;
    }
    writer.put_open(Open { conn, done });
    drop(turn);
}

impl Drop for WriteTx {
    /// Neither committed nor rolled back (an error returned early, or a dropped future):
    /// the turn's work is rolled back in a task, which keeps the turn until it is done.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Only at shutdown is there no runtime; the process's end then ends the group.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let writer = self.writer.clone();
            let done = self.done.clone();
            let turn = self.turn.take();
            let leads = std::mem::take(&mut self.leads);
            runtime.spawn(async move {
                end_turn(writer.clone(), conn, done, turn, true).await;
                if leads {
                    writer.commit_group().await;
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Db, Tx, execute};
    use std::time::Duration;

    async fn table() -> (Db, std::path::PathBuf) {
        table_on(4).await
    }

    async fn table_on(connections: u32) -> (Db, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("store-group-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let db = Db::connect_sqlite(dir.join("t.db"), connections)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        crate::on_pool!(&db, |c| sqlx::raw_sql(
            "CREATE TABLE rows (n INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT NOT NULL UNIQUE)"
        )
        .execute(c)
        .await
        .map(|_| ()))
        .unwrap_or_else(|e| panic!("{e}"));
        (db, dir)
    }

    async fn insert(tx: &mut Tx, who: &str) -> Result<u64, crate::DbError> {
        Ok(execute!(
            tx,
            sqlx::query("INSERT INTO rows (who) VALUES ($1)").bind(who.to_owned())
        )?)
    }

    /// What a reader outside the writers' transaction sees: committed rows only.
    async fn committed(db: &Db) -> Vec<String> {
        let rows: Vec<(String,)> =
            crate::on_pool!(db, |c| sqlx::query_as("SELECT who FROM rows ORDER BY n")
                .fetch_all(c)
                .await)
            .unwrap_or_else(|e| panic!("{e}"));
        rows.into_iter().map(|(w,)| w).collect()
    }

    fn commits(db: &Db) -> u64 {
        match db {
            Db::Sqlite(s) => s.group_commits(),
            Db::Postgres(_) => unreachable!(),
        }
    }

    /// Writers queued behind `first` while it holds its turn, one after another.
    async fn queue_behind(
        db: &Db,
        writers: &[(&'static str, bool)],
    ) -> Vec<tokio::task::JoinHandle<Result<(), crate::DbError>>> {
        let mut queued = Vec::new();
        for &(who, commit) in writers {
            let db = db.clone();
            queued.push(tokio::spawn(async move {
                let mut tx = db.begin().await?;
                insert(&mut tx, who).await?;
                if commit {
                    tx.commit().await
                } else {
                    drop(tx);
                    Ok(())
                }
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        queued
    }

    #[tokio::test]
    async fn concurrent_writers_share_commits_and_every_commit_is_visible_once_it_returns() {
        let (db, dir) = table().await;
        let mut writers = Vec::new();
        for i in 0..64 {
            let db = db.clone();
            writers.push(tokio::spawn(async move {
                let mut tx = db.begin().await?;
                insert(&mut tx, &format!("w{i}")).await?;
                tx.commit().await?;
                // Returned: committed, so a reader on another connection sees it.
                let seen = committed(&db).await;
                assert!(seen.contains(&format!("w{i}")), "w{i} after its commit");
                Ok::<_, crate::DbError>(())
            }));
        }
        for w in writers {
            w.await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(committed(&db).await.len(), 64);
        let groups = commits(&db);
        assert!(
            (1..64).contains(&groups),
            "64 writers at once should share commits: {groups} commits"
        );
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_writer_that_rolls_back_or_fails_takes_only_its_own_work_with_it() {
        let (db, dir) = table().await;
        let mut first = db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        insert(&mut first, "first")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let queued = queue_behind(
            &db,
            &[
                ("a", true),
                ("dropped", false),
                ("first", true),
                ("c", true),
            ],
        )
        .await;
        first.commit().await.unwrap_or_else(|e| panic!("{e}"));
        let outcomes: Vec<bool> = futures_outcomes(queued).await;
        // "first" again breaks the UNIQUE constraint: that writer fails, alone.
        assert_eq!(outcomes, [true, true, false, true]);
        assert_eq!(committed(&db).await, ["first", "a", "c"]);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_group_whose_leader_is_dropped_still_commits_for_the_others() {
        let (db, dir) = table().await;
        let mut leader = db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        insert(&mut leader, "leader")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let queued = queue_behind(&db, &[("x", true), ("y", true)]).await;
        // A request future dropped mid-transaction (its client hung up).
        drop(leader);
        let outcomes = tokio::time::timeout(Duration::from_secs(5), futures_outcomes(queued))
            .await
            .unwrap_or_else(|_| panic!("the group was never committed"));
        assert_eq!(outcomes, [true, true]);
        assert_eq!(committed(&db).await, ["x", "y"]);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn one_group_after_another_runs_on_the_same_connection() {
        let (db, dir) = table().await;
        // A temporary table lives on one connection only: it marks the writers'.
        let mut tx = db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        execute!(&mut tx, sqlx::query("CREATE TEMP TABLE marker (x INTEGER)"))
            .unwrap_or_else(|e| panic!("{e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        // Readers in between take pooled connections; the writers' is not among them.
        for _ in 0..3 {
            let _ = committed(&db).await;
        }
        for _ in 0..3 {
            let mut tx = db.begin().await.unwrap_or_else(|e| panic!("{e}"));
            execute!(&mut tx, sqlx::query("INSERT INTO marker (x) VALUES (1)"))
                .unwrap_or_else(|e| panic!("the next group ran on another connection: {e}"));
            tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(commits(&db), 4);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn an_unawaited_commit_returns_before_its_group_is_durable_and_commits_with_it() {
        let (db, dir) = table().await;
        let mut leader = db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        insert(&mut leader, "l")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (returned, mut unawaited_returned) = tokio::sync::oneshot::channel();
        let unawaited = {
            let db = db.clone();
            tokio::spawn(async move {
                let mut tx = db.begin().await?;
                insert(&mut tx, "u").await?;
                tx.commit_unawaited().await?;
                let _ = returned.send(());
                Ok::<_, crate::DbError>(())
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Holds the turn after the unawaited writer's, so the group cannot commit yet.
        let (hold, held) = tokio::sync::oneshot::channel::<()>();
        let last = {
            let db = db.clone();
            tokio::spawn(async move {
                let mut tx = db.begin().await?;
                insert(&mut tx, "w").await?;
                let _ = held.await;
                tx.commit().await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let leader = tokio::spawn(leader.commit());

        tokio::time::timeout(Duration::from_secs(5), &mut unawaited_returned)
            .await
            .unwrap_or_else(|_| panic!("the unawaited commit waited for its group"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            committed(&db).await.is_empty(),
            "nothing is committed while the group is still open"
        );
        let _ = hold.send(());
        for task in [unawaited, last, leader] {
            task.await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(committed(&db).await, ["l", "u", "w"]);
        assert_eq!(commits(&db), 1);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn the_kept_connection_leaves_a_pool_of_one_to_its_readers() {
        let (db, dir) = table_on(1).await;
        let mut tx = db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        insert(&mut tx, "w").await.unwrap_or_else(|e| panic!("{e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        let seen = tokio::time::timeout(Duration::from_secs(5), committed(&db))
            .await
            .unwrap_or_else(|_| panic!("the reader found no connection"));
        assert_eq!(seen, ["w"]);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }

    async fn futures_outcomes(
        handles: Vec<tokio::task::JoinHandle<Result<(), crate::DbError>>>,
    ) -> Vec<bool> {
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap_or_else(|e| panic!("{e}")).is_ok());
        }
        out
    }
}
