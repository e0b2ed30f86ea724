//! The query planner's statistics after a bulk load.

use crate::{Db, DbError, StoreConfig};

/// Leaves `service`'s freshly bulk-loaded tables as a database that has been running a
/// while would have them, connecting as the role that owns them (the application role may
/// not): vacuumed, analyzed, and checkpointed.
///
/// On PostgreSQL a table filled in one go keeps the statistics it had before, often none:
/// the planner then guesses (measured at a million patients: MRN search took 13 s at p95
/// without statistics, under 4 ms with them). The first reads of a just-loaded row also set its hint bits, dirtying pages,
/// and autovacuum and the checkpoint then write gigabytes back: work that would land in
/// the middle of whatever is measured next. `VACUUM (ANALYZE)` and `CHECKPOINT` do it now.
/// Rows loaded frozen into emptied tables ([`crate::DeferredIndexes`]) are on pages
/// marked visible to all as they were written: the `VACUUM` skips those pages.
/// `CHECKPOINT` needs a privileged role; without one it is skipped.
///
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
            let statement = format!("VACUUM (ANALYZE) \"{}\"", table.replace('"', "\"\""));
            sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                .execute(pool)
                .await?;
        }
        if let Err(e) = sqlx::raw_sql("CHECKPOINT").execute(pool).await {
            tracing::info!(error = %e, "no checkpoint after the bulk load");
        }
    }
    owner.close().await;
    Ok(())
}
