//! The benchmark harness in miniature, so it never rots: `meditrack bench` on a tiny data
//! set, every scenario for a second at a low rate, and a report that holds every scenario
//! with no errors. The full run is a documented command (bench/README.md), not a test.

#![allow(clippy::unwrap_used)]

mod common;

use common::{BIN, temp_dir};
use std::process::Command;

/// The JSON report the run wrote into `out`.
fn json_report(out: &std::path::Path) -> serde_json::Value {
    let json = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a JSON report");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

/// The run's standard output, once it is known to have succeeded (else both outputs).
fn succeeded(run: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

/// The run's standard error, once it is known to have failed.
fn refused(run: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(!run.status.success(), "{stderr}");
    stderr
}

#[test]
fn a_tiny_benchmark_runs_every_scenario_and_writes_its_report() {
    let dir = temp_dir("bench-smoke");
    let out = dir.join("results");
    let run = Command::new(BIN)
        .args([
            "bench",
            "--patients",
            "200",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--rate",
            "10",
            "--workers",
            "4",
            "--hl7-connections",
            "2",
            "--rounds",
            "2",
            "--scale-patients",
            "300",
            "--hub-log",
            "warn,sqlx::query=debug",
        ])
        .args(["--out", out.to_str().unwrap()])
        .env_remove("MEDITRACK_DATABASE_URL")
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = succeeded(&run);
    assert!(stdout.contains("| get-patient"), "{stdout}");
    let report = json_report(&out);
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 10);
    for s in scenarios {
        assert_eq!(s["errors"], 0, "{s}");
        assert!(s["completed"].as_u64().unwrap() > 0, "{s}");
        assert!(s["p95Ms"].as_f64().unwrap() > 0.0, "{s}");
    }
    assert_eq!(report["seededPatients"], 200);
    // The measured hub's statements, each with its time, for naming what a phase spends.
    let log = std::fs::read_to_string(out.join("hub-main.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(r#""target":"sqlx::query""#) && l.contains("elapsed_secs")),
        "{}",
        &log[..log.len().min(2000)]
    );
    // Two orders per seeded patient for the HL7 results, placed through the API.
    assert_eq!(report["hl7Orders"], 400);
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    let capacity: Vec<&str> = report["capacity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["errors"], 0, "{s}");
            assert!(s["completed"].as_u64().unwrap() > 0, "{s}");
            s["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        capacity,
        [
            "get-patient",
            "post-patient",
            "ceiling-axum",
            "hl7-oru-1",
            "hl7-oru-n",
            "hl7-oru-batch"
        ]
    );
    // The batch run counts messages, a hundred to each batch.
    let batched = &report["capacity"][5]["completed"];
    assert_eq!(batched.as_u64().unwrap() % 100, 0, "{batched}");
    let get_ratio = &report["ratios"][0];
    assert!(get_ratio["value"].as_f64().unwrap() > 0.0);
    assert_eq!(
        get_ratio["rounds"].as_array().unwrap().len(),
        2,
        "{get_ratio}"
    );
    // Every POST patient and every HL7 result is an event some consumer handles, and the
    // bench saw them, during each of the two loads.
    let events = report["events"].as_array().unwrap();
    let loads: Vec<&str> = events.iter().map(|e| e["load"].as_str().unwrap()).collect();
    assert_eq!(
        loads,
        [
            "post-patient, closed loop, 4 workers",
            "hl7-oru-batch, 2 connections"
        ]
    );
    for e in events {
        assert!(e["handled"].as_u64().unwrap() > 0, "{e}");
        assert!(e["p95MsAtMost"].as_f64().is_some(), "{e}");
    }
    let scaling = &report["searchScaling"];
    assert_eq!(scaling["largePatients"], 300);
    assert!(
        scaling["largeSeedRatePerSecond"].as_f64().unwrap() > 0.0,
        "{scaling}"
    );
    assert_eq!(scaling["pairs"].as_array().unwrap().len(), 2, "{scaling}");
    let hub = &report["hub"];
    assert!(hub["coldStartMs"].as_f64().unwrap() > 0.0, "{hub}");
    assert!(hub["idleRssMb"].as_f64().unwrap() > 0.0, "{hub}");
    assert!(
        hub["peakRssMb"].as_f64().unwrap() >= hub["idleRssMb"].as_f64().unwrap(),
        "{hub}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_scenario_name_that_selects_nothing_is_refused_before_anything_runs() {
    let dir = temp_dir("bench-typo");
    let out = dir.join("results");
    let run = Command::new(BIN)
        .args([
            "bench",
            "--patients",
            "10",
            "--scenarios",
            "get-patient,serach-mrn",
        ])
        .args(["--out", out.to_str().unwrap()])
        .env_remove("MEDITRACK_DATABASE_URL")
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = refused(&run);
    assert!(stderr.contains("unknown scenario serach-mrn"), "{stderr}");
    assert!(
        stderr.contains("search-mrn"),
        "the known names are listed: {stderr}"
    );
    assert!(!out.exists(), "no report for a run that did not happen");
}

/// `--url`: a hub someone else started and seeded is measured as it is; what only a hub
/// of the harness's own can tell (its start, its memory, the seed rate) is reported as not
/// measured rather than made up.
#[tokio::test]
async fn a_running_hub_given_by_url_is_measured_as_it_is() {
    let dir = temp_dir("bench-url");
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let seed = Command::new(BIN)
        .args(["seed", "--patients", "120"])
        .env_remove("MEDITRACK_DATABASE_URL")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        seed.status.success(),
        "{}",
        String::from_utf8_lossy(&seed.stderr)
    );
    let _hub = common::serve(&dir, port, &[], &[]).await;
    let out = dir.join("results");
    let run = Command::new(BIN)
        .args(["bench", "--url", &format!("http://{listen}")])
        .args(["--patients", "120", "--duration", "1", "--warmup", "0"])
        .args(["--rate", "10", "--workers", "2"])
        .args(["--scenarios", "get-patient,search-mrn,capacity"])
        .args(["--out", out.to_str().unwrap()])
        // The hub's configuration: its address (the tokens' issuer) and data directory.
        .env("MEDITRACK_LISTEN", &listen)
        .env_remove("MEDITRACK_DATABASE_URL")
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = succeeded(&run);
    assert!(
        stdout.contains("Not measured: the hub was given by `--url`"),
        "{stdout}"
    );
    let report = json_report(&out);
    assert_eq!(report["givenUrl"], format!("http://{listen}"));
    assert!(report["hub"].is_null(), "{}", report["hub"]);
    assert!(report["seedRatePerSecond"].is_null());
    assert_eq!(report["seededLabOrders"], 30);
    let scenarios = report["scenarios"].as_array().unwrap();
    assert_eq!(scenarios.len(), 2);
    for s in scenarios
        .iter()
        .chain(report["capacity"].as_array().unwrap())
    {
        assert_eq!(s["errors"], 0, "{s}");
        assert!(s["completed"].as_u64().unwrap() > 0, "{s}");
    }
    assert!(report["events"][0]["handled"].as_u64().unwrap() > 0);
}

/// The databases whose names say a bench made them, on the server `admin` names.
async fn bench_databases(admin: &str) -> Vec<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'meditrack_bench%' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// On PostgreSQL the bench makes a database for each hub it starts (the measured one, and
/// the one search scaling is compared on) and drops them when the run ends: at a million
/// patients they are gigabytes.
#[tokio::test]
async fn a_run_on_postgresql_drops_the_databases_it_made() {
    let Some(admin) = testkit::postgres_server().await else {
        return;
    };
    let before = bench_databases(&admin).await;
    let dir = temp_dir("bench-pg");
    let out = dir.join("results");
    let run = Command::new(BIN)
        .args(["bench", "--patients", "40", "--scale-patients", "60"])
        .args(["--duration", "1", "--warmup", "0", "--rate", "10"])
        .args(["--workers", "2", "--rounds", "2"])
        .args(["--scenarios", "get-patient,capacity,scaling"])
        .args(["--out", out.to_str().unwrap()])
        .env("MEDITRACK_DATABASE_URL", &admin)
        .env_remove("MEDITRACK_KAFKA_BROKERS")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let report = json_report(&out);
    assert_eq!(report["backend"], "postgres");
    // The raw PostgreSQL ceilings ran beside the hub, the select in the GET rounds.
    let ratios: Vec<(&str, usize)> = report["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["value"].as_f64().unwrap() > 0.0, "{r}");
            (
                r["name"].as_str().unwrap(),
                r["rounds"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        ratios,
        [
            ("GET patient / bare axum", 2),
            ("POST patient / raw PostgreSQL insert", 1),
            ("GET patient / raw PostgreSQL select", 2)
        ]
    );
    assert_eq!(
        report["searchScaling"]["largePatients"], 60,
        "both hubs ran"
    );
    assert_eq!(bench_databases(&admin).await, before);
    let _ = std::fs::remove_dir_all(dir);
}

/// A FHIR server in miniature for the peer phase: creates, reads by id, and a searchset
/// for any search, with the patients it holds in memory. The real comparison is with a
/// real server (bench/README.md); this keeps the harness's FHIR side from rotting.
async fn fhir_stub() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::routing::get;
    use serde_json::{Value, json};
    type Held = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;
    let held = Held::default();
    let app = axum::Router::new()
        .route(
            "/metadata",
            get(|| async {
                axum::Json(
                    json!({"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1",
                                  "software": {"name": "stub", "version": "0"}}),
                )
            }),
        )
        .route(
            "/Patient",
            get(|| async { axum::Json(json!({"resourceType": "Bundle", "type": "searchset"})) })
                .post(|State(held): State<Held>, body: String| async move {
                    let mut patient: Value = serde_json::from_str(&body).unwrap();
                    let mut held = held.lock().unwrap();
                    patient["id"] = json!(held.len().to_string());
                    held.push(patient.clone());
                    (StatusCode::CREATED, axum::Json(patient))
                }),
        )
        .route(
            "/Patient/{id}",
            get(
                |State(held): State<Held>, Path(id): Path<usize>| async move {
                    match held.lock().unwrap().get(id) {
                        Some(p) => Ok(axum::Json(p.clone())),
                        None => Err(StatusCode::NOT_FOUND),
                    }
                },
            ),
        )
        .with_state(held.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, held)
}

/// `--fhir-peer`: another FHIR server is filled through its API and measured beside the
/// hub, and the report sets the two side by side.
#[tokio::test(flavor = "multi_thread")]
async fn a_fhir_peer_is_filled_and_measured_beside_the_hub() {
    let (base, held) = fhir_stub().await;
    let dir = temp_dir("bench-peer");
    let out = dir.join("results");
    let (run_dir, run_out, peer) = (dir.clone(), out.clone(), base.clone());
    let run = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "bench",
                "--patients",
                "150",
                "--duration",
                "1",
                "--warmup",
                "0",
            ])
            .args(["--rate", "10", "--workers", "2", "--rounds", "2"])
            .args(["--scenarios", "peer", "--fhir-peer", &peer])
            .args(["--out", run_out.to_str().unwrap()])
            .env_remove("MEDITRACK_DATABASE_URL")
            .current_dir(&run_dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = succeeded(&run);
    assert!(
        stdout.contains(&format!(
            "Side by side with another FHIR server: stub 0 (FHIR 4.0.1) at {base}"
        )),
        "{stdout}"
    );
    let report = json_report(&out);
    let peer = &report["peer"];
    assert_eq!(peer["patients"], 150, "{peer}");
    assert_eq!(peer["rounds"], 2, "{peer}");
    let rows = peer["rows"].as_array().unwrap();
    // Read, its p95 and share of bare axum; create and its p95; each search closed loop
    // and at its rate.
    assert_eq!(rows.len(), 9, "{peer}");
    for r in rows {
        assert_eq!(r["ourErrors"], 0, "{r}");
        assert_eq!(r["theirErrors"], 0, "{r}");
        assert!(r["ours"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["theirs"].as_f64().unwrap() > 0.0, "{r}");
    }
    // The fill and the create rounds went through the peer's API, each patient with the
    // MRN the hub's seed gives the same patient.
    let held = held.lock().unwrap();
    assert!(held.len() > 150, "{}", held.len());
    let mrns: std::collections::HashSet<&str> = held
        .iter()
        .map(|p| p["identifier"][0]["value"].as_str().unwrap())
        .collect();
    for i in 0..150 {
        assert!(mrns.contains(format!("SD42{i:09}").as_str()), "{i}");
    }
    // Nothing else was measured.
    assert!(report["scenarios"].as_array().unwrap().is_empty());
    assert!(report["capacity"].as_array().unwrap().is_empty());
    drop(held);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_peer_phase_without_a_peer_is_refused() {
    let dir = temp_dir("bench-no-peer");
    let run = Command::new(BIN)
        .args(["bench", "--patients", "10", "--scenarios", "peer"])
        .env_remove("MEDITRACK_DATABASE_URL")
        .current_dir(&dir)
        .output()
        .unwrap();
    let stderr = refused(&run);
    assert!(stderr.contains("--fhir-peer"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
