//! The composition root: wires stores, services and listeners together. No business logic.

pub mod accounts;
pub mod bench;
pub mod config;
pub mod fields;
pub mod hl7_tool;
pub mod logging;
pub mod seed;
pub mod trail;

pub use config::{Config, Service};

use auth::token::Verifier;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use eventbus::consumer::Consumer;
use eventbus::embedded::EmbeddedLog;
use eventbus::relay::{OutboxRelay, Relay};
use eventbus::{EventSink, EventSource};
use kernel::SystemClock;
use patient::app::PatientService;
use patient::store::SqlPatientStore;
use std::sync::Arc;
use store::{Db, DbError, MigrationSet, StoreConfig};
use tokio::sync::watch;
use web::health::{CheckFuture, Checks, ReadinessCheck};
use web::{Authenticator, Problem};

/// Each database and its migrations: one per service, and the embedded event log.
pub fn services() -> Vec<(&'static str, Vec<MigrationSet>)> {
    vec![
        (patient::SERVICE, patient::migrations().to_vec()),
        (lab::SERVICE, lab::migrations().to_vec()),
        (identity::SERVICE, vec![identity::MIGRATIONS]),
        (audit::SERVICE, audit::migrations().to_vec()),
        (
            eventbus::embedded::DATABASE,
            vec![eventbus::embedded::MIGRATIONS],
        ),
    ]
}

/// A built hub: its router, its background workers, and the databases to close on shutdown.
#[derive(Debug)]
pub struct Hub {
    pub router: Router,
    pub databases: Vec<Db>,
    /// Set when this hub terminates TLS itself.
    tls: Option<Arc<rustls::ServerConfig>>,
    relays: Vec<Box<dyn Relay>>,
    consumers: Vec<Consumer>,
    /// The lab service's HL7 listener, bound.
    mllp: Option<lab::mllp::MllpServer>,
    /// The patient store, which gives back the MRNs it reserved when the hub stops.
    patients: Option<SqlPatientStore>,
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
    #[error("token signing key: {0}")]
    SigningKey(#[from] auth::keys::KeyError),
}

/// Where the databases are, from the configuration.
pub fn store_config(config: &Config) -> StoreConfig {
    StoreConfig {
        data_dir: config.data_dir.clone(),
        database_url: config.database_url.clone(),
        max_connections: config.db_max_connections,
    }
}

/// A client for benchmarks that sends a token of the hub's built-in issuer (whose key is
/// in the hub's data directory) for a clinician who also runs the lab, valid for a day.
pub fn bench_client(config: &Config) -> Result<reqwest::Client, String> {
    let key = accounts::signing_key(config).map_err(|e| e.to_string())?;
    let now = chrono::Utc::now().timestamp();
    let token = key.sign(&auth::token::AccessClaims {
        iss: config.public_url(),
        sub: "bench".to_owned(),
        aud: config.oidc_audience.clone(),
        exp: now + 86_400,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::now_v7().to_string(),
        realm_access: auth::token::RealmAccess {
            roles: [
                "DOCTOR",
                "NURSE",
                "LAB_TECHNICIAN",
                "LAB_SUPERVISOR",
                "HEALTHCARE_ADMIN",
            ]
            .iter()
            .map(|r| (*r).to_owned())
            .collect(),
        },
        tenant_id: config.default_tenant.clone(),
        patient_id: None,
        provider_id: None,
        preferred_username: None,
    });
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| e.to_string())?;
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(512)
        .build()
        .map_err(|e| e.to_string())
}

/// Opens (and migrates) the database of every service: `meditrack migrate`.
pub async fn open_databases(config: &Config) -> Result<Vec<(&'static str, Db)>, StartError> {
    let all: Vec<&'static str> = services().into_iter().map(|(name, _)| name).collect();
    open(config, &all).await
}

/// Opens (and migrates) the databases named.
async fn open(
    config: &Config,
    names: &[&'static str],
) -> Result<Vec<(&'static str, Db)>, StartError> {
    let store_config = store_config(config);
    let mut out = Vec::new();
    for (service, sets) in services()
        .into_iter()
        .filter(|(name, _)| names.contains(name))
    {
        let (db, applied) = store::open(service, &store_config, &sets)
            .await
            .map_err(|source| StartError::Database { service, source })?;
        tracing::info!(service, applied, backend = ?db.backend(), "database ready");
        out.push((service, db));
    }
    Ok(out)
}

/// The audit trail's group-commit writer over `db`, and its retention: entries older than
/// `audit_retention_days` are purged at start and daily.
fn audit_trail(config: &Config, db: Db) -> Arc<dyn kernel::audit::AuditTrail> {
    let store = audit::store::AuditStore::new(db);
    let retention = chrono::Duration::days(i64::from(config.audit_retention_days));
    let purger = store.clone();
    tokio::spawn(async move {
        loop {
            match purger.purge(chrono::Utc::now() - retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(entries = n, "audit entries past retention purged"),
                Err(e) => tracing::error!(error = %e, "audit retention purge failed"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(24 * 3600)).await;
        }
    });
    Arc::new(audit::writer::AuditWriter::spawn(store))
}

pub async fn build(config: &Config) -> Result<Hub, StartError> {
    let metrics = web::metrics::install();
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(
            web::tls::server_config(cert, key)
                .map_err(|e| StartError::Config(format!("TLS: {e}")))?,
        ),
        _ => None,
    };
    let verifier = Arc::new(verifier(config)?);
    let mut router = Router::new();
    let mut databases = Vec::new();
    let mut relays: Vec<Box<dyn Relay>> = Vec::new();
    let mut consumers = Vec::new();
    let mut patients = None;
    let mut checks: Vec<Box<dyn ReadinessCheck>> = Vec::new();
    let mut trail: Option<Arc<dyn kernel::audit::AuditTrail>> = None;
    let mut mllp = None;

    let (runs_patient, runs_lab) = (config.runs(Service::Patient), config.runs(Service::Lab));
    if runs_patient || runs_lab {
        let mut names = vec![audit::SERVICE];
        if runs_patient {
            names.push(patient::SERVICE);
        }
        if runs_lab {
            names.push(lab::SERVICE);
        }
        if config.kafka_brokers.is_none() {
            names.push(eventbus::embedded::DATABASE);
        }
        let opened = open(config, &names).await?;
        let audit_db = database(&opened, audit::SERVICE)?;
        let backbone = backbone(config, &opened).await?;
        // The trail is published on `audit-events` from the trail itself; every process
        // writing the trail shares that database, and each process serving PHI relays it.
        relays.push(Box::new(audit::relay::TrailRelay::new(
            audit_db.clone(),
            backbone.sink.clone(),
        )));
        let trail = trail.get_or_insert_with(|| audit_trail(config, audit_db.clone()));
        router = router.merge(audit::http::router(audit::http::AuditApi {
            store: audit::store::AuditStore::new(audit_db.clone()),
            trail: trail.clone(),
        }));
        if runs_patient {
            let patient_db = database(&opened, patient::SERVICE)?;
            relays.push(Box::new(OutboxRelay::new(
                patient::SERVICE,
                patient_db.clone(),
                backbone.sink.clone(),
            )));
            let store = fields::patient_store(config, patient_db.clone()).await?;
            patients = Some(store.clone());
            let service = Arc::new(PatientService::new(
                store,
                Arc::new(SystemClock),
                trail.clone(),
            ));
            consumers.push(patient::consumers::consumer(
                patient_db,
                service.clone(),
                backbone.source.clone(),
                backbone.sink.clone(),
            ));
            router = router.merge(patient::http::router(service));
        }
        if runs_lab {
            let lab_db = database(&opened, lab::SERVICE)?;
            relays.push(Box::new(OutboxRelay::new(
                lab::SERVICE,
                lab_db.clone(),
                backbone.sink.clone(),
            )));
            consumers.push(lab::consumers::consumer(
                lab_db.clone(),
                backbone.source.clone(),
                backbone.sink.clone(),
            ));
            if let Some(endpoint) = &config.lis_endpoint {
                consumers.push(lab::lis::consumer(
                    lab_db.clone(),
                    backbone.source.clone(),
                    backbone.sink.clone(),
                    lab::lis::LisSettings {
                        endpoint: endpoint.clone(),
                        style: config.lis_message,
                        max_attempts: config.lis_max_attempts,
                        ack_timeout: std::time::Duration::from_secs(30),
                        facility: config.default_tenant.clone(),
                    },
                ));
            }
            if let Some(addr) = config.hl7_listen {
                let tenant = config
                    .hl7_tenant
                    .as_deref()
                    .unwrap_or(&config.default_tenant);
                let tenant = kernel::TenantId::parse(tenant)
                    .map_err(|_| StartError::Config("hl7_tenant is not a tenant id".to_owned()))?;
                let intake = lab::hl7::Intake::new(
                    lab_db.clone(),
                    tenant,
                    config.lab_critical_limits.clone(),
                    Arc::new(SystemClock),
                );
                let limits = lab::mllp::Limits {
                    max_message: config.hl7_max_message_bytes,
                    idle_timeout: std::time::Duration::from_secs(config.hl7_idle_timeout_secs),
                    ..Default::default()
                };
                let server = lab::mllp::MllpServer::bind(addr, intake, limits)
                    .await
                    .map_err(|e| StartError::Config(format!("HL7 listener on {addr}: {e}")))?;
                mllp = Some(server);
            }
            let service = Arc::new(lab::app::LabService::new(
                lab::store::SqlLabStore::new(lab_db),
                Arc::new(SystemClock),
                trail.clone(),
                config.lab_critical_limits.clone(),
            ));
            router = router.merge(lab::http::router(service));
        }
        checks.extend(opened.iter().map(|(service, db)| {
            Box::new(DatabaseCheck {
                service,
                db: db.clone(),
            }) as Box<dyn ReadinessCheck>
        }));
        checks.extend(backbone.check);
        databases.extend(opened.into_iter().map(|(_, db)| db));
    }
    if config.runs(Service::Identity) && config.oidc_issuer.is_none() {
        let opened = open(config, &[identity::SERVICE]).await?;
        let db = database(&opened, identity::SERVICE)?;
        let trail = match &trail {
            Some(t) => t.clone(),
            None => {
                let opened = open(config, &[audit::SERVICE]).await?;
                let db = database(&opened, audit::SERVICE)?;
                databases.push(db.clone());
                audit_trail(config, db)
            }
        };
        let fallback = kernel::TenantId::parse(&config.default_tenant)
            .map_err(|_| StartError::Config("default_tenant is not a tenant id".to_owned()))?;
        let service = accounts::identity_service(config, db)?.with_audit(trail, fallback);
        router = router.merge(identity::http::router(Arc::new(service)));
        checks.extend(opened.iter().map(|(service, db)| {
            Box::new(DatabaseCheck {
                service,
                db: db.clone(),
            }) as Box<dyn ReadinessCheck>
        }));
        databases.extend(opened.into_iter().map(|(_, db)| db));
    }
    if config.runs(Service::Gateway) {
        let upstreams = gateway::Upstreams {
            patient: config.patient_url.clone(),
            lab: config.lab_url.clone(),
        };
        router = router.merge(gateway::router(&upstreams, config.max_body_bytes));
    }

    let router = router
        .merge(web::health::router(Checks::new(checks)))
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
        .layer(from_fn_with_state(
            Arc::new(edge_policy(config, tls.is_some()).await?),
            web::edge::protect,
        ))
        .layer(axum::Extension(Authenticator(verifier)))
        .layer(from_fn(web::request::observe))
        .layer(from_fn_with_state(
            Arc::new(config.trusted_proxies.clone()),
            web::client_ip::resolve,
        ));
    Ok(Hub {
        router,
        databases,
        tls,
        relays,
        consumers,
        mllp,
        patients,
    })
}

/// How access tokens are checked: against the configured OIDC issuer's published keys, or
/// against the built-in issuer's key, which this process then holds itself.
fn verifier(config: &Config) -> Result<Verifier, StartError> {
    if let Some(issuer) = &config.oidc_issuer {
        tracing::info!(issuer, "access tokens from an external OIDC issuer");
        return Ok(Verifier::remote(
            issuer,
            &config.oidc_audience,
            config.oidc_jwks_url.clone(),
        ));
    }
    if !config.runs(Service::Identity) {
        return Err(StartError::Config(
            "this process runs no identity service, so it cannot check the built-in issuer's tokens by itself: set MEDITRACK_OIDC_ISSUER to the issuer's URL (the public URL of the process running `identity`, or a Keycloak realm)".to_owned(),
        ));
    }
    let key = accounts::signing_key(config)?;
    Ok(Verifier::local(
        &config.public_url(),
        &config.oidc_audience,
        &[key],
    ))
}

/// Rate limits, CORS and security headers. Limits apply where this process is the edge (the
/// all-in-one hub, or a gateway); a service behind the gateway sees only the gateway's IP.
async fn edge_policy(config: &Config, tls: bool) -> Result<web::edge::EdgePolicy, StartError> {
    use web::limit::{Limiter, LocalBuckets, Rate, RedisBuckets};
    let rate = |per_second: f64| {
        (per_second > 0.0).then_some(Rate {
            per_second,
            burst: (per_second * 2.0).max(1.0),
        })
    };
    let is_edge = config.services.is_none() || config.runs(Service::Gateway);
    let (per_ip, per_subject) = (
        rate(config.rate_limit_per_ip),
        rate(config.rate_limit_per_subject),
    );
    let limiter = match &config.redis_url {
        _ if !is_edge || (per_ip.is_none() && per_subject.is_none()) => None,
        None => Some(Limiter::Local(LocalBuckets::default())),
        Some(url) => {
            let buckets = RedisBuckets::connect(url, &config.redis_prefix)
                .await
                .map_err(|e| StartError::Config(format!("Redis for rate limits: {e}")))?;
            tracing::info!("rate limits shared through Redis");
            Some(Limiter::Redis(buckets))
        }
    };
    Ok(web::edge::EdgePolicy {
        limiter,
        per_ip,
        per_subject,
        cors_origins: config.cors_allowed_origins.clone(),
        hsts: tls,
    })
}

/// Where events go and come from: Kafka when `kafka_brokers` is set, else the embedded log.
struct Backbone {
    sink: Arc<dyn EventSink>,
    source: Arc<dyn EventSource>,
    check: Option<Box<dyn ReadinessCheck>>,
}

async fn backbone(
    config: &Config,
    databases: &[(&'static str, Db)],
) -> Result<Backbone, StartError> {
    match &config.kafka_brokers {
        None => {
            let log = Arc::new(EmbeddedLog::new(database(
                databases,
                eventbus::embedded::DATABASE,
            )?));
            Ok(Backbone {
                sink: log.clone(),
                source: log,
                check: None,
            })
        }
        Some(_) => kafka_backbone(config).await,
    }
}

/// How this hub reaches Kafka, when `kafka_brokers` is set.
#[cfg(feature = "kafka")]
pub fn kafka_settings(config: &Config) -> Option<eventbus::kafka::KafkaSettings> {
    let brokers = config.kafka_brokers.as_ref()?;
    Some(eventbus::kafka::KafkaSettings {
        brokers: brokers.clone(),
        prefix: config.kafka_prefix.clone(),
        producer: config.kafka_producer_config.clone(),
        instance: Some(config.instance()),
    })
}

#[cfg(feature = "kafka")]
async fn kafka_backbone(config: &Config) -> Result<Backbone, StartError> {
    use eventbus::kafka::{KafkaSink, KafkaSource, ensure_topics};
    let Some(settings) = kafka_settings(config) else {
        return Err(StartError::Config("kafka_brokers is unset".to_owned()));
    };
    let brokers = settings.brokers.clone();
    let fail = |e: eventbus::BusError| StartError::Config(format!("Kafka at {brokers}: {e}"));
    // Missing topics get replication 1 (a development broker); production clusters create
    // theirs first with `meditrack events init-topics --replication 3`.
    ensure_topics(&settings, 1).await.map_err(fail)?;
    tracing::info!(brokers, prefix = settings.prefix, "event backbone: Kafka");
    Ok(Backbone {
        sink: Arc::new(KafkaSink::new(&settings).map_err(fail)?),
        source: Arc::new(KafkaSource::new(&settings)),
        check: Some(Box::new(BrokerCheck {
            brokers: settings.brokers.clone(),
        })),
    })
}

#[cfg(not(feature = "kafka"))]
async fn kafka_backbone(_config: &Config) -> Result<Backbone, StartError> {
    Err(StartError::Config(
        "MEDITRACK_KAFKA_BROKERS is set, but this build has no Kafka support: build with --features kafka".to_owned(),
    ))
}

/// The broker answers on at least one of its addresses.
#[cfg(feature = "kafka")]
struct BrokerCheck {
    brokers: String,
}

#[cfg(feature = "kafka")]
impl ReadinessCheck for BrokerCheck {
    fn name(&self) -> String {
        "event-backbone".to_owned()
    }

    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            for broker in self.brokers.split(',') {
                if tokio::net::TcpStream::connect(broker.trim()).await.is_ok() {
                    return Ok(());
                }
            }
            Err("no broker answers".to_owned())
        })
    }
}

fn database(databases: &[(&'static str, Db)], name: &str) -> Result<Db, StartError> {
    databases
        .iter()
        .find(|(s, _)| *s == name)
        .map(|(_, db)| db.clone())
        .ok_or_else(|| StartError::Config(format!("no {name} database")))
}

impl Hub {
    /// Where the HL7 listener is, when there is one.
    pub fn mllp_addr(&self) -> Option<std::net::SocketAddr> {
        self.mllp.as_ref().and_then(|m| m.local_addr().ok())
    }

    /// Serves until `shutdown` resolves. Then, in order: stop accepting and drain in-flight
    /// requests, let the relays and consumers finish their batch (and commit), close the pools.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = watch::channel(false);
        let mut workers = Vec::new();
        for relay in self.relays {
            let stopped = stopped.clone();
            workers.push(tokio::spawn(async move {
                eventbus::relay::run(relay.as_ref(), stopped).await
            }));
        }
        for consumer in self.consumers {
            workers.push(tokio::spawn(consumer.run(stopped.clone())));
        }
        if let Some(mllp) = self.mllp {
            workers.push(tokio::spawn(mllp.run(stopped.clone())));
        }
        let app = self
            .router
            .into_make_service_with_connect_info::<web::tls::ClientAddr>();
        let served = match self.tls {
            Some(tls) => {
                let listener = web::tls::TlsListener::new(listener, tls)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        let _ = stop.send(true);
        for worker in workers {
            let _ = worker.await;
        }
        if let Some(store) = &self.patients
            && let Err(e) = store.give_back_mrns().await
        {
            // Only a gap in the generated MRNs: nothing is lost.
            tracing::warn!(error = %e, "unused MRNs not given back");
        }
        for db in &self.databases {
            db.close().await;
        }
        served
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
