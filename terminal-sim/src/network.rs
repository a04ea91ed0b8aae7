//! The simulated network: metro stations with their gates and ticket machine, toll plazas with
//! their lanes, each terminal with its own client certificate, connection, sequence numbers and
//! offline verifier; and the riders, each with their own device key, enrolled through the rider
//! API.
//!
//! The stations, plazas and terminal ids are the demo networks' (`gateway certs dev` issues a
//! certificate for each), so a simulated fleet can drive any gateway configured with them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context;
use serde::Deserialize;
use turnpike_client::demo::{demo_terminals, METRO_OPERATOR, TICKET_MACHINE_PREFIX, TOLL_OPERATOR};
use turnpike_client::{AdminClient, RiderDevice};
use turnpike_wire::ridecode::{DenyList, IssuerPublicKey, Verifier, VerifyPolicy};

use crate::transport::{Endpoint, Link};

/// Credentials a gate remembers as verified (as the gateway does): a rider's later codes at that
/// gate cost one ECDSA verification. A day's riders of one gate fit easily.
pub const GATE_CREDENTIAL_CACHE_MAX: usize = 50_000;

/// Where the simulator finds the servers and the dev PKI.
#[derive(Debug, Clone)]
pub struct Target {
    /// Terminal API base URL (mutual TLS), e.g. `https://localhost:8443`; may point at any server
    /// that speaks the tap API (the load benchmark's baseline).
    pub terminal_url: String,
    /// Rider and admin API base URL.
    pub public_url: String,
    /// Directory written by `gateway certs dev` (`ca.pem`, `terminals/<id>.pem|.key`).
    pub certs: PathBuf,
    pub admin_token: String,
}

impl Target {
    pub fn ca(&self) -> PathBuf {
        self.certs.join("ca.pem")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    MetroGate,
    /// A station's ticket machine (`tvm-…`): sells tickets paid by QR, scans no ride codes.
    TicketMachine,
    TollLane,
}

/// One terminal of the fleet.
pub struct Terminal {
    pub id: String,
    /// Station or plaza id.
    pub location: String,
    pub kind: Kind,
    pub link: Link,
    next_sequence: AtomicU64,
    /// False while the gate has no link (offline mode): taps are buffered, not sent.
    pub online: AtomicBool,
    pub verifier: Verifier,
}

impl Terminal {
    /// The next sequence number of this terminal (strictly increasing).
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence.fetch_add(1, Ordering::Relaxed)
    }
}

/// Stations (in line order) and plazas (by kilometre post) with the indexes of their terminals.
pub struct Fleet {
    pub terminals: Vec<Terminal>,
    /// Per station, in line order: indexes of its gates.
    pub stations: Vec<Vec<usize>>,
    /// Per station, in line order: the index of its ticket machine.
    pub machines: Vec<usize>,
    /// Per plaza: (entry lane, exit lane).
    pub plazas: Vec<(usize, usize)>,
    pub deny: DenyList,
}

#[derive(Deserialize)]
struct KeysResponse {
    keys: Vec<IssuerPublicKey>,
}

#[derive(Deserialize)]
struct DenyResponse {
    credentials: Vec<String>,
    riders: Vec<String>,
}

/// Issuer keys and deny list as a gate fetches them from the terminal API feeds.
pub async fn fetch_feeds(link: &Link) -> anyhow::Result<(Vec<IssuerPublicKey>, DenyList)> {
    let keys = link.get("/v1/terminal/keys").await?;
    anyhow::ensure!(keys.status == 200, "GET /v1/terminal/keys: {}", keys.status);
    let keys: KeysResponse = serde_json::from_slice(&keys.body)?;
    let deny = link.get("/v1/terminal/deny-list").await?;
    anyhow::ensure!(
        deny.status == 200,
        "GET /v1/terminal/deny-list: {}",
        deny.status
    );
    let deny: DenyResponse = serde_json::from_slice(&deny.body)?;
    let parse = |ids: Vec<String>| ids.iter().filter_map(|s| s.parse().ok()).collect();
    Ok((
        keys.keys,
        DenyList {
            credentials: parse(deny.credentials),
            riders: parse(deny.riders),
        },
    ))
}

impl Fleet {
    /// Connects every demo terminal to `terminal_url` with its own certificate from `certs`.
    /// `keys` are the issuer keys the gates verify with (fetched from the gateway's feed when
    /// `None`).
    pub async fn connect(
        terminal_url: &str,
        certs: &Path,
        keys: Option<(Vec<IssuerPublicKey>, DenyList)>,
    ) -> anyhow::Result<Fleet> {
        let endpoint = Endpoint::parse(terminal_url)?;
        let ca = certs.join("ca.pem");
        let mut links = Vec::new();
        for (id, operator, location) in demo_terminals() {
            let cert = certs.join("terminals").join(format!("{id}.pem"));
            let key = certs.join("terminals").join(format!("{id}.key"));
            let link = Link::new(endpoint.clone(), Some(&ca), Some((&cert, &key)))
                .with_context(|| format!("terminal {id}"))?;
            let kind = if operator == METRO_OPERATOR && id.starts_with(TICKET_MACHINE_PREFIX) {
                Kind::TicketMachine
            } else if operator == METRO_OPERATOR {
                Kind::MetroGate
            } else {
                debug_assert_eq!(operator, TOLL_OPERATOR);
                Kind::TollLane
            };
            links.push((id, location, kind, link));
        }
        let (keys, deny) = match keys {
            Some(k) => k,
            None => fetch_feeds(&links[0].3).await?,
        };
        // Sequence numbers continue from the clock (microseconds), so reruns never reuse a key.
        let first_sequence = crate::now_ms() as u64 * 1000;
        let mut terminals = Vec::new();
        for (id, location, kind, link) in links {
            link.warm_up()
                .await
                .with_context(|| format!("connecting terminal {id}"))?;
            terminals.push(Terminal {
                id,
                location,
                kind,
                link,
                next_sequence: AtomicU64::new(first_sequence),
                online: AtomicBool::new(true),
                verifier: Verifier::new(keys.clone(), VerifyPolicy::default())
                    .map_err(|e| anyhow::anyhow!("issuer keys: {e}"))?
                    .with_credential_cache(GATE_CREDENTIAL_CACHE_MAX),
            });
        }
        let metro = turnpike_fares::demo_metro();
        let stations = metro
            .stops()
            .iter()
            .map(|stop| {
                terminals
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.kind == Kind::MetroGate && t.location == stop.id)
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        let machines = metro
            .stops()
            .iter()
            .map(|stop| {
                terminals
                    .iter()
                    .position(|t| t.kind == Kind::TicketMachine && t.location == stop.id)
                    .with_context(|| format!("the ticket machine of {}", stop.id))
            })
            .collect::<anyhow::Result<_>>()?;
        let toll = turnpike_fares::demo_toll();
        let lane = |plaza: &str, side: &str| {
            terminals
                .iter()
                .position(|t| {
                    t.kind == Kind::TollLane && t.id.ends_with(side) && t.location == plaza
                })
                .context("toll lane")
        };
        let plazas = toll
            .plazas()
            .iter()
            .map(|p| Ok((lane(&p.id, "-in")?, lane(&p.id, "-out")?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Fleet {
            terminals,
            stations,
            machines,
            plazas,
            deny,
        })
    }
}

/// Enrolled riders; grows on demand (each enrolment is a register + credential request through
/// the rider API, as the app does on first start).
#[derive(Default)]
pub struct Riders {
    pub devices: Vec<Arc<RiderDevice>>,
}

/// Enrolments in flight at once.
const ENROL_CONCURRENCY: usize = 32;

impl Riders {
    pub async fn ensure(&mut self, target: &Target, count: usize) -> anyhow::Result<()> {
        let missing = count.saturating_sub(self.devices.len());
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = missing.div_ceil(ENROL_CONCURRENCY);
        for chunk in 0..ENROL_CONCURRENCY {
            let n = per_task.min(missing.saturating_sub(chunk * per_task));
            let (base, ca) = (target.public_url.clone(), target.ca());
            tasks.spawn(async move {
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(RiderDevice::enrol(&base, &ca, &["metro", "toll"]).await?);
                }
                anyhow::Ok(out)
            });
        }
        while let Some(done) = tasks.join_next().await {
            self.devices.extend(done??.into_iter().map(Arc::new));
        }
        Ok(())
    }
}

/// Creates the demo operators, loads their fares and registers the demo terminals; whatever
/// already exists is left as it is.
pub async fn setup_demo(target: &Target) -> anyhow::Result<()> {
    let admin = AdminClient::new(&target.public_url, &target.ca(), &target.admin_token)?;
    for (id, mode, format) in [
        (METRO_OPERATOR, "metro", "demo_metro"),
        (TOLL_OPERATOR, "toll", "demo_toll"),
    ] {
        let created = admin
            .post(
                "/v1/admin/operators",
                &serde_json::json!({"operator_id": id, "name": id, "mode": mode}),
            )
            .await?;
        if created.status == 201 {
            let loaded = admin
                .send(
                    reqwest::Method::PUT,
                    &format!("/v1/admin/operators/{id}/fares"),
                    Some(&serde_json::json!({"format": format})),
                )
                .await?;
            anyhow::ensure!(
                loaded.status == 201,
                "loading fares for {id}: {}",
                String::from_utf8_lossy(&loaded.body)
            );
        }
    }
    for (id, op, location) in demo_terminals() {
        let a = admin
            .post(
                "/v1/admin/terminals",
                &serde_json::json!({"terminal_id": id, "operator_id": op, "location_id": location}),
            )
            .await?;
        anyhow::ensure!(
            (200..300).contains(&a.status) || a.status == 409,
            "registering {id}: HTTP {}",
            a.status
        );
    }
    Ok(())
}
