//! A toll exit paid at the booth (terminal API, mutual TLS): the exit tap and the driver's
//! wallet payment code in one request, answered once the payment is settled.

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use turnpike_wire::api::Direction;

use super::terminal::{observe, prepare, terminal_of, TerminalIdentity, TAP_BODY_BYTES_MAX};
use super::{raw_json, sha256, ValidJson};
use crate::charging::toll;
use crate::engine::PAYMENT_PENDING;
use crate::error::{ApiError, ApiResult};
use crate::network::Mode;
use crate::AppState;
pub use turnpike_wire::api::toll::TollExitRequest;

/// Payment codes are 16–24 digits (the wallet's one-time code, refreshed every minute).
const PAYMENT_CODE_DIGITS: std::ops::RangeInclusive<usize> = 16..=24;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/toll/exits",
            post(post_toll_exit).layer(DefaultBodyLimit::max(TAP_BODY_BYTES_MAX)),
        )
        .with_state(state)
}

fn in_progress() -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::CONFLICT,
        code: "payment_in_progress",
        message: "this exit's payment is still being settled; repeat the same request shortly"
            .into(),
    }
}

async fn post_toll_exit(
    State(state): State<AppState>,
    Extension(identity): Extension<TerminalIdentity>,
    ValidJson(req): ValidJson<TollExitRequest>,
) -> ApiResult<Response> {
    let started = Instant::now();
    let terminal = terminal_of(&state, &identity)?;
    if !PAYMENT_CODE_DIGITS.contains(&req.payment_code.len())
        || !req.payment_code.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ApiError::unprocessable(
            "invalid_payment_code",
            "payment_code must be 16 to 24 digits",
        ));
    }
    if req.tap.direction != Direction::Exit {
        return Err(ApiError::unprocessable(
            "not_an_exit",
            "only exits are paid at the booth",
        ));
    }
    if state.networks.get(&terminal.operator_id).map(|n| n.mode()) != Some(Mode::Toll) {
        return Err(ApiError::unprocessable(
            "not_a_toll_terminal",
            "this terminal's operator runs no toll network",
        ));
    }
    let mut prepared = prepare(&state, &terminal, req.tap.clone())?;
    prepared.pays_at_exit = true;
    // The payment code is part of the request's meaning: the same sequence with another code
    // is a different request (an idempotency conflict), not a repeat.
    let mut digest_input = prepared.request_sha256.to_vec();
    digest_input.extend_from_slice(&sha256(req.payment_code.as_bytes()));
    prepared.request_sha256 = sha256(&digest_input);
    let answer = state.engine.submit(terminal.clone(), prepared).await?;
    if answer.repeat && answer.reason.as_deref() == Some(PAYMENT_PENDING) {
        return Err(in_progress());
    }
    let Some(payment) = answer.payment.clone() else {
        observe("toll_exit", &answer, started);
        return Ok(raw_json(StatusCode::OK, answer.body));
    };
    let body = toll::pay_at_exit(
        &state.charging,
        &payment,
        &req.payment_code,
        &terminal.terminal_id,
    )
    .await
    .map_err(|e| {
        // Nothing was charged: the database failed before the pay was sent or while
        // recording a certain non-payment. The booth repeats; the worker settles the charge.
        tracing::error!(error = %e, "toll exit not settled; nothing charged");
        ApiError::DatabaseUnavailable
    })?;
    metrics::histogram!("gateway_toll_exit_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    Ok(raw_json(StatusCode::OK, body))
}
