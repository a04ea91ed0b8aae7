//! The ride-code decoder and verifier: bytes or text from a gate's scanner, verified against a
//! fixed issuer key. Must never panic; the only acceptance is a genuinely signed code. Inputs
//! of a code's length are also applied as an XOR mask over a valid code, so mutations explore
//! near-valid codes (every field, both signatures), not only noise.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use turnpike_wire::ridecode::{
    CredentialRequest, DenyList, DeviceKeyPair, IssuerKeyPair, ProductFlags, Verifier, VerifyPolicy,
};

const NOW_MS: u64 = 1_767_312_000_000;

struct Fixture {
    verifier: Verifier,
    valid: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let issuer =
            IssuerKeyPair::from_pkcs8(1, &IssuerKeyPair::generate_pkcs8().unwrap()).unwrap();
        let device = DeviceKeyPair::generate().unwrap();
        let credential = issuer
            .issue(&CredentialRequest {
                credential_id: 7,
                rider_id: 42,
                valid_from_s: (NOW_MS / 1000) as u32 - 60,
                valid_until_s: (NOW_MS / 1000) as u32 + 86_400,
                products: ProductFlags::METRO,
                device_public_key: device.public_key_compressed(),
            })
            .unwrap();
        let code = device.ride_code(&credential, NOW_MS - 1_000, 99).unwrap();
        let verifier = Verifier::new([issuer.public_key()], VerifyPolicy::default()).unwrap();
        let valid = code.as_bytes().to_vec();
        assert!(verifier.verify(&valid, NOW_MS, &DenyList::new()).is_ok());
        Fixture { verifier, valid }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let deny = DenyList::new();
    let _ = f.verifier.verify(data, NOW_MS, &deny);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = f.verifier.verify_base64url(text, NOW_MS, &deny);
    }
    if data.len() == f.valid.len() {
        let mutated: Vec<u8> = f.valid.iter().zip(data).map(|(v, m)| v ^ m).collect();
        let accepted = f.verifier.verify(&mutated, NOW_MS, &deny).is_ok();
        // A changed code is accepted only if the change is nothing at all.
        assert!(
            !accepted || mutated == f.valid,
            "a tampered code was accepted"
        );
    }
});
