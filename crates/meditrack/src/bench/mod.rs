//! `meditrack bench`: starts a hub in a child process (on a fresh data directory, or a
//! fresh PostgreSQL database), seeds it, and drives each scenario of the request mix at a
//! fixed offered rate from this process, then the same GET load against a bare axum
//! handler for the ceiling; writes the report. See `bench/README.md`.

mod load;
mod report;
mod scenarios;

use crate::Config;
use load::{Load, Measured};
use report::{Machine, Report, ScenarioResult};
use scenarios::{ALL, Scenario, World};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub patients: u64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Overrides every scenario's offered rate.
    pub rate: Option<f64>,
    /// Only these scenarios (all when empty).
    pub only: Vec<String>,
    pub out: PathBuf,
    /// A PostgreSQL server to bench on (a fresh database is made there); else SQLite.
    pub database_url: Option<String>,
}

/// The hub under test, killed when dropped.
struct Hub(Child);

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// A fresh database on the server `url` names, for one run.
async fn fresh_database(url: &str) -> Result<String, String> {
    use sqlx::Connection;
    let name = format!("meditrack_bench_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| format!("PostgreSQL at {url}: {e}"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let base = url.split('?').next().unwrap_or(url);
    let prefix = base.rsplit_once('/').map_or(base, |(p, _)| p);
    Ok(format!("{prefix}/{name}"))
}

pub async fn run(o: &BenchOptions) -> Result<(Report, PathBuf), String> {
    let started_at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let dir =
        std::env::temp_dir().join(format!("meditrack-bench-{}", uuid::Uuid::now_v7().simple()));
    let (port, hl7) = (free_port()?, free_port()?);
    let database_url = match &o.database_url {
        Some(url) => Some(fresh_database(url).await?),
        None => None,
    };
    let config = Config {
        listen: ([127, 0, 0, 1], port).into(),
        data_dir: dir.join("data"),
        database_url: database_url.clone(),
        ..Config::default()
    };

    // Seed before the hub starts: the seeding rate is measured on its own.
    let options = crate::seed::SeedOptions {
        patients: o.patients,
        records_per_patient: 2,
        seed: 42,
        tenant: kernel::TenantId::parse(&config.default_tenant).map_err(|e| e.to_string())?,
    };
    let seeded = crate::seed::seed(&config, &options, |_, _| {}).await?;

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("MEDITRACK_DATA_DIR", dir.join("data"))
        .env("MEDITRACK_HL7_LISTEN", format!("127.0.0.1:{hl7}"))
        .env("MEDITRACK_RATE_LIMIT_PER_IP", "0")
        .env("MEDITRACK_RATE_LIMIT_PER_SUBJECT", "0")
        .env("MEDITRACK_LOG_LEVEL", "warn")
        .env_remove("MEDITRACK_DATABASE_URL")
        .env_remove("MEDITRACK_KAFKA_BROKERS")
        .stdout(Stdio::null());
    if let Some(url) = &database_url {
        command.env("MEDITRACK_DATABASE_URL", url);
    }
    let _hub = Hub(command
        .spawn()
        .map_err(|e| format!("cannot start the hub: {e}"))?);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{base}/health/ready"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        if Instant::now() > deadline {
            return Err("the hub did not become ready".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let client = crate::bench_client(&config)?;
    let world = Arc::new(prepare(&base, client, &options).await?);
    let mut results = Vec::new();
    let mut get_patient = None;
    for s in ALL
        .iter()
        .filter(|s| o.only.is_empty() || o.only.iter().any(|n| n == s.name))
    {
        let measured = drive(o, s, world.clone()).await;
        let result = result(s, o.rate.unwrap_or(s.rate), &measured);
        if s.name == "get-patient" {
            get_patient = Some(result.throughput);
        }
        tracing::info!(
            scenario = s.name,
            throughput = result.throughput,
            p95_ms = result.p95_ms,
            "scenario done"
        );
        results.push(result);
    }
    let ceiling = match get_patient {
        Some(_) => Some(ceiling(o, &world).await?),
        None => None,
    };
    let ratio = match (get_patient, &ceiling) {
        (Some(g), Some(c)) if c.throughput > 0.0 => Some(g / c.throughput),
        _ => None,
    };
    let report = Report {
        started_at,
        commit: report::commit(),
        backend: if database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        machine: Machine::this(),
        load_generator: "open loop at a fixed offered rate; latency from each request's scheduled time (no coordinated omission), HdrHistogram",
        seeded_patients: seeded.patients,
        seed_rate_per_second: seeded.patients as f64 / seeded.seconds.max(1e-9),
        warmup_seconds: o.warmup.as_secs_f64(),
        duration_seconds: o.duration.as_secs_f64(),
        scenarios: results,
        ceiling,
        get_patient_vs_ceiling: ratio,
    };
    let path = report.write(&o.out)?;
    drop(_hub);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((report, path))
}

async fn drive(o: &BenchOptions, s: &Scenario, world: Arc<World>) -> Measured {
    let name = s.name;
    load::run(
        Load {
            rate: o.rate.unwrap_or(s.rate),
            warmup: o.warmup,
            duration: o.duration,
            max_in_flight: 512,
        },
        move |n| scenarios::request(world.clone(), name, n),
    )
    .await
}

fn result(s: &Scenario, rate: f64, m: &Measured) -> ScenarioResult {
    let p95 = m.ms(95.0);
    let error_share = m.errors as f64 / (m.completed + m.errors).max(1) as f64;
    ScenarioResult {
        name: s.name,
        what: s.what,
        rate,
        completed: m.completed,
        errors: m.errors,
        throughput: m.throughput(),
        p50_ms: m.ms(50.0),
        p95_ms: p95,
        p99_ms: m.ms(99.0),
        max_ms: m.max_ms(),
        sla_p95_ms: s.sla_ms,
        sla_pass: s.sla_ms.map(|sla| p95 < sla && error_share < 0.005),
    }
}

/// Ids the scenarios use: seeded patients (found by their MRNs) and lab orders.
async fn prepare(
    base: &str,
    client: reqwest::Client,
    o: &crate::seed::SeedOptions,
) -> Result<World, String> {
    let mut patients = Vec::new();
    let mut mrns = Vec::new();
    for i in 0..o.patients.min(200) {
        let mrn = crate::seed::mrn(i, o.seed);
        let page: serde_json::Value = client
            .get(format!("{base}/api/v1/patients/search?mrn={mrn}"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(id) = page["items"][0]["id"].as_str() {
            patients.push(id.to_owned());
            mrns.push(mrn);
        }
    }
    if patients.is_empty() {
        return Err("the seeded patients cannot be found through the API".to_owned());
    }
    let mut orders = Vec::new();
    for (i, p) in patients.iter().enumerate().take(100) {
        let order: serde_json::Value = client
            .post(format!("{base}/api/v1/lab/orders"))
            .json(&scenarios::lab_order(p))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let id = order["id"]
            .as_str()
            .ok_or_else(|| format!("lab order {i} was not created: {order}"))?;
        orders.push(id.to_owned());
    }
    Ok(World {
        base: base.to_owned(),
        client,
        patients,
        mrns,
        orders,
        last_names: crate::seed::LAST.to_vec(),
    })
}

/// The ceiling: the first patient's JSON served from memory by a bare axum handler, under
/// the GET scenario's load.
async fn ceiling(o: &BenchOptions, world: &World) -> Result<ScenarioResult, String> {
    let body = world
        .client
        .get(format!(
            "{}/api/v1/patients/{}",
            world.base, world.patients[0]
        ))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let app = axum::Router::new().route(
        "/patient",
        axum::routing::get(move || {
            let body = body.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/patient",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let s = Scenario {
        name: "ceiling",
        what: "GET of the same JSON from memory, bare axum",
        sla_ms: None,
        rate: ALL[0].rate,
    };
    let rate = o.rate.unwrap_or(s.rate);
    let measured = load::run(
        Load {
            rate,
            warmup: o.warmup,
            duration: o.duration,
            max_in_flight: 512,
        },
        move |_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client.get(url).send().await.map_err(|e| e.to_string())?;
                r.bytes().await.map_err(|e| e.to_string())?;
                Ok(())
            }
        },
    )
    .await;
    server.abort();
    Ok(result(&s, rate, &measured))
}
