//! The operator's train delay feed: a GTFS-Realtime `FeedMessage` of TripUpdates (protobuf),
//! read into the latest delay per stop (docs/flow.md, "Punctuality"). Pure: bytes in, delays
//! out; the admin API stores them (`store/flow.rs`) and the flow answers show them.
//!
//! The messages are the subset of the official `gtfs-realtime.proto` (proto2, package
//! `transit_realtime`) that this reads, with its field numbers, decoded by prost; every other
//! field (vehicle positions, alerts, extensions) is skipped as protobuf skips unknown fields.

use std::collections::HashMap;

use crate::store::flow::StopDelay;

/// Most distinct stops one feed may set (the fare networks' own stop limit).
pub const FEED_STOPS_MAX: usize = 50_000;

#[derive(Clone, PartialEq, prost::Message)]
pub struct FeedMessage {
    #[prost(message, required, tag = "1")]
    pub header: FeedHeader,
    #[prost(message, repeated, tag = "2")]
    pub entity: Vec<FeedEntity>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FeedHeader {
    #[prost(string, required, tag = "1")]
    pub gtfs_realtime_version: String,
    /// POSIX seconds.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FeedEntity {
    #[prost(string, required, tag = "1")]
    pub id: String,
    #[prost(bool, optional, tag = "2")]
    pub is_deleted: Option<bool>,
    #[prost(message, optional, tag = "3")]
    pub trip_update: Option<TripUpdate>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TripUpdate {
    #[prost(message, required, tag = "1")]
    pub trip: TripDescriptor,
    #[prost(message, repeated, tag = "2")]
    pub stop_time_update: Vec<StopTimeUpdate>,
    /// The trip's delay where a stop has none of its own (seconds).
    #[prost(int32, optional, tag = "5")]
    pub delay: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TripDescriptor {
    #[prost(string, optional, tag = "1")]
    pub trip_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StopTimeUpdate {
    #[prost(message, optional, tag = "2")]
    pub arrival: Option<StopTimeEvent>,
    #[prost(message, optional, tag = "3")]
    pub departure: Option<StopTimeEvent>,
    #[prost(string, optional, tag = "4")]
    pub stop_id: Option<String>,
    /// SCHEDULED 0, SKIPPED 1, NO_DATA 2, UNSCHEDULED 3.
    #[prost(int32, optional, tag = "5")]
    pub schedule_relationship: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StopTimeEvent {
    #[prost(int32, optional, tag = "1")]
    pub delay: Option<i32>,
    /// POSIX seconds.
    #[prost(int64, optional, tag = "2")]
    pub time: Option<i64>,
    #[prost(int64, optional, tag = "4")]
    pub scheduled_time: Option<i64>,
}

const SKIPPED: i32 = 1;
const NO_DATA: i32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error("not a GTFS-Realtime FeedMessage: {0}")]
    Invalid(String),
    #[error("the feed header has no timestamp")]
    NoTimestamp,
    #[error("the feed sets more than {FEED_STOPS_MAX} stops")]
    TooManyStops,
}

/// A stop time event's delay: its own, else predicted minus scheduled time.
fn event_delay(e: &StopTimeEvent) -> Option<i64> {
    e.delay
        .map(i64::from)
        .or_else(|| Some(e.time? - e.scheduled_time?))
}

/// The feed's time (ms) and, per stop, the delay of its next train: of the stop time updates
/// naming a stop (skipped stops and those without data left out), the one with the earliest
/// predicted time (the first in the feed when none has a time). A stop's delay is its
/// departure's, else its arrival's, else its trip's.
pub fn read(bytes: &[u8]) -> Result<(i64, Vec<StopDelay>), FeedError> {
    let feed: FeedMessage =
        prost::Message::decode(bytes).map_err(|e| FeedError::Invalid(e.to_string()))?;
    let feed_at_ms = feed
        .header
        .timestamp
        .and_then(|s| i64::try_from(s).ok()?.checked_mul(1000))
        .ok_or(FeedError::NoTimestamp)?;
    // stop → (predicted time or MAX, order seen, delay)
    let mut next: HashMap<String, (i64, usize, StopDelay)> = HashMap::new();
    let mut seen = 0usize;
    for entity in &feed.entity {
        let Some(update) = entity.trip_update.as_ref() else {
            continue;
        };
        if entity.is_deleted == Some(true) {
            continue;
        }
        for stu in &update.stop_time_update {
            let (Some(stop_id), relationship) = (&stu.stop_id, stu.schedule_relationship) else {
                continue;
            };
            if matches!(relationship, Some(SKIPPED) | Some(NO_DATA)) {
                continue;
            }
            let event = stu.departure.as_ref().or(stu.arrival.as_ref());
            let Some(delay_s) = event.and_then(event_delay).or(update.delay.map(i64::from)) else {
                continue;
            };
            let at = event.and_then(|e| e.time).unwrap_or(i64::MAX);
            seen += 1;
            let candidate = (
                at,
                seen,
                StopDelay {
                    stop_id: stop_id.clone(),
                    delay_s,
                    trip_id: update.trip.trip_id.clone(),
                },
            );
            match next.get(stop_id) {
                Some(kept) if (kept.0, kept.1) <= (at, seen) => {}
                _ => {
                    if next.len() >= FEED_STOPS_MAX && !next.contains_key(stop_id) {
                        return Err(FeedError::TooManyStops);
                    }
                    next.insert(stop_id.clone(), candidate);
                }
            }
        }
    }
    let mut delays: Vec<StopDelay> = next.into_values().map(|(_, _, d)| d).collect();
    delays.sort_by(|a, b| a.stop_id.cmp(&b.stop_id));
    Ok((feed_at_ms, delays))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A stop time update as a feed carries it.
    fn stu(
        stop: &str,
        departure: Option<StopTimeEvent>,
        arrival: Option<StopTimeEvent>,
    ) -> StopTimeUpdate {
        StopTimeUpdate {
            arrival,
            departure,
            stop_id: Some(stop.into()),
            schedule_relationship: None,
        }
    }

    fn ev(delay: Option<i32>, time: Option<i64>, scheduled: Option<i64>) -> StopTimeEvent {
        StopTimeEvent {
            delay,
            time,
            scheduled_time: scheduled,
        }
    }

    fn feed(
        timestamp: Option<u64>,
        trips: Vec<(&str, Option<i32>, Vec<StopTimeUpdate>)>,
    ) -> Vec<u8> {
        FeedMessage {
            header: FeedHeader {
                gtfs_realtime_version: "2.0".into(),
                timestamp,
            },
            entity: trips
                .into_iter()
                .enumerate()
                .map(|(i, (trip, delay, updates))| FeedEntity {
                    id: format!("e{i}"),
                    is_deleted: None,
                    trip_update: Some(TripUpdate {
                        trip: TripDescriptor {
                            trip_id: Some(trip.into()),
                        },
                        stop_time_update: updates,
                        delay,
                    }),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    #[test]
    fn reads_the_next_trains_delay_per_stop() {
        // Proves the delay rules: departure before arrival, predicted − scheduled when no delay
        // is given, the trip's delay as a fallback, skipped stops left out, and per stop the
        // train with the earliest predicted time.
        let mut skipped = stu("d", Some(ev(Some(999), None, None)), None);
        skipped.schedule_relationship = Some(SKIPPED);
        let bytes = feed(
            Some(1_767_243_600),
            vec![
                (
                    "t1",
                    Some(30),
                    vec![
                        stu(
                            "a",
                            Some(ev(Some(120), Some(2_000), None)),
                            Some(ev(Some(60), None, None)),
                        ),
                        stu("b", None, Some(ev(None, Some(1_090), Some(1_000)))),
                        stu("c", None, None),
                        skipped,
                    ],
                ),
                (
                    "t2",
                    None,
                    vec![stu("a", Some(ev(Some(-20), Some(1_500), None)), None)],
                ),
            ],
        );
        let (at_ms, delays) = read(&bytes).unwrap();
        assert_eq!(at_ms, 1_767_243_600_000);
        let got: Vec<(&str, i64, Option<&str>)> = delays
            .iter()
            .map(|d| (d.stop_id.as_str(), d.delay_s, d.trip_id.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", -20, Some("t2")),
                ("b", 90, Some("t1")),
                ("c", 30, Some("t1"))
            ]
        );
    }

    #[test]
    fn refuses_what_is_not_a_feed() {
        // Proves garbage and a feed without a timestamp are refused, not read as empty.
        assert!(matches!(
            read(b"\xff\xff\xff not protobuf"),
            Err(FeedError::Invalid(_))
        ));
        assert_eq!(read(&feed(None, vec![])), Err(FeedError::NoTimestamp));
        assert_eq!(read(&feed(Some(5), vec![])), Ok((5_000, vec![])));
    }
}
