//! The transaction a tap group is judged in.
//!
//! A group's first try on PostgreSQL runs *pipelined*: its statements travel as text in the
//! simple query protocol, several per round trip, on a tap writer's own session
//! (`Store::tap_session`), each an `EXECUTE` of a statement the session prepared when it
//! connected (`waves::PG_PREPARED`), with the rows inlined as JSON literals.
//! `BEGIN` goes with the first wave's reads, a wave's writes go with the next wave's reads or
//! with `COMMIT`. A one-wave group costs two round trips (three when it closes a capped journey:
//! the daily-cap totals are read back before the charges are priced), where one statement per
//! rule cost seven. Prepared, the statements are parsed once per session and, with generic plans
//! forced for the session (`TAP_SESSION`), planned once.
//!
//! A deferred write that misses a row raises `WAVE_RACED` (see `waves::write_wave_sql`); the
//! error aborts the transaction, the statements after it in the same message are skipped (the
//! `COMMIT` too), and the caller judges the group again in a [`WaveTx::Plain`] transaction, rule
//! by rule. SQLite, in process with no round trip to save, always runs plain.
//!
//! Statements that need their answer before the wave can go on (the daily-cap totals, the
//! rule-by-rule writes of a wave that closes a stale journey) run on [`WaveTx::conn`], which
//! first sends whatever is deferred.

use std::collections::{HashMap, HashSet};

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::pool::PoolConnection;
use sqlx::{Any, Either, Executor};

use super::waves::{self as sets, CodeUse, RiderMode, StoredTap, TapKey};
use super::{Conn, JourneyRow, Store, Tx};

pub enum WaveTx {
    /// A sqlx transaction: one statement per call.
    Plain(Tx<'static>),
    /// PostgreSQL statements sent as text, several per round trip.
    Piped(Piped),
}

pub struct Piped {
    conn: PoolConnection<Any>,
    /// Statements not sent yet, `;`-separated.
    deferred: String,
    /// How many statements `deferred` holds.
    deferred_count: usize,
    /// Between our `BEGIN` (queued or sent) and a successful `COMMIT` or `ROLLBACK`.
    open: bool,
    /// Whether the `BEGIN` has reached the server.
    sent: bool,
}

/// What a wave reads before it judges.
pub struct Reads {
    pub existing: HashMap<TapKey, StoredTap>,
    /// Per code use: whether this tap consumed the code first (false for repeats, which
    /// consume nothing).
    pub first_use: Vec<bool>,
    pub open_journeys: Vec<JourneyRow>,
}

/// Every statement of a tap group is a point lookup or a keyed write. On a young database
/// (statistics from when the tables were empty) the planner still chose sequential scans and
/// hash joins for some of them, e.g. the journey close's `UPDATE … FROM`: every exit read the
/// whole `journeys` table. They are priced out: for the transaction (`SET LOCAL`) on the pool's
/// sessions, for good on the tap writers' own.
pub const POINT_LOOKUPS_ONLY: [&str; 2] = ["enable_seqscan = off", "enable_hashjoin = off"];

/// The settings of a tap writer's own session (`Store::tap_session`): point lookups only, and
/// the prepared statements' plans made once and kept (the pool's sessions plan per call, see
/// `Store::connect`). Set once per session rather than by `SET LOCAL` in every transaction.
pub const TAP_SESSION: [&str; 3] = [
    POINT_LOOKUPS_ONLY[0],
    POINT_LOOKUPS_ONLY[1],
    "plan_cache_mode = force_generic_plan",
];

impl WaveTx {
    /// Begins a group's transaction: pipelined if asked for and on PostgreSQL.
    pub async fn begin(store: &Store, pipelined: bool) -> Result<WaveTx, sqlx::Error> {
        match store.backend() {
            super::Backend::Postgres if pipelined => {
                let mut piped = Piped {
                    conn: store.tap_session().await?,
                    deferred: String::new(),
                    deferred_count: 0,
                    open: true,
                    sent: false,
                };
                piped.defer("BEGIN");
                Ok(WaveTx::Piped(piped))
            }
            super::Backend::Postgres => {
                let mut tx = store.begin().await?;
                let settings = POINT_LOOKUPS_ONLY.map(|setting| format!("SET LOCAL {setting}"));
                tx.execute(settings.join("; ").as_str()).await?;
                Ok(WaveTx::Plain(tx))
            }
            super::Backend::Sqlite => Ok(WaveTx::Plain(store.begin().await?)),
        }
    }

    /// Whether a wave's writes can be deferred into one statement (`defer_write`).
    pub fn is_piped(&self) -> bool {
        matches!(self, WaveTx::Piped(_))
    }

    /// The connection, for statements whose answer is needed at once; anything deferred is
    /// sent first.
    pub async fn conn(&mut self) -> Result<&mut Conn, sqlx::Error> {
        match self {
            WaveTx::Plain(tx) => Ok(&mut **tx),
            WaveTx::Piped(p) => {
                p.flush("").await?;
                Ok(&mut *p.conn)
            }
        }
    }

    /// The stored taps under `keys`, the code uses (consumed unless their tap is a repeat),
    /// and the riders' open journeys: one round trip when pipelined.
    pub async fn reads(
        &mut self,
        keys: &[TapKey],
        uses: &[CodeUse],
        riders: &[RiderMode],
    ) -> Result<Reads, sqlx::Error> {
        match self {
            WaveTx::Plain(tx) => {
                let existing = sets::existing_taps(tx, keys).await?;
                let fresh: Vec<CodeUse> = uses
                    .iter()
                    .filter(|u| !existing.contains_key(&u.key()))
                    .cloned()
                    .collect();
                let consumed = sets::consume_codes(tx, &fresh).await?;
                let won: HashSet<TapKey> = fresh
                    .iter()
                    .zip(consumed)
                    .filter(|(_, first)| *first)
                    .map(|(u, _)| u.key())
                    .collect();
                let first_use = uses.iter().map(|u| won.contains(&u.key())).collect();
                let open_journeys = sets::open_journeys(tx, riders).await?;
                Ok(Reads {
                    existing,
                    first_use,
                    open_journeys,
                })
            }
            WaveTx::Piped(p) => {
                let (sql, present) = sets::reads_sql(keys, uses, riders)?;
                let mut results = p.flush(&sql).await?.into_iter();
                let mut next = |there: bool| if there { results.next() } else { None };
                let existing = next(present[0]).unwrap_or_default();
                let consumed = next(present[1]).unwrap_or_default();
                let journeys = next(present[2]).unwrap_or_default();
                Ok(Reads {
                    existing: sets::stored_taps(&existing)?,
                    first_use: sets::first_uses(uses, &consumed)?,
                    open_journeys: journeys
                        .iter()
                        .map(JourneyRow::from_row)
                        .collect::<Result<_, _>>()?,
                })
            }
        }
    }

    /// Queues a wave's write statements (pipelined only): they go with the next round trip, and
    /// a missed row fails that round trip with `WAVE_RACED`.
    pub fn defer_write(&mut self, statements: Vec<String>) {
        match self {
            WaveTx::Plain(_) => unreachable!("only a pipelined transaction defers writes"),
            WaveTx::Piped(p) => statements.iter().for_each(|s| p.defer(s)),
        }
    }

    /// Adds a group's passenger-flow counts (`store::flow`): pipelined, deferred to go with
    /// the `COMMIT`; otherwise one upsert now.
    pub async fn add_flow(&mut self, counts: &[crate::flow::FlowCount]) -> Result<(), sqlx::Error> {
        if counts.is_empty() {
            return Ok(());
        }
        let shard = super::flow::pick_shard();
        match self {
            WaveTx::Plain(tx) => super::flow::add(tx, counts, shard).await,
            WaveTx::Piped(p) => {
                p.defer(&sets::flow_sql(counts, shard)?);
                Ok(())
            }
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            WaveTx::Plain(tx) => tx.commit().await,
            WaveTx::Piped(mut p) => match p.flush("COMMIT").await {
                Ok(_) => {
                    p.open = false;
                    Ok(())
                }
                Err(e) => {
                    // A deferred write failed (or the COMMIT did): roll back, keeping the
                    // connection if that works.
                    let _ = p.rollback().await;
                    Err(e)
                }
            },
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            WaveTx::Plain(tx) => tx.rollback().await,
            WaveTx::Piped(p) => p.rollback().await,
        }
    }
}

impl Piped {
    fn defer(&mut self, sql: &str) {
        if !self.deferred.is_empty() {
            self.deferred.push_str(";\n");
        }
        self.deferred.push_str(sql);
        self.deferred_count += 1;
    }

    /// Sends the deferred statements and then `sql` (if any) in one message; returns the rows
    /// of each statement of `sql`, in order.
    async fn flush(&mut self, sql: &str) -> Result<Vec<Vec<AnyRow>>, sqlx::Error> {
        let skip = self.deferred_count;
        let mut text = std::mem::take(&mut self.deferred);
        self.deferred_count = 0;
        if !sql.is_empty() {
            if !text.is_empty() {
                text.push_str(";\n");
            }
            text.push_str(sql);
        }
        if text.is_empty() {
            return Ok(Vec::new());
        }
        self.sent = true;
        // Each statement's rows end with its command-complete message (`Left`).
        let mut results = vec![Vec::new()];
        let conn: &mut Conn = &mut self.conn;
        let items: Vec<Either<_, AnyRow>> =
            conn.fetch_many(sqlx::raw_sql(&text)).try_collect().await?;
        for item in items {
            match item {
                Either::Left(_) => results.push(Vec::new()),
                Either::Right(row) => results.last_mut().expect("never empty").push(row),
            }
        }
        results.pop();
        Ok(results.into_iter().skip(skip).collect())
    }

    async fn rollback(mut self) -> Result<(), sqlx::Error> {
        if self.open && self.sent {
            let conn: &mut Conn = &mut self.conn;
            conn.execute("ROLLBACK").await?;
        }
        self.open = false;
        Ok(())
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        if self.open {
            // Dropped mid-transaction (an error, or a cancelled task): the connection may hold
            // an open or aborted transaction, so it must not serve anyone else. Closing it
            // makes the server roll back.
            self.conn.close_on_drop();
        }
    }
}
