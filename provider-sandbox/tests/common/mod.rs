//! Test harness: starts the real sandbox on a random loopback port with a fresh database (a
//! SQLite file, or a new PostgreSQL database per test), and talks to it over real HTTP the way
//! a merchant would — requests signed with the dev app key, every answer's signature verified
//! with the platform's public key before the test looks at it.
//!
//! PostgreSQL tests use `TURNPIKE_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! When it is unreachable they are skipped with a message, unless `TURNPIKE_REQUIRE_PG=1`.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use provider_sandbox::sign::{self, Signer, Verifier};
use provider_sandbox::{Config, Sandbox};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const APP_ID: &str = "2021000000000001";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs a test body once per database.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::common::Db::Postgres).await
            }
        }
    };
}

fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dev-keys")
}

pub use turnpike_test_support::{PgDatabase, Scratch};

/// Changes the sandbox's configuration before it starts (and again at every restart).
pub type Tweak = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// A running sandbox plus a merchant client for it.
pub struct Harness {
    pub base_url: String,
    database_url: String,
    payment_code_ttl_ms: u64,
    tweak: Tweak,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    http: reqwest::Client,
    app_key: Signer,
    platform_key: Verifier,
    _pg: Option<PgDatabase>,
    _scratch: Scratch,
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

    async fn start_configured(db: Db, payment_code_ttl_ms: u64, tweak: Tweak) -> Option<Harness> {
        let scratch = Scratch::new("sandbox");
        let (database_url, pg) = match db {
            Db::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    scratch.0.join("sandbox.db").display()
                ),
                None,
            ),
            Db::Postgres => {
                let pg = PgDatabase::create().await?;
                (pg.url.clone(), Some(pg))
            }
        };
        let mut h = Harness {
            base_url: String::new(),
            database_url,
            payment_code_ttl_ms,
            tweak,
            shutdown: None,
            task: None,
            http: reqwest::Client::new(),
            app_key: Signer::from_file(&keys_dir().join("app-private.pem")).unwrap(),
            platform_key: Verifier::from_file(&keys_dir().join("platform-public.pem")).unwrap(),
            _pg: pg,
            _scratch: scratch,
        };
        h.launch().await;
        let app_public = std::fs::read_to_string(keys_dir().join("app-public.pem")).unwrap();
        let (status, _) = h
            .admin_post(
                "/sandbox/apps",
                json!({ "app_id": APP_ID, "public_key": app_public }),
            )
            .await;
        assert_eq!(status, 200);
        Some(h)
    }

    async fn launch(&mut self) {
        let mut config = Config::new(
            "127.0.0.1:0".parse().unwrap(),
            self.database_url.clone(),
            keys_dir(),
        );
        config.payment_code_ttl_ms = self.payment_code_ttl_ms;
        config.notify_retry_ms = vec![50, 100, 200];
        config.notify_poll_ms = 20;
        config.notify_attempt_timeout_ms = 1_000;
        config.sweep_interval_ms = 20;
        (self.tweak)(&mut config);
        let sandbox = Sandbox::build(config).await.expect("building the sandbox");
        self.base_url = format!("http://{}", sandbox.addr());
        let (tx, rx) = oneshot::channel::<()>();
        self.shutdown = Some(tx);
        self.task = Some(tokio::spawn(sandbox.run_until(async {
            let _ = rx.await;
        })));
    }

    /// Stops the server (draining it) and starts a new one on the same database.
    pub async fn restart(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.launch().await;
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base_url))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_put(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .put(format!("{}{path}", self.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_delete(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .delete(format!("{}{path}", self.base_url))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Notifications the sandbox recorded for an order (admin view).
    pub async fn notifications(&self, out_trade_no: &str) -> Vec<Value> {
        let (status, list) = self
            .admin_get(&format!(
                "/sandbox/notifications?out_trade_no={out_trade_no}"
            ))
            .await;
        assert_eq!(status, 200, "{list}");
        list.as_array().unwrap().clone()
    }

    /// Waits (up to 10 s) until `done` holds for the order's notifications; returns them.
    pub async fn wait_notifications(
        &self,
        out_trade_no: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        for _ in 0..500 {
            let list = self.notifications(out_trade_no).await;
            if done(&list) {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "notifications for {out_trade_no} never got there: {:?}",
            self.notifications(out_trade_no).await
        );
    }

    /// True when `params` (a received notification) carries a valid platform signature over
    /// the canonical notification string (everything but sign and sign_type).
    pub fn notification_signed(&self, params: &BTreeMap<String, String>) -> bool {
        let content =
            sign::canonical_notification(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        params
            .get("sign")
            .is_some_and(|s| self.platform_key.verify(&content, s))
    }

    /// Tops a wallet up by `amount_fen`.
    pub async fn top_up(&self, user_id: &str, amount_fen: i64) {
        let (status, body) = self
            .admin_post(
                &format!("/sandbox/users/{user_id}/top-up"),
                json!({ "amount_fen": amount_fen }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Sets the fault knobs.
    pub async fn set_faults(&self, faults: Value) {
        let (status, body) = self.admin_put("/sandbox/faults", faults).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Posts a signed call and returns the raw HTTP result (for fault knobs that break HTTP).
    pub async fn raw_call(&self, method: &str, biz: Value) -> reqwest::Result<reqwest::Response> {
        let params = self.sign(self.params(method, &biz));
        self.http
            .post(format!("{}/gateway.do", self.base_url))
            .form(&params)
            .timeout(Duration::from_secs(10))
            .send()
            .await
    }

    /// Calls a method with extra common parameters (e.g. `notify_url`).
    pub async fn call_with(&self, method: &str, biz: Value, extra: &[(&str, &str)]) -> Value {
        let mut params = self.params(method, &biz);
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let params = self.sign(params);
        self.post_gateway(&params, &format!("{}_response", method.replace('.', "_")))
            .await
    }

    /// Fetches a URL the sandbox handed out; returns status and body bytes.
    pub async fn get_bytes(&self, url: &str) -> (u16, Vec<u8>) {
        let resp = self.http.get(url).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.bytes().await.unwrap().to_vec())
    }

    /// Creates a buyer with `balance` yuan; returns the user id.
    pub async fn create_user(&self, balance: &str, confirm_over: Option<&str>) -> String {
        let (status, user) = self
            .admin_post(
                "/sandbox/users",
                json!({ "balance": balance, "confirm_over": confirm_over }),
            )
            .await;
        assert_eq!(status, 201, "{user}");
        user["user_id"].as_str().unwrap().to_string()
    }

    pub async fn issue_code(&self, user_id: &str) -> String {
        let (status, code) = self
            .admin_post(
                &format!("/sandbox/users/{user_id}/payment-codes"),
                json!({}),
            )
            .await;
        assert_eq!(status, 201, "{code}");
        code["auth_code"].as_str().unwrap().to_string()
    }

    pub async fn balance(&self, user_id: &str) -> String {
        let (status, user) = self.admin_get(&format!("/sandbox/users/{user_id}")).await;
        assert_eq!(status, 200);
        user["balance"].as_str().unwrap().to_string()
    }

    pub async fn trade(&self, trade_no: &str) -> Value {
        let (status, trade) = self.admin_get(&format!("/sandbox/trades/{trade_no}")).await;
        assert_eq!(status, 200, "{trade}");
        trade
    }

    /// The common parameters of a call, as an SDK builds them.
    pub fn params(&self, method: &str, biz: &Value) -> Vec<(String, String)> {
        let timestamp = provider_sandbox::time::api_time(provider_sandbox::time::now_ms());
        vec![
            ("app_id".into(), APP_ID.into()),
            ("method".into(), method.into()),
            ("format".into(), "JSON".into()),
            ("charset".into(), "utf-8".into()),
            ("sign_type".into(), "RSA2".into()),
            ("timestamp".into(), timestamp),
            ("version".into(), "1.0".into()),
            ("biz_content".into(), biz.to_string()),
        ]
    }

    /// Signs `params` with the app key and appends `sign`.
    pub fn sign(&self, mut params: Vec<(String, String)>) -> Vec<(String, String)> {
        let content = sign::canonical_request(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        params.push(("sign".into(), self.app_key.sign(&content)));
        params
    }

    /// Calls a method and returns the verified `<method>_response` value.
    pub async fn call(&self, method: &str, biz: Value) -> Value {
        let params = self.sign(self.params(method, &biz));
        self.post_gateway(&params, &format!("{}_response", method.replace('.', "_")))
            .await
    }

    /// Posts to /gateway.do like the SDKs: common parameters in the query string, biz_content
    /// in the form body. Checks the answer's signature over the exact `response_key` text.
    pub async fn post_gateway(&self, params: &[(String, String)], response_key: &str) -> Value {
        let (body_params, query_params): (Vec<_>, Vec<_>) = params
            .iter()
            .cloned()
            .partition(|(k, _)| k == "biz_content");
        let resp = self
            .http
            .post(format!("{}/gateway.do", self.base_url))
            .query(&query_params)
            .form(&body_params)
            .send()
            .await
            .unwrap();
        verified_answer(&self.platform_key, resp, response_key).await
    }

    /// Sends a call as a GET with every parameter in the query string, as some independent
    /// client libraries do; checks the answer like [`Harness::post_gateway`].
    pub async fn get_gateway(&self, params: &[(String, String)], response_key: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}/gateway.do", self.base_url))
            .query(params)
            .send()
            .await
            .unwrap();
        verified_answer(&self.platform_key, resp, response_key).await
    }

    /// A signed `alipay.user.agreement.page.sign` link for the merchant number `external`, as a
    /// merchant hands it to the buyer, with `notify_url` if given.
    pub fn page_sign_url(&self, external: &str, notify_url: Option<&str>) -> String {
        let biz = json!({
            "personal_product_code": "GENERAL_WITHHOLDING_P",
            "sign_scene": "INDUSTRY|DEFAULT_SCENE",
            "external_agreement_no": external,
            "access_params": { "channel": "ALIPAYAPP" },
        });
        let mut params = self.params("alipay.user.agreement.page.sign", &biz);
        if let Some(url) = notify_url {
            params.push(("notify_url".into(), url.into()));
        }
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.sign(params))
            .finish();
        format!("{}/gateway.do?{query}", self.base_url)
    }
}

/// The `response_key` value of a signed answer, after checking the platform's signature over
/// its exact text.
async fn verified_answer(
    platform_key: &sign::Verifier,
    resp: reqwest::Response,
    response_key: &str,
) -> Value {
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.unwrap();
    let prefix = format!("{{\"{response_key}\":");
    assert!(text.starts_with(&prefix), "unexpected answer: {text}");
    let sign_at = text.rfind(",\"sign\":\"").expect("answer carries a sign");
    let inner = &text[prefix.len()..sign_at];
    let whole: Value = serde_json::from_str(&text).unwrap();
    let sign = whole["sign"].as_str().unwrap();
    assert!(
        platform_key.verify(inner, sign),
        "platform signature does not verify: {text}"
    );
    let value: Value = serde_json::from_str(inner).unwrap();
    assert_eq!(value, whole[response_key]);
    value
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
