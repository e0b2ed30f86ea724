//! The sink/source contract on a real Kafka-protocol broker (`MEDITRACK_TEST_KAFKA_BROKERS`,
//! default 127.0.0.1:9092; CI starts `tansu`). Without a broker these tests say so and pass,
//! except under `CI=true`, where a missing broker is a failure.

#![allow(clippy::unwrap_used)]

use eventbus::kafka::{KafkaSink, KafkaSource, create_topics};
use eventbus::{Delivery, EventSink, EventSource, Record};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn brokers() -> Option<String> {
    testkit::kafka_brokers()
}

async fn topic(brokers: &str, partitions: i32) -> String {
    let name = format!("contract-{}", Uuid::now_v7().simple());
    create_topics(brokers, 1, &[(name.clone(), partitions, 86_400_000)])
        .await
        .unwrap();
    name
}

fn record(topic: &str, key: &str, n: usize) -> Record {
    Record {
        topic: topic.into(),
        key: key.into(),
        event_id: Uuid::now_v7(),
        payload: format!("{n}"),
    }
}

/// Polls until `count` deliveries arrived (joining a group takes a moment).
async fn receive(source: &KafkaSource, group: &str, topic: &str, count: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(45);
    let mut got = Vec::new();
    while got.len() < count {
        assert!(
            Instant::now() < deadline,
            "received {} of {count}",
            got.len()
        );
        got.extend(
            source
                .poll(group, &[topic], 100, Duration::from_millis(500))
                .await
                .unwrap(),
        );
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_keeps_each_keys_events_in_order_across_partitions() {
    let Some(brokers) = brokers() else { return };
    let topic = topic(&brokers, 4).await;
    let sink = KafkaSink::new(&brokers).unwrap();
    let records: Vec<_> = (0..30)
        .map(|n| record(&topic, ["a", "b", "c"][n % 3], n))
        .collect();
    sink.publish(&records[..15]).await.unwrap();
    sink.publish(&records[15..]).await.unwrap();
    let source = KafkaSource::new(&brokers);
    let got = receive(&source, "order", &topic, 30).await;
    for key in ["a", "b", "c"] {
        let of_key: Vec<usize> = got
            .iter()
            .filter(|d| d.key == key)
            .map(|d| d.payload.parse().unwrap())
            .collect();
        let mut sorted = of_key.clone();
        sorted.sort_unstable();
        assert_eq!(of_key, sorted, "key {key}");
        assert_eq!(of_key.len(), 10);
        assert!(
            got.iter()
                .filter(|d| d.key == key)
                .all(|d| d.partition == got.iter().find(|x| x.key == key).unwrap().partition)
        );
    }
}

// On tansu 0.6 the member that rejoins a group after an uncommitted crash is assigned the
// partition at the committed offset but is served no records; a raw librdkafka consumer
// does get them when an OffsetFetch/ListOffsets happens in between. Investigation notes
// are on issue 4. The same contract passes on the embedded log (contract.rs).
#[ignore = "tansu 0.6 does not redeliver to a rejoined group member; see issue 4 notes"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_redelivers_what_was_not_committed_before_a_crash() {
    let Some(brokers) = brokers() else { return };
    let topic = topic(&brokers, 1).await;
    let group = format!("crash-{}", Uuid::now_v7().simple());
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
    first.commit(&group, &got[..1]).await.unwrap();
    drop(first); // dies before committing the rest
    let restarted = KafkaSource::new(&brokers);
    let again = receive(&restarted, &group, &topic, 2).await;
    assert_eq!(
        again.iter().map(|d| d.payload.as_str()).collect::<Vec<_>>(),
        vec!["2", "3"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_groups_resume_from_their_own_committed_positions() {
    let Some(brokers) = brokers() else { return };
    let topic = topic(&brokers, 1).await;
    let sink = KafkaSink::new(&brokers).unwrap();
    sink.publish(&[record(&topic, "k", 1), record(&topic, "k", 2)])
        .await
        .unwrap();
    let a = KafkaSource::new(&brokers);
    let got = receive(&a, "group-a", &topic, 2).await;
    a.commit("group-a", &got).await.unwrap();
    drop(a);
    sink.publish(&[record(&topic, "k", 3)]).await.unwrap();
    let a = KafkaSource::new(&brokers);
    let got = receive(&a, "group-a", &topic, 1).await;
    assert_eq!(got[0].payload, "3");
    let b = KafkaSource::new(&brokers);
    assert_eq!(
        receive(&b, "group-b", &topic, 3).await.len(),
        3,
        "a new group starts at the beginning"
    );
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
