//! Ride-code format v1: round trips, every reject reason, key rotation, bit-flip properties, the
//! published test vectors, QR capacity and (with `--ignored`) timing. One test binary, so the
//! crate links once.

mod common;
mod props;
mod qr;
mod reject;
mod roundtrip;
mod timing;
mod vectors;
