//! Configuration: built-in defaults, then `meditrack.toml` (optional), then `MEDITRACK_*`
//! environment variables, then command-line flags. The defaults run the embedded hub.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// `host:port,…` of a Kafka-protocol cluster; unset: the embedded event log.
    pub kafka_brokers: Option<String>,
    /// Prepended to every Kafka topic and consumer-group name, so that several hubs
    /// (environments, test runs) can share one cluster.
    pub kafka_prefix: String,
    /// librdkafka producer properties over ours, `key=value,…` in the environment.
    pub kafka_producer_config: Vec<(String, String)>,
    /// This process's stable name in its Kafka consumer groups; unset: `host-port`.
    pub instance_id: Option<String>,
    /// The services this process runs (`patient`, `gateway`); unset: the all-in-one hub.
    pub services: Option<Vec<Service>>,
    /// Where the gateway finds the patient service.
    pub patient_url: String,
    /// Where the gateway finds the lab service.
    pub lab_url: String,
    /// Critical limits per LOINC code beyond the instruments' own HH/LL flags
    /// (`2345-7:40:450;2823-3:2.8:6.2`, in the units the results come in).
    pub lab_critical_limits: lab::domain::CriticalLimits,
    /// The laboratory's LIS (`host:port`, MLLP): new lab orders are sent there. Unset: none.
    pub lis_endpoint: Option<String>,
    /// `orm` (ORM^O01, v2.3.1) or `oml` (OML^O21, v2.5.1).
    pub lis_message: hl7v2::build::OrderStyle,
    /// Attempts to deliver an order before it is dead-lettered.
    pub lis_max_attempts: u32,
    /// Where the lab service takes HL7 v2 over MLLP; `None` (`off`): no listener.
    pub hl7_listen: Option<SocketAddr>,
    /// The tenant whose data HL7 messages are (MLLP carries no credentials); unset: the
    /// default tenant.
    pub hl7_tenant: Option<String>,
    /// The largest HL7 message taken, in bytes; a larger one is answered AR.
    pub hl7_max_message_bytes: usize,
    /// An MLLP connection silent for this many seconds is closed.
    pub hl7_idle_timeout_secs: u64,
    /// Where clients reach this hub: the built-in issuer's `iss` and the base of its URLs.
    /// Unset: `http://` and the listen address.
    pub public_url: Option<String>,
    /// The OIDC issuer whose tokens are accepted (e.g. a Keycloak realm). Unset: the
    /// built-in issuer of this hub.
    pub oidc_issuer: Option<String>,
    /// The `aud` tokens must carry.
    pub oidc_audience: String,
    /// The issuer's JWKS; unset: found through its discovery document.
    pub oidc_jwks_url: Option<String>,
    /// Requests per second per client IP at the edge (burst: twice that); 0: unlimited.
    pub rate_limit_per_ip: f64,
    /// Requests per second per token subject at the edge (burst: twice that); 0: unlimited.
    pub rate_limit_per_subject: f64,
    /// Redis for limits shared by several gateway instances; unset: in-process limits.
    pub redis_url: Option<String>,
    /// Prepended to this hub's Redis keys.
    pub redis_prefix: String,
    /// Proxies whose `X-Forwarded-For` names the client (the gateway, a reverse proxy);
    /// from anyone else the header is ignored. Default: loopback.
    pub trusted_proxies: web::client_ip::TrustedProxies,
    /// Browser origins allowed to call the API (CORS), e.g. `https://portal.example`.
    pub cors_allowed_origins: Vec<String>,
    /// PEM certificate chain and private key: serve HTTPS (rustls). Both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The field-encryption keyring (`auth::sealing`); unset: `<data_dir>/keys/field-keyring`,
    /// made on first start.
    pub keyring_file: Option<PathBuf>,
    /// The keyring's text itself (entries separated by `;`), for secrets given through the
    /// environment; it takes precedence over the file, and a rotation then means a restart.
    pub keyring: Option<kernel::Sensitive<String>>,
    /// How long audit entries are kept (000 §11.2: 7 years).
    pub audit_retention_days: u32,
    pub log_format: LogFormat,
    pub log_level: String,
    /// The tenant `meditrack users add` puts accounts in when `--tenant` is not given.
    pub default_tenant: String,
    pub max_body_bytes: usize,
    pub db_max_connections: u32,
}

/// What one process of the split deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Patient,
    Lab,
    Gateway,
    /// The built-in token issuer.
    Identity,
}

impl Service {
    pub const ALL: [(&'static str, Service); 4] = [
        ("patient", Service::Patient),
        ("lab", Service::Lab),
        ("gateway", Service::Gateway),
        ("identity", Service::Identity),
    ];
}

/// `patient,gateway` → the services; an unknown name is an error naming the known ones.
pub fn parse_services(list: &str) -> Result<Vec<Service>, ConfigError> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let service = Service::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "unknown service '{name}'; known: {}",
                    Service::ALL.map(|(n, _)| n).join(", ")
                ))
            })?;
        if !out.contains(&service) {
            out.push(service);
        }
    }
    if out.is_empty() {
        return Err(ConfigError::Invalid(
            "services: name at least one service".to_owned(),
        ));
    }
    Ok(out)
}

/// `key=value,key=value` → the pairs; a pair without `=` is an error naming it.
pub fn parse_properties(list: &str) -> Result<Vec<(String, String)>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(ConfigError::Invalid(format!(
                "kafka_producer_config: '{pair}' is not key=value"
            ))),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            kafka_brokers: None,
            kafka_prefix: String::new(),
            kafka_producer_config: Vec::new(),
            instance_id: None,
            services: None,
            patient_url: "http://127.0.0.1:8081".to_owned(),
            lab_url: "http://127.0.0.1:8082".to_owned(),
            lab_critical_limits: lab::domain::CriticalLimits::default(),
            hl7_listen: Some(SocketAddr::from(([127, 0, 0, 1], 2575))),
            hl7_tenant: None,
            hl7_max_message_bytes: 1024 * 1024,
            hl7_idle_timeout_secs: 300,
            lis_endpoint: None,
            lis_message: hl7v2::build::OrderStyle::OrmO01,
            lis_max_attempts: 10,
            public_url: None,
            oidc_issuer: None,
            oidc_audience: "meditrack-api".to_owned(),
            oidc_jwks_url: None,
            rate_limit_per_ip: 1000.0,
            rate_limit_per_subject: 500.0,
            redis_url: None,
            redis_prefix: "meditrack:".to_owned(),
            trusted_proxies: web::client_ip::TrustedProxies(
                ["127.0.0.0/8", "::1"]
                    .iter()
                    .filter_map(|b| b.parse().ok())
                    .collect(),
            ),
            cors_allowed_origins: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            keyring_file: None,
            keyring: None,
            audit_retention_days: 2557,
            log_format: LogFormat::Json,
            log_level: "info".to_owned(),
            default_tenant: "default".to_owned(),
            max_body_bytes: 1024 * 1024,
            db_max_connections: 10,
        }
    }
}

/// The same keys in the file and, upper-cased with a `MEDITRACK_` prefix, in the environment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    kafka_brokers: Option<String>,
    kafka_prefix: Option<String>,
    kafka_producer_config: Option<String>,
    instance_id: Option<String>,
    services: Option<String>,
    patient_url: Option<String>,
    lab_url: Option<String>,
    lab_critical_limits: Option<String>,
    hl7_listen: Option<String>,
    hl7_tenant: Option<String>,
    hl7_max_message_bytes: Option<usize>,
    hl7_idle_timeout_secs: Option<u64>,
    lis_endpoint: Option<String>,
    lis_message: Option<String>,
    lis_max_attempts: Option<u32>,
    public_url: Option<String>,
    oidc_issuer: Option<String>,
    oidc_audience: Option<String>,
    oidc_jwks_url: Option<String>,
    rate_limit_per_ip: Option<f64>,
    rate_limit_per_subject: Option<f64>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
    cors_allowed_origins: Option<String>,
    trusted_proxies: Option<String>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    keyring_file: Option<PathBuf>,
    keyring: Option<String>,
    audit_retention_days: Option<u32>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    default_tenant: Option<String>,
    max_body_bytes: Option<usize>,
    db_max_connections: Option<u32>,
}

pub const ENV_KEYS: [&str; 38] = [
    "listen",
    "data_dir",
    "database_url",
    "kafka_brokers",
    "kafka_prefix",
    "kafka_producer_config",
    "instance_id",
    "services",
    "patient_url",
    "lab_url",
    "lab_critical_limits",
    "hl7_listen",
    "hl7_tenant",
    "hl7_max_message_bytes",
    "hl7_idle_timeout_secs",
    "lis_endpoint",
    "lis_message",
    "lis_max_attempts",
    "public_url",
    "oidc_issuer",
    "oidc_audience",
    "oidc_jwks_url",
    "rate_limit_per_ip",
    "rate_limit_per_subject",
    "redis_url",
    "redis_prefix",
    "cors_allowed_origins",
    "trusted_proxies",
    "tls_cert_file",
    "tls_key_file",
    "keyring_file",
    "keyring",
    "audit_retention_days",
    "log_format",
    "log_level",
    "default_tenant",
    "max_body_bytes",
    "db_max_connections",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("MEDITRACK_{key}: {message}")]
    Env { key: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Loads `file` (or `./meditrack.toml` when present) and the environment over the defaults.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Config::default();
        let default_file = Path::new("meditrack.toml");
        let file = file.or_else(|| default_file.exists().then_some(default_file));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let layer: Layer = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                message: e.message().to_owned(),
            })?;
            config.apply(layer)?;
        }
        let mut layer = Layer::default();
        for key in ENV_KEYS {
            let name = format!("MEDITRACK_{}", key.to_ascii_uppercase());
            let Some(value) = env(&name).filter(|v| !v.is_empty()) else {
                continue;
            };
            let err = |message: String| ConfigError::Env {
                key: key.to_ascii_uppercase(),
                message,
            };
            match key {
                "listen" => {
                    layer.listen = Some(value.parse().map_err(|_| {
                        err(format!("'{value}' is not an address like 127.0.0.1:8080"))
                    })?)
                }
                "data_dir" => layer.data_dir = Some(value.into()),
                "database_url" => layer.database_url = Some(value),
                "kafka_brokers" => layer.kafka_brokers = Some(value),
                "kafka_prefix" => layer.kafka_prefix = Some(value),
                "kafka_producer_config" => layer.kafka_producer_config = Some(value),
                "instance_id" => layer.instance_id = Some(value),
                "services" => layer.services = Some(value),
                "patient_url" => layer.patient_url = Some(value),
                "lab_url" => layer.lab_url = Some(value),
                "lab_critical_limits" => layer.lab_critical_limits = Some(value),
                "hl7_listen" => layer.hl7_listen = Some(value),
                "hl7_tenant" => layer.hl7_tenant = Some(value),
                "hl7_max_message_bytes" => {
                    layer.hl7_max_message_bytes = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| err("must be a number of bytes".to_owned()))?,
                    )
                }
                "hl7_idle_timeout_secs" => {
                    layer.hl7_idle_timeout_secs = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| err("must be a number of seconds".to_owned()))?,
                    )
                }
                "lis_endpoint" => layer.lis_endpoint = Some(value),
                "lis_message" => layer.lis_message = Some(value),
                "lis_max_attempts" => {
                    layer.lis_max_attempts = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| err("must be a number of attempts".to_owned()))?,
                    )
                }
                "public_url" => layer.public_url = Some(value),
                "oidc_issuer" => layer.oidc_issuer = Some(value),
                "oidc_audience" => layer.oidc_audience = Some(value),
                "oidc_jwks_url" => layer.oidc_jwks_url = Some(value),
                "rate_limit_per_ip" | "rate_limit_per_subject" => {
                    let rate: f64 = value
                        .parse()
                        .ok()
                        .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                        .ok_or_else(|| {
                            err("must be requests per second (0: unlimited)".to_owned())
                        })?;
                    if key == "rate_limit_per_ip" {
                        layer.rate_limit_per_ip = Some(rate);
                    } else {
                        layer.rate_limit_per_subject = Some(rate);
                    }
                }
                "redis_url" => layer.redis_url = Some(value),
                "redis_prefix" => layer.redis_prefix = Some(value),
                "cors_allowed_origins" => layer.cors_allowed_origins = Some(value),
                "trusted_proxies" => layer.trusted_proxies = Some(value),
                "tls_cert_file" => layer.tls_cert_file = Some(value.into()),
                "tls_key_file" => layer.tls_key_file = Some(value.into()),
                "keyring_file" => layer.keyring_file = Some(value.into()),
                "keyring" => layer.keyring = Some(value),
                "audit_retention_days" => {
                    layer.audit_retention_days = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|d| *d > 0)
                            .ok_or_else(|| err("must be a number of days".to_owned()))?,
                    )
                }
                "log_format" => {
                    layer.log_format = Some(match value.as_str() {
                        "json" => LogFormat::Json,
                        "text" => LogFormat::Text,
                        _ => return Err(err("must be json or text".to_owned())),
                    })
                }
                "log_level" => layer.log_level = Some(value),
                "default_tenant" => layer.default_tenant = Some(value),
                "max_body_bytes" => {
                    layer.max_body_bytes = Some(
                        value
                            .parse()
                            .map_err(|_| err("must be a number of bytes".to_owned()))?,
                    )
                }
                "db_max_connections" => {
                    layer.db_max_connections = Some(
                        value
                            .parse()
                            .map_err(|_| err("must be a number".to_owned()))?,
                    )
                }
                _ => {}
            }
        }
        config.apply(layer)?;
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, l: Layer) -> Result<(), ConfigError> {
        if let Some(v) = l.listen {
            self.listen = v;
        }
        if let Some(v) = l.data_dir {
            self.data_dir = v;
        }
        if let Some(v) = l.database_url {
            self.database_url = Some(v);
        }
        if let Some(v) = l.kafka_brokers {
            self.kafka_brokers = Some(v);
        }
        if let Some(v) = l.kafka_prefix {
            self.kafka_prefix = v;
        }
        if let Some(v) = l.kafka_producer_config {
            self.kafka_producer_config = parse_properties(&v)?;
        }
        if let Some(v) = l.instance_id {
            self.instance_id = Some(v);
        }
        if let Some(v) = l.services {
            self.services = Some(parse_services(&v)?);
        }
        if let Some(v) = l.patient_url {
            self.patient_url = v;
        }
        if let Some(v) = l.lab_url {
            self.lab_url = v;
        }
        if let Some(v) = l.hl7_listen {
            self.hl7_listen = match v.trim() {
                "" | "off" => None,
                addr => Some(addr.parse().map_err(|_| {
                    ConfigError::Invalid(format!("hl7_listen: {addr:?} is not host:port (or off)"))
                })?),
            };
        }
        if let Some(v) = l.hl7_tenant {
            self.hl7_tenant = Some(v);
        }
        if let Some(v) = l.hl7_max_message_bytes {
            self.hl7_max_message_bytes = v;
        }
        if let Some(v) = l.hl7_idle_timeout_secs {
            self.hl7_idle_timeout_secs = v;
        }
        if let Some(v) = l.lis_endpoint {
            self.lis_endpoint = Some(v).filter(|e| !e.trim().is_empty());
        }
        if let Some(v) = l.lis_message {
            self.lis_message = match v.trim().to_ascii_lowercase().as_str() {
                "orm" => hl7v2::build::OrderStyle::OrmO01,
                "oml" => hl7v2::build::OrderStyle::OmlO21,
                _ => return Err(ConfigError::Invalid("lis_message: orm or oml".to_owned())),
            };
        }
        if let Some(v) = l.lis_max_attempts {
            self.lis_max_attempts = v;
        }
        if let Some(v) = l.lab_critical_limits {
            self.lab_critical_limits = lab::domain::CriticalLimits::parse(&v)
                .map_err(|e| ConfigError::Invalid(format!("lab_critical_limits: {e}")))?;
        }
        if let Some(v) = l.public_url {
            self.public_url = Some(v.trim_end_matches('/').to_owned());
        }
        if let Some(v) = l.oidc_issuer {
            self.oidc_issuer = Some(v);
        }
        if let Some(v) = l.oidc_audience {
            self.oidc_audience = v;
        }
        if let Some(v) = l.oidc_jwks_url {
            self.oidc_jwks_url = Some(v);
        }
        if let Some(v) = l.rate_limit_per_ip {
            self.rate_limit_per_ip = v;
        }
        if let Some(v) = l.rate_limit_per_subject {
            self.rate_limit_per_subject = v;
        }
        if let Some(v) = l.redis_url {
            self.redis_url = Some(v);
        }
        if let Some(v) = l.redis_prefix {
            self.redis_prefix = v;
        }
        if let Some(v) = l.cors_allowed_origins {
            self.cors_allowed_origins = v
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect();
        }
        if let Some(v) = l.trusted_proxies {
            self.trusted_proxies = web::client_ip::TrustedProxies(
                v.split(',')
                    .map(str::trim)
                    .filter(|b| !b.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e: web::client_ip::BadIpBlock| {
                        ConfigError::Invalid(format!("trusted_proxies: {e}"))
                    })?,
            );
        }
        if let Some(v) = l.tls_cert_file {
            self.tls_cert_file = Some(v);
        }
        if let Some(v) = l.tls_key_file {
            self.tls_key_file = Some(v);
        }
        if let Some(v) = l.keyring_file {
            self.keyring_file = Some(v);
        }
        if let Some(v) = l.keyring {
            self.keyring = Some(kernel::Sensitive::new(v));
        }
        if let Some(v) = l.audit_retention_days {
            self.audit_retention_days = v;
        }
        if let Some(v) = l.log_format {
            self.log_format = v;
        }
        if let Some(v) = l.log_level {
            self.log_level = v;
        }
        if let Some(v) = l.default_tenant {
            self.default_tenant = v;
        }
        if let Some(v) = l.max_body_bytes {
            self.max_body_bytes = v;
        }
        if let Some(v) = l.db_max_connections {
            self.db_max_connections = v;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(
                "database_url must be a postgres:// URL (leave it unset for the embedded store)"
                    .to_owned(),
            ));
        }
        if !self
            .kafka_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ConfigError::Invalid(
                "kafka_prefix may hold only letters, digits, '.', '_' and '-' (Kafka topic names)"
                    .to_owned(),
            ));
        }
        kernel::TenantId::parse(&self.default_tenant)
            .map_err(|e| ConfigError::Invalid(format!("default_tenant: {e}")))?;
        if !(self.rate_limit_per_ip >= 0.0 && self.rate_limit_per_subject >= 0.0) {
            return Err(ConfigError::Invalid(
                "rate limits are requests per second, 0 or more".to_owned(),
            ));
        }
        if let Some(origin) = self
            .cors_allowed_origins
            .iter()
            .find(|o| !(o.starts_with("https://") || o.starts_with("http://")))
        {
            return Err(ConfigError::Invalid(format!(
                "cors_allowed_origins: '{origin}' is not an origin like https://portal.example"
            )));
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert_file and tls_key_file go together: set both, or neither".to_owned(),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".to_owned(),
            ));
        }
        Ok(())
    }

    /// Where clients reach this hub; the built-in issuer's `iss`.
    /// Where the field-encryption keyring is kept.
    pub fn keyring_path(&self) -> PathBuf {
        self.keyring_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys").join("field-keyring"))
    }

    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            let mut at = self.listen;
            if at.ip().is_unspecified() {
                at.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{at}")
        })
    }

    /// Whether this process runs `service`: the all-in-one hub runs every service but the
    /// gateway (its routes are served directly).
    pub fn runs(&self, service: Service) -> bool {
        match &self.services {
            None => service != Service::Gateway,
            Some(list) => list.contains(&service),
        }
    }

    /// This process's name among the members of its consumer groups: `instance_id`, or the
    /// host name and listening port, which stay the same when the process restarts and
    /// differ between processes.
    pub fn instance(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "meditrack".to_owned());
            format!("{host}-{}", self.listen.port())
        })
    }

    /// The database URL with its password hidden, for logs and `meditrack config`.
    pub fn database_url_redacted(&self) -> Option<String> {
        self.database_url.as_deref().map(redact_password)
    }
}

/// `scheme://user:***@host…`: a URL fit to print.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_run_the_embedded_hub_on_8080() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, None);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("meditrack-config-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("meditrack.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nlog_format = \"text\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[("MEDITRACK_LISTEN", "0.0.0.0:9100")])).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9100");
        assert_eq!(c.log_format, LogFormat::Text);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        let e = Config::load(None, env(&[("MEDITRACK_LISTEN", "nowhere")])).unwrap_err();
        assert!(e.to_string().starts_with("MEDITRACK_LISTEN"), "{e}");
        let e = Config::load(None, env(&[("MEDITRACK_DATABASE_URL", "mysql://x")])).unwrap_err();
        assert!(e.to_string().contains("postgres://"), "{e}");
    }

    #[test]
    fn kafka_settings_are_checked() {
        let c = Config::load(
            None,
            env(&[
                ("MEDITRACK_KAFKA_PREFIX", "staging."),
                (
                    "MEDITRACK_KAFKA_PRODUCER_CONFIG",
                    "batch.num.messages=1, linger.ms = 10",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.kafka_prefix, "staging.");
        assert_eq!(
            c.kafka_producer_config,
            vec![
                ("batch.num.messages".to_owned(), "1".to_owned()),
                ("linger.ms".to_owned(), "10".to_owned())
            ]
        );
        let e = Config::load(None, env(&[("MEDITRACK_KAFKA_PREFIX", "a/b")])).unwrap_err();
        assert!(e.to_string().contains("kafka_prefix"), "{e}");
        let e =
            Config::load(None, env(&[("MEDITRACK_KAFKA_PRODUCER_CONFIG", "acks")])).unwrap_err();
        assert!(e.to_string().contains("'acks' is not key=value"), "{e}");
    }

    #[test]
    fn services_are_known_names() {
        assert_eq!(
            parse_services("patient, gateway,patient").unwrap(),
            vec![Service::Patient, Service::Gateway]
        );
        assert!(
            parse_services("patient,billing")
                .unwrap_err()
                .to_string()
                .contains("known: patient, lab, gateway, identity")
        );
        let all_in_one = Config::default();
        assert!(all_in_one.runs(Service::Patient) && !all_in_one.runs(Service::Gateway));
        assert!(all_in_one.runs(Service::Identity) && all_in_one.runs(Service::Lab));
        let c = Config::load(None, env(&[("MEDITRACK_SERVICES", "gateway")])).unwrap();
        assert!(c.runs(Service::Gateway) && !c.runs(Service::Patient));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_password("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
    }

    fn uuid_like() -> String {
        format!(
            "{:?}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }
}
