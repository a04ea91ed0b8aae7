//! The store's constraint-backed guarantees, checked directly on both databases: these are what
//! let several gateway nodes share one database.

use gateway::store::taps::{self, Claim, NewJourney, NewTap};
use gateway::store::Store;
use turnpike_tests::{Database, Db, Scratch};

async fn store(db: Db, scratch: &Scratch) -> Option<(Store, Database)> {
    let database = Database::create(db, scratch).await?;
    let store = Store::connect(database.url(), 4)
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
    let tap = NewTap {
        terminal_id: "t1",
        sequence: 1,
        request_sha256: &[1; 32],
        direction: "entry",
        scanned_at_ms: 5,
        received_at_ms: 6,
    };
    assert!(matches!(
        taps::claim(&mut tx, &tap).await.unwrap(),
        Claim::New
    ));
    match taps::claim(&mut tx, &tap).await.unwrap() {
        Claim::Existing { request_sha256, .. } => assert_eq!(request_sha256, vec![1; 32]),
        Claim::New => panic!("a key can be claimed once"),
    }
    let other_terminal = NewTap {
        terminal_id: "t2",
        ..tap
    };
    assert!(matches!(
        taps::claim(&mut tx, &other_terminal).await.unwrap(),
        Claim::New
    ));

    assert!(taps::consume_code(&mut tx, &[9; 32], "entry", "t1", 1)
        .await
        .unwrap());
    assert!(!taps::consume_code(&mut tx, &[9; 32], "entry", "t2", 1)
        .await
        .unwrap());
    assert!(taps::consume_code(&mut tx, &[9; 32], "exit", "t2", 1)
        .await
        .unwrap());
    taps::release_code(&mut tx, &[9; 32], "entry")
        .await
        .unwrap();
    assert!(taps::consume_code(&mut tx, &[9; 32], "entry", "t1", 2)
        .await
        .unwrap());

    let journey = |id| NewJourney {
        journey_id: id,
        rider_id: 77,
        credential_id: 1,
        operator_id: "op",
        mode: "metro",
        entry_terminal_id: "t1",
        entry_sequence: 1,
        entry_location_id: "a",
        entry_at_ms: 5,
    };
    assert!(taps::insert_open_journey(&mut tx, &journey(1))
        .await
        .unwrap());
    assert!(
        !taps::insert_open_journey(&mut tx, &journey(2))
            .await
            .unwrap(),
        "one open journey per rider and mode"
    );
    let open = taps::open_journey(&mut tx, 77, "metro")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open.journey_id, 1);
    let close = taps::JourneyClose {
        journey_id: 1,
        exit_terminal_id: Some("t2"),
        exit_sequence: Some(1),
        exit_location_id: Some("b"),
        exit_at_ms: Some(9),
        vehicle_class: None,
        close_reason: "exit",
        fare_minor: 300,
        charge_minor: 300,
        currency: "CNY",
        business_day: "2026-11-28",
        closed_at_ms: 10,
    };
    assert!(taps::close_journey(&mut tx, &close).await.unwrap());
    assert!(
        !taps::close_journey(&mut tx, &close).await.unwrap(),
        "a journey closes once"
    );
    assert!(
        taps::insert_open_journey(&mut tx, &journey(3))
            .await
            .unwrap(),
        "after closing, a new journey may open"
    );

    assert_eq!(
        taps::add_to_rider_day(&mut tx, 77, "op", "2026-11-28", 300)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        taps::add_to_rider_day(&mut tx, 77, "op", "2026-11-28", 500)
            .await
            .unwrap(),
        300
    );
    assert_eq!(
        taps::add_to_rider_day(&mut tx, 77, "op", "2026-11-29", 200)
            .await
            .unwrap(),
        0
    );
    tx.commit().await.unwrap();
    assert_eq!(store.count_rows("journeys").await.unwrap(), 2);
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
