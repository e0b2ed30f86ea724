//! Per-request plumbing: the request id (honoured from `x-request-id` or generated, echoed
//! back, in every log line and problem), one log line per request, and the HTTP metrics.
//!
//! Paths are logged and labelled by their route template (`/api/v1/patients/{id}`), never
//! as requested: a path can hold an SSN (`/{ssn}/order-labs`), and query strings hold
//! search terms. Neither is ever logged.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
    static CLIENT_IP: Option<String>;
}

/// Where the request this task is serving came from: its id and the client's address,
/// for the audit trail.
pub fn origin() -> kernel::audit::Origin {
    kernel::audit::Origin {
        request_id: current_request_id(),
        source_ip: CLIENT_IP.try_with(Clone::clone).ok().flatten(),
    }
}

/// The client's address: as resolved through trusted proxies ([`crate::client_ip`]), else
/// the connection's peer.
pub fn client_ip(request: &Request) -> Option<std::net::IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<crate::client_ip::ClientIp>()
        .map(|c| c.0)
        .or_else(|| {
            extensions
                .get::<axum::extract::ConnectInfo<crate::tls::ClientAddr>>()
                .map(|c| c.0.0.ip())
        })
}

/// The correlation id of the events this request causes: its request id when that is one
/// (a UUID), else a new one.
pub fn correlation_id() -> kernel::ids::CorrelationId {
    current_request_id()
        .and_then(|id| id.parse().ok())
        .unwrap_or_default()
}

/// The id of the request this task is serving, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Puts the authenticated subject (an issuer's user id, not PHI) on the request's log line.
pub fn record_subject(subject: &str) {
    tracing::Span::current().record("subject", subject);
}

/// A caller-supplied id is kept when it is short and printable, so it can be logged safely.
fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The route template the router matched, carried out to the outer middleware.
#[derive(Debug, Clone)]
struct Route(String);

/// Must be installed with `route_layer`, where the matched path is known.
pub async fn capture_route(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.map(|m| m.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(Route(route));
    }
    response
}

/// The outermost middleware: request id, request span and log, metrics.
pub async fn observe(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = request.method().clone();
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, route = tracing::field::Empty, subject = tracing::field::Empty);
    let started = Instant::now();

    let client_ip = client_ip(&request).map(|ip| ip.to_string());
    let mut response = REQUEST_ID
        .scope(
            request_id.clone(),
            CLIENT_IP.scope(client_ip, next.run(request).instrument(span.clone())),
        )
        .await;

    let elapsed = started.elapsed();
    let route = response
        .extensions()
        .get::<Route>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16();
    span.record("route", route.as_str());
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request completed"
        );
    });
    crate::metrics::record_request(method.as_str(), &route, status, elapsed);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_printable_request_ids_are_honoured() {
        assert!(acceptable("abc-123"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable(&"x".repeat(129)));
    }
}
