//! The business day: which instants and wall-clock times belong to the day being settled.
//!
//! A business day `D` runs from `D` at the cut-off to `D + 1` at the cut-off, in the operator's
//! time zone (Asia/Shanghai by default). The default cut-off is 00:00 because both other clocks
//! settlement compares with use midnight: the gateway's `business_day` is the local date, and the
//! provider's bill covers a calendar day (起始日期 00:00:00 to 终止日期 00:00:00). An operator
//! whose service day ends at 04:00 may set that cut-off; the provider's rows between midnight and
//! the cut-off then belong to the previous business day and are classed `other_day`.

use std::collections::HashMap;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

use crate::error::SettlementError;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

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
    /// The zone is the provider bill's own (Asia/Shanghai): the bill's wall-clock times are
    /// compared directly, without a conversion.
    bill_zone: bool,
}

/// The provider's zone: the bill's 完成时间 is Asia/Shanghai wall-clock time (UTC+08:00).
pub const BILL_TIME_ZONE: &str = "Asia/Shanghai";
/// The default zone of an operator's business day.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Shanghai";
const BILL_UTC_OFFSET_S: i64 = 8 * 3600;

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
        let bill_zone = tz.iana_name() == Some(BILL_TIME_ZONE);
        Ok(DayWindow {
            bill_zone,
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

    /// The day in the zone named `time_zone` (IANA) with a cut-off; a precise error for an
    /// unknown zone.
    pub fn named(day: Date, time_zone: &str, cutoff: Time) -> Result<DayWindow, SettlementError> {
        let tz = TimeZone::get(time_zone)
            .map_err(|e| SettlementError::Config(format!("time zone {time_zone:?}: {e}")))?;
        DayWindow::new(day, tz, cutoff)
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

    /// Business day of a provider bill's wall-clock time (Asia/Shanghai, see
    /// [`BILL_TIME_ZONE`]), as days after the settled day: compared directly in a Shanghai
    /// window, converted to the instant otherwise (an operator in another zone).
    pub(crate) fn offset_bill_local(&self, local_s: i64) -> i64 {
        if self.bill_zone {
            self.offset_local(local_s)
        } else {
            self.offset_utc_ms(
                local_s
                    .saturating_sub(BILL_UTC_OFFSET_S)
                    .saturating_mul(1000),
            )
        }
    }

    /// The zone's IANA name (or its description for a zone without one).
    pub fn time_zone_name(&self) -> String {
        self.tz
            .iana_name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{:?}", self.tz))
    }

    /// The cut-off as `HH:MM` (or `HH:MM:SS` when it has seconds).
    pub fn cutoff_text(&self) -> String {
        let (h, m, s) = (
            self.cutoff_s / 3600,
            self.cutoff_s / 60 % 60,
            self.cutoff_s % 60,
        );
        if s == 0 {
            format!("{h:02}:{m:02}")
        } else {
            format!("{h:02}:{m:02}:{s:02}")
        }
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

/// The settled day's window for each operator: the default, and the operators that have
/// their own time zone or cut-off (every window is for the same date).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Windows<'a> {
    pub default: &'a DayWindow,
    pub by_operator: &'a HashMap<String, DayWindow>,
}

impl<'a> Windows<'a> {
    /// The window of the operator named by these bytes (the default for an unknown one).
    pub(crate) fn of(&self, operator: &[u8]) -> &'a DayWindow {
        if self.by_operator.is_empty() {
            return self.default;
        }
        std::str::from_utf8(operator)
            .ok()
            .and_then(|name| self.by_operator.get(name))
            .unwrap_or(self.default)
    }
}

/// A day offset squeezed into a record's `i16` (far-away dates are still "not today").
pub(crate) fn clamp_offset(offset: i64) -> i16 {
    offset.clamp(i16::MIN as i64, i16::MAX as i64) as i16
}
