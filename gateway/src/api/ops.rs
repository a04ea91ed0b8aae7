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

async fn metrics(State(state): State<AppState>) -> String {
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
