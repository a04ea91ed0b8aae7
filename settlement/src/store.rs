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

use anyhow::Context;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyPool, Row};

use crate::digest::sha256_hex;
use crate::outcome::{DayOutcome, OperatorOutcome, RecordPage, RECORD_FIGURES};
use crate::outputs::OutputFile;

const MIGRATIONS_POSTGRES: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/postgres/0001_settlement.sql"),
    ),
    (
        2,
        include_str!("../migrations/postgres/0002_operator_days.sql"),
    ),
    (
        3,
        include_str!("../migrations/postgres/0003_record_pages.sql"),
    ),
];
const MIGRATIONS_SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_settlement.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_operator_days.sql"),
    ),
    (
        3,
        include_str!("../migrations/sqlite/0003_record_pages.sql"),
    ),
];

/// Which database settlement's store talks to (shared with the other stores: `turnpike-db`).
pub use turnpike_db::Backend;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Why a write was refused; everything else is a database error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("business day {0} is approved and locked (all its operators); reopen an operator with `settlement reopen --date {0} --operator OPERATOR --reason …` first")]
    DayLocked(String),
    #[error("business day {day} of operator {operator} is approved and locked; reopen it with `settlement reopen --date {day} --operator {operator} --reason …` first (or settle the other operators with --operator)")]
    OperatorLocked { day: String, operator: String },
    #[error("the run of {source_day} changes the item {reference} it carried into the approved statement of {operator} for {booked_day}; reopen that with `settlement reopen --date {booked_day} --operator {operator} --reason …` first")]
    CarryLocked {
        source_day: String,
        operator: String,
        reference: String,
        booked_day: String,
    },
    #[error("no such exception")]
    NoSuchException,
    #[error("no statement for this day and operator")]
    NoSuchStatement,
    #[error("a note is required")]
    EmptyNote,
    #[error("an adjust resolution needs an amount (adjust_minor)")]
    AdjustWithoutAmount,
    /// Approval must name how many open exceptions the approver saw; the count differs (a
    /// first approval of a statement with open exceptions, or a stale confirmation).
    #[error("{operator}'s statement of {day} has {open} open exception(s) but the approval confirmed {confirmed}; review them and confirm the current number")]
    OpenExceptionsUnconfirmed {
        day: String,
        operator: String,
        open: usize,
        confirmed: usize,
    },
    /// A resolution that would change the money of an approved statement (the rule is on
    /// [`Store::resolve_exception`]).
    #[error("the statement of {operator} for {day} is approved: {why}; reopen it with `settlement reopen --date {day} --operator {operator} --reason …` first (until then only accept, write off and chase provider are allowed, and not on an exception whose current resolution is an adjustment)")]
    ApprovedStatementChange {
        day: String,
        operator: String,
        why: &'static str,
    },
    /// Four-eyes approval: the approver resolved exceptions of this statement.
    #[error("{user} resolved {resolved} exception(s) of {operator}'s statement of {day}; four-eyes approval needs another person to approve it (or turn four-eyes approval off: `settlement operator four-eyes --operator {operator} off`)")]
    FourEyes {
        day: String,
        operator: String,
        user: String,
        resolved: u64,
    },
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// One run to store: the engine's outcome of its operators (their statements before
/// adjustments; `save_run` composes and renders them).
pub struct RunRecord<'a> {
    pub run_id: i64,
    pub scope: &'a str,
    pub outcome: &'a DayOutcome,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
}

/// What a stored run published: its operators' statements with their adjustments, and the
/// files (as stored with the run).
pub struct SavedRun {
    /// The run's inputs fingerprint (as `inputs` gave it).
    pub inputs_sha256: String,
    pub outcome: DayOutcome,
    pub files: Vec<OutputFile>,
    pub outputs_sha256: String,
}

/// An `other_day` item a run carried to the day it belongs to (`settlement_carries`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarryRow {
    pub source_day: String,
    pub operator_id: String,
    pub key: String,
    pub reference: String,
    pub belongs_to: String,
    /// The statement it is in: `belongs_to`, or the source day when `belongs_to` was approved.
    pub booked_day: String,
    pub record: String,
    pub amount_minor: i64,
    pub fee_minor: i64,
    pub net_minor: i64,
    pub currency: String,
    pub detail: String,
}

/// Settlement's settings of an operator's business day (`settlement operator set`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSetting {
    pub operator_id: String,
    /// IANA zone; None = the gateway's `operators.time_zone`, else Asia/Shanghai.
    pub time_zone: Option<String>,
    /// `HH:MM`, local time the business day starts.
    pub cutoff: String,
}

#[derive(Debug, Clone)]
pub struct DayOperatorSummary {
    pub business_day: String,
    pub operator_id: String,
    pub currency: String,
    pub gross_minor: i64,
    pub net_payable_minor: i64,
    pub exceptions_open: i64,
    /// The (day, operator)'s approval: "open" or "approved".
    pub status: String,
    pub adjustments_minor: i64,
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
    /// Adjustments: the day of the exception behind the item ('' for other items).
    pub source_day: String,
    /// Adjustments: the exception behind the item (its resolution or its other_day item).
    pub exception_key: String,
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

/// The columns [`exception_row`] reads, of `settlement_exceptions e`.
const EXCEPTION_COLUMNS: &str =
    "e.business_day, e.exception_key, e.operator_id, e.class, e.reference,
     e.amount_minor, e.currency, e.detail, e.resolution";

fn exception_row(r: &sqlx::any::AnyRow) -> Result<ExceptionRow, sqlx::Error> {
    Ok(ExceptionRow {
        business_day: r.try_get(0)?,
        key: r.try_get(1)?,
        operator_id: r.try_get(2)?,
        class: r.try_get(3)?,
        reference: r.try_get(4)?,
        amount_minor: r.try_get(5)?,
        currency: r.try_get(6)?,
        detail: r.try_get(7)?,
        resolution: r.try_get(8)?,
    })
}

/// The orders the exceptions queue is sorted in; each ends with (day, key) so it is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExceptionSort {
    /// Newest day first (the default).
    #[default]
    Day,
    /// Largest amount first.
    AmountDesc,
    /// Smallest amount first.
    AmountAsc,
    Reference,
    Class,
    Operator,
}

impl ExceptionSort {
    pub const ALL: [(ExceptionSort, &'static str); 6] = [
        (ExceptionSort::Day, "day"),
        (ExceptionSort::AmountDesc, "amount"),
        (ExceptionSort::AmountAsc, "-amount"),
        (ExceptionSort::Reference, "reference"),
        (ExceptionSort::Class, "class"),
        (ExceptionSort::Operator, "operator"),
    ];

    pub fn parse(name: &str) -> Option<ExceptionSort> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("day", |(_, n)| n)
    }

    /// (the column sorted on, descending).
    fn column(self) -> (&'static str, bool) {
        match self {
            ExceptionSort::Day => ("e.business_day", true),
            ExceptionSort::AmountDesc => ("e.amount_minor", true),
            ExceptionSort::AmountAsc => ("e.amount_minor", false),
            ExceptionSort::Reference => ("e.reference", false),
            ExceptionSort::Class => ("e.class", false),
            ExceptionSort::Operator => ("e.operator_id", false),
        }
    }

    fn numeric(self) -> bool {
        matches!(self, ExceptionSort::AmountDesc | ExceptionSort::AmountAsc)
    }

    fn cursor(self, r: &ExceptionRow) -> ExceptionCursor {
        let value = match self {
            ExceptionSort::Day => r.business_day.clone(),
            ExceptionSort::AmountDesc | ExceptionSort::AmountAsc => r.amount_minor.to_string(),
            ExceptionSort::Reference => r.reference.clone(),
            ExceptionSort::Class => r.class.clone(),
            ExceptionSort::Operator => r.operator_id.clone(),
        };
        ExceptionCursor {
            value,
            business_day: r.business_day.clone(),
            key: r.key.clone(),
        }
    }
}

/// Where a page of the exceptions queue starts: after the row with this sort value, day and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionCursor {
    pub value: String,
    pub business_day: String,
    pub key: String,
}

/// A page of the exceptions queue.
#[derive(Debug, Clone)]
pub struct ExceptionPage {
    pub rows: Vec<ExceptionRow>,
    /// How many exceptions the filter selects in all.
    pub total: u64,
    /// The next page's cursor; None on the last page.
    pub next: Option<ExceptionCursor>,
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
        let backend = Backend::of_url(url);
        let options = AnyConnectOptions::from_str(url).context("parsing the database URL")?;
        let pool = turnpike_db::pool_options(backend, connections_max.max(2))
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
    /// Rows are streamed to `each` (a city's day is millions of them), in that order.
    pub async fn gateway_records(
        &self,
        start_ms: i64,
        end_ms: i64,
        each: &mut (dyn FnMut(GatewayRecord) -> anyhow::Result<()> + Send),
    ) -> anyhow::Result<()> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query(
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
        .fetch(&self.pool);
        while let Some(r) = rows.try_next().await? {
            let kind: String = r.try_get(0)?;
            each(GatewayRecord {
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
            })?;
        }
        Ok(())
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

    /// Stores a run and replaces its operators' current base statements, exceptions and carried
    /// items, then composes and stores their statements (with adjustments) and those of the
    /// days its carried items are booked to — all in one transaction: a refused or failed run
    /// leaves nothing behind. Refused when any of its operators' day is approved, or when it
    /// would change a carried item already in an approved statement.
    ///
    /// `pages` are the records behind the figures (the engine's producer sends them while this
    /// stores them); they replace the (day, operator)'s pages in the same transaction.
    ///
    /// `inputs` gives the inputs' fingerprint and their list (JSON); it is awaited only at the
    /// end, so reading gigabytes of inputs overlaps with storing the records.
    pub async fn save_run(
        &self,
        run: &RunRecord<'_>,
        inputs: crate::BoxFuture<'_, anyhow::Result<(String, String)>>,
        pages: &mut tokio::sync::mpsc::Receiver<RecordPage>,
    ) -> Result<SavedRun, StoreError> {
        let day = run.outcome.business_day.as_str();
        let mut tx = self.pool.begin().await?;
        // Lock the day row first, so a concurrent approval and this run serialize on it.
        if lock_day_row(&mut tx, day).await? == "approved" {
            return Err(StoreError::DayLocked(day.to_string()));
        }
        for op in &run.outcome.operators {
            if operator_status_tx(&mut tx, day, &op.operator_id).await? == "approved" {
                return Err(StoreError::OperatorLocked {
                    day: day.to_string(),
                    operator: op.operator_id.clone(),
                });
            }
        }
        // The run row first (its outputs refer to it); its outputs' hash once composed.
        sqlx::query(
            "INSERT INTO settlement_runs (run_id, business_day, scope, inputs_sha256, inputs_json, outputs_sha256, started_at_ms, finished_at_ms)
             VALUES ($1, $2, $3, '', '', '', $4, $5)",
        )
        .bind(run.run_id)
        .bind(day)
        .bind(run.scope)
        .bind(run.started_at_ms)
        .bind(run.finished_at_ms)
        .execute(&mut *tx)
        .await?;
        for op in &run.outcome.operators {
            let id = op.operator_id.as_str();
            sqlx::query(
                "DELETE FROM settlement_bases WHERE business_day = $1 AND operator_id = $2",
            )
            .bind(day)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO settlement_bases (business_day, operator_id, run_id, outcome_json) VALUES ($1, $2, $3, $4)",
            )
            .bind(day)
            .bind(id)
            .bind(run.run_id)
            .bind(serde_json::to_string(op).map_err(|e| StoreError::Invalid(e.into()))?)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM settlement_exceptions WHERE business_day = $1 AND operator_id = $2",
            )
            .bind(day)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            insert_exceptions(&mut tx, day, op, run.run_id).await?;
            // Resolutions made before this run still apply (keys are stable across runs).
            sqlx::query(
                "UPDATE settlement_exceptions SET resolution = (
                     SELECT r.action FROM settlement_resolutions r
                     WHERE r.business_day = settlement_exceptions.business_day
                       AND r.exception_key = settlement_exceptions.exception_key
                     ORDER BY r.seq DESC LIMIT 1)
                 WHERE business_day = $1 AND operator_id = $2 AND exception_key IN (
                     SELECT exception_key FROM settlement_resolutions WHERE business_day = $1)",
            )
            .bind(day)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            for table in ["settlement_record_sets", "settlement_class_counts"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE business_day = $1 AND operator_id = $2"
                ))
                .bind(day)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            // Every other run's pages: the previous run's, and any a failed run left.
            sqlx::query(
                "DELETE FROM settlement_record_pages WHERE business_day = $1 AND operator_id = $2 AND run_id <> $3",
            )
            .bind(day)
            .bind(id)
            .bind(run.run_id)
            .execute(&mut *tx)
            .await?;
        }
        for op in &run.outcome.operators {
            for (class, items) in &op.class_counts {
                sqlx::query(
                    "INSERT INTO settlement_class_counts (business_day, operator_id, class, items, run_id) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(day)
                .bind(&op.operator_id)
                .bind(class)
                .bind(*items as i64)
                .bind(run.run_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        // PostgreSQL: pages go in beside this transaction, on connections of their own.
        let writers = match self.backend {
            Backend::Postgres => Some(&self.pool),
            Backend::Sqlite => None,
        };
        let record_sets = insert_record_pages(&mut tx, writers, day, run.run_id, pages).await?;
        for op in &run.outcome.operators {
            check_record_sets(op, &record_sets).map_err(StoreError::Invalid)?;
        }
        // Carried items: replaced per (day, operator); the statements they leave or join change.
        let mut elsewhere: std::collections::BTreeSet<(String, String)> = Default::default();
        for op in &run.outcome.operators {
            for d in replace_carries(&mut tx, day, op, run.run_id).await? {
                elsewhere.insert((d, op.operator_id.clone()));
            }
        }
        for (d, op) in &elsewhere {
            lock_day_row(&mut tx, d).await?;
            let composed = publish_tx(&mut tx, d, op, None, false).await?;
            let carried: Vec<String> = sqlx::query(
                "SELECT reference FROM settlement_carries WHERE booked_day = $1 AND operator_id = $2 AND source_day = $3 ORDER BY carry_key",
            )
            .bind(d)
            .bind(op)
            .bind(day)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
            insert_audit(
                &mut tx,
                d,
                "run",
                "carry",
                &format!(
                    "run {} of {day} carries {} item(s) of {op} here{}{}",
                    run.run_id,
                    carried.len(),
                    if carried.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", carried.join(", "))
                    },
                    if composed.is_some() {
                        "; statement recomposed"
                    } else {
                        "; waiting for this day's run"
                    }
                ),
                run.finished_at_ms,
            )
            .await?;
        }
        let mut outcome = DayOutcome {
            business_day: day.to_string(),
            operators: Vec::new(),
        };
        let mut files = Vec::new();
        for base in &run.outcome.operators {
            let (op, op_files) = publish_tx(
                &mut tx,
                day,
                &base.operator_id,
                Some((base, run.run_id)),
                true,
            )
            .await?
            .expect("a base was given");
            outcome.operators.push(op);
            files.extend(op_files);
        }
        let exceptions = crate::outputs::render_exceptions(&outcome);
        put_output(&mut tx, day, &exceptions, run.run_id).await?;
        files.push(exceptions);
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let records: Vec<(String, String)> = run
            .outcome
            .operators
            .iter()
            .map(|op| {
                let sets: String = RECORD_FIGURES
                    .iter()
                    .map(|figure| {
                        let sha = record_sets
                            .get(&(op.operator_id.clone(), *figure))
                            .map(|s| s.sha256.clone())
                            .unwrap_or_default();
                        format!("{figure} {sha}\n")
                    })
                    .collect();
                (
                    format!("{}/records.csv", op.operator_id),
                    sha256_hex(sets.as_bytes()),
                )
            })
            .collect();
        let outputs_sha256 = crate::outputs::outputs_sha256(&files, &records);
        let (inputs_sha256, inputs_json) = inputs.await.map_err(StoreError::Invalid)?;
        sqlx::query(
            "UPDATE settlement_runs SET outputs_sha256 = $2, inputs_sha256 = $3, inputs_json = $4 WHERE run_id = $1",
        )
        .bind(run.run_id)
        .bind(&outputs_sha256)
        .bind(&inputs_sha256)
        .bind(&inputs_json)
        .execute(&mut *tx)
        .await?;
        for o in &files {
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
        refresh_day_status(&mut tx, day).await?;
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
                inputs_sha256,
                outputs_sha256
            ),
            run.finished_at_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(SavedRun {
            inputs_sha256,
            outcome,
            files,
            outputs_sha256,
        })
    }

    /// What `settlement serve`'s `/metrics` reports, read at the scrape: the newest run (its
    /// business day, when it finished and how long it took), the days by status, and the newest
    /// day's items by (operator, class) as its run counted them. Three small indexed reads.
    pub async fn ops_figures(&self) -> Result<OpsFigures, sqlx::Error> {
        let latest = sqlx::query(
            "SELECT business_day, started_at_ms, finished_at_ms FROM settlement_runs
             ORDER BY finished_at_ms DESC, run_id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .transpose()?;
        let days = sqlx::query(
            "SELECT status, COUNT(*) FROM settlement_days GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
        let newest_day: Option<String> =
            sqlx::query_scalar("SELECT MAX(business_day) FROM settlement_class_counts")
                .fetch_one(&self.pool)
                .await?;
        let classes = match &newest_day {
            Some(day) => sqlx::query(
                "SELECT operator_id, class, items FROM settlement_class_counts WHERE business_day = $1
                 ORDER BY operator_id, class",
            )
            .bind(day)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<_, sqlx::Error>>()?,
            None => Vec::new(),
        };
        Ok(OpsFigures {
            latest_run: latest,
            days,
            newest_day,
            classes,
        })
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

    /// The current output file of a day by name (a run for one operator replaces only that
    /// operator's files; a carried item or an adjust resolution rewrites the operator's
    /// statement files).
    pub async fn latest_output(
        &self,
        business_day: &str,
        name: &str,
    ) -> Result<Option<OutputFile>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT name, operator_id, content_type, body FROM settlement_outputs
             WHERE business_day = $1 AND name = $2",
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
        self.day_summaries_between("", "9999-12-31").await
    }

    /// The (day, operator) summaries of the days `from..=to`, newest day first: one aggregate
    /// and one grouped count of open exceptions, whatever the number of days.
    pub async fn day_summaries_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<DayOperatorSummary>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT s.business_day, s.operator_id, MIN(s.currency),
                    CAST(SUM(CASE WHEN s.figure = 'gross' THEN s.amount_minor ELSE 0 END) AS BIGINT),
                    CAST(SUM(CASE WHEN s.figure = 'net_payable' THEN s.amount_minor ELSE 0 END) AS BIGINT),
                    COALESCE(MIN(o.status), 'open'),
                    CAST(SUM(CASE WHEN s.figure = 'adjustments' THEN s.amount_minor ELSE 0 END) AS BIGINT)
             FROM settlement_statement_lines s
             LEFT JOIN settlement_operator_days o
                    ON o.business_day = s.business_day AND o.operator_id = s.operator_id
             WHERE s.business_day >= $1 AND s.business_day <= $2
             GROUP BY s.business_day, s.operator_id
             ORDER BY s.business_day DESC, s.operator_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        let open: std::collections::HashMap<(String, String), i64> = sqlx::query(
            "SELECT business_day, operator_id, COUNT(*) FROM settlement_exceptions
             WHERE business_day >= $1 AND business_day <= $2 AND resolution IS NULL
             GROUP BY business_day, operator_id",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
        .collect::<Result<_, sqlx::Error>>()?;
        let mut out = Vec::new();
        for r in &rows {
            let business_day: String = r.try_get(0)?;
            let operator_id: String = r.try_get(1)?;
            let exceptions_open = open
                .get(&(business_day.clone(), operator_id.clone()))
                .copied()
                .unwrap_or(0);
            out.push(DayOperatorSummary {
                business_day,
                operator_id,
                currency: r.try_get(2)?,
                gross_minor: r.try_get(3)?,
                net_payable_minor: r.try_get(4)?,
                exceptions_open,
                status: r.try_get(5)?,
                adjustments_minor: r.try_get(6)?,
            });
        }
        Ok(out)
    }

    /// The newest `limit` days with a statement before `before` (all when empty), newest first.
    pub async fn recent_days(&self, before: &str, limit: u64) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT DISTINCT business_day FROM settlement_statement_lines
             WHERE ($1 = '' OR business_day < $1) ORDER BY business_day DESC LIMIT $2",
        )
        .bind(before)
        .bind(limit.min(i64::MAX as u64) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get(0)).collect()
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

    /// How many items a figure (adjustments, net payable) has.
    pub async fn line_item_count(
        &self,
        business_day: &str,
        operator_id: &str,
        figure: &str,
    ) -> Result<u64, sqlx::Error> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM settlement_line_items WHERE business_day = $1 AND operator_id = $2 AND figure = $3",
        )
        .bind(business_day)
        .bind(operator_id)
        .bind(figure)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(n as u64)
    }

    /// The record sequences behind an operator's figures of a day (`gross`, `refunds`).
    pub async fn record_sets(
        &self,
        business_day: &str,
        operator_id: &str,
    ) -> Result<Vec<(String, RecordSet)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT figure, pages, records, amount_minor, fee_minor, sha256 FROM settlement_record_sets
             WHERE business_day = $1 AND operator_id = $2 ORDER BY figure",
        )
        .bind(business_day)
        .bind(operator_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    RecordSet {
                        pages: r.try_get::<i64, _>(1)? as u64,
                        records: r.try_get::<i64, _>(2)? as u64,
                        amount_minor: r.try_get(3)?,
                        fee_minor: r.try_get(4)?,
                        sha256: r.try_get(5)?,
                    },
                ))
            })
            .collect()
    }

    /// A page of the records behind an operator's `gross` or `refunds` figure (its CSV body).
    pub async fn record_page(
        &self,
        business_day: &str,
        operator_id: &str,
        figure: &str,
        page_no: u64,
    ) -> Result<Option<String>, sqlx::Error> {
        sqlx::query(
            "SELECT p.body FROM settlement_record_sets s
             JOIN settlement_record_pages p ON p.business_day = s.business_day
                  AND p.operator_id = s.operator_id AND p.figure = s.figure AND p.run_id = s.run_id
             WHERE s.business_day = $1 AND s.operator_id = $2 AND s.figure = $3 AND p.page_no = $4",
        )
        .bind(business_day)
        .bind(operator_id)
        .bind(figure)
        .bind(page_no as i64)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.try_get(0))
        .transpose()
    }

    /// The items of a figure (adjustments, net payable) numbered `from..to` (0-based; item
    /// numbers are consecutive, so a page is a primary-key range).
    pub async fn line_items(
        &self,
        business_day: &str,
        operator_id: &str,
        figure: &str,
        items: std::ops::Range<u64>,
    ) -> Result<Vec<LineItem>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT reference, class, amount_minor, detail, source_day, exception_key FROM settlement_line_items
             WHERE business_day = $1 AND operator_id = $2 AND figure = $3 AND item_no >= $4 AND item_no < $5
             ORDER BY item_no",
        )
        .bind(business_day)
        .bind(operator_id)
        .bind(figure)
        .bind(items.start.min(i64::MAX as u64) as i64)
        .bind(items.end.min(i64::MAX as u64) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LineItem {
                    reference: r.try_get(0)?,
                    class: r.try_get(1)?,
                    amount_minor: r.try_get(2)?,
                    detail: r.try_get(3)?,
                    source_day: r.try_get(4)?,
                    exception_key: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Every exception the filter selects (exports, approval), newest day first.
    pub async fn exceptions(&self, f: &ExceptionFilter) -> Result<Vec<ExceptionRow>, sqlx::Error> {
        let page = self
            .exceptions_page(f, ExceptionSort::Day, None, i64::MAX as u64)
            .await?;
        Ok(page.rows)
    }

    /// A page of the exceptions the filter selects, in `sort` order, after `after` (keyset
    /// paging: the cursor is the last row's sort value, day and key), at most `limit` rows;
    /// with the filter's total.
    pub async fn exceptions_page(
        &self,
        f: &ExceptionFilter,
        sort: ExceptionSort,
        after: Option<&ExceptionCursor>,
        limit: u64,
    ) -> Result<ExceptionPage, sqlx::Error> {
        let state = match f.state.as_deref() {
            Some("open") => " AND e.resolution IS NULL",
            Some("resolved") => " AND e.resolution IS NOT NULL",
            _ => "",
        };
        let filter = format!(
            "($1 = '' OR e.business_day = $1) AND ($2 = '' OR e.operator_id = $2)
             AND ($3 = '' OR e.class = $3){state}"
        );
        let (column, descending) = sort.column();
        let (cmp, dir) = if descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let keyset = if after.is_some() {
            format!(" AND ({column}, e.business_day, e.exception_key) {cmp} ($4, $5, $6)")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT {EXCEPTION_COLUMNS} FROM settlement_exceptions e
             WHERE {filter}{keyset}
             ORDER BY {column} {dir}, e.business_day {dir}, e.exception_key {dir}
             LIMIT {}",
            limit.min(i64::MAX as u64)
        );
        let mut q = sqlx::query(&sql)
            .bind(f.business_day.clone().unwrap_or_default())
            .bind(f.operator_id.clone().unwrap_or_default())
            .bind(f.class.clone().unwrap_or_default());
        if let Some(c) = after {
            q = if sort.numeric() {
                q.bind(c.value.parse::<i64>().unwrap_or(0))
            } else {
                q.bind(c.value.clone())
            };
            q = q.bind(c.business_day.clone()).bind(c.key.clone());
        }
        let rows = q.fetch_all(&self.pool).await?;
        let rows = rows
            .iter()
            .map(exception_row)
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let next = (rows.len() as u64 == limit)
            .then(|| rows.last().map(|r| sort.cursor(r)))
            .flatten();
        // A first page that is not full is every row there is: no count needed (an export asks
        // for all of them at once).
        let total = if after.is_none() && next.is_none() {
            rows.len() as i64
        } else {
            sqlx::query(&format!(
                "SELECT COUNT(*) FROM settlement_exceptions e WHERE {filter}"
            ))
            .bind(f.business_day.clone().unwrap_or_default())
            .bind(f.operator_id.clone().unwrap_or_default())
            .bind(f.class.clone().unwrap_or_default())
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?
        };
        Ok(ExceptionPage {
            rows,
            total: total as u64,
            next,
        })
    }

    /// The payout instructions of a day's current statements: (operator, amount, currency,
    /// reference), by operator.
    pub async fn payouts(
        &self,
        business_day: &str,
    ) -> Result<Vec<(String, i64, String, String)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT operator_id, amount_minor, currency, reference FROM settlement_payouts
             WHERE business_day = $1 ORDER BY operator_id",
        )
        .bind(business_day)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
    }

    /// One exception of a day by its key.
    pub async fn exception(
        &self,
        business_day: &str,
        key: &str,
    ) -> Result<Option<ExceptionRow>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {EXCEPTION_COLUMNS} FROM settlement_exceptions e
             WHERE e.business_day = $1 AND e.exception_key = $2"
        ))
        .bind(business_day)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(exception_row).transpose()
    }

    /// An exception's resolutions, oldest first: (at, user, action, adjustment, note).
    pub async fn resolutions(
        &self,
        business_day: &str,
        key: &str,
    ) -> Result<Vec<(i64, String, String, Option<i64>, String)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT at_ms, user_name, action, adjust_minor, note FROM settlement_resolutions
             WHERE business_day = $1 AND exception_key = $2 ORDER BY seq",
        )
        .bind(business_day)
        .bind(key)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            })
            .collect()
    }

    /// How many of an operator's exceptions of a day are open.
    pub async fn open_exception_count(
        &self,
        business_day: &str,
        operator_id: &str,
    ) -> Result<u64, sqlx::Error> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM settlement_exceptions
             WHERE business_day = $1 AND operator_id = $2 AND resolution IS NULL",
        )
        .bind(business_day)
        .bind(operator_id)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)?;
        Ok(n as u64)
    }

    /// Per day (newest `days` days with a run): matched items and all items, every operator
    /// together (the matched-ratio chart).
    pub async fn matched_by_day(&self, days: i64) -> Result<Vec<(String, u64, u64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT business_day,
                    CAST(SUM(CASE WHEN class = 'matched' THEN items ELSE 0 END) AS BIGINT),
                    CAST(SUM(items) AS BIGINT)
             FROM settlement_class_counts GROUP BY business_day
             ORDER BY business_day DESC LIMIT $1",
        )
        .bind(days)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get::<i64, _>(1)? as u64,
                    r.try_get::<i64, _>(2)? as u64,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        out.reverse();
        Ok(out)
    }

    /// Open exceptions: (class, count) and (business day, count), every day together.
    pub async fn open_exceptions_by(
        &self,
    ) -> Result<(Vec<(String, u64)>, Vec<(String, u64)>), sqlx::Error> {
        let mut out = (Vec::new(), Vec::new());
        for (column, list) in [("class", &mut out.0), ("business_day", &mut out.1)] {
            let rows = sqlx::query(&format!(
                "SELECT {column}, COUNT(*) FROM settlement_exceptions WHERE resolution IS NULL
                 GROUP BY {column} ORDER BY {column}"
            ))
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                list.push((r.try_get(0)?, r.try_get::<i64, _>(1)? as u64));
            }
        }
        Ok(out)
    }

    /// The newest resolution of each resolved exception of a day: key → (user, note).
    pub async fn latest_resolutions(
        &self,
        business_day: &str,
    ) -> Result<std::collections::HashMap<String, (String, String)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT exception_key, user_name, note FROM settlement_resolutions WHERE business_day = $1 ORDER BY seq",
        )
        .bind(business_day)
        .fetch_all(&self.pool)
        .await?;
        let mut out = std::collections::HashMap::new();
        for r in &rows {
            out.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
        }
        Ok(out)
    }

    /// The exception classes present (for the queue's filter).
    pub async fn exception_classes(&self) -> Result<Vec<String>, sqlx::Error> {
        let rows = sqlx::query("SELECT DISTINCT class FROM settlement_exceptions ORDER BY class")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }

    /// Records a resolution (with its mandatory note) and its audit line, and recomposes the
    /// operator's statement of the day (an `adjust` resolution is an adjustment of it; a later
    /// resolution of the same exception replaces it). Refused with an empty note, or for
    /// `adjust` without an amount.
    ///
    /// **An approved (locked) statement's exceptions.** Finance keeps working exceptions after
    /// it has approved the money (chasing the provider, accepting a small difference, writing
    /// one off), but approved money does not move. So on an approved (day, operator):
    /// - a resolution that leaves the statement as approved is recorded, and its audit line says
    ///   so: accept, write off or chase provider of an exception whose current resolution is not
    ///   `adjust` (they label the exception; only `adjust` resolutions enter the statement —
    ///   `adjust.rs` — so statement, journal and payout stay byte for byte as approved and are
    ///   not recomposed);
    /// - a resolution that changes it — an `adjust`, or any resolution replacing a current
    ///   `adjust` (which takes that adjustment out) — is refused with
    ///   [`StoreError::ApprovedStatementChange`], which names `settlement reopen`; once the day
    ///   is reopened it goes through like on any open day.
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
        let adjust_minor = match (action, adjust_minor) {
            ("adjust", None) => return Err(StoreError::AdjustWithoutAmount),
            ("adjust", a) => a,
            _ => None,
        };
        let mut tx = self.pool.begin().await?;
        lock_day_row(&mut tx, business_day).await?;
        let Some(ExceptionState {
            operator,
            current,
            reference,
            class,
        }) = exception_state_tx(&mut tx, business_day, key).await?
        else {
            return Err(StoreError::NoSuchException);
        };
        let approved = operator_status_tx(&mut tx, business_day, &operator).await? == "approved";
        if approved {
            if let Some(why) = resolution_changes_statement(current.as_deref(), action) {
                return Err(StoreError::ApprovedStatementChange {
                    day: business_day.into(),
                    operator,
                    why,
                });
            }
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
        sqlx::query(
            "UPDATE settlement_exceptions SET resolution = $3 WHERE business_day = $1 AND exception_key = $2",
        )
        .bind(business_day)
        .bind(key)
        .bind(action)
        .execute(&mut *tx)
        .await?;
        let adjust = adjust_minor
            .map(|a| format!(" adjust {a}"))
            .unwrap_or_default();
        let locked = if approved {
            " on the approved statement (unchanged)"
        } else {
            ""
        };
        insert_audit(
            &mut tx,
            business_day,
            user,
            "resolve",
            // What finance reads first (the reference and its class), the key last.
            &format!("{reference} ({class}): {action}{adjust}{locked}: {note} [exception {key}]"),
            now,
        )
        .await?;
        if !approved {
            publish_tx(&mut tx, business_day, &operator, None, false).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Approval of an operator's statement of a day: "open" (also when never approved) or
    /// "approved".
    pub async fn operator_status(
        &self,
        business_day: &str,
        operator_id: &str,
    ) -> Result<String, sqlx::Error> {
        let row = sqlx::query(
            "SELECT status FROM settlement_operator_days WHERE business_day = $1 AND operator_id = $2",
        )
        .bind(business_day)
        .bind(operator_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => "open".into(),
        })
    }

    /// Approves (locks) an operator's statement of a day; the day is approved once all its
    /// operators are. Idempotent: approving an approved one changes nothing (returns false).
    /// `open_exceptions_confirmed` is how many open exceptions the approver was shown and
    /// accepted leaving open: it must equal the current number (0 when there are none), else
    /// [`StoreError::OpenExceptionsUnconfirmed`] and nothing changes — so a statement is never
    /// approved past exceptions nobody saw, nor on a stale confirmation. The audit line
    /// records the number and names them.
    pub async fn approve_operator(
        &self,
        business_day: &str,
        operator_id: &str,
        user: &str,
        open_exceptions_confirmed: usize,
    ) -> Result<bool, StoreError> {
        let scope = Scope::Operator(operator_id);
        self.approve(business_day, scope, user, open_exceptions_confirmed)
            .await
    }

    /// Reopens an operator's approved statement of a day; the reason is mandatory and audited.
    pub async fn reopen_operator(
        &self,
        business_day: &str,
        operator_id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.reopen(business_day, Scope::Operator(operator_id), actor, reason)
            .await
    }

    /// Approves every operator of a day that has an open statement (one audit line naming
    /// them). False when there was none. `open_exceptions_confirmed` counts the open exceptions
    /// of all those operators, as for [`Store::approve_operator`].
    pub async fn approve_day(
        &self,
        business_day: &str,
        user: &str,
        open_exceptions_confirmed: usize,
    ) -> Result<bool, StoreError> {
        self.approve(business_day, Scope::Day, user, open_exceptions_confirmed)
            .await
    }

    /// Reopens every approved operator of a day; the reason is mandatory and audited.
    pub async fn reopen_day(
        &self,
        business_day: &str,
        actor: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.reopen(business_day, Scope::Day, actor, reason).await
    }

    /// The approval rule, for one operator or a whole day: the scope's open statements become
    /// approved in one transaction with one audit line, once the confirmed count of open
    /// exceptions is the current one. False when the scope has no open statement.
    async fn approve(
        &self,
        business_day: &str,
        scope: Scope<'_>,
        user: &str,
        open_exceptions_confirmed: usize,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_day_row(&mut tx, business_day).await?;
        if let Scope::Operator(operator_id) = scope {
            if !has_statement_tx(&mut tx, business_day, operator_id).await? {
                return Err(StoreError::NoSuchStatement);
            }
        }
        let operators = scope.operators_tx(&mut tx, business_day, "open").await?;
        if operators.is_empty() {
            return Ok(false);
        }
        for operator in &operators {
            let resolved = resolved_by_tx(&mut tx, business_day, operator, user).await?;
            if resolved > 0 && four_eyes_tx(&mut tx, operator).await? {
                return Err(StoreError::FourEyes {
                    day: business_day.into(),
                    operator: operator.clone(),
                    user: user.into(),
                    resolved,
                });
            }
        }
        let open = open_exceptions_tx(&mut tx, business_day, &operators).await?;
        let with_open =
            confirm_open_exceptions(business_day, &operators, &open, open_exceptions_confirmed)?;
        let detail = format!("{}{with_open}", scope.subject(&operators));
        change_status(
            &mut tx,
            business_day,
            &operators,
            "approved",
            user,
            "approve",
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The reopening rule, for one operator or a whole day: the scope's approved statements
    /// become open in one transaction with one audit line giving the reason (mandatory). False
    /// when the scope has no approved statement.
    async fn reopen(
        &self,
        business_day: &str,
        scope: Scope<'_>,
        actor: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(StoreError::EmptyNote);
        }
        let mut tx = self.pool.begin().await?;
        lock_day_row(&mut tx, business_day).await?;
        let operators = scope
            .operators_tx(&mut tx, business_day, "approved")
            .await?;
        if operators.is_empty() {
            return Ok(false);
        }
        let detail = format!("{}: {reason}", scope.subject(&operators));
        change_status(
            &mut tx,
            business_day,
            &operators,
            "open",
            actor,
            "reopen",
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The items a day's run of an operator carried to other days, with where each is booked.
    pub async fn carries_from(
        &self,
        source_day: &str,
        operator_id: &str,
    ) -> Result<Vec<CarryRow>, sqlx::Error> {
        self.carries("source_day", source_day, operator_id).await
    }

    /// The items booked to an operator's statement of a day.
    pub async fn carries_booked(
        &self,
        booked_day: &str,
        operator_id: &str,
    ) -> Result<Vec<CarryRow>, sqlx::Error> {
        self.carries("booked_day", booked_day, operator_id).await
    }

    async fn carries(
        &self,
        column: &str,
        day: &str,
        operator_id: &str,
    ) -> Result<Vec<CarryRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {CARRY_COLUMNS} FROM settlement_carries WHERE {column} = $1 AND operator_id = $2 ORDER BY source_day, carry_key"
        ))
        .bind(day)
        .bind(operator_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(carry_row).collect()
    }

    // ----- operators' business days -----

    /// Each operator's time zone in the gateway's `operators` table, when the gateway's tables
    /// are in this database (empty otherwise).
    pub async fn gateway_time_zones(&self) -> Result<Vec<(String, String)>, sqlx::Error> {
        let exists = match self.backend {
            Backend::Postgres => sqlx::query("SELECT 1 FROM information_schema.tables WHERE table_name = 'operators' AND table_schema = current_schema()"),
            Backend::Sqlite => sqlx::query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'operators'"),
        }
        .fetch_optional(&self.pool)
        .await?
        .is_some();
        if !exists {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("SELECT operator_id, time_zone FROM operators ORDER BY operator_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Settlement's own settings of operators' business days, by operator id.
    pub async fn operator_settings(&self) -> Result<Vec<OperatorSetting>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT operator_id, time_zone, cutoff FROM settlement_operator_settings ORDER BY operator_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OperatorSetting {
                    operator_id: r.try_get(0)?,
                    time_zone: r.try_get(1)?,
                    cutoff: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Sets an operator's business-day settings (the caller has validated zone and cut-off).
    pub async fn set_operator_setting(
        &self,
        setting: &OperatorSetting,
        actor: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO settlement_operator_settings (operator_id, time_zone, cutoff, changed_by, changed_at_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (operator_id) DO UPDATE SET time_zone = excluded.time_zone, cutoff = excluded.cutoff,
                 changed_by = excluded.changed_by, changed_at_ms = excluded.changed_at_ms",
        )
        .bind(&setting.operator_id)
        .bind(&setting.time_zone)
        .bind(&setting.cutoff)
        .bind(actor)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Turns four-eyes approval of an operator's statements on or off (its other settings
    /// stay as they are).
    pub async fn set_four_eyes(
        &self,
        operator_id: &str,
        on: bool,
        actor: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO settlement_operator_settings (operator_id, cutoff, four_eyes, changed_by, changed_at_ms) VALUES ($1, '00:00', $2, $3, $4)
             ON CONFLICT (operator_id) DO UPDATE SET four_eyes = excluded.four_eyes,
                 changed_by = excluded.changed_by, changed_at_ms = excluded.changed_at_ms",
        )
        .bind(operator_id)
        .bind(i64::from(on))
        .bind(actor)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
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

/// What an approval or a reopening covers: one operator's statement of a day, or every
/// operator's.
#[derive(Clone, Copy)]
enum Scope<'a> {
    Operator(&'a str),
    Day,
}

impl Scope<'_> {
    /// The scope's operators whose approval is `status` ("open" or "approved", the only two a
    /// row may hold), sorted: for a day those with a statement, for one operator itself (no
    /// row = open).
    async fn operators_tx(
        self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        day: &str,
        status: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        match self {
            Scope::Operator(operator_id) => {
                let current = operator_status_tx(tx, day, operator_id).await?;
                Ok(if current == status {
                    vec![operator_id.to_string()]
                } else {
                    Vec::new()
                })
            }
            Scope::Day => day_operators_tx(tx, day, status).await,
        }
    }

    /// Whom the audit line names: "operator a" or "operators a, b".
    fn subject(self, operators: &[String]) -> String {
        match self {
            Scope::Operator(operator_id) => format!("operator {operator_id}"),
            Scope::Day => format!("operators {}", operators.join(", ")),
        }
    }
}

/// Sets the approval of the operators' statements of a day to `status`, audits the change
/// once (`actor`, `action`, `detail`) and refreshes the day's status. Callers hold the day's
/// row lock (`lock_day_row`).
async fn change_status(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    operators: &[String],
    status: &str,
    actor: &str,
    action: &str,
    detail: &str,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    for op in operators {
        set_operator_status(tx, day, op, status, actor, now).await?;
    }
    insert_audit(tx, day, actor, action, detail, now).await?;
    refresh_day_status(tx, day).await
}

/// Whether a run stored a statement of the operator for the day.
async fn has_statement_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    operator_id: &str,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "SELECT 1 FROM settlement_statement_lines WHERE business_day = $1 AND operator_id = $2 LIMIT 1",
    )
    .bind(day)
    .bind(operator_id)
    .fetch_optional(&mut **tx)
    .await?
    .is_some())
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

/// Approval of a (day, operator) inside a transaction.
async fn operator_status_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    operator_id: &str,
) -> Result<String, sqlx::Error> {
    let row = sqlx::query(
        "SELECT status FROM settlement_operator_days WHERE business_day = $1 AND operator_id = $2",
    )
    .bind(day)
    .bind(operator_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        Some(r) => r.try_get(0)?,
        None => "open".into(),
    })
}

/// Why a resolution `action` would change the statement of its exception, given the
/// exception's current (newest) resolution; None when it leaves the statement as it is. The
/// rule of [`Store::resolve_exception`] for approved statements, and what the review UI offers.
pub fn resolution_changes_statement(current: Option<&str>, action: &str) -> Option<&'static str> {
    if action == "adjust" {
        Some("an adjust resolution would change its money")
    } else if current == Some("adjust") {
        Some("this exception's current resolution is an adjustment of it, and replacing it would change its money")
    } else {
        None
    }
}

/// An exception's operator and its newest resolution's action (None while open), or None when
/// there is no such exception.
/// An exception's operator, current resolution, reference and class.
struct ExceptionState {
    operator: String,
    current: Option<String>,
    reference: String,
    class: String,
}

async fn exception_state_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    key: &str,
) -> Result<Option<ExceptionState>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT e.operator_id, e.resolution, e.reference, e.class
         FROM settlement_exceptions e WHERE e.business_day = $1 AND e.exception_key = $2",
    )
    .bind(day)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| {
        Ok(ExceptionState {
            operator: r.try_get(0)?,
            current: r.try_get(1)?,
            reference: r.try_get(2)?,
            class: r.try_get(3)?,
        })
    })
    .transpose()
}

/// How many resolutions `user` made on an operator's exceptions of a day.
async fn resolved_by_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    operator: &str,
    user: &str,
) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query(
        "SELECT COUNT(*) FROM settlement_resolutions r
         JOIN settlement_exceptions e ON e.business_day = r.business_day AND e.exception_key = r.exception_key
         WHERE r.business_day = $1 AND e.operator_id = $2 AND r.user_name = $3",
    )
    .bind(day)
    .bind(operator)
    .bind(user)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    Ok(n as u64)
}

/// Whether an operator's statements need four-eyes approval (on unless its settings say off).
async fn four_eyes_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    operator: &str,
) -> Result<bool, sqlx::Error> {
    let row =
        sqlx::query("SELECT four_eyes FROM settlement_operator_settings WHERE operator_id = $1")
            .bind(operator)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(match row {
        Some(r) => r.try_get::<i64, _>(0)? != 0,
        None => true,
    })
}

/// The open (never resolved) exceptions of the given operators of a day: (operator, reference),
/// sorted.
async fn open_exceptions_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    operators: &[String],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT e.operator_id, e.reference FROM settlement_exceptions e
         WHERE e.business_day = $1 AND e.resolution IS NULL
         ORDER BY e.operator_id, e.reference, e.exception_key",
    )
    .bind(day)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        let operator: String = r.try_get(0)?;
        if operators.contains(&operator) {
            out.push((operator, r.try_get(1)?));
        }
    }
    Ok(out)
}

/// Checks an approval's confirmed count of open exceptions against the current ones, and
/// returns the audit line's words for them ("" when there are none).
fn confirm_open_exceptions(
    day: &str,
    operators: &[String],
    open: &[(String, String)],
    confirmed: usize,
) -> Result<String, StoreError> {
    if open.len() != confirmed {
        return Err(StoreError::OpenExceptionsUnconfirmed {
            day: day.into(),
            operator: operators.join(", "),
            open: open.len(),
            confirmed,
        });
    }
    if open.is_empty() {
        return Ok(String::new());
    }
    let named: Vec<&str> = open
        .iter()
        .take(AUDIT_REFERENCES_MAX)
        .map(|(_, reference)| reference.as_str())
        .collect();
    let more = match open.len().checked_sub(AUDIT_REFERENCES_MAX) {
        Some(n) if n > 0 => format!(" and {n} more"),
        _ => String::new(),
    };
    Ok(format!(
        " with {} open exception(s), confirmed: {}{more}",
        open.len(),
        named.join(", ")
    ))
}

/// How many references of open exceptions an approval's audit line names (the count is always
/// there); bounds the line when a bad day has thousands.
const AUDIT_REFERENCES_MAX: usize = 20;

async fn set_operator_status(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    operator_id: &str,
    status: &str,
    actor: &str,
    at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO settlement_operator_days (business_day, operator_id, status, changed_by, changed_at_ms) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (business_day, operator_id) DO UPDATE SET status = excluded.status,
             changed_by = excluded.changed_by, changed_at_ms = excluded.changed_at_ms",
    )
    .bind(day)
    .bind(operator_id)
    .bind(status)
    .bind(actor)
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The operators with a statement of a day whose approval is `status`, sorted.
async fn day_operators_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    status: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT s.operator_id FROM settlement_statement_lines s
         LEFT JOIN settlement_operator_days o ON o.business_day = s.business_day AND o.operator_id = s.operator_id
         WHERE s.business_day = $1 AND COALESCE(o.status, 'open') = $2 ORDER BY s.operator_id",
    )
    .bind(day)
    .bind(status)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// A day is approved when it has statements and every one of them is approved.
async fn refresh_day_status(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE settlement_days SET status = CASE
            WHEN EXISTS (SELECT 1 FROM settlement_statement_lines s WHERE s.business_day = $1)
             AND NOT EXISTS (SELECT 1 FROM settlement_statement_lines s
                             WHERE s.business_day = $1 AND NOT EXISTS (
                                 SELECT 1 FROM settlement_operator_days o
                                 WHERE o.business_day = s.business_day AND o.operator_id = s.operator_id
                                   AND o.status = 'approved'))
            THEN 'approved' ELSE 'open' END
         WHERE business_day = $1",
    )
    .bind(day)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const CARRY_COLUMNS: &str = "source_day, operator_id, carry_key, reference, belongs_to, booked_day, record, amount_minor, fee_minor, net_minor, currency, detail";

fn carry_row(r: &sqlx::any::AnyRow) -> Result<CarryRow, sqlx::Error> {
    Ok(CarryRow {
        source_day: r.try_get(0)?,
        operator_id: r.try_get(1)?,
        key: r.try_get(2)?,
        reference: r.try_get(3)?,
        belongs_to: r.try_get(4)?,
        booked_day: r.try_get(5)?,
        record: r.try_get(6)?,
        amount_minor: r.try_get(7)?,
        fee_minor: r.try_get(8)?,
        net_minor: r.try_get(9)?,
        currency: r.try_get(10)?,
        detail: r.try_get(11)?,
    })
}

/// Replaces the items a run of (`source_day`, operator) carries to other days. An item that is
/// unchanged keeps its row (and so the statement it was booked to: it is applied exactly once,
/// however often either day runs). A new or changed item is booked to the day it belongs to,
/// or — when that operator's day is approved — to the source day's own statement. Changing or
/// dropping an item already in another day's approved statement is refused. Returns the other
/// days whose statements change.
async fn replace_carries(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    source_day: &str,
    op: &OperatorOutcome,
    run_id: i64,
) -> Result<Vec<String>, StoreError> {
    let operator = op.operator_id.as_str();
    let old: Vec<CarryRow> = sqlx::query(&format!(
        "SELECT {CARRY_COLUMNS} FROM settlement_carries WHERE source_day = $1 AND operator_id = $2 ORDER BY carry_key"
    ))
    .bind(source_day)
    .bind(operator)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(carry_row)
    .collect::<Result<_, _>>()?;
    let same = |o: &CarryRow, n: &crate::outcome::Carry| {
        o.reference == n.reference
            && o.belongs_to == n.belongs_to
            && o.record == n.record
            && o.amount_minor == n.amount_minor
            && o.fee_minor == n.fee_minor
            && o.net_minor == n.net_minor
            && o.detail == n.detail
            && o.currency == op.currency
    };
    let mut changed = std::collections::BTreeSet::new();
    let mut kept = std::collections::BTreeSet::new();
    let by_key: std::collections::HashMap<&str, &crate::outcome::Carry> =
        op.carried_out.iter().map(|n| (n.key.as_str(), n)).collect();
    for o in &old {
        if by_key.get(o.key.as_str()).is_some_and(|n| same(o, n)) {
            kept.insert(o.key.clone());
            continue;
        }
        if o.booked_day != source_day {
            lock_day_row(tx, &o.booked_day).await?;
            if operator_status_tx(tx, &o.booked_day, operator).await? == "approved" {
                return Err(StoreError::CarryLocked {
                    source_day: source_day.into(),
                    operator: operator.into(),
                    reference: o.reference.clone(),
                    booked_day: o.booked_day.clone(),
                });
            }
        }
        sqlx::query(
            "DELETE FROM settlement_carries WHERE source_day = $1 AND operator_id = $2 AND carry_key = $3",
        )
        .bind(source_day)
        .bind(operator)
        .bind(&o.key)
        .execute(&mut **tx)
        .await?;
        changed.insert(o.booked_day.clone());
    }
    // The day each new item is booked to: the day it belongs to, or this one when that
    // operator's day is approved. Asked once per day (a large day carries thousands of items
    // to one or two days), then the rows go in many per INSERT.
    let mut booked_to: std::collections::BTreeMap<&str, &str> = Default::default();
    let new: Vec<&crate::outcome::Carry> = op
        .carried_out
        .iter()
        .filter(|n| !kept.contains(&n.key))
        .collect();
    for n in &new {
        if booked_to.contains_key(n.belongs_to.as_str()) {
            continue;
        }
        lock_day_row(tx, &n.belongs_to).await?;
        let booked = if operator_status_tx(tx, &n.belongs_to, operator).await? == "approved" {
            source_day
        } else {
            n.belongs_to.as_str()
        };
        booked_to.insert(&n.belongs_to, booked);
        changed.insert(booked.to_string());
    }
    for chunk in new.chunks(CARRIES_PER_INSERT) {
        let sql = format!(
            "INSERT INTO settlement_carries ({CARRY_COLUMNS}, run_id) VALUES {}",
            values_list(chunk.len(), 13)
        );
        let mut q = sqlx::query(&sql);
        for n in chunk {
            q = q
                .bind(source_day)
                .bind(operator)
                .bind(&n.key)
                .bind(&n.reference)
                .bind(&n.belongs_to)
                .bind(booked_to[n.belongs_to.as_str()])
                .bind(&n.record)
                .bind(n.amount_minor)
                .bind(n.fee_minor)
                .bind(n.net_minor)
                .bind(&op.currency)
                .bind(&n.detail)
                .bind(run_id);
        }
        q.execute(&mut **tx).await?;
    }
    changed.remove(source_day);
    Ok(changed.into_iter().collect())
}

/// Replaces a current output file of a day.
async fn put_output(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    file: &OutputFile,
    run_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM settlement_outputs WHERE business_day = $1 AND name = $2")
        .bind(day)
        .bind(&file.name)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO settlement_outputs (business_day, name, operator_id, content_type, body, sha256, run_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(day)
    .bind(&file.name)
    .bind(&file.operator_id)
    .bind(&file.content_type)
    .bind(&file.body)
    .bind(sha256_hex(file.body.as_bytes()))
    .bind(run_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Composes an operator's statement of a day from its base (given by a run, else the stored
/// one), the items booked to it and the adjust resolutions of its exceptions (`adjust`), and
/// stores it: statement lines, drill-down items (all of them after a run, else only those of
/// `adjustments` and `net_payable`, the only figures a recomposition changes) and the current
/// files. None when the operator's day has not been settled yet.
async fn publish_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    operator: &str,
    base: Option<(&OperatorOutcome, i64)>,
    all_items: bool,
) -> Result<Option<(OperatorOutcome, Vec<OutputFile>)>, StoreError> {
    let stored;
    let (base, run_id) = match base {
        Some(b) => b,
        None => {
            let row = sqlx::query(
                "SELECT outcome_json, run_id FROM settlement_bases WHERE business_day = $1 AND operator_id = $2",
            )
            .bind(day)
            .bind(operator)
            .fetch_optional(&mut **tx)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let json: String = row.try_get(0)?;
            stored = serde_json::from_str::<OperatorOutcome>(&json).map_err(|e| {
                StoreError::Invalid(anyhow::anyhow!(
                    "stored statement of {operator} for {day}: {e}"
                ))
            })?;
            (&stored, row.try_get::<i64, _>(1)?)
        }
    };
    let carried: Vec<crate::adjust::CarriedIn> = sqlx::query(&format!(
        "SELECT {CARRY_COLUMNS} FROM settlement_carries WHERE booked_day = $1 AND operator_id = $2 ORDER BY source_day, carry_key"
    ))
    .bind(day)
    .bind(operator)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| {
        let c = carry_row(r)?;
        Ok(crate::adjust::CarriedIn {
            source_day: c.source_day,
            key: c.key,
            reference: c.reference,
            belongs_to: c.belongs_to,
            record: c.record,
            amount_minor: c.amount_minor,
            fee_minor: c.fee_minor,
            net_minor: c.net_minor,
            detail: c.detail,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    // The newest resolution of each of the operator's exceptions, when it is an adjustment.
    let adjusts: Vec<crate::adjust::AdjustIn> = sqlx::query(
        "SELECT e.exception_key, e.class, e.reference, r.adjust_minor, r.note, r.user_name
         FROM settlement_exceptions e
         JOIN settlement_resolutions r ON r.business_day = e.business_day AND r.exception_key = e.exception_key
         WHERE e.business_day = $1 AND e.operator_id = $2 AND r.action = 'adjust' AND r.adjust_minor IS NOT NULL
           AND r.seq = (SELECT MAX(r2.seq) FROM settlement_resolutions r2
                        WHERE r2.business_day = e.business_day AND r2.exception_key = e.exception_key)
         ORDER BY e.exception_key",
    )
    .bind(day)
    .bind(operator)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| {
        Ok(crate::adjust::AdjustIn {
            exception_key: r.try_get(0)?,
            class: r.try_get(1)?,
            reference: r.try_get(2)?,
            adjust_minor: r.try_get(3)?,
            note: r.try_get(4)?,
            user: r.try_get(5)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let (op, files) =
        crate::adjust::publish(day, base, &carried, &adjusts).map_err(StoreError::Invalid)?;
    sqlx::query(
        "DELETE FROM settlement_statement_lines WHERE business_day = $1 AND operator_id = $2",
    )
    .bind(day)
    .bind(operator)
    .execute(&mut **tx)
    .await?;
    if all_items {
        sqlx::query(
            "DELETE FROM settlement_line_items WHERE business_day = $1 AND operator_id = $2",
        )
        .bind(day)
        .bind(operator)
        .execute(&mut **tx)
        .await?;
    } else {
        sqlx::query(
            "DELETE FROM settlement_line_items WHERE business_day = $1 AND operator_id = $2 AND figure IN ('adjustments', 'net_payable')",
        )
        .bind(day)
        .bind(operator)
        .execute(&mut **tx)
        .await?;
    }
    for (line_no, f) in op.figures.iter().enumerate() {
        sqlx::query(
            "INSERT INTO settlement_statement_lines (business_day, operator_id, line_no, figure, amount_minor, currency, run_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(day)
        .bind(operator)
        .bind(line_no as i64)
        .bind(&f.name)
        .bind(f.amount_minor)
        .bind(&op.currency)
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
        if !all_items && f.name != "adjustments" && f.name != "net_payable" {
            continue;
        }
        for (item_no, it) in f.items.iter().enumerate() {
            sqlx::query(
                "INSERT INTO settlement_line_items (business_day, operator_id, figure, item_no, reference, class, amount_minor, detail, source_day, exception_key)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(day)
            .bind(operator)
            .bind(&f.name)
            .bind(item_no as i64)
            .bind(&it.reference)
            .bind(&it.class)
            .bind(it.amount_minor)
            .bind(&it.detail)
            .bind(&it.source_day)
            .bind(&it.exception_key)
            .execute(&mut **tx)
            .await?;
        }
    }
    for f in &files {
        put_output(tx, day, f, run_id).await?;
    }
    sqlx::query("DELETE FROM settlement_payouts WHERE business_day = $1 AND operator_id = $2")
        .bind(day)
        .bind(operator)
        .execute(&mut **tx)
        .await?;
    let net = op.figure("net_payable").map_or(0, |f| f.amount_minor);
    if net > 0 {
        sqlx::query(
            "INSERT INTO settlement_payouts (business_day, operator_id, amount_minor, currency, reference, run_id)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(day)
        .bind(operator)
        .bind(net)
        .bind(&op.currency)
        .bind(crate::outputs::payout_reference(day, operator))
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(Some((op, files)))
}

/// Rows per multi-row INSERT of exceptions (9 parameters each: under both databases' limits).
const EXCEPTIONS_PER_INSERT: usize = 500;
/// Rows per multi-row INSERT of carried items (13 parameters each).
const CARRIES_PER_INSERT: usize = 400;
/// Pages per multi-row INSERT of record pages (≈ 25–60 KiB each).
const PAGES_PER_INSERT: usize = 16;

/// Inserts an operator's exceptions of a run, many rows per statement.
async fn insert_exceptions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    day: &str,
    op: &OperatorOutcome,
    run_id: i64,
) -> Result<(), sqlx::Error> {
    for chunk in op.exceptions.chunks(EXCEPTIONS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO settlement_exceptions (business_day, exception_key, operator_id, class, reference, amount_minor, currency, detail, run_id) VALUES {}",
            values_list(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(day)
                .bind(&e.key)
                .bind(&op.operator_id)
                .bind(&e.class)
                .bind(&e.reference)
                .bind(e.amount_minor)
                .bind(&op.currency)
                .bind(&e.detail)
                .bind(run_id);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `($1, …, $k), ($k+1, …)`: `rows` tuples of `columns` parameters.
fn values_list(rows: usize, columns: usize) -> String {
    let mut out = String::new();
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("${}", r * columns + c + 1));
        }
        out.push(')');
    }
    out
}

/// A stored record sequence of an operator's figure (`settlement_record_sets`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSet {
    pub pages: u64,
    pub records: u64,
    pub amount_minor: i64,
    pub fee_minor: i64,
    /// SHA-256 over the pages' bodies in page order.
    pub sha256: String,
}

/// The drill-down adds up: an operator's stored records sum to its gross, refunds and provider
/// fees figures, or nothing is stored.
fn check_record_sets(
    op: &OperatorOutcome,
    sets: &std::collections::BTreeMap<(String, &'static str), RecordSet>,
) -> anyhow::Result<()> {
    let set = |figure: &'static str| {
        sets.get(&(op.operator_id.clone(), figure))
            .cloned()
            .unwrap_or_default()
    };
    let (gross, refunds) = (set("gross"), set("refunds"));
    for (figure, records) in [
        ("gross", gross.amount_minor),
        ("refunds", refunds.amount_minor),
        ("provider_fees", gross.fee_minor + refunds.fee_minor),
    ] {
        let amount = op.figure(figure).map_or(0, |f| f.amount_minor);
        if amount != records {
            anyhow::bail!(
                "{}'s {figure} is {amount} minor units but its records add up to {records}; nothing stored",
                op.operator_id
            );
        }
    }
    Ok(())
}

/// Parallel page writers on PostgreSQL (each a connection and a transaction of its own): the
/// database's work per page (compression, TOAST) is most of storing a large day, and two
/// backends do it on both cores while this side keeps producing.
const PAGE_WRITERS: u32 = 2;

/// Stores every page the producer sends, many per statement, and each sequence's totals and
/// fingerprint. A page out of order is refused (the producer numbers them consecutively).
///
/// With `writers` (PostgreSQL), the pages are written by up to [`PAGE_WRITERS`] tasks, each in
/// a transaction of its own on a connection of its own, committed before this returns; they
/// become the (day, operator)'s pages only when the run's transaction commits its
/// `settlement_record_sets` rows (readers find pages through them, by run id). A run that fails
/// after its writers committed leaves pages no set names; the next run of the (day, operator)
/// deletes them. Without (SQLite, one writer at a time), they go in the run's transaction.
async fn insert_record_pages(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    writers: Option<&AnyPool>,
    day: &str,
    run_id: i64,
    pages: &mut tokio::sync::mpsc::Receiver<RecordPage>,
) -> Result<std::collections::BTreeMap<(String, &'static str), RecordSet>, StoreError> {
    let mut sets: std::collections::BTreeMap<
        (String, &'static str),
        (RecordSet, ring::digest::Context),
    > = Default::default();
    // The writers: the run's connection keeps one, the rest of the pool is theirs.
    let writer_count = writers.map_or(0, |pool| {
        PAGE_WRITERS.min(pool.options().get_max_connections().saturating_sub(1))
    });
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    if let Some(pool) = writers {
        for _ in 0..writer_count {
            let (send, mut receive) = tokio::sync::mpsc::channel::<Vec<RecordPage>>(2);
            let (pool, day) = (pool.clone(), day.to_string());
            senders.push(send);
            tasks.push(tokio::spawn(async move {
                let mut wtx = pool.begin().await?;
                while let Some(batch) = receive.recv().await {
                    insert_pages(&mut *wtx, &batch, &day, run_id).await?;
                }
                wtx.commit().await?;
                Ok::<(), sqlx::Error>(())
            }));
        }
    }
    let mut batch: Vec<RecordPage> = Vec::with_capacity(PAGES_PER_INSERT);
    // Where the time goes: waiting for the producer, or for the database.
    let (mut waiting_pages, mut waiting_db) =
        (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let mut next_writer = 0;
    loop {
        let started = std::time::Instant::now();
        let more = pages.recv_many(&mut batch, PAGES_PER_INSERT).await > 0;
        waiting_pages += started.elapsed();
        if !batch.is_empty() {
            for p in &batch {
                let (set, digest) = sets
                    .entry((p.operator_id.clone(), p.figure))
                    .or_insert_with(|| {
                        (
                            RecordSet::default(),
                            ring::digest::Context::new(&ring::digest::SHA256),
                        )
                    });
                if p.page_no != set.pages {
                    return Err(StoreError::Invalid(anyhow::anyhow!(
                        "record page {} of {} {} came after page {}",
                        p.page_no,
                        p.operator_id,
                        p.figure,
                        set.pages
                    )));
                }
                set.pages += 1;
                set.records += p.records;
                set.amount_minor += p.amount_minor;
                set.fee_minor += p.fee_minor;
                digest.update(p.body.as_bytes());
            }
            let started = std::time::Instant::now();
            let full = std::mem::replace(&mut batch, Vec::with_capacity(PAGES_PER_INSERT));
            if senders.is_empty() {
                insert_pages(&mut **tx, &full, day, run_id).await?;
            } else {
                let writer = next_writer % senders.len();
                next_writer += 1;
                if senders[writer].send(full).await.is_err() {
                    // The writer stopped: its error is reported below.
                    senders.clear();
                }
            }
            waiting_db += started.elapsed();
        }
        if !more || (writers.is_some() && senders.is_empty()) {
            break;
        }
    }
    drop(senders);
    for task in tasks {
        task.await
            .map_err(|e| StoreError::Invalid(anyhow::anyhow!("a page writer failed: {e}")))??;
    }
    tracing::info!(
        waiting_for_pages_s = format!("{:.2}", waiting_pages.as_secs_f64()),
        waiting_for_database_s = format!("{:.2}", waiting_db.as_secs_f64()),
        writers = writer_count,
        "record pages stored"
    );
    let mut out = std::collections::BTreeMap::new();
    for ((operator, figure), (mut set, digest)) in sets {
        set.sha256 = hex::encode(digest.finish());
        sqlx::query(
            "INSERT INTO settlement_record_sets (business_day, operator_id, figure, pages, records, amount_minor, fee_minor, sha256, run_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(day)
        .bind(&operator)
        .bind(figure)
        .bind(set.pages as i64)
        .bind(set.records as i64)
        .bind(set.amount_minor)
        .bind(set.fee_minor)
        .bind(&set.sha256)
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
        out.insert((operator, figure), set);
    }
    Ok(out)
}

/// One INSERT of many pages.
async fn insert_pages<'e, E>(
    executor: E,
    batch: &[RecordPage],
    day: &str,
    run_id: i64,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!(
        "INSERT INTO settlement_record_pages (business_day, operator_id, figure, run_id, page_no, records, body) VALUES {}",
        values_list(batch.len(), 7)
    );
    let mut q = sqlx::query(&sql);
    for p in batch {
        q = q
            .bind(day)
            .bind(&p.operator_id)
            .bind(p.figure)
            .bind(run_id)
            .bind(p.page_no as i64)
            .bind(p.records as i64)
            .bind(&p.body);
    }
    q.execute(executor).await?;
    Ok(())
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

/// See [`Store::ops_figures`].
#[derive(Debug, Clone, Default)]
pub struct OpsFigures {
    /// (business day, started at ms, finished at ms) of the newest run.
    pub latest_run: Option<(String, i64, i64)>,
    /// (status, days).
    pub days: Vec<(String, i64)>,
    /// The newest business day with class counts, and its (operator, class, items).
    pub newest_day: Option<String>,
    pub classes: Vec<(String, String, i64)>,
}
