//! `settlement`: settle a business day, serve the finance review UI, manage its users.
//!
//! Thin: parse arguments, set up logs, connect the store, call the library (the flags and each
//! command's steps: `settlement::cli`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use settlement::cli::{self, Args, Command, OperatorCommand, UserCommand};
use settlement::run::run_day;
use settlement::store::Store;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(log_filter(tracing::Level::INFO))
        .init();
    let args = Args::parse();
    let Some(url) = args.database.clone() else {
        bail!("--database (or TURNPIKE_DATABASE__URL) is required");
    };
    command(&url, args.command).await
}

/// One command: its flags checked first, then the store connected with a pool sized for it.
async fn command(url: &str, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run {
            date,
            operator,
            inputs,
        } => {
            let config = inputs.into_config(cli::parse_day(&date)?, operator);
            let store = Store::connect(url, 4).await?;
            let report = run_day(&store, settlement::engine(), &config).await?;
            print_lines(&cli::run_summary(&report));
        }
        Command::Reopen {
            date,
            operator,
            reason,
            actor,
        } => {
            let day = cli::parse_day(&date)?.to_string();
            let store = Store::connect(url, 2).await?;
            let done = cli::reopen(&store, &day, operator.as_deref(), &actor, &reason).await?;
            println!("{done}");
        }
        Command::Operator { command } => operator(url, command).await?,
        Command::User {
            command: UserCommand::Add { name },
        } => {
            let password = cli::read_password()?;
            let store = Store::connect(url, 2).await?;
            let hash = settlement::auth::hash_password(&password)?;
            store.upsert_user(&name, &hash).await?;
            println!("user {name} saved");
        }
        Command::ExportGateway { date, out } => {
            let day = cli::parse_day(&date)?;
            let store = Store::connect(url, 2).await?;
            println!("{}", cli::export_gateway(&store, day, &out).await?);
        }
        Command::Nightly {
            date,
            time_zone,
            inputs_dir,
        } => {
            let day = match date {
                Some(d) => cli::parse_day(&d)?,
                None => {
                    let tz = jiff::tz::TimeZone::get(&time_zone)
                        .with_context(|| format!("--time-zone {time_zone}"))?;
                    jiff::Timestamp::now().to_zoned(tz).date().yesterday()?
                }
            };
            let store = Store::connect(url, 4).await?;
            let config = settlement::schedule::nightly_config(&inputs_dir, day);
            let report = run_day(&store, settlement::engine(), &config).await?;
            print_lines(&cli::run_summary(&report));
        }
        Command::Serve {
            listen,
            nightly_at,
            time_zone,
            inputs_dir,
            cookie_secure,
        } => {
            serve(
                url,
                &listen,
                &nightly_at,
                &time_zone,
                inputs_dir,
                cookie_secure,
            )
            .await?
        }
    }
    Ok(())
}

/// `settlement operator set | list`: the operators' business days.
async fn operator(url: &str, command: OperatorCommand) -> anyhow::Result<()> {
    match command {
        OperatorCommand::Set {
            operator,
            cutoff,
            time_zone,
            actor,
        } => {
            let store = Store::connect(url, 2).await?;
            let settings = store.operator_settings().await?;
            let current = settings.iter().find(|s| s.operator_id == operator);
            let setting = cli::operator_setting(operator, cutoff.as_deref(), time_zone, current)?;
            store.set_operator_setting(&setting, &actor).await?;
            println!("business day of {} saved", setting.operator_id);
        }
        OperatorCommand::FourEyes {
            operator,
            state,
            actor,
        } => {
            let store = Store::connect(url, 2).await?;
            store
                .set_four_eyes(&operator, state == "on", &actor)
                .await?;
            println!("four-eyes approval of {operator}: {state}");
        }
        OperatorCommand::List => {
            let store = Store::connect(url, 2).await?;
            print_lines(&cli::operator_list(&store).await?);
        }
    }
    Ok(())
}

/// `settlement serve`: the review UI until Ctrl-C, and the nightly job beside it.
async fn serve(
    url: &str,
    listen: &str,
    nightly_at: &str,
    time_zone: &str,
    inputs_dir: PathBuf,
    cookie_secure: bool,
) -> anyhow::Result<()> {
    // Bad configuration stops here, before a port is bound.
    let nightly = cli::nightly_schedule(time_zone, nightly_at)?;
    let store = Store::connect(url, 8).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!("finance review UI on http://{}", listener.local_addr()?);
    if let Some((tz, at)) = nightly {
        tokio::spawn(settlement::schedule::nightly(
            store.clone(),
            tz,
            at,
            inputs_dir,
        ));
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let config = settlement::web::WebConfig {
        cookie_secure,
        ..Default::default()
    };
    settlement::web::serve(listener, store.clone(), config, shutdown).await?;
    store.close().await;
    Ok(())
}

fn print_lines(lines: &[String]) {
    for line in lines {
        println!("{line}");
    }
}

/// `RUST_LOG` as a list of `target=level` directives (e.g. `info,sqlx=warn`), else `default`.
fn log_filter(default: tracing::Level) -> tracing_subscriber::filter::Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| tracing_subscriber::filter::Targets::new().with_default(default))
}
