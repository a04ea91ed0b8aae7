//! What both ends of the Alipay-style open API must agree on byte for byte: the canonical
//! parameter strings, RSA2 signatures, how a signed answer is split into the exact text that
//! was signed, how amounts are written, and the service fee's rule (payments and refunds).
//!
//! The provider sandbox (playing the platform) and the gateway's provider client (playing the
//! merchant) both use it. It does no network I/O and knows nothing about trades.

pub mod amount;
pub mod fee;
pub mod sign;

/// The column headers of the platform's daily trade bill ("业务明细"), in order: what the sandbox
/// writes and what settlement reads.
pub const BILL_COLUMNS: [&str; 25] = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
];

use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The platform's answer key for a method: `alipay.trade.pay` → `alipay_trade_pay_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// An answer body split into the exact JSON text of its `<method>_response` (or
/// `error_response`) value and its `sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedAnswer {
    /// The exact bytes the platform signed, as received.
    pub inner_text: String,
    /// Absent on some platform-level refusals; a merchant treats an unsigned answer as forged.
    pub sign: Option<String>,
}

/// Why an answer body could not be split.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("answer is not a JSON object: {0}")]
    NotJson(String),
    #[error("answer has neither {0} nor error_response")]
    MissingResponse(String),
}

/// Splits `{"<method>_response": {...}, "sign": "..."}` keeping the inner value's exact text
/// (whitespace and key order included), which is what the signature covers.
pub fn split_answer(method: &str, body: &str) -> Result<SignedAnswer, AnswerError> {
    let map: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(body).map_err(|e| AnswerError::NotJson(e.to_string()))?;
    let key = response_key(method);
    let inner = map
        .get(&key)
        .or_else(|| map.get("error_response"))
        .ok_or_else(|| AnswerError::MissingResponse(key.clone()))?;
    let sign = match map.get("sign") {
        Some(raw) => serde_json::from_str::<String>(raw.get()).ok(),
        None => None,
    };
    Ok(SignedAnswer {
        inner_text: inner.get().to_string(),
        sign,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the split keeps the inner text byte for byte and finds the signature.
    #[test]
    fn split_keeps_exact_text() {
        let body =
            r#"{"alipay_trade_pay_response":{"code":"10000", "msg":"Success"},"sign":"abc"}"#;
        let a = split_answer("alipay.trade.pay", body).unwrap();
        assert_eq!(a.inner_text, r#"{"code":"10000", "msg":"Success"}"#);
        assert_eq!(a.sign.as_deref(), Some("abc"));
    }

    /// Proves platform-level refusals under `error_response` are found, and junk is refused.
    #[test]
    fn split_error_response_and_junk() {
        let body = r#"{"error_response":{"code":"40002"},"sign":"s"}"#;
        assert_eq!(
            split_answer("alipay.trade.query", body).unwrap().inner_text,
            r#"{"code":"40002"}"#
        );
        assert!(matches!(
            split_answer("alipay.trade.query", "<html>"),
            Err(AnswerError::NotJson(_))
        ));
        assert!(matches!(
            split_answer("alipay.trade.query", r#"{"x":1}"#),
            Err(AnswerError::MissingResponse(_))
        ));
    }
}
