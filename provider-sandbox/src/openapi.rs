//! The open-API gateway, `POST /gateway.do`: the one endpoint the real platform exposes.
//!
//! It takes the common parameters from the query string and the form body (SDKs put them in
//! either), checks them in the platform's order, verifies the request's RSA2 signature against
//! the app's registered key, runs the method, and answers
//! `{"<method>_response": {...}, "sign": "..."}` signed with the platform key over the exact
//! JSON text of the `_response` value. Every answer, refusals included, is HTTP 200 and signed,
//! as on the real platform; unknown or missing methods answer under `error_response`.
//!
//! It does not speak GBK (charset must be UTF-8), the legacy `RSA` (SHA-1) sign type, AES
//! content encryption, or certificate mode.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::error::SandboxError;
use crate::money::{format_fen, parse_fen};
use crate::sign::{self, Verifier, SIGN_TYPE_RSA2};
use crate::time::{api_time, now_ms, parse_api_time};
use crate::trade::{self, PayOutcome, PayRequest, RefundRequest, TradeKey, ACQ_INVALID_PARAMETER};
use crate::AppState;

/// Most parameters a request may carry; the API defines about a dozen.
const PARAMS_MAX: usize = 64;

/// The methods this slice implements.
const METHODS: &[&str] = &[
    "alipay.trade.pay",
    "alipay.trade.query",
    "alipay.trade.cancel",
    "alipay.trade.refund",
];

pub async fn gateway_do(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = parse_params(query.as_deref().unwrap_or(""), &body);
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
    let deadline = Duration::from_millis(state.config.request_timeout_ms);
    let outcome = match params {
        Ok(params) => match tokio::time::timeout(deadline, handle(&state, &params)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(anyhow::anyhow!("request exceeded {deadline:?}").into()),
        },
        Err(e) => Err(e),
    };
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
    signed_response(&state, &response_key, &inner)
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

async fn handle(
    state: &AppState,
    params: &BTreeMap<String, String>,
) -> Result<Map<String, Value>, SandboxError> {
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
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
    let biz = BizContent::parse(get("biz_content"))?;
    let now = now_ms();
    match method {
        "alipay.trade.pay" => pay(state, app_id, &biz, now).await,
        "alipay.trade.query" => query(state, app_id, &biz).await,
        "alipay.trade.cancel" => cancel(state, app_id, &biz, now).await,
        "alipay.trade.refund" => refund(state, app_id, &biz, now).await,
        _ => unreachable!("checked against METHODS above"),
    }
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

    fn amount_fen(&self, name: &str) -> Result<i64, SandboxError> {
        let text = self.required(name, 20)?;
        parse_fen(&text).map_err(|e| SandboxError::business(ACQ_INVALID_PARAMETER, e))
    }

    fn trade_key(&self) -> Result<TradeKey, SandboxError> {
        let key = TradeKey {
            trade_no: self.text("trade_no", MERCHANT_NO_CHARS_MAX)?,
            out_trade_no: self.text("out_trade_no", MERCHANT_NO_CHARS_MAX)?,
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

/// The platform shows merchants a masked buyer account, e.g. `159******20`.
fn mask_logon_id(logon_id: &str) -> String {
    let chars: Vec<char> = logon_id.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
}

async fn pay(
    state: &AppState,
    app_id: &str,
    biz: &BizContent,
    now: i64,
) -> Result<Map<String, Value>, SandboxError> {
    let scene = biz.required("scene", 32)?;
    if scene != "bar_code" {
        return Err(SandboxError::business(
            ACQ_INVALID_PARAMETER,
            format!("scene {scene} is not supported; use bar_code"),
        ));
    }
    let req = PayRequest {
        out_trade_no: biz.required("out_trade_no", MERCHANT_NO_CHARS_MAX)?,
        auth_code: biz.required("auth_code", 32)?,
        total_fen: biz.amount_fen("total_amount")?,
        subject: biz.required("subject", SUBJECT_CHARS_MAX)?,
    };
    let outcome = trade::pay(&state.store, app_id, &req, now).await?;
    let (mut m, t) = match outcome {
        PayOutcome::Paid(t) => (success("10000", "Success"), t),
        PayOutcome::UserPaying(t) => (success("10003", "order success pay inprocess"), t),
    };
    m.insert("trade_no".into(), t.trade_no.clone().into());
    m.insert("out_trade_no".into(), t.out_trade_no.clone().into());
    m.insert(
        "buyer_logon_id".into(),
        mask_logon_id(&t.buyer_logon_id).into(),
    );
    m.insert("buyer_user_id".into(), t.buyer_user_id.clone().into());
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
    m.insert(
        "buyer_logon_id".into(),
        mask_logon_id(&t.buyer_logon_id).into(),
    );
    m.insert("buyer_user_id".into(), t.buyer_user_id.clone().into());
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
    m.insert(
        "buyer_logon_id".into(),
        mask_logon_id(&out.trade.buyer_logon_id).into(),
    );
    m.insert(
        "buyer_user_id".into(),
        out.trade.buyer_user_id.clone().into(),
    );
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

    /// Proves buyer accounts are masked the platform's way.
    #[test]
    fn masks_logon_ids() {
        assert_eq!(mask_logon_id("15901825620"), "159******20");
        assert_eq!(mask_logon_id("abc"), "***");
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
