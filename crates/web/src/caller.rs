//! Who is calling: the principal of the request's bearer token. Every API handler takes a
//! [`Caller`]; a request without a valid token never reaches the handler's body. Routes
//! that need no token (health, metrics, the token endpoint) simply do not take one.

use crate::Problem;
use auth::token::{TokenError, Verifier};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use kernel::Principal;
use std::sync::Arc;

/// The token verifier, installed as a request extension by the composition root.
#[derive(Debug, Clone)]
pub struct Authenticator(pub Arc<Verifier>);

#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        if let Some(known) = parts.extensions.get::<Caller>() {
            return Ok(known.clone());
        }
        // No verifier means the hub was wired wrongly: fail closed.
        let verifier = parts
            .extensions
            .get::<Authenticator>()
            .map(|a| a.0.clone())
            .ok_or_else(Problem::internal)?;
        let token = bearer(parts).ok_or_else(|| rejection(&TokenError::Missing))?;
        let principal = verifier.verify(token).await.map_err(|e| {
            metrics::counter!("meditrack_auth_rejections_total", "code" => e.code()).increment(1);
            rejection(&e)
        })?;
        crate::request::record_subject(&principal.subject);
        let caller = Caller(principal);
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive).
pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn rejection(e: &TokenError) -> Problem {
    let status = match e {
        TokenError::IssuerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNAUTHORIZED,
    };
    Problem::new(status, e.code(), e.to_string())
}
