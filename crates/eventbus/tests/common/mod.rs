//! The backbone contract every sink/source pair must keep, written once and run on the
//! embedded log (SQLite and PostgreSQL, `contract.rs`) and on Kafka (`kafka.rs`).

use eventbus::{BoxFuture, Delivery, EventSink, EventSource, Record};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// One backbone under test.
pub struct Backbone {
    pub sink: Arc<dyn EventSink>,
    /// A new reader, as a restarted process opens it.
    pub open: Box<dyn Fn() -> BoxFuture<'static, Arc<dyn EventSource>> + Send + Sync>,
    /// A topic nobody else writes, with several partitions where the backbone has them.
    pub topic: String,
}

pub fn record(topic: &str, key: &str, n: usize) -> Record {
    Record {
        topic: topic.into(),
        key: key.into(),
        event_id: Uuid::now_v7(),
        payload: n.to_string(),
    }
}

/// Polls until `count` deliveries arrived (joining a Kafka group takes a moment).
pub async fn receive(
    source: &dyn EventSource,
    group: &str,
    topic: &str,
    count: usize,
) -> Vec<Delivery> {
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
                .poll(group, &[topic], 100, Duration::from_millis(200))
                .await
                .unwrap(),
        );
    }
    got
}

fn payloads(deliveries: &[Delivery]) -> Vec<&str> {
    deliveries.iter().map(|d| d.payload.as_str()).collect()
}

pub async fn each_keys_events_arrive_in_the_order_they_were_published(b: Backbone) {
    let records: Vec<_> = (0..30)
        .map(|n| record(&b.topic, ["a", "b", "c"][n % 3], n))
        .collect();
    b.sink.publish(&records[..15]).await.unwrap();
    b.sink.publish(&records[15..]).await.unwrap();
    let source = (b.open)().await;
    let got = receive(source.as_ref(), "order", &b.topic, 30).await;
    for key in ["a", "b", "c"] {
        let of_key: Vec<&Delivery> = got.iter().filter(|d| d.key == key).collect();
        let numbers: Vec<usize> = of_key.iter().map(|d| d.payload.parse().unwrap()).collect();
        let expected: Vec<usize> = (0..30).filter(|n| ["a", "b", "c"][n % 3] == key).collect();
        assert_eq!(numbers, expected, "key {key}");
        assert!(
            of_key.iter().all(|d| d.partition == of_key[0].partition),
            "one key, one partition"
        );
        assert!(of_key.windows(2).all(|w| w[0].offset < w[1].offset));
    }
}

pub async fn uncommitted_deliveries_come_again_after_a_crash(b: Backbone) {
    b.sink
        .publish(&[
            record(&b.topic, "k", 1),
            record(&b.topic, "k", 2),
            record(&b.topic, "k", 3),
        ])
        .await
        .unwrap();
    let first = (b.open)().await;
    let got = receive(first.as_ref(), "crash", &b.topic, 3).await;
    first.commit("crash", &got[..1]).await.unwrap();
    // The consumer dies here, before committing the rest; a restart takes over.
    drop(first);
    let restarted = (b.open)().await;
    let again = receive(restarted.as_ref(), "crash", &b.topic, 2).await;
    assert_eq!(payloads(&again), vec!["2", "3"]);
    assert_eq!(again, got[1..].to_vec());
}

pub async fn each_group_resumes_from_its_own_committed_position(b: Backbone) {
    b.sink
        .publish(&[record(&b.topic, "k", 1), record(&b.topic, "k", 2)])
        .await
        .unwrap();
    let a = (b.open)().await;
    let got = receive(a.as_ref(), "group-a", &b.topic, 2).await;
    a.commit("group-a", &got).await.unwrap();
    drop(a);
    b.sink.publish(&[record(&b.topic, "k", 3)]).await.unwrap();
    let a = (b.open)().await;
    let got = receive(a.as_ref(), "group-a", &b.topic, 1).await;
    assert_eq!(payloads(&got), vec!["3"]);
    let other = (b.open)().await;
    assert_eq!(
        payloads(&receive(other.as_ref(), "group-b", &b.topic, 3).await),
        vec!["1", "2", "3"],
        "a new group starts at the beginning"
    );
}
