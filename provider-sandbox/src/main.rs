//! `provider-sandbox serve`: run the Alipay-compatible sandbox.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use provider_sandbox::faults::Faults;
use provider_sandbox::{Config, Sandbox};

#[derive(Parser)]
#[command(
    name = "provider-sandbox",
    about = "A faithful stand-in for the Alipay open platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve `POST /gateway.do` and the `/sandbox/...` admin endpoints.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// `sqlite://path?mode=rwc` or `postgres://user@host/db`.
        #[arg(long, default_value = "sqlite://provider-sandbox.db?mode=rwc")]
        database: String,
        /// Directory holding `platform-private.pem`.
        #[arg(long, default_value = "provider-sandbox/dev-keys")]
        keys: PathBuf,
        /// How long a payment code stays valid, in milliseconds.
        #[arg(long, default_value_t = 60_000)]
        payment_code_ttl_ms: u64,
        /// Fault knobs in force at start (JSON; see the README). Change them at run time with
        /// `PUT /sandbox/faults`.
        #[arg(long)]
        faults: Option<PathBuf>,
        /// Waits between notification retries, in milliseconds, comma-separated (default the
        /// platform's 4m,10m,10m,1h,2h,6h,15h).
        #[arg(long, value_delimiter = ',')]
        notify_retry_ms: Option<Vec<u64>>,
        /// A CA certificate (PEM) to trust for HTTPS notify URLs (a development gateway's CA).
        #[arg(long)]
        notify_ca: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer())
        .with(log_filter(tracing::Level::INFO))
        .init();
    match cli.command {
        Command::Serve {
            listen,
            database,
            keys,
            payment_code_ttl_ms,
            faults,
            notify_retry_ms,
            notify_ca,
        } => {
            let mut config = Config::new(listen, database, keys);
            config.payment_code_ttl_ms = payment_code_ttl_ms;
            if let Some(path) = faults {
                config.faults = Faults::from_file(&path)?;
            }
            config.notify_ca_file = notify_ca;
            if let Some(schedule) = notify_retry_ms {
                config.notify_retry_ms = schedule;
            }
            let sandbox = Sandbox::build(config).await?;
            tracing::info!(addr = %sandbox.addr(), "provider sandbox listening");
            sandbox.run_until(shutdown_signal()).await
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// `RUST_LOG` as a list of `target=level` directives (e.g. `info,sqlx=warn`), else `default`.
fn log_filter(default: tracing::Level) -> tracing_subscriber::filter::Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| tracing_subscriber::filter::Targets::new().with_default(default))
}
