//! The passenger-flow forecast's error (docs/flow.md, "Measured error"): weeks of per-station
//! hourly passages shaped like the simulator's `rush-hour` day (`Shape::DayCurve`: peaks at
//! 08:15 and 18:00, a third of the peak at noon), with Poisson noise, a level per day (weekends quieter) and a
//! size per station; each of the last two weeks' days is forecast from 07:00 and from 15:00, six hours
//! ahead, from the history before it only (`gateway::flow::forecast`, the function the API
//! calls), against the plain seasonal mean as the baseline. MAE and MAPE per horizon hour go to
//! `target/bench-results/flow_forecast.json`.
//!
//! `cargo bench -p benches --bench flow_forecast` (or, without the release build,
//! `cargo test -p benches --bench flow_forecast`). Deterministic: a fixed seed.

use gateway::flow::{self, ForecastInput, FORECAST_RECENT_HOURS, USUAL_WEEKS_DEFAULT};
use rand::{Rng, SeedableRng};
use terminal_sim::demand::Shape;

const SEED: u64 = 19;
const STATIONS: usize = 8;
/// Days of history generated: the evaluated days each have `USUAL_WEEKS_DEFAULT` weeks before.
const WEEKS: usize = 6;
const DAYS_EVALUATED: usize = 14;
const ORIGIN_HOURS: [usize; 2] = [7, 15];
const HORIZON_HOURS: usize = 6;

/// Passages an hour at a station at its day's peak, before the day's level.
fn peak_per_hour(rng: &mut impl Rng) -> f64 {
    rng.gen_range(150.0..2_000.0)
}

/// The rush-hour day's shape at local hour `h` (its middle): the simulator's curve from 05:00 to
/// 24:00, a trickle at night.
fn shape(h: usize) -> f64 {
    let hour = h as f64 + 0.5;
    if hour < 5.0 {
        0.02
    } else {
        Shape::DayCurve.factor((hour - 5.0) / 19.0)
    }
}

/// A Poisson draw (Knuth below 30, the normal approximation above).
fn poisson(rng: &mut impl Rng, lambda: f64) -> i64 {
    if lambda < 30.0 {
        let limit = (-lambda).exp();
        let (mut k, mut p) = (0i64, 1.0);
        loop {
            p *= rng.gen::<f64>();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }
    let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    (lambda + lambda.sqrt() * z).round().max(0.0) as i64
}

/// counts[station][day * 24 + hour]
fn history(rng: &mut impl Rng) -> Vec<Vec<i64>> {
    let days = WEEKS * 7;
    let peaks: Vec<f64> = (0..STATIONS).map(|_| peak_per_hour(rng)).collect();
    // A level per day shared by the network (weather, events), weekends quieter.
    let levels: Vec<f64> = (0..days)
        .map(|d| {
            let weekday = match d % 7 {
                5 => 0.6,
                6 => 0.5,
                _ => 1.0,
            };
            weekday * rng.gen_range(0.85..1.15)
        })
        .collect();
    peaks
        .iter()
        .map(|peak| {
            (0..days * 24)
                .map(|i| {
                    // Beyond Poisson noise, each hour at each station a little off its curve.
                    let jitter = rng.gen_range(0.95..1.05);
                    poisson(rng, peak * levels[i / 24] * jitter * shape(i % 24))
                })
                .collect()
        })
        .collect()
}

#[derive(Default, Clone)]
struct Errors {
    abs: Vec<f64>,
    pct: Vec<f64>,
}

impl Errors {
    fn add(&mut self, forecast: f64, actual: i64) {
        let (mae, mape) = flow::errors(&[forecast], &[actual]);
        self.abs.push(mae);
        self.pct.extend(mape);
    }

    fn json(&self) -> serde_json::Value {
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        serde_json::json!({ "mae": mean(&self.abs), "mape_percent": mean(&self.pct), "n": self.abs.len() })
    }
}

fn main() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let counts = history(&mut rng);
    let weeks = USUAL_WEEKS_DEFAULT as usize;
    let recent_h = FORECAST_RECENT_HOURS;
    let days = WEEKS * 7;
    let mut method = vec![Errors::default(); HORIZON_HOURS];
    let mut baseline = vec![Errors::default(); HORIZON_HOURS];
    let (mut all_method, mut all_baseline) = (Errors::default(), Errors::default());
    for station in &counts {
        for day in days - DAYS_EVALUATED..days {
            for origin in ORIGIN_HOURS {
                let at = day * 24 + origin;
                let span = |start: usize| station[start - recent_h..start + HORIZON_HOURS].to_vec();
                let input = ForecastInput {
                    weeks: (1..=weeks).map(|k| Some(span(at - k * 7 * 24))).collect(),
                    recent: station[at - recent_h..at].to_vec(),
                };
                let forecast = flow::forecast(&input, HORIZON_HOURS);
                // The seasonal mean alone: nothing recent to scale by.
                let seasonal = flow::forecast(
                    &ForecastInput {
                        weeks: input
                            .weeks
                            .iter()
                            .map(|w| w.as_ref().map(|w| w[recent_h..].to_vec()))
                            .collect(),
                        recent: Vec::new(),
                    },
                    HORIZON_HOURS,
                );
                for h in 0..HORIZON_HOURS {
                    let actual = station[at + h];
                    method[h].add(forecast[h], actual);
                    baseline[h].add(seasonal[h], actual);
                    all_method.add(forecast[h], actual);
                    all_baseline.add(seasonal[h], actual);
                }
            }
        }
    }
    let per_hour: Vec<serde_json::Value> = (0..HORIZON_HOURS)
        .map(|h| {
            serde_json::json!({
                "hours_ahead": h,
                "method": method[h].json(),
                "seasonal_mean": baseline[h].json(),
            })
        })
        .collect();
    let out = serde_json::json!({
        "what": "passenger-flow forecast error on rush-hour-shaped days (docs/flow.md)",
        "seed": SEED,
        "stations": STATIONS,
        "weeks_generated": WEEKS,
        "usual_weeks": weeks,
        "days_evaluated": DAYS_EVALUATED,
        "origin_hours": ORIGIN_HOURS,
        "horizon_hours": HORIZON_HOURS,
        "overall": { "method": all_method.json(), "seasonal_mean": all_baseline.json() },
        "per_hour": per_hour,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&out["overall"]).expect("json")
    );
    let dir = benches::target_dir().join("bench-results");
    std::fs::create_dir_all(&dir).expect("creating bench-results");
    let path = dir.join("flow_forecast.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&out).expect("json")).expect("writing");
    eprintln!("wrote {}", path.display());
}
