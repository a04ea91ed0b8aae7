//! SQL of re-pairing (see `crate::repair`): the offline facts no journey holds yet, the queue of
//! riders to re-pair, and the journey and charge rows a re-pairing rewrites. Portable SQL, run in
//! the caller's transaction on either backend.

use sqlx::Row;
use turnpike_wire::api::{Direction, VehicleClass};

use super::charging::{ChargeRow, CHARGE_COLUMNS};
use super::{Conn, JourneyRow, JOURNEY_COLUMNS};
use crate::network::Mode;

/// An offline tap its gate admitted that no journey holds yet.
#[derive(Debug, Clone)]
pub struct LooseFact {
    pub terminal_id: String,
    pub sequence: i64,
    pub rider_id: i64,
    pub credential_id: i64,
    pub mode: Mode,
    pub operator_id: String,
    pub location_id: String,
    pub direction: Direction,
    pub scanned_at_ms: i64,
    pub vehicle_class: Option<VehicleClass>,
}

pub async fn insert_fact(conn: &mut Conn, f: &LooseFact) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tap_facts (terminal_id, sequence, rider_id, credential_id, mode, operator_id, location_id,
                                direction, scanned_at_ms, vehicle_class)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
    )
    .bind(&f.terminal_id)
    .bind(f.sequence)
    .bind(f.rider_id)
    .bind(f.credential_id)
    .bind(f.mode.as_str())
    .bind(&f.operator_id)
    .bind(&f.location_id)
    .bind(f.direction.as_str())
    .bind(f.scanned_at_ms)
    .bind(f.vehicle_class.map(VehicleClass::as_str))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn loose_facts(
    conn: &mut Conn,
    rider_id: i64,
    mode: Mode,
) -> Result<Vec<LooseFact>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT terminal_id, sequence, rider_id, credential_id, operator_id, location_id, direction, scanned_at_ms,
                vehicle_class
         FROM tap_facts WHERE rider_id = $1 AND mode = $2",
    )
    .bind(rider_id)
    .bind(mode.as_str())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            let direction: String = r.try_get(6)?;
            let class: Option<String> = r.try_get(8)?;
            Ok(LooseFact {
                terminal_id: r.try_get(0)?,
                sequence: r.try_get(1)?,
                rider_id: r.try_get(2)?,
                credential_id: r.try_get(3)?,
                mode,
                operator_id: r.try_get(4)?,
                location_id: r.try_get(5)?,
                direction: if direction == "exit" {
                    Direction::Exit
                } else {
                    Direction::Entry
                },
                scanned_at_ms: r.try_get(7)?,
                vehicle_class: class.as_deref().and_then(VehicleClass::parse),
            })
        })
        .collect()
}

/// Takes a loose fact out of `tap_facts`; false if another re-pairing took it first.
pub async fn delete_fact(
    conn: &mut Conn,
    terminal_id: &str,
    sequence: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query("DELETE FROM tap_facts WHERE terminal_id = $1 AND sequence = $2")
        .bind(terminal_id)
        .bind(sequence)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Queues a rider's journeys in `mode` for re-pairing from `from_ms` on (the earliest queued
/// scan time wins).
pub async fn queue(
    conn: &mut Conn,
    rider_id: i64,
    mode: Mode,
    from_ms: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO rider_repairs (rider_id, mode, from_ms, queued_at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (rider_id, mode) DO UPDATE SET
             from_ms = CASE WHEN excluded.from_ms < rider_repairs.from_ms THEN excluded.from_ms ELSE rider_repairs.from_ms END",
    )
    .bind(rider_id)
    .bind(mode.as_str())
    .bind(from_ms)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The queued re-pairing of a rider, locked for this transaction on PostgreSQL so that two
/// re-pairings of one rider (a writer's and the repairer's, or two nodes') run one after the
/// other, the second seeing what the first wrote. (SQLite runs one writer at a time.)
pub async fn queued_from(
    conn: &mut Conn,
    rider_id: i64,
    mode: Mode,
) -> Result<Option<i64>, sqlx::Error> {
    let lock = if super::waves::is_postgres(conn) {
        " FOR UPDATE"
    } else {
        ""
    };
    sqlx::query(&format!(
        "SELECT from_ms FROM rider_repairs WHERE rider_id = $1 AND mode = $2{lock}"
    ))
    .bind(rider_id)
    .bind(mode.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| r.try_get(0))
    .transpose()
}

/// Leaves a queued re-pairing for the repairer to retry after `until_ms`.
pub async fn postpone(
    conn: &mut Conn,
    rider_id: i64,
    mode: Mode,
    until_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE rider_repairs SET queued_at_ms = $3 WHERE rider_id = $1 AND mode = $2")
        .bind(rider_id)
        .bind(mode.as_str())
        .bind(until_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Ends a queued re-pairing — unless a later upload queued an earlier `from_ms` meanwhile.
pub async fn dequeue(
    conn: &mut Conn,
    rider_id: i64,
    mode: Mode,
    from_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM rider_repairs WHERE rider_id = $1 AND mode = $2 AND from_ms = $3")
        .bind(rider_id)
        .bind(mode.as_str())
        .bind(from_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl super::Store {
    /// Riders queued before `queued_before_ms` (left by a crash or a charge that was in flight).
    pub async fn queued_repairs(
        &self,
        queued_before_ms: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Mode)>, sqlx::Error> {
        queued(&self.pool, queued_before_ms, limit).await
    }

    /// How many riders wait to be re-paired.
    pub async fn repairs_queued_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) FROM rider_repairs")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)
    }

    /// How many refunds wait for their outcome.
    pub async fn refunds_pending_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) FROM refunds WHERE status = 'pending'")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)
    }
}

async fn queued(
    pool: &sqlx::AnyPool,
    queued_before_ms: i64,
    limit: i64,
) -> Result<Vec<(i64, Mode)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT rider_id, mode FROM rider_repairs WHERE queued_at_ms < $1 ORDER BY queued_at_ms LIMIT $2",
    )
    .bind(queued_before_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let mode: String = r.try_get(1)?;
            Ok((r.try_get(0)?, Mode::parse(&mode).unwrap_or(Mode::Metro)))
        })
        .collect()
}

/// The rider's journeys in `mode` a re-pairing from `cut_ms` on rewrites: every one open, and
/// every one with a tap at or after the cut.
pub async fn journeys_from(
    conn: &mut Conn,
    rider_id: i64,
    mode: Mode,
    cut_ms: i64,
) -> Result<Vec<(JourneyRow, Option<i64>)>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {JOURNEY_COLUMNS}, closed_at_ms FROM journeys
         WHERE rider_id = $1 AND mode = $2 AND status IN ('open', 'closed')
           AND (status = 'open' OR entry_at_ms >= $3 OR exit_at_ms >= $3)
         ORDER BY entry_at_ms, journey_id"
    ))
    .bind(rider_id)
    .bind(mode.as_str())
    .bind(cut_ms)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((JourneyRow::from_row(r)?, r.try_get(20)?)))
        .collect()
}

/// The fares of the rider's closed journeys per (operator, business day).
pub async fn day_fares(
    conn: &mut Conn,
    rider_id: i64,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT operator_id, business_day, CAST(SUM(fare_minor) AS BIGINT) FROM journeys
         WHERE rider_id = $1 AND status = 'closed' GROUP BY operator_id, business_day",
    )
    .bind(rider_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Sets the rider's day total of fares to what their closed journeys add up to.
pub async fn recount_day(
    conn: &mut Conn,
    rider_id: i64,
    operator_id: &str,
    business_day: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO rider_days (rider_id, operator_id, business_day, fares_total_minor)
         SELECT $1, $2, $3, COALESCE(CAST(SUM(fare_minor) AS BIGINT), 0) FROM journeys
         WHERE rider_id = $1 AND operator_id = $2 AND business_day = $3 AND status = 'closed'
         ON CONFLICT (rider_id, operator_id, business_day) DO UPDATE SET fares_total_minor = excluded.fares_total_minor",
    )
    .bind(rider_id)
    .bind(operator_id)
    .bind(business_day)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A journey as a re-pairing writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JourneyWrite {
    pub journey_id: i64,
    pub rider_id: i64,
    pub credential_id: i64,
    pub operator_id: String,
    pub mode: Mode,
    pub status: &'static str,
    pub entry: Option<(String, i64, String)>,
    pub entry_at_ms: i64,
    pub exit: Option<(String, i64, String, i64)>,
    pub vehicle_class: Option<&'static str>,
    pub close_reason: Option<&'static str>,
    pub fare_minor: Option<i64>,
    pub charge_minor: Option<i64>,
    pub currency: Option<String>,
    pub business_day: Option<String>,
    pub closed_at_ms: Option<i64>,
}

/// Binds a journey's columns as `$1`…`$21`, in `journeys` column order.
fn bind_journey<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    j: &'q JourneyWrite,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let entry = j.entry.as_ref();
    let exit = j.exit.as_ref();
    query
        .bind(j.journey_id)
        .bind(j.rider_id)
        .bind(j.credential_id)
        .bind(&j.operator_id)
        .bind(j.mode.as_str())
        .bind(j.status)
        .bind(entry.map(|e| e.0.as_str()))
        .bind(entry.map(|e| e.1))
        .bind(entry.map(|e| e.2.as_str()))
        .bind(j.entry_at_ms)
        .bind(exit.map(|x| x.0.as_str()))
        .bind(exit.map(|x| x.1))
        .bind(exit.map(|x| x.2.as_str()))
        .bind(exit.map(|x| x.3))
        .bind(j.vehicle_class)
        .bind(j.close_reason)
        .bind(j.fare_minor)
        .bind(j.charge_minor)
        .bind(j.currency.as_deref())
        .bind(j.business_day.as_deref())
        .bind(j.closed_at_ms)
}

pub async fn insert_journey(conn: &mut Conn, j: &JourneyWrite) -> Result<(), sqlx::Error> {
    bind_journey(
        sqlx::query(
            "INSERT INTO journeys (journey_id, rider_id, credential_id, operator_id, mode, status,
                                   entry_terminal_id, entry_sequence, entry_location_id, entry_at_ms,
                                   exit_terminal_id, exit_sequence, exit_location_id, exit_at_ms, vehicle_class,
                                   close_reason, fare_minor, charge_minor, currency, business_day, closed_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
        ),
        j,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rewrites a journey the re-pairing read as `old_status` with `old_exit` (its rider, operator and
/// mode stay; its credential is the one that made its first tap); false if it changed meanwhile (a live tap on another writer or node
/// closed it, or another re-pairing).
pub async fn update_journey(
    conn: &mut Conn,
    j: &JourneyWrite,
    old_status: &str,
    old_exit: Option<(&str, i64)>,
) -> Result<bool, sqlx::Error> {
    let (old_exit_terminal, old_exit_sequence) = old_exit.map_or(("", -1), |(t, s)| (t, s));
    let n = bind_journey(
        sqlx::query(
            "UPDATE journeys SET credential_id = $3, status = $6, entry_terminal_id = $7, entry_sequence = $8, entry_location_id = $9,
                    entry_at_ms = $10, exit_terminal_id = $11, exit_sequence = $12, exit_location_id = $13,
                    exit_at_ms = $14, vehicle_class = $15, close_reason = $16, fare_minor = $17, charge_minor = $18,
                    currency = $19, business_day = $20, closed_at_ms = $21
             WHERE journey_id = $1 AND rider_id = $2 AND operator_id = $4 AND mode = $5
               AND status = $22 AND COALESCE(exit_terminal_id, '') = $23 AND COALESCE(exit_sequence, -1) = $24",
        ),
        j,
    )
    .bind(old_status)
    .bind(old_exit_terminal)
    .bind(old_exit_sequence)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Voids a journey the facts no longer make (or one about to be rewritten); false if it changed
/// since it was read as `old_status` with `old_exit`.
pub async fn void_journey(
    conn: &mut Conn,
    journey_id: i64,
    old_status: &str,
    old_exit: Option<(&str, i64)>,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let (old_exit_terminal, old_exit_sequence) = old_exit.map_or(("", -1), |(t, s)| (t, s));
    let n = sqlx::query(
        "UPDATE journeys SET status = 'void', charge_minor = 0, closed_at_ms = COALESCE(closed_at_ms, $3)
         WHERE journey_id = $1 AND status = $2 AND COALESCE(exit_terminal_id, '') = $4
           AND COALESCE(exit_sequence, -1) = $5",
    )
    .bind(journey_id)
    .bind(old_status)
    .bind(now_ms)
    .bind(old_exit_terminal)
    .bind(old_exit_sequence)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn set_tap_journey(
    conn: &mut Conn,
    terminal_id: &str,
    sequence: i64,
    journey_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE taps SET journey_id = $3 WHERE terminal_id = $1 AND sequence = $2")
        .bind(terminal_id)
        .bind(sequence)
        .bind(journey_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A journey's charge (`journey_id`) and its corrections (`corrects_journey_id`).
pub async fn journey_charges(
    conn: &mut Conn,
    journey_id: i64,
) -> Result<(Option<ChargeRow>, Vec<ChargeRow>), sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {CHARGE_COLUMNS}, corrects_journey_id FROM charges
         WHERE journey_id = $1 OR corrects_journey_id = $1 ORDER BY created_at_ms, charge_id"
    ))
    .bind(journey_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut main = None;
    let mut corrections = Vec::new();
    for r in &rows {
        let charge = ChargeRow::from_row(r)?;
        let corrects: Option<i64> = r.try_get(21)?;
        if corrects.is_some() {
            corrections.push(charge);
        } else {
            main = Some(charge);
        }
    }
    Ok((main, corrections))
}

/// Sets the amount of a charge never handed to the provider; false if it was meanwhile.
pub async fn reprice_untouched(
    conn: &mut Conn,
    charge_id: i64,
    amount_minor: i64,
    business_day: &str,
    due_ms: i64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(&format!(
        "UPDATE charges SET amount_minor = $2, business_day = $3, next_attempt_at_ms = $4, updated_at_ms = $5
         WHERE charge_id = $1 AND {UNTOUCHED}"
    ))
    .bind(charge_id)
    .bind(amount_minor)
    .bind(business_day)
    .bind(due_ms)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Cancels a charge never handed to the provider; false if it was meanwhile.
pub async fn cancel_untouched(
    conn: &mut Conn,
    charge_id: i64,
    why: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(&format!(
        "UPDATE charges SET status = 'cancelled', last_error = $2, updated_at_ms = $3
         WHERE charge_id = $1 AND {UNTOUCHED}"
    ))
    .bind(charge_id)
    .bind(why)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// A charge no worker has leased, that no attempt failed or went unanswered for: its trade
/// number never reached the provider, so its amount may still change.
const UNTOUCHED: &str =
    "status = 'pending' AND attempt = 1 AND lease_until_ms IS NULL AND last_error IS NULL";

/// Whether a charge row is [`UNTOUCHED`].
pub fn untouched(c: &ChargeRow) -> bool {
    c.status == super::charging::ChargeStatus::Pending
        && c.attempt == 1
        && c.lease_until_ms.is_none()
        && c.last_error.is_none()
}

pub async fn mark_correction(
    conn: &mut Conn,
    charge_id: i64,
    journey_id: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE charges SET corrects_journey_id = $2 WHERE charge_id = $1")
        .bind(charge_id)
        .bind(journey_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What of a charge is pending refund.
pub async fn refunds_pending(conn: &mut Conn, charge_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds WHERE charge_id = $1 AND status = 'pending'",
    )
    .bind(charge_id)
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)
}
