//! HL7 v2 messages received (over MLLP, or `POST`ed for tests): each is stored as received
//! and validated, and the effects the lab service owns are committed, in one transaction,
//! **before** its ACK exists. A message sent again (same sender, same MSH-10) is answered
//! with the ACK it got the first time and has no second effect. If the process dies before
//! the commit, there is no ACK and the sender sends again; if it dies after, the resend
//! finds the first answer.

mod batch;
mod orders;
mod patients;
pub(crate) mod results;

use crate::domain::{CriticalLimits, LabOrder};
use crate::store::direct::{MessageWrite, write_message};
use crate::store::hl7::{MessageRecord, Unmatched, earlier_ack, insert_unmatched, record_message};
use crate::store::lookup::{Direct, Lookups};
use crate::store::{WriteError, update_order};
use chrono::{DateTime, Utc};
use events::{EventEnvelope, EventMeta};
use hl7v2::ack::{AckCode, acknowledge};
use hl7v2::messages::{Inbound, interpret};
use hl7v2::{Batch, Hl7Error, Message, decode, parse, parse_batch};
use kernel::ids::CorrelationId;
use kernel::{Clock, TenantId};
use std::sync::Arc;
use store::direct_read::Snapshot;
use store::{Db, DbError, Scope, SqliteDb, Tx};
use uuid::Uuid;

pub const MESSAGES: &str = "meditrack_hl7_messages_total";

/// How often a message starts over because an order changed under it, before it is left
/// unacknowledged.
const MAX_CONFLICTS: u32 = 50;

/// Takes in the HL7 messages of one tenant (MLLP carries no credentials: a listener serves
/// the tenant it is configured for).
#[derive(Debug, Clone)]
pub struct Intake {
    db: Db,
    tenant: TenantId,
    limits: CriticalLimits,
    clock: Arc<dyn Clock>,
}

/// What applying a message did, before it is recorded.
struct Applied {
    status: &'static str,
    events: Vec<EventEnvelope>,
    /// Results no order could take, recorded with the message.
    unmatched: Vec<Unmatched>,
    /// Orders as they were read and as the message changed them, to write.
    changed: Vec<(LabOrder, LabOrder)>,
}

impl Intake {
    pub fn new(db: Db, tenant: TenantId, limits: CriticalLimits, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            tenant,
            limits,
            clock,
        }
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// Processes one message, or a batch of them, and returns the ACK (unframed): one per
    /// message, in a batch envelope of ACKs for a batch. `Err` only when something could
    /// not be stored (the database is down): then no ACK is sent, and the sender retries;
    /// messages of a batch stored before that are recognized when it comes again.
    pub async fn receive(&self, bytes: &[u8]) -> Result<Vec<u8>, DbError> {
        let text = decode(bytes);
        if !Batch::is_batch(&text) {
            return self.receive_one(&text).await;
        }
        let batch = match parse_batch(&text) {
            Ok(b) => b,
            Err(e) => return self.reject(None, &text, &e, self.clock.now()).await,
        };
        let now = hl7v2::time::format_datetime(self.clock.now());
        let filed = batch.envelope.iter().any(|s| s.id() == "FHS");
        let mut out = String::new();
        if filed {
            out.push_str(&format!(
                "FHS|^~\\&|{}|||||{now}\r",
                hl7v2::ack::DEFAULT_APPLICATION
            ));
        }
        out.push_str(&format!(
            "BHS|^~\\&|{}|||||{now}\r",
            hl7v2::ack::DEFAULT_APPLICATION
        ));
        for ack in self.receive_all(&batch.texts).await? {
            out.push_str(&String::from_utf8_lossy(&ack));
        }
        out.push_str(&format!("BTS|{}\r", batch.texts.len()));
        if filed {
            out.push_str("FTS|1\r");
        }
        Ok(out.into_bytes())
    }

    async fn receive_one(&self, text: &str) -> Result<Vec<u8>, DbError> {
        let text = text.to_owned();
        let now = self.clock.now();
        let message = match parse(&text) {
            Ok(m) => m,
            Err(e) => return self.reject(None, &text, &e, now).await,
        };
        let header = Header::of(&message);
        let scope = Scope::Tenant(&self.tenant);
        let mut conflicts = 0;
        loop {
            // Results are applied to their orders in memory and written from the versions
            // read; an order changed meanwhile by another transaction (another message for
            // it on another connection) starts the message over, where it used to fail the
            // message and leave it unacknowledged.
            let inbound = interpret(&message);
            // On SQLite, a message that only reads until it writes (results, patients)
            // reads in a snapshot of direct reads (`store::lookup`), beside the writers,
            // and writes in one direct write; orders are created as they are read, in a
            // writer's turn.
            let mut reads = match &self.db {
                Db::Sqlite(db)
                    if matches!(inbound, Ok(Inbound::Results(_) | Inbound::Patient(_))) =>
                {
                    Reads::Snapshot(Direct(db.snapshot()?), db)
                }
                _ => Reads::Tx(self.db.begin_in(scope).await?),
            };
            if let (Some(sender), Some(control)) = (&header.sender, &header.control_id) {
                let earlier = match &mut reads {
                    Reads::Tx(tx) => tx.earlier_ack(&self.tenant, sender, control).await?,
                    Reads::Snapshot(s, _) => s.earlier_ack(&self.tenant, sender, control).await?,
                };
                if let Some(ack) = earlier {
                    metrics::counter!(MESSAGES, "outcome" => "duplicate").increment(1);
                    return Ok(ack.into_bytes());
                }
            }
            let id = Uuid::now_v7();
            let applied = match inbound {
                Err(e) => Err(e),
                Ok(inbound) => self.apply(&mut reads, id, &message, inbound, now).await?,
            };
            let applied = match applied {
                Ok(a) => a,
                Err(e) => {
                    drop(reads);
                    return self.reject(Some(&message), &text, &e, now).await;
                }
            };
            let record = self.accepted(&message, &header, id, applied.status, &text, now);
            let ack = record.ack.clone();
            let status = applied.status;
            let critical = batch::critical(&applied.events);
            let m = MessageWrite {
                changed: applied.changed,
                record,
                unmatched: applied.unmatched,
                events: applied.events,
            };
            let finished = match reads {
                Reads::Snapshot(snapshot, db) => {
                    drop(snapshot);
                    // What `finish` writes, as one direct write (`store::direct`).
                    db.write_direct(move |tx| write_message(tx, &m)).await
                }
                Reads::Tx(tx) => self.finish(tx, &m).await,
            };
            match finished {
                // An order changed since it was read (a result submitted meanwhile), or,
                // on PostgreSQL, the server chose this transaction as the one to roll back
                // of several waiting on each other's orders (other connections' batches
                // lock several orders each, in their own order): nothing of it was kept.
                Ok(false) if conflicts < MAX_CONFLICTS => conflicts += 1,
                Err(e) if e.lost_race() && conflicts < MAX_CONFLICTS => conflicts += 1,
                // No ACK: the sender sends it again later.
                Ok(false) => {
                    return Err(DbError::Invariant(
                        "an order kept changing while a message was applied",
                    ));
                }
                Ok(true) => {
                    metrics::counter!(MESSAGES, "outcome" => status).increment(1);
                    if critical > 0 {
                        metrics::counter!(crate::app::CRITICAL_RESULTS).increment(critical as u64);
                    }
                    return Ok(ack.into_bytes());
                }
                // The same message on another connection got in first: answer as it was.
                Err(e) if e.unique_violation().is_some() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes what a message did, and the message, and commits: `false` (nothing written)
    /// when an order in `m.changed` is no longer at the version it was read at.
    async fn finish(&self, mut tx: Tx, m: &MessageWrite) -> Result<bool, DbError> {
        if !write_in(&mut tx, &self.tenant, m).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Stores a message that cannot be taken, with nothing else, and answers AE or AR.
    async fn reject(
        &self,
        message: Option<&Message>,
        text: &str,
        e: &Hl7Error,
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, DbError> {
        let m = MessageWrite::alone(self.refused(message, text, e, now));
        let tx = self.db.begin_in(Scope::Tenant(&self.tenant)).await?;
        match self.finish(tx, &m).await {
            Ok(_) => {}
            // Rejected before under the same control id: the same answer stands.
            Err(e) if e.unique_violation().is_some() => {
                let mut tx = self.db.read_in(Scope::Tenant(&self.tenant)).await?;
                if let (Some(s), Some(c)) = (&m.record.sender, &m.record.control_id)
                    && let Some(earlier) = earlier_ack(&mut tx, &self.tenant, s, c).await?
                {
                    return Ok(earlier.into_bytes());
                }
            }
            Err(e) => return Err(e),
        }
        refusal_counted(e);
        Ok(m.record.ack.into_bytes())
    }

    /// The record of a message taken, with its AA.
    fn accepted(
        &self,
        message: &Message,
        header: &Header,
        id: Uuid,
        status: &'static str,
        text: &str,
        now: DateTime<Utc>,
    ) -> MessageRecord {
        let ack = acknowledge(
            Some(message),
            AckCode::Accept,
            None,
            &Uuid::now_v7().to_string(),
            now,
        );
        MessageRecord {
            id,
            tenant: self.tenant.clone(),
            sender: header.sender.clone(),
            control_id: header.control_id.clone(),
            message_type: header.message_type.clone(),
            received_at: now,
            status,
            ack_code: AckCode::Accept.as_str(),
            error_code: None,
            error_location: None,
            error_text: None,
            raw: text.to_owned(),
            ack: ack.encode(),
        }
    }

    /// The record of a message refused, with its AE or AR.
    fn refused(
        &self,
        message: Option<&Message>,
        text: &str,
        e: &Hl7Error,
        now: DateTime<Utc>,
    ) -> MessageRecord {
        // Not even a header to read: rejected outright, not an error in its content.
        let code = match message {
            None => AckCode::Reject,
            Some(_) => AckCode::for_error(e),
        };
        let ack = acknowledge(message, code, Some(e), &Uuid::now_v7().to_string(), now).encode();
        let header = message.map(Header::of).unwrap_or_default();
        MessageRecord {
            id: Uuid::now_v7(),
            tenant: self.tenant.clone(),
            sender: header.sender,
            control_id: header.control_id,
            message_type: header.message_type,
            received_at: now,
            status: "REJECTED",
            ack_code: code.as_str(),
            error_code: Some(e.code.code().to_string()),
            error_location: e.location.as_ref().map(|l| l.to_string()),
            error_text: Some(e.message.chars().take(500).collect()),
            raw: text.to_owned(),
            ack,
        }
    }

    fn meta(&self, now: DateTime<Utc>) -> EventMeta {
        EventMeta {
            source: crate::SERVICE,
            tenant: self.tenant.clone(),
            correlation_id: CorrelationId::new(),
            causation_id: None,
            occurred_at: now,
        }
    }

    async fn apply(
        &self,
        reads: &mut Reads<'_>,
        message_id: Uuid,
        message: &Message,
        inbound: Inbound,
        now: DateTime<Utc>,
    ) -> Result<Result<Applied, Hl7Error>, DbError> {
        match reads {
            Reads::Tx(tx) => self.apply_in(tx, message_id, message, inbound, now).await,
            Reads::Snapshot(s, _) => self.apply_read(s, message_id, message, inbound, now).await,
        }
    }

    /// Applies a message in the transaction that will write what it did.
    async fn apply_in(
        &self,
        tx: &mut Tx,
        message_id: Uuid,
        message: &Message,
        inbound: Inbound,
        now: DateTime<Utc>,
    ) -> Result<Result<Applied, Hl7Error>, DbError> {
        match inbound {
            Inbound::Orders(o) => {
                let sender = Header::of(message).sender.unwrap_or_default();
                let meta = self.meta(now);
                orders::apply(tx, &self.tenant, &meta, (message_id, &sender), o, now).await
            }
            inbound => self.apply_read(tx, message_id, message, inbound, now).await,
        }
    }

    /// Applies a message that only reads until it writes (results, patients).
    async fn apply_read(
        &self,
        reads: &mut impl Lookups,
        message_id: Uuid,
        message: &Message,
        inbound: Inbound,
        now: DateTime<Utc>,
    ) -> Result<Result<Applied, Hl7Error>, DbError> {
        let meta = self.meta(now);
        let sender = Header::of(message).sender.unwrap_or_default();
        match inbound {
            Inbound::Results(r) => {
                results::apply(reads, &self.tenant, &self.limits, &meta, &sender, r, now).await
            }
            Inbound::Patient(p) => Ok(patients::apply(&meta, message_id, &sender, p)),
            Inbound::Orders(_) => Err(DbError::Invariant(
                "orders are created as they are read, in a writer's transaction",
            )),
        }
    }
}

/// Writes what a message did, and the message, in `tx`: `false` when an order in
/// `m.changed` is no longer at the version it was read at (and `tx` must be rolled back).
async fn write_in(tx: &mut Tx, tenant: &TenantId, m: &MessageWrite) -> Result<bool, DbError> {
    for (before, after) in &m.changed {
        match update_order(tx, before, after).await {
            Ok(()) => {}
            Err(WriteError::Db(e)) => return Err(e),
            Err(WriteError::VersionConflict) => return Ok(false),
            Err(_) => {
                return Err(DbError::Invariant(
                    "an order vanished while a message was applied",
                ));
            }
        }
    }
    record_message(tx, &m.record).await?;
    for u in &m.unmatched {
        let u = Unmatched {
            message_id: m.record.id,
            ..u.clone()
        };
        insert_unmatched(tx, tenant, &u).await?;
    }
    store::outbox::append(tx, &m.events).await?;
    Ok(true)
}

fn refusal_counted(e: &Hl7Error) {
    metrics::counter!(MESSAGES, "outcome" => "rejected").increment(1);
    tracing::info!(code = e.code.code(), location = ?e.location.as_ref().map(|l| l.to_string()), "HL7 message refused");
}

/// Where a message's reads run: in the transaction that then writes what it did (orders,
/// and every message on PostgreSQL), or on SQLite in a snapshot of direct reads, its
/// changes written afterwards as one direct write at the versions read.
enum Reads<'a> {
    Tx(Tx),
    Snapshot(Direct<Snapshot>, &'a SqliteDb),
}

#[derive(Debug, Default)]
struct Header {
    sender: Option<String>,
    control_id: Option<String>,
    message_type: Option<String>,
}

impl Header {
    fn of(m: &Message) -> Self {
        let h = m.header();
        let app = h.field(3).component(1).text().unwrap_or_default();
        let facility = h.field(4).component(1).text().unwrap_or_default();
        let (code, trigger, _) = m.message_type();
        Header {
            sender: Some(format!("{app}^{facility}")),
            control_id: m.control_id().map(|c| c.chars().take(200).collect()),
            message_type: (!code.is_empty()).then(|| {
                if trigger.is_empty() {
                    code
                } else {
                    format!("{code}^{trigger}")
                }
            }),
        }
    }
}
