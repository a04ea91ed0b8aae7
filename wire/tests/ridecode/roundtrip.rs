//! Encoding and decoding round trips, keys and the producing side's own refusals.

use turnpike_wire::ridecode::{
    compress_public_key, decompress_public_key, parse_device_public_key, Credential,
    CredentialRequest, DeviceKeyPair, IssuerKeyPair, IssuerPublicKey, ProductFlags, RejectReason,
    RideCode, RideCodeError, Verifier, VerifyPolicy, CREDENTIAL_LEN, MAX_CREDENTIAL_VALIDITY_S,
    RIDE_CODE_BASE64URL_LEN, RIDE_CODE_LEN,
};

use crate::common::*;

#[test]
fn credential_round_trips_through_bytes() {
    // A credential decodes to exactly the fields it was issued with and re-encodes to the same bytes.
    let f = fixture();
    let bytes = f.credential.to_bytes();
    assert_eq!(bytes.len(), CREDENTIAL_LEN);
    assert_eq!(bytes[0], 1);
    let back = Credential::from_bytes(&bytes).unwrap();
    assert_eq!(back, f.credential);
    let body = back.body();
    assert_eq!(body.issuer_key_id, 1);
    assert_eq!(body.credential_id, CREDENTIAL_ID);
    assert_eq!(body.rider_id, RIDER_ID);
    assert_eq!(body.valid_from_s, VALID_FROM_S);
    assert_eq!(body.valid_until_s, VALID_UNTIL_S);
    assert!(body.products.contains(ProductFlags::METRO));
    assert!(body.products.contains(ProductFlags::TOLL));
    assert_eq!(body.device_public_key, f.device.public_key_compressed());
    assert_eq!(body.validity_s(), Some(MAX_CREDENTIAL_VALIDITY_S));
}

#[test]
fn ride_code_round_trips_through_bytes_and_text() {
    // A ride code survives bytes and base64url text unchanged, and verifies after both.
    let f = fixture();
    let bytes = f.code.to_bytes();
    assert_eq!(bytes.len(), RIDE_CODE_LEN);
    assert_eq!(&bytes[..CREDENTIAL_LEN], f.credential.as_bytes());
    let back = RideCode::from_bytes(&bytes).unwrap();
    assert_eq!(back, f.code);
    assert_eq!(back.generated_at_ms(), GENERATED_AT_MS);
    assert_eq!(back.nonce(), NONCE);
    let text = f.code.to_base64url();
    assert_eq!(text.len(), RIDE_CODE_BASE64URL_LEN);
    assert!(!text.contains(['=', '+', '/']));
    assert_eq!(RideCode::from_base64url(&text).unwrap(), f.code);
    let verified = f
        .verifier
        .verify_base64url(&text, SCAN_TIME_MS, &no_deny())
        .unwrap();
    assert_eq!(verified.ride_code(), &f.code);
    assert_eq!(verified.credential_body().rider_id, RIDER_ID);
    assert_eq!(verified.generated_at_ms(), GENERATED_AT_MS);
    assert_eq!(verified.nonce(), NONCE);
}

#[test]
fn fingerprint_is_sha256_of_bytes_and_short_id_its_prefix() {
    // The replay fingerprint is SHA-256 of the 206 bytes; short_id is its first 8 hex digits.
    let f = fixture();
    let expected = ring::digest::digest(&ring::digest::SHA256, &f.code.to_bytes());
    assert_eq!(&f.code.fingerprint()[..], expected.as_ref());
    assert_eq!(f.code.short_id(), hex::encode(&expected.as_ref()[..4]));
    let verified = f
        .verifier
        .verify(&f.code.to_bytes(), SCAN_TIME_MS, &no_deny())
        .unwrap();
    assert_eq!(verified.fingerprint(), f.code.fingerprint());
    assert_eq!(verified.short_id(), f.code.short_id());
    // Two codes from the same credential differ (randomized signature, nonce), so do fingerprints.
    let other = f
        .device
        .ride_code(&f.credential, GENERATED_AT_MS, NONCE + 1)
        .unwrap();
    assert_ne!(other.fingerprint(), f.code.fingerprint());
}

#[test]
fn debug_output_does_not_contain_the_code() {
    // Debug of a code shows its short id, never the bytes or text a thief could replay.
    let f = fixture();
    let dbg = format!("{:?}", f.code);
    assert!(dbg.contains(&f.code.short_id()));
    assert!(!dbg.contains(&f.code.to_base64url()[..20]));
    assert!(!dbg.contains(&hex::encode(&f.code.device_signature()[..8])));
    let device_dbg = format!("{:?}", f.device);
    assert!(!device_dbg.contains(&hex::encode(f.device.pkcs8())[40..60]));
}

#[test]
fn point_compression_round_trips() {
    // Compressing ring's uncompressed key and decompressing it again gives the same point.
    let f = fixture();
    let uncompressed = f.device.public_key_uncompressed();
    let compressed = compress_public_key(&uncompressed).unwrap();
    assert_eq!(compressed, f.device.public_key_compressed());
    assert_eq!(compressed[0], 0x02 | (uncompressed[64] & 1));
    assert_eq!(&compressed[1..], &uncompressed[1..33]);
    assert_eq!(decompress_public_key(&compressed).unwrap(), uncompressed);
    assert_eq!(parse_device_public_key(&uncompressed).unwrap(), compressed);
    assert_eq!(parse_device_public_key(&compressed).unwrap(), compressed);
    assert!(parse_device_public_key(&compressed[..32]).is_err());
    let mut off_curve = uncompressed;
    off_curve[64] ^= 1;
    assert!(compress_public_key(&off_curve).is_err());
    let mut bad_prefix = compressed;
    bad_prefix[0] = 0x04;
    assert!(decompress_public_key(&bad_prefix).is_err());
}

#[test]
fn device_key_survives_pkcs8_storage() {
    // A device key reloaded from its PKCS#8 makes codes that verify against the same credential.
    let f = fixture();
    let reloaded = DeviceKeyPair::from_pkcs8(f.device.pkcs8()).unwrap();
    assert_eq!(
        reloaded.public_key_compressed(),
        f.device.public_key_compressed()
    );
    let code = reloaded
        .ride_code(&f.credential, GENERATED_AT_MS, 7)
        .unwrap();
    assert!(f
        .verifier
        .verify(&code.to_bytes(), SCAN_TIME_MS, &no_deny())
        .is_ok());
    assert_eq!(
        DeviceKeyPair::from_pkcs8(b"not a key").unwrap_err(),
        RideCodeError::BadPkcs8
    );
    assert!(IssuerKeyPair::from_pkcs8(1, &[]).is_err());
}

#[test]
fn issuer_refuses_bad_requests() {
    // The issuer never signs an empty or over-long window, no products, or an invalid device key.
    let f = fixture();
    let ok = request(&f.device);
    let empty = CredentialRequest {
        valid_until_s: ok.valid_from_s,
        ..ok.clone()
    };
    assert!(matches!(
        f.issuer.issue(&empty),
        Err(RideCodeError::EmptyValidity { .. })
    ));
    let inverted = CredentialRequest {
        valid_until_s: ok.valid_from_s - 1,
        ..ok.clone()
    };
    assert!(matches!(
        f.issuer.issue(&inverted),
        Err(RideCodeError::EmptyValidity { .. })
    ));
    let too_long = CredentialRequest {
        valid_until_s: ok.valid_from_s + MAX_CREDENTIAL_VALIDITY_S + 1,
        ..ok.clone()
    };
    assert!(matches!(
        f.issuer.issue(&too_long),
        Err(RideCodeError::ValidityTooLong { .. })
    ));
    let no_products = CredentialRequest {
        products: ProductFlags::NONE,
        ..ok.clone()
    };
    assert_eq!(f.issuer.issue(&no_products), Err(RideCodeError::NoProducts));
    let mut bad_key = ok.device_public_key;
    bad_key[0] = 0x05;
    let bad_device = CredentialRequest {
        device_public_key: bad_key,
        ..ok.clone()
    };
    assert!(matches!(
        f.issuer.issue(&bad_device),
        Err(RideCodeError::BadPublicKey(_))
    ));
    let metro_only = CredentialRequest {
        products: ProductFlags::METRO,
        ..ok
    };
    let cred = f.issuer.issue(&metro_only).unwrap();
    assert!(!cred.body().products.contains(ProductFlags::TOLL));
}

#[test]
fn device_refuses_foreign_credential() {
    // A device will not sign a code for a credential bound to another device's key.
    let f = fixture();
    let other = DeviceKeyPair::generate().unwrap();
    assert_eq!(
        other
            .ride_code(&f.credential, GENERATED_AT_MS, NONCE)
            .unwrap_err(),
        RideCodeError::DeviceKeyMismatch
    );
}

#[test]
fn product_flags_reject_reserved_bits() {
    // Only bits 0 and 1 are defined; any other bit makes from_bits fail.
    assert_eq!(
        ProductFlags::from_bits(0b11),
        Some(ProductFlags::METRO | ProductFlags::TOLL)
    );
    assert_eq!(ProductFlags::from_bits(0), Some(ProductFlags::NONE));
    for bit in 2..16 {
        assert_eq!(ProductFlags::from_bits(1 << bit), None);
    }
    assert!(!ProductFlags::METRO.contains(ProductFlags::TOLL));
    assert!((ProductFlags::METRO | ProductFlags::TOLL).contains(ProductFlags::METRO));
    assert_eq!(
        format!("{:?}", ProductFlags::METRO | ProductFlags::TOLL),
        "ProductFlags(METRO | TOLL)"
    );
}

#[test]
fn issuer_public_key_serde() {
    // Issuer public keys serialize as key id plus hex and read back from hex or base64, validated.
    let f = fixture();
    let pk = f.issuer.public_key();
    let json = serde_json::to_string(&pk).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"key_id":1,"public_key":"{}"}}"#,
            hex::encode(pk.public_key())
        )
    );
    assert_eq!(serde_json::from_str::<IssuerPublicKey>(&json).unwrap(), pk);
    use base64::Engine as _;
    for text in [
        base64::engine::general_purpose::STANDARD.encode(pk.public_key()),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pk.public_key()),
        hex::encode(compress_public_key(pk.public_key()).unwrap()),
    ] {
        let json = format!(r#"{{"key_id":1,"public_key":"{text}"}}"#);
        assert_eq!(
            serde_json::from_str::<IssuerPublicKey>(&json).unwrap(),
            pk,
            "{text}"
        );
    }
    let mut off_curve = *pk.public_key();
    off_curve[64] ^= 1;
    for bad in [
        format!(
            r#"{{"key_id":1,"public_key":"{}"}}"#,
            hex::encode(off_curve)
        ),
        r#"{"key_id":1,"public_key":"04"}"#.to_owned(),
        r#"{"key_id":70000,"public_key":"04"}"#.to_owned(),
        format!(
            r#"{{"key_id":1,"public_key":"{}","x":1}}"#,
            hex::encode(pk.public_key())
        ),
    ] {
        assert!(
            serde_json::from_str::<IssuerPublicKey>(&bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn verifier_rejects_duplicate_key_ids() {
    // Two keys under one id would shadow each other, so building such a verifier fails.
    let f = fixture();
    let other = IssuerKeyPair::from_pkcs8(1, &IssuerKeyPair::generate_pkcs8().unwrap()).unwrap();
    assert_eq!(
        Verifier::new(
            [f.issuer.public_key(), other.public_key()],
            VerifyPolicy::default()
        )
        .unwrap_err(),
        RideCodeError::DuplicateKeyId(1)
    );
}

#[test]
fn verify_credential_alone() {
    // verify_credential applies the issuer, device-key and validity checks without a ride code.
    let f = fixture();
    let v = &f.verifier;
    assert_eq!(
        v.verify_credential(&f.credential, u64::from(VALID_FROM_S)),
        Ok(())
    );
    assert_eq!(
        v.verify_credential(&f.credential, u64::from(VALID_FROM_S) - 1),
        Err(RejectReason::CredentialNotYetValid)
    );
    assert_eq!(
        v.verify_credential(&f.credential, u64::from(VALID_UNTIL_S)),
        Err(RejectReason::CredentialExpired)
    );
    let code = resigned_code(|b| b[11] ^= 1);
    let resigned = Credential::from_bytes(&code[..CREDENTIAL_LEN]).unwrap();
    assert_eq!(
        v.verify_credential(&resigned, u64::from(VALID_FROM_S)),
        Ok(())
    );
    let mut forged = f.credential.to_bytes();
    forged[11] ^= 1;
    let forged = Credential::from_bytes(&forged).unwrap();
    assert_eq!(
        v.verify_credential(&forged, u64::from(VALID_FROM_S)),
        Err(RejectReason::BadIssuerSignature)
    );
}
