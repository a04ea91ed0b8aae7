//! Scenarios: what traffic a run offers, what each kind of tap is expected to get, and the
//! expected-vs-observed checks of the report.
//!
//! Every planned tap carries a *class* (`journey`, `replay`, `forged_device_signature`, …); the
//! scenario states one expected outcome per class, and the report compares it with what the
//! gateway answered for every tap of the class. A check passes only if every tap of the class
//! got the expected outcome (and there was at least one).

use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use turnpike_wire::api::Direction;
use turnpike_wire::api::VehicleClass;

use crate::demand::{plan_journeys, Burst, Demand, Mode, Shape};
use crate::network::Fleet;
use crate::recorder::Recorder;
use crate::tickets::{PlannedPurchase, PURCHASES_MIN, PURCHASES_PER_JOURNEY};

/// The scenarios, selectable by name (`terminal-sim run --scenario NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Constant rate, origin–destination journeys on the metro and the toll road.
    Normal,
    /// A day compressed into the run (morning and evening peaks) with trains arriving in bursts.
    RushHour,
    /// Normal traffic plus codes shown again at another gate: every replay must be declined.
    ReplayedCodes,
    /// Normal traffic plus codes with a tampered device signature or credential.
    ForgedCodes,
    /// Normal traffic plus screenshots of codes 90 s old.
    ExpiredCodes,
    /// Journeys from phones and gates with wrong clocks, inside and outside the tolerances.
    ClockSkew,
    /// The gateway becomes unreachable for the middle third of the run; gates admit riders
    /// offline, buffer their taps durably and upload them when the link returns.
    Outage,
    /// Needs the provider sandbox (`--provider-sandbox`): a third of the journeys are on the
    /// toll road, paid at the exit booth with wallet payment codes, and for the middle third of
    /// the run the provider is degraded (200–800 ms latency on pay and query, 10% hangs past the
    /// gateway's call timeout, 10% HTTP 5xx). Metro never waits for the provider; every toll exit
    /// gets one final answer; afterwards every charge settles and the money adds up.
    ProviderDegradation,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Normal => "normal",
            Scenario::RushHour => "rush-hour",
            Scenario::ReplayedCodes => "replayed-codes",
            Scenario::ForgedCodes => "forged-codes",
            Scenario::ExpiredCodes => "expired-codes",
            Scenario::ClockSkew => "clock-skew",
            Scenario::Outage => "outage",
            Scenario::ProviderDegradation => "provider-degradation",
        }
    }

    /// Whether the scenario needs the provider sandbox.
    pub fn needs_provider(self) -> bool {
        self == Scenario::ProviderDegradation
    }
}

/// The final answers a toll exit paid at the booth may get besides approve.
pub const PAYMENT_DECLINES: &[&str] =
    &["payment_failed", "payment_declined", "provider_unavailable"];

/// How the phone made the code a tap shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// Generated at the scan (the phone's clock off by `device_clock_offset_ms`).
    Fresh,
    /// The exact code of an earlier planned tap (by index), shown again.
    ReplayOf(usize),
    /// A fresh code with one bit of the device signature flipped.
    ForgedDeviceSignature,
    /// A fresh code whose credential's rider id was altered (the issuer signature no longer holds).
    ForgedCredential,
    /// A screenshot: generated this long before the scan.
    Aged { age_ms: u64 },
}

/// One tap to make at a scheduled time.
#[derive(Debug, Clone)]
pub struct PlannedTap {
    /// Seconds from the start of the run.
    pub at_s: f64,
    pub terminal: usize,
    pub direction: Direction,
    pub rider: usize,
    pub vehicle_class: Option<VehicleClass>,
    pub code: CodeKind,
    /// The phone's clock minus true time.
    pub device_clock_offset_ms: i64,
    /// The gate's clock minus true time (sets `scanned_at_ms`).
    pub gate_clock_offset_ms: i64,
    pub class: &'static str,
}

/// The outcome a class of taps should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Approve,
    Decline(&'static str),
    /// An HTTP error answer with this status and error code.
    Refused(u16, &'static str),
    /// Approve, or one of these decline reasons (outcomes the rules allow, e.g. when gates
    /// upload offline batches in an order other than the scans').
    ApproveOr(&'static [&'static str]),
}

impl Expected {
    /// The observed-outcome key this expectation matches (see [`crate::recorder::outcome_key`]).
    pub fn key(self) -> String {
        match self {
            Expected::Approve => "approve".into(),
            Expected::Decline(reason) => format!("decline {reason}"),
            Expected::Refused(status, code) => format!("http {status} {code}"),
            Expected::ApproveOr(reasons) => format!("approve or decline {}", reasons.join("/")),
        }
    }

    /// Whether an observed outcome key meets this expectation.
    pub fn matches(self, key: &str) -> bool {
        match self {
            Expected::ApproveOr(reasons) => {
                key == "approve"
                    || reasons
                        .iter()
                        .any(|r| key.strip_prefix("decline ") == Some(*r))
            }
            _ => key == self.key(),
        }
    }
}

/// When the gates lose their link, in seconds from the start.
#[derive(Debug, Clone, Copy)]
pub struct OutageWindow {
    pub from_s: f64,
    pub until_s: f64,
}

/// When the provider sandbox is degraded, in seconds from the start.
#[derive(Debug, Clone, Copy)]
pub struct DegradationWindow {
    pub from_s: f64,
    pub until_s: f64,
}

/// A run's plan: taps in time order, expectations per class, riders needed.
pub struct Plan {
    pub scenario: Scenario,
    pub duration_s: f64,
    pub rate_per_s: f64,
    pub taps: Vec<PlannedTap>,
    /// Tickets bought at the stations' machines, in time order (runs with the provider only).
    pub purchases: Vec<PlannedPurchase>,
    pub expectations: Vec<(&'static str, Expected)>,
    pub riders: usize,
    pub outage: Option<OutageWindow>,
    pub degradation: Option<DegradationWindow>,
    /// What the planned journeys that end within the run cost at the demo fares (fen): what
    /// riders owe when every journey is priced as planned, however its taps reached the gateway.
    pub planned_fares_minor: i64,
}

fn gate_of(fleet: &Fleet, rng: &mut impl Rng, mode: Mode, place: usize, dir: Direction) -> usize {
    match mode {
        Mode::Metro => *fleet.stations[place]
            .choose(rng)
            .expect("a station has gates"),
        Mode::Toll => match dir {
            Direction::Entry => fleet.plazas[place].0,
            Direction::Exit => fleet.plazas[place].1,
        },
    }
}

/// Builds the plan of `scenario` at `rate_per_s` taps per second (the peak rate for rush hour)
/// for `duration_s` seconds; with `tickets`, riders also buy tickets at the machines
/// ([`PURCHASES_PER_JOURNEY`]).
pub fn plan(
    scenario: Scenario,
    fleet: &Fleet,
    rate_per_s: f64,
    duration_s: f64,
    tickets: bool,
    rng: &mut impl Rng,
) -> Plan {
    let stations = fleet.stations.len();
    let busiest = stations / 2;
    let mut demand = Demand {
        rate_per_s,
        shape: Shape::Constant,
        bursts: Vec::new(),
        toll_share: 0.1,
        dedicated_drivers: false,
    };
    if scenario == Scenario::ProviderDegradation {
        demand.toll_share = 0.3;
        demand.dedicated_drivers = true;
    }
    if scenario == Scenario::RushHour {
        demand.shape = Shape::DayCurve;
        // A train at the busiest station in each peak; its exits arrive within two seconds.
        let exits = ((rate_per_s * 0.5) as usize).max(20);
        for share in [0.17, 0.68] {
            demand.bursts.push(Burst {
                at_s: (duration_s * share).max(2.0),
                station: busiest,
                exits,
                spread_s: 2.0,
            });
        }
    }
    let (journeys, riders) = plan_journeys(&demand, duration_s, stations, fleet.plazas.len(), rng);
    let mut taps = Vec::with_capacity(journeys.len() * 2);
    let mut expectations = vec![("journey", Expected::Approve)];
    let planned_fares_minor = planned_fares(fleet, &journeys, duration_s);
    for journey in &journeys {
        let burst = journey.mode == Mode::Metro
            && journey.destination == busiest
            && scenario == Scenario::RushHour
            && demand
                .bursts
                .iter()
                .any(|b| journey.exit_s >= b.at_s && journey.exit_s <= b.at_s + b.spread_s);
        let mut class = if burst { "train_burst" } else { "journey" };
        if scenario == Scenario::ProviderDegradation {
            class = match journey.mode {
                Mode::Metro => "metro",
                Mode::Toll => "toll_entry",
            };
        }
        let (mut device, mut gate) = (0i64, 0i64);
        if scenario == Scenario::ClockSkew && journey.mode == Mode::Metro {
            // One journey in five has a clock problem; which one decides what must happen.
            match rng.gen_range(0..20) {
                0 => (class, device) = ("device_clock_ahead_3s", 3_000),
                1 => (class, device) = ("device_clock_ahead_10s", 10_000),
                2 => (class, device) = ("device_clock_behind_30s", -30_000),
                3 => (class, gate) = ("gate_clock_ahead_45s", 45_000),
                _ => {}
            }
        }
        for (at_s, place, direction) in [
            (journey.entry_s, journey.origin, Direction::Entry),
            (journey.exit_s, journey.destination, Direction::Exit),
        ] {
            if at_s >= duration_s {
                continue;
            }
            taps.push(PlannedTap {
                at_s,
                terminal: gate_of(fleet, rng, journey.mode, place, direction),
                direction,
                rider: journey.rider,
                vehicle_class: match direction {
                    Direction::Exit => journey.vehicle_class,
                    Direction::Entry => None,
                },
                code: CodeKind::Fresh,
                device_clock_offset_ms: device,
                gate_clock_offset_ms: gate,
                class: match (class, direction) {
                    ("toll_entry", Direction::Exit) => "toll_exit",
                    _ => class,
                },
            });
        }
    }
    if scenario == Scenario::RushHour {
        expectations.push(("train_burst", Expected::Approve));
    }
    if scenario == Scenario::ClockSkew {
        expectations.extend([
            ("device_clock_ahead_3s", Expected::Approve),
            (
                "device_clock_ahead_10s",
                Expected::Decline("code_from_future"),
            ),
            ("device_clock_behind_30s", Expected::Approve),
            (
                "gate_clock_ahead_45s",
                Expected::Refused(422, "scan_time_in_future"),
            ),
        ]);
    }
    // Extra taps that must be declined: a tenth of the journey taps.
    let extra = |taps: &Vec<PlannedTap>| (taps.len() / 10).max(4);
    match scenario {
        Scenario::ReplayedCodes => {
            // Someone re-shows a code just used (a photo of the screen) at a gate of another
            // station, 200 ms later, in the same direction.
            let originals: Vec<usize> = (0..taps.len())
                .filter(|&i| taps[i].class == "journey" && taps[i].vehicle_class.is_none())
                .collect();
            for _ in 0..extra(&taps) {
                let Some(&i) = originals.choose(rng) else {
                    break;
                };
                let original = taps[i].clone();
                if original.at_s + 0.2 >= duration_s {
                    continue;
                }
                let Some(station) = (0..stations)
                    .filter(|&s| !fleet.stations[s].contains(&original.terminal))
                    .collect::<Vec<_>>()
                    .choose(rng)
                    .copied()
                else {
                    continue;
                };
                taps.push(PlannedTap {
                    at_s: original.at_s + 0.2,
                    terminal: gate_of(fleet, rng, Mode::Metro, station, original.direction),
                    code: CodeKind::ReplayOf(i),
                    class: "replay",
                    ..original
                });
            }
            expectations.push(("replay", Expected::Decline("replay")));
        }
        Scenario::ForgedCodes | Scenario::ExpiredCodes => {
            let count = extra(&taps);
            for n in 0..count {
                let (code, class) = match (scenario, n % 2) {
                    (Scenario::ExpiredCodes, _) => (CodeKind::Aged { age_ms: 90_000 }, "expired"),
                    (_, 0) => (CodeKind::ForgedDeviceSignature, "forged_device_signature"),
                    _ => (CodeKind::ForgedCredential, "forged_credential"),
                };
                taps.push(PlannedTap {
                    at_s: rng.gen::<f64>() * duration_s * 0.95,
                    terminal: *fleet.stations[rng.gen_range(0..stations)]
                        .choose(rng)
                        .expect("gates"),
                    direction: Direction::Entry,
                    rider: rng.gen_range(0..riders.max(1)),
                    vehicle_class: None,
                    code,
                    device_clock_offset_ms: 0,
                    gate_clock_offset_ms: 0,
                    class,
                });
            }
            if scenario == Scenario::ExpiredCodes {
                expectations.push(("expired", Expected::Decline("code_expired")));
            } else {
                expectations.push((
                    "forged_device_signature",
                    Expected::Decline("bad_device_signature"),
                ));
                expectations.push((
                    "forged_credential",
                    Expected::Decline("bad_issuer_signature"),
                ));
            }
        }
        _ => {}
    }
    if scenario == Scenario::Outage {
        // Gates upload their buffers independently, so the gateway may see a rider's buffered
        // exit before the entry buffered at another gate (`no_entry`), and then their next entry
        // while that entry's journey is open (`pass_back`). Taps before the outage must all pass.
        let (from, until) = (duration_s / 3.0, duration_s * 2.0 / 3.0);
        for tap in &mut taps {
            tap.class = if tap.at_s < from {
                "before_outage"
            } else if tap.at_s < until {
                "during_outage"
            } else {
                "after_outage"
            };
        }
        // Every gate uploads its buffer before the gates go live again, and an uploaded tap the
        // gate admitted is a fact (docs/taps.md): every tap is approved, and every journey is
        // priced as planned once the rider's journeys are re-paired.
        expectations = vec![
            ("before_outage", Expected::Approve),
            ("during_outage", Expected::Approve),
            ("after_outage", Expected::Approve),
        ];
    }
    if scenario == Scenario::ProviderDegradation {
        expectations = vec![
            ("metro", Expected::Approve),
            ("toll_entry", Expected::Approve),
            ("toll_exit", Expected::ApproveOr(PAYMENT_DECLINES)),
        ];
    }
    // Sort by time, keeping replay references pointing at the right taps.
    let mut order: Vec<usize> = (0..taps.len()).collect();
    order.sort_by(|&a, &b| taps[a].at_s.total_cmp(&taps[b].at_s));
    let mut new_index = vec![0; taps.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let mut sorted: Vec<PlannedTap> = order.iter().map(|&i| taps[i].clone()).collect();
    for tap in &mut sorted {
        if let CodeKind::ReplayOf(i) = tap.code {
            tap.code = CodeKind::ReplayOf(new_index[i]);
        }
    }
    let purchases = if tickets {
        plan_purchases(scenario, fleet, journeys.len(), riders, duration_s, rng)
    } else {
        Vec::new()
    };
    Plan {
        scenario,
        duration_s,
        rate_per_s,
        taps: sorted,
        purchases,
        expectations,
        riders,
        outage: (scenario == Scenario::Outage).then_some(OutageWindow {
            from_s: duration_s / 3.0,
            until_s: duration_s * 2.0 / 3.0,
        }),
        planned_fares_minor,
        degradation: (scenario == Scenario::ProviderDegradation).then_some(DegradationWindow {
            from_s: duration_s / 3.0,
            until_s: duration_s * 2.0 / 3.0,
        }),
    }
}

/// Tickets bought at random stations' machines for random other stations, by random riders of
/// the run, spread over it (before the outage, when there is one: a machine without a link sells
/// nothing).
fn plan_purchases(
    scenario: Scenario,
    fleet: &Fleet,
    journeys: usize,
    riders: usize,
    duration_s: f64,
    rng: &mut impl Rng,
) -> Vec<PlannedPurchase> {
    let metro = turnpike_fares::demo_metro();
    let stops = metro.stops();
    if stops.len() < 2 || riders == 0 {
        return Vec::new();
    }
    let until_s = match scenario {
        Scenario::Outage => duration_s / 3.0,
        _ => duration_s,
    } * 0.9;
    let count = ((journeys as f64 * PURCHASES_PER_JOURNEY).round() as usize).max(PURCHASES_MIN);
    let mut out: Vec<PlannedPurchase> = (0..count)
        .map(|_| {
            let origin = rng.gen_range(0..stops.len());
            let destination = (origin + rng.gen_range(1..stops.len())) % stops.len();
            let (from, to) = (&stops[origin].id, &stops[destination].id);
            PlannedPurchase {
                at_s: rng.gen::<f64>() * until_s,
                machine: fleet.machines[origin],
                destination: to.clone(),
                rider: rng.gen_range(0..riders),
                expected_minor: metro
                    .price(from, to)
                    .expect("the demo metro prices every pair")
                    .to_minor(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    out
}

/// The demo fares of the journeys that end before `duration_s`.
fn planned_fares(fleet: &Fleet, journeys: &[crate::demand::Journey], duration_s: f64) -> i64 {
    let metro = turnpike_fares::demo_metro();
    let toll = turnpike_fares::demo_toll();
    let location = |terminal: usize| fleet.terminals[terminal].location.as_str();
    journeys
        .iter()
        .filter(|j| j.exit_s < duration_s)
        .map(|j| match j.mode {
            Mode::Metro => {
                let from = location(fleet.stations[j.origin][0]);
                let to = location(fleet.stations[j.destination][0]);
                metro.price(from, to).map_or(0, |m| m.to_minor())
            }
            Mode::Toll => {
                let from = location(fleet.plazas[j.origin].0);
                let to = location(fleet.plazas[j.destination].1);
                j.vehicle_class
                    .and_then(|class| toll.toll(from, to, class).ok())
                    .map_or(0, |m| m.to_minor())
            }
        })
        .sum()
}

/// One expected-vs-observed line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub expected: String,
    pub observed: String,
    pub passed: bool,
}

fn describe(counts: &std::collections::BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The checks of a finished run.
pub fn checks(plan: &Plan, rec: &Recorder) -> Vec<Check> {
    let mut out = Vec::new();
    for (class, expected) in &plan.expectations {
        let empty = Default::default();
        let counts = rec.classes.get(class).unwrap_or(&empty);
        let total: u64 = counts.values().sum();
        let key = expected.key();
        out.push(Check {
            name: format!("every {class} tap: {key}"),
            expected: format!("{total} {key}"),
            observed: describe(counts),
            passed: total > 0 && counts.keys().all(|k| expected.matches(k)),
        });
    }
    out.push(Check {
        name: "no transport or server errors".into(),
        expected: "0 errors".into(),
        observed: format!("{} errors", rec.errors),
        passed: rec.errors == 0,
    });
    out.push(Check {
        name: "gate (offline) and gateway agree on every code the gate refused".into(),
        expected: "0 disagreements".into(),
        observed: format!(
            "{} refused by the gate, {} disagreements",
            rec.gate_refused, rec.disagreements
        ),
        passed: rec.disagreements == 0,
    });
    if matches!(plan.scenario, Scenario::Normal | Scenario::RushHour) {
        out.push(Check {
            name: "fares vary with origin and destination".into(),
            expected: "at least 3 distinct fares".into(),
            observed: format!("{} distinct fares", rec.fares.len()),
            passed: rec.fares.len() >= 3,
        });
    }
    if plan.outage.is_some() {
        let o = &rec.offline;
        out.push(Check {
            name: "taps made during the outage were buffered".into(),
            expected: "more than 0 buffered".into(),
            observed: format!("{} buffered", o.buffered),
            passed: o.buffered > 0,
        });
        out.push(Check {
            name: "every buffered tap uploaded when the link returned".into(),
            expected: format!("{} uploaded", o.buffered),
            observed: format!("{} uploaded", o.uploaded),
            passed: o.uploaded == o.buffered,
        });
        out.push(Check {
            name: "every uploaded tap answered (approved or declined)".into(),
            expected: format!("{} answered", o.uploaded),
            observed: format!("{} approved, {} declined", o.accepted, o.declined),
            passed: o.accepted + o.declined == o.uploaded,
        });
        out.push(Check {
            name: "uploading a batch again returns identical bytes".into(),
            expected: "all re-uploads identical".into(),
            observed: format!(
                "{} identical, {} different",
                o.reupload_identical, o.reupload_different
            ),
            passed: o.reupload_identical > 0 && o.reupload_different == 0,
        });
    }
    out
}

/// The checks of a run with the payment provider (toll exits paid at the booth, wallets bound),
/// from what the lanes saw and what the gateway and the sandbox hold after settling.
pub fn provider_checks(
    plan: &Plan,
    rec: &Recorder,
    figures: &crate::provider::ProviderFigures,
) -> Vec<Check> {
    let p = &rec.paid;
    let toll_exits = plan
        .taps
        .iter()
        .filter(|t| t.direction == Direction::Exit && t.vehicle_class.is_some())
        .count() as u64;
    let toll_exits = toll_exits.saturating_sub(p.toll_exits_buffered);
    // After an outage some journeys were paired only when the last of their taps was uploaded,
    // so no gate was told their fare: every planned journey is what riders owe then.
    let told = if plan.outage.is_some() {
        plan.planned_fares_minor + figures.tickets_told_fen
    } else {
        figures.toll_told_fen
            + figures.metro_told_fen
            + figures.tickets_told_fen
            + figures.uploaded_told_fen
    };
    let mut out = vec![
        Check {
            name: "every toll exit paid at the booth got exactly one final answer".into(),
            expected: format!("{toll_exits} final answers, 0 unfinished"),
            observed: format!(
                "{} final, {} unfinished; {} answered 409 payment_in_progress first and were \
                 final on repeat ({} repeats)",
                p.toll_exits_final,
                p.toll_exits_unfinished,
                p.toll_exits_in_progress,
                p.toll_exit_repeats
            ),
            passed: p.toll_exits_final == toll_exits && p.toll_exits_unfinished == 0,
        },
        Check {
            name: "a final toll-exit answer repeated is byte-identical".into(),
            expected: format!("{} identical", p.toll_exits_final),
            observed: format!(
                "{} identical, {} different",
                p.final_repeat_identical, p.final_repeat_different
            ),
            passed: p.final_repeat_different == 0 && p.final_repeat_identical == p.toll_exits_final,
        },
        Check {
            name: "after settling, no charge of the run is pending or paying".into(),
            expected: "0 pending, 0 paying".into(),
            observed: format!(
                "{} pending, {} paying ({} ms after the run)",
                figures.pending_after, figures.paying_after, figures.settle_ms
            ),
            passed: figures.pending_after == 0 && figures.paying_after == 0,
        },
        Check {
            name: "paid at the provider = captured in the journal = charged at lanes, gates and \
                   ticket machines"
                .into(),
            expected: if plan.outage.is_some() {
                format!(
                    "{told} fen (planned journeys {} + tickets {}; told live: toll {} + metro {}, \
                     at upload {})",
                    plan.planned_fares_minor,
                    figures.tickets_told_fen,
                    figures.toll_told_fen,
                    figures.metro_told_fen,
                    figures.uploaded_told_fen
                )
            } else {
                format!(
                    "{told} fen (toll {} + metro {} + tickets {} + uploaded offline {})",
                    figures.toll_told_fen,
                    figures.metro_told_fen,
                    figures.tickets_told_fen,
                    figures.uploaded_told_fen
                )
            },
            observed: format!(
                "wallets paid {} fen, journal provider_clearing + provider_fees {} fen",
                figures.wallets_paid_fen, figures.ledger_captured_fen
            ),
            passed: figures.wallets_paid_fen == figures.ledger_captured_fen
                && figures.ledger_captured_fen == told,
        },
        Check {
            name: "every journal transaction balances".into(),
            expected: "0 unbalanced".into(),
            observed: format!("{} unbalanced", figures.ledger_unbalanced_transactions),
            passed: figures.ledger_unbalanced_transactions == 0,
        },
    ];
    if !plan.purchases.is_empty() {
        out.extend(ticket_checks(plan, &rec.tickets));
    }
    if let Some(window) = plan.degradation {
        out.push(Check {
            name: "the provider was degraded for the middle third, then restored".into(),
            expected: format!(
                "degraded from {:.1} s, restored at {:.1} s",
                window.from_s, window.until_s
            ),
            observed: match (p.degraded_from_s, p.restored_at_s) {
                (Some(a), Some(b)) => format!("degraded from {a:.1} s, restored at {b:.1} s"),
                (Some(a), None) => format!("degraded from {a:.1} s, never restored"),
                _ => "never degraded".into(),
            },
            passed: p.degraded_from_s.is_some() && p.restored_at_s.is_some(),
        });
    }
    out
}

/// The checks of the ticket machines' purchases.
fn ticket_checks(plan: &Plan, t: &crate::tickets::TicketCounts) -> Vec<Check> {
    let planned = plan.purchases.len() as u64;
    vec![
        Check {
            name: "every ticket ordered at a machine was paid by QR and issued".into(),
            expected: format!("{planned} ordered, paid and issued"),
            observed: format!(
                "{} ordered, {} paid at the provider, {} issued, {} not issued within {} s, {} failed",
                t.ordered,
                t.paid_at_provider,
                t.issued,
                t.unfinished,
                crate::tickets::ISSUE_WITHIN.as_secs(),
                t.failed
            ),
            passed: t.ordered == planned && t.paid_at_provider == planned && t.issued == planned,
        },
        Check {
            name: "every QR a machine showed scans to its order's payload".into(),
            expected: format!("{} scanned", t.ordered),
            observed: format!("{} scanned, {} different", t.qr_scanned, t.qr_mismatched),
            passed: t.qr_scanned == t.ordered && t.qr_mismatched == 0,
        },
        Check {
            name: "every ticket costs the fare table's price from the machine's station".into(),
            expected: format!("{} at the fare table's price", t.ordered),
            observed: format!("{} at another price", t.price_mismatched),
            passed: t.price_mismatched == 0,
        },
        Check {
            name: "an order request sent again returns the same paid order".into(),
            expected: format!("{} the same", t.issued),
            observed: format!(
                "{} the same, {} different",
                t.repeat_same_order, t.repeat_different
            ),
            passed: t.repeat_same_order == t.issued && t.repeat_different == 0,
        },
    ]
}
