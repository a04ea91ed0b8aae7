//! The provider's async notifications, read into types: a notification is verified (signature
//! and app id) and checked for its numbers here, and what the charging modules get is a
//! [`Notice`] — never the provider's form fields.

use std::collections::BTreeMap;

use super::{canonical_notification, ProviderClient, TradeStatus};

/// Longest `notify_id` kept; the platform's are ~34 characters.
const NOTIFY_ID_CHARS_MAX: usize = 128;
/// Longest merchant or agreement number a notification may carry.
const NUMBER_CHARS_MAX: usize = 64;

/// A verified notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The provider's id of this notification; a repeated delivery carries the same one.
    pub notify_id: String,
    pub about: About,
    /// The status the provider reported (a trade's or an agreement's), as it spelled it, for
    /// the notification's record.
    pub reported_status: String,
}

/// What a verified notification is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum About {
    /// `trade_status_sync`: a trade changed state.
    Trade(TradeNotice),
    /// `dut_user_sign` / `dut_user_unsign`.
    Agreement(AgreementNotice),
    /// A type we do not act on, or an agreement notice without its numbers.
    Other,
}

/// A trade's new state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeNotice {
    pub out_trade_no: String,
    /// `None`: a state this client does not know.
    pub status: Option<TradeStatus>,
}

/// A verified agreement notification: the rider signed (`dut_user_sign`) or an agreement
/// ended (`dut_user_unsign`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementNotice {
    pub ended: bool,
    pub agreement_no: String,
    /// The gateway's own number, when the agreement was signed through its signing flow.
    pub external_agreement_no: Option<String>,
}

/// Why a notification is refused before anything of it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The signature does not verify, or it is addressed to another app.
    Unverified,
    /// Verified, but without its numbers or with oversized ones.
    Malformed(&'static str),
}

impl Notice {
    /// The merchant trade number a trade notification is about.
    pub fn out_trade_no(&self) -> Option<&str> {
        match &self.about {
            About::Trade(t) => Some(&t.out_trade_no),
            About::Agreement(_) | About::Other => None,
        }
    }
}

impl ProviderClient {
    /// Reads an async notification's form parameters: its signature (over all parameters but
    /// `sign` and `sign_type`) and app id verified first, then its numbers checked.
    pub fn read_notice(&self, params: &BTreeMap<String, String>) -> Result<Notice, Refused> {
        if !self.verify_notification(params) {
            return Err(Refused::Unverified);
        }
        read_verified(params)
    }

    /// Verifies an async notification's signature and that it is addressed to this app.
    fn verify_notification(&self, params: &BTreeMap<String, String>) -> bool {
        let Some(sign) = params.get("sign") else {
            return false;
        };
        let content = canonical_notification(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.inner.platform.verify(&content, sign)
            && params.get("app_id").map(String::as_str) == Some(self.inner.app_id.as_str())
    }
}

/// A verified notification's fields, typed; numbers must be present and at most
/// [`NUMBER_CHARS_MAX`] characters.
fn read_verified(params: &BTreeMap<String, String>) -> Result<Notice, Refused> {
    let text = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let number = |k: &str| {
        let v = text(k);
        (!v.is_empty() && v.chars().count() <= NUMBER_CHARS_MAX).then(|| v.to_string())
    };
    let notify_id = text("notify_id");
    if notify_id.is_empty() || notify_id.chars().count() > NOTIFY_ID_CHARS_MAX {
        return Err(Refused::Malformed("no notify_id"));
    }
    let numbers = Refused::Malformed("missing or oversized numbers");
    let (about, reported_status) = match text("notify_type") {
        "trade_status_sync" => {
            let out_trade_no = number("out_trade_no").ok_or(numbers)?;
            let reported = text("trade_status");
            let status = TradeStatus::parse(reported);
            (
                About::Trade(TradeNotice {
                    out_trade_no,
                    status,
                }),
                reported,
            )
        }
        kind @ ("dut_user_sign" | "dut_user_unsign") if !text("agreement_no").is_empty() => {
            let agreement_no = number("agreement_no").ok_or(numbers)?;
            let external = params.get("external_agreement_no");
            if external.is_some_and(|v| v.chars().count() > NUMBER_CHARS_MAX) {
                return Err(numbers);
            }
            let notice = AgreementNotice {
                ended: kind == "dut_user_unsign",
                agreement_no,
                external_agreement_no: external.filter(|v| !v.is_empty()).cloned(),
            };
            (About::Agreement(notice), text("status"))
        }
        _ => (About::Other, text("trade_status")),
    };
    Ok(Notice {
        notify_id: notify_id.to_string(),
        about,
        reported_status: reported_status.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Proves trade, agreement and other notifications read into their types, and that missing
    /// or oversized numbers are refused.
    #[test]
    fn reads_each_kind() {
        let trade = read_verified(&params(&[
            ("notify_id", "n1"),
            ("notify_type", "trade_status_sync"),
            ("out_trade_no", "M1_1"),
            ("trade_status", "TRADE_SUCCESS"),
        ]))
        .unwrap();
        assert_eq!(
            trade.about,
            About::Trade(TradeNotice {
                out_trade_no: "M1_1".into(),
                status: Some(TradeStatus::Success),
            })
        );
        assert_eq!(trade.reported_status, "TRADE_SUCCESS");
        let signed = read_verified(&params(&[
            ("notify_id", "n2"),
            ("notify_type", "dut_user_unsign"),
            ("agreement_no", "A1"),
            ("status", "UNSIGN"),
        ]))
        .unwrap();
        assert_eq!(
            signed.about,
            About::Agreement(AgreementNotice {
                ended: true,
                agreement_no: "A1".into(),
                external_agreement_no: None,
            })
        );
        let other = read_verified(&params(&[("notify_id", "n3"), ("notify_type", "x")])).unwrap();
        assert_eq!(other.about, About::Other);
        let long = "9".repeat(NUMBER_CHARS_MAX + 1);
        for bad in [
            params(&[("notify_type", "trade_status_sync"), ("out_trade_no", "M1")]),
            params(&[("notify_id", "n"), ("notify_type", "trade_status_sync")]),
            params(&[
                ("notify_id", "n"),
                ("notify_type", "trade_status_sync"),
                ("out_trade_no", &long),
            ]),
            params(&[
                ("notify_id", "n"),
                ("notify_type", "dut_user_sign"),
                ("agreement_no", "A1"),
                ("external_agreement_no", &long),
            ]),
        ] {
            assert!(
                matches!(read_verified(&bad), Err(Refused::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
