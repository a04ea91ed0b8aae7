//! One terminal's link to a server: a single HTTP/2 connection (mutual TLS with the terminal's own
//! certificate, or cleartext h2 for plain endpoints), on which concurrent requests are multiplexed.
//!
//! This is hyper's connection-level client rather than reqwest: under open-loop load the
//! simulator must cost far less per request than the server it measures (see the simulator
//! ceiling in `docs/bench-history.md`). A broken connection is re-established on the next request.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Mutex;

/// Where requests go: scheme, host and port of a base URL such as `https://localhost:8443`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(base: &str) -> anyhow::Result<Endpoint> {
        let (tls, rest) = if let Some(rest) = base.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = base.strip_prefix("http://") {
            (false, rest)
        } else {
            bail!("{base}: URL must start with http:// or https://");
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().with_context(|| format!("port of {base}"))?),
            None => (authority, if tls { 443 } else { 80 }),
        };
        Ok(Endpoint {
            tls,
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        })
    }

    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// An answer: status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Bytes,
}

/// A terminal's connection. Cheap to share; requests run concurrently on it.
pub struct Link {
    endpoint: Endpoint,
    tls: Option<tokio_rustls::TlsConnector>,
    /// `scheme://host:port`, the start of every request's URI.
    origin: String,
    sender: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl Link {
    /// A link presenting the client certificate `identity` (cert and key PEM) when the endpoint
    /// is https; `ca_pem` is the CA the server certificate must chain to.
    pub fn new(
        endpoint: Endpoint,
        ca_pem: Option<&Path>,
        identity: Option<(&Path, &Path)>,
    ) -> anyhow::Result<Link> {
        let tls = if endpoint.tls {
            let ca = ca_pem.context("an https endpoint needs a CA certificate")?;
            let mut config = turnpike_client::tls::client_config(ca, identity)?;
            // HTTP/2 only: one connection per terminal carries all its concurrent taps.
            config.alpn_protocols = vec![b"h2".to_vec()];
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Link {
            origin: format!(
                "{}://{}",
                if endpoint.tls { "https" } else { "http" },
                endpoint.authority()
            ),
            endpoint,
            tls,
            sender: Mutex::new(None),
        })
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let tcp = tokio::net::TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
            .await
            .with_context(|| format!("connecting to {}", self.endpoint.authority()))?;
        tcp.set_nodelay(true)?;
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        // Many taps in flight on one connection under overload: let them all start.
        builder.max_concurrent_reset_streams(1024);
        match &self.tls {
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(self.endpoint.host.clone())?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .context("TLS handshake")?;
                let (sender, connection) = builder.handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                Ok(sender)
            }
            None => {
                let (sender, connection) = builder.handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(connection);
                Ok(sender)
            }
        }
    }

    /// The live connection's sender, connecting first if there is none or it has closed.
    async fn sender(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let mut guard = self.sender.lock().await;
        if let Some(sender) = guard.as_ref() {
            if !sender.is_closed() {
                return Ok(sender.clone());
            }
        }
        let sender = self.connect().await?;
        *guard = Some(sender.clone());
        Ok(sender)
    }

    /// Opens the connection now, so the first measured request does not pay for the handshake.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        self.sender().await.map(|_| ())
    }

    /// Drops the connection (a gate losing its link); the next request reconnects.
    pub async fn cut(&self) {
        *self.sender.lock().await = None;
    }

    /// One request and its whole answer. The future is boxed: hyper's request and body futures
    /// make it several kilobytes, which every `tokio::spawn` of a caller's task would otherwise
    /// copy (a tenth of the profile under plain load; boxed, 3–5 % less CPU per request).
    pub async fn request(
        &self,
        method: hyper::Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        Box::pin(self.request_inner(method, path, body)).await
    }

    async fn request_inner(
        &self,
        method: hyper::Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let mut sender = self.sender().await?;
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.origin))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }

    pub async fn post(&self, path: &str, body: Bytes) -> anyhow::Result<Reply> {
        self.request(hyper::Method::POST, path, body).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.request(hyper::Method::GET, path, Bytes::new()).await
    }
}
