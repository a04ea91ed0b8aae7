//! Finance users' passwords (argon2id, PHC strings), session tokens, and the two guards in
//! front of password checks: login throttling and a bounded pool for argon2.
//!
//! A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie; the database
//! keeps only its SHA-256, so a leaked table opens no session. Each session carries its own
//! random CSRF token, put in every form and checked on every POST.
//!
//! Password checks cost ~20 MiB and tens of milliseconds of a core each (argon2id's defaults,
//! on purpose), so they never run on the async worker threads ([`PasswordChecker`]: the
//! blocking pool, at most a few at once) and a spent failure budget answers before any of
//! them runs ([`LoginThrottle`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

/// Shortest password `settlement user add` accepts.
pub const PASSWORD_CHARS_MIN: usize = 10;

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A random 256-bit token, hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Constant-time comparison for tokens.
pub fn tokens_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

// ----- clock -----

/// Monotonic time for the throttle, injected so tests move it instead of sleeping.
#[derive(Clone, Debug)]
pub struct Clock(ClockKind);

#[derive(Clone, Debug)]
enum ClockKind {
    /// Milliseconds since this instant.
    System(Instant),
    /// Milliseconds a test has moved it by.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    pub fn system() -> Clock {
        Clock(ClockKind::System(Instant::now()))
    }

    /// A clock that stands still until [`Clock::advance`] moves it.
    pub fn manual() -> Clock {
        Clock(ClockKind::Manual(Arc::new(AtomicU64::new(0))))
    }

    /// Moves a manual clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        match &self.0 {
            ClockKind::Manual(ms) => {
                ms.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
            }
            ClockKind::System(_) => panic!("only a manual clock can be moved"),
        }
    }

    fn now_ms(&self) -> u64 {
        match &self.0 {
            ClockKind::System(origin) => origin.elapsed().as_millis() as u64,
            ClockKind::Manual(ms) => ms.load(Ordering::SeqCst),
        }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

// ----- login throttling -----

/// Failed logins one user name may have in a row before it must wait. A person who mistypes
/// rarely fails ten times running; after that one more try per [`LOGIN_FAILURE_REFILL_S`] keeps
/// online guessing of a 10-character password hopeless (~500 000 guesses a year per name).
pub const LOGIN_FAILURES_BURST_PER_NAME: u32 = 10;
/// Failed logins one source address may have (over all names) before it must wait. Larger than
/// the per-name budget because an office's users may share one NAT address; still small enough
/// that spraying one password over many names from one address stops quickly.
pub const LOGIN_FAILURES_BURST_PER_ADDRESS: u32 = 30;
/// One spent failure comes back every this many seconds (per name and per address).
pub const LOGIN_FAILURE_REFILL_S: u64 = 60;
/// Most names (and, separately, most addresses) the throttle remembers. At ~100 bytes an entry
/// that bounds each map near 1 MiB, whatever an attacker sends (see [`Buckets::make_room`]).
pub const LOGIN_THROTTLE_KEYS_MAX: usize = 10_000;

/// The failure budgets of [`LoginThrottle`].
#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    pub failures_burst_per_name: u32,
    pub failures_burst_per_address: u32,
    pub failure_refill_s: u64,
    pub keys_max: usize,
}

impl Default for ThrottleConfig {
    fn default() -> ThrottleConfig {
        ThrottleConfig {
            failures_burst_per_name: LOGIN_FAILURES_BURST_PER_NAME,
            failures_burst_per_address: LOGIN_FAILURES_BURST_PER_ADDRESS,
            failure_refill_s: LOGIN_FAILURE_REFILL_S,
            keys_max: LOGIN_THROTTLE_KEYS_MAX,
        }
    }
}

/// Counts failed logins per user name and per source address, each a token bucket of
/// `failures_burst_*` tokens refilled one per `failure_refill_s`; a login is refused (before
/// any password check) while either of its buckets is empty.
///
/// Hand-written rather than `governor`: only *failures* may spend the budget, so a login
/// reserves a token up front (concurrent guesses cannot overshoot the budget) and gives it back
/// when it succeeds — `governor` has no way to give a token back, nor a cap on its keyed maps.
/// Each bucket is one number, GCRA-style: the time at which it is full again (`tat_ms`).
pub struct LoginThrottle {
    config: ThrottleConfig,
    clock: Clock,
    buckets: Mutex<(Buckets<[u8; 32]>, Buckets<IpAddr>)>,
}

/// A login refused by the throttle: the client may try again after `retry_after_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after_s: u64,
}

/// One failure reserved against a login's name and address; [`LoginThrottle::refund`] gives it
/// back when the login succeeds. Dropped, it stays spent: that is a failed login.
#[must_use]
pub struct Reserved {
    name: [u8; 32],
    address: IpAddr,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig, clock: Clock) -> LoginThrottle {
        let refill_ms = config.failure_refill_s.max(1) * 1000;
        let names = Buckets::new(config.failures_burst_per_name, refill_ms, config.keys_max);
        let addresses = Buckets::new(
            config.failures_burst_per_address,
            refill_ms,
            config.keys_max,
        );
        LoginThrottle {
            config,
            clock,
            buckets: Mutex::new((names, addresses)),
        }
    }

    /// Reserves one failure for a login by `name` from `address`, or says how long to wait
    /// when either budget is spent (then nothing is reserved).
    pub fn reserve(&self, name: &str, address: IpAddr) -> Result<Reserved, Throttled> {
        let now_ms = self.clock.now_ms();
        let name = name_key(name);
        let address = address_key(address);
        let mut guard = self.buckets.lock().expect("throttle lock");
        let (names, addresses) = &mut *guard;
        let wait_ms = names
            .wait_ms(&name, now_ms)
            .max(addresses.wait_ms(&address, now_ms));
        if wait_ms > 0 {
            return Err(Throttled {
                retry_after_s: wait_ms.div_ceil(1000),
            });
        }
        names.take(name, now_ms);
        addresses.take(address, now_ms);
        Ok(Reserved { name, address })
    }

    /// Gives back a reserved failure: the login succeeded (or was never checked).
    pub fn refund(&self, reserved: Reserved) {
        let mut guard = self.buckets.lock().expect("throttle lock");
        guard.0.refund(&reserved.name);
        guard.1.refund(&reserved.address);
    }

    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// (names, addresses) remembered now; never more than `keys_max` each.
    pub fn keys_len(&self) -> (usize, usize) {
        let guard = self.buckets.lock().expect("throttle lock");
        (guard.0.tat_ms.len(), guard.1.tat_ms.len())
    }
}

/// Names are keyed by their SHA-256, so a long name costs the map no more than a short one.
fn name_key(name: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// IPv6 clients are keyed by their /64: one host usually holds a whole /64, and keying by
/// full address would give it 2^64 budgets. IPv4-mapped IPv6 addresses count as IPv4.
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Token buckets by key, each stored as the time it is full again; a key whose bucket is
/// full carries no information and may be forgotten at any time.
struct Buckets<K> {
    tat_ms: HashMap<K, u64>,
    burst: u64,
    refill_ms: u64,
    keys_max: usize,
}

impl<K: std::hash::Hash + Eq + Copy> Buckets<K> {
    fn new(burst: u32, refill_ms: u64, keys_max: usize) -> Buckets<K> {
        Buckets {
            tat_ms: HashMap::new(),
            burst: u64::from(burst.max(1)),
            refill_ms,
            keys_max: keys_max.max(1),
        }
    }

    /// 0 when a token is left; else how long until one is.
    fn wait_ms(&self, key: &K, now_ms: u64) -> u64 {
        let tat_ms = self.tat_ms.get(key).copied().unwrap_or(0).max(now_ms);
        let after_ms = tat_ms + self.refill_ms;
        after_ms.saturating_sub(now_ms + self.burst * self.refill_ms)
    }

    fn take(&mut self, key: K, now_ms: u64) {
        if !self.tat_ms.contains_key(&key) {
            self.make_room(now_ms);
        }
        let tat_ms = self.tat_ms.entry(key).or_insert(0);
        *tat_ms = (*tat_ms).max(now_ms) + self.refill_ms;
    }

    fn refund(&mut self, key: &K) {
        if let Some(tat_ms) = self.tat_ms.get_mut(key) {
            *tat_ms = tat_ms.saturating_sub(self.refill_ms);
        }
    }

    /// Keeps the map under `keys_max`: first forget full buckets (no information lost); if it
    /// is still full — someone is failing logins under more than `keys_max` names or addresses
    /// at once — forget the bucket nearest to full. That lets such a flood push a name out, but
    /// the name's guesses are still counted against their address, and memory stays bounded
    /// (the alternative, refusing new keys, would lock out every user who has not failed yet).
    fn make_room(&mut self, now_ms: u64) {
        if self.tat_ms.len() < self.keys_max {
            return;
        }
        self.tat_ms.retain(|_, tat_ms| *tat_ms > now_ms);
        if self.tat_ms.len() < self.keys_max {
            return;
        }
        if let Some(key) = self
            .tat_ms
            .iter()
            .min_by_key(|(_, tat_ms)| **tat_ms)
            .map(|(k, _)| *k)
        {
            self.tat_ms.remove(&key);
        }
    }
}

// ----- password checks off the async threads -----

/// Password checks running at once. Each holds ~20 MiB and a core for tens of milliseconds;
/// two is this service's share of a small machine, and a burst of logins queues for these
/// permits instead of filling tokio's blocking pool (512 threads × 20 MiB).
pub const PASSWORD_CHECKS_CONCURRENT_MAX: usize = 2;
/// Longest a login waits for a free password check before it is answered 503: a queue this
/// long means the server is flooded, and a quick "try again" beats a hanging login page.
pub const PASSWORD_CHECK_QUEUE_WAIT_MS_MAX: u64 = 5_000;

/// Checks a password against a PHC string (argon2 by default; tests wrap it to observe it).
pub type VerifyFn = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// The password check is busy beyond [`PASSWORD_CHECK_QUEUE_WAIT_MS_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Runs password checks on tokio's blocking pool, at most `concurrent_max` at once.
pub struct PasswordChecker {
    verify: VerifyFn,
    permits: Arc<Semaphore>,
    queue_wait_max: Duration,
    waiting: AtomicUsize,
}

impl PasswordChecker {
    pub fn new(verify: VerifyFn, concurrent_max: usize, queue_wait_max: Duration) -> Self {
        PasswordChecker {
            verify,
            permits: Arc::new(Semaphore::new(concurrent_max.max(1))),
            queue_wait_max,
            waiting: AtomicUsize::new(0),
        }
    }

    /// Whether `password` matches `phc`. Without a `phc` (no such user) the password is checked
    /// against a stand-in hash, so an unknown name costs as much as a wrong password.
    pub async fn check(&self, password: String, phc: Option<String>) -> Result<bool, Busy> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = tokio::time::timeout(
            self.queue_wait_max,
            Arc::clone(&self.permits).acquire_owned(),
        )
        .await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit = permit
            .map_err(|_| Busy)?
            .expect("the semaphore is never closed");
        let verify = Arc::clone(&self.verify);
        // The permit moves into the blocking task: it is held until argon2 has finished, even
        // when the client gives up and this future is dropped.
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let known = phc.is_some();
            let ok = verify(&password, phc.as_deref().unwrap_or_else(|| stand_in_phc()));
            ok && known
        });
        Ok(task.await.unwrap_or(false))
    }

    /// Checks waiting for a permit right now (for tests and diagnosis).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

/// A hash of no one's password with the same parameters as users' hashes, made once.
fn stand_in_phc() -> &'static str {
    static PHC: OnceLock<String> = OnceLock::new();
    PHC.get_or_init(|| hash_password(&random_token()).expect("hashing a random token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_only_against_its_own_hash() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_compare_by_value() {
        let t = random_token();
        assert_eq!(t.len(), 64);
        assert!(tokens_equal(&t, &t.clone()));
        assert!(!tokens_equal(&t, &random_token()));
        assert!(!tokens_equal("ab", "abc"));
    }

    fn throttle(per_name: u32, per_address: u32, keys_max: usize) -> (LoginThrottle, Clock) {
        let clock = Clock::manual();
        let config = ThrottleConfig {
            failures_burst_per_name: per_name,
            failures_burst_per_address: per_address,
            failure_refill_s: 60,
            keys_max,
        };
        (LoginThrottle::new(config, clock.clone()), clock)
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    #[test]
    fn a_spent_budget_waits_one_refill_and_refunds_restore_it() {
        // Proves: the burst is spent by failures only (a refunded reservation costs nothing),
        // the next try waits exactly until one failure has refilled, and then one try is back.
        let (t, clock) = throttle(3, 100, 100);
        for _ in 0..5 {
            let ok = t.reserve("alice", HOME).unwrap();
            t.refund(ok);
        }
        for _ in 0..3 {
            let _failed = t.reserve("alice", HOME).unwrap();
        }
        assert_eq!(
            t.reserve("alice", HOME).err(),
            Some(Throttled { retry_after_s: 60 })
        );
        clock.advance(Duration::from_secs(59));
        assert_eq!(
            t.reserve("alice", HOME).err(),
            Some(Throttled { retry_after_s: 1 })
        );
        clock.advance(Duration::from_secs(1));
        let _failed = t.reserve("alice", HOME).unwrap();
        assert!(t.reserve("alice", HOME).is_err());
        assert!(
            t.reserve("bob", HOME).is_ok(),
            "another name has its own budget"
        );
    }

    #[test]
    fn an_ipv6_host_is_one_address_and_a_refused_login_reserves_nothing() {
        // Proves: addresses in one /64 share a budget; a login refused for its name spends
        // nothing of its address's budget.
        let (t, _clock) = throttle(1, 2, 100);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        let _f1 = t.reserve("n1", a).unwrap();
        for _ in 0..5 {
            assert!(t.reserve("n1", b).is_err());
        }
        let _f2 = t.reserve("n2", b).unwrap();
        assert!(t.reserve("n3", a).is_err(), "the /64 spent its 2");
        assert!(t.reserve("n3", "2001:db8:0:1::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn the_maps_never_hold_more_than_keys_max() {
        // Proves: a flood of distinct names and addresses cannot grow memory past the cap, and
        // forgetting prefers buckets that are full again.
        let (t, clock) = throttle(5, 5, 50);
        for i in 0..1_000u32 {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _failed = t.reserve(&format!("name-{i}"), address).unwrap();
            let (names, addresses) = t.keys_len();
            assert!(names <= 50 && addresses <= 50, "{names} {addresses}");
        }
        clock.advance(Duration::from_secs(3600));
        // A name and an address the flood never used, so both maps make room.
        let _failed = t.reserve("fresh", "192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(t.keys_len(), (1, 1), "full buckets are forgotten first");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_checks_queues_for_the_permits() {
        // Proves: no more than `concurrent_max` checks run at once; the rest wait for a permit
        // (counted by `waiting`) instead of taking blocking threads. Checks are held inside the
        // verifier until the test releases them, so the counts are facts, not timings.
        let running = Arc::new(AtomicUsize::new(0));
        let running_max = Arc::new(AtomicUsize::new(0));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let verify: VerifyFn = {
            let (running, running_max) = (running.clone(), running_max.clone());
            Arc::new(move |_, _| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                running_max.fetch_max(now, Ordering::SeqCst);
                release_rx.lock().unwrap().recv().unwrap();
                running.fetch_sub(1, Ordering::SeqCst);
                true
            })
        };
        let checker = Arc::new(PasswordChecker::new(verify, 2, Duration::from_secs(600)));
        let checks: Vec<_> = (0..5)
            .map(|_| {
                let c = checker.clone();
                tokio::spawn(async move { c.check("pw".into(), Some("phc".into())).await })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(running.load(Ordering::SeqCst) == 2 && checker.waiting() == 3) {
            assert!(Instant::now() < deadline, "the checks never queued");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for _ in 0..5 {
            release_tx.send(()).unwrap();
        }
        for c in checks {
            assert_eq!(c.await.unwrap(), Ok(true));
        }
        assert_eq!(running_max.load(Ordering::SeqCst), 2);
    }
}
