//! The built-in issuer's use cases: add accounts, and exchange credentials for tokens
//! (OAuth 2.0 password, refresh-token and client-credentials grants).
//!
//! Lifetimes follow 000 §5.1: access tokens 5 minutes, refresh tokens 30 minutes (each
//! refresh issues a new one, the old one is spent), and a session ends 10 hours after
//! login however often it is refreshed (Keycloak's "SSO Session Max").

use crate::store::{IdentityStore, InsertUserError, NewRefresh, RotateError};
use crate::user::{Kind, NewUser, User};
use auth::keys::SigningKey;
use auth::token::{AccessClaims, RealmAccess};
use chrono::{DateTime, Duration, Utc};
use kernel::audit::{AuditAction, AuditOutcome, AuditRecord, AuditTrail, NoAudit};
use kernel::{Clock, TenantId};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use store::DbError;
use uuid::Uuid;

pub const ACCESS_TTL: Duration = Duration::minutes(5);
pub const REFRESH_TTL: Duration = Duration::minutes(30);
pub const SESSION_MAX: Duration = Duration::hours(10);
pub const LOGINS: &str = "meditrack_logins_total";

/// Who issues: the `iss` and `aud` of every token, and the key that signs them.
#[derive(Debug, Clone)]
pub struct Issuer {
    pub url: String,
    pub audience: String,
    pub key: SigningKey,
}

/// What the token endpoint answers (RFC 6749 §5.1).
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
    pub refresh_expires_in: Option<i64>,
}

/// Why no token was issued, in OAuth's vocabulary (RFC 6749 §5.2).
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// Wrong user name or password, or an unknown, expired, reused or revoked refresh
    /// token. One answer for all, so an attacker learns nothing about which it was.
    #[error("the credentials or refresh token are not valid")]
    InvalidGrant,
    #[error("the client credentials are not valid")]
    InvalidClient,
    #[error(transparent)]
    Store(#[from] DbError),
}

#[derive(Debug, thiserror::Error)]
pub enum AddUserError {
    #[error("{0}")]
    Invalid(String),
    #[error("that user name is taken")]
    UsernameTaken,
    #[error(transparent)]
    Store(#[from] DbError),
}

#[derive(Debug)]
pub struct IdentityService {
    store: IdentityStore,
    issuer: Issuer,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditTrail>,
    /// Where failed logins of unknown accounts are recorded: they have no tenant.
    audit_tenant: Option<TenantId>,
}

impl IdentityService {
    pub fn new(store: IdentityStore, issuer: Issuer, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            issuer,
            clock,
            audit: Arc::new(NoAudit),
            audit_tenant: None,
        }
    }

    /// Records every login, succeeded or failed, in `trail`; failures for names no account
    /// has go under `fallback_tenant`.
    pub fn with_audit(mut self, trail: Arc<dyn AuditTrail>, fallback_tenant: TenantId) -> Self {
        self.audit = trail;
        self.audit_tenant = Some(fallback_tenant);
        self
    }

    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// Adds an account; `password` is the password, or a service account's client secret.
    pub async fn add_user(&self, new: NewUser, password: &str) -> Result<User, AddUserError> {
        auth::password::check_strength(password)
            .map_err(|e| AddUserError::Invalid(e.to_owned()))?;
        let hash = auth::password::hash(password)
            .map_err(|_| AddUserError::Invalid("the password cannot be hashed".to_owned()))?;
        let user = User {
            id: Uuid::now_v7(),
            username: new.username,
            tenant: new.tenant,
            kind: new.kind,
            roles: new.roles,
            patient_id: new.patient_id,
            provider_id: new.provider_id,
            disabled: false,
        };
        self.store
            .insert_user(&user, &hash, self.clock.now())
            .await
            .map_err(|e| match e {
                InsertUserError::UsernameTaken => AddUserError::UsernameTaken,
                InsertUserError::Db(e) => AddUserError::Store(e),
            })?;
        tracing::info!(user_id = %user.id, tenant = %user.tenant, "user added");
        Ok(user)
    }

    pub async fn users(&self, tenant: Option<&TenantId>) -> Result<Vec<User>, DbError> {
        self.store.list(tenant).await
    }

    pub async fn disable(&self, username: &str) -> Result<bool, DbError> {
        self.store.disable(username, self.clock.now()).await
    }

    /// The password grant: a person logs in.
    pub async fn password(&self, username: &str, password: &str) -> Result<Tokens, GrantError> {
        let user = self.check(username, password, Kind::Person).await;
        let Some(user) = user? else {
            return Err(GrantError::InvalidGrant);
        };
        let now = self.clock.now();
        let family = Uuid::now_v7();
        let refresh = auth::random::token();
        self.store
            .insert_refresh(&NewRefresh {
                token_hash: digest(&refresh),
                family,
                user: user.id,
                issued_at: now,
                expires_at: now + REFRESH_TTL,
                session_expires_at: now + SESSION_MAX,
            })
            .await?;
        Ok(self.tokens(&user, now, Some((refresh, now + REFRESH_TTL))))
    }

    /// The client-credentials grant: a service account. No refresh token (RFC 6749 §4.4.3):
    /// it asks again with its secret.
    pub async fn client_credentials(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<Tokens, GrantError> {
        let Some(user) = self.check(client_id, secret, Kind::Service).await? else {
            return Err(GrantError::InvalidClient);
        };
        Ok(self.tokens(&user, self.clock.now(), None))
    }

    /// The refresh-token grant, with rotation: the token presented is spent and a new one
    /// issued; presenting a spent one revokes the whole session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, GrantError> {
        let now = self.clock.now();
        let next = auth::random::token();
        let next_hash = digest(&next);
        let mut next_expiry = now;
        let rotated = self
            .store
            .rotate(
                &digest(refresh_token),
                |family, user, session_end| {
                    next_expiry = (now + REFRESH_TTL).min(session_end);
                    NewRefresh {
                        token_hash: next_hash,
                        family,
                        user,
                        issued_at: now,
                        expires_at: next_expiry,
                        session_expires_at: session_end,
                    }
                },
                now,
            )
            .await;
        let user_id = match rotated {
            Ok((user, _)) => user,
            Err(RotateError::Db(e)) => return Err(e.into()),
            Err(e) => {
                metrics::counter!(LOGINS, "grant" => "refresh_token", "outcome" => "refused")
                    .increment(1);
                tracing::info!(reason = %e, "refresh refused");
                return Err(GrantError::InvalidGrant);
            }
        };
        // A disabled account's sessions are revoked; this catches one disabled meanwhile.
        let Some(user) = self.store.by_id(user_id).await?.filter(|u| !u.disabled) else {
            return Err(GrantError::InvalidGrant);
        };
        Ok(self.tokens(&user, now, Some((next, next_expiry))))
    }

    /// Logout: the session of this refresh token ends. Access tokens already issued stay
    /// valid until they expire (at most 5 minutes), as with any JWT issuer.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), DbError> {
        self.store
            .revoke(&digest(refresh_token), self.clock.now())
            .await
    }

    /// The account, when the secret is right, it is of `kind`, and it is not disabled.
    async fn check(
        &self,
        username: &str,
        secret: &str,
        kind: Kind,
    ) -> Result<Option<User>, DbError> {
        let grant = match kind {
            Kind::Person => "password",
            Kind::Service => "client_credentials",
        };
        let found = self.store.by_username(username).await?;
        let ok = match &found {
            Some(c) => auth::password::verify(secret, &c.password_hash),
            None => {
                auth::password::verify_nothing(secret);
                false
            }
        };
        let found_user = found.map(|c| c.user);
        let user = found_user
            .clone()
            .filter(|u| ok && u.kind == kind && !u.disabled);
        let outcome = if user.is_some() { "success" } else { "failure" };
        metrics::counter!(LOGINS, "grant" => grant, "outcome" => outcome).increment(1);
        match &user {
            Some(u) => tracing::info!(user_id = %u.id, grant, "login succeeded"),
            // The name tried is not logged: people type passwords into user-name fields.
            None => tracing::warn!(grant, "login failed"),
        }
        // A known account's failures go to its tenant, under its id; a name no account has
        // is recorded as "unknown", never as typed, for the reason it is not logged.
        let account = user.as_ref().or(found_user.as_ref());
        let tenant = account
            .map(|u| u.tenant.clone())
            .or(self.audit_tenant.clone());
        if let Some(tenant) = tenant {
            let record = AuditRecord {
                tenant,
                actor: account.map_or_else(|| "unknown".to_owned(), |u| u.id.to_string()),
                roles: account.map(|u| u.roles.clone()).unwrap_or_default(),
                action: AuditAction::Login,
                resource_type: "Session".to_owned(),
                resource_id: None,
                patient_id: None,
                outcome: if user.is_some() {
                    AuditOutcome::Success
                } else {
                    AuditOutcome::Failure
                },
                at: self.clock.now(),
                origin: web::request::origin(),
            };
            let recorded = self.audit.record(vec![record]).await;
            if recorded.is_err() && user.is_some() {
                // A session the trail cannot account for is not opened.
                return Err(DbError::Invariant("the audit trail is unavailable"));
            }
        }
        Ok(user)
    }

    fn tokens(
        &self,
        user: &User,
        now: DateTime<Utc>,
        refresh: Option<(String, DateTime<Utc>)>,
    ) -> Tokens {
        let claims = AccessClaims {
            iss: self.issuer.url.clone(),
            sub: user.id.to_string(),
            aud: self.issuer.audience.clone(),
            exp: (now + ACCESS_TTL).timestamp(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            jti: Uuid::now_v7().to_string(),
            realm_access: RealmAccess {
                roles: user.roles.clone(),
            },
            tenant_id: user.tenant.as_str().to_owned(),
            patient_id: user.patient_id.map(|p| p.to_string()),
            provider_id: user.provider_id.clone(),
            preferred_username: Some(user.username.clone()),
        };
        let (refresh_token, refresh_expires_in) = match refresh {
            Some((token, expires)) => (Some(token), Some((expires - now).num_seconds())),
            None => (None, None),
        };
        Tokens {
            access_token: self.issuer.key.sign(&claims),
            expires_in: ACCESS_TTL.num_seconds(),
            refresh_token,
            refresh_expires_in,
        }
    }
}

/// Refresh tokens are 256 random bits, so SHA-256 without salt or stretching is enough to
/// make the stored value useless to someone who reads the table.
fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
