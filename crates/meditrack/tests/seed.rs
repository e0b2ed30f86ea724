//! `meditrack seed` on both backends: the synthetic patients are there to find through the
//! API, with their records, sealed like any other, and the same seed makes the same people.

#![allow(clippy::unwrap_used)]

use meditrack::seed::Progress;
use serde_json::json;
use testkit::{TEST_TENANT, TestApp};

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

    // The last batch's people landed too (on PostgreSQL both batches went as one `COPY`
    // per table, `store::bulk::COPY_BYTES`).
    let (status, last) =
        testkit::json(app.get("/api/v1/patients/search?mrn=SD07000002499").await).await;
    assert_eq!(
        (status, last["items"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{last}"
    );
    let (status, page) =
        testkit::json(app.get("/api/v1/patients/search?mrn=SD07000000004").await).await;
    assert_eq!(status, 200, "{page}");
    let p = &page["items"][0];
    let id = p["id"].as_str().unwrap();
    let (_, full) = testkit::json(app.get(&format!("/api/v1/patients/{id}")).await).await;
    assert!(
        full["ssn"].as_str().is_some_and(|s| s.len() == 11),
        "even indexes have an SSN: {full}"
    );
    assert_eq!(full["addresses"].as_array().unwrap().len(), 1);
    // Every column as the API stores it (PostgreSQL loads by COPY, SQLite by INSERT).
    let (address, insurance) = (&full["addresses"][0], &full["insurance"][0]);
    assert_eq!(
        (
            &address["addressType"],
            &address["isPrimary"],
            &address["country"]
        ),
        (&json!("HOME"), &json!(true), &json!("USA")),
        "{full}"
    );
    assert!(
        address["streetLine1"]
            .as_str()
            .unwrap()
            .ends_with("Synthetic Way")
    );
    assert_eq!(
        (
            &insurance["policyNumber"],
            &insurance["effectiveDate"],
            &insurance["relationshipToInsured"],
            &insurance["isPrimary"]
        ),
        (
            &json!("POL-4"),
            &json!("2024-01-01"),
            &json!("SELF"),
            &json!(true)
        ),
        "{full}"
    );
    assert!(insurance["terminationDate"].is_null(), "{full}");
    assert!(full["email"].as_str().unwrap().ends_with(".4@example.org"));
    assert_eq!(full["version"], 1, "{full}");
    assert!(
        full["createdAt"].as_str().is_some_and(|t| t.len() >= 20),
        "{full}"
    );
    let (_, records) = testkit::json(
        app.get(&format!("/api/v1/patients/{id}/medical-records"))
            .await,
    )
    .await;
    assert_eq!(records["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        records["items"][0]["procedureCodes"],
        json!(["99213"]),
        "{records}"
    );
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
        let (status, page) = testkit::json(app.get(&path).await).await;
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

    // The other half is completed, with its verified result (loaded by COPY on PostgreSQL).
    let lab = store::Db::connect("lab", &meditrack::store_config(app.config()))
        .await
        .unwrap();
    let completed: Vec<(uuid::Uuid,)> = store::on_pool!(&lab, |c| sqlx::query_as(
        "SELECT order_id FROM lab_orders WHERE status = 'COMPLETED'"
    )
    .fetch_all(c)
    .await)
    .unwrap();
    lab.close().await;
    assert_eq!(completed.len(), 313);
    let (status, results) = testkit::json(
        app.get(&format!("/api/v1/lab/results/{}", completed[0].0))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{results}");
    let text = results.to_string();
    for expected in ["\"GLU\"", "\"mg/dL\"", "\"70-99\"", "\"seed\""] {
        assert!(text.contains(expected), "{expected} in {results}");
    }

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
