//! Async notifications (`notify_type=trade_status_sync`, and `dut_user_sign` /
//! `dut_user_unsign` for withholding agreements), delivered the platform's way.
//!
//! A trade change a merchant must hear about — paid (`TRADE_SUCCESS`), closed (`TRADE_CLOSED`:
//! cancel of an unpaid trade, expiry, full refund, reversal) or refunded — writes a row to the
//! `notifications` outbox in the same transaction as the change ([`enqueue`]), so a committed
//! change is never lost and a rolled-back one is never announced. The parameters are frozen then;
//! `notify_time`, `sign_type` and `sign` are added at each delivery.
//!
//! The dispatcher ([`run_dispatcher`]) POSTs the parameters as `application/x-www-form-urlencoded`
//! to the trade's `notify_url`, signed with the platform key over
//! [`crate::sign::canonical_notification`] (which leaves out `sign` and `sign_type`). The merchant
//! acknowledges by answering HTTP 200 with the body `success`; anything else, a timeout or a
//! connection error is retried after `notify_retry_ms[attempts - 1]` (the platform's schedule is
//! 4m, 10m, 10m, 1h, 2h, 6h, 15h), and after the last retry the row is marked failed. Each attempt
//! leases its row first, so a crash or restart mid-attempt only delays it: the row is picked up
//! again when the lease ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{watch, Semaphore};

use crate::money::format_fen;
use crate::sign::{self, SIGN_TYPE_RSA2};
use crate::store::{
    self, AgreementRow, AgreementStatus, AttemptOutcome, NotificationRow, NotificationStatus,
    RefundKind, RefundRow, TradeRow, TradeStatus,
};
use crate::time::{api_time, now_ms, shanghai};
use crate::trade::{mask_logon_id, random_token};
use crate::AppState;

pub const NOTIFY_TYPE_TRADE_STATUS_SYNC: &str = "trade_status_sync";
/// A withholding agreement was signed (`status=NORMAL`).
pub const NOTIFY_TYPE_DUT_USER_SIGN: &str = "dut_user_sign";
/// A withholding agreement ended (`status=UNSIGN`), by the buyer or the merchant.
pub const NOTIFY_TYPE_DUT_USER_UNSIGN: &str = "dut_user_unsign";

/// Extra lease time beyond the attempt timeout before a claimed row may be picked again.
const LEASE_MARGIN_MS: i64 = 1_000;

/// Longest `last_error` kept per row.
const ERROR_CHARS_MAX: usize = 200;

/// Writes the notification for `trade` (already in its new state) inside `tx`; a trade without a
/// `notify_url` is not notified. `refund` is the refund this change made, if any.
pub async fn enqueue(
    tx: &mut store::Tx,
    trade: &TradeRow,
    refund: Option<&RefundRow>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let Some(notify_url) = trade.notify_url.clone() else {
        return Ok(());
    };
    let params = trade_status_sync(trade, refund);
    let row = outbox_row(
        &trade.app_id,
        (&trade.trade_no, &trade.out_trade_no),
        notify_url,
        params,
        now_ms,
    );
    store::insert_notification(tx, &row).await
}

/// Writes the `dut_user_sign` or `dut_user_unsign` notification of an agreement (already in its
/// new state) inside `tx`; only agreements signed through the page-sign flow with a
/// `notify_url` are notified. The outbox row is filed under the agreement number and the
/// merchant's external agreement number, in the columns a trade files its numbers under.
pub async fn enqueue_agreement(
    tx: &mut store::Tx,
    agreement: &AgreementRow,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let (Some(notify_url), Some(external)) = (
        agreement.notify_url.clone(),
        agreement.external_agreement_no.as_deref(),
    ) else {
        return Ok(());
    };
    let params = agreement_change(agreement);
    let row = outbox_row(
        &agreement.app_id,
        (&agreement.agreement_no, external),
        notify_url,
        params,
        now_ms,
    );
    store::insert_notification(tx, &row).await
}

/// A pending outbox row: `numbers` are the platform's and the merchant's numbers of what
/// changed, `params` the frozen parameters (a fresh `notify_id` is added).
fn outbox_row(
    app_id: &str,
    numbers: (&str, &str),
    notify_url: String,
    mut params: BTreeMap<String, String>,
    now_ms: i64,
) -> NotificationRow {
    // The platform's notify_ids are ~34 lowercase hex-like characters.
    let notify_id = random_token(34);
    params.insert("notify_id".into(), notify_id.clone());
    NotificationRow {
        notify_id,
        app_id: app_id.to_string(),
        trade_no: numbers.0.to_string(),
        out_trade_no: numbers.1.to_string(),
        notify_url,
        params_json: serde_json::to_string(&params).expect("a string map serializes"),
        status: NotificationStatus::Pending,
        attempts: 0,
        next_attempt_at_ms: now_ms,
        last_error: None,
        created_at_ms: now_ms,
        delivered_at_ms: None,
    }
}

/// The platform's parameters of an agreement's sign (`status=NORMAL`) or unsign
/// (`status=UNSIGN`) notification, without `notify_id`, `notify_time`, `sign_type`, `sign`.
pub fn agreement_change(a: &AgreementRow) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            p.insert(k.to_string(), v);
        }
    };
    let ended = a.status == AgreementStatus::Unsign;
    put(
        "notify_type",
        if ended {
            NOTIFY_TYPE_DUT_USER_UNSIGN
        } else {
            NOTIFY_TYPE_DUT_USER_SIGN
        }
        .into(),
    );
    put("app_id", a.app_id.clone());
    put("auth_app_id", a.app_id.clone());
    put("charset", "utf-8".into());
    put("version", "1.0".into());
    put("agreement_no", a.agreement_no.clone());
    put(
        "external_agreement_no",
        a.external_agreement_no.clone().unwrap_or_default(),
    );
    put("alipay_user_id", a.user_id.clone());
    put("alipay_logon_id", mask_logon_id(&a.logon_id));
    put("personal_product_code", a.personal_product_code.clone());
    put("sign_scene", a.sign_scene.clone());
    put("status", a.status.as_str().into());
    put("sign_time", api_time(a.sign_time_ms));
    put("valid_time", api_time(a.sign_time_ms));
    put("invalid_time", AGREEMENT_INVALID_TIME.into());
    if let Some(unsigned) = a.unsign_time_ms {
        put("unsign_time", api_time(unsigned));
    }
    p
}

/// What the platform answers as the end of an open-ended agreement's validity.
pub const AGREEMENT_INVALID_TIME: &str = "2115-02-01 00:00:00";

/// The platform's `trade_status_sync` parameters for a trade in its new state (without
/// `notify_id`, `notify_time`, `sign_type`, `sign`). Absent facts are left out, as the platform
/// leaves out empty parameters.
pub fn trade_status_sync(trade: &TradeRow, refund: Option<&RefundRow>) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        if !v.is_empty() {
            p.insert(k.to_string(), v);
        }
    };
    put("notify_type", NOTIFY_TYPE_TRADE_STATUS_SYNC.into());
    put("app_id", trade.app_id.clone());
    put("charset", "utf-8".into());
    put("version", "1.0".into());
    put("trade_no", trade.trade_no.clone());
    put("out_trade_no", trade.out_trade_no.clone());
    put("trade_status", trade.status.as_str().into());
    put("subject", trade.subject.clone());
    put("total_amount", format_fen(trade.total_fen));
    if let Some(paid) = trade.paid_at_ms {
        let amount = format_fen(trade.total_fen);
        put("receipt_amount", amount.clone());
        put("invoice_amount", amount.clone());
        put("buyer_pay_amount", amount.clone());
        put("point_amount", "0.00".into());
        put("gmt_payment", api_time(paid));
        put(
            "fund_bill_list",
            json!([{ "amount": amount, "fundChannel": "ALIPAYACCOUNT" }]).to_string(),
        );
    }
    if let Some(buyer) = &trade.buyer_user_id {
        put("buyer_id", buyer.clone());
    }
    if let Some(logon) = &trade.buyer_logon_id {
        put("buyer_logon_id", mask_logon_id(logon));
    }
    if let Some(seller) = &trade.seller_id {
        put("seller_id", seller.clone());
    }
    put("gmt_create", api_time(trade.created_at_ms));
    if trade.status == TradeStatus::TradeClosed {
        if let Some(closed) = trade.closed_at_ms {
            put("gmt_close", api_time(closed));
        }
    }
    if let Some(r) = refund {
        put("refund_fee", format_fen(r.refunded_total_fen));
        // The platform writes gmt_refund with milliseconds.
        put(
            "gmt_refund",
            shanghai(r.created_at_ms, "%Y-%m-%d %H:%M:%S%.3f"),
        );
        if r.kind == RefundKind::Refund {
            put("out_biz_no", r.out_request_no.clone());
        }
    } else if trade.refunded_fen > 0 {
        put("refund_fee", format_fen(trade.refunded_fen));
    }
    p
}

/// The form a delivery posts: the frozen parameters plus `notify_time`, `sign_type` and `sign`.
pub fn signed_form(state: &AppState, params_json: &str, now_ms: i64) -> Vec<(String, String)> {
    let mut params: BTreeMap<String, String> =
        serde_json::from_str(params_json).unwrap_or_default();
    params.insert("notify_time".into(), api_time(now_ms));
    params.insert("sign_type".into(), SIGN_TYPE_RSA2.into());
    let content =
        sign::canonical_notification(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    params.insert("sign".into(), state.platform_key.sign(&content));
    params.into_iter().collect()
}

/// The client that posts notifications: bounded, no redirects, trusting `notify_ca_file` (a
/// merchant's private CA, as in development and tests) for HTTPS notify URLs.
fn notification_client(
    config: &crate::Config,
    attempt_timeout: Duration,
) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(attempt_timeout)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &config.notify_ca_file {
        let pem = std::fs::read(ca)?;
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    Ok(builder.build()?)
}

/// Delivers due notifications until `stop` turns true.
pub async fn run_dispatcher(state: AppState, mut stop: watch::Receiver<bool>) {
    let config = state.config.clone();
    let attempt_timeout = Duration::from_millis(config.notify_attempt_timeout_ms);
    let http = match notification_client(&config, attempt_timeout) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the notification client; not notifying");
            return;
        }
    };
    let limit = Arc::new(Semaphore::new(config.notify_concurrency_max.max(1)));
    let poll = Duration::from_millis(config.notify_poll_ms);
    loop {
        let now = now_ms();
        let due = match state
            .store
            .due_notifications(now, config.notify_batch_max as i64)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "reading due notifications");
                Vec::new()
            }
        };
        let full_batch = due.len() >= config.notify_batch_max;
        let mut attempts = tokio::task::JoinSet::new();
        for row in due {
            let lease_until = now + config.notify_attempt_timeout_ms as i64 + LEASE_MARGIN_MS;
            match state
                .store
                .lease_notification(&row.notify_id, row.next_attempt_at_ms, lease_until)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "leasing a notification");
                    continue;
                }
            }
            let permit = limit.clone().acquire_owned().await;
            let (state, http) = (state.clone(), http.clone());
            attempts.spawn(async move {
                let _permit = permit;
                attempt(&state, &http, row).await;
            });
        }
        while attempts.join_next().await.is_some() {}
        if full_batch {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = state.dispatcher_wake.notified() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// One delivery attempt (two identical POSTs under the `duplicate_notifications` fault knob), and
/// its recording.
async fn attempt(state: &AppState, http: &reqwest::Client, row: NotificationRow) {
    let form = signed_form(state, &row.params_json, now_ms());
    let copies = if state.faults.duplicate_notification() {
        state.faults.count_duplicate_notification();
        2
    } else {
        1
    };
    let mut acknowledged = false;
    let mut error = None;
    for _ in 0..copies {
        match post(http, &row.notify_url, &form).await {
            Ok(()) => acknowledged = true,
            Err(e) => error = Some(e),
        }
    }
    let now = now_ms();
    let attempts_after = row.attempts as usize + 1;
    let schedule = &state.config.notify_retry_ms;
    let outcome = if acknowledged {
        AttemptOutcome {
            status: NotificationStatus::Delivered,
            next_attempt_at_ms: now,
            error: None,
            delivered_at_ms: Some(now),
        }
    } else if attempts_after > schedule.len() {
        AttemptOutcome {
            status: NotificationStatus::Failed,
            next_attempt_at_ms: now,
            error,
            delivered_at_ms: None,
        }
    } else {
        AttemptOutcome {
            status: NotificationStatus::Pending,
            next_attempt_at_ms: now + schedule[attempts_after - 1] as i64,
            error,
            delivered_at_ms: None,
        }
    };
    tracing::info!(notify_id = %row.notify_id, out_trade_no = %row.out_trade_no, attempt = attempts_after, status = outcome.status.as_str(), "notification attempt");
    if let Err(e) = state
        .store
        .record_notification_attempt(&row.notify_id, &outcome)
        .await
    {
        // The lease runs out and the attempt is made again: at-least-once, as on the platform.
        tracing::warn!(error = %e, "recording a notification attempt");
    }
}

/// Posts one copy; Ok only for HTTP 200 with the body exactly `success`.
async fn post(http: &reqwest::Client, url: &str, form: &[(String, String)]) -> Result<(), String> {
    let clip = |s: String| s.chars().take(ERROR_CHARS_MAX).collect::<String>();
    let resp = http
        .post(url)
        .form(form)
        .send()
        .await
        .map_err(|e| clip(format!("request failed: {e}")))?;
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .map_err(|e| clip(format!("reading the answer: {e}")))?;
    if status == 200 && body == "success" {
        Ok(())
    } else {
        Err(clip(format!("HTTP {status}: {body:?}")))
    }
}
