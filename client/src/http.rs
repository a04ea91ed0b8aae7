//! The typed clients: a terminal (mutual TLS), the admin console, a rider's phone.

use std::path::Path;

use anyhow::{bail, Context};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use turnpike_wire::api::{TapBatchRequest, TapBatchResponse, TapRequest, TapResponse};
use turnpike_wire::ridecode::{Credential, DeviceKeyPair};

use turnpike_wire::api::payments::{SigningView, WalletView};
use turnpike_wire::api::rider::{Enrolled, JourneyList, Registered};

/// An HTTP answer: status and body bytes, for callers that check errors precisely.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn ok<T: DeserializeOwned>(self) -> anyhow::Result<T> {
        if !(200..300).contains(&self.status) {
            bail!(
                "HTTP {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            );
        }
        self.json()
    }

    /// The machine-readable error code of a 4xx/5xx answer.
    pub fn error_code(&self) -> Option<String> {
        let body: turnpike_wire::api::ErrorBody = serde_json::from_slice(&self.body).ok()?;
        Some(body.error.code)
    }
}

async fn answer(response: reqwest::Response) -> anyhow::Result<Answer> {
    let status = response.status().as_u16();
    let body = response.bytes().await?.to_vec();
    Ok(Answer { status, body })
}

/// How often a request refused with 429 is tried again before giving up.
const RATE_LIMITED_RETRIES_MAX: u32 = 30;
/// The longest `Retry-After` honoured; a larger one is capped to it.
const RETRY_AFTER_S_MAX: u64 = 10;

/// Sends the request `build` makes, and again after the gateway's `Retry-After` while it
/// answers 429 (as a well-behaved app does when many riders register from one address).
async fn send_patiently(build: impl Fn() -> reqwest::RequestBuilder) -> anyhow::Result<Answer> {
    let mut tries = 0;
    loop {
        let response = build().send().await?;
        if response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS
            || tries >= RATE_LIMITED_RETRIES_MAX
        {
            return answer(response).await;
        }
        tries += 1;
        let wait_s = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(1)
            .min(RETRY_AFTER_S_MAX);
        tokio::time::sleep(std::time::Duration::from_secs(wait_s)).await;
    }
}

/// A terminal: one client certificate, one base URL (the mutual-TLS listener).
#[derive(Clone)]
pub struct TerminalClient {
    http: reqwest::Client,
    base: String,
}

impl TerminalClient {
    pub fn new(
        base: &str,
        ca_pem: &Path,
        cert_pem: &Path,
        key_pem: &Path,
    ) -> anyhow::Result<TerminalClient> {
        Ok(TerminalClient {
            http: crate::tls::http_client(ca_pem, Some((cert_pem, key_pem)))?,
            base: base.into(),
        })
    }

    pub async fn tap_raw(&self, tap: &TapRequest) -> anyhow::Result<Answer> {
        answer(
            self.http
                .post(format!("{}/v1/taps", self.base))
                .json(tap)
                .send()
                .await?,
        )
        .await
    }

    pub async fn tap(&self, tap: &TapRequest) -> anyhow::Result<TapResponse> {
        self.tap_raw(tap).await?.ok()
    }

    pub async fn batch(&self, taps: Vec<TapRequest>) -> anyhow::Result<TapBatchResponse> {
        self.batch_raw(&TapBatchRequest { taps }).await?.ok()
    }

    pub async fn batch_raw(&self, batch: &TapBatchRequest) -> anyhow::Result<Answer> {
        answer(
            self.http
                .post(format!("{}/v1/taps/batch", self.base))
                .json(batch)
                .send()
                .await?,
        )
        .await
    }

    /// A toll exit paid at the booth with the driver's wallet payment code.
    pub async fn toll_exit_raw(
        &self,
        tap: &TapRequest,
        payment_code: &str,
    ) -> anyhow::Result<Answer> {
        let body = turnpike_wire::api::toll::TollExitRequest {
            tap: tap.clone(),
            payment_code: payment_code.to_string(),
        };
        answer(
            self.http
                .post(format!("{}/v1/toll/exits", self.base))
                .json(&body)
                .send()
                .await?,
        )
        .await
    }

    /// POSTs arbitrary bytes with a content type, for bad-input tests.
    pub async fn post_bytes(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        answer(
            self.http
                .post(format!("{}{path}", self.base))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body)
                .send()
                .await?,
        )
        .await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        answer(self.http.get(format!("{}{path}", self.base)).send().await?).await
    }
}

/// The admin console.
#[derive(Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    pub fn new(base: &str, ca_pem: &Path, token: &str) -> anyhow::Result<AdminClient> {
        Ok(AdminClient {
            http: crate::tls::http_client(ca_pem, None)?,
            base: base.into(),
            token: token.into(),
        })
    }

    pub async fn send<B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<Answer> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(body);
        }
        answer(req.send().await?).await
    }

    pub async fn post<B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<Answer> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// POST that must succeed.
    pub async fn post_ok<B: Serialize>(&self, path: &str, body: &B) -> anyhow::Result<()> {
        let a = self.post(path, body).await?;
        if !(200..300).contains(&a.status) {
            bail!(
                "POST {path}: HTTP {}: {}",
                a.status,
                String::from_utf8_lossy(&a.body)
            );
        }
        Ok(())
    }
}

/// A rider's phone: its own device key, its token and credential, and a display clock.
pub struct RiderDevice {
    pub rider_id: String,
    pub token: String,
    pub key: DeviceKeyPair,
    pub credential: Credential,
}

impl RiderDevice {
    /// Registers a rider and enrols a fresh device key, as the app does on first start.
    pub async fn enrol(
        base: &str,
        ca_pem: &Path,
        products: &[&str],
    ) -> anyhow::Result<RiderDevice> {
        let http = crate::tls::http_client(ca_pem, None)?;
        let registered: Registered = send_patiently(|| http.post(format!("{base}/v1/riders")))
            .await?
            .ok()?;
        let key = DeviceKeyPair::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
        let public =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.public_key_compressed());
        let body = serde_json::json!({ "device_public_key": public, "products": products });
        let enrolled: Enrolled = send_patiently(|| {
            http.post(format!("{base}/v1/riders/me/credentials"))
                .bearer_auth(&registered.token)
                .json(&body)
        })
        .await?
        .ok()?;
        let bytes =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&enrolled.credential)?;
        let credential =
            Credential::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("credential: {e}"))?;
        Ok(RiderDevice {
            rider_id: registered.rider_id,
            token: registered.token,
            key,
            credential,
        })
    }

    /// A fresh ride code (base64url) as the phone would display it at `now_ms`.
    pub fn ride_code(&self, now_ms: u64) -> anyhow::Result<String> {
        let nonce = u64::from_be_bytes(crate::random_bytes::<8>());
        let code = self
            .key
            .ride_code(&self.credential, now_ms, nonce)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(code.to_base64url())
    }

    /// Starts binding the wallet: the provider's signing link, to open in the wallet.
    pub async fn start_wallet_signing(
        &self,
        base: &str,
        ca_pem: &Path,
    ) -> anyhow::Result<SigningView> {
        let http = crate::tls::http_client(ca_pem, None)?;
        send_patiently(|| {
            http.post(format!("{base}/v1/riders/me/wallet/signing"))
                .bearer_auth(&self.token)
        })
        .await?
        .ok()
    }

    /// The wallet as the app shows it (a pending signing is checked with the provider).
    pub async fn wallet(&self, base: &str, ca_pem: &Path) -> anyhow::Result<WalletView> {
        let http = crate::tls::http_client(ca_pem, None)?;
        send_patiently(|| {
            http.get(format!("{base}/v1/riders/me/wallet"))
                .bearer_auth(&self.token)
        })
        .await?
        .ok()
    }

    /// Binds the wallet the way the app does: start a signing, have the wallet sign the link
    /// (`sign_in_wallet`, given the link), then look at the wallet until it is bound.
    pub async fn bind_wallet<F, Fut>(
        &self,
        base: &str,
        ca_pem: &Path,
        sign_in_wallet: F,
    ) -> anyhow::Result<WalletView>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let signing = self.start_wallet_signing(base, ca_pem).await?;
        sign_in_wallet(signing.sign_url).await?;
        let wallet = self.wallet(base, ca_pem).await?;
        anyhow::ensure!(
            wallet.status == "bound",
            "the wallet is {} after signing {}",
            wallet.status,
            signing.external_agreement_no
        );
        Ok(wallet)
    }

    pub async fn journeys(&self, base: &str, ca_pem: &Path) -> anyhow::Result<JourneyList> {
        let http = crate::tls::http_client(ca_pem, None)?;
        answer(
            http.get(format!("{base}/v1/riders/me/journeys"))
                .bearer_auth(&self.token)
                .send()
                .await?,
        )
        .await?
        .ok()
    }
}
