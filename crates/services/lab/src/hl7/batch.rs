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
//! Inside that write each message reads through the write's own transaction
//! ([`Direct`]), so it sees what the messages before it wrote: a second result for the
//! same order continues from the first, as it would had each been committed alone. The
//! ACKs go out only after the commit; if it fails, none go out, and the sender sends the
//! batch again. On SQLite, orders (ORM, OML) are created as they are read, in a writer's
//! turn, so each is taken alone, between runs, where it stands in the batch. On PostgreSQL
//! a run (any kind of message) is one transaction, committed once. Should an order
//! change under it there (another connection's result), a message of it be committed
//! meanwhile by another connection, or the run deadlock with another connection's over
//! the same orders, the run is rolled back and its messages are taken one at a time, each
//! starting over or finding the first answer as it does alone.

use super::{Applied, Header, Intake, MESSAGES, refusal_counted, write_in};
use crate::app::CRITICAL_RESULTS;
use crate::store::direct::{MessageWrite, write_message};
use crate::store::lookup::{Direct, Lookups};
use chrono::{DateTime, Utc};
use events::lab::LabCriticalResultV1;
use events::{EventEnvelope, EventPayload};
use hl7v2::messages::{Inbound, interpret};
use hl7v2::{Hl7Error, Message, parse};
use kernel::TenantId;
use rusqlite::Transaction;
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
            let message = parse(text).map(|m| {
                let inbound = interpret(&m);
                (m, inbound)
            });
            if sqlite.is_some()
                && let Ok((_, Ok(Inbound::Orders(_)))) = &message
            {
                let run = std::mem::take(&mut run);
                acks.extend(self.take_run(sqlite, run, &texts[start..i]).await?);
                acks.push(self.receive_one(text).await?);
                start = i + 1;
                continue;
            }
            run.push(Read {
                text: text.clone(),
                message,
            });
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
            Some(db) => {
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
            None => self.take_in_tx(run, now).await,
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

    async fn take_in_tx(
        &self,
        run: Vec<Read>,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Taken>>, DbError> {
        let mut tx = self.db.begin_in(Scope::Tenant(&self.tenant)).await?;
        let Some(taken) = self.take_all(&mut tx, run, now).await? else {
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(taken))
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
                    tx.write(&self.tenant, &m).await?;
                    taken.push(Taken {
                        ack: m.record.ack,
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
            if !tx.write(&self.tenant, &m).await? {
                return Ok(None);
            }
            taken.push(Taken {
                ack: m.record.ack,
                outcome,
            });
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
    async fn write(&mut self, tenant: &TenantId, m: &MessageWrite) -> Result<bool, DbError>;
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

    async fn write(&mut self, tenant: &TenantId, m: &MessageWrite) -> Result<bool, DbError> {
        write_in(self, tenant, m).await
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

    async fn write(&mut self, _: &TenantId, m: &MessageWrite) -> Result<bool, DbError> {
        Ok(write_message(self.0, m)?)
    }
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
