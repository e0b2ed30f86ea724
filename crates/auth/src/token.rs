//! Access-token validation: one path for every issuer, Keycloak or the built-in one.
//!
//! A token is accepted when it is a JWS signed with RS256 or ES256 by a key the issuer
//! publishes (chosen by `kid`), its `iss` and `aud` are ours, and it is inside its
//! `nbf`..`exp` window (30 s leeway for clock skew). `alg: none`, HMAC algorithms and any
//! other algorithm are refused before a key is looked at. Keys are cached: the issuer's
//! JWKS is fetched on first use and again only for a `kid` not seen before (at most once
//! every 10 s, so a flood of made-up `kid`s cannot flood the issuer), never per request.
//!
//! Verified tokens are remembered (see [`Verified`]): checking an ES256 signature was a
//! quarter of the hub's CPU under a read load, and a client sends one token many times.

use crate::keys::SigningKey;
use jsonwebtoken::errors::ErrorKind as JwtError;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use kernel::role::SUPERVISOR_ROLE;
use kernel::{Principal, Role, TenantId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

pub const LEEWAY_SECONDS: u64 = 30;
const REFRESH_COOLDOWN: Duration = Duration::from_secs(10);
const ACCEPTED: [Algorithm; 2] = [Algorithm::ES256, Algorithm::RS256];

/// The claims MediTrack reads, as 000 §5.1 lays them out (Keycloak's shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub realm_access: RealmAccess,
    pub tenant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RealmAccess {
    #[serde(default)]
    pub roles: Vec<String>,
}

/// What is read from a token from any issuer; `aud` and times are checked by the library.
#[derive(Debug, Deserialize)]
struct Incoming {
    sub: String,
    exp: i64,
    #[serde(default)]
    realm_access: RealmAccess,
    tenant_id: Option<String>,
    patient_id: Option<String>,
    provider_id: Option<String>,
}

/// Why a request's credentials were not accepted. Texts name the rule, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("send an access token: Authorization: Bearer <token>")]
    Missing,
    #[error("the access token has expired; get a new one")]
    Expired,
    #[error("the access token is not valid: {0}")]
    Invalid(&'static str),
    #[error("the token issuer's keys cannot be fetched; try again shortly")]
    IssuerUnavailable,
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "auth.token_missing",
            TokenError::Expired => "auth.token_expired",
            TokenError::Invalid(_) => "auth.token_invalid",
            TokenError::IssuerUnavailable => "auth.issuer_unavailable",
        }
    }
}

/// Where keys come from when a `kid` is not known yet.
#[derive(Debug)]
struct Remote {
    client: reqwest::Client,
    /// Set, or found through the issuer's discovery document on first use.
    jwks_url: tokio::sync::Mutex<Option<String>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// Tokens whose signature and claims verified, by their SHA-256, with the caller they
/// stand for and their `exp`. A hit still checks `exp`; an entry is trusted for at most
/// [`Verified::TTL`], so a key the issuer withdraws stops being honoured within that; the
/// table is emptied when full rather than grown.
#[derive(Debug, Default)]
struct Verified(std::sync::Mutex<HashMap<[u8; 32], (Principal, i64, Instant)>>);

impl Verified {
    const TTL: Duration = Duration::from_secs(60);
    const CAPACITY: usize = 10_000;

    fn digest(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    fn get(&self, digest: &[u8; 32]) -> Option<Result<Principal, TokenError>> {
        let table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (principal, exp, at) = table.get(digest)?;
        if at.elapsed() > Self::TTL {
            return None;
        }
        Some(if unix_now() > exp.saturating_add(LEEWAY_SECONDS as i64) {
            Err(TokenError::Expired)
        } else {
            Ok(principal.clone())
        })
    }

    fn put(&self, digest: [u8; 32], principal: &Principal, exp: i64) {
        let mut table = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= Self::CAPACITY {
            table.clear();
        }
        table.insert(digest, (principal.clone(), exp, Instant::now()));
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[derive(Debug)]
pub struct Verifier {
    issuer: String,
    audience: String,
    keys: RwLock<HashMap<String, (Algorithm, DecodingKey)>>,
    remote: Option<Remote>,
    refresh_cooldown: Duration,
    verified: Verified,
}

impl Verifier {
    /// For tokens of an OIDC issuer (`iss`), keys from `jwks_url` or, when unset, from the
    /// `jwks_uri` of `{iss}/.well-known/openid-configuration`.
    pub fn remote(issuer: &str, audience: &str, jwks_url: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: RwLock::default(),
            remote: Some(Remote {
                client,
                jwks_url: tokio::sync::Mutex::new(jwks_url),
                last_fetch: tokio::sync::Mutex::new(None),
            }),
            refresh_cooldown: REFRESH_COOLDOWN,
            verified: Verified::default(),
        }
    }

    /// How soon the keys may be fetched again for an unknown `kid` (10 s unless set).
    pub fn with_refresh_cooldown(mut self, cooldown: Duration) -> Self {
        self.refresh_cooldown = cooldown;
        self
    }

    /// For tokens of the built-in issuer in this process: its keys are known, nothing is fetched.
    pub fn local(issuer: &str, audience: &str, keys: &[SigningKey]) -> Self {
        let keys = keys
            .iter()
            .map(|k| (k.kid().to_owned(), (Algorithm::ES256, k.decoding().clone())))
            .collect();
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            keys: RwLock::new(keys),
            remote: None,
            refresh_cooldown: REFRESH_COOLDOWN,
            verified: Verified::default(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The caller a bearer token stands for.
    pub async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let digest = Verified::digest(token);
        if let Some(known) = self.verified.get(&digest) {
            return known;
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Invalid("it is not a signed JWT"))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(TokenError::Invalid(
                "its algorithm is not accepted (RS256, ES256)",
            ));
        }
        let kid = header.kid.unwrap_or_default();
        let (alg, key) = match self.key(&kid) {
            Some(found) => found,
            None => {
                self.refresh().await?;
                self.key(&kid)
                    .ok_or(TokenError::Invalid("it is signed by an unknown key"))?
            }
        };
        if alg != header.alg {
            return Err(TokenError::Invalid("its algorithm does not match its key"));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<Incoming>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    JwtError::ExpiredSignature => TokenError::Expired,
                    JwtError::ImmatureSignature => TokenError::Invalid("it is not valid yet (nbf)"),
                    JwtError::InvalidIssuer => TokenError::Invalid("it is from another issuer"),
                    JwtError::InvalidAudience => TokenError::Invalid("it is for another audience"),
                    JwtError::InvalidSignature => {
                        TokenError::Invalid("its signature does not verify")
                    }
                    JwtError::MissingRequiredClaim(_) => {
                        TokenError::Invalid("it lacks a required claim (exp, iss, aud, sub)")
                    }
                    _ => TokenError::Invalid("it cannot be decoded"),
                }
            })?;
        let exp = data.claims.exp;
        let principal = principal(data.claims)?;
        self.verified.put(digest, &principal, exp);
        Ok(principal)
    }

    fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        match keys.get(kid) {
            Some(found) => Some(found.clone()),
            // A token without `kid` is accepted only from an issuer with a single key.
            None if kid.is_empty() && keys.len() == 1 => keys.values().next().cloned(),
            None => None,
        }
    }

    /// Fetches the issuer's keys again, unless that was done in the last 10 s.
    async fn refresh(&self) -> Result<(), TokenError> {
        let Some(remote) = &self.remote else {
            return Ok(());
        };
        let mut last = remote.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.refresh_cooldown) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let url = {
            let mut url = remote.jwks_url.lock().await;
            if url.is_none() {
                *url = Some(self.discover(&remote.client).await?);
            }
            url.clone().unwrap_or_default()
        };
        let jwks: serde_json::Value = fetch_json(&remote.client, &url).await?;
        let keys = parse_jwks(&jwks);
        tracing::info!(keys = keys.len(), "token issuer keys fetched");
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(())
    }

    async fn discover(&self, client: &reqwest::Client) -> Result<String, TokenError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let doc = fetch_json(client, &url).await?;
        doc.get("jwks_uri")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or(TokenError::IssuerUnavailable)
    }
}

async fn fetch_json(client: &reqwest::Client, url: &str) -> Result<serde_json::Value, TokenError> {
    let answer = client.get(url).send().await.map_err(|e| {
        tracing::warn!(url, error = %e, "token issuer unreachable");
        TokenError::IssuerUnavailable
    })?;
    if !answer.status().is_success() {
        tracing::warn!(url, status = %answer.status(), "token issuer refused");
        return Err(TokenError::IssuerUnavailable);
    }
    answer
        .json()
        .await
        .map_err(|_| TokenError::IssuerUnavailable)
}

/// The signature keys of a JWKS. Keys for encryption (Keycloak publishes an RSA-OAEP one),
/// of other curves or of unknown types are left out rather than failing the whole set.
pub fn parse_jwks(jwks: &serde_json::Value) -> HashMap<String, (Algorithm, DecodingKey)> {
    let mut out = HashMap::new();
    let keys = jwks.get("keys").and_then(|k| k.as_array());
    for key in keys.into_iter().flatten() {
        let field = |name: &str| key.get(name).and_then(|v| v.as_str());
        if field("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let found = match (field("kty"), field("alg")) {
            (Some("EC"), None | Some("ES256")) if field("crv") == Some("P-256") => {
                match (field("x"), field("y")) {
                    (Some(x), Some(y)) => DecodingKey::from_ec_components(x, y)
                        .ok()
                        .map(|k| (Algorithm::ES256, k)),
                    _ => None,
                }
            }
            (Some("RSA"), None | Some("RS256")) => match (field("n"), field("e")) {
                (Some(n), Some(e)) => DecodingKey::from_rsa_components(n, e)
                    .ok()
                    .map(|k| (Algorithm::RS256, k)),
                _ => None,
            },
            _ => None,
        };
        if let Some(found) = found {
            out.insert(field("kid").unwrap_or_default().to_owned(), found);
        }
    }
    out
}

fn principal(claims: Incoming) -> Result<Principal, TokenError> {
    let tenant = claims
        .tenant_id
        .as_deref()
        .ok_or(TokenError::Invalid("it has no tenant_id claim"))
        .and_then(|t| {
            TenantId::parse(t).map_err(|_| TokenError::Invalid("its tenant_id is malformed"))
        })?;
    let patient = match claims.patient_id.as_deref() {
        None => None,
        Some(id) => Some(
            uuid::Uuid::parse_str(id)
                .map_err(|_| TokenError::Invalid("its patient_id is not a patient id"))?,
        ),
    };
    let names = &claims.realm_access.roles;
    let mut roles: Vec<Role> = names.iter().filter_map(|n| Role::parse(n)).collect();
    roles.sort();
    roles.dedup();
    Ok(Principal {
        subject: claims.sub,
        tenant,
        supervisor: names.iter().any(|n| n == SUPERVISOR_ROLE),
        roles,
        patient,
        provider: claims.provider_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn someone() -> Principal {
        principal(Incoming {
            sub: "u1".to_owned(),
            exp: 0,
            realm_access: RealmAccess {
                roles: vec!["DOCTOR".to_owned()],
            },
            tenant_id: Some("clinic-a".to_owned()),
            patient_id: None,
            provider_id: None,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let verified = Verified::default();
        let (fresh, stale) = (Verified::digest("a"), Verified::digest("b"));
        verified.put(fresh, &someone(), unix_now() + 60);
        verified.put(stale, &someone(), unix_now() - LEEWAY_SECONDS as i64 - 1);
        assert!(matches!(verified.get(&fresh), Some(Ok(p)) if p.subject == "u1"));
        assert_eq!(
            verified.get(&stale).map(|r| r.err()),
            Some(Some(TokenError::Expired))
        );
        assert!(
            verified.get(&Verified::digest("c")).is_none(),
            "never seen: verify it"
        );
    }

    #[test]
    fn the_table_is_emptied_not_grown_when_full() {
        let verified = Verified::default();
        for i in 0..Verified::CAPACITY + 1 {
            verified.put(
                Verified::digest(&i.to_string()),
                &someone(),
                unix_now() + 60,
            );
        }
        let table = verified.0.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(table.len(), 1);
    }
}
