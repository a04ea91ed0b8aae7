//! The published test vectors (`wire/testdata/ride-code-vectors.json`, also in
//! `docs/ride-code.md`): fixed bytes that must decode to fixed fields and verify to a fixed result.

use serde::Deserialize;
use turnpike_wire::ridecode::{
    Credential, DenyList, DeviceKeyPair, IssuerKeyPair, ProductFlags, RejectReason, RideCode,
    Verifier, VerifyPolicy, CREDENTIAL_LEN,
};

use crate::common::*;

const VECTORS_JSON: &str = include_str!("../../testdata/ride-code-vectors.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    description: String,
    format_version: u8,
    issuer_key_id: u16,
    issuer_pkcs8_hex: String,
    issuer_public_key_hex: String,
    device_pkcs8_hex: String,
    device_public_key_compressed_hex: String,
    device_public_key_uncompressed_hex: String,
    policy: Policy,
    credential_hex: String,
    ride_code_hex: String,
    ride_code_base64url: String,
    decoded: Decoded,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    freshness_ms: u64,
    max_future_skew_ms: u64,
}

#[derive(Deserialize, PartialEq, Debug)]
#[serde(deny_unknown_fields)]
struct Decoded {
    issuer_key_id: u16,
    credential_id: u64,
    rider_id: u64,
    valid_from_s: u32,
    valid_until_s: u32,
    products: u16,
    device_public_key_hex: String,
    issuer_signature_hex: String,
    generated_at_ms: u64,
    nonce: u64,
    device_signature_hex: String,
    fingerprint_hex: String,
    short_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    code_hex: String,
    scan_time_ms: u64,
    #[serde(default)]
    deny_credentials: Vec<u64>,
    #[serde(default)]
    deny_riders: Vec<u64>,
    /// "ok" or a reject reason code.
    expect: String,
}

fn decoded_of(code: &RideCode) -> Decoded {
    let body = code.credential().body();
    Decoded {
        issuer_key_id: body.issuer_key_id,
        credential_id: body.credential_id,
        rider_id: body.rider_id,
        valid_from_s: body.valid_from_s,
        valid_until_s: body.valid_until_s,
        products: body.products.bits(),
        device_public_key_hex: hex::encode(body.device_public_key),
        issuer_signature_hex: hex::encode(code.credential().issuer_signature()),
        generated_at_ms: code.generated_at_ms(),
        nonce: code.nonce(),
        device_signature_hex: hex::encode(code.device_signature()),
        fingerprint_hex: hex::encode(code.fingerprint()),
        short_id: code.short_id(),
    }
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("vector hex")
}

#[test]
fn published_vectors_decode_and_verify_as_recorded() {
    // Every vector in the file gives its recorded result, and the valid code its recorded fields.
    check_vector_file(&serde_json::from_str(VECTORS_JSON).unwrap());
}

fn check_vector_file(file: &VectorFile) {
    assert!(!file.description.is_empty());
    assert_eq!(file.format_version, turnpike_wire::ridecode::FORMAT_VERSION);

    // The keys in the file are the keys that made the bytes.
    let issuer =
        IssuerKeyPair::from_pkcs8(file.issuer_key_id, &unhex(&file.issuer_pkcs8_hex)).unwrap();
    assert_eq!(
        issuer.public_key().public_key_hex(),
        file.issuer_public_key_hex
    );
    let device = DeviceKeyPair::from_pkcs8(&unhex(&file.device_pkcs8_hex)).unwrap();
    assert_eq!(
        hex::encode(device.public_key_compressed()),
        file.device_public_key_compressed_hex
    );
    assert_eq!(
        hex::encode(device.public_key_uncompressed()),
        file.device_public_key_uncompressed_hex
    );

    // The valid code decodes to the recorded fields and round-trips.
    let code_bytes = unhex(&file.ride_code_hex);
    assert_eq!(
        hex::encode(&code_bytes[..CREDENTIAL_LEN]),
        file.credential_hex
    );
    let code = RideCode::from_bytes(&code_bytes).unwrap();
    assert_eq!(decoded_of(&code), file.decoded);
    assert_eq!(code.to_base64url(), file.ride_code_base64url);
    assert_eq!(
        RideCode::from_base64url(&file.ride_code_base64url).unwrap(),
        code
    );
    let credential = Credential::from_bytes(&unhex(&file.credential_hex)).unwrap();
    assert_eq!(&credential, code.credential());

    let policy = VerifyPolicy {
        freshness_ms: file.policy.freshness_ms,
        max_future_skew_ms: file.policy.max_future_skew_ms,
    };
    assert_eq!(policy, VerifyPolicy::default());
    let verifier = Verifier::new([issuer.public_key()], policy).unwrap();
    assert!(file.vectors.len() >= 10);
    for v in &file.vectors {
        let deny = DenyList {
            credentials: v.deny_credentials.iter().copied().collect(),
            riders: v.deny_riders.iter().copied().collect(),
        };
        let got = verifier.verify(&unhex(&v.code_hex), v.scan_time_ms, &deny);
        match v.expect.as_str() {
            "ok" => {
                let verified = got.unwrap_or_else(|r| panic!("{}: rejected {}", v.name, r.code()));
                assert_eq!(decoded_of(verified.ride_code()), file.decoded, "{}", v.name);
            }
            reason => {
                let expected = RejectReason::from_code(reason)
                    .unwrap_or_else(|| panic!("{}: unknown reason {reason}", v.name));
                assert_eq!(got.map(|_| ()), Err(expected), "{}", v.name);
            }
        }
    }
}

/// Builds a fresh vector set with new random keys and checks it like the published one. With
/// `TURNPIKE_PRINT_VECTORS=1` (and `--nocapture`) it also prints the JSON, to paste into
/// `wire/testdata/ride-code-vectors.json` (and the hex into `docs/ride-code.md`). ECDSA
/// signatures are randomized, so each run gives different (equally valid) bytes: regenerate only
/// when the format changes.
#[test]
fn freshly_generated_vectors_meet_their_expectations() {
    // The generator's expectations hold for any keys, not just the published ones.
    let issuer_pkcs8 = IssuerKeyPair::generate_pkcs8().unwrap();
    let issuer = IssuerKeyPair::from_pkcs8(1, &issuer_pkcs8).unwrap();
    let device = DeviceKeyPair::generate().unwrap();
    let mut req = request(&device);
    req.products = ProductFlags::METRO | ProductFlags::TOLL;
    let credential = issuer.issue(&req).unwrap();
    let code = device
        .ride_code(&credential, GENERATED_AT_MS, NONCE)
        .unwrap();
    let good = code.to_bytes().to_vec();
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        hex::encode(b)
    };
    let good_hex = hex::encode(&good);
    let from_ms = u64::from(VALID_FROM_S) * 1000;
    let until_ms = u64::from(VALID_UNTIL_S) * 1000;
    let vector = |name: &str, code_hex: &str, scan: u64, expect: &str| serde_json::json!({"name": name, "code_hex": code_hex, "scan_time_ms": scan, "expect": expect});
    let mut vectors = vec![
        vector("valid", &good_hex, SCAN_TIME_MS, "ok"),
        vector(
            "valid at the freshness limit (60 000 ms old)",
            &good_hex,
            GENERATED_AT_MS + 60_000,
            "ok",
        ),
        vector(
            "valid at the skew limit (5 000 ms ahead)",
            &good_hex,
            GENERATED_AT_MS - 5_000,
            "ok",
        ),
        vector(
            "one ms too old",
            &good_hex,
            GENERATED_AT_MS + 60_001,
            "code_expired",
        ),
        vector(
            "one ms too far in the future",
            &good_hex,
            GENERATED_AT_MS - 5_001,
            "code_from_future",
        ),
        vector(
            "scanned before valid_from_s",
            &good_hex,
            from_ms - 1,
            "credential_not_yet_valid",
        ),
        vector(
            "scanned at valid_until_s",
            &good_hex,
            until_ms,
            "credential_expired",
        ),
        vector(
            "truncated to 205 bytes",
            &hex::encode(&good[..205]),
            SCAN_TIME_MS,
            "code_truncated",
        ),
        vector(
            "one trailing zero byte",
            &edit(&|b| b.push(0)),
            SCAN_TIME_MS,
            "code_trailing_bytes",
        ),
        vector(
            "version byte 2",
            &edit(&|b| b[0] = 2),
            SCAN_TIME_MS,
            "unsupported_version",
        ),
        vector(
            "reserved product bit 15 set",
            &edit(&|b| b[27] ^= 0x80),
            SCAN_TIME_MS,
            "malformed_credential",
        ),
        vector(
            "issuer key id 3",
            &edit(&|b| b[2] ^= 0x02),
            SCAN_TIME_MS,
            "unknown_issuer_key",
        ),
        vector(
            "rider id changed (bit 0 of byte 18)",
            &edit(&|b| b[18] ^= 0x01),
            SCAN_TIME_MS,
            "bad_issuer_signature",
        ),
        vector(
            "generated_at_ms changed (bit 0 of byte 133)",
            &edit(&|b| b[133] ^= 0x01),
            SCAN_TIME_MS,
            "bad_device_signature",
        ),
        vector(
            "last byte of device signature changed",
            &edit(&|b| b[205] ^= 0x01),
            SCAN_TIME_MS,
            "bad_device_signature",
        ),
    ];
    // Two more that need the issuer to sign something it never would: re-signed credentials.
    let resigned = |edit: &dyn Fn(&mut [u8; 62])| {
        let mut unsigned = credential.body().to_unsigned_bytes();
        edit(&mut unsigned);
        let cred = raw_credential(&issuer_pkcs8, &unsigned);
        hex::encode(raw_code(&cred, device.pkcs8(), GENERATED_AT_MS, NONCE))
    };
    let too_long = VALID_FROM_S + 7 * 24 * 3600 + 1;
    vectors.push(vector(
        "issuer-signed validity of 7 days + 1 s",
        &resigned(&|b| b[23..27].copy_from_slice(&too_long.to_be_bytes())),
        SCAN_TIME_MS,
        "credential_validity_too_long",
    ));
    let off_curve = (0u8..=255)
        .map(|x| {
            let mut k = [0u8; 33];
            k[0] = 0x02;
            k[32] = x;
            k
        })
        .find(|k| turnpike_wire::ridecode::decompress_public_key(k).is_err())
        .unwrap();
    vectors.push(vector(
        "issuer-signed device key with x not on the curve",
        &resigned(&|b| b[29..62].copy_from_slice(&off_curve)),
        SCAN_TIME_MS,
        "bad_device_public_key",
    ));
    let mut denied_cred = vector(
        "credential denied",
        &good_hex,
        SCAN_TIME_MS,
        "credential_denied",
    );
    denied_cred["deny_credentials"] = serde_json::json!([CREDENTIAL_ID]);
    denied_cred["deny_riders"] = serde_json::json!([RIDER_ID]);
    let mut denied_rider = vector("rider denied", &good_hex, SCAN_TIME_MS, "rider_denied");
    denied_rider["deny_riders"] = serde_json::json!([RIDER_ID]);
    vectors.push(denied_cred);
    vectors.push(denied_rider);
    let d = decoded_of(&code);
    let file = serde_json::json!({
        "description": "Turnpike ride-code format v1 verification vectors. Keys are throwaway test keys. \
            Verify each vector's code_hex at scan_time_ms with a verifier holding only the issuer \
            public key (key id 1), the default policy and the given deny list; expect is \"ok\" or \
            a reject reason code. ECDSA signatures are randomized, so these are verification \
            vectors, not signing vectors. Checked by wire/tests/ridecode/vectors.rs.",
        "format_version": 1,
        "issuer_key_id": 1,
        "issuer_pkcs8_hex": hex::encode(&issuer_pkcs8),
        "issuer_public_key_hex": issuer.public_key().public_key_hex(),
        "device_pkcs8_hex": hex::encode(device.pkcs8()),
        "device_public_key_compressed_hex": hex::encode(device.public_key_compressed()),
        "device_public_key_uncompressed_hex": hex::encode(device.public_key_uncompressed()),
        "policy": {"freshness_ms": 60_000, "max_future_skew_ms": 5_000},
        "credential_hex": hex::encode(credential.as_bytes()),
        "ride_code_hex": good_hex,
        "ride_code_base64url": code.to_base64url(),
        "decoded": {
            "issuer_key_id": d.issuer_key_id,
            "credential_id": d.credential_id,
            "rider_id": d.rider_id,
            "valid_from_s": d.valid_from_s,
            "valid_until_s": d.valid_until_s,
            "products": d.products,
            "device_public_key_hex": d.device_public_key_hex,
            "issuer_signature_hex": d.issuer_signature_hex,
            "generated_at_ms": d.generated_at_ms,
            "nonce": d.nonce,
            "device_signature_hex": d.device_signature_hex,
            "fingerprint_hex": d.fingerprint_hex,
            "short_id": d.short_id,
        },
        "vectors": vectors,
    });
    let text = serde_json::to_string_pretty(&file).unwrap();
    check_vector_file(&serde_json::from_str(&text).unwrap());
    // A test may read its environment; the library may not (wire/clippy.toml).
    #[allow(clippy::disallowed_methods)]
    let print = std::env::var("TURNPIKE_PRINT_VECTORS").as_deref() == Ok("1");
    if print {
        println!("{text}");
    }
}
