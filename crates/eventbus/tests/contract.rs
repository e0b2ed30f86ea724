//! The event log's contract (what every sink/source must do), run on the embedded log over
//! SQLite and over PostgreSQL. The Kafka implementation will run the same suite.

#![allow(clippy::unwrap_used)]

use eventbus::embedded::EmbeddedLog;
use eventbus::relay::OutboxRelay;
use eventbus::{Delivery, EventSink, EventSource, Record};
use std::sync::Arc;
use std::time::Duration;
use store::{Db, StoreConfig};
use testkit::TestDatabase;
use uuid::Uuid;

const TOPIC: &str = "lab-events";

fn config(db: &TestDatabase) -> StoreConfig {
    StoreConfig {
        data_dir: db.data_dir(),
        database_url: db.url(),
        max_connections: 4,
    }
}

async fn log(db: &TestDatabase) -> EmbeddedLog {
    EmbeddedLog::open(&config(db)).await.unwrap()
}

fn record(key: &str, n: usize) -> Record {
    Record {
        topic: TOPIC.into(),
        key: key.into(),
        event_id: Uuid::now_v7(),
        payload: format!("{{\"n\": {n}}}"),
    }
}

async fn poll(log: &EmbeddedLog, group: &str) -> Vec<Delivery> {
    log.poll(group, &[TOPIC], 100, Duration::ZERO)
        .await
        .unwrap()
}

macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(testkit::TestDatabase::sqlite()).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = testkit::TestDatabase::postgres().await {
                        super::$name(db).await
                    }
                }
            )+
        }
    };
}

on_both_backends!(
    one_keys_events_arrive_in_the_order_they_were_published,
    an_event_published_twice_is_delivered_once,
    uncommitted_deliveries_come_again_after_a_crash,
    each_group_resumes_from_its_own_committed_position,
    the_relay_publishes_committed_outbox_rows_in_order_exactly_once,
    lag_counts_stop_at_the_cap,
);

async fn one_keys_events_arrive_in_the_order_they_were_published(db: TestDatabase) {
    let log = log(&db).await;
    for batch in 0..3 {
        let records: Vec<_> = (0..4)
            .map(|i| record(if i % 2 == 0 { "a" } else { "b" }, batch * 4 + i))
            .collect();
        log.publish(&records).await.unwrap();
    }
    let got = poll(&log, "g").await;
    let of_a: Vec<_> = got
        .iter()
        .filter(|d| d.key == "a")
        .map(|d| d.payload.clone())
        .collect();
    let expected: Vec<_> = (0..12)
        .filter(|n| n % 2 == 0)
        .map(|n| format!("{{\"n\": {n}}}"))
        .collect();
    assert_eq!(of_a, expected);
    assert!(got.windows(2).all(|w| w[0].offset < w[1].offset));
    // Other topics are not delivered to a group that did not ask for them.
    log.publish(&[Record {
        topic: "patient-events".into(),
        ..record("a", 99)
    }])
    .await
    .unwrap();
    assert_eq!(poll(&log, "other").await.len(), 12);
}

async fn an_event_published_twice_is_delivered_once(db: TestDatabase) {
    let log = log(&db).await;
    let r = record("k", 1);
    log.publish(std::slice::from_ref(&r)).await.unwrap();
    log.publish(&[r.clone(), record("k", 2)]).await.unwrap();
    let got = poll(&log, "g").await;
    assert_eq!(
        got.iter().map(|d| d.payload.as_str()).collect::<Vec<_>>(),
        vec!["{\"n\": 1}", "{\"n\": 2}"]
    );
}

async fn uncommitted_deliveries_come_again_after_a_crash(db: TestDatabase) {
    let log = log(&db).await;
    log.publish(&[record("k", 1), record("k", 2), record("k", 3)])
        .await
        .unwrap();
    let first = poll(&log, "g").await;
    log.commit("g", &first[..1]).await.unwrap();
    // The consumer dies here, before committing the rest; a new one (a restart) takes over.
    drop(log);
    let restarted = EmbeddedLog::open(&config(&db)).await.unwrap();
    let again = poll(&restarted, "g").await;
    assert_eq!(again, first[1..].to_vec());
}

async fn each_group_resumes_from_its_own_committed_position(db: TestDatabase) {
    let log = log(&db).await;
    log.publish(&[record("k", 1), record("k", 2)])
        .await
        .unwrap();
    let a = poll(&log, "group-a").await;
    log.commit("group-a", &a).await.unwrap();
    log.publish(&[record("k", 3)]).await.unwrap();
    let a = poll(&log, "group-a").await;
    assert_eq!(
        a.iter().map(|d| d.payload.as_str()).collect::<Vec<_>>(),
        vec!["{\"n\": 3}"]
    );
    assert_eq!(
        poll(&log, "group-b").await.len(),
        3,
        "a new group starts at the beginning"
    );
    let waiting = |lags: Vec<eventbus::Lag>| lags.iter().map(|l| l.waiting).sum::<i64>();
    assert_eq!(waiting(log.lag("group-a", &[TOPIC]).await.unwrap()), 1);
    assert_eq!(waiting(log.lag("group-b", &[TOPIC]).await.unwrap()), 3);
    // A replay moves a group back.
    log.seek("group-a", 0).await.unwrap();
    assert_eq!(poll(&log, "group-a").await.len(), 3);
}

async fn the_relay_publishes_committed_outbox_rows_in_order_exactly_once(db: TestDatabase) {
    let log = Arc::new(log(&db).await);
    let service = Db::connect("patient", &config(&db)).await.unwrap();
    store::migrate(&service, &[store::outbox::MIGRATIONS])
        .await
        .unwrap();
    let meta = events::EventMeta {
        source: "patient",
        tenant: kernel::TenantId::parse("t").unwrap(),
        correlation_id: kernel::ids::CorrelationId::new(),
        causation_id: None,
        occurred_at: chrono::Utc::now(),
    };
    let patient = kernel::ids::PatientId::new();
    let mut written = Vec::new();
    for i in 0..3 {
        let e = events::EventEnvelope::new(
            &meta,
            patient,
            &events::patient::PatientUpdatedV1 {
                patient_id: patient,
                version: i,
                changed_fields: vec![],
            },
        );
        let mut tx = service.begin().await.unwrap();
        store::outbox::append(&mut tx, std::slice::from_ref(&e))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        written.push(e.event_id);
    }
    // A rolled-back transaction's event must never be published.
    let mut tx = service.begin().await.unwrap();
    let ghost = events::EventEnvelope::new(
        &meta,
        patient,
        &events::patient::PatientDeletedV1 {
            patient_id: patient,
            deleted_at: chrono::Utc::now(),
        },
    );
    store::outbox::append(&mut tx, &[ghost]).await.unwrap();
    drop(tx);

    let relay = OutboxRelay::new("patient", service.clone(), log.clone());
    assert_eq!(relay.publish_pending().await.unwrap(), 3);
    assert_eq!(
        relay.publish_pending().await.unwrap(),
        0,
        "published rows are marked"
    );
    let got = log
        .poll("g", &["patient-events"], 100, Duration::ZERO)
        .await
        .unwrap();
    let ids: Vec<_> = got
        .iter()
        .map(|d| {
            serde_json::from_str::<events::EventEnvelope>(&d.payload)
                .unwrap()
                .event_id
        })
        .collect();
    assert_eq!(ids, written);
    assert!(got.iter().all(|d| d.key == patient.to_string()));
    service.close().await;
}

async fn lag_counts_stop_at_the_cap(db: TestDatabase) {
    let log = log(&db).await;
    let records: Vec<_> = (0..eventbus::COUNT_CAP as usize + 5)
        .map(|n| record("k", n))
        .collect();
    log.publish(&records).await.unwrap();
    let lags = log.lag("g", &[TOPIC]).await.unwrap();
    assert_eq!(
        lags.iter().map(|l| l.waiting).sum::<i64>(),
        eventbus::COUNT_CAP
    );
}
