//! Byte layout of credentials and ride codes: encoding, and the structural parse that every
//! verification starts with.
//!
//! Parsing here checks only what needs no key: length, version byte and reserved product bits.
//! It deliberately does not verify signatures, decompress the device key or look at the time;
//! a parsed [`Credential`] or [`RideCode`] is *not* trusted until [`super::Verifier`] says so.

use std::fmt;

use base64::Engine as _;
use ring::digest;

use super::{
    RejectReason, COMPRESSED_PUBLIC_KEY_LEN, CREDENTIAL_BODY_LEN, CREDENTIAL_LEN,
    CREDENTIAL_SIGNING_PREFIX, FORMAT_VERSION, RIDE_CODE_BASE64URL_LEN, RIDE_CODE_BODY_LEN,
    RIDE_CODE_LEN, RIDE_CODE_SIGNING_PREFIX, SIGNATURE_LEN,
};

// Field offsets, named once so encode and parse cannot drift apart.
const OFF_VERSION: usize = 0;
const OFF_ISSUER_KEY_ID: usize = 1;
const OFF_CREDENTIAL_ID: usize = 3;
const OFF_RIDER_ID: usize = 11;
const OFF_VALID_FROM: usize = 19;
const OFF_VALID_UNTIL: usize = 23;
const OFF_PRODUCTS: usize = 27;
const OFF_DEVICE_KEY: usize = 29;
const OFF_ISSUER_SIG: usize = 62;
const OFF_GENERATED_AT: usize = 126;
const OFF_NONCE: usize = 134;
const OFF_DEVICE_SIG: usize = 142;

/// Which products a credential may be used for: a `u16` bit set (bit 0 metro, bit 1 toll).
///
/// The other 14 bits are reserved and must be zero; a credential with any of them set is
/// rejected as [`RejectReason::MalformedCredential`] before any signature is checked, so that
/// old verifiers never silently grant a product they do not understand.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProductFlags(u16);

impl ProductFlags {
    /// No product (not issuable; useful as a starting point for `|`).
    pub const NONE: ProductFlags = ProductFlags(0);
    /// Metro gates.
    pub const METRO: ProductFlags = ProductFlags(1 << 0);
    /// Toll booths.
    pub const TOLL: ProductFlags = ProductFlags(1 << 1);
    /// Mask of the bits v1 defines; every other bit is reserved.
    pub const KNOWN_BITS: u16 = 0b11;

    /// The flags for `bits`, or `None` if a reserved bit is set.
    pub fn from_bits(bits: u16) -> Option<ProductFlags> {
        (bits & !Self::KNOWN_BITS == 0).then_some(ProductFlags(bits))
    }

    /// The raw bits as encoded.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// True if every product in `other` is in `self`.
    pub fn contains(self, other: ProductFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True if no product is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for ProductFlags {
    type Output = ProductFlags;
    fn bitor(self, rhs: ProductFlags) -> ProductFlags {
        ProductFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for ProductFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        if self.contains(Self::METRO) {
            names.push("METRO".to_owned());
        }
        if self.contains(Self::TOLL) {
            names.push("TOLL".to_owned());
        }
        let reserved = self.0 & !Self::KNOWN_BITS;
        if reserved != 0 {
            names.push(format!("{reserved:#06x}"));
        }
        write!(f, "ProductFlags({})", names.join(" | "))
    }
}

/// The signed fields of a credential (offsets 0..62 minus the version byte, which is implied).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialBody {
    /// Which issuer key signed it; lets verifiers hold current and previous keys during rotation.
    pub issuer_key_id: u16,
    /// Unique per credential; what the deny list names when one device is lost.
    pub credential_id: u64,
    /// The rider account the credential belongs to.
    pub rider_id: u64,
    /// First second (unix time) at which the credential is valid, inclusive.
    pub valid_from_s: u32,
    /// Second (unix time) from which the credential is no longer valid, exclusive.
    pub valid_until_s: u32,
    /// Products the credential may be used for.
    pub products: ProductFlags,
    /// The device's P-256 public key, compressed SEC1 (33 bytes), which must sign each ride code.
    pub device_public_key: [u8; COMPRESSED_PUBLIC_KEY_LEN],
}

impl CredentialBody {
    /// The 62 bytes the issuer signs (after [`CREDENTIAL_SIGNING_PREFIX`]), version byte included.
    pub fn to_unsigned_bytes(&self) -> [u8; CREDENTIAL_BODY_LEN] {
        let mut out = [0u8; CREDENTIAL_BODY_LEN];
        out[OFF_VERSION] = FORMAT_VERSION;
        out[OFF_ISSUER_KEY_ID..OFF_CREDENTIAL_ID]
            .copy_from_slice(&self.issuer_key_id.to_be_bytes());
        out[OFF_CREDENTIAL_ID..OFF_RIDER_ID].copy_from_slice(&self.credential_id.to_be_bytes());
        out[OFF_RIDER_ID..OFF_VALID_FROM].copy_from_slice(&self.rider_id.to_be_bytes());
        out[OFF_VALID_FROM..OFF_VALID_UNTIL].copy_from_slice(&self.valid_from_s.to_be_bytes());
        out[OFF_VALID_UNTIL..OFF_PRODUCTS].copy_from_slice(&self.valid_until_s.to_be_bytes());
        out[OFF_PRODUCTS..OFF_DEVICE_KEY].copy_from_slice(&self.products.bits().to_be_bytes());
        out[OFF_DEVICE_KEY..OFF_ISSUER_SIG].copy_from_slice(&self.device_public_key);
        out
    }

    /// The complete issuer signing input: [`CREDENTIAL_SIGNING_PREFIX`] || bytes 0..62.
    pub fn signing_input(&self) -> Vec<u8> {
        [CREDENTIAL_SIGNING_PREFIX, &self.to_unsigned_bytes()[..]].concat()
    }

    /// Length of the validity window in seconds, or `None` if it is empty or inverted.
    pub fn validity_s(&self) -> Option<u32> {
        self.valid_until_s
            .checked_sub(self.valid_from_s)
            .filter(|&span| span > 0)
    }
}

/// Checks length, version and reserved product bits of a credential prefix; shared by
/// [`Credential::from_bytes`] and [`RideCode::from_bytes`] so both reject in the same order.
fn check_length(bytes: &[u8], expected: usize) -> Result<(), RejectReason> {
    match bytes.len().cmp(&expected) {
        std::cmp::Ordering::Less => Err(RejectReason::Truncated),
        std::cmp::Ordering::Greater => Err(RejectReason::TrailingBytes),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

fn be_u16(b: &[u8; CREDENTIAL_LEN], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be_u32(b: &[u8; CREDENTIAL_LEN], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// A credential: the issuer-signed binding of a rider and validity window to a device key.
///
/// Holds both the decoded fields and the exact encoded bytes, so re-encoding can never change what
/// the signature covers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    body: CredentialBody,
    issuer_signature: [u8; SIGNATURE_LEN],
    bytes: [u8; CREDENTIAL_LEN],
}

impl Credential {
    /// Assembles a credential from a body and a signature over [`CredentialBody::signing_input`].
    /// The signature is not checked here; [`super::Verifier::verify_credential`] does that.
    pub fn from_parts(body: CredentialBody, issuer_signature: [u8; SIGNATURE_LEN]) -> Credential {
        let mut bytes = [0u8; CREDENTIAL_LEN];
        bytes[..OFF_ISSUER_SIG].copy_from_slice(&body.to_unsigned_bytes());
        bytes[OFF_ISSUER_SIG..].copy_from_slice(&issuer_signature);
        Credential {
            body,
            issuer_signature,
            bytes,
        }
    }

    /// Structural parse of exactly [`CREDENTIAL_LEN`] bytes: length (`Truncated` /
    /// `TrailingBytes`), version (`UnsupportedVersion`) and reserved product bits
    /// (`MalformedCredential`). No signature is checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Credential, RejectReason> {
        check_length(bytes, CREDENTIAL_LEN)?;
        let mut b = [0u8; CREDENTIAL_LEN];
        b.copy_from_slice(bytes);
        if b[OFF_VERSION] != FORMAT_VERSION {
            return Err(RejectReason::UnsupportedVersion);
        }
        let products = ProductFlags::from_bits(be_u16(&b, OFF_PRODUCTS))
            .ok_or(RejectReason::MalformedCredential)?;
        let mut device_public_key = [0u8; COMPRESSED_PUBLIC_KEY_LEN];
        device_public_key.copy_from_slice(&b[OFF_DEVICE_KEY..OFF_ISSUER_SIG]);
        let mut issuer_signature = [0u8; SIGNATURE_LEN];
        issuer_signature.copy_from_slice(&b[OFF_ISSUER_SIG..CREDENTIAL_LEN]);
        let body = CredentialBody {
            issuer_key_id: be_u16(&b, OFF_ISSUER_KEY_ID),
            credential_id: be_u64(&b, OFF_CREDENTIAL_ID),
            rider_id: be_u64(&b, OFF_RIDER_ID),
            valid_from_s: be_u32(&b, OFF_VALID_FROM),
            valid_until_s: be_u32(&b, OFF_VALID_UNTIL),
            products,
            device_public_key,
        };
        Ok(Credential {
            body,
            issuer_signature,
            bytes: b,
        })
    }

    /// The decoded signed fields.
    pub fn body(&self) -> &CredentialBody {
        &self.body
    }

    /// The issuer's 64-byte `r || s` signature.
    pub fn issuer_signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.issuer_signature
    }

    /// The 126 encoded bytes.
    pub fn to_bytes(&self) -> [u8; CREDENTIAL_LEN] {
        self.bytes
    }

    /// The 126 encoded bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; CREDENTIAL_LEN] {
        &self.bytes
    }

    /// The issuer signing input, taken from the encoded bytes: prefix || bytes 0..62.
    pub(crate) fn signing_input(
        &self,
    ) -> [u8; CREDENTIAL_SIGNING_PREFIX.len() + CREDENTIAL_BODY_LEN] {
        let mut out = [0u8; CREDENTIAL_SIGNING_PREFIX.len() + CREDENTIAL_BODY_LEN];
        out[..CREDENTIAL_SIGNING_PREFIX.len()].copy_from_slice(CREDENTIAL_SIGNING_PREFIX);
        out[CREDENTIAL_SIGNING_PREFIX.len()..].copy_from_slice(&self.bytes[..OFF_ISSUER_SIG]);
        out
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

/// A ride code: a credential plus generation time and nonce, signed by the device.
///
/// Its bytes are a bearer token for as long as it is fresh, so `Debug` shows only
/// [`RideCode::short_id`] and a few fields; never log the code or its text form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RideCode {
    credential: Credential,
    generated_at_ms: u64,
    nonce: u64,
    device_signature: [u8; SIGNATURE_LEN],
    bytes: [u8; RIDE_CODE_LEN],
}

impl RideCode {
    /// The 142 bytes the device signs (after [`RIDE_CODE_SIGNING_PREFIX`]).
    pub fn unsigned_bytes(
        credential: &Credential,
        generated_at_ms: u64,
        nonce: u64,
    ) -> [u8; RIDE_CODE_BODY_LEN] {
        let mut out = [0u8; RIDE_CODE_BODY_LEN];
        out[..CREDENTIAL_LEN].copy_from_slice(credential.as_bytes());
        out[OFF_GENERATED_AT..OFF_NONCE].copy_from_slice(&generated_at_ms.to_be_bytes());
        out[OFF_NONCE..OFF_DEVICE_SIG].copy_from_slice(&nonce.to_be_bytes());
        out
    }

    /// Assembles a ride code from its fields and a device signature over the signing input.
    /// The signature is not checked here.
    pub fn from_parts(
        credential: Credential,
        generated_at_ms: u64,
        nonce: u64,
        device_signature: [u8; SIGNATURE_LEN],
    ) -> RideCode {
        let mut bytes = [0u8; RIDE_CODE_LEN];
        bytes[..OFF_DEVICE_SIG].copy_from_slice(&RideCode::unsigned_bytes(
            &credential,
            generated_at_ms,
            nonce,
        ));
        bytes[OFF_DEVICE_SIG..].copy_from_slice(&device_signature);
        RideCode {
            credential,
            generated_at_ms,
            nonce,
            device_signature,
            bytes,
        }
    }

    /// Structural parse of exactly [`RIDE_CODE_LEN`] bytes (see [`Credential::from_bytes`]);
    /// no signature is checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<RideCode, RejectReason> {
        check_length(bytes, RIDE_CODE_LEN)?;
        let credential = Credential::from_bytes(&bytes[..CREDENTIAL_LEN])?;
        let mut b = [0u8; RIDE_CODE_LEN];
        b.copy_from_slice(bytes);
        let mut device_signature = [0u8; SIGNATURE_LEN];
        device_signature.copy_from_slice(&b[OFF_DEVICE_SIG..]);
        Ok(RideCode {
            credential,
            generated_at_ms: be_u64(&b, OFF_GENERATED_AT),
            nonce: be_u64(&b, OFF_NONCE),
            device_signature,
            bytes: b,
        })
    }

    /// Decodes the text form (unpadded base64url, as carried in JSON) and parses it.
    ///
    /// Padding, the standard alphabet, whitespace and non-canonical trailing bits are all
    /// [`RejectReason::BadEncoding`], so one code has exactly one text form.
    pub fn from_base64url(text: &str) -> Result<RideCode, RejectReason> {
        RideCode::from_bytes(&decode_base64url(text)?)
    }

    /// The text form: unpadded base64url of the 206 bytes (275 characters).
    pub fn to_base64url(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.bytes)
    }

    /// The credential inside.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// When the device generated the code, unix milliseconds (device clock).
    pub fn generated_at_ms(&self) -> u64 {
        self.generated_at_ms
    }

    /// Random per code, so two codes made in the same millisecond still differ.
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// The device's 64-byte `r || s` signature.
    pub fn device_signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.device_signature
    }

    /// The 206 encoded bytes.
    pub fn to_bytes(&self) -> [u8; RIDE_CODE_LEN] {
        self.bytes
    }

    /// The 206 encoded bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8; RIDE_CODE_LEN] {
        &self.bytes
    }

    /// SHA-256 of the 206 bytes: what the gateway stores to detect replays, instead of the code.
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint_of(&self.bytes)
    }

    /// First 8 hex characters of the fingerprint, for logs.
    pub fn short_id(&self) -> String {
        short_id_of(&self.fingerprint())
    }

    /// The device signing input, taken from the encoded bytes: prefix || bytes 0..142.
    pub(crate) fn signing_input(
        &self,
    ) -> [u8; RIDE_CODE_SIGNING_PREFIX.len() + RIDE_CODE_BODY_LEN] {
        let mut out = [0u8; RIDE_CODE_SIGNING_PREFIX.len() + RIDE_CODE_BODY_LEN];
        out[..RIDE_CODE_SIGNING_PREFIX.len()].copy_from_slice(RIDE_CODE_SIGNING_PREFIX);
        out[RIDE_CODE_SIGNING_PREFIX.len()..].copy_from_slice(&self.bytes[..OFF_DEVICE_SIG]);
        out
    }
}

impl fmt::Debug for RideCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RideCode")
            .field("short_id", &self.short_id())
            .field("credential_id", &self.credential.body.credential_id)
            .field("generated_at_ms", &self.generated_at_ms)
            .finish_non_exhaustive()
    }
}

pub(crate) fn fingerprint_of(bytes: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub(crate) fn short_id_of(fingerprint: &[u8; 32]) -> String {
    hex::encode(&fingerprint[..4])
}

/// Decodes unpadded base64url, bounding the work on absurdly long input.
pub(crate) fn decode_base64url(text: &str) -> Result<Vec<u8>, RejectReason> {
    // Anything much longer than one code cannot be one; don't decode megabytes to say so.
    if text.len() > 4 * RIDE_CODE_BASE64URL_LEN {
        return Err(RejectReason::TrailingBytes);
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| RejectReason::BadEncoding)
}
