//! Sandbox admin endpoints, plain JSON under `/sandbox/...`: the knobs a test or the demo turns
//! to set up the world (apps, users with balances, payment codes) and to look at the result.
//!
//! They stand for things that happen outside the open API on the real platform (the merchant
//! console, the buyer's phone). They are unauthenticated — bind the sandbox to loopback — and
//! are not part of the provider's wire format.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::error::SandboxError;
use crate::money::{format_fen, parse_balance_fen};
use crate::sign::Verifier;
use crate::store::{PaymentCodeRow, TradeRow, UserRow};
use crate::time::{api_time, now_ms};
use crate::trade::{self, random_digits};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sandbox/apps", post(register_app))
        .route("/sandbox/users", post(create_user))
        .route("/sandbox/users/{user_id}", get(read_user))
        .route("/sandbox/users/{user_id}/payment-codes", post(issue_code))
        .route("/sandbox/trades/{trade_no}", get(read_trade))
        .route("/sandbox/trades/{trade_no}/confirm", post(confirm_trade))
}

/// Longest app id / logon id accepted.
const ID_CHARS_MAX: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterApp {
    pub app_id: String,
    /// The app's RSA public key: PEM or the console's bare base64.
    pub public_key: String,
}

async fn register_app(
    State(state): State<AppState>,
    Json(req): Json<RegisterApp>,
) -> Result<Json<serde_json::Value>, SandboxError> {
    if req.app_id.is_empty() || req.app_id.len() > ID_CHARS_MAX {
        return Err(SandboxError::BadRequest(
            "app_id must be 1..=64 characters".into(),
        ));
    }
    let key = Verifier::from_text(&req.public_key)
        .map_err(|e| SandboxError::BadRequest(e.to_string()))?;
    state
        .store
        .upsert_app(&req.app_id, &key.to_base64(), now_ms())
        .await?;
    Ok(Json(serde_json::json!({ "app_id": req.app_id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Wallet balance in yuan, e.g. "100.00"; default "0.00".
    #[serde(default)]
    pub balance: Option<String>,
    /// Real-name verified; default true.
    #[serde(default)]
    pub real_name: Option<bool>,
    /// The buyer's account (phone or email); default a random phone number.
    #[serde(default)]
    pub logon_id: Option<String>,
    /// Payments above this amount (yuan) wait for the buyer to confirm (`10003`), like a large
    /// truck toll that needs the payment password. Default: never.
    #[serde(default)]
    pub confirm_over: Option<String>,
}

#[derive(Serialize)]
pub struct UserView {
    pub user_id: String,
    pub logon_id: String,
    pub balance: String,
    pub real_name: bool,
    pub confirm_over: Option<String>,
}

impl From<UserRow> for UserView {
    fn from(u: UserRow) -> UserView {
        UserView {
            user_id: u.user_id,
            logon_id: u.logon_id,
            balance: format_fen(u.balance_fen),
            real_name: u.real_name,
            confirm_over: u.confirm_over_fen.map(format_fen),
        }
    }
}

async fn create_user(
    State(state): State<AppState>,
    Json(req): Json<CreateUser>,
) -> Result<(StatusCode, Json<UserView>), SandboxError> {
    let balance_fen = parse_balance_fen(req.balance.as_deref().unwrap_or("0.00"))
        .map_err(SandboxError::BadRequest)?;
    let confirm_over_fen = req
        .confirm_over
        .as_deref()
        .map(parse_balance_fen)
        .transpose()
        .map_err(SandboxError::BadRequest)?;
    let logon_id = req
        .logon_id
        .unwrap_or_else(|| format!("159{}", random_digits(8)));
    if logon_id.is_empty() || logon_id.len() > ID_CHARS_MAX {
        return Err(SandboxError::BadRequest(
            "logon_id must be 1..=64 characters".into(),
        ));
    }
    // Platform user ids are 16 digits starting 2088.
    let user = UserRow {
        user_id: format!("2088{}", random_digits(12)),
        logon_id,
        balance_fen,
        real_name: req.real_name.unwrap_or(true),
        confirm_over_fen,
        created_at_ms: now_ms(),
    };
    if !state.store.insert_user(&user).await? {
        return Err(anyhow::anyhow!("random user id collided; retry").into());
    }
    Ok((StatusCode::CREATED, Json(user.into())))
}

async fn read_user(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<UserView>, SandboxError> {
    let user = state
        .store
        .user(&user_id)
        .await?
        .ok_or_else(|| SandboxError::NotFound(format!("no user {user_id}")))?;
    Ok(Json(user.into()))
}

#[derive(Serialize)]
pub struct PaymentCodeView {
    pub auth_code: String,
    pub user_id: String,
    pub expires_at: String,
    pub expires_at_ms: i64,
}

async fn issue_code(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<(StatusCode, Json<PaymentCodeView>), SandboxError> {
    if state.store.user(&user_id).await?.is_none() {
        return Err(SandboxError::NotFound(format!("no user {user_id}")));
    }
    let now = now_ms();
    // Payment codes are 18 digits starting 28, like the wallet app shows.
    let code = PaymentCodeRow {
        auth_code: format!("28{}", random_digits(16)),
        user_id,
        issued_at_ms: now,
        expires_at_ms: now + state.config.payment_code_ttl_ms as i64,
        used_at_ms: None,
    };
    if !state.store.insert_payment_code(&code).await? {
        return Err(anyhow::anyhow!("random payment code collided; retry").into());
    }
    Ok((
        StatusCode::CREATED,
        Json(PaymentCodeView {
            expires_at: api_time(code.expires_at_ms),
            expires_at_ms: code.expires_at_ms,
            auth_code: code.auth_code,
            user_id: code.user_id,
        }),
    ))
}

#[derive(Serialize)]
pub struct TradeView {
    pub trade_no: String,
    pub app_id: String,
    pub out_trade_no: String,
    pub subject: String,
    pub total_amount: String,
    pub refunded_amount: String,
    pub trade_status: &'static str,
    pub buyer_user_id: String,
    pub cancel_action: Option<String>,
    pub created_at_ms: i64,
    pub paid_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub refunds: Vec<RefundView>,
}

#[derive(Serialize)]
pub struct RefundView {
    pub out_request_no: String,
    pub refund_amount: String,
    pub refunded_total: String,
    pub reason: Option<String>,
    pub created_at_ms: i64,
}

async fn trade_view(state: &AppState, t: TradeRow) -> Result<TradeView, SandboxError> {
    let refunds = state
        .store
        .refunds(&t.trade_no)
        .await?
        .into_iter()
        .map(|r| RefundView {
            out_request_no: r.out_request_no,
            refund_amount: format_fen(r.refund_fen),
            refunded_total: format_fen(r.refunded_total_fen),
            reason: r.reason,
            created_at_ms: r.created_at_ms,
        })
        .collect();
    Ok(TradeView {
        trade_no: t.trade_no,
        app_id: t.app_id,
        out_trade_no: t.out_trade_no,
        subject: t.subject,
        total_amount: format_fen(t.total_fen),
        refunded_amount: format_fen(t.refunded_fen),
        trade_status: t.status.as_str(),
        buyer_user_id: t.buyer_user_id,
        cancel_action: t.cancel_action,
        created_at_ms: t.created_at_ms,
        paid_at_ms: t.paid_at_ms,
        closed_at_ms: t.closed_at_ms,
        refunds,
    })
}

async fn read_trade(
    State(state): State<AppState>,
    Path(trade_no): Path<String>,
) -> Result<Json<TradeView>, SandboxError> {
    let t = state
        .store
        .trade(&trade_no)
        .await?
        .ok_or_else(|| SandboxError::NotFound(format!("no trade {trade_no}")))?;
    Ok(Json(trade_view(&state, t).await?))
}

async fn confirm_trade(
    State(state): State<AppState>,
    Path(trade_no): Path<String>,
) -> Result<Json<TradeView>, SandboxError> {
    let t = trade::confirm(&state.store, &trade_no, now_ms()).await?;
    Ok(Json(trade_view(&state, t).await?))
}
