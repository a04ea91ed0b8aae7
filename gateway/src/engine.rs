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

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, Mutex};
use turnpike_wire::api::{Decision, Direction, TapRequest, TapResponse};
use turnpike_wire::ridecode::RejectReason;
use turnpike_wire::Money;

use crate::error::ApiError;
use crate::network::{Mode, Networks, OperatorNetwork};
use crate::store::charging::{self as charges, NewCharge};
use crate::store::taps::{self as sql, Claim, JourneyClose, NewJourney, NewTap, TapOutcomeRow};
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
pub const PAYMENT_PENDING: &str = "payment_pending";

#[derive(Clone)]
pub struct Rules {
    /// How long a toll exit's 'paying' charge is reserved for the request that pays it.
    pub payment_lease_ms: i64,
    pub incomplete_after_ms: i64,
    pub same_station_window_ms: i64,
    pub commit_batch_taps_max: usize,
}

#[derive(Clone)]
pub struct TapEngine {
    queue: mpsc::Sender<Job>,
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
        let (tx, rx) = mpsc::channel::<Job>(queue_requests_max);
        let rx = Arc::new(Mutex::new(rx));
        let writers = if store.backend() == crate::store::Backend::Sqlite {
            1
        } else {
            writers
        };
        for _ in 0..writers {
            let writer = Writer {
                store: store.clone(),
                networks: networks.clone(),
                rules: rules.clone(),
                rx: rx.clone(),
            };
            tokio::spawn(writer.run());
        }
        TapEngine { queue: tx }
    }

    /// Judges and durably records the taps of one terminal, in order.
    pub async fn submit(
        &self,
        terminal: TerminalRow,
        taps: Vec<PreparedTap>,
    ) -> Result<Vec<TapAnswer>, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job {
                terminal,
                taps,
                reply,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ApiError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => {
                    ApiError::Internal(anyhow::anyhow!("tap writers stopped"))
                }
            })?;
        answer
            .await
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("tap writer dropped a job")))?
    }
}

struct Writer {
    store: Store,
    networks: Arc<Networks>,
    rules: Rules,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
}

impl Writer {
    async fn run(self) {
        loop {
            let mut jobs = Vec::new();
            {
                let mut rx = self.rx.lock().await;
                let Some(first) = rx.recv().await else { return };
                let mut taps = first.taps.len();
                jobs.push(first);
                while taps < self.rules.commit_batch_taps_max {
                    match rx.try_recv() {
                        Ok(job) => {
                            taps += job.taps.len();
                            jobs.push(job);
                        }
                        Err(_) => break,
                    }
                }
            }
            self.commit_group(jobs).await;
        }
    }

    /// Judges a group of jobs in one transaction. A job whose judgement fails (an idempotency
    /// conflict) is undone by a savepoint-free re-run: the group is retried without it.
    async fn commit_group(&self, mut jobs: Vec<Job>) {
        let taps: usize = jobs.iter().map(|j| j.taps.len()).sum();
        metrics::histogram!("gateway_db_commit_batch_taps").record(taps as f64);
        let mut retries = 0;
        loop {
            let started = Instant::now();
            match self.try_group(&jobs).await {
                Ok(GroupResult::Committed(answers)) => {
                    metrics::histogram!("gateway_db_commit_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                    for (job, answer) in jobs.into_iter().zip(answers) {
                        let _ = job.reply.send(Ok(answer));
                    }
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
                Err(e) if retries < TRANSIENT_RETRIES_MAX && is_transient(&e) => {
                    // Two writers' groups deadlocked (or serialization failed) on PostgreSQL:
                    // the database rolled one back; judging it again is safe and usually succeeds.
                    retries += 1;
                    metrics::counter!("gateway_db_commit_retries_total").increment(1);
                    tracing::warn!(error = %e, taps, retries, "tap group hit a transient conflict; retrying");
                }
                Err(e) => {
                    tracing::error!(error = %e, taps, "tap group failed; nothing committed");
                    metrics::counter!("gateway_db_commit_failures_total").increment(1);
                    for job in jobs {
                        let _ = job.reply.send(Err(ApiError::Storage(clone_sqlx_error(&e))));
                    }
                    return;
                }
            }
        }
    }

    async fn try_group(&self, jobs: &[Job]) -> Result<GroupResult, sqlx::Error> {
        let mut tx = self.store.begin().await?;
        let mut all = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.iter().enumerate() {
            let mut answers = Vec::with_capacity(job.taps.len());
            for tap in &job.taps {
                match judge(&mut tx, &self.networks, &self.rules, &job.terminal, tap).await? {
                    Ok(answer) => answers.push(answer),
                    Err(error) => {
                        tx.rollback().await?;
                        return Ok(GroupResult::Rejected { index, error });
                    }
                }
            }
            all.push(answers);
        }
        tx.commit().await?;
        Ok(GroupResult::Committed(all))
    }
}

enum GroupResult {
    Committed(Vec<Vec<TapAnswer>>),
    Rejected { index: usize, error: ApiError },
}

/// How often a group is judged again after a deadlock or serialization failure before its taps
/// are answered 503 (the terminals then retry idempotently).
const TRANSIENT_RETRIES_MAX: u32 = 2;

/// PostgreSQL's deadlock_detected (40P01) and serialization_failure (40001).
fn is_transient(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

fn clone_sqlx_error(e: &sqlx::Error) -> sqlx::Error {
    sqlx::Error::Protocol(e.to_string())
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

/// Judges one tap inside the group's transaction. `Ok(Err(_))` is a request error (idempotency
/// conflict) that must leave no trace; `Err(_)` is a database failure.
async fn judge(
    tx: &mut Tx<'_>,
    networks: &Networks,
    rules: &Rules,
    terminal: &TerminalRow,
    tap: &PreparedTap,
) -> Result<Result<TapAnswer, ApiError>, sqlx::Error> {
    let req = &tap.request;
    let sequence = req.sequence as i64;
    let claim = sql::claim(
        tx,
        &NewTap {
            terminal_id: &terminal.terminal_id,
            sequence,
            request_sha256: &tap.request_sha256,
            direction: req.direction.as_str(),
            scanned_at_ms: req.scanned_at_ms as i64,
            received_at_ms: tap.received_at_ms,
        },
    )
    .await?;
    if let Claim::Existing {
        request_sha256,
        response,
    } = claim
    {
        if request_sha256 != tap.request_sha256 {
            return Ok(Err(ApiError::IdempotencyConflict {
                sequence: req.sequence,
            }));
        }
        let stored: TapResponse = serde_json::from_slice(&response).map_err(|e| {
            sqlx::Error::Protocol(format!("stored tap answer is not valid JSON: {e}"))
        })?;
        return Ok(Ok(TapAnswer {
            body: response,
            repeat: true,
            decision: stored.decision,
            reason: stored.reason,
            payment: None,
        }));
    }

    let verdict = match &tap.verdict {
        Err(reason) => Verdict::decline(reason.code()),
        Ok(code) => match networks.get(&terminal.operator_id) {
            None => Verdict::decline("network_not_configured"),
            Some(network) => apply_rules(tx, &network, rules, terminal, tap, code).await?,
        },
    };

    let response = TapResponse {
        sequence: req.sequence,
        decision: verdict.decision,
        reason: verdict.reason.map(str::to_string),
        journey_id: verdict.journey_id.map(|id| id.to_string()),
        fare: verdict.fare,
        charge: verdict.charge,
    };
    let body = serde_json::to_vec(&response).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let verified = tap.verdict.as_ref().ok();
    sql::record_outcome(
        tx,
        &TapOutcomeRow {
            terminal_id: &terminal.terminal_id,
            sequence,
            code_fingerprint: verified.map(|c| c.fingerprint.as_slice()),
            rider_id: verified.map(|c| c.rider_id),
            credential_id: verified.map(|c| c.credential_id),
            decision: decision_str(verdict.decision),
            reason: verdict.reason,
            journey_id: verdict.journey_id,
            response: &body,
        },
    )
    .await?;
    Ok(Ok(TapAnswer {
        body,
        repeat: false,
        decision: verdict.decision,
        reason: response.reason,
        payment: verdict.payment,
    }))
}

pub fn decision_str(decision: Decision) -> &'static str {
    match decision {
        Decision::Approve => "approve",
        Decision::Decline => "decline",
    }
}

async fn apply_rules(
    tx: &mut Tx<'_>,
    network: &OperatorNetwork,
    rules: &Rules,
    terminal: &TerminalRow,
    tap: &PreparedTap,
    code: &VerifiedCode,
) -> Result<Verdict, sqlx::Error> {
    let req = &tap.request;
    let mode = network.mode();
    if code.products & mode.product_bit() == 0 {
        return Ok(Verdict::decline("product_not_allowed"));
    }
    if !network.has_location(&terminal.location_id) {
        return Ok(Verdict::decline("unknown_station"));
    }
    let direction = req.direction.as_str();
    if !sql::consume_code(
        tx,
        &code.fingerprint,
        direction,
        &terminal.terminal_id,
        req.sequence as i64,
    )
    .await?
    {
        return Ok(Verdict::decline("replay"));
    }
    let scanned_at_ms = req.scanned_at_ms as i64;
    let open = sql::open_journey(tx, code.rider_id, mode.as_str()).await?;
    let verdict = match req.direction {
        Direction::Entry => {
            if let Some(open) = open {
                if scanned_at_ms - open.entry_at_ms > rules.incomplete_after_ms {
                    // The old entry has timed out: close it at the maximum fare, as the sweeper
                    // would have, and let the rider in.
                    close_incomplete(tx, network, &open).await?;
                } else {
                    sql::release_code(tx, &code.fingerprint, direction).await?;
                    return Ok(Verdict::decline("pass_back"));
                }
            }
            let journey_id = crate::random_id();
            let opened = sql::insert_open_journey(
                tx,
                &NewJourney {
                    journey_id,
                    rider_id: code.rider_id,
                    credential_id: code.credential_id,
                    operator_id: &terminal.operator_id,
                    mode: mode.as_str(),
                    entry_terminal_id: &terminal.terminal_id,
                    entry_sequence: req.sequence as i64,
                    entry_location_id: &terminal.location_id,
                    entry_at_ms: scanned_at_ms,
                },
            )
            .await?;
            if opened {
                Verdict::approve(journey_id)
            } else {
                // Another node opened a journey for this rider between our read and our insert.
                Verdict::decline("pass_back")
            }
        }
        Direction::Exit => match open {
            None => Verdict::decline("no_entry"),
            Some(open) if open.operator_id != terminal.operator_id => {
                Verdict::decline("entry_on_other_network")
            }
            Some(open) if open.entry_at_ms > scanned_at_ms => Verdict::decline("no_entry"),
            Some(open) if scanned_at_ms - open.entry_at_ms > rules.incomplete_after_ms => {
                close_incomplete(tx, network, &open).await?;
                Verdict::decline("no_entry")
            }
            Some(open) => close_at_exit(tx, network, rules, terminal, tap, &open).await?,
        },
    };
    if verdict.decision == Decision::Decline {
        sql::release_code(tx, &code.fingerprint, direction).await?;
    }
    Ok(verdict)
}

async fn close_at_exit(
    tx: &mut Tx<'_>,
    network: &OperatorNetwork,
    rules: &Rules,
    terminal: &TerminalRow,
    tap: &PreparedTap,
    open: &JourneyRow,
) -> Result<Verdict, sqlx::Error> {
    let req = &tap.request;
    let scanned_at_ms = req.scanned_at_ms as i64;
    let same_station = open.entry_location_id == terminal.location_id;
    let priced = match network.mode() {
        Mode::Metro if same_station => {
            if scanned_at_ms - open.entry_at_ms <= rules.same_station_window_ms {
                Some((network.min_fare(), "same_station"))
            } else {
                // Out and back to the same station: the rider may have gone anywhere.
                Some((network.max_fare(), "exit"))
            }
        }
        Mode::Metro => network
            .metro_fare(&open.entry_location_id, &terminal.location_id)
            .map(|f| (f, "exit")),
        Mode::Toll => req
            .vehicle_class
            .and_then(|class| network.toll(&open.entry_location_id, &terminal.location_id, class))
            .map(|f| (f, "exit")),
    };
    let Some((fare, close_reason)) = priced else {
        // The pair (or the vehicle class) has no price in the fare data in force.
        return Ok(Verdict::decline("no_fare"));
    };
    let business_day = network.business_day(open.entry_at_ms);
    let charge = charge_after_cap(tx, network, open.rider_id, &business_day, &fare).await?;
    let closed = sql::close_journey(
        tx,
        &JourneyClose {
            journey_id: open.journey_id,
            exit_terminal_id: Some(&terminal.terminal_id),
            exit_sequence: Some(req.sequence as i64),
            exit_location_id: Some(&terminal.location_id),
            exit_at_ms: Some(scanned_at_ms),
            vehicle_class: req.vehicle_class.map(|c| c.as_str()),
            close_reason,
            fare_minor: fare.to_minor(),
            charge_minor: charge.to_minor(),
            currency: fare.currency().code(),
            business_day: &business_day,
            closed_at_ms: crate::now_ms(),
        },
    )
    .await?;
    if !closed {
        return Ok(Verdict::decline("no_entry"));
    }
    let mut verdict = Verdict {
        decision: Decision::Approve,
        reason: None,
        journey_id: Some(open.journey_id),
        fare: Some(fare),
        charge: Some(charge),
        payment: None,
    };
    if charge.is_positive() {
        let now_ms = crate::now_ms();
        let pays_now = tap.pays_at_exit && network.mode() == Mode::Toll;
        let new_charge = NewCharge {
            charge_id: crate::random_id(),
            kind: network.mode().as_str(),
            operator_id: &open.operator_id,
            rider_id: Some(open.rider_id),
            journey_id: Some(open.journey_id),
            amount_minor: charge.to_minor(),
            currency: charge.currency().code(),
            business_day: &business_day,
            status: if pays_now { "paying" } else { "pending" },
            next_attempt_at_ms: now_ms,
            lease_until_ms: pays_now.then_some(now_ms + rules.payment_lease_ms),
            terminal_id: Some(&terminal.terminal_id),
            terminal_sequence: Some(req.sequence as i64),
            now_ms,
        };
        let charge_id = if charges::insert_charge(tx, &new_charge).await? {
            new_charge.charge_id
        } else {
            match charges::restart_journey_charge(tx, &new_charge).await? {
                Some(id) => id,
                None => {
                    // The journey already has a live charge: never charge it twice.
                    tracing::error!(journey_id = open.journey_id, "journey already charged");
                    return Ok(Verdict::decline("already_charged"));
                }
            }
        };
        if pays_now {
            // The answer stays provisional until the pay settles; a repeat meanwhile is told
            // to wait, and the final answer replaces this one (see charging::toll).
            verdict.decision = Decision::Decline;
            verdict.reason = Some(PAYMENT_PENDING);
            verdict.payment = Some(PendingPayment {
                charge_id,
                journey_id: open.journey_id,
                fare,
                charge,
            });
        }
    }
    Ok(verdict)
}

/// Closes a journey that never saw its exit, at the network's maximum fare.
pub async fn close_incomplete(
    tx: &mut Tx<'_>,
    network: &OperatorNetwork,
    open: &JourneyRow,
) -> Result<bool, sqlx::Error> {
    let fare = network.incomplete_fare(&open.entry_location_id);
    let business_day = network.business_day(open.entry_at_ms);
    let charge = charge_after_cap(tx, network, open.rider_id, &business_day, &fare).await?;
    let now_ms = crate::now_ms();
    let closed = sql::close_journey(
        tx,
        &JourneyClose {
            journey_id: open.journey_id,
            exit_terminal_id: None,
            exit_sequence: None,
            exit_location_id: None,
            exit_at_ms: None,
            vehicle_class: None,
            close_reason: "incomplete",
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
                kind: network.mode().as_str(),
                operator_id: &open.operator_id,
                rider_id: Some(open.rider_id),
                journey_id: Some(open.journey_id),
                amount_minor: charge.to_minor(),
                currency: charge.currency().code(),
                business_day: &business_day,
                status: "pending",
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
    let Some(cap) = network.daily_cap() else {
        return Ok(*fare);
    };
    let fare_minor = fare.to_minor();
    let before = sql::add_to_rider_day(
        tx,
        rider_id,
        network.operator_id(),
        business_day,
        fare_minor,
    )
    .await?;
    let cap_minor = cap.to_minor();
    let charge = (before + fare_minor).min(cap_minor) - before.min(cap_minor);
    Ok(Money::from_minor(charge, fare.currency()))
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
