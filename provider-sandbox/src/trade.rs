//! The platform's trade rules: pay by payment code, query, cancel, refund, and the buyer's
//! confirmation of a payment that waited for it.
//!
//! Each operation is one database transaction; a refusal rolls it back, so a refused call changes
//! nothing. Idempotency follows the platform: a repeated pay with the same `out_trade_no` and
//! amount answers the same trade, a repeated refund with the same `out_request_no` and amount
//! answers the same refund without moving money again, a repeated cancel answers the same action.
//! Concurrent duplicates are settled by constraints in the store, after which the loser replays.
//!
//! This module knows nothing about HTTP, signatures or JSON.

use rand::Rng;

use crate::error::SandboxError;
use crate::store::{self, RefundRow, Store, TradeRow, TradeStatus};

pub const ACQ_TRADE_NOT_EXIST: &str = "ACQ.TRADE_NOT_EXIST";
pub const ACQ_PAYMENT_AUTH_CODE_INVALID: &str = "ACQ.PAYMENT_AUTH_CODE_INVALID";
pub const ACQ_BUYER_BALANCE_NOT_ENOUGH: &str = "ACQ.BUYER_BALANCE_NOT_ENOUGH";
pub const ACQ_TRADE_HAS_CLOSE: &str = "ACQ.TRADE_HAS_CLOSE";
pub const ACQ_TRADE_HAS_FINISHED: &str = "ACQ.TRADE_HAS_FINISHED";
pub const ACQ_TRADE_STATUS_ERROR: &str = "ACQ.TRADE_STATUS_ERROR";
pub const ACQ_REASON_TRADE_REFUND_FEE_ERR: &str = "ACQ.REASON_TRADE_REFUND_FEE_ERR";
pub const ACQ_DISCORDANT_REPEAT_REQUEST: &str = "ACQ.DISCORDANT_REPEAT_REQUEST";
pub const ACQ_INVALID_PARAMETER: &str = "ACQ.INVALID_PARAMETER";

/// How often an operation re-reads and retries after losing a race to a concurrent duplicate.
const RACE_ATTEMPTS_MAX: usize = 3;

pub struct PayRequest {
    pub out_trade_no: String,
    pub auth_code: String,
    pub total_fen: i64,
    pub subject: String,
}

pub enum PayOutcome {
    /// Money moved: TRADE_SUCCESS (code 10000).
    Paid(TradeRow),
    /// The buyer must confirm on their phone: WAIT_BUYER_PAY (code 10003).
    UserPaying(TradeRow),
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
        let needs_confirmation = buyer
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
        let trade = TradeRow {
            trade_no: new_trade_no(now_ms),
            app_id: app_id.to_string(),
            out_trade_no: req.out_trade_no.clone(),
            subject: req.subject.clone(),
            total_fen: req.total_fen,
            refunded_fen: 0,
            status: if needs_confirmation {
                TradeStatus::WaitBuyerPay
            } else {
                TradeStatus::TradeSuccess
            },
            buyer_user_id: buyer.user_id.clone(),
            buyer_logon_id: buyer.logon_id.clone(),
            auth_code: req.auth_code.clone(),
            cancel_action: None,
            created_at_ms: now_ms,
            paid_at_ms: (!needs_confirmation).then_some(now_ms),
            closed_at_ms: None,
        };
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
        Some(trade) if trade.auth_code == req.auth_code => replay_pay(trade, req),
        _ => Err(refusal),
    }
}

fn replay_pay(existing: TradeRow, req: &PayRequest) -> Result<PayOutcome, SandboxError> {
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

/// Identifies a trade the way the API lets a merchant: by the platform's `trade_no` or the
/// merchant's `out_trade_no`.
pub struct TradeKey {
    pub trade_no: Option<String>,
    pub out_trade_no: Option<String>,
}

pub async fn query(store: &Store, app_id: &str, key: &TradeKey) -> Result<TradeRow, SandboxError> {
    let mut tx = store.begin().await?;
    let trade = find(&mut tx, app_id, key).await?;
    tx.rollback().await?;
    Ok(trade)
}

async fn find(tx: &mut store::Tx, app_id: &str, key: &TradeKey) -> Result<TradeRow, SandboxError> {
    store::find_trade(
        tx,
        app_id,
        key.trade_no.as_deref(),
        key.out_trade_no.as_deref(),
    )
    .await?
    .ok_or_else(|| SandboxError::business(ACQ_TRADE_NOT_EXIST, "the trade does not exist"))
}

pub struct CancelOutcome {
    pub trade: TradeRow,
    /// "close" (an unpaid trade was closed) or "refund" (a paid trade was reversed).
    pub action: &'static str,
}

pub async fn cancel(
    store: &Store,
    app_id: &str,
    key: &TradeKey,
    now_ms: i64,
) -> Result<CancelOutcome, SandboxError> {
    for _ in 0..RACE_ATTEMPTS_MAX {
        let mut tx = store.begin().await?;
        let trade = find(&mut tx, app_id, key).await?;
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
                    continue;
                }
                "close"
            }
            TradeStatus::TradeSuccess => {
                // Reversal refunds whatever has not been refunded yet and closes the trade.
                let remaining_fen = trade.total_fen - trade.refunded_fen;
                if remaining_fen > 0 {
                    if store::add_refund_to_trade(&mut tx, &trade.trade_no, remaining_fen, now_ms)
                        .await?
                        .is_none()
                    {
                        continue;
                    }
                    store::credit(&mut tx, &trade.buyer_user_id, remaining_fen).await?;
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
        tx.commit().await?;
        let trade = store
            .trade(&trade.trade_no)
            .await?
            .ok_or_else(|| anyhow::anyhow!("trade vanished after cancel"))?;
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
        let trade = find(&mut tx, app_id, &req.key).await?;
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
        let refund = RefundRow {
            trade_no: trade.trade_no.clone(),
            out_request_no,
            refund_fen: req.refund_fen,
            refunded_total_fen,
            reason: req.reason.clone(),
            created_at_ms: now_ms,
        };
        if !store::insert_refund(&mut tx, &refund).await? {
            // A concurrent identical refund won; the next attempt replays it.
            tx.rollback().await?;
            continue;
        }
        store::credit(&mut tx, &trade.buyer_user_id, req.refund_fen).await?;
        tx.commit().await?;
        let trade = store
            .trade(&trade.trade_no)
            .await?
            .ok_or_else(|| anyhow::anyhow!("trade vanished after refund"))?;
        tracing::info!(trade_no = %trade.trade_no, out_request_no = %refund.out_request_no, amount_fen = refund.refund_fen, "refund");
        return Ok(RefundOutcome {
            trade,
            refund,
            fund_change: true,
        });
    }
    Err(anyhow::anyhow!("refund lost {RACE_ATTEMPTS_MAX} races in a row").into())
}

/// The buyer confirms a payment that waited for them (sandbox admin): money moves now.
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
    if !store::debit(&mut tx, &trade.buyer_user_id, trade.total_fen).await? {
        return Err(SandboxError::BadRequest(
            "the buyer's balance is not enough".into(),
        ));
    }
    if !store::transition(
        &mut tx,
        trade_no,
        TradeStatus::WaitBuyerPay,
        TradeStatus::TradeSuccess,
        now_ms,
        None,
    )
    .await?
    {
        return Err(SandboxError::BadRequest(format!(
            "trade {trade_no} changed concurrently"
        )));
    }
    tx.commit().await?;
    store
        .trade(trade_no)
        .await?
        .ok_or_else(|| anyhow::anyhow!("trade vanished after confirm").into())
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
