//! `settlement`: what each operator is owed for a business day.
//!
//! This first version reads the gateway's closed journeys for one business day and prints, per
//! operator and close reason, the journey count, the fares (list prices) and the charges (after
//! daily caps). Three-way reconciliation against the provider's bill and the operators' exports,
//! the double-entry journal and the finance review UI come with the settlement issue.

use clap::Parser;
use serde::Serialize;
use turnpike_wire::{Currency, Money};

#[derive(Parser)]
#[command(
    name = "settlement",
    about = "Turnpike settlement: a business day's totals per operator"
)]
struct Args {
    /// The gateway's database (`sqlite://…` or `postgres://…`).
    #[arg(long, env = "TURNPIKE_DATABASE__URL")]
    database: String,
    /// Business day, YYYY-MM-DD, in each operator's time zone.
    #[arg(long)]
    date: String,
    /// Only this operator.
    #[arg(long)]
    operator: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Line {
    operator_id: String,
    close_reason: String,
    journeys: i64,
    fares: Money,
    charges: Money,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let date: jiff::civil::Date = args
        .date
        .parse()
        .map_err(|e| anyhow::anyhow!("--date must be YYYY-MM-DD: {e}"))?;
    let date = date.to_string();
    let store = gateway::store::Store::connect(&args.database, 2).await?;
    let mut lines = Vec::new();
    for t in store.day_totals(&date).await? {
        if args.operator.as_deref().is_some_and(|o| o != t.operator_id) {
            continue;
        }
        let currency = Currency::parse(&t.currency).map_err(|e| anyhow::anyhow!("{e}"))?;
        lines.push(Line {
            operator_id: t.operator_id,
            close_reason: t.close_reason,
            journeys: t.journeys,
            fares: Money::from_minor(t.fares_minor, currency),
            charges: Money::from_minor(t.charges_minor, currency),
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
    } else {
        println!("business day {date}");
        for l in &lines {
            println!(
                "{:<16} {:<14} {:>7} journeys  fares {:>14}  charges {:>14}",
                l.operator_id,
                l.close_reason,
                l.journeys,
                l.fares.to_string(),
                l.charges.to_string()
            );
        }
        if lines.is_empty() {
            println!("no closed journeys");
        }
    }
    Ok(())
}
