//! Operations: health, readiness tied to the database, Prometheus metrics, graceful shutdown.

use std::sync::Arc;

use sqlx::Connection;
use turnpike_tests::{
    gate, tap, test_config, write_pki, Database, Db, Env, PgDatabase, Scratch, TestGateway,
};
use turnpike_wire::api::{Decision, Direction};

use turnpike_tests::demo_stops as stops;

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of one series (name with its labels, as rendered) in a Prometheus text page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness() {
    // /healthz and /readyz answer, /metrics carries the tap, latency and commit series, and
    // /readyz turns 503 when the database goes away.
    let Some(env) = Env::start(Db::Postgres).await else {
        return;
    };
    let s = stops();
    let rider = env.gw.rider().await;
    env.gw
        .terminal(&gate(&s[0], 1))
        .tap(&tap(
            1,
            Direction::Entry,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    env.gw
        .terminal(&gate(&s[0], 1))
        .tap(&tap(
            2,
            Direction::Entry,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(get(&format!("{}/healthz", env.gw.ops_base)).await.0, 200);
    assert_eq!(get(&format!("{}/readyz", env.gw.ops_base)).await.0, 200);
    let (status, metrics) = get(&format!("{}/metrics", env.gw.ops_base)).await;
    assert_eq!(status, 200);
    for series in [
        "gateway_taps_total{decision=\"approve\",reason=\"none\"}",
        "gateway_taps_total{decision=\"decline\",reason=\"pass_back\"}",
        "gateway_request_duration_seconds_bucket{endpoint=\"tap\",decision=\"approve\"",
        "gateway_db_commit_duration_seconds_bucket",
        "gateway_db_commit_batch_taps_bucket",
    ] {
        assert!(metrics.contains(series), "missing {series} in\n{metrics}");
    }
    assert!(!metrics.contains(&rider.ride_code(turnpike_tests::now_ms()).unwrap()[..40]));
    // What only the database knows, read at the scrape: up, no charge waiting, one rider denied.
    let denied = env
        .gw
        .public_send(
            reqwest::Method::POST,
            "/v1/admin/deny-list",
            Some(turnpike_tests::ADMIN_TOKEN),
            Some(&serde_json::json!({"kind": "rider", "subject_id": rider.rider_id, "reason": "test"})),
        )
        .await
        .unwrap();
    assert!(denied.status < 300, "{}", denied.status);
    let (_, metrics) = get(&format!("{}/metrics", env.gw.ops_base)).await;
    for (series, value) in [
        ("gateway_db_up", 1.0),
        ("gateway_capture_backlog", 0.0),
        ("gateway_capture_backlog_age_seconds", 0.0),
        ("gateway_deny_list_entries{kind=\"rider\"}", 1.0),
        ("gateway_deny_list_entries{kind=\"credential\"}", 0.0),
    ] {
        assert_eq!(
            sample(&metrics, series),
            Some(value),
            "{series} in\n{metrics}"
        );
    }
    assert!(sample(&metrics, "gateway_db_ping_seconds").is_some_and(|s| s > 0.0 && s < 1.0));
    let turnpike_tests::Database::Postgres(pg) = &env.db else {
        unreachable!()
    };
    // The backlog's age during a provider outage: a metro charge booked 20 minutes ago whose
    // last try ended unknown (its next attempt moved 5 minutes ahead) has waited 20 minutes; a
    // correction booked earlier but not due yet and never tried, and a ticket waiting for its
    // buyer, do not count (Store::ops_gauges).
    let now = turnpike_tests::now_ms() as i64;
    let mut db = sqlx::PgConnection::connect(&pg.url).await.unwrap();
    for (id, kind, created_min, next_min, error) in [
        (
            91_i64,
            "metro",
            -20_i64,
            5_i64,
            Some("provider outcome unknown"),
        ),
        (92, "metro", -30, 30, None),
        (93, "ticket", -40, 10, Some("buyer has not paid")),
    ] {
        sqlx::query(
            "INSERT INTO charges (charge_id, kind, operator_id, amount_minor, currency, business_day, status,
                                  attempt, out_trade_no, last_error, next_attempt_at_ms, created_at_ms, updated_at_ms)
             VALUES ($1, $2, $3, 300, 'CNY', '2026-12-05', 'pending', 1, $4, $5, $6, $7, $7)",
        )
        .bind(id)
        .bind(kind)
        .bind(turnpike_client::demo::METRO_OPERATOR)
        .bind(format!("ops-test-{id}"))
        .bind(error)
        .bind(now + next_min * 60_000)
        .bind(now + created_min * 60_000)
        .execute(&mut db)
        .await
        .unwrap();
    }
    let (_, metrics) = get(&format!("{}/metrics", env.gw.ops_base)).await;
    assert_eq!(sample(&metrics, "gateway_capture_backlog"), Some(3.0));
    let age = sample(&metrics, "gateway_capture_backlog_age_seconds").unwrap();
    assert!((1200.0..1260.0).contains(&age), "backlog age {age} s");
    drop(db);
    pg.drop_now().await;
    let (status, metrics) = get(&format!("{}/metrics", env.gw.ops_base)).await;
    assert_eq!(status, 200, "metrics answer without the database");
    assert_eq!(sample(&metrics, "gateway_db_up"), Some(0.0), "{metrics}");
    assert_eq!(get(&format!("{}/readyz", env.gw.ops_base)).await.0, 503);
    assert_eq!(
        get(&format!("{}/healthz", env.gw.ops_base)).await.0,
        200,
        "alive, just not ready"
    );
    let _keep: &PgDatabase = pg;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_taps() {
    // Taps already received when shutdown starts are committed and answered before the server
    // exits: the test holds SQLite's write lock so the taps are provably in flight, starts the
    // shutdown, then releases the lock.
    let scratch = Scratch::new("drain");
    let certs = scratch.0.join("certs");
    write_pki(&certs).unwrap();
    let db = Database::create(Db::Sqlite, &scratch, "gateway.db")
        .await
        .unwrap();
    let gw = TestGateway::start(test_config(db.url(), &certs))
        .await
        .unwrap();
    gw.configure_demo(None).await.unwrap();
    let s = stops();
    let gate_client = Arc::new(gw.terminal(&gate(&s[1], 1)));
    let mut riders = Vec::new();
    for _ in 0..10 {
        riders.push(gw.rider().await);
    }
    // Warm the connection so the requests go out at once.
    gate_client.get("/healthz").await.unwrap();
    let mut blocker = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let mut in_flight = Vec::new();
    for (i, rider) in riders.iter().enumerate() {
        let client = gate_client.clone();
        let request = tap(
            i as u64 + 1,
            Direction::Entry,
            rider.ride_code(turnpike_tests::now_ms()).unwrap(),
        );
        in_flight.push(tokio::spawn(async move { client.tap(&request).await }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let state = gw.state.clone();
    let shutdown = tokio::spawn(gw.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!shutdown.is_finished(), "shutdown waits for in-flight taps");
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    for handle in in_flight {
        let answer = handle
            .await
            .unwrap()
            .expect("an in-flight tap is answered during shutdown");
        assert_eq!(answer.decision, Decision::Approve);
    }
    shutdown.await.unwrap().unwrap();
    drop(blocker);
    // Every answered tap is on disk: reopen the database and count.
    let store = gateway::store::Store::connect(db.url(), 2, 1)
        .await
        .unwrap();
    assert_eq!(store.count_rows("taps").await.unwrap(), 10);
    drop(state);
}
