//! Running the `meditrack` executable in tests: free ports, readiness, and processes that
//! die with the test even when it fails.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_meditrack");

/// A new directory under the system's temporary one, named after the test.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "meditrack-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `meditrack serve`; killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    pub fn kill_9(mut self) {
        let pid = self.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-9", &pid])
                .status()
                .unwrap()
                .success()
        );
        let _ = self.0.wait();
    }
}

/// `meditrack serve <args>` in `dir` on `port`, once `/health/ready` answers 200.
fn log_file(dir: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("meditrack.log"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

pub async fn serve(dir: &Path, port: u16, args: &[&str], env: &[(&str, &str)]) -> Process {
    std::fs::create_dir_all(dir).unwrap();
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .current_dir(dir)
        .env_remove("MEDITRACK_DATABASE_URL")
        .env_remove("MEDITRACK_KAFKA_BROKERS")
        .env("MEDITRACK_LOG_LEVEL", "warn")
        // Kept beside the data (and removed with it when the test passes) for diagnosis.
        .stdout(log_file(dir));
    for (k, v) in env {
        command.env(k, v);
    }
    let process = Process(command.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://127.0.0.1:{port}/health/ready"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "meditrack serve {args:?} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process
}

/// The environment of a hub on the Kafka test broker, under `prefix`, on PostgreSQL at
/// `database_url` when given.
pub fn kafka_env(
    brokers: &str,
    prefix: &str,
    database_url: Option<&str>,
) -> Vec<(&'static str, String)> {
    let producer: Vec<String> = testkit::TEST_BROKER_PRODUCER_CONFIG
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut env = vec![
        ("MEDITRACK_KAFKA_BROKERS", brokers.to_owned()),
        ("MEDITRACK_KAFKA_PREFIX", prefix.to_owned()),
        ("MEDITRACK_KAFKA_PRODUCER_CONFIG", producer.join(",")),
    ];
    if let Some(url) = database_url {
        env.push(("MEDITRACK_DATABASE_URL", url.to_owned()));
    }
    env
}
