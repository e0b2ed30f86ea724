//! `/health/live` (the process answers) and `/health/ready` (its dependencies answer).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Something `/health/ready` asks: a database, later the event backbone.
pub trait ReadinessCheck: Send + Sync {
    fn name(&self) -> String;
    fn check(&self) -> CheckFuture<'_>;
}

#[derive(Clone, Default)]
pub struct Checks(Arc<Vec<Box<dyn ReadinessCheck>>>);

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|c| c.name()))
            .finish()
    }
}

impl Checks {
    pub fn new(checks: Vec<Box<dyn ReadinessCheck>>) -> Self {
        Self(Arc::new(checks))
    }
}

pub fn router(checks: Checks) -> Router {
    Router::new()
        .route(
            "/health/live",
            get(|| async { axum::Json(json!({"status": "UP"})) }),
        )
        .route("/health/ready", get(ready))
        .with_state(checks)
}

async fn ready(State(checks): State<Checks>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let mut all_up = true;
    let mut components = serde_json::Map::new();
    for check in checks.0.iter() {
        let outcome = tokio::time::timeout(Duration::from_secs(2), check.check()).await;
        let status = match outcome {
            Ok(Ok(())) => json!({"status": "UP"}),
            Ok(Err(e)) => {
                all_up = false;
                tracing::warn!(component = %check.name(), error = %e, "readiness check failed");
                json!({"status": "DOWN"})
            }
            Err(_) => {
                all_up = false;
                tracing::warn!(component = %check.name(), "readiness check timed out");
                json!({"status": "DOWN", "reason": "timeout"})
            }
        };
        components.insert(check.name(), status);
    }
    let code = if all_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let status = if all_up { "UP" } else { "DOWN" };
    (
        code,
        axum::Json(json!({"status": status, "components": components})),
    )
}
