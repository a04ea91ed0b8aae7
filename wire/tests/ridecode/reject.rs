//! Every reject reason, triggered on purpose, plus key rotation and the reason codes themselves.

use std::collections::HashSet;

use turnpike_wire::ridecode::{
    DenyHit, DenyList, DeviceKeyPair, IssuerKeyPair, RejectReason, RideCode, Verifier,
    VerifyPolicy, CREDENTIAL_LEN, MAX_CREDENTIAL_VALIDITY_S,
};

use crate::common::*;

fn verify(bytes: &[u8], scan_time_ms: u64) -> Result<(), RejectReason> {
    fixture()
        .verifier
        .verify(bytes, scan_time_ms, &no_deny())
        .map(|_| ())
}

#[test]
fn valid_code_verifies() {
    // The fixture's code verifies at its scan time with an empty deny list.
    assert_eq!(verify(&fixture().code.to_bytes(), SCAN_TIME_MS), Ok(()));
}

#[test]
fn bad_encoding() {
    // Text that is not canonical unpadded base64url is BadEncoding, before any byte check.
    let f = fixture();
    let text = f.code.to_base64url();
    for bad in [
        format!("{text}="),
        text.replace('-', "+"),
        format!(" {text}"),
        "!!!!".to_owned(),
    ] {
        if bad == text {
            continue;
        }
        assert_eq!(
            RideCode::from_base64url(&bad).unwrap_err(),
            RejectReason::BadEncoding,
            "{bad}"
        );
    }
    // Non-zero unused bits in the last character make a second spelling of the same bytes.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = text.as_bytes()[text.len() - 1];
    let value = ALPHABET.iter().position(|&c| c == last).unwrap();
    let non_canonical = format!("{}{}", &text[..text.len() - 1], ALPHABET[value ^ 1] as char);
    assert_eq!(
        RideCode::from_base64url(&non_canonical).unwrap_err(),
        RejectReason::BadEncoding
    );
    // 276 characters decode to 207 bytes; 277 is not a possible base64 length.
    assert_eq!(
        RideCode::from_base64url(&format!("{text}A")).unwrap_err(),
        RejectReason::TrailingBytes
    );
    assert_eq!(
        f.verifier
            .verify_base64url(&format!("{text}AA"), SCAN_TIME_MS, &no_deny())
            .unwrap_err(),
        RejectReason::BadEncoding
    );
    assert_eq!(
        f.verifier
            .verify_base64url(&"A".repeat(10_000), SCAN_TIME_MS, &no_deny())
            .unwrap_err(),
        RejectReason::TrailingBytes
    );
    assert_eq!(
        f.verifier
            .verify_base64url("", SCAN_TIME_MS, &no_deny())
            .unwrap_err(),
        RejectReason::Truncated
    );
}

#[test]
fn truncated_and_trailing() {
    // Too few bytes is Truncated, too many is TrailingBytes, for codes and credentials alike.
    let bytes = fixture().code.to_bytes();
    assert_eq!(verify(&[], SCAN_TIME_MS), Err(RejectReason::Truncated));
    assert_eq!(
        verify(&bytes[..205], SCAN_TIME_MS),
        Err(RejectReason::Truncated)
    );
    assert_eq!(
        verify(&bytes[..CREDENTIAL_LEN], SCAN_TIME_MS),
        Err(RejectReason::Truncated)
    );
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert_eq!(
        verify(&longer, SCAN_TIME_MS),
        Err(RejectReason::TrailingBytes)
    );
    let cred = fixture().credential.to_bytes();
    assert_eq!(
        turnpike_wire::ridecode::Credential::from_bytes(&cred[..125]).unwrap_err(),
        RejectReason::Truncated
    );
    assert_eq!(
        turnpike_wire::ridecode::Credential::from_bytes(&bytes).unwrap_err(),
        RejectReason::TrailingBytes
    );
}

#[test]
fn unsupported_version() {
    // Any version byte other than 1 is UnsupportedVersion, even with valid signatures over it.
    for version in [0u8, 2, 0xff] {
        let code = resigned_code(|b| b[0] = version);
        assert_eq!(
            verify(&code, SCAN_TIME_MS),
            Err(RejectReason::UnsupportedVersion)
        );
    }
}

#[test]
fn malformed_credential() {
    // A reserved product bit is MalformedCredential, even when the issuer signed it.
    for bits in [0x0004u16, 0x8000, 0xffff] {
        let code = resigned_code(|b| b[27..29].copy_from_slice(&bits.to_be_bytes()));
        assert_eq!(
            verify(&code, SCAN_TIME_MS),
            Err(RejectReason::MalformedCredential)
        );
    }
}

#[test]
fn unknown_issuer_key() {
    // A credential naming a key id the verifier does not hold is UnknownIssuerKey.
    let code = resigned_code(|b| b[1..3].copy_from_slice(&3u16.to_be_bytes()));
    assert_eq!(
        verify(&code, SCAN_TIME_MS),
        Err(RejectReason::UnknownIssuerKey)
    );
}

#[test]
fn bad_issuer_signature() {
    // A credential signed by another key under the right key id is BadIssuerSignature.
    let f = fixture();
    let impostor = IssuerKeyPair::from_pkcs8(1, &IssuerKeyPair::generate_pkcs8().unwrap()).unwrap();
    let cred = impostor.issue(&request(&f.device)).unwrap();
    let code = f.device.ride_code(&cred, GENERATED_AT_MS, NONCE).unwrap();
    assert_eq!(
        verify(&code.to_bytes(), SCAN_TIME_MS),
        Err(RejectReason::BadIssuerSignature)
    );
}

/// A 33-byte compressed key whose x coordinate is not on the curve.
fn off_curve_compressed_key() -> [u8; 33] {
    (0u8..=255)
        .map(|x| {
            let mut k = [0u8; 33];
            k[0] = 0x02;
            k[32] = x;
            k
        })
        .find(|k| turnpike_wire::ridecode::decompress_public_key(k).is_err())
        .expect("about half of all x are off the curve")
}

#[test]
fn bad_device_public_key() {
    // An issuer-signed credential whose device key is not a valid point is BadDevicePublicKey.
    for key in [off_curve_compressed_key(), {
        let mut k = fixture().device.public_key_compressed();
        k[0] = 0x04;
        k
    }] {
        let code = resigned_code(|b| b[29..62].copy_from_slice(&key));
        assert_eq!(
            verify(&code, SCAN_TIME_MS),
            Err(RejectReason::BadDevicePublicKey)
        );
    }
}

#[test]
fn bad_device_signature() {
    // A code for this device's credential signed by another device is BadDeviceSignature.
    let f = fixture();
    let thief = DeviceKeyPair::generate().unwrap();
    let code = raw_code(
        f.credential.as_bytes(),
        thief.pkcs8(),
        GENERATED_AT_MS,
        NONCE,
    );
    assert_eq!(
        verify(&code, SCAN_TIME_MS),
        Err(RejectReason::BadDeviceSignature)
    );
    // And a replayed credential with a changed timestamp but the old signature.
    let mut bytes = f.code.to_bytes();
    bytes[126..134].copy_from_slice(&(GENERATED_AT_MS + 30_000).to_be_bytes());
    assert_eq!(
        verify(&bytes, SCAN_TIME_MS + 30_000),
        Err(RejectReason::BadDeviceSignature)
    );
}

#[test]
fn credential_validity_too_long() {
    // A signed window longer than 7 days is CredentialValidityTooLong at any scan time.
    let too_long = VALID_FROM_S + MAX_CREDENTIAL_VALIDITY_S + 1;
    let code = resigned_code(|b| b[23..27].copy_from_slice(&too_long.to_be_bytes()));
    assert_eq!(
        verify(&code, SCAN_TIME_MS),
        Err(RejectReason::CredentialValidityTooLong)
    );
    // Exactly 7 days is allowed (the fixture's own window).
    assert_eq!(verify(&fixture().code.to_bytes(), SCAN_TIME_MS), Ok(()));
}

#[test]
fn credential_not_yet_valid_and_expired() {
    // Validity is valid_from_s <= now_s < valid_until_s, checked at the verifier's scan time.
    let f = fixture();
    let from_ms = u64::from(VALID_FROM_S) * 1000;
    let until_ms = u64::from(VALID_UNTIL_S) * 1000;
    let at = |gen_ms: u64| {
        f.device
            .ride_code(&f.credential, gen_ms, NONCE)
            .unwrap()
            .to_bytes()
    };
    assert_eq!(verify(&at(from_ms), from_ms), Ok(()));
    assert_eq!(
        verify(&at(from_ms - 1), from_ms - 1),
        Err(RejectReason::CredentialNotYetValid)
    );
    assert_eq!(verify(&at(until_ms - 1), until_ms - 1), Ok(()));
    assert_eq!(
        verify(&at(until_ms), until_ms),
        Err(RejectReason::CredentialExpired)
    );
    // An inverted window can never be valid; it reports whichever bound fails.
    let inverted = resigned_code(|b| b[23..27].copy_from_slice(&(VALID_FROM_S - 10).to_be_bytes()));
    assert_eq!(
        verify(&inverted, from_ms),
        Err(RejectReason::CredentialExpired)
    );
    assert_eq!(
        verify(&inverted, from_ms - 20_000),
        Err(RejectReason::CredentialNotYetValid)
    );
}

#[test]
fn code_from_future_and_expired() {
    // Codes are accepted from max_future_skew_ms ahead to freshness_ms old, inclusive.
    let bytes = fixture().code.to_bytes();
    let p = VerifyPolicy::default();
    assert_eq!(p.freshness_ms, 60_000);
    assert_eq!(p.max_future_skew_ms, 5_000);
    assert_eq!(
        verify(&bytes, GENERATED_AT_MS - p.max_future_skew_ms),
        Ok(())
    );
    assert_eq!(
        verify(&bytes, GENERATED_AT_MS - p.max_future_skew_ms - 1),
        Err(RejectReason::CodeFromFuture)
    );
    assert_eq!(verify(&bytes, GENERATED_AT_MS + p.freshness_ms), Ok(()));
    assert_eq!(
        verify(&bytes, GENERATED_AT_MS + p.freshness_ms + 1),
        Err(RejectReason::CodeExpired)
    );
    // A stricter policy applies its own numbers.
    let f = fixture();
    let strict = Verifier::new(
        [f.issuer.public_key()],
        VerifyPolicy {
            freshness_ms: 10_000,
            max_future_skew_ms: 0,
        },
    )
    .unwrap();
    assert_eq!(
        strict
            .verify(&bytes, GENERATED_AT_MS + 10_001, &no_deny())
            .unwrap_err(),
        RejectReason::CodeExpired
    );
    assert_eq!(
        strict
            .verify(&bytes, GENERATED_AT_MS - 1, &no_deny())
            .unwrap_err(),
        RejectReason::CodeFromFuture
    );
}

#[test]
fn extreme_times_do_not_overflow() {
    // Scan times and generation times at the ends of u64 give a reason, never an overflow panic.
    let f = fixture();
    let old = f
        .device
        .ride_code(&f.credential, 0, NONCE)
        .unwrap()
        .to_bytes();
    let late = f
        .device
        .ride_code(&f.credential, u64::MAX, NONCE)
        .unwrap()
        .to_bytes();
    assert_eq!(verify(&old, 0), Err(RejectReason::CredentialNotYetValid));
    assert_eq!(
        verify(&late, u64::MAX),
        Err(RejectReason::CredentialExpired)
    );
    assert_eq!(
        verify(&late, SCAN_TIME_MS),
        Err(RejectReason::CodeFromFuture)
    );
    assert_eq!(verify(&old, SCAN_TIME_MS), Err(RejectReason::CodeExpired));
}

#[test]
fn deny_list() {
    // A denied credential or rider is refused after every other check passed; credential first.
    let f = fixture();
    let bytes = f.code.to_bytes();
    let mut deny = DenyList::new();
    deny.riders.insert(RIDER_ID);
    assert_eq!(
        f.verifier.verify(&bytes, SCAN_TIME_MS, &deny).unwrap_err(),
        RejectReason::RiderDenied
    );
    deny.credentials.insert(CREDENTIAL_ID);
    assert_eq!(
        f.verifier.verify(&bytes, SCAN_TIME_MS, &deny).unwrap_err(),
        RejectReason::CredentialDenied
    );
    assert_eq!(
        deny.is_denied(f.credential.body()),
        Some(DenyHit::Credential(CREDENTIAL_ID))
    );
    let others = DenyList {
        credentials: HashSet::from([CREDENTIAL_ID + 1]),
        riders: HashSet::from([RIDER_ID + 1]),
    };
    assert!(f.verifier.verify(&bytes, SCAN_TIME_MS, &others).is_ok());
    // The deny list is the last check: a stale denied code is reported as stale.
    assert_eq!(
        f.verifier
            .verify(&bytes, SCAN_TIME_MS + 600_000, &deny)
            .unwrap_err(),
        RejectReason::CodeExpired
    );
}

#[test]
fn key_rotation() {
    // A verifier holding keys 1 and 2 accepts credentials from both and rejects key id 3.
    let f = fixture();
    let key =
        |id| IssuerKeyPair::from_pkcs8(id, &IssuerKeyPair::generate_pkcs8().unwrap()).unwrap();
    let (k2, k3) = (key(2), key(3));
    let verifier = Verifier::new(
        [f.issuer.public_key(), k2.public_key()],
        VerifyPolicy::default(),
    )
    .unwrap();
    assert_eq!(verifier.key_ids(), vec![1, 2]);
    for (issuer, expected) in [
        (&f.issuer, Ok(())),
        (&k2, Ok(())),
        (&k3, Err(RejectReason::UnknownIssuerKey)),
    ] {
        let cred = issuer.issue(&request(&f.device)).unwrap();
        assert_eq!(cred.body().issuer_key_id, issuer.key_id());
        let code = f.device.ride_code(&cred, GENERATED_AT_MS, NONCE).unwrap();
        assert_eq!(
            verifier
                .verify(&code.to_bytes(), SCAN_TIME_MS, &no_deny())
                .map(|_| ()),
            expected,
            "key id {}",
            issuer.key_id()
        );
    }
    // A credential claiming key 2 but signed by key 1 fails the signature, not the lookup.
    let cred = resigned_code(|b| b[1..3].copy_from_slice(&2u16.to_be_bytes()));
    assert_eq!(
        verifier
            .verify(&cred, SCAN_TIME_MS, &no_deny())
            .unwrap_err(),
        RejectReason::BadIssuerSignature
    );
}

#[test]
fn reason_codes_are_unique_snake_case_and_round_trip() {
    // Every reason has a distinct snake_case code that maps back to it, and a message.
    let codes: HashSet<&str> = RejectReason::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(codes.len(), RejectReason::ALL.len());
    for r in RejectReason::ALL {
        let code = r.code();
        assert!(
            code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{code}"
        );
        assert_eq!(RejectReason::from_code(code), Some(r));
        assert!(!r.to_string().is_empty());
    }
    assert_eq!(RejectReason::from_code("nope"), None);
    for required in [
        "code_truncated",
        "code_trailing_bytes",
        "unsupported_version",
        "malformed_credential",
        "unknown_issuer_key",
        "bad_issuer_signature",
        "bad_device_public_key",
        "bad_device_signature",
        "credential_not_yet_valid",
        "credential_expired",
        "credential_validity_too_long",
        "code_expired",
        "code_from_future",
        "credential_denied",
        "rider_denied",
    ] {
        assert!(codes.contains(required), "{required}");
    }
}
