//! Live passenger flow, the pure part (docs/flow.md): how committed taps become per-station,
//! per-minute counts, what "usual" is for a station at a time, and the forecast. No clock,
//! database or I/O: the engine hands [`tally`] the taps a group inserted, the store keeps the
//! counts (`store/flow.rs`), and the API reads them and calls [`percent_of_usual`] and
//! [`forecast`].

use std::collections::BTreeMap;

use turnpike_wire::api::Direction;

pub const MINUTE_MS: i64 = 60_000;
pub const MINUTES_PER_HOUR: i64 = 60;
/// A week in minutes: "the same weekday and time" is this many minutes earlier (UTC; in a zone
/// with daylight saving the hour around a change compares with the same UTC hour).
pub const WEEK_MINUTES: i64 = 7 * 24 * MINUTES_PER_HOUR;
/// The window "now" and "usual" are measured over, in minutes.
pub const WINDOW_MINUTES: i64 = 15;
/// How many previous weeks make the usual level and the forecast's seasonal mean.
pub const USUAL_WEEKS_DEFAULT: u32 = 4;
/// The most previous weeks a request may ask to compare with (bounds the rows read).
pub const USUAL_WEEKS_MAX: u32 = 12;
/// How many complete hours before the current one set the forecast's scale (today vs usual).
pub const FORECAST_RECENT_HOURS: usize = 3;
/// The forecast's scale is kept within these bounds: one odd hour does not multiply a day.
pub const FORECAST_SCALE_MIN: f64 = 0.25;
pub const FORECAST_SCALE_MAX: f64 = 4.0;

/// One approved tap a group inserted, as the flow sees it.
#[derive(Debug, Clone, Copy)]
pub struct Passage<'a> {
    pub operator_id: &'a str,
    pub location_id: &'a str,
    pub scanned_at_ms: i64,
    pub direction: Direction,
}

/// Entries and exits at one station in one minute (Unix minutes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FlowCount {
    #[serde(rename = "o")]
    pub operator_id: String,
    #[serde(rename = "l")]
    pub location_id: String,
    #[serde(rename = "m")]
    pub minute: i64,
    #[serde(rename = "e")]
    pub entries: i64,
    #[serde(rename = "x")]
    pub exits: i64,
}

/// The minute a scan falls in (rounded down, also before 1970).
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS)
}

/// Passages summed per (operator, station, minute), ordered by that key — the order the
/// store's upsert takes its row locks in, so two nodes' groups never wait on each other in a
/// cycle.
pub fn tally<'a>(passages: impl IntoIterator<Item = Passage<'a>>) -> Vec<FlowCount> {
    let mut sums: BTreeMap<(&str, &str, i64), (i64, i64)> = BTreeMap::new();
    for p in passages {
        let sum = sums
            .entry((p.operator_id, p.location_id, minute_of(p.scanned_at_ms)))
            .or_default();
        match p.direction {
            Direction::Entry => sum.0 += 1,
            Direction::Exit => sum.1 += 1,
        }
    }
    sums.into_iter()
        .map(|((o, l, minute), (entries, exits))| FlowCount {
            operator_id: o.to_string(),
            location_id: l.to_string(),
            minute,
            entries,
            exits,
        })
        .collect()
}

/// The `[start, end)` minute ranges of the same window in each of the `weeks` previous weeks,
/// newest first, for the window `[start, end)`.
pub fn usual_windows(start: i64, end: i64, weeks: u32) -> Vec<(i64, i64)> {
    (1..=i64::from(weeks))
        .map(|k| (start - k * WEEK_MINUTES, end - k * WEEK_MINUTES))
        .collect()
}

/// The usual level: the mean of the previous weeks' counts for the window, over the weeks the
/// station has history for (`None` for a week before its first recorded minute). `None` when
/// no week has history.
pub fn usual(weeks: &[Option<i64>]) -> Option<f64> {
    let known: Vec<i64> = weeks.iter().flatten().copied().collect();
    (!known.is_empty()).then(|| known.iter().sum::<i64>() as f64 / known.len() as f64)
}

/// How busy the window is compared with the usual level, in percent (rounded; 100 = usual).
/// `None` without history, or when the usual level is zero (nothing to compare with).
pub fn percent_of_usual(current: i64, weeks: &[Option<i64>]) -> Option<i64> {
    let usual = usual(weeks)?;
    (usual > 0.0).then(|| (current as f64 * 100.0 / usual).round() as i64)
}

/// What the forecast of one station is made from, in whole hours (counts of entries plus
/// exits, or of either alone — the method does not care).
#[derive(Debug, Clone)]
pub struct ForecastInput {
    /// Per previous week (newest first), the counts of the [`FORECAST_RECENT_HOURS`] hours
    /// before the current hour and then of the `hours` forecast hours; `None` for a week before
    /// the station's history began.
    pub weeks: Vec<Option<Vec<i64>>>,
    /// This week's counts of the [`FORECAST_RECENT_HOURS`] hours before the current hour.
    pub recent: Vec<i64>,
}

/// The forecast of the next hours (the current hour first), as expected counts per hour.
///
/// Method (docs/flow.md): the seasonal mean — the mean of the same weekday and hour over the
/// previous weeks with history — scaled by how today compares with usual so far: the ratio of
/// the last [`FORECAST_RECENT_HOURS`] complete hours to their own seasonal mean, kept within
/// [`FORECAST_SCALE_MIN`]..[`FORECAST_SCALE_MAX`] (1 when those hours are usually empty).
/// Empty when no week has history.
pub fn forecast(input: &ForecastInput, hours: usize) -> Vec<f64> {
    let known: Vec<&Vec<i64>> = input.weeks.iter().flatten().collect();
    if known.is_empty() {
        return Vec::new();
    }
    let recent_n = input.recent.len();
    let mean_at = |i: usize| {
        known
            .iter()
            .map(|w| w.get(i).copied().unwrap_or(0))
            .sum::<i64>() as f64
            / known.len() as f64
    };
    let usual_recent: f64 = (0..recent_n).map(mean_at).sum();
    let actual_recent: i64 = input.recent.iter().sum();
    let scale = if usual_recent > 0.0 {
        (actual_recent as f64 / usual_recent).clamp(FORECAST_SCALE_MIN, FORECAST_SCALE_MAX)
    } else {
        1.0
    };
    (0..hours).map(|h| mean_at(recent_n + h) * scale).collect()
}

/// Mean absolute error and mean absolute percentage error (over actual hours above zero) of a
/// forecast, for the measurement in docs/flow.md.
pub fn errors(forecast: &[f64], actual: &[i64]) -> (f64, Option<f64>) {
    let n = forecast.len().min(actual.len());
    if n == 0 {
        return (0.0, None);
    }
    let mae = (0..n)
        .map(|i| (forecast[i] - actual[i] as f64).abs())
        .sum::<f64>()
        / n as f64;
    let pct: Vec<f64> = (0..n)
        .filter(|&i| actual[i] > 0)
        .map(|i| (forecast[i] - actual[i] as f64).abs() / actual[i] as f64)
        .collect();
    let mape = (!pct.is_empty()).then(|| 100.0 * pct.iter().sum::<f64>() / pct.len() as f64);
    (mae, mape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(l: &'static str, at_ms: i64, direction: Direction) -> Passage<'static> {
        Passage {
            operator_id: "op",
            location_id: l,
            scanned_at_ms: at_ms,
            direction,
        }
    }

    #[test]
    fn tally_sums_per_station_and_minute_in_key_order() {
        // Proves passages are counted per (station, minute), entries and exits apart, minutes
        // rounded down (before 1970 too), and the rows come out in key order.
        let rows = tally([
            p("b", 59_999, Direction::Entry),
            p("a", 60_000, Direction::Exit),
            p("b", 0, Direction::Exit),
            p("a", 119_999, Direction::Entry),
            p("a", -1, Direction::Entry),
        ]);
        let got: Vec<(&str, i64, i64, i64)> = rows
            .iter()
            .map(|r| (r.location_id.as_str(), r.minute, r.entries, r.exits))
            .collect();
        assert_eq!(got, [("a", -1, 1, 0), ("a", 1, 1, 1), ("b", 0, 1, 1)]);
    }

    proptest! {
        #[test]
        fn tally_is_additive(split in 0usize..40, seed in any::<u64>()) {
            // Proves that counting two groups apart and adding the rows gives the count of
            // both together: what the upsert relies on across groups and nodes.
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let stations = ["a", "b", "c"];
            let all: Vec<Passage<'static>> = (0..40)
                .map(|_| p(
                    stations[rng.gen_range(0..3)],
                    rng.gen_range(0..5 * MINUTE_MS),
                    if rng.gen_bool(0.5) { Direction::Entry } else { Direction::Exit },
                ))
                .collect();
            let mut added: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
            for part in [&all[..split], &all[split..]] {
                for r in tally(part.iter().copied()) {
                    let s = added.entry((r.location_id, r.minute)).or_default();
                    s.0 += r.entries;
                    s.1 += r.exits;
                }
            }
            let whole: BTreeMap<(String, i64), (i64, i64)> = tally(all.iter().copied())
                .into_iter()
                .map(|r| ((r.location_id, r.minute), (r.entries, r.exits)))
                .collect();
            prop_assert_eq!(added, whole);
        }
    }

    #[test]
    fn usual_is_the_mean_of_the_weeks_with_history() {
        // Proves the usual level averages only weeks with history, a quiet week included,
        // and that "busy" is null without history or with a usual level of zero.
        assert_eq!(usual(&[Some(10), Some(0), None, Some(20)]), Some(10.0));
        assert_eq!(
            percent_of_usual(15, &[Some(10), Some(0), None, Some(20)]),
            Some(150)
        );
        assert_eq!(percent_of_usual(15, &[None, None]), None);
        assert_eq!(percent_of_usual(15, &[]), None);
        assert_eq!(percent_of_usual(3, &[Some(0)]), None);
        assert_eq!(percent_of_usual(0, &[Some(7)]), Some(0));
    }

    #[test]
    fn usual_windows_are_whole_weeks_back() {
        // Proves the compared windows are the same minutes 1..=N weeks earlier.
        assert_eq!(
            usual_windows(100_000, 100_015, 2),
            [
                (100_000 - WEEK_MINUTES, 100_015 - WEEK_MINUTES),
                (100_000 - 2 * WEEK_MINUTES, 100_015 - 2 * WEEK_MINUTES)
            ]
        );
    }

    #[test]
    fn forecast_scales_the_seasonal_mean_by_today_so_far() {
        // Proves the method: the mean of the weeks with history, times today's ratio over the
        // recent hours; clamped; 1 when the recent hours are usually empty; empty without
        // history.
        let weeks = vec![
            Some(vec![10, 10, 10, 100, 50]),
            Some(vec![30, 30, 30, 300, 150]),
            None,
        ];
        let input = |recent: Vec<i64>| ForecastInput {
            weeks: weeks.clone(),
            recent,
        };
        // Usual recent = 60; today 90 → ×1.5.
        assert_eq!(forecast(&input(vec![30, 30, 30]), 2), [300.0, 150.0]);
        // Today 0 → the lower clamp.
        assert_eq!(forecast(&input(vec![0, 0, 0]), 1), [50.0]);
        // Today far above → the upper clamp.
        assert_eq!(forecast(&input(vec![1000, 0, 0]), 1), [800.0]);
        let quiet = ForecastInput {
            weeks: vec![Some(vec![0, 0, 0, 40])],
            recent: vec![5, 5, 5],
        };
        assert_eq!(forecast(&quiet, 1), [40.0]);
        let none = ForecastInput {
            weeks: vec![None],
            recent: vec![1, 2, 3],
        };
        assert!(forecast(&none, 3).is_empty());
    }

    #[test]
    fn errors_are_mae_and_mape_over_nonzero_hours() {
        // Proves the error measures: MAE over all hours, MAPE over hours with riders.
        let (mae, mape) = errors(&[110.0, 90.0, 5.0], &[100, 100, 0]);
        assert!((mae - 25.0 / 3.0).abs() < 1e-9);
        assert!((mape.unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(errors(&[], &[]), (0.0, None));
    }
}
