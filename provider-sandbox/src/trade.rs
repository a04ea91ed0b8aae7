//! The platform's trade rules: pay by payment code, precreate a QR and its payment by the buyer,
//! deduction under a withholding agreement, query, cancel, refund, the buyer's confirmation of a
//! payment that waited for it, and the closing of unpaid trades that expired.
//!
//! Each operation is one database transaction; a refusal rolls it back, so a refused call changes
//! nothing (one documented exception: a deduction refused for the buyer's balance records the
//! trade as `WAIT_BUYER_PAY`, as the platform does, so the same `out_trade_no` can be retried).
//! Idempotency follows the platform: a repeated pay with the same `out_trade_no` and amount
//! answers the same trade, a repeated precreate answers the same `qr_code`, a repeated refund
//! with the same `out_request_no` and amount answers the same refund without moving money again,
//! a repeated cancel answers the same action. Concurrent duplicates are settled by constraints in
//! the store, after which the loser replays.
//!
//! Every change a merchant with a `notify_url` must hear about (paid, closed, refunded) writes its
//! notification in the same transaction ([`crate::notify::enqueue`]). The service fee is fixed
//! when a trade is paid ([`service_fee_fen`]) and given back pro rata by refunds
//! ([`refund_fee_share`]).
//!
//! This module knows nothing about HTTP, signatures or JSON.

use rand::Rng;

use crate::error::SandboxError;
use crate::notify;
use crate::store::{
    self, AgreementStatus, ProductCode, RefundKind, RefundRow, Store, TradeRow, TradeStatus,
};

pub const ACQ_TRADE_NOT_EXIST: &str = "ACQ.TRADE_NOT_EXIST";
pub const ACQ_PAYMENT_AUTH_CODE_INVALID: &str = "ACQ.PAYMENT_AUTH_CODE_INVALID";
pub const ACQ_BUYER_BALANCE_NOT_ENOUGH: &str = "ACQ.BUYER_BALANCE_NOT_ENOUGH";
pub const ACQ_TRADE_HAS_CLOSE: &str = "ACQ.TRADE_HAS_CLOSE";
pub const ACQ_TRADE_HAS_SUCCESS: &str = "ACQ.TRADE_HAS_SUCCESS";
pub const ACQ_TRADE_HAS_FINISHED: &str = "ACQ.TRADE_HAS_FINISHED";
pub const ACQ_TRADE_STATUS_ERROR: &str = "ACQ.TRADE_STATUS_ERROR";
pub const ACQ_REASON_TRADE_REFUND_FEE_ERR: &str = "ACQ.REASON_TRADE_REFUND_FEE_ERR";
pub const ACQ_DISCORDANT_REPEAT_REQUEST: &str = "ACQ.DISCORDANT_REPEAT_REQUEST";
pub const ACQ_CONTEXT_INCONSISTENT: &str = "ACQ.CONTEXT_INCONSISTENT";
pub const ACQ_INVALID_PARAMETER: &str = "ACQ.INVALID_PARAMETER";
pub const ACQ_AGREEMENT_NOT_EXIST: &str = "ACQ.AGREEMENT_NOT_EXIST";
pub const ACQ_AGREEMENT_STATUS_NOT_NORMAL: &str = "ACQ.AGREEMENT_STATUS_NOT_NORMAL";
/// 商家扣款的单笔金额超过签约时限制: the deduction is above the agreement's single limit.
pub const ACQ_CYCLE_PAY_SINGLE_FEE_EXCEED: &str = "ACQ.CYCLE_PAY_SINGLE_FEE_EXCEED";

/// How often an operation re-reads and retries after losing a race to a concurrent duplicate.
const RACE_ATTEMPTS_MAX: usize = 3;

/// Length of the random token in a precreated `qr_code`: 24 characters of 36 is ~124 bits, not
/// guessable.
const QR_TOKEN_CHARS: usize = 24;

/// Where precreated codes point; the host is reserved (`.invalid`) so nothing real resolves it.
pub const QR_CODE_PREFIX: &str = "https://qr.sandbox.turnpike.invalid/";

/// Trade facts a merchant may pass with any creating call, kept on the trade.
#[derive(Debug, Clone, Default)]
pub struct TradeOptions {
    pub notify_url: Option<String>,
    pub terminal_id: Option<String>,
    pub store_id: Option<String>,
    pub operator_id: Option<String>,
    /// How long the trade may stay unpaid (`timeout_express`).
    pub timeout_ms: i64,
}

pub struct PayRequest {
    pub out_trade_no: String,
    pub auth_code: String,
    pub total_fen: i64,
    pub subject: String,
    pub options: TradeOptions,
    /// Fault knob `user_paying_ms`: the buyer must confirm and does so by itself this long after
    /// (the call answers 10003 first).
    pub user_paying_ms: Option<u64>,
}

pub enum PayOutcome {
    /// Money moved: TRADE_SUCCESS (code 10000).
    Paid(TradeRow),
    /// The buyer must confirm on their phone: WAIT_BUYER_PAY (code 10003).
    UserPaying(TradeRow),
}

/// The platform's service fee on a paid trade: the shared rule
/// (`turnpike_provider_wire::fee::service_fee`, half-up to the fen).
pub use turnpike_provider_wire::fee::service_fee as service_fee_fen;

/// The part of a trade's fee a refund gives back: the shared cumulative pro rata rule
/// (`turnpike_provider_wire::fee::refund_fee`), never more than is left, so the shares of a
/// fully refunded trade add up to its fee.
pub fn refund_fee_share(
    fee_fen: i64,
    total_fen: i64,
    refund_fen: i64,
    refunded_total_after_fen: i64,
    fee_refunded_before_fen: i64,
) -> i64 {
    let left = (fee_fen - fee_refunded_before_fen).max(0);
    let refunded_before_fen = refunded_total_after_fen - refund_fen;
    turnpike_provider_wire::fee::refund_fee(fee_fen, total_fen, refunded_before_fen, refund_fen)
        .min(left)
}

#[allow(clippy::too_many_arguments)]
fn new_trade(
    app_id: &str,
    out_trade_no: &str,
    subject: &str,
    total_fen: i64,
    product_code: ProductCode,
    status: TradeStatus,
    options: &TradeOptions,
    now_ms: i64,
) -> TradeRow {
    TradeRow {
        trade_no: new_trade_no(now_ms),
        app_id: app_id.to_string(),
        out_trade_no: out_trade_no.to_string(),
        subject: subject.to_string(),
        total_fen,
        refunded_fen: 0,
        status,
        buyer_user_id: None,
        buyer_logon_id: None,
        auth_code: None,
        cancel_action: None,
        created_at_ms: now_ms,
        paid_at_ms: (status == TradeStatus::TradeSuccess).then_some(now_ms),
        closed_at_ms: None,
        product_code,
        notify_url: options.notify_url.clone(),
        agreement_no: None,
        terminal_id: options.terminal_id.clone(),
        store_id: options.store_id.clone(),
        operator_id: options.operator_id.clone(),
        fee_fen: 0,
        qr_token: None,
        expires_at_ms: Some(now_ms + options.timeout_ms),
        auto_confirm_at_ms: None,
        seller_id: None,
    }
}

async fn app_fee_rate(tx: &mut store::Tx, app_id: &str) -> Result<i64, SandboxError> {
    Ok(store::app_in(tx, app_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("app {app_id} vanished"))?
        .fee_rate_bp)
}

/// The trade as it stands inside `tx`, with its joined buyer and seller facts.
async fn reread(tx: &mut store::Tx, trade_no: &str) -> Result<TradeRow, SandboxError> {
    Ok(store::find_trade_any_app(tx, trade_no)
        .await?
        .ok_or_else(|| anyhow::anyhow!("trade {trade_no} vanished"))?)
}

pub async fn pay(
    store: &Store,
    app_id: &str,
    req: &PayRequest,
    now_ms: i64,
) -> Result<PayOutcome, SandboxError> {
    for _ in 0..RACE_ATTEMPTS_MAX {
        let mut tx = store.begin().await?;
        if let Some(existing) =
            store::find_trade(&mut tx, app_id, None, Some(&req.out_trade_no)).await?
        {
            tx.rollback().await?;
            return replay_pay(existing, req);
        }
        let invalid_code = || {
            SandboxError::business(
                ACQ_PAYMENT_AUTH_CODE_INVALID,
                "payment code invalid, expired or already used; ask the buyer to refresh it",
            )
        };
        let code = store::payment_code(&mut tx, &req.auth_code)
            .await?
            .ok_or_else(invalid_code)?;
        if code.used_at_ms.is_some() || code.expires_at_ms <= now_ms {
            return refusal_or_replay(tx, app_id, req, invalid_code()).await;
        }
        let buyer = store::user_in(&mut tx, &code.user_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("payment code {} has no user", code.user_id))?;
        let needs_confirmation = req.user_paying_ms.is_some()
            || buyer
                .confirm_over_fen
                .is_some_and(|over| req.total_fen > over);
        let balance_short = || {
            SandboxError::business(
                ACQ_BUYER_BALANCE_NOT_ENOUGH,
                "the buyer's balance is not enough",
            )
        };
        if !needs_confirmation && buyer.balance_fen < req.total_fen {
            return Err(balance_short());
        }
        let status = if needs_confirmation {
            TradeStatus::WaitBuyerPay
        } else {
            TradeStatus::TradeSuccess
        };
        let mut trade = new_trade(
            app_id,
            &req.out_trade_no,
            &req.subject,
            req.total_fen,
            ProductCode::FaceToFacePayment,
            status,
            &req.options,
            now_ms,
        );
        trade.buyer_user_id = Some(buyer.user_id.clone());
        trade.auth_code = Some(req.auth_code.clone());
        trade.auto_confirm_at_ms = req.user_paying_ms.map(|ms| now_ms + ms as i64);
        if !needs_confirmation {
            trade.fee_fen = service_fee_fen(req.total_fen, app_fee_rate(&mut tx, app_id).await?);
        }
        if !store::insert_trade(&mut tx, &trade).await? {
            // A concurrent pay with the same out_trade_no won; answer what it did.
            tx.rollback().await?;
            continue;
        }
        if !store::consume_code(&mut tx, &req.auth_code, now_ms).await? {
            return refusal_or_replay(tx, app_id, req, invalid_code()).await;
        }
        if !needs_confirmation && !store::debit(&mut tx, &buyer.user_id, req.total_fen).await? {
            return Err(balance_short());
        }
        let trade = reread(&mut tx, &trade.trade_no).await?;
        if !needs_confirmation {
            notify::enqueue(&mut tx, &trade, None, now_ms).await?;
        }
        tx.commit().await?;
        tracing::info!(trade_no = %trade.trade_no, out_trade_no = %trade.out_trade_no, amount_fen = trade.total_fen, status = trade.status.as_str(), "pay");
        return Ok(if needs_confirmation {
            PayOutcome::UserPaying(trade)
        } else {
            PayOutcome::Paid(trade)
        });
    }
    Err(anyhow::anyhow!("pay lost {RACE_ATTEMPTS_MAX} races in a row").into())
}

/// A code that looks used may have been used by a concurrent duplicate of this very call that
/// committed after our first look for the trade (PostgreSQL's READ COMMITTED gives each
/// statement a fresh snapshot). Look again: if that trade is there, this call is a replay.
async fn refusal_or_replay(
    mut tx: store::Tx,
    app_id: &str,
    req: &PayRequest,
    refusal: SandboxError,
) -> Result<PayOutcome, SandboxError> {
    let existing = store::find_trade(&mut tx, app_id, None, Some(&req.out_trade_no)).await?;
    tx.rollback().await?;
    match existing {
        Some(trade) if trade.auth_code.as_deref() == Some(req.auth_code.as_str()) => {
            replay_pay(trade, req)
        }
        _ => Err(refusal),
    }
}

fn replay_pay(existing: TradeRow, req: &PayRequest) -> Result<PayOutcome, SandboxError> {
    if existing.product_code != ProductCode::FaceToFacePayment {
        return Err(SandboxError::business(
            ACQ_CONTEXT_INCONSISTENT,
            "out_trade_no was already used by another kind of trade",
        ));
    }
    if existing.total_fen != req.total_fen {
        return Err(SandboxError::business(
            ACQ_DISCORDANT_REPEAT_REQUEST,
            "out_trade_no was already used with a different amount",
        ));
    }
    match existing.status {
        TradeStatus::TradeSuccess | TradeStatus::TradeFinished => Ok(PayOutcome::Paid(existing)),
        TradeStatus::WaitBuyerPay => Ok(PayOutcome::UserPaying(existing)),
        TradeStatus::TradeClosed => Err(SandboxError::business(
            ACQ_TRADE_HAS_CLOSE,
            "the trade is closed; use a new out_trade_no",
        )),
    }
}

pub struct PrecreateRequest {
    pub out_trade_no: String,
    pub total_fen: i64,
    pub subject: String,
    pub options: TradeOptions,
}

/// Creates a QR trade waiting for a buyer to scan it. Repeating it with the same out_trade_no,
/// amount and subject answers the same code; other values answer `ACQ.CONTEXT_INCONSISTENT`.
pub async fn precreate(
    store: &Store,
    app_id: &str,
    req: &PrecreateRequest,
    now_ms: i64,
) -> Result<TradeRow, SandboxError> {
    for _ in 0..RACE_ATTEMPTS_MAX {
        let mut tx = store.begin().await?;
        if let Some(existing) =
            store::find_trade(&mut tx, app_id, None, Some(&req.out_trade_no)).await?
        {
            tx.rollback().await?;
            if existing.product_code != ProductCode::QrCodeOffline
                || existing.total_fen != req.total_fen
                || existing.subject != req.subject
            {
                return Err(SandboxError::business(
                    ACQ_CONTEXT_INCONSISTENT,
                    "out_trade_no was already used with other trade details",
                ));
            }
            return match existing.status {
                TradeStatus::WaitBuyerPay
                    if existing.expires_at_ms.is_none_or(|at| at > now_ms) =>
                {
                    Ok(existing)
                }
                TradeStatus::TradeSuccess | TradeStatus::TradeFinished => Err(
                    SandboxError::business(ACQ_TRADE_HAS_SUCCESS, "the trade is already paid"),
                ),
                _ => Err(SandboxError::business(
                    ACQ_TRADE_HAS_CLOSE,
                    "the trade is closed; use a new out_trade_no",
                )),
            };
        }
        let mut trade = new_trade(
            app_id,
            &req.out_trade_no,
            &req.subject,
            req.total_fen,
            ProductCode::QrCodeOffline,
            TradeStatus::WaitBuyerPay,
            &req.options,
            now_ms,
        );
        trade.qr_token = Some(random_token(QR_TOKEN_CHARS));
        if !store::insert_trade(&mut tx, &trade).await? {
            tx.rollback().await?;
            continue;
        }
        let trade = reread(&mut tx, &trade.trade_no).await?;
        tx.commit().await?;
        tracing::info!(trade_no = %trade.trade_no, out_trade_no = %trade.out_trade_no, amount_fen = trade.total_fen, "precreate");
        return Ok(trade);
    }
    Err(anyhow::anyhow!("precreate lost {RACE_ATTEMPTS_MAX} races in a row").into())
}

/// The `qr_code` a precreated trade answers.
pub fn qr_code(trade: &TradeRow) -> Option<String> {
    trade
        .qr_token
        .as_ref()
        .map(|token| format!("{QR_CODE_PREFIX}{token}"))
}

/// A buyer scans a precreated code and pays (sandbox admin, standing for the wallet app). Pays at
/// once, or waits for the buyer's confirmation when the amount is above their `confirm_over`.
/// Refusals change nothing.
pub async fn pay_qr(
    store: &Store,
    qr_code: &str,
    user_id: &str,
    now_ms: i64,
) -> Result<PayOutcome, SandboxError> {
    let token = qr_code.strip_prefix(QR_CODE_PREFIX).unwrap_or(qr_code);
    for _ in 0..RACE_ATTEMPTS_MAX {
        let mut tx = store.begin().await?;
        let trade = store::find_trade_by_qr_token(&mut tx, token)
            .await?
            .ok_or_else(|| SandboxError::NotFound("no such qr_code".into()))?;
        let closed = || SandboxError::refused(ACQ_TRADE_HAS_CLOSE, "the code is closed or expired");
        match trade.status {
            TradeStatus::WaitBuyerPay => {}
            TradeStatus::TradeSuccess | TradeStatus::TradeFinished => {
                tx.rollback().await?;
                return if trade.buyer_user_id.as_deref() == Some(user_id) {
                    Ok(PayOutcome::Paid(trade))
                } else {
                    Err(SandboxError::refused(
                        ACQ_TRADE_HAS_SUCCESS,
                        "the code was paid by another buyer",
                    ))
                };
            }
            TradeStatus::TradeClosed => return Err(closed()),
        }
        if trade.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(closed());
        }
        match trade.buyer_user_id.as_deref() {
            Some(b) if b == user_id => {
                // Already scanned by this buyer and waiting for their confirmation.
                tx.rollback().await?;
                return Ok(PayOutcome::UserPaying(trade));
            }
            Some(_) => {
                return Err(SandboxError::refused(
                    ACQ_TRADE_STATUS_ERROR,
                    "another buyer scanned this code",
                ))
            }
            None => {}
        }
        let buyer = store::user_in(&mut tx, user_id)
            .await?
            .ok_or_else(|| SandboxError::NotFound(format!("no user {user_id}")))?;
        if buyer
            .confirm_over_fen
            .is_some_and(|over| trade.total_fen > over)
        {
            if !store::set_buyer(&mut tx, &trade.trade_no, user_id).await? {
                tx.rollback().await?;
                continue;
            }
            let trade = reread(&mut tx, &trade.trade_no).await?;
            tx.commit().await?;
            return Ok(PayOutcome::UserPaying(trade));
        }
        if !store::debit(&mut tx, user_id, trade.total_fen).await? {
            return Err(SandboxError::refused(
                ACQ_BUYER_BALANCE_NOT_ENOUGH,
                "the buyer's balance is not enough",
            ));
        }
        let fee = service_fee_fen(trade.total_fen, app_fee_rate(&mut tx, &trade.app_id).await?);
        if !store::mark_paid(&mut tx, &trade.trade_no, user_id, fee, now_ms).await? {
            tx.rollback().await?;
            continue;
        }
        let trade = reread(&mut tx, &trade.trade_no).await?;
        notify::enqueue(&mut tx, &trade, None, now_ms).await?;
        tx.commit().await?;
        tracing::info!(trade_no = %trade.trade_no, amount_fen = trade.total_fen, "qr paid");
        return Ok(PayOutcome::Paid(trade));
    }
    Err(anyhow::anyhow!("qr pay lost {RACE_ATTEMPTS_MAX} races in a row").into())
}

pub struct DeductRequest {
    pub out_trade_no: String,
    pub agreement_no: String,
    pub total_fen: i64,
    pub subject: String,
    pub options: TradeOptions,
}

/// Checks the agreement a deduction names: it must exist for this app, be NORMAL, and allow the
/// amount. Returns the buyer.
async fn deductible(
    tx: &mut store::Tx,
    app_id: &str,
    agreement_no: &str,
    total_fen: i64,
) -> Result<String, SandboxError> {
    let agreement = store::agreement_in(tx, agreement_no)
        .await?
        .filter(|a| a.app_id == app_id && a.status != AgreementStatus::Unsign)
        .ok_or_else(|| SandboxError::business(ACQ_AGREEMENT_NOT_EXIST, "用户协议不存在或已解约"))?;
    if agreement.status != AgreementStatus::Normal {
        return Err(SandboxError::business(
            ACQ_AGREEMENT_STATUS_NOT_NORMAL,
            "用户协议状态非NORMAL",
        ));
    }
    if total_fen > agreement.single_limit_fen {
        return Err(SandboxError::business(
            ACQ_CYCLE_PAY_SINGLE_FEE_EXCEED,
            "the amount exceeds the agreement's single deduction limit",
        ));
    }
    Ok(agreement.user_id)
}

/// Deduction under a withholding agreement (`alipay.trade.pay`, `GENERAL_WITHHOLDING`): no
/// payment code, no buyer confirmation. A deduction the buyer's balance cannot cover is recorded
/// as WAIT_BUYER_PAY and refused with `ACQ.BUYER_BALANCE_NOT_ENOUGH`; the same out_trade_no and
/// amount may be retried until it succeeds, is cancelled, or expires.
pub async fn deduct(
    store: &Store,
    app_id: &str,
    req: &DeductRequest,
    now_ms: i64,
) -> Result<TradeRow, SandboxError> {
    let balance_short = || {
        SandboxError::business(
            ACQ_BUYER_BALANCE_NOT_ENOUGH,
            "the buyer's balance is not enough; retry once it is topped up",
        )
    };
    for _ in 0..RACE_ATTEMPTS_MAX {
        let mut tx = store.begin().await?;
        if let Some(existing) =
            store::find_trade(&mut tx, app_id, None, Some(&req.out_trade_no)).await?
        {
            if existing.product_code != ProductCode::GeneralWithholding
                || existing.agreement_no.as_deref() != Some(req.agreement_no.as_str())
            {
                return Err(SandboxError::business(
                    ACQ_CONTEXT_INCONSISTENT,
                    "out_trade_no was already used with other trade details",
                ));
            }
            if existing.total_fen != req.total_fen {
                return Err(SandboxError::business(
                    ACQ_DISCORDANT_REPEAT_REQUEST,
                    "out_trade_no was already used with a different amount",
                ));
            }
            match existing.status {
                TradeStatus::TradeSuccess | TradeStatus::TradeFinished => {
                    tx.rollback().await?;
                    return Ok(existing);
                }
                TradeStatus::TradeClosed => {
                    return Err(SandboxError::business(
                        ACQ_TRADE_HAS_CLOSE,
                        "the trade is closed; use a new out_trade_no",
                    ))
                }
                TradeStatus::WaitBuyerPay => {}
            }
            if existing.expires_at_ms.is_some_and(|at| at <= now_ms) {
                return Err(SandboxError::business(
                    ACQ_TRADE_HAS_CLOSE,
                    "the trade expired; use a new out_trade_no",
                ));
            }
            // A retry of a deduction the balance could not cover.
            let buyer = deductible(&mut tx, app_id, &req.agreement_no, req.total_fen).await?;
            if !store::debit(&mut tx, &buyer, req.total_fen).await? {
                return Err(balance_short());
            }
            let fee = service_fee_fen(req.total_fen, app_fee_rate(&mut tx, app_id).await?);
            if !store::mark_paid(&mut tx, &existing.trade_no, &buyer, fee, now_ms).await? {
                tx.rollback().await?;
                continue;
            }
            let trade = reread(&mut tx, &existing.trade_no).await?;
            notify::enqueue(&mut tx, &trade, None, now_ms).await?;
            tx.commit().await?;
            tracing::info!(trade_no = %trade.trade_no, amount_fen = trade.total_fen, "deduction retried and paid");
            return Ok(trade);
        }
        let buyer = deductible(&mut tx, app_id, &req.agreement_no, req.total_fen).await?;
        let balance = store::user_in(&mut tx, &buyer)
            .await?
            .ok_or_else(|| anyhow::anyhow!("agreement user {buyer} vanished"))?
            .balance_fen;
        let covered = balance >= req.total_fen;
        let mut trade = new_trade(
            app_id,
            &req.out_trade_no,
            &req.subject,
            req.total_fen,
            ProductCode::GeneralWithholding,
            if covered {
                TradeStatus::TradeSuccess
            } else {
                TradeStatus::WaitBuyerPay
            },
            &req.options,
            now_ms,
        );
        trade.buyer_user_id = Some(buyer.clone());
        trade.agreement_no = Some(req.agreement_no.clone());
        if covered {
            trade.fee_fen = service_fee_fen(req.total_fen, app_fee_rate(&mut tx, app_id).await?);
        }
        if !store::insert_trade(&mut tx, &trade).await? {
            tx.rollback().await?;
            continue;
        }
        if !covered {
            tx.commit().await?;
            tracing::info!(trade_no = %trade.trade_no, "deduction refused: balance not enough");
            return Err(balance_short());
        }
        if !store::debit(&mut tx, &buyer, req.total_fen).await? {
            tx.rollback().await?;
            continue;
        }
        let trade = reread(&mut tx, &trade.trade_no).await?;
        notify::enqueue(&mut tx, &trade, None, now_ms).await?;
        tx.commit().await?;
        tracing::info!(trade_no = %trade.trade_no, amount_fen = trade.total_fen, "deduction paid");
        return Ok(trade);
    }
    Err(anyhow::anyhow!("deduction lost {RACE_ATTEMPTS_MAX} races in a row").into())
}

/// Identifies a trade the way the API lets a merchant: by the platform's `trade_no` or the
/// merchant's `out_trade_no`.
pub struct TradeKey {
    pub trade_no: Option<String>,
    pub out_trade_no: Option<String>,
}

/// A precreated code nobody has scanned is not a trade yet for query and refund: the platform
/// creates the order when the buyer scans it, and answers `ACQ.TRADE_NOT_EXIST` until then.
pub async fn query(store: &Store, app_id: &str, key: &TradeKey) -> Result<TradeRow, SandboxError> {
    let mut tx = store.begin().await?;
    let trade = find(&mut tx, app_id, key, false).await?;
    tx.rollback().await?;
    Ok(trade)
}

async fn find(
    tx: &mut store::Tx,
    app_id: &str,
    key: &TradeKey,
    include_unscanned: bool,
) -> Result<TradeRow, SandboxError> {
    store::find_trade(
        tx,
        app_id,
        key.trade_no.as_deref(),
        key.out_trade_no.as_deref(),
    )
    .await?
    .filter(|t| include_unscanned || t.buyer_user_id.is_some())
    .ok_or_else(|| SandboxError::business(ACQ_TRADE_NOT_EXIST, "the trade does not exist"))
}

pub struct CancelOutcome {
    pub trade: TradeRow,
    /// "close" (an unpaid trade was closed) or "refund" (a paid trade was reversed).
    pub action: &'static str,
}

/// Cancels a trade: closes it when unpaid (a precreated code nobody scanned included), reverses it
/// when paid (a refund of what is left, recorded as a refund row of kind cancel).
pub async fn cancel(
    store: &Store,
    app_id: &str,
    key: &TradeKey,
    now_ms: i64,
) -> Result<CancelOutcome, SandboxError> {
    for _ in 0..RACE_ATTEMPTS_MAX {
        let mut tx = store.begin().await?;
        let trade = find(&mut tx, app_id, key, true).await?;
        let action = match trade.status {
            TradeStatus::WaitBuyerPay => {
                if !store::transition(
                    &mut tx,
                    &trade.trade_no,
                    TradeStatus::WaitBuyerPay,
                    TradeStatus::TradeClosed,
                    now_ms,
                    Some("close"),
                )
                .await?
                {
                    tx.rollback().await?;
                    continue;
                }
                let closed = reread(&mut tx, &trade.trade_no).await?;
                notify::enqueue(&mut tx, &closed, None, now_ms).await?;
                "close"
            }
            TradeStatus::TradeSuccess => {
                // Reversal refunds whatever has not been refunded yet and closes the trade.
                let remaining_fen = trade.total_fen - trade.refunded_fen;
                let mut reversal = None;
                if remaining_fen > 0 {
                    let Some(refunded_total_fen) =
                        store::add_refund_to_trade(&mut tx, &trade.trade_no, remaining_fen, now_ms)
                            .await?
                    else {
                        tx.rollback().await?;
                        continue;
                    };
                    let fee_before = store::refunded_fee_fen(&mut tx, &trade.trade_no).await?;
                    let refund = RefundRow {
                        trade_no: trade.trade_no.clone(),
                        // The reversal has no merchant request number; the platform's trade
                        // number keeps it distinct from any refund the merchant made.
                        out_request_no: trade.trade_no.clone(),
                        refund_fen: remaining_fen,
                        refunded_total_fen,
                        reason: Some("cancel".into()),
                        created_at_ms: now_ms,
                        kind: RefundKind::Cancel,
                        fee_fen: refund_fee_share(
                            trade.fee_fen,
                            trade.total_fen,
                            remaining_fen,
                            refunded_total_fen,
                            fee_before,
                        ),
                    };
                    if !store::insert_refund(&mut tx, &refund).await? {
                        return Err(anyhow::anyhow!(
                            "a refund numbered like trade {} already exists",
                            trade.trade_no
                        )
                        .into());
                    }
                    let buyer = trade
                        .buyer_user_id
                        .as_deref()
                        .ok_or_else(|| anyhow::anyhow!("paid trade without a buyer"))?;
                    store::credit(&mut tx, buyer, remaining_fen).await?;
                    reversal = Some(refund);
                }
                store::transition(
                    &mut tx,
                    &trade.trade_no,
                    TradeStatus::TradeClosed,
                    TradeStatus::TradeClosed,
                    now_ms,
                    Some("refund"),
                )
                .await?;
                let closed = reread(&mut tx, &trade.trade_no).await?;
                notify::enqueue(&mut tx, &closed, reversal.as_ref(), now_ms).await?;
                "refund"
            }
            TradeStatus::TradeClosed => {
                // Already closed: answer the same action again, moving nothing.
                tx.rollback().await?;
                let action = match trade.cancel_action.as_deref() {
                    Some("close") => "close",
                    Some(_) => "refund",
                    None if trade.refunded_fen > 0 => "refund",
                    None => "close",
                };
                return Ok(CancelOutcome { trade, action });
            }
            TradeStatus::TradeFinished => {
                return Err(SandboxError::business(
                    ACQ_TRADE_HAS_FINISHED,
                    "the trade is finished and can no longer be cancelled",
                ));
            }
        };
        let trade = reread(&mut tx, &trade.trade_no).await?;
        tx.commit().await?;
        tracing::info!(trade_no = %trade.trade_no, action, "cancel");
        return Ok(CancelOutcome { trade, action });
    }
    Err(anyhow::anyhow!("cancel lost {RACE_ATTEMPTS_MAX} races in a row").into())
}

pub struct RefundRequest {
    pub key: TradeKey,
    pub refund_fen: i64,
    /// Defaults to the trade's out_trade_no, as the platform does (one full refund).
    pub out_request_no: Option<String>,
    pub reason: Option<String>,
}

pub struct RefundOutcome {
    pub trade: TradeRow,
    pub refund: RefundRow,
    /// False when this answer replays an earlier identical refund.
    pub fund_change: bool,
}

pub async fn refund(
    store: &Store,
    app_id: &str,
    req: &RefundRequest,
    now_ms: i64,
) -> Result<RefundOutcome, SandboxError> {
    for _ in 0..RACE_ATTEMPTS_MAX {
        let mut tx = store.begin().await?;
        let trade = find(&mut tx, app_id, &req.key, false).await?;
        let out_request_no = req
            .out_request_no
            .clone()
            .unwrap_or_else(|| trade.out_trade_no.clone());
        if let Some(existing) = store::refund(&mut tx, &trade.trade_no, &out_request_no).await? {
            tx.rollback().await?;
            if existing.refund_fen != req.refund_fen {
                return Err(SandboxError::business(
                    ACQ_DISCORDANT_REPEAT_REQUEST,
                    "out_request_no was already used with a different refund amount",
                ));
            }
            return Ok(RefundOutcome {
                trade,
                refund: existing,
                fund_change: false,
            });
        }
        match trade.status {
            TradeStatus::TradeSuccess => {}
            TradeStatus::WaitBuyerPay => {
                return Err(SandboxError::business(
                    ACQ_TRADE_STATUS_ERROR,
                    "the trade is not paid",
                ))
            }
            TradeStatus::TradeClosed => {
                return Err(SandboxError::business(
                    ACQ_TRADE_HAS_CLOSE,
                    "the trade is closed",
                ))
            }
            TradeStatus::TradeFinished => {
                return Err(SandboxError::business(
                    ACQ_TRADE_HAS_FINISHED,
                    "the trade is finished",
                ))
            }
        }
        let too_much = || {
            SandboxError::business(
                ACQ_REASON_TRADE_REFUND_FEE_ERR,
                "the refund amount exceeds what is left to refund",
            )
        };
        if trade.refunded_fen + req.refund_fen > trade.total_fen {
            return Err(too_much());
        }
        let Some(refunded_total_fen) =
            store::add_refund_to_trade(&mut tx, &trade.trade_no, req.refund_fen, now_ms).await?
        else {
            tx.rollback().await?;
            continue;
        };
        let fee_before = store::refunded_fee_fen(&mut tx, &trade.trade_no).await?;
        let refund = RefundRow {
            trade_no: trade.trade_no.clone(),
            out_request_no,
            refund_fen: req.refund_fen,
            refunded_total_fen,
            reason: req.reason.clone(),
            created_at_ms: now_ms,
            kind: RefundKind::Refund,
            fee_fen: refund_fee_share(
                trade.fee_fen,
                trade.total_fen,
                req.refund_fen,
                refunded_total_fen,
                fee_before,
            ),
        };
        if !store::insert_refund(&mut tx, &refund).await? {
            // A concurrent identical refund won; the next attempt replays it.
            tx.rollback().await?;
            continue;
        }
        let buyer = trade
            .buyer_user_id
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("paid trade without a buyer"))?;
        store::credit(&mut tx, buyer, req.refund_fen).await?;
        let trade = reread(&mut tx, &trade.trade_no).await?;
        notify::enqueue(&mut tx, &trade, Some(&refund), now_ms).await?;
        tx.commit().await?;
        tracing::info!(trade_no = %trade.trade_no, out_request_no = %refund.out_request_no, amount_fen = refund.refund_fen, "refund");
        return Ok(RefundOutcome {
            trade,
            refund,
            fund_change: true,
        });
    }
    Err(anyhow::anyhow!("refund lost {RACE_ATTEMPTS_MAX} races in a row").into())
}

/// The buyer confirms a payment that waited for them (sandbox admin, or the `user_paying_ms`
/// fault knob): money moves now.
pub async fn confirm(store: &Store, trade_no: &str, now_ms: i64) -> Result<TradeRow, SandboxError> {
    let mut tx = store.begin().await?;
    let trade = store::find_trade_any_app(&mut tx, trade_no)
        .await?
        .ok_or_else(|| SandboxError::NotFound(format!("no trade {trade_no}")))?;
    if trade.status != TradeStatus::WaitBuyerPay {
        return Err(SandboxError::BadRequest(format!(
            "trade {trade_no} is {}, not WAIT_BUYER_PAY",
            trade.status.as_str()
        )));
    }
    let Some(buyer) = trade.buyer_user_id.clone() else {
        return Err(SandboxError::BadRequest(format!(
            "trade {trade_no} has no buyer yet; pay its qr_code"
        )));
    };
    if !store::debit(&mut tx, &buyer, trade.total_fen).await? {
        return Err(SandboxError::refused(
            ACQ_BUYER_BALANCE_NOT_ENOUGH,
            "the buyer's balance is not enough",
        ));
    }
    let fee = service_fee_fen(trade.total_fen, app_fee_rate(&mut tx, &trade.app_id).await?);
    if !store::mark_paid(&mut tx, trade_no, &buyer, fee, now_ms).await? {
        return Err(SandboxError::BadRequest(format!(
            "trade {trade_no} changed concurrently"
        )));
    }
    let trade = reread(&mut tx, trade_no).await?;
    notify::enqueue(&mut tx, &trade, None, now_ms).await?;
    tx.commit().await?;
    tracing::info!(trade_no = %trade.trade_no, "buyer confirmed");
    Ok(trade)
}

/// Closes a waiting trade whose time ran out (`timeout_express`), notifying TRADE_CLOSED; false
/// when it was not due or no longer waiting.
pub async fn expire(store: &Store, trade_no: &str, now_ms: i64) -> Result<bool, SandboxError> {
    let mut tx = store.begin().await?;
    let Some(trade) = store::find_trade_any_app(&mut tx, trade_no).await? else {
        return Ok(false);
    };
    let due = trade.status == TradeStatus::WaitBuyerPay
        && trade.expires_at_ms.is_some_and(|at| at <= now_ms);
    if !due
        || !store::transition(
            &mut tx,
            trade_no,
            TradeStatus::WaitBuyerPay,
            TradeStatus::TradeClosed,
            now_ms,
            None,
        )
        .await?
    {
        tx.rollback().await?;
        return Ok(false);
    }
    let trade = reread(&mut tx, trade_no).await?;
    notify::enqueue(&mut tx, &trade, None, now_ms).await?;
    tx.commit().await?;
    tracing::info!(trade_no, "unpaid trade expired");
    Ok(true)
}

/// Most waiting trades one sweep settles; the rest wait for the next sweep.
pub const SWEEP_BATCH_MAX: i64 = 100;

/// Settles waiting trades that are due: the `user_paying_ms` buyer confirms (if the balance
/// allows; otherwise the trade waits for its expiry), expired ones close. Returns how many were
/// looked at.
pub async fn sweep_due(store: &Store, now_ms: i64) -> Result<usize, SandboxError> {
    let due = store.due_unpaid_trades(now_ms, SWEEP_BATCH_MAX).await?;
    for trade_no in &due {
        let Some(trade) = store.trade(trade_no).await? else {
            continue;
        };
        let expired = trade.expires_at_ms.is_some_and(|at| at <= now_ms);
        if !expired && trade.auto_confirm_at_ms.is_some_and(|at| at <= now_ms) {
            if let Err(e) = confirm(store, trade_no, now_ms).await {
                tracing::info!(trade_no, error = %e, "automatic confirmation failed");
                store.clear_auto_confirm(trade_no).await?;
            }
        } else if expired {
            expire(store, trade_no, now_ms).await?;
        }
    }
    Ok(due.len())
}

/// The platform shows merchants a masked buyer account, e.g. `159******20`.
pub fn mask_logon_id(logon_id: &str) -> String {
    let chars: Vec<char> = logon_id.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

/// A platform trade number: the business date (Asia/Shanghai) and 20 random digits, 28 in all,
/// like `2013112011001004330000121536`.
fn new_trade_no(now_ms: i64) -> String {
    let date = crate::time::shanghai(now_ms, "%Y%m%d");
    format!("{date}{}", random_digits(20))
}

pub fn random_digits(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// Lower-case letters and digits, from the thread's CSPRNG.
pub fn random_token(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the fee is rounded half-up to the fen.
    #[test]
    fn fee_rounds_half_up() {
        assert_eq!(service_fee_fen(10_000, 60), 60);
        assert_eq!(service_fee_fen(1250, 60), 8); // 7.5 → 8
        assert_eq!(service_fee_fen(1249, 60), 7); // 7.494 → 7
        assert_eq!(service_fee_fen(83, 60), 0); // 0.498 → 0
        assert_eq!(service_fee_fen(84, 60), 1); // 0.504 → 1
        assert_eq!(service_fee_fen(100, 0), 0);
    }

    /// Proves refunds give the fee back pro rata (cumulatively, half-up), so the sum of shares
    /// equals the fee.
    #[test]
    fn refund_fee_shares_add_up() {
        // 30.00 at 0.6% = 18 fen; refund 10.00 → 6; then 20.00 completing → 12.
        assert_eq!(refund_fee_share(18, 3000, 1000, 1000, 0), 6);
        assert_eq!(refund_fee_share(18, 3000, 2000, 3000, 6), 12);
        // 1 fen fee, three thirds: given back cumulatively 0.33 → 0, 0.67 → 1, 1 → 1.
        assert_eq!(refund_fee_share(1, 300, 100, 100, 0), 0);
        assert_eq!(refund_fee_share(1, 300, 100, 200, 0), 1);
        assert_eq!(refund_fee_share(1, 300, 100, 300, 1), 0);
        // Half of 1 fen rounds up, and then nothing is left for the rest.
        assert_eq!(refund_fee_share(1, 200, 100, 100, 0), 1);
        assert_eq!(refund_fee_share(1, 200, 100, 200, 1), 0);
    }

    /// Proves buyer accounts are masked the platform's way.
    #[test]
    fn masks_logon_ids() {
        assert_eq!(mask_logon_id("15901825620"), "159******20");
        assert_eq!(mask_logon_id("abc"), "***");
    }
}
