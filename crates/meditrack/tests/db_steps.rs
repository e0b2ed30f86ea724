//! `Db::step_unawaited`, the one-round-trip transaction the MRN counter takes, on SQLite and
//! PostgreSQL: all or nothing, in its tenant's scope, and the connection usable after a
//! failed step.

#![allow(clippy::unwrap_used)]

use kernel::TenantId;
use store::{Db, Scope, StoreConfig, on_pool};
use testkit::TestDatabase;

testkit::on_both_databases!(
    a_step_is_all_or_nothing_in_its_tenant_and_a_failed_one_leaves_nothing_behind
);

const STEP: &str = "INSERT INTO counters (tenant_id, n) VALUES ('clinic-a', 1)
     ON CONFLICT (tenant_id) DO UPDATE SET n = counters.n + 1 RETURNING n";

async fn a_step_is_all_or_nothing_in_its_tenant_and_a_failed_one_leaves_nothing_behind(
    db: TestDatabase,
) {
    let config = StoreConfig {
        data_dir: db.data_dir(),
        database_url: db.url(),
        // One connection: a step that left its transaction open would break the next.
        max_connections: 1,
    };
    let db = Db::connect("steps", &config).await.unwrap();
    on_pool!(&db, |c| sqlx::raw_sql(
        "CREATE TABLE counters (tenant_id TEXT PRIMARY KEY, n BIGINT NOT NULL CHECK (n < 3))"
    )
    .execute(c)
    .await
    .map(|_| ()))
    .unwrap();
    let tenant = TenantId::parse("clinic-a").unwrap();
    let step = || db.step_unawaited(Scope::Tenant(&tenant), STEP);

    assert_eq!(step().await.unwrap(), 1);
    assert_eq!(step().await.unwrap(), 2);
    assert!(step().await.is_err(), "the check refuses a third step");
    // Read in a writer's turn: a step does not wait for its commit, and on SQLite its group
    // may still be committing, which only the writers' connection sees through.
    let mut tx = db.begin().await.unwrap();
    let n: i64 = store::on_tx!(&mut tx, |c| sqlx::query_scalar(
        "SELECT n FROM counters WHERE tenant_id = 'clinic-a'"
    )
    .fetch_one(c)
    .await)
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(n, 2, "the refused step changed nothing");

    if db.backend() == store::Backend::Postgres {
        let scoped = db
            .step_unawaited(
                Scope::Tenant(&tenant),
                "SELECT CAST(length(current_setting('app.current_tenant')) AS BIGINT)",
            )
            .await
            .unwrap();
        assert_eq!(scoped, 8, "the step runs in its tenant's scope");
        let after: String = on_pool!(&db, |c| sqlx::query_scalar(
            "SELECT current_setting('app.current_tenant', true) || '|' || current_setting('synchronous_commit')"
        )
        .fetch_one(c)
        .await)
        .unwrap();
        assert_eq!(after, "|on", "its settings end with it");
    }
    db.close().await;
}
