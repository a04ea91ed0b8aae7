//! Micro-benchmarks of the per-tap CPU work: ride-code generation and verification (with the raw
//! ECDSA verify as the baseline it cannot beat), fare lookup, and JSON decoding of a tap.
//! `cargo bench -p benches --bench micro`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use criterion::{black_box, criterion_group, Criterion};
use turnpike_wire::api::TapRequest;
use turnpike_wire::ridecode::{
    CredentialRequest, DenyList, DeviceKeyPair, IssuerKeyPair, ProductFlags, Verifier, VerifyPolicy,
};

/// The system allocator, counting live bytes and their peak, so the fare load's peak memory is
/// measured (two relaxed atomics per allocation: noise next to the benchmarks' own work).
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

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

/// A generated network the size of a large metropolitan feed: 50,000 stops in 500 areas of 100,
/// a zone-to-zone rule for every pair of areas (250,000 rules) over 50 products, each sold on two
/// media (a card and the app) — GTFS text of about 9 MB.
fn big_network() -> Vec<(&'static str, String)> {
    const STOPS: usize = 50_000;
    const AREAS: usize = 500;
    let mut stops = String::from("stop_id,stop_name\n");
    let mut stop_areas = String::from("area_id,stop_id\n");
    for i in 0..STOPS {
        stops += &format!("s{i},Stop {i}\n");
        stop_areas += &format!("a{},s{i}\n", i % AREAS);
    }
    let mut areas = String::from("area_id\n");
    for a in 0..AREAS {
        areas += &format!("a{a}\n");
    }
    let mut products = String::from("fare_product_id,amount,currency,fare_media_id\n");
    for p in 0..50 {
        products += &format!("p{p},{}.00,USD,card\np{p},{}.50,USD,app\n", 2 + p, 1 + p);
    }
    let mut rules =
        String::from("leg_group_id,network_id,from_area_id,to_area_id,fare_product_id\n");
    for a in 0..AREAS {
        for b in 0..AREAS {
            rules += &format!("ride,metro,a{a},a{b},p{}\n", a.abs_diff(b) % 50);
        }
    }
    vec![
        ("stops.txt", stops),
        ("areas.txt", areas),
        ("stop_areas.txt", stop_areas),
        (
            "fare_media.txt",
            "fare_media_id,fare_media_type\ncard,2\napp,4\n".into(),
        ),
        ("fare_products.txt", products),
        ("fare_leg_rules.txt", rules),
    ]
}

/// Loads the big network (GTFS parse, cross-checks, indexes, the network's table) and returns
/// it with the load's wall time and its peak of newly allocated bytes.
fn load_big(files: &[(&str, &str)]) -> (turnpike_fares::MetroFares, f64, usize) {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let feed = turnpike_fares::GtfsFeed::from_files(files).unwrap();
    let metro = std::sync::Arc::new(feed)
        .into_metro_fares("metro", turnpike_fares::FareQuery::default())
        .unwrap();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let peak = PEAK_BYTES.load(Ordering::Relaxed).saturating_sub(before);
    (metro, ms, peak)
}

/// fare_load_ms (best of 3), fare_load_peak_mib, and fare_price_ns (criterion) on the big network.
fn big_fares(c: &mut Criterion) -> serde_json::Value {
    let files = big_network();
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    let mut best_ms = f64::MAX;
    let mut peak = 0;
    let mut metro = None;
    for _ in 0..3 {
        let (m, ms, p) = load_big(&files);
        best_ms = best_ms.min(ms);
        peak = peak.max(p);
        metro = Some(m);
    }
    let metro = metro.unwrap();
    let pairs: Vec<(String, String)> = (0..1024)
        .map(|i| {
            (
                format!("s{}", (i * 7919) % 50_000),
                format!("s{}", (i * 104_729 + 13) % 50_000),
            )
        })
        .collect();
    let mut i = 0;
    c.bench_function("fare_price_50k", |b| {
        b.iter(|| {
            i = (i + 1) % pairs.len();
            metro
                .price_at(
                    black_box(&pairs[i].0),
                    black_box(&pairs[i].1),
                    36_000,
                    37_000,
                    None,
                )
                .unwrap()
        })
    });
    println!(
        "fare_load_ms {best_ms:.1} fare_load_peak_mib {:.1} (feed {:.1} MB, 50,000 stops, 500 areas, 250,000 rules)",
        peak as f64 / (1 << 20) as f64,
        bytes as f64 / 1e6
    );
    serde_json::json!({
        "fare_load_ms": best_ms,
        "fare_load_peak_mib": peak as f64 / (1 << 20) as f64,
        "feed_bytes": bytes,
        "stops": 50_000,
        "areas": 500,
        "leg_rules": 250_000,
    })
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
    let limits = gateway::limits::Limits::new(
        &gateway::config::LimitsConfig {
            terminal_requests_per_s: 1_000_000_000,
            terminal_burst: 1_000_000_000,
            ..gateway::config::LimitsConfig::default()
        },
        1,
    );
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
    let mut criterion = Criterion::default().configure_from_args();
    let big = big_fares(&mut criterion);
    criterion.final_summary();
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
        "fare_price_50k",
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
    // The big network's numbers under the names the goals use (docs/fares.md, "Limits").
    if let Some(mean) = out
        .get("fare_price_50k")
        .and_then(|v| v["mean_ns"].as_f64())
    {
        out.insert("fare_price_ns".into(), serde_json::json!(mean));
    }
    if let serde_json::Value::Object(big) = big {
        out.extend(big);
    }
    let dir = target.join("bench-results");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(
            dir.join("micro.json"),
            serde_json::to_vec_pretty(&out).unwrap_or_default(),
        );
    }
}
