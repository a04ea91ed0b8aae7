//! Every configuration name and its typed default, in one place.
//!
//! Configuration comes from an optional TOML file, then `TURNPIKE_<SECTION>__<FIELD>` environment
//! variables (e.g. `TURNPIKE_DATABASE__URL`). Bad configuration stops the process before it binds a
//! port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// A setting that must never reach a log or an error message (the admin token, a database URL
/// that may carry a password): `Debug` and `Display` print `[redacted]`; code that needs the
/// value asks for it with [`Secret::expose`]. It reads and writes as a plain string in the TOML
/// file and the `TURNPIKE_*` variables.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: ListenConfig,
    pub tls: TlsConfig,
    pub database: DatabaseConfig,
    pub taps: TapConfig,
    pub journeys: JourneyConfig,
    pub credentials: CredentialConfig,
    pub admin: AdminConfig,
    pub provider: crate::provider::ProviderConfig,
    pub charging: ChargingConfig,
    pub limits: LimitsConfig,
    pub flow: FlowConfig,
}

/// Live passenger flow (docs/flow.md): the public crowding answers and their event stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// Previous weeks whose same weekday and time make a station's usual level (and the
    /// forecast's seasonal mean), 1–12.
    pub usual_weeks: u32,
    /// How often `GET /v1/flow/stream` sends a snapshot of the stations.
    pub stream_interval_ms: u64,
    /// Event streams open at once on this node; one more is refused with 503
    /// `flow_streams_full` (each costs a database read per interval).
    pub streams_max: u32,
    /// Longest one event stream stays open; the browser's EventSource then reconnects (and a
    /// stream never holds up a shutdown for longer than the drain allows anyway).
    pub stream_lifetime_s: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            usual_weeks: crate::flow::USUAL_WEEKS_DEFAULT,
            stream_interval_ms: 5_000,
            streams_max: 200,
            stream_lifetime_s: 600,
        }
    }
}

/// Request budgets per client (token buckets, `limits.rs`): past one, a client gets 429
/// `rate_limited` with `Retry-After`, and nothing is done. Real clients stay far below them:
/// a gate taps about once a second at rush hour, a phone asks a few times a minute.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests a terminal (its certificate's common name) may make per second, sustained…
    pub terminal_requests_per_s: u32,
    /// …and at once (an offline gate's upload comes as batches of up to 500 taps each).
    pub terminal_burst: u32,
    /// Requests of one rider (token) per second, sustained…
    pub rider_requests_per_s: u32,
    /// …and at once.
    pub rider_burst: u32,
    /// Registrations per source address per second, sustained… Many phones can share an
    /// address (carrier NAT), hence more than one a second.
    pub registrations_per_s: u32,
    /// …and at once.
    pub registration_burst: u32,
    /// Public passenger-flow requests per source address per second, sustained…
    pub flow_requests_per_s: u32,
    /// …and at once.
    pub flow_burst: u32,
    /// A request header holding the client's address, set by a proxy in front of the public
    /// listener (e.g. `x-forwarded-for`: its last entry is taken, the one the proxy added).
    /// Empty: the TCP peer's address. Never set it without such a proxy: clients could then
    /// choose their own address.
    pub client_address_header: String,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            terminal_requests_per_s: 50,
            terminal_burst: 200,
            rider_requests_per_s: 5,
            rider_burst: 30,
            registrations_per_s: 5,
            registration_burst: 50,
            flow_requests_per_s: 5,
            flow_burst: 20,
            client_address_header: String::new(),
        }
    }
}

/// How the gateway collects money through the provider (see docs/charging.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChargingConfig {
    /// How often the capture worker looks for due metro charges.
    pub capture_poll_ms: u64,
    /// Charges claimed per poll, and deductions in flight at once.
    pub capture_batch_max: usize,
    /// How long a claimed charge is reserved for the worker that claimed it; another worker
    /// (or node) takes it over after this, e.g. when the first one crashed.
    pub capture_lease_ms: u64,
    /// Deduction attempts (declines) before the charge fails and the rider is deny-listed.
    pub capture_attempts_max: u32,
    /// First retry delay after a decline or an unknown outcome; doubled each time, with jitter.
    pub capture_backoff_ms: u64,
    /// Ceiling of the retry delay.
    pub capture_backoff_max_ms: u64,
    /// The whole budget of a toll exit's synchronous barcode pay, including polling and cancel.
    pub toll_budget_ms: u64,
    /// How often a toll pay whose outcome is unknown (or waits for the buyer) is queried.
    pub toll_query_interval_ms: u64,
    /// How long a ticket order's QR can be paid.
    pub ticket_order_ttl_minutes: u32,
    /// Unpaid ticket orders older than this are queried at the provider (the notification is
    /// the fast path; the query is the fallback).
    pub ticket_query_after_ms: u64,
    /// Whether a rider must have passed the provider's real-name certification (checked through
    /// the bound wallet) before buying tickets in the app. Ticket machines are not affected.
    pub app_tickets_require_real_name: bool,
}

impl Default for ChargingConfig {
    fn default() -> Self {
        ChargingConfig {
            capture_poll_ms: 500,
            capture_batch_max: 32,
            capture_lease_ms: 30_000,
            capture_attempts_max: 5,
            capture_backoff_ms: 60_000,
            capture_backoff_max_ms: 6 * 3600 * 1000,
            toll_budget_ms: 15_000,
            toll_query_interval_ms: 1_000,
            ticket_order_ttl_minutes: 15,
            ticket_query_after_ms: 30_000,
            app_tickets_require_real_name: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// Terminal API (mutual TLS, client certificate required).
    pub terminal: SocketAddr,
    /// Rider and admin APIs (TLS, server certificate only).
    pub public: SocketAddr,
    /// `/metrics`, `/healthz`, `/readyz` (plain HTTP; keep it on a private interface).
    pub ops: SocketAddr,
    /// A request must be complete — body received, answer ready — within this, or it is
    /// answered 408 `request_timeout`: a client trickling its body cannot hold a handler forever.
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Directory written by `gateway certs dev`: `ca.pem`, `server.pem`, `server.key`, and
    /// optionally `crl.pem` (revoked terminal certificates).
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (embedded) or `postgres://user@host/db` (a password in it
    /// never reaches a log).
    pub url: Secret,
    /// Upper bound on pooled connections. On PostgreSQL the tap writers have `taps.writers`
    /// sessions of their own besides.
    pub connections_max: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TapConfig {
    /// Concurrent group-commit writers. SQLite has one writer whatever this says.
    pub writers: usize,
    /// Most taps committed in one transaction. 64 amortises the commit's fsync across
    /// concurrent requests while keeping one batch's latency well under a millisecond of SQL.
    pub commit_batch_taps_max: usize,
    /// Tap requests (a single tap or one offline batch) waiting for a writer before new ones are
    /// refused with 503 `overloaded` (bounded queue).
    pub queue_requests_max: usize,
    /// A code older than this at scan time is stale (`code_expired`).
    pub freshness_ms: u64,
    /// A code generated later than scan time + this is `code_from_future`.
    pub max_future_skew_ms: u64,
    /// A scan time later than the gateway clock + this is rejected (422 `scan_time_in_future`).
    pub scan_time_future_skew_ms: u64,
    /// A scan time older than this is rejected (422 `scan_time_too_old`): offline buffers are
    /// uploaded within days, not weeks.
    pub scan_time_max_age_ms: u64,
    /// Verified credentials remembered by the verifier, so a rider's later codes cost one ECDSA
    /// verification instead of two. An entry is 192 bytes in a hash table sized in powers of
    /// two: 200 000 take about 50 MiB. When full the cache is emptied and refills from live
    /// traffic (one extra verification per active rider, never a wrong answer). A node keeps a
    /// rider's entry from entry to exit only while fewer than this many other riders pass it in
    /// between: 200 000 is about one busy hour of a node's riders in a 10 M-journey city on three
    /// nodes, not a city's day (millions of riders).
    pub credential_cache_max: usize,
    /// How often each node re-reads the deny list and terminal registry from the database, so
    /// changes made on another node take effect within this bound.
    pub refresh_interval_ms: u64,
    /// Longest a gate waits for its tap's commit before it is answered `503
    /// storage_unavailable` with `Retry-After` (the database is slow or cut off). The tap may
    /// still be stored; the gate repeats it with the same sequence and gets the stored answer.
    pub answer_budget_ms: u64,
    /// The same for an offline batch (`POST /v1/taps/batch`, up to 500 taps, nobody waiting at
    /// the barrier): long enough for a full batch on a busy database.
    pub batch_answer_budget_ms: u64,
    /// Longest a writer spends on one group (all its tries) before giving it up. A connection
    /// whose peer vanished (a cut cable, a blackholed route) can otherwise hold a writer for as
    /// long as TCP retransmits (minutes); giving up closes that connection. Longer than the
    /// batch budget, so a slow full batch is not given up while its gate still waits.
    pub group_timeout_ms: u64,
    /// Open journeys (and riders' day totals) each tap writer remembers between groups, about
    /// 300 bytes each, so most groups are judged and written in one round trip with no reads
    /// (see `gateway/src/known.rs`); the database's constraints check every assumption. 0
    /// judges every group with reads. SQLite always reads (it has no round trip to save).
    pub known_riders_max: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JourneyConfig {
    /// An entry with no exit for this long is closed at the network's maximum fare.
    pub incomplete_after_ms: u64,
    /// Exit at the entry station within this window costs the minimum fare.
    pub same_station_window_ms: u64,
    /// How often the sweeper closes incomplete journeys.
    pub sweep_interval_ms: u64,
    /// How often riders left queued for re-pairing are retried (a charge was with the provider
    /// when their late taps arrived, or the node stopped between commit and re-pairing).
    pub repair_interval_ms: u64,
}

impl JourneyConfig {
    /// The time rules the tap rules take.
    pub fn rules(&self) -> crate::rules::JourneyRules {
        crate::rules::JourneyRules {
            incomplete_after_ms: self.incomplete_after_ms as i64,
            same_station_window_ms: self.same_station_window_ms as i64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CredentialConfig {
    /// Validity of an issued credential; at most 7 days (the format forbids more).
    pub validity_s: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token for the admin API. Empty means a random token is generated at start and
    /// written to `<tls.dir>/admin-token` (dev only).
    pub token: Secret,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            terminal: "127.0.0.1:8443".parse().expect("literal address"),
            public: "127.0.0.1:8444".parse().expect("literal address"),
            ops: "127.0.0.1:9090".parse().expect("literal address"),
            request_timeout_ms: 30_000,
        }
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            dir: PathBuf::from("dev-certs"),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: Secret::from("sqlite://turnpike.db?mode=rwc"),
            connections_max: 16,
        }
    }
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig {
            writers: 2,
            commit_batch_taps_max: 64,
            queue_requests_max: 10_000,
            freshness_ms: 60_000,
            max_future_skew_ms: 5_000,
            scan_time_future_skew_ms: 30_000,
            scan_time_max_age_ms: 7 * 24 * 3600 * 1000,
            credential_cache_max: 200_000,
            refresh_interval_ms: 1_000,
            answer_budget_ms: 1_000,
            batch_answer_budget_ms: 10_000,
            group_timeout_ms: 15_000,
            known_riders_max: 100_000,
        }
    }
}

impl Default for JourneyConfig {
    fn default() -> Self {
        JourneyConfig {
            incomplete_after_ms: 4 * 3600 * 1000,
            same_station_window_ms: 20 * 60 * 1000,
            sweep_interval_ms: 60_000,
            repair_interval_ms: 1_000,
        }
    }
}

impl Default for CredentialConfig {
    fn default() -> Self {
        CredentialConfig {
            validity_s: 3 * 24 * 3600,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: ListenConfig::default(),
            tls: TlsConfig::default(),
            database: DatabaseConfig::default(),
            taps: TapConfig::default(),
            journeys: JourneyConfig::default(),
            credentials: CredentialConfig::default(),
            admin: AdminConfig {
                token: Secret::default(),
            },
            provider: crate::provider::ProviderConfig::default(),
            charging: ChargingConfig::default(),
            limits: LimitsConfig::default(),
            flow: FlowConfig::default(),
        }
    }
}

/// Applies `TURNPIKE_<SECTION>__<FIELD>` variables to the configuration table. A field whose
/// default is a string takes the text as it is (an app id of digits stays a string); any other
/// takes it as a TOML value (numbers, booleans, arrays), or as a string if it is not one.
fn overlay_env(
    value: &mut toml::Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    let defaults = toml::Table::try_from(Config::default()).context("the default configuration")?;
    for (key, raw) in vars {
        let Some(rest) = key.strip_prefix("TURNPIKE_") else {
            continue;
        };
        let Some((section, field)) = rest.split_once("__") else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        let field = field.to_ascii_lowercase();
        let is_text = defaults
            .get(&section)
            .and_then(|s| s.get(&field))
            .is_some_and(toml::Value::is_str);
        let parsed = if is_text {
            toml::Value::String(raw)
        } else {
            format!("v = {raw}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|t| t.get("v").cloned())
                .unwrap_or(toml::Value::String(raw))
        };
        value
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("{key}: section is not a table"))?
            .insert(field, parsed);
    }
    Ok(())
}

impl Config {
    /// Reads the optional file, applies `TURNPIKE_*` environment overrides and validates.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut value: toml::Table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                text.parse()
                    .with_context(|| format!("parsing config {}", path.display()))?
            }
            None => toml::Table::new(),
        };
        overlay_env(&mut value, std::env::vars())?;
        let config: Config = toml::Value::Table(value)
            .try_into()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.credentials.validity_s == 0
            || self.credentials.validity_s > turnpike_wire::ridecode::MAX_CREDENTIAL_VALIDITY_S
        {
            bail!("credentials.validity_s must be between 1 and 604800 (7 days)");
        }
        if self.taps.writers == 0
            || self.taps.commit_batch_taps_max == 0
            || self.taps.queue_requests_max == 0
            || self.taps.answer_budget_ms == 0
            || self.taps.batch_answer_budget_ms == 0
            || self.taps.group_timeout_ms == 0
        {
            bail!(
                "taps.writers, taps.commit_batch_taps_max, taps.queue_requests_max, taps.answer_budget_ms, taps.batch_answer_budget_ms and taps.group_timeout_ms must be positive"
            );
        }
        if self.journeys.same_station_window_ms >= self.journeys.incomplete_after_ms {
            bail!(
                "journeys.same_station_window_ms must be shorter than journeys.incomplete_after_ms"
            );
        }
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres")) {
            bail!("database.url must start with sqlite: or postgres://");
        }
        if self.charging.capture_attempts_max == 0 || self.charging.capture_batch_max == 0 {
            bail!("charging.capture_attempts_max and charging.capture_batch_max must be positive");
        }
        let f = &self.flow;
        if !(1..=crate::flow::USUAL_WEEKS_MAX).contains(&f.usual_weeks)
            || f.stream_interval_ms == 0
            || f.streams_max == 0
            || f.stream_lifetime_s == 0
        {
            bail!(
                "flow.usual_weeks must be 1..=12 and flow.stream_interval_ms, flow.streams_max and flow.stream_lifetime_s positive"
            );
        }
        let l = &self.limits;
        if [
            l.terminal_requests_per_s,
            l.terminal_burst,
            l.rider_requests_per_s,
            l.rider_burst,
            l.registrations_per_s,
            l.registration_burst,
            l.flow_requests_per_s,
            l.flow_burst,
        ]
        .contains(&0)
        {
            bail!("every limits.*_per_s and limits.*_burst must be positive");
        }
        if self.charging.toll_budget_ms < 2 * self.provider.call_timeout_ms {
            bail!("charging.toll_budget_ms must leave room for a pay and a cancel (≥ 2 × provider.call_timeout_ms)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the admin token and a database URL's password never print: not in the settings'
    /// `Debug` (what a startup log or a panic shows), not through `Display`.
    #[test]
    fn secrets_never_print() {
        let mut config = Config::default();
        config.admin.token = "s3cret-admin-token".into();
        config.database.url = "postgres://app:pa55word@db/turnpike".into();
        let shown = format!("{config:?} {} {}", config.admin.token, config.database.url);
        for secret in ["s3cret-admin-token", "pa55word"] {
            assert!(!shown.contains(secret), "{secret} printed: {shown}");
        }
        assert_eq!(config.admin.token.expose(), "s3cret-admin-token");
    }

    fn with_env(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let mut value = toml::Table::new();
        overlay_env(
            &mut value,
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )?;
        Ok(toml::Value::Table(value).try_into()?)
    }

    #[test]
    fn environment_overrides_follow_the_fields_types() {
        let config = with_env(&[
            // The README's provider set-up: a merchant app id is all digits.
            ("TURNPIKE_PROVIDER__APP_ID", "2021000000000001"),
            ("TURNPIKE_ADMIN__TOKEN", "12345"),
            ("TURNPIKE_TAPS__WRITERS", "4"),
            ("TURNPIKE_PROVIDER__CALL_TIMEOUT_MS", "1500"),
            (
                "TURNPIKE_DATABASE__URL",
                "postgres://postgres@127.0.0.1/turnpike",
            ),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(config.provider.app_id, "2021000000000001");
        assert_eq!(config.admin.token.expose(), "12345");
        assert_eq!(config.taps.writers, 4);
        assert_eq!(config.provider.call_timeout_ms, 1500);
        assert_eq!(
            config.database.url.expose(),
            "postgres://postgres@127.0.0.1/turnpike"
        );
        // Secrets never print.
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("12345") && !printed.contains("postgres@"),
            "{printed}"
        );
    }

    #[test]
    fn a_number_field_given_text_is_refused() {
        let e = with_env(&[("TURNPIKE_TAPS__WRITERS", "four")]).unwrap_err();
        assert!(format!("{e:#}").contains("writers"), "{e:#}");
    }
}
