//! The sink/source contract on a real Kafka-protocol broker (`MEDITRACK_TEST_KAFKA_BROKERS`,
//! default 127.0.0.1:9092; CI starts `tansu`). Without a broker these tests say so and pass,
//! except under `CI=true`, where a missing broker is a failure.

#![allow(clippy::unwrap_used)]

mod common;

use eventbus::kafka::{KafkaSettings, KafkaSink, KafkaSource, create_topics};
use eventbus::{EventSink, EventSource, Record};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// The test broker, under topic and group names no other test uses.
fn brokers() -> Option<KafkaSettings> {
    Some(
        KafkaSettings::new(testkit::kafka_brokers()?)
            .with_prefix(testkit::kafka_prefix())
            .with_producer(testkit::TEST_BROKER_PRODUCER_CONFIG),
    )
}

async fn topic(brokers: &KafkaSettings, partitions: i32) -> String {
    let name = format!("contract-{}", Uuid::now_v7().simple());
    create_topics(brokers, 1, &[(name.clone(), partitions, 86_400_000)])
        .await
        .unwrap();
    name
}

use common::{receive, record};

/// A backlog much larger than one poll, over several partitions, read batch by batch with a
/// commit after each, as the consumer runtime does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_read_in_committed_batches_to_the_end() {
    let Some(brokers) = brokers() else { return };
    let topic = topic(&brokers, 8).await;
    let sink = KafkaSink::new(&brokers).unwrap();
    let records: Vec<_> = (0..600)
        .map(|n| record(&topic, &format!("key-{}", n % 10), n))
        .collect();
    for chunk in records.chunks(100) {
        sink.publish(chunk).await.unwrap();
    }
    let source = KafkaSource::new(&brokers);
    let group = format!("backlog-{}", Uuid::now_v7().simple());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = std::collections::HashSet::new();
    // The lag comes from librdkafka's statistics (every second, served while polling), so
    // the backlog is read slowly enough for several reports, then polled until it shows 0.
    let (mut most_waiting, mut last_waiting) = (0, None);
    while seen.len() < records.len() || last_waiting != Some(0) {
        assert!(
            Instant::now() < deadline,
            "read {} of {}, lag {last_waiting:?}",
            seen.len(),
            records.len()
        );
        let batch = source
            .poll(&group, &[&topic], 50, Duration::from_millis(500))
            .await
            .unwrap();
        source.commit(&group, &batch).await.unwrap();
        seen.extend(batch.into_iter().map(|d| d.payload));
        let lags = source.lag(&group, &[&topic]).await.unwrap();
        if !lags.is_empty() {
            assert!(lags.iter().all(|l| l.topic == topic), "{lags:?}");
            let waiting: i64 = lags.iter().map(|l| l.waiting).sum();
            most_waiting = most_waiting.max(waiting);
            last_waiting = Some(waiting);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(most_waiting > 0, "the lag showed the backlog");
}

/// Kafka as a contract backbone: a new topic of 4 partitions; each `open` is a new client.
async fn backbone(brokers: &KafkaSettings) -> common::Backbone {
    let settings = brokers.clone();
    common::Backbone {
        sink: std::sync::Arc::new(KafkaSink::new(brokers).unwrap()),
        open: Box::new(move || {
            let settings = settings.clone();
            Box::pin(async move {
                std::sync::Arc::new(KafkaSource::new(&settings)) as std::sync::Arc<dyn EventSource>
            })
        }),
        topic: topic(brokers, 4).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_keys_events_arrive_in_the_order_they_were_published() {
    let Some(brokers) = brokers() else { return };
    common::each_keys_events_arrive_in_the_order_they_were_published(backbone(&brokers).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncommitted_deliveries_come_again_after_a_crash() {
    let Some(brokers) = brokers() else { return };
    common::uncommitted_deliveries_come_again_after_a_crash(backbone(&brokers).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_resumes_from_its_own_committed_position() {
    let Some(brokers) = brokers() else { return };
    common::each_group_resumes_from_its_own_committed_position(backbone(&brokers).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_group_can_be_moved_back_to_read_again() {
    let Some(brokers) = brokers() else { return };
    let topic = topic(&brokers, 1).await;
    let group = format!("reset-{}", Uuid::now_v7().simple());
    let untouched = eventbus::kafka::reset_group(&brokers, &group, 0)
        .await
        .unwrap();
    assert!(
        untouched.is_empty(),
        "a group that never committed has no positions"
    );

    let sink = KafkaSink::new(&brokers).unwrap();
    sink.publish(&[
        record(&topic, "k", 1),
        record(&topic, "k", 2),
        record(&topic, "k", 3),
    ])
    .await
    .unwrap();
    let first = KafkaSource::new(&brokers);
    let got = receive(&first, &group, &topic, 3).await;
    first.commit(&group, &got).await.unwrap();
    drop(first);

    // Offsets past the end are clamped to it; 1 means the second record.
    let moved = eventbus::kafka::reset_group(&brokers, &group, 1)
        .await
        .unwrap();
    assert_eq!(
        moved,
        vec![eventbus::kafka::Position {
            topic: topic.clone(),
            partition: 0,
            offset: 1
        }]
    );
    let again = KafkaSource::new(&brokers);
    let got = receive(&again, &group, &topic, 2).await;
    assert_eq!(
        got.iter().map(|d| d.payload.as_str()).collect::<Vec<_>>(),
        vec!["2", "3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubs_with_different_prefixes_share_a_broker_without_seeing_each_others_events() {
    let Some(ours) = brokers() else { return };
    let theirs = ours.clone().with_prefix(testkit::kafka_prefix());
    let topic = format!("shared-{}", Uuid::now_v7().simple());
    for settings in [&ours, &theirs] {
        create_topics(settings, 1, &[(topic.clone(), 1, 86_400_000)])
            .await
            .unwrap();
    }
    KafkaSink::new(&theirs)
        .unwrap()
        .publish(&[record(&topic, "k", 1)])
        .await
        .unwrap();
    KafkaSink::new(&ours)
        .unwrap()
        .publish(&[record(&topic, "k", 2)])
        .await
        .unwrap();
    let source = KafkaSource::new(&ours);
    let got = receive(&source, "same-group-name", &topic, 1).await;
    assert_eq!(
        (got[0].payload.as_str(), got[0].topic.as_str()),
        ("2", topic.as_str())
    );
    let more = source
        .poll("same-group-name", &[&topic], 10, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(more.is_empty(), "read another prefix's event: {more:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_dead_letters_can_be_listed_and_replayed_onto_their_topic() {
    let Some(brokers) = brokers() else { return };
    eventbus::kafka::ensure_topics(&brokers, 1).await.unwrap();
    let topic = topic(&brokers, 1).await;
    let letter = eventbus::consumer::DeadLetter {
        consumer: format!("dlq-test-{}", Uuid::now_v7().simple()),
        error: "no such patient in this tenant".into(),
        attempts: 1,
        original_topic: topic.clone(),
        original_offset: 7,
        original_key: "k".into(),
        payload: "{\"n\": 1}".into(),
        dead_lettered_at: chrono::Utc::now(),
    };
    let record = Record {
        topic: "dlq-events".into(),
        key: "k".into(),
        event_id: Uuid::now_v7(),
        payload: serde_json::to_string(&letter).unwrap(),
    };
    KafkaSink::new(&brokers)
        .unwrap()
        .publish(&[record])
        .await
        .unwrap();

    let listed = eventbus::kafka::dead_letters(&brokers).await.unwrap();
    let (partition, offset, found) = listed
        .into_iter()
        .find(|(.., l)| l.consumer == letter.consumer)
        .unwrap();
    assert_eq!(found, letter);

    let replayed = eventbus::kafka::replay_dead_letter(&brokers, partition, offset)
        .await
        .unwrap();
    assert_eq!(replayed, Some(letter.clone()));
    let source = KafkaSource::new(&brokers);
    let got = receive(
        &source,
        &format!("replay-{}", Uuid::now_v7().simple()),
        &topic,
        1,
    )
    .await;
    assert_eq!(
        (got[0].payload.as_str(), got[0].key.as_str()),
        ("{\"n\": 1}", "k")
    );
    assert!(
        eventbus::kafka::replay_dead_letter(&brokers, 99, 99)
            .await
            .unwrap()
            .is_none()
    );
}
