//! Live passenger flow (public listener, no authentication; docs/flow.md): how busy each
//! station is compared with the usual, a station's minutes, its forecast, and a Server-Sent
//! Events stream of the stations. Every answer reads bounded key ranges of `station_flow`
//! (`store/flow.rs`), never the taps; each request spends its source address's flow budget
//! (`limits.flow_*`), and the streams open at once are bounded (`flow.streams_max`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::watch;
use turnpike_wire::api::flow::{
    FlowOperator, FlowOperators, HourForecast, MinuteFlow, StationForecast, StationNow,
    StationSeries, StationsNow, TripUpdatesLoaded,
};

use super::{check_id, ClientAddress, ValidQuery};
use crate::error::{ApiError, ApiResult};
use crate::flow::{self, ForecastInput, MINUTES_PER_HOUR, MINUTE_MS, WINDOW_MINUTES};
use crate::network::OperatorNetwork;
use crate::store::flow::Totals;
use crate::AppState;

/// Most minutes one series answer holds (a day).
pub const SERIES_MINUTES_MAX: i64 = 1440;
/// Minutes a series answer holds when the request does not say.
pub const SERIES_MINUTES_DEFAULT: i64 = 60;
/// Most hours one forecast answer holds.
pub const FORECAST_HOURS_MAX: i64 = 24;
/// Hours a forecast answer holds when the request does not say.
pub const FORECAST_HOURS_DEFAULT: i64 = 6;

#[derive(Clone)]
struct FlowState {
    app: AppState,
    /// Becomes true when the gateway shuts down: open streams end.
    stop: watch::Receiver<bool>,
}

pub fn router(app: AppState, stop: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/v1/flow/operators", get(operators))
        .route("/v1/flow/stations", get(stations))
        .route("/v1/flow/stations/{location_id}", get(series))
        .route("/v1/flow/stations/{location_id}/forecast", get(forecast))
        .route("/v1/flow/stream", get(stream))
        .with_state(FlowState { app, stop })
}

/// A TripUpdates feed of a large network is a few MiB.
pub const TRIP_UPDATES_BYTES_MAX: usize = 16 * 1024 * 1024;

/// `POST /v1/admin/flow/trip-updates` (admin token): the operator's delay feed.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/v1/admin/flow/trip-updates", post(trip_updates))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::admin::require_admin,
        ))
        .layer(DefaultBodyLimit::max(TRIP_UPDATES_BYTES_MAX))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorQuery {
    operator_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesQuery {
    operator_id: String,
    minutes: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForecastQuery {
    operator_id: String,
    hours: Option<i64>,
}

/// Spends the caller's flow budget (429 `rate_limited` past it).
fn spend(state: &AppState, headers: &HeaderMap, address: ClientAddress) -> ApiResult<()> {
    let from = super::client_address(headers, address, &state.config.limits.client_address_header);
    state.limits.flow_reader(from)
}

/// The operator's network in force: 422 `invalid_id` for a malformed id, 404 `not_found` for
/// one with no network.
fn network(state: &AppState, operator_id: &str) -> ApiResult<Arc<OperatorNetwork>> {
    check_id("operator_id", operator_id)?;
    state.networks.get(operator_id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no operator {operator_id} with a fare network in force"
        ))
    })
}

/// A station of the network: 422 `invalid_id`, or 404 `not_found`.
fn station(network: &OperatorNetwork, location_id: &str) -> ApiResult<()> {
    check_id("location_id", location_id)?;
    if network.has_location(location_id) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "operator {} has no station {location_id}",
            network.operator_id()
        )))
    }
}

/// A bounded count parameter: 422 `code` outside `1..=max`.
fn bounded(
    value: Option<i64>,
    default: i64,
    max: i64,
    name: &str,
    code: &'static str,
) -> ApiResult<i64> {
    let value = value.unwrap_or(default);
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::unprocessable(
            code,
            format!("{name} must be 1..={max}"),
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoQuery {}

/// `GET /v1/flow/operators`: what a station board offers to choose from.
async fn operators(
    State(s): State<FlowState>,
    headers: HeaderMap,
    axum::Extension(address): axum::Extension<ClientAddress>,
    ValidQuery(_): ValidQuery<NoQuery>,
) -> ApiResult<Json<FlowOperators>> {
    spend(&s.app, &headers, address)?;
    Ok(Json(FlowOperators {
        operators: s
            .app
            .networks
            .all()
            .iter()
            .map(|n| FlowOperator {
                operator_id: n.operator_id().to_string(),
                mode: n.mode().as_str().to_string(),
                stations: n.locations().len(),
            })
            .collect(),
    }))
}

async fn stations(
    State(s): State<FlowState>,
    headers: HeaderMap,
    axum::Extension(address): axum::Extension<ClientAddress>,
    ValidQuery(q): ValidQuery<OperatorQuery>,
) -> ApiResult<Json<StationsNow>> {
    spend(&s.app, &headers, address)?;
    let network = network(&s.app, &q.operator_id)?;
    Ok(Json(stations_now(&s.app, &network).await?))
}

/// Every station of the network now: the window's counts, the usual level and the delay.
pub async fn stations_now(
    state: &AppState,
    network: &OperatorNetwork,
) -> Result<StationsNow, sqlx::Error> {
    let operator_id = network.operator_id();
    let weeks = state.config.flow.usual_weeks;
    let end = flow::minute_of(state.clock.now_ms()) + 1;
    let start = end - WINDOW_MINUTES;
    let store = &state.store;
    let now: HashMap<String, Totals> = store
        .flow_totals(operator_id, start, end)
        .await?
        .into_iter()
        .collect();
    let first = store.flow_first_minute(operator_id).await?;
    // Per previous week: the stations' totals, or None before the operator's history began.
    let mut past: Vec<Option<HashMap<String, Totals>>> = Vec::new();
    for (from, to) in flow::usual_windows(start, end, weeks) {
        past.push(match first {
            Some(first) if from >= first => Some(
                store
                    .flow_totals(operator_id, from, to)
                    .await?
                    .into_iter()
                    .collect(),
            ),
            _ => None,
        });
    }
    let delays: HashMap<String, (i64, i64)> = store
        .stop_delays(operator_id)
        .await?
        .into_iter()
        .map(|(stop, delay_s, at_ms)| (stop, (delay_s, at_ms)))
        .collect();
    let stations = network
        .locations()
        .into_iter()
        .map(|(id, name)| {
            let current = now.get(id).cloned().unwrap_or_default();
            let history: Vec<Option<i64>> = past
                .iter()
                .map(|week| {
                    week.as_ref()
                        .map(|w| w.get(id).map(Totals::passages).unwrap_or(0))
                })
                .collect();
            let delay = delays.get(id);
            StationNow {
                location_id: id.to_string(),
                name: name.to_string(),
                entries: current.entries,
                exits: current.exits,
                usual: flow::usual(&history),
                percent_of_usual: flow::percent_of_usual(current.passages(), &history),
                delay_s: delay.map(|d| d.0),
                delay_at_ms: delay.map(|d| d.1),
            }
        })
        .collect();
    Ok(StationsNow {
        operator_id: operator_id.to_string(),
        until_ms: end * MINUTE_MS,
        window_minutes: WINDOW_MINUTES,
        usual_weeks: weeks,
        stations,
    })
}

async fn series(
    State(s): State<FlowState>,
    headers: HeaderMap,
    axum::Extension(address): axum::Extension<ClientAddress>,
    Path(location_id): Path<String>,
    ValidQuery(q): ValidQuery<SeriesQuery>,
) -> ApiResult<Json<StationSeries>> {
    spend(&s.app, &headers, address)?;
    let network = network(&s.app, &q.operator_id)?;
    station(&network, &location_id)?;
    let minutes = bounded(
        q.minutes,
        SERIES_MINUTES_DEFAULT,
        SERIES_MINUTES_MAX,
        "minutes",
        "minutes_out_of_range",
    )?;
    let end = flow::minute_of(s.app.clock.now_ms()) + 1;
    let start = end - minutes;
    let rows: HashMap<i64, Totals> = s
        .app
        .store
        .flow_minutes(&q.operator_id, &location_id, start, end)
        .await?
        .into_iter()
        .collect();
    Ok(Json(StationSeries {
        operator_id: q.operator_id,
        location_id,
        minutes: (start..end)
            .map(|m| {
                let t = rows.get(&m).cloned().unwrap_or_default();
                MinuteFlow {
                    minute_start_ms: m * MINUTE_MS,
                    entries: t.entries,
                    exits: t.exits,
                }
            })
            .collect(),
    }))
}

async fn forecast(
    State(s): State<FlowState>,
    headers: HeaderMap,
    axum::Extension(address): axum::Extension<ClientAddress>,
    Path(location_id): Path<String>,
    ValidQuery(q): ValidQuery<ForecastQuery>,
) -> ApiResult<Json<StationForecast>> {
    spend(&s.app, &headers, address)?;
    let network = network(&s.app, &q.operator_id)?;
    station(&network, &location_id)?;
    let hours = bounded(
        q.hours,
        FORECAST_HOURS_DEFAULT,
        FORECAST_HOURS_MAX,
        "hours",
        "hours_out_of_range",
    )?;
    let weeks = s.app.config.flow.usual_weeks;
    let hour0 =
        flow::minute_of(s.app.clock.now_ms()).div_euclid(MINUTES_PER_HOUR) * MINUTES_PER_HOUR;
    let recent_h = flow::FORECAST_RECENT_HOURS as i64;
    let from = hour0 - recent_h * MINUTES_PER_HOUR;
    let to = hour0 + hours * MINUTES_PER_HOUR;
    let store = &s.app.store;
    let first = store.flow_first_minute(&q.operator_id).await?;
    // Hourly (entries, exits) over [from, to) shifted back `shift` minutes.
    let hourly = |rows: Vec<(i64, Totals)>, shift: i64, n: i64| {
        let mut out = vec![(0i64, 0i64); n as usize];
        for (minute, t) in rows {
            let h = ((minute + shift - from).div_euclid(MINUTES_PER_HOUR)) as usize;
            if let Some(slot) = out.get_mut(h) {
                slot.0 += t.entries;
                slot.1 += t.exits;
            }
        }
        out
    };
    let mut past = Vec::new();
    for (week_from, week_to) in flow::usual_windows(from, to, weeks) {
        past.push(match first {
            Some(first) if week_from >= first => {
                let rows = store
                    .flow_minutes(&q.operator_id, &location_id, week_from, week_to)
                    .await?;
                Some(hourly(rows, from - week_from, recent_h + hours))
            }
            _ => None,
        });
    }
    let recent = hourly(
        store
            .flow_minutes(&q.operator_id, &location_id, from, hour0)
            .await?,
        0,
        recent_h,
    );
    let pick = |f: fn(&(i64, i64)) -> i64| ForecastInput {
        weeks: past
            .iter()
            .map(|w| w.as_ref().map(|w| w.iter().map(f).collect()))
            .collect(),
        recent: recent.iter().map(f).collect(),
    };
    let entries = flow::forecast(&pick(|h| h.0), hours as usize);
    let exits = flow::forecast(&pick(|h| h.1), hours as usize);
    Ok(Json(StationForecast {
        operator_id: q.operator_id,
        location_id,
        usual_weeks: weeks,
        hours: entries
            .iter()
            .zip(&exits)
            .enumerate()
            .map(|(h, (&entries, &exits))| HourForecast {
                hour_start_ms: (hour0 + h as i64 * MINUTES_PER_HOUR) * MINUTE_MS,
                entries,
                exits,
            })
            .collect(),
    }))
}

/// `GET /v1/flow/stream`: a `stations` event at once and every `flow.stream_interval_ms`, until
/// the client leaves, `flow.stream_lifetime_s` passes or the gateway shuts down. The place it
/// takes (`flow.streams_max`) is held until then.
async fn stream(
    State(s): State<FlowState>,
    headers: HeaderMap,
    axum::Extension(address): axum::Extension<ClientAddress>,
    ValidQuery(q): ValidQuery<OperatorQuery>,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>> {
    spend(&s.app, &headers, address)?;
    let network = network(&s.app, &q.operator_id)?;
    let permit = s.app.limits.flow_stream()?;
    let config = &s.app.config.flow;
    let interval = Duration::from_millis(config.stream_interval_ms);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(config.stream_lifetime_s);
    let first = true;
    let state = (s.app.clone(), network, s.stop.clone(), permit, first);
    let events = futures_util::stream::unfold(
        state,
        move |(app, network, mut stop, permit, first)| async move {
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = tokio::time::sleep_until(deadline) => return None,
                    _ = stop.wait_for(|stopped| *stopped) => return None,
                }
            }
            if *stop.borrow() || tokio::time::Instant::now() >= deadline {
                return None;
            }
            let event = match stations_now(&app, &network).await {
                Ok(now) => Event::default()
                    .event("stations")
                    .json_data(&now)
                    .unwrap_or_else(|_| Event::default().event("error").data("encoding")),
                // The client keeps its last snapshot; the next interval tries again.
                Err(e) => {
                    tracing::warn!(error = %e, "flow stream read failed");
                    Event::default().event("error").data("storage_unavailable")
                }
            };
            Some((Ok(event), (app, network, stop, permit, false)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Reads a GTFS-Realtime TripUpdates feed (protobuf body, `application/x-protobuf` or
/// `application/octet-stream`) and keeps each stop's latest delay. The whole feed is read and
/// checked before anything is written: a feed that does not decode is 422 `invalid_feed`, one
/// past the stop bound 422 `feed_too_large`, and nothing changes.
async fn trip_updates(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<OperatorQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(axum::http::StatusCode, Json<TripUpdatesLoaded>)> {
    let network = network(&state, &q.operator_id)?;
    let media = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    if !matches!(
        media.as_deref(),
        Some("application/x-protobuf" | "application/protobuf" | "application/octet-stream")
    ) {
        return Err(ApiError::BadRequest {
            status: axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "a TripUpdates feed is sent as Content-Type: application/x-protobuf".into(),
        });
    }
    let (feed_at_ms, mut delays) = crate::trip_updates::read(&body).map_err(|e| match e {
        crate::trip_updates::FeedError::TooManyStops => {
            ApiError::unprocessable("feed_too_large", e.to_string())
        }
        _ => ApiError::unprocessable("invalid_feed", e.to_string()),
    })?;
    // A stop is a station of the network (GTFS stop ids are its location ids); others are
    // counted and left out.
    let before = delays.len();
    delays.retain(|d| network.has_location(&d.stop_id));
    state
        .store
        .put_stop_delays(network.operator_id(), &delays, feed_at_ms)
        .await?;
    Ok((
        axum::http::StatusCode::OK,
        Json(TripUpdatesLoaded {
            stops: delays.len(),
            unknown_stops: before - delays.len(),
            feed_at_ms,
        }),
    ))
}
