//! The run's [`Engine`] on the reconciliation engine ([`crate::reconcile`]): builds its input
//! and configuration from the run's files, and turns its [`Reconciliation`] into the
//! [`DayOutcome`] the store keeps and the UI shows.
//!
//! Drill-down: the engine lists only the items that are not `matched`, so the records behind
//! the statement's figures come from the gateway export(s) themselves, each labelled with its
//! item's class (`matched` unless the engine listed it). Settled records are those of the
//! classes the engine's money counts (matched, amount_mismatch — at the provider's amount —
//! and missing_at_operator); the provider-fee drill-down shows the provider's fee per record
//! (the gateway's booking, or the provider's where a fee exception says they differ), so every
//! drill-down adds up to its figure — the store refuses a run whose records do not.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;

use crate::digest::sha256_hex;
use crate::formats::FastMap;
use crate::money::{Account, FeeContract};
use crate::outcome::{
    Carry, DayOutcome, Exception, Figure, Item, JournalLine, OperatorOutcome, RecordPage,
    RECORD_FIGURES, RECORD_PAGE_SIZE,
};
use crate::outputs::csv_row;
use crate::recon::{
    reconcile, Class, OperatorFile, ReconConfig, ReconInput, Reconciliation, RecordKind,
};
use crate::run::{Engine, EngineInputs, RecordSource};
use crate::{BillFile, DayWindow};

/// Name of the outcome that holds items no side attributes to an operator.
pub const UNATTRIBUTED: &str = "unattributed";

pub struct Recon;

/// The engine `settlement run` and the nightly job use.
pub fn engine() -> &'static dyn Engine {
    &Recon
}

impl Engine for Recon {
    fn settle(&self, inputs: &EngineInputs) -> anyhow::Result<(DayOutcome, Box<dyn RecordSource>)> {
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
        // The engine's non-matched items by their gateway row (file, line) — not by key: a
        // key the gateway booked twice is one settled item and one `duplicate` — with the
        // class of the row and the provider's amount it settles at.
        let mut listed: Vec<Vec<(u64, Class, Option<i64>)>> =
            vec![Vec::new(); inputs.gateway_exports.len()];
        for it in &rec.items {
            if let Some(g) = it.gateway {
                if let Some(file) = listed.get_mut(g.file) {
                    file.push((g.line, it.class, it.provider.map(|p| p.amount_minor)));
                }
            }
        }
        for file in &mut listed {
            file.sort_by_key(|(line, _, _)| *line);
        }
        // A record's fee is the provider's (what the figure counts): the gateway's booking
        // unless they differ, which is a fee exception naming the provider's.
        let provider_fees: FastMap<String, i64> = rec
            .fee_exceptions
            .iter()
            .map(|f| (f.key.clone(), f.fee_provider_minor))
            .collect();
        let records = GatewayRecords {
            paths: inputs.gateway_exports.clone(),
            listed,
            provider_fees,
        };
        Ok((outcome(&rec), Box::new(records)))
    }
}

/// The drill-down of `gross`, `refunds` and `provider_fees`: the gateway export's records of the
/// classes the money counts, each labelled with its item's class (`matched` unless the engine
/// listed it), streamed from the file(s) page by page — memory is a page per (operator, figure),
/// whatever the day's size.
struct GatewayRecords {
    /// In the order the engine numbered them (`RowRef::file`).
    paths: Vec<PathBuf>,
    /// Per gateway file, its listed rows by line number (ascending): the reader walks them with
    /// a cursor as it reads the file.
    listed: Vec<Vec<(u64, Class, Option<i64>)>>,
    /// Trade or refund number → the provider's fee, where it differs from the gateway's.
    provider_fees: FastMap<String, i64>,
}

/// A page being filled.
#[derive(Default)]
struct PageBuf {
    page_no: u64,
    records: u64,
    amount_minor: i64,
    fee_minor: i64,
    body: String,
}

impl PageBuf {
    fn take(&mut self, operator_id: &str, figure: &'static str) -> RecordPage {
        let page = RecordPage {
            operator_id: operator_id.to_string(),
            figure,
            page_no: self.page_no,
            records: self.records,
            amount_minor: self.amount_minor,
            fee_minor: self.fee_minor,
            body: std::mem::take(&mut self.body),
        };
        *self = PageBuf {
            page_no: self.page_no + 1,
            body: String::with_capacity(page.body.len()),
            ..PageBuf::default()
        };
        page
    }
}

impl RecordSource for GatewayRecords {
    fn write(
        self: Box<Self>,
        sink: &mut dyn FnMut(RecordPage) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        // Per operator: the page of `gross` and the page of `refunds` being filled.
        let mut open: FastMap<String, [PageBuf; 2]> = FastMap::default();
        let mut line = Vec::new();
        for (file_no, path) in self.paths.iter().enumerate() {
            let file =
                std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
            let mut line_no = 0u64;
            let listed = self.listed.get(file_no).map_or(&[][..], Vec::as_slice);
            let mut next_listed = 0;
            loop {
                line_no += 1;
                line.clear();
                if reader
                    .read_until(b'\n', &mut line)
                    .with_context(|| format!("reading {}", path.display()))?
                    == 0
                {
                    break;
                }
                let Ok(text) = std::str::from_utf8(&line) else {
                    continue;
                };
                let text = text.trim_end_matches(['\n', '\r']);
                if text.is_empty() || text.starts_with('#') || text.starts_with("record_type,") {
                    continue;
                }
                let mut c = [""; 13];
                let mut cells = 0;
                for cell in text.split(',') {
                    if cells == c.len() {
                        cells += 1;
                        break;
                    }
                    c[cells] = cell;
                    cells += 1;
                }
                if cells != c.len() {
                    continue;
                }
                let (record_type, operator_id) = (c[0], c[1]);
                let (slot, key) = match record_type {
                    "payment" => (0, c[3]),
                    "refund" | "reversal" => (1, c[5]),
                    _ => continue,
                };
                while next_listed < listed.len() && listed[next_listed].0 < line_no {
                    next_listed += 1;
                }
                let (class, provider_amount) = match listed.get(next_listed) {
                    Some(&(line, class, amount)) if line == line_no => (class, amount),
                    _ => (Class::Matched, None),
                };
                if !settled(class) {
                    continue;
                }
                // An amount mismatch settles at the provider's amount.
                let amount = provider_amount.unwrap_or_else(|| c[9].parse().unwrap_or(0));
                let fee = match self.provider_fees.get(key) {
                    Some(fee) => *fee,
                    None => c[10].parse().unwrap_or(0),
                };
                let fee = if slot == 0 { fee } else { -fee };
                if !open.contains_key(operator_id) {
                    open.insert(operator_id.to_string(), Default::default());
                }
                let buf = &mut open.get_mut(operator_id).expect("inserted")[slot];
                // The line `reference,class,amount,fee,detail`, written in place: the export's
                // cells hold no separators (the format has no quoting), a quote is escaped.
                // The figure says payment; a refund line says refund or reversal.
                let detail_cells: &[&str] = match (slot, c[6].is_empty()) {
                    (0, true) => &[c[8]],
                    (0, false) => &[c[8], " at ", c[6], "#", c[7]],
                    _ => &[c[8], " ", record_type],
                };
                // An empty class is `matched` (nine in ten thousand lines are something else;
                // the word would be a seventh of a page's bytes).
                let class_cell = if class == Class::Matched {
                    ""
                } else {
                    class.as_str()
                };
                if key.contains('"') || detail_cells.iter().any(|d| d.contains('"')) {
                    buf.body.push_str(&csv_row(&[
                        key,
                        class_cell,
                        &amount.to_string(),
                        &fee.to_string(),
                        &detail_cells.concat(),
                    ]));
                } else {
                    let body = &mut buf.body;
                    body.push_str(key);
                    body.push(',');
                    body.push_str(class_cell);
                    body.push(',');
                    push_i64(body, amount);
                    body.push(',');
                    push_i64(body, fee);
                    body.push(',');
                    for d in detail_cells {
                        buf.body.push_str(d);
                    }
                    buf.body.push('\n');
                }
                buf.records += 1;
                buf.amount_minor += amount;
                buf.fee_minor += fee;
                if buf.records as usize == RECORD_PAGE_SIZE {
                    sink(buf.take(operator_id, RECORD_FIGURES[slot]))?;
                }
            }
        }
        let mut rest: Vec<(String, [PageBuf; 2])> = open.into_iter().collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        for (operator_id, mut bufs) in rest {
            for (slot, buf) in bufs.iter_mut().enumerate() {
                if buf.records > 0 {
                    sink(buf.take(&operator_id, RECORD_FIGURES[slot]))?;
                }
            }
        }
        Ok(())
    }
}

/// Appends an integer in decimal, without the formatting machinery (ten million a day).
fn push_i64(out: &mut String, v: i64) {
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    // ASCII digits only.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"));
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

fn outcome(rec: &Reconciliation) -> DayOutcome {
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
                exception_count: 0,
                carried_out: Vec::new(),
            },
        );
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
        op.exception_count = op.exceptions.len() as u64;
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
            exception_count: 0,
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
