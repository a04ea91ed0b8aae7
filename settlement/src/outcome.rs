//! What a settlement run of one business day produced, in the shape the store keeps and the
//! review UI shows: per operator the statement figures with the records behind each, the
//! journal, and the exceptions. Built from the reconciliation engine's result by `run`; kept
//! free of the engine's types so storage and pages do not change when the engine does.

use serde::{Deserialize, Serialize};

/// The statement figures, in statement order.
pub const FIGURES: [&str; 4] = ["gross", "refunds", "provider_fees", "net_payable"];

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
    /// Sorted by key.
    pub exceptions: Vec<Exception>,
    /// Records that matched on all sides, by class name.
    pub class_counts: Vec<(String, u64)>,
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
