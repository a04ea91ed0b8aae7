//! Riders' wallets: binding a withholding agreement the provider's way.
//!
//! A rider never names an agreement. The gateway starts a signing for the rider
//! ([`start_signing`]) under a number of its own (`external_agreement_no`, random and
//! unguessable, remembered as that rider's) and hands back the provider's signed
//! `alipay.user.agreement.page.sign` link; the rider opens it in the wallet and signs. The
//! gateway then binds only the agreement the provider confirms *for that number* — told by the
//! signed `dut_user_sign` notification and always cross-checked with
//! `alipay.user.agreement.query` by that number ([`confirm`]), or found by the same query when
//! the rider looks at the wallet ([`state`]). `rider_wallets` holds one agreement per rider and
//! one rider per agreement (both constraints).
//!
//! Unbinding ([`unbind`]) ends the agreement at the provider first, and is refused while the
//! rider still owes money (pending, paying or failed charges). An agreement the rider ends in
//! the wallet (`dut_user_unsign`, cross-checked) is unbound too.

use super::Charging;
use super::{again, done, Handled};
use crate::provider::{AgreementNotice, AgreementOutcome, AgreementRef, CallError, UnsignOutcome};
use crate::store::wallets::{BindOutcome, SignedAgreement, WalletRow};

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("this gateway has no payment provider")]
    NoProvider,
    #[error("the rider has a bound wallet; unbind it first")]
    AlreadyBound,
    #[error("the rider has no bound wallet")]
    NotBound,
    #[error("the rider still owes {0} charge(s) through this wallet")]
    ChargesOutstanding(i64),
    #[error("the provider could not be asked: {0}")]
    Provider(#[from] CallError),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// A signing the rider is to complete in the wallet.
#[derive(Debug, Clone)]
pub struct Signing {
    pub external_agreement_no: String,
    /// The provider's signed page-sign link, to open in the wallet or show as a QR code.
    pub sign_url: String,
}

/// Where a rider's wallet stands.
#[derive(Debug, Clone)]
pub enum WalletState {
    Unbound,
    /// A signing was started and the provider has no agreement for it (yet).
    Signing {
        external_agreement_no: String,
        started_at_ms: i64,
    },
    Bound(WalletRow),
}

/// A fresh external agreement number: `TPW` and 24 hex digits of randomness (96 bits), letters
/// and digits only and at most 32 characters, as the provider requires.
fn new_external_agreement_no() -> String {
    format!("TPW{}", hex::encode_upper(crate::random_bytes::<12>()))
}

fn provider(charging: &Charging) -> Result<&crate::provider::ProviderClient, WalletError> {
    charging.provider.as_ref().ok_or(WalletError::NoProvider)
}

/// Starts a signing for `rider_id`: a new number of the rider's, and the link to sign it.
pub async fn start_signing(charging: &Charging, rider_id: i64) -> Result<Signing, WalletError> {
    let provider = provider(charging)?;
    if charging.store.wallet_row(rider_id).await?.is_some() {
        return Err(WalletError::AlreadyBound);
    }
    let external_agreement_no = new_external_agreement_no();
    charging
        .store
        .insert_wallet_signing(&external_agreement_no, rider_id, charging.clock.now_ms())
        .await?;
    let sign_url = provider.page_sign_url(&external_agreement_no);
    tracing::info!(rider_id, %external_agreement_no, "wallet signing started");
    Ok(Signing {
        external_agreement_no,
        sign_url,
    })
}

/// Asks the provider which agreement is in force for our number and binds it to the rider
/// whose signing it is. None when the provider has none in force for it (not signed yet).
pub async fn confirm(
    charging: &Charging,
    external_agreement_no: &str,
) -> Result<Option<BindOutcome>, WalletError> {
    let provider = provider(charging)?;
    let AgreementOutcome::Active {
        agreement_no,
        external_agreement_no: answered,
        provider_user_id,
    } = provider
        .agreement(AgreementRef::External(external_agreement_no))
        .await?
    else {
        return Ok(None);
    };
    if answered
        .as_deref()
        .is_some_and(|a| a != external_agreement_no)
    {
        tracing::error!(
            external_agreement_no,
            ?answered,
            "the provider answered another number's agreement; not bound"
        );
        return Ok(None);
    }
    let outcome = charging
        .store
        .bind_signed_wallet(
            &SignedAgreement {
                external_agreement_no,
                agreement_no: &agreement_no,
                provider_user_id: provider_user_id.as_deref(),
            },
            charging.clock.now_ms(),
        )
        .await?;
    match outcome {
        BindOutcome::Bound { rider_id } => {
            tracing::info!(rider_id, external_agreement_no, "wallet bound");
            metrics::counter!("gateway_wallet_bindings_total", "outcome" => "bound").increment(1);
        }
        BindOutcome::AlreadyBound { .. } => {}
        other => {
            tracing::warn!(
                external_agreement_no,
                ?other,
                "confirmed agreement not bound"
            );
            metrics::counter!("gateway_wallet_bindings_total", "outcome" => "refused").increment(1);
        }
    }
    Ok(Some(outcome))
}

/// The rider's wallet; a pending signing is confirmed with the provider first, so a rider who
/// signed while the notification was lost is bound when they look.
pub async fn state(charging: &Charging, rider_id: i64) -> Result<WalletState, WalletError> {
    if let Some(wallet) = charging.store.wallet_row(rider_id).await? {
        return Ok(WalletState::Bound(wallet));
    }
    let Some((external_agreement_no, started_at_ms)) =
        charging.store.latest_wallet_signing(rider_id).await?
    else {
        return Ok(WalletState::Unbound);
    };
    if charging.provider.is_some() {
        confirm(charging, &external_agreement_no).await?;
        if let Some(wallet) = charging.store.wallet_row(rider_id).await? {
            return Ok(WalletState::Bound(wallet));
        }
    }
    Ok(WalletState::Signing {
        external_agreement_no,
        started_at_ms,
    })
}

/// Ends the rider's agreement at the provider, then unbinds it. Refused while charges through
/// it are outstanding: they would otherwise never be collected.
pub async fn unbind(charging: &Charging, rider_id: i64) -> Result<WalletRow, WalletError> {
    let provider = provider(charging)?;
    let wallet = charging
        .store
        .wallet_row(rider_id)
        .await?
        .ok_or(WalletError::NotBound)?;
    let outstanding = charging
        .store
        .rider_owed_through_agreement(rider_id)
        .await?;
    if outstanding > 0 {
        return Err(WalletError::ChargesOutstanding(outstanding));
    }
    match provider.unsign(&wallet.agreement_no).await? {
        UnsignOutcome::Ended | UnsignOutcome::NotFound => {}
    }
    charging
        .store
        .unbind_wallet(rider_id, &wallet.agreement_no)
        .await?;
    tracing::info!(rider_id, "wallet unbound");
    Ok(wallet)
}

/// Applies a verified agreement notification, after a query by the same number agrees.
pub(super) async fn on_notice(
    charging: &Charging,
    notice: &AgreementNotice,
) -> anyhow::Result<Handled> {
    if notice.ended {
        let provider = provider(charging)?;
        return Ok(
            match provider
                .agreement(AgreementRef::Number(&notice.agreement_no))
                .await
            {
                Ok(AgreementOutcome::Active { .. }) => again("query_disagrees"),
                Ok(_) => match charging
                    .store
                    .unbind_agreement(&notice.agreement_no)
                    .await?
                {
                    Some(rider_id) => {
                        tracing::info!(rider_id, "wallet unbound: the agreement ended");
                        done("unbound")
                    }
                    None => done("not_bound"),
                },
                Err(_) => again("retry"),
            },
        );
    }
    let Some(external) = notice.external_agreement_no.as_deref() else {
        return Ok(done("unknown_signing"));
    };
    if charging
        .store
        .wallet_signing_rider(external)
        .await?
        .is_none()
    {
        return Ok(done("unknown_signing"));
    }
    Ok(match confirm(charging, external).await {
        Ok(Some(BindOutcome::Bound { .. } | BindOutcome::AlreadyBound { .. })) => done("bound"),
        Ok(Some(_)) => done("not_bound"),
        Ok(None) => again("query_disagrees"),
        Err(_) => again("retry"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves our agreement numbers follow the provider's rule (1–32 letters and digits) and
    /// do not repeat.
    #[test]
    fn external_numbers() {
        let a = new_external_agreement_no();
        assert_eq!(a.len(), 27);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, new_external_agreement_no());
    }
}
