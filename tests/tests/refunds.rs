//! Refunds and rider disputes against the real provider sandbox: idempotent per request id,
//! bounded by what was paid, reflected at the provider and in a balanced ledger.

use serde_json::{json, Value};
use turnpike_tests::provider::PaidEnv;
use turnpike_tests::{booth, tap, toll_exit, Db};
use turnpike_wire::api::{Decision, Direction, TapResponse, VehicleClass};

use turnpike_tests::on_both;

/// A toll journey paid at the booth; returns (rider, wallet user, charge id, amount).
async fn paid_toll(p: &PaidEnv) -> (turnpike_client::RiderDevice, String, String, i64) {
    let rider = p.env.gw.rider().await;
    let now = turnpike_tests::now_ms;
    let entry = p
        .env
        .gw
        .terminal(&booth("hangzhou-pengbu", "in"))
        .tap(&tap(1, Direction::Entry, rider.ride_code(now()).unwrap()))
        .await
        .unwrap();
    assert_eq!(entry.decision, Decision::Approve);
    let user = p.sandbox.wallet(100_000, None).await;
    let code = p.sandbox.issue_code(&user).await;
    let exit = toll_exit(1, rider.ride_code(now()).unwrap(), VehicleClass::P1);
    let a = p
        .env
        .gw
        .terminal(&booth("shaoxing", "out"))
        .toll_exit_raw(&exit, &code)
        .await
        .unwrap();
    let r: TapResponse = a.json().unwrap();
    assert_eq!(r.decision, Decision::Approve, "{r:?}");
    let charges = p.env.gw.state.store.charges(None, None, 10).await.unwrap();
    (
        rider,
        user,
        charges[0].charge_id.to_string(),
        r.charge.unwrap().to_minor(),
    )
}

async fn admin(
    p: &PaidEnv,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let a = p
        .env
        .gw
        .admin
        .send(method, path, body.as_ref())
        .await
        .unwrap();
    (a.status, a.json().unwrap_or(Value::Null))
}

async fn refund(p: &PaidEnv, charge_id: &str, amount: i64, request_id: &str) -> (u16, Value) {
    admin(
        p,
        reqwest::Method::POST,
        "/v1/admin/refunds",
        Some(json!({"charge_id": charge_id, "amount_minor": amount, "reason": "gate fault", "request_id": request_id})),
    )
    .await
}

/// Proves a partial refund reaches the wallet once however often it is requested, that the
/// total refunded can never pass the charge, and that the journal stays balanced with the fee
/// returned pro rata.
async fn partial_refunds_are_idempotent(db: Db) {
    let Some(p) = PaidEnv::start(db, |_| {}).await else {
        return;
    };
    let (_, user, charge_id, amount) = paid_toll(&p).await;
    let paid_balance = p.sandbox.balance_fen(&user).await;
    let (status, first) = refund(&p, &charge_id, 500, "r-1").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "succeeded");
    let (status, again) = refund(&p, &charge_id, 500, "r-1").await;
    assert_eq!(status, 200);
    assert_eq!(
        again["refund_id"], first["refund_id"],
        "same request, same refund"
    );
    assert_eq!(p.sandbox.balance_fen(&user).await, paid_balance + 500);
    let (status, body) = refund(&p, &charge_id, 600, "r-1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("request_id_reused"))
    );
    let (status, body) = refund(&p, &charge_id, amount, "r-2").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("refund_exceeds_charge"))
    );
    let (status, rest) = refund(&p, &charge_id, amount - 500, "r-2").await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(p.sandbox.balance_fen(&user).await, paid_balance + amount);
    let trades = p.sandbox.trades().await;
    assert_eq!(trades[0].refunded_fen, amount);
    let (_, ledger) = admin(&p, reqwest::Method::GET, "/v1/admin/ledger", None).await;
    assert_eq!(ledger["unbalanced_transactions"], 0);
    assert_eq!(ledger["transactions"], 3, "capture + two refunds: {ledger}");
    // After a full refund the operator is owed nothing and the fee came back in full.
    for b in ledger["balances"].as_array().unwrap() {
        let net = b["debit_minor"].as_i64().unwrap() - b["credit_minor"].as_i64().unwrap();
        assert_eq!(net, 0, "{b}");
    }
    // The summary of the charge's business day (and of its operator's part) is the whole
    // journal here; another day or operator holds nothing; a bad filter is refused precisely.
    let (_, charges) = admin(&p, reqwest::Method::GET, "/v1/admin/charges", None).await;
    let (day, operator) = (
        charges[0]["business_day"].as_str().unwrap().to_string(),
        charges[0]["operator_id"].as_str().unwrap().to_string(),
    );
    for query in [
        format!("business_day={day}"),
        format!("business_day={day}&operator_id={operator}"),
        format!("operator_id={operator}"),
    ] {
        let path = format!("/v1/admin/ledger?{query}");
        let (status, scoped) = admin(&p, reqwest::Method::GET, &path, None).await;
        assert_eq!((status, &scoped), (200, &ledger), "{query}");
    }
    for query in [
        "business_day=2001-01-01".to_string(),
        format!("business_day={day}&operator_id=someone-else"),
    ] {
        let path = format!("/v1/admin/ledger?{query}");
        let (status, scoped) = admin(&p, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200);
        assert_eq!(scoped["transactions"], 0, "{query}: {scoped}");
        assert_eq!(scoped["balances"], json!([]), "{query}");
    }
    for (query, status, code) in [
        ("business_day=2026-13-01", 422, "invalid_business_day"),
        ("business_day=20261201", 422, "invalid_business_day"),
        ("operator_id=no%20spaces", 422, "invalid_id"),
        ("day=2026-12-01", 400, "invalid_query"),
    ] {
        let path = format!("/v1/admin/ledger?{query}");
        let (got, body) = admin(&p, reqwest::Method::GET, &path, None).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{query}"
        );
    }
}
on_both!(partial_refunds_are_idempotent);

/// Proves bad refund requests get precise errors and change nothing.
async fn bad_refunds(db: Db) {
    let Some(p) = PaidEnv::start(db, |_| {}).await else {
        return;
    };
    let (_, _, charge_id, _) = paid_toll(&p).await;
    for (body, status, code) in [
        (
            json!({"charge_id": "x", "amount_minor": 1, "reason": "r", "request_id": "a"}),
            422,
            "invalid_charge_id",
        ),
        (
            json!({"charge_id": "12345", "amount_minor": 1, "reason": "r", "request_id": "a"}),
            404,
            "not_found",
        ),
        (
            json!({"charge_id": charge_id, "amount_minor": 0, "reason": "r", "request_id": "a"}),
            422,
            "invalid_amount",
        ),
        (
            json!({"charge_id": charge_id, "amount_minor": 1, "reason": "", "request_id": "a"}),
            422,
            "invalid_reason",
        ),
        (
            json!({"charge_id": charge_id, "amount_minor": 1, "reason": "r", "request_id": "a b"}),
            422,
            "invalid_request_id",
        ),
        (
            json!({"charge_id": charge_id, "amount_minor": 1, "reason": "r", "request_id": "a", "extra": 1}),
            400,
            "unknown_field",
        ),
    ] {
        let (s, b) = admin(
            &p,
            reqwest::Method::POST,
            "/v1/admin/refunds",
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (s, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    assert_eq!(p.env.gw.count("refunds").await, 0);
    assert_eq!(p.sandbox.trades().await[0].refunded_fen, 0);
}
on_both!(bad_refunds);

/// Proves a rider can dispute only their own paid charge, an operator's approval refunds it
/// (once, even if decided twice), and a rejection refunds nothing.
async fn disputes_flow(db: Db) {
    let Some(p) = PaidEnv::start(db, |_| {}).await else {
        return;
    };
    let (rider, user, charge_id, amount) = paid_toll(&p).await;
    let other = p.env.gw.rider().await;
    let gw = &p.env.gw;
    let post = |token: String, body: Value| async move {
        gw.public_send(
            reqwest::Method::POST,
            "/v1/riders/me/disputes",
            Some(&token),
            Some(&body),
        )
        .await
        .unwrap()
    };
    let a = post(
        other.token.clone(),
        json!({"charge_id": charge_id, "reason": "not me"}),
    )
    .await;
    assert_eq!(a.status, 404, "another rider's charge is invisible");
    let a = post(
        rider.token.clone(),
        json!({"charge_id": charge_id, "reason": "charged the wrong class"}),
    )
    .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
    let dispute: Value = a.json().unwrap();
    let a = post(
        rider.token.clone(),
        json!({"charge_id": charge_id, "reason": "again"}),
    )
    .await;
    assert_eq!(
        (a.status, a.error_code().as_deref()),
        (409, Some("dispute_already_open"))
    );
    let (_, open) = admin(
        &p,
        reqwest::Method::GET,
        "/v1/admin/disputes?status=open",
        None,
    )
    .await;
    assert_eq!(open.as_array().unwrap().len(), 1);
    let path = format!(
        "/v1/admin/disputes/{}/decision",
        dispute["dispute_id"].as_str().unwrap()
    );
    let before = p.sandbox.balance_fen(&user).await;
    let (status, decided) = admin(
        &p,
        reqwest::Method::POST,
        &path,
        Some(json!({"approve": true, "note": "class p1 confirmed"})),
    )
    .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "approved");
    assert_eq!(p.sandbox.balance_fen(&user).await, before + amount);
    let (status, again) = admin(
        &p,
        reqwest::Method::POST,
        &path,
        Some(json!({"approve": true, "note": "twice"})),
    )
    .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("dispute_decided"))
    );
    assert_eq!(p.sandbox.balance_fen(&user).await, before + amount);
    let mine = gw
        .public_send(
            reqwest::Method::GET,
            "/v1/riders/me/disputes",
            Some(&rider.token),
            None,
        )
        .await
        .unwrap();
    let mine: Value = mine.json().unwrap();
    assert_eq!(mine[0]["status"], "approved");
}
on_both!(disputes_flow);
