//! The `meditrack` executable as a user runs it: no services, a data directory, signals.

#![allow(clippy::unwrap_used)]

mod common;

use common::{BIN, free_port, temp_dir};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Hub {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Hub {
    /// `meditrack serve` in `dir` (so `./data` is the default data directory), stdout to a file.
    async fn start(dir: &Path, run: u32) -> Hub {
        let port = free_port();
        let log = dir.join(format!("stdout-{run}.log"));
        let child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir)
            .env_remove("MEDITRACK_DATABASE_URL")
            // Tests run side by side: each hub its own HL7 port, not the default 2575.
            .env("MEDITRACK_HL7_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let hub = Hub {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/health/ready", hub.base)).await
                && r.status() == 200
            {
                return hub;
            }
            assert!(Instant::now() < deadline, "the hub did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then the exit status and everything the hub logged.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the hub did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, std::fs::read_to_string(&self.log).unwrap())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn the_hub_runs_without_services_stops_on_sigterm_and_keeps_its_data() {
    let dir = temp_dir("lifecycle");
    let hub = Hub::start(&dir, 1).await;
    let (client, _) = common::logged_in(&dir, &[], &hub.base, "DOCTOR").await;
    let patient = json!({
        "firstName": "Wilhelmina", "lastName": "Oakenshield", "dateOfBirth": "1971-03-14",
        "ssn": "219-09-9999", "email": "w.oak@example.org",
        "addresses": [{"addressType": "HOME", "streetLine1": "9 Synthetic Row", "city": "Albany", "state": "NY", "zipCode": "12207"}]
    });
    let response = client
        .post(format!("{}/api/v1/patients", hub.base))
        .json(&patient)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let path = format!("/api/v1/patients/{}", created["id"].as_str().unwrap());
    let labs = json!({"tests": [{"testCode": "BMP", "testName": "Basic metabolic panel"}],
                      "orderingProviderId": "PRV-7", "orderingProviderName": "Synthetic Provider"});
    let record = json!({"recordType": "VISIT", "recordDate": "2026-11-20T09:30:00Z",
                        "providerId": "NPI1234567890", "notes": "Quixotic-Zebra-Note about dizziness"});
    let noted = client
        .post(format!("{}{path}/medical-records", hub.base))
        .json(&record)
        .send()
        .await
        .unwrap();
    assert_eq!(noted.status(), 201);
    let ordered = client
        .post(format!(
            "{}/api/v1/patients/219-09-9999/order-labs",
            hub.base
        ))
        .json(&labs)
        .send()
        .await
        .unwrap();
    assert_eq!(ordered.status(), 202);
    let searched = client
        .get(format!(
            "{}/api/v1/patients/search?lastName=Oaken&dateOfBirth=1971-03-14",
            hub.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(searched.status(), 200);

    // The operator sees the patient's events on the log, in order, without their PHI.
    let id = created["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let (ok, out) = meditrack(&dir, &["events", "list", "--topic", "patient-events"]);
        assert!(ok, "{out}");
        if out.contains(id) {
            break out;
        }
        assert!(Instant::now() < deadline, "no event listed: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let line = listed.lines().find(|l| l.contains(id)).unwrap();
    assert!(line.contains("\tpatient.created.v1\t"), "{line}");
    assert!(!listed.contains("Oakenshield") && !listed.contains("219-09-9999"));
    let (ok, out) = meditrack(&dir, &["events", "list", "--topic", "no-such-topic"]);
    assert!(ok && out.contains("no events"), "{out}");

    let (status, log) = hub.terminate();
    assert!(status.success(), "SIGTERM is a clean shutdown: {status}");
    assert!(log.contains("meditrack stopped cleanly"), "{log}");
    assert!(
        dir.join("data/patient.db").exists(),
        "the embedded store lives in ./data"
    );

    for line in log.lines() {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("log lines are JSON: {line}"));
        if entry["message"] == "request completed" {
            assert!(entry["span"]["request_id"].is_string(), "{line}");
            assert!(
                entry["span"]["route"].as_str().unwrap().starts_with('/'),
                "{line}"
            );
        }
    }
    for phi in [
        "Wilhelmina",
        "Oakenshield",
        "1971-03-14",
        "219-09-9999",
        "w.oak",
        "Synthetic Row",
        "Oaken",
        "Quixotic-Zebra",
        "dizziness",
        common::TEST_PASSWORD,
    ] {
        assert!(!log.contains(phi), "{phi} appears in the log");
    }
    assert!(
        log.contains("/api/v1/patients/{id}/order-labs"),
        "routes are logged as templates"
    );

    // The account survived too; the hub now listens elsewhere, which is a new issuer URL,
    // so the user logs in again.
    let hub = Hub::start(&dir, 2).await;
    let (client, _) = common::logged_in(&dir, &[], &hub.base, "NURSE").await;
    let read: Value = client
        .get(format!("{}{path}", hub.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, created, "the patient survived the restart");
    drop(hub);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn migrate_creates_the_embedded_store_and_exits() {
    let dir = temp_dir("migrate");
    let status = Command::new(BIN)
        .arg("migrate")
        .env("MEDITRACK_DATA_DIR", dir.join("store"))
        .env_remove("MEDITRACK_DATABASE_URL")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(dir.join("store/patient.db").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_configuration_is_refused_with_the_name_of_the_setting() {
    let output = Command::new(BIN)
        .args(["serve"])
        .env("MEDITRACK_LISTEN", "nowhere")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MEDITRACK_LISTEN"), "{stderr}");
}

#[test]
fn help_names_the_commands_and_the_settings() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for word in [
        "serve",
        "migrate",
        "MEDITRACK_DATABASE_URL",
        "MEDITRACK_DATA_DIR",
    ] {
        assert!(help.contains(word), "--help mentions {word}:\n{help}");
    }
    let output = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("--listen") && help.contains("MEDITRACK_LISTEN"),
        "{help}"
    );
}

fn meditrack(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("MEDITRACK_DATABASE_URL")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn dead_letters_can_be_listed_shown_and_replayed_from_the_command_line() {
    let dir = temp_dir("dlq");
    let hub = Hub::start(&dir, 1).await;
    // Another service publishes results for a patient this hub has never heard of.
    let config = store::StoreConfig {
        data_dir: dir.join("data"),
        database_url: None,
        max_connections: 1,
    };
    let log = eventbus::embedded::EmbeddedLog::open(&config)
        .await
        .unwrap();
    let poison = json!({
        "eventId": uuid::Uuid::now_v7(), "eventType": "lab.results.available.v1", "occurredAt": "2026-11-25T10:00:00Z",
        "source": "lab", "tenantId": "default", "key": "01900000-0000-7000-8000-000000000000",
        "correlationId": uuid::Uuid::now_v7(),
        "payload": {"orderId": uuid::Uuid::now_v7(), "patientId": "01900000-0000-7000-8000-000000000000",
                    "testCodes": ["CBC"], "abnormal": false, "reportedAt": "2026-11-25T10:00:00Z"}
    });
    let record = eventbus::Record {
        topic: "lab-events".into(),
        key: "01900000-0000-7000-8000-000000000000".into(),
        event_id: uuid::Uuid::now_v7(),
        payload: poison.to_string(),
    };
    eventbus::EventSink::publish(&log, &[record]).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let (ok, out) = meditrack(&dir, &["events", "dlq", "list"]);
        assert!(ok);
        if out.contains("patient") {
            break out;
        }
        assert!(Instant::now() < deadline, "no dead letter appeared: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        listed.contains("lab-events@") && listed.contains("no such patient"),
        "{listed}"
    );
    let offset = listed.split('\t').next().unwrap().trim().to_owned();

    let (ok, shown) = meditrack(&dir, &["events", "dlq", "show", &offset]);
    assert!(ok);
    let letter: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(letter["consumer"], "patient");
    assert_eq!(
        serde_json::from_str::<Value>(letter["payload"].as_str().unwrap()).unwrap(),
        poison
    );

    // Replayed without a fix, it fails again: a second dead letter proves it went round.
    let (ok, out) = meditrack(&dir, &["events", "dlq", "replay", &offset]);
    assert!(ok && out.contains("replayed"), "{out}");
    loop {
        let (_, out) = meditrack(&dir, &["events", "dlq", "list"]);
        if out.lines().count() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replay did not reach the consumer: {out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, out) = meditrack(&dir, &["events", "dlq", "show", "424242"]);
    assert!(!ok, "{out}");
    let (ok, out) = meditrack(
        &dir,
        &["events", "replay", "--consumer", "patient", "--from", "0"],
    );
    assert!(ok && out.contains("from offset 0"), "{out}");

    let (status, _) = hub.terminate();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(not(feature = "kafka"))]
#[test]
fn a_build_without_kafka_refuses_kafka_brokers_clearly() {
    let dir = temp_dir("nokafka");
    let output = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(&dir)
        .env("MEDITRACK_KAFKA_BROKERS", "127.0.0.1:9092")
        .env_remove("MEDITRACK_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--features kafka"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
