//! Listeners: TLS accept loops that hand each connection to hyper (HTTP/1.1 or HTTP/2 by ALPN),
//! bounded in connections and handshake time, and drained gracefully on shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::api::terminal::TerminalIdentity;
use crate::tls::terminal_id_of;

/// Concurrent connections per listener. A station has tens of gates and a node serves hundreds
/// of stations; past this, new connections wait in the kernel's accept queue.
pub const CONNECTIONS_MAX: usize = 20_000;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests before closing connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the listener authenticates terminals (and so attaches a [`TerminalIdentity`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Terminal,
    ServerOnly,
}

pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    auth: Auth,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
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
        let acceptor = acceptor.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
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
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    if let Some(identity) = &identity {
                        req.extensions_mut().insert(identity.clone());
                    }
                    router.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
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

/// Plain HTTP for the ops endpoints.
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "ops listener failed");
    }
}
