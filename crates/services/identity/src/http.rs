//! The issuer's endpoints: `POST /auth/token` and `POST /auth/logout` (form-encoded, as
//! OAuth 2.0 has it, or JSON), `GET /.well-known/openid-configuration` and `GET /auth/jwks`.
//! None needs a token. Errors are problem+json that also carry OAuth's `error` and
//! `error_description` members, so both kinds of client understand them.

use crate::app::{GrantError, IdentityService, Tokens};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use web::{Body, Problem};

pub const TOKEN_PATH: &str = "/auth/token";
pub const LOGOUT_PATH: &str = "/auth/logout";
pub const JWKS_PATH: &str = "/auth/jwks";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

pub fn router(service: Arc<IdentityService>) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .route(LOGOUT_PATH, post(logout))
        .route(JWKS_PATH, get(jwks))
        .route(DISCOVERY_PATH, get(discovery))
        .with_state(service)
}

#[derive(Debug, Default, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    #[allow(dead_code)]
    scope: Option<String>,
}

fn oauth_error(status: StatusCode, error: &'static str, detail: &str) -> Problem {
    let code = match error {
        "invalid_request" => "auth.invalid_request",
        "invalid_grant" => "auth.invalid_grant",
        "invalid_client" => "auth.invalid_client",
        "unsupported_grant_type" => "auth.unsupported_grant_type",
        _ => "auth.invalid_request",
    };
    Problem::new(status, code, detail)
        .with_member("error", error)
        .with_member("error_description", detail)
}

fn missing(what: &str) -> Problem {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("{what} is required"),
    )
}

/// A form body (`application/x-www-form-urlencoded`, the OAuth way) or a JSON one.
fn parse<T: for<'de> Deserialize<'de> + Default>(
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<T, Problem> {
    if bytes.is_empty() {
        return Ok(T::default());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bad = || {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded (or JSON) token parameters",
        )
    };
    if content_type.starts_with("application/json") {
        serde_json::from_slice(bytes).map_err(|_| bad())
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes(bytes).map_err(|_| bad())
    } else {
        Err(bad())
    }
}

/// `Authorization: Basic base64(client_id:client_secret)` (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

async fn token(
    State(service): State<Arc<IdentityService>>,
    headers: HeaderMap,
    Body(bytes): Body,
) -> Result<Response, Problem> {
    let request: TokenRequest = parse(&headers, &bytes)?;
    let grant_type = request
        .grant_type
        .as_deref()
        .ok_or_else(|| missing("grant_type"))?;
    let issued = match grant_type {
        "password" => {
            let username = request
                .username
                .as_deref()
                .ok_or_else(|| missing("username"))?;
            let password = request
                .password
                .as_deref()
                .ok_or_else(|| missing("password"))?;
            service.password(username, password).await
        }
        "refresh_token" => {
            let refresh = request
                .refresh_token
                .as_deref()
                .ok_or_else(|| missing("refresh_token"))?;
            service.refresh(refresh).await
        }
        "client_credentials" => {
            let (id, secret) = match (
                basic_credentials(&headers),
                request.client_id,
                request.client_secret,
            ) {
                (Some(basic), _, _) => basic,
                (None, Some(id), Some(secret)) => (id, secret),
                _ => return Err(missing("client_id and client_secret")),
            };
            service.client_credentials(&id, &secret).await
        }
        _ => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be password, refresh_token or client_credentials",
            ));
        }
    };
    match issued {
        Ok(tokens) => Ok(no_store(axum::Json(token_body(&tokens)).into_response())),
        Err(GrantError::InvalidGrant) => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            &GrantError::InvalidGrant.to_string(),
        )),
        Err(GrantError::InvalidClient) => Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            &GrantError::InvalidClient.to_string(),
        )),
        Err(GrantError::Store(e)) => {
            tracing::error!(error = %e, "token endpoint failed");
            Err(Problem::internal())
        }
    }
}

fn token_body(t: &Tokens) -> serde_json::Value {
    let mut body = json!({
        "access_token": t.access_token,
        "token_type": "Bearer",
        "expires_in": t.expires_in,
    });
    if let (Some(refresh), Some(expires)) = (&t.refresh_token, t.refresh_expires_in) {
        body["refresh_token"] = json!(refresh);
        body["refresh_expires_in"] = json!(expires);
    }
    body
}

/// Tokens must not be cached by anything in between (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[derive(Debug, Default, Deserialize)]
struct LogoutRequest {
    refresh_token: Option<String>,
}

/// Ends the session of a refresh token. Always 204, whether or not the token was known
/// (RFC 7009 §2.2), so it cannot be used to test tokens.
async fn logout(
    State(service): State<Arc<IdentityService>>,
    headers: HeaderMap,
    Body(bytes): Body,
) -> Result<StatusCode, Problem> {
    let request: LogoutRequest = parse(&headers, &bytes)?;
    let refresh = request
        .refresh_token
        .as_deref()
        .ok_or_else(|| missing("refresh_token"))?;
    service.logout(refresh).await.map_err(|e| {
        tracing::error!(error = %e, "logout failed");
        Problem::internal()
    })?;
    Ok(StatusCode::NO_CONTENT)
}

async fn jwks(State(service): State<Arc<IdentityService>>) -> Response {
    let body = json!({ "keys": [service.issuer().key.jwk()] });
    let mut response = axum::Json(body).into_response();
    // Verifiers may cache the keys briefly; a new key is found by its unknown `kid`.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

async fn discovery(State(service): State<Arc<IdentityService>>) -> Response {
    let issuer = &service.issuer().url;
    axum::Json(json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "end_session_endpoint": format!("{issuer}{LOGOUT_PATH}"),
        "grant_types_supported": ["password", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "realm_access", "tenant_id", "patient_id", "provider_id", "preferred_username"],
    }))
    .into_response()
}
