//! Checkpoints of a SQLite file's write-ahead log, on a thread of their own.
//!
//! A checkpoint copies the pages committed to the WAL back into the database file and
//! fsyncs it. SQLite runs one on the connection whose commit takes the WAL past
//! `wal_autocheckpoint` pages (1,000 by default): that commit, and every writer queued
//! behind it, waits for the copy. Under the audit trail's group commits (about 500 a
//! second while GET patient is measured) that was several checkpoints a second, each
//! copying pages the next groups dirty again anyway (the tips of the trail's indexes).
//! Alternating runs with the threshold at 20,000 pages, still on the commit path: POST
//! patient 1,774–1,943/s → 2,187–2,353/s and GET's p95 14–15 ms → 10–11 ms, but a
//! larger p99, the commits that then copied 20,000 pages. So the copy runs here, every
//! [`INTERVAL`], beside the writers: a `PASSIVE` checkpoint neither waits for nor blocks
//! them. The connections keep an autocheckpoint at [`BACKSTOP_PAGES`], far above what an
//! interval adds, so that the WAL stays bounded should this thread fall behind.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// How often the thread checkpoints.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// `wal_autocheckpoint` of every connection that writes: a commit checkpoints only past
/// this many pages in the WAL (200 MB of 4 KB pages).
pub(crate) const BACKSTOP_PAGES: u32 = 50_000;

#[derive(Debug, Default)]
struct State {
    stopped: Mutex<bool>,
    wake: Condvar,
    /// What the thread's last checkpoint found: frames in the WAL, and frames of them in
    /// the database file once it was done.
    last: Mutex<Option<(i64, i64)>>,
}

/// The thread checkpointing one file; it ends when this is dropped.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    state: Arc<State>,
}

impl Checkpointer {
    pub(crate) fn start(path: PathBuf, interval: Duration) -> Self {
        let state = Arc::new(State::default());
        let theirs = state.clone();
        let name = "sqlite-checkpoint".to_owned();
        if let Err(e) = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(&path, interval, &theirs))
        {
            // Without the thread, the backstop's autocheckpoint still bounds the WAL.
            tracing::warn!(error = %e, "no checkpoint thread; commits checkpoint instead");
        }
        Self { state }
    }

    /// What the last checkpoint found: frames in the WAL, and how many of them are in
    /// the database file.
    #[cfg(test)]
    pub(crate) fn last(&self) -> Option<(i64, i64)> {
        *self
            .state
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        *self
            .state
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.state.wake.notify_all();
    }
}

fn run(path: &std::path::Path, interval: Duration, state: &State) {
    let mut conn = None;
    loop {
        let stopped = state.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (stopped, _) = state
            .wake
            .wait_timeout_while(stopped, interval, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        if *stopped {
            return;
        }
        drop(stopped);
        let c = match &conn {
            Some(c) => c,
            None => match crate::direct::open_with(path, "") {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "the checkpoint thread cannot open its database");
                    continue;
                }
            },
        };
        // (busy, frames in the WAL, frames of them in the database file)
        match c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok(found) => {
                *state.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(found);
            }
            Err(e) => {
                tracing::warn!(error = %e, "a checkpoint failed; trying again next interval");
                conn = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::tests::{db, sqlite};
    use std::time::Instant;

    /// Polls `f` until it holds, for up to ten seconds.
    async fn eventually(mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn commits_checkpoint_only_past_the_backstop_and_the_thread_copies_their_pages() {
        let (db, dir) = db("checkpoint-thread").await;
        let sqlite = sqlite(&db);
        // More pages than SQLite's default autocheckpoint (1,000).
        sqlite
            .write_direct(|tx| {
                let blob = vec![7u8; 3000];
                for n in 0..2000 {
                    tx.execute(
                        "INSERT INTO t (id, at, n) VALUES (?1, ?2, ?3)",
                        rusqlite::params![
                            uuid::Uuid::now_v7(),
                            String::from_utf8(blob.clone()).unwrap(),
                            n
                        ],
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let autocheckpoint = |sql| async move {
            let n: i64 = sqlx::query_scalar(sql).fetch_one(&**sqlite).await.unwrap();
            n
        };
        assert_eq!(
            autocheckpoint("PRAGMA wal_autocheckpoint").await,
            i64::from(BACKSTOP_PAGES)
        );
        let direct: i64 = sqlite
            .write_direct(|tx| tx.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(direct, i64::from(BACKSTOP_PAGES));
        assert!(
            eventually(|| matches!(sqlite.last_checkpoint(), Some((wal, copied)) if wal > 1000 && copied == wal)).await,
            "the thread copied the commit's pages: {:?}",
            sqlite.last_checkpoint()
        );
        drop(db);
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn the_thread_ends_when_its_checkpointer_is_dropped() {
        let (db, dir) = db("checkpoint-stop").await;
        let checkpointer = Checkpointer::start(dir.join("t.db"), Duration::from_millis(10));
        let state = Arc::downgrade(&checkpointer.state);
        assert!(eventually(|| checkpointer.last().is_some()).await);
        drop(checkpointer);
        assert!(
            eventually(|| state.upgrade().is_none()).await,
            "the thread still runs"
        );
        drop(db);
        std::fs::remove_dir_all(dir).ok();
    }
}
