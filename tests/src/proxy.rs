//! A TCP proxy a test controls, between the gateway and its PostgreSQL: the database "cut" as a
//! network fault would cut it, on loopback, without touching the machine's shared server.
//!
//! - [`Fault::None`]: bytes pass both ways.
//! - [`Fault::Blackhole`]: connections stay open but nothing passes (a pulled cable, a route
//!   that drops packets); what was held passes once the fault ends, as TCP retransmission would
//!   deliver it. New connections are accepted and held the same way.
//! - [`Fault::Reset`]: every open connection is closed at once, and new ones are closed on
//!   accept (the server restarting, a firewall sending resets).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Blackhole,
    Reset,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (fault, faults) = watch::channel(Fault::None);
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let open = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *faults.borrow() == Fault::Reset {
                    drop(client);
                    continue;
                }
                let faults = faults.clone();
                let task = tokio::spawn(async move {
                    let _ = relay(client, upstream, faults).await;
                });
                let mut open = open.lock().expect("proxy connections");
                open.retain(|t| !t.is_finished());
                open.push(task.abort_handle());
            }
        })
        .abort_handle();
        Ok(FaultProxy {
            addr,
            fault,
            connections,
            accept,
        })
    }

    /// A proxy to the server of `url` (a `postgres://…@host:port/db` URL).
    pub async fn for_url(url: &str) -> std::io::Result<FaultProxy> {
        let host_port = url
            .split_once('@')
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(host_port, _)| host_port)
            .expect("a postgres://user@host:port/db URL");
        let upstream = tokio::net::lookup_host(host_port)
            .await?
            .next()
            .expect("the database host resolves");
        FaultProxy::start(upstream).await
    }

    pub fn set(&self, fault: Fault) {
        if fault == Fault::Reset {
            for connection in self
                .connections
                .lock()
                .expect("proxy connections")
                .drain(..)
            {
                connection.abort();
            }
        }
        self.fault.send_replace(fault);
    }

    /// `url` (a `postgres://…@host:port/db` URL) pointed at this proxy instead.
    pub fn url_through(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').expect("a URL with a user");
        let (_, path) = rest.split_once('/').expect("a URL with a database");
        format!("{scheme_user}@{}/{path}", self.addr)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.set(Fault::Reset);
    }
}

/// Waits while the fault is a blackhole; false once it is a reset.
async fn passable(faults: &mut watch::Receiver<Fault>) -> bool {
    loop {
        let fault = *faults.borrow_and_update();
        match fault {
            Fault::None => return true,
            Fault::Reset => return false,
            Fault::Blackhole => {
                if faults.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Fault>,
) -> std::io::Result<()> {
    if !passable(&mut faults).await {
        return Ok(());
    }
    let server = TcpStream::connect(upstream).await?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, faults.clone());
    let down = pump(server_read, client_write, faults);
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}

/// Copies one direction, holding each chunk while the fault is a blackhole.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut faults: watch::Receiver<Fault>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if !passable(&mut faults).await {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
    }
}
