//! SQL of the tap pipeline. Each function runs inside the caller's transaction, so a group of taps
//! commits (or fails) together; conflicts are reported as values, never as aborted transactions.

use sqlx::Row;

use super::{JourneyRow, Tx, JOURNEY_COLUMNS};

/// What claiming a (terminal, sequence) key found.
pub enum Claim {
    /// The key is ours; the tap row exists with a placeholder answer to fill in.
    New,
    /// The key was used before: its request hash and stored answer.
    Existing {
        request_sha256: Vec<u8>,
        response: Vec<u8>,
    },
}

pub struct NewTap<'a> {
    pub terminal_id: &'a str,
    pub sequence: i64,
    pub request_sha256: &'a [u8],
    pub direction: &'a str,
    pub scanned_at_ms: i64,
    pub received_at_ms: i64,
}

/// Claims the idempotency key. On PostgreSQL a concurrent claim of the same key by another node
/// waits for that transaction and then sees its row.
pub async fn claim(tx: &mut Tx<'_>, tap: &NewTap<'_>) -> Result<Claim, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO taps (terminal_id, sequence, request_sha256, direction, scanned_at_ms, received_at_ms,
                           decision, response)
         VALUES ($1, $2, $3, $4, $5, $6, 'decline', $7) ON CONFLICT DO NOTHING",
    )
    .bind(tap.terminal_id)
    .bind(tap.sequence)
    .bind(tap.request_sha256.to_vec())
    .bind(tap.direction)
    .bind(tap.scanned_at_ms)
    .bind(tap.received_at_ms)
    .bind(Vec::<u8>::new())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let row = sqlx::query(
        "SELECT request_sha256, response FROM taps WHERE terminal_id = $1 AND sequence = $2",
    )
    .bind(tap.terminal_id)
    .bind(tap.sequence)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Claim::Existing {
        request_sha256: row.try_get(0)?,
        response: row.try_get(1)?,
    })
}

pub struct TapOutcomeRow<'a> {
    pub terminal_id: &'a str,
    pub sequence: i64,
    pub code_fingerprint: Option<&'a [u8]>,
    pub rider_id: Option<i64>,
    pub credential_id: Option<i64>,
    pub decision: &'a str,
    pub reason: Option<&'a str>,
    pub journey_id: Option<i64>,
    pub response: &'a [u8],
}

/// Fills in the decision and the exact answer bytes of a claimed tap.
pub async fn record_outcome(tx: &mut Tx<'_>, o: &TapOutcomeRow<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE taps SET code_fingerprint = $3, rider_id = $4, credential_id = $5, decision = $6, reason = $7,
                         journey_id = $8, response = $9
         WHERE terminal_id = $1 AND sequence = $2",
    )
    .bind(o.terminal_id)
    .bind(o.sequence)
    .bind(o.code_fingerprint.map(<[u8]>::to_vec))
    .bind(o.rider_id)
    .bind(o.credential_id)
    .bind(o.decision)
    .bind(o.reason)
    .bind(o.journey_id)
    .bind(o.response.to_vec())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Consumes a ride code for one direction; false if it was already used in that direction.
pub async fn consume_code(
    tx: &mut Tx<'_>,
    fingerprint: &[u8],
    direction: &str,
    terminal_id: &str,
    sequence: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO code_uses (code_fingerprint, direction, terminal_id, sequence) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(fingerprint.to_vec())
    .bind(direction)
    .bind(terminal_id)
    .bind(sequence)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Gives a consumed code back (used when a later step of the same tap declines it).
pub async fn release_code(
    tx: &mut Tx<'_>,
    fingerprint: &[u8],
    direction: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM code_uses WHERE code_fingerprint = $1 AND direction = $2")
        .bind(fingerprint.to_vec())
        .bind(direction)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn open_journey(
    tx: &mut Tx<'_>,
    rider_id: i64,
    mode: &str,
) -> Result<Option<JourneyRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {JOURNEY_COLUMNS} FROM journeys WHERE rider_id = $1 AND mode = $2 AND status = 'open'"
    ))
    .bind(rider_id)
    .bind(mode)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(JourneyRow::from_row).transpose()
}

pub struct NewJourney<'a> {
    pub journey_id: i64,
    pub rider_id: i64,
    pub credential_id: i64,
    pub operator_id: &'a str,
    pub mode: &'a str,
    pub entry_terminal_id: &'a str,
    pub entry_sequence: i64,
    pub entry_location_id: &'a str,
    pub entry_at_ms: i64,
}

/// Opens a journey; false if the rider already has one open in this mode (pass-back).
pub async fn insert_open_journey(tx: &mut Tx<'_>, j: &NewJourney<'_>) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO journeys (journey_id, rider_id, credential_id, operator_id, mode, status,
                               entry_terminal_id, entry_sequence, entry_location_id, entry_at_ms)
         VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(j.journey_id)
    .bind(j.rider_id)
    .bind(j.credential_id)
    .bind(j.operator_id)
    .bind(j.mode)
    .bind(j.entry_terminal_id)
    .bind(j.entry_sequence)
    .bind(j.entry_location_id)
    .bind(j.entry_at_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub struct JourneyClose<'a> {
    pub journey_id: i64,
    pub exit_terminal_id: Option<&'a str>,
    pub exit_sequence: Option<i64>,
    pub exit_location_id: Option<&'a str>,
    pub exit_at_ms: Option<i64>,
    pub vehicle_class: Option<&'a str>,
    pub close_reason: &'a str,
    pub fare_minor: i64,
    pub charge_minor: i64,
    pub currency: &'a str,
    pub business_day: &'a str,
    pub closed_at_ms: i64,
}

/// Closes an open journey; false if it was no longer open (closed by another node meanwhile).
pub async fn close_journey(tx: &mut Tx<'_>, c: &JourneyClose<'_>) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE journeys SET status = 'closed', exit_terminal_id = $2, exit_sequence = $3, exit_location_id = $4,
                exit_at_ms = $5, vehicle_class = $6, close_reason = $7, fare_minor = $8, charge_minor = $9,
                currency = $10, business_day = $11, closed_at_ms = $12
         WHERE journey_id = $1 AND status = 'open'",
    )
    .bind(c.journey_id)
    .bind(c.exit_terminal_id)
    .bind(c.exit_sequence)
    .bind(c.exit_location_id)
    .bind(c.exit_at_ms)
    .bind(c.vehicle_class)
    .bind(c.close_reason)
    .bind(c.fare_minor)
    .bind(c.charge_minor)
    .bind(c.currency)
    .bind(c.business_day)
    .bind(c.closed_at_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Adds a fare to the rider's day and returns the day's total of fares before this one.
/// The upsert is atomic per row, so concurrent closes on several nodes add up exactly.
pub async fn add_to_rider_day(
    tx: &mut Tx<'_>,
    rider_id: i64,
    operator_id: &str,
    business_day: &str,
    fare_minor: i64,
) -> Result<i64, sqlx::Error> {
    let total_after: i64 = sqlx::query(
        "INSERT INTO rider_days (rider_id, operator_id, business_day, fares_total_minor) VALUES ($1, $2, $3, $4)
         ON CONFLICT (rider_id, operator_id, business_day)
         DO UPDATE SET fares_total_minor = rider_days.fares_total_minor + excluded.fares_total_minor
         RETURNING fares_total_minor",
    )
    .bind(rider_id)
    .bind(operator_id)
    .bind(business_day)
    .bind(fare_minor)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    Ok(total_after - fare_minor)
}
