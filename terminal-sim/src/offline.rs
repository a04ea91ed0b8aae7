//! A gate's offline buffer: when the link to the gateway is down, the gate still admits riders by
//! verifying their codes offline, and keeps every tap in its own embedded SQLite database
//! (`synchronous = FULL`, so a buffered tap survives the gate losing power). When the link
//! returns it uploads the buffer in batches of at most [`BATCH_TAPS_MAX`] taps, in sequence
//! order, and marks them uploaded with the gateway's answers.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use bytes::Bytes;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use turnpike_wire::api::{TapBatchResponse, BATCH_TAPS_MAX};

use crate::network::Terminal;

/// One gate's buffer.
pub struct OfflineBuffer {
    pool: SqlitePool,
    /// Held while deciding "buffer or send", and while the final drain flips the gate online, so
    /// no tap is buffered after the gate's last upload.
    pub gate: tokio::sync::Mutex<()>,
}

/// A buffered tap: its request JSON and the class it belongs to (for the report).
pub struct Buffered {
    pub sequence: u64,
    pub request_json: String,
    pub class: String,
}

/// What one upload round did.
#[derive(Debug, Default)]
pub struct Uploaded {
    /// (class, answer bytes) of each uploaded tap.
    pub taps: Vec<(String, Vec<u8>)>,
    /// Whether a second upload of the first batch got byte-identical answers.
    pub reupload_identical: Option<bool>,
    /// Why the upload stopped before the buffer was empty, after some batches went through
    /// (their answers are in `taps`; the rest stays pending for the next upload).
    pub stopped: Option<String>,
}

impl OfflineBuffer {
    /// Opens (creating) the buffer database at `path`.
    pub async fn open(path: &Path) -> anyhow::Result<OfflineBuffer> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS buffered_taps (
                sequence INTEGER PRIMARY KEY,
                request_json TEXT NOT NULL,
                class TEXT NOT NULL,
                answer_json TEXT
            )",
        )
        .execute(&pool)
        .await?;
        Ok(OfflineBuffer {
            pool,
            gate: tokio::sync::Mutex::new(()),
        })
    }

    /// Stores a tap durably (committed before the gate opens).
    pub async fn push(&self, tap: &Buffered) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO buffered_taps (sequence, request_json, class) VALUES ($1, $2, $3)",
        )
        .bind(tap.sequence as i64)
        .bind(&tap.request_json)
        .bind(&tap.class)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Taps not yet uploaded, oldest first, at most one batch.
    async fn pending(&self) -> anyhow::Result<Vec<Buffered>> {
        let rows = sqlx::query(
            "SELECT sequence, request_json, class FROM buffered_taps
             WHERE answer_json IS NULL ORDER BY sequence LIMIT $1",
        )
        .bind(BATCH_TAPS_MAX as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Buffered {
                sequence: r.get::<i64, _>(0) as u64,
                request_json: r.get(1),
                class: r.get(2),
            })
            .collect())
    }

    /// Uploads everything pending through `terminal`'s link, batch by batch. The first batch is
    /// sent twice when `check_idempotency` is set, and the two answers compared. Returns the
    /// (class, answer JSON) of every uploaded tap.
    pub async fn upload(
        &self,
        terminal: &Terminal,
        check_idempotency: bool,
    ) -> anyhow::Result<Uploaded> {
        let mut out = Uploaded::default();
        loop {
            let pending = self.pending().await?;
            if pending.is_empty() {
                return Ok(out);
            }
            let mut body = String::from("{\"taps\":[");
            for (i, tap) in pending.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&tap.request_json);
            }
            body.push_str("]}");
            let body = Bytes::from(body);
            let reply = post_with_retries(terminal, body.clone())
                .await
                .and_then(|reply| {
                    anyhow::ensure!(
                        reply.status == 200,
                        "batch upload of {}: HTTP {}: {}",
                        terminal.id,
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    );
                    Ok(reply)
                });
            let reply = match reply {
                Ok(reply) => reply,
                Err(e) if out.taps.is_empty() => return Err(e),
                Err(e) => {
                    out.stopped = Some(format!("{e:#}"));
                    return Ok(out);
                }
            };
            if check_idempotency && out.reupload_identical.is_none() {
                // A 503 is "ask again", not an answer: the repeat is retried like the upload.
                let again = post_with_retries(terminal, body).await?;
                out.reupload_identical = Some(again.status == 200 && again.body == reply.body);
            }
            let answers: TapBatchResponse = serde_json::from_slice(&reply.body)?;
            anyhow::ensure!(answers.results.len() == pending.len(), "answer count");
            let mut tx = self.pool.begin().await?;
            for (tap, answer) in pending.iter().zip(&answers.results) {
                let json = serde_json::to_string(answer)?;
                sqlx::query("UPDATE buffered_taps SET answer_json = $1 WHERE sequence = $2")
                    .bind(&json)
                    .bind(tap.sequence as i64)
                    .execute(&mut *tx)
                    .await?;
                out.taps.push((tap.class.clone(), json.into_bytes()));
            }
            tx.commit().await?;
        }
    }

    /// Buffered taps in total and those uploaded (for tests and the report).
    pub async fn counts(&self) -> anyhow::Result<(u64, u64)> {
        let row = sqlx::query("SELECT COUNT(*), COUNT(answer_json) FROM buffered_taps")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.get::<i64, _>(0) as u64, row.get::<i64, _>(1) as u64))
    }
}

/// Tries a batch upload this many times while the gateway answers 503 or the link fails.
const UPLOAD_TRIES_MAX: u32 = 6;
/// First pause between tries; doubled each time (0.1 + 0.2 + … ≈ 3 s in all).
const UPLOAD_BACKOFF_FIRST_MS: u64 = 100;

async fn post_with_retries(
    terminal: &Terminal,
    body: Bytes,
) -> anyhow::Result<crate::transport::Reply> {
    let mut pause_ms = UPLOAD_BACKOFF_FIRST_MS;
    let mut tries = 1;
    loop {
        let reply = terminal.link.post("/v1/taps/batch", body.clone()).await;
        match reply {
            Ok(r) if r.status != 503 => return Ok(r),
            Ok(_) | Err(_) if tries < UPLOAD_TRIES_MAX => {
                tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
                pause_ms *= 2;
                tries += 1;
            }
            other => return other,
        }
    }
}
