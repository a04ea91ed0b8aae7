//! `provider-sandbox serve`: run the Alipay-compatible sandbox.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
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
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    match cli.command {
        Command::Serve {
            listen,
            database,
            keys,
            payment_code_ttl_ms,
        } => {
            let mut config = Config::new(listen, database, keys);
            config.payment_code_ttl_ms = payment_code_ttl_ms;
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
