use crate::DbError;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgPool, Postgres, Sqlite, SqlitePool};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Where a service keeps its data.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the embedded SQLite files, one per service.
    pub data_dir: PathBuf,
    /// `postgres://…`; when set, PostgreSQL is used instead of SQLite.
    pub database_url: Option<String>,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A write transaction on either backend. Dropping it without `commit` rolls back.
#[derive(Debug)]
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Db {
    /// Opens the store of `service`: `<data_dir>/<service>.db` on SQLite, or schema
    /// `<service>` on PostgreSQL (created when missing), so service boundaries are the same
    /// in the embedded default and in production.
    pub async fn connect(service: &str, config: &StoreConfig) -> Result<Self, DbError> {
        match &config.database_url {
            Some(url) => Self::connect_postgres(service, url, config.max_connections).await,
            None => {
                std::fs::create_dir_all(&config.data_dir).map_err(DbError::DataDir)?;
                Self::connect_sqlite(
                    config.data_dir.join(format!("{service}.db")),
                    config.max_connections,
                )
                .await
            }
        }
    }

    pub async fn connect_sqlite(path: PathBuf, max_connections: u32) -> Result<Self, DbError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before we answer "accepted", even across power loss.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await?;
        Ok(Db::Sqlite(pool))
    }

    pub async fn connect_postgres(
        schema: &str,
        url: &str,
        max_connections: u32,
    ) -> Result<Self, DbError> {
        let options = PgConnectOptions::from_str(url)?;
        {
            let mut conn = options.connect().await?;
            // The schema name is one of our service names, never user input.
            let ddl = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
                .execute(&mut conn)
                .await?;
            conn.close().await?;
        }
        let options = options.options([("search_path", schema)]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Db::Postgres(pool))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes can fail with
    /// "database is locked" when another writer got in between, busy timeout or not.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), DbError> {
        crate::on_pool!(self, |c| sqlx::query("SELECT 1")
            .execute(c)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    pub async fn close(&self) {
        crate::on_pool!(self, |c| c.close().await)
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}
