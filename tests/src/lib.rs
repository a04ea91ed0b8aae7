//! Test harness: starts real gateways on random loopback ports with a fresh database (SQLite file
//! or a new PostgreSQL database per test), a fresh dev PKI, the demo networks, and real
//! mutual-TLS clients.
//!
//! PostgreSQL tests use `TURNPIKE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! to create their databases. When PostgreSQL is unreachable they are skipped with a message,
//! unless `TURNPIKE_REQUIRE_PG=1` (set by `.ci/run`), which turns a skip into a failure.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gateway::config::Config;
use turnpike_client::demo::{demo_terminals, METRO_OPERATOR, TOLL_OPERATOR};
use turnpike_client::{AdminClient, RiderDevice, TerminalClient};
use turnpike_wire::api::{Direction, TapRequest, VehicleClass};

pub use gateway;

pub mod patroni;
pub mod pg_instance;
pub mod provider;
pub mod proxy;

pub use turnpike_test_support::{on_both, Database, Db, PgDatabase, Scratch};

/// The PKI of a test: a CA with server and terminal certificates for every demo terminal.
pub fn write_pki(dir: &Path) -> anyhow::Result<()> {
    let ids: Vec<String> = demo_terminals().into_iter().map(|(id, _, _)| id).collect();
    turnpike_client::certs::write_dev_pki(dir, &ids)
}

/// Test defaults: random ports, short refresh and sweep intervals.
pub fn test_config(db_url: &str, certs: &Path) -> Config {
    let mut config = Config::default();
    config.listen.terminal = "127.0.0.1:0".parse().expect("literal");
    config.listen.public = "127.0.0.1:0".parse().expect("literal");
    config.listen.ops = "127.0.0.1:0".parse().expect("literal");
    config.tls.dir = certs.to_path_buf();
    config.database.url = db_url.into();
    config.taps.refresh_interval_ms = 200;
    config.journeys.sweep_interval_ms = 3_600_000;
    // Tests drive many simulated gates, riders and registrations from one address and one
    // process; the budgets are tested on their own (`security.rs`, which sets them low).
    config.limits.terminal_requests_per_s = 1_000_000;
    config.limits.terminal_burst = 1_000_000;
    config.limits.rider_requests_per_s = 1_000_000;
    config.limits.rider_burst = 1_000_000;
    config.limits.registrations_per_s = 1_000_000;
    config.limits.registration_burst = 1_000_000;
    config
}

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running gateway.
pub struct TestGateway {
    pub terminal_base: String,
    pub public_base: String,
    pub ops_base: String,
    pub certs: PathBuf,
    pub state: gateway::AppState,
    pub admin: AdminClient,
    /// The gateway's clock: a test moves it forward (`clock.advance`) instead of sleeping.
    pub clock: gateway::clock::Clock,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestGateway {
    pub async fn start(config: Config) -> anyhow::Result<TestGateway> {
        let certs = config.tls.dir.clone();
        let clock = gateway::clock::Clock::system();
        let gateway =
            gateway::Gateway::build_with_clock(config, ADMIN_TOKEN, clock.clone()).await?;
        let terminal_base = format!("https://localhost:{}", gateway.terminal_addr().port());
        let public_base = format!("https://localhost:{}", gateway.public_addr().port());
        let ops_base = format!("http://{}", gateway.ops_addr());
        let state = gateway.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gateway.run_until(async {
            let _ = stopped.await;
        }));
        let admin = AdminClient::new(&public_base, &certs.join("ca.pem"), ADMIN_TOKEN)?;
        Ok(TestGateway {
            terminal_base,
            public_base,
            ops_base,
            certs,
            state,
            admin,
            clock,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops accepting, drains and waits for the server to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }

    /// Stops the gateway the hard way — its task aborted mid-flight, in-flight requests, provider
    /// calls and transactions dropped — as a crash or a killed process would.
    pub async fn crash(&mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.state.store.close().await;
    }

    pub fn ca(&self) -> PathBuf {
        self.certs.join("ca.pem")
    }

    /// A mutual-TLS client presenting terminal `id`'s certificate.
    pub fn terminal(&self, id: &str) -> TerminalClient {
        TerminalClient::new(
            &self.terminal_base,
            &self.ca(),
            &self.certs.join("terminals").join(format!("{id}.pem")),
            &self.certs.join("terminals").join(format!("{id}.key")),
        )
        .expect("terminal client")
    }

    /// Creates the demo operators (optionally with a metro daily cap), loads the demo networks
    /// and registers every demo terminal.
    pub async fn configure_demo(&self, metro_daily_cap: Option<&str>) -> anyhow::Result<()> {
        configure_demo(&self.admin, metro_daily_cap).await
    }

    pub async fn rider(&self) -> RiderDevice {
        RiderDevice::enrol(&self.public_base, &self.ca(), &["metro", "toll"])
            .await
            .expect("enrolling a rider")
    }

    /// Rows in a table (to prove that a refused request wrote nothing).
    pub async fn count(&self, table: &str) -> i64 {
        self.state
            .store
            .count_rows(table)
            .await
            .expect("counting rows")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A complete test environment on one database: scratch dir, PKI, database, one gateway.
pub struct Env {
    pub gw: TestGateway,
    pub db: Database,
    pub scratch: Scratch,
}

impl Env {
    /// None when the database is PostgreSQL and the test is skipped.
    pub async fn start(db: Db) -> Option<Env> {
        Env::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: Db, tweak: impl FnOnce(&mut Config)) -> Option<Env> {
        Env::start_custom(db, tweak, None).await
    }

    /// Like [`Env::start_with`], with a metro daily cap (e.g. `Some("10.00")` CNY).
    pub async fn start_custom(
        db: Db,
        tweak: impl FnOnce(&mut Config),
        metro_daily_cap: Option<&str>,
    ) -> Option<Env> {
        let scratch = Scratch::new(match db {
            Db::Sqlite => "sqlite",
            Db::Postgres => "pg",
        });
        write_pki(&scratch.0.join("certs")).expect("writing the PKI");
        let database = Database::create(db, &scratch, "gateway.db").await?;
        let mut config = test_config(database.url(), &scratch.0.join("certs"));
        tweak(&mut config);
        let gw = TestGateway::start(config)
            .await
            .expect("starting the gateway");
        gw.configure_demo(metro_daily_cap)
            .await
            .expect("configuring the demo networks");
        Some(Env {
            gw,
            db: database,
            scratch,
        })
    }
}

/// The demo metro's stop ids, in the fare data's order.
pub fn demo_stops() -> Vec<String> {
    turnpike_fares::demo_metro()
        .stops()
        .iter()
        .map(|s| s.id.clone())
        .collect()
}

/// Creates the demo operators (optionally with a metro daily cap), loads the demo networks and
/// registers every demo terminal, through a gateway's admin API (in this process or another).
pub async fn configure_demo(
    admin: &AdminClient,
    metro_daily_cap: Option<&str>,
) -> anyhow::Result<()> {
    let mut metro =
        serde_json::json!({"operator_id": METRO_OPERATOR, "name": "Metro", "mode": "metro"});
    if let Some(cap) = metro_daily_cap {
        metro["daily_cap"] = serde_json::json!({"amount": cap, "currency": "CNY"});
    }
    let ops = [
        metro,
        serde_json::json!({"operator_id": TOLL_OPERATOR, "name": "Expressway", "mode": "toll"}),
    ];
    for op in &ops {
        admin.post_ok("/v1/admin/operators", op).await?;
    }
    for (op, format) in [(METRO_OPERATOR, "demo_metro"), (TOLL_OPERATOR, "demo_toll")] {
        let a = admin
            .send(
                reqwest::Method::PUT,
                &format!("/v1/admin/operators/{op}/fares"),
                Some(&serde_json::json!({"format": format})),
            )
            .await?;
        anyhow::ensure!(
            a.status == 201,
            "loading fares: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
    for (id, op, location) in demo_terminals() {
        admin
            .post_ok(
                "/v1/admin/terminals",
                &serde_json::json!({"terminal_id": id, "operator_id": op, "location_id": location}),
            )
            .await
            .with_context(|| format!("registering {id}"))?;
    }
    Ok(())
}

/// A child process killed (SIGKILL) and reaped when dropped: a failed test leaves no server
/// behind (the fault suite's gateways, sandbox, HAProxy, etcd and Patroni nodes).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Names of demo terminals.
pub fn gate(stop: &str, n: u8) -> String {
    format!("gate-{stop}-{n}")
}

pub fn booth(plaza: &str, side: &str) -> String {
    format!("booth-{plaza}-{side}")
}

/// The devices' clock (gates and phones), UTC Unix milliseconds.
pub fn now_ms() -> u64 {
    turnpike_client::now_ms() as u64
}

/// A tap as a gate would send it now.
pub fn tap(sequence: u64, direction: Direction, ride_code: String) -> TapRequest {
    TapRequest {
        sequence,
        direction,
        ride_code,
        scanned_at_ms: now_ms(),
        vehicle_class: None,
    }
}

/// A tap scanned at `at_ms` showing a code the rider's phone generated at that moment (as an
/// offline gate buffers it).
pub fn tap_at(
    sequence: u64,
    direction: Direction,
    rider: &turnpike_client::RiderDevice,
    at_ms: u64,
) -> TapRequest {
    TapRequest {
        sequence,
        direction,
        ride_code: rider.ride_code(at_ms).expect("ride code"),
        scanned_at_ms: at_ms,
        vehicle_class: None,
    }
}

pub fn toll_exit(sequence: u64, ride_code: String, class: VehicleClass) -> TapRequest {
    TapRequest {
        sequence,
        direction: Direction::Exit,
        ride_code,
        scanned_at_ms: now_ms(),
        vehicle_class: Some(class),
    }
}

/// Runs a test body on both databases: `both_backends!(name, |env| async move { ... })`
/// expands to `name_sqlite` and `name_postgres` tests.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let env = $crate::Env::start($crate::Db::Sqlite)
                    .await
                    .expect("sqlite always available");
                ($body)(env).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(env) = $crate::Env::start($crate::Db::Postgres).await else {
                    return;
                };
                ($body)(env).await;
            }
        }
    };
}

/// Having a `Drop` impl makes test closures capture the whole environment rather than single
/// fields, so the scratch directory and database live as long as the test body.
impl Drop for Env {
    fn drop(&mut self) {}
}

/// Row counts of everything a tap can write, to prove that a refused request wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub taps: i64,
    pub journeys: i64,
    pub code_uses: i64,
}

impl TestGateway {
    /// What taps have written so far (`taps`, `journeys`, `code_uses`).
    pub async fn written(&self) -> Written {
        Written {
            taps: self.count("taps").await,
            journeys: self.count("journeys").await,
            code_uses: self.count("code_uses").await,
        }
    }

    /// The dev CA of this gateway, rebuilt from its `ca.key`, to mint certificates for TLS tests.
    pub fn dev_ca(&self) -> turnpike_client::certs::DevCa {
        dev_ca_of(&self.certs)
    }

    /// A mutual-TLS client presenting any certificate and key (PEM files).
    pub fn terminal_with(&self, cert_pem: &Path, key_pem: &Path) -> anyhow::Result<TerminalClient> {
        TerminalClient::new(&self.terminal_base, &self.ca(), cert_pem, key_pem)
    }

    /// A request to the public listener (rider and admin APIs) with an optional bearer token,
    /// answered precisely, for authentication and validation tests.
    pub async fn public_send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<turnpike_client::Answer> {
        let http = turnpike_client::tls::http_client(&self.ca(), None)?;
        let mut request = http.request(method, format!("{}{path}", self.public_base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        Ok(turnpike_client::Answer {
            status: response.status().as_u16(),
            body: response.bytes().await?.to_vec(),
        })
    }
}

/// The dev CA whose key is `<certs>/ca.key`.
pub fn dev_ca_of(certs: &Path) -> turnpike_client::certs::DevCa {
    let key = std::fs::read_to_string(certs.join("ca.key")).expect("reading ca.key");
    turnpike_client::certs::DevCa::from_key_pem(&key).expect("rebuilding the dev CA")
}

/// Mints a terminal certificate and writes it as `<dir>/<file_stem>.pem` and `.key`; returns
/// both paths.
pub fn write_terminal_cert(
    ca: &turnpike_client::certs::DevCa,
    dir: &Path,
    file_stem: &str,
    terminal_id: &str,
    validity: turnpike_client::certs::CertValidity,
    serial: u64,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (pem, key) = ca.terminal_cert(terminal_id, validity, serial)?;
    std::fs::create_dir_all(dir)?;
    let cert_path = dir.join(format!("{file_stem}.pem"));
    let key_path = dir.join(format!("{file_stem}.key"));
    std::fs::write(&cert_path, pem)?;
    turnpike_client::certs::write_secret(&key_path, &key)?;
    Ok((cert_path, key_path))
}
