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
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
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

/// How to reach the cluster and how this hub names things on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `host:port,…`
    pub brokers: String,
    /// Prepended to every topic and consumer-group name, so that several hubs (environments,
    /// test runs) can share one cluster without reading each other's events.
    pub prefix: String,
    /// librdkafka producer properties set over ours (`MEDITRACK_KAFKA_PRODUCER_CONFIG`).
    pub producer: Vec<(String, String)>,
    /// This process's stable name in its consumer groups (Kafka static membership): a
    /// restarted process takes its partitions back at once instead of waiting for the
    /// group to notice the old member died and rebalance. Unique per running process.
    pub instance: Option<String>,
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            ..Self::default()
        }
    }

    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// With these librdkafka producer properties added over ours.
    pub fn with_producer(mut self, properties: &[(&str, &str)]) -> Self {
        self.producer.extend(
            properties
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self
    }

    /// The name of `topic` (or of a consumer group) on the cluster.
    fn on_cluster(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The name the hub knows for `name` as read from the cluster.
    fn in_hub(&self, name: &str) -> String {
        name.strip_prefix(&self.prefix).unwrap_or(name).to_owned()
    }

    /// A message read from the cluster, as the hub names it.
    fn delivery(&self, message: &impl Message) -> Delivery {
        Delivery {
            offset: message.offset(),
            topic: self.in_hub(message.topic()),
            partition: message.partition(),
            key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            payload: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        // librdkafka leaves Nagle's algorithm on by default: a request written while an
        // earlier one is unacknowledged (the producer keeps several in flight) can wait for
        // the broker's delayed ACK, up to 40 ms on Linux, on top of `linger.ms`.
        config.set("socket.nagle.disable", "true");
        config
    }
}

/// Creates the topics of 000 §3.1 that are missing; existing ones are left as they are.
pub async fn ensure_topics(settings: &KafkaSettings, replication: i32) -> Result<(), BusError> {
    let topics: Vec<(String, i32, i64)> = Topic::ALL
        .iter()
        .map(|t| {
            let (partitions, retention) = topic_layout(*t);
            (t.name().to_owned(), partitions, retention)
        })
        .collect();
    create_topics(settings, replication, &topics).await
}

/// Creates `(name, partitions, retention_ms)` topics unless they exist.
pub async fn create_topics(
    settings: &KafkaSettings,
    replication: i32,
    topics: &[(String, i32, i64)],
) -> Result<(), BusError> {
    let admin: AdminClient<DefaultClientContext> = settings.client().create().map_err(broker)?;
    let named: Vec<(String, String)> = topics
        .iter()
        .map(|(name, _, retention)| (settings.on_cluster(name), retention.to_string()))
        .collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .zip(&named)
        .map(|((_, partitions, _), (name, retention))| {
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
    settings: KafkaSettings,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KafkaSink")
    }
}

impl KafkaSink {
    pub fn new(settings: &KafkaSettings) -> Result<Self, BusError> {
        let mut config = settings.client();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        for (key, value) in &settings.producer {
            config.set(key, value);
        }
        let producer = config.create().map_err(broker)?;
        Ok(Self {
            producer,
            settings: settings.clone(),
        })
    }
}

impl EventSink for KafkaSink {
    fn publish<'a>(&'a self, records: &'a [Record]) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(async move {
            // Enqueue the whole batch first (in order), then wait for every acknowledgement:
            // one round trip per batch, not per event.
            let mut pending = Vec::with_capacity(records.len());
            for r in records {
                let topic = self.settings.on_cluster(&r.topic);
                let record = FutureRecord::to(&topic).key(&r.key).payload(&r.payload);
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
    settings: KafkaSettings,
    consumers: Mutex<HashMap<String, Arc<StreamConsumer<LagContext>>>>,
}

/// See the consumer's `fetch.wait.max.ms`: at most a tenth of a second idle between fetches.
const FETCH_WAIT_MAX_MS: &str = "100";

/// How often librdkafka reports its statistics, from which the consumer lag is read.
const STATISTICS_INTERVAL_MS: &str = "1000";

/// Keeps the consumer lag librdkafka computes from its own fetches (its statistics), so
/// reading the lag costs no broker round trip: asking the broker for the watermarks of every
/// partition after each batch took seconds and throttled consumption.
#[derive(Default)]
struct LagContext {
    lags: std::sync::Mutex<Vec<Lag>>,
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        let mut lags = Vec::new();
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // Partition -1 is librdkafka's internal "unassigned" queue; -1 lag is unknown.
                if partition >= 0 && p.consumer_lag >= 0 {
                    lags.push(Lag {
                        topic: topic.clone(),
                        partition,
                        waiting: p.consumer_lag,
                    });
                }
            }
        }
        if let Ok(mut current) = self.lags.lock() {
            *current = lags;
        }
    }
}

impl ConsumerContext for LagContext {}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("brokers", &self.settings.brokers)
            .finish()
    }
}

impl KafkaSource {
    pub fn new(settings: &KafkaSettings) -> Self {
        Self {
            settings: settings.clone(),
            consumers: Mutex::new(HashMap::new()),
        }
    }

    async fn consumer(
        &self,
        group: &str,
        topics: &[&str],
    ) -> Result<Arc<StreamConsumer<LagContext>>, BusError> {
        let mut consumers = self.consumers.lock().await;
        if let Some(c) = consumers.get(group) {
            return Ok(c.clone());
        }
        let mut config = self.settings.client();
        if let Some(instance) = &self.settings.instance {
            config.set("group.instance.id", instance);
        }
        let consumer: StreamConsumer<LagContext> = config
            .set("statistics.interval.ms", STATISTICS_INTERVAL_MS)
            .set("group.id", self.settings.on_cluster(group))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false")
            // How long the broker may hold a fetch that found nothing new. Kafka answers as
            // soon as there is data, so this only paces idle fetches; some Kafka-protocol
            // brokers (tansu 0.6) hold every fetch for up to this long, data or not, and
            // librdkafka's default of 500 ms then put half a second into every event's
            // end-to-end latency.
            .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
            // A crashed member's partitions wait this long for a new owner.
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(LagContext::default())
            .map_err(broker)?;
        let topics: Vec<String> = topics.iter().map(|t| self.settings.on_cluster(t)).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(broker)?;
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
            // Wait for the first, then take what comes within a few milliseconds of it: a
            // wait per message would hold a large batch as long as events kept trickling in.
            let mut timeout = wait.max(Duration::from_millis(1));
            let mut until = None;
            while out.len() < max {
                let message = match tokio::time::timeout(timeout, consumer.recv()).await {
                    Err(_) => break,
                    Ok(m) => m.map_err(broker)?,
                };
                out.push(self.settings.delivery(&message));
                let until = *until
                    .get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_millis(10));
                timeout = until.saturating_duration_since(tokio::time::Instant::now());
                if timeout.is_zero() {
                    break;
                }
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
            let Some(consumer) = consumer.filter(|_| !done.is_empty()) else {
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
                list.add_partition_offset(
                    &self.settings.on_cluster(topic),
                    partition,
                    Offset::Offset(offset),
                )
                .map_err(broker)?;
            }
            consumer.commit(&list, CommitMode::Sync).map_err(broker)
        })
    }

    /// As of librdkafka's last statistics (every few seconds): no broker round trip.
    fn lag<'a>(
        &'a self,
        group: &'a str,
        topics: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<Lag>, BusError>> {
        Box::pin(async move {
            let consumer = self.consumer(group, topics).await?;
            let lags = match consumer.context().lags.lock() {
                Ok(lags) => lags.clone(),
                Err(_) => Vec::new(),
            };
            Ok(lags
                .into_iter()
                .map(|l| Lag {
                    topic: self.settings.in_hub(&l.topic),
                    ..l
                })
                .collect())
        })
    }
}

/// Runs blocking librdkafka calls off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BusError> + Send + 'static,
) -> Result<T, BusError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BusError::Broker(format!("broker task: {e}")))?
}

/// A consumer that never joins its group: it reads or sets positions only.
fn standalone(settings: &KafkaSettings, group: &str) -> Result<BaseConsumer, BusError> {
    settings
        .client()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(broker)
}

const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Every record of `topic`, from the beginning of each partition to its current end, read by
/// a throwaway reader that commits nothing (for DLQ listings; not for consuming).
pub async fn read_all(settings: &KafkaSettings, topic: &str) -> Result<Vec<Delivery>, BusError> {
    let (settings, topic) = (settings.clone(), topic.to_owned());
    blocking(move || read_all_blocking(&settings, &topic)).await
}

fn read_all_blocking(settings: &KafkaSettings, topic: &str) -> Result<Vec<Delivery>, BusError> {
    let reader = standalone(
        settings,
        &format!("meditrack-reader-{}", uuid::Uuid::now_v7().simple()),
    )?;
    let topic = settings.on_cluster(topic);
    let metadata = reader
        .fetch_metadata(Some(&topic), ADMIN_TIMEOUT)
        .map_err(broker)?;
    let mut assignment = TopicPartitionList::new();
    let mut unfinished = std::collections::HashSet::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = reader
            .fetch_watermarks(&topic, partition.id(), ADMIN_TIMEOUT)
            .map_err(broker)?;
        if high > low {
            assignment
                .add_partition_offset(&topic, partition.id(), Offset::Beginning)
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
            Some(Ok(m)) => out.push(settings.delivery(&m)),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                unfinished.remove(&p);
            }
            Some(Err(e)) => return Err(broker(e)),
            None => {}
        }
    }
    Ok(out)
}

/// One partition's new position after [`reset_group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Makes consumer group `group` read again from offset `from` on every partition (of the
/// topics under this hub's prefix) where it has a committed position (clamped to what the partition still holds). Partitions it
/// never committed on are read from the beginning anyway. Like Kafka's own tooling this
/// needs the group to be idle: a running member would overwrite the positions, so the broker
/// refuses and the error says to stop the consumer's service first.
pub async fn reset_group(
    settings: &KafkaSettings,
    group: &str,
    from: i64,
) -> Result<Vec<Position>, BusError> {
    let (settings, group) = (settings.clone(), group.to_owned());
    blocking(move || reset_group_blocking(&settings, &group, from)).await
}

fn reset_group_blocking(
    settings: &KafkaSettings,
    group: &str,
    from: i64,
) -> Result<Vec<Position>, BusError> {
    let consumer = standalone(settings, &settings.on_cluster(group))?;
    let metadata = consumer
        .fetch_metadata(None, ADMIN_TIMEOUT)
        .map_err(broker)?;
    let mut partitions = TopicPartitionList::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| t.name().starts_with(&settings.prefix))
    {
        for p in topic.partitions() {
            partitions.add_partition(topic.name(), p.id());
        }
    }
    let committed = consumer
        .committed_offsets(partitions, ADMIN_TIMEOUT)
        .map_err(broker)?;
    let mut reset = TopicPartitionList::new();
    let mut positions = Vec::new();
    for element in committed.elements() {
        if !matches!(element.offset(), Offset::Offset(_)) {
            continue;
        }
        let (low, high) = consumer
            .fetch_watermarks(element.topic(), element.partition(), ADMIN_TIMEOUT)
            .map_err(broker)?;
        let offset = from.clamp(low, high);
        reset
            .add_partition_offset(element.topic(), element.partition(), Offset::Offset(offset))
            .map_err(broker)?;
        positions.push(Position {
            topic: settings.in_hub(element.topic()),
            partition: element.partition(),
            offset,
        });
    }
    if positions.is_empty() {
        return Ok(positions);
    }
    consumer.commit(&reset, CommitMode::Sync).map_err(|e| {
        BusError::Broker(format!(
            "cannot move consumer group {group}: {e} (is its service still running? stop it first)"
        ))
    })?;
    Ok(positions)
}

/// The dead letters on Kafka, with their `(partition, offset)` in `dlq-events`.
pub async fn dead_letters(
    settings: &KafkaSettings,
) -> Result<Vec<(i32, i64, crate::consumer::DeadLetter)>, BusError> {
    let records = read_all(settings, Topic::DlqEvents.name()).await?;
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
    settings: &KafkaSettings,
    partition: i32,
    offset: i64,
) -> Result<Option<crate::consumer::DeadLetter>, BusError> {
    let Some((.., letter)) = dead_letters(settings)
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
    KafkaSink::new(settings)?
        .publish(std::slice::from_ref(&record))
        .await?;
    Ok(Some(letter))
}
