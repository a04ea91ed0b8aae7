//! Journey closing rules: incomplete journeys, the daily cap (and the rider's view of it), and
//! what survives out-of-order offline uploads.

use turnpike_tests::{gate, tap, Db, Env};
use turnpike_wire::api::{Decision, Direction};

use turnpike_tests::demo_stops as stops;

async fn short_timeouts(db: Db) -> Option<Env> {
    Env::start_with(db, |c| {
        c.journeys.incomplete_after_ms = 1_500;
        c.journeys.same_station_window_ms = 500;
    })
    .await
}

async fn incomplete_journeys(db: Db) {
    // An entry with no exit is closed at the maximum fare by the sweeper; and a new entry after
    // the timeout closes the stale one itself and is let in (no pass-back).
    let Some(env) = short_timeouts(db).await else {
        return;
    };
    let s = stops();
    let a = env.gw.rider().await;
    let b = env.gw.rider().await;
    let t = env.gw.terminal(&gate(&s[0], 1));
    assert_eq!(
        t.tap(&tap(
            1,
            Direction::Entry,
            a.ride_code(turnpike_tests::now_ms()).unwrap()
        ))
        .await
        .unwrap()
        .decision,
        Decision::Approve
    );
    assert_eq!(
        t.tap(&tap(
            2,
            Direction::Entry,
            b.ride_code(turnpike_tests::now_ms()).unwrap()
        ))
        .await
        .unwrap()
        .decision,
        Decision::Approve
    );
    // 1.7 s later (past `incomplete_after_ms`), on the gateway's clock and the devices'.
    env.gw.clock.advance(1_700);
    let later = turnpike_tests::now_ms() + 1_700;
    // b comes back through a gate: the stale journey closes at the maximum fare, the entry opens a new one.
    let again = t
        .tap(&turnpike_tests::tap_at(3, Direction::Entry, &b, later))
        .await
        .unwrap();
    assert_eq!(again.decision, Decision::Approve, "{again:?}");
    // a never returns: the sweeper closes the journey.
    let closed = gateway::sweep_once(&env.gw.state).await.unwrap();
    assert!(closed >= 1, "the sweeper closed {closed}");
    let max = turnpike_fares::demo_metro().max_fare();
    for rider in [&a, &b] {
        let list = rider
            .journeys(&env.gw.public_base, &env.gw.ca())
            .await
            .unwrap();
        let incomplete: Vec<_> = list
            .journeys
            .iter()
            .filter(|j| j.close_reason.as_deref() == Some("incomplete"))
            .collect();
        assert_eq!(
            incomplete.len(),
            1,
            "{:?}",
            list.journeys.iter().map(|j| &j.status).collect::<Vec<_>>()
        );
        assert_eq!(incomplete[0].fare, Some(max));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_journeys_sqlite() {
    incomplete_journeys(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_journeys_postgres() {
    incomplete_journeys(Db::Postgres).await;
}

async fn daily_cap(db: Db) {
    // With a 10.00 CNY cap the day's charges add up to min(cap, sum of fares), also when an
    // offline gate uploads an earlier journey after later ones were charged.
    let Some(env) = Env::start_custom(db, |_| {}, Some("10.00")).await else {
        return;
    };
    let s = stops();
    let fares = turnpike_fares::demo_metro();
    let rider = env.gw.rider().await;
    let now = turnpike_tests::now_ms();
    let mut total = 0i64;
    // Three live journeys now.
    for (i, (from, to)) in [(0usize, 12usize), (12, 2), (2, 15)]
        .into_iter()
        .enumerate()
    {
        let seq = i as u64 + 1;
        let entry = env
            .gw
            .terminal(&gate(&s[from], 1))
            .tap(&tap(
                seq,
                Direction::Entry,
                rider.ride_code(turnpike_tests::now_ms()).unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(entry.decision, Decision::Approve);
        let exit = env
            .gw
            .terminal(&gate(&s[to], 2))
            .tap(&tap(
                seq,
                Direction::Exit,
                rider.ride_code(turnpike_tests::now_ms()).unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(exit.decision, Decision::Approve, "{exit:?}");
        let fare = exit.fare.unwrap().to_minor();
        assert_eq!(fare, fares.price(&s[from], &s[to]).unwrap().to_minor());
        let charge = exit.charge.unwrap().to_minor();
        assert!(charge >= 0 && charge <= fare);
        total += fare;
    }
    // Offline gates now upload a journey from just before the live ones: its entry
    // and exit from two gates, the exit first. The rider's journeys are re-paired in scan order
    // and the cap applies to the day as a whole.
    let (t0, t1) = (now - 50_000, now - 20_000);
    for (station, direction, at) in [(18, Direction::Exit, t1), (5, Direction::Entry, t0)] {
        let batch = env
            .gw
            .terminal(&gate(&s[station], 1))
            .batch(vec![turnpike_tests::tap_at(1, direction, &rider, at)])
            .await
            .unwrap();
        assert_eq!(
            batch.results[0].decision,
            Decision::Approve,
            "{:?}",
            batch.results[0]
        );
    }
    total += fares.price(&s[5], &s[18]).unwrap().to_minor();
    assert!(
        total > 1000,
        "the test needs fares above the cap (total {total})"
    );
    let list = rider
        .journeys(&env.gw.public_base, &env.gw.ca())
        .await
        .unwrap();
    let listed: i64 = list
        .journeys
        .iter()
        .filter_map(|j| j.charge.map(|c| c.to_minor()))
        .sum();
    assert_eq!(listed, 1000);
    assert_eq!(list.journeys.len(), 4, "{:?}", list.journeys);
    let owed: i64 = env
        .gw
        .state
        .store
        .charges(Some(rider.rider_id.parse().unwrap()), None, 100)
        .await
        .unwrap()
        .iter()
        .filter(|c| c.status != gateway::store::charging::ChargeStatus::Cancelled)
        .map(|c| c.amount_minor)
        .sum();
    assert_eq!(owed, 1000, "what is left to collect is capped too");

    // The rider sees the day's progress towards the cap (GET /v1/riders/me/daily-caps): the
    // fares before the cap, the cap reached, nothing left; a rider who has not ridden, all of it.
    let caps = |token: String| {
        let gw = &env.gw;
        async move {
            let a = gw
                .public_send(
                    reqwest::Method::GET,
                    "/v1/riders/me/daily-caps",
                    Some(&token),
                    None,
                )
                .await
                .unwrap();
            assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
            serde_json::from_slice::<serde_json::Value>(&a.body).unwrap()["caps"].clone()
        }
    };
    let day = env
        .gw
        .state
        .networks
        .get(turnpike_client::demo::METRO_OPERATOR)
        .unwrap()
        .business_day(turnpike_tests::now_ms() as i64);
    let amount = |minor: i64| format!("{}.{:02}", minor / 100, minor % 100);
    let cny = |minor: i64| serde_json::json!({"amount": amount(minor), "currency": "CNY"});
    let metro = turnpike_client::demo::METRO_OPERATOR;
    assert_eq!(
        caps(rider.token.clone()).await,
        serde_json::json!([{"operator_id": metro, "business_day": day, "cap": cny(1000),
            "fares_total": cny(total), "charged": cny(1000), "remaining": cny(0)}])
    );
    let idle = env.gw.rider().await;
    assert_eq!(
        caps(idle.token.clone()).await,
        serde_json::json!([{"operator_id": metro, "business_day": day, "cap": cny(1000),
            "fares_total": cny(0), "charged": cny(0), "remaining": cny(1000)}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_cap_sqlite() {
    daily_cap(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_cap_postgres() {
    daily_cap(Db::Postgres).await;
}
