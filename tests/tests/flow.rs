//! Live passenger flow end to end (docs/flow.md): taps through the running gateway, in a random
//! order per seed, sent concurrently so they share tap groups, each sent twice (a gate's retry
//! of the same sequence) and some codes shown again at a second gate of the same station (a
//! replay: declined). The per-station, per-minute counts the tap writers keep must equal the
//! pure count (`flow::tally`) over the distinct passages — nothing counted twice, nothing lost —
//! on both databases.

use std::collections::{BTreeMap, HashMap};

use gateway::flow::{self, Passage};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use turnpike_client::demo::{demo_terminals, METRO_OPERATOR};
use turnpike_tests::{both_backends, demo_stops, gate, now_ms, Env};
use turnpike_wire::api::{Decision, Direction, TapRequest};

type Counts = BTreeMap<(String, i64), (i64, i64)>;

/// Sends `taps` (terminal, request) concurrently in the given order; returns the decisions.
async fn send_all(env: &Env, taps: &[(String, TapRequest)]) -> Vec<Decision> {
    let mut set = tokio::task::JoinSet::new();
    for (n, (terminal, req)) in taps.iter().enumerate() {
        let client = env.gw.terminal(terminal);
        let req = req.clone();
        set.spawn(async move { (n, client.tap(&req).await.expect("tap answered").decision) });
    }
    let mut out = vec![Decision::Decline; taps.len()];
    while let Some(done) = set.join_next().await {
        let (n, decision) = done.unwrap();
        out[n] = decision;
    }
    out
}

/// The counts the store holds for the metro, per (station, minute), over `[from, to)`.
async fn stored(env: &Env, from: i64, to: i64) -> Counts {
    let store = &env.gw.state.store;
    let mut out = Counts::new();
    for (station, _) in store.flow_totals(METRO_OPERATOR, from, to).await.unwrap() {
        for (minute, t) in store
            .flow_minutes(METRO_OPERATOR, &station, from, to)
            .await
            .unwrap()
        {
            out.insert((station.clone(), minute), (t.entries, t.exits));
        }
    }
    out
}

both_backends!(
    flow_counts_equal_the_distinct_passages,
    |env: Env| async move {
        let stops = demo_stops();
        let location: HashMap<String, String> = demo_terminals()
            .into_iter()
            .map(|(id, _, loc)| (id, loc))
            .collect();
        let mut sequences: HashMap<String, u64> = HashMap::new();
        let mut next = |id: &str| {
            let s = sequences.entry(id.to_string()).or_insert(0);
            *s += 1;
            *s
        };
        let start_minute = flow::minute_of(now_ms() as i64);
        // Every distinct passage sent so far, as (terminal, request).
        let mut distinct: Vec<(String, TapRequest)> = Vec::new();
        for seed in [1u64, 2, 3] {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut riders = Vec::new();
            for _ in 0..8 {
                let o = rng.gen_range(0..stops.len());
                let d = (o + rng.gen_range(1..stops.len())) % stops.len();
                riders.push((env.gw.rider().await, o, d));
            }
            // Phase 1 the entries, phase 2 the exits (an exit judged before its entry would be
            // declined live, which is the rules' business, not the count's).
            for direction in [Direction::Entry, Direction::Exit] {
                let mut sends = Vec::new();
                for (rider, o, d) in &riders {
                    let (stop, n) = match direction {
                        Direction::Entry => (&stops[*o], 1),
                        Direction::Exit => (&stops[*d], 2),
                    };
                    let id = gate(stop, n);
                    let at = now_ms();
                    let req = TapRequest {
                        sequence: next(&id),
                        direction,
                        ride_code: rider.ride_code(at).unwrap(),
                        scanned_at_ms: at,
                        vehicle_class: None,
                    };
                    distinct.push((id.clone(), req.clone()));
                    // The gate's retry of the same sequence.
                    sends.push((id.clone(), req.clone()));
                    sends.push((id, req.clone()));
                    if rng.gen_bool(0.5) {
                        // The same code at the station's other gate: one of the two is a replay.
                        let other = gate(stop, 3 - n);
                        sends.push((
                            other.clone(),
                            TapRequest {
                                sequence: next(&other),
                                ..req
                            },
                        ));
                    }
                }
                sends.shuffle(&mut rng);
                let decisions = send_all(&env, &sends).await;
                let approved = decisions
                    .iter()
                    .filter(|d| **d == Decision::Approve)
                    .count();
                // Each rider's passage is approved once: by the original or its replay (the
                // retry gets the stored answer of whichever it repeats).
                assert!(approved >= riders.len(), "seed {seed}: {decisions:?}");
            }
            let expected: Counts = flow::tally(distinct.iter().map(|(id, req)| Passage {
                operator_id: METRO_OPERATOR,
                location_id: &location[id],
                scanned_at_ms: req.scanned_at_ms as i64,
                direction: req.direction,
            }))
            .into_iter()
            .map(|c| ((c.location_id, c.minute), (c.entries, c.exits)))
            .collect();
            let got = stored(&env, start_minute, flow::minute_of(now_ms() as i64) + 1).await;
            assert_eq!(got, expected, "seed {seed}");
        }
    }
);

/// GET on the public listener: (status, JSON body).
async fn get_json(env: &Env, path: &str) -> (u16, serde_json::Value) {
    let a = env
        .gw
        .public_send(reqwest::Method::GET, path, None, None)
        .await
        .unwrap();
    let body = serde_json::from_slice(&a.body)
        .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&a.body)));
    (a.status, body)
}

/// Writes history straight into `station_flow`, as weeks of taps would have.
async fn history(env: &Env, rows: Vec<(String, i64, i64, i64)>) {
    let counts: Vec<flow::FlowCount> = rows
        .into_iter()
        .map(|(station, minute, entries, exits)| flow::FlowCount {
            operator_id: METRO_OPERATOR.to_string(),
            location_id: station,
            minute,
            entries,
            exits,
        })
        .collect();
    let mut tx = env.gw.state.store.begin().await.unwrap();
    // Each count split over two shards, as concurrent groups leave them: reads add them up.
    let half: Vec<flow::FlowCount> = counts
        .iter()
        .map(|c| flow::FlowCount {
            entries: c.entries / 2,
            exits: c.exits / 2,
            ..c.clone()
        })
        .collect();
    let rest: Vec<flow::FlowCount> = counts
        .iter()
        .zip(&half)
        .map(|(c, h)| flow::FlowCount {
            entries: c.entries - h.entries,
            exits: c.exits - h.exits,
            ..c.clone()
        })
        .collect();
    gateway::store::flow::add(&mut tx, &half, 0).await.unwrap();
    gateway::store::flow::add(&mut tx, &rest, 5).await.unwrap();
    tx.commit().await.unwrap();
}

async fn flow_api(db: turnpike_tests::Db) {
    // Proves the public flow API: the stations answer (live taps against weeks of history:
    // percent of usual, null without a usual level), a station's minutes, its forecast,
    // precise errors for hostile input, and the event stream with its bound.
    let Some(env) = Env::start_with(db, |c| {
        c.flow.streams_max = 1;
        c.flow.stream_interval_ms = 200;
    })
    .await
    else {
        return;
    };
    let stops = demo_stops();
    let now = flow::minute_of(now_ms() as i64);
    let hour0 = now.div_euclid(60) * 60;
    let week = flow::WEEK_MINUTES;
    let mut rows = vec![(stops[3].clone(), now - 5 * week, 1, 0)];
    for k in 1..=4 {
        rows.push((stops[0].clone(), now - 5 - k * week, 6, 4));
        rows.push((stops[2].clone(), hour0 + 30 - k * week, 60, 20));
    }
    history(&env, rows).await;
    for n in 0..2 {
        let rider = env.gw.rider().await;
        let id = gate(&stops[0], 1);
        let answer = env
            .gw
            .terminal(&id)
            .tap(&turnpike_tests::tap(
                n + 1,
                Direction::Entry,
                rider.ride_code(now_ms()).unwrap(),
            ))
            .await
            .unwrap();
        assert_eq!(answer.decision, Decision::Approve);
    }

    // The operators a board offers: each network in force, with its mode and size.
    let (status, body) = get_json(&env, "/v1/flow/operators").await;
    assert_eq!(status, 200, "{body}");
    let operators: turnpike_wire::api::flow::FlowOperators = serde_json::from_value(body).unwrap();
    let metro = operators
        .operators
        .iter()
        .find(|o| o.operator_id == METRO_OPERATOR)
        .expect("the metro network");
    assert_eq!(
        (metro.mode.as_str(), metro.stations),
        ("metro", stops.len())
    );
    assert!(operators
        .operators
        .windows(2)
        .all(|w| w[0].operator_id < w[1].operator_id));

    let (status, body) = get_json(
        &env,
        &format!("/v1/flow/stations?operator_id={METRO_OPERATOR}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let now_answer: turnpike_wire::api::flow::StationsNow = serde_json::from_value(body).unwrap();
    assert_eq!((now_answer.window_minutes, now_answer.usual_weeks), (15, 4));
    let by_id = |id: &str| {
        now_answer
            .stations
            .iter()
            .find(|s| s.location_id == id)
            .unwrap()
            .clone()
    };
    let busy = by_id(&stops[0]);
    assert_eq!((busy.entries, busy.exits), (2, 0));
    assert_eq!(busy.usual, Some(10.0));
    assert_eq!(busy.percent_of_usual, Some(20));
    // History exists for the operator, but this station usually has nobody now.
    let quiet = by_id(&stops[1]);
    assert_eq!((quiet.usual, quiet.percent_of_usual), (Some(0.0), None));
    assert_eq!(now_answer.stations.len(), stops.len());

    let (status, body) = get_json(
        &env,
        &format!(
            "/v1/flow/stations/{}?operator_id={METRO_OPERATOR}&minutes=30",
            stops[0]
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let series: turnpike_wire::api::flow::StationSeries = serde_json::from_value(body).unwrap();
    assert_eq!(series.minutes.len(), 30);
    assert_eq!(series.minutes.iter().map(|m| m.entries).sum::<i64>(), 2);
    assert!(series
        .minutes
        .windows(2)
        .all(|w| w[1].minute_start_ms - w[0].minute_start_ms == 60_000));

    let (status, body) = get_json(
        &env,
        &format!(
            "/v1/flow/stations/{}/forecast?operator_id={METRO_OPERATOR}&hours=3",
            stops[2]
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let fc: turnpike_wire::api::flow::StationForecast = serde_json::from_value(body).unwrap();
    let got: Vec<(i64, f64, f64)> = fc
        .hours
        .iter()
        .map(|h| (h.hour_start_ms, h.entries, h.exits))
        .collect();
    let h0 = hour0 * 60_000;
    assert_eq!(
        got,
        [
            (h0, 60.0, 20.0),
            (h0 + 3_600_000, 0.0, 0.0),
            (h0 + 7_200_000, 0.0, 0.0)
        ]
    );

    for (path, status, code) in [
        ("/v1/flow/operators?operator_id=x", 400, "invalid_query"),
        ("/v1/flow/stations?operator_id=bad%20id", 422, "invalid_id"),
        ("/v1/flow/stations?operator_id=nobody", 404, "not_found"),
        ("/v1/flow/stations", 400, "invalid_query"),
        (
            "/v1/flow/stations?operator_id=x&extra=1",
            400,
            "invalid_query",
        ),
        (
            &format!(
                "/v1/flow/stations/{}?operator_id={METRO_OPERATOR}&minutes=100000",
                stops[0]
            ),
            422,
            "minutes_out_of_range",
        ),
        (
            &format!(
                "/v1/flow/stations/{}?operator_id={METRO_OPERATOR}&minutes=0",
                stops[0]
            ),
            422,
            "minutes_out_of_range",
        ),
        (
            &format!(
                "/v1/flow/stations/{}?operator_id={METRO_OPERATOR}&minutes=lots",
                stops[0]
            ),
            400,
            "invalid_query",
        ),
        (
            &format!("/v1/flow/stations/nowhere?operator_id={METRO_OPERATOR}"),
            404,
            "not_found",
        ),
        (
            &format!("/v1/flow/stations/a.b?operator_id={METRO_OPERATOR}"),
            422,
            "invalid_id",
        ),
        (
            &format!(
                "/v1/flow/stations/{}/forecast?operator_id={METRO_OPERATOR}&hours=25",
                stops[0]
            ),
            422,
            "hours_out_of_range",
        ),
        ("/v1/flow/stream?operator_id=bad%20id", 422, "invalid_id"),
    ] {
        let (got, body) = get_json(&env, path).await;
        assert_eq!(
            (got, body["error"]["code"].as_str().unwrap()),
            (status, code),
            "{path}: {body}"
        );
    }

    // The stream: a snapshot event, and a second stream refused while the one place is taken.
    let http = turnpike_client::tls::http_client(&env.gw.ca(), None).unwrap();
    let url = format!(
        "{}/v1/flow/stream?operator_id={METRO_OPERATOR}",
        env.gw.public_base
    );
    let mut first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    while !text.contains("\n\n") || !text.contains("event: stations") {
        let chunk = first.chunk().await.unwrap().expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let event: turnpike_wire::api::flow::StationsNow = serde_json::from_str(data).unwrap();
    assert_eq!(event.operator_id, METRO_OPERATOR);
    let (status, body) = get_json(
        &env,
        &format!("/v1/flow/stream?operator_id={METRO_OPERATOR}"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str().unwrap()),
        (503, "flow_streams_full")
    );
    drop(first);
    // The place frees once the server sees the client gone (at its next event at the latest).
    let mut reopened = false;
    for _ in 0..50 {
        let r = http.get(&url).send().await.unwrap();
        if r.status() == 200 {
            reopened = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reopened, "the stream's place was never freed");
}

/// A TripUpdates feed as an operator's system would send it, built with prost from the
/// messages of the official proto.
fn trip_updates_feed(timestamp_s: u64, stops: &[(&str, i32)]) -> Vec<u8> {
    use gateway::trip_updates::*;
    prost::Message::encode_to_vec(&FeedMessage {
        header: FeedHeader {
            gtfs_realtime_version: "2.0".into(),
            timestamp: Some(timestamp_s),
        },
        entity: vec![FeedEntity {
            id: "1".into(),
            is_deleted: None,
            trip_update: Some(TripUpdate {
                trip: TripDescriptor {
                    trip_id: Some("line-1-0800".into()),
                },
                stop_time_update: stops
                    .iter()
                    .map(|(stop, delay)| StopTimeUpdate {
                        arrival: None,
                        departure: Some(StopTimeEvent {
                            delay: Some(*delay),
                            time: None,
                            scheduled_time: None,
                        }),
                        stop_id: Some(stop.to_string()),
                        schedule_relationship: None,
                    })
                    .collect(),
                delay: None,
            }),
        }],
    })
}

async fn punctuality(db: turnpike_tests::Db) {
    // Proves the delay feed: an uploaded TripUpdates feed's delays show next to crowding, a
    // stop outside the network is left out, an older feed does not overwrite a newer one, and
    // a body that is not a feed, or not protobuf, or without the admin token writes nothing.
    let Some(env) = Env::start(db).await else {
        return;
    };
    let stops = demo_stops();
    let http = turnpike_client::tls::http_client(&env.gw.ca(), None).unwrap();
    let url = format!(
        "{}/v1/admin/flow/trip-updates?operator_id={METRO_OPERATOR}",
        env.gw.public_base
    );
    let post = |body: Vec<u8>, media: &'static str, token: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let r = http
                .post(&url)
                .bearer_auth(token)
                .header("content-type", media)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let token = turnpike_tests::ADMIN_TOKEN;
    let feed = trip_updates_feed(
        1_767_243_600,
        &[(&stops[0], 180), (&stops[1], -30), ("elsewhere", 5)],
    );
    let (status, body) = post(feed, "application/x-protobuf", token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["stops"].as_i64(), body["unknown_stops"].as_i64()),
        (Some(2), Some(1))
    );
    // An older feed changes nothing; refused uploads neither.
    let older = trip_updates_feed(1_767_243_000, &[(&stops[0], 999)]);
    assert_eq!(
        post(older.clone(), "application/x-protobuf", token).await.0,
        200
    );
    for (body, media, token, status, code) in [
        (
            b"not a feed".to_vec(),
            "application/x-protobuf",
            token,
            422,
            "invalid_feed",
        ),
        (
            trip_updates_feed(1_767_243_900, &[(&stops[0], 1)]),
            "application/json",
            token,
            415,
            "unsupported_media_type",
        ),
        (
            trip_updates_feed(1_767_243_900, &[(&stops[0], 1)]),
            "application/x-protobuf",
            "wrong",
            401,
            "unauthorized",
        ),
    ] {
        let (got, answer) = post(body, media, token).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str().unwrap()),
            (status, code),
            "{answer}"
        );
    }
    let (status, body) = get_json(
        &env,
        &format!("/v1/flow/stations?operator_id={METRO_OPERATOR}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let now: turnpike_wire::api::flow::StationsNow = serde_json::from_value(body).unwrap();
    let delay = |id: &str| {
        let s = now.stations.iter().find(|s| s.location_id == id).unwrap();
        (s.delay_s, s.delay_at_ms)
    };
    assert_eq!(delay(&stops[0]), (Some(180), Some(1_767_243_600_000)));
    assert_eq!(delay(&stops[1]), (Some(-30), Some(1_767_243_600_000)));
    assert_eq!(delay(&stops[2]), (None, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn punctuality_sqlite() {
    punctuality(turnpike_tests::Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn punctuality_postgres() {
    punctuality(turnpike_tests::Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_api_sqlite() {
    flow_api(turnpike_tests::Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_api_postgres() {
    flow_api(turnpike_tests::Db::Postgres).await;
}

/// Proves a flood of flow reads from one address is refused with 429 `rate_limited` and a
/// Retry-After once its burst is spent, on every flow endpoint alike (one budget per address:
/// the networks list, the stations and a station's minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_flow_reads_is_refused() {
    let Some(env) = Env::start_with(turnpike_tests::Db::Sqlite, |c| {
        c.limits.flow_requests_per_s = 1;
        c.limits.flow_burst = 3;
    })
    .await
    else {
        return;
    };
    let stops = demo_stops();
    let paths = [
        "/v1/flow/operators".to_string(),
        format!("/v1/flow/stations?operator_id={METRO_OPERATOR}"),
        format!(
            "/v1/flow/stations/{}?operator_id={METRO_OPERATOR}",
            stops[0]
        ),
    ];
    for path in &paths {
        let (status, body) = get_json(&env, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let http = turnpike_client::tls::http_client(&env.gw.ca(), None).unwrap();
    for path in &paths {
        let r = http
            .get(format!("{}{path}", env.gw.public_base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 429, "{path}");
        let retry: u64 = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{path}: no Retry-After"));
        assert!(retry >= 1, "{path}: Retry-After {retry}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited", "{path}: {body}");
    }
}
