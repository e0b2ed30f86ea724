//! HTTPS with a configured certificate: a TLS client that trusts it gets answers with HSTS;
//! plain HTTP on the same port gets nothing.

#![allow(clippy::unwrap_used)]

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::process::Command;
use std::sync::Arc;
use testkit::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for 127.0.0.1, made with the openssl command.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=meditrack-test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // A server certificate, not a CA: webpki refuses a CA as the end entity.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command");
    assert!(status.success());
    (cert, key)
}

async fn https_get(port: u16, cert: &std::path::Path, path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap_or_default();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_hub_speaks_https_only() {
    let dir = std::env::temp_dir().join(format!("meditrack-tls-{}", uuid::Uuid::now_v7()));
    let (cert, key) = certificate(&dir);
    let (c, k) = (cert.clone(), key.clone());
    let app = TestApp::sqlite_with(move |config| {
        config.tls_cert_file = Some(c);
        config.tls_key_file = Some(k);
    })
    .await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();

    let answer = https_get(port, &cert, "/health/live").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age="),
        "{answer}"
    );
    let unauthenticated = https_get(port, &cert, "/api/v1/patients/search").await;
    assert!(
        unauthenticated.starts_with("HTTP/1.1 401"),
        "{unauthenticated}"
    );

    // Plain HTTP to the TLS port is not answered as HTTP.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health/live"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be served");
    let _ = std::fs::remove_dir_all(dir);
}
