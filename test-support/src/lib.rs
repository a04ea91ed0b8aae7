//! Test support shared by every suite: a scratch directory per test, a fresh database per test
//! (a SQLite file in the scratch directory or a new PostgreSQL database), and [`on_both!`], which
//! runs a test body on each kind.
//!
//! PostgreSQL tests use `TURNPIKE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! to create their databases. When PostgreSQL is unreachable they are skipped with a message,
//! unless `TURNPIKE_REQUIRE_PG=1` (set by `.ci/run`), which turns a skip into a failure.

use std::path::PathBuf;

use sqlx::Connection;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs `async fn name(db: Db)` as two tests, `name::sqlite` and `name::postgres` (skipped, or
/// failed under `TURNPIKE_REQUIRE_PG=1`, by the body itself when PostgreSQL is unavailable).
/// The calling crate needs `tokio` (with `macros`).
#[macro_export]
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name($crate::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name($crate::Db::Postgres).await
            }
        }
    };
}

/// Where a test's database lives; keeps it alive as long as the test holds it.
pub enum Database {
    Sqlite { url: String },
    Postgres(PgDatabase),
}

impl Database {
    /// A fresh database of kind `db`: the SQLite file `file_name` in `scratch`, or a new
    /// PostgreSQL database (None when PostgreSQL is unreachable and not required).
    pub async fn create(db: Db, scratch: &Scratch, file_name: &str) -> Option<Database> {
        match db {
            Db::Sqlite => Some(Database::Sqlite {
                url: format!("sqlite://{}?mode=rwc", scratch.0.join(file_name).display()),
            }),
            Db::Postgres => PgDatabase::create().await.map(Database::Postgres),
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Database::Sqlite { url } => url,
            Database::Postgres(pg) => &pg.url,
        }
    }
}

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
