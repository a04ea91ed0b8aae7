//! Withholding (代扣) agreements, the platform's way.
//!
//! - The merchant builds a signed `alipay.user.agreement.page.sign` request carrying its own
//!   number for the agreement (`external_agreement_no`) and shows it to the buyer as a link or a
//!   QR code; the buyer opens it in the wallet and signs ([`sign`]). The agreement remembers the
//!   merchant's number and the request's `notify_url`, which gets a `dut_user_sign`
//!   notification in the same transaction (the outbox, [`crate::notify`]).
//! - `alipay.user.agreement.query` finds an agreement by the platform's `agreement_no` or by the
//!   merchant's number with its product and scene ([`find`]); an ended one does not exist.
//! - `alipay.user.agreement.unsign` (the merchant) and the wallet's own "end agreement" end it
//!   ([`set_status`]), with a `dut_user_unsign` notification.
//!
//! One merchant number is in force for one agreement at a time: a second buyer opening a link
//! another buyer already signed is refused, so a merchant that binds "the agreement signed for
//! my number" binds exactly the buyer who signed its link.

use crate::error::SandboxError;
use crate::notify;
use crate::store::{self, AgreementRow, AgreementStatus, ExternalAgreementKey, Store};
use crate::trade::random_digits;

/// The personal product code of a withholding agreement (the only one the sandbox signs).
pub const PERSONAL_PRODUCT_WITHHOLDING: &str = "GENERAL_WITHHOLDING_P";
/// The scene an agreement is signed under when the merchant names none.
pub const SIGN_SCENE_DEFAULT: &str = "INDUSTRY|DEFAULT_SCENE";
/// The agreement query's answer for an unknown or ended agreement (it is not an ACQ method).
pub const USER_AGREEMENT_NOT_EXIST: &str = "USER_AGREEMENT_NOT_EXIST";
/// A merchant number already signed by another buyer.
pub const USER_AGREEMENT_ALREADY_EXIST: &str = "USER_AGREEMENT_ALREADY_EXIST";
/// The merchant's number: letters and digits, at most 32 (the platform's rule).
pub const EXTERNAL_AGREEMENT_NO_CHARS_MAX: usize = 32;

/// What a verified page-sign request asks the buyer to sign.
#[derive(Debug, Clone)]
pub struct PageSign {
    pub app_id: String,
    pub external_agreement_no: String,
    pub personal_product_code: String,
    pub sign_scene: String,
    pub notify_url: Option<String>,
}

/// How a call names an agreement.
#[derive(Debug, Clone)]
pub enum AgreementKey {
    Number(String),
    External {
        external_agreement_no: String,
        personal_product_code: String,
        sign_scene: String,
    },
}

/// Whether `s` is a merchant agreement number the platform accepts.
pub fn valid_external_agreement_no(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= EXTERNAL_AGREEMENT_NO_CHARS_MAX
        && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A new agreement in force between `user` and `app_id`, under a fresh number, without a
/// merchant number (the page-sign flow adds its own fields).
fn new_agreement(
    app_id: &str,
    user: store::UserRow,
    single_limit_fen: i64,
    now_ms: i64,
) -> AgreementRow {
    AgreementRow {
        // Agreement numbers are the year and 16 digits, 20 in all, like 20215425011234567890.
        agreement_no: format!(
            "{}{}",
            crate::time::shanghai(now_ms, "%Y"),
            random_digits(16)
        ),
        app_id: app_id.to_string(),
        user_id: user.user_id,
        status: AgreementStatus::Normal,
        single_limit_fen,
        sign_time_ms: now_ms,
        unsign_time_ms: None,
        logon_id: user.logon_id,
        external_agreement_no: None,
        personal_product_code: PERSONAL_PRODUCT_WITHHOLDING.into(),
        sign_scene: SIGN_SCENE_DEFAULT.into(),
        notify_url: None,
    }
}

/// The buyer `user_id` signs what `page` asks, for deductions of at most `single_limit_fen`.
/// Opening the same link again returns the agreement already signed (`false`: not new).
pub async fn sign(
    store: &Store,
    user_id: &str,
    page: &PageSign,
    single_limit_fen: i64,
    now_ms: i64,
) -> Result<(AgreementRow, bool), SandboxError> {
    let mut tx = store.begin().await?;
    let user = store::user_in(&mut tx, user_id)
        .await?
        .ok_or_else(|| SandboxError::NotFound(format!("no user {user_id}")))?;
    let key = ExternalAgreementKey {
        app_id: &page.app_id,
        personal_product_code: &page.personal_product_code,
        sign_scene: &page.sign_scene,
        external_agreement_no: &page.external_agreement_no,
    };
    if let Some(existing) = store::agreement_by_external_in(&mut tx, &key).await? {
        tx.rollback().await?;
        if existing.user_id == user.user_id {
            return Ok((existing, false));
        }
        return Err(SandboxError::refused(
            USER_AGREEMENT_ALREADY_EXIST,
            format!(
                "the merchant's agreement number {} is already signed by another buyer",
                page.external_agreement_no
            ),
        ));
    }
    let agreement = AgreementRow {
        external_agreement_no: Some(page.external_agreement_no.clone()),
        personal_product_code: page.personal_product_code.clone(),
        sign_scene: page.sign_scene.clone(),
        notify_url: page.notify_url.clone(),
        ..new_agreement(&page.app_id, user, single_limit_fen, now_ms)
    };
    if !store::insert_agreement_in(&mut tx, &agreement).await? {
        // A concurrent signing of the same number won, or the random number collided.
        return Err(anyhow::anyhow!("the agreement could not be stored; retry").into());
    }
    notify::enqueue_agreement(&mut tx, &agreement, now_ms).await?;
    tx.commit().await?;
    Ok((agreement, true))
}

/// The sandbox's shortcut: the buyer signs with `app_id` directly, without the merchant's page
/// (no merchant number, no notifications).
pub async fn sign_direct(
    store: &Store,
    user_id: &str,
    app_id: &str,
    single_limit_fen: i64,
    now_ms: i64,
) -> Result<AgreementRow, SandboxError> {
    let mut tx = store.begin().await?;
    let user = store::user_in(&mut tx, user_id)
        .await?
        .ok_or_else(|| SandboxError::NotFound(format!("no user {user_id}")))?;
    if store::app_in(&mut tx, app_id).await?.is_none() {
        return Err(SandboxError::NotFound(format!("no app {app_id}")));
    }
    let agreement = new_agreement(app_id, user, single_limit_fen, now_ms);
    if !store::insert_agreement_in(&mut tx, &agreement).await? {
        return Err(anyhow::anyhow!("random agreement number collided; retry").into());
    }
    tx.commit().await?;
    Ok(agreement)
}

async fn find_in(
    conn: &mut sqlx::AnyConnection,
    app_id: Option<&str>,
    key: &AgreementKey,
) -> Result<Option<AgreementRow>, sqlx::Error> {
    let found = match key {
        AgreementKey::Number(no) => store::agreement_in(conn, no).await?,
        AgreementKey::External {
            external_agreement_no,
            personal_product_code,
            sign_scene,
        } => {
            let Some(app_id) = app_id else {
                return Ok(None);
            };
            let key = ExternalAgreementKey {
                app_id,
                personal_product_code,
                sign_scene,
                external_agreement_no,
            };
            store::agreement_by_external_in(conn, &key).await?
        }
    };
    Ok(found.filter(|a| {
        a.status != AgreementStatus::Unsign && app_id.is_none_or(|app| a.app_id == app)
    }))
}

fn not_exist() -> SandboxError {
    SandboxError::business(USER_AGREEMENT_NOT_EXIST, "用户协议不存在")
}

/// The app's agreement in force under `key`; ended, unknown and other apps' agreements do not
/// exist, as on the platform.
pub async fn find(
    store: &Store,
    app_id: &str,
    key: &AgreementKey,
) -> Result<AgreementRow, SandboxError> {
    let mut tx = store.begin().await?;
    let found = find_in(&mut tx, Some(app_id), key).await?;
    tx.rollback().await?;
    found.ok_or_else(not_exist)
}

/// Moves an agreement in force to `to` (STOP pauses it, UNSIGN ends it); `app_id` is the
/// merchant calling, none for the wallet's own action. Ending it notifies the merchant.
pub async fn set_status(
    store: &Store,
    app_id: Option<&str>,
    key: &AgreementKey,
    to: AgreementStatus,
    now_ms: i64,
) -> Result<AgreementRow, SandboxError> {
    let mut tx = store.begin().await?;
    let found = find_in(&mut tx, app_id, key).await?.ok_or_else(not_exist)?;
    store::set_agreement_status_in(&mut tx, &found.agreement_no, to, now_ms).await?;
    let changed = store::agreement_in(&mut tx, &found.agreement_no)
        .await?
        .ok_or_else(not_exist)?;
    if to == AgreementStatus::Unsign {
        notify::enqueue_agreement(&mut tx, &changed, now_ms).await?;
    }
    tx.commit().await?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves merchant agreement numbers follow the platform's rule: 1–32 letters and digits.
    #[test]
    fn external_numbers() {
        assert!(valid_external_agreement_no("TPW0123abcXYZ"));
        assert!(valid_external_agreement_no(&"a".repeat(32)));
        for bad in ["", "a_b", "a-b", "a b", "ä", "a\0", "\u{202e}a"] {
            assert!(!valid_external_agreement_no(bad), "{bad:?}");
        }
        assert!(!valid_external_agreement_no(&"a".repeat(33)));
    }
}
