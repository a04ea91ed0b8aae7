//! The payment provider's side of a run, through the provider sandbox's admin API (plain JSON,
//! `/sandbox/...`, see `provider-sandbox/README.md`): a wallet for every rider, a withholding
//! agreement signed in it through the gateway's signing flow (`POST /v1/riders/me/wallet/signing`,
//! the link opened in the wallet, `GET /v1/riders/me/wallet`) so metro journeys are
//! post-paid, one-time payment codes for toll exits paid at the booth, the fault knobs of the
//! `provider-degradation` scenario, and the money checks after a run (what left the wallets,
//! what the gateway's journal captured, what the lanes and gates were told).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::{json, Value};
use turnpike_client::{AdminClient, RiderDevice};

use crate::network::Target;

/// The provider's yuan text as fen.
fn parse_yuan(text: &str) -> Option<i64> {
    turnpike_provider_wire::amount::parse_yuan(text).ok()
}

/// Every wallet starts with this much (fen): far more than any run spends.
pub const WALLET_BALANCE_FEN: i64 = 10_000_000;
/// The withholding agreement's single-deduction limit (fen).
const AGREEMENT_SINGLE_LIMIT_FEN: i64 = 1_000_000;
/// Wallets set up at once.
const SETUP_CONCURRENCY: usize = 16;
/// How long after a run the capture worker gets to settle every charge.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the provider sandbox is and how the gateway is configured against it.
#[derive(Debug, Clone)]
pub struct ProviderTarget {
    /// The sandbox's base URL (its admin API, `/sandbox/...`), e.g. `http://127.0.0.1:8090`.
    pub sandbox_url: String,
    /// The gateway's `provider.call_timeout_ms`: the degradation's hangs last longer than this.
    pub call_timeout_ms: u64,
    /// Payment codes live 60 s at the sandbox (`--payment-code-ttl-ms`): codes of exits
    /// scheduled less than this many seconds into the run are fetched before the clock starts;
    /// later ones `code_lead_s` before their exit, during the run, by a task of their own.
    pub codes_ahead_s: f64,
    pub code_lead_s: f64,
}

impl ProviderTarget {
    /// The gateway's default call timeout.
    pub fn new(sandbox_url: &str) -> ProviderTarget {
        ProviderTarget {
            sandbox_url: sandbox_url.trim_end_matches('/').to_string(),
            call_timeout_ms: 3_000,
            codes_ahead_s: 40.0,
            code_lead_s: 20.0,
        }
    }

    /// The fault knobs of a degraded provider: 200–800 ms latency on pay and query, one call in
    /// ten hanging past the gateway's call timeout, one in ten answering HTTP 5xx.
    pub fn degraded_faults(&self, seed: u64) -> Value {
        let knobs = json!({
            "latency": { "min_ms": 200, "max_ms": 800 },
            "timeout": { "rate": 0.1, "hang_ms": self.call_timeout_ms + 1_000 },
            "http_5xx": { "rate": 0.1 },
        });
        json!({
            "seed": seed,
            "methods": { "alipay.trade.pay": knobs, "alipay.trade.query": knobs },
        })
    }
}

/// The sandbox's admin API.
#[derive(Clone)]
pub struct Sandbox {
    http: reqwest::Client,
    base: String,
}

impl Sandbox {
    pub fn new(base: &str) -> anyhow::Result<Sandbox> {
        Ok(Sandbox {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("sandbox {method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("sandbox {method} {path}: HTTP {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A real-name wallet holding `balance_fen`; its user id.
    pub async fn wallet(&self, balance_fen: i64) -> anyhow::Result<String> {
        let user = self
            .call(
                reqwest::Method::POST,
                "/sandbox/users",
                Some(json!({ "balance": turnpike_provider_wire::amount::format_yuan(balance_fen), "real_name": true })),
            )
            .await?;
        Ok(user["user_id"].as_str().context("user_id")?.to_string())
    }

    /// The wallet opens a merchant's signing link and signs it; the agreement's number.
    pub async fn sign_in_wallet(&self, user_id: &str, sign_url: &str) -> anyhow::Result<String> {
        let a = self
            .call(
                reqwest::Method::POST,
                &format!("/sandbox/users/{user_id}/agreement-signings"),
                Some(
                    json!({ "sign_url": sign_url, "single_limit_fen": AGREEMENT_SINGLE_LIMIT_FEN }),
                ),
            )
            .await?;
        Ok(a["agreement_no"]
            .as_str()
            .context("agreement_no")?
            .to_string())
    }

    /// A fresh one-time payment code of the wallet (what its app shows at the booth).
    pub async fn payment_code(&self, user_id: &str) -> anyhow::Result<String> {
        let code = self
            .call(
                reqwest::Method::POST,
                &format!("/sandbox/users/{user_id}/payment-codes"),
                Some(json!({})),
            )
            .await?;
        Ok(code["auth_code"].as_str().context("auth_code")?.to_string())
    }

    /// The wallet pays the merchant QR it scanned (a pre-created order's payload).
    pub async fn pay_qr(&self, qr_code: &str, user_id: &str) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            "/sandbox/qr/pay",
            Some(json!({ "qr_code": qr_code, "user_id": user_id })),
        )
        .await
        .map(|_| ())
    }

    /// The wallet's balance (fen).
    pub async fn balance(&self, user_id: &str) -> anyhow::Result<i64> {
        let user = self
            .call(
                reqwest::Method::GET,
                &format!("/sandbox/users/{user_id}"),
                None,
            )
            .await?;
        parse_yuan(user["balance"].as_str().context("balance")?).context("balance")
    }

    pub async fn set_faults(&self, faults: Value) -> anyhow::Result<()> {
        self.call(reqwest::Method::PUT, "/sandbox/faults", Some(faults))
            .await
            .map(|_| ())
    }

    pub async fn clear_faults(&self) -> anyhow::Result<()> {
        self.call(reqwest::Method::DELETE, "/sandbox/faults", None)
            .await
            .map(|_| ())
    }
}

/// A rider's wallet at the sandbox.
#[derive(Debug, Clone)]
pub struct Wallet {
    pub user_id: String,
    pub agreement_no: String,
}

/// The provider side of a simulator: the sandbox and one wallet per enrolled rider (same index).
pub struct Provider {
    pub target: ProviderTarget,
    pub sandbox: Sandbox,
    pub wallets: Vec<Arc<Wallet>>,
}

impl Provider {
    pub fn new(target: ProviderTarget) -> anyhow::Result<Provider> {
        Ok(Provider {
            sandbox: Sandbox::new(&target.sandbox_url)?,
            target,
            wallets: Vec::new(),
        })
    }

    /// Gives every rider without one a wallet ([`WALLET_BALANCE_FEN`]) and a withholding
    /// agreement, bound through the rider API as the app does.
    pub async fn ensure_wallets(
        &mut self,
        target: &Target,
        riders: &[Arc<RiderDevice>],
    ) -> anyhow::Result<()> {
        let missing: Vec<Arc<RiderDevice>> =
            riders[self.wallets.len().min(riders.len())..].to_vec();
        if missing.is_empty() {
            return Ok(());
        }
        let per_task = missing.len().div_ceil(SETUP_CONCURRENCY);
        let mut tasks = tokio::task::JoinSet::new();
        for (part, chunk) in missing.chunks(per_task).enumerate() {
            let chunk = chunk.to_vec();
            let sandbox = self.sandbox.clone();
            let (base, ca) = (target.public_url.clone(), target.ca());
            tasks.spawn(async move {
                let mut out = Vec::with_capacity(chunk.len());
                for rider in chunk {
                    let user_id = sandbox.wallet(WALLET_BALANCE_FEN).await?;
                    let (sandbox, user) = (&sandbox, &user_id);
                    let wallet = rider
                        .bind_wallet(&base, &ca, |sign_url| async move {
                            sandbox.sign_in_wallet(user, &sign_url).await.map(|_| ())
                        })
                        .await
                        .with_context(|| {
                            format!("binding the wallet of rider {}", rider.rider_id)
                        })?;
                    let agreement_no = wallet.agreement_no.context("a bound wallet's agreement")?;
                    out.push(Arc::new(Wallet {
                        user_id,
                        agreement_no,
                    }));
                }
                anyhow::Ok((part, out))
            });
        }
        let mut parts = Vec::new();
        while let Some(done) = tasks.join_next().await {
            parts.push(done??);
        }
        parts.sort_by_key(|(part, _)| *part);
        for (_, wallets) in parts {
            self.wallets.extend(wallets);
        }
        Ok(())
    }

    /// Sum of every wallet's balance (fen).
    pub async fn balances(&self) -> anyhow::Result<i64> {
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = self.wallets.len().div_ceil(SETUP_CONCURRENCY).max(1);
        for chunk in self.wallets.chunks(per_task) {
            let (chunk, sandbox) = (chunk.to_vec(), self.sandbox.clone());
            tasks.spawn(async move {
                let mut sum = 0i64;
                for w in chunk {
                    sum += sandbox.balance(&w.user_id).await?;
                }
                anyhow::Ok(sum)
            });
        }
        let mut sum = 0;
        while let Some(done) = tasks.join_next().await {
            sum += done??;
        }
        Ok(sum)
    }
}

/// What the provider checks after a run saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProviderFigures {
    /// When the sandbox was degraded and restored, seconds from the start (degradation only).
    pub degraded_from_s: Option<f64>,
    pub restored_at_s: Option<f64>,
    /// Toll exits answered `409 payment_in_progress` at first, then repeated until final.
    pub toll_exits_in_progress: u64,
    /// Repeats of toll exits (all of them, beyond the first request).
    pub toll_exit_repeats: u64,
    /// Payment codes fetched before the clock started, and during the run.
    pub codes_ahead: u64,
    pub codes_during_run: u64,
    /// How long after the run the last charge left `pending`/`paying` (ms).
    pub settle_ms: u64,
    /// Charges still `pending` / `paying` after settling.
    pub pending_after: usize,
    pub paying_after: usize,
    /// What the lanes were told was charged at the booth (approved toll exits), fen.
    pub toll_told_fen: i64,
    /// Charges of the metro exits the gates were told about (post-paid), fen.
    pub metro_told_fen: i64,
    /// What the tickets the machines issued cost (paid by QR), fen.
    pub tickets_told_fen: i64,
    /// Charges of the taps gates buffered offline, told when they were uploaded (post-paid), fen.
    pub uploaded_told_fen: i64,
    /// The journal: `provider_clearing` + `provider_fees`, debits minus credits (fen).
    pub ledger_captured_fen: i64,
    /// What left the riders' wallets at the provider (initial minus final balances), fen.
    pub wallets_paid_fen: i64,
    pub ledger_unbalanced_transactions: i64,
}

/// Ids of the charges with `status` (`pending`, `paying`, …), up to the listing's limit.
pub async fn charge_ids(admin: &AdminClient, status: &str) -> anyhow::Result<Vec<String>> {
    let a = admin
        .send(
            reqwest::Method::GET,
            &format!("/v1/admin/charges?status={status}"),
            None::<&Value>,
        )
        .await?;
    let list: Vec<Value> = a.ok()?;
    Ok(list
        .iter()
        .filter_map(|c| c["charge_id"].as_str().map(str::to_string))
        .collect())
}

/// Charges `pending` or `paying` now (to tell a run's charges from older ones that wait).
pub async fn unsettled(admin: &AdminClient) -> anyhow::Result<Vec<String>> {
    let mut ids = charge_ids(admin, "pending").await?;
    ids.extend(charge_ids(admin, "paying").await?);
    Ok(ids)
}

/// Waits until no charge is `pending` or `paying` but those in `before` (or [`SETTLE_TIMEOUT`]
/// passes); returns how long it took and how many are left of each.
pub async fn settle(
    admin: &AdminClient,
    before: &[String],
) -> anyhow::Result<(Duration, usize, usize)> {
    let started = Instant::now();
    loop {
        let new = |ids: Vec<String>| ids.iter().filter(|id| !before.contains(id)).count();
        let pending = new(charge_ids(admin, "pending").await?);
        let paying = new(charge_ids(admin, "paying").await?);
        // Late taps still to re-pair, or refunds of re-paired charges in flight, change what is
        // collected yet.
        let (refunds, repairs) = backlog(admin).await?;
        let done = pending == 0 && paying == 0 && refunds == 0 && repairs == 0;
        if done || started.elapsed() > SETTLE_TIMEOUT {
            return Ok((started.elapsed(), pending, paying));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Refunds pending and riders queued for re-pairing at the gateway (`GET /v1/admin/ledger`).
async fn backlog(admin: &AdminClient) -> anyhow::Result<(i64, i64)> {
    let a = admin
        .send(reqwest::Method::GET, "/v1/admin/ledger", None::<&Value>)
        .await?;
    let ledger: Value = a.ok()?;
    Ok((
        ledger["refunds_pending"]
            .as_i64()
            .context("refunds_pending")?,
        ledger["repairs_queued"]
            .as_i64()
            .context("repairs_queued")?,
    ))
}

/// The journal's provider side: `provider_clearing` + `provider_fees`, debits minus credits,
/// and the count of unbalanced transactions.
pub async fn ledger_captured(admin: &AdminClient) -> anyhow::Result<(i64, i64)> {
    let a = admin
        .send(reqwest::Method::GET, "/v1/admin/ledger", None::<&Value>)
        .await?;
    let ledger: Value = a.ok()?;
    let mut net = 0;
    for b in ledger["balances"].as_array().context("balances")? {
        if matches!(
            b["account"].as_str(),
            Some("provider_clearing") | Some("provider_fees")
        ) {
            net += b["debit_minor"].as_i64().context("debit_minor")?
                - b["credit_minor"].as_i64().context("credit_minor")?;
        }
    }
    let unbalanced = ledger["unbalanced_transactions"].as_i64().unwrap_or(-1);
    Ok((net, unbalanced))
}
