//! The tap engine: judges taps and commits them in groups.
//!
//! Request handlers parse and cryptographically verify a tap (CPU work, done concurrently on the
//! runtime's threads), then hand it to a bounded queue. A few writer tasks each take up to
//! `commit_batch_taps_max` queued taps, judge them one after another inside one database
//! transaction, commit, and only then answer every waiting request: one fsync pays for many taps,
//! and nothing is acknowledged before it is durable. An offline batch from one terminal is a
//! single job, so its taps are judged in their original order.
//!
//! The rules (see docs/taps.md): replay (a code is consumed once per direction), pass-back (one
//! open journey per rider and mode), exit without entry, incomplete journeys closed at the maximum
//! fare, the same-station window, and the daily cap. Every cross-node guarantee is a database
//! constraint; this module decides, the store enforces.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use turnpike_wire::api::{Decision, Direction, TapDecline, TapRequest, TapResponse};
use turnpike_wire::ridecode::RejectReason;
use turnpike_wire::Money;

use crate::clock::Clock;
use crate::error::ApiError;
use crate::known::{Changes, Known, OpenJourney};
use crate::network::{Mode, Networks, OperatorNetwork};
use crate::rules;
use crate::store::charging::ChargeStatus;
use crate::store::charging::{self as charges, NewCharge};
use crate::store::failure::{self, Failure};
use crate::store::repairs::LooseFact;
use crate::store::taps::{self as sql, JourneyClose};
use crate::store::wave_tx::{Reads, WaveTx};
use crate::store::waves::{
    self as sets, Close, CodeUse, DayFare, JourneyCharge, Open, RiderMode, TapKey, TapRecord,
};
use crate::store::{JourneyRow, Store, TerminalRow, Tx};

/// A tap that passed request validation, with the result of its offline-style verification.
pub struct PreparedTap {
    pub request: TapRequest,
    pub request_sha256: [u8; 32],
    pub received_at_ms: i64,
    /// The verified ride code, or why it was refused.
    pub verdict: Result<VerifiedCode, RejectReason>,
    /// A toll exit paid on the spot: the engine closes the journey and records a 'paying'
    /// charge; the caller then runs the barcode pay (see `charging::toll`).
    pub pays_at_exit: bool,
}

pub struct VerifiedCode {
    pub fingerprint: [u8; 32],
    pub rider_id: i64,
    pub credential_id: i64,
    pub products: u16,
}

/// One unit of work for a writer: a single tap, or an offline batch in scan order.
struct Job {
    terminal: TerminalRow,
    taps: Vec<PreparedTap>,
    /// An offline batch: its verified taps were admitted at the gate (facts, docs/taps.md).
    offline: bool,
    reply: oneshot::Sender<Result<Vec<TapAnswer>, ApiError>>,
}

/// The answer to one tap: the exact bytes to send, and whether they were stored earlier.
#[derive(Debug, Clone)]
pub struct TapAnswer {
    pub body: Vec<u8>,
    pub repeat: bool,
    pub decision: Decision,
    pub reason: Option<String>,
    /// A toll exit whose payment is now to be taken: the answer above is provisional.
    pub payment: Option<PendingPayment>,
    /// The rider (and mode) whose journeys this tap queued for re-pairing: a fact no journey
    /// holds yet, or an upload that may have arrived after later taps.
    pub repair: Option<(i64, Mode)>,
}

/// The 'paying' charge of a toll exit, for the synchronous barcode pay.
#[derive(Debug, Clone)]
pub struct PendingPayment {
    pub charge_id: i64,
    pub journey_id: i64,
    pub fare: Money,
    pub charge: Money,
}

/// The stored (and repeated) answer of a toll exit whose payment has not finished yet.
pub const PAYMENT_PENDING: &str = TapDecline::PaymentPending.as_str();

#[derive(Clone)]
pub struct Rules {
    /// How long a toll exit's 'paying' charge is reserved for the request that pays it.
    pub payment_lease_ms: i64,
    /// The journeys' time rules (`journeys.*`).
    pub journeys: rules::JourneyRules,
    pub commit_batch_taps_max: usize,
    /// What "now" is when a journey closes or a charge is first due.
    pub clock: Clock,
    /// Longest a live tap waits for its commit (`taps.answer_budget_ms`).
    pub answer_budget: Duration,
    /// Longest an offline batch waits for its commit (`taps.batch_answer_budget_ms`).
    pub batch_answer_budget: Duration,
    /// Longest a writer spends on one group, all tries included (`taps.group_timeout_ms`).
    pub group_timeout: Duration,
    /// Open journeys and day totals a writer remembers (`taps.known_riders_max`; 0: none).
    pub known_riders_max: usize,
}

#[derive(Clone)]
pub struct TapEngine {
    /// One queue per writer; a job goes to the writer of its (first) rider.
    queues: Arc<[mpsc::Sender<Job>]>,
    answer_budget: Duration,
    batch_answer_budget: Duration,
}

impl TapEngine {
    /// Starts `writers` writer tasks (one for SQLite, which has a single writer anyway).
    pub fn start(
        store: Store,
        networks: Arc<Networks>,
        rules: Rules,
        writers: usize,
        queue_requests_max: usize,
    ) -> TapEngine {
        let (answer_budget, batch_answer_budget) = (rules.answer_budget, rules.batch_answer_budget);
        let writers = if store.backend() == crate::store::Backend::Sqlite {
            1
        } else {
            writers.max(1)
        };
        let mut queues = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (tx, rx) = mpsc::channel::<Job>((queue_requests_max / writers).max(1));
            queues.push(tx);
            let writer = Writer {
                store: store.clone(),
                networks: networks.clone(),
                rules: rules.clone(),
                rx,
                known: std::sync::Mutex::new(Known::default()),
            };
            tokio::spawn(writer.run());
        }
        TapEngine {
            queues: queues.into(),
            answer_budget,
            batch_answer_budget,
        }
    }

    /// Judges and durably records a live tap, answered within the live budget
    /// (`taps.answer_budget_ms`): a gate with a rider at the barrier.
    pub async fn submit(
        &self,
        terminal: TerminalRow,
        tap: PreparedTap,
    ) -> Result<TapAnswer, ApiError> {
        let mut answers = self
            .submit_within(terminal, vec![tap], self.answer_budget, false)
            .await?;
        answers
            .pop()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no answer")))
    }

    /// Judges and durably records an offline batch of one terminal, in order, answered within
    /// the batch budget (`taps.batch_answer_budget_ms`: up to 500 taps, nobody waiting).
    pub async fn submit_batch(
        &self,
        terminal: TerminalRow,
        taps: Vec<PreparedTap>,
    ) -> Result<Vec<TapAnswer>, ApiError> {
        self.submit_within(terminal, taps, self.batch_answer_budget, true)
            .await
    }

    /// Queues the taps and waits for their answers at most `budget`: when the database is slow
    /// or unreachable the caller gets [`ApiError::DatabaseUnavailable`] (a `503` with
    /// `Retry-After`), and the writer drops the job if it has not started on it (a job it has
    /// started may still commit; the repeat finds it).
    async fn submit_within(
        &self,
        terminal: TerminalRow,
        taps: Vec<PreparedTap>,
        budget: Duration,
        offline: bool,
    ) -> Result<Vec<TapAnswer>, ApiError> {
        let (reply, answer) = oneshot::channel();
        // Writers are assigned by rider: each rider's taps queue at one writer, which judges
        // them in arrival order, one group at a time — a rider's later tap is never committed
        // ahead of an earlier one another writer is still committing or retrying. (A batch goes
        // to its first rider's writer; its other riders may meet their live taps on another
        // writer, where the database's constraints decide, as across nodes.) Taps without a
        // verified rider go by terminal.
        let key = taps
            .iter()
            .find_map(|t| t.verdict.as_ref().ok().map(|code| code.rider_id as u64))
            .unwrap_or_else(|| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                terminal.terminal_id.hash(&mut h);
                h.finish()
            });
        self.queues[(key % self.queues.len() as u64) as usize]
            .try_send(Job {
                terminal,
                taps,
                offline,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ApiError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => {
                    ApiError::Internal(anyhow::anyhow!("tap writers stopped"))
                }
            })?;
        match tokio::time::timeout(budget, answer).await {
            Err(_) => {
                metrics::counter!("gateway_tap_answer_budget_exceeded_total").increment(1);
                Err(ApiError::DatabaseUnavailable)
            }
            Ok(answer) => answer
                .map_err(|_| ApiError::Internal(anyhow::anyhow!("tap writer dropped a job")))?,
        }
    }
}

struct Writer {
    store: Store,
    networks: Arc<Networks>,
    rules: Rules,
    rx: mpsc::Receiver<Job>,
    /// What this writer knows of its riders (see `known.rs`); taken out while a group runs.
    known: std::sync::Mutex<Known>,
}

/// How a group is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// On what the writer knows, no reads: one round trip, every assumption checked by the
    /// writes (PostgreSQL).
    Known,
    /// With its reads, pipelined: a wave's reads in one round trip, its writes with the next
    /// (PostgreSQL).
    Piped,
    /// Rule by rule, one statement each (SQLite; PostgreSQL after a race).
    Plain,
}

impl Writer {
    async fn run(mut self) {
        loop {
            let mut jobs = Vec::new();
            let Some(first) = self.rx.recv().await else {
                return;
            };
            let mut taps = first.taps.len();
            jobs.push(first);
            while taps < self.rules.commit_batch_taps_max {
                match self.rx.try_recv() {
                    Ok(job) => {
                        taps += job.taps.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            // A request that gave up waiting (its budget ran out while the database was slow)
            // was answered 503; its terminal will repeat it. Judging it now would only add to
            // the backlog.
            let waiting = jobs.len();
            jobs.retain(|job| !job.reply.is_closed());
            if jobs.len() < waiting {
                metrics::counter!("gateway_tap_jobs_abandoned_total")
                    .increment((waiting - jobs.len()) as u64);
            }
            if jobs.is_empty() {
                continue;
            }
            let started = Instant::now();
            let group =
                tokio::time::timeout(self.rules.group_timeout, self.commit_group(&mut jobs));
            if group.await.is_err() {
                // Dropping the group's transaction closes a pipelined session mid-transaction
                // (the server rolls it back); a pooled one rolls back before it is reused.
                tracing::error!(
                    jobs = jobs.len(),
                    after_ms = started.elapsed().as_millis() as u64,
                    "tap group timed out; nothing acknowledged"
                );
                metrics::counter!("gateway_db_commit_failures_total").increment(1);
                for job in jobs {
                    let _ = job.reply.send(Err(ApiError::DatabaseUnavailable));
                }
            }
        }
    }

    /// Judges a group of jobs in one transaction. A job whose judgement fails (an idempotency
    /// conflict) is undone by a savepoint-free re-run: the group is retried without it.
    ///
    /// Every job taken out of `jobs` has been answered; what is left when the future is dropped
    /// (the group timed out) is answered by the caller.
    async fn commit_group(&self, jobs: &mut Vec<Job>) {
        // Taken out for the group; if the group is given up half way (its future dropped), the
        // writer starts again knowing nothing, which is always safe.
        let mut known = std::mem::take(&mut *self.known.lock().expect("never poisoned"));
        self.commit_group_knowing(jobs, &mut known).await;
        *self.known.lock().expect("never poisoned") = known;
    }

    async fn commit_group_knowing(&self, jobs: &mut Vec<Job>, known: &mut Known) {
        let taps: usize = jobs.iter().map(|j| j.taps.len()).sum();
        metrics::histogram!("gateway_db_commit_batch_taps").record(taps as f64);
        let mut retries = 0;
        let mut on_known = self.rules.known_riders_max > 0
            && self.store.backend() == crate::store::Backend::Postgres;
        loop {
            let started = Instant::now();
            // First try: on what the writer knows, in one round trip. Then with reads, each
            // wave's writes in one statement. After a race (or a conflict the one-statement
            // form cannot resolve, e.g. a toll journey's restarted charge), the group is judged
            // again writing rule by rule. A pipelined write that missed a row is a race like any
            // other.
            let how = if on_known {
                How::Known
            } else if retries == 0 {
                How::Piped
            } else {
                How::Plain
            };
            let result = match self.try_group(jobs, how, known).await {
                Err(e) if failure::classify(&e) == Failure::Raced => Ok(GroupResult::Raced),
                result => result,
            };
            if how == How::Known {
                let outcome = match &result {
                    Ok(GroupResult::Committed(..)) => "committed",
                    Ok(GroupResult::Unknown(needs)) => needs,
                    Ok(GroupResult::Raced) => "raced",
                    // A new journey that met another (the constraint), a deadlock: the
                    // database disagreed with what the writer knew.
                    Err(e)
                        if failure::unique_violation(e)
                            || failure::classify(e) == Failure::Transient =>
                    {
                        "raced"
                    }
                    _ => "failed",
                };
                metrics::counter!("gateway_tap_groups_on_known_total", "outcome" => outcome)
                    .increment(1);
                if outcome != "committed" && outcome != "failed" {
                    // Judged again with reads; what it knew of these riders may be wrong.
                    on_known = false;
                    if outcome == "raced" {
                        known.forget(&riders_of(jobs));
                    }
                    continue;
                }
            }
            match result {
                Ok(GroupResult::Committed(answers, changes)) => {
                    metrics::histogram!("gateway_db_commit_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                    known.apply(changes, self.rules.known_riders_max);
                    // An upload's riders are re-paired before it is answered, so what the
                    // uploader sees next already follows from every fact it brought — on a
                    // task of its own: a 500-tap upload re-pairs hundreds of riders, and the
                    // writer's next groups (live gates) must not wait behind that (the outage
                    // scenario's upload storm ran past the batch budget when they did). A live
                    // gate is answered first.
                    let mut later = Vec::new();
                    for (job, answer) in jobs.drain(..).zip(answers) {
                        let riders = to_repair(&answer);
                        if job.offline {
                            let (store, networks, rules) = (
                                self.store.clone(),
                                self.networks.clone(),
                                self.rules.clone(),
                            );
                            tokio::spawn(async move {
                                repair_riders(&store, &networks, &rules, riders).await;
                                let _ = job.reply.send(Ok(answer));
                            });
                        } else {
                            let _ = job.reply.send(Ok(answer));
                            later.extend(riders);
                        }
                    }
                    repair_riders(&self.store, &self.networks, &self.rules, later).await;
                    return;
                }
                Ok(GroupResult::Rejected { index, error }) => {
                    // Nothing was committed. Answer the offending job and judge the rest again.
                    let job = jobs.remove(index);
                    let _ = job.reply.send(Err(error));
                    if jobs.is_empty() {
                        return;
                    }
                }
                Ok(GroupResult::Unknown(_)) => {
                    unreachable!("only a group judged on what is known can need reads")
                }
                Ok(GroupResult::Raced) if retries < TRANSIENT_RETRIES_MAX => {
                    retries += 1;
                    metrics::counter!("gateway_db_commit_retries_total").increment(1);
                    tracing::info!(
                        taps,
                        retries,
                        "tap group raced another writer; judging again"
                    );
                }
                Ok(GroupResult::Raced) => {
                    tracing::error!(
                        taps,
                        "tap group kept racing other writers; nothing committed"
                    );
                    metrics::counter!("gateway_db_commit_failures_total").increment(1);
                    for job in jobs.drain(..) {
                        let _ = job.reply.send(Err(ApiError::Overloaded));
                    }
                    return;
                }
                Err(e)
                    if retries < TRANSIENT_RETRIES_MAX
                        && failure::classify(&e) == Failure::Transient =>
                {
                    // Two writers' groups deadlocked (or serialization failed) on PostgreSQL:
                    // the database rolled one back; judging it again is safe and usually succeeds.
                    retries += 1;
                    metrics::counter!("gateway_db_commit_retries_total").increment(1);
                    tracing::warn!(error = %e, taps, retries, "tap group hit a transient conflict; retrying");
                }
                Err(e) => {
                    tracing::error!(error = %e, taps, "tap group failed; nothing committed");
                    metrics::counter!("gateway_db_commit_failures_total").increment(1);
                    for job in jobs.drain(..) {
                        let _ = job.reply.send(Err(ApiError::Storage(failure::copied(&e))));
                    }
                    return;
                }
            }
        }
    }

    async fn try_group(
        &self,
        jobs: &[Job],
        how: How,
        known: &Known,
    ) -> Result<GroupResult, sqlx::Error> {
        let waves = waves(jobs);
        metrics::histogram!("gateway_db_commit_waves").record(waves.len() as f64);
        let mut tx = WaveTx::begin(&self.store, how != How::Plain).await?;
        let mut changes = Changes::default();
        let on_known = how == How::Known;
        let outcome = judge_waves(
            &mut tx,
            &self.networks,
            &self.rules,
            jobs,
            &waves,
            (known, &mut changes, on_known),
        )
        .await;
        match outcome {
            Ok(Ok(answers)) => {
                // The flow counts go with the COMMIT (pipelined: in the same message).
                tx.add_flow(&crate::flow::tally(passages(jobs, &answers)))
                    .await?;
                tx.commit().await?;
                Ok(GroupResult::Committed(
                    answers
                        .into_iter()
                        .map(|job| {
                            job.into_iter()
                                .map(|a| a.expect("every tap is in a wave"))
                                .collect()
                        })
                        .collect(),
                    changes,
                ))
            }
            Ok(Err(result)) => {
                tx.rollback().await?;
                Ok(result)
            }
            Err(e) => {
                // Best effort: a pipelined connection that cannot roll back is closed instead.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }
}

/// The taps of a judged group that count as passenger flow: approved, and inserted by this
/// group (a repeat was stored and counted by the group that first judged it; every other tap of
/// a group that commits was inserted by it — a record that missed fails the group).
fn passages<'a>(
    jobs: &'a [Job],
    answers: &'a [Vec<Option<TapAnswer>>],
) -> impl Iterator<Item = crate::flow::Passage<'a>> {
    jobs.iter().zip(answers).flat_map(|(job, answers)| {
        job.taps
            .iter()
            .zip(answers)
            .filter(|(_, a)| {
                a.as_ref()
                    .is_some_and(|a| !a.repeat && a.decision == Decision::Approve)
            })
            .map(|(tap, _)| crate::flow::Passage {
                operator_id: &job.terminal.operator_id,
                location_id: &job.terminal.location_id,
                scanned_at_ms: tap.request.scanned_at_ms as i64,
                direction: tap.request.direction,
            })
    })
}

/// Re-pairs riders (see `crate::repair`); one it cannot finish now stays queued for the
/// repairer.
async fn repair_riders(
    store: &Store,
    networks: &Networks,
    rules: &Rules,
    mut riders: Vec<(i64, Mode)>,
) {
    riders.sort_unstable_by_key(|&(rider, mode)| (rider, mode.as_str()));
    riders.dedup();
    for (rider_id, mode) in riders {
        let now_ms = rules.clock.now_ms();
        if let Err(e) =
            crate::repair::repair(store, networks, &rules.journeys, now_ms, rider_id, mode).await
        {
            tracing::warn!(rider_id, error = %e, "re-pairing failed; the repairer retries");
        }
    }
}

/// The riders of a group's verified taps.
fn riders_of(jobs: &[Job]) -> HashSet<i64> {
    jobs.iter()
        .flat_map(|job| &job.taps)
        .filter_map(|tap| tap.verdict.as_ref().ok().map(|code| code.rider_id))
        .collect()
}

/// What a wave is judged on: what the writer knew before the group, the group's changes so
/// far (recorded as the wave is judged), and whether to judge on those alone (no reads).
type Knowing<'k, 'c> = (&'k Known, &'c mut Changes, bool);

/// Judges a group's waves in order; Err(result) when the group must be rolled back.
async fn judge_waves(
    tx: &mut WaveTx,
    networks: &Networks,
    rules: &Rules,
    jobs: &[Job],
    waves: &[Vec<(usize, usize)>],
    (known, changes, on_known): Knowing<'_, '_>,
) -> Result<Result<Vec<Vec<Option<TapAnswer>>>, GroupResult>, sqlx::Error> {
    let mut answers: Vec<Vec<Option<TapAnswer>>> =
        jobs.iter().map(|j| vec![None; j.taps.len()]).collect();
    for wave in waves {
        let slots: Vec<Slot<'_>> = wave
            .iter()
            .map(|&(job, index)| Slot {
                job,
                offline: jobs[job].offline,
                terminal: &jobs[job].terminal,
                tap: &jobs[job].taps[index],
            })
            .collect();
        match judge_wave(
            tx,
            networks,
            rules,
            &slots,
            (known, &mut *changes, on_known),
        )
        .await?
        {
            WaveOutcome::Judged(judged) => {
                for (&(job, index), answer) in wave.iter().zip(judged) {
                    answers[job][index] = Some(answer);
                }
            }
            WaveOutcome::Rejected { job, error } => {
                return Ok(Err(GroupResult::Rejected { index: job, error }));
            }
            WaveOutcome::Raced => return Ok(Err(GroupResult::Raced)),
            WaveOutcome::Unknown(needs) => return Ok(Err(GroupResult::Unknown(needs))),
        }
    }
    Ok(Ok(answers))
}

enum GroupResult {
    /// The answers, and what the group changed that its writer may know from now on.
    Committed(Vec<Vec<TapAnswer>>, Changes),
    Rejected {
        index: usize,
        error: ApiError,
    },
    /// A write found another writer's (or node's) committed row where the wave's reads had seen
    /// none: nothing was committed, and judging the group again will see that row.
    Raced,
    /// Judged on what the writer knows, the group needs a fact it does not know (an exit of a
    /// rider it knows no journey of, a rule that declines, a stale journey): nothing was sent.
    /// The metric's spelling of what it needs.
    Unknown(&'static str),
}

/// How often a group is judged again after a deadlock, serialization failure or race before its
/// taps are answered 503 (the terminals then retry idempotently).
const TRANSIENT_RETRIES_MAX: u32 = 2;

/// Splits a group into waves, in order: a tap goes into the wave after the last one holding a
/// tap with the same idempotency key or the same rider. Inside a wave no two taps can affect
/// each other, so each rule runs once for the whole wave (set-based SQL); across waves, a
/// rider's taps (an offline batch's in particular) are judged in their original order.
fn waves(jobs: &[Job]) -> Vec<Vec<(usize, usize)>> {
    let mut waves: Vec<Vec<(usize, usize)>> = Vec::new();
    let mut last_by_key: HashMap<(&str, u64), usize> = HashMap::new();
    let mut last_by_rider: HashMap<i64, usize> = HashMap::new();
    for (j, job) in jobs.iter().enumerate() {
        for (i, tap) in job.taps.iter().enumerate() {
            let key = (job.terminal.terminal_id.as_str(), tap.request.sequence);
            let rider = tap.verdict.as_ref().ok().map(|c| c.rider_id);
            let after_key = last_by_key.get(&key).map(|w| w + 1);
            let after_rider = rider.and_then(|r| last_by_rider.get(&r)).map(|w| w + 1);
            let wave = after_key.max(after_rider).unwrap_or(0);
            if wave == waves.len() {
                waves.push(Vec::new());
            }
            waves[wave].push((j, i));
            last_by_key.insert(key, wave);
            if let Some(r) = rider {
                last_by_rider.insert(r, wave);
            }
        }
    }
    waves
}

/// A tap in a wave.
struct Slot<'a> {
    job: usize,
    offline: bool,
    terminal: &'a TerminalRow,
    tap: &'a PreparedTap,
}

enum WaveOutcome {
    Judged(Vec<TapAnswer>),
    Rejected { job: usize, error: ApiError },
    Raced,
    Unknown(&'static str),
}

/// The outcome of the rules for one tap, before it is written down.
struct Verdict {
    decision: Decision,
    reason: Option<&'static str>,
    journey_id: Option<i64>,
    fare: Option<Money>,
    charge: Option<Money>,
    payment: Option<PendingPayment>,
}

impl Verdict {
    /// Declined by the gateway's rules.
    fn refuse(reason: TapDecline) -> Verdict {
        Verdict::decline(reason.as_str())
    }

    /// Declined with `reason`: a rule's spelling or a ride-code check's code.
    fn decline(reason: &'static str) -> Verdict {
        Verdict {
            decision: Decision::Decline,
            reason: Some(reason),
            journey_id: None,
            fare: None,
            charge: None,
            payment: None,
        }
    }

    /// An offline tap its gate admitted that no journey holds yet (re-paired later).
    fn admitted() -> Verdict {
        Verdict {
            decision: Decision::Approve,
            reason: None,
            journey_id: None,
            fare: None,
            charge: None,
            payment: None,
        }
    }

    fn approve(journey_id: i64) -> Verdict {
        Verdict {
            decision: Decision::Approve,
            reason: None,
            journey_id: Some(journey_id),
            fare: None,
            charge: None,
            payment: None,
        }
    }
}

/// Where a tap stands while its wave is judged.
enum Step {
    /// A stored answer, sent again.
    Repeat(TapAnswer),
    /// Decided; `consumed` is the code use to give back if it was taken.
    Decided {
        verdict: Verdict,
        consumed: Option<CodeUse>,
    },
    /// Verified and on a known network: the replay and journey rules are next.
    Candidate { network: Arc<OperatorNetwork> },
}

/// A journey the wave closes, with what the daily cap needs.
struct Closing {
    slot: usize,
    network: Arc<OperatorNetwork>,
    open: JourneyRow,
    fare: Money,
    close_reason: rules::CloseReason,
    /// Whether this tap is the journey's exit (else the journey closes as incomplete).
    at_exit: bool,
    business_day: String,
    charge: Money,
}

/// Judges one wave inside the group's transaction: each rule is one statement for all its taps,
/// and when the transaction is pipelined the wave's reads are one round trip and its writes
/// one deferred statement.
async fn judge_wave(
    tx: &mut WaveTx,
    networks: &Networks,
    rules: &Rules,
    slots: &[Slot<'_>],
    (known, changes, on_known): Knowing<'_, '_>,
) -> Result<WaveOutcome, sqlx::Error> {
    // The checks that need no database: a refused code, an unknown network, a product the
    // code does not allow, an unknown station.
    let keys: Vec<TapKey> = slots
        .iter()
        .map(|s| TapKey {
            terminal_id: s.terminal.terminal_id.clone(),
            sequence: s.tap.request.sequence as i64,
        })
        .collect();
    let decided = |verdict| Step::Decided {
        verdict,
        consumed: None,
    };
    let mut steps: Vec<Step> = slots
        .iter()
        .map(|slot| match &slot.tap.verdict {
            Err(reason) => decided(Verdict::decline(reason.code())),
            Ok(code) => match networks.get(&slot.terminal.operator_id) {
                None => decided(Verdict::refuse(TapDecline::NetworkNotConfigured)),
                Some(network) => {
                    match rules::admissible(&network, code.products, &slot.terminal.location_id) {
                        Err(reason) => decided(Verdict::refuse(reason)),
                        Ok(()) => Step::Candidate { network },
                    }
                }
            },
        })
        .collect();
    let candidates: Vec<usize> = (0..slots.len())
        .filter(|&i| matches!(steps[i], Step::Candidate { .. }))
        .collect();
    let uses: Vec<CodeUse> = candidates.iter().map(|&i| code_use(&slots[i])).collect();
    let rider_modes: Vec<(i64, Mode)> = candidates
        .iter()
        .map(|&i| (verified(&slots[i]).rider_id, network_of(&steps[i]).mode()))
        .collect();
    let riders: Vec<RiderMode> = rider_modes
        .iter()
        .map(|&(rider_id, mode)| RiderMode {
            rider_id,
            mode: mode.as_str(),
        })
        .collect();

    // The reads: stored answers, code uses (the replay rule: each code is consumed once per
    // direction; a repeat consumes nothing), open journeys. On what the writer knows: no tap
    // stored yet, every code unused (the writes check both), the journeys it knows open.
    let claims = if on_known { uses.clone() } else { Vec::new() };
    let reads = if on_known {
        let mut open_journeys = Vec::new();
        for (&i, &key) in candidates.iter().zip(&rider_modes) {
            match known.open_journey(changes, key) {
                OpenJourney::Open(journey) => open_journeys.push(journey.clone()),
                OpenJourney::None => {}
                // Taken to have none: opening one meets the constraint if that is wrong.
                OpenJourney::Unknown if slots[i].tap.request.direction == Direction::Entry => {}
                OpenJourney::Unknown => return Ok(WaveOutcome::Unknown("unknown_exit")),
            }
        }
        Reads {
            existing: HashMap::new(),
            first_use: vec![true; uses.len()],
            open_journeys,
        }
    } else {
        let reads = tx.reads(&keys, &uses, &riders).await?;
        for &(rider_id, mode) in &rider_modes {
            let open = reads
                .open_journeys
                .iter()
                .find(|j| j.rider_id == rider_id && j.mode == mode.as_str());
            changes.set_open((rider_id, mode), open.cloned());
        }
        reads
    };

    // Repeats: a key already stored gets its stored answer (or a conflict if the request differs).
    for ((slot, key), step) in slots.iter().zip(&keys).zip(steps.iter_mut()) {
        let Some(stored) = reads.existing.get(key) else {
            continue;
        };
        let tap = slot.tap;
        if stored.request_sha256 != tap.request_sha256 {
            return Ok(WaveOutcome::Rejected {
                job: slot.job,
                error: ApiError::IdempotencyConflict {
                    sequence: tap.request.sequence,
                },
            });
        }
        let answer: TapResponse = serde_json::from_slice(&stored.response).map_err(|e| {
            failure::corrupt(format_args!("stored tap answer is not valid JSON: {e}"))
        })?;
        *step = Step::Repeat(TapAnswer {
            body: stored.response.clone(),
            repeat: true,
            decision: answer.decision,
            reason: answer.reason,
            payment: None,
            repair: None,
        });
    }

    // Replay.
    let mut live = Vec::with_capacity(candidates.len());
    for ((&i, first), (code_use, rider)) in candidates
        .iter()
        .zip(reads.first_use)
        .zip(uses.into_iter().zip(riders))
    {
        if matches!(steps[i], Step::Repeat(_)) {
            continue;
        }
        if first {
            live.push((i, code_use, rider));
        } else {
            steps[i] = decided(Verdict::refuse(TapDecline::Replay));
        }
    }

    // Journeys: the entry and exit rules in memory.
    let mut open_by_rider: HashMap<(i64, &str), JourneyRow> = HashMap::new();
    for journey in reads.open_journeys {
        let mode = Mode::parse(&journey.mode).map_or("", Mode::as_str);
        open_by_rider.insert((journey.rider_id, mode), journey);
    }
    let mut opens: Vec<Open> = Vec::new();
    let mut closings: Vec<Closing> = Vec::new();
    // Offline facts: riders to re-pair, and facts no journey holds yet.
    let mut repairs: Vec<(i64, Mode, i64, Option<LooseFact>)> = Vec::new();
    let mut repair_of: HashMap<usize, (i64, Mode)> = HashMap::new();
    for (i, code_use, key) in live {
        let slot = &slots[i];
        let network = network_of(&steps[i]).clone();
        let code = verified(slot);
        let req = &slot.tap.request;
        let open = open_by_rider.remove(&(key.rider_id, key.mode));
        let tap = rules::TapFacts {
            operator_id: &slot.terminal.operator_id,
            location_id: &slot.terminal.location_id,
            direction: req.direction,
            scanned_at_ms: req.scanned_at_ms as i64,
            vehicle_class: req.vehicle_class,
        };
        let open_facts = open.as_ref().map(|o| rules::OpenFacts {
            operator_id: &o.operator_id,
            entry_location_id: o.entry_location_id.as_deref().unwrap_or_default(),
            entry_at_ms: o.entry_at_ms,
        });
        let open_network = open.as_ref().map(|o| networks.get(&o.operator_id));
        let judged = rules::judge(
            &rules.journeys,
            &network,
            &tap,
            open_facts
                .as_ref()
                .zip(open_network.as_ref().map(|n| n.as_deref())),
        );
        let closing = |open: JourneyRow, priced: rules::Priced, at_exit: bool| Closing {
            slot: i,
            network: networks
                .get(&open.operator_id)
                .unwrap_or_else(|| network.clone()),
            charge: priced.fare,
            fare: priced.fare,
            business_day: priced.business_day,
            close_reason: priced.close_reason,
            open,
            at_exit,
        };
        let approves = matches!(
            judged,
            rules::Judgement::Enter { .. } | rules::Judgement::Exit(_)
        );
        // On what the writer knows, only what the writes can check: an entry opening the
        // rider's only journey, an exit closing the journey known open.
        let checked = matches!(
            (&judged, &open),
            (rules::Judgement::Enter { close_stale: None }, None)
                | (rules::Judgement::Exit(_), Some(_))
        );
        if on_known && !checked {
            return Ok(WaveOutcome::Unknown("unknown_rule"));
        }
        let verdict = match judged {
            rules::Judgement::Enter { close_stale } => {
                if let (Some(open), Some(priced)) = (open, close_stale) {
                    closings.push(closing(open, priced, false));
                }
                let journey_id = crate::random_id();
                opens.push(Open {
                    journey_id,
                    rider_id: code.rider_id,
                    credential_id: code.credential_id,
                    operator_id: slot.terminal.operator_id.clone(),
                    mode: network.mode().as_str(),
                    entry_terminal_id: slot.terminal.terminal_id.clone(),
                    entry_sequence: req.sequence as i64,
                    entry_location_id: slot.terminal.location_id.clone(),
                    entry_at_ms: req.scanned_at_ms as i64,
                });
                Verdict::approve(journey_id)
            }
            rules::Judgement::Exit(priced) => {
                let open = open.expect("an exit is approved only with an open journey");
                closings.push(closing(open, priced, true));
                // Completed below, once the daily cap has priced the charge.
                Verdict::refuse(TapDecline::NoFare)
            }
            rules::Judgement::Decline {
                reason,
                close_stale,
            } => {
                if let (Some(open), Some(priced)) = (open, close_stale) {
                    closings.push(closing(open, priced, false));
                }
                // An offline gate let the rider through; a live exit gate does too, rather than
                // trap a rider whose entry is still in another gate's buffer (settled later:
                // paired when the entry arrives, else priced by policy). A live entry stays
                // refused (pass-back).
                if rules::admits(reason, req.direction, slot.offline) {
                    repair_of.insert(i, (code.rider_id, network.mode()));
                    repairs.push((
                        code.rider_id,
                        network.mode(),
                        tap.scanned_at_ms,
                        Some(LooseFact {
                            terminal_id: slot.terminal.terminal_id.clone(),
                            sequence: req.sequence as i64,
                            rider_id: code.rider_id,
                            credential_id: code.credential_id,
                            mode: network.mode(),
                            operator_id: slot.terminal.operator_id.clone(),
                            location_id: slot.terminal.location_id.clone(),
                            direction: req.direction,
                            scanned_at_ms: tap.scanned_at_ms,
                            vehicle_class: req.vehicle_class,
                        }),
                    ));
                    Verdict::admitted()
                } else {
                    Verdict::refuse(reason)
                }
            }
        };
        if slot.offline && approves {
            repair_of.insert(i, (code.rider_id, network.mode()));
            // Judged in arrival order: a later-scanned tap may already be stored.
            repairs.push((code.rider_id, network.mode(), tap.scanned_at_ms, None));
        }
        steps[i] = Step::Decided {
            verdict,
            consumed: Some(code_use),
        };
    }

    // The daily cap, order-independent: the rider's day total of fares is one row, and each
    // journey is charged `min(cap, total after) − min(cap, total before)`. A rider closes at
    // most one journey per wave, so the wave's rows are distinct.
    let capped: Vec<usize> = (0..closings.len())
        .filter(|&c| closings[c].network.daily_cap().is_some())
        .collect();
    let mut day_fares: Vec<DayFare> = capped
        .iter()
        .map(|&c| DayFare {
            rider_id: closings[c].open.rider_id,
            operator_id: closings[c].network.operator_id().to_string(),
            business_day: closings[c].business_day.clone(),
            fare_minor: closings[c].fare.to_minor(),
            before_minor: None,
        })
        .collect();
    let day_key = |f: &DayFare| (f.rider_id, f.operator_id.clone(), f.business_day.clone());
    let befores = if on_known {
        // A day the writer does not know is taken to have no row yet (the write checks).
        day_fares
            .iter_mut()
            .map(|f| {
                f.before_minor = known.day_total(changes, &day_key(f));
                f.before_minor.unwrap_or(0)
            })
            .collect()
    } else {
        sets::add_to_rider_days(tx.conn().await?, &day_fares).await?
    };
    for (f, before) in day_fares.iter().zip(&befores) {
        changes.set_day_total(day_key(f), before + f.fare_minor);
    }
    for (&c, before) in capped.iter().zip(befores) {
        let closing = &mut closings[c];
        closing.charge = closing.network.capped_charge(before, closing.fare);
    }

    // An entry closing its rider's stale journey must close before it opens: rule by rule.
    let combine = tx.is_piped() && closings.iter().all(|c| c.at_exit) && repairs.is_empty();
    if on_known && !combine {
        return Ok(WaveOutcome::Unknown("unknown_write"));
    }

    // Write the journeys: closes first (an entry may close its rider's stale journey before
    // opening the new one, and there is one open journey per rider and mode).
    let now_ms = rules.clock.now_ms();
    let closes: Vec<Close> = closings
        .iter()
        .map(|c| {
            let req = &slots[c.slot].tap.request;
            let terminal = slots[c.slot].terminal;
            Close {
                journey_id: c.open.journey_id,
                entry_terminal_id: c.open.entry_terminal_id.clone(),
                entry_sequence: c.open.entry_sequence,
                exit_terminal_id: c.at_exit.then(|| terminal.terminal_id.clone()),
                exit_sequence: c.at_exit.then_some(req.sequence as i64),
                exit_location_id: c.at_exit.then(|| terminal.location_id.clone()),
                exit_at_ms: c.at_exit.then_some(req.scanned_at_ms as i64),
                vehicle_class: if c.at_exit {
                    req.vehicle_class.map(|v| v.as_str())
                } else {
                    None
                },
                close_reason: c.close_reason.as_str(),
                fare_minor: c.fare.to_minor(),
                charge_minor: c.charge.to_minor(),
                currency: c.fare.currency().code(),
                business_day: c.business_day.clone(),
                closed_at_ms: now_ms,
            }
        })
        .collect();
    if !combine {
        if sets::close_journeys(tx.conn().await?, &closes).await? != closes.len() {
            // Closed meanwhile by the sweeper or another node.
            return Ok(WaveOutcome::Raced);
        }
        if sets::open(tx.conn().await?, &opens).await? != opens.len() {
            // Another node opened a journey for one of these riders after our read.
            return Ok(WaveOutcome::Raced);
        }
    }

    // Charges: every closed journey with something to pay gets one (the outbox of charging).
    let charged: Vec<usize> = (0..closings.len())
        .filter(|&c| closings[c].charge.is_positive())
        .collect();
    let new_charges: Vec<JourneyCharge> = charged
        .iter()
        .map(|&c| {
            let closing = &closings[c];
            let slot = &slots[closing.slot];
            let pays_now =
                closing.at_exit && slot.tap.pays_at_exit && closing.network.mode() == Mode::Toll;
            JourneyCharge {
                charge_id: crate::random_id(),
                kind: closing.network.mode().charge_kind(),
                operator_id: closing.open.operator_id.clone(),
                rider_id: closing.open.rider_id,
                journey_id: closing.open.journey_id,
                amount_minor: closing.charge.to_minor(),
                currency: closing.charge.currency().code(),
                business_day: closing.business_day.clone(),
                status: if pays_now {
                    ChargeStatus::Paying
                } else {
                    ChargeStatus::Pending
                },
                next_attempt_at_ms: now_ms,
                lease_until_ms: pays_now.then_some(now_ms + rules.payment_lease_ms),
                terminal_id: closing.at_exit.then(|| slot.terminal.terminal_id.clone()),
                terminal_sequence: closing.at_exit.then_some(slot.tap.request.sequence as i64),
                now_ms,
                out_trade_no: String::new(),
            }
            .with_trade_no()
        })
        .collect();
    let inserted = if combine {
        // Checked with the combined write below.
        vec![true; new_charges.len()]
    } else {
        sets::insert_charges(tx.conn().await?, &new_charges).await?
    };
    // Per closing: the charge id (None: the journey already has a live charge) and whether
    // the charge is paid on the spot.
    let mut charge_ids: HashMap<usize, (Option<i64>, bool)> = HashMap::new();
    for ((&c, new_charge), inserted) in charged.iter().zip(&new_charges).zip(inserted) {
        let id = if inserted || !closings[c].at_exit {
            Some(new_charge.charge_id)
        } else {
            // A toll journey whose pay was cancelled, exited again: a new attempt.
            charges::restart_journey_charge(tx.conn().await?, &new_charge.as_new_charge()).await?
        };
        charge_ids.insert(c, (id, new_charge.status == ChargeStatus::Paying));
    }

    // The exits' verdicts, now that fares and charges are known.
    for (c, closing) in closings.iter().enumerate() {
        if !closing.at_exit {
            continue;
        }
        let Step::Decided { verdict, .. } = &mut steps[closing.slot] else {
            continue;
        };
        *verdict = Verdict {
            decision: Decision::Approve,
            reason: None,
            journey_id: Some(closing.open.journey_id),
            fare: Some(closing.fare),
            charge: Some(closing.charge),
            payment: None,
        };
        match charge_ids.get(&c) {
            None | Some((Some(_), false)) => {}
            Some((None, _)) => {
                // The journey already has a live charge: never charge it twice.
                tracing::error!(
                    journey_id = closing.open.journey_id,
                    "journey already charged"
                );
                *verdict = Verdict::refuse(TapDecline::AlreadyCharged);
            }
            Some((Some(charge_id), true)) => {
                // The answer stays provisional until the pay settles; a repeat meanwhile is
                // told to wait, and the final answer replaces this one (see charging::toll).
                verdict.decision = Decision::Decline;
                verdict.reason = Some(PAYMENT_PENDING);
                verdict.payment = Some(PendingPayment {
                    charge_id: *charge_id,
                    journey_id: closing.open.journey_id,
                    fare: closing.fare,
                    charge: closing.charge,
                });
            }
        }
    }

    // Declined taps give their code back; every judged tap is recorded with its answer.
    let mut released = Vec::new();
    for step in steps.iter_mut() {
        if let Step::Decided { verdict, consumed } = step {
            if verdict.decision == Decision::Decline {
                released.extend(consumed.take());
            }
        }
    }
    if !combine {
        sets::release_codes(tx.conn().await?, &released).await?;
        for (rider_id, mode, scanned_at_ms, loose) in &repairs {
            crate::repair::record(
                tx.conn().await?,
                loose.as_ref(),
                *rider_id,
                *mode,
                *scanned_at_ms,
                now_ms,
            )
            .await?;
        }
    }
    let mut records = Vec::with_capacity(slots.len());
    let mut answers = Vec::with_capacity(slots.len());
    for (n, (slot, step)) in slots.iter().zip(steps).enumerate() {
        let verdict = match step {
            Step::Repeat(answer) => {
                answers.push(answer);
                continue;
            }
            Step::Decided { verdict, .. } => verdict,
            Step::Candidate { .. } => unreachable!("every candidate is decided"),
        };
        let req = &slot.tap.request;
        let response = TapResponse {
            sequence: req.sequence,
            decision: verdict.decision,
            reason: verdict.reason.map(str::to_string),
            journey_id: verdict.journey_id.map(|id| id.to_string()),
            fare: verdict.fare,
            charge: verdict.charge,
        };
        let body = serde_json::to_string(&response).map_err(failure::corrupt)?;
        let code = slot.tap.verdict.as_ref().ok();
        records.push(TapRecord {
            terminal_id: slot.terminal.terminal_id.clone(),
            sequence: req.sequence as i64,
            request_sha256: slot.tap.request_sha256,
            direction: req.direction.as_str(),
            scanned_at_ms: req.scanned_at_ms as i64,
            received_at_ms: slot.tap.received_at_ms,
            code_fingerprint: code.map(|c| c.fingerprint),
            rider_id: code.map(|c| c.rider_id),
            credential_id: code.map(|c| c.credential_id),
            decision: decision_str(verdict.decision),
            reason: response.reason.clone(),
            journey_id: verdict.journey_id,
            response: body.clone(),
        });
        answers.push(TapAnswer {
            body: body.into_bytes(),
            repeat: false,
            decision: verdict.decision,
            reason: response.reason,
            payment: verdict.payment,
            repair: repair_of.get(&n).copied(),
        });
    }
    // What the writer may know after this wave: closed journeys, new ones, and nothing of
    // riders a re-pairing is about to rewrite.
    // (A closing's network is its journey's, found under the tap's mode.)
    for closing in &closings {
        changes.set_open((closing.open.rider_id, closing.network.mode()), None);
    }
    for open in &opens {
        changes.set_open(
            (
                open.rider_id,
                Mode::parse(open.mode).expect("a mode's own spelling"),
            ),
            Some(open.as_journey_row()),
        );
    }
    for (rider_id, ..) in &repairs {
        changes.forget(*rider_id);
    }
    if on_known {
        // Sent with the COMMIT: the group's one round trip.
        tx.defer_write(sets::assumed_writes_sql(&claims, &day_fares)?);
    }
    if combine {
        // Sent with the next round trip; a race, or a journey that already had a charge, fails
        // it with `WAVE_RACED` and the group is judged again rule by rule.
        tx.defer_write(sets::write_wave_sql(
            &closes,
            &opens,
            &new_charges,
            &released,
            &records,
        )?);
    } else if sets::insert_taps(tx.conn().await?, &records).await? != records.len() {
        // The same (terminal, sequence) was judged and committed by another writer meanwhile;
        // judged again, it is a repeat.
        return Ok(WaveOutcome::Raced);
    }
    Ok(WaveOutcome::Judged(answers))
}

/// The riders a job's answers queued for re-pairing.
fn to_repair(answers: &[TapAnswer]) -> Vec<(i64, Mode)> {
    answers.iter().filter_map(|a| a.repair).collect()
}

fn verified<'a>(slot: &Slot<'a>) -> &'a VerifiedCode {
    slot.tap
        .verdict
        .as_ref()
        .expect("only verified taps reach the journey rules")
}

fn network_of(step: &Step) -> &Arc<OperatorNetwork> {
    match step {
        Step::Candidate { network, .. } => network,
        _ => unreachable!("only candidates have a network here"),
    }
}

fn code_use(slot: &Slot<'_>) -> CodeUse {
    CodeUse {
        fingerprint: verified(slot).fingerprint,
        direction: slot.tap.request.direction.as_str(),
        terminal_id: slot.terminal.terminal_id.clone(),
        sequence: slot.tap.request.sequence as i64,
    }
}

pub fn decision_str(decision: Decision) -> &'static str {
    match decision {
        Decision::Approve => "approve",
        Decision::Decline => "decline",
    }
}

/// Closes a journey that never saw its exit, at the network's maximum fare.
pub async fn close_incomplete(
    tx: &mut Tx<'_>,
    network: &OperatorNetwork,
    open: &JourneyRow,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let priced = rules::incomplete(
        network,
        &rules::OpenFacts {
            operator_id: &open.operator_id,
            entry_location_id: open.entry_location_id.as_deref().unwrap_or_default(),
            entry_at_ms: open.entry_at_ms,
        },
    );
    let (fare, business_day) = (priced.fare, priced.business_day);
    let charge = charge_after_cap(tx, network, open.rider_id, &business_day, &fare).await?;
    let closed = sql::close_journey(
        tx,
        &JourneyClose {
            journey_id: open.journey_id,
            exit_terminal_id: None,
            exit_sequence: None,
            exit_location_id: None,
            exit_at_ms: None,
            vehicle_class: None,
            close_reason: priced.close_reason.as_str(),
            fare_minor: fare.to_minor(),
            charge_minor: charge.to_minor(),
            currency: fare.currency().code(),
            business_day: &business_day,
            closed_at_ms: now_ms,
        },
    )
    .await?;
    if closed && charge.is_positive() {
        // Post-paid at the maximum fare, through the same outbox as a normal exit.
        charges::insert_charge(
            tx,
            &NewCharge {
                charge_id: crate::random_id(),
                kind: network.mode().charge_kind(),
                operator_id: &open.operator_id,
                rider_id: Some(open.rider_id),
                journey_id: Some(open.journey_id),
                amount_minor: charge.to_minor(),
                currency: charge.currency().code(),
                business_day: &business_day,
                status: ChargeStatus::Pending,
                next_attempt_at_ms: now_ms,
                lease_until_ms: None,
                terminal_id: None,
                terminal_sequence: None,
                now_ms,
            },
        )
        .await?;
    }
    Ok(closed)
}

/// The daily cap, order-independent: the rider's day total of fares is kept in one row, and each
/// journey is charged `min(cap, total after) − min(cap, total before)`. However late or out of
/// order offline taps arrive, the day's charges add up to exactly `min(cap, sum of fares)`.
async fn charge_after_cap(
    tx: &mut Tx<'_>,
    network: &OperatorNetwork,
    rider_id: i64,
    business_day: &str,
    fare: &Money,
) -> Result<Money, sqlx::Error> {
    if network.daily_cap().is_none() {
        return Ok(*fare);
    }
    let before = sql::add_to_rider_day(
        tx,
        rider_id,
        network.operator_id(),
        business_day,
        fare.to_minor(),
    )
    .await?;
    Ok(network.capped_charge(before, *fare))
}

/// Verifies a tap's ride code as of its scan time (signatures, validity, freshness, deny list).
pub fn verify_code(
    keys: &crate::registry::KeyRing,
    deny: &turnpike_wire::ridecode::DenyList,
    ride_code: &str,
    scanned_at_ms: u64,
) -> Result<VerifiedCode, RejectReason> {
    let verified = keys
        .verifier
        .verify_base64url(ride_code, scanned_at_ms, deny)?;
    let body = verified.credential_body();
    Ok(VerifiedCode {
        fingerprint: verified.fingerprint(),
        rider_id: body.rider_id as i64,
        credential_id: body.credential_id as i64,
        products: body.products.bits(),
    })
}

/// A digest of the tap's meaning (not its bytes), so a byte-different but equal repeat (other key
/// order, other whitespace) is still the same request.
pub fn request_sha256(req: &TapRequest) -> [u8; 32] {
    let canonical = serde_json::to_vec(req).expect("a TapRequest always serializes");
    crate::api::sha256(&canonical)
}
