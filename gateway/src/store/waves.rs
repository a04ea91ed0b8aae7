//! Set-based SQL of the tap engine: each function handles every row of one *wave* (see
//! `engine.rs`: a wave holds at most one tap per rider and per idempotency key) at once.
//!
//! On PostgreSQL each rule is one statement, whatever the number of rows: the rows travel as
//! JSON unpacked by `json_to_recordset` (sqlx's `Any` driver binds no arrays). Byte strings
//! travel as hex. The statements come in two forms built from the same text: with the JSON bound
//! as a `$1` parameter (the functions below, one round trip each), and prepared once per session
//! (`PG_PREPARED`) for the pipelined transaction of `wave_tx.rs`, which runs them by name with
//! the JSON inlined as a literal, a wave's reads in one round trip and its writes deferred into
//! the next (`reads_sql`, `write_wave_sql`). On SQLite, which runs
//! in process with no round trip to save, the same per-row statements run in a loop. All report
//! row by row what happened, so constraint conflicts are values, never aborted transactions.
//!
//! Lookups are written as `LATERAL (… LIMIT 1)` per JSON row: that always plans as one index
//! probe per row, whereas a plain join's cached generic plan, made while a fresh database's
//! tables were still empty, kept scanning the whole `taps` table for every wave.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::charging::trade_no;
use super::charging::{ChargeKind, ChargeStatus};
use super::{Conn, JourneyRow, JOURNEY_COLUMNS};

pub(super) fn is_postgres(conn: &Conn) -> bool {
    conn.backend_name() == "PostgreSQL"
}

fn json<T: Serialize>(rows: &[T]) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|e| sqlx::Error::Protocol(format!("encoding rows: {e}")))
}

/// Runs one of the `$1`-parameterised PostgreSQL statements below with `rows` as its JSON.
async fn pg_rows<T: Serialize>(
    conn: &mut Conn,
    sql: &str,
    rows: &[T],
) -> Result<Vec<AnyRow>, sqlx::Error> {
    sqlx::query(sql).bind(json(rows)?).fetch_all(conn).await
}

/// Like `pg_rows`, for a statement that answers one count.
async fn pg_count<T: Serialize>(
    conn: &mut Conn,
    sql: &str,
    rows: &[T],
) -> Result<usize, sqlx::Error> {
    let n: i64 = sqlx::query(sql)
        .bind(json(rows)?)
        .fetch_one(conn)
        .await?
        .try_get(0)?;
    Ok(n as usize)
}

/// An idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TapKey {
    #[serde(rename = "t")]
    pub terminal_id: String,
    #[serde(rename = "s")]
    pub sequence: i64,
}

/// What an earlier request with the same key stored.
#[derive(Debug, Clone)]
pub struct StoredTap {
    pub request_sha256: Vec<u8>,
    pub response: Vec<u8>,
}

/// The taps already stored under these keys.
pub async fn existing_taps(
    conn: &mut Conn,
    keys: &[TapKey],
) -> Result<HashMap<TapKey, StoredTap>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    if is_postgres(conn) {
        let rows = pg_rows(conn, &PG_EXISTING, keys).await?;
        return stored_taps(&rows);
    }
    let mut rows = Vec::new();
    for key in keys {
        rows.extend(
            sqlx::query(
                "SELECT terminal_id, sequence, request_sha256, response FROM taps
                 WHERE terminal_id = $1 AND sequence = $2",
            )
            .bind(&key.terminal_id)
            .bind(key.sequence)
            .fetch_optional(&mut *conn)
            .await?,
        );
    }
    stored_taps(&rows)
}

/// One use of a ride code in one direction, by the tap that makes it.
#[derive(Debug, Clone, Serialize)]
pub struct CodeUse {
    #[serde(rename = "f", serialize_with = "as_hex")]
    pub fingerprint: [u8; 32],
    #[serde(rename = "d")]
    pub direction: &'static str,
    #[serde(rename = "t")]
    pub terminal_id: String,
    #[serde(rename = "s")]
    pub sequence: i64,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

fn as_hex_opt<S: serde::Serializer>(bytes: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(b) => s.serialize_str(&hex::encode(b)),
        None => s.serialize_none(),
    }
}

impl CodeUse {
    /// The idempotency key of the tap that makes this use.
    pub fn key(&self) -> TapKey {
        TapKey {
            terminal_id: self.terminal_id.clone(),
            sequence: self.sequence,
        }
    }
}

/// Consumes the codes (the replay rule); returns, per input row, whether this use was the first.
/// A wave never holds the same (code, direction) twice.
pub async fn consume_codes(conn: &mut Conn, uses: &[CodeUse]) -> Result<Vec<bool>, sqlx::Error> {
    if uses.is_empty() {
        return Ok(Vec::new());
    }
    if is_postgres(conn) {
        let rows = pg_rows(conn, &PG_CONSUME, uses).await?;
        first_uses(uses, &rows)
    } else {
        let mut out = Vec::with_capacity(uses.len());
        for u in uses {
            let n = sqlx::query(
                "INSERT INTO code_uses (code_fingerprint, direction, terminal_id, sequence)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(u.fingerprint.to_vec())
            .bind(u.direction)
            .bind(&u.terminal_id)
            .bind(u.sequence)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            out.push(n == 1);
        }
        Ok(out)
    }
}

/// Gives consumed codes back (their tap was declined by a later rule).
pub async fn release_codes(conn: &mut Conn, uses: &[CodeUse]) -> Result<(), sqlx::Error> {
    if uses.is_empty() {
        return Ok(());
    }
    if is_postgres(conn) {
        pg_count(conn, &PG_RELEASE, uses).await?;
    } else {
        for u in uses {
            sqlx::query("DELETE FROM code_uses WHERE code_fingerprint = $1 AND direction = $2")
                .bind(u.fingerprint.to_vec())
                .bind(u.direction)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RiderMode {
    #[serde(rename = "r")]
    pub rider_id: i64,
    #[serde(rename = "m")]
    pub mode: &'static str,
}

/// The open journeys of these riders in these modes (at most one each, by constraint).
pub async fn open_journeys(
    conn: &mut Conn,
    keys: &[RiderMode],
) -> Result<Vec<JourneyRow>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    if is_postgres(conn) {
        let rows = pg_rows(conn, &PG_OPEN_JOURNEYS, keys).await?;
        rows.iter().map(JourneyRow::from_row).collect()
    } else {
        let sql = format!(
            "SELECT {JOURNEY_COLUMNS} FROM journeys WHERE rider_id = $1 AND mode = $2 AND status = 'open'"
        );
        let mut out = Vec::new();
        for key in keys {
            if let Some(row) = sqlx::query(&sql)
                .bind(key.rider_id)
                .bind(key.mode)
                .fetch_optional(&mut *conn)
                .await?
            {
                out.push(JourneyRow::from_row(&row)?);
            }
        }
        Ok(out)
    }
}

/// A fare added to a rider's day (the daily cap's running total).
#[derive(Debug, Clone, Serialize)]
pub struct DayFare {
    #[serde(rename = "r")]
    pub rider_id: i64,
    #[serde(rename = "o")]
    pub operator_id: String,
    #[serde(rename = "d")]
    pub business_day: String,
    #[serde(rename = "f")]
    pub fare_minor: i64,
    /// The day's total before this fare, as the writer knows it (`None`: no row yet); used
    /// only by the assumed writes ([`assumed_writes_sql`]), which check it.
    #[serde(rename = "b")]
    pub before_minor: Option<i64>,
}

/// Adds each fare to its rider's day and returns, per input row, the day's total before it.
/// The rows' (rider, operator, day) are distinct; the upsert is atomic per row, so concurrent
/// closes on several nodes add up exactly.
pub async fn add_to_rider_days(
    conn: &mut Conn,
    fares: &[DayFare],
) -> Result<Vec<i64>, sqlx::Error> {
    if fares.is_empty() {
        return Ok(Vec::new());
    }
    if is_postgres(conn) {
        let rows = sqlx::query(
            "INSERT INTO rider_days (rider_id, operator_id, business_day, fares_total_minor)
             SELECT x.r, x.o, x.d, x.f FROM json_to_recordset($1::json) AS x(r bigint, o text, d text, f bigint)
             ORDER BY x.r, x.o, x.d
             ON CONFLICT (rider_id, operator_id, business_day)
             DO UPDATE SET fares_total_minor = rider_days.fares_total_minor + excluded.fares_total_minor
             RETURNING rider_id, operator_id, business_day, fares_total_minor",
        )
        .bind(json(fares)?)
        .fetch_all(&mut *conn)
        .await?;
        let mut after = HashMap::with_capacity(rows.len());
        for r in &rows {
            after.insert(
                (
                    r.try_get::<i64, _>(0)?,
                    r.try_get::<String, _>(1)?,
                    r.try_get::<String, _>(2)?,
                ),
                r.try_get::<i64, _>(3)?,
            );
        }
        fares
            .iter()
            .map(|f| {
                after
                    .get(&(f.rider_id, f.operator_id.clone(), f.business_day.clone()))
                    .map(|total| total - f.fare_minor)
                    .ok_or_else(|| sqlx::Error::Protocol("rider day not returned".into()))
            })
            .collect()
    } else {
        let mut out = Vec::with_capacity(fares.len());
        for f in fares {
            out.push(
                super::taps::add_to_rider_day(
                    conn,
                    f.rider_id,
                    &f.operator_id,
                    &f.business_day,
                    f.fare_minor,
                )
                .await?,
            );
        }
        Ok(out)
    }
}

/// A journey's close (at an exit, or as incomplete).
#[derive(Debug, Clone, Serialize)]
pub struct Close {
    #[serde(rename = "j")]
    pub journey_id: i64,
    /// The journey's entry as it was read (or known): the close misses (a race) if a re-pairing
    /// rewrote it meanwhile.
    #[serde(rename = "ot")]
    pub entry_terminal_id: Option<String>,
    #[serde(rename = "os")]
    pub entry_sequence: Option<i64>,
    #[serde(rename = "et")]
    pub exit_terminal_id: Option<String>,
    #[serde(rename = "es")]
    pub exit_sequence: Option<i64>,
    #[serde(rename = "el")]
    pub exit_location_id: Option<String>,
    #[serde(rename = "ea")]
    pub exit_at_ms: Option<i64>,
    #[serde(rename = "vc")]
    pub vehicle_class: Option<&'static str>,
    #[serde(rename = "cr")]
    pub close_reason: &'static str,
    #[serde(rename = "f")]
    pub fare_minor: i64,
    #[serde(rename = "c")]
    pub charge_minor: i64,
    #[serde(rename = "cu")]
    pub currency: &'static str,
    #[serde(rename = "d")]
    pub business_day: String,
    #[serde(rename = "ca")]
    pub closed_at_ms: i64,
}

/// Closes open journeys; returns how many were still open (and are now closed).
pub async fn close_journeys(conn: &mut Conn, closes: &[Close]) -> Result<usize, sqlx::Error> {
    if closes.is_empty() {
        return Ok(0);
    }
    if is_postgres(conn) {
        pg_count(conn, &PG_CLOSE, closes).await
    } else {
        let mut closed = 0;
        for c in closes {
            let row = super::taps::JourneyClose {
                journey_id: c.journey_id,
                exit_terminal_id: c.exit_terminal_id.as_deref(),
                exit_sequence: c.exit_sequence,
                exit_location_id: c.exit_location_id.as_deref(),
                exit_at_ms: c.exit_at_ms,
                vehicle_class: c.vehicle_class,
                close_reason: c.close_reason,
                fare_minor: c.fare_minor,
                charge_minor: c.charge_minor,
                currency: c.currency,
                business_day: &c.business_day,
                closed_at_ms: c.closed_at_ms,
            };
            if super::taps::close_journey(conn, &row).await? {
                closed += 1;
            }
        }
        Ok(closed)
    }
}

/// A journey opened by an entry.
#[derive(Debug, Clone, Serialize)]
pub struct Open {
    #[serde(rename = "j")]
    pub journey_id: i64,
    #[serde(rename = "r")]
    pub rider_id: i64,
    #[serde(rename = "c")]
    pub credential_id: i64,
    #[serde(rename = "o")]
    pub operator_id: String,
    #[serde(rename = "m")]
    pub mode: &'static str,
    #[serde(rename = "t")]
    pub entry_terminal_id: String,
    #[serde(rename = "s")]
    pub entry_sequence: i64,
    #[serde(rename = "l")]
    pub entry_location_id: String,
    #[serde(rename = "a")]
    pub entry_at_ms: i64,
}

impl Open {
    /// The journey as the database holds it once opened.
    pub fn as_journey_row(&self) -> JourneyRow {
        JourneyRow {
            journey_id: self.journey_id,
            rider_id: self.rider_id,
            credential_id: self.credential_id,
            operator_id: self.operator_id.clone(),
            mode: self.mode.to_string(),
            status: "open".to_string(),
            entry_terminal_id: Some(self.entry_terminal_id.clone()),
            entry_sequence: Some(self.entry_sequence),
            entry_location_id: Some(self.entry_location_id.clone()),
            entry_at_ms: self.entry_at_ms,
            exit_terminal_id: None,
            exit_sequence: None,
            exit_location_id: None,
            exit_at_ms: None,
            vehicle_class: None,
            close_reason: None,
            fare_minor: None,
            charge_minor: None,
            currency: None,
            business_day: None,
        }
    }
}

/// Opens journeys; returns how many opened (one that did not had a rider with an open journey
/// in that mode already: another node got there first).
pub async fn open(conn: &mut Conn, journeys: &[Open]) -> Result<usize, sqlx::Error> {
    if journeys.is_empty() {
        return Ok(0);
    }
    const COLUMNS: &str = "journey_id, rider_id, credential_id, operator_id, mode, status,
                           entry_terminal_id, entry_sequence, entry_location_id, entry_at_ms";
    if is_postgres(conn) {
        pg_count(conn, &PG_OPEN, journeys).await
    } else {
        let sql = format!(
            "INSERT INTO journeys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9)
             ON CONFLICT DO NOTHING"
        );
        let mut opened = 0;
        for j in journeys {
            opened += sqlx::query(&sql)
                .bind(j.journey_id)
                .bind(j.rider_id)
                .bind(j.credential_id)
                .bind(&j.operator_id)
                .bind(j.mode)
                .bind(&j.entry_terminal_id)
                .bind(j.entry_sequence)
                .bind(&j.entry_location_id)
                .bind(j.entry_at_ms)
                .execute(&mut *conn)
                .await?
                .rows_affected() as usize;
        }
        Ok(opened)
    }
}

/// A journey's charge, at attempt 1.
#[derive(Debug, Clone, Serialize)]
pub struct JourneyCharge {
    #[serde(rename = "i")]
    pub charge_id: i64,
    #[serde(rename = "k")]
    pub kind: ChargeKind,
    #[serde(rename = "o")]
    pub operator_id: String,
    #[serde(rename = "r")]
    pub rider_id: i64,
    #[serde(rename = "j")]
    pub journey_id: i64,
    #[serde(rename = "a")]
    pub amount_minor: i64,
    #[serde(rename = "c")]
    pub currency: &'static str,
    #[serde(rename = "d")]
    pub business_day: String,
    #[serde(rename = "st")]
    pub status: ChargeStatus,
    #[serde(rename = "n")]
    pub next_attempt_at_ms: i64,
    #[serde(rename = "l")]
    pub lease_until_ms: Option<i64>,
    #[serde(rename = "t")]
    pub terminal_id: Option<String>,
    #[serde(rename = "s")]
    pub terminal_sequence: Option<i64>,
    #[serde(rename = "now")]
    pub now_ms: i64,
    /// The first attempt's trade number.
    #[serde(rename = "x")]
    pub out_trade_no: String,
}

impl JourneyCharge {
    /// Fills in the first attempt's trade number.
    pub fn with_trade_no(mut self) -> JourneyCharge {
        self.out_trade_no = trade_no(self.kind, self.charge_id, 1);
        self
    }
}

/// Inserts charges at attempt 1 with their attempt rows; returns, per input row, whether it was
/// inserted (false: the journey already has a charge).
pub async fn insert_charges(
    conn: &mut Conn,
    charges: &[JourneyCharge],
) -> Result<Vec<bool>, sqlx::Error> {
    if charges.is_empty() {
        return Ok(Vec::new());
    }
    if is_postgres(conn) {
        let rows = pg_rows(conn, &PG_CHARGES, charges).await?;
        let inserted = rows
            .iter()
            .map(|r| r.try_get::<i64, _>(0))
            .collect::<Result<HashSet<_>, _>>()?;
        Ok(charges
            .iter()
            .map(|c| inserted.contains(&c.charge_id))
            .collect())
    } else {
        let mut out = Vec::with_capacity(charges.len());
        for c in charges {
            out.push(super::charging::insert_charge(conn, &c.as_new_charge()).await?);
        }
        Ok(out)
    }
}

impl JourneyCharge {
    pub fn as_new_charge(&self) -> super::charging::NewCharge<'_> {
        super::charging::NewCharge {
            charge_id: self.charge_id,
            kind: self.kind,
            operator_id: &self.operator_id,
            rider_id: Some(self.rider_id),
            journey_id: Some(self.journey_id),
            amount_minor: self.amount_minor,
            currency: self.currency,
            business_day: &self.business_day,
            status: self.status,
            next_attempt_at_ms: self.next_attempt_at_ms,
            lease_until_ms: self.lease_until_ms,
            terminal_id: self.terminal_id.as_deref(),
            terminal_sequence: self.terminal_sequence,
            now_ms: self.now_ms,
        }
    }
}

/// A judged tap with its exact answer bytes: the idempotency record and the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct TapRecord {
    #[serde(rename = "t")]
    pub terminal_id: String,
    #[serde(rename = "s")]
    pub sequence: i64,
    #[serde(rename = "h", serialize_with = "as_hex")]
    pub request_sha256: [u8; 32],
    #[serde(rename = "d")]
    pub direction: &'static str,
    #[serde(rename = "sa")]
    pub scanned_at_ms: i64,
    #[serde(rename = "ra")]
    pub received_at_ms: i64,
    #[serde(rename = "f", serialize_with = "as_hex_opt")]
    pub code_fingerprint: Option<[u8; 32]>,
    #[serde(rename = "r")]
    pub rider_id: Option<i64>,
    #[serde(rename = "c")]
    pub credential_id: Option<i64>,
    #[serde(rename = "de")]
    pub decision: &'static str,
    #[serde(rename = "re")]
    pub reason: Option<String>,
    #[serde(rename = "j")]
    pub journey_id: Option<i64>,
    /// The answer, which is JSON text.
    #[serde(rename = "b")]
    pub response: String,
}

/// Stores judged taps; returns how many were inserted (one that was not had its key taken by a
/// concurrent request on another writer or node).
pub async fn insert_taps(conn: &mut Conn, taps: &[TapRecord]) -> Result<usize, sqlx::Error> {
    if taps.is_empty() {
        return Ok(0);
    }
    const COLUMNS: &str = "terminal_id, sequence, request_sha256, direction, scanned_at_ms, received_at_ms,
                           code_fingerprint, rider_id, credential_id, decision, reason, journey_id, response";
    if is_postgres(conn) {
        pg_count(conn, &PG_TAPS, taps).await
    } else {
        let sql = format!(
            "INSERT INTO taps ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT DO NOTHING"
        );
        let mut inserted = 0;
        for t in taps {
            inserted += sqlx::query(&sql)
                .bind(&t.terminal_id)
                .bind(t.sequence)
                .bind(t.request_sha256.to_vec())
                .bind(t.direction)
                .bind(t.scanned_at_ms)
                .bind(t.received_at_ms)
                .bind(t.code_fingerprint.map(|f| f.to_vec()))
                .bind(t.rider_id)
                .bind(t.credential_id)
                .bind(t.decision)
                .bind(t.reason.as_deref())
                .bind(t.journey_id)
                .bind(t.response.as_bytes().to_vec())
                .execute(&mut *conn)
                .await?
                .rows_affected() as usize;
        }
        Ok(inserted)
    }
}

/// A wave's writes as PostgreSQL text for the pipelined transaction (see `wave_tx.rs`): one
/// `EXECUTE` of a prepared statement ([`PG_PREPARED`]) per rule that has rows, in this order:
/// close journeys, open journeys, insert charges with their first attempts, give codes back,
/// record the taps. If any row is not written (a race with another writer or node, a journey
/// that already had a charge), its statement raises [`WAVE_RACED`], which aborts the
/// transaction: the caller judges the group again with the rule-by-rule functions above, which
/// tell those cases apart.
pub fn write_wave_sql(
    closes: &[Close],
    opens: &[Open],
    charges: &[JourneyCharge],
    releases: &[CodeUse],
    taps: &[TapRecord],
) -> Result<Vec<String>, sqlx::Error> {
    let mut statements = Vec::with_capacity(5);
    if !closes.is_empty() {
        statements.push(execute("tap_close", closes, true)?);
    }
    if !opens.is_empty() {
        statements.push(execute("tap_open", opens, true)?);
    }
    if !charges.is_empty() {
        statements.push(execute("tap_charge", charges, true)?);
    }
    if !releases.is_empty() {
        statements.push(execute("tap_release", releases, false)?);
    }
    if !taps.is_empty() {
        statements.push(execute("tap_record", taps, true)?);
    }
    Ok(statements)
}

/// The writes a wave judged on what its writer knows (no reads, see `gateway/src/known.rs`)
/// needs before [`write_wave_sql`]'s: its code uses claimed and its riders' day totals moved
/// from the values it assumed. Each raises [`WAVE_RACED`] if the database disagrees (a code
/// already used, a day total another writer changed or started), and the group is judged again
/// with its reads; a tap already stored is caught by `write_wave_sql`'s record.
pub fn assumed_writes_sql(
    claims: &[CodeUse],
    days: &[DayFare],
) -> Result<Vec<String>, sqlx::Error> {
    let mut statements = Vec::with_capacity(2);
    if !claims.is_empty() {
        statements.push(execute("tap_claim", claims, true)?);
    }
    if !days.is_empty() {
        statements.push(execute("tap_days", days, true)?);
    }
    Ok(statements)
}

/// A group's passenger-flow upsert (`store::flow`) as PostgreSQL text for the pipelined
/// transaction: an `EXECUTE` of its prepared statement, sent with the `COMMIT`.
pub fn flow_sql(counts: &[crate::flow::FlowCount], shard: i64) -> Result<String, sqlx::Error> {
    Ok(format!(
        "EXECUTE tap_flow({}, {shard})",
        literal(&json(counts)?)
    ))
}

/// The SQLSTATE `tap_wave_written` raises when a wave's write missed a row (migration 0003).
pub const WAVE_RACED: &str = "TP001";

/// A wave's reads as PostgreSQL text (see `wave_tx.rs`): the stored taps under `keys`, the code
/// uses consumed (skipping taps already stored, which are repeats), the riders' open journeys,
/// each an `EXECUTE` of a prepared statement ([`PG_PREPARED`]). Empty inputs are left out; the
/// second value says which statements are there, in order.
pub fn reads_sql(
    keys: &[TapKey],
    uses: &[CodeUse],
    riders: &[RiderMode],
) -> Result<(String, [bool; 3]), sqlx::Error> {
    let present = [!keys.is_empty(), !uses.is_empty(), !riders.is_empty()];
    let mut statements = Vec::with_capacity(3);
    if present[0] {
        statements.push(execute("tap_existing", keys, false)?);
    }
    if present[1] {
        statements.push(execute("tap_consume", uses, false)?);
    }
    if present[2] {
        statements.push(execute("tap_open_journeys", riders, false)?);
    }
    Ok((statements.join(";\n"), present))
}

/// `EXECUTE name('<rows as JSON>')` of a statement in [`PG_PREPARED`]; a `checked` write also
/// gets the number of rows it must write.
fn execute<T: Serialize>(name: &str, rows: &[T], checked: bool) -> Result<String, sqlx::Error> {
    let rows_json = literal(&json(rows)?);
    Ok(if checked {
        format!("EXECUTE {name}({rows_json}, {})", rows.len())
    } else {
        format!("EXECUTE {name}({rows_json})")
    })
}

/// The pipelined transaction's statements, prepared once per tap writer's session
/// (`Store::tap_session`, when it connects, after migrations) and run by name, so each is parsed
/// once per session and, under `plan_cache_mode = force_generic_plan` (set for those sessions
/// only, `wave_tx::TAP_SESSION`), planned once (PostgreSQL's CPU per tap fell by 35–45 % at
/// 191 taps/s; docs/bench-history.md). Their JSON parameter is opaque to the planner, so the generic plan
/// is the one a custom plan would be. Each checked write takes its row count as `$2` and raises
/// [`WAVE_RACED`] when it wrote fewer rows.
pub static PG_PREPARED: LazyLock<String> = LazyLock::new(|| {
    let check = |cte: &str| format!("tap_wave_written((SELECT count(*) FROM {cte}) = $2)");
    [
        format!("PREPARE tap_existing(json) AS {}", existing_sql("$1")),
        format!("PREPARE tap_consume(json) AS {}", consume_sql("$1", true)),
        format!(
            "PREPARE tap_open_journeys(json) AS {}",
            open_journeys_sql("$1")
        ),
        format!(
            "PREPARE tap_close(json, bigint) AS WITH {} SELECT {}",
            close_ctes("$1"),
            check("closed")
        ),
        format!(
            "PREPARE tap_open(json, bigint) AS WITH {} SELECT {}",
            open_cte("$1"),
            check("opened")
        ),
        format!(
            "PREPARE tap_charge(json, bigint) AS WITH {} SELECT {} AND {}",
            charge_ctes("$1"),
            check("charged"),
            check("attempts")
        ),
        format!(
            "PREPARE tap_release(json) AS WITH {} SELECT count(*) FROM released",
            release_cte("$1")
        ),
        format!(
            "PREPARE tap_record(json, bigint) AS WITH {} SELECT {}",
            tap_cte("$1"),
            check("recorded")
        ),
        format!(
            "PREPARE tap_claim(json, bigint) AS WITH claimed AS ({}) SELECT {}",
            consume_sql("$1", false),
            check("claimed")
        ),
        format!(
            "PREPARE tap_days(json, bigint) AS WITH {} SELECT tap_wave_written(
                 (SELECT count(*) FROM added) + (SELECT count(*) FROM started) = $2)",
            day_ctes("$1")
        ),
        format!(
            "PREPARE tap_flow(json, bigint) AS {}",
            super::flow::upsert_sql("$1", "$2")
        ),
    ]
    .join(";\n")
});

/// Reads the rows of `existing_sql`.
pub fn stored_taps(rows: &[AnyRow]) -> Result<HashMap<TapKey, StoredTap>, sqlx::Error> {
    rows.iter()
        .map(|row| {
            Ok((
                TapKey {
                    terminal_id: row.try_get(0)?,
                    sequence: row.try_get(1)?,
                },
                StoredTap {
                    request_sha256: row.try_get(2)?,
                    response: row.try_get(3)?,
                },
            ))
        })
        .collect()
}

/// Per code use, whether `consume_sql` returned it (it was the first).
pub fn first_uses(uses: &[CodeUse], rows: &[AnyRow]) -> Result<Vec<bool>, sqlx::Error> {
    let won = rows
        .iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect::<Result<HashSet<_>, sqlx::Error>>()?;
    Ok(uses
        .iter()
        .map(|u| won.contains(&(u.terminal_id.clone(), u.sequence)))
        .collect())
}

/// A PostgreSQL string literal (`standard_conforming_strings` is on for the gateway's sessions:
/// only the quote needs doubling). Serialized JSON holds no raw control characters.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

// The PostgreSQL statements, `src` being the JSON rows' parameter. Each rule's statement below
// (one round trip each) and its prepared twin in `PG_PREPARED` are built from the same text.

fn existing_sql(src: &str) -> String {
    format!(
        "SELECT t.terminal_id, t.sequence, t.request_sha256, t.response
         FROM json_to_recordset({src}::json) AS k(t text, s bigint),
         LATERAL (SELECT terminal_id, sequence, request_sha256, response FROM taps
                  WHERE terminal_id = k.t AND sequence = k.s LIMIT 1) t"
    )
}

/// `skip_repeats`: a use whose tap is already stored is a repeat, and is not consumed again
/// (the pipelined reads learn which taps are repeats in the same round trip). Written as a
/// LATERAL probe: as `NOT EXISTS` the planner made it a hash anti-join over all of `taps`.
fn consume_sql(src: &str, skip_repeats: bool) -> String {
    let repeats = if skip_repeats {
        "LEFT JOIN LATERAL (SELECT true AS stored FROM taps
                            WHERE terminal_id = x.t AND sequence = x.s LIMIT 1) e ON true
         WHERE e.stored IS NULL"
    } else {
        ""
    };
    format!(
        "INSERT INTO code_uses (code_fingerprint, direction, terminal_id, sequence)
         SELECT decode(x.f, 'hex'), x.d, x.t, x.s
         FROM json_to_recordset({src}::json) AS x(f text, d text, t text, s bigint)
         {repeats}
         ORDER BY x.f, x.d
         ON CONFLICT DO NOTHING
         RETURNING terminal_id, sequence"
    )
}

fn open_journeys_sql(src: &str) -> String {
    format!(
        "SELECT j.* FROM json_to_recordset({src}::json) AS x(r bigint, m text),
         LATERAL (SELECT {JOURNEY_COLUMNS} FROM journeys
                  WHERE rider_id = x.r AND mode = x.m AND status = 'open' LIMIT 1) j"
    )
}

/// The open journeys are found by primary key, their status checked outside the probe: with
/// `status = 'open'` inside, `journeys_one_open` applied as well, and a generic plan made on an
/// empty table scanned all of it for every close.
fn close_ctes(src: &str) -> String {
    format!(
        "xc AS (SELECT * FROM json_to_recordset({src}::json) AS x(j bigint, ot text, os bigint,
                     et text, es bigint, el text, ea bigint, vc text, cr text, f bigint, c bigint,
                     cu text, d text, ca bigint)),
         oc AS (SELECT xc.* FROM xc, LATERAL (SELECT status, entry_terminal_id, entry_sequence
                     FROM journeys WHERE journey_id = xc.j LIMIT 1 FOR UPDATE) cur
                WHERE cur.status = 'open' AND cur.entry_terminal_id IS NOT DISTINCT FROM xc.ot
                  AND cur.entry_sequence IS NOT DISTINCT FROM xc.os),
         closed AS (
             UPDATE journeys j SET status = 'closed', exit_terminal_id = oc.et, exit_sequence = oc.es,
                    exit_location_id = oc.el, exit_at_ms = oc.ea, vehicle_class = oc.vc,
                    close_reason = oc.cr, fare_minor = oc.f, charge_minor = oc.c, currency = oc.cu,
                    business_day = oc.d, closed_at_ms = oc.ca
             FROM oc WHERE j.journey_id = oc.j AND j.journey_id = ANY (ARRAY(SELECT oc.j FROM oc))
             RETURNING 1)"
    )
}

fn open_cte(src: &str) -> String {
    format!(
        "opened AS (
             INSERT INTO journeys (journey_id, rider_id, credential_id, operator_id, mode, status,
                                   entry_terminal_id, entry_sequence, entry_location_id, entry_at_ms)
             SELECT x.j, x.r, x.c, x.o, x.m, 'open', x.t, x.s, x.l, x.a
             FROM json_to_recordset({src}::json) AS x(j bigint, r bigint, c bigint, o text, m text,
                  t text, s bigint, l text, a bigint)
             ORDER BY x.r
             ON CONFLICT DO NOTHING
             RETURNING 1)"
    )
}

fn charge_ctes(src: &str) -> String {
    format!(
        "charged AS (
             INSERT INTO charges (charge_id, kind, operator_id, rider_id, journey_id, amount_minor, currency,
                                  business_day, status, attempt, out_trade_no, next_attempt_at_ms,
                                  lease_until_ms, terminal_id, terminal_sequence, created_at_ms, updated_at_ms)
             SELECT x.i, x.k, x.o, x.r, x.j, x.a, x.c, x.d, x.st, 1, x.x, x.n, x.l, x.t, x.s, x.now, x.now
             FROM json_to_recordset({src}::json) AS x(i bigint, k text, o text, r bigint, j bigint, a bigint,
                  c text, d text, st text, x text, n bigint, l bigint, t text, s bigint, now bigint)
             ORDER BY x.j
             ON CONFLICT DO NOTHING
             RETURNING charge_id, out_trade_no, created_at_ms),
         attempts AS (
             INSERT INTO charge_attempts (out_trade_no, charge_id, attempt, outcome, created_at_ms, updated_at_ms)
             SELECT out_trade_no, charge_id, 1, 'sent', created_at_ms, created_at_ms FROM charged
             RETURNING charge_id)"
    )
}

/// A day total moves from the value the writer assumed (`b`), or starts if it assumed none; a
/// row that differs is left alone, and the count tells.
fn day_ctes(src: &str) -> String {
    format!(
        "xd AS (SELECT * FROM json_to_recordset({src}::json) AS x(r bigint, o text, d text, f bigint,
                     b bigint)),
         added AS (
             UPDATE rider_days rd SET fares_total_minor = rd.fares_total_minor + xd.f
             FROM xd WHERE xd.b IS NOT NULL AND rd.rider_id = xd.r AND rd.operator_id = xd.o
               AND rd.business_day = xd.d AND rd.fares_total_minor = xd.b
             RETURNING 1),
         started AS (
             INSERT INTO rider_days (rider_id, operator_id, business_day, fares_total_minor)
             SELECT xd.r, xd.o, xd.d, xd.f FROM xd WHERE xd.b IS NULL
             ORDER BY xd.r, xd.o, xd.d
             ON CONFLICT DO NOTHING
             RETURNING 1)"
    )
}

fn release_cte(src: &str) -> String {
    format!(
        "released AS (
             DELETE FROM code_uses WHERE ctid = ANY (ARRAY(
                 SELECT u.ctid FROM json_to_recordset({src}::json) AS x(f text, d text),
                 LATERAL (SELECT ctid FROM code_uses
                          WHERE code_fingerprint = decode(x.f, 'hex') AND direction = x.d LIMIT 1) u))
             RETURNING 1)"
    )
}

fn tap_cte(src: &str) -> String {
    format!(
        "recorded AS (
             INSERT INTO taps (terminal_id, sequence, request_sha256, direction, scanned_at_ms, received_at_ms,
                               code_fingerprint, rider_id, credential_id, decision, reason, journey_id, response)
             SELECT x.t, x.s, decode(x.h, 'hex'), x.d, x.sa, x.ra, decode(x.f, 'hex'), x.r, x.c, x.de,
                    x.re, x.j, convert_to(x.b, 'UTF8')
             FROM json_to_recordset({src}::json) AS x(t text, s bigint, h text, d text, sa bigint,
                  ra bigint, f text, r bigint, c bigint, de text, re text, j bigint, b text)
             ORDER BY x.t, x.s
             ON CONFLICT DO NOTHING
             RETURNING 1)"
    )
}

static PG_EXISTING: LazyLock<String> = LazyLock::new(|| existing_sql("$1"));
static PG_CONSUME: LazyLock<String> = LazyLock::new(|| consume_sql("$1", false));
static PG_OPEN_JOURNEYS: LazyLock<String> = LazyLock::new(|| open_journeys_sql("$1"));
static PG_CLOSE: LazyLock<String> =
    LazyLock::new(|| format!("WITH {} SELECT count(*) FROM closed", close_ctes("$1")));
static PG_OPEN: LazyLock<String> =
    LazyLock::new(|| format!("WITH {} SELECT count(*) FROM opened", open_cte("$1")));
static PG_CHARGES: LazyLock<String> =
    LazyLock::new(|| format!("WITH {} SELECT charge_id FROM attempts", charge_ctes("$1")));
static PG_RELEASE: LazyLock<String> =
    LazyLock::new(|| format!("WITH {} SELECT count(*) FROM released", release_cte("$1")));
static PG_TAPS: LazyLock<String> =
    LazyLock::new(|| format!("WITH {} SELECT count(*) FROM recorded", tap_cte("$1")));
