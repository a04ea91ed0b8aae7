//! A toll exit paid at the booth (terminal listener).

use serde::{Deserialize, Serialize};

use crate::api::TapRequest;

/// A toll exit with the driver's wallet payment code: the exit tap and its payment as one
/// request, answered once the payment is settled (within `charging.toll_budget_ms`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TollExitRequest {
    pub tap: TapRequest,
    /// The wallet's one-time payment code as scanned (16–24 digits). Never logged or stored.
    pub payment_code: String,
}
