//! Sandbox admin endpoints, plain JSON under `/sandbox/...`: the knobs a test or the demo turns
//! to set up the world (apps, users with balances, payment codes, withholding agreements, fault
//! knobs), the buyer's side of a payment (confirming, paying a QR code), and the views of the
//! result (trades, notifications, the daily bill file).
//!
//! They stand for things that happen outside the open API on the real platform (the merchant
//! console, the buyer's phone). They are unauthenticated — bind the sandbox to loopback — and
//! are not part of the provider's wire format.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::agreement;
use crate::bill::{self, BillInput, Charset};
use crate::error::SandboxError;
use crate::faults::Faults;
use crate::money::{format_fen, parse_balance_fen, AMOUNT_FEN_MAX};
use crate::sign::Verifier;
use crate::store::{
    AgreementRow, AgreementStatus, NotificationRow, PaymentCodeRow, TradeRow, UserRow,
};
use crate::time::{api_time, day_start_ms, now_ms, parse_date};
use crate::trade::{self, random_digits, PayOutcome};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sandbox/apps", post(register_app))
        .route("/sandbox/users", post(create_user))
        .route("/sandbox/users/{user_id}", get(read_user))
        .route("/sandbox/users/{user_id}/payment-codes", post(issue_code))
        .route("/sandbox/users/{user_id}/top-up", post(top_up))
        .route("/sandbox/users/{user_id}/real-name", post(set_real_name))
        .route("/sandbox/users/{user_id}/agreements", post(sign_agreement))
        .route(
            "/sandbox/users/{user_id}/agreement-signings",
            post(open_sign_url),
        )
        .route("/sandbox/agreements/{agreement_no}", get(read_agreement))
        .route(
            "/sandbox/agreements/{agreement_no}/unsign",
            post(unsign_agreement),
        )
        .route(
            "/sandbox/agreements/{agreement_no}/stop",
            post(stop_agreement),
        )
        .route("/sandbox/trades/{trade_no}", get(read_trade))
        .route("/sandbox/trades/{trade_no}/confirm", post(confirm_trade))
        .route("/sandbox/qr/pay", post(pay_qr))
        .route("/sandbox/notifications", get(list_notifications))
        .route(
            "/sandbox/faults",
            get(read_faults).put(set_faults).delete(reset_faults),
        )
        .route(
            "/sandbox/faults/injected",
            get(|State(state): State<AppState>| async move { Json(state.faults.injected()) }),
        )
        .route("/sandbox/bills/{app_id}/{file}", get(read_bill))
}

/// Longest app id / logon id accepted.
const ID_CHARS_MAX: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterApp {
    pub app_id: String,
    /// The app's RSA public key: PEM or the console's bare base64.
    pub public_key: String,
    /// Service fee in basis points (60 = 0.6%); a new app gets 60, a re-key keeps its rate.
    #[serde(default)]
    pub fee_rate_bp: Option<i64>,
}

/// Highest fee rate accepted: 100%.
const FEE_RATE_BP_MAX: i64 = 10_000;

async fn register_app(
    State(state): State<AppState>,
    Json(req): Json<RegisterApp>,
) -> Result<Json<serde_json::Value>, SandboxError> {
    if req.app_id.is_empty() || req.app_id.len() > ID_CHARS_MAX {
        return Err(SandboxError::BadRequest(
            "app_id must be 1..=64 characters".into(),
        ));
    }
    if req
        .fee_rate_bp
        .is_some_and(|bp| !(0..=FEE_RATE_BP_MAX).contains(&bp))
    {
        return Err(SandboxError::BadRequest(
            "fee_rate_bp must be 0..=10000".into(),
        ));
    }
    let key = Verifier::from_text(&req.public_key)
        .map_err(|e| SandboxError::BadRequest(e.to_string()))?;
    // Partner ids are 16 digits starting 2088, like user ids.
    let seller_id = format!("2088{}", random_digits(12));
    state
        .store
        .upsert_app(
            &req.app_id,
            &key.to_base64(),
            req.fee_rate_bp,
            &seller_id,
            now_ms(),
        )
        .await?;
    let app = state
        .store
        .app(&req.app_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("app vanished after registration"))?;
    Ok(Json(serde_json::json!({
        "app_id": app.app_id,
        "fee_rate_bp": app.fee_rate_bp,
        "seller_id": app.seller_id,
    })))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealNameBody {
    pub real_name: bool,
}

/// The buyer completes (or loses) real-name certification in the wallet.
async fn set_real_name(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Json(req): Json<RealNameBody>,
) -> Result<Json<UserView>, SandboxError> {
    if !state.store.set_real_name(&user_id, req.real_name).await? {
        return Err(SandboxError::NotFound(format!("no user {user_id}")));
    }
    read_user(State(state), Path(user_id)).await
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
    pub product_code: &'static str,
    pub total_amount: String,
    pub refunded_amount: String,
    /// The service fee charged to the merchant, and what refunds gave back of it.
    pub fee: String,
    pub refunded_fee: String,
    pub trade_status: &'static str,
    pub buyer_user_id: Option<String>,
    pub agreement_no: Option<String>,
    pub qr_code: Option<String>,
    pub notify_url: Option<String>,
    pub store_id: Option<String>,
    pub terminal_id: Option<String>,
    pub operator_id: Option<String>,
    pub cancel_action: Option<String>,
    pub created_at_ms: i64,
    pub paid_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub refunds: Vec<RefundView>,
}

#[derive(Serialize)]
pub struct RefundView {
    pub out_request_no: String,
    /// "refund" or "cancel" (the reversal of a paid trade).
    pub kind: &'static str,
    pub refund_amount: String,
    pub refunded_total: String,
    pub refunded_fee: String,
    pub reason: Option<String>,
    pub created_at_ms: i64,
}

async fn trade_view(state: &AppState, t: TradeRow) -> Result<TradeView, SandboxError> {
    let refunds: Vec<RefundView> = state
        .store
        .refunds(&t.trade_no)
        .await?
        .into_iter()
        .map(|r| RefundView {
            out_request_no: r.out_request_no,
            kind: r.kind.as_str(),
            refund_amount: format_fen(r.refund_fen),
            refunded_total: format_fen(r.refunded_total_fen),
            refunded_fee: format_fen(r.fee_fen),
            reason: r.reason,
            created_at_ms: r.created_at_ms,
        })
        .collect();
    let refunded_fee_fen: i64 = state
        .store
        .refunds(&t.trade_no)
        .await?
        .iter()
        .map(|r| r.fee_fen)
        .sum();
    Ok(TradeView {
        qr_code: trade::qr_code(&t),
        trade_no: t.trade_no,
        app_id: t.app_id,
        out_trade_no: t.out_trade_no,
        subject: t.subject,
        product_code: t.product_code.as_str(),
        total_amount: format_fen(t.total_fen),
        refunded_amount: format_fen(t.refunded_fen),
        fee: format_fen(t.fee_fen),
        refunded_fee: format_fen(refunded_fee_fen),
        trade_status: t.status.as_str(),
        buyer_user_id: t.buyer_user_id,
        agreement_no: t.agreement_no,
        notify_url: t.notify_url,
        store_id: t.store_id,
        terminal_id: t.terminal_id,
        operator_id: t.operator_id,
        cancel_action: t.cancel_action,
        created_at_ms: t.created_at_ms,
        paid_at_ms: t.paid_at_ms,
        closed_at_ms: t.closed_at_ms,
        expires_at_ms: t.expires_at_ms,
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
    state.dispatcher_wake.notify_one();
    Ok(Json(trade_view(&state, t).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    pub amount_fen: i64,
}

async fn top_up(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Json(req): Json<TopUp>,
) -> Result<Json<UserView>, SandboxError> {
    if !(1..=AMOUNT_FEN_MAX).contains(&req.amount_fen) {
        return Err(SandboxError::BadRequest(format!(
            "amount_fen must be 1..={AMOUNT_FEN_MAX}"
        )));
    }
    if !state.store.top_up(&user_id, req.amount_fen).await? {
        return Err(SandboxError::NotFound(format!("no user {user_id}")));
    }
    read_user(State(state), Path(user_id)).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignAgreement {
    pub app_id: String,
    /// The most one deduction may take, in fen.
    pub single_limit_fen: i64,
}

#[derive(Serialize)]
pub struct AgreementView {
    pub agreement_no: String,
    pub external_agreement_no: Option<String>,
    pub app_id: String,
    pub user_id: String,
    pub status: &'static str,
    pub single_limit_fen: i64,
    pub sign_time: String,
    pub unsign_time: Option<String>,
}

impl From<AgreementRow> for AgreementView {
    fn from(a: AgreementRow) -> AgreementView {
        AgreementView {
            agreement_no: a.agreement_no,
            external_agreement_no: a.external_agreement_no,
            app_id: a.app_id,
            user_id: a.user_id,
            status: a.status.as_str(),
            single_limit_fen: a.single_limit_fen,
            sign_time: api_time(a.sign_time_ms),
            unsign_time: a.unsign_time_ms.map(api_time),
        }
    }
}

/// The sandbox's shortcut: the buyer signs a withholding agreement with an app directly (no
/// merchant number, no notification). A merchant that binds agreements to its customers uses
/// the page-sign flow instead ([`open_sign_url`]).
async fn sign_agreement(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Json(req): Json<SignAgreement>,
) -> Result<(StatusCode, Json<AgreementView>), SandboxError> {
    check_single_limit(req.single_limit_fen)?;
    let agreement = agreement::sign_direct(
        &state.store,
        &user_id,
        &req.app_id,
        req.single_limit_fen,
        now_ms(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(agreement.into())))
}

fn check_single_limit(single_limit_fen: i64) -> Result<(), SandboxError> {
    if (1..=AMOUNT_FEN_MAX).contains(&single_limit_fen) {
        Ok(())
    } else {
        Err(SandboxError::BadRequest(format!(
            "single_limit_fen must be 1..={AMOUNT_FEN_MAX}"
        )))
    }
}

/// The most one deduction may take when the buyer does not say: 2,000.00 CNY.
const SINGLE_LIMIT_FEN_DEFAULT: i64 = 200_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSignUrl {
    /// The merchant's signed `alipay.user.agreement.page.sign` request as the buyer's wallet
    /// received it: a `https://…/gateway.do?…` URL, an `alipays://platformapi/startapp?…
    /// &sign_params=…` link, or the bare query string.
    pub sign_url: String,
    /// The most one deduction may take, in fen; default 2,000.00 CNY.
    #[serde(default)]
    pub single_limit_fen: Option<i64>,
}

/// The buyer opens a merchant's signing link in the wallet and signs: the request is checked
/// exactly as `gateway.do` checks it (app, signature, method, biz_content), the agreement
/// carries the merchant's number, and the merchant's `notify_url` gets `dut_user_sign`.
/// 201 for a new agreement, 200 when this buyer had already signed that link.
async fn open_sign_url(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Json(req): Json<OpenSignUrl>,
) -> Result<(StatusCode, Json<AgreementView>), SandboxError> {
    let single_limit_fen = req.single_limit_fen.unwrap_or(SINGLE_LIMIT_FEN_DEFAULT);
    check_single_limit(single_limit_fen)?;
    let page = crate::openapi::page_sign_of_url(&state, &req.sign_url).await?;
    let (agreement, new) =
        agreement::sign(&state.store, &user_id, &page, single_limit_fen, now_ms()).await?;
    state.dispatcher_wake.notify_one();
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(agreement.into())))
}

async fn read_agreement(
    State(state): State<AppState>,
    Path(agreement_no): Path<String>,
) -> Result<Json<AgreementView>, SandboxError> {
    let a = state
        .store
        .agreement(&agreement_no)
        .await?
        .ok_or_else(|| SandboxError::NotFound(format!("no agreement {agreement_no}")))?;
    Ok(Json(a.into()))
}

async fn set_agreement(
    state: AppState,
    agreement_no: String,
    to: AgreementStatus,
) -> Result<Json<AgreementView>, SandboxError> {
    let key = agreement::AgreementKey::Number(agreement_no.clone());
    let changed = agreement::set_status(&state.store, None, &key, to, now_ms())
        .await
        .map_err(|e| match e {
            SandboxError::Business { .. } => {
                SandboxError::NotFound(format!("no agreement {agreement_no} in force"))
            }
            other => other,
        })?;
    state.dispatcher_wake.notify_one();
    Ok(Json(changed.into()))
}

/// The buyer ends the agreement in the wallet; deductions and queries then find no agreement,
/// and a merchant that signed it through the page-sign flow gets `dut_user_unsign`.
async fn unsign_agreement(
    State(state): State<AppState>,
    Path(agreement_no): Path<String>,
) -> Result<Json<AgreementView>, SandboxError> {
    set_agreement(state, agreement_no, AgreementStatus::Unsign).await
}

/// The agreement is paused (status STOP); deductions are refused.
async fn stop_agreement(
    State(state): State<AppState>,
    Path(agreement_no): Path<String>,
) -> Result<Json<AgreementView>, SandboxError> {
    set_agreement(state, agreement_no, AgreementStatus::Stop).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayQr {
    pub qr_code: String,
    pub user_id: String,
}

/// The buyer scans a precreated code in the wallet and pays it.
async fn pay_qr(
    State(state): State<AppState>,
    Json(req): Json<PayQr>,
) -> Result<Json<TradeView>, SandboxError> {
    if req.qr_code.len() > 256 {
        return Err(SandboxError::BadRequest("qr_code is too long".into()));
    }
    let outcome = trade::pay_qr(&state.store, &req.qr_code, &req.user_id, now_ms()).await?;
    state.dispatcher_wake.notify_one();
    let t = match outcome {
        PayOutcome::Paid(t) | PayOutcome::UserPaying(t) => t,
    };
    Ok(Json(trade_view(&state, t).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationFilter {
    pub out_trade_no: String,
}

#[derive(Serialize)]
pub struct NotificationView {
    pub notify_id: String,
    pub app_id: String,
    pub trade_no: String,
    pub out_trade_no: String,
    pub notify_url: String,
    pub trade_status: Option<String>,
    pub status: &'static str,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
    /// The parameters as sent (without notify_time, sign_type and sign).
    pub params: serde_json::Value,
}

/// Most notifications one listing answers.
const NOTIFICATIONS_LISTED_MAX: i64 = 200;

impl From<NotificationRow> for NotificationView {
    fn from(n: NotificationRow) -> NotificationView {
        let params: serde_json::Value =
            serde_json::from_str(&n.params_json).unwrap_or(serde_json::Value::Null);
        NotificationView {
            trade_status: params["trade_status"].as_str().map(str::to_string),
            notify_id: n.notify_id,
            app_id: n.app_id,
            trade_no: n.trade_no,
            out_trade_no: n.out_trade_no,
            notify_url: n.notify_url,
            status: n.status.as_str(),
            attempts: n.attempts,
            next_attempt_at_ms: n.next_attempt_at_ms,
            last_error: n.last_error,
            created_at_ms: n.created_at_ms,
            delivered_at_ms: n.delivered_at_ms,
            params,
        }
    }
}

async fn list_notifications(
    State(state): State<AppState>,
    Query(filter): Query<NotificationFilter>,
) -> Result<Json<Vec<NotificationView>>, SandboxError> {
    let rows = state
        .store
        .notifications_for_order(&filter.out_trade_no, NOTIFICATIONS_LISTED_MAX)
        .await?;
    Ok(Json(rows.into_iter().map(NotificationView::from).collect()))
}

async fn read_faults(State(state): State<AppState>) -> Json<Faults> {
    Json(state.faults.current())
}

async fn set_faults(
    State(state): State<AppState>,
    Json(faults): Json<Faults>,
) -> Result<Json<Faults>, SandboxError> {
    faults.validate()?;
    tracing::info!(faults = ?faults, "fault knobs set");
    state.faults.set(faults);
    Ok(Json(state.faults.current()))
}

async fn reset_faults(State(state): State<AppState>) -> Json<Faults> {
    state.faults.set(Faults::default());
    Json(state.faults.current())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillQuery {
    #[serde(default)]
    pub charset: Option<String>,
}

/// `GET /sandbox/bills/{app_id}/{yyyy-MM-dd}.csv?charset=GBK|UTF-8`: the day's trade bill.
async fn read_bill(
    State(state): State<AppState>,
    Path((app_id, file)): Path<(String, String)>,
    Query(q): Query<BillQuery>,
) -> Result<Response, SandboxError> {
    let charset = match q.charset.as_deref() {
        None => Charset::Gbk,
        Some(c) => Charset::parse(c)
            .ok_or_else(|| SandboxError::BadRequest(format!("charset {c} is not GBK or UTF-8")))?,
    };
    let date = file
        .strip_suffix(".csv")
        .and_then(parse_date)
        .ok_or_else(|| SandboxError::NotFound(format!("no bill {file}; ask for yyyy-MM-dd.csv")))?;
    let app = state
        .store
        .app(&app_id)
        .await?
        .ok_or_else(|| SandboxError::NotFound(format!("no app {app_id}")))?;
    let from = day_start_ms(date);
    let to = date.tomorrow().map(day_start_ms).unwrap_or(i64::MAX);
    let trades = state
        .store
        .trades_paid_between(&app_id, from, to, bill::ROWS_MAX)
        .await?;
    let refunds = state
        .store
        .refunds_between(&app_id, from, to, bill::ROWS_MAX)
        .await?;
    let account = format!("{}0156", app.seller_id.unwrap_or_default());
    let text = bill::render(&BillInput {
        account: &account,
        date,
        trades: &trades,
        refunds: &refunds,
        exported_at_ms: now_ms(),
    });
    let bytes = bill::encode(&text, charset);
    let name = format!("{}_{}_业务明细.csv", account, date.strftime("%Y%m%d"));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                format!("text/csv; charset={}", charset.label()),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}.csv\"; filename*=UTF-8''{}",
                    date,
                    percent(&name)
                ),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// RFC 5987 percent-encoding of a file name.
fn percent(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
