//! The audit trail as users meet it, on SQLite and PostgreSQL: PHI access, logins and
//! refusals are recorded; admins search the trail and patients see who looked at their
//! record; entries go out on `audit-events`; `audit verify` finds tampering and says where.

#![allow(clippy::unwrap_used)]

use identity::user::{Kind, NewUser};
use serde_json::{Value, json};
use store::{Db, on_pool};
use testkit::{TestApp, client_with, json};

testkit::on_both_backends!(
    access_logins_and_refusals_are_recorded_and_readable_by_admins_and_the_patient,
    verify_finds_edited_removed_and_reordered_entries_and_survives_retention,
    appends_from_two_processes_at_once_keep_one_whole_chain,
    a_process_whose_head_another_moved_appends_after_the_others_entries,
);

const PATIENTS: &str = "/api/v1/patients";
const PASSWORD: &str = "synthetic-password-1234";

async fn get(client: &reqwest::Client, url: String) -> (u16, Value) {
    json(client.get(url).send().await.unwrap()).await
}

async fn trail(app: &TestApp, query: &str) -> Vec<Value> {
    let admin = client_with(&app.token(&["HEALTHCARE_ADMIN"], testkit::TEST_TENANT, None));
    let (status, body) = get(&admin, app.url(&format!("/api/v1/audit?{query}"))).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn has(entries: &[Value], action: &str, resource: &str, outcome: &str) -> bool {
    entries
        .iter()
        .any(|e| e["action"] == action && e["resourceType"] == resource && e["outcome"] == outcome)
}

async fn access_logins_and_refusals_are_recorded_and_readable_by_admins_and_the_patient(
    app: TestApp,
) {
    let body = json!({"firstName": "Audrey", "lastName": "Trail", "dateOfBirth": "1966-06-06"});
    let (status, created) = json(app.post_json(PATIENTS, &body).await).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().unwrap().to_owned();
    let other = json(
        app.post_json(
            PATIENTS,
            &json!({"firstName": "Other", "lastName": "Trail", "dateOfBirth": "1970-01-01"}),
        )
        .await,
    )
    .await
    .1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.get(&format!("{PATIENTS}/{id}")).await.status(), 200);
    assert_eq!(
        app.get(&format!("{PATIENTS}/search?lastName=Trail"))
            .await
            .status(),
        200
    );
    // A nurse may not delete: refused, and recorded.
    let nurse = client_with(&app.token(&["NURSE"], testkit::TEST_TENANT, None));
    let refused = nurse
        .delete(app.url(&format!("{PATIENTS}/{id}")))
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Logins, failed and succeeded, through the built-in issuer.
    let (service, db) = meditrack::accounts::open_identity(app.config())
        .await
        .unwrap();
    let roles = vec!["DOCTOR".to_owned()];
    let user = NewUser::parse(
        "dr.audit",
        testkit::TEST_TENANT,
        Kind::Person,
        &roles,
        None,
        None,
    )
    .unwrap();
    service.add_user(user, PASSWORD).await.unwrap();
    db.close().await;
    for (password, expected) in [("wrong-password-123", 400), (PASSWORD, 200)] {
        let answer = reqwest::Client::new()
            .post(app.url("/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=password&username=dr.audit&password={password}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), expected);
    }

    let all = trail(&app, "limit=100").await;
    assert!(has(&all, "CREATE", "Patient", "SUCCESS"), "{all:?}");
    assert!(has(&all, "READ", "Patient", "SUCCESS"));
    assert!(has(&all, "ACCESS", "Patient", "DENIED"));
    assert!(has(&all, "LOGIN", "Session", "FAILURE"));
    assert!(has(&all, "LOGIN", "Session", "SUCCESS"));
    let hits: Vec<&Value> = all.iter().filter(|e| e["action"] == "SEARCH").collect();
    assert_eq!(hits.len(), 2, "one entry per search hit");
    let read = all.iter().find(|e| e["action"] == "READ").unwrap();
    assert!(read["actor"].as_str().unwrap().starts_with("test-user-"));
    assert_eq!(read["roles"], json!(["HEALTHCARE_ADMIN", "DOCTOR"]));
    assert_eq!(read["patientId"], id.as_str());
    assert!(
        read["requestId"].is_string() && read["sourceIp"] == "127.0.0.1",
        "{read}"
    );
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first");

    // Filters and paging.
    let reads = trail(&app, &format!("patientId={id}&action=READ")).await;
    assert!(
        !reads.is_empty()
            && reads
                .iter()
                .all(|e| e["action"] == "READ" && e["patientId"] == id.as_str())
    );
    let admin = client_with(&app.token(&["HEALTHCARE_ADMIN"], testkit::TEST_TENANT, None));
    let (_, first) = get(&admin, app.url("/api/v1/audit?limit=2")).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = get(
        &admin,
        app.url(&format!("/api/v1/audit?limit=2&cursor={cursor}")),
    )
    .await;
    assert!(second["items"][0]["seq"].as_i64() < first["items"][1]["seq"].as_i64());
    let (status, body) = get(&admin, app.url("/api/v1/audit?action=PEEK")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("audit.invalid_search"))
    );

    // Only admins search the trail.
    let doctor = client_with(&app.token(&["DOCTOR"], testkit::TEST_TENANT, None));
    let (status, body) = get(&doctor, app.url("/api/v1/audit")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("auth.forbidden"))
    );

    // The patient sees who looked at their record, without operational details.
    let me = client_with(&app.token(&["PATIENT"], testkit::TEST_TENANT, Some(&id)));
    let (status, log) = get(&me, app.url(&format!("{PATIENTS}/{id}/access-log"))).await;
    assert_eq!(status, 200, "{log}");
    let items = log["items"].as_array().unwrap();
    assert!(has(items, "READ", "Patient", "SUCCESS"), "{log}");
    assert!(
        items
            .iter()
            .all(|e| e["patientId"] == id.as_str() && e.get("sourceIp").is_none())
    );
    // Someone else's log does not exist for them; the attempt is recorded.
    let (status, _) = get(&me, app.url(&format!("{PATIENTS}/{other}/access-log"))).await;
    assert_eq!(status, 404);
    let denied = trail(&app, &format!("patientId={other}&action=ACCESS")).await;
    assert!(has(&denied, "ACCESS", "AccessLog", "DENIED"), "{denied:?}");

    // Every entry goes out on `audit-events`, in chain order, its event id its entry id.
    let log = app.event_log().await;
    let published = testkit::eventually("the trail on audit-events", || async {
        let records = log.records("audit-events", 0, 10_000).await.unwrap();
        let events: Vec<Value> = records
            .iter()
            .map(|r| serde_json::from_str(&r.payload).unwrap())
            .collect();
        let ids: Vec<&str> = events
            .iter()
            .filter_map(|e| e["eventId"].as_str())
            .collect();
        all.iter()
            .all(|entry| ids.contains(&entry["entryId"].as_str().unwrap()))
            .then_some(events)
    })
    .await;
    assert!(
        published
            .iter()
            .all(|e| e["eventType"] == "audit.entry.recorded.v1"
                && e["key"] == testkit::TEST_TENANT
                && e["payload"]["entryId"] == e["eventId"])
    );
    let seqs: Vec<i64> = published
        .iter()
        .map(|e| e["payload"]["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Nothing of the trail waits in the outbox: it is published from the trail itself.
    let db = app.db("audit").await;
    assert!(store::outbox::read(&db, 0, 10).await.unwrap().is_empty());
    db.close().await;
}

async fn run(db: &Db, sql: &str) -> Result<u64, String> {
    let mut tx = db.begin().await.unwrap();
    let done = store::execute!(&mut tx, sqlx::query(sqlx::AssertSqlSafe(sql)));
    match done {
        Ok(n) => {
            tx.commit().await.unwrap();
            Ok(n)
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn verify(app: &TestApp) -> (String, bool) {
    meditrack::trail::verify(app.config(), None).await.unwrap()
}

async fn verify_finds_edited_removed_and_reordered_entries_and_survives_retention(app: TestApp) {
    let body = json!({"firstName": "Chain", "lastName": "Link", "dateOfBirth": "1960-01-01"});
    let id = json(app.post_json(PATIENTS, &body).await).await.1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..6 {
        assert_eq!(app.get(&format!("{PATIENTS}/{id}")).await.status(), 200);
    }
    let (report, intact) = verify(&app).await;
    assert!(intact, "{report}");
    assert!(report.contains("7 entries, chain intact"), "{report}");

    let db = app.db("audit").await;
    // Append-only in the database itself, until someone with the owner's rights drops it.
    let refused = run(&db, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2").await;
    assert!(refused.unwrap_err().contains("cannot be changed"));
    let guards: &[&str] = match &db {
        Db::Postgres(_) => &["DROP TRIGGER audit_log_append_only ON audit_log"],
        Db::Sqlite(_) => &[
            "DROP TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_early_delete",
        ],
    };
    for sql in guards {
        run(&db, sql).await.unwrap();
    }

    let actor: String = on_pool!(&db, |c| sqlx::query_scalar(
        "SELECT actor FROM audit_log WHERE seq = 2"
    )
    .fetch_one(c)
    .await)
    .unwrap();
    run(&db, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
        .await
        .unwrap();
    let (report, intact) = verify(&app).await;
    assert!(!intact);
    assert!(report.contains("entry 2 was altered"), "{report}");
    run(
        &db,
        &format!("UPDATE audit_log SET actor = '{actor}' WHERE seq = 2"),
    )
    .await
    .unwrap();
    assert!(verify(&app).await.1, "restored");

    // Two entries swapped in place.
    for sql in [
        "UPDATE audit_log SET seq = 1000 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 5",
        "UPDATE audit_log SET seq = 5 WHERE seq = 1000",
    ] {
        run(&db, sql).await.unwrap();
    }
    let (report, _) = verify(&app).await;
    assert!(report.contains("entry 4 was altered"), "{report}");
    for sql in [
        "UPDATE audit_log SET seq = 1000 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 5",
        "UPDATE audit_log SET seq = 5 WHERE seq = 1000",
    ] {
        run(&db, sql).await.unwrap();
    }
    assert!(verify(&app).await.1, "swapped back");

    // A removed entry, and a removed tail.
    run(&db, "DELETE FROM audit_log WHERE seq = 3")
        .await
        .unwrap();
    let (report, _) = verify(&app).await;
    assert!(report.contains("entries 3 to 3 are missing"), "{report}");
    run(&db, "DELETE FROM audit_log WHERE seq >= 3")
        .await
        .unwrap();
    let (report, _) = verify(&app).await;
    assert!(
        report.contains("its newest entries were removed"),
        "{report}"
    );
    db.close().await;

    // Retention on a fresh chain: purged entries leave an anchor, and the chain verifies on.
    let fresh = testkit::TEST_TENANT.to_owned() + "-r";
    let other = client_with(&app.token(&["DOCTOR"], &fresh, None));
    let body = json!({"firstName": "Kept", "lastName": "Briefly", "dateOfBirth": "1960-01-01"});
    let (status, _) = json(
        other
            .post(app.url(PATIENTS))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let store = audit::store::AuditStore::new(app.db("audit").await);
    let purged = store
        .purge(chrono::Utc::now() + chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert!(purged >= 1);
    let (status, _) = get(
        &other,
        app.url(&format!("{PATIENTS}/search?lastName=Briefly")),
    )
    .await;
    assert_eq!(status, 200);
    let verdict = store
        .verify(&kernel::TenantId::parse(&fresh).unwrap())
        .await
        .unwrap();
    assert_eq!(verdict.broken, None, "{verdict:?}");
    assert_eq!(verdict.checked, 1);
}

/// A successful read of a patient by `actor`, as the trail records it.
fn read_of(
    tenant: &kernel::TenantId,
    actor: String,
    resource_id: String,
) -> kernel::audit::AuditRecord {
    kernel::audit::AuditRecord {
        tenant: tenant.clone(),
        actor,
        roles: vec!["DOCTOR".to_owned()],
        action: kernel::audit::AuditAction::Read,
        resource_type: "Patient".to_owned(),
        resource_id: Some(resource_id),
        patient_id: None,
        outcome: kernel::audit::AuditOutcome::Success,
        at: chrono::Utc::now(),
        origin: kernel::audit::Origin::default(),
    }
}

/// A process appends after the head it last wrote (on PostgreSQL in one statement); when
/// another process has appended since, its next batch follows the other's entries, not
/// its own last, and nothing of it is lost.
async fn a_process_whose_head_another_moved_appends_after_the_others_entries(app: TestApp) {
    let tenant = kernel::TenantId::parse(testkit::TEST_TENANT).unwrap();
    let record = |n: usize| read_of(&tenant, "writer".to_owned(), format!("turn-{n}"));
    let one = audit::store::AuditStore::new(app.app_db("audit").await);
    let two = audit::store::AuditStore::new(app.app_db("audit").await);
    let first = one.append(&[record(1), record(2)]).await.unwrap();
    let second = one.append(&[record(3)]).await.unwrap();
    assert_eq!(second[0].seq, first[1].seq + 1);
    assert_eq!(second[0].prev_hash, first[1].hash);
    let others = two.append(&[record(4), record(5)]).await.unwrap();
    assert_eq!(others[0].prev_hash, second[0].hash);
    // `one` last left the head at its own entry; it has moved on since.
    let after = one.append(&[record(6)]).await.unwrap();
    assert_eq!(after[0].seq, others[1].seq + 1);
    assert_eq!(after[0].prev_hash, others[1].hash);
    let verdict = one.verify(&tenant).await.unwrap();
    assert_eq!(verdict.broken, None);
    let owner = app.db("audit").await;
    let turns: Vec<String> = on_pool!(&owner, |c| sqlx::query_scalar(
        "SELECT resource_id FROM audit_log WHERE resource_id LIKE 'turn-%' ORDER BY seq"
    )
    .fetch_all(c)
    .await)
    .unwrap();
    assert_eq!(
        turns,
        ["turn-1", "turn-2", "turn-3", "turn-4", "turn-5", "turn-6"]
    );
    owner.close().await;
}

/// Two processes appending to one tenant's chain at once take turns on its head: every
/// entry is chained once, in one unbroken chain.
async fn appends_from_two_processes_at_once_keep_one_whole_chain(app: TestApp) {
    let tenant = kernel::TenantId::parse(testkit::TEST_TENANT).unwrap();
    let record = |n: usize| read_of(&tenant, format!("writer-{}", n % 2), n.to_string());
    let (one, two) = (app.app_db("audit").await, app.app_db("audit").await);
    let mut appends = Vec::new();
    for (w, db) in [one.clone(), two.clone()].into_iter().enumerate() {
        let batches: Vec<Vec<_>> = (0..20)
            .map(|b| (0..5).map(|i| record(w * 1000 + b * 5 + i)).collect())
            .collect();
        appends.push(tokio::spawn(async move {
            let store = audit::store::AuditStore::new(db);
            for batch in batches {
                store.append(&batch).await.unwrap();
            }
        }));
    }
    for a in appends {
        a.await.unwrap();
    }
    let verdict = audit::store::AuditStore::new(one.clone())
        .verify(&tenant)
        .await
        .unwrap();
    assert_eq!(verdict.broken, None);
    assert!(
        verdict.checked >= 200,
        "{} entries chained",
        verdict.checked
    );
    // As the owner: the application role sees no tenant's rows outside a transaction.
    let owner = app.db("audit").await;
    let seqs: Vec<i64> = on_pool!(&owner, |c| sqlx::query_scalar(
        "SELECT seq FROM audit_log WHERE resource_id IS NOT NULL AND actor LIKE 'writer-%' ORDER BY seq"
    )
    .fetch_all(c)
    .await)
    .unwrap();
    assert_eq!(seqs.len(), 200);
    owner.close().await;
    one.close().await;
    two.close().await;
}
