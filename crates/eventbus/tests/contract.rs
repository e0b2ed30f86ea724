//! The event log's contract (what every sink/source must do, `common/mod.rs`, also run on
//! Kafka by `kafka.rs`), plus what the embedded log adds, on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

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

/// The embedded log as a contract backbone: each `open` is a new log over the same database.
async fn backbone(db: &TestDatabase) -> common::Backbone {
    let config = config(db);
    common::Backbone {
        sink: Arc::new(log(db).await),
        open: Box::new(move || {
            let config = config.clone();
            Box::pin(async move {
                Arc::new(EmbeddedLog::open(&config).await.unwrap()) as Arc<dyn EventSource>
            })
        }),
        topic: TOPIC.to_owned(),
    }
}

async fn each_keys_events_arrive_in_the_order_they_were_published(db: TestDatabase) {
    common::each_keys_events_arrive_in_the_order_they_were_published(backbone(&db).await).await;
}

async fn uncommitted_deliveries_come_again_after_a_crash(db: TestDatabase) {
    common::uncommitted_deliveries_come_again_after_a_crash(backbone(&db).await).await;
}

async fn each_group_resumes_from_its_own_committed_position(db: TestDatabase) {
    common::each_group_resumes_from_its_own_committed_position(backbone(&db).await).await;
}

async fn poll(log: &EmbeddedLog, group: &str) -> Vec<Delivery> {
    log.poll(group, &[TOPIC], 100, Duration::ZERO)
        .await
        .unwrap()
}

testkit::on_both_databases!(
    each_keys_events_arrive_in_the_order_they_were_published,
    uncommitted_deliveries_come_again_after_a_crash,
    each_group_resumes_from_its_own_committed_position,
    a_group_receives_only_the_topics_it_asks_for,
    an_event_published_twice_is_delivered_once,
    lag_and_replay_follow_the_committed_position,
    the_relay_publishes_committed_outbox_rows_in_order_exactly_once,
    published_rows_leave_the_outbox_after_their_retention_and_unpublished_ones_stay,
    writers_do_not_wait_while_the_relay_publishes,
    lag_counts_stop_at_the_cap,
    a_group_of_several_topics_receives_them_in_log_order_up_to_its_batch,
    a_group_reads_its_topics_from_their_index_whatever_else_was_published,
    a_waiting_group_wakes_for_its_own_topics_only,
);

async fn a_group_receives_only_the_topics_it_asks_for(db: TestDatabase) {
    let log = log(&db).await;
    log.publish(&[record("a", 1)]).await.unwrap();
    log.publish(&[Record {
        topic: "patient-events".into(),
        ..record("a", 99)
    }])
    .await
    .unwrap();
    let got = poll(&log, "g").await;
    assert_eq!(
        got.iter().map(|d| d.topic.as_str()).collect::<Vec<_>>(),
        vec![TOPIC]
    );
}

async fn a_group_of_several_topics_receives_them_in_log_order_up_to_its_batch(db: TestDatabase) {
    let log = log(&db).await;
    let on = |topic: &str, n| Record {
        topic: topic.into(),
        ..record("k", n)
    };
    log.publish(&[
        on("patient-events", 1),
        on(TOPIC, 2),
        on("audit-events", 3),
        on("patient-events", 4),
        on(TOPIC, 5),
        on(TOPIC, 6),
    ])
    .await
    .unwrap();
    let topics = ["patient-events", TOPIC];
    let payloads = |got: &[Delivery]| got.iter().map(|d| d.payload.clone()).collect::<Vec<_>>();
    let first = log.poll("g", &topics, 3, Duration::ZERO).await.unwrap();
    assert_eq!(
        payloads(&first),
        vec!["{\"n\": 1}", "{\"n\": 2}", "{\"n\": 4}"]
    );
    log.commit("g", &first).await.unwrap();
    let rest = log.poll("g", &topics, 3, Duration::ZERO).await.unwrap();
    assert_eq!(payloads(&rest), vec!["{\"n\": 5}", "{\"n\": 6}"]);
}

/// A group whose topics were quiet while another was busy (the audit trail's, on every read
/// of a patient) must not read that other topic's records to find it has nothing to do.
async fn a_group_reads_its_topics_from_their_index_whatever_else_was_published(db: TestDatabase) {
    let log = log(&db).await;
    let own: Vec<Record> = (0..500).map(|n| record("k", n)).collect();
    log.publish(&own).await.unwrap();
    loop {
        let got = log.poll("g", &[TOPIC], 500, Duration::ZERO).await.unwrap();
        if got.is_empty() {
            break;
        }
        log.commit("g", &got).await.unwrap();
    }
    let busy: Vec<Record> = (0..20_000)
        .map(|n| Record {
            topic: "audit-events".into(),
            ..record("k", n)
        })
        .collect();
    log.publish(&busy).await.unwrap();
    store::on_pool!(log.db(), |c| sqlx::query("ANALYZE event_log")
        .execute(c)
        .await
        .map(|_| ()))
    .unwrap();
    for topics in [&[TOPIC][..], &[TOPIC, "patient-events"][..]] {
        let plan = log.read_plan("g", topics).await.unwrap();
        assert!(plan.contains("idx_event_log_topic"), "{plan}");
        assert!(
            !plan.contains("event_log_pkey") && !plan.contains("SCAN event_log"),
            "{plan}"
        );
    }
}

/// A waiting group is woken by an append to one of its topics, not by the audit trail's
/// appends to another: each wake-up costs it reads of the log.
async fn a_waiting_group_wakes_for_its_own_topics_only(db: TestDatabase) {
    let log = log(&db).await;
    let waiting = log.poll("g", &[TOPIC], 100, Duration::from_secs(5));
    let publishing = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log.publish(&[Record {
            topic: "audit-events".into(),
            ..record("k", 1)
        }])
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        log.publish(&[record("k", 2)]).await.unwrap();
    };
    let (got, ()) = tokio::join!(waiting, publishing);
    let got = got.unwrap();
    assert_eq!(
        got.iter().map(|d| d.payload.as_str()).collect::<Vec<_>>(),
        vec!["{\"n\": 2}"],
        "woken by its own topic's record, not before"
    );
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

async fn lag_and_replay_follow_the_committed_position(db: TestDatabase) {
    let log = log(&db).await;
    log.publish(&[record("k", 1), record("k", 2), record("k", 3)])
        .await
        .unwrap();
    let a = poll(&log, "group-a").await;
    log.commit("group-a", &a[..2]).await.unwrap();
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
    let meta = meta();
    let patient = kernel::ids::PatientId::new();
    let mut written = Vec::new();
    for i in 0..3 {
        let e = updated(patient, i);
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

/// Published rows go once past `store::outbox::keep_published`, the oldest first, a
/// window at a time; rows not yet published stay whatever their age.
async fn published_rows_leave_the_outbox_after_their_retention_and_unpublished_ones_stay(
    db: TestDatabase,
) {
    let log = Arc::new(log(&db).await);
    let service = Db::connect("patient", &config(&db)).await.unwrap();
    store::migrate(&service, &[store::outbox::MIGRATIONS])
        .await
        .unwrap();
    let patient = kernel::ids::PatientId::new();
    let append = |n: i64| {
        let service = service.clone();
        async move {
            let mut tx = service.begin().await.unwrap();
            store::outbox::append(&mut tx, &[updated(patient, n)])
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    };
    for n in 0..5 {
        append(n).await;
    }
    let relay = OutboxRelay::new("patient", service.clone(), log.clone());
    assert_eq!(relay.publish_pending().await.unwrap(), 5);
    append(5).await;
    let left = || async { store::outbox::read(&service, 0, 100).await.unwrap().len() };
    // Published minutes ago: within their retention.
    let retention_ago = chrono::Utc::now() - store::outbox::keep_published();
    assert_eq!(
        store::outbox::purge_published(&service, retention_ago, 100)
            .await
            .unwrap(),
        0
    );
    // As if their week had passed: the window of the oldest three goes whole, then the
    // other two published; the unpublished one stays.
    let later = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    let purged = |window| store::outbox::purge_published(&service, later, window);
    assert_eq!(purged(3).await.unwrap(), 3);
    assert_eq!(left().await, 3);
    assert_eq!(purged(100).await.unwrap(), 2);
    let rows = store::outbox::read(&service, 0, 100).await.unwrap();
    let versions: Vec<i64> = rows
        .iter()
        .map(|r| r.envelope.0.payload["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [5]);

    // A relay purges on its own: rows published more than the retention ago go at its
    // first round.
    assert_eq!(relay.publish_pending().await.unwrap(), 1);
    let mut tx = service.begin_in(store::Scope::AllTenants).await.unwrap();
    store::execute!(
        &mut tx,
        sqlx::query("UPDATE outbox SET published_at = $1")
            .bind(retention_ago - chrono::TimeDelta::hours(1))
    )
    .unwrap();
    tx.commit().await.unwrap();
    append(6).await;
    let fresh = OutboxRelay::new("patient", service.clone(), log.clone());
    assert_eq!(fresh.publish_pending().await.unwrap(), 1);
    let rows = store::outbox::read(&service, 0, 100).await.unwrap();
    assert_eq!(rows.len(), 1, "only the row published just now is left");
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

fn meta() -> events::EventMeta {
    events::EventMeta {
        source: "patient",
        tenant: kernel::TenantId::parse("t").unwrap(),
        correlation_id: kernel::ids::CorrelationId::new(),
        causation_id: None,
        occurred_at: chrono::Utc::now(),
    }
}

fn updated(patient: kernel::ids::PatientId, n: i64) -> events::EventEnvelope {
    events::EventEnvelope::new(
        &meta(),
        patient,
        &events::patient::PatientUpdatedV1 {
            patient_id: patient,
            version: n,
            changed_fields: vec![],
        },
    )
}

/// The service's writes go on while a batch is with the sink: on SQLite the relay used to
/// hold the database's write lock until the sink answered.
async fn writers_do_not_wait_while_the_relay_publishes(db: TestDatabase) {
    let service = Db::connect("patient", &config(&db)).await.unwrap();
    store::migrate(&service, &[store::outbox::MIGRATIONS])
        .await
        .unwrap();
    let append = |e: events::EventEnvelope| {
        let service = service.clone();
        async move {
            let mut tx = service.begin().await?;
            store::outbox::append(&mut tx, &[e]).await?;
            tx.commit().await
        }
    };
    append(updated(kernel::ids::PatientId::new(), 1))
        .await
        .unwrap();
    let sink = Arc::new(testkit::HeldSink::new());
    let relay = OutboxRelay::new("patient", service.clone(), sink.clone());
    let publishing = tokio::spawn({
        let relay = relay.clone();
        async move { relay.publish_pending().await.unwrap() }
    });
    sink.arrived.notified().await;
    tokio::time::timeout(
        Duration::from_secs(3),
        append(updated(kernel::ids::PatientId::new(), 2)),
    )
    .await
    .expect("a write while the relay waits for its sink")
    .unwrap();
    sink.release.add_permits(1);
    assert_eq!(publishing.await.unwrap(), 1);
    sink.release.add_permits(1);
    assert_eq!(
        relay.publish_pending().await.unwrap(),
        1,
        "the event written meanwhile, in the next batch"
    );
}
