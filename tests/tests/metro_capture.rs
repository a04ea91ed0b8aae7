//! Metro post-pay against the real provider sandbox: a closed journey's charge is deducted
//! through the rider's withholding agreement by the capture worker; a deduction that keeps
//! failing deny-lists the rider, and repaying the arrears lifts it.

use gateway::store::charging::ChargeStatus;
use std::time::Duration;

use serde_json::Value;
use turnpike_tests::provider::PaidEnv;
use turnpike_tests::{gate, tap, Db};
use turnpike_wire::api::{Decision, Direction, TapResponse};

use turnpike_tests::on_both;

/// A rider with a wallet holding `balance_fen` and a bound agreement.
async fn rider_with_wallet(
    p: &PaidEnv,
    balance_fen: i64,
) -> (turnpike_client::RiderDevice, String) {
    let rider = p.env.gw.rider().await;
    let user = p.bind_wallet(&rider, balance_fen, 10_000).await;
    (rider, user)
}

/// Rides xianghu → wulin-square; returns the exit answer.
async fn ride(p: &PaidEnv, rider: &turnpike_client::RiderDevice, seq: u64) -> TapResponse {
    let now = turnpike_tests::now_ms;
    let entry = p
        .env
        .gw
        .terminal(&gate("xianghu", 1))
        .tap(&tap(seq, Direction::Entry, rider.ride_code(now()).unwrap()))
        .await
        .unwrap();
    if entry.decision == Decision::Decline {
        return entry;
    }
    p.env
        .gw
        .terminal(&gate("wulin-square", 1))
        .tap(&tap(seq, Direction::Exit, rider.ride_code(now()).unwrap()))
        .await
        .unwrap()
}

async fn charge_status(p: &PaidEnv) -> Vec<ChargeStatus> {
    let charges = p.env.gw.state.store.charges(None, None, 100).await.unwrap();
    charges.into_iter().map(|c| c.status).collect()
}

/// Proves a closed journey is deducted once through the agreement: wallet debited by the fare,
/// charge captured, fare and capture booked, the rider owing nothing.
async fn journey_is_deducted(db: Db) {
    let Some(p) = PaidEnv::start(db, |_| {}).await else {
        return;
    };
    let (rider, user) = rider_with_wallet(&p, 10_000).await;
    let exit = ride(&p, &rider, 1).await;
    assert_eq!(exit.decision, Decision::Approve);
    let fare = exit.charge.unwrap().to_minor();
    assert!(
        p.eventually(5_000, || async {
            charge_status(&p).await == [ChargeStatus::Captured]
        })
        .await
    );
    assert_eq!(p.sandbox.balance_fen(&user).await, 10_000 - fare);
    let l = p.ledger().await;
    assert_eq!(l["transactions"], 2, "{l}");
    assert_eq!(l["unbalanced_transactions"], 0);
    let receivable: i64 = l["balances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["account"] == "rider_receivable")
        .map(|b| b["debit_minor"].as_i64().unwrap() - b["credit_minor"].as_i64().unwrap())
        .sum();
    assert_eq!(receivable, 0);
    // The rider sees the charge.
    let mine = p
        .env
        .gw
        .public_send(
            reqwest::Method::GET,
            "/v1/riders/me/charges",
            Some(&rider.token),
            None,
        )
        .await
        .unwrap();
    let mine: Value = mine.json().unwrap();
    assert_eq!(mine[0]["status"], "captured");
    assert_eq!(mine[0]["amount_minor"], fare);
    let trades = p.sandbox.trades().await;
    assert_eq!(trades.len(), 1);
    assert_eq!(trades[0].total_fen, fare);
}
on_both!(journey_is_deducted);

/// Proves a deduction that keeps failing (empty wallet) fails after the configured attempts,
/// deny-lists the rider (the next entry is declined), and that topping up and asking for a retry
/// repays the arrears and lifts the deny-listing by itself.
async fn arrears_deny_and_lift(db: Db) {
    let Some(p) = PaidEnv::start(db, |c| c.charging.capture_attempts_max = 3).await else {
        return;
    };
    let (rider, user) = rider_with_wallet(&p, 0).await;
    let exit = ride(&p, &rider, 1).await;
    let fare = exit.charge.unwrap().to_minor();
    assert!(
        p.eventually(8_000, || async {
            charge_status(&p).await == [ChargeStatus::Failed]
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(400)).await; // the registry refresh
    let denied = ride(&p, &rider, 2).await;
    assert_eq!(denied.reason.as_deref(), Some("rider_denied"), "{denied:?}");
    // Three attempts, three trade numbers, none paid at the provider.
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    assert_eq!(charges[0].attempt, 3);
    assert!(p
        .sandbox
        .trades()
        .await
        .iter()
        .all(|t| t.status != "TRADE_SUCCESS"));
    p.sandbox.top_up(&user, 10_000).await;
    let a = p
        .env
        .gw
        .public_send(
            reqwest::Method::POST,
            "/v1/riders/me/arrears/retry",
            Some(&rider.token),
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert!(
        p.eventually(5_000, || async {
            charge_status(&p).await == [ChargeStatus::Captured]
        })
        .await
    );
    assert_eq!(p.sandbox.balance_fen(&user).await, 10_000 - fare);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = ride(&p, &rider, 3).await;
    assert_eq!(again.decision, Decision::Approve, "{again:?}");
    assert_eq!(p.ledger().await["unbalanced_transactions"], 0);
}
on_both!(arrears_deny_and_lift);
