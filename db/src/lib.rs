//! `turnpike-db`: the connection rules every Turnpike store shares.
//!
//! The gateway, the provider sandbox and settlement each keep their own store — their own SQL,
//! migrations and transactions — on PostgreSQL or SQLite through sqlx's `Any` driver. What they
//! do the same way lives here: which backend a database URL names ([`Backend::of_url`]), the
//! statements every new session runs first ([`Backend::session`], [`SQLITE_SESSION`]), and a
//! pool built with them ([`pool_options`]), and a store's migration files compiled in
//! ([`Embedded`], [`embedded!`]).
//!
//! It deliberately knows no table, runs no migration and opens no connection itself: a store
//! connects with these options, runs its own migrations and owns everything after.

use std::time::Duration;

use sqlx::any::AnyPoolOptions;

/// Which database a store talks to; the SQL is shared, but session set-up, pooling and
/// migrations differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend a database URL names: `sqlite:…` is SQLite, anything else PostgreSQL.
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// The statements every new session of this backend runs before its first query: none on
    /// PostgreSQL, [`SQLITE_SESSION`] on SQLite.
    pub fn session(self) -> &'static [&'static str] {
        match self {
            Backend::Postgres => &[],
            Backend::Sqlite => SQLITE_SESSION,
        }
    }
}

/// How long an SQLite writer waits for the write lock before its statement fails: 10 s, far
/// longer than any store's transaction holds it (a gateway tap group or fare upload, a sandbox
/// payment, a settlement run's store step). The same for every store; the provider sandbox and
/// settlement waited 5 s before they shared this crate.
pub const SQLITE_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 10000";

/// Every SQLite session's set-up. WAL lets readers run beside the single writer; FULL sync
/// makes every acknowledged commit survive power loss; the busy timeout
/// ([`SQLITE_BUSY_TIMEOUT`]) makes concurrent writers wait instead of failing; foreign keys are
/// enforced (SQLite's default is off).
pub const SQLITE_SESSION: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    SQLITE_BUSY_TIMEOUT,
    "PRAGMA foreign_keys = ON",
];

/// How long a caller waits for a pooled connection before failing.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool of at most `connections_max` sessions, each set up with [`Backend::session`], that
/// waits at most [`ACQUIRE_TIMEOUT`] for a free one. A store whose sessions need more (the
/// gateway's) builds its own `after_connect` on [`SQLITE_SESSION`] instead.
pub fn pool_options(backend: Backend, connections_max: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(connections_max)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                for statement in backend.session() {
                    sqlx::query(statement).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    #[test]
    fn a_url_names_its_backend_by_its_scheme() {
        assert_eq!(Backend::of_url("sqlite://x.db?mode=rwc"), Backend::Sqlite);
        assert_eq!(Backend::of_url("sqlite::memory:"), Backend::Sqlite);
        assert_eq!(Backend::of_url("postgres://u@h/db"), Backend::Postgres);
        assert_eq!(Backend::of_url("postgresql://u@h/db"), Backend::Postgres);
    }

    /// A pooled SQLite session has the shared pragmas in force before its first query.
    #[tokio::test]
    async fn sqlite_sessions_are_set_up_before_use() {
        sqlx::any::install_default_drivers();
        let pool = pool_options(Backend::Sqlite, 1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        let pragma = |name: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query(&format!("PRAGMA {name}"))
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    .try_get::<i64, _>(0)
                    .unwrap()
            }
        };
        assert_eq!(pragma("busy_timeout").await, 10_000);
        assert_eq!(pragma("foreign_keys").await, 1);
        // FULL
        assert_eq!(pragma("synchronous").await, 2);
        pool.close().await;
    }
}

/// Migrations compiled into the program: each file's name (`0001_core.sql`: version 1,
/// description "core") and its SQL, as `include_str!` gives them.
///
/// This stands in for sqlx's `migrate!` macro, which needs sqlx's compile-time machinery — a
/// second, host-side build of sqlx's PostgreSQL and SQLite drivers and tokio, ≈ 45 s of CPU in
/// a clean release build here. The migrations are the same: the version and the checksum
/// (SHA-384 of the SQL) that sqlx stores and checks are computed exactly as it does, so
/// databases migrated by either agree.
#[derive(Debug, Clone, Copy)]
pub struct Embedded(pub &'static [(&'static str, &'static str)]);

impl Embedded {
    /// The migrations, in version order; a file name without a `<version>_` prefix is a
    /// programming error and panics.
    pub fn migrations(self) -> Vec<sqlx::migrate::Migration> {
        let mut out: Vec<_> = self
            .0
            .iter()
            .map(|&(name, sql)| {
                let stem = name.strip_suffix(".sql").unwrap_or(name);
                let (version, description) = stem
                    .split_once('_')
                    .unwrap_or_else(|| panic!("migration {name} has no <version>_ prefix"));
                let version: i64 = version
                    .parse()
                    .unwrap_or_else(|_| panic!("migration {name}: version is not a number"));
                sqlx::migrate::Migration::new(
                    version,
                    std::borrow::Cow::Owned(description.replace('_', " ")),
                    sqlx::migrate::MigrationType::Simple,
                    std::borrow::Cow::Borrowed(sql),
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect();
        out.sort_by_key(|m| m.version);
        out
    }

    /// A migrator over these migrations.
    pub async fn migrator(self) -> Result<sqlx::migrate::Migrator, sqlx::migrate::MigrateError> {
        sqlx::migrate::Migrator::new(self).await
    }
}

impl sqlx::migrate::MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
                > + Send,
        >,
    > {
        Box::pin(async move { Ok(self.migrations()) })
    }
}

/// [`Embedded`] migrations of the calling crate: `embedded!("migrations/postgres", "0001_core.sql",
/// …)` includes each file under the crate's directory. A test of each store checks the list
/// against the directory, so a new file cannot be forgotten.
#[macro_export]
macro_rules! embedded {
    ($dir:literal, $($file:literal),+ $(,)?) => {
        $crate::Embedded(&[$(
            ($file, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $dir, "/", $file))),
        )+])
    };
}

/// The `.sql` file names in a migration directory, sorted.
fn migration_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    names.sort();
    names
}

impl Embedded {
    /// The file names, in order.
    pub fn names(self) -> Vec<String> {
        let mut names: Vec<String> = self.0.iter().map(|(n, _)| n.to_string()).collect();
        names.sort();
        names
    }

    /// Where these migrations differ from what sqlx reads from `dir` (a file left out of the
    /// list, or another version, description or checksum), if they do: for each store's test
    /// that its list is complete and that databases migrated before still validate.
    pub async fn differs_from(self, dir: &std::path::Path) -> Option<String> {
        let (names, files) = (self.names(), migration_files(dir));
        if names != files {
            return Some(format!("listed {names:?}, the directory has {files:?}"));
        }
        let ours = match self.migrator().await {
            Ok(m) => m,
            Err(e) => return Some(format!("the embedded migrations: {e}")),
        };
        let theirs = match sqlx::migrate::Migrator::new(dir).await {
            Ok(m) => m,
            Err(e) => return Some(format!("sqlx reading {}: {e}", dir.display())),
        };
        let key = |m: &sqlx::migrate::Migration| {
            let description = m.description.to_string();
            (m.version, description, m.checksum.to_vec(), m.no_tx)
        };
        let ours: Vec<_> = ours.iter().map(key).collect();
        let theirs: Vec<_> = theirs.iter().map(key).collect();
        (ours != theirs).then(|| format!("embedded {ours:?}, sqlx reads {theirs:?}"))
    }
}
