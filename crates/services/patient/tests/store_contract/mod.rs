//! The patient store port's contract, run against the SQL adapter on both backends.

use chrono::Utc;
use events::patient::PatientCreatedV1;
use events::{EventEnvelope, EventMeta};
use kernel::TenantId;
use kernel::ids::{CorrelationId, PatientId};
use kernel::paging::PageRequest;
use patient::domain::address::AddressInput;
use patient::domain::insurance::InsuranceInput;
use patient::domain::patient::DemographicsInput;
use patient::domain::timeline::{TimelineEntry, TimelineEvent};
use patient::domain::{Demographics, Mrn, Patient};
use patient::store::{
    Change, MRN_ATTEMPTS, OwnedIdempotencyRecord, PatientStore, Registration, SearchCriteria,
    SqlPatientStore, Write, WriteError,
};
use testkit::{Backend, TestApp};

testkit::on_both_backends!(
    state_and_events_commit_or_roll_back_together,
    generated_mrns_never_repeat_within_a_tenant,
    a_generated_mrn_a_client_took_is_passed_over_and_never_handed_out_again,
    stores_that_share_a_database_never_hand_out_the_same_mrn,
    a_store_gives_back_only_the_mrns_no_other_store_reserved_after_it,
    stale_versions_and_missing_patients_are_told_apart,
    searches_use_indexes_not_table_scans,
    a_batch_of_reported_entries_looks_its_patients_up_by_id,
    an_idempotency_key_is_recorded_with_its_change_or_not_at_all,
    a_patient_reads_back_with_its_addresses_and_insurance_in_order,
);

fn tenant() -> TenantId {
    TenantId::parse("contract").unwrap()
}

fn new_patient(mrn: &str) -> Patient {
    let input = DemographicsInput {
        first_name: Some("Contract"),
        last_name: Some("Tester"),
        date_of_birth: Some("1970-01-01"),
        ..Default::default()
    };
    let d = Demographics::parse(&input, Utc::now().date_naive()).unwrap();
    Patient::register(
        PatientId::new(),
        tenant(),
        Mrn::parse(mrn).unwrap(),
        d,
        "tester",
        Utc::now(),
    )
}

fn created_event(p: &Patient) -> EventEnvelope {
    let meta = EventMeta {
        source: "patient",
        tenant: tenant(),
        correlation_id: CorrelationId::new(),
        causation_id: None,
        occurred_at: Utc::now(),
    };
    EventEnvelope::new(
        &meta,
        p.id,
        &PatientCreatedV1 {
            patient_id: p.id,
            mrn: p.mrn.to_string(),
            registered_at: Utc::now(),
        },
    )
}

/// Registers `p` as the service does (on SQLite, one direct write).
async fn register(
    store: &SqlPatientStore,
    p: &Patient,
    events: &[EventEnvelope],
) -> Result<(), WriteError> {
    register_with(store, p, events, None).await
}

async fn register_with(
    store: &SqlPatientStore,
    p: &Patient,
    events: &[EventEnvelope],
    idempotency: Option<OwnedIdempotencyRecord>,
) -> Result<(), WriteError> {
    let (mrn, p, events) = (p.mrn.clone(), p.clone(), events.to_vec());
    let build = move |_| Registration {
        timeline: TimelineEntry::new(
            p.id,
            Utc::now(),
            TimelineEvent::Registered {
                mrn: p.mrn.to_string(),
            },
        ),
        patient: p.clone(),
        events: events.clone(),
    };
    store
        .register(&tenant(), Some(mrn), build, idempotency)
        .await
        .map(|_| ())
}

/// Registers a patient under the tenant's next generated MRN, and returns that MRN.
async fn register_generated(store: &SqlPatientStore) -> Result<String, WriteError> {
    let template = new_patient("TEMPLATE");
    let build = move |mrn: Mrn| {
        let patient = Patient {
            id: PatientId::new(),
            mrn,
            ..template.clone()
        };
        Registration {
            timeline: TimelineEntry::new(
                patient.id,
                Utc::now(),
                TimelineEvent::Registered {
                    mrn: patient.mrn.to_string(),
                },
            ),
            events: vec![created_event(&patient)],
            patient,
        }
    };
    let p = store.register(&tenant(), None, build, None).await?;
    let stored = store.patient(&tenant(), p.id).await.unwrap().unwrap();
    assert_eq!(stored.mrn, p.mrn);
    Ok(p.mrn.to_string())
}

async fn store_of(app: &TestApp) -> SqlPatientStore {
    // As the hub connects: on PostgreSQL, row-level security applies to everything below.
    SqlPatientStore::new(app.app_db("patient").await, app.field_cipher())
}

async fn state_and_events_commit_or_roll_back_together(app: TestApp) {
    let store = store_of(&app).await;
    let first = new_patient("ROLL-0001");
    let event = created_event(&first);
    register(&store, &first, std::slice::from_ref(&event))
        .await
        .unwrap();
    assert!(store.patient(&tenant(), first.id).await.unwrap().is_some());

    // The second write's state is fine, but its event reuses an event id: the outbox insert
    // fails after the patient rows were written, and the whole transaction must go.
    let second = new_patient("ROLL-0002");
    let err = register(&store, &second, &[created_event(&second), event.clone()])
        .await
        .unwrap_err();
    assert!(matches!(err, WriteError::Db(_)), "{err:?}");
    assert!(
        store.patient(&tenant(), second.id).await.unwrap().is_none(),
        "state rolled back with the event"
    );
    let outbox = store::outbox::read(store.db(), 0, 100).await.unwrap();
    assert_eq!(outbox.len(), 1, "only the first registration's event");
    assert_eq!(outbox[0].envelope.0, event);
    let timeline = store
        .timeline(&tenant(), second.id, &PageRequest::default())
        .await
        .unwrap();
    assert!(timeline.items.is_empty());
}

async fn generated_mrns_never_repeat_within_a_tenant(app: TestApp) {
    let store = store_of(&app).await;
    let a = store.next_mrn(&tenant()).await.unwrap();
    let b = store.next_mrn(&tenant()).await.unwrap();
    let other = store
        .next_mrn(&TenantId::parse("elsewhere").unwrap())
        .await
        .unwrap();
    assert_eq!(
        (a.as_str(), b.as_str(), other.as_str()),
        ("MRN000000001", "MRN000000002", "MRN000000001")
    );
    let p = new_patient(a.as_str());
    register(&store, &p, &[]).await.unwrap();
    let twin = new_patient(a.as_str());
    assert!(matches!(
        register(&store, &twin, &[]).await,
        Err(WriteError::DuplicateMrn)
    ));
}

async fn a_generated_mrn_a_client_took_is_passed_over_and_never_handed_out_again(app: TestApp) {
    let store = store_of(&app).await;
    register(&store, &new_patient("MRN000000001"), &[])
        .await
        .unwrap();
    assert_eq!(register_generated(&store).await.unwrap(), "MRN000000002");

    // Clients took every MRN the next registration would try: it fails, registering
    // nothing, and the one after it starts past them.
    let first_taken = 3;
    for n in first_taken..first_taken + MRN_ATTEMPTS as i64 {
        register(&store, &new_patient(Mrn::generated(n).as_str()), &[])
            .await
            .unwrap();
    }
    let before = store::outbox::read(store.db(), 0, 1000)
        .await
        .unwrap()
        .len();
    assert!(matches!(
        register_generated(&store).await,
        Err(WriteError::DuplicateMrn)
    ));
    assert_eq!(
        store::outbox::read(store.db(), 0, 1000)
            .await
            .unwrap()
            .len(),
        before,
        "no event for a registration that did not happen"
    );
    let next = Mrn::generated(first_taken + MRN_ATTEMPTS as i64);
    assert_eq!(register_generated(&store).await.unwrap(), next.as_str());
}

/// Two processes over one database (two stores here), each registering many patients at
/// once: every generated MRN is handed out once, however the stores reserve them.
async fn stores_that_share_a_database_never_hand_out_the_same_mrn(app: TestApp) {
    let stores = [store_of(&app).await, store_of(&app).await];
    let mut running = tokio::task::JoinSet::new();
    // More than one block of each store's (patient::store reserves 64 at a time on
    // PostgreSQL).
    for n in 0..300 {
        let store = stores[n % 2].clone();
        running.spawn(async move { register_generated(&store).await.unwrap() });
    }
    let mut mrns = running.join_all().await;
    assert_eq!(mrns.len(), 300);
    mrns.sort();
    mrns.dedup();
    assert_eq!(mrns.len(), 300, "an MRN was handed out twice");
}

/// A process that stops gives back the MRNs it reserved and did not hand out, unless
/// another has reserved since: the next process continues right after the last MRN handed
/// out, and none is handed out twice.
async fn a_store_gives_back_only_the_mrns_no_other_store_reserved_after_it(app: TestApp) {
    let number = |m: Mrn| m.as_str()[3..].parse::<i64>().unwrap();
    let (a, b) = (store_of(&app).await, store_of(&app).await);
    let first = number(a.next_mrn(&tenant()).await.unwrap());
    let second = number(b.next_mrn(&tenant()).await.unwrap());
    assert!(second > first);
    // `a` stops first: `b` reserved after it, so `a`'s rest stays unused.
    a.give_back_mrns().await.unwrap();
    b.give_back_mrns().await.unwrap();
    let next = number(store_of(&app).await.next_mrn(&tenant()).await.unwrap());
    assert_eq!(
        next,
        second + 1,
        "the next process continues after the last"
    );
}

async fn stale_versions_and_missing_patients_are_told_apart(app: TestApp) {
    let store = store_of(&app).await;
    let p = new_patient("VERS-0001");
    register(&store, &p, &[]).await.unwrap();
    let t = tenant();
    let timeline = TimelineEntry::new(p.id, Utc::now(), TimelineEvent::Deleted);
    let delete = |id, expected_version| Write {
        tenant: &t,
        actor: "tester",
        change: Change::Delete {
            id,
            expected_version,
            at: Utc::now(),
        },
        timeline: &timeline,
        events: &[],
        idempotency: None,
    };
    assert!(matches!(
        store.write(delete(p.id, 5)).await,
        Err(WriteError::VersionConflict)
    ));
    assert!(matches!(
        store.write(delete(PatientId::new(), 1)).await,
        Err(WriteError::NotFound)
    ));
    store.write(delete(p.id, 1)).await.unwrap();
    assert!(store.patient(&t, p.id).await.unwrap().is_none());
}

/// 5,000 synthetic patients in the contract tenant, then fresh planner statistics, so the
/// plans below are the ones a real tenant gets.
async fn seed_a_realistic_tenant(app: &TestApp) {
    // As the owner: bulk loading and ANALYZE are not the application's to do.
    let db = app.db("patient").await;
    let sql = match &db {
        store::Db::Postgres(_) => {
            "INSERT INTO patients (patient_id, tenant_id, mrn, first_name, last_name, first_name_norm, last_name_norm,
                date_of_birth, phone, email, email_norm, created_at, updated_at, version)
             SELECT gen_random_uuid(), 'contract', 'SEED' || lpad(i::text, 8, '0'), 'First' || (i % 700), 'Last' || (i % 900),
                'first' || (i % 700), 'last' || (i % 900), DATE '1940-01-01' + (i % 20000), '+1555' || (2000000 + i),
                'p' || i || '@example.org', 'p' || i || '@example.org', now(), now(), 1
             FROM generate_series(1, 5000) AS i;
             ANALYZE patients;"
        }
        store::Db::Sqlite(_) => {
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 5000)
             INSERT INTO patients (patient_id, tenant_id, mrn, first_name, last_name, first_name_norm, last_name_norm,
                date_of_birth, phone, email, email_norm, created_at, updated_at, version)
             SELECT randomblob(16), 'contract', 'SEED' || printf('%08d', i), 'First' || (i % 700), 'Last' || (i % 900),
                'first' || (i % 700), 'last' || (i % 900), date('1940-01-01', '+' || (i % 20000) || ' days'),
                '+1555' || (2000000 + i), 'p' || i || '@example.org', 'p' || i || '@example.org',
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 1
             FROM seq;
             ANALYZE;"
        }
    };
    store::on_pool!(&db, |c| sqlx::raw_sql(sql).execute(c).await.map(|_| ())).unwrap();
    db.close().await;
}

async fn searches_use_indexes_not_table_scans(app: TestApp) {
    let store = store_of(&app).await;
    seed_a_realistic_tenant(&app).await;
    // Each criterion must narrow an index on its own column; an index that only pins the
    // tenant would still scan every patient of the tenant.
    let criteria = [
        (
            "idx_patients_name",
            SearchCriteria {
                last_name: Some("smi".into()),
                ..Default::default()
            },
        ),
        (
            "idx_patients_first_name",
            SearchCriteria {
                first_name: Some("ann".into()),
                ..Default::default()
            },
        ),
        (
            "idx_patients_mrn",
            SearchCriteria {
                mrn: Some(Mrn::parse("MRN000000001").unwrap()),
                ..Default::default()
            },
        ),
        (
            "idx_patients_dob",
            SearchCriteria {
                date_of_birth: chrono::NaiveDate::from_ymd_opt(1950, 3, 1),
                ..Default::default()
            },
        ),
        (
            "idx_patients_phone",
            SearchCriteria {
                phone: Some(patient::domain::Phone::parse("+15552000042").unwrap()),
                ..Default::default()
            },
        ),
        (
            "idx_patients_email",
            SearchCriteria {
                email: Some(patient::domain::Email::parse("p42@example.org").unwrap()),
                ..Default::default()
            },
        ),
    ];
    for (index, c) in &criteria {
        let plan = store.search_plan(&tenant(), c).await.unwrap();
        let scans = match app.backend {
            Backend::Sqlite => plan.contains("SCAN patients"),
            Backend::Postgres => plan.contains("Seq Scan"),
        };
        assert!(
            !scans && plan.contains(index),
            "{c:?} should use {index}:\n{plan}"
        );
    }
}

async fn a_batch_of_reported_entries_looks_its_patients_up_by_id(app: TestApp) {
    let store = store_of(&app).await;
    // As a hub has them: its SQLite files carry no statistics (and this plan went wrong only
    // without them), while PostgreSQL analyzes its tables on its own.
    if matches!(app.backend, Backend::Postgres) {
        seed_a_realistic_tenant(&app).await;
    }
    // A batch small beside the tenant: for 400 of its 5,000 patients a scan is PostgreSQL's
    // right choice.
    let plan = store.known_patients_plan(&tenant(), 20).await.unwrap();
    let by_id = match app.backend {
        Backend::Sqlite => plan.contains("sqlite_autoindex_patients_1 (patient_id=?)"),
        Backend::Postgres => plan.contains("patients_pkey") && !plan.contains("Seq Scan"),
    };
    // Narrowing by the tenant alone would read every patient of the tenant per batch.
    assert!(by_id, "the check should look each id up:\n{plan}");
}

async fn an_idempotency_key_is_recorded_with_its_change_or_not_at_all(app: TestApp) {
    let store = store_of(&app).await;
    let t = tenant();
    let register_with_key = |p: &Patient| {
        let (store, p) = (store.clone(), p.clone());
        async move {
            let idempotency = OwnedIdempotencyRecord {
                key: "retry-1".into(),
                operation: "patient.register",
                request_digest: "d1".into(),
                resource_id: p.id.as_uuid(),
            };
            register_with(&store, &p, &[created_event(&p)], Some(idempotency)).await
        }
    };
    let first = new_patient("IDEM-0001");
    register_with_key(&first).await.unwrap();
    let used = store
        .used_idempotency_key(&t, "retry-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (used.operation.as_str(), used.resource_id),
        ("patient.register", first.id.as_uuid())
    );

    // A second change under the same key loses the race: neither it nor its event is written.
    let second = new_patient("IDEM-0002");
    let lost = register_with_key(&second).await;
    assert!(
        matches!(lost, Err(WriteError::IdempotencyKeyTaken)),
        "{lost:?}"
    );
    assert!(store.patient(&t, second.id).await.unwrap().is_none());
    assert_eq!(
        store::outbox::read(store.db(), 0, 100).await.unwrap().len(),
        1
    );
    assert_eq!(
        store
            .used_idempotency_key(&t, "retry-1")
            .await
            .unwrap()
            .unwrap(),
        used
    );
    assert!(
        store
            .used_idempotency_key(&TenantId::parse("elsewhere").unwrap(), "retry-1")
            .await
            .unwrap()
            .is_none()
    );
}

/// Addresses and insurance come back with the patient (one statement on both backends,
/// the lists built as JSON by the database): every field, the order they were given in,
/// absent optional fields and booleans as they were.
async fn a_patient_reads_back_with_its_addresses_and_insurance_in_order(app: TestApp) {
    let store = store_of(&app).await;
    let address = |kind, street, primary| AddressInput {
        address_type: Some(kind),
        street_line1: Some(street),
        city: Some("Springfield"),
        state: Some("IL"),
        zip_code: Some("62704"),
        is_primary: Some(primary),
        ..Default::default()
    };
    let input = DemographicsInput {
        first_name: Some("Listed"),
        last_name: Some("Tester"),
        date_of_birth: Some("1970-01-01"),
        addresses: vec![
            AddressInput {
                street_line2: Some("Suite 4"),
                ..address("WORK", "9 Work Way", false)
            },
            address("HOME", "1 Home Road", true),
            address("BILLING", "5 Bill St", false),
        ],
        insurance: vec![
            InsuranceInput {
                policy_number: Some("POL-2"),
                payer_id: Some("PAYER-B"),
                payer_name: Some("Second Payer"),
                effective_date: Some("2020-01-01"),
                termination_date: Some("2030-12-31"),
                is_primary: Some(false),
                ..Default::default()
            },
            InsuranceInput {
                policy_number: Some("POL-1"),
                payer_id: Some("PAYER-A"),
                payer_name: Some("First Payer"),
                group_number: Some("GRP-9"),
                policy_holder_name: Some("Listed Tester"),
                relationship_to_insured: Some("SELF"),
                effective_date: Some("2021-06-15"),
                is_primary: Some(true),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let d = Demographics::parse(&input, Utc::now().date_naive()).unwrap();
    let p = Patient::register(
        PatientId::new(),
        tenant(),
        Mrn::parse("LIST-0001").unwrap(),
        d,
        "tester",
        Utc::now(),
    );
    register(&store, &p, &[]).await.unwrap();
    let bare = new_patient("LIST-0002");
    register(&store, &bare, &[]).await.unwrap();

    let found = store.patient(&tenant(), p.id).await.unwrap().unwrap();
    assert!(
        found.addresses == p.addresses,
        "addresses as registered, in order"
    );
    assert!(
        found.insurance == p.insurance,
        "insurance as registered, in order"
    );
    assert_eq!(found.addresses.len(), 3);
    assert_eq!(found.insurance.len(), 2);
    let none = store.patient(&tenant(), bare.id).await.unwrap().unwrap();
    assert!(none.addresses.is_empty() && none.insurance.is_empty());
}
