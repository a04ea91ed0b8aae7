//! The daily trade bill over real HTTP: `alipay.data.dataservice.bill.downloadurl.query` answers
//! a URL, the URL serves the platform's 业务明细 layout in GBK (default) and UTF-8, and its rows
//! and totals are exactly the committed money movements the test made.

mod common;

use common::on_both;

use common::{assert_refused, pay_biz, Db, Harness};
use serde_json::{json, Value};

/// A bill's data rows (cells trimmed of the platform's tab padding) and its comment lines.
fn parse(text: &str) -> (Vec<Vec<String>>, Vec<String>) {
    let mut rows = Vec::new();
    let mut comments = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            comments.push(line.to_string());
        } else {
            rows.push(line.split(',').map(|c| c.trim().to_string()).collect());
        }
    }
    (rows, comments)
}

async fn bill_url(h: &Harness, date: &str) -> Value {
    h.call(
        "alipay.data.dataservice.bill.downloadurl.query",
        json!({ "bill_type": "trade", "bill_date": date }),
    )
    .await
}

async fn daily_bill(db: Db) {
    // Proves the bill lists one 交易 row per paid trade (bar code, QR, and a pay whose answer was
    // dropped after commit) and one 退款 row per refund or cancel reversal, with the service fee
    // negative on trades and given back on refunds, footer totals to match, nothing for refused
    // or unpaid trades; GBK and UTF-8 carry the same text.
    let Some(h) = Harness::start_with(db, |_| {}).await else {
        return;
    };
    let buyer = h.create_user("200.00", Some("170.00")).await;
    let pay = |out: &'static str, amount: &'static str| {
        let h = &h;
        let buyer = buyer.clone();
        async move {
            let code = h.issue_code(&buyer).await;
            let a = h
                .call(
                    "alipay.trade.pay",
                    json!({ "out_trade_no": out, "scene": "bar_code", "auth_code": code,
                            "total_amount": amount, "subject": "Toll, G4", "store_id": "S1",
                            "terminal_id": "T1", "operator_id": "op7" }),
                )
                .await;
            a
        }
    };
    let a = pay("B_A", "12.50").await;
    assert_eq!(a["code"], "10000", "{a}");
    pay("B_B", "30.00").await;
    h.call(
        "alipay.trade.refund",
        json!({ "out_trade_no": "B_B", "out_request_no": "R_1", "refund_amount": "10.00" }),
    )
    .await;
    let qr = h
        .call(
            "alipay.trade.precreate",
            json!({ "out_trade_no": "B_C", "total_amount": "5.00", "subject": "Parking" }),
        )
        .await;
    let (status, _) = h
        .admin_post(
            "/sandbox/qr/pay",
            json!({ "qr_code": qr["qr_code"], "user_id": buyer }),
        )
        .await;
    assert_eq!(status, 200);
    pay("B_D", "40.00").await;
    let c = h
        .call("alipay.trade.cancel", json!({ "out_trade_no": "B_D" }))
        .await;
    assert_eq!(c["action"], "refund");
    let refused = pay("B_E", "180.00").await; // above confirm_over: waits, never paid
    assert_eq!(refused["code"], "10003");
    let code = h.issue_code(&buyer).await;
    let short = h
        .call("alipay.trade.pay", pay_biz("B_F", &code, "165.00"))
        .await;
    assert_refused(&short, "40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH");
    h.set_faults(json!({ "script": [
        { "method": "alipay.trade.pay", "fault": "drop_after_commit" }
    ]}))
    .await;
    let code = h.issue_code(&buyer).await;
    assert!(h
        .raw_call("alipay.trade.pay", pay_biz("B_G", &code, "1.00"))
        .await
        .is_err());

    let today = provider_sandbox::time::shanghai(provider_sandbox::time::now_ms(), "%Y-%m-%d");
    let answer = bill_url(&h, &today).await;
    assert_eq!(answer["code"], "10000", "{answer}");
    let url = answer["bill_download_url"].as_str().unwrap().to_string();
    assert!(url.ends_with(&format!(
        "/sandbox/bills/{}/{today}.csv?charset=GBK",
        common::APP_ID
    )));
    let (status, gbk) = h.get_bytes(&url).await;
    assert_eq!(status, 200);
    assert!(
        std::str::from_utf8(&gbk).is_err(),
        "GBK bytes are not UTF-8"
    );
    let (text, _, malformed) = encoding_rs::GBK.decode(&gbk);
    assert!(!malformed);
    let (status, utf8) = h.get_bytes(&url.replace("GBK", "UTF-8")).await;
    assert_eq!(status, 200);
    let utf8 = String::from_utf8(utf8).unwrap();
    let without_export_time = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("#导出时间"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_export_time(&text), without_export_time(&utf8));

    let (rows, comments) = parse(&text);
    assert_eq!(comments[0], "#支付宝业务明细查询");
    assert!(comments[1].starts_with("#账号：[2088") && comments[1].ends_with("0156]"));
    let day = today.replacen('-', "年", 1).replacen('-', "月", 1) + "日";
    assert!(comments[2].starts_with(&format!("#起始日期：[{day} 00:00:00]   终止日期：[")));
    assert_eq!(rows[0][0], "支付宝交易号");
    assert_eq!(rows[0].len(), 25);
    assert_eq!(rows[0][22], "服务费（元）");
    let data = &rows[1..];
    assert!(data.iter().all(|r| r.len() == 25));
    let find = |out: &str, kind: &str| {
        data.iter()
            .filter(|r| r[1] == out && r[2] == kind)
            .cloned()
            .collect::<Vec<_>>()
    };
    let trades: Vec<_> = data.iter().filter(|r| r[2] == "交易").collect();
    let refunds: Vec<_> = data.iter().filter(|r| r[2] == "退款").collect();
    assert_eq!(trades.len(), 5, "{data:?}");
    assert_eq!(refunds.len(), 2, "{data:?}");
    // (out_trade_no, amount, fee): 0.6% half-up.
    for (out, amount, fee) in [
        ("B_A", "12.50", "-0.08"),
        ("B_B", "30.00", "-0.18"),
        ("B_C", "5.00", "-0.03"),
        ("B_D", "40.00", "-0.24"),
        ("B_G", "1.00", "-0.01"),
    ] {
        let r = &find(out, "交易")[0];
        assert_eq!(
            (r[11].as_str(), r[12].as_str(), r[22].as_str()),
            (amount, amount, fee),
            "{r:?}"
        );
        assert_eq!(r[21], "");
    }
    let a = &find("B_A", "交易")[0];
    assert_eq!(a[0], a[0].trim());
    assert_eq!(
        (a[6].as_str(), a[8].as_str(), a[9].as_str()),
        ("S1", "op7", "T1")
    );
    assert_eq!(a[3], "Toll  G4", "commas in free text are replaced");
    assert!(a[10].contains('*'));
    let r1 = &find("B_B", "退款")[0];
    assert_eq!((r1[11].as_str(), r1[12].as_str()), ("-10.00", "-10.00"));
    assert_eq!((r1[21].as_str(), r1[22].as_str()), ("R_1", "0.06"));
    let reversal = &find("B_D", "退款")[0];
    assert_eq!(
        (
            reversal[12].as_str(),
            reversal[21].as_str(),
            reversal[22].as_str()
        ),
        ("-40.00", "", "0.24")
    );
    assert!(find("B_E", "交易").is_empty() && find("B_F", "交易").is_empty());
    assert!(
        text.contains("\t,"),
        "cells carry the platform's tab padding"
    );
    assert!(comments.contains(
        &"#-----------------------------------------业务明细列表结束------------------------------------".to_string()
    ));
    assert!(
        comments.contains(&"#交易合计：5笔，商家实收共88.50元，商家优惠共0.00元".to_string()),
        "{comments:?}"
    );
    assert!(
        comments
            .contains(&"#退款合计：2笔，商家实收退款共-50.00元，商家优惠退款共0.00元".to_string()),
        "{comments:?}"
    );
    assert!(comments.last().unwrap().starts_with("#导出时间：["));

    // Another day has nothing; a day not yet begun has no bill.
    let (_, empty) = h
        .get_bytes(&url.replace(&today, "2020-01-01").replace("GBK", "UTF-8"))
        .await;
    let (rows, comments) = parse(&String::from_utf8(empty).unwrap());
    assert_eq!(rows.len(), 1);
    assert!(comments.contains(&"#交易合计：0笔，商家实收共0.00元，商家优惠共0.00元".to_string()));
    let future = bill_url(&h, "2999-01-01").await;
    assert_refused(&future, "40004", "isp.bill_not_exist");
    let bad = bill_url(&h, "2026-13-01").await;
    assert_refused(&bad, "40004", "ACQ.INVALID_PARAMETER");
}
on_both!(daily_bill);

async fn fee_rate_per_app(db: Db) {
    // Proves an app's fee_rate_bp (set at registration, kept on re-key) prices its trades, and
    // refunds give the fee back pro rata with the completing refund taking what is left.
    let Some(h) = Harness::start_with(db, |_| {}).await else {
        return;
    };
    let key = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dev-keys/app-public.pem"),
    )
    .unwrap();
    let (status, app) = h
        .admin_post(
            "/sandbox/apps",
            json!({ "app_id": common::APP_ID, "public_key": key, "fee_rate_bp": 38 }),
        )
        .await;
    assert_eq!(status, 200, "{app}");
    assert_eq!(app["fee_rate_bp"], 38);
    let (_, app) = h
        .admin_post(
            "/sandbox/apps",
            json!({ "app_id": common::APP_ID, "public_key": key }),
        )
        .await;
    assert_eq!(app["fee_rate_bp"], 38);
    let buyer = h.create_user("100.00", None).await;
    let code = h.issue_code(&buyer).await;
    let a = h
        .call("alipay.trade.pay", pay_biz("FR_1", &code, "33.33"))
        .await;
    let trade_no = a["trade_no"].as_str().unwrap().to_string();
    assert_eq!(h.trade(&trade_no).await["fee"], "0.13"); // 12.6654 fen → 13
    for (req, amount) in [("R_1", "11.11"), ("R_2", "11.11"), ("R_3", "11.11")] {
        h.call(
            "alipay.trade.refund",
            json!({ "out_trade_no": "FR_1", "out_request_no": req, "refund_amount": amount }),
        )
        .await;
    }
    let t = h.trade(&trade_no).await;
    let shares: Vec<_> = t["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["refunded_fee"].as_str().unwrap().to_string())
        .collect();
    // Cumulative pro rata: 13 × 1/3 = 4.33 → 4, 13 × 2/3 = 8.67 → 9 (so 5), 13 (so 4).
    assert_eq!(shares, ["0.04", "0.05", "0.04"]);
    assert_eq!(t["refunded_fee"], "0.13");
    let (status, _) = h
        .admin_post(
            "/sandbox/apps",
            json!({ "app_id": common::APP_ID, "public_key": key, "fee_rate_bp": 10001 }),
        )
        .await;
    assert_eq!(status, 400);
}
on_both!(fee_rate_per_app);
