//! The admin API's JSON (public listener, admin token): operators, fare data, terminals, the
//! deny list, issuer keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::Money;

spelled_enum! {
    /// Whether a terminal may connect.
    TerminalStatus {
        Active = "active",
        /// Its handshakes fail until it is reinstated.
        Revoked = "revoked",
    }
}

spelled_enum! {
    /// An issuer key's place in the ring.
    KeyStatus {
        /// Published to gates and accepted, but signs nothing yet.
        Next = "next",
        /// Signs new credentials.
        Current = "current",
        /// Still accepted: credentials it signed may be valid.
        Previous = "previous",
        /// No longer accepted.
        Retired = "retired",
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSpec {
    pub operator_id: String,
    pub name: String,
    /// "metro" or "toll".
    pub mode: String,
    /// IANA zone of the operator's business day; default Asia/Shanghai.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// ISO 4217; default CNY.
    #[serde(default)]
    pub currency: Option<String>,
    /// Most a rider pays per business day (metro); absent means no cap.
    #[serde(default)]
    pub daily_cap: Option<Money>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OperatorView {
    pub operator_id: String,
    pub name: String,
    pub mode: String,
    pub time_zone: String,
    pub currency: String,
    pub daily_cap: Option<Money>,
    pub fare_version: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FareLoaded {
    pub version: i64,
    /// What the loader did not use as written and what it did instead (GTFS; empty otherwise).
    #[serde(default)]
    pub warnings: Vec<FareWarning>,
}

/// One warning of a fare data load: file, line (1-based, header = 1), column, message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FareWarning {
    pub file: String,
    pub line: Option<u64>,
    pub column: Option<String>,
    pub message: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalSpec {
    /// Must equal the common name of the terminal's client certificate.
    pub terminal_id: String,
    pub operator_id: String,
    /// The station (GTFS stop id) or toll plaza the terminal stands at.
    pub location_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TerminalView {
    pub terminal_id: String,
    pub operator_id: String,
    pub location_id: String,
    pub status: TerminalStatus,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenySpec {
    /// "credential" or "rider".
    pub kind: String,
    /// Decimal id, as the rider and credential APIs print it.
    pub subject_id: String,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DenyView {
    pub kind: String,
    pub subject_id: String,
    pub reason: String,
    pub added_at_ms: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct KeyView {
    pub key_id: i64,
    /// "next" (published, not signing), "current", "previous" (still accepted) or "retired".
    pub status: KeyStatus,
    /// SEC1 uncompressed point, hex (as in the terminal key feed).
    pub public_key: String,
    pub activated_at_ms: Option<i64>,
}

#[derive(Debug, Deserialize, Default, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Rotate even though the previous key may still verify unexpired credentials.
    #[serde(default)]
    pub force: bool,
}

/// Fare data exactly as uploaded: a format name and named files.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FareData {
    pub format: String,
    /// GTFS only: which `network_id` of the feed this operator runs. Default: the feed's only
    /// network (or, when no leg rule names one, the rules without a network); a feed with several
    /// networks needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
    /// GTFS only: the `rider_category_id` taps are priced for. Default: the feed's default
    /// category (`is_default_fare_category`), else the product rows without a category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rider_category_id: Option<String>,
    /// GTFS only: the `fare_media_id` taps are priced for. Default: the feed's first medium of
    /// type 4 (mobile app), else the cheapest row of any medium.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fare_media_id: Option<String>,
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}
