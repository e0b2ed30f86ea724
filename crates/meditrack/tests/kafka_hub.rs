//! The hub with `MEDITRACK_KAFKA_BROKERS` set (built with `--features kafka`): it creates the
//! topics of 000 §3.1, reports the broker in readiness, and its outbox relay publishes to
//! Kafka, keyed by patient, in order.

#![allow(clippy::unwrap_used)]

mod common;

use eventbus::EventSource;
use eventbus::kafka::{KafkaSettings, KafkaSource};
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
    let reader = KafkaSource::new(&KafkaSettings::new(&brokers).with_prefix(app.kafka_prefix()));
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

/// A lab result for a patient this hub does not know is dead-lettered by the patient
/// consumer on Kafka, with the reason, and a replay puts it back through the consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_a_poison_event_is_dead_lettered_and_can_be_replayed() {
    let Some(brokers) = testkit::kafka_brokers() else {
        return;
    };
    let app = TestApp::sqlite_with_kafka(&brokers).await;
    let settings = KafkaSettings::new(&brokers).with_prefix(app.kafka_prefix());
    let unknown = uuid::Uuid::now_v7().to_string();
    let poison = json!({
        "eventId": uuid::Uuid::now_v7(), "eventType": "lab.results.available.v1", "occurredAt": "2026-11-25T10:00:00Z",
        "source": "lab", "tenantId": testkit::TEST_TENANT, "key": unknown, "correlationId": uuid::Uuid::now_v7(),
        "payload": {"orderId": uuid::Uuid::now_v7(), "patientId": unknown, "testCodes": ["CBC"],
                    "abnormal": false, "reportedAt": "2026-11-25T10:00:00Z"}
    });
    let record = eventbus::Record {
        topic: "lab-events".into(),
        key: unknown.clone(),
        event_id: uuid::Uuid::now_v7(),
        payload: poison.to_string(),
    };
    eventbus::EventSink::publish(
        &eventbus::kafka::KafkaSink::new(&settings).unwrap(),
        &[record],
    )
    .await
    .unwrap();

    let letters = |count: usize| {
        let settings = settings.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(45);
            loop {
                let letters = eventbus::kafka::dead_letters(&settings).await.unwrap();
                if letters.len() >= count {
                    break letters;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{} of {count} dead letters",
                    letters.len()
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    let first = letters(1).await;
    let (partition, offset, letter) = &first[0];
    assert_eq!(
        (letter.consumer.as_str(), letter.original_topic.as_str()),
        ("patient", "lab-events")
    );
    assert!(letter.error.contains("no such patient"), "{}", letter.error);
    assert_eq!(
        serde_json::from_str::<Value>(&letter.payload).unwrap(),
        poison
    );
    eventbus::kafka::replay_dead_letter(&settings, *partition, *offset)
        .await
        .unwrap()
        .unwrap();
    // Still unknown, so it goes round once more: proof that the replay reached the consumer.
    assert_eq!(letters(2).await.len(), 2);
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
    let prefix = testkit::kafka_prefix();
    let env = common::kafka_env(&brokers, &prefix, Some(&url));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let deployment = common::split(&root, &env).await;
    let gateway_port = deployment.gateway_port;
    let (client, _) = common::logged_in(
        &root.join("gateway"),
        &[],
        &format!("http://127.0.0.1:{gateway_port}"),
        "DOCTOR",
    )
    .await;
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

    let reader = KafkaSource::new(&KafkaSettings::new(&brokers).with_prefix(&prefix));
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

/// The operator's commands on Kafka: `events init-topics`, `events dlq list|show|replay`, and
/// `events replay --consumer` moving an idle group back so it reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_commands_work_on_kafka() {
    let Some(brokers) = testkit::kafka_brokers() else {
        return;
    };
    let prefix = testkit::kafka_prefix();
    let env = common::kafka_env(&brokers, &prefix, None);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("MEDITRACK_DATABASE_URL")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&["events", "init-topics", "--replication", "0"]);
    assert!(!ok && err.contains("at least 1"), "{err}");
    let (ok, out, err) = run(&["events", "init-topics"]);
    assert!(ok && out.contains("exist"), "{out}{err}");
    let (ok, out, _) = run(&["events", "dlq", "list"]);
    assert!(
        ok && out.contains("empty"),
        "a fresh prefix has an empty DLQ: {out}"
    );

    let settings = KafkaSettings::new(&brokers).with_prefix(&prefix);
    let letter = json!({
        "consumer": "patient", "error": "the payload does not match lab.results.available.v1", "attempts": 1,
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
        &eventbus::kafka::KafkaSink::new(&settings).unwrap(),
        &[record],
    )
    .await
    .unwrap();

    let (ok, listed, err) = run(&["events", "dlq", "list"]);
    assert!(ok, "{err}");
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let at = listed.split('\t').next().unwrap().to_owned();
    assert!(
        at.contains(':'),
        "Kafka positions are partition:offset: {at}"
    );
    let (ok, shown, _) = run(&["events", "dlq", "show", &at]);
    assert!(ok);
    assert_eq!(serde_json::from_str::<Value>(&shown).unwrap(), letter);
    let (ok, out, err) = run(&["events", "dlq", "show", "1:4242"]);
    assert!(
        !ok && err.contains("no dead letter at 1:4242"),
        "{out}{err}"
    );
    let (ok, replayed, _) = run(&["events", "dlq", "replay", &at]);
    assert!(ok && replayed.contains("onto lab-events"), "{replayed}");
    let (ok, listed, err) = run(&["events", "list", "--topic", "lab-events"]);
    assert!(ok, "{err}");
    let line = listed.lines().next().unwrap_or_default();
    assert!(
        line.contains(':') && line.split('\t').nth(1) == Some("k"),
        "the replayed event, at partition:offset: {listed}"
    );

    // The replayed event is on lab-events now; a group that read it can be sent back.
    let reader = KafkaSource::new(&settings);
    let read = |reader: KafkaSource| async move {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing on lab-events"
            );
            let got = reader
                .poll("patient", &["lab-events"], 10, Duration::from_millis(500))
                .await
                .unwrap();
            if !got.is_empty() {
                reader.commit("patient", &got).await.unwrap();
                break got;
            }
        }
    };
    let first = read(reader).await;
    assert_eq!(first[0].payload, "{}");
    let (ok, out, err) = run(&["events", "replay", "--consumer", "patient", "--from", "0"]);
    assert!(
        ok && out.contains(&format!(
            "lab-events:{} again from offset 0",
            first[0].partition
        )),
        "{out}{err}"
    );
    let again = read(KafkaSource::new(&settings)).await;
    assert_eq!(again, first);
    let (ok, out, _) = run(&["events", "replay", "--consumer", "nobody", "--from", "0"]);
    assert!(ok && out.contains("no committed positions"), "{out}");
}
