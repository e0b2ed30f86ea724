//! SSNs and medical-record notes at rest, on SQLite and PostgreSQL: nothing stored holds
//! them in the clear, lookups by SSN still work through the blind index, a keyring that
//! does not fit the data is refused at start, and a key rotation re-seals everything
//! while the hub keeps answering.

#![allow(clippy::unwrap_used)]

use auth::sealing::{FieldCipher, Keyring};
use serde_json::{Value, json};
use store::{Db, on_pool};
use testkit::{TestApp, json};

testkit::on_both_backends!(
    ssns_and_notes_are_nowhere_in_the_clear_and_still_found_by_ssn,
    a_keyring_that_does_not_fit_the_data_is_refused_at_start,
    rotation_reseals_everything_while_the_hub_keeps_serving,
    plaintext_left_by_an_older_version_is_sealed_at_start,
);

const PATIENTS: &str = "/api/v1/patients";
/// Distinctive, synthetic, and valid as SSNs go.
const SSN: &str = "512-73-4096";
const OTHER_SSN: &str = "523-84-5107";
const NOTE: &str = "Synthetic finding zebra-quartz-tangerine";

fn patient(ssn: &str, last: &str) -> Value {
    json!({"ssn": ssn, "firstName": "Sealy", "lastName": last, "dateOfBirth": "1970-03-04"})
}

/// A patient with an SSN and a record with notes; returns the patient's id.
async fn patient_with_notes(app: &TestApp, ssn: &str, last: &str) -> String {
    let (status, created) = json(app.post_json(PATIENTS, &patient(ssn, last)).await).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let record = json!({
        "recordType": "VISIT",
        "recordDate": "2024-01-02T10:00:00Z",
        "providerId": "NPI1234567890",
        "notes": NOTE
    });
    let (status, body) = json(
        app.post_json(&format!("{PATIENTS}/{id}/medical-records"), &record)
            .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    id
}

/// What the patient's record and notes read as through the API.
async fn read_back(app: &TestApp, id: &str) -> (String, String) {
    let (status, p) = json(app.get(&format!("{PATIENTS}/{id}")).await).await;
    assert_eq!(status, 200, "{p}");
    let (status, records) = json(app.get(&format!("{PATIENTS}/{id}/medical-records")).await).await;
    assert_eq!(status, 200, "{records}");
    (
        p["ssn"].as_str().unwrap_or_default().to_owned(),
        records["items"][0]["notes"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Every row of every table of `db`, as text.
async fn every_row(db: &Db) -> String {
    match db {
        Db::Postgres(pool) => {
            let tables: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_schema::text, table_name::text FROM information_schema.tables
                 WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            let mut all = String::new();
            for (schema, table) in tables {
                let sql = format!(
                    "SELECT COALESCE(string_agg(t::text, E'\\n'), '') FROM \"{schema}\".\"{table}\" t"
                );
                let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
                    .fetch_one(pool)
                    .await
                    .unwrap();
                all.push_str(&rows);
            }
            all
        }
        Db::Sqlite(_) => unreachable!("SQLite is read as files"),
    }
}

/// Everything the hub stored: every database file under the data directory on SQLite
/// (write-ahead logs included), every row of every table on PostgreSQL.
async fn everything_stored(app: &TestApp) -> String {
    if app.config().database_url.is_some() {
        let mut all = String::new();
        for service in ["patient", eventbus::embedded::DATABASE] {
            let db = app.db(service).await;
            all.push_str(&every_row(&db).await);
            db.close().await;
        }
        return all;
    }
    let mut all = String::new();
    for entry in std::fs::read_dir(&app.config().data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
        }
    }
    assert!(all.len() > 10_000, "the database files were read");
    all
}

fn assert_absent(stored: &str) {
    for secret in [SSN, &SSN.replace('-', ""), OTHER_SSN, NOTE, "zebra-quartz"] {
        assert!(
            !stored.contains(secret),
            "{secret:?} is stored in the clear"
        );
    }
}

async fn sealed_ssns(app: &TestApp) -> Vec<String> {
    let db = app.db("patient").await;
    let rows: Vec<Option<String>> = on_pool!(&db, |c| sqlx::query_scalar(
        "SELECT ssn_sealed FROM patients ORDER BY patient_id"
    )
    .fetch_all(c)
    .await)
    .unwrap();
    db.close().await;
    rows.into_iter().flatten().collect()
}

async fn ssns_and_notes_are_nowhere_in_the_clear_and_still_found_by_ssn(app: TestApp) {
    let id = patient_with_notes(&app, SSN, "Cipher").await;
    patient_with_notes(&app, OTHER_SSN, "Cipher").await;
    assert_eq!(
        read_back(&app, &id).await,
        (SSN.to_owned(), NOTE.to_owned())
    );

    // Uniqueness and lookup work through the blind index.
    let (status, body) = json(app.post_json(PATIENTS, &patient(SSN, "Again")).await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("patient.duplicate_ssn")),
        "{body}"
    );
    let order = json!({
        "tests": [{"testCode": "CBC", "testName": "Complete blood count"}],
        "orderingProviderId": "PRV-1",
        "orderingProviderName": "Synthetic Provider"
    });
    let (status, body) = json(
        app.post_json(&format!("{PATIENTS}/{SSN}/order-labs"), &order)
            .await,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["patientId"].as_str(), Some(id.as_str()), "{body}");

    let stored = everything_stored(&app).await;
    assert!(stored.contains("Cipher"), "the scan sees stored names");
    assert_absent(&stored);
    let sealed = sealed_ssns(&app).await;
    assert_eq!(sealed.len(), 2);
    assert!(sealed.iter().all(|s| s.starts_with("mt1.1.")), "{sealed:?}");
}

async fn a_keyring_that_does_not_fit_the_data_is_refused_at_start(app: TestApp) {
    patient_with_notes(&app, SSN, "Refused").await;
    let mut wrong = app.config().clone();
    wrong.keyring = Some(kernel::Sensitive::new(Keyring::generate().render()));
    let error = meditrack::build(&wrong).await.err().unwrap().to_string();
    assert!(error.contains("keyring"), "{error}");

    // A keyring that lost a key values still need is refused too.
    meditrack::fields::rotate(app.config()).await.unwrap();
    let mut ring = Keyring::load(&app.config().keyring_path()).unwrap();
    ring = ring.rotated().without(2).unwrap();
    // Key 3 is new to the database; key 2, which seals its values, is gone.
    wrong.keyring = Some(kernel::Sensitive::new(ring.render()));
    let error = meditrack::build(&wrong).await.err().unwrap().to_string();
    assert!(error.contains("key 2"), "{error}");
}

async fn rotation_reseals_everything_while_the_hub_keeps_serving(app: TestApp) {
    let id = patient_with_notes(&app, SSN, "Rotated").await;
    let before = sealed_ssns(&app).await;

    let report = meditrack::fields::rotate(app.config()).await.unwrap();
    assert!(
        report.starts_with("key 2 is active; 2 value(s) re-sealed"),
        "{report}"
    );
    assert!(report.contains("keys retire"), "{report}");
    let after = sealed_ssns(&app).await;
    assert!(after[0].starts_with("mt1.2."), "{after:?}");
    assert_ne!(before, after);

    // The running hub opens what was re-sealed, and seals new values under the new key.
    assert_eq!(
        read_back(&app, &id).await,
        (SSN.to_owned(), NOTE.to_owned())
    );
    patient_with_notes(&app, OTHER_SSN, "Rotated").await;
    assert!(
        sealed_ssns(&app)
            .await
            .iter()
            .all(|s| s.starts_with("mt1.2."))
    );
    let (status, body) = json(app.post_json(PATIENTS, &patient(SSN, "Again")).await).await;
    assert_eq!(status, 409, "the blind index survives rotation: {body}");

    let status = meditrack::fields::status(app.config()).await.unwrap();
    assert!(status.contains("active key: 2"), "{status}");
    assert!(status.contains("key 1: 0 sealed"), "{status}");
    assert!(status.contains("key 2: 4 sealed"), "{status}");
    let refused = meditrack::fields::retire(app.config(), 2)
        .await
        .unwrap_err();
    assert!(refused.contains("active"), "{refused}");
    meditrack::fields::retire(app.config(), 1).await.unwrap();
    let ring = Keyring::load(&app.config().keyring_path()).unwrap();
    assert_eq!(ring.key_ids(), vec![2]);
    assert_eq!(
        read_back(&app, &id).await,
        (SSN.to_owned(), NOTE.to_owned())
    );

    // The old key is gone for good: a value sealed under it no longer opens.
    let cipher = FieldCipher::new(ring);
    assert!(cipher.open("t", "c", &before[0]).is_err());
    assert_absent(&everything_stored(&app).await);
}

async fn plaintext_left_by_an_older_version_is_sealed_at_start(mut app: TestApp) {
    let id = patient_with_notes(&app, SSN, "Legacy").await;
    // What a version before field encryption left: plaintext columns, nothing sealed.
    let db = app.db("patient").await;
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    for sql in [
        "UPDATE patients SET ssn = $1, ssn_sealed = NULL, ssn_index = NULL WHERE patient_id = $2",
        "UPDATE medical_records SET notes = $1, notes_sealed = NULL WHERE patient_id = $2",
    ] {
        let value = if sql.contains("ssn") { SSN } else { NOTE };
        let mut tx = db.begin().await.unwrap();
        store::execute!(&mut tx, sqlx::query(sql).bind(value).bind(uuid)).unwrap();
        tx.commit().await.unwrap();
    }
    db.close().await;
    assert!(everything_stored(&app).await.contains(NOTE));

    app.restart().await;
    assert_eq!(
        read_back(&app, &id).await,
        (SSN.to_owned(), NOTE.to_owned())
    );
    let (status, _) = json(app.post_json(PATIENTS, &patient(SSN, "Again")).await).await;
    assert_eq!(status, 409, "the sealed SSN got its blind index");
    if app.config().database_url.is_some() {
        // SQLite keeps overwritten pages until they are reused; PostgreSQL rows are read live.
        assert_absent(&everything_stored(&app).await);
    } else {
        let db = app.db("patient").await;
        let left: i64 = on_pool!(&db, |c| sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM patients WHERE ssn IS NOT NULL)
                  + (SELECT COUNT(*) FROM medical_records WHERE notes IS NOT NULL)"
        )
        .fetch_one(c)
        .await)
        .unwrap();
        db.close().await;
        assert_eq!(left, 0);
    }
}
