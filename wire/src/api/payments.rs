//! Payments' JSON (public listener): a rider's wallet, charges, arrears and disputes (rider
//! token); charges, the journal, refunds and dispute decisions (admin token). Ids are decimal
//! strings.

use serde::{Deserialize, Serialize};

/// A rider's wallet as the app sees it.
#[derive(Debug, Serialize, Deserialize)]
pub struct WalletView {
    /// `unbound`, `signing` (a signing was started; the provider has no agreement for it yet)
    /// or `bound`.
    pub status: String,
    /// The gateway's number of the signing (signing, bound).
    pub external_agreement_no: Option<String>,
    /// The provider's agreement number (bound).
    pub agreement_no: Option<String>,
    pub bound_at_ms: Option<i64>,
    pub signing_started_at_ms: Option<i64>,
}

/// A signing's request: no fields (the rider never names an agreement); empty or `{}`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigningRequest {}

/// A signing the rider completes in the wallet.
#[derive(Debug, Serialize, Deserialize)]
pub struct SigningView {
    pub status: String,
    pub external_agreement_no: String,
    /// The provider's signed page-sign link: open it in the wallet, or show it as a QR code.
    pub sign_url: String,
}

spelled_enum! {
    /// What a charge pays for.
    ChargeKind {
        /// A closed metro journey, post-paid by withholding.
        Metro = "metro",
        /// A toll exit: paid at the booth, or post-paid when no payment code was given.
        Toll = "toll",
        /// A ticket order paid by a merchant-presented QR.
        Ticket = "ticket",
    }
}

spelled_enum! {
    /// Where a charge stands.
    ChargeStatus {
        /// To be collected (metro and post-paid toll: by the capture worker; ticket: awaiting
        /// the buyer).
        Pending = "pending",
        /// A toll pay at the booth is in flight.
        Paying = "paying",
        Captured = "captured",
        /// Given up after its attempts: the rider is deny-listed until it is repaid.
        Failed = "failed",
        /// Not paid, and closed at the provider.
        Cancelled = "cancelled",
    }
}

spelled_enum! {
    /// Where a refund stands.
    RefundStatus {
        /// Recorded; the provider's answer is not known yet (repeat the request to drive it).
        Pending = "pending",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

spelled_enum! {
    /// Where a rider's dispute stands.
    DisputeStatus {
        Open = "open",
        /// Approved: the charge is refunded (in part or whole).
        Approved = "approved",
        Rejected = "rejected",
    }
}

/// A charge as riders and operators see it. Ids are decimal strings.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChargeView {
    pub charge_id: String,
    pub kind: ChargeKind,
    pub operator_id: String,
    pub rider_id: Option<String>,
    pub journey_id: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub business_day: String,
    pub status: ChargeStatus,
    pub attempt: i64,
    pub out_trade_no: String,
    pub provider_trade_no: Option<String>,
    pub fee_minor: Option<i64>,
    pub refunded_minor: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub captured_at_ms: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RetryView {
    pub requeued: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChargesQuery {
    pub status: Option<String>,
    pub rider_id: Option<i64>,
    pub limit: Option<i64>,
}

/// `GET /v1/admin/ledger`'s filter: one business day (YYYY-MM-DD), optionally one operator's part
/// of it. Without it the summary covers the whole journal (a scan of every line: seconds on a
/// city's month; use the day after an incident).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    pub business_day: Option<String>,
    pub operator_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LedgerView {
    /// Journal transactions in scope (the day's, or every one).
    pub transactions: i64,
    /// Transactions whose lines do not sum to zero; always 0 unless something is badly wrong.
    pub unbalanced_transactions: i64,
    pub balances: Vec<AccountBalance>,
    /// Refunds sent or to be sent to the provider whose outcome is not booked yet.
    pub refunds_pending: i64,
    /// Riders whose journeys wait to be re-paired after late taps (their charges may still
    /// change): the journal is final for the day only when this and `refunds_pending` are 0.
    pub repairs_queued: i64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    pub charge_id: String,
    pub amount_minor: i64,
    pub reason: String,
    /// The caller's idempotency key: the same id is the same refund, however often sent.
    pub request_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RefundView {
    pub refund_id: String,
    pub charge_id: String,
    pub out_request_no: String,
    pub amount_minor: i64,
    pub reason: String,
    pub status: RefundStatus,
    pub detail: Option<String>,
    pub created_at_ms: i64,
    pub completed_at_ms: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisputeBody {
    pub charge_id: String,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DisputeView {
    pub dispute_id: String,
    pub rider_id: String,
    pub charge_id: String,
    pub reason: String,
    pub status: DisputeStatus,
    pub decision_note: Option<String>,
    pub refund_id: Option<String>,
    pub created_at_ms: i64,
    pub decided_at_ms: Option<i64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DisputesQuery {
    pub status: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub approve: bool,
    /// The refund on approval; default the whole charge (less what was refunded already).
    #[serde(default)]
    pub amount_minor: Option<i64>,
    pub note: String,
}

/// Per account and party: debits and credits summed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountBalance {
    pub account: String,
    pub party: String,
    pub currency: String,
    pub debit_minor: i64,
    pub credit_minor: i64,
}
