//! `terminal-sim`: a fleet of simulated metro gates, toll lanes and rider phones driving a
//! Turnpike gateway with open-loop load over mutual TLS, exactly as the devices would: riders
//! enrol through the rider API with their own P-256 keys, each terminal presents its own client
//! certificate, keeps its own sequence numbers and verifies every code offline before asking the
//! gateway. Runs are *scenarios* whose report compares what was expected with what happened.
//!
//! # Layout
//! - [`network`]: the network model — stations and their gates, plazas and their lanes, the
//!   fleet's connections and verifiers, enrolled riders, demo set-up through the admin API.
//! - [`demand`]: arrivals (constant rate, a compressed day with two peaks, train bursts) and
//!   origin–destination journeys assigned to riders.
//! - [`scenario`]: named scenarios — planned taps, expected outcome per class, the checks.
//! - [`runner`]: the open-loop scheduler (codes made ahead, sends at scheduled times, latency
//!   from the scheduled time) and the outage/upload cycle.
//! - [`recorder`]: HDR histograms (overall and per second) and outcome counts.
//! - [`offline`]: a gate's durable offline buffer (embedded SQLite) and batch upload.
//! - [`report`]: JSON report, human summary, SVG chart.
//! - [`load`]: plain open-loop load against any URL (baselines, the simulator's own ceiling).
//! - [`transport`]: one HTTP/2 connection per terminal (hyper, rustls).
//!
//! It deliberately does not yet drive toll booths with wallet payment codes, ticket machines or
//! the provider-degradation scenario: those need the payment provider (issue 3).

pub mod demand;
pub mod load;
pub mod network;
pub mod offline;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod transport;

use std::sync::Arc;

use rand::SeedableRng;

pub use network::{Fleet, Riders, Target};
pub use report::Report;
pub use runner::{GateVerify, RunOptions};
pub use scenario::{Plan, Scenario};

/// A connected fleet and its enrolled riders; runs scenarios one after another.
pub struct Sim {
    pub target: Target,
    pub fleet: Arc<Fleet>,
    pub riders: Riders,
    rng: rand::rngs::StdRng,
}

impl Sim {
    /// Connects every terminal (fetching issuer keys and the deny list from the gateway).
    pub async fn connect(target: Target, seed: u64) -> anyhow::Result<Sim> {
        let fleet = Arc::new(Fleet::connect(&target.terminal_url, &target.certs, None).await?);
        Ok(Sim {
            target,
            fleet,
            riders: Riders::default(),
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        })
    }

    /// Points the fleet at another terminal API (e.g. the benchmark's baseline), keeping the
    /// riders and the issuer keys the gates already hold.
    pub async fn retarget(&mut self, terminal_url: &str) -> anyhow::Result<()> {
        let (keys, deny) = network::fetch_feeds(&self.fleet.terminals[0].link).await?;
        self.fleet =
            Arc::new(Fleet::connect(terminal_url, &self.target.certs, Some((keys, deny))).await?);
        self.target.terminal_url = terminal_url.to_string();
        Ok(())
    }

    pub fn plan(&mut self, scenario: Scenario, rate_per_s: f64, duration_s: f64) -> Plan {
        scenario::plan(scenario, &self.fleet, rate_per_s, duration_s, &mut self.rng)
    }

    /// Enrols the riders the plan needs, runs it and reports.
    pub async fn run(&mut self, plan: &Plan, options: &RunOptions) -> anyhow::Result<Report> {
        self.riders.ensure(&self.target, plan.riders).await?;
        let (rec, elapsed) =
            runner::execute(self.fleet.clone(), &self.riders.devices, plan, options).await?;
        let checks = scenario::checks(plan, &rec);
        Ok(Report::build(
            plan.scenario.name(),
            &self.target.terminal_url,
            plan.taps.len(),
            plan.rate_per_s,
            plan.duration_s,
            elapsed,
            match options.gate_verify {
                GateVerify::Inline => "inline",
                GateVerify::Prepared => "prepared",
            },
            &rec,
            checks,
        ))
    }
}

/// Connects, plans and runs one scenario.
pub async fn run_scenario(
    target: Target,
    scenario: Scenario,
    rate_per_s: f64,
    duration_s: f64,
    options: &RunOptions,
) -> anyhow::Result<Report> {
    let mut sim = Sim::connect(target, rand::random()).await?;
    let plan = sim.plan(scenario, rate_per_s, duration_s);
    sim.run(&plan, options).await
}
