//! Riders' real names, as the provider knows them.
//!
//! The gateway keeps no names. It asks the provider whether the account behind the rider's
//! **bound wallet** has passed real-name certification (`alipay.user.validate`, by the
//! account's logon id, which the rider types: the agreement answers only a masked one). The
//! answer is believed only for that wallet: its user id must be the bound agreement's
//! principal, so a rider cannot borrow another account's certification, and a wallet bound
//! later (another account) makes the old answer void. What the provider said is kept with its
//! time (`rider_real_name`); a rider checks again after certifying in the wallet. An unknown
//! account and another person's get the same answer: the check is no oracle of which phone
//! numbers or e-mails have an account.

use super::Charging;
use crate::provider::{CallError, UserValidation};
use crate::store::charging::RealNameRow;

/// Longest logon id (phone or e-mail) sent to the provider.
pub const LOGON_ID_CHARS_MAX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum RealNameError {
    #[error("this gateway has no payment provider")]
    NoProvider,
    #[error("bind a wallet first: the real name checked is the bound wallet's")]
    NotBound,
    #[error("the wallet was bound without the provider's user id; bind it again")]
    WalletUserUnknown,
    /// The account is not the bound wallet's — or does not exist: one answer for both, so the
    /// check cannot be used to learn whether a phone number or e-mail has an account.
    #[error("this is not the account of the bound wallet")]
    NotYourWallet,
    #[error("the provider could not be asked: {0}")]
    Provider(#[from] CallError),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// Where a rider's real name stands for the wallet bound now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealName {
    /// Never checked, or checked for a wallet no longer bound.
    Unchecked,
    Checked {
        certified: bool,
        checked_at_ms: i64,
    },
}

impl RealName {
    pub fn certified(&self) -> bool {
        matches!(
            self,
            RealName::Checked {
                certified: true,
                ..
            }
        )
    }
}

/// The rider's real-name state for the wallet bound now.
pub async fn state(charging: &Charging, rider_id: i64) -> Result<RealName, sqlx::Error> {
    let Some(row) = charging.store.rider_real_name(rider_id).await? else {
        return Ok(RealName::Unchecked);
    };
    let wallet = charging.store.wallet_row(rider_id).await?;
    Ok(match wallet.and_then(|w| w.provider_user_id) {
        Some(user) if user == row.provider_user_id => RealName::Checked {
            certified: row.certified,
            checked_at_ms: row.checked_at_ms,
        },
        _ => RealName::Unchecked,
    })
}

/// Asks the provider about the account `logon_id` and, when it is the bound wallet's, records
/// what it said. Nothing is recorded otherwise.
pub async fn check(
    charging: &Charging,
    rider_id: i64,
    logon_id: &str,
) -> Result<RealName, RealNameError> {
    let provider = charging
        .provider
        .as_ref()
        .ok_or(RealNameError::NoProvider)?;
    let wallet = charging
        .store
        .wallet_row(rider_id)
        .await?
        .ok_or(RealNameError::NotBound)?;
    let bound_user = wallet
        .provider_user_id
        .ok_or(RealNameError::WalletUserUnknown)?;
    let (provider_user_id, certified) = match provider.validate_user(logon_id).await? {
        UserValidation::Known {
            provider_user_id,
            certified,
        } => (provider_user_id, certified),
        UserValidation::Unknown => {
            metrics::counter!("gateway_real_name_checks_total", "outcome" => "unknown_account")
                .increment(1);
            return Err(RealNameError::NotYourWallet);
        }
    };
    if provider_user_id != bound_user {
        tracing::warn!(
            rider_id,
            "real-name check of an account that is not the bound wallet's"
        );
        metrics::counter!("gateway_real_name_checks_total", "outcome" => "not_your_wallet")
            .increment(1);
        return Err(RealNameError::NotYourWallet);
    }
    let checked_at_ms = charging.clock.now_ms();
    charging
        .store
        .set_rider_real_name(
            rider_id,
            &RealNameRow {
                provider_user_id,
                certified,
                checked_at_ms,
            },
        )
        .await?;
    let outcome = if certified {
        "certified"
    } else {
        "not_certified"
    };
    metrics::counter!("gateway_real_name_checks_total", "outcome" => outcome).increment(1);
    tracing::info!(rider_id, certified, "real name checked");
    Ok(RealName::Checked {
        certified,
        checked_at_ms,
    })
}
