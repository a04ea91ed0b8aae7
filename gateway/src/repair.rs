//! Re-pairing a rider's journeys when their taps arrive out of scan order.
//!
//! A gate that lost its link admits riders on its own verification and uploads the taps later
//! (`POST /v1/taps/batch`); another gate meanwhile may have judged the same rider live. Each
//! uploaded tap whose code verifies was admitted at its gate: a fact. The engine records such a
//! fact in a journey when the rules agree, or keeps it in `tap_facts` when they would have
//! refused it live (an exit whose entry is still in another gate's buffer), and queues the rider
//! in `rider_repairs`. [`repair`] then rebuilds the rider's journeys from the cut on (the
//! earliest late scan minus `journeys.incomplete_after_ms`) from all their facts in scan order
//! with [`rules::pair`], and writes the difference: journeys rewritten, made or voided; a
//! charge the provider has not seen repriced or cancelled; a captured one corrected by a refund
//! or a further deduction (`charges.corrects_journey_id`), each driven by the charging worker.
//! Every write checks that the row is as read, so a live tap committed meanwhile by another
//! writer or node makes the repair start over instead of being overwritten.

use std::collections::{HashMap, HashSet};

use turnpike_wire::api::{Direction, VehicleClass};
use turnpike_wire::Money;

use crate::network::{Mode, Networks, OperatorNetwork};
use crate::rules::{self, Fact, JourneyRules, Paired};
use crate::store::charging::{self as charges, ChargeStatus, NewCharge, RefundRow, RefundStatus};
use crate::store::failure::{self, Failure};
use crate::store::repairs::{self as sql, JourneyWrite};
use crate::store::{Conn, Store};

/// How a re-pairing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was queued for the rider.
    Nothing,
    /// The rider's journeys now equal the rules over their facts; `changed` journeys and
    /// `charges` charges were written.
    Repaired { changed: usize, charges: usize },
    /// A charge is with the provider right now (or a network is not in force): the rider stays
    /// queued and the sweeper tries again.
    Later,
}

/// Re-pairs a rider's journeys in `mode` if they are queued, as of `now_ms`. Retries a few times
/// when a concurrent writer changed a row it read.
pub async fn repair(
    store: &Store,
    networks: &Networks,
    rules: &JourneyRules,
    now_ms: i64,
    rider_id: i64,
    mode: Mode,
) -> Result<Outcome, sqlx::Error> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut tx = store.begin().await?;
        let result = try_repair(&mut tx, networks, rules, now_ms, rider_id, mode).await;
        let raced = match result {
            Ok(Ok(outcome)) => {
                match outcome {
                    Outcome::Repaired { .. } => {
                        tx.commit().await?;
                        metrics::counter!("gateway_repairs_total", "outcome" => "repaired")
                            .increment(1);
                    }
                    Outcome::Later => {
                        tx.rollback().await?;
                        later(store, rider_id, mode, now_ms).await?;
                    }
                    Outcome::Nothing => tx.rollback().await?,
                }
                return Ok(outcome);
            }
            Ok(Err(Raced)) => true,
            Err(e)
                if failure::unique_violation(&e) || failure::classify(&e) == Failure::Transient =>
            {
                true
            }
            Err(e) => return Err(e),
        };
        drop(tx);
        if raced && tries >= 4 {
            metrics::counter!("gateway_repairs_total", "outcome" => "raced").increment(1);
            later(store, rider_id, mode, now_ms).await?;
            return Ok(Outcome::Later);
        }
    }
}

/// How long a re-pairing that must wait (a charge with the provider) waits before the next try.
const LATER_MS: i64 = 2_000;

async fn later(store: &Store, rider_id: i64, mode: Mode, now_ms: i64) -> Result<(), sqlx::Error> {
    metrics::counter!("gateway_repairs_total", "outcome" => "later").increment(1);
    let mut tx = store.begin().await?;
    sql::postpone(&mut tx, rider_id, mode, now_ms + LATER_MS).await?;
    tx.commit().await
}

/// A row changed between the repair's read and its write.
struct Raced;

async fn try_repair(
    conn: &mut Conn,
    networks: &Networks,
    rules: &JourneyRules,
    now_ms: i64,
    rider_id: i64,
    mode: Mode,
) -> Result<Result<Outcome, Raced>, sqlx::Error> {
    let Some(from_ms) = sql::queued_from(conn, rider_id, mode).await? else {
        return Ok(Ok(Outcome::Nothing));
    };
    let cut_ms = from_ms - rules.incomplete_after_ms;
    let stored = sql::journeys_from(conn, rider_id, mode, cut_ms).await?;
    let loose = sql::loose_facts(conn, rider_id, mode).await?;

    // The facts: the stored journeys' taps and the loose ones, in scan order, each with the
    // credential that made it.
    let mut facts: Vec<(Fact, i64)> = Vec::new();
    let mut seen: HashSet<(String, i64)> = HashSet::new();
    for (j, _) in &stored {
        if let (Some(t), Some(s), Some(l)) =
            (&j.entry_terminal_id, j.entry_sequence, &j.entry_location_id)
        {
            seen.insert((t.clone(), s));
            facts.push((
                fact(
                    t,
                    s,
                    &j.operator_id,
                    l,
                    Direction::Entry,
                    j.entry_at_ms,
                    None,
                ),
                j.credential_id,
            ));
        }
        if let (Some(t), Some(s), Some(l), Some(at)) = (
            &j.exit_terminal_id,
            j.exit_sequence,
            &j.exit_location_id,
            j.exit_at_ms,
        ) {
            seen.insert((t.clone(), s));
            let class = j.vehicle_class.as_deref().and_then(VehicleClass::parse);
            facts.push((
                fact(t, s, &j.operator_id, l, Direction::Exit, at, class),
                j.credential_id,
            ));
        }
    }
    for l in &loose {
        if seen.insert((l.terminal_id.clone(), l.sequence)) {
            facts.push((
                fact(
                    &l.terminal_id,
                    l.sequence,
                    &l.operator_id,
                    &l.location_id,
                    l.direction,
                    l.scanned_at_ms,
                    l.vehicle_class,
                ),
                l.credential_id,
            ));
        }
    }
    facts.sort_by(|a, b| Fact::scan_order(&a.0, &b.0));

    // Every fact's network must be in force, or its journey could not be priced.
    let mut held: HashMap<String, std::sync::Arc<OperatorNetwork>> = HashMap::new();
    for (f, _) in &facts {
        if !held.contains_key(&f.operator_id) {
            let Some(network) = networks.get(&f.operator_id) else {
                tracing::warn!(rider_id, operator_id = %f.operator_id, "re-pairing waits for a network in force");
                return Ok(Ok(Outcome::Later));
            };
            held.insert(f.operator_id.clone(), network);
        }
    }
    let by_operator: HashMap<String, &OperatorNetwork> =
        held.iter().map(|(k, v)| (k.clone(), v.as_ref())).collect();

    // The day totals the cap starts from: the rider's closed journeys outside the re-pairing.
    let mut day_totals: HashMap<(String, String), i64> = HashMap::new();
    for (operator, day, total) in sql::day_fares(conn, rider_id).await? {
        day_totals.insert((operator, day), total);
    }
    for (j, _) in &stored {
        if let (Some(day), Some(fare)) = (&j.business_day, j.fare_minor) {
            if j.status == "closed" {
                *day_totals
                    .entry((j.operator_id.clone(), day.clone()))
                    .or_default() -= fare;
            }
        }
    }

    let only_facts: Vec<Fact> = facts.iter().map(|(f, _)| f.clone()).collect();
    let paired = rules::pair(rules, &by_operator, &only_facts, now_ms, day_totals);

    // Match what the rules give with what is stored: a journey is known by its entry tap, or
    // by its exit when it has no entry.
    let identity = |entry: Option<(&str, i64)>, exit: Option<(&str, i64)>| {
        entry
            .or(exit)
            .map(|(t, s)| (t.to_string(), s))
            .expect("a journey has an entry or an exit")
    };
    let mut by_identity: HashMap<(String, i64), usize> = HashMap::new();
    for (n, (j, _)) in stored.iter().enumerate() {
        let entry = j.entry_terminal_id.as_deref().zip(j.entry_sequence);
        let exit = j.exit_terminal_id.as_deref().zip(j.exit_sequence);
        by_identity.insert(identity(entry, exit), n);
    }
    let key_of = |i: Option<usize>| {
        i.map(|i| {
            (
                only_facts[i].terminal_id.as_str(),
                only_facts[i].sequence as i64,
            )
        })
    };
    let mut changed = 0;
    let mut charged = 0;
    let mut kept: HashSet<usize> = HashSet::new();
    let mut writes: Vec<(JourneyWrite, Option<usize>)> = Vec::new();
    for p in &paired {
        let id = identity(key_of(p.entry), key_of(p.exit));
        let matched = by_identity.get(&id).copied();
        if let Some(n) = matched {
            kept.insert(n);
        }
        let old = matched.map(|n| &stored[n]);
        let write = journey_write(
            p,
            &facts,
            rider_id,
            old.map(|(j, closed)| (j.journey_id, *closed)),
            now_ms,
        );
        writes.push((write, matched));
    }
    let mut touched_days: HashSet<(String, String)> = HashSet::new();

    // Voids first, then closed journeys, then the open one: one open journey per rider and mode.
    for (n, (j, _)) in stored.iter().enumerate() {
        if kept.contains(&n) {
            continue;
        }
        let old_exit = j.exit_terminal_id.as_deref().zip(j.exit_sequence);
        if !sql::void_journey(conn, j.journey_id, &j.status, old_exit, now_ms).await? {
            return Ok(Err(Raced));
        }
        changed += 1;
        if let Some(day) = &j.business_day {
            touched_days.insert((j.operator_id.clone(), day.clone()));
        }
        match settle_charge(
            conn,
            j.journey_id,
            &j.operator_id,
            mode,
            rider_id,
            None,
            now_ms,
            now_ms,
        )
        .await?
        {
            Settled::Unchanged => {}
            Settled::Changed => charged += 1,
            Settled::Busy => return Ok(Ok(Outcome::Later)),
        }
    }
    // A tap stands in one journey at a time (`journeys_entry_once`, `journeys_exit_once`): every
    // journey that changes steps aside (void) before any is rewritten.
    writes.sort_by_key(|(w, _)| w.status == "open");
    let mut stepped_aside: HashSet<i64> = HashSet::new();
    for (write, matched) in &writes {
        if let Some(old) = matched.map(|n| &stored[n].0) {
            if !same_journey(old, write) {
                let old_exit = old.exit_terminal_id.as_deref().zip(old.exit_sequence);
                if !sql::void_journey(conn, old.journey_id, &old.status, old_exit, now_ms).await? {
                    return Ok(Err(Raced));
                }
                stepped_aside.insert(old.journey_id);
            }
        }
    }
    for (write, matched) in &writes {
        let old = matched.map(|n| &stored[n].0);
        if let Some(old) = old {
            if !stepped_aside.contains(&old.journey_id) {
                continue;
            }
            let old_exit = old.exit_terminal_id.as_deref().zip(old.exit_sequence);
            if !sql::update_journey(conn, write, "void", old_exit).await? {
                return Ok(Err(Raced));
            }
            if let Some(day) = &old.business_day {
                touched_days.insert((old.operator_id.clone(), day.clone()));
            }
        } else {
            sql::insert_journey(conn, write).await?;
        }
        changed += 1;
        if let Some(day) = &write.business_day {
            touched_days.insert((write.operator_id.clone(), day.clone()));
        }
        for (t, s, ..) in write.entry.iter() {
            sql::set_tap_journey(conn, t, *s, write.journey_id).await?;
        }
        for (t, s, ..) in write.exit.iter() {
            sql::set_tap_journey(conn, t, *s, write.journey_id).await?;
        }
        let owed = write
            .charge_minor
            .zip(write.currency.as_deref())
            .zip(write.business_day.as_deref());
        match settle_charge(
            conn,
            write.journey_id,
            &write.operator_id,
            mode,
            rider_id,
            owed.map(|((c, cur), day)| (c, cur, day)),
            // A journey priced by policy for want of its other end waits for that end to
            // arrive before it is collected.
            if write.close_reason == Some(rules::CloseReason::Incomplete.as_str()) {
                now_ms + rules.incomplete_after_ms
            } else {
                now_ms
            },
            now_ms,
        )
        .await?
        {
            Settled::Unchanged => {}
            Settled::Changed => charged += 1,
            Settled::Busy => return Ok(Ok(Outcome::Later)),
        }
    }
    for (operator, day) in &touched_days {
        sql::recount_day(conn, rider_id, operator, day).await?;
    }
    for l in &loose {
        if !sql::delete_fact(conn, &l.terminal_id, l.sequence).await? {
            return Ok(Err(Raced));
        }
    }
    sql::dequeue(conn, rider_id, mode, from_ms).await?;
    Ok(Ok(Outcome::Repaired {
        changed,
        charges: charged,
    }))
}

fn fact(
    terminal_id: &str,
    sequence: i64,
    operator_id: &str,
    location_id: &str,
    direction: Direction,
    scanned_at_ms: i64,
    vehicle_class: Option<VehicleClass>,
) -> Fact {
    Fact {
        terminal_id: terminal_id.to_string(),
        sequence: sequence as u64,
        operator_id: operator_id.to_string(),
        location_id: location_id.to_string(),
        direction,
        scanned_at_ms,
        vehicle_class,
    }
}

/// The row a paired journey is stored as; `old` is the stored journey it replaces (its id and
/// when it closed, kept if it still closes).
fn journey_write(
    p: &Paired,
    facts: &[(Fact, i64)],
    rider_id: i64,
    old: Option<(i64, Option<i64>)>,
    now_ms: i64,
) -> JourneyWrite {
    let entry = p.entry.map(|i| &facts[i]);
    let exit = p.exit.map(|i| &facts[i]);
    let credential_id = entry.or(exit).map_or(0, |(_, c)| *c);
    let priced = p.priced.as_ref();
    JourneyWrite {
        journey_id: old.map_or_else(crate::random_id, |(id, _)| id),
        rider_id,
        credential_id,
        operator_id: p.operator_id.clone(),
        mode: p.mode,
        status: if priced.is_some() { "closed" } else { "open" },
        entry: entry.map(|(f, _)| {
            (
                f.terminal_id.clone(),
                f.sequence as i64,
                f.location_id.clone(),
            )
        }),
        entry_at_ms: entry.or(exit).map_or(0, |(f, _)| f.scanned_at_ms),
        exit: exit.map(|(f, _)| {
            (
                f.terminal_id.clone(),
                f.sequence as i64,
                f.location_id.clone(),
                f.scanned_at_ms,
            )
        }),
        vehicle_class: exit
            .and_then(|(f, _)| f.vehicle_class)
            .map(VehicleClass::as_str),
        close_reason: priced.map(|p| p.close_reason.as_str()),
        fare_minor: priced.map(|p| p.fare.to_minor()),
        charge_minor: p.charge.as_ref().map(Money::to_minor),
        currency: priced.map(|p| p.fare.currency().code().to_string()),
        business_day: priced.map(|p| p.business_day.clone()),
        closed_at_ms: priced.map(|_| old.and_then(|(_, closed)| closed).unwrap_or(now_ms)),
    }
}

/// Whether the stored journey already is what the rules give.
fn same_journey(old: &crate::store::JourneyRow, w: &JourneyWrite) -> bool {
    let old_exit = old.exit_terminal_id.clone().zip(old.exit_sequence);
    let new_exit = w.exit.as_ref().map(|(t, s, ..)| (t.clone(), *s));
    old.status == w.status
        && old_exit == new_exit
        && old.entry_terminal_id.clone().zip(old.entry_sequence)
            == w.entry.as_ref().map(|(t, s, _)| (t.clone(), *s))
        && old.close_reason.as_deref() == w.close_reason
        && old.fare_minor == w.fare_minor
        && old.charge_minor == w.charge_minor
        && old.business_day == w.business_day
}

enum Settled {
    Unchanged,
    Changed,
    /// A charge of the journey is with the provider now; try again later.
    Busy,
}

/// Brings what a journey is charged to `owed` (amount, currency, business day; `None` for
/// nothing — a void or open journey), collected from `due_ms`: a charge the provider has not
/// seen is repriced or cancelled; after capture the difference becomes a further deduction or a
/// refund.
#[allow(clippy::too_many_arguments)]
async fn settle_charge(
    conn: &mut Conn,
    journey_id: i64,
    operator_id: &str,
    mode: Mode,
    rider_id: i64,
    owed: Option<(i64, &str, &str)>,
    due_ms: i64,
    now_ms: i64,
) -> Result<Settled, sqlx::Error> {
    let want = owed.map_or(0, |(amount, ..)| amount);
    let (main, corrections) = sql::journey_charges(conn, journey_id).await?;
    let new_charge = |amount: i64, journey: Option<i64>| {
        let (_, currency, day) = owed.expect("a charge is made only for something owed");
        (amount, currency.to_string(), day.to_string(), journey)
    };
    let main = match main {
        None if want > 0 => {
            insert_pending(
                conn,
                mode,
                operator_id,
                rider_id,
                new_charge(want, Some(journey_id)),
                due_ms,
                now_ms,
            )
            .await?;
            return Ok(Settled::Changed);
        }
        None => return Ok(Settled::Unchanged),
        Some(main) => main,
    };
    if sql::untouched(&main) && corrections.is_empty() {
        // Same amount, and due no later than now wanted: nothing to do. (A journey first priced
        // by policy and then completed by its late tap may cost the same and must still be
        // collected now, not when the policy's wait ends.)
        if want == main.amount_minor && main.next_attempt_at_ms <= due_ms {
            return Ok(Settled::Unchanged);
        }
        let done = if want > 0 {
            let day = owed.map_or(main.business_day.as_str(), |(_, _, day)| day);
            sql::reprice_untouched(conn, main.charge_id, want, day, due_ms, now_ms).await?
        } else {
            sql::cancel_untouched(conn, main.charge_id, REPAIRED, now_ms).await?
        };
        return Ok(if done {
            Settled::Changed
        } else {
            Settled::Busy
        });
    }
    if main.status == ChargeStatus::Cancelled && corrections.is_empty() {
        if want == 0 {
            return Ok(Settled::Unchanged);
        }
        let (amount, currency, day, _) = new_charge(want, Some(journey_id));
        let restarted = charges::restart_journey_charge(
            conn,
            &NewCharge {
                charge_id: main.charge_id,
                kind: main.kind,
                operator_id,
                rider_id: Some(rider_id),
                journey_id: Some(journey_id),
                amount_minor: amount,
                currency: &currency,
                business_day: &day,
                status: ChargeStatus::Pending,
                next_attempt_at_ms: now_ms,
                lease_until_ms: None,
                terminal_id: None,
                terminal_sequence: None,
                now_ms,
            },
        )
        .await?;
        return Ok(if restarted.is_some() {
            Settled::Changed
        } else {
            Settled::Busy
        });
    }
    if main.status != ChargeStatus::Captured {
        return Ok(Settled::Busy);
    }
    // Captured: what the rider has paid net, then a correction for the difference.
    let mut paid = Vec::new();
    let mut untouched_corrections = Vec::new();
    for c in std::iter::once(&main).chain(&corrections) {
        match c.status {
            ChargeStatus::Captured => paid.push(c),
            ChargeStatus::Cancelled => {}
            _ if sql::untouched(c) => untouched_corrections.push(c),
            _ => return Ok(Settled::Busy),
        }
    }
    let mut have = 0;
    let mut refundable = Vec::new();
    for c in &paid {
        let left =
            c.amount_minor - c.refunded_minor - sql::refunds_pending(conn, c.charge_id).await?;
        have += left;
        refundable.push((c.charge_id, left));
    }
    let pending_extra: i64 = untouched_corrections.iter().map(|c| c.amount_minor).sum();
    if have + pending_extra == want {
        // The same money; a correction made while the journey was priced by policy becomes
        // due now if the journey no longer is.
        let mut moved = false;
        for c in untouched_corrections
            .iter()
            .filter(|c| c.next_attempt_at_ms > due_ms)
        {
            let (amount, day) = (c.amount_minor, c.business_day.as_str());
            if !sql::reprice_untouched(conn, c.charge_id, amount, day, due_ms, now_ms).await? {
                return Ok(Settled::Busy);
            }
            moved = true;
        }
        return Ok(if moved {
            Settled::Changed
        } else {
            Settled::Unchanged
        });
    }
    for c in &untouched_corrections {
        if !sql::cancel_untouched(conn, c.charge_id, REPAIRED, now_ms).await? {
            return Ok(Settled::Busy);
        }
    }
    if want > have {
        let charge_id = insert_pending(
            conn,
            mode,
            operator_id,
            rider_id,
            new_charge(want - have, None),
            due_ms,
            now_ms,
        )
        .await?;
        sql::mark_correction(conn, charge_id, journey_id).await?;
    } else if want < have {
        let mut to_refund = have - want;
        for (n, (charge_id, left)) in refundable.into_iter().enumerate() {
            let amount = to_refund.min(left);
            if amount <= 0 {
                continue;
            }
            let request_id = format!("repair-{journey_id}-{now_ms}-{n}");
            let row = RefundRow {
                refund_id: crate::random_id(),
                charge_id,
                out_request_no: crate::charging::refunds::out_request_no(charge_id, &request_id),
                amount_minor: amount,
                reason: REPAIRED.to_string(),
                status: RefundStatus::Pending,
                detail: None,
                dispute_id: None,
                created_at_ms: now_ms,
                completed_at_ms: None,
            };
            charges::insert_refund(conn, &row).await?;
            to_refund -= amount;
        }
    }
    Ok(Settled::Changed)
}

/// Inserts a pending charge of (amount, currency, business day, journey), due now.
async fn insert_pending(
    conn: &mut Conn,
    mode: Mode,
    operator_id: &str,
    rider_id: i64,
    (amount, currency, day, journey): (i64, String, String, Option<i64>),
    due_ms: i64,
    now_ms: i64,
) -> Result<i64, sqlx::Error> {
    let charge_id = crate::random_id();
    charges::insert_charge(
        conn,
        &NewCharge {
            charge_id,
            kind: mode.charge_kind(),
            operator_id,
            rider_id: Some(rider_id),
            journey_id: journey,
            amount_minor: amount,
            currency: &currency,
            business_day: &day,
            status: ChargeStatus::Pending,
            next_attempt_at_ms: due_ms,
            lease_until_ms: None,
            terminal_id: None,
            terminal_sequence: None,
            now_ms,
        },
    )
    .await?;
    Ok(charge_id)
}

/// Why a charge was cancelled or refunded by a re-pairing.
pub const REPAIRED: &str = "re-paired: a late tap changed the journey";

/// Queues the rider for re-pairing and, for a fact no journey holds, keeps it in `tap_facts`.
pub async fn record(
    conn: &mut Conn,
    loose: Option<&sql::LooseFact>,
    rider_id: i64,
    mode: Mode,
    scanned_at_ms: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if let Some(fact) = loose {
        sql::insert_fact(conn, fact).await?;
    }
    sql::queue(conn, rider_id, mode, scanned_at_ms, now_ms).await
}
