//! Three-way reconciliation: gateway ↔ provider by trade (or refund) number, gateway ↔ operator
//! by (terminal, sequence). Every input row ends in exactly one *item*, and every item in
//! exactly one [`Class`] (decision table in `docs/settlement-formats.md`):
//!
//! 1. A key seen before on the same side (file order) is a `duplicate` item of its own; so is a
//!    second gateway payment for a (terminal, sequence) that already has one (a double charge),
//!    together with its provider row.
//! 2. A gateway record forms an item with its provider row and, for a payment made at a
//!    terminal, its operator row. That item is, in this order of precedence: `other_day` if any
//!    member belongs to another business day; `missing_at_provider`; `missing_at_operator`;
//!    `amount_mismatch` (amount beyond the tolerance, currency, kind or operator differ);
//!    `matched`.
//! 3. A provider or operator row no gateway record claims is `other_day` if it belongs to another
//!    business day, else `missing_at_gateway`.
//!
//! How it runs: the readers partition rows by a hash of their key while parsing (256
//! partitions), so the joins run partition by partition on small, cache-resident hash maps, on
//! `threads` threads, and each partition's rows are freed as soon as it is done. Phase A joins
//! gateway and provider by trade key; gateway payments made at a terminal move on, re-partitioned
//! by terminal key, to phase B, which joins them with the operators' rows.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use crate::day::{DayWindow, Windows};
use crate::error::{InputError, SettlementError};
use crate::formats::gateway::{self, ChargeKind, GwRec, RecordType, NO_TERMINAL};
use crate::formats::operator::{self, OpRec, TapKind};
use crate::formats::provider::{self, BillFile, Encoding, PvRec};
use crate::formats::{check_distinct_files, currency_of, FastMap, Interner, Key, TermKey};
use crate::money::{FeeContract, Journal, Totals};

/// Partition bits: 256 partitions keep each partition's maps in cache at 10M rows per side.
const PART_BITS: u32 = 8;
const PARTS: usize = 1 << PART_BITS;

/// An operator's export and the operator it belongs to.
#[derive(Debug, Clone)]
pub struct OperatorFile {
    pub operator_id: String,
    pub path: PathBuf,
}

/// The files of one day.
#[derive(Debug, Clone, Default)]
pub struct ReconInput {
    /// Gateway exports (usually one; several if the export is sharded).
    pub gateway: Vec<PathBuf>,
    /// Provider bills (one per provider app).
    pub provider: Vec<BillFile>,
    /// One export per operator.
    pub operators: Vec<OperatorFile>,
}

/// How to reconcile.
#[derive(Debug, Clone)]
pub struct ReconConfig {
    /// The business day and its time zone and cut-off: the window of every operator not in
    /// `operator_days`.
    pub day: DayWindow,
    /// Operators with a window of their own (another time zone or cut-off), for the same date.
    /// A provider row's day is taken in the window of its 操作员, an operator export's rows in
    /// the window of the export's operator; the gateway's rows carry their `business_day`.
    pub operator_days: HashMap<String, DayWindow>,
    /// Largest absolute amount difference (minor units) still counted as equal. Default 0.
    pub tolerance_minor: i64,
    /// Fee contracts by operator id; operators not listed have `default_contract`.
    pub contracts: HashMap<String, FeeContract>,
    pub default_contract: FeeContract,
    /// Reader and join threads. Default 2.
    pub threads: usize,
}

impl ReconConfig {
    pub fn new(day: DayWindow) -> ReconConfig {
        ReconConfig {
            day,
            operator_days: HashMap::new(),
            tolerance_minor: 0,
            contracts: HashMap::new(),
            default_contract: FeeContract::default(),
            threads: 2,
        }
    }
}

/// The class of an item. Exactly one per item; every input row is in exactly one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Matched = 0,
    AmountMismatch = 1,
    MissingAtProvider = 2,
    MissingAtGateway = 3,
    MissingAtOperator = 4,
    Duplicate = 5,
    OtherDay = 6,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::Matched,
        Class::AmountMismatch,
        Class::MissingAtProvider,
        Class::MissingAtGateway,
        Class::MissingAtOperator,
        Class::Duplicate,
        Class::OtherDay,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Matched => "matched",
            Class::AmountMismatch => "amount_mismatch",
            Class::MissingAtProvider => "missing_at_provider",
            Class::MissingAtGateway => "missing_at_gateway",
            Class::MissingAtOperator => "missing_at_operator",
            Class::Duplicate => "duplicate",
            Class::OtherDay => "other_day",
        }
    }
}

/// Items per class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounts(pub [u64; 7]);

impl ClassCounts {
    pub fn get(&self, class: Class) -> u64 {
        self.0[class as usize]
    }
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    fn add(&mut self, other: &ClassCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }
}

impl Serialize for ClassCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(7))?;
        for c in Class::ALL {
            m.serialize_entry(c.as_str(), &self.get(c))?;
        }
        m.end()
    }
}

/// Which side a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Gateway,
    Provider,
    Operator,
}

/// An input file as the report refers to it ([`RowRef::file`] indexes
/// [`Reconciliation::files`]).
#[derive(Debug, Clone, Serialize)]
pub struct InputFile {
    pub side: Side,
    pub path: PathBuf,
    /// Bills: the encoding read.
    pub encoding: Option<Encoding>,
    /// Operator exports: whose.
    pub operator_id: Option<String>,
}

/// Where a member of an item is: file, 1-based line, and its amount (minor units, positive in
/// the row's direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RowRef {
    pub file: usize,
    pub line: u64,
    pub amount_minor: i64,
}

/// Why an `amount_mismatch` item does not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchReason {
    ProviderAmount,
    ProviderCurrency,
    OperatorAmount,
    OperatorCurrency,
    OperatorKind,
    OperatorId,
}

const M_P_AMOUNT: u8 = 1;
const M_P_CURRENCY: u8 = 2;
const M_O_AMOUNT: u8 = 4;
const M_O_CURRENCY: u8 = 8;
const M_O_KIND: u8 = 16;
const M_O_OPERATOR: u8 = 32;

fn reasons(bits: u8) -> Vec<MismatchReason> {
    use MismatchReason::*;
    [
        (M_P_AMOUNT, ProviderAmount),
        (M_P_CURRENCY, ProviderCurrency),
        (M_O_AMOUNT, OperatorAmount),
        (M_O_CURRENCY, OperatorCurrency),
        (M_O_KIND, OperatorKind),
        (M_O_OPERATOR, OperatorId),
    ]
    .into_iter()
    .filter(|(b, _)| bits & b != 0)
    .map(|(_, r)| r)
    .collect()
}

/// An item that is not `matched`: what finance reviews.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub class: Class,
    /// The trade or refund number, or `<terminal>#<sequence>` for an operator row alone.
    pub key: String,
    pub operator_id: Option<String>,
    pub gateway: Option<RowRef>,
    pub provider: Option<RowRef>,
    pub operator: Option<RowRef>,
    /// For `amount_mismatch`: what differs.
    pub mismatch: Vec<MismatchReason>,
    /// For `other_day`: the business day the item belongs to (carried there as an adjustment).
    pub carried_to: Option<String>,
    /// What kind of record the item is (a payment, a refund, a reversal, or an operator's tap
    /// no gateway or provider record names).
    pub record: RecordKind,
    /// The provider row's fee (charged on a payment, given back on a refund or reversal); 0
    /// without a provider row.
    pub provider_fee_minor: i64,
}

/// The kind of record an [`Item`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Payment,
    Refund,
    Reversal,
    /// An operator's row alone.
    Tap,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Payment => "payment",
            RecordKind::Refund => "refund",
            RecordKind::Reversal => "reversal",
            RecordKind::Tap => "tap",
        }
    }

    fn of_gateway(rtype: u8) -> RecordKind {
        match rtype {
            t if t == RecordType::Refund as u8 => RecordKind::Refund,
            t if t == RecordType::Reversal as u8 => RecordKind::Reversal,
            _ => RecordKind::Payment,
        }
    }

    fn of_key(key: &Key) -> RecordKind {
        match key.namespace() {
            n if n == crate::formats::Namespace::Refund as u8 => RecordKind::Refund,
            n if n == crate::formats::Namespace::Reversal as u8 => RecordKind::Reversal,
            _ => RecordKind::Payment,
        }
    }
}

/// A provider fee that differs from the contract (payments) or from the gateway's booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeeException {
    pub key: String,
    pub operator_id: String,
    pub provider: RowRef,
    /// The gateway's row, for readers that walk the export by line (not part of the outputs).
    #[serde(skip)]
    pub gateway: RowRef,
    pub fee_provider_minor: i64,
    pub fee_expected_minor: i64,
    pub fee_gateway_minor: i64,
}

/// One operator's day in one currency: item counts, money and journal.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorSettlement {
    /// `None` for items no side attributes to an operator (a provider row without 操作员).
    pub operator_id: Option<String>,
    pub currency: String,
    pub contract: FeeContract,
    pub counts: ClassCounts,
    pub totals: Totals,
    pub journal: Journal,
}

/// Rows read per side.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RowCounts {
    pub gateway: u64,
    pub provider: u64,
    /// Operator rows with money (matched against the gateway).
    pub operator: u64,
    /// Operator rows with amount 0 (entries, capped exits): validated and counted only.
    pub operator_without_money: u64,
}

/// The result of a run. Nothing is written anywhere by the library: a caller persists this only
/// when [`reconcile`] returned it, so a failed run leaves nothing partial.
#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub business_day: String,
    pub files: Vec<InputFile>,
    pub rows: RowCounts,
    /// Items per class.
    pub counts: ClassCounts,
    /// Every item that is not `matched`, sorted by class and key.
    pub items: Vec<Item>,
    pub fee_exceptions: Vec<FeeException>,
    /// Per operator and currency, sorted by operator id.
    pub operators: Vec<OperatorSettlement>,
}

// ---- the run ----

fn input_failure(errors: Vec<InputError>, total: u64) -> SettlementError {
    SettlementError::input(errors, total)
}

/// Reads the day's files and reconciles them. Fails, returning nothing, if any input is
/// unreadable or malformed (with every problem's file, line and reason) or a journal does not
/// balance.
pub fn reconcile(
    input: &ReconInput,
    config: &ReconConfig,
) -> Result<Reconciliation, SettlementError> {
    let threads = config.threads.max(1);
    if input.operators.len() > u8::MAX as usize
        || input.gateway.len() > u8::MAX as usize
        || input.provider.len() > u8::MAX as usize
    {
        return Err(SettlementError::Config("at most 255 files per side".into()));
    }
    let mut all_paths: Vec<PathBuf> = input.gateway.clone();
    all_paths.extend(input.provider.iter().map(|b| b.path.clone()));
    all_paths.extend(input.operators.iter().map(|o| o.path.clone()));
    if let Err(errors) = check_distinct_files(&all_paths) {
        let n = errors.len() as u64;
        return Err(input_failure(errors, n));
    }
    for (op, w) in &config.operator_days {
        if w.day() != config.day.day() {
            return Err(SettlementError::Config(format!(
                "operator {op}'s business day window is for {}, the run is for {}",
                w.day(),
                config.day.day()
            )));
        }
    }
    let operators = Interner::default();
    let terminals = Interner::default();
    let day = &config.day;
    let windows = Windows {
        default: day,
        by_operator: &config.operator_days,
    };

    let mut clock = PhaseClock::new();
    // Phase A inputs: gateway and provider, partitioned by trade key.
    let gw = gateway::read(
        &input.gateway,
        day,
        &operators,
        &terminals,
        threads,
        PART_BITS,
    );
    clock.lap("read gateway");
    let pv = provider::read(&input.provider, windows, &operators, threads, PART_BITS);
    clock.lap("read provider");
    let (gw, pv) = match (gw, pv) {
        (Ok(g), Ok(p)) => (g, p),
        (g, p) => {
            let (mut errors, mut total) = (Vec::new(), 0);
            for (e, n) in [g.err(), p.err()].into_iter().flatten() {
                errors.extend(e);
                total += n;
            }
            return Err(input_failure(errors, total));
        }
    };
    let op_file_operator: Vec<u16> = input
        .operators
        .iter()
        .map(|o| u16::try_from(operators.id(o.operator_id.as_bytes())).unwrap_or(u16::MAX))
        .collect();

    let mut files: Vec<InputFile> = input
        .gateway
        .iter()
        .map(|p| InputFile {
            side: Side::Gateway,
            path: p.clone(),
            encoding: None,
            operator_id: None,
        })
        .collect();
    let pv_file_base = files.len();
    files.extend(
        input
            .provider
            .iter()
            .zip(&pv.encodings)
            .map(|(b, e)| InputFile {
                side: Side::Provider,
                path: b.path.clone(),
                encoding: Some(*e),
                operator_id: None,
            }),
    );
    let op_file_base = files.len();
    files.extend(input.operators.iter().map(|o| InputFile {
        side: Side::Operator,
        path: o.path.clone(),
        encoding: None,
        operator_id: Some(o.operator_id.clone()),
    }));

    let mut key_texts: FastMap<Key, Box<str>> = FastMap::default();
    let mut rows = RowCounts::default();
    let gw_parts = transpose(gw.ranges.into_iter().flatten().map(|mut r| {
        key_texts.extend(r.extra.key_texts.drain(..));
        r.parts
    }));
    let pv_parts = transpose(pv.ranges.into_iter().flatten().map(|mut r| {
        key_texts.extend(r.extra.key_texts.drain(..));
        r.parts
    }));
    rows.gateway = gw_parts.iter().flatten().map(|v| v.len() as u64).sum();
    rows.provider = pv_parts.iter().flatten().map(|v| v.len() as u64).sum();

    let contracts: Vec<FeeContract> = operators
        .names()
        .iter()
        .map(|n| *config.contracts.get(n).unwrap_or(&config.default_contract))
        .collect();
    let ctx = Ctx {
        tolerance: config.tolerance_minor,
        contracts,
        default_contract: config.default_contract,
        day,
        key_texts,
        operator_names: operators.names(),
        terminal_names: Vec::new(),
        pv_file_base,
        op_file_base,
        op_file_operator,
    };

    clock.lap("prepare A");
    // Phase A.
    let gw_parts: Vec<Mutex<Option<Vec<Vec<GwRec>>>>> =
        gw_parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
    let pv_parts: Vec<Mutex<Option<Vec<Vec<PvRec>>>>> =
        pv_parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
    let outs_a = run_partitions(threads, |p, out: &mut WorkOut| {
        let g = take(&gw_parts[p]);
        let pv = take(&pv_parts[p]);
        phase_a(&ctx, g, pv, out);
    });
    drop(gw_parts);
    drop(pv_parts);

    clock.lap("phase A");
    // Phase B inputs: operator rows, partitioned by terminal key.
    let op_paths: Vec<PathBuf> = input.operators.iter().map(|o| o.path.clone()).collect();
    let op_days: Vec<&DayWindow> = input
        .operators
        .iter()
        .map(|o| windows.of(o.operator_id.as_bytes()))
        .collect();
    let op = operator::read(&op_paths, &op_days, &terminals, threads, PART_BITS)
        .map_err(|(e, n)| input_failure(e, n))?;
    clock.lap("read operators");
    let ctx = Ctx {
        operator_names: operators.names(),
        terminal_names: terminals.names(),
        ..ctx
    };
    rows.operator_without_money = op
        .ranges
        .iter()
        .flatten()
        .map(|r| r.extra.without_money)
        .sum();
    let op_parts = transpose(op.ranges.into_iter().flatten().map(|r| r.parts));
    rows.operator = op_parts.iter().flatten().map(|v| v.len() as u64).sum();
    let mut pending_parts: Vec<Vec<Vec<Pending>>> = (0..PARTS).map(|_| Vec::new()).collect();
    let mut outs = Vec::new();
    for mut o in outs_a {
        for (q, v) in o.pending.drain(..).enumerate() {
            pending_parts[q].push(v);
        }
        outs.push(o);
    }
    let op_parts: Vec<Mutex<Option<Vec<Vec<OpRec>>>>> =
        op_parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
    let pending_parts: Vec<Mutex<Option<Vec<Vec<Pending>>>>> = pending_parts
        .into_iter()
        .map(|p| Mutex::new(Some(p)))
        .collect();
    clock.lap("prepare B");
    let outs_b = run_partitions(threads, |q, out: &mut WorkOut| {
        let o = take(&op_parts[q]);
        let pend = take(&pending_parts[q]);
        phase_b(&ctx, o, pend, out);
    });
    outs.extend(outs_b);

    clock.lap("phase B");
    // Merge.
    let mut counts = ClassCounts::default();
    let mut items = Vec::new();
    let mut fee_exceptions = Vec::new();
    let mut per_op: FastMap<(u16, u8), (ClassCounts, Totals)> = FastMap::default();
    for o in outs {
        counts.add(&o.counts);
        items.extend(o.items);
        fee_exceptions.extend(o.fees);
        for (k, (c, t)) in o.per_op {
            let e = per_op.entry(k).or_default();
            e.0.add(&c);
            e.1.add(&t);
        }
    }
    items.sort_by(|a, b| (a.class, &a.key).cmp(&(b.class, &b.key)));
    fee_exceptions.sort_by(|a, b| a.key.cmp(&b.key));
    let business_day = day.day().to_string();
    let mut operators_out = Vec::new();
    for ((op, cur), (c, mut t)) in per_op {
        t.finish();
        let name = ctx.operator_name(op);
        let currency = currency_of(cur).code().to_string();
        let journal = Journal::build(
            &business_day,
            name.as_deref().unwrap_or("(unattributed)"),
            &currency,
            &t,
        );
        journal.check()?;
        operators_out.push(OperatorSettlement {
            contract: ctx.contract(op),
            operator_id: name,
            currency,
            counts: c,
            totals: t,
            journal,
        });
    }
    operators_out.sort_by(|a, b| (&a.operator_id, &a.currency).cmp(&(&b.operator_id, &b.currency)));
    clock.lap("merge");
    Ok(Reconciliation {
        business_day,
        files,
        rows,
        counts,
        items,
        fee_exceptions,
        operators: operators_out,
    })
}

/// Wall time per phase on stderr when `SETTLEMENT_PHASE_TIMES` is set (for tuning).
struct PhaseClock(Option<std::time::Instant>);

impl PhaseClock {
    fn new() -> PhaseClock {
        PhaseClock(std::env::var_os("SETTLEMENT_PHASE_TIMES").map(|_| std::time::Instant::now()))
    }
    fn lap(&mut self, phase: &str) {
        if let Some(t) = self.0 {
            eprintln!("settlement: {phase}: {:.3} s", t.elapsed().as_secs_f64());
            self.0 = Some(std::time::Instant::now());
        }
    }
}

/// `[range][partition]` → `[partition][range]`, moving the vectors.
fn transpose<R>(ranges: impl Iterator<Item = Vec<Vec<R>>>) -> Vec<Vec<Vec<R>>> {
    let mut parts: Vec<Vec<Vec<R>>> = (0..PARTS).map(|_| Vec::new()).collect();
    for r in ranges {
        for (p, v) in r.into_iter().enumerate() {
            if !v.is_empty() {
                parts[p].push(v);
            }
        }
    }
    parts
}

fn take<T>(slot: &Mutex<Option<Vec<Vec<T>>>>) -> Vec<Vec<T>> {
    slot.lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default()
}

fn run_partitions(threads: usize, work: impl Fn(usize, &mut WorkOut) + Sync) -> Vec<WorkOut> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = WorkOut::new();
                    loop {
                        let p = next.fetch_add(1, Ordering::Relaxed);
                        if p >= PARTS {
                            break;
                        }
                        work(p, &mut out);
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reconciliation worker panicked"))
            .collect()
    })
}

struct Ctx<'a> {
    tolerance: i64,
    contracts: Vec<FeeContract>,
    default_contract: FeeContract,
    day: &'a DayWindow,
    key_texts: FastMap<Key, Box<str>>,
    operator_names: Vec<String>,
    terminal_names: Vec<String>,
    pv_file_base: usize,
    op_file_base: usize,
    op_file_operator: Vec<u16>,
}

impl Ctx<'_> {
    fn key_text(&self, key: &Key) -> String {
        key.packed_text()
            .or_else(|| self.key_texts.get(key).map(|s| s.to_string()))
            .unwrap_or_else(|| format!("{key:?}"))
    }
    fn operator_name(&self, op: u16) -> Option<String> {
        self.operator_names.get(op as usize).cloned()
    }
    fn contract(&self, op: u16) -> FeeContract {
        self.contracts
            .get(op as usize)
            .copied()
            .unwrap_or(self.default_contract)
    }
    fn carried(&self, offsets: &[i16]) -> Option<String> {
        offsets
            .iter()
            .find(|&&o| o != 0)
            .and_then(|&o| self.day.day_after(o as i64))
            .map(|d| d.to_string())
    }
    fn gw_ref(&self, file: u8, line: u32, amount: i64) -> RowRef {
        RowRef {
            file: file as usize,
            line: line as u64,
            amount_minor: amount,
        }
    }
    fn pv_ref(&self, p: &PvRec) -> RowRef {
        RowRef {
            file: self.pv_file_base + p.file as usize,
            line: p.line as u64,
            amount_minor: p.amount,
        }
    }
    fn op_ref(&self, o: &OpRec) -> RowRef {
        RowRef {
            file: self.op_file_base + o.file as usize,
            line: o.line as u64,
            amount_minor: o.amount,
        }
    }
}

/// A gateway payment made at a terminal, on its way from phase A to phase B.
#[derive(Clone, Copy)]
struct Pending {
    key: Key,
    seq: u64,
    g_amount: i64,
    p_amount: i64,
    p_fee: i64,
    g_line: u32,
    p_line: u32,
    terminal: u32,
    operator: u16,
    g_day_off: i16,
    p_day_off: i16,
    g_file: u8,
    p_file: u8,
    kind: u8,
    currency: u8,
    /// P_FOUND, and the provider mismatch bits.
    flags: u8,
}

const P_FOUND: u8 = 128;

impl Pending {
    fn term(&self) -> TermKey {
        TermKey {
            terminal: self.terminal,
            seq: self.seq,
        }
    }
    fn order(&self) -> (u8, u32) {
        (self.g_file, self.g_line)
    }
}

struct WorkOut {
    counts: ClassCounts,
    items: Vec<Item>,
    fees: Vec<FeeException>,
    /// Per (operator, currency): few, so a vector with the last hit remembered beats a map.
    per_op: Vec<((u16, u8), (ClassCounts, Totals))>,
    last_op: usize,
    /// Phase A only: by terminal partition.
    pending: Vec<Vec<Pending>>,
}

impl WorkOut {
    fn new() -> WorkOut {
        WorkOut {
            counts: ClassCounts::default(),
            items: Vec::new(),
            fees: Vec::new(),
            per_op: Vec::new(),
            last_op: 0,
            pending: (0..PARTS).map(|_| Vec::new()).collect(),
        }
    }

    fn slot(&mut self, operator: u16, currency: u8) -> &mut (ClassCounts, Totals) {
        let key = (operator, currency);
        if self.per_op.get(self.last_op).is_none_or(|s| s.0 != key) {
            self.last_op = match self.per_op.iter().position(|s| s.0 == key) {
                Some(i) => i,
                None => {
                    self.per_op.push((key, Default::default()));
                    self.per_op.len() - 1
                }
            };
        }
        &mut self.per_op[self.last_op].1
    }

    fn count(&mut self, class: Class, operator: u16, currency: u8) {
        self.counts.0[class as usize] += 1;
        self.slot(operator, currency).0 .0[class as usize] += 1;
    }

    fn totals(&mut self, operator: u16, currency: u8) -> &mut Totals {
        &mut self.slot(operator, currency).1
    }

    /// Adds a settled payment's provider-confirmed money.
    fn settle_payment(
        &mut self,
        ctx: &Ctx<'_>,
        operator: u16,
        currency: u8,
        kind: u8,
        amount: i64,
        fee: i64,
    ) {
        let expected = ctx.contract(operator).fee_minor(amount);
        let t = self.totals(operator, currency);
        t.payments += 1;
        t.gross_minor += amount;
        match kind {
            k if k == ChargeKind::Metro as u8 => t.gross_fares_minor += amount,
            k if k == ChargeKind::Toll as u8 => t.gross_tolls_minor += amount,
            _ => t.gross_tickets_minor += amount,
        }
        t.fees_charged_minor += fee;
        t.fees_expected_minor += expected;
        if fee != expected {
            t.fee_exceptions += 1;
        }
    }

    fn settle_refund(
        &mut self,
        operator: u16,
        currency: u8,
        amount: i64,
        fee: i64,
        gateway_fee: i64,
    ) {
        let t = self.totals(operator, currency);
        t.refunds += 1;
        t.refunds_minor += amount;
        t.fees_returned_minor += fee;
        t.fees_expected_minor -= gateway_fee;
        if fee != gateway_fee {
            t.fee_exceptions += 1;
        }
    }
}

const CNY: u8 = 0;

fn differs(a: i64, b: i64, tolerance: i64) -> bool {
    (a - b).abs() > tolerance
}

fn phase_a(ctx: &Ctx<'_>, g: Vec<Vec<GwRec>>, pv: Vec<Vec<PvRec>>, out: &mut WorkOut) {
    let g: Vec<GwRec> = g.into_iter().flatten().collect();
    let pv: Vec<PvRec> = pv.into_iter().flatten().collect();
    // Provider: first occurrence per key; later ones are duplicate items.
    let mut pmap: FastMap<Key, u32> =
        FastMap::with_capacity_and_hasher(pv.len(), Default::default());
    for (i, p) in pv.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(slot) = pmap.entry(p.key) {
            slot.insert(i as u32);
        } else {
            out.count(Class::Duplicate, p.operator, CNY);
            out.items.push(Item {
                class: Class::Duplicate,
                key: ctx.key_text(&p.key),
                operator_id: ctx.operator_name(p.operator),
                gateway: None,
                provider: Some(ctx.pv_ref(p)),
                operator: None,
                mismatch: Vec::new(),
                carried_to: None,
                record: RecordKind::of_key(&p.key),
                provider_fee_minor: p.fee,
            });
        }
    }
    if out.pending[0].capacity() == 0 {
        // Each worker sends about half of every partition's rows on, spread over all
        // partitions; reserving once avoids copying them while they grow.
        for v in &mut out.pending {
            v.reserve(g.len() * 5 / 8 + 16);
        }
    }
    let mut consumed = vec![false; pv.len()];
    let mut gseen: FastMap<Key, ()> =
        FastMap::with_capacity_and_hasher(g.len(), Default::default());
    for r in &g {
        if gseen.insert(r.key, ()).is_some() {
            out.count(Class::Duplicate, r.operator, r.currency);
            out.items.push(Item {
                class: Class::Duplicate,
                key: ctx.key_text(&r.key),
                operator_id: ctx.operator_name(r.operator),
                gateway: Some(ctx.gw_ref(r.file, r.line, r.amount)),
                provider: None,
                operator: None,
                mismatch: Vec::new(),
                carried_to: None,
                record: RecordKind::of_gateway(r.rtype),
                provider_fee_minor: 0,
            });
            continue;
        }
        let p = pmap.get(&r.key).map(|&i| {
            consumed[i as usize] = true;
            &pv[i as usize]
        });
        let mut bits = 0u8;
        if let Some(p) = p {
            if differs(r.amount, p.amount, ctx.tolerance) {
                bits |= M_P_AMOUNT;
            }
            if r.currency != CNY {
                bits |= M_P_CURRENCY;
            }
            // Fees: payments against the contract and the gateway; refunds against the gateway.
            let expected = if r.rtype == RecordType::Payment as u8 {
                ctx.contract(r.operator).fee_minor(p.amount)
            } else {
                r.fee
            };
            if p.fee != expected || p.fee != r.fee {
                out.fees.push(FeeException {
                    key: ctx.key_text(&r.key),
                    operator_id: ctx.operator_name(r.operator).unwrap_or_default(),
                    provider: ctx.pv_ref(p),
                    gateway: ctx.gw_ref(r.file, r.line, r.amount),
                    fee_provider_minor: p.fee,
                    fee_expected_minor: expected,
                    fee_gateway_minor: r.fee,
                });
            }
        }
        if r.rtype == RecordType::Payment as u8 && r.terminal != NO_TERMINAL {
            let pend = Pending {
                key: r.key,
                seq: r.seq,
                g_amount: r.amount,
                p_amount: p.map_or(0, |p| p.amount),
                p_fee: p.map_or(0, |p| p.fee),
                g_line: r.line,
                p_line: p.map_or(0, |p| p.line),
                terminal: r.terminal,
                operator: r.operator,
                g_day_off: r.day_off,
                p_day_off: p.map_or(0, |p| p.day_off),
                g_file: r.file,
                p_file: p.map_or(0, |p| p.file),
                kind: r.kind,
                currency: r.currency,
                flags: bits | if p.is_some() { P_FOUND } else { 0 },
            };
            out.pending[pend.term().partition(PART_BITS)].push(pend);
            continue;
        }
        // Refunds, reversals and payments without a terminal end here.
        let class = if r.day_off != 0 || p.is_some_and(|p| p.day_off != 0) {
            Class::OtherDay
        } else if p.is_none() {
            Class::MissingAtProvider
        } else if bits != 0 {
            Class::AmountMismatch
        } else {
            Class::Matched
        };
        out.count(class, r.operator, r.currency);
        if let (Some(p), Class::Matched | Class::AmountMismatch) = (p, class) {
            if r.rtype == RecordType::Payment as u8 {
                out.settle_payment(ctx, r.operator, r.currency, r.kind, p.amount, p.fee);
            } else {
                out.settle_refund(r.operator, r.currency, p.amount, p.fee, r.fee);
            }
        }
        if class != Class::Matched {
            out.items.push(Item {
                class,
                key: ctx.key_text(&r.key),
                operator_id: ctx.operator_name(r.operator),
                gateway: Some(ctx.gw_ref(r.file, r.line, r.amount)),
                provider: p.map(|p| ctx.pv_ref(p)),
                operator: None,
                mismatch: if class == Class::AmountMismatch {
                    reasons(bits)
                } else {
                    Vec::new()
                },
                carried_to: if class == Class::OtherDay {
                    ctx.carried(&[r.day_off, p.map_or(0, |p| p.day_off)])
                } else {
                    None
                },
                record: RecordKind::of_gateway(r.rtype),
                provider_fee_minor: p.map_or(0, |p| p.fee),
            });
        }
    }
    // Provider rows no gateway record claims.
    for (i, p) in pv.iter().enumerate() {
        if consumed[i] || pmap.get(&p.key) != Some(&(i as u32)) {
            continue;
        }
        let class = if p.day_off != 0 {
            Class::OtherDay
        } else {
            Class::MissingAtGateway
        };
        out.count(class, p.operator, CNY);
        out.items.push(Item {
            class,
            key: ctx.key_text(&p.key),
            operator_id: ctx.operator_name(p.operator),
            gateway: None,
            provider: Some(ctx.pv_ref(p)),
            operator: None,
            mismatch: Vec::new(),
            carried_to: ctx.carried(&[p.day_off]),
            record: RecordKind::of_key(&p.key),
            provider_fee_minor: p.fee,
        });
    }
}

fn kinds_agree(charge: u8, tap: u8) -> bool {
    match charge {
        k if k == ChargeKind::Metro as u8 => {
            tap == TapKind::Entry as u8 || tap == TapKind::Exit as u8
        }
        k if k == ChargeKind::Toll as u8 => tap == TapKind::TollExit as u8,
        _ => tap == TapKind::Ticket as u8,
    }
}

fn phase_b(ctx: &Ctx<'_>, ops: Vec<Vec<OpRec>>, pend: Vec<Vec<Pending>>, out: &mut WorkOut) {
    let ops: Vec<OpRec> = ops.into_iter().flatten().collect();
    let pend: Vec<Pending> = pend.into_iter().flatten().collect();
    let term_text = |t: TermKey| {
        format!(
            "{}#{}",
            ctx.terminal_names
                .get(t.terminal as usize)
                .map_or("?", String::as_str),
            t.seq
        )
    };
    // Operator rows: first per (terminal, sequence) in file order; later ones are duplicates.
    let mut omap: FastMap<TermKey, u32> =
        FastMap::with_capacity_and_hasher(ops.len(), Default::default());
    for (i, o) in ops.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(slot) = omap.entry(o.term()) {
            slot.insert(i as u32);
        } else {
            let op = ctx.op_file_operator[o.file as usize];
            out.count(Class::Duplicate, op, o.currency);
            out.items.push(Item {
                class: Class::Duplicate,
                key: term_text(o.term()),
                operator_id: ctx.operator_name(op),
                gateway: None,
                provider: None,
                operator: Some(ctx.op_ref(o)),
                mismatch: Vec::new(),
                carried_to: None,
                record: RecordKind::Tap,
                provider_fee_minor: 0,
            });
        }
    }
    // Gateway payments: the first (in gateway file order) per (terminal, sequence) is the
    // charge; any other is a double charge, a duplicate item with its provider row.
    let mut tmap: FastMap<TermKey, u32> =
        FastMap::with_capacity_and_hasher(pend.len(), Default::default());
    let mut dup = vec![false; pend.len()];
    for (i, p) in pend.iter().enumerate() {
        match tmap.get_mut(&p.term()) {
            None => {
                tmap.insert(p.term(), i as u32);
            }
            Some(first) => {
                if p.order() < pend[*first as usize].order() {
                    dup[*first as usize] = true;
                    *first = i as u32;
                } else {
                    dup[i] = true;
                }
            }
        }
    }
    let mut consumed = vec![false; ops.len()];
    for (i, r) in pend.iter().enumerate() {
        let p_found = r.flags & P_FOUND != 0;
        let p_ref = p_found.then(|| RowRef {
            file: ctx.pv_file_base + r.p_file as usize,
            line: r.p_line as u64,
            amount_minor: r.p_amount,
        });
        let g_ref = Some(ctx.gw_ref(r.g_file, r.g_line, r.g_amount));
        if dup[i] {
            out.count(Class::Duplicate, r.operator, r.currency);
            out.items.push(Item {
                class: Class::Duplicate,
                key: ctx.key_text(&r.key),
                operator_id: ctx.operator_name(r.operator),
                gateway: g_ref,
                provider: p_ref,
                operator: None,
                mismatch: Vec::new(),
                carried_to: None,
                record: RecordKind::Payment,
                provider_fee_minor: if p_found { r.p_fee } else { 0 },
            });
            continue;
        }
        let o = omap.get(&r.term()).map(|&j| {
            consumed[j as usize] = true;
            &ops[j as usize]
        });
        let mut bits = r.flags & !P_FOUND;
        if let Some(o) = o {
            if differs(r.g_amount, o.amount, ctx.tolerance) {
                bits |= M_O_AMOUNT;
            }
            if r.currency != o.currency {
                bits |= M_O_CURRENCY;
            }
            if !kinds_agree(r.kind, o.kind) {
                bits |= M_O_KIND;
            }
            if ctx.op_file_operator[o.file as usize] != r.operator {
                bits |= M_O_OPERATOR;
            }
        }
        let o_off = o.map_or(0, |o| o.day_off);
        let class = if r.g_day_off != 0 || (p_found && r.p_day_off != 0) || o_off != 0 {
            Class::OtherDay
        } else if !p_found {
            Class::MissingAtProvider
        } else if o.is_none() {
            Class::MissingAtOperator
        } else if bits != 0 {
            Class::AmountMismatch
        } else {
            Class::Matched
        };
        out.count(class, r.operator, r.currency);
        if matches!(
            class,
            Class::Matched | Class::AmountMismatch | Class::MissingAtOperator
        ) {
            out.settle_payment(ctx, r.operator, r.currency, r.kind, r.p_amount, r.p_fee);
        }
        if class != Class::Matched {
            out.items.push(Item {
                class,
                key: ctx.key_text(&r.key),
                operator_id: ctx.operator_name(r.operator),
                gateway: g_ref,
                provider: p_ref,
                operator: o.map(|o| ctx.op_ref(o)),
                mismatch: if class == Class::AmountMismatch {
                    reasons(bits)
                } else {
                    Vec::new()
                },
                carried_to: if class == Class::OtherDay {
                    ctx.carried(&[r.g_day_off, if p_found { r.p_day_off } else { 0 }, o_off])
                } else {
                    None
                },
                record: RecordKind::Payment,
                provider_fee_minor: if p_found { r.p_fee } else { 0 },
            });
        }
    }
    for (j, o) in ops.iter().enumerate() {
        if consumed[j] || omap.get(&o.term()) != Some(&(j as u32)) {
            continue;
        }
        let op = ctx.op_file_operator[o.file as usize];
        let class = if o.day_off != 0 {
            Class::OtherDay
        } else {
            Class::MissingAtGateway
        };
        out.count(class, op, o.currency);
        out.items.push(Item {
            class,
            key: term_text(o.term()),
            operator_id: ctx.operator_name(op),
            gateway: None,
            provider: None,
            operator: Some(ctx.op_ref(o)),
            mismatch: Vec::new(),
            carried_to: ctx.carried(&[o.day_off]),
            record: RecordKind::Tap,
            provider_fee_minor: 0,
        });
    }
}
