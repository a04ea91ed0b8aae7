//! A reader for the fare part of a GTFS feed (GTFS Fares v2) and the pricing it describes: one
//! leg through `fare_leg_rules.txt`, a multi-leg journey through `fare_transfer_rules.txt`.
//!
//! No Rust crate reads Fares v2, and Turnpike needs only its pricing core, so this is a small
//! reader of exactly the files below; `docs/fares.md` lists what is and is not supported.
//!
//! | file | presence | columns read |
//! | --- | --- | --- |
//! | `stops.txt` | required | `stop_id`, `stop_name`, `location_type`, `parent_station` |
//! | `fare_products.txt` | required | `fare_product_id`, `amount`, `currency` (one row per product) |
//! | `fare_leg_rules.txt` | required | `leg_group_id`, `network_id`, `from_area_id`, `to_area_id`, `fare_product_id`, `rule_priority`; `from_timeframe_group_id` / `to_timeframe_group_id` refused when set |
//! | `areas.txt` | optional | `area_id`, `area_name` |
//! | `stop_areas.txt` | optional | `area_id`, `stop_id` |
//! | `networks.txt` | optional | `network_id` (when present, rules may only name these networks) |
//! | `fare_transfer_rules.txt` | optional | all columns |
//! | `fare_leg_join_rules.txt` | refused when it has rows (effective fare legs are not supported) |
//!
//! Every other file of a feed (routes, trips, timetables, Fares v1) is ignored.
//!
//! # Leg matching (fare_leg_rules.txt)
//! A leg is (network, departure stop, arrival stop). A stop's areas are its own rows in
//! `stop_areas.txt`, or, if it has none, those of its `parent_station` (the spec: a station's
//! areas cover its platforms unless a platform is assigned itself). A stop may be in several areas.
//!
//! Without a `rule_priority` column (the spec's "empty semantics"), each of `network_id`,
//! `from_area_id`, `to_area_id` is matched on its own: if the leg's value (any of the stop's areas)
//! appears anywhere in that column, only rules naming it match; otherwise only rules leaving the
//! field empty match. So an exact area always beats an empty one, and an empty one means "any
//! value not listed elsewhere in the column".
//!
//! With a `rule_priority` column, an empty field matches anything, and among matching rules only
//! those with the highest priority (empty = 0) are kept.
//!
//! If several rules still match (a stop in two listed areas, or two products for one key), the
//! cheapest product is charged, earliest line first on a tie: the feed says the rider may travel
//! on any of them, and a post-pay gateway should not pick the dearer one.
//!
//! # Transfers (fare_transfer_rules.txt)
//! See [`GtfsFeed::price_legs`].

use std::collections::{HashMap, HashSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use turnpike_wire::money::{Currency, Money};

use crate::error::{FareError, LoadError, LoadReason};
use crate::metro::{MetroFares, Stop, NO_FARE};
use crate::table::{self, CsvTable, Row};

/// Most stops of one network that [`GtfsFeed::metro_fares`] prices pairwise: it prices every
/// pair at load, 8 bytes each, so 8,000 stops hold 512 MB while in force. A bigger network is
/// refused with this limit's name instead of an allocation the gateway cannot survive.
pub const PAIRWISE_STOPS_MAX: usize = 8_000;

const STOPS: &str = "stops.txt";
const AREAS: &str = "areas.txt";
const STOP_AREAS: &str = "stop_areas.txt";
const NETWORKS: &str = "networks.txt";
const FARE_PRODUCTS: &str = "fare_products.txt";
const FARE_LEG_RULES: &str = "fare_leg_rules.txt";
const FARE_TRANSFER_RULES: &str = "fare_transfer_rules.txt";
const FARE_LEG_JOIN_RULES: &str = "fare_leg_join_rules.txt";

/// Every file name this reader looks at; [`GtfsFeed::from_files`] ignores any other.
pub const GTFS_FARE_FILES: [&str; 8] = [
    STOPS,
    AREAS,
    STOP_AREAS,
    NETWORKS,
    FARE_PRODUCTS,
    FARE_LEG_RULES,
    FARE_TRANSFER_RULES,
    FARE_LEG_JOIN_RULES,
];

/// One ride between two fare validations (tap in, tap out) on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub from_stop: String,
    pub to_stop: String,
    /// When the rider validated at departure, in seconds on any clock shared by all legs of the
    /// journey (Unix seconds in the gateway).
    pub start_s: i64,
    /// When the rider validated at arrival, same clock.
    pub end_s: i64,
    pub network_id: String,
}

/// The fare part of a GTFS feed, loaded and cross-checked.
#[derive(Debug, Clone)]
pub struct GtfsFeed {
    currency: Currency,
    stops: Vec<GtfsStop>,
    stop_index: HashMap<String, usize>,
    /// Effective areas of each stop (own rows, else the parent station's), by area index.
    stop_areas: Vec<Vec<usize>>,
    network_index: HashMap<String, usize>,
    leg_rules: Vec<LegRule>,
    leg_rule_index: HashMap<RuleKey, Vec<usize>>,
    /// Whether `fare_leg_rules.txt` has a `rule_priority` column, which switches the matching
    /// semantics of empty fields (see the module documentation).
    priority_mode: bool,
    listed_networks: HashSet<usize>,
    listed_from_areas: HashSet<usize>,
    listed_to_areas: HashSet<usize>,
    transfer_rules: Vec<TransferRule>,
    listed_from_groups: HashSet<String>,
    listed_to_groups: HashSet<String>,
}

#[derive(Debug, Clone)]
struct GtfsStop {
    id: String,
    name: String,
    location_type: u8,
}

/// (network, from area, to area), interned; `None` is an empty field.
type RuleKey = (Option<usize>, Option<usize>, Option<usize>);

#[derive(Debug, Clone)]
struct LegRule {
    line: u64,
    leg_group: Option<String>,
    /// The amount of the rule's fare product, resolved at load.
    amount: Money,
    priority: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DurationLimitType {
    /// Departure of the first leg to arrival of the last.
    DepartureToArrival,
    /// Departure of the first leg to departure of the last.
    DepartureToDeparture,
    /// Arrival of the first leg to departure of the last.
    ArrivalToDeparture,
    /// Arrival of the first leg to arrival of the last.
    ArrivalToArrival,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FareTransferType {
    /// 0: from-leg fare + transfer product (A + AB); the to-leg is not charged.
    FromLegPlusTransfer,
    /// 1: from-leg + transfer product + to-leg (A + AB + B).
    FromLegPlusTransferPlusToLeg,
    /// 2: transfer product only (AB) on the first transfer of a sub-journey.
    TransferOnly,
}

#[derive(Debug, Clone)]
struct TransferRule {
    line: u64,
    from_group: Option<String>,
    to_group: Option<String>,
    /// `None`: no limit (`-1`, or not applicable because the groups differ).
    transfer_count: Option<u32>,
    duration_limit: Option<(i64, DurationLimitType)>,
    kind: FareTransferType,
    /// Cost of the transfer itself; zero when the rule has no product.
    amount: Decimal,
}

impl GtfsFeed {
    /// Reads the fare files from their text, as `(file name, contents)`: data embedded in the
    /// binary, an admin upload, or files a caller (a test) read from disk — this crate does no
    /// I/O. Names are GTFS file names (`stops.txt`, ...) and errors name the file; files this
    /// reader does not use are ignored.
    pub fn from_files(files: &[(&str, &str)]) -> Result<Self, LoadError> {
        let mut by_name: HashMap<&str, &str> = HashMap::new();
        for &(name, text) in files {
            if by_name.insert(name, text).is_some() {
                return Err(LoadError::whole(
                    name,
                    LoadReason::Invalid("the file was given twice".to_string()),
                ));
            }
        }
        let required = |name: &'static str| -> Result<&str, LoadError> {
            by_name
                .get(name)
                .copied()
                .ok_or_else(|| LoadError::whole(name, LoadReason::MissingFile))
        };

        if let Some(text) = by_name.get(FARE_LEG_JOIN_RULES) {
            reject_join_rules(text)?;
        }

        let (stops, stop_index, parents) = read_stops(required(STOPS)?)?;
        let area_index = match by_name.get(AREAS) {
            Some(text) => read_areas(text)?,
            None => HashMap::new(),
        };
        let own_areas = match by_name.get(STOP_AREAS) {
            Some(text) => read_stop_areas(text, &stop_index, &area_index, stops.len())?,
            None => vec![Vec::new(); stops.len()],
        };
        let stop_areas = own_areas
            .iter()
            .zip(&parents)
            .map(|(own, parent)| match parent {
                Some(p) if own.is_empty() => own_areas[*p].clone(),
                _ => own.clone(),
            })
            .collect();
        let known_networks = match by_name.get(NETWORKS) {
            Some(text) => Some(read_networks(text)?),
            None => None,
        };
        let (currency, products) = read_products(required(FARE_PRODUCTS)?)?;

        let mut feed = GtfsFeed {
            currency,
            stops,
            stop_index,
            stop_areas,
            network_index: HashMap::new(),
            leg_rules: Vec::new(),
            leg_rule_index: HashMap::new(),
            priority_mode: false,
            listed_networks: HashSet::new(),
            listed_from_areas: HashSet::new(),
            listed_to_areas: HashSet::new(),
            transfer_rules: Vec::new(),
            listed_from_groups: HashSet::new(),
            listed_to_groups: HashSet::new(),
        };
        feed.read_leg_rules(
            required(FARE_LEG_RULES)?,
            &area_index,
            known_networks.as_ref(),
            &products,
        )?;
        if let Some(text) = by_name.get(FARE_TRANSFER_RULES) {
            feed.read_transfer_rules(text, &products)?;
        }
        Ok(feed)
    }

    /// The one currency of every fare product in the feed.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The fare of one leg on `network_id`, by `fare_leg_rules.txt` alone (no transfers).
    pub fn price(
        &self,
        network_id: &str,
        from_stop: &str,
        to_stop: &str,
    ) -> Result<Money, FareError> {
        let from = self.stop(from_stop)?;
        let to = self.stop(to_stop)?;
        self.match_leg(network_id, from, to)
            .map(|rule| rule.amount)
            .ok_or_else(|| FareError::NoFareRule {
                from_stop: from_stop.to_string(),
                to_stop: to_stop.to_string(),
            })
    }

    /// The fare of one leg, ignoring its times.
    pub fn price_leg(&self, leg: &Leg) -> Result<Money, FareError> {
        self.price(&leg.network_id, &leg.from_stop, &leg.to_stop)
    }

    /// The fare of a journey of consecutive legs, applying `fare_transfer_rules.txt`.
    ///
    /// Legs must be in travel order (each starts no earlier than the previous one) and each must
    /// end no earlier than it starts. Each leg is matched to its leg rule, which gives its fare and
    /// its `leg_group_id`. Then, walking the journey, each transfer between two consecutive legs
    /// is matched against the transfer rules by (from leg group, to leg group), with the same
    /// "exact beats empty" semantics as leg rules; a leg without a leg group never transfers. A
    /// candidate rule applies only if
    /// - its `transfer_count` (when set) is at least the number of consecutive transfers between
    ///   the same two leg groups, this one included, and
    /// - its `duration_limit` (when set) is not exceeded, measured per `duration_limit_type` from
    ///   the first leg of that run of consecutive same-group transfers to the current leg
    ///   (a transfer exactly at the limit is still within it).
    ///
    /// Among applicable rules, the spec's smallest sufficient `transfer_count` is kept (`-1` is
    /// the largest), then the one giving the lowest price, then the earliest line. Costs follow
    /// the spec's table, with S the running cost of the sub-journey: type 0 `S + AB`, type 1
    /// `S + AB + B`, type 2 `AB` on the sub-journey's first transfer and `S + AB` after. With no
    /// applicable rule the legs are separate: the sub-journey closes and the next leg starts a new
    /// one at its own fare.
    ///
    /// A transfer product may be negative (a discount); the journey total is never below zero.
    pub fn price_legs(&self, legs: &[Leg]) -> Result<Money, FareError> {
        if legs.is_empty() {
            return Err(FareError::EmptyJourney);
        }
        let mut priced = Vec::with_capacity(legs.len());
        for (index, leg) in legs.iter().enumerate() {
            if leg.end_s < leg.start_s {
                return Err(FareError::InvalidLeg {
                    index,
                    reason: format!("ends ({}) before it starts ({})", leg.end_s, leg.start_s),
                });
            }
            if index > 0 && leg.start_s < legs[index - 1].start_s {
                return Err(FareError::InvalidLeg {
                    index,
                    reason: "starts before the previous leg; legs must be in travel order"
                        .to_string(),
                });
            }
            let from = self.stop(&leg.from_stop)?;
            let to = self.stop(&leg.to_stop)?;
            let rule =
                self.match_leg(&leg.network_id, from, to)
                    .ok_or_else(|| FareError::NoFareRule {
                        from_stop: leg.from_stop.clone(),
                        to_stop: leg.to_stop.clone(),
                    })?;
            priced.push((rule.leg_group.as_deref(), rule.amount.amount()));
        }

        let mut total = Decimal::ZERO;
        let mut sub_total = priced[0].1;
        let mut sub_transfers = 0u32;
        // The run of consecutive transfers between the same two leg groups: (groups, first leg, count).
        let mut run: Option<((&str, &str), usize, u32)> = None;
        for i in 1..legs.len() {
            let chosen = match (priced[i - 1].0, priced[i].0) {
                (Some(from_group), Some(to_group)) => {
                    let groups = (from_group, to_group);
                    let (run_start, count) = match run {
                        Some((g, start, n)) if g == groups => (start, n.saturating_add(1)),
                        _ => (i - 1, 1),
                    };
                    self.choose_transfer(
                        groups,
                        count,
                        &legs[run_start],
                        &legs[i],
                        sub_total,
                        sub_transfers,
                        priced[i].1,
                    )
                    .map(|cost| (cost, (groups, run_start, count)))
                }
                _ => None,
            };
            match chosen {
                Some((cost, new_run)) => {
                    sub_total = cost;
                    sub_transfers = sub_transfers.saturating_add(1);
                    run = Some(new_run);
                }
                None => {
                    total = total.checked_add(sub_total).ok_or(FareError::Overflow)?;
                    sub_total = priced[i].1;
                    sub_transfers = 0;
                    run = None;
                }
            }
        }
        total = total.checked_add(sub_total).ok_or(FareError::Overflow)?;
        let total = total.max(Decimal::ZERO);
        // Sums of amounts in the currency's precision keep that precision.
        crate::money::exact(total, self.currency).map_err(|_| FareError::Overflow)
    }

    /// The price of the sub-journey after this transfer, under the best applicable rule, or `None`
    /// when no rule applies.
    #[allow(clippy::too_many_arguments)]
    fn choose_transfer(
        &self,
        (from_group, to_group): (&str, &str),
        count: u32,
        run_first_leg: &Leg,
        to_leg: &Leg,
        sub_total: Decimal,
        sub_transfers: u32,
        to_leg_fare: Decimal,
    ) -> Option<Decimal> {
        let from_key = self
            .listed_from_groups
            .contains(from_group)
            .then_some(from_group);
        let to_key = self.listed_to_groups.contains(to_group).then_some(to_group);
        let applicable: Vec<&TransferRule> = self
            .transfer_rules
            .iter()
            .filter(|r| r.from_group.as_deref() == from_key && r.to_group.as_deref() == to_key)
            .filter(|r| r.transfer_count.is_none_or(|limit| count <= limit))
            .filter(|r| match r.duration_limit {
                None => true,
                Some((limit_s, kind)) => {
                    let start_s = match kind {
                        DurationLimitType::DepartureToArrival
                        | DurationLimitType::DepartureToDeparture => run_first_leg.start_s,
                        DurationLimitType::ArrivalToDeparture
                        | DurationLimitType::ArrivalToArrival => run_first_leg.end_s,
                    };
                    let end_s = match kind {
                        DurationLimitType::DepartureToArrival
                        | DurationLimitType::ArrivalToArrival => to_leg.end_s,
                        DurationLimitType::DepartureToDeparture
                        | DurationLimitType::ArrivalToDeparture => to_leg.start_s,
                    };
                    end_s
                        .checked_sub(start_s)
                        .is_some_and(|elapsed_s| elapsed_s <= limit_s)
                }
            })
            .collect();
        // The spec: the smallest transfer_count that still covers this transfer; -1 is unlimited.
        let smallest = applicable
            .iter()
            .map(|r| r.transfer_count.unwrap_or(u32::MAX))
            .min()?;
        applicable
            .into_iter()
            .filter(|r| r.transfer_count.unwrap_or(u32::MAX) == smallest)
            .filter_map(|r| {
                let cost = match r.kind {
                    FareTransferType::FromLegPlusTransfer => sub_total.checked_add(r.amount),
                    FareTransferType::FromLegPlusTransferPlusToLeg => sub_total
                        .checked_add(r.amount)
                        .and_then(|c| c.checked_add(to_leg_fare)),
                    FareTransferType::TransferOnly if sub_transfers == 0 => Some(r.amount),
                    FareTransferType::TransferOnly => sub_total.checked_add(r.amount),
                };
                cost.map(|c| (c, r.line))
            })
            .min()
            .map(|(cost, _)| cost)
    }

    /// The fare table of one network, for the gates of that network: every stop (not entrances or
    /// station-internal nodes) that has at least one priced journey on `network_id`, and the fare
    /// of every pair of them.
    pub fn metro_fares(&self, network_id: &str) -> Result<MetroFares, LoadError> {
        // A city feed has thousands of bus stops and a metro network a few hundred stations, so
        // first keep only the stops some rule of this network can match as departure or arrival
        // (a rule is found under (network, from, to) keys, so a stop none of whose keys appear
        // with the network cannot match), then price only those pairs.
        let network = self.network_index.get(network_id).copied();
        let networks = self.keys(network.into_iter(), &self.listed_networks);
        let with_from: HashSet<(Option<usize>, Option<usize>)> = self
            .leg_rule_index
            .keys()
            .map(|&(n, f, _)| (n, f))
            .collect();
        let with_to: HashSet<(Option<usize>, Option<usize>)> = self
            .leg_rule_index
            .keys()
            .map(|&(n, _, t)| (n, t))
            .collect();
        let reachable = |stop: usize, listed: &HashSet<usize>, pairs: &HashSet<_>| {
            let areas = self.keys(self.stop_areas[stop].iter().copied(), listed);
            networks
                .iter()
                .any(|&n| areas.iter().any(|&a| pairs.contains(&(n, a))))
        };
        let mut candidates = Vec::new();
        let mut can_start = Vec::new();
        let mut can_end = Vec::new();
        for stop in 0..self.stops.len() {
            if self.stops[stop].location_type > 1 {
                continue; // entrances, station nodes, boarding areas
            }
            let start = reachable(stop, &self.listed_from_areas, &with_from);
            let end = reachable(stop, &self.listed_to_areas, &with_to);
            if start || end {
                candidates.push(stop);
                can_start.push(start);
                can_end.push(end);
            }
        }
        let n = candidates.len();
        if n > PAIRWISE_STOPS_MAX {
            // Every pair is priced at load (n² of them): refused with the limit's name rather
            // than an allocation the process cannot survive.
            return Err(LoadError::whole(
                FARE_LEG_RULES,
                LoadReason::Invalid(format!(
                    "network {network_id:?} has {n} stops that can start or end a leg; \
                     at most {PAIRWISE_STOPS_MAX} (PAIRWISE_STOPS_MAX) are priced pairwise"
                )),
            ));
        }
        let mut dense: Vec<i64> = Vec::with_capacity(n * n);
        for (a, &from) in candidates.iter().enumerate() {
            for (b, &to) in candidates.iter().enumerate() {
                dense.push(if can_start[a] && can_end[b] {
                    self.match_leg(network_id, from, to)
                        .map_or(NO_FARE, |rule| rule.amount.to_minor())
                } else {
                    NO_FARE
                });
            }
        }
        let priced = |a: usize, b: usize| dense[a * n + b] != NO_FARE;
        let members: Vec<usize> = (0..n)
            .filter(|&a| (0..n).any(|b| priced(a, b) || priced(b, a)))
            .collect();
        let m = members.len();
        let fares = if m == n {
            dense
        } else {
            let mut fares = Vec::with_capacity(m * m);
            for &a in &members {
                for &b in &members {
                    fares.push(dense[a * n + b]);
                }
            }
            fares
        };
        let stops = members
            .iter()
            .map(|&i| {
                let stop = &self.stops[candidates[i]];
                Stop {
                    id: stop.id.clone(),
                    name: stop.name.clone(),
                }
            })
            .collect();
        MetroFares::from_dense(self.currency, stops, fares).ok_or_else(|| {
            LoadError::whole(
                FARE_LEG_RULES,
                LoadReason::Invalid(format!(
                    "no rule prices a journey on network {network_id:?}"
                )),
            )
        })
    }

    fn stop(&self, stop_id: &str) -> Result<usize, FareError> {
        self.stop_index
            .get(stop_id)
            .copied()
            .ok_or_else(|| FareError::UnknownStop {
                stop_id: stop_id.to_string(),
            })
    }

    /// The leg rule that prices a leg, per the matching semantics in the module documentation.
    fn match_leg(&self, network_id: &str, from: usize, to: usize) -> Option<&LegRule> {
        let network = self.network_index.get(network_id).copied();
        let networks = self.keys(network.into_iter(), &self.listed_networks);
        let froms = self.keys(
            self.stop_areas[from].iter().copied(),
            &self.listed_from_areas,
        );
        let tos = self.keys(self.stop_areas[to].iter().copied(), &self.listed_to_areas);
        let mut best: Option<&LegRule> = None;
        for &n in &networks {
            for &f in &froms {
                for &t in &tos {
                    let Some(ids) = self.leg_rule_index.get(&(n, f, t)) else {
                        continue;
                    };
                    for rule in ids.iter().map(|&i| &self.leg_rules[i]) {
                        if best.is_none_or(|b| self.better_leg_rule(rule, b)) {
                            best = Some(rule);
                        }
                    }
                }
            }
        }
        best
    }

    /// The keys under which rules may match a leg whose field takes `values`.
    fn keys(
        &self,
        values: impl Iterator<Item = usize>,
        listed: &HashSet<usize>,
    ) -> Vec<Option<usize>> {
        if self.priority_mode {
            // Empty matches anything; the priority decides between rules.
            values.map(Some).chain([None]).collect()
        } else {
            // Empty means "every value not listed in this column".
            let exact: Vec<Option<usize>> =
                values.filter(|v| listed.contains(v)).map(Some).collect();
            if exact.is_empty() {
                vec![None]
            } else {
                exact
            }
        }
    }

    fn better_leg_rule(&self, a: &LegRule, b: &LegRule) -> bool {
        if self.priority_mode && a.priority != b.priority {
            return a.priority > b.priority;
        }
        (a.amount.amount(), a.line) < (b.amount.amount(), b.line)
    }

    fn read_leg_rules(
        &mut self,
        text: &str,
        area_index: &HashMap<String, usize>,
        known_networks: Option<&HashSet<String>>,
        products: &HashMap<String, Money>,
    ) -> Result<(), LoadError> {
        let table = CsvTable::open(FARE_LEG_RULES, text, &["fare_product_id"])?;
        self.priority_mode = table.has_column("rule_priority");
        // The spec's primary key, without the (refused) timeframes.
        let mut first_line: HashMap<(RuleKey, String), u64> = HashMap::new();
        for item in table.rows::<LegRuleRow>() {
            let (row, record) = item?;
            for (column, value) in [
                ("from_timeframe_group_id", &record.from_timeframe_group_id),
                ("to_timeframe_group_id", &record.to_timeframe_group_id),
            ] {
                if table::optional(value).is_some() {
                    return Err(row.err(LoadReason::Unsupported(format!(
                        "`{column}` (time-dependent fares; timeframes.txt is not read)"
                    ))));
                }
            }
            let network = match table::optional(&record.network_id) {
                None => None,
                Some(id) => {
                    if known_networks.is_some_and(|known| !known.contains(id)) {
                        return Err(unknown(&row, "network_id", id, NETWORKS));
                    }
                    let next = self.network_index.len();
                    Some(*self.network_index.entry(id.to_string()).or_insert(next))
                }
            };
            let area = |column: &str, value: &Option<String>| -> Result<Option<usize>, LoadError> {
                match table::optional(value) {
                    None => Ok(None),
                    Some(id) => area_index
                        .get(id)
                        .copied()
                        .map(Some)
                        .ok_or_else(|| unknown(&row, column, id, AREAS)),
                }
            };
            let from_area = area("from_area_id", &record.from_area_id)?;
            let to_area = area("to_area_id", &record.to_area_id)?;
            let product_id = row.required("fare_product_id", &record.fare_product_id)?;
            let Some(amount) = products.get(product_id) else {
                return Err(unknown(&row, "fare_product_id", product_id, FARE_PRODUCTS));
            };
            if amount.amount() < Decimal::ZERO {
                return Err(row.invalid(
                    "fare_product_id",
                    product_id,
                    "a leg's fare product cannot have a negative amount (only transfer products may)",
                ));
            }
            let priority = match table::optional(&record.rule_priority) {
                None => 0,
                Some(text) => {
                    row.integer("rule_priority", text, "expected a non-negative integer")?
                }
            };
            let key = (network, from_area, to_area);
            if let Some(&first) = first_line.get(&(key, product_id.to_string())) {
                return Err(row.err(LoadReason::Duplicate {
                    what: "rule (network_id, from_area_id, to_area_id, fare_product_id)"
                        .to_string(),
                    id: [
                        table::optional(&record.network_id),
                        table::optional(&record.from_area_id),
                        table::optional(&record.to_area_id),
                        Some(product_id),
                    ]
                    .map(|v| v.unwrap_or(""))
                    .join(","),
                    first_line: first,
                }));
            }
            first_line.insert((key, product_id.to_string()), row.line);

            if let Some(n) = network {
                self.listed_networks.insert(n);
            }
            if let Some(a) = from_area {
                self.listed_from_areas.insert(a);
            }
            if let Some(a) = to_area {
                self.listed_to_areas.insert(a);
            }
            self.leg_rule_index
                .entry(key)
                .or_default()
                .push(self.leg_rules.len());
            self.leg_rules.push(LegRule {
                line: row.line,
                leg_group: table::optional(&record.leg_group_id).map(str::to_string),
                amount: *amount,
                priority,
            });
        }
        Ok(())
    }

    fn read_transfer_rules(
        &mut self,
        text: &str,
        products: &HashMap<String, Money>,
    ) -> Result<(), LoadError> {
        let table = CsvTable::open(FARE_TRANSFER_RULES, text, &["fare_transfer_type"])?;
        let groups: HashSet<&str> = self
            .leg_rules
            .iter()
            .filter_map(|r| r.leg_group.as_deref())
            .collect();
        let mut rules = Vec::new();
        let mut first_line: HashMap<String, u64> = HashMap::new();
        for item in table.rows::<TransferRuleRow>() {
            let (row, record) = item?;
            let group = |column: &str,
                         value: &Option<String>|
             -> Result<Option<String>, LoadError> {
                match table::optional(value) {
                    None => Ok(None),
                    Some(id) if groups.contains(id) => Ok(Some(id.to_string())),
                    Some(id) => Err(unknown(&row, column, id, "fare_leg_rules.txt leg_group_id")),
                }
            };
            let from_group = group("from_leg_group_id", &record.from_leg_group_id)?;
            let to_group = group("to_leg_group_id", &record.to_leg_group_id)?;

            // The spec: required when the two groups are equal, forbidden when they differ. Two
            // empty groups are "equal" only vacuously, so there the count is optional.
            enum Count {
                Required,
                Optional,
                Forbidden,
            }
            let presence = match (&from_group, &to_group) {
                (None, None) => Count::Optional,
                (Some(a), Some(b)) if a == b => Count::Required,
                _ => Count::Forbidden,
            };
            let transfer_count = match (table::optional(&record.transfer_count), presence) {
                (None, Count::Required) => {
                    return Err(row.err(LoadReason::MissingValue {
                        column: "transfer_count (required when from_leg_group_id equals to_leg_group_id)"
                            .to_string(),
                    }));
                }
                (None, _) => None,
                (Some(text), Count::Forbidden) => {
                    return Err(row.invalid(
                        "transfer_count",
                        text,
                        "forbidden unless from_leg_group_id equals to_leg_group_id",
                    ));
                }
                (Some(text), _) => {
                    let expected = "expected -1 (no limit) or a positive integer";
                    match row.integer::<i64>("transfer_count", text, expected)? {
                        -1 => None,
                        n if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
                        _ => return Err(row.invalid("transfer_count", text, expected)),
                    }
                }
            };

            let duration_limit = match (
                table::optional(&record.duration_limit),
                table::optional(&record.duration_limit_type),
            ) {
                (None, None) => None,
                (Some(_), None) => {
                    return Err(row.err(LoadReason::MissingValue {
                        column: "duration_limit_type (required when duration_limit is set)"
                            .to_string(),
                    }));
                }
                (None, Some(text)) => {
                    return Err(row.invalid(
                        "duration_limit_type",
                        text,
                        "forbidden when duration_limit is empty",
                    ));
                }
                (Some(limit), Some(kind)) => {
                    let expected = "expected a positive number of seconds";
                    let limit_s: i64 = row.integer("duration_limit", limit, expected)?;
                    if limit_s <= 0 {
                        return Err(row.invalid("duration_limit", limit, expected));
                    }
                    let kind = match kind {
                        "0" => DurationLimitType::DepartureToArrival,
                        "1" => DurationLimitType::DepartureToDeparture,
                        "2" => DurationLimitType::ArrivalToDeparture,
                        "3" => DurationLimitType::ArrivalToArrival,
                        other => {
                            return Err(row.invalid(
                                "duration_limit_type",
                                other,
                                "expected 0, 1, 2 or 3",
                            ))
                        }
                    };
                    Some((limit_s, kind))
                }
            };

            let kind_text = row.required("fare_transfer_type", &record.fare_transfer_type)?;
            let kind = match kind_text {
                "0" => FareTransferType::FromLegPlusTransfer,
                "1" => FareTransferType::FromLegPlusTransferPlusToLeg,
                "2" => FareTransferType::TransferOnly,
                other => {
                    return Err(row.invalid("fare_transfer_type", other, "expected 0, 1 or 2"))
                }
            };
            let amount = match table::optional(&record.fare_product_id) {
                None => Decimal::ZERO,
                Some(id) => match products.get(id) {
                    Some(amount) => amount.amount(),
                    None => return Err(unknown(&row, "fare_product_id", id, FARE_PRODUCTS)),
                },
            };

            // The spec's primary key.
            let key = [
                &record.from_leg_group_id,
                &record.to_leg_group_id,
                &record.fare_product_id,
                &record.transfer_count,
                &record.duration_limit,
            ]
            .map(|v| table::optional(v).unwrap_or(""))
            .join(",");
            if let Some(&first) = first_line.get(&key) {
                return Err(row.err(LoadReason::Duplicate {
                    what: "rule (from_leg_group_id, to_leg_group_id, fare_product_id, transfer_count, duration_limit)".to_string(),
                    id: key,
                    first_line: first,
                }));
            }
            first_line.insert(key, row.line);

            rules.push(TransferRule {
                line: row.line,
                from_group,
                to_group,
                transfer_count,
                duration_limit,
                kind,
                amount,
            });
        }
        for rule in &rules {
            if let Some(g) = &rule.from_group {
                self.listed_from_groups.insert(g.clone());
            }
            if let Some(g) = &rule.to_group {
                self.listed_to_groups.insert(g.clone());
            }
        }
        self.transfer_rules = rules;
        Ok(())
    }
}

fn unknown(row: &Row<'_>, column: &str, id: &str, defined_in: &str) -> LoadError {
    row.err(LoadReason::UnknownReference {
        column: column.to_string(),
        id: id.to_string(),
        defined_in: defined_in.to_string(),
    })
}

#[derive(Deserialize)]
struct StopRow {
    stop_id: Option<String>,
    stop_name: Option<String>,
    location_type: Option<String>,
    parent_station: Option<String>,
}

type StopsRead = (Vec<GtfsStop>, HashMap<String, usize>, Vec<Option<usize>>);

fn read_stops(text: &str) -> Result<StopsRead, LoadError> {
    let table = CsvTable::open(STOPS, text, &["stop_id"])?;
    let mut stops = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut lines = Vec::new();
    let mut parent_ids = Vec::new();
    for item in table.rows::<StopRow>() {
        let (row, record) = item?;
        let id = row.required("stop_id", &record.stop_id)?;
        if let Some(&first) = index.get(id) {
            return Err(row.err(LoadReason::Duplicate {
                what: "stop_id".to_string(),
                id: id.to_string(),
                first_line: lines[first],
            }));
        }
        let location_type = match table::optional(&record.location_type) {
            None => 0,
            Some(text) => match text.parse::<u8>() {
                Ok(t) if t <= 4 => t,
                _ => return Err(row.invalid("location_type", text, "expected 0 to 4 or empty")),
            },
        };
        index.insert(id.to_string(), stops.len());
        lines.push(row.line);
        parent_ids.push(table::optional(&record.parent_station).map(str::to_string));
        stops.push(GtfsStop {
            id: id.to_string(),
            // The spec lets nodes and boarding areas go unnamed; the id is the next best label.
            name: table::optional(&record.stop_name).unwrap_or(id).to_string(),
            location_type,
        });
    }
    // Parents may come later in the file than their children, so resolve them after reading.
    let mut parents = Vec::with_capacity(stops.len());
    for (i, parent) in parent_ids.iter().enumerate() {
        parents.push(match parent {
            None => None,
            Some(id) => match index.get(id) {
                Some(&p) => Some(p),
                None => {
                    let row = Row {
                        file: STOPS,
                        line: lines[i],
                    };
                    return Err(unknown(&row, "parent_station", id, STOPS));
                }
            },
        });
    }
    Ok((stops, index, parents))
}

#[derive(Deserialize)]
struct AreaRow {
    area_id: Option<String>,
}

fn read_areas(text: &str) -> Result<HashMap<String, usize>, LoadError> {
    let table = CsvTable::open(AREAS, text, &["area_id"])?;
    let mut index = HashMap::new();
    let mut lines = Vec::new();
    for item in table.rows::<AreaRow>() {
        let (row, record) = item?;
        let id = row.required("area_id", &record.area_id)?;
        if let Some(&first) = index.get(id) {
            return Err(row.err(LoadReason::Duplicate {
                what: "area_id".to_string(),
                id: id.to_string(),
                first_line: lines[first],
            }));
        }
        index.insert(id.to_string(), lines.len());
        lines.push(row.line);
    }
    Ok(index)
}

#[derive(Deserialize)]
struct StopAreaRow {
    area_id: Option<String>,
    stop_id: Option<String>,
}

fn read_stop_areas(
    text: &str,
    stop_index: &HashMap<String, usize>,
    area_index: &HashMap<String, usize>,
    stop_count: usize,
) -> Result<Vec<Vec<usize>>, LoadError> {
    let table = CsvTable::open(STOP_AREAS, text, &["area_id", "stop_id"])?;
    let mut areas = vec![Vec::new(); stop_count];
    let mut first_line: HashMap<(usize, usize), u64> = HashMap::new();
    for item in table.rows::<StopAreaRow>() {
        let (row, record) = item?;
        let area_id = row.required("area_id", &record.area_id)?;
        let stop_id = row.required("stop_id", &record.stop_id)?;
        let area = *area_index
            .get(area_id)
            .ok_or_else(|| unknown(&row, "area_id", area_id, AREAS))?;
        let stop = *stop_index
            .get(stop_id)
            .ok_or_else(|| unknown(&row, "stop_id", stop_id, STOPS))?;
        if let Some(&first) = first_line.get(&(area, stop)) {
            return Err(row.err(LoadReason::Duplicate {
                what: "stop in area".to_string(),
                id: format!("{stop_id} in {area_id}"),
                first_line: first,
            }));
        }
        first_line.insert((area, stop), row.line);
        areas[stop].push(area);
    }
    Ok(areas)
}

#[derive(Deserialize)]
struct NetworkRow {
    network_id: Option<String>,
}

fn read_networks(text: &str) -> Result<HashSet<String>, LoadError> {
    let table = CsvTable::open(NETWORKS, text, &["network_id"])?;
    let mut first_line: HashMap<String, u64> = HashMap::new();
    for item in table.rows::<NetworkRow>() {
        let (row, record) = item?;
        let id = row.required("network_id", &record.network_id)?;
        if let Some(&first) = first_line.get(id) {
            return Err(row.err(LoadReason::Duplicate {
                what: "network_id".to_string(),
                id: id.to_string(),
                first_line: first,
            }));
        }
        first_line.insert(id.to_string(), row.line);
    }
    Ok(first_line.into_keys().collect())
}

#[derive(Deserialize)]
struct ProductRow {
    fare_product_id: Option<String>,
    amount: Option<String>,
    currency: Option<String>,
}

fn read_products(text: &str) -> Result<(Currency, HashMap<String, Money>), LoadError> {
    let table = CsvTable::open(
        FARE_PRODUCTS,
        text,
        &["fare_product_id", "amount", "currency"],
    )?;
    let mut products = HashMap::new();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    let mut currency: Option<(Currency, u64)> = None;
    for item in table.rows::<ProductRow>() {
        let (row, record) = item?;
        let id = row.required("fare_product_id", &record.fare_product_id)?;
        if let Some(&first) = first_line.get(id) {
            // The spec allows one row per fare medium or rider category; Turnpike charges one
            // amount per product, and picking one of several would be a guess about money.
            return Err(row.err(LoadReason::Duplicate {
                what: "fare_product_id (several rows per product, e.g. per fare_media_id or rider_category_id, are not supported)".to_string(),
                id: id.to_string(),
                first_line: first,
            }));
        }
        let row_currency = row.same_currency("currency", &record.currency, &mut currency)?;
        let amount_text = row.required("amount", &record.amount)?;
        let amount = row.amount("amount", amount_text, row_currency)?;
        first_line.insert(id.to_string(), row.line);
        products.insert(id.to_string(), amount);
    }
    let Some((currency, _)) = currency else {
        return Err(LoadError::whole(
            FARE_PRODUCTS,
            LoadReason::Invalid("no fare products".to_string()),
        ));
    };
    Ok((currency, products))
}

#[derive(Deserialize)]
struct LegRuleRow {
    leg_group_id: Option<String>,
    network_id: Option<String>,
    from_area_id: Option<String>,
    to_area_id: Option<String>,
    from_timeframe_group_id: Option<String>,
    to_timeframe_group_id: Option<String>,
    fare_product_id: Option<String>,
    rule_priority: Option<String>,
}

#[derive(Deserialize)]
struct TransferRuleRow {
    from_leg_group_id: Option<String>,
    to_leg_group_id: Option<String>,
    transfer_count: Option<String>,
    duration_limit: Option<String>,
    duration_limit_type: Option<String>,
    fare_transfer_type: Option<String>,
    fare_product_id: Option<String>,
}

/// `fare_leg_join_rules.txt` turns several legs into one "effective fare leg"; pricing without it
/// would charge such journeys per leg, so a feed that has rows in it is refused outright.
fn reject_join_rules(text: &str) -> Result<(), LoadError> {
    if text.trim().is_empty() {
        return Ok(());
    }
    let table = CsvTable::open(FARE_LEG_JOIN_RULES, text, &[])?;
    if let Some(item) = table.rows::<HashMap<String, String>>().next() {
        let (row, _) = item?;
        return Err(row.err(LoadReason::Unsupported(
            "fare_leg_join_rules.txt (effective fare legs); remove the file or its rows"
                .to_string(),
        )));
    }
    Ok(())
}
