//! Hangzhou Metro's distance-based single-journey fare, as a pure function of track distance.
//!
//! The rule (the one Hangzhou publishes, in whole yuan):
//! - 2 CNY for the first 4 km;
//! - from 4 to 12 km, +1 CNY for every 4 km or part of it;
//! - from 12 to 24 km, +1 CNY for every 6 km or part of it;
//! - beyond 24 km, +1 CNY for every 8 km or part of it.
//!
//! "Part of it" is why the band edges matter: exactly 4 000 m is still 2 CNY, 4 001 m is 3 CNY.
//! The shipped demo network (see [`crate::demo`]) is generated from this function, and a test
//! checks that the shipped GTFS and matrix files price every station pair as this function says.

use turnpike_wire::money::Money;

use crate::money;

/// The flat fare that covers the first band, in whole yuan.
const BASE_FARE_YUAN: u64 = 2;
/// Distance covered by the base fare.
const BASE_DISTANCE_M: u64 = 4_000;

/// A stretch of distance where each started `step_m` adds one yuan.
struct Band {
    from_m: u64,
    to_m: u64,
    step_m: u64,
}

const BANDS: [Band; 3] = [
    Band {
        from_m: BASE_DISTANCE_M,
        to_m: 12_000,
        step_m: 4_000,
    },
    Band {
        from_m: 12_000,
        to_m: 24_000,
        step_m: 6_000,
    },
    Band {
        from_m: 24_000,
        to_m: u64::MAX,
        step_m: 8_000,
    },
];

/// The fare in whole yuan for `distance_m` metres of track.
pub fn hangzhou_distance_fare_yuan(distance_m: u64) -> u64 {
    BANDS.iter().fold(BASE_FARE_YUAN, |fare_yuan, band| {
        if distance_m <= band.from_m {
            return fare_yuan;
        }
        let in_band_m = distance_m.min(band.to_m) - band.from_m;
        // A started step counts as a whole one, hence the rounding up.
        fare_yuan.saturating_add(in_band_m.div_ceil(band.step_m))
    })
}

/// The fare for `distance_m` metres of track, in CNY. Total for every input: a zero distance (entry
/// and exit at the same station) is the base fare, and the largest `u64` is about 2.3 × 10^15
/// yuan, well inside what [`Money`] holds.
pub fn hangzhou_distance_fare(distance_m: u64) -> Money {
    let fare_yuan = hangzhou_distance_fare_yuan(distance_m);
    // u64::MAX / 8000 + 8 < i64::MAX / 100, so neither conversion can fail; saturate anyway
    // rather than carry a panic path.
    let fare_fen = i64::try_from(fare_yuan)
        .unwrap_or(i64::MAX / 100)
        .saturating_mul(100);
    Money::from_minor(fare_fen, money::cny())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(distance_m: u64, expected_yuan: u64) {
        assert_eq!(
            hangzhou_distance_fare_yuan(distance_m),
            expected_yuan,
            "fare for {distance_m} m"
        );
        let fare = hangzhou_distance_fare(distance_m);
        assert_eq!(fare.to_minor(), i64::try_from(expected_yuan * 100).unwrap());
    }

    #[test]
    fn band_edges() {
        // Proves every band edge: the edge itself belongs to the cheaper band, one metre more
        // starts the next step.
        let table: &[(u64, u64)] = &[
            (0, 2),
            (1, 2),
            (4_000, 2),
            (4_001, 3),
            (8_000, 3),
            (8_001, 4),
            (12_000, 4),
            (12_001, 5),
            (18_000, 5),
            (18_001, 6),
            (24_000, 6),
            (24_001, 7),
            (32_000, 7),
            (32_001, 8),
            (40_000, 8),
            (40_001, 9),
            (48_000, 9),
            (48_001, 10),
        ];
        for &(distance_m, yuan) in table {
            check(distance_m, yuan);
        }
    }

    #[test]
    fn huge_distance_does_not_panic() {
        // Proves the function is total: the largest input gives a large but exact fare.
        let yuan = hangzhou_distance_fare_yuan(u64::MAX);
        assert!(yuan > 2_000_000_000_000_000);
        assert!(hangzhou_distance_fare(u64::MAX).to_minor() > 0);
    }

    #[test]
    fn fare_never_decreases_with_distance() {
        // Proves monotonicity over the first 60 km, metre by metre: a longer ride never costs less.
        let mut previous = 0;
        for distance_m in 0..60_000 {
            let fare = hangzhou_distance_fare_yuan(distance_m);
            assert!(fare >= previous, "fare drops at {distance_m} m");
            previous = fare;
        }
    }
}
