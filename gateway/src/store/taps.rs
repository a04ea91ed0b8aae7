//! Per-row SQL of journeys, used by the sweeper's close of an incomplete journey (and, on
//! SQLite, by the set-based functions of `waves.rs`, which loop over rows there). Each function
//! runs inside the caller's transaction; conflicts are values, never aborted transactions.

use sqlx::Row;

use super::Conn;

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
pub async fn close_journey(conn: &mut Conn, c: &JourneyClose<'_>) -> Result<bool, sqlx::Error> {
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
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Adds a fare to the rider's day and returns the day's total of fares before this one.
/// The upsert is atomic per row, so concurrent closes on several nodes add up exactly.
pub async fn add_to_rider_day(
    conn: &mut Conn,
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
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    Ok(total_after - fare_minor)
}
