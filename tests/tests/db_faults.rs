//! Database faults, through a TCP proxy the test controls between the gateway and PostgreSQL
//! (`turnpike_tests::proxy`): the gateway starts and waits while its database is out of reach,
//! gates get a prompt `503` with `Retry-After` instead of a hang or a `500` while it is cut off,
//! nothing acknowledged is lost, and the gateway recovers unaided. A driver the provider charged
//! while the database was cut is still told approve. PostgreSQL only (CI requires it).

use std::time::{Duration, Instant};

use gateway::config::Config;
use turnpike_tests::provider::{free_port, PaidEnv};
use turnpike_tests::proxy::{Fault, FaultProxy};
use turnpike_tests::{
    booth, gate, tap, test_config, toll_exit, write_pki, Db, PgDatabase, Scratch, TestGateway,
};
use turnpike_wire::api::{Decision, Direction, TapRequest, TapResponse, VehicleClass};

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    Some((response.status().as_u16(), response.text().await.ok()?))
}

/// Polls `url` until its status is `status` (at most `within`); the last answer seen.
async fn wait_for_status(url: &str, status: u16, within: Duration) -> Option<(u16, String)> {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        last = get(url).await;
        if last.as_ref().map(|(s, _)| *s) == Some(status) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

use turnpike_tests::demo_stops as stops;

/// A tap's answer as a gate sees it: status, `Retry-After`, body.
struct Seen {
    status: u16,
    retry_after: Option<String>,
    body: Vec<u8>,
}

async fn send(gw: &TestGateway, terminal: &str, tap: &TapRequest) -> Seen {
    let certs = gw.certs.join("terminals");
    let http = turnpike_client::tls::http_client(
        &gw.ca(),
        Some((
            &certs.join(format!("{terminal}.pem")),
            &certs.join(format!("{terminal}.key")),
        )),
    )
    .expect("terminal client");
    let response = http
        .post(format!("{}/v1/taps", gw.terminal_base))
        // Far above the answer budget: a hang would show as a timeout, not a 503.
        .timeout(Duration::from_secs(20))
        .json(tap)
        .send()
        .await
        .expect("the gateway answers (no hang)");
    Seen {
        status: response.status().as_u16(),
        retry_after: response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string()),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

/// A fresh PostgreSQL database behind a fault proxy, and the gateway's configuration pointing at
/// the proxy (None when PostgreSQL is unreachable and not required). The database and scratch
/// directory live as long as the returned values.
async fn behind_a_proxy(tag: &str) -> Option<(PgDatabase, FaultProxy, Scratch, Config)> {
    let pg = PgDatabase::create().await?;
    let proxy = FaultProxy::for_url(&pg.url).await.unwrap();
    let scratch = Scratch::new(tag);
    write_pki(&scratch.0.join("certs")).unwrap();
    let config = test_config(&proxy.url_through(&pg.url), &scratch.0.join("certs"));
    Some((pg, proxy, scratch, config))
}

/// [`behind_a_proxy`], with the gateway started and the demo networks configured.
async fn gateway_behind_a_proxy(
    tag: &str,
) -> Option<(PgDatabase, FaultProxy, Scratch, TestGateway)> {
    let (pg, proxy, scratch, config) = behind_a_proxy(tag).await?;
    let gw = TestGateway::start(config).await.unwrap();
    gw.configure_demo(None).await.unwrap();
    Some((pg, proxy, scratch, gw))
}

/// Proves the gateway starts while its database cannot be reached: the ops listener says alive
/// but not ready and the start waits; once the database answers, the start completes, the node
/// is ready and taps are judged — no restart needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_starts_and_waits_for_an_unreachable_database() {
    let Some((_pg, proxy, _scratch, mut config)) = behind_a_proxy("db-wait").await else {
        return;
    };
    proxy.set(Fault::Reset);
    let ops = format!("127.0.0.1:{}", free_port());
    config.listen.ops = ops.parse().unwrap();
    let ops_base = format!("http://{ops}");
    let starting = TestGateway::start(config);
    let probe = async {
        let ready =
            wait_for_status(&format!("{ops_base}/readyz"), 503, Duration::from_secs(20)).await;
        let (status, body) = ready.expect("the ops listener answers while the database is down");
        assert_eq!(status, 503);
        assert!(body.contains("waiting for the database"), "{body}");
        assert_eq!(get(&format!("{ops_base}/healthz")).await.unwrap().0, 200);
        // Still waiting a while later: it does not give up.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(get(&format!("{ops_base}/readyz")).await.unwrap().0, 503);
        proxy.set(Fault::None);
    };
    let (gw, ()) = tokio::join!(starting, probe);
    let gw = gw.expect("the start completes once the database answers");
    let ready = wait_for_status(&format!("{ops_base}/readyz"), 200, Duration::from_secs(20)).await;
    assert_eq!(ready.map(|(s, _)| s), Some(200));
    gw.configure_demo(None).await.unwrap();
    let rider = gw.rider().await;
    let code = rider.ride_code(turnpike_tests::now_ms()).unwrap();
    let seen = send(&gw, &gate(&stops()[0], 1), &tap(1, Direction::Entry, code)).await;
    assert_eq!(seen.status, 200);
    gw.shutdown().await.unwrap();
}

/// Proves that while the database is cut (a blackhole, then resets) every tap is answered
/// promptly — `200` if it committed, else `503 storage_unavailable` with `Retry-After: 1`, never
/// a hang or a `500` — that `/readyz` follows, that the gateway recovers unaided when the
/// database comes back, and that every tap a gate repeats until it is acknowledged is stored
/// once, with the bytes it was acknowledged with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gates_get_a_prompt_503_while_the_database_is_cut_and_nothing_is_lost() {
    let Some((_pg, proxy, _scratch, gw)) = gateway_behind_a_proxy("db-cut").await else {
        return;
    };
    let s = stops();
    let riders = [gw.rider().await, gw.rider().await, gw.rider().await];
    let mut acknowledged: Vec<(String, u64, Vec<u8>)> = Vec::new();
    let mut sequence = 0;
    for fault in [Fault::Blackhole, Fault::Reset] {
        // Every rider enters before the cut...
        for (i, rider) in riders.iter().enumerate() {
            sequence += 1;
            let terminal = gate(&s[i], 1);
            let code = rider.ride_code(turnpike_tests::now_ms()).unwrap();
            let t = tap(sequence, Direction::Entry, code);
            let seen = send(&gw, &terminal, &t).await;
            assert_eq!(seen.status, 200, "{}", String::from_utf8_lossy(&seen.body));
            acknowledged.push((terminal.clone(), sequence, seen.body));
        }
        // ...and exits during it.
        proxy.set(fault);
        let mut unanswered = Vec::new();
        for (i, rider) in riders.iter().enumerate() {
            sequence += 1;
            let terminal = gate(&s[i + 5], 2);
            let code = rider.ride_code(turnpike_tests::now_ms()).unwrap();
            let t = tap(sequence, Direction::Exit, code);
            let seen = send(&gw, &terminal, &t).await;
            match seen.status {
                200 => acknowledged.push((terminal, sequence, seen.body)),
                503 => {
                    let body: turnpike_wire::api::ErrorBody =
                        serde_json::from_slice(&seen.body).unwrap();
                    assert_eq!(body.error.code, "storage_unavailable", "{fault:?}");
                    assert_eq!(seen.retry_after.as_deref(), Some("1"), "{fault:?}");
                    unanswered.push((terminal, t));
                }
                other => panic!(
                    "{fault:?}: a gate got {other}: {}",
                    String::from_utf8_lossy(&seen.body)
                ),
            }
        }
        assert!(
            !unanswered.is_empty(),
            "{fault:?}: no tap met the cut database"
        );
        let readyz = format!("{}/readyz", gw.ops_base);
        assert_eq!(
            get(&readyz).await.unwrap().0,
            503,
            "{fault:?}: /readyz follows"
        );
        proxy.set(Fault::None);
        // The gates repeat what was not acknowledged (same sequence) until it is.
        for (terminal, t) in unanswered {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let seen = send(&gw, &terminal, &t).await;
                if seen.status == 200 {
                    let r: TapResponse = serde_json::from_slice(&seen.body).unwrap();
                    assert_eq!(r.decision, Decision::Approve, "{fault:?}: {r:?}");
                    acknowledged.push((terminal, t.sequence, seen.body));
                    break;
                }
                assert_eq!(seen.status, 503, "{fault:?}");
                assert!(Instant::now() < deadline, "{fault:?}: no recovery in 30 s");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let ready = wait_for_status(&readyz, 200, Duration::from_secs(20)).await;
        assert_eq!(ready.map(|(s, _)| s), Some(200), "{fault:?}: ready again");
    }
    // Every acknowledged tap stored once, with the bytes it was acknowledged with.
    assert_eq!(gw.count("taps").await, acknowledged.len() as i64);
    for (terminal, sequence, body) in &acknowledged {
        let (_, stored) = gw
            .state
            .store
            .stored_tap(terminal, *sequence as i64)
            .await
            .unwrap()
            .expect("an acknowledged tap is stored");
        assert_eq!(&stored, body, "{terminal}/{sequence}");
    }
    gw.shutdown().await.unwrap();
}

/// Proves a driver whose payment went through while the gateway's database was cut is told
/// approve — with the fare and the charge — not an error, and that once the database is back the
/// charge is booked as captured and a repeat of the exit gets the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_charged_while_the_database_is_cut_is_told_approve() {
    let server = std::env::var("TURNPIKE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let proxy = FaultProxy::for_url(&server).await.unwrap();
    let Some(p) = PaidEnv::start(Db::Postgres, |c| {
        c.database.url = proxy.url_through(c.database.url.expose()).into();
        c.charging.toll_budget_ms = 6_000;
    })
    .await
    else {
        return;
    };
    // The driver's wallet asks for confirmation: the pay waits, and the gateway polls.
    let user = p.sandbox.wallet(100_000, Some(1)).await;
    let rider = p.rider_on_the_expressway().await;
    let code = p.sandbox.issue_code(&user).await;
    let out = p.env.gw.terminal(&booth("shaoxing", "out"));
    let exit = toll_exit(
        1,
        rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        VehicleClass::P1,
    );
    let (exit2, code2, out2) = (exit.clone(), code.clone(), out.clone());
    let booth_call = tokio::spawn(async move { out2.toll_exit_raw(&exit2, &code2).await });
    let trade = p.sandbox.trade_waiting_for_buyer().await;
    // The database goes while the driver confirms in the wallet.
    proxy.set(Fault::Reset);
    let (status, body) = p
        .sandbox
        .admin_post(
            &format!("/sandbox/trades/{}/confirm", trade.trade_no),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let told = booth_call.await.unwrap().unwrap();
    assert_eq!(told.status, 200, "{}", String::from_utf8_lossy(&told.body));
    let r: TapResponse = told.json().unwrap();
    assert_eq!(r.decision, Decision::Approve, "{r:?}");
    let charged = r.charge.unwrap().to_minor();
    assert_eq!(p.sandbox.balance_fen(&user).await, 100_000 - charged);
    proxy.set(Fault::None);
    // The worker books the payment once the pay's lease ends.
    let booked = p
        .eventually(30_000, || async {
            let charges = p.env.gw.state.store.charges(None, None, 10).await;
            charges.is_ok_and(|c| {
                c.len() == 1 && c[0].status == gateway::store::charging::ChargeStatus::Captured
            })
        })
        .await;
    assert!(booked, "the payment is booked once the database is back");
    let l = p.ledger().await;
    assert_eq!(l["unbalanced_transactions"], 0);
    assert_eq!(l["transactions"], 1, "{l}");
    let again = out.toll_exit_raw(&exit, &code).await.unwrap();
    assert_eq!(
        again.body, told.body,
        "the stored answer is what the booth was told"
    );
}

/// Proves the simulator's gates behave as real gates when the database is cut under load: a
/// live request answered `503` (or not in time) is decided offline, buffered and uploaded once
/// the gateway answers again — no tap is lost or counted as an error, and every buffered tap is
/// uploaded. Uploaded taps are facts and a live exit is let through, so the only refusal a valid
/// rider can meet is a live entry while the exit of their previous journey is still in a gate's
/// buffer (`pass_back`, docs/taps.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_gates_fall_back_offline_while_the_database_is_cut() {
    let Some((_pg, proxy, scratch, gw)) = gateway_behind_a_proxy("db-cut-sim").await else {
        return;
    };
    let target = terminal_sim::Target {
        terminal_url: gw.terminal_base.clone(),
        public_url: gw.public_base.clone(),
        certs: gw.certs.clone(),
        admin_token: turnpike_tests::ADMIN_TOKEN.into(),
    };
    let options = terminal_sim::RunOptions {
        gate_verify: terminal_sim::GateVerify::Inline,
        progress: false,
        work_dir: scratch.0.join("gate-buffers"),
        offline_fallback: Some(terminal_sim::runner::GATE_LIVE_BUDGET),
    };
    let mut sim = terminal_sim::Sim::connect(target, 7).await.unwrap();
    let plan = sim.plan(terminal_sim::Scenario::Normal, 100.0, 6.0);
    let proxy = std::sync::Arc::new(proxy);
    let cut = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            proxy.set(Fault::Reset);
            tokio::time::sleep(Duration::from_secs(2)).await;
            proxy.set(Fault::None);
        })
    };
    let report = sim.run(&plan, &options).await.unwrap();
    cut.await.unwrap();
    eprintln!("{}", report.summary());
    assert_eq!(report.errors, 0, "{:?}", report.error_samples);
    let offline = &report.offline;
    assert!(
        offline.after_live_failure > 0,
        "no gate met the cut database: {offline:?}"
    );
    assert_eq!(offline.uploaded, offline.buffered, "{offline:?}");
    for (outcome, n) in &report.outcomes["journey"] {
        assert!(
            outcome == "approve" || outcome == "decline pass_back",
            "{n} journey taps answered {outcome}"
        );
    }
    // Every tap a gate scanned is stored once: answered live or uploaded.
    assert_eq!(
        gw.count("taps").await as u64,
        report.requests + offline.uploaded
    );
    gw.shutdown().await.unwrap();
}
