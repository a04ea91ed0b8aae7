//! Live passenger flow's SQL (migration 0008, docs/flow.md): the per-group upsert the tap
//! writers run in a group's transaction, and the keyed range reads of the flow API. Every read
//! is bounded by a minute range of `station_flow`'s primary key or its `(operator_id, minute)`
//! index; none touches `taps`.

use sqlx::Row;

use super::waves::is_postgres;
use super::{Conn, Store};
use crate::flow::FlowCount;

/// Rows a station's minute is spread over: a group adds to one of them, picked at random, so
/// concurrent groups rarely wait for each other's commit on a busy station's row.
pub const SHARDS: i64 = 8;

/// A group's shard.
pub fn pick_shard() -> i64 {
    rand::random::<u32>() as i64 % SHARDS
}

/// The PostgreSQL upsert of a group's counts, `src` being its JSON rows (already summed per
/// key and in key order, `flow::tally`) and `shard` its shard: one statement, whatever the
/// number of stations.
pub(super) fn upsert_sql(src: &str, shard: &str) -> String {
    format!(
        "INSERT INTO station_flow (operator_id, location_id, minute, shard, entries, exits)
         SELECT x.o, x.l, x.m, {shard}, x.e, x.x
         FROM json_to_recordset({src}::json) AS x(o text, l text, m bigint, e bigint, x bigint)
         ORDER BY x.o, x.l, x.m
         ON CONFLICT (operator_id, location_id, minute, shard) DO UPDATE
         SET entries = station_flow.entries + excluded.entries,
             exits = station_flow.exits + excluded.exits"
    )
}

/// Adds a group's counts to `shard` ([`pick_shard`]), in the group's transaction: one
/// statement on PostgreSQL, one per row on SQLite (in process).
pub async fn add(conn: &mut Conn, counts: &[FlowCount], shard: i64) -> Result<(), sqlx::Error> {
    if counts.is_empty() {
        return Ok(());
    }
    if is_postgres(conn) {
        let rows = serde_json::to_string(counts)
            .map_err(|e| sqlx::Error::Protocol(format!("encoding flow rows: {e}")))?;
        sqlx::query(&upsert_sql("$1", "$2"))
            .bind(rows)
            .bind(shard)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    }
    for c in counts {
        sqlx::query(
            "INSERT INTO station_flow (operator_id, location_id, minute, shard, entries, exits)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (operator_id, location_id, minute, shard) DO UPDATE
             SET entries = station_flow.entries + excluded.entries,
                 exits = station_flow.exits + excluded.exits",
        )
        .bind(&c.operator_id)
        .bind(&c.location_id)
        .bind(c.minute)
        .bind(shard)
        .bind(c.entries)
        .bind(c.exits)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Entries and exits of one station (or of every station) over a minute range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub entries: i64,
    pub exits: i64,
}

impl Totals {
    pub fn passages(&self) -> i64 {
        self.entries + self.exits
    }
}

/// Rows of (key, entries, exits).
fn keyed_totals<K>(rows: &[sqlx::any::AnyRow]) -> Result<Vec<(K, Totals)>, sqlx::Error>
where
    K: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                Totals {
                    entries: r.try_get(1)?,
                    exits: r.try_get(2)?,
                },
            ))
        })
        .collect()
}

impl Store {
    /// Per station of the operator, the totals over `[from, to)` (Unix minutes); stations with
    /// no row in the range are absent.
    pub async fn flow_totals(
        &self,
        operator_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(String, Totals)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT location_id, CAST(SUM(entries) AS BIGINT), CAST(SUM(exits) AS BIGINT)
             FROM station_flow
             WHERE operator_id = $1 AND minute >= $2 AND minute < $3
             GROUP BY location_id ORDER BY location_id",
        )
        .bind(operator_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        keyed_totals(&rows)
    }

    /// One station's minutes with passages in `[from, to)`, in order: (minute, totals).
    pub async fn flow_minutes(
        &self,
        operator_id: &str,
        location_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Totals)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT minute, CAST(SUM(entries) AS BIGINT), CAST(SUM(exits) AS BIGINT)
             FROM station_flow
             WHERE operator_id = $1 AND location_id = $2 AND minute >= $3 AND minute < $4
             GROUP BY minute ORDER BY minute",
        )
        .bind(operator_id)
        .bind(location_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        keyed_totals(&rows)
    }

    /// The first minute the operator has a count for: where its history begins (an earlier
    /// week is no history, not a quiet one). One probe of the `(operator_id, minute)` index.
    pub async fn flow_first_minute(&self, operator_id: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query("SELECT MIN(minute) FROM station_flow WHERE operator_id = $1")
            .bind(operator_id)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)
    }
}

/// The latest delay a TripUpdates feed gave for a stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopDelay {
    pub stop_id: String,
    pub delay_s: i64,
    pub trip_id: Option<String>,
}

impl Store {
    /// The operator's stops' latest delays: (stop, delay in seconds, the feed's time).
    pub async fn stop_delays(
        &self,
        operator_id: &str,
    ) -> Result<Vec<(String, i64, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT stop_id, delay_s, feed_at_ms FROM stop_delays WHERE operator_id = $1",
        )
        .bind(operator_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    /// Records a feed's delays in one transaction: each stop's row is replaced unless a newer
    /// feed already set it (uploads may arrive out of order).
    pub async fn put_stop_delays(
        &self,
        operator_id: &str,
        delays: &[StopDelay],
        feed_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        for d in delays {
            sqlx::query(
                "INSERT INTO stop_delays (operator_id, stop_id, delay_s, trip_id, feed_at_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (operator_id, stop_id) DO UPDATE
                 SET delay_s = excluded.delay_s, trip_id = excluded.trip_id,
                     feed_at_ms = excluded.feed_at_ms
                 WHERE stop_delays.feed_at_ms <= excluded.feed_at_ms",
            )
            .bind(operator_id)
            .bind(&d.stop_id)
            .bind(d.delay_s)
            .bind(d.trip_id.as_deref())
            .bind(feed_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}
