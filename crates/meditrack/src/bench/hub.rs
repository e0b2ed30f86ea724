//! The hub under test: a `meditrack serve` child process on its own data directory (or
//! database), how long it took to answer ready (cold start), and its memory.

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the hub keeps its data and which backbone it uses.
#[derive(Debug, Clone, Default)]
pub struct HubSettings {
    /// A PostgreSQL database (else SQLite in the data directory).
    pub database_url: Option<String>,
    /// Kafka brokers (else the embedded log).
    pub kafka_brokers: Option<String>,
    /// Where its log goes, at which filter (else only warnings, and nowhere).
    pub log: Option<HubLog>,
}

#[derive(Debug, Clone)]
pub struct HubLog {
    /// A `MEDITRACK_LOG_LEVEL` filter.
    pub filter: String,
    pub file: PathBuf,
}

/// A running hub, killed when dropped.
#[derive(Debug)]
pub struct Hub {
    child: Child,
    pub base: String,
    pub hl7: String,
    /// From the process's start to its first ready answer.
    pub cold_start: Duration,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// Resident now, MB.
    pub rss_mb: f64,
    /// The most resident since start (VmHWM), MB.
    pub peak_rss_mb: f64,
}

pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl Hub {
    pub async fn start(data_dir: &Path, port: u16, s: &HubSettings) -> Result<Hub, String> {
        let hl7 = format!("127.0.0.1:{}", free_port()?);
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = Command::new(exe);
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("MEDITRACK_DATA_DIR", data_dir)
            .env("MEDITRACK_HL7_LISTEN", &hl7)
            .env("MEDITRACK_RATE_LIMIT_PER_IP", "0")
            .env("MEDITRACK_RATE_LIMIT_PER_SUBJECT", "0")
            .env_remove("MEDITRACK_DATABASE_URL")
            .env_remove("MEDITRACK_KAFKA_BROKERS")
            .env_remove("MEDITRACK_KAFKA_PREFIX")
            .stdout(Stdio::null())
            .env("MEDITRACK_LOG_LEVEL", "warn");
        if let Some(log) = &s.log {
            if let Some(dir) = log.file.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let file = std::fs::File::create(&log.file)
                .map_err(|e| format!("{}: {e}", log.file.display()))?;
            command.env("MEDITRACK_LOG_LEVEL", &log.filter).stdout(file);
        }
        if let Some(url) = &s.database_url {
            command.env("MEDITRACK_DATABASE_URL", url);
        }
        if let Some(brokers) = &s.kafka_brokers {
            // Topics and consumer groups of its own: a group left behind by an earlier run
            // would resume from that run's positions (and tansu 0.6 never serves a position
            // inside a stored batch, so such a consumer waits forever: seen here).
            command.env("MEDITRACK_KAFKA_BROKERS", brokers).env(
                "MEDITRACK_KAFKA_PREFIX",
                format!("bench{}.", uuid::Uuid::now_v7().simple()),
            );
        }
        let started = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start the hub: {e}"))?;
        let mut hub = Hub {
            child,
            base: format!("http://127.0.0.1:{port}"),
            hl7,
            cold_start: Duration::ZERO,
        };
        let client = reqwest::Client::new();
        let ready = format!("{}/health/ready", hub.base);
        while client
            .get(&ready)
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            if started.elapsed() > Duration::from_secs(60) {
                return Err("the hub did not become ready within 60 s".to_owned());
            }
            if let Ok(Some(status)) = hub.child.try_wait() {
                return Err(format!("the hub exited at start: {status}"));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        hub.cold_start = started.elapsed();
        Ok(hub)
    }

    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Memory {
            rss_mb: kb("VmRSS:") / 1024.0,
            peak_rss_mb: kb("VmHWM:") / 1024.0,
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
