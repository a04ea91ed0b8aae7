//! Settlement storage: the only settlement code that speaks SQL.
//!
//! Two jobs. (1) Settlement's own tables (`settlement_*`, migrations per backend in
//! `settlement/migrations/{postgres,sqlite}`, applied by a small runner that records versions in
//! `settlement_migrations` so they never collide with the gateway's sqlx migrations when both
//! live in one database). (2) Reading the gateway's schema (`charges`, `refunds`,
//! `ledger_transactions`, `ledger_lines`, `operators`; gateway/migrations/*/0002_charging.sql)
//! for one business day, read-only.
//!
//! Portable SQL through sqlx `Any` on PostgreSQL and SQLite, as the gateway's store does.
//! Conventions: UTC Unix milliseconds, integer minor units, random positive 63-bit ids.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

use crate::outcome::DayOutcome;

const MIGRATIONS_POSTGRES: &[(i64, &str)] = &[(
    1,
    include_str!("../migrations/postgres/0001_settlement.sql"),
)];
const MIGRATIONS_SQLITE: &[(i64, &str)] =
    &[(1, include_str!("../migrations/sqlite/0001_settlement.sql"))];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Why a write was refused; everything else is a database error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("business day {0} is approved and locked; reopen it with `settlement reopen --date {0} --reason …` first")]
    DayLocked(String),
    #[error("no such exception")]
    NoSuchException,
    #[error("a note is required")]
    EmptyNote,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// One run to store, with everything it produced.
pub struct RunRecord<'a> {
    pub run_id: i64,
    pub scope: &'a str,
    pub inputs_sha256: &'a str,
    pub inputs_json: &'a str,
    pub outputs_sha256: &'a str,
    pub outputs: &'a [OutputFile],
    pub outcome: &'a DayOutcome,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub name: String,
    pub operator_id: String,
    pub content_type: String,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct DayOperatorSummary {
    pub business_day: String,
    pub operator_id: String,
    pub currency: String,
    pub gross_minor: i64,
    pub net_payable_minor: i64,
    pub exceptions_open: i64,
    pub status: String,
}

#[derive(Debug, Clone)]
pub struct StatementLine {
    pub figure: String,
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone)]
pub struct LineItem {
    pub reference: String,
    pub class: String,
    pub amount_minor: i64,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct ExceptionRow {
    pub business_day: String,
    pub key: String,
    pub operator_id: String,
    pub class: String,
    pub reference: String,
    pub amount_minor: i64,
    pub currency: String,
    pub detail: String,
    /// The newest resolution's action, or None while open.
    pub resolution: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ExceptionFilter {
    pub business_day: Option<String>,
    pub operator_id: Option<String>,
    pub class: Option<String>,
    /// "open", "resolved" or None for both.
    pub state: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AuditRow {
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user_id: i64,
    pub user_name: String,
    pub csrf_token: String,
}

/// One money record the gateway booked on the business day, as a row of the gateway export
/// v1 (`formats::gateway`): a capture (`payment`), a refund, or a reversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRecord {
    pub record_type: String,
    pub operator_id: String,
    pub business_day: String,
    pub out_trade_no: String,
    pub provider_trade_no: String,
    pub out_request_no: String,
    pub terminal_id: String,
    pub terminal_sequence: Option<i64>,
    pub kind: String,
    pub amount_minor: i64,
    pub fee_minor: i64,
    pub currency: String,
    pub occurred_at_ms: i64,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn random_id() -> i64 {
    loop {
        let id = rand::random::<i64>() & i64::MAX;
        if id != 0 {
            return id;
        }
    }
}

impl Store {
    /// Connects and applies settlement's migrations. `connections_max` bounds the pool.
    pub async fn connect(url: &str, connections_max: u32) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let options = AnyConnectOptions::from_str(url).context("parsing the database URL")?;
        let pool = AnyPoolOptions::new()
            .max_connections(connections_max.max(2))
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
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
        let store = Store { pool, backend };
        store
            .migrate()
            .await
            .context("running settlement migrations")?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS settlement_migrations (version BIGINT PRIMARY KEY, applied_at_ms BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        let migrations = match self.backend {
            Backend::Postgres => MIGRATIONS_POSTGRES,
            Backend::Sqlite => MIGRATIONS_SQLITE,
        };
        for (version, sql) in migrations {
            let mut tx = self.pool.begin().await?;
            // The insert first: a concurrent migrator conflicts here and waits, then skips.
            let fresh = sqlx::query(
                "INSERT INTO settlement_migrations (version, applied_at_ms) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(*version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if fresh {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    // ----- the gateway's schema, read-only -----

    /// Reads the money records the gateway booked in a business day's window `[start_ms,
    /// end_ms)` (UTC; the window of `DayWindow`), as docs/settlement-formats.md defines the
    /// gateway export: its journal transactions of kind capture (`payment`), refund and
    /// reversal booked in the window, each with its charge's business day (a capture of an
    /// earlier day's charge is then an `other_day` item), kind and terminal. Amounts and fees
    /// come from the journal lines: a capture's amount is its credit (rider_receivable or
    /// operator_payable) and its fee the provider_fees debit; a refund's amount its
    /// operator_payable debit and its fee back the provider_fees credit; a reversal mirrors its
    /// capture. Only payments carry the terminal (the format's rule). Ordered by operator, then
    /// idempotency key: the same data gives the same rows.
    /// A payment is tied to a terminal only with both its id and its sequence (a ticket
    /// machine's order has no sequence): the export format takes both or neither.
    pub async fn gateway_records(
        &self,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<GatewayRecord>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT t.kind, t.operator_id, COALESCE(c.business_day, t.business_day), COALESCE(t.out_trade_no, c.out_trade_no, ''),
                    COALESCE(t.provider_trade_no, c.provider_trade_no, ''), COALESCE(t.out_request_no, ''),
                    CASE WHEN t.kind = 'capture' AND c.terminal_sequence IS NOT NULL THEN COALESCE(c.terminal_id, '') ELSE '' END,
                    CASE WHEN t.kind = 'capture' THEN c.terminal_sequence END, COALESCE(c.kind, ''),
                    CAST(SUM(CASE WHEN t.kind = 'capture' THEN l.credit_minor
                                  WHEN t.kind = 'reversal' THEN l.debit_minor
                                  WHEN l.account = 'operator_payable' THEN l.debit_minor ELSE 0 END) AS BIGINT),
                    CAST(SUM(CASE WHEN l.account <> 'provider_fees' THEN 0
                                  WHEN t.kind = 'capture' THEN l.debit_minor
                                  ELSE l.credit_minor END) AS BIGINT),
                    MIN(l.currency), t.created_at_ms
             FROM ledger_transactions t
             JOIN ledger_lines l ON l.txn_id = t.txn_id
             LEFT JOIN charges c ON c.charge_id = t.charge_id
             WHERE t.created_at_ms >= $1 AND t.created_at_ms < $2 AND t.kind IN ('capture', 'refund', 'reversal')
             GROUP BY t.txn_id, t.idempotency_key, t.kind, t.operator_id, c.business_day, t.business_day, t.out_trade_no,
                      c.out_trade_no, t.provider_trade_no, c.provider_trade_no, t.out_request_no,
                      c.terminal_id, c.terminal_sequence, c.kind, t.created_at_ms
             ORDER BY t.operator_id, t.idempotency_key",
        )
        .bind(start_ms)
        .bind(end_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get(0)?;
                Ok(GatewayRecord {
                    record_type: if kind == "capture" {
                        "payment".into()
                    } else {
                        kind
                    },
                    operator_id: r.try_get(1)?,
                    business_day: r.try_get(2)?,
                    out_trade_no: r.try_get(3)?,
                    provider_trade_no: r.try_get(4)?,
                    out_request_no: r.try_get(5)?,
                    terminal_id: r.try_get(6)?,
                    terminal_sequence: r.try_get(7)?,
                    kind: r.try_get(8)?,
                    amount_minor: r.try_get(9)?,
                    fee_minor: r.try_get(10)?,
                    currency: r.try_get(11)?,
                    occurred_at_ms: r.try_get(12)?,
                })
            })
            .collect()
    }

    /// Each operator's provider fee rate in its contract, basis points (gateway `operators`).
    pub async fn gateway_fee_rates_bp(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT operator_id, provider_fee_rate_bp FROM operators ORDER BY operator_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    // ----- runs -----

    /// Status of a business day: "open" (also for a day never approved) or "approved".
    pub async fn day_status(&self, business_day: &str) -> Result<String, sqlx::Error> {
        let row = sqlx::query("SELECT status FROM settlement_days WHERE business_day = $1")
            .bind(business_day)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => "open".into(),
        })
    }

    /// Stores a run and replaces the day's current statement and exceptions, all in one
    /// transaction: a refused or failed run leaves nothing behind. Refused on a locked day.
    pub async fn save_run(&self, run: &RunRecord<'_>) -> Result<(), StoreError> {
        let day = run.outcome.business_day.as_str();
        let mut tx = self.pool.begin().await?;
        // Lock the day row first, so a concurrent approval and this run serialize on it.
        let locked = lock_day_row(&mut tx, day).await? == "approved";
        if locked {
            return Err(StoreError::DayLocked(day.to_string()));
        }
        sqlx::query(
            "INSERT INTO settlement_runs (run_id, business_day, scope, inputs_sha256, inputs_json, outputs_sha256, started_at_ms, finished_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(run.run_id)
        .bind(day)
        .bind(run.scope)
        .bind(run.inputs_sha256)
        .bind(run.inputs_json)
        .bind(run.outputs_sha256)
        .bind(run.started_at_ms)
        .bind(run.finished_at_ms)
        .execute(&mut *tx)
        .await?;
        for o in run.outputs {
            sqlx::query(
                "INSERT INTO settlement_run_outputs (run_id, name, operator_id, content_type, body, sha256) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(run.run_id)
            .bind(&o.name)
            .bind(&o.operator_id)
            .bind(&o.content_type)
            .bind(&o.body)
            .bind(sha256_hex(o.body.as_bytes()))
            .execute(&mut *tx)
            .await?;
        }
        for op in &run.outcome.operators {
            let id = op.operator_id.as_str();
            for table in [
                "settlement_statement_lines",
                "settlement_line_items",
                "settlement_exceptions",
            ] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE business_day = $1 AND operator_id = $2"
                ))
                .bind(day)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            for (line_no, f) in op.figures.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO settlement_statement_lines (business_day, operator_id, line_no, figure, amount_minor, currency, run_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(day)
                .bind(id)
                .bind(line_no as i64)
                .bind(&f.name)
                .bind(f.amount_minor)
                .bind(&op.currency)
                .bind(run.run_id)
                .execute(&mut *tx)
                .await?;
                for (item_no, it) in f.items.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO settlement_line_items (business_day, operator_id, figure, item_no, reference, class, amount_minor, detail)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(day)
                    .bind(id)
                    .bind(&f.name)
                    .bind(item_no as i64)
                    .bind(&it.reference)
                    .bind(&it.class)
                    .bind(it.amount_minor)
                    .bind(&it.detail)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            for e in &op.exceptions {
                sqlx::query(
                    "INSERT INTO settlement_exceptions (business_day, exception_key, operator_id, class, reference, amount_minor, currency, detail, run_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(day)
                .bind(&e.key)
                .bind(id)
                .bind(&e.class)
                .bind(&e.reference)
                .bind(e.amount_minor)
                .bind(&op.currency)
                .bind(&e.detail)
                .bind(run.run_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        insert_audit(
            &mut tx,
            day,
            "run",
            "run",
            &format!(
                "run {} scope {} inputs {} outputs {}",
                run.run_id,
                if run.scope.is_empty() {
                    "all"
                } else {
                    run.scope
                },
                run.inputs_sha256,
                run.outputs_sha256
            ),
            run.finished_at_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest run of a day: (run id, inputs hash, outputs hash).
    pub async fn latest_run(
        &self,
        business_day: &str,
    ) -> Result<Option<(i64, String, String)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT run_id, inputs_sha256, outputs_sha256 FROM settlement_runs WHERE business_day = $1
             ORDER BY finished_at_ms DESC, run_id DESC LIMIT 1",
        )
        .bind(business_day)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .transpose()
    }

    /// A stored output file of a run, by name.
    pub async fn run_outputs(&self, run_id: i64) -> Result<Vec<OutputFile>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT name, operator_id, content_type, body FROM settlement_run_outputs WHERE run_id = $1 ORDER BY name",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutputFile {
                    name: r.try_get(0)?,
                    operator_id: r.try_get(1)?,
                    content_type: r.try_get(2)?,
                    body: r.try_get(3)?,
                })
            })
            .collect()
    }

    // ----- review -----

    /// The newest stored output file of a day by name (a run for one operator replaces only
    /// that operator's files).
    pub async fn latest_output(
        &self,
        business_day: &str,
        name: &str,
    ) -> Result<Option<OutputFile>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT o.name, o.operator_id, o.content_type, o.body
             FROM settlement_run_outputs o JOIN settlement_runs r ON r.run_id = o.run_id
             WHERE r.business_day = $1 AND o.name = $2
             ORDER BY r.finished_at_ms DESC, r.run_id DESC LIMIT 1",
        )
        .bind(business_day)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(OutputFile {
                name: r.try_get(0)?,
                operator_id: r.try_get(1)?,
                content_type: r.try_get(2)?,
                body: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Every (day, operator) with a statement: totals, open exceptions, status. Newest first.
    pub async fn day_summaries(&self) -> Result<Vec<DayOperatorSummary>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT s.business_day, s.operator_id, MIN(s.currency),
                    CAST(SUM(CASE WHEN s.figure = 'gross' THEN s.amount_minor ELSE 0 END) AS BIGINT),
                    CAST(SUM(CASE WHEN s.figure = 'net_payable' THEN s.amount_minor ELSE 0 END) AS BIGINT),
                    COALESCE(MIN(d.status), 'open')
             FROM settlement_statement_lines s
             LEFT JOIN settlement_days d ON d.business_day = s.business_day
             GROUP BY s.business_day, s.operator_id
             ORDER BY s.business_day DESC, s.operator_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let business_day: String = r.try_get(0)?;
            let operator_id: String = r.try_get(1)?;
            let open = self
                .exceptions(&ExceptionFilter {
                    business_day: Some(business_day.clone()),
                    operator_id: Some(operator_id.clone()),
                    class: None,
                    state: Some("open".into()),
                })
                .await?
                .len() as i64;
            out.push(DayOperatorSummary {
                business_day,
                operator_id,
                currency: r.try_get(2)?,
                gross_minor: r.try_get(3)?,
                net_payable_minor: r.try_get(4)?,
                exceptions_open: open,
                status: r.try_get(5)?,
            });
        }
        Ok(out)
    }

    /// Days that have a statement.
    pub async fn statement_days(&self) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT business_day FROM settlement_statement_lines ORDER BY business_day",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }

    pub async fn statement(
        &self,
        business_day: &str,
        operator_id: &str,
    ) -> Result<Vec<StatementLine>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT figure, amount_minor, currency FROM settlement_statement_lines
             WHERE business_day = $1 AND operator_id = $2 ORDER BY line_no",
        )
        .bind(business_day)
        .bind(operator_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StatementLine {
                    figure: r.try_get(0)?,
                    amount_minor: r.try_get(1)?,
                    currency: r.try_get(2)?,
                })
            })
            .collect()
    }

    pub async fn line_items(
        &self,
        business_day: &str,
        operator_id: &str,
        figure: &str,
    ) -> Result<Vec<LineItem>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT reference, class, amount_minor, detail FROM settlement_line_items
             WHERE business_day = $1 AND operator_id = $2 AND figure = $3 ORDER BY item_no",
        )
        .bind(business_day)
        .bind(operator_id)
        .bind(figure)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LineItem {
                    reference: r.try_get(0)?,
                    class: r.try_get(1)?,
                    amount_minor: r.try_get(2)?,
                    detail: r.try_get(3)?,
                })
            })
            .collect()
    }

    pub async fn exceptions(&self, f: &ExceptionFilter) -> Result<Vec<ExceptionRow>, sqlx::Error> {
        // The newest resolution per exception, by a correlated subquery (portable to both).
        let rows = sqlx::query(
            "SELECT e.business_day, e.exception_key, e.operator_id, e.class, e.reference,
                    e.amount_minor, e.currency, e.detail,
                    (SELECT r.action FROM settlement_resolutions r
                      WHERE r.business_day = e.business_day AND r.exception_key = e.exception_key
                      ORDER BY r.seq DESC LIMIT 1)
             FROM settlement_exceptions e
             WHERE ($1 = '' OR e.business_day = $1) AND ($2 = '' OR e.operator_id = $2)
               AND ($3 = '' OR e.class = $3)
             ORDER BY e.business_day DESC, e.operator_id, e.exception_key",
        )
        .bind(f.business_day.clone().unwrap_or_default())
        .bind(f.operator_id.clone().unwrap_or_default())
        .bind(f.class.clone().unwrap_or_default())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let row = ExceptionRow {
                business_day: r.try_get(0)?,
                key: r.try_get(1)?,
                operator_id: r.try_get(2)?,
                class: r.try_get(3)?,
                reference: r.try_get(4)?,
                amount_minor: r.try_get(5)?,
                currency: r.try_get(6)?,
                detail: r.try_get(7)?,
                resolution: r.try_get(8)?,
            };
            let keep = match f.state.as_deref() {
                Some("open") => row.resolution.is_none(),
                Some("resolved") => row.resolution.is_some(),
                _ => true,
            };
            if keep {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Records a resolution (with its mandatory note) and its audit line. Refused on a locked
    /// day or with an empty note.
    pub async fn resolve_exception(
        &self,
        business_day: &str,
        key: &str,
        action: &str,
        note: &str,
        adjust_minor: Option<i64>,
        user: &str,
    ) -> Result<(), StoreError> {
        let note = note.trim();
        if note.is_empty() {
            return Err(StoreError::EmptyNote);
        }
        let mut tx = self.pool.begin().await?;
        let status = lock_day_row(&mut tx, business_day).await?;
        if status == "approved" {
            return Err(StoreError::DayLocked(business_day.into()));
        }
        let exists = sqlx::query(
            "SELECT 1 FROM settlement_exceptions WHERE business_day = $1 AND exception_key = $2",
        )
        .bind(business_day)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
        if !exists {
            return Err(StoreError::NoSuchException);
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO settlement_resolutions (business_day, seq, exception_key, action, note, adjust_minor, user_name, at_ms)
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM settlement_resolutions WHERE business_day = $1),
                     $2, $3, $4, $5, $6, $7)",
        )
        .bind(business_day)
        .bind(key)
        .bind(action)
        .bind(note)
        .bind(adjust_minor)
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let adjust = adjust_minor
            .map(|a| format!(" adjust {a}"))
            .unwrap_or_default();
        insert_audit(
            &mut tx,
            business_day,
            user,
            "resolve",
            &format!("{key}: {action}{adjust}: {note}"),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Approves (locks) a day. Idempotent: approving an approved day changes nothing.
    pub async fn approve_day(&self, business_day: &str, user: &str) -> Result<bool, StoreError> {
        self.set_day_status(business_day, "approved", user, "approve", "")
            .await
    }

    /// Reopens an approved day; the reason is mandatory and audited.
    pub async fn reopen_day(
        &self,
        business_day: &str,
        actor: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        if reason.trim().is_empty() {
            return Err(StoreError::EmptyNote);
        }
        self.set_day_status(business_day, "open", actor, "reopen", reason.trim())
            .await
    }

    async fn set_day_status(
        &self,
        business_day: &str,
        status: &str,
        actor: &str,
        action: &str,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let current = lock_day_row(&mut tx, business_day).await?;
        if current == status {
            return Ok(false);
        }
        let now = now_ms();
        sqlx::query(
            "UPDATE settlement_days SET status = $2, changed_by = $3, changed_at_ms = $4 WHERE business_day = $1",
        )
        .bind(business_day)
        .bind(status)
        .bind(actor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, business_day, actor, action, detail, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn audit(&self, business_day: &str) -> Result<Vec<AuditRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT actor, action, detail, at_ms FROM settlement_audit WHERE business_day = $1 ORDER BY seq",
        )
        .bind(business_day)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    actor: r.try_get(0)?,
                    action: r.try_get(1)?,
                    detail: r.try_get(2)?,
                    at_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    // ----- users and sessions -----

    /// Adds a user, or replaces the password of an existing one.
    pub async fn upsert_user(&self, name: &str, password_hash: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO settlement_users (user_id, name, password_hash, created_at_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
        )
        .bind(random_id())
        .bind(name)
        .bind(password_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// (user id, password hash) of a user.
    pub async fn user(&self, name: &str) -> Result<Option<(i64, String)>, sqlx::Error> {
        let row =
            sqlx::query("SELECT user_id, password_hash FROM settlement_users WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    pub async fn create_session(
        &self,
        token_sha256: &str,
        user_id: i64,
        csrf_token: &str,
        expires_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM settlement_sessions WHERE expires_at_ms < $1")
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO settlement_sessions (token_sha256, user_id, csrf_token, expires_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_sha256)
        .bind(user_id)
        .bind(csrf_token)
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, token_sha256: &str) -> Result<Option<SessionRow>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT s.user_id, u.name, s.csrf_token FROM settlement_sessions s
             JOIN settlement_users u ON u.user_id = s.user_id
             WHERE s.token_sha256 = $1 AND s.expires_at_ms > $2",
        )
        .bind(token_sha256)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                user_id: r.try_get(0)?,
                user_name: r.try_get(1)?,
                csrf_token: r.try_get(2)?,
            })
        })
        .transpose()
    }

    pub async fn delete_session(&self, token_sha256: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM settlement_sessions WHERE token_sha256 = $1")
            .bind(token_sha256)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Ensures the day row exists and locks it for the transaction (PostgreSQL: a no-op UPDATE
/// takes the row lock; SQLite: the write takes the database lock). Returns its status.
async fn lock_day_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
) -> Result<String, sqlx::Error> {
    sqlx::query(
        "INSERT INTO settlement_days (business_day, status, changed_by, changed_at_ms)
         VALUES ($1, 'open', 'system', $2) ON CONFLICT DO NOTHING",
    )
    .bind(day)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE settlement_days SET changed_at_ms = changed_at_ms WHERE business_day = $1")
        .bind(day)
        .execute(&mut **tx)
        .await?;
    sqlx::query("SELECT status FROM settlement_days WHERE business_day = $1")
        .bind(day)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)
}

/// Appends to a day's audit trail. Callers hold the day's row lock (`lock_day_row`), which
/// serializes the `seq` numbering.
async fn insert_audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    actor: &str,
    action: &str,
    detail: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO settlement_audit (business_day, seq, actor, action, detail, at_ms)
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM settlement_audit WHERE business_day = $1), $2, $3, $4, $5)",
    )
    .bind(day)
    .bind(actor)
    .bind(action)
    .bind(detail)
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
