//! `settlement run`: one business day from inputs to stored outputs.
//!
//! 1. Refuse an approved (locked) day up front (and again inside the storing transaction).
//! 2. Gather the inputs: the gateway's records of the day (from its database, written out as a
//!    gateway export v1 file so the engine reads one format, or an export file given), the
//!    provider's bill file(s), each operator's export(s). Hash every input's bytes.
//! 3. Reconcile (the [`Engine`]: the reconciliation engine of `recon`), check that each
//!    operator's journal balances to zero — the run fails loudly otherwise.
//! 4. Store run, base statement, exceptions and carried (`other_day`) items in one transaction,
//!    composing each statement with its adjustments (`adjust`) and rendering the outputs
//!    (`outputs`) inside it. A failure anywhere before the commit writes nothing.
//!
//! Each operator's business day is its own window (time zone, cut-off; see
//! [`operator_windows`]). Idempotent: the outputs depend only on the inputs' bytes, the items
//! carried in from other days and the day's adjust resolutions, so a re-run over identical
//! inputs and resolutions stores byte-identical outputs (and reports so).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use std::collections::BTreeMap;

use crate::day::{DayWindow, DEFAULT_TIME_ZONE};
use crate::digest::sha256_hex;
use crate::outcome::DayOutcome;
use crate::store::{now_ms, random_id, GatewayRecord, RunRecord, Store, StoreError};

/// Where the gateway's side of the day comes from.
#[derive(Debug, Clone)]
pub enum GatewayInput {
    /// The gateway's tables in the settlement store's database.
    Database,
    /// Gateway export v1 files (`settlement export-gateway` or the gateway's own export).
    Files(Vec<PathBuf>),
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub business_day: jiff::civil::Date,
    /// Settle only this operator (its statement and exceptions are replaced; others kept).
    pub operator: Option<String>,
    pub gateway: GatewayInput,
    pub provider_bills: Vec<PathBuf>,
    /// (operator id, export file).
    pub operator_exports: Vec<(String, PathBuf)>,
    /// Scratch directory for the gateway export written from the database.
    pub work_dir: PathBuf,
    /// Also write the outputs as files under `<dir>/<day>/`.
    pub out_dir: Option<PathBuf>,
    /// Operators' business days given for this run (`--operator-tz`, `--operator-cutoff`);
    /// they take precedence over settlement's settings and the gateway's `operators` table.
    pub operator_days: Vec<OperatorDay>,
}

/// An operator's business day as configured: its time zone and cut-off, each optional (the
/// next source decides: run flags, then `settlement_operator_settings`, then the gateway's
/// `operators.time_zone`, then Asia/Shanghai and 00:00).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorDay {
    pub operator_id: String,
    pub time_zone: Option<String>,
    pub cutoff: Option<jiff::civil::Time>,
}

/// What the reconciliation engine is given: files, all already hashed.
#[derive(Debug, Clone)]
pub struct EngineInputs {
    pub business_day: jiff::civil::Date,
    pub operator: Option<String>,
    pub gateway_exports: Vec<PathBuf>,
    pub provider_bills: Vec<PathBuf>,
    /// (operator id, export file).
    pub operator_exports: Vec<(String, PathBuf)>,
    /// Operator → provider fee rate of its contract (basis points), when the gateway's
    /// database is at hand; the engine checks the bill's fees against it.
    pub fee_rates_bp: Vec<(String, i64)>,
    /// The business day's window of each operator whose zone or cut-off is not the default
    /// (Asia/Shanghai, 00:00); every other operator has the default window.
    pub operator_days: BTreeMap<String, DayWindow>,
}

/// The reconciliation engine as the run uses it.
pub trait Engine: Send + Sync {
    fn settle(&self, inputs: &EngineInputs) -> anyhow::Result<DayOutcome>;
}

#[derive(Debug, Clone, Serialize)]
pub struct InputHash {
    pub role: String,
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: i64,
    pub inputs_sha256: String,
    pub outputs_sha256: String,
    /// The previous run of the day had the same inputs and produced the same outputs.
    pub same_as_previous: bool,
    pub outcome: DayOutcome,
}

pub fn run_day<'a>(
    store: &'a Store,
    engine: &'a dyn Engine,
    config: &'a RunConfig,
) -> crate::BoxFuture<'a, anyhow::Result<RunReport>> {
    Box::pin(run_day_inner(store, engine, config))
}

async fn run_day_inner(
    store: &Store,
    engine: &dyn Engine,
    config: &RunConfig,
) -> anyhow::Result<RunReport> {
    let day = config.business_day.to_string();
    let started_at_ms = now_ms();
    if store.day_status(&day).await? == "approved" {
        bail!(StoreError::DayLocked(day));
    }
    if let Some(op) = &config.operator {
        if store.operator_status(&day, op).await? == "approved" {
            bail!(StoreError::OperatorLocked {
                day,
                operator: op.clone()
            });
        }
    }
    let operator_days = operator_windows(store, config).await?;
    let default_window = DayWindow::shanghai(config.business_day)?;
    let mut fee_rates_bp = Vec::new();
    let gateway_exports = match &config.gateway {
        GatewayInput::Files(files) => files.clone(),
        GatewayInput::Database => {
            let records = gateway_day_records(store, &default_window, &operator_days)
                .await
                .context("reading the gateway's ledger from the database")?;
            fee_rates_bp = store
                .gateway_fee_rates_bp()
                .await
                .context("reading operators' fee rates")?;
            std::fs::create_dir_all(&config.work_dir)
                .with_context(|| format!("creating {}", config.work_dir.display()))?;
            let path = config.work_dir.join(format!("gateway-{day}.csv"));
            std::fs::write(&path, gateway_export_v1(&records))
                .with_context(|| format!("writing {}", path.display()))?;
            vec![path]
        }
    };
    let mut hashes = Vec::new();
    for path in &gateway_exports {
        hashes.push(hash_input("gateway", path)?);
    }
    for path in &config.provider_bills {
        hashes.push(hash_input("provider_bill", path)?);
    }
    for (operator, path) in &config.operator_exports {
        hashes.push(hash_input(&format!("operator_export {operator}"), path)?);
    }
    let mut summary = String::new();
    for h in &hashes {
        summary.push_str(&format!("{} {}\n", h.role, h.sha256));
    }
    summary.push_str(&format!(
        "operator {}\n",
        config.operator.as_deref().unwrap_or("*")
    ));
    for (op, bp) in &fee_rates_bp {
        summary.push_str(&format!("fee_rate {op} {bp}\n"));
    }
    for (op, w) in &operator_days {
        summary.push_str(&format!(
            "business_day {op} {} {}\n",
            w.time_zone_name(),
            w.cutoff_text()
        ));
    }
    let inputs_sha256 = sha256_hex(summary.as_bytes());
    let inputs = EngineInputs {
        business_day: config.business_day,
        operator: config.operator.clone(),
        gateway_exports,
        provider_bills: config.provider_bills.clone(),
        operator_exports: config.operator_exports.clone(),
        fee_rates_bp,
        operator_days,
    };
    let mut outcome = engine.settle(&inputs)?;
    if let Some(only) = &config.operator {
        outcome.operators.retain(|o| &o.operator_id == only);
    }
    check_outcome(&outcome, &day)?;
    let previous = store.latest_run(&day).await?;
    let run_id = random_id();
    let saved = store
        .save_run(&RunRecord {
            run_id,
            scope: config.operator.as_deref().unwrap_or(""),
            inputs_sha256: &inputs_sha256,
            inputs_json: &serde_json::to_string(&hashes)?,
            outcome: &outcome,
            started_at_ms,
            finished_at_ms: now_ms(),
        })
        .await?;
    if let Some(dir) = &config.out_dir {
        let dir = dir.join(&day);
        for f in &saved.files {
            let path = dir.join(&f.name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &f.body)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(RunReport {
        run_id,
        same_as_previous: previous
            .is_some_and(|(_, i, o)| i == inputs_sha256 && o == saved.outputs_sha256),
        inputs_sha256,
        outputs_sha256: saved.outputs_sha256,
        outcome: saved.outcome,
    })
}

/// Each operator's business day window for the run's date, where it is not the default
/// (Asia/Shanghai, 00:00): from the run's own flags, else settlement's settings
/// (`settlement operator set`), else the gateway's `operators.time_zone` (when the gateway's
/// tables are in the database). An unknown zone or a bad cut-off fails the run, naming the
/// operator and where the value came from.
pub async fn operator_windows(
    store: &Store,
    config: &RunConfig,
) -> anyhow::Result<BTreeMap<String, DayWindow>> {
    #[derive(Default)]
    struct Source {
        zone: Option<(String, &'static str)>,
        cutoff: Option<(String, &'static str)>,
    }
    let mut ops: BTreeMap<String, Source> = BTreeMap::new();
    for (op, tz) in store
        .gateway_time_zones()
        .await
        .context("reading operators' time zones from the gateway's tables")?
    {
        ops.entry(op).or_default().zone = Some((tz, "the gateway's operators table"));
    }
    for s in store.operator_settings().await? {
        let e = ops.entry(s.operator_id).or_default();
        if let Some(tz) = s.time_zone {
            e.zone = Some((tz, "settlement operator settings"));
        }
        e.cutoff = Some((s.cutoff, "settlement operator settings"));
    }
    for d in &config.operator_days {
        let e = ops.entry(d.operator_id.clone()).or_default();
        if let Some(tz) = &d.time_zone {
            e.zone = Some((tz.clone(), "--operator-tz"));
        }
        if let Some(c) = d.cutoff {
            e.cutoff = Some((c.to_string(), "--operator-cutoff"));
        }
    }
    let mut out = BTreeMap::new();
    for (op, src) in ops {
        let (zone, zone_from) = src
            .zone
            .unwrap_or_else(|| (DEFAULT_TIME_ZONE.to_string(), "the default"));
        let cutoff = match &src.cutoff {
            Some((text, from)) => parse_cutoff(text)
                .with_context(|| format!("operator {op}: cut-off {text:?} (from {from})"))?,
            None => jiff::civil::Time::midnight(),
        };
        let window = DayWindow::named(config.business_day, &zone, cutoff)
            .with_context(|| format!("operator {op}: time zone {zone:?} (from {zone_from})"))?;
        if window.time_zone_name() != DEFAULT_TIME_ZONE || window.cutoff_seconds() != 0 {
            out.insert(op, window);
        }
    }
    Ok(out)
}

/// A cut-off: `HH:MM` (or `HH:MM:SS`), local time.
pub fn parse_cutoff(text: &str) -> anyhow::Result<jiff::civil::Time> {
    let t: jiff::civil::Time = text
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("must be HH:MM: {e}"))?;
    if t.subsec_nanosecond() != 0 {
        bail!("must be HH:MM, without fractions of a second");
    }
    Ok(t)
}

/// A cut-off as `HH:MM` (`HH:MM:SS` when it has seconds), as settings store it.
pub fn cutoff_text(t: jiff::civil::Time) -> String {
    if t.second() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}

/// The gateway's money records of a business day, each operator's in its own window (the
/// default window for operators without one).
pub async fn gateway_day_records(
    store: &Store,
    default: &DayWindow,
    operator_days: &BTreeMap<String, DayWindow>,
) -> anyhow::Result<Vec<GatewayRecord>> {
    let (mut start, mut end) = default.bounds_ms();
    for w in operator_days.values() {
        let (s, e) = w.bounds_ms();
        start = start.min(s);
        end = end.max(e);
    }
    let mut records = store.gateway_records(start, end).await?;
    records.retain(|r| {
        let (s, e) = operator_days
            .get(&r.operator_id)
            .unwrap_or(default)
            .bounds_ms();
        r.occurred_at_ms >= s && r.occurred_at_ms < e
    });
    Ok(records)
}

fn hash_input(role: &str, path: &Path) -> anyhow::Result<InputHash> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading {role} input {}", path.display()))?;
    Ok(InputHash {
        role: role.into(),
        path: path.display().to_string(),
        bytes: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    })
}

/// The invariants a stored outcome must hold; any failure stops the run before it writes.
pub fn check_outcome(outcome: &DayOutcome, day: &str) -> anyhow::Result<()> {
    if outcome.business_day != day {
        bail!(
            "the engine settled {} instead of {day}",
            outcome.business_day
        );
    }
    for op in &outcome.operators {
        crate::adjust::check_operator(op, day)?;
    }
    Ok(())
}

/// Writes the gateway's records as a gateway export v1 file (see `formats::gateway` and
/// docs/settlement-formats.md). Deterministic: same records, same bytes.
pub fn gateway_export_v1(records: &[GatewayRecord]) -> String {
    let mut out = String::from("# turnpike-gateway-export v1\n");
    out.push_str("record_type,operator_id,business_day,out_trade_no,provider_trade_no,out_request_no,terminal_id,terminal_sequence,kind,amount_minor,fee_minor,currency,occurred_at_ms\n");
    for r in records {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.record_type,
            r.operator_id,
            r.business_day,
            r.out_trade_no,
            r.provider_trade_no,
            r.out_request_no,
            r.terminal_id,
            r.terminal_sequence
                .map(|s| s.to_string())
                .unwrap_or_default(),
            r.kind,
            r.amount_minor,
            r.fee_minor,
            r.currency,
            r.occurred_at_ms
        ));
    }
    out.push_str(&format!("# end rows={}\n", records.len()));
    out
}
