//! Fault knobs over real HTTP: dropped connections after commit, hangs, 5xx, declines, latency,
//! buyers who take their time, duplicate notifications, seeded probabilities, and the admin
//! endpoints that set them. A real client (reqwest) must see the failures the knobs promise, and
//! the money must move exactly once whatever the client saw.

mod common;

use common::on_both;

use std::time::{Duration, Instant};

use common::{assert_refused, pay_biz, Db, Harness, Receiver};
use serde_json::json;

async fn drop_after_commit_is_exactly_once(db: Db) {
    // Proves drop_after_commit applies and commits the pay, then closes the connection with no
    // answer (the client gets an error), and that the merchant's retry with the same out_trade_no
    // answers the committed trade without charging twice.
    let Some(h) = Harness::start_with(db, |_| {}).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    h.set_faults(json!({ "script": [
        { "method": "alipay.trade.pay", "fault": "drop_after_commit", "times": 1 }
    ]}))
    .await;
    let dropped = h
        .raw_call("alipay.trade.pay", pay_biz("F_1", &code, "10.00"))
        .await;
    let err = dropped.expect_err("the connection must close without an answer");
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(h.balance(&buyer).await, "90.00");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "F_1" }))
        .await;
    assert_eq!(q["trade_status"], "TRADE_SUCCESS", "{q}");
    let retry = h
        .call("alipay.trade.pay", pay_biz("F_1", &code, "10.00"))
        .await;
    assert_eq!(retry["code"], "10000", "{retry}");
    assert_eq!(retry["trade_no"], q["trade_no"]);
    assert_eq!(h.balance(&buyer).await, "90.00");
    let (_, left) = h.admin_get("/sandbox/faults").await;
    assert_eq!(left["script"], json!([]));
}
on_both!(drop_after_commit_is_exactly_once);

async fn timeout_and_5xx_apply_nothing(db: Db) {
    // Proves a timeout hangs for hang_ms and then closes the connection unanswered, and a 5xx
    // answers 502/503 with an HTML body; neither applies the call.
    let Some(h) = Harness::start_with(db, |_| {}).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    h.set_faults(json!({ "script": [
        { "method": "alipay.trade.pay", "fault": "timeout", "ms": 300 },
        { "method": "alipay.trade.pay", "fault": "http_5xx", "status": 502 },
        { "method": "*", "fault": "http_5xx" }
    ]}))
    .await;
    let started = Instant::now();
    let hung = h
        .raw_call("alipay.trade.pay", pay_biz("F_2", &code, "10.00"))
        .await;
    assert!(hung.is_err(), "{hung:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let bad_gateway = h
        .raw_call("alipay.trade.pay", pay_biz("F_2", &code, "10.00"))
        .await
        .unwrap();
    assert_eq!(bad_gateway.status().as_u16(), 502);
    let body = bad_gateway.text().await.unwrap();
    assert!(
        body.starts_with("<html>") && serde_json::from_str::<serde_json::Value>(&body).is_err()
    );
    let unavailable = h
        .raw_call("alipay.trade.query", json!({ "out_trade_no": "F_2" }))
        .await
        .unwrap();
    assert_eq!(unavailable.status().as_u16(), 503);
    assert_eq!(h.balance(&buyer).await, "100.00");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "F_2" }))
        .await;
    assert_refused(&q, "40004", "ACQ.TRADE_NOT_EXIST");
    let ok = h
        .call("alipay.trade.pay", pay_biz("F_2", &code, "10.00"))
        .await;
    assert_eq!(ok["code"], "10000", "{ok}");
}
on_both!(timeout_and_5xx_apply_nothing);

async fn declines_latency_and_user_paying(db: Db) {
    // Proves decline and insufficient_balance refuse a pay with the platform's sub codes and
    // nothing applied, latency delays the answer, and user_paying_ms answers 10003 and then pays
    // by itself (notifying TRADE_SUCCESS).
    let Some(h) = Harness::start_with(db, |_| {}).await else {
        return;
    };
    let merchant = Receiver::start().await;
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    h.set_faults(json!({ "methods": { "alipay.trade.pay": {
        "decline": { "rate": 1.0, "sub_code": "ACQ.BUYER_ENABLE_STATUS_FORBID" } } } }))
        .await;
    let a = h
        .call("alipay.trade.pay", pay_biz("F_3", &code, "10.00"))
        .await;
    assert_refused(&a, "40004", "ACQ.BUYER_ENABLE_STATUS_FORBID");
    h.set_faults(json!({ "methods": { "*": { "insufficient_balance": { "rate": 1.0 } } } }))
        .await;
    let a = h
        .call("alipay.trade.pay", pay_biz("F_3", &code, "10.00"))
        .await;
    assert_refused(&a, "40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH");
    assert_eq!(h.balance(&buyer).await, "100.00");

    h.set_faults(json!({ "methods": { "alipay.trade.query": {
        "latency": { "min_ms": 250, "max_ms": 250 } } } }))
        .await;
    let started = Instant::now();
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "F_3" }))
        .await;
    assert_refused(&q, "40004", "ACQ.TRADE_NOT_EXIST");
    assert!(started.elapsed() >= Duration::from_millis(250));

    h.set_faults(json!({ "methods": { "alipay.trade.pay": { "user_paying_ms": 300 } } }))
        .await;
    let a = h
        .call_with(
            "alipay.trade.pay",
            pay_biz("F_3", &code, "10.00"),
            &[("notify_url", merchant.url.as_str())],
        )
        .await;
    assert_eq!(a["code"], "10003", "{a}");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "F_3" }))
        .await;
    assert_eq!(q["trade_status"], "WAIT_BUYER_PAY");
    assert_eq!(h.balance(&buyer).await, "100.00");
    let got = merchant.wait_for("F_3", 1).await;
    assert_eq!(got[0]["trade_status"], "TRADE_SUCCESS");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "F_3" }))
        .await;
    assert_eq!(q["trade_status"], "TRADE_SUCCESS", "{q}");
    assert_eq!(h.balance(&buyer).await, "90.00");
}
on_both!(declines_latency_and_user_paying);

async fn duplicate_notifications(db: Db) {
    // Proves duplicate_notifications posts each notification twice, both copies signed and with
    // the same notify_id.
    let Some(h) = Harness::start_with(db, |_| {}).await else {
        return;
    };
    let merchant = Receiver::start().await;
    h.set_faults(json!({ "duplicate_notifications": 1.0 }))
        .await;
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    h.call_with(
        "alipay.trade.pay",
        pay_biz("F_4", &code, "1.00"),
        &[("notify_url", merchant.url.as_str())],
    )
    .await;
    let got = merchant.wait_for("F_4", 2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["notify_id"], got[1]["notify_id"]);
    assert!(got.iter().all(|n| h.notification_signed(n)));
    let listed = h
        .wait_notifications("F_4", |l| l.len() == 1 && l[0]["status"] == "delivered")
        .await;
    assert_eq!(listed[0]["attempts"], 1);
}
on_both!(duplicate_notifications);

async fn seeded_knobs_and_admin(db: Db) {
    // Proves probabilistic knobs repeat exactly for the same seed, that nonsense is refused with
    // 400, that DELETE resets to no faults, and that faults given in the configuration (the
    // --faults file) are in force from the start.
    let Some(h) = Harness::start_with(db, |c| {
        c.faults = serde_json::from_value(json!({ "script": [
            { "method": "alipay.trade.query", "fault": "http_5xx", "status": 504 }
        ]}))
        .unwrap();
    })
    .await
    else {
        return;
    };
    let first = h
        .raw_call("alipay.trade.query", json!({ "out_trade_no": "x" }))
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 504);

    let doc =
        json!({ "seed": 42, "methods": { "alipay.trade.query": { "http_5xx": { "rate": 0.5 } } } });
    let mut runs = Vec::new();
    for _ in 0..2 {
        h.set_faults(doc.clone()).await;
        let mut statuses = Vec::new();
        for _ in 0..16 {
            let r = h
                .raw_call("alipay.trade.query", json!({ "out_trade_no": "x" }))
                .await
                .unwrap();
            statuses.push(r.status().as_u16());
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&200) && runs[0].iter().any(|s| *s >= 500),
        "{runs:?}"
    );

    let (status, _) = h
        .admin_put(
            "/sandbox/faults",
            json!({ "methods": { "*": { "timeout": { "rate": 2.0, "hang_ms": 1 } } } }),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = h
        .admin_put("/sandbox/faults", json!({ "nonsense": true }))
        .await;
    assert!(status == 400 || status == 422, "{status}");
    let (status, now) = h.admin_delete("/sandbox/faults").await;
    assert_eq!(status, 200);
    assert_eq!(now["methods"], json!({}));
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "x" }))
        .await;
    assert_refused(&q, "40004", "ACQ.TRADE_NOT_EXIST");
}
on_both!(seeded_knobs_and_admin);
