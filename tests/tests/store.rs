//! The store's constraint-backed guarantees, checked directly on both databases: these are what
//! let several gateway nodes share one database.

use gateway::store::waves;
use gateway::store::Store;
use turnpike_tests::{Database, Db, Scratch};

async fn store(db: Db, scratch: &Scratch) -> Option<(Store, Database)> {
    let database = Database::create(db, scratch, "gateway.db").await?;
    let store = Store::connect(database.url(), 4, 2)
        .await
        .expect("connect and migrate");
    Some((store, database))
}

async fn constraints(db: Db) {
    // Idempotency keys, code consumption per direction, one open journey per rider and mode, and
    // the rider-day running total behave the same on both databases.
    let scratch = Scratch::new("store");
    let Some((store, _db)) = store(db, &scratch).await else {
        return;
    };
    store
        .insert_operator(&gateway::store::OperatorRow {
            operator_id: "op".into(),
            name: "op".into(),
            mode: "metro".into(),
            time_zone: "Asia/Shanghai".into(),
            currency: "CNY".into(),
            daily_cap_minor: None,
            created_at_ms: 0,
        })
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    let record = |terminal: &str, sequence: i64| waves::TapRecord {
        terminal_id: terminal.into(),
        sequence,
        request_sha256: [1; 32],
        direction: "entry",
        scanned_at_ms: 5,
        received_at_ms: 6,
        code_fingerprint: None,
        rider_id: None,
        credential_id: None,
        decision: "decline",
        reason: Some("expired".into()),
        journey_id: None,
        response: format!("{{\"sequence\":{sequence}}}"),
    };
    let key = |terminal: &str, sequence: i64| waves::TapKey {
        terminal_id: terminal.into(),
        sequence,
    };
    assert!(waves::existing_taps(&mut tx, &[key("t1", 1)])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        waves::insert_taps(&mut tx, &[record("t1", 1), record("t2", 1)])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        waves::insert_taps(&mut tx, &[record("t1", 1), record("t1", 2)])
            .await
            .unwrap(),
        1,
        "a key is taken once"
    );
    let found = waves::existing_taps(&mut tx, &[key("t1", 1), key("t1", 2), key("t9", 1)])
        .await
        .unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[&key("t1", 1)].request_sha256, vec![1; 32]);
    assert_eq!(found[&key("t1", 2)].response, b"{\"sequence\":2}".to_vec());

    let code_use = |fp: u8, direction, terminal: &str, sequence| waves::CodeUse {
        fingerprint: [fp; 32],
        direction,
        terminal_id: terminal.into(),
        sequence,
    };
    assert_eq!(
        waves::consume_codes(
            &mut tx,
            &[code_use(9, "entry", "t1", 1), code_use(8, "entry", "t1", 2)]
        )
        .await
        .unwrap(),
        vec![true, true]
    );
    assert_eq!(
        waves::consume_codes(
            &mut tx,
            &[code_use(9, "entry", "t2", 1), code_use(9, "exit", "t2", 2)]
        )
        .await
        .unwrap(),
        vec![false, true],
        "a code is used once per direction"
    );
    waves::release_codes(&mut tx, &[code_use(9, "entry", "t1", 1)])
        .await
        .unwrap();
    assert_eq!(
        waves::consume_codes(&mut tx, &[code_use(9, "entry", "t1", 3)])
            .await
            .unwrap(),
        vec![true],
        "a released code can be used again"
    );

    let journey = |id, rider_id| waves::Open {
        journey_id: id,
        rider_id,
        credential_id: 1,
        operator_id: "op".into(),
        mode: "metro",
        entry_terminal_id: "t1".into(),
        // Each journey's own entry tap: a tap stands in one journey (journeys_entry_once).
        entry_sequence: id,
        entry_location_id: "a".into(),
        entry_at_ms: 5,
    };
    assert_eq!(
        waves::open(&mut tx, &[journey(1, 77), journey(4, 78)])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        waves::open(&mut tx, &[journey(2, 77)]).await.unwrap(),
        0,
        "one open journey per rider and mode"
    );
    let rider_mode = |rider_id| waves::RiderMode {
        rider_id,
        mode: "metro",
    };
    let mut open = waves::open_journeys(&mut tx, &[rider_mode(77), rider_mode(78), rider_mode(79)])
        .await
        .unwrap();
    open.sort_by_key(|j| j.rider_id);
    assert_eq!(
        open.iter().map(|j| j.journey_id).collect::<Vec<_>>(),
        vec![1, 4]
    );
    let mut close = waves::Close {
        journey_id: 1,
        entry_terminal_id: Some("t1".into()),
        entry_sequence: Some(2),
        exit_terminal_id: Some("t2".into()),
        exit_sequence: Some(1),
        exit_location_id: Some("b".into()),
        exit_at_ms: Some(9),
        vehicle_class: None,
        close_reason: "exit",
        fare_minor: 300,
        charge_minor: 300,
        currency: "CNY",
        business_day: "2026-11-28".into(),
        closed_at_ms: 10,
    };
    if db == Db::Postgres {
        // Where another writer may rewrite a journey between a read and a write, a close names
        // the entry it read and misses a journey whose entry a re-pairing changed.
        assert_eq!(
            waves::close_journeys(&mut tx, std::slice::from_ref(&close))
                .await
                .unwrap(),
            0,
            "a close that names another entry"
        );
    }
    close.entry_sequence = Some(1);
    assert_eq!(
        waves::close_journeys(&mut tx, std::slice::from_ref(&close))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        waves::close_journeys(&mut tx, &[close]).await.unwrap(),
        0,
        "a journey closes once"
    );
    assert_eq!(
        waves::open(&mut tx, &[journey(3, 77)]).await.unwrap(),
        1,
        "after closing, a new journey may open"
    );
    assert!(
        store.journeys_of_rider(77, 10).await.unwrap().is_empty(),
        "nothing is visible outside the transaction before it commits"
    );

    let day_fare = |day: &str, fare_minor| waves::DayFare {
        rider_id: 77,
        operator_id: "op".into(),
        business_day: day.into(),
        fare_minor,
        before_minor: None,
    };
    assert_eq!(
        waves::add_to_rider_days(&mut tx, &[day_fare("2026-11-28", 300)])
            .await
            .unwrap(),
        vec![0]
    );
    assert_eq!(
        waves::add_to_rider_days(
            &mut tx,
            &[day_fare("2026-11-28", 500), day_fare("2026-11-29", 200)]
        )
        .await
        .unwrap(),
        vec![300, 0]
    );
    tx.commit().await.unwrap();
    let journeys = store.journeys_of_rider(77, 10).await.unwrap();
    let closed = journeys
        .iter()
        .find(|j| j.journey_id == 1)
        .expect("journey 1");
    assert_eq!(
        (
            closed.status.as_str(),
            closed.fare_minor,
            closed.exit_location_id.as_deref()
        ),
        ("closed", Some(300), Some("b"))
    );
    assert_eq!(store.count_rows("journeys").await.unwrap(), 3);
    assert_eq!(store.count_rows("taps").await.unwrap(), 3);
    assert_eq!(
        store.day_totals("2026-11-28").await.unwrap()[0].fares_minor,
        300
    );
    assert!(
        store.count_rows("taps; DROP TABLE taps").await.is_err(),
        "only known tables are countable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_sqlite() {
    constraints(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_postgres() {
    constraints(Db::Postgres).await;
}

/// A tap group's pipelined transaction (PostgreSQL): reads and deferred writes travel as text
/// with the rows inlined, quotes and all; a deferred write that misses a row fails the round
/// trip with `WAVE_RACED` and nothing of the transaction is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_waves_postgres() {
    use gateway::store::wave_tx::WaveTx;

    let scratch = Scratch::new("store-piped");
    let Some((store, _db)) = store(Db::Postgres, &scratch).await else {
        return;
    };
    let record = |terminal: &str, sequence: i64, response: &str| waves::TapRecord {
        terminal_id: terminal.into(),
        sequence,
        request_sha256: [7; 32],
        direction: "exit",
        scanned_at_ms: 5,
        received_at_ms: 6,
        code_fingerprint: Some([3; 32]),
        rider_id: Some(42),
        credential_id: Some(43),
        decision: "decline",
        reason: Some("no_entry".into()),
        journey_id: None,
        response: response.into(),
    };
    let key = |terminal: &str, sequence: i64| waves::TapKey {
        terminal_id: terminal.into(),
        sequence,
    };
    let code_use = |terminal: &str, sequence: i64| waves::CodeUse {
        fingerprint: [3; 32],
        direction: "exit",
        terminal_id: terminal.into(),
        sequence,
    };
    let rider = waves::RiderMode {
        rider_id: 42,
        mode: "metro",
    };
    // A terminal id and an answer with quotes, backslashes and non-ASCII text.
    let odd = "gate 'A'\\1";
    let answer = r#"{"sequence":1,"reason":"it's \"quoted\" — 出口"}"#;

    let mut tx = WaveTx::begin(&store, true).await.unwrap();
    assert!(tx.is_piped());
    let reads = tx
        .reads(
            &[key(odd, 1)],
            &[code_use(odd, 1)],
            std::slice::from_ref(&rider),
        )
        .await
        .unwrap();
    assert!(reads.existing.is_empty());
    assert_eq!(reads.first_use, vec![true], "the code is consumed");
    assert!(reads.open_journeys.is_empty());
    tx.defer_write(
        waves::write_wave_sql(
            &[],
            &[],
            &[],
            &[code_use(odd, 1)],
            &[record(odd, 1, answer)],
        )
        .unwrap(),
    );
    tx.commit().await.unwrap();

    // The second wave of a group sees the first one's writes: the key is a repeat, and a repeat
    // consumes nothing.
    let mut tx = WaveTx::begin(&store, true).await.unwrap();
    let reads = tx
        .reads(
            &[key(odd, 1)],
            &[code_use(odd, 1)],
            std::slice::from_ref(&rider),
        )
        .await
        .unwrap();
    let stored = &reads.existing[&key(odd, 1)];
    assert_eq!(stored.response, answer.as_bytes());
    assert_eq!(stored.request_sha256, vec![7; 32]);
    assert_eq!(reads.first_use, vec![false]);
    tx.rollback().await.unwrap();
    assert_eq!(
        store.count_rows("code_uses").await.unwrap(),
        0,
        "the declined tap gave its code back"
    );

    // A write that finds its key taken raises WAVE_RACED at the next round trip, and the
    // transaction's other rows are not kept.
    let mut tx = WaveTx::begin(&store, true).await.unwrap();
    tx.reads(&[key("t2", 1)], &[code_use("t2", 1)], &[rider])
        .await
        .unwrap();
    tx.defer_write(
        waves::write_wave_sql(
            &[],
            &[],
            &[],
            &[],
            &[record("t2", 1, "{}"), record(odd, 1, "{}")],
        )
        .unwrap(),
    );
    let error = tx.commit().await.expect_err("the wave raced");
    assert_eq!(
        error.as_database_error().and_then(|d| d.code()).as_deref(),
        Some(waves::WAVE_RACED)
    );
    assert_eq!(store.count_rows("taps").await.unwrap(), 1);
    assert_eq!(store.count_rows("code_uses").await.unwrap(), 0);
    // The pool's connections are still good after the failed pipelined transaction.
    store.ping().await.unwrap();

    // The writes of a group judged on what its writer knows: a code use must be new, a day
    // total must be what was assumed (none yet, or a value). Any difference raises WAVE_RACED
    // and keeps nothing.
    let day = |fare_minor, before_minor| waves::DayFare {
        rider_id: 42,
        operator_id: "op".into(),
        business_day: "2026-12-04".into(),
        fare_minor,
        before_minor,
    };
    let store = &store;
    let total = || async {
        let mut tx = store.begin().await.unwrap();
        let total = waves::add_to_rider_days(&mut tx, &[day(0, None)])
            .await
            .unwrap()[0];
        tx.rollback().await.unwrap();
        total
    };
    let assumed = |claims: Vec<waves::CodeUse>, days: Vec<waves::DayFare>| async move {
        let mut tx = WaveTx::begin(store, true).await.unwrap();
        tx.defer_write(waves::assumed_writes_sql(&claims, &days).unwrap());
        tx.commit().await.map_err(|e| {
            e.as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned())
        })
    };
    assumed(vec![code_use("t3", 1)], vec![day(300, None)])
        .await
        .unwrap();
    assert_eq!(total().await, 300);
    assumed(vec![], vec![day(200, Some(300))]).await.unwrap();
    assert_eq!(total().await, 500);
    let raced = Err(Some(waves::WAVE_RACED.to_string()));
    assert_eq!(
        assumed(vec![], vec![day(100, Some(300))]).await,
        raced,
        "a total another writer moved"
    );
    assert_eq!(
        assumed(vec![], vec![day(100, None)]).await,
        raced,
        "a day another writer started"
    );
    assert_eq!(
        assumed(vec![code_use("t3", 2)], vec![day(100, Some(500))]).await,
        raced,
        "a code already used"
    );
    assert_eq!(total().await, 500, "nothing of a raced group is kept");
    assert_eq!(store.count_rows("code_uses").await.unwrap(), 1);
}

/// The pipelined statements' generic plans are made once per session, possibly while the tables
/// are still empty, and kept. Each of them must reach its rows through an index by key: an index
/// scan without an index condition reads the whole index on every call, and gets slower as the
/// tables grow (as the lookup of open journeys did through the sweeper's partial index).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_tap_plans_postgres() {
    use sqlx::{Executor, Row};

    let scratch = Scratch::new("store-plans");
    let Some((store, _db)) = store(Db::Postgres, &scratch).await else {
        return;
    };
    // A tap writer's session, as its pipelined transactions run: generic plans, point lookups.
    let mut conn = store.tap_session().await.unwrap();
    conn.execute("BEGIN").await.unwrap();
    let mut checked = Vec::new();
    for prepare in waves::PG_PREPARED.split(";\n") {
        // `PREPARE name(json[, bigint]) AS …`: an empty JSON array and a zero for the count.
        let head = prepare
            .strip_prefix("PREPARE ")
            .expect("a PREPARE statement");
        let (name, rest) = head.split_once('(').expect("parameter types");
        let types = rest.split_once(')').expect("parameter types").0;
        let args = match types {
            "json" => "'[]'",
            "json, bigint" => "'[]', 0",
            other => panic!("{name}: unexpected parameters {other}"),
        };
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN EXECUTE {name}({args})"))
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get(0).unwrap())
            .collect();
        let text = plan.join("\n");
        assert!(!text.contains("Seq Scan"), "{name} scans a table:\n{text}");
        for (i, line) in plan.iter().enumerate() {
            if line.contains("Index Scan") || line.contains("Index Only Scan") {
                assert!(
                    plan.get(i + 1)
                        .is_some_and(|next| next.contains("Index Cond")),
                    "{name} reads a whole index:\n{text}"
                );
            }
        }
        checked.push(name.to_string());
    }
    assert_eq!(checked.len(), 11, "every prepared statement: {checked:?}");
    conn.execute("ROLLBACK").await.unwrap();
}
