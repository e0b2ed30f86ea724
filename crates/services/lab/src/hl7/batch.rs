//! A batch's messages (BHS … BTS, one MLLP frame) taken in as few commits as their order
//! allows. Each message is still its own unit: its own record, its own ACK (AA, AE or AR)
//! in the batch of ACKs, and a message sent again is still answered as it was the first
//! time. What changes is when they become durable: on SQLite, every run of messages that
//! only read until they write (results, patients, and those refused) is applied and
//! written in one direct write, message after message in the batch's order, and committed
//! once, so a laboratory sending a batch pays one fsync per run, not per message. MLLP
//! has one frame in flight per connection, so one message per frame is one commit per
//! message per connection, however fast the hub is.
//!
//! A run is first read ahead, in one snapshot beside the writers ([`Direct`] reads of a
//! [`Snapshot`]), and its writes then made in the writer's turn at the versions read, so
//! the one writer every connection waits for only writes. Where that cannot stand (two
//! messages of the run for one order, or with one control id, or an order changed after
//! the snapshot) the run is taken again inside the write, each message reading through
//! the write's own transaction, so it sees what the messages before it wrote: a second
//! result for the same order continues from the first, as it would had each been
//! committed alone. The ACKs go out only after the commit; if it fails, none go out, and
//! the sender sends the batch again. On SQLite, orders (ORM, OML) are created as they are read, in a writer's
//! turn, so each is taken alone, between runs, where it stands in the batch. On PostgreSQL
//! a run (any kind of message) is one transaction, committed once. Should an order
//! change under it there (another connection's result), a message of it be committed
//! meanwhile by another connection, or the run deadlock with another connection's over
//! the same orders, the run is rolled back and its messages are taken one at a time, each
//! starting over or finding the first answer as it does alone.

use super::{Applied, Header, Intake, MESSAGES, refusal_counted, results, write_in};
use crate::app::CRITICAL_RESULTS;
use crate::store::direct::{MessageWrite, write_message};
use crate::store::hl7::earlier_of;
use crate::store::lookup::{Direct, Lookups};
use crate::store::run::{Ahead, Prefetched, Written, write_run};
use chrono::{DateTime, Utc};
use events::lab::LabCriticalResultV1;
use events::{EventEnvelope, EventPayload};
use hl7v2::messages::{Inbound, interpret};
use hl7v2::{Hl7Error, Message, parse};
use kernel::TenantId;
use rusqlite::Transaction;
use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use store::{Db, DbError, Scope, SqliteDb, Tx};
use uuid::Uuid;

/// The most messages one direct write takes: the other writers wait for it.
const RUN: usize = 100;

/// A message of a run, as parsed and interpreted before the write.
struct Read {
    text: String,
    message: Result<(Message, Result<Inbound, Hl7Error>), Hl7Error>,
}

impl Read {
    fn of(text: &str) -> Self {
        let message = parse(text).map(|m| {
            let inbound = interpret(&m);
            (m, inbound)
        });
        Read {
            text: text.to_owned(),
            message,
        }
    }
}

/// The messages `texts` of a run, parsed again for a second try.
fn reparsed(texts: &[String]) -> Vec<Read> {
    texts.iter().map(|t| Read::of(t)).collect()
}

/// What became of a message of a run, and its ACK.
struct Taken {
    ack: String,
    outcome: Outcome,
}

enum Outcome {
    /// Sent before: answered with the first ACK.
    Duplicate,
    Accepted {
        status: &'static str,
        critical: usize,
    },
    Refused(Hl7Error),
}

impl Intake {
    /// The ACK of each message of a batch, in its order.
    pub(super) async fn receive_all(&self, texts: &[String]) -> Result<Vec<Vec<u8>>, DbError> {
        let sqlite = match &self.db {
            Db::Sqlite(db) => Some(db),
            Db::Postgres(_) => None,
        };
        let mut acks = Vec::with_capacity(texts.len());
        let (mut run, mut start) = (Vec::new(), 0);
        for (i, text) in texts.iter().enumerate() {
            let read = Read::of(text);
            if sqlite.is_some()
                && let Ok((_, Ok(Inbound::Orders(_)))) = &read.message
            {
                let run = std::mem::take(&mut run);
                acks.extend(self.take_run(sqlite, run, &texts[start..i]).await?);
                acks.push(self.receive_one(text).await?);
                start = i + 1;
                continue;
            }
            run.push(read);
            if run.len() == RUN {
                let run = std::mem::take(&mut run);
                acks.extend(self.take_run(sqlite, run, &texts[start..=i]).await?);
                start = i + 1;
            }
        }
        acks.extend(self.take_run(sqlite, run, &texts[start..]).await?);
        Ok(acks)
    }

    /// Takes `run` (whose messages are `texts`) in one transaction: a direct write on
    /// SQLite, a transaction of the pool on PostgreSQL. The ACKs, once it committed.
    async fn take_run(
        &self,
        sqlite: Option<&SqliteDb>,
        run: Vec<Read>,
        texts: &[String],
    ) -> Result<Vec<Vec<u8>>, DbError> {
        if run.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let taken = match sqlite {
            Some(db) => match self.take_ahead(db, run, now).await {
                Ok(Some(taken)) => Ok(Some(taken)),
                // A message of the run depends on another's write, or an order changed
                // since the snapshot: the run is read again inside the write.
                Ok(None) => self.take_in_write(db, reparsed(texts), now).await,
                Err(e) => Err(e),
            },
            None => self.take_in_tx(run, texts, now).await,
        };
        let taken = match taken {
            Ok(Some(taken)) => taken,
            // An order changed under the run, or a message of it was committed meanwhile
            // by another connection, or (on PostgreSQL) the run deadlocked with another
            // connection's over the same orders taken in another order: one at a time,
            // each starts over or finds the first answer.
            Ok(None) => return self.one_by_one(texts).await,
            Err(e) if e.unique_violation().is_some() || e.lost_race() => {
                return self.one_by_one(texts).await;
            }
            Err(e) => return Err(e),
        };
        Ok(taken.into_iter().map(counted).collect())
    }

    /// Reads `run` in one snapshot beside the writers, then writes what each message did,
    /// at the versions it read, in one direct write: the writer, whom every connection's
    /// runs wait for, then only writes (the reads of an order and its children were a
    /// third of its work). `None`, with nothing written, when that cannot stand: a
    /// message of the run depends on what an earlier one writes (the same order, or the
    /// same control id), or an order changed after the snapshot.
    async fn take_ahead(
        &self,
        db: &SqliteDb,
        run: Vec<Read>,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Taken>>, DbError> {
        let mut reads = Direct(db.snapshot()?);
        let (mrns, orders) = lookup_keys(&run);
        let ahead = reads.prefetch(&self.tenant, mrns, orders)?;
        let mut ahead = Deferring::new(&mut reads, ahead, true);
        let taken = self.take_all(&mut ahead, run, now).await?;
        let Deferred {
            writes, dependent, ..
        } = ahead.deferred;
        drop(reads);
        let Some(taken) = taken.filter(|_| !dependent) else {
            return Ok(None);
        };
        let written = db
            .write_direct(move |tx| {
                for m in &writes {
                    if !write_message(tx, m)? {
                        // Undoes the messages before it too: the job fails as a whole.
                        return Err(stale());
                    }
                }
                Ok(())
            })
            .await;
        match written {
            Ok(()) => Ok(Some(taken)),
            Err(e) if is_stale(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes `run` in one direct write, each message reading through the write's own
    /// transaction and so seeing what those before it wrote.
    async fn take_in_write(
        &self,
        db: &SqliteDb,
        run: Vec<Read>,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Taken>>, DbError> {
        let intake = self.clone();
        db.write_direct(move |tx| {
            // The writes of one group see each other, and other writers wait: no
            // order can change under it.
            at_once(intake.take_all(&mut InWrite(tx), run, now))
                .and_then(|t| {
                    t.ok_or(DbError::Invariant(
                        "an order changed under a direct write's own transaction",
                    ))
                })
                .map_err(into_sqlite)
        })
        .await
        .map(Some)
    }

    /// Takes `run` (whose messages are `texts`) in one transaction on PostgreSQL: gathered
    /// ([`Self::take_gathered`]) unless it places orders, a message of it depends on
    /// another's write, or one came before; otherwise message after message, each looked
    /// up as sent before and writing before the next reads.
    async fn take_in_tx(
        &self,
        run: Vec<Read>,
        texts: &[String],
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Taken>>, DbError> {
        let places_orders = run
            .iter()
            .any(|r| matches!(&r.message, Ok((_, Ok(Inbound::Orders(_))))));
        let run = if places_orders {
            run
        } else {
            match self.take_gathered(run, now).await? {
                Gathered::Taken(taken) => return Ok(taken),
                Gathered::Dependent => reparsed(texts),
            }
        };
        let mut tx = self.db.begin_in(Scope::Tenant(&self.tenant)).await?;
        let new = self.new_keys(&mut tx, &run).await?;
        let mut run_tx = LookedUp { tx: &mut tx, new };
        let Some(taken) = self.take_all(&mut run_tx, run, now).await? else {
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(taken))
    }

    /// Takes `run` in one transaction of a few statements (`store::run`): the patients
    /// and orders its messages name read first, each message applied to them, and what
    /// they all did written at the end, at the versions read.
    async fn take_gathered(&self, run: Vec<Read>, now: DateTime<Utc>) -> Result<Gathered, DbError> {
        let mut tx = self.db.begin_in(Scope::Tenant(&self.tenant)).await?;
        let (mrns, orders) = lookup_keys(&run);
        let ahead = Prefetched::read(&mut tx, &self.tenant, mrns, orders).await?;
        let mut gathering = Deferring::new(&mut tx, ahead, false);
        let taken = self.take_all(&mut gathering, run, now).await?;
        let Deferred {
            writes, dependent, ..
        } = gathering.deferred;
        // Rolled back as `tx` drops.
        if dependent {
            return Ok(Gathered::Dependent);
        }
        let Some(taken) = taken else {
            return Ok(Gathered::Taken(None));
        };
        match write_run(&mut tx, &self.tenant, writes).await? {
            Written::Done => {
                tx.commit().await?;
                Ok(Gathered::Taken(Some(taken)))
            }
            Written::Stale => Ok(Gathered::Taken(None)),
            // Its messages are looked up before they are taken, and those sent before
            // answered as the first time.
            Written::SentBefore => Ok(Gathered::Dependent),
        }
    }

    /// The control ids of `run` no message had before it, looked up in one statement.
    async fn new_keys(
        &self,
        tx: &mut Tx,
        run: &[Read],
    ) -> Result<HashSet<(String, String)>, DbError> {
        let keys: Vec<(String, String)> = run
            .iter()
            .filter_map(|r| r.message.as_ref().ok())
            .filter_map(|(m, _)| {
                let h = Header::of(m);
                h.sender.zip(h.control_id)
            })
            .collect();
        Ok(match earlier_of(tx, &self.tenant, &keys).await? {
            Some(earlier) => {
                let earlier: HashSet<(String, String)> = earlier.into_iter().collect();
                keys.into_iter().filter(|k| !earlier.contains(k)).collect()
            }
            None => HashSet::new(),
        })
    }

    async fn one_by_one(&self, texts: &[String]) -> Result<Vec<Vec<u8>>, DbError> {
        let mut acks = Vec::with_capacity(texts.len());
        for text in texts {
            acks.push(self.receive_one(text).await?);
        }
        Ok(acks)
    }

    /// Applies and writes each message of `run` in turn in `tx`, each seeing what those
    /// before it wrote; `None` when an order changed under them.
    async fn take_all(
        &self,
        tx: &mut impl Run,
        run: Vec<Read>,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Taken>>, DbError> {
        let mut taken = Vec::with_capacity(run.len());
        for Read { text, message } in run {
            let (message, inbound) = match message {
                Ok(m) => m,
                Err(e) => {
                    let m = MessageWrite::alone(self.refused(None, &text, &e, now));
                    let ack = m.record.ack.clone();
                    tx.write(&self.tenant, m).await?;
                    taken.push(Taken {
                        ack,
                        outcome: Outcome::Refused(e),
                    });
                    continue;
                }
            };
            let header = Header::of(&message);
            if let (Some(sender), Some(control)) = (&header.sender, &header.control_id)
                && let Some(ack) = tx.earlier_ack(&self.tenant, sender, control).await?
            {
                taken.push(Taken {
                    ack,
                    outcome: Outcome::Duplicate,
                });
                continue;
            }
            let id = Uuid::now_v7();
            let applied = match inbound {
                Err(e) => Err(e),
                Ok(inbound) => tx.apply(self, id, &message, inbound, now).await?,
            };
            let (m, outcome) = match applied {
                Ok(a) => {
                    let record = self.accepted(&message, &header, id, a.status, &text, now);
                    let outcome = Outcome::Accepted {
                        status: a.status,
                        critical: critical(&a.events),
                    };
                    let m = MessageWrite {
                        changed: a.changed,
                        record,
                        unmatched: a.unmatched,
                        events: a.events,
                    };
                    (m, outcome)
                }
                Err(e) => {
                    let record = self.refused(Some(&message), &text, &e, now);
                    (MessageWrite::alone(record), Outcome::Refused(e))
                }
            };
            let ack = m.record.ack.clone();
            if !tx.write(&self.tenant, m).await? {
                return Ok(None);
            }
            taken.push(Taken { ack, outcome });
        }
        Ok(Some(taken))
    }
}

/// A transaction a run of messages is taken in.
trait Run {
    async fn earlier_ack(
        &mut self,
        tenant: &TenantId,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<String>, DbError>;

    async fn apply(
        &mut self,
        intake: &Intake,
        id: Uuid,
        message: &Message,
        inbound: Inbound,
        now: DateTime<Utc>,
    ) -> Result<Result<Applied, Hl7Error>, DbError>;

    /// `false`, with nothing written, when an order in `m.changed` is no longer at the
    /// version it was read at.
    async fn write(&mut self, tenant: &TenantId, m: MessageWrite) -> Result<bool, DbError>;
}

impl Run for Tx {
    async fn earlier_ack(
        &mut self,
        tenant: &TenantId,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<String>, DbError> {
        Lookups::earlier_ack(self, tenant, sender, control_id).await
    }

    async fn apply(
        &mut self,
        intake: &Intake,
        id: Uuid,
        message: &Message,
        inbound: Inbound,
        now: DateTime<Utc>,
    ) -> Result<Result<Applied, Hl7Error>, DbError> {
        intake.apply_in(self, id, message, inbound, now).await
    }

    async fn write(&mut self, tenant: &TenantId, m: MessageWrite) -> Result<bool, DbError> {
        write_in(self, tenant, &m).await
    }
}

/// A run's transaction on PostgreSQL, the run's earlier messages looked up for all of it
/// first. A message whose key is in `new` (none had it before the run) needs no lookup of
/// its own, the first time; a second message with that key in the run looks, and finds
/// the first.
struct LookedUp<'a> {
    tx: &'a mut Tx,
    new: HashSet<(String, String)>,
}

impl Run for LookedUp<'_> {
    async fn earlier_ack(
        &mut self,
        tenant: &TenantId,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<String>, DbError> {
        if self.new.remove(&(sender.to_owned(), control_id.to_owned())) {
            return Ok(None);
        }
        Lookups::earlier_ack(self.tx, tenant, sender, control_id).await
    }

    async fn apply(
        &mut self,
        intake: &Intake,
        id: Uuid,
        message: &Message,
        inbound: Inbound,
        now: DateTime<Utc>,
    ) -> Result<Result<Applied, Hl7Error>, DbError> {
        self.tx.apply(intake, id, message, inbound, now).await
    }

    async fn write(&mut self, tenant: &TenantId, m: MessageWrite) -> Result<bool, DbError> {
        self.tx.write(tenant, m).await
    }
}

/// What the messages of a run read ahead would write, kept for the run's one write, and
/// whether a message of it depends on an earlier one's write, which that write cannot
/// give it.
#[derive(Default)]
struct Deferred {
    writes: Vec<MessageWrite>,
    /// The orders the run's messages changed so far, and the control ids they came with.
    orders: HashSet<Uuid>,
    controls: HashSet<(String, String)>,
    dependent: bool,
}

impl Deferred {
    /// A message's sender and control id: a second message with them is answered as the
    /// first, whose record is not written yet.
    fn control(&mut self, sender: &str, control_id: &str) {
        if !self
            .controls
            .insert((sender.to_owned(), control_id.to_owned()))
        {
            self.dependent = true;
        }
    }

    /// What a message would write: a second message for one order must build on the
    /// first's change.
    fn push(&mut self, m: MessageWrite) {
        for (before, _) in &m.changed {
            if !self.orders.insert(before.id.as_uuid()) {
                self.dependent = true;
            }
        }
        self.writes.push(m);
    }
}

/// What [`Intake::take_gathered`] came to: the run taken (or `None`: an order changed
/// under it, and nothing of it was kept), or a message of it that depends on an earlier
/// one's write or was sent before, so that it must be taken message after message.
enum Gathered {
    Taken(Option<Vec<Taken>>),
    Dependent,
}

/// A run whose writes wait for its end: each message's lookups are answered from what the
/// run read ahead, the rest from `reads` (the run's transaction on PostgreSQL, where
/// [`write_run`] writes them; its snapshot on SQLite, then one direct write), and what it
/// would write is kept ([`Deferred`]).
struct Deferring<'a, L> {
    reads: &'a mut L,
    /// The patients and orders the run names, read at once before it.
    ahead: Prefetched,
    deferred: Deferred,
    /// Whether a message's control id is looked up as sent before. PostgreSQL's gathered
    /// runs take every message as new: the run's write finds any that came before
    /// ([`Written::SentBefore`]), and the run is then taken again looking each up. A batch
    /// sent again is rare; a lookup for every run cost a statement of a hundred index
    /// probes.
    looks_up_earlier: bool,
}

impl<'a, L: Lookups> Deferring<'a, L> {
    fn new(reads: &'a mut L, ahead: Prefetched, looks_up_earlier: bool) -> Self {
        Self {
            reads,
            ahead,
            deferred: Deferred::default(),
            looks_up_earlier,
        }
    }
}

impl<L: Lookups> Run for Deferring<'_, L> {
    async fn earlier_ack(
        &mut self,
        tenant: &TenantId,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<String>, DbError> {
        self.deferred.control(sender, control_id);
        if !self.looks_up_earlier {
            return Ok(None);
        }
        self.reads.earlier_ack(tenant, sender, control_id).await
    }

    async fn apply(
        &mut self,
        intake: &Intake,
        id: Uuid,
        message: &Message,
        inbound: Inbound,
        now: DateTime<Utc>,
    ) -> Result<Result<Applied, Hl7Error>, DbError> {
        let mut reads = Ahead {
            reads: &mut *self.reads,
            ahead: &mut self.ahead,
        };
        intake
            .apply_read(&mut reads, id, message, inbound, now)
            .await
    }

    async fn write(&mut self, _: &TenantId, m: MessageWrite) -> Result<bool, DbError> {
        self.deferred.push(m);
        Ok(true)
    }
}

/// A direct write's transaction on SQLite, read through as [`Direct`] reads.
struct InWrite<'a, 'b>(&'a Transaction<'b>);

impl Run for InWrite<'_, '_> {
    async fn earlier_ack(
        &mut self,
        tenant: &TenantId,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<String>, DbError> {
        Direct(&**self.0)
            .earlier_ack(tenant, sender, control_id)
            .await
    }

    async fn apply(
        &mut self,
        intake: &Intake,
        id: Uuid,
        message: &Message,
        inbound: Inbound,
        now: DateTime<Utc>,
    ) -> Result<Result<Applied, Hl7Error>, DbError> {
        intake
            .apply_read(&mut Direct(&**self.0), id, message, inbound, now)
            .await
    }

    async fn write(&mut self, _: &TenantId, m: MessageWrite) -> Result<bool, DbError> {
        Ok(write_message(self.0, &m)?)
    }
}

/// A read-ahead write's sign that an order changed after its snapshot: it fails the
/// direct write, so that nothing of it stays, and is told apart from a real failure.
#[derive(Debug)]
struct Stale;

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an order changed after the batch read it")
    }
}

impl std::error::Error for Stale {}

fn stale() -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(Stale))
}

fn is_stale(e: &DbError) -> bool {
    matches!(e, DbError::Direct(rusqlite::Error::ToSqlConversionFailure(e)) if e.is::<Stale>())
}

/// The patients (by MRN) and orders (by our id) the results of `run` name, for the run to
/// read at once.
fn lookup_keys(run: &[Read]) -> (Vec<String>, Vec<Uuid>) {
    let (mut mrns, mut orders) = (Vec::new(), Vec::new());
    for read in run {
        if let Ok((_, Ok(Inbound::Results(m)))) = &read.message {
            results::lookup_keys(m, &mut mrns, &mut orders);
        }
    }
    (mrns, orders)
}

/// Counts what became of a message, once its run committed; its ACK.
fn counted(t: Taken) -> Vec<u8> {
    match t.outcome {
        Outcome::Duplicate => metrics::counter!(MESSAGES, "outcome" => "duplicate").increment(1),
        Outcome::Accepted { status, critical } => {
            metrics::counter!(MESSAGES, "outcome" => status).increment(1);
            if critical > 0 {
                metrics::counter!(CRITICAL_RESULTS).increment(critical as u64);
            }
        }
        Outcome::Refused(e) => refusal_counted(&e),
    }
    t.ack.into_bytes()
}

pub(super) fn critical(events: &[EventEnvelope]) -> usize {
    events
        .iter()
        .filter(|e| e.event_type == LabCriticalResultV1::EVENT_TYPE)
        .count()
}

/// The output of a future that never waits: the lookups of a [`Direct`] reader run on the
/// calling thread and are async only to share their trait with sqlx's.
fn at_once<T>(f: impl Future<Output = Result<T, DbError>>) -> Result<T, DbError> {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => Err(DbError::Invariant("a direct read waited")),
    }
}

/// A failure inside a direct write, as the error that rolls it back.
fn into_sqlite(e: DbError) -> rusqlite::Error {
    match e {
        DbError::Direct(e) => e,
        // A bug, not the database's failure; its message names no value.
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_INTERNAL),
            Some(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read-ahead that finds an order changed fails its direct write as a whole, and
    /// comes back told apart from any other failure.
    #[tokio::test]
    async fn a_stale_read_ahead_fails_its_write_whole_and_is_told_apart() {
        let dir = std::env::temp_dir().join(format!("lab-stale-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = Db::connect_sqlite(dir.join("t.db"), 2).await.unwrap();
        store::migrate(&db, &crate::migrations()).await.unwrap();
        let Db::Sqlite(sqlite) = &db else {
            unreachable!()
        };
        let e = sqlite
            .write_direct(|tx| {
                tx.execute_batch(
                    "CREATE TABLE written (n INTEGER); INSERT INTO written VALUES (1);",
                )?;
                Err::<(), _>(stale())
            })
            .await
            .unwrap_err();
        assert!(is_stale(&e), "{e}");
        assert!(!is_stale(&DbError::Invariant("another failure")));
        let left: i64 = sqlite
            .write_direct(|tx| {
                tx.query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'written'",
                    [],
                    |r| r.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(left, 0, "nothing of the failed write stays");
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
