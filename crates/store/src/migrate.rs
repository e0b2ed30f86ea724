//! Plain-SQL migrations, one list per backend, recorded in `schema_migrations`.
//!
//! Several components share one database (the outbox and the service that owns it), so a
//! migration is identified by `(component, version)`. An applied migration whose text has
//! changed stops start-up: landed migrations are never edited.

use crate::{Backend, Db, DbError, Tx};

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations of one component, for each backend.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSet {
    pub component: &'static str,
    pub sqlite: &'static [Migration],
    pub postgres: &'static [Migration],
}

impl MigrationSet {
    pub fn for_backend(&self, backend: Backend) -> &'static [Migration] {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version BIGINT NOT NULL,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (component, version)
)";

/// Only one process migrates a PostgreSQL database at a time; the others wait, then find
/// nothing left to do.
pub(crate) const PG_LOCK_KEY: i64 = 0x6d65_6469_7472_6163;

/// Applies what is missing, in order, each migration in its own transaction. Returns how
/// many were applied.
pub async fn migrate(db: &Db, sets: &[MigrationSet]) -> Result<usize, DbError> {
    let mut tx = db.begin().await?;
    crate::execute!(&mut tx, sqlx::raw_sql(CREATE_TABLE))?;
    if let Tx::Postgres(t) = &mut tx {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_LOCK_KEY)
            .execute(&mut **t)
            .await?;
    }
    let mut applied = 0;
    for set in sets {
        let known = set.for_backend(db.backend());
        let recorded: Vec<(i64, String)> = crate::on_tx!(&mut tx, |c| {
            sqlx::query_as("SELECT version, checksum FROM schema_migrations WHERE component = $1 ORDER BY version")
                .bind(set.component)
                .fetch_all(c)
                .await
        })?;
        for (version, checksum) in &recorded {
            match known.iter().find(|m| m.version == *version) {
                Some(m) if checksum_of(m.sql) == *checksum => {}
                Some(_) => {
                    return Err(DbError::MigrationEdited {
                        component: set.component.to_owned(),
                        version: *version,
                    });
                }
                None => {
                    return Err(DbError::MigrationUnknown {
                        component: set.component.to_owned(),
                        version: *version,
                    });
                }
            }
        }
        for m in known
            .iter()
            .filter(|m| !recorded.iter().any(|(v, _)| *v == m.version))
        {
            crate::execute!(&mut tx, sqlx::raw_sql(m.sql))?;
            crate::execute!(
                &mut tx,
                sqlx::query(
                    "INSERT INTO schema_migrations (component, version, name, checksum, applied_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(set.component)
                .bind(m.version)
                .bind(m.name)
                .bind(checksum_of(m.sql))
                .bind(chrono::Utc::now().to_rfc3339())
            )?;
            tracing::info!(
                component = set.component,
                version = m.version,
                name = m.name,
                "applied migration"
            );
            applied += 1;
        }
    }
    // One transaction for the whole run: PostgreSQL and SQLite both have transactional DDL,
    // so a failed migration leaves the database as it was.
    tx.commit().await?;
    Ok(applied)
}

/// FNV-1a, 64 bits: enough to notice an edited file; this is not a security boundary.
fn checksum_of(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The checksum of every migration of `sets` on `backend`, for naming test templates:
/// a changed migration must not reuse a template built from the old one.
pub fn fingerprint(sets: &[MigrationSet], backend: Backend) -> String {
    let all: String = sets
        .iter()
        .flat_map(|s| {
            s.for_backend(backend)
                .iter()
                .map(move |m| format!("{}:{}:{};", s.component, m.version, m.sql))
        })
        .collect();
    checksum_of(&all)
}
