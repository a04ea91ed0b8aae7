//! `fares`: price a journey or check a GTFS feed directory with the gateway's own pricing.
//!
//! - `fares check --feed DIR`: loads the feed as the admin upload would, prints every warning
//!   (file, line, column, what happens instead) and a summary; exits 1 if the feed is refused.
//! - `fares price --feed DIR --from STOP --to STOP [--at HH:MM[:SS]] [--date YYYYMMDD]
//!   [--category C] [--medium M] [--network N]`: the fare of one leg.
//! - `fares journey --feed DIR --leg NETWORK,FROM,HH:MM,TO,HH:MM [--leg ...] [--date YYYYMMDD]
//!   [--category C] [--medium M]`: the fare of a journey of legs in travel order, with the
//!   feed's transfer rules and join rules (effective fare legs) applied.
//!
//! This program reads the files; the fares crate does no I/O. Every `*.txt` file of DIR is
//! given to the loader by name (files it does not know are warned about, not read).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use turnpike_fares::{FareQuery, GtfsFeed, Leg, ServiceDay};

#[derive(Parser)]
#[command(name = "fares", about = "Price journeys and check GTFS Fares v2 feeds")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load a feed, print its warnings and a summary.
    Check {
        #[arg(long)]
        feed: PathBuf,
    },
    /// The fare of one leg.
    Price {
        #[arg(long)]
        feed: PathBuf,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// Entry time of day, HH:MM or HH:MM:SS; without it no timeframe applies.
        #[arg(long)]
        at: Option<String>,
        /// Service day YYYYMMDD, for timeframes bound to a service_id (default: none holds).
        #[arg(long)]
        date: Option<u32>,
        /// rider_category_id (default: the feed's default category).
        #[arg(long)]
        category: Option<String>,
        /// fare_media_id (default: the feed's first mobile-app medium).
        #[arg(long)]
        medium: Option<String>,
        /// network_id (default: the feed's only network).
        #[arg(long)]
        network: Option<String>,
    },
    /// The fare of a journey: legs in travel order, transfer and join rules applied.
    Journey {
        #[arg(long)]
        feed: PathBuf,
        /// One leg, `NETWORK,FROM_STOP,HH:MM,TO_STOP,HH:MM` (times of day of the service day;
        /// an empty NETWORK is a leg on no network); repeat for each leg.
        #[arg(long = "leg", required = true)]
        legs: Vec<String>,
        /// Service day YYYYMMDD, for timeframes bound to a service_id (default: none holds).
        #[arg(long)]
        date: Option<u32>,
        /// rider_category_id (default: the feed's default category).
        #[arg(long)]
        category: Option<String>,
        /// fare_media_id (default: the feed's first mobile-app medium).
        #[arg(long)]
        medium: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Check { feed } => check(&feed),
        Command::Price {
            feed,
            from,
            to,
            at,
            date,
            category,
            medium,
            network,
        } => {
            let files = read_feed(&feed)?;
            let feed = load(&files)?;
            let network = match network {
                Some(n) => n,
                None => match feed.network_ids().as_slice() {
                    [] => String::new(),
                    [only] => (*only).to_string(),
                    many => bail!("the feed has networks {many:?}: pass --network"),
                },
            };
            let at_s = at.as_deref().map(seconds_of_day).transpose()?;
            let query = FareQuery {
                rider_category: category,
                fare_medium: medium,
                service_day: at_s.map(|_| ServiceDay {
                    date: date.unwrap_or(0),
                    start_s: 0,
                }),
            };
            let t = at_s.unwrap_or(0);
            let fare = feed.price_at(&network, &from, &to, t, t, &query)?;
            println!("{} {}", fare.amount(), fare.currency().code());
            Ok(())
        }
        Command::Journey {
            feed,
            legs,
            date,
            category,
            medium,
        } => {
            let files = read_feed(&feed)?;
            let feed = load(&files)?;
            let legs = legs
                .iter()
                .map(|text| parse_leg(text))
                .collect::<anyhow::Result<Vec<Leg>>>()?;
            let query = FareQuery {
                rider_category: category,
                fare_medium: medium,
                // Times are of the service day: it starts at 0 on the legs' clock.
                service_day: Some(ServiceDay {
                    date: date.unwrap_or(0),
                    start_s: 0,
                }),
            };
            let fare = feed.price_journey(&legs, &query)?;
            println!("{} {}", fare.amount(), fare.currency().code());
            Ok(())
        }
    }
}

/// `NETWORK,FROM,HH:MM,TO,HH:MM` as a leg on the service day's clock.
fn parse_leg(text: &str) -> anyhow::Result<Leg> {
    let parts: Vec<&str> = text.split(',').collect();
    let [network, from, start, to, end] = parts[..] else {
        bail!("--leg {text:?}: expected NETWORK,FROM_STOP,HH:MM,TO_STOP,HH:MM");
    };
    Ok(Leg {
        network_id: network.to_string(),
        from_stop: from.to_string(),
        start_s: seconds_of_day(start).with_context(|| format!("--leg {text:?}"))?,
        to_stop: to.to_string(),
        end_s: seconds_of_day(end).with_context(|| format!("--leg {text:?}"))?,
    })
}

fn check(dir: &Path) -> anyhow::Result<()> {
    let files = read_feed(dir)?;
    let feed = load(&files)?;
    for warning in feed.warnings() {
        println!("WARNING {warning}");
    }
    let networks = feed.network_ids();
    println!(
        "ok: {} files, currency {}, networks {:?}, {} warnings",
        files.len(),
        feed.currency().code(),
        networks,
        feed.warnings().len()
    );
    for network in networks {
        let metro = feed.metro_fares(network)?;
        println!(
            "network {network:?}: {} stops, fares {} to {}",
            metro.stops().len(),
            metro.min_fare().amount(),
            metro.max_fare().amount()
        );
    }
    Ok(())
}

fn load(files: &[(String, String)]) -> anyhow::Result<GtfsFeed> {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    Ok(GtfsFeed::from_files(&refs)?)
}

/// Every `*.txt` file of `dir`, by file name.
fn read_feed(dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "txt") {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .context("file name")?
                .to_string();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            files.push((name, text));
        }
    }
    files.sort();
    Ok(files)
}

fn seconds_of_day(text: &str) -> anyhow::Result<i64> {
    let parts: Vec<&str> = text.split(':').collect();
    let nums: Vec<i64> = parts
        .iter()
        .map(|p| p.parse::<i64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("time {text:?}: expected HH:MM or HH:MM:SS"))?;
    match nums[..] {
        [h, m] if m < 60 => Ok(h * 3600 + m * 60),
        [h, m, s] if m < 60 && s < 60 => Ok(h * 3600 + m * 60 + s),
        _ => bail!("time {text:?}: expected HH:MM or HH:MM:SS"),
    }
}
