//! The gateway's error type and the one place where errors become HTTP answers.
//!
//! A decline is not an error: a well-formed tap that the rules refuse gets a 200 with
//! `decision: decline` and a reason. Errors are for requests the gateway cannot judge (bad input,
//! bad credentials, overload, database trouble), and an error never changes state.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use turnpike_wire::api::{ErrorBody, ErrorDetail};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or semantically invalid; `code` is the machine-readable reason.
    #[error("{message}")]
    BadRequest {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    #[error("authentication required or failed")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    /// The idempotency key was used before with a different body.
    #[error("sequence {sequence} was already used by this terminal with a different request")]
    IdempotencyConflict { sequence: u64 },
    /// This client (terminal, rider, source address) used up its request budget; retry after
    /// `retry_after_s` seconds. Nothing was done.
    #[error("too many requests from this client; retry after {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    /// Too much queued work; the caller should retry after a short pause.
    #[error("the gateway is overloaded; retry shortly")]
    Overloaded,
    #[error("storage unavailable")]
    Storage(#[from] sqlx::Error),
    /// The commit did not finish within the answer budget: the request may or may not have
    /// been stored; repeating it (same sequence) is safe and gets the stored answer.
    #[error("the database is unavailable or too slow; repeat the same request")]
    DatabaseUnavailable,
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { status, code, .. } => (*status, code),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::IdempotencyConflict { .. } => (StatusCode::CONFLICT, "idempotency_conflict"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::Storage(_) | ApiError::DatabaseUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        metrics::counter!("gateway_http_errors_total", "code" => code).increment(1);
        match &self {
            ApiError::Storage(e) => tracing::error!(error = %e, "storage error"),
            ApiError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            _ => {}
        }
        let retry_after_s = match self {
            ApiError::RateLimited { retry_after_s } => Some(retry_after_s.max(1)),
            ApiError::Overloaded | ApiError::Storage(_) | ApiError::DatabaseUnavailable => Some(1),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: self.to_string(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(seconds) = retry_after_s {
            // Rate limits, overload and storage trouble are transient: ask well-behaved clients
            // to back off (terminals retry idempotently with the same sequence number).
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
