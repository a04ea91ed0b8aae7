//! Test harness: the shared in-process sandbox (`provider_sandbox::harness::TestSandbox`) on a
//! fresh database per test (a SQLite file, or a new PostgreSQL database), with test-speed
//! background work; it talks to the sandbox over real HTTP the way a merchant would — requests
//! signed with the dev app key, every answer's signature verified with the platform's public key
//! before the test looks at it. Also a merchant's notify endpoint ([`Receiver`]).
//!
//! PostgreSQL tests use `TURNPIKE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! When it is unreachable they are skipped with a message, unless `TURNPIKE_REQUIRE_PG=1`.

#![allow(dead_code, unused_imports)] // each test file uses the part it needs

use std::collections::{BTreeMap, VecDeque};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use provider_sandbox::harness::{TestSandbox, Tweak};
use provider_sandbox::Config;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

pub use provider_sandbox::harness::APP_ID;
pub use turnpike_test_support::{on_both, Database, Db, PgDatabase, Scratch};

/// A running sandbox plus a merchant client for it (the shared [`TestSandbox`]), on a fresh
/// database that lives as long as it does.
pub struct Harness {
    sandbox: TestSandbox,
    _db: Database,
    _scratch: Scratch,
}

impl Deref for Harness {
    type Target = TestSandbox;
    fn deref(&self) -> &TestSandbox {
        &self.sandbox
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut TestSandbox {
        &mut self.sandbox
    }
}

impl Harness {
    /// Starts a sandbox on a fresh database with the dev app registered; None when the database
    /// is unavailable (PostgreSQL not running and not required).
    pub async fn start(db: Db) -> Option<Harness> {
        Harness::start_with_ttl(db, 60_000).await
    }

    pub async fn start_with_ttl(db: Db, payment_code_ttl_ms: u64) -> Option<Harness> {
        Harness::start_configured(db, payment_code_ttl_ms, Arc::new(|_| {})).await
    }

    /// Starts with test-speed background work (notification retries 50, 100, 200 ms; polling and
    /// sweeping every 20 ms) and then `tweak` applied.
    pub async fn start_with(
        db: Db,
        tweak: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> Option<Harness> {
        Harness::start_configured(db, 60_000, Arc::new(tweak)).await
    }

    /// Test-speed background work, then `tweak`, at every start and restart.
    async fn start_configured(db: Db, payment_code_ttl_ms: u64, tweak: Tweak) -> Option<Harness> {
        let scratch = Scratch::new("sandbox");
        let database = Database::create(db, &scratch, "sandbox.db").await?;
        let at_every_start: Tweak = Arc::new(move |config: &mut Config| {
            config.payment_code_ttl_ms = payment_code_ttl_ms;
            config.notify_retry_ms = vec![50, 100, 200];
            config.notify_poll_ms = 20;
            config.notify_attempt_timeout_ms = 1_000;
            config.sweep_interval_ms = 20;
            tweak(config);
        });
        let sandbox = TestSandbox::start(database.url().to_string(), at_every_start).await;
        Some(Harness {
            sandbox,
            _db: database,
            _scratch: scratch,
        })
    }
}

/// A pay request's biz_content.
pub fn pay_biz(out_trade_no: &str, auth_code: &str, amount: &str) -> Value {
    json!({
        "out_trade_no": out_trade_no,
        "scene": "bar_code",
        "auth_code": auth_code,
        "total_amount": amount,
        "subject": "Toll G4 exit 12",
    })
}

/// Asserts a business refusal with the given sub_code.
pub fn assert_refused(answer: &Value, code: &str, sub_code: &str) {
    assert_eq!(answer["code"], code, "{answer}");
    assert_eq!(answer["sub_code"], sub_code, "{answer}");
}

/// A merchant's notify_url endpoint: records every notification posted to it and answers from a
/// script of (status, body) replies, then `200 success` once the script is used up.
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    replies: Arc<Mutex<VecDeque<(u16, String)>>>,
    _task: JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let replies: Arc<Mutex<VecDeque<(u16, String)>>> = Arc::new(Mutex::new(VecDeque::new()));
        let (rec, rep) = (received.clone(), replies.clone());
        let app = axum::Router::new().route(
            "/notify",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (rec, rep) = (rec.clone(), rep.clone());
                async move {
                    let params: BTreeMap<String, String> = form_urlencoded::parse(&body)
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                    rec.lock().unwrap().push(params);
                    let (status, text) = rep
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or((200, "success".into()));
                    (axum::http::StatusCode::from_u16(status).unwrap(), text)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            received,
            replies,
            _task: task,
        }
    }

    /// Queues replies for the next notifications, in order.
    pub fn reply(&self, replies: &[(u16, &str)]) {
        self.replies
            .lock()
            .unwrap()
            .extend(replies.iter().map(|(s, b)| (*s, b.to_string())));
    }

    pub fn received(&self) -> Vec<BTreeMap<String, String>> {
        self.received.lock().unwrap().clone()
    }

    /// Posts received for one order.
    pub fn for_order(&self, out_trade_no: &str) -> Vec<BTreeMap<String, String>> {
        self.received()
            .into_iter()
            .filter(|p| p.get("out_trade_no").map(String::as_str) == Some(out_trade_no))
            .collect()
    }

    /// Waits (up to 10 s) until `n` posts arrived for the order; returns them.
    pub async fn wait_for(&self, out_trade_no: &str, n: usize) -> Vec<BTreeMap<String, String>> {
        for _ in 0..500 {
            let got = self.for_order(out_trade_no);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "expected {n} notifications for {out_trade_no}, got {:?}",
            self.for_order(out_trade_no)
        );
    }
}
