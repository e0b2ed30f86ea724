//! The consumer runtime's contract: exactly-once effects, retries, the DLQ and replay, on
//! SQLite and PostgreSQL, with a handler whose failures the test controls.

#![allow(clippy::unwrap_used)]

use eventbus::consumer::{Consumer, Handler, HandlerError, RetryPolicy};
use eventbus::embedded::EmbeddedLog;
use eventbus::{BoxFuture, EventSink, Record, dlq};
use events::{EventEnvelope, EventMeta, Topic};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;
use store::{Db, StoreConfig, Tx, execute, on_pool};
use testkit::TestDatabase;
use uuid::Uuid;

/// Records each event it applies in `effects`; fails as the test says.
#[derive(Default)]
struct Recorder {
    transient_failures_left: AtomicU32,
    broken: AtomicBool,
    /// Events it can never apply.
    poisoned: std::sync::Mutex<Vec<Uuid>>,
}

impl Handler for Recorder {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            if self
                .poisoned
                .lock()
                .unwrap()
                .contains(&event.event_id.as_uuid())
            {
                return Err(HandlerError::Permanent("poisoned".into()));
            }
            if self.broken.load(Ordering::SeqCst) {
                return Err(HandlerError::Permanent(
                    "the handler cannot apply this yet".into(),
                ));
            }
            if self
                .transient_failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(HandlerError::Transient("busy".into()));
            }
            execute!(
                tx,
                sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                    .bind(event.event_id.as_uuid())
            )
            .map_err(store::DbError::from)?;
            Ok(())
        })
    }
}

/// Applies as [`Recorder`] does, and records the runs the consumer gives it together.
#[derive(Default)]
struct RunRecorder {
    inner: Recorder,
    runs: std::sync::Mutex<Vec<Vec<Uuid>>>,
}

impl Handler for RunRecorder {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Tx,
        event: &'a EventEnvelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { self.handle_all(tx, &[event]).await })
    }

    fn handle_all<'a>(
        &'a self,
        tx: &'a mut Tx,
        events: &'a [&'a EventEnvelope],
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let ids = events.iter().map(|e| e.event_id.as_uuid());
            self.runs.lock().unwrap().push(ids.collect());
            for event in events {
                self.inner.handle(tx, event).await?;
            }
            Ok(())
        })
    }
}

struct Setup {
    log: Arc<EmbeddedLog>,
    service: Db,
    handler: Arc<Recorder>,
    _db: TestDatabase,
}

async fn setup(db: TestDatabase) -> Setup {
    let config = StoreConfig {
        data_dir: db.data_dir(),
        database_url: db.url(),
        max_connections: 4,
    };
    let log = Arc::new(EmbeddedLog::open(&config).await.unwrap());
    let service = Db::connect("patient", &config).await.unwrap();
    store::migrate(&service, &[store::inbox::MIGRATIONS])
        .await
        .unwrap();
    let mut tx = service.begin().await.unwrap();
    execute!(
        &mut tx,
        sqlx::raw_sql("CREATE TABLE effects (event_id UUID NOT NULL)")
    )
    .unwrap();
    tx.commit().await.unwrap();
    Setup {
        log,
        service,
        handler: Arc::new(Recorder::default()),
        _db: db,
    }
}

fn consumer(s: &Setup) -> Consumer {
    Consumer::new(
        "test-consumer",
        s.service.clone(),
        s.log.clone(),
        s.log.clone(),
    )
    .on(
        "lab.results.available.v1",
        Topic::LabEvents,
        s.handler.clone(),
    )
    .with_retry(RetryPolicy { max_attempts: 3 })
}

async fn publish(s: &Setup, event_type: &str) -> EventEnvelope {
    publish_as(s, event_type, "t").await
}

async fn publish_as(s: &Setup, event_type: &str, tenant: &str) -> EventEnvelope {
    let meta = EventMeta {
        source: "test",
        tenant: kernel::TenantId::parse(tenant).unwrap(),
        correlation_id: kernel::ids::CorrelationId::new(),
        causation_id: None,
        occurred_at: chrono::Utc::now(),
    };
    let mut envelope = EventEnvelope::new(
        &meta,
        "key-1",
        &events::patient::PatientDeletedV1 {
            patient_id: kernel::ids::PatientId::new(),
            deleted_at: chrono::Utc::now(),
        },
    );
    envelope.event_type = event_type.into();
    let record = Record {
        topic: "lab-events".into(),
        key: "key-1".into(),
        event_id: Uuid::now_v7(),
        payload: serde_json::to_string(&envelope).unwrap(),
    };
    s.log.publish(&[record]).await.unwrap();
    envelope
}

async fn effects(s: &Setup) -> i64 {
    on_pool!(&s.service, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM effects"
    )
    .fetch_one(c)
    .await)
    .unwrap()
}

async fn drain(c: &Consumer) {
    while c.process_batch(Duration::ZERO).await.unwrap() > 0 {}
}

testkit::on_both_databases!(
    each_event_takes_effect_once_even_when_delivered_again,
    transient_failures_are_retried_until_they_pass,
    events_that_keep_failing_are_dead_lettered_and_replayable_after_a_fix,
    one_bad_event_in_a_batch_costs_the_others_nothing,
    unknown_event_types_and_undecodable_events_do_not_stop_the_consumer,
    a_batch_reaches_a_handler_in_runs_of_one_type_and_tenant_in_order,
    the_inbox_returns_only_the_ids_a_consumer_has_not_applied,
);

/// `record_many` (each backend has its own statements) returns each new id once, however
/// often the batch holds it, and none that the consumer recorded before, nor another
/// consumer's ids as its own; a batch spanning several statements is recorded whole.
async fn the_inbox_returns_only_the_ids_a_consumer_has_not_applied(db: TestDatabase) {
    let s = setup(db).await;
    let ids: Vec<Uuid> = (0..1_200).map(|_| Uuid::now_v7()).collect();
    let record = |consumer: &'static str, batch: Vec<Uuid>| {
        let service = s.service.clone();
        async move {
            let mut tx = service.begin().await.unwrap();
            let fresh = store::inbox::record_many(&mut tx, consumer, &batch)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            fresh
        }
    };
    let first = record("timeline", ids[..700].to_vec()).await;
    assert_eq!(first.len(), 700);
    let mut again = ids.clone();
    again.push(ids[1_000]);
    let second = record("timeline", again).await;
    let expected: std::collections::HashSet<Uuid> = ids[700..].iter().copied().collect();
    assert_eq!(
        second, expected,
        "only the ids not recorded before, each once"
    );
    assert!(record("timeline", ids.clone()).await.is_empty());
    assert_eq!(record("other", ids[..3].to_vec()).await.len(), 3);
}

async fn each_event_takes_effect_once_even_when_delivered_again(db: TestDatabase) {
    let s = setup(db).await;
    let c = consumer(&s);
    publish(&s, "lab.results.available.v1").await;
    publish(&s, "lab.results.available.v1").await;
    drain(&c).await;
    assert_eq!(effects(&s).await, 2);
    s.log.seek("test-consumer", 0).await.unwrap();
    drain(&c).await;
    assert_eq!(effects(&s).await, 2, "redelivery has no second effect");
}

async fn transient_failures_are_retried_until_they_pass(db: TestDatabase) {
    let s = setup(db).await;
    s.handler.transient_failures_left.store(2, Ordering::SeqCst);
    let c = consumer(&s);
    publish(&s, "lab.results.available.v1").await;
    drain(&c).await;
    assert_eq!(effects(&s).await, 1);
    assert!(dlq::list(&s.log, 0, 10).await.unwrap().is_empty());
}

async fn events_that_keep_failing_are_dead_lettered_and_replayable_after_a_fix(db: TestDatabase) {
    let s = setup(db).await;
    s.handler
        .transient_failures_left
        .store(10, Ordering::SeqCst);
    let c = consumer(&s);
    let failing = publish(&s, "lab.results.available.v1").await;
    publish(&s, "lab.results.available.v1").await;
    drain(&c).await;
    // The first exhausted its 3 attempts; the consumer moved on to the second, which
    // failed its 3 too.
    let dead = dlq::list(&s.log, 0, 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(
        (dead[0].letter.attempts, dead[0].letter.consumer.as_str()),
        (3, "test-consumer")
    );
    assert_eq!(
        serde_json::from_str::<EventEnvelope>(&dead[0].letter.payload).unwrap(),
        failing
    );
    assert_eq!(effects(&s).await, 0);

    // Fixed: replay both, and each takes effect exactly once.
    s.handler.transient_failures_left.store(0, Ordering::SeqCst);
    for entry in &dead {
        assert!(dlq::replay(&s.log, entry.offset).await.unwrap().is_some());
    }
    drain(&c).await;
    assert_eq!(effects(&s).await, 2);
    assert!(dlq::replay(&s.log, 999_999).await.unwrap().is_none());

    // A permanent failure is dead-lettered without retries.
    s.handler.broken.store(true, Ordering::SeqCst);
    publish(&s, "lab.results.available.v1").await;
    drain(&c).await;
    let dead = dlq::list(&s.log, 0, 10).await.unwrap();
    assert_eq!(dead.last().unwrap().letter.attempts, 1);
    assert!(dead.last().unwrap().letter.error.contains("cannot apply"));
}

async fn one_bad_event_in_a_batch_costs_the_others_nothing(db: TestDatabase) {
    let s = setup(db).await;
    let c = consumer(&s);
    let mut published = Vec::new();
    for _ in 0..5 {
        published.push(publish(&s, "lab.results.available.v1").await);
    }
    s.handler
        .poisoned
        .lock()
        .unwrap()
        .push(published[2].event_id.as_uuid());
    // All five come in one poll: applied together they would fail together.
    assert_eq!(c.process_batch(Duration::ZERO).await.unwrap(), 5);
    assert_eq!(effects(&s).await, 4);
    let dead = dlq::list(&s.log, 0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        serde_json::from_str::<EventEnvelope>(&dead[0].letter.payload).unwrap(),
        published[2]
    );
    // Delivered again (a crash before the position was committed): nothing changes.
    s.log.seek("test-consumer", 0).await.unwrap();
    drain(&c).await;
    assert_eq!(effects(&s).await, 4);
}

async fn unknown_event_types_and_undecodable_events_do_not_stop_the_consumer(db: TestDatabase) {
    let s = setup(db).await;
    let c = consumer(&s);
    publish(&s, "lab.something.new.v9").await;
    let garbage = Record {
        topic: "lab-events".into(),
        key: "k".into(),
        event_id: Uuid::now_v7(),
        payload: "{\"not\": 1".into(),
    };
    s.log.publish(&[garbage]).await.unwrap();
    publish(&s, "lab.results.available.v1").await;
    drain(&c).await;
    assert_eq!(effects(&s).await, 1);
    let dead = dlq::list(&s.log, 0, 10).await.unwrap();
    assert_eq!(
        dead.len(),
        1,
        "the undecodable one; the unknown type is skipped, not dead-lettered"
    );
    assert_eq!(dead[0].letter.payload, "{\"not\": 1");
}

async fn a_batch_reaches_a_handler_in_runs_of_one_type_and_tenant_in_order(db: TestDatabase) {
    let s = setup(db).await;
    let runs = Arc::new(RunRecorder::default());
    let c = Consumer::new(
        "test-consumer",
        s.service.clone(),
        s.log.clone(),
        s.log.clone(),
    )
    .on("lab.a.v1", Topic::LabEvents, runs.clone())
    .on("lab.b.v1", Topic::LabEvents, runs.clone());
    let mut ids = Vec::new();
    for (event_type, tenant) in [
        ("lab.a.v1", "t"),
        ("lab.a.v1", "t"),
        ("lab.b.v1", "t"),
        ("lab.unknown.v1", "t"),
        ("lab.b.v1", "t"),
        ("lab.b.v1", "u"),
        ("lab.a.v1", "u"),
    ] {
        ids.push(publish_as(&s, event_type, tenant).await.event_id.as_uuid());
    }
    assert_eq!(c.process_batch(Duration::ZERO).await.unwrap(), 7);
    assert_eq!(effects(&s).await, 6);
    assert_eq!(
        *runs.runs.lock().unwrap(),
        vec![
            vec![ids[0], ids[1]],
            // A type the consumer skips does not end a run.
            vec![ids[2], ids[4]],
            vec![ids[5]],
            vec![ids[6]],
        ]
    );
}
