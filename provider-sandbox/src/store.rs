//! Storage: the only module that speaks SQL.
//!
//! One set of portable SQL runs on PostgreSQL and SQLite through sqlx's `Any` driver; only the
//! migrations differ per backend (the gateway's pattern). Uniqueness that the API promises —
//! one trade per (app, out_trade_no), one refund per (trade, out_request_no), one use per payment
//! code — is a database constraint or a guarded `UPDATE … WHERE`, so concurrent retries cannot
//! double-charge. The business rules live in [`crate::trade`]; this module only reads and writes.
//!
//! State changes that the merchant must hear about write their notification row (the outbox) in
//! the same transaction ([`insert_notification`]), so a committed change is always notified and a
//! rolled-back one never is.
//!
//! Conventions: times are UTC Unix milliseconds, money is integer fen, booleans are 0/1 BIGINT
//! (portable through `Any`).

use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyRow};
use sqlx::{AnyPool, Row};
use turnpike_db::Backend;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite only: one transaction at a time. SQLite has a single writer, and a deferred
    /// transaction that reads and then writes fails at once with SQLITE_BUSY when another
    /// writer got there first (the busy timeout does not help); serializing in-process turns
    /// that into waiting, so concurrent duplicate calls replay instead of failing with 20000.
    sqlite_writer: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// A database transaction; on SQLite it also holds the writer lock until it ends.
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Any>,
    _writer: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.inner
    }
}

/// The migrations, compiled in (see `turnpike_db::Embedded`).
pub const POSTGRES_MIGRATIONS: turnpike_db::Embedded = turnpike_db::embedded!(
    "migrations/postgres",
    "0001_core.sql",
    "0002_notify_qr_agreements.sql",
    "0003_agreement_signing.sql",
);
pub const SQLITE_MIGRATIONS: turnpike_db::Embedded = turnpike_db::embedded!(
    "migrations/sqlite",
    "0001_core.sql",
    "0002_notify_qr_agreements.sql",
    "0003_agreement_signing.sql",
);

impl Store {
    /// Connects and runs migrations. `connections_max` bounds the pool.
    pub async fn connect(url: &str, connections_max: u32) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url);
        let options = AnyConnectOptions::from_str(url).context("parsing the database url")?;
        // A request waits at most `turnpike_db::ACQUIRE_TIMEOUT` for a connection before
        // failing with a system error; SQLite sessions get the shared pragmas (WAL, FULL sync,
        // so every acknowledged payment survives power loss, the busy timeout).
        let pool = turnpike_db::pool_options(backend, connections_max.max(2))
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to the {backend:?} database"))?;
        let migrations = match backend {
            Backend::Postgres => POSTGRES_MIGRATIONS,
            Backend::Sqlite => SQLITE_MIGRATIONS,
        };
        let migrator = migrations.migrator().await.context("reading migrations")?;
        migrator.run(&pool).await.context("running migrations")?;
        let sqlite_writer =
            (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Ok(Store {
            pool,
            sqlite_writer,
        })
    }

    /// SQLite only: the writer lock, also taken by the writes made outside a transaction, so
    /// that no autocommit write slips between a transaction's read and its write.
    async fn write_guard(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }

    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let writer = match &self.sqlite_writer {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        Ok(Tx {
            inner: self.pool.begin().await?,
            _writer: writer,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ----- apps -----

    /// Registers an app or replaces its key (the console lets a merchant rotate its key). The
    /// fee rate changes only when given; a new app gets [`FEE_RATE_BP_DEFAULT`] and `seller_id`.
    pub async fn upsert_app(
        &self,
        app_id: &str,
        public_key_pkcs1_b64: &str,
        fee_rate_bp: Option<i64>,
        seller_id: &str,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let _writer = self.write_guard().await;
        sqlx::query(
            "INSERT INTO apps (app_id, public_key_pkcs1_b64, created_at_ms, fee_rate_bp, seller_id)
             VALUES ($1, $2, $3, COALESCE($4, $5), $6)
             ON CONFLICT (app_id) DO UPDATE SET public_key_pkcs1_b64 = excluded.public_key_pkcs1_b64,
                fee_rate_bp = COALESCE($4, apps.fee_rate_bp),
                seller_id = COALESCE(apps.seller_id, excluded.seller_id)",
        )
        .bind(app_id)
        .bind(public_key_pkcs1_b64)
        .bind(now_ms)
        .bind(fee_rate_bp)
        .bind(FEE_RATE_BP_DEFAULT)
        .bind(seller_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn app_public_key(&self, app_id: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query("SELECT public_key_pkcs1_b64 FROM apps WHERE app_id = $1")
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get(0))
            .transpose()
    }

    pub async fn app(&self, app_id: &str) -> Result<Option<AppRow>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        app_in(&mut conn, app_id).await
    }

    // ----- users and payment codes -----

    pub async fn insert_user(&self, user: &UserRow) -> Result<bool, sqlx::Error> {
        let _writer = self.write_guard().await;
        let inserted = sqlx::query(
            "INSERT INTO users (user_id, logon_id, balance_fen, real_name, confirm_over_fen, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&user.user_id)
        .bind(&user.logon_id)
        .bind(user.balance_fen)
        .bind(user.real_name as i64)
        .bind(user.confirm_over_fen)
        .bind(user.created_at_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    pub async fn user(&self, user_id: &str) -> Result<Option<UserRow>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        user_in(&mut conn, user_id).await
    }

    /// The wallet with this account name. Account names are not unique in the sandbox (the
    /// platform's are): the first one created answers.
    pub async fn user_by_logon_id(&self, logon_id: &str) -> Result<Option<UserRow>, sqlx::Error> {
        let user_id: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM users WHERE logon_id = $1 ORDER BY created_at_ms, user_id LIMIT 1",
        )
        .bind(logon_id)
        .fetch_optional(&self.pool)
        .await?;
        match user_id {
            Some(id) => self.user(&id).await,
            None => Ok(None),
        }
    }

    /// Sets a wallet's real-name state (the buyer completing, or losing, certification in the
    /// wallet); false when there is no such user.
    pub async fn set_real_name(&self, user_id: &str, real_name: bool) -> Result<bool, sqlx::Error> {
        let _writer = self.write_guard().await;
        let updated = sqlx::query("UPDATE users SET real_name = $1 WHERE user_id = $2")
            .bind(real_name as i64)
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(updated == 1)
    }

    /// Adds money to a wallet (the buyer topping up); false when there is no such user.
    pub async fn top_up(&self, user_id: &str, amount_fen: i64) -> Result<bool, sqlx::Error> {
        let _writer = self.write_guard().await;
        let updated =
            sqlx::query("UPDATE users SET balance_fen = balance_fen + $1 WHERE user_id = $2")
                .bind(amount_fen)
                .bind(user_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(updated == 1)
    }

    pub async fn insert_payment_code(&self, code: &PaymentCodeRow) -> Result<bool, sqlx::Error> {
        let _writer = self.write_guard().await;
        let inserted = sqlx::query(
            "INSERT INTO payment_codes (auth_code, user_id, issued_at_ms, expires_at_ms, used_at_ms)
             VALUES ($1, $2, $3, $4, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(&code.auth_code)
        .bind(&code.user_id)
        .bind(code.issued_at_ms)
        .bind(code.expires_at_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    // ----- trades (reads outside a transaction) -----

    pub async fn trade(&self, trade_no: &str) -> Result<Option<TradeRow>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        trade_where(&mut conn, "t.trade_no = $1", trade_no, None).await
    }

    pub async fn refunds(&self, trade_no: &str) -> Result<Vec<RefundRow>, sqlx::Error> {
        let sql =
            format!("{REFUND_SELECT} WHERE trade_no = $1 ORDER BY created_at_ms, out_request_no");
        let rows = sqlx::query(&sql)
            .bind(trade_no)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(refund_from_row).collect()
    }

    /// Unpaid trades whose expiry or automatic buyer confirmation is due, at most `limit`.
    pub async fn due_unpaid_trades(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT trade_no FROM trades
             WHERE status = 'WAIT_BUYER_PAY' AND (expires_at_ms <= $1 OR auto_confirm_at_ms <= $1)
             ORDER BY created_at_ms LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }

    /// Stops retrying an automatic buyer confirmation that failed; the trade waits for expiry.
    pub async fn clear_auto_confirm(&self, trade_no: &str) -> Result<(), sqlx::Error> {
        let _writer = self.write_guard().await;
        sqlx::query("UPDATE trades SET auto_confirm_at_ms = NULL WHERE trade_no = $1")
            .bind(trade_no)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ----- bill -----

    /// An app's trades paid in `[from_ms, to_ms)`, in payment order, at most `limit`.
    pub async fn trades_paid_between(
        &self,
        app_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<TradeRow>, sqlx::Error> {
        let sql = format!(
            "{TRADE_SELECT} WHERE t.app_id = $1 AND t.paid_at_ms >= $2 AND t.paid_at_ms < $3
             ORDER BY t.paid_at_ms, t.trade_no LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(app_id)
            .bind(from_ms)
            .bind(to_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(trade_from_row).collect()
    }

    /// An app's refunds (cancel reversals included) made in `[from_ms, to_ms)`, each with its
    /// trade, in time order, at most `limit`.
    pub async fn refunds_between(
        &self,
        app_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<(RefundRow, TradeRow)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT r.trade_no, r.out_request_no FROM refunds r JOIN trades t ON t.trade_no = r.trade_no
             WHERE t.app_id = $1 AND r.created_at_ms >= $2 AND r.created_at_ms < $3
             ORDER BY r.created_at_ms, r.trade_no, r.out_request_no LIMIT $4",
        )
        .bind(app_id)
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut conn = self.pool.acquire().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let trade_no: String = r.try_get(0)?;
            let out_request_no: String = r.try_get(1)?;
            let refund = refund_in(&mut conn, &trade_no, &out_request_no).await?;
            let trade = trade_where(&mut conn, "t.trade_no = $1", &trade_no, None).await?;
            if let (Some(refund), Some(trade)) = (refund, trade) {
                out.push((refund, trade));
            }
        }
        Ok(out)
    }

    // ----- notifications -----

    /// Pending notifications due by `now_ms`, oldest first, at most `limit`.
    pub async fn due_notifications(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<NotificationRow>, sqlx::Error> {
        let sql = format!(
            "{NOTIFICATION_SELECT} WHERE status = 'pending' AND next_attempt_at_ms <= $1
             ORDER BY next_attempt_at_ms, notify_id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(notification_from_row).collect()
    }

    /// Claims a due notification for one attempt by moving its due time to the end of the lease;
    /// false when another dispatcher claimed it first. A crash mid-attempt leaves the row to be
    /// picked again when the lease ends.
    pub async fn lease_notification(
        &self,
        notify_id: &str,
        seen_next_attempt_at_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let _writer = self.write_guard().await;
        let updated = sqlx::query(
            "UPDATE notifications SET next_attempt_at_ms = $1
             WHERE notify_id = $2 AND status = 'pending' AND next_attempt_at_ms = $3",
        )
        .bind(lease_until_ms)
        .bind(notify_id)
        .bind(seen_next_attempt_at_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Records the result of one delivery attempt.
    pub async fn record_notification_attempt(
        &self,
        notify_id: &str,
        outcome: &AttemptOutcome,
    ) -> Result<(), sqlx::Error> {
        let _writer = self.write_guard().await;
        sqlx::query(
            "UPDATE notifications SET status = $1, attempts = attempts + 1, next_attempt_at_ms = $2,
                    last_error = $3, delivered_at_ms = $4
             WHERE notify_id = $5",
        )
        .bind(outcome.status.as_str())
        .bind(outcome.next_attempt_at_ms)
        .bind(outcome.error.as_deref())
        .bind(outcome.delivered_at_ms)
        .bind(notify_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notifications about one merchant order (all apps), oldest first, at most `limit`.
    pub async fn notifications_for_order(
        &self,
        out_trade_no: &str,
        limit: i64,
    ) -> Result<Vec<NotificationRow>, sqlx::Error> {
        let sql = format!(
            "{NOTIFICATION_SELECT} WHERE out_trade_no = $1 ORDER BY created_at_ms, notify_id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(out_trade_no)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(notification_from_row).collect()
    }

    // ----- agreements -----

    pub async fn agreement(&self, agreement_no: &str) -> Result<Option<AgreementRow>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        agreement_in(&mut conn, agreement_no).await
    }
}

// ----- transactional primitives used by `crate::trade` and `crate::agreement` -----

pub async fn app_in(
    conn: &mut sqlx::AnyConnection,
    app_id: &str,
) -> Result<Option<AppRow>, sqlx::Error> {
    let row = sqlx::query("SELECT app_id, fee_rate_bp, seller_id FROM apps WHERE app_id = $1")
        .bind(app_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| {
        Ok(AppRow {
            app_id: r.try_get(0)?,
            fee_rate_bp: r.try_get(1)?,
            seller_id: r.try_get(2)?,
        })
    })
    .transpose()
}

pub async fn user_in(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT user_id, logon_id, balance_fen, real_name, confirm_over_fen, created_at_ms
         FROM users WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| {
        Ok(UserRow {
            user_id: r.try_get(0)?,
            logon_id: r.try_get(1)?,
            balance_fen: r.try_get(2)?,
            real_name: r.try_get::<i64, _>(3)? != 0,
            confirm_over_fen: r.try_get(4)?,
            created_at_ms: r.try_get(5)?,
        })
    })
    .transpose()
}

const AGREEMENT_SELECT: &str =
    "SELECT a.agreement_no, a.app_id, a.user_id, a.status, a.single_limit_fen,
        a.sign_time_ms, a.unsign_time_ms, u.logon_id, a.external_agreement_no,
        a.personal_product_code, a.sign_scene, a.notify_url
     FROM agreements a JOIN users u ON u.user_id = a.user_id";

fn agreement_from_row(r: &AnyRow) -> Result<AgreementRow, sqlx::Error> {
    let status: String = r.try_get(3)?;
    Ok(AgreementRow {
        agreement_no: r.try_get(0)?,
        app_id: r.try_get(1)?,
        user_id: r.try_get(2)?,
        status: AgreementStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown agreement status {status}").into())
        })?,
        single_limit_fen: r.try_get(4)?,
        sign_time_ms: r.try_get(5)?,
        unsign_time_ms: r.try_get(6)?,
        logon_id: r.try_get(7)?,
        external_agreement_no: r.try_get(8)?,
        personal_product_code: r.try_get(9)?,
        sign_scene: r.try_get(10)?,
        notify_url: r.try_get(11)?,
    })
}

pub async fn agreement_in(
    conn: &mut sqlx::AnyConnection,
    agreement_no: &str,
) -> Result<Option<AgreementRow>, sqlx::Error> {
    let sql = format!("{AGREEMENT_SELECT} WHERE a.agreement_no = $1");
    let row = sqlx::query(&sql)
        .bind(agreement_no)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(agreement_from_row).transpose()
}

/// The agreement in force (not ended) under a merchant's own number, product and scene.
pub async fn agreement_by_external_in(
    conn: &mut sqlx::AnyConnection,
    key: &ExternalAgreementKey<'_>,
) -> Result<Option<AgreementRow>, sqlx::Error> {
    let sql = format!(
        "{AGREEMENT_SELECT} WHERE a.app_id = $1 AND a.personal_product_code = $2
             AND a.sign_scene = $3 AND a.external_agreement_no = $4 AND a.status <> 'UNSIGN'"
    );
    let row = sqlx::query(&sql)
        .bind(key.app_id)
        .bind(key.personal_product_code)
        .bind(key.sign_scene)
        .bind(key.external_agreement_no)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(agreement_from_row).transpose()
}

/// Inserts an agreement; false when its number or its (app, product, scene, external number)
/// in force is taken.
pub async fn insert_agreement_in(tx: &mut Tx, a: &AgreementRow) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO agreements (agreement_no, app_id, user_id, status, single_limit_fen, sign_time_ms,
                                 unsign_time_ms, external_agreement_no, personal_product_code,
                                 sign_scene, notify_url)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
    )
    .bind(&a.agreement_no)
    .bind(&a.app_id)
    .bind(&a.user_id)
    .bind(a.status.as_str())
    .bind(a.single_limit_fen)
    .bind(a.sign_time_ms)
    .bind(a.unsign_time_ms)
    .bind(a.external_agreement_no.as_deref())
    .bind(&a.personal_product_code)
    .bind(&a.sign_scene)
    .bind(a.notify_url.as_deref())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Moves an agreement to `to` unless it has already ended; false when it is unknown or ended.
pub async fn set_agreement_status_in(
    tx: &mut Tx,
    agreement_no: &str,
    to: AgreementStatus,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let unsign_at = (to == AgreementStatus::Unsign).then_some(now_ms);
    let updated = sqlx::query(
        "UPDATE agreements SET status = $1, unsign_time_ms = COALESCE($2, unsign_time_ms)
         WHERE agreement_no = $3 AND status <> 'UNSIGN'",
    )
    .bind(to.as_str())
    .bind(unsign_at)
    .bind(agreement_no)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Finds an app's trade by `trade_no` or, failing that, by `out_trade_no` (the API accepts
/// either; `trade_no` wins when both are given).
pub async fn find_trade(
    conn: &mut sqlx::AnyConnection,
    app_id: &str,
    trade_no: Option<&str>,
    out_trade_no: Option<&str>,
) -> Result<Option<TradeRow>, sqlx::Error> {
    match (trade_no, out_trade_no) {
        (Some(no), _) => {
            trade_where(conn, "t.trade_no = $1 AND t.app_id = $2", no, Some(app_id)).await
        }
        (None, Some(out)) => {
            trade_where(
                conn,
                "t.out_trade_no = $1 AND t.app_id = $2",
                out,
                Some(app_id),
            )
            .await
        }
        (None, None) => Ok(None),
    }
}

/// Finds a trade by `trade_no` whichever app owns it (sandbox admin).
pub async fn find_trade_any_app(
    conn: &mut sqlx::AnyConnection,
    trade_no: &str,
) -> Result<Option<TradeRow>, sqlx::Error> {
    trade_where(conn, "t.trade_no = $1", trade_no, None).await
}

/// Finds a precreated trade by the token in its `qr_code`.
pub async fn find_trade_by_qr_token(
    conn: &mut sqlx::AnyConnection,
    qr_token: &str,
) -> Result<Option<TradeRow>, sqlx::Error> {
    trade_where(conn, "t.qr_token = $1", qr_token, None).await
}

/// The buyer may still be unknown (a precreated QR nobody scanned), hence the LEFT JOINs.
const TRADE_SELECT: &str = "SELECT t.trade_no, t.app_id, t.out_trade_no, t.subject, t.total_fen,
        t.refunded_fen, t.status, t.buyer_user_id, u.logon_id, t.auth_code, t.cancel_action,
        t.created_at_ms, t.paid_at_ms, t.closed_at_ms, t.product_code, t.notify_url,
        t.agreement_no, t.terminal_id, t.store_id, t.operator_id, t.fee_fen, t.qr_token,
        t.expires_at_ms, t.auto_confirm_at_ms, a.seller_id
     FROM trades t LEFT JOIN users u ON u.user_id = t.buyer_user_id
                   LEFT JOIN apps a ON a.app_id = t.app_id";

async fn trade_where(
    conn: &mut sqlx::AnyConnection,
    condition: &str,
    key: &str,
    app_id: Option<&str>,
) -> Result<Option<TradeRow>, sqlx::Error> {
    let sql = format!("{TRADE_SELECT} WHERE {condition}");
    let mut query = sqlx::query(&sql).bind(key);
    if let Some(app_id) = app_id {
        query = query.bind(app_id);
    }
    let row = query.fetch_optional(&mut *conn).await?;
    row.map(|r| trade_from_row(&r)).transpose()
}

fn trade_from_row(r: &AnyRow) -> Result<TradeRow, sqlx::Error> {
    let status: String = r.try_get(6)?;
    let product: String = r.try_get(14)?;
    Ok(TradeRow {
        trade_no: r.try_get(0)?,
        app_id: r.try_get(1)?,
        out_trade_no: r.try_get(2)?,
        subject: r.try_get(3)?,
        total_fen: r.try_get(4)?,
        refunded_fen: r.try_get(5)?,
        status: TradeStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown trade status {status}").into()))?,
        buyer_user_id: r.try_get(7)?,
        buyer_logon_id: r.try_get(8)?,
        auth_code: r.try_get(9)?,
        cancel_action: r.try_get(10)?,
        created_at_ms: r.try_get(11)?,
        paid_at_ms: r.try_get(12)?,
        closed_at_ms: r.try_get(13)?,
        product_code: ProductCode::parse(&product)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown product {product}").into()))?,
        notify_url: r.try_get(15)?,
        agreement_no: r.try_get(16)?,
        terminal_id: r.try_get(17)?,
        store_id: r.try_get(18)?,
        operator_id: r.try_get(19)?,
        fee_fen: r.try_get(20)?,
        qr_token: r.try_get(21)?,
        expires_at_ms: r.try_get(22)?,
        auto_confirm_at_ms: r.try_get(23)?,
        seller_id: r.try_get(24)?,
    })
}

/// Inserts a new trade; false when (app, out_trade_no) already exists.
pub async fn insert_trade(tx: &mut Tx, t: &TradeRow) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO trades (trade_no, app_id, out_trade_no, subject, total_fen, refunded_fen, status,
                             buyer_user_id, auth_code, cancel_action, created_at_ms, paid_at_ms, closed_at_ms,
                             product_code, notify_url, agreement_no, terminal_id, store_id, operator_id,
                             fee_fen, qr_token, expires_at_ms, auto_confirm_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
                 $20, $21, $22, $23)
         ON CONFLICT DO NOTHING",
    )
    .bind(&t.trade_no)
    .bind(&t.app_id)
    .bind(&t.out_trade_no)
    .bind(&t.subject)
    .bind(t.total_fen)
    .bind(t.refunded_fen)
    .bind(t.status.as_str())
    .bind(t.buyer_user_id.as_deref())
    .bind(t.auth_code.as_deref())
    .bind(t.cancel_action.as_deref())
    .bind(t.created_at_ms)
    .bind(t.paid_at_ms)
    .bind(t.closed_at_ms)
    .bind(t.product_code.as_str())
    .bind(t.notify_url.as_deref())
    .bind(t.agreement_no.as_deref())
    .bind(t.terminal_id.as_deref())
    .bind(t.store_id.as_deref())
    .bind(t.operator_id.as_deref())
    .bind(t.fee_fen)
    .bind(t.qr_token.as_deref())
    .bind(t.expires_at_ms)
    .bind(t.auto_confirm_at_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

pub async fn payment_code(
    tx: &mut Tx,
    auth_code: &str,
) -> Result<Option<PaymentCodeRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT auth_code, user_id, issued_at_ms, expires_at_ms, used_at_ms
         FROM payment_codes WHERE auth_code = $1",
    )
    .bind(auth_code)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(PaymentCodeRow {
            auth_code: r.try_get(0)?,
            user_id: r.try_get(1)?,
            issued_at_ms: r.try_get(2)?,
            expires_at_ms: r.try_get(3)?,
            used_at_ms: r.try_get(4)?,
        })
    })
    .transpose()
}

/// Marks a payment code used; false when it was already used or has expired by `now_ms`.
pub async fn consume_code(tx: &mut Tx, auth_code: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE payment_codes SET used_at_ms = $1
         WHERE auth_code = $2 AND used_at_ms IS NULL AND expires_at_ms > $1",
    )
    .bind(now_ms)
    .bind(auth_code)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Takes `amount_fen` from a wallet; false when the balance is short.
pub async fn debit(tx: &mut Tx, user_id: &str, amount_fen: i64) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE users SET balance_fen = balance_fen - $1 WHERE user_id = $2 AND balance_fen >= $1",
    )
    .bind(amount_fen)
    .bind(user_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

pub async fn credit(tx: &mut Tx, user_id: &str, amount_fen: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET balance_fen = balance_fen + $1 WHERE user_id = $2")
        .bind(amount_fen)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Moves a trade from `from` to `to`; false when it was no longer in `from` (a concurrent call
/// won). `cancel_action` is recorded when given.
pub async fn transition(
    tx: &mut Tx,
    trade_no: &str,
    from: TradeStatus,
    to: TradeStatus,
    now_ms: i64,
    cancel_action: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let (paid_at, closed_at) = match to {
        TradeStatus::TradeSuccess => (Some(now_ms), None),
        TradeStatus::TradeClosed => (None, Some(now_ms)),
        _ => (None, None),
    };
    let updated = sqlx::query(
        "UPDATE trades SET status = $1,
                paid_at_ms = COALESCE($2, paid_at_ms),
                closed_at_ms = COALESCE($3, closed_at_ms),
                cancel_action = COALESCE($4, cancel_action),
                auto_confirm_at_ms = NULL
         WHERE trade_no = $5 AND status = $6",
    )
    .bind(to.as_str())
    .bind(paid_at)
    .bind(closed_at)
    .bind(cancel_action)
    .bind(trade_no)
    .bind(from.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Pays a waiting trade: TRADE_SUCCESS with its service fee, and the buyer when it was unknown
/// (a scanned QR). False when it was no longer waiting.
pub async fn mark_paid(
    tx: &mut Tx,
    trade_no: &str,
    buyer_user_id: &str,
    fee_fen: i64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE trades SET status = 'TRADE_SUCCESS', paid_at_ms = $1, fee_fen = $2,
                buyer_user_id = COALESCE(buyer_user_id, $3), auto_confirm_at_ms = NULL
         WHERE trade_no = $4 AND status = 'WAIT_BUYER_PAY'",
    )
    .bind(now_ms)
    .bind(fee_fen)
    .bind(buyer_user_id)
    .bind(trade_no)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Records who scanned a precreated QR that now waits for that buyer's confirmation; false when
/// someone else scanned it first or it is no longer waiting.
pub async fn set_buyer(
    tx: &mut Tx,
    trade_no: &str,
    buyer_user_id: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE trades SET buyer_user_id = $1
         WHERE trade_no = $2 AND status = 'WAIT_BUYER_PAY' AND buyer_user_id IS NULL",
    )
    .bind(buyer_user_id)
    .bind(trade_no)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Adds `amount_fen` to a paid trade's refunded total, closing it when fully refunded. Returns
/// the new refunded total, or None when the trade is not paid or the refund would exceed it.
pub async fn add_refund_to_trade(
    tx: &mut Tx,
    trade_no: &str,
    amount_fen: i64,
    now_ms: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE trades SET refunded_fen = refunded_fen + $1,
                status = CASE WHEN refunded_fen + $1 = total_fen THEN 'TRADE_CLOSED' ELSE status END,
                closed_at_ms = CASE WHEN refunded_fen + $1 = total_fen THEN $2 ELSE closed_at_ms END
         WHERE trade_no = $3 AND status = 'TRADE_SUCCESS' AND refunded_fen + $1 <= total_fen",
    )
    .bind(amount_fen)
    .bind(now_ms)
    .bind(trade_no)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if updated != 1 {
        return Ok(None);
    }
    let total: i64 = sqlx::query("SELECT refunded_fen FROM trades WHERE trade_no = $1")
        .bind(trade_no)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    Ok(Some(total))
}

/// The service fee already given back by a trade's earlier refunds.
pub async fn refunded_fee_fen(tx: &mut Tx, trade_no: &str) -> Result<i64, sqlx::Error> {
    // PostgreSQL's SUM of BIGINT is NUMERIC; the cast keeps it an integer on both backends.
    sqlx::query("SELECT CAST(COALESCE(SUM(fee_fen), 0) AS BIGINT) FROM refunds WHERE trade_no = $1")
        .bind(trade_no)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)
}

const REFUND_SELECT: &str =
    "SELECT trade_no, out_request_no, refund_fen, refunded_total_fen, reason,
        created_at_ms, kind, fee_fen FROM refunds";

pub async fn refund(
    tx: &mut Tx,
    trade_no: &str,
    out_request_no: &str,
) -> Result<Option<RefundRow>, sqlx::Error> {
    refund_in(tx, trade_no, out_request_no).await
}

async fn refund_in(
    conn: &mut sqlx::AnyConnection,
    trade_no: &str,
    out_request_no: &str,
) -> Result<Option<RefundRow>, sqlx::Error> {
    let sql = format!("{REFUND_SELECT} WHERE trade_no = $1 AND out_request_no = $2");
    let row = sqlx::query(&sql)
        .bind(trade_no)
        .bind(out_request_no)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(refund_from_row).transpose()
}

/// Inserts a refund record; false when (trade, out_request_no) already exists.
pub async fn insert_refund(tx: &mut Tx, r: &RefundRow) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO refunds (trade_no, out_request_no, refund_fen, refunded_total_fen, reason, created_at_ms, kind, fee_fen)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(&r.trade_no)
    .bind(&r.out_request_no)
    .bind(r.refund_fen)
    .bind(r.refunded_total_fen)
    .bind(r.reason.as_deref())
    .bind(r.created_at_ms)
    .bind(r.kind.as_str())
    .bind(r.fee_fen)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

fn refund_from_row(r: &AnyRow) -> Result<RefundRow, sqlx::Error> {
    let kind: String = r.try_get(6)?;
    Ok(RefundRow {
        trade_no: r.try_get(0)?,
        out_request_no: r.try_get(1)?,
        refund_fen: r.try_get(2)?,
        refunded_total_fen: r.try_get(3)?,
        reason: r.try_get(4)?,
        created_at_ms: r.try_get(5)?,
        kind: RefundKind::parse(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown refund kind {kind}").into()))?,
        fee_fen: r.try_get(7)?,
    })
}

/// Writes a notification to the outbox, inside the transaction that made the change it reports.
pub async fn insert_notification(tx: &mut Tx, n: &NotificationRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO notifications (notify_id, app_id, trade_no, out_trade_no, notify_url, params_json,
                                    status, attempts, next_attempt_at_ms, last_error, created_at_ms, delivered_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&n.notify_id)
    .bind(&n.app_id)
    .bind(&n.trade_no)
    .bind(&n.out_trade_no)
    .bind(&n.notify_url)
    .bind(&n.params_json)
    .bind(n.status.as_str())
    .bind(n.attempts)
    .bind(n.next_attempt_at_ms)
    .bind(n.last_error.as_deref())
    .bind(n.created_at_ms)
    .bind(n.delivered_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const NOTIFICATION_SELECT: &str = "SELECT notify_id, app_id, trade_no, out_trade_no, notify_url,
        params_json, status, attempts, next_attempt_at_ms, last_error, created_at_ms, delivered_at_ms
     FROM notifications";

fn notification_from_row(r: &AnyRow) -> Result<NotificationRow, sqlx::Error> {
    let status: String = r.try_get(6)?;
    Ok(NotificationRow {
        notify_id: r.try_get(0)?,
        app_id: r.try_get(1)?,
        trade_no: r.try_get(2)?,
        out_trade_no: r.try_get(3)?,
        notify_url: r.try_get(4)?,
        params_json: r.try_get(5)?,
        status: NotificationStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown notification status {status}").into())
        })?,
        attempts: r.try_get(7)?,
        next_attempt_at_ms: r.try_get(8)?,
        last_error: r.try_get(9)?,
        created_at_ms: r.try_get(10)?,
        delivered_at_ms: r.try_get(11)?,
    })
}

// ----- rows -----

/// A new app's service fee: 0.6%, the platform's standard face-to-face rate.
pub const FEE_RATE_BP_DEFAULT: i64 = 60;

#[derive(Debug, Clone)]
pub struct AppRow {
    pub app_id: String,
    pub fee_rate_bp: i64,
    /// The merchant's 2088… partner id (notifications' `seller_id`, the bill's account).
    pub seller_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub user_id: String,
    pub logon_id: String,
    pub balance_fen: i64,
    pub real_name: bool,
    pub confirm_over_fen: Option<i64>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct PaymentCodeRow {
    pub auth_code: String,
    pub user_id: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
}

/// The platform's trade states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeStatus {
    WaitBuyerPay,
    TradeSuccess,
    TradeClosed,
    TradeFinished,
}

impl TradeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeStatus::WaitBuyerPay => "WAIT_BUYER_PAY",
            TradeStatus::TradeSuccess => "TRADE_SUCCESS",
            TradeStatus::TradeClosed => "TRADE_CLOSED",
            TradeStatus::TradeFinished => "TRADE_FINISHED",
        }
    }

    pub fn parse(s: &str) -> Option<TradeStatus> {
        Some(match s {
            "WAIT_BUYER_PAY" => TradeStatus::WaitBuyerPay,
            "TRADE_SUCCESS" => TradeStatus::TradeSuccess,
            "TRADE_CLOSED" => TradeStatus::TradeClosed,
            "TRADE_FINISHED" => TradeStatus::TradeFinished,
            _ => return None,
        })
    }
}

/// The platform's sales product codes this sandbox knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductCode {
    /// 当面付, bar code: the merchant scans the buyer's payment code.
    FaceToFacePayment,
    /// 当面付, QR: the buyer scans the merchant's precreated code.
    QrCodeOffline,
    /// 代扣: deduction under a withholding agreement.
    GeneralWithholding,
}

impl ProductCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductCode::FaceToFacePayment => "FACE_TO_FACE_PAYMENT",
            ProductCode::QrCodeOffline => "QR_CODE_OFFLINE",
            ProductCode::GeneralWithholding => "GENERAL_WITHHOLDING",
        }
    }

    pub fn parse(s: &str) -> Option<ProductCode> {
        Some(match s {
            "FACE_TO_FACE_PAYMENT" => ProductCode::FaceToFacePayment,
            "QR_CODE_OFFLINE" => ProductCode::QrCodeOffline,
            "GENERAL_WITHHOLDING" => ProductCode::GeneralWithholding,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct TradeRow {
    pub trade_no: String,
    pub app_id: String,
    pub out_trade_no: String,
    pub subject: String,
    pub total_fen: i64,
    pub refunded_fen: i64,
    pub status: TradeStatus,
    /// None until a buyer is known (a precreated QR nobody scanned).
    pub buyer_user_id: Option<String>,
    /// Joined from the buyer's user row; not a trades column.
    pub buyer_logon_id: Option<String>,
    /// Only bar-code payments have one.
    pub auth_code: Option<String>,
    pub cancel_action: Option<String>,
    pub created_at_ms: i64,
    pub paid_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub product_code: ProductCode,
    pub notify_url: Option<String>,
    pub agreement_no: Option<String>,
    pub terminal_id: Option<String>,
    pub store_id: Option<String>,
    pub operator_id: Option<String>,
    /// Service fee charged to the merchant; 0 until paid.
    pub fee_fen: i64,
    pub qr_token: Option<String>,
    pub expires_at_ms: Option<i64>,
    pub auto_confirm_at_ms: Option<i64>,
    /// Joined from the app; not a trades column.
    pub seller_id: Option<String>,
}

/// What made a refund row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundKind {
    /// `alipay.trade.refund`.
    Refund,
    /// The reversal of a paid trade by `alipay.trade.cancel` (action refund).
    Cancel,
}

impl RefundKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundKind::Refund => "refund",
            RefundKind::Cancel => "cancel",
        }
    }

    pub fn parse(s: &str) -> Option<RefundKind> {
        match s {
            "refund" => Some(RefundKind::Refund),
            "cancel" => Some(RefundKind::Cancel),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RefundRow {
    pub trade_no: String,
    pub out_request_no: String,
    pub refund_fen: i64,
    pub refunded_total_fen: i64,
    pub reason: Option<String>,
    pub created_at_ms: i64,
    pub kind: RefundKind,
    /// The part of the trade's service fee given back to the merchant.
    pub fee_fen: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationStatus {
    Pending,
    Delivered,
    Failed,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Delivered => "delivered",
            NotificationStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<NotificationStatus> {
        match s {
            "pending" => Some(NotificationStatus::Pending),
            "delivered" => Some(NotificationStatus::Delivered),
            "failed" => Some(NotificationStatus::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub notify_id: String,
    pub app_id: String,
    pub trade_no: String,
    pub out_trade_no: String,
    pub notify_url: String,
    pub params_json: String,
    pub status: NotificationStatus,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub delivered_at_ms: Option<i64>,
}

/// The result of one delivery attempt, as [`Store::record_notification_attempt`] stores it.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub status: NotificationStatus,
    pub next_attempt_at_ms: i64,
    pub error: Option<String>,
    pub delivered_at_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgreementStatus {
    Normal,
    /// Paused: deductions are refused (`ACQ.AGREEMENT_STATUS_NOT_NORMAL`).
    Stop,
    /// Ended by the buyer; the platform then treats it as not existing.
    Unsign,
}

impl AgreementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgreementStatus::Normal => "NORMAL",
            AgreementStatus::Stop => "STOP",
            AgreementStatus::Unsign => "UNSIGN",
        }
    }

    pub fn parse(s: &str) -> Option<AgreementStatus> {
        match s {
            "NORMAL" => Some(AgreementStatus::Normal),
            "STOP" => Some(AgreementStatus::Stop),
            "UNSIGN" => Some(AgreementStatus::Unsign),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AgreementRow {
    pub agreement_no: String,
    pub app_id: String,
    pub user_id: String,
    pub status: AgreementStatus,
    pub single_limit_fen: i64,
    pub sign_time_ms: i64,
    pub unsign_time_ms: Option<i64>,
    /// Joined from the user; not an agreements column.
    pub logon_id: String,
    /// The merchant's own number for it (signed through `alipay.user.agreement.page.sign`).
    pub external_agreement_no: Option<String>,
    pub personal_product_code: String,
    pub sign_scene: String,
    /// Where `dut_user_sign` and `dut_user_unsign` notifications go; none for the admin shortcut.
    pub notify_url: Option<String>,
}

/// How a merchant names an agreement by its own number.
#[derive(Debug, Clone, Copy)]
pub struct ExternalAgreementKey<'a> {
    pub app_id: &'a str,
    pub personal_product_code: &'a str,
    pub sign_scene: &'a str,
    pub external_agreement_no: &'a str,
}

#[cfg(test)]
mod migration_list_tests {
    use super::*;

    /// Proves the compiled-in migration lists name every file in the migration directories, with
    /// the versions, descriptions and checksums sqlx computes reading the directories itself (so
    /// databases migrated before the lists existed still validate).
    #[tokio::test]
    async fn embedded_migrations_are_the_directories() {
        for (embedded, dir) in [
            (POSTGRES_MIGRATIONS, "migrations/postgres"),
            (SQLITE_MIGRATIONS, "migrations/sqlite"),
        ] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            assert_eq!(embedded.differs_from(&dir).await, None, "{}", dir.display());
        }
    }
}
