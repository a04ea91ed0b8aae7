//! Migration 0002 over a database that already holds slice-one data: trades, refunds and their
//! foreign keys survive the SQLite table rebuild and the PostgreSQL ALTERs, and the old trades
//! read back with their new defaults.

mod common;

use common::on_both;

use common::{Database, Db, Scratch};
use provider_sandbox::store::{ProductCode, Store};
use sqlx::Connection;

async fn migrates_existing_data(db: Db) {
    // Proves a database migrated to 0001 and filled with a trade and a refund keeps both after
    // 0002, with the new columns defaulted and the refund still tied to its trade.
    let scratch = Scratch::new("migration");
    let Some(database) = Database::create(db, &scratch, "m.db").await else {
        return;
    };
    let url = database.url().to_string();
    let backend = if db == Db::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    let only_first = scratch.0.join("first");
    std::fs::create_dir_all(&only_first).unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("migrations/{backend}/0001_core.sql")),
        only_first.join("0001_core.sql"),
    )
    .unwrap();
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    if db == Db::Sqlite {
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::migrate::Migrator::new(only_first.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    for sql in [
        "INSERT INTO apps VALUES ('app1', 'key', 1)",
        "INSERT INTO users VALUES ('2088000000000001', '15900000000', 100, 1, NULL, 1)",
        "INSERT INTO trades VALUES ('T1', 'app1', 'O1', 'subject', 500, 100, 'TRADE_SUCCESS',
             '2088000000000001', '281234567890123456', NULL, 1, 2, NULL)",
        "INSERT INTO refunds VALUES ('T1', 'R1', 100, 100, NULL, 3)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();

    let store = Store::connect(&url, 2).await.unwrap();
    let t = store
        .trade("T1")
        .await
        .unwrap()
        .expect("the old trade is still there");
    assert_eq!(t.product_code, ProductCode::FaceToFacePayment);
    assert_eq!(t.buyer_logon_id.as_deref(), Some("15900000000"));
    assert_eq!(t.fee_fen, 0);
    assert!(t
        .seller_id
        .as_deref()
        .is_some_and(|s| s.len() == 16 && s.starts_with("2088")));
    let refunds = store.refunds("T1").await.unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].out_request_no, "R1");
    let app = store.app("app1").await.unwrap().unwrap();
    assert_eq!(app.fee_rate_bp, 60);
    store.close().await;
}
on_both!(migrates_existing_data);
