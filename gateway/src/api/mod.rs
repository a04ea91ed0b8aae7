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
//! - [`ops`]: `/metrics`, `/healthz`, `/readyz` (plain HTTP on a private address).

pub mod admin;
pub mod ops;
pub mod payments;
pub mod rider;
pub mod terminal;
pub mod tickets;
pub mod toll;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// `Json<T>` whose every rejection is one of our precise errors instead of axum's plain text.
pub struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ValidJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::BadRequest {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "the body must be JSON with Content-Type: application/json".into(),
        },
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("malformed_json", text),
        JsonRejection::JsonDataError(_) if text.contains("unknown field") => {
            ApiError::bad_request("unknown_field", text)
        }
        JsonRejection::JsonDataError(_) => ApiError::unprocessable("invalid_body", text),
        JsonRejection::BytesRejection(_) if rejection_is_too_large(&text) => ApiError::BadRequest {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "body_too_large",
            message: "the body exceeds this endpoint's size limit".into(),
        },
        _ => ApiError::bad_request("unreadable_body", text),
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
