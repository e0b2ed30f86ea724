use sqlx::{Connection, Executor, PgConnection};
use std::path::PathBuf;
use tokio::sync::OnceCell;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug)]
pub enum TestDatabase {
    Sqlite { dir: PathBuf },
    Postgres { admin_url: String, name: String },
}

fn admin_url() -> String {
    std::env::var("MEDITRACK_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let base = url.split('?').next().unwrap_or(url);
    let prefix = base.rsplit_once('/').map_or(base, |(p, _)| p);
    format!("{prefix}/{name}")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

static TEMPLATE: OnceCell<Result<String, String>> = OnceCell::const_new();

/// The PostgreSQL server for tests (`MEDITRACK_TEST_DATABASE_URL`), for a test that makes
/// databases of its own there. `None` after saying why when it does not answer, except
/// under `CI=true`, where that fails.
pub async fn postgres_server() -> Option<String> {
    let admin = admin_url();
    match PgConnection::connect(&admin).await {
        Ok(conn) => {
            let _ = conn.close().await;
            Some(admin)
        }
        Err(e) if in_ci() => {
            panic!("PostgreSQL is required in CI (CI=true) but is not usable: {e}")
        }
        Err(e) => {
            eprintln!(
                "skipping a PostgreSQL test: {e} (set MEDITRACK_TEST_DATABASE_URL, or start PostgreSQL)"
            );
            None
        }
    }
}

impl TestDatabase {
    pub fn sqlite() -> Self {
        let dir =
            std::env::temp_dir().join(format!("meditrack-test-{}", uuid::Uuid::now_v7().simple()));
        TestDatabase::Sqlite { dir }
    }

    pub async fn postgres() -> Option<Self> {
        let admin = admin_url();
        let template = match TEMPLATE
            .get_or_init(|| migrated_template(admin.clone()))
            .await
        {
            Ok(t) => t.clone(),
            Err(e) if in_ci() => {
                panic!("PostgreSQL is required in CI (CI=true) but is not usable: {e}")
            }
            Err(e) => {
                eprintln!(
                    "skipping a PostgreSQL test: {e} (set MEDITRACK_TEST_DATABASE_URL, or start PostgreSQL)"
                );
                return None;
            }
        };
        let name = format!("meditrack_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("admin connection");
        // Several tests clone the template at once; PostgreSQL refuses a clone while another
        // session is briefly attached to the template, so retry.
        let mut attempt = 0;
        loop {
            let sql = format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"");
            match conn.execute(sqlx::AssertSqlSafe(sql)).await {
                Ok(_) => break,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    backoff(attempt).await;
                    let _ = e;
                }
                Err(e) => panic!("cannot clone the test template: {e}"),
            }
        }
        let _ = conn.close().await;
        Some(TestDatabase::Postgres {
            admin_url: admin,
            name,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        match self {
            TestDatabase::Sqlite { dir } => dir.clone(),
            // Keys (signing, field encryption) still live in a data directory: one per test.
            TestDatabase::Postgres { name, .. } => std::env::temp_dir().join(name.as_str()),
        }
    }

    pub fn url(&self) -> Option<String> {
        match self {
            TestDatabase::Sqlite { .. } => None,
            TestDatabase::Postgres { admin_url, name } => Some(with_database(admin_url, name)),
        }
    }
}

async fn backoff(attempt: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
}

/// Creates (once per set of migrations) a database with every service's schema migrated.
async fn migrated_template(admin: String) -> Result<String, String> {
    let mut conn = PgConnection::connect(&admin)
        .await
        .map_err(|e| format!("cannot connect to {admin}: {e}"))?;
    let fingerprint: String = meditrack::services()
        .iter()
        .map(|(_, sets)| store::migrate::fingerprint(sets, store::Backend::Postgres))
        .collect::<Vec<_>>()
        .join("");
    let name = format!(
        "meditrack_tpl_{}",
        &fingerprint[..fingerprint.len().min(40)]
    );
    // Test processes run side by side; one builds the template, the others wait for it.
    conn.execute("SELECT pg_advisory_lock(7261)")
        .await
        .map_err(|e| e.to_string())?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let result = if exists.is_some() {
        Ok(())
    } else {
        build_template(&mut conn, &admin, &name).await
    };
    let _ = conn.execute("SELECT pg_advisory_unlock(7261)").await;
    let _ = conn.close().await;
    result.map(|()| name)
}

async fn build_template(conn: &mut PgConnection, admin: &str, name: &str) -> Result<(), String> {
    let building = format!("{name}_building");
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{building}\""
    )))
    .await
    .map_err(|e| e.to_string())?;
    conn.execute(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{building}\""
    )))
    .await
    .map_err(|e| e.to_string())?;
    let url = with_database(admin, &building);
    for (service, sets) in meditrack::services() {
        let db = store::Db::connect_postgres(service, &url, 1)
            .await
            .map_err(|e| e.to_string())?;
        store::migrate(&db, &sets)
            .await
            .map_err(|e| e.to_string())?;
        db.close().await;
    }
    // Renamed only when complete, so a half-built template is never cloned.
    conn.execute(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE \"{building}\" RENAME TO \"{name}\""
    )))
    .await
    .map_err(|e| e.to_string())?;
    // Templates of older migrations are of no further use; a failure here costs only disk.
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'meditrack\\_tpl\\_%' AND datname <> $1",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for old in stale {
        let _ = conn
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{old}\""
            )))
            .await;
    }
    Ok(())
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match self {
            TestDatabase::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            TestDatabase::Postgres { admin_url, name } => {
                let _ = std::fs::remove_dir_all(std::env::temp_dir().join(name.as_str()));
                let (admin, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime; a thread with its own runtime may block.
                let dropped = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(async {
                        let mut conn = PgConnection::connect(&admin).await.ok()?;
                        conn.execute(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                        )))
                        .await
                        .ok()?;
                        conn.close().await.ok()
                    })
                });
                let _ = dropped.join();
            }
        }
    }
}
