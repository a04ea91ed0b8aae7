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
use crate::store::TerminalStatus;
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

pub(super) fn terminal_of(state: &AppState, identity: &TerminalIdentity) -> ApiResult<TerminalRow> {
    match state.registry.terminal(&identity.0) {
        Some(t) if t.status == TerminalStatus::Active => Ok(t),
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
    let prepared = match prepare(&state, &terminal, tap.clone()) {
        Ok(prepared) => prepared,
        Err(error) => {
            return match stored_answers(&state, &terminal, std::slice::from_ref(&tap)).await? {
                Some(mut stored) => Ok(raw_json(StatusCode::OK, stored.remove(0))),
                None => Err(error),
            }
        }
    };
    let answer = state.engine.submit(terminal, prepared).await?;
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
    for (index, tap) in batch.taps.iter().cloned().enumerate() {
        let result = prepare(&state, &terminal, tap);
        if result.is_err() {
            if let Some(stored) = stored_answers(&state, &terminal, &batch.taps).await? {
                return Ok(raw_json(StatusCode::OK, batch_body(stored.iter())));
            }
        }
        prepared.push(result.map_err(|e| match e {
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
    let answers = state.engine.submit_batch(terminal, prepared).await?;
    for answer in &answers {
        observe("tap_batch", answer, started);
    }
    Ok(raw_json(
        StatusCode::OK,
        batch_body(answers.iter().map(|a| &a.body)),
    ))
}

/// `{"results":[…]}` around stored answer bytes, which go out unchanged.
fn batch_body<'a>(answers: impl Iterator<Item = &'a Vec<u8>>) -> Vec<u8> {
    let mut body = b"{\"results\":[".to_vec();
    for (i, answer) in answers.enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(answer);
    }
    body.extend_from_slice(b"]}");
    body
}

/// The stored answers if every tap is an exact repeat of one already judged. Checked only when a
/// request fails validation: a repeat must get its stored bytes even when it would no longer
/// validate today (its scan time has aged past the upload limit, the operator's mode changed).
async fn stored_answers(
    state: &AppState,
    terminal: &TerminalRow,
    taps: &[TapRequest],
) -> ApiResult<Option<Vec<Vec<u8>>>> {
    let mut answers = Vec::with_capacity(taps.len());
    for tap in taps {
        let Ok(sequence) = i64::try_from(tap.sequence) else {
            return Ok(None);
        };
        match state
            .store
            .stored_tap(&terminal.terminal_id, sequence)
            .await?
        {
            Some((digest, response)) if digest == engine::request_sha256(tap) => {
                answers.push(response)
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(answers))
}

pub(super) fn observe(endpoint: &'static str, answer: &TapAnswer, started: Instant) {
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
pub(super) fn prepare(
    state: &AppState,
    terminal: &TerminalRow,
    tap: TapRequest,
) -> ApiResult<PreparedTap> {
    let now_ms = state.clock.now_ms();
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
        pays_at_exit: false,
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

/// Ids are decimal strings, as everywhere in the API: 63-bit integers do not survive JSON
/// parsers that read numbers as doubles.
#[derive(Serialize)]
struct DenyListResponse {
    credentials: Vec<String>,
    riders: Vec<String>,
}

/// The deny list as gates need it for offline decisions; gates poll it.
async fn get_deny_list(
    State(state): State<AppState>,
    Extension(identity): Extension<TerminalIdentity>,
) -> ApiResult<Json<DenyListResponse>> {
    terminal_of(&state, &identity)?;
    let deny = state.registry.deny_list();
    let sorted = |ids: &std::collections::HashSet<u64>| {
        let mut ids: Vec<u64> = ids.iter().copied().collect();
        ids.sort_unstable();
        ids.into_iter().map(|id| id.to_string()).collect()
    };
    Ok(Json(DenyListResponse {
        credentials: sorted(&deny.credentials),
        riders: sorted(&deny.riders),
    }))
}
