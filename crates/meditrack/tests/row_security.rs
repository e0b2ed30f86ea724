//! PostgreSQL row-level security, beneath the tenant filters of our own queries: the hub's
//! pools act as a role the policies apply to, every tenant table has a policy, and a
//! statement that names no tenant at all still reaches only the tenant of its transaction.
//! (SQLite has no row-level security; there the queries' own filters keep tenants apart,
//! which `patient/tests/access.rs` checks on both backends.)

#![allow(clippy::unwrap_used)]

use kernel::TenantId;
use serde_json::json;
use store::{Db, Scope, Tx};
use testkit::{TEST_TENANT, TestApp, client_with, json};

const PATIENTS: &str = "/api/v1/patients";
const OTHER: &str = "tenant-b";

async fn postgres() -> Option<TestApp> {
    TestApp::postgres().await
}

fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

/// One patient with an address, insurance and a medical record in `TEST_TENANT` and in
/// `OTHER`; their lookups leave audit entries in both.
async fn two_tenants(app: &TestApp) {
    let other = client_with(&app.token(&["HEALTHCARE_ADMIN", "DOCTOR"], OTHER, None));
    for (client, last) in [(&app.client, "Alpha"), (&other, "Bravo")] {
        let body = json!({
            "firstName": "Row", "lastName": last, "dateOfBirth": "1977-07-07",
            "addresses": [{"addressType": "HOME", "streetLine1": "1 Policy Rd", "city": "Springfield",
                "state": "IL", "zipCode": "62701", "isPrimary": true}],
            "insurance": [{"policyNumber": "P-1", "payerId": "PAY-1", "payerName": "Synthetic Plan",
                "effectiveDate": "2020-01-01", "isPrimary": true}]
        });
        let answer = client
            .post(app.url(PATIENTS))
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, created) = json(answer).await;
        assert_eq!(status, 201, "{created}");
        let id = created["id"].as_str().unwrap();
        let record = json!({"recordType": "VISIT", "recordDate": "2024-01-02T10:00:00Z",
            "providerId": "NPI1234567890", "notes": "Synthetic."});
        let answer = client
            .post(app.url(&format!("{PATIENTS}/{id}/medical-records")))
            .json(&record)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 201);
        let answer = client
            .get(app.url(&format!("{PATIENTS}/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200);
    }
}

/// The connection of a PostgreSQL transaction: these tests are about PostgreSQL only.
fn pg(tx: &mut Tx) -> &mut sqlx::PgConnection {
    match tx {
        Tx::Postgres(t) => t,
        Tx::Sqlite(_) => unreachable!("row-level security is PostgreSQL's"),
    }
}

/// The tenants whose rows `table` shows to `scope`, with no filter of our own.
async fn tenants_seen(db: &Db, scope: Option<Scope<'_>>, table: &str) -> Vec<String> {
    let mut tx = match scope {
        Some(s) => db.read_in(s).await.unwrap(),
        None => db.begin().await.unwrap(),
    };
    let sql = format!(
        "SELECT COALESCE(string_agg(DISTINCT tenant_id, ',' ORDER BY tenant_id), '') FROM {table}"
    );
    let seen: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(pg(&mut tx))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    seen.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_acts_as_a_role_that_row_security_applies_to_on_every_tenant_table() {
    let Some(app) = postgres().await else { return };
    for service in ["patient", "audit", "identity"] {
        let db = app.app_db(service).await;
        let mut tx = db.begin().await.unwrap();
        let (who, superuser, bypass): (String, bool, bool) = sqlx::query_as(
            "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(pg(&mut tx))
        .await
        .unwrap();
        assert_eq!(
            (who.as_str(), superuser, bypass),
            (store::APP_ROLE, false, false),
            "{service}"
        );
        // It owns nothing (owners are exempt from policies) and may not change the schema.
        let owned: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)",
        )
        .fetch_one(pg(&mut tx))
        .await
        .unwrap();
        assert_eq!(owned, 0, "{service}");
        tx.commit().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        let refused = sqlx::raw_sql("CREATE TABLE sneaky (tenant_id TEXT)")
            .execute(pg(&mut tx))
            .await;
        assert!(refused.is_err(), "{service}: DDL as the application role");
        drop(tx);
        db.close().await;
    }

    // Every table of the tenant-scoped services that holds a tenant's rows has a policy.
    let owner = app.db("patient").await;
    let Db::Postgres(pool) = &owner else {
        unreachable!()
    };
    let unprotected: Vec<String> = sqlx::query_scalar(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname IN ('patient', 'audit', 'lab')
           AND EXISTS (SELECT 1 FROM information_schema.columns k
                       WHERE k.table_schema = n.nspname AND k.table_name = c.relname AND k.column_name = 'tenant_id')
           AND NOT (c.relrowsecurity AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(unprotected, Vec::<String>::new());
    owner.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_without_a_tenant_filter_reaches_only_its_transactions_tenant() {
    let Some(app) = postgres().await else { return };
    two_tenants(&app).await;
    let (ours, theirs) = (tenant(TEST_TENANT), tenant(OTHER));
    let both = {
        let mut t = vec![TEST_TENANT.to_owned(), OTHER.to_owned()];
        t.sort();
        t
    };

    let patient = app.app_db("patient").await;
    for table in [
        "patients",
        "patient_addresses",
        "patient_insurance",
        "medical_records",
        "patient_timeline",
        "mrn_counters",
    ] {
        assert_eq!(
            tenants_seen(&patient, Some(Scope::Tenant(&ours)), table).await,
            [TEST_TENANT],
            "{table}"
        );
        assert_eq!(
            tenants_seen(&patient, Some(Scope::Tenant(&theirs)), table).await,
            [OTHER],
            "{table}"
        );
        // No tenant named: nothing, rather than everything.
        assert!(
            tenants_seen(&patient, None, table).await.is_empty(),
            "{table}"
        );
        assert_eq!(
            tenants_seen(&patient, Some(Scope::AllTenants), table).await,
            both,
            "{table}"
        );
    }
    let audit = app.app_db("audit").await;
    for table in ["audit_log", "audit_heads"] {
        assert_eq!(
            tenants_seen(&audit, Some(Scope::Tenant(&theirs)), table).await,
            [OTHER],
            "{table}"
        );
        assert!(
            tenants_seen(&audit, None, table).await.is_empty(),
            "{table}"
        );
    }
    audit.close().await;

    // Writes: an unfiltered UPDATE or DELETE touches only the tenant's own rows, and a row
    // cannot be written into, or moved to, another tenant.
    let mut tx = patient.begin_in(Scope::Tenant(&ours)).await.unwrap();
    let updated = sqlx::query("UPDATE patients SET middle_name = 'X'")
        .execute(pg(&mut tx))
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 1);
    let deleted = sqlx::query("DELETE FROM medical_records")
        .execute(pg(&mut tx))
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 1);
    drop(tx);
    for (sql, what) in [
        (
            format!("UPDATE patients SET tenant_id = '{OTHER}'"),
            "moving a row to another tenant",
        ),
        (
            format!("INSERT INTO mrn_counters (tenant_id, last_value) VALUES ('{OTHER}-new', 1)"),
            "writing a row of another tenant",
        ),
    ] {
        let mut tx = patient.begin_in(Scope::Tenant(&ours)).await.unwrap();
        let refused = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .execute(pg(&mut tx))
            .await
            .unwrap_err();
        let code = refused
            .as_database_error()
            .and_then(|e| e.code())
            .unwrap_or_default();
        assert_eq!(code, "42501", "{what}: {refused}");
    }
    patient.close().await;

    // The other tenant is untouched by all of the above, which was rolled back anyway.
    let (status, found) = json(
        client_with(&app.token(&["DOCTOR"], OTHER, None))
            .get(app.url(&format!("{PATIENTS}/search?lastName=Bravo")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found["items"][0]["middleName"], serde_json::Value::Null);
}

/// A read that is one statement sets its own tenant (`store::tenant_read`): it reaches only
/// that tenant's rows, and the setting ends with the statement, so the next statement on
/// the same connection that names no tenant finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_statement_read_reaches_only_the_tenant_it_names_and_only_itself() {
    let Some(app) = postgres().await else { return };
    two_tenants(&app).await;
    let patient = app.app_db("patient").await;
    let Db::Postgres(pool) = &patient else {
        unreachable!()
    };
    let mut conn = pool.acquire().await.unwrap();
    // No tenant filter of its own: only the policies decide what it sees.
    let unfiltered = "SELECT COALESCE(string_agg(DISTINCT tenant_id, ','), '') AS seen,
        COUNT(*) AS rows FROM patients WHERE $1::text IS NOT NULL";
    let read = store::tenant_read::in_tenant(unfiltered, 1);
    for t in [TEST_TENANT, OTHER] {
        let (seen, rows): (String, i64) = sqlx::query_as(sqlx::AssertSqlSafe(read.as_str()))
            .bind(t)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!((seen.as_str(), rows), (t, 1));
        let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM patients")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(after, 0, "the setting outlived its statement");
    }
    // A tenant with no rows sees none of the others'.
    let (seen, rows): (String, i64) = sqlx::query_as(sqlx::AssertSqlSafe(read.as_str()))
        .bind("tenant-c")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!((seen.as_str(), rows), ("", 0));
    drop(conn);
    patient.close().await;
}

/// A write that is one statement sets its own tenant (`store::tenant_read::insert_in_tenant`):
/// its INSERTs all land in that tenant, a row of any other tenant is refused with every
/// other row of the statement, and the setting ends with the statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_statement_write_lands_only_in_the_tenant_it_names_all_or_nothing() {
    let Some(app) = postgres().await else { return };
    let patient = app.app_db("patient").await;
    let Db::Postgres(pool) = &patient else {
        unreachable!()
    };
    let mut conn = pool.acquire().await.unwrap();
    let write = store::tenant_read::insert_in_tenant(
        &[
            (
                "INSERT INTO mrn_counters (tenant_id, last_value)",
                "($1, 7)".to_owned(),
            ),
            (
                "INSERT INTO idempotency_keys (tenant_id, idempotency_key, operation,
                 request_digest, resource_id, created_at)",
                "($2, 'key-1', 'op', repeat('0', 64), gen_random_uuid(), now())".to_owned(),
            ),
        ],
        3,
    );
    let run = |counter: &'static str, key: &'static str, tenant: &'static str| {
        sqlx::query(sqlx::AssertSqlSafe(write.clone()))
            .bind(counter)
            .bind(key)
            .bind(tenant)
    };
    let seen = |t: &'static str| {
        let read = store::tenant_read::in_tenant(
            "SELECT (SELECT COUNT(*) FROM mrn_counters) + (SELECT COUNT(*) FROM idempotency_keys)
             AS n WHERE $1::text IS NOT NULL",
            1,
        );
        async move {
            let mut conn = pool.acquire().await.unwrap();
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(read))
                .bind(t)
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            n
        }
    };

    run("tenant-c", "tenant-c", "tenant-c")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(seen("tenant-c").await, 2);
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mrn_counters")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(after, 0, "the setting outlived its statement");

    // One row of another tenant: refused, and the statement's other row with it.
    for (counter, key) in [("tenant-e", "tenant-d"), ("tenant-d", "tenant-e")] {
        let refused = run(counter, key, "tenant-d").execute(&mut *conn).await;
        assert!(refused.is_err(), "{counter} {key}");
        for t in ["tenant-d", "tenant-e"] {
            assert_eq!(seen(t).await, 0, "{counter} {key}: {t}");
        }
    }
    drop(conn);
    patient.close().await;
}
