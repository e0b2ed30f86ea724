//! Split mode: the patient service and the gateway as separate processes. A registration
//! made through the gateway is served by the patient process, and its event reaches a
//! consumer in yet another process (this test) through the backbone.

#![allow(clippy::unwrap_used)]

mod common;

use common::{free_port, serve, temp_dir};
use eventbus::embedded::EmbeddedLog;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use store::StoreConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_registered_through_the_gateway_reaches_a_consumer_in_another_process() {
    let root = temp_dir("split");
    let (patient_dir, gateway_dir) = (root.join("patient"), root.join("gateway"));
    let common::Split {
        patient,
        gateway,
        gateway_port,
        ..
    } = common::split(&root, &[]).await;
    let via_gateway = |path: &str| format!("http://127.0.0.1:{gateway_port}{path}");
    let (client, _) = common::logged_in(&gateway_dir, &[], &via_gateway(""), "DOCTOR").await;

    let body = json!({"firstName": "Split", "lastName": "Mode", "dateOfBirth": "1975-05-05", "ssn": "213-45-6789"});
    let response = client
        .post(via_gateway("/api/v1/patients"))
        .header("x-request-id", "split-request-1")
        // As a load balancer the gateway trusts (loopback, by default) would say.
        .header("x-forwarded-for", "203.0.113.77")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "split-request-1");
    assert_eq!(response.headers()["etag"], "\"1\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    // Reads, searches with a query string, SSN routes and problems all pass through.
    let read: Value = client
        .get(via_gateway(&location))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, created);
    let found: Value = client
        .get(via_gateway("/api/v1/patients/search?lastName=mod"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["items"][0]["id"], id);
    let order = json!({"tests": [{"testCode": "CBC", "testName": "Complete blood count"}],
                       "orderingProviderId": "P1", "orderingProviderName": "Synthetic Provider"});
    let ordered = client
        .post(via_gateway("/api/v1/patients/213-45-6789/order-labs"))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(ordered.status(), 202);
    let missing = client
        .get(via_gateway("/api/v1/patients/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            missing.status().as_u16(),
            missing.headers()["content-type"].to_str().unwrap()
        ),
        (404, "application/problem+json")
    );
    assert!(
        !gateway_dir.join("data/patient.db").exists(),
        "the gateway process keeps no patient data"
    );

    // A consumer of its own, in this process, reads the patient process's events.
    let config = StoreConfig {
        data_dir: patient_dir.join("data"),
        database_url: None,
        max_connections: 1,
    };
    // The patient process audited the registration as coming from the client the gateway
    // named, not from the gateway.
    let audit = store::Db::connect("audit", &config).await.unwrap();
    let sources: Vec<(String, Option<String>)> = store::on_pool!(&audit, |c| sqlx::query_as(
        "SELECT action, source_ip FROM audit_log WHERE request_id = 'split-request-1'"
    )
    .fetch_all(c)
    .await)
    .unwrap();
    assert_eq!(
        sources,
        [("CREATE".to_owned(), Some("203.0.113.77".to_owned()))]
    );
    audit.close().await;
    let log = EmbeddedLog::open(&config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let types = loop {
        let mut types = Vec::new();
        for topic in ["patient-events", "lab-events"] {
            for d in log.records(topic, 0, 1000).await.unwrap() {
                let e: Value = serde_json::from_str(&d.payload).unwrap();
                if e["key"] == id.as_str() {
                    types.push(e["eventType"].as_str().unwrap().to_owned());
                }
            }
        }
        if types.len() >= 2 {
            break types;
        }
        assert!(Instant::now() < deadline, "only {types:?} arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        types,
        vec!["patient.created.v1", "patient.labs.requested.v1"]
    );

    // The patient process goes away: the gateway says so as a problem.
    patient.kill_9();
    let down = client.get(via_gateway(&location)).send().await.unwrap();
    assert_eq!(down.status(), 502);
    let problem: Value = down.json().await.unwrap();
    assert_eq!(problem["code"], "gateway.upstream_unavailable");
    drop(gateway);
    let _ = std::fs::remove_dir_all(root);
}

/// The same actions, with a lab result arriving as an event from another service, against
/// `base` (a hub or a gateway) whose event log is in `data`; returns the timeline's types.
async fn timeline_after_a_script(
    client: &reqwest::Client,
    base: &str,
    data: &std::path::Path,
) -> Vec<String> {
    let body = json!({"firstName": "Same", "lastName": "Story", "dateOfBirth": "1966-06-06", "ssn": "214-45-6789"});
    let created: Value = client
        .post(format!("{base}/api/v1/patients"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let mut update = created.clone();
    update["email"] = json!("same.story@example.org");
    let r = client
        .put(format!("{base}/api/v1/patients/{id}"))
        .header("if-match", "\"1\"")
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let order = json!({"tests": [{"testCode": "BMP", "testName": "Basic metabolic panel"}],
                       "orderingProviderId": "P1", "orderingProviderName": "Synthetic Provider"});
    let r = client
        .post(format!("{base}/api/v1/patients/214-45-6789/order-labs"))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = client
        .post(format!("{base}/api/v1/patients/{id}/discharge"))
        .json(&json!({"disposition": "HOME"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let config = StoreConfig {
        data_dir: data.to_owned(),
        database_url: None,
        max_connections: 1,
    };
    let log = EmbeddedLog::open(&config).await.unwrap();
    let result = json!({
        "eventId": uuid::Uuid::now_v7(), "eventType": "lab.results.available.v1", "occurredAt": "2030-01-01T00:00:00Z",
        "source": "lab", "tenantId": "default", "key": id, "correlationId": uuid::Uuid::now_v7(),
        "payload": {"orderId": uuid::Uuid::now_v7(), "patientId": id, "testCodes": ["BMP"], "abnormal": false,
                    "reportedAt": "2030-01-01T00:00:00Z"}
    });
    let record = eventbus::Record {
        topic: "lab-events".into(),
        key: id.clone(),
        event_id: uuid::Uuid::now_v7(),
        payload: result.to_string(),
    };
    eventbus::EventSink::publish(&log, &[record]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page: Value = client
            .get(format!("{base}/api/v1/patients/{id}/timeline"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let types: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect();
        if types.len() >= 5 {
            return types;
        }
        assert!(Instant::now() < deadline, "timeline stuck at {types:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_and_the_split_deployment_tell_the_same_story() {
    let root = temp_dir("same");

    let hub_port = free_port();
    let hub = serve(&root.join("hub"), hub_port, &[], &[]).await;
    let base = format!("http://127.0.0.1:{hub_port}");
    let (client, _) = common::logged_in(&root.join("hub"), &[], &base, "DOCTOR").await;
    let embedded = timeline_after_a_script(&client, &base, &root.join("hub/data")).await;
    drop(hub);

    let deployment = common::split(&root, &[]).await;
    let base = format!("http://127.0.0.1:{}", deployment.gateway_port);
    let (client, _) = common::logged_in(&root.join("gateway"), &[], &base, "DOCTOR").await;
    let split = timeline_after_a_script(&client, &base, &root.join("patient/data")).await;

    assert_eq!(
        embedded,
        vec![
            "LAB_RESULTS_AVAILABLE",
            "DISCHARGED",
            "LAB_ORDERED",
            "UPDATED",
            "REGISTERED"
        ]
    );
    assert_eq!(split, embedded);
    let _ = std::fs::remove_dir_all(root);
}
