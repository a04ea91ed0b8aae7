//! Live passenger flow end to end (docs/flow.md): taps through the running gateway, in a random
//! order per seed, sent concurrently so they share tap groups, each sent twice (a gate's retry
//! of the same sequence) and some codes shown again at a second gate of the same station (a
//! replay: declined). The per-station, per-minute counts the tap writers keep must equal the
//! pure count (`flow::tally`) over the distinct passages — nothing counted twice, nothing lost —
//! on both databases.

use std::collections::{BTreeMap, HashMap};

use gateway::flow::{self, Passage};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use turnpike_client::demo::{demo_terminals, METRO_OPERATOR};
use turnpike_tests::{both_backends, demo_stops, gate, now_ms, Env};
use turnpike_wire::api::{Decision, Direction, TapRequest};

type Counts = BTreeMap<(String, i64), (i64, i64)>;

/// Sends `taps` (terminal, request) concurrently in the given order; returns the decisions.
async fn send_all(env: &Env, taps: &[(String, TapRequest)]) -> Vec<Decision> {
    let mut set = tokio::task::JoinSet::new();
    for (n, (terminal, req)) in taps.iter().enumerate() {
        let client = env.gw.terminal(terminal);
        let req = req.clone();
        set.spawn(async move { (n, client.tap(&req).await.expect("tap answered").decision) });
    }
    let mut out = vec![Decision::Decline; taps.len()];
    while let Some(done) = set.join_next().await {
        let (n, decision) = done.unwrap();
        out[n] = decision;
    }
    out
}

/// The counts the store holds for the metro, per (station, minute), over `[from, to)`.
async fn stored(env: &Env, from: i64, to: i64) -> Counts {
    let store = &env.gw.state.store;
    let mut out = Counts::new();
    for (station, _) in store.flow_totals(METRO_OPERATOR, from, to).await.unwrap() {
        for (minute, t) in store
            .flow_minutes(METRO_OPERATOR, &station, from, to)
            .await
            .unwrap()
        {
            out.insert((station.clone(), minute), (t.entries, t.exits));
        }
    }
    out
}

both_backends!(
    flow_counts_equal_the_distinct_passages,
    |env: Env| async move {
        let stops = demo_stops();
        let location: HashMap<String, String> = demo_terminals()
            .into_iter()
            .map(|(id, _, loc)| (id, loc))
            .collect();
        let mut sequences: HashMap<String, u64> = HashMap::new();
        let mut next = |id: &str| {
            let s = sequences.entry(id.to_string()).or_insert(0);
            *s += 1;
            *s
        };
        let start_minute = flow::minute_of(now_ms() as i64);
        // Every distinct passage sent so far, as (terminal, request).
        let mut distinct: Vec<(String, TapRequest)> = Vec::new();
        for seed in [1u64, 2, 3] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut riders = Vec::new();
            for _ in 0..8 {
                let o = rng.gen_range(0..stops.len());
                let d = (o + rng.gen_range(1..stops.len())) % stops.len();
                riders.push((env.gw.rider().await, o, d));
            }
            // Phase 1 the entries, phase 2 the exits (an exit judged before its entry would be
            // declined live, which is the rules' business, not the count's).
            for direction in [Direction::Entry, Direction::Exit] {
                let mut sends = Vec::new();
                for (rider, o, d) in &riders {
                    let (stop, n) = match direction {
                        Direction::Entry => (&stops[*o], 1),
                        Direction::Exit => (&stops[*d], 2),
                    };
                    let id = gate(stop, n);
                    let at = now_ms();
                    let req = TapRequest {
                        sequence: next(&id),
                        direction,
                        ride_code: rider.ride_code(at).unwrap(),
                        scanned_at_ms: at,
                        vehicle_class: None,
                    };
                    distinct.push((id.clone(), req.clone()));
                    // The gate's retry of the same sequence.
                    sends.push((id.clone(), req.clone()));
                    sends.push((id, req.clone()));
                    if rng.gen_bool(0.5) {
                        // The same code at the station's other gate: one of the two is a replay.
                        let other = gate(stop, 3 - n);
                        sends.push((
                            other.clone(),
                            TapRequest {
                                sequence: next(&other),
                                ..req
                            },
                        ));
                    }
                }
                sends.shuffle(&mut rng);
                let decisions = send_all(&env, &sends).await;
                let approved = decisions
                    .iter()
                    .filter(|d| **d == Decision::Approve)
                    .count();
                // Each rider's passage is approved once: by the original or its replay (the
                // retry gets the stored answer of whichever it repeats).
                assert!(approved >= riders.len(), "seed {seed}: {decisions:?}");
            }
            let expected: Counts = flow::tally(distinct.iter().map(|(id, req)| Passage {
                operator_id: METRO_OPERATOR,
                location_id: &location[id],
                scanned_at_ms: req.scanned_at_ms as i64,
                direction: req.direction,
            }))
            .into_iter()
            .map(|c| ((c.location_id, c.minute), (c.entries, c.exits)))
            .collect();
            let got = stored(&env, start_minute, flow::minute_of(now_ms() as i64) + 1).await;
            assert_eq!(got, expected, "seed {seed}");
        }
    }
);
