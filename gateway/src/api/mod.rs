//! HTTP APIs. Routers only: parsing, authentication and the mapping to the engine and store.
//!
//! # Layout
//! - [`terminal`]: `POST /v1/taps`, `POST /v1/taps/batch`, key and deny-list feeds (mutual TLS).
//! - [`rider`]: rider registration, device enrolment, own journeys (rider tokens).
//! - [`admin`]: operators, terminals, fare data, deny list, issuer keys (admin token).
//! - [`toll`]: `POST /v1/toll/exits`, a toll exit paid at the booth (mutual TLS).
//! - [`tickets`]: ticket orders paid by a merchant-presented QR and their QR images (mutual
//!   TLS), and `POST /v1/provider/notify`, the provider's signed notifications (public).
//! - [`payments`]: rider wallets, charges, arrears and disputes; admin charges, journal,
//!   refunds and dispute decisions.
//! - [`flow`]: live passenger flow — stations now vs the usual, a station's minutes and
//!   forecast, an event stream (public, per-address budget); the admin's TripUpdates upload.
//! - [`app`]: the rider app, a progressive web app of static files under `/app/` (public).
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz` (plain HTTP on a private address).

pub mod admin;
pub mod app;
pub mod flow;
pub mod ops;
pub mod payments;
pub mod rider;
pub mod terminal;
pub mod tickets;
pub mod toll;

use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use turnpike_wire::ident::{self, InputError};

use crate::error::{ApiError, ApiResult};

/// A JSON body with named fields only (`turnpike_wire::json`: a structure given as an array is
/// refused at any depth), read within the route's body limit before anything else happens;
/// every rejection is one of our precise errors instead of axum's plain text.
pub struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::BadRequest {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                message: "the body must be JSON with Content-Type: application/json".into(),
            });
        }
        let bytes = body_bytes(req, state).await?;
        turnpike_wire::json::from_slice(&bytes)
            .map(ValidJson)
            .map_err(json_error)
    }
}

/// Like [`ValidJson`] for requests whose body is optional: an empty body is `T::default()`.
/// The body is still read (within the limit) and, when present, must be valid.
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(ApiError::BadRequest {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                message: "a body must be JSON with Content-Type: application/json".into(),
            });
        }
        turnpike_wire::json::from_slice(&bytes)
            .map(OptionalJson)
            .map_err(json_error)
    }
}

/// `application/json` or a `+json` type, as axum's `Json` accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(mime) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    else {
        return false;
    };
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// The whole body, within the route's `DefaultBodyLimit`.
async fn body_bytes<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|rejection| {
            let text = rejection.body_text();
            if rejection_is_too_large(&text) {
                ApiError::BadRequest {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "body_too_large",
                    message: "the body exceeds this endpoint's size limit".into(),
                }
            } else {
                ApiError::bad_request("unreadable_body", text)
            }
        })
}

fn json_error(e: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let text = format!("the JSON body does not fit: {e}");
    match e.classify() {
        Category::Syntax | Category::Eof => ApiError::bad_request("malformed_json", text),
        Category::Data if text.contains("unknown field") => {
            ApiError::bad_request("unknown_field", text)
        }
        Category::Data => ApiError::unprocessable("invalid_body", text),
        Category::Io => ApiError::bad_request("unreadable_body", text),
    }
}

fn rejection_is_too_large(text: &str) -> bool {
    text.contains("length limit") || text.contains("too large")
}

/// Gives a router JSON answers for unknown paths (404 `not_found`) and wrong methods
/// (405 `method_not_allowed`), like every other error.
pub fn with_json_fallbacks(router: axum::Router) -> axum::Router {
    router
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::NotFound(format!("no endpoint at {}", uri.path()))
        })
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                ApiError::BadRequest {
                    status: StatusCode::METHOD_NOT_ALLOWED,
                    code: "method_not_allowed",
                    message: format!("{method} is not allowed on {}", uri.path()),
                }
            },
        )
}

/// Spends one request of the calling terminal's budget (`limits.terminal_*`) before the
/// request is read; past it, 429 `rate_limited`.
pub fn with_terminal_limit(router: axum::Router, state: crate::AppState) -> axum::Router {
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| {
            let state = state.clone();
            async move {
                let identity = req.extensions().get::<terminal::TerminalIdentity>();
                if let Some(id) = identity {
                    if let Err(e) = state.limits.terminal(&id.0) {
                        return e.into_response();
                    }
                }
                next.run(req).await
            }
        },
    ))
}

/// The address of the client a request came from: the TCP peer the listener recorded, or the
/// last entry of `limits.client_address_header` when a proxy in front sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

pub fn client_address(
    headers: &HeaderMap,
    peer: ClientAddress,
    header_name: &str,
) -> std::net::IpAddr {
    if header_name.is_empty() {
        return peer.0;
    }
    headers
        .get_all(header_name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer.0)
}

/// Answers 408 `request_timeout` when a request (its body upload included) is not complete within
/// `listen.request_timeout_ms`. A tap still waiting for its commit then may or may not be stored;
/// the terminal retries with the same sequence number and gets the stored answer.
pub fn with_request_deadline(router: axum::Router, timeout_ms: u64) -> axum::Router {
    let limit = std::time::Duration::from_millis(timeout_ms);
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| async move {
            match tokio::time::timeout(limit, next.run(req)).await {
                Ok(response) => response,
                Err(_) => ApiError::BadRequest {
                    status: StatusCode::REQUEST_TIMEOUT,
                    code: "request_timeout",
                    message: format!(
                        "the request did not complete within {} ms",
                        limit.as_millis()
                    ),
                }
                .into_response(),
            }
        },
    ))
}

/// Query-string parameters with our precise error (400 `invalid_query`) instead of axum's text.
pub struct ValidQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ValidQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ValidQuery(value))
            .map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))
    }
}

/// Longest reason or note a person may write (refunds, disputes, deny-listing).
pub const TEXT_CHARS_MAX: usize = 500;
/// Longest operator name.
pub const NAME_CHARS_MAX: usize = 200;

/// An input rule's verdict (`turnpike_wire::ident`) as a 422 with `code`, naming the field.
pub fn check_input(
    code: &'static str,
    field: &str,
    verdict: Result<(), InputError>,
) -> ApiResult<()> {
    verdict.map_err(|e| ApiError::unprocessable(code, format!("{field} {e}")))
}

/// An identifier (`A–Z a–z 0–9 - _`, 1–64): 422 `invalid_id` otherwise.
pub fn check_id(field: &str, id: &str) -> ApiResult<()> {
    check_input("invalid_id", field, ident::check_id(id))
}

/// A decimal id written the one canonical way: 422 `code` otherwise.
pub fn decimal_id(code: &'static str, field: &str, text: &str) -> ApiResult<i64> {
    ident::parse_decimal_id(text).map_err(|e| ApiError::unprocessable(code, format!("{field} {e}")))
}

/// A reason or note: text of 1–[`TEXT_CHARS_MAX`] characters.
pub fn check_reason(code: &'static str, field: &str, text: &str) -> ApiResult<()> {
    check_input(code, field, ident::check_text(text, TEXT_CHARS_MAX))
}

/// A raw JSON answer (the stored bytes of a tap answer go out unchanged).
pub fn raw_json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// SHA-256, for tokens at rest and constant-shape comparisons.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
