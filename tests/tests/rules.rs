//! Proves the gateway applies the tap rules exactly as `gateway::rules::journeys` states them:
//! random riders' metro and toll taps — pass-backs, exits without entry, replayed codes, the
//! same-station window, stale journeys, toll classes, a daily cap, days that cross midnight —
//! sent live in scan order to a real gateway (both databases), the sweeper run at the end; every
//! tap's answer and every stored journey (its taps, fare, charge after the cap, close reason and
//! business day) must equal what the pure rules give for the same taps. Time moves on the
//! gateway's clock, not the wall's. Seeds are printed on failure; `TURNPIKE_RULES_CASES` sets
//! the number of cases per database (default 100), `TURNPIKE_RULES_SEED` the first seed.
//!
//! `arrival_order_does_not_matter` then delivers taps out of scan order (offline uploads in random
//! order) and holds the gateway to `rules::pair` over the facts.

use std::collections::HashMap;

use gateway::network::OperatorNetwork;
use gateway::rules::{self, JourneyRules, RiderTap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use turnpike_client::demo::{demo_terminals, METRO_OPERATOR, TOLL_OPERATOR};
use turnpike_tests::{on_both, Db, Env};
use turnpike_wire::api::{Decision, Direction, TapRequest, TapResponse, VehicleClass};

const RIDERS_PER_CASE: usize = 3;
const TAPS_PER_RIDER_MAX: usize = 9;

/// A tap as planned: who, where, which way, when, and whether it re-shows an earlier code.
struct Planned {
    rider: usize,
    terminal: String,
    operator: &'static str,
    location: String,
    direction: Direction,
    at_ms: i64,
    class: Option<VehicleClass>,
    /// Shows the rider's previous code again (a replay, within the code's minute).
    replays: bool,
}

/// Gaps between a rider's taps: seconds (a pass-back, a replay), minutes (a ride, the
/// same-station window), hours (a stale journey), so every rule is met.
fn gap_ms(rng: &mut StdRng) -> i64 {
    match rng.gen_range(0..10) {
        0 => rng.gen_range(2_000..20_000),
        1..=5 => rng.gen_range(60_000..50 * 60_000),
        6 | 7 => rng.gen_range(50 * 60_000..3 * 3_600_000),
        _ => rng.gen_range(3 * 3_600_000..6 * 3_600_000),
    }
}

/// Riders who mostly ride — an entry, then an exit in the same mode, sometimes back at the same
/// station — and sometimes do what the rules are for: pass back, exit without entry, replay a
/// code, leave a journey open for hours.
fn plan(rng: &mut StdRng, start_ms: i64) -> Vec<Planned> {
    let terminals: Vec<(String, &'static str, String)> = demo_terminals()
        .into_iter()
        .filter(|(id, _, _)| !id.starts_with(turnpike_client::demo::TICKET_MACHINE_PREFIX))
        .collect();
    let pick = |rng: &mut StdRng, operator: &str, direction: Direction, at: Option<&str>| {
        let fits: Vec<&(String, &'static str, String)> = terminals
            .iter()
            .filter(|(id, op, location)| {
                *op == operator
                    && at.is_none_or(|at| at == location)
                    // Toll lanes are one way: `-in` takes entries, `-out` exits.
                    && (operator != TOLL_OPERATOR
                        || id.ends_with(if direction == Direction::Entry { "-in" } else { "-out" }))
            })
            .collect();
        fits[rng.gen_range(0..fits.len())].clone()
    };
    let mut taps: Vec<Planned> = Vec::new();
    for rider in 0..RIDERS_PER_CASE {
        let mut at = start_ms + rng.gen_range(0..60_000);
        // The rider's last entry: (operator, location), while they believe they are inside.
        let mut inside: Option<(&'static str, String)> = None;
        let mut last: Option<usize> = None;
        for _ in 0..rng.gen_range(2..=TAPS_PER_RIDER_MAX) {
            // Now and then the phone's previous code (not itself a replay) is shown again at a
            // metro gate within its minute.
            let replay = last.filter(|&l| {
                taps[l].operator == METRO_OPERATOR && !taps[l].replays && rng.gen_bool(0.1)
            });
            let (operator, direction, same_station) = match (&inside, replay) {
                (_, Some(l)) => (METRO_OPERATOR, taps[l].direction, false),
                (Some((operator, _)), None) if rng.gen_bool(0.7) => {
                    (*operator, Direction::Exit, rng.gen_bool(0.2))
                }
                _ => {
                    let operator = if rng.gen_bool(0.75) {
                        METRO_OPERATOR
                    } else {
                        TOLL_OPERATOR
                    };
                    let direction = if rng.gen_bool(0.8) {
                        Direction::Entry
                    } else {
                        Direction::Exit
                    };
                    (operator, direction, false)
                }
            };
            let at_station = inside
                .as_ref()
                .filter(|_| same_station && operator == METRO_OPERATOR)
                .map(|(_, location)| location.clone());
            let (terminal, operator, location) =
                pick(rng, operator, direction, at_station.as_deref());
            let at_ms = match replay {
                Some(l) => taps[l].at_ms + rng.gen_range(1_000..20_000),
                None if at_station.is_some() => at + rng.gen_range(60_000..30 * 60_000),
                None => at + gap_ms(rng),
            };
            at = at.max(at_ms);
            let class = (operator == TOLL_OPERATOR && direction == Direction::Exit).then(|| {
                [VehicleClass::P1, VehicleClass::P2, VehicleClass::T1][rng.gen_range(0..3)]
            });
            inside = match direction {
                Direction::Entry => Some((operator, location.clone())),
                Direction::Exit => None,
            };
            last = Some(taps.len());
            taps.push(Planned {
                rider,
                terminal,
                operator,
                location,
                direction,
                at_ms,
                class,
                replays: replay.is_some(),
            });
        }
    }
    taps
}

fn fingerprint(code: &str) -> [u8; 32] {
    gateway::api::sha256(code.as_bytes())
}

async fn rules_as_the_gateway_applies_them(db: Db) {
    let Some(env) = Env::start_custom(db, |_| {}, Some("12.00")).await else {
        return;
    };
    let gw = &env.gw;
    let config = &gw.state.config.journeys;
    let journey_rules = JourneyRules {
        incomplete_after_ms: config.incomplete_after_ms as i64,
        same_station_window_ms: config.same_station_window_ms as i64,
    };
    let cases: u64 = std::env::var("TURNPIKE_RULES_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let first_seed: u64 = std::env::var("TURNPIKE_RULES_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_204);
    // Device time = wall time + how far the gateway's clock was moved.
    let mut moved_ms: i64 = 0;
    let device_now = |moved: i64| turnpike_tests::now_ms() as i64 + moved;
    let mut sequences: HashMap<String, u64> = HashMap::new();
    let mut clients: HashMap<String, turnpike_client::TerminalClient> = HashMap::new();
    let mut taps_sent = 0;
    let mut seen: std::collections::BTreeMap<String, u64> = Default::default();
    for seed in first_seed..first_seed + cases {
        let mut rng = StdRng::seed_from_u64(seed);
        let riders = [gw.rider().await, gw.rider().await, gw.rider().await];
        let mut taps = plan(&mut rng, device_now(moved_ms) + 1_000);
        taps.sort_by_key(|t| t.at_ms);
        // Send each tap at its scan time on the gateway's clock, with a code made then (or the
        // code it replays).
        let mut codes: Vec<String> = Vec::new();
        let mut facts: Vec<Vec<RiderTap>> = vec![Vec::new(); riders.len()];
        let mut answers: Vec<Vec<String>> = vec![Vec::new(); riders.len()];
        for (n, t) in taps.iter().enumerate() {
            let ahead = t.at_ms - device_now(moved_ms);
            if ahead > 0 {
                gw.clock.advance(ahead as u64);
                moved_ms += ahead;
            }
            let rider = &riders[t.rider];
            let code = if t.replays {
                // The rider's previous tap in scan order is the one whose code is shown again
                // (the replay is planned between it and the rider's next tap).
                let previous = taps[..n]
                    .iter()
                    .rposition(|p| p.rider == t.rider)
                    .expect("a replay follows a tap of the same rider");
                codes[previous].clone()
            } else {
                rider.ride_code(t.at_ms as u64).unwrap()
            };
            codes.push(code.clone());
            let sequence = sequences.entry(t.terminal.clone()).or_insert(0);
            *sequence += 1;
            let request = TapRequest {
                sequence: *sequence,
                direction: t.direction,
                ride_code: code.clone(),
                scanned_at_ms: t.at_ms as u64,
                vehicle_class: t.class,
            };
            let client = clients
                .entry(t.terminal.clone())
                .or_insert_with(|| gw.terminal(&t.terminal));
            let answer: TapResponse = client
                .tap(&request)
                .await
                .unwrap_or_else(|e| panic!("seed {seed}: tap {n} ({}) failed: {e}", t.terminal));
            answers[t.rider].push(match answer.decision {
                Decision::Approve => "approve".into(),
                Decision::Decline => answer.reason.unwrap_or_default(),
            });
            facts[t.rider].push(RiderTap {
                terminal_id: t.terminal.clone(),
                sequence: *sequence,
                operator_id: t.operator.into(),
                location_id: t.location.clone(),
                direction: t.direction,
                scanned_at_ms: t.at_ms,
                vehicle_class: t.class,
                code: fingerprint(&code),
                products: rider.credential.body().products.bits(),
            });
            taps_sent += 1;
        }
        // The sweeper, once every journey left open is stale.
        let stale = journey_rules.incomplete_after_ms + 1;
        gw.clock.advance(stale as u64);
        moved_ms += stale;
        let as_of = gw.clock.now_ms();
        gateway::sweep_once(&gw.state).await.unwrap();
        let metro = gw.state.networks.get(METRO_OPERATOR).unwrap();
        let toll = gw.state.networks.get(TOLL_OPERATOR).unwrap();
        let networks: HashMap<String, &OperatorNetwork> = HashMap::from([
            (METRO_OPERATOR.to_string(), &*metro),
            (TOLL_OPERATOR.to_string(), &*toll),
        ]);
        for (r, rider) in riders.iter().enumerate() {
            let (decisions, expected) =
                rules::journeys(&journey_rules, &networks, &facts[r], as_of);
            let expected_answers: Vec<String> = decisions
                .iter()
                .map(|d| match d {
                    Ok(()) => "approve".to_string(),
                    Err(reason) => reason.as_str().to_string(),
                })
                .collect();
            assert_eq!(
                answers[r], expected_answers,
                "seed {seed}, rider {r}: answers differ from the rules"
            );
            for answer in &answers[r] {
                *seen.entry(answer.clone()).or_default() += 1;
            }
            let rider_id: i64 = rider.rider_id.parse().unwrap();
            let mut stored: Vec<_> = gw
                .state
                .store
                .journeys_of_rider(rider_id, 1_000)
                .await
                .unwrap()
                .into_iter()
                .map(|j| {
                    (
                        j.entry_terminal_id.zip(j.entry_sequence.map(|s| s as u64)),
                        j.exit_terminal_id.zip(j.exit_sequence.map(|s| s as u64)),
                        j.status,
                        j.close_reason,
                        j.fare_minor,
                        j.charge_minor,
                        j.business_day,
                    )
                })
                .collect();
            let mut wanted: Vec<_> = expected
                .into_iter()
                .map(|j| {
                    (
                        j.entry,
                        j.exit,
                        if j.priced.is_some() { "closed" } else { "open" }.to_string(),
                        j.priced
                            .as_ref()
                            .map(|p| p.close_reason.as_str().to_string()),
                        j.priced.as_ref().map(|p| p.fare.to_minor()),
                        j.charge.map(|c| c.to_minor()),
                        j.priced.map(|p| p.business_day),
                    )
                })
                .collect();
            stored.sort();
            wanted.sort();
            for j in &wanted {
                let reason = match &j.0 {
                    None => "exit without entry".to_string(),
                    Some(_) => j.3.clone().unwrap_or_else(|| "open".into()),
                };
                *seen.entry(format!("journey {reason}")).or_default() += 1;
            }
            assert_eq!(
                stored, wanted,
                "seed {seed}, rider {r}: stored journeys differ from the rules"
            );
        }
    }
    eprintln!("{cases} cases, {taps_sent} taps: the gateway agreed with the rules: {seen:?}");
    // The cases meet every rule (a generator that stopped doing so would prove little).
    for outcome in [
        "approve",
        "pass_back",
        "journey exit without entry",
        "replay",
        "journey exit",
        "journey same_station",
        "journey incomplete",
    ] {
        assert!(
            seen.contains_key(outcome),
            "no case met {outcome}: {seen:?}"
        );
    }
}
on_both!(rules_as_the_gateway_applies_them);

/// Proves order independence (issue 16): the same kind of random riders, but each tap either
/// live or kept by its gate offline and uploaded later — buffers uploaded at random moments in
/// random terminal order, some uploaded twice — so exits reach the gateway before their entries,
/// entries during journeys whose exit is still buffered, toll and metro interleaved, with a daily
/// cap. Afterwards (sweeper run) every rider's journeys and charges must equal
/// `rules::pair` over the facts in scan order: every offline tap (its gate admitted it) and
/// every live tap the gateway approved (what a gate was told live stands). Live taps that were
/// refused must be in no journey. `TURNPIKE_ORDER_CASES` sets the cases per database (default
/// 60), `TURNPIKE_RULES_SEED` the first seed.
/// A tap a gate kept offline: the request, whose it is, and the fact it records.
type Kept = (TapRequest, usize, rules::Fact);

async fn arrival_order_does_not_matter(db: Db) {
    let Some(env) = Env::start_custom(db, |_| {}, Some("12.00")).await else {
        return;
    };
    let gw = &env.gw;
    let journey_rules = gw.state.config.journeys.rules();
    let cases: u64 = std::env::var("TURNPIKE_ORDER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let first_seed: u64 = std::env::var("TURNPIKE_RULES_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_204);
    let mut moved_ms: i64 = 0;
    let device_now = |moved: i64| turnpike_tests::now_ms() as i64 + moved;
    let mut sequences: HashMap<String, u64> = HashMap::new();
    let mut clients: HashMap<String, turnpike_client::TerminalClient> = HashMap::new();
    let (mut live_sent, mut uploaded, mut reuploaded, mut late) = (0, 0, 0, 0);
    let mut journeys_checked = 0;
    let mut kinds: std::collections::BTreeMap<String, u64> = Default::default();
    for seed in first_seed..first_seed + cases {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0d0e);
        let riders = [gw.rider().await, gw.rider().await, gw.rider().await];
        let mut taps: Vec<Planned> = plan(&mut rng, device_now(moved_ms) + 1_000)
            .into_iter()
            .filter(|t| !t.replays)
            .collect();
        taps.sort_by_key(|t| t.at_ms);
        // Buffers per terminal: (request, rider, fact) in sequence order.
        let mut buffers: HashMap<String, Vec<Kept>> = HashMap::new();
        let mut facts: Vec<Vec<rules::Fact>> = vec![Vec::new(); riders.len()];
        let mut refused: Vec<Vec<(String, u64)>> = vec![Vec::new(); riders.len()];
        let mut uploads: Vec<(String, Vec<TapRequest>)> = Vec::new();
        let upload = |terminal: &str, batch: Vec<TapRequest>| {
            let client = gw.terminal(terminal);
            async move {
                let answer = client
                    .batch_raw(&turnpike_wire::api::TapBatchRequest { taps: batch })
                    .await
                    .unwrap();
                assert_eq!(answer.status, 200, "upload refused: {:?}", answer.body);
            }
        };
        for t in &taps {
            let ahead = t.at_ms - device_now(moved_ms);
            if ahead > 0 {
                gw.clock.advance(ahead as u64);
                moved_ms += ahead;
            }
            let rider = &riders[t.rider];
            let sequence = sequences.entry(t.terminal.clone()).or_insert(0);
            *sequence += 1;
            let request = TapRequest {
                sequence: *sequence,
                direction: t.direction,
                ride_code: rider.ride_code(t.at_ms as u64).unwrap(),
                scanned_at_ms: t.at_ms as u64,
                vehicle_class: t.class,
            };
            let fact = rules::Fact {
                terminal_id: t.terminal.clone(),
                sequence: *sequence,
                operator_id: t.operator.into(),
                location_id: t.location.clone(),
                direction: t.direction,
                scanned_at_ms: t.at_ms,
                vehicle_class: t.class,
            };
            if rng.gen_bool(0.5) {
                buffers
                    .entry(t.terminal.clone())
                    .or_default()
                    .push((request, t.rider, fact));
            } else {
                let client = clients
                    .entry(t.terminal.clone())
                    .or_insert_with(|| gw.terminal(&t.terminal));
                let answer: TapResponse = client
                    .tap(&request)
                    .await
                    .unwrap_or_else(|e| panic!("seed {seed}: live tap failed: {e}"));
                live_sent += 1;
                match answer.decision {
                    Decision::Approve => facts[t.rider].push(fact),
                    Decision::Decline => {
                        *kinds
                            .entry(format!("live {}", answer.reason.unwrap_or_default()))
                            .or_default() += 1;
                        refused[t.rider].push((fact.terminal_id, fact.sequence));
                    }
                }
            }
            // Now and then a gate comes back and uploads what it kept.
            if rng.gen_bool(0.2) && !buffers.is_empty() {
                let mut names: Vec<String> = buffers.keys().cloned().collect();
                names.sort();
                let name = names[rng.gen_range(0..names.len())].clone();
                let kept = buffers.remove(&name).unwrap();
                let batch: Vec<TapRequest> = kept.iter().map(|(r, ..)| r.clone()).collect();
                for (_, r, f) in kept {
                    facts[r].push(f);
                }
                uploaded += batch.len();
                upload(&name, batch.clone()).await;
                uploads.push((name, batch));
            }
        }
        // The rest come back in random order, after the last live tap.
        let mut rest: Vec<(String, Vec<Kept>)> = buffers.into_iter().collect();
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        while !rest.is_empty() {
            let (name, kept) = rest.swap_remove(rng.gen_range(0..rest.len()));
            let batch: Vec<TapRequest> = kept.iter().map(|(r, ..)| r.clone()).collect();
            for (_, r, f) in kept {
                facts[r].push(f);
            }
            late += batch.len();
            uploaded += batch.len();
            upload(&name, batch.clone()).await;
            uploads.push((name, batch));
        }
        // A gate that did not hear the answer uploads again: nothing changes.
        if !uploads.is_empty() {
            let (name, batch) = uploads[rng.gen_range(0..uploads.len())].clone();
            reuploaded += batch.len();
            upload(&name, batch).await;
        }
        // Every fact is in. When: only a journey still priced by policy (incomplete) waits out
        // `incomplete_after_ms` before it is collected; one its late tap completed is due now
        // (its charge and any further deduction), even when it costs what the policy charged.
        for _ in 0..200 {
            if gw.state.store.repairs_queued_count().await.unwrap() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let now = gw.clock.now_ms();
        let mut tx = gw.state.store.begin().await.unwrap();
        for rider in &riders {
            let rider_id: i64 = rider.rider_id.parse().unwrap();
            let journeys = gw
                .state
                .store
                .journeys_of_rider(rider_id, 1_000)
                .await
                .unwrap();
            for j in journeys.iter().filter(|j| {
                j.status == "closed"
                    && j.close_reason.as_deref() != Some(rules::CloseReason::Incomplete.as_str())
            }) {
                let (main, corrections) =
                    gateway::store::repairs::journey_charges(&mut tx, j.journey_id)
                        .await
                        .unwrap();
                for c in main.iter().chain(&corrections) {
                    assert!(
                        c.status != gateway::store::charging::ChargeStatus::Pending
                            || c.next_attempt_at_ms <= now,
                        "seed {seed}: a completed journey's charge waits as if priced by \
                         policy: {c:?}"
                    );
                }
            }
        }
        tx.rollback().await.unwrap();
        let stale = journey_rules.incomplete_after_ms + 1;
        gw.clock.advance(stale as u64);
        moved_ms += stale;
        let as_of = gw.clock.now_ms();
        gateway::sweep_once(&gw.state).await.unwrap();
        let metro = gw.state.networks.get(METRO_OPERATOR).unwrap();
        let toll = gw.state.networks.get(TOLL_OPERATOR).unwrap();
        let networks: HashMap<String, &OperatorNetwork> = HashMap::from([
            (METRO_OPERATOR.to_string(), &*metro),
            (TOLL_OPERATOR.to_string(), &*toll),
        ]);
        for (r, rider) in riders.iter().enumerate() {
            let mut rider_facts = facts[r].clone();
            rider_facts.sort_by(rules::Fact::scan_order);
            let expected = rules::pair(
                &journey_rules,
                &networks,
                &rider_facts,
                as_of,
                HashMap::new(),
            );
            let key = |i: Option<usize>| {
                i.map(|i| (rider_facts[i].terminal_id.clone(), rider_facts[i].sequence))
            };
            let mut wanted: Vec<_> = expected
                .iter()
                .map(|j| {
                    (
                        key(j.entry),
                        key(j.exit),
                        if j.priced.is_some() { "closed" } else { "open" }.to_string(),
                        j.priced
                            .as_ref()
                            .map(|p| p.close_reason.as_str().to_string()),
                        j.priced.as_ref().map(|p| p.fare.to_minor()),
                        j.charge.map(|c| c.to_minor()),
                        j.priced.as_ref().map(|p| p.business_day.clone()),
                    )
                })
                .collect();
            let rider_id: i64 = rider.rider_id.parse().unwrap();
            let stored_journeys = gw
                .state
                .store
                .journeys_of_rider(rider_id, 1_000)
                .await
                .unwrap();
            let mut stored: Vec<_> = stored_journeys
                .iter()
                .map(|j| {
                    (
                        j.entry_terminal_id
                            .clone()
                            .zip(j.entry_sequence.map(|s| s as u64)),
                        j.exit_terminal_id
                            .clone()
                            .zip(j.exit_sequence.map(|s| s as u64)),
                        j.status.clone(),
                        j.close_reason.clone(),
                        j.fare_minor,
                        j.charge_minor,
                        j.business_day.clone(),
                    )
                })
                .collect();
            stored.sort();
            wanted.sort();
            assert_eq!(
                stored, wanted,
                "seed {seed}, rider {r}: stored journeys differ from the rules over the facts"
            );
            for refused in &refused[r] {
                assert!(
                    !stored
                        .iter()
                        .any(|j| j.0.as_ref() == Some(refused) || j.1.as_ref() == Some(refused)),
                    "seed {seed}, rider {r}: a tap refused live is in a journey"
                );
            }
            // Money: what is left to collect from the rider equals what the journeys charge.
            let owed: i64 = wanted.iter().filter_map(|j| j.5).sum();
            let charges = gw
                .state
                .store
                .charges(Some(rider_id), None, 1_000)
                .await
                .unwrap();
            let to_collect: i64 = charges
                .iter()
                .filter(|c| c.status != gateway::store::charging::ChargeStatus::Cancelled)
                .map(|c| c.amount_minor - c.refunded_minor)
                .sum();
            assert_eq!(to_collect, owed, "seed {seed}, rider {r}: charges differ");
            for j in &wanted {
                let what = match (&j.0, &j.1) {
                    (None, _) => "exit without entry".to_string(),
                    (_, None) if j.2 == "closed" => "incomplete".to_string(),
                    _ => j.3.clone().unwrap_or_else(|| "open".into()),
                };
                *kinds.entry(format!("journey {what}")).or_default() += 1;
            }
            journeys_checked += wanted.len();
        }
    }
    eprintln!(
        "{cases} cases: {live_sent} live taps, {uploaded} uploaded ({late} after the last live \
         tap), {reuploaded} uploaded twice; {journeys_checked} journeys equal the rules: {kinds:?}"
    );
    for kind in [
        "journey exit without entry",
        "journey incomplete",
        "journey exit",
    ] {
        assert!(kinds.contains_key(kind), "no case met {kind}: {kinds:?}");
    }
}
on_both!(arrival_order_does_not_matter);
