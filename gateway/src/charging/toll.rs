//! A toll exit paid on the spot: the booth scans the driver's wallet payment code and waits for
//! one final answer, always within `toll_budget_ms`.
//!
//! The engine has already closed the journey and written a `paying` charge (with a lease as
//! long as the budget) in the same transaction. Here, within the budget:
//! pay with the charge's trade number → if the outcome is unknown or the buyer must confirm,
//! query every `toll_query_interval_ms` → if still not settled when only a cancel's worth of
//! budget is left, cancel (which closes an unpaid trade or reverses a paid one). The final answer
//! is written over the provisional one in the same transaction as the charge's final state, so a
//! repeat of the tap gets exactly the answer the booth got.
//!
//! Whatever the provider does, the booth gets its final answer within the budget:
//! - paid → approve; if the database cannot record it just then, the approve is still sent
//!   (built from the charge in hand) and the worker records it later — a driver who was
//!   charged is never answered with an error;
//! - certainly not paid (declined, nothing sent, cancelled) → decline, and the journey is
//!   reopened so the driver can pay again — unless the driver has a newer toll journey, see
//!   [`apply_unpaid`];
//! - still unknown when even the cancel's outcome is unknown → **approve**: the driver leaves,
//!   and the fare is owed. The charge stays `paying`; when its lease ends the capture worker
//!   asks the provider: paid → booked; not paid → cancelled and collected post-paid through the
//!   rider's withholding agreement (else arrears, as any post-paid fare).

use std::time::{Duration, Instant};

use turnpike_wire::api::TapDecline;

use super::settle::{apply_paid, approve_response, book_reversal, final_answer_in, tap_key};
use super::{fare_txn, Charging};
use crate::engine::PendingPayment;
use crate::provider::{CallError, CancelOutcome, PayOutcome, QueryOutcome};
use crate::store::charging::{self as sql, ChargeRow};

/// Declines a toll exit can end in after its pay (see docs/api.md).
pub const PAYMENT_DECLINED: &str = TapDecline::PaymentDeclined.as_str();
pub const PAYMENT_FAILED: &str = TapDecline::PaymentFailed.as_str();
pub const PROVIDER_UNAVAILABLE: &str = TapDecline::ProviderUnavailable.as_str();

/// Runs the pay of a toll exit to its final answer: the bytes the booth is told (approve, or
/// decline with the reason). An error means nothing was charged (the database failed before
/// the pay was sent, or while recording a certain non-payment); the booth repeats the request.
pub async fn pay_at_exit(
    charging: &Charging,
    payment: &PendingPayment,
    payment_code: &str,
    terminal_id: &str,
) -> anyhow::Result<Vec<u8>> {
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
                return Ok(paid(charging, &charge, payment, &out_trade_no, &trade_no).await);
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
                    Ok(paid(charging, &charge, payment, &out_trade_no, &trade_no).await)
                }
                _ => {
                    tracing::warn!(
                        charge_id = charge.charge_id,
                        sub_code,
                        "toll pay unsettled after cancel refused; approved, settled later"
                    );
                    Ok(unsettled(charging, &charge, payment).await)
                }
            }
        }
        Err(e) => {
            tracing::warn!(charge_id = charge.charge_id, error = %e, "toll pay unsettled at the end of the budget; approved, settled later");
            Ok(unsettled(charging, &charge, payment).await)
        }
    }
}

/// The pay went through: booked, and the stored final answer sent. If the database fails
/// just now, the driver is still told approve (the same bytes the stored answer will have):
/// the charge stays `paying`, and the capture worker books it when its lease ends.
async fn paid(
    charging: &Charging,
    charge: &ChargeRow,
    payment: &PendingPayment,
    out_trade_no: &str,
    trade_no: &str,
) -> Vec<u8> {
    let recorded = match apply_paid(charging, charge, out_trade_no, trade_no).await {
        Ok(_) => final_answer(charging, charge).await,
        Err(e) => Err(e),
    };
    recorded.unwrap_or_else(|e| {
        tracing::error!(charge_id = charge.charge_id, error = %e, "toll pay paid but not recorded; approved from memory, the worker records it");
        metrics::counter!("gateway_toll_answers_from_memory_total").increment(1);
        approve_body(charge, payment)
    })
}

/// The pay's outcome is still unknown at the end of the budget: the booth is told approve (the
/// driver leaves; the fare is owed), stored as the tap's final answer; the charge stays
/// `paying` for the capture worker (see the module's docs).
async fn unsettled(charging: &Charging, charge: &ChargeRow, payment: &PendingPayment) -> Vec<u8> {
    metrics::counter!("gateway_charges_total", "kind" => "toll", "outcome" => "approved_unsettled")
        .increment(1);
    let stored = async {
        let mut tx = charging.store.begin().await?;
        let body = final_answer_in(&mut tx, charge, None).await?;
        tx.commit().await?;
        anyhow::Ok(body)
    };
    stored.await.unwrap_or_else(|e: anyhow::Error| {
        tracing::error!(charge_id = charge.charge_id, error = %e, "toll exit approved unsettled but not recorded; approved from memory");
        metrics::counter!("gateway_toll_answers_from_memory_total").increment(1);
        approve_body(charge, payment)
    })
}

/// The approve a toll exit's final answer holds, from the charge in hand.
fn approve_body(charge: &ChargeRow, payment: &PendingPayment) -> Vec<u8> {
    let sequence = charge.terminal_sequence.unwrap_or_default() as u64;
    let response = approve_response(
        sequence,
        Some(payment.journey_id),
        payment.fare.to_minor(),
        payment.charge,
    );
    serde_json::to_vec(&response).expect("a tap answer serializes")
}

/// The stored answer after the charge settled (whoever settled it).
async fn final_answer(charging: &Charging, charge: &ChargeRow) -> anyhow::Result<Vec<u8>> {
    let (terminal_id, sequence) = tap_key(charge)?;
    match charging.store.stored_tap(terminal_id, sequence).await? {
        Some((_, body)) => Ok(body),
        None => anyhow::bail!("tap {terminal_id}/{sequence} vanished"),
    }
}

async fn unpaid(
    charging: &Charging,
    charge: &ChargeRow,
    reversed: bool,
    reason: &'static str,
) -> anyhow::Result<Vec<u8>> {
    apply_unpaid(charging, charge, reversed, reason).await?;
    final_answer(charging, charge).await
}

/// How a toll charge that was not paid ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpaid {
    /// Cancelled, the journey reopened and the booth's answer a decline: the driver, still at
    /// the booth, pays again.
    Reopened,
    /// The driver has left (the booth was told approve, or the driver has a newer toll
    /// journey): the fare is collected post-paid on a new trade number.
    OwedLater,
    /// Someone else settled the charge first; nothing changed.
    AlreadySettled,
}

/// Settles a toll charge whose pay certainly did not go through. If the booth has not been told
/// approve and the rider has no newer toll journey, the charge is cancelled, the journey
/// reopened (so the driver can pay at the exit again) and the booth's answer a decline.
/// Otherwise the driver has left, and a failed payment must not rewrite the journeys that
/// followed: the journey stays closed and the charge becomes post-paid (`pay_later_in`), the
/// fare owed in the journal, the booth's answer approve. A reversed payment is booked both ways.
pub async fn apply_unpaid(
    charging: &Charging,
    charge: &ChargeRow,
    reversed: bool,
    reason: &'static str,
) -> anyhow::Result<Unpaid> {
    let now = charging.clock.now_ms();
    let (terminal_id, sequence) = tap_key(charge)?;
    let outcome = if reversed { "reversed" } else { "cancelled" };
    let mut tx = charging.store.begin().await?;
    let told_approve = sql::tap_approved_in(&mut tx, terminal_id, sequence).await?;
    let reopened = !told_approve
        && match charge.journey_id {
            Some(journey_id) => {
                sql::reopen_journey_in(&mut tx, journey_id, terminal_id, sequence).await?
            }
            None => false,
        };
    let ended = if reopened {
        sql::give_up(&mut tx, charge.charge_id, "cancelled", reason, now).await?
    } else {
        sql::pay_later_in(&mut tx, charge, reason, now).await?
    };
    if !ended {
        tx.rollback().await?;
        return Ok(Unpaid::AlreadySettled);
    }
    sql::finish_attempt(
        &mut tx,
        &charge.out_trade_no,
        outcome,
        Some(reason),
        None,
        now,
    )
    .await?;
    let settled = if reopened {
        final_answer_in(&mut tx, charge, Some(reason)).await?;
        metrics::counter!("gateway_charges_total", "kind" => "toll", "outcome" => reason)
            .increment(1);
        Unpaid::Reopened
    } else {
        // The fare is owed from now on, as for a post-paid exit.
        sql::book(&mut tx, &fare_txn(charge), now).await?;
        final_answer_in(&mut tx, charge, None).await?;
        metrics::counter!("gateway_charges_total", "kind" => "toll", "outcome" => "owed_later")
            .increment(1);
        tracing::info!(
            charge_id = charge.charge_id,
            reason,
            "toll pay failed after the driver left; the fare is collected post-paid"
        );
        Unpaid::OwedLater
    };
    tx.commit().await?;
    if reversed {
        book_reversal(charging, charge, &charge.out_trade_no).await?;
    }
    Ok(settled)
}
