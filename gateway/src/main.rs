//! `gateway`: serve, make development certificates, or export a day's open data. (The demo is
//! its own program: `cargo run --release -p demo`.)

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::Config;

/// mimalloc rather than glibc's malloc: 6 % less gateway CPU per tap at 1,880 taps/s in an A/B
/// (docs/bench-history.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gateway",
    about = "Turnpike gateway: ride codes, taps, journeys and fares"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the terminal, rider, admin and ops APIs.
    Serve {
        /// TOML config file; `TURNPIKE_<SECTION>__<FIELD>` environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Exports.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// A business day's open data (docs/open-data.md): hourly entries per station and fare
    /// class, the O–D matrix per hour band, and datapackage.json, in OUT/<operator>/<date>/.
    OpenData {
        /// The business day (YYYY-MM-DD); default: yesterday in each operator's time zone.
        #[arg(long)]
        date: Option<jiff::civil::Date>,
        /// Where the packages go.
        #[arg(long)]
        out: PathBuf,
        /// One operator; default: every metro operator.
        #[arg(long)]
        operator: Option<String>,
        /// The smallest count published.
        #[arg(long, default_value_t = gateway::opendata::rules::K_DEFAULT)]
        k: i64,
        /// The licence the package states (SPDX id).
        #[arg(long, default_value = gateway::opendata::package::Licence::DEFAULT)]
        licence: String,
        /// Differential privacy: the day's package's total budget ε (a decimal, 0.01…10),
        /// half per table. Without it the counts are exact.
        #[arg(long)]
        epsilon: Option<gateway::opendata::dp::Epsilon>,
        /// With --epsilon: the package's total δ, half per table.
        #[arg(long, default_value_t = gateway::opendata::dp::DELTA_DEFAULT, requires = "epsilon")]
        delta: f64,
        /// With --epsilon: journeys counted per rider and day (the first by entry time).
        #[arg(long, default_value_t = gateway::opendata::dp::JOURNEYS_PER_RIDER_DEFAULT, requires = "epsilon")]
        max_journeys_per_rider: i64,
        /// TOML config file (the database is `database.url`), as for `serve`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Generate a development CA, server certificate and terminal certificates.
    Dev {
        #[arg(long)]
        out: PathBuf,
        /// Terminal ids to issue client certificates for (repeatable).
        #[arg(long = "terminal")]
        terminals: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            init_tracing();
            let config = Config::load(config.as_deref())?;
            let admin_token = admin_token(&config)?;
            let gateway = gateway::Gateway::build(config, &admin_token).await?;
            tracing::info!(terminal = %gateway.terminal_addr(), public = %gateway.public_addr(), ops = %gateway.ops_addr(), "gateway listening");
            gateway.run_until(shutdown_signal()).await
        }
        Command::Certs {
            command: CertsCommand::Dev { out, mut terminals },
        } => {
            if terminals.is_empty() {
                terminals = turnpike_client::demo::demo_terminal_ids();
            }
            turnpike_client::certs::write_dev_pki(&out, &terminals)?;
            println!(
                "wrote dev CA, server and {} terminal certificates to {}",
                terminals.len(),
                out.display()
            );
            Ok(())
        }
        Command::Export {
            command:
                ExportCommand::OpenData {
                    date,
                    out,
                    operator,
                    k,
                    licence,
                    epsilon,
                    delta,
                    max_journeys_per_rider,
                    config,
                },
        } => {
            let config = Config::load(config.as_deref())?;
            gateway::opendata::check_k(k)?;
            let dp = epsilon
                .map(|e| gateway::opendata::dp::Dp::new(e, delta, max_journeys_per_rider))
                .transpose()?;
            // The noise's generator: a CSPRNG (ChaCha) seeded from the operating system.
            let mut rng = match dp {
                None => None,
                Some(_) => Some(
                    <rand::rngs::StdRng as rand::SeedableRng>::from_rng(rand::rngs::OsRng)
                        .context("seeding the noise's generator from the operating system")?,
                ),
            };
            let store = gateway::store::Store::connect(config.database.url.expose(), 2, 1).await?;
            let operators: Vec<_> = store
                .operators()
                .await?
                .into_iter()
                .filter(|o| match &operator {
                    Some(id) => &o.operator_id == id,
                    None => o.mode == "metro",
                })
                .collect();
            if operators.is_empty() {
                anyhow::bail!(
                    "no {} to export",
                    operator.map_or("metro operator".to_string(), |id| format!("operator {id}"))
                );
            }
            for op in &operators {
                let date = match date {
                    Some(d) => d,
                    None => yesterday(&op.time_zone)?,
                };
                let job = gateway::opendata::Export {
                    date,
                    k,
                    out: out.clone(),
                    licence: gateway::opendata::package::Licence::named(&licence),
                };
                let report = match (&dp, rng.as_mut()) {
                    (Some(dp), Some(rng)) => {
                        gateway::opendata::export_noisy(&store, op, &job, dp, rng).await
                    }
                    _ => gateway::opendata::export(&store, op, &job).await,
                }
                .with_context(|| format!("exporting {} for {date}", op.operator_id))?;
                println!("{report}");
            }
            store.close().await;
            Ok(())
        }
    }
}

/// The business day that ended last in a time zone.
fn yesterday(zone: &str) -> anyhow::Result<jiff::civil::Date> {
    let tz = jiff::tz::TimeZone::get(zone).with_context(|| format!("time zone {zone}"))?;
    Ok(jiff::Timestamp::now().to_zoned(tz).date().yesterday()?)
}

/// The admin token from config, or (dev) a random one written next to the certificates.
fn admin_token(config: &Config) -> anyhow::Result<String> {
    if !config.admin.token.is_empty() {
        return Ok(config.admin.token.expose().to_string());
    }
    let path = config.tls.dir.join("admin-token");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_string());
    }
    let token = hex::encode(gateway::random_bytes::<24>());
    turnpike_client::certs::write_secret(&path, &token)
        .with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(path = %path.display(), "no admin.token configured; generated one (development only)");
    Ok(token)
}

/// JSON logs, `info` unless `RUST_LOG` says otherwise.
fn init_tracing() {
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().json())
        .with(log_filter(tracing::Level::INFO))
        .init();
}

/// `RUST_LOG` as a list of `target=level` directives (e.g. `info,sqlx=warn`), else `default`.
fn log_filter(default: tracing::Level) -> tracing_subscriber::filter::Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| tracing_subscriber::filter::Targets::new().with_default(default))
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
        _ = ctrl_c => {}
        _ = term => {}
    }
}
