//! Exactly-once money under faults. A real gateway charges through the real provider sandbox
//! over HTTP while the sandbox times out, answers 5xx, drops answers after committing, and both
//! the gateway (crashed mid-flight, capture worker included) and the sandbox are restarted. Then
//! the sandbox's own records are compared with the gateway's ledger: every paid trade has
//! exactly one capture and vice versa, amounts equal, no journey charged twice, none left
//! uncharged. The figures are written to `target/fault-matrix-<db>.json`.

use gateway::store::charging::{ChargeKind, ChargeStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};
use turnpike_tests::provider::PaidEnv;
use turnpike_tests::{booth, gate, tap, toll_exit, Db};
use turnpike_wire::api::{Decision, Direction, TapResponse, VehicleClass};

use turnpike_tests::on_both;

const RIDERS: usize = 16;
const JOURNEYS_PER_RIDER: u64 = 4;
const DRIVERS: usize = 6;

/// Faults on every money-moving method: hangs past the gateway's 1 s call timeout, 5xx,
/// answers dropped after the sandbox committed, and latency.
fn fault_matrix() -> Value {
    let pay = json!({
        "latency": {"min_ms": 0, "max_ms": 20},
        "timeout": {"rate": 0.12, "hang_ms": 1_500},
        "http_5xx": {"rate": 0.12},
        "drop_after_commit": {"rate": 0.2},
    });
    let lookup = json!({
        "timeout": {"rate": 0.05, "hang_ms": 1_500},
        "http_5xx": {"rate": 0.15},
        "drop_after_commit": {"rate": 0.1},
    });
    json!({
        "seed": 20261129,
        "methods": {
            "alipay.trade.pay": pay,
            "alipay.trade.query": lookup,
            "alipay.trade.cancel": lookup,
        },
        "duplicate_notifications": 0.5,
    })
}

async fn bind_wallet(p: &PaidEnv, rider: &turnpike_client::RiderDevice) -> String {
    p.bind_wallet(rider, 1_000_000, 100_000).await
}

/// Proves exactly-once charging through a fault matrix with crashes and restarts, by
/// reconciling the provider's records against the gateway's ledger.
async fn fault_matrix_reconciles(db: Db) {
    // Notifications on (duplicated by the fault knob), racing the capture worker's own answers.
    let Some(mut p) = PaidEnv::start_notified(db, |c| {
        c.charging.capture_attempts_max = 50;
    })
    .await
    else {
        return;
    };
    let now = turnpike_tests::now_ms;
    // Faults the sandbox injected, summed over its restarts.
    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    let add_injected = |injected: &mut BTreeMap<String, u64>, v: Value| {
        for (k, n) in v.as_object().cloned().unwrap_or_default() {
            *injected.entry(k).or_default() += n.as_u64().unwrap_or(0);
        }
    };
    let mut riders = Vec::new();
    let mut wallets = BTreeMap::new();
    for _ in 0..RIDERS {
        let rider = p.env.gw.rider().await;
        let user = bind_wallet(&p, &rider).await;
        wallets.insert(rider.rider_id.clone(), user);
        riders.push(rider);
    }
    p.sandbox.set_faults(fault_matrix()).await;

    // Metro: every rider rides JOURNEYS_PER_RIDER times; the sandbox misbehaves throughout.
    let stations = ["binkang-road", "wulin-square", "jiubao", "linping"];
    let mut seq = 0u64;
    let mut approved_exits = 0;
    for round in 0..JOURNEYS_PER_RIDER {
        for (i, rider) in riders.iter().enumerate() {
            seq += 1;
            let entry = p
                .env
                .gw
                .terminal(&gate("xianghu", 1))
                .tap(&tap(seq, Direction::Entry, rider.ride_code(now()).unwrap()))
                .await
                .unwrap();
            assert_eq!(entry.decision, Decision::Approve, "{entry:?}");
            let to = stations[(i + round as usize) % stations.len()];
            let exit = p
                .env
                .gw
                .terminal(&gate(to, 1))
                .tap(&tap(seq, Direction::Exit, rider.ride_code(now()).unwrap()))
                .await
                .unwrap();
            assert_eq!(exit.decision, Decision::Approve, "{exit:?}");
            approved_exits += 1;
        }
        // Mid-flight: crash the gateway (capture worker included) and bring it back; restart
        // the sandbox too.
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            p.crash_and_restart_gateway().await;
        }
        if round == 1 {
            let (_, counts) = p.sandbox.admin_get("/sandbox/faults/injected").await;
            add_injected(&mut injected, counts);
            let ca = p.env.gw.ca();
            p.sandbox
                .restart_with(|c| c.notify_ca_file = Some(ca))
                .await;
            p.sandbox.set_faults(fault_matrix()).await;
        }
    }

    // Toll at the booth under the same faults: each driver keeps trying (new code, next
    // sequence) until approved, as a booth would.
    let mut toll_approved = 0;
    let mut toll_declined = 0;
    let mut booth_seq = 0u64;
    for d in 0..DRIVERS {
        let driver = p.env.gw.rider().await;
        let user = p.sandbox.wallet(1_000_000, None).await;
        booth_seq += 1;
        let entry = p
            .env
            .gw
            .terminal(&booth("hangzhou-pengbu", "in"))
            .tap(&tap(
                booth_seq,
                Direction::Entry,
                driver.ride_code(now()).unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(entry.decision, Decision::Approve);
        let mut done = false;
        for _ in 0..8 {
            booth_seq += 1;
            let code = p.sandbox.issue_code(&user).await;
            let exit = toll_exit(
                booth_seq,
                driver.ride_code(now()).unwrap(),
                VehicleClass::P1,
            );
            let out = p.env.gw.terminal(&booth("shaoxing", "out"));
            let a = out.toll_exit_raw(&exit, &code).await.unwrap();
            if a.status == 409 {
                // Unsettled within the budget: the worker settles it; the booth repeats.
                for _ in 0..100 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let again = out.toll_exit_raw(&exit, &code).await.unwrap();
                    if again.status == 200 {
                        break;
                    }
                }
                let again: TapResponse = out
                    .toll_exit_raw(&exit, &code)
                    .await
                    .unwrap()
                    .json()
                    .unwrap();
                if again.decision == Decision::Approve {
                    done = true;
                    break;
                }
                toll_declined += 1;
                continue;
            }
            assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
            let r: TapResponse = a.json().unwrap();
            if r.decision == Decision::Approve {
                done = true;
                break;
            }
            toll_declined += 1;
        }
        assert!(done, "driver {d} never got through");
        toll_approved += 1;
    }

    // Let the worker finish everything with the faults still on, then calm the sandbox down.
    let settled = |p: &PaidEnv| {
        let store = p.env.gw.state.store.clone();
        async move {
            let pending = store
                .charges(None, Some(ChargeStatus::Pending), 1000)
                .await
                .unwrap();
            let paying = store
                .charges(None, Some(ChargeStatus::Paying), 1000)
                .await
                .unwrap();
            pending.is_empty() && paying.is_empty()
        }
    };
    if !p.eventually(20_000, || settled(&p)).await {
        p.sandbox.set_faults(json!({})).await;
        assert!(
            p.eventually(20_000, || settled(&p)).await,
            "charges left unsettled"
        );
    }
    p.sandbox.set_faults(json!({})).await;

    // ---- Reconcile: the provider's records against the gateway's ledger ----
    let store = &p.env.gw.state.store;
    let trades = p.sandbox.trades().await;
    let charges = store.charges(None, None, 10_000).await.unwrap();
    let ledger = store.ledger_transactions().await.unwrap();
    let captures: BTreeMap<String, usize> =
        ledger
            .iter()
            .filter(|t| t.kind == "capture")
            .fold(BTreeMap::new(), |mut m, t| {
                *m.entry(t.out_trade_no.clone().unwrap()).or_default() += 1;
                m
            });
    let reversals: BTreeSet<String> = ledger
        .iter()
        .filter(|t| t.kind == "reversal")
        .map(|t| t.out_trade_no.clone().unwrap())
        .collect();
    let paid: BTreeMap<&str, i64> = trades
        .iter()
        .filter(|t| t.status == "TRADE_SUCCESS" || t.status == "TRADE_FINISHED")
        .map(|t| (t.out_trade_no.as_str(), t.total_fen))
        .collect();
    // 1. Every paid trade at the provider has exactly one capture in the ledger.
    for no in paid.keys() {
        assert_eq!(
            captures.get(*no),
            Some(&1),
            "paid trade {no} not captured exactly once"
        );
    }
    // 2. Every capture is a paid trade, or a paid-then-reversed one with its reversal.
    for (no, n) in &captures {
        assert_eq!(*n, 1, "{no} captured {n} times");
        let closed_after_reversal = reversals.contains(no)
            && trades
                .iter()
                .any(|t| &t.out_trade_no == no && t.status == "TRADE_CLOSED");
        assert!(
            paid.contains_key(no.as_str()) || closed_after_reversal,
            "capture {no} has no paid trade"
        );
    }
    // 3. Amounts equal; one capture per charge; every journey's charge collected.
    let mut captured_charges = 0;
    let mut owed_in_arrears = 0;
    let denied: BTreeSet<i64> = store
        .deny_list()
        .await
        .unwrap()
        .iter()
        .filter(|d| d.subject_kind == "rider")
        .map(|d| d.subject_id)
        .collect();
    for c in &charges {
        if c.status == ChargeStatus::Captured {
            captured_charges += 1;
            assert_eq!(
                paid.get(c.out_trade_no.as_str()),
                Some(&c.amount_minor),
                "{c:?}"
            );
            let of_charge = ledger
                .iter()
                .filter(|t| {
                    t.kind == "capture"
                        && t.charge_id == Some(c.charge_id)
                        && !reversals.contains(t.out_trade_no.as_ref().unwrap())
                })
                .count();
            assert_eq!(
                of_charge, 1,
                "charge {} captured {of_charge} times",
                c.charge_id
            );
        } else if c.status == ChargeStatus::Failed {
            // A booth exit whose pay was still unknown when the budget ran out is approved (the
            // driver leaves; gateway/src/charging/toll.rs); found unpaid later, its fare is collected
            // post-paid, and a driver with no withholding agreement is in arrears: deny-listed,
            // nothing taken from any wallet (1 and 2 hold no trade of it as paid).
            assert_eq!(c.kind, ChargeKind::Toll, "{c:?}");
            assert!(
                c.last_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("NO_AGREEMENT")),
                "{c:?}"
            );
            assert!(
                denied.contains(&c.rider_id.unwrap()),
                "arrears deny-list the driver: {c:?}"
            );
            owed_in_arrears += 1;
        } else {
            assert_eq!(
                c.status,
                ChargeStatus::Cancelled,
                "only unpaid booth exits may stay uncollected: {c:?}"
            );
        }
    }
    let metro: Vec<_> = charges
        .iter()
        .filter(|c| c.kind == ChargeKind::Metro)
        .collect();
    assert_eq!(metro.len(), approved_exits, "one charge per journey");
    assert!(
        metro.iter().all(|c| c.status == ChargeStatus::Captured),
        "a metro journey left uncharged"
    );
    let journeys: BTreeSet<i64> = charges.iter().filter_map(|c| c.journey_id).collect();
    assert_eq!(journeys.len(), charges.len(), "a journey with two charges");
    // 4. Wallets: what left the riders' wallets is exactly what was captured from them.
    for rider in &riders {
        let user = &wallets[&rider.rider_id];
        let charged: i64 = charges
            .iter()
            .filter(|c| c.rider_id.map(|r| r.to_string()) == Some(rider.rider_id.clone()))
            .map(|c| c.amount_minor)
            .sum();
        assert_eq!(p.sandbox.balance_fen(user).await, 1_000_000 - charged);
    }
    assert_eq!(store.unbalanced_transactions().await.unwrap(), 0);

    let attempts = p.env.gw.count("charge_attempts").await;
    let (_, counts) = p.sandbox.admin_get("/sandbox/faults/injected").await;
    add_injected(&mut injected, counts);
    // The matrix really happened: every kind of fault hit the pays at least once.
    for kind in ["timeout", "http_5xx", "drop_after_commit"] {
        let n = injected
            .get(&format!("alipay.trade.pay {kind}"))
            .copied()
            .unwrap_or(0);
        assert!(n > 0, "no {kind} was injected into pays: {injected:?}");
    }
    assert!(
        injected.get("notification duplicate").copied().unwrap_or(0) > 0,
        "no duplicate notification was delivered: {injected:?}"
    );
    let notifications = p.env.gw.count("provider_notifications").await;
    let report = json!({
        "db": format!("{db:?}"),
        "metro_journeys": approved_exits,
        "toll_exits_approved": toll_approved,
        "toll_exit_attempts_declined": toll_declined,
        "provider_trades": trades.len(),
        "provider_trades_paid": paid.len(),
        "charges": charges.len(),
        "charges_captured": captured_charges,
        "toll_fares_owed_in_arrears": owed_in_arrears,
        "charge_attempts": attempts,
        "ledger_transactions": ledger.len(),
        "ledger_reversals": reversals.len(),
        "notifications_recorded": notifications,
        "double_charges": 0,
        "uncharged_journeys": 0,
        "faults_injected": injected,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join(format!("fault-matrix-{db:?}.json").to_lowercase()),
        serde_json::to_vec_pretty(&report).unwrap(),
    );
    eprintln!("{report:#}");
}
on_both!(fault_matrix_reconciles);
