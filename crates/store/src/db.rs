use crate::DbError;
use crate::group_commit::{WriteTx, Writer};
use kernel::TenantId;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgPool, Postgres, Sqlite, SqlitePool};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Each SQLite connection's page cache, in KiB (SQLite's default is 2,000). A hub holds a
/// few dozen connections (each service's pool, the direct writers and readers), each
/// caching the same hot pages that the operating system's page cache holds once for all
/// of them; at the default they took the hub's peak resident memory past its 200 MB
/// budget in a full bench run (208.8 MB). At 512 KiB the bench's peak fell by 15–30 MB
/// with no change in throughput that alternating runs could tell.
pub(crate) const PAGE_CACHE_KIB: i64 = 512;
/// A PostgreSQL connection idle this long is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

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
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

/// A SQLite pool and its writers, who take turns and commit in groups
/// ([`crate::group_commit`]). Without the turns, writers that find the lock taken sleep in
/// SQLite's busy handler (1 ms, then up to 100 ms at a time) and wake in no order:
/// measured, four HL7 connections then did fewer messages a second than one, with 2.6 s
/// stalls.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    pool: SqlitePool,
    pub(crate) writer: Arc<Writer>,
    pub(crate) direct: crate::direct::DirectConn,
    pub(crate) reads: crate::direct_read::DirectReads,
    /// Held for its thread, which ends when the last clone of this is dropped.
    #[cfg_attr(not(test), allow(dead_code))]
    checkpoints: Arc<crate::checkpointer::Checkpointer>,
}

impl std::ops::Deref for SqliteDb {
    type Target = SqlitePool;

    fn deref(&self) -> &SqlitePool {
        &self.pool
    }
}

impl SqliteDb {
    /// Write transactions committed so far, each for a group of writers.
    pub fn group_commits(&self) -> u64 {
        self.writer.commits()
    }

    #[cfg(test)]
    pub(crate) fn last_checkpoint(&self) -> Option<(i64, i64)> {
        self.checkpoints.last()
    }
}

/// A SQLite transaction: a read, or a writer's turn in a group commit.
#[derive(Debug)]
pub enum SqliteTx {
    Read(sqlx::Transaction<'static, Sqlite>),
    Write(WriteTx),
}

impl SqliteTx {
    /// The connection the transaction runs on, to execute statements with.
    pub fn conn(&mut self) -> &mut sqlx::SqliteConnection {
        match self {
            SqliteTx::Read(tx) => tx,
            SqliteTx::Write(tx) => tx.conn(),
        }
    }

    async fn commit(self) -> Result<(), DbError> {
        match self {
            SqliteTx::Read(tx) => Ok(tx.commit().await?),
            SqliteTx::Write(tx) => tx.commit().await,
        }
    }

    async fn commit_unawaited(self) -> Result<(), DbError> {
        match self {
            SqliteTx::Read(tx) => Ok(tx.commit().await?),
            SqliteTx::Write(tx) => tx.commit_unawaited().await,
        }
    }
}

/// Whose rows a transaction may see and change. On PostgreSQL, row-level security enforces
/// it (`app.current_tenant`, set per transaction): a query that forgot its tenant filter
/// still finds nothing of another tenant. On SQLite, the statements' own tenant filters do.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// One tenant's rows: everything that serves a request or an event.
    Tenant(&'a TenantId),
    /// Every tenant's rows, for maintenance that walks all tenants (re-sealing, audit
    /// verification and retention); never for a request.
    AllTenants,
}

impl Scope<'_> {
    /// The statement that puts a PostgreSQL transaction in this scope. Tenant ids are
    /// letters, digits, `-` and `_` (`TenantId::parse`), so they need no quoting beyond the
    /// literal's quotes; inlining lets `BEGIN` and the setting share one round trip.
    fn settings(&self) -> String {
        let (tenant, all) = self.values();
        format!(
            "SELECT set_config('app.current_tenant', '{tenant}', true), set_config('app.all_tenants', '{all}', true)"
        )
    }

    /// [`Self::settings`] as statements that return no rows.
    fn set_local(&self) -> String {
        let (tenant, all) = self.values();
        format!("SET LOCAL app.current_tenant TO '{tenant}'; SET LOCAL app.all_tenants TO '{all}'")
    }

    fn values(&self) -> (&str, &'static str) {
        let (tenant, all) = match self {
            Scope::Tenant(t) => (t.as_str(), "off"),
            Scope::AllTenants => ("", "on"),
        };
        debug_assert!(
            tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        (tenant, all)
    }
}

/// A write transaction on either backend. Dropping it without `commit` rolls back.
#[derive(Debug)]
pub enum Tx {
    Sqlite(SqliteTx),
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
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before we answer "accepted", even across power loss.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Checkpoints run on a thread of their own (`crate::checkpointer`); a commit
            // runs one only if the WAL outgrows this.
            .pragma(
                "wal_autocheckpoint",
                crate::checkpointer::BACKSTOP_PAGES.to_string(),
            )
            .pragma("cache_size", (-PAGE_CACHE_KIB).to_string())
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            // The pool would ping each connection it hands out, a round trip to the
            // connection's thread per transaction, to find a peer that hung up: a file
            // opened in this process has none.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Db::Sqlite(SqliteDb {
            writer: Writer::new(pool.clone(), BUSY_TIMEOUT),
            direct: crate::direct::DirectConn::new(path.clone()),
            reads: crate::direct_read::DirectReads::new(path.clone()),
            checkpoints: Arc::new(crate::checkpointer::Checkpointer::start(
                path,
                crate::checkpointer::INTERVAL,
            )),
            pool,
        }))
    }

    /// Opens `service`'s store as the application (see [`crate::open`]): on PostgreSQL its
    /// connections act as [`crate::APP_ROLE`], which row-level security applies to.
    pub async fn connect_as_app(service: &str, config: &StoreConfig) -> Result<Self, DbError> {
        match &config.database_url {
            Some(url) => {
                Self::pg_pool(service, url, config.max_connections, Some(crate::APP_ROLE)).await
            }
            None => Self::connect(service, config).await,
        }
    }

    /// A pool over schema `schema` as the role `url` connects with (the owner: migrations and
    /// tests that look at raw rows use it).
    pub async fn connect_postgres(
        schema: &str,
        url: &str,
        max_connections: u32,
    ) -> Result<Self, DbError> {
        Self::pg_pool(schema, url, max_connections, None).await
    }

    async fn pg_pool(
        schema: &str,
        url: &str,
        max_connections: u32,
        role: Option<&'static str>,
    ) -> Result<Self, DbError> {
        let options = PgConnectOptions::from_str(url)?;
        {
            let mut conn = options.connect().await?;
            // The schema name is one of our service names, never user input.
            let ddl = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
            sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut conn).await?;
            conn.close().await?;
        }
        let options = options.options([("search_path", schema)]);
        let mut pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            // sqlx would ping every connection it hands out: a round trip to the server
            // for every transaction of every request. Only a connection idle for a while is
            // checked (as HikariCP does), since that is the one a restart, a failover or an
            // idle timeout can have cut; one cut while in steady use fails its statement,
            // whose transaction is refused whole.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(
                    async move { Ok(meta.idle_for < PING_AFTER_IDLE || conn.ping().await.is_ok()) },
                )
            });
        if let Some(role) = role {
            // Every connection, before its first use: nothing runs as the owner.
            pool = pool.after_connect(move |conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(AssertSqlSafe(format!("SET ROLE \"{role}\"")))
                        .execute(conn)
                        .await
                        .map(|_| ())
                })
            });
        }
        let pool = pool.connect_with(options).await?;
        Ok(Db::Postgres(pool))
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Starts a write transaction outside any tenant, for tables that hold no tenant's rows
    /// (outbox, inbox, migrations, keys); on PostgreSQL, tenant tables show it nothing.
    /// On SQLite it is a writer's turn in a group commit ([`crate::group_commit`]), whose
    /// transaction took the write lock up front (`BEGIN IMMEDIATE`): a deferred transaction
    /// that reads and then writes can fail with "database is locked" when another writer got
    /// in between, busy timeout or not.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        Ok(match self {
            Db::Sqlite(db) => Tx::Sqlite(SqliteTx::Write(db.writer.begin().await?)),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// Starts a write transaction over the rows of `scope` (see [`Db::begin`]).
    pub async fn begin_in(&self, scope: Scope<'_>) -> Result<Tx, DbError> {
        Ok(match self {
            Db::Sqlite(db) => Tx::Sqlite(SqliteTx::Write(db.writer.begin().await?)),
            Db::Postgres(pool) => Tx::Postgres(
                pool.begin_with(AssertSqlSafe(format!("BEGIN; {}", scope.settings())))
                    .await?,
            ),
        })
    }

    /// Starts a read-only transaction over the rows of `scope`: on PostgreSQL the only way
    /// to read tenant tables, since row-level security needs the tenant of the transaction.
    /// On SQLite a deferred transaction, which takes no write lock.
    pub async fn read_in(&self, scope: Scope<'_>) -> Result<Tx, DbError> {
        Ok(match self {
            Db::Sqlite(db) => Tx::Sqlite(SqliteTx::Read(db.pool.begin().await?)),
            Db::Postgres(pool) => Tx::Postgres(
                pool.begin_with(AssertSqlSafe(format!(
                    "BEGIN READ ONLY; {}",
                    scope.settings()
                )))
                .await?,
            ),
        })
    }

    /// `statement` as a transaction of its own in `scope`, committed without waiting until
    /// it is durable ([`Tx::commit_unawaited`]); returns the `i64` of the one row it
    /// returns. On PostgreSQL this is one round trip (several statements in one query
    /// string run as one transaction, all or nothing), where a transaction of its own took
    /// four. `statement` has no parameters: the caller inlines values that need no quoting
    /// (tenant ids, numbers).
    pub async fn step_unawaited(&self, scope: Scope<'_>, statement: &str) -> Result<i64, DbError> {
        match self {
            Db::Postgres(pool) => {
                let sql = format!(
                    "SET LOCAL synchronous_commit TO OFF; {}; {statement}",
                    scope.set_local()
                );
                // Read to the end: the transaction commits after its last statement.
                let rows = sqlx::raw_sql(AssertSqlSafe(sql)).fetch_all(pool).await?;
                let row = rows
                    .last()
                    .ok_or(DbError::Invariant("a step returned no row"))?;
                Ok(sqlx::Row::try_get(row, 0)?)
            }
            Db::Sqlite(_) => {
                let mut tx = self.begin_in(scope).await?;
                let value =
                    crate::on_tx!(&mut tx, |c| sqlx::query_scalar(AssertSqlSafe(statement))
                        .fetch_one(c)
                        .await)?;
                tx.commit_unawaited().await?;
                Ok(value)
            }
        }
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
        if let Db::Sqlite(db) = self {
            db.writer.close().await;
        }
        crate::on_pool!(self, |c| c.close().await)
    }
}

impl Tx {
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }

    /// Moves the transaction to the rows of `scope`, e.g. an event's tenant in a consumer's
    /// transaction, or each tenant of a batch in turn.
    pub async fn enter(&mut self, scope: Scope<'_>) -> Result<(), DbError> {
        if let Tx::Postgres(tx) = self {
            sqlx::raw_sql(AssertSqlSafe(scope.settings()))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Ends the transaction without its changes, now. A PostgreSQL transaction that is only
    /// dropped is rolled back when its connection is next used, and keeps its locks until
    /// then (the advisory lock a relay leads by, say).
    pub async fn rollback(self) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(tx) => drop(tx),
            Tx::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Commits without waiting until the transaction is durable, for a write whose loss in
    /// a crash is harmless because whatever depends on it is written later and checked
    /// (a counter whose reused value a unique index refuses). Nothing written after it can
    /// be durable without it: on SQLite its turn's group commits before any later group,
    /// and on PostgreSQL it commits with `synchronous_commit` off, which the WAL flush of
    /// any later commit covers. It saves the wait for an fsync.
    pub async fn commit_unawaited(self) -> Result<(), DbError> {
        match self {
            Tx::Sqlite(tx) => tx.commit_unawaited().await?,
            Tx::Postgres(mut tx) => {
                sqlx::raw_sql("SET LOCAL synchronous_commit TO OFF")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execute;

    #[tokio::test]
    async fn sqlite_writers_take_turns_in_arrival_order() {
        let dir = std::env::temp_dir().join(format!("store-turns-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let db = Db::connect_sqlite(dir.join("t.db"), 8)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let write = |db: Db, who: &'static str| async move {
            let mut tx = db.begin().await?;
            execute!(
                &mut tx,
                sqlx::query("INSERT INTO turns (who) VALUES ($1)").bind(who)
            )?;
            tx.commit().await
        };
        crate::on_pool!(&db, |c| sqlx::raw_sql(
            "CREATE TABLE turns (n INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT NOT NULL)"
        )
        .execute(c)
        .await
        .map(|_| ()))
        .unwrap_or_else(|e| panic!("{e}"));

        // The first writer holds the lock while the others arrive one after another.
        let first = db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let mut waiting = Vec::new();
        for who in ["b", "c", "d", "e"] {
            waiting.push(tokio::spawn(write(db.clone(), who)));
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        drop(first);
        for w in waiting {
            w.await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let order: Vec<(String,)> =
            crate::on_pool!(&db, |c| sqlx::query_as("SELECT who FROM turns ORDER BY n")
                .fetch_all(c)
                .await)
            .unwrap_or_else(|e| panic!("{e}"));
        let order: Vec<_> = order.into_iter().map(|(w,)| w).collect();
        assert_eq!(order, ["b", "c", "d", "e"]);
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
