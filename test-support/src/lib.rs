//! Test support shared by every suite: a scratch directory per test and a fresh PostgreSQL
//! database per test.
//!
//! PostgreSQL tests use `TURNPIKE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! to create their databases. When PostgreSQL is unreachable they are skipped with a message,
//! unless `TURNPIKE_REQUIRE_PG=1` (set by `.ci/run`), which turns a skip into a failure.

use std::path::PathBuf;

use sqlx::Connection;

/// A scratch directory removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "turnpike-test-{tag}-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pg_admin_url() -> String {
    std::env::var("TURNPIKE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database, dropped when this value is dropped.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    /// Creates a database, or returns None (test skipped) if PostgreSQL is unreachable and not
    /// required.
    pub async fn create() -> Option<PgDatabase> {
        let admin_url = pg_admin_url();
        let mut conn = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("TURNPIKE_REQUIRE_PG").as_deref() == Ok("1") {
                    panic!("PostgreSQL is required (TURNPIKE_REQUIRE_PG=1) but unreachable at {admin_url}: {e}");
                }
                eprintln!("SKIPPED: PostgreSQL unreachable at {admin_url}: {e}");
                return None;
            }
        };
        let name = format!("turnpike_test_{:016x}", rand::random::<u64>());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("creating a test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin_url.clone());
        Some(PgDatabase {
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// Drops the database now (the gateway's connections are forced off): for readiness tests.
    pub async fn drop_now(&self) {
        let mut conn = sqlx::PgConnection::connect(&pg_admin_url())
            .await
            .expect("connecting to drop");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .expect("dropping");
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context; a short-lived runtime on its own thread does the SQL.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
    }
}
