//! Ticket purchase by merchant-presented QR (flow C) against the real provider sandbox over
//! HTTP: the machine orders, the rider's wallet pays the QR, and the provider's signed
//! notification — posted by the sandbox straight to the gateway's HTTPS public listener, trusting
//! the test's dev CA — or, when it is lost, the query fallback marks the order paid, once; unpaid orders expire and are closed at
//! the provider; forged notifications and bad input change nothing.

use gateway::store::charging::ChargeStatus;
use serde_json::{json, Value};
use turnpike_client::{Answer, TerminalClient};
use turnpike_tests::provider::{form_body, sandbox_keys, PaidEnv, APP_ID};
use turnpike_tests::{booth, gate, Db};

use turnpike_tests::on_both;

/// The ticket machine at Xianghu (a terminal of the metro operator located at the station).
fn machine(p: &PaidEnv) -> TerminalClient {
    p.env.gw.terminal(&gate("xianghu", 1))
}

async fn order(t: &TerminalClient, destination: &str, request_id: &str) -> Answer {
    let body = json!({ "destination_id": destination, "request_id": request_id });
    t.post_bytes(
        "/v1/tickets/orders",
        "application/json",
        serde_json::to_vec(&body).unwrap(),
    )
    .await
    .unwrap()
}

async fn get_order(t: &TerminalClient, order_id: &str) -> Value {
    let a = t
        .get(&format!("/v1/tickets/orders/{order_id}"))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    a.json().unwrap()
}

/// Runs SQL on the gateway's own database (for what no API shows, and to age an order).
async fn gateway_db(p: &PaidEnv) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(p.env.db.url())
        .await
        .expect("opening the gateway database")
}

/// (notify_id, verified, applied) of every recorded notification.
async fn notifications(p: &PaidEnv) -> Vec<(String, i64, String)> {
    use sqlx::Row;
    let pool = gateway_db(p).await;
    let rows = sqlx::query(
        "SELECT notify_id, verified, applied FROM provider_notifications ORDER BY received_at_ms",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Waits until a verified notification is recorded with `applied` (its handling commits the
/// charge first and the record after).
async fn wait_applied(p: &PaidEnv, applied: &str) -> Vec<(String, i64, String)> {
    let ok = p
        .eventually(10_000, || async {
            notifications(p)
                .await
                .iter()
                .any(|(_, v, a)| *v == 1 && a == applied)
        })
        .await;
    let recorded = notifications(p).await;
    assert!(ok, "no notification applied as {applied}: {recorded:?}");
    recorded
}

/// Scans a PNG the way a wallet would: decode the image, find the QR, read it.
fn scan_png(bytes: &[u8]) -> String {
    terminal_sim::tickets::scan_qr_png(bytes).expect("one readable QR code in an 8-bit grey PNG")
}

/// A minimal XML well-formedness check: one root `svg` element, every tag closed in order,
/// attributes quoted.
fn assert_well_formed_svg(svg: &str) {
    let mut rest = svg.trim();
    if let Some(after) = rest.strip_prefix("<?xml") {
        rest = after[after.find("?>").expect("XML declaration closed") + 2..].trim_start();
    }
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    while let Some(start) = rest.find('<') {
        assert!(
            !stack.is_empty() || rest[..start].trim().is_empty(),
            "text outside the root"
        );
        let end = rest[start..].find('>').expect("tag closed") + start;
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "tags nest");
        } else {
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name = tag.split_whitespace().next().expect("tag name").to_string();
            assert_eq!(tag.matches('"').count() % 2, 0, "attributes quoted: {tag}");
            if stack.is_empty() {
                roots += 1;
                assert_eq!(name, "svg");
            }
            if !self_closing {
                stack.push(name);
            }
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed tags {stack:?}");
    assert!(rest.trim().is_empty());
    assert_eq!(roots, 1);
}

/// GETs with the content type, which `TerminalClient` does not return.
async fn get_image(p: &PaidEnv, terminal: &str, path: &str) -> (u16, String, Vec<u8>) {
    let certs = &p.env.gw.certs;
    let http = turnpike_client::tls::http_client(
        &p.env.gw.ca(),
        Some((
            &certs.join("terminals").join(format!("{terminal}.pem")),
            &certs.join("terminals").join(format!("{terminal}.key")),
        )),
    )
    .unwrap();
    let resp = http
        .get(format!("{}{path}", p.env.gw.terminal_base))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

async fn wait_status(p: &PaidEnv, t: &TerminalClient, order_id: &str, status: &str) -> Value {
    let last = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let ok = p
        .eventually(10_000, || {
            let (t, id, last) = (t.clone(), order_id.to_string(), last.clone());
            async move {
                let o = get_order(&t, &id).await;
                let done = o["status"] == status;
                *last.lock().unwrap() = o;
                done
            }
        })
        .await;
    let last = last.lock().unwrap().clone();
    assert!(ok, "order {order_id} never became {status}: {last}");
    last
}

/// The demo metro's fare from `from` to `to`, as the gateway's loaded network prices it.
fn metro_fare(p: &PaidEnv, from: &str, to: &str) -> turnpike_wire::Money {
    p.env
        .gw
        .state
        .networks
        .get(turnpike_client::demo::METRO_OPERATOR)
        .unwrap()
        .metro_fare(from, to)
        .unwrap()
}

async fn pay_qr(p: &PaidEnv, qr: &str, user: &str) -> (u16, Value) {
    p.sandbox
        .admin_post("/sandbox/qr/pay", json!({ "qr_code": qr, "user_id": user }))
        .await
}

/// Proves the happy path: the order is priced from the machine's station, its QR (PNG and SVG)
/// carries the provider's payload, the rider pays it in the wallet, and the signed notification
/// — delivered twice by the sandbox and once more by hand — marks it paid with a ticket code and
/// books exactly one balanced capture; the query fallback plays no part (it is far off).
async fn paid_by_notification(db: Db) {
    let Some(p) = PaidEnv::start_notified(db, |c| {
        c.charging.ticket_query_after_ms = 600_000;
    })
    .await
    else {
        return;
    };
    p.sandbox
        .set_faults(json!({ "duplicate_notifications": 1.0 }))
        .await;
    let t = machine(&p);
    let a = order(&t, "wulin-square", "order-0001").await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let o: Value = a.json().unwrap();
    let order_id = o["order_id"].as_str().unwrap().to_string();
    assert_eq!(o["status"], "pending");
    assert_eq!(o["origin_id"], "xianghu");
    assert_eq!(o["amount"]["currency"], "CNY");
    let fare = metro_fare(&p, "xianghu", "wulin-square");
    assert_eq!(o["amount"]["amount"], fare.amount().to_string());
    let qr = o["qr_payload"].as_str().unwrap().to_string();
    assert!(
        qr.starts_with("https://qr.sandbox.turnpike.invalid/"),
        "{qr}"
    );
    assert!(o["ticket_code"].is_null());
    assert!(o["expires_at_ms"].as_i64().unwrap() > turnpike_tests::now_ms() as i64 + 14 * 60_000);

    // The same request again is the same order, not a second one.
    let again = order(&t, "wulin-square", "order-0001").await;
    assert_eq!(again.status, 200);
    let again: Value = again.json().unwrap();
    assert_eq!(again["order_id"], o["order_id"]);
    assert_eq!(again["qr_payload"], o["qr_payload"]);

    // The QR images carry the payload.
    let (status, ct, png_bytes) =
        get_image(&p, &gate("xianghu", 1), o["qr_png_url"].as_str().unwrap()).await;
    assert_eq!((status, ct.as_str()), (200, "image/png"));
    assert_eq!(scan_png(&png_bytes), qr);
    let (status, ct, svg) =
        get_image(&p, &gate("xianghu", 1), o["qr_svg_url"].as_str().unwrap()).await;
    assert_eq!((status, ct.as_str()), (200, "image/svg+xml"));
    assert_well_formed_svg(std::str::from_utf8(&svg).unwrap());

    let user = p.sandbox.wallet(10_000, None).await;
    let (status, body) = pay_qr(&p, &qr, &user).await;
    assert_eq!(status, 200, "{body}");
    let paid = wait_status(&p, &t, &order_id, "paid").await;
    let code = paid["ticket_code"].as_str().unwrap().to_string();
    assert!(code.starts_with("TK-") && code.len() == 23, "{code}");
    assert!(paid["paid_at_ms"].as_i64().is_some());
    assert_eq!(p.sandbox.balance_fen(&user).await, 10_000 - fare.to_minor());

    // The sandbox posted it twice (the fault); one was applied, the other seen as a duplicate.
    let recorded = wait_applied(&p, "paid").await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].1, 1, "verified");
    assert_eq!(recorded[0].2, "paid", "applied by the notification");
    let out_trade_no = p.env.gw.state.store.charges(None, None, 10).await.unwrap()[0]
        .out_trade_no
        .clone();
    assert!(
        p.eventually(5_000, || async {
            let (_, list) = p
                .sandbox
                .admin_get(&format!(
                    "/sandbox/notifications?out_trade_no={out_trade_no}"
                ))
                .await;
            list[0]["status"] == "delivered"
        })
        .await,
        "the provider saw `success`"
    );
    let metrics = reqwest::get(format!("{}/metrics", p.env.gw.ops_base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gateway_provider_notifications_total{outcome=\"duplicate\"}"),
        "the second copy was seen as a duplicate"
    );

    // The same notification delivered once more (as the provider's retry would): answered
    // `success`, nothing changes.
    let again = p.sandbox.signed_notifications(&out_trade_no).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        p.post_notify(again[0].clone()).await,
        (200, "success".to_string())
    );
    assert_eq!(notifications(&p).await.len(), 1);
    let after = get_order(&t, &order_id).await;
    assert_eq!(after["ticket_code"], paid["ticket_code"]);
    let l = p.ledger().await;
    assert_eq!(l["transactions"], 1, "exactly one capture: {l}");
    assert_eq!(l["unbalanced_transactions"], 0);
    let txns = p.env.gw.state.store.ledger_transactions().await.unwrap();
    assert_eq!(txns[0].kind, "capture");
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!(
        (charges[0].kind.as_str(), charges[0].status.as_str()),
        ("ticket", "captured")
    );
    assert_eq!(
        txns[0].out_trade_no.as_deref(),
        Some(charges[0].out_trade_no.as_str())
    );
    // Paid on the spot: the operator is owed the fare, the provider holds it less its fee.
    let balance = |account: &str| -> i64 {
        l["balances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["account"] == account)
            .map(|b| b["debit_minor"].as_i64().unwrap() - b["credit_minor"].as_i64().unwrap())
            .sum()
    };
    let fee = charges[0].fee_minor.unwrap();
    assert_eq!(balance("operator_payable"), -fare.to_minor());
    assert_eq!(balance("provider_clearing"), fare.to_minor() - fee);
    assert_eq!(balance("provider_fees"), fee);
    assert_eq!(balance("rider_receivable"), 0);
    let trades = p.sandbox.trades().await;
    assert_eq!(trades.len(), 1);
    assert_eq!(trades[0].status, "TRADE_SUCCESS");
    assert_eq!(trades[0].out_trade_no, charges[0].out_trade_no);
}
on_both!(paid_by_notification);

/// Proves a forged notification (signed with a key that is not the provider's) is refused with
/// 400 `fail`, stores nothing, and applies nothing; an oversized one is refused too.
async fn forged_notification(db: Db) {
    let Some(p) = PaidEnv::start_notified(db, |c| {
        c.charging.ticket_query_after_ms = 600_000;
    })
    .await
    else {
        return;
    };
    let t = machine(&p);
    let o: Value = order(&t, "wulin-square", "forge-me").await.json().unwrap();
    let order_id = o["order_id"].as_str().unwrap().to_string();
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    let out_trade_no = charges[0].out_trade_no.clone();
    let mut params = std::collections::BTreeMap::new();
    for (k, v) in [
        ("notify_type", "trade_status_sync"),
        ("notify_id", "forged0000000000000000000000000000"),
        ("notify_time", "2026-11-29 12:00:00"),
        ("app_id", APP_ID),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("trade_no", "2026112922001400000000000001"),
        ("out_trade_no", out_trade_no.as_str()),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "5.00"),
        ("sign_type", "RSA2"),
    ] {
        params.insert(k.to_string(), v.to_string());
    }
    // Signed like the provider signs, but with the merchant's own key: the wrong one.
    let wrong_key =
        provider_sandbox::sign::Signer::from_file(&sandbox_keys().join("app-private.pem")).unwrap();
    let content = provider_sandbox::sign::canonical_notification(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    params.insert("sign".into(), wrong_key.sign(&content));
    let body = form_body(&params);
    assert_eq!(p.post_notify(body.clone()).await, (400, "fail".to_string()));
    // Tampering with a field after signing is caught the same way.
    let tampered = String::from_utf8(body).unwrap().replace("5.00", "0.01");
    assert_eq!(p.post_notify(tampered.into_bytes()).await.0, 400);
    // Over 8 KiB is refused before it is read further.
    let big = format!("notify_id=x&pad={}", "a".repeat(9 * 1024));
    assert_eq!(p.post_notify(big.into_bytes()).await.0, 413);
    // Nothing of an unverified notification is stored: a forged notify_id cannot claim a
    // real one, and a flood of them costs no disk.
    let recorded = notifications(&p).await;
    assert!(recorded.is_empty(), "{recorded:?}");
    let after = get_order(&t, &order_id).await;
    assert_eq!(after["status"], "pending");
    assert!(after["ticket_code"].is_null());
    assert_eq!(p.ledger().await["transactions"], 0);
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    assert_eq!(charges[0].status, ChargeStatus::Pending);
}
on_both!(forged_notification);

/// Proves a lost notification does not lose the sale: the provider's notify URL is a dead
/// port, so the query fallback finds the payment, marks the order paid and issues its ticket;
/// the notification arriving late afterwards changes nothing.
async fn lost_notification(db: Db) {
    let dead = turnpike_tests::provider::free_port();
    let Some(p) = PaidEnv::start_notified(db, |c| {
        c.charging.ticket_query_after_ms = 300;
        c.provider.notify_url = format!("https://localhost:{dead}/v1/provider/notify");
    })
    .await
    else {
        return;
    };
    let t = machine(&p);
    let o: Value = order(&t, "binhe-road", "lost-1").await.json().unwrap();
    let order_id = o["order_id"].as_str().unwrap().to_string();
    let user = p.sandbox.wallet(10_000, None).await;
    let (status, body) = pay_qr(&p, o["qr_payload"].as_str().unwrap(), &user).await;
    assert_eq!(status, 200, "{body}");
    let paid = wait_status(&p, &t, &order_id, "paid").await;
    assert!(paid["ticket_code"].as_str().unwrap().starts_with("TK-"));
    let out_trade_no = p.env.gw.state.store.charges(None, None, 10).await.unwrap()[0]
        .out_trade_no
        .clone();
    assert!(
        p.eventually(5_000, || async {
            let (_, list) = p
                .sandbox
                .admin_get(&format!(
                    "/sandbox/notifications?out_trade_no={out_trade_no}"
                ))
                .await;
            list[0]["attempts"].as_i64().unwrap_or(0) >= 1 && list[0]["status"] == "pending"
        })
        .await,
        "the sandbox tried to notify, and failed"
    );
    assert!(
        notifications(&p).await.is_empty(),
        "no notification reached the gateway"
    );
    // The notification arrives after all: acknowledged, nothing applied twice.
    let late = p.sandbox.signed_notifications(&out_trade_no).await;
    assert_eq!(
        p.post_notify(late[0].clone()).await,
        (200, "success".to_string())
    );
    let recorded = notifications(&p).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].2, "already_paid");
    assert_eq!(
        get_order(&t, &order_id).await["ticket_code"],
        paid["ticket_code"]
    );
    let l = p.ledger().await;
    assert_eq!(l["transactions"], 1, "{l}");
    assert_eq!(l["unbalanced_transactions"], 0);
}
on_both!(lost_notification);

/// Proves an unpaid order whose QR has expired is cancelled at the provider by the fallback:
/// the order reads `expired`, the provider's trade is closed (a late scan is refused), and
/// nothing is booked. (The order's expiry is moved into the past in the database rather than
/// waiting out the provider's one-minute minimum.)
async fn unpaid_order_expires(db: Db) {
    let Some(p) = PaidEnv::start_notified(db, |c| {
        c.charging.ticket_query_after_ms = 200;
    })
    .await
    else {
        return;
    };
    let t = machine(&p);
    let o: Value = order(&t, "binhe-road", "nobody-pays").await.json().unwrap();
    let order_id = o["order_id"].as_str().unwrap().to_string();
    // Not expired yet: the fallback looks, finds it unpaid, and leaves it.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(get_order(&t, &order_id).await["status"], "pending");
    assert_eq!(p.sandbox.trades().await[0].status, "WAIT_BUYER_PAY");
    let pool = gateway_db(&p).await;
    let past = turnpike_tests::now_ms() as i64 - 3_600_000;
    sqlx::query("UPDATE ticket_orders SET expires_at_ms = $1 WHERE order_id = $2")
        .bind(past)
        .bind(order_id.parse::<i64>().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE charges SET next_attempt_at_ms = 0 WHERE kind = 'ticket'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let expired = wait_status(&p, &t, &order_id, "expired").await;
    assert!(expired["ticket_code"].is_null());
    let trades = p.sandbox.trades().await;
    assert_eq!(trades.len(), 1);
    assert_eq!(trades[0].status, "TRADE_CLOSED", "closed at the provider");
    let user = p.sandbox.wallet(10_000, None).await;
    let (status, _) = pay_qr(&p, o["qr_payload"].as_str().unwrap(), &user).await;
    assert_ne!(status, 200, "a closed code cannot be paid");
    assert_eq!(p.sandbox.balance_fen(&user).await, 10_000);
    assert_eq!(p.ledger().await["transactions"], 0);
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    assert_eq!(charges[0].status, ChargeStatus::Cancelled);
}
on_both!(unpaid_order_expires);

/// Proves a precreate the provider does not answer leaves no sellable order: 503
/// `provider_unavailable`, the charge cancelled (and the trade closed at the provider), and the
/// same request afterwards reads the order as `cancelled`.
async fn provider_down(db: Db) {
    let Some(p) = PaidEnv::start_notified(db, |_| {}).await else {
        return;
    };
    p.sandbox
        .set_faults(json!({ "script": [
            { "method": "alipay.trade.precreate", "fault": "drop_after_commit" }
        ] }))
        .await;
    let t = machine(&p);
    let a = order(&t, "binhe-road", "down-1").await;
    assert_eq!(a.status, 503, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.error_code().as_deref(), Some("provider_unavailable"));
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].status, ChargeStatus::Cancelled);
    let trades = p.sandbox.trades().await;
    assert!(
        trades.iter().all(|t| t.status == "TRADE_CLOSED"),
        "nothing left open: {trades:?}"
    );
    let again = order(&t, "binhe-road", "down-1").await;
    assert_eq!(again.status, 200);
    let again: Value = again.json().unwrap();
    assert_eq!(again["status"], "cancelled");
    assert!(again["qr_payload"].is_null());
    assert_eq!(p.ledger().await["transactions"], 0);
}
on_both!(provider_down);

/// Proves bad ticket requests get precise errors and write nothing (no charge, no order, no
/// provider trade), and that an order is visible only to the machine that created it.
async fn bad_input(db: Db) {
    let Some(p) = PaidEnv::start_notified(db, |_| {}).await else {
        return;
    };
    let t = machine(&p);
    let count = |table: &'static str| {
        let gw = &p.env.gw;
        async move { gw.count(table).await }
    };
    for (destination, request_id, status, code) in [
        ("atlantis", "r-1", 422, "unknown_station"),
        ("", "r-1", 422, "unknown_station"),
        ("wulin-square", "", 422, "invalid_request_id"),
        ("wulin-square", "has space", 422, "invalid_request_id"),
        ("wulin-square", &"x".repeat(65), 422, "invalid_request_id"),
    ] {
        let a = order(&t, destination, request_id).await;
        assert_eq!(a.status, status, "{destination}/{request_id}");
        assert_eq!(a.error_code().as_deref(), Some(code));
    }
    let a = t
        .post_bytes(
            "/v1/tickets/orders",
            "application/json",
            br#"{"destination_id":"wulin-square","request_id":"r-2","price":"0.01"}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(a.error_code().as_deref(), Some("unknown_field"));
    let a = t
        .post_bytes("/v1/tickets/orders", "application/json", b"{".to_vec())
        .await
        .unwrap();
    assert_eq!(a.error_code().as_deref(), Some("malformed_json"));
    let toll = p.env.gw.terminal(&booth("shaoxing", "out"));
    let a = order(&toll, "wulin-square", "r-3").await;
    assert_eq!(a.error_code().as_deref(), Some("not_a_metro_terminal"));
    assert_eq!(count("charges").await, 0);
    assert_eq!(count("ticket_orders").await, 0);
    assert!(p.sandbox.trades().await.is_empty());

    // One good order; the same request_id for another destination is a conflict.
    let o: Value = order(&t, "wulin-square", "r-4").await.json().unwrap();
    let id = o["order_id"].as_str().unwrap().to_string();
    let a = order(&t, "binhe-road", "r-4").await;
    assert_eq!(a.status, 409);
    assert_eq!(a.error_code().as_deref(), Some("idempotency_conflict"));
    // Another machine's request_id space is its own: the same id there is another order.
    let other = p.env.gw.terminal(&gate("xianghu", 2));
    let mine: Value = order(&other, "wulin-square", "r-4").await.json().unwrap();
    assert_ne!(mine["order_id"], o["order_id"]);
    // Nobody else sees (or renders) this machine's order.
    for path in [
        format!("/v1/tickets/orders/{id}"),
        format!("/v1/tickets/orders/{id}/qr.png"),
        format!("/v1/tickets/orders/{id}/qr.svg"),
    ] {
        let a = other.get(&path).await.unwrap();
        assert_eq!(a.status, 404, "{path}");
        assert_eq!(a.error_code().as_deref(), Some("not_found"));
    }
    for path in ["/v1/tickets/orders/12x", "/v1/tickets/orders/99/qr.png"] {
        assert_eq!(t.get(path).await.unwrap().status, 404);
    }
    assert_eq!(count("charges").await, 2);
    assert_eq!(count("ticket_orders").await, 2);
    assert_eq!(p.sandbox.trades().await.len(), 2);
    // The notify endpoint takes forms only.
    let a = p
        .env
        .gw
        .public_send(
            reqwest::Method::POST,
            "/v1/provider/notify",
            None,
            Some(&json!({"notify_id": "x"})),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 415);
}
on_both!(bad_input);

/// Proves the notification also settles a metro deduction whose answer was lost: the worker
/// saw an unknown outcome and will not retry for minutes, but the provider's signed
/// notification (cross-checked by query) captures the charge once, with the fare and the
/// capture booked and balanced.
async fn metro_deduction_settled_by_notification(db: Db) {
    let Some(p) = PaidEnv::start_notified(db, |c| {
        c.charging.capture_backoff_ms = 600_000;
        c.charging.capture_backoff_max_ms = 600_000;
    })
    .await
    else {
        return;
    };
    p.sandbox
        .set_faults(json!({ "script": [
            { "method": "alipay.trade.pay", "fault": "drop_after_commit" }
        ] }))
        .await;
    let rider = p.env.gw.rider().await;
    let user = p.bind_wallet(&rider, 10_000, 10_000).await;
    let now = turnpike_tests::now_ms;
    use turnpike_wire::api::{Decision, Direction};
    let entry = p
        .env
        .gw
        .terminal(&gate("xianghu", 1))
        .tap(&turnpike_tests::tap(
            1,
            Direction::Entry,
            rider.ride_code(now()).unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(entry.decision, Decision::Approve);
    let exit = p
        .env
        .gw
        .terminal(&gate("wulin-square", 1))
        .tap(&turnpike_tests::tap(
            1,
            Direction::Exit,
            rider.ride_code(now()).unwrap(),
        ))
        .await
        .unwrap();
    let fare = exit.charge.unwrap().to_minor();
    let captured = p
        .eventually(20_000, || async {
            let c = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
            c.len() == 1 && c[0].status == ChargeStatus::Captured
        })
        .await;
    assert!(
        captured,
        "the notification captured the charge: {:?} {:?}",
        p.env.gw.state.store.charges(None, None, 10).await.unwrap(),
        notifications(&p).await
    );
    wait_applied(&p, "paid").await;
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    assert_eq!(
        charges[0].attempt, 1,
        "the same trade number, never a second deduction"
    );
    assert_eq!(p.sandbox.balance_fen(&user).await, 10_000 - fare);
    let l = p.ledger().await;
    assert_eq!(l["transactions"], 2, "fare and capture: {l}");
    assert_eq!(l["unbalanced_transactions"], 0);
}
on_both!(metro_deduction_settled_by_notification);

/// A rider's request on the public listener (`body` as JSON when given).
async fn rider_send(
    p: &PaidEnv,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Answer {
    p.env
        .gw
        .public_send(method, path, Some(token), body)
        .await
        .unwrap()
}

/// A rider buys a ticket in the app.
async fn buy(p: &PaidEnv, token: &str, order: &Value) -> Answer {
    rider_send(
        p,
        reqwest::Method::POST,
        "/v1/riders/me/tickets",
        token,
        Some(order),
    )
    .await
}

/// A rider asks for the real name of the wallet account `logon_id`.
async fn check_real_name(p: &PaidEnv, token: &str, logon_id: &str) -> Answer {
    let body = json!({ "logon_id": logon_id });
    rider_send(
        p,
        reqwest::Method::POST,
        "/v1/riders/me/real-name",
        token,
        Some(&body),
    )
    .await
}

/// An answer's status and error code.
fn refusal(a: &Answer) -> (u16, Option<String>) {
    (a.status, a.error_code())
}

fn rider_order(destination: &str, request_id: &str) -> Value {
    json!({
        "operator_id": turnpike_client::demo::METRO_OPERATOR,
        "origin_id": "xianghu",
        "destination_id": destination,
        "request_id": request_id,
    })
}

/// Proves a rider buys a ticket in the app only once the bound wallet's account has passed the
/// provider's real-name certification: refused (and nothing written) before a wallet is bound,
/// while the account is not certified, and when the rider names another account (whose
/// certification is not borrowed); once certified, the order is priced from the named stations,
/// pre-created at the provider, paid by QR in the wallet, and issued a ticket code; another
/// rider cannot see it; a repeat is the same order and a repeat for another journey a 409. A
/// rider has at most three unpaid orders; unpaid app tickets do not hold up unbinding, and
/// unbinding voids the real-name answer.
async fn rider_buys_a_ticket_in_the_app(db: Db) {
    let Some(p) = PaidEnv::start_notified(db, |c| {
        c.charging.ticket_query_after_ms = 600_000;
    })
    .await
    else {
        return;
    };
    use reqwest::Method;
    let (a, b) = (p.env.gw.rider().await, p.env.gw.rider().await);
    let name = rider_send(&p, Method::GET, "/v1/riders/me/real-name", &a.token, None).await;
    assert_eq!(name.status, 200);
    let name: Value = name.json().unwrap();
    assert_eq!(name["status"], "unchecked");
    assert_eq!(name["required_for_tickets"], true);

    let refused = buy(&p, &a.token, &rider_order("wulin-square", "app-1")).await;
    assert_eq!(refusal(&refused), (403, Some("real_name_required".into())));
    let unbound = check_real_name(&p, &a.token, "13800000000").await;
    assert_eq!(refusal(&unbound), (409, Some("wallet_not_bound".into())));

    // A's wallet: an account not (yet) certified. B's account is certified.
    let user = p.bind_wallet(&a, 10_000, 10_000).await;
    let (status, _) = p
        .sandbox
        .admin_post(
            &format!("/sandbox/users/{user}/real-name"),
            json!({ "real_name": false }),
        )
        .await;
    assert_eq!(status, 200);
    let logon_of = |user: String| {
        let p = &p;
        async move {
            let (status, wallet) = p.sandbox.admin_get(&format!("/sandbox/users/{user}")).await;
            assert_eq!(status, 200, "{wallet}");
            wallet["logon_id"].as_str().unwrap().to_string()
        }
    };
    let own_logon = logon_of(user.clone()).await;
    let other_logon = logon_of(p.sandbox.wallet(0, None).await).await;

    let borrowed = check_real_name(&p, &a.token, &other_logon).await;
    assert_eq!(refusal(&borrowed), (422, Some("not_your_wallet".into())));
    let unknown = check_real_name(&p, &a.token, "nobody@example.invalid").await;
    // The same answer as another person's account: no oracle of who has an account.
    assert_eq!(refusal(&unknown), refusal(&borrowed));
    assert_eq!(unknown.body, borrowed.body);
    for bad in ["", "a b", &"9".repeat(65)] {
        let answer = check_real_name(&p, &a.token, bad).await;
        assert_eq!(
            refusal(&answer),
            (422, Some("invalid_logon_id".into())),
            "{bad:?}"
        );
    }
    assert_eq!(
        p.env.gw.count("rider_real_name").await,
        0,
        "nothing recorded"
    );

    let not_yet = check_real_name(&p, &a.token, &own_logon).await;
    assert_eq!(not_yet.status, 200);
    assert_eq!(not_yet.json::<Value>().unwrap()["status"], "not_certified");
    let refused = buy(&p, &a.token, &rider_order("wulin-square", "app-1")).await;
    assert_eq!(refused.error_code().as_deref(), Some("real_name_required"));
    assert_eq!(p.env.gw.count("ticket_orders").await, 0, "nothing written");

    // The rider certifies in the wallet and checks again.
    p.sandbox
        .admin_post(
            &format!("/sandbox/users/{user}/real-name"),
            json!({ "real_name": true }),
        )
        .await;
    let certified = check_real_name(&p, &a.token, &own_logon).await;
    let certified: Value = certified.json().unwrap();
    assert_eq!(certified["status"], "certified");
    assert!(certified["checked_at_ms"].as_i64().is_some());

    let placed = buy(&p, &a.token, &rider_order("wulin-square", "app-1")).await;
    assert_eq!(
        placed.status,
        201,
        "{}",
        String::from_utf8_lossy(&placed.body)
    );
    let o: Value = placed.json().unwrap();
    let order_id = o["order_id"].as_str().unwrap().to_string();
    assert_eq!(o["status"], "pending");
    assert_eq!(o["operator_id"], turnpike_client::demo::METRO_OPERATOR);
    assert_eq!(
        (o["origin_id"].as_str(), o["destination_id"].as_str()),
        (Some("xianghu"), Some("wulin-square"))
    );
    assert!(o["qr_svg_url"].is_null(), "the app draws its own QR: {o}");
    let fare = metro_fare(&p, "xianghu", "wulin-square");
    assert_eq!(o["amount"]["amount"], fare.amount().to_string());
    let qr = o["qr_payload"].as_str().unwrap().to_string();

    let again = buy(&p, &a.token, &rider_order("wulin-square", "app-1")).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.json::<Value>().unwrap()["order_id"],
        order_id.as_str()
    );
    let other_journey = buy(&p, &a.token, &rider_order("xixing", "app-1")).await;
    assert_eq!(
        refusal(&other_journey),
        (409, Some("idempotency_conflict".into()))
    );

    // Another rider sees none of it, and cannot fetch it by id.
    let path = format!("/v1/riders/me/tickets/{order_id}");
    let theirs = rider_send(&p, Method::GET, &path, &b.token, None).await;
    assert_eq!(theirs.status, 404);
    let list = rider_send(&p, Method::GET, "/v1/riders/me/tickets", &b.token, None).await;
    assert_eq!(list.json::<Value>().unwrap()["orders"], json!([]));

    // The rider pays the QR in the wallet (any wallet may pay it).
    let (status, body) = pay_qr(&p, &qr, &user).await;
    assert_eq!(status, 200, "{body}");
    let paid = p
        .eventually(10_000, || async {
            let o: Value = rider_send(&p, Method::GET, &path, &a.token, None)
                .await
                .json()
                .unwrap();
            o["status"] == "paid" && o["ticket_code"].is_string()
        })
        .await;
    assert!(paid, "the order was paid and issued");
    let list: Value = rider_send(&p, Method::GET, "/v1/riders/me/tickets", &a.token, None)
        .await
        .json()
        .unwrap();
    assert_eq!(list["orders"].as_array().unwrap().len(), 1);
    assert_eq!(list["orders"][0]["status"], "paid");
    assert_eq!(p.sandbox.balance_fen(&user).await, 10_000 - fare.to_minor());
    // It is the rider's charge (receipts, disputes), not a machine's.
    let charges: Value = rider_send(&p, Method::GET, "/v1/riders/me/charges", &a.token, None)
        .await
        .json()
        .unwrap();
    let ticket = charges
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "ticket")
        .unwrap_or_else(|| panic!("a ticket charge in {charges}"));
    assert_eq!(ticket["status"], "captured");

    // Hostile input changes nothing.
    let orders_before = p.env.gw.count("ticket_orders").await;
    for (body, status, code) in [
        (
            json!({ "operator_id": "nobody", "origin_id": "xianghu", "destination_id": "xixing", "request_id": "x1" }),
            404,
            "not_found",
        ),
        (rider_order("nowhere", "x2"), 422, "unknown_station"),
        (
            json!({ "operator_id": turnpike_client::demo::METRO_OPERATOR, "origin_id": "../etc", "destination_id": "xixing", "request_id": "x3" }),
            422,
            "unknown_station",
        ),
        (rider_order("xixing", "bad id"), 422, "invalid_request_id"),
        (
            json!({ "operator_id": "x", "origin_id": "y", "destination_id": "z", "request_id": "w", "rider_id": "1" }),
            400,
            "unknown_field",
        ),
    ] {
        let answer = rider_send(
            &p,
            Method::POST,
            "/v1/riders/me/tickets",
            &a.token,
            Some(&body),
        )
        .await;
        assert_eq!(
            (answer.status, answer.error_code().as_deref()),
            (status, Some(code)),
            "{body}"
        );
    }
    let huge = json!({ "operator_id": "x".repeat(5_000), "origin_id": "y", "destination_id": "z", "request_id": "w" });
    let answer = rider_send(
        &p,
        Method::POST,
        "/v1/riders/me/tickets",
        &a.token,
        Some(&huge),
    )
    .await;
    assert_eq!(answer.status, 413);
    assert_eq!(p.env.gw.count("ticket_orders").await, orders_before);

    // An app ticket is not paid through the agreement, so it does not hold up unbinding; and
    // the answer was about that wallet's account: without it, the rider is unchecked again.
    // At most three unpaid orders at once (each is a trade at the provider); a repeat of one
    // is still answered.
    for request_id in ["app-2", "app-4", "app-5"] {
        let pending = buy(&p, &a.token, &rider_order("xixing", request_id)).await;
        assert_eq!(pending.status, 201);
    }
    let fourth = buy(&p, &a.token, &rider_order("xixing", "app-6")).await;
    assert_eq!(
        refusal(&fourth),
        (409, Some("too_many_pending_tickets".into()))
    );
    let repeat = buy(&p, &a.token, &rider_order("xixing", "app-2")).await;
    assert_eq!(repeat.status, 200);
    let unbound = rider_send(&p, Method::DELETE, "/v1/riders/me/wallet", &a.token, None).await;
    assert_eq!(
        unbound.status,
        204,
        "{}",
        String::from_utf8_lossy(&unbound.body)
    );
    let name: Value = rider_send(&p, Method::GET, "/v1/riders/me/real-name", &a.token, None)
        .await
        .json()
        .unwrap();
    assert_eq!(name["status"], "unchecked");
    let refused = buy(&p, &a.token, &rider_order("xixing", "app-3")).await;
    assert_eq!(refusal(&refused), (403, Some("real_name_required".into())));
}
on_both!(rider_buys_a_ticket_in_the_app);
