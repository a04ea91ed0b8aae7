//! Async notifications over real HTTP: the sandbox posts signed `trade_status_sync` forms to a
//! real merchant endpoint, retries on the schedule until the merchant answers `success`, marks
//! them failed after the last retry, and keeps pending ones across a restart. Every received
//! notification's platform signature is verified.

mod common;

use common::on_both;

use common::{pay_biz, Db, Harness, Receiver};
use serde_json::json;

async fn notifies_pay_refund_and_close(db: Db) {
    // Proves a paid trade, a partial refund, a full refund and the cancel of a waiting trade each
    // post one signed notification with the platform's parameters, and that calls without a
    // notify_url or refused calls notify nothing.
    let Some(h) = Harness::start_with(db, |_| {}).await else {
        return;
    };
    let merchant = Receiver::start().await;
    let notify = [("notify_url", merchant.url.as_str())];
    let buyer = h.create_user("100.00", Some("50.00")).await;
    let code = h.issue_code(&buyer).await;
    let paid = h
        .call_with("alipay.trade.pay", pay_biz("N_1", &code, "30.00"), &notify)
        .await;
    assert_eq!(paid["code"], "10000", "{paid}");
    let got = merchant.wait_for("N_1", 1).await;
    let n = &got[0];
    assert!(h.notification_signed(n), "{n:?}");
    for (k, v) in [
        ("notify_type", "trade_status_sync"),
        ("trade_status", "TRADE_SUCCESS"),
        ("app_id", common::APP_ID),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("sign_type", "RSA2"),
        ("total_amount", "30.00"),
        ("receipt_amount", "30.00"),
        ("buyer_id", buyer.as_str()),
    ] {
        assert_eq!(n.get(k).map(String::as_str), Some(v), "{k} in {n:?}");
    }
    assert_eq!(n["trade_no"], paid["trade_no"].as_str().unwrap());
    assert!(n["buyer_logon_id"].contains('*'));
    assert!(n["seller_id"].starts_with("2088"));
    for k in [
        "notify_id",
        "notify_time",
        "gmt_create",
        "gmt_payment",
        "fund_bill_list",
    ] {
        assert!(n.contains_key(k), "{k} missing in {n:?}");
    }
    assert!(!n.contains_key("refund_fee"));

    let refund = |req: &str, amount: &str| json!({ "out_trade_no": "N_1", "out_request_no": req, "refund_amount": amount });
    h.call("alipay.trade.refund", refund("R_1", "10.00")).await;
    let got = merchant.wait_for("N_1", 2).await;
    let n = &got[1];
    assert!(h.notification_signed(n));
    assert_eq!(n["trade_status"], "TRADE_SUCCESS");
    assert_eq!(n["refund_fee"], "10.00");
    assert_eq!(n["out_biz_no"], "R_1");
    assert_eq!(n["gmt_refund"].len(), "2026-01-02 03:04:05.678".len());
    // A replayed refund moves nothing and notifies nothing.
    h.call("alipay.trade.refund", refund("R_1", "10.00")).await;
    h.call("alipay.trade.refund", refund("R_2", "20.00")).await;
    let got = merchant.wait_for("N_1", 3).await;
    assert_eq!(got[2]["trade_status"], "TRADE_CLOSED");
    assert_eq!(got[2]["refund_fee"], "30.00");
    assert!(got[2].contains_key("gmt_close"));

    // A payment waiting for the buyer is not announced; its cancel is (TRADE_CLOSED).
    let code = h.issue_code(&buyer).await;
    let waiting = h
        .call_with("alipay.trade.pay", pay_biz("N_2", &code, "80.00"), &notify)
        .await;
    assert_eq!(waiting["code"], "10003");
    h.call("alipay.trade.cancel", json!({ "out_trade_no": "N_2" }))
        .await;
    let got = merchant.wait_for("N_2", 1).await;
    assert_eq!(got[0]["trade_status"], "TRADE_CLOSED");
    assert!(!got[0].contains_key("gmt_payment"));

    // No notify_url, or a refused call: nothing.
    let code = h.issue_code(&buyer).await;
    h.call("alipay.trade.pay", pay_biz("N_3", &code, "1.00"))
        .await;
    let refused = h
        .call_with(
            "alipay.trade.pay",
            pay_biz("N_4", "280000000000000000", "1.00"),
            &notify,
        )
        .await;
    assert_eq!(refused["code"], "40004");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(h.notifications("N_3").await.is_empty());
    assert!(h.notifications("N_4").await.is_empty());
    assert_eq!(merchant.received().len(), 4);
    let listed = h.notifications("N_1").await;
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .all(|n| n["status"] == "delivered" && n["attempts"] == 1));
}
on_both!(notifies_pay_refund_and_close);

async fn retries_until_acknowledged(db: Db) {
    // Proves anything but `200 success` is retried on the configured schedule with the same
    // notify_id, and that after the last retry the notification is marked failed.
    let Some(h) = Harness::start_with(db, |_| {}).await else {
        return;
    };
    let merchant = Receiver::start().await;
    let notify = [("notify_url", merchant.url.as_str())];
    let buyer = h.create_user("100.00", None).await;

    merchant.reply(&[(500, "oops"), (200, "fail"), (200, "SUCCESS")]);
    let code = h.issue_code(&buyer).await;
    h.call_with("alipay.trade.pay", pay_biz("RT_1", &code, "1.00"), &notify)
        .await;
    let listed = h
        .wait_notifications("RT_1", |l| l.len() == 1 && l[0]["status"] == "delivered")
        .await;
    assert_eq!(listed[0]["attempts"], 4);
    let got = merchant.for_order("RT_1");
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|n| n["notify_id"] == got[0]["notify_id"]));
    assert!(got.iter().all(|n| h.notification_signed(n)));

    merchant.reply(&[(503, ""), (200, "no"), (404, ""), (200, " success")]);
    let code = h.issue_code(&buyer).await;
    h.call_with("alipay.trade.pay", pay_biz("RT_2", &code, "1.00"), &notify)
        .await;
    let listed = h
        .wait_notifications("RT_2", |l| l.len() == 1 && l[0]["status"] == "failed")
        .await;
    // The first attempt and the three retries of [50, 100, 200].
    assert_eq!(listed[0]["attempts"], 4);
    assert!(listed[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("success"));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(merchant.for_order("RT_2").len(), 4);
}
on_both!(retries_until_acknowledged);

async fn pending_notifications_survive_restart(db: Db) {
    // Proves a notification the merchant has not acknowledged is still delivered after the
    // sandbox restarts (the outbox row is picked up again).
    let Some(mut h) = Harness::start_with(db, |c| c.notify_retry_ms = vec![600, 600, 600]).await
    else {
        return;
    };
    let merchant = Receiver::start().await;
    merchant.reply(&[(500, "down")]);
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    h.call_with(
        "alipay.trade.pay",
        pay_biz("RS_1", &code, "2.00"),
        &[("notify_url", merchant.url.as_str())],
    )
    .await;
    h.wait_notifications("RS_1", |l| l.len() == 1 && l[0]["attempts"] == 1)
        .await;
    h.restart().await;
    let listed = h
        .wait_notifications("RS_1", |l| l.len() == 1 && l[0]["status"] == "delivered")
        .await;
    assert_eq!(listed[0]["attempts"], 2);
    let got = merchant.for_order("RS_1");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["notify_id"], got[1]["notify_id"]);
}
on_both!(pending_notifications_survive_restart);
