//! `terminal-sim`: run a scenario against a gateway (`run`), or plain open-loop load against any
//! URL (`load`). See the crate documentation and `docs/load.md`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use terminal_sim::load::LoadOptions;
use terminal_sim::{GateVerify, ProviderTarget, RunOptions, Scenario, Target};

#[derive(Parser)]
#[command(
    name = "terminal-sim",
    about = "Drive a Turnpike gateway with simulated gates, toll lanes and riders (open-loop load)"
)]
struct Cli {
    /// Tokio worker threads; 1 runs everything on one current-thread runtime (one core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a named scenario against a gateway and report expected vs observed.
    Run {
        #[arg(long, value_enum, default_value = "normal")]
        scenario: Scenario,
        /// Taps per second offered (the peak rate for rush-hour).
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        duration_s: f64,
        /// Terminal API base URL (mutual TLS).
        #[arg(long, default_value = "https://localhost:8443")]
        terminal_url: String,
        /// Rider/admin API base URL.
        #[arg(long, default_value = "https://localhost:8444")]
        public_url: String,
        /// Directory written by `gateway certs dev` (ca.pem, terminals/, admin-token).
        #[arg(long, default_value = "dev-certs")]
        certs: PathBuf,
        /// Create the demo operators, fares and terminals first (skipped where they exist).
        #[arg(long)]
        setup: bool,
        #[arg(long, value_enum, default_value = "inline")]
        gate_verify: GateVerify,
        /// Where gates keep their offline buffers.
        #[arg(long, default_value = "target/sim-buffers")]
        work_dir: PathBuf,
        /// How long a gate waits for a live answer before it admits (or refuses) the rider by
        /// its own verification, buffers the tap and uploads it later, as real gates do; 0
        /// counts failed requests as errors instead.
        #[arg(long, default_value_t = 1500)]
        gate_live_budget_ms: u64,
        /// The provider sandbox's base URL (its admin API): every rider gets a wallet and binds
        /// a withholding agreement, and toll exits are paid at the booth with payment codes
        /// (`POST /v1/toll/exits`). Needed by `provider-degradation`.
        #[arg(long)]
        provider_sandbox: Option<String>,
        /// The gateway's `provider.call_timeout_ms`; degraded calls hang 1 s longer.
        #[arg(long, default_value_t = 3000)]
        provider_call_timeout_ms: u64,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the latency/throughput chart (SVG) here.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Open-loop POSTs of a fixed body to any URL (HTTP/2; h2c for http://).
    Load {
        #[arg(long)]
        url: String,
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        duration_s: f64,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Request body (default `{}`).
        #[arg(long)]
        body: Option<PathBuf>,
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Client certificate and key (PEM) for mutual TLS.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long)]
        json: Option<PathBuf>,
        #[arg(long)]
        svg: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = match cli.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()?,
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    let (report, json, svg) = match command {
        Command::Run {
            scenario,
            rate,
            duration_s,
            terminal_url,
            public_url,
            certs,
            setup,
            gate_verify,
            work_dir,
            gate_live_budget_ms,
            provider_sandbox,
            provider_call_timeout_ms,
            json,
            svg,
        } => {
            let token = std::fs::read_to_string(certs.join("admin-token"))
                .context("reading admin-token")?;
            let target = Target {
                terminal_url,
                public_url,
                certs,
                admin_token: token.trim().to_string(),
            };
            if setup {
                terminal_sim::network::setup_demo(&target).await?;
            }
            let options = RunOptions {
                gate_verify,
                progress: true,
                work_dir,
                offline_fallback: (gate_live_budget_ms > 0)
                    .then(|| std::time::Duration::from_millis(gate_live_budget_ms)),
            };
            let provider = provider_sandbox.map(|url| ProviderTarget {
                call_timeout_ms: provider_call_timeout_ms,
                ..ProviderTarget::new(&url)
            });
            let report =
                terminal_sim::run_scenario(target, provider, scenario, rate, duration_s, &options)
                    .await?;
            (report, json, svg)
        }
        Command::Load {
            url,
            rate,
            duration_s,
            connections,
            body,
            ca,
            cert,
            key,
            json,
            svg,
        } => {
            let body = match body {
                Some(path) => std::fs::read(&path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .into(),
                None => bytes::Bytes::from_static(b"{}"),
            };
            let options = LoadOptions {
                url,
                rate_per_s: rate,
                duration_s,
                connections,
                body,
                ca,
                identity: cert.zip(key),
            };
            (terminal_sim::load::run(&options).await?, json, svg)
        }
    };
    print!("{}", report.summary());
    if let Some(path) = json {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
    }
    if let Some(path) = svg {
        report.write_chart(&path)?;
        println!("chart: {}", path.display());
    }
    if !report.passed {
        anyhow::bail!("some checks failed");
    }
    Ok(())
}
