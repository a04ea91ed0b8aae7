//! The ride-code format (v1): credentials issued by Turnpike, ride codes shown by riders' devices,
//! and the offline verifier that gates (and the gateway) run on them.
//!
//! A *credential* (126 bytes) binds a rider and a validity window to a device public key, signed by
//! a Turnpike issuer key. A *ride code* (206 bytes) is that credential plus a millisecond timestamp
//! and a random nonce, signed by the device key; the device makes a new one every time it shows a
//! QR code. A gate verifies a code with only the issuer public keys, the time and a deny list, so it
//! works offline. The byte layout, signing inputs, verification order and test vectors are in
//! `docs/ride-code.md`; keep that document and this module in step.
//!
//! Inside (all re-exported here): `format` (byte layout, encoding, structural parse), `keys`
//! (issuer and device key pairs, point compression), `verify` (policy, deny list, [`Verifier`])
//! and `reject` (the [`RejectReason`]s verification can give).
//!
//! It deliberately does not: read a clock (callers pass `scan_time_ms` / `now_s`), remember which
//! codes were already used (replay protection across scans is the gateway's job, keyed by
//! [`RideCode::fingerprint`]), fetch deny lists or keys, or log anything. Signing draws
//! randomness from the operating system through `ring` (ECDSA nonces and key generation); that is
//! the only contact with the outside world.

mod format;
mod keys;
mod reject;
mod verify;

pub use format::{Credential, CredentialBody, ProductFlags, RideCode};
pub use keys::{
    compress_public_key, decompress_public_key, parse_device_public_key, CredentialRequest,
    DeviceKeyPair, IssuerKeyPair, IssuerPublicKey, RideCodeError,
};
pub use reject::RejectReason;
pub use verify::{DenyHit, DenyList, VerifiedRideCode, Verifier, VerifyPolicy};

/// The format version byte at offset 0 of every credential (and so of every ride code).
pub const FORMAT_VERSION: u8 = 1;
/// Length in bytes of an encoded credential.
pub const CREDENTIAL_LEN: usize = 126;
/// Length in bytes of an encoded ride code.
pub const RIDE_CODE_LEN: usize = 206;
/// Length of the credential fields covered by the issuer signature (offsets 0..62).
pub const CREDENTIAL_BODY_LEN: usize = 62;
/// Length of the ride-code fields covered by the device signature (offsets 0..142).
pub const RIDE_CODE_BODY_LEN: usize = 142;
/// Length of an ECDSA P-256 signature in fixed `r || s` form.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a compressed SEC1 P-256 public key (`0x02`/`0x03` || x).
pub const COMPRESSED_PUBLIC_KEY_LEN: usize = 33;
/// Length of an uncompressed SEC1 P-256 public key (`0x04` || x || y).
pub const UNCOMPRESSED_PUBLIC_KEY_LEN: usize = 65;
/// Longest validity window an issuer signs and a verifier accepts: 7 days, so a lost device's
/// credential dies within a week even if the deny list never reaches a gate.
pub const MAX_CREDENTIAL_VALIDITY_S: u32 = 7 * 24 * 3600;
/// Length of the text form ([`RideCode::to_base64url`]): 206 bytes in unpadded base64url.
pub const RIDE_CODE_BASE64URL_LEN: usize = 275;

/// Domain-separation prefix of the issuer's signing input (prefix || credential bytes 0..62), so a
/// credential signature can never be replayed as any other kind of signature.
pub const CREDENTIAL_SIGNING_PREFIX: &[u8] = b"turnpike-credential-v1\0";
/// Domain-separation prefix of the device's signing input (prefix || ride-code bytes 0..142).
pub const RIDE_CODE_SIGNING_PREFIX: &[u8] = b"turnpike-ridecode-v1\0";
