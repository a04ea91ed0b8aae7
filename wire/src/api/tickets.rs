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

/// `POST /v1/riders/me/tickets`: a rider buys a single-journey ticket in the app, naming the
/// network and both stations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiderTicketRequest {
    pub operator_id: String,
    pub origin_id: String,
    pub destination_id: String,
    /// 1–64 of `[A-Za-z0-9_-]`; the same rider and request_id always mean the same order.
    pub request_id: String,
}

/// `GET /v1/riders/me/tickets`: the rider's orders placed in the app, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketOrderList {
    pub orders: Vec<TicketOrderView>,
}

/// An order as the ticket machine (or the rider, for an order placed in the app) sees it. Ids
/// are decimal strings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TicketOrderView {
    pub order_id: String,
    pub operator_id: String,
    /// `pending`, `paid`, `expired` (the QR was not paid in time) or `cancelled` (the provider
    /// could not pre-create it).
    pub status: String,
    pub origin_id: String,
    pub destination_id: String,
    pub amount: Money,
    /// What the QR encodes (the wallet opens it as a link, or scans it); absent when the provider
    /// never pre-created the order.
    pub qr_payload: Option<String>,
    /// The QR as images, for a ticket machine's own orders; absent for orders placed in the app
    /// (the app draws `qr_payload` itself).
    pub qr_svg_url: Option<String>,
    pub qr_png_url: Option<String>,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub ticket_code: Option<String>,
    pub paid_at_ms: Option<i64>,
}
