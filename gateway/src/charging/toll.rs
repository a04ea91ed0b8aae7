//! A toll exit paid on the spot: the booth scans the driver's wallet payment code and waits for
//! one final answer.
//!
//! The engine has already closed the journey and written a `paying` charge (with a lease as
//! long as the budget) in the same transaction. Here, within `toll_budget_ms`:
//! pay with the charge's trade number → if the outcome is unknown or the buyer must confirm,
//! query every `toll_query_interval_ms` → if still not settled when only a cancel's worth of
//! budget is left, cancel (which closes an unpaid trade or reverses a paid one). The final answer
//! is written over the provisional one in the same transaction as the charge's final state, so a
//! repeat of the tap gets exactly the answer the booth got. If even the cancel's outcome is
//! unknown, the charge stays `paying`; the capture worker takes it over when the lease ends
//! (query, then cancel) and the booth's repeat gets `409 payment_in_progress` until then.

use std::time::{Duration, Instant};

use turnpike_wire::api::TapDecline;

use super::settle::{apply_paid, book_reversal, final_answer_in, tap_key};
use super::Charging;
use crate::engine::PendingPayment;
use crate::provider::{CallError, CancelOutcome, PayOutcome, QueryOutcome};
use crate::store::charging::{self as sql, ChargeRow};

/// Declines a toll exit can end in after its pay (see docs/api.md).
pub const PAYMENT_DECLINED: &str = TapDecline::PaymentDeclined.as_str();
pub const PAYMENT_FAILED: &str = TapDecline::PaymentFailed.as_str();
pub const PROVIDER_UNAVAILABLE: &str = TapDecline::ProviderUnavailable.as_str();

/// What the booth is told.
pub enum ExitOutcome {
    /// The final answer's bytes (approve, or decline with the reason).
    Final(Vec<u8>),
    /// The outcome could not be settled within the budget; the worker will settle it.
    Unsettled,
}

/// Runs the pay of a toll exit to its final answer.
pub async fn pay_at_exit(
    charging: &Charging,
    payment: &PendingPayment,
    payment_code: &str,
    terminal_id: &str,
) -> anyhow::Result<ExitOutcome> {
    let started = Instant::now();
    let budget = Duration::from_millis(charging.config.toll_budget_ms);
    let interval = Duration::from_millis(charging.config.toll_query_interval_ms.max(10));
    let Some(charge) = charging.store.charge(payment.charge_id).await? else {
        anyhow::bail!("charge {} vanished", payment.charge_id);
    };
    let Some(provider) = charging.provider.as_ref() else {
        return unpaid(charging, &charge, false, PROVIDER_UNAVAILABLE).await;
    };
    let cancel_reserve = provider.call_timeout() + interval;
    let subject = format!("{} toll", charge.operator_id);
    let out_trade_no = charge.out_trade_no.clone();
    let mut outcome = provider
        .pay_barcode(
            &out_trade_no,
            payment_code,
            charge.amount_minor,
            &subject,
            terminal_id,
        )
        .await;
    let mut resent = false;
    loop {
        match outcome {
            Ok(PayOutcome::Paid { trade_no, .. }) => {
                apply_paid(charging, &charge, &out_trade_no, &trade_no).await?;
                return final_answer(charging, &charge).await;
            }
            Ok(PayOutcome::Declined { sub_code, message }) => {
                tracing::info!(
                    charge_id = charge.charge_id,
                    sub_code,
                    message,
                    "toll pay declined"
                );
                // A declined barcode pay may leave a closed-but-present trade; cancelling makes
                // sure nothing stays open at the provider.
                let _ = provider.cancel(&out_trade_no).await;
                return unpaid(charging, &charge, false, PAYMENT_DECLINED).await;
            }
            Err(CallError::BreakerOpen) if !resent => {
                // Nothing was sent: nothing to cancel.
                return unpaid(charging, &charge, false, PROVIDER_UNAVAILABLE).await;
            }
            Ok(PayOutcome::UserPaying { .. }) | Err(_) => {}
        }
        if started.elapsed() + interval + cancel_reserve > budget {
            break;
        }
        tokio::time::sleep(interval).await;
        outcome = match provider.query(&out_trade_no).await {
            Ok(QueryOutcome::Trade {
                trade_no, status, ..
            }) if status.is_paid() => Ok(PayOutcome::Paid {
                trade_no,
                amount_fen: charge.amount_minor,
            }),
            Ok(QueryOutcome::Trade {
                status: crate::provider::TradeStatus::Closed,
                ..
            }) => Ok(PayOutcome::closed()),
            Ok(QueryOutcome::Trade { trade_no, .. }) => Ok(PayOutcome::UserPaying {
                trade_no: Some(trade_no),
            }),
            Ok(QueryOutcome::NotFound) if !resent => {
                // The pay never reached the provider (or was lost before it committed): send
                // it again under the same trade number, once.
                resent = true;
                provider
                    .pay_barcode(
                        &out_trade_no,
                        payment_code,
                        charge.amount_minor,
                        &subject,
                        terminal_id,
                    )
                    .await
            }
            Ok(QueryOutcome::NotFound) => Err(CallError::Unknown("trade not found".into())),
            Err(e) => Err(e),
        };
    }
    // Out of budget: cancel, so the booth can be told "not paid" with certainty.
    match provider.cancel(&out_trade_no).await {
        Ok(CancelOutcome::Cancelled { reversed }) => {
            unpaid(charging, &charge, reversed, PAYMENT_FAILED).await
        }
        Ok(CancelOutcome::NotFound) => unpaid(charging, &charge, false, PAYMENT_FAILED).await,
        Ok(CancelOutcome::Refused { sub_code }) => {
            // Typically: it was paid a moment ago and can no longer be cancelled. Ask.
            match provider.query(&out_trade_no).await {
                Ok(QueryOutcome::Trade {
                    trade_no, status, ..
                }) if status.is_paid() => {
                    apply_paid(charging, &charge, &out_trade_no, &trade_no).await?;
                    final_answer(charging, &charge).await
                }
                _ => {
                    tracing::warn!(
                        charge_id = charge.charge_id,
                        sub_code,
                        "toll pay unsettled after cancel refused"
                    );
                    Ok(ExitOutcome::Unsettled)
                }
            }
        }
        Err(e) => {
            tracing::warn!(charge_id = charge.charge_id, error = %e, "toll pay unsettled; the capture worker will finish it");
            Ok(ExitOutcome::Unsettled)
        }
    }
}

/// The stored answer after the charge settled (whoever settled it).
async fn final_answer(charging: &Charging, charge: &ChargeRow) -> anyhow::Result<ExitOutcome> {
    let (terminal_id, sequence) = tap_key(charge)?;
    match charging.store.stored_tap(terminal_id, sequence).await? {
        Some((_, body)) => Ok(ExitOutcome::Final(body)),
        None => anyhow::bail!("tap {terminal_id}/{sequence} vanished"),
    }
}

async fn unpaid(
    charging: &Charging,
    charge: &ChargeRow,
    reversed: bool,
    reason: &'static str,
) -> anyhow::Result<ExitOutcome> {
    apply_unpaid(charging, charge, reversed, reason).await?;
    final_answer(charging, charge).await
}

/// Settles a toll charge as not paid: cancelled, the journey reopened (so the driver can pay
/// at the exit again), the booth's answer a decline; a reversed payment is booked both ways.
pub async fn apply_unpaid(
    charging: &Charging,
    charge: &ChargeRow,
    reversed: bool,
    reason: &'static str,
) -> anyhow::Result<bool> {
    let now = charging.clock.now_ms();
    let mut tx = charging.store.begin().await?;
    let settled = sql::give_up(&mut tx, charge.charge_id, "cancelled", reason, now).await?;
    if settled {
        let outcome = if reversed { "reversed" } else { "cancelled" };
        sql::finish_attempt(
            &mut tx,
            &charge.out_trade_no,
            outcome,
            Some(reason),
            None,
            now,
        )
        .await?;
        if let (Some(journey_id), Some(terminal_id), Some(sequence)) = (
            charge.journey_id,
            charge.terminal_id.as_deref(),
            charge.terminal_sequence,
        ) {
            sql::reopen_journey_in(&mut tx, journey_id, terminal_id, sequence).await?;
        }
        final_answer_in(&mut tx, charge, Some(reason)).await?;
        metrics::counter!("gateway_charges_total", "kind" => "toll", "outcome" => reason)
            .increment(1);
    }
    tx.commit().await?;
    if settled && reversed {
        book_reversal(charging, charge, &charge.out_trade_no).await?;
    }
    Ok(settled)
}
