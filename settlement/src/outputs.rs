//! The files a run writes, rendered from a [`DayOutcome`]: per operator `statement.csv`,
//! `statement.json`, `statement.html` and `payout.csv` (the payout instruction), and the day's
//! `exceptions.csv`. Every byte depends only on the outcome — no run id, no clock — so a re-run
//! over identical inputs yields identical files (a test checks byte equality).
//!
//! Names are `<operator>/<file>` and `exceptions.csv`.

use maud::{html, DOCTYPE};

use crate::digest::sha256_hex;
use crate::money::format_minor;
use crate::outcome::{DayOutcome, OperatorOutcome};

/// Format version written in every file's header, bumped on any change of layout.
pub const OUTPUTS_VERSION: &str = "turnpike-settlement-outputs/2";

/// A rendered file of a run: stored with it (`settlement_run_outputs`), served by the review UI
/// and, with `--out`, written under `<dir>/<day>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub name: String,
    pub operator_id: String,
    pub content_type: String,
    pub body: String,
}

/// One CSV record (RFC 4180 quoting), with its line end.
pub fn csv_row(cells: &[&str]) -> String {
    let mut out = String::new();
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if c.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&c.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(c);
        }
    }
    out.push('\n');
    out
}

pub fn render(outcome: &DayOutcome) -> Vec<OutputFile> {
    let mut files: Vec<OutputFile> = outcome
        .operators
        .iter()
        .flat_map(|op| render_operator(&outcome.business_day, op))
        .collect();
    files.push(render_exceptions(outcome));
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

/// The day's `exceptions.csv`: every operator's exceptions.
pub fn render_exceptions(outcome: &DayOutcome) -> OutputFile {
    let day = &outcome.business_day;
    let mut exceptions = format!("# {OUTPUTS_VERSION} exceptions {day}\n");
    exceptions.push_str("operator_id,class,reference,amount_minor,currency,detail,key\n");
    for op in &outcome.operators {
        for e in &op.exceptions {
            exceptions.push_str(&csv_row(&[
                &op.operator_id,
                &e.class,
                &e.reference,
                &e.amount_minor.to_string(),
                &op.currency,
                &e.detail,
                &e.key,
            ]));
        }
    }
    OutputFile {
        name: "exceptions.csv".into(),
        operator_id: String::new(),
        content_type: "text/csv; charset=utf-8".into(),
        body: exceptions,
    }
}

/// An operator's files of a day: `statement.csv`, `statement.json`, `statement.html` and
/// `payout.csv`, sorted by name.
pub fn render_operator(day: &str, op: &OperatorOutcome) -> Vec<OutputFile> {
    let mut files = Vec::new();
    let id = &op.operator_id;
    let cur = &op.currency;
    // statement.csv: the figures, then every record behind each.
    let mut csv = format!("# {OUTPUTS_VERSION} statement {day} {id}\n");
    csv.push_str("section,figure,reference,class,amount_minor,currency,detail\n");
    for f in &op.figures {
        csv.push_str(&csv_row(&[
            "figure",
            &f.name,
            "",
            "",
            &f.amount_minor.to_string(),
            cur,
            "",
        ]));
    }
    for f in &op.figures {
        for it in &f.items {
            csv.push_str(&csv_row(&[
                "item",
                &f.name,
                &it.reference,
                &it.class,
                &it.amount_minor.to_string(),
                cur,
                &it.detail,
            ]));
        }
    }
    for j in &op.journal {
        csv.push_str(&csv_row(&[
            "journal",
            &j.account,
            &j.entry,
            "",
            &(j.debit_minor - j.credit_minor).to_string(),
            cur,
            &format!("debit {} credit {}", j.debit_minor, j.credit_minor),
        ]));
    }
    for c in &op.carried_out {
        csv.push_str(&csv_row(&[
            "carried_out",
            &c.belongs_to,
            &c.reference,
            &c.record,
            &c.net_minor.to_string(),
            cur,
            &c.detail,
        ]));
    }
    files.push(OutputFile {
        name: format!("{id}/statement.csv"),
        operator_id: id.clone(),
        content_type: "text/csv; charset=utf-8".into(),
        body: csv,
    });
    let json = serde_json::json!({
        "format": OUTPUTS_VERSION,
        "business_day": day,
        "operator": op,
    });
    files.push(OutputFile {
        name: format!("{id}/statement.json"),
        operator_id: id.clone(),
        content_type: "application/json".into(),
        body: serde_json::to_string_pretty(&json).expect("outcome serializes") + "\n",
    });
    let adjustments: &[crate::outcome::Item] = op
        .figure("adjustments")
        .map(|f| f.items.as_slice())
        .unwrap_or(&[]);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Statement " (id) " " (day) } }
            body {
                h1 { "Settlement statement — " (id) " — " (day) }
                table border="1" cellpadding="4" {
                    @for f in &op.figures { tr { td { (f.name) } td align="right" { (format_minor(f.amount_minor, cur)) } } }
                }
                @if !adjustments.is_empty() {
                    h2 { "Adjustments" }
                    table border="1" cellpadding="4" {
                        tr { th { "reference" } th { "kind" } th { "amount" } th { "detail" } }
                        @for it in adjustments {
                            tr { td { (it.reference) } td { (it.class) } td align="right" { (format_minor(it.amount_minor, cur)) } td { (it.detail) } }
                        }
                    }
                }
                p { (op.exception_count) " exception(s)" }
                h2 { "Journal" }
                table border="1" cellpadding="4" {
                    tr { th { "account" } th { "entry" } th { "debit" } th { "credit" } }
                    @for j in &op.journal {
                        tr { td { (j.account) } td { (j.entry) } td align="right" { (format_minor(j.debit_minor, cur)) } td align="right" { (format_minor(j.credit_minor, cur)) } }
                    }
                }
            }
        }
    };
    files.push(OutputFile {
        name: format!("{id}/statement.html"),
        operator_id: id.clone(),
        content_type: "text/html; charset=utf-8".into(),
        body: page.into_string(),
    });
    let net = op
        .figure("net_payable")
        .map(|f| f.amount_minor)
        .unwrap_or(0);
    let mut payout = format!("# {OUTPUTS_VERSION} payout {day} {id}\n");
    payout.push_str("payee_operator_id,business_day,amount_minor,currency,reference\n");
    if net > 0 {
        payout.push_str(&csv_row(&[
            id,
            day,
            &net.to_string(),
            cur,
            &payout_reference(day, id),
        ]));
    }
    files.push(OutputFile {
        name: format!("{id}/payout.csv"),
        operator_id: id.clone(),
        content_type: "text/csv; charset=utf-8".into(),
        body: payout,
    });
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

/// The reference of an operator's payout for a day (payout.csv, `settlement_payouts`).
pub fn payout_reference(day: &str, operator_id: &str) -> String {
    format!("TP-{day}-{operator_id}")
}

/// SHA-256 over the outputs' names and bodies' SHA-256, in name order. `extra` are outputs
/// not held as one body (a records file, fingerprinted by its pages): (name, SHA-256).
pub fn outputs_sha256(files: &[OutputFile], extra: &[(String, String)]) -> String {
    let mut all: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.name.clone(), sha256_hex(f.body.as_bytes())))
        .chain(extra.iter().cloned())
        .collect();
    all.sort();
    let mut bytes = Vec::new();
    for (name, sha) in all {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(sha.as_bytes());
        bytes.push(b'\n');
    }
    sha256_hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_with_separators_are_quoted() {
        assert_eq!(
            csv_row(&["a", "b,c", "say \"hi\""]),
            "a,\"b,c\",\"say \"\"hi\"\"\"\n"
        );
    }
}
