//! Verification of ride codes and credentials: the checks a gate runs offline and the gateway
//! runs online, in one fixed order.
//!
//! The order (documented in `docs/ride-code.md`) puts cheap structural checks before the two
//! ECDSA verifications, and makes every single flipped bit map to one precise
//! [`RejectReason`]. Each signature is verified at most once per call.
//!
//! A verifier may keep a bounded cache of credentials whose issuer signature it has already
//! checked (see [`Verifier::with_credential_cache`]): a rider's phone shows many codes with the
//! same credential, and the gateway should never verify the same thing twice. The cache belongs
//! to one key set; a verifier with other keys starts empty, so a retired key's credentials are
//! never accepted from memory.
//!
//! It deliberately does not remember codes (replays across scans are caught by the gateway's
//! unique constraint on fingerprint and direction), read a clock, or fetch keys and deny lists:
//! callers pass snapshots.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};

use super::format::{
    decode_base64url, fingerprint_of, short_id_of, Credential, CredentialBody, RideCode,
};
use super::keys::{decompress_public_key, IssuerPublicKey, RideCodeError};
use super::{RejectReason, CREDENTIAL_LEN, MAX_CREDENTIAL_VALIDITY_S};

/// Time rules for ride codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// A code older than this at scan time (`scan_time_ms − generated_at_ms > freshness_ms`) is
    /// [`RejectReason::CodeExpired`]. Default 60 000 ms: long enough for a slow queue at a gate,
    /// short enough that a photographed code is soon useless.
    pub freshness_ms: u64,
    /// A code generated more than this after the scan time (device clock ahead of the gate's) is
    /// [`RejectReason::CodeFromFuture`]. Default 5 000 ms of tolerated clock skew; without a
    /// limit a device with a fast clock could mint codes that stay "fresh" for hours.
    pub max_future_skew_ms: u64,
}

impl Default for VerifyPolicy {
    fn default() -> Self {
        VerifyPolicy {
            freshness_ms: 60_000,
            max_future_skew_ms: 5_000,
        }
    }
}

/// A snapshot of revoked credentials and riders (lost phones, blocked accounts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyList {
    /// Denied credential ids (one lost device).
    pub credentials: HashSet<u64>,
    /// Denied rider ids (every credential of the rider).
    pub riders: HashSet<u64>,
}

/// Which deny-list entry matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyHit {
    /// The credential id is denied.
    Credential(u64),
    /// The rider id is denied.
    Rider(u64),
}

impl DenyHit {
    /// The reject reason for this hit.
    pub fn reason(self) -> RejectReason {
        match self {
            DenyHit::Credential(_) => RejectReason::CredentialDenied,
            DenyHit::Rider(_) => RejectReason::RiderDenied,
        }
    }
}

impl DenyList {
    /// An empty deny list.
    pub fn new() -> DenyList {
        DenyList::default()
    }

    /// The first matching entry, credential before rider, or `None`.
    pub fn is_denied(&self, body: &CredentialBody) -> Option<DenyHit> {
        if self.credentials.contains(&body.credential_id) {
            Some(DenyHit::Credential(body.credential_id))
        } else if self.riders.contains(&body.rider_id) {
            Some(DenyHit::Rider(body.rider_id))
        } else {
            None
        }
    }
}

/// A ride code that passed every check. Only [`Verifier::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRideCode {
    code: RideCode,
    fingerprint: [u8; 32],
}

impl VerifiedRideCode {
    /// The decoded code.
    pub fn ride_code(&self) -> &RideCode {
        &self.code
    }

    /// The credential's fields (rider, products, …).
    pub fn credential_body(&self) -> &CredentialBody {
        self.code.credential().body()
    }

    /// When the device generated the code, unix milliseconds.
    pub fn generated_at_ms(&self) -> u64 {
        self.code.generated_at_ms()
    }

    /// The code's nonce.
    pub fn nonce(&self) -> u64 {
        self.code.nonce()
    }

    /// SHA-256 of the code bytes, for the replay constraint.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// First 8 hex characters of the fingerprint, for logs.
    pub fn short_id(&self) -> String {
        short_id_of(&self.fingerprint)
    }
}

/// Verifies ride codes against a set of issuer public keys (current and previous, by key id)
/// and a [`VerifyPolicy`].
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: HashMap<u16, IssuerPublicKey>,
    policy: VerifyPolicy,
    /// Credentials (exact bytes) whose issuer signature verified under `keys`, with their
    /// decompressed device key. Shared by clones.
    credentials: Option<Arc<CredentialCache>>,
}

/// Verified credentials, bounded: when full it is emptied and refills from live traffic, which
/// costs one extra issuer verification per active rider, never a wrong answer.
#[derive(Debug)]
struct CredentialCache {
    entries: Mutex<HashMap<[u8; CREDENTIAL_LEN], [u8; 65]>>,
    capacity: usize,
}

impl Verifier {
    /// A verifier accepting credentials signed by any of `keys`; errors on a repeated key id,
    /// which would otherwise silently shadow one key with another.
    pub fn new(
        keys: impl IntoIterator<Item = IssuerPublicKey>,
        policy: VerifyPolicy,
    ) -> Result<Verifier, RideCodeError> {
        let mut map = HashMap::new();
        for key in keys {
            let id = key.key_id();
            if map.insert(id, key).is_some() {
                return Err(RideCodeError::DuplicateKeyId(id));
            }
        }
        Ok(Verifier {
            keys: map,
            policy,
            credentials: None,
        })
    }

    /// Remembers up to `capacity` verified credentials (about 200 bytes each), so a code whose
    /// credential was seen before costs one ECDSA verification instead of two. Results are
    /// identical with and without the cache. A capacity of 0 disables it.
    pub fn with_credential_cache(mut self, capacity: usize) -> Verifier {
        // Capacity 0 means no cache (every code pays for both verifications).
        self.credentials = (capacity > 0).then(|| {
            Arc::new(CredentialCache {
                entries: Mutex::new(HashMap::new()),
                capacity,
            })
        });
        self
    }

    /// The time rules in force.
    pub fn policy(&self) -> &VerifyPolicy {
        &self.policy
    }

    /// The issuer key ids accepted, sorted.
    pub fn key_ids(&self) -> Vec<u16> {
        let mut ids: Vec<u16> = self.keys.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Verifies a ride code's 206 bytes at `scan_time_ms` (unix milliseconds, the verifier's
    /// clock) against `deny`. Checks, in order, stopping at the first failure:
    ///
    /// 1. length: `Truncated` / `TrailingBytes`
    /// 2. version byte: `UnsupportedVersion`
    /// 3. reserved product bits: `MalformedCredential`
    /// 4. issuer key id known: `UnknownIssuerKey`
    /// 5. issuer signature: `BadIssuerSignature`
    /// 6. device key is a valid point: `BadDevicePublicKey`
    /// 7. device signature: `BadDeviceSignature`
    /// 8. credential validity: `CredentialValidityTooLong`, `CredentialNotYetValid`,
    ///    `CredentialExpired`
    /// 9. freshness: `CodeFromFuture`, `CodeExpired`
    /// 10. deny list: `CredentialDenied`, `RiderDenied`
    pub fn verify(
        &self,
        code_bytes: &[u8],
        scan_time_ms: u64,
        deny: &DenyList,
    ) -> Result<VerifiedRideCode, RejectReason> {
        let code = RideCode::from_bytes(code_bytes)?;
        let credential = code.credential();
        let device_key = self.verified_device_key(credential)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &device_key[..])
            .verify(&code.signing_input(), code.device_signature())
            .map_err(|_| RejectReason::BadDeviceSignature)?;
        check_validity(credential.body(), scan_time_ms / 1000)?;
        self.check_freshness(code.generated_at_ms(), scan_time_ms)?;
        if let Some(hit) = deny.is_denied(credential.body()) {
            return Err(hit.reason());
        }
        let fingerprint = fingerprint_of(code.as_bytes());
        Ok(VerifiedRideCode { code, fingerprint })
    }

    /// [`Verifier::verify`] for the text form carried in JSON (unpadded base64url).
    pub fn verify_base64url(
        &self,
        code_text: &str,
        scan_time_ms: u64,
        deny: &DenyList,
    ) -> Result<VerifiedRideCode, RejectReason> {
        self.verify(&decode_base64url(code_text)?, scan_time_ms, deny)
    }

    /// Verifies a credential alone at `now_s` (unix seconds): issuer key id and signature,
    /// device key validity and the validity window, in the same order as [`Verifier::verify`].
    /// For enrolment (checking what was just issued or presented) and for caches of verified
    /// credentials. The deny list is separate: see [`DenyList::is_denied`].
    pub fn verify_credential(
        &self,
        credential: &Credential,
        now_s: u64,
    ) -> Result<(), RejectReason> {
        self.check_issuer_signature(credential)?;
        device_key_uncompressed(credential.body())?;
        check_validity(credential.body(), now_s)
    }

    /// Steps 4–6 of [`Verifier::verify`], answered from the cache when these exact credential
    /// bytes verified before.
    fn verified_device_key(&self, credential: &Credential) -> Result<[u8; 65], RejectReason> {
        let lock = |cache: &CredentialCache| {
            cache
                .entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(credential.as_bytes())
                .copied()
        };
        if let Some(key) = self.credentials.as_deref().and_then(lock) {
            return Ok(key);
        }
        self.check_issuer_signature(credential)?;
        let key = device_key_uncompressed(credential.body())?;
        if let Some(cache) = &self.credentials {
            let mut entries = cache.entries.lock().unwrap_or_else(|e| e.into_inner());
            if entries.len() >= cache.capacity {
                entries.clear();
            }
            entries.insert(*credential.as_bytes(), key);
        }
        Ok(key)
    }

    fn check_issuer_signature(&self, credential: &Credential) -> Result<(), RejectReason> {
        let key = self
            .keys
            .get(&credential.body().issuer_key_id)
            .ok_or(RejectReason::UnknownIssuerKey)?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.public_key()[..])
            .verify(&credential.signing_input(), credential.issuer_signature())
            .map_err(|_| RejectReason::BadIssuerSignature)
    }

    fn check_freshness(&self, generated_at_ms: u64, scan_time_ms: u64) -> Result<(), RejectReason> {
        if generated_at_ms > scan_time_ms.saturating_add(self.policy.max_future_skew_ms) {
            return Err(RejectReason::CodeFromFuture);
        }
        if scan_time_ms.saturating_sub(generated_at_ms) > self.policy.freshness_ms {
            return Err(RejectReason::CodeExpired);
        }
        Ok(())
    }
}

fn device_key_uncompressed(body: &CredentialBody) -> Result<[u8; 65], RejectReason> {
    decompress_public_key(&body.device_public_key).map_err(|_| RejectReason::BadDevicePublicKey)
}

/// Validity window checks: length first (a property of the credential, whatever the time), then
/// `valid_from_s <= now_s < valid_until_s`. An empty or inverted window needs no rule of its
/// own: no `now_s` satisfies both bounds, so it is reported as not yet valid or expired.
fn check_validity(body: &CredentialBody, now_s: u64) -> Result<(), RejectReason> {
    let span_s = u64::from(body.valid_until_s).saturating_sub(u64::from(body.valid_from_s));
    if span_s > u64::from(MAX_CREDENTIAL_VALIDITY_S) {
        return Err(RejectReason::CredentialValidityTooLong);
    }
    if now_s < u64::from(body.valid_from_s) {
        return Err(RejectReason::CredentialNotYetValid);
    }
    if now_s >= u64::from(body.valid_until_s) {
        return Err(RejectReason::CredentialExpired);
    }
    Ok(())
}
