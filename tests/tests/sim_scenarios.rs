//! The simulator's scenarios, short, against a real gateway (PostgreSQL, mutual TLS on
//! loopback): each asserts that every expected-vs-observed check of the report holds, and a
//! little more that the checks alone would not show.

use std::time::Instant;

use terminal_sim::{GateVerify, ProviderTarget, RunOptions, Scenario, Sim, Target};
use turnpike_tests::provider::PaidEnv;
use turnpike_tests::{Db, Env, ADMIN_TOKEN};

/// Offered taps per second: enough for hundreds of taps, small enough for CI's two cores.
const RATE_PER_S: f64 = 150.0;
const DURATION_S: f64 = 3.0;

/// Runs `scenario` against the gateway of `env` with a fleet seeded `seed` (toll exits paid at
/// the booth and tickets bought at the machines when `provider` is given), prints the summary
/// and asserts every check of the report.
async fn run_on(
    env: &Env,
    seed: u64,
    provider: Option<ProviderTarget>,
    scenario: Scenario,
    rate_per_s: f64,
    duration_s: f64,
) -> terminal_sim::Report {
    let target = Target {
        terminal_url: env.gw.terminal_base.clone(),
        public_url: env.gw.public_base.clone(),
        certs: env.gw.certs.clone(),
        admin_token: ADMIN_TOKEN.into(),
    };
    let options = RunOptions {
        gate_verify: GateVerify::Inline,
        progress: false,
        work_dir: env.scratch.0.join("gate-buffers"),
        offline_fallback: Some(terminal_sim::runner::GATE_LIVE_BUDGET),
    };
    let started = Instant::now();
    let mut sim = Sim::connect(target, seed)
        .await
        .expect("connecting the fleet");
    if let Some(provider) = provider {
        sim.use_provider(provider).expect("the sandbox");
    }
    let plan = sim.plan(scenario, rate_per_s, duration_s);
    let report = sim
        .run(&plan, &options)
        .await
        .expect("running the scenario");
    eprintln!(
        "{}({:.1} s)",
        report.summary(),
        started.elapsed().as_secs_f64()
    );
    for check in &report.checks {
        assert!(
            check.passed,
            "{}: expected {}, observed {}",
            check.name, check.expected, check.observed
        );
    }
    assert!(report.passed);
    report
}

async fn run(scenario: Scenario) -> Option<terminal_sim::Report> {
    let env = Env::start(Db::Postgres).await?;
    let report = run_on(&env, 1, None, scenario, RATE_PER_S, DURATION_S).await;
    assert!(report.requests > 0);
    Some(report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_traffic_is_approved_with_varied_fares_and_measured_latency() {
    // Proves a normal run's journeys are all approved, fares vary, and latency, throughput and
    // the gates' own verification time are measured and reported.
    let Some(report) = run(Scenario::Normal).await else {
        return;
    };
    assert_eq!(report.approved, report.requests);
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.p50 <= report.latency_ms.max);
    assert!(report.gate_verify_us.p50 > 0.0);
    assert!(report.fares_seen.len() >= 3);
    assert!(!report.timeline.is_empty());
    let json = serde_json::to_value(&report).expect("report JSON");
    for field in [
        "scenario",
        "offered_rate_per_s",
        "duration_s",
        "requests",
        "approved",
        "declined",
        "errors",
        "throughput_per_s",
        "checks",
    ] {
        assert!(json.get(field).is_some(), "report lacks {field}");
    }
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(json["latency_ms"][p].is_number(), "latency_ms.{p}");
    }
    let svg = std::env::temp_dir().join(format!("sim-chart-{}.svg", std::process::id()));
    report.write_chart(&svg).expect("chart");
    let text = std::fs::read_to_string(&svg).expect("svg");
    let _ = std::fs::remove_file(&svg);
    assert!(text.contains("<svg") && text.contains("p99"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replayed_code_is_declined() {
    // Proves a code shown again at another station's gate is declined `replay` every time,
    // while the journeys around it are approved.
    let Some(report) = run(Scenario::ReplayedCodes).await else {
        return;
    };
    assert!(report.outcomes["replay"]["decline replay"] > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_expired_codes_are_refused_by_gate_and_gateway_alike() {
    // Proves tampered device signatures and credentials, and 90-second-old screenshots, are
    // refused by the gate offline and declined by the gateway with the same reason.
    for scenario in [Scenario::ForgedCodes, Scenario::ExpiredCodes] {
        let Some(report) = run(scenario).await else {
            return;
        };
        assert!(report.gate_refused > 0);
        assert_eq!(report.gate_refused, report.declined);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_skew_inside_tolerance_passes_and_outside_is_refused() {
    // Proves phones 3 s fast or 30 s slow still ride, a phone 10 s fast is declined
    // `code_from_future`, and a gate 45 s fast is refused `scan_time_in_future`.
    let Some(report) = run(Scenario::ClockSkew).await else {
        return;
    };
    assert!(report.outcomes.contains_key("gate_clock_ahead_45s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_buffer_during_an_outage_and_upload_everything_when_it_ends() {
    // Proves that during an outage the gates buffer taps durably, upload every one when the
    // link returns, the gateway answers each, and a repeated upload gets identical bytes.
    let Some(report) = run(Scenario::Outage).await else {
        return;
    };
    let o = &report.offline;
    assert!(o.buffered > 0);
    assert_eq!(o.uploaded, o.buffered);
    assert_eq!(o.accepted + o.declined, o.uploaded);
    assert!(o.accepted > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rush_hour_bursts_are_approved() {
    // Proves the compressed day with train bursts runs and every burst exit is approved.
    let Some(report) = run(Scenario::RushHour).await else {
        return;
    };
    assert!(report.outcomes["train_burst"]["approve"] > 0);
}

/// The gateway's provider call timeout and toll budget in the degradation test: short, so that
/// hangs and settling fit a brief run.
const CALL_TIMEOUT_MS: u64 = 1_000;
const TOLL_BUDGET_MS: u64 = 3_000;
const TICKET_QUERY_AFTER_MS: u64 = 3_000;

/// Runs `scenario` with the provider sandbox: a gateway wired to a real sandbox over HTTP with
/// notifications (`PaidEnv::start_notified`, PostgreSQL), every rider with a wallet, toll exits
/// paid at the booth and tickets bought at the machines; asserts every check of the report.
async fn run_paid(
    scenario: Scenario,
    rate_per_s: f64,
    duration_s: f64,
) -> Option<terminal_sim::Report> {
    let p = PaidEnv::start_notified(Db::Postgres, |c| {
        c.provider.call_timeout_ms = CALL_TIMEOUT_MS;
        c.charging.toll_budget_ms = TOLL_BUDGET_MS;
        // A ticket whose notification failed its cross-check (the query is degraded) is asked
        // for by the gateway itself this soon after the order, rather than in 30 s.
        c.charging.ticket_query_after_ms = TICKET_QUERY_AFTER_MS;
    })
    .await?;
    let provider = ProviderTarget {
        call_timeout_ms: CALL_TIMEOUT_MS,
        // Codes of the first half's exits before the clock starts, the rest during the run
        // (2 s before each exit), so both ways are exercised.
        codes_ahead_s: duration_s / 2.0,
        code_lead_s: 2.0,
        ..ProviderTarget::new(&p.sandbox.base_url)
    };
    let report = run_on(&p.env, 3, Some(provider), scenario, rate_per_s, duration_s).await;
    Some(report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_degradation_never_holds_metro_and_settles_every_toll_exit_exactly_once() {
    // Proves that with the provider degraded for the middle third of the run (200–800 ms
    // latency on pay and query, 10% hangs past the call timeout, 10% 5xx): every metro tap is
    // approved, every toll exit paid at the booth gets exactly one final answer (approve or a
    // payment decline, possibly after 409 payment_in_progress and a repeat) and a repeat of it
    // is byte-identical, no charge is left pending or paying once the capture worker settled,
    // and what left the wallets at the provider equals what the journal captured and what the
    // lanes, gates and ticket machines were told. Riders also buy tickets at the machines during
    // the run (QR scanned from the machine's image, paid in the wallet, ticket issued after the
    // provider's notification), degradation or not.
    let Some(report) = run_paid(Scenario::ProviderDegradation, 90.0, 9.0).await else {
        return;
    };
    assert!(report.outcomes["metro"]["approve"] > 0);
    assert!(report.outcomes["toll_exit"].values().sum::<u64>() > 0);
    let figures = report.provider.as_ref().expect("provider figures");
    assert!(figures.codes_ahead > 0 && figures.codes_during_run > 0);
    assert!(figures.toll_told_fen > 0 && figures.metro_told_fen > 0);
    assert_eq!(figures.wallets_paid_fen, figures.ledger_captured_fen);
    // Riders bought tickets at the machines: ordered, QR scanned and paid, ticket issued.
    let tickets = report.tickets.as_ref().expect("ticket purchases");
    assert!(tickets.counts.planned >= 2);
    assert_eq!(tickets.counts.issued, tickets.counts.planned);
    assert_eq!(tickets.counts.qr_scanned, tickets.counts.planned);
    assert!(figures.tickets_told_fen > 0);
    assert_eq!(figures.tickets_told_fen, tickets.counts.issued_minor);
    assert!(tickets.issue_latency_ms.p50 > 0.0);
    let toll = report
        .toll_exit_latency_ms
        .as_ref()
        .expect("toll exit latency");
    assert!(toll.p50 > 0.0 && toll.p50 <= toll.max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_with_the_provider_charges_uploaded_taps_exactly_as_told() {
    // Proves that when gates buffer taps offline and upload them later, the charges of the
    // uploaded exits (post-paid, toll exits included) are what left the wallets and what the
    // journal captured, together with the booth, gate and ticket-machine charges: the money
    // check holds across an outage.
    let Some(report) = run_paid(Scenario::Outage, 90.0, 9.0).await else {
        return;
    };
    assert!(report.offline.uploaded > 0 && report.offline.accepted > 0);
    let figures = report.provider.as_ref().expect("provider figures");
    assert!(figures.uploaded_told_fen > 0);
    assert_eq!(figures.wallets_paid_fen, figures.ledger_captured_fen);
    assert_eq!(
        report.tickets.as_ref().map(|t| t.counts.issued),
        report.tickets.as_ref().map(|t| t.counts.planned)
    );
}
