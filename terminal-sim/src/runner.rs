//! The open-loop scheduler: every planned tap is sent at its scheduled time, whatever the server
//! does (no waiting for earlier answers), and its latency is measured from that scheduled time.
//!
//! Before the clock starts, every ride code is made as the rider's phone would make it at the
//! tap's scheduled time (signing costs the phone, not the gate; doing it ahead keeps the
//! simulator's CPU for the gates). The gates' offline verification runs either inline, at the
//! scan (the default, as a real gate does), or ahead of the run as of the scan time
//! ([`GateVerify::Prepared`], for load benchmarks on a machine the gateway shares, so that the
//! simulator does not take the gateway's CPU); both give the same verdict and are timed.
//!
//! With the payment provider ([`Paid`]), toll exits are paid at the booth with the driver's
//! wallet payment code (fetched from the sandbox before the clock starts where the code's
//! lifetime allows), repeated while the gateway answers `409 payment_in_progress`, and timed to
//! their final answer; the sandbox is degraded during the plan's degradation window.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use turnpike_client::RiderDevice;
use turnpike_wire::api::TapRequest;
use turnpike_wire::ridecode::{RejectReason, RideCode};

use crate::network::{Fleet, Kind};
use crate::offline::{Buffered, OfflineBuffer};
use crate::provider::Sandbox;
use crate::recorder::{charged_minor, outcome_key, Recorder};
use crate::scenario::{CodeKind, Plan, PlannedTap};
use crate::tickets::{self, PlannedPurchase};
use turnpike_wire::api::Direction;

/// Where the gates verify codes offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GateVerify {
    /// At the scan, on the request's path (what a real gate does).
    Inline,
    /// Ahead of the run, as of each tap's scan time (same verdicts, no CPU taken during the run).
    Prepared,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub gate_verify: GateVerify,
    /// Show a progress bar on the terminal.
    pub progress: bool,
    /// Where gates keep their offline buffers (one SQLite file per gate).
    pub work_dir: PathBuf,
    /// How long a gate waits for the gateway's live answer before it decides offline, as a
    /// real gate does: a request that fails, answers 5xx or takes longer than this is admitted
    /// (or refused) by the gate's own verification, buffered, and uploaded when the gateway
    /// answers again (the tap keeps its sequence, so an answer that was only late is found
    /// again, not judged twice). `None`: failures are counted as errors (load benchmarks).
    pub offline_fallback: Option<Duration>,
}

/// What a real gate waits for a live answer before it decides offline (the gateway answers
/// `503` within its 1 s answer budget when its database is slow or cut off).
pub const GATE_LIVE_BUDGET: Duration = Duration::from_millis(1_500);

/// How often gates with buffered taps try to upload them while the run goes on.
const UPLOAD_EVERY: Duration = Duration::from_millis(500);

/// Requests in flight at once before the simulator refuses to start more (counted as errors):
/// bounds the simulator's memory when the server stops answering.
pub const IN_FLIGHT_MAX: usize = 100_000;
/// How long the run waits for the last answers after the last scheduled tap.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The same, when toll exits are paid at the booth (an exit may wait out the gateway's toll
/// budget and then repeat until the capture worker settles it).
const DRAIN_TIMEOUT_PAID: Duration = Duration::from_secs(70);
/// A toll exit answered `409 payment_in_progress` is repeated (same request) this often…
const TOLL_REPEAT_INTERVAL: Duration = Duration::from_millis(250);
/// …for at most this long after its scheduled time.
const TOLL_REPEAT_FOR: Duration = Duration::from_secs(60);

/// Toll exits paid at the booth: the sandbox that issues payment codes, each rider's wallet
/// (by rider index), and the faults to set during the plan's degradation window.
pub struct Paid {
    pub sandbox: Sandbox,
    pub wallets: Vec<String>,
    pub faults: Option<serde_json::Value>,
    /// Codes of exits scheduled before this (seconds into the run) are fetched before the clock
    /// starts; later ones `code_lead_s` before their exit (see [`crate::ProviderTarget`]).
    pub codes_ahead_s: f64,
    pub code_lead_s: f64,
}

/// A toll exit's payment code: fetched already, or on its way.
enum PaymentCode {
    Ready(String),
    Later(tokio::sync::oneshot::Receiver<Result<String, String>>),
}

impl PaymentCode {
    async fn get(self) -> Result<String, String> {
        match self {
            PaymentCode::Ready(code) => Ok(code),
            PaymentCode::Later(rx) => rx.await.unwrap_or_else(|_| Err("code fetcher gone".into())),
        }
    }
}

/// A planned tap with its code made.
struct Ready {
    tap: PlannedTap,
    code: String,
    /// The gate's verdict and how long it took (ns), when verified ahead.
    verdict: Option<(Result<(), RejectReason>, u64)>,
    /// A toll exit paid at the booth: the driver's wallet payment code.
    payment_code: Option<PaymentCode>,
    /// A replayed code: fired when the original's answer is in. A replay is a photo of a code
    /// that was shown at a gate, so it cannot reach the gateway before the original did; without
    /// this a slow original (a busy CI machine) lets the replay win the race.
    answered: Option<tokio::sync::watch::Sender<bool>>,
    /// For a replay: waits for the original's `answered`.
    after: Option<tokio::sync::watch::Receiver<bool>>,
}

struct Ctx {
    fleet: Arc<Fleet>,
    recorder: Mutex<Recorder>,
    start: Instant,
    gate_verify: GateVerify,
    buffers: Option<Vec<OfflineBuffer>>,
    /// The gates' live budget (see [`RunOptions::offline_fallback`]).
    offline_fallback: Option<Duration>,
    in_flight: AtomicUsize,
    classes: Vec<&'static str>,
}

fn make_code(rider: &RiderDevice, tap: &PlannedTap, scan_ms: u64) -> anyhow::Result<String> {
    let generated_at = match tap.code {
        CodeKind::Aged { age_ms } => scan_ms.saturating_sub(age_ms),
        _ => scan_ms.saturating_add_signed(tap.device_clock_offset_ms),
    };
    let code = rider
        .key
        .ride_code(&rider.credential, generated_at, rand::random())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut bytes = code.to_bytes();
    match tap.code {
        // The last byte of the device signature.
        CodeKind::ForgedDeviceSignature => bytes[bytes.len() - 1] ^= 1,
        // The lowest byte of the credential's rider id (offset 11..19).
        CodeKind::ForgedCredential => bytes[18] ^= 1,
        _ => return Ok(code.to_base64url()),
    }
    Ok(RideCode::from_bytes(&bytes)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .to_base64url())
}

/// Makes every code (in parallel) for a run starting at wall time `start_ms`.
fn prepare(
    plan: &Plan,
    riders: &[Arc<RiderDevice>],
    fleet: &Fleet,
    start_ms: u64,
    gate_verify: GateVerify,
) -> anyhow::Result<Vec<Ready>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = plan.taps.len().div_ceil(threads).max(1);
    let mut ready: Vec<Ready> = Vec::with_capacity(plan.taps.len());
    std::thread::scope(|scope| {
        let handles: Vec<_> = plan
            .taps
            .chunks(chunk)
            .map(|taps| {
                scope.spawn(move || {
                    taps.iter()
                        .map(|tap| {
                            let scan_ms = start_ms + (tap.at_s * 1000.0) as u64;
                            let code = match tap.code {
                                CodeKind::ReplayOf(_) => String::new(),
                                _ => make_code(&riders[tap.rider], tap, scan_ms)?,
                            };
                            Ok(Ready {
                                tap: tap.clone(),
                                code,
                                verdict: None,
                                payment_code: None,
                                answered: None,
                                after: None,
                            })
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        for handle in handles {
            ready.extend(handle.join().expect("code maker panicked")?);
        }
        anyhow::Ok(())
    })?;
    for i in 0..ready.len() {
        if let CodeKind::ReplayOf(j) = ready[i].tap.code {
            ready[i].code = ready[j].code.clone();
            let answered = ready[j]
                .answered
                .get_or_insert_with(|| tokio::sync::watch::channel(false).0);
            ready[i].after = Some(answered.subscribe());
        }
    }
    if gate_verify == GateVerify::Prepared {
        std::thread::scope(|scope| {
            for part in ready.chunks_mut(chunk) {
                scope.spawn(move || {
                    for r in part {
                        let scan_ms = (start_ms + (r.tap.at_s * 1000.0) as u64)
                            .saturating_add_signed(r.tap.gate_clock_offset_ms);
                        let t0 = Instant::now();
                        let verdict = fleet.terminals[r.tap.terminal]
                            .verifier
                            .verify_base64url(&r.code, scan_ms, &fleet.deny)
                            .map(|_| ());
                        r.verdict = Some((verdict, t0.elapsed().as_nanos() as u64));
                    }
                });
            }
        });
    }
    Ok(ready)
}

/// Runs `plan` against the fleet and returns what was observed and the run's length (from the
/// start to the last answer).
pub async fn execute(
    fleet: Arc<Fleet>,
    riders: &[Arc<RiderDevice>],
    plan: &Plan,
    options: &RunOptions,
) -> anyhow::Result<(Recorder, Duration)> {
    execute_with(fleet, riders, plan, options, None).await
}

fn is_toll_exit(fleet: &Fleet, tap: &PlannedTap) -> bool {
    tap.direction == Direction::Exit && fleet.terminals[tap.terminal].kind == Kind::TollLane
}

/// One payment code per wallet of `user_ids` (in order), a few requests in flight at once.
async fn fetch_codes(sandbox: &Sandbox, user_ids: Vec<String>) -> anyhow::Result<Vec<String>> {
    const CONCURRENCY: usize = 16;
    let mut codes = vec![String::new(); user_ids.len()];
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = user_ids.len().div_ceil(CONCURRENCY).max(1);
    for (part, chunk) in user_ids.chunks(per_task).enumerate() {
        let (sandbox, chunk) = (sandbox.clone(), chunk.to_vec());
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(chunk.len());
            for user in chunk {
                out.push(sandbox.payment_code(&user).await?);
            }
            anyhow::Ok((part, out))
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (part, out) = done??;
        for (i, code) in out.into_iter().enumerate() {
            codes[part * per_task + i] = code;
        }
    }
    Ok(codes)
}

/// Like [`execute`]; with `paid`, toll exits are paid at the booth (`POST /v1/toll/exits` with
/// a wallet payment code), and the sandbox is degraded during the plan's degradation window.
pub async fn execute_with(
    fleet: Arc<Fleet>,
    riders: &[Arc<RiderDevice>],
    plan: &Plan,
    options: &RunOptions,
    paid: Option<Paid>,
) -> anyhow::Result<(Recorder, Duration)> {
    // Payment codes of the exits early enough in the run, before the clock starts.
    let mut early_codes = Vec::new();
    if let Some(paid) = &paid {
        anyhow::ensure!(
            paid.wallets.len() >= plan.riders,
            "{} wallets for {} riders",
            paid.wallets.len(),
            plan.riders
        );
        let users = plan
            .taps
            .iter()
            .filter(|t| is_toll_exit(&fleet, t) && t.at_s < paid.codes_ahead_s)
            .map(|t| paid.wallets[t.rider].clone())
            .collect();
        early_codes = fetch_codes(&paid.sandbox, users).await?;
    }
    // Codes are made for a start a little ahead: about 30 µs per code and thread, plus margin.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let lead_ms = 500 + plan.taps.len() as u64 * 60 / 1000 / threads;
    let start_ms = crate::now_ms() as u64 + lead_ms;
    let (fleet2, plan_taps) = (fleet.clone(), plan);
    let riders2 = riders.to_vec();
    let gate_verify = options.gate_verify;
    let mut ready = tokio::task::block_in_place(move || {
        prepare(plan_taps, &riders2, &fleet2, start_ms, gate_verify)
    })?;
    // Later exits' codes: (scheduled time, wallet, where the code goes), fetched during the run.
    let mut later_codes = Vec::new();
    let codes_ahead = early_codes.len() as u64;
    if let Some(paid) = &paid {
        let mut early = early_codes.into_iter();
        for r in &mut ready {
            if !is_toll_exit(&fleet, &r.tap) {
                continue;
            }
            if r.tap.at_s < paid.codes_ahead_s {
                r.payment_code = early.next().map(PaymentCode::Ready);
            } else {
                let (tx, rx) = tokio::sync::oneshot::channel();
                later_codes.push((r.tap.at_s, paid.wallets[r.tap.rider].clone(), tx));
                r.payment_code = Some(PaymentCode::Later(rx));
            }
        }
    }
    let buffers = match plan.outage.is_some() || options.offline_fallback.is_some() {
        true => {
            std::fs::create_dir_all(&options.work_dir)?;
            let mut buffers = Vec::new();
            for t in &fleet.terminals {
                let path = options.work_dir.join(format!("{}.db", t.id));
                let _ = std::fs::remove_file(&path);
                buffers.push(OfflineBuffer::open(&path).await?);
            }
            Some(buffers)
        }
        false => None,
    };
    let mut classes: Vec<&'static str> = plan.taps.iter().map(|t| t.class).collect();
    classes.sort_unstable();
    classes.dedup();
    // Start at the planned wall time (or now, if making the codes took longer).
    let wait_ms = start_ms.saturating_sub(crate::now_ms() as u64);
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    let mut recorder = Recorder::new(plan.duration_s);
    recorder.paid.codes_ahead = codes_ahead;
    recorder.paid.codes_during_run = later_codes.len() as u64;
    let ctx = Arc::new(Ctx {
        fleet: fleet.clone(),
        recorder: Mutex::new(recorder),
        start: Instant::now(),
        gate_verify: options.gate_verify,
        buffers,
        offline_fallback: options.offline_fallback,
        in_flight: AtomicUsize::new(0),
        classes,
    });
    let (stop_uploads, uploads_stopped) = tokio::sync::watch::channel(false);
    let uploader = options
        .offline_fallback
        .map(|_| tokio::spawn(upload_while_running(ctx.clone(), uploads_stopped)));
    let outage = plan.outage.map(|window| {
        let ctx = ctx.clone();
        tokio::spawn(async move { outage(ctx, window.from_s, window.until_s).await })
    });
    let sandbox = paid.as_ref().map(|p| p.sandbox.clone());
    let code_lead_s = paid.as_ref().map_or(0.0, |p| p.code_lead_s);
    let code_fetcher = sandbox
        .clone()
        .filter(|_| !later_codes.is_empty())
        .map(|sandbox| {
            let start = ctx.start;
            tokio::spawn(async move {
                for (at_s, user, tx) in later_codes {
                    let due = start + Duration::from_secs_f64((at_s - code_lead_s).max(0.0));
                    tokio::time::sleep_until(due.into()).await;
                    let sandbox = sandbox.clone();
                    tokio::spawn(async move {
                        let code = sandbox.payment_code(&user).await.map_err(|e| e.to_string());
                        let _ = tx.send(code);
                    });
                }
            })
        });
    let degradation = match (&paid, plan.degradation) {
        (
            Some(Paid {
                faults: Some(faults),
                sandbox,
                ..
            }),
            Some(window),
        ) => {
            let (ctx, sandbox, faults) = (ctx.clone(), sandbox.clone(), faults.clone());
            Some(tokio::spawn(async move {
                degrade(ctx, sandbox, faults, window.from_s, window.until_s).await
            }))
        }
        _ => None,
    };
    let machines = paid
        .as_ref()
        .filter(|_| !plan.purchases.is_empty())
        .map(|paid| {
            ctx.recorder.lock().expect("recorder").tickets.planned = plan.purchases.len() as u64;
            let wallets = plan
                .purchases
                .iter()
                .map(|p| paid.wallets[p.rider].clone())
                .collect();
            let (ctx, sandbox) = (ctx.clone(), paid.sandbox.clone());
            let purchases = plan.purchases.clone();
            tokio::spawn(ticket_machines(ctx, sandbox, purchases, wallets, start_ms))
        });
    let progress = options
        .progress
        .then(|| progress_bar(ctx.clone(), plan.duration_s));
    let dispatcher = {
        let (ctx, runtime) = (ctx.clone(), tokio::runtime::Handle::current());
        tokio::task::spawn_blocking(move || dispatch(ctx, runtime, ready))
    };
    dispatcher.await?;
    if let Some(outage) = outage {
        outage.await??;
    }
    if let Some(degradation) = degradation {
        degradation.await??;
    }
    if let Some(machines) = machines {
        machines.await?;
    }
    let drain_until = Instant::now()
        + if paid.is_some() {
            DRAIN_TIMEOUT_PAID
        } else {
            DRAIN_TIMEOUT
        };
    while ctx.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Some(uploader) = uploader {
        // Gates that fell back offline upload what is left, then the run ends.
        let _ = stop_uploads.send(true);
        uploader.await??;
    }
    let elapsed = ctx.start.elapsed();
    if let Some(progress) = progress {
        progress.abort();
    }
    if let Some(fetcher) = code_fetcher {
        fetcher.abort();
    }
    // Taps still in flight after the drain timeout are left out (and counted nowhere but here).
    let rec = std::mem::replace(
        &mut *ctx.recorder.lock().expect("recorder"),
        Recorder::new(0.0),
    );
    Ok((rec, elapsed))
}

/// Sends every tap at its scheduled time, from a thread of its own. The OS timer wakes it within
/// tens of microseconds; tokio's timer has millisecond ticks, so a tap scheduled with it left up
/// to a millisecond late (0.5–1.1 ms at the median), and that lateness, the simulator's own,
/// counts in every latency measured from the scheduled time.
fn dispatch(ctx: Arc<Ctx>, runtime: tokio::runtime::Handle, ready: Vec<Ready>) {
    for ready in ready {
        let scheduled = ctx.start + Duration::from_secs_f64(ready.tap.at_s);
        let now = Instant::now();
        if scheduled > now {
            std::thread::sleep(scheduled - now);
        }
        let lag_us = Instant::now()
            .saturating_duration_since(scheduled)
            .as_micros() as u64;
        {
            let mut rec = ctx.recorder.lock().expect("recorder");
            rec.dispatch_lag_us.saturating_record(lag_us.max(1));
            rec.offered(ready.tap.at_s);
        }
        if ctx.in_flight.load(Ordering::Relaxed) >= IN_FLIGHT_MAX {
            let mut rec = ctx.recorder.lock().expect("recorder");
            rec.count(ready.tap.class, "error simulator in-flight limit", None);
            continue;
        }
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        let ctx = ctx.clone();
        runtime.spawn(async move {
            tap(&ctx, ready, scheduled).await;
            ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// One tap: the gate verifies the code offline, then sends the tap live, or buffers it while
/// offline.
async fn tap(ctx: &Ctx, mut ready: Ready, mut scheduled: Instant) {
    if let Some(mut after) = ready.after.take() {
        // Sent when the original's answer is in (or it was dropped); latency counts from then.
        let _ = after.wait_for(|answered| *answered).await;
        scheduled = scheduled.max(Instant::now());
    }
    let answered = ready.answered.take();
    answer(ctx, ready, scheduled).await;
    if let Some(answered) = answered {
        answered.send_replace(true);
    }
}

async fn answer(ctx: &Ctx, ready: Ready, scheduled: Instant) {
    let fleet = &ctx.fleet;
    let terminal = &fleet.terminals[ready.tap.terminal];
    let scanned_at_ms =
        (crate::now_ms() as u64).saturating_add_signed(ready.tap.gate_clock_offset_ms);
    let (verdict, verify_ns) = match (ctx.gate_verify, ready.verdict) {
        (GateVerify::Prepared, Some(v)) => v,
        _ => {
            let t0 = Instant::now();
            let verdict = terminal
                .verifier
                .verify_base64url(&ready.code, scanned_at_ms, &fleet.deny)
                .map(|_| ());
            (verdict, t0.elapsed().as_nanos() as u64)
        }
    };
    let sequence = terminal.next_sequence();
    let request = TapRequest {
        sequence,
        direction: ready.tap.direction,
        ride_code: ready.code,
        scanned_at_ms,
        vehicle_class: ready.tap.vehicle_class,
    };
    let json = serde_json::to_string(&request).expect("a tap serializes");
    if let Some(buffers) = &ctx.buffers {
        if !terminal.online.load(Ordering::Acquire) {
            let buffer = &buffers[ready.tap.terminal];
            let _gate = buffer.gate.lock().await;
            if !terminal.online.load(Ordering::Acquire) {
                let paid_exit = ready.payment_code.is_some();
                keep_offline(
                    ctx,
                    buffer,
                    &ready.tap,
                    sequence,
                    json,
                    verify_ns,
                    Kept::LinkDown { paid_exit },
                )
                .await;
                return;
            }
        }
    }
    if let Some(code) = ready.payment_code {
        let paid = pay_at_exit(terminal, json, code, scheduled).await;
        let latency_us = paid.latency_us;
        let mut rec = ctx.recorder.lock().expect("recorder");
        rec.gate_verify_ns.saturating_record(verify_ns.max(1));
        if let Err(reason) = verdict {
            rec.gate_refused += 1;
            if paid.key != format!("decline {}", reason.code()) && paid.response.is_some() {
                rec.disagreements += 1;
            }
        }
        rec.paid.toll_exit_repeats += paid.repeats;
        if paid.in_progress {
            rec.paid.toll_exits_in_progress += 1;
        }
        match paid.final_repeat_identical {
            Some(true) => rec.paid.final_repeat_identical += 1,
            Some(false) => rec.paid.final_repeat_different += 1,
            None => {}
        }
        rec.paid.toll_charged_minor += paid.response.as_ref().map_or(0, charged_minor);
        rec.answered_toll_exit(
            ready.tap.class,
            ready.tap.at_s,
            latency_us,
            &paid.key,
            paid.response.as_ref(),
        );
        return;
    }
    let live = terminal.link.post("/v1/taps", Bytes::from(json.clone()));
    let reply = match ctx.offline_fallback {
        None => live.await,
        Some(budget) => match tokio::time::timeout(budget, live).await {
            Ok(reply) => reply,
            Err(_) => Err(anyhow::anyhow!("no answer within the gate's {budget:?}")),
        },
    };
    let failed = reply.as_ref().map_or(true, |r| r.status >= 500);
    if failed && ctx.offline_fallback.is_some() {
        if let Some(buffers) = &ctx.buffers {
            // The gate decides offline, as during an outage, and keeps the tap for upload.
            let buffer = &buffers[ready.tap.terminal];
            keep_offline(
                ctx,
                buffer,
                &ready.tap,
                sequence,
                json,
                verify_ns,
                Kept::LiveFailed,
            )
            .await;
            return;
        }
    }
    let latency_us = scheduled.elapsed().as_micros() as u64;
    let (key, response) = match &reply {
        Ok(reply) => outcome_key(reply.status, &reply.body),
        Err(e) => (format!("error {e}"), None),
    };
    let mut rec = ctx.recorder.lock().expect("recorder");
    if ready.tap.direction == Direction::Exit && terminal.kind == Kind::MetroGate {
        rec.paid.metro_charged_minor += response.as_ref().map_or(0, charged_minor);
    }
    rec.gate_verify_ns.saturating_record(verify_ns.max(1));
    if let Err(reason) = verdict {
        rec.gate_refused += 1;
        if key != format!("decline {}", reason.code()) && reply.is_ok() {
            rec.disagreements += 1;
        }
    }
    rec.answered(
        ready.tap.class,
        ready.tap.at_s,
        latency_us,
        &key,
        response.as_ref(),
    );
}

/// What a toll exit paid at the booth got.
struct PaidExit {
    /// The final answer's outcome key (or the last non-final one, or the error).
    key: String,
    /// The final answer, when there was one.
    response: Option<turnpike_wire::api::TapResponse>,
    /// Requests after the first.
    repeats: u64,
    /// Whether the gateway answered `409 payment_in_progress` before the final answer.
    in_progress: bool,
    /// The final answer asked for again (after it was timed): byte-identical or not.
    final_repeat_identical: Option<bool>,
    /// From the scheduled time to the final answer (or the giving up).
    latency_us: u64,
}

/// A toll exit paid at the booth: the tap with the driver's payment code, repeated (the same
/// request) while the gateway answers `409 payment_in_progress`, at most [`TOLL_REPEAT_FOR`]
/// after the scheduled time. Once final, the request is repeated once more (untimed), which must
/// return the same bytes.
async fn pay_at_exit(
    terminal: &crate::network::Terminal,
    tap_json: String,
    code: PaymentCode,
    scheduled: Instant,
) -> PaidExit {
    let mut out = PaidExit {
        key: String::new(),
        response: None,
        repeats: 0,
        in_progress: false,
        final_repeat_identical: None,
        latency_us: 0,
    };
    let code = match code.get().await {
        Ok(code) => code,
        Err(e) => {
            out.latency_us = scheduled.elapsed().as_micros() as u64;
            out.key = format!("error fetching a payment code: {e}");
            return out;
        }
    };
    // Payment codes are digits only: nothing to escape.
    let body = Bytes::from(format!(
        "{{\"tap\":{tap_json},\"payment_code\":\"{code}\"}}"
    ));
    loop {
        let reply = terminal.link.post("/v1/toll/exits", body.clone()).await;
        let (key, response) = match &reply {
            Ok(reply) => outcome_key(reply.status, &reply.body),
            Err(e) => (format!("error {e}"), None),
        };
        let pending = key == "http 409 payment_in_progress";
        if pending && scheduled.elapsed() < TOLL_REPEAT_FOR {
            out.in_progress = true;
            out.repeats += 1;
            tokio::time::sleep(TOLL_REPEAT_INTERVAL).await;
            continue;
        }
        out.latency_us = scheduled.elapsed().as_micros() as u64;
        out.key = key;
        out.response = response;
        if let (Some(_), Ok(first)) = (&out.response, &reply) {
            let again = terminal.link.post("/v1/toll/exits", body.clone()).await;
            out.final_repeat_identical =
                Some(matches!(again, Ok(a) if a.status == first.status && a.body == first.body));
        }
        return out;
    }
}

/// Every planned ticket purchase at its scheduled time (open loop, like the taps), each bought
/// by its own task and counted in flight until it is done; `wallets` pay, one per purchase.
async fn ticket_machines(
    ctx: Arc<Ctx>,
    sandbox: Sandbox,
    purchases: Vec<PlannedPurchase>,
    wallets: Vec<String>,
    run_id: u64,
) {
    for (i, (purchase, wallet)) in purchases.into_iter().zip(wallets).enumerate() {
        let scheduled = ctx.start + Duration::from_secs_f64(purchase.at_s);
        tokio::time::sleep_until(scheduled.into()).await;
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        let (ctx, sandbox) = (ctx.clone(), sandbox.clone());
        tokio::spawn(async move {
            let machine = &ctx.fleet.terminals[purchase.machine];
            let request_id = format!("sim-{run_id}-{i}");
            let bought = tickets::buy(
                machine,
                &sandbox,
                &wallet,
                &purchase,
                &request_id,
                scheduled,
            )
            .await;
            ctx.recorder.lock().expect("recorder").purchased(&bought);
            ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// The provider is degraded at `from_s` (the sandbox's fault knobs set to `faults`) and
/// restored at `until_s` (knobs removed).
async fn degrade(
    ctx: Arc<Ctx>,
    sandbox: Sandbox,
    faults: serde_json::Value,
    from_s: f64,
    until_s: f64,
) -> anyhow::Result<()> {
    tokio::time::sleep_until((ctx.start + Duration::from_secs_f64(from_s)).into()).await;
    sandbox.set_faults(faults).await?;
    let at = ctx.start.elapsed().as_secs_f64();
    ctx.recorder.lock().expect("recorder").paid.degraded_from_s = Some(at);
    tokio::time::sleep_until((ctx.start + Duration::from_secs_f64(until_s)).into()).await;
    sandbox.clear_faults().await?;
    let at = ctx.start.elapsed().as_secs_f64();
    ctx.recorder.lock().expect("recorder").paid.restored_at_s = Some(at);
    Ok(())
}

/// The link goes down at `from_s` and comes back at `until_s`; then every gate uploads its
/// buffer. All gates go live again only once every buffer is empty, so no live exit overtakes
/// its buffered entry at another gate.
async fn outage(ctx: Arc<Ctx>, from_s: f64, until_s: f64) -> anyhow::Result<()> {
    tokio::time::sleep_until((ctx.start + Duration::from_secs_f64(from_s)).into()).await;
    for terminal in &ctx.fleet.terminals {
        terminal.online.store(false, Ordering::Release);
        terminal.link.cut().await;
    }
    tokio::time::sleep_until((ctx.start + Duration::from_secs_f64(until_s)).into()).await;
    let buffers = ctx.buffers.as_ref().expect("an outage has buffers");
    // Round one: upload what was buffered (all gates at once) while gates keep buffering.
    let mut uploads = tokio::task::JoinSet::new();
    for i in 0..ctx.fleet.terminals.len() {
        let ctx = ctx.clone();
        uploads.spawn(async move {
            let buffers = ctx.buffers.as_ref().expect("an outage has buffers");
            buffers[i].upload(&ctx.fleet.terminals[i], true).await
        });
    }
    let mut results = Vec::new();
    while let Some(done) = uploads.join_next().await {
        results.push(done?);
    }
    // Round two: hold every gate, upload the rest, go live together.
    let mut guards = Vec::new();
    for buffer in buffers {
        guards.push(buffer.gate.lock().await);
    }
    let mut last = Vec::new();
    for (i, terminal) in ctx.fleet.terminals.iter().enumerate() {
        last.push(buffers[i].upload(terminal, false).await);
    }
    for terminal in &ctx.fleet.terminals {
        terminal.online.store(true, Ordering::Release);
    }
    drop(guards);
    record_uploads(&ctx, results.into_iter().chain(last));
    Ok(())
}

/// Why a gate decided a tap offline.
enum Kept {
    /// Its link was down (an outage); `paid_exit`: a toll exit that would have been paid at the
    /// booth, post-paid when uploaded instead.
    LinkDown { paid_exit: bool },
    /// Its live request failed, answered 5xx or was late.
    LiveFailed,
}

/// A tap the gate decided offline: stored in the gate's buffer for upload, and counted.
async fn keep_offline(
    ctx: &Ctx,
    buffer: &OfflineBuffer,
    tap: &PlannedTap,
    sequence: u64,
    request_json: String,
    verify_ns: u64,
    why: Kept,
) {
    let stored = buffer
        .push(&Buffered {
            sequence,
            request_json,
            class: tap.class.to_string(),
        })
        .await;
    let mut rec = ctx.recorder.lock().expect("recorder");
    rec.gate_verify_ns.saturating_record(verify_ns.max(1));
    match why {
        Kept::LinkDown { paid_exit: true } => rec.paid.toll_exits_buffered += 1,
        Kept::LinkDown { paid_exit: false } => {}
        Kept::LiveFailed => rec.offline.after_live_failure += 1,
    }
    match stored {
        Ok(()) => rec.offline.buffered += 1,
        Err(e) => rec.count(tap.class, &format!("error buffering: {e}"), None),
    }
}

/// Counts what uploads brought back: each tap under its class and answer.
fn record_uploads(
    ctx: &Ctx,
    results: impl IntoIterator<Item = anyhow::Result<crate::offline::Uploaded>>,
) {
    let mut rec = ctx.recorder.lock().expect("recorder");
    for result in results {
        match result {
            Ok(uploaded) => {
                if let Some(why) = &uploaded.stopped {
                    rec.count("upload", &format!("error {why}"), None);
                }
                match uploaded.reupload_identical {
                    Some(true) => rec.offline.reupload_identical += 1,
                    Some(false) => rec.offline.reupload_different += 1,
                    None => {}
                }
                for (class, answer) in uploaded.taps {
                    let class = ctx
                        .classes
                        .iter()
                        .find(|c| **c == class)
                        .copied()
                        .unwrap_or("unknown");
                    let (key, response) = outcome_key(200, &answer);
                    rec.paid.uploaded_charged_minor += response.as_ref().map_or(0, charged_minor);
                    rec.offline.uploaded += 1;
                    match key.as_str() {
                        "approve" => rec.offline.accepted += 1,
                        _ => rec.offline.declined += 1,
                    }
                    rec.count(class, &key, response.as_ref());
                }
            }
            Err(e) => rec.count("upload", &format!("error {e}"), None),
        }
    }
}

/// Gates that fell back offline after a failed live request upload their buffers every
/// [`UPLOAD_EVERY`] while they are online (an outage's own uploads happen when it ends); when
/// `stop` turns true, one last round uploads what is left, retrying while the gateway answers
/// `503`, for at most [`UPLOAD_FINAL_FOR`].
async fn upload_while_running(
    ctx: Arc<Ctx>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Some(buffers) = ctx.buffers.as_ref() else {
        return Ok(());
    };
    let mut last_round = false;
    let mut deadline = None;
    loop {
        if !last_round {
            tokio::select! {
                _ = tokio::time::sleep(UPLOAD_EVERY) => {}
                _ = stop.changed() => {
                    last_round = true;
                    deadline = Some(Instant::now() + UPLOAD_FINAL_FOR);
                }
            }
        }
        let mut left = 0;
        for (i, terminal) in ctx.fleet.terminals.iter().enumerate() {
            let _gate = buffers[i].gate.lock().await;
            if !terminal.online.load(Ordering::Acquire) {
                continue;
            }
            let (total, uploaded) = buffers[i].counts().await?;
            if total == uploaded {
                continue;
            }
            match buffers[i].upload(terminal, false).await {
                Ok(mut uploaded) => {
                    if uploaded.stopped.is_some() {
                        // The rest is tried again next round.
                        left += 1;
                        if !(last_round && deadline.is_some_and(|d| Instant::now() > d)) {
                            uploaded.stopped = None;
                        }
                    }
                    record_uploads(&ctx, [Ok(uploaded)]);
                }
                Err(e) => {
                    left += 1;
                    // Tried again next round; reported only when no round is left.
                    if last_round && deadline.is_some_and(|d| Instant::now() > d) {
                        record_uploads(&ctx, [Err(e)]);
                    }
                }
            }
        }
        if last_round {
            if left == 0 || deadline.is_some_and(|d| Instant::now() > d) {
                return Ok(());
            }
            tokio::time::sleep(UPLOAD_EVERY).await;
        }
    }
}

/// How long the last upload round keeps trying after the run.
const UPLOAD_FINAL_FOR: Duration = Duration::from_secs(30);

fn progress_bar(ctx: Arc<Ctx>, duration_s: f64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let bar = indicatif::ProgressBar::new(duration_s.ceil() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} s  {msg}")
                .expect("valid template"),
        );
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let elapsed = ctx.start.elapsed().as_secs_f64();
            bar.set_position(elapsed.min(duration_s) as u64);
            let (requests, errors, p99) = {
                let rec = ctx.recorder.lock().expect("recorder");
                (
                    rec.requests,
                    rec.errors,
                    rec.latency_us.value_at_quantile(0.99),
                )
            };
            bar.set_message(format!(
                "{requests} answered, {errors} errors, p99 {:.1} ms",
                p99 as f64 / 1000.0
            ));
        }
    })
}
