//! Payment endpoints: a toll exit paid on the spot (terminal API), a rider's wallet, charges and
//! arrears (rider API), and the charges and journal for operators (admin API).

use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use turnpike_wire::api::{Direction, TapRequest};

use super::rider::Rider;
use super::terminal::{observe, prepare, terminal_of, TerminalIdentity};
use super::{raw_json, sha256, ValidJson, ValidQuery};
use crate::charging::toll::{self, ExitOutcome};
use crate::engine::PAYMENT_PENDING;
use crate::error::{ApiError, ApiResult};
use crate::network::Mode;
use crate::provider::AgreementOutcome;
use crate::store::charging::{AccountBalance, ChargeRow};
use crate::AppState;

/// Payment codes are 16–24 digits (the wallet's one-time code, refreshed every minute).
const PAYMENT_CODE_DIGITS: std::ops::RangeInclusive<usize> = 16..=24;
/// Most charges one listing returns.
const CHARGES_LIMIT_MAX: i64 = 1000;

pub fn terminal_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/toll/exits", post(post_toll_exit))
        .with_state(state)
}

pub fn rider_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/riders/me/wallet", put(bind_wallet))
        .route("/v1/riders/me/charges", get(rider_charges))
        .route("/v1/riders/me/arrears/retry", post(retry_arrears))
        .with_state(state)
}

pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/admin/charges", get(admin_charges))
        .route("/v1/admin/ledger", get(admin_ledger))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::admin::require_admin,
        ))
        .with_state(state)
}

/// A toll exit with the driver's wallet payment code: the exit tap and its payment as one
/// request, answered once the payment is settled (within `charging.toll_budget_ms`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TollExitRequest {
    pub tap: TapRequest,
    /// The wallet's one-time payment code as scanned (16–24 digits). Never logged or stored.
    pub payment_code: String,
}

fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code,
        message: message.into(),
    }
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
    let answers = state
        .engine
        .submit(terminal.clone(), vec![prepared])
        .await?;
    let answer = answers
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no answer")))?;
    if answer.repeat && answer.reason.as_deref() == Some(PAYMENT_PENDING) {
        return Err(in_progress());
    }
    let Some(payment) = answer.payment.clone() else {
        observe("toll_exit", &answer, started);
        return Ok(raw_json(StatusCode::OK, answer.body));
    };
    match toll::pay_at_exit(
        &state.charging,
        &payment,
        &req.payment_code,
        &terminal.terminal_id,
    )
    .await?
    {
        ExitOutcome::Final(body) => {
            metrics::histogram!("gateway_toll_exit_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            Ok(raw_json(StatusCode::OK, body))
        }
        ExitOutcome::Unsettled => Err(in_progress()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletRequest {
    /// The withholding agreement the rider signed in the wallet app.
    pub agreement_no: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WalletView {
    pub agreement_no: String,
    pub status: String,
}

/// Binds the rider's wallet: the agreement must be active at the provider (checked with a
/// signed query), and post-paid fares are deducted through it from then on.
async fn bind_wallet(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
    ValidJson(req): ValidJson<WalletRequest>,
) -> ApiResult<Json<WalletView>> {
    if req.agreement_no.is_empty()
        || req.agreement_no.len() > 64
        || !req.agreement_no.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(ApiError::unprocessable(
            "invalid_agreement_no",
            "agreement_no must be 1 to 64 letters or digits",
        ));
    }
    let provider = state.charging.provider.as_ref().ok_or_else(|| {
        unavailable(
            "provider_not_configured",
            "this gateway has no payment provider",
        )
    })?;
    match provider.agreement(&req.agreement_no).await {
        Ok(AgreementOutcome::Active { provider_user_id }) => {
            state
                .store
                .bind_wallet(
                    rider_id,
                    &req.agreement_no,
                    provider_user_id.as_deref(),
                    crate::now_ms(),
                )
                .await?;
            Ok(Json(WalletView {
                agreement_no: req.agreement_no,
                status: "bound".into(),
            }))
        }
        Ok(AgreementOutcome::Inactive { status }) => Err(ApiError::unprocessable(
            "agreement_not_active",
            format!("the agreement is {status} at the provider"),
        )),
        Ok(AgreementOutcome::NotFound) => Err(ApiError::unprocessable(
            "agreement_not_found",
            "the provider knows no such agreement for this merchant",
        )),
        Err(e) => Err(unavailable("provider_unavailable", e.to_string())),
    }
}

/// A charge as riders and operators see it. Ids are decimal strings.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChargeView {
    pub charge_id: String,
    pub kind: String,
    pub operator_id: String,
    pub rider_id: Option<String>,
    pub journey_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub business_day: String,
    pub status: String,
    pub attempt: i64,
    pub out_trade_no: String,
    pub provider_trade_no: Option<String>,
    pub fee_minor: Option<i64>,
    pub refunded_minor: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub captured_at_ms: Option<i64>,
}

impl From<ChargeRow> for ChargeView {
    fn from(c: ChargeRow) -> ChargeView {
        ChargeView {
            charge_id: c.charge_id.to_string(),
            kind: c.kind,
            operator_id: c.operator_id,
            rider_id: c.rider_id.map(|r| r.to_string()),
            journey_id: c.journey_id.map(|j| j.to_string()),
            amount_minor: c.amount_minor,
            currency: c.currency,
            business_day: c.business_day,
            status: c.status,
            attempt: c.attempt,
            out_trade_no: c.out_trade_no,
            provider_trade_no: c.provider_trade_no,
            fee_minor: c.fee_minor,
            refunded_minor: c.refunded_minor,
            last_error: c.last_error,
            created_at_ms: c.created_at_ms,
            captured_at_ms: c.captured_at_ms,
        }
    }
}

async fn rider_charges(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
) -> ApiResult<Json<Vec<ChargeView>>> {
    let rows = state
        .store
        .charges(Some(rider_id), None, CHARGES_LIMIT_MAX)
        .await?;
    Ok(Json(rows.into_iter().map(ChargeView::from).collect()))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RetryView {
    pub requeued: u64,
}

/// The rider has topped up the wallet: failed charges go back to the capture queue now. The
/// deny-listing is lifted by the capture that repays the last of them.
async fn retry_arrears(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
) -> ApiResult<Json<RetryView>> {
    let requeued = state
        .store
        .requeue_failed(rider_id, crate::now_ms())
        .await?;
    Ok(Json(RetryView { requeued }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargesQuery {
    pub status: Option<String>,
    pub rider_id: Option<i64>,
    pub limit: Option<i64>,
}

async fn admin_charges(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<ChargesQuery>,
) -> ApiResult<Json<Vec<ChargeView>>> {
    const STATUSES: [&str; 5] = ["pending", "paying", "captured", "failed", "cancelled"];
    if let Some(s) = &q.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::unprocessable(
                "invalid_status",
                format!("status must be one of {STATUSES:?}"),
            ));
        }
    }
    let limit = q.limit.unwrap_or(CHARGES_LIMIT_MAX);
    if !(1..=CHARGES_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::unprocessable(
            "limit_out_of_range",
            format!("limit must be 1 to {CHARGES_LIMIT_MAX}"),
        ));
    }
    let rows = state
        .store
        .charges(q.rider_id, q.status.as_deref(), limit)
        .await?;
    Ok(Json(rows.into_iter().map(ChargeView::from).collect()))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LedgerView {
    pub transactions: usize,
    /// Transactions whose lines do not sum to zero; always 0 unless something is badly wrong.
    pub unbalanced_transactions: i64,
    pub balances: Vec<AccountBalance>,
}

async fn admin_ledger(State(state): State<AppState>) -> ApiResult<Json<LedgerView>> {
    Ok(Json(LedgerView {
        transactions: state.store.ledger_transactions().await?.len(),
        unbalanced_transactions: state.store.unbalanced_transactions().await?,
        balances: state.store.ledger_balances().await?,
    }))
}
