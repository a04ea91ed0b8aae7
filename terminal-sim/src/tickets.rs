//! Ticket machines (flow C; runs need the provider sandbox): a rider buys a single-journey ticket
//! at a station's machine, paying with the wallet by scanning a QR.
//!
//! One purchase, as the devices do it:
//! 1. the machine orders the ticket (`POST /v1/tickets/orders {destination_id, request_id}`; its
//!    station is the origin) and gets the order with the payload the provider pre-created;
//! 2. it shows the QR (`GET …/qr.png`); the rider's wallet scans the image (decoded here with
//!    `rqrr`, as a phone camera would) and pays it (`POST /sandbox/qr/pay`);
//! 3. the provider notifies the gateway; the machine polls the order until it is `paid` and
//!    prints the ticket code;
//! 4. the machine sends its order request once more (as after a lost answer): it must get the
//!    same order back.
//!
//! Purchases are scheduled open loop like taps; the order's latency runs from the scheduled time,
//! the ticket's from the wallet's payment to the machine showing the ticket.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use serde::Serialize;
use turnpike_wire::api::tickets::TicketOrderView;

use crate::network::Terminal;
use crate::provider::Sandbox;
use crate::transport::Reply;

/// Ticket purchases planned per planned journey (a run has at least [`PURCHASES_MIN`]).
pub const PURCHASES_PER_JOURNEY: f64 = 0.02;
pub const PURCHASES_MIN: usize = 2;
/// How often a machine asks whether its order was paid.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a machine waits for the ticket after the wallet paid. A lost notification is made up
/// by the gateway's own query `charging.ticket_query_after_ms` (30 s) after the order.
pub const ISSUE_WITHIN: Duration = Duration::from_secs(60);

/// One ticket to buy at a scheduled time.
#[derive(Debug, Clone)]
pub struct PlannedPurchase {
    /// Seconds from the start of the run.
    pub at_s: f64,
    /// The machine (terminal index); its station is the origin.
    pub machine: usize,
    pub destination: String,
    /// Whose wallet pays (rider index).
    pub rider: usize,
    /// The fare table's price from the machine's station to the destination (minor units).
    pub expected_minor: i64,
}

/// What the machines and wallets saw over a run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct TicketCounts {
    pub planned: u64,
    /// Orders created (`201`).
    pub ordered: u64,
    /// QR images the wallet scanned to exactly the order's payload / to something else.
    pub qr_scanned: u64,
    pub qr_mismatched: u64,
    /// Payments the provider accepted.
    pub paid_at_provider: u64,
    /// Orders the machine saw `paid` with a ticket code.
    pub issued: u64,
    /// Paid at the provider, but no ticket within [`ISSUE_WITHIN`].
    pub unfinished: u64,
    /// Purchases that failed at some step (the error is in the report's samples).
    pub failed: u64,
    /// Orders whose amount differs from the fare table's price.
    pub price_mismatched: u64,
    /// The order request sent again: the same order (id, status, ticket) / something else.
    pub repeat_same_order: u64,
    pub repeat_different: u64,
    /// What the issued tickets cost (minor units).
    pub issued_minor: i64,
}

/// What one purchase saw.
#[derive(Debug, Default)]
pub struct Purchase {
    /// From the scheduled time to the order's answer (µs), once created.
    pub order_us: Option<u64>,
    /// The scanned QR equals the order's payload.
    pub qr_matches: Option<bool>,
    pub paid_at_provider: bool,
    /// From the wallet's payment to the machine showing the ticket (µs).
    pub issue_us: Option<u64>,
    /// The order's amount (minor units) and whether it is the fare table's price.
    pub amount_minor: Option<i64>,
    pub price_matches: Option<bool>,
    pub repeat_same_order: Option<bool>,
    /// Why the purchase stopped short of a ticket.
    pub error: Option<String>,
}

impl TicketCounts {
    /// Adds one purchase.
    pub fn add(&mut self, p: &Purchase) {
        self.ordered += u64::from(p.order_us.is_some());
        match p.qr_matches {
            Some(true) => self.qr_scanned += 1,
            Some(false) => self.qr_mismatched += 1,
            None => {}
        }
        self.paid_at_provider += u64::from(p.paid_at_provider);
        if p.issue_us.is_some() {
            self.issued += 1;
            self.issued_minor += p.amount_minor.unwrap_or(0);
        } else if p.paid_at_provider && p.error.is_none() {
            self.unfinished += 1;
        }
        self.failed += u64::from(p.error.is_some());
        self.price_mismatched += u64::from(p.price_matches == Some(false));
        match p.repeat_same_order {
            Some(true) => self.repeat_same_order += 1,
            Some(false) => self.repeat_different += 1,
            None => {}
        }
    }
}

/// Scans a QR image the way a wallet's camera would: decode the PNG, find the one QR code in
/// it, read its text.
pub fn scan_qr_png(bytes: &[u8]) -> anyhow::Result<String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().context("not a PNG")?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).context("no PNG frame")?;
    if (info.color_type, info.bit_depth) != (png::ColorType::Grayscale, png::BitDepth::Eight) {
        bail!(
            "expected an 8-bit greyscale PNG, got {:?} {:?}",
            info.color_type,
            info.bit_depth
        );
    }
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    if grids.len() != 1 {
        bail!("{} QR codes in the image, expected one", grids.len());
    }
    Ok(grids[0].decode().context("the QR code does not decode")?.1)
}

/// The order in an answer that must have status `expected`.
fn order_of(reply: &Reply, expected: u16, what: &str) -> anyhow::Result<TicketOrderView> {
    if reply.status != expected {
        bail!(
            "{what}: HTTP {} (expected {expected}): {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
                .chars()
                .take(200)
                .collect::<String>()
        );
    }
    serde_json::from_slice(&reply.body).with_context(|| format!("{what}: unreadable order"))
}

/// Buys one ticket (see the module's documentation); `request_id` is the machine's idempotency
/// key for the order, `wallet` the sandbox user who pays.
pub async fn buy(
    machine: &Terminal,
    sandbox: &Sandbox,
    wallet: &str,
    planned: &PlannedPurchase,
    request_id: &str,
    scheduled: Instant,
) -> Purchase {
    let mut out = Purchase::default();
    let steps: anyhow::Result<()> = async {
        let request = Bytes::from(serde_json::to_vec(&serde_json::json!({
            "destination_id": planned.destination,
            "request_id": request_id,
        }))?);
        let reply = machine
            .link
            .post("/v1/tickets/orders", request.clone())
            .await?;
        let order = order_of(&reply, 201, "order")?;
        out.order_us = Some(scheduled.elapsed().as_micros() as u64);
        out.amount_minor = Some(order.amount.to_minor());
        out.price_matches = Some(order.amount.to_minor() == planned.expected_minor);
        let payload = order.qr_payload.context("the order has no QR payload")?;
        let png_url = order.qr_png_url.context("the order has no QR image")?;
        let image = machine.link.get(&png_url).await?;
        if image.status != 200 {
            bail!("QR image: HTTP {}", image.status);
        }
        let scanned = scan_qr_png(&image.body).context("scanning the QR")?;
        out.qr_matches = Some(scanned == payload);
        sandbox.pay_qr(&scanned, wallet).await?;
        out.paid_at_provider = true;
        let paid_at = Instant::now();
        let path = format!("/v1/tickets/orders/{}", order.order_id);
        let issued = loop {
            let reply = machine.link.get(&path).await?;
            let now = order_of(&reply, 200, "order status")?;
            match now.status.as_str() {
                "paid" if now.ticket_code.is_some() => break now,
                "pending" | "paid" if paid_at.elapsed() < ISSUE_WITHIN => {
                    tokio::time::sleep(POLL_INTERVAL).await
                }
                "pending" | "paid" => return Ok(()),
                other => bail!("order {} became {other} after it was paid", now.order_id),
            }
        };
        out.issue_us = Some(paid_at.elapsed().as_micros() as u64);
        let again = machine.link.post("/v1/tickets/orders", request).await?;
        let same = order_of(&again, 200, "repeated order").map(|o| {
            o.order_id == issued.order_id
                && o.status == "paid"
                && o.ticket_code == issued.ticket_code
        });
        out.repeat_same_order = Some(same.unwrap_or(false));
        Ok(())
    }
    .await;
    if let Err(e) = steps {
        out.error = Some(format!("ticket at {}: {e:#}", machine.id));
    }
    out
}
