//! Toll exits paid at the booth with the driver's wallet payment code, against the real provider
//! sandbox over HTTP: one final answer per exit, no trade left open at the provider, and the
//! ledger holding exactly what the provider holds.

use gateway::store::charging::ChargeStatus;
use std::time::Duration;

use turnpike_tests::provider::PaidEnv;
use turnpike_tests::{booth, tap, toll_exit, Db};
use turnpike_wire::api::{Decision, Direction, TapResponse, VehicleClass};

use turnpike_tests::on_both;

fn exit_tap(rider: &turnpike_client::RiderDevice, seq: u64) -> turnpike_wire::api::TapRequest {
    toll_exit(
        seq,
        rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        VehicleClass::P1,
    )
}

/// Proves a toll exit is charged once at the booth: approve with the toll, the wallet debited
/// by exactly that, one provider trade, one capture in a balanced ledger, and a repeat of the
/// request answered with the same bytes and no second charge.
async fn paid_at_exit(db: Db) {
    let Some(p) = PaidEnv::start(db, |_| {}).await else {
        return;
    };
    let user = p.sandbox.wallet(100_000, None).await;
    let rider = p.rider_on_the_expressway().await;
    let code = p.sandbox.issue_code(&user).await;
    let out = p.env.gw.terminal(&booth("shaoxing", "out"));
    let exit = exit_tap(&rider, 1);
    let a = out.toll_exit_raw(&exit, &code).await.unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let r: TapResponse = a.json().unwrap();
    assert_eq!(r.decision, Decision::Approve, "{r:?}");
    let toll = r.charge.unwrap().to_minor();
    assert!(toll > 0);
    assert_eq!(p.sandbox.balance_fen(&user).await, 100_000 - toll);
    let again = out.toll_exit_raw(&exit, &code).await.unwrap();
    assert_eq!(again.body, a.body, "a repeat gets the same bytes");
    assert_eq!(p.sandbox.balance_fen(&user).await, 100_000 - toll);
    let trades = p.sandbox.trades().await;
    assert_eq!(trades.len(), 1);
    assert_eq!(trades[0].status, "TRADE_SUCCESS");
    assert_eq!(trades[0].total_fen, toll);
    let l = p.ledger().await;
    assert_eq!(l["unbalanced_transactions"], 0);
    assert_eq!(l["transactions"], 1, "{l}");
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].status, ChargeStatus::Captured);
    assert_eq!(charges[0].out_trade_no, trades[0].out_trade_no);
}
on_both!(paid_at_exit);

/// Proves a large toll that waits for the driver's confirmation is polled until confirmed
/// within the budget, and then approved.
async fn confirmed_in_wallet(db: Db) {
    let Some(p) = PaidEnv::start(db, |_| {}).await else {
        return;
    };
    let user = p.sandbox.wallet(100_000, Some(1)).await;
    let rider = p.rider_on_the_expressway().await;
    let code = p.sandbox.issue_code(&user).await;
    let out = p.env.gw.terminal(&booth("shaoxing", "out"));
    let exit = exit_tap(&rider, 1);
    let booth_call = tokio::spawn(async move { out.toll_exit_raw(&exit, &code).await });
    // The driver confirms in the wallet a moment after the booth asked.
    let trade_no = p.sandbox.trade_waiting_for_buyer().await.trade_no;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = p
        .sandbox
        .admin_post(
            &format!("/sandbox/trades/{trade_no}/confirm"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let a = booth_call.await.unwrap().unwrap();
    let r: TapResponse = a.json().unwrap();
    assert_eq!(r.decision, Decision::Approve, "{r:?}");
    assert_eq!(
        p.sandbox.balance_fen(&user).await,
        100_000 - r.charge.unwrap().to_minor()
    );
}
on_both!(confirmed_in_wallet);

/// Proves a pay still unconfirmed at the end of the budget is cancelled at the provider: the
/// booth is told `payment_failed`, nothing is taken, no trade stays open, the journey is open
/// again, and the driver can pay with a new code at once.
async fn unconfirmed_is_cancelled(db: Db) {
    let Some(p) = PaidEnv::start(db, |c| c.charging.toll_budget_ms = 2_500).await else {
        return;
    };
    let user = p.sandbox.wallet(100_000, Some(1)).await;
    let rider = p.rider_on_the_expressway().await;
    let out = p.env.gw.terminal(&booth("shaoxing", "out"));
    let code = p.sandbox.issue_code(&user).await;
    let a = out
        .toll_exit_raw(&exit_tap(&rider, 1), &code)
        .await
        .unwrap();
    let r: TapResponse = a.json().unwrap();
    assert_eq!(r.decision, Decision::Decline);
    assert_eq!(r.reason.as_deref(), Some("payment_failed"));
    assert_eq!(p.sandbox.balance_fen(&user).await, 100_000);
    let trades = p.sandbox.trades().await;
    assert_eq!(trades.len(), 1);
    assert_eq!(trades[0].status, "TRADE_CLOSED", "no trade left open");
    // The driver pays with another wallet that needs no confirmation: the reopened journey
    // takes the second exit, and its charge moves to a new attempt and trade number.
    let other = p.sandbox.wallet(100_000, None).await;
    let code = p.sandbox.issue_code(&other).await;
    let second = out
        .toll_exit_raw(&exit_tap(&rider, 2), &code)
        .await
        .unwrap();
    let r2: TapResponse = second.json().unwrap();
    assert_eq!(r2.decision, Decision::Approve, "{r2:?}");
    assert_eq!(
        p.sandbox.balance_fen(&other).await,
        100_000 - r2.charge.unwrap().to_minor()
    );
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    assert_eq!(charges.len(), 1, "one charge per journey");
    assert_eq!(
        (charges[0].status.as_str(), charges[0].attempt),
        ("captured", 2)
    );
    let l = p.ledger().await;
    assert_eq!(l["unbalanced_transactions"], 0);
}
on_both!(unconfirmed_is_cancelled);

/// Proves a declined pay (not enough balance) answers `payment_declined` at once and takes
/// nothing.
async fn declined_for_balance(db: Db) {
    let Some(p) = PaidEnv::start(db, |_| {}).await else {
        return;
    };
    let user = p.sandbox.wallet(1, None).await;
    let rider = p.rider_on_the_expressway().await;
    let code = p.sandbox.issue_code(&user).await;
    let out = p.env.gw.terminal(&booth("shaoxing", "out"));
    let a = out
        .toll_exit_raw(&exit_tap(&rider, 1), &code)
        .await
        .unwrap();
    let r: TapResponse = a.json().unwrap();
    assert_eq!(r.decision, Decision::Decline);
    assert_eq!(r.reason.as_deref(), Some("payment_declined"));
    assert_eq!(p.sandbox.balance_fen(&user).await, 1);
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    assert_eq!(charges[0].status, ChargeStatus::Cancelled);
    assert_eq!(p.ledger().await["transactions"], 0);
}
on_both!(declined_for_balance);

/// Proves bad toll-exit requests get precise errors and change nothing.
async fn bad_requests(db: Db) {
    let Some(p) = PaidEnv::start(db, |_| {}).await else {
        return;
    };
    let rider = p.rider_on_the_expressway().await;
    let out = p.env.gw.terminal(&booth("shaoxing", "out"));
    let before = p.env.gw.written().await;
    for (code, expect) in [
        ("12345", "invalid_payment_code"),
        ("28abcdefabcdefabcd", "invalid_payment_code"),
    ] {
        let a = out.toll_exit_raw(&exit_tap(&rider, 1), code).await.unwrap();
        assert_eq!(a.status, 422);
        assert_eq!(a.error_code().as_deref(), Some(expect));
    }
    let entry = tap(
        9,
        Direction::Entry,
        rider.ride_code(turnpike_tests::now_ms()).unwrap(),
    );
    let a = out
        .toll_exit_raw(&entry, "280000000000000000")
        .await
        .unwrap();
    assert_eq!(a.error_code().as_deref(), Some("not_an_exit"));
    let gate = p.env.gw.terminal(&turnpike_tests::gate("xianghu", 1));
    let a = gate
        .toll_exit_raw(&exit_tap(&rider, 1), "280000000000000000")
        .await
        .unwrap();
    assert_eq!(a.error_code().as_deref(), Some("not_a_toll_terminal"));
    assert_eq!(p.env.gw.written().await, before);
    assert!(p.sandbox.trades().await.is_empty());
}
on_both!(bad_requests);

/// Proves answers that fail signature verification are never applied: with the wrong platform
/// key configured, the pay's outcome stays unknown, so at the end of its budget the booth is told
/// approve (the driver leaves; the fare is owed), nothing is booked, the charge stays `paying`
/// for the worker, and the forged answers are counted.
async fn forged_answers_are_ignored(db: Db) {
    let Some(p) = PaidEnv::start(db, |c| {
        // The app's own public key is not the platform's: every answer fails verification.
        c.provider.platform_public_key_file =
            turnpike_tests::provider::sandbox_keys().join("app-public.pem");
        c.charging.toll_budget_ms = 2_500;
    })
    .await
    else {
        return;
    };
    let user = p.sandbox.wallet(100_000, None).await;
    let rider = p.rider_on_the_expressway().await;
    let code = p.sandbox.issue_code(&user).await;
    let out = p.env.gw.terminal(&booth("shaoxing", "out"));
    let exit = exit_tap(&rider, 1);
    let a = out.toll_exit_raw(&exit, &code).await.unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let r: TapResponse = a.json().unwrap();
    assert_eq!(r.decision, Decision::Approve, "{r:?}");
    assert!(r.charge.is_some_and(|c| c.to_minor() > 0));
    let again = out.toll_exit_raw(&exit, &code).await.unwrap();
    assert_eq!(again.body, a.body, "the approve is the stored final answer");
    assert_eq!(p.ledger().await["transactions"], 0);
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    assert_eq!(charges[0].status, ChargeStatus::Paying);
    let metrics = reqwest::get(format!("{}/metrics", p.env.gw.ops_base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gateway_provider_calls_total")
                && l.contains("outcome=\"forged\"")),
        "forged answers are counted"
    );
}
on_both!(forged_answers_are_ignored);

/// Proves a toll pay still unknown at the end of its budget gets a final answer within it —
/// approve: the driver leaves, the fare is owed — and that when the provider later shows it was
/// never paid, the journey is *not* reopened (the driver has driven on: a newer journey entered
/// and paid meanwhile stays as it is, and the next entry is not a pass-back); the fare becomes a
/// post-paid charge on a new trade number, owed in a balanced journal.
async fn an_unknown_pay_is_approved_and_never_rewrites_newer_journeys(db: Db) {
    let Some(p) = PaidEnv::start(db, |c| c.charging.toll_budget_ms = 2_500).await else {
        return;
    };
    // The driver's wallet waits for a confirmation nobody gives, and cancels go unanswered:
    // the pay's outcome is unknown at the end of the budget.
    let user = p.sandbox.wallet(100_000, Some(1)).await;
    p.sandbox
        .set_faults(serde_json::json!({
            "methods": {"alipay.trade.cancel": {"http_5xx": {"rate": 1.0}}}
        }))
        .await;
    let rider = p.rider_on_the_expressway().await;
    let out = p.env.gw.terminal(&booth("shaoxing", "out"));
    let code = p.sandbox.issue_code(&user).await;
    let exit = exit_tap(&rider, 1);
    let a = out.toll_exit_raw(&exit, &code).await.unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let first: TapResponse = a.json().unwrap();
    assert_eq!(first.decision, Decision::Approve, "{first:?}");
    let first_journey = first.journey_id.clone().unwrap();
    // The driver drives on: a new journey, paid at its exit with a wallet needing no confirmation.
    p.sandbox.set_faults(serde_json::json!({})).await;
    let rider_entry = p
        .env
        .gw
        .terminal(&booth("ningbo-east", "in"))
        .tap(&tap(
            2,
            Direction::Entry,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(rider_entry.decision, Decision::Approve, "not a pass-back");
    let other = p.sandbox.wallet(100_000, None).await;
    let code2 = p.sandbox.issue_code(&other).await;
    let second = p
        .env
        .gw
        .terminal(&booth("ningbo-west", "out"))
        .toll_exit_raw(&exit_tap(&rider, 3), &code2)
        .await
        .unwrap();
    let second: TapResponse = second.json().unwrap();
    assert_eq!(second.decision, Decision::Approve, "{second:?}");
    // When the first pay's lease ends, the worker finds it unpaid and cancels it: the fare is
    // owed post-paid, and nothing about the newer journey changes.
    let settled = p
        .eventually(20_000, || async {
            let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
            charges.iter().any(|c| {
                c.journey_id.map(|j| j.to_string()) == Some(first_journey.clone())
                    && c.status != ChargeStatus::Paying
            })
        })
        .await;
    assert!(settled, "the worker settles the unknown pay");
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    let owed = charges
        .iter()
        .find(|c| c.journey_id.map(|j| j.to_string()) == Some(first_journey.clone()))
        .unwrap();
    assert!(
        matches!(owed.status, ChargeStatus::Pending | ChargeStatus::Failed),
        "post-paid, not cancelled: {:?}",
        owed.status
    );
    assert!(owed.attempt >= 2, "a new trade number");
    let trades = p.sandbox.trades().await;
    assert!(
        trades
            .iter()
            .all(|t| t.status == "TRADE_SUCCESS" || t.status == "TRADE_CLOSED"),
        "no trade left open: {trades:?}"
    );
    assert_eq!(
        p.sandbox.balance_fen(&user).await,
        100_000,
        "the unknown pay took nothing"
    );
    let journeys = rider
        .journeys(&p.env.gw.public_base, &p.env.gw.ca())
        .await
        .unwrap();
    assert!(
        journeys.journeys.iter().all(|j| j.status == "closed"),
        "no journey reopened: {journeys:?}"
    );
    let again = out.toll_exit_raw(&exit, &code).await.unwrap();
    assert_eq!(again.body, a.body, "the booth's answer stands");
    let next = p
        .env
        .gw
        .terminal(&booth("hangzhou-pengbu", "in"))
        .tap(&tap(
            4,
            Direction::Entry,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(next.decision, Decision::Approve, "{next:?}");
    let l = p.ledger().await;
    assert_eq!(l["unbalanced_transactions"], 0, "{l}");
}
on_both!(an_unknown_pay_is_approved_and_never_rewrites_newer_journeys);
