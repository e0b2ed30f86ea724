//! The API gateway of the split deployment (000 §2.2.3): one public address that routes each
//! API prefix to the process serving it. Requests keep their method, path, query, headers
//! and body; the request id travels along, so one request reads as one story in every log.
//! In the all-in-one hub there is no gateway: the services' routes are served directly.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use std::time::Duration;
use web::Problem;

/// Where each API prefix is served.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// The patient service, e.g. `http://127.0.0.1:8081`.
    pub patient: String,
    /// The lab service, e.g. `http://127.0.0.1:8082`.
    pub lab: String,
}

#[derive(Debug, Clone)]
struct Route {
    upstream: String,
    client: reqwest::Client,
    max_body: usize,
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1), and `host`.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

pub fn router(upstreams: &Upstreams, max_body: usize) -> Router {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    let route = |upstream: &str| Route {
        upstream: upstream.trim_end_matches('/').to_owned(),
        client: client.clone(),
        max_body,
    };
    let patient = Router::new()
        .route("/api/v1/patients", any(forward))
        .route("/api/v1/patients/{*rest}", any(forward))
        .with_state(route(&upstreams.patient));
    let lab = Router::new()
        .route("/api/v1/lab/{*rest}", any(forward))
        .with_state(route(&upstreams.lab));
    patient.merge(lab)
}

async fn forward(State(route): State<Route>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", route.upstream);
    let Ok(body) = to_bytes(body, route.max_body).await else {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.body_too_large",
            "the body is larger than this server accepts",
        )
        .into_response();
    };
    let mut upstream = route.client.request(parts.method.clone(), &url).body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str())
            && name.as_str() != web::request::REQUEST_ID_HEADER
            && name.as_str() != web::client_ip::FORWARDED_FOR
        {
            upstream = upstream.header(name, value);
        }
    }
    // The client as this edge resolved it (through proxies it trusts), for the service's
    // audit trail; whatever the caller wrote in the header itself is not passed on.
    if let Some(web::client_ip::ClientIp(ip)) = parts.extensions.get() {
        upstream = upstream.header(web::client_ip::FORWARDED_FOR, ip.to_string());
    }
    if let Some(id) = web::request::current_request_id() {
        upstream = upstream.header(web::request::REQUEST_ID_HEADER, id);
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => {
            // The upstream URL is configuration, not PHI; the path is not logged.
            tracing::warn!(upstream = %route.upstream, timeout = e.is_timeout(), "upstream unavailable");
            let (status, code) = if e.is_timeout() {
                (StatusCode::GATEWAY_TIMEOUT, "gateway.upstream_timeout")
            } else {
                (StatusCode::BAD_GATEWAY, "gateway.upstream_unavailable")
            };
            return Problem::new(
                status,
                code,
                "the service for this route is not answering; try again shortly",
            )
            .into_response();
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = match answer.bytes().await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(
                StatusCode::BAD_GATEWAY,
                "gateway.upstream_unavailable",
                "the service's answer was cut off",
            )
            .into_response();
        }
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    for (name, value) in &headers {
        let name: &HeaderName = name;
        // Our own request id is set by the gateway's middleware; length is recomputed.
        if !HOP_BY_HOP.contains(&name.as_str())
            && name != header::CONTENT_LENGTH
            && name.as_str() != web::request::REQUEST_ID_HEADER
        {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}
