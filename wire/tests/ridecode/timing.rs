//! Timing of verification (ignored by default; run in release with
//! `cargo test --release -p turnpike-wire --test ridecode -- --ignored --nocapture timing`).

use std::hint::black_box;
use std::time::Instant;

use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use turnpike_wire::ridecode::{decompress_public_key, CREDENTIAL_SIGNING_PREFIX};

use crate::common::*;

fn per_call_us(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

#[test]
#[ignore = "timing only; meaningful in release mode"]
fn timing_verify() {
    // Reports µs per full verify, per single ECDSA verify and per point decompression.
    let f = fixture();
    let bytes = f.code.to_bytes();
    let deny = no_deny();
    let n = 2_000;
    let verify_us = per_call_us(n, || {
        black_box(
            f.verifier
                .verify(black_box(&bytes), SCAN_TIME_MS, &deny)
                .unwrap(),
        );
    });
    let issuer_key = f.issuer.public_key();
    let message = [CREDENTIAL_SIGNING_PREFIX, &bytes[..62]].concat();
    let ecdsa_us = per_call_us(n, || {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &issuer_key.public_key()[..])
            .verify(black_box(&message), &bytes[62..126])
            .unwrap();
    });
    let device_key = f.device.public_key_compressed();
    let decompress_us = per_call_us(n, || {
        black_box(decompress_public_key(black_box(&device_key)).unwrap());
    });
    println!(
        "verify: {verify_us:.1} µs; one ECDSA P-256 verify: {ecdsa_us:.1} µs; \
         decompress: {decompress_us:.1} µs ({n} iterations each)"
    );
}
