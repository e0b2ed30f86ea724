//! `meditrack bench`: starts a hub in a child process (on a fresh data directory, or a
//! fresh PostgreSQL database), seeds it, and drives it from this process:
//! - each scenario of the request mix at a fixed offered rate (open loop), against its
//!   000 §9.1 SLA;
//! - capacity (closed loops), beside the ceilings measured the same way in the same run;
//! - events through outbox → backbone → consumers during the write load;
//! - HL7 ORU^R01 over MLLP on one connection and on several;
//! - search on a second hub seeded larger, for the p95 ratio;
//! - with `--fhir-peer`, another FHIR server beside the hub in alternating rounds;
//!
//! and writes the report. See `bench/README.md`.

mod capacity;
mod events;
mod hub;
mod load;
mod peer;
mod report;
mod scenarios;

use crate::Config;
use capacity::Window;
use hub::{Hub, HubLog, HubSettings, free_port};
use load::{Load, Measured};
use report::{HubFigures, Machine, Ratio, Report, ScenarioResult, SearchScaling};
use scenarios::{ALL, Scenario, World};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub patients: u64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Overrides every scenario's offered rate.
    pub rate: Option<f64>,
    /// Only these scenarios and phases (all when empty).
    pub only: Vec<String>,
    pub out: PathBuf,
    /// A PostgreSQL server to bench on (a fresh database is made there); else SQLite.
    pub database_url: Option<String>,
    /// Kafka brokers for the hub's backbone; else its embedded log.
    pub kafka_brokers: Option<String>,
    /// Workers of each closed loop.
    pub workers: usize,
    /// MLLP connections of the several-connection HL7 run.
    pub hl7_connections: usize,
    /// Rounds of GET patient and its ceilings, and of search on the scaling's two hubs,
    /// alternating.
    pub rounds: usize,
    /// Patients of the second hub that search is measured on (its scaling).
    pub scale_patients: Option<u64>,
    /// A running hub to measure instead of one the harness starts.
    pub given: Option<GivenHub>,
    /// The base URL of another FHIR server to measure beside the hub.
    pub fhir_peer: Option<String>,
    /// The log filter of the hubs the harness starts, whose logs then go beside the reports.
    pub hub_log: Option<String>,
}

/// A hub already running (`--url`), seeded beforehand with `meditrack seed --patients
/// <patients> --seed <seed>` into `config`'s default tenant. Its requests carry a token
/// signed with `config`'s key, so the harness runs with the hub's configuration.
#[derive(Debug, Clone)]
pub struct GivenHub {
    pub base: String,
    /// Its MLLP listener; without it the HL7 runs are skipped.
    pub hl7: Option<String>,
    pub seed: u64,
    pub config: Config,
}

/// The parts `--scenarios` may name besides the scenarios themselves.
const PHASES: [&str; 4] = ["capacity", "hl7", "scaling", "peer"];

impl BenchOptions {
    /// Refuses names that select nothing: a typo would otherwise measure nothing and say so
    /// only by a short report.
    fn check(&self) -> Result<(), String> {
        let unknown: Vec<&str> = self
            .only
            .iter()
            .map(String::as_str)
            .filter(|n| !PHASES.contains(n) && !ALL.iter().any(|s| s.name == *n))
            .collect();
        if self.given.is_some() && self.scale_patients.is_some() {
            return Err(
                "--scale-patients seeds hubs of its own: it cannot be used with --url".to_owned(),
            );
        }
        if self.only.iter().any(|n| n == "peer") && self.fhir_peer.is_none() {
            return Err("the peer phase measures the server --fhir-peer names: give it".to_owned());
        }
        if unknown.is_empty() {
            return Ok(());
        }
        let known: Vec<&str> = ALL.iter().map(|s| s.name).chain(PHASES).collect();
        Err(format!(
            "unknown scenario {}; known: {}",
            unknown.join(", "),
            known.join(", ")
        ))
    }

    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|n| n == name)
    }

    fn window(&self) -> Window {
        Window {
            workers: self.workers,
            warmup: self.warmup,
            duration: self.duration,
        }
    }
}

/// What the databases of the run in `run_dir` are named after: the directory's name. A
/// hub's database is `<run>_<hub>` ([`database_of`]), so a run's databases can be found
/// and dropped when it ends.
fn run_databases(run_dir: &Path) -> String {
    run_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("meditrack-bench")
        .replace('-', "_")
}

/// The database of the hub whose directory is `hub_dir` (`<run dir>/<hub>`).
fn database_of(hub_dir: &Path) -> String {
    format!(
        "{}_{}",
        run_databases(hub_dir.parent().unwrap_or(hub_dir)),
        name_of(hub_dir)
    )
}

/// The name of the hub whose directory is `hub_dir` (`main`, or the scaling's).
fn name_of(hub_dir: &Path) -> &str {
    hub_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("hub")
}

/// A fresh database named `name` on the server `url` names, for one hub.
async fn fresh_database(url: &str, name: &str) -> Result<String, String> {
    use sqlx::Connection;
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

/// Drops the databases of the run `run` ([`run_databases`]).
async fn drop_databases(url: &str, run: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| format!("PostgreSQL at {url}: {e}"))?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'meditrack_bench%'")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
    let prefix = format!("{run}_");
    for name in names.iter().filter(|n| n.starts_with(&prefix)) {
        // FORCE: a hub killed mid-query may leave its server processes for a moment.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A hub of its own: a data directory under `dir`, a fresh database when on PostgreSQL,
/// seeded with `patients` before it starts (so seeding is measured on its own).
struct Seeded {
    hub: Hub,
    config: Config,
    seed: crate::seed::SeedOptions,
    done: crate::seed::Seeded,
}

async fn seeded_hub(o: &BenchOptions, dir: &Path, patients: u64) -> Result<Seeded, String> {
    let port = free_port()?;
    let database_url = match &o.database_url {
        Some(url) => Some(fresh_database(url, &database_of(dir)).await?),
        None => None,
    };
    let config = Config {
        listen: ([127, 0, 0, 1], port).into(),
        data_dir: dir.join("data"),
        database_url: database_url.clone(),
        ..Config::default()
    };
    let seed = crate::seed::SeedOptions {
        patients,
        records_per_patient: 2,
        seed: 42,
        tenant: kernel::TenantId::parse(&config.default_tenant).map_err(|e| e.to_string())?,
    };
    let done = crate::seed::seed(&config, &seed, |_| {}).await?;
    let hub = Hub::start(
        &config.data_dir,
        port,
        &HubSettings {
            database_url,
            kafka_brokers: o.kafka_brokers.clone(),
            log: o.hub_log.as_ref().map(|filter| HubLog {
                filter: filter.clone(),
                file: o.out.join(format!("hub-{}.log", name_of(dir))),
            }),
        },
    )
    .await?;
    Ok(Seeded {
        hub,
        config,
        seed,
        done,
    })
}

pub async fn run(o: &BenchOptions) -> Result<(Report, PathBuf), String> {
    o.check()?;
    let started_at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let dir =
        std::env::temp_dir().join(format!("meditrack-bench-{}", uuid::Uuid::now_v7().simple()));
    let outcome = run_in(o, &dir, started_at).await;
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(url) = &o.database_url {
        // Gigabytes at a million patients; and dropping them just before the next run
        // put their write-back into its measurement.
        if let Err(e) = drop_databases(url, &run_databases(&dir)).await {
            tracing::warn!(error = %e, "the run's databases could not be dropped");
        }
    }
    let report = outcome?;
    let path = report.write(&o.out)?;
    Ok((report, path))
}

/// The hub measured: started and seeded by the harness, or given.
struct Target {
    base: String,
    hl7: Option<String>,
    config: Config,
    seed: crate::seed::SeedOptions,
    started: Option<Seeded>,
}

async fn target(o: &BenchOptions, dir: &Path) -> Result<Target, String> {
    match &o.given {
        None => {
            let main = seeded_hub(o, &dir.join("main"), o.patients).await?;
            Ok(Target {
                base: main.hub.base.clone(),
                hl7: Some(main.hub.hl7.clone()),
                config: main.config.clone(),
                seed: main.seed.clone(),
                started: Some(main),
            })
        }
        Some(g) => Ok(Target {
            base: g.base.trim_end_matches('/').to_owned(),
            hl7: g.hl7.clone(),
            config: g.config.clone(),
            seed: crate::seed::SeedOptions {
                patients: o.patients,
                records_per_patient: 2,
                seed: g.seed,
                tenant: kernel::TenantId::parse(&g.config.default_tenant)
                    .map_err(|e| e.to_string())?,
            },
            started: None,
        }),
    }
}

async fn run_in(o: &BenchOptions, dir: &Path, started_at: String) -> Result<Report, String> {
    let main = target(o, dir).await?;
    // Idle: ready, seeded, nothing asked of it yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = main.started.as_ref().map(|s| s.hub.memory());
    let client = crate::bench_client(&main.config)?;
    let hl7_orders = if o.wants("hl7") && main.hl7.is_some() {
        hl7_orders_for(main.seed.patients)
    } else {
        0
    };
    let world = Arc::new(prepare(&main.base, client, &main.seed, hl7_orders).await?);

    let mut results = Vec::new();
    for s in ALL.iter().filter(|s| o.wants(s.name)) {
        results.push(open_loop(o, s, world.clone()).await);
    }

    let mut capacity = Vec::new();
    let mut ratios = Vec::new();
    let mut events = Vec::new();
    if o.wants("capacity") {
        let w = o.window();
        let body = world.patient_json().await?;
        let pg = match &main.config.database_url {
            Some(url) => Some(capacity::PgCeiling::open(url, body.clone()).await?),
            None => None,
        };
        // GET and its ceilings in alternating rounds: this machine's speed drifts from
        // minute to minute, and a ratio of two runs minutes apart measured the drift too.
        let (mut gets, mut axums, mut selects) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..o.rounds.max(1) {
            gets.push(capacity::scenario(w, world.clone(), "get-patient").await);
            axums.push(capacity::axum_ceiling(w, body.clone()).await?);
            if let Some(pg) = &pg {
                selects.push(pg.select(w).await);
            }
        }
        let get = progress(closed(
            "get-patient",
            ALL[0].what,
            w,
            &Measured::merged(&gets),
        ));
        let ceiling = progress(closed(
            "ceiling-axum",
            "GET of the same JSON from memory, bare axum",
            w,
            &Measured::merged(&axums),
        ));
        ratios.push(Ratio::of(
            "GET patient / bare axum",
            &throughputs(&gets),
            &throughputs(&axums),
            Some(0.4),
        ));
        events::wait_live(
            &world.client,
            &world.base,
            scenarios::request(world.clone(), "post-patient", u64::MAX / 2),
        )
        .await?;
        let before = events::read(&world.client, &world.base).await?;
        let writing = Instant::now();
        let post = progress(closed(
            "post-patient",
            ALL[1].what,
            w,
            &capacity::scenario(w, world.clone(), "post-patient").await,
        ));
        events.push(
            events::settle(
                &world.client,
                &world.base,
                &before,
                writing,
                backbone(o),
                format!("post-patient, closed loop, {} workers", w.workers),
            )
            .await?,
        );
        if let Some(pg) = pg {
            let insert = progress(closed(
                "ceiling-pg-insert",
                "raw INSERT of the same JSON row",
                w,
                &pg.insert(w).await,
            ));
            pg.close().await;
            let select = progress(closed(
                "ceiling-pg-select",
                "raw SELECT of that row by key",
                w,
                &Measured::merged(&selects),
            ));
            ratios.push(Ratio::of(
                "POST patient / raw PostgreSQL insert",
                &[post.throughput],
                &[insert.throughput],
                None,
            ));
            ratios.push(Ratio::of(
                "GET patient / raw PostgreSQL select",
                &throughputs(&gets),
                &throughputs(&selects),
                None,
            ));
            capacity.extend([get, post, ceiling, insert, select]);
        } else {
            capacity.extend([get, post, ceiling]);
        }
    }
    let peer = match &o.fhir_peer {
        Some(url) if o.wants("peer") => Some(progress_peer(
            peer::compare(o, world.clone(), url, main.seed.seed).await?,
        )),
        _ => None,
    };
    if let Some(hl7) = main.hl7.as_ref().filter(|_| o.wants("hl7")) {
        let orders = Arc::new(world.hl7_orders.clone());
        let sent = Arc::default();
        let runs = [
            ("hl7-oru-1", 1, 1, "ORU^R01 over MLLP, ACK after commit"),
            (
                "hl7-oru-n",
                o.hl7_connections,
                1,
                "ORU^R01 over MLLP, ACK after commit",
            ),
            (
                "hl7-oru-batch",
                o.hl7_connections,
                HL7_BATCH,
                "ORU^R01 in batches of 100 (BHS/BTS) over MLLP, ACKs after commit; \
                 throughput in messages, latency per batch",
            ),
        ];
        for (name, connections, batch, what) in runs {
            let w = Window {
                workers: connections,
                ..o.window()
            };
            let before = events::read(&world.client, &world.base).await?;
            let sending = Instant::now();
            let m = capacity::hl7(
                w,
                connections,
                batch,
                hl7,
                orders.clone(),
                Arc::clone(&sent),
            )
            .await?;
            capacity.push(progress(closed(name, what, w, &m)));
            // The most events a run of this bench makes: each result completes its order.
            if batch > 1 {
                let load = format!("{name}, {connections} connections");
                let e = events::settle(
                    &world.client,
                    &world.base,
                    &before,
                    sending,
                    backbone(o),
                    load,
                );
                events.push(e.await?);
            }
        }
    }
    // Before the main hub stops: the search is measured on both hubs in turn.
    let scaling = match o.scale_patients {
        Some(m) if o.wants("scaling") => Some(scaling(o, dir, world.clone(), m).await?),
        _ => None,
    };
    let hub = main.started.as_ref().zip(idle).map(|(s, idle)| HubFigures {
        cold_start_ms: s.hub.cold_start.as_secs_f64() * 1000.0,
        idle_rss_mb: idle.rss_mb,
        peak_rss_mb: s.hub.memory().peak_rss_mb,
    });
    let (seeded_lab_orders, seed_rate_per_second) = match &main.started {
        Some(s) => (
            s.done.lab_orders,
            Some(s.done.patients as f64 / s.done.seconds.max(1e-9)),
        ),
        None => (crate::seed::lab_orders_of(main.seed.patients), None),
    };
    let backend = if main.config.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let seeded_patients = main.seed.patients;
    drop(main);

    Ok(Report {
        started_at,
        commit: report::commit(),
        backend,
        backbone: backbone(o),
        machine: Machine::this(),
        load_generator: "SLA scenarios: open loop at a fixed offered rate, latency from each request's scheduled time \
                         (no coordinated omission), HdrHistogram. Capacity and HL7: closed loops of a fixed number of \
                         workers (connections), latency from each request's send, HdrHistogram",
        seeded_patients,
        seeded_lab_orders,
        hl7_orders: world.hl7_orders.len(),
        seed_rate_per_second,
        warmup_seconds: o.warmup.as_secs_f64(),
        duration_seconds: o.duration.as_secs_f64(),
        given_url: o.given.as_ref().map(|g| g.base.clone()),
        hub,
        scenarios: results,
        capacity,
        ratios,
        events,
        search_scaling: scaling,
        peer,
    })
}

fn backbone(o: &BenchOptions) -> &'static str {
    if o.kafka_brokers.is_some() {
        "kafka"
    } else {
        "embedded log"
    }
}

/// Scenario `s` at its offered rate (or `--rate`), open loop.
async fn open_loop(o: &BenchOptions, s: &Scenario, world: Arc<World>) -> ScenarioResult {
    let load = open_load(o, s);
    let name = s.name;
    let measured = load::run(load, move |n| scenarios::request(world.clone(), name, n)).await;
    progress(result(s, Some(load.rate), None, &measured))
}

/// How scenario `s` is offered: at its rate (or `--rate`) for the run's window.
fn open_load(o: &BenchOptions, s: &Scenario) -> Load {
    Load {
        rate: o.rate.unwrap_or(s.rate),
        warmup: o.warmup,
        duration: o.duration,
        max_in_flight: 512,
    }
}

fn progress(r: ScenarioResult) -> ScenarioResult {
    tracing::info!(
        scenario = r.name,
        throughput = r.throughput,
        p95_ms = r.p95_ms,
        errors = r.errors,
        "scenario done"
    );
    r
}

fn progress_peer(p: report::PeerComparison) -> report::PeerComparison {
    for r in &p.rows {
        tracing::info!(
            measure = %r.measure,
            meditrack = r.ours,
            peer = r.theirs,
            unit = r.unit,
            "side by side"
        );
    }
    p
}

/// Search p95 on a hub seeded with `patients` against the main hub's, in alternating
/// rounds: the main run's own search figures were taken amid other scenarios, with its
/// consumers and relay at work, and a ratio of two runs minutes apart on this machine
/// measured its drift as much as the data's growth.
async fn scaling(
    o: &BenchOptions,
    dir: &Path,
    small: Arc<World>,
    patients: u64,
) -> Result<SearchScaling, String> {
    let large = seeded_hub(o, &dir.join("scaling"), patients).await?;
    let client = crate::bench_client(&large.config)?;
    let world = Arc::new(prepare(&large.hub.base, client, &large.seed, 0).await?);
    let mut pairs = Vec::new();
    for s in ALL.iter().filter(|s| s.name.starts_with("search-")) {
        let (mut at_small, mut at_large) = (Vec::new(), Vec::new());
        for _ in 0..o.rounds.max(1) {
            at_small.push(open_loop(o, s, small.clone()).await.p95_ms);
            at_large.push(open_loop(o, s, world.clone()).await.p95_ms);
        }
        pairs.push(report::ScalingPair::of(s.name, &at_small, &at_large));
    }
    Ok(SearchScaling {
        small_patients: o.patients,
        large_patients: large.done.patients,
        large_seed_rate_per_second: large.done.patients as f64 / large.done.seconds.max(1e-9),
        pairs,
    })
}

fn result(s: &Scenario, rate: Option<f64>, workers: Option<usize>, m: &Measured) -> ScenarioResult {
    let p95 = m.ms(95.0);
    let error_share = m.errors as f64 / (m.completed + m.errors).max(1) as f64;
    ScenarioResult {
        name: s.name,
        what: s.what,
        rate,
        workers,
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

/// A closed-loop result: no SLA (latency under saturation is queueing by design).
fn throughputs(runs: &[Measured]) -> Vec<f64> {
    runs.iter().map(Measured::throughput).collect()
}

fn closed(name: &'static str, what: &'static str, w: Window, m: &Measured) -> ScenarioResult {
    let s = Scenario {
        name,
        what,
        sla_ms: None,
        rate: 0.0,
    };
    result(&s, None, Some(w.workers), m)
}

/// Ids the scenarios use: seeded patients (found by their MRNs), the seeded orders still
/// pending (found on the work list) for REST results, and `hl7_orders` orders placed now
/// for HL7 results.
async fn prepare(
    base: &str,
    client: reqwest::Client,
    o: &crate::seed::SeedOptions,
    hl7_orders: usize,
) -> Result<World, String> {
    let get = |path: String| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() != 200 {
                return Err(format!("{path}: status {}", r.status()));
            }
            r.json::<serde_json::Value>()
                .await
                .map_err(|e| e.to_string())
        }
    };
    let mut patients = Vec::new();
    let mut mrns = Vec::new();
    for i in 0..o.patients.min(200) {
        let mrn = crate::seed::mrn(i, o.seed);
        let page = get(format!("/api/v1/patients/search?mrn={mrn}")).await?;
        if let Some(id) = page["items"][0]["id"].as_str() {
            patients.push(id.to_owned());
            mrns.push(mrn);
        }
    }
    if patients.is_empty() {
        return Err("the seeded patients cannot be found through the API".to_owned());
    }
    let mut pending = Vec::new();
    let mut path = "/api/v1/lab/orders/pending?limit=100".to_owned();
    while pending.len() < 20_000 {
        let page = get(path).await?;
        for item in page["items"].as_array().into_iter().flatten() {
            if let Some(id) = item["id"].as_str() {
                pending.push(id.to_owned());
            }
        }
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/lab/orders/pending?limit=100&cursor={c}"),
            None => break,
        }
    }
    // Too few patients for seeded orders (tiny smoke runs): place some.
    if pending.len() < 20 {
        let more = place_orders(base, &client, &patients, 20 - pending.len()).await?;
        pending.extend(more);
    }
    // HL7 results each for an order of their own, as a laboratory sends them: sent round
    // after round to the few seeded orders, every message was the next correction of an
    // order with hundreds of results already, each read whole to add one (see README).
    let hl7_orders = place_orders(base, &client, &patients, hl7_orders).await?;
    // Their events handled before anything is measured.
    events::quiet(&client, base).await?;
    Ok(World {
        base: base.to_owned(),
        client,
        patients,
        mrns,
        orders: pending,
        hl7_orders,
        last_names: crate::seed::LAST.to_vec(),
    })
}

/// Messages per batch in `hl7-oru-batch` (its description says so too).
const HL7_BATCH: usize = 100;

/// Orders placed for the HL7 scenarios: two per seeded patient, at most 20,000, enough
/// for a result each at 1,000 messages/s through both runs.
fn hl7_orders_for(patients: u64) -> usize {
    usize::try_from(patients.saturating_mul(2))
        .unwrap_or(usize::MAX)
        .clamp(20, 20_000)
}

/// Places `count` glucose orders for `patients` in turn through the API, on 16
/// connections; their ids.
async fn place_orders(
    base: &str,
    client: &reqwest::Client,
    patients: &[String],
    count: usize,
) -> Result<Vec<String>, String> {
    const CONNECTIONS: usize = 16;
    let placers: Vec<_> = (0..CONNECTIONS.min(count))
        .map(|first| {
            let (client, base) = (client.clone(), base.to_owned());
            let patients: Vec<String> = (first..count)
                .step_by(CONNECTIONS)
                .map(|i| patients[i % patients.len()].clone())
                .collect();
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(patients.len());
                for patient in patients {
                    let order: serde_json::Value = client
                        .post(format!("{base}/api/v1/lab/orders"))
                        .json(&scenarios::lab_order(&patient))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?
                        .json()
                        .await
                        .map_err(|e| e.to_string())?;
                    let id = order["id"]
                        .as_str()
                        .ok_or_else(|| format!("a lab order was not created: {order}"))?;
                    ids.push(id.to_owned());
                }
                Ok::<_, String>(ids)
            })
        })
        .collect();
    let mut ids = Vec::with_capacity(count);
    for placer in placers {
        ids.extend(placer.await.map_err(|e| e.to_string())??);
    }
    Ok(ids)
}
