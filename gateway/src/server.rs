//! Listeners: TLS accept loops that hand each connection to hyper (HTTP/1.1 or HTTP/2 by ALPN),
//! bounded in connections and handshake time, and drained gracefully on shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::terminal::TerminalIdentity;
use crate::api::ClientAddress;
use crate::tls::terminal_id_of;

/// Concurrent connections per listener. A station has tens of gates and a node serves hundreds
/// of stations; past this, new connections wait in the kernel's accept queue.
pub const CONNECTIONS_MAX: usize = 20_000;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that has not sent a complete request head by then (its first one, or for HTTP/1.1
/// its next one) is dropped, so silent or slow clients cannot hold connection slots forever.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle HTTP/2 connections are pinged; a peer that stops answering (a gate that lost power) is
/// dropped.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests before closing connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the listener authenticates terminals (and so attaches a [`TerminalIdentity`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Terminal,
    ServerOnly,
}

/// Connections the ops listener serves at once: a few scrapers and probes.
pub const OPS_CONNECTIONS_MAX: usize = 256;

/// Accepts connections until `shutdown`, at most `connections_max` at once, handing each to
/// `serve` with a watcher of the graceful drain; then drains (up to [`DRAIN_TIMEOUT`]).
async fn accept_loop<L, F, Fut>(
    listener: L,
    connections_max: usize,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(
        tokio::net::TcpStream,
        std::net::SocketAddr,
        hyper_util::server::graceful::Watcher,
    ) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
    L: std::borrow::Borrow<TcpListener>,
{
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(connections_max));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.borrow().accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let connection = serve(tcp, peer, graceful.watcher());
        tokio::spawn(async move {
            let _permit = permit;
            connection.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing connections with requests in flight");
    }
}

pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    auth: Auth,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(listener, CONNECTIONS_MAX, shutdown, |tcp, peer, watcher| {
        let (acceptor, router) = (acceptor.clone(), router.clone());
        async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                    metrics::counter!("gateway_tls_handshake_failures_total").increment(1);
                    return;
                }
                Err(_) => return,
            };
            let identity = match auth {
                Auth::Terminal => {
                    let id = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(terminal_id_of);
                    match id {
                        Some(id) => Some(TerminalIdentity(id.into())),
                        None => return,
                    }
                }
                Auth::ServerOnly => None,
            };
            serve_connection(tls, peer, identity, router, watcher).await;
        }
    })
    .await;
}

/// Plain HTTP for the ops endpoints, with the same connection bound and request-head timeout
/// as the TLS listeners (a slow client cannot hold a connection open). The listener is owned
/// (closed when serving ends) or borrowed: while the gateway waits for its database at start,
/// the ops listener answers and is then served for good.
pub async fn serve_plain(
    listener: impl std::borrow::Borrow<TcpListener>,
    router: Router,
    shutdown: watch::Receiver<bool>,
) {
    accept_loop(
        listener,
        OPS_CONNECTIONS_MAX,
        shutdown,
        |tcp, peer, watcher| serve_connection(tcp, peer, None, router.clone(), watcher),
    )
    .await;
}

/// Serves HTTP/1.1 or HTTP/2 on one connection: the terminal's identity and the client's
/// address attached to each request, the first request head due within
/// [`REQUEST_HEAD_TIMEOUT`] (and each later HTTP/1.1 head too), idle HTTP/2 peers pinged.
async fn serve_connection<I>(
    io: I,
    peer: std::net::SocketAddr,
    identity: Option<TerminalIdentity>,
    router: Router,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let first_request = Arc::new(tokio::sync::Notify::new());
    let got_request = first_request.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            got_request.notify_one();
            if let Some(identity) = &identity {
                req.extensions_mut().insert(identity.clone());
            }
            req.extensions_mut().insert(ClientAddress(peer.ip()));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
    // hyper's own HTTP/1.1 header timeout and HTTP/2 keep-alive only run with a timer.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_HEAD_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let conn = watcher.watch(conn.into_owned());
    tokio::pin!(conn);
    // Protocol detection and the HTTP/2 preface have no timeout of their own: bound the wait
    // for the first request.
    let first = tokio::time::timeout(REQUEST_HEAD_TIMEOUT, async {
        tokio::select! {
            ended = &mut conn => Some(ended),
            _ = first_request.notified() => None,
        }
    })
    .await;
    let ended = match first {
        Err(_) => {
            tracing::debug!(%peer, "no request within the request-head timeout");
            return;
        }
        Ok(Some(ended)) => ended,
        Ok(None) => conn.await,
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
