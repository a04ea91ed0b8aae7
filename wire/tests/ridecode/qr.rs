//! QR capacity: a ride code must fit a version ≤ 10 QR code at error-correction level M.

use qrcode::{EcLevel, QrCode, Version};

use crate::common::*;

#[test]
fn ride_code_fits_qr_version_10_at_level_m() {
    // The 206 raw bytes of a code encode at EC level M in a QR code of version 10 (capacity 213).
    let f = fixture();
    for nonce in 0..4 {
        let code = f
            .device
            .ride_code(&f.credential, GENERATED_AT_MS, nonce)
            .unwrap();
        let qr = QrCode::with_error_correction_level(code.to_bytes(), EcLevel::M).unwrap();
        match qr.version() {
            Version::Normal(v) => assert!(v <= 10, "version {v}"),
            other => panic!("unexpected version {other:?}"),
        }
    }
}

#[test]
fn uncompressed_device_key_would_not_fit() {
    // With a 65-byte device key the code would be 238 bytes and need version 11, hence compression.
    let qr = QrCode::with_error_correction_level([0xa5u8; 238], EcLevel::M).unwrap();
    assert_eq!(qr.version(), Version::Normal(11));
    let qr = QrCode::with_error_correction_level([0xa5u8; 213], EcLevel::M).unwrap();
    assert_eq!(qr.version(), Version::Normal(10));
    let qr = QrCode::with_error_correction_level([0xa5u8; 214], EcLevel::M).unwrap();
    assert_eq!(qr.version(), Version::Normal(11));
}

#[test]
fn text_form_does_not_fit_so_qr_carries_raw_bytes() {
    // The 275-character base64url text needs version 12, which is why the QR
    // code carries the raw bytes and only JSON carries the text.
    let text = fixture().code.to_base64url();
    let qr = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).unwrap();
    match qr.version() {
        Version::Normal(v) => assert_eq!(v, 12, "version {v}"),
        other => panic!("unexpected version {other:?}"),
    }
}
