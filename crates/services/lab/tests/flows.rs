//! The lab service among the others, through the event backbone, on both backends:
//! `order-labs` on the patient API becomes exactly one lab order, the lab learns of
//! patients, insurance approvals release waiting orders, and results and critical results
//! reach the patient's timeline.

#![allow(clippy::unwrap_used)]

use eventbus::EventSink;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use testkit::{TEST_TENANT, TestApp, client_with, json};

testkit::on_both_backends!(
    an_order_labs_request_becomes_exactly_one_lab_order,
    an_approved_preauthorization_releases_the_order,
    results_and_critical_results_reach_the_patient_timeline,
);

/// Polls `check` until it yields, for up to 15 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn patient(app: &TestApp) -> Value {
    let body = json!({"firstName": "Lab", "lastName": "Flow", "dateOfBirth": "1980-05-05"});
    let (status, p) = json(app.post_json("/api/v1/patients", &body).await).await;
    assert_eq!(status, 201, "{p}");
    p
}

async fn lab_event_types(app: &TestApp) -> Vec<String> {
    let db = app.db("lab").await;
    let rows = store::outbox::read(&db, 0, 10_000).await.unwrap();
    db.close().await;
    rows.into_iter().map(|r| r.envelope.0.event_type).collect()
}

async fn publish(app: &TestApp, topic: &str, envelope: Value) {
    let log = app.event_log().await;
    let record = eventbus::Record {
        topic: topic.into(),
        key: envelope["key"].as_str().unwrap().to_owned(),
        event_id: envelope["eventId"].as_str().unwrap().parse().unwrap(),
        payload: envelope.to_string(),
    };
    log.publish(&[record]).await.unwrap();
}

fn tech(app: &TestApp) -> reqwest::Client {
    client_with(&app.token(&["LAB_TECHNICIAN", "LAB_SUPERVISOR"], TEST_TENANT, None))
}

async fn an_order_labs_request_becomes_exactly_one_lab_order(app: TestApp) {
    let p = patient(&app).await;
    let pid = p["id"].as_str().unwrap();
    let order = json!({
        "tests": [{"testCode": "CBC", "testName": "Complete blood count", "loincCode": "58410-2"}],
        "priority": "STAT",
        "orderingProviderId": "PRV-1",
        "orderingProviderName": "Synthetic Provider"
    });
    let (status, requested) = json(
        app.post_json(&format!("/api/v1/patients/{pid}/order-labs"), &order)
            .await,
    )
    .await;
    assert_eq!(status, 202, "{requested}");
    let order_id = requested["orderId"].as_str().unwrap().to_owned();
    let url = app.url(&format!("/api/v1/lab/orders/{order_id}"));
    let tech = tech(&app);
    let lab_order: Value = eventually("the lab order", || {
        let (tech, url) = (tech.clone(), url.clone());
        async move {
            let r = tech.get(url).send().await.unwrap();
            (r.status() == 200).then_some(r.json().await.unwrap())
        }
    })
    .await;
    assert_eq!(lab_order["patientId"], pid);
    assert_eq!(lab_order["mrn"], p["mrn"]);
    assert_eq!(lab_order["priority"], "STAT");
    assert_eq!(lab_order["tests"][0]["loincCode"], "58410-2");

    // The same request delivered again (under a new event id): still one order.
    let db = app.db("patient").await;
    let requests: Vec<Value> = store::outbox::read(&db, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| serde_json::to_value(&r.envelope.0).unwrap())
        .filter(|e| e["eventType"] == "patient.labs.requested.v1")
        .collect();
    db.close().await;
    let mut again = requests[0].clone();
    again["eventId"] = json!(uuid::Uuid::now_v7());
    publish(&app, "patient-events", again).await;
    // The patient projection and the announcement settle; then nothing more comes.
    eventually("the announcement", || async {
        lab_event_types(&app)
            .await
            .iter()
            .any(|t| t == "lab.test.ordered.v1")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ordered = lab_event_types(&app)
        .await
        .into_iter()
        .filter(|t| t == "lab.test.ordered.v1")
        .count();
    assert_eq!(ordered, 1);
    let db = app.db("lab").await;
    let count: i64 = store::on_pool!(&db, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM lab_orders"
    )
    .fetch_one(c)
    .await)
    .unwrap();
    let projected: i64 = store::on_pool!(&db, |c| sqlx::query_scalar(
        "SELECT COUNT(*) FROM lab_patients"
    )
    .fetch_one(c)
    .await)
    .unwrap();
    db.close().await;
    assert_eq!(
        (count, projected),
        (1, 1),
        "one order; the patient is known to the lab"
    );
}

async fn an_approved_preauthorization_releases_the_order(app: TestApp) {
    let doctor = client_with(&app.token(&["DOCTOR"], TEST_TENANT, None));
    let body = json!({
        "patientId": "01890a5d-ac96-774b-bcce-b302099a8057",
        "tests": [{"testCode": "MRI", "testName": "Imaging panel"}],
        "orderingProviderId": "PRV-1", "orderingProviderName": "Synthetic Provider",
        "requiresPreauthorization": true
    });
    let answer = doctor
        .post(app.url("/api/v1/lab/orders"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, order) = json(answer).await;
    assert_eq!(
        (status, order["awaitingPreauthorization"].as_bool()),
        (201, Some(true))
    );
    let id = order["id"].as_str().unwrap().to_owned();
    publish(
        &app,
        "insurance-events",
        json!({
            "eventId": uuid::Uuid::now_v7(), "eventType": "insurance.preauth.approved.v1",
            "occurredAt": "2030-01-01T00:00:00Z", "source": "insurance", "tenantId": TEST_TENANT,
            "key": id, "correlationId": uuid::Uuid::now_v7(),
            "payload": {"preauthId": uuid::Uuid::now_v7(), "patientId": body["patientId"],
                "policyId": uuid::Uuid::now_v7(), "serviceType": "LAB", "serviceCode": "MRI",
                "approvalNumber": "APR-77", "subjectId": id, "decidedAt": "2030-01-01T00:00:00Z"}
        }),
    )
    .await;
    let url = app.url(&format!("/api/v1/lab/orders/{id}"));
    let released: Value = eventually("the approval", || {
        let (doctor, url) = (doctor.clone(), url.clone());
        async move {
            let o: Value = doctor.get(url).send().await.unwrap().json().await.unwrap();
            (o["awaitingPreauthorization"] == false).then_some(o)
        }
    })
    .await;
    assert_eq!(released["preauthorization"], "APR-77");
}

async fn results_and_critical_results_reach_the_patient_timeline(app: TestApp) {
    let p = patient(&app).await;
    let pid = p["id"].as_str().unwrap().to_owned();
    let doctor = client_with(&app.token(&["DOCTOR"], TEST_TENANT, None));
    let body = json!({
        "patientId": pid,
        "tests": [{"testCode": "K", "testName": "Potassium", "loincCode": "2823-3"}],
        "priority": "STAT",
        "orderingProviderId": "PRV-1", "orderingProviderName": "Synthetic Provider"
    });
    let (_, order) = json(
        doctor
            .post(app.url("/api/v1/lab/orders"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = order["id"].as_str().unwrap().to_owned();
    let tech = tech(&app);
    let result = json!({"orderId": id, "results": [{"testCode": "K", "value": "7.1", "unit": "mmol/L", "abnormalFlag": "HH"}]});
    let answer = tech
        .post(app.url("/api/v1/lab/results"))
        .json(&result)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer = tech
        .post(app.url(&format!("/api/v1/lab/results/{id}/verify")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let timeline_url = format!("/api/v1/patients/{pid}/timeline");
    let kinds: Vec<String> = eventually("the timeline entries", || async {
        let (_, page) = json(app.get(&timeline_url).await).await;
        let kinds: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        (kinds.len() >= 3).then_some(kinds)
    })
    .await;
    assert!(
        kinds.contains(&"LAB_CRITICAL_RESULT".to_owned()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"LAB_RESULTS_AVAILABLE".to_owned()),
        "{kinds:?}"
    );
}
