//! Demand: when journeys start, where they go, and which rider makes them.
//!
//! Arrivals are a Poisson process whose rate follows a profile — constant, or a day compressed
//! into the run with a morning and an evening peak — plus bursts (a train arriving: many exits
//! at one station within seconds). Origins and destinations are drawn by station weight, so
//! journeys have different lengths and fares. Simulated time is compressed: a ride between
//! neighbouring stations takes a fraction of a second, so a short run completes many journeys.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::Rng;
use turnpike_wire::api::VehicleClass;

/// How the offered rate varies over the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// The offered rate all along.
    Constant,
    /// 05:00–24:00 compressed into the run: peaks around 08:15 and 18:00 reach the offered rate,
    /// the quiet middle of the day about a third of it.
    DayCurve,
}

impl Shape {
    /// Fraction (0..=1) of the peak rate at `x` = elapsed share of the run.
    pub fn factor(self, x: f64) -> f64 {
        match self {
            Shape::Constant => 1.0,
            Shape::DayCurve => {
                let hour = 5.0 + 19.0 * x;
                let bump = |centre: f64, width: f64| (-((hour - centre) / width).powi(2)).exp();
                (0.25 + bump(8.25, 1.1) + 0.85 * bump(18.0, 1.3)).min(1.0)
            }
        }
    }
}

/// A train arriving: `exits` riders leave `station` within `spread_s` seconds from `at_s`.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    pub at_s: f64,
    pub station: usize,
    pub exits: usize,
    pub spread_s: f64,
}

#[derive(Debug, Clone)]
pub struct Demand {
    /// Taps per second (entries and exits) at the profile's peak.
    pub rate_per_s: f64,
    pub shape: Shape,
    pub bursts: Vec<Burst>,
    /// Share of journeys on the toll road (entry lane → exit lane) instead of the metro.
    pub toll_share: f64,
    /// A driver makes one toll journey and no other: an exit whose payment was declined leaves
    /// the journey open (the driver may pay again), which must not meet the rider's next entry.
    pub dedicated_drivers: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Metro,
    Toll,
}

/// One planned journey: times in seconds from the start of the run (`exit_s` may lie beyond
/// its end: the rider is still travelling).
#[derive(Debug, Clone)]
pub struct Journey {
    pub mode: Mode,
    /// Station (metro) or plaza (toll) indexes.
    pub origin: usize,
    pub destination: usize,
    pub entry_s: f64,
    pub exit_s: f64,
    pub rider: usize,
    pub vehicle_class: Option<VehicleClass>,
}

/// A rider is free for a new journey this long after their exit (walking out, walking back in).
/// Compressed time, but long enough that a tap delayed by a busy gateway (open loop: the next one
/// is sent on schedule anyway) does not overtake the rider's previous tap — that would measure
/// the schedule, not the gateway (`no_entry` / `pass_back` under load).
const RIDER_TURNAROUND_S: f64 = 1.0;

/// Compressed ride time between two stops `hops` apart.
pub fn travel_s(mode: Mode, hops: usize) -> f64 {
    match mode {
        Mode::Metro => 0.8 + 0.06 * hops as f64,
        Mode::Toll => 1.0 + 0.1 * hops as f64,
    }
}

/// Station weight: the middle of the line (the city centre) is busier than its ends.
fn weight(index: usize, count: usize) -> f64 {
    let centre = (count as f64 - 1.0) / 2.0;
    1.0 + 3.0 * (1.0 - ((index as f64 - centre).abs() / centre.max(1.0)))
}

fn pick_weighted(rng: &mut impl Rng, count: usize, except: Option<usize>) -> usize {
    let total: f64 = (0..count)
        .filter(|&i| Some(i) != except)
        .map(|i| weight(i, count))
        .sum();
    let mut x = rng.gen::<f64>() * total;
    for i in (0..count).filter(|&i| Some(i) != except) {
        x -= weight(i, count);
        if x <= 0.0 {
            return i;
        }
    }
    (0..count).rfind(|&i| Some(i) != except).unwrap_or(0)
}

/// Journeys of a run of `duration_s`, sorted by entry time, with riders assigned so that no rider
/// has two journeys at once. Returns the journeys and how many distinct riders they need.
pub fn plan_journeys(
    demand: &Demand,
    duration_s: f64,
    stations: usize,
    plazas: usize,
    rng: &mut impl Rng,
) -> (Vec<Journey>, usize) {
    // Journeys start all through the run; one still under way at the end makes only its entry.
    let last_entry_s = duration_s;
    let mut journeys = Vec::new();
    // Each journey is two taps, so journeys arrive at half the tap rate. Thinning: candidates
    // at the peak rate, kept with the profile's factor.
    let peak_journeys_per_s = demand.rate_per_s / 2.0;
    let mut t = 0.0;
    if peak_journeys_per_s > 0.0 {
        loop {
            t += -(1.0 - rng.gen::<f64>()).ln() / peak_journeys_per_s;
            if t >= last_entry_s {
                break;
            }
            if rng.gen::<f64>() > demand.shape.factor(t / duration_s) {
                continue;
            }
            let toll = plazas > 1 && rng.gen::<f64>() < demand.toll_share;
            let (mode, count) = if toll {
                (Mode::Toll, plazas)
            } else {
                (Mode::Metro, stations)
            };
            let origin = pick_weighted(rng, count, None);
            let destination = pick_weighted(rng, count, Some(origin));
            let exit_s = t + travel_s(mode, origin.abs_diff(destination));
            journeys.push(Journey {
                mode,
                origin,
                destination,
                entry_s: t,
                exit_s,
                rider: 0,
                vehicle_class: toll
                    .then(|| VehicleClass::ALL[rng.gen_range(0..VehicleClass::ALL.len())]),
            });
        }
    }
    for burst in &demand.bursts {
        for _ in 0..burst.exits {
            let exit_s = burst.at_s + rng.gen::<f64>() * burst.spread_s;
            let origin = pick_weighted(rng, stations, Some(burst.station));
            let entry_s = exit_s - travel_s(Mode::Metro, origin.abs_diff(burst.station));
            if entry_s < 0.0 || exit_s >= duration_s {
                continue;
            }
            journeys.push(Journey {
                mode: Mode::Metro,
                origin,
                destination: burst.station,
                entry_s,
                exit_s,
                rider: 0,
                vehicle_class: None,
            });
        }
    }
    journeys.sort_by(|a, b| a.entry_s.total_cmp(&b.entry_s));
    // Riders: reuse whoever is free (earliest first), enrol a new one otherwise.
    let mut free: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut riders = 0;
    for journey in &mut journeys {
        let entry_us = (journey.entry_s * 1e6) as u64;
        journey.rider = match free.peek() {
            Some(Reverse((free_us, rider))) if *free_us <= entry_us => {
                let rider = *rider;
                free.pop();
                rider
            }
            _ => {
                riders += 1;
                riders - 1
            }
        };
        if demand.dedicated_drivers && journey.mode == Mode::Toll {
            continue;
        }
        free.push(Reverse((
            ((journey.exit_s + RIDER_TURNAROUND_S) * 1e6) as u64,
            journey.rider,
        )));
    }
    (journeys, riders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn constant_demand_offers_the_rate_and_never_overlaps_a_riders_journeys() {
        // Proves the plan offers about the requested tap rate and that a rider's journeys are
        // sequential (entry after the previous exit).
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let demand = Demand {
            rate_per_s: 1000.0,
            shape: Shape::Constant,
            bursts: vec![],
            toll_share: 0.1,
            dedicated_drivers: false,
        };
        let (journeys, riders) = plan_journeys(&demand, 20.0, 20, 8, &mut rng);
        let taps = journeys.len() as f64 * 2.0;
        assert!((taps / 20.0 - 1000.0).abs() < 120.0, "{}", taps / 20.0);
        let mut last_exit = vec![f64::MIN; riders];
        for j in &journeys {
            assert!(j.entry_s >= last_exit[j.rider] + RIDER_TURNAROUND_S - 1e-6);
            last_exit[j.rider] = j.exit_s;
            assert_ne!(j.origin, j.destination);
        }
    }

    #[test]
    fn the_day_curve_has_two_peaks_and_a_quiet_noon() {
        // Proves the time-of-day profile: peaks near 08:15 and 18:00, a lull at midday.
        let at = |hour: f64| Shape::DayCurve.factor((hour - 5.0) / 19.0);
        assert!(at(8.25) > 0.99 && at(18.0) > 0.99);
        assert!(at(13.0) < 0.4 && at(23.5) < 0.4);
    }
}
