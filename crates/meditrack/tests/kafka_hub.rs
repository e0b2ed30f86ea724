//! The hub with `MEDITRACK_KAFKA_BROKERS` set (built with `--features kafka`): it creates the
//! topics of 000 §3.1, reports the broker in readiness, and its outbox relay publishes to
//! Kafka, keyed by patient, in order.

#![allow(clippy::unwrap_used)]

mod common;

use eventbus::EventSource;
use eventbus::kafka::KafkaSource;
use serde_json::{Value, json};
use std::time::Duration;
use testkit::{TestApp, json as body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_configured_the_hubs_events_go_to_kafka_in_order() {
    let Some(brokers) = testkit::kafka_brokers() else {
        return;
    };
    let app = TestApp::sqlite_with_kafka(&brokers).await;

    let (status, ready) = body(app.get("/health/ready").await).await;
    assert_eq!(
        (
            status,
            ready["components"]["event-backbone"]["status"].as_str()
        ),
        (200, Some("UP")),
        "{ready}"
    );

    let (status, patient) = body(
        app.post_json(
            "/api/v1/patients",
            &json!({"firstName": "Kaf", "lastName": "Ka", "dateOfBirth": "1990-01-01"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201);
    let id = patient["id"].as_str().unwrap().to_owned();
    let mut update = patient.clone();
    update["phone"] = json!("555-234-5678");
    let response = app
        .client
        .put(app.url(&format!("/api/v1/patients/{id}")))
        .header("if-match", "\"1\"")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Once the relay has published both, a reader of its own sees them, in order.
    let db = app.db("patient").await;
    testkit::eventually("the relay to publish to Kafka", || async {
        let unpublished: i64 = store::on_pool!(&db, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL"
        )
        .fetch_one(c)
        .await)
        .unwrap();
        (unpublished == 0).then_some(())
    })
    .await;
    let reader = KafkaSource::new(&brokers);
    let group = format!("probe-{}", uuid::Uuid::now_v7().simple());
    let mut types = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while types.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {types:?} arrived"
        );
        let batch = reader
            .poll(&group, &["patient-events"], 500, Duration::from_millis(500))
            .await
            .unwrap();
        for d in batch.into_iter().filter(|d| d.key == id) {
            let e: Value = serde_json::from_str(&d.payload).unwrap();
            types.push(e["eventType"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(types, vec!["patient.created.v1", "patient.updated.v1"]);
}

/// Split mode as production runs it: the patient service and the gateway as two processes,
/// over PostgreSQL (schema `patient`) and Kafka. A registration through the gateway reaches
/// a consumer in a third process (this test) through the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_over_postgres_and_kafka_a_registration_through_the_gateway_reaches_another_process()
{
    let Some(brokers) = testkit::kafka_brokers() else {
        return;
    };
    let Some(database) = testkit::TestDatabase::postgres().await else {
        return;
    };
    let url = database.url().unwrap();
    let root = std::env::temp_dir().join(format!(
        "meditrack-split-kafka-{}",
        uuid::Uuid::now_v7().simple()
    ));
    let (patient_port, gateway_port) = (common::free_port(), common::free_port());
    let env = [
        ("MEDITRACK_DATABASE_URL", url.as_str()),
        ("MEDITRACK_KAFKA_BROKERS", brokers.as_str()),
    ];
    let _patient = common::serve(
        &root.join("patient"),
        patient_port,
        &["--services", "patient"],
        &env,
    )
    .await;
    let upstream = format!("http://127.0.0.1:{patient_port}");
    let _gateway = common::serve(
        &root.join("gateway"),
        gateway_port,
        &["--services", "gateway"],
        &[("MEDITRACK_PATIENT_URL", &upstream)],
    )
    .await;

    let client = reqwest::Client::new();
    let body = json!({"firstName": "Split", "lastName": "Kafka", "dateOfBirth": "1981-01-01"});
    let response = client
        .post(format!("http://127.0.0.1:{gateway_port}/api/v1/patients"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    // Stored in the patient service's own schema of the shared database.
    let db = store::Db::connect_postgres("patient", &url, 1)
        .await
        .unwrap();
    let stored: i64 = store::on_pool!(&db, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM patient.patients WHERE patient_id = $1"
    )
    .bind(uuid::Uuid::parse_str(&id).unwrap())
    .fetch_one(c)
    .await)
    .unwrap();
    assert_eq!(stored, 1);
    db.close().await;

    let reader = KafkaSource::new(&brokers);
    let group = format!("probe-{}", uuid::Uuid::now_v7().simple());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let event = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "patient.created.v1 did not reach Kafka"
        );
        let batch = reader
            .poll(&group, &["patient-events"], 500, Duration::from_millis(500))
            .await
            .unwrap();
        if let Some(d) = batch.into_iter().find(|d| d.key == id) {
            break serde_json::from_str::<Value>(&d.payload).unwrap();
        }
    };
    assert_eq!(event["eventType"], "patient.created.v1");
    assert_eq!(event["source"], "patient");
    let _ = std::fs::remove_dir_all(root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dlq_commands_work_on_kafka() {
    let Some(brokers) = testkit::kafka_brokers() else {
        return;
    };
    eventbus::kafka::ensure_topics(&brokers, 1).await.unwrap();
    let consumer = format!("cli-test-{}", uuid::Uuid::now_v7().simple());
    let letter = json!({
        "consumer": consumer, "error": "the payload does not match lab.results.available.v1", "attempts": 1,
        "originalTopic": "lab-events", "originalOffset": 3, "originalKey": "k", "payload": "{}",
        "deadLetteredAt": "2026-11-25T10:00:00Z"
    });
    let record = eventbus::Record {
        topic: "dlq-events".into(),
        key: "k".into(),
        event_id: uuid::Uuid::now_v7(),
        payload: letter.to_string(),
    };
    eventbus::EventSink::publish(
        &eventbus::kafka::KafkaSink::new(&brokers).unwrap(),
        &[record],
    )
    .await
    .unwrap();

    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .args(args)
            .env("MEDITRACK_KAFKA_BROKERS", &brokers)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, listed, err) = run(&["events", "dlq", "list", "--limit", "100000"]);
    assert!(ok, "{err}");
    let line = listed
        .lines()
        .find(|l| l.contains(&consumer))
        .unwrap_or_else(|| panic!("not listed:\n{listed}"));
    let at = line.split('\t').next().unwrap().to_owned();
    assert!(
        at.contains(':'),
        "Kafka positions are partition:offset: {at}"
    );
    let (ok, shown, _) = run(&["events", "dlq", "show", &at]);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["consumer"],
        consumer.as_str()
    );
    let (ok, replayed, _) = run(&["events", "dlq", "replay", &at]);
    assert!(ok && replayed.contains("onto lab-events"), "{replayed}");
    let (ok, _, err) = run(&["events", "replay", "--consumer", "patient", "--from", "0"]);
    assert!(!ok && err.contains("not supported yet"), "{err}");
}
