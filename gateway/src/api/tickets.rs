//! Ticket purchase by merchant-presented QR (flow C).
//!
//! Terminal API (mutual TLS; the ticket machine's station is the origin):
//! - `POST /v1/tickets/orders` `{"destination_id", "request_id"}` → 201 the new order with its
//!   QR payload (200 and the same order for a repeated `request_id`);
//! - `GET /v1/tickets/orders/{order_id}` → the order (`pending | paid | expired | cancelled`,
//!   `ticket_code` once paid); only for the terminal that created it;
//! - `GET /v1/tickets/orders/{order_id}/qr.svg` and `/qr.png` → the payload as a QR image
//!   (quiet zone 4 modules, 8 px per module).
//!
//! Public listener: `POST /v1/provider/notify`, the provider's signed async notification
//! (form-urlencoded, at most 8 KiB), answered with the body `success` once handled and
//! committed, `fail` otherwise (so the provider repeats it).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use turnpike_wire::{Currency, Money};

use super::rider::Rider;
use super::terminal::{terminal_of, TerminalIdentity};
use super::ValidJson;
use crate::charging::notify;
use crate::charging::real_name;
use crate::charging::tickets::{
    self, Buyer, NotPlaced, OrderRequest, PrecreateError, PriceError, RIDER_PENDING_ORDERS_MAX,
};
use crate::error::{ApiError, ApiResult};
use crate::provider::Refused;
use crate::store::charging::ChargeStatus;
use crate::store::charging::{ChargeRow, TicketOrderRow};
use crate::AppState;
pub use turnpike_wire::api::tickets::{
    RiderTicketRequest, TicketOrderList, TicketOrderRequest, TicketOrderView,
};

/// An order request is two short strings.
pub const ORDER_BODY_BYTES_MAX: usize = 4 * 1024;
/// A notification is a couple of kilobytes of form parameters.
pub const NOTIFY_BODY_BYTES_MAX: usize = 8 * 1024;
/// QR rendering: the standard quiet zone and a size a screen and a scanner both like.
pub const QR_QUIET_ZONE_MODULES: usize = 4;
pub const QR_PIXELS_PER_MODULE: usize = 8;

pub fn terminal_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/tickets/orders",
            post(post_order).layer(DefaultBodyLimit::max(ORDER_BODY_BYTES_MAX)),
        )
        .route("/v1/tickets/orders/{order_id}", get(get_order))
        .route("/v1/tickets/orders/{order_id}/qr.svg", get(get_qr_svg))
        .route("/v1/tickets/orders/{order_id}/qr.png", get(get_qr_png))
        .with_state(state)
}

/// Riders' ticket orders in the app (public listener, rider token).
pub fn rider_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/riders/me/tickets",
            post(post_rider_order)
                .get(rider_orders)
                .layer(DefaultBodyLimit::max(ORDER_BODY_BYTES_MAX)),
        )
        .route("/v1/riders/me/tickets/{order_id}", get(get_rider_order))
        .with_state(state)
}

pub fn notify_router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/provider/notify",
            post(post_notify).layer(DefaultBodyLimit::max(NOTIFY_BODY_BYTES_MAX)),
        )
        .with_state(state)
}

pub(super) fn view(order: &TicketOrderRow, charge: &ChargeRow) -> ApiResult<TicketOrderView> {
    let currency = Currency::parse(&charge.currency)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("stored currency: {e}")))?;
    let has_qr = !order.qr_payload.is_empty();
    // The images are served to the machine that placed the order; the app draws its own.
    let images = has_qr && order.terminal_id.is_some();
    let url = |ext: &str| images.then(|| format!("/v1/tickets/orders/{}/qr.{ext}", order.order_id));
    Ok(TicketOrderView {
        order_id: order.order_id.to_string(),
        operator_id: charge.operator_id.clone(),
        status: tickets::order_status(order, charge).to_string(),
        origin_id: order.origin_id.clone(),
        destination_id: order.destination_id.clone(),
        amount: Money::from_minor(charge.amount_minor, currency),
        qr_payload: has_qr.then(|| order.qr_payload.clone()),
        qr_svg_url: url("svg"),
        qr_png_url: url("png"),
        expires_at_ms: order.expires_at_ms,
        created_at_ms: order.created_at_ms,
        ticket_code: order.ticket_code.clone(),
        paid_at_ms: order.paid_at_ms,
    })
}

/// The machine's idempotency key: an identifier (`turnpike_wire::ident::check_id`).
fn valid_request_id(id: &str) -> bool {
    turnpike_wire::ident::check_id(id).is_ok()
}

async fn post_order(
    State(state): State<AppState>,
    Extension(identity): Extension<TerminalIdentity>,
    ValidJson(req): ValidJson<TicketOrderRequest>,
) -> ApiResult<Response> {
    let terminal = terminal_of(&state, &identity)?;
    check_request_id(&req.request_id)?;
    let Some(network) = state.networks.get(&terminal.operator_id) else {
        return Err(ApiError::unprocessable(
            "network_not_configured",
            "this terminal's operator has no fare network",
        ));
    };
    order(
        &state,
        &OrderRequest {
            buyer: Buyer::Machine(&terminal),
            network: &network,
            destination_id: &req.destination_id,
            request_id: &req.request_id,
        },
    )
    .await
}

pub(super) fn check_request_id(id: &str) -> ApiResult<()> {
    if valid_request_id(id) {
        return Ok(());
    }
    Err(ApiError::unprocessable(
        "invalid_request_id",
        "request_id must be 1 to 64 letters, digits, '_' or '-'",
    ))
}

/// Places (or finds) an order and pre-creates it at the provider: 201 the new order, 200 the
/// same order for a repeated request. Shared by ticket machines and the rider app.
pub(super) async fn order(state: &AppState, req: &OrderRequest<'_>) -> ApiResult<Response> {
    // No network holds an id outside the location rule; refused before any lookup.
    if turnpike_wire::ident::check_location_id(req.destination_id).is_err() {
        return Err(ApiError::unprocessable(
            "unknown_station",
            "destination_id is not a station of this network",
        ));
    }
    if state.charging.provider.is_none() {
        return Err(ApiError::BadRequest {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "provider_not_configured",
            message: "this gateway has no payment provider".into(),
        });
    }
    let origin_id = req.buyer.origin_id().to_string();
    let placed = match tickets::place(&state.charging, req).await? {
        Ok(p) => p,
        Err(NotPlaced::Price(PriceError::NotMetro)) => {
            return Err(match req.buyer {
                Buyer::Machine(_) => ApiError::unprocessable(
                    "not_a_metro_terminal",
                    "tickets are sold by metro stations' machines only",
                ),
                Buyer::Rider { .. } => ApiError::unprocessable(
                    "not_a_metro_network",
                    "tickets are sold for metro networks only",
                ),
            })
        }
        Err(NotPlaced::Price(PriceError::UnknownStation)) => {
            return Err(ApiError::unprocessable(
                "unknown_station",
                format!(
                    "{origin_id} or {} is not a station of this network",
                    req.destination_id
                ),
            ))
        }
        Err(NotPlaced::Price(PriceError::NoFare)) => {
            return Err(ApiError::unprocessable(
                "no_fare",
                format!(
                    "the network has no fare from {origin_id} to {}",
                    req.destination_id
                ),
            ))
        }
        Err(NotPlaced::TooManyPending(pending)) => {
            return Err(ApiError::BadRequest {
                status: StatusCode::CONFLICT,
                code: "too_many_pending_tickets",
                message: format!(
                    "{pending} tickets are waiting for payment (at most {RIDER_PENDING_ORDERS_MAX}): pay one or let it expire first"
                ),
            })
        }
    };
    if placed.order.destination_id != req.destination_id || placed.order.origin_id != origin_id {
        return Err(ApiError::BadRequest {
            status: StatusCode::CONFLICT,
            code: "idempotency_conflict",
            message: "request_id was already used for another journey".into(),
        });
    }
    let (mut order, mut charge) = (placed.order, placed.charge);
    // A new order, or one whose first request died between its outbox write and its precreate:
    // pre-create it now (the provider answers a repeat with the same QR).
    if charge.status == ChargeStatus::Pending && order.qr_payload.is_empty() {
        match tickets::precreate(&state.charging, &order, &charge).await? {
            Ok(qr) => order.qr_payload = qr,
            Err(PrecreateError::Refused { sub_code, message }) => {
                return Err(ApiError::BadRequest {
                    status: StatusCode::BAD_GATEWAY,
                    code: "provider_refused",
                    message: format!("the provider refused the order: {sub_code} {message}"),
                })
            }
            Err(PrecreateError::Unavailable(m)) => {
                return Err(ApiError::BadRequest {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "provider_unavailable",
                    message: format!("the provider did not pre-create the order: {m}"),
                })
            }
        }
        if let Some(c) = state.store.charge(charge.charge_id).await? {
            charge = c;
        }
    }
    let status = if placed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view(&order, &charge)?)).into_response())
}

/// Most orders one listing returns.
const RIDER_ORDERS_LIMIT: i64 = 50;

/// A rider buys a ticket in the app: refused with 403 `real_name_required` while the gateway
/// requires real name and the bound wallet's account has not passed certification.
async fn post_rider_order(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
    ValidJson(req): ValidJson<RiderTicketRequest>,
) -> ApiResult<Response> {
    check_request_id(&req.request_id)?;
    if turnpike_wire::ident::check_id(&req.operator_id).is_err() {
        return Err(ApiError::NotFound(format!(
            "no network {}",
            req.operator_id
        )));
    }
    if turnpike_wire::ident::check_location_id(&req.origin_id).is_err() {
        return Err(ApiError::unprocessable(
            "unknown_station",
            "origin_id is not a station of this network",
        ));
    }
    let Some(network) = state.networks.get(&req.operator_id) else {
        return Err(ApiError::NotFound(format!(
            "no network {}",
            req.operator_id
        )));
    };
    if state.config.charging.app_tickets_require_real_name {
        let name = real_name::state(&state.charging, rider_id).await?;
        if !name.certified() {
            return Err(ApiError::BadRequest {
                status: StatusCode::FORBIDDEN,
                code: "real_name_required",
                message: "tickets bought in the app need a wallet whose account passed the provider's real-name certification: check it under Wallet".into(),
            });
        }
    }
    order(
        &state,
        &OrderRequest {
            buyer: Buyer::Rider {
                rider_id,
                operator_id: &req.operator_id,
                origin_id: &req.origin_id,
            },
            network: &network,
            destination_id: &req.destination_id,
            request_id: &req.request_id,
        },
    )
    .await
}

/// The rider's orders placed in the app, newest first (at most 50).
async fn rider_orders(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
) -> ApiResult<Json<TicketOrderList>> {
    let mut orders = Vec::new();
    for order in state
        .store
        .rider_ticket_orders(rider_id, RIDER_ORDERS_LIMIT)
        .await?
    {
        let charge = order_charge(&state, &order).await?;
        orders.push(current_view(&state, order, &charge).await?);
    }
    Ok(Json(TicketOrderList { orders }))
}

/// One of the rider's orders; another rider's is indistinguishable from none (404).
async fn get_rider_order(
    State(state): State<AppState>,
    Rider(rider_id): Rider,
    Path(order_id): Path<String>,
) -> ApiResult<Json<TicketOrderView>> {
    let (order, charge) = order_of(&state, &order_id, |o| o.rider_id == Some(rider_id)).await?;
    Ok(Json(current_view(&state, order, &charge).await?))
}

async fn order_charge(state: &AppState, order: &TicketOrderRow) -> ApiResult<ChargeRow> {
    state.store.charge(order.charge_id).await?.ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "order {} without its charge",
            order.order_id
        ))
    })
}

/// The order `order_id` and its charge if it exists and `owns` it; otherwise 404 (another
/// buyer's order is indistinguishable from none).
async fn order_of(
    state: &AppState,
    order_id: &str,
    owns: impl Fn(&TicketOrderRow) -> bool,
) -> ApiResult<(TicketOrderRow, ChargeRow)> {
    let not_found = || ApiError::NotFound(format!("no ticket order {order_id}"));
    let id: i64 = order_id.parse().map_err(|_| not_found())?;
    let order = state
        .store
        .ticket_order(id)
        .await?
        .filter(|o| owns(o))
        .ok_or_else(not_found)?;
    let charge = order_charge(state, &order).await?;
    Ok((order, charge))
}

/// The order if it belongs to this terminal.
async fn own_order(
    state: &AppState,
    identity: &TerminalIdentity,
    order_id: &str,
) -> ApiResult<(TicketOrderRow, ChargeRow)> {
    let terminal = terminal_of(state, identity)?;
    order_of(state, order_id, |o| {
        o.terminal_id.as_deref() == Some(terminal.terminal_id.as_str())
    })
    .await
}

async fn get_order(
    State(state): State<AppState>,
    Extension(identity): Extension<TerminalIdentity>,
    Path(order_id): Path<String>,
) -> ApiResult<Json<TicketOrderView>> {
    let (order, charge) = own_order(&state, &identity, &order_id).await?;
    Ok(Json(current_view(&state, order, &charge).await?))
}

/// The order's view; a paid order whose code was not issued (a crash between the two) gets it
/// now.
pub(super) async fn current_view(
    state: &AppState,
    mut order: TicketOrderRow,
    charge: &ChargeRow,
) -> ApiResult<TicketOrderView> {
    if charge.status == ChargeStatus::Captured && order.ticket_code.is_none() {
        tickets::issue(&state.charging, charge.charge_id).await?;
        if let Some(o) = state.store.ticket_order(order.order_id).await? {
            order = o;
        }
    }
    view(&order, charge)
}

async fn qr_payload(
    state: &AppState,
    identity: &TerminalIdentity,
    order_id: &str,
) -> ApiResult<String> {
    let (order, _) = own_order(state, identity, order_id).await?;
    if order.qr_payload.is_empty() {
        return Err(ApiError::NotFound(format!(
            "ticket order {order_id} has no QR (the provider did not pre-create it)"
        )));
    }
    Ok(order.qr_payload)
}

fn image(content_type: &'static str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn get_qr_svg(
    State(state): State<AppState>,
    Extension(identity): Extension<TerminalIdentity>,
    Path(order_id): Path<String>,
) -> ApiResult<Response> {
    let payload = qr_payload(&state, &identity, &order_id).await?;
    let svg = render_svg(&payload)?;
    Ok(image("image/svg+xml", svg.into_bytes()))
}

async fn get_qr_png(
    State(state): State<AppState>,
    Extension(identity): Extension<TerminalIdentity>,
    Path(order_id): Path<String>,
) -> ApiResult<Response> {
    let payload = qr_payload(&state, &identity, &order_id).await?;
    Ok(image("image/png", render_png(&payload)?))
}

/// The payload as an SVG QR code (error correction M, quiet zone 4, 8 px per module).
pub fn render_svg(payload: &str) -> anyhow::Result<String> {
    let code = qrcode::QrCode::new(payload.as_bytes())?;
    let px = QR_PIXELS_PER_MODULE as u32;
    Ok(code
        .render::<qrcode::render::svg::Color>()
        .quiet_zone(true)
        .module_dimensions(px, px)
        .build())
}

/// The payload as an 8-bit grayscale PNG QR code (error correction M, quiet zone 4 modules of
/// light, 8 px per module), drawn from the module matrix.
pub fn render_png(payload: &str) -> anyhow::Result<Vec<u8>> {
    let code = qrcode::QrCode::new(payload.as_bytes())?;
    let modules = code.width();
    let colors = code.to_colors();
    let side_modules = modules + 2 * QR_QUIET_ZONE_MODULES;
    let side = side_modules * QR_PIXELS_PER_MODULE;
    let mut pixels = vec![255u8; side * side];
    for my in 0..modules {
        for mx in 0..modules {
            if colors[my * modules + mx] != qrcode::Color::Dark {
                continue;
            }
            let x0 = (mx + QR_QUIET_ZONE_MODULES) * QR_PIXELS_PER_MODULE;
            let y0 = (my + QR_QUIET_ZONE_MODULES) * QR_PIXELS_PER_MODULE;
            for y in y0..y0 + QR_PIXELS_PER_MODULE {
                pixels[y * side + x0..y * side + x0 + QR_PIXELS_PER_MODULE].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&pixels)?;
    }
    Ok(out)
}

fn plain(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// At most one warning a second is logged for rejected notifications; the rest are counted
/// (`gateway_provider_notifications_total{outcome="rejected"}`) and summed into the next one.
const REJECTED_LOG_INTERVAL_MS: i64 = 1_000;

/// Counts a notification we will not act on, and logs it at a bounded rate. Nothing of it is
/// stored: anyone can post to this endpoint, so an unverified post must cost no disk.
fn note_rejected(why: &'static str) {
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    static LAST_LOG_MS: AtomicI64 = AtomicI64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    metrics::counter!("gateway_provider_notifications_total", "outcome" => "rejected", "why" => why)
        .increment(1);
    let now = crate::clock::system_now_ms();
    let last = LAST_LOG_MS.load(Ordering::Relaxed);
    if now - last >= REJECTED_LOG_INTERVAL_MS
        && LAST_LOG_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
        tracing::warn!(why, suppressed, "provider notification rejected");
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    }
}

/// The provider's notification: verified (signature and app) before anything is written, then
/// recorded once and applied (`charging::notify`).
async fn post_notify(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form {
        note_rejected("not_a_form");
        return plain(StatusCode::UNSUPPORTED_MEDIA_TYPE, "fail");
    }
    let Ok(bytes) = axum::body::to_bytes(body, NOTIFY_BODY_BYTES_MAX).await else {
        note_rejected("too_large");
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "fail");
    };
    let mut params = BTreeMap::new();
    let mut repeated = false;
    for (k, v) in form_urlencoded::parse(&bytes) {
        repeated |= params.insert(k.into_owned(), v.into_owned()).is_some();
    }
    if repeated {
        note_rejected("repeated_parameter");
        return plain(StatusCode::BAD_REQUEST, "fail");
    }
    let Some(provider) = state.charging.provider.as_ref() else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "fail");
    };
    let notice = match provider.read_notice(&params) {
        Ok(notice) => notice,
        Err(Refused::Unverified) => {
            note_rejected("unverified");
            return plain(StatusCode::BAD_REQUEST, "fail");
        }
        Err(Refused::Malformed(why)) => {
            tracing::warn!(why, "verified provider notification is malformed; rejected");
            note_rejected("malformed");
            return plain(StatusCode::BAD_REQUEST, "fail");
        }
    };
    match notify::on_verified_notification(&state.charging, &notice).await {
        Ok(handled) if handled.ack => plain(StatusCode::OK, "success"),
        Ok(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "fail"),
        Err(e) => {
            tracing::warn!(error = %e, "handling a provider notification failed");
            plain(StatusCode::SERVICE_UNAVAILABLE, "fail")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves request ids are 1–64 of `[A-Za-z0-9_-]`.
    #[test]
    fn request_ids() {
        assert!(valid_request_id("a"));
        assert!(valid_request_id("machine-7_order-00012"));
        assert!(valid_request_id(&"x".repeat(64)));
        for bad in ["", "a b", "a/b", "ä", "a.b"] {
            assert!(!valid_request_id(bad), "{bad}");
        }
        assert!(!valid_request_id(&"x".repeat(65)));
    }

    /// Proves the PNG has the quiet zone and module size of the spec: light border of 4 modules,
    /// dark top-left finder corner right after it.
    #[test]
    fn png_geometry() {
        let payload = "https://qr.sandbox.turnpike.invalid/abc123";
        let png_bytes = render_png(payload).unwrap();
        let code = qrcode::QrCode::new(payload.as_bytes()).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let side = (code.width() + 8) * 8;
        assert_eq!((info.width as usize, info.height as usize), (side, side));
        assert_eq!(info.color_type, png::ColorType::Grayscale);
        assert_eq!(buf[0], 255);
        assert_eq!(buf[31 * side + 31], 255, "quiet zone");
        assert_eq!(buf[32 * side + 32], 0, "finder pattern");
        let svg = render_svg(payload).unwrap();
        assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
    }
}
