//! `meditrack seed` on both backends: the synthetic patients are there to find through the
//! API, with their records, sealed like any other, and the same seed makes the same people.

#![allow(clippy::unwrap_used)]

use meditrack::seed::Progress;
use testkit::{TEST_TENANT, TestApp, json};

testkit::on_both_backends!(seeded_patients_are_real_patients_to_the_api);

async fn seeded_patients_are_real_patients_to_the_api(app: TestApp) {
    let options = meditrack::seed::SeedOptions {
        patients: 2_500,
        records_per_patient: 2,
        seed: 7,
        tenant: kernel::TenantId::parse(TEST_TENANT).unwrap(),
    };
    let mut seen = Vec::new();
    let done = meditrack::seed::seed(app.config(), &options, |p| seen.push(p))
        .await
        .unwrap();
    assert_eq!(
        (done.patients, done.records, done.lab_orders),
        (2_500, 5_000, 625)
    );
    // After each batch, then the indexes of the empty tables, built once at the end.
    let written: Vec<u64> = seen
        .iter()
        .filter_map(|p| match p {
            Progress::Written { patients, .. } => Some(*patients),
            Progress::BuildingIndexes => None,
        })
        .collect();
    assert_eq!(
        written,
        [2_000, 2_500],
        "progress after each batch: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&Progress::BuildingIndexes), "{seen:?}");

    let (status, page) = json(app.get("/api/v1/patients/search?mrn=SD07000000004").await).await;
    assert_eq!(status, 200, "{page}");
    let p = &page["items"][0];
    let id = p["id"].as_str().unwrap();
    let (_, full) = json(app.get(&format!("/api/v1/patients/{id}")).await).await;
    assert!(
        full["ssn"].as_str().is_some_and(|s| s.len() == 11),
        "even indexes have an SSN: {full}"
    );
    assert_eq!(full["addresses"].as_array().unwrap().len(), 1);
    let (_, records) = json(
        app.get(&format!("/api/v1/patients/{id}/medical-records"))
            .await,
    )
    .await;
    assert_eq!(records["items"].as_array().unwrap().len(), 2);
    assert!(
        records["items"][0]["notes"]
            .as_str()
            .unwrap()
            .starts_with("Synthetic visit note")
    );

    // Every fourth patient has a glucose order; half of those are completed, so the rest
    // are the laboratory's pending work.
    let mut pending = 0;
    let mut path = "/api/v1/lab/orders/pending?limit=100".to_owned();
    loop {
        let (status, page) = json(app.get(&path).await).await;
        assert_eq!(status, 200, "{page}");
        for o in page["items"].as_array().unwrap() {
            assert_eq!(o["status"], "PENDING", "{o}");
            assert_eq!(o["tests"][0]["testCode"], "GLU", "{o}");
            pending += 1;
        }
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/lab/orders/pending?limit=100&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pending, 312);

    // Seeding the same seed into the same tenant again is refused, not half-done.
    let again = meditrack::seed::seed(
        app.config(),
        &meditrack::seed::SeedOptions {
            patients: 10,
            ..options
        },
        |_| {},
    )
    .await;
    assert!(again.unwrap_err().contains("seeding twice"));
}
