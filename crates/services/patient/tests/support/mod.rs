//! Synthetic patients and small helpers for the patient API tests.

#![allow(dead_code)]

use serde_json::{Value, json};
use store::on_pool;
use testkit::{TestApp, json};

pub const PATIENTS: &str = "/api/v1/patients";

pub fn minimal_patient(first: &str, last: &str) -> Value {
    json!({"firstName": first, "lastName": last, "dateOfBirth": "1985-06-15"})
}

/// A patient with every field set; all data is synthetic.
pub fn full_patient(first: &str, last: &str, ssn: &str) -> Value {
    json!({
        "ssn": ssn,
        "firstName": first,
        "middleName": "Q",
        "lastName": last,
        "dateOfBirth": "1980-02-29",
        "gender": "FEMALE",
        "phone": "(555) 234-5678",
        "email": "synthetic.person@example.org",
        "addresses": [{
            "addressType": "HOME",
            "streetLine1": "1 Synthetic Way",
            "streetLine2": "Apt 2",
            "city": "Springfield",
            "state": "il",
            "zipCode": "62701-1234",
            "isPrimary": true
        }],
        "insurance": [{
            "policyNumber": "POL-123",
            "payerId": "PAYER-1",
            "payerName": "Synthetic Health Plan",
            "groupNumber": "GRP-9",
            "policyHolderName": "Synthetic Holder",
            "relationshipToInsured": "SELF",
            "effectiveDate": "2020-01-01",
            "isPrimary": true
        }]
    })
}

pub fn lab_order() -> Value {
    json!({
        "tests": [{"testCode": "CBC", "testName": "Complete blood count", "loincCode": "58410-2"}],
        "orderingProviderId": "PRV-1",
        "orderingProviderName": "Synthetic Provider",
        "diagnosisCodes": ["R50.9"]
    })
}

/// A valid medical record; all data is synthetic.
pub fn medical_record() -> Value {
    json!({
        "recordType": "VISIT",
        "recordDate": "2024-01-02T10:00:00Z",
        "providerId": "NPI1234567890",
        "notes": "Synthetic note."
    })
}

pub async fn create(app: &TestApp, body: Value) -> Value {
    let (status, created) = json(app.post_json(PATIENTS, &body).await).await;
    assert_eq!(status, 201, "{created}");
    created
}

pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// `SELECT COUNT(*) FROM <from>` in the patient database, `from` being a table and
/// optionally a WHERE clause.
pub async fn count_rows(app: &TestApp, from: &str) -> i64 {
    let db = app.db("patient").await;
    let sql = format!("SELECT COUNT(*) FROM {from}");
    let n: i64 = on_pool!(&db, |c| sqlx::query_scalar(sqlx::AssertSqlSafe(
        sql.as_str()
    ))
    .fetch_one(c)
    .await)
    .unwrap();
    db.close().await;
    n
}

/// Every event in the patient service's outbox, oldest first.
pub async fn outbox(app: &TestApp) -> Vec<Value> {
    let db = app.db("patient").await;
    let rows = store::outbox::read(&db, 0, 10_000).await.unwrap();
    db.close().await;
    rows.into_iter()
        .map(|r| serde_json::to_value(&r.envelope.0).unwrap())
        .collect()
}

/// `field` of every element of the JSON array `items`.
pub fn strings(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[field].as_str().unwrap().to_owned())
        .collect()
}

/// Sets `path` (`addresses[0].state`, `firstName`) in `body`.
pub fn set_path(body: &mut Value, path: &str, value: Value) {
    let mut target = body;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (
                n,
                Some(rest.trim_end_matches(']').parse::<usize>().unwrap()),
            ),
            None => (*part, None),
        };
        if i == parts.len() - 1 && index.is_none() {
            target[name] = value;
            return;
        }
        target = &mut target[name];
        if let Some(i) = index {
            target = &mut target[i];
        }
    }
}

pub async fn registrations(app: &TestApp) -> f64 {
    metric(app, "meditrack_patient_registrations_total").await
}

/// The value of one series (name and labels exactly as rendered) on `/metrics`; 0 if absent.
pub async fn metric(app: &TestApp, series: &str) -> f64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

pub fn app_logs_mention(text: &str) -> bool {
    testkit::captured_logs().contains(text)
}

/// A client of another tenant, with the same roles as `app.client`.
pub fn other_tenant(app: &TestApp) -> reqwest::Client {
    app.client_with(&app.token(testkit::TEST_ROLES, "other-clinic", None))
}

/// A client acting as a user with `roles` in the test tenant.
pub fn as_role(app: &TestApp, roles: &[&str]) -> reqwest::Client {
    app.client_with(&app.token(roles, testkit::TEST_TENANT, None))
}

/// A client acting as the PATIENT user who is the patient `patient_id`.
pub fn as_patient(app: &TestApp, patient_id: &str) -> reqwest::Client {
    app.client_with(&app.token(&["PATIENT"], testkit::TEST_TENANT, Some(patient_id)))
}
