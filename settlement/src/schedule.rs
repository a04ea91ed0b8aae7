//! The nightly job of `settlement serve`: at a configured local time in the operators' zone,
//! settle the business day that just ended (yesterday, local).
//!
//! Alternative without a long-running process: cron (`15 2 * * * settlement run --date
//! $(TZ=Asia/Shanghai date -d yesterday +\%F) …`) or a systemd timer
//! (`OnCalendar=*-*-* 02:15 Asia/Shanghai`) calling `settlement run`; README.md has both.
//! Either way the run is idempotent, and refused for an approved day.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::run::{run_day, GatewayInput, RunConfig};
use crate::store::Store;

/// The nightly job: forever, wait for the next `at` in `tz`, then settle the day that just
/// ended from the files under `inputs_dir` ([`nightly_config`]). A failed run is logged and
/// the job waits for the next night.
pub async fn nightly(store: Store, tz: TimeZone, at: Time, inputs_dir: PathBuf) {
    // Logged under the program's name, as `settlement serve`'s own lines are.
    loop {
        let Ok((when, day)) = next_run(Timestamp::now(), &tz, at) else {
            return;
        };
        let wait = (when.as_millisecond() - Timestamp::now().as_millisecond()).max(0);
        tracing::info!(target: "settlement", %when, %day, "settlement: next nightly run");
        tokio::time::sleep(std::time::Duration::from_millis(wait as u64)).await;
        let outcome = run_day(&store, crate::engine(), &nightly_config(&inputs_dir, day)).await;
        NIGHTLY.record(outcome.is_ok(), Timestamp::now().as_millisecond());
        match outcome {
            Ok(r) => {
                tracing::info!(target: "settlement", %day, run_id = r.run_id, "settlement: nightly run done")
            }
            Err(e) => {
                tracing::error!(target: "settlement", %day, error = %format!("{e:#}"), "settlement: nightly run failed")
            }
        }
    }
}

/// The nightly run of `day`: the gateway's ledger from the database, the provider's bills
/// `<inputs_dir>/<day>/provider/*.csv`, each operator's export
/// `<inputs_dir>/<day>/operators/<operator id>.csv`, scratch in `<inputs_dir>/work`.
pub fn nightly_config(inputs_dir: &Path, day: Date) -> RunConfig {
    let dir = inputs_dir.join(day.to_string());
    RunConfig {
        business_day: day,
        operator: None,
        gateway: GatewayInput::Database,
        provider_bills: csv_files(&dir.join("provider")),
        operator_exports: csv_files(&dir.join("operators"))
            .into_iter()
            .filter_map(|p| Some((p.file_stem()?.to_string_lossy().to_string(), p)))
            .collect(),
        work_dir: inputs_dir.join("work"),
        out_dir: None,
        operator_days: Vec::new(),
    }
}

/// The `.csv` files of a directory, sorted (none if it does not exist).
fn csv_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "csv"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The next instant at `at` local time in `tz` strictly after `now`, and the business day
/// that run settles (the local day before it).
pub fn next_run(now: Timestamp, tz: &TimeZone, at: Time) -> anyhow::Result<(Timestamp, Date)> {
    let local_today = now.to_zoned(tz.clone()).date();
    for offset in 0..3i64 {
        let date = local_today.checked_add(offset.days())?;
        let instant = date.to_datetime(at).to_zoned(tz.clone())?.timestamp();
        if instant > now {
            return Ok((instant, date.yesterday()?));
        }
    }
    anyhow::bail!("no next run time found")
}

/// The nightly job's outcomes in this process, for `/metrics`.
struct NightlyCounts {
    ok: AtomicU64,
    failed: AtomicU64,
    last_ok_ms: AtomicI64,
    last_failed_ms: AtomicI64,
}

impl NightlyCounts {
    fn record(&self, ok: bool, at_ms: i64) {
        let (count, last) = if ok {
            (&self.ok, &self.last_ok_ms)
        } else {
            (&self.failed, &self.last_failed_ms)
        };
        count.fetch_add(1, Ordering::Relaxed);
        last.store(at_ms, Ordering::Relaxed);
    }
}

static NIGHTLY: NightlyCounts = NightlyCounts {
    ok: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    last_ok_ms: AtomicI64::new(0),
    last_failed_ms: AtomicI64::new(0),
};

/// The Prometheus text of settlement's metrics (`settlement serve`'s `/metrics`): the stored
/// figures (`None`: the database did not answer, `settlement_db_up 0`) and the nightly job's
/// outcomes. Names and meanings are in ops/README.md; the dashboard and alert rules use them.
pub fn metrics_text(figures: Option<&crate::store::OpsFigures>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let label = |pairs: &[(&str, &str)]| -> String {
        let inner: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        format!("{{{}}}", inner.join(","))
    };
    metric(
        "settlement_db_up",
        "gauge",
        "1 when settlement's database answered this scrape",
        &[(String::new(), if figures.is_some() { 1.0 } else { 0.0 })],
    );
    let seconds = |ms: i64| ms as f64 / 1000.0;
    metric(
        "settlement_nightly_runs_total",
        "counter",
        "Nightly runs this process started, by outcome",
        &[
            (
                label(&[("outcome", "ok")]),
                NIGHTLY.ok.load(Ordering::Relaxed) as f64,
            ),
            (
                label(&[("outcome", "failed")]),
                NIGHTLY.failed.load(Ordering::Relaxed) as f64,
            ),
        ],
    );
    metric(
        "settlement_nightly_last_run_timestamp_seconds",
        "gauge",
        "When this process's last nightly run ended, by outcome (0: none yet)",
        &[
            (
                label(&[("outcome", "ok")]),
                seconds(NIGHTLY.last_ok_ms.load(Ordering::Relaxed)),
            ),
            (
                label(&[("outcome", "failed")]),
                seconds(NIGHTLY.last_failed_ms.load(Ordering::Relaxed)),
            ),
        ],
    );
    let Some(f) = figures else {
        return out;
    };
    if let Some((day, started, finished)) = &f.latest_run {
        let day_ts = day
            .parse::<Date>()
            .ok()
            .and_then(|d| d.to_zoned(TimeZone::UTC).ok())
            .map_or(0.0, |z| z.timestamp().as_second() as f64);
        metric(
            "settlement_last_run_finished_timestamp_seconds",
            "gauge",
            "When the newest stored run finished",
            &[(String::new(), seconds(*finished))],
        );
        metric(
            "settlement_last_run_duration_seconds",
            "gauge",
            "How long the newest stored run took",
            &[(String::new(), seconds(finished - started))],
        );
        metric(
            "settlement_last_run_business_day_timestamp_seconds",
            "gauge",
            "The business day the newest stored run settled (its date at 00:00 UTC)",
            &[(String::new(), day_ts)],
        );
    }
    metric(
        "settlement_days",
        "gauge",
        "Business days by status",
        &f.days
            .iter()
            .map(|(status, n)| (label(&[("status", status)]), *n as f64))
            .collect::<Vec<_>>(),
    );
    metric(
        "settlement_newest_day_items",
        "gauge",
        "The newest settled day's items by operator and class, as its run counted them",
        &f.classes
            .iter()
            .map(|(op, class, n)| (label(&[("operator", op), ("class", class)]), *n as f64))
            .collect::<Vec<_>>(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nightly_job_settles_the_local_day_that_just_ended() {
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        let at = Time::new(2, 15, 0, 0).unwrap();
        // 2026-01-02 17:00 UTC = 2026-01-03 01:00 Shanghai: the next run is 02:15 that night.
        let now: Timestamp = "2026-01-02T17:00:00Z".parse().unwrap();
        let (when, day) = next_run(now, &tz, at).unwrap();
        assert_eq!(when.to_string(), "2026-01-02T18:15:00Z");
        assert_eq!(day.to_string(), "2026-01-02");
        // Just after it: tomorrow night, for the next day.
        let (when, day) = next_run(when, &tz, at).unwrap();
        assert_eq!(when.to_string(), "2026-01-03T18:15:00Z");
        assert_eq!(day.to_string(), "2026-01-03");
    }

    #[test]
    fn the_nightly_run_reads_the_days_csv_files_by_role() {
        let scratch = turnpike_test_support::Scratch::new("nightly-config");
        let dir = scratch.0.join("2026-01-02");
        for file in [
            "provider/b.csv",
            "provider/a.csv",
            "provider/notes.txt",
            "operators/hz-metro.csv",
        ] {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let day: Date = "2026-01-02".parse().unwrap();
        let config = nightly_config(&scratch.0, day);
        assert_eq!(config.business_day, day);
        assert!(matches!(config.gateway, GatewayInput::Database));
        assert_eq!(
            config.provider_bills,
            [dir.join("provider/a.csv"), dir.join("provider/b.csv")]
        );
        assert_eq!(
            config.operator_exports,
            [("hz-metro".to_string(), dir.join("operators/hz-metro.csv"))]
        );
        assert_eq!(config.work_dir, scratch.0.join("work"));
        assert!(config.out_dir.is_none() && config.operator.is_none());
        assert!(config.operator_days.is_empty());
    }
}
