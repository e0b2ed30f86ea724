//! Split mode: the patient service and the gateway as separate processes. A registration
//! made through the gateway is served by the patient process, and its event reaches a
//! consumer in yet another process (this test) through the backbone.

#![allow(clippy::unwrap_used)]

mod common;

use common::{free_port, serve};
use eventbus::embedded::EmbeddedLog;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use store::StoreConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_registered_through_the_gateway_reaches_a_consumer_in_another_process() {
    let root = std::env::temp_dir().join(format!(
        "meditrack-split-{}-{}",
        std::process::id(),
        free_port()
    ));
    let (patient_dir, gateway_dir) = (root.join("patient"), root.join("gateway"));
    let (patient_port, gateway_port) = (free_port(), free_port());
    let patient = serve(&patient_dir, patient_port, &["--services", "patient"], &[]).await;
    let upstream = format!("http://127.0.0.1:{patient_port}");
    let gateway = serve(
        &gateway_dir,
        gateway_port,
        &["--services", "gateway"],
        &[("MEDITRACK_PATIENT_URL", &upstream)],
    )
    .await;
    let via_gateway = |path: &str| format!("http://127.0.0.1:{gateway_port}{path}");
    let client = reqwest::Client::new();

    let body = json!({"firstName": "Split", "lastName": "Mode", "dateOfBirth": "1975-05-05", "ssn": "213-45-6789"});
    let response = client
        .post(via_gateway("/api/v1/patients"))
        .header("x-request-id", "split-request-1")
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
        !gateway_dir.join("data").exists(),
        "the gateway keeps no data"
    );

    // A consumer of its own, in this process, reads the patient process's events.
    let config = StoreConfig {
        data_dir: patient_dir.join("data"),
        database_url: None,
        max_connections: 1,
    };
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
    assert_eq!(types, vec!["patient.created.v1", "lab.test.ordered.v1"]);

    // The patient process goes away: the gateway says so as a problem.
    patient.kill_9();
    let down = client.get(via_gateway(&location)).send().await.unwrap();
    assert_eq!(down.status(), 502);
    let problem: Value = down.json().await.unwrap();
    assert_eq!(problem["code"], "gateway.upstream_unavailable");
    drop(gateway);
    let _ = std::fs::remove_dir_all(root);
}
