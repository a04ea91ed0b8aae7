//! Shared fixtures: fixed times, key pairs, a valid credential and code, and raw signing helpers
//! that bypass the issuer's and device's own checks so tests can build deliberately bad codes.

use std::sync::OnceLock;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use turnpike_wire::ridecode::{
    Credential, CredentialRequest, DenyList, DeviceKeyPair, IssuerKeyPair, ProductFlags, RideCode,
    Verifier, VerifyPolicy, CREDENTIAL_BODY_LEN, CREDENTIAL_LEN, CREDENTIAL_SIGNING_PREFIX,
    RIDE_CODE_BODY_LEN, RIDE_CODE_LEN, RIDE_CODE_SIGNING_PREFIX,
};

/// 2026-01-01T00:00:00Z.
pub const VALID_FROM_S: u32 = 1_767_225_600;
/// Seven days later, the longest window allowed.
pub const VALID_UNTIL_S: u32 = VALID_FROM_S + 7 * 24 * 3600;
/// 2026-01-01T09:00:00Z, when the device made the code.
pub const GENERATED_AT_MS: u64 = 1_767_258_000_000;
/// 1.5 s later, when the gate scanned it.
pub const SCAN_TIME_MS: u64 = GENERATED_AT_MS + 1_500;
pub const CREDENTIAL_ID: u64 = 4242;
pub const RIDER_ID: u64 = 1001;
pub const NONCE: u64 = 0x1122_3344_5566_7788;

pub struct Fixture {
    pub issuer_pkcs8: Vec<u8>,
    pub issuer: IssuerKeyPair,
    pub device: DeviceKeyPair,
    pub credential: Credential,
    pub code: RideCode,
    /// Holds only issuer key 1.
    pub verifier: Verifier,
}

/// One fixture per test binary: key generation and signing are done once.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let issuer_pkcs8 = IssuerKeyPair::generate_pkcs8().unwrap();
        let issuer = IssuerKeyPair::from_pkcs8(1, &issuer_pkcs8).unwrap();
        let device = DeviceKeyPair::generate().unwrap();
        let credential = issuer.issue(&request(&device)).unwrap();
        let code = device
            .ride_code(&credential, GENERATED_AT_MS, NONCE)
            .unwrap();
        let verifier = Verifier::new([issuer.public_key()], VerifyPolicy::default()).unwrap();
        Fixture {
            issuer_pkcs8,
            issuer,
            device,
            credential,
            code,
            verifier,
        }
    })
}

pub fn request(device: &DeviceKeyPair) -> CredentialRequest {
    CredentialRequest {
        credential_id: CREDENTIAL_ID,
        rider_id: RIDER_ID,
        valid_from_s: VALID_FROM_S,
        valid_until_s: VALID_UNTIL_S,
        products: ProductFlags::METRO | ProductFlags::TOLL,
        device_public_key: device.public_key_compressed(),
    }
}

pub fn no_deny() -> DenyList {
    DenyList::default()
}

fn raw_sign(pkcs8: &[u8], message: &[u8]) -> [u8; 64] {
    let rng = SystemRandom::new();
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).unwrap();
    kp.sign(&rng, message).unwrap().as_ref().try_into().unwrap()
}

/// Signs arbitrary credential bytes 0..62 with an issuer key, with no validation at all.
pub fn raw_credential(
    issuer_pkcs8: &[u8],
    unsigned: &[u8; CREDENTIAL_BODY_LEN],
) -> [u8; CREDENTIAL_LEN] {
    let sig = raw_sign(
        issuer_pkcs8,
        &[CREDENTIAL_SIGNING_PREFIX, &unsigned[..]].concat(),
    );
    let mut out = [0u8; CREDENTIAL_LEN];
    out[..CREDENTIAL_BODY_LEN].copy_from_slice(unsigned);
    out[CREDENTIAL_BODY_LEN..].copy_from_slice(&sig);
    out
}

/// Builds ride-code bytes around arbitrary credential bytes, signed by `device_pkcs8`.
pub fn raw_code(
    credential: &[u8; CREDENTIAL_LEN],
    device_pkcs8: &[u8],
    generated_at_ms: u64,
    nonce: u64,
) -> [u8; RIDE_CODE_LEN] {
    let mut out = [0u8; RIDE_CODE_LEN];
    out[..CREDENTIAL_LEN].copy_from_slice(credential);
    out[126..134].copy_from_slice(&generated_at_ms.to_be_bytes());
    out[134..142].copy_from_slice(&nonce.to_be_bytes());
    let sig = raw_sign(
        device_pkcs8,
        &[RIDE_CODE_SIGNING_PREFIX, &out[..RIDE_CODE_BODY_LEN]].concat(),
    );
    out[RIDE_CODE_BODY_LEN..].copy_from_slice(&sig);
    out
}

/// Re-signs the fixture's credential with `edit` applied to its unsigned bytes, then signs a code
/// for it with the fixture's device: every signature valid, only the edited field differs.
pub fn resigned_code(edit: impl FnOnce(&mut [u8; CREDENTIAL_BODY_LEN])) -> [u8; RIDE_CODE_LEN] {
    let f = fixture();
    let mut unsigned = f.credential.body().to_unsigned_bytes();
    edit(&mut unsigned);
    let cred = raw_credential(&f.issuer_pkcs8, &unsigned);
    raw_code(&cred, f.device.pkcs8(), GENERATED_AT_MS, NONCE)
}
