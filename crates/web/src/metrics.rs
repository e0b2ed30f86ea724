//! Prometheus metrics (000 §6.1). The recorder is process-wide; `/metrics` renders it.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

pub const HTTP_REQUESTS: &str = "http_server_requests_seconds";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder once per process (several in-process hubs in tests share it) and
/// returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_REQUESTS.to_owned()),
                    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0],
                )
                // Event latencies (`meditrack_event_end_to_end_seconds`): 000 §9.1 holds
                // their p95 under a second, so the buckets are fine below it, with one just
                // under the second: a bucket's bound is inclusive, and with 1.0 the next
                // below 0.5, a p95 of 0.6 s could not be told from one of exactly 1 s.
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Prefix("meditrack_event_".to_owned()),
                        &[
                            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.999,
                            1.0, 2.5, 5.0, 10.0, 30.0,
                        ],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours just isn't global.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub fn record_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    metrics::histogram!(
        HTTP_REQUESTS,
        "method" => method.to_owned(),
        "route" => route.to_owned(),
        "status" => status.to_string(),
    )
    .record(elapsed.as_secs_f64());
}

pub async fn render(
    axum::extract::State(handle): axum::extract::State<PrometheusHandle>,
) -> String {
    handle.render()
}
