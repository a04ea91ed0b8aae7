//! A rider's dispute of a paid charge and an operator's decision on it.
//!
//! A rider disputes one of their own captured charges; at most one dispute per charge is open
//! (a database constraint). Approving refunds through [`super::refunds`] under a request id
//! derived from the dispute (`dispute-<id>`), so repeating a decision whose refund outcome was
//! unknown drives the same refund on instead of making a second; the dispute is closed only
//! once the refund succeeded. Rejecting closes it with the operator's note.

use super::refunds::{self, RefundError, RefundRequest};
use super::Charging;
use crate::store::charging::{self as sql, ChargeStatus, DisputeRow, DisputeStatus, RefundStatus};

/// Why a dispute cannot be opened or decided.
#[derive(Debug, thiserror::Error)]
pub enum DisputeError {
    /// No such charge — or another rider's, which must look the same.
    #[error("no such charge")]
    UnknownCharge,
    #[error("only a charge that was paid can be disputed")]
    NotCaptured,
    #[error("this charge already has an open dispute")]
    AlreadyOpen,
    #[error("no such dispute")]
    UnknownDispute,
    #[error("the dispute is already {0}")]
    Decided(DisputeStatus),
    #[error(transparent)]
    Refund(#[from] RefundError),
    /// The approval's refund went out but its outcome is not known yet; repeating the decision
    /// drives it on.
    #[error("the refund's outcome is not known yet; repeat the decision to drive it")]
    RefundPending,
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// An operator's decision on an open dispute.
pub struct Decision<'a> {
    pub approve: bool,
    /// What an approval refunds; by default what is left of the charge.
    pub amount_minor: Option<i64>,
    pub note: &'a str,
}

/// Opens a dispute of one of `rider_id`'s captured charges.
pub async fn open(
    charging: &Charging,
    rider_id: i64,
    charge_id: i64,
    reason: String,
) -> Result<DisputeRow, DisputeError> {
    let store = &charging.store;
    let charge = store
        .charge(charge_id)
        .await?
        .filter(|c| c.rider_id == Some(rider_id))
        .ok_or(DisputeError::UnknownCharge)?;
    if charge.status != ChargeStatus::Captured {
        return Err(DisputeError::NotCaptured);
    }
    let row = DisputeRow {
        dispute_id: crate::random_id(),
        rider_id,
        charge_id,
        reason,
        status: DisputeStatus::Open,
        decision_note: None,
        refund_id: None,
        created_at_ms: charging.clock.now_ms(),
        decided_at_ms: None,
    };
    let mut tx = store.begin().await?;
    let inserted = sql::insert_dispute(&mut tx, &row).await?;
    tx.commit().await?;
    if !inserted {
        return Err(DisputeError::AlreadyOpen);
    }
    Ok(row)
}

/// Decides an open dispute; an approval refunds first and closes the dispute only once the
/// refund succeeded.
pub async fn decide(
    charging: &Charging,
    dispute_id: i64,
    decision: &Decision<'_>,
) -> Result<DisputeRow, DisputeError> {
    let store = &charging.store;
    let dispute = store
        .dispute(dispute_id)
        .await?
        .ok_or(DisputeError::UnknownDispute)?;
    if dispute.status != DisputeStatus::Open {
        return Err(DisputeError::Decided(dispute.status));
    }
    let now = charging.clock.now_ms();
    let (status, refund_id) = if decision.approve {
        let refund_id = refund_for(charging, &dispute, decision.amount_minor).await?;
        (DisputeStatus::Approved, Some(refund_id))
    } else {
        (DisputeStatus::Rejected, None)
    };
    let mut tx = store.begin().await?;
    sql::decide_dispute(&mut tx, dispute_id, status, decision.note, refund_id, now).await?;
    tx.commit().await?;
    store
        .dispute(dispute_id)
        .await?
        .ok_or(DisputeError::UnknownDispute)
}

/// The approval's refund, made (or driven on) under the dispute's own request id.
async fn refund_for(
    charging: &Charging,
    dispute: &DisputeRow,
    amount_minor: Option<i64>,
) -> Result<i64, DisputeError> {
    let store = &charging.store;
    let charge = store
        .charge(dispute.charge_id)
        .await?
        .ok_or(DisputeError::UnknownCharge)?;
    let amount_minor = match amount_minor {
        Some(a) => a,
        None => charge.amount_minor - store.refunds_committed(charge.charge_id).await?,
    };
    let refund = refunds::refund(
        charging,
        &RefundRequest {
            charge_id: charge.charge_id,
            amount_minor,
            reason: &dispute.reason,
            request_id: &format!("dispute-{}", dispute.dispute_id),
            dispute_id: Some(dispute.dispute_id),
        },
    )
    .await?;
    if refund.status != RefundStatus::Succeeded {
        return Err(DisputeError::RefundPending);
    }
    Ok(refund.refund_id)
}
