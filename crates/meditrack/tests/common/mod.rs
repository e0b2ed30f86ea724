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
        // These tests send bursts on purpose (edge.rs tests the limits).
        .env("MEDITRACK_RATE_LIMIT_PER_IP", "0")
        .env("MEDITRACK_RATE_LIMIT_PER_SUBJECT", "0")
        // Side by side: each its own HL7 port, not the default 2575.
        .env("MEDITRACK_HL7_LISTEN", "127.0.0.1:0")
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

pub const TEST_PASSWORD: &str = "synthetic-password-1234";

/// What a new operator does: `meditrack users add` (in `dir`, with `env`), then a
/// password login at `base`. Returns a client that sends the access token, and the token.
pub async fn logged_in(
    dir: &Path,
    env: &[(&str, &str)],
    base: &str,
    roles: &str,
) -> (reqwest::Client, String) {
    use std::io::Write;
    let username = format!("user{}", free_port());
    let mut command = Command::new(BIN);
    command
        .args(["users", "add", "--username", &username, "--role", roles])
        .args(["--tenant", "default", "--password-stdin"])
        .current_dir(dir)
        .env_remove("MEDITRACK_DATABASE_URL")
        .env_remove("MEDITRACK_KAFKA_BROKERS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{TEST_PASSWORD}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "users add: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer = reqwest::Client::new()
        .post(format!("{base}/auth/token"))
        .json(&serde_json::json!({"grant_type": "password", "username": username, "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    (testkit::client_with(&token), token)
}

/// Split mode in `root`: the patient service alone (`root/patient`), and the gateway with
/// the built-in issuer (`root/gateway`), whose tokens the patient service checks with the
/// keys the issuer publishes.
pub struct Split {
    pub patient: Process,
    pub gateway: Process,
    pub patient_port: u16,
    pub gateway_port: u16,
}

pub async fn split(root: &Path, patient_env: &[(&str, &str)]) -> Split {
    let (patient_port, gateway_port) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{gateway_port}");
    let mut env = patient_env.to_vec();
    env.push(("MEDITRACK_OIDC_ISSUER", &issuer));
    let patient = serve(
        &root.join("patient"),
        patient_port,
        &["--services", "patient"],
        &env,
    )
    .await;
    let upstream = format!("http://127.0.0.1:{patient_port}");
    let gateway = serve(
        &root.join("gateway"),
        gateway_port,
        &["--services", "gateway,identity"],
        &[("MEDITRACK_PATIENT_URL", &upstream)],
    )
    .await;
    Split {
        patient,
        gateway,
        patient_port,
        gateway_port,
    }
}
