//! `meditrack seed`: fills a hub with synthetic patients (demographics, an address,
//! insurance, an SSN for half of them), their medical records and lab orders (one for every
//! fourth patient; half of those completed with a verified result), deterministically from
//! `--seed`, in one transaction per service (by `COPY` on PostgreSQL, multi-row INSERTs on
//! SQLite), at constant memory. Into a fresh hub the tables' secondary indexes are built
//! once, after the rows are in. For benchmarks and demos: every value is made up, and the
//! same seed makes the same data.

use crate::{Config, StartError};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use kernel::ids::{LabOrderId, MedicalRecordId, PatientId};
use kernel::lab_request::{LabOrderRequest, OrderedTest};
use kernel::{Sensitive, TenantId};
use lab::domain::{AbnormalFlag, CriticalLimits, LabOrder, NewLabOrder, SubmittedResult};
use patient::domain::address::AddressInput;
use patient::domain::insurance::InsuranceInput;
use patient::domain::medical_record::MedicalRecord;
use patient::domain::patient::DemographicsInput;
use patient::domain::{Demographics, Mrn, Patient};
use std::time::Instant;
use store::bulk::Batch as Prepared;
use store::{Db, DeferredIndexes, Scope, Tx};

const FIRST: [&str; 40] = [
    "Ada", "Bram", "Cora", "Dario", "Elin", "Felix", "Greta", "Hugo", "Iris", "Jonas", "Kira",
    "Lars", "Mila", "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tara", "Ugo", "Vera", "Wim",
    "Xenia", "Yara", "Zeno", "Anouk", "Bodil", "Casimir", "Dagny", "Emil", "Frida", "Gunnar",
    "Hedda", "Ivo", "Juno", "Kasper", "Linnea", "Magnus", "Nora",
];
pub const LAST: [&str; 60] = [
    "Aalto",
    "Berglund",
    "Castell",
    "Dalby",
    "Ekholm",
    "Falk",
    "Granqvist",
    "Holm",
    "Isaksen",
    "Jarvi",
    "Kallio",
    "Lindqvist",
    "Moberg",
    "Nyberg",
    "Ostrom",
    "Pihl",
    "Quist",
    "Rask",
    "Sandell",
    "Tornqvist",
    "Uhlin",
    "Vikstrom",
    "Wallin",
    "Ylander",
    "Zetterlund",
    "Ahlgren",
    "Blomqvist",
    "Carlsund",
    "Dufva",
    "Engdahl",
    "Forsell",
    "Gyllen",
    "Hedlund",
    "Idestam",
    "Juhlin",
    "Kvist",
    "Lundell",
    "Malmberg",
    "Norell",
    "Orrby",
    "Palm",
    "Ramel",
    "Sjoholm",
    "Thorell",
    "Unger",
    "Vallin",
    "Westerberg",
    "Aberg",
    "Bystrom",
    "Cederlund",
    "Dahlgren",
    "Ekstrand",
    "Frisk",
    "Grahn",
    "Hallberg",
    "Ivarsson",
    "Jonsson",
    "Kjellberg",
    "Lagerlof",
    "Melander",
];
const CITIES: [(&str, &str, &str); 6] = [
    ("Springfield", "IL", "62701"),
    ("Riverton", "WY", "82501"),
    ("Fairview", "OR", "97024"),
    ("Greenville", "SC", "29601"),
    ("Madison", "WI", "53703"),
    ("Salem", "MA", "01970"),
];
const DIAGNOSES: [&str; 6] = ["E11.65", "I10", "J06.9", "M54.5", "R51.9", "Z00.00"];

/// A small, fast, deterministic generator (SplitMix64): the same seed, the same data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, index: u64) -> Self {
        Rng(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

#[derive(Debug, Clone)]
pub struct SeedOptions {
    pub patients: u64,
    pub records_per_patient: u32,
    pub seed: u64,
    pub tenant: TenantId,
}

/// Patients made per transaction.
const BATCH: u64 = 2_000;
/// Batches a writer's queue holds on PostgreSQL (each a few MB encoded): enough for the
/// maker and the encoders to go on while the writer sends what it gathered. On SQLite,
/// where nothing is gathered, two are enough to keep its writer busy, and each holds
/// more (every value bound apart): six took the seed's peak RSS to 250 MB.
fn queued(backend: store::Backend) -> usize {
    match backend {
        store::Backend::Postgres => 6,
        store::Backend::Sqlite => 2,
    }
}

/// The MRN of patient `i` of seed `seed`.
pub fn mrn(i: u64, seed: u64) -> String {
    format!("SD{:02}{:09}", seed % 100, i)
}

/// Patient `i` of seed `seed`: always the same person.
fn patient(
    i: u64,
    seed: u64,
    tenant: &TenantId,
    today: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Patient, String> {
    let mut rng = Rng::new(seed, i);
    let first = rng.pick(&FIRST);
    let last = rng.pick(&LAST);
    let dob = NaiveDate::from_ymd_opt(1930, 1, 1).unwrap_or(today)
        + Duration::days(rng.below(33_000) as i64);
    let dob = dob.min(today).format("%Y-%m-%d").to_string();
    let (city, state, zip) = *rng.pick(&CITIES);
    let street = format!("{} Synthetic Way", 1 + rng.below(9_000));
    let phone = format!("(555) {:03}-{:04}", 200 + rng.below(700), rng.below(10_000));
    let email = format!(
        "{}.{}.{i}@example.org",
        first.to_lowercase(),
        last.to_lowercase()
    );
    // Unique per index: area 100-899, group 01-99, serial 0001-9999 (never 000, 666, 9xx).
    let ssn = format!(
        "{:03}-{:02}-{:04}",
        100 + (i / (99 * 9_999)) % 800,
        1 + (i / 9_999) % 99,
        1 + i % 9_999
    );
    let mrn = mrn(i, seed);
    let policy = format!("POL-{i}");
    let input = DemographicsInput {
        mrn: Some(&mrn),
        ssn: i.is_multiple_of(2).then_some(ssn.as_str()),
        first_name: Some(first),
        last_name: Some(last),
        date_of_birth: Some(&dob),
        gender: Some(*rng.pick(&["FEMALE", "MALE", "OTHER", "UNKNOWN"])),
        phone: Some(&phone),
        email: Some(&email),
        addresses: vec![AddressInput {
            address_type: Some("HOME"),
            street_line1: Some(&street),
            city: Some(city),
            state: Some(state),
            zip_code: Some(zip),
            is_primary: Some(true),
            ..Default::default()
        }],
        insurance: vec![InsuranceInput {
            policy_number: Some(&policy),
            payer_id: Some("PAYER-1"),
            payer_name: Some("Synthetic Health Plan"),
            relationship_to_insured: Some("SELF"),
            effective_date: Some("2024-01-01"),
            is_primary: Some(true),
            ..Default::default()
        }],
        ..Default::default()
    };
    let d = Demographics::parse(&input, today).map_err(|e| {
        let fields: Vec<String> = e.into_iter().map(|f| f.field).collect();
        format!(
            "synthetic patient {i} is invalid ({}): a bug in the generator",
            fields.join(", ")
        )
    })?;
    let mrn = Mrn::parse(&mrn).map_err(|_| "a generated MRN is invalid".to_owned())?;
    Ok(Patient::register(
        PatientId::new(),
        tenant.clone(),
        mrn,
        d,
        "seed",
        now,
    ))
}

fn records(p: &Patient, i: u64, seed: u64, k: u32, now: DateTime<Utc>) -> Vec<MedicalRecord> {
    let mut rng = Rng::new(seed.wrapping_add(1), i);
    (0..k)
        .map(|_| {
            let at = Utc
                .timestamp_opt(1_600_000_000 + rng.below(160_000_000) as i64, 0)
                .single()
                .unwrap_or(now);
            MedicalRecord {
                id: MedicalRecordId::new(),
                patient_id: p.id,
                record_type: "VISIT",
                record_date: at.min(now),
                provider_id: format!("NPI{:010}", rng.below(10_000_000_000)),
                diagnosis_codes: vec![(*rng.pick(&DIAGNOSES)).to_owned()],
                procedure_codes: vec!["99213".to_owned()],
                notes: Some(Sensitive::new(format!(
                    "Synthetic visit note {}",
                    rng.next()
                ))),
                created_at: now,
                created_by: "seed".to_owned(),
            }
        })
        .collect()
}

/// The flag of a glucose value in mg/dL against the reference range 70-99.
pub fn glucose_flag(value: u64) -> AbnormalFlag {
    match value {
        0..70 => AbnormalFlag::Low,
        70..100 => AbnormalFlag::Normal,
        _ => AbnormalFlag::High,
    }
}

/// Every fourth patient has a glucose order; every eighth, its result too, verified.
const ORDER_EVERY: u64 = 4;

/// Lab orders a seed of `patients` makes.
pub fn lab_orders_of(patients: u64) -> u64 {
    patients.div_ceil(ORDER_EVERY)
}

fn lab_order(
    p: &Patient,
    i: u64,
    seed: u64,
    now: DateTime<Utc>,
) -> Result<Option<LabOrder>, String> {
    if !i.is_multiple_of(ORDER_EVERY) {
        return Ok(None);
    }
    let mut rng = Rng::new(seed.wrapping_add(2), i);
    let at = now - Duration::minutes(rng.below(60 * 24 * 30) as i64);
    let request = LabOrderRequest {
        tests: vec![OrderedTest {
            test_code: "GLU".to_owned(),
            test_name: "Glucose".to_owned(),
            loinc_code: Some("2345-7".to_owned()),
        }],
        priority: "ROUTINE",
        ordering_provider_id: format!("NPI{:010}", rng.below(10_000_000_000)),
        ordering_provider_name: "Synthetic Provider".to_owned(),
        diagnosis_codes: vec![(*rng.pick(&DIAGNOSES)).to_owned()],
    };
    let new = NewLabOrder {
        patient_id: p.id,
        mrn: Some(p.mrn.as_str().to_owned()),
        request,
        requires_preauthorization: false,
    };
    let mut order = LabOrder::place(LabOrderId::new(), p.tenant.clone(), new, at);
    if i.is_multiple_of(8) {
        let value = 60 + rng.below(80);
        let result = SubmittedResult {
            test_code: "GLU".to_owned(),
            value: value.to_string(),
            unit: Some("mg/dL".to_owned()),
            reference_range: Some("70-99".to_owned()),
            abnormal_flag: Some(glucose_flag(value)),
            performed_by: "seed".to_owned(),
            performed_at: at,
        };
        order
            .record_results(vec![result], &CriticalLimits::default(), at)
            .and_then(|_| order.verify("seed", at))
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(order))
}

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct Seeded {
    pub patients: u64,
    pub records: u64,
    pub lab_orders: u64,
    pub seconds: f64,
}

/// A service's share of a batch (from its first patient's index), being prepared for its
/// writer on a thread of its own.
type Share<B> = (u64, tokio::task::JoinHandle<Result<B, String>>);

/// The batches of a writer's queue as it writes them: those already queued when it is
/// ready to write are gathered while they can go as one ([`Prepared::gather`]: on
/// PostgreSQL one `COPY` per table for several), and the rest wait for the next round.
///
/// It never waits to fill a gathering: while one is being sent the queue fills up behind
/// it, so the next one is as large as the writer's pace needs. Waiting for more (up to
/// 16 MiB) while its one place stood full had the maker and the encoders idle
/// during each send and the server idle during each gathering: sampled, the patient
/// service's connection was idle in its transaction a third of the load.
struct Gathered<R> {
    queue: tokio::sync::mpsc::Receiver<Share<Prepared<R>>>,
    held: Option<(u64, Prepared<R>)>,
    /// Whether the batches go out to be written frozen ([`Prepared::freeze`]): the load's
    /// tables were emptied in its transaction ([`DeferredIndexes::rows_may_be_frozen`]).
    frozen: bool,
}

impl<R> Gathered<R> {
    fn new(queue: tokio::sync::mpsc::Receiver<Share<Prepared<R>>>, frozen: bool) -> Self {
        Self {
            queue,
            held: None,
            frozen,
        }
    }

    /// The next batch to write, with the position of its first patient; `None` once the
    /// queue is closed and everything has been handed out.
    async fn next(&mut self) -> Result<Option<(u64, Prepared<R>)>, String> {
        let prepared = |batch: tokio::task::JoinHandle<Result<Prepared<R>, String>>| async {
            batch
                .await
                .map_err(|e| format!("preparing a batch failed: {e}"))?
        };
        let (at, mut gathered) = match self.held.take() {
            Some(held) => held,
            None => match self.queue.recv().await {
                Some((at, batch)) => (at, prepared(batch).await?),
                None => return Ok(None),
            },
        };
        while let Ok((at, batch)) = self.queue.try_recv() {
            if let Some(next) = gathered.gather(prepared(batch).await?) {
                self.held = Some((at, next));
                break;
            }
        }
        if self.frozen {
            gathered.freeze();
        }
        Ok(Some((at, gathered)))
    }
}

/// A batch of synthetic data, made on one thread while others are written.
struct Batch {
    /// The index of its first patient.
    first: u64,
    patients: Vec<Patient>,
    records: Vec<MedicalRecord>,
    orders: Vec<LabOrder>,
}

impl Batch {
    fn make(
        o: &SeedOptions,
        range: std::ops::Range<u64>,
        today: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        let mut batch = Batch {
            first: range.start,
            patients: Vec::with_capacity((range.end - range.start) as usize),
            records: Vec::new(),
            orders: Vec::new(),
        };
        for i in range {
            let p = patient(i, o.seed, &o.tenant, today, now)?;
            batch
                .records
                .extend(records(&p, i, o.seed, o.records_per_patient, now));
            batch.orders.extend(lab_order(&p, i, o.seed, now)?);
            batch.patients.push(p);
        }
        Ok(batch)
    }
}

/// How far a run is, for a progress readout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// After each batch is handed to the writers (who are at most two batches behind):
    /// patients so far, and per second since the start.
    Written { patients: u64, per_second: f64 },
    /// Every batch is written; the indexes set aside are being built.
    BuildingIndexes,
}

/// Seeds, telling `progress` how far it is. Each service's share is one transaction, as
/// the owner of its schema: a run that fails leaves nothing of itself behind. Into empty
/// tables, their indexes are built once at the end instead of row by row
/// ([`DeferredIndexes`]).
pub async fn seed(
    config: &Config,
    o: &SeedOptions,
    mut progress: impl FnMut(Progress),
) -> Result<Seeded, String> {
    // Migrated (and, on PostgreSQL, the application role granted) as a hub would find
    // them; loaded as the schemas' owner, who may set indexes aside.
    let opened = crate::open(config, &[patient::SERVICE, lab::SERVICE])
        .await
        .map_err(|e| e.to_string())?;
    for (_, db) in &opened {
        db.close().await;
    }
    let store_config = crate::store_config(config);
    let connect = |service| Db::connect(service, &store_config);
    let db = connect(patient::SERVICE)
        .await
        .map_err(|e| format!("{}: {e}", patient::SERVICE))?;
    let lab_db = connect(lab::SERVICE)
        .await
        .map_err(|e| format!("{}: {e}", lab::SERVICE))?;
    let store = crate::fields::patient_store(config, db.clone())
        .await
        .map_err(|e: StartError| e.to_string())?;
    let started = Instant::now();
    let now = Utc::now();
    let today = now.date_naive();
    let scope = Scope::Tenant(&o.tenant);
    let mut tx = db
        .begin_in(scope)
        .await
        .map_err(|e| format!("{}: {e}", patient::SERVICE))?;
    let mut lab_tx = lab_db
        .begin_in(scope)
        .await
        .map_err(|e| format!("{}: {e}", lab::SERVICE))?;
    let set_aside = |e: store::DbError| format!("setting indexes aside: {e}");
    let deferred = DeferredIndexes::set_aside(&mut tx, &patient::store::BULK_TABLES)
        .await
        .map_err(set_aside)?;
    let lab_deferred = DeferredIndexes::set_aside(&mut lab_tx, &lab::store::BULK_TABLES)
        .await
        .map_err(set_aside)?;
    // Batches are made on a thread of their own while the previous one is written: on two
    // cores, making and writing overlap instead of taking turns.
    let (batches, mut made) = tokio::sync::mpsc::channel::<Result<Batch, String>>(2);
    let maker = o.clone();
    tokio::task::spawn_blocking(move || {
        let mut start = 0;
        while start < maker.patients {
            let end = (start + BATCH).min(maker.patients);
            let batch = Batch::make(&maker, start..end, today, now);
            let failed = batch.is_err();
            if batches.blocking_send(batch).is_err() || failed {
                return;
            }
            start = end;
        }
    });
    // Each service's share of a batch is prepared (on PostgreSQL sealed and encoded as
    // `COPY` rows) on a blocking thread while the writer sends the previous one, and written
    // by a task of its own, so the patient service's load and the lab's, each one
    // transaction on one connection, wait neither for each other nor for the encoding; a
    // writer that fails drops its queue, and its error is reported.
    let (patient_shares, patient_queue) =
        tokio::sync::mpsc::channel::<Share<patient::store::BulkBatch>>(queued(db.backend()));
    let (lab_shares, lab_queue) =
        tokio::sync::mpsc::channel::<Share<lab::store::BulkBatch>>(queued(db.backend()));
    let frozen = |d: &Option<DeferredIndexes>| d.as_ref().is_some_and(|d| d.rows_may_be_frozen());
    let (patient_frozen, lab_frozen) = (frozen(&deferred), frozen(&lab_deferred));
    let patient_store = store.clone();
    let patient_writer = tokio::spawn(async move {
        let mut batches = Gathered::new(patient_queue, patient_frozen);
        while let Some((at, batch)) = batches.next().await? {
            patient_store
                .bulk_write(&mut tx, batch)
                .await
                .map_err(|e| {
                    format!(
                        "batch at {at}: {e} (seeding twice into one tenant? use --tenant or --seed)"
                    )
                })?;
        }
        Ok::<_, String>(tx)
    });
    let tenant = o.tenant.clone();
    let lab_writer = tokio::spawn(async move {
        let mut batches = Gathered::new(lab_queue, lab_frozen);
        while let Some((at, batch)) = batches.next().await? {
            lab::store::SqlLabStore::bulk_write(&mut lab_tx, &tenant, batch, now)
                .await
                .map_err(|e| format!("lab batch at {at}: {e}"))?;
        }
        Ok::<_, String>(lab_tx)
    });
    let backend = db.backend();
    let (mut done, mut records_done, mut orders_done) = (0, 0, 0);
    while let Some(batch) = made.recv().await {
        let b = batch?;
        let counts = (
            b.patients.len() as u64,
            b.records.len() as u64,
            b.orders.len() as u64,
        );
        // The lab learns of each patient, as `patient.created.v1` would have told it.
        let known = b
            .patients
            .iter()
            .map(|p| (p.id, p.mrn.as_str().to_owned()))
            .collect();
        let (store, tenant) = (store.clone(), o.tenant.clone());
        let people = tokio::task::spawn_blocking(move || {
            store
                .bulk_batch(&tenant, b.patients, b.records)
                .map_err(|e| format!("preparing a batch: {e}"))
        });
        let tenant = o.tenant.clone();
        let orders = tokio::task::spawn_blocking(move || {
            Ok(lab::store::SqlLabStore::bulk_batch(
                backend, &tenant, known, b.orders, now,
            ))
        });
        if patient_shares.send((b.first, people)).await.is_err()
            || lab_shares.send((b.first, orders)).await.is_err()
        {
            break;
        }
        done += counts.0;
        records_done += counts.1;
        orders_done += counts.2;
        progress(Progress::Written {
            patients: done,
            per_second: done as f64 / started.elapsed().as_secs_f64().max(1e-9),
        });
    }
    drop((patient_shares, lab_shares));
    let writer_failed = |e: tokio::task::JoinError| format!("a batch writer failed: {e}");
    let patient_written = patient_writer.await.map_err(writer_failed)?;
    let lab_written = lab_writer.await.map_err(writer_failed)?;
    let (mut tx, mut lab_tx) = (patient_written?, lab_written?);
    if done < o.patients {
        return Err(format!(
            "seeding stopped after {done} patients: the batch maker ended early"
        ));
    }
    if deferred.is_some() || lab_deferred.is_some() {
        progress(Progress::BuildingIndexes);
    }
    let rebuild = async |deferred: Option<DeferredIndexes>, tx: &mut Tx| match deferred {
        Some(d) => d.rebuild(tx).await,
        None => Ok(()),
    };
    let (built, lab_built) = tokio::join!(
        rebuild(deferred, &mut tx),
        rebuild(lab_deferred, &mut lab_tx)
    );
    built
        .and(lab_built)
        .map_err(|e| format!("building the indexes set aside: {e}"))?;
    tx.commit()
        .await
        .map_err(|e| format!("{}: {e}", patient::SERVICE))?;
    lab_tx
        .commit()
        .await
        .map_err(|e| format!("{}: {e}", lab::SERVICE))?;
    db.close().await;
    lab_db.close().await;
    // Each service's tables on a connection of its own: a `VACUUM` is one backend's work.
    let statistics = async |service| {
        store::analyze(service, &store_config)
            .await
            .map_err(|e| format!("statistics of {service}: {e}"))
    };
    let (patients, labs) = tokio::join!(statistics(patient::SERVICE), statistics(lab::SERVICE));
    patients.and(labs)?;
    Ok(Seeded {
        patients: done,
        records: records_done,
        lab_orders: orders_done,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_people_and_every_one_is_valid() {
        let t = TenantId::parse("t").unwrap();
        let now = Utc::now();
        let a = patient(7, 42, &t, now.date_naive(), now).unwrap();
        let b = patient(7, 42, &t, now.date_naive(), now).unwrap();
        assert_eq!(
            (a.name.clone(), a.mrn.clone(), a.ssn.clone()),
            (b.name, b.mrn, b.ssn)
        );
        let c = patient(7, 43, &t, now.date_naive(), now).unwrap();
        assert_ne!(a.mrn, c.mrn);
        for i in 0..5_000 {
            patient(i, 42, &t, now.date_naive(), now).unwrap();
        }
    }

    #[tokio::test]
    async fn a_writer_sends_what_is_queued_as_one_and_never_waits_for_more() {
        use store::copy_text::{CopyLoad, CopyRows};
        let load = |table: &'static str| {
            let mut rows = CopyRows::with_capacity(8);
            rows.value("x");
            rows.end_row();
            Prepared::<()>::Copy(CopyLoad::new([(rows, table)]))
        };
        let bytes = |batch: &Prepared<()>| match batch {
            Prepared::Copy(load) => load.bytes(),
            Prepared::Rows(()) => 0,
        };
        let (queue, rx) = tokio::sync::mpsc::channel(8);
        let mut writer = Gathered::new(rx, false);
        for (at, table) in [(0, "a"), (10, "a"), (20, "b"), (30, "b")] {
            let share = tokio::task::spawn_blocking(move || Ok(load(table)));
            queue.send((at, share)).await.unwrap();
        }
        let soon = std::time::Duration::from_secs(10);
        // Queued already: the first two as one, then the two of another table as one, and
        // the writer does not wait for a third to join them.
        let (at, first) = writer.next().await.unwrap().unwrap();
        assert_eq!((at, bytes(&first)), (0, 4));
        let next = tokio::time::timeout(soon, writer.next());
        let (at, second) = next.await.expect("it waited").unwrap().unwrap();
        assert_eq!((at, bytes(&second)), (20, 4));
        // One more, alone in the queue: it goes at once.
        let share = tokio::task::spawn_blocking(move || Ok(load("b")));
        queue.send((40, share)).await.unwrap();
        let next = tokio::time::timeout(soon, writer.next());
        let (at, third) = next.await.expect("it waited").unwrap().unwrap();
        assert_eq!((at, bytes(&third)), (40, 2));
        drop(queue);
        assert!(writer.next().await.unwrap().is_none());
    }
}
