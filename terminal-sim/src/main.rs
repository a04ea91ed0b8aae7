//! `terminal-sim`: a fleet of simulated metro gates and rider phones driving a real gateway over
//! mutual TLS, exactly as the devices would: riders enrol through the rider API with their own
//! P-256 keys, each gate presents its own client certificate and keeps its own sequence numbers.
//!
//! This first version is closed-loop (each worker waits for an answer before its next tap), so
//! its rate is what the gateway sustains at that concurrency, and its latencies are not corrected
//! for coordinated omission. Open-loop load, scenarios and charts come with the load-benchmark work.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use gateway::client::{AdminClient, RiderDevice, TerminalClient};
use gateway::demo::{demo_terminals, METRO_OPERATOR, TOLL_OPERATOR};
use rand::seq::SliceRandom;
use serde::Serialize;
use tokio::sync::Mutex;
use turnpike_wire::api::{Decision, Direction, TapRequest};

#[derive(Parser)]
#[command(
    name = "terminal-sim",
    about = "Drive a Turnpike gateway with simulated gates and riders"
)]
struct Args {
    /// Terminal API base URL (mutual TLS).
    #[arg(long, default_value = "https://localhost:8443")]
    terminal_url: String,
    /// Rider/admin API base URL.
    #[arg(long, default_value = "https://localhost:8444")]
    public_url: String,
    /// Directory written by `gateway certs dev` (ca.pem, terminals/<id>.pem|.key, admin-token).
    #[arg(long, default_value = "dev-certs")]
    certs: PathBuf,
    /// Create the demo operators, fares and terminals first (skipped where they exist).
    #[arg(long)]
    setup: bool,
    /// Simulated riders (each one journey at a time).
    #[arg(long, default_value_t = 64)]
    riders: usize,
    /// How long to run.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Default, Serialize)]
struct Report {
    riders: usize,
    duration_s: f64,
    taps: u64,
    approved: u64,
    declined: u64,
    errors: u64,
    throughput_per_s: f64,
    latency_ms: Latency,
}

#[derive(Default, Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ca = args.certs.join("ca.pem");
    let token =
        std::fs::read_to_string(args.certs.join("admin-token")).context("reading admin-token")?;
    let admin = AdminClient::new(&args.public_url, &ca, token.trim())?;
    if args.setup {
        setup(&admin).await?;
    }
    let gates: Vec<(String, TerminalClient)> = demo_terminals()
        .into_iter()
        .filter(|(_, op, _)| *op == METRO_OPERATOR)
        .map(|(id, _, _)| {
            let client = TerminalClient::new(
                &args.terminal_url,
                &ca,
                &args.certs.join("terminals").join(format!("{id}.pem")),
                &args.certs.join("terminals").join(format!("{id}.key")),
            )?;
            Ok((id, client))
        })
        .collect::<anyhow::Result<_>>()?;
    let gates = Arc::new(gates);
    // Sequence numbers continue from the clock so that repeated runs never reuse a key.
    let sequences: Arc<Vec<Mutex<u64>>> = Arc::new(
        gates
            .iter()
            .map(|_| Mutex::new(gateway::now_ms() as u64))
            .collect(),
    );
    eprintln!("enrolling {} riders…", args.riders);
    let mut riders = Vec::new();
    for _ in 0..args.riders {
        riders.push(RiderDevice::enrol(&args.public_url, &ca, &["metro"]).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(args.duration_s);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for rider in riders {
        let gates = gates.clone();
        let sequences = sequences.clone();
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let (mut approved, mut declined, mut errors) = (0u64, 0u64, 0u64);
            let mut direction = Direction::Entry;
            while Instant::now() < deadline {
                let index = {
                    let mut rng = rand::thread_rng();
                    (0..gates.len())
                        .collect::<Vec<_>>()
                        .choose(&mut rng)
                        .copied()
                        .unwrap_or(0)
                };
                let sequence = {
                    let mut s = sequences[index].lock().await;
                    *s += 1;
                    *s
                };
                let now = gateway::now_ms() as u64;
                let tap = TapRequest {
                    sequence,
                    direction,
                    ride_code: rider.ride_code(now)?,
                    scanned_at_ms: now,
                    vehicle_class: None,
                };
                let sent = Instant::now();
                match gates[index].1.tap(&tap).await {
                    Ok(r) => {
                        samples.push(sent.elapsed().as_micros() as u64);
                        match r.decision {
                            Decision::Approve => approved += 1,
                            Decision::Decline => declined += 1,
                        }
                        if r.decision == Decision::Approve
                            || r.reason.as_deref() == Some("no_entry")
                        {
                            direction = if direction == Direction::Entry {
                                Direction::Exit
                            } else {
                                Direction::Entry
                            };
                        }
                    }
                    Err(_) => errors += 1,
                }
            }
            anyhow::Ok((samples, approved, declined, errors))
        });
    }
    let mut report = Report {
        riders: args.riders,
        ..Report::default()
    };
    let mut samples = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let (s, a, d, e) = result??;
        samples.extend(s);
        report.approved += a;
        report.declined += d;
        report.errors += e;
    }
    report.duration_s = started.elapsed().as_secs_f64();
    report.taps = report.approved + report.declined;
    report.throughput_per_s = report.taps as f64 / report.duration_s;
    samples.sort_unstable();
    let pct = |p: f64| {
        samples
            .get(((samples.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    report.latency_ms = Latency {
        p50: pct(0.5),
        p90: pct(0.9),
        p99: pct(0.99),
        max: pct(1.0),
    };
    println!(
        "{} taps in {:.1} s = {:.0} taps/s ({} approved, {} declined, {} errors); latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        report.taps,
        report.duration_s,
        report.throughput_per_s,
        report.approved,
        report.declined,
        report.errors,
        report.latency_ms.p50,
        report.latency_ms.p90,
        report.latency_ms.p99,
        report.latency_ms.max
    );
    if let Some(path) = args.json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

/// Creates the demo operators, loads their fares and registers the demo terminals; whatever
/// already exists is left as it is.
async fn setup(admin: &AdminClient) -> anyhow::Result<()> {
    for (id, mode, format) in [
        (METRO_OPERATOR, "metro", "demo_metro"),
        (TOLL_OPERATOR, "toll", "demo_toll"),
    ] {
        let created = admin
            .post(
                "/v1/admin/operators",
                &serde_json::json!({"operator_id": id, "name": id, "mode": mode}),
            )
            .await?;
        if created.status == 201 {
            let loaded = admin
                .send(
                    reqwest::Method::PUT,
                    &format!("/v1/admin/operators/{id}/fares"),
                    Some(&serde_json::json!({"format": format})),
                )
                .await?;
            anyhow::ensure!(
                loaded.status == 201,
                "loading fares for {id}: {}",
                String::from_utf8_lossy(&loaded.body)
            );
        }
    }
    for (id, op, location) in demo_terminals() {
        admin
            .post_ok(
                "/v1/admin/terminals",
                &serde_json::json!({"terminal_id": id, "operator_id": op, "location_id": location}),
            )
            .await?;
    }
    Ok(())
}
