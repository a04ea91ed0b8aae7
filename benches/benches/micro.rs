//! Micro-benchmarks of the per-tap CPU work: ride-code generation and verification (with the raw
//! ECDSA verify as the baseline it cannot beat), fare lookup, and JSON decoding of a tap.
//! `cargo bench -p benches --bench micro`.

use std::collections::HashSet;

use criterion::{black_box, criterion_group, Criterion};
use turnpike_wire::api::TapRequest;
use turnpike_wire::ridecode::{
    CredentialRequest, DenyList, DeviceKeyPair, IssuerKeyPair, ProductFlags, Verifier, VerifyPolicy,
};

fn ride_codes(c: &mut Criterion) {
    let issuer = IssuerKeyPair::from_pkcs8(1, &IssuerKeyPair::generate_pkcs8().unwrap()).unwrap();
    let device = DeviceKeyPair::generate().unwrap();
    let now_ms: u64 = 1_800_000_000_000;
    let credential = issuer
        .issue(&CredentialRequest {
            credential_id: 42,
            rider_id: 7,
            valid_from_s: (now_ms / 1000 - 60) as u32,
            valid_until_s: (now_ms / 1000 + 86_400) as u32,
            products: ProductFlags::METRO,
            device_public_key: device.public_key_compressed(),
        })
        .unwrap();
    let verifier = Verifier::new([issuer.public_key()], VerifyPolicy::default()).unwrap();
    let deny = DenyList {
        credentials: HashSet::new(),
        riders: HashSet::new(),
    };
    let code = device.ride_code(&credential, now_ms, 1).unwrap();
    let bytes = code.to_bytes();
    let text = code.to_base64url();

    c.bench_function("ridecode_generate", |b| {
        b.iter(|| device.ride_code(black_box(&credential), now_ms, 2).unwrap())
    });
    c.bench_function("ridecode_verify", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&bytes), now_ms + 1_000, &deny)
                .unwrap()
        })
    });
    c.bench_function("ridecode_verify_base64url", |b| {
        b.iter(|| {
            verifier
                .verify_base64url(black_box(&text), now_ms + 1_000, &deny)
                .unwrap()
        })
    });
    // Baseline: one bare ECDSA P-256 verification with ring; verify() does two of these.
    let uncompressed = device.public_key_uncompressed();
    let signing_input = [
        turnpike_wire::ridecode::RIDE_CODE_SIGNING_PREFIX,
        &bytes[..turnpike_wire::ridecode::RIDE_CODE_BODY_LEN],
    ]
    .concat();
    let signature = code.device_signature().to_vec();
    c.bench_function("baseline_ecdsa_p256_verify", |b| {
        b.iter(|| {
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_FIXED,
                &uncompressed[..],
            )
            .verify(black_box(&signing_input), &signature)
            .is_ok()
        })
    });
}

fn fares(c: &mut Criterion) {
    let metro = turnpike_fares::demo_metro();
    let stops: Vec<String> = metro.stops().iter().map(|s| s.id.clone()).collect();
    c.bench_function("fare_lookup", |b| {
        b.iter(|| {
            metro
                .price(black_box(&stops[0]), black_box(&stops[17]))
                .unwrap()
        })
    });
}

/// The gateway decodes a tap with `turnpike_wire::json` (named fields only); its baseline is
/// plain serde_json on the same bytes, which also takes positional arrays.
fn tap_json(c: &mut Criterion) {
    let body = br#"{"sequence":123456,"direction":"entry","ride_code":"AQABAAAAAAAAACoAAAAAAAAAB2kVbHBpF8sAAAEC","scanned_at_ms":1800000000000}"#;
    c.bench_function("tap_json_decode", |b| {
        b.iter(|| turnpike_wire::json::from_slice::<TapRequest>(black_box(body)).unwrap())
    });
    c.bench_function("baseline_serde_json_tap_decode", |b| {
        b.iter(|| serde_json::from_slice::<TapRequest>(black_box(body)).unwrap())
    });
}

/// What every terminal request spends on its budget check (`limits.rs`), over 64 terminals.
fn rate_limit(c: &mut Criterion) {
    let limits = gateway::limits::Limits::new(&gateway::config::LimitsConfig {
        terminal_requests_per_s: 1_000_000_000,
        terminal_burst: 1_000_000_000,
        ..gateway::config::LimitsConfig::default()
    });
    let ids: Vec<String> = (0..64).map(|i| format!("gate-station-{i}-1")).collect();
    let mut i = 0;
    c.bench_function("terminal_rate_limit_check", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            limits.terminal(black_box(&ids[i])).unwrap()
        })
    });
}

criterion_group!(benches, ride_codes, fares, tap_json, rate_limit);

/// Runs the benchmarks, then gathers criterion's mean estimates into
/// `target/bench-results/micro.json` (`{"<bench>": {"mean_ns": …}, …}`).
fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // The bench executable lives in <target>/release/deps/; criterion writes <target>/criterion.
    let Some(target) = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.parent()?.to_path_buf()))
    else {
        return;
    };
    let mut out = serde_json::Map::new();
    for name in [
        "ridecode_generate",
        "ridecode_verify",
        "ridecode_verify_base64url",
        "baseline_ecdsa_p256_verify",
        "fare_lookup",
        "tap_json_decode",
        "baseline_serde_json_tap_decode",
        "terminal_rate_limit_check",
    ] {
        let path = target
            .join("criterion")
            .join(name)
            .join("new/estimates.json");
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        let estimates: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        if let Some(mean) = estimates["mean"]["point_estimate"].as_f64() {
            out.insert(name.into(), serde_json::json!({ "mean_ns": mean }));
        }
    }
    let dir = target.join("bench-results");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(
            dir.join("micro.json"),
            serde_json::to_vec_pretty(&out).unwrap_or_default(),
        );
    }
}
