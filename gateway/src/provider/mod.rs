//! The provider client: the only code in the gateway that speaks the payment provider's wire
//! format (an Alipay-style open API: one `gateway.do` endpoint, RSA2-signed form requests,
//! RSA2-signed `<method>_response` answers and async notifications).
//!
//! Every call is signed with the merchant (app) key and every answer is verified against the
//! platform key before a single field of it is believed; an answer that fails verification is an
//! unknown outcome, never a result. Calls have a per-call timeout, share one connection pool, pass
//! a circuit breaker, and are counted per method and outcome
//! (`gateway_provider_calls_total{method,outcome}`, `gateway_provider_call_duration_seconds`).
//!
//! Outcomes are typed so callers cannot confuse "declined" (definitive: nothing was taken) with
//! "unknown" (timeout, 5xx, dropped answer, system error: money may or may not have moved, so the
//! caller must query, retry with the same trade number, or cancel).

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use turnpike_provider_wire::sign::{canonical_notification, canonical_request, Signer, Verifier};
use turnpike_provider_wire::split_answer;

mod notice;
pub use notice::{About, AgreementNotice, Notice, Refused, TradeNotice};

/// Where the provider is and who we are to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// The open-API endpoint, e.g. `https://openapi.alipay.com/gateway.do`; empty = no provider
    /// (charges are recorded and wait; nothing is captured).
    pub url: String,
    /// The merchant application's id at the provider (`app_id` of every request).
    pub app_id: String,
    /// The merchant's RSA private key (PEM), which signs every request.
    pub app_private_key_file: PathBuf,
    /// The platform's RSA public key (PEM), which every answer and notification must verify with.
    pub platform_public_key_file: PathBuf,
    /// Where the provider posts async notifications (our public listener's `/v1/provider/notify`).
    pub notify_url: String,
    /// The scene riders' withholding agreements are signed under (agreed with the provider).
    pub sign_scene: String,
    /// Deadline for one HTTP call; past it the outcome is unknown.
    pub call_timeout_ms: u64,
    /// Consecutive unknown outcomes that open the circuit breaker.
    pub breaker_failures_max: u32,
    /// How long an open breaker refuses calls before letting one through again.
    pub breaker_open_ms: u64,
    /// Idle connections kept per host, reused across calls.
    pub pool_idle_per_host_max: usize,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            url: String::new(),
            app_id: String::new(),
            app_private_key_file: PathBuf::from("provider-keys/app-private.pem"),
            platform_public_key_file: PathBuf::from("provider-keys/platform-public.pem"),
            notify_url: String::new(),
            sign_scene: "INDUSTRY|DEFAULT_SCENE".into(),
            call_timeout_ms: 3_000,
            breaker_failures_max: 20,
            breaker_open_ms: 2_000,
            pool_idle_per_host_max: 32,
        }
    }
}

/// What a call can end in when no verified business answer came back.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// Nothing was sent: the breaker is open. Safe to retry later with the same trade number.
    #[error("provider circuit breaker open")]
    BreakerOpen,
    /// Sent, but no trustworthy answer: timeout, connection error, HTTP 5xx, dropped answer,
    /// platform system error. Money may have moved.
    #[error("provider outcome unknown: {0}")]
    Unknown(String),
    /// An answer came back but its signature does not verify: treated as unknown, and logged.
    #[error("provider answer failed signature verification")]
    Forged,
}

/// A verified business answer: the platform's code and the fields of `<method>_response`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: String,
    pub sub_code: Option<String>,
    pub sub_msg: Option<String>,
    pub fields: Map<String, Value>,
}

impl Reply {
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// A platform-level "try again" (20000, or the ACQ.SYSTEM_ERROR business code): unknown.
    fn is_system_error(&self) -> bool {
        self.code == "20000" || self.sub_code.as_deref() == Some("ACQ.SYSTEM_ERROR")
    }
}

/// The state of a trade as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeStatus {
    WaitBuyerPay,
    Success,
    Finished,
    Closed,
}

impl TradeStatus {
    pub(crate) fn parse(s: &str) -> Option<TradeStatus> {
        Some(match s {
            "WAIT_BUYER_PAY" => TradeStatus::WaitBuyerPay,
            "TRADE_SUCCESS" => TradeStatus::Success,
            "TRADE_FINISHED" => TradeStatus::Finished,
            "TRADE_CLOSED" => TradeStatus::Closed,
            _ => return None,
        })
    }

    pub fn is_paid(self) -> bool {
        matches!(self, TradeStatus::Success | TradeStatus::Finished)
    }
}

/// Outcome of a pay (barcode or agreement deduction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayOutcome {
    Paid {
        trade_no: String,
        amount_fen: i64,
    },
    /// The buyer must confirm in the wallet (10003); poll with query.
    UserPaying {
        trade_no: Option<String>,
    },
    /// Definitively not paid (40004 with a business reason).
    Declined {
        sub_code: String,
        message: String,
    },
}

impl PayOutcome {
    /// A trade the provider closed unpaid, as the decline of its pay.
    pub fn closed() -> PayOutcome {
        PayOutcome::Declined {
            sub_code: "TRADE_CLOSED".into(),
            message: "the trade was closed".into(),
        }
    }
}

/// Outcome of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryOutcome {
    Trade {
        trade_no: String,
        status: TradeStatus,
        amount_fen: i64,
    },
    NotFound,
}

/// Outcome of a cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// `close`: nothing had been paid; `refund`: a payment was reversed in full.
    Cancelled { reversed: bool },
    /// Nothing to cancel under this trade number.
    NotFound,
    /// The provider refused (e.g. a trade that can no longer be cancelled).
    Refused { sub_code: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    Refunded { refunded_total_fen: i64 },
    Refused { sub_code: String, message: String },
}

/// How the gateway names a withholding agreement to the provider: the provider's number, or
/// the gateway's own number it started the signing with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgreementRef<'a> {
    Number(&'a str),
    External(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgreementOutcome {
    Active {
        agreement_no: String,
        external_agreement_no: Option<String>,
        provider_user_id: Option<String>,
    },
    Inactive {
        status: String,
    },
    /// Unknown, ended, or another merchant's.
    NotFound,
}

/// Outcome of ending an agreement at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsignOutcome {
    Ended,
    /// Nothing in force under that number (already ended, e.g. by the rider in the wallet).
    NotFound,
}

/// What `alipay.user.validate` says of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserValidation {
    Known {
        provider_user_id: String,
        /// Passed the provider's real-name certification.
        certified: bool,
    },
    /// No account has that logon id.
    Unknown,
}

/// The personal product of a withholding agreement.
pub const PERSONAL_PRODUCT_WITHHOLDING: &str = "GENERAL_WITHHOLDING_P";
/// The answer for an agreement that does not exist (unknown, ended or another merchant's).
const USER_AGREEMENT_NOT_EXIST: &str = "USER_AGREEMENT_NOT_EXIST";
/// The answer for an account the provider does not know (the sandbox's code; see its README).
const USER_NOT_EXIST: &str = "isv.user-not-exist";
/// The page method whose signed link the rider opens in the wallet to sign an agreement.
const METHOD_PAGE_SIGN: &str = "alipay.user.agreement.page.sign";

struct Breaker {
    failures: AtomicU32,
    open_until_ms: AtomicI64,
    failures_max: u32,
    open_ms: i64,
}

impl Breaker {
    fn allow(&self, now_ms: i64) -> bool {
        now_ms >= self.open_until_ms.load(Ordering::Relaxed)
    }

    fn record(&self, ok: bool, now_ms: i64) {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            return;
        }
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.failures_max {
            self.open_until_ms
                .store(now_ms + self.open_ms, Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
            tracing::warn!(
                failures = n,
                open_ms = self.open_ms,
                "provider breaker opened"
            );
        }
    }
}

/// A signed, verified, bounded client of the provider's open API. Cheap to clone.
#[derive(Clone)]
pub struct ProviderClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    url: String,
    app_id: String,
    notify_url: String,
    sign_scene: String,
    signer: Signer,
    platform: Verifier,
    breaker: Breaker,
    call_timeout: Duration,
}

/// Longest answer body read from the provider; real answers are a few kilobytes.
const ANSWER_BYTES_MAX: usize = 256 * 1024;

impl ProviderClient {
    pub fn new(config: &ProviderConfig) -> anyhow::Result<ProviderClient> {
        let signer = Signer::from_file(&config.app_private_key_file).with_context(|| {
            format!(
                "loading the app private key {}",
                config.app_private_key_file.display()
            )
        })?;
        let platform =
            Verifier::from_file(&config.platform_public_key_file).with_context(|| {
                format!(
                    "loading the platform public key {}",
                    config.platform_public_key_file.display()
                )
            })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.call_timeout_ms))
            .pool_max_idle_per_host(config.pool_idle_per_host_max)
            .build()
            .context("building the provider HTTP client")?;
        Ok(ProviderClient {
            inner: Arc::new(Inner {
                http,
                url: config.url.clone(),
                app_id: config.app_id.clone(),
                notify_url: config.notify_url.clone(),
                sign_scene: config.sign_scene.clone(),
                signer,
                platform,
                breaker: Breaker {
                    failures: AtomicU32::new(0),
                    open_until_ms: AtomicI64::new(0),
                    failures_max: config.breaker_failures_max.max(1),
                    open_ms: config.breaker_open_ms as i64,
                },
                call_timeout: Duration::from_millis(config.call_timeout_ms),
            }),
        })
    }

    /// The per-call deadline (callers budget around it).
    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }

    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    /// One signed call; the answer is verified before anything in it is read.
    pub async fn call(&self, method: &str, biz: &Value) -> Result<Reply, CallError> {
        self.call_with(method, Some(biz), &[]).await
    }

    /// A signed call with top-level business parameters (`extra`) besides, or instead of,
    /// `biz_content`: some of the platform's older methods take their fields so.
    pub async fn call_with(
        &self,
        method: &str,
        biz: Option<&Value>,
        extra: &[(&'static str, &str)],
    ) -> Result<Reply, CallError> {
        let started = Instant::now();
        let now = crate::clock::system_now_ms();
        if !self.inner.breaker.allow(now) {
            record(method, "breaker_open", started);
            return Err(CallError::BreakerOpen);
        }
        let result = self.call_once(method, biz, extra).await;
        let outcome = match &result {
            Ok(r) if r.is_system_error() => "unknown",
            Ok(r) if r.code == "10000" => "success",
            Ok(_) => "refused",
            Err(CallError::Forged) => "forged",
            Err(_) => "unknown",
        };
        record(method, outcome, started);
        let unknown = matches!(outcome, "unknown" | "forged");
        self.inner
            .breaker
            .record(!unknown, crate::clock::system_now_ms());
        match result {
            Ok(r) if r.is_system_error() => Err(CallError::Unknown(format!(
                "system error {} {}",
                r.code,
                r.sub_code.unwrap_or_default()
            ))),
            other => other,
        }
    }

    /// A request's parameters, common ones first (then `biz_content` and any top-level
    /// business parameters), signed over the canonical form.
    fn signed_params(
        &self,
        method: &str,
        biz: Option<&Value>,
        extra: &[(&'static str, &str)],
    ) -> Vec<(&'static str, String)> {
        let inner = &self.inner;
        let mut params: Vec<(&'static str, String)> = vec![
            ("app_id", inner.app_id.clone()),
            ("method", method.to_string()),
            ("format", "JSON".into()),
            ("charset", "utf-8".into()),
            ("sign_type", "RSA2".into()),
            (
                "timestamp",
                shanghai_timestamp(crate::clock::system_now_ms()),
            ),
            ("version", "1.0".into()),
        ];
        if let Some(biz) = biz {
            params.push(("biz_content", biz.to_string()));
        }
        params.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        if !inner.notify_url.is_empty() {
            params.push(("notify_url", inner.notify_url.clone()));
        }
        let sign = inner.signer.sign(&canonical_request(
            params.iter().map(|(k, v)| (*k, v.as_str())),
        ));
        params.push(("sign", sign));
        params
    }

    async fn call_once(
        &self,
        method: &str,
        biz: Option<&Value>,
        extra: &[(&'static str, &str)],
    ) -> Result<Reply, CallError> {
        let inner = &self.inner;
        let params = self.signed_params(method, biz, extra);
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let response = inner
            .http
            .post(&inner.url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| CallError::Unknown(format!("sending {method}: {e}")))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Unknown(format!("reading the {method} answer: {e}")))?;
        if !status.is_success() {
            return Err(CallError::Unknown(format!(
                "{method} answered HTTP {status}"
            )));
        }
        if bytes.len() > ANSWER_BYTES_MAX {
            return Err(CallError::Unknown(format!("{method} answer too long")));
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| CallError::Unknown(format!("{method} answer is not UTF-8")))?;
        let answer = split_answer(method, text)
            .map_err(|e| CallError::Unknown(format!("{method} answer malformed: {e}")))?;
        let verified = answer
            .sign
            .as_deref()
            .is_some_and(|s| inner.platform.verify(&answer.inner_text, s));
        if !verified {
            tracing::error!(
                method,
                "provider answer failed signature verification; ignored"
            );
            return Err(CallError::Forged);
        }
        let fields: Map<String, Value> = serde_json::from_str(&answer.inner_text)
            .map_err(|e| CallError::Unknown(format!("{method} answer body: {e}")))?;
        let text_of = |k: &str| fields.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(Reply {
            code: text_of("code").unwrap_or_default(),
            sub_code: text_of("sub_code"),
            sub_msg: text_of("sub_msg"),
            fields,
        })
    }

    /// Barcode pay: the buyer's one-time payment code scanned at a booth.
    pub async fn pay_barcode(
        &self,
        out_trade_no: &str,
        auth_code: &str,
        amount_fen: i64,
        subject: &str,
        terminal_id: &str,
    ) -> Result<PayOutcome, CallError> {
        let biz = json!({
            "out_trade_no": out_trade_no,
            "scene": "bar_code",
            "auth_code": auth_code,
            "product_code": "FACE_TO_FACE_PAYMENT",
            "total_amount": yuan(amount_fen),
            "subject": subject,
            "terminal_id": terminal_id,
        });
        pay_outcome(self.call("alipay.trade.pay", &biz).await?)
    }

    /// Agreement deduction (withholding): post-pay capture of a closed journey.
    pub async fn deduct(
        &self,
        out_trade_no: &str,
        agreement_no: &str,
        amount_fen: i64,
        subject: &str,
    ) -> Result<PayOutcome, CallError> {
        let biz = json!({
            "out_trade_no": out_trade_no,
            "product_code": "GENERAL_WITHHOLDING",
            "agreement_params": { "agreement_no": agreement_no },
            "total_amount": yuan(amount_fen),
            "subject": subject,
        });
        pay_outcome(self.call("alipay.trade.pay", &biz).await?)
    }

    pub async fn query(&self, out_trade_no: &str) -> Result<QueryOutcome, CallError> {
        let reply = self
            .call(
                "alipay.trade.query",
                &json!({ "out_trade_no": out_trade_no }),
            )
            .await?;
        if reply.code != "10000" {
            return match reply.sub_code.as_deref() {
                Some("ACQ.TRADE_NOT_EXIST") => Ok(QueryOutcome::NotFound),
                other => Err(CallError::Unknown(format!("query refused: {other:?}"))),
            };
        }
        let status = reply
            .text("trade_status")
            .and_then(TradeStatus::parse)
            .ok_or_else(|| CallError::Unknown("query answer without trade_status".into()))?;
        Ok(QueryOutcome::Trade {
            trade_no: reply.text("trade_no").unwrap_or_default().to_string(),
            status,
            amount_fen: fen_field(&reply, "total_amount")?,
        })
    }

    pub async fn cancel(&self, out_trade_no: &str) -> Result<CancelOutcome, CallError> {
        let reply = self
            .call(
                "alipay.trade.cancel",
                &json!({ "out_trade_no": out_trade_no }),
            )
            .await?;
        if reply.code == "10000" {
            return Ok(CancelOutcome::Cancelled {
                reversed: reply.text("action") == Some("refund"),
            });
        }
        match reply.sub_code.as_deref() {
            Some("ACQ.TRADE_NOT_EXIST") => Ok(CancelOutcome::NotFound),
            Some(sub) => Ok(CancelOutcome::Refused {
                sub_code: sub.to_string(),
            }),
            None => Err(CallError::Unknown(format!(
                "cancel answered {}",
                reply.code
            ))),
        }
    }

    /// A (partial) refund; idempotent per `out_request_no`.
    pub async fn refund(
        &self,
        out_trade_no: &str,
        out_request_no: &str,
        amount_fen: i64,
        reason: &str,
    ) -> Result<RefundOutcome, CallError> {
        let biz = json!({
            "out_trade_no": out_trade_no,
            "out_request_no": out_request_no,
            "refund_amount": yuan(amount_fen),
            "refund_reason": reason,
        });
        let reply = self.call("alipay.trade.refund", &biz).await?;
        if reply.code == "10000" {
            return Ok(RefundOutcome::Refunded {
                refunded_total_fen: fen_field(&reply, "refund_fee")?,
            });
        }
        Ok(RefundOutcome::Refused {
            sub_code: reply.sub_code.unwrap_or_default(),
            message: reply.sub_msg.unwrap_or_default(),
        })
    }

    /// Pre-creates a merchant-presented QR order; returns the payload to render as a QR code.
    pub async fn precreate(
        &self,
        out_trade_no: &str,
        amount_fen: i64,
        subject: &str,
        terminal_id: Option<&str>,
        timeout_minutes: u32,
    ) -> Result<Result<String, (String, String)>, CallError> {
        let mut biz = json!({
            "out_trade_no": out_trade_no,
            "total_amount": yuan(amount_fen),
            "subject": subject,
            "timeout_express": format!("{timeout_minutes}m"),
        });
        if let Some(terminal_id) = terminal_id {
            biz["terminal_id"] = terminal_id.into();
        }
        let reply = self.call("alipay.trade.precreate", &biz).await?;
        if reply.code == "10000" {
            return reply
                .text("qr_code")
                .map(|q| Ok(q.to_string()))
                .ok_or_else(|| CallError::Unknown("precreate answer without qr_code".into()));
        }
        Ok(Err((
            reply.sub_code.unwrap_or_default(),
            reply.sub_msg.unwrap_or_default(),
        )))
    }

    /// The signed `alipay.user.agreement.page.sign` link a rider opens in the wallet (as a link
    /// or a QR code) to sign a withholding agreement under the gateway's own number
    /// `external_agreement_no`. Nothing is sent: the wallet opens it.
    pub fn page_sign_url(&self, external_agreement_no: &str) -> String {
        let biz = json!({
            "personal_product_code": PERSONAL_PRODUCT_WITHHOLDING,
            "product_code": "GENERAL_WITHHOLDING",
            "sign_scene": self.inner.sign_scene,
            "external_agreement_no": external_agreement_no,
            "access_params": { "channel": "ALIPAYAPP" },
        });
        let params = self.signed_params(METHOD_PAGE_SIGN, Some(&biz), &[]);
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        format!("{}?{query}", self.inner.url)
    }

    /// The agreement's biz_content key: the provider's number, or ours with product and scene.
    fn agreement_key(&self, which: AgreementRef<'_>) -> Value {
        match which {
            AgreementRef::Number(no) => json!({ "agreement_no": no }),
            AgreementRef::External(external) => json!({
                "external_agreement_no": external,
                "personal_product_code": PERSONAL_PRODUCT_WITHHOLDING,
                "sign_scene": self.inner.sign_scene,
            }),
        }
    }

    pub async fn agreement(&self, which: AgreementRef<'_>) -> Result<AgreementOutcome, CallError> {
        let reply = self
            .call("alipay.user.agreement.query", &self.agreement_key(which))
            .await?;
        if reply.code != "10000" {
            return match reply.sub_code.as_deref() {
                Some(USER_AGREEMENT_NOT_EXIST) => Ok(AgreementOutcome::NotFound),
                other => Err(CallError::Unknown(format!(
                    "agreement query refused: {} {other:?}",
                    reply.code
                ))),
            };
        }
        let status = reply.text("status").unwrap_or_default();
        if status != "NORMAL" {
            return Ok(AgreementOutcome::Inactive {
                status: status.to_string(),
            });
        }
        let agreement_no = reply
            .text("agreement_no")
            .filter(|no| !no.is_empty())
            .ok_or_else(|| CallError::Unknown("agreement answer without agreement_no".into()))?;
        Ok(AgreementOutcome::Active {
            agreement_no: agreement_no.to_string(),
            external_agreement_no: reply.text("external_agreement_no").map(str::to_string),
            provider_user_id: reply.text("principal_id").map(str::to_string),
        })
    }

    /// Who an account is and whether it passed the provider's real-name certification
    /// (`alipay.user.validate`, by the account's logon id, a top-level parameter).
    pub async fn validate_user(&self, logon_id: &str) -> Result<UserValidation, CallError> {
        let reply = self
            .call_with("alipay.user.validate", None, &[("logon_id", logon_id)])
            .await?;
        if reply.code != "10000" {
            return match reply.sub_code.as_deref() {
                Some(USER_NOT_EXIST) => Ok(UserValidation::Unknown),
                other => Err(CallError::Unknown(format!(
                    "user validate refused: {} {other:?}",
                    reply.code
                ))),
            };
        }
        let user_id = reply
            .text("alipay_user_id")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| CallError::Unknown("user validate answer without a user id".into()))?;
        let certified = match reply.text("certified") {
            Some("true" | "T") => true,
            Some("false" | "F") => false,
            other => {
                return Err(CallError::Unknown(format!(
                    "user validate answer's certified is {other:?}"
                )))
            }
        };
        Ok(UserValidation::Known {
            provider_user_id: user_id.to_string(),
            certified,
        })
    }

    /// Ends an agreement at the provider (`alipay.user.agreement.unsign`).
    pub async fn unsign(&self, agreement_no: &str) -> Result<UnsignOutcome, CallError> {
        let reply = self
            .call(
                "alipay.user.agreement.unsign",
                &self.agreement_key(AgreementRef::Number(agreement_no)),
            )
            .await?;
        match (reply.code.as_str(), reply.sub_code.as_deref()) {
            ("10000", _) => Ok(UnsignOutcome::Ended),
            (_, Some(USER_AGREEMENT_NOT_EXIST)) => Ok(UnsignOutcome::NotFound),
            (code, sub) => Err(CallError::Unknown(format!(
                "agreement unsign refused: {code} {sub:?}"
            ))),
        }
    }
}

fn record(method: &str, outcome: &'static str, started: Instant) {
    metrics::counter!("gateway_provider_calls_total", "method" => method.to_string(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("gateway_provider_call_duration_seconds", "method" => method.to_string())
        .record(started.elapsed().as_secs_f64());
}

fn pay_outcome(reply: Reply) -> Result<PayOutcome, CallError> {
    match reply.code.as_str() {
        "10000" => Ok(PayOutcome::Paid {
            trade_no: reply.text("trade_no").unwrap_or_default().to_string(),
            amount_fen: fen_field(&reply, "total_amount")?,
        }),
        "10003" => Ok(PayOutcome::UserPaying {
            trade_no: reply.text("trade_no").map(str::to_string),
        }),
        "40004" => Ok(PayOutcome::Declined {
            sub_code: reply.sub_code.clone().unwrap_or_default(),
            message: reply.sub_msg.clone().unwrap_or_default(),
        }),
        // 40001/40002/40006: our request was wrong or our app is misconfigured. Nothing was
        // taken; surface it as a decline with the platform's code so operators see it.
        other => Ok(PayOutcome::Declined {
            sub_code: reply.sub_code.clone().unwrap_or_else(|| other.to_string()),
            message: reply.sub_msg.clone().unwrap_or_default(),
        }),
    }
}

fn fen_field(reply: &Reply, name: &str) -> Result<i64, CallError> {
    let text = reply
        .text(name)
        .ok_or_else(|| CallError::Unknown(format!("answer without {name}")))?;
    parse_yuan(text).ok_or_else(|| CallError::Unknown(format!("{name} is not an amount: {text}")))
}

/// Fen as the API's yuan string: 1250 → "12.50".
pub use turnpike_provider_wire::amount::format_yuan as yuan;

/// The API's yuan string to fen; at most two decimals.
pub fn parse_yuan(text: &str) -> Option<i64> {
    turnpike_provider_wire::amount::parse_yuan(text).ok()
}

/// The API's timestamp: `yyyy-MM-dd HH:mm:ss` in Asia/Shanghai.
fn shanghai_timestamp(now_ms: i64) -> String {
    let ts = jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap_or(jiff::tz::TimeZone::UTC);
    ts.to_zoned(zone).strftime("%Y-%m-%d %H:%M:%S").to_string()
}
