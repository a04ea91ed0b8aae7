//! The run's [`Engine`] on the reconciliation engine ([`crate::reconcile`]): builds its input
//! and configuration from the run's files, and turns its [`Reconciliation`] into the
//! [`DayOutcome`] the store keeps and the UI shows.
//!
//! Drill-down: the engine lists only the items that are not `matched`, so the records behind
//! the statement's figures come from the gateway export(s) themselves, each labelled with its
//! item's class (`matched` unless the engine listed it). Settled records are those of the
//! classes the engine's money counts (matched, amount_mismatch — at the provider's amount —
//! and missing_at_operator); the provider-fee drill-down shows the fee the gateway booked per
//! record, and every fee that differs from the contract is an exception of its own.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;

use crate::digest::sha256_hex;
use crate::money::{Account, FeeContract};
use crate::outcome::{Carry, DayOutcome, Exception, Figure, Item, JournalLine, OperatorOutcome};
use crate::recon::{
    reconcile, Class, OperatorFile, ReconConfig, ReconInput, Reconciliation, RecordKind,
};
use crate::run::{Engine, EngineInputs};
use crate::{BillFile, DayWindow};

/// Name of the outcome that holds items no side attributes to an operator.
pub const UNATTRIBUTED: &str = "unattributed";

pub struct Recon;

/// The engine `settlement run` and the nightly job use.
pub fn engine() -> &'static dyn Engine {
    &Recon
}

impl Engine for Recon {
    fn settle(&self, inputs: &EngineInputs) -> anyhow::Result<DayOutcome> {
        let day = DayWindow::shanghai(inputs.business_day)?;
        let mut config = ReconConfig::new(day);
        config.operator_days = inputs
            .operator_days
            .iter()
            .map(|(op, w)| (op.clone(), w.clone()))
            .collect();
        for (op, bp) in &inputs.fee_rates_bp {
            config.contracts.insert(
                op.clone(),
                FeeContract {
                    rate_bp: *bp,
                    fixed_minor: 0,
                },
            );
        }
        let input = ReconInput {
            gateway: inputs.gateway_exports.clone(),
            provider: inputs
                .provider_bills
                .iter()
                .map(|p| BillFile {
                    path: p.clone(),
                    encoding: None,
                })
                .collect(),
            operators: inputs
                .operator_exports
                .iter()
                .map(|(id, p)| OperatorFile {
                    operator_id: id.clone(),
                    path: p.clone(),
                })
                .collect(),
        };
        let rec = reconcile(&input, &config).map_err(|e| {
            let mut msg = e.to_string();
            for ie in e.input_errors() {
                msg.push_str(&format!("\n  {ie}"));
            }
            anyhow::anyhow!(msg)
        })?;
        let mut gateway_rows = Vec::new();
        for path in &inputs.gateway_exports {
            gateway_rows.extend(read_gateway_rows(path)?);
        }
        Ok(outcome(&rec, &gateway_rows))
    }
}

/// A gateway export row, as far as the drill-down needs it (the engine has validated the file).
#[derive(Debug, Clone)]
struct GwRow {
    record_type: String,
    operator_id: String,
    out_trade_no: String,
    out_request_no: String,
    terminal: String,
    kind: String,
    amount_minor: i64,
    fee_minor: i64,
}

fn read_gateway_rows(path: &Path) -> anyhow::Result<Vec<GwRow>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut rows = Vec::new();
    for line in text.lines().skip(2) {
        let line = line.trim_end_matches('\r');
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let c: Vec<&str> = line.split(',').collect();
        if c.len() != 13 {
            continue;
        }
        rows.push(GwRow {
            record_type: c[0].into(),
            operator_id: c[1].into(),
            out_trade_no: c[3].into(),
            out_request_no: c[5].into(),
            terminal: if c[6].is_empty() {
                String::new()
            } else {
                format!("{}#{}", c[6], c[7])
            },
            kind: c[8].into(),
            amount_minor: c[9].parse().unwrap_or(0),
            fee_minor: c[10].parse().unwrap_or(0),
        });
    }
    Ok(rows)
}

fn settled(class: Class) -> bool {
    matches!(
        class,
        Class::Matched | Class::AmountMismatch | Class::MissingAtOperator
    )
}

fn account_name(a: Account) -> String {
    serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{a:?}"))
}

fn outcome(rec: &Reconciliation, gateway_rows: &[GwRow]) -> DayOutcome {
    // The engine's non-matched items by their key (trade or refund number).
    let mut by_key: HashMap<&str, &crate::recon::Item> = HashMap::new();
    for it in &rec.items {
        by_key.entry(it.key.as_str()).or_insert(it);
    }
    let mut ops: BTreeMap<String, OperatorOutcome> = BTreeMap::new();
    for s in &rec.operators {
        let id = s.operator_id.clone().unwrap_or_else(|| UNATTRIBUTED.into());
        let t = &s.totals;
        let fees_net = t.fees_charged_minor - t.fees_returned_minor;
        let figures = vec![
            Figure {
                name: "gross".into(),
                amount_minor: t.gross_minor,
                items: Vec::new(),
            },
            Figure {
                name: "refunds".into(),
                amount_minor: t.refunds_minor,
                items: Vec::new(),
            },
            Figure {
                name: "provider_fees".into(),
                amount_minor: fees_net,
                items: Vec::new(),
            },
            // Filled when the statement is composed (`adjust::compose`).
            Figure {
                name: "adjustments".into(),
                amount_minor: 0,
                items: Vec::new(),
            },
            Figure {
                name: "net_payable".into(),
                amount_minor: t.net_payable_minor,
                items: vec![
                    Item::component("gross", t.gross_minor),
                    Item::component("refunds", -t.refunds_minor),
                    Item::component("provider_fees", -fees_net),
                ],
            },
        ];
        let journal = s
            .journal
            .entries
            .iter()
            .flat_map(|e| {
                e.lines.iter().map(move |l| JournalLine {
                    account: account_name(l.account),
                    entry: e.description.to_string(),
                    debit_minor: l.debit_minor,
                    credit_minor: l.credit_minor,
                })
            })
            .collect();
        let class_counts = Class::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), s.counts.get(*c)))
            .collect();
        ops.insert(
            id.clone(),
            OperatorOutcome {
                operator_id: id,
                currency: s.currency.clone(),
                figures,
                journal,
                exceptions: Vec::new(),
                class_counts,
                carried_out: Vec::new(),
            },
        );
    }
    // Drill-down from the gateway's rows.
    for r in gateway_rows {
        let Some(op) = ops.get_mut(&r.operator_id) else {
            continue;
        };
        let key = if r.record_type == "refund" {
            r.out_request_no.as_str()
        } else {
            r.out_trade_no.as_str()
        };
        let engine_item = by_key.get(key).copied();
        let class = engine_item.map(|i| i.class).unwrap_or(Class::Matched);
        if !settled(class) {
            continue;
        }
        // An amount mismatch settles at the provider's amount.
        let amount = engine_item
            .and_then(|i| i.provider)
            .map(|p| p.amount_minor)
            .unwrap_or(r.amount_minor);
        let detail = format!(
            "{} {}{}",
            r.kind,
            r.record_type,
            if r.terminal.is_empty() {
                String::new()
            } else {
                format!(" at {}", r.terminal)
            }
        );
        let item = |amount_minor: i64| Item {
            reference: key.to_string(),
            class: class.as_str().to_string(),
            amount_minor,
            detail: detail.clone(),
            source_day: String::new(),
            exception_key: String::new(),
        };
        match r.record_type.as_str() {
            "payment" => {
                op.figures[0].items.push(item(amount));
                op.figures[2].items.push(item(r.fee_minor));
            }
            "refund" | "reversal" => {
                op.figures[1].items.push(item(amount));
                op.figures[2].items.push(item(-r.fee_minor));
            }
            _ => {}
        }
    }
    // Exceptions: every non-matched item, and every fee that differs from the contract.
    for it in &rec.items {
        let id = it
            .operator_id
            .clone()
            .unwrap_or_else(|| UNATTRIBUTED.into());
        let amount = it
            .gateway
            .or(it.provider)
            .or(it.operator)
            .map(|r| r.amount_minor)
            .unwrap_or(0);
        let mut detail = Vec::new();
        // Sides and line numbers, not file names: the outputs depend on the inputs' bytes only.
        for (side, r) in [
            ("gateway", it.gateway),
            ("provider", it.provider),
            ("operator", it.operator),
        ] {
            match r {
                Some(r) => detail.push(format!("{side} {} (line {})", r.amount_minor, r.line)),
                None => detail.push(format!("no {side} record")),
            }
        }
        if !it.mismatch.is_empty() {
            let m: Vec<String> = it
                .mismatch
                .iter()
                .map(|m| {
                    serde_json::to_value(m)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                })
                .collect();
            detail.push(format!("differs: {}", m.join(", ")));
        }
        if let Some(day) = &it.carried_to {
            detail.push(format!("belongs to {day}"));
        }
        let class = it.class.as_str();
        let detail = detail.join("; ");
        let key = push_exception(&mut ops, &id, class, &it.key, amount, detail.clone(), rec);
        if let (Class::OtherDay, Some(day)) = (it.class, &it.carried_to) {
            // The money it carries is the provider's (what moved); none without a provider row.
            let (amount_minor, fee_minor) = it
                .provider
                .map(|p| (p.amount_minor, it.provider_fee_minor))
                .unwrap_or((0, 0));
            let net_minor = match it.record {
                RecordKind::Payment => amount_minor - fee_minor,
                RecordKind::Refund | RecordKind::Reversal => -(amount_minor - fee_minor),
                RecordKind::Tap => 0,
            };
            let what = if it.provider.is_some() {
                format!(
                    "{} {amount_minor}, provider fee {fee_minor}",
                    it.record.as_str()
                )
            } else {
                format!(
                    "{}: no provider record, nothing collected",
                    it.record.as_str()
                )
            };
            if let Some(op) = ops.get_mut(&id) {
                op.carried_out.push(Carry {
                    key,
                    reference: it.key.clone(),
                    belongs_to: day.clone(),
                    record: it.record.as_str().to_string(),
                    amount_minor,
                    fee_minor,
                    net_minor,
                    detail: format!("{what}; {detail}"),
                });
            }
        }
    }
    for f in &rec.fee_exceptions {
        push_exception(
            &mut ops,
            &f.operator_id,
            "fee_mismatch",
            &f.key,
            f.fee_provider_minor,
            format!(
                "provider fee {} vs contract {} (gateway booked {})",
                f.fee_provider_minor, f.fee_expected_minor, f.fee_gateway_minor
            ),
            rec,
        );
    }
    let mut operators: Vec<OperatorOutcome> = ops.into_values().collect();
    for op in &mut operators {
        op.exceptions.sort_by(|a, b| a.key.cmp(&b.key));
        op.carried_out.sort_by(|a, b| a.key.cmp(&b.key));
    }
    DayOutcome {
        business_day: rec.business_day.clone(),
        operators,
    }
}

fn push_exception(
    ops: &mut BTreeMap<String, OperatorOutcome>,
    operator_id: &str,
    class: &str,
    reference: &str,
    amount_minor: i64,
    detail: String,
    rec: &Reconciliation,
) -> String {
    let op = ops
        .entry(operator_id.to_string())
        .or_insert_with(|| OperatorOutcome {
            operator_id: operator_id.to_string(),
            currency: rec
                .operators
                .first()
                .map(|o| o.currency.clone())
                .unwrap_or_else(|| "CNY".into()),
            figures: crate::outcome::FIGURES
                .iter()
                .map(|n| Figure {
                    name: n.to_string(),
                    amount_minor: 0,
                    items: Vec::new(),
                })
                .collect(),
            journal: Vec::new(),
            exceptions: Vec::new(),
            class_counts: Vec::new(),
            carried_out: Vec::new(),
        });
    // Stable across re-runs and URL-safe: the hash of class, reference and detail (so two items
    // with one reference — a duplicate and its original — stay apart).
    let key = sha256_hex(format!("{class}\n{reference}\n{detail}").as_bytes())[..20].to_string();
    op.exceptions.push(Exception {
        key: key.clone(),
        class: class.to_string(),
        reference: reference.to_string(),
        amount_minor,
        detail,
    });
    key
}
