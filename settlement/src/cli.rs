//! The `settlement` command line: its flags ([`Args`]) and, per command, the step between the
//! flags and the library — checking a flag before anything connects, building a run's
//! configuration, and the lines a command prints. `main.rs` parses, connects and calls these.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::money::format_minor;
use crate::run::{GatewayInput, OperatorDay, RunConfig, RunReport};
use crate::store::{OperatorSetting, Store};

#[derive(Parser)]
#[command(
    name = "settlement",
    about = "Turnpike settlement: nightly reconciliation and the finance review UI"
)]
pub struct Args {
    /// Settlement's database (`sqlite://…` or `postgres://…`); the gateway's database when
    /// the gateway's ledger is read from it.
    #[arg(long, global = true, env = "TURNPIKE_DATABASE__URL")]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct Inputs {
    /// Gateway export v1 file(s); without it the gateway's ledger is read from --database.
    #[arg(long = "gateway-export")]
    pub gateway_exports: Vec<PathBuf>,
    /// The provider's daily bill file(s) (CSV, UTF-8 or GBK).
    #[arg(long = "provider-bill")]
    pub provider_bills: Vec<PathBuf>,
    /// An operator's gate/booth export: OPERATOR_ID=FILE (repeat per operator).
    #[arg(long = "operator-export", value_parser = parse_operator_export)]
    pub operator_exports: Vec<(String, PathBuf)>,
    /// Scratch directory (the gateway export written from the database goes there).
    #[arg(long, default_value = "target/settlement-work")]
    pub work_dir: PathBuf,
    /// Also write the outputs as files under DIR/<day>/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// An operator's time zone for this run: OPERATOR_ID=ZONE (IANA, e.g. Asia/Tokyo; repeat
    /// per operator). Default: settlement's settings, then the gateway's operators table,
    /// then Asia/Shanghai.
    #[arg(long = "operator-tz", value_parser = parse_operator_tz)]
    pub operator_tz: Vec<(String, String)>,
    /// An operator's business-day cut-off for this run: OPERATOR_ID=HH:MM (local time the
    /// business day starts; default 00:00).
    #[arg(long = "operator-cutoff", value_parser = parse_operator_cutoff)]
    pub operator_cutoff: Vec<(String, jiff::civil::Time)>,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// The nightly job once, as `serve` runs it at --nightly-at: settle the business day that
    /// ended before now in --time-zone (or --date) from --inputs-dir/<day>/provider/*.csv and
    /// --inputs-dir/<day>/operators/<operator>.csv, the gateway's ledger from --database. For a
    /// systemd timer or cron instead of the built-in schedule (deploy/systemd/).
    Nightly {
        /// The day to settle instead of yesterday (YYYY-MM-DD).
        #[arg(long)]
        date: Option<String>,
        #[arg(long, default_value = "Asia/Shanghai")]
        time_zone: String,
        #[arg(long, default_value = "settlement-inputs")]
        inputs_dir: PathBuf,
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
pub enum OperatorCommand {
    /// Set an operator's business day: its cut-off (local time the day starts, HH:MM) and,
    /// optionally, a time zone overriding the gateway's. What is not given stays as it was (an
    /// operator without settings starts at 00:00 in the gateway's zone).
    Set {
        #[arg(long)]
        operator: String,
        /// HH:MM; unchanged when not given (00:00 for an operator without settings).
        #[arg(long)]
        cutoff: Option<String>,
        /// IANA zone overriding the gateway's operators table; `gateway` removes the override
        /// (the gateway's zone decides, else Asia/Shanghai). Unchanged when not given.
        #[arg(long)]
        time_zone: Option<String>,
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
    },
    /// Four-eyes approval of an operator's statements (on by default): the person who
    /// approves is not one who resolved any of its exceptions.
    FourEyes {
        #[arg(long)]
        operator: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
    },
    /// List the operators' business-day settings.
    List,
}

#[derive(Subcommand)]
pub enum UserCommand {
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
    let t = crate::run::parse_cutoff(at).map_err(|e| format!("cut-off {at:?}: {e}"))?;
    Ok((id.to_string(), t))
}

/// `--date`: a business day, YYYY-MM-DD.
pub fn parse_day(s: &str) -> anyhow::Result<jiff::civil::Date> {
    s.parse()
        .map_err(|e| anyhow::anyhow!("--date must be YYYY-MM-DD: {e}"))
}

impl Inputs {
    /// No input files: the gateway's ledger from the database, the default scratch directory.
    pub fn none() -> Inputs {
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

    /// The run of `business_day` (of `operator` only, if given) over these inputs.
    pub fn into_config(
        self,
        business_day: jiff::civil::Date,
        operator: Option<String>,
    ) -> RunConfig {
        RunConfig {
            operator_days: operator_days(&self.operator_tz, &self.operator_cutoff),
            business_day,
            operator,
            gateway: if self.gateway_exports.is_empty() {
                GatewayInput::Database
            } else {
                GatewayInput::Files(self.gateway_exports)
            },
            provider_bills: self.provider_bills,
            operator_exports: self.operator_exports,
            work_dir: self.work_dir,
            out_dir: self.out,
        }
    }
}

/// `--operator-tz` and `--operator-cutoff` merged into one business day per operator, in the
/// order the operators were first named (a repeated flag: the last one counts).
fn operator_days(
    zones: &[(String, String)],
    cutoffs: &[(String, jiff::civil::Time)],
) -> Vec<OperatorDay> {
    let mut days: Vec<OperatorDay> = Vec::new();
    for (op, zone) in zones {
        day_of(&mut days, op).time_zone = Some(zone.clone());
    }
    for (op, at) in cutoffs {
        day_of(&mut days, op).cutoff = Some(*at);
    }
    days
}

/// The operator's entry of `days`, added (nothing set) when it has none yet.
fn day_of<'a>(days: &'a mut Vec<OperatorDay>, operator_id: &str) -> &'a mut OperatorDay {
    match days.iter().position(|d| d.operator_id == operator_id) {
        Some(i) => &mut days[i],
        None => {
            days.push(OperatorDay {
                operator_id: operator_id.to_string(),
                ..OperatorDay::default()
            });
            days.last_mut().expect("an entry was just added")
        }
    }
}

/// What `settlement run` prints: the run, then each operator's net payable and exceptions.
pub fn run_summary(report: &RunReport) -> Vec<String> {
    let mut lines = vec![format!(
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
    )];
    for op in &report.outcome.operators {
        let net = op
            .figure("net_payable")
            .map(|f| f.amount_minor)
            .unwrap_or(0);
        lines.push(format!(
            "  {:<16} net payable {:>16}  exceptions {}",
            op.operator_id,
            format_minor(net, &op.currency),
            op.exceptions.len()
        ));
    }
    lines
}

/// `settlement reopen`: one operator's statement of a day, or every approved one; what it did.
pub async fn reopen(
    store: &Store,
    day: &str,
    operator: Option<&str>,
    actor: &str,
    reason: &str,
) -> anyhow::Result<String> {
    Ok(match operator {
        Some(op) => {
            if store.reopen_operator(day, op, actor, reason).await? {
                format!("reopened {day} for {op}")
            } else {
                format!("{day} of {op} was not approved; nothing to reopen")
            }
        }
        None => {
            if store.reopen_day(day, actor, reason).await? {
                format!("reopened {day} (every approved operator)")
            } else {
                format!("no operator of {day} was approved; nothing to reopen")
            }
        }
    })
}

/// `settlement operator set`: the new setting, its cut-off and zone checked; what the command
/// does not give is kept from `current` (the operator's stored setting, if any).
pub fn operator_setting(
    operator: String,
    cutoff: Option<&str>,
    time_zone: Option<String>,
    current: Option<&OperatorSetting>,
) -> anyhow::Result<OperatorSetting> {
    let cutoff = match cutoff {
        Some(text) => crate::run::cutoff_text(crate::run::parse_cutoff(text).context("--cutoff")?),
        None => current.map_or_else(|| "00:00".to_string(), |c| c.cutoff.clone()),
    };
    let time_zone = match time_zone.as_deref() {
        None => current.and_then(|c| c.time_zone.clone()),
        Some("gateway") => None,
        Some(tz) => {
            jiff::tz::TimeZone::get(tz)
                .with_context(|| format!("--time-zone: unknown time zone {tz:?}"))?;
            Some(tz.to_string())
        }
    };
    Ok(OperatorSetting {
        operator_id: operator,
        time_zone,
        cutoff,
    })
}

/// `settlement operator list`: every operator the gateway or settlement's settings know, with
/// the zone and cut-off in force.
pub async fn operator_list(store: &Store) -> anyhow::Result<Vec<String>> {
    let gateway: std::collections::BTreeMap<String, String> =
        store.gateway_time_zones().await?.into_iter().collect();
    let settings = store.operator_settings().await?;
    let mut ids: std::collections::BTreeSet<String> = gateway.keys().cloned().collect();
    ids.extend(settings.iter().map(|s| s.operator_id.clone()));
    let mut lines = Vec::new();
    for id in ids {
        let s = settings.iter().find(|s| s.operator_id == id);
        let zone = s
            .and_then(|s| s.time_zone.clone())
            .or_else(|| gateway.get(&id).cloned())
            .unwrap_or_else(|| crate::day::DEFAULT_TIME_ZONE.into());
        let cutoff = s
            .map(|s| s.cutoff.clone())
            .unwrap_or_else(|| "00:00".into());
        lines.push(format!("{id:<20} {zone:<24} cut-off {cutoff}"));
    }
    Ok(lines)
}

/// `settlement user add`'s password: TURNPIKE_SETTLEMENT_PASSWORD, else the first line of
/// standard input; refused when shorter than [`crate::auth::PASSWORD_CHARS_MIN`].
pub fn read_password() -> anyhow::Result<String> {
    let password = match std::env::var("TURNPIKE_SETTLEMENT_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.chars().count() < crate::auth::PASSWORD_CHARS_MIN {
        bail!(
            "the password needs at least {} characters",
            crate::auth::PASSWORD_CHARS_MIN
        );
    }
    Ok(password)
}

/// `settlement export-gateway`: the gateway's ledger of `day` (each operator's business day)
/// written to `out` as a gateway export v1 file; what it wrote.
pub async fn export_gateway(
    store: &Store,
    day: jiff::civil::Date,
    out: &Path,
) -> anyhow::Result<String> {
    let config = Inputs::none().into_config(day, None);
    let windows = crate::run::operator_windows(store, &config).await?;
    let default = crate::DayWindow::shanghai(config.business_day)?;
    let records = crate::run::write_gateway_export(store, &default, &windows, out).await?;
    Ok(format!(
        "{records} records of {day} written to {}",
        out.display()
    ))
}

/// `settlement serve`'s nightly job: its zone (checked even when the job is off) and its local
/// time, None for "off".
pub fn nightly_schedule(
    time_zone: &str,
    nightly_at: &str,
) -> anyhow::Result<Option<(jiff::tz::TimeZone, jiff::civil::Time)>> {
    let tz = jiff::tz::TimeZone::get(time_zone).context("--time-zone")?;
    if nightly_at == "off" {
        return Ok(None);
    }
    let at = nightly_at
        .parse::<jiff::civil::Time>()
        .context("--nightly-at must be HH:MM or off")?;
    Ok(Some((tz, at)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_set_keeps_what_it_is_not_given() {
        let set = |cutoff: Option<&str>, tz: Option<&str>, current: Option<&OperatorSetting>| {
            operator_setting("hz".into(), cutoff, tz.map(str::to_string), current)
        };
        let new = set(None, None, None).unwrap();
        assert_eq!((new.cutoff.as_str(), new.time_zone), ("00:00", None));
        let current = set(Some("04:00"), Some("Asia/Tokyo"), None).unwrap();
        assert_eq!(
            (current.cutoff.as_str(), current.time_zone.as_deref()),
            ("04:00", Some("Asia/Tokyo"))
        );
        // Only the zone given: the cut-off stays 04:00 (it used to fall back to 00:00).
        let zone_only = set(None, Some("Europe/London"), Some(&current)).unwrap();
        assert_eq!(
            (zone_only.cutoff.as_str(), zone_only.time_zone.as_deref()),
            ("04:00", Some("Europe/London"))
        );
        // Only the cut-off given: the zone override stays.
        let cutoff_only = set(Some("03:30"), None, Some(&current)).unwrap();
        assert_eq!(
            (
                cutoff_only.cutoff.as_str(),
                cutoff_only.time_zone.as_deref()
            ),
            ("03:30", Some("Asia/Tokyo"))
        );
        // `gateway` removes the override.
        assert_eq!(
            set(None, Some("gateway"), Some(&current))
                .unwrap()
                .time_zone,
            None
        );
        let err = set(Some("25:00"), None, Some(&current)).unwrap_err();
        assert!(format!("{err:#}").contains("--cutoff"), "{err:#}");
        let err = set(None, Some("Asia/Atlantis"), None).unwrap_err();
        assert!(format!("{err:#}").contains("Asia/Atlantis"), "{err:#}");
    }

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
            (op.as_str(), crate::run::cutoff_text(at)),
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

    #[test]
    fn an_operators_zone_and_cutoff_flags_make_one_business_day() {
        let at = |t: &str| crate::run::parse_cutoff(t).unwrap();
        let days = operator_days(
            &[
                ("tokyo-metro".into(), "Asia/Tokyo".into()),
                ("hz-metro".into(), "Asia/Shanghai".into()),
            ],
            &[
                ("sh-metro".into(), at("03:00")),
                ("hz-metro".into(), at("04:00")),
            ],
        );
        let day = |id: &str, zone: Option<&str>, cutoff: Option<&str>| OperatorDay {
            operator_id: id.into(),
            time_zone: zone.map(String::from),
            cutoff: cutoff.map(at),
        };
        assert_eq!(
            days,
            [
                day("tokyo-metro", Some("Asia/Tokyo"), None),
                day("hz-metro", Some("Asia/Shanghai"), Some("04:00")),
                day("sh-metro", None, Some("03:00")),
            ]
        );
    }
}
