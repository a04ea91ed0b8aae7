//! `alipay.trade.precreate` with the buyer's wallet paying the QR code, expiry of unpaid codes,
//! withholding agreements (`alipay.user.agreement.query`) and deduction (`alipay.trade.pay` with
//! `GENERAL_WITHHOLDING`), over real HTTP with every answer's signature verified.

mod common;

use common::on_both;

use common::{assert_refused, Db, Harness, Receiver};
use serde_json::{json, Value};

fn precreate_biz(out_trade_no: &str, amount: &str) -> Value {
    json!({
        "out_trade_no": out_trade_no,
        "total_amount": amount,
        "subject": "Parking P3",
        "store_id": "NJ_S_001",
        "terminal_id": "NJ_T_001",
    })
}

async fn precreate_and_scan(db: Db) {
    // Proves precreate answers an unguessable qr_code idempotently, refuses a changed repeat with
    // ACQ.CONTEXT_INCONSISTENT, is TRADE_NOT_EXIST to query until scanned, that a buyer without
    // the money is refused with nothing changed, and that paying it debits once, charges the
    // 0.6% fee and notifies TRADE_SUCCESS.
    let Some(h) = Harness::start_with(db, |_| {}).await else {
        return;
    };
    let merchant = Receiver::start().await;
    let notify = [("notify_url", merchant.url.as_str())];
    let a = h
        .call_with(
            "alipay.trade.precreate",
            precreate_biz("Q_1", "12.50"),
            &notify,
        )
        .await;
    assert_eq!(a["code"], "10000", "{a}");
    assert_eq!(a["out_trade_no"], "Q_1");
    let qr = a["qr_code"].as_str().unwrap().to_string();
    let token = qr
        .strip_prefix("https://qr.sandbox.turnpike.invalid/")
        .unwrap();
    assert_eq!(token.len(), 24);
    let again = h
        .call_with(
            "alipay.trade.precreate",
            precreate_biz("Q_1", "12.50"),
            &notify,
        )
        .await;
    assert_eq!(again["qr_code"], qr.as_str());
    let other = h
        .call("alipay.trade.precreate", precreate_biz("Q_1", "13.00"))
        .await;
    assert_refused(&other, "40004", "ACQ.CONTEXT_INCONSISTENT");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "Q_1" }))
        .await;
    assert_refused(&q, "40004", "ACQ.TRADE_NOT_EXIST");

    let buyer = h.create_user("10.00", None).await;
    let (status, err) = h
        .admin_post(
            "/sandbox/qr/pay",
            json!({ "qr_code": qr, "user_id": buyer }),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "ACQ.BUYER_BALANCE_NOT_ENOUGH");
    assert_eq!(h.balance(&buyer).await, "10.00");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "Q_1" }))
        .await;
    assert_refused(&q, "40004", "ACQ.TRADE_NOT_EXIST");

    h.top_up(&buyer, 500).await;
    let (status, t) = h
        .admin_post(
            "/sandbox/qr/pay",
            json!({ "qr_code": qr, "user_id": buyer }),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["trade_status"], "TRADE_SUCCESS");
    assert_eq!(t["product_code"], "QR_CODE_OFFLINE");
    assert_eq!(t["fee"], "0.08"); // 12.50 × 0.6% = 7.5 fen, half-up
    assert_eq!(h.balance(&buyer).await, "2.50");
    // The wallet's retry of the same payment changes nothing.
    let (status, _) = h
        .admin_post(
            "/sandbox/qr/pay",
            json!({ "qr_code": qr, "user_id": buyer }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(h.balance(&buyer).await, "2.50");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "Q_1" }))
        .await;
    assert_eq!(q["trade_status"], "TRADE_SUCCESS", "{q}");
    assert_eq!(q["buyer_user_id"], buyer.as_str());
    assert_eq!(q["store_id"], "NJ_S_001");
    assert_eq!(q["terminal_id"], "NJ_T_001");
    let got = merchant.wait_for("Q_1", 1).await;
    assert!(h.notification_signed(&got[0]));
    assert_eq!(got[0]["trade_status"], "TRADE_SUCCESS");
    let paid_again = h
        .call("alipay.trade.precreate", precreate_biz("Q_1", "12.50"))
        .await;
    assert_refused(&paid_again, "40004", "ACQ.TRADE_HAS_SUCCESS");

    // A buyer above their confirmation threshold scans; the trade exists and waits.
    let careful = h.create_user("100.00", Some("5.00")).await;
    let b = h
        .call("alipay.trade.precreate", precreate_biz("Q_2", "20.00"))
        .await;
    let (status, t) = h
        .admin_post(
            "/sandbox/qr/pay",
            json!({ "qr_code": b["qr_code"], "user_id": careful }),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["trade_status"], "WAIT_BUYER_PAY");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "Q_2" }))
        .await;
    assert_eq!(q["trade_status"], "WAIT_BUYER_PAY", "{q}");
    let (status, t) = h
        .admin_post(
            &format!(
                "/sandbox/trades/{}/confirm",
                q["trade_no"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["trade_status"], "TRADE_SUCCESS");
    assert_eq!(h.balance(&careful).await, "80.00");
}
on_both!(precreate_and_scan);

async fn precreate_cancel_and_expiry(db: Db) {
    // Proves cancel closes an unscanned code (action close) so it can no longer be paid, and that
    // an unpaid code closes by itself at its expiry with a TRADE_CLOSED notification.
    let Some(h) = Harness::start_with(db, |c| c.trade_timeout_default_ms = 400).await else {
        return;
    };
    let merchant = Receiver::start().await;
    let buyer = h.create_user("100.00", None).await;
    let a = h
        .call("alipay.trade.precreate", precreate_biz("QC_1", "3.00"))
        .await;
    let c = h
        .call("alipay.trade.cancel", json!({ "out_trade_no": "QC_1" }))
        .await;
    assert_eq!(c["code"], "10000", "{c}");
    assert_eq!(c["action"], "close");
    let (status, err) = h
        .admin_post(
            "/sandbox/qr/pay",
            json!({ "qr_code": a["qr_code"], "user_id": buyer }),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "ACQ.TRADE_HAS_CLOSE");

    let b = h
        .call_with(
            "alipay.trade.precreate",
            precreate_biz("QC_2", "3.00"),
            &[("notify_url", merchant.url.as_str())],
        )
        .await;
    let got = merchant.wait_for("QC_2", 1).await;
    assert!(h.notification_signed(&got[0]));
    assert_eq!(got[0]["trade_status"], "TRADE_CLOSED");
    assert!(got[0].contains_key("gmt_close"));
    let (status, _) = h
        .admin_post(
            "/sandbox/qr/pay",
            json!({ "qr_code": b["qr_code"], "user_id": buyer }),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(h.balance(&buyer).await, "100.00");
    let again = h
        .call("alipay.trade.precreate", precreate_biz("QC_2", "3.00"))
        .await;
    assert_refused(&again, "40004", "ACQ.TRADE_HAS_CLOSE");
    let (status, _) = h
        .admin_post(
            "/sandbox/qr/pay",
            json!({ "qr_code": "https://qr.sandbox.turnpike.invalid/guess", "user_id": buyer }),
        )
        .await;
    assert_eq!(status, 404);
}
on_both!(precreate_cancel_and_expiry);

async fn sign(h: &Harness, user: &str, limit_fen: i64) -> String {
    let (status, a) = h
        .admin_post(
            &format!("/sandbox/users/{user}/agreements"),
            json!({ "app_id": common::APP_ID, "single_limit_fen": limit_fen }),
        )
        .await;
    assert_eq!(status, 201, "{a}");
    assert_eq!(a["status"], "NORMAL");
    a["agreement_no"].as_str().unwrap().to_string()
}

fn deduct_biz(out_trade_no: &str, agreement_no: &str, amount: &str) -> Value {
    json!({
        "out_trade_no": out_trade_no,
        "product_code": "GENERAL_WITHHOLDING",
        "agreement_params": { "agreement_no": agreement_no },
        "total_amount": amount,
        "subject": "Toll G4 monthly",
    })
}

async fn agreements(db: Db) {
    // Proves an agreement answers the platform's fields while NORMAL or STOP and
    // USER_AGREEMENT_NOT_EXIST once unsigned or when unknown.
    let Some(h) = Harness::start_with(db, |_| {}).await else {
        return;
    };
    let user = h.create_user("10.00", None).await;
    let no = sign(&h, &user, 5_000).await;
    assert_eq!(no.len(), 20);
    let q = h
        .call("alipay.user.agreement.query", json!({ "agreement_no": no }))
        .await;
    assert_eq!(q["code"], "10000", "{q}");
    assert_eq!(q["status"], "NORMAL");
    assert_eq!(q["principal_id"], user.as_str());
    assert_eq!(q["personal_product_code"], "GENERAL_WITHHOLDING_P");
    assert!(q["alipay_logon_id"].as_str().unwrap().contains('*'));
    assert_eq!(q["sign_time"].as_str().unwrap().len(), 19);
    let (status, _) = h
        .admin_post(&format!("/sandbox/agreements/{no}/stop"), json!({}))
        .await;
    assert_eq!(status, 200);
    let q = h
        .call("alipay.user.agreement.query", json!({ "agreement_no": no }))
        .await;
    assert_eq!(q["status"], "STOP");
    let (status, a) = h
        .admin_post(&format!("/sandbox/agreements/{no}/unsign"), json!({}))
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["status"], "UNSIGN");
    for agreement_no in [no.as_str(), "20260000000000000000"] {
        let q = h
            .call(
                "alipay.user.agreement.query",
                json!({ "agreement_no": agreement_no }),
            )
            .await;
        assert_refused(&q, "40004", "USER_AGREEMENT_NOT_EXIST");
    }
}
on_both!(agreements);

async fn deduction(db: Db) {
    // Proves deduction pays without a code, idempotently; that an amount over the single limit,
    // a stopped or an unknown agreement is refused with nothing recorded; and that a deduction
    // the balance cannot cover is recorded as WAIT_BUYER_PAY, moves nothing, and succeeds when
    // retried with the same out_trade_no after a top-up.
    let Some(h) = Harness::start_with(db, |_| {}).await else {
        return;
    };
    let merchant = Receiver::start().await;
    let notify = [("notify_url", merchant.url.as_str())];
    let user = h.create_user("60.00", None).await;
    let no = sign(&h, &user, 5_000).await;
    let a = h
        .call_with("alipay.trade.pay", deduct_biz("D_1", &no, "40.00"), &notify)
        .await;
    assert_eq!(a["code"], "10000", "{a}");
    assert_eq!(a["buyer_user_id"], user.as_str());
    let again = h
        .call_with("alipay.trade.pay", deduct_biz("D_1", &no, "40.00"), &notify)
        .await;
    assert_eq!(again["trade_no"], a["trade_no"]);
    assert_eq!(h.balance(&user).await, "20.00");
    let t = h.trade(a["trade_no"].as_str().unwrap()).await;
    assert_eq!(t["product_code"], "GENERAL_WITHHOLDING");
    assert_eq!(t["agreement_no"], no.as_str());
    assert_eq!(t["fee"], "0.24");
    let got = merchant.wait_for("D_1", 1).await;
    assert!(h.notification_signed(&got[0]));
    assert_eq!(got[0]["trade_status"], "TRADE_SUCCESS");

    let over = h
        .call("alipay.trade.pay", deduct_biz("D_2", &no, "50.01"))
        .await;
    assert_refused(&over, "40004", "ACQ.CYCLE_PAY_SINGLE_FEE_EXCEED");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "D_2" }))
        .await;
    assert_refused(&q, "40004", "ACQ.TRADE_NOT_EXIST");

    let short = h
        .call_with("alipay.trade.pay", deduct_biz("D_3", &no, "30.00"), &notify)
        .await;
    assert_refused(&short, "40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH");
    assert_eq!(h.balance(&user).await, "20.00");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "D_3" }))
        .await;
    assert_eq!(q["trade_status"], "WAIT_BUYER_PAY", "{q}");
    let short_again = h
        .call("alipay.trade.pay", deduct_biz("D_3", &no, "30.00"))
        .await;
    assert_refused(&short_again, "40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH");
    let changed = h
        .call("alipay.trade.pay", deduct_biz("D_3", &no, "31.00"))
        .await;
    assert_refused(&changed, "40004", "ACQ.DISCORDANT_REPEAT_REQUEST");
    h.top_up(&user, 1_000).await;
    let retried = h
        .call("alipay.trade.pay", deduct_biz("D_3", &no, "30.00"))
        .await;
    assert_eq!(retried["code"], "10000", "{retried}");
    assert_eq!(retried["trade_no"], q["trade_no"]);
    assert_eq!(h.balance(&user).await, "0.00");
    let got = merchant.wait_for("D_3", 1).await;
    assert_eq!(got[0]["trade_status"], "TRADE_SUCCESS");

    h.top_up(&user, 10_000).await;
    let (status, _) = h
        .admin_post(&format!("/sandbox/agreements/{no}/stop"), json!({}))
        .await;
    assert_eq!(status, 200);
    let stopped = h
        .call("alipay.trade.pay", deduct_biz("D_4", &no, "1.00"))
        .await;
    assert_refused(&stopped, "40004", "ACQ.AGREEMENT_STATUS_NOT_NORMAL");
    h.admin_post(&format!("/sandbox/agreements/{no}/unsign"), json!({}))
        .await;
    for agreement_no in [no.as_str(), "20269999999999999999"] {
        let gone = h
            .call("alipay.trade.pay", deduct_biz("D_5", agreement_no, "1.00"))
            .await;
        assert_refused(&gone, "40004", "ACQ.AGREEMENT_NOT_EXIST");
    }
    assert_eq!(h.balance(&user).await, "100.00");
    let missing = h
        .call(
            "alipay.trade.pay",
            json!({ "out_trade_no": "D_6", "product_code": "GENERAL_WITHHOLDING",
                    "total_amount": "1.00", "subject": "x" }),
        )
        .await;
    assert_refused(&missing, "40004", "ACQ.INVALID_PARAMETER");
}
on_both!(deduction);
