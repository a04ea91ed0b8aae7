//! The business day: which instants and wall-clock times belong to the day being settled.
//!
//! A business day `D` runs from `D` at the cut-off to `D + 1` at the cut-off, in the operator's
//! time zone (Asia/Shanghai by default). The default cut-off is 00:00 because both other clocks
//! settlement compares with use midnight: the gateway's `business_day` is the local date, and the
//! provider's bill covers a calendar day (起始日期 00:00:00 to 终止日期 00:00:00). An operator
//! whose service day ends at 04:00 may set that cut-off; the provider's rows between midnight and
//! the cut-off then belong to the previous business day and are classed `other_day`.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

use crate::error::SettlementError;
use crate::formats::days_from_civil;

/// The day being settled, with its bounds precomputed for the readers' fast in-day test.
#[derive(Debug, Clone)]
pub struct DayWindow {
    day: Date,
    tz: TimeZone,
    cutoff_s: i64,
    /// Days since the epoch of `day`.
    day_num: i64,
    /// `[start, end)` as wall-clock seconds (for the bill's zone-less local times).
    start_local_s: i64,
    end_local_s: i64,
    /// `[start, end)` as UTC Unix milliseconds.
    start_ms: i64,
    end_ms: i64,
}

impl DayWindow {
    pub fn new(day: Date, tz: TimeZone, cutoff: Time) -> Result<DayWindow, SettlementError> {
        let cutoff_s =
            cutoff.hour() as i64 * 3600 + cutoff.minute() as i64 * 60 + cutoff.second() as i64;
        let day_num = days_from_civil(day.year() as i64, day.month() as u32, day.day() as u32);
        let at = |d: Date| -> Result<i64, SettlementError> {
            d.to_datetime(cutoff)
                .to_zoned(tz.clone())
                .map(|z| z.timestamp().as_millisecond())
                .map_err(|e| SettlementError::Config(format!("business day bounds: {e}")))
        };
        let next = day
            .tomorrow()
            .map_err(|e| SettlementError::Config(format!("business day: {e}")))?;
        Ok(DayWindow {
            day,
            start_ms: at(day)?,
            end_ms: at(next)?,
            tz,
            cutoff_s,
            day_num,
            start_local_s: day_num * 86_400 + cutoff_s,
            end_local_s: (day_num + 1) * 86_400 + cutoff_s,
        })
    }

    /// The day in Asia/Shanghai with the default 00:00 cut-off.
    pub fn shanghai(day: Date) -> Result<DayWindow, SettlementError> {
        let tz = TimeZone::get("Asia/Shanghai")
            .map_err(|e| SettlementError::Config(format!("time zone: {e}")))?;
        DayWindow::new(day, tz, Time::midnight())
    }

    pub fn day(&self) -> Date {
        self.day
    }

    pub fn cutoff_seconds(&self) -> i64 {
        self.cutoff_s
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.tz
    }

    /// `[start, end)` of the day as UTC Unix milliseconds.
    pub fn bounds_ms(&self) -> (i64, i64) {
        (self.start_ms, self.end_ms)
    }

    /// Business day of a local wall-clock time, as days after the settled day (0 = in it).
    pub(crate) fn offset_local(&self, local_s: i64) -> i64 {
        if local_s >= self.start_local_s && local_s < self.end_local_s {
            return 0;
        }
        (local_s - self.cutoff_s).div_euclid(86_400) - self.day_num
    }

    /// Business day of a UTC instant, as days after the settled day (0 = in it).
    pub(crate) fn offset_utc_ms(&self, ms: i64) -> i64 {
        if ms >= self.start_ms && ms < self.end_ms {
            return 0;
        }
        let Ok(ts) = jiff::Timestamp::from_millisecond(ms) else {
            return if ms < self.start_ms {
                i64::MIN / 2
            } else {
                i64::MAX / 2
            };
        };
        let dt = self.tz.to_datetime(ts);
        let local_s = days_from_civil(dt.year() as i64, dt.month() as u32, dt.day() as u32)
            * 86_400
            + dt.hour() as i64 * 3600
            + dt.minute() as i64 * 60
            + dt.second() as i64;
        self.offset_local(local_s)
    }

    /// Business day of a date (days since the epoch), as days after the settled day.
    pub(crate) fn offset_date(&self, day_num: i64) -> i64 {
        day_num - self.day_num
    }

    /// The date `offset` days after the settled day.
    pub fn day_after(&self, offset: i64) -> Option<Date> {
        self.day
            .checked_add(jiff::Span::new().days(offset.clamp(-100_000, 100_000)))
            .ok()
    }
}

/// A day offset squeezed into a record's `i16` (far-away dates are still "not today").
pub(crate) fn clamp_offset(offset: i64) -> i16 {
    offset.clamp(i16::MIN as i64, i16::MAX as i64) as i16
}
