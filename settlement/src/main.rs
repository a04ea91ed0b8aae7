//! `settlement`: settle a business day, serve the finance review UI, manage its users.
//!
//! Thin: parse arguments, set up logs, connect the store, call the library.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use settlement::run::{run_day, GatewayInput, OperatorDay, RunConfig};
use settlement::store::Store;

#[derive(Parser)]
#[command(
    name = "settlement",
    about = "Turnpike settlement: nightly reconciliation and the finance review UI"
)]
struct Args {
    /// Settlement's database (`sqlite://…` or `postgres://…`); the gateway's database when
    /// the gateway's ledger is read from it.
    #[arg(long, global = true, env = "TURNPIKE_DATABASE__URL")]
    database: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Inputs {
    /// Gateway export v1 file(s); without it the gateway's ledger is read from --database.
    #[arg(long = "gateway-export")]
    gateway_exports: Vec<PathBuf>,
    /// The provider's daily bill file(s) (CSV, UTF-8 or GBK).
    #[arg(long = "provider-bill")]
    provider_bills: Vec<PathBuf>,
    /// An operator's gate/booth export: OPERATOR_ID=FILE (repeat per operator).
    #[arg(long = "operator-export", value_parser = parse_operator_export)]
    operator_exports: Vec<(String, PathBuf)>,
    /// Scratch directory (the gateway export written from the database goes there).
    #[arg(long, default_value = "target/settlement-work")]
    work_dir: PathBuf,
    /// Also write the outputs as files under DIR/<day>/.
    #[arg(long)]
    out: Option<PathBuf>,
    /// An operator's time zone for this run: OPERATOR_ID=ZONE (IANA, e.g. Asia/Tokyo; repeat
    /// per operator). Default: settlement's settings, then the gateway's operators table,
    /// then Asia/Shanghai.
    #[arg(long = "operator-tz", value_parser = parse_operator_tz)]
    operator_tz: Vec<(String, String)>,
    /// An operator's business-day cut-off for this run: OPERATOR_ID=HH:MM (local time the
    /// business day starts; default 00:00).
    #[arg(long = "operator-cutoff", value_parser = parse_operator_cutoff)]
    operator_cutoff: Vec<(String, jiff::civil::Time)>,
}

#[derive(Subcommand)]
enum Command {
    /// Settle a business day: reconcile, check, store the statement, exceptions and payouts.
    Run {
        /// Business day, YYYY-MM-DD, in the operators' time zone.
        #[arg(long)]
        date: String,
        /// Only this operator.
        #[arg(long)]
        operator: Option<String>,
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Reopen an operator's approved (locked) statement of a day, with a reason kept in the
    /// audit trail. Without --operator, every approved operator of the day.
    Reopen {
        #[arg(long)]
        date: String,
        #[arg(long)]
        operator: Option<String>,
        #[arg(long)]
        reason: String,
        /// Who reopens it (recorded in the audit trail).
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
    },
    /// Operators' business days: time zone and cut-off (settlement's settings).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Finance users of the review UI.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Write the gateway's ledger of a day as a gateway export v1 file.
    ExportGateway {
        #[arg(long)]
        date: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve the finance review UI, and run the nightly job at a local time.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
        /// Local time of the nightly run (HH:MM) in --time-zone; "off" disables it.
        #[arg(long, default_value = "02:15")]
        nightly_at: String,
        #[arg(long, default_value = "Asia/Shanghai")]
        time_zone: String,
        /// Nightly inputs: DIR/<day>/provider/*.csv and DIR/<day>/operators/<operator id>.csv.
        #[arg(long, default_value = "settlement-inputs")]
        inputs_dir: PathBuf,
        /// Mark the session cookie Secure (when the UI is reached over TLS).
        #[arg(long)]
        cookie_secure: bool,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Set an operator's business day: its cut-off (local time the day starts, HH:MM,
    /// default 00:00) and, optionally, a time zone overriding the gateway's.
    Set {
        #[arg(long)]
        operator: String,
        #[arg(long, default_value = "00:00")]
        cutoff: String,
        /// IANA zone; without it the gateway's operators table decides (else Asia/Shanghai).
        #[arg(long)]
        time_zone: Option<String>,
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
    },
    /// List the operators' business-day settings.
    List,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user (or set a user's password). The password is read from
    /// TURNPIKE_SETTLEMENT_PASSWORD or, if unset, from the first line of standard input.
    Add {
        #[arg(long)]
        name: String,
    },
}

fn parse_operator_export(s: &str) -> Result<(String, PathBuf), String> {
    let (id, path) = s
        .split_once('=')
        .ok_or_else(|| "expected OPERATOR_ID=FILE".to_string())?;
    Ok((id.to_string(), PathBuf::from(path)))
}

fn parse_operator_tz(s: &str) -> Result<(String, String), String> {
    let (id, zone) = s
        .split_once('=')
        .ok_or_else(|| "expected OPERATOR_ID=ZONE, e.g. tokyo-metro=Asia/Tokyo".to_string())?;
    jiff::tz::TimeZone::get(zone).map_err(|e| format!("unknown time zone {zone:?}: {e}"))?;
    Ok((id.to_string(), zone.to_string()))
}

fn parse_operator_cutoff(s: &str) -> Result<(String, jiff::civil::Time), String> {
    let (id, at) = s
        .split_once('=')
        .ok_or_else(|| "expected OPERATOR_ID=HH:MM, e.g. hz-metro=04:00".to_string())?;
    let t = settlement::run::parse_cutoff(at).map_err(|e| format!("cut-off {at:?}: {e}"))?;
    Ok((id.to_string(), t))
}

fn parse_day(s: &str) -> anyhow::Result<jiff::civil::Date> {
    s.parse()
        .map_err(|e| anyhow::anyhow!("--date must be YYYY-MM-DD: {e}"))
}

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
    match args.command {
        Command::Run {
            date,
            operator,
            inputs,
        } => {
            let business_day = parse_day(&date)?;
            let store = Store::connect(&url, 4).await?;
            let config = run_config(business_day, operator, inputs);
            let report = run_day(&store, settlement::engine(), &config).await?;
            println!(
                "settled {} (run {}): inputs {} outputs {}{}",
                report.outcome.business_day,
                report.run_id,
                &report.inputs_sha256[..16],
                &report.outputs_sha256[..16],
                if report.same_as_previous {
                    " — identical to the previous run"
                } else {
                    ""
                }
            );
            for op in &report.outcome.operators {
                let net = op
                    .figure("net_payable")
                    .map(|f| f.amount_minor)
                    .unwrap_or(0);
                println!(
                    "  {:<16} net payable {:>16}  exceptions {}",
                    op.operator_id,
                    settlement::money::format_minor(net, &op.currency),
                    op.exceptions.len()
                );
            }
        }
        Command::Reopen {
            date,
            operator,
            reason,
            actor,
        } => {
            let day = parse_day(&date)?.to_string();
            let store = Store::connect(&url, 2).await?;
            match operator {
                Some(op) => {
                    if store.reopen_operator(&day, &op, &actor, &reason).await? {
                        println!("reopened {day} for {op}");
                    } else {
                        println!("{day} of {op} was not approved; nothing to reopen");
                    }
                }
                None => {
                    if store.reopen_day(&day, &actor, &reason).await? {
                        println!("reopened {day} (every approved operator)");
                    } else {
                        println!("no operator of {day} was approved; nothing to reopen");
                    }
                }
            }
        }
        Command::Operator {
            command:
                OperatorCommand::Set {
                    operator,
                    cutoff,
                    time_zone,
                    actor,
                },
        } => {
            let cutoff = settlement::run::parse_cutoff(&cutoff).context("--cutoff")?;
            if let Some(tz) = &time_zone {
                jiff::tz::TimeZone::get(tz)
                    .with_context(|| format!("--time-zone: unknown time zone {tz:?}"))?;
            }
            let store = Store::connect(&url, 2).await?;
            store
                .set_operator_setting(
                    &settlement::store::OperatorSetting {
                        operator_id: operator.clone(),
                        time_zone,
                        cutoff: settlement::run::cutoff_text(cutoff),
                    },
                    &actor,
                )
                .await?;
            println!("business day of {operator} saved");
        }
        Command::Operator {
            command: OperatorCommand::List,
        } => {
            let store = Store::connect(&url, 2).await?;
            let gateway: std::collections::BTreeMap<String, String> =
                store.gateway_time_zones().await?.into_iter().collect();
            let settings = store.operator_settings().await?;
            let mut ids: std::collections::BTreeSet<String> = gateway.keys().cloned().collect();
            ids.extend(settings.iter().map(|s| s.operator_id.clone()));
            for id in ids {
                let s = settings.iter().find(|s| s.operator_id == id);
                let zone = s
                    .and_then(|s| s.time_zone.clone())
                    .or_else(|| gateway.get(&id).cloned())
                    .unwrap_or_else(|| settlement::day::DEFAULT_TIME_ZONE.into());
                let cutoff = s
                    .map(|s| s.cutoff.clone())
                    .unwrap_or_else(|| "00:00".into());
                println!("{id:<20} {zone:<24} cut-off {cutoff}");
            }
        }
        Command::User {
            command: UserCommand::Add { name },
        } => {
            let password = match std::env::var("TURNPIKE_SETTLEMENT_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if password.chars().count() < settlement::auth::PASSWORD_CHARS_MIN {
                bail!(
                    "the password needs at least {} characters",
                    settlement::auth::PASSWORD_CHARS_MIN
                );
            }
            let store = Store::connect(&url, 2).await?;
            store
                .upsert_user(&name, &settlement::auth::hash_password(&password)?)
                .await?;
            println!("user {name} saved");
        }
        Command::ExportGateway { date, out } => {
            let day = parse_day(&date)?.to_string();
            let store = Store::connect(&url, 2).await?;
            let config = run_config(parse_day(&date)?, None, Inputs::none());
            let windows = settlement::run::operator_windows(&store, &config).await?;
            let default = settlement::DayWindow::shanghai(config.business_day)?;
            let records = settlement::run::gateway_day_records(&store, &default, &windows).await?;
            std::fs::write(&out, settlement::run::gateway_export_v1(&records))
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} records of {day} written to {}",
                records.len(),
                out.display()
            );
        }
        Command::Serve {
            listen,
            nightly_at,
            time_zone,
            inputs_dir,
            cookie_secure,
        } => {
            // Bad configuration stops here, before a port is bound.
            let tz = jiff::tz::TimeZone::get(&time_zone).context("--time-zone")?;
            let nightly = if nightly_at == "off" {
                None
            } else {
                Some(
                    nightly_at
                        .parse::<jiff::civil::Time>()
                        .context("--nightly-at must be HH:MM or off")?,
                )
            };
            let store = Store::connect(&url, 8).await?;
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            println!("finance review UI on http://{}", listener.local_addr()?);
            if let Some(at) = nightly {
                let store = store.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok((when, day)) =
                            settlement::schedule::next_run(jiff::Timestamp::now(), &tz, at)
                        else {
                            return;
                        };
                        let wait = (when.as_millisecond()
                            - jiff::Timestamp::now().as_millisecond())
                        .max(0);
                        tracing::info!(%when, %day, "settlement: next nightly run");
                        tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
                        let dir = inputs_dir.join(day.to_string());
                        let inputs = Inputs {
                            gateway_exports: Vec::new(),
                            provider_bills: csv_files(&dir.join("provider")),
                            operator_exports: csv_files(&dir.join("operators"))
                                .into_iter()
                                .filter_map(|p| {
                                    Some((p.file_stem()?.to_string_lossy().to_string(), p))
                                })
                                .collect(),
                            work_dir: inputs_dir.join("work"),
                            out: None,
                            operator_tz: Vec::new(),
                            operator_cutoff: Vec::new(),
                        };
                        match run_day(&store, settlement::engine(), &run_config(day, None, inputs))
                            .await
                        {
                            Ok(r) => {
                                tracing::info!(%day, run_id = r.run_id, "settlement: nightly run done")
                            }
                            Err(e) => {
                                tracing::error!(%day, error = %format!("{e:#}"), "settlement: nightly run failed")
                            }
                        }
                    }
                });
            }
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            settlement::web::serve(
                listener,
                store.clone(),
                settlement::web::WebConfig {
                    cookie_secure,
                    ..Default::default()
                },
                shutdown,
            )
            .await?;
            store.close().await;
        }
    }
    Ok(())
}

impl Inputs {
    fn none() -> Inputs {
        Inputs {
            gateway_exports: Vec::new(),
            provider_bills: Vec::new(),
            operator_exports: Vec::new(),
            work_dir: PathBuf::from("target/settlement-work"),
            out: None,
            operator_tz: Vec::new(),
            operator_cutoff: Vec::new(),
        }
    }
}

fn run_config(
    business_day: jiff::civil::Date,
    operator: Option<String>,
    inputs: Inputs,
) -> RunConfig {
    let mut operator_days: Vec<OperatorDay> = Vec::new();
    for (op, tz) in &inputs.operator_tz {
        match operator_days.iter_mut().find(|d| &d.operator_id == op) {
            Some(d) => d.time_zone = Some(tz.clone()),
            None => operator_days.push(OperatorDay {
                operator_id: op.clone(),
                time_zone: Some(tz.clone()),
                cutoff: None,
            }),
        }
    }
    for (op, at) in &inputs.operator_cutoff {
        match operator_days.iter_mut().find(|d| &d.operator_id == op) {
            Some(d) => d.cutoff = Some(*at),
            None => operator_days.push(OperatorDay {
                operator_id: op.clone(),
                time_zone: None,
                cutoff: Some(*at),
            }),
        }
    }
    RunConfig {
        operator_days,
        business_day,
        operator,
        gateway: if inputs.gateway_exports.is_empty() {
            GatewayInput::Database
        } else {
            GatewayInput::Files(inputs.gateway_exports)
        },
        provider_bills: inputs.provider_bills,
        operator_exports: inputs.operator_exports,
        work_dir: inputs.work_dir,
        out_dir: inputs.out,
    }
}

/// The `.csv` files of a directory, sorted (none if it does not exist).
fn csv_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "csv"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// `RUST_LOG` as a list of `target=level` directives (e.g. `info,sqlx=warn`), else `default`.
fn log_filter(default: tracing::Level) -> tracing_subscriber::filter::Targets {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| tracing_subscriber::filter::Targets::new().with_default(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_zone_and_cutoff_flags_are_checked_precisely() {
        assert_eq!(
            parse_operator_tz("tokyo-metro=Asia/Tokyo").unwrap(),
            ("tokyo-metro".to_string(), "Asia/Tokyo".to_string())
        );
        assert!(parse_operator_tz("Asia/Tokyo")
            .unwrap_err()
            .contains("OPERATOR_ID=ZONE"));
        assert!(parse_operator_tz("x=Asia/Atlantis")
            .unwrap_err()
            .contains("Asia/Atlantis"));
        let (op, at) = parse_operator_cutoff("hz-metro=04:00").unwrap();
        assert_eq!(
            (op.as_str(), settlement::run::cutoff_text(at)),
            ("hz-metro", "04:00".into())
        );
        assert!(parse_operator_cutoff("hz-metro=25:00")
            .unwrap_err()
            .contains("25:00"));
        let args = Args::try_parse_from([
            "settlement",
            "reopen",
            "--date",
            "2026-01-02",
            "--operator",
            "hz-metro",
            "--reason",
            "bill corrected",
        ])
        .unwrap();
        assert!(matches!(
            args.command,
            Command::Reopen { operator: Some(ref op), .. } if op == "hz-metro"
        ));
    }
}
