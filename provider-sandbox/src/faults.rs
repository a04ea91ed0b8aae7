//! Fault knobs: make the sandbox misbehave on purpose, so every failure path of a merchant's
//! client can be exercised.
//!
//! Two kinds, in one JSON document (set with `--faults FILE.json`, `PUT /sandbox/faults`):
//! - probabilistic, per method (`methods`, keyed by method name or `*` for every method), drawn
//!   from an RNG seeded with `seed`, so a run is reproducible: `latency` (uniform `min_ms`..
//!   `max_ms`, plus `p99_ms` for one call in a hundred), `timeout` (hang `hang_ms`, then close the
//!   connection without an answer; nothing applied), `http_5xx` (502 or 503 with an HTML body;
//!   nothing applied), `drop_after_commit` (apply and commit, then close the connection without an
//!   answer), `decline` (40004 with a decline sub code; nothing applied), `insufficient_balance`
//!   (40004 `ACQ.BUYER_BALANCE_NOT_ENOUGH`; nothing applied), `user_paying_ms` (every bar-code pay
//!   waits for the buyer, answers 10003, and the buyer confirms by itself after this long); and
//!   `duplicate_notifications` (the chance that a notification attempt posts twice).
//! - a deterministic `script`: steps `{"method", "fault", "times"}` consumed in order per method,
//!   before any probabilistic knob, for tests that need a fault on exactly the n-th call.
//!
//! Decisions are made per call by [`FaultState::plan`]; this module does no I/O.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::SandboxError;

/// Longest sleep a knob may ask for (latency, hang, user paying): ten minutes.
const SLEEP_MS_MAX: u64 = 600_000;
/// Most script steps and method entries a document may hold.
const SCRIPT_STEPS_MAX: usize = 1_000;
const METHOD_ENTRIES_MAX: usize = 64;

/// The decline sub codes a `decline` knob may use: the platform's refusals of a buyer.
const DECLINE_SUB_CODES: &[&str] = &[
    "ACQ.PAYMENT_AUTH_CODE_INVALID",
    "ACQ.BUYER_ENABLE_STATUS_FORBID",
    "ACQ.PAYMENT_FAIL",
    "ACQ.PAYMENT_REQUEST_HAS_RISK",
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR",
    "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR",
    "ACQ.ERROR_BUYER_CERTIFY_LEVEL_LIMIT",
    "ACQ.NOT_CERTIFIED_USER",
];
const DECLINE_SUB_CODE_DEFAULT: &str = "ACQ.PAYMENT_AUTH_CODE_INVALID";

/// The whole fault configuration; the empty document means "behave".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub methods: BTreeMap<String, MethodFaults>,
    /// Chance (0..=1) that a notification attempt is posted twice.
    #[serde(default)]
    pub duplicate_notifications: f64,
    #[serde(default)]
    pub script: Vec<ScriptStep>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodFaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Hang>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_5xx: Option<Chance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_after_commit: Option<Chance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline: Option<Decline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insufficient_balance: Option<Chance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_paying_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    pub min_ms: u64,
    pub max_ms: u64,
    /// One call in a hundred takes this long instead (the tail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hang {
    pub rate: f64,
    pub hang_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chance {
    pub rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decline {
    pub rate: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_code: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Latency,
    Timeout,
    #[serde(rename = "http_5xx")]
    Http5xx,
    DropAfterCommit,
    Decline,
    InsufficientBalance,
    UserPaying,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptStep {
    /// A method name, or `*` for whichever method comes next.
    pub method: String,
    pub fault: FaultKind,
    /// How many calls this step applies to; default 1.
    #[serde(default = "one")]
    pub times: u32,
    /// `latency`, `timeout`, `user_paying`: how long (default 1000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// `http_5xx`: 500, 502, 503 or 504 (default 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `decline`: the sub code (default `ACQ.PAYMENT_AUTH_CODE_INVALID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_code: Option<String>,
}

fn one() -> u32 {
    1
}

const STEP_MS_DEFAULT: u64 = 1_000;

/// Largest faults file read at start.
const FILE_BYTES_MAX: u64 = 1024 * 1024;

impl Faults {
    /// Reads and validates a faults document (`--faults FILE.json`).
    pub fn from_file(path: &std::path::Path) -> Result<Faults, SandboxError> {
        let bad = |m: String| SandboxError::BadRequest(format!("{}: {m}", path.display()));
        let len = std::fs::metadata(path)
            .map_err(|e| bad(e.to_string()))?
            .len();
        if len > FILE_BYTES_MAX {
            return Err(bad(format!("larger than {FILE_BYTES_MAX} bytes")));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let faults: Faults = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        faults.validate()?;
        Ok(faults)
    }

    /// Refuses documents that would make no sense (rates outside 0..=1, reversed ranges, sleeps
    /// over ten minutes, unknown decline codes, oversized lists).
    pub fn validate(&self) -> Result<(), SandboxError> {
        let bad = |m: String| Err(SandboxError::BadRequest(m));
        let rate = |name: &str, r: f64| {
            if (0.0..=1.0).contains(&r) {
                Ok(())
            } else {
                Err(SandboxError::BadRequest(format!(
                    "{name} rate {r} is not in 0..=1"
                )))
            }
        };
        let sleep = |name: &str, ms: u64| {
            if ms <= SLEEP_MS_MAX {
                Ok(())
            } else {
                Err(SandboxError::BadRequest(format!(
                    "{name} {ms} ms is over {SLEEP_MS_MAX} ms"
                )))
            }
        };
        if self.methods.len() > METHOD_ENTRIES_MAX || self.script.len() > SCRIPT_STEPS_MAX {
            return bad(format!(
                "at most {METHOD_ENTRIES_MAX} methods and {SCRIPT_STEPS_MAX} script steps"
            ));
        }
        rate("duplicate_notifications", self.duplicate_notifications)?;
        for (method, m) in &self.methods {
            if let Some(l) = &m.latency {
                if l.min_ms > l.max_ms {
                    return bad(format!("{method}: latency min_ms is above max_ms"));
                }
                sleep("latency", l.max_ms.max(l.p99_ms.unwrap_or(0)))?;
            }
            if let Some(t) = &m.timeout {
                rate("timeout", t.rate)?;
                sleep("hang_ms", t.hang_ms)?;
            }
            for (name, c) in [
                ("http_5xx", &m.http_5xx),
                ("drop_after_commit", &m.drop_after_commit),
                ("insufficient_balance", &m.insufficient_balance),
            ] {
                if let Some(c) = c {
                    rate(name, c.rate)?;
                }
            }
            if let Some(d) = &m.decline {
                rate("decline", d.rate)?;
                decline_code(d.sub_code.as_deref())?;
            }
            if let Some(ms) = m.user_paying_ms {
                sleep("user_paying_ms", ms)?;
            }
        }
        for step in &self.script {
            sleep("ms", step.ms.unwrap_or(0))?;
            if let Some(s) = step.status {
                if ![500, 502, 503, 504].contains(&s) {
                    return bad(format!("status {s} is not 500, 502, 503 or 504"));
                }
            }
            decline_code(step.sub_code.as_deref())?;
        }
        Ok(())
    }
}

fn decline_code(code: Option<&str>) -> Result<&'static str, SandboxError> {
    match code {
        None => Ok(DECLINE_SUB_CODE_DEFAULT),
        Some(c) => DECLINE_SUB_CODES
            .iter()
            .find(|known| **known == c)
            .copied()
            .ok_or_else(|| {
                SandboxError::BadRequest(format!(
                    "decline sub_code {c} is not one of {DECLINE_SUB_CODES:?}"
                ))
            }),
    }
}

/// What one call suffers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub latency_ms: u64,
    pub action: Action,
    /// For pays: wait for the buyer, who confirms by itself after this long.
    pub user_paying_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum Action {
    #[default]
    None,
    /// Hang, then close the connection without an answer; nothing applied.
    Timeout { hang_ms: u64 },
    /// Answer this status with a non-JSON body; nothing applied.
    Http5xx { status: u16 },
    /// Apply and commit, then close the connection without an answer.
    DropAfterCommit,
    /// Refuse with 40004 and this sub code; nothing applied.
    Decline { sub_code: &'static str },
    /// Refuse with 40004 `ACQ.BUYER_BALANCE_NOT_ENOUGH`; nothing applied.
    InsufficientBalance,
}

/// The live faults: the document, its seeded RNG, and what is left of the script.
pub struct FaultState {
    inner: Mutex<Inner>,
    /// How many times each fault was injected, by `method fault` (since the process started),
    /// so a test can tell that its fault matrix actually happened.
    injected: Mutex<BTreeMap<String, u64>>,
}

struct Inner {
    faults: Faults,
    rng: StdRng,
    script: Vec<ScriptStep>,
}

impl FaultState {
    pub fn new(faults: Faults) -> FaultState {
        FaultState {
            inner: Mutex::new(Inner::from(faults)),
            injected: Mutex::new(BTreeMap::new()),
        }
    }

    /// Replaces the faults; the RNG restarts from the new seed and the script from its start.
    pub fn set(&self, faults: Faults) {
        *self.lock() = Inner::from(faults);
    }

    /// The document as set, with the script steps not yet consumed.
    pub fn current(&self) -> Faults {
        let inner = self.lock();
        let mut faults = inner.faults.clone();
        faults.script = inner.script.clone();
        faults
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner half-updated in a harmful way.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides what the next call of `method` suffers: the first script step for it, if any,
    /// else the probabilistic knobs of `method` (or `*`).
    /// Counts of injected faults, keyed `"<method> <fault>"`.
    pub fn injected(&self) -> BTreeMap<String, u64> {
        self.injected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Counts one injected notification duplicate.
    pub fn count_duplicate_notification(&self) {
        self.count("notification", "duplicate");
    }

    fn count(&self, method: &str, fault: &str) {
        *self
            .injected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(format!("{method} {fault}"))
            .or_default() += 1;
    }

    /// What the next call of `method` suffers (and counts it).
    pub fn plan(&self, method: &str) -> Plan {
        let plan = self.plan_uncounted(method);
        let action = match plan.action {
            Action::None => None,
            Action::Timeout { .. } => Some("timeout"),
            Action::Http5xx { .. } => Some("http_5xx"),
            Action::DropAfterCommit => Some("drop_after_commit"),
            Action::Decline { .. } => Some("decline"),
            Action::InsufficientBalance => Some("insufficient_balance"),
        };
        if let Some(a) = action {
            self.count(method, a);
        }
        if plan.latency_ms > 0 {
            self.count(method, "latency");
        }
        if plan.user_paying_ms.is_some() {
            self.count(method, "user_paying");
        }
        plan
    }

    fn plan_uncounted(&self, method: &str) -> Plan {
        let mut inner = self.lock();
        if let Some(i) = inner
            .script
            .iter()
            .position(|s| s.method == method || s.method == "*")
        {
            let step = inner.script[i].clone();
            if step.times <= 1 {
                inner.script.remove(i);
            } else {
                inner.script[i].times -= 1;
            }
            let ms = step.ms.unwrap_or(STEP_MS_DEFAULT);
            let mut plan = Plan::default();
            match step.fault {
                FaultKind::Latency => plan.latency_ms = ms,
                FaultKind::Timeout => plan.action = Action::Timeout { hang_ms: ms },
                FaultKind::Http5xx => {
                    plan.action = Action::Http5xx {
                        status: step.status.unwrap_or(503),
                    }
                }
                FaultKind::DropAfterCommit => plan.action = Action::DropAfterCommit,
                FaultKind::Decline => {
                    plan.action = Action::Decline {
                        sub_code: decline_code(step.sub_code.as_deref())
                            .unwrap_or(DECLINE_SUB_CODE_DEFAULT),
                    }
                }
                FaultKind::InsufficientBalance => plan.action = Action::InsufficientBalance,
                FaultKind::UserPaying => plan.user_paying_ms = Some(ms),
            }
            return plan;
        }
        let Some(m) = inner
            .faults
            .methods
            .get(method)
            .or_else(|| inner.faults.methods.get("*"))
            .cloned()
        else {
            return Plan::default();
        };
        let rng = &mut inner.rng;
        let mut plan = Plan {
            user_paying_ms: m.user_paying_ms,
            ..Plan::default()
        };
        if let Some(l) = &m.latency {
            plan.latency_ms = match l.p99_ms {
                Some(tail) if rng.gen_bool(0.01) => tail,
                _ => rng.gen_range(l.min_ms..=l.max_ms),
            };
        }
        let mut hit = |rate: f64| rate > 0.0 && rng.gen_bool(rate.min(1.0));
        plan.action = if m.timeout.as_ref().is_some_and(|t| hit(t.rate)) {
            Action::Timeout {
                hang_ms: m.timeout.as_ref().map_or(0, |t| t.hang_ms),
            }
        } else if m.http_5xx.as_ref().is_some_and(|c| hit(c.rate)) {
            Action::Http5xx {
                status: if hit(0.5) { 502 } else { 503 },
            }
        } else if m.decline.as_ref().is_some_and(|d| hit(d.rate)) {
            Action::Decline {
                sub_code: decline_code(m.decline.as_ref().and_then(|d| d.sub_code.as_deref()))
                    .unwrap_or(DECLINE_SUB_CODE_DEFAULT),
            }
        } else if m.insufficient_balance.as_ref().is_some_and(|c| hit(c.rate)) {
            Action::InsufficientBalance
        } else if m.drop_after_commit.as_ref().is_some_and(|c| hit(c.rate)) {
            Action::DropAfterCommit
        } else {
            Action::None
        };
        plan
    }

    /// Whether the next notification attempt posts twice.
    pub fn duplicate_notification(&self) -> bool {
        let mut inner = self.lock();
        let rate = inner.faults.duplicate_notifications;
        rate > 0.0 && inner.rng.gen_bool(rate.min(1.0))
    }
}

impl From<Faults> for Inner {
    fn from(faults: Faults) -> Inner {
        Inner {
            rng: StdRng::seed_from_u64(faults.seed),
            script: faults.script.clone(),
            faults,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves script steps are consumed in order per method, `times` counts calls, and other
    /// methods are untouched.
    #[test]
    fn script_is_consumed_in_order() {
        let faults: Faults = serde_json::from_str(
            r#"{"script":[
                {"method":"alipay.trade.pay","fault":"drop_after_commit","times":2},
                {"method":"alipay.trade.pay","fault":"http_5xx","status":502}
            ]}"#,
        )
        .unwrap();
        faults.validate().unwrap();
        let state = FaultState::new(faults);
        assert_eq!(state.plan("alipay.trade.query"), Plan::default());
        assert_eq!(
            state.plan("alipay.trade.pay").action,
            Action::DropAfterCommit
        );
        assert_eq!(state.current().script[0].times, 1);
        assert_eq!(
            state.plan("alipay.trade.pay").action,
            Action::DropAfterCommit
        );
        assert_eq!(
            state.plan("alipay.trade.pay").action,
            Action::Http5xx { status: 502 }
        );
        assert_eq!(state.plan("alipay.trade.pay"), Plan::default());
    }

    /// Proves the probabilistic knobs are reproducible from the seed and respect their rates.
    #[test]
    fn seeded_draws_repeat() {
        let doc = r#"{"seed":7,"methods":{"*":{"latency":{"min_ms":5,"max_ms":50},
                      "http_5xx":{"rate":0.5}}}}"#;
        let draw = || {
            let state = FaultState::new(serde_json::from_str(doc).unwrap());
            (0..200).map(|_| state.plan("x")).collect::<Vec<_>>()
        };
        let (a, b) = (draw(), draw());
        assert_eq!(a, b);
        let errors = a.iter().filter(|p| p.action != Action::None).count();
        assert!((60..140).contains(&errors), "{errors} of 200 at rate 0.5");
        assert!(a.iter().all(|p| (5..=50).contains(&p.latency_ms)));
    }

    /// Proves nonsense is refused.
    #[test]
    fn refuses_nonsense() {
        for doc in [
            r#"{"methods":{"*":{"http_5xx":{"rate":1.5}}}}"#,
            r#"{"methods":{"*":{"latency":{"min_ms":9,"max_ms":1}}}}"#,
            r#"{"methods":{"*":{"decline":{"rate":1,"sub_code":"ACQ.NOPE"}}}}"#,
            r#"{"script":[{"method":"*","fault":"http_5xx","status":404}]}"#,
            r#"{"script":[{"method":"*","fault":"timeout","ms":6000000}]}"#,
        ] {
            let faults: Faults = serde_json::from_str(doc).unwrap();
            assert!(faults.validate().is_err(), "{doc}");
        }
        assert!(serde_json::from_str::<Faults>(r#"{"bogus":1}"#).is_err());
    }
}
