//! The rider API's JSON (public listener, rider token): registration, device enrolment,
//! journeys, the rider's own deny-list state and daily caps.

use serde::{Deserialize, Serialize};

use crate::money::Money;

#[derive(Debug, Serialize, Deserialize)]
pub struct Registered {
    pub rider_id: String,
    /// Shown once; the gateway keeps only its SHA-256.
    pub token: String,
}

/// A registration's body: empty, or an object with no fields (none are defined yet).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// P-256 public key, SEC1 compressed (33 bytes) or uncompressed (65 bytes), base64url.
    pub device_public_key: String,
    /// Products to enable: "metro", "toll". Default both.
    #[serde(default)]
    pub products: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Enrolled {
    pub credential_id: String,
    /// The 126-byte credential, base64url; the device embeds it in every ride code.
    pub credential: String,
    pub issuer_key_id: u16,
    pub valid_from_s: u32,
    pub valid_until_s: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JourneyView {
    pub journey_id: String,
    pub operator_id: String,
    pub mode: String,
    pub status: String,
    /// `None` for an exit whose entry is not known (then `entry_at_ms` is the exit's time).
    pub entry_location_id: Option<String>,
    pub entry_at_ms: i64,
    pub exit_location_id: Option<String>,
    pub exit_at_ms: Option<i64>,
    pub vehicle_class: Option<String>,
    pub close_reason: Option<String>,
    pub fare: Option<Money>,
    pub charge: Option<Money>,
    pub business_day: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JourneyList {
    pub journeys: Vec<JourneyView>,
}

/// `GET /v1/riders/me/deny-list`: whether gates refuse this rider's codes, and why. `entries`
/// are the deny-list entries naming this rider or one of their credentials (devices), oldest
/// first; `denied` is true when there is any.
#[derive(Debug, Serialize, Deserialize)]
pub struct OwnDenyList {
    pub denied: bool,
    pub entries: Vec<super::admin::DenyView>,
}

/// `GET /v1/riders/me/daily-caps`: for each operator with a daily cap, how far the rider's fares
/// of that operator's current business day have gone towards it.
#[derive(Debug, Serialize, Deserialize)]
pub struct DailyCaps {
    pub caps: Vec<DailyCapView>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DailyCapView {
    pub operator_id: String,
    /// Today in the operator's time zone (`YYYY-MM-DD`).
    pub business_day: String,
    pub cap: Money,
    /// The day's fares before the cap.
    pub fares_total: Money,
    /// What the day's journeys are charged: `min(cap, fares_total)`.
    pub charged: Money,
    /// What more the day's journeys can be charged: `cap − charged`.
    pub remaining: Money,
}

/// `GET /v1/riders/me/real-name` (and the answer of a check): whether the account of the
/// rider's bound wallet has passed the provider's real-name certification, as the provider last
/// said. `status` is `unchecked` (never asked, or asked for a wallet no longer bound),
/// `certified` or `not_certified`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RealNameView {
    pub status: String,
    pub checked_at_ms: Option<i64>,
    /// Whether buying tickets in the app needs `certified` on this gateway.
    pub required_for_tickets: bool,
}

/// `POST /v1/riders/me/real-name`: the bound wallet's account name (phone or e-mail, 1–64
/// characters), for the provider to look up.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealNameCheck {
    pub logon_id: String,
}
