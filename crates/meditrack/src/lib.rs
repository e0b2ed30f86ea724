//! The composition root: wires stores, services and listeners together. No business logic.

pub mod config;
pub mod logging;

pub use config::Config;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn;
use axum::routing::get;
use kernel::{SystemClock, TenantId};
use patient::app::PatientService;
use patient::store::SqlPatientStore;
use std::sync::Arc;
use store::{Db, DbError, MigrationSet, StoreConfig};
use web::health::{CheckFuture, Checks, ReadinessCheck};
use web::{DefaultTenant, Problem};

/// Each service and the migrations of its database.
pub fn services() -> Vec<(&'static str, Vec<MigrationSet>)> {
    vec![(patient::SERVICE, patient::migrations().to_vec())]
}

/// A built hub: its router, and the databases to close on shutdown.
#[derive(Debug)]
pub struct Hub {
    pub router: Router,
    pub databases: Vec<Db>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{service} database: {source}")]
    Database {
        service: &'static str,
        source: DbError,
    },
    #[error("configuration: {0}")]
    Config(String),
}

fn store_config(config: &Config) -> StoreConfig {
    StoreConfig {
        data_dir: config.data_dir.clone(),
        database_url: config.database_url.clone(),
        max_connections: config.db_max_connections,
    }
}

/// Opens (and migrates) the database of every service.
pub async fn open_databases(config: &Config) -> Result<Vec<(&'static str, Db)>, StartError> {
    let store_config = store_config(config);
    let mut out = Vec::new();
    for (service, sets) in services() {
        let db = Db::connect(service, &store_config)
            .await
            .map_err(|source| StartError::Database { service, source })?;
        let applied = store::migrate(&db, &sets)
            .await
            .map_err(|source| StartError::Database { service, source })?;
        tracing::info!(service, applied, backend = ?db.backend(), "database ready");
        out.push((service, db));
    }
    Ok(out)
}

pub async fn build(config: &Config) -> Result<Hub, StartError> {
    let metrics = web::metrics::install();
    let tenant =
        TenantId::parse(&config.default_tenant).map_err(|e| StartError::Config(e.to_string()))?;
    let databases = open_databases(config).await?;
    let patient_db = databases
        .iter()
        .find(|(s, _)| *s == patient::SERVICE)
        .map(|(_, db)| db.clone())
        .ok_or(StartError::Config("no patient database".to_owned()))?;

    let patient = Arc::new(PatientService::new(
        SqlPatientStore::new(patient_db),
        Arc::new(SystemClock),
    ));
    let checks = Checks::new(
        databases
            .iter()
            .map(|(service, db)| {
                Box::new(DatabaseCheck {
                    service,
                    db: db.clone(),
                }) as Box<dyn ReadinessCheck>
            })
            .collect(),
    );

    let router = Router::new()
        .merge(patient::http::router(patient))
        .merge(web::health::router(checks))
        .route("/metrics", get(web::metrics::render).with_state(metrics))
        .route_layer(from_fn(web::request::capture_route))
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "request.no_such_route",
                "no such route",
            )
        })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "request.method_not_allowed",
                "this route does not accept that method",
            )
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(axum::Extension(DefaultTenant(tenant)))
        .layer(from_fn(web::request::observe));
    Ok(Hub {
        router,
        databases: databases.into_iter().map(|(_, db)| db).collect(),
    })
}

impl Hub {
    /// Serves until `shutdown` resolves, lets in-flight requests finish, then closes the pools.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        for db in &self.databases {
            db.close().await;
        }
        Ok(())
    }
}

struct DatabaseCheck {
    service: &'static str,
    db: Db,
}

impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> String {
        format!("{}-database", self.service)
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move { self.db.ping().await.map_err(|e| e.to_string()) })
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}
