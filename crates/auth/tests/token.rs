//! Access-token validation as a client would meet it: good tokens pass and become a
//! principal; expired, wrongly signed, foreign, `alg: none` and HMAC-confused tokens fail
//! with the reason; an issuer's keys are fetched once and again only for a new `kid`.

#![allow(clippy::unwrap_used)]

use auth::keys::SigningKey;
use auth::token::{AccessClaims, RealmAccess, TokenError, Verifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kernel::Role;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISSUER: &str = "https://issuer.example.test/realms/meditrack";
const AUDIENCE: &str = "meditrack-api";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(roles: &[&str]) -> AccessClaims {
    AccessClaims {
        iss: ISSUER.to_owned(),
        sub: "user-1".to_owned(),
        aud: AUDIENCE.to_owned(),
        exp: now() + 300,
        iat: now(),
        nbf: now(),
        jti: "jti-1".to_owned(),
        realm_access: RealmAccess {
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        },
        tenant_id: "hospital-001".to_owned(),
        patient_id: None,
        provider_id: Some("DOC-1".to_owned()),
        preferred_username: None,
    }
}

fn local(key: &SigningKey) -> Verifier {
    Verifier::local(ISSUER, AUDIENCE, std::slice::from_ref(key))
}

#[tokio::test]
async fn a_good_token_becomes_the_caller_it_names() {
    let key = SigningKey::generate();
    let mut c = claims(&[
        "DOCTOR",
        "offline_access",
        "LAB_TECHNICIAN",
        "LAB_SUPERVISOR",
    ]);
    c.patient_id = Some("0190a000-0000-7000-8000-000000000001".to_owned());
    let p = local(&key).verify(&key.sign(&c)).await.unwrap();
    assert_eq!(p.subject, "user-1");
    assert_eq!(p.tenant.as_str(), "hospital-001");
    assert_eq!(p.roles, vec![Role::Doctor, Role::LabTechnician]);
    assert!(p.supervisor);
    assert_eq!(p.provider.as_deref(), Some("DOC-1"));
    assert!(p.patient.is_some());
}

#[tokio::test]
async fn expired_early_foreign_and_incomplete_tokens_are_refused_with_the_reason() {
    let key = SigningKey::generate();
    let verifier = local(&key);
    let check = |c: AccessClaims| {
        let token = key.sign(&c);
        let verifier = &verifier;
        async move { verifier.verify(&token).await.unwrap_err() }
    };
    let mut c = claims(&["DOCTOR"]);
    c.exp = now() - 60;
    assert_eq!(check(c).await, TokenError::Expired);
    let mut c = claims(&["DOCTOR"]);
    c.exp = now() - 10;
    c.iat = now() - 310;
    c.nbf = now() - 310;
    // Within the 30 s leeway for clock skew.
    assert!(verifier.verify(&key.sign(&c)).await.is_ok());
    let mut c = claims(&["DOCTOR"]);
    c.nbf = now() + 600;
    assert_eq!(check(c).await.code(), "auth.token_invalid");
    let mut c = claims(&["DOCTOR"]);
    c.aud = "another-api".to_owned();
    assert_eq!(
        check(c).await,
        TokenError::Invalid("it is for another audience")
    );
    let mut c = claims(&["DOCTOR"]);
    c.iss = "https://evil.example.test".to_owned();
    assert_eq!(
        check(c).await,
        TokenError::Invalid("it is from another issuer")
    );
    let mut c = claims(&["DOCTOR"]);
    c.tenant_id = String::new();
    assert_eq!(check(c).await.code(), "auth.token_invalid");
    let mut c = claims(&["PATIENT"]);
    c.patient_id = Some("not-a-uuid".to_owned());
    assert_eq!(check(c).await.code(), "auth.token_invalid");
}

#[tokio::test]
async fn a_token_signed_by_another_key_under_our_kid_fails_its_signature() {
    let ours = SigningKey::generate();
    let theirs = SigningKey::generate();
    let forged = theirs.sign(&claims(&["HEALTHCARE_ADMIN"]));
    // Put our kid in their header: the signature must still be checked with our key.
    let mut parts: Vec<String> = forged.split('.').map(str::to_owned).collect();
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": ours.kid()});
    parts[0] = URL_SAFE_NO_PAD.encode(header.to_string());
    let err = local(&ours).verify(&parts.join(".")).await.unwrap_err();
    assert_eq!(err, TokenError::Invalid("its signature does not verify"));
    let err = local(&ours).verify(&forged).await.unwrap_err();
    assert_eq!(err, TokenError::Invalid("it is signed by an unknown key"));
}

#[tokio::test]
async fn alg_none_and_hmac_tokens_are_refused_before_any_key_is_used() {
    let key = SigningKey::generate();
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&["DOCTOR"])).unwrap());
    for alg in ["none", "HS256", "ES384"] {
        let header =
            URL_SAFE_NO_PAD.encode(json!({"alg": alg, "typ": "JWT", "kid": key.kid()}).to_string());
        // HS256 "signed" with the public key: the classic algorithm-confusion attack.
        let token = format!("{header}.{body}.{}", URL_SAFE_NO_PAD.encode(b"sig"));
        let err = local(&key).verify(&token).await.unwrap_err();
        assert_eq!(err.code(), "auth.token_invalid", "{alg}");
        let unsigned = format!("{header}.{body}.");
        assert!(local(&key).verify(&unsigned).await.is_err(), "{alg}");
    }
    assert_eq!(
        local(&key).verify("garbage").await.unwrap_err(),
        TokenError::Invalid("it is not a signed JWT")
    );
}

/// A tiny OIDC issuer on a real socket: a discovery document and a JWKS that can change.
struct FakeIssuer {
    url: String,
    jwks: Arc<Mutex<serde_json::Value>>,
    jwks_fetches: Arc<AtomicUsize>,
}

async fn fake_issuer(keys: &[&SigningKey]) -> FakeIssuer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let jwks = Arc::new(Mutex::new(jwks_of(keys)));
    let jwks_fetches = Arc::new(AtomicUsize::new(0));
    let (served, fetches, base) = (jwks.clone(), jwks_fetches.clone(), url.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let body = if request.starts_with("GET /.well-known/openid-configuration") {
                json!({"issuer": base, "jwks_uri": format!("{base}/certs")}).to_string()
            } else {
                fetches.fetch_add(1, Ordering::SeqCst);
                served.lock().unwrap().to_string()
            };
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    FakeIssuer {
        url,
        jwks,
        jwks_fetches,
    }
}

fn jwks_of(keys: &[&SigningKey]) -> serde_json::Value {
    // Keycloak also publishes an encryption key; it must be ignored, not break the set.
    let mut all: Vec<serde_json::Value> = keys.iter().map(|k| k.jwk().clone()).collect();
    all.push(json!({"kid": "enc-1", "kty": "RSA", "alg": "RSA-OAEP", "use": "enc", "n": "AQAB", "e": "AQAB"}));
    json!({ "keys": all })
}

fn issued_by(issuer: &FakeIssuer, key: &SigningKey) -> String {
    let mut c = claims(&["NURSE"]);
    c.iss = issuer.url.clone();
    key.sign(&c)
}

#[tokio::test]
async fn keys_are_discovered_once_and_fetched_again_only_for_an_unknown_kid() {
    let first = SigningKey::generate();
    let issuer = fake_issuer(&[&first]).await;
    let verifier = Verifier::remote(&issuer.url, AUDIENCE, None)
        .with_refresh_cooldown(Duration::from_millis(200));
    for _ in 0..5 {
        verifier.verify(&issued_by(&issuer, &first)).await.unwrap();
    }
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 1, "cached");

    // The issuer rotates its key: a token with the new kid makes the verifier look again.
    let second = SigningKey::generate();
    *issuer.jwks.lock().unwrap() = jwks_of(&[&first, &second]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    verifier.verify(&issued_by(&issuer, &second)).await.unwrap();
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 2);

    // Made-up kids cost at most one fetch per cooldown.
    let stranger = SigningKey::generate();
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..10 {
        let err = verifier
            .verify(&issued_by(&issuer, &stranger))
            .await
            .unwrap_err();
        assert_eq!(err, TokenError::Invalid("it is signed by an unknown key"));
    }
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_unreachable_issuer_is_unavailable_not_a_bad_token() {
    let key = SigningKey::generate();
    let verifier = Verifier::remote("http://127.0.0.1:9", AUDIENCE, None);
    let mut c = claims(&["NURSE"]);
    c.iss = "http://127.0.0.1:9".to_owned();
    let err = verifier.verify(&key.sign(&c)).await.unwrap_err();
    assert_eq!(err, TokenError::IssuerUnavailable);
}
