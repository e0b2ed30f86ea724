//! Publishes the trail on `audit-events` from `audit_log` itself: the trail is its own
//! outbox. Each chain's entries go out in order after the last one published
//! (`audit_published`), and the chain's mark moves once the sink has them. A crash between
//! the two publishes those entries again, with the same event ids (the entries' ids), which
//! consumers already skip.
//!
//! An outbox row per entry, as every other service writes, would double the writes of every
//! audited request, and the entries are already durable, ordered and immutable.

use crate::chain::Entry;
use crate::store::{self as trail, Behind};
use chrono::Utc;
use eventbus::relay::{BACKLOG, Relay, lead, publish_leading, record_published};
use eventbus::{BoxFuture, BusError, EventSink, Record};
use std::sync::Arc;
use store::{Db, Scope, Tx};

/// Whose events, in metrics and logs.
const NAME: &str = "audit";

/// The relay of one audit database's trail. Every process that writes the trail runs one;
/// on PostgreSQL one of them publishes at a time.
#[derive(Clone)]
pub struct TrailRelay {
    db: Db,
    sink: Arc<dyn EventSink>,
    batch: usize,
}

impl std::fmt::Debug for TrailRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrailRelay")
            .field("batch", &self.batch)
            .finish()
    }
}

impl TrailRelay {
    pub fn new(db: Db, sink: Arc<dyn EventSink>) -> Self {
        Self {
            db,
            sink,
            batch: 500,
        }
    }

    /// Publishes one batch of entries, of one or more chains; returns how many.
    pub async fn publish_pending(&self) -> Result<usize, BusError> {
        if let Db::Sqlite(db) = &self.db {
            // One hub process per SQLite database: no other relay publishes meanwhile, so the
            // batch is read beside the writers, on the relay's thread in one snapshot, and
            // marked by a direct write, and nobody waits for the sink.
            let (entries, purged) = {
                let snapshot = db.snapshot()?;
                let behind = trail::behind_direct(&snapshot)?;
                if self.backlog(&behind) == 0 {
                    return Ok(0);
                }
                let mut batch = Batch::new(self.batch);
                for chain in behind {
                    let Some(room) = batch.room() else { break };
                    let found = trail::entries_after_direct(
                        &snapshot,
                        &chain.tenant_id,
                        chain.published,
                        room,
                    )?;
                    batch.add(chain, found);
                }
                batch.into_parts()
            };
            self.sink.publish(&records(&entries)?).await?;
            trail::mark_published_direct(db, marks(&entries, purged)).await?;
            return Ok(self.published(&entries));
        }
        // A plain read first: an idle relay must not take a lock every 100 ms.
        let mut read = self.db.read_in(Scope::AllTenants).await?;
        let behind = trail::behind(&mut read).await?;
        read.commit().await?;
        if self.backlog(&behind) == 0 {
            return Ok(0);
        }
        let mut tx = self.db.begin_in(Scope::AllTenants).await?;
        if !lead(&mut tx, "audit-trail").await? {
            tx.commit().await?;
            return Ok(0);
        }
        // Again under the lock: another process may have published meanwhile.
        let behind = trail::behind(&mut tx).await?;
        let (entries, purged) = self.pending(&mut tx, behind).await?;
        if entries.is_empty() && purged.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let mut tx = publish_leading(tx, self.sink.as_ref(), &records(&entries)?).await?;
        trail::mark_published(&mut tx, &marks(&entries, purged)).await?;
        tx.commit().await?;
        Ok(self.published(&entries))
    }

    /// Up to a batch of the unpublished entries of the chains `behind`, chain by chain
    /// (see [`Batch`]).
    async fn pending(
        &self,
        tx: &mut Tx,
        behind: Vec<Behind>,
    ) -> Result<(Vec<Entry>, Vec<(String, i64)>), BusError> {
        let mut batch = Batch::new(self.batch);
        for chain in behind {
            let Some(room) = batch.room() else { break };
            let found = trail::entries_after(tx, &chain.tenant_id, chain.published, room).await?;
            batch.add(chain, found);
        }
        Ok(batch.into_parts())
    }

    /// How many entries wait to be published, also as a gauge.
    fn backlog(&self, behind: &[Behind]) -> i64 {
        let waiting: i64 = behind.iter().map(|b| b.head - b.published).sum();
        metrics::gauge!(BACKLOG, "service" => NAME).set(waiting as f64);
        waiting
    }

    fn published(&self, entries: &[Entry]) -> usize {
        record_published(NAME, entries.iter().map(|e| e.recorded_at), Utc::now())
    }
}

impl Relay for TrailRelay {
    fn name(&self) -> &'static str {
        "audit trail"
    }

    fn batch(&self) -> usize {
        self.batch
    }

    fn publish_batch(&self) -> BoxFuture<'_, Result<usize, BusError>> {
        Box::pin(self.publish_pending())
    }
}

/// One batch as it is gathered: entries of one chain after another up to the batch size,
/// and the chains with nothing after their mark, at their heads. Those entries were purged
/// (retention) before they were published: a head is committed with its entries, so they
/// are not merely unseen yet, and the mark moves past them.
struct Batch {
    size: usize,
    entries: Vec<Entry>,
    purged: Vec<(String, i64)>,
}

impl Batch {
    fn new(size: usize) -> Self {
        Self {
            size,
            entries: Vec::new(),
            purged: Vec::new(),
        }
    }

    /// How many more entries fit, if any.
    fn room(&self) -> Option<usize> {
        Some(self.size - self.entries.len()).filter(|r| *r > 0)
    }

    fn add(&mut self, chain: Behind, found: Vec<Entry>) {
        if found.is_empty() {
            self.purged.push((chain.tenant_id, chain.head));
        }
        self.entries.extend(found);
    }

    fn into_parts(self) -> (Vec<Entry>, Vec<(String, i64)>) {
        (self.entries, self.purged)
    }
}

fn records(entries: &[Entry]) -> Result<Vec<Record>, BusError> {
    entries
        .iter()
        .map(|e| {
            Ok(Record {
                topic: events::topic::Topic::AuditEvents.name().to_owned(),
                key: e.tenant.clone(),
                event_id: e.entry_id,
                payload: trail::event_json(e)?,
            })
        })
        .collect()
}

/// Where each chain of `entries` now stands published, its last entry's number, and after
/// them the chains `purged` left with nothing to publish.
fn marks(entries: &[Entry], purged: Vec<(String, i64)>) -> Vec<(String, i64)> {
    let mut marks: Vec<(String, i64)> = Vec::new();
    for e in entries {
        match marks.last_mut() {
            Some((tenant, seq)) if *tenant == e.tenant => *seq = e.seq,
            _ => marks.push((e.tenant.clone(), e.seq)),
        }
    }
    marks.extend(purged);
    marks
}
