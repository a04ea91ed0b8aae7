//! `settlement`: the nightly settlement of a business day.
//!
//! Reads the day's three inputs — the gateway's export of its money records, the provider's
//! daily bill, each operator's export of its gate and booth transactions — reconciles them
//! three ways, and computes each operator's money and a double-entry journal that must balance.
//!
//! # Layout
//! - [`formats`]: the input formats and their streaming, parallel readers (errors with file, line
//!   and reason; nothing dropped silently). Documented in `docs/settlement-formats.md`.
//! - [`recon`]: [`reconcile`] — the three-way matching; every row ends in exactly one item and
//!   every item in exactly one [`Class`].
//! - [`money`]: fee contracts, per-operator totals, the journal and its balance check, and how
//!   an amount is written ([`money::format_minor`]).
//! - [`day`]: the business day window (time zone, cut-off).
//! - [`error`]: [`SettlementError`] and [`InputError`].
//!
//! That engine (the modules above) deliberately does not talk to a database or the network,
//! write files (a caller persists a [`Reconciliation`] only after [`reconcile`] succeeded, so a
//! failed run leaves nothing partial), or carry items across days by itself (it reports
//! `other_day` items with the day they belong to).
//!
//! Around it, the product a finance team runs: [`run`] (a day's run: inputs, reconcile, store,
//! files), [`engine`] and [`outcome`] (the run's view of a reconciliation), [`outputs`]
//! (statement, payout and exception files), [`adjust`] (statements with carried items and
//! adjustments), [`store`] (the only settlement code that speaks SQL), [`web`] and [`auth`]
//! (the review UI), [`schedule`] (the nightly job), [`cli`] (the command line's flags and
//! steps), [`digest`] (SHA-256 fingerprints), [`charts`] (the UI's server-rendered SVG charts)
//! and [`export`] (a day's CSV and XLSX export for auditors).
//!
//! Their dependencies run one way (no module cycles), each module using only those before it:
//! the engine's modules, [`outcome`] and [`digest`]; [`outputs`] (renders an outcome);
//! [`adjust`] (composes statements and renders them); [`store`]; [`run`] (drives a day through
//! the [`run::Engine`] that [`engine`] implements); [`web`], [`schedule`] and [`cli`] on top.

pub mod day;
pub mod error;
pub mod formats;
pub mod money;
pub mod recon;

pub use day::DayWindow;
pub use error::{InputError, InputErrorKind, SettlementError};
pub use formats::provider::{BillFile, Encoding};
pub use money::{Account, FeeContract, Journal, JournalEntry, JournalLine, Totals};
pub use recon::{
    reconcile, Class, ClassCounts, FeeException, InputFile, Item, MismatchReason, OperatorFile,
    OperatorSettlement, ReconConfig, ReconInput, Reconciliation, RecordKind, RowCounts, RowRef,
    Side,
};

// The settlement run, its storage and the finance review UI (a database and the network are
// theirs, not the engine's): outcome, outputs, run, store, web, auth, schedule, engine, cli.
/// A boxed, sendable future. The entry points the binary awaits return one, boxed where they
/// are defined, so their state machines compile once in this library instead of again in the
/// binary and in every test that awaits them (ARCHITECTURE.md, "Build").
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

pub mod adjust;
pub mod auth;
pub mod charts;
pub mod cli;
pub mod digest;
pub mod engine;
pub mod export;
pub mod outcome;
pub mod outputs;
pub mod run;
pub mod schedule;
pub mod store;
pub mod web;
pub use engine::engine;
