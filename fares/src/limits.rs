//! [`Limits`]: how much fare data one load may hold. Pricing memory is linear in the feed (no
//! table grows with the square of anything), so bounding the text and the row counts bounds the
//! memory a network takes; a load past a limit is a [`LoadReason::Limit`] naming it, never an
//! allocation the process cannot survive.

use crate::error::{LoadError, LoadReason};

/// Named limits of one load. The defaults fit a large metropolitan feed (50,000 stops load in
/// about 0.1 s and under 100 MB; see `docs/fares.md`) with room to spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of all files given; memory after load is a small multiple of this.
    pub feed_bytes_max: u64,
    /// Rows of `stops.txt` (or `stops.csv`).
    pub stops_max: u64,
    /// Rows of `areas.txt`.
    pub areas_max: u64,
    /// Rows of `stop_areas.txt`.
    pub stop_areas_max: u64,
    /// Rows of `fare_leg_rules.txt` plus `fare_transfer_rules.txt`, or of a matrix.
    pub rules_max: u64,
    /// Rows of `fare_products.txt`.
    pub products_max: u64,
    /// Rows of `timeframes.txt`, `calendar.txt` and `calendar_dates.txt` together.
    pub timeframes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // Above the admin API's body limit, so the row limits are what bites there.
            feed_bytes_max: 256 << 20,
            stops_max: 1_000_000,
            areas_max: 100_000,
            stop_areas_max: 2_000_000,
            rules_max: 1_000_000,
            products_max: 100_000,
            timeframes_max: 100_000,
        }
    }
}

impl Limits {
    /// `Err` naming `name` when `found` exceeds `limit`.
    pub(crate) fn check(file: &str, name: &str, limit: u64, found: u64) -> Result<(), LoadError> {
        if found > limit {
            return Err(LoadError::whole(
                file,
                LoadReason::Limit {
                    name: name.to_string(),
                    limit,
                    found,
                },
            ));
        }
        Ok(())
    }
}
