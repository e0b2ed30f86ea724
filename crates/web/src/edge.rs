//! What the public edge does for every request before a handler sees it (000 §2.2.3):
//! rate limiting per client IP and per token subject (429 with `Retry-After`), CORS for the
//! configured origins only, and security headers on every answer. In split mode only the
//! gateway is the edge; the services behind it learn the client's address from the
//! gateway's `X-Forwarded-For` (`crate::client_ip`).

use crate::limit::{Decision, Limiter, Rate};
use crate::{Authenticator, Caller, Problem};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

#[derive(Debug)]
pub struct EdgePolicy {
    /// `None`: no rate limiting (a service behind the gateway).
    pub limiter: Option<Limiter>,
    /// `None`: unlimited.
    pub per_ip: Option<Rate>,
    pub per_subject: Option<Rate>,
    /// Origins allowed to call from a browser, exactly as browsers send them.
    pub cors_origins: Vec<String>,
    /// Send `Strict-Transport-Security` (when this process terminates TLS).
    pub hsts: bool,
}

const CORS_METHODS: &str = "GET, POST, PUT, DELETE";
const CORS_HEADERS: &str = "authorization, content-type, if-match, idempotency-key, x-request-id";
const CORS_EXPOSED: &str = "etag, location, x-request-id, retry-after, idempotent-replayed";

pub async fn protect(
    State(policy): State<Arc<EdgePolicy>>,
    mut request: Request,
    next: Next,
) -> Response {
    let origin = allowed_origin(&policy, request.headers());
    if request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight(origin.as_ref(), &policy);
    }
    if let Some(limited) = limit(&policy, &mut request).await {
        return finish(limited, origin.as_ref(), &policy);
    }
    let response = next.run(request).await;
    finish(response, origin.as_ref(), &policy)
}

/// The request's `Origin`, when it is one of ours.
fn allowed_origin(policy: &EdgePolicy, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    policy
        .cors_origins
        .iter()
        .any(|o| o == text)
        .then(|| origin.clone())
}

/// A browser asking before a cross-origin call. Unknown origins get no CORS headers, so
/// the browser refuses the call; nothing reaches a handler either way.
fn preflight(origin: Option<&HeaderValue>, policy: &EdgePolicy) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(origin) = origin {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(CORS_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(CORS_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    finish(response, None, policy)
}

/// The 429 to answer, if the client IP or the token's subject is over its rate.
async fn limit(policy: &EdgePolicy, request: &mut Request) -> Option<Response> {
    let limiter = policy.limiter.as_ref()?;
    let path = request.uri().path();
    if path.starts_with("/health") || path == "/metrics" {
        return None;
    }
    if let Some(rate) = policy.per_ip {
        let ip = crate::request::client_ip(request)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        if let Decision::Limited { retry_after } = limiter.check(&format!("ip:{ip}"), rate).await {
            return Some(too_many("ip", retry_after));
        }
    }
    let rate = policy.per_subject?;
    let caller = authenticate(request).await?;
    let key = format!("sub:{}:{}", caller.0.tenant, caller.0.subject);
    match limiter.check(&key, rate).await {
        Decision::Limited { retry_after } => Some(too_many("subject", retry_after)),
        Decision::Allowed => None,
    }
}

/// The caller of a request with a valid bearer token, kept on the request so the handler's
/// `Caller` does not verify it again. Invalid tokens are left for the handler to refuse.
async fn authenticate(request: &mut Request) -> Option<Caller> {
    let verifier = request.extensions().get::<Authenticator>()?.0.clone();
    let (mut parts, body) = std::mem::take(request).into_parts();
    let token = crate::caller::bearer(&parts).map(str::to_owned);
    let caller = match token {
        Some(token) => verifier.verify(&token).await.ok().map(Caller),
        None => None,
    };
    if let Some(c) = &caller {
        parts.extensions.insert(c.clone());
    }
    *request = Request::from_parts(parts, body);
    caller
}

fn too_many(by: &'static str, retry_after: std::time::Duration) -> Response {
    metrics::counter!("meditrack_rate_limited_total", "by" => by).increment(1);
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "request.rate_limited",
        format!("too many requests; retry in {seconds} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Security headers on every answer, and CORS headers for allowed origins.
fn finish(mut response: Response, origin: Option<&HeaderValue>, policy: &EdgePolicy) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    // Answers hold PHI: no shared or browser cache may keep them, unless a route says so.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if policy.hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(CORS_EXPOSED),
        );
    }
    if !policy.cors_origins.is_empty() {
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}
