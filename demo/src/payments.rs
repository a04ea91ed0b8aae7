//! The demo's money: a provider sandbox started in-process on its own loopback port and SQLite
//! file (the gateway reaches it only over signed HTTP, as it would the real provider), wallets
//! and withholding agreements for the riders, and scripted runs of the three payment flows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};
use turnpike_wire::api::{Decision, Direction, TapRequest, TapResponse, VehicleClass};
use turnpike_wire::{Currency, Money};

use gateway::provider::{ProviderConfig, QueryOutcome};
use gateway::store::charging::ChargeStatus;
use turnpike_client::{RiderDevice, TerminalClient};

pub use turnpike_client::demo::APP_ID;

/// Throwaway development keys (see provider-sandbox/dev-keys/README.md), embedded so the demo
/// needs no files from the source tree.
const KEYS: [(&str, &str); 4] = [
    (
        "platform-private.pem",
        include_str!("../../provider-sandbox/dev-keys/platform-private.pem"),
    ),
    (
        "platform-public.pem",
        include_str!("../../provider-sandbox/dev-keys/platform-public.pem"),
    ),
    (
        "app-private.pem",
        include_str!("../../provider-sandbox/dev-keys/app-private.pem"),
    ),
    (
        "app-public.pem",
        include_str!("../../provider-sandbox/dev-keys/app-public.pem"),
    ),
];

/// A running sandbox and a small admin client for it (wallets, codes, agreements).
pub struct DemoProvider {
    pub base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl DemoProvider {
    /// Starts the sandbox on `127.0.0.1:0` with its database in `dir`, registers the demo app,
    /// and returns the gateway's provider settings for it.
    pub async fn start(
        dir: &Path,
        notify_url: String,
        gateway_ca: &Path,
    ) -> anyhow::Result<(DemoProvider, ProviderConfig)> {
        let keys = dir.join("provider-keys");
        std::fs::create_dir_all(&keys)?;
        for (name, pem) in KEYS {
            turnpike_client::certs::write_secret(&keys.join(name), pem)?;
        }
        let mut config = provider_sandbox::Config::new(
            "127.0.0.1:0".parse()?,
            format!(
                "sqlite://{}?mode=rwc",
                dir.join("provider-sandbox.db").display()
            ),
            keys.clone(),
        );
        // Deliver notifications fast, to the gateway's HTTPS listener (trusting its dev CA).
        config.notify_retry_ms = vec![200, 500, 1_000, 2_000];
        config.notify_poll_ms = 100;
        config.notify_ca_file = Some(gateway_ca.to_path_buf());
        let sandbox = provider_sandbox::Sandbox::build(config).await?;
        let base = format!("http://{}", sandbox.addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(sandbox.run_until(async {
            let _ = stopped.await;
        }));
        let provider = DemoProvider {
            base: base.clone(),
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        };
        provider
            .post(
                "/sandbox/apps",
                json!({"app_id": APP_ID, "public_key": KEYS[3].1}),
            )
            .await?;
        let mut gateway_side = ProviderConfig {
            url: format!("{base}/gateway.do"),
            app_id: APP_ID.into(),
            app_private_key_file: keys.join("app-private.pem"),
            platform_public_key_file: keys.join("platform-public.pem"),
            notify_url,
            ..ProviderConfig::default()
        };
        gateway_side.call_timeout_ms = 2_000;
        Ok((provider, gateway_side))
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("sandbox {path}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "sandbox {path}: {status} {body}");
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await?;
        Ok(resp.json().await.unwrap_or(Value::Null))
    }

    /// A wallet with a balance (yuan text); payments above `confirm_over` need confirmation.
    pub async fn wallet(
        &self,
        balance: &str,
        confirm_over: Option<&str>,
    ) -> anyhow::Result<String> {
        let mut body = json!({"balance": balance});
        if let Some(c) = confirm_over {
            body["confirm_over"] = json!(c);
        }
        let user = self.post("/sandbox/users", body).await?;
        Ok(user["user_id"].as_str().context("user_id")?.to_string())
    }

    pub async fn balance(&self, user_id: &str) -> anyhow::Result<String> {
        let user = self.get(&format!("/sandbox/users/{user_id}")).await?;
        Ok(user["balance"].as_str().unwrap_or("?").to_string())
    }

    /// The wallet `user_id` opens a merchant's signing link and signs it.
    pub async fn sign_in_wallet(&self, user_id: &str, sign_url: &str) -> anyhow::Result<()> {
        self.post(
            &format!("/sandbox/users/{user_id}/agreement-signings"),
            json!({"sign_url": sign_url, "single_limit_fen": 50_000}),
        )
        .await?;
        Ok(())
    }

    pub async fn payment_code(&self, user_id: &str) -> anyhow::Result<String> {
        let c = self
            .post(
                &format!("/sandbox/users/{user_id}/payment-codes"),
                json!({}),
            )
            .await?;
        Ok(c["auth_code"].as_str().context("auth_code")?.to_string())
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

/// Binds a rider's wallet as the app does: a sandbox wallet, then the gateway's signing link
/// signed in it (`charging::wallets`).
pub async fn bind_wallet(
    provider: &DemoProvider,
    rider: &RiderDevice,
    public_base: &str,
    ca: &Path,
    balance: &str,
) -> anyhow::Result<String> {
    let user = provider.wallet(balance, None).await?;
    let wallet_user = &user;
    rider
        .bind_wallet(public_base, ca, |sign_url| async move {
            provider.sign_in_wallet(wallet_user, &sign_url).await
        })
        .await
        .context("binding a wallet")?;
    Ok(user)
}

pub fn yuan(minor: i64) -> String {
    Money::from_minor(minor, Currency::CNY).to_string()
}

/// A toll exit paid at the booth; prints the outcome and returns it.
pub async fn booth_exit(
    booth: &TerminalClient,
    terminal_id: &str,
    who: &str,
    tap: &TapRequest,
    payment_code: &str,
) -> anyhow::Result<TapResponse> {
    let started = std::time::Instant::now();
    let answer = booth.toll_exit_raw(tap, payment_code).await?;
    anyhow::ensure!(
        answer.status == 200,
        "toll exit: {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    let r: TapResponse = answer.json()?;
    let what = match r.decision {
        Decision::Approve => format!(
            "approve, toll {} paid by payment code",
            r.charge.map(|c| c.to_string()).unwrap_or_default()
        ),
        Decision::Decline => format!("decline ({})", r.reason.clone().unwrap_or_default()),
    };
    println!(
        "  {terminal_id:<28} {who:<10} exit  → {what}  [{} ms]",
        started.elapsed().as_millis()
    );
    Ok(r)
}

/// While a booth waits, plays the driver who confirms the payment in the wallet app after
/// `after`: finds the waiting trade through a signed query and confirms it at the sandbox.
pub async fn confirm_in_wallet_after(
    state: gateway::AppState,
    provider_base: String,
    after: Duration,
) -> anyhow::Result<()> {
    tokio::time::sleep(after).await;
    let client = state
        .charging
        .provider
        .clone()
        .context("no provider configured")?;
    let paying = state
        .store
        .charges(None, Some(ChargeStatus::Paying), 10)
        .await?;
    for charge in paying {
        if let Ok(QueryOutcome::Trade { trade_no, .. }) = client.query(&charge.out_trade_no).await {
            println!(
                "  (the driver confirms {} in the wallet app)",
                yuan(charge.amount_minor)
            );
            reqwest::Client::new()
                .post(format!("{provider_base}/sandbox/trades/{trade_no}/confirm"))
                .json(&json!({}))
                .send()
                .await?;
        }
    }
    Ok(())
}

/// A toll exit request for a vehicle class, scanned now.
pub fn toll_exit(sequence: u64, code: String, class: VehicleClass) -> TapRequest {
    TapRequest {
        sequence,
        direction: Direction::Exit,
        ride_code: code,
        scanned_at_ms: turnpike_client::now_ms() as u64,
        vehicle_class: Some(class),
    }
}

/// The demo's directory for rendered QR codes.
pub fn qr_dir(dir: &Path) -> PathBuf {
    dir.join("tickets")
}

/// The operators' own export (v1, docs/settlement-formats.md) of what their terminals were
/// told: one row per charge taken at a terminal (exits, booth exits, ticket machines).
pub fn operator_export(
    charges: &[gateway::store::charging::ChargeRow],
    operator_id: &str,
) -> String {
    let mut out = String::from("# turnpike-operator-export v1\nterminal_id,terminal_sequence,occurred_at,kind,amount_minor,currency\n");
    let mut rows = 0;
    for c in charges.iter().filter(|c| c.operator_id == operator_id) {
        let (Some(terminal), Some(sequence)) = (&c.terminal_id, c.terminal_sequence) else {
            continue;
        };
        let kind = match c.kind.as_str() {
            "metro" => "exit",
            "toll" => "toll_exit",
            _ => "ticket",
        };
        let at = jiff::Timestamp::from_millisecond(c.created_at_ms)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        out.push_str(&format!(
            "{terminal},{sequence},{at},{kind},{},{}\n",
            c.amount_minor, c.currency
        ));
        rows += 1;
    }
    out.push_str(&format!("# end rows={rows}\n"));
    out
}
