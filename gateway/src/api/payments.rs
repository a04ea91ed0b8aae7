//! Payment endpoints on the public listener: a rider's wallet, charges, arrears and disputes
//! (rider API), and charges, the journal, refunds and dispute decisions (admin API).

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::rider::Rider;
use super::{check_id, check_input, check_reason, decimal_id, OptionalJson, ValidJson, ValidQuery};
use crate::charging::disputes::{self, Decision, DisputeError};
use crate::charging::real_name::{self, RealName, RealNameError, LOGON_ID_CHARS_MAX};
use crate::charging::refunds::{self, RefundError, RefundRequest};
use crate::charging::wallets::{self, WalletError, WalletState};
use crate::error::{ApiError, ApiResult};
use crate::store::charging::ChargeStatus;
use crate::store::charging::{ChargeRow, DisputeRow, LedgerScope, RefundRow};
use crate::store::charging::{DisputeStatus, RefundStatus};
use crate::AppState;
pub use turnpike_wire::api::payments::{
    ChargeView, ChargesQuery, DecisionBody, DisputeBody, DisputeView, DisputesQuery, LedgerQuery,
    LedgerView, RefundBody, RefundView, RetryView, SigningRequest, SigningView, WalletView,
};
pub use turnpike_wire::api::rider::{RealNameCheck, RealNameView};
use turnpike_wire::ident;

/// Most charges one listing returns.
const CHARGES_LIMIT_MAX: i64 = 1000;

/// Payment request bodies are a few hundred bytes; 16 KiB bounds what a client can send.
const PAYMENTS_BODY_BYTES_MAX: usize = 16 * 1024;

pub fn rider_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/riders/me/wallet", get(wallet).delete(unbind_wallet))
        .route("/v1/riders/me/wallet/signing", post(start_wallet_signing))
        .route(
            "/v1/riders/me/real-name",
            get(real_name).post(check_real_name),
        )
        .route("/v1/riders/me/charges", get(rider_charges))
        .route("/v1/riders/me/arrears/retry", post(retry_arrears))
        .route(
            "/v1/riders/me/disputes",
            post(open_dispute).get(rider_disputes),
        )
        .layer(DefaultBodyLimit::max(PAYMENTS_BODY_BYTES_MAX))
        .with_state(state)
}

pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/admin/charges", get(admin_charges))
        .route("/v1/admin/ledger", get(admin_ledger))
        .route("/v1/admin/refunds", post(admin_refund))
        .route("/v1/admin/disputes", get(admin_disputes))
        .route(
            "/v1/admin/disputes/{dispute_id}/decision",
            post(decide_dispute),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::admin::require_admin,
        ))
        .layer(DefaultBodyLimit::max(PAYMENTS_BODY_BYTES_MAX))
        .with_state(state)
}

fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code,
        message: message.into(),
    }
}

fn wallet_error(e: WalletError) -> ApiError {
    match e {
        WalletError::NoProvider => unavailable("provider_not_configured", e.to_string()),
        WalletError::Provider(_) => unavailable("provider_unavailable", e.to_string()),
        WalletError::AlreadyBound => ApiError::BadRequest {
            status: StatusCode::CONFLICT,
            code: "wallet_already_bound",
            message: e.to_string(),
        },
        WalletError::ChargesOutstanding(_) => ApiError::BadRequest {
            status: StatusCode::CONFLICT,
            code: "charges_outstanding",
            message: e.to_string(),
        },
        WalletError::NotBound => ApiError::NotFound(e.to_string()),
        WalletError::Store(e) => e.into(),
    }
}

fn real_name_error(e: RealNameError) -> ApiError {
    match e {
        RealNameError::NoProvider => unavailable("provider_not_configured", e.to_string()),
        RealNameError::Provider(_) => unavailable("provider_unavailable", e.to_string()),
        RealNameError::NotBound => ApiError::BadRequest {
            status: StatusCode::CONFLICT,
            code: "wallet_not_bound",
            message: e.to_string(),
        },
        RealNameError::WalletUserUnknown => ApiError::BadRequest {
            status: StatusCode::CONFLICT,
            code: "wallet_user_unknown",
            message: e.to_string(),
        },
        RealNameError::NotYourWallet => ApiError::unprocessable("not_your_wallet", e.to_string()),
        RealNameError::Store(e) => e.into(),
    }
}

pub(super) fn real_name_view(state: &AppState, name: RealName) -> RealNameView {
    let (status, checked_at_ms) = match name {
        RealName::Unchecked => ("unchecked", None),
        RealName::Checked {
            certified: true,
            checked_at_ms,
        } => ("certified", Some(checked_at_ms)),
        RealName::Checked {
            certified: false,
            checked_at_ms,
        } => ("not_certified", Some(checked_at_ms)),
    };
    RealNameView {
        status: status.into(),
        checked_at_ms,
        required_for_tickets: state.config.charging.app_tickets_require_real_name,
    }
}

/// What the provider last said of the bound wallet's real name.
async fn real_name(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
) -> ApiResult<Json<RealNameView>> {
    let name = real_name::state(&state.charging, rider_id).await?;
    Ok(Json(real_name_view(&state, name)))
}

/// Asks the provider about the account the rider names, which must be the bound wallet's.
async fn check_real_name(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
    ValidJson(req): ValidJson<RealNameCheck>,
) -> ApiResult<Json<RealNameView>> {
    let logon_id = req.logon_id.trim();
    if logon_id.is_empty()
        || logon_id.chars().count() > LOGON_ID_CHARS_MAX
        || logon_id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ApiError::unprocessable(
            "invalid_logon_id",
            format!("logon_id must be 1 to {LOGON_ID_CHARS_MAX} characters without spaces or control characters"),
        ));
    }
    let name = real_name::check(&state.charging, rider_id, logon_id)
        .await
        .map_err(real_name_error)?;
    Ok(Json(real_name_view(&state, name)))
}

fn wallet_view(state: WalletState) -> WalletView {
    match state {
        WalletState::Unbound => WalletView {
            status: "unbound".into(),
            external_agreement_no: None,
            agreement_no: None,
            bound_at_ms: None,
            signing_started_at_ms: None,
        },
        WalletState::Signing {
            external_agreement_no,
            started_at_ms,
        } => WalletView {
            status: "signing".into(),
            external_agreement_no: Some(external_agreement_no),
            agreement_no: None,
            bound_at_ms: None,
            signing_started_at_ms: Some(started_at_ms),
        },
        WalletState::Bound(w) => WalletView {
            status: "bound".into(),
            external_agreement_no: w.external_agreement_no,
            agreement_no: Some(w.agreement_no),
            bound_at_ms: Some(w.bound_at_ms),
            signing_started_at_ms: None,
        },
    }
}

/// Starts binding the rider's wallet: the answer's `sign_url` is the provider's signing page
/// for a number the gateway made for this rider; the agreement signed there is bound to this
/// rider and no other (see `charging::wallets`).
async fn start_wallet_signing(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
    OptionalJson(SigningRequest {}): OptionalJson<SigningRequest>,
) -> ApiResult<(StatusCode, Json<SigningView>)> {
    let signing = wallets::start_signing(&state.charging, rider_id)
        .await
        .map_err(wallet_error)?;
    Ok((
        StatusCode::CREATED,
        Json(SigningView {
            status: "signing".into(),
            external_agreement_no: signing.external_agreement_no,
            sign_url: signing.sign_url,
        }),
    ))
}

/// The rider's wallet; a pending signing is checked with the provider first.
async fn wallet(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
) -> ApiResult<Json<WalletView>> {
    let state = wallets::state(&state.charging, rider_id)
        .await
        .map_err(wallet_error)?;
    Ok(Json(wallet_view(state)))
}

/// Ends the rider's agreement at the provider and unbinds it (refused while charges are
/// outstanding).
async fn unbind_wallet(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
) -> ApiResult<StatusCode> {
    wallets::unbind(&state.charging, rider_id)
        .await
        .map_err(wallet_error)?;
    Ok(StatusCode::NO_CONTENT)
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

/// The rider has topped up the wallet: failed charges go back to the capture queue now. The
/// deny-listing is lifted by the capture that repays the last of them.
async fn retry_arrears(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
) -> ApiResult<Json<RetryView>> {
    let requeued = state
        .store
        .requeue_failed(rider_id, state.clock.now_ms())
        .await?;
    Ok(Json(RetryView { requeued }))
}

async fn admin_charges(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<ChargesQuery>,
) -> ApiResult<Json<Vec<ChargeView>>> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(ChargeStatus::parse(s).ok_or_else(|| {
            let names: Vec<&str> = ChargeStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::unprocessable("invalid_status", format!("status must be one of {names:?}"))
        })?),
    };
    let limit = q.limit.unwrap_or(CHARGES_LIMIT_MAX);
    if !(1..=CHARGES_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::unprocessable(
            "limit_out_of_range",
            format!("limit must be 1 to {CHARGES_LIMIT_MAX}"),
        ));
    }
    let rows = state.store.charges(q.rider_id, status, limit).await?;
    Ok(Json(rows.into_iter().map(ChargeView::from).collect()))
}

/// The journal's summary: of one business day (optionally one operator's part), or of all of it.
/// Counts and sums run in the database; nothing is loaded row by row.
async fn admin_ledger(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<LedgerQuery>,
) -> ApiResult<Json<LedgerView>> {
    if let Some(day) = &q.business_day {
        if day.len() != 10 || day.parse::<jiff::civil::Date>().is_err() {
            return Err(ApiError::unprocessable(
                "invalid_business_day",
                "business_day must be a date, YYYY-MM-DD",
            ));
        }
    }
    if let Some(op) = &q.operator_id {
        check_id("operator_id", op)?;
    }
    let scope = LedgerScope {
        business_day: q.business_day,
        operator_id: q.operator_id,
    };
    Ok(Json(LedgerView {
        transactions: state.store.ledger_transaction_count(&scope).await?,
        unbalanced_transactions: state.store.unbalanced_transactions_in(&scope).await?,
        balances: state.store.ledger_balances_in(&scope).await?,
        refunds_pending: state.store.refunds_pending_count().await?,
        repairs_queued: state.store.repairs_queued_count().await?,
    }))
}

impl From<RefundRow> for RefundView {
    fn from(r: RefundRow) -> RefundView {
        RefundView {
            refund_id: r.refund_id.to_string(),
            charge_id: r.charge_id.to_string(),
            out_request_no: r.out_request_no,
            amount_minor: r.amount_minor,
            reason: r.reason,
            status: r.status,
            detail: r.detail,
            created_at_ms: r.created_at_ms,
            completed_at_ms: r.completed_at_ms,
        }
    }
}

fn refund_error(e: RefundError) -> ApiError {
    match e {
        RefundError::UnknownCharge => ApiError::NotFound("no such charge".into()),
        RefundError::NotCaptured(_) => {
            ApiError::unprocessable("charge_not_captured", e.to_string())
        }
        RefundError::TooMuch { .. } => {
            ApiError::unprocessable("refund_exceeds_charge", e.to_string())
        }
        RefundError::RequestReused(_) => ApiError::BadRequest {
            status: StatusCode::CONFLICT,
            code: "request_id_reused",
            message: e.to_string(),
        },
        RefundError::NoProvider => unavailable("provider_not_configured", e.to_string()),
        RefundError::Refused { .. } => ApiError::unprocessable("refund_refused", e.to_string()),
        RefundError::Storage(e) => ApiError::Storage(e),
        RefundError::Internal(e) => ApiError::Internal(e),
    }
}

/// A refund of (part of) a captured charge. 200 when done, 202 while the provider's answer is
/// unknown (repeat the same request to drive it on).
async fn admin_refund(
    State(state): State<AppState>,
    ValidJson(body): ValidJson<RefundBody>,
) -> ApiResult<(StatusCode, Json<RefundView>)> {
    let charge_id = decimal_id("invalid_charge_id", "charge_id", &body.charge_id)?;
    // Request ids go into the provider's refund request number.
    check_input(
        "invalid_request_id",
        "request_id",
        ident::check_id(&body.request_id),
    )?;
    check_reason("invalid_reason", "reason", &body.reason)?;
    if body.amount_minor <= 0 {
        return Err(ApiError::unprocessable(
            "invalid_amount",
            "amount_minor must be positive",
        ));
    }
    let refund = refunds::refund(
        &state.charging,
        &RefundRequest {
            charge_id,
            amount_minor: body.amount_minor,
            reason: &body.reason,
            request_id: &body.request_id,
            dispute_id: None,
        },
    )
    .await
    .map_err(refund_error)?;
    let status = if refund.status == RefundStatus::Pending {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(refund.into())))
}

impl From<DisputeRow> for DisputeView {
    fn from(d: DisputeRow) -> DisputeView {
        DisputeView {
            dispute_id: d.dispute_id.to_string(),
            rider_id: d.rider_id.to_string(),
            charge_id: d.charge_id.to_string(),
            reason: d.reason,
            status: d.status,
            decision_note: d.decision_note,
            refund_id: d.refund_id.map(|r| r.to_string()),
            created_at_ms: d.created_at_ms,
            decided_at_ms: d.decided_at_ms,
        }
    }
}

fn dispute_error(e: DisputeError) -> ApiError {
    let conflict = |code| ApiError::BadRequest {
        status: StatusCode::CONFLICT,
        code,
        message: e.to_string(),
    };
    match e {
        DisputeError::UnknownCharge | DisputeError::UnknownDispute => {
            ApiError::NotFound(e.to_string())
        }
        DisputeError::NotCaptured => ApiError::unprocessable("charge_not_captured", e.to_string()),
        DisputeError::AlreadyOpen => conflict("dispute_already_open"),
        DisputeError::Decided(_) => conflict("dispute_decided"),
        DisputeError::RefundPending => unavailable("refund_pending", e.to_string()),
        DisputeError::Refund(e) => refund_error(e),
        DisputeError::Storage(e) => ApiError::Storage(e),
    }
}

/// A rider disputes one of their own captured charges; it waits for an operator's decision.
async fn open_dispute(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
    ValidJson(body): ValidJson<DisputeBody>,
) -> ApiResult<(StatusCode, Json<DisputeView>)> {
    let charge_id = decimal_id("invalid_charge_id", "charge_id", &body.charge_id)?;
    check_reason("invalid_reason", "reason", &body.reason)?;
    let row = disputes::open(&state.charging, rider_id, charge_id, body.reason)
        .await
        .map_err(dispute_error)?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

async fn rider_disputes(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
) -> ApiResult<Json<Vec<DisputeView>>> {
    let rows = state.store.disputes(None, Some(rider_id)).await?;
    Ok(Json(rows.into_iter().map(DisputeView::from).collect()))
}

async fn admin_disputes(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<DisputesQuery>,
) -> ApiResult<Json<Vec<DisputeView>>> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(DisputeStatus::parse(s).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_status",
                "status must be open, approved or rejected",
            )
        })?),
    };
    let rows = state.store.disputes(status, None).await?;
    Ok(Json(rows.into_iter().map(DisputeView::from).collect()))
}

/// An operator decides a dispute: approval refunds (idempotently, keyed by the dispute), a
/// rejection closes it with the note.
async fn decide_dispute(
    State(state): State<AppState>,
    Path(dispute_id): Path<String>,
    ValidJson(body): ValidJson<DecisionBody>,
) -> ApiResult<Json<DisputeView>> {
    let dispute_id = decimal_id("invalid_dispute_id", "dispute_id", &dispute_id)?;
    check_reason("invalid_note", "note", &body.note)?;
    let decision = Decision {
        approve: body.approve,
        amount_minor: body.amount_minor,
        note: &body.note,
    };
    let decided = disputes::decide(&state.charging, dispute_id, &decision)
        .await
        .map_err(dispute_error)?;
    Ok(Json(decided.into()))
}
