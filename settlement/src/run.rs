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
use crate::outcome::{DayOutcome, RecordPage, RECORD_FIGURES};
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

/// The reconciliation engine as the run uses it: the day's outcome (figures, journal,
/// exceptions, carried items), and the records behind its figures, produced afterwards page by
/// page so they never need to be in memory at once.
pub trait Engine: Send + Sync {
    fn settle(&self, inputs: &EngineInputs) -> anyhow::Result<(DayOutcome, Box<dyn RecordSource>)>;
}

/// The records behind a day's `gross`, `refunds` and `provider_fees` figures.
pub trait RecordSource: Send {
    /// Gives `sink` every page, in page order per (operator, figure); stops at its first error.
    fn write(
        self: Box<Self>,
        sink: &mut dyn FnMut(RecordPage) -> anyhow::Result<()>,
    ) -> anyhow::Result<()>;
}

/// What a run shows on a terminal (standard error, nothing when it is not a terminal): the
/// phase, the time so far and, while the records are stored, how many and how fast.
#[derive(Clone)]
pub struct Progress {
    bar: indicatif::ProgressBar,
    /// The current phase and when it started: each phase's time is logged when it ends.
    phase: std::sync::Arc<std::sync::Mutex<(String, std::time::Instant)>>,
}

impl Progress {
    pub fn start(phase: &str) -> Progress {
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {msg}: {human_pos} records ({per_sec})",
        ) {
            bar.set_style(style);
        }
        bar.set_message(phase.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress {
            bar,
            phase: std::sync::Arc::new(std::sync::Mutex::new((
                phase.to_string(),
                std::time::Instant::now(),
            ))),
        }
    }

    /// Ends the current phase (logging its time) and starts `next`.
    pub fn phase(&self, next: &str) {
        self.end_phase(Some(next));
        self.bar.set_message(next.to_string());
    }

    fn end_phase(&self, next: Option<&str>) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        tracing::info!(
            phase = %phase.0,
            seconds = format!("{:.2}", phase.1.elapsed().as_secs_f64()),
            records = self.bar.position(),
            "settlement run phase done"
        );
        if let Some(next) = next {
            *phase = (next.to_string(), std::time::Instant::now());
        }
    }

    pub fn add(&self, records: u64) {
        self.bar.inc(records);
    }

    pub fn finish(&self) {
        self.end_phase(None);
        self.bar.finish_and_clear();
    }
}

/// `--out`'s `<operator>/records.csv`, written while the records are produced (the same bytes
/// the review UI's download streams from the stored pages: the header, then each figure's
/// records in page order, each line led by its figure). Each figure goes to a part file; once
/// the run is stored the refunds are appended to the gross part (which starts with the header)
/// and it is renamed; a run that fails removes its parts.
struct RecordsFiles {
    dir: PathBuf,
    parts: BTreeMap<(String, &'static str), std::io::BufWriter<std::fs::File>>,
}

impl RecordsFiles {
    fn new(dir: PathBuf) -> RecordsFiles {
        RecordsFiles {
            dir,
            parts: BTreeMap::new(),
        }
    }

    fn part_path(&self, operator: &str, figure: &str) -> PathBuf {
        self.dir
            .join(operator)
            .join(format!("records.csv.{figure}.part"))
    }

    fn part(
        &mut self,
        operator: &str,
        figure: &'static str,
    ) -> anyhow::Result<&mut std::io::BufWriter<std::fs::File>> {
        use std::io::Write;
        let key = (operator.to_string(), figure);
        if !self.parts.contains_key(&key) {
            let path = self.part_path(operator, figure);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let mut file = std::io::BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(&path)
                    .with_context(|| format!("writing {}", path.display()))?,
            );
            if figure == RECORD_FIGURES[0] {
                file.write_all(crate::outcome::RECORDS_CSV_HEADER.as_bytes())?;
            }
            self.parts.insert(key.clone(), file);
        }
        Ok(self.parts.get_mut(&key).expect("inserted"))
    }

    fn write(&mut self, page: &RecordPage) -> anyhow::Result<()> {
        let out = self.part(&page.operator_id, page.figure)?;
        crate::outcome::write_records_lines(out, page.figure, &page.body)?;
        Ok(())
    }

    fn finish(mut self, operators: &[&str]) -> anyhow::Result<()> {
        use std::io::Write;
        for op in operators {
            self.part(op, RECORD_FIGURES[0])?;
        }
        for (_, mut part) in std::mem::take(&mut self.parts) {
            part.flush()?;
        }
        for op in operators {
            let gross = self.part_path(op, RECORD_FIGURES[0]);
            let refunds = self.part_path(op, RECORD_FIGURES[1]);
            if refunds.exists() {
                let mut to = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&gross)
                    .with_context(|| format!("writing {}", gross.display()))?;
                let mut from = std::fs::File::open(&refunds)
                    .with_context(|| format!("reading {}", refunds.display()))?;
                std::io::copy(&mut from, &mut to)?;
                std::fs::remove_file(&refunds)?;
            }
            let path = self.dir.join(op).join("records.csv");
            std::fs::rename(&gross, &path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    fn abandon(self) {
        for (operator, figure) in self.parts.keys() {
            let _ = std::fs::remove_file(self.part_path(operator, figure));
        }
    }
}

/// Pages in flight between the engine's producer and the store (each ≈ 25–60 KiB).
const PAGES_IN_FLIGHT: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct InputHash {
    pub role: String,
    pub path: String,
    pub bytes: u64,
    /// BLAKE3 of the file's bytes (hex): ~3x SHA-256's speed on one core, and the inputs of
    /// a city's day are gigabytes. The run's `inputs_sha256` is SHA-256 over these lines.
    pub blake3: String,
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
    let progress = Progress::start("gathering inputs");
    let mut fee_rates_bp = Vec::new();
    let gateway_exports = match &config.gateway {
        GatewayInput::Files(files) => files.clone(),
        GatewayInput::Database => {
            fee_rates_bp = store
                .gateway_fee_rates_bp()
                .await
                .context("reading operators' fee rates")?;
            std::fs::create_dir_all(&config.work_dir)
                .with_context(|| format!("creating {}", config.work_dir.display()))?;
            let path = config.work_dir.join(format!("gateway-{day}.csv"));
            write_gateway_export(store, &default_window, &operator_days, &path)
                .await
                .context("writing the gateway's ledger from the database as an export")?;
            vec![path]
        }
    };
    // What the inputs' fingerprint covers (read below, while the records are stored).
    let mut to_hash: Vec<(String, PathBuf)> = gateway_exports
        .iter()
        .map(|p| ("gateway".to_string(), p.clone()))
        .collect();
    to_hash.extend(
        config
            .provider_bills
            .iter()
            .map(|p| ("provider_bill".to_string(), p.clone())),
    );
    to_hash.extend(
        config
            .operator_exports
            .iter()
            .map(|(op, p)| (format!("operator_export {op}"), p.clone())),
    );
    let mut summary_tail = format!("operator {}\n", config.operator.as_deref().unwrap_or("*"));
    for (op, bp) in &fee_rates_bp {
        summary_tail.push_str(&format!("fee_rate {op} {bp}\n"));
    }
    for (op, w) in &operator_days {
        summary_tail.push_str(&format!(
            "business_day {op} {} {}\n",
            w.time_zone_name(),
            w.cutoff_text()
        ));
    }
    let inputs = EngineInputs {
        business_day: config.business_day,
        operator: config.operator.clone(),
        gateway_exports,
        provider_bills: config.provider_bills.clone(),
        operator_exports: config.operator_exports.clone(),
        fee_rates_bp,
        operator_days,
    };
    progress.phase("reconciling");
    let (mut outcome, records) = engine.settle(&inputs)?;
    // The inputs' fingerprints are read on a thread of their own while the records are stored
    // (gigabytes at a city's size; storing mostly waits for the database, so the reading fits
    // in beside it), and given to the store when it needs them, at the end.
    let hashing = tokio::task::spawn_blocking(move || {
        to_hash
            .iter()
            .map(|(role, path)| hash_input(role, path))
            .collect::<anyhow::Result<Vec<InputHash>>>()
    });
    let inputs_fingerprint: crate::BoxFuture<'_, anyhow::Result<(String, String)>> =
        Box::pin(async move {
            let hashes = hashing.await.context("fingerprinting the inputs")??;
            let mut summary = String::new();
            for h in &hashes {
                summary.push_str(&format!("{} {}\n", h.role, h.blake3));
            }
            summary.push_str(&summary_tail);
            Ok((
                sha256_hex(summary.as_bytes()),
                serde_json::to_string(&hashes)?,
            ))
        });
    if let Some(only) = &config.operator {
        outcome.operators.retain(|o| &o.operator_id == only);
    }
    check_outcome(&outcome, &day)?;
    let previous = store.latest_run(&day).await?;
    let run_id = random_id();
    // The records go from a producer thread to the storing transaction through a bounded
    // channel: memory is PAGES_IN_FLIGHT pages, whatever the day's size.
    progress.phase("storing records");
    let operators: std::collections::BTreeSet<String> = outcome
        .operators
        .iter()
        .map(|o| o.operator_id.clone())
        .collect();
    let (sender, mut pages) = tokio::sync::mpsc::channel::<RecordPage>(PAGES_IN_FLIGHT);
    let counter = progress.clone();
    let mut records_files = config
        .out_dir
        .as_ref()
        .map(|dir| RecordsFiles::new(dir.join(&day)));
    let producer = tokio::task::spawn_blocking(move || {
        let produced = records.write(&mut |page| {
            if !operators.contains(&page.operator_id) {
                return Ok(());
            }
            counter.add(page.records);
            if let Some(files) = &mut records_files {
                files.write(&page)?;
            }
            sender
                .blocking_send(page)
                .map_err(|_| anyhow::anyhow!("the store stopped taking records"))
        });
        (produced, records_files)
    });
    let saved = store
        .save_run(
            &RunRecord {
                run_id,
                scope: config.operator.as_deref().unwrap_or(""),
                outcome: &outcome,
                started_at_ms,
                finished_at_ms: now_ms(),
            },
            inputs_fingerprint,
            &mut pages,
        )
        .await;
    drop(pages);
    let (produced, records_files) = producer.await.context("the records producer")?;
    // The store's error first: a producer error is then only "the store stopped".
    let stored = saved.map_err(anyhow::Error::from).and_then(|saved| {
        produced.context("reading the records behind the figures")?;
        Ok(saved)
    });
    let saved = match stored {
        Ok(saved) => saved,
        Err(e) => {
            if let Some(files) = records_files {
                files.abandon();
            }
            return Err(e);
        }
    };
    if config.out_dir.is_some() {
        progress.phase("writing files");
    }
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
    if let Some(files) = records_files {
        let operators: Vec<&str> = saved
            .outcome
            .operators
            .iter()
            .map(|o| o.operator_id.as_str())
            .collect();
        files.finish(&operators)?;
    }
    progress.finish();
    Ok(RunReport {
        run_id,
        same_as_previous: previous
            .is_some_and(|(_, i, o)| i == saved.inputs_sha256 && o == saved.outputs_sha256),
        inputs_sha256: saved.inputs_sha256,
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
/// default window for operators without one), streamed to `each`.
pub async fn gateway_day_records(
    store: &Store,
    default: &DayWindow,
    operator_days: &BTreeMap<String, DayWindow>,
    each: &mut (dyn FnMut(GatewayRecord) -> anyhow::Result<()> + Send),
) -> anyhow::Result<()> {
    let (mut start, mut end) = default.bounds_ms();
    for w in operator_days.values() {
        let (s, e) = w.bounds_ms();
        start = start.min(s);
        end = end.max(e);
    }
    store
        .gateway_records(start, end, &mut |r| {
            let (s, e) = operator_days
                .get(&r.operator_id)
                .unwrap_or(default)
                .bounds_ms();
            if r.occurred_at_ms >= s && r.occurred_at_ms < e {
                each(r)?;
            }
            Ok(())
        })
        .await
}

/// Writes the gateway's records of a business day to `path` as a gateway export v1 file,
/// streaming; how many records.
pub async fn write_gateway_export(
    store: &Store,
    default: &DayWindow,
    operator_days: &BTreeMap<String, DayWindow>,
    path: &Path,
) -> anyhow::Result<u64> {
    use std::io::Write;
    let context = || format!("writing {}", path.display());
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).with_context(context)?);
    out.write_all(GATEWAY_EXPORT_HEAD.as_bytes())
        .with_context(context)?;
    let mut rows = 0u64;
    gateway_day_records(store, default, operator_days, &mut |r| {
        rows += 1;
        out.write_all(gateway_export_line(&r).as_bytes())
            .with_context(context)
    })
    .await?;
    out.write_all(format!("# end rows={rows}\n").as_bytes())
        .with_context(context)?;
    out.flush().with_context(context)?;
    Ok(rows)
}

/// An input's size and BLAKE3 digest. The file is mapped a window at a time, not read into
/// buffers: it is gigabytes at a city's size and already in the page cache from the
/// reconciliation, so a copy would cost as much as the hash; each window is unmapped before the
/// next, so the mapping holds at most [`HASH_WINDOW`] bytes.
fn hash_input(role: &str, path: &Path) -> anyhow::Result<InputHash> {
    let context = || format!("reading {role} input {}", path.display());
    let file = std::fs::File::open(path).with_context(context)?;
    let bytes = file.metadata().with_context(context)?.len();
    let mut digest = blake3::Hasher::new();
    let mut at = 0u64;
    while at < bytes {
        let len = HASH_WINDOW.min(bytes - at);
        // SAFETY: the map is read only by the hasher and dropped before the next; should the
        // file change while it is hashed, the digest is of nonsense or the kernel stops the
        // process (SIGBUS on a file cut short) — no memory is misused. Inputs are not to change
        // during a run.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(at)
                .len(len as usize)
                .map(&file)
        }
        .with_context(context)?;
        digest.update(&map);
        at += len;
    }
    Ok(InputHash {
        role: role.into(),
        path: path.display().to_string(),
        bytes,
        blake3: digest.finalize().to_hex().to_string(),
    })
}

/// The most of an input [`hash_input`] maps at once (a multiple of the page size).
const HASH_WINDOW: u64 = 64 << 20;

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

/// The first two lines of a gateway export v1 file (see `formats::gateway` and
/// docs/settlement-formats.md).
pub const GATEWAY_EXPORT_HEAD: &str = "# turnpike-gateway-export v1\nrecord_type,operator_id,business_day,out_trade_no,provider_trade_no,out_request_no,terminal_id,terminal_sequence,kind,amount_minor,fee_minor,currency,occurred_at_ms\n";

/// A record as a line of a gateway export v1 file.
pub fn gateway_export_line(r: &GatewayRecord) -> String {
    format!(
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
    )
}

/// Writes the gateway's records as a gateway export v1 file. Deterministic: same records,
/// same bytes.
pub fn gateway_export_v1(records: &[GatewayRecord]) -> String {
    let mut out = String::from(GATEWAY_EXPORT_HEAD);
    for r in records {
        out.push_str(&gateway_export_line(r));
    }
    out.push_str(&format!("# end rows={}\n", records.len()));
    out
}
