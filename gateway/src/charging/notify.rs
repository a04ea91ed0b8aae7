//! The provider's verified async notifications: recorded once per `notify_id`, then applied by
//! the module the notification is about — a trade ([`super::tickets::on_trade_notice`]) or a
//! withholding agreement ([`super::wallets::on_notice`]).
//!
//! Only notifications whose signature verified and whose numbers are well formed reach this
//! module, already typed (`provider::Notice`): the notify endpoint has the provider client read
//! them first, and writes nothing for the rest.

use super::{again, done, Charging, Handled};
use crate::provider::{About, Notice};

/// `applied` values after which a repeated delivery needs no work.
fn is_final(applied: &str) -> bool {
    !matches!(applied, "received" | "retry")
}

/// Handles a notification whose signature has been verified: recorded once per `notify_id`,
/// cross-checked with a query, applied at most once.
pub async fn on_verified_notification(
    charging: &Charging,
    notice: &Notice,
) -> anyhow::Result<Handled> {
    let store = &charging.store;
    let notify_id = notice.notify_id.as_str();
    // What the row is about: a trade's number and the status reported.
    let subject = notice.out_trade_no();
    let status = notice.reported_status.as_str();
    let now = charging.clock.now_ms();
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
    let result = match &notice.about {
        About::Trade(trade) => super::tickets::on_trade_notice(charging, trade).await,
        About::Agreement(agreement) => super::wallets::on_notice(charging, agreement).await,
        About::Other => Ok(done("ignored_type")),
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
