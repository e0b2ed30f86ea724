//! The patient API over real HTTP, on SQLite and on PostgreSQL.

// Test helpers panic on purpose: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod store_contract;
mod support;

use serde_json::{Value, json};
use support::*;
use testkit::{TestApp, json};

testkit::on_both_backends!(
    registering_a_patient_returns_201_with_location_etag_and_the_stored_representation,
    generated_mrns_count_up_per_tenant,
    unknown_and_malformed_ids_are_not_found,
    updates_need_if_match_and_stale_versions_are_refused,
    a_read_modify_write_with_the_get_body_works,
    the_id_and_mrn_cannot_be_changed_by_an_update,
    soft_deleted_patients_vanish_from_reads_and_search_but_stay_stored,
    search_matches_name_prefixes_without_case_and_pages_stably,
    search_finds_patients_by_each_criterion,
    search_rejects_unknown_parameters_and_bad_values,
    invalid_patients_are_rejected_field_by_field_and_nothing_is_stored,
    malformed_bodies_wrong_media_types_and_oversized_bodies_get_clear_errors,
    duplicate_mrns_and_ssns_are_conflicts_and_store_nothing,
    medical_records_are_validated_stored_and_listed_newest_first,
    the_timeline_shows_what_happened_newest_first,
    labs_can_be_ordered_by_patient_id_or_by_ssn,
    discharging_a_patient_is_recorded_and_published,
    every_change_writes_its_event_to_the_outbox_with_its_envelope,
    data_survives_a_restart,
    health_metrics_and_request_ids_work,
    unknown_routes_and_methods_get_problem_details,
    no_ssn_name_or_birth_date_reaches_the_logs,
    a_retried_registration_with_the_same_idempotency_key_creates_one_patient,
    retried_records_orders_and_discharges_take_effect_once,
    an_idempotency_key_reused_for_another_request_is_refused,
    a_patients_events_reach_the_event_log_in_order,
    lab_results_and_filled_prescriptions_from_other_services_join_the_timeline,
    a_redelivered_event_takes_effect_once,
    poison_events_are_dead_lettered_and_the_consumer_moves_on,
    results_published_together_join_their_timelines_and_a_stranger_among_them_alone_is_refused,
    a_lab_order_racing_a_deletion_is_refused,
);

async fn registering_a_patient_returns_201_with_location_etag_and_the_stored_representation(
    app: TestApp,
) {
    let body = full_patient("Adaline", "Registerby", "201-45-6789");
    let response = app.post_json(PATIENTS, &body).await;
    assert_eq!(response.status(), 201);
    let location = header(&response, "location");
    assert_eq!(header(&response, "etag"), "\"1\"");
    let (_, created) = json(response).await;
    assert_eq!(
        location,
        format!("{PATIENTS}/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(created["firstName"], "Adaline");
    assert_eq!(created["ssn"], "201-45-6789");
    assert_eq!(created["phone"], "+15552345678", "phones are kept in E.164");
    assert_eq!(created["addresses"][0]["state"], "IL");
    assert_eq!(created["addresses"][0]["country"], "USA");
    assert_eq!(created["insurance"][0]["payerId"], "PAYER-1");
    assert_eq!(created["version"], 1);
    assert!(created["mrn"].as_str().unwrap().starts_with("MRN"));

    let (status, read) = json(app.get(&location).await).await;
    assert_eq!(status, 200);
    assert_eq!(read, created, "GET returns what POST returned");
}

async fn generated_mrns_count_up_per_tenant(app: TestApp) {
    let a = create(&app, minimal_patient("Gen", "One")).await;
    let b = create(&app, minimal_patient("Gen", "Two")).await;
    assert_eq!(a["mrn"], "MRN000000001");
    assert_eq!(b["mrn"], "MRN000000002");
    let other = other_tenant(&app)
        .post(app.url(PATIENTS))
        .json(&minimal_patient("Gen", "Three"))
        .send()
        .await
        .unwrap();
    let (status, c) = json(other).await;
    assert_eq!(status, 201);
    assert_eq!(c["mrn"], "MRN000000001", "each tenant has its own sequence");
    // And tenants don't see each other's patients.
    let (status, _) = json(
        app.get(&format!("{PATIENTS}/{}", c["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(status, 404);
    // A client-chosen MRN that looks generated is skipped by the generator.
    create(&app, json!({"mrn": "MRN000000003", "firstName": "Gen", "lastName": "Taken", "dateOfBirth": "1990-01-01"})).await;
    let d = create(&app, minimal_patient("Gen", "Four")).await;
    assert_eq!(d["mrn"], "MRN000000004");
}

async fn unknown_and_malformed_ids_are_not_found(app: TestApp) {
    for id in ["01900000-0000-7000-8000-000000000000", "not-an-id", "123"] {
        let (status, problem) = json(app.get(&format!("{PATIENTS}/{id}")).await).await;
        assert_eq!(status, 404, "{id}");
        assert_eq!(problem["code"], "patient.not_found");
    }
}

async fn updates_need_if_match_and_stale_versions_are_refused(app: TestApp) {
    let p = create(&app, full_patient("Upton", "Dater", "202-45-6789")).await;
    let path = format!("{PATIENTS}/{}", p["id"].as_str().unwrap());
    let mut changed = p.clone();
    changed["phone"] = json!("555-345-6789");

    let (status, problem) = json(app.put_json(&path, &changed, None).await).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (428, Some("patient.if_match_required"))
    );

    let response = app.put_json(&path, &changed, Some("\"1\"")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "etag"), "\"2\"");
    let (_, updated) = json(response).await;
    assert_eq!(
        (updated["version"].as_i64(), updated["phone"].as_str()),
        (Some(2), Some("+15553456789"))
    );

    changed["phone"] = json!("555-456-7890");
    let (status, problem) = json(app.put_json(&path, &changed, Some("\"1\"")).await).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (412, Some("patient.version_mismatch"))
    );
    let (_, read) = json(app.get(&path).await).await;
    assert_eq!(
        read["phone"], "+15553456789",
        "the stale update changed nothing"
    );

    // Repeating the same update is harmless: nothing changes, the version stays.
    let (status, same) = json(app.put_json(&path, &updated, Some("\"2\"")).await).await;
    assert_eq!((status, same["version"].as_i64()), (200, Some(2)));

    // An invalid update is refused whole.
    let mut bad = updated.clone();
    bad["email"] = json!("nope");
    bad["lastName"] = json!("Changed");
    let (status, problem) = json(app.put_json(&path, &bad, Some("\"2\"")).await).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("email"))
    );
    let (_, read) = json(app.get(&path).await).await;
    assert_eq!(read["lastName"], "Dater");
}

async fn a_read_modify_write_with_the_get_body_works(app: TestApp) {
    let p = create(&app, full_patient("Rita", "Modify", "203-45-6789")).await;
    let path = format!("{PATIENTS}/{}", p["id"].as_str().unwrap());
    let response = app.get(&path).await;
    let etag = header(&response, "etag");
    let (_, mut body) = json(response).await;
    body["addresses"][0]["city"] = json!("Shelbyville");
    body["insurance"] = json!([]);
    let (status, updated) = json(app.put_json(&path, &body, Some(&etag)).await).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["addresses"][0]["city"], "Shelbyville");
    assert_eq!(updated["insurance"], json!([]));
    assert_eq!(updated["createdAt"], p["createdAt"]);
    let (_, read) = json(app.get(&path).await).await;
    assert_eq!(read, updated);
}

async fn the_id_and_mrn_cannot_be_changed_by_an_update(app: TestApp) {
    let p = create(&app, minimal_patient("Ida", "Fixed")).await;
    let path = format!("{PATIENTS}/{}", p["id"].as_str().unwrap());
    let mut body = p.clone();
    body["id"] = json!("01900000-0000-7000-8000-000000000000");
    let (status, problem) = json(app.put_json(&path, &body, Some("\"1\"")).await).await;
    assert_eq!(
        (status, problem["errors"][0]["code"].as_str()),
        (422, Some("id_mismatch"))
    );
    let mut body = p.clone();
    body["mrn"] = json!("OTHER-123");
    let (status, problem) = json(app.put_json(&path, &body, Some("\"1\"")).await).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("patient.mrn_immutable"))
    );
}

async fn soft_deleted_patients_vanish_from_reads_and_search_but_stay_stored(app: TestApp) {
    let p = create(&app, full_patient("Delia", "Gonetest", "204-45-6789")).await;
    let id = p["id"].as_str().unwrap();
    let path = format!("{PATIENTS}/{id}");
    let (status, _) = json(app.delete(&path, Some("\"7\"")).await).await;
    assert_eq!(status, 412, "a stale If-Match protects deletes too");
    assert_eq!(app.delete(&path, None).await.status(), 204);
    assert_eq!(app.get(&path).await.status(), 404);
    assert_eq!(app.delete(&path, None).await.status(), 404);
    assert_eq!(app.get(&format!("{path}/timeline")).await.status(), 404);
    let (_, found) = json(
        app.get(&format!("{PATIENTS}/search?lastName=Gonetest"))
            .await,
    )
    .await;
    assert_eq!(found["items"], json!([]));
    assert_eq!(
        count_rows(&app, "patients WHERE deleted_at IS NOT NULL").await,
        1,
        "kept in the database"
    );
    // Its SSN may be registered again (the deleted record was a mistake), its MRN not.
    let again = app
        .post_json(PATIENTS, &full_patient("Delia", "Gonetest", "204-45-6789"))
        .await;
    assert_eq!(again.status(), 201);
    let mut same_mrn = minimal_patient("Delia", "Mrn");
    same_mrn["mrn"] = p["mrn"].clone();
    assert_eq!(app.post_json(PATIENTS, &same_mrn).await.status(), 409);
}

async fn search_matches_name_prefixes_without_case_and_pages_stably(app: TestApp) {
    for first in ["Cora", "anna", "Bea", "Dora", "Eve"] {
        create(&app, minimal_patient(first, "Pagington")).await;
    }
    create(&app, minimal_patient("Zed", "Pageless")).await;
    create(&app, minimal_patient("Other", "Somebody")).await;

    let mut seen = Vec::new();
    let mut url = format!("{PATIENTS}/search?lastName=PAGING&limit=2");
    loop {
        let (status, page) = json(app.get(&url).await).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(strings(&page["items"], "firstName"));
        assert!(
            items.iter().all(|p| p.get("ssn").is_none()),
            "search hits carry no SSN"
        );
        match page["nextCursor"].as_str() {
            Some(c) => url = format!("{PATIENTS}/search?lastName=PAGING&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec!["anna", "Bea", "Cora", "Dora", "Eve"],
        "ordered by name, every patient once"
    );

    let (_, page) = json(
        app.get(&format!("{PATIENTS}/search?lastName=pag&firstName=z"))
            .await,
    )
    .await;
    assert_eq!(strings(&page["items"], "firstName"), vec!["Zed"]);
    let (_, page) = json(
        app.get(&format!("{PATIENTS}/search?lastName=Pagingtonx"))
            .await,
    )
    .await;
    assert_eq!(strings(&page["items"], "firstName"), Vec::<String>::new());
}

async fn search_finds_patients_by_each_criterion(app: TestApp) {
    let mut p = full_patient("Crit", "Erion", "205-45-6789");
    p["dateOfBirth"] = json!("1971-07-04");
    p["email"] = json!("Crit.Erion@Example.org");
    p["mrn"] = json!("CRIT-0001");
    let created = create(&app, p).await;
    create(&app, minimal_patient("Noise", "Erion")).await;
    for query in [
        "dateOfBirth=1971-07-04",
        "mrn=crit-0001",
        "phone=%28555%29%20234-5678",
        "phone=%2B15552345678",
        "email=crit.erion%40example.ORG",
        "lastName=erion&dateOfBirth=1971-07-04",
    ] {
        let (status, page) = json(app.get(&format!("{PATIENTS}/search?{query}")).await).await;
        assert_eq!(status, 200, "{query}: {page}");
        let ids = strings(&page["items"], "id");
        assert_eq!(ids, vec![created["id"].as_str().unwrap()], "{query}");
    }
}

async fn search_rejects_unknown_parameters_and_bad_values(app: TestApp) {
    for (query, status, code) in [
        ("lastname=smith", 400, "request.unknown_parameter"),
        ("lastName=a&lastName=b", 400, "request.repeated_parameter"),
        ("dateOfBirth=1971-13-01", 400, "patient.invalid_search"),
        ("mrn=!!", 400, "patient.invalid_search"),
        ("limit=0", 400, "request.invalid_paging"),
        ("limit=1000", 400, "request.invalid_paging"),
        ("cursor=garbage!", 400, "request.invalid_paging"),
        ("cursor=bm9wZQ", 422, "request.invalid_cursor"),
    ] {
        let response = app.get(&format!("{PATIENTS}/search?{query}")).await;
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json"
        );
        let (got, problem) = json(response).await;
        assert_eq!(
            (got, problem["code"].as_str()),
            (status, Some(code)),
            "{query}: {problem}"
        );
    }
}

async fn invalid_patients_are_rejected_field_by_field_and_nothing_is_stored(app: TestApp) {
    let base = full_patient("Val", "Idation", "206-45-6789");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("firstName", json!(""), "required"),
        ("lastName", json!("x".repeat(101)), "too_long"),
        ("dateOfBirth", json!("2999-01-01"), "in_future"),
        ("dateOfBirth", json!("1899-12-31"), "too_early"),
        ("dateOfBirth", json!("31/12/1980"), "invalid_date"),
        ("ssn", json!("123456789"), "invalid_ssn"),
        ("ssn", json!("666-12-3456"), "invalid_ssn"),
        ("ssn", json!("900-12-3456"), "invalid_ssn"),
        ("ssn", json!("000-12-3456"), "invalid_ssn"),
        ("mrn", json!("AB"), "invalid_mrn"),
        ("gender", json!("male"), "invalid_value"),
        ("email", json!("not-an-email"), "invalid_email"),
        ("phone", json!("12345"), "invalid_phone"),
        ("addresses[0].state", json!("ZZ"), "invalid_state"),
        ("addresses[0].zipCode", json!("1234"), "invalid_zip"),
        ("addresses[0].addressType", json!("MOON"), "invalid_value"),
        (
            "insurance[0].relationshipToInsured",
            json!("COUSIN"),
            "invalid_value",
        ),
        (
            "insurance[0].terminationDate",
            json!("2000-01-01"),
            "before_effective_date",
        ),
        ("firstName", json!(42), "invalid_type"),
        ("favouriteColour", json!("blue"), "unknown_field"),
        ("addresses[0].planet", json!("Mars"), "unknown_field"),
    ];
    for (field, value, code) in cases {
        let mut body = base.clone();
        set_path(&mut body, field, value);
        let response = app.post_json(PATIENTS, &body).await;
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json"
        );
        let (status, problem) = json(response).await;
        assert_eq!(status, 422, "{field}: {problem}");
        assert_eq!(problem["code"], "validation.failed");
        assert!(problem["requestId"].is_string());
        let hit = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == field && e["code"] == code);
        assert!(hit, "{field} should fail with {code}: {problem}");
    }
    // Two primaries, and every missing required field at once.
    let mut two = base.clone();
    two["addresses"] = json!([base["addresses"][0].clone(), base["addresses"][0].clone()]);
    let (_, problem) = json(app.post_json(PATIENTS, &two).await).await;
    assert_eq!(problem["errors"][0]["code"], "multiple_primary");
    let (_, problem) = json(app.post_json(PATIENTS, &json!({})).await).await;
    let fields = strings(&problem["errors"], "field");
    assert_eq!(fields, vec!["firstName", "lastName", "dateOfBirth"]);
    let (status, problem) = json(
        app.post_json(
            PATIENTS,
            &json!({"id": "x", "firstName": "A", "lastName": "B", "dateOfBirth": "1990-01-01"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, problem["errors"][0]["code"].as_str()),
        (422, Some("read_only"))
    );

    assert_eq!(count_rows(&app, "patients").await, 0, "nothing was stored");
    assert_eq!(count_rows(&app, "outbox").await, 0, "nothing was published");
}

async fn malformed_bodies_wrong_media_types_and_oversized_bodies_get_clear_errors(app: TestApp) {
    let send = |body: String, content_type: &'static str| {
        app.client
            .post(app.url(PATIENTS))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, problem) = json(
        send("{\"firstName\": ".into(), "application/json")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("request.malformed_json"))
    );
    let (status, problem) = json(send("[1, 2]".into(), "application/json").await.unwrap()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("validation.failed"))
    );
    let (status, problem) = json(
        send(minimal_patient("A", "B").to_string(), "text/plain")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (415, Some("request.unsupported_media_type"))
    );
    let (status, problem) = json(
        app.client
            .post(app.url(PATIENTS))
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (415, Some("request.unsupported_media_type"))
    );
    let mut huge = minimal_patient("Big", "Body");
    huge["middleName"] = json!("x".repeat(200 * 1024));
    let (status, problem) = json(send(huge.to_string(), "application/json").await.unwrap()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (413, Some("request.body_too_large"))
    );
    assert_eq!(count_rows(&app, "patients").await, 0);

    // The same holds where the body is optional.
    let p = create(&app, minimal_patient("Small", "Body")).await;
    let path = format!("{PATIENTS}/{}/discharge", p["id"].as_str().unwrap());
    let big = json!({"disposition": "x".repeat(200 * 1024)}).to_string();
    let response = app
        .client
        .post(app.url(&path))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    assert_eq!(header(&response, "connection"), "close");
    let (status, problem) = json(response).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (413, Some("request.body_too_large"))
    );
    let response = app
        .client
        .post(app.url(&path))
        .header("content-type", "text/plain")
        .body("HOME")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
}

async fn duplicate_mrns_and_ssns_are_conflicts_and_store_nothing(app: TestApp) {
    let mut first = full_patient("Dup", "Licate", "207-45-6789");
    first["mrn"] = json!("DUP-0001");
    create(&app, first.clone()).await;

    let mut same_mrn = minimal_patient("Other", "Person");
    same_mrn["mrn"] = json!("dup-0001");
    let (status, problem) = json(app.post_json(PATIENTS, &same_mrn).await).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("patient.duplicate_mrn"))
    );

    let mut same_ssn = full_patient("Third", "Person", "207-45-6789");
    same_ssn["mrn"] = json!("DUP-0002");
    let (status, problem) = json(app.post_json(PATIENTS, &same_ssn).await).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("patient.duplicate_ssn"))
    );
    assert!(
        !problem.to_string().contains("207-45-6789"),
        "the SSN is not echoed: {problem}"
    );

    // Updating someone else onto a taken SSN is a conflict too.
    let other = create(&app, minimal_patient("Fourth", "Person")).await;
    let mut body = other.clone();
    body["ssn"] = json!("207-45-6789");
    let path = format!("{PATIENTS}/{}", other["id"].as_str().unwrap());
    let (status, problem) = json(app.put_json(&path, &body, Some("\"1\"")).await).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (409, Some("patient.duplicate_ssn"))
    );

    assert_eq!(count_rows(&app, "patients").await, 2);
    assert_eq!(
        count_rows(&app, "outbox").await,
        2,
        "only the two registrations were published"
    );
}

async fn medical_records_are_validated_stored_and_listed_newest_first(app: TestApp) {
    let p = create(&app, minimal_patient("Rec", "Ords")).await;
    let path = format!("{PATIENTS}/{}/medical-records", p["id"].as_str().unwrap());
    for (day, kind) in [("01", "VISIT"), ("03", "LAB"), ("02", "IMAGING")] {
        let record = json!({
            "recordType": kind,
            "recordDate": format!("2026-03-{day}T10:00:00Z"),
            "providerId": "NPI1234567890",
            "diagnosisCodes": ["e11.65", "I10"],
            "procedureCodes": ["99213"],
            "notes": "Synthetic note.\nSecond line."
        });
        let (status, created) = json(app.post_json(&path, &record).await).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["diagnosisCodes"], json!(["E11.65", "I10"]));
        assert_eq!(created["patientId"], p["id"]);
    }
    let (status, page) = json(app.get(&format!("{path}?limit=2")).await).await;
    assert_eq!(status, 200);
    let kinds = strings(&page["items"], "recordType");
    assert_eq!(kinds, vec!["LAB", "IMAGING"]);
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, rest) = json(app.get(&format!("{path}?limit=2&cursor={cursor}")).await).await;
    assert_eq!(rest["items"][0]["recordType"], "VISIT");
    assert_eq!(rest["items"][0]["notes"], "Synthetic note.\nSecond line.");
    assert_eq!(rest["nextCursor"], Value::Null);

    let bad = json!({"recordType": "SURGERY", "recordDate": "tomorrow", "diagnosisCodes": ["XYZ"], "procedureCodes": ["1"]});
    let (status, problem) = json(app.post_json(&path, &bad).await).await;
    assert_eq!(status, 422);
    let fields = strings(&problem["errors"], "field");
    assert_eq!(
        fields,
        vec![
            "recordType",
            "recordDate",
            "providerId",
            "diagnosisCodes[0]",
            "procedureCodes[0]"
        ]
    );
    assert_eq!(count_rows(&app, "medical_records").await, 3);

    let missing = format!("{PATIENTS}/01900000-0000-7000-8000-000000000000/medical-records");
    let good =
        json!({"recordType": "VISIT", "recordDate": "2026-03-01T10:00:00Z", "providerId": "P1"});
    assert_eq!(app.post_json(&missing, &good).await.status(), 404);
    assert_eq!(app.get(&missing).await.status(), 404);
}

async fn the_timeline_shows_what_happened_newest_first(app: TestApp) {
    let p = create(&app, minimal_patient("Tim", "Eline")).await;
    let base = format!("{PATIENTS}/{}", p["id"].as_str().unwrap());
    let mut body = p.clone();
    body["phone"] = json!("555-234-5678");
    assert_eq!(
        app.put_json(&base, &body, Some("\"1\"")).await.status(),
        200
    );
    let record =
        json!({"recordType": "VISIT", "recordDate": "2000-01-01T00:00:00Z", "providerId": "P1"});
    assert_eq!(
        app.post_json(&format!("{base}/medical-records"), &record)
            .await
            .status(),
        201
    );
    assert_eq!(
        app.post_json(&format!("{base}/order-labs"), &lab_order())
            .await
            .status(),
        202
    );
    let (status, page) = json(app.get(&format!("{base}/timeline")).await).await;
    assert_eq!(status, 200);
    let kinds = strings(&page["items"], "type");
    // The visit is dated in 2000, so it sorts before the registration.
    assert_eq!(
        kinds,
        vec![
            "LAB_ORDERED",
            "UPDATED",
            "REGISTERED",
            "MEDICAL_RECORD_ADDED"
        ]
    );
    assert_eq!(page["items"][1]["changedFields"], json!(["phone"]));
    assert_eq!(page["items"][0]["testCodes"], json!(["CBC"]));

    let (_, first) = json(app.get(&format!("{base}/timeline?limit=3")).await).await;
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = json(
        app.get(&format!("{base}/timeline?limit=3&cursor={cursor}"))
            .await,
    )
    .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["type"], "MEDICAL_RECORD_ADDED");
}

async fn labs_can_be_ordered_by_patient_id_or_by_ssn(app: TestApp) {
    let p = create(&app, full_patient("Lab", "Orderly", "208-45-6789")).await;
    let (status, by_id) = json(
        app.post_json(
            &format!("{PATIENTS}/{}/order-labs", p["id"].as_str().unwrap()),
            &lab_order(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 202, "{by_id}");
    assert_eq!(
        (by_id["status"].as_str(), by_id["priority"].as_str()),
        (Some("REQUESTED"), Some("ROUTINE"))
    );
    let (status, by_ssn) = json(
        app.post_json(&format!("{PATIENTS}/208-45-6789/order-labs"), &lab_order())
            .await,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(by_ssn["patientId"], p["id"]);
    assert_eq!(
        app.post_json(&format!("{PATIENTS}/209-45-6789/order-labs"), &lab_order())
            .await
            .status(),
        404
    );

    let events = outbox(&app).await;
    let ordered: Vec<_> = events
        .iter()
        .filter(|e| e["eventType"] == "patient.labs.requested.v1")
        .collect();
    assert_eq!(ordered.len(), 2);
    assert_eq!(ordered[1]["payload"]["orderId"], by_ssn["orderId"]);
    assert_eq!(ordered[1]["payload"]["mrn"], p["mrn"]);
    assert_eq!(ordered[1]["payload"]["tests"][0]["loincCode"], "58410-2");
    assert_eq!(ordered[1]["key"], p["id"]);

    let (status, problem) = json(
        app.post_json(
            &format!("{PATIENTS}/208-45-6789/order-labs"),
            &json!({"tests": []}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        !app_logs_mention("208-45-6789"),
        "the SSN in the path is not logged"
    );
}

async fn discharging_a_patient_is_recorded_and_published(app: TestApp) {
    let p = create(&app, minimal_patient("Dis", "Charge")).await;
    let path = format!("{PATIENTS}/{}/discharge", p["id"].as_str().unwrap());
    let (status, done) = json(app.client.post(app.url(&path)).send().await.unwrap()).await;
    assert_eq!(status, 200, "an empty body discharges now");
    assert_eq!(done["disposition"], Value::Null);
    let body = json!({"disposition": "HOME", "dischargedAt": "2026-01-02T03:04:05Z"});
    let (status, done) = json(app.post_json(&path, &body).await).await;
    assert_eq!(
        (status, done["dischargedAt"].as_str()),
        (200, Some("2026-01-02T03:04:05Z"))
    );
    let (status, problem) =
        json(app.post_json(&path, &json!({"disposition": "BEACH"})).await).await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("disposition"))
    );
    let discharged: Vec<_> = outbox(&app)
        .await
        .into_iter()
        .filter(|e| e["eventType"] == "patient.discharged.v1")
        .collect();
    assert_eq!(discharged.len(), 2);
    assert_eq!(discharged[1]["payload"]["disposition"], "HOME");
    let missing = format!("{PATIENTS}/01900000-0000-7000-8000-000000000000/discharge");
    assert_eq!(
        app.client
            .post(app.url(&missing))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

async fn every_change_writes_its_event_to_the_outbox_with_its_envelope(app: TestApp) {
    let p = create(&app, minimal_patient("Out", "Box")).await;
    let id = p["id"].as_str().unwrap();
    let path = format!("{PATIENTS}/{id}");
    let mut body = p.clone();
    body["gender"] = json!("FEMALE");
    let response = app
        .client
        .put(app.url(&path))
        .header("if-match", "\"1\"")
        .header("x-request-id", "01900000-0000-7000-8000-00000000abcd")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.delete(&path, Some("\"2\"")).await.status(), 204);

    let events = outbox(&app).await;
    let types: Vec<_> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "patient.created.v1",
            "patient.updated.v1",
            "patient.deleted.v1"
        ]
    );
    for e in &events {
        assert_eq!(e["key"], id);
        assert_eq!(e["source"], "patient");
        assert_eq!(e["tenantId"], testkit::TEST_TENANT);
        assert!(
            e["eventId"].is_string()
                && e["occurredAt"].is_string()
                && e["correlationId"].is_string()
        );
        assert!(!e.to_string().contains("Box"), "no names in events: {e}");
    }
    assert_eq!(events[0]["payload"]["mrn"], p["mrn"]);
    assert_eq!(events[1]["payload"]["changedFields"], json!(["gender"]));
    assert_eq!(
        events[1]["correlationId"], "01900000-0000-7000-8000-00000000abcd",
        "the request id correlates"
    );
}

async fn data_survives_a_restart(mut app: TestApp) {
    let p = create(&app, full_patient("Per", "Sistent", "210-45-6789")).await;
    let path = format!("{PATIENTS}/{}", p["id"].as_str().unwrap());
    app.restart().await;
    let (status, read) = json(app.get(&path).await).await;
    assert_eq!(status, 200);
    assert_eq!(read, p);
    let next = create(&app, minimal_patient("After", "Restart")).await;
    assert_eq!(next["mrn"], "MRN000000002", "the MRN sequence continues");
}

async fn health_metrics_and_request_ids_work(app: TestApp) {
    let (status, live) = json(app.get("/health/live").await).await;
    assert_eq!((status, live["status"].as_str()), (200, Some("UP")));
    let (status, ready) = json(app.get("/health/ready").await).await;
    assert_eq!(
        (
            status,
            ready["components"]["patient-database"]["status"].as_str()
        ),
        (200, Some("UP"))
    );

    let before = registrations(&app).await;
    create(&app, minimal_patient("Met", "Rics")).await;
    assert!(
        registrations(&app).await > before,
        "registrations are counted"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"http_server_requests_seconds_bucket{method="POST",route="/api/v1/patients",status="201""#),
        "{metrics}"
    );

    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-request-id"), "trace-me-42");
    let response = app.get("/health/live").await;
    assert_eq!(
        header(&response, "x-request-id").len(),
        36,
        "generated when absent"
    );
    let response = app
        .client
        .get(app.url(&format!("{PATIENTS}/nope")))
        .header("x-request-id", "abc-1")
        .send()
        .await
        .unwrap();
    let (_, problem) = json(response).await;
    assert_eq!(problem["requestId"], "abc-1");
}

async fn unknown_routes_and_methods_get_problem_details(app: TestApp) {
    let response = app.get("/api/v1/nothing-here").await;
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let (status, problem) = json(response).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("request.no_such_route"))
    );
    let (status, problem) = json(app.client.patch(app.url(PATIENTS)).send().await.unwrap()).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (405, Some("request.method_not_allowed"))
    );
}

async fn no_ssn_name_or_birth_date_reaches_the_logs(app: TestApp) {
    let mut p = full_patient("Xanthippe", "Quillfeather", "211-47-9382");
    p["dateOfBirth"] = json!("1963-08-17");
    p["email"] = json!("xq.unique@example.org");
    let created = create(&app, p.clone()).await;
    let id = created["id"].as_str().unwrap();
    app.get(&format!(
        "{PATIENTS}/search?lastName=Quillfeather&dateOfBirth=1963-08-17"
    ))
    .await;
    app.post_json(&format!("{PATIENTS}/211-47-9382/order-labs"), &lab_order())
        .await;
    let record = json!({"recordType": "VISIT", "recordDate": "2026-01-01T00:00:00Z", "providerId": "P1", "notes": "Zygomorphic-note"});
    app.post_json(&format!("{PATIENTS}/{id}/medical-records"), &record)
        .await;
    app.post_json(PATIENTS, &p).await; // a duplicate: the conflict path
    let mut bad = p.clone();
    bad["ssn"] = json!(12_345_678);
    app.post_json(PATIENTS, &bad).await;
    for secret in [
        "211-47-9382",
        "Xanthippe",
        "Quillfeather",
        "1963-08-17",
        "xq.unique",
        "Zygomorphic",
    ] {
        assert!(!app_logs_mention(secret), "{secret} was logged");
    }
    assert!(
        app_logs_mention(id),
        "the patient id is logged, so the check above can see the logs"
    );
}

async fn post_with_key(app: &TestApp, path: &str, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn a_retried_registration_with_the_same_idempotency_key_creates_one_patient(app: TestApp) {
    let body = minimal_patient("Retry", "Once");
    let first = post_with_key(&app, PATIENTS, "reg-7f3a", &body).await;
    assert_eq!(first.status(), 201);
    assert_eq!(header(&first, "idempotent-replayed"), "");
    let (_, created) = json(first).await;

    let again = post_with_key(&app, PATIENTS, "reg-7f3a", &body).await;
    assert_eq!(again.status(), 201, "a retry gets the first answer");
    assert_eq!(header(&again, "idempotent-replayed"), "true");
    assert_eq!(
        header(&again, "location"),
        format!("{PATIENTS}/{}", created["id"].as_str().unwrap())
    );
    let (_, replayed) = json(again).await;
    assert_eq!(replayed, created);

    assert_eq!(count_rows(&app, "patients").await, 1);
    assert_eq!(
        count_rows(&app, "outbox").await,
        1,
        "one patient.created.v1"
    );

    // Keys belong to a tenant: the same key elsewhere is a new request.
    let other = other_tenant(&app)
        .post(app.url(PATIENTS))
        .header("idempotency-key", "reg-7f3a")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            other.status().as_u16(),
            header(&other, "idempotent-replayed")
        ),
        (201, String::new())
    );
    assert_eq!(count_rows(&app, "patients").await, 2);
}

async fn retried_records_orders_and_discharges_take_effect_once(app: TestApp) {
    let p = create(&app, full_patient("Retry", "Subresource", "212-45-6789")).await;
    let base = format!("{PATIENTS}/{}", p["id"].as_str().unwrap());
    let record =
        json!({"recordType": "VISIT", "recordDate": "2026-02-01T10:00:00Z", "providerId": "P1"});
    let cases = [
        (
            format!("{base}/medical-records"),
            record,
            201,
            "medical_records",
        ),
        (
            format!("{PATIENTS}/212-45-6789/order-labs"),
            lab_order(),
            202,
            "lab_order_requests",
        ),
        (
            format!("{base}/discharge"),
            json!({"disposition": "HOME"}),
            200,
            "patient_timeline WHERE entry_type = 'DISCHARGED'",
        ),
    ];
    for (i, (path, body, status, table)) in cases.into_iter().enumerate() {
        let key = format!("sub-{i}");
        let (first_status, first) = json(post_with_key(&app, &path, &key, &body).await).await;
        let again = post_with_key(&app, &path, &key, &body).await;
        assert_eq!(header(&again, "idempotent-replayed"), "true", "{table}");
        let (again_status, second) = json(again).await;
        assert_eq!(
            (first_status, again_status),
            (status, status),
            "{table}: {first}"
        );
        assert_eq!(
            first, second,
            "{table}: the retry answers what the first request did"
        );
        assert_eq!(
            count_rows(&app, table).await,
            1,
            "{table}: took effect once"
        );
    }
    let types = strings(&Value::Array(outbox(&app).await), "eventType");
    assert_eq!(
        types,
        vec![
            "patient.created.v1",
            "patient.labs.requested.v1",
            "patient.discharged.v1"
        ]
    );
}

async fn an_idempotency_key_reused_for_another_request_is_refused(app: TestApp) {
    let first = post_with_key(&app, PATIENTS, "k-1", &minimal_patient("Key", "One")).await;
    assert_eq!(first.status(), 201);
    let (status, problem) =
        json(post_with_key(&app, PATIENTS, "k-1", &minimal_patient("Key", "Two")).await).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("request.idempotency_key_reused"))
    );
    let p = create(&app, minimal_patient("Key", "Three")).await;
    let path = format!("{PATIENTS}/{}/discharge", p["id"].as_str().unwrap());
    let (status, problem) = json(post_with_key(&app, &path, "k-1", &json!({})).await).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("request.idempotency_key_reused")),
        "another operation"
    );
    let (status, problem) =
        json(post_with_key(&app, PATIENTS, "has space", &minimal_patient("Key", "Four")).await)
            .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("request.invalid_idempotency_key"))
    );
    assert_eq!(count_rows(&app, "patients").await, 2);
}

/// Publishes `payload` as `source` would, on its topic.
async fn publish<P: events::EventPayload>(
    app: &TestApp,
    patient: &Value,
    payload: &P,
) -> events::EventEnvelope {
    let envelope = envelope_of(patient, payload);
    publish_raw(
        app,
        P::TOPIC.name(),
        &serde_json::to_string(&envelope).unwrap(),
    )
    .await;
    envelope
}

/// `payload` in its envelope, as its source would send it.
fn envelope_of<P: events::EventPayload>(patient: &Value, payload: &P) -> events::EventEnvelope {
    let meta = events::EventMeta {
        source: "test",
        tenant: kernel::TenantId::parse(testkit::TEST_TENANT).unwrap(),
        correlation_id: kernel::ids::CorrelationId::new(),
        causation_id: None,
        occurred_at: chrono::Utc::now(),
    };
    events::EventEnvelope::new(&meta, patient["id"].as_str().unwrap(), payload)
}

async fn publish_raw(app: &TestApp, topic: &str, payload: &str) {
    let record = eventbus::Record {
        topic: topic.into(),
        key: "k".into(),
        event_id: uuid::Uuid::now_v7(),
        payload: payload.into(),
    };
    let log = app.event_log().await;
    eventbus::EventSink::publish(&log, &[record]).await.unwrap();
}

fn lab_results(patient: &Value) -> events::lab::LabResultsAvailableV1 {
    events::lab::LabResultsAvailableV1 {
        order_id: kernel::ids::LabOrderId::new(),
        patient_id: patient["id"].as_str().unwrap().parse().unwrap(),
        test_codes: vec!["CBC".into()],
        abnormal: true,
        reported_at: "2026-11-24T08:00:00Z".parse().unwrap(),
    }
}

fn filled(patient: &Value) -> events::pharmacy::PrescriptionFilledV1 {
    events::pharmacy::PrescriptionFilledV1 {
        prescription_id: uuid::Uuid::now_v7(),
        patient_id: patient["id"].as_str().unwrap().parse().unwrap(),
        medication_code: "197361".into(),
        quantity: 30,
        filled_at: "2026-11-24T09:00:00Z".parse().unwrap(),
        pharmacy_id: Some("PH-1".into()),
    }
}

/// The timeline's entry types once it has at least `n` entries.
async fn timeline_types(app: &TestApp, patient: &Value, n: usize) -> Vec<String> {
    let path = format!(
        "{PATIENTS}/{}/timeline?limit=100",
        patient["id"].as_str().unwrap()
    );
    testkit::eventually("timeline entries", || async {
        let (_, page) = json(app.get(&path).await).await;
        let types = strings(&page["items"], "type");
        (types.len() >= n).then_some(types)
    })
    .await
}

async fn a_patients_events_reach_the_event_log_in_order(app: TestApp) {
    let p = create(&app, minimal_patient("Ev", "Order")).await;
    let path = format!("{PATIENTS}/{}", p["id"].as_str().unwrap());
    let mut body = p.clone();
    for (version, phone) in [(1, "555-234-5678"), (2, "555-345-6789")] {
        body["phone"] = json!(phone);
        assert_eq!(
            app.put_json(&path, &body, Some(&format!("\"{version}\"")))
                .await
                .status(),
            200
        );
    }
    let log = app.event_log().await;
    let delivered = testkit::eventually("the relay to publish", || async {
        let records = log.records("patient-events", 0, 100).await.unwrap();
        let mine: Vec<_> = records
            .into_iter()
            .filter(|d| d.key == p["id"].as_str().unwrap())
            .collect();
        (mine.len() >= 3).then_some(mine)
    })
    .await;
    let types: Vec<String> = delivered
        .iter()
        .map(|d| {
            serde_json::from_str::<Value>(&d.payload).unwrap()["eventType"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        types,
        vec![
            "patient.created.v1",
            "patient.updated.v1",
            "patient.updated.v1"
        ]
    );
    testkit::eventually("the outbox to be marked published", || async {
        (count_rows(&app, "outbox WHERE published_at IS NULL").await == 0).then_some(())
    })
    .await;
}

async fn lab_results_and_filled_prescriptions_from_other_services_join_the_timeline(app: TestApp) {
    let handled = r#"meditrack_events_handled_total{consumer="patient",event_type="lab.results.available.v1"}"#;
    let published = r#"meditrack_outbox_published_total{service="patient"}"#;
    let (handled_before, published_before) =
        (metric(&app, handled).await, metric(&app, published).await);
    let p = create(&app, minimal_patient("Tim", "Events")).await;
    let results = publish(&app, &p, &lab_results(&p)).await;
    publish(&app, &p, &filled(&p)).await;
    let types = timeline_types(&app, &p, 3).await;
    assert_eq!(
        types,
        vec!["REGISTERED", "PRESCRIPTION_FILLED", "LAB_RESULTS_AVAILABLE"]
    );
    let (_, page) = json(
        app.get(&format!(
            "{PATIENTS}/{}/timeline",
            p["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    let lab = &page["items"][2];
    assert_eq!(
        lab["id"],
        results.event_id.to_string(),
        "an entry takes the id of its event"
    );
    assert_eq!(
        (lab["abnormal"].as_bool(), lab["testCodes"].clone()),
        (Some(true), json!(["CBC"]))
    );
    assert_eq!(lab["occurredAt"], "2026-11-24T08:00:00Z");
    assert_eq!(page["items"][1]["medicationCode"], "197361");
    assert!(
        metric(&app, handled).await > handled_before,
        "handled events are counted"
    );
    testkit::eventually("the registration to be published", || async {
        (metric(&app, published).await > published_before).then_some(())
    })
    .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"kafka_consumer_lag{group="patient",topic="lab-events",partition="0"}"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"meditrack_outbox_backlog{service="patient"}"#));
}

async fn a_redelivered_event_takes_effect_once(app: TestApp) {
    let p = create(&app, minimal_patient("Re", "Delivered")).await;
    publish(&app, &p, &lab_results(&p)).await;
    timeline_types(&app, &p, 2).await;
    // Rewind the patient service's consumer group: everything is delivered again.
    app.event_log()
        .await
        .seek(patient::consumers::CONSUMER, 0)
        .await
        .unwrap();
    publish(&app, &p, &filled(&p)).await;
    let types = timeline_types(&app, &p, 3).await;
    assert_eq!(
        types,
        vec!["REGISTERED", "PRESCRIPTION_FILLED", "LAB_RESULTS_AVAILABLE"],
        "no second lab entry"
    );
    assert_eq!(
        count_rows(
            &app,
            "patient_timeline WHERE entry_type = 'LAB_RESULTS_AVAILABLE'"
        )
        .await,
        1
    );
    // The inbox skipped it: it was not applied again, failed and dead-lettered.
    let dead = app
        .event_log()
        .await
        .records("dlq-events", 0, 10)
        .await
        .unwrap();
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(count_rows(&app, "inbox").await, 2);
}

async fn poison_events_are_dead_lettered_and_the_consumer_moves_on(app: TestApp) {
    let p = create(&app, minimal_patient("Poi", "Son")).await;
    publish_raw(&app, "lab-events", "this is not an envelope").await;
    let stranger = json!({"id": "01900000-0000-7000-8000-000000000000"});
    publish(&app, &stranger, &lab_results(&stranger)).await;
    publish(&app, &p, &filled(&p)).await;
    assert_eq!(
        timeline_types(&app, &p, 2).await,
        vec!["REGISTERED", "PRESCRIPTION_FILLED"]
    );
    let log = app.event_log().await;
    let dead = testkit::eventually("two dead letters", || async {
        let d = log.records("dlq-events", 0, 100).await.unwrap();
        (d.len() >= 2).then_some(d)
    })
    .await;
    let letters: Vec<eventbus::consumer::DeadLetter> = dead
        .iter()
        .map(|d| serde_json::from_str(&d.payload).unwrap())
        .collect();
    assert_eq!(letters[0].consumer, "patient");
    assert_eq!(letters[0].payload, "this is not an envelope");
    assert!(
        letters[0].error.contains("not a valid envelope"),
        "{}",
        letters[0].error
    );
    assert!(
        letters[1].error.contains("no such patient"),
        "{}",
        letters[1].error
    );
    assert_eq!(letters[1].attempts, 1, "a permanent failure is not retried");
}

/// Publishes `envelopes` on `lab-events` in one append.
async fn publish_together(
    log: &eventbus::embedded::EmbeddedLog,
    envelopes: &[events::EventEnvelope],
) {
    let records: Vec<eventbus::Record> = envelopes
        .iter()
        .map(|e| eventbus::Record {
            topic: "lab-events".into(),
            key: e.key.clone(),
            event_id: e.event_id.as_uuid(),
            payload: serde_json::to_string(e).unwrap(),
        })
        .collect();
    eventbus::EventSink::publish(log, &records).await.unwrap();
}

/// Events published in one go reach the consumer as one batch, applied in one
/// transaction; one for a patient the tenant does not have fails that batch, which is then
/// taken one event at a time: the stranger's is dead-lettered, the others land.
async fn results_published_together_join_their_timelines_and_a_stranger_among_them_alone_is_refused(
    app: TestApp,
) {
    let patients = [
        create(&app, minimal_patient("Bat", "One")).await,
        create(&app, minimal_patient("Bat", "Two")).await,
    ];
    let stranger = json!({"id": "01900000-0000-7000-8000-000000000001"});
    let log = app.event_log().await;
    let [one, two] = &patients;
    publish_together(
        &log,
        &[
            envelope_of(one, &lab_results(one)),
            envelope_of(two, &lab_results(two)),
            envelope_of(one, &lab_results(one)),
        ],
    )
    .await;
    assert_eq!(timeline_types(&app, one, 3).await.len(), 3);
    assert_eq!(timeline_types(&app, two, 2).await.len(), 2);

    let refused = envelope_of(&stranger, &lab_results(&stranger));
    publish_together(
        &log,
        &[
            envelope_of(two, &lab_results(two)),
            refused.clone(),
            envelope_of(one, &lab_results(one)),
        ],
    )
    .await;
    assert_eq!(timeline_types(&app, one, 4).await.len(), 4);
    assert_eq!(timeline_types(&app, two, 3).await.len(), 3);
    let dead = testkit::eventually("a dead letter", || async {
        let d = log.records("dlq-events", 0, 100).await.unwrap();
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let letter: eventbus::consumer::DeadLetter = serde_json::from_str(&dead[0].payload).unwrap();
    assert!(letter.error.contains("no such patient"), "{}", letter.error);
    assert_eq!(
        serde_json::from_str::<events::EventEnvelope>(&letter.payload).unwrap(),
        refused
    );
    assert_eq!(
        count_rows(
            &app,
            "patient_timeline WHERE entry_type = 'LAB_RESULTS_AVAILABLE'"
        )
        .await,
        5
    );
}

async fn a_lab_order_racing_a_deletion_is_refused(app: TestApp) {
    let p = create(&app, minimal_patient("Ra", "Cing")).await;
    let id: uuid::Uuid = p["id"].as_str().unwrap().parse().unwrap();
    // A deletion in flight: this transaction holds the patient (the row lock on PostgreSQL,
    // the write lock on SQLite) while a lab order arrives.
    let db = app.db("patient").await;
    let mut deletion = db.begin().await.unwrap();
    if let store::Tx::Postgres(tx) = &mut deletion {
        sqlx::query("SELECT 1 FROM patients WHERE patient_id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut **tx)
            .await
            .unwrap();
    }
    let (client, url) = (
        app.client.clone(),
        app.url(&format!("{PATIENTS}/{id}/order-labs")),
    );
    let order = tokio::spawn(async move {
        client
            .post(url)
            .json(&lab_order())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    // Long enough for an order that does not wait for the patient to be answered already.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    store::execute!(
        &mut deletion,
        sqlx::query("UPDATE patients SET deleted_at = $1 WHERE patient_id = $2")
            .bind(chrono::Utc::now())
            .bind(id)
    )
    .unwrap();
    deletion.commit().await.unwrap();
    assert_eq!(
        order.await.unwrap(),
        404,
        "no lab order for a patient deleted meanwhile"
    );
    assert_eq!(count_rows(&app, "lab_order_requests").await, 0);
    db.close().await;
}
