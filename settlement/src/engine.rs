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
use std::path::PathBuf;

use anyhow::Context;

use crate::digest::sha256_hex;
use crate::formats::scan;
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
        // What the records' reader must know of a gateway row, by (file, line): the class of a
        // non-matched item — by row, not by key: a key the gateway booked twice is one settled
        // item and one `duplicate` — with the provider's amount it settles at, and the
        // provider's fee where it differs from the gateway's booking (a fee exception).
        let mut listed: Vec<Vec<Listed>> = vec![Vec::new(); inputs.gateway_exports.len()];
        for it in &rec.items {
            if let Some(g) = it.gateway {
                if let Some(file) = listed.get_mut(g.file) {
                    file.push(Listed {
                        line: g.line,
                        class: it.class,
                        amount_minor: it.provider.map(|p| p.amount_minor),
                        fee_minor: None,
                    });
                }
            }
        }
        for f in &rec.fee_exceptions {
            if f.fee_provider_minor == f.fee_gateway_minor {
                continue;
            }
            if let Some(file) = listed.get_mut(f.gateway.file) {
                file.push(Listed {
                    line: f.gateway.line,
                    class: Class::Matched,
                    amount_minor: None,
                    fee_minor: Some(f.fee_provider_minor),
                });
            }
        }
        for file in &mut listed {
            // One entry per line: an item's class and a fee exception's fee merge.
            file.sort_by_key(|l| l.line);
            file.dedup_by(|later, first| {
                if later.line != first.line {
                    return false;
                }
                if first.class == Class::Matched {
                    first.class = later.class;
                    first.amount_minor = first.amount_minor.or(later.amount_minor);
                }
                first.fee_minor = first.fee_minor.or(later.fee_minor);
                true
            });
        }
        let records = GatewayRecords {
            paths: inputs.gateway_exports.clone(),
            listed,
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
    /// Per gateway file, its listed rows by line number (ascending, one per line): the reader
    /// walks them with a cursor as it reads the file.
    listed: Vec<Vec<Listed>>,
}

/// A gateway row the records' reader cannot take as read: its class is not `matched`, or the
/// provider's amount or fee is what the figures count.
#[derive(Clone, Copy)]
struct Listed {
    line: u64,
    class: Class,
    /// The provider's amount (an amount mismatch settles at it).
    amount_minor: Option<i64>,
    /// The provider's fee, where it differs from the gateway's booking.
    fee_minor: Option<i64>,
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
        // Per operator (a handful: a short list beats hashing every line's operator): the page
        // of `gross` and the page of `refunds` being filled.
        let mut open: Vec<(String, [PageBuf; 2])> = Vec::new();
        for (file_no, path) in self.paths.iter().enumerate() {
            let listed = self.listed.get(file_no).map_or(&[][..], Vec::as_slice);
            let mut next_listed = 0;
            let mut line_no = 0u64;
            let mut failed: Option<anyhow::Error> = None;
            // The reconciliation's own line reader and cell cutter: the same lines, numbered
            // the same way, without a copy or a UTF-8 pass per line.
            scan::for_each_line_while(path, 0, u64::MAX, |line| {
                line_no += 1;
                let mut c = [&b""[..]; 13];
                if scan::split_cells(line, &mut c) != c.len() {
                    return true;
                }
                let (slot, key) = match c[0] {
                    b"payment" => (0, c[3]),
                    b"refund" | b"reversal" => (1, c[5]),
                    _ => return true,
                };
                while next_listed < listed.len() && listed[next_listed].line < line_no {
                    next_listed += 1;
                }
                let (class, provider_amount, provider_fee) = match listed.get(next_listed) {
                    Some(l) if l.line == line_no => (l.class, l.amount_minor, l.fee_minor),
                    _ => (Class::Matched, None, None),
                };
                if !settled(class) {
                    return true;
                }
                // One UTF-8 check for the line; its cells are slices of it.
                let Ok(text) = std::str::from_utf8(line) else {
                    return true;
                };
                let cell = |b: &[u8]| {
                    let at = b.as_ptr() as usize - line.as_ptr() as usize;
                    text.get(at..at + b.len()).unwrap_or("")
                };
                let (operator_id, key) = (cell(c[1]), cell(key));
                // An amount mismatch settles at the provider's amount.
                let amount = provider_amount.unwrap_or_else(|| parse_i64(c[9]));
                let fee = provider_fee.unwrap_or_else(|| parse_i64(c[10]));
                let fee = if slot == 0 { fee } else { -fee };
                let at = match open.iter().position(|(op, _)| op == operator_id) {
                    Some(at) => at,
                    None => {
                        open.push((operator_id.to_string(), Default::default()));
                        open.len() - 1
                    }
                };
                let buf = &mut open[at].1[slot];
                // The detail: `metro at G12#7` for a payment at a gate, the payment's own
                // word for a refund (`metro refund`, `metro reversal`).
                let detail: [&str; 5] = match (slot, c[6].is_empty()) {
                    (0, true) => [cell(c[8]), "", "", "", ""],
                    (0, false) => [cell(c[8]), " at ", cell(c[6]), "#", cell(c[7])],
                    _ => [cell(c[8]), " ", cell(c[0]), "", ""],
                };
                // An empty class is `matched` (nine in ten thousand lines are something else;
                // the word would be a seventh of a page's bytes).
                let class_cell = if class == Class::Matched {
                    ""
                } else {
                    class.as_str()
                };
                if memchr::memchr(b'"', line).is_none() {
                    // The line `reference,class,amount,fee,detail`, written in place: the
                    // export's cells hold no separators (the format has no quoting).
                    let body = &mut buf.body;
                    body.push_str(key);
                    body.push(',');
                    body.push_str(class_cell);
                    body.push(',');
                    push_i64(body, amount);
                    body.push(',');
                    push_i64(body, fee);
                    body.push(',');
                    for d in detail {
                        body.push_str(d);
                    }
                    body.push('\n');
                } else {
                    buf.body.push_str(&csv_row(&[
                        key,
                        class_cell,
                        &amount.to_string(),
                        &fee.to_string(),
                        &detail.concat(),
                    ]));
                }
                buf.records += 1;
                buf.amount_minor += amount;
                buf.fee_minor += fee;
                if buf.records as usize == RECORD_PAGE_SIZE {
                    if let Err(e) = sink(buf.take(operator_id, RECORD_FIGURES[slot])) {
                        failed = Some(e);
                        return false;
                    }
                }
                true
            })
            .with_context(|| format!("reading {}", path.display()))?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
        open.sort_by(|a, b| a.0.cmp(&b.0));
        for (operator_id, mut bufs) in open {
            for (slot, buf) in bufs.iter_mut().enumerate() {
                if buf.records > 0 {
                    sink(buf.take(&operator_id, RECORD_FIGURES[slot]))?;
                }
            }
        }
        Ok(())
    }
}

/// A decimal integer cell; a malformed one (the reconciliation has refused those already) is 0.
fn parse_i64(cell: &[u8]) -> i64 {
    std::str::from_utf8(cell)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
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
