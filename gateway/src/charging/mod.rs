//! Charging: turning closed journeys, toll exits and ticket orders into money collected exactly
//! once through the provider, with every movement booked in a double-entry journal.
//!
//! # Layout
//! - this file: [`Charging`] (what every part shares), the fee rule, and the journal entries
//!   ([`fare_txn`], [`capture_txn`], [`reversal_txn`], [`refund_txn`]).
//! - [`capture`]: the capture worker — post-pay deductions with retries, backoff and jitter;
//!   deny-listing on final failure and lifting it on repayment; recovery of toll pays whose
//!   request died; the ticket-order query fallback.
//! - [`toll`]: the synchronous barcode pay of a toll exit within its budget.
//! - [`refunds`]: idempotent refunds (admin, or an approved rider dispute).
//! - [`tickets`]: ticket orders paid by a merchant-presented QR — the outbox write, the
//!   precreate, verified and cross-checked notifications, and the query fallback.
//! - [`wallets`]: binding a rider's withholding agreement through the provider's signing flow
//!   (the agreement the provider confirms for the gateway's own number, never one a rider
//!   names), and unbinding it.
//! - [`notify`]: the provider's verified notifications, recorded once and handed to the
//!   module they are about.
//!
//! # Exactly once
//! A charge row is written in the same transaction that closes the journey, and
//! `charges.journey_id` is unique: a journey is charged at most once. Each attempt has a stable
//! trade number (`M<charge>_<attempt>`); an unknown outcome retries the *same* number (the
//! provider is idempotent on it), a definitive decline moves to the next number. Ledger
//! transactions carry an idempotency key (`capture:<out_trade_no>`, `refund:<out_request_no>`),
//! so however often a result is learned (answer, notification, query), it is booked once.
//!
//! # The journal
//! Accounts: `rider_receivable` (what riders owe), `operator_payable` (what we owe operators),
//! `provider_clearing` (what the provider holds for us), `provider_fees` (the provider's service
//! fee, borne by the operator). Every transaction's lines balance to zero.

pub mod capture;
pub mod disputes;
pub mod notify;
pub mod real_name;
pub mod refunds;
pub mod settle;
pub mod tickets;
pub mod toll;
pub mod wallets;

use std::sync::Arc;

use crate::config::ChargingConfig;
use crate::provider::ProviderClient;
use crate::store::charging::{ChargeRow, LedgerLine, LedgerTxn};
use crate::store::Store;

/// What the charging parts share. Cheap to clone.
#[derive(Clone)]
pub struct Charging {
    pub store: Store,
    pub provider: Option<ProviderClient>,
    pub config: Arc<ChargingConfig>,
    pub clock: crate::clock::Clock,
}

/// The provider's fee rule, shared with settlement and the sandbox so all three agree to the
/// fen: a payment's fee, and the cumulative pro rata share each refund gives back.
pub use turnpike_provider_wire::fee::{refund_fee, service_fee};

/// The deny-list reason the capture worker sets on arrears and settling lifts once they are
/// repaid (never anyone else's entry).
pub const ARREARS: &str = "arrears";

/// Leases each due charge (a charge another worker or node holds is skipped) and works the
/// leased ones on tasks, at most `capture_batch_max` at a time; returns how many it leased. A
/// charge whose work fails stays leased until its lease ends, then comes due again.
pub(super) async fn work_leased<F, Fut>(
    charging: &Charging,
    due: Vec<ChargeRow>,
    now: i64,
    work: F,
) -> anyhow::Result<usize>
where
    F: Fn(Charging, ChargeRow) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let lease_until = now + charging.config.capture_lease_ms as i64;
    let in_flight_max = charging.config.capture_batch_max.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    let mut worked = 0;
    for charge in due {
        if !charging
            .store
            .lease_charge(&charge, now, lease_until)
            .await?
        {
            continue;
        }
        worked += 1;
        while tasks.len() >= in_flight_max {
            tasks.join_next().await;
        }
        let (charge_id, kind) = (charge.charge_id, charge.kind);
        let job = work(charging.clone(), charge);
        tasks.spawn(async move {
            if let Err(e) = job.await {
                tracing::warn!(charge_id, kind = kind.as_str(), error = %e, "charge not settled this round");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(worked)
}

/// How a verified notification was handled; `ack` is whether the provider may stop repeating
/// it (answer `success`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    pub applied: &'static str,
    pub ack: bool,
}

pub(super) const fn done(applied: &'static str) -> Handled {
    Handled { applied, ack: true }
}

pub(super) const fn again(applied: &'static str) -> Handled {
    Handled {
        applied,
        ack: false,
    }
}

fn line(account: &'static str, party: &str, debit: i64, credit: i64) -> LedgerLine {
    LedgerLine {
        account,
        party: party.to_string(),
        debit_minor: debit,
        credit_minor: credit,
    }
}

fn txn(charge: &ChargeRow, key: String, kind: &'static str, lines: Vec<LedgerLine>) -> LedgerTxn {
    LedgerTxn {
        idempotency_key: key,
        kind,
        operator_id: charge.operator_id.clone(),
        business_day: charge.business_day.clone(),
        charge_id: Some(charge.charge_id),
        out_trade_no: None,
        provider_trade_no: None,
        out_request_no: None,
        currency: charge.currency.clone(),
        lines,
    }
}

fn rider_party(charge: &ChargeRow) -> String {
    charge
        .rider_id
        .map(|r| r.to_string())
        .unwrap_or_else(|| "-".into())
}

/// A post-paid fare becomes owed: the rider owes it, the operator is owed it.
pub fn fare_txn(charge: &ChargeRow) -> LedgerTxn {
    let a = charge.amount_minor;
    txn(
        charge,
        format!("fare:{}", charge.charge_id),
        "fare",
        vec![
            line("rider_receivable", &rider_party(charge), a, 0),
            line("operator_payable", &charge.operator_id, 0, a),
        ],
    )
}

/// The provider took the money. Post-paid (metro, post-paid toll) settles the rider's debt;
/// paid-on-the-spot (toll barcode, ticket) is owed to the operator directly.
pub fn capture_txn(
    charge: &ChargeRow,
    out_trade_no: &str,
    provider_trade_no: &str,
    fee: i64,
    post_paid: bool,
) -> LedgerTxn {
    let a = charge.amount_minor;
    let credit = if post_paid {
        line("rider_receivable", &rider_party(charge), 0, a)
    } else {
        line("operator_payable", &charge.operator_id, 0, a)
    };
    let mut t = txn(
        charge,
        format!("capture:{out_trade_no}"),
        "capture",
        vec![
            line("provider_clearing", "provider", a - fee, 0),
            line("provider_fees", &charge.operator_id, fee, 0),
            credit,
        ],
    );
    t.out_trade_no = Some(out_trade_no.to_string());
    t.provider_trade_no = Some(provider_trade_no.to_string());
    t
}

/// A paid-on-the-spot payment that the provider reversed (cancel after an unknown outcome):
/// the exact mirror of its capture, so the ledger holds both, as the provider's records do.
pub fn reversal_txn(charge: &ChargeRow, out_trade_no: &str, fee: i64) -> LedgerTxn {
    let a = charge.amount_minor;
    let mut t = txn(
        charge,
        format!("reversal:{out_trade_no}"),
        "reversal",
        vec![
            line("operator_payable", &charge.operator_id, a, 0),
            line("provider_clearing", "provider", 0, a - fee),
            line("provider_fees", &charge.operator_id, 0, fee),
        ],
    );
    t.out_trade_no = Some(out_trade_no.to_string());
    t
}

/// A refund to the rider's wallet: the operator gives the money back, the provider returns its
/// fee pro rata.
pub fn refund_txn(
    charge: &ChargeRow,
    out_request_no: &str,
    refund_minor: i64,
    fee_back: i64,
) -> LedgerTxn {
    let mut t = txn(
        charge,
        format!("refund:{out_request_no}"),
        "refund",
        vec![
            line("operator_payable", &charge.operator_id, refund_minor, 0),
            line("provider_clearing", "provider", 0, refund_minor - fee_back),
            line("provider_fees", &charge.operator_id, 0, fee_back),
        ],
    );
    t.out_trade_no = Some(charge.out_trade_no.clone());
    t.provider_trade_no = charge.provider_trade_no.clone();
    t.out_request_no = Some(out_request_no.to_string());
    t
}

/// Jittered exponential backoff: `base × 2^(n−1)`, capped, then ±20 %.
pub fn backoff_ms(base_ms: u64, max_ms: u64, n: u32) -> i64 {
    use rand::Rng;
    let exp = base_ms.saturating_mul(1u64 << n.saturating_sub(1).min(30));
    let capped = exp.min(max_ms).max(1);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    (capped as f64 * jitter) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge() -> ChargeRow {
        ChargeRow {
            charge_id: 7,
            kind: crate::store::charging::ChargeKind::Metro,
            operator_id: "op".into(),
            rider_id: Some(42),
            journey_id: Some(9),
            amount_minor: 400,
            currency: "CNY".into(),
            business_day: "2026-11-29".into(),
            status: crate::store::charging::ChargeStatus::Pending,
            attempt: 1,
            out_trade_no: "M7-1".into(),
            provider_trade_no: None,
            fee_minor: None,
            refunded_minor: 0,
            last_error: None,
            next_attempt_at_ms: 0,
            lease_until_ms: None,
            terminal_id: None,
            terminal_sequence: None,
            created_at_ms: 0,
            captured_at_ms: None,
        }
    }

    fn balance(t: &LedgerTxn) -> i64 {
        t.lines.iter().map(|l| l.debit_minor - l.credit_minor).sum()
    }

    /// Proves every journal entry balances, and that fare + capture leaves the rider owing
    /// nothing and the operator owed the fare minus the fee.
    #[test]
    fn entries_balance() {
        let c = charge();
        let entries = [
            fare_txn(&c),
            capture_txn(&c, "M7-1", "2026", 2, true),
            capture_txn(&c, "T7-1", "2026", 2, false),
            reversal_txn(&c, "T7-1", 2),
            refund_txn(&c, "R1", 100, 1),
        ];
        for t in &entries {
            assert_eq!(balance(t), 0, "{t:?}");
        }
        let mut rider = 0;
        let mut operator = 0;
        for t in &entries[..2] {
            for l in &t.lines {
                match l.account {
                    "rider_receivable" => rider += l.debit_minor - l.credit_minor,
                    "operator_payable" | "provider_fees" => {
                        operator += l.credit_minor - l.debit_minor
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(rider, 0);
        assert_eq!(operator, 400 - 2);
    }
}
