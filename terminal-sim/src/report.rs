//! The run's report: JSON (format in `docs/load.md`), a human summary, and an SVG chart of
//! latency percentiles and throughput over time.

use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

use crate::recorder::{OfflineCounts, Recorder};
use crate::scenario::Check;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Percentiles {
    /// Percentiles of a histogram, divided by `per_unit` (1000 for µs → ms).
    pub fn of(h: &Histogram<u64>, per_unit: f64) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let q = |q: f64| h.value_at_quantile(q) as f64 / per_unit;
        Percentiles {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / per_unit,
        }
    }
}

/// A chart line: its label, the value it plots for a second, its colour.
type Line<T> = (&'static str, fn(&Second) -> T, RGBColor);

/// One second of the run, for the chart and the JSON timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub t_s: u64,
    pub offered: u64,
    pub answered: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    /// Taps per second offered on average (live and buffered, as planned).
    pub offered_rate_per_s: f64,
    /// The rate parameter of the run (the peak of a time-of-day profile).
    pub peak_rate_per_s: f64,
    pub duration_s: f64,
    /// Live requests answered or failed (buffered taps are not requests until uploaded).
    pub requests: u64,
    pub approved: u64,
    pub declined: u64,
    pub errors: u64,
    /// Answers per second over the run.
    pub throughput_per_s: f64,
    /// From each request's scheduled time to its answer (coordinated omission corrected).
    pub latency_ms: Percentiles,
    /// One offline verification of a ride code at a gate.
    pub gate_verify_us: Percentiles,
    /// Where gates verified codes: `inline` or `prepared` (ahead of the run).
    pub gate_verify: String,
    /// How late the simulator dispatched requests: its own part of the latency.
    pub dispatch_lag_ms: Percentiles,
    pub gate_refused: u64,
    pub fares_seen: Vec<String>,
    pub offline: OfflineCounts,
    pub outcomes: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    pub checks: Vec<Check>,
    pub passed: bool,
    pub error_samples: Vec<String>,
    pub timeline: Vec<Second>,
    /// Toll exits paid at the booth, from scheduled time to the final answer (they include the
    /// provider's round trips and any repeats after `409 payment_in_progress`); not part of
    /// `latency_ms`. Absent when no exit was paid at the booth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toll_exit_latency_ms: Option<Percentiles>,
    /// With the provider sandbox: the money and settlement figures behind the provider checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<crate::provider::ProviderFigures>,
    /// Tickets bought at the machines (runs with the provider sandbox).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tickets: Option<TicketReport>,
}

/// The ticket machines' part of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TicketReport {
    #[serde(flatten)]
    pub counts: crate::tickets::TicketCounts,
    /// From the purchase's scheduled time to the order with its QR payload.
    pub order_latency_ms: Percentiles,
    /// From the wallet's payment to the machine showing the ticket (the provider's notification,
    /// verified and cross-checked by query, plus the machine's polling every 200 ms).
    pub issue_latency_ms: Percentiles,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        scenario: &str,
        target: &str,
        planned_taps: usize,
        peak_rate_per_s: f64,
        duration_s: f64,
        elapsed: Duration,
        gate_verify: &str,
        rec: &Recorder,
        checks: Vec<Check>,
    ) -> Report {
        let elapsed_s = elapsed.as_secs_f64().max(duration_s).max(1e-9);
        let answered = rec.requests - rec.errors.min(rec.requests);
        // The last window only catches answers that arrive after the run; keep it if it has any.
        let seconds = rec
            .windows
            .iter()
            .rposition(|w| w.offered > 0 || w.answered > 0)
            .map_or(0, |i| i + 1);
        Report {
            scenario: scenario.into(),
            target: target.into(),
            offered_rate_per_s: planned_taps as f64 / duration_s,
            peak_rate_per_s,
            duration_s: elapsed_s,
            requests: rec.requests,
            approved: rec.approved,
            declined: rec.declined,
            errors: rec.errors,
            throughput_per_s: answered as f64 / elapsed_s,
            latency_ms: Percentiles::of(&rec.latency_us, 1000.0),
            gate_verify_us: Percentiles::of(&rec.gate_verify_ns, 1000.0),
            gate_verify: gate_verify.into(),
            dispatch_lag_ms: Percentiles::of(&rec.dispatch_lag_us, 1000.0),
            gate_refused: rec.gate_refused,
            fares_seen: rec.fares.iter().cloned().collect(),
            offline: rec.offline.clone(),
            outcomes: rec
                .classes
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            toll_exit_latency_ms: (!rec.toll_exit_latency_us.is_empty())
                .then(|| Percentiles::of(&rec.toll_exit_latency_us, 1000.0)),
            provider: None,
            tickets: (rec.tickets.planned > 0).then(|| TicketReport {
                counts: rec.tickets.clone(),
                order_latency_ms: Percentiles::of(&rec.ticket_order_us, 1000.0),
                issue_latency_ms: Percentiles::of(&rec.ticket_issue_us, 1000.0),
            }),
            passed: checks.iter().all(|c| c.passed),
            checks,
            error_samples: rec.error_samples.clone(),
            timeline: rec.windows[..seconds]
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let p = Percentiles::of(&w.latency_us, 1000.0);
                    Second {
                        t_s: i as u64,
                        offered: w.offered,
                        answered: w.answered,
                        p50_ms: p.p50,
                        p90_ms: p.p90,
                        p99_ms: p.p99,
                        max_ms: p.max,
                    }
                })
                .collect(),
        }
    }

    /// The human summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let l = &self.latency_ms;
        let mut out = format!(
            "scenario {} → {}\n  offered {:.0} taps/s (peak {:.0}) for {:.1} s: {} requests, {} approved, {} declined, {} errors; throughput {:.0}/s\n  latency from scheduled time: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms\n  gate offline verification ({}): p50 {:.1} µs, p99 {:.1} µs per code; simulator dispatch lag p99 {:.2} ms\n",
            self.scenario,
            self.target,
            self.offered_rate_per_s,
            self.peak_rate_per_s,
            self.duration_s,
            self.requests,
            self.approved,
            self.declined,
            self.errors,
            self.throughput_per_s,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            self.gate_verify,
            self.gate_verify_us.p50,
            self.gate_verify_us.p99,
            self.dispatch_lag_ms.p99,
        );
        if let Some(t) = &self.toll_exit_latency_ms {
            out += &format!(
                "  toll exits paid at the booth (to the final answer): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
                t.p50, t.p90, t.p99, t.max
            );
        }
        if let Some(p) = &self.provider {
            out += &format!(
                "  provider: {} codes fetched ahead, {} during the run; {} exits 409 then final ({} repeats); settled {} ms after the run\n",
                p.codes_ahead, p.codes_during_run, p.toll_exits_in_progress, p.toll_exit_repeats, p.settle_ms
            );
        }
        if let Some(t) = &self.tickets {
            out += &format!(
                "  ticket machines: {} planned, {} issued; order p50 {:.1} ms, p99 {:.1} ms; paid → ticket p50 {:.0} ms, max {:.0} ms\n",
                t.counts.planned,
                t.counts.issued,
                t.order_latency_ms.p50,
                t.order_latency_ms.p99,
                t.issue_latency_ms.p50,
                t.issue_latency_ms.max
            );
        }
        if self.offline.buffered > 0 {
            let o = &self.offline;
            out += &format!(
                "  offline: {} buffered ({} after a failed live request), {} uploaded, {} accepted, {} declined\n",
                o.buffered, o.after_live_failure, o.uploaded, o.accepted, o.declined
            );
        }
        for c in &self.checks {
            out += &format!(
                "  [{}] {}: expected {}, observed {}\n",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.expected,
                c.observed
            );
        }
        for e in &self.error_samples {
            out += &format!("  error sample: {e}\n");
        }
        out
    }

    /// Latency percentiles per second (by scheduled time) above, offered and answered requests
    /// per second below.
    pub fn write_chart(&self, path: &Path) -> anyhow::Result<()> {
        let chart_err =
            |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
        let root = SVGBackend::new(path, (1100, 720)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| chart_err(&e))?;
        let (upper, lower) = root.split_vertically(430);
        let t_max = self.timeline.len().max(1) as f64;
        let y_max = self
            .timeline
            .iter()
            .map(|s| s.p99_ms)
            .fold(1.0f64, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(&upper)
            .caption(
                format!(
                    "{}: latency from scheduled time (p99 {:.2} ms overall)",
                    self.scenario, self.latency_ms.p99
                ),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..t_max, 0f64..y_max)
            .map_err(|e| chart_err(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds into the run")
            .y_desc("latency (ms)")
            .draw()
            .map_err(|e| chart_err(&e))?;
        let series: [Line<f64>; 3] = [
            ("p50", |s| s.p50_ms, BLUE),
            ("p90", |s| s.p90_ms, GREEN),
            ("p99", |s| s.p99_ms, RED),
        ];
        for (name, value, colour) in series {
            chart
                .draw_series(LineSeries::new(
                    self.timeline
                        .iter()
                        .filter(|s| s.offered > 0)
                        .map(|s| (s.t_s as f64 + 0.5, value(s))),
                    colour.stroke_width(2),
                ))
                .map_err(|e| chart_err(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| chart_err(&e))?;
        let rate_max = self
            .timeline
            .iter()
            .map(|s| s.offered.max(s.answered))
            .max()
            .unwrap_or(1)
            .max(1) as f64
            * 1.15;
        let mut rates = ChartBuilder::on(&lower)
            .caption("requests per second", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..t_max, 0f64..rate_max)
            .map_err(|e| chart_err(&e))?;
        rates
            .configure_mesh()
            .x_desc("seconds into the run")
            .y_desc("per second")
            .draw()
            .map_err(|e| chart_err(&e))?;
        let lines: [Line<u64>; 2] = [
            ("offered (scheduled)", |s| s.offered, BLACK),
            ("answered", |s| s.answered, MAGENTA),
        ];
        for (name, value, colour) in lines {
            rates
                .draw_series(LineSeries::new(
                    self.timeline
                        .iter()
                        .map(|s| (s.t_s as f64 + 0.5, value(s) as f64)),
                    colour.stroke_width(2),
                ))
                .map_err(|e| chart_err(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        }
        rates
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| chart_err(&e))?;
        root.present().map_err(|e| chart_err(&e))?;
        Ok(())
    }
}
