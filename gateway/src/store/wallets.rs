//! SQL of riders' wallets: the signings the gateway started (`wallet_signings`: whose
//! external agreement number is whose) and the bound agreements (`rider_wallets`, one
//! agreement per rider and one rider per agreement, both constraints).

use sqlx::Row;

use super::Store;

/// A bound wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletRow {
    pub rider_id: i64,
    pub agreement_no: String,
    pub provider_user_id: Option<String>,
    /// The signing it came from; none for wallets bound before signings existed.
    pub external_agreement_no: Option<String>,
    pub bound_at_ms: i64,
}

/// An agreement the provider confirmed for one of the gateway's signings.
#[derive(Debug, Clone, Copy)]
pub struct SignedAgreement<'a> {
    pub external_agreement_no: &'a str,
    pub agreement_no: &'a str,
    pub provider_user_id: Option<&'a str>,
}

/// What binding a confirmed agreement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    Bound {
        rider_id: i64,
    },
    /// That rider already has exactly this agreement (a repeated confirmation).
    AlreadyBound {
        rider_id: i64,
    },
    /// The rider bound another agreement in the meantime; this one is left unbound.
    RiderHasOther {
        rider_id: i64,
    },
    /// The agreement is another rider's (the constraint held).
    AgreementTaken {
        rider_id: i64,
    },
    /// No signing of ours has that number.
    UnknownSigning,
}

impl Store {
    pub async fn wallet_row(&self, rider_id: i64) -> Result<Option<WalletRow>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT rider_id, agreement_no, provider_user_id, external_agreement_no, bound_at_ms
             FROM rider_wallets WHERE rider_id = $1",
        )
        .bind(rider_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(WalletRow {
                rider_id: r.try_get(0)?,
                agreement_no: r.try_get(1)?,
                provider_user_id: r.try_get(2)?,
                external_agreement_no: r.try_get(3)?,
                bound_at_ms: r.try_get(4)?,
            })
        })
        .transpose()
    }

    pub async fn insert_wallet_signing(
        &self,
        external_agreement_no: &str,
        rider_id: i64,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO wallet_signings (external_agreement_no, rider_id, created_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(external_agreement_no)
        .bind(rider_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The rider's most recent signing: (external agreement number, started at).
    pub async fn latest_wallet_signing(
        &self,
        rider_id: i64,
    ) -> Result<Option<(String, i64)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT external_agreement_no, created_at_ms FROM wallet_signings
             WHERE rider_id = $1 ORDER BY created_at_ms DESC, external_agreement_no LIMIT 1",
        )
        .bind(rider_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    /// Whose signing has this number.
    pub async fn wallet_signing_rider(
        &self,
        external_agreement_no: &str,
    ) -> Result<Option<i64>, sqlx::Error> {
        let row =
            sqlx::query("SELECT rider_id FROM wallet_signings WHERE external_agreement_no = $1")
                .bind(external_agreement_no)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| r.try_get(0)).transpose()
    }

    /// Binds a confirmed agreement to the rider whose signing it answers, unless the rider has
    /// a wallet already or the agreement is someone else's (`rider_wallets` constraints decide,
    /// so concurrent confirmations on any number of nodes bind at most once).
    pub async fn bind_signed_wallet(
        &self,
        signed: &SignedAgreement<'_>,
        now_ms: i64,
    ) -> Result<BindOutcome, sqlx::Error> {
        let mut tx = self.begin().await?;
        let Some(rider_id) =
            sqlx::query("SELECT rider_id FROM wallet_signings WHERE external_agreement_no = $1")
                .bind(signed.external_agreement_no)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get::<i64, _>(0))
                .transpose()?
        else {
            return Ok(BindOutcome::UnknownSigning);
        };
        let inserted = sqlx::query(
            "INSERT INTO rider_wallets (rider_id, agreement_no, provider_user_id, external_agreement_no, bound_at_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(rider_id)
        .bind(signed.agreement_no)
        .bind(signed.provider_user_id)
        .bind(signed.external_agreement_no)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 1 {
            tx.commit().await?;
            return Ok(BindOutcome::Bound { rider_id });
        }
        let holder = sqlx::query(
            "SELECT rider_id, agreement_no FROM rider_wallets WHERE rider_id = $1 OR agreement_no = $2
             ORDER BY rider_id LIMIT 2",
        )
        .bind(rider_id)
        .bind(signed.agreement_no)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut outcome = BindOutcome::UnknownSigning;
        for r in holder {
            let (holder_id, agreement_no): (i64, String) = (r.try_get(0)?, r.try_get(1)?);
            outcome = match (holder_id == rider_id, agreement_no == signed.agreement_no) {
                (true, true) => return Ok(BindOutcome::AlreadyBound { rider_id }),
                (true, false) => BindOutcome::RiderHasOther { rider_id },
                (false, _) => BindOutcome::AgreementTaken {
                    rider_id: holder_id,
                },
            };
        }
        Ok(outcome)
    }

    /// Unbinds the rider's wallet if it is still `agreement_no`, and forgets the rider's
    /// signings (a new binding starts a new one); false if it was not bound to that.
    pub async fn unbind_wallet(
        &self,
        rider_id: i64,
        agreement_no: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM rider_wallets WHERE rider_id = $1 AND agreement_no = $2")
            .bind(rider_id)
            .bind(agreement_no)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            forget_signings(&mut tx, rider_id).await?;
        }
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Unbinds an agreement that ended at the provider (and forgets its rider's signings); the
    /// rider it was bound to, if any.
    pub async fn unbind_agreement(&self, agreement_no: &str) -> Result<Option<i64>, sqlx::Error> {
        let mut tx = self.begin().await?;
        let rider =
            sqlx::query("DELETE FROM rider_wallets WHERE agreement_no = $1 RETURNING rider_id")
                .bind(agreement_no)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get::<i64, _>(0))
                .transpose()?;
        if let Some(rider_id) = rider {
            forget_signings(&mut tx, rider_id).await?;
        }
        tx.commit().await?;
        Ok(rider)
    }
}

/// A late notification for a forgotten signing's number finds no rider and binds nothing.
async fn forget_signings(tx: &mut super::Tx<'_>, rider_id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM wallet_signings WHERE rider_id = $1")
        .bind(rider_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
