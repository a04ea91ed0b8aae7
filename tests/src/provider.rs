//! A gateway wired to a real provider sandbox over HTTP: the sandbox runs in this process on its
//! own loopback port and its own database (the same kind as the gateway's), exactly as a
//! separate provider would; the gateway's provider client signs and verifies with the dev keys.

use std::ops::{Deref, DerefMut};

use gateway::config::Config;
use provider_sandbox::harness::TestSandbox;
pub use provider_sandbox::harness::{dev_keys_dir as sandbox_keys, APP_ID};
use serde_json::{json, Value};
use sqlx::Row;

use crate::{Database, Db, Env, Scratch};

/// The sandbox of a test (the shared harness, [`TestSandbox`]: start, restart, signed calls,
/// `/sandbox/...` helpers) on its own database, with what the end-to-end tests add: amounts in
/// fen, wallet signing, and reading the sandbox's database directly.
pub struct Sandbox {
    sandbox: TestSandbox,
    _db: Database,
}

impl Deref for Sandbox {
    type Target = TestSandbox;
    fn deref(&self) -> &TestSandbox {
        &self.sandbox
    }
}

impl DerefMut for Sandbox {
    fn deref_mut(&mut self) -> &mut TestSandbox {
        &mut self.sandbox
    }
}

impl Sandbox {
    pub async fn start(db: Db, scratch: &Scratch) -> Option<Sandbox> {
        let database = Database::create(db, scratch, "sandbox.db").await?;
        let sandbox =
            TestSandbox::start(database.url().to_string(), std::sync::Arc::new(|_| {})).await;
        Some(Sandbox {
            sandbox,
            _db: database,
        })
    }

    /// [`Sandbox::start`] as its own process (`bin`, this build's `provider-sandbox`), which a
    /// test may kill with SIGKILL (`crash_and_restart`).
    pub async fn start_process(
        db: Db,
        scratch: &Scratch,
        bin: std::path::PathBuf,
    ) -> Option<Sandbox> {
        let database = Database::create(db, scratch, "sandbox.db").await?;
        let sandbox = TestSandbox::start_process(database.url().to_string(), bin).await;
        Some(Sandbox {
            sandbox,
            _db: database,
        })
    }

    /// A wallet with `balance_fen`; payments above `confirm_over_fen` wait for the buyer.
    pub async fn wallet(&self, balance_fen: i64, confirm_over_fen: Option<i64>) -> String {
        let yuan = gateway::provider::yuan;
        let confirm_over = confirm_over_fen.map(yuan);
        self.create_user(&yuan(balance_fen), confirm_over.as_deref())
            .await
    }

    pub async fn balance_fen(&self, user_id: &str) -> i64 {
        gateway::provider::parse_yuan(&self.balance(user_id).await).expect("yuan")
    }

    /// The wallet `user_id` opens a merchant's signing link and signs it (deductions up to
    /// `single_limit_fen`); the sandbox's answer (status, agreement).
    pub async fn sign_in_wallet(
        &self,
        user_id: &str,
        sign_url: &str,
        single_limit_fen: i64,
    ) -> (u16, Value) {
        self.admin_post(
            &format!("/sandbox/users/{user_id}/agreement-signings"),
            json!({ "sign_url": sign_url, "single_limit_fen": single_limit_fen }),
        )
        .await
    }

    /// The trade a pay left waiting for the buyer's confirmation in the wallet, once the
    /// sandbox has it (polled every 50 ms, at most 3 s).
    pub async fn trade_waiting_for_buyer(&self) -> ProviderTrade {
        for _ in 0..60 {
            if let Some(t) = self
                .trades()
                .await
                .into_iter()
                .find(|t| t.status == "WAIT_BUYER_PAY")
            {
                return t;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("no pay waits for the buyer");
    }

    /// The sandbox's own record of every trade: (out_trade_no, status, total_fen, refunded_fen),
    /// read from its database, the provider's truth for reconciliation.
    pub async fn trades(&self) -> Vec<ProviderTrade> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(self.database_url())
            .await
            .expect("opening the sandbox database");
        let rows = sqlx::query(
            "SELECT out_trade_no, trade_no, status, total_fen, refunded_fen FROM trades ORDER BY out_trade_no",
        )
        .fetch_all(&pool)
        .await
        .expect("reading trades");
        pool.close().await;
        rows.iter()
            .map(|r| ProviderTrade {
                out_trade_no: r.get(0),
                trade_no: r.get(1),
                status: r.get(2),
                total_fen: r.get(3),
                refunded_fen: r.get(4),
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderTrade {
    pub out_trade_no: String,
    pub trade_no: String,
    pub status: String,
    pub total_fen: i64,
    pub refunded_fen: i64,
}

/// A wallet holding `balance_fen` bound to `rider` through the gateway at `base` (its public
/// listener, CA `ca`) the way the app binds it: the gateway's signing link, signed in the wallet
/// (deductions up to `single_limit_fen`), then the rider's wallet looked at until it is bound
/// (a provider fault may fail a look; the app looks again). Returns the wallet's user id.
pub async fn bind_wallet(
    sandbox: &Sandbox,
    base: &str,
    ca: &std::path::Path,
    rider: &turnpike_client::RiderDevice,
    balance_fen: i64,
    single_limit_fen: i64,
) -> String {
    let user = sandbox.wallet(balance_fen, None).await;
    let signing = rider
        .start_wallet_signing(base, ca)
        .await
        .expect("starting a wallet signing");
    let (status, agreement) = sandbox
        .sign_in_wallet(&user, &signing.sign_url, single_limit_fen)
        .await;
    assert!(
        status == 200 || status == 201,
        "signing in the wallet: {agreement}"
    );
    for _ in 0..20 {
        if let Ok(w) = rider.wallet(base, ca).await {
            if w.status == "bound" {
                return user;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the wallet of rider {} was not bound", rider.rider_id);
}

/// Points a gateway config at a sandbox, with test-fast retries.
pub fn use_sandbox(config: &mut Config, sandbox: &Sandbox) {
    config.provider.url = format!("{}/gateway.do", sandbox.base_url);
    config.provider.app_id = APP_ID.into();
    config.provider.app_private_key_file = sandbox_keys().join("app-private.pem");
    config.provider.platform_public_key_file = sandbox_keys().join("platform-public.pem");
    config.provider.call_timeout_ms = 1_000;
    config.provider.breaker_failures_max = 1_000;
    config.charging.capture_poll_ms = 50;
    config.charging.capture_backoff_ms = 50;
    config.charging.capture_backoff_max_ms = 400;
    config.charging.capture_lease_ms = 3_000;
    config.charging.toll_budget_ms = 4_000;
    config.charging.toll_query_interval_ms = 100;
}

/// A gateway and a sandbox on the same kind of database.
pub struct PaidEnv {
    pub env: Env,
    pub sandbox: Sandbox,
}

impl PaidEnv {
    pub async fn start(db: Db, tweak: impl FnOnce(&mut Config)) -> Option<PaidEnv> {
        PaidEnv::start_custom(db, tweak, None).await
    }

    /// Like [`PaidEnv::start`], with a metro daily cap (e.g. `Some("10.00")` CNY).
    pub async fn start_custom(
        db: Db,
        tweak: impl FnOnce(&mut Config),
        metro_daily_cap: Option<&str>,
    ) -> Option<PaidEnv> {
        // Logs (RUST_LOG=…) go to the test's captured output, shown when it fails.
        use tracing_subscriber::prelude::*;
        let filter = std::env::var("RUST_LOG")
            .ok()
            .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
            .unwrap_or_default();
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .with(filter)
            .try_init();
        let scratch = Scratch::new("sandbox-of-test");
        let sandbox = Sandbox::start(db, &scratch).await?;
        let env = Env::start_custom(
            db,
            |c| {
                use_sandbox(c, &sandbox);
                tweak(c)
            },
            metro_daily_cap,
        )
        .await?;
        // The sandbox's SQLite file lives in its own scratch dir; keep it with the env.
        std::mem::forget(scratch);
        Some(PaidEnv { env, sandbox })
    }

    /// A new rider who has entered the expressway at Hangzhou Pengbu (the exit booth then scans
    /// their code).
    pub async fn rider_on_the_expressway(&self) -> turnpike_client::RiderDevice {
        let rider = self.env.gw.rider().await;
        let entry = self
            .env
            .gw
            .terminal(&crate::booth("hangzhou-pengbu", "in"))
            .tap(&crate::tap(
                rand::random::<u32>() as u64 + 1,
                turnpike_wire::api::Direction::Entry,
                rider.ride_code(crate::now_ms()).expect("ride code"),
            ))
            .await
            .expect("the entry is answered");
        assert_eq!(entry.decision, turnpike_wire::api::Decision::Approve);
        rider
    }

    /// Crashes the gateway (see [`crate::TestGateway::crash`]) and starts a new one with the same
    /// configuration on the same database: what a process restart after a kill looks like.
    pub async fn crash_and_restart_gateway(&mut self) {
        let config: Config = (*self.env.gw.state.config).clone();
        // The new process may need the same ports (a fixed public port for notifications), so
        // the old one dies first, as a killed process would.
        self.env.gw.crash().await;
        self.env.gw = crate::TestGateway::start(config)
            .await
            .expect("restarting the gateway");
    }

    /// A wallet holding `balance_fen` bound to `rider` the way the app binds it: the gateway's
    /// signing link, signed in the wallet (deductions up to `single_limit_fen`), then the rider's
    /// wallet looked at until it is bound (a provider fault may fail a look; the app looks again).
    /// Returns the wallet's user id.
    pub async fn bind_wallet(
        &self,
        rider: &turnpike_client::RiderDevice,
        balance_fen: i64,
        single_limit_fen: i64,
    ) -> String {
        let (base, ca) = (&self.env.gw.public_base, self.env.gw.ca());
        bind_wallet(
            &self.sandbox,
            base,
            &ca,
            rider,
            balance_fen,
            single_limit_fen,
        )
        .await
    }

    /// `GET /v1/admin/ledger`: the journal's balances and its unbalanced-transaction count.
    pub async fn ledger(&self) -> Value {
        let a = self
            .env
            .gw
            .admin
            .send(reqwest::Method::GET, "/v1/admin/ledger", None::<&Value>)
            .await
            .expect("reading the ledger");
        assert_eq!(a.status, 200);
        a.json().expect("ledger JSON")
    }

    /// Polls `check` every 50 ms until it is true or `timeout_ms` passes.
    pub async fn eventually<F, Fut>(&self, timeout_ms: u64, mut check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
        loop {
            if check().await {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// A free loopback port, bound and released at once: the gateway's public listener is given it so
/// that its own notify URL is known before it starts, and a restarted gateway binds it again.
///
/// It is picked below the kernel's ephemeral range (Linux: 32768–60999), from 20000–32767: a port
/// in that range can be taken at any moment as the source port of some outgoing connection (a
/// test running beside this one connects thousands of times), which made a restart on the same
/// port fail with "Address already in use" (exactly_once, fault_matrix_reconciles::postgres).
/// Below the range only a listener can hold it, and each pick is checked by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..2_000 {
        let n = seed.wrapping_add(NEXT.fetch_add(7_919, Ordering::Relaxed));
        let port = 20_000 + (n % 12_768) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000-32767 after 2000 tries");
}

impl Sandbox {
    /// The notifications the sandbox holds for `out_trade_no` (oldest first), each as the form
    /// body a new delivery of it posts: its frozen parameters, a fresh `notify_time`, signed with
    /// the platform key. Re-posting one is exactly what the provider's retry does.
    pub async fn signed_notifications(&self, out_trade_no: &str) -> Vec<Vec<u8>> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(self.database_url())
            .await
            .expect("opening the sandbox database");
        let rows = sqlx::query(
            "SELECT params_json FROM notifications WHERE out_trade_no = $1 ORDER BY created_at_ms",
        )
        .bind(out_trade_no)
        .fetch_all(&pool)
        .await
        .expect("reading notifications");
        pool.close().await;
        let key = provider_sandbox::sign::Signer::from_file(
            &sandbox_keys().join(provider_sandbox::PLATFORM_PRIVATE_KEY_FILE),
        )
        .expect("the platform key");
        rows.iter()
            .map(|r| {
                let json: String = r.get(0);
                let mut params: std::collections::BTreeMap<String, String> =
                    serde_json::from_str(&json).expect("notification parameters");
                params.insert(
                    "notify_time".into(),
                    provider_sandbox::time::api_time(turnpike_client::now_ms()),
                );
                params.insert("sign_type".into(), "RSA2".into());
                let content = provider_sandbox::sign::canonical_notification(
                    params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                );
                params.insert("sign".into(), key.sign(&content));
                form_body(&params)
            })
            .collect()
    }
}

/// `application/x-www-form-urlencoded` of the parameters (what an HTTP client posts).
pub fn form_body(params: &std::collections::BTreeMap<String, String>) -> Vec<u8> {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    params
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

impl PaidEnv {
    /// A [`PaidEnv`] whose gateway asks the provider for notifications: `provider.notify_url`
    /// is the gateway's own public listener (`https://localhost:<port>/v1/provider/notify`, the
    /// port chosen before it starts), and the sandbox is restarted trusting the test's dev CA
    /// (`notify_ca_file`) so it posts there over HTTPS directly. `tweak` runs last (a test may
    /// point `notify_url` elsewhere, e.g. at a dead port).
    pub async fn start_notified(db: Db, tweak: impl FnOnce(&mut Config)) -> Option<PaidEnv> {
        let port = free_port();
        let mut p = PaidEnv::start(db, |c| {
            c.listen.public = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            c.provider.notify_url = format!("https://localhost:{port}/v1/provider/notify");
            tweak(c)
        })
        .await?;
        let ca = p.env.gw.ca();
        p.sandbox
            .restart_with(|c| c.notify_ca_file = Some(ca))
            .await;
        Some(p)
    }

    /// POSTs a form body to the gateway's `/v1/provider/notify` over HTTPS: (status, body).
    pub async fn post_notify(&self, body: Vec<u8>) -> (u16, String) {
        let http =
            turnpike_client::tls::http_client(&self.env.gw.ca(), None).expect("an HTTPS client");
        let resp = http
            .post(format!("{}/v1/provider/notify", self.env.gw.public_base))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .expect("posting a notification");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }
}
