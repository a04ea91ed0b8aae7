//! The open-API gateway, `/gateway.do` by POST or GET: the one endpoint the real platform
//! exposes.
//!
//! It takes the common parameters from the query string and the form body (SDKs put them in
//! either; some client libraries send every call as a GET), checks them in the platform's order, verifies the request's RSA2 signature against
//! the app's registered key, runs the method, and answers
//! `{"<method>_response": {...}, "sign": "..."}` signed with the platform key over the exact
//! JSON text of the `_response` value. Every answer, refusals included, is HTTP 200 and signed,
//! as on the real platform; unknown or missing methods answer under `error_response`.
//! `alipay.user.agreement.page.sign` is a page, not a call: opened in a browser it shows what
//! the buyer would sign (the sandbox wallet signs it, [`page_sign_of_url`]).
//!
//! Merchant numbers follow the platform's character rules: `out_trade_no` 1–64 letters, digits
//! and `_`; `external_agreement_no` 1–32 letters and digits.
//!
//! Fault knobs ([`crate::faults`]) act here, around the method: latency before it, a hang or a 5xx
//! instead of it, a refusal instead of a pay, or a dropped connection after it committed.
//!
//! It does not speak GBK (charset must be UTF-8), the legacy `RSA` (SHA-1) sign type, AES
//! content encryption, or certificate mode.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::agreement::{self, AgreementKey, PageSign};
use crate::error::SandboxError;
use crate::faults::{Action, Plan};
use crate::money::{format_fen, parse_fen};
use crate::sign::{self, Verifier, SIGN_TYPE_RSA2};
use crate::store::{AgreementStatus, TradeRow};
use crate::time::{api_time, now_ms, parse_api_time};
use crate::trade::{
    self, mask_logon_id, DeductRequest, PayOutcome, PayRequest, PrecreateRequest, RefundRequest,
    TradeKey, TradeOptions, ACQ_BUYER_BALANCE_NOT_ENOUGH, ACQ_INVALID_PARAMETER,
};
use crate::{AbortConnection, AppState};

/// Most parameters a request may carry; the API defines about a dozen.
const PARAMS_MAX: usize = 64;

/// The methods the sandbox implements.
const METHODS: &[&str] = &[
    "alipay.trade.pay",
    "alipay.trade.precreate",
    "alipay.trade.query",
    "alipay.trade.cancel",
    "alipay.trade.refund",
    "alipay.user.agreement.query",
    "alipay.user.agreement.unsign",
    "alipay.user.agreement.page.sign",
    "alipay.data.dataservice.bill.downloadurl.query",
    "alipay.user.validate",
];

/// The page method: the buyer's wallet opens it; it answers a page, not a signed JSON answer.
const METHOD_PAGE_SIGN: &str = "alipay.user.agreement.page.sign";
/// The bill query's answer for a day whose bill cannot exist yet.
const BILL_NOT_EXIST: &str = "isp.bill_not_exist";

pub async fn gateway_do(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = parse_params(query.as_deref().unwrap_or(""), &body);
    if let Ok(p) = &params {
        if p.get("method").map(String::as_str) == Some(METHOD_PAGE_SIGN) {
            return sign_page(&state, p).await;
        }
    }
    let method = params
        .as_ref()
        .ok()
        .and_then(|p| p.get("method"))
        .filter(|m| METHODS.contains(&m.as_str()))
        .cloned();
    let response_key = match &method {
        Some(m) => format!("{}_response", m.replace('.', "_")),
        None => "error_response".to_string(),
    };
    let plan = method
        .as_deref()
        .map(|m| state.faults.plan(m))
        .unwrap_or_default();
    if plan.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(plan.latency_ms)).await;
    }
    match plan.action {
        Action::Timeout { hang_ms } => {
            tracing::info!(
                method = method.as_deref().unwrap_or("-"),
                hang_ms,
                "fault: timeout"
            );
            tokio::time::sleep(Duration::from_millis(hang_ms)).await;
            return abort_connection();
        }
        Action::Http5xx { status } => {
            tracing::info!(
                method = method.as_deref().unwrap_or("-"),
                status,
                "fault: 5xx"
            );
            return server_error(status);
        }
        _ => {}
    }
    let deadline = Duration::from_millis(state.config.request_timeout_ms);
    let outcome = match params {
        Ok(params) => match tokio::time::timeout(deadline, handle(&state, &params, &plan)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!("request exceeded {deadline:?}").into()),
        },
        Err(e) => Err(e),
    };
    state.dispatcher_wake.notify_one();
    let inner = match outcome {
        Ok(fields) => Value::Object(fields),
        Err(e) => {
            let (code, msg, sub_code) = e.open_api_code();
            tracing::info!(
                method = method.as_deref().unwrap_or("-"),
                code,
                sub_code,
                "refused"
            );
            json!({ "code": code, "msg": msg, "sub_code": sub_code, "sub_msg": e.public_message() })
        }
    };
    if plan.action == Action::DropAfterCommit {
        tracing::info!(
            method = method.as_deref().unwrap_or("-"),
            "fault: drop after commit"
        );
        return abort_connection();
    }
    signed_response(&state, &response_key, &inner)
}

/// A response the server turns into a closed connection with nothing written (see
/// [`crate::AbortConnection`]).
fn abort_connection() -> Response {
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    response.extensions_mut().insert(AbortConnection);
    response
}

/// What a load balancer in front of the platform answers when it is unwell: HTML, not JSON.
fn server_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let reason = status.canonical_reason().unwrap_or("Error");
    (
        status,
        [(header::CONTENT_TYPE, "text/html")],
        format!(
            "<html><head><title>{} {reason}</title></head><body><center><h1>{} {reason}</h1></center></body></html>",
            status.as_u16(),
            status.as_u16()
        ),
    )
        .into_response()
}

/// Serializes `inner` once, signs that exact text, and embeds the same text in the body, so a
/// client can verify the bytes it received.
fn signed_response(state: &AppState, response_key: &str, inner: &Value) -> Response {
    let inner_text = inner.to_string();
    let sign = state.platform_key.sign(&inner_text);
    let body = format!("{{\"{response_key}\":{inner_text},\"sign\":\"{sign}\"}}");
    (
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        body,
    )
        .into_response()
}

/// Query-string parameters, then form-body parameters (the body wins on a repeated name; the
/// signature covers the merged set, so what is verified is what is used).
fn parse_params(query: &str, body: &[u8]) -> Result<BTreeMap<String, String>, SandboxError> {
    let mut params = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(body)) {
        params.insert(k.into_owned(), v.into_owned());
        if params.len() > PARAMS_MAX {
            return Err(SandboxError::invalid(
                "isv.invalid-parameter",
                format!("more than {PARAMS_MAX} parameters"),
            ));
        }
    }
    Ok(params)
}

/// A parameter's value; an empty one counts as absent, as on the platform.
fn param<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// A request that passed the platform's checks of its common parameters and signature.
struct Authenticated<'a> {
    app_id: &'a str,
    method: &'a str,
}

/// Checks the common parameters in the platform's order and verifies the signature against the
/// app's registered key.
async fn authenticate<'a>(
    state: &AppState,
    params: &'a BTreeMap<String, String>,
) -> Result<Authenticated<'a>, SandboxError> {
    let get = |name: &str| param(params, name);
    let required = |name: &str, sub_code: &'static str| {
        get(name).ok_or_else(|| SandboxError::missing(sub_code, format!("missing {name}")))
    };
    let app_id = required("app_id", "isv.missing-app-id")?;
    let method = required("method", "isv.missing-method")?;
    let signature = required("sign", "isv.missing-signature")?;
    let sign_type = required("sign_type", "isv.missing-signature-type")?;
    let timestamp = required("timestamp", "isv.missing-timestamp")?;
    let version = required("version", "isv.missing-version")?;
    if !METHODS.contains(&method) {
        return Err(SandboxError::invalid(
            "isv.invalid-method",
            format!("no such method {method}"),
        ));
    }
    if sign_type != SIGN_TYPE_RSA2 {
        return Err(SandboxError::invalid(
            "isv.invalid-signature-type",
            format!("sign_type {sign_type} is not supported; use RSA2"),
        ));
    }
    if parse_api_time(timestamp).is_none() {
        return Err(SandboxError::invalid(
            "isv.invalid-timestamp",
            "timestamp must be yyyy-MM-dd HH:mm:ss",
        ));
    }
    if version != "1.0" {
        return Err(SandboxError::invalid(
            "isv.invalid-version",
            format!("version {version} is not supported; use 1.0"),
        ));
    }
    if let Some(charset) = get("charset") {
        if !charset.eq_ignore_ascii_case("utf-8") {
            return Err(SandboxError::invalid(
                "isv.invalid-charset",
                format!("charset {charset} is not supported by the sandbox; use utf-8"),
            ));
        }
    }
    if let Some(format) = get("format") {
        if !format.eq_ignore_ascii_case("json") {
            return Err(SandboxError::invalid(
                "isv.invalid-format",
                format!("format {format} is not supported; use JSON"),
            ));
        }
    }
    let key =
        state.store.app_public_key(app_id).await?.ok_or_else(|| {
            SandboxError::invalid("isv.invalid-app-id", format!("no app {app_id}"))
        })?;
    let verifier = Verifier::from_text(&key)?;
    let content = sign::canonical_request(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if !verifier.verify(&content, signature) {
        return Err(SandboxError::invalid(
            "isv.invalid-signature",
            format!("验签出错 (invalid signature); the string verified was: {content}"),
        ));
    }
    Ok(Authenticated { app_id, method })
}

async fn handle(
    state: &AppState,
    params: &BTreeMap<String, String>,
    plan: &Plan,
) -> Result<Map<String, Value>, SandboxError> {
    let Authenticated { app_id, method } = authenticate(state, params).await?;
    let get = |name: &str| param(params, name);
    if method == "alipay.user.validate" {
        // One of the platform's older methods: its one field is a top-level parameter, and it
        // has no biz_content.
        return user_validate(state, get("logon_id")).await;
    }
    let biz = BizContent::parse(get("biz_content"))?;
    let now = now_ms();
    let common = Common {
        app_id,
        notify_url: get("notify_url"),
    };
    match method {
        "alipay.trade.pay" => {
            match &plan.action {
                Action::Decline { sub_code } => {
                    return Err(SandboxError::business(
                        sub_code,
                        "declined (sandbox fault knob)",
                    ))
                }
                Action::InsufficientBalance => {
                    return Err(SandboxError::business(
                        ACQ_BUYER_BALANCE_NOT_ENOUGH,
                        "the buyer's balance is not enough (sandbox fault knob)",
                    ))
                }
                _ => {}
            }
            pay(state, &common, &biz, plan.user_paying_ms, now).await
        }
        "alipay.trade.precreate" => precreate(state, &common, &biz, now).await,
        "alipay.trade.query" => query(state, app_id, &biz).await,
        "alipay.trade.cancel" => cancel(state, app_id, &biz, now).await,
        "alipay.trade.refund" => refund(state, app_id, &biz, now).await,
        "alipay.user.agreement.query" => agreement_query(state, app_id, &biz).await,
        "alipay.user.agreement.unsign" => agreement_unsign(state, app_id, &biz, now).await,
        "alipay.data.dataservice.bill.downloadurl.query" => {
            bill_download_url(state, app_id, &biz, now).await
        }
        METHOD_PAGE_SIGN => Err(SandboxError::invalid(
            "isv.invalid-method",
            "alipay.user.agreement.page.sign is a page: the buyer opens it in the wallet",
        )),
        _ => unreachable!("checked against METHODS above"),
    }
}

/// Common parameters a method uses beyond authentication.
struct Common<'a> {
    app_id: &'a str,
    notify_url: Option<&'a str>,
}

/// Longest `notify_url` accepted; the platform allows 256 characters.
const NOTIFY_URL_CHARS_MAX: usize = 256;
/// Longest store, terminal and operator ids the platform accepts.
const STORE_ID_CHARS_MAX: usize = 32;

impl Common<'_> {
    fn options(
        &self,
        state: &AppState,
        biz: &BizContent,
        now_ms: i64,
    ) -> Result<TradeOptions, SandboxError> {
        let notify_url = checked_notify_url(self.notify_url)?;
        let timeout_ms = match biz.text("timeout_express", 8)? {
            None => state.config.trade_timeout_default_ms as i64,
            Some(t) => parse_timeout_express(&t, now_ms).ok_or_else(|| {
                SandboxError::business(
                    ACQ_INVALID_PARAMETER,
                    format!("timeout_express {t} must be 1m..15d (m, h, d, or 1c)"),
                )
            })?,
        };
        Ok(TradeOptions {
            notify_url,
            terminal_id: biz.text("terminal_id", STORE_ID_CHARS_MAX)?,
            store_id: biz.text("store_id", STORE_ID_CHARS_MAX)?,
            operator_id: biz.text("operator_id", 28)?,
            timeout_ms,
        })
    }
}

/// A request's `notify_url`: an http(s) URL of at most 256 characters.
fn checked_notify_url(url: Option<&str>) -> Result<Option<String>, SandboxError> {
    match url {
        None => Ok(None),
        Some(url)
            if url.chars().count() <= NOTIFY_URL_CHARS_MAX
                && (url.starts_with("http://") || url.starts_with("https://")) =>
        {
            Ok(Some(url.to_string()))
        }
        Some(_) => Err(SandboxError::business(
            ACQ_INVALID_PARAMETER,
            "notify_url must be an http(s) URL of at most 256 characters",
        )),
    }
}

/// The platform's `timeout_express`: `<n>m`, `<n>h`, `<n>d` between 1m and 15d, or `1c` (until
/// the end of the day, Asia/Shanghai). Returns milliseconds.
fn parse_timeout_express(text: &str, now_ms: i64) -> Option<i64> {
    const MINUTE_MS: i64 = 60_000;
    const MAX_MS: i64 = 15 * 24 * 60 * MINUTE_MS;
    if text == "1c" {
        let today = crate::time::shanghai(now_ms, "%Y-%m-%d");
        let end = parse_api_time(&format!("{today} 23:59:59"))? + 1_000;
        return Some((end - now_ms).max(MINUTE_MS));
    }
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 5 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: i64 = digits.parse().ok()?;
    let ms = n * match unit {
        "m" => MINUTE_MS,
        "h" => 60 * MINUTE_MS,
        "d" => 24 * 60 * MINUTE_MS,
        _ => return None,
    };
    (MINUTE_MS..=MAX_MS).contains(&ms).then_some(ms)
}

/// The JSON object in `biz_content`, with typed accessors that refuse bad input the platform's
/// way (`ACQ.INVALID_PARAMETER`).
struct BizContent(Map<String, Value>);

/// Longest merchant identifier (out_trade_no, out_request_no) the platform accepts.
const MERCHANT_NO_CHARS_MAX: usize = 64;
const SUBJECT_CHARS_MAX: usize = 256;

impl BizContent {
    fn parse(text: Option<&str>) -> Result<BizContent, SandboxError> {
        let text = text.ok_or_else(|| {
            SandboxError::business(ACQ_INVALID_PARAMETER, "biz_content is required")
        })?;
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(BizContent(map)),
            _ => Err(SandboxError::business(
                ACQ_INVALID_PARAMETER,
                "biz_content is not a JSON object",
            )),
        }
    }

    /// A string field; numbers are accepted as their JSON text (some SDK models send amounts
    /// as numbers).
    fn text(&self, name: &str, chars_max: usize) -> Result<Option<String>, SandboxError> {
        let value = match self.0.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) if s.is_empty() => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(SandboxError::business(
                    ACQ_INVALID_PARAMETER,
                    format!("{name} must be a string"),
                ))
            }
        };
        if value.chars().count() > chars_max {
            return Err(SandboxError::business(
                ACQ_INVALID_PARAMETER,
                format!("{name} is longer than {chars_max} characters"),
            ));
        }
        Ok(Some(value))
    }

    fn required(&self, name: &str, chars_max: usize) -> Result<String, SandboxError> {
        self.text(name, chars_max)?.ok_or_else(|| {
            SandboxError::business(ACQ_INVALID_PARAMETER, format!("{name} is required"))
        })
    }

    /// A merchant number (`out_trade_no`, `trade_no`): 1–64 letters, digits and `_`, the
    /// platform's rule, so NUL, direction overrides or SQL text never reach a trade.
    fn merchant_no(&self, name: &str) -> Result<Option<String>, SandboxError> {
        let value = self.text(name, MERCHANT_NO_CHARS_MAX)?;
        if let Some(v) = &value {
            if !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(SandboxError::business(
                    ACQ_INVALID_PARAMETER,
                    format!("{name} may hold only letters, digits and _"),
                ));
            }
        }
        Ok(value)
    }

    fn required_merchant_no(&self, name: &str) -> Result<String, SandboxError> {
        self.merchant_no(name)?.ok_or_else(|| {
            SandboxError::business(ACQ_INVALID_PARAMETER, format!("{name} is required"))
        })
    }

    fn amount_fen(&self, name: &str) -> Result<i64, SandboxError> {
        let text = self.required(name, 20)?;
        parse_fen(&text).map_err(|e| SandboxError::business(ACQ_INVALID_PARAMETER, e))
    }

    fn trade_key(&self) -> Result<TradeKey, SandboxError> {
        let key = TradeKey {
            trade_no: self.merchant_no("trade_no")?,
            out_trade_no: self.merchant_no("out_trade_no")?,
        };
        if key.trade_no.is_none() && key.out_trade_no.is_none() {
            return Err(SandboxError::business(
                ACQ_INVALID_PARAMETER,
                "trade_no or out_trade_no is required",
            ));
        }
        Ok(key)
    }
}

fn success(code: &str, msg: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("code".into(), code.into());
    m.insert("msg".into(), msg.into());
    m
}

/// The fields a pay (or deduction) answers about its trade.
fn trade_answer(mut m: Map<String, Value>, t: &TradeRow) -> Map<String, Value> {
    m.insert("trade_no".into(), t.trade_no.clone().into());
    m.insert("out_trade_no".into(), t.out_trade_no.clone().into());
    if let Some(logon) = &t.buyer_logon_id {
        m.insert("buyer_logon_id".into(), mask_logon_id(logon).into());
    }
    if let Some(buyer) = &t.buyer_user_id {
        m.insert("buyer_user_id".into(), buyer.clone().into());
    }
    m.insert("total_amount".into(), format_fen(t.total_fen).into());
    if let Some(paid) = t.paid_at_ms {
        let amount = format_fen(t.total_fen);
        m.insert("receipt_amount".into(), amount.clone().into());
        m.insert("buyer_pay_amount".into(), amount.clone().into());
        m.insert("invoice_amount".into(), amount.clone().into());
        m.insert("point_amount".into(), "0.00".into());
        m.insert("gmt_payment".into(), api_time(paid).into());
        m.insert(
            "fund_bill_list".into(),
            json!([{ "amount": amount, "fund_channel": "ALIPAYACCOUNT" }]),
        );
    }
    m
}

async fn pay(
    state: &AppState,
    common: &Common<'_>,
    biz: &BizContent,
    user_paying_ms: Option<u64>,
    now: i64,
) -> Result<Map<String, Value>, SandboxError> {
    let options = common.options(state, biz, now)?;
    let product = biz.text("product_code", 64)?;
    if product.as_deref() == Some("GENERAL_WITHHOLDING") {
        return deduct(state, common.app_id, biz, options, now).await;
    }
    if let Some(p) = product.as_deref().filter(|p| *p != "FACE_TO_FACE_PAYMENT") {
        return Err(SandboxError::business(
            ACQ_INVALID_PARAMETER,
            format!("product_code {p} is not supported; use FACE_TO_FACE_PAYMENT or GENERAL_WITHHOLDING"),
        ));
    }
    let scene = biz.required("scene", 32)?;
    if scene != "bar_code" {
        return Err(SandboxError::business(
            ACQ_INVALID_PARAMETER,
            format!("scene {scene} is not supported; use bar_code"),
        ));
    }
    let req = PayRequest {
        out_trade_no: biz.required_merchant_no("out_trade_no")?,
        auth_code: biz.required("auth_code", 32)?,
        total_fen: biz.amount_fen("total_amount")?,
        subject: biz.required("subject", SUBJECT_CHARS_MAX)?,
        options,
        user_paying_ms,
    };
    let outcome = trade::pay(&state.store, common.app_id, &req, now).await?;
    Ok(match outcome {
        PayOutcome::Paid(t) => trade_answer(success("10000", "Success"), &t),
        PayOutcome::UserPaying(t) => {
            trade_answer(success("10003", "order success pay inprocess"), &t)
        }
    })
}

/// Deduction: `alipay.trade.pay` with `product_code=GENERAL_WITHHOLDING` and
/// `agreement_params.agreement_no`; no auth_code, no scene.
async fn deduct(
    state: &AppState,
    app_id: &str,
    biz: &BizContent,
    options: TradeOptions,
    now: i64,
) -> Result<Map<String, Value>, SandboxError> {
    let agreement_no = match biz.0.get("agreement_params") {
        Some(Value::Object(p)) => p.get("agreement_no").and_then(Value::as_str),
        _ => None,
    }
    .filter(|no| !no.is_empty() && no.len() <= MERCHANT_NO_CHARS_MAX)
    .ok_or_else(|| {
        SandboxError::business(
            ACQ_INVALID_PARAMETER,
            "agreement_params.agreement_no is required for GENERAL_WITHHOLDING",
        )
    })?
    .to_string();
    let req = DeductRequest {
        out_trade_no: biz.required_merchant_no("out_trade_no")?,
        agreement_no,
        total_fen: biz.amount_fen("total_amount")?,
        subject: biz.required("subject", SUBJECT_CHARS_MAX)?,
        options,
    };
    let t = trade::deduct(&state.store, app_id, &req, now).await?;
    Ok(trade_answer(success("10000", "Success"), &t))
}

async fn precreate(
    state: &AppState,
    common: &Common<'_>,
    biz: &BizContent,
    now: i64,
) -> Result<Map<String, Value>, SandboxError> {
    let req = PrecreateRequest {
        out_trade_no: biz.required_merchant_no("out_trade_no")?,
        total_fen: biz.amount_fen("total_amount")?,
        subject: biz.required("subject", SUBJECT_CHARS_MAX)?,
        options: common.options(state, biz, now)?,
    };
    let t = trade::precreate(&state.store, common.app_id, &req, now).await?;
    let mut m = success("10000", "Success");
    m.insert("out_trade_no".into(), t.out_trade_no.clone().into());
    m.insert(
        "qr_code".into(),
        trade::qr_code(&t)
            .ok_or_else(|| anyhow::anyhow!("precreated trade without a qr token"))?
            .into(),
    );
    Ok(m)
}

async fn query(
    state: &AppState,
    app_id: &str,
    biz: &BizContent,
) -> Result<Map<String, Value>, SandboxError> {
    let t = trade::query(&state.store, app_id, &biz.trade_key()?).await?;
    let mut m = success("10000", "Success");
    m.insert("trade_no".into(), t.trade_no.clone().into());
    m.insert("out_trade_no".into(), t.out_trade_no.clone().into());
    if let Some(logon) = &t.buyer_logon_id {
        m.insert("buyer_logon_id".into(), mask_logon_id(logon).into());
    }
    if let Some(buyer) = &t.buyer_user_id {
        m.insert("buyer_user_id".into(), buyer.clone().into());
    }
    m.insert("trade_status".into(), t.status.as_str().into());
    m.insert("total_amount".into(), format_fen(t.total_fen).into());
    let paid = if t.paid_at_ms.is_some() {
        t.total_fen
    } else {
        0
    };
    m.insert("buyer_pay_amount".into(), format_fen(paid).into());
    m.insert("receipt_amount".into(), format_fen(paid).into());
    m.insert("invoice_amount".into(), format_fen(paid).into());
    m.insert("point_amount".into(), "0.00".into());
    if let Some(paid_at) = t.paid_at_ms {
        m.insert("send_pay_date".into(), api_time(paid_at).into());
    }
    if let Some(store_id) = &t.store_id {
        m.insert("store_id".into(), store_id.clone().into());
    }
    if let Some(terminal_id) = &t.terminal_id {
        m.insert("terminal_id".into(), terminal_id.clone().into());
    }
    Ok(m)
}

/// How a call names an agreement: `agreement_no`, or the merchant's `external_agreement_no`
/// with its `personal_product_code` and `sign_scene` (defaults: withholding, the default scene).
fn agreement_key(biz: &BizContent) -> Result<AgreementKey, SandboxError> {
    if let Some(no) = biz.merchant_no("agreement_no")? {
        return Ok(AgreementKey::Number(no));
    }
    let external = biz
        .text(
            "external_agreement_no",
            agreement::EXTERNAL_AGREEMENT_NO_CHARS_MAX,
        )?
        .ok_or_else(|| {
            SandboxError::business(
                ACQ_INVALID_PARAMETER,
                "agreement_no or external_agreement_no is required",
            )
        })?;
    if !agreement::valid_external_agreement_no(&external) {
        return Err(SandboxError::business(
            ACQ_INVALID_PARAMETER,
            "external_agreement_no may hold only letters and digits",
        ));
    }
    Ok(AgreementKey::External {
        external_agreement_no: external,
        personal_product_code: biz
            .text("personal_product_code", 64)?
            .unwrap_or_else(|| agreement::PERSONAL_PRODUCT_WITHHOLDING.into()),
        sign_scene: biz
            .text("sign_scene", SIGN_SCENE_CHARS_MAX)?
            .unwrap_or_else(|| agreement::SIGN_SCENE_DEFAULT.into()),
    })
}

/// Longest `sign_scene` accepted (`INDUSTRY|DIGITAL_MEDIA` and the like).
const SIGN_SCENE_CHARS_MAX: usize = 64;

/// `alipay.user.agreement.query` by `agreement_no` or by the merchant's number. Ended
/// (unsigned) or unknown agreements, and other apps' agreements, answer
/// `USER_AGREEMENT_NOT_EXIST` as on the platform.
async fn agreement_query(
    state: &AppState,
    app_id: &str,
    biz: &BizContent,
) -> Result<Map<String, Value>, SandboxError> {
    let a = agreement::find(&state.store, app_id, &agreement_key(biz)?).await?;
    let mut m = success("10000", "Success");
    m.insert("agreement_no".into(), a.agreement_no.clone().into());
    if let Some(external) = &a.external_agreement_no {
        m.insert("external_agreement_no".into(), external.clone().into());
    }
    m.insert("principal_id".into(), a.user_id.clone().into());
    m.insert("pricipal_type".into(), "CARD".into());
    m.insert("alipay_logon_id".into(), mask_logon_id(&a.logon_id).into());
    m.insert("status".into(), a.status.as_str().into());
    m.insert("sign_time".into(), api_time(a.sign_time_ms).into());
    m.insert("valid_time".into(), api_time(a.sign_time_ms).into());
    m.insert(
        "invalid_time".into(),
        crate::notify::AGREEMENT_INVALID_TIME.into(),
    );
    m.insert(
        "personal_product_code".into(),
        a.personal_product_code.clone().into(),
    );
    m.insert("sign_scene".into(), a.sign_scene.clone().into());
    Ok(m)
}

/// Sub code of `alipay.user.validate` for an account the platform does not know. The platform's
/// own code for it was not verifiable from public material; this one is the sandbox's.
pub const USER_NOT_EXIST: &str = "isv.user-not-exist";

/// `alipay.user.validate` (`logon_id`, a top-level parameter): the account's user id and
/// whether it has passed the platform's real-name certification (`certified` = `"true"` /
/// `"false"`, text as on the platform). The sandbox keeps no names, so it never answers the
/// masked `real_name` the platform may add.
async fn user_validate(
    state: &AppState,
    logon_id: Option<&str>,
) -> Result<Map<String, Value>, SandboxError> {
    let logon_id = logon_id
        .filter(|l| l.chars().count() <= MERCHANT_NO_CHARS_MAX)
        .ok_or_else(|| {
            SandboxError::business(
                ACQ_INVALID_PARAMETER,
                "logon_id is required (at most 64 characters)",
            )
        })?;
    let user = state
        .store
        .user_by_logon_id(logon_id)
        .await?
        .ok_or_else(|| SandboxError::business(USER_NOT_EXIST, "no account has this logon id"))?;
    let mut m = success("10000", "Success");
    m.insert("alipay_user_id".into(), user.user_id.into());
    m.insert(
        "certified".into(),
        if user.real_name { "true" } else { "false" }.into(),
    );
    Ok(m)
}

/// `alipay.user.agreement.unsign`: the merchant ends an agreement of its own; its notify URL
/// gets `dut_user_unsign`.
async fn agreement_unsign(
    state: &AppState,
    app_id: &str,
    biz: &BizContent,
    now: i64,
) -> Result<Map<String, Value>, SandboxError> {
    agreement::set_status(
        &state.store,
        Some(app_id),
        &agreement_key(biz)?,
        AgreementStatus::Unsign,
        now,
    )
    .await?;
    Ok(success("10000", "Success"))
}

/// The channels a signing page may be opened from (`access_params.channel`).
const SIGN_CHANNELS: [&str; 3] = ["ALIPAYAPP", "QRCODE", "QRCODEORSMS"];

/// What a page-sign request asks the buyer to sign, after the checks `gateway.do` makes.
async fn page_sign_of_params(
    state: &AppState,
    params: &BTreeMap<String, String>,
) -> Result<PageSign, SandboxError> {
    let Authenticated { app_id, method } = authenticate(state, params).await?;
    if method != METHOD_PAGE_SIGN {
        return Err(SandboxError::invalid(
            "isv.invalid-method",
            format!("{method} is not a signing page; expected {METHOD_PAGE_SIGN}"),
        ));
    }
    let get = |name: &str| param(params, name);
    let biz = BizContent::parse(get("biz_content"))?;
    let AgreementKey::External {
        external_agreement_no,
        personal_product_code,
        sign_scene,
    } = agreement_key(&biz)?
    else {
        return Err(SandboxError::business(
            ACQ_INVALID_PARAMETER,
            "a signing page names the merchant's external_agreement_no, not an agreement_no",
        ));
    };
    if personal_product_code != agreement::PERSONAL_PRODUCT_WITHHOLDING {
        return Err(SandboxError::business(
            ACQ_INVALID_PARAMETER,
            format!(
                "personal_product_code {personal_product_code} is not supported; use {}",
                agreement::PERSONAL_PRODUCT_WITHHOLDING
            ),
        ));
    }
    let channel = match biz.0.get("access_params") {
        Some(Value::Object(p)) => p.get("channel").and_then(Value::as_str),
        _ => None,
    };
    if !channel.is_some_and(|c| SIGN_CHANNELS.contains(&c)) {
        return Err(SandboxError::business(
            ACQ_INVALID_PARAMETER,
            format!("access_params.channel must be one of {SIGN_CHANNELS:?}"),
        ));
    }
    Ok(PageSign {
        app_id: app_id.to_string(),
        external_agreement_no,
        personal_product_code,
        sign_scene,
        notify_url: checked_notify_url(get("notify_url"))?,
    })
}

/// The page-sign request in a link the buyer's wallet opened: a `…/gateway.do?…` URL, an
/// `alipays://platformapi/startapp?…&sign_params=…` link (the request's query string, encoded),
/// or the bare query string.
pub async fn page_sign_of_url(state: &AppState, url: &str) -> Result<PageSign, SandboxError> {
    let query = if url.starts_with("alipays://") {
        let after = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        form_urlencoded::parse(after.as_bytes())
            .find(|(k, _)| k == "sign_params")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| SandboxError::BadRequest("the link has no sign_params".into()))?
    } else {
        url.split_once('?').map_or(url, |(_, q)| q).to_string()
    };
    let params = parse_params(&query, b"")?;
    page_sign_of_params(state, &params).await
}

/// What the wallet shows for a signing page opened in a browser: the agreement it would sign,
/// or why the request is refused. Signing itself is the wallet's action
/// (`POST /sandbox/users/{user_id}/agreement-signings` with the link).
async fn sign_page(state: &AppState, params: &BTreeMap<String, String>) -> Response {
    let (status, body) = match page_sign_of_params(state, params).await {
        Ok(page) => (
            StatusCode::OK,
            format!(
                "<h1>Sign a withholding agreement</h1><p>App {} asks to deduct payments from \
                 your wallet ({}, scene {}), merchant agreement number {}.</p><p>Sandbox: the \
                 buyer signs with POST /sandbox/users/{{user_id}}/agreement-signings \
                 {{\"sign_url\": this link}}.</p>",
                html_escape(&page.app_id),
                html_escape(&page.personal_product_code),
                html_escape(&page.sign_scene),
                html_escape(&page.external_agreement_no),
            ),
        ),
        Err(e) => {
            let (code, _, sub_code) = e.open_api_code();
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "<h1>This signing link cannot be opened</h1><p>{code} {sub_code}: {}</p>",
                    html_escape(&e.public_message())
                ),
            )
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
        format!("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Sandbox wallet</title></head><body>{body}</body></html>"),
    )
        .into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `alipay.data.dataservice.bill.downloadurl.query` for `bill_type=trade`: the URL of the day's
/// trade bill. The sandbox serves today's bill too (so far); the platform only from the next day.
async fn bill_download_url(
    state: &AppState,
    app_id: &str,
    biz: &BizContent,
    now: i64,
) -> Result<Map<String, Value>, SandboxError> {
    let bill_type = biz.required("bill_type", 16)?;
    if bill_type != "trade" {
        return Err(SandboxError::business(
            ACQ_INVALID_PARAMETER,
            format!("bill_type {bill_type} is not supported; use trade"),
        ));
    }
    let date = biz.required("bill_date", 10)?;
    let day = crate::time::parse_date(&date).ok_or_else(|| {
        SandboxError::business(ACQ_INVALID_PARAMETER, "bill_date must be yyyy-MM-dd")
    })?;
    if crate::time::day_start_ms(day) > now {
        return Err(SandboxError::business(
            BILL_NOT_EXIST,
            "账单不存在 (the day has not begun)",
        ));
    }
    let mut m = success("10000", "Success");
    m.insert(
        "bill_download_url".into(),
        format!(
            "{}/sandbox/bills/{app_id}/{date}.csv?charset=GBK",
            state.base_url
        )
        .into(),
    );
    Ok(m)
}

async fn cancel(
    state: &AppState,
    app_id: &str,
    biz: &BizContent,
    now: i64,
) -> Result<Map<String, Value>, SandboxError> {
    let out = trade::cancel(&state.store, app_id, &biz.trade_key()?, now).await?;
    let mut m = success("10000", "Success");
    m.insert("trade_no".into(), out.trade.trade_no.clone().into());
    m.insert("out_trade_no".into(), out.trade.out_trade_no.clone().into());
    m.insert("retry_flag".into(), "N".into());
    m.insert("action".into(), out.action.into());
    if out.action == "refund" {
        if let Some(closed) = out.trade.closed_at_ms {
            m.insert("gmt_refund_pay".into(), api_time(closed).into());
        }
    }
    Ok(m)
}

async fn refund(
    state: &AppState,
    app_id: &str,
    biz: &BizContent,
    now: i64,
) -> Result<Map<String, Value>, SandboxError> {
    let req = RefundRequest {
        key: biz.trade_key()?,
        refund_fen: biz.amount_fen("refund_amount")?,
        out_request_no: biz.text("out_request_no", MERCHANT_NO_CHARS_MAX)?,
        reason: biz.text("refund_reason", SUBJECT_CHARS_MAX)?,
    };
    let out = trade::refund(&state.store, app_id, &req, now).await?;
    let mut m = success("10000", "Success");
    m.insert("trade_no".into(), out.trade.trade_no.clone().into());
    m.insert("out_trade_no".into(), out.trade.out_trade_no.clone().into());
    if let Some(logon) = &out.trade.buyer_logon_id {
        m.insert("buyer_logon_id".into(), mask_logon_id(logon).into());
    }
    if let Some(buyer) = &out.trade.buyer_user_id {
        m.insert("buyer_user_id".into(), buyer.clone().into());
    }
    m.insert(
        "fund_change".into(),
        if out.fund_change { "Y" } else { "N" }.into(),
    );
    m.insert(
        "refund_fee".into(),
        format_fen(out.refund.refunded_total_fen).into(),
    );
    m.insert(
        "send_back_fee".into(),
        format_fen(out.refund.refund_fen).into(),
    );
    m.insert(
        "out_request_no".into(),
        out.refund.out_request_no.clone().into(),
    );
    m.insert(
        "gmt_refund_pay".into(),
        api_time(out.refund.created_at_ms).into(),
    );
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves timeout_express is read the platform's way and bounded.
    #[test]
    fn timeout_express() {
        let now = parse_api_time("2026-01-02 23:00:00").unwrap();
        assert_eq!(parse_timeout_express("15m", now), Some(900_000));
        assert_eq!(parse_timeout_express("2h", now), Some(7_200_000));
        assert_eq!(parse_timeout_express("15d", now), Some(1_296_000_000));
        assert_eq!(parse_timeout_express("1c", now), Some(3_600_000));
        for bad in ["0m", "16d", "5s", "m", "-1m", "1.5h", ""] {
            assert_eq!(parse_timeout_express(bad, now), None, "{bad}");
        }
    }

    /// Proves query-string and body parameters merge, the body winning, with decoding.
    #[test]
    fn merges_query_and_body() {
        let p = parse_params("a=1&sign=x%2By", b"a=2&biz_content=%7B%7D&b=c+d").unwrap();
        assert_eq!(p["a"], "2");
        assert_eq!(p["sign"], "x+y");
        assert_eq!(p["biz_content"], "{}");
        assert_eq!(p["b"], "c d");
    }
}
