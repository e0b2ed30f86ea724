//! `TestApp`: the whole hub on a free port over a fresh database, for API tests over real
//! HTTP. SQLite gets a new data directory; PostgreSQL a new database cloned from a migrated
//! template (`CREATE DATABASE … TEMPLATE …`), so each test is isolated and starts fast.
//!
//! PostgreSQL comes from `MEDITRACK_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it is unreachable the PostgreSQL
//! tests are skipped with a message, except under `CI=true`, where that is a failure.

mod database;
mod logs;

pub use database::{TestDatabase, postgres_server};
pub use logs::captured_logs;

use meditrack::Config;
use meditrack::config::LogFormat;
use serde_json::Value;
use store::Db;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TEST_TENANT: &str = "test-tenant";

/// The roles of the token `TestApp::client` sends: a clinician who is also an
/// administrator, so tests about something else can do everything patients need.
pub const TEST_ROLES: &[&str] = &["DOCTOR", "HEALTHCARE_ADMIN"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug)]
pub struct TestApp {
    pub address: String,
    /// Sends a token for [`TEST_ROLES`] in [`TEST_TENANT`] with every request.
    pub client: reqwest::Client,
    pub backend: Backend,
    /// The hub's HL7 (MLLP) listener; it moves when the hub restarts.
    pub mllp: Option<std::net::SocketAddr>,
    config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    // Dropped last: removes the data directory or drops the database.
    _database: TestDatabase,
}

impl TestApp {
    pub async fn sqlite() -> TestApp {
        Self::start(TestDatabase::sqlite(), None).await
    }

    /// On SQLite, with `change` applied to the test configuration first (rate limits are
    /// off unless a test turns them on).
    pub async fn sqlite_with(change: impl FnOnce(&mut Config)) -> TestApp {
        Self::start_with(TestDatabase::sqlite(), None, change).await
    }

    /// On SQLite, with events over the Kafka-protocol broker at `brokers`, under topic and
    /// group names of its own ([`TestApp::kafka_prefix`]).
    pub async fn sqlite_with_kafka(brokers: &str) -> TestApp {
        Self::start(TestDatabase::sqlite(), Some(brokers.to_owned())).await
    }

    /// What this hub's Kafka topic and consumer-group names start with.
    pub fn kafka_prefix(&self) -> &str {
        &self.config.kafka_prefix
    }

    /// `None` (after saying why) when PostgreSQL is unreachable outside CI.
    pub async fn postgres() -> Option<TestApp> {
        Some(Self::start(TestDatabase::postgres().await?, None).await)
    }

    /// A hub on PostgreSQL with its configuration changed by `change`.
    pub async fn postgres_with(change: impl FnOnce(&mut Config)) -> Option<TestApp> {
        Some(Self::start_with(TestDatabase::postgres().await?, None, change).await)
    }

    async fn start(database: TestDatabase, kafka_brokers: Option<String>) -> TestApp {
        Self::start_with(database, kafka_brokers, |_| {}).await
    }

    async fn start_with(
        database: TestDatabase,
        kafka_brokers: Option<String>,
        change: impl FnOnce(&mut Config),
    ) -> TestApp {
        logs::install();
        let mut config = Config {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir: database.data_dir(),
            database_url: database.url(),
            kafka_prefix: kafka_brokers
                .as_ref()
                .map(|_| kafka_prefix())
                .unwrap_or_default(),
            kafka_producer_config: TEST_BROKER_PRODUCER_CONFIG
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            kafka_brokers,
            log_format: LogFormat::Json,
            log_level: "info".to_owned(),
            default_tenant: TEST_TENANT.to_owned(),
            max_body_bytes: 64 * 1024,
            db_max_connections: 5,
            // Tests send bursts on purpose; the rate-limit tests turn limits on.
            rate_limit_per_ip: 0.0,
            rate_limit_per_subject: 0.0,
            // Each test hub its own HL7 port.
            hl7_listen: Some(([127, 0, 0, 1], 0).into()),
            ..Config::default()
        };
        change(&mut config);
        let backend = if config.database_url.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let mut app = TestApp {
            address: String::new(),
            client: reqwest::Client::new(),
            backend,
            config,
            shutdown: None,
            server: None,
            mllp: None,
            _database: database,
        };
        app.client = app.client_with(&app.token(TEST_ROLES, TEST_TENANT, None));
        app.launch().await;
        app
    }

    /// An access token from this hub's built-in issuer, valid for an hour, for a user with
    /// these realm `roles` in `tenant` (and, for PATIENT users, this patient record).
    pub fn token(&self, roles: &[&str], tenant: &str, patient: Option<&str>) -> String {
        let key = meditrack::accounts::signing_key(&self.config).expect("the signing key");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        key.sign(&auth::token::AccessClaims {
            iss: self.config.public_url(),
            sub: format!("test-user-{}", uuid::Uuid::now_v7()),
            aud: self.config.oidc_audience.clone(),
            exp: now + 3600,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::now_v7().to_string(),
            realm_access: auth::token::RealmAccess {
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            },
            tenant_id: tenant.to_owned(),
            patient_id: patient.map(str::to_owned),
            provider_id: None,
            preferred_username: None,
        })
    }

    /// A client that sends `token` with every request.
    pub fn client_with(&self, token: &str) -> reqwest::Client {
        client_with(token)
    }

    /// The configuration this hub runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    async fn launch(&mut self) {
        let hub = meditrack::build(&self.config)
            .await
            .expect("the hub starts");
        self.mllp = hub.mllp_addr();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        self.address = format!("http://{}", listener.local_addr().expect("bound"));
        let (tx, rx) = oneshot::channel::<()>();
        self.shutdown = Some(tx);
        self.server = Some(tokio::spawn(hub.serve(listener, async {
            let _ = rx.await;
        })));
    }

    /// Stops the hub gracefully and starts it again on the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A separate connection to `service`'s database, to look at what was stored.
    pub async fn db(&self, service: &str) -> Db {
        let store = store::StoreConfig {
            data_dir: self.config.data_dir.clone(),
            database_url: self.config.database_url.clone(),
            max_connections: 2,
        };
        Db::connect(service, &store).await.expect("test database")
    }

    /// A connection to `service`'s database as the hub's pools make it: on PostgreSQL as
    /// the application role, which row-level security applies to (`db` connects as the
    /// owner, which it does not).
    pub async fn app_db(&self, service: &str) -> Db {
        let store = store::StoreConfig {
            data_dir: self.config.data_dir.clone(),
            database_url: self.config.database_url.clone(),
            max_connections: 2,
        };
        Db::connect_as_app(service, &store)
            .await
            .expect("test database")
    }

    /// The hub's field-encryption keys, to open what it sealed.
    pub fn field_cipher(&self) -> std::sync::Arc<auth::sealing::FieldCipher> {
        std::sync::Arc::new(meditrack::fields::cipher(&self.config).expect("the keyring"))
    }

    /// The hub's embedded event log, to publish as another service would or to look at it.
    pub async fn event_log(&self) -> eventbus::embedded::EmbeddedLog {
        eventbus::embedded::EmbeddedLog::new(self.db(eventbus::embedded::DATABASE).await)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn put_json(
        &self,
        path: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.put(self.url(path)).json(body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send().await.expect("request sent")
    }

    pub async fn delete(&self, path: &str, if_match: Option<&str>) -> reqwest::Response {
        let mut request = self.client.delete(self.url(path));
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send().await.expect("request sent")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The Kafka-protocol broker for tests (`MEDITRACK_TEST_KAFKA_BROKERS`, default
/// 127.0.0.1:9092). `None` after saying why when none answers, except under `CI=true`,
/// where a missing broker fails the test.
pub fn kafka_brokers() -> Option<String> {
    let brokers = std::env::var("MEDITRACK_TEST_KAFKA_BROKERS")
        .unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let timeout = std::time::Duration::from_secs(1);
    let reachable = brokers.split(',').any(|b| {
        b.trim()
            .parse()
            .ok()
            .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, timeout).is_ok())
    });
    if reachable {
        return Some(brokers);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "a Kafka-protocol broker is required in CI (CI=true) but {brokers} is not reachable"
        );
    }
    eprintln!(
        "skipping a Kafka test: no broker at {brokers} (set MEDITRACK_TEST_KAFKA_BROKERS or start tansu)"
    );
    None
}

/// A client that sends the bearer `token` with every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a client")
}

/// The Redis for tests (`MEDITRACK_TEST_REDIS_URL`, default redis://127.0.0.1:6379). `None`
/// after saying why when it does not answer, except under `CI=true`, where that fails.
pub fn redis_url() -> Option<String> {
    let url = std::env::var("MEDITRACK_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let address = url
        .trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let reachable = address.parse().ok().is_some_and(|addr| {
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_ok()
    });
    if reachable {
        return Some(url);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("Redis is required in CI (CI=true) but {url} is not reachable");
    }
    eprintln!("skipping a Redis test: nothing answers at {url} (set MEDITRACK_TEST_REDIS_URL)");
    None
}

/// A fresh prefix for Kafka topic and group names, so tests sharing one broker never read
/// each other's events.
pub fn kafka_prefix() -> String {
    format!("t{}.", uuid::Uuid::now_v7().simple())
}

/// Producer properties for the tansu test broker. tansu 0.6 serves a fetch only from the
/// first record of a stored batch (its dynostore `fetch` keeps the batches whose base offset
/// is at or after the one asked for), so a position committed inside a multi-record batch
/// would never be served again, and a consumer restarted there would wait forever. One
/// record per batch makes every position a batch start. Real Kafka returns the batch that
/// holds the position and needs none of this.
pub const TEST_BROKER_PRODUCER_CONFIG: &[(&str, &str)] = &[("batch.num.messages", "1")];

/// Polls `check` until it yields a value, for effects that happen in the background (events).
/// Never a fixed sleep: a test waits only as long as it must, and fails after 15 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Status and JSON body of a response.
pub async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// Runs each listed `async fn name(app: TestApp)` twice: on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::TestApp::sqlite().await).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::TestApp::postgres().await {
                        super::$name(app).await
                    }
                }
            )+
        }
    };
}

/// Runs each named `async fn(TestDatabase)` on a SQLite and on a PostgreSQL test database
/// (the latter skipped, outside CI, when no server answers), for tests below the hub.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::TestDatabase::sqlite()).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(db) = $crate::TestDatabase::postgres().await {
                        super::$name(db).await
                    }
                }
            )+
        }
    };
}

/// A sink that holds each batch until it is let go: a broker slow to acknowledge. A test
/// waits for `arrived`, does what must not wait for the sink, then adds a permit to
/// `release` per batch to let go.
#[derive(Debug)]
pub struct HeldSink {
    pub arrived: tokio::sync::Notify,
    pub release: tokio::sync::Semaphore,
}

impl HeldSink {
    pub fn new() -> Self {
        Self {
            arrived: tokio::sync::Notify::new(),
            release: tokio::sync::Semaphore::new(0),
        }
    }
}

impl Default for HeldSink {
    fn default() -> Self {
        Self::new()
    }
}

impl eventbus::EventSink for HeldSink {
    fn publish<'a>(
        &'a self,
        _records: &'a [eventbus::Record],
    ) -> eventbus::BoxFuture<'a, Result<(), eventbus::BusError>> {
        Box::pin(async move {
            self.arrived.notify_one();
            self.release
                .acquire()
                .await
                .map_err(|e| eventbus::BusError::Broker(e.to_string()))?
                .forget();
            Ok(())
        })
    }
}
