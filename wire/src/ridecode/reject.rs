//! Why a ride code or credential was refused: one precise reason per failed check.
//!
//! The snake_case [`RejectReason::code`]s are a stable interface: terminals show them, the gateway
//! uses them as metric labels and API error codes, and `docs/ride-code.md` lists them. Never
//! rename one; add new ones at the end of [`RejectReason::ALL`].
//!
//! It deliberately carries no detail (no key id, no timestamps): a reason goes back to an
//! unauthenticated scanner, and the detail belongs in the gateway's own logs.

/// Why verification refused a ride code (or credential). The variants are listed in the order
/// the verifier checks them, so the first failed check is the one reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum RejectReason {
    /// The text form is not valid unpadded base64url.
    #[error("ride code is not valid unpadded base64url")]
    BadEncoding,
    /// Fewer bytes than the format needs.
    #[error("ride code is truncated (too few bytes)")]
    Truncated,
    /// More bytes than the format has.
    #[error("ride code has trailing bytes (too many bytes)")]
    TrailingBytes,
    /// The version byte is not [`super::FORMAT_VERSION`].
    #[error("unsupported ride-code format version")]
    UnsupportedVersion,
    /// The credential is structurally invalid (reserved product bits set).
    #[error("malformed credential (reserved product bits set)")]
    MalformedCredential,
    /// The credential names an issuer key id the verifier does not hold.
    #[error("credential signed by an unknown issuer key id")]
    UnknownIssuerKey,
    /// The issuer signature does not match the credential.
    #[error("credential issuer signature is invalid")]
    BadIssuerSignature,
    /// The (issuer-signed) device public key is not a valid compressed P-256 point.
    #[error("credential device public key is not a valid P-256 point")]
    BadDevicePublicKey,
    /// The device signature does not match the ride code.
    #[error("ride code device signature is invalid")]
    BadDeviceSignature,
    /// The validity window is longer than the maximum (7 days).
    #[error("credential validity window is longer than allowed")]
    CredentialValidityTooLong,
    /// Scan time is before the credential's `valid_from_s`.
    #[error("credential is not valid yet")]
    CredentialNotYetValid,
    /// Scan time is at or after the credential's `valid_until_s`.
    #[error("credential has expired")]
    CredentialExpired,
    /// The code was generated further in the future than the allowed clock skew.
    #[error("ride code generated in the future (device clock ahead)")]
    CodeFromFuture,
    /// The code is older than the freshness window.
    #[error("ride code has expired (too old; show a fresh code)")]
    CodeExpired,
    /// The credential id is on the deny list.
    #[error("credential is denied")]
    CredentialDenied,
    /// The rider id is on the deny list.
    #[error("rider is denied")]
    RiderDenied,
}

impl RejectReason {
    /// Every reason, in check order.
    pub const ALL: [RejectReason; 16] = [
        RejectReason::BadEncoding,
        RejectReason::Truncated,
        RejectReason::TrailingBytes,
        RejectReason::UnsupportedVersion,
        RejectReason::MalformedCredential,
        RejectReason::UnknownIssuerKey,
        RejectReason::BadIssuerSignature,
        RejectReason::BadDevicePublicKey,
        RejectReason::BadDeviceSignature,
        RejectReason::CredentialValidityTooLong,
        RejectReason::CredentialNotYetValid,
        RejectReason::CredentialExpired,
        RejectReason::CodeFromFuture,
        RejectReason::CodeExpired,
        RejectReason::CredentialDenied,
        RejectReason::RiderDenied,
    ];

    /// Stable machine-readable snake_case code, e.g. `"code_expired"`.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::BadEncoding => "code_bad_encoding",
            RejectReason::Truncated => "code_truncated",
            RejectReason::TrailingBytes => "code_trailing_bytes",
            RejectReason::UnsupportedVersion => "unsupported_version",
            RejectReason::MalformedCredential => "malformed_credential",
            RejectReason::UnknownIssuerKey => "unknown_issuer_key",
            RejectReason::BadIssuerSignature => "bad_issuer_signature",
            RejectReason::BadDevicePublicKey => "bad_device_public_key",
            RejectReason::BadDeviceSignature => "bad_device_signature",
            RejectReason::CredentialValidityTooLong => "credential_validity_too_long",
            RejectReason::CredentialNotYetValid => "credential_not_yet_valid",
            RejectReason::CredentialExpired => "credential_expired",
            RejectReason::CodeFromFuture => "code_from_future",
            RejectReason::CodeExpired => "code_expired",
            RejectReason::CredentialDenied => "credential_denied",
            RejectReason::RiderDenied => "rider_denied",
        }
    }

    /// The reason for a [`RejectReason::code`], e.g. when reading test vectors or API replies.
    pub fn from_code(code: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.code() == code)
    }
}
