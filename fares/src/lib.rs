//! Pure pricing for Turnpike: what a metro journey or a highway toll costs.
//!
//! The gateway asks this crate for a price when a gate closes a journey or a booth charges an exit;
//! the admin API uses its loaders to validate fare data an operator uploads, and answers the
//! operator with the loader's error (file, line, reason) when the data is wrong. Every amount is an
//! exact decimal [`Money`](turnpike_wire::money::Money) with its currency; no float is used
//! anywhere, and rounding happens once, by a written rule (see `docs/fares.md`).
//!
//! # Layout
//! - [`metro`]: [`MetroFares`], the priced stop-to-stop table of one metro network (what a gate
//!   needs: price, minimum and maximum fare, known stops), and its loader from a plain fare matrix.
//! - [`gtfs`]: [`GtfsFeed`], a reader for GTFS + GTFS Fares v2 (media, rider categories,
//!   products per category and medium, timeframes, networks, areas, leg rules with priorities,
//!   transfer rules) with the spec's matching semantics; prices single legs and multi-leg
//!   journeys ([`GtfsFeed::price_journey`]) for a [`FareQuery`] (rider, medium, service day),
//!   reports what it did not use as [`LoadWarning`]s, and builds a [`MetroFares`] per network
//!   that prices by rule at tap time.
//! - [`limits`]: [`Limits`], the named bounds of one load (stops, areas, rules, bytes).
//! - [`hangzhou`]: [`hangzhou_distance_fare`], Hangzhou Metro's distance-band fare rule.
//! - [`toll`]: [`TollTable`], distance × per-class rate between plazas, with minimum tolls and a
//!   configurable rounding rule; vehicle classes of JT/T 489.
//! - [`demo`]: the shipped demo metro (GTFS and matrix) and toll road, embedded in the binary, and
//!   the generator that wrote the demo metro files.
//! - [`error`]: [`LoadError`] (file, line, reason), [`LoadWarning`] and [`FareError`].
//!
//! # What it deliberately does not do
//! - No I/O — no files, no database, no network, no clock: times come in as arguments (leg start
//!   and end seconds), data comes in as text the caller read, each file with its name so errors
//!   can name it, and nothing is cached between calls. `clippy.toml` in this crate disallows the
//!   standard library's file, network, process and clock calls, so `cargo clippy` refuses them.
//! - No journey logic: pairing entry and exit taps, timeouts for missing exits, daily caps and
//!   charging belong to the gateway; this crate only answers "how much".
//! - No panics on any input: malformed files are [`LoadError`]s, unknown stops or plazas are
//!   [`FareError`]s. The only `expect`s are in [`demo`], on data compiled into the crate and
//!   checked by its tests.

pub mod demo;
pub mod error;
mod fast;
pub mod gtfs;
pub mod hangzhou;
pub mod limits;
pub mod metro;
mod money;
mod table;
pub mod toll;

pub use demo::{demo_feed, demo_metro, demo_toll};
pub use error::{FareError, LoadError, LoadReason, LoadWarning};
pub use gtfs::{FareQuery, GtfsFeed, Leg, ServiceDay};
pub use hangzhou::{hangzhou_distance_fare, hangzhou_distance_fare_yuan};
pub use limits::Limits;
pub use metro::{MetroFares, Stop};
pub use toll::{
    parse_vehicle_class, Plaza, TollRate, TollRounding, TollTable, UnknownVehicleClass,
    VehicleClass,
};
