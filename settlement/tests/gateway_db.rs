//! Reading the gateway's ledger from its database (SQLite and PostgreSQL): the day's journal,
//! booked by the gateway's own charging code, read back as the gateway export v1, and a run
//! from the database settles exactly as a run from the export file does.

mod review_fixture;

use gateway::charging::{capture_txn, fare_txn, refund_txn};
use gateway::store::charging::ChargeKind::{Metro, Toll};
use gateway::store::charging::{book, insert_charge, ChargeStatus, NewCharge};
use gateway::store::OperatorRow;
use review_fixture::*;
use settlement::run::GatewayInput;
use turnpike_test_support::{PgDatabase, Scratch};

const PAID_AT_MS: i64 = 1767312245000;
const REFUNDED_AT_MS: i64 = 1767315845000;

/// Books the fixture's gateway side through the gateway's store and journal rules.
async fn seed_gateway(url: &str) {
    let gw = gateway::store::Store::connect(url, 2, 1).await.unwrap();
    for (id, mode, zone) in [
        ("hz-metro", "metro", "Asia/Shanghai"),
        ("zj-expressway", "toll", "Asia/Shanghai"),
        // No money on the day; its zone comes from this table.
        ("tokyo-metro", "metro", "Asia/Tokyo"),
    ] {
        gw.insert_operator(&OperatorRow {
            operator_id: id.into(),
            name: id.into(),
            mode: mode.into(),
            time_zone: zone.into(),
            currency: "CNY".into(),
            daily_cap_minor: None,
            created_at_ms: PAID_AT_MS,
        })
        .await
        .unwrap();
    }
    // (charge id, kind, operator, business day, terminal, sequence, amount)
    let charges = [
        (1, Metro, "hz-metro", DAY, "G1", 1, 300),
        (2, Metro, "hz-metro", DAY, "G1", 2, 500),
        (3, Metro, "hz-metro", DAY, "G1", 3, 200),
        (4, Metro, "hz-metro", DAY, "G1", 4, 400),
        (6, Metro, "hz-metro", "2026-01-01", "G1", 6, 300),
        (7, Metro, "hz-metro", DAY, "G1", 7, 600),
        (5, Toll, "zj-expressway", DAY, "B1", 1, 1250),
    ];
    let mut tx = gw.begin().await.unwrap();
    for (id, kind, op, day, terminal, seq, amount) in charges {
        insert_charge(
            &mut tx,
            &NewCharge {
                charge_id: id,
                kind,
                operator_id: op,
                rider_id: Some(42),
                journey_id: Some(id),
                amount_minor: amount,
                currency: "CNY",
                business_day: day,
                status: ChargeStatus::Captured,
                next_attempt_at_ms: PAID_AT_MS,
                lease_until_ms: None,
                terminal_id: Some(terminal),
                terminal_sequence: Some(seq),
                now_ms: PAID_AT_MS,
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let mut tx = gw.begin().await.unwrap();
    for (id, kind, ..) in charges {
        let charge = gw.charge(id).await.unwrap().unwrap();
        // The fixture's numbers (`M1-1`), as a gateway wrote them before its trade numbers
        // followed the provider's character rule (`M1_1`): the reader takes a journal's numbers
        // as they are stored.
        let trade = charge.out_trade_no.replace('_', "-");
        let post_paid = kind == Metro;
        if post_paid {
            book(&mut tx, &fare_txn(&charge), PAID_AT_MS).await.unwrap();
        }
        let t = capture_txn(
            &charge,
            &trade,
            &format!("P{trade}"),
            fee(charge.amount_minor),
            post_paid,
        );
        book(&mut tx, &t, PAID_AT_MS).await.unwrap();
        if id == 1 {
            let mut charge = charge.clone();
            charge.out_trade_no = trade.clone();
            charge.provider_trade_no = Some(format!("P{trade}"));
            book(
                &mut tx,
                &refund_txn(&charge, "R1-1", 100, 1),
                REFUNDED_AT_MS,
            )
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    gw.close().await;
}

async fn check(backend: &str) {
    let (url, _guard_sqlite, _guard_pg): (String, Option<Scratch>, Option<PgDatabase>) =
        match backend {
            "sqlite" => {
                let dir = Scratch::new("settlement-gwdb");
                let url = format!("sqlite://{}?mode=rwc", dir.0.join("turnpike.db").display());
                (url, Some(dir), None)
            }
            _ => {
                let Some(db) = PgDatabase::create().await else {
                    return;
                };
                (db.url.clone(), None, Some(db))
            }
        };
    seed_gateway(&url).await;
    let store = settlement::store::Store::connect(&url, 4).await.unwrap();
    let window = settlement::DayWindow::shanghai(DAY.parse().unwrap()).unwrap();
    let (start_ms, end_ms) = window.bounds_ms();
    let mut records = Vec::new();
    store
        .gateway_records(start_ms, end_ms, &mut |r| {
            records.push(r);
            Ok(())
        })
        .await
        .unwrap();
    // The database's day, exported, is the fixture's export file byte for byte.
    assert_eq!(
        settlement::run::gateway_export_v1(&records),
        gateway_export()
    );

    // A run from the database settles as a run from the file.
    let inputs = Inputs::write();
    let from_file = inputs.run(&store).await.unwrap();
    let mut config = inputs.config();
    config.gateway = GatewayInput::Database;
    let from_db = settlement::run::run_day(&store, settlement::engine(), &config)
        .await
        .unwrap();
    assert_eq!(from_db.outputs_sha256, from_file.outputs_sha256);
    // `settlement nightly` (what a systemd timer runs) reads the nightly layout of the inputs
    // directory and settles the same day the same way.
    let nightly = inputs.dir.0.join("nightly");
    for (sub, name, body) in [
        ("provider", "bill.csv", bill()),
        ("operators", "hz-metro.csv", hz_metro_export()),
        ("operators", "zj-expressway.csv", zj_expressway_export()),
    ] {
        let dir = nightly.join(DAY).join(sub);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), body).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_settlement"))
        .args(["--database", &url, "nightly", "--date", DAY, "--inputs-dir"])
        .arg(&nightly)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains(&format!("outputs {}", &from_file.outputs_sha256[..16])),
        "{printed}"
    );
    // Operators' business days: the gateway's zones, settlement's cut-off, the run's flags.
    let windows = settlement::run::operator_windows(&store, &config)
        .await
        .unwrap();
    let described: Vec<(String, String, String)> = windows
        .iter()
        .map(|(op, w)| (op.clone(), w.time_zone_name(), w.cutoff_text()))
        .collect();
    assert_eq!(
        described,
        [("tokyo-metro".into(), "Asia/Tokyo".into(), "00:00".into())]
    );
    store
        .set_operator_setting(
            &settlement::store::OperatorSetting {
                operator_id: "hz-metro".into(),
                time_zone: None,
                cutoff: "04:00".into(),
            },
            "ops",
        )
        .await
        .unwrap();
    config.operator_days = vec![settlement::run::OperatorDay {
        operator_id: "tokyo-metro".into(),
        time_zone: Some("Europe/Berlin".into()),
        cutoff: None,
    }];
    let windows = settlement::run::operator_windows(&store, &config)
        .await
        .unwrap();
    let described: Vec<(String, String, String)> = windows
        .iter()
        .map(|(op, w)| (op.clone(), w.time_zone_name(), w.cutoff_text()))
        .collect();
    assert_eq!(
        described,
        [
            ("hz-metro".into(), "Asia/Shanghai".into(), "04:00".into()),
            ("tokyo-metro".into(), "Europe/Berlin".into(), "00:00".into())
        ]
    );
    // hz-metro's day now starts at 04:00 Shanghai time: its window moved by four hours.
    let hz = &windows["hz-metro"];
    assert_eq!(hz.bounds_ms().0, start_ms + 4 * 3600 * 1000);
    // A bad cut-off in the settings names the operator.
    store
        .set_operator_setting(
            &settlement::store::OperatorSetting {
                operator_id: "hz-metro".into(),
                time_zone: None,
                cutoff: "25:00".into(),
            },
            "ops",
        )
        .await
        .unwrap();
    let err = format!(
        "{:#}",
        settlement::run::operator_windows(&store, &config)
            .await
            .unwrap_err()
    );
    assert!(err.contains("hz-metro") && err.contains("25:00"), "{err}");
    // Nothing outside the window: the next day is empty.
    let (_, next_end) = settlement::DayWindow::shanghai("2026-01-03".parse().unwrap())
        .unwrap()
        .bounds_ms();
    let mut next_day = 0;
    store
        .gateway_records(end_ms, next_end, &mut |_| {
            next_day += 1;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(next_day, 0);
}

#[tokio::test]
async fn the_gateway_ledger_is_read_from_its_database_sqlite() {
    check("sqlite").await
}

#[tokio::test]
async fn the_gateway_ledger_is_read_from_its_database_postgres() {
    check("postgres").await
}
