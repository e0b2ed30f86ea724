//! The query planner's statistics after a bulk load.

use crate::{Db, DbError, StoreConfig};

/// Refreshes the planner statistics of every table in `service`'s store, connecting as the
/// role that owns them (the application role may not `ANALYZE`).
///
/// On PostgreSQL a table filled in one go keeps the statistics it had before, often none:
/// the planner then guesses, and at a million rows a guess that prefers the ordering index
/// over the selective one turns a lookup into a scan of the tenant. Autovacuum catches up
/// on its own schedule, which a benchmark started right after seeding does not wait for.
/// SQLite's planner works without statistics (it assumes an index narrows well, which is
/// how our statements are written to be served), and one that has run in production without
/// them should plan the same after a seed: nothing to do there.
pub async fn analyze(service: &str, config: &StoreConfig) -> Result<(), DbError> {
    let Some(url) = &config.database_url else {
        return Ok(());
    };
    let owner = Db::connect_postgres(service, url, 1).await?;
    if let Db::Postgres(pool) = &owner {
        let tables: Vec<(String,)> =
            sqlx::query_as("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
                .fetch_all(pool)
                .await?;
        for (table,) in tables {
            // Table names come from the catalog; quoted as identifiers all the same.
            let statement = format!("ANALYZE \"{}\"", table.replace('"', "\"\""));
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(pool)
                .await?;
        }
    }
    owner.close().await;
    Ok(())
}
