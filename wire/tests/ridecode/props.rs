//! Properties over corrupted input: every flipped bit, truncation, extension and random bytes
//! give an error with the reason the byte's position predicts, and never a panic or an `Ok`.

use proptest::prelude::*;
use turnpike_wire::ridecode::{RejectReason, RideCode, RIDE_CODE_LEN};

use crate::common::*;

/// The reason a single flipped bit must produce, from the layout and the check order, for a
/// verifier holding only issuer key 1 (a flipped bit in key id 1 never gives another known id).
fn expected_reason(byte: usize, bit: u8) -> RejectReason {
    let mask = 1u8 << bit;
    match byte {
        0 => RejectReason::UnsupportedVersion,
        1 | 2 => RejectReason::UnknownIssuerKey,
        // Products: byte 27 holds bits 8..15, all reserved; byte 28 bits 2..7 are reserved.
        27 => RejectReason::MalformedCredential,
        28 if mask & 0b11 == 0 => RejectReason::MalformedCredential,
        // The rest of the credential, including device key and issuer signature, is covered by
        // the issuer signature, which is checked before the device key is even decompressed.
        3..=125 => RejectReason::BadIssuerSignature,
        // generated_at, nonce and the device signature are covered by the device signature.
        _ => RejectReason::BadDeviceSignature,
    }
}

fn flipped(byte: usize, bit: u8) -> Vec<u8> {
    let mut bytes = fixture().code.to_bytes().to_vec();
    bytes[byte] ^= 1 << bit;
    bytes
}

#[test]
fn every_single_bit_flip_is_rejected_with_the_predicted_reason() {
    // Exhaustively, each of the 1648 single-bit corruptions of a valid code gets its precise reason.
    let f = fixture();
    for byte in 0..RIDE_CODE_LEN {
        for bit in 0..8 {
            let got = f
                .verifier
                .verify(&flipped(byte, bit), SCAN_TIME_MS, &no_deny());
            assert_eq!(
                got.map(|_| ()),
                Err(expected_reason(byte, bit)),
                "byte {byte} bit {bit}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn flipped_bit_gives_predicted_reason(byte in 0..RIDE_CODE_LEN, bit in 0u8..8) {
        // A single flipped bit anywhere is an Err whose reason matches the flipped field.
        let got = fixture().verifier.verify(&flipped(byte, bit), SCAN_TIME_MS, &no_deny());
        prop_assert_eq!(got.map(|_| ()), Err(expected_reason(byte, bit)));
    }

    #[test]
    fn any_truncation_is_truncated(len in 0..RIDE_CODE_LEN) {
        // Every proper prefix of a valid code is Truncated.
        let bytes = fixture().code.to_bytes();
        let got = fixture().verifier.verify(&bytes[..len], SCAN_TIME_MS, &no_deny());
        prop_assert_eq!(got.map(|_| ()), Err(RejectReason::Truncated));
        prop_assert_eq!(RideCode::from_bytes(&bytes[..len]).map(|_| ()), Err(RejectReason::Truncated));
    }

    #[test]
    fn any_extension_is_trailing_bytes(extra in proptest::collection::vec(any::<u8>(), 1..200)) {
        // A valid code followed by any bytes is TrailingBytes.
        let mut bytes = fixture().code.to_bytes().to_vec();
        bytes.extend_from_slice(&extra);
        let got = fixture().verifier.verify(&bytes, SCAN_TIME_MS, &no_deny());
        prop_assert_eq!(got.map(|_| ()), Err(RejectReason::TrailingBytes));
    }

    #[test]
    fn random_bytes_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        // Arbitrary byte strings are an Err, never Ok, never a panic.
        prop_assert!(fixture().verifier.verify(&bytes, SCAN_TIME_MS, &no_deny()).is_err());
    }

    #[test]
    fn random_well_formed_prefix_is_rejected(mut bytes in proptest::collection::vec(any::<u8>(), RIDE_CODE_LEN)) {
        // Random 206-byte strings with version 1, known key id and valid products still fail, at a signature.
        bytes[0] = 1;
        bytes[1] = 0;
        bytes[2] = 1;
        bytes[27] = 0;
        bytes[28] &= 0b11;
        let got = fixture().verifier.verify(&bytes, SCAN_TIME_MS, &no_deny());
        prop_assert_eq!(got.map(|_| ()), Err(RejectReason::BadIssuerSignature));
    }

    #[test]
    fn random_text_is_rejected(text in "\\PC{0,400}") {
        // Arbitrary text is an Err from the base64url entry point, never a panic.
        prop_assert!(fixture().verifier.verify_base64url(&text, SCAN_TIME_MS, &no_deny()).is_err());
    }
}

#[test]
fn the_credential_cache_never_changes_an_answer() {
    // With a warm credential cache, every single-bit corruption still gets the same reason as
    // without it, and the valid code still verifies.
    let f = fixture();
    let cached = f.verifier.clone().with_credential_cache(16);
    assert!(cached
        .verify(&f.code.to_bytes(), SCAN_TIME_MS, &no_deny())
        .is_ok());
    for byte in 0..RIDE_CODE_LEN {
        for bit in 0..8 {
            let bytes = flipped(byte, bit);
            assert_eq!(
                cached.verify(&bytes, SCAN_TIME_MS, &no_deny()).map(|_| ()),
                Err(expected_reason(byte, bit)),
                "byte {byte} bit {bit}"
            );
        }
    }
    assert!(cached
        .verify(&f.code.to_bytes(), SCAN_TIME_MS, &no_deny())
        .is_ok());
    // A verifier for another key set does not share the cache: the same credential is unknown.
    let other = turnpike_wire::ridecode::IssuerKeyPair::from_pkcs8(
        2,
        &turnpike_wire::ridecode::IssuerKeyPair::generate_pkcs8().unwrap(),
    )
    .unwrap();
    let rotated = turnpike_wire::ridecode::Verifier::new([other.public_key()], Default::default())
        .unwrap()
        .with_credential_cache(16);
    assert_eq!(
        rotated
            .verify(&f.code.to_bytes(), SCAN_TIME_MS, &no_deny())
            .map(|_| ()),
        Err(RejectReason::UnknownIssuerKey)
    );
}
