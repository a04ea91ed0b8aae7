//! What a settlement run of one business day produced, in the shape the store keeps and the
//! review UI shows: per operator the statement figures with the records behind each, the
//! journal, and the exceptions. Built from the reconciliation engine's result by `run`; kept
//! free of the engine's types so storage and pages do not change when the engine does.

use serde::{Deserialize, Serialize};

/// The statement figures, in statement order. `adjustments` holds the items carried in from
/// other days' runs and the `adjust` resolutions of the day's exceptions (see `adjust`);
/// `net_payable = gross − refunds − provider_fees + adjustments`.
pub const FIGURES: [&str; 5] = [
    "gross",
    "refunds",
    "provider_fees",
    "adjustments",
    "net_payable",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayOutcome {
    pub business_day: String,
    /// Sorted by operator id.
    pub operators: Vec<OperatorOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorOutcome {
    pub operator_id: String,
    pub currency: String,
    /// One per name in [`FIGURES`], in that order.
    pub figures: Vec<Figure>,
    pub journal: Vec<JournalLine>,
    /// Sorted by key. Not serialized (the stored base, `statement.json`): a large day has tens
    /// of thousands; they are rows of their own and `exceptions.csv`.
    #[serde(skip)]
    pub exceptions: Vec<Exception>,
    /// How many exceptions the operator's day has.
    #[serde(default)]
    pub exception_count: u64,
    /// Records that matched on all sides, by class name.
    pub class_counts: Vec<(String, u64)>,
    /// This day's `other_day` items, leaving for the day they belong to (where they are an
    /// adjustment). Sorted by key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried_out: Vec<Carry>,
}

/// An `other_day` item on its way to the day it belongs to, with the money it carries: the
/// provider's amount and fee (nothing without a provider row: nothing was collected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carry {
    /// The key of the item's `other_day` exception in the day it comes from.
    pub key: String,
    pub reference: String,
    /// The business day the item belongs to.
    pub belongs_to: String,
    /// payment, refund, reversal or tap.
    pub record: String,
    /// The provider's amount (positive in the record's direction); 0 without a provider row.
    pub amount_minor: i64,
    /// The provider's fee: charged on a payment, given back on a refund or reversal.
    pub fee_minor: i64,
    /// Effect on the net payable of the day it is booked to: a payment's amount − fee, a
    /// refund's −(amount − fee back).
    pub net_minor: i64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub amount_minor: i64,
    /// The records behind the figure (drill-down); their amounts add up to `amount_minor`.
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Trade number, refund request number, or operator transaction id.
    pub reference: String,
    pub class: String,
    pub amount_minor: i64,
    pub detail: String,
    /// Adjustments: the day of the exception or the carried item's origin (drill-down target).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_day: String,
    /// Adjustments: the exception behind the item (its resolution, or the `other_day` item).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exception_key: String,
}

impl Item {
    /// A line of `net_payable`'s drill-down: the figure `name` it is made of, with the amount
    /// it contributes.
    pub fn component(name: &str, amount_minor: i64) -> Item {
        Item {
            reference: name.into(),
            class: "figure".into(),
            amount_minor,
            detail: String::new(),
            source_day: String::new(),
            exception_key: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalLine {
    pub account: String,
    /// The journal entry the line belongs to (payments, refunds, fee_allocation, payout).
    pub entry: String,
    pub debit_minor: i64,
    pub credit_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    /// Stable across re-runs of the same inputs (class + reference), so resolutions carry over.
    pub key: String,
    pub class: String,
    pub reference: String,
    pub amount_minor: i64,
    pub detail: String,
}

impl OperatorOutcome {
    pub fn figure(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }

    /// Debits minus credits over the journal: zero for a balanced day.
    pub fn journal_imbalance_minor(&self) -> i64 {
        self.journal
            .iter()
            .map(|l| l.debit_minor - l.credit_minor)
            .sum()
    }
}

/// Records per stored page of a figure's drill-down (`settlement_record_pages`), and per page of
/// the review UI's drill-down.
pub const RECORD_PAGE_SIZE: usize = 500;

/// The figures whose drill-down is the day's gateway records, stored as pages: payments behind
/// `gross`, refunds and reversals behind `refunds`. `provider_fees`' drill-down is both
/// sequences, by the fee each record carries.
pub const RECORD_FIGURES: [&str; 2] = ["gross", "refunds"];

/// A page of the records behind an operator's `gross` or `refunds` figure: up to
/// [`RECORD_PAGE_SIZE`] CSV lines `reference,class,amount_minor,fee_minor,detail`, in the
/// gateway export's order. `class` is empty for `matched` (almost every line); `fee_minor` is
/// the record's contribution to `provider_fees` (a payment's fee, a refund's fee given back as
/// a negative number); `detail` is the kind and terminal of a payment (`metro at G12#7`), the
/// kind and record of a refund (`metro refund`, `toll reversal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPage {
    pub operator_id: String,
    /// One of [`RECORD_FIGURES`].
    pub figure: &'static str,
    /// 0-based, consecutive per (operator, figure).
    pub page_no: u64,
    pub records: u64,
    pub amount_minor: i64,
    pub fee_minor: i64,
    pub body: String,
}

/// Header of a records file (`<operator>/records.csv`): the figure, then a page line's cells
/// (an empty class is `matched`).
pub const RECORDS_CSV_HEADER: &str = "figure,reference,class,amount_minor,fee_minor,detail\n";

/// Writes a page's lines as lines of `records.csv`: each led by its figure. The one spelling of
/// that file's body, for `--out` and the review UI's download alike.
pub fn write_records_lines(
    out: &mut impl std::io::Write,
    figure: &str,
    body: &str,
) -> std::io::Result<()> {
    for line in body.split_inclusive('\n') {
        out.write_all(figure.as_bytes())?;
        out.write_all(b",")?;
        out.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// One record of a page, as its CSV line splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLine {
    pub reference: String,
    pub class: String,
    pub amount_minor: i64,
    pub fee_minor: i64,
    pub detail: String,
}

/// The records of a page body (written by the engine, so well formed; a line that is not is
/// skipped rather than shown wrong).
pub fn parse_record_page(body: &str) -> Vec<RecordLine> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body.as_bytes());
    reader
        .records()
        .filter_map(Result::ok)
        .filter_map(|r| {
            Some(RecordLine {
                reference: r.get(0)?.to_string(),
                class: match r.get(1)? {
                    "" => "matched".to_string(),
                    class => class.to_string(),
                },
                amount_minor: r.get(2)?.parse().ok()?,
                fee_minor: r.get(3)?.parse().ok()?,
                detail: r.get(4)?.to_string(),
            })
        })
        .collect()
}
