//! A reader for the fare part of a GTFS feed (GTFS Fares v2, as adopted in the GTFS reference)
//! and the pricing it describes: one leg through `fare_leg_rules.txt`, a multi-leg journey
//! through `fare_transfer_rules.txt`. `docs/fares.md` is the user's guide; in short:
//!
//! | file | read |
//! | --- | --- |
//! | `stops.txt` | `stop_id`, `stop_name`, `location_type`, `parent_station` |
//! | `areas.txt`, `stop_areas.txt` | all columns |
//! | `networks.txt`, `route_networks.txt`, `routes.txt` (`network_id`) | the networks a rule may name |
//! | `fare_media.txt` | `fare_media_id`, `fare_media_type` |
//! | `rider_categories.txt` | `rider_category_id`, `is_default_fare_category` |
//! | `fare_products.txt` | one row per (product, rider category, medium) |
//! | `timeframes.txt`, `calendar.txt`, `calendar_dates.txt` | time-of-day windows and the service days they hold on |
//! | `fare_leg_rules.txt` | all columns, and the extension `transfer_only` |
//! | `fare_transfer_rules.txt` | all columns, and the extension `filter_fare_product_id` |
//! | `fare_leg_join_rules.txt` | all columns: joined legs are priced as one effective fare leg |
//!
//! Whatever is not used as written — an unknown column, a Fares v1 file, a behaviour column —
//! is a [`LoadWarning`] (file, line, column, what happens instead) in [`GtfsFeed::warnings`];
//! nothing is dropped silently and no feed is refused for something that can be ignored safely.
//!
//! # Leg matching (fare_leg_rules.txt)
//! A leg is (network, departure stop and time, arrival stop and time). A stop's areas are its own
//! rows in `stop_areas.txt`, or, if it has none, those of its `parent_station`.
//!
//! Without a `rule_priority` column (the spec's "empty semantics"), each of `network_id`,
//! `from_area_id`, `to_area_id` is matched on its own: if the leg's value appears anywhere in
//! that column, only rules naming it match; otherwise only rules leaving the field empty match.
//! Timeframes are decided among the rules that fit the leg by network and areas: where one of
//! them names a timeframe that holds, those leaving that field empty do not match. With a
//! `rule_priority` column, an empty field matches anything, and among matching rules only the
//! highest priority is kept.
//!
//! A rule's product is priced for the rider's category and medium ([`FareQuery`]); a rule whose
//! product has no row for them does not match. If several rules still match, the cheapest is
//! charged, earliest line first on a tie.
//!
//! Rules are found through an index from (network, from area, to area) to rule numbers, so a
//! price costs a few hash look-ups whatever the feed's size; nothing is precomputed per pair.
//!
//! # Transfers (fare_transfer_rules.txt)
//! See [`GtfsFeed::price_journey`].

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use turnpike_wire::money::{Currency, Money};

use crate::error::{FareError, LoadError, LoadReason, LoadWarning};
use crate::fast::{HashMap, HashSet};
use crate::limits::Limits;
use crate::metro::{MetroFares, Stop};
use crate::table::{self, CsvTable, Row};

const STOPS: &str = "stops.txt";
const AREAS: &str = "areas.txt";
const STOP_AREAS: &str = "stop_areas.txt";
const NETWORKS: &str = "networks.txt";
const ROUTE_NETWORKS: &str = "route_networks.txt";
const ROUTES: &str = "routes.txt";
const FARE_MEDIA: &str = "fare_media.txt";
const RIDER_CATEGORIES: &str = "rider_categories.txt";
const TIMEFRAMES: &str = "timeframes.txt";
const CALENDAR: &str = "calendar.txt";
const CALENDAR_DATES: &str = "calendar_dates.txt";
const FARE_PRODUCTS: &str = "fare_products.txt";
const FARE_LEG_RULES: &str = "fare_leg_rules.txt";
const FARE_TRANSFER_RULES: &str = "fare_transfer_rules.txt";
const FARE_LEG_JOIN_RULES: &str = "fare_leg_join_rules.txt";

/// Every file name this reader looks at.
pub const GTFS_FARE_FILES: [&str; 15] = [
    STOPS,
    AREAS,
    STOP_AREAS,
    NETWORKS,
    ROUTE_NETWORKS,
    ROUTES,
    FARE_MEDIA,
    RIDER_CATEGORIES,
    TIMEFRAMES,
    CALENDAR,
    CALENDAR_DATES,
    FARE_PRODUCTS,
    FARE_LEG_RULES,
    FARE_TRANSFER_RULES,
    FARE_LEG_JOIN_RULES,
];

/// GTFS files that carry no fares: present in a whole feed, not read, not warned about.
const NOT_FARES: [&str; 18] = [
    "agency.txt",
    "trips.txt",
    "stop_times.txt",
    "shapes.txt",
    "frequencies.txt",
    "transfers.txt",
    "pathways.txt",
    "levels.txt",
    "feed_info.txt",
    "translations.txt",
    "attributions.txt",
    "locations.geojson",
    "booking_rules.txt",
    "location_groups.txt",
    "location_group_stops.txt",
    "trip_capacity.txt",
    "vehicles.txt",
    "directions.txt",
];

/// `fare_media_type` 4, "mobile app": what Turnpike's ride codes are, so the default medium.
const MEDIA_TYPE_MOBILE_APP: u8 = 4;

/// One ride between two fare validations (tap in, tap out) on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub from_stop: String,
    pub to_stop: String,
    /// When the rider validated at departure, in seconds on any clock shared by all legs of the
    /// journey and [`ServiceDay::start_s`] (Unix seconds in the gateway).
    pub start_s: i64,
    /// When the rider validated at arrival, same clock.
    pub end_s: i64,
    pub network_id: String,
}

/// The day a journey is priced on: which service day (for `service_id`s of timeframes) and when
/// it began, on the clock of [`Leg::start_s`]. GTFS times of day count from "noon minus 12 h" of
/// the service day, which is midnight except on daylight-saving days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDay {
    /// `YYYYMMDD`, as in `calendar.txt`.
    pub date: u32,
    /// The instant the service day's times count from.
    pub start_s: i64,
}

/// What the spec leaves to whoever collects the fare: the rider's category and medium, and the
/// day. Every field is optional and its default is documented:
/// - `rider_category`: the feed's category with `is_default_fare_category = 1`; if none, the
///   product rows with an empty `rider_category_id`.
/// - `fare_medium`: the feed's first medium of `fare_media_type` 4 (mobile app: a ride code is
///   one); if none, any medium may be used and the cheapest matching row is charged.
/// - `service_day`: without it no timeframe contains the leg, so only rules without a timeframe
///   apply (time-dependent rules are never guessed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FareQuery {
    pub rider_category: Option<String>,
    pub fare_medium: Option<String>,
    pub service_day: Option<ServiceDay>,
}

/// The fare part of a GTFS feed, loaded and cross-checked.
#[derive(Debug, Clone)]
pub struct GtfsFeed {
    currency: Currency,
    stops: Vec<GtfsStop>,
    stop_index: HashMap<String, usize>,
    /// Effective areas of each stop (own rows, else the parent station's), by area index.
    stop_areas: Vec<Vec<u32>>,
    /// Each stop's `parent_station`, by stop index.
    parents: Vec<Option<usize>>,
    /// `fare_leg_join_rules.txt`, in file order.
    join_rules: Vec<JoinRule>,
    network_index: HashMap<String, usize>,
    categories: HashMap<String, usize>,
    default_category: Option<usize>,
    media: HashMap<String, usize>,
    default_medium: Option<usize>,
    products: Vec<Product>,
    product_index: HashMap<String, usize>,
    timeframe_groups: Vec<Vec<Timeframe>>,
    timeframe_index: HashMap<String, usize>,
    services: HashMap<String, Service>,
    leg_rules: Vec<LegRule>,
    leg_rule_index: HashMap<RuleKey, Vec<u32>>,
    /// Whether `fare_leg_rules.txt` has a `rule_priority` column, which switches the matching
    /// semantics of empty fields (see the module documentation).
    priority_mode: bool,
    listed_networks: HashSet<usize>,
    listed_from_areas: HashSet<usize>,
    listed_to_areas: HashSet<usize>,
    /// Each stop's keys for `from_area_id` and `to_area_id` (see `keys`), fixed once the rules
    /// are read, so a price computes none.
    from_keys: Vec<Box<[Option<usize>]>>,
    to_keys: Vec<Box<[Option<usize>]>>,
    listed_from_timeframes: Vec<usize>,
    listed_to_timeframes: Vec<usize>,
    transfer_rules: Vec<TransferRule>,
    listed_from_groups: HashSet<String>,
    listed_to_groups: HashSet<String>,
    warnings: Vec<LoadWarning>,
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
struct Product {
    variants: Vec<Variant>,
}

/// One row of `fare_products.txt`: a product's amount for a rider category and a medium.
#[derive(Debug, Clone)]
struct Variant {
    category: Option<usize>,
    medium: Option<usize>,
    amount: Money,
}

#[derive(Debug, Clone)]
struct Timeframe {
    start_s: i64,
    end_s: i64,
    service: Option<String>,
}

/// A `service_id` of `calendar.txt` and `calendar_dates.txt`.
#[derive(Debug, Clone, Default)]
struct Service {
    /// Monday first; with the date range, from `calendar.txt`.
    weekdays: Option<([bool; 7], u32, u32)>,
    added: HashSet<u32>,
    removed: HashSet<u32>,
}

impl Service {
    fn active(&self, date: u32) -> bool {
        if self.removed.contains(&date) {
            return false;
        }
        if self.added.contains(&date) {
            return true;
        }
        match self.weekdays {
            Some((days, from, to)) => {
                (from..=to).contains(&date) && weekday(date).is_some_and(|d| days[d])
            }
            None => false,
        }
    }
}

/// Monday = 0 … Sunday = 6 of a `YYYYMMDD` date (days-from-civil), `None` if not a date.
fn weekday(date: u32) -> Option<usize> {
    let (y, m, d) = (
        i64::from(date / 10_000),
        i64::from(date / 100 % 100),
        i64::from(date % 100),
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468; // days since 1970-01-01, a Thursday
    Some((days + 3).rem_euclid(7) as usize)
}

/// One row of `fare_leg_join_rules.txt`: a transfer between these networks (and, when given,
/// from the end of one leg at `from_stop` to the start of the next at `to_stop`) joins the two
/// legs into one effective fare leg.
#[derive(Debug, Clone)]
struct JoinRule {
    from_network: String,
    to_network: String,
    /// (from stop, to stop) by stop index; `None`: any transfer between the two networks.
    stops: Option<(usize, usize)>,
}

#[derive(Debug, Clone)]
struct LegRule {
    line: u64,
    leg_group: Option<String>,
    product: usize,
    from_timeframe: Option<usize>,
    to_timeframe: Option<usize>,
    /// The `transfer_only` extension: the rule prices only a leg reached by a transfer.
    transfer_only: bool,
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
    /// The transfer's product; no product costs nothing.
    product: Option<usize>,
    /// The `filter_fare_product_id` extension: the rule applies only after a leg of this product.
    from_product: Option<usize>,
}

/// A query with its ids resolved against the feed.
#[derive(Clone)]
pub(crate) struct Resolved {
    category: Option<usize>,
    medium: Option<usize>,
    day: Option<ServiceDay>,
}

/// A leg matched to its rule: group, product and the amount for the rider.
struct PricedLeg<'f> {
    group: Option<&'f str>,
    product: usize,
    amount: Decimal,
}

impl GtfsFeed {
    /// [`GtfsFeed::load`] with the default [`Limits`].
    pub fn from_files(files: &[(&str, &str)]) -> Result<Self, LoadError> {
        Self::load(files, &Limits::default())
    }

    /// Reads the fare files from their text, as `(file name, contents)`: data embedded in the
    /// binary, an admin upload, or files a caller read from disk — this crate does no I/O. Names
    /// are GTFS file names (`stops.txt`, ...) and errors and warnings name the file. A load past
    /// one of `limits` is a [`LoadReason::Limit`] naming it.
    pub fn load(files: &[(&str, &str)], limits: &Limits) -> Result<Self, LoadError> {
        let mut by_name: HashMap<&str, &str> = HashMap::default();
        let mut warnings = Vec::new();
        let mut bytes = 0u64;
        for &(name, text) in files {
            bytes = bytes.saturating_add(text.len() as u64);
            if by_name.insert(name, text).is_some() {
                return Err(LoadError::whole(
                    name,
                    LoadReason::Invalid("the file was given twice".to_string()),
                ));
            }
            if !GTFS_FARE_FILES.contains(&name) && !NOT_FARES.contains(&name) {
                let message = match name {
                    "fare_attributes.txt" | "fare_rules.txt" => {
                        "GTFS Fares v1 is not read; prices come from Fares v2 (fare_products.txt, fare_leg_rules.txt)"
                    }
                    _ => "not a file this reader knows; ignored",
                };
                warnings.push(warn(name, None, None, message));
            }
        }
        Limits::check(
            "(all files)",
            "feed_bytes_max",
            limits.feed_bytes_max,
            bytes,
        )?;
        let required = |name: &'static str| -> Result<&str, LoadError> {
            by_name
                .get(name)
                .copied()
                .ok_or_else(|| LoadError::whole(name, LoadReason::MissingFile))
        };

        let (stops, stop_index, parents) = read_stops(required(STOPS)?, &mut warnings)?;
        Limits::check(STOPS, "stops_max", limits.stops_max, stops.len() as u64)?;
        let area_index = match by_name.get(AREAS) {
            Some(text) => read_areas(text)?,
            None => HashMap::default(),
        };
        Limits::check(
            AREAS,
            "areas_max",
            limits.areas_max,
            area_index.len() as u64,
        )?;
        let own_areas = match by_name.get(STOP_AREAS) {
            Some(text) => read_stop_areas(text, &stop_index, &area_index, stops.len(), limits)?,
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
        let known_networks = read_network_files(&by_name, &mut warnings)?;
        let join_rules = match by_name.get(FARE_LEG_JOIN_RULES) {
            Some(text) => read_join_rules(
                text,
                &stop_index,
                known_networks.as_ref(),
                limits,
                &mut warnings,
            )?,
            None => Vec::new(),
        };
        let (categories, default_category) = match by_name.get(RIDER_CATEGORIES) {
            Some(text) => read_categories(text, &mut warnings)?,
            None => (HashMap::default(), None),
        };
        let (media, default_medium) = match by_name.get(FARE_MEDIA) {
            Some(text) => read_media(text, &mut warnings)?,
            None => (HashMap::default(), None),
        };
        let (currency, products, product_index) = read_products(
            required(FARE_PRODUCTS)?,
            &categories,
            &media,
            limits,
            &mut warnings,
        )?;
        let services = read_calendars(&by_name, limits)?;
        let (timeframe_groups, timeframe_index) = match by_name.get(TIMEFRAMES) {
            Some(text) => read_timeframes(text, &services, limits, &mut warnings)?,
            None => (Vec::new(), HashMap::default()),
        };

        let mut feed = GtfsFeed {
            currency,
            stops,
            stop_index,
            stop_areas,
            parents,
            join_rules,
            network_index: HashMap::default(),
            categories,
            default_category,
            media,
            default_medium,
            products,
            product_index,
            timeframe_groups,
            timeframe_index,
            services,
            leg_rules: Vec::new(),
            leg_rule_index: HashMap::default(),
            priority_mode: false,
            listed_networks: HashSet::default(),
            listed_from_areas: HashSet::default(),
            listed_to_areas: HashSet::default(),
            from_keys: Vec::new(),
            to_keys: Vec::new(),
            listed_from_timeframes: Vec::new(),
            listed_to_timeframes: Vec::new(),
            transfer_rules: Vec::new(),
            listed_from_groups: HashSet::default(),
            listed_to_groups: HashSet::default(),
            warnings,
        };
        feed.read_leg_rules(
            required(FARE_LEG_RULES)?,
            &area_index,
            known_networks.as_ref(),
        )?;
        if let Some(text) = by_name.get(FARE_TRANSFER_RULES) {
            feed.read_transfer_rules(text)?;
        }
        let rules =
            (feed.leg_rules.len() + feed.transfer_rules.len() + feed.join_rules.len()) as u64;
        Limits::check(FARE_LEG_RULES, "rules_max", limits.rules_max, rules)?;
        let stop_keys = |listed: &HashSet<usize>| -> Vec<Box<[Option<usize>]>> {
            feed.stop_areas
                .iter()
                .map(|areas| {
                    feed.keys(areas.iter().map(|&a| a as usize), listed)
                        .into_boxed_slice()
                })
                .collect()
        };
        let (from_keys, to_keys) = (
            stop_keys(&feed.listed_from_areas),
            stop_keys(&feed.listed_to_areas),
        );
        feed.from_keys = from_keys;
        feed.to_keys = to_keys;
        Ok(feed)
    }

    /// The one currency of every fare product in the feed.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// What the load did not use as written, in file order.
    pub fn warnings(&self) -> &[LoadWarning] {
        &self.warnings
    }

    /// Every `network_id` a leg rule names, sorted.
    pub fn network_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.network_index.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// The fare of one leg on `network_id`, by `fare_leg_rules.txt` alone, for the default rider
    /// and medium and no time (so only rules without a timeframe apply).
    pub fn price(
        &self,
        network_id: &str,
        from_stop: &str,
        to_stop: &str,
    ) -> Result<Money, FareError> {
        self.price_at(network_id, from_stop, to_stop, 0, 0, &FareQuery::default())
    }

    /// The fare of one leg entered at `start_s` and left at `end_s` (the clock of
    /// [`ServiceDay::start_s`]) for the rider of `query`.
    pub fn price_at(
        &self,
        network_id: &str,
        from_stop: &str,
        to_stop: &str,
        start_s: i64,
        end_s: i64,
        query: &FareQuery,
    ) -> Result<Money, FareError> {
        let q = self.resolve(query)?;
        let from = self.stop(from_stop)?;
        let to = self.stop(to_stop)?;
        let networks = self.network_keys(network_id);
        self.price_stops(&networks, (from, to), (start_s, end_s), &q)
            .ok_or_else(|| FareError::NoFareRule {
                from_stop: from_stop.to_string(),
                to_stop: to_stop.to_string(),
            })?
    }

    /// The keys under which rules of `network_id` are indexed.
    pub(crate) fn network_keys(&self, network_id: &str) -> Vec<Option<usize>> {
        let network = self.network_index.get(network_id).copied();
        self.keys(network.into_iter(), &self.listed_networks)
    }

    /// One leg between feed stop indexes, for a resolved rider: `None` when no rule matches,
    /// `Some(Err)` when the amount is out of range.
    pub(crate) fn price_stops(
        &self,
        networks: &[Option<usize>],
        (from, to): (usize, usize),
        (start_s, end_s): (i64, i64),
        q: &Resolved,
    ) -> Option<Result<Money, FareError>> {
        let leg = self.match_leg(networks, from, to, start_s, end_s, q, None)?;
        Some(crate::money::exact(leg.amount, self.currency).map_err(|_| FareError::Overflow))
    }

    /// The fare of one leg, ignoring its times.
    pub fn price_leg(&self, leg: &Leg) -> Result<Money, FareError> {
        self.price(&leg.network_id, &leg.from_stop, &leg.to_stop)
    }

    /// [`GtfsFeed::price_journey`] for the default rider and no service day.
    pub fn price_legs(&self, legs: &[Leg]) -> Result<Money, FareError> {
        self.price_journey(legs, &FareQuery::default())
    }

    /// The fare of a journey of consecutive legs for the rider of `query`, applying
    /// `fare_transfer_rules.txt`.
    ///
    /// Legs must be in travel order (each starts no earlier than the previous one) and each must
    /// end no earlier than it starts. First, consecutive legs that a row of
    /// `fare_leg_join_rules.txt` joins become one effective fare leg (see `effective_legs`);
    /// "leg" below means an effective fare leg. Each leg is matched to its leg rule (a
    /// `transfer_only` rule only where a transfer rule leads into its group from the leg before,
    /// see `transfer_into`), which gives its fare, product and `leg_group_id`. Then,
    /// walking the journey, each transfer between two consecutive legs is matched against the
    /// transfer rules by (from leg group, to leg group), with the same "exact beats empty"
    /// semantics as leg rules; a leg without a leg group never transfers. A candidate rule
    /// applies only if
    /// - its `filter_fare_product_id` (extension), when set, is the from-leg's product,
    /// - its `transfer_count` (when set) is at least the number of consecutive transfers between
    ///   the same two leg groups, this one included, and
    /// - its `duration_limit` (when set) is not exceeded, measured per `duration_limit_type` from
    ///   the first leg of that run of consecutive same-group transfers to the current leg
    ///   (a transfer exactly at the limit is still within it).
    ///
    /// Among applicable rules, the smallest sufficient `transfer_count` is kept (`-1` is the
    /// largest), then the one giving the lowest price, then the earliest line. Costs follow the
    /// spec's table, with S the running cost of the sub-journey: type 0 `S + AB`, type 1
    /// `S + AB + B`, type 2 `AB` on the sub-journey's first transfer and `S + AB` after. With no
    /// applicable rule the next leg starts a new sub-journey at its own fare.
    ///
    /// A transfer product may be negative (a discount); the journey total is never below zero.
    pub fn price_journey(&self, legs: &[Leg], query: &FareQuery) -> Result<Money, FareError> {
        if legs.is_empty() {
            return Err(FareError::EmptyJourney);
        }
        let q = self.resolve(query)?;
        let mut stops = Vec::with_capacity(legs.len());
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
            stops.push((self.stop(&leg.from_stop)?, self.stop(&leg.to_stop)?));
        }
        let effective = self.effective_legs(legs, &stops);
        let legs = &effective[..];
        let mut priced = Vec::with_capacity(legs.len());
        for (index, leg) in legs.iter().enumerate() {
            let (from, to) = (self.stop(&leg.from_stop)?, self.stop(&leg.to_stop)?);
            let networks = self.network_keys(&leg.network_id);
            // A transfer-only rule prices this leg only where a transfer rule leads into its
            // group from the leg before.
            let transfer_only_ok = |rule: &LegRule| {
                index > 0
                    && self.transfer_into(
                        &legs[index - 1],
                        &priced[index - 1],
                        rule.leg_group.as_deref(),
                        leg,
                    )
            };
            let rule = self
                .match_leg(
                    &networks,
                    from,
                    to,
                    leg.start_s,
                    leg.end_s,
                    &q,
                    Some(&transfer_only_ok),
                )
                .ok_or_else(|| FareError::NoFareRule {
                    from_stop: leg.from_stop.clone(),
                    to_stop: leg.to_stop.clone(),
                })?;
            priced.push(rule);
        }

        let mut total = Decimal::ZERO;
        let mut sub_total = priced[0].amount;
        let mut sub_transfers = 0u32;
        // The run of consecutive transfers between the same two leg groups: (groups, first leg, count).
        let mut run: Option<((&str, &str), usize, u32)> = None;
        for i in 1..legs.len() {
            let chosen = match (priced[i - 1].group, priced[i].group) {
                (Some(from_group), Some(to_group)) => {
                    let groups = (from_group, to_group);
                    let (run_start, count) = match run {
                        Some((g, start, n)) if g == groups => (start, n.saturating_add(1)),
                        _ => (i - 1, 1),
                    };
                    let step = Step {
                        groups,
                        count,
                        run_first_leg: &legs[run_start],
                        to_leg: &legs[i],
                        from_product: priced[i - 1].product,
                        sub_total,
                        sub_transfers,
                        to_leg_fare: priced[i].amount,
                    };
                    self.choose_transfer(&step, &q)
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
                    sub_total = priced[i].amount;
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

    /// The journey's effective fare legs (`fare_leg_join_rules.txt`): consecutive legs whose
    /// transfer matches a join rule become one leg from the first leg's departure (stop, time)
    /// to the last leg's arrival, on the network they share; legs of different networks joined
    /// by a cross-network rule get no network (`""`, which no rule lists). A chain of joined
    /// transfers joins the whole run. Without join rules the legs are returned as they are.
    fn effective_legs(&self, legs: &[Leg], stops: &[(usize, usize)]) -> Vec<Leg> {
        let mut effective: Vec<Leg> = Vec::with_capacity(legs.len());
        for (i, leg) in legs.iter().enumerate() {
            if i > 0 && self.joins(&legs[i - 1], stops[i - 1].1, leg, stops[i].0) {
                let joined = effective.last_mut().expect("a leg before this one");
                joined.to_stop.clone_from(&leg.to_stop);
                joined.end_s = leg.end_s;
                if joined.network_id != leg.network_id {
                    joined.network_id.clear();
                }
                continue;
            }
            effective.push(leg.clone());
        }
        effective
    }

    /// Whether a join rule joins `before` (ending at stop index `end`) to `after` (starting at
    /// `start`). A rule's stop may be the stop itself or its parent station.
    fn joins(&self, before: &Leg, end: usize, after: &Leg, start: usize) -> bool {
        let at = |stop: usize, named: usize| stop == named || self.parents[stop] == Some(named);
        self.join_rules.iter().any(|r| {
            r.from_network == before.network_id
                && r.to_network == after.network_id
                && r.stops
                    .is_none_or(|(from, to)| at(end, from) && at(start, to))
        })
    }

    /// Whether some transfer rule leads from the leg before (`prev`, priced as `prev_priced`)
    /// into leg group `to_group` for `to_leg`: groups by the same "exact beats empty" semantics
    /// as [`GtfsFeed::choose_transfer`], the `filter_fare_product_id` extension, and the
    /// duration limit measured from the leg before (not from the start of a longer run of
    /// same-group transfers). What lets a `transfer_only` leg rule price a leg.
    fn transfer_into(
        &self,
        prev: &Leg,
        prev_priced: &PricedLeg<'_>,
        to_group: Option<&str>,
        to_leg: &Leg,
    ) -> bool {
        let (Some(from_group), Some(to_group)) = (prev_priced.group, to_group) else {
            return false;
        };
        let from_key = self
            .listed_from_groups
            .contains(from_group)
            .then_some(from_group);
        let to_key = self.listed_to_groups.contains(to_group).then_some(to_group);
        self.transfer_rules.iter().any(|r| {
            r.from_group.as_deref() == from_key
                && r.to_group.as_deref() == to_key
                && r.from_product.is_none_or(|p| p == prev_priced.product)
                && within_duration(r, prev, to_leg)
        })
    }

    /// The price of the sub-journey after this transfer, under the best applicable rule, or `None`
    /// when no rule applies.
    fn choose_transfer(&self, step: &Step<'_>, q: &Resolved) -> Option<Decimal> {
        let (from_group, to_group) = step.groups;
        let from_key = self
            .listed_from_groups
            .contains(from_group)
            .then_some(from_group);
        let to_key = self.listed_to_groups.contains(to_group).then_some(to_group);
        let applicable: Vec<(&TransferRule, Decimal)> = self
            .transfer_rules
            .iter()
            .filter(|r| r.from_group.as_deref() == from_key && r.to_group.as_deref() == to_key)
            .filter(|r| r.from_product.is_none_or(|p| p == step.from_product))
            .filter(|r| r.transfer_count.is_none_or(|limit| step.count <= limit))
            .filter(|r| within_duration(r, step.run_first_leg, step.to_leg))
            .filter_map(|r| match r.product {
                None => Some((r, Decimal::ZERO)),
                // A transfer product without a row for this rider does not apply to them.
                Some(p) => self.amount_for(p, q).map(|a| (r, a)),
            })
            .collect();
        // The spec: the smallest transfer_count that still covers this transfer; -1 is unlimited.
        let smallest = applicable
            .iter()
            .map(|(r, _)| r.transfer_count.unwrap_or(u32::MAX))
            .min()?;
        applicable
            .into_iter()
            .filter(|(r, _)| r.transfer_count.unwrap_or(u32::MAX) == smallest)
            .filter_map(|(r, amount)| {
                let cost = match r.kind {
                    FareTransferType::FromLegPlusTransfer => step.sub_total.checked_add(amount),
                    FareTransferType::FromLegPlusTransferPlusToLeg => step
                        .sub_total
                        .checked_add(amount)
                        .and_then(|c| c.checked_add(step.to_leg_fare)),
                    FareTransferType::TransferOnly if step.sub_transfers == 0 => Some(amount),
                    FareTransferType::TransferOnly => step.sub_total.checked_add(amount),
                };
                cost.map(|c| (c, r.line))
            })
            .min()
            .map(|(cost, _)| cost)
    }

    /// The query's ids as the feed's indexes, with the documented defaults ([`FareQuery`]).
    pub(crate) fn resolve(&self, query: &FareQuery) -> Result<Resolved, FareError> {
        let category =
            match &query.rider_category {
                None => self.default_category,
                Some(id) => Some(*self.categories.get(id).ok_or_else(|| {
                    FareError::UnknownRiderCategory {
                        rider_category_id: id.clone(),
                    }
                })?),
            };
        let medium = match &query.fare_medium {
            None => self.default_medium,
            Some(id) => Some(
                *self
                    .media
                    .get(id)
                    .ok_or_else(|| FareError::UnknownFareMedium {
                        fare_media_id: id.clone(),
                    })?,
            ),
        };
        Ok(Resolved {
            category,
            medium,
            day: query.service_day,
        })
    }

    /// The amount of product `p` for the rider: rows for the rider's category beat rows for any
    /// category, rows for the medium beat rows for any medium, then the cheapest. With no medium
    /// chosen (the feed has no mobile-app medium and none was configured) every medium's row may
    /// be used. `None`: the product has no row for this rider.
    fn amount_for(&self, p: usize, q: &Resolved) -> Option<Decimal> {
        self.products[p]
            .variants
            .iter()
            .filter(|v| v.category.is_none() || v.category == q.category)
            .filter(|v| v.medium.is_none() || q.medium.is_none() || v.medium == q.medium)
            .map(|v| {
                (
                    v.category.is_none(),
                    q.medium.is_some() && v.medium.is_none(),
                    v.amount.amount(),
                )
            })
            .min()
            .map(|(_, _, amount)| amount)
    }

    /// The timeframe groups listed in a column whose windows hold the instant `at_s`.
    fn timeframes_at(&self, listed: &[usize], at_s: i64, day: Option<ServiceDay>) -> Vec<usize> {
        let Some(day) = day else {
            return Vec::new();
        };
        let Some(time_s) = at_s.checked_sub(day.start_s) else {
            return Vec::new();
        };
        listed
            .iter()
            .copied()
            .filter(|&g| {
                self.timeframe_groups[g].iter().any(|t| {
                    (t.start_s..t.end_s).contains(&time_s)
                        && t.service.as_ref().is_none_or(|s| {
                            self.services.get(s).is_some_and(|s| s.active(day.date))
                        })
                })
            })
            .collect()
    }

    /// The fare table of one network for its gates: the stops a rule of `network_id` can match
    /// (not entrances or station-internal nodes), priced by rule at tap time. Memory is the
    /// stop list; nothing is computed per pair.
    pub fn metro_fares(&self, network_id: &str) -> Result<MetroFares, LoadError> {
        Arc::new(self.clone()).into_metro_fares(network_id, FareQuery::default())
    }

    /// [`GtfsFeed::metro_fares`] without copying the feed, pricing for `query`'s rider and medium
    /// unless a tap says otherwise.
    pub fn into_metro_fares(
        self: Arc<Self>,
        network_id: &str,
        query: FareQuery,
    ) -> Result<MetroFares, LoadError> {
        let q = self
            .resolve(&query)
            .map_err(|e| LoadError::whole(FARE_PRODUCTS, LoadReason::Invalid(e.to_string())))?;
        let networks = self.network_keys(network_id);
        // The rules that can price a leg on this network, and the (network, area) pairs through
        // which a stop reaches them.
        let keys: Vec<&RuleKey> = self
            .leg_rule_index
            .keys()
            .filter(|(n, _, _)| networks.contains(n))
            .collect();
        let with_from: HashSet<Option<usize>> = keys.iter().map(|&&(_, f, _)| f).collect();
        let with_to: HashSet<Option<usize>> = keys.iter().map(|&&(_, _, t)| t).collect();
        // Bounds for the gateway: the dearest fare any leg may cost (a journey without an exit
        // pays it), and the cheapest fare of a rule that holds at any time (a same-station exit
        // pays it; a free-fare-day or off-peak rule must not make that free every day).
        // Transfer-only rules never price a gate journey and count for neither.
        let rules: Vec<&LegRule> = keys
            .iter()
            .flat_map(|k| self.leg_rule_index[*k].iter())
            .map(|&r| &self.leg_rules[r as usize])
            .filter(|r| !r.transfer_only)
            .collect();
        let bound = |untimed_only: bool| -> Option<(Decimal, Decimal)> {
            rules
                .iter()
                .filter(|r| {
                    !untimed_only || (r.from_timeframe.is_none() && r.to_timeframe.is_none())
                })
                .filter_map(|r| self.amount_for(r.product, &q))
                .fold(None, |acc, a| match acc {
                    None => Some((a, a)),
                    Some((lo, hi)) => Some((lo.min(a), hi.max(a))),
                })
        };
        let all = bound(false);
        let untimed = bound(true);
        let (Some((all_min, max)), untimed) = (all, untimed) else {
            return Err(LoadError::whole(
                FARE_LEG_RULES,
                LoadReason::Invalid(format!(
                    "no rule prices a journey on network {network_id:?}"
                )),
            ));
        };
        let reachable = |keys: &[Option<usize>], with: &HashSet<Option<usize>>| {
            keys.iter().any(|a| with.contains(a))
        };
        let min = untimed.map_or(all_min, |(lo, _)| lo);
        let stop_of: Vec<u32> = (0..self.stops.len())
            .filter(|&s| self.stops[s].location_type <= 1)
            .filter(|&s| {
                reachable(&self.from_keys[s], &with_from) || reachable(&self.to_keys[s], &with_to)
            })
            .map(|s| s as u32)
            .collect();
        let stops: Vec<Stop> = stop_of
            .iter()
            .map(|&s| Stop {
                id: self.stops[s as usize].id.clone(),
                name: self.stops[s as usize].name.clone(),
            })
            .collect();
        let money = |d: Decimal| {
            crate::money::exact(d, self.currency).map_err(|_| {
                LoadError::whole(
                    FARE_PRODUCTS,
                    LoadReason::Invalid("amount out of range".into()),
                )
            })
        };
        let (min, max) = (money(min)?, money(max)?);
        Ok(MetroFares::by_rule(
            stops,
            crate::metro::RulePricing {
                feed: self.clone(),
                networks,
                stop_of,
                resolved: q,
            },
            min,
            max,
        ))
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
    #[allow(clippy::too_many_arguments)]
    fn match_leg(
        &self,
        networks: &[Option<usize>],
        from: usize,
        to: usize,
        start_s: i64,
        end_s: i64,
        q: &Resolved,
        transfer_only_ok: Option<&dyn Fn(&LegRule) -> bool>,
    ) -> Option<PricedLeg<'_>> {
        let (froms, tos) = (&self.from_keys[from], &self.to_keys[to]);
        let from_tf = self.timeframes_at(&self.listed_from_timeframes, start_s, q.day);
        let to_tf = self.timeframes_at(&self.listed_to_timeframes, end_s, q.day);
        // The rules whose network, areas and (named) timeframes fit the leg, with the rider's
        // amount; an empty timeframe fits any time here.
        let (from_tf, to_tf) = (&from_tf[..], &to_tf[..]);
        let for_each_candidate = |visit: &mut dyn FnMut(usize, Decimal)| {
            for &n in networks {
                for &f in froms.iter() {
                    for &t in tos.iter() {
                        let Some(ids) = self.leg_rule_index.get(&(n, f, t)) else {
                            continue;
                        };
                        for &i in ids.iter() {
                            let rule = &self.leg_rules[i as usize];
                            if (rule.transfer_only && !transfer_only_ok.is_some_and(|ok| ok(rule)))
                                || rule.from_timeframe.is_some_and(|g| !from_tf.contains(&g))
                                || rule.to_timeframe.is_some_and(|g| !to_tf.contains(&g))
                            {
                                continue;
                            }
                            if let Some(amount) = self.amount_for(rule.product, q) {
                                visit(i as usize, amount);
                            }
                        }
                    }
                }
            }
        };
        // Empty semantics for timeframes: among the rules that fit the leg, a rule naming a
        // timeframe that holds beats one leaving it empty (a peak rule beats the base fare in
        // the peak; a free-fare day beats the everyday fare). Decided among the leg's own
        // candidates, not file-wide: a timeframe on some other network's or area's rules
        // never takes the untimed rules of this leg away (the MBTA names `timeframe_regular` on
        // its subway rules only; its buses, rail and ferries are untimed). With rule_priority
        // an empty timeframe simply matches any time and the priority decides.
        let (mut from_timed, mut to_timed) = (false, false);
        // A candidate names a timeframe only if it holds; with none holding there is nothing to
        // look for (the common case: a feed without timeframes, or a leg outside them all).
        if !self.priority_mode && (!from_tf.is_empty() || !to_tf.is_empty()) {
            for_each_candidate(&mut |i, _| {
                from_timed |= self.leg_rules[i].from_timeframe.is_some();
                to_timed |= self.leg_rules[i].to_timeframe.is_some();
            });
        }
        let mut best: Option<(&LegRule, Decimal)> = None;
        for_each_candidate(&mut |i, amount| {
            let rule = &self.leg_rules[i];
            if (from_timed && rule.from_timeframe.is_none())
                || (to_timed && rule.to_timeframe.is_none())
            {
                return;
            }
            if best.is_none_or(|(b, b_amount)| self.better_leg_rule((rule, amount), (b, b_amount)))
            {
                best = Some((rule, amount));
            }
        });
        best.map(|(rule, amount)| PricedLeg {
            group: rule.leg_group.as_deref(),
            product: rule.product,
            amount,
        })
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

    fn better_leg_rule(&self, a: (&LegRule, Decimal), b: (&LegRule, Decimal)) -> bool {
        if self.priority_mode && a.0.priority != b.0.priority {
            return a.0.priority > b.0.priority;
        }
        (a.1, a.0.line) < (b.1, b.0.line)
    }

    fn read_leg_rules(
        &mut self,
        text: &str,
        area_index: &HashMap<String, usize>,
        known_networks: Option<&HashSet<String>>,
    ) -> Result<(), LoadError> {
        let table = CsvTable::open(FARE_LEG_RULES, text, &["fare_product_id"])?;
        self.priority_mode = table.has_column("rule_priority");
        warn_columns(&table, FARE_LEG_RULES, LEG_RULE_COLUMNS, &mut self.warnings);
        let mut first_line: HashMap<(RuleKey, Option<usize>, Option<usize>, usize), u64> =
            HashMap::default();
        let (mut from_tfs, mut to_tfs) = (HashSet::default(), HashSet::default());
        // Timeframe groups rules name but timeframes.txt does not define (they never hold).
        let mut undefined_timeframes: HashSet<usize> = HashSet::default();
        // Products rules name but fare_products.txt does not define (no row prices them).
        let mut undefined_products: HashSet<usize> = HashSet::default();
        for item in table.rows::<LegRuleRow>() {
            let (row, record) = item?;
            let network = match table::optional(&record.network_id) {
                None => None,
                Some(id) => {
                    if known_networks.is_some_and(|known| !known.contains(id)) {
                        return Err(unknown(&row, "network_id", id, NETWORKS));
                    }
                    let next = self.network_index.len();
                    Some(match self.network_index.get(id) {
                        Some(&n) => n,
                        None => {
                            self.network_index.insert(id.to_string(), next);
                            next
                        }
                    })
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
            // A rule naming a product the feed does not define can price nothing: it is kept
            // (its network and areas still count as listed, so other legs match as the agency
            // wrote them) with a product that has no row for anyone, and warned about; the feed
            // is not refused for it.
            let known_product = self.product_index.get(product_id).copied();
            let product = match known_product.filter(|p| !undefined_products.contains(p)) {
                Some(p) => p,
                None => {
                    self.warnings.push(warn(
                        FARE_LEG_RULES,
                        Some(row.line),
                        Some("fare_product_id"),
                        &format!(
                            "fare product {product_id:?} is not in fare_products.txt: this rule never applies"
                        ),
                    ));
                    known_product.unwrap_or_else(|| {
                        let p = self.products.len();
                        self.products.push(Product {
                            variants: Vec::new(),
                        });
                        self.product_index.insert(product_id.to_string(), p);
                        undefined_products.insert(p);
                        p
                    })
                }
            };
            // A timeframe group no row of timeframes.txt defines never holds: the rule is kept
            // (its network and areas still count as listed) but never applies, as for a
            // timeframe whose service_id no calendar defines.
            let mut timeframe = |column: &str, value: &Option<String>| -> Option<usize> {
                let id = table::optional(value)?;
                let known = self.timeframe_index.get(id).copied();
                if let Some(g) = known.filter(|g| !undefined_timeframes.contains(g)) {
                    return Some(g);
                }
                self.warnings.push(warn(
                    FARE_LEG_RULES,
                    Some(row.line),
                    Some(column),
                    &format!(
                        "timeframe group {id:?} is not in timeframes.txt: it never holds, so this rule never applies"
                    ),
                ));
                Some(known.unwrap_or_else(|| {
                    let g = self.timeframe_groups.len();
                    self.timeframe_groups.push(Vec::new());
                    self.timeframe_index.insert(id.to_string(), g);
                    undefined_timeframes.insert(g);
                    g
                }))
            };
            let from_timeframe =
                timeframe("from_timeframe_group_id", &record.from_timeframe_group_id);
            let to_timeframe = timeframe("to_timeframe_group_id", &record.to_timeframe_group_id);
            if self.products[product]
                .variants
                .iter()
                .any(|v| v.amount.amount() < Decimal::ZERO)
            {
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
            let transfer_only = match table::optional(&record.transfer_only) {
                None | Some("0") => false,
                Some("1") => true,
                Some(other) => {
                    return Err(row.invalid("transfer_only", other, "expected 1, 0 or empty"))
                }
            };
            let key = (network, from_area, to_area);
            let unique = (key, from_timeframe, to_timeframe, product);
            if let Some(&first) = first_line.get(&unique) {
                return Err(row.err(LoadReason::Duplicate {
                    what: "rule (network_id, from_area_id, to_area_id, from_timeframe_group_id, to_timeframe_group_id, fare_product_id)"
                        .to_string(),
                    id: [
                        table::optional(&record.network_id),
                        table::optional(&record.from_area_id),
                        table::optional(&record.to_area_id),
                        table::optional(&record.from_timeframe_group_id),
                        table::optional(&record.to_timeframe_group_id),
                        Some(product_id),
                    ]
                    .map(|v| v.unwrap_or(""))
                    .join(","),
                    first_line: first,
                }));
            }
            first_line.insert(unique, row.line);

            if let Some(n) = network {
                self.listed_networks.insert(n);
            }
            if let Some(a) = from_area {
                self.listed_from_areas.insert(a);
            }
            if let Some(a) = to_area {
                self.listed_to_areas.insert(a);
            }
            from_tfs.extend(from_timeframe);
            to_tfs.extend(to_timeframe);
            let number = u32::try_from(self.leg_rules.len()).map_err(|_| {
                row.err(LoadReason::Limit {
                    name: "rules_max".into(),
                    limit: u64::from(u32::MAX),
                    found: self.leg_rules.len() as u64,
                })
            })?;
            self.leg_rule_index.entry(key).or_default().push(number);
            self.leg_rules.push(LegRule {
                line: row.line,
                leg_group: table::optional(&record.leg_group_id).map(str::to_string),
                product,
                from_timeframe,
                to_timeframe,
                transfer_only,
                priority,
            });
        }
        self.listed_from_timeframes = from_tfs.into_iter().collect();
        self.listed_to_timeframes = to_tfs.into_iter().collect();
        self.listed_from_timeframes.sort_unstable();
        self.listed_to_timeframes.sort_unstable();
        Ok(())
    }

    fn read_transfer_rules(&mut self, text: &str) -> Result<(), LoadError> {
        let table = CsvTable::open(FARE_TRANSFER_RULES, text, &["fare_transfer_type"])?;
        warn_columns(
            &table,
            FARE_TRANSFER_RULES,
            TRANSFER_RULE_COLUMNS,
            &mut self.warnings,
        );
        // fare_media_behavior (0 or empty: both legs on the same medium; 1: any media) needs no
        // work here: a Turnpike journey is paid with one medium, the ride code, so every
        // transfer is between legs on the same medium and both values price it alike.
        // fare_product_behavior is a proposal whose values are still read two ways (google/transit
        // pull 423), so it is not guessed at: warned once, priced as if empty.
        if table.has_column("fare_product_behavior") {
            self.warnings.push(warn(
                FARE_TRANSFER_RULES,
                Some(1),
                Some("fare_product_behavior"),
                "not supported (its meaning is not settled in the spec): a transfer is priced \
                 whatever products the legs used, as if the column were empty; \
                 filter_fare_product_id still restricts the from-leg's product",
            ));
        }
        let groups: HashSet<&str> = self
            .leg_rules
            .iter()
            .filter_map(|r| r.leg_group.as_deref())
            .collect();
        let mut rules = Vec::new();
        let mut first_line: HashMap<String, u64> = HashMap::default();
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
            match table::optional(&record.fare_media_behavior) {
                None | Some("0") | Some("1") => {}
                Some(other) => {
                    return Err(row.invalid("fare_media_behavior", other, "expected 0, 1 or empty"))
                }
            }
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
            let product_column = |column: &str, value: &Option<String>| match table::optional(value)
            {
                None => Ok(None),
                Some(id) => match self.product_index.get(id) {
                    Some(&p) => Ok(Some(p)),
                    None => Err(unknown(&row, column, id, FARE_PRODUCTS)),
                },
            };
            let product = product_column("fare_product_id", &record.fare_product_id)?;
            let from_product =
                product_column("filter_fare_product_id", &record.filter_fare_product_id)?;

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
                product,
                from_product,
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

fn read_stops(text: &str, warnings: &mut Vec<LoadWarning>) -> Result<StopsRead, LoadError> {
    let table = CsvTable::open(STOPS, text, &["stop_id"])?;
    if table.has_column("zone_id") {
        warnings.push(warn(
            STOPS,
            Some(1),
            Some("zone_id"),
            "Fares v1 zones are not read; areas come from stop_areas.txt",
        ));
    }
    let mut stops = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::default();
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
    let mut index = HashMap::default();
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
    limits: &Limits,
) -> Result<Vec<Vec<u32>>, LoadError> {
    let table = CsvTable::open(STOP_AREAS, text, &["area_id", "stop_id"])?;
    let mut rows = 0u64;
    let mut areas = vec![Vec::new(); stop_count];
    let mut first_line: HashMap<(usize, usize), u64> = HashMap::default();
    for item in table.rows::<StopAreaRow>() {
        let (row, record) = item?;
        rows += 1;
        Limits::check(STOP_AREAS, "stop_areas_max", limits.stop_areas_max, rows)?;
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
        areas[stop].push(area as u32);
    }
    Ok(areas)
}

#[derive(Deserialize)]
struct NetworkRow {
    network_id: Option<String>,
}

fn read_networks(text: &str) -> Result<HashSet<String>, LoadError> {
    let table = CsvTable::open(NETWORKS, text, &["network_id"])?;
    let mut first_line: HashMap<String, u64> = HashMap::default();
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

/// The spec's columns of `fare_leg_rules.txt`, and the extension this reader honours.
const LEG_RULE_COLUMNS: &[&str] = &[
    "leg_group_id",
    "network_id",
    "from_area_id",
    "to_area_id",
    "from_timeframe_group_id",
    "to_timeframe_group_id",
    "fare_product_id",
    "rule_priority",
    "transfer_only",
];

/// The spec's columns of `fare_transfer_rules.txt`, the honoured extension
/// `filter_fare_product_id`, and the behaviour columns that are warned about on their own.
const TRANSFER_RULE_COLUMNS: &[&str] = &[
    "from_leg_group_id",
    "to_leg_group_id",
    "transfer_count",
    "duration_limit",
    "duration_limit_type",
    "fare_transfer_type",
    "fare_product_id",
    "filter_fare_product_id",
    "fare_media_behavior",
    "fare_product_behavior",
];

/// Whether a transfer to `to_leg` is within `rule`'s duration limit counted from `first_leg`
/// (a transfer exactly at the limit is within it).
fn within_duration(rule: &TransferRule, first_leg: &Leg, to_leg: &Leg) -> bool {
    let Some((limit_s, kind)) = rule.duration_limit else {
        return true;
    };
    let start_s = match kind {
        DurationLimitType::DepartureToArrival | DurationLimitType::DepartureToDeparture => {
            first_leg.start_s
        }
        DurationLimitType::ArrivalToDeparture | DurationLimitType::ArrivalToArrival => {
            first_leg.end_s
        }
    };
    let end_s = match kind {
        DurationLimitType::DepartureToArrival | DurationLimitType::ArrivalToArrival => to_leg.end_s,
        DurationLimitType::DepartureToDeparture | DurationLimitType::ArrivalToDeparture => {
            to_leg.start_s
        }
    };
    end_s
        .checked_sub(start_s)
        .is_some_and(|elapsed_s| elapsed_s <= limit_s)
}

/// One transfer being priced (see [`GtfsFeed::price_journey`]).
struct Step<'a> {
    groups: (&'a str, &'a str),
    /// Consecutive transfers between the same two groups, this one included.
    count: u32,
    run_first_leg: &'a Leg,
    to_leg: &'a Leg,
    from_product: usize,
    sub_total: Decimal,
    sub_transfers: u32,
    to_leg_fare: Decimal,
}

fn warn(file: &str, line: Option<u64>, column: Option<&str>, message: &str) -> LoadWarning {
    LoadWarning {
        file: file.to_string(),
        line,
        column: column.map(str::to_string),
        message: message.to_string(),
    }
}

/// A warning for each column of `table` this reader does not use.
fn warn_columns(table: &CsvTable<'_>, file: &str, known: &[&str], warnings: &mut Vec<LoadWarning>) {
    for column in table.other_columns(known) {
        warnings.push(warn(
            file,
            Some(1),
            Some(&column),
            "column not in the GTFS reference and not a documented extension; ignored",
        ));
    }
}

/// Whether a `0`/`1`/empty flag is set.
fn flag(row: &Row<'_>, column: &str, value: &Option<String>) -> Result<bool, LoadError> {
    match table::optional(value) {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(row.invalid(column, other, "expected 1, 0 or empty")),
    }
}

#[derive(Deserialize)]
struct IdRow {
    network_id: Option<String>,
}

/// The networks rules may name: `networks.txt`, `route_networks.txt` and `routes.network_id`
/// together, or `None` (any) when the feed has none of them.
fn read_network_files(
    by_name: &HashMap<&str, &str>,
    warnings: &mut Vec<LoadWarning>,
) -> Result<Option<HashSet<String>>, LoadError> {
    let mut known: Option<HashSet<String>> = None;
    if let Some(text) = by_name.get(NETWORKS) {
        known
            .get_or_insert_with(HashSet::default)
            .extend(read_networks(text)?);
    }
    for file in [ROUTE_NETWORKS, ROUTES] {
        let Some(text) = by_name.get(file) else {
            continue;
        };
        let table = CsvTable::open(file, text, &[])?;
        if !table.has_column("network_id") {
            continue;
        }
        let set = known.get_or_insert_with(HashSet::default);
        for item in table.rows::<IdRow>() {
            let (_, record) = item?;
            if let Some(id) = table::optional(&record.network_id) {
                set.insert(id.to_string());
            }
        }
    }
    if known.is_some() {
        warnings.push(warn(
            ROUTE_NETWORKS,
            None,
            None,
            "networks are known by id only: a network's stops are those its rules' areas reach \
             (stop_times.txt is not read), and a rule with empty areas reaches every stop",
        ));
    }
    Ok(known)
}

#[derive(Deserialize)]
struct CategoryRow {
    rider_category_id: Option<String>,
    is_default_fare_category: Option<String>,
}

type Ids = (HashMap<String, usize>, Option<usize>);

fn read_categories(text: &str, warnings: &mut Vec<LoadWarning>) -> Result<Ids, LoadError> {
    let table = CsvTable::open(RIDER_CATEGORIES, text, &["rider_category_id"])?;
    warn_columns(
        &table,
        RIDER_CATEGORIES,
        &[
            "rider_category_id",
            "rider_category_name",
            "is_default_fare_category",
            "eligibility_url",
            "min_age",
            "max_age",
        ],
        warnings,
    );
    let mut index = HashMap::default();
    let mut lines: Vec<u64> = Vec::new();
    let mut default = None;
    for item in table.rows::<CategoryRow>() {
        let (row, record) = item?;
        let id = row.required("rider_category_id", &record.rider_category_id)?;
        if let Some(&first) = index.get(id) {
            return Err(row.err(LoadReason::Duplicate {
                what: "rider_category_id".into(),
                id: id.into(),
                first_line: lines[first],
            }));
        }
        let n = lines.len();
        if flag(
            &row,
            "is_default_fare_category",
            &record.is_default_fare_category,
        )? {
            if default.is_some() {
                warnings.push(warn(
                    RIDER_CATEGORIES,
                    Some(row.line),
                    Some("is_default_fare_category"),
                    "a second default category; the first one stays the default",
                ));
            } else {
                default = Some(n);
            }
        }
        index.insert(id.to_string(), n);
        lines.push(row.line);
    }
    Ok((index, default))
}

#[derive(Deserialize)]
struct MediumRow {
    fare_media_id: Option<String>,
    fare_media_type: Option<String>,
}

fn read_media(text: &str, warnings: &mut Vec<LoadWarning>) -> Result<Ids, LoadError> {
    let table = CsvTable::open(FARE_MEDIA, text, &["fare_media_id", "fare_media_type"])?;
    warn_columns(
        &table,
        FARE_MEDIA,
        &["fare_media_id", "fare_media_name", "fare_media_type"],
        warnings,
    );
    let mut index = HashMap::default();
    let mut lines: Vec<u64> = Vec::new();
    let mut default = None;
    for item in table.rows::<MediumRow>() {
        let (row, record) = item?;
        let id = row.required("fare_media_id", &record.fare_media_id)?;
        if let Some(&first) = index.get(id) {
            return Err(row.err(LoadReason::Duplicate {
                what: "fare_media_id".into(),
                id: id.into(),
                first_line: lines[first],
            }));
        }
        let kind_text = row.required("fare_media_type", &record.fare_media_type)?;
        let kind: u8 = match kind_text.parse() {
            Ok(k) if k <= 4 => k,
            _ => return Err(row.invalid("fare_media_type", kind_text, "expected 0 to 4")),
        };
        let n = lines.len();
        if kind == MEDIA_TYPE_MOBILE_APP && default.is_none() {
            default = Some(n);
        }
        index.insert(id.to_string(), n);
        lines.push(row.line);
    }
    Ok((index, default))
}

#[derive(Deserialize)]
struct ProductRow {
    fare_product_id: Option<String>,
    rider_category_id: Option<String>,
    fare_media_id: Option<String>,
    amount: Option<String>,
    currency: Option<String>,
}

type ProductsRead = (Currency, Vec<Product>, HashMap<String, usize>);

/// `fare_products.txt`: one row per (product, rider category, medium), all in one currency.
fn read_products(
    text: &str,
    categories: &HashMap<String, usize>,
    media: &HashMap<String, usize>,
    limits: &Limits,
    warnings: &mut Vec<LoadWarning>,
) -> Result<ProductsRead, LoadError> {
    let table = CsvTable::open(
        FARE_PRODUCTS,
        text,
        &["fare_product_id", "amount", "currency"],
    )?;
    warn_columns(
        &table,
        FARE_PRODUCTS,
        &[
            "fare_product_id",
            "fare_product_name",
            "rider_category_id",
            "fare_media_id",
            "amount",
            "currency",
        ],
        warnings,
    );
    let mut products: Vec<Product> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::default();
    let mut first_line: HashMap<(usize, Option<usize>, Option<usize>), u64> = HashMap::default();
    let mut currency: Option<(Currency, u64)> = None;
    let mut rows = 0u64;
    for item in table.rows::<ProductRow>() {
        let (row, record) = item?;
        rows += 1;
        Limits::check(FARE_PRODUCTS, "products_max", limits.products_max, rows)?;
        let id = row.required("fare_product_id", &record.fare_product_id)?;
        let lookup =
            |column: &str, value: &Option<String>, ids: &HashMap<String, usize>, file: &str| {
                match table::optional(value) {
                    None => Ok(None),
                    Some(v) => ids
                        .get(v)
                        .copied()
                        .map(Some)
                        .ok_or_else(|| unknown(&row, column, v, file)),
                }
            };
        let category = lookup(
            "rider_category_id",
            &record.rider_category_id,
            categories,
            RIDER_CATEGORIES,
        )?;
        let medium = lookup("fare_media_id", &record.fare_media_id, media, FARE_MEDIA)?;
        let row_currency = row.same_currency("currency", &record.currency, &mut currency)?;
        let amount_text = row.required("amount", &record.amount)?;
        let amount = row.amount("amount", amount_text, row_currency)?;
        let next = products.len();
        let p = *index.entry(id.to_string()).or_insert(next);
        if p == next {
            products.push(Product {
                variants: Vec::new(),
            });
        }
        if let Some(&first) = first_line.get(&(p, category, medium)) {
            return Err(row.err(LoadReason::Duplicate {
                what: "fare product (fare_product_id, rider_category_id, fare_media_id)".into(),
                id: [
                    Some(id),
                    table::optional(&record.rider_category_id),
                    table::optional(&record.fare_media_id),
                ]
                .map(|v| v.unwrap_or(""))
                .join(","),
                first_line: first,
            }));
        }
        first_line.insert((p, category, medium), row.line);
        products[p].variants.push(Variant {
            category,
            medium,
            amount,
        });
    }
    let Some((currency, _)) = currency else {
        return Err(LoadError::whole(
            FARE_PRODUCTS,
            LoadReason::Invalid("no fare products".to_string()),
        ));
    };
    Ok((currency, products, index))
}

#[derive(Deserialize)]
struct CalendarRow {
    service_id: Option<String>,
    monday: Option<String>,
    tuesday: Option<String>,
    wednesday: Option<String>,
    thursday: Option<String>,
    friday: Option<String>,
    saturday: Option<String>,
    sunday: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
}

#[derive(Deserialize)]
struct CalendarDateRow {
    service_id: Option<String>,
    date: Option<String>,
    exception_type: Option<String>,
}

fn date(row: &Row<'_>, column: &str, value: &Option<String>) -> Result<u32, LoadError> {
    let text = row.required(column, value)?;
    match text.parse::<u32>() {
        Ok(d) if text.len() == 8 && weekday(d).is_some() => Ok(d),
        _ => Err(row.invalid(column, text, "expected a date YYYYMMDD")),
    }
}

/// The service days of `calendar.txt` and `calendar_dates.txt`, for timeframes' `service_id`.
fn read_calendars(
    by_name: &HashMap<&str, &str>,
    limits: &Limits,
) -> Result<HashMap<String, Service>, LoadError> {
    let mut services: HashMap<String, Service> = HashMap::default();
    let mut rows = 0u64;
    if let Some(text) = by_name.get(CALENDAR) {
        let table = CsvTable::open(CALENDAR, text, &["service_id", "start_date", "end_date"])?;
        for item in table.rows::<CalendarRow>() {
            let (row, r) = item?;
            rows += 1;
            Limits::check(CALENDAR, "timeframes_max", limits.timeframes_max, rows)?;
            let id = row.required("service_id", &r.service_id)?;
            let mut days = [false; 7];
            for (i, (column, value)) in [
                ("monday", &r.monday),
                ("tuesday", &r.tuesday),
                ("wednesday", &r.wednesday),
                ("thursday", &r.thursday),
                ("friday", &r.friday),
                ("saturday", &r.saturday),
                ("sunday", &r.sunday),
            ]
            .into_iter()
            .enumerate()
            {
                days[i] = flag(&row, column, value)?;
            }
            let from = date(&row, "start_date", &r.start_date)?;
            let to = date(&row, "end_date", &r.end_date)?;
            services.entry(id.to_string()).or_default().weekdays = Some((days, from, to));
        }
    }
    if let Some(text) = by_name.get(CALENDAR_DATES) {
        let table = CsvTable::open(
            CALENDAR_DATES,
            text,
            &["service_id", "date", "exception_type"],
        )?;
        for item in table.rows::<CalendarDateRow>() {
            let (row, r) = item?;
            rows += 1;
            Limits::check(
                CALENDAR_DATES,
                "timeframes_max",
                limits.timeframes_max,
                rows,
            )?;
            let id = row.required("service_id", &r.service_id)?;
            let day = date(&row, "date", &r.date)?;
            let service = services.entry(id.to_string()).or_default();
            match row.required("exception_type", &r.exception_type)? {
                "1" => service.added.insert(day),
                "2" => service.removed.insert(day),
                other => return Err(row.invalid("exception_type", other, "expected 1 or 2")),
            };
        }
    }
    Ok(services)
}

#[derive(Deserialize)]
struct TimeframeRow {
    timeframe_group_id: Option<String>,
    start_time: Option<String>,
    end_time: Option<String>,
    service_id: Option<String>,
}

/// `HH:MM:SS` as seconds; hours may pass 24 only where `max_s` allows.
fn time_of_day(row: &Row<'_>, column: &str, text: &str) -> Result<i64, LoadError> {
    let expected = "expected a time HH:MM:SS no later than 24:00:00";
    let parts: Vec<&str> = text.split(':').collect();
    let [h, m, s] = parts[..] else {
        return Err(row.invalid(column, text, expected));
    };
    let num = |p: &str| -> Option<i64> {
        (!p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse().ok())?
    };
    match (num(h), num(m), num(s)) {
        (Some(h), Some(m), Some(s)) if m < 60 && s < 60 && h * 3600 + m * 60 + s <= 86_400 => {
            Ok(h * 3600 + m * 60 + s)
        }
        _ => Err(row.invalid(column, text, expected)),
    }
}

type TimeframesRead = (Vec<Vec<Timeframe>>, HashMap<String, usize>);

fn read_timeframes(
    text: &str,
    services: &HashMap<String, Service>,
    limits: &Limits,
    warnings: &mut Vec<LoadWarning>,
) -> Result<TimeframesRead, LoadError> {
    let table = CsvTable::open(TIMEFRAMES, text, &["timeframe_group_id"])?;
    warn_columns(
        &table,
        TIMEFRAMES,
        &["timeframe_group_id", "start_time", "end_time", "service_id"],
        warnings,
    );
    let mut groups: Vec<Vec<Timeframe>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::default();
    let mut rows = 0u64;
    for item in table.rows::<TimeframeRow>() {
        let (row, r) = item?;
        rows += 1;
        Limits::check(TIMEFRAMES, "timeframes_max", limits.timeframes_max, rows)?;
        let id = row.required("timeframe_group_id", &r.timeframe_group_id)?;
        let (start_s, end_s) = match (table::optional(&r.start_time), table::optional(&r.end_time))
        {
            (None, None) => (0, 86_400),
            (Some(a), Some(b)) => (
                time_of_day(&row, "start_time", a)?,
                time_of_day(&row, "end_time", b)?,
            ),
            _ => {
                return Err(row.err(LoadReason::MissingValue {
                    column: "start_time and end_time (both or neither)".into(),
                }))
            }
        };
        if end_s <= start_s {
            return Err(row.invalid(
                "end_time",
                table::optional(&r.end_time).unwrap_or(""),
                "must be after start_time",
            ));
        }
        let service = table::optional(&r.service_id).map(str::to_string);
        if let Some(s) = &service {
            if !services.contains_key(s) {
                warnings.push(warn(
                    TIMEFRAMES,
                    Some(row.line),
                    Some("service_id"),
                    &format!(
                        "service_id {s:?} is in neither calendar.txt nor calendar_dates.txt; \
                         this timeframe never holds, so rules naming it never apply"
                    ),
                ));
            }
        }
        let next = groups.len();
        let g = *index.entry(id.to_string()).or_insert(next);
        if g == next {
            groups.push(Vec::new());
        }
        groups[g].push(Timeframe {
            start_s,
            end_s,
            service,
        });
    }
    Ok((groups, index))
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
    transfer_only: Option<String>,
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
    filter_fare_product_id: Option<String>,
    fare_media_behavior: Option<String>,
}

#[derive(Deserialize)]
struct JoinRuleRow {
    from_network_id: Option<String>,
    to_network_id: Option<String>,
    from_stop_id: Option<String>,
    to_stop_id: Option<String>,
}

const JOIN_RULE_COLUMNS: &[&str] = &[
    "from_network_id",
    "to_network_id",
    "from_stop_id",
    "to_stop_id",
];

/// `fare_leg_join_rules.txt`. A row naming a network or stop the feed does not have can never
/// join two legs; it is a warning and skipped, not a refused feed. A row joining two different
/// networks is kept with a warning: the spec matches an effective fare leg only by a network all
/// its legs share, so such a leg is matched as if on no listed network.
fn read_join_rules(
    text: &str,
    stop_index: &HashMap<String, usize>,
    known_networks: Option<&HashSet<String>>,
    limits: &Limits,
    warnings: &mut Vec<LoadWarning>,
) -> Result<Vec<JoinRule>, LoadError> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let table = CsvTable::open(
        FARE_LEG_JOIN_RULES,
        text,
        &["from_network_id", "to_network_id"],
    )?;
    warn_columns(&table, FARE_LEG_JOIN_RULES, JOIN_RULE_COLUMNS, warnings);
    let mut rules = Vec::new();
    type JoinKey = (String, String, Option<(usize, usize)>);
    let mut first_line: HashMap<JoinKey, u64> = HashMap::default();
    for item in table.rows::<JoinRuleRow>() {
        let (row, record) = item?;
        let from_network = row.required("from_network_id", &record.from_network_id)?;
        let to_network = row.required("to_network_id", &record.to_network_id)?;
        let mut skip = None;
        for (column, id) in [
            ("from_network_id", from_network),
            ("to_network_id", to_network),
        ] {
            if known_networks.is_some_and(|known| !known.contains(id)) {
                skip = Some((
                    column,
                    format!("network {id:?} is not in networks.txt or routes.txt"),
                ));
            }
        }
        let stops = match (
            table::optional(&record.from_stop_id),
            table::optional(&record.to_stop_id),
        ) {
            (None, None) => None,
            (Some(from), Some(to)) => match (stop_index.get(from), stop_index.get(to)) {
                (Some(&f), Some(&t)) => Some((f, t)),
                (None, _) => {
                    skip = Some(("from_stop_id", format!("stop {from:?} is not in stops.txt")));
                    None
                }
                (_, None) => {
                    skip = Some(("to_stop_id", format!("stop {to:?} is not in stops.txt")));
                    None
                }
            },
            (Some(_), None) => {
                return Err(row.invalid("to_stop_id", "", "required when from_stop_id is given"))
            }
            (None, Some(_)) => {
                return Err(row.invalid("from_stop_id", "", "required when to_stop_id is given"))
            }
        };
        if let Some((column, why)) = skip {
            warnings.push(warn(
                FARE_LEG_JOIN_RULES,
                Some(row.line),
                Some(column),
                &format!("{why}: this row can never join two legs and is skipped"),
            ));
            continue;
        }
        let key = (from_network.to_string(), to_network.to_string(), stops);
        if let Some(&first) = first_line.get(&key) {
            return Err(row.err(LoadReason::Duplicate {
                what: "join rule (from_network_id, to_network_id, from_stop_id, to_stop_id)"
                    .to_string(),
                id: [
                    Some(from_network),
                    Some(to_network),
                    table::optional(&record.from_stop_id),
                    table::optional(&record.to_stop_id),
                ]
                .map(|v| v.unwrap_or(""))
                .join(","),
                first_line: first,
            }));
        }
        first_line.insert(key, row.line);
        if from_network != to_network {
            warnings.push(warn(
                FARE_LEG_JOIN_RULES,
                Some(row.line),
                Some("to_network_id"),
                "joins legs of two networks: the effective fare leg has no network all its legs \
                 share, so it is matched as a leg on a network no rule lists (rules with an \
                 empty network_id)",
            ));
        }
        rules.push(JoinRule {
            from_network: from_network.to_string(),
            to_network: to_network.to_string(),
            stops,
        });
        Limits::check(
            FARE_LEG_JOIN_RULES,
            "rules_max",
            limits.rules_max,
            rules.len() as u64,
        )?;
    }
    Ok(rules)
}
