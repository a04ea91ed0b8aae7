//! The open API over real HTTP against a real sandbox (SQLite and PostgreSQL): every request is
//! signed with the dev app key and every answer's signature is verified with the platform key by
//! the harness before the assertions run.

mod common;

use common::on_both;

use common::{assert_refused, pay_biz, Db, Harness};
use serde_json::json;

async fn pay_success(db: Db) {
    // Proves a bar-code payment moves the amount from the buyer's wallet and answers 10000 with
    // the platform's fields.
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    assert_eq!(code.len(), 18);
    assert!(code.starts_with("28"));
    let a = h
        .call("alipay.trade.pay", pay_biz("T_1", &code, "12.50"))
        .await;
    assert_eq!(a["code"], "10000", "{a}");
    assert_eq!(a["msg"], "Success");
    assert_eq!(a["out_trade_no"], "T_1");
    assert_eq!(a["total_amount"], "12.50");
    assert_eq!(a["receipt_amount"], "12.50");
    assert_eq!(a["buyer_user_id"], buyer.as_str());
    assert_eq!(a["trade_no"].as_str().unwrap().len(), 28);
    assert!(a["buyer_logon_id"].as_str().unwrap().contains('*'));
    assert_eq!(h.balance(&buyer).await, "87.50");
    let trade = h.trade(a["trade_no"].as_str().unwrap()).await;
    assert_eq!(trade["trade_status"], "TRADE_SUCCESS");
}
on_both!(pay_success);

async fn pay_idempotent(db: Db) {
    // Proves a repeated pay with the same out_trade_no and amount answers the same trade and
    // charges once, and a repeat with a different amount is refused without charging.
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    let first = h
        .call("alipay.trade.pay", pay_biz("T_1", &code, "20.00"))
        .await;
    let again = h
        .call("alipay.trade.pay", pay_biz("T_1", &code, "20.00"))
        .await;
    assert_eq!(first["code"], "10000");
    assert_eq!(again["code"], "10000");
    assert_eq!(first["trade_no"], again["trade_no"]);
    let other = h
        .call("alipay.trade.pay", pay_biz("T_1", &code, "21.00"))
        .await;
    assert_refused(&other, "40004", "ACQ.DISCORDANT_REPEAT_REQUEST");
    assert_eq!(h.balance(&buyer).await, "80.00");
}
on_both!(pay_idempotent);

async fn insufficient_balance(db: Db) {
    // Proves a payment larger than the balance is refused with ACQ.BUYER_BALANCE_NOT_ENOUGH,
    // moves nothing and leaves no trade behind (the merchant may retry the same out_trade_no).
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("5.00", None).await;
    let code = h.issue_code(&buyer).await;
    let a = h
        .call("alipay.trade.pay", pay_biz("T_1", &code, "12.50"))
        .await;
    assert_refused(&a, "40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH");
    assert_eq!(h.balance(&buyer).await, "5.00");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "T_1" }))
        .await;
    assert_refused(&q, "40004", "ACQ.TRADE_NOT_EXIST");
    // The code was not consumed by the refusal: a smaller payment with it succeeds.
    let ok = h
        .call("alipay.trade.pay", pay_biz("T_1", &code, "5.00"))
        .await;
    assert_eq!(ok["code"], "10000", "{ok}");
    assert_eq!(h.balance(&buyer).await, "0.00");
}
on_both!(insufficient_balance);

async fn payment_code_rules(db: Db) {
    // Proves payment codes are refused when unknown, reused or expired, each with
    // ACQ.PAYMENT_AUTH_CODE_INVALID and no money moved; and malformed amounts are refused.
    let Some(h) = Harness::start_with_ttl(db, 400).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let unknown = h
        .call(
            "alipay.trade.pay",
            pay_biz("T_1", "281234567890123456", "1.00"),
        )
        .await;
    assert_refused(&unknown, "40004", "ACQ.PAYMENT_AUTH_CODE_INVALID");

    let code = h.issue_code(&buyer).await;
    let used = h
        .call("alipay.trade.pay", pay_biz("T_2", &code, "1.00"))
        .await;
    assert_eq!(used["code"], "10000", "{used}");
    let reused = h
        .call("alipay.trade.pay", pay_biz("T_3", &code, "1.00"))
        .await;
    assert_refused(&reused, "40004", "ACQ.PAYMENT_AUTH_CODE_INVALID");

    let stale = h.issue_code(&buyer).await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let expired = h
        .call("alipay.trade.pay", pay_biz("T_4", &stale, "1.00"))
        .await;
    assert_refused(&expired, "40004", "ACQ.PAYMENT_AUTH_CODE_INVALID");

    let fresh = h.issue_code(&buyer).await;
    for bad in ["1.001", "-1.00", "0.00", "1e2"] {
        let a = h
            .call("alipay.trade.pay", pay_biz("T_5", &fresh, bad))
            .await;
        assert_refused(&a, "40004", "ACQ.INVALID_PARAMETER");
    }
    assert_eq!(h.balance(&buyer).await, "99.00");
}
on_both!(payment_code_rules);

async fn query(db: Db) {
    // Proves a trade can be queried by out_trade_no or trade_no, and an unknown one answers
    // ACQ.TRADE_NOT_EXIST.
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    let paid = h
        .call("alipay.trade.pay", pay_biz("T_1", &code, "3.20"))
        .await;
    let by_out = h
        .call("alipay.trade.query", json!({ "out_trade_no": "T_1" }))
        .await;
    let by_no = h
        .call(
            "alipay.trade.query",
            json!({ "trade_no": paid["trade_no"] }),
        )
        .await;
    for q in [&by_out, &by_no] {
        assert_eq!(q["code"], "10000", "{q}");
        assert_eq!(q["trade_status"], "TRADE_SUCCESS");
        assert_eq!(q["total_amount"], "3.20");
        assert_eq!(q["buyer_pay_amount"], "3.20");
        assert_eq!(q["trade_no"], paid["trade_no"]);
        assert!(q["send_pay_date"].is_string());
    }
    let missing = h
        .call("alipay.trade.query", json!({ "out_trade_no": "nope" }))
        .await;
    assert_refused(&missing, "40004", "ACQ.TRADE_NOT_EXIST");
}
on_both!(query);

async fn cancel_unpaid(db: Db) {
    // Proves a payment waiting for the buyer answers 10003 WAIT_BUYER_PAY, that cancel closes it
    // (action close) idempotently without moving money, and that a confirmed one is charged.
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("500.00", Some("50.00")).await;
    let code = h.issue_code(&buyer).await;
    let a = h
        .call("alipay.trade.pay", pay_biz("TRUCK_1", &code, "80.00"))
        .await;
    assert_eq!(a["code"], "10003", "{a}");
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "TRUCK_1" }))
        .await;
    assert_eq!(q["trade_status"], "WAIT_BUYER_PAY");
    for _ in 0..2 {
        let c = h
            .call("alipay.trade.cancel", json!({ "out_trade_no": "TRUCK_1" }))
            .await;
        assert_eq!(c["code"], "10000", "{c}");
        assert_eq!(c["action"], "close");
        assert_eq!(c["retry_flag"], "N");
    }
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "TRUCK_1" }))
        .await;
    assert_eq!(q["trade_status"], "TRADE_CLOSED");
    assert_eq!(h.balance(&buyer).await, "500.00");

    // The buyer confirms a second one on their phone: now it is paid.
    let code = h.issue_code(&buyer).await;
    let b = h
        .call("alipay.trade.pay", pay_biz("TRUCK_2", &code, "80.00"))
        .await;
    assert_eq!(b["code"], "10003");
    let (status, t) = h
        .admin_post(
            &format!(
                "/sandbox/trades/{}/confirm",
                b["trade_no"].as_str().unwrap()
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["trade_status"], "TRADE_SUCCESS");
    assert_eq!(h.balance(&buyer).await, "420.00");
}
on_both!(cancel_unpaid);

async fn cancel_paid(db: Db) {
    // Proves cancelling a paid trade reverses it (action refund), returns the money once and
    // answers the same on repeat.
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    h.call("alipay.trade.pay", pay_biz("T_1", &code, "40.00"))
        .await;
    assert_eq!(h.balance(&buyer).await, "60.00");
    for _ in 0..2 {
        let c = h
            .call("alipay.trade.cancel", json!({ "out_trade_no": "T_1" }))
            .await;
        assert_eq!(c["code"], "10000", "{c}");
        assert_eq!(c["action"], "refund");
        assert_eq!(h.balance(&buyer).await, "100.00");
    }
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "T_1" }))
        .await;
    assert_eq!(q["trade_status"], "TRADE_CLOSED");
    let missing = h
        .call("alipay.trade.cancel", json!({ "out_trade_no": "nope" }))
        .await;
    assert_refused(&missing, "40004", "ACQ.TRADE_NOT_EXIST");
}
on_both!(cancel_paid);

async fn refunds(db: Db) {
    // Proves partial refunds add up, are idempotent per out_request_no (fund_change N on
    // repeat), refuse a changed repeat and an over-refund, and close the trade when complete.
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    h.call("alipay.trade.pay", pay_biz("T_1", &code, "30.00"))
        .await;
    let refund = |req: &str, amount: &str| json!({ "out_trade_no": "T_1", "out_request_no": req, "refund_amount": amount });
    let r1 = h.call("alipay.trade.refund", refund("R_1", "10.00")).await;
    assert_eq!(r1["code"], "10000", "{r1}");
    assert_eq!(r1["fund_change"], "Y");
    assert_eq!(r1["refund_fee"], "10.00");
    let again = h.call("alipay.trade.refund", refund("R_1", "10.00")).await;
    assert_eq!(again["fund_change"], "N");
    assert_eq!(again["refund_fee"], "10.00");
    assert_eq!(h.balance(&buyer).await, "80.00");
    let changed = h.call("alipay.trade.refund", refund("R_1", "5.00")).await;
    assert_refused(&changed, "40004", "ACQ.DISCORDANT_REPEAT_REQUEST");
    let over = h.call("alipay.trade.refund", refund("R_2", "20.01")).await;
    assert_refused(&over, "40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR");
    assert_eq!(h.balance(&buyer).await, "80.00");
    let r2 = h.call("alipay.trade.refund", refund("R_2", "20.00")).await;
    assert_eq!(r2["fund_change"], "Y", "{r2}");
    assert_eq!(r2["refund_fee"], "30.00");
    assert_eq!(h.balance(&buyer).await, "100.00");
    let t = h.trade(r2["trade_no"].as_str().unwrap()).await;
    assert_eq!(t["trade_status"], "TRADE_CLOSED");
    assert_eq!(t["refunded_amount"], "30.00");
    assert_eq!(t["refunds"].as_array().unwrap().len(), 2);
    let after = h.call("alipay.trade.refund", refund("R_3", "0.01")).await;
    assert_refused(&after, "40004", "ACQ.TRADE_HAS_CLOSE");
}
on_both!(refunds);

async fn bad_signature_refused(db: Db) {
    // Proves a request whose signature does not match (tampered amount, wrong key, missing sign,
    // unknown app, unknown method) is refused the platform's way and changes nothing.
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    let method = "alipay.trade.pay";
    let key = "alipay_trade_pay_response";

    // Signed for 1.00, sent as 99.00.
    let signed = h.sign(h.params(method, &pay_biz("T_1", &code, "1.00")));
    let tampered: Vec<_> = signed
        .iter()
        .map(|(k, v)| {
            let v = if k == "biz_content" {
                v.replace("1.00", "99.00")
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    let a = h.post_gateway(&tampered, key).await;
    assert_refused(&a, "40002", "isv.invalid-signature");
    assert_eq!(a["msg"], "Invalid Arguments");

    // Signed with the platform's key instead of the app's.
    let mut forged = h.params(method, &pay_biz("T_1", &code, "1.00"));
    let content = provider_sandbox::sign::canonical_request(
        forged.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let wrong = provider_sandbox::sign::Signer::from_file(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dev-keys/platform-private.pem"),
    )
    .unwrap();
    forged.push(("sign".into(), wrong.sign(&content)));
    let a = h.post_gateway(&forged, key).await;
    assert_refused(&a, "40002", "isv.invalid-signature");

    let unsigned = h.params(method, &pay_biz("T_1", &code, "1.00"));
    let a = h.post_gateway(&unsigned, key).await;
    assert_refused(&a, "40001", "isv.missing-signature");

    let mut stranger = h.params(method, &pay_biz("T_1", &code, "1.00"));
    stranger[0].1 = "2021999999999999".into();
    let a = h.post_gateway(&h.sign(stranger), key).await;
    assert_refused(&a, "40002", "isv.invalid-app-id");

    let a = h
        .post_gateway(
            &h.sign(h.params("alipay.trade.nothing", &json!({}))),
            "error_response",
        )
        .await;
    assert_refused(&a, "40002", "isv.invalid-method");

    // Nothing changed: no trade, full balance, and the code still pays.
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "T_1" }))
        .await;
    assert_refused(&q, "40004", "ACQ.TRADE_NOT_EXIST");
    assert_eq!(h.balance(&buyer).await, "100.00");
    let ok = h.call(method, pay_biz("T_1", &code, "1.00")).await;
    assert_eq!(ok["code"], "10000", "{ok}");
}
on_both!(bad_signature_refused);

async fn survives_restart(db: Db) {
    // Proves apps, wallets, trades and refunds persist across a server restart, and idempotency
    // holds across it.
    let Some(mut h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    let paid = h
        .call("alipay.trade.pay", pay_biz("T_1", &code, "25.00"))
        .await;
    let r = json!({ "out_trade_no": "T_1", "out_request_no": "R_1", "refund_amount": "5.00" });
    h.call("alipay.trade.refund", r.clone()).await;
    h.restart().await;
    let q = h
        .call("alipay.trade.query", json!({ "out_trade_no": "T_1" }))
        .await;
    assert_eq!(q["trade_status"], "TRADE_SUCCESS", "{q}");
    assert_eq!(q["trade_no"], paid["trade_no"]);
    let again = h
        .call("alipay.trade.pay", pay_biz("T_1", &code, "25.00"))
        .await;
    assert_eq!(again["trade_no"], paid["trade_no"]);
    let replay = h.call("alipay.trade.refund", r).await;
    assert_eq!(replay["fund_change"], "N");
    assert_eq!(h.balance(&buyer).await, "80.00");
}
on_both!(survives_restart);

async fn concurrent_duplicates(db: Db) {
    // Proves concurrent identical pays and refunds (a client retrying while the first call is
    // still in flight) charge and refund exactly once and all get the same successful answer.
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    let pay = || h.call("alipay.trade.pay", pay_biz("T_1", &code, "10.00"));
    let (a, b, c, d) = tokio::join!(pay(), pay(), pay(), pay());
    for x in [&a, &b, &c, &d] {
        assert_eq!(x["code"], "10000", "{x}");
        assert_eq!(x["trade_no"], a["trade_no"]);
    }
    assert_eq!(h.balance(&buyer).await, "90.00");
    let refund = || {
        h.call(
            "alipay.trade.refund",
            json!({ "out_trade_no": "T_1", "out_request_no": "R_1", "refund_amount": "4.00" }),
        )
    };
    let (a, b, c, d) = tokio::join!(refund(), refund(), refund(), refund());
    let mut fund_changes = 0;
    for x in [&a, &b, &c, &d] {
        assert_eq!(x["code"], "10000", "{x}");
        assert_eq!(x["refund_fee"], "4.00");
        fund_changes += (x["fund_change"] == "Y") as usize;
    }
    assert_eq!(fund_changes, 1);
    assert_eq!(h.balance(&buyer).await, "94.00");
}
on_both!(concurrent_duplicates);
