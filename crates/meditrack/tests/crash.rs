//! Crash safety, proven on the real executable: while registrations (outbox → relay →
//! backbone) and lab results (backbone → consumer → timeline) flow, the hub is killed with
//! SIGKILL at random moments and restarted. Afterwards every accepted registration has
//! exactly one `patient.created.v1` (one event id; Kafka may carry a copy that a relay
//! crash between publishing and marking sent twice, which consumers' inboxes absorb), and
//! every lab result exactly one timeline entry, with nothing dead-lettered (a second
//! application would have failed and landed there).
//!
//! Run on the embedded default (SQLite + embedded log) and, with `--features kafka`, on the
//! split patient service over PostgreSQL + the Kafka-protocol test broker.
//!
//! Also here: a PostgreSQL connection the server dropped is not handed to a request.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Process, free_port, serve, temp_dir};
use eventbus::{Delivery, EventSink};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use store::{Db, StoreConfig, on_pool};

const RESULTS: usize = 2_000;

/// Cheap jitter without a random-number crate: the clock's nanoseconds.
fn jitter(max_ms: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis(nanos % max_ms)
}

fn lab_result(patient: &str) -> eventbus::Record {
    let event_id = uuid::Uuid::now_v7();
    let envelope = json!({
        "eventId": event_id, "eventType": "lab.results.available.v1", "occurredAt": "2026-11-25T10:00:00Z",
        "source": "lab", "tenantId": "default", "key": patient, "correlationId": uuid::Uuid::now_v7(),
        "payload": {"orderId": uuid::Uuid::now_v7(), "patientId": patient, "testCodes": ["CBC"],
                    "abnormal": false, "reportedAt": "2026-11-25T10:00:00Z"}
    });
    eventbus::Record {
        topic: "lab-events".into(),
        key: patient.into(),
        event_id,
        payload: envelope.to_string(),
    }
}

/// One way of running the hub, and how the test (playing the lab and an auditor) reaches
/// its databases and its backbone.
struct Deployment {
    dir: PathBuf,
    args: Vec<&'static str>,
    env: Vec<(&'static str, String)>,
    store: StoreConfig,
    backbone: Backbone,
}

enum Backbone {
    Embedded(eventbus::embedded::EmbeddedLog),
    #[cfg(feature = "kafka")]
    Kafka(eventbus::kafka::KafkaSettings),
}

impl Deployment {
    async fn start(&self, port: u16) -> Process {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        serve(&self.dir, port, &self.args, &env).await
    }

    async fn login(&self, port: u16) -> reqwest::Client {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let base = format!("http://127.0.0.1:{port}");
        common::logged_in(&self.dir, &env, &base, "DOCTOR").await.0
    }

    async fn publish(&self, records: &[eventbus::Record]) {
        match &self.backbone {
            Backbone::Embedded(log) => log.publish(records).await.unwrap(),
            #[cfg(feature = "kafka")]
            Backbone::Kafka(settings) => eventbus::kafka::KafkaSink::new(settings)
                .unwrap()
                .publish(records)
                .await
                .unwrap(),
        }
    }

    async fn records(&self, topic: &str) -> Vec<Delivery> {
        match &self.backbone {
            Backbone::Embedded(log) => log.records(topic, 0, 1_000_000).await.unwrap(),
            #[cfg(feature = "kafka")]
            Backbone::Kafka(settings) => eventbus::kafka::read_all(settings, topic).await.unwrap(),
        }
    }

    /// A count in the patient database, read through its own connection.
    async fn count(&self, sql: &'static str) -> i64 {
        let db = Db::connect("patient", &self.store).await.unwrap();
        let n = on_pool!(&db, |c| sqlx::query_scalar(sql).fetch_one(c).await).unwrap();
        db.close().await;
        n
    }
}

const APPLIED: &str =
    "SELECT COUNT(*) FROM patient_timeline WHERE entry_type = 'LAB_RESULTS_AVAILABLE'";
const UNPUBLISHED: &str = "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL";

async fn no_event_is_lost_or_applied_twice_across(deployment: Deployment, kills: usize) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/api/v1/patients");

    // A few patients for the lab results to refer to.
    let mut hub = deployment.start(port).await;
    let mut client = deployment.login(port).await;
    let mut patients = Vec::new();
    for i in 0..10 {
        let body = json!({"firstName": "Crash", "lastName": format!("Test{i}"), "dateOfBirth": "1970-01-01"});
        let created: Value = client
            .post(&base)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        patients.push(created["id"].as_str().unwrap().to_owned());
    }
    let results: Vec<_> = (0..RESULTS)
        .map(|i| lab_result(&patients[i % patients.len()]))
        .collect();

    let mut accepted = Vec::new();
    let mut published = 0;
    for (round, share) in results.chunks(RESULTS.div_ceil(kills)).enumerate() {
        // Results arrive in batches while the hub consumes and registrations keep coming.
        for batch in share.chunks(100) {
            deployment.publish(batch).await;
        }
        published += share.len();
        // Killed at a random moment once this round's results have begun to apply, so that
        // the kill lands mid-stream (a restarted consumer may take seconds to rejoin).
        let before = deployment.count(APPLIED).await;
        let started = Instant::now();
        let mut until = started + Duration::from_millis(150) + jitter(450);
        let mut n = 0;
        loop {
            let body = json!({"firstName": "Flow", "lastName": format!("R{round}N{n}"), "dateOfBirth": "1980-01-01"});
            if let Ok(r) = client.post(&base).json(&body).send().await
                && r.status() == 201
            {
                let created: Value = r.json().await.unwrap();
                accepted.push(created["id"].as_str().unwrap().to_owned());
            }
            n += 1;
            if Instant::now() >= until {
                if deployment.count(APPLIED).await > before {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "round {round}: no result applied in a minute"
                );
                until = Instant::now() + jitter(100);
            }
        }
        let applied = deployment.count(APPLIED).await;
        hub.kill_9();
        eprintln!(
            "round {round}: killed with {applied} of {published} results applied, {} registrations accepted",
            accepted.len()
        );
        hub = deployment.start(port).await;
        // Access tokens last 5 minutes; a fresh one per round outlives any round.
        client = deployment.login(port).await;
    }

    // Let the restarted hub catch up, then check every effect.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let applied = deployment.count(APPLIED).await;
        let unpublished = deployment.count(UNPUBLISHED).await;
        if applied as usize == RESULTS && unpublished == 0 {
            break;
        }
        assert!(
            applied as usize <= RESULTS,
            "a lab result was applied twice: {applied}"
        );
        assert!(
            Instant::now() < deadline,
            "stuck: {applied} of {RESULTS} applied, {unpublished} unpublished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let dead = deployment.records("dlq-events").await;
    assert!(dead.is_empty(), "dead letters after crashes: {dead:?}");

    let mut created_events: HashMap<String, HashSet<String>> = HashMap::new();
    for d in deployment.records("patient-events").await {
        let e: Value = serde_json::from_str(&d.payload).unwrap();
        if e["eventType"] == "patient.created.v1" {
            created_events
                .entry(e["key"].as_str().unwrap().to_owned())
                .or_default()
                .insert(e["eventId"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        accepted.len() > kills,
        "registrations flowed between kills: {}",
        accepted.len()
    );
    for id in accepted.iter().chain(&patients) {
        assert_eq!(
            created_events.get(id).map(HashSet::len),
            Some(1),
            "patient {id}: accepted, so exactly one patient.created.v1"
        );
    }
    assert_eq!(
        created_events.len(),
        accepted.len() + patients.len(),
        "no event for a registration that was not accepted"
    );

    hub.kill_9();
    let _ = std::fs::remove_dir_all(&deployment.dir);
}

fn embedded_store(dir: &Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.join("data"),
        database_url: None,
        max_connections: 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_embedded_default_no_event_is_lost_or_applied_twice_across_sigkills() {
    let dir = temp_dir("crash");
    let store = embedded_store(&dir);
    let log = eventbus::embedded::EmbeddedLog::open(&store).await.unwrap();
    let deployment = Deployment {
        dir,
        args: Vec::new(),
        env: Vec::new(),
        store,
        backbone: Backbone::Embedded(log),
    };
    no_event_is_lost_or_applied_twice_across(deployment, 5).await;
}

/// The patient service alone (split mode) over PostgreSQL and Kafka. Each restart rejoins
/// the consumer group (a few seconds on the test broker), so this run kills fewer times.
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_and_kafka_no_event_is_lost_or_applied_twice_across_sigkills() {
    let Some(brokers) = testkit::kafka_brokers() else {
        return;
    };
    let Some(database) = testkit::TestDatabase::postgres().await else {
        return;
    };
    let url = database.url().unwrap();
    let prefix = testkit::kafka_prefix();
    let settings = eventbus::kafka::KafkaSettings::new(&brokers)
        .with_prefix(&prefix)
        .with_producer(testkit::TEST_BROKER_PRODUCER_CONFIG);
    let deployment = Deployment {
        dir: temp_dir("crash-kafka"),
        // Split mode: the patient service as a process of its own (with the issuer of
        // the tokens it is called with).
        args: vec!["--services", "patient,identity"],
        env: common::kafka_env(&brokers, &prefix, Some(&url)),
        store: StoreConfig {
            data_dir: PathBuf::new(),
            database_url: Some(url.clone()),
            max_connections: 2,
        },
        backbone: Backbone::Kafka(settings),
    };
    no_event_is_lost_or_applied_twice_across(deployment, 3).await;
    drop(database);
}

/// A PostgreSQL connection the server dropped while it sat idle in the pool (a restart, a
/// failover, an idle timeout) is checked and replaced before a request gets it, although
/// connections in steady use are not pinged before each transaction.
#[tokio::test]
async fn a_postgresql_connection_dropped_while_idle_is_replaced_before_use() {
    let Some(admin) = testkit::postgres_server().await else {
        return;
    };
    let db = Db::connect_postgres("public", &admin, 1).await.unwrap();
    let backend = || async {
        on_pool!(&db, |c| sqlx::query_scalar::<_, i32>(
            "SELECT pg_backend_pid()"
        )
        .fetch_one(c)
        .await)
        .unwrap()
    };
    let first = backend().await;
    let mut admin_conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(first)
        .execute(&mut admin_conn)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_ne!(backend().await, first, "a new connection answered");
    db.close().await;
}
