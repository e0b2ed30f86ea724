//! Crash safety, proven on the real executable: while registrations (outbox → relay → log)
//! and lab results (log → consumer → timeline) flow, the hub is killed with SIGKILL at
//! random moments and restarted. Afterwards every accepted registration has exactly one
//! `patient.created.v1` in the log, and every lab result exactly one timeline entry, with
//! nothing dead-lettered (a second application would have failed and landed there).

#![allow(clippy::unwrap_used)]

mod common;

use common::{Process, free_port, serve, temp_dir};
use eventbus::EventSink;
use eventbus::embedded::EmbeddedLog;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use store::{Db, StoreConfig, on_pool};

const RESULTS: usize = 2_000;
const KILLS: usize = 5;

/// Cheap jitter without a random-number crate: the clock's nanoseconds.
fn jitter(max_ms: u64) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis(nanos % max_ms)
}

async fn start(dir: &Path, port: u16) -> Process {
    serve(dir, port, &[], &[]).await
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

/// A count in the patient database, read through its own connection.
async fn count(dir: &Path, sql: &'static str) -> i64 {
    let config = StoreConfig {
        data_dir: dir.join("data"),
        database_url: None,
        max_connections: 1,
    };
    let db = Db::connect("patient", &config).await.unwrap();
    let n = on_pool!(&db, |c| sqlx::query_scalar(sql).fetch_one(c).await).unwrap();
    db.close().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_or_applied_twice_across_sigkills() {
    let dir = temp_dir("crash");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/api/v1/patients");
    let client = reqwest::Client::new();

    // A few patients for the lab results to refer to.
    let mut hub = start(&dir, port).await;
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
    let config = StoreConfig {
        data_dir: dir.join("data"),
        database_url: None,
        max_connections: 2,
    };
    let log = EmbeddedLog::open(&config).await.unwrap();
    let results: Vec<_> = (0..RESULTS)
        .map(|i| lab_result(&patients[i % patients.len()]))
        .collect();

    let mut accepted = Vec::new();
    for round in 0..KILLS {
        // Results arrive in batches while the hub consumes and registrations keep coming.
        let chunk = RESULTS / KILLS;
        for batch in results[round * chunk..(round + 1) * chunk].chunks(100) {
            log.publish(batch).await.unwrap();
        }
        let until = Instant::now() + Duration::from_millis(150) + jitter(450);
        let mut n = 0;
        while Instant::now() < until {
            let body = json!({"firstName": "Flow", "lastName": format!("R{round}N{n}"), "dateOfBirth": "1980-01-01"});
            if let Ok(r) = client.post(&base).json(&body).send().await
                && r.status() == 201
            {
                let created: Value = r.json().await.unwrap();
                accepted.push(created["id"].as_str().unwrap().to_owned());
            }
            n += 1;
        }
        let applied = count(
            &dir,
            "SELECT COUNT(*) FROM patient_timeline WHERE entry_type = 'LAB_RESULTS_AVAILABLE'",
        )
        .await;
        hub.kill_9();
        eprintln!(
            "round {round}: killed with {applied} of {} results applied, {} registrations accepted",
            (round + 1) * chunk,
            accepted.len()
        );
        hub = start(&dir, port).await;
    }

    // Let the restarted hub catch up, then check every effect.
    let patient_db = Db::connect("patient", &config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let applied: i64 = on_pool!(&patient_db, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM patient_timeline WHERE entry_type = 'LAB_RESULTS_AVAILABLE'"
        )
        .fetch_one(c)
        .await)
        .unwrap();
        let unpublished: i64 = on_pool!(&patient_db, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE published_at IS NULL"
        )
        .fetch_one(c)
        .await)
        .unwrap();
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let dead = eventbus::dlq::list(&log, 0, 10).await.unwrap();
    assert!(dead.is_empty(), "dead letters after crashes: {dead:?}");

    let mut created_events: HashMap<String, usize> = HashMap::new();
    for d in log.records("patient-events", 0, 1_000_000).await.unwrap() {
        let e: Value = serde_json::from_str(&d.payload).unwrap();
        if e["eventType"] == "patient.created.v1" {
            *created_events
                .entry(e["key"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    assert!(
        accepted.len() > KILLS,
        "registrations flowed between kills: {}",
        accepted.len()
    );
    for id in accepted.iter().chain(&patients) {
        assert_eq!(
            created_events.get(id),
            Some(&1),
            "patient {id}: accepted, so exactly one patient.created.v1"
        );
    }
    assert!(
        created_events.values().all(|n| *n == 1),
        "no event published twice"
    );

    hub.kill_9();
    patient_db.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
