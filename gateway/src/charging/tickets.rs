//! Ticket purchase by merchant-presented QR (flow C): a ticket machine asks for an order, the
//! provider pre-creates it and hands back the QR payload, the rider pays in the wallet, and the
//! provider's signed async notification — or, when it is lost, the capture round's query — marks
//! the order paid and issues the ticket.
//!
//! # Order of writes
//! The `ticket` charge (status `pending`) and its `ticket_orders` row are committed *before* the
//! provider hears of the order (an outbox): a crash after the precreate can leave an order whose
//! payload we never stored, never a provider trade we know nothing of. The charge's trade number
//! (`K<charge>_1`) is the `out_trade_no` of the precreate; both ids are derived from the
//! terminal and its `request_id`, so a repeated request finds its order, and a repeated precreate
//! (same number, amount and subject) gets the same QR from the provider.
//!
//! # Learning the outcome
//! - The notification (`POST /v1/provider/notify`) is believed only after its signature
//!   verifies, is recorded once per `notify_id`, and is cross-checked with a query: a payment is
//!   applied only when the query also says paid, for the charge's amount.
//! - The fallback ([`round`], called by the capture round) queries pending ticket charges that
//!   are due (`charging.ticket_query_after_ms` after creation, then again every as long): paid →
//!   applied; still unpaid once the QR has expired at the provider → cancelled there, and the
//!   order is `expired`.
//!
//! Either way [`apply_paid`] books the payment once (`capture:<out_trade_no>`, paid on the spot:
//! owed to the operator) and [`issue`] gives the order its ticket code once.

use super::settle::{apply_paid, book_reversal};
use super::Charging;
use super::{again, done, Handled};
use crate::network::{Mode, OperatorNetwork};
use crate::provider::{CallError, CancelOutcome, QueryOutcome, TradeNotice, TradeStatus};
use crate::store::charging::{self as sql, ChargeRow, NewCharge, TicketOrderRow};
use crate::store::charging::{ChargeKind, ChargeStatus};
use crate::store::TerminalRow;

/// `last_error` of a ticket charge closed because nobody paid its QR in time.
pub const EXPIRED_UNPAID: &str = "expired unpaid";

/// After the QR's expiry, how long the fallback waits before it cancels at the provider: the
/// provider counts its timeout from the precreate (up to a call timeout after our order was
/// written) on its own clock. Cancelling only once the provider itself refuses payment means a
/// cancel never races a rider paying at the last second.
const EXPIRY_GRACE_MS: i64 = 30_000;

/// Who places an order: a ticket machine (its station is the origin) or a rider in the app
/// (who names the origin).
#[derive(Debug, Clone, Copy)]
pub enum Buyer<'a> {
    Machine(&'a TerminalRow),
    Rider {
        rider_id: i64,
        operator_id: &'a str,
        origin_id: &'a str,
    },
}

impl Buyer<'_> {
    /// The name the order's ids derive from: the terminal id, or `rider/<id>` (terminal ids
    /// are identifiers without `/`, so the two never meet).
    pub fn owner_key(&self) -> String {
        match self {
            Buyer::Machine(t) => t.terminal_id.clone(),
            Buyer::Rider { rider_id, .. } => format!("rider/{rider_id}"),
        }
    }

    pub fn origin_id(&self) -> &str {
        match self {
            Buyer::Machine(t) => &t.location_id,
            Buyer::Rider { origin_id, .. } => origin_id,
        }
    }

    pub fn operator_id(&self) -> &str {
        match self {
            Buyer::Machine(t) => &t.operator_id,
            Buyer::Rider { operator_id, .. } => operator_id,
        }
    }

    pub fn terminal_id(&self) -> Option<&str> {
        match self {
            Buyer::Machine(t) => Some(&t.terminal_id),
            Buyer::Rider { .. } => None,
        }
    }

    pub fn rider_id(&self) -> Option<i64> {
        match self {
            Buyer::Machine(_) => None,
            Buyer::Rider { rider_id, .. } => Some(*rider_id),
        }
    }
}

/// What a ticket machine or a rider asked for, validated.
pub struct OrderRequest<'a> {
    pub buyer: Buyer<'a>,
    pub network: &'a OperatorNetwork,
    pub destination_id: &'a str,
    pub request_id: &'a str,
}

/// Why an order could not be priced (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceError {
    NotMetro,
    UnknownStation,
    NoFare,
}

/// Why an order was not placed (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotPlaced {
    Price(PriceError),
    /// The rider already has this many unpaid orders placed in the app
    /// ([`RIDER_PENDING_ORDERS_MAX`]): each one is a trade at the provider, so a rider (or a
    /// stolen token) cannot make thousands.
    TooManyPending(i64),
}

/// Most unpaid orders a rider may have at once in the app. Checked before writing: requests
/// racing each other may pass it together, by at most their number.
pub const RIDER_PENDING_ORDERS_MAX: i64 = 3;

/// Why an order written to the outbox could not be pre-created (it is now cancelled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrecreateError {
    /// The provider refused definitively (`sub_code`, message).
    Refused { sub_code: String, message: String },
    /// No trustworthy answer (breaker open, timeout, 5xx, forged answer).
    Unavailable(String),
}

/// The order the request maps to, and whether this request created it.
pub struct Placed {
    pub order: TicketOrderRow,
    pub charge: ChargeRow,
    pub created: bool,
}

/// Order and charge ids derived from the buyer (a terminal id, or `rider/<id>`) and its
/// idempotency key: one order per (buyer, request_id), enforced by the primary keys.
pub fn derived_ids(terminal_id: &str, request_id: &str) -> (i64, i64) {
    let id = |domain: &str| {
        let mut input = Vec::with_capacity(64);
        input.extend_from_slice(domain.as_bytes());
        input.push(0);
        input.extend_from_slice(terminal_id.as_bytes());
        input.push(0);
        input.extend_from_slice(request_id.as_bytes());
        let digest = crate::api::sha256(&input);
        let mut b = [0u8; 8];
        b.copy_from_slice(&digest[..8]);
        (i64::from_be_bytes(b) & i64::MAX).max(1)
    };
    (id("turnpike/ticket-order"), id("turnpike/ticket-charge"))
}

/// The provider's subject line of an order (deterministic: a repeated precreate must match).
pub fn subject(origin_id: &str, destination_id: &str) -> String {
    format!("Metro ticket {origin_id}\u{2192}{destination_id}")
}

/// Prices origin (the machine's station) → destination.
pub fn price(
    network: &OperatorNetwork,
    origin_id: &str,
    destination_id: &str,
) -> Result<turnpike_wire::Money, PriceError> {
    if network.mode() != Mode::Metro {
        return Err(PriceError::NotMetro);
    }
    if !network.has_location(destination_id) || !network.has_location(origin_id) {
        return Err(PriceError::UnknownStation);
    }
    match network.metro_fare(origin_id, destination_id) {
        Some(fare) if fare.is_positive() => Ok(fare),
        _ => Err(PriceError::NoFare),
    }
}

/// Finds the order of (buyer, request_id), or writes it (charge + order, one transaction).
/// An order not placed writes nothing.
pub async fn place(
    charging: &Charging,
    req: &OrderRequest<'_>,
) -> anyhow::Result<Result<Placed, NotPlaced>> {
    let store = &charging.store;
    let (order_id, charge_id) = derived_ids(&req.buyer.owner_key(), req.request_id);
    if let Some(found) = existing(charging, order_id).await? {
        return Ok(Ok(found));
    }
    let origin = req.buyer.origin_id();
    let fare = match price(req.network, origin, req.destination_id) {
        Ok(fare) => fare,
        Err(e) => return Ok(Err(NotPlaced::Price(e))),
    };
    if let Some(rider_id) = req.buyer.rider_id() {
        let pending = store.rider_pending_ticket_orders(rider_id).await?;
        if pending >= RIDER_PENDING_ORDERS_MAX {
            return Ok(Err(NotPlaced::TooManyPending(pending)));
        }
    }
    let now = charging.clock.now_ms();
    let cfg = &charging.config;
    let expires_at_ms = now + i64::from(cfg.ticket_order_ttl_minutes) * 60_000;
    let business_day = req.network.business_day(now);
    let mut tx = store.begin().await?;
    let inserted = sql::insert_charge(
        &mut tx,
        &NewCharge {
            charge_id,
            kind: ChargeKind::Ticket,
            operator_id: req.buyer.operator_id(),
            rider_id: req.buyer.rider_id(),
            journey_id: None,
            amount_minor: fare.to_minor(),
            currency: fare.currency().code(),
            business_day: &business_day,
            status: ChargeStatus::Pending,
            next_attempt_at_ms: now + cfg.ticket_query_after_ms as i64,
            lease_until_ms: None,
            terminal_id: req.buyer.terminal_id(),
            terminal_sequence: None,
            now_ms: now,
        },
    )
    .await?;
    if !inserted {
        // The same request, concurrently: its transaction won.
        tx.rollback().await?;
        return existing(charging, order_id)
            .await?
            .map(Ok)
            .ok_or_else(|| anyhow::anyhow!("ticket charge {charge_id} exists without its order"));
    }
    let order = TicketOrderRow {
        order_id,
        charge_id,
        terminal_id: req.buyer.terminal_id().map(str::to_string),
        rider_id: req.buyer.rider_id(),
        origin_id: origin.to_string(),
        destination_id: req.destination_id.to_string(),
        qr_payload: String::new(),
        ticket_code: None,
        expires_at_ms,
        created_at_ms: now,
        paid_at_ms: None,
    };
    sql::insert_ticket_order(&mut tx, &order).await?;
    tx.commit().await?;
    let charge = store
        .charge(charge_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("ticket charge {charge_id} vanished"))?;
    Ok(Ok(Placed {
        order,
        charge,
        created: true,
    }))
}

async fn existing(charging: &Charging, order_id: i64) -> anyhow::Result<Option<Placed>> {
    let Some(order) = charging.store.ticket_order(order_id).await? else {
        return Ok(None);
    };
    let charge = charging
        .store
        .charge(order.charge_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("ticket order {order_id} without its charge"))?;
    Ok(Some(Placed {
        order,
        charge,
        created: false,
    }))
}

/// Pre-creates the order at the provider and stores its QR payload. On a refusal or an unknown
/// outcome the trade is cancelled at the provider (best effort: nobody has seen its QR, so
/// nobody can pay it) and the charge is cancelled.
pub async fn precreate(
    charging: &Charging,
    order: &TicketOrderRow,
    charge: &ChargeRow,
) -> anyhow::Result<Result<String, PrecreateError>> {
    let Some(provider) = charging.provider.as_ref() else {
        give_up(charging, charge, "no provider configured").await?;
        return Ok(Err(PrecreateError::Unavailable(
            "no provider configured".into(),
        )));
    };
    let outcome = provider
        .precreate(
            &charge.out_trade_no,
            charge.amount_minor,
            &subject(&order.origin_id, &order.destination_id),
            order.terminal_id.as_deref(),
            charging.config.ticket_order_ttl_minutes,
        )
        .await;
    let error = match outcome {
        Ok(Ok(qr)) => {
            let mut tx = charging.store.begin().await?;
            sql::set_ticket_qr(&mut tx, order.order_id, &qr).await?;
            tx.commit().await?;
            metrics::counter!("gateway_ticket_orders_total", "outcome" => "created").increment(1);
            return Ok(Ok(qr));
        }
        Ok(Err((sub_code, message))) => PrecreateError::Refused { sub_code, message },
        Err(CallError::BreakerOpen) => {
            PrecreateError::Unavailable(CallError::BreakerOpen.to_string())
        }
        Err(e) => PrecreateError::Unavailable(e.to_string()),
    };
    tracing::warn!(order_id = order.order_id, charge_id = charge.charge_id, error = ?error, "ticket precreate failed; cancelling the order");
    if !matches!(&error, PrecreateError::Unavailable(m) if m == &CallError::BreakerOpen.to_string())
    {
        match provider.cancel(&charge.out_trade_no).await {
            Ok(CancelOutcome::Cancelled { reversed: true }) => {
                // Impossible for a code nobody saw; if it happens the ledger must say so.
                tracing::error!(
                    charge_id = charge.charge_id,
                    "a never-shown ticket QR was paid and reversed"
                );
                book_reversal(charging, charge, &charge.out_trade_no).await?;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(charge_id = charge.charge_id, error = %e, "cancel after a failed precreate did not settle; the provider's timeout closes the trade")
            }
        }
    }
    let detail = match &error {
        PrecreateError::Refused { sub_code, .. } => format!("precreate refused: {sub_code}"),
        PrecreateError::Unavailable(m) => format!("precreate unknown: {m}"),
    };
    give_up(charging, charge, &detail).await?;
    metrics::counter!("gateway_ticket_orders_total", "outcome" => "precreate_failed").increment(1);
    Ok(Err(error))
}

/// Closes a pending ticket charge without payment (status `cancelled`).
async fn give_up(charging: &Charging, charge: &ChargeRow, why: &str) -> anyhow::Result<bool> {
    let now = charging.clock.now_ms();
    let mut tx = charging.store.begin().await?;
    let done = sql::give_up(&mut tx, charge.charge_id, "cancelled", why, now).await?;
    if done {
        sql::finish_attempt(
            &mut tx,
            &charge.out_trade_no,
            "cancelled",
            Some(why),
            None,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(done)
}

/// The status a ticket machine sees.
pub fn order_status(order: &TicketOrderRow, charge: &ChargeRow) -> &'static str {
    match charge.status {
        ChargeStatus::Captured => "paid",
        ChargeStatus::Pending | ChargeStatus::Paying => "pending",
        // A QR that was shown and closed unpaid expired; an order that never got its QR (the
        // provider refused or did not answer) was cancelled.
        _ if !order.qr_payload.is_empty() => "expired",
        _ => "cancelled",
    }
}

/// A ticket code: "TK-" and 20 base32 characters (100 random bits): unguessable.
pub fn new_ticket_code() -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let bytes = crate::random_bytes::<13>();
    let mut bits: u128 = 0;
    for b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    let mut code = String::with_capacity(23);
    code.push_str("TK-");
    for i in 0..20 {
        let index = (bits >> (5 * i)) & 31;
        code.push(ALPHABET[index as usize] as char);
    }
    code
}

/// Gives a paid ticket order its code, once (a second call keeps the first code).
pub async fn issue(charging: &Charging, charge_id: i64) -> anyhow::Result<()> {
    let mut tx = charging.store.begin().await?;
    sql::issue_ticket(
        &mut tx,
        charge_id,
        &new_ticket_code(),
        charging.clock.now_ms(),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Books a verified payment of a charge's current trade and, for a ticket, issues its code.
async fn settle_paid(
    charging: &Charging,
    charge: &ChargeRow,
    provider_trade_no: &str,
) -> anyhow::Result<()> {
    let booked = apply_paid(charging, charge, &charge.out_trade_no, provider_trade_no).await?;
    if charge.kind == ChargeKind::Ticket {
        // Also when the capture was booked before: a crash between the two leaves a paid order
        // without its code, which this (or the next notification, or a read) repairs.
        issue(charging, charge.charge_id).await?;
        if booked {
            metrics::counter!("gateway_ticket_orders_total", "outcome" => "paid").increment(1);
        }
    }
    Ok(())
}

/// What the provider's query says about a trade we were told about.
enum Truth {
    Paid(String),
    Closed,
    /// The trade exists and waits for the buyer (or was paid with another amount).
    Waiting,
    /// No such trade (a pre-created code nobody scanned is not a trade yet).
    Absent,
}

/// Asks the provider; a paid trade counts only for the charge's exact amount.
async fn truth(charging: &Charging, charge: &ChargeRow) -> Result<Truth, CallError> {
    let provider = charging.provider.as_ref().ok_or(CallError::BreakerOpen)?;
    Ok(match provider.query(&charge.out_trade_no).await? {
        QueryOutcome::Trade {
            trade_no,
            status,
            amount_fen,
        } if status.is_paid() => {
            if amount_fen == charge.amount_minor {
                Truth::Paid(trade_no)
            } else {
                tracing::error!(
                    charge_id = charge.charge_id,
                    amount_fen,
                    expected = charge.amount_minor,
                    "provider reports another amount paid; not applied"
                );
                metrics::counter!("gateway_charge_amount_mismatch_total").increment(1);
                Truth::Waiting
            }
        }
        QueryOutcome::Trade {
            status: TradeStatus::Closed,
            ..
        } => Truth::Closed,
        QueryOutcome::Trade { .. } => Truth::Waiting,
        QueryOutcome::NotFound => Truth::Absent,
    })
}

/// The fallback: due pending ticket charges are queried at the provider. Returns how many it
/// worked.
pub async fn round(charging: &Charging) -> anyhow::Result<usize> {
    if charging.provider.is_none() {
        return Ok(0);
    }
    let now = charging.clock.now_ms();
    let cfg = &charging.config;
    let due = charging
        .store
        .due_charges(
            ChargeKind::Ticket,
            ChargeStatus::Pending,
            now,
            cfg.capture_batch_max as i64,
        )
        .await?;
    super::work_leased(charging, due, now, |charging, charge| async move {
        check_one(&charging, &charge).await
    })
    .await
}

async fn check_one(charging: &Charging, charge: &ChargeRow) -> anyhow::Result<()> {
    let store = &charging.store;
    let order = store
        .ticket_order_by_charge(charge.charge_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("ticket charge {} has no order", charge.charge_id))?;
    let every = charging.config.ticket_query_after_ms.max(1) as i64;
    let cancel_at = order.expires_at_ms + EXPIRY_GRACE_MS;
    match truth(charging, charge).await {
        Ok(Truth::Paid(trade_no)) => return settle_paid(charging, charge, &trade_no).await,
        Ok(Truth::Closed) => {
            give_up(charging, charge, EXPIRED_UNPAID).await?;
            return Ok(());
        }
        Ok(Truth::Waiting | Truth::Absent) if charging.clock.now_ms() >= cancel_at => {}
        Ok(Truth::Waiting | Truth::Absent) => {
            let now = charging.clock.now_ms();
            let next = (now + every).min(cancel_at);
            sql::retry_later(store, charge.charge_id, "awaiting payment", next, now).await?;
            return Ok(());
        }
        Err(e) => {
            let now = charging.clock.now_ms();
            sql::retry_later(store, charge.charge_id, &e.to_string(), now + every, now).await?;
            return Ok(());
        }
    }
    // Unpaid, and past the QR's expiry at the provider: close it there.
    let provider = charging
        .provider
        .as_ref()
        .expect("rounds run only with a provider");
    match provider.cancel(&charge.out_trade_no).await {
        Ok(CancelOutcome::Cancelled { reversed: false }) | Ok(CancelOutcome::NotFound) => {
            if give_up(charging, charge, EXPIRED_UNPAID).await? {
                tracing::info!(
                    charge_id = charge.charge_id,
                    order_id = order.order_id,
                    "ticket order expired unpaid; closed at the provider"
                );
                metrics::counter!("gateway_ticket_orders_total", "outcome" => "expired")
                    .increment(1);
            }
        }
        Ok(CancelOutcome::Cancelled { reversed: true }) => {
            // Paid after our query and reversed by the cancel: the provider holds a payment and
            // its reversal, and so must the ledger.
            tracing::warn!(
                charge_id = charge.charge_id,
                "ticket paid after its expiry was reversed"
            );
            book_reversal(charging, charge, &charge.out_trade_no).await?;
            give_up(charging, charge, "paid after expiry; reversed").await?;
        }
        Ok(CancelOutcome::Refused { sub_code }) => {
            let now = charging.clock.now_ms();
            tracing::warn!(
                charge_id = charge.charge_id,
                sub_code,
                "cancel of an expired ticket refused"
            );
            sql::retry_later(
                store,
                charge.charge_id,
                &format!("cancel refused: {sub_code}"),
                now + every,
                now,
            )
            .await?;
        }
        Err(e) => {
            let now = charging.clock.now_ms();
            sql::retry_later(store, charge.charge_id, &e.to_string(), now + every, now).await?;
        }
    }
    Ok(())
}

/// Applies a verified `trade_status_sync` notification to its charge: a paid ticket or metro
/// deduction is booked (after a query agrees), a closed ticket order is given up.
pub(super) async fn on_trade_notice(
    charging: &Charging,
    notice: &TradeNotice,
) -> anyhow::Result<Handled> {
    let Some(charge) = charging
        .store
        .charge_by_trade_no(&notice.out_trade_no)
        .await?
    else {
        return Ok(done("unknown_trade"));
    };
    let paid = notice.status.is_some_and(TradeStatus::is_paid);
    let closed = notice.status == Some(TradeStatus::Closed);
    match charge.kind {
        ChargeKind::Ticket | ChargeKind::Metro if paid => {
            if charge.kind == ChargeKind::Metro && charge.out_trade_no != notice.out_trade_no {
                // An earlier attempt's number: it was declined, so this cannot be its payment
                // unless the provider contradicts itself; settlement will show it.
                tracing::warn!(
                    charge_id = charge.charge_id,
                    "paid notification for a superseded trade number"
                );
                return Ok(done("stale_attempt"));
            }
            match charge.status {
                ChargeStatus::Captured => {
                    if charge.kind == ChargeKind::Ticket {
                        issue(charging, charge.charge_id).await?;
                    }
                    return Ok(done("already_paid"));
                }
                ChargeStatus::Pending => {}
                other => {
                    tracing::warn!(
                        charge_id = charge.charge_id,
                        status = other.as_str(),
                        "paid notification for a charge that is no longer collectable"
                    );
                    return Ok(done("not_collectable"));
                }
            }
            match truth(charging, &charge).await {
                Ok(Truth::Paid(trade_no)) => {
                    settle_paid(charging, &charge, &trade_no).await?;
                    Ok(done("paid"))
                }
                Ok(_) => {
                    tracing::warn!(
                        charge_id = charge.charge_id,
                        "notification says paid, query does not agree; not applied"
                    );
                    Ok(again("query_disagrees"))
                }
                Err(e) => {
                    tracing::warn!(charge_id = charge.charge_id, error = %e, "cross-check query failed");
                    Ok(again("retry"))
                }
            }
        }
        ChargeKind::Ticket if closed => {
            if charge.status != ChargeStatus::Pending {
                return Ok(done("nothing_to_do"));
            }
            match truth(charging, &charge).await {
                Ok(Truth::Paid(trade_no)) => {
                    settle_paid(charging, &charge, &trade_no).await?;
                    Ok(done("paid"))
                }
                Ok(Truth::Closed | Truth::Absent) => {
                    give_up(charging, &charge, "closed at the provider").await?;
                    Ok(done("closed"))
                }
                Ok(Truth::Waiting) => Ok(again("query_disagrees")),
                Err(_) => Ok(again("retry")),
            }
        }
        _ => Ok(done("ignored")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves ticket codes have the documented shape and do not repeat.
    #[test]
    fn ticket_codes() {
        let a = new_ticket_code();
        let b = new_ticket_code();
        assert_eq!(a.len(), 23);
        assert!(a.starts_with("TK-"));
        assert!(a[3..]
            .bytes()
            .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)));
        assert_ne!(a, b);
    }

    /// Proves order ids are stable per (terminal, request_id) and differ across terminals.
    #[test]
    fn ids_are_per_terminal_and_request() {
        let (o1, c1) = derived_ids("gate-xianghu-1", "r1");
        assert_eq!(derived_ids("gate-xianghu-1", "r1"), (o1, c1));
        assert_ne!(o1, c1);
        assert_ne!(derived_ids("gate-xianghu-2", "r1").0, o1);
        assert_ne!(derived_ids("gate-xianghu-1", "r2").0, o1);
        assert!(o1 > 0 && c1 > 0);
    }
}
