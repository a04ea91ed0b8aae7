//! Storage: the only module that speaks SQL.
//!
//! Portable SQL runs on PostgreSQL (the system of record) and SQLite (the embedded default)
//! through sqlx's `Any` driver; the migrations differ per backend, and so do the tap pipeline's
//! set-based statements (`waves.rs`: one statement per rule per wave on PostgreSQL, per-row
//! loops on SQLite). Everything the
//! gateway relies on across nodes — one answer per (terminal, sequence), one use of a ride code
//! per direction, one open journey per rider — is a database constraint, detected here with
//! `INSERT … ON CONFLICT DO NOTHING` so a conflict never aborts the surrounding transaction.
//!
//! Conventions: times are UTC Unix milliseconds, money is integer minor units plus a currency
//! code, ids are random positive 63-bit integers.

pub mod charging;
pub mod failure;
pub mod flow;
pub mod opendata;
pub mod repairs;
pub mod taps;
pub mod wallets;
pub mod wave_tx;
pub mod waves;

use std::str::FromStr;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor, Row};
pub use turnpike_wire::api::admin::{KeyStatus, TerminalStatus};

// Which database the store talks to: shared with the other stores (`turnpike-db`), and named
// `store::Backend` here as the rest of the gateway knows it.
pub use turnpike_db::Backend;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// PostgreSQL: the tap writers' sessions, set for their pipelined transactions once
    /// instead of per transaction (`wave_tx::TAP_SESSION`).
    tap_sessions: Option<AnyPool>,
    backend: Backend,
}

pub type Tx<'c> = sqlx::Transaction<'c, sqlx::Any>;
/// A connection, in a transaction or not: what the per-statement functions run on (a `Tx`
/// dereferences to one).
pub type Conn = sqlx::AnyConnection;

/// The migrations, compiled in (see `turnpike_db::Embedded`).
pub const POSTGRES_MIGRATIONS: turnpike_db::Embedded = turnpike_db::embedded!(
    "migrations/postgres",
    "0001_core.sql",
    "0002_charging.sql",
    "0003_tap_wave_check.sql",
    "0004_journeys_sweep_index.sql",
    "0005_wallet_signing.sql",
    "0006_repairs.sql",
    "0007_ops_indexes.sql",
    "0008_station_flow.sql",
    "0009_rider_tickets.sql",
);
pub const SQLITE_MIGRATIONS: turnpike_db::Embedded = turnpike_db::embedded!(
    "migrations/sqlite",
    "0001_core.sql",
    "0002_charging.sql",
    "0003_tap_wave_check.sql",
    "0004_journeys_sweep_index.sql",
    "0005_wallet_signing.sql",
    "0006_repairs.sql",
    "0007_ops_indexes.sql",
    "0008_station_flow.sql",
    "0009_rider_tickets.sql",
);

/// How long an SQLite writer waits for the write lock before the request fails with 503: far
/// longer than any of the gateway's transactions holds it (a tap group, a fare upload).
pub use turnpike_db::SQLITE_BUSY_TIMEOUT;

/// A pool's session set-up. The tap writers' sessions (`taps`, PostgreSQL only) also get
/// `wave_tx::TAP_SESSION` and the tap statements prepared (`waves::PG_PREPARED`).
fn pool_options(backend: Backend, connections_max: u32, taps: bool) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(connections_max)
        .acquire_timeout(turnpike_db::ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                let session: &[&str] = match backend {
                    // The gateway's queries are point lookups. A bitmap scan never marks
                    // the dead index entries it meets (a plain index scan does), and a
                    // rider's partial-index key collects one per closed journey until
                    // vacuum: on a young database the planner chose bitmap scans and every
                    // lookup re-read them all. sqlx's statements are planned per call
                    // (their plans would otherwise be fixed while a young database's tables
                    // are still empty); the tap writers' sessions ask for generic plans of
                    // their own prepared statements. Those inline their rows as literals,
                    // quoting by doubling `'` only (see `waves::literal`).
                    Backend::Postgres => &[
                        "SET enable_bitmapscan = off",
                        "SET plan_cache_mode = force_custom_plan",
                        "SET standard_conforming_strings = on",
                    ],
                    // WAL, FULL sync, the busy timeout, foreign keys: what every store's
                    // SQLite sessions share.
                    Backend::Sqlite => turnpike_db::SQLITE_SESSION,
                };
                for statement in session {
                    sqlx::query(statement).execute(&mut *conn).await?;
                }
                if taps && backend == Backend::Postgres {
                    for setting in wave_tx::TAP_SESSION {
                        conn.execute(format!("SET {setting}").as_str()).await?;
                    }
                    // No arguments: sent as one simple-protocol message.
                    conn.execute(waves::PG_PREPARED.as_str()).await?;
                }
                Ok(())
            })
        })
}

impl Store {
    /// Connects and runs migrations. `connections_max` bounds the pool; on PostgreSQL the tap
    /// writers have `tap_sessions` sessions of their own besides (see [`Store::tap_session`]).
    pub async fn connect(
        url: &str,
        connections_max: u32,
        tap_sessions: u32,
    ) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url);
        let options =
            AnyConnectOptions::from_str(url).with_context(|| "parsing database.url".to_string())?;
        if backend == Backend::Postgres {
            // Migrated before the pools exist: every tap writer's session prepares the tap
            // statements, which need the tables (an embedded SQLite database, possibly in
            // memory, is migrated through the pool below instead).
            let mut conn = sqlx::AnyConnection::connect_with(&options)
                .await
                .context("connecting to the PostgreSQL database")?;
            POSTGRES_MIGRATIONS
                .migrator()
                .await
                .context("reading migrations")?
                .run(&mut conn)
                .await
                .context("running migrations")?;
            conn.close()
                .await
                .context("closing the migration session")?;
        }
        let pool = pool_options(backend, connections_max.max(2), false)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("connecting to the {backend:?} database"))?;
        // The tap writers' own sessions (PostgreSQL), opened as they are first needed.
        // Handed out without the pool's ping (a round trip per group): a session that died is
        // found by the group's first statement, and the group is judged again on another
        // (`failure::classify`).
        let tap_sessions = (backend == Backend::Postgres).then(|| {
            pool_options(backend, tap_sessions.max(1), true)
                .test_before_acquire(false)
                .connect_lazy_with(options)
        });
        if backend == Backend::Sqlite {
            SQLITE_MIGRATIONS
                .migrator()
                .await
                .context("reading migrations")?
                .run(&pool)
                .await
                .context("running migrations")?;
        }
        Ok(Store {
            pool,
            tap_sessions,
            backend,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction. On SQLite every transaction takes the write lock up front
    /// (`BEGIN IMMEDIATE`), waiting for it up to [`SQLITE_BUSY_TIMEOUT`]: SQLite has one writer, and a deferred transaction that read
    /// first cannot upgrade once another connection has written — it would fail at once with
    /// "database is locked" (a 503 to a lone admin). So writers queue instead of failing.
    pub async fn begin(&self) -> Result<Tx<'static>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// A tap writer's session, outside any transaction: on PostgreSQL one with the tap
    /// statements prepared and `wave_tx::TAP_SESSION` set (see `wave_tx.rs`); on SQLite a
    /// connection of the pool.
    pub async fn tap_session(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        self.tap_sessions
            .as_ref()
            .unwrap_or(&self.pool)
            .acquire()
            .await
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ----- operators and fare data -----

    pub async fn insert_operator(&self, op: &OperatorRow) -> Result<bool, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO operators (operator_id, name, mode, time_zone, currency, daily_cap_minor, created_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&op.operator_id)
        .bind(&op.name)
        .bind(&op.mode)
        .bind(&op.time_zone)
        .bind(&op.currency)
        .bind(op.daily_cap_minor)
        .bind(op.created_at_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    pub async fn operators(&self) -> Result<Vec<OperatorRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT operator_id, name, mode, time_zone, currency, daily_cap_minor, created_at_ms
             FROM operators ORDER BY operator_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OperatorRow {
                    operator_id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    mode: r.try_get(2)?,
                    time_zone: r.try_get(3)?,
                    currency: r.try_get(4)?,
                    daily_cap_minor: r.try_get(5)?,
                    created_at_ms: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Stores a new fare-data version for an operator and returns its number. Concurrent
    /// uploads (on any node) each get a version of their own: a number taken meanwhile is
    /// skipped, not an error.
    pub async fn insert_fare_data(
        &self,
        operator_id: &str,
        format: &str,
        files_json: &str,
        now_ms: i64,
    ) -> Result<i64, sqlx::Error> {
        /// Each lost race means another upload committed; a handful of tries is plenty.
        const VERSION_TRIES_MAX: usize = 16;
        for _ in 0..VERSION_TRIES_MAX {
            let mut tx = self.begin().await?;
            let version: i64 = sqlx::query(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM fare_data WHERE operator_id = $1",
            )
            .bind(operator_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
            let inserted = sqlx::query(
                "INSERT INTO fare_data (operator_id, version, format, files_json, loaded_at_ms)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(operator_id)
            .bind(version)
            .bind(format)
            .bind(files_json)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            if inserted == 1 {
                return Ok(version);
            }
        }
        Err(sqlx::Error::Protocol(
            "fare data version still contended after retries".into(),
        ))
    }

    /// What `/metrics` reports of the database at each scrape: the capture backlog (charges
    /// pending or paying, counted up to [`BACKLOG_COUNT_MAX`]), since when the oldest metro or
    /// toll charge still to collect has waited, and the deny list's size by subject kind. Each is
    /// one probe of an index or a small table, so a scrape never scans the charges.
    ///
    /// "Waiting" is counted from the charge's creation, for a charge that is due (`now_ms` past
    /// its next attempt) or has been tried and failed (`last_error` set): the earliest *due* time
    /// would read 0 through a whole provider outage, because every unknown outcome moves the
    /// charge's next attempt forward. A correction not yet due and never tried does not count;
    /// tickets do not either (a pending ticket waits for its buyer, not for the worker).
    pub async fn ops_gauges(&self, now_ms: i64) -> Result<OpsGauges, sqlx::Error> {
        let backlog: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM charges WHERE status IN ('pending', 'paying') LIMIT {BACKLOG_COUNT_MAX}) AS b"
        ))
        .fetch_one(&self.pool)
        .await?;
        let waiting_since_ms: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(created_at_ms) FROM charges
             WHERE status IN ('pending', 'paying') AND kind <> 'ticket'
               AND (next_attempt_at_ms <= $1 OR last_error IS NOT NULL)",
        )
        .bind(now_ms)
        .fetch_one(&self.pool)
        .await?;
        let rows = sqlx::query(
            "SELECT subject_kind, COUNT(*) FROM deny_list GROUP BY subject_kind ORDER BY subject_kind",
        )
        .fetch_all(&self.pool)
        .await?;
        let deny_list = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(OpsGauges {
            capture_backlog: backlog,
            capture_waiting_since_ms: waiting_since_ms,
            deny_list,
        })
    }

    /// The newest fare data version of every operator: (operator, version). Cheap: read every
    /// refresh, while the data itself is read only when a version changed.
    pub async fn latest_fare_versions(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT operator_id, MAX(version) FROM fare_data GROUP BY operator_id ORDER BY operator_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// One version of an operator's fare data: (format, files_json).
    pub async fn fare_data(
        &self,
        operator_id: &str,
        version: i64,
    ) -> Result<Option<(String, String)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT format, files_json FROM fare_data WHERE operator_id = $1 AND version = $2",
        )
        .bind(operator_id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    // ----- terminals -----

    /// Registers a terminal, or moves an active one; never touches a revoked terminal (returns
    /// false then).
    pub async fn upsert_active_terminal(
        &self,
        t: &TerminalRow,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "INSERT INTO terminals (terminal_id, operator_id, location_id, status, created_at_ms, changed_at_ms)
             VALUES ($1, $2, $3, 'active', $4, $4)
             ON CONFLICT (terminal_id) DO UPDATE SET operator_id = excluded.operator_id,
                 location_id = excluded.location_id, changed_at_ms = excluded.changed_at_ms
             WHERE terminals.status = 'active'",
        )
        .bind(&t.terminal_id)
        .bind(&t.operator_id)
        .bind(&t.location_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn set_terminal_status(
        &self,
        terminal_id: &str,
        status: TerminalStatus,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE terminals SET status = $2, changed_at_ms = $3 WHERE terminal_id = $1",
        )
        .bind(terminal_id)
        .bind(status.as_str())
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn terminals(&self) -> Result<Vec<TerminalRow>, sqlx::Error> {
        let rows = sqlx::query("SELECT terminal_id, operator_id, location_id, status FROM terminals ORDER BY terminal_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TerminalRow {
                    terminal_id: r.try_get(0)?,
                    operator_id: r.try_get(1)?,
                    location_id: r.try_get(2)?,
                    status: charging::spelled(
                        r.try_get(3)?,
                        TerminalStatus::parse,
                        "terminal status",
                    )?,
                })
            })
            .collect()
    }

    // ----- issuer keys -----

    pub async fn issuer_keys(&self) -> Result<Vec<IssuerKeyRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT key_id, pkcs8, public_key, status, activated_at_ms FROM issuer_keys ORDER BY key_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IssuerKeyRow {
                    key_id: r.try_get(0)?,
                    pkcs8: r.try_get(1)?,
                    public_key: r.try_get(2)?,
                    status: charging::spelled(r.try_get(3)?, KeyStatus::parse, "key status")?,
                    activated_at_ms: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Stages `key` as the next key (published and accepted, not yet signing); false if a key is
    /// already staged.
    pub async fn stage_issuer_key(
        &self,
        key: &IssuerKeyRow,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "INSERT INTO issuer_keys (key_id, pkcs8, public_key, status, created_at_ms)
             VALUES ($1, $2, $3, 'next', $4) ON CONFLICT DO NOTHING",
        )
        .bind(key.key_id)
        .bind(&key.pkcs8)
        .bind(&key.public_key)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Promotes the staged key: next → current, current → previous (still accepted),
    /// previous → retired. One transaction, so every node sees the old ring or the new one.
    /// False if no key is staged. Concurrent rotations (any node) promote a staged key once:
    /// the first statement claims the staged row, and a rotation that waited for it finds it
    /// no longer staged.
    pub async fn rotate_issuer_key(&self, now_ms: i64) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let staged: Option<i64> =
            sqlx::query("SELECT key_id FROM issuer_keys WHERE status = 'next'")
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
        let Some(staged) = staged else {
            return Ok(false);
        };
        let claimed = sqlx::query(
            "UPDATE issuer_keys SET activated_at_ms = $1 WHERE key_id = $2 AND status = 'next'",
        )
        .bind(now_ms)
        .bind(staged)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE issuer_keys SET status = 'retired' WHERE status = 'previous'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE issuer_keys SET status = 'previous' WHERE status = 'current'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE issuer_keys SET status = 'current' WHERE key_id = $1")
            .bind(staged)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The stored request digest and answer of a tap, if that (terminal, sequence) was used.
    pub async fn stored_tap(
        &self,
        terminal_id: &str,
        sequence: i64,
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT request_sha256, response FROM taps WHERE terminal_id = $1 AND sequence = $2",
        )
        .bind(terminal_id)
        .bind(sequence)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    // ----- riders and credentials -----

    pub async fn insert_rider(
        &self,
        rider_id: i64,
        token_sha256: &[u8],
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO riders (rider_id, token_sha256, created_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(rider_id)
        .bind(token_sha256.to_vec())
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn rider_by_token(&self, token_sha256: &[u8]) -> Result<Option<i64>, sqlx::Error> {
        let row = sqlx::query("SELECT rider_id FROM riders WHERE token_sha256 = $1")
            .bind(token_sha256.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get(0)).transpose()
    }

    pub async fn insert_credential(&self, c: &CredentialRow) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO credentials (credential_id, rider_id, device_public_key, issuer_key_id, products,
                                      valid_from_s, valid_until_s, issued_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(c.credential_id)
        .bind(c.rider_id)
        .bind(c.device_public_key.clone())
        .bind(c.issuer_key_id)
        .bind(c.products)
        .bind(c.valid_from_s)
        .bind(c.valid_until_s)
        .bind(c.issued_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn credential_ids_of_rider(&self, rider_id: i64) -> Result<Vec<i64>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT credential_id FROM credentials WHERE rider_id = $1 ORDER BY credential_id",
        )
        .bind(rider_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| r.try_get(0)).collect()
    }

    /// A rider's journeys, newest first, at most `limit`.
    pub async fn journeys_of_rider(
        &self,
        rider_id: i64,
        limit: i64,
    ) -> Result<Vec<JourneyRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {JOURNEY_COLUMNS} FROM journeys WHERE rider_id = $1 AND status <> 'void' ORDER BY entry_at_ms DESC, journey_id LIMIT $2"
        ))
        .bind(rider_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(JourneyRow::from_row).collect()
    }

    // ----- deny list -----

    pub async fn deny_add(
        &self,
        kind: &str,
        subject_id: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "INSERT INTO deny_list (subject_kind, subject_id, reason, added_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(kind)
        .bind(subject_id)
        .bind(reason)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn deny_remove(&self, kind: &str, subject_id: i64) -> Result<bool, sqlx::Error> {
        let n = sqlx::query("DELETE FROM deny_list WHERE subject_kind = $1 AND subject_id = $2")
            .bind(kind)
            .bind(subject_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub async fn deny_list(&self) -> Result<Vec<DenyRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT subject_kind, subject_id, reason, added_at_ms FROM deny_list ORDER BY subject_kind, subject_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DenyRow {
                    subject_kind: r.try_get(0)?,
                    subject_id: r.try_get(1)?,
                    reason: r.try_get(2)?,
                    added_at_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// The fares a rider's journeys of one operator's business day came to (what the daily cap
    /// is measured against); 0 when the rider has none that day.
    pub async fn rider_day_fares_minor(
        &self,
        rider_id: i64,
        operator_id: &str,
        business_day: &str,
    ) -> Result<i64, sqlx::Error> {
        let row = sqlx::query(
            "SELECT fares_total_minor FROM rider_days
             WHERE rider_id = $1 AND operator_id = $2 AND business_day = $3",
        )
        .bind(rider_id)
        .bind(operator_id)
        .bind(business_day)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map(|v| v.unwrap_or(0))
    }

    /// The deny-list entries naming `rider_id` or one of its credentials, oldest first (what
    /// the rider may see of the deny list: only their own).
    pub async fn deny_entries_of_rider(&self, rider_id: i64) -> Result<Vec<DenyRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT subject_kind, subject_id, reason, added_at_ms FROM deny_list
             WHERE (subject_kind = 'rider' AND subject_id = $1)
                OR (subject_kind = 'credential'
                    AND subject_id IN (SELECT credential_id FROM credentials WHERE rider_id = $1))
             ORDER BY added_at_ms, subject_kind, subject_id",
        )
        .bind(rider_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DenyRow {
                    subject_kind: r.try_get(0)?,
                    subject_id: r.try_get(1)?,
                    reason: r.try_get(2)?,
                    added_at_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Open journeys entered before `entered_before_ms`, oldest first, at most `limit`.
    pub async fn stale_open_journeys(
        &self,
        entered_before_ms: i64,
        limit: i64,
    ) -> Result<Vec<JourneyRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {JOURNEY_COLUMNS} FROM journeys WHERE status = 'open' AND entry_at_ms < $1
             ORDER BY entry_at_ms LIMIT $2"
        ))
        .bind(entered_before_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(JourneyRow::from_row).collect()
    }

    /// Number of taps stored (for the demo summary and tests).
    pub async fn tap_counts(&self) -> Result<Vec<(String, Option<String>, i64)>, sqlx::Error> {
        let rows = sqlx::query("SELECT decision, reason, COUNT(*) FROM taps GROUP BY decision, reason ORDER BY decision, reason")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    pub operator_id: String,
    pub name: String,
    pub mode: String,
    pub time_zone: String,
    pub currency: String,
    pub daily_cap_minor: Option<i64>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct TerminalRow {
    pub terminal_id: String,
    pub operator_id: String,
    pub location_id: String,
    pub status: TerminalStatus,
}

#[derive(Debug, Clone)]
pub struct IssuerKeyRow {
    pub key_id: i64,
    pub pkcs8: Vec<u8>,
    pub public_key: Vec<u8>,
    pub status: KeyStatus,
    /// When the key became current (None while staged).
    pub activated_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct CredentialRow {
    pub credential_id: i64,
    pub rider_id: i64,
    pub device_public_key: Vec<u8>,
    pub issuer_key_id: i64,
    pub products: i64,
    pub valid_from_s: i64,
    pub valid_until_s: i64,
    pub issued_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct DenyRow {
    pub subject_kind: String,
    pub subject_id: i64,
    pub reason: String,
    pub added_at_ms: i64,
}

pub(crate) const JOURNEY_COLUMNS: &str =
    "journey_id, rider_id, credential_id, operator_id, mode, status,
    entry_terminal_id, entry_sequence, entry_location_id, entry_at_ms,
    exit_terminal_id, exit_sequence, exit_location_id, exit_at_ms, vehicle_class,
    close_reason, fare_minor, charge_minor, currency, business_day";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JourneyRow {
    pub journey_id: i64,
    pub rider_id: i64,
    pub credential_id: i64,
    pub operator_id: String,
    pub mode: String,
    pub status: String,
    /// Empty for an exit whose entry is not known (then `entry_at_ms` is the exit's time).
    pub entry_terminal_id: Option<String>,
    pub entry_sequence: Option<i64>,
    pub entry_location_id: Option<String>,
    pub entry_at_ms: i64,
    pub exit_terminal_id: Option<String>,
    pub exit_sequence: Option<i64>,
    pub exit_location_id: Option<String>,
    pub exit_at_ms: Option<i64>,
    pub vehicle_class: Option<String>,
    pub close_reason: Option<String>,
    pub fare_minor: Option<i64>,
    pub charge_minor: Option<i64>,
    pub currency: Option<String>,
    pub business_day: Option<String>,
}

impl JourneyRow {
    pub(crate) fn from_row(r: &sqlx::any::AnyRow) -> Result<JourneyRow, sqlx::Error> {
        Ok(JourneyRow {
            journey_id: r.try_get(0)?,
            rider_id: r.try_get(1)?,
            credential_id: r.try_get(2)?,
            operator_id: r.try_get(3)?,
            mode: r.try_get(4)?,
            status: r.try_get(5)?,
            entry_terminal_id: r.try_get(6)?,
            entry_sequence: r.try_get(7)?,
            entry_location_id: r.try_get(8)?,
            entry_at_ms: r.try_get(9)?,
            exit_terminal_id: r.try_get(10)?,
            exit_sequence: r.try_get(11)?,
            exit_location_id: r.try_get(12)?,
            exit_at_ms: r.try_get(13)?,
            vehicle_class: r.try_get(14)?,
            close_reason: r.try_get(15)?,
            fare_minor: r.try_get(16)?,
            charge_minor: r.try_get(17)?,
            currency: r.try_get(18)?,
            business_day: r.try_get(19)?,
        })
    }
}

/// Journey totals per operator and status (for the demo summary and operators' dashboards).
#[derive(Debug, Clone)]
pub struct JourneyTotals {
    pub operator_id: String,
    pub status: String,
    pub journeys: i64,
    pub fares_minor: i64,
    pub charges_minor: i64,
}

impl Store {
    pub async fn journey_totals(&self) -> Result<Vec<JourneyTotals>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT operator_id, status, COUNT(*), CAST(COALESCE(SUM(fare_minor), 0) AS BIGINT), CAST(COALESCE(SUM(charge_minor), 0) AS BIGINT)
             FROM journeys GROUP BY operator_id, status ORDER BY operator_id, status",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JourneyTotals {
                    operator_id: r.try_get(0)?,
                    status: r.try_get(1)?,
                    journeys: r.try_get(2)?,
                    fares_minor: r.try_get(3)?,
                    charges_minor: r.try_get(4)?,
                })
            })
            .collect()
    }
}

/// Tables whose row counts tests and operators may ask for.
const COUNTABLE_TABLES: [&str; 19] = [
    "taps",
    "journeys",
    "code_uses",
    "riders",
    "credentials",
    "deny_list",
    "terminals",
    "rider_days",
    "rider_wallets",
    "wallet_signings",
    "charges",
    "charge_attempts",
    "ledger_transactions",
    "ledger_lines",
    "refunds",
    "disputes",
    "ticket_orders",
    "provider_notifications",
    "rider_real_name",
];

impl Store {
    /// Number of rows in one of [`COUNTABLE_TABLES`].
    pub async fn count_rows(&self, table: &str) -> anyhow::Result<i64> {
        anyhow::ensure!(
            COUNTABLE_TABLES.contains(&table),
            "not a countable table: {table}"
        );
        Ok(sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }
}

/// One line of a business day's journey totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayTotals {
    pub operator_id: String,
    pub close_reason: String,
    pub currency: String,
    pub journeys: i64,
    pub fares_minor: i64,
    pub charges_minor: i64,
}

impl Store {
    /// PostgreSQL sums BIGINT into NUMERIC, which the portable driver cannot decode, hence the casts.
    ///
    /// Closed journeys of one business day (`YYYY-MM-DD`, operator time zone), per operator and
    /// close reason.
    pub async fn day_totals(&self, business_day: &str) -> Result<Vec<DayTotals>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT operator_id, close_reason, currency, COUNT(*), CAST(SUM(fare_minor) AS BIGINT), CAST(SUM(charge_minor) AS BIGINT)
             FROM journeys WHERE status = 'closed' AND business_day = $1
             GROUP BY operator_id, close_reason, currency ORDER BY operator_id, close_reason, currency",
        )
        .bind(business_day)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DayTotals {
                    operator_id: r.try_get(0)?,
                    close_reason: r.try_get(1)?,
                    currency: r.try_get(2)?,
                    journeys: r.try_get(3)?,
                    fares_minor: r.try_get(4)?,
                    charges_minor: r.try_get(5)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
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

/// The most charges `/metrics` counts in the capture backlog (a count beyond it reads as this:
/// the alert has fired long before).
pub const BACKLOG_COUNT_MAX: i64 = 100_000;

/// See [`Store::ops_gauges`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsGauges {
    pub capture_backlog: i64,
    /// Creation time of the oldest metro or toll charge due or tried and still uncollected.
    pub capture_waiting_since_ms: Option<i64>,
    /// (subject kind, entries).
    pub deny_list: Vec<(String, i64)>,
}
