//! Keys and signing: issuer key pairs that sign credentials, device key pairs that sign ride
//! codes, issuer public keys for verifiers, and P-256 point compression.
//!
//! Device keys travel compressed (33 bytes) to keep a ride code inside a version-10 QR code, but
//! `ring` verifies only uncompressed points, so [`decompress_public_key`] uses the `p256` crate.
//! This module deliberately does not store, rotate or distribute keys (the gateway does), and
//! never prints private key material (`Debug` is redacted).

use std::fmt;

use base64::Engine as _;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::format::{Credential, CredentialBody, ProductFlags, RideCode};
use super::{
    COMPRESSED_PUBLIC_KEY_LEN, MAX_CREDENTIAL_VALIDITY_S, SIGNATURE_LEN,
    UNCOMPRESSED_PUBLIC_KEY_LEN,
};

/// Errors on the producing side: loading keys, issuing credentials, making ride codes.
/// (Refusals on the verifying side are [`super::RejectReason`]s.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RideCodeError {
    /// The PKCS#8 document is not a valid P-256 ECDSA private key.
    #[error("invalid PKCS#8 P-256 private key")]
    BadPkcs8,
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Rng,
    /// Signing failed (only possible if the random number generator fails).
    #[error("signing failed")]
    Signing,
    /// A public key is not a valid P-256 point in the expected encoding.
    #[error("invalid P-256 public key: {0}")]
    BadPublicKey(&'static str),
    /// `valid_until_s` is not after `valid_from_s`.
    #[error("empty validity window: valid_until_s {valid_until_s} <= valid_from_s {valid_from_s}")]
    EmptyValidity {
        /// Requested start.
        valid_from_s: u32,
        /// Requested end.
        valid_until_s: u32,
    },
    /// The validity window exceeds [`MAX_CREDENTIAL_VALIDITY_S`].
    #[error("validity window of {validity_s} s exceeds the maximum of {max_s} s")]
    ValidityTooLong {
        /// Requested window length.
        validity_s: u32,
        /// The maximum allowed.
        max_s: u32,
    },
    /// No product flag is set, so the credential would be useless.
    #[error("credential must allow at least one product")]
    NoProducts,
    /// The ride code was requested for a credential bound to another device key.
    #[error("credential is bound to a different device public key")]
    DeviceKeyMismatch,
    /// Two issuer public keys with the same key id were given to one verifier.
    #[error("duplicate issuer key id {0}")]
    DuplicateKeyId(u16),
}

/// Compresses an uncompressed SEC1 P-256 public key (`0x04 || x || y`, 65 bytes) to 33 bytes
/// (`0x02`/`0x03` by the parity of y, then x). The point is checked to be on the curve.
pub fn compress_public_key(
    uncompressed: &[u8],
) -> Result<[u8; COMPRESSED_PUBLIC_KEY_LEN], RideCodeError> {
    if uncompressed.len() != UNCOMPRESSED_PUBLIC_KEY_LEN || uncompressed[0] != 0x04 {
        return Err(RideCodeError::BadPublicKey(
            "expected 65 bytes starting with 0x04",
        ));
    }
    let point = affine_point(uncompressed)?;
    let encoded = point.to_encoded_point(true);
    let mut out = [0u8; COMPRESSED_PUBLIC_KEY_LEN];
    out.copy_from_slice(encoded.as_bytes());
    Ok(out)
}

/// Decompresses a compressed SEC1 P-256 public key to the 65-byte uncompressed form `ring`
/// verifies with; errors if the prefix is not `0x02`/`0x03` or x is not on the curve.
pub fn decompress_public_key(
    compressed: &[u8; COMPRESSED_PUBLIC_KEY_LEN],
) -> Result<[u8; UNCOMPRESSED_PUBLIC_KEY_LEN], RideCodeError> {
    if compressed[0] != 0x02 && compressed[0] != 0x03 {
        return Err(RideCodeError::BadPublicKey(
            "expected 33 bytes starting with 0x02 or 0x03",
        ));
    }
    let point = affine_point(compressed)?;
    let encoded = point.to_encoded_point(false);
    let mut out = [0u8; UNCOMPRESSED_PUBLIC_KEY_LEN];
    out.copy_from_slice(encoded.as_bytes());
    Ok(out)
}

/// Accepts a device public key in either SEC1 form (33-byte compressed or 65-byte uncompressed),
/// checks it is a valid point and returns the compressed form a credential carries. For
/// enrolment, where devices may send either.
pub fn parse_device_public_key(
    bytes: &[u8],
) -> Result<[u8; COMPRESSED_PUBLIC_KEY_LEN], RideCodeError> {
    match bytes.len() {
        UNCOMPRESSED_PUBLIC_KEY_LEN => compress_public_key(bytes),
        COMPRESSED_PUBLIC_KEY_LEN => {
            let mut c = [0u8; COMPRESSED_PUBLIC_KEY_LEN];
            c.copy_from_slice(bytes);
            decompress_public_key(&c)?;
            Ok(c)
        }
        _ => Err(RideCodeError::BadPublicKey(
            "expected 33 (compressed) or 65 (uncompressed) bytes",
        )),
    }
}

fn affine_point(sec1: &[u8]) -> Result<p256::AffinePoint, RideCodeError> {
    let encoded = p256::EncodedPoint::from_bytes(sec1)
        .map_err(|_| RideCodeError::BadPublicKey("not a SEC1 encoding"))?;
    Option::from(p256::AffinePoint::from_encoded_point(&encoded)).ok_or(
        RideCodeError::BadPublicKey("point is not on the P-256 curve"),
    )
}

fn load_key_pair(pkcs8: &[u8], rng: &SystemRandom) -> Result<EcdsaKeyPair, RideCodeError> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, rng)
        .map_err(|_| RideCodeError::BadPkcs8)
}

fn generate_pkcs8(rng: &SystemRandom) -> Result<Vec<u8>, RideCodeError> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
        .map(|doc| doc.as_ref().to_vec())
        .map_err(|_| RideCodeError::Rng)
}

fn sign(
    key_pair: &EcdsaKeyPair,
    rng: &SystemRandom,
    message: &[u8],
) -> Result<[u8; SIGNATURE_LEN], RideCodeError> {
    let sig = key_pair
        .sign(rng, message)
        .map_err(|_| RideCodeError::Signing)?;
    <[u8; SIGNATURE_LEN]>::try_from(sig.as_ref()).map_err(|_| RideCodeError::Signing)
}

/// What an issuer is asked to sign: a credential body without the issuer key id, which the
/// issuing key fills in with its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRequest {
    /// Unique per credential (the deny list names it).
    pub credential_id: u64,
    /// The rider account.
    pub rider_id: u64,
    /// Start of validity, unix seconds, inclusive.
    pub valid_from_s: u32,
    /// End of validity, unix seconds, exclusive; at most [`MAX_CREDENTIAL_VALIDITY_S`] after
    /// `valid_from_s`.
    pub valid_until_s: u32,
    /// Products allowed; at least one.
    pub products: ProductFlags,
    /// The device key, compressed (see [`parse_device_public_key`] to accept either form).
    pub device_public_key: [u8; COMPRESSED_PUBLIC_KEY_LEN],
}

/// A Turnpike issuer signing key with its key id.
pub struct IssuerKeyPair {
    key_id: u16,
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl IssuerKeyPair {
    /// Generates a new private key as a PKCS#8 document, to be stored by the caller and loaded
    /// with [`IssuerKeyPair::from_pkcs8`].
    pub fn generate_pkcs8() -> Result<Vec<u8>, RideCodeError> {
        generate_pkcs8(&SystemRandom::new())
    }

    /// Loads a key from PKCS#8 (as made by [`IssuerKeyPair::generate_pkcs8`]) under `key_id`.
    pub fn from_pkcs8(key_id: u16, pkcs8: &[u8]) -> Result<IssuerKeyPair, RideCodeError> {
        let rng = SystemRandom::new();
        let key_pair = load_key_pair(pkcs8, &rng)?;
        Ok(IssuerKeyPair {
            key_id,
            key_pair,
            rng,
        })
    }

    /// The key id written into every credential this key issues.
    pub fn key_id(&self) -> u16 {
        self.key_id
    }

    /// The public half, for verifiers.
    pub fn public_key(&self) -> IssuerPublicKey {
        let mut public_key = [0u8; UNCOMPRESSED_PUBLIC_KEY_LEN];
        // ring's P-256 public keys are always 65-byte uncompressed points.
        public_key.copy_from_slice(self.key_pair.public_key().as_ref());
        IssuerPublicKey {
            key_id: self.key_id,
            public_key,
        }
    }

    /// Issues a credential, refusing an empty or over-long validity window, no products, or a
    /// device key that is not a valid point (so a signed credential is always usable).
    pub fn issue(&self, request: &CredentialRequest) -> Result<Credential, RideCodeError> {
        let validity_s = request
            .valid_until_s
            .checked_sub(request.valid_from_s)
            .filter(|&s| s > 0)
            .ok_or(RideCodeError::EmptyValidity {
                valid_from_s: request.valid_from_s,
                valid_until_s: request.valid_until_s,
            })?;
        if validity_s > MAX_CREDENTIAL_VALIDITY_S {
            return Err(RideCodeError::ValidityTooLong {
                validity_s,
                max_s: MAX_CREDENTIAL_VALIDITY_S,
            });
        }
        if request.products.is_empty() {
            return Err(RideCodeError::NoProducts);
        }
        decompress_public_key(&request.device_public_key)?;
        let body = CredentialBody {
            issuer_key_id: self.key_id,
            credential_id: request.credential_id,
            rider_id: request.rider_id,
            valid_from_s: request.valid_from_s,
            valid_until_s: request.valid_until_s,
            products: request.products,
            device_public_key: request.device_public_key,
        };
        let signature = sign(&self.key_pair, &self.rng, &body.signing_input())?;
        Ok(Credential::from_parts(body, signature))
    }
}

impl fmt::Debug for IssuerKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerKeyPair")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// An issuer public key as verifiers hold it: key id and 65-byte uncompressed P-256 point.
///
/// Serde form: `{"key_id": 1, "public_key": "04…"}` with the key in hex; deserialization also
/// accepts base64 (standard or url-safe, padded or not) and the 33-byte compressed form, and
/// always checks that the point is on the curve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IssuerPublicKey {
    key_id: u16,
    public_key: [u8; UNCOMPRESSED_PUBLIC_KEY_LEN],
}

impl IssuerPublicKey {
    /// Builds a verifier key from a SEC1 point in either form (validated, stored uncompressed).
    pub fn new(key_id: u16, sec1_public_key: &[u8]) -> Result<IssuerPublicKey, RideCodeError> {
        let compressed = parse_device_public_key(sec1_public_key)?;
        Ok(IssuerPublicKey {
            key_id,
            public_key: decompress_public_key(&compressed)?,
        })
    }

    /// The key id credentials name.
    pub fn key_id(&self) -> u16 {
        self.key_id
    }

    /// The 65-byte uncompressed point.
    pub fn public_key(&self) -> &[u8; UNCOMPRESSED_PUBLIC_KEY_LEN] {
        &self.public_key
    }

    /// The key as lower-case hex of the uncompressed point (130 characters).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerPublicKeyText {
    key_id: u16,
    public_key: String,
}

impl Serialize for IssuerPublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        IssuerPublicKeyText {
            key_id: self.key_id,
            public_key: self.public_key_hex(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for IssuerPublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = IssuerPublicKeyText::deserialize(deserializer)?;
        let bytes = decode_key_text(&text.public_key).ok_or_else(|| {
            serde::de::Error::custom("public_key: expected hex or base64 of a SEC1 P-256 point")
        })?;
        IssuerPublicKey::new(text.key_id, &bytes).map_err(serde::de::Error::custom)
    }
}

/// Hex first (the canonical form), then the base64 variants; only lengths of a SEC1 point count
/// as a match, so a string that happens to be valid in two alphabets is not misread.
fn decode_key_text(text: &str) -> Option<Vec<u8>> {
    let is_point_len = |b: &Vec<u8>| {
        b.len() == COMPRESSED_PUBLIC_KEY_LEN || b.len() == UNCOMPRESSED_PUBLIC_KEY_LEN
    };
    if let Some(b) = hex::decode(text).ok().filter(is_point_len) {
        return Some(b);
    }
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok().filter(is_point_len))
}

/// A rider device's signing key (in production it lives in the phone's secure element; this
/// type is for the terminal simulator, tests and tools).
pub struct DeviceKeyPair {
    key_pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    public_key_compressed: [u8; COMPRESSED_PUBLIC_KEY_LEN],
    rng: SystemRandom,
}

impl DeviceKeyPair {
    /// Generates a new device key.
    pub fn generate() -> Result<DeviceKeyPair, RideCodeError> {
        let pkcs8 = generate_pkcs8(&SystemRandom::new())?;
        DeviceKeyPair::from_pkcs8(&pkcs8)
    }

    /// Loads a device key from PKCS#8 (as returned by [`DeviceKeyPair::pkcs8`]).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<DeviceKeyPair, RideCodeError> {
        let rng = SystemRandom::new();
        let key_pair = load_key_pair(pkcs8, &rng)?;
        let public_key_compressed = compress_public_key(key_pair.public_key().as_ref())?;
        Ok(DeviceKeyPair {
            key_pair,
            pkcs8: pkcs8.to_vec(),
            public_key_compressed,
            rng,
        })
    }

    /// The private key as PKCS#8, so a simulator can store it. Secret: never log it.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key in the 33-byte compressed form a credential carries.
    pub fn public_key_compressed(&self) -> [u8; COMPRESSED_PUBLIC_KEY_LEN] {
        self.public_key_compressed
    }

    /// The public key in the 65-byte uncompressed form.
    pub fn public_key_uncompressed(&self) -> [u8; UNCOMPRESSED_PUBLIC_KEY_LEN] {
        let mut out = [0u8; UNCOMPRESSED_PUBLIC_KEY_LEN];
        out.copy_from_slice(self.key_pair.public_key().as_ref());
        out
    }

    /// Makes a ride code for display. `generated_at_ms` is the device's clock; `nonce` must be
    /// random per code. Errors if the credential is bound to another device key.
    pub fn ride_code(
        &self,
        credential: &Credential,
        generated_at_ms: u64,
        nonce: u64,
    ) -> Result<RideCode, RideCodeError> {
        if credential.body().device_public_key != self.public_key_compressed {
            return Err(RideCodeError::DeviceKeyMismatch);
        }
        let unsigned = RideCode::unsigned_bytes(credential, generated_at_ms, nonce);
        let message = [super::RIDE_CODE_SIGNING_PREFIX, &unsigned[..]].concat();
        let signature = sign(&self.key_pair, &self.rng, &message)?;
        Ok(RideCode::from_parts(
            credential.clone(),
            generated_at_ms,
            nonce,
            signature,
        ))
    }
}

impl fmt::Debug for DeviceKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeyPair")
            .field(
                "public_key_compressed",
                &hex::encode(self.public_key_compressed),
            )
            .finish_non_exhaustive()
    }
}
