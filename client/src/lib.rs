//! Typed clients of a Turnpike gateway, speaking exactly what a gate, a rider's app and an
//! admin console send, over real (mutual) TLS; the development PKI; the demo world's names.
//! The demo, the simulator and the end-to-end tests use it, so they exercise the real wire
//! format. It knows the gateway only through `turnpike-wire`'s API types and HTTP: it does not
//! link the server.
//!
//! # Layout
//! - [`TerminalClient`], [`AdminClient`], [`RiderDevice`], [`Answer`] (`http.rs`): the clients.
//! - [`tls`]: the client TLS configuration and PEM loading (shared with the gateway's server
//!   configuration).
//! - [`certs`]: the development PKI (CA, server and terminal certificates, CRLs) with rcgen.
//! - [`demo`]: the demo operators, terminals and merchant app id.
//! - [`now_ms`]: a device's wall clock.

pub mod certs;
pub mod demo;
mod http;
pub mod tls;

pub use http::{AdminClient, Answer, RiderDevice, TerminalClient};

/// Now, as UTC Unix milliseconds: a device's clock (a gate's scan time, a phone's ride code).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `N` bytes from the operating system's random source.
fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .expect("the OS random source works");
    out
}
