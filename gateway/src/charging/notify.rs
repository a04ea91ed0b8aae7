//! The provider's verified async notifications: recorded once per `notify_id`, then applied by
//! the module the notification is about — a trade ([`super::tickets::on_trade_notice`]) or a
//! withholding agreement ([`super::wallets::on_notice`]).
//!
//! Only notifications whose signature verified reach this module (the notify endpoint checks
//! first, and writes nothing for the rest); anything about them that is malformed is refused
//! here before a row is written, too.

use std::collections::BTreeMap;

use super::Charging;
use crate::provider::{NoticeKind, ProviderClient};

/// Longest `notify_id` kept; the platform's are ~34 characters.
const NOTIFY_ID_CHARS_MAX: usize = 128;
/// Longest merchant or agreement number a notification may carry.
const NUMBER_CHARS_MAX: usize = 64;

/// How a verified notification was handled; `ack` is whether the provider may stop repeating
/// it (answer `success`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    pub applied: &'static str,
    pub ack: bool,
}

pub(super) const fn done(applied: &'static str) -> Handled {
    Handled { applied, ack: true }
}

pub(super) const fn again(applied: &'static str) -> Handled {
    Handled {
        applied,
        ack: false,
    }
}

/// `applied` values after which a repeated delivery needs no work.
fn is_final(applied: &str) -> bool {
    !matches!(applied, "received" | "retry")
}

/// Why a verified notification is still refused without being recorded, if it is.
pub fn malformed(params: &BTreeMap<String, String>) -> Option<&'static str> {
    let field_ok = |k: &str, max: usize| {
        params
            .get(k)
            .is_some_and(|v| !v.is_empty() && v.chars().count() <= max)
    };
    if !field_ok("notify_id", NOTIFY_ID_CHARS_MAX) {
        return Some("no notify_id");
    }
    let numbers_ok = match ProviderClient::notice_kind(params) {
        NoticeKind::Trade => field_ok("out_trade_no", NUMBER_CHARS_MAX),
        NoticeKind::Agreement(_) => {
            field_ok("agreement_no", NUMBER_CHARS_MAX)
                && params
                    .get("external_agreement_no")
                    .is_none_or(|v| v.chars().count() <= NUMBER_CHARS_MAX)
        }
        NoticeKind::Other => true,
    };
    (!numbers_ok).then_some("missing or oversized numbers")
}

/// Handles a notification whose signature has been verified: recorded once per `notify_id`,
/// cross-checked with a query, applied at most once.
pub async fn on_verified_notification(
    charging: &Charging,
    params: &BTreeMap<String, String>,
) -> anyhow::Result<Handled> {
    let store = &charging.store;
    let text = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let notify_id = text("notify_id");
    let kind = ProviderClient::notice_kind(params);
    // What the row is about: a trade's number and status, or an agreement's status.
    let (subject, status) = match &kind {
        NoticeKind::Agreement(_) => (None, text("status")),
        _ => (Some(text("out_trade_no")), text("trade_status")),
    };
    let now = crate::now_ms();
    let fresh = store
        .record_notification(notify_id, subject, Some(status), true, "received", now)
        .await?;
    if !fresh {
        let applied = store.notification_applied(notify_id).await?;
        if applied.as_deref().is_some_and(is_final) {
            tracing::info!(notify_id, "duplicate notification; already handled");
            metrics::counter!("gateway_provider_notifications_total", "outcome" => "duplicate")
                .increment(1);
            return Ok(done("duplicate"));
        }
    }
    let result = match &kind {
        NoticeKind::Trade => super::tickets::on_trade_notice(charging, params).await,
        NoticeKind::Agreement(notice) => super::wallets::on_notice(charging, notice).await,
        NoticeKind::Other => Ok(done("ignored_type")),
    };
    let handled = result.unwrap_or_else(|e| {
        tracing::warn!(notify_id, error = %e, "notification not applied; the provider will repeat it");
        again("retry")
    });
    store
        .set_notification_applied(notify_id, handled.applied)
        .await?;
    metrics::counter!("gateway_provider_notifications_total", "outcome" => handled.applied)
        .increment(1);
    tracing::info!(
        notify_id,
        subject = subject.unwrap_or("-"),
        status,
        applied = handled.applied,
        "provider notification"
    );
    Ok(handled)
}
