//! The lab API over real HTTP on SQLite and PostgreSQL: every endpoint of 000 §2.1.2, the
//! status machine, verification and corrections, critical results, the pending list, and
//! who may do what.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use testkit::{TEST_TENANT, TestApp, client_with, json};

testkit::on_both_backends!(
    an_order_goes_from_placed_to_completed_through_verified_results,
    illegal_steps_are_conflicts_and_cancelled_orders_take_nothing,
    the_pending_list_puts_stat_first_and_leaves_out_what_is_not_work,
    critical_results_raise_one_event_each,
    bad_input_names_the_field_and_stores_nothing,
    each_role_reaches_only_what_it_may,
    a_patient_sees_their_results_once_verified,
    a_change_to_an_order_writes_only_the_results_it_changed,
);

const ORDERS: &str = "/api/v1/lab/orders";
const RESULTS: &str = "/api/v1/lab/results";

fn order_body(priority: &str) -> Value {
    json!({
        "patientId": uuid_of_patient(),
        "mrn": "MRN000000042",
        "tests": [
            {"testCode": "GLU", "testName": "Glucose", "loincCode": "2345-7"},
            {"testCode": "K", "testName": "Potassium", "loincCode": "2823-3"}
        ],
        "priority": priority,
        "orderingProviderId": "NPI1234567890",
        "orderingProviderName": "Synthetic Provider",
        "diagnosisCodes": ["R73.9"]
    })
}

fn uuid_of_patient() -> String {
    "01890a5d-ac96-774b-bcce-b302099a8057".to_owned()
}

struct Staff {
    doctor: reqwest::Client,
    tech: reqwest::Client,
    supervisor: reqwest::Client,
}

fn staff(app: &TestApp) -> Staff {
    Staff {
        doctor: client_with(&app.token(&["DOCTOR"], TEST_TENANT, None)),
        tech: client_with(&app.token(&["LAB_TECHNICIAN"], TEST_TENANT, None)),
        supervisor: client_with(&app.token(
            &["LAB_TECHNICIAN", "LAB_SUPERVISOR"],
            TEST_TENANT,
            None,
        )),
    }
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = client.request(method, url);
    if let Some(b) = body {
        r = r.json(&b);
    }
    json(r.send().await.unwrap()).await
}

async fn post(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    send(c, reqwest::Method::POST, url, Some(body)).await
}

async fn put(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    send(c, reqwest::Method::PUT, url, Some(body)).await
}

async fn get(c: &reqwest::Client, url: String) -> (u16, Value) {
    send(c, reqwest::Method::GET, url, None).await
}

async fn place(app: &TestApp, s: &Staff, priority: &str) -> String {
    let (status, order) = post(&s.doctor, app.url(ORDERS), order_body(priority)).await;
    assert_eq!(status, 201, "{order}");
    order["id"].as_str().unwrap().to_owned()
}

fn result(code: &str, value: &str, flag: &str) -> Value {
    json!({"testCode": code, "value": value, "unit": "mg/dL", "referenceRange": "70-99", "abnormalFlag": flag})
}

/// The types of the lab events in the outbox, oldest first.
async fn lab_events(app: &TestApp) -> Vec<Value> {
    let db = app.db("lab").await;
    let rows = store::outbox::read(&db, 0, 10_000).await.unwrap();
    db.close().await;
    rows.into_iter()
        .map(|r| serde_json::to_value(&r.envelope.0).unwrap())
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect()
}

async fn an_order_goes_from_placed_to_completed_through_verified_results(app: TestApp) {
    let s = staff(&app);
    let (status, order) = post(&s.doctor, app.url(ORDERS), order_body("URGENT")).await;
    assert_eq!(status, 201, "{order}");
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (
            order["status"].as_str(),
            order["priority"].as_str(),
            order["version"].as_i64()
        ),
        (Some("PENDING"), Some("URGENT"), Some(1))
    );
    assert_eq!(order["tests"][1]["status"], "PENDING");
    let (status, read) = get(&s.tech, app.url(&format!("{ORDERS}/{id}"))).await;
    assert_eq!((status, &read), (200, &order));

    // Collected, received, worked on.
    let (status, collected) = post(
        &s.tech,
        app.url(&format!("{ORDERS}/{id}/specimens")),
        json!({"specimenType": "BLOOD", "collectedBy": "phlebotomist-7"}),
    )
    .await;
    assert_eq!(
        (status, collected["status"].as_str()),
        (201, Some("COLLECTED")),
        "{collected}"
    );
    let sid = collected["specimens"][0]["id"].as_str().unwrap();
    let (status, received) = post(
        &s.tech,
        app.url(&format!("{ORDERS}/{id}/specimens/{sid}/receipt")),
        json!({"condition": "ACCEPTABLE"}),
    )
    .await;
    assert_eq!(status, 200, "{received}");
    assert_eq!(received["specimens"][0]["condition"], "ACCEPTABLE");
    assert!(received["receivedAt"].is_string());
    let (status, hemolyzed) = put(
        &s.tech,
        app.url(&format!("{ORDERS}/{id}/specimens/{sid}/condition")),
        json!({"condition": "HEMOLYZED"}),
    )
    .await;
    assert_eq!(
        (status, hemolyzed["specimens"][0]["condition"].as_str()),
        (200, Some("HEMOLYZED"))
    );
    let (status, working) = put(
        &s.tech,
        app.url(&format!("{ORDERS}/{id}/status")),
        json!({"status": "IN_PROGRESS"}),
    )
    .await;
    assert_eq!(
        (status, working["status"].as_str()),
        (200, Some("IN_PROGRESS"))
    );

    // Results are preliminary until a supervisor verifies them.
    let (status, submitted) = post(
        &s.tech,
        app.url(RESULTS),
        json!({"orderId": id, "results": [result("GLU", "182", "H"), result("K", "4.1", "N")]}),
    )
    .await;
    assert_eq!(status, 200, "{submitted}");
    assert_eq!(submitted["tests"][0]["result"]["final"], false);
    let (status, refused) = put(
        &s.tech,
        app.url(&format!("{ORDERS}/{id}/status")),
        json!({"status": "COMPLETED"}),
    )
    .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("lab.results_not_final"))
    );
    let (status, _) = post(
        &s.tech,
        app.url(&format!("{RESULTS}/{id}/verify")),
        json!({}),
    )
    .await;
    assert_eq!(status, 403, "verifying takes a supervisor");
    let (status, verified) = post(
        &s.supervisor,
        app.url(&format!("{RESULTS}/{id}/verify")),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, verified["status"].as_str()),
        (200, Some("COMPLETED")),
        "{verified}"
    );
    assert_eq!(verified["tests"][0]["result"]["final"], true);
    assert!(verified["reportedAt"].is_string());

    // A correction keeps the history and is final again once verified.
    let (status, corrected) = post(
        &s.tech,
        app.url(RESULTS),
        json!({"orderId": id, "results": [result("GLU", "128", "H")]}),
    )
    .await;
    assert_eq!(status, 200, "{corrected}");
    let glu = &corrected["tests"][0];
    assert_eq!(
        (
            glu["result"]["value"].as_str(),
            glu["result"]["correction"].as_bool(),
            glu["result"]["final"].as_bool()
        ),
        (Some("128"), Some(true), Some(false))
    );
    assert_eq!(glu["history"][0]["value"], "182");
    let (status, _) = post(
        &s.supervisor,
        app.url(&format!("{RESULTS}/{id}/verify")),
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, results) = get(&s.doctor, app.url(&format!("{RESULTS}/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(results["tests"][0]["result"]["value"], "128");
    assert_eq!(
        results["tests"][0]["result"]["verifiedBy"]
            .as_str()
            .map(|s| !s.is_empty()),
        Some(true)
    );

    let events = lab_events(&app).await;
    assert_eq!(
        types(&events),
        [
            "lab.test.ordered.v1",
            "lab.results.available.v1",
            "lab.results.available.v1"
        ]
    );
    assert_eq!(events[1]["payload"]["abnormal"], true);
    assert_eq!(events[1]["payload"]["testCodes"], json!(["GLU", "K"]));
    assert_eq!(events[0]["payload"]["priority"], "URGENT");
}

async fn illegal_steps_are_conflicts_and_cancelled_orders_take_nothing(app: TestApp) {
    let s = staff(&app);
    let id = place(&app, &s, "ROUTINE").await;
    let status_url = app.url(&format!("{ORDERS}/{id}/status"));
    let (status, body) = put(&s.tech, status_url.clone(), json!({"status": "COMPLETED"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("lab.illegal_transition"))
    );
    let (status, body) = put(&s.tech, status_url.clone(), json!({"status": "CANCELLED"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("lab.illegal_transition"))
    );
    let (status, body) = put(&s.tech, status_url.clone(), json!({"status": "DONE"})).await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (422, Some("status")),
        "{body}"
    );

    // If-Match: a stale version is refused.
    let stale = s
        .tech
        .put(&status_url)
        .header("if-match", "\"7\"")
        .json(&json!({"status": "COLLECTED"}))
        .send()
        .await
        .unwrap();
    let (status, body) = json(stale).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (412, Some("lab.version_mismatch"))
    );

    let (status, cancelled) = post(
        &s.doctor,
        app.url(&format!("{ORDERS}/{id}/cancel")),
        json!({"reason": "entered twice"}),
    )
    .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("CANCELLED"))
    );
    assert_eq!(cancelled["tests"][0]["status"], "CANCELLED");
    let (status, body) = post(
        &s.doctor,
        app.url(&format!("{ORDERS}/{id}/cancel")),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("lab.order_closed"))
    );
    let (status, body) = post(
        &s.tech,
        app.url(RESULTS),
        json!({"orderId": id, "results": [result("GLU", "90", "N")]}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("lab.order_closed"))
    );
    let events = lab_events(&app).await;
    assert_eq!(
        types(&events),
        ["lab.test.ordered.v1", "lab.test.cancelled.v1"]
    );
    assert_eq!(events[1]["payload"]["reason"], "entered twice");

    let (status, body) = get(
        &s.doctor,
        app.url(&format!("{ORDERS}/{}", uuid_of_patient())),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("lab.order_not_found"))
    );
    let (status, _) = get(&s.doctor, app.url(&format!("{ORDERS}/not-a-uuid"))).await;
    assert_eq!(status, 404);
}

async fn the_pending_list_puts_stat_first_and_leaves_out_what_is_not_work(app: TestApp) {
    let s = staff(&app);
    let routine = place(&app, &s, "ROUTINE").await;
    let stat = place(&app, &s, "STAT").await;
    let urgent = place(&app, &s, "URGENT").await;
    let stat2 = place(&app, &s, "STAT").await;
    let cancelled = place(&app, &s, "STAT").await;
    post(
        &s.doctor,
        app.url(&format!("{ORDERS}/{cancelled}/cancel")),
        json!({}),
    )
    .await;
    let mut waiting = order_body("STAT");
    waiting["requiresPreauthorization"] = json!(true);
    let (status, w) = post(&s.doctor, app.url(ORDERS), waiting).await;
    assert_eq!(
        (status, w["awaitingPreauthorization"].as_bool()),
        (201, Some(true))
    );
    let wid = w["id"].as_str().unwrap();
    let (status, body) = post(
        &s.tech,
        app.url(&format!("{ORDERS}/{wid}/specimens")),
        json!({"specimenType": "BLOOD"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("lab.awaiting_preauthorization"))
    );

    let mut seen = Vec::new();
    let mut url = app.url(&format!("{ORDERS}/pending?limit=2"));
    loop {
        let (status, page) = get(&s.tech, url.clone()).await;
        assert_eq!(status, 200, "{page}");
        for o in page["items"].as_array().unwrap() {
            seen.push(o["id"].as_str().unwrap().to_owned());
        }
        match page["nextCursor"].as_str() {
            Some(c) => url = app.url(&format!("{ORDERS}/pending?limit=2&cursor={c}")),
            None => break,
        }
    }
    assert_eq!(seen, [stat.clone(), stat2, urgent, routine]);
    // A list carries each test's current result, not the history of its corrections.
    let (_, page) = get(&s.tech, app.url(&format!("{ORDERS}/pending?limit=1"))).await;
    assert!(
        page["items"][0]["tests"][0].get("history").is_none(),
        "{page}"
    );
    let (_, one) = get(&s.tech, app.url(&format!("{ORDERS}/{stat}"))).await;
    assert!(one["tests"][0]["history"].is_array(), "{one}");

    let patient = client_with(&app.token(&["PATIENT"], TEST_TENANT, Some(&uuid_of_patient())));
    let (status, _) = get(&patient, app.url(&format!("{ORDERS}/pending"))).await;
    assert_eq!(status, 403);
    let (status, body) = get(&s.tech, app.url(&format!("{ORDERS}/pending?limit=500"))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("request.invalid_paging"))
    );
}

async fn critical_results_raise_one_event_each(app: TestApp) {
    let s = staff(&app);
    let id = place(&app, &s, "STAT").await;
    let (status, body) = post(
        &s.tech,
        app.url(RESULTS),
        json!({"orderId": id, "results": [result("GLU", "612", "HH"), result("K", "4.0", "N")]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tests"][0]["result"]["critical"], true);
    assert_eq!(body["tests"][1]["result"]["critical"], false);
    // Verifying does not raise it again.
    post(
        &s.supervisor,
        app.url(&format!("{RESULTS}/{id}/verify")),
        json!({}),
    )
    .await;
    let events = lab_events(&app).await;
    let critical: Vec<&Value> = events
        .iter()
        .filter(|e| e["eventType"] == "lab.critical.result.v1")
        .collect();
    assert_eq!(critical.len(), 1, "{events:?}");
    let p = &critical[0]["payload"];
    assert_eq!(
        (
            p["testCode"].as_str(),
            p["value"].as_str(),
            p["abnormalFlag"].as_str(),
            p["orderingProviderId"].as_str()
        ),
        (Some("GLU"), Some("612"), Some("HH"), Some("NPI1234567890"))
    );
    let metrics = reqwest::get(app.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("meditrack_critical_results_total"),
        "counted"
    );
}

async fn bad_input_names_the_field_and_stores_nothing(app: TestApp) {
    let s = staff(&app);
    let (status, body) = post(
        &s.doctor,
        app.url(ORDERS),
        json!({"patientId": "nope", "tests": [], "priority": "SOON"}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "patientId",
            "tests",
            "priority",
            "orderingProviderId",
            "orderingProviderName"
        ]
    );
    let (status, _) = post(&s.doctor, app.url(ORDERS), json!({"unknown": 1})).await;
    assert_eq!(status, 422);
    assert!(lab_events(&app).await.is_empty(), "nothing stored");

    let id = place(&app, &s, "ROUTINE").await;
    let (status, body) = post(
        &s.tech,
        app.url(RESULTS),
        json!({"orderId": id, "results": [{"testCode": "GLU", "value": "", "abnormalFlag": "X", "performedAt": "yesterday"}]}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "results[0].value",
            "results[0].abnormalFlag",
            "results[0].performedAt"
        ]
    );
    let (status, body) = post(
        &s.tech,
        app.url(RESULTS),
        json!({"orderId": id, "results": [result("HBA1C", "6", "N")]}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("lab.unknown_test")),
        "{body}"
    );
    let (_, order) = get(&s.tech, app.url(&format!("{ORDERS}/{id}"))).await;
    assert_eq!(
        (order["status"].as_str(), order["version"].as_i64()),
        (Some("PENDING"), Some(1))
    );
}

async fn each_role_reaches_only_what_it_may(app: TestApp) {
    let s = staff(&app);
    let (status, _) = post(&s.tech, app.url(ORDERS), order_body("STAT")).await;
    assert_eq!(status, 403, "technicians do not order");
    let id = place(&app, &s, "STAT").await;
    let (status, _) = put(
        &s.doctor,
        app.url(&format!("{ORDERS}/{id}/status")),
        json!({"status": "COLLECTED"}),
    )
    .await;
    assert_eq!(status, 403, "doctors do not run the lab");
    let (status, _) = post(
        &s.doctor,
        app.url(RESULTS),
        json!({"orderId": id, "results": [result("GLU", "90", "N")]}),
    )
    .await;
    assert_eq!(status, 403);

    // A patient sees their own order and not another's; another tenant sees nothing.
    let own = client_with(&app.token(&["PATIENT"], TEST_TENANT, Some(&uuid_of_patient())));
    let (status, _) = get(&own, app.url(&format!("{ORDERS}/{id}"))).await;
    assert_eq!(status, 200);
    let other = client_with(&app.token(
        &["PATIENT"],
        TEST_TENANT,
        Some("01890a5d-ac96-774b-bcce-b302099a0000"),
    ));
    let (status, body) = get(&other, app.url(&format!("{RESULTS}/{id}"))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("lab.order_not_found"))
    );
    let elsewhere = client_with(&app.token(&["DOCTOR"], "tenant-b", None));
    let (status, _) = get(&elsewhere, app.url(&format!("{ORDERS}/{id}"))).await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &elsewhere,
        app.url(&format!("{ORDERS}/{id}/cancel")),
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
}

/// A patient reads their own results once verified; a correction still waiting leaves
/// them the value it corrects, while staff see it at once.
async fn a_patient_sees_their_results_once_verified(app: TestApp) {
    let s = staff(&app);
    let id = place(&app, &s, "ROUTINE").await;
    let own = client_with(&app.token(&["PATIENT"], TEST_TENANT, Some(&uuid_of_patient())));
    let submit = |value: &'static str| {
        post(
            &s.tech,
            app.url(RESULTS),
            json!({"orderId": id, "results": [result("GLU", value, "H")]}),
        )
    };
    let verify = || {
        post(
            &s.supervisor,
            app.url(&format!("{RESULTS}/{id}/verify")),
            json!({}),
        )
    };
    let seen = |c: &reqwest::Client| {
        let (c, url) = (c.clone(), app.url(&format!("{RESULTS}/{id}")));
        async move {
            let (status, body) = get(&c, url).await;
            assert_eq!(status, 200, "{body}");
            body["tests"][0]["result"]["value"]
                .as_str()
                .map(str::to_owned)
        }
    };
    assert_eq!(submit("182").await.0, 200);
    assert_eq!(seen(&own).await, None);
    assert_eq!(seen(&s.doctor).await.as_deref(), Some("182"));
    assert_eq!(verify().await.0, 200);
    assert_eq!(seen(&own).await.as_deref(), Some("182"));
    assert_eq!(submit("128").await.0, 200);
    assert_eq!(seen(&own).await.as_deref(), Some("182"));
    assert_eq!(seen(&s.doctor).await.as_deref(), Some("128"));
    let (status, order) = get(&own, app.url(&format!("{ORDERS}/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(order["tests"][0]["history"], json!([]), "{order}");
    assert_eq!(verify().await.0, 200);
    assert_eq!(seen(&own).await.as_deref(), Some("128"));
}

/// Stored results refuse to be rewritten (an update of one fails the statement).
async fn freeze_results(app: &TestApp, frozen: bool) {
    let db = app.db("lab").await;
    let sql = match (app.backend, frozen) {
        (testkit::Backend::Sqlite, true) => {
            "CREATE TRIGGER frozen BEFORE UPDATE ON lab_results BEGIN SELECT RAISE(ABORT, 'frozen'); END"
        }
        (testkit::Backend::Sqlite, false) => "DROP TRIGGER frozen",
        (testkit::Backend::Postgres, true) => {
            "CREATE FUNCTION frozen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'frozen'; END $$;
             CREATE TRIGGER frozen BEFORE UPDATE ON lab_results FOR EACH ROW EXECUTE FUNCTION frozen()"
        }
        (testkit::Backend::Postgres, false) => {
            "DROP TRIGGER frozen ON lab_results; DROP FUNCTION frozen()"
        }
    };
    store::on_pool!(&db, |c| sqlx::raw_sql(sql).execute(c).await.map(|_| ())).unwrap();
    db.close().await;
}

/// An order collects results (revisions, corrections); a change writes what it changed,
/// not every result again, so its cost does not grow with the order's history.
async fn a_change_to_an_order_writes_only_the_results_it_changed(app: TestApp) {
    let s = staff(&app);
    let id = place(&app, &s, "ROUTINE").await;
    let results = app.url(RESULTS);
    let (status, body) = post(
        &s.tech,
        results.clone(),
        json!({"orderId": id, "results": [result("GLU", "182", "H")]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    freeze_results(&app, true).await;
    // Verifying rewrites the stored result: the freeze holds.
    let verify = app.url(&format!("{RESULTS}/{id}/verify"));
    let (status, _) = post(&s.supervisor, verify.clone(), json!({})).await;
    assert_eq!(status, 500, "a frozen result was written");
    // A result for the other test leaves the glucose result as it is.
    let (status, body) = post(
        &s.tech,
        results,
        json!({"orderId": id, "results": [result("K", "4.1", "N")]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["tests"][0]["result"]["value"].as_str(),
            body["tests"][1]["result"]["value"].as_str()
        ),
        (Some("182"), Some("4.1"))
    );

    freeze_results(&app, false).await;
    let (status, verified) = post(&s.supervisor, verify, json!({})).await;
    assert_eq!(
        (status, verified["tests"][0]["result"]["final"].as_bool()),
        (200, Some(true)),
        "{verified}"
    );
}
