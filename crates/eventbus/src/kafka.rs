//! The Kafka backbone (`MEDITRACK_KAFKA_BROKERS`): the same sink and source contract as the
//! embedded log, over a Kafka-protocol broker.
//!
//! The producer is idempotent with `acks=all`, so a retried send is not duplicated and one
//! key's records keep their order within their partition. Consumers commit offsets only
//! after the handler's transaction committed (`enable.auto.commit=false`) and read only
//! committed records (`isolation.level=read_committed`).

use crate::{BoxFuture, BusError, Delivery, EventSink, EventSource, Lag, Record};
use events::Topic;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Partitions and retention of each topic (000 §3.1).
pub fn topic_layout(topic: Topic) -> (i32, i64) {
    match topic {
        Topic::PatientEvents => (12, 30 * DAY_MS),
        Topic::LabEvents => (8, 90 * DAY_MS),
        Topic::InsuranceEvents => (6, 365 * DAY_MS),
        Topic::PharmacyEvents => (8, 90 * DAY_MS),
        Topic::AuditEvents => (4, 7 * 365 * DAY_MS),
        Topic::NotificationEvents => (4, 7 * DAY_MS),
        Topic::DlqEvents => (2, 30 * DAY_MS),
    }
}

fn broker(e: KafkaError) -> BusError {
    BusError::Broker(e.to_string())
}

/// Creates the topics of 000 §3.1 that are missing; existing ones are left as they are.
pub async fn ensure_topics(brokers: &str, replication: i32) -> Result<(), BusError> {
    let topics: Vec<(String, i32, i64)> = Topic::ALL
        .iter()
        .map(|t| {
            let (partitions, retention) = topic_layout(*t);
            (t.name().to_owned(), partitions, retention)
        })
        .collect();
    create_topics(brokers, replication, &topics).await
}

/// Creates `(name, partitions, retention_ms)` topics unless they exist.
pub async fn create_topics(
    brokers: &str,
    replication: i32,
    topics: &[(String, i32, i64)],
) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(broker)?;
    let retention: Vec<String> = topics.iter().map(|(_, _, r)| r.to_string()).collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&retention)
        .map(|((name, partitions, _), retention)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(replication))
                .set("retention.ms", retention)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await.map_err(broker)? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(BusError::Broker(format!(
                    "cannot create topic {name}: {code}"
                )));
            }
        }
    }
    Ok(())
}

pub struct KafkaSink {
    producer: FutureProducer,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KafkaSink")
    }
}

impl KafkaSink {
    pub fn new(brokers: &str) -> Result<Self, BusError> {
        Self::with_overrides(brokers, &[])
    }

    /// With librdkafka producer properties set over ours (`MEDITRACK_KAFKA_PRODUCER_CONFIG`).
    pub fn with_overrides(brokers: &str, overrides: &[(String, String)]) -> Result<Self, BusError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        for (key, value) in overrides {
            config.set(key, value);
        }
        let producer = config.create().map_err(broker)?;
        Ok(Self { producer })
    }
}

impl EventSink for KafkaSink {
    fn publish<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            // Enqueue the whole batch first (in order), then wait for every acknowledgement:
            // one round trip per batch, not per event.
            let mut pending = Vec::with_capacity(records.len());
            for r in records {
                let record = FutureRecord::to(&r.topic).key(&r.key).payload(&r.payload);
                let delivery = self
                    .producer
                    .send_result(record)
                    .map_err(|(e, _)| broker(e))?;
                pending.push(delivery);
            }
            for delivery in pending {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(broker(e)),
                    Err(_) => {
                        return Err(BusError::Broker(
                            "the producer dropped a delivery".to_owned(),
                        ));
                    }
                }
            }
            Ok(())
        })
    }
}

pub struct KafkaSource {
    brokers: String,
    consumers: Mutex<HashMap<String, Arc<StreamConsumer>>>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("brokers", &self.brokers)
            .finish()
    }
}

impl KafkaSource {
    pub fn new(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            consumers: Mutex::new(HashMap::new()),
        }
    }

    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Arc<StreamConsumer>, BusError> {
        let mut consumers = self.consumers.lock().await;
        if let Some(c) = consumers.get(group) {
            return Ok(c.clone());
        }
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            // A crashed member's partitions wait this long for a new owner.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .map_err(broker)?;
        consumer.subscribe(topics).map_err(broker)?;
        let consumer = Arc::new(consumer);
        consumers.insert(group.to_owned(), consumer.clone());
        Ok(consumer)
    }
}

impl EventSource for KafkaSource {
    fn poll<'a>(
        &'a self,
        group: &'a str,
        topics: &'a [&'a str],
        max: usize,
        wait: Duration,
    ) -> BoxFuture<'a, Result<Vec<Delivery>, BusError>> {
        Box::pin(async move {
            let consumer = self.consumer(group, topics).await?;
            let mut out = Vec::new();
            // Wait for the first, then take what is already there without waiting long.
            let mut timeout = wait.max(Duration::from_millis(1));
            while out.len() < max {
                let message = match tokio::time::timeout(timeout, consumer.recv()).await {
                    Err(_) => break,
                    Ok(m) => m.map_err(broker)?,
                };
                out.push(Delivery {
                    offset: message.offset(),
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                    payload: String::from_utf8_lossy(message.payload().unwrap_or_default())
                        .into_owned(),
                });
                timeout = Duration::from_millis(5);
            }
            Ok(out)
        })
    }

    fn commit<'a>(
        &'a self,
        group: &'a str,
        done: &'a [Delivery],
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            let consumer = {
                let consumers = self.consumers.lock().await;
                consumers.get(group).cloned()
            };
            let Some(consumer) = consumer else {
                return Ok(());
            };
            let mut next: HashMap<(&str, i32), i64> = HashMap::new();
            for d in done {
                let entry = next
                    .entry((d.topic.as_str(), d.partition))
                    .or_insert(d.offset + 1);
                *entry = (*entry).max(d.offset + 1);
            }
            let mut list = TopicPartitionList::new();
            for ((topic, partition), offset) in next {
                list.add_partition_offset(topic, partition, Offset::Offset(offset))
                    .map_err(broker)?;
            }
            consumer.commit(&list, CommitMode::Sync).map_err(broker)
        })
    }

    fn lag<'a>(
        &'a self,
        group: &'a str,
        topics: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<Lag>, BusError>> {
        Box::pin(async move {
            let consumer = self.consumer(group, topics).await?;
            let assignment = consumer.assignment().map_err(broker)?;
            let committed = consumer
                .committed_offsets(assignment, Duration::from_secs(2))
                .map_err(broker)?;
            let mut lags = Vec::new();
            for element in committed.elements() {
                let (low, high) = consumer
                    .fetch_watermarks(element.topic(), element.partition(), Duration::from_secs(2))
                    .map_err(broker)?;
                let from = match element.offset() {
                    Offset::Offset(o) => o,
                    _ => low,
                };
                lags.push(Lag {
                    topic: element.topic().to_owned(),
                    partition: element.partition(),
                    waiting: (high - from).max(0),
                });
            }
            Ok(lags)
        })
    }
}

/// Every record of `topic`, from the beginning of each partition to its current end, read by
/// a throwaway reader that commits nothing (for DLQ listings; not for consuming).
pub async fn read_all(brokers: &str, topic: &str) -> Result<Vec<Delivery>, BusError> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_all_blocking(&brokers, &topic))
        .await
        .map_err(|e| BusError::Broker(format!("reader task: {e}")))?
}

fn read_all_blocking(brokers: &str, topic: &str) -> Result<Vec<Delivery>, BusError> {
    use rdkafka::consumer::BaseConsumer;
    let timeout = Duration::from_secs(5);
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("meditrack-reader-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(broker)?;
    let metadata = reader
        .fetch_metadata(Some(topic), timeout)
        .map_err(broker)?;
    let mut assignment = TopicPartitionList::new();
    let mut unfinished = std::collections::HashSet::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = reader
            .fetch_watermarks(topic, partition.id(), timeout)
            .map_err(broker)?;
        if high > low {
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Beginning)
                .map_err(broker)?;
            unfinished.insert(partition.id());
        }
    }
    if unfinished.is_empty() {
        return Ok(Vec::new());
    }
    reader.assign(&assignment).map_err(broker)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut out = Vec::new();
    while !unfinished.is_empty() && std::time::Instant::now() < deadline {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Delivery {
                offset: m.offset(),
                topic: m.topic().to_owned(),
                partition: m.partition(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            }),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                unfinished.remove(&p);
            }
            Some(Err(e)) => return Err(broker(e)),
            None => {}
        }
    }
    Ok(out)
}

/// The dead letters on Kafka, with their `(partition, offset)` in `dlq-events`.
pub async fn dead_letters(
    brokers: &str,
) -> Result<Vec<(i32, i64, crate::consumer::DeadLetter)>, BusError> {
    let records = read_all(brokers, Topic::DlqEvents.name()).await?;
    Ok(records
        .into_iter()
        .filter_map(|d| {
            serde_json::from_str(&d.payload)
                .ok()
                .map(|l| (d.partition, d.offset, l))
        })
        .collect())
}

/// Puts the event of the dead letter at `(partition, offset)` back on its original topic.
pub async fn replay_dead_letter(
    brokers: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<crate::consumer::DeadLetter>, BusError> {
    let Some((.., letter)) = dead_letters(brokers)
        .await?
        .into_iter()
        .find(|(p, o, _)| (*p, *o) == (partition, offset))
    else {
        return Ok(None);
    };
    let record = Record {
        topic: letter.original_topic.clone(),
        key: letter.original_key.clone(),
        event_id: uuid::Uuid::now_v7(),
        payload: letter.payload.clone(),
    };
    KafkaSink::new(brokers)?
        .publish(std::slice::from_ref(&record))
        .await?;
    Ok(Some(letter))
}
