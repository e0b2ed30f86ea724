//! The PostgreSQL role the services act as. The role that connects (from
//! `MEDITRACK_DATABASE_URL`) owns the schemas and runs migrations; the pools that serve
//! requests then switch to [`APP_ROLE`], which owns nothing, is no superuser and cannot
//! bypass row-level security, so the tenant policies apply to every statement they run.
//! It may read and write rows, and nothing else: no DDL, no changes to `schema_migrations`.

use crate::{Db, DbError, MigrationSet, StoreConfig, Tx, execute, migrate};

pub const APP_ROLE: &str = "meditrack_app";

/// Opens `service`'s store for serving: connects as the configured role, applies what is
/// missing of `sets`, grants the application role what it needs, and reconnects as it.
/// Returns the store and how many migrations were applied.
pub async fn open(
    service: &str,
    config: &StoreConfig,
    sets: &[MigrationSet],
) -> Result<(Db, usize), DbError> {
    let owner = Db::connect(service, config).await?;
    let applied = migrate(&owner, sets).await?;
    if matches!(owner, Db::Sqlite(_)) {
        return Ok((owner, applied));
    }
    grant(&owner, service).await?;
    owner.close().await;
    Ok((Db::connect_as_app(service, config).await?, applied))
}

/// Creates the role when missing, lets the connecting role act as it, and grants it the
/// rows of every table of `schema`. Idempotent; run at every start, so tables added by
/// later migrations are covered.
async fn grant(db: &Db, schema: &str) -> Result<(), DbError> {
    let mut tx = db.begin().await?;
    if let Tx::Postgres(t) = &mut tx {
        // GRANTs racing on one catalog row fail ("tuple concurrently updated"): hubs starting
        // together take turns, as they do for migrations.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(migrate::PG_LOCK_KEY)
            .execute(&mut **t)
            .await?;
    }
    // Roles are shared by every database of the server, so two databases being set up at
    // once may both try to create it.
    let create = format!(
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                CREATE ROLE {APP_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
            END IF;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END $$"
    );
    let member = format!(
        "DO $$ BEGIN
            IF NOT pg_has_role(current_user, '{APP_ROLE}', 'MEMBER') THEN
                EXECUTE format('GRANT {APP_ROLE} TO %I', current_user);
            END IF;
        END $$"
    );
    // The schema name is one of our service names, never user input.
    let grants = format!(
        "GRANT USAGE ON SCHEMA \"{schema}\" TO {APP_ROLE};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO {APP_ROLE};
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA \"{schema}\" TO {APP_ROLE};
         REVOKE INSERT, UPDATE, DELETE ON \"{schema}\".schema_migrations FROM {APP_ROLE}"
    );
    for sql in [create, member, grants] {
        execute!(&mut tx, sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))?;
    }
    tx.commit().await
}
