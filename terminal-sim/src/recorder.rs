//! What a run observed: latency in HDR histograms (overall and per second of the run), counts of
//! outcomes per class of tap, offline-buffer counts, and the gates' own verification times.
//!
//! Latency is measured from each request's *scheduled* time, not from when it was sent, so a
//! server (or a simulator) that falls behind shows up as latency instead of silently lowering
//! the offered rate (coordinated omission corrected).

use std::collections::{BTreeMap, BTreeSet};

use hdrhistogram::Histogram;
use serde::Serialize;
use turnpike_wire::api::{Decision, TapResponse};

use crate::tickets::{Purchase, TicketCounts};

/// Largest latency recorded exactly: one minute, in microseconds (larger values saturate).
const LATENCY_US_MAX: u64 = 60_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

/// One second of the run.
#[derive(Clone)]
pub struct Window {
    /// Latencies of requests scheduled in this second (µs).
    pub latency_us: Histogram<u64>,
    /// Requests scheduled in this second.
    pub offered: u64,
    /// Answers that arrived in this second.
    pub answered: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct OfflineCounts {
    /// Taps a gate admitted (or refused) offline and stored in its embedded buffer.
    pub buffered: u64,
    /// Of those, taps whose live request failed, answered 5xx or outlasted the gate's budget
    /// (the gate then decided offline; not counted as errors).
    pub after_live_failure: u64,
    /// Buffered taps sent in batches when the link returned.
    pub uploaded: u64,
    /// Uploaded taps the gateway approved.
    pub accepted: u64,
    /// Uploaded taps the gateway declined.
    pub declined: u64,
    /// Batches uploaded a second time whose answer was byte-identical (idempotency).
    pub reupload_identical: u64,
    pub reupload_different: u64,
}

pub struct Recorder {
    pub latency_us: Histogram<u64>,
    pub windows: Vec<Window>,
    /// How late the simulator itself dispatched requests (µs): its own share of the latency.
    pub dispatch_lag_us: Histogram<u64>,
    /// One offline verification of a ride code at a gate (ns).
    pub gate_verify_ns: Histogram<u64>,
    pub requests: u64,
    pub approved: u64,
    pub declined: u64,
    pub errors: u64,
    /// Class → outcome key → count.
    pub classes: BTreeMap<&'static str, BTreeMap<String, u64>>,
    pub gate_refused: u64,
    /// Codes the gate refused offline that the gateway judged differently.
    pub disagreements: u64,
    pub fares: BTreeSet<String>,
    pub offline: OfflineCounts,
    /// Status or error texts of the first few errors, for the report.
    pub error_samples: Vec<String>,
    /// Toll exits paid at the booth, from scheduled time to the final answer (µs): kept apart
    /// from `latency_us`, since they include the provider's round trips.
    pub toll_exit_latency_us: Histogram<u64>,
    pub paid: PaidCounts,
    /// Tickets bought at the machines (with the provider).
    pub tickets: TicketCounts,
    /// From a purchase's scheduled time to its order's answer (µs).
    pub ticket_order_us: Histogram<u64>,
    /// From the wallet's payment to the machine showing the ticket (µs).
    pub ticket_issue_us: Histogram<u64>,
}

/// What a run with the payment provider counted.
#[derive(Debug, Default, Clone, Serialize)]
pub struct PaidCounts {
    /// Toll exits that got a final answer (approve or decline) / none within the bound.
    pub toll_exits_final: u64,
    pub toll_exits_unfinished: u64,
    /// Toll exits a lane buffered offline (outage) instead of paying at the booth.
    pub toll_exits_buffered: u64,
    /// Toll exits answered `409 payment_in_progress` first, and how many repeats all exits took
    /// until their final answer.
    pub toll_exits_in_progress: u64,
    pub toll_exit_repeats: u64,
    /// A final answer asked for once more: byte-identical, or not.
    pub final_repeat_identical: u64,
    pub final_repeat_different: u64,
    /// Payment codes fetched from the sandbox before the clock started / during the run.
    pub codes_ahead: u64,
    pub codes_during_run: u64,
    /// What approved exits said was charged (minor units): metro (post-paid), toll (at the booth).
    pub metro_charged_minor: i64,
    pub toll_charged_minor: i64,
    /// What the answers to taps buffered offline and uploaded said was charged (post-paid).
    pub uploaded_charged_minor: i64,
    /// When the sandbox was degraded and restored (seconds from the start).
    pub degraded_from_s: Option<f64>,
    pub restored_at_s: Option<f64>,
}

/// What happened to one tap, as a key: `approve`, `decline <reason>`, `http <status> <code>`,
/// `error`.
pub fn outcome_key(status: u16, body: &[u8]) -> (String, Option<TapResponse>) {
    if status == 200 {
        if let Ok(r) = serde_json::from_slice::<TapResponse>(body) {
            let key = match r.decision {
                Decision::Approve => "approve".to_string(),
                Decision::Decline => {
                    format!("decline {}", r.reason.as_deref().unwrap_or("unknown"))
                }
            };
            return (key, Some(r));
        }
        return ("error unparsable answer".into(), None);
    }
    let code = serde_json::from_slice::<turnpike_wire::api::ErrorBody>(body)
        .map(|b| b.error.code)
        .unwrap_or_default();
    (format!("http {status} {code}"), None)
}

/// What an approving answer says the rider is charged (minor units): the charge after any daily
/// cap, or the fare; 0 for a decline or an answer without either (an entry).
pub fn charged_minor(response: &TapResponse) -> i64 {
    match response.decision {
        Decision::Approve => response
            .charge
            .or(response.fare)
            .map_or(0, |m| m.to_minor()),
        Decision::Decline => 0,
    }
}

impl Recorder {
    pub fn new(duration_s: f64) -> Recorder {
        let seconds = duration_s.ceil() as usize + 1;
        Recorder {
            latency_us: histogram(),
            windows: vec![
                Window {
                    latency_us: histogram(),
                    offered: 0,
                    answered: 0,
                };
                seconds
            ],
            dispatch_lag_us: histogram(),
            gate_verify_ns: Histogram::new_with_bounds(1, 10_000_000_000, 3)
                .expect("valid histogram bounds"),
            requests: 0,
            approved: 0,
            declined: 0,
            errors: 0,
            classes: BTreeMap::new(),
            gate_refused: 0,
            disagreements: 0,
            fares: BTreeSet::new(),
            offline: OfflineCounts::default(),
            error_samples: Vec::new(),
            toll_exit_latency_us: histogram(),
            paid: PaidCounts::default(),
            tickets: TicketCounts::default(),
            ticket_order_us: histogram(),
            ticket_issue_us: histogram(),
        }
    }

    fn window(&mut self, second: usize) -> &mut Window {
        let last = self.windows.len() - 1;
        &mut self.windows[second.min(last)]
    }

    pub fn offered(&mut self, scheduled_s: f64) {
        self.window(scheduled_s as usize).offered += 1;
    }

    /// A live request's answer (or failure), scheduled at `scheduled_s`, `latency_us` after it.
    pub fn answered(
        &mut self,
        class: &'static str,
        scheduled_s: f64,
        latency_us: u64,
        outcome: &str,
        response: Option<&TapResponse>,
    ) {
        self.requests += 1;
        self.latency_us.saturating_record(latency_us.max(1));
        self.window(scheduled_s as usize)
            .latency_us
            .saturating_record(latency_us.max(1));
        let done_s = scheduled_s + latency_us as f64 / 1e6;
        self.window(done_s as usize).answered += 1;
        self.count(class, outcome, response);
    }

    /// A toll exit paid at the booth: its final answer (or failure) `latency_us` after its
    /// scheduled time. Counted like any request, but its latency goes to its own histogram.
    pub fn answered_toll_exit(
        &mut self,
        class: &'static str,
        scheduled_s: f64,
        latency_us: u64,
        outcome: &str,
        response: Option<&TapResponse>,
    ) {
        self.requests += 1;
        self.toll_exit_latency_us
            .saturating_record(latency_us.max(1));
        let done_s = scheduled_s + latency_us as f64 / 1e6;
        self.window(done_s as usize).answered += 1;
        match response {
            Some(_) => self.paid.toll_exits_final += 1,
            None => self.paid.toll_exits_unfinished += 1,
        }
        self.count(class, outcome, response);
    }

    /// A ticket purchase at a machine, finished (or given up).
    pub fn purchased(&mut self, p: &Purchase) {
        self.tickets.add(p);
        if let Some(us) = p.order_us {
            self.ticket_order_us.saturating_record(us.max(1));
        }
        if let Some(us) = p.issue_us {
            self.ticket_issue_us.saturating_record(us.max(1));
        }
        if let Some(e) = &p.error {
            if self.error_samples.len() < 5 {
                self.error_samples.push(e.clone());
            }
        }
    }

    /// Counts an outcome for a class (live or uploaded).
    pub fn count(&mut self, class: &'static str, outcome: &str, response: Option<&TapResponse>) {
        match response.map(|r| r.decision) {
            Some(Decision::Approve) => self.approved += 1,
            Some(Decision::Decline) => self.declined += 1,
            // Plain load (`terminal-sim load`): any 2xx is a success.
            None if outcome.starts_with("http 2") => self.approved += 1,
            None if outcome.starts_with("http 4") => {}
            None => {
                self.errors += 1;
                if self.error_samples.len() < 5 {
                    self.error_samples.push(outcome.to_string());
                }
            }
        }
        if let Some(fare) = response.and_then(|r| r.fare.as_ref()) {
            self.fares.insert(fare.to_string());
        }
        let outcomes = self.classes.entry(class).or_default();
        match outcomes.get_mut(outcome) {
            Some(n) => *n += 1,
            None => {
                outcomes.insert(outcome.to_string(), 1);
            }
        }
    }
}
