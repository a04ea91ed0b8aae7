//! A faithful stand-in for the Alipay open platform, for development, tests and the demo.
//!
//! The gateway talks to it only over HTTP, exactly as it would to the real provider: one
//! `POST /gateway.do` endpoint taking the common form parameters, RSA2-signed requests, and
//! RSA2-signed `<method>_response` answers. Behind it are wallets with balances, one-time payment
//! codes, trades and refunds, persisted in SQLite or PostgreSQL so state survives restarts.
//!
//! # Layout
//! - [`sign`]: the canonical form and RSA2 signing/verification (ring).
//! - [`openapi`]: `POST /gateway.do` — parameter checks, signatures, method dispatch, answers,
//!   and where the fault knobs act.
//! - [`trade`]: the trade rules (pay, precreate and QR payment, deduction, query, cancel, refund,
//!   buyer confirmation, expiry, service fees).
//! - [`notify`]: the notification outbox's parameters and the dispatcher that delivers them.
//! - [`faults`]: the fault knobs (probabilistic per method, or a deterministic script).
//! - [`bill`]: the daily trade bill (业务明细) in GBK or UTF-8.
//! - [`admin`]: `/sandbox/...` JSON endpoints that set up the world, act as the buyer, and
//!   inspect the result (trades, notifications, bills).
//! - [`store`]: the only module that speaks SQL.
//! - [`money`], [`time`]: amounts as yuan strings ↔ fen; Asia/Shanghai API time ↔ UTC ms.
//! - [`error`]: the one error type, mapped to the platform's codes in one place.
//! - [`harness`]: the sandbox run in-process for tests (this crate's and the end-to-end suite's):
//!   start on a loopback port with a given database, restart, signed calls with verified answers,
//!   `/sandbox/...` helpers.
//!
//! The server is hyper's HTTP/1.1 connection loop around the axum router rather than
//! `axum::serve`, because a fault knob must be able to close a connection without answering
//! ([`AbortConnection`]). Two background tasks run beside it: the notification dispatcher and the
//! sweeper that closes expired unpaid trades and confirms `user_paying_ms` payments.
//!
//! It deliberately does not do: GBK requests, the legacy RSA sign type, AES content encryption,
//! certificate mode, HTTPS, or the zipped bill file.

pub mod admin;
pub mod agreement;
pub mod bill;
pub mod error;
pub mod faults;
pub mod harness;
pub mod money;
pub mod notify;
pub mod openapi;
pub mod sign;
pub mod store;
pub mod time;
pub mod trade;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::faults::{FaultState, Faults};
use crate::sign::Signer;
use crate::store::Store;

/// Every setting of the sandbox, with its default.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// `sqlite://path?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// Holds `platform-private.pem`, the key the sandbox signs answers with.
    pub keys_dir: PathBuf,
    pub connections_max: u32,
    /// How long a payment code stays valid; the real wallet refreshes codes every minute.
    pub payment_code_ttl_ms: u64,
    /// Largest request body accepted; open-API calls are a few kilobytes.
    pub request_body_bytes_max: usize,
    /// Deadline for one open-API call; past it the caller gets a 20000 system error.
    pub request_timeout_ms: u64,
    /// How long an unpaid trade lives when the merchant gives no `timeout_express`.
    pub trade_timeout_default_ms: u64,
    /// Waits between notification attempts: after the n-th failed attempt, the n-th entry; after
    /// the last, the notification is marked failed. The platform's: 4m, 10m, 10m, 1h, 2h, 6h, 15h.
    pub notify_retry_ms: Vec<u64>,
    /// A CA certificate (PEM) to trust for HTTPS notify URLs besides none: the real platform
    /// only posts to publicly trusted servers; development gateways use their own CA.
    pub notify_ca_file: Option<PathBuf>,
    /// How long the merchant has to answer one notification POST.
    pub notify_attempt_timeout_ms: u64,
    /// Most notifications one dispatcher round picks up, and delivers at once.
    pub notify_batch_max: usize,
    pub notify_concurrency_max: usize,
    /// How often the dispatcher looks for due notifications when nothing woke it.
    pub notify_poll_ms: u64,
    /// How often expired unpaid trades are closed and automatic confirmations made.
    pub sweep_interval_ms: u64,
    /// The fault knobs in force at start (`--faults FILE.json`).
    pub faults: Faults,
}

impl Config {
    pub fn new(listen: SocketAddr, database_url: String, keys_dir: PathBuf) -> Config {
        Config {
            listen,
            database_url,
            keys_dir,
            connections_max: 8,
            payment_code_ttl_ms: 60_000,
            request_body_bytes_max: 64 * 1024,
            request_timeout_ms: 10_000,
            trade_timeout_default_ms: 2 * 3_600_000,
            notify_retry_ms: vec![
                4 * 60_000,
                10 * 60_000,
                10 * 60_000,
                3_600_000,
                2 * 3_600_000,
                6 * 3_600_000,
                15 * 3_600_000,
            ],
            notify_ca_file: None,
            notify_attempt_timeout_ms: 10_000,
            notify_batch_max: 64,
            notify_concurrency_max: 16,
            notify_poll_ms: 1_000,
            sweep_interval_ms: 1_000,
            faults: Faults::default(),
        }
    }
}

/// The platform's private key file inside `keys_dir`.
pub const PLATFORM_PRIVATE_KEY_FILE: &str = "platform-private.pem";

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub platform_key: Arc<Signer>,
    pub faults: Arc<FaultState>,
    /// Wakes the notification dispatcher after a call that may have written notifications.
    pub dispatcher_wake: Arc<Notify>,
    /// `http://host:port` as bound, for URLs the sandbox hands out (the bill download URL).
    pub base_url: Arc<str>,
}

/// A response extension telling the server to close the connection without writing anything:
/// the `timeout` and `drop_after_commit` fault knobs. hyper closes an HTTP/1 connection when its
/// service fails, so the client sees a connection closed before any answer.
#[derive(Debug, Clone, Copy)]
pub struct AbortConnection;

impl std::fmt::Display for AbortConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by a fault knob")
    }
}

impl std::error::Error for AbortConnection {}

/// How long in-flight connections may finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Idle keep-alive connections are closed after reading no request header for this long.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A built sandbox: key loaded, database migrated, port bound (port 0 picks a free one).
pub struct Sandbox {
    state: AppState,
    listener: TcpListener,
}

/// A boxed, sendable future (see [`Sandbox::build`]).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

impl Sandbox {
    /// Loads the platform key, connects and migrates the database, binds the port.
    ///
    /// A future boxed where it is defined, so its state machine is compiled once, in this crate,
    /// rather than again in every crate that awaits it (an `async fn`'s body is otherwise compiled
    /// where it is polled: in each binary and test that uses it). See ARCHITECTURE.md, "Build".
    pub fn build(config: Config) -> BoxFuture<'static, anyhow::Result<Sandbox>> {
        Box::pin(Sandbox::build_inner(config))
    }

    async fn build_inner(config: Config) -> anyhow::Result<Sandbox> {
        let key_path = config.keys_dir.join(PLATFORM_PRIVATE_KEY_FILE);
        let platform_key = Signer::from_file(&key_path)
            .with_context(|| format!("loading the platform key {}", key_path.display()))?;
        let store = Store::connect(&config.database_url, config.connections_max).await?;
        config
            .faults
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid faults: {e}"))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let base_url = format!("http://{}", listener.local_addr()?);
        Ok(Sandbox {
            state: AppState {
                faults: Arc::new(FaultState::new(config.faults.clone())),
                config: Arc::new(config),
                store,
                platform_key: Arc::new(platform_key),
                dispatcher_wake: Arc::new(Notify::new()),
                base_url: base_url.into(),
            },
            listener,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` resolves, lets in-flight requests finish, stops the background
    /// tasks (a notification being delivered is simply delivered again after a restart), then
    /// closes the pool.
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
        let state = self.state.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let background = [
            tokio::spawn(notify::run_dispatcher(state.clone(), stop_rx.clone())),
            tokio::spawn(run_sweeper(state.clone(), stop_rx)),
        ];
        let served = serve(self.listener, router(state.clone()), shutdown).await;
        let _ = stop_tx.send(true);
        for task in background {
            task.abort();
            let _ = task.await;
        }
        state.store.close().await;
        served
    }
}

/// Accepts connections until `shutdown`, serving each with HTTP/1.1; a response carrying
/// [`AbortConnection`] closes its connection unanswered.
async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let app = app.clone();
            async move {
                let response = app.oneshot(req).await.unwrap_or_else(|e| match e {});
                if response.extensions().get::<AbortConnection>().is_some() {
                    Err(AbortConnection)
                } else {
                    Ok(response)
                }
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}

/// Closes expired unpaid trades and makes due automatic confirmations until `stop`.
async fn run_sweeper(state: AppState, mut stop: watch::Receiver<bool>) {
    let interval = Duration::from_millis(state.config.sweep_interval_ms.max(1));
    loop {
        match trade::sweep_due(&state.store, time::now_ms()).await {
            Ok(n) if n > 0 => state.dispatcher_wake.notify_one(),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweeping unpaid trades"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

pub fn router(state: AppState) -> Router {
    let body_max = state.config.request_body_bytes_max;
    Router::new()
        // The platform takes every call by GET as well as POST (independent client libraries
        // use GET), and the wallet opens signing pages by GET.
        .route(
            "/gateway.do",
            post(openapi::gateway_do).get(openapi::gateway_do),
        )
        .merge(admin::router())
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(state)
}
