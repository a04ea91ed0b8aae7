//! Wall-clock helpers: the platform speaks Asia/Shanghai local time (`yyyy-MM-dd HH:mm:ss`);
//! the store keeps UTC Unix milliseconds.

use std::sync::OnceLock;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;

fn shanghai_zone() -> &'static TimeZone {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    ZONE.get_or_init(|| TimeZone::get("Asia/Shanghai").expect("tzdb is bundled"))
}

pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// Formats a UTC millisecond instant in Asia/Shanghai with a strftime pattern.
pub fn shanghai(ms: i64, pattern: &str) -> String {
    let ts = Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH);
    ts.to_zoned(shanghai_zone().clone())
        .strftime(pattern)
        .to_string()
}

/// The API's time format, `2026-01-02 03:04:05`.
pub fn api_time(ms: i64) -> String {
    shanghai(ms, "%Y-%m-%d %H:%M:%S")
}

/// Parses the API's time format as Asia/Shanghai local time into UTC milliseconds.
pub fn parse_api_time(text: &str) -> Option<i64> {
    if text.len() != 19 {
        return None;
    }
    let dt = DateTime::strptime("%Y-%m-%d %H:%M:%S", text).ok()?;
    let zoned = dt.to_zoned(shanghai_zone().clone()).ok()?;
    Some(zoned.timestamp().as_millisecond())
}

/// Parses a `yyyy-MM-dd` business date.
pub fn parse_date(text: &str) -> Option<jiff::civil::Date> {
    if text.len() != 10 {
        return None;
    }
    jiff::civil::Date::strptime("%Y-%m-%d", text).ok()
}

/// The first instant of a business day (Asia/Shanghai midnight) in UTC milliseconds.
pub fn day_start_ms(date: jiff::civil::Date) -> i64 {
    date.to_zoned(shanghai_zone().clone())
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves API times are Asia/Shanghai (UTC+8) both ways.
    #[test]
    fn shanghai_round_trip() {
        let ms = parse_api_time("2026-01-02 08:04:05").unwrap();
        assert_eq!(
            ms,
            Timestamp::from_second(1_767_312_245)
                .unwrap()
                .as_millisecond()
        );
        assert_eq!(api_time(ms), "2026-01-02 08:04:05");
        assert!(parse_api_time("2026-01-02T08:04:05").is_none());
        assert!(parse_api_time("2026-13-02 08:04:05").is_none());
    }

    /// Proves a business day starts at Shanghai midnight (16:00 UTC the day before).
    #[test]
    fn day_starts_at_shanghai_midnight() {
        let day = parse_date("2026-01-02").unwrap();
        assert_eq!(api_time(day_start_ms(day)), "2026-01-02 00:00:00");
        assert_eq!(
            day_start_ms(day),
            Timestamp::from_second(1_767_283_200)
                .unwrap()
                .as_millisecond()
        );
        assert!(parse_date("2026-1-02").is_none());
    }
}
