//! Withholding agreements signed the platform's way (`alipay.user.agreement.page.sign`), and
//! the open API's fidelity to the platform's rules that merchants rely on: GET and POST on
//! `/gateway.do`, and the character rules of merchant numbers.

mod common;

use common::on_both;

use std::collections::BTreeMap;

use common::{assert_refused, pay_biz, Db, Harness, Receiver};
use serde_json::json;

/// Proves a buyer signs a merchant's page-sign link in the wallet: the request is verified like
/// any call (a tampered or unsigned link is refused), the agreement carries the merchant's
/// number, the merchant gets a signed `dut_user_sign` notification for it, the query finds it
/// by that number, a second buyer cannot sign the same number, and the merchant's unsign ends
/// it with a `dut_user_unsign` notification.
async fn page_sign_flow(db: Db) {
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let merchant = Receiver::start().await;
    let (buyer, other) = (
        h.create_user("10.00", None).await,
        h.create_user("10.00", None).await,
    );
    let url = h.page_sign_url("TPW0001", Some(&merchant.url));

    // The wallet opens the link in a browser: a page describing the agreement.
    let (status, page) = h.get_bytes(&url).await;
    let page = String::from_utf8(page).unwrap();
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("TPW0001") && page.contains("withholding"),
        "{page}"
    );

    // A tampered link (another merchant number under the same signature) is refused.
    let tampered = url.replace("TPW0001", "TPW0002");
    let (status, refused) = h
        .admin_post(
            &format!("/sandbox/users/{buyer}/agreement-signings"),
            json!({ "sign_url": tampered }),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "isv.invalid-signature");

    let (status, signed) = h
        .admin_post(
            &format!("/sandbox/users/{buyer}/agreement-signings"),
            json!({ "sign_url": url, "single_limit_fen": 500 }),
        )
        .await;
    assert_eq!(status, 201, "{signed}");
    assert_eq!(signed["external_agreement_no"], "TPW0001");
    let agreement_no = signed["agreement_no"].as_str().unwrap().to_string();

    let got = merchant.received();
    let notice = wait_for_type(&merchant, "dut_user_sign").await;
    assert!(h.notification_signed(&notice), "{notice:?} of {got:?}");
    for (k, v) in [
        ("agreement_no", agreement_no.as_str()),
        ("external_agreement_no", "TPW0001"),
        ("status", "NORMAL"),
        ("alipay_user_id", buyer.as_str()),
        ("personal_product_code", "GENERAL_WITHHOLDING_P"),
    ] {
        assert_eq!(
            notice.get(k).map(String::as_str),
            Some(v),
            "{k}: {notice:?}"
        );
    }

    let by_number = h
        .call(
            "alipay.user.agreement.query",
            json!({ "external_agreement_no": "TPW0001",
                    "personal_product_code": "GENERAL_WITHHOLDING_P",
                    "sign_scene": "INDUSTRY|DEFAULT_SCENE" }),
        )
        .await;
    assert_eq!(by_number["code"], "10000", "{by_number}");
    assert_eq!(by_number["agreement_no"], agreement_no.as_str());
    assert_eq!(by_number["principal_id"], buyer.as_str());

    let (status, taken) = h
        .admin_post(
            &format!("/sandbox/users/{other}/agreement-signings"),
            json!({ "sign_url": url }),
        )
        .await;
    assert_eq!(status, 409, "{taken}");
    assert_eq!(taken["error"]["code"], "USER_AGREEMENT_ALREADY_EXIST");

    let unsigned = h
        .call(
            "alipay.user.agreement.unsign",
            json!({ "agreement_no": agreement_no }),
        )
        .await;
    assert_eq!(unsigned["code"], "10000", "{unsigned}");
    let ended = wait_for_type(&merchant, "dut_user_unsign").await;
    assert_eq!(ended.get("status").map(String::as_str), Some("UNSIGN"));
    assert!(h.notification_signed(&ended));
    let gone = h
        .call(
            "alipay.user.agreement.query",
            json!({ "agreement_no": agreement_no }),
        )
        .await;
    assert_refused(&gone, "40004", "USER_AGREEMENT_NOT_EXIST");
    // An ended agreement frees its number: the merchant may start over with it.
    let (status, again) = h
        .admin_post(
            &format!("/sandbox/users/{other}/agreement-signings"),
            json!({ "sign_url": h.page_sign_url("TPW0001", None) }),
        )
        .await;
    assert_eq!(status, 201, "{again}");
}
on_both!(page_sign_flow);

async fn wait_for_type(merchant: &Receiver, notify_type: &str) -> BTreeMap<String, String> {
    for _ in 0..500 {
        if let Some(n) = merchant
            .received()
            .into_iter()
            .find(|n| n.get("notify_type").map(String::as_str) == Some(notify_type))
        {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("no {notify_type} notification: {:?}", merchant.received());
}

/// Proves every call works by GET (all parameters in the query string) as well as by POST,
/// with the same signed answer, as on the platform.
async fn get_and_post(db: Db) {
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    let method = "alipay.trade.pay";
    let paid = h
        .get_gateway(
            &h.sign(h.params(method, &pay_biz("G_1", &code, "1.00"))),
            "alipay_trade_pay_response",
        )
        .await;
    assert_eq!(paid["code"], "10000", "{paid}");
    let query = json!({ "out_trade_no": "G_1" });
    let by_get = h
        .get_gateway(
            &h.sign(h.params("alipay.trade.query", &query)),
            "alipay_trade_query_response",
        )
        .await;
    let by_post = h.call("alipay.trade.query", query).await;
    assert_eq!(by_get["trade_status"], "TRADE_SUCCESS");
    assert_eq!(by_get, by_post);
}
on_both!(get_and_post);

/// Proves merchant numbers outside the platform's rule (letters, digits, `_`; at most 64) are
/// refused with `ACQ.INVALID_PARAMETER` and create nothing: NUL, a direction override, SQL text,
/// a dash, a space.
async fn merchant_number_characters(db: Db) {
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let buyer = h.create_user("100.00", None).await;
    for bad in [
        "T\u{0}1",
        "T\u{202E}1",
        "T1';DROP TABLE trades;--",
        "T-1",
        "T 1",
        &"T".repeat(65),
    ] {
        let code = h.issue_code(&buyer).await;
        let a = h
            .call("alipay.trade.pay", pay_biz(bad, &code, "1.00"))
            .await;
        assert_refused(&a, "40004", "ACQ.INVALID_PARAMETER");
        let q = h
            .call("alipay.trade.query", json!({ "out_trade_no": bad }))
            .await;
        assert_refused(&q, "40004", "ACQ.INVALID_PARAMETER");
    }
    assert_eq!(h.balance(&buyer).await, "100.00");
    let (status, trades) = h.admin_get("/sandbox/notifications?out_trade_no=T-1").await;
    assert_eq!(status, 200);
    assert_eq!(trades, json!([]));
}
on_both!(merchant_number_characters);

/// Proves `alipay.user.validate` answers an account's user id and real-name state by its logon
/// id (a top-level parameter, no biz_content), follows the wallet's certification, and refuses
/// an unknown or missing account.
async fn user_validate(db: Db) {
    let Some(h) = Harness::start(db).await else {
        return;
    };
    let (status, user) = h
        .admin_post(
            "/sandbox/users",
            json!({ "logon_id": "13800000001", "real_name": false }),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let user_id = user["user_id"].as_str().unwrap().to_string();
    let validate = |logon_id: &'static str| {
        let h = &h;
        async move {
            h.call_with("alipay.user.validate", json!({}), &[("logon_id", logon_id)])
                .await
        }
    };

    let answer = validate("13800000001").await;
    assert_eq!(answer["code"], "10000", "{answer}");
    assert_eq!(answer["alipay_user_id"], user_id.as_str());
    assert_eq!(answer["certified"], "false");

    let (status, certified) = h
        .admin_post(
            &format!("/sandbox/users/{user_id}/real-name"),
            json!({ "real_name": true }),
        )
        .await;
    assert_eq!(status, 200, "{certified}");
    assert_eq!(certified["real_name"], true);
    let answer = validate("13800000001").await;
    assert_eq!(answer["certified"], "true", "{answer}");

    let unknown = validate("13800000002").await;
    assert_refused(&unknown, "40004", "isv.user-not-exist");
    let missing = h.call_with("alipay.user.validate", json!({}), &[]).await;
    assert_refused(&missing, "40004", "ACQ.INVALID_PARAMETER");
    let (status, _) = h
        .admin_post(
            "/sandbox/users/2088000000000000/real-name",
            json!({ "real_name": true }),
        )
        .await;
    assert_eq!(status, 404);
}

on_both!(user_validate);
