//! The open-data export's reads: one business day of an operator's closed metro journeys,
//! counted in the database (GROUP BY) and streamed, so a 10 M-journey day costs the export
//! memory in proportion to its stations, never to its journeys.
//!
//! The day is selected by its entry-time range (`journeys_by_status_entry` serves it) and by
//! `business_day`, which the gateway writes as the local date of the entry: the two agree, and
//! the range keeps a many-day table from being scanned.

use futures_util::TryStreamExt;
use sqlx::Row;

use super::Store;
use crate::opendata::rules::FareClass;

const HOUR_MS: i64 = 3_600_000;

/// The day an export reads: `[start_ms, end_ms)` are its local midnights as UTC instants.
#[derive(Debug, Clone, Copy)]
pub struct DayQuery<'a> {
    pub operator_id: &'a str,
    pub business_day: &'a str,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Count at most this many journeys per rider, the first by entry time (the differential
    /// privacy's contribution bound, docs/open-data.md); `None` counts every journey.
    pub journeys_per_rider_max: Option<i64>,
}

/// Riders who entered a station in an hour (counted since local midnight) in a fare class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCount {
    pub station_id: String,
    pub hour_index: i64,
    pub fare_class: FareClass,
    pub journeys: i64,
}

/// Journeys from an origin to a destination that entered in a band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdCount {
    pub origin_id: String,
    pub band: i64,
    pub destination_id: String,
    pub journeys: i64,
}

/// What every read counts: the day's closed (not open, not void) metro journeys with a known
/// entry station.
const DAY_JOURNEYS: &str = "FROM journeys
     WHERE operator_id = $1 AND business_day = $2 AND status = 'closed' AND mode = 'metro'
       AND entry_at_ms >= $3 AND entry_at_ms < $4 AND entry_location_id IS NOT NULL";

/// The `FROM … WHERE …` of a count: the day's journeys, or with a bound only each rider's
/// first `max` of them by entry time (journey id breaks ties), numbered by a window function
/// in the database (which sorts only the columns the counts read). Both tables count from the
/// same bounded set, so an O–D row's journeys stay a subset of its origin's entries.
fn day_journeys(day: &DayQuery<'_>) -> String {
    match day.journeys_per_rider_max {
        None => DAY_JOURNEYS.to_string(),
        Some(max) => format!(
            "FROM (SELECT entry_location_id, entry_at_ms, exit_location_id, close_reason,
                          fare_minor, charge_minor,
                          ROW_NUMBER() OVER (PARTITION BY rider_id ORDER BY entry_at_ms, journey_id) AS rider_journey
                   {DAY_JOURNEYS}) AS journeys
             WHERE rider_journey <= {max}"
        ),
    }
}

impl Store {
    /// Entries per station, hour and fare class, ordered by station, hour and class.
    pub async fn open_data_entries(
        &self,
        day: DayQuery<'_>,
    ) -> Result<Vec<EntryCount>, sqlx::Error> {
        let sql = format!(
            "SELECT entry_location_id, (entry_at_ms - $3) / {HOUR_MS},
                    CASE WHEN charge_minor < fare_minor THEN '{capped}' ELSE '{full}' END,
                    COUNT(*)
             {from}
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            from = day_journeys(&day),
            capped = FareClass::Capped.as_str(),
            full = FareClass::Full.as_str(),
        );
        let mut rows = sqlx::query(&sql)
            .bind(day.operator_id)
            .bind(day.business_day)
            .bind(day.start_ms)
            .bind(day.end_ms)
            .fetch(&self.pool);
        let mut out = Vec::new();
        while let Some(r) = rows.try_next().await? {
            let class: String = r.try_get(2)?;
            out.push(EntryCount {
                station_id: r.try_get(0)?,
                hour_index: r.try_get(1)?,
                fare_class: FareClass::parse(&class)
                    .ok_or_else(|| sqlx::Error::Protocol(format!("fare class {class}")))?,
                journeys: r.try_get(3)?,
            });
        }
        Ok(out)
    }

    /// Journeys that ended at an exit, per origin, band and destination, ordered so that each
    /// (origin, band) row arrives whole: `row` is called once per row, with its cells. Bands
    /// start at `band_starts_ms` (band 0 at the day's start).
    pub async fn open_data_od_rows(
        &self,
        day: DayQuery<'_>,
        band_starts_ms: &[i64],
        mut row: impl FnMut(&str, i64, Vec<(String, i64)>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let band = band_starts_ms
            .iter()
            .enumerate()
            .rev()
            .map(|(i, _)| format!("WHEN entry_at_ms >= ${} THEN {}", i + 5, i + 1))
            .collect::<Vec<_>>()
            .join(" ");
        let sql = format!(
            "SELECT entry_location_id, CASE {band} ELSE 0 END, exit_location_id, COUNT(*)
             {from} AND close_reason = 'exit' AND exit_location_id IS NOT NULL
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            from = day_journeys(&day),
        );
        let mut query = sqlx::query(&sql)
            .bind(day.operator_id)
            .bind(day.business_day)
            .bind(day.start_ms)
            .bind(day.end_ms);
        for start in band_starts_ms {
            query = query.bind(*start);
        }
        let mut rows = query.fetch(&self.pool);
        let mut current: Option<(String, i64)> = None;
        let mut cells = Vec::new();
        while let Some(r) = rows.try_next().await? {
            let key: (String, i64) = (r.try_get(0)?, r.try_get(1)?);
            if current.as_ref() != Some(&key) {
                if let Some((origin, band)) = current.take() {
                    row(&origin, band, std::mem::take(&mut cells))?;
                }
                current = Some(key);
            }
            cells.push((r.try_get(2)?, r.try_get(3)?));
        }
        if let Some((origin, band)) = current {
            row(&origin, band, cells)?;
        }
        Ok(())
    }

    /// The day's counted journeys that the per-rider bound leaves out (journeys beyond each
    /// rider's first `max`): the operator's measure of what the bound costs; never published.
    pub async fn open_data_beyond_bound(
        &self,
        day: DayQuery<'_>,
        max: i64,
    ) -> Result<i64, sqlx::Error> {
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT ROW_NUMBER() OVER (PARTITION BY rider_id ORDER BY entry_at_ms, journey_id) AS rider_journey
                                   {DAY_JOURNEYS}) AS ranked
             WHERE rider_journey > {max}"
        );
        sqlx::query_scalar(&sql)
            .bind(day.operator_id)
            .bind(day.business_day)
            .bind(day.start_ms)
            .bind(day.end_ms)
            .fetch_one(&self.pool)
            .await
    }

    /// The day's journeys still open (not yet exited or swept): the export does not count
    /// them, and says so.
    pub async fn open_data_open_journeys(&self, day: DayQuery<'_>) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM journeys
             WHERE operator_id = $1 AND status = 'open' AND mode = 'metro'
               AND entry_at_ms >= $2 AND entry_at_ms < $3",
        )
        .bind(day.operator_id)
        .bind(day.start_ms)
        .bind(day.end_ms)
        .fetch_one(&self.pool)
        .await
    }
}
