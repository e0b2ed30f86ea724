//! The consumer runtime. A service declares which event types it handles; the runtime reads
//! its group's deliveries, and in one transaction on the service's database records each
//! event id in the inbox and runs its handler, then commits: the inbox makes a redelivered
//! event a no-op. A batch is applied in one transaction when all of it succeeds, else one
//! event at a time. Transient failures retry with backoff; an undecodable event,
//! a permanent failure or exhausted retries go to `dlq-events` and the consumer moves on.

use crate::relay::backoff;
use crate::{BoxFuture, BusError, Delivery, EventSink, EventSource, Record};
use chrono::Utc;
use events::{EventEnvelope, Topic};
use kernel::TenantId;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use store::{Db, Scope, Tx};
use tokio::sync::watch;
use uuid::Uuid;

/// The most deliveries one poll takes, applied in one transaction when all succeed: each
/// batch is a commit, an inbox statement and a position commit, so at a few thousand
/// events a second a batch of 100 was a hundred fsyncs a second for one consumer.
const BATCH: usize = 500;

pub const HANDLED: &str = "meditrack_events_handled_total";
pub const FAILED: &str = "meditrack_events_failed_total";
pub const DEAD_LETTERED: &str = "meditrack_events_dead_lettered_total";
pub const SKIPPED: &str = "meditrack_events_skipped_total";
/// Seconds from an event's `occurredAt` (its producer's commit) to its handling by a
/// consumer: the end-to-end latency that 000 §9.1 holds under a second at p95.
pub const END_TO_END: &str = "meditrack_event_end_to_end_seconds";

fn count_handled(consumer: &'static str, envelope: &EventEnvelope) {
    metrics::counter!(HANDLED, "consumer" => consumer, "event_type" => envelope.event_type.clone())
        .increment(1);
    let age = (Utc::now() - envelope.occurred_at)
        .to_std()
        .unwrap_or_default();
    metrics::histogram!(END_TO_END, "consumer" => consumer).record(age.as_secs_f64());
}
/// The name 000 §6.1 gives it; the embedded log reports it too.
pub const LAG: &str = "kafka_consumer_lag";

/// Why a handler could not apply an event. Messages must not contain PHI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying: the database was busy, a dependency was down.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help: the event breaks a rule. It goes to the DLQ at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// `event`'s tenant and payload as `P`: an event that has neither as it should never will,
/// so either failing is permanent (dead-lettered at once).
pub fn parse<P: serde::de::DeserializeOwned + events::EventPayload>(
    event: &EventEnvelope,
) -> Result<(TenantId, P), HandlerError> {
    let payload = serde_json::from_value(event.payload.clone()).map_err(|_| {
        HandlerError::Permanent(format!("the payload does not match {}", P::EVENT_TYPE))
    })?;
    let tenant = TenantId::parse(&event.tenant_id)
        .map_err(|_| HandlerError::Permanent("the tenant id is not valid".to_owned()))?;
    Ok((tenant, payload))
}

/// What `read` makes of each event of a run (see [`Handler::handle_all`]), with the run's
/// one tenant; `None` for an empty run. A run that mixes tenants is refused: the consumer
/// never hands one over, and a handler writing in one tenant's scope must not take one.
pub fn one_tenant<T>(
    events: &[&EventEnvelope],
    mut read: impl FnMut(&EventEnvelope) -> Result<(TenantId, T), HandlerError>,
) -> Result<Option<(TenantId, Vec<T>)>, HandlerError> {
    let mut tenant = None;
    let mut read_all = Vec::with_capacity(events.len());
    for event in events {
        let (t, item) = read(event)?;
        if tenant.get_or_insert_with(|| t.clone()) != &t {
            return Err(HandlerError::Permanent(
                "events of several tenants in one run".to_owned(),
            ));
        }
        read_all.push(item);
    }
    Ok(tenant.map(|t| (t, read_all)))
}

impl From<store::DbError> for HandlerError {
    fn from(e: store::DbError) -> Self {
        HandlerError::Transient(e.to_string())
    }
}

/// Applies one event type inside the consumer's transaction.
pub trait Handler: Send + Sync {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;

    /// Applies `events`, a run of a batch (one type, one tenant, in their order), in `tx`.
    /// A handler whose statements can take many rows at once does so here; by default each
    /// event goes through [`Handler::handle`] in turn. An error undoes the whole batch,
    /// which is then taken one event at a time.
    fn handle_all<'a>(
        &'a self,
        tx: &'a mut Tx,
        events: &'a [&'a EventEnvelope],
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            for event in events {
                self.handle(tx, event).await?;
            }
            Ok(())
        })
    }

    /// Whether the handler writes through transactions of its own (a use case), its effect
    /// made idempotent by a key of its own (the event id as an idempotency key). It then
    /// runs before the event is marked in the inbox, not inside the consumer's
    /// transaction, which it would otherwise wait for (SQLite has one writer); a crash in
    /// between re-runs it, and its key makes that harmless.
    fn own_transactions(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before an event is dead-lettered (the first try included).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5 }
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Already applied before (a redelivery): nothing done.
    Duplicate,
    /// No handler for this type in this consumer.
    Skipped,
    DeadLettered,
}

/// A DLQ entry: what failed, where it came from, and the event as it was read.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub consumer: String,
    pub error: String,
    pub attempts: u32,
    pub original_topic: String,
    pub original_offset: i64,
    pub original_key: String,
    pub payload: String,
    pub dead_lettered_at: chrono::DateTime<Utc>,
}

pub struct Consumer {
    name: &'static str,
    topics: Vec<&'static str>,
    db: Db,
    handlers: HashMap<&'static str, Arc<dyn Handler>>,
    source: Arc<dyn EventSource>,
    dead_letters: Arc<dyn EventSink>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .field("topics", &self.topics)
            .field("handles", &self.handlers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Consumer {
    /// A consumer group `name`, applying events in `db` (which must have the inbox table).
    pub fn new(
        name: &'static str,
        db: Db,
        source: Arc<dyn EventSource>,
        dead_letters: Arc<dyn EventSink>,
    ) -> Self {
        Self {
            name,
            topics: Vec::new(),
            db,
            handlers: HashMap::new(),
            source,
            dead_letters,
            retry: RetryPolicy::default(),
        }
    }

    /// Handles `event_type` (read from `topic`) with `handler`.
    pub fn on(mut self, event_type: &'static str, topic: Topic, handler: Arc<dyn Handler>) -> Self {
        if !self.topics.contains(&topic.name()) {
            self.topics.push(topic.name());
        }
        self.handlers.insert(event_type, handler);
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Reads and applies one batch, then commits the group's position. Returns how many
    /// deliveries it processed.
    pub async fn process_batch(&self, wait: Duration) -> Result<usize, BusError> {
        let deliveries = self
            .source
            .poll(self.name, &self.topics, BATCH, wait)
            .await?;
        if !self.apply_together(&deliveries).await {
            for delivery in &deliveries {
                self.process(delivery).await?;
            }
        }
        if !deliveries.is_empty() {
            self.source.commit(self.name, &deliveries).await?;
        }
        self.report_lag(!deliveries.is_empty()).await;
        Ok(deliveries.len())
    }

    /// After work, asks the source; after an empty poll, nothing waits.
    async fn report_lag(&self, worked: bool) {
        let lags = if worked {
            match self.source.lag(self.name, &self.topics).await {
                Ok(lags) => lags,
                Err(e) => {
                    tracing::debug!(consumer = self.name, error = %e, "cannot read the consumer lag");
                    return;
                }
            }
        } else {
            self.topics
                .iter()
                .map(|t| crate::Lag {
                    topic: (*t).to_owned(),
                    partition: 0,
                    waiting: 0,
                })
                .collect()
        };
        for lag in lags {
            metrics::gauge!(LAG, "group" => self.name, "topic" => lag.topic, "partition" => lag.partition.to_string())
                .set(lag.waiting as f64);
        }
    }

    /// The fast path: the whole batch in one transaction, so one commit (one fsync) per batch
    /// rather than per event. When any event cannot be decoded or its handler fails, nothing
    /// of the batch is kept and it returns false: the batch is then taken one event at a
    /// time, with retries and dead letters.
    async fn apply_together(&self, deliveries: &[Delivery]) -> bool {
        if deliveries.len() < 2 {
            return false;
        }
        let mut envelopes = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match serde_json::from_str::<EventEnvelope>(&delivery.payload) {
                Ok(e) => envelopes.push(e),
                Err(_) => return false,
            }
        }
        let Ok(mut tx) = self.db.begin().await else {
            return false;
        };
        if envelopes.iter().any(|e| {
            self.handlers
                .get(e.event_type.as_str())
                .is_some_and(|h| h.own_transactions())
        }) {
            return false;
        }
        // The inbox rows of the whole batch in one statement, and the tenant's scope entered
        // only when it changes: statements per event were the consumer's cost, and it fell
        // behind registrations on PostgreSQL.
        let handled: Vec<Uuid> = envelopes
            .iter()
            .filter(|e| self.handlers.contains_key(e.event_type.as_str()))
            .map(|e| e.event_id.as_uuid())
            .collect();
        let Ok(mut fresh) = store::inbox::record_many(&mut tx, self.name, &handled).await else {
            return false;
        };
        // Runs of one type and one tenant go to their handler together, in the batch's order.
        let (mut applied, mut skipped, mut scope) = (Vec::new(), 0u64, None);
        let mut run: Vec<&EventEnvelope> = Vec::new();
        for envelope in &envelopes {
            if !self.handlers.contains_key(envelope.event_type.as_str()) {
                skipped += 1;
                continue;
            }
            // Applied before, or earlier in this batch.
            if !fresh.remove(&envelope.event_id.as_uuid()) {
                continue;
            }
            if run.first().is_some_and(|first| {
                first.event_type != envelope.event_type || first.tenant_id != envelope.tenant_id
            }) {
                if self.handle_in(&mut tx, &run, &mut scope).await.is_err() {
                    return false;
                }
                applied.append(&mut run);
            }
            run.push(envelope);
        }
        if !run.is_empty() {
            if self.handle_in(&mut tx, &run, &mut scope).await.is_err() {
                return false;
            }
            applied.append(&mut run);
        }
        if tx.commit().await.is_err() {
            return false;
        }
        metrics::counter!(SKIPPED, "consumer" => self.name).increment(skipped);
        for envelope in applied {
            count_handled(self.name, envelope);
        }
        true
    }

    async fn process(&self, delivery: &Delivery) -> Result<Outcome, BusError> {
        let envelope: EventEnvelope = match serde_json::from_str(&delivery.payload) {
            Ok(e) => e,
            Err(_) => {
                return self
                    .dead_letter(delivery, "the event is not a valid envelope".to_owned(), 1)
                    .await;
            }
        };
        let Some(handler) = self.handlers.get(envelope.event_type.as_str()) else {
            metrics::counter!(SKIPPED, "consumer" => self.name).increment(1);
            return Ok(Outcome::Skipped);
        };
        let labels = [
            ("consumer", self.name.to_owned()),
            ("event_type", envelope.event_type.clone()),
        ];
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.apply(handler.as_ref(), &envelope).await {
                Ok(outcome) => {
                    count_handled(self.name, &envelope);
                    return Ok(outcome);
                }
                Err(HandlerError::Permanent(e)) => {
                    metrics::counter!(FAILED, &labels).increment(1);
                    return self.dead_letter(delivery, e, attempt).await;
                }
                Err(HandlerError::Transient(e)) if attempt >= self.retry.max_attempts => {
                    metrics::counter!(FAILED, &labels).increment(1);
                    return self.dead_letter(delivery, e, attempt).await;
                }
                Err(HandlerError::Transient(e)) => {
                    metrics::counter!(FAILED, &labels).increment(1);
                    tracing::warn!(
                        consumer = self.name,
                        event_id = %envelope.event_id,
                        correlation_id = %envelope.correlation_id,
                        causation_id = ?envelope.causation_id,
                        attempt,
                        error = %e,
                        "handler failed; retrying"
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
    }

    /// Records the event in the inbox and runs its handler, in `tx`. False: already applied
    /// (a redelivery), and nothing was done.
    async fn apply_in(&self, tx: &mut Tx, envelope: &EventEnvelope) -> Result<bool, HandlerError> {
        if !store::inbox::record(tx, self.name, envelope.event_id.as_uuid()).await? {
            return Ok(false);
        }
        self.handle_in(tx, &[envelope], &mut None).await?;
        Ok(true)
    }

    /// Runs the handler of `events` (a run of one type and one tenant) on them in `tx`, in
    /// their tenant's scope. `scope` is the tenant `tx` is in already, if any; it is entered
    /// only when theirs differs.
    async fn handle_in(
        &self,
        tx: &mut Tx,
        events: &[&EventEnvelope],
        scope: &mut Option<TenantId>,
    ) -> Result<(), HandlerError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let Some(handler) = self.handlers.get(first.event_type.as_str()) else {
            return Ok(());
        };
        // The handler works on the event's tenant's rows only (row-level security on
        // PostgreSQL), whatever tenant the previous event of a batch had.
        let tenant = TenantId::parse(&first.tenant_id).map_err(|_| {
            HandlerError::Permanent("the event's tenant id is not valid".to_owned())
        })?;
        if scope.as_ref() != Some(&tenant) {
            tx.enter(Scope::Tenant(&tenant)).await?;
            *scope = Some(tenant);
        }
        handler.handle_all(tx, events).await
    }

    async fn apply(
        &self,
        handler: &dyn Handler,
        envelope: &EventEnvelope,
    ) -> Result<Outcome, HandlerError> {
        if handler.own_transactions() {
            let id = envelope.event_id.as_uuid();
            if store::inbox::seen(&self.db, self.name, id).await? {
                return Ok(Outcome::Duplicate);
            }
            // The handler is given a read-only transaction it need not use: it writes
            // through its own, and this one takes no write lock for them to wait on.
            let tenant = TenantId::parse(&envelope.tenant_id).map_err(|_| {
                HandlerError::Permanent("the event's tenant id is not valid".to_owned())
            })?;
            let mut reading = self.db.read_in(Scope::Tenant(&tenant)).await?;
            handler.handle(&mut reading, envelope).await?;
            drop(reading);
            let mut tx = self.db.begin().await?;
            store::inbox::record(&mut tx, self.name, id).await?;
            tx.commit().await?;
            return Ok(Outcome::Applied);
        }
        let mut tx = self.db.begin().await?;
        if !self.apply_in(&mut tx, envelope).await? {
            return Ok(Outcome::Duplicate);
        }
        tx.commit().await?;
        tracing::debug!(
            consumer = self.name,
            event_id = %envelope.event_id,
            correlation_id = %envelope.correlation_id,
            causation_id = ?envelope.causation_id,
            "event applied"
        );
        Ok(Outcome::Applied)
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        error: String,
        attempts: u32,
    ) -> Result<Outcome, BusError> {
        // The correlation id, when the event could be read at all, ties this to its request.
        let correlation_id = serde_json::from_str::<serde_json::Value>(&delivery.payload)
            .ok()
            .and_then(|v| {
                v.get("correlationId")
                    .and_then(|c| c.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_default();
        tracing::error!(
            consumer = self.name,
            topic = %delivery.topic,
            offset = delivery.offset,
            correlation_id = %correlation_id,
            attempts,
            error = %error,
            "event dead-lettered"
        );
        let letter = DeadLetter {
            consumer: self.name.to_owned(),
            error,
            attempts,
            original_topic: delivery.topic.clone(),
            original_offset: delivery.offset,
            original_key: delivery.key.clone(),
            payload: delivery.payload.clone(),
            dead_lettered_at: Utc::now(),
        };
        let record = Record {
            topic: Topic::DlqEvents.name().to_owned(),
            key: delivery.key.clone(),
            event_id: Uuid::now_v7(),
            payload: serde_json::to_string(&letter).unwrap_or_default(),
        };
        self.dead_letters
            .publish(std::slice::from_ref(&record))
            .await?;
        metrics::counter!(DEAD_LETTERED, "consumer" => self.name).increment(1);
        Ok(Outcome::DeadLettered)
    }

    /// Processes until `shutdown` turns true, finishing (and committing) the batch under way.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            match self.process_batch(Duration::from_millis(500)).await {
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(consumer = self.name, error = %e, failures, "consumer failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(failures)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        tracing::info!(consumer = self.name, "consumer stopped");
    }
}
