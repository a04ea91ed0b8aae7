//! What a tap writer knows of its riders between groups, so that most groups are judged and
//! written in one round trip (see `engine.rs`, "one round trip per group").
//!
//! Writers are assigned by rider, so the open journeys a writer opened and the day totals it
//! moved are, almost always, still what the database holds when the rider's next tap comes.
//! A group judged on that knowledge sends no reads: its writes carry what they assumed — a
//! close names the journey and its entry, a new journey meets the one-open-journey constraint,
//! a day total moves only from the value assumed, a code use and a tap record must be new — and
//! a write that finds the database different raises `WAVE_RACED`, so nothing commits and the
//! group is judged again with its reads. The database stays the source of truth; this is only
//! a guess about it, bounded in size (`taps.known_riders_max`) and dropped whenever it could
//! be wrong (a race, a re-pairing, a group that gave up).
//!
//! Only *open* journeys are remembered: a rider the writer does not know is taken to have none
//! when they enter (the constraint checks it), and an exit by a rider it does not know is judged
//! with reads.

use std::collections::{HashMap, HashSet};

use crate::network::Mode;
use crate::store::JourneyRow;

/// A rider's journeys in one mode.
pub type RiderMode = (i64, Mode);

/// A rider's day total of fares for the daily cap: (rider, operator, business day).
pub type DayKey = (i64, String, String);

/// What a writer knows, as of its last committed group.
#[derive(Default)]
pub struct Known {
    /// Open journeys this writer opened or read.
    open: HashMap<RiderMode, JourneyRow>,
    /// Day totals this writer moved or read.
    days: HashMap<DayKey, i64>,
}

/// A group's own changes, applied to [`Known`] only once the group has committed.
#[derive(Default)]
pub struct Changes {
    /// Per rider and mode: the open journey after the group (`None`: none).
    open: HashMap<RiderMode, Option<JourneyRow>>,
    days: HashMap<DayKey, i64>,
    /// Riders whose journeys were changed in ways not tracked here (a re-pairing).
    forget: HashSet<i64>,
}

/// What is known of a rider's open journey in a mode.
#[derive(Debug, PartialEq)]
pub enum OpenJourney<'a> {
    Open(&'a JourneyRow),
    /// Known to have none (this group closed it).
    None,
    /// Not known: the database has to be asked.
    Unknown,
}

impl Known {
    /// The rider's open journey: the group's change if it made one, else what the writer knows.
    pub fn open_journey<'a>(&'a self, changes: &'a Changes, key: RiderMode) -> OpenJourney<'a> {
        let journey = match changes.open.get(&key) {
            Some(changed) => changed.as_ref(),
            None if changes.forget.contains(&key.0) => return OpenJourney::Unknown,
            None => match self.open.get(&key) {
                Some(journey) => Some(journey),
                None => return OpenJourney::Unknown,
            },
        };
        journey.map_or(OpenJourney::None, OpenJourney::Open)
    }

    /// The rider's day total before the group's next fare, if known.
    pub fn day_total(&self, changes: &Changes, key: &DayKey) -> Option<i64> {
        changes
            .days
            .get(key)
            .or_else(|| {
                (!changes.forget.contains(&key.0))
                    .then(|| self.days.get(key))
                    .flatten()
            })
            .copied()
    }

    /// Takes in a committed group's changes; keeps at most `max` entries of each kind (when
    /// full it starts again from nothing: a writer that forgets only judges with reads).
    pub fn apply(&mut self, changes: Changes, max: usize) {
        self.forget(&changes.forget);
        for (key, journey) in changes.open {
            match journey {
                Some(journey) => {
                    self.open.insert(key, journey);
                }
                None => {
                    self.open.remove(&key);
                }
            }
        }
        self.days.extend(changes.days);
        if self.open.len() > max {
            self.open.clear();
        }
        if self.days.len() > max {
            self.days.clear();
        }
    }

    /// Drops everything known of these riders (their rows may have changed).
    pub fn forget(&mut self, riders: &HashSet<i64>) {
        if riders.is_empty() {
            return;
        }
        self.open.retain(|(rider, _), _| !riders.contains(rider));
        self.days.retain(|(rider, _, _), _| !riders.contains(rider));
    }

    /// How many open journeys and day totals are known.
    #[cfg(test)]
    pub fn sizes(&self) -> (usize, usize) {
        (self.open.len(), self.days.len())
    }
}

impl Changes {
    /// The rider's open journey in this mode is now `journey` (read, opened, or closed: `None`).
    pub fn set_open(&mut self, key: RiderMode, journey: Option<JourneyRow>) {
        self.open.insert(key, journey);
    }

    /// The rider's day total is now `total`.
    pub fn set_day_total(&mut self, key: DayKey, total: i64) {
        self.days.insert(key, total);
    }

    /// Nothing is to be assumed about this rider any more.
    pub fn forget(&mut self, rider_id: i64) {
        self.forget.insert(rider_id);
        self.open.retain(|(rider, _), _| *rider != rider_id);
        self.days.retain(|(rider, _, _), _| *rider != rider_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journey(id: i64, rider: i64) -> JourneyRow {
        crate::store::waves::Open {
            journey_id: id,
            rider_id: rider,
            credential_id: 1,
            operator_id: "op".into(),
            mode: "metro",
            entry_terminal_id: "t".into(),
            entry_sequence: id,
            entry_location_id: "s".into(),
            entry_at_ms: 0,
        }
        .as_journey_row()
    }

    /// Proves a group sees its own changes over what the writer knew, the writer learns them
    /// only when they are applied, and a forgotten rider is unknown again.
    #[test]
    fn changes_layer_over_what_is_known() {
        let mut known = Known::default();
        let key = (7, Mode::Metro);
        let day: DayKey = (7, "op".into(), "2026-12-04".into());
        let mut changes = Changes::default();
        assert_eq!(known.open_journey(&changes, key), OpenJourney::Unknown);
        changes.set_open(key, Some(journey(1, 7)));
        changes.set_day_total(day.clone(), 300);
        assert!(
            matches!(known.open_journey(&changes, key), OpenJourney::Open(j) if j.journey_id == 1)
        );
        assert_eq!(
            known.open_journey(&Changes::default(), key),
            OpenJourney::Unknown
        );
        known.apply(changes, 10);
        let mut next = Changes::default();
        assert!(
            matches!(known.open_journey(&next, key), OpenJourney::Open(j) if j.journey_id == 1)
        );
        assert_eq!(known.day_total(&next, &day), Some(300));
        next.set_open(key, None);
        assert_eq!(known.open_journey(&next, key), OpenJourney::None);
        next.forget(7);
        assert_eq!(known.open_journey(&next, key), OpenJourney::Unknown);
        assert_eq!(known.day_total(&next, &day), None);
        known.apply(next, 10);
        assert_eq!(known.sizes(), (0, 0));
    }

    /// Proves what a writer knows stays within its bound.
    #[test]
    fn stays_bounded() {
        let mut known = Known::default();
        for rider in 0..25 {
            let mut changes = Changes::default();
            changes.set_open((rider, Mode::Metro), Some(journey(rider, rider)));
            changes.set_day_total((rider, "op".into(), "d".into()), 1);
            known.apply(changes, 10);
            let (open, days) = known.sizes();
            assert!(open <= 10 && days <= 10, "{open} {days}");
        }
    }
}
