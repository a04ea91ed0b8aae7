//! SQL of charging: charges (the outbox), trade attempts, the ledger, wallets, refunds, disputes,
//! ticket orders and received notifications. Every state change of a charge is a conditional
//! UPDATE on its current status, so two workers (or a worker and a notification) racing on the
//! same charge cannot both apply: the loser sees zero rows and re-reads.

use sqlx::Row;

use super::{Conn, Store, Tx};
pub use turnpike_wire::api::payments::{
    AccountBalance, ChargeKind, ChargeStatus, DisputeStatus, RefundStatus,
};

pub(crate) const CHARGE_COLUMNS: &str = "charge_id, kind, operator_id, rider_id, journey_id, amount_minor, currency, business_day, status, attempt, out_trade_no, provider_trade_no, fee_minor, refunded_minor, last_error, next_attempt_at_ms, lease_until_ms, terminal_id, terminal_sequence, created_at_ms, captured_at_ms";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChargeRow {
    pub charge_id: i64,
    pub kind: ChargeKind,
    pub operator_id: String,
    pub rider_id: Option<i64>,
    pub journey_id: Option<i64>,
    pub amount_minor: i64,
    pub currency: String,
    pub business_day: String,
    pub status: ChargeStatus,
    pub attempt: i64,
    pub out_trade_no: String,
    pub provider_trade_no: Option<String>,
    pub fee_minor: Option<i64>,
    pub refunded_minor: i64,
    pub last_error: Option<String>,
    pub next_attempt_at_ms: i64,
    pub lease_until_ms: Option<i64>,
    pub terminal_id: Option<String>,
    pub terminal_sequence: Option<i64>,
    pub created_at_ms: i64,
    pub captured_at_ms: Option<i64>,
}

/// A stored spelling read back as its enum; anything else is a decode error.
pub(crate) fn spelled<T>(
    text: String,
    parse: fn(&str) -> Option<T>,
    what: &str,
) -> Result<T, sqlx::Error> {
    parse(&text).ok_or_else(|| sqlx::Error::Decode(format!("unknown {what} {text:?}").into()))
}

impl ChargeRow {
    pub(crate) fn from_row(r: &sqlx::any::AnyRow) -> Result<ChargeRow, sqlx::Error> {
        Ok(ChargeRow {
            charge_id: r.try_get(0)?,
            kind: spelled(r.try_get(1)?, ChargeKind::parse, "charge kind")?,
            operator_id: r.try_get(2)?,
            rider_id: r.try_get(3)?,
            journey_id: r.try_get(4)?,
            amount_minor: r.try_get(5)?,
            currency: r.try_get(6)?,
            business_day: r.try_get(7)?,
            status: spelled(r.try_get(8)?, ChargeStatus::parse, "charge status")?,
            attempt: r.try_get(9)?,
            out_trade_no: r.try_get(10)?,
            provider_trade_no: r.try_get(11)?,
            fee_minor: r.try_get(12)?,
            refunded_minor: r.try_get(13)?,
            last_error: r.try_get(14)?,
            next_attempt_at_ms: r.try_get(15)?,
            lease_until_ms: r.try_get(16)?,
            terminal_id: r.try_get(17)?,
            terminal_sequence: r.try_get(18)?,
            created_at_ms: r.try_get(19)?,
            captured_at_ms: r.try_get(20)?,
        })
    }
}

/// The trade number of a charge's attempt: a kind letter, the charge id, `_`, the attempt (the
/// provider allows only letters, digits and `_`). Unique by construction and stable across
/// restarts, so a retry after an unknown outcome reuses it.
pub fn trade_no(kind: ChargeKind, charge_id: i64, attempt: i64) -> String {
    let letter = match kind {
        ChargeKind::Metro => 'M',
        ChargeKind::Toll => 'T',
        ChargeKind::Ticket => 'K',
    };
    format!("{letter}{charge_id}_{attempt}")
}

pub struct NewCharge<'a> {
    pub charge_id: i64,
    pub kind: ChargeKind,
    pub operator_id: &'a str,
    pub rider_id: Option<i64>,
    pub journey_id: Option<i64>,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub business_day: &'a str,
    pub status: ChargeStatus,
    pub next_attempt_at_ms: i64,
    pub lease_until_ms: Option<i64>,
    pub terminal_id: Option<&'a str>,
    pub terminal_sequence: Option<i64>,
    pub now_ms: i64,
}

/// Inserts a charge at attempt 1 and records that attempt's trade number. False when the journey
/// already has a charge (the constraint that makes a journey chargeable once).
pub async fn insert_charge(conn: &mut Conn, c: &NewCharge<'_>) -> Result<bool, sqlx::Error> {
    let out_trade_no = trade_no(c.kind, c.charge_id, 1);
    let n = sqlx::query(
        "INSERT INTO charges (charge_id, kind, operator_id, rider_id, journey_id, amount_minor, currency, business_day,
                              status, attempt, out_trade_no, next_attempt_at_ms, lease_until_ms, terminal_id,
                              terminal_sequence, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $11, $12, $13, $14, $15, $15)
         ON CONFLICT DO NOTHING",
    )
    .bind(c.charge_id)
    .bind(c.kind.as_str())
    .bind(c.operator_id)
    .bind(c.rider_id)
    .bind(c.journey_id)
    .bind(c.amount_minor)
    .bind(c.currency)
    .bind(c.business_day)
    .bind(c.status.as_str())
    .bind(&out_trade_no)
    .bind(c.next_attempt_at_ms)
    .bind(c.lease_until_ms)
    .bind(c.terminal_id)
    .bind(c.terminal_sequence)
    .bind(c.now_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n == 1 {
        insert_attempt(conn, c.charge_id, 1, &out_trade_no, c.now_ms).await?;
    }
    Ok(n == 1)
}

/// A journey whose toll pay was cancelled and which was exited again: its charge (the one a
/// journey may have) starts a new attempt, with a new trade number, for the new exit. Returns
/// the charge id, or None if the journey's charge is not in a restartable state.
pub async fn restart_journey_charge(
    conn: &mut Conn,
    c: &NewCharge<'_>,
) -> Result<Option<i64>, sqlx::Error> {
    let Some(journey_id) = c.journey_id else {
        return Ok(None);
    };
    let row = sqlx::query(&format!(
        "SELECT {CHARGE_COLUMNS} FROM charges WHERE journey_id = $1 AND status = 'cancelled'"
    ))
    .bind(journey_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(old) = row.as_ref().map(ChargeRow::from_row).transpose()? else {
        return Ok(None);
    };
    let attempt = old.attempt + 1;
    let out_trade_no = trade_no(old.kind, old.charge_id, attempt);
    let n = sqlx::query(
        "UPDATE charges SET status = $2, attempt = $3, out_trade_no = $4, amount_minor = $5, next_attempt_at_ms = $6,
                lease_until_ms = $7, terminal_id = $8, terminal_sequence = $9, last_error = NULL, updated_at_ms = $10
         WHERE charge_id = $1 AND status = 'cancelled' AND attempt = $11",
    )
    .bind(old.charge_id)
    .bind(c.status.as_str())
    .bind(attempt)
    .bind(&out_trade_no)
    .bind(c.amount_minor)
    .bind(c.next_attempt_at_ms)
    .bind(c.lease_until_ms)
    .bind(c.terminal_id)
    .bind(c.terminal_sequence)
    .bind(c.now_ms)
    .bind(old.attempt)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(None);
    }
    insert_attempt(conn, old.charge_id, attempt, &out_trade_no, c.now_ms).await?;
    Ok(Some(old.charge_id))
}

async fn insert_attempt(
    conn: &mut Conn,
    charge_id: i64,
    attempt: i64,
    out_trade_no: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO charge_attempts (out_trade_no, charge_id, attempt, outcome, created_at_ms, updated_at_ms)
         VALUES ($1, $2, $3, 'sent', $4, $4) ON CONFLICT DO NOTHING",
    )
    .bind(out_trade_no)
    .bind(charge_id)
    .bind(attempt)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records how a trade number ended ('paid', 'declined', 'cancelled', 'reversed').
pub async fn finish_attempt(
    tx: &mut Tx<'_>,
    out_trade_no: &str,
    outcome: &str,
    detail: Option<&str>,
    provider_trade_no: Option<&str>,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE charge_attempts SET outcome = $2, detail = $3, provider_trade_no = COALESCE($4, provider_trade_no), updated_at_ms = $5
         WHERE out_trade_no = $1",
    )
    .bind(out_trade_no)
    .bind(outcome)
    .bind(detail)
    .bind(provider_trade_no)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn charge_in(tx: &mut Tx<'_>, charge_id: i64) -> Result<Option<ChargeRow>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {CHARGE_COLUMNS} FROM charges WHERE charge_id = $1"
    ))
    .bind(charge_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(ChargeRow::from_row).transpose()
}

/// Marks a charge paid (from `pending` or `paying`). False if it was no longer collectable.
pub async fn capture(
    tx: &mut Tx<'_>,
    charge_id: i64,
    provider_trade_no: &str,
    fee_minor: i64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE charges SET status = 'captured', provider_trade_no = $2, fee_minor = $3, captured_at_ms = $4,
                lease_until_ms = NULL, last_error = NULL, updated_at_ms = $4
         WHERE charge_id = $1 AND status IN ('pending', 'paying')",
    )
    .bind(charge_id)
    .bind(provider_trade_no)
    .bind(fee_minor)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// After a definitive decline: moves to the next attempt (and trade number), due at
/// `next_attempt_at_ms`. False if the charge was no longer pending.
pub async fn next_attempt(
    tx: &mut Tx<'_>,
    charge: &ChargeRow,
    error: &str,
    next_attempt_at_ms: i64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    to_next_attempt(
        tx,
        charge,
        "'pending', 'failed'",
        error,
        next_attempt_at_ms,
        now_ms,
    )
    .await
}

/// Moves a charge in one of `from_statuses` (an SQL list of literals) at `charge.attempt` to
/// the next attempt and trade number, `pending` and due at `next_attempt_at_ms`, and records
/// the new trade number. False if the charge had moved on.
async fn to_next_attempt(
    tx: &mut Tx<'_>,
    charge: &ChargeRow,
    from_statuses: &'static str,
    error: &str,
    next_attempt_at_ms: i64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let attempt = charge.attempt + 1;
    let out_trade_no = trade_no(charge.kind, charge.charge_id, attempt);
    let n = sqlx::query(&format!(
        "UPDATE charges SET attempt = $2, out_trade_no = $3, last_error = $4, next_attempt_at_ms = $5,
                lease_until_ms = NULL, status = 'pending', updated_at_ms = $6
         WHERE charge_id = $1 AND attempt = $7 AND status IN ({from_statuses})"
    ))
    .bind(charge.charge_id)
    .bind(attempt)
    .bind(&out_trade_no)
    .bind(error)
    .bind(next_attempt_at_ms)
    .bind(now_ms)
    .bind(charge.attempt)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 1 {
        insert_attempt(tx, charge.charge_id, attempt, &out_trade_no, now_ms).await?;
    }
    Ok(n == 1)
}

/// After an unknown outcome: retry the same trade number later.
pub async fn retry_later(
    store: &Store,
    charge_id: i64,
    error: &str,
    next_attempt_at_ms: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE charges SET last_error = $2, next_attempt_at_ms = $3, lease_until_ms = NULL, updated_at_ms = $4
         WHERE charge_id = $1 AND status IN ('pending', 'paying')",
    )
    .bind(charge_id)
    .bind(error)
    .bind(next_attempt_at_ms)
    .bind(now_ms)
    .execute(&store.pool)
    .await?;
    Ok(())
}

/// Sets a charge to a final state without payment ('failed' or 'cancelled').
pub async fn give_up(
    tx: &mut Tx<'_>,
    charge_id: i64,
    status: &str,
    error: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE charges SET status = $2, last_error = $3, lease_until_ms = NULL, updated_at_ms = $4
         WHERE charge_id = $1 AND status IN ('pending', 'paying')",
    )
    .bind(charge_id)
    .bind(status)
    .bind(error)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// A rider's arrears: charges that failed, or were declined and are still being retried.
pub async fn rider_arrears_count(tx: &mut Tx<'_>, rider_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "SELECT COUNT(*) FROM charges WHERE rider_id = $1
           AND (status = 'failed' OR (status = 'pending' AND attempt > 1))",
    )
    .bind(rider_id)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)
}

pub async fn deny_add_in(
    tx: &mut Tx<'_>,
    rider_id: i64,
    reason: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO deny_list (subject_kind, subject_id, reason, added_at_ms) VALUES ('rider', $1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(rider_id)
    .bind(reason)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Lifts a rider's deny-list entry, but only one this module put there (`reason`).
pub async fn deny_remove_in(
    tx: &mut Tx<'_>,
    rider_id: i64,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "DELETE FROM deny_list WHERE subject_kind = 'rider' AND subject_id = $1 AND reason = $2",
    )
    .bind(rider_id)
    .bind(reason)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// One line of a journal transaction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LedgerLine {
    pub account: &'static str,
    pub party: String,
    pub debit_minor: i64,
    pub credit_minor: i64,
}

/// A journal transaction: what moved, why, and its balanced lines.
#[derive(Debug, Clone)]
pub struct LedgerTxn {
    pub idempotency_key: String,
    pub kind: &'static str,
    pub operator_id: String,
    pub business_day: String,
    pub charge_id: Option<i64>,
    pub out_trade_no: Option<String>,
    pub provider_trade_no: Option<String>,
    pub out_request_no: Option<String>,
    pub currency: String,
    pub lines: Vec<LedgerLine>,
}

/// Books a transaction once; false when its idempotency key was booked before.
///
/// # Panics
/// If the lines do not balance: that is a bug in the code that built them, never input.
pub async fn book(tx: &mut Tx<'_>, t: &LedgerTxn, now_ms: i64) -> Result<bool, sqlx::Error> {
    let debits: i64 = t.lines.iter().map(|l| l.debit_minor).sum();
    let credits: i64 = t.lines.iter().map(|l| l.credit_minor).sum();
    assert_eq!(debits, credits, "unbalanced journal transaction {t:?}");
    let txn_id = crate::random_id();
    let n = sqlx::query(
        "INSERT INTO ledger_transactions (txn_id, idempotency_key, kind, operator_id, business_day, charge_id,
                                          out_trade_no, provider_trade_no, out_request_no, created_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
    )
    .bind(txn_id)
    .bind(&t.idempotency_key)
    .bind(t.kind)
    .bind(&t.operator_id)
    .bind(&t.business_day)
    .bind(t.charge_id)
    .bind(&t.out_trade_no)
    .bind(&t.provider_trade_no)
    .bind(&t.out_request_no)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    for (i, line) in t.lines.iter().enumerate() {
        // Zero lines (e.g. a zero fee) carry no information and the schema refuses them.
        if line.debit_minor == 0 && line.credit_minor == 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO ledger_lines (txn_id, line_no, account, party, debit_minor, credit_minor, currency)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(txn_id)
        .bind(i as i64 + 1)
        .bind(line.account)
        .bind(&line.party)
        .bind(line.debit_minor)
        .bind(line.credit_minor)
        .bind(&t.currency)
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

/// A booked transaction as read back (for reports, tests and the export).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BookedTxn {
    pub idempotency_key: String,
    pub kind: String,
    pub operator_id: String,
    pub business_day: String,
    pub charge_id: Option<i64>,
    pub out_trade_no: Option<String>,
    pub provider_trade_no: Option<String>,
    pub out_request_no: Option<String>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RefundRow {
    pub refund_id: i64,
    pub charge_id: i64,
    pub out_request_no: String,
    pub amount_minor: i64,
    pub reason: String,
    pub status: RefundStatus,
    pub detail: Option<String>,
    pub dispute_id: Option<i64>,
    pub created_at_ms: i64,
    pub completed_at_ms: Option<i64>,
}

const REFUND_COLUMNS: &str = "refund_id, charge_id, out_request_no, amount_minor, reason, status, detail, dispute_id, created_at_ms, completed_at_ms";

impl RefundRow {
    fn from_row(r: &sqlx::any::AnyRow) -> Result<RefundRow, sqlx::Error> {
        Ok(RefundRow {
            refund_id: r.try_get(0)?,
            charge_id: r.try_get(1)?,
            out_request_no: r.try_get(2)?,
            amount_minor: r.try_get(3)?,
            reason: r.try_get(4)?,
            status: spelled(r.try_get(5)?, RefundStatus::parse, "refund status")?,
            detail: r.try_get(6)?,
            dispute_id: r.try_get(7)?,
            created_at_ms: r.try_get(8)?,
            completed_at_ms: r.try_get(9)?,
        })
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DisputeRow {
    pub dispute_id: i64,
    pub rider_id: i64,
    pub charge_id: i64,
    pub reason: String,
    pub status: DisputeStatus,
    pub decision_note: Option<String>,
    pub refund_id: Option<i64>,
    pub created_at_ms: i64,
    pub decided_at_ms: Option<i64>,
}

const DISPUTE_COLUMNS: &str = "dispute_id, rider_id, charge_id, reason, status, decision_note, refund_id, created_at_ms, decided_at_ms";

impl DisputeRow {
    fn from_row(r: &sqlx::any::AnyRow) -> Result<DisputeRow, sqlx::Error> {
        Ok(DisputeRow {
            dispute_id: r.try_get(0)?,
            rider_id: r.try_get(1)?,
            charge_id: r.try_get(2)?,
            reason: r.try_get(3)?,
            status: spelled(r.try_get(4)?, DisputeStatus::parse, "dispute status")?,
            decision_note: r.try_get(5)?,
            refund_id: r.try_get(6)?,
            created_at_ms: r.try_get(7)?,
            decided_at_ms: r.try_get(8)?,
        })
    }
}

/// What the provider last said of a rider's real name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealNameRow {
    pub provider_user_id: String,
    pub certified: bool,
    pub checked_at_ms: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TicketOrderRow {
    pub order_id: i64,
    pub charge_id: i64,
    /// The ticket machine that placed the order; none for a rider's order in the app.
    pub terminal_id: Option<String>,
    /// The rider who placed the order in the app; none for a machine's.
    pub rider_id: Option<i64>,
    pub origin_id: String,
    pub destination_id: String,
    pub qr_payload: String,
    pub ticket_code: Option<String>,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub paid_at_ms: Option<i64>,
}

const TICKET_COLUMNS: &str = "order_id, charge_id, terminal_id, origin_id, destination_id, qr_payload, ticket_code, expires_at_ms, created_at_ms, paid_at_ms, rider_id";

impl TicketOrderRow {
    fn from_row(r: &sqlx::any::AnyRow) -> Result<TicketOrderRow, sqlx::Error> {
        Ok(TicketOrderRow {
            order_id: r.try_get(0)?,
            charge_id: r.try_get(1)?,
            terminal_id: r.try_get(2)?,
            origin_id: r.try_get(3)?,
            destination_id: r.try_get(4)?,
            qr_payload: r.try_get(5)?,
            ticket_code: r.try_get(6)?,
            expires_at_ms: r.try_get(7)?,
            created_at_ms: r.try_get(8)?,
            paid_at_ms: r.try_get(9)?,
            rider_id: r.try_get(10)?,
        })
    }
}

pub async fn insert_refund(conn: &mut Conn, r: &RefundRow) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(&format!(
        "INSERT INTO refunds ({REFUND_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
    ))
    .bind(r.refund_id)
    .bind(r.charge_id)
    .bind(&r.out_request_no)
    .bind(r.amount_minor)
    .bind(&r.reason)
    .bind(r.status.as_str())
    .bind(&r.detail)
    .bind(r.dispute_id)
    .bind(r.created_at_ms)
    .bind(r.completed_at_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Finishes a pending refund; on success also adds it to the charge's refunded total (bounded
/// by the charge amount through the schema's CHECK).
/// Ends a pending refund. None if it was not pending any more (another worker ended it); else
/// the charge's refunded total after it (a success adds its amount, in the same transaction).
pub async fn finish_refund(
    tx: &mut Tx<'_>,
    refund: &RefundRow,
    succeeded: bool,
    detail: Option<&str>,
    now_ms: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let status = if succeeded {
        RefundStatus::Succeeded
    } else {
        RefundStatus::Failed
    }
    .as_str();
    let n = sqlx::query(
        "UPDATE refunds SET status = $2, detail = $3, completed_at_ms = $4 WHERE refund_id = $1 AND status = 'pending'",
    )
    .bind(refund.refund_id)
    .bind(status)
    .bind(detail)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(None);
    }
    let added = if succeeded { refund.amount_minor } else { 0 };
    let refunded: i64 = sqlx::query(
        "UPDATE charges SET refunded_minor = refunded_minor + $2, updated_at_ms = $3 WHERE charge_id = $1
         RETURNING refunded_minor",
    )
    .bind(refund.charge_id)
    .bind(added)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    Ok(Some(refunded))
}

pub async fn insert_dispute(tx: &mut Tx<'_>, d: &DisputeRow) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(&format!(
        "INSERT INTO disputes ({DISPUTE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
    ))
    .bind(d.dispute_id)
    .bind(d.rider_id)
    .bind(d.charge_id)
    .bind(&d.reason)
    .bind(d.status.as_str())
    .bind(&d.decision_note)
    .bind(d.refund_id)
    .bind(d.created_at_ms)
    .bind(d.decided_at_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn decide_dispute(
    tx: &mut Tx<'_>,
    dispute_id: i64,
    status: DisputeStatus,
    note: &str,
    refund_id: Option<i64>,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE disputes SET status = $2, decision_note = $3, refund_id = $4, decided_at_ms = $5
         WHERE dispute_id = $1 AND status = 'open'",
    )
    .bind(dispute_id)
    .bind(status.as_str())
    .bind(note)
    .bind(refund_id)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

pub async fn insert_ticket_order(tx: &mut Tx<'_>, o: &TicketOrderRow) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO ticket_orders ({TICKET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(o.order_id)
    .bind(o.charge_id)
    .bind(&o.terminal_id)
    .bind(&o.origin_id)
    .bind(&o.destination_id)
    .bind(&o.qr_payload)
    .bind(&o.ticket_code)
    .bind(o.expires_at_ms)
    .bind(o.created_at_ms)
    .bind(o.paid_at_ms)
    .bind(o.rider_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn issue_ticket(
    tx: &mut Tx<'_>,
    charge_id: i64,
    ticket_code: &str,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE ticket_orders SET ticket_code = $2, paid_at_ms = $3 WHERE charge_id = $1 AND ticket_code IS NULL",
    )
    .bind(charge_id)
    .bind(ticket_code)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    pub async fn charge(&self, charge_id: i64) -> Result<Option<ChargeRow>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {CHARGE_COLUMNS} FROM charges WHERE charge_id = $1"
        ))
        .bind(charge_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ChargeRow::from_row).transpose()
    }

    /// The charge whose current or any earlier attempt used `out_trade_no`.
    pub async fn charge_by_trade_no(
        &self,
        out_trade_no: &str,
    ) -> Result<Option<ChargeRow>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {CHARGE_COLUMNS} FROM charges WHERE charge_id =
               (SELECT charge_id FROM charge_attempts WHERE out_trade_no = $1)"
        ))
        .bind(out_trade_no)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ChargeRow::from_row).transpose()
    }

    pub async fn charges(
        &self,
        rider_id: Option<i64>,
        status: Option<ChargeStatus>,
        limit: i64,
    ) -> Result<Vec<ChargeRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {CHARGE_COLUMNS} FROM charges
             WHERE ($1 IS NULL OR rider_id = $1) AND ($2 IS NULL OR status = $2)
             ORDER BY created_at_ms DESC, charge_id LIMIT $3"
        ))
        .bind(rider_id)
        .bind(status.map(ChargeStatus::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ChargeRow::from_row).collect()
    }

    /// Charges of `kind` in `status` that are due and not leased, oldest due first.
    pub async fn due_charges(
        &self,
        kind: ChargeKind,
        status: ChargeStatus,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<ChargeRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {CHARGE_COLUMNS} FROM charges
             WHERE status = $1 AND kind = $2 AND next_attempt_at_ms <= $3
               AND (lease_until_ms IS NULL OR lease_until_ms < $3)
             ORDER BY next_attempt_at_ms LIMIT $4"
        ))
        .bind(status.as_str())
        .bind(kind.as_str())
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ChargeRow::from_row).collect()
    }

    /// Takes a lease on a due charge; false if another worker (or node) took it first, or it
    /// changed since `charge` was read (a re-pairing repriced or postponed it: the worker must
    /// never send an amount the row no longer holds).
    pub async fn lease_charge(
        &self,
        charge: &ChargeRow,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE charges SET lease_until_ms = $2, updated_at_ms = $3
             WHERE charge_id = $1 AND attempt = $4 AND status = $5
               AND (lease_until_ms IS NULL OR lease_until_ms < $3)
               AND amount_minor = $6 AND next_attempt_at_ms <= $3",
        )
        .bind(charge.charge_id)
        .bind(lease_until_ms)
        .bind(now_ms)
        .bind(charge.attempt)
        .bind(charge.status.as_str())
        .bind(charge.amount_minor)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn wallet(&self, rider_id: i64) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query("SELECT agreement_no FROM rider_wallets WHERE rider_id = $1")
            .bind(rider_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get(0)).transpose()
    }

    /// Puts a rider's failed charges back in the capture queue (the rider says the wallet is
    /// topped up). Returns how many.
    pub async fn requeue_failed(&self, rider_id: i64, now_ms: i64) -> Result<u64, sqlx::Error> {
        let failed = self
            .charges(Some(rider_id), Some(ChargeStatus::Failed), 1000)
            .await?;
        let mut n = 0;
        for c in failed {
            let mut tx = self.begin().await?;
            if next_attempt(&mut tx, &c, "requeued by rider", now_ms, now_ms).await? {
                n += 1;
            }
            tx.commit().await?;
        }
        Ok(n)
    }

    pub async fn provider_fee_rate_bp(&self, operator_id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT provider_fee_rate_bp FROM operators WHERE operator_id = $1")
            .bind(operator_id)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)
    }

    pub async fn ledger_transactions(&self) -> Result<Vec<BookedTxn>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT idempotency_key, kind, operator_id, business_day, charge_id, out_trade_no, provider_trade_no,
                    out_request_no, created_at_ms
             FROM ledger_transactions ORDER BY created_at_ms, idempotency_key",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BookedTxn {
                    idempotency_key: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    operator_id: r.try_get(2)?,
                    business_day: r.try_get(3)?,
                    charge_id: r.try_get(4)?,
                    out_trade_no: r.try_get(5)?,
                    provider_trade_no: r.try_get(6)?,
                    out_request_no: r.try_get(7)?,
                    created_at_ms: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// Debits and credits per account and party over the whole journal.
    pub async fn ledger_balances(&self) -> Result<Vec<AccountBalance>, sqlx::Error> {
        self.ledger_balances_in(&LedgerScope::default()).await
    }

    /// Debits and credits per account and party of the transactions in `scope`.
    pub async fn ledger_balances_in(
        &self,
        scope: &LedgerScope,
    ) -> Result<Vec<AccountBalance>, sqlx::Error> {
        let sql = format!(
            "SELECT l.account, l.party, l.currency, CAST(SUM(l.debit_minor) AS BIGINT), CAST(SUM(l.credit_minor) AS BIGINT)
             FROM ledger_lines l{}
             GROUP BY l.account, l.party, l.currency ORDER BY l.account, l.party",
            scope.join_lines()
        );
        let rows = scope.bind(sqlx::query(&sql)).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AccountBalance {
                    account: r.try_get(0)?,
                    party: r.try_get(1)?,
                    currency: r.try_get(2)?,
                    debit_minor: r.try_get(3)?,
                    credit_minor: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Transactions whose lines do not balance (must always be empty).
    pub async fn unbalanced_transactions(&self) -> Result<i64, sqlx::Error> {
        self.unbalanced_transactions_in(&LedgerScope::default())
            .await
    }

    /// Transactions in `scope` whose lines do not balance.
    pub async fn unbalanced_transactions_in(
        &self,
        scope: &LedgerScope,
    ) -> Result<i64, sqlx::Error> {
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT l.txn_id FROM ledger_lines l{} GROUP BY l.txn_id
                                   HAVING SUM(l.debit_minor) <> SUM(l.credit_minor)) AS u",
            scope.join_lines()
        );
        scope
            .bind(sqlx::query(&sql))
            .fetch_one(&self.pool)
            .await?
            .try_get(0)
    }

    /// How many journal transactions `scope` holds (counted, never loaded).
    pub async fn ledger_transaction_count(&self, scope: &LedgerScope) -> Result<i64, sqlx::Error> {
        let sql = format!(
            "SELECT COUNT(*) FROM ledger_transactions t{}",
            scope.filter()
        );
        scope
            .bind(sqlx::query(&sql))
            .fetch_one(&self.pool)
            .await?
            .try_get(0)
    }

    pub async fn refund_by_request(
        &self,
        out_request_no: &str,
    ) -> Result<Option<RefundRow>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE out_request_no = $1"
        ))
        .bind(out_request_no)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(RefundRow::from_row).transpose()
    }

    /// Pending refunds to drive: a re-pairing's (`reason`) at once, any other once it is older
    /// than `stale_before_ms` (its request died with an unknown outcome).
    pub async fn pending_refunds(
        &self,
        reason: &str,
        stale_before_ms: i64,
        limit: i64,
    ) -> Result<Vec<RefundRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE status = 'pending' AND (reason = $1 OR created_at_ms < $2)
             ORDER BY created_at_ms LIMIT $3"
        ))
        .bind(reason)
        .bind(stale_before_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(RefundRow::from_row).collect()
    }

    /// Sum of refunds of a charge that are pending or succeeded (what is no longer refundable).
    pub async fn refunds_committed(&self, charge_id: i64) -> Result<i64, sqlx::Error> {
        sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds WHERE charge_id = $1 AND status IN ('pending', 'succeeded')",
        )
        .bind(charge_id)
        .fetch_one(&self.pool)
        .await?
        .try_get(0)
    }

    pub async fn dispute(&self, dispute_id: i64) -> Result<Option<DisputeRow>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {DISPUTE_COLUMNS} FROM disputes WHERE dispute_id = $1"
        ))
        .bind(dispute_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(DisputeRow::from_row).transpose()
    }

    pub async fn disputes(
        &self,
        status: Option<DisputeStatus>,
        rider_id: Option<i64>,
    ) -> Result<Vec<DisputeRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {DISPUTE_COLUMNS} FROM disputes WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR rider_id = $2)
             ORDER BY created_at_ms DESC, dispute_id LIMIT 1000"
        ))
        .bind(status.map(DisputeStatus::as_str))
        .bind(rider_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(DisputeRow::from_row).collect()
    }

    pub async fn ticket_order(&self, order_id: i64) -> Result<Option<TicketOrderRow>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {TICKET_COLUMNS} FROM ticket_orders WHERE order_id = $1"
        ))
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(TicketOrderRow::from_row).transpose()
    }

    /// Charges the rider still owes through the bound agreement: pending, paying or failed, of
    /// every kind but tickets (an app ticket is paid by QR, never deducted).
    pub async fn rider_owed_through_agreement(&self, rider_id: i64) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM charges WHERE rider_id = $1
               AND status IN ($2, $3, $4) AND kind <> $5",
        )
        .bind(rider_id)
        .bind(ChargeStatus::Pending.as_str())
        .bind(ChargeStatus::Paying.as_str())
        .bind(ChargeStatus::Failed.as_str())
        .bind(ChargeKind::Ticket.as_str())
        .fetch_one(&self.pool)
        .await
    }

    /// How many of a rider's orders placed in the app are unpaid and still payable.
    pub async fn rider_pending_ticket_orders(&self, rider_id: i64) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM ticket_orders o JOIN charges c ON c.charge_id = o.charge_id
             WHERE o.rider_id = $1 AND c.status IN ('pending', 'paying')",
        )
        .bind(rider_id)
        .fetch_one(&self.pool)
        .await
    }

    /// A rider's ticket orders placed in the app, newest first.
    pub async fn rider_ticket_orders(
        &self,
        rider_id: i64,
        limit: i64,
    ) -> Result<Vec<TicketOrderRow>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {TICKET_COLUMNS} FROM ticket_orders WHERE rider_id = $1
             ORDER BY created_at_ms DESC, order_id DESC LIMIT $2"
        ))
        .bind(rider_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(TicketOrderRow::from_row).collect()
    }

    /// What the provider last said of the rider's real name: (provider user id, certified,
    /// checked at).
    pub async fn rider_real_name(&self, rider_id: i64) -> Result<Option<RealNameRow>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT provider_user_id, certified, checked_at_ms FROM rider_real_name WHERE rider_id = $1",
        )
        .bind(rider_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(RealNameRow {
                provider_user_id: r.try_get(0)?,
                certified: r.try_get::<i64, _>(1)? != 0,
                checked_at_ms: r.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Records what the provider said of the rider's real name (the latest answer wins).
    pub async fn set_rider_real_name(
        &self,
        rider_id: i64,
        row: &RealNameRow,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO rider_real_name (rider_id, provider_user_id, certified, checked_at_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (rider_id) DO UPDATE SET provider_user_id = excluded.provider_user_id,
                 certified = excluded.certified, checked_at_ms = excluded.checked_at_ms",
        )
        .bind(rider_id)
        .bind(&row.provider_user_id)
        .bind(i64::from(row.certified))
        .bind(row.checked_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn ticket_order_by_charge(
        &self,
        charge_id: i64,
    ) -> Result<Option<TicketOrderRow>, sqlx::Error> {
        let row = sqlx::query(&format!(
            "SELECT {TICKET_COLUMNS} FROM ticket_orders WHERE charge_id = $1"
        ))
        .bind(charge_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(TicketOrderRow::from_row).transpose()
    }

    /// Records a received notification; false if this notify_id was seen before.
    pub async fn record_notification(
        &self,
        notify_id: &str,
        out_trade_no: Option<&str>,
        trade_status: Option<&str>,
        verified: bool,
        applied: &str,
        now_ms: i64,
    ) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "INSERT INTO provider_notifications (notify_id, out_trade_no, trade_status, verified, applied, received_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(notify_id)
        .bind(out_trade_no)
        .bind(trade_status)
        .bind(verified as i64)
        .bind(applied)
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}

/// Reopens a toll journey whose exit payment failed, so the driver can pay at the exit
/// again; undoes the fare's addition to the rider's day and frees the exit code use.
pub async fn reopen_journey_in(
    tx: &mut Tx<'_>,
    journey_id: i64,
    terminal_id: &str,
    sequence: i64,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "SELECT rider_id, operator_id, business_day, fare_minor FROM journeys WHERE journey_id = $1 AND status = 'closed'",
    )
    .bind(journey_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let rider_id: i64 = row.try_get(0)?;
    let operator_id: String = row.try_get(1)?;
    let business_day: Option<String> = row.try_get(2)?;
    let fare_minor: Option<i64> = row.try_get(3)?;
    let n = sqlx::query(
        "UPDATE journeys SET status = 'open', exit_terminal_id = NULL, exit_sequence = NULL, exit_location_id = NULL,
                exit_at_ms = NULL, vehicle_class = NULL, close_reason = NULL, fare_minor = NULL, charge_minor = NULL,
                currency = NULL, business_day = NULL, closed_at_ms = NULL
         WHERE journey_id = $1 AND status = 'closed'
           AND NOT EXISTS (SELECT 1 FROM journeys o WHERE o.rider_id = $2 AND o.mode = 'toll'
                             AND (o.status = 'open' OR o.entry_at_ms > journeys.entry_at_ms))",
    )
    .bind(journey_id)
    .bind(rider_id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    if let (Some(day), Some(fare)) = (business_day, fare_minor) {
        sqlx::query(
            "UPDATE rider_days SET fares_total_minor = fares_total_minor - $4
             WHERE rider_id = $1 AND operator_id = $2 AND business_day = $3",
        )
        .bind(rider_id)
        .bind(&operator_id)
        .bind(&day)
        .bind(fare)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query(
        "DELETE FROM code_uses WHERE direction = 'exit' AND terminal_id = $1 AND sequence = $2",
    )
    .bind(terminal_id)
    .bind(sequence)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// Whether a tap's stored answer is an approval (a toll exit's final answer once written).
pub async fn tap_approved_in(
    tx: &mut Tx<'_>,
    terminal_id: &str,
    sequence: i64,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT decision FROM taps WHERE terminal_id = $1 AND sequence = $2")
        .bind(terminal_id)
        .bind(sequence)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<String, _>(0)? == "approve",
        None => false,
    })
}

/// A toll exit whose pay at the booth did not go through, but whose driver has left: the
/// charge becomes post-paid — `pending` on a new trade number (the old one is closed at the
/// provider), due now, for the capture worker to deduct through the rider's agreement. False if
/// the charge was no longer `paying` at `charge.attempt`.
pub async fn pay_later_in(
    tx: &mut Tx<'_>,
    charge: &ChargeRow,
    error: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    to_next_attempt(tx, charge, "'paying'", error, now_ms, now_ms).await
}

/// Replaces the stored answer of a tap (a toll exit's final answer after its payment).
pub async fn set_tap_answer_in(
    tx: &mut Tx<'_>,
    terminal_id: &str,
    sequence: i64,
    decision: &str,
    reason: Option<&str>,
    response: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE taps SET decision = $3, reason = $4, response = $5 WHERE terminal_id = $1 AND sequence = $2",
    )
    .bind(terminal_id)
    .bind(sequence)
    .bind(decision)
    .bind(reason)
    .bind(response)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A closed journey's list fare (for a toll exit's final answer).
pub async fn journey_fare_in(tx: &mut Tx<'_>, journey_id: i64) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query("SELECT fare_minor FROM journeys WHERE journey_id = $1")
        .bind(journey_id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row
        .map(|r| r.try_get::<Option<i64>, _>(0))
        .transpose()?
        .flatten())
}

/// Stores the QR payload the provider pre-created for a ticket order (once: an order whose
/// payload is already set keeps it). False when nothing changed.
pub async fn set_ticket_qr(
    tx: &mut Tx<'_>,
    order_id: i64,
    qr_payload: &str,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE ticket_orders SET qr_payload = $2 WHERE order_id = $1 AND qr_payload = ''",
    )
    .bind(order_id)
    .bind(qr_payload)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(n == 1)
}

impl Store {
    /// What was done with a recorded notification (`applied`), or None if its notify_id is new.
    pub async fn notification_applied(
        &self,
        notify_id: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query("SELECT applied FROM provider_notifications WHERE notify_id = $1")
            .bind(notify_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get(0)).transpose()
    }

    /// Records what processing a (verified) notification ended in.
    pub async fn set_notification_applied(
        &self,
        notify_id: &str,
        applied: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE provider_notifications SET applied = $2 WHERE notify_id = $1")
            .bind(notify_id)
            .bind(applied)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves every spelling of each stored enum reads back as itself and any other text is a
    /// decode error, not a string passed along.
    #[test]
    fn stored_spellings_read_back_or_fail() {
        for &kind in ChargeKind::ALL {
            let back = spelled(kind.as_str().to_string(), ChargeKind::parse, "charge kind");
            assert_eq!(back.unwrap(), kind);
        }
        for &status in ChargeStatus::ALL {
            let back = spelled(status.as_str().to_string(), ChargeStatus::parse, "status");
            assert_eq!(back.unwrap(), status);
        }
        for text in ["", "Captured", "captured ", "bogus"] {
            let read = spelled(text.to_string(), ChargeStatus::parse, "charge status");
            assert!(matches!(read, Err(sqlx::Error::Decode(_))), "{text:?}");
        }
        assert!(spelled("x".into(), RefundStatus::parse, "refund status").is_err());
        assert!(spelled("x".into(), DisputeStatus::parse, "dispute status").is_err());
    }
}

/// Which journal transactions a ledger summary covers: all, one business day's (read through
/// `ledger_by_day`), or one operator's part of a day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerScope {
    pub business_day: Option<String>,
    pub operator_id: Option<String>,
}

impl LedgerScope {
    /// The WHERE clause over `ledger_transactions t` (empty for the whole journal).
    fn filter(&self) -> &'static str {
        match (&self.business_day, &self.operator_id) {
            (None, None) => "",
            (Some(_), None) => " WHERE t.business_day = $1",
            (None, Some(_)) => " WHERE t.operator_id = $1",
            (Some(_), Some(_)) => " WHERE t.business_day = $1 AND t.operator_id = $2",
        }
    }

    /// The join from `ledger_lines l` to the transactions in scope (nothing for all of them).
    fn join_lines(&self) -> String {
        match self.filter() {
            "" => String::new(),
            filter => format!(" JOIN ledger_transactions t ON t.txn_id = l.txn_id{filter}"),
        }
    }

    fn bind<'q>(
        &'q self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for v in [&self.business_day, &self.operator_id]
            .into_iter()
            .flatten()
        {
            q = q.bind(v.as_str());
        }
        q
    }
}
