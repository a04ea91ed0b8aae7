//! A faithful stand-in for the Alipay open platform, for development, tests and the demo.
//!
//! The gateway talks to it only over HTTP, exactly as it would to the real provider: one
//! `POST /gateway.do` endpoint taking the common form parameters, RSA2-signed requests, and
//! RSA2-signed `<method>_response` answers. Behind it are wallets with balances, one-time payment
//! codes, trades and refunds, persisted in SQLite or PostgreSQL so state survives restarts.
//!
//! # Layout
//! - [`sign`]: the canonical form and RSA2 signing/verification (ring).
//! - [`openapi`]: `POST /gateway.do` — parameter checks, signatures, method dispatch, answers.
//! - [`trade`]: the trade rules (pay, query, cancel, refund, buyer confirmation).
//! - [`admin`]: `/sandbox/...` JSON endpoints that set up the world and inspect it.
//! - [`store`]: the only module that speaks SQL.
//! - [`money`], [`time`]: amounts as yuan strings ↔ fen; Asia/Shanghai API time ↔ UTC ms.
//! - [`error`]: the one error type, mapped to the platform's codes in one place.
//!
//! It deliberately does not yet do: async notifications, fault knobs (latency, 5xx, dropped
//! responses), the daily bill file, precreate, agreement deduction, GBK, or certificate mode.

pub mod admin;
pub mod error;
pub mod money;
pub mod openapi;
pub mod sign;
pub mod store;
pub mod time;
pub mod trade;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;

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
}

/// A built sandbox: key loaded, database migrated, port bound (port 0 picks a free one).
pub struct Sandbox {
    state: AppState,
    listener: TcpListener,
}

impl Sandbox {
    pub async fn build(config: Config) -> anyhow::Result<Sandbox> {
        let key_path = config.keys_dir.join(PLATFORM_PRIVATE_KEY_FILE);
        let platform_key = Signer::from_file(&key_path)
            .with_context(|| format!("loading the platform key {}", key_path.display()))?;
        let store = Store::connect(&config.database_url, config.connections_max).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        Ok(Sandbox {
            state: AppState {
                config: Arc::new(config),
                store,
                platform_key: Arc::new(platform_key),
            },
            listener,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` resolves, lets in-flight requests finish, then closes the pool.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let app = router(state.clone());
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving")?;
        state.store.close().await;
        Ok(())
    }
}

pub fn router(state: AppState) -> Router {
    let body_max = state.config.request_body_bytes_max;
    Router::new()
        .route("/gateway.do", post(openapi::gateway_do))
        .merge(admin::router())
        .layer(DefaultBodyLimit::max(body_max))
        .with_state(state)
}
