//! Storage: the only module that speaks SQL.
//!
//! One set of portable SQL runs on PostgreSQL and SQLite through sqlx's `Any` driver; only the
//! migrations differ per backend (the gateway's pattern). Uniqueness that the API promises —
//! one trade per (app, out_trade_no), one refund per (trade, out_request_no), one use per payment
//! code — is a database constraint or a guarded `UPDATE … WHERE`, so concurrent retries cannot
//! double-charge. The business rules live in [`crate::trade`]; this module only reads and writes.
//!
//! Conventions: times are UTC Unix milliseconds, money is integer fen, booleans are 0/1 BIGINT
//! (portable through `Any`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

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

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a request waits for a pooled connection before failing with a system error.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Connects and runs migrations. `connections_max` bounds the pool.
    pub async fn connect(url: &str, connections_max: u32) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let options = AnyConnectOptions::from_str(url).context("parsing the database url")?;
        let pool = AnyPoolOptions::new()
            .max_connections(connections_max.max(2))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the single writer; FULL sync makes every
                        // acknowledged payment survive power loss; the busy timeout makes
                        // concurrent writers wait instead of failing.
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = FULL",
                            "PRAGMA busy_timeout = 5000",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to the {backend:?} database"))?;
        let migrator = match backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator.run(&pool).await.context("running migrations")?;
        let sqlite_writer =
            (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        Ok(Store {
            pool,
            sqlite_writer,
        })
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

    /// Registers an app or replaces its key (the console lets a merchant rotate its key).
    pub async fn upsert_app(
        &self,
        app_id: &str,
        public_key_pkcs1_b64: &str,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO apps (app_id, public_key_pkcs1_b64, created_at_ms) VALUES ($1, $2, $3)
             ON CONFLICT (app_id) DO UPDATE SET public_key_pkcs1_b64 = excluded.public_key_pkcs1_b64",
        )
        .bind(app_id)
        .bind(public_key_pkcs1_b64)
        .bind(now_ms)
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

    // ----- users and payment codes -----

    pub async fn insert_user(&self, user: &UserRow) -> Result<bool, sqlx::Error> {
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

    pub async fn insert_payment_code(&self, code: &PaymentCodeRow) -> Result<bool, sqlx::Error> {
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
        let rows = sqlx::query(
            "SELECT trade_no, out_request_no, refund_fen, refunded_total_fen, reason, created_at_ms
             FROM refunds WHERE trade_no = $1 ORDER BY created_at_ms, out_request_no",
        )
        .bind(trade_no)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(refund_from_row).collect()
    }
}

// ----- transactional primitives used by `crate::trade` -----

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

async fn trade_where(
    conn: &mut sqlx::AnyConnection,
    condition: &str,
    key: &str,
    app_id: Option<&str>,
) -> Result<Option<TradeRow>, sqlx::Error> {
    let sql = format!(
        "SELECT t.trade_no, t.app_id, t.out_trade_no, t.subject, t.total_fen, t.refunded_fen,
                t.status, t.buyer_user_id, u.logon_id, t.auth_code, t.cancel_action,
                t.created_at_ms, t.paid_at_ms, t.closed_at_ms
         FROM trades t JOIN users u ON u.user_id = t.buyer_user_id WHERE {condition}"
    );
    let mut query = sqlx::query(&sql).bind(key);
    if let Some(app_id) = app_id {
        query = query.bind(app_id);
    }
    let row = query.fetch_optional(&mut *conn).await?;
    row.map(|r| trade_from_row(&r)).transpose()
}

fn trade_from_row(r: &AnyRow) -> Result<TradeRow, sqlx::Error> {
    let status: String = r.try_get(6)?;
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
    })
}

/// Inserts a new trade; false when (app, out_trade_no) already exists.
pub async fn insert_trade(tx: &mut Tx, t: &TradeRow) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO trades (trade_no, app_id, out_trade_no, subject, total_fen, refunded_fen, status,
                             buyer_user_id, auth_code, cancel_action, created_at_ms, paid_at_ms, closed_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING",
    )
    .bind(&t.trade_no)
    .bind(&t.app_id)
    .bind(&t.out_trade_no)
    .bind(&t.subject)
    .bind(t.total_fen)
    .bind(t.refunded_fen)
    .bind(t.status.as_str())
    .bind(&t.buyer_user_id)
    .bind(&t.auth_code)
    .bind(t.cancel_action.as_deref())
    .bind(t.created_at_ms)
    .bind(t.paid_at_ms)
    .bind(t.closed_at_ms)
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
                cancel_action = COALESCE($4, cancel_action)
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

pub async fn refund(
    tx: &mut Tx,
    trade_no: &str,
    out_request_no: &str,
) -> Result<Option<RefundRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT trade_no, out_request_no, refund_fen, refunded_total_fen, reason, created_at_ms
         FROM refunds WHERE trade_no = $1 AND out_request_no = $2",
    )
    .bind(trade_no)
    .bind(out_request_no)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(refund_from_row).transpose()
}

/// Inserts a refund record; false when (trade, out_request_no) already exists.
pub async fn insert_refund(tx: &mut Tx, r: &RefundRow) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO refunds (trade_no, out_request_no, refund_fen, refunded_total_fen, reason, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&r.trade_no)
    .bind(&r.out_request_no)
    .bind(r.refund_fen)
    .bind(r.refunded_total_fen)
    .bind(r.reason.as_deref())
    .bind(r.created_at_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

fn refund_from_row(r: &AnyRow) -> Result<RefundRow, sqlx::Error> {
    Ok(RefundRow {
        trade_no: r.try_get(0)?,
        out_request_no: r.try_get(1)?,
        refund_fen: r.try_get(2)?,
        refunded_total_fen: r.try_get(3)?,
        reason: r.try_get(4)?,
        created_at_ms: r.try_get(5)?,
    })
}

// ----- rows -----

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

#[derive(Debug, Clone)]
pub struct TradeRow {
    pub trade_no: String,
    pub app_id: String,
    pub out_trade_no: String,
    pub subject: String,
    pub total_fen: i64,
    pub refunded_fen: i64,
    pub status: TradeStatus,
    pub buyer_user_id: String,
    /// Joined from the buyer's user row; not a trades column.
    pub buyer_logon_id: String,
    pub auth_code: String,
    pub cancel_action: Option<String>,
    pub created_at_ms: i64,
    pub paid_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct RefundRow {
    pub trade_no: String,
    pub out_request_no: String,
    pub refund_fen: i64,
    pub refunded_total_fen: i64,
    pub reason: Option<String>,
    pub created_at_ms: i64,
}
