//! What Turnpike's programs must agree on byte for byte.
//!
//! The gateway, the terminal simulator, the settlement job and (one day) the gate firmware and the
//! rider app all link this crate, so it holds only formats and pure rules:
//!
//! # Layout
//! - [`ridecode`]: the credential and ride-code byte format, signing (issuer and device) and the
//!   verifier a gate runs offline and the gateway runs online. See `docs/ride-code.md`.
//! - [`money`]: exact amounts with an ISO 4217 currency; never floats.
//! - [`api`]: the JSON types of the terminal API (taps and their answers), shared by every client.
//! - [`json`]: reading JSON whose structures are objects with named fields, at every depth.
//! - [`ident`]: the input rules for identifiers, decimal ids and human text.
//!
//! It deliberately does no I/O: no clock (callers pass the time), no files, no network.

#[macro_use]
mod spelled;

pub mod api;
pub mod ident;
pub mod json;
pub mod money;
pub mod ridecode;

pub use money::{Currency, Money, MoneyError};
