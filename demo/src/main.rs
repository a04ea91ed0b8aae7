//! `demo`: the self-contained demo — an embedded database, a development PKI, the provider
//! sandbox on its own port, and a real gateway driven over mutual TLS by demo gates, booths,
//! ticket machines and riders; then the day's settlement. See the README.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "demo",
    about = "Turnpike demo: a gateway, the provider sandbox, riders, gates and booths on an embedded database"
)]
struct Cli {
    /// Stop after this many seconds (exit code 0). Without it, run until Ctrl-C.
    #[arg(long)]
    duration: Option<u64>,
    /// Where to keep the demo's database and certificates (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Simulated riders.
    #[arg(long, default_value_t = 8)]
    riders: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().compact())
        .with(log_filter(tracing::Level::WARN))
        .init();
    demo::run(demo::DemoOptions {
        duration_s: cli.duration,
        dir: cli.dir,
        riders: cli.riders,
    })
    .await
}

/// `RUST_LOG` as a list of `target=level` directives (e.g. `info,sqlx=warn`), else `default`.
fn log_filter(default: tracing::Level) -> tracing_subscriber::filter::Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| tracing_subscriber::filter::Targets::new().with_default(default))
}
