//! The sandbox's one error type and the one place where errors become answers.
//!
//! Open-API errors are answered the platform's way: HTTP 200 with `code`, `msg`, `sub_code`,
//! `sub_msg` inside the signed `<method>_response`. Admin errors are plain JSON with an HTTP
//! status. An error never changes state: the transaction it happened in is rolled back.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A required common parameter is missing: platform code 40001.
    #[error("{sub_msg}")]
    MissingArgument {
        sub_code: &'static str,
        sub_msg: String,
    },
    /// A common parameter is wrong (app, method, signature, timestamp…): platform code 40002.
    #[error("{sub_msg}")]
    InvalidArgument {
        sub_code: &'static str,
        sub_msg: String,
    },
    /// The business refused the call (`ACQ.TRADE_NOT_EXIST`, …): platform code 40004.
    #[error("{sub_msg}")]
    Business {
        sub_code: &'static str,
        sub_msg: String,
    },
    /// An admin action the platform would refuse (a wallet payment the balance cannot cover, a
    /// closed code): HTTP 409 with the platform's sub code.
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    /// An admin request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// An admin request names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A key file or a registered key is unusable.
    #[error("key: {0}")]
    Key(String),
    #[error("storage unavailable")]
    Storage(#[from] sqlx::Error),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl SandboxError {
    pub fn missing(sub_code: &'static str, sub_msg: impl Into<String>) -> SandboxError {
        SandboxError::MissingArgument {
            sub_code,
            sub_msg: sub_msg.into(),
        }
    }

    pub fn invalid(sub_code: &'static str, sub_msg: impl Into<String>) -> SandboxError {
        SandboxError::InvalidArgument {
            sub_code,
            sub_msg: sub_msg.into(),
        }
    }

    pub fn business(sub_code: &'static str, sub_msg: impl Into<String>) -> SandboxError {
        SandboxError::Business {
            sub_code,
            sub_msg: sub_msg.into(),
        }
    }

    pub fn refused(code: &'static str, message: impl Into<String>) -> SandboxError {
        SandboxError::Refused {
            code,
            message: message.into(),
        }
    }

    /// The platform's (code, msg, sub_code) for this error.
    pub fn open_api_code(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            SandboxError::MissingArgument { sub_code, .. } => {
                ("40001", "Missing Required Arguments", sub_code)
            }
            SandboxError::InvalidArgument { sub_code, .. } => {
                ("40002", "Invalid Arguments", sub_code)
            }
            SandboxError::Business { sub_code, .. } => ("40004", "Business Failed", sub_code),
            SandboxError::Refused { code, .. } => ("40004", "Business Failed", code),
            SandboxError::BadRequest(_) | SandboxError::NotFound(_) | SandboxError::Key(_) => {
                ("40002", "Invalid Arguments", "isv.invalid-parameter")
            }
            SandboxError::Storage(_) | SandboxError::Internal(_) => {
                ("20000", "Service Currently Unavailable", "isp.unknow-error")
            }
        }
    }

    /// The `sub_msg` to show; internal failures are logged, not shown.
    pub fn public_message(&self) -> String {
        match self {
            SandboxError::Storage(e) => {
                tracing::error!(error = %e, "storage error");
                "系统繁忙 (storage unavailable)".into()
            }
            SandboxError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "系统繁忙 (internal error)".into()
            }
            other => other.to_string(),
        }
    }

    fn admin_status(&self) -> StatusCode {
        match self {
            SandboxError::NotFound(_) => StatusCode::NOT_FOUND,
            SandboxError::Refused { .. } => StatusCode::CONFLICT,
            SandboxError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
            SandboxError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Admin endpoints answer errors as `{"error": {"code": ..., "message": ...}}`.
impl IntoResponse for SandboxError {
    fn into_response(self) -> Response {
        let status = self.admin_status();
        let (_, _, sub_code) = self.open_api_code();
        let body = serde_json::json!({
            "error": { "code": sub_code, "message": self.public_message() }
        });
        (status, axum::Json(body)).into_response()
    }
}
