//! Another FHIR server measured beside the hub in the same run (`--fhir-peer <base URL>`),
//! so a claim that MediTrack is faster reads off one report rather than two runs on a
//! machine whose speed drifts from minute to minute. The peer is given as many synthetic
//! patients as the hub holds, through its own FHIR R4 REST API, and then both take the
//! same kinds of request in alternating rounds: read by id, create, search by family-name
//! prefix and by identifier. The peer is any server that answers `POST /Patient`,
//! `GET /Patient/{id}` and `GET /Patient?family=…` / `?identifier=…`.

use super::capacity::{self, Window};
use super::load::{self, Load, Measured};
use super::report::{PeerComparison, PeerRow, median};
use super::scenarios::{ALL, World, expect, pick};
use super::{BenchOptions, open_load, open_loop};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// The identifier system of the peer's patients; their values are the MRNs the hub's seed
/// gives the same patients, so the identifier search finds one patient on either side.
const MRN_SYSTEM: &str = "urn:meditrack:bench:mrn";

/// Patients the peer is given at most: about half a minute at the create rates measured
/// for FHIR servers on this machine class.
pub const MAX_PATIENTS: u64 = 20_000;

/// Connections the peer is filled on.
const FILLERS: u64 = 16;

const FHIR_JSON: &str = "application/fhir+json";

/// Patient `i` of `seed` as a FHIR R4 resource: the shape of the hub's seeded and POSTed
/// patients (a name from the same surnames, a birth date, a phone, a home address), with
/// the hub's MRN as its identifier.
pub fn patient(i: u64, seed: u64) -> Value {
    let family = crate::seed::LAST[(i % crate::seed::LAST.len() as u64) as usize];
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": MRN_SYSTEM, "value": crate::seed::mrn(i, seed)}],
        "name": [{"family": family, "given": ["Bench"]}],
        "gender": if i.is_multiple_of(2) { "female" } else { "male" },
        "birthDate": "1980-05-05",
        "telecom": [{"system": "phone", "value": "(555) 234-5678"}],
        "address": [{"use": "home", "line": ["1 Bench Way"], "city": "Springfield",
                     "state": "IL", "postalCode": "62701"}]
    })
}

/// The peer, filled: the ids it gave its patients, and what it says it is.
#[derive(Debug)]
pub struct Peer {
    base: String,
    client: reqwest::Client,
    ids: Vec<String>,
    mrns: Vec<String>,
    seed: u64,
    /// `software.name` and `.version` of its CapabilityStatement, when it serves one.
    pub software: String,
    /// How long creating its patients took.
    pub fill_seconds: f64,
}

impl Peer {
    /// Creates `patients` (at most [`MAX_PATIENTS`]) patients of `seed` in the FHIR server
    /// at `base`, on [`FILLERS`] connections.
    pub async fn fill(base: &str, patients: u64, seed: u64) -> Result<Peer, String> {
        let base = base.trim_end_matches('/').to_owned();
        let client = reqwest::Client::new();
        let software = software(&client, &base).await;
        let patients = patients.clamp(1, MAX_PATIENTS);
        let started = Instant::now();
        let fillers: Vec<_> = (0..FILLERS.min(patients))
            .map(|first| {
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move {
                    let mut made = Vec::new();
                    for i in (first..patients).step_by(FILLERS as usize) {
                        made.push(create(&client, &base, &patient(i, seed)).await?);
                    }
                    Ok::<_, String>(made)
                })
            })
            .collect();
        let mut made = Vec::with_capacity(patients as usize);
        for filler in fillers {
            made.extend(filler.await.map_err(|e| e.to_string())??);
        }
        let fill_seconds = started.elapsed().as_secs_f64();
        // A fill succeeds whole or not at all, so patients 0.. are all there.
        let mrns = (0..patients.min(200))
            .map(|i| crate::seed::mrn(i, seed))
            .collect();
        Ok(Peer {
            base,
            client,
            ids: made,
            mrns,
            seed,
            software,
            fill_seconds,
        })
    }

    pub fn patients(&self) -> usize {
        self.ids.len()
    }

    /// One request of the hub's scenario `name` (get-patient, post-patient, search-name,
    /// search-mrn), number `n`, as the FHIR API asks it.
    pub async fn request(self: Arc<Self>, name: &'static str, n: u64) -> Result<(), String> {
        let url = |path: String| format!("{}{path}", self.base);
        let get = |path: String| {
            self.client
                .get(url(path))
                .header(reqwest::header::ACCEPT, FHIR_JSON)
                .send()
        };
        match name {
            "get-patient" => {
                expect(get(format!("/Patient/{}", pick(&self.ids, n))).await, 200).await
            }
            "post-patient" => {
                // Numbered past the fill's, so no two creates are the same patient.
                create(
                    &self.client,
                    &self.base,
                    &patient(MAX_PATIENTS + n, self.seed),
                )
                .await
                .map(drop)
            }
            "search-name" => {
                let last = crate::seed::LAST[(n as usize) % crate::seed::LAST.len()];
                let prefix: String = last.chars().take(3).collect();
                expect(
                    get(format!("/Patient?family={prefix}&_count=20")).await,
                    200,
                )
                .await
            }
            "search-mrn" => {
                let mrn = pick(&self.mrns, n);
                expect(
                    get(format!("/Patient?identifier={MRN_SYSTEM}%7C{mrn}")).await,
                    200,
                )
                .await
            }
            other => Err(format!("the peer has no scenario {other}")),
        }
    }

    /// Scenario `name` on the peer, closed loop.
    pub async fn closed(self: &Arc<Self>, w: Window, name: &'static str) -> Measured {
        let peer = self.clone();
        load::closed(w.workers, w.warmup, w.duration, move |_, n| {
            peer.clone().request(name, n)
        })
        .await
    }

    /// Scenario `name` on the peer, open loop at `load`'s rate.
    pub async fn open(self: &Arc<Self>, load: Load, name: &'static str) -> Measured {
        let peer = self.clone();
        load::run(load, move |n| peer.clone().request(name, n)).await
    }
}

/// What one side did in one measure: the figure, and how many requests were answered and
/// failed (a peer that cannot keep up shows as errors, and a figure over no answers is
/// not shown).
struct Side {
    value: f64,
    completed: u64,
    errors: u64,
}

impl Side {
    /// The median of `figure` over `runs`, with their answers and errors summed.
    fn of(runs: &[Measured], figure: impl Fn(&Measured) -> f64) -> Side {
        Side::with(runs, runs.iter().map(figure).collect())
    }

    /// The median of `values`, one per run of `runs`.
    fn with(runs: &[Measured], values: Vec<f64>) -> Side {
        Side {
            value: median(&values),
            completed: runs.iter().map(|m| m.completed).sum(),
            errors: runs.iter().map(|m| m.errors).sum(),
        }
    }
}

fn row(measure: String, unit: &'static str, ours: Side, theirs: Side) -> PeerRow {
    PeerRow {
        measure,
        unit,
        ours: ours.value,
        theirs: theirs.value,
        our_completed: ours.completed,
        our_errors: ours.errors,
        their_completed: theirs.completed,
        their_errors: theirs.errors,
    }
}

fn p95(m: &Measured) -> f64 {
    m.ms(95.0)
}

/// Fills the peer at `url` with as many patients as the hub holds (at most
/// [`MAX_PATIENTS`]) and measures both in alternating rounds: read by id and its share of
/// the bare-axum ceiling of the same round, create, and the two searches, closed loop and
/// at the hub's scenario rates.
pub async fn compare(
    o: &BenchOptions,
    world: Arc<World>,
    url: &str,
    seed: u64,
) -> Result<PeerComparison, String> {
    let peer = Arc::new(Peer::fill(url, o.patients, seed).await?);
    let w = o.window();
    let rounds = o.rounds.max(1);
    let body = world.patient_json().await?;
    let (mut ours, mut theirs, mut axums) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours.push(capacity::scenario(w, world.clone(), "get-patient").await);
        theirs.push(peer.closed(w, "get-patient").await);
        axums.push(capacity::axum_ceiling(w, body.clone()).await?);
    }
    // Each side's read as a share of the ceiling measured in its own round.
    let share = |runs: &[Measured]| {
        let shares = runs
            .iter()
            .zip(&axums)
            .map(|(m, axum)| m.throughput() / axum.throughput().max(1e-9))
            .collect();
        Side::with(runs, shares)
    };
    let workers = w.workers;
    let mut rows = vec![
        row(
            format!("read a patient by id, closed loop, {workers} workers"),
            "/s",
            Side::of(&ours, Measured::throughput),
            Side::of(&theirs, Measured::throughput),
        ),
        row(
            "its p95".to_owned(),
            "ms",
            Side::of(&ours, p95),
            Side::of(&theirs, p95),
        ),
        row(
            "that read as a share of bare axum".to_owned(),
            "%",
            share(&ours),
            share(&theirs),
        ),
    ];
    let (ours, theirs) = (
        [capacity::scenario(w, world.clone(), "post-patient").await],
        [peer.closed(w, "post-patient").await],
    );
    rows.push(row(
        format!("create a patient, closed loop, {workers} workers"),
        "/s",
        Side::of(&ours, Measured::throughput),
        Side::of(&theirs, Measured::throughput),
    ));
    rows.push(row(
        "its p95".to_owned(),
        "ms",
        Side::of(&ours, p95),
        Side::of(&theirs, p95),
    ));
    for s in ALL.iter().filter(|s| s.name.starts_with("search-")) {
        let what = if s.name == "search-name" {
            "search by family-name prefix"
        } else {
            "search by MRN (identifier)"
        };
        let (ours, theirs) = (
            [capacity::scenario(w, world.clone(), s.name).await],
            [peer.closed(w, s.name).await],
        );
        rows.push(row(
            format!("{what}, closed loop, {workers} workers"),
            "/s",
            Side::of(&ours, Measured::throughput),
            Side::of(&theirs, Measured::throughput),
        ));
        let load = open_load(o, s);
        let rate = load.rate;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let r = open_loop(o, s, world.clone()).await;
            ours.push(Side {
                value: r.p95_ms,
                completed: r.completed,
                errors: r.errors,
            });
            theirs.push(peer.open(load, s.name).await);
        }
        rows.push(row(
            format!("{what}, p95 at {rate:.0}/s offered (open loop)"),
            "ms",
            Side {
                value: median(&ours.iter().map(|r| r.value).collect::<Vec<_>>()),
                completed: ours.iter().map(|r| r.completed).sum(),
                errors: ours.iter().map(|r| r.errors).sum(),
            },
            Side::of(&theirs, p95),
        ));
    }
    Ok(PeerComparison {
        url: url.to_owned(),
        software: peer.software.clone(),
        patients: peer.patients(),
        fill_per_second: peer.patients() as f64 / peer.fill_seconds.max(1e-9),
        rounds,
        rows,
    })
}

async fn create(client: &reqwest::Client, base: &str, patient: &Value) -> Result<String, String> {
    let r = client
        .post(format!("{base}/Patient"))
        .header(reqwest::header::CONTENT_TYPE, FHIR_JSON)
        .header(reqwest::header::ACCEPT, FHIR_JSON)
        .body(patient.to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 201 {
        return Err(format!("the peer's create answered {}", r.status()));
    }
    let created: Value = r.json().await.map_err(|e| e.to_string())?;
    created["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the peer's create returned no id".to_owned())
}

/// What the server says it is (its CapabilityStatement's software), or "unknown".
async fn software(client: &reqwest::Client, base: &str) -> String {
    let statement: Option<Value> = async {
        client
            .get(format!("{base}/metadata"))
            .header(reqwest::header::ACCEPT, FHIR_JSON)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }
    .await;
    let Some(s) = statement else {
        return "unknown".to_owned();
    };
    let name = s["software"]["name"].as_str().unwrap_or("unknown");
    match (s["software"]["version"].as_str(), s["fhirVersion"].as_str()) {
        (Some(v), Some(f)) => format!("{name} {v} (FHIR {f})"),
        (Some(v), None) => format!("{name} {v}"),
        (None, Some(f)) => format!("{name} (FHIR {f})"),
        (None, None) => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_patient_is_the_same_person_each_time_with_the_hubs_mrn() {
        let p = patient(7, 42);
        assert_eq!(p, patient(7, 42));
        assert_eq!(p["identifier"][0]["value"], crate::seed::mrn(7, 42));
        assert_eq!(p["name"][0]["family"], crate::seed::LAST[7]);
        assert_ne!(p["identifier"], patient(8, 42)["identifier"]);
    }
}
