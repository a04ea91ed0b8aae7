//! Operations endpoints: Prometheus metrics, liveness and readiness.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::AppState;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// The ops listener while the gateway waits for its database at start: alive, not ready.
pub fn starting_router() -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|| async { crate::metrics_handle().render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "starting: waiting for the database",
                )
            }),
        )
}

/// The recorded metrics, and what only the database knows, read at the scrape (within a
/// second; a database that does not answer is `gateway_db_up 0` and the rest is left as it was):
/// `gateway_db_up`, `gateway_db_ping_seconds`, `gateway_capture_backlog`,
/// `gateway_capture_backlog_age_seconds` (how long the oldest metro or toll charge that is due or
/// was tried has waited since it was booked; 0 when none has — see [`crate::store::Store::ops_gauges`]),
/// `gateway_deny_list_entries{kind}`.
async fn metrics(State(state): State<AppState>) -> String {
    let started = std::time::Instant::now();
    let ping = tokio::time::timeout(std::time::Duration::from_secs(1), state.store.ping()).await;
    let up = matches!(ping, Ok(Ok(())));
    metrics::gauge!("gateway_db_up").set(if up { 1.0 } else { 0.0 });
    if up {
        metrics::gauge!("gateway_db_ping_seconds").set(started.elapsed().as_secs_f64());
        let now = state.clock.now_ms();
        let gauges = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            state.store.ops_gauges(now),
        )
        .await;
        match gauges {
            Ok(Ok(g)) => {
                metrics::gauge!("gateway_capture_backlog").set(g.capture_backlog as f64);
                let age_ms = g
                    .capture_waiting_since_ms
                    .map_or(0, |since| (now - since).max(0));
                metrics::gauge!("gateway_capture_backlog_age_seconds").set(age_ms as f64 / 1000.0);
                for kind in ["credential", "rider"] {
                    let n = g
                        .deny_list
                        .iter()
                        .find(|(k, _)| k == kind)
                        .map_or(0, |(_, n)| *n);
                    metrics::gauge!("gateway_deny_list_entries", "kind" => kind).set(n as f64);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "reading the metrics' database gauges"),
            Err(_) => tracing::warn!("reading the metrics' database gauges took over 1 s"),
        }
    }
    state.metrics.render()
}

/// Ready only while the database answers: a load balancer then stops sending taps to a node
/// that could not commit them.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
    }
}
