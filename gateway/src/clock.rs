//! The gateway's wall clock, injected: every rule that compares times (a ride code's freshness,
//! a scan's age, a journey left open too long, a charge's next attempt, a lease) reads it from
//! here, so a test moves time forward instead of sleeping.
//!
//! The clock is the system's UTC time plus an offset that only ever grows; production never
//! moves it. Timers (`tokio::time::sleep` between worker rounds) stay on real time: they pace
//! work, they decide nothing. The provider client keeps the system clock too, because the
//! timestamps it signs are checked against the provider's clock, not ours.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Wall-clock time in UTC Unix milliseconds, shifted by what a test has advanced it. Cheap to
/// clone; clones share the offset.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// Now, in UTC Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        system_now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves this clock (and its clones) `ms` forward; for tests.
    pub fn advance(&self, ms: u64) {
        self.offset_ms.fetch_add(ms as i64, Ordering::Relaxed);
    }
}

/// The system's wall clock in UTC Unix milliseconds (0 if it reads before 1970).
pub fn system_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves an advanced clock runs ahead of the system's by what it was moved, in every clone.
    #[test]
    fn advance_moves_every_clone() {
        let clock = Clock::system();
        let clone = clock.clone();
        let before = system_now_ms();
        clock.advance(3_600_000);
        let now = clone.now_ms();
        assert!(now >= before + 3_600_000);
        assert!(now < system_now_ms() + 3_600_000 + 1_000);
    }
}
