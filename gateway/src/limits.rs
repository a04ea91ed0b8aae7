//! Request budgets per client: GCRA token buckets (the `governor` crate) keyed by who is
//! asking — a terminal by its certificate's common name, a rider by the rider its token
//! belongs to, a registration by its source address. A request past its client's budget is
//! answered 429 `rate_limited` with `Retry-After` before anything is read or written, so a
//! flooding client slows only itself. The rates are `limits.*` settings.
//!
//! A check is a lock-free compare-and-swap on the client's bucket. Buckets live in a map that
//! grows with the clients seen; [`Limits::sweep`] (run by the gateway's refresh loop, and at
//! once when a map passes [`KEYS_SWEEP_AT`]) drops every bucket that is full again, so the
//! maps hold only clients active within their burst's refill time.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::LimitsConfig;
use crate::error::{ApiError, ApiResult};

/// Buckets a map may hold before a check sweeps it (about 100 bytes each).
const KEYS_SWEEP_AT: usize = 100_000;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

pub struct Limits {
    terminals: Keyed<String>,
    riders: Keyed<i64>,
    registrations: Keyed<IpAddr>,
    flow_readers: Keyed<IpAddr>,
    /// Open passenger-flow event streams (`flow.streams_max` permits).
    flow_streams: Arc<Semaphore>,
    clock: DefaultClock,
}

fn quota(per_s: u32, burst: u32) -> Quota {
    let nonzero = |n: u32| NonZeroU32::new(n.max(1)).expect("at least one");
    Quota::per_second(nonzero(per_s)).allow_burst(nonzero(burst))
}

impl Limits {
    /// `flow_streams_max`: the event streams open at once (`flow.streams_max`).
    pub fn new(config: &LimitsConfig, flow_streams_max: u32) -> Limits {
        let clock = DefaultClock::default();
        Limits {
            terminals: RateLimiter::dashmap_with_clock(
                quota(config.terminal_requests_per_s, config.terminal_burst),
                clock.clone(),
            ),
            riders: RateLimiter::dashmap_with_clock(
                quota(config.rider_requests_per_s, config.rider_burst),
                clock.clone(),
            ),
            registrations: RateLimiter::dashmap_with_clock(
                quota(config.registrations_per_s, config.registration_burst),
                clock.clone(),
            ),
            flow_readers: RateLimiter::dashmap_with_clock(
                quota(config.flow_requests_per_s, config.flow_burst),
                clock.clone(),
            ),
            flow_streams: Arc::new(Semaphore::new(flow_streams_max as usize)),
            clock,
        }
    }

    fn check<K: Hash + Eq + Clone>(
        &self,
        limiter: &Keyed<K>,
        key: &K,
        what: &'static str,
    ) -> ApiResult<()> {
        if limiter.len() > KEYS_SWEEP_AT {
            limiter.retain_recent();
        }
        limiter.check_key(key).map_err(|not_until| {
            metrics::counter!("gateway_rate_limited_total", "client" => what).increment(1);
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::RateLimited {
                retry_after_s: wait.as_secs_f64().ceil() as u64,
            }
        })
    }

    /// One request of the terminal `terminal_id`.
    pub fn terminal(&self, terminal_id: &str) -> ApiResult<()> {
        // Allocates only for a terminal not yet in the map's key form; the id is short.
        self.check(&self.terminals, &terminal_id.to_string(), "terminal")
    }

    /// One request of rider `rider_id`.
    pub fn rider(&self, rider_id: i64) -> ApiResult<()> {
        self.check(&self.riders, &rider_id, "rider")
    }

    /// One registration from `address`.
    pub fn registration(&self, address: IpAddr) -> ApiResult<()> {
        self.check(&self.registrations, &address, "registration")
    }

    /// One public passenger-flow request (an answer, or the opening of a stream) from
    /// `address`.
    pub fn flow_reader(&self, address: IpAddr) -> ApiResult<()> {
        self.check(&self.flow_readers, &address, "flow")
    }

    /// A place for one more passenger-flow event stream, held until the stream ends; when every
    /// place is taken, 503 `flow_streams_full` (the client retries later; nothing was read).
    pub fn flow_stream(&self) -> ApiResult<OwnedSemaphorePermit> {
        self.flow_streams.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("gateway_rate_limited_total", "client" => "flow_stream").increment(1);
            ApiError::BadRequest {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                code: "flow_streams_full",
                message: "every passenger-flow stream of this node is taken; retry later".into(),
            }
        })
    }

    /// Drops the buckets that are full again (their clients have been quiet).
    pub fn sweep(&self) {
        self.terminals.retain_recent();
        self.riders.retain_recent();
        self.registrations.retain_recent();
        self.flow_readers.retain_recent();
        self.flow_readers.shrink_to_fit();
        self.terminals.shrink_to_fit();
        self.riders.shrink_to_fit();
        self.registrations.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(burst: u32) -> LimitsConfig {
        LimitsConfig {
            terminal_requests_per_s: 1,
            terminal_burst: burst,
            rider_requests_per_s: 1,
            rider_burst: burst,
            registrations_per_s: 1,
            registration_burst: burst,
            flow_requests_per_s: 1,
            flow_burst: burst,
            client_address_header: String::new(),
        }
    }

    /// Proves a client gets its burst, then 429 with a positive Retry-After, while another
    /// client of the same kind is untouched.
    #[test]
    fn a_client_has_its_own_budget() {
        let limits = Limits::new(&config(3), 1);
        for _ in 0..3 {
            limits.terminal("gate-a").unwrap();
        }
        match limits.terminal("gate-a") {
            Err(ApiError::RateLimited { retry_after_s }) => assert!(retry_after_s >= 1),
            other => panic!("{other:?}"),
        }
        limits.terminal("gate-b").unwrap();
        limits.rider(7).unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            limits.registration(a).unwrap();
        }
        assert!(limits.registration(a).is_err());
        limits.registration(b).unwrap();
        for _ in 0..3 {
            limits.flow_reader(a).unwrap();
        }
        assert!(limits.flow_reader(a).is_err());
        limits.flow_reader(b).unwrap();
    }

    /// Proves event streams are bounded: past `flow_streams_max` a stream is refused with 503
    /// `flow_streams_full`, and a place frees when a stream ends.
    #[test]
    fn flow_streams_are_bounded() {
        let limits = Limits::new(&config(1), 2);
        let first = limits.flow_stream().unwrap();
        let _second = limits.flow_stream().unwrap();
        let refused = limits.flow_stream().unwrap_err();
        assert_eq!(
            refused.status_and_code(),
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "flow_streams_full"
            )
        );
        drop(first);
        let _third = limits.flow_stream().unwrap();
    }

    /// Proves a sweep keeps buckets that are not full (their clients stay limited).
    #[test]
    fn a_sweep_keeps_spent_buckets() {
        let limits = Limits::new(&config(1), 1);
        limits.rider(1).unwrap();
        limits.sweep();
        assert!(limits.rider(1).is_err());
    }
}
