//! The Turnpike gateway: decides in milliseconds whether a gate opens, and records every tap
//! durably before it says so.
//!
//! # Layout
//! - [`config`]: every setting and its default.
//! - [`clock`]: the wall clock every time rule reads, injected so tests move it.
//! - [`server`], [`tls`]: listeners; mutual TLS for terminals, server TLS for riders and admins.
//! - [`api`]: the HTTP routers (terminal, rider, admin, ops).
//! - [`limits`]: request budgets per client (terminal, rider, source address).
//! - [`rules`]: the tap rules as pure functions (no I/O, no clock).
//! - [`engine`]: the group-commit writers that apply them.
//! - [`network`]: fare networks in force (metro fares, toll tables) per operator.
//! - [`registry`]: in-memory snapshots of terminals, deny list and issuer keys.
//! - [`store`]: the only module that speaks SQL (PostgreSQL and SQLite).
//! - [`opendata`]: the daily open-data export (counts, suppression, Frictionless package;
//!   optionally differentially private noise).
//!
//! - [`charging`], [`provider`]: collecting the money through the payment provider.

pub mod api;
pub mod charging;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod flow;
mod known;
pub mod limits;
pub mod network;
pub mod opendata;
pub mod provider;
pub mod registry;
pub mod repair;
pub mod rules;
pub mod server;
pub mod store;
pub mod tls;
pub mod trip_updates;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use turnpike_wire::ridecode::VerifyPolicy;

use crate::clock::Clock;
use crate::config::Config;
use crate::engine::{Rules, TapEngine};
use crate::network::Networks;
use crate::registry::Registry;
use crate::store::Store;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub networks: Arc<Networks>,
    pub engine: TapEngine,
    pub metrics: PrometheusHandle,
    pub admin_token_sha256: [u8; 32],
    pub charging: charging::Charging,
    pub limits: Arc<limits::Limits>,
    pub clock: Clock,
}

impl AppState {
    pub async fn refresh_registry(&self) -> anyhow::Result<()> {
        self.registry.refresh(&self.store).await
    }
}

/// A built gateway: database migrated, state loaded, ports bound (port 0 picks a free one).
pub struct Gateway {
    state: AppState,
    terminal: (TcpListener, TlsAcceptor),
    public: (TcpListener, TlsAcceptor),
    ops: TcpListener,
}

/// A boxed, sendable future (see [`Gateway::build`] for why the entry points return one).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
/// A boxed future that stays on its thread: building is awaited in place, never spawned (and
/// sqlx's borrowed connections keep the compiler from proving it `Send`).
pub type LocalBoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

impl Gateway {
    /// Connects and migrates the database, loads the registry and networks, starts the tap
    /// writers and binds the ports (port 0 works).
    ///
    /// A future boxed where it is defined, so its state machine is compiled once, in this crate,
    /// rather than again in every crate that awaits it (an `async fn`'s body is otherwise compiled
    /// where it is polled: in each binary and test that uses it). See ARCHITECTURE.md, "Build".
    pub fn build(config: Config, admin_token: &str) -> LocalBoxFuture<'_, anyhow::Result<Gateway>> {
        Box::pin(Gateway::build_inner(config, admin_token, Clock::system()))
    }

    /// [`Gateway::build`] on a clock the caller holds (tests move it forward instead of
    /// sleeping).
    pub fn build_with_clock(
        config: Config,
        admin_token: &str,
        clock: Clock,
    ) -> LocalBoxFuture<'_, anyhow::Result<Gateway>> {
        Box::pin(Gateway::build_inner(config, admin_token, clock))
    }

    async fn build_inner(
        config: Config,
        admin_token: &str,
        clock: Clock,
    ) -> anyhow::Result<Gateway> {
        config.validate()?;
        // Bound first, so that while the database is still out of reach the ops listener says
        // "alive, not ready" (and the terminal listener's port is taken, not refused).
        let terminal = TcpListener::bind(config.listen.terminal)
            .await
            .with_context(|| format!("binding {}", config.listen.terminal))?;
        let public = TcpListener::bind(config.listen.public)
            .await
            .with_context(|| format!("binding {}", config.listen.public))?;
        let ops = TcpListener::bind(config.listen.ops)
            .await
            .with_context(|| format!("binding {}", config.listen.ops))?;
        let store = connect_waiting(&config, &ops).await?;
        let policy = VerifyPolicy {
            freshness_ms: config.taps.freshness_ms,
            max_future_skew_ms: config.taps.max_future_skew_ms,
        };
        let registry = Arc::new(
            Registry::load(
                &store,
                policy,
                config.taps.credential_cache_max,
                clock.clone(),
            )
            .await?,
        );
        let networks = Arc::new(Networks::default());
        networks.reload(&store).await?;
        let rules = Rules {
            payment_lease_ms: (config.charging.toll_budget_ms + config.provider.call_timeout_ms)
                as i64,
            journeys: config.journeys.rules(),
            commit_batch_taps_max: config.taps.commit_batch_taps_max,
            clock: clock.clone(),
            answer_budget: Duration::from_millis(config.taps.answer_budget_ms),
            batch_answer_budget: Duration::from_millis(config.taps.batch_answer_budget_ms),
            group_timeout: Duration::from_millis(config.taps.group_timeout_ms),
            known_riders_max: config.taps.known_riders_max,
        };
        let engine = TapEngine::start(
            store.clone(),
            networks.clone(),
            rules,
            config.taps.writers,
            config.taps.queue_requests_max,
        );
        let terminal_tls = tls::terminal_server_config(&config.tls.dir, registry.clone())?;
        let public_tls = tls::public_server_config(&config.tls.dir)?;
        let provider = if config.provider.url.is_empty() {
            None
        } else {
            Some(provider::ProviderClient::new(&config.provider)?)
        };
        let charging = charging::Charging {
            store: store.clone(),
            provider,
            config: Arc::new(config.charging.clone()),
            clock: clock.clone(),
        };
        let state = AppState {
            charging,
            limits: Arc::new(limits::Limits::new(&config.limits, config.flow.streams_max)),
            config: Arc::new(config),
            store,
            registry,
            networks,
            engine,
            metrics: metrics_handle(),
            admin_token_sha256: api::sha256(admin_token.as_bytes()),
            clock,
        };
        Ok(Gateway {
            state,
            terminal: (terminal, TlsAcceptor::from(Arc::new(terminal_tls))),
            public: (public, TlsAcceptor::from(Arc::new(public_tls))),
            ops,
        })
    }

    pub fn terminal_addr(&self) -> SocketAddr {
        self.terminal
            .0
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public
            .0
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn ops_addr(&self) -> SocketAddr {
        self.ops
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting, drains in-flight requests (up to
    /// [`server::DRAIN_TIMEOUT`]) and closes the database pool. Boxed like [`Gateway::build`].
    pub fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        self.run_until_boxed(Box::pin(shutdown))
    }

    fn run_until_boxed(
        self,
        shutdown: BoxFuture<'static, ()>,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(self.serve_until(shutdown))
    }

    async fn serve_until(self, shutdown: BoxFuture<'static, ()>) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let state = self.state.clone();
        let timeout_ms = state.config.listen.request_timeout_ms;
        let terminal_router = api::with_request_deadline(
            api::with_terminal_limit(
                api::with_json_fallbacks(
                    api::terminal::router(state.clone())
                        .merge(api::toll::router(state.clone()))
                        .merge(api::tickets::terminal_router(state.clone())),
                ),
                state.clone(),
            ),
            timeout_ms,
        );
        let public_router = api::with_request_deadline(
            api::with_json_fallbacks(
                api::rider::router(state.clone())
                    .merge(api::admin::router(state.clone()))
                    .merge(api::payments::rider_router(state.clone()))
                    .merge(api::tickets::rider_router(state.clone()))
                    .merge(api::payments::admin_router(state.clone()))
                    .merge(api::tickets::notify_router(state.clone()))
                    .merge(api::flow::router(state.clone(), stop_rx.clone()))
                    .merge(api::flow::admin_router(state.clone()))
                    .merge(api::app::router()),
            ),
            timeout_ms,
        );
        let ops_router = api::ops::router(state.clone());
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(server::serve_tls(
            self.terminal.0,
            self.terminal.1,
            terminal_router,
            server::Auth::Terminal,
            stop_rx.clone(),
        ));
        tasks.spawn(server::serve_tls(
            self.public.0,
            self.public.1,
            public_router,
            server::Auth::ServerOnly,
            stop_rx.clone(),
        ));
        tasks.spawn(server::serve_plain(self.ops, ops_router, stop_rx.clone()));
        tasks.spawn(refresher(state.clone(), stop_rx.clone()));
        tasks.spawn(sweeper(state.clone(), stop_rx.clone()));
        tasks.spawn(repairer(state.clone(), stop_rx.clone()));
        tasks.spawn(charging::capture::run(
            state.charging.clone(),
            stop_rx.clone(),
        ));
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        state.store.close().await;
        Ok(())
    }
}

/// Longest pause between two attempts to reach the database at start.
const CONNECT_RETRY_MAX: Duration = Duration::from_secs(5);

/// Connects to the database and migrates it; while it cannot be reached, waits for it (retrying
/// with backoff up to [`CONNECT_RETRY_MAX`]) and serves the ops listener as alive but not ready.
/// A mistake that waiting cannot mend (bad URL, a failing migration) ends the start.
async fn connect_waiting(config: &Config, ops: &TcpListener) -> anyhow::Result<Store> {
    let (stop, stopped) = watch::channel(false);
    let waiting = server::serve_plain(ops, api::ops::starting_router(), stopped);
    tokio::pin!(waiting);
    let mut pause = Duration::from_millis(200);
    let mut attempts = 0u32;
    loop {
        let connect = Store::connect(
            config.database.url.expose(),
            config.database.connections_max,
            config.taps.writers as u32,
        );
        let result = tokio::select! {
            result = connect => result,
            () = &mut waiting => anyhow::bail!("the ops listener stopped"),
        };
        match result {
            Ok(store) => {
                if attempts > 0 {
                    tracing::info!(attempts, "database reached");
                }
                let _ = stop.send(true);
                waiting.await;
                return Ok(store);
            }
            Err(e) if store::failure::unreachable(&e) => {
                attempts += 1;
                tracing::warn!(
                    error = format!("{e:#}"),
                    attempts,
                    retry_in_ms = pause.as_millis() as u64,
                    "database unreachable; waiting for it (not ready)"
                );
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = &mut waiting => anyhow::bail!("the ops listener stopped"),
                }
                pause = (pause * 2).min(CONNECT_RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Re-reads terminals, deny list and keys so changes made through other nodes arrive.
async fn refresher(state: AppState, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(state.config.taps.refresh_interval_ms.max(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = state.refresh_registry().await {
            tracing::warn!(error = %e, "registry refresh failed; keeping the previous snapshot");
        }
        if let Err(e) = state.networks.reload(&state.store).await {
            tracing::warn!(error = %e, "fare network reload failed; keeping the previous networks");
        }
        state.limits.sweep();
    }
}

/// Most journeys the sweeper closes per round; it comes back next round for the rest.
const SWEEP_JOURNEYS_MAX: i64 = 1_000;

/// Closes journeys whose entry is older than `journeys.incomplete_after_ms`, at the maximum fare.
async fn sweeper(state: AppState, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(state.config.journeys.sweep_interval_ms.max(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        match sweep_once(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(closed = n, "closed incomplete journeys at the maximum fare"),
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
    }
}

pub async fn sweep_once(state: &AppState) -> anyhow::Result<usize> {
    let now_ms = state.clock.now_ms();
    let cutoff = now_ms - state.config.journeys.incomplete_after_ms as i64;
    let stale = state
        .store
        .stale_open_journeys(cutoff, SWEEP_JOURNEYS_MAX)
        .await?;
    let mut closed = 0;
    for journey in stale {
        let Some(network) = state.networks.get(&journey.operator_id) else {
            continue;
        };
        let mut tx = state.store.begin().await?;
        if engine::close_incomplete(&mut tx, &network, &journey, now_ms).await? {
            closed += 1;
        }
        tx.commit().await?;
    }
    metrics::counter!("gateway_journeys_closed_incomplete_total").increment(closed as u64);
    repair_queued(state, now_ms).await?;
    Ok(closed)
}

/// Retries queued re-pairings every `journeys.repair_interval_ms`.
async fn repairer(state: AppState, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(state.config.journeys.repair_interval_ms.max(50));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = repair_queued(&state, state.clock.now_ms()).await {
            tracing::warn!(error = %e, "re-pairing round failed");
        }
    }
}

/// How long a queued re-pairing is left to the writer that queued it before the repairer takes
/// it over (the writer re-pairs right after its commit).
const REPAIR_LEFT_MS: i64 = 500;

/// Re-pairs riders left queued (see `repair`).
async fn repair_queued(state: &AppState, now_ms: i64) -> anyhow::Result<()> {
    let queued = state
        .store
        .queued_repairs(now_ms - REPAIR_LEFT_MS, SWEEP_JOURNEYS_MAX)
        .await?;
    let rules = state.config.journeys.rules();
    for (rider_id, mode) in queued {
        repair::repair(
            &state.store,
            &state.networks,
            &rules,
            now_ms,
            rider_id,
            mode,
        )
        .await?;
    }
    Ok(())
}

/// The process-wide Prometheus recorder (installed once; tests run several gateways per process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3, 1.0, 3.0,
            ];
            let batch = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                    &latency,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Suffix("_taps".into()),
                        &batch,
                    )
                })
                .expect("static bucket lists are valid")
                .build_recorder();
            let handle = recorder.handle();
            // A second recorder (another library in the same process) is not fatal: we still render ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// A random positive 63-bit id: unguessable, and no sequence to contend on across nodes.
pub fn random_id() -> i64 {
    loop {
        let id = i64::from_be_bytes(random_bytes::<8>()) & i64::MAX;
        if id != 0 {
            return id;
        }
    }
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .expect("the OS random source works");
    out
}
