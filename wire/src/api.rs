//! JSON types of the gateway's APIs, shared by the gateway and every client (terminals real or
//! simulated, rider apps, admin tools): the terminal API's taps here, the rest in submodules
//! ([`rider`], [`payments`], [`admin`], [`tickets`], [`toll`]).
//!
//! These are the wire shapes only; validation that needs context (is the terminal allowed to do
//! this, is the station known) happens in the gateway. Every request type rejects unknown fields,
//! so a typo in a terminal's firmware is a precise 400 instead of a silently ignored field.

use serde::{Deserialize, Serialize};

use crate::money::Money;

pub mod admin;
pub mod flow;
pub mod payments;
pub mod rider;
pub mod tickets;
pub mod toll;

/// Largest sequence number a terminal may use: 2^53 − 1, so that sequence numbers survive a trip
/// through any JSON parser (JavaScript numbers included) without rounding.
pub const SEQUENCE_MAX: u64 = (1 << 53) - 1;

/// Most taps one offline batch may carry. A gate offline for an hour at a busy station buffers a
/// few thousand taps; it uploads them in chunks of this size.
pub const BATCH_TAPS_MAX: usize = 500;

/// Whether the rider is entering or leaving the paid area (or the toll road).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Entry,
    Exit,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Entry => "entry",
            Direction::Exit => "exit",
        }
    }
}

/// Vehicle classes of the Chinese toll standard (JT/T 489): passenger 1–4, truck 1–6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VehicleClass {
    #[serde(rename = "p1")]
    P1,
    #[serde(rename = "p2")]
    P2,
    #[serde(rename = "p3")]
    P3,
    #[serde(rename = "p4")]
    P4,
    #[serde(rename = "t1")]
    T1,
    #[serde(rename = "t2")]
    T2,
    #[serde(rename = "t3")]
    T3,
    #[serde(rename = "t4")]
    T4,
    #[serde(rename = "t5")]
    T5,
    #[serde(rename = "t6")]
    T6,
}

impl VehicleClass {
    pub const ALL: [VehicleClass; 10] = [
        VehicleClass::P1,
        VehicleClass::P2,
        VehicleClass::P3,
        VehicleClass::P4,
        VehicleClass::T1,
        VehicleClass::T2,
        VehicleClass::T3,
        VehicleClass::T4,
        VehicleClass::T5,
        VehicleClass::T6,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VehicleClass::P1 => "p1",
            VehicleClass::P2 => "p2",
            VehicleClass::P3 => "p3",
            VehicleClass::P4 => "p4",
            VehicleClass::T1 => "t1",
            VehicleClass::T2 => "t2",
            VehicleClass::T3 => "t3",
            VehicleClass::T4 => "t4",
            VehicleClass::T5 => "t5",
            VehicleClass::T6 => "t6",
        }
    }

    pub fn parse(text: &str) -> Option<VehicleClass> {
        VehicleClass::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// One scan at a gate or booth. The terminal's identity is not here: it comes from the client
/// certificate of the mutual-TLS connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapRequest {
    /// Per-terminal sequence number, 1..=[`SEQUENCE_MAX`]; (terminal, sequence) is the idempotency key.
    pub sequence: u64,
    pub direction: Direction,
    /// The ride code as scanned, base64url without padding (see docs/ride-code.md).
    pub ride_code: String,
    /// When the gate scanned the code (Unix milliseconds, the gate's clock). Offline uploads carry
    /// the original scan time, and the gateway judges the tap as of that time.
    pub scanned_at_ms: u64,
    /// Required on toll exits (it sets the rate); ignored nowhere else, rejected on metro gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle_class: Option<VehicleClass>,
}

/// An offline terminal's buffered taps, in the order they were scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapBatchRequest {
    pub taps: Vec<TapRequest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Decline,
}

spelled_enum! {
    /// Why the gateway's rules declined a tap whose code verified (a code that does not verify
    /// is declined with its [`crate::ridecode::RejectReason`] code instead; [`decline_reasons`]
    /// lists both).
    TapDecline {
        /// The code was already used in this direction.
        Replay = "replay",
        /// An entry while the rider has an open journey.
        PassBack = "pass_back",
        /// An exit without an open journey.
        NoEntry = "no_entry",
        /// An exit on another operator's network than the entry.
        EntryOnOtherNetwork = "entry_on_other_network",
        /// The credential does not enable this mode (metro, toll).
        ProductNotAllowed = "product_not_allowed",
        /// The terminal's operator has no fare data loaded.
        NetworkNotConfigured = "network_not_configured",
        /// The terminal's location is not a station or plaza of its network.
        UnknownStation = "unknown_station",
        /// The fare data has no price for this journey.
        NoFare = "no_fare",
        /// The journey was already charged.
        AlreadyCharged = "already_charged",
        /// A toll exit's payment at the booth is still being settled.
        PaymentPending = "payment_pending",
        /// The provider declined the driver's payment.
        PaymentDeclined = "payment_declined",
        /// The payment failed (no final answer within the booth's budget; reversed).
        PaymentFailed = "payment_failed",
        /// The provider could not be reached; nothing was taken.
        ProviderUnavailable = "provider_unavailable",
    }
}

/// Every reason a tap can be declined for: the ride-code checks' codes and the gateway's rules.
pub fn decline_reasons() -> impl Iterator<Item = &'static str> {
    crate::ridecode::RejectReason::ALL
        .iter()
        .map(|r| r.code())
        .chain(TapDecline::ALL.iter().map(|d| d.as_str()))
}

/// The gateway's answer to one tap. A repeat of the same (terminal, sequence) gets these exact bytes
/// again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapResponse {
    pub sequence: u64,
    pub decision: Decision,
    /// Machine-readable decline reason (see docs/api.md); absent on approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The journey this tap opened or closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journey_id: Option<String>,
    /// The journey's fare (list price), known when an exit closes the journey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fare: Option<Money>,
    /// What the rider is charged for this journey after the daily cap; equals `fare` when no cap applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<Money>,
}

/// Answers to a batch, one per tap, in the order of the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TapBatchResponse {
    pub results: Vec<TapResponse>,
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `sequence_out_of_range`.
    pub code: String,
    /// A sentence for the person reading the log.
    pub message: String,
}
