//! The fare networks in force: for each operator, its mode (metro or toll), time zone, currency,
//! daily cap and pricing data. Rebuilt from the database's newest fare data at start and after the
//! admin API loads new data; taps read an immutable snapshot.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use anyhow::{bail, Context};
use turnpike_fares::{FareQuery, GtfsFeed, Limits, LoadWarning, MetroFares, ServiceDay, TollTable};
use turnpike_wire::api::VehicleClass;
use turnpike_wire::{Currency, Money};

use crate::store::{OperatorRow, Store};
pub use turnpike_wire::api::admin::FareData;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Metro,
    Toll,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "metro" => Some(Mode::Metro),
            "toll" => Some(Mode::Toll),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Metro => "metro",
            Mode::Toll => "toll",
        }
    }

    /// The kind of charge a journey in this mode makes.
    pub fn charge_kind(self) -> crate::store::charging::ChargeKind {
        use crate::store::charging::ChargeKind;
        match self {
            Mode::Metro => ChargeKind::Metro,
            Mode::Toll => ChargeKind::Toll,
        }
    }

    /// The credential product flag a rider needs for this mode.
    pub fn product_bit(self) -> u16 {
        match self {
            Mode::Metro => turnpike_wire::ridecode::ProductFlags::METRO.bits(),
            Mode::Toll => turnpike_wire::ridecode::ProductFlags::TOLL.bits(),
        }
    }
}

pub enum Pricing {
    Metro(MetroFares),
    Toll(TollTable),
}

/// The bounds of one operator's fare data: the fares crate's defaults (1,000,000 stops, 100,000
/// areas, 1,000,000 rules, 256 MB of text — beyond the admin API's 16 MiB body, so an upload
/// meets the row limits first). Pricing memory is linear in these, never their square; an upload
/// past one is a 422 naming it.
pub fn fare_limits() -> Limits {
    Limits::default()
}

pub struct OperatorNetwork {
    operator: OperatorRow,
    time_zone: jiff::tz::TimeZone,
    currency: Currency,
    daily_cap: Option<Money>,
    pricing: Pricing,
    /// The rider category and medium taps are priced for (GTFS; `FareData`'s optional fields).
    fare_query: FareQuery,
    pub fare_version: i64,
}

impl OperatorNetwork {
    pub fn operator_id(&self) -> &str {
        &self.operator.operator_id
    }

    pub fn mode(&self) -> Mode {
        match self.pricing {
            Pricing::Metro(_) => Mode::Metro,
            Pricing::Toll(_) => Mode::Toll,
        }
    }

    pub fn daily_cap(&self) -> Option<Money> {
        self.daily_cap
    }

    /// What a journey of `fare` is charged when the rider's fares of its business day came to
    /// `day_before_minor` before it: `min(cap, total after) − min(cap, total before)`, or the
    /// fare when there is no cap. However the day's journeys are ordered, the charges add up to
    /// `min(cap, sum of fares)`. The one place the cap rule is written (the engine and the
    /// sweeper both ask here).
    pub fn capped_charge(&self, day_before_minor: i64, fare: Money) -> Money {
        let Some(cap) = self.daily_cap else {
            return fare;
        };
        let (cap, fare_minor) = (cap.to_minor(), fare.to_minor());
        let charge = (day_before_minor + fare_minor).min(cap) - day_before_minor.min(cap);
        Money::from_minor(charge, fare.currency())
    }

    /// Every station or plaza: (id, name).
    pub fn locations(&self) -> Vec<(&str, &str)> {
        match &self.pricing {
            Pricing::Metro(m) => m
                .stops()
                .iter()
                .map(|s| (s.id.as_str(), s.name.as_str()))
                .collect(),
            Pricing::Toll(t) => t
                .plazas()
                .iter()
                .map(|p| (p.id.as_str(), p.name.as_str()))
                .collect(),
        }
    }

    pub fn has_location(&self, location_id: &str) -> bool {
        match &self.pricing {
            Pricing::Metro(m) => m.stop(location_id).is_some(),
            Pricing::Toll(t) => t.plaza(location_id).is_ok(),
        }
    }

    pub fn min_fare(&self) -> Money {
        match &self.pricing {
            Pricing::Metro(m) => m.min_fare(),
            Pricing::Toll(_) => Money::zero(self.currency),
        }
    }

    pub fn max_fare(&self) -> Money {
        match &self.pricing {
            Pricing::Metro(m) => m.max_fare(),
            Pricing::Toll(_) => Money::zero(self.currency),
        }
    }

    /// The metro fare between two stations with no time (a ticket bought ahead; GTFS rules with
    /// a timeframe do not apply); None if this is not a metro network or either station has no
    /// fare.
    pub fn metro_fare(&self, from: &str, to: &str) -> Option<Money> {
        match &self.pricing {
            Pricing::Metro(m) => m.price(from, to).ok(),
            Pricing::Toll(_) => None,
        }
    }

    /// The metro fare of a journey entered at `entry_at_ms` and left at `exit_at_ms`: GTFS
    /// timeframes see the taps' times of day on the entry's service day — its date in the
    /// operator's time zone, counted from that date's midnight — with the network's configured
    /// rider category and medium. A matrix ignores the times.
    pub fn metro_fare_at(
        &self,
        from: &str,
        to: &str,
        entry_at_ms: i64,
        exit_at_ms: i64,
    ) -> Option<Money> {
        let Pricing::Metro(m) = &self.pricing else {
            return None;
        };
        if m.feed().is_none() {
            return m.price(from, to).ok();
        }
        let query = FareQuery {
            service_day: self.service_day(entry_at_ms),
            ..self.fare_query.clone()
        };
        m.price_at(
            from,
            to,
            entry_at_ms.div_euclid(1000),
            exit_at_ms.div_euclid(1000),
            Some(&query),
        )
        .ok()
    }

    /// The service day of an instant: its date in the operator's zone and that date's start.
    fn service_day(&self, at_ms: i64) -> Option<ServiceDay> {
        let zoned = jiff::Timestamp::from_millisecond(at_ms)
            .ok()?
            .to_zoned(self.time_zone.clone());
        let date = zoned.date();
        let start = zoned.start_of_day().ok()?;
        let ymd = u32::try_from(
            i32::from(date.year()) * 10_000 + i32::from(date.month()) * 100 + i32::from(date.day()),
        )
        .ok()?;
        Some(ServiceDay {
            date: ymd,
            start_s: start.timestamp().as_second(),
        })
    }

    /// What the fare data's loader did not use as written (GTFS feeds; none for other formats).
    pub fn fare_warnings(&self) -> &[LoadWarning] {
        match &self.pricing {
            Pricing::Metro(m) => m.feed().map_or(&[], GtfsFeed::warnings),
            Pricing::Toll(_) => &[],
        }
    }

    /// The toll between two plazas; None if this is not a toll network or a plaza is unknown.
    pub fn toll(&self, entry: &str, exit: &str, class: VehicleClass) -> Option<Money> {
        match &self.pricing {
            Pricing::Toll(t) => t.toll(entry, exit, class).ok(),
            Pricing::Metro(_) => None,
        }
    }

    /// What a journey with no exit costs. Metro: the network's maximum fare. Toll: the longest
    /// trip from the entry plaza at the smallest vehicle class, since the class is only known at
    /// the exit.
    pub fn incomplete_fare(&self, entry_location: &str) -> Money {
        match &self.pricing {
            Pricing::Metro(m) => m.max_fare(),
            Pricing::Toll(t) => t
                .plazas()
                .iter()
                .filter_map(|exit| t.toll(entry_location, &exit.id, VehicleClass::P1).ok())
                .max_by_key(Money::to_minor)
                .unwrap_or(Money::zero(self.currency)),
        }
    }

    /// The operator's business day (`YYYY-MM-DD` in its time zone) of an instant.
    pub fn business_day(&self, at_ms: i64) -> String {
        match jiff::Timestamp::from_millisecond(at_ms) {
            Ok(ts) => ts.to_zoned(self.time_zone.clone()).date().to_string(),
            Err(_) => "invalid".into(),
        }
    }
}

/// Parses fare data for an operator; the error says which file and line is wrong.
pub fn build_pricing(mode: Mode, data: &FareData) -> anyhow::Result<Pricing> {
    let file = |name: &str| -> anyhow::Result<&str> {
        data.files
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("fare data format {} needs file {name}", data.format))
    };
    let pricing = match (mode, data.format.as_str()) {
        (Mode::Metro, "demo_metro") => Pricing::Metro(turnpike_fares::demo_metro()),
        (Mode::Toll, "demo_toll") => Pricing::Toll(turnpike_fares::demo_toll()),
        (Mode::Metro, "gtfs") => {
            let files: Vec<(&str, &str)> = data
                .files
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let feed = std::sync::Arc::new(GtfsFeed::load(&files, &fare_limits())?);
            let network_id = network_of(&feed, data.network_id.as_deref())?;
            Pricing::Metro(feed.into_metro_fares(&network_id, fare_query(data))?)
        }
        (Mode::Metro, "matrix") => Pricing::Metro(MetroFares::from_matrix_csv_with(
            ("stops.csv", file("stops.csv")?),
            ("fare_matrix.csv", file("fare_matrix.csv")?),
            &fare_limits(),
        )?),
        (Mode::Toll, "toll") => Pricing::Toll(TollTable::from_csv(
            ("plazas.csv", file("plazas.csv")?),
            ("rates.csv", file("rates.csv")?),
        )?),
        (mode, format) => bail!(
            "fare data format {format:?} does not fit a {} operator",
            mode.as_str()
        ),
    };
    Ok(pricing)
}

/// The rider category and medium an upload configures (no service day: that is per tap).
fn fare_query(data: &FareData) -> FareQuery {
    FareQuery {
        rider_category: data.rider_category_id.clone(),
        fare_medium: data.fare_media_id.clone(),
        service_day: None,
    }
}

/// The network an upload runs: the one it names, which must be the feed's (an empty id means
/// the rules without a network), or by default the feed's only network; a feed with several
/// needs `network_id`, and the error lists them.
fn network_of(feed: &GtfsFeed, asked: Option<&str>) -> anyhow::Result<String> {
    let ids = feed.network_ids();
    match (asked, ids.as_slice()) {
        (Some(""), _) | (None, []) => Ok(String::new()),
        (Some(id), _) if ids.contains(&id) => Ok(id.to_string()),
        (Some(id), _) => bail!(
            "network_id {id:?} is not a network of the feed's fare_leg_rules.txt; its networks: {ids:?}"
        ),
        (None, [only]) => Ok((*only).to_string()),
        (None, many) => bail!(
            "the feed has {} networks {many:?}: say which one this operator runs in network_id",
            many.len()
        ),
    }
}

/// The currency the fare data prices in.
fn pricing_currency(pricing: &Pricing) -> Currency {
    match pricing {
        Pricing::Metro(m) => m.currency(),
        Pricing::Toll(t) => t.currency(),
    }
}

pub fn build_network(
    operator: OperatorRow,
    data: &FareData,
    fare_version: i64,
) -> anyhow::Result<OperatorNetwork> {
    let mode =
        Mode::parse(&operator.mode).with_context(|| format!("operator mode {}", operator.mode))?;
    let time_zone = jiff::tz::TimeZone::get(&operator.time_zone)
        .with_context(|| format!("unknown time zone {}", operator.time_zone))?;
    let currency = Currency::parse(&operator.currency).map_err(|e| anyhow::anyhow!("{e}"))?;
    let daily_cap = operator
        .daily_cap_minor
        .map(|m| Money::from_minor(m, currency));
    let pricing = build_pricing(mode, data)?;
    let fares_in = pricing_currency(&pricing);
    if fares_in != currency {
        bail!(
            "the fare data prices in {} but operator {} charges in {}; upload fares in {} or change the operator's currency",
            fares_in.code(),
            operator.operator_id,
            currency.code(),
            currency.code()
        );
    }
    Ok(OperatorNetwork {
        operator,
        time_zone,
        currency,
        daily_cap,
        pricing,
        fare_query: fare_query(data),
        fare_version,
    })
}

/// All operators' networks; the map is swapped whole when fare data changes.
#[derive(Default)]
pub struct Networks {
    map: RwLock<Arc<HashMap<String, Arc<OperatorNetwork>>>>,
    /// One reload at a time, so a periodic reload that read the database before an admin's
    /// change cannot store its older map after the admin's own reload.
    reloading: tokio::sync::Mutex<()>,
}

impl Networks {
    /// Every network in force, by operator id.
    pub fn all(&self) -> Vec<Arc<OperatorNetwork>> {
        let mut all: Vec<Arc<OperatorNetwork>> = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.operator_id().cmp(b.operator_id()));
        all
    }

    pub fn get(&self, operator_id: &str) -> Option<Arc<OperatorNetwork>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(operator_id)
            .cloned()
    }

    /// Brings the networks in force up to date with the database: a network is rebuilt only
    /// when its operator's newest fare data version or the operator itself (time zone, cap)
    /// changed; the others are kept as they are. (Rebuilding all of them every refresh, as this
    /// did, re-read and re-parsed every feed each second — seconds of CPU for a big network.)
    /// A network whose stored data no longer parses is left out (and logged): its terminals get
    /// `network_not_configured` until fixed.
    pub async fn reload(&self, store: &Store) -> anyhow::Result<()> {
        let _one_at_a_time = self.reloading.lock().await;
        let operators: HashMap<String, OperatorRow> = store
            .operators()
            .await?
            .into_iter()
            .map(|o| (o.operator_id.clone(), o))
            .collect();
        let in_force = self.map.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut map = HashMap::new();
        let mut rebuilt = 0;
        for (operator_id, version) in store.latest_fare_versions().await? {
            let Some(operator) = operators.get(&operator_id) else {
                continue;
            };
            if let Some(network) = in_force.get(&operator_id) {
                if network.fare_version == version && network.operator == *operator {
                    map.insert(operator_id, network.clone());
                    continue;
                }
            }
            let Some((format, files_json)) = store.fare_data(&operator_id, version).await? else {
                continue;
            };
            let data = match serde_json::from_str::<FareData>(&files_json) {
                Ok(data) if data.format == format => data,
                _ => {
                    tracing::error!(operator_id, version, "stored fare data is not valid JSON");
                    continue;
                }
            };
            rebuilt += 1;
            match build_network(operator.clone(), &data, version) {
                Ok(network) => {
                    map.insert(operator_id, Arc::new(network));
                }
                Err(e) => {
                    tracing::error!(operator_id, version, error = %e, "stored fare data does not load")
                }
            }
        }
        if rebuilt > 0 || map.len() != in_force.len() {
            *self.map.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
        }
        Ok(())
    }
}

/// A demo network (the embedded demo metro or toll data), for unit tests of the rules.
#[cfg(test)]
pub(crate) fn demo_network(mode: Mode, daily_cap_minor: Option<i64>) -> OperatorNetwork {
    let currency = Currency::parse("CNY").expect("CNY");
    OperatorNetwork {
        operator: OperatorRow {
            operator_id: mode.as_str().into(),
            name: mode.as_str().into(),
            mode: mode.as_str().into(),
            time_zone: "Asia/Shanghai".into(),
            currency: "CNY".into(),
            daily_cap_minor,
            created_at_ms: 0,
        },
        time_zone: jiff::tz::TimeZone::get("Asia/Shanghai").expect("zone"),
        currency,
        daily_cap: daily_cap_minor.map(|m| Money::from_minor(m, currency)),
        pricing: match mode {
            Mode::Metro => Pricing::Metro(turnpike_fares::demo_metro()),
            Mode::Toll => Pricing::Toll(turnpike_fares::demo_toll()),
        },
        fare_query: FareQuery::default(),
        fare_version: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metro(daily_cap_minor: Option<i64>) -> OperatorNetwork {
        demo_network(Mode::Metro, daily_cap_minor)
    }

    /// Proves the cap rule: in every order of a day's fares the charges add up to
    /// `min(cap, sum of fares)`, none is negative, and without a cap each journey pays its fare.
    #[test]
    fn capped_charges_add_up_to_the_cap_in_any_order() {
        let currency = Currency::parse("CNY").expect("CNY");
        let fares = [300i64, 700, 400, 1_000, 200];
        let capped = metro(Some(1_500));
        let uncapped = metro(None);
        // Every rotation and its reverse: the day's order does not change the total.
        for start in 0..fares.len() {
            for reverse in [false, true] {
                let mut order: Vec<i64> =
                    fares.iter().cycle().skip(start).take(5).copied().collect();
                if reverse {
                    order.reverse();
                }
                let (mut before, mut total, mut plain) = (0, 0, 0);
                for &fare in &order {
                    let fare = Money::from_minor(fare, currency);
                    let charge = capped.capped_charge(before, fare).to_minor();
                    assert!((0..=fare.to_minor()).contains(&charge), "{order:?}");
                    total += charge;
                    plain += uncapped.capped_charge(before, fare).to_minor();
                    before += fare.to_minor();
                }
                assert_eq!(total, 1_500, "{order:?}");
                assert_eq!(plain, fares.iter().sum::<i64>(), "{order:?}");
            }
        }
    }
}

#[cfg(test)]
mod fares_v2_tests {
    use super::*;

    /// Proves an exit is priced with the taps' time of day on the operator's service day: the
    /// off-peak rule (weekdays from 09:00 Asia/Shanghai) applies at 10:00 local, not at 08:00,
    /// and not on a Saturday; with no time the peak fare is charged.
    #[test]
    fn exits_are_priced_at_the_taps_local_time() {
        let files = [
            ("stops.txt", "stop_id,stop_name\na,A\nb,B\n"),
            ("fare_products.txt", "fare_product_id,amount,currency\npeak,3.00,CNY\noff,2.00,CNY\n"),
            ("timeframes.txt", "timeframe_group_id,start_time,end_time,service_id\noffpeak,09:00:00,24:00:00,wk\n"),
            ("calendar.txt", "service_id,monday,tuesday,wednesday,thursday,friday,saturday,sunday,start_date,end_date\nwk,1,1,1,1,1,0,0,20260101,20271231\n"),
            ("fare_leg_rules.txt", "fare_product_id,from_timeframe_group_id,rule_priority\npeak,,0\noff,offpeak,1\n"),
        ];
        let data = FareData {
            format: "gtfs".into(),
            network_id: None,
            rider_category_id: None,
            fare_media_id: None,
            files: files
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let operator = demo_network(Mode::Metro, None).operator;
        let network = build_network(operator, &data, 1).unwrap();
        let at = |local: &str| {
            jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M", local)
                .unwrap()
                .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
                .unwrap()
                .timestamp()
                .as_millisecond()
        };
        let fare = |entry: &str| {
            let t = at(entry);
            network
                .metro_fare_at("a", "b", t, t + 600_000)
                .unwrap()
                .to_minor()
        };
        assert_eq!(fare("2026-12-02 08:00"), 300); // Wednesday, peak
        assert_eq!(fare("2026-12-02 10:00"), 200); // Wednesday, off-peak
        assert_eq!(fare("2026-12-05 10:00"), 300); // Saturday
        assert_eq!(network.metro_fare("a", "b").unwrap().to_minor(), 300);
    }
}
