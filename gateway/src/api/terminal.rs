//! The terminal API (mutual TLS). The terminal's identity is the [`TerminalIdentity`] that the
//! listener took from the client certificate; nothing in a body can claim another terminal.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use turnpike_wire::api::{Direction, TapBatchRequest, TapRequest, BATCH_TAPS_MAX, SEQUENCE_MAX};
use turnpike_wire::ridecode::IssuerPublicKey;

use super::{raw_json, ValidJson};
use crate::engine::{self, PreparedTap, TapAnswer};
use crate::error::{ApiError, ApiResult};
use crate::network::Mode;
use crate::store::TerminalRow;
use crate::AppState;

/// One tap is a few hundred bytes; 16 KiB leaves room and bounds what a bad client can send.
pub const TAP_BODY_BYTES_MAX: usize = 16 * 1024;
/// A full batch of [`BATCH_TAPS_MAX`] taps is about 200 KiB.
pub const BATCH_BODY_BYTES_MAX: usize = 512 * 1024;

/// The authenticated terminal of a connection, from its certificate's common name.
#[derive(Debug, Clone)]
pub struct TerminalIdentity(pub Arc<str>);

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/taps",
            post(post_tap).layer(DefaultBodyLimit::max(TAP_BODY_BYTES_MAX)),
        )
        .route(
            "/v1/taps/batch",
            post(post_batch).layer(DefaultBodyLimit::max(BATCH_BODY_BYTES_MAX)),
        )
        .route("/v1/terminal/keys", get(get_keys))
        .route("/v1/terminal/deny-list", get(get_deny_list))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

fn terminal_of(state: &AppState, identity: &TerminalIdentity) -> ApiResult<TerminalRow> {
    match state.registry.terminal(&identity.0) {
        Some(t) if t.status == "active" => Ok(t),
        _ => Err(ApiError::BadRequest {
            status: StatusCode::FORBIDDEN,
            code: "terminal_not_active",
            message: format!("terminal {} is not registered or was revoked", identity.0),
        }),
    }
}

async fn post_tap(
    State(state): State<AppState>,
    Extension(identity): Extension<TerminalIdentity>,
    ValidJson(tap): ValidJson<TapRequest>,
) -> ApiResult<Response> {
    let started = Instant::now();
    let terminal = terminal_of(&state, &identity)?;
    let prepared = prepare(&state, &terminal, tap)?;
    let answers = state.engine.submit(terminal, vec![prepared]).await?;
    let answer = answers
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no answer")))?;
    observe("tap", &answer, started);
    Ok(raw_json(StatusCode::OK, answer.body))
}

async fn post_batch(
    State(state): State<AppState>,
    Extension(identity): Extension<TerminalIdentity>,
    ValidJson(batch): ValidJson<TapBatchRequest>,
) -> ApiResult<Response> {
    let started = Instant::now();
    let terminal = terminal_of(&state, &identity)?;
    if batch.taps.is_empty() || batch.taps.len() > BATCH_TAPS_MAX {
        return Err(ApiError::unprocessable(
            "batch_size_out_of_range",
            format!(
                "a batch carries 1 to {BATCH_TAPS_MAX} taps, this one {}",
                batch.taps.len()
            ),
        ));
    }
    if let Some(w) = batch
        .taps
        .windows(2)
        .find(|w| w[1].sequence <= w[0].sequence)
    {
        return Err(ApiError::unprocessable(
            "batch_out_of_order",
            format!(
                "taps must be in increasing sequence order; {} follows {}",
                w[1].sequence, w[0].sequence
            ),
        ));
    }
    let mut prepared = Vec::with_capacity(batch.taps.len());
    for (index, tap) in batch.taps.into_iter().enumerate() {
        prepared.push(prepare(&state, &terminal, tap).map_err(|e| match e {
            ApiError::BadRequest {
                status,
                code,
                message,
            } => ApiError::BadRequest {
                status,
                code,
                message: format!("taps[{index}]: {message}"),
            },
            other => other,
        })?);
    }
    let answers = state.engine.submit(terminal, prepared).await?;
    let mut body = b"{\"results\":[".to_vec();
    for (i, answer) in answers.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&answer.body);
        observe("tap_batch", answer, started);
    }
    body.extend_from_slice(b"]}");
    Ok(raw_json(StatusCode::OK, body))
}

fn observe(endpoint: &'static str, answer: &TapAnswer, started: Instant) {
    let decision = engine::decision_str(answer.decision);
    let reason = answer.reason.clone().unwrap_or_else(|| "none".into());
    metrics::counter!("gateway_taps_total", "decision" => decision, "reason" => reason)
        .increment(1);
    if answer.repeat {
        metrics::counter!("gateway_tap_repeats_total").increment(1);
    }
    metrics::histogram!("gateway_request_duration_seconds", "endpoint" => endpoint, "decision" => decision)
        .record(started.elapsed().as_secs_f64());
}

/// Validates a tap and verifies its ride code. Request errors become 4xx; a code that fails
/// verification is not an error but a tap the engine will decline with the precise reason.
fn prepare(state: &AppState, terminal: &TerminalRow, tap: TapRequest) -> ApiResult<PreparedTap> {
    let now_ms = crate::now_ms();
    if tap.sequence == 0 || tap.sequence > SEQUENCE_MAX {
        return Err(ApiError::unprocessable(
            "sequence_out_of_range",
            format!(
                "sequence must be between 1 and {SEQUENCE_MAX}, got {}",
                tap.sequence
            ),
        ));
    }
    let taps = &state.config.taps;
    if tap.scanned_at_ms > (now_ms as u64).saturating_add(taps.scan_time_future_skew_ms) {
        return Err(ApiError::unprocessable(
            "scan_time_in_future",
            "scanned_at_ms is later than the gateway clock allows",
        ));
    }
    if tap.scanned_at_ms < (now_ms as u64).saturating_sub(taps.scan_time_max_age_ms) {
        return Err(ApiError::unprocessable(
            "scan_time_too_old",
            "scanned_at_ms is older than the offline upload limit",
        ));
    }
    let mode = state.networks.get(&terminal.operator_id).map(|n| n.mode());
    match (mode, tap.direction, tap.vehicle_class) {
        (Some(Mode::Toll), Direction::Exit, None) => {
            return Err(ApiError::unprocessable(
                "vehicle_class_required",
                "a toll exit must carry vehicle_class",
            ));
        }
        (Some(Mode::Metro), _, Some(_)) => {
            return Err(ApiError::unprocessable(
                "vehicle_class_not_allowed",
                "metro taps carry no vehicle_class",
            ));
        }
        _ => {}
    }
    let keys = state.registry.keys();
    let deny = state.registry.deny_list();
    let verdict = engine::verify_code(&keys, &deny, &tap.ride_code, tap.scanned_at_ms);
    if let Err(reason) = &verdict {
        tracing::info!(terminal_id = %terminal.terminal_id, sequence = tap.sequence, reason = reason.code(), "ride code refused");
    }
    Ok(PreparedTap {
        request_sha256: engine::request_sha256(&tap),
        request: tap,
        received_at_ms: now_ms,
        verdict,
    })
}

#[derive(Serialize)]
struct KeysResponse {
    keys: Vec<IssuerPublicKey>,
}

/// Issuer public keys for offline verification at the gate (current and previous).
async fn get_keys(
    State(state): State<AppState>,
    Extension(identity): Extension<TerminalIdentity>,
) -> ApiResult<Json<KeysResponse>> {
    terminal_of(&state, &identity)?;
    Ok(Json(KeysResponse {
        keys: state.registry.keys().public_keys.clone(),
    }))
}

#[derive(Serialize)]
struct DenyListResponse {
    credentials: Vec<u64>,
    riders: Vec<u64>,
}

/// The deny list as gates need it for offline decisions; gates poll it.
async fn get_deny_list(
    State(state): State<AppState>,
    Extension(identity): Extension<TerminalIdentity>,
) -> ApiResult<Json<DenyListResponse>> {
    terminal_of(&state, &identity)?;
    let deny = state.registry.deny_list();
    let mut credentials: Vec<u64> = deny.credentials.iter().copied().collect();
    let mut riders: Vec<u64> = deny.riders.iter().copied().collect();
    credentials.sort_unstable();
    riders.sort_unstable();
    Ok(Json(DenyListResponse {
        credentials,
        riders,
    }))
}
