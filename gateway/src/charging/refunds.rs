//! Refunds (by an operator, or by approving a rider's dispute), idempotent per request.
//!
//! The refund row is written `pending` before the provider is called, with an `out_request_no`
//! derived from the caller's request id, so a retry of the same request — after a timeout, a
//! crash, a lost answer — sends the same refund request number, which the provider applies at
//! most once. The journal entry (`refund:<out_request_no>`) is booked in the transaction that
//! marks the refund succeeded, with the provider's fee returned pro rata.

use super::{refund_fee, refund_txn, service_fee, Charging};
use crate::provider::RefundOutcome;
use crate::store::charging::ChargeStatus;
use crate::store::charging::RefundStatus;
use crate::store::charging::{self as sql, ChargeRow, RefundRow};

/// Why a refund request cannot be carried out.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error("no such charge")]
    UnknownCharge,
    #[error("only a captured charge can be refunded (this one is {0})")]
    NotCaptured(ChargeStatus),
    #[error("the refund exceeds what is left to refund ({left} minor units)")]
    TooMuch { left: i64 },
    #[error("request id {0} was used for another refund")]
    RequestReused(String),
    #[error("no payment provider is configured")]
    NoProvider,
    #[error("the provider refused the refund: {sub_code} {message}")]
    Refused { sub_code: String, message: String },
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A refund request, from the admin API or an approved dispute.
pub struct RefundRequest<'a> {
    pub charge_id: i64,
    pub amount_minor: i64,
    pub reason: &'a str,
    /// The caller's idempotency key.
    pub request_id: &'a str,
    pub dispute_id: Option<i64>,
}

/// The refund request number sent to the provider: stable for a (charge, request id).
pub fn out_request_no(charge_id: i64, request_id: &str) -> String {
    format!("R{charge_id}-{request_id}")
}

/// Records and carries out a refund; a repeat of the same request returns the same refund
/// (and drives a still-pending one to its end).
pub async fn refund(
    charging: &Charging,
    req: &RefundRequest<'_>,
) -> Result<RefundRow, RefundError> {
    let store = &charging.store;
    if charging.provider.is_none() {
        return Err(RefundError::NoProvider);
    }
    let charge = store
        .charge(req.charge_id)
        .await?
        .ok_or(RefundError::UnknownCharge)?;
    let out_request_no = out_request_no(charge.charge_id, req.request_id);
    let refund = match store.refund_by_request(&out_request_no).await? {
        Some(existing) => {
            if existing.amount_minor != req.amount_minor {
                return Err(RefundError::RequestReused(req.request_id.to_string()));
            }
            existing
        }
        None => {
            if charge.status != ChargeStatus::Captured {
                return Err(RefundError::NotCaptured(charge.status));
            }
            let left = charge.amount_minor - store.refunds_committed(charge.charge_id).await?;
            if req.amount_minor <= 0 || req.amount_minor > left {
                return Err(RefundError::TooMuch { left });
            }
            let row = RefundRow {
                refund_id: crate::random_id(),
                charge_id: charge.charge_id,
                out_request_no: out_request_no.clone(),
                amount_minor: req.amount_minor,
                reason: req.reason.to_string(),
                status: RefundStatus::Pending,
                detail: None,
                dispute_id: req.dispute_id,
                created_at_ms: charging.clock.now_ms(),
                completed_at_ms: None,
            };
            let mut tx = store.begin().await?;
            let inserted = sql::insert_refund(&mut tx, &row).await?;
            tx.commit().await?;
            if !inserted {
                // A concurrent identical request won the insert; continue with its row.
                store
                    .refund_by_request(&out_request_no)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("refund {out_request_no} vanished"))?
            } else {
                row
            }
        }
    };
    if refund.status == RefundStatus::Failed {
        // A repeat of a refused request is refused again, with the provider's reason.
        let detail = refund.detail.unwrap_or_default();
        let (sub_code, message) = detail.split_once(": ").unwrap_or((&detail, ""));
        return Err(RefundError::Refused {
            sub_code: sub_code.to_string(),
            message: message.to_string(),
        });
    }
    if refund.status != RefundStatus::Pending {
        return Ok(refund);
    }
    drive(charging, &charge, &refund).await
}

/// How old a pending refund of a request must be before the worker drives it (the request that
/// made it usually does, within the provider's timeout).
const REFUND_STALE_MS: i64 = 60_000;

/// Drives pending refunds nobody is driving: a re-pairing's corrections, and any whose request
/// ended with an unknown outcome. Returns how many it sent.
pub async fn drive_pending(charging: &Charging) -> anyhow::Result<usize> {
    let now = charging.clock.now_ms();
    let pending = charging
        .store
        .pending_refunds(
            crate::repair::REPAIRED,
            now - REFUND_STALE_MS,
            charging.config.capture_batch_max as i64,
        )
        .await?;
    let mut sent = 0;
    for refund in pending {
        let Some(charge) = charging.store.charge(refund.charge_id).await? else {
            continue;
        };
        match drive(charging, &charge, &refund).await {
            Ok(_) | Err(RefundError::Refused { .. }) => sent += 1,
            Err(e) => tracing::warn!(refund_id = refund.refund_id, error = %e, "refund not driven"),
        }
    }
    Ok(sent)
}

/// Sends a pending refund to the provider and records the outcome.
async fn drive(
    charging: &Charging,
    charge: &ChargeRow,
    refund: &RefundRow,
) -> Result<RefundRow, RefundError> {
    let provider = charging.provider.as_ref().ok_or(RefundError::NoProvider)?;
    let outcome = provider
        .refund(
            &charge.out_trade_no,
            &refund.out_request_no,
            refund.amount_minor,
            &refund.reason,
        )
        .await;
    let store = &charging.store;
    let now = charging.clock.now_ms();
    match outcome {
        Ok(RefundOutcome::Refunded { .. }) => {
            let rate_bp = store.provider_fee_rate_bp(&charge.operator_id).await?;
            let fee = charge
                .fee_minor
                .unwrap_or_else(|| service_fee(charge.amount_minor, rate_bp));
            let mut tx = store.begin().await?;
            if let Some(refunded_after) =
                sql::finish_refund(&mut tx, refund, true, None, now).await?
            {
                let refunded_before = refunded_after - refund.amount_minor;
                let fee_back = refund_fee(
                    fee,
                    charge.amount_minor,
                    refunded_before,
                    refund.amount_minor,
                );
                sql::book(
                    &mut tx,
                    &refund_txn(
                        charge,
                        &refund.out_request_no,
                        refund.amount_minor,
                        fee_back,
                    ),
                    now,
                )
                .await?;
            }
            tx.commit().await?;
            metrics::counter!("gateway_refunds_total", "outcome" => "succeeded").increment(1);
        }
        Ok(RefundOutcome::Refused { sub_code, message }) => {
            let detail = format!("{sub_code}: {message}");
            let mut tx = store.begin().await?;
            sql::finish_refund(&mut tx, refund, false, Some(&detail), now).await?;
            tx.commit().await?;
            metrics::counter!("gateway_refunds_total", "outcome" => "refused").increment(1);
            return Err(RefundError::Refused { sub_code, message });
        }
        Err(e) => {
            // Unknown: the row stays pending; repeating the request (same id) drives it again
            // with the same refund request number.
            tracing::warn!(refund_id = refund.refund_id, error = %e, "refund outcome unknown");
            metrics::counter!("gateway_refunds_total", "outcome" => "unknown").increment(1);
        }
    }
    Ok(store
        .refund_by_request(&refund.out_request_no)
        .await?
        .ok_or_else(|| anyhow::anyhow!("refund vanished"))?)
}
