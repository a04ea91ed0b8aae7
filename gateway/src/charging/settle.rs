//! Settling a charge once its outcome is known, the same way whichever flow learnt it (the
//! capture worker, a toll booth's pay, a ticket order's notification or query): a verified
//! payment booked once, a paid-then-cancelled trade reversed, and a toll exit's final answer
//! written in the same transaction as its charge's final state.

use turnpike_wire::api::{Decision, TapResponse};
use turnpike_wire::money::Currency;
use turnpike_wire::Money;

use super::{capture_txn, reversal_txn, service_fee, Charging, ARREARS};
use crate::store::charging::{self as sql, ChargeRow};
use crate::store::charging::{ChargeKind, ChargeStatus};
use crate::store::Tx;

/// Books a verified payment once: charge captured, attempt paid, journal entry, and (post-pay)
/// the rider's arrears lifted when nothing declined is left. Safe to call again with the same
/// result (from an answer, a notification, a query): the second call changes nothing.
pub async fn apply_paid(
    charging: &Charging,
    charge: &ChargeRow,
    out_trade_no: &str,
    provider_trade_no: &str,
) -> anyhow::Result<bool> {
    let store = &charging.store;
    let now = charging.clock.now_ms();
    let rate_bp = store.provider_fee_rate_bp(&charge.operator_id).await?;
    let fee = service_fee(charge.amount_minor, rate_bp);
    let post_paid = charge.kind == ChargeKind::Metro
        || (charge.kind == ChargeKind::Toll && charge.status == ChargeStatus::Pending);
    let mut tx = store.begin().await?;
    let captured = sql::capture(&mut tx, charge.charge_id, provider_trade_no, fee, now).await?;
    if captured {
        sql::finish_attempt(
            &mut tx,
            out_trade_no,
            "paid",
            None,
            Some(provider_trade_no),
            now,
        )
        .await?;
        sql::book(
            &mut tx,
            &capture_txn(charge, out_trade_no, provider_trade_no, fee, post_paid),
            now,
        )
        .await?;
        if charge.status == ChargeStatus::Paying {
            final_answer_in(&mut tx, charge, None).await?;
        }
        if let Some(rider_id) = charge.rider_id {
            if post_paid
                && sql::rider_arrears_count(&mut tx, rider_id).await? == 0
                && sql::deny_remove_in(&mut tx, rider_id, ARREARS).await?
            {
                tracing::info!(rider_id, "arrears repaid; rider lifted from the deny list");
            }
        }
        metrics::counter!("gateway_charges_total", "kind" => charge.kind.as_str(), "outcome" => "captured").increment(1);
    }
    tx.commit().await?;
    Ok(captured)
}

/// Books the reversal of a paid-then-cancelled trade: its capture and the mirror entry.
pub async fn book_reversal(
    charging: &Charging,
    charge: &ChargeRow,
    out_trade_no: &str,
) -> anyhow::Result<()> {
    let store = &charging.store;
    let rate_bp = store.provider_fee_rate_bp(&charge.operator_id).await?;
    let fee = service_fee(charge.amount_minor, rate_bp);
    let now = charging.clock.now_ms();
    let mut tx = store.begin().await?;
    sql::book(
        &mut tx,
        &capture_txn(charge, out_trade_no, "reversed", fee, false),
        now,
    )
    .await?;
    sql::book(&mut tx, &reversal_txn(charge, out_trade_no, fee), now).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) fn tap_key(charge: &ChargeRow) -> anyhow::Result<(&str, i64)> {
    match (charge.terminal_id.as_deref(), charge.terminal_sequence) {
        (Some(t), Some(s)) => Ok((t, s)),
        _ => anyhow::bail!("charge {} has no tap", charge.charge_id),
    }
}

/// Writes a toll exit's final answer over its provisional one, inside the settling transaction:
/// approve with fare and charge, or decline with `decline_reason`. Returns the bytes written.
pub async fn final_answer_in(
    tx: &mut Tx<'_>,
    charge: &ChargeRow,
    decline_reason: Option<&str>,
) -> anyhow::Result<Vec<u8>> {
    let (terminal_id, sequence) = tap_key(charge)?;
    let currency = Currency::parse(&charge.currency)?;
    let amount = Money::from_minor(charge.amount_minor, currency);
    let response = match decline_reason {
        None => {
            let fare_minor = match charge.journey_id {
                Some(j) => sql::journey_fare_in(tx, j).await?,
                None => None,
            };
            approve_response(
                sequence as u64,
                charge.journey_id,
                fare_minor.unwrap_or(charge.amount_minor),
                amount,
            )
        }
        Some(reason) => TapResponse {
            sequence: sequence as u64,
            decision: Decision::Decline,
            reason: Some(reason.to_string()),
            journey_id: None,
            fare: None,
            charge: None,
        },
    };
    let body = serde_json::to_vec(&response)?;
    let decision = crate::engine::decision_str(response.decision);
    sql::set_tap_answer_in(tx, terminal_id, sequence, decision, decline_reason, &body).await?;
    Ok(body)
}

/// A toll exit's approve: the journey's list fare and what was charged (after any daily cap).
pub fn approve_response(
    sequence: u64,
    journey_id: Option<i64>,
    fare_minor: i64,
    charge: Money,
) -> TapResponse {
    TapResponse {
        sequence,
        decision: Decision::Approve,
        reason: None,
        journey_id: journey_id.map(|j| j.to_string()),
        fare: Some(Money::from_minor(fare_minor, charge.currency())),
        charge: Some(charge),
    }
}
