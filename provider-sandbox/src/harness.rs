//! The sandbox run in-process for tests, shared by this crate's own suite
//! (`provider-sandbox/tests/common`) and the end-to-end suite (`tests/src/provider.rs`), so there
//! is one way to start it, restart it and talk to it.
//!
//! [`TestSandbox`] starts the real server on a loopback port with the database it is given (the
//! caller creates and keeps the database: `turnpike-test-support` does that per test), registers
//! the dev app, and talks to it the way a merchant would: requests signed with the dev app key,
//! every answer's signature verified with the platform's public key before the test sees it. It
//! also drives the `/sandbox/...` admin endpoints. Every helper panics on a failure: it is test
//! code, and a panic names what failed.
//!
//! It lives in the library (not behind a feature: the workspace keeps one feature set per
//! dependency) because both suites need it and `turnpike-test-support`, a dev-dependency of this
//! crate, must not depend on it. The production gateway never links this crate.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sign::{self, Signer, Verifier};
use crate::{Config, Sandbox};

/// The merchant app id registered at start, with the dev app key.
pub const APP_ID: &str = "2021000000000001";

/// The dev keys shipped with the sandbox (app and platform key pairs).
pub fn dev_keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dev-keys")
}

/// Changes the sandbox's configuration before it starts, and again at every restart.
pub type Tweak = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// A sandbox running in this process (or as its own process, [`TestSandbox::start_process`]),
/// with a merchant client for it.
pub struct TestSandbox {
    pub base_url: String,
    database_url: String,
    /// `127.0.0.1:0` until the first start; then the bound port, kept across restarts so URLs
    /// handed out (a gateway's configured provider URL) stay right.
    addr: SocketAddr,
    tweak: Tweak,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// Set by [`TestSandbox::start_process`]: the `provider-sandbox` binary the sandbox runs as,
    /// and the running process (killed when dropped).
    process: Option<(PathBuf, Option<std::process::Child>)>,
    http: reqwest::Client,
    app_key: Signer,
    platform_key: Verifier,
}

impl TestSandbox {
    /// Starts a sandbox on `database_url` (migrating it) on a free loopback port, with `tweak`
    /// applied to its configuration, and registers the dev app as [`APP_ID`].
    pub async fn start(database_url: String, tweak: Tweak) -> TestSandbox {
        TestSandbox::start_with(database_url, tweak, None).await
    }

    /// [`TestSandbox::start`] as its own process: `bin` (this build's `provider-sandbox`)
    /// serving on a free loopback port, so a test can kill it with SIGKILL
    /// ([`TestSandbox::crash_and_restart`]). The configuration is the binary's defaults (no
    /// tweak).
    pub async fn start_process(database_url: String, bin: PathBuf) -> TestSandbox {
        TestSandbox::start_with(database_url, Arc::new(|_| {}), Some(bin)).await
    }

    async fn start_with(database_url: String, tweak: Tweak, bin: Option<PathBuf>) -> TestSandbox {
        let keys = dev_keys_dir();
        let addr = match bin {
            // The port is chosen here so restarts keep it.
            Some(_) => std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port"),
            None => "127.0.0.1:0".parse().expect("literal"),
        };
        let mut s = TestSandbox {
            base_url: String::new(),
            database_url,
            addr,
            tweak,
            stop: None,
            task: None,
            process: bin.map(|b| (b, None)),
            http: reqwest::Client::new(),
            app_key: Signer::from_file(&keys.join("app-private.pem")).expect("the dev app key"),
            platform_key: Verifier::from_file(&keys.join("platform-public.pem"))
                .expect("the dev platform key"),
        };
        s.launch(|_| {}).await;
        let app_public =
            std::fs::read_to_string(keys.join("app-public.pem")).expect("reading the dev app key");
        let (status, body) = s
            .admin_post(
                "/sandbox/apps",
                json!({ "app_id": APP_ID, "public_key": app_public }),
            )
            .await;
        assert_eq!(status, 200, "registering the app: {body}");
        s
    }

    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    async fn launch(&mut self, once: impl FnOnce(&mut Config)) {
        if let Some((bin, child)) = &mut self.process {
            let spawned = std::process::Command::new(&*bin)
                .args(["serve", "--listen", &self.addr.to_string(), "--database"])
                .arg(&self.database_url)
                .arg("--keys")
                .arg(dev_keys_dir())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("starting the sandbox process");
            *child = Some(spawned);
            self.base_url = format!("http://{}", self.addr);
            let started = std::time::Instant::now();
            loop {
                let up = self
                    .http
                    .get(format!("{}/sandbox/faults", self.base_url))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if up {
                    return;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the sandbox process did not start"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        let mut config = Config::new(self.addr, self.database_url.clone(), dev_keys_dir());
        (self.tweak)(&mut config);
        once(&mut config);
        let sandbox = Sandbox::build(config).await.expect("building the sandbox");
        self.addr = sandbox.addr();
        self.base_url = format!("http://{}", self.addr);
        let (tx, rx) = oneshot::channel::<()>();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(sandbox.run_until(async {
            let _ = rx.await;
        })));
    }

    /// Stops the server, draining it, and waits until it has stopped.
    pub async fn stop(&mut self) {
        if let Some((_, child)) = &mut self.process {
            if let Some(mut child) = child.take() {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let _ = tokio::task::spawn_blocking(move || child.wait()).await;
            }
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("sandbox task").expect("sandbox stopped");
        }
    }

    /// Stops the server the hard way — its task aborted, in-flight requests and transactions
    /// dropped, as a killed process would — and starts it again on the same port and database.
    pub async fn crash_and_restart(&mut self) {
        if let Some((_, child)) = &mut self.process {
            // A process: SIGKILL (std's kill on Unix), as the machine losing it would.
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = tokio::task::spawn_blocking(move || child.wait()).await;
            }
            self.launch(|_| {}).await;
            return;
        }
        self.stop.take();
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.launch(|_| {}).await;
    }

    /// Stops the server (draining it) and starts it again on the same port and database.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await;
    }

    /// [`TestSandbox::restart`] with `once` applied to the configuration after the start's
    /// tweak (a later restart drops it).
    pub async fn restart_with(&mut self, once: impl FnOnce(&mut Config)) {
        self.stop().await;
        self.launch(once).await;
    }

    async fn admin(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = request.send().await.expect("sandbox admin call");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `POST /sandbox/...` with a JSON body: (status, JSON answer or null).
    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.base_url);
        self.admin(self.http.post(url).json(&body)).await
    }

    pub async fn admin_put(&self, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.base_url);
        self.admin(self.http.put(url).json(&body)).await
    }

    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base_url);
        self.admin(self.http.get(url)).await
    }

    pub async fn admin_delete(&self, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base_url);
        self.admin(self.http.delete(url)).await
    }

    /// Creates a buyer with `balance` yuan (payments above `confirm_over` wait for the buyer to
    /// confirm); returns the user id.
    pub async fn create_user(&self, balance: &str, confirm_over: Option<&str>) -> String {
        let body = json!({ "balance": balance, "confirm_over": confirm_over });
        let (status, user) = self.admin_post("/sandbox/users", body).await;
        assert_eq!(status, 201, "creating a wallet: {user}");
        user["user_id"].as_str().expect("user_id").to_string()
    }

    /// A one-time payment code of the user's wallet (the code a booth scans).
    pub async fn issue_code(&self, user_id: &str) -> String {
        let path = format!("/sandbox/users/{user_id}/payment-codes");
        let (status, code) = self.admin_post(&path, json!({})).await;
        assert_eq!(status, 201, "issuing a code: {code}");
        code["auth_code"].as_str().expect("auth_code").to_string()
    }

    /// The wallet's balance in yuan, as the sandbox writes it ("12.50").
    pub async fn balance(&self, user_id: &str) -> String {
        let (status, user) = self.admin_get(&format!("/sandbox/users/{user_id}")).await;
        assert_eq!(status, 200, "{user}");
        user["balance"].as_str().expect("balance").to_string()
    }

    /// Tops a wallet up by `amount_fen`.
    pub async fn top_up(&self, user_id: &str, amount_fen: i64) {
        let path = format!("/sandbox/users/{user_id}/top-up");
        let (status, body) = self
            .admin_post(&path, json!({ "amount_fen": amount_fen }))
            .await;
        assert_eq!(status, 200, "top-up: {body}");
    }

    /// Sets the fault knobs.
    pub async fn set_faults(&self, faults: Value) {
        let (status, body) = self.admin_put("/sandbox/faults", faults).await;
        assert_eq!(status, 200, "setting faults: {body}");
    }

    /// A trade as the sandbox's admin view shows it.
    pub async fn trade(&self, trade_no: &str) -> Value {
        let (status, trade) = self.admin_get(&format!("/sandbox/trades/{trade_no}")).await;
        assert_eq!(status, 200, "{trade}");
        trade
    }

    /// Notifications the sandbox recorded for an order (admin view).
    pub async fn notifications(&self, out_trade_no: &str) -> Vec<Value> {
        let path = format!("/sandbox/notifications?out_trade_no={out_trade_no}");
        let (status, list) = self.admin_get(&path).await;
        assert_eq!(status, 200, "{list}");
        list.as_array().expect("a list").clone()
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

    /// Fetches a URL the sandbox handed out; returns status and body bytes.
    pub async fn get_bytes(&self, url: &str) -> (u16, Vec<u8>) {
        let resp = self.http.get(url).send().await.expect("fetching a URL");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("a body").to_vec())
    }

    /// The common parameters of a call, as an SDK builds them.
    pub fn params(&self, method: &str, biz: &Value) -> Vec<(String, String)> {
        let timestamp = crate::time::api_time(crate::time::now_ms());
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
        self.call_with(method, biz, &[]).await
    }

    /// Calls a method with extra common parameters (e.g. `notify_url`).
    pub async fn call_with(&self, method: &str, biz: Value, extra: &[(&str, &str)]) -> Value {
        let mut params = self.params(method, &biz);
        params.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let params = self.sign(params);
        self.post_gateway(&params, &response_key(method)).await
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
            .expect("posting to /gateway.do");
        verified_answer(&self.platform_key, resp, response_key).await
    }

    /// Sends a call as a GET with every parameter in the query string, as some independent
    /// client libraries do; checks the answer like [`TestSandbox::post_gateway`].
    pub async fn get_gateway(&self, params: &[(String, String)], response_key: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}/gateway.do", self.base_url))
            .query(params)
            .send()
            .await
            .expect("GET /gateway.do");
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

impl Drop for TestSandbox {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some((_, Some(child))) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `alipay.trade.pay` → `alipay_trade_pay_response`.
fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// The `response_key` value of a signed answer, after checking the platform's signature over
/// its exact text.
async fn verified_answer(
    platform_key: &Verifier,
    resp: reqwest::Response,
    response_key: &str,
) -> Value {
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("an answer");
    let prefix = format!("{{\"{response_key}\":");
    assert!(text.starts_with(&prefix), "unexpected answer: {text}");
    let sign_at = text.rfind(",\"sign\":\"").expect("answer carries a sign");
    let inner = &text[prefix.len()..sign_at];
    let whole: Value = serde_json::from_str(&text).expect("a JSON answer");
    let sign = whole["sign"].as_str().expect("sign is a string");
    assert!(
        platform_key.verify(inner, sign),
        "platform signature does not verify: {text}"
    );
    let value: Value = serde_json::from_str(inner).expect("a JSON response value");
    assert_eq!(value, whole[response_key]);
    value
}
