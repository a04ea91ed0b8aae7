//! The passenger-flow API's JSON (public listener, no authentication; docs/flow.md): how busy
//! each station is now compared with the usual, a station's minutes, its forecast, and the
//! operator's punctuality feed as loaded.

use serde::{Deserialize, Serialize};

/// `GET /v1/flow/operators`: the operators whose stations the flow API answers for (those with a
/// fare network in force), by id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowOperators {
    pub operators: Vec<FlowOperator>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowOperator {
    pub operator_id: String,
    /// `metro` or `toll`.
    pub mode: String,
    /// Stations (metro) or toll points of the network.
    pub stations: usize,
}

/// `GET /v1/flow/stations` and each event of `GET /v1/flow/stream`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StationsNow {
    pub operator_id: String,
    /// The window's end (exclusive; the end of the current minute), UTC Unix milliseconds.
    pub until_ms: i64,
    pub window_minutes: i64,
    /// Previous weeks the usual level is the mean of.
    pub usual_weeks: u32,
    pub stations: Vec<StationNow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StationNow {
    pub location_id: String,
    pub name: String,
    /// Approved entries and exits in the window.
    pub entries: i64,
    pub exits: i64,
    /// Mean entries + exits of the same window on the same weekday over the previous weeks with
    /// history; null without history.
    pub usual: Option<f64>,
    /// (entries + exits) / usual, in percent (100 = as usual); null without history or when
    /// the usual level is zero.
    pub percent_of_usual: Option<i64>,
    /// The latest delay the operator's TripUpdates feed gave for this stop, in seconds
    /// (negative: early); null when none was loaded.
    pub delay_s: Option<i64>,
    /// When that feed was produced (its header timestamp), UTC Unix milliseconds.
    pub delay_at_ms: Option<i64>,
}

/// `GET /v1/flow/stations/{location_id}`: one station's minutes, oldest first, every minute of
/// the range present (zero when nobody passed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StationSeries {
    pub operator_id: String,
    pub location_id: String,
    pub minutes: Vec<MinuteFlow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MinuteFlow {
    pub minute_start_ms: i64,
    pub entries: i64,
    pub exits: i64,
}

/// `GET /v1/flow/stations/{location_id}/forecast`: expected entries and exits per hour, the
/// current hour first; empty without history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StationForecast {
    pub operator_id: String,
    pub location_id: String,
    pub usual_weeks: u32,
    pub hours: Vec<HourForecast>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HourForecast {
    pub hour_start_ms: i64,
    pub entries: f64,
    pub exits: f64,
}

/// `POST /v1/admin/flow/trip-updates`: what the uploaded feed gave.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TripUpdatesLoaded {
    /// Stations of the network whose latest delay the feed set.
    pub stops: usize,
    /// Stops the feed named that are not stations of the operator's network (left out).
    pub unknown_stops: usize,
    /// The feed's header timestamp, UTC Unix milliseconds.
    pub feed_at_ms: i64,
}
