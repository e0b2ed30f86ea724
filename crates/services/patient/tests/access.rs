//! Who may do what with patients (000 §5.1), and that tenants never meet, over real HTTP
//! on SQLite and PostgreSQL. Tokens come from the hub's built-in issuer key.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::*;
use testkit::{TestApp, json};

testkit::on_both_backends!(
    requests_without_a_valid_token_are_refused_but_health_and_metrics_are_open,
    a_patient_sees_only_their_own_record_and_others_are_not_found,
    a_patient_may_change_their_contact_details_and_nothing_else,
    each_role_reaches_what_the_matrix_gives_it,
    no_call_crosses_tenants,
);

async fn requests_without_a_valid_token_are_refused_but_health_and_metrics_are_open(app: TestApp) {
    let bare = reqwest::Client::new();
    let answer = bare
        .get(app.url(&format!("{PATIENTS}/search?lastName=x")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&answer, "www-authenticate"),
        "Bearer realm=\"meditrack\""
    );
    let (status, body) = json(answer).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("auth.token_missing"))
    );
    // Refused before the body is looked at: nothing is stored.
    let answer = bare
        .post(app.url(PATIENTS))
        .json(&minimal_patient("No", "Token"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    assert_eq!(count_rows(&app, "patients").await, 0);

    for bad in ["Bearer not-a-jwt", "Basic dXNlcjpwdw==", "Bearer "] {
        let answer = bare
            .get(app.url(&format!("{PATIENTS}/search")))
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 401, "{bad}");
    }
    for open in ["/health/live", "/health/ready", "/metrics", "/auth/jwks"] {
        let status = bare.get(app.url(open)).send().await.unwrap().status();
        assert_eq!(status.as_u16(), 200, "{open}");
    }
}

async fn a_patient_sees_only_their_own_record_and_others_are_not_found(app: TestApp) {
    let mine = create(&app, full_patient("Own", "Record", "123-45-6789")).await;
    let theirs = create(&app, full_patient("Other", "Record", "223-45-6789")).await;
    let (mine_id, theirs_id) = (mine["id"].as_str().unwrap(), theirs["id"].as_str().unwrap());
    app.client
        .post(app.url(&format!("{PATIENTS}/{theirs_id}/medical-records")))
        .json(&medical_record())
        .send()
        .await
        .unwrap();
    let patient = as_patient(&app, mine_id);

    let (status, body) = json(
        patient
            .get(app.url(&format!("{PATIENTS}/{mine_id}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["id"].as_str()), (200, Some(mine_id)));
    for path in [
        format!("{PATIENTS}/{theirs_id}"),
        format!("{PATIENTS}/{theirs_id}/medical-records"),
        format!("{PATIENTS}/{theirs_id}/timeline"),
    ] {
        let (status, body) = json(patient.get(app.url(&path)).send().await.unwrap()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("patient.not_found")),
            "{path}"
        );
    }
    for path in [
        format!("{PATIENTS}/{mine_id}/medical-records"),
        format!("{PATIENTS}/{mine_id}/timeline"),
    ] {
        let status = patient.get(app.url(&path)).send().await.unwrap().status();
        assert_eq!(status.as_u16(), 200, "{path}");
    }
    // A search finds only themself, whatever it asks for.
    let (status, found) = json(
        patient
            .get(app.url(&format!("{PATIENTS}/search?lastName=Record")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(strings(&found["items"], "id"), vec![mine_id.to_owned()]);
    // Writing others' or new records is not theirs to do.
    let status = patient
        .post(app.url(PATIENTS))
        .json(&minimal_patient("New", "Person"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 403);
    let answer = patient
        .delete(app.url(&format!("{PATIENTS}/{mine_id}")))
        .send()
        .await
        .unwrap();
    let (status, body) = json(answer).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("auth.forbidden"))
    );
}

async fn a_patient_may_change_their_contact_details_and_nothing_else(app: TestApp) {
    let created = create(&app, full_patient("Contact", "Change", "123-45-6780")).await;
    let id = created["id"].as_str().unwrap();
    let other = create(&app, minimal_patient("Not", "Mine")).await;
    let patient = as_patient(&app, id);
    let put = |client: &reqwest::Client, path: String, body: serde_json::Value, tag: String| {
        client
            .put(app.url(&path))
            .header("if-match", tag)
            .json(&body)
            .send()
    };
    let mut body = created.clone();
    body["phone"] = json!("(555) 999-0000");
    body["email"] = json!("new.address@example.org");
    let answer = put(
        &patient,
        format!("{PATIENTS}/{id}"),
        body,
        "\"1\"".to_owned(),
    )
    .await
    .unwrap();
    let (status, updated) = json(answer).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["email"], "new.address@example.org");

    let mut body = updated.clone();
    body["lastName"] = json!("Renamed");
    let answer = put(
        &patient,
        format!("{PATIENTS}/{id}"),
        body,
        "\"2\"".to_owned(),
    )
    .await
    .unwrap();
    let (status, problem) = json(answer).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("auth.forbidden"))
    );
    let (_, stored) = json(app.get(&format!("{PATIENTS}/{id}")).await).await;
    assert_eq!(
        stored["lastName"], "Change",
        "nothing of a refused update is stored"
    );

    let other_id = other["id"].as_str().unwrap();
    let answer = put(
        &patient,
        format!("{PATIENTS}/{other_id}"),
        other.clone(),
        "\"1\"".to_owned(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status().as_u16(), 404);
}

/// Status of one request per (role, route), against the matrix of 000 §5.1.
async fn each_role_reaches_what_the_matrix_gives_it(app: TestApp) {
    let record = medical_record();
    // Columns: ADMIN DOCTOR NURSE LAB_TECH PHARMACIST INSURANCE.
    let cases: [(&str, &str); 8] = [
        ("GET", "403 200 200 403 403 403"),
        ("SEARCH", "403 200 200 403 403 403"),
        ("POST", "403 201 201 403 403 403"),
        ("PUT", "403 200 200 403 403 403"),
        ("RECORDS", "403 200 200 403 403 403"),
        ("ADD_RECORD", "403 201 403 403 403 403"),
        ("ORDER_LABS", "403 202 403 403 403 403"),
        ("DELETE", "204 403 403 403 403 403"),
    ];
    let roles = [
        "HEALTHCARE_ADMIN",
        "DOCTOR",
        "NURSE",
        "LAB_TECHNICIAN",
        "PHARMACIST",
        "INSURANCE_AGENT",
    ];
    for (what, expected) in cases {
        for (role, want) in roles.iter().zip(expected.split(' ')) {
            let target = create(&app, minimal_patient("Matrix", "Target")).await;
            let id = target["id"].as_str().unwrap();
            let client = as_role(&app, &[role]);
            let path = format!("{PATIENTS}/{id}");
            let request = match what {
                "GET" => client.get(app.url(&path)),
                "SEARCH" => client.get(app.url(&format!("{PATIENTS}/search?lastName=Matrix"))),
                "POST" => client.post(app.url(PATIENTS)).json(&minimal_patient("Made", "ByRole")),
                "PUT" => client.put(app.url(&path)).header("if-match", "\"1\"").json(&json!({
                    "firstName": "Matrix", "lastName": "Target", "dateOfBirth": "1985-06-15", "phone": "(555) 234-0000"
                })),
                "RECORDS" => client.get(app.url(&format!("{path}/medical-records"))),
                "ADD_RECORD" => client.post(app.url(&format!("{path}/medical-records"))).json(&record),
                "ORDER_LABS" => client.post(app.url(&format!("{path}/order-labs"))).json(&lab_order()),
                _ => client.delete(app.url(&path)),
            };
            let status = request.send().await.unwrap().status().as_u16();
            assert_eq!(status.to_string(), want, "{role} {what}");
        }
    }
}

async fn no_call_crosses_tenants(app: TestApp) {
    let ours = create(&app, full_patient("Tenant", "Bound", "123-45-6781")).await;
    let id = ours["id"].as_str().unwrap();
    let other = other_tenant(&app);
    let path = format!("{PATIENTS}/{id}");
    for (method, path) in [
        ("GET", path.clone()),
        ("GET", format!("{path}/medical-records")),
        ("GET", format!("{path}/timeline")),
        ("PUT", path.clone()),
        ("DELETE", path.clone()),
        ("POST", format!("{path}/medical-records")),
        ("POST", format!("{path}/order-labs")),
        ("POST", "/api/v1/patients/123-45-6781/order-labs".to_owned()),
        ("POST", format!("{path}/discharge")),
    ] {
        let request = match method {
            "GET" => other.get(app.url(&path)),
            "PUT" => other
                .put(app.url(&path))
                .header("if-match", "\"1\"")
                .json(&ours),
            "DELETE" => other.delete(app.url(&path)),
            _ if path.ends_with("medical-records") => {
                other.post(app.url(&path)).json(&medical_record())
            }
            _ if path.ends_with("order-labs") => other.post(app.url(&path)).json(&lab_order()),
            _ => other.post(app.url(&path)),
        };
        let status = request.send().await.unwrap().status().as_u16();
        assert_eq!(status, 404, "{method} {path} from another tenant");
    }
    let (status, found) = json(
        other
            .get(app.url(&format!("{PATIENTS}/search?lastName=Tenant")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found["items"], json!([]));
    // And our patient is untouched.
    let (status, still) = json(app.get(&path).await).await;
    assert_eq!((status, still["version"].as_i64()), (200, Some(1)));
}
