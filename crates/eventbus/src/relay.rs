//! The outbox relay: moves a service's committed outbox rows to the sink, oldest first,
//! and marks them published. A crash between publishing and marking publishes a batch
//! again; sinks and consumers make that harmless (event ids are unique).

use crate::{BoxFuture, BusError, EventSink, Record};
use chrono::{DateTime, Utc};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use store::{Db, Scope, Tx, execute, on_tx};
use tokio::sync::watch;
use uuid::Uuid;

pub const PUBLISHED: &str = "meditrack_outbox_published_total";
pub const PUBLISH_LATENCY: &str = "meditrack_outbox_publish_latency_seconds";
pub const BACKLOG: &str = "meditrack_outbox_backlog";
pub const PURGED: &str = "meditrack_outbox_purged_total";

/// How often published rows past their retention are looked for, and how many of the
/// oldest rows one look considers (`store::outbox::purge_published`).
const PURGE_EVERY: Duration = Duration::from_secs(600);
const PURGE_WINDOW: i64 = 1_000;
/// How often a relay counts its backlog for the gauge, at most.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// The oldest unpublished outbox rows, `$1` of them. The envelope is read as text on both
/// backends (JSONB on PostgreSQL).
const PENDING: &str =
    "SELECT position, topic, event_key, event_id, CAST(envelope AS TEXT), created_at FROM outbox
     WHERE published_at IS NULL ORDER BY position LIMIT $1";

/// An outbox row to publish: position, topic, key, event id, envelope, created at.
type Pending = (i64, String, String, Uuid, String, DateTime<Utc>);

fn records(rows: &[Pending]) -> Vec<Record> {
    rows.iter()
        .map(|(_, topic, key, id, payload, _)| Record {
            topic: topic.clone(),
            key: key.clone(),
            event_id: *id,
            payload: payload.clone(),
        })
        .collect()
}

/// Something done at most once a period: at the first ask, then at the first ask a period
/// after it was last done.
#[derive(Debug)]
struct Cadence {
    period: Duration,
    next: std::sync::Mutex<Option<Instant>>,
}

impl Cadence {
    fn new(period: Duration) -> Self {
        Self {
            period,
            next: std::sync::Mutex::new(None),
        }
    }

    /// Whether it is due at `now`; when it is, it is next due a period later.
    fn take(&self, now: Instant) -> bool {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        if next.is_some_and(|next| now < next) {
            return false;
        }
        *next = Some(now + self.period);
        true
    }
}

/// The most outbox rows one round publishes. A round waits for two commits (the sink's,
/// then marking the rows published, which on SQLite queues behind the service's other
/// writes), so its length, not its size, bounds the rate: under HL7 batches at 500 rows a
/// round the lab's relay published about 7,200 events a second and fell behind.
const BATCH: i64 = 2_000;

#[derive(Clone)]
pub struct OutboxRelay {
    service: &'static str,
    db: Db,
    sink: Arc<dyn EventSink>,
    batch: i64,
    /// When published rows are next purged; at the relay's first round.
    next_purge: Arc<std::sync::Mutex<Instant>>,
    /// When the backlog is counted for its gauge: at the relay's first round, then once
    /// a [`COUNT_EVERY`] at most.
    count: Arc<Cadence>,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("service", &self.service)
            .field("batch", &self.batch)
            .finish()
    }
}

impl OutboxRelay {
    pub fn new(service: &'static str, db: Db, sink: Arc<dyn EventSink>) -> Self {
        Self {
            service,
            db,
            sink,
            batch: BATCH,
            next_purge: Arc::new(std::sync::Mutex::new(Instant::now())),
            count: Arc::new(Cadence::new(COUNT_EVERY)),
        }
    }

    /// Publishes one batch; returns how many events it published. Now and then, first
    /// deletes published rows past their retention ([`Self::purge_when_due`]).
    pub async fn publish_pending(&self) -> Result<usize, BusError> {
        self.purge_when_due().await;
        // A plain read first: an idle relay must not take the write lock every few ms.
        // The relay publishes every tenant's events, so it reads across tenants. The
        // gauge's count reads up to `COUNT_CAP` rows, which under HL7 batches on
        // PostgreSQL took 8 ms a round: it is counted once a second at most, and in
        // between one row tells whether there is anything to publish.
        let counting = self.count.take(Instant::now());
        const PENDING_ROWS: &str = "outbox WHERE published_at IS NULL";
        let sql = match counting {
            true => crate::capped_count(PENDING_ROWS),
            false => crate::counted_to(PENDING_ROWS, 1),
        };
        let mut read = self.db.read_in(Scope::AllTenants).await?;
        let backlog: i64 = on_tx!(&mut read, |c| {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
                .fetch_one(c)
                .await
        })?;
        read.commit().await?;
        if counting || backlog == 0 {
            metrics::gauge!(BACKLOG, "service" => self.service).set(backlog as f64);
        }
        if backlog == 0 {
            return Ok(0);
        }
        if let Db::Sqlite(db) = &self.db {
            return self.publish_sqlite(db).await;
        }
        let mut tx = self.db.begin_in(Scope::AllTenants).await?;
        if !lead(&mut tx, self.service).await? {
            tx.commit().await?;
            return Ok(0);
        }
        let rows = self.pending(&mut tx).await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let mut tx = publish_leading(tx, self.sink.as_ref(), &records(&rows)).await?;
        // Exactly the rows published: on PostgreSQL a lower position can commit after a
        // higher one, so a range could mark a row nobody published.
        let backend = tx.backend();
        let sql = format!(
            "UPDATE outbox SET published_at = {} WHERE position IN ({})",
            store::bulk::params(backend, 1, 1),
            store::bulk::params(backend, 2, rows.len())
        );
        let now = Utc::now();
        execute!(&mut tx, {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(now);
            for (position, ..) in &rows {
                q = q.bind(*position);
            }
            q
        })?;
        tx.commit().await?;
        Ok(self.published(&rows, now))
    }

    /// Deletes published rows older than `store::outbox::keep_published`, the oldest
    /// window of them: every [`PURGE_EVERY`], and at the next round again while a window
    /// comes back wholly deleted. A failure is logged and waits for the next time; it
    /// does not hold up publishing. On PostgreSQL every process's relay may do it: the
    /// deletes are of rows nobody reads again.
    async fn purge_when_due(&self) {
        let now = Instant::now();
        let due = |next: &Instant| now >= *next;
        if !due(&self
            .next_purge
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
        {
            return;
        }
        let before = Utc::now() - store::outbox::keep_published();
        let next = match store::outbox::purge_published(&self.db, before, PURGE_WINDOW).await {
            Ok(purged) => {
                metrics::counter!(PURGED, "service" => self.service).increment(purged);
                if purged == PURGE_WINDOW as u64 {
                    now
                } else {
                    now + PURGE_EVERY
                }
            }
            Err(e) => {
                tracing::warn!(service = self.service, error = %e, "purging published outbox rows failed");
                now + PURGE_EVERY
            }
        };
        *self
            .next_purge
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = next;
    }

    /// [`Self::publish_pending`] on SQLite: the batch is read beside the writers (a direct
    /// read, `SqliteDb::read_blocking`) and marked by a direct write ([`store::direct`]).
    /// In a writer's turn, as on PostgreSQL, the relay held the database's write lock
    /// while it published (the embedded log's fsync, a broker's acknowledgement), and
    /// every writer of the service waited, the audit trail's among them. A SQLite database has one hub process, with one relay per
    /// service, so no other relay publishes these rows meanwhile.
    async fn publish_sqlite(&self, db: &store::SqliteDb) -> Result<usize, BusError> {
        let batch = self.batch;
        let rows = db
            .read_blocking(move |c| {
                c.prepare_cached(PENDING)?
                    .query_map([batch], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            store::direct_read::at(r, 5)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<Pending>>>()
            })
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        self.sink.publish(&records(&rows)).await?;
        let now = Utc::now();
        let positions = rows.iter().map(|(position, ..)| *position).collect();
        store::outbox::mark_published_direct(db, positions, now).await?;
        Ok(self.published(&rows, now))
    }

    /// The oldest unpublished rows, a batch of them.
    async fn pending(&self, tx: &mut Tx) -> Result<Vec<Pending>, BusError> {
        Ok(on_tx!(tx, |c| {
            sqlx::query_as(PENDING).bind(self.batch).fetch_all(c).await
        })?)
    }

    /// Records a published batch in the metrics; returns its size.
    fn published(&self, rows: &[Pending], now: DateTime<Utc>) -> usize {
        record_published(self.service, rows.iter().map(|(.., at)| *at), now)
    }
}

impl Relay for OutboxRelay {
    fn name(&self) -> &'static str {
        self.service
    }

    fn batch(&self) -> usize {
        self.batch as usize
    }

    fn publish_batch(&self) -> BoxFuture<'_, Result<usize, BusError>> {
        Box::pin(self.publish_pending())
    }
}

/// Records a batch of `service`'s events, created at `created`, published at `now`, in the
/// metrics; returns its size.
pub fn record_published(
    service: &'static str,
    created: impl Iterator<Item = DateTime<Utc>>,
    now: DateTime<Utc>,
) -> usize {
    let mut count = 0;
    for at in created {
        let latency = (now - at).to_std().unwrap_or_default();
        metrics::histogram!(PUBLISH_LATENCY, "service" => service).record(latency.as_secs_f64());
        count += 1;
    }
    metrics::counter!(PUBLISHED, "service" => service).increment(count as u64);
    count
}

/// Something that moves committed events to a sink a batch at a time: the outbox relay,
/// and the audit trail's, which publishes its entries from the trail itself.
pub trait Relay: Send + Sync + std::fmt::Debug {
    /// Whose events, for logs.
    fn name(&self) -> &'static str;
    /// The most events one batch publishes.
    fn batch(&self) -> usize;
    /// Publishes one batch; returns how many events it published.
    fn publish_batch(&self) -> BoxFuture<'_, Result<usize, BusError>>;
}

/// How long a relay waits for new events once it has caught up.
pub const IDLE_POLL: Duration = Duration::from_millis(100);

/// Runs `relay` until `shutdown` turns true; the batch under way is finished first. A full
/// batch is followed by the next at once; a failure by a growing pause.
pub async fn run(relay: &dyn Relay, mut shutdown: watch::Receiver<bool>) {
    let mut failures = 0u32;
    while !*shutdown.borrow() {
        let pause = match relay.publish_batch().await {
            Ok(n) if n >= relay.batch() => {
                failures = 0;
                continue;
            }
            Ok(_) => {
                failures = 0;
                IDLE_POLL
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(relay = relay.name(), error = %e, failures, "relay failed; retrying");
                backoff(failures)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!(relay = relay.name(), "relay stopped");
}

/// 100 ms doubling to at most 10 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(7))).min(Duration::from_secs(10))
}

/// Whether this relay of `name` is the one that publishes, until `tx` ends. On PostgreSQL
/// several processes relay one database: one publishes at a time, so batches never overtake
/// each other and one key's events keep their order; the others find the lock taken.
pub async fn lead(tx: &mut Tx, name: &str) -> Result<bool, BusError> {
    let Tx::Postgres(t) = tx else {
        return Ok(true);
    };
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(lock_key(name))
        .fetch_one(&mut **t)
        .await?)
}

/// Publishes `records` while `tx` holds the relay's lead ([`lead`]). If the sink fails,
/// `tx` ends at once ([`Tx::rollback`]): left to end when its connection is next used, it
/// could keep the lead from this relay's own retry.
pub async fn publish_leading(
    tx: Tx,
    sink: &dyn EventSink,
    records: &[Record],
) -> Result<Tx, BusError> {
    match sink.publish(records).await {
        Ok(()) => Ok(tx),
        Err(e) => {
            if let Err(end) = tx.rollback().await {
                tracing::warn!(error = %end, "a relay's transaction did not roll back");
            }
            Err(e)
        }
    }
}

fn lock_key(service: &str) -> i64 {
    // Stable across processes and releases (unlike std's hasher).
    service.bytes().fold(0x6f75_7462_6f78_i64, |h, b| {
        h.wrapping_mul(31).wrapping_add(i64::from(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backlog_is_counted_at_the_first_round_and_then_once_a_period() {
        let count = Cadence::new(Duration::from_secs(1));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert!(count.take(at(0)), "the first round counts");
        assert!(!count.take(at(0)));
        assert!(!count.take(at(999)));
        assert!(count.take(at(1_000)), "a period later it counts again");
        assert!(!count.take(at(1_500)));
        assert!(
            count.take(at(2_600)),
            "the next period runs from the last count"
        );
        assert!(!count.take(at(3_500)));
    }
}
