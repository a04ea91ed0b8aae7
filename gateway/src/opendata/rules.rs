//! The open-data rules as pure functions (no database, clock or I/O): the day's hours and hour
//! bands in the operator's zone, the fare classes, and which counts may be published.
//!
//! # What may be published (docs/open-data.md, "Suppression")
//! 1. **Small cells.** A count below `k` is withheld (`Withheld::Small`).
//! 2. **The entries bound.** Every journey of an O–D row (origin, band) is also an entry at
//!    that origin in one of the band's hours, so the published O–D cells of a row must never
//!    add up to more than the published entries of that origin and band: otherwise the excess
//!    is a positive lower bound on withheld entry cells. Cells of the row are withheld, smallest
//!    first, until it holds (`Withheld::Bound`).
//! 3. **Never one alone.** A row with exactly one withheld cell gets a second one, its smallest
//!    published cell (`Withheld::Complement`), so the row's withheld total, which a reader may
//!    bound from the entries, is never the count of a single pair.
//!
//! With differentially private noise only rule 1 applies, on the noisy counts, from max(k, τ)
//! ([`noisy_withheld`] says why not 2 and 3).
//!
//! Withheld cells are omitted from the files (not flagged), so a reader cannot tell a withheld
//! pair from one nobody travelled. No totals are published: not per station and day, not
//! exits, not per row or column of the matrix.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// The default smallest count published.
pub const K_DEFAULT: i64 = 10;
/// Counts below 2 would publish single journeys; above this a city's day publishes nothing.
pub const K_MIN: i64 = 2;
pub const K_MAX: i64 = 1_000;

const HOUR_MS: i64 = 3_600_000;

/// What a journey paid, as far as the gateway knows: it has no rider categories (no
/// concessions), only whether the rider's daily cap reduced the charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FareClass {
    /// Charged the fare the network priced (including the maximum fare of an incomplete
    /// journey).
    Full,
    /// Charged less than the fare, or nothing: the daily cap was reached.
    Capped,
}

impl FareClass {
    pub const ALL: [FareClass; 2] = [FareClass::Full, FareClass::Capped];

    /// The spelling in the files and in the store's SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            FareClass::Full => "full_fare",
            FareClass::Capped => "capped",
        }
    }

    pub fn parse(s: &str) -> Option<FareClass> {
        FareClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// An hour band of the O–D matrix, in local time: `[start, end)` hours of the business day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    pub name: &'static str,
    pub start_hour: i8,
    pub end_hour: i8,
}

/// The bands, covering the whole day. The metro opens about 05:00; the few journeys before
/// (and just after midnight) join the early band rather than make a band of their own.
pub const BANDS: [Band; 5] = [
    Band {
        name: "early",
        start_hour: 0,
        end_hour: 7,
    },
    Band {
        name: "am_peak",
        start_hour: 7,
        end_hour: 10,
    },
    Band {
        name: "midday",
        start_hour: 10,
        end_hour: 16,
    },
    Band {
        name: "pm_peak",
        start_hour: 16,
        end_hour: 19,
    },
    Band {
        name: "evening",
        start_hour: 19,
        end_hour: 24,
    },
];

/// A business day in the operator's zone, as UTC instants.
#[derive(Debug, Clone)]
pub struct Day {
    pub date: Date,
    pub tz: TimeZone,
    /// Local midnight starting the day, and the next one.
    pub start_ms: i64,
    pub end_ms: i64,
    /// Where bands 1.. start (band 0 starts at `start_ms`).
    pub band_starts_ms: [i64; BANDS.len() - 1],
}

impl Day {
    pub fn new(date: Date, tz: TimeZone) -> anyhow::Result<Day> {
        let at = |d: Date, hour: i8| -> anyhow::Result<i64> {
            Ok(d.to_datetime(Time::new(hour, 0, 0, 0)?)
                .to_zoned(tz.clone())?
                .timestamp()
                .as_millisecond())
        };
        let mut band_starts_ms = [0; BANDS.len() - 1];
        for (slot, band) in band_starts_ms.iter_mut().zip(&BANDS[1..]) {
            *slot = at(date, band.start_hour)?;
        }
        Ok(Day {
            date,
            start_ms: at(date, 0)?,
            end_ms: at(date.tomorrow()?, 0)?,
            band_starts_ms,
            tz,
        })
    }

    /// The business day's name, as the journeys table spells it.
    pub fn name(&self) -> String {
        self.date.to_string()
    }

    /// The band of an instant of the day.
    pub fn band_of(&self, at_ms: i64) -> usize {
        self.band_starts_ms.iter().filter(|&&s| at_ms >= s).count()
    }

    /// The start of the `hour_index`-th hour since local midnight (what the store groups by:
    /// elapsed hours, so a day with a clock change has 23 or 25).
    pub fn hour_start(&self, hour_index: i64) -> anyhow::Result<Zoned> {
        Ok(
            Timestamp::from_millisecond(self.start_ms + hour_index * HOUR_MS)?
                .to_zoned(self.tz.clone()),
        )
    }

    /// The band of the `hour_index`-th hour.
    pub fn band_of_hour(&self, hour_index: i64) -> usize {
        self.band_of(self.start_ms + hour_index * HOUR_MS)
    }
}

/// Why a cell is not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// Below k (rule 1).
    Small,
    /// Withheld so the row's published journeys stay within its published entries (rule 2).
    Bound,
    /// The second withheld cell of a row (rule 3).
    Complement,
}

/// Rule 1 for a cell of the hourly entries.
pub fn entries_withheld(count: i64, k: i64) -> Option<Withheld> {
    (count < k).then_some(Withheld::Small)
}

/// Rules 1–3 for one O–D row (an origin and band): `counts` are its cells (one per
/// destination, any order, all > 0), `entries_published` the published entries of the origin
/// in the band's hours (all fare classes). Returns each cell's fate, `None` = published. Ties
/// go to the earlier cell, so the result is deterministic for a given order.
pub fn od_row_withheld(counts: &[i64], k: i64, entries_published: i64) -> Vec<Option<Withheld>> {
    let mut fate: Vec<Option<Withheld>> = counts.iter().map(|&n| entries_withheld(n, k)).collect();
    let smallest_published = |fate: &[Option<Withheld>]| {
        (0..counts.len())
            .filter(|&i| fate[i].is_none())
            .min_by_key(|&i| (counts[i], i))
    };
    let published = |fate: &[Option<Withheld>]| -> i64 {
        (0..counts.len())
            .filter(|&i| fate[i].is_none())
            .map(|i| counts[i])
            .sum()
    };
    while published(&fate) > entries_published {
        let i = smallest_published(&fate).expect("a positive published sum has a published cell");
        fate[i] = Some(Withheld::Bound);
    }
    let withheld: Vec<Withheld> = fate.iter().flatten().copied().collect();
    if withheld == [Withheld::Small] {
        if let Some(i) = smallest_published(&fate) {
            fate[i] = Some(Withheld::Complement);
        }
    }
    fate
}

/// The rules for noisy counts (docs/open-data.md, "Differential privacy"): rule 1 only, a cell
/// whose noisy count is below `threshold` (max(k, τ)) is withheld. `counts` may be zero or
/// negative.
///
/// Rule 3 must not apply: it asks whether a row has a withheld small cell, which the noisy
/// release does not reveal and must not (a rider's lone trip would then withhold another cell
/// with certainty, whatever the noise). Rule 2 could apply (it reads only published counts, so
/// it is post-processing) but is not needed: every difference of noisy counts is itself
/// covered by ε. And it would cost real cells for nothing: most journeys exit, so an origin's
/// O–D row adds up to nearly its entries, and the noise pushes it over them about half the time.
pub fn noisy_withheld(counts: &[i64], threshold: i64) -> Vec<Option<Withheld>> {
    counts
        .iter()
        .map(|&n| entries_withheld(n, threshold))
        .collect()
}

/// How many cells each rule withheld, and the journeys in them (the journeys are reported to
/// the operator, never published: with published cells they would make a total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Suppression {
    pub cells_published: u64,
    pub cells_small: u64,
    pub cells_bound: u64,
    pub cells_complement: u64,
    pub journeys_published: i64,
    pub journeys_withheld: i64,
}

impl Suppression {
    pub fn count(&mut self, fate: Option<Withheld>, journeys: i64) {
        match fate {
            None => {
                self.cells_published += 1;
                self.journeys_published += journeys;
                return;
            }
            Some(Withheld::Small) => self.cells_small += 1,
            Some(Withheld::Bound) => self.cells_bound += 1,
            Some(Withheld::Complement) => self.cells_complement += 1,
        }
        self.journeys_withheld += journeys;
    }

    pub fn cells_withheld(&self) -> u64 {
        self.cells_small + self.cells_bound + self.cells_complement
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(counts: &[i64], k: i64, entries: i64, expect: &[Option<Withheld>]) {
        assert_eq!(
            od_row_withheld(counts, k, entries),
            expect,
            "{counts:?} k={k} entries={entries}"
        );
    }

    #[test]
    fn rows() {
        use Withheld::*;
        // Nothing small, entries cover it: all published.
        check(&[12, 30], 10, 50, &[None, None]);
        // One small cell alone would be the row's whole withheld total: the smallest published
        // cell joins it.
        check(&[12, 1, 30], 10, 50, &[Some(Complement), Some(Small), None]);
        // Two small cells protect each other.
        check(&[1, 3, 30], 10, 50, &[Some(Small), Some(Small), None]);
        // Published journeys above published entries (small entry cells withheld): the
        // smallest cells go until they fit.
        check(&[12, 30], 10, 35, &[Some(Bound), None]);
        check(&[12, 30, 11], 10, 31, &[Some(Bound), None, Some(Bound)]);
        // A single small cell and nothing else: withheld, nothing to pair it with.
        check(&[1], 10, 50, &[Some(Small)]);
        // Nothing published from the origin in the band: the row goes.
        check(&[12, 30], 10, 0, &[Some(Bound), Some(Bound)]);
    }

    #[test]
    fn bands_cover_the_day_and_follow_the_zone() {
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        let day = Day::new(jiff::civil::date(2026, 12, 4), tz).unwrap();
        assert_eq!(day.end_ms - day.start_ms, 24 * HOUR_MS);
        // 2026-12-04T00:00+08:00
        assert_eq!(day.start_ms, 1_796_313_600_000);
        assert_eq!(day.band_of_hour(6), 0);
        assert_eq!(day.band_of_hour(7), 1);
        assert_eq!(day.band_of_hour(9), 1);
        assert_eq!(day.band_of_hour(10), 2);
        assert_eq!(day.band_of_hour(16), 3);
        assert_eq!(day.band_of_hour(19), 4);
        assert_eq!(day.band_of_hour(23), 4);
        // A day whose clocks go back has 25 hours; 01:00 comes twice, both in the early band.
        let ny = TimeZone::get("America/New_York").unwrap();
        let fall = Day::new(jiff::civil::date(2026, 11, 1), ny).unwrap();
        assert_eq!(fall.end_ms - fall.start_ms, 25 * HOUR_MS);
        assert_eq!(fall.hour_start(1).unwrap().hour(), 1);
        assert_eq!(fall.hour_start(2).unwrap().hour(), 1);
        assert_eq!(fall.band_of_hour(8), 1, "08:00 elapsed is 07:00 local");
    }

    proptest! {
        #[test]
        fn what_is_published_is_safe(
            counts in proptest::collection::vec(1i64..40, 1..8),
            k in 2i64..15,
            slack in -60i64..60,
        ) {
            let total: i64 = counts.iter().sum();
            let entries = (total + slack).max(0);
            let fate = od_row_withheld(&counts, k, entries);
            let published: i64 = counts.iter().zip(&fate).filter(|(_, f)| f.is_none()).map(|(n, _)| n).sum();
            let withheld = fate.iter().filter(|f| f.is_some()).count();
            // Every published cell has at least k journeys.
            for (n, f) in counts.iter().zip(&fate) {
                prop_assert!(f.is_some() || *n >= k);
                prop_assert!(*n >= k || *f == Some(Withheld::Small));
            }
            // The published row never exceeds the published entries.
            prop_assert!(published <= entries);
            // A small cell is never the row's only withheld cell while another could join it.
            let small = fate.iter().filter(|f| **f == Some(Withheld::Small)).count();
            prop_assert!(!(withheld == 1 && small == 1) || counts.len() == 1);
        }

        #[test]
        fn noisy_cells_meet_the_package_constraints(
            counts in proptest::collection::vec(1i64..300, 1..20),
            epsilon in prop_oneof![Just("0.5"), Just("1"), Just("4"), Just("10")],
            c in 1i64..8,
            k in 2i64..15,
            seed: u64,
        ) {
            use rand::SeedableRng;
            let dp = crate::opendata::dp::Dp::new(epsilon.parse().unwrap(), 1e-6, c).unwrap();
            let table = dp.per_table();
            let threshold = k.max(table.tau);
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let noisy: Vec<i64> = counts.iter().map(|n| n + table.noise(&mut rng)).collect();
            let fate = noisy_withheld(&noisy, threshold);
            for (n, f) in noisy.iter().zip(&fate) {
                // Published = at least the threshold, which is at least k (the schema's
                // minimum) and above C (what δ needs); everything else is withheld as small.
                prop_assert_eq!(f.is_none(), *n >= threshold);
                prop_assert!(f.is_some() || (*n >= k && *n > c && *n >= table.tau));
                prop_assert!(f.is_none() || *f == Some(Withheld::Small));
            }
        }
    }
}
