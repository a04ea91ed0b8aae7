//! A statement as finance sees it: the engine's figures for an operator's day (its *base*), plus
//! the **adjustments** that day receives —
//!
//! - items of other days' runs that belong to this day (`other_day` items, *carried in*), each
//!   with the provider's money: a payment's amount − fee, a refund's −(amount − fee back);
//! - the `adjust` resolutions of the day's exceptions (the newest resolution of an exception
//!   counts; its `adjust_minor` is added as is, positive = more payable to the operator).
//!
//! [`compose`] is pure and deterministic (inputs sorted, no clock): the same base, carries and
//! resolutions give the same bytes, so re-running a day with the same inputs and resolutions
//! reproduces its outputs. It is also idempotent (composing a composed statement again gives
//! the same statement), because it always rebuilds `adjustments`, `net_payable` and the journal's
//! adjustment and payout entries from the base figures.
//!
//! In the journal, adjustments are two entries before the payout, each balanced:
//! `carried_items` (Dr provider_clearing · Cr operator_payable, the carried net) and
//! `resolution_adjustments` (Dr settlement_adjustments · Cr operator_payable); sides swap when
//! negative. The payout entry then pays out the adjusted net payable, so `operator_payable` is
//! back at zero.

use anyhow::bail;

use crate::outcome::{Figure, Item, JournalLine, OperatorOutcome, FIGURES};
use crate::outputs::OutputFile;

/// Journal entries `compose` owns (rebuilt on every composition).
pub const ADJUSTMENT_ENTRIES: [&str; 3] = ["carried_items", "resolution_adjustments", "payout"];
/// Drill-down class of an item carried in from another day's run.
pub const CARRIED_IN: &str = "carried_in";
/// Drill-down class of an `adjust` resolution.
pub const RESOLUTION_ADJUST: &str = "resolution_adjust";

/// An item another day's run carried to this statement (a row of `settlement_carries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedIn {
    /// The day whose run found it.
    pub source_day: String,
    /// Its `other_day` exception's key in the source day.
    pub key: String,
    pub reference: String,
    /// The day it belongs to (differs from the statement's day when that day was approved).
    pub belongs_to: String,
    pub record: String,
    pub amount_minor: i64,
    pub fee_minor: i64,
    pub net_minor: i64,
    pub detail: String,
}

/// The newest resolution of one of the day's exceptions, when it is `adjust`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustIn {
    pub exception_key: String,
    pub class: String,
    pub reference: String,
    pub adjust_minor: i64,
    pub note: String,
    pub user: String,
}

fn signed_line(account: &str, entry: &str, signed_debit: i64) -> Option<JournalLine> {
    (signed_debit != 0).then(|| JournalLine {
        account: account.into(),
        entry: entry.into(),
        debit_minor: signed_debit.max(0),
        credit_minor: (-signed_debit).max(0),
    })
}

/// The statement of `business_day` for `base`'s operator with its adjustments.
pub fn compose(
    business_day: &str,
    base: &OperatorOutcome,
    carried: &[CarriedIn],
    adjusts: &[AdjustIn],
) -> OperatorOutcome {
    let mut carried: Vec<&CarriedIn> = carried.iter().collect();
    carried.sort_by(|a, b| (&a.source_day, &a.key).cmp(&(&b.source_day, &b.key)));
    let mut adjusts: Vec<&AdjustIn> = adjusts.iter().collect();
    adjusts.sort_by(|a, b| a.exception_key.cmp(&b.exception_key));

    let mut items = Vec::new();
    for c in &carried {
        let booked = if c.belongs_to == business_day {
            String::new()
        } else {
            format!(
                "; belongs to {}, whose statement was approved, so it is booked here",
                c.belongs_to
            )
        };
        items.push(Item {
            reference: c.reference.clone(),
            class: CARRIED_IN.into(),
            amount_minor: c.net_minor,
            detail: format!(
                "carried from the run of {}: {}{booked}",
                c.source_day, c.detail
            ),
            source_day: c.source_day.clone(),
            exception_key: c.key.clone(),
        });
    }
    for a in &adjusts {
        items.push(Item {
            reference: a.reference.clone(),
            class: RESOLUTION_ADJUST.into(),
            amount_minor: a.adjust_minor,
            detail: format!(
                "adjust resolution of the {} exception by {}: {}",
                a.class, a.user, a.note
            ),
            source_day: business_day.into(),
            exception_key: a.exception_key.clone(),
        });
    }
    let carried_net: i64 = carried.iter().map(|c| c.net_minor).sum();
    let resolved_net: i64 = adjusts.iter().map(|a| a.adjust_minor).sum();
    let adjustments = carried_net + resolved_net;

    let amount = |name: &str| base.figure(name).map(|f| f.amount_minor).unwrap_or(0);
    let (gross, refunds, fees) = (amount("gross"), amount("refunds"), amount("provider_fees"));
    let net = gross - refunds - fees + adjustments;
    let mut figures = Vec::new();
    for name in FIGURES {
        let figure = match name {
            "adjustments" => Figure {
                name: name.into(),
                amount_minor: adjustments,
                items: std::mem::take(&mut items),
            },
            "net_payable" => Figure {
                name: name.into(),
                amount_minor: net,
                items: vec![
                    Item::component("gross", gross),
                    Item::component("refunds", -refunds),
                    Item::component("provider_fees", -fees),
                    Item::component("adjustments", adjustments),
                ],
            },
            _ => base.figure(name).cloned().unwrap_or_else(|| Figure {
                name: name.into(),
                amount_minor: 0,
                items: Vec::new(),
            }),
        };
        figures.push(figure);
    }

    let mut journal: Vec<JournalLine> = base
        .journal
        .iter()
        .filter(|l| !ADJUSTMENT_ENTRIES.contains(&l.entry.as_str()))
        .cloned()
        .collect();
    journal.extend(
        [
            signed_line("provider_clearing", "carried_items", carried_net),
            signed_line("operator_payable", "carried_items", -carried_net),
            signed_line(
                "settlement_adjustments",
                "resolution_adjustments",
                resolved_net,
            ),
            signed_line("operator_payable", "resolution_adjustments", -resolved_net),
            signed_line("operator_payable", "payout", net),
            signed_line("operator_payout", "payout", -net),
        ]
        .into_iter()
        .flatten(),
    );
    OperatorOutcome {
        operator_id: base.operator_id.clone(),
        currency: base.currency.clone(),
        figures,
        journal,
        exceptions: base.exceptions.clone(),
        class_counts: base.class_counts.clone(),
        exception_count: base.exception_count,
        carried_out: base.carried_out.clone(),
    }
}

/// The checks every stored statement passes: its figures, a balanced journal, and
/// `operator_payable` back at zero after the payout.
pub fn check_operator(op: &OperatorOutcome, day: &str) -> anyhow::Result<()> {
    let imbalance = op.journal_imbalance_minor();
    if imbalance != 0 {
        bail!(
            "journal of operator {} for {day} does not balance: debits − credits = {imbalance} minor units; nothing stored",
            op.operator_id
        );
    }
    let payable: i64 = op
        .journal
        .iter()
        .filter(|l| l.account == "operator_payable")
        .map(|l| l.debit_minor - l.credit_minor)
        .sum();
    if payable != 0 {
        bail!(
            "journal of operator {} for {day} leaves {payable} minor units on operator_payable; nothing stored",
            op.operator_id
        );
    }
    let names: Vec<&str> = op.figures.iter().map(|f| f.name.as_str()).collect();
    if names != FIGURES {
        bail!("statement of {} has figures {names:?}", op.operator_id);
    }
    Ok(())
}

/// Composes, checks and renders an operator's statement of a day: the statement and its
/// files (`<operator>/statement.{csv,json,html}`, `<operator>/payout.csv`).
pub fn publish(
    business_day: &str,
    base: &OperatorOutcome,
    carried: &[CarriedIn],
    adjusts: &[AdjustIn],
) -> anyhow::Result<(OperatorOutcome, Vec<OutputFile>)> {
    let op = compose(business_day, base, carried, adjusts);
    check_operator(&op, business_day)?;
    let files = crate::outputs::render_operator(business_day, &op);
    Ok((op, files))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> OperatorOutcome {
        let fig = |name: &str, amount_minor: i64| Figure {
            name: name.into(),
            amount_minor,
            items: Vec::new(),
        };
        let line = |account: &str, entry: &str, d: i64, c: i64| JournalLine {
            account: account.into(),
            entry: entry.into(),
            debit_minor: d,
            credit_minor: c,
        };
        OperatorOutcome {
            operator_id: "hz-metro".into(),
            currency: "CNY".into(),
            figures: vec![
                fig("gross", 1000),
                fig("refunds", 100),
                fig("provider_fees", 5),
                fig("adjustments", 0),
                fig("net_payable", 895),
            ],
            journal: vec![
                line("provider_clearing", "payments", 994, 0),
                line("provider_fees", "payments", 6, 0),
                line("operator_payable", "payments", 0, 1000),
                line("operator_payable", "refunds", 100, 0),
                line("provider_clearing", "refunds", 0, 99),
                line("provider_fees", "refunds", 0, 1),
                line("operator_payable", "fee_allocation", 5, 0),
                line("provider_fees", "fee_allocation", 0, 5),
                line("operator_payable", "payout", 895, 0),
                line("operator_payout", "payout", 0, 895),
            ],
            exceptions: Vec::new(),
            class_counts: Vec::new(),
            exception_count: 0,
            carried_out: Vec::new(),
        }
    }

    #[test]
    fn adjustments_feed_net_payable_and_a_balanced_journal_and_compose_is_idempotent() {
        let carried = [CarriedIn {
            source_day: "2026-01-03".into(),
            key: "k1".into(),
            reference: "M6-1".into(),
            belongs_to: "2026-01-02".into(),
            record: "payment".into(),
            amount_minor: 300,
            fee_minor: 2,
            net_minor: 298,
            detail: "payment 300, provider fee 2".into(),
        }];
        let adjusts = [AdjustIn {
            exception_key: "e1".into(),
            class: "amount_mismatch".into(),
            reference: "M2-1".into(),
            adjust_minor: -1200,
            note: "fare table error".into(),
            user: "fin.alice".into(),
        }];
        let op = compose("2026-01-02", &base(), &carried, &adjusts);
        assert_eq!(op.figure("adjustments").unwrap().amount_minor, 298 - 1200);
        assert_eq!(
            op.figure("net_payable").unwrap().amount_minor,
            895 + 298 - 1200
        );
        check_operator(&op, "2026-01-02").unwrap();
        // A negative net payable pays nothing out: the payout's sides swap.
        assert!(op
            .journal
            .iter()
            .any(|l| l.entry == "payout" && l.account == "operator_payout" && l.debit_minor == 7));
        assert_eq!(compose("2026-01-02", &op, &carried, &adjusts), op);
        // Without adjustments, the base comes back.
        assert_eq!(
            compose("2026-01-02", &op, &[], &[]),
            compose("2026-01-02", &base(), &[], &[])
        );
        assert_eq!(
            compose("2026-01-02", &base(), &[], &[]).journal,
            base().journal
        );
    }
}
