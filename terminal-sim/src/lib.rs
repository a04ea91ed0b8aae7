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
//! - [`provider`]: with the provider sandbox ([`Sim::use_provider`], `--provider-sandbox`):
//!   every rider gets a wallet and binds a withholding agreement (metro is post-paid), toll
//!   exits are paid at the booth with one-time payment codes, the `provider-degradation`
//!   scenario's fault knobs, and the money checks after a run.
//! - [`tickets`]: with the provider, riders buy tickets at the stations' machines: the machine
//!   orders, shows the QR, the wallet scans and pays it, the machine waits for the ticket.

pub mod demand;
pub mod load;
pub mod network;
pub mod offline;
pub mod provider;
pub mod recorder;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod tickets;
pub mod transport;

use std::sync::Arc;

use rand::{Rng, SeedableRng};

pub use network::{Fleet, Riders, Target};
pub use provider::ProviderTarget;
pub use report::Report;
pub use runner::{GateVerify, RunOptions};
pub use scenario::{Plan, Scenario};

/// A connected fleet and its enrolled riders; runs scenarios one after another.
pub struct Sim {
    pub target: Target,
    pub fleet: Arc<Fleet>,
    pub riders: Riders,
    /// The payment provider's sandbox, when toll exits are paid at the booth.
    pub provider: Option<provider::Provider>,
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
            provider: None,
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

    /// Plans a run of `scenario`; with the provider ([`Sim::use_provider`] first), riders also
    /// buy tickets at the machines.
    pub fn plan(&mut self, scenario: Scenario, rate_per_s: f64, duration_s: f64) -> Plan {
        let tickets = self.provider.is_some();
        scenario::plan(
            scenario,
            &self.fleet,
            rate_per_s,
            duration_s,
            tickets,
            &mut self.rng,
        )
    }

    /// Pays toll exits at the booth through the provider sandbox from now on, and gives every
    /// rider a wallet with a bound withholding agreement (see [`provider`]).
    pub fn use_provider(&mut self, target: ProviderTarget) -> anyhow::Result<()> {
        self.provider = Some(provider::Provider::new(target)?);
        Ok(())
    }

    /// Enrols the riders the plan needs, runs it and reports.
    pub async fn run(&mut self, plan: &Plan, options: &RunOptions) -> anyhow::Result<Report> {
        anyhow::ensure!(
            !plan.scenario.needs_provider() || self.provider.is_some(),
            "scenario {} needs the provider sandbox (--provider-sandbox URL)",
            plan.scenario.name()
        );
        self.riders.ensure(&self.target, plan.riders).await?;
        let Some(provider) = self.provider.as_mut() else {
            let (rec, elapsed) =
                runner::execute(self.fleet.clone(), &self.riders.devices, plan, options).await?;
            let checks = scenario::checks(plan, &rec);
            return Ok(self.report(plan, options, elapsed, &rec, checks));
        };
        provider
            .ensure_wallets(&self.target, &self.riders.devices)
            .await?;
        let admin = turnpike_client::AdminClient::new(
            &self.target.public_url,
            &self.target.ca(),
            &self.target.admin_token,
        )?;
        // What the gateway and the wallets hold before, so that older runs do not count.
        let unsettled_before = provider::unsettled(&admin).await?;
        let (ledger_before, _) = provider::ledger_captured(&admin).await?;
        let balances_before = provider.balances().await?;
        let paid = runner::Paid {
            sandbox: provider.sandbox.clone(),
            wallets: provider.wallets.iter().map(|w| w.user_id.clone()).collect(),
            faults: plan
                .degradation
                .map(|_| provider.target.degraded_faults(self.rng.gen())),
            codes_ahead_s: provider.target.codes_ahead_s,
            code_lead_s: provider.target.code_lead_s,
        };
        let run = runner::execute_with(
            self.fleet.clone(),
            &self.riders.devices,
            plan,
            options,
            Some(paid),
        )
        .await;
        if plan.degradation.is_some() {
            // Whatever happened, leave the sandbox healthy.
            provider.sandbox.clear_faults().await?;
        }
        let (rec, elapsed) = run?;
        let (settled, pending_after, paying_after) =
            provider::settle(&admin, &unsettled_before).await?;
        let (ledger_after, unbalanced) = provider::ledger_captured(&admin).await?;
        let balances_after = provider.balances().await?;
        let figures = provider::ProviderFigures {
            degraded_from_s: rec.paid.degraded_from_s,
            restored_at_s: rec.paid.restored_at_s,
            toll_exits_in_progress: rec.paid.toll_exits_in_progress,
            toll_exit_repeats: rec.paid.toll_exit_repeats,
            codes_ahead: rec.paid.codes_ahead,
            codes_during_run: rec.paid.codes_during_run,
            settle_ms: settled.as_millis() as u64,
            pending_after,
            paying_after,
            toll_told_fen: rec.paid.toll_charged_minor,
            metro_told_fen: rec.paid.metro_charged_minor,
            tickets_told_fen: rec.tickets.issued_minor,
            uploaded_told_fen: rec.paid.uploaded_charged_minor,
            ledger_captured_fen: ledger_after - ledger_before,
            wallets_paid_fen: balances_before - balances_after,
            ledger_unbalanced_transactions: unbalanced,
        };
        let mut checks = scenario::checks(plan, &rec);
        checks.extend(scenario::provider_checks(plan, &rec, &figures));
        let mut report = self.report(plan, options, elapsed, &rec, checks);
        report.provider = Some(figures);
        Ok(report)
    }

    fn report(
        &self,
        plan: &Plan,
        options: &RunOptions,
        elapsed: std::time::Duration,
        rec: &recorder::Recorder,
        checks: Vec<scenario::Check>,
    ) -> Report {
        Report::build(
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
            rec,
            checks,
        )
    }
}

/// Connects, plans and runs one scenario (toll exits paid at the booth when `provider` is
/// given).
pub fn run_scenario(
    target: Target,
    provider: Option<ProviderTarget>,
    scenario: Scenario,
    rate_per_s: f64,
    duration_s: f64,
    options: &RunOptions,
) -> BoxFuture<'_, anyhow::Result<Report>> {
    Box::pin(run_scenario_inner(
        target, provider, scenario, rate_per_s, duration_s, options,
    ))
}

/// A boxed future: the simulator's entry points return one so their state machines are compiled
/// once, in this crate, not again in the CLI and every test that awaits them.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

async fn run_scenario_inner(
    target: Target,
    provider: Option<ProviderTarget>,
    scenario: Scenario,
    rate_per_s: f64,
    duration_s: f64,
    options: &RunOptions,
) -> anyhow::Result<Report> {
    let mut sim = Sim::connect(target, rand::random()).await?;
    if let Some(provider) = provider {
        sim.use_provider(provider)?;
    }
    let plan = sim.plan(scenario, rate_per_s, duration_s);
    sim.run(&plan, options).await
}

/// Now, as UTC Unix milliseconds (the simulated devices' clock).
pub use turnpike_client::now_ms;
