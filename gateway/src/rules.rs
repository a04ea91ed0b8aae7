//! The tap rules as pure functions: no database, no clock, no I/O.
//!
//! [`judge`] decides one verified tap against the rider's open journey in its mode (if any):
//! pass-back, exit without entry, an exit on another operator's network, a stale journey closed
//! as incomplete, the same-station window, the fare. [`incomplete`] prices a journey that never
//! saw its exit (the sweeper's rule, and an entry's or exit's after the timeout). [`journeys`]
//! folds [`judge`] over a rider's taps in scan order — with the replay rule, the static checks
//! ([`admissible`]), the sweeper's timeout as of a given time and the daily cap — and returns
//! every tap's decision and the journeys they make: the rules as one function of the facts.
//!
//! The engine (`engine.rs`) calls [`admissible`], [`judge`] and [`incomplete`] for every tap it
//! judges, and the sweeper calls [`incomplete`]; they read the open journey and the day's running
//! total from the database and write what these functions decide. `tests/tests/rules.rs` proves
//! that a gateway fed a rider's taps in scan order stores exactly what [`journeys`] gives.

use std::collections::{HashMap, HashSet};

use turnpike_wire::api::{Direction, TapDecline, VehicleClass};
use turnpike_wire::Money;

use crate::network::{Mode, OperatorNetwork};

/// The time rules of journeys (`journeys.*` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct JourneyRules {
    /// A journey open longer than this (entry to the scan that finds it) is incomplete.
    pub incomplete_after_ms: i64,
    /// An exit at the entry station within this window pays the minimum fare.
    pub same_station_window_ms: i64,
}

/// Why a journey closed (`journeys.close_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// An exit priced from the fare table (or, back at the entry station after the window, the
    /// maximum fare).
    Exit,
    /// Back out at the entry station within the same-station window: the minimum fare.
    SameStation,
    /// No exit within `incomplete_after_ms`: the maximum fare (metro) or the longest toll from
    /// the entry plaza at class p1 (toll).
    Incomplete,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Exit => "exit",
            CloseReason::SameStation => "same_station",
            CloseReason::Incomplete => "incomplete",
        }
    }
}

/// What [`judge`] needs of a tap: where, which way, when.
#[derive(Debug, Clone, Copy)]
pub struct TapFacts<'a> {
    pub operator_id: &'a str,
    pub location_id: &'a str,
    pub direction: Direction,
    pub scanned_at_ms: i64,
    pub vehicle_class: Option<VehicleClass>,
}

/// What [`judge`] needs of the rider's open journey in the tap's mode.
#[derive(Debug, Clone, Copy)]
pub struct OpenFacts<'a> {
    pub operator_id: &'a str,
    pub entry_location_id: &'a str,
    pub entry_at_ms: i64,
}

/// A journey's price: its fare, why it closed, and the business day its fare counts in (the
/// entry's date in the operator's time zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub fare: Money,
    pub close_reason: CloseReason,
    pub business_day: String,
}

/// What one tap does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Approved entry: opens a journey, after closing the rider's stale one (if any) as
    /// incomplete, priced here.
    Enter { close_stale: Option<Priced> },
    /// Approved exit: closes the open journey at this price.
    Exit(Priced),
    /// Declined; the open journey, if stale, is closed as incomplete at this price all the same.
    Decline {
        reason: TapDecline,
        close_stale: Option<Priced>,
    },
}

impl Judgement {
    fn decline(reason: TapDecline) -> Judgement {
        Judgement::Decline {
            reason,
            close_stale: None,
        }
    }
}

/// The checks that need no journey: a product the credential does not allow, a location the
/// network does not know.
pub fn admissible(
    network: &OperatorNetwork,
    products: u16,
    location_id: &str,
) -> Result<(), TapDecline> {
    if products & network.mode().product_bit() == 0 {
        Err(TapDecline::ProductNotAllowed)
    } else if !network.has_location(location_id) {
        Err(TapDecline::UnknownStation)
    } else {
        Ok(())
    }
}

/// A journey that never saw its exit, priced on the network it began on.
pub fn incomplete(open_network: &OperatorNetwork, open: &OpenFacts<'_>) -> Priced {
    Priced {
        fare: open_network.incomplete_fare(open.entry_location_id),
        close_reason: CloseReason::Incomplete,
        business_day: open_network.business_day(open.entry_at_ms),
    }
}

/// Judges one tap (already verified and [`admissible`]) against the rider's open journey in
/// its mode. `network` is the tap's operator's; `open_network` the open journey's (the same
/// unless the journey began on another operator's network; `None` if that operator has no
/// network in force any more, in which case the tap's network prices a stale journey).
pub fn judge(
    rules: &JourneyRules,
    network: &OperatorNetwork,
    tap: &TapFacts<'_>,
    open: Option<(&OpenFacts<'_>, Option<&OperatorNetwork>)>,
) -> Judgement {
    let timed_out =
        |open: &OpenFacts<'_>| tap.scanned_at_ms - open.entry_at_ms > rules.incomplete_after_ms;
    let stale = |open: &OpenFacts<'_>, open_network: Option<&OperatorNetwork>| {
        incomplete(open_network.unwrap_or(network), open)
    };
    match (tap.direction, open) {
        (Direction::Entry, Some((open, _))) if !timed_out(open) => {
            Judgement::decline(TapDecline::PassBack)
        }
        (Direction::Entry, open) => Judgement::Enter {
            close_stale: open.map(|(open, open_network)| stale(open, open_network)),
        },
        (Direction::Exit, None) => Judgement::decline(TapDecline::NoEntry),
        (Direction::Exit, Some((open, _))) if open.operator_id != tap.operator_id => {
            Judgement::decline(TapDecline::EntryOnOtherNetwork)
        }
        (Direction::Exit, Some((open, _))) if open.entry_at_ms > tap.scanned_at_ms => {
            Judgement::decline(TapDecline::NoEntry)
        }
        (Direction::Exit, Some((open, open_network))) if timed_out(open) => Judgement::Decline {
            reason: TapDecline::NoEntry,
            close_stale: Some(stale(open, open_network)),
        },
        (Direction::Exit, Some((open, _))) => match exit_price(rules, network, tap, open) {
            None => Judgement::decline(TapDecline::NoFare),
            Some((fare, close_reason)) => Judgement::Exit(Priced {
                fare,
                close_reason,
                business_day: network.business_day(open.entry_at_ms),
            }),
        },
    }
}

/// The fare of an exit from `open`'s entry: the same-station rule, the metro fare table, or the
/// toll for the vehicle's class; `None` when the fare data has no price for it.
fn exit_price(
    rules: &JourneyRules,
    network: &OperatorNetwork,
    tap: &TapFacts<'_>,
    open: &OpenFacts<'_>,
) -> Option<(Money, CloseReason)> {
    match network.mode() {
        Mode::Metro if open.entry_location_id == tap.location_id => {
            if tap.scanned_at_ms - open.entry_at_ms <= rules.same_station_window_ms {
                Some((network.min_fare(), CloseReason::SameStation))
            } else {
                // Out and back to the same station: the rider may have gone anywhere.
                Some((network.max_fare(), CloseReason::Exit))
            }
        }
        Mode::Metro => network
            .metro_fare_at(
                open.entry_location_id,
                tap.location_id,
                open.entry_at_ms,
                tap.scanned_at_ms,
            )
            .map(|fare| (fare, CloseReason::Exit)),
        Mode::Toll => tap
            .vehicle_class
            .and_then(|class| network.toll(open.entry_location_id, tap.location_id, class))
            .map(|fare| (fare, CloseReason::Exit)),
    }
}

/// One of a rider's taps, as [`journeys`] takes them.
#[derive(Debug, Clone)]
pub struct RiderTap {
    /// The tap's key: (terminal, sequence).
    pub terminal_id: String,
    pub sequence: u64,
    pub operator_id: String,
    pub location_id: String,
    pub direction: Direction,
    pub scanned_at_ms: i64,
    pub vehicle_class: Option<VehicleClass>,
    /// The ride code's fingerprint (the replay rule: one use per direction).
    pub code: [u8; 32],
    /// The credential's product flags.
    pub products: u16,
}

/// A journey as [`journeys`] makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journey {
    pub operator_id: String,
    pub mode: Mode,
    /// The entry tap's key; `None` for an exit whose entry is not known.
    pub entry: Option<(String, u64)>,
    /// The exit tap's key, if an exit closed it.
    pub exit: Option<(String, u64)>,
    /// `None` while open.
    pub priced: Option<Priced>,
    /// What the rider is charged for it after the daily cap (`None` while open).
    pub charge: Option<Money>,
}

/// Whether a tap the live rules refuse for `reason` was let through all the same: every
/// refusal that comes from what the gateway knows of the rider's other taps — knowledge an
/// offline gate lacks — for a tap an offline gate admitted, and for a live exit (a rider whose
/// entry is still in another gate's buffer is not trapped at the exit; the exit is settled when
/// the entry arrives, else priced by policy). A live entry during an open journey stays refused
/// (pass-back).
pub fn admits(reason: TapDecline, direction: Direction, offline: bool) -> bool {
    (offline || direction == Direction::Exit)
        && matches!(
            reason,
            TapDecline::PassBack
                | TapDecline::NoEntry
                | TapDecline::EntryOnOtherNetwork
                | TapDecline::NoFare
        )
}

/// A rider's journeys and every live tap's decision (`Ok` = approve), from their taps sent live
/// in the order given (scan order, for the rules' meaning), as of `as_of_ms`: each tap is judged
/// by [`admissible`], the replay rule and [`judge`] against the journey the taps before it left
/// open, a refused exit is let through as [`admits`] says, and the journeys are what [`pair`]
/// makes of the approved taps (journeys open longer than `incomplete_after_ms` at `as_of_ms`
/// closed as the sweeper closes them, the daily cap in the order journeys close).
pub fn journeys(
    rules: &JourneyRules,
    networks: &HashMap<String, &OperatorNetwork>,
    taps: &[RiderTap],
    as_of_ms: i64,
) -> (Vec<Result<(), TapDecline>>, Vec<Journey>) {
    let mut decisions = Vec::with_capacity(taps.len());
    // Per mode: the entry of the journey open after the taps so far (as `pair` leaves it).
    let mut open: HashMap<Mode, &RiderTap> = HashMap::new();
    let mut used: HashSet<([u8; 32], Direction)> = HashSet::new();
    let mut facts: Vec<Fact> = Vec::new();
    for tap in taps {
        let Some(&network) = networks.get(&tap.operator_id) else {
            decisions.push(Err(TapDecline::NetworkNotConfigured));
            continue;
        };
        if let Err(reason) = admissible(network, tap.products, &tap.location_id) {
            decisions.push(Err(reason));
            continue;
        }
        if used.contains(&(tap.code, tap.direction)) {
            decisions.push(Err(TapDecline::Replay));
            continue;
        }
        let mode = network.mode();
        let current = open.get(&mode).map(|entry| OpenFacts {
            operator_id: &entry.operator_id,
            entry_location_id: &entry.location_id,
            entry_at_ms: entry.scanned_at_ms,
        });
        let open_network = current
            .as_ref()
            .map(|o| networks.get(o.operator_id).copied());
        let facts_of_tap = TapFacts {
            operator_id: &tap.operator_id,
            location_id: &tap.location_id,
            direction: tap.direction,
            scanned_at_ms: tap.scanned_at_ms,
            vehicle_class: tap.vehicle_class,
        };
        let decision = match judge(
            rules,
            network,
            &facts_of_tap,
            current.as_ref().zip(open_network),
        ) {
            Judgement::Enter { .. } | Judgement::Exit(_) => Ok(()),
            Judgement::Decline { reason, .. } if admits(reason, tap.direction, false) => Ok(()),
            Judgement::Decline {
                reason,
                close_stale,
            } => {
                if close_stale.is_some() {
                    open.remove(&mode);
                }
                Err(reason)
            }
        };
        if decision.is_ok() {
            // An entry opens the mode's journey (closing any other); an exit, paired or not,
            // leaves none open.
            match tap.direction {
                Direction::Entry => open.insert(mode, tap),
                Direction::Exit => open.remove(&mode),
            };
            used.insert((tap.code, tap.direction));
            facts.push(Fact {
                terminal_id: tap.terminal_id.clone(),
                sequence: tap.sequence,
                operator_id: tap.operator_id.clone(),
                location_id: tap.location_id.clone(),
                direction: tap.direction,
                scanned_at_ms: tap.scanned_at_ms,
                vehicle_class: tap.vehicle_class,
            });
        }
        decisions.push(decision);
    }
    facts.sort_by(Fact::scan_order);
    let key = |i: Option<usize>| i.map(|i| (facts[i].terminal_id.clone(), facts[i].sequence));
    let journeys = pair(rules, networks, &facts, as_of_ms, HashMap::new())
        .into_iter()
        .map(|p| Journey {
            operator_id: p.operator_id,
            mode: p.mode,
            entry: key(p.entry),
            exit: key(p.exit),
            priced: p.priced,
            charge: p.charge,
        })
        .collect();
    (decisions, journeys)
}

/// A tap a gate admitted — approved live, or let through offline and uploaded later with a
/// code that verifies as of its scan time: a fact of the rider's movement, whatever order it
/// reached the gateway in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// The tap's key: (terminal, sequence).
    pub terminal_id: String,
    pub sequence: u64,
    pub operator_id: String,
    pub location_id: String,
    pub direction: Direction,
    pub scanned_at_ms: i64,
    pub vehicle_class: Option<VehicleClass>,
}

impl Fact {
    /// Scan order: by scan time, ties broken by the tap's key (so every node sorts alike).
    pub fn scan_order(a: &Fact, b: &Fact) -> std::cmp::Ordering {
        (a.scanned_at_ms, &a.terminal_id, a.sequence).cmp(&(
            b.scanned_at_ms,
            &b.terminal_id,
            b.sequence,
        ))
    }
}

/// A journey as [`pair`] makes it from facts: which facts are its entry and exit (indexes into
/// the facts), its price and its charge after the daily cap (both `None` while open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paired {
    pub operator_id: String,
    pub mode: Mode,
    /// `None`: an exit whose entry is not known (yet) — priced by the operator's policy for a
    /// journey without its other end, [`incomplete`] at the exit's station or plaza.
    pub entry: Option<usize>,
    pub exit: Option<usize>,
    pub priced: Option<Priced>,
    pub charge: Option<Money>,
}

/// A rider's journeys from the facts of their movement, given in scan order
/// ([`Fact::scan_order`]), as of `as_of_ms`: the rule every arrival order must end in.
///
/// Every fact happened (its gate opened), so nothing is declined: an entry while a journey is
/// open closes that journey as incomplete (its exit was never tapped) and opens the next; an
/// exit pairs with the open journey on its operator's network (priced as [`judge`] prices it;
/// without a price in the fare data, as incomplete), and an exit with no journey to pair with
/// — none open, one on another operator's network, or one older than `incomplete_after_ms` — is
/// a journey of its own without an entry, priced by [`incomplete`] at its station or plaza.
/// Journeys still open longer than `incomplete_after_ms` at `as_of_ms` close as the sweeper
/// closes them. The daily cap runs per operator and business day in the order journeys close,
/// starting from `day_totals` (the fares of the rider's journeys not among these facts).
pub fn pair(
    rules: &JourneyRules,
    networks: &HashMap<String, &OperatorNetwork>,
    facts: &[Fact],
    as_of_ms: i64,
    mut day_totals: HashMap<(String, String), i64>,
) -> Vec<Paired> {
    let mut journeys: Vec<Paired> = Vec::new();
    // Per mode: the index of the open journey.
    let mut open: HashMap<Mode, usize> = HashMap::new();
    let mut close = |journeys: &mut Vec<Paired>, at: usize, exit: Option<usize>, priced: Priced| {
        let journey = &mut journeys[at];
        let network = networks[&journey.operator_id];
        let total = day_totals
            .entry((journey.operator_id.clone(), priced.business_day.clone()))
            .or_default();
        journey.charge = Some(network.capped_charge(*total, priced.fare));
        *total += priced.fare.to_minor();
        journey.exit = exit;
        journey.priced = Some(priced);
    };
    let entry_of = |journeys: &[Paired], at: usize| {
        let entry = &facts[journeys[at].entry.expect("an open journey has an entry")];
        OpenFacts {
            operator_id: &entry.operator_id,
            entry_location_id: &entry.location_id,
            entry_at_ms: entry.scanned_at_ms,
        }
    };
    for (i, fact) in facts.iter().enumerate() {
        let Some(&network) = networks.get(&fact.operator_id) else {
            // Not admitted by any network in force: nothing to pair.
            continue;
        };
        let mode = network.mode();
        let stale = |journeys: &[Paired], at: usize| {
            let open = entry_of(journeys, at);
            incomplete(
                networks.get(open.operator_id).copied().unwrap_or(network),
                &open,
            )
        };
        match fact.direction {
            Direction::Entry => {
                if let Some(at) = open.remove(&mode) {
                    let priced = stale(&journeys, at);
                    close(&mut journeys, at, None, priced);
                }
                open.insert(mode, journeys.len());
                journeys.push(Paired {
                    operator_id: fact.operator_id.clone(),
                    mode,
                    entry: Some(i),
                    exit: None,
                    priced: None,
                    charge: None,
                });
            }
            Direction::Exit => {
                let tap = TapFacts {
                    operator_id: &fact.operator_id,
                    location_id: &fact.location_id,
                    direction: Direction::Exit,
                    scanned_at_ms: fact.scanned_at_ms,
                    vehicle_class: fact.vehicle_class,
                };
                let pairs = open.get(&mode).copied().filter(|&at| {
                    let o = entry_of(&journeys, at);
                    o.operator_id == fact.operator_id
                        && o.entry_at_ms <= fact.scanned_at_ms
                        && fact.scanned_at_ms - o.entry_at_ms <= rules.incomplete_after_ms
                });
                if let Some(at) = pairs {
                    let o = entry_of(&journeys, at);
                    let priced = match exit_price(rules, network, &tap, &o) {
                        Some((fare, close_reason)) => Priced {
                            fare,
                            close_reason,
                            business_day: network.business_day(o.entry_at_ms),
                        },
                        None => incomplete(network, &o),
                    };
                    open.remove(&mode);
                    close(&mut journeys, at, Some(i), priced);
                    continue;
                }
                if let Some(at) = open.remove(&mode) {
                    let priced = stale(&journeys, at);
                    close(&mut journeys, at, None, priced);
                }
                let priced = incomplete(
                    network,
                    &OpenFacts {
                        operator_id: &fact.operator_id,
                        entry_location_id: &fact.location_id,
                        entry_at_ms: fact.scanned_at_ms,
                    },
                );
                journeys.push(Paired {
                    operator_id: fact.operator_id.clone(),
                    mode,
                    entry: None,
                    exit: None,
                    priced: None,
                    charge: None,
                });
                let at = journeys.len() - 1;
                close(&mut journeys, at, Some(i), priced);
            }
        }
    }
    // The sweeper, as of `as_of_ms`.
    let mut still_open: Vec<usize> = open.into_values().collect();
    still_open.sort_unstable();
    for at in still_open {
        let o = entry_of(&journeys, at);
        if as_of_ms - o.entry_at_ms > rules.incomplete_after_ms {
            let network = networks[o.operator_id];
            let priced = incomplete(network, &o);
            close(&mut journeys, at, None, priced);
        }
    }
    journeys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::demo_network;

    const RULES: JourneyRules = JourneyRules {
        incomplete_after_ms: 4 * 3_600_000,
        same_station_window_ms: 20 * 60_000,
    };
    const MIN: i64 = 60_000;

    fn stops() -> Vec<String> {
        let metro = turnpike_fares::demo_metro();
        metro.stops().iter().map(|s| s.id.clone()).collect()
    }

    fn tap(location: &str, direction: Direction, at: i64) -> TapFacts<'_> {
        TapFacts {
            operator_id: "metro",
            location_id: location,
            direction,
            scanned_at_ms: at,
            vehicle_class: None,
        }
    }

    fn open(location: &str, at: i64) -> OpenFacts<'_> {
        OpenFacts {
            operator_id: "metro",
            entry_location_id: location,
            entry_at_ms: at,
        }
    }

    /// Proves each rule of one tap against the open journey: pass-back, exit without entry, an
    /// exit scanned before its entry, the fare table, the same-station window and after it, and
    /// a stale journey closed as incomplete by an entry or an exit.
    #[test]
    fn judges_one_tap() {
        let net = demo_network(Mode::Metro, None);
        let s = stops();
        let t0 = 1_780_000_000_000;
        let o = open(&s[0], t0);
        let with_open = Some((&o, Some(&net)));
        let judge = |tap: TapFacts<'_>, open| judge(&RULES, &net, &tap, open);
        assert_eq!(
            judge(tap(&s[1], Direction::Entry, t0 + MIN), with_open),
            Judgement::decline(TapDecline::PassBack)
        );
        assert_eq!(
            judge(tap(&s[1], Direction::Exit, t0), None),
            Judgement::decline(TapDecline::NoEntry)
        );
        assert_eq!(
            judge(tap(&s[1], Direction::Exit, t0 - 1), with_open),
            Judgement::decline(TapDecline::NoEntry),
            "an exit scanned before the entry"
        );
        let day = net.business_day(t0);
        assert_eq!(
            judge(tap(&s[3], Direction::Exit, t0 + 30 * MIN), with_open),
            Judgement::Exit(Priced {
                fare: net.metro_fare(&s[0], &s[3]).unwrap(),
                close_reason: CloseReason::Exit,
                business_day: day.clone(),
            })
        );
        assert_eq!(
            judge(tap(&s[0], Direction::Exit, t0 + 20 * MIN), with_open),
            Judgement::Exit(Priced {
                fare: net.min_fare(),
                close_reason: CloseReason::SameStation,
                business_day: day.clone(),
            })
        );
        assert_eq!(
            judge(tap(&s[0], Direction::Exit, t0 + 21 * MIN), with_open),
            Judgement::Exit(Priced {
                fare: net.max_fare(),
                close_reason: CloseReason::Exit,
                business_day: day.clone(),
            }),
            "back at the entry station after the window: the maximum fare"
        );
        let stale = Priced {
            fare: net.max_fare(),
            close_reason: CloseReason::Incomplete,
            business_day: day,
        };
        let late = t0 + RULES.incomplete_after_ms + 1;
        assert_eq!(
            judge(tap(&s[2], Direction::Entry, late), with_open),
            Judgement::Enter {
                close_stale: Some(stale.clone())
            }
        );
        assert_eq!(
            judge(tap(&s[2], Direction::Exit, late), with_open),
            Judgement::Decline {
                reason: TapDecline::NoEntry,
                close_stale: Some(stale)
            }
        );
        assert_eq!(
            judge(tap(&s[2], Direction::Entry, t0), None),
            Judgement::Enter { close_stale: None }
        );
    }

    /// Proves a toll exit is priced by the vehicle's class, an exit on another operator's
    /// network is refused, and a class the rates lack is `no_fare`.
    #[test]
    fn judges_toll_exits() {
        let toll = demo_network(Mode::Toll, None);
        let t0 = 1_780_000_000_000;
        let o = OpenFacts {
            operator_id: "toll",
            entry_location_id: "hangzhou-pengbu",
            entry_at_ms: t0,
        };
        let exit = |class| TapFacts {
            operator_id: "toll",
            location_id: "shaoxing",
            direction: Direction::Exit,
            scanned_at_ms: t0 + 40 * MIN,
            vehicle_class: class,
        };
        let j = judge(
            &RULES,
            &toll,
            &exit(Some(VehicleClass::P1)),
            Some((&o, Some(&toll))),
        );
        let expected = toll
            .toll("hangzhou-pengbu", "shaoxing", VehicleClass::P1)
            .unwrap();
        assert!(matches!(j, Judgement::Exit(Priced { fare, .. }) if fare == expected));
        assert_eq!(
            judge(&RULES, &toll, &exit(None), Some((&o, Some(&toll)))),
            Judgement::decline(TapDecline::NoFare)
        );
        let elsewhere = OpenFacts {
            operator_id: "other",
            ..o
        };
        assert_eq!(
            judge(
                &RULES,
                &toll,
                &exit(Some(VehicleClass::P1)),
                Some((&elsewhere, None))
            ),
            Judgement::decline(TapDecline::EntryOnOtherNetwork)
        );
    }

    fn rider_tap(n: u64, location: &str, direction: Direction, at: i64, code: u8) -> RiderTap {
        RiderTap {
            terminal_id: format!("gate-{location}"),
            sequence: n,
            operator_id: "metro".into(),
            location_id: location.into(),
            direction,
            scanned_at_ms: at,
            vehicle_class: None,
            code: [code; 32],
            products: Mode::Metro.product_bit(),
        }
    }

    /// Proves the fold over a rider's day: journeys paired in scan order, a replayed code
    /// declined, a pass-back declined without touching the open journey, the day's charges
    /// capped, and a journey still open at `as_of` closed as incomplete only once it is stale.
    #[test]
    fn folds_a_riders_day() {
        let cap = 1_000;
        let metro = demo_network(Mode::Metro, Some(cap));
        let networks = HashMap::from([("metro".to_string(), &metro)]);
        let s = stops();
        let t0 = 1_780_000_000_000; // 2026-05-28, a morning in Shanghai
        let taps = vec![
            rider_tap(1, &s[0], Direction::Entry, t0, 1),
            rider_tap(2, &s[1], Direction::Entry, t0 + MIN, 2), // pass-back
            rider_tap(3, &s[9], Direction::Exit, t0 + 40 * MIN, 3),
            rider_tap(4, &s[9], Direction::Entry, t0 + 41 * MIN, 3), // same code, other direction
            rider_tap(5, &s[0], Direction::Exit, t0 + 80 * MIN, 4),
            rider_tap(6, &s[2], Direction::Exit, t0 + 81 * MIN, 4), // replay of 5's code
            rider_tap(7, &s[5], Direction::Entry, t0 + 5 * 60 * MIN, 5),
            rider_tap(8, &s[0], Direction::Exit, t0 + 6 * 60 * MIN, 6),
            rider_tap(9, &s[3], Direction::Entry, t0 + 7 * 60 * MIN, 7),
        ];
        let as_of = t0 + 7 * 60 * MIN + RULES.incomplete_after_ms + 1;
        let (decisions, journeys) = journeys(&RULES, &networks, &taps, as_of);
        assert_eq!(
            decisions,
            vec![
                Ok(()),
                Err(TapDecline::PassBack),
                Ok(()),
                Ok(()),
                Ok(()),
                Err(TapDecline::Replay),
                Ok(()),
                Ok(()),
                Ok(()),
            ]
        );
        assert_eq!(journeys.len(), 4);
        let fare = |a: &str, b: &str| metro.metro_fare(a, b).unwrap().to_minor();
        let fares: Vec<i64> = journeys
            .iter()
            .map(|j| j.priced.as_ref().unwrap().fare.to_minor())
            .collect();
        assert_eq!(
            fares,
            vec![
                fare(&s[0], &s[9]),
                fare(&s[9], &s[0]),
                fare(&s[5], &s[0]),
                metro.max_fare().to_minor()
            ]
        );
        assert_eq!(
            journeys[3].priced.as_ref().unwrap().close_reason,
            CloseReason::Incomplete
        );
        assert_eq!(journeys[3].exit, None);
        let charged: i64 = journeys.iter().map(|j| j.charge.unwrap().to_minor()).sum();
        assert_eq!(
            charged,
            fares.iter().sum::<i64>().min(cap),
            "one business day, capped"
        );
        // A moment before it is stale, the last journey is still open.
        let (_, early) = super::journeys(&RULES, &networks, &taps, as_of - 1);
        assert_eq!(early[3].priced, None);
    }

    fn fact(n: u64, location: &str, direction: Direction, at: i64) -> Fact {
        Fact {
            terminal_id: format!("gate-{location}"),
            sequence: n,
            operator_id: "metro".into(),
            location_id: location.into(),
            direction,
            scanned_at_ms: at,
            vehicle_class: None,
        }
    }

    /// Proves the live rules' decisions: a pass-back entry is refused and changes nothing, while
    /// an exit without entry — and one after the journey timed out — is let through and stands
    /// as a journey of its own at the policy's price; the refused taps are in no journey.
    #[test]
    fn a_live_exit_without_entry_is_let_through() {
        let metro = demo_network(Mode::Metro, None);
        let networks = HashMap::from([("metro".to_string(), &metro)]);
        let s = stops();
        let t0 = 1_780_000_000_000;
        let taps = vec![
            rider_tap(1, &s[3], Direction::Exit, t0, 1), // no entry
            rider_tap(2, &s[0], Direction::Entry, t0 + MIN, 2),
            rider_tap(3, &s[1], Direction::Entry, t0 + 2 * MIN, 3), // pass-back
            rider_tap(4, &s[9], Direction::Exit, t0 + 40 * MIN, 4),
            rider_tap(5, &s[5], Direction::Entry, t0 + 60 * MIN, 5),
            rider_tap(6, &s[6], Direction::Exit, t0 + 6 * 60 * MIN, 6), // after the timeout
        ];
        let (decisions, journeys) = journeys(&RULES, &networks, &taps, t0 + 7 * 60 * MIN);
        assert_eq!(
            decisions,
            vec![
                Ok(()),
                Ok(()),
                Err(TapDecline::PassBack),
                Ok(()),
                Ok(()),
                Ok(())
            ]
        );
        let shape: Vec<_> = journeys
            .iter()
            .map(|j| {
                let priced = j.priced.clone().unwrap();
                (
                    j.entry.as_ref().map(|e| e.1),
                    j.exit.as_ref().map(|e| e.1),
                    priced.fare,
                    priced.close_reason,
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (None, Some(1), metro.max_fare(), CloseReason::Incomplete),
                (
                    Some(2),
                    Some(4),
                    metro.metro_fare(&s[0], &s[9]).unwrap(),
                    CloseReason::Exit
                ),
                (Some(5), None, metro.max_fare(), CloseReason::Incomplete),
                (None, Some(6), metro.max_fare(), CloseReason::Incomplete),
            ]
        );
    }

    /// Proves what only facts can show: an exit the rider made before their entry reached the
    /// gateway pairs with it wherever it sits in the list's arrival, an entry during an open
    /// journey closes that one as incomplete instead of being refused, an exit with no entry is
    /// a journey of its own at the policy's price (and a later-found entry pairs it instead),
    /// and `day_totals` carries the cap over from journeys outside the facts.
    #[test]
    fn pairs_facts_a_live_gate_would_have_refused() {
        let metro = demo_network(Mode::Metro, Some(1_000));
        let networks = HashMap::from([("metro".to_string(), &metro)]);
        let s = stops();
        let t0 = 1_780_000_000_000;
        let fare = |a: &str, b: &str| metro.metro_fare(a, b).unwrap();
        let mut facts = vec![
            fact(1, &s[2], Direction::Exit, t0 + 30 * MIN),
            fact(2, &s[0], Direction::Entry, t0),
            fact(3, &s[4], Direction::Entry, t0 + 60 * MIN),
            fact(4, &s[6], Direction::Entry, t0 + 90 * MIN),
            fact(5, &s[7], Direction::Exit, t0 + 120 * MIN),
            fact(6, &s[8], Direction::Exit, t0 + 130 * MIN),
        ];
        facts.sort_by(Fact::scan_order);
        let paired = pair(&RULES, &networks, &facts, t0 + 140 * MIN, HashMap::new());
        let summary: Vec<_> = paired
            .iter()
            .map(|p| {
                let priced = p.priced.clone().unwrap();
                (
                    p.entry.map(|i| facts[i].sequence),
                    p.exit.map(|i| facts[i].sequence),
                    priced.fare,
                    priced.close_reason,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some(2), Some(1), fare(&s[0], &s[2]), CloseReason::Exit),
                (Some(3), None, metro.max_fare(), CloseReason::Incomplete),
                (Some(4), Some(5), fare(&s[6], &s[7]), CloseReason::Exit),
                (None, Some(6), metro.max_fare(), CloseReason::Incomplete),
            ]
        );
        let charged: i64 = paired.iter().map(|p| p.charge.unwrap().to_minor()).sum();
        let fares: i64 = summary.iter().map(|s| s.2.to_minor()).sum();
        assert_eq!(charged, fares.min(1_000));
        // 900 of the day's fares were on journeys outside these facts: 100 is left to pay.
        let day = metro.business_day(t0);
        let carried = HashMap::from([(("metro".to_string(), day), 900)]);
        let capped = pair(&RULES, &networks, &facts, t0 + 140 * MIN, carried);
        let charged: i64 = capped.iter().map(|p| p.charge.unwrap().to_minor()).sum();
        assert_eq!(charged, 100);
    }
}
