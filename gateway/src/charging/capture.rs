//! The capture worker: collects post-paid charges through the rider's withholding agreement, and
//! finishes toll pays whose request died before they settled.
//!
//! Each round it takes due charges, leases each one (a conditional UPDATE, so several workers or
//! nodes never work the same charge at once), and runs at most `capture_batch_max` provider calls
//! concurrently. Outcomes:
//! - paid → `captured`, journal entry, and the rider's arrears deny-listing lifted when nothing
//!   declined is left;
//! - declined (balance, limit, agreement) → next attempt with a new trade number after a
//!   jittered exponential backoff; after `capture_attempts_max` the charge `failed` and the rider
//!   is deny-listed (`arrears`) until a repayment succeeds;
//! - unknown (timeout, 5xx, dropped answer, forged answer) → the same trade number again later;
//!   the provider's idempotency on it makes the retry safe.

use std::time::Duration;

use tokio::sync::watch;

use super::settle::apply_paid;
use super::{backoff_ms, fare_txn, Charging, ARREARS};
use crate::provider::{CallError, CancelOutcome, PayOutcome, QueryOutcome};
use crate::store::charging::{self as sql, ChargeRow};
use crate::store::charging::{ChargeKind, ChargeStatus};

/// The decline a deduction gets when the rider has bound no wallet: the gateway's own code, so
/// no provider call was made and no trade is left to close.
const NO_AGREEMENT: &str = "NO_AGREEMENT";

/// Runs rounds until `stop` turns true. A round that worked a full batch starts the next one at
/// once (more may be due); otherwise the worker waits `capture_poll_ms`. Waiting after every
/// round held a busy gateway to one batch per round plus the wait: 37 deductions/s with 32 per
/// batch and the provider's pay at 100 ms, while 90 metro journeys/s closed.
pub async fn run(charging: Charging, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_millis(charging.config.capture_poll_ms.max(10));
    loop {
        match round(&charging).await {
            Ok(worked) if worked >= charging.config.capture_batch_max => {
                if *stop.borrow() {
                    return;
                }
                continue;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "capture round failed; retrying next round"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One round: due post-paid charges and stale toll pays. Returns how many charges it worked.
pub async fn round(charging: &Charging) -> anyhow::Result<usize> {
    let Some(_) = &charging.provider else {
        return Ok(0);
    };
    let now = charging.clock.now_ms();
    let limit = charging.config.capture_batch_max as i64;
    let mut work = Vec::new();
    for (kind, status) in [
        (ChargeKind::Metro, ChargeStatus::Pending),
        (ChargeKind::Toll, ChargeStatus::Pending),
        (ChargeKind::Toll, ChargeStatus::Paying),
    ] {
        work.extend(charging.store.due_charges(kind, status, now, limit).await?);
    }
    let mut worked = super::work_leased(charging, work, now, |charging, charge| async move {
        if charge.status == ChargeStatus::Paying {
            recover_toll(&charging, &charge).await
        } else {
            capture_one(&charging, &charge).await
        }
    })
    .await?;
    worked += super::tickets::round(charging).await?;
    worked += super::refunds::drive_pending(charging).await?;
    Ok(worked)
}

/// One deduction attempt for a post-paid charge.
async fn capture_one(charging: &Charging, charge: &ChargeRow) -> anyhow::Result<()> {
    let provider = charging
        .provider
        .as_ref()
        .expect("rounds run only with a provider");
    let store = &charging.store;
    if charge.attempt == 1 {
        // The fare becomes owed when its charge is first worked (booked once by its key).
        let mut tx = store.begin().await?;
        sql::book(&mut tx, &fare_txn(charge), charging.clock.now_ms()).await?;
        tx.commit().await?;
    }
    let rider_id = charge.rider_id.unwrap_or_default();
    let outcome = match store.wallet(rider_id).await? {
        None => Ok(PayOutcome::Declined {
            sub_code: NO_AGREEMENT.into(),
            message: "the rider has bound no wallet".into(),
        }),
        Some(agreement_no) => {
            let subject = format!("{} fare", charge.operator_id);
            provider
                .deduct(
                    &charge.out_trade_no,
                    &agreement_no,
                    charge.amount_minor,
                    &subject,
                )
                .await
        }
    };
    let now = charging.clock.now_ms();
    let cfg = &charging.config;
    match outcome {
        Ok(PayOutcome::Paid {
            trade_no,
            amount_fen,
        }) => {
            if amount_fen != charge.amount_minor {
                tracing::error!(
                    charge_id = charge.charge_id,
                    amount_fen,
                    expected = charge.amount_minor,
                    "provider paid another amount"
                );
                metrics::counter!("gateway_charge_amount_mismatch_total").increment(1);
            }
            apply_paid(charging, charge, &charge.out_trade_no, &trade_no).await?;
        }
        Ok(PayOutcome::Declined { sub_code, message }) => {
            if sub_code != NO_AGREEMENT {
                // A declined deduction may stay at the provider as an unpaid trade; close it
                // (best effort) so that this trade number can never be paid later, now that
                // the next attempt will use a new one.
                let _ = provider.cancel(&charge.out_trade_no).await;
            }
            let error = format!("{sub_code}: {message}");
            let mut tx = store.begin().await?;
            sql::finish_attempt(
                &mut tx,
                &charge.out_trade_no,
                "declined",
                Some(&error),
                None,
                now,
            )
            .await?;
            if charge.attempt >= cfg.capture_attempts_max as i64 {
                if sql::give_up(&mut tx, charge.charge_id, "failed", &error, now).await? {
                    sql::deny_add_in(&mut tx, rider_id, ARREARS, now).await?;
                    metrics::counter!("gateway_charges_total", "kind" => charge.kind.as_str(), "outcome" => "failed").increment(1);
                    tracing::info!(
                        charge_id = charge.charge_id,
                        rider_id,
                        "charge failed; rider deny-listed"
                    );
                }
            } else {
                let due = now
                    + backoff_ms(
                        cfg.capture_backoff_ms,
                        cfg.capture_backoff_max_ms,
                        charge.attempt as u32,
                    );
                sql::next_attempt(&mut tx, charge, &error, due, now).await?;
                metrics::counter!("gateway_charges_total", "kind" => charge.kind.as_str(), "outcome" => "declined").increment(1);
            }
            tx.commit().await?;
        }
        Ok(PayOutcome::UserPaying { .. }) => {
            // A deduction does not wait for the buyer; if a provider says so, ask again later.
            let due = now + cfg.capture_backoff_ms as i64;
            sql::retry_later(store, charge.charge_id, "user paying", due, now).await?;
        }
        Err(e) => unknown_later(charging, charge, &e).await?,
    }
    Ok(())
}

async fn unknown_later(
    charging: &Charging,
    charge: &ChargeRow,
    e: &CallError,
) -> anyhow::Result<()> {
    let now = charging.clock.now_ms();
    let cfg = &charging.config;
    // The longer a charge has been unknown, the longer the wait, up to the ceiling.
    let age_ms = (now - charge.created_at_ms).max(0) as u64;
    let n = (age_ms / cfg.capture_backoff_ms.max(1)).min(30) as u32 + 1;
    let due = now + backoff_ms(cfg.capture_backoff_ms, cfg.capture_backoff_max_ms, n);
    metrics::counter!("gateway_charges_total", "kind" => charge.kind.as_str(), "outcome" => "unknown")
        .increment(1);
    sql::retry_later(&charging.store, charge.charge_id, &e.to_string(), due, now).await?;
    Ok(())
}

/// A toll pay whose request died (gateway crash, restart) before it settled: query, and keep the
/// payment if it went through; otherwise cancel so no trade stays open, and reopen the journey.
async fn recover_toll(charging: &Charging, charge: &ChargeRow) -> anyhow::Result<()> {
    let provider = charging
        .provider
        .as_ref()
        .expect("rounds run only with a provider");
    match provider.query(&charge.out_trade_no).await {
        Ok(QueryOutcome::Trade {
            trade_no, status, ..
        }) if status.is_paid() => {
            apply_paid(charging, charge, &charge.out_trade_no, &trade_no).await?;
            return Ok(());
        }
        Ok(_) => {}
        Err(e) => return unknown_later(charging, charge, &e).await,
    }
    match provider.cancel(&charge.out_trade_no).await {
        Ok(CancelOutcome::Cancelled { reversed }) => {
            super::toll::apply_unpaid(charging, charge, reversed, "payment_failed").await?;
        }
        Ok(CancelOutcome::NotFound) => {
            super::toll::apply_unpaid(charging, charge, false, "payment_failed").await?;
        }
        Ok(CancelOutcome::Refused { sub_code }) => {
            tracing::warn!(
                charge_id = charge.charge_id,
                sub_code,
                "cancel refused; will query again"
            );
            unknown_later(charging, charge, &CallError::Unknown(sub_code)).await?;
        }
        Err(e) => unknown_later(charging, charge, &e).await?,
    }
    Ok(())
}
