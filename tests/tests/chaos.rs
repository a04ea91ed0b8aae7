//! Break it on purpose: the gateway as a real process (`gateway serve`, this build's binary) on a
//! real PostgreSQL, wired to the provider sandbox over HTTP, killed with SIGKILL at random
//! moments while gates tap at it (the capture worker, in the same process, dies mid-flight with
//! it); every other time the sandbox — its own process too — is SIGKILLed with it. Every answer a gate was given is kept, so "acknowledged" is
//! exact; afterwards every acknowledged tap must be stored once with the bytes the gate got,
//! every captured charge must be a paid trade at the provider and the reverse, no journey paid
//! twice, the journal balanced, nothing left pending after the capture worker's lease.
//!
//! The counts go to `target/chaos-results/crash.json`; any loss fails the test. CI runs the short
//! form (`CHAOS_KILLS` unset: 4 kills); the long form is
//! `CHAOS_KILLS=20 cargo test -p turnpike-tests --test chaos -- --nocapture`. PostgreSQL only
//! (`TURNPIKE_REQUIRE_PG=1` in CI).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway::store::charging::ChargeStatus;
use serde_json::json;
use sqlx::Row;
use turnpike_client::{AdminClient, RiderDevice, TerminalClient};
use turnpike_tests::pg_instance::{PgInstance, Shutdown};
use turnpike_tests::provider::{bind_wallet, free_port, use_sandbox, Sandbox, APP_ID};
use turnpike_tests::proxy::{Fault, FaultProxy};
use turnpike_tests::{
    configure_demo, demo_stops, gate, tap, test_config, write_pki, Db, KillOnDrop, PgDatabase,
    Scratch, ADMIN_TOKEN,
};
use turnpike_wire::api::{Decision, Direction};

/// Riders tapping at once, each through its own entry and exit gate.
const RIDERS: usize = 10;

/// This build's `gateway` binary, next to the test's own directory (`cargo test --workspace`
/// builds it; `cargo build -p gateway` does for a lone run).
fn gateway_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join("gateway");
    assert!(
        bin.exists(),
        "{} is missing: build it (cargo build -p gateway)",
        bin.display()
    );
    bin
}

/// `<target dir>/chaos-results`, wherever the target directory is (`CARGO_TARGET_DIR` too).
fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("chaos-results")
}

/// The gateway process and how to start it again on the same configuration and ports; killed
/// when dropped (a failed test leaves no process behind).
struct GatewayProcess {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    ops: String,
    /// The node's own terminal listener (`https://localhost:<port>`).
    terminal_base: String,
    child: Option<KillOnDrop>,
}

impl GatewayProcess {
    /// Starts it and waits until `/readyz` answers 200; the time that took.
    async fn start(&mut self) -> Duration {
        let started = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the gateway's log");
        let child = std::process::Command::new(&self.bin)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting the gateway");
        self.child = Some(KillOnDrop(child));
        if readiness(&self.ops, true, Duration::from_secs(60))
            .await
            .is_none()
        {
            panic!(
                "the gateway did not become ready; its log: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        started.elapsed()
    }

    /// SIGKILL: no drain, no flush, in-flight requests and transactions cut.
    async fn kill(&mut self) {
        if let Some(child) = self.child.take() {
            // Dropping it sends SIGKILL and reaps it (off the runtime's threads).
            let _ = tokio::task::spawn_blocking(move || drop(child)).await;
        }
    }
}

/// HAProxy (Debian's package) in front of the nodes' terminal and public listeners: TCP
/// pass-through (mutual TLS ends at the gateway), round robin, a node taken out after two failed
/// checks 200 ms apart, a connection to a dead node redispatched. Returns it and its (terminal,
/// public) ports.
/// HAProxy in front of the nodes (terminal, public, ops ports): TCP pass-through, so mutual TLS
/// ends at the gateway, and each server checked by `GET /readyz` on its ops listener, as
/// docs/runbooks/adding-a-node.md tells operators to do — a node whose database is gone is
/// taken out, not only a node whose process is.
async fn start_haproxy(dir: &Path, nodes: &[(u16, u16, u16)]) -> (KillOnDrop, (u16, u16)) {
    let (terminal, public) = (free_port(), free_port());
    let backend = |name: &str, port_of: &dyn Fn(&(u16, u16, u16)) -> u16| {
        let mut b = format!(
            "backend {name}\n    balance leastconn\n    option httpchk GET /readyz\n    http-check expect status 200\n"
        );
        for (n, node) in nodes.iter().enumerate() {
            b.push_str(&format!(
                "    server node{n} 127.0.0.1:{} check port {} inter 200ms fall 2 rise 2\n",
                port_of(node),
                node.2
            ));
        }
        b
    };
    let config = format!(
        "global\n    maxconn 4000\n\
         defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 120s\n    timeout server 120s\n    retries 3\n    option redispatch\n\
         frontend terminals\n    bind 127.0.0.1:{terminal}\n    default_backend terminal_nodes\n\
         frontend public\n    bind 127.0.0.1:{public}\n    default_backend public_nodes\n{}{}",
        backend("terminal_nodes", &|n| n.0),
        backend("public_nodes", &|n| n.1),
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
    let child = std::process::Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn();
    let child = match child {
        Ok(c) => KillOnDrop(c),
        Err(e) => panic!("starting haproxy (apt-get install haproxy): {e}"),
    };
    // Listening once a TCP connect to the terminal frontend succeeds.
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", terminal))
            .await
            .is_ok()
        {
            return (child, (terminal, public));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "haproxy did not listen: {}",
        std::fs::read_to_string(dir.join("haproxy.log")).unwrap_or_default()
    );
}

/// What gates were answered: (terminal, sequence, scan time in ms, the answer's bytes).
type Answers = Arc<Mutex<Vec<(String, u64, u64, Vec<u8>)>>>;

/// The `503`s gates were given (the database away): how many, and the slowest, in ms.
type Refusals = Arc<Mutex<(u64, u64)>>;

/// A gate's tap until it is answered (the gate's own retry: same sequence, same request), or
/// `None` after a minute without an answer.
async fn tap_until_answered(
    client: &TerminalClient,
    request: &turnpike_wire::api::TapRequest,
    refusals: &Refusals,
) -> Option<(u16, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let sent = Instant::now();
        match client.tap_raw(request).await {
            Ok(answer) if answer.status == 200 => return Some((answer.status, answer.body)),
            // 503 while the database or the node is away: not an answer; try again.
            Ok(answer) if answer.status == 503 => {
                let ms = sent.elapsed().as_millis() as u64;
                let mut r = refusals.lock().unwrap();
                r.0 += 1;
                r.1 = r.1.max(ms);
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[allow(clippy::too_many_arguments)]
async fn rider_loop(
    rider: RiderDevice,
    entry: TerminalClient,
    entry_id: String,
    exit: TerminalClient,
    exit_id: String,
    answers: Answers,
    stop: Arc<AtomicBool>,
    unanswered: Arc<Mutex<u64>>,
    refusals: Refusals,
) {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        for (client, id, direction) in [
            (&entry, &entry_id, Direction::Entry),
            (&exit, &exit_id, Direction::Exit),
        ] {
            let code = rider
                .ride_code(turnpike_tests::now_ms())
                .expect("a ride code");
            let request = tap(seq, direction, code);
            match tap_until_answered(client, &request, &refusals).await {
                Some((_, body)) => {
                    answers
                        .lock()
                        .unwrap()
                        .push((id.clone(), seq, request.scanned_at_ms, body))
                }
                None => *unanswered.lock().unwrap() += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A gateway process, its sandbox and its riders tapping: what every scenario starts from.
struct Chaos {
    /// The gateway nodes (one, or several behind HAProxy).
    nodes: Vec<GatewayProcess>,
    /// HAProxy in front of several nodes (TCP pass-through: mutual TLS ends at the gateway).
    haproxy: Option<KillOnDrop>,
    /// Between the gateways and the sandbox, when the scenario breaks that link.
    provider_proxy: Option<FaultProxy>,
    scratch_dir: PathBuf,
    /// Where phones connect (the node's public listener, or HAProxy's).
    public_base: String,
    certs: PathBuf,
    sandbox: Sandbox,
    db_url: String,
    answers: Answers,
    unanswered: Arc<Mutex<u64>>,
    refusals: Refusals,
    stop: Arc<AtomicBool>,
    riders: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
    _scratch: Scratch,
}

impl Chaos {
    /// Starts the sandbox (on the machine's PostgreSQL), `nodes` gateways on `db_url` (behind
    /// HAProxy when more than one), configures the demo and sets `RIDERS` riders with wallets
    /// tapping.
    async fn start(db_url: &str, tag: &str, nodes: usize) -> Chaos {
        Chaos::start_with(db_url, tag, nodes, false).await
    }

    /// [`Chaos::start`]; with `provider_proxy`, the gateways reach the sandbox through a TCP
    /// fault proxy the test controls ([`Chaos::provider_proxy`]).
    async fn start_with(db_url: &str, tag: &str, nodes: usize, provider_proxy: bool) -> Chaos {
        let scratch = Scratch::new(tag);
        let certs = scratch.0.join("certs");
        write_pki(&certs).unwrap();
        // The provider as its own process (this build's `provider-sandbox`), so the crash
        // scenario can SIGKILL it.
        let sandbox = Sandbox::start_process(Db::Postgres, &scratch, bin("provider-sandbox"))
            .await
            .expect("the sandbox");
        let proxy = if provider_proxy {
            let upstream: std::net::SocketAddr = sandbox
                .base_url
                .trim_start_matches("http://")
                .parse()
                .expect("the sandbox's address");
            Some(FaultProxy::start(upstream).await.unwrap())
        } else {
            None
        };
        let mut gateways = Vec::new();
        let mut listeners = Vec::new();
        for n in 0..nodes {
            let mut config = test_config(db_url, &certs);
            use_sandbox(&mut config, &sandbox);
            if let Some(proxy) = &proxy {
                config.provider.url = format!("http://{}/gateway.do", proxy.addr);
            }
            config.admin.token = ADMIN_TOKEN.into();
            for addr in [
                &mut config.listen.terminal,
                &mut config.listen.public,
                &mut config.listen.ops,
            ] {
                *addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            }
            let config_path = scratch.0.join(format!("gateway-{n}.toml"));
            std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
            let mut gw = GatewayProcess {
                bin: gateway_bin(),
                config: config_path,
                log: scratch.0.join(format!("gateway-{n}.log")),
                ops: format!("http://{}", config.listen.ops),
                terminal_base: format!("https://localhost:{}", config.listen.terminal.port()),
                child: None,
            };
            gw.start().await;
            listeners.push((
                config.listen.terminal.port(),
                config.listen.public.port(),
                config.listen.ops.port(),
            ));
            gateways.push(gw);
        }
        let (haproxy, (terminal_port, public_port)) = if nodes > 1 {
            let (proxy, ports) = start_haproxy(&scratch.0, &listeners).await;
            (Some(proxy), ports)
        } else {
            (None, (listeners[0].0, listeners[0].1))
        };
        // Where gates and phones connect: the node, or HAProxy.
        let terminal_base = format!("https://localhost:{terminal_port}");
        let public_base = format!("https://localhost:{public_port}");
        let ca = certs.join("ca.pem");
        let admin = AdminClient::new(&public_base, &ca, ADMIN_TOKEN).unwrap();
        configure_demo(&admin, None).await.unwrap();

        // Riders with wallets, each with its own entry and exit gate (a gate's sequence is its
        // own).
        let stops = demo_stops();
        let terminal = |id: &str| {
            TerminalClient::new(
                &terminal_base,
                &ca,
                &certs.join("terminals").join(format!("{id}.pem")),
                &certs.join("terminals").join(format!("{id}.key")),
            )
            .unwrap()
        };
        let answers: Answers = Arc::default();
        let unanswered = Arc::new(Mutex::new(0u64));
        let refusals: Refusals = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut riders = Vec::new();
        for i in 0..RIDERS {
            let rider = RiderDevice::enrol(&public_base, &ca, &["metro", "toll"])
                .await
                .unwrap();
            bind_wallet(&sandbox, &public_base, &ca, &rider, 1_000_000, 100_000).await;
            let entry_id = gate(&stops[i], 1);
            let exit_id = gate(&stops[(i + 7) % stops.len()], 2);
            riders.push(tokio::spawn(rider_loop(
                rider,
                terminal(&entry_id),
                entry_id,
                terminal(&exit_id),
                exit_id,
                answers.clone(),
                stop.clone(),
                unanswered.clone(),
                refusals.clone(),
            )));
        }
        Chaos {
            nodes: gateways,
            haproxy,
            provider_proxy: proxy,
            scratch_dir: scratch.0.clone(),
            public_base: public_base.clone(),
            certs,
            sandbox,
            db_url: db_url.to_string(),
            answers,
            unanswered,
            refusals,
            stop,
            riders,
            started: Instant::now(),
            _scratch: scratch,
        }
    }

    /// Stops the riders (each finishes its journey), waits for the capture worker to collect
    /// what is due, then checks every promise: the counts, as the JSON report's fields.
    async fn finish(&mut self) -> serde_json::Map<String, serde_json::Value> {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        self.stop.store(true, Ordering::Relaxed);
        for r in self.riders.drain(..) {
            r.await.unwrap();
        }
        let load_s = self.started.elapsed().as_secs_f64();
        let store = gateway::store::Store::connect(&self.db_url, 2, 1)
            .await
            .unwrap();
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.db_url).await.unwrap();
        // The capture worker collects what is due; a charge a killed node had leased is taken
        // over after the lease.
        let deadline = Instant::now() + Duration::from_secs(60);
        let pending = loop {
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM charges WHERE status IN ('pending', 'paying')",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if pending == 0 || Instant::now() > deadline {
                break pending;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // ---- Taps: every acknowledged answer stored once, byte for byte ----
        let answers = self.answers.lock().unwrap().clone();
        let mut lost = 0u64;
        let mut changed = 0u64;
        let mut seen = BTreeMap::new();
        for (terminal, seq, _, body) in &answers {
            *seen.entry((terminal.clone(), *seq)).or_insert(0u64) += 1;
            let stored: Option<Vec<u8>> =
                sqlx::query("SELECT response FROM taps WHERE terminal_id = $1 AND sequence = $2")
                    .bind(terminal)
                    .bind(*seq as i64)
                    .fetch_optional(&pool)
                    .await
                    .unwrap()
                    .map(|r| r.get(0));
            match stored {
                None => lost += 1,
                Some(s) if &s != body => changed += 1,
                Some(_) => {}
            }
        }
        let duplicates = seen.values().filter(|n| **n > 1).count() as u64;
        let stored_taps: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM taps")
            .fetch_one(&pool)
            .await
            .unwrap();

        // ---- Money: the provider's records against the gateway's ledger ----
        let trades = self.sandbox.trades().await;
        let paid: BTreeMap<&str, i64> = trades
            .iter()
            .filter(|t| t.status == "TRADE_SUCCESS" || t.status == "TRADE_FINISHED")
            .map(|t| (t.out_trade_no.as_str(), t.total_fen))
            .collect();
        let charges = store.charges(None, None, 100_000).await.unwrap();
        let captured: BTreeMap<&str, i64> = charges
            .iter()
            .filter(|c| c.status == ChargeStatus::Captured)
            .map(|c| (c.out_trade_no.as_str(), c.amount_minor))
            .collect();
        let ledger = store.ledger_transactions().await.unwrap();
        let mut captures_per_trade: BTreeMap<String, u64> = BTreeMap::new();
        for t in ledger.iter().filter(|t| t.kind == "capture") {
            *captures_per_trade
                .entry(t.out_trade_no.clone().unwrap_or_default())
                .or_default() += 1;
        }
        // A charge that is captured but whose trade the provider does not hold as paid (or at
        // another amount), and a paid trade no captured charge stands for.
        let orphan_charges = captured
            .iter()
            .filter(|(no, amount)| paid.get(*no) != Some(amount))
            .count() as u64;
        let unmatched = paid.keys().filter(|no| !captured.contains_key(*no)).count() as u64;
        // Paid more than once: a trade booked twice, or a journey with two paid trades.
        let mut paid_per_journey: BTreeMap<i64, u64> = BTreeMap::new();
        let trade_numbers: BTreeSet<&str> = paid.keys().copied().collect();
        let attempts = sqlx::query("SELECT a.out_trade_no, c.journey_id FROM charge_attempts a JOIN charges c ON c.charge_id = a.charge_id WHERE c.journey_id IS NOT NULL")
            .fetch_all(&pool)
            .await
            .unwrap();
        for a in &attempts {
            let (no, journey): (String, i64) = (a.get(0), a.get(1));
            if trade_numbers.contains(no.as_str()) {
                *paid_per_journey.entry(journey).or_default() += 1;
            }
        }
        let double_charged = captures_per_trade.values().filter(|n| **n > 1).count() as u64
            + paid_per_journey.values().filter(|n| **n > 1).count() as u64;
        let unbalanced = store.unbalanced_transactions().await.unwrap() as u64;
        // What a journey costs the database (for docs/scaling.md): the tables a journey and its
        // charge write, with their indexes, per charged journey.
        let mut table_bytes = serde_json::Map::new();
        for table in [
            "taps",
            "code_uses",
            "journeys",
            "rider_days",
            "charges",
            "charge_attempts",
            "ledger_transactions",
            "ledger_lines",
        ] {
            let bytes: i64 =
                sqlx::query_scalar(&format!("SELECT pg_total_relation_size('{table}')::BIGINT"))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            table_bytes.insert(table.into(), bytes.into());
        }
        let bytes_total: i64 = table_bytes.values().filter_map(|v| v.as_i64()).sum();
        let unanswered = *self.unanswered.lock().unwrap();
        let (refused, slowest_refusal_ms) = *self.refusals.lock().unwrap();

        for gw in &mut self.nodes {
            gw.kill().await;
        }
        self.haproxy.take();
        let report = json!({
            "riders": RIDERS,
            "load_s": load_s,
            "acknowledged": answers.len(),
            "stored": stored_taps,
            "lost": lost,
            "changed": changed,
            "duplicates": duplicates,
            "unanswered_after_60_s": unanswered,
            "refused_503": refused,
            "slowest_refusal_ms": slowest_refusal_ms,
            "journeys_charged": captured.len(),
            "paid_trades": paid.len(),
            "double_charged": double_charged,
            "orphan_charges": orphan_charges,
            "unmatched": unmatched,
            "unbalanced": unbalanced,
            "table_bytes": table_bytes,
            "bytes_per_charged_journey": bytes_total / (captured.len().max(1) as i64),
            "pending_after_lease": pending,
        });
        match report {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        }
    }
}

/// Writes `target/chaos-results/<name>.json` and fails on any loss (and on too little load).
fn report(
    name: &str,
    mut report: serde_json::Map<String, serde_json::Value>,
    min_acknowledged: usize,
) {
    report.insert("name".into(), name.into());
    let report = serde_json::Value::Object(report);
    let dir = results_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    println!("{report:#}");
    assert!(
        report["acknowledged"].as_u64().unwrap_or(0) >= min_acknowledged as u64,
        "too little load: {report}"
    );
    assert!(
        report["journeys_charged"].as_u64().unwrap_or(0) > 0,
        "nothing was charged: {report}"
    );
    for key in [
        "lost",
        "changed",
        "duplicates",
        "unanswered_after_60_s",
        "double_charged",
        "orphan_charges",
        "unmatched",
        "unbalanced",
        "pending_after_lease",
    ] {
        assert_eq!(report[key], 0, "{key}: {report:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_the_gateway_under_load_and_lose_nothing() {
    let kills: usize = std::env::var("CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let mut chaos = Chaos::start(&db.url, "chaos-crash", 1).await;
    // Kill it at random moments, start it again, measure how long it took to be ready.
    let mut recoveries_ms = Vec::new();
    let mut provider_crashes = 0;
    for k in 0..kills {
        let wait = 800 + rand::random::<u64>() % 2_200;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        chaos.nodes[0].kill().await;
        // Every other time the provider's process is SIGKILLed too (its in-flight trades cut),
        // and is back before the gateway.
        if k % 2 == 1 {
            chaos.sandbox.crash_and_restart().await;
            provider_crashes += 1;
        }
        recoveries_ms.push(chaos.nodes[0].start().await.as_millis() as u64);
    }
    let mut counts = chaos.finish().await;
    counts.insert("kills".into(), kills.into());
    counts.insert("provider_crashes".into(), provider_crashes.into());
    counts.insert(
        "recovery_ms_max".into(),
        recoveries_ms.iter().max().copied().into(),
    );
    counts.insert("recovery_ms".into(), recoveries_ms.into());
    report("crash", counts, 20 * kills.max(1));
}

/// Polls the gateway's `/readyz` until its status is (or is not) 200; the time that took.
async fn readiness(ops: &str, ready: bool, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let http = reqwest::Client::new();
    while started.elapsed() < within {
        let ok = http
            .get(format!("{ops}/readyz"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok == ready {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_the_database_fast_and_immediate_and_lose_nothing() {
    // The gateway's own PostgreSQL server (pg_ctl on a scratch data directory and port, never
    // the machine's), stopped under load with an immediate (crash: WAL replay at start) and a
    // fast shutdown, and started again: gates get prompt 503s while it is away, /readyz
    // follows, the gateway recovers unaided, nothing acknowledged is lost.
    let required = std::env::var_os("TURNPIKE_REQUIRE_PG").is_some_and(|v| v == "1");
    let scratch = Scratch::new("chaos-own-pg");
    let Some(mut pg) = PgInstance::create(&scratch.0.join("pg"), free_port()).unwrap() else {
        assert!(!required, "PostgreSQL's server binaries are missing");
        return;
    };
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&pg.url("postgres")).await.unwrap();
    sqlx::query("CREATE DATABASE turnpike")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let mut chaos = Chaos::start(&pg.url("turnpike"), "chaos-own-pg", 1).await;
    let ops = chaos.nodes[0].ops.clone();
    let mut outages = Vec::new();
    for mode in [Shutdown::Immediate, Shutdown::Fast, Shutdown::Immediate] {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        tokio::task::block_in_place(|| pg.stop(mode)).unwrap();
        let not_ready = readiness(&ops, false, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        tokio::task::block_in_place(|| pg.start()).unwrap();
        let ready_again = readiness(&ops, true, Duration::from_secs(60)).await;
        outages.push(json!({
            "shutdown": format!("{mode:?}").to_lowercase(),
            "readyz_503_after_ms": not_ready.map(|d| d.as_millis() as u64),
            "recovered_after_start_ms": ready_again.map(|d| d.as_millis() as u64),
        }));
        assert!(
            not_ready.is_some(),
            "/readyz stayed 200 with the database down"
        );
        assert!(ready_again.is_some(), "the gateway did not recover unaided");
    }
    let mut counts = chaos.finish().await;
    counts.insert("outages".into(), outages.into());
    let slowest = counts["slowest_refusal_ms"].as_u64().unwrap_or(0);
    assert!(
        counts["refused_503"].as_u64().unwrap_or(0) > 0,
        "no gate was refused while the database was away: {counts:?}"
    );
    // The answer budget is 1 s; a refusal is prompt when it comes within a few of them, not
    // after TCP's minutes (a bound, not a benchmark).
    assert!(slowest < 5_000, "a refusal took {slowest} ms");
    report("database_restart", counts, 100);
    drop(pg);
}

impl Chaos {
    /// A mutual-TLS client of terminal `id` talking to one node directly.
    fn terminal_at(&self, node: usize, id: &str) -> TerminalClient {
        TerminalClient::new(
            &self.nodes[node].terminal_base,
            &self.certs.join("ca.pem"),
            &self.certs.join("terminals").join(format!("{id}.pem")),
            &self.certs.join("terminals").join(format!("{id}.key")),
        )
        .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_one_of_three_nodes_behind_haproxy_and_lose_nothing() {
    // Three gateways on loopback sharing one PostgreSQL, behind HAProxy (TCP pass-through); one
    // node at a time is killed under load and started again. Gates reconnect through the proxy
    // to a live node; a code used on one node is a replay on another; nothing acknowledged is
    // lost and no money doubled.
    let required = std::env::var_os("TURNPIKE_REQUIRE_PG").is_some_and(|v| v == "1");
    if std::process::Command::new("haproxy")
        .arg("-v")
        .output()
        .is_err()
    {
        assert!(!required, "haproxy is missing (apt-get install haproxy)");
        return;
    }
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let mut chaos = Chaos::start(&db.url, "chaos-nodes", 3).await;

    // A replay across nodes: the same code at two nodes, directly.
    let stops = demo_stops();
    let rider = {
        let public_base = chaos.public_base.clone();
        RiderDevice::enrol(&public_base, &chaos.certs.join("ca.pem"), &["metro"])
            .await
            .unwrap()
    };
    let code = rider.ride_code(turnpike_tests::now_ms()).unwrap();
    let first = chaos
        .terminal_at(0, &gate(&stops[15], 1))
        .tap(&tap(1, Direction::Entry, code.clone()))
        .await
        .unwrap();
    let second = chaos
        .terminal_at(1, &gate(&stops[16], 1))
        .tap(&tap(1, Direction::Entry, code))
        .await
        .unwrap();
    assert_eq!(first.decision, Decision::Approve, "{first:?}");
    assert_eq!(second.decision, Decision::Decline, "{second:?}");
    assert_eq!(second.reason.as_deref(), Some("replay"), "{second:?}");

    // Kill each node in turn under load; each is away 2 s, then back.
    let mut recoveries_ms = Vec::new();
    for node in [1usize, 2, 0] {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        chaos.nodes[node].kill().await;
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        recoveries_ms.push(chaos.nodes[node].start().await.as_millis() as u64);
    }
    let mut counts = chaos.finish().await;
    counts.insert("nodes".into(), 3.into());
    counts.insert("node_kills".into(), 3.into());
    counts.insert("replay_across_nodes_declined".into(), true.into());
    counts.insert("recovery_ms".into(), recoveries_ms.into());
    report("many_nodes", counts, 100);
}

/// A binary of this build next to the test (`cargo test --workspace` builds them all).
fn bin(name: &str) -> PathBuf {
    let path = gateway_bin().with_file_name(name);
    assert!(path.exists(), "{} is missing: build it", path.display());
    path
}

/// The business day (Asia/Shanghai) of a Unix time in ms.
fn shanghai_day(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
        .date()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_faults_then_the_days_settlement_has_no_unexplained_exception() {
    // The link to the provider breaks (a TCP proxy resets connections and blackholes calls) while
    // the sandbox itself hangs, answers 5xx and drops answers after committing. Afterwards the
    // sandbox's records, the gateway's ledger and what the gates were told agree (the checks of
    // every scenario), and `settlement run` of the day — the gateway's ledger from its database,
    // the sandbox's bill, the gates' own log as the operator's export — finds every item matched.
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let mut chaos = Chaos::start_with(&db.url, "chaos-provider", 1, true).await;
    let started_ms = turnpike_tests::now_ms();
    let lookup = json!({
        "timeout": {"rate": 0.05, "hang_ms": 1_500},
        "http_5xx": {"rate": 0.15},
        "drop_after_commit": {"rate": 0.1},
    });
    chaos
        .sandbox
        .set_faults(json!({
            "seed": 20261205,
            "methods": {
                "alipay.trade.pay": {
                    "latency": {"min_ms": 0, "max_ms": 20},
                    "timeout": {"rate": 0.1, "hang_ms": 1_500},
                    "http_5xx": {"rate": 0.1},
                    "drop_after_commit": {"rate": 0.2},
                },
                "alipay.trade.query": lookup,
                "alipay.trade.cancel": lookup,
            },
        }))
        .await;
    let proxy = chaos.provider_proxy.as_ref().expect("the provider's proxy");
    let mut link_faults = 0;
    for round in 0..8 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        proxy.set(if round % 2 == 0 {
            Fault::Reset
        } else {
            Fault::Blackhole
        });
        link_faults += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.set(Fault::None);
    }
    chaos.sandbox.set_faults(json!({})).await;
    // What the gateway's provider client saw: calls by outcome (the faults did happen).
    let metrics = reqwest::get(format!("{}/metrics", chaos.nodes[0].ops))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut provider_calls: BTreeMap<String, f64> = BTreeMap::new();
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("gateway_provider_calls_total{") {
            let outcome = rest
                .split("outcome=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?");
            let value: f64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
            *provider_calls.entry(outcome.to_string()).or_default() += value;
        }
    }
    let failed_calls: f64 = provider_calls
        .iter()
        .filter(|(outcome, _)| !matches!(outcome.as_str(), "ok" | "success"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        failed_calls > 0.0,
        "no provider call failed: {provider_calls:?}"
    );
    let answers = chaos.answers.clone();
    let sandbox_base = chaos.sandbox.base_url.clone();
    let dir = chaos.scratch_dir.join("settlement");
    let mut counts = chaos.finish().await;
    let ended_ms = turnpike_tests::now_ms();

    // The gates' own log, as the operator exports it: every answered tap, exits with the
    // amount the gate was told it charged.
    let answers = answers.lock().unwrap().clone();
    let mut export = String::from(
        "# turnpike-operator-export v1\nterminal_id,terminal_sequence,occurred_at,kind,amount_minor,currency\n",
    );
    let mut rows = 0;
    for (terminal, seq, scanned_at_ms, body) in &answers {
        let answer: turnpike_wire::api::TapResponse = serde_json::from_slice(body).unwrap();
        if answer.decision != Decision::Approve {
            continue;
        }
        let at = jiff::Timestamp::from_millisecond(*scanned_at_ms as i64)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string();
        let (kind, amount) = match &answer.charge {
            Some(charge) => ("exit", charge.to_minor()),
            None => ("entry", 0),
        };
        export.push_str(&format!("{terminal},{seq},{at},{kind},{amount},CNY\n"));
        rows += 1;
    }
    export.push_str(&format!("# end rows={rows}\n"));
    std::fs::create_dir_all(&dir).unwrap();
    let export_path = dir.join("hz-metro.csv");
    std::fs::write(&export_path, export).unwrap();

    // Each business day the load touched (one, unless it ran over midnight in Shanghai).
    let mut days: Vec<String> = vec![shanghai_day(started_ms), shanghai_day(ended_ms)];
    days.dedup();
    let mut exceptions_by_class: BTreeMap<String, u64> = BTreeMap::new();
    let mut summaries = Vec::new();
    for day in &days {
        let bill = reqwest::get(format!(
            "{sandbox_base}/sandbox/bills/{APP_ID}/{day}.csv?charset=UTF-8"
        ))
        .await
        .unwrap();
        assert_eq!(bill.status(), 200, "the sandbox's bill of {day}");
        let bill_path = dir.join(format!("bill-{day}.csv"));
        std::fs::write(&bill_path, bill.bytes().await.unwrap()).unwrap();
        let out = std::process::Command::new(bin("settlement"))
            .args(["--database", &db.url, "run", "--date", day])
            .arg("--provider-bill")
            .arg(&bill_path)
            .arg("--operator-export")
            .arg(format!("hz-metro={}", export_path.display()))
            .arg("--work-dir")
            .arg(dir.join("work"))
            .arg("--out")
            .arg(dir.join("out"))
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "settlement run {day}: {printed}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        summaries.push(printed);
        let exceptions =
            std::fs::read_to_string(dir.join("out").join(day).join("exceptions.csv")).unwrap();
        // `# <version> exceptions <day>`, the header, then one line per exception.
        let header = "operator_id,class,reference,amount_minor,currency,detail,key";
        let mut lines = exceptions.lines().filter(|l| !l.starts_with('#'));
        assert_eq!(lines.next(), Some(header), "{exceptions}");
        for line in lines.filter(|l| !l.is_empty()) {
            let class = line.split(',').nth(1).unwrap_or("?").to_string();
            *exceptions_by_class.entry(class).or_default() += 1;
        }
    }
    // Across midnight, a journey's items may belong to the other day: explained, carried.
    let unexplained: u64 = exceptions_by_class
        .iter()
        .filter(|(class, _)| class.as_str() != "other_day")
        .map(|(_, n)| n)
        .sum();
    counts.insert("provider_link_faults".into(), link_faults.into());
    counts.insert("provider_calls_by_outcome".into(), json!(provider_calls));
    counts.insert("settled_days".into(), days.clone().into());
    counts.insert("settlement_summaries".into(), summaries.clone().into());
    counts.insert("exceptions_by_class".into(), json!(exceptions_by_class));
    counts.insert("unexplained_exceptions".into(), unexplained.into());
    report("provider_faults", counts, 100);
    assert_eq!(
        unexplained, 0,
        "settlement found exceptions: {exceptions_by_class:?}\n{summaries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_over_the_database_primary_and_lose_nothing() {
    // Two PostgreSQL nodes under Patroni with synchronous replication, reached through HAProxy's
    // Patroni check; the primary is killed (Patroni and PostgreSQL, SIGKILL) under load. The
    // standby is promoted, the gateway follows unaided through the same address, and nothing a
    // gate or the provider was told is lost. Reports the time without service.
    let required = std::env::var_os("TURNPIKE_REQUIRE_PG").is_some_and(|v| v == "1");
    if !turnpike_tests::patroni::available() {
        assert!(
            !required,
            "patroni, etcd or haproxy is missing (.ci/run installs them)"
        );
        return;
    }
    let scratch = Scratch::new("chaos-patroni");
    let mut cluster =
        turnpike_tests::patroni::PatroniCluster::start(&scratch.0.join("cluster"), free_port)
            .await
            .unwrap();
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&cluster.url("postgres"))
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE turnpike")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let mut chaos = Chaos::start(&cluster.url("turnpike"), "chaos-patroni", 1).await;
    let ops = chaos.nodes[0].ops.clone();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let acknowledged_before = chaos.answers.lock().unwrap().len();
    let killed = Instant::now();
    cluster.kill_node(0);
    let promoted = cluster
        .wait_role(1, "primary", Duration::from_secs(60))
        .await
        .unwrap();
    // Service is back when a gate's tap is answered again: the first acknowledged tap after
    // the promotion.
    let answered_again = {
        let deadline = Instant::now() + Duration::from_secs(60);
        let seen = chaos.answers.lock().unwrap().len();
        loop {
            if chaos.answers.lock().unwrap().len() > seen || Instant::now() > deadline {
                break killed.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let ready = readiness(&ops, true, Duration::from_secs(30)).await;
    // The old primary comes back as a standby (pg_rewind) while the load goes on.
    cluster.start_node(0).unwrap();
    let rejoined = cluster
        .wait_role(0, "replica", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut counts = chaos.finish().await;
    counts.insert(
        "acknowledged_before_kill".into(),
        acknowledged_before.into(),
    );
    counts.insert(
        "promoted_after_ms".into(),
        (promoted.as_millis() as u64).into(),
    );
    counts.insert(
        "without_service_ms".into(),
        (answered_again.as_millis() as u64).into(),
    );
    counts.insert("gateway_ready".into(), ready.is_some().into());
    counts.insert("old_primary_rejoined".into(), rejoined.is_ok().into());
    report("failover", counts, 100);
    assert!(
        ready.is_some(),
        "the gateway did not become ready on the new primary"
    );
}
