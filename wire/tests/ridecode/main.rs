//! Ride-code format v1: round trips, every reject reason, key rotation, bit-flip properties, the
//! published test vectors, QR capacity. One test binary, so the crate links once. Timing lives
//! in `benches/benches/micro.rs`.

mod common;
mod props;
mod qr;
mod reject;
mod roundtrip;
mod vectors;
