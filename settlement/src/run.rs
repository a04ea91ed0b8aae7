//! `settlement run`: one business day from inputs to stored outputs.
//!
//! 1. Refuse an approved (locked) day up front (and again inside the storing transaction).
//! 2. Gather the inputs: the gateway's records of the day (from its database, written out as a
//!    gateway export v1 file so the engine reads one format, or an export file given), the
//!    provider's bill file(s), each operator's export(s). Hash every input's bytes.
//! 3. Reconcile (the [`Engine`]: the reconciliation engine of `recon`), check that each
//!    operator's journal balances to zero — the run fails loudly otherwise.
//! 4. Render the outputs (`outputs`), and store run, outputs, statement and exceptions in one
//!    transaction. A failure anywhere before the commit writes nothing.
//!
//! Idempotent: the outputs depend only on the inputs' bytes, so a re-run over identical inputs
//! stores byte-identical outputs (and reports so).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::outcome::DayOutcome;
use crate::outputs;
use crate::store::{now_ms, random_id, sha256_hex, GatewayRecord, RunRecord, Store, StoreError};

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

pub async fn run_day(
    store: &Store,
    engine: &dyn Engine,
    config: &RunConfig,
) -> anyhow::Result<RunReport> {
    let day = config.business_day.to_string();
    let started_at_ms = now_ms();
    if store.day_status(&day).await? == "approved" {
        bail!(StoreError::DayLocked(day));
    }
    let mut fee_rates_bp = Vec::new();
    let gateway_exports = match &config.gateway {
        GatewayInput::Files(files) => files.clone(),
        GatewayInput::Database => {
            let window = crate::DayWindow::shanghai(config.business_day)?;
            let (start_ms, end_ms) = window.bounds_ms();
            let records = store
                .gateway_records(start_ms, end_ms)
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
    let inputs_sha256 = sha256_hex(summary.as_bytes());
    let inputs = EngineInputs {
        business_day: config.business_day,
        operator: config.operator.clone(),
        gateway_exports,
        provider_bills: config.provider_bills.clone(),
        operator_exports: config.operator_exports.clone(),
        fee_rates_bp,
    };
    let mut outcome = engine.settle(&inputs)?;
    if let Some(only) = &config.operator {
        outcome.operators.retain(|o| &o.operator_id == only);
    }
    check_outcome(&outcome, &day)?;
    let files = outputs::render(&outcome);
    let outputs_sha256 = outputs::outputs_sha256(&files);
    let previous = store.latest_run(&day).await?;
    let run_id = random_id();
    store
        .save_run(&RunRecord {
            run_id,
            scope: config.operator.as_deref().unwrap_or(""),
            inputs_sha256: &inputs_sha256,
            inputs_json: &serde_json::to_string(&hashes)?,
            outputs_sha256: &outputs_sha256,
            outputs: &files,
            outcome: &outcome,
            started_at_ms,
            finished_at_ms: now_ms(),
        })
        .await?;
    if let Some(dir) = &config.out_dir {
        let dir = dir.join(&day);
        for f in &files {
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
            .is_some_and(|(_, i, o)| i == inputs_sha256 && o == outputs_sha256),
        inputs_sha256,
        outputs_sha256,
        outcome,
    })
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
        let imbalance = op.journal_imbalance_minor();
        if imbalance != 0 {
            bail!(
                "journal of operator {} for {day} does not balance: debits − credits = {imbalance} minor units; nothing stored",
                op.operator_id
            );
        }
        let names: Vec<&str> = op.figures.iter().map(|f| f.name.as_str()).collect();
        if names != crate::outcome::FIGURES {
            bail!("statement of {} has figures {names:?}", op.operator_id);
        }
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
