//! Ticket orders' JSON (terminal listener): a ticket machine's order and its view.

use serde::{Deserialize, Serialize};

use crate::money::Money;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketOrderRequest {
    pub destination_id: String,
    /// 1–64 of `[A-Za-z0-9_-]`; the same terminal and request_id always mean the same order.
    pub request_id: String,
}

/// An order as the ticket machine sees it. Ids are decimal strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketOrderView {
    pub order_id: String,
    /// `pending`, `paid`, `expired` (the QR was not paid in time) or `cancelled` (the provider
    /// could not pre-create it).
    pub status: String,
    pub origin_id: String,
    pub destination_id: String,
    pub amount: Money,
    /// What the QR encodes; absent when the provider never pre-created the order.
    pub qr_payload: Option<String>,
    pub qr_svg_url: Option<String>,
    pub qr_png_url: Option<String>,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub ticket_code: Option<String>,
    pub paid_at_ms: Option<i64>,
}
