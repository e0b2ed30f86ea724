//! The event backbone. Services write events to their outbox in the transaction of the
//! change; the [`relay`] moves them to a sink; [`consumer`]s read them from a source and
//! apply each one exactly once (inbox in the consumer's own transaction), retrying what
//! fails transiently and sending what cannot be handled to `dlq-events`.
//!
//! Sinks and sources are traits with two implementations: the [`embedded`] log (the
//! default, no services needed) and Kafka (feature `kafka`, same contract).

pub mod consumer;
pub mod dlq;
pub mod embedded;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod relay;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use uuid::Uuid;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Gauges of waiting events count up to this many. Counting further would cost a scan of
/// the whole backlog on every batch, just when the system is behind; past this, "very
/// behind" is all an operator needs to know.
pub const COUNT_CAP: i64 = 10_000;

/// `SELECT COUNT(*)` of the rows `from_where` selects, stopping at [`COUNT_CAP`].
pub(crate) fn capped_count(from_where: &str) -> String {
    counted_to(from_where, COUNT_CAP)
}

/// `SELECT COUNT(*)` of the rows `from_where` selects, stopping at `cap`.
pub(crate) fn counted_to(from_where: &str, cap: i64) -> String {
    format!("SELECT COUNT(*) FROM (SELECT 1 FROM {from_where} LIMIT {cap}) AS capped")
}

/// One event on its way to a topic. `payload` is the JSON envelope as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    /// The partition key: the aggregate id, so one aggregate's events stay in order.
    pub key: String,
    pub event_id: Uuid,
    pub payload: String,
}

/// One event read from a topic, with its position there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub offset: i64,
    pub topic: String,
    /// Always 0 on the embedded log, which has one partition per topic.
    pub partition: i32,
    pub key: String,
    pub payload: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    Db(#[from] store::DbError),
    #[error("broker: {0}")]
    Broker(String),
}

impl From<sqlx::Error> for BusError {
    fn from(e: sqlx::Error) -> Self {
        BusError::Db(e.into())
    }
}

/// Where the relay publishes.
pub trait EventSink: Send + Sync {
    /// Appends `records` in order. Publishing the same event id again must be harmless.
    fn publish<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), BusError>>;
}

/// What consumers read. Each consumer group has its own committed position.
pub trait EventSource: Send + Sync {
    /// Up to `max` deliveries after the group's committed position, waiting up to `wait`
    /// for some to arrive.
    fn poll<'a>(
        &'a self,
        group: &'a str,
        topics: &'a [&'a str],
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BusError>>;

    /// Marks `done` (a batch, in delivery order) as processed for `group`: on each
    /// partition, everything up to its last delivery in the batch.
    fn commit<'a>(
        &'a self,
        group: &'a str,
        done: &'a [Delivery],
    ) -> BoxFuture<'a, Result<(), BusError>>;

    /// How many events of each `(topic, partition)` wait for `group`.
    fn lag<'a>(
        &'a self,
        group: &'a str,
        topics: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<Lag>, BusError>>;
}

/// Events waiting for a consumer group on one partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    pub topic: String,
    pub partition: i32,
    pub waiting: i64,
}
