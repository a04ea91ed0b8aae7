//! `baseline`: what a tap costs with nothing but the irreducible work — the gateway's own
//! mutual-TLS configuration (`gateway::tls::terminal_server_config`: webpki chain, CRL and
//! terminal check), HTTP/1.1 + HTTP/2 by ALPN, decoding the tap JSON and verifying the ride code
//! (with the same credential cache as the gateway) — then a fixed answer, with no storage.
//! The load benchmark compares the gateway's throughput with this.
//!
//! `baseline --plain` is a cleartext endpoint that answers every request with a fixed body,
//! doing no work: the target for measuring the load simulator's own ceiling.
//!
//! Prints `listening <addr>` on stdout once bound.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use turnpike_wire::api::{Decision, TapRequest, TapResponse};
use turnpike_wire::ridecode::{DenyList, IssuerPublicKey, Verifier, VerifyPolicy};

/// The gateway's allocator, so the ratio compares the work done and not the allocators.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The gateway's own bound on a tap body.
const TAP_BODY_BYTES_MAX: usize = 16 * 1024;
/// The gateway's default credential cache.
const CREDENTIAL_CACHE_MAX: usize = 200_000;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Dev PKI directory (`ca.pem`, `server.pem`, `server.key`), as the gateway's `tls.dir`.
    #[arg(long)]
    certs: Option<PathBuf>,
    /// Issuer keys as served by the gateway's `GET /v1/terminal/keys`.
    #[arg(long)]
    keys: Option<PathBuf>,
    /// Cleartext, fixed answer, no work at all.
    #[arg(long)]
    plain: bool,
    /// Tokio worker threads (default: one per core, as the gateway).
    #[arg(long)]
    threads: Option<usize>,
}

/// Every demo terminal may connect, as on a gateway configured with the demo fleet.
struct DemoTerminals(HashSet<String>);

impl gateway::tls::TerminalGate for DemoTerminals {
    fn is_active(&self, terminal_id: &str) -> bool {
        self.0.contains(terminal_id)
    }
}

#[derive(serde::Deserialize)]
struct Keys {
    keys: Vec<IssuerPublicKey>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        runtime.worker_threads(n);
    }
    runtime.enable_all().build()?.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening {}", listener.local_addr()?);
    if args.plain {
        loop {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            tokio::spawn(async move {
                // The body is read before answering: an answer sent while the request's body
                // is still arriving makes the server reset the stream, and after 1,024 such
                // resets hyper closes the connection (`too_many_internal_resets`), which read
                // as the simulator's errors.
                let service = hyper::service::service_fn(|req: Request<Incoming>| async {
                    let _ = req.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"{\"decision\":\"approve\"}",
                    ))))
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                // Enough streams per connection that a load generator's bursts never hit the
                // limit: the ceiling measured is the client's, not this setting's.
                builder.http2().max_concurrent_streams(4096);
                let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    }
    let certs = args.certs.context("--certs is required without --plain")?;
    let keys: Keys = serde_json::from_slice(&std::fs::read(
        args.keys.context("--keys is required without --plain")?,
    )?)?;
    let verifier = Arc::new(
        Verifier::new(keys.keys, VerifyPolicy::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_credential_cache(CREDENTIAL_CACHE_MAX),
    );
    let gate = Arc::new(DemoTerminals(
        turnpike_client::demo::demo_terminal_ids()
            .into_iter()
            .collect(),
    ));
    let tls = gateway::tls::terminal_server_config(&certs, gate)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let deny = Arc::new(DenyList::new());
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let (acceptor, verifier, deny) = (acceptor.clone(), verifier.clone(), deny.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (verifier, deny) = (verifier.clone(), deny.clone());
                async move { Ok::<_, std::convert::Infallible>(tap(req, &verifier, &deny).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Decode, verify, answer: approve, or decline with the verifier's reason.
async fn tap(
    req: Request<Incoming>,
    verifier: &Verifier,
    deny: &DenyList,
) -> Response<Full<Bytes>> {
    let respond = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            "application/json".parse().expect("literal"),
        );
        response
    };
    let Ok(body) = Limited::new(req.into_body(), TAP_BODY_BYTES_MAX)
        .collect()
        .await
    else {
        return respond(StatusCode::PAYLOAD_TOO_LARGE, b"{}".to_vec());
    };
    let Ok(tap) = serde_json::from_slice::<TapRequest>(&body.to_bytes()) else {
        return respond(StatusCode::BAD_REQUEST, b"{}".to_vec());
    };
    let verdict = verifier.verify_base64url(&tap.ride_code, tap.scanned_at_ms, deny);
    let answer = TapResponse {
        sequence: tap.sequence,
        decision: if verdict.is_ok() {
            Decision::Approve
        } else {
            Decision::Decline
        },
        reason: verdict.err().map(|r| r.code().to_string()),
        journey_id: None,
        fare: None,
        charge: None,
    };
    respond(
        StatusCode::OK,
        serde_json::to_vec(&answer).expect("an answer serializes"),
    )
}
