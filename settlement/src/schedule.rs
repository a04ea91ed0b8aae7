//! The nightly job of `settlement serve`: at a configured local time in the operators' zone,
//! settle the business day that just ended (yesterday, local).
//!
//! Alternative without a long-running process: cron (`15 2 * * * settlement run --date
//! $(TZ=Asia/Shanghai date -d yesterday +\%F) …`) or a systemd timer
//! (`OnCalendar=*-*-* 02:15 Asia/Shanghai`) calling `settlement run`; README.md has both.
//! Either way the run is idempotent, and refused for an approved day.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

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
}
