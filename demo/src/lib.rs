//! The demo (`cargo run --release -p demo`): the whole system on one machine with nothing
//! installed. It generates a dev PKI, starts a real gateway on an embedded SQLite database and
//! the provider sandbox on its own port, configures a Hangzhou-like metro line and a
//! Zhejiang-like expressway through the admin API, enrols riders through the rider API (each
//! with its own P-256 device key and a wallet bound through the provider's signing flow), drives
//! gates, toll booths and ticket machines over mutual TLS printing every decision, then settles
//! the day. It is its own crate so that the production gateway links neither the sandbox nor
//! settlement.
//!
//! # Layout
//! - this file: `run_in` tells the story one step a function: start the servers, configure the
//!   network, enrol riders, the scripted taps (metro, bad codes, toll, an offline gate, the deny
//!   list), the payment flows, free-running traffic, the summary and the settlement of the demo
//!   day. The steps share a `Demo` (the running gateway's state, the sandbox, the fleet of
//!   terminal clients, the riders and their wallets).
//! - [`payments`]: the sandbox-backed payment flows (wallets, deductions, booth pays, a ticket).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::sync::Mutex;
use turnpike_wire::api::{Decision, Direction, TapRequest, TapResponse, VehicleClass};

use gateway::config::Config;
use gateway::store::charging::ChargeStatus;
use turnpike_client::{AdminClient, RiderDevice, TerminalClient};

pub mod payments;

pub struct DemoOptions {
    pub duration_s: Option<u64>,
    pub dir: Option<PathBuf>,
    pub riders: usize,
}

pub use turnpike_client::demo::{
    demo_terminal_ids, demo_terminals, sanitize, METRO_OPERATOR, TICKET_MACHINE_PREFIX,
    TOLL_OPERATOR,
};

/// Terminal id → (client, location id, display name).
struct Fleet {
    terminals: HashMap<String, (TerminalClient, String)>,
    sequences: Mutex<HashMap<String, u64>>,
    stats: Mutex<Stats>,
}

#[derive(Default)]
struct Stats {
    latencies_us: Vec<u64>,
    approved: u64,
    declined: u64,
}

impl Fleet {
    async fn next_sequence(&self, terminal: &str) -> u64 {
        let mut seqs = self.sequences.lock().await;
        let s = seqs.entry(terminal.to_string()).or_insert(0);
        *s += 1;
        *s
    }

    fn client(&self, terminal: &str) -> anyhow::Result<&TerminalClient> {
        Ok(&self
            .terminals
            .get(terminal)
            .with_context(|| format!("no terminal {terminal}"))?
            .0)
    }

    /// One live tap: builds the request, sends it, records latency, prints the line.
    async fn tap(
        &self,
        terminal: &str,
        who: &str,
        direction: Direction,
        code: String,
        vehicle_class: Option<VehicleClass>,
        quiet: bool,
    ) -> anyhow::Result<TapResponse> {
        let sequence = self.next_sequence(terminal).await;
        let tap = TapRequest {
            sequence,
            direction,
            ride_code: code,
            scanned_at_ms: turnpike_client::now_ms() as u64,
            vehicle_class,
        };
        let started = Instant::now();
        let response = self.client(terminal)?.tap(&tap).await?;
        let mut stats = self.stats.lock().await;
        stats
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        match response.decision {
            Decision::Approve => stats.approved += 1,
            Decision::Decline => stats.declined += 1,
        }
        drop(stats);
        if !quiet {
            println!("{}", line(terminal, who, direction, &response));
        }
        Ok(response)
    }
}

fn line(terminal: &str, who: &str, direction: Direction, r: &TapResponse) -> String {
    let what = match r.decision {
        Decision::Approve => "APPROVE".to_string(),
        Decision::Decline => format!("DECLINE {}", r.reason.as_deref().unwrap_or("?")),
    };
    let fare = match (&r.fare, &r.charge) {
        (Some(f), Some(c)) if f != c => format!("  fare {f}, charged {c} (daily cap)"),
        (Some(f), _) => format!("  fare {f}"),
        _ => String::new(),
    };
    format!(
        "  {terminal:<28} {who:<10} {:<5} → {what}{fare}",
        direction.as_str()
    )
}

/// Runs the demo. Boxed where it is defined so its state machine is compiled once, here, and
/// not again in the binary (ARCHITECTURE.md, "Build").
pub fn run(options: DemoOptions) -> gateway::LocalBoxFuture<'static, anyhow::Result<()>> {
    Box::pin(run_demo(options))
}

async fn run_demo(options: DemoOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = options.duration_s.map(|s| started + Duration::from_secs(s));
    let temporary = options.dir.is_none();
    let dir = options.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "turnpike-demo-{}-{}",
            std::process::id(),
            turnpike_client::now_ms()
        ))
    });
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_in(&dir, options, deadline).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// The demo's story, step by step.
async fn run_in(dir: &Path, options: DemoOptions, deadline: Option<Instant>) -> anyhow::Result<()> {
    let temporary_dir = options.dir.is_none();
    println!("Turnpike demo — everything local: embedded SQLite, generated dev PKI, mutual TLS on loopback\n");
    let (provider, gateway) = start_servers(dir).await?;
    let admin = AdminClient::new(&gateway.public_base, &gateway.ca(), &gateway.admin_token)?;
    let terminals = configure_network(&admin, &gateway).await?;
    let (riders, wallets) = enrol_riders(&provider, &gateway, options.riders).await?;
    let d = Demo::new(dir, provider, &gateway, admin, terminals, riders, wallets);

    scripted_metro_taps(&d).await?;
    bad_codes(&d).await?;
    scripted_toll_taps(&d).await?;
    offline_gate(&d).await?;
    deny_listing(&d).await?;
    payments_section(&d).await?;
    free_traffic(&d, deadline).await?;
    wait_for_captures(&d).await?;

    print_summary(&d).await?;
    payments_summary(&d.state, &d.provider).await?;
    settle_demo_day(&d.state, &d.provider, dir, temporary_dir).await?;
    let journeys = d.riders[0].journeys(&d.public_base, &d.ca).await?;
    println!(
        "  rider-1 sees {} of their own journeys through the rider API",
        journeys.journeys.len()
    );
    gateway.stop().await?;
    d.provider.stop().await?;
    println!("\ndemo finished cleanly");
    Ok(())
}

/// The gateway, running in this process on the demo's database.
struct RunningGateway {
    state: gateway::AppState,
    certs: PathBuf,
    admin_token: String,
    terminal_base: String,
    public_base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningGateway {
    fn ca(&self) -> PathBuf {
        self.certs.join("ca.pem")
    }

    /// Stops accepting, drains and waits for the server to finish.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await?
    }
}

/// The dev PKI, the provider sandbox on its own port and database, and the gateway pointed at it.
async fn start_servers(dir: &Path) -> anyhow::Result<(payments::DemoProvider, RunningGateway)> {
    let certs = dir.join("certs");
    turnpike_client::certs::write_dev_pki(&certs, &demo_terminal_ids())?;
    let mut config = Config::default();
    config.listen.terminal = "127.0.0.1:0".parse()?;
    // The provider must know where to send notifications before the gateway starts: pick the
    // public port now.
    let public_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    config.listen.public = format!("127.0.0.1:{public_port}").parse()?;
    let (provider, provider_config) = payments::DemoProvider::start(
        dir,
        format!("https://localhost:{public_port}/v1/provider/notify"),
        &certs.join("ca.pem"),
    )
    .await?;
    println!(
        "payment provider (sandbox) up: {} — signed open API, own SQLite database",
        provider.base
    );
    config.provider = provider_config;
    demo_pace(&mut config);
    config.listen.ops = "127.0.0.1:0".parse()?;
    config.tls.dir = certs.clone();
    config.database.url = format!("sqlite://{}?mode=rwc", dir.join("turnpike.db").display()).into();
    let admin_token = hex::encode(gateway::random_bytes::<24>());
    let gateway = gateway::Gateway::build(config, &admin_token).await?;
    let terminal_base = format!("https://localhost:{}", gateway.terminal_addr().port());
    let public_base = format!("https://localhost:{}", gateway.public_addr().port());
    let ops_base = format!("http://{}", gateway.ops_addr());
    println!("gateway up: terminal API {terminal_base} (mTLS), rider/admin API {public_base}, metrics {ops_base}/metrics");
    println!(
        "rider app: {public_base}/app/ (a browser that trusts {}; docs/rider-app.md)",
        certs.join("ca.pem").display()
    );
    println!("database {}\n", dir.join("turnpike.db").display());
    let state = gateway.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gateway.run_until(async {
        let _ = stopped.await;
    }));
    let gateway = RunningGateway {
        state,
        certs,
        admin_token,
        terminal_base,
        public_base,
        stop,
        server,
    };
    Ok((provider, gateway))
}

/// Demo pace: retry declined deductions within seconds, give up after three.
fn demo_pace(config: &mut Config) {
    config.charging.capture_poll_ms = 200;
    config.charging.capture_backoff_ms = 300;
    config.charging.capture_backoff_max_ms = 1_000;
    config.charging.capture_attempts_max = 3;
    config.charging.toll_budget_ms = 8_000;
    config.charging.toll_query_interval_ms = 500;
    config.charging.ticket_query_after_ms = 5_000;
}

/// Operators, fare data and terminals, through the admin API; the terminals' mutual-TLS clients.
async fn configure_network(
    admin: &AdminClient,
    gateway: &RunningGateway,
) -> anyhow::Result<HashMap<String, (TerminalClient, String)>> {
    admin
        .post_ok("/v1/admin/operators", &serde_json::json!({"operator_id": METRO_OPERATOR, "name": "Hangzhou Metro (demo)", "mode": "metro"}))
        .await?;
    admin
        .post_ok(
            "/v1/admin/operators",
            &serde_json::json!({"operator_id": TOLL_OPERATOR, "name": "Zhejiang Expressway (demo)", "mode": "toll"}),
        )
        .await?;
    let put = |op: &str, format: &str| {
        let admin = admin.clone();
        let path = format!("/v1/admin/operators/{op}/fares");
        let body = serde_json::json!({ "format": format });
        async move { admin.send(reqwest::Method::PUT, &path, Some(&body)).await }
    };
    anyhow::ensure!(
        put(METRO_OPERATOR, "demo_metro").await?.status == 201,
        "loading metro fares"
    );
    anyhow::ensure!(
        put(TOLL_OPERATOR, "demo_toll").await?.status == 201,
        "loading toll rates"
    );
    let mut clients = HashMap::new();
    for (id, operator, location) in &demo_terminals() {
        admin
            .post_ok("/v1/admin/terminals", &serde_json::json!({"terminal_id": id, "operator_id": operator, "location_id": location}))
            .await?;
        let client = terminal_client(&gateway.terminal_base, &gateway.certs, id)?;
        clients.insert(id.clone(), (client, location.clone()));
    }
    let metro = turnpike_fares::demo_metro();
    let toll = turnpike_fares::demo_toll();
    println!(
        "configured {} metro stations ({} gates) and {} toll plazas ({} lanes) over the admin API",
        metro.stops().len(),
        metro.stops().len() * 2,
        toll.plazas().len(),
        toll.plazas().len() * 2
    );
    Ok(clients)
}

/// The mutual-TLS client of terminal `id`, with its dev certificate.
fn terminal_client(base: &str, certs: &Path, id: &str) -> anyhow::Result<TerminalClient> {
    TerminalClient::new(
        base,
        &certs.join("ca.pem"),
        &certs.join("terminals").join(format!("{id}.pem")),
        &certs.join("terminals").join(format!("{id}.key")),
    )
}

/// Riders enrol their phones (at least four: the scripted taps use four) and bind a wallet each.
async fn enrol_riders(
    provider: &payments::DemoProvider,
    gateway: &RunningGateway,
    riders_n: usize,
) -> anyhow::Result<(Vec<RiderDevice>, Vec<String>)> {
    let (public_base, ca) = (&gateway.public_base, gateway.ca());
    let mut riders = Vec::new();
    for _ in 0..riders_n.max(4) {
        riders.push(RiderDevice::enrol(public_base, &ca, &["metro", "toll"]).await?);
    }
    println!(
        "{} riders registered; each phone made a P-256 key and received a 7-day-max credential",
        riders.len()
    );
    let mut wallets = Vec::new();
    for rider in &riders {
        wallets.push(payments::bind_wallet(provider, rider, public_base, &ca, "1000.00").await?);
    }
    println!(
        "each rider bound a wallet (¥1000.00): the gateway started a signing for the rider, the wallet signed the provider's page (alipay.user.agreement.page.sign), and the gateway bound the agreement the provider confirmed for that rider's number; journeys are post-paid through it\n"
    );
    Ok((riders, wallets))
}

/// What the demo's steps work with once the servers are up and the riders enrolled.
struct Demo {
    state: gateway::AppState,
    provider: payments::DemoProvider,
    fleet: Arc<Fleet>,
    admin: AdminClient,
    riders: Arc<Vec<RiderDevice>>,
    wallets: Vec<String>,
    public_base: String,
    terminal_base: String,
    ca: PathBuf,
    certs: PathBuf,
    dir: PathBuf,
    stops: Vec<String>,
    plazas: Vec<String>,
}

impl Demo {
    fn new(
        dir: &Path,
        provider: payments::DemoProvider,
        gateway: &RunningGateway,
        admin: AdminClient,
        terminals: HashMap<String, (TerminalClient, String)>,
        riders: Vec<RiderDevice>,
        wallets: Vec<String>,
    ) -> Demo {
        let fleet = Arc::new(Fleet {
            terminals,
            sequences: Mutex::new(Default::default()),
            stats: Mutex::new(Stats::default()),
        });
        let metro = turnpike_fares::demo_metro();
        let toll = turnpike_fares::demo_toll();
        Demo {
            state: gateway.state.clone(),
            provider,
            fleet,
            admin,
            riders: Arc::new(riders),
            wallets,
            public_base: gateway.public_base.clone(),
            terminal_base: gateway.terminal_base.clone(),
            ca: gateway.ca(),
            certs: gateway.certs.clone(),
            dir: dir.to_path_buf(),
            stops: metro.stops().iter().map(|s| s.id.clone()).collect(),
            plazas: toll.plazas().iter().map(|p| p.id.clone()).collect(),
        }
    }

    /// A printed tap without a vehicle class (every tap but a toll exit).
    async fn tap(
        &self,
        terminal: &str,
        who: &str,
        direction: Direction,
        code: String,
    ) -> anyhow::Result<TapResponse> {
        self.fleet
            .tap(terminal, who, direction, code, None, false)
            .await
    }

    /// A printed tap at gate `n` of the demo line's station number `stop`.
    async fn gate_tap(
        &self,
        stop: usize,
        n: u8,
        who: &str,
        direction: Direction,
        code: String,
    ) -> anyhow::Result<TapResponse> {
        self.tap(&gate(&self.stops[stop], n), who, direction, code)
            .await
    }
}

fn now() -> u64 {
    turnpike_client::now_ms() as u64
}

/// The id of gate `n` (1 or 2) of a metro station.
fn gate(stop: &str, n: u8) -> String {
    format!("gate-{}-{n}", sanitize(stop))
}

/// The id of a toll plaza's booth, `"in"` or `"out"`.
fn booth(plaza: &str, dir: &str) -> String {
    format!("booth-{}-{dir}", sanitize(plaza))
}

/// Replay, pass-back and a same-station turn-back.
async fn scripted_metro_taps(d: &Demo) -> anyhow::Result<()> {
    println!("— a metro journey, then the same exit code shown again (replay)");
    let r0 = &d.riders[0];
    d.gate_tap(0, 1, "rider-1", Direction::Entry, r0.ride_code(now())?)
        .await?;
    let exit_code = r0.ride_code(now())?;
    d.gate_tap(9, 1, "rider-1", Direction::Exit, exit_code.clone())
        .await?;
    d.gate_tap(9, 2, "rider-1", Direction::Exit, exit_code)
        .await?;

    println!("— pass-back: a second entry without an exit");
    let r1 = &d.riders[1];
    d.gate_tap(3, 1, "rider-2", Direction::Entry, r1.ride_code(now())?)
        .await?;
    d.gate_tap(3, 2, "rider-2", Direction::Entry, r1.ride_code(now())?)
        .await?;
    println!("— rider-2 leaves; then enters again and turns back at the same gate line with the entry code still on screen\n  (one code may serve one entry and one exit; a same-station exit within the window costs the minimum fare)");
    let shown = r1.ride_code(now())?;
    d.gate_tap(5, 1, "rider-2", Direction::Exit, r1.ride_code(now())?)
        .await?;
    d.gate_tap(5, 1, "rider-2", Direction::Entry, shown.clone())
        .await?;
    d.gate_tap(5, 2, "rider-2", Direction::Exit, shown).await?;
    Ok(())
}

/// A forged code (one bit flipped) and an expired one.
async fn bad_codes(d: &Demo) -> anyhow::Result<()> {
    let rider = &d.riders[2];
    println!("— a forged code (one bit flipped) and an expired one");
    let mut forged = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        rider.ride_code(now())?,
    )?;
    forged[150] ^= 0x01;
    let forged = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, forged);
    d.gate_tap(1, 1, "rider-3", Direction::Entry, forged)
        .await?;
    let expired = rider.ride_code(now() - 10 * 60 * 1000)?;
    d.gate_tap(1, 1, "rider-3", Direction::Entry, expired)
        .await?;
    Ok(())
}

/// Two drives along the expressway, a truck and a car, priced by class and distance.
async fn scripted_toll_taps(d: &Demo) -> anyhow::Result<()> {
    let (riders, plazas, fleet) = (&d.riders, &d.plazas, &d.fleet);
    println!(
        "— toll: enter at {}, exit at {} as a 3-axle truck (t3) and as a car (p1)",
        plazas[0],
        plazas[plazas.len() - 1]
    );
    let code = riders[3].ride_code(now())?;
    d.tap(&booth(&plazas[0], "in"), "driver-1", Direction::Entry, code)
        .await?;
    let (exit, code) = (
        booth(&plazas[plazas.len() - 1], "out"),
        riders[3].ride_code(now())?,
    );
    let class = Some(VehicleClass::T3);
    fleet
        .tap(&exit, "driver-1", Direction::Exit, code, class, false)
        .await?;
    let code = riders[0].ride_code(now())?;
    d.tap(&booth(&plazas[1], "in"), "driver-2", Direction::Entry, code)
        .await?;
    let (exit, code) = (
        booth(&plazas[plazas.len() - 2], "out"),
        riders[0].ride_code(now())?,
    );
    let class = Some(VehicleClass::P1);
    fleet
        .tap(&exit, "driver-2", Direction::Exit, code, class, false)
        .await?;
    Ok(())
}

/// An offline gate buffers taps and uploads them as one batch, twice, with the same answers.
async fn offline_gate(d: &Demo) -> anyhow::Result<()> {
    let (riders, fleet) = (&d.riders, &d.fleet);
    println!("— an offline gate buffers four taps and uploads them when its link returns (twice: same answers)");
    let offline_gate = gate(&d.stops[2], 2);
    let mut buffered = Vec::new();
    let buffer = |sequence: u64, direction: Direction, rider: &RiderDevice| {
        anyhow::Ok(TapRequest {
            sequence,
            direction,
            ride_code: rider.ride_code(now())?,
            scanned_at_ms: now(),
            vehicle_class: None,
        })
    };
    for rider in [&riders[2], &riders[3]] {
        let seq = fleet.next_sequence(&offline_gate).await;
        buffered.push(buffer(seq, Direction::Entry, rider)?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for rider in [&riders[2], &riders[3]] {
        let seq = fleet.next_sequence(&offline_gate).await;
        buffered.push(buffer(seq, Direction::Exit, rider)?);
    }
    let client = fleet.client(&offline_gate)?;
    let first = client.batch(buffered.clone()).await?;
    let again = client.batch(buffered).await?;
    for r in &first.results {
        println!(
            "{}",
            line(&offline_gate, "offline", Direction::Entry, r).replace("entry", "batch")
        );
    }
    println!(
        "  re-upload identical: {}",
        serde_json::to_string(&first.results)? == serde_json::to_string(&again.results)?
    );
    Ok(())
}

/// The admin deny-lists a rider, whose next entry is refused; then lifts the listing.
async fn deny_listing(d: &Demo) -> anyhow::Result<()> {
    let rider = &d.riders[3];
    println!("— the admin deny-lists rider-4; their next entry is refused");
    d.admin
        .post_ok("/v1/admin/deny-list", &serde_json::json!({"kind": "rider", "subject_id": rider.rider_id, "reason": "demo: unpaid fare"}))
        .await?;
    let code = rider.ride_code(now())?;
    d.tap(&gate(&d.stops[4], 1), "rider-4", Direction::Entry, code)
        .await?;
    let _ = d
        .admin
        .send::<()>(
            reqwest::Method::DELETE,
            &format!("/v1/admin/deny-list/rider/{}", rider.rider_id),
            None,
        )
        .await?;
    Ok(())
}

/// How often, below what, and up to what the free-running riders' wallets are refilled.
const REFILL_EVERY: Duration = Duration::from_secs(2);
const REFILL_BELOW_FEN: i64 = 30_000;
const REFILL_TO_FEN: i64 = 100_000;

/// Free-running traffic: every rider travels between random stations until the deadline (or
/// Ctrl-C), printing each journey's fare.
async fn free_traffic(d: &Demo, deadline: Option<Instant>) -> anyhow::Result<()> {
    println!(
        "\n— riders travel between random stations until {}",
        match deadline {
            Some(_) => "the --duration ends".to_string(),
            None => "Ctrl-C".to_string(),
        }
    );
    let stop_flag = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..d.riders.len() {
        let (fleet, riders) = (d.fleet.clone(), d.riders.clone());
        let (stops, stop_flag) = (d.stops.clone(), stop_flag.clone());
        tasks.spawn(async move {
            while !stop_flag.load(Ordering::Relaxed) {
                random_journey(&fleet, &riders[index], index, &stops).await?;
            }
            anyhow::Ok(())
        });
    }
    // The riders travel far more often than people do; their wallets refill from the bank card
    // as a real wallet's would, so a demo left running is a long day, not a night of arrears.
    let refill = async {
        loop {
            tokio::time::sleep(REFILL_EVERY).await;
            for (index, wallet) in d.wallets.iter().enumerate() {
                let balance = d.provider.balance(wallet).await?;
                let fen = gateway::provider::parse_yuan(&balance).unwrap_or(i64::MAX);
                if fen < REFILL_BELOW_FEN {
                    d.provider
                        .post(
                            &format!("/sandbox/users/{wallet}/top-up"),
                            serde_json::json!({ "amount_fen": REFILL_TO_FEN - fen }),
                        )
                        .await?;
                    println!(
                        "  rider-{}'s wallet refilled from ¥{balance} to ¥{} (from the bank card)",
                        index + 1,
                        gateway::provider::yuan(REFILL_TO_FEN)
                    );
                }
            }
        }
        #[allow(unreachable_code)]
        anyhow::Ok(())
    };
    let until_stopped = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::select! {
        _ = until_stopped => {}
        refilled = refill => refilled?,
    }
    stop_flag.store(true, Ordering::Relaxed);
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    Ok(())
}

/// Most the demo waits for the capture worker to deduct the last journeys' fares before it
/// settles the day.
const CAPTURE_WAIT: Duration = Duration::from_secs(15);

/// Waits until the capture worker has deducted every fare still pending (the last journeys of
/// the free traffic close moments before the summary); a settlement run before that reports
/// their exits as exceptions (the operator's export has them, the gateway's ledger not yet).
async fn wait_for_captures(d: &Demo) -> anyhow::Result<()> {
    let deadline = Instant::now() + CAPTURE_WAIT;
    loop {
        let pending = d
            .state
            .store
            .charges(
                None,
                Some(gateway::store::charging::ChargeStatus::Pending),
                1_000,
            )
            .await?
            .into_iter()
            // Arrears (a declined deduction waiting for a top-up) stay pending on purpose.
            .filter(|c| c.attempt == 1)
            .count();
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            println!("  {pending} fares still pending after {CAPTURE_WAIT:?}; settling anyway");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One journey of rider `index` between two random stations (taps not printed; the fare is).
async fn random_journey(
    fleet: &Fleet,
    rider: &RiderDevice,
    index: usize,
    stops: &[String],
) -> anyhow::Result<()> {
    let (from, to, pause) = {
        let mut rng = rand::thread_rng();
        let from = stops.choose(&mut rng).cloned().unwrap_or_default();
        let to = stops.choose(&mut rng).cloned().unwrap_or_default();
        (from, to, rng.gen_range(50..400))
    };
    let who = format!("rider-{}", index + 1);
    let code = rider.ride_code(turnpike_client::now_ms() as u64)?;
    let entry = fleet
        .tap(&gate(&from, 1), &who, Direction::Entry, code, None, true)
        .await?;
    tokio::time::sleep(Duration::from_millis(pause)).await;
    let code = rider.ride_code(turnpike_client::now_ms() as u64)?;
    let exit = fleet
        .tap(&gate(&to, 2), &who, Direction::Exit, code, None, true)
        .await?;
    if entry.decision == Decision::Approve {
        let fare = exit
            .fare
            .map(|f| f.to_string())
            .unwrap_or_else(|| exit.reason.clone().unwrap_or_default());
        println!("  {who:<10} {from} → {to}: {fare}");
    }
    Ok(())
}

/// Live taps and their round trips, then what the database recorded: taps and journeys.
async fn print_summary(d: &Demo) -> anyhow::Result<()> {
    println!("\nSummary");
    let stats = d.fleet.stats.lock().await;
    let mut lat = stats.latencies_us.clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "  live taps: {} ({} approved, {} declined); round trip over mTLS p50 {:.2} ms, p99 {:.2} ms",
        lat.len(),
        stats.approved,
        stats.declined,
        pct(0.5),
        pct(0.99)
    );
    drop(stats);
    for (decision, reason, count) in d.state.store.tap_counts().await? {
        println!(
            "  taps recorded: {decision:<8} {:<24} {count}",
            reason.unwrap_or_default()
        );
    }
    let cny = |minor| turnpike_wire::Money::from_minor(minor, turnpike_wire::Currency::CNY);
    for t in d.state.store.journey_totals().await? {
        println!(
            "  journeys {:<14} {:<7} {:>5}  fares {:>10} CNY  charged {:>10} CNY",
            t.operator_id,
            t.status,
            t.journeys,
            cny(t.fares_minor).amount(),
            cny(t.charges_minor).amount()
        );
    }
    Ok(())
}

/// Waits (up to `timeout`) until `check` holds.
async fn wait_for<F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if check().await? {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

async fn rider_charges(
    state: &gateway::AppState,
    rider: &RiderDevice,
) -> anyhow::Result<Vec<gateway::store::charging::ChargeRow>> {
    let id: i64 = rider.rider_id.parse()?;
    Ok(state.store.charges(Some(id), None, 100).await?)
}

/// The three payment flows, scripted: metro post-pay (and a failed deduction that deny-lists a
/// rider until repaid), toll exits paid at the booth (one needing the driver's confirmation,
/// one declined), a refund, and a ticket bought by QR.
async fn payments_section(d: &Demo) -> anyhow::Result<()> {
    metro_post_pay(d).await?;
    arrears(d).await?;
    let (car, car_wallet) = toll_paid_at_the_booth(d).await?;
    refund(d, &car, &car_wallet).await?;
    ticket_by_qr(d).await
}

/// Flow A: rider-1's journeys are deducted through the withholding agreement.
async fn metro_post_pay(d: &Demo) -> anyhow::Result<()> {
    println!("\n— flow A, metro post-pay: rider-1's journeys are deducted through the withholding agreement");
    let r1 = &d.riders[0];
    wait_for(Duration::from_secs(10), || async {
        Ok(rider_charges(&d.state, r1)
            .await?
            .iter()
            .all(|c| c.status == ChargeStatus::Captured))
    })
    .await?;
    for c in rider_charges(&d.state, r1).await? {
        println!(
            "  charge {:<24} {:>8}  {:<9} provider trade {}",
            c.out_trade_no,
            payments::yuan(c.amount_minor),
            c.status,
            c.provider_trade_no.as_deref().unwrap_or("-")
        );
    }
    println!(
        "  rider-1's wallet now holds ¥{}",
        d.provider.balance(&d.wallets[0]).await?
    );
    Ok(())
}

/// A deduction that fails, so the rider is deny-listed for arrears; they top up, ask for a retry,
/// and the listing lifts by itself once the arrears are paid.
async fn arrears(d: &Demo) -> anyhow::Result<()> {
    println!("— a deduction that fails: rider-broke's wallet holds ¥0.50, less than the fare");
    let broke = RiderDevice::enrol(&d.public_base, &d.ca, &["metro", "toll"]).await?;
    let broke_wallet =
        payments::bind_wallet(&d.provider, &broke, &d.public_base, &d.ca, "0.50").await?;
    let (from, to) = (&d.stops[0], &d.stops[12]);
    let who = "rider-broke";
    d.tap(
        &gate(from, 1),
        who,
        Direction::Entry,
        broke.ride_code(now())?,
    )
    .await?;
    d.tap(&gate(to, 1), who, Direction::Exit, broke.ride_code(now())?)
        .await?;
    let failed = wait_for(Duration::from_secs(15), || async {
        Ok(rider_charges(&d.state, &broke)
            .await?
            .iter()
            .any(|c| c.status == ChargeStatus::Failed))
    })
    .await?;
    for c in rider_charges(&d.state, &broke).await? {
        println!(
            "  charge {:>8} after {} attempts: {} ({})",
            payments::yuan(c.amount_minor),
            c.attempt,
            c.status,
            c.last_error.as_deref().unwrap_or("-")
        );
    }
    anyhow::ensure!(failed, "the deduction was expected to fail");
    println!("  rider-broke is deny-listed for arrears; gates learn it from the deny-list feed");
    tokio::time::sleep(Duration::from_millis(1_200)).await; // one registry refresh
    d.tap(
        &gate(from, 2),
        who,
        Direction::Entry,
        broke.ride_code(now())?,
    )
    .await?;
    repay_arrears(d, &broke, &broke_wallet).await?;
    println!("  arrears repaid; the deny-listing lifts by itself");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    d.tap(
        &gate(from, 2),
        who,
        Direction::Entry,
        broke.ride_code(now())?,
    )
    .await?;
    d.tap(
        &gate(from, 1),
        who,
        Direction::Exit,
        broke.ride_code(now())?,
    )
    .await?;
    Ok(())
}

/// The broke rider tops their wallet up and asks the gateway to retry; waits for the capture.
async fn repay_arrears(d: &Demo, broke: &RiderDevice, broke_wallet: &str) -> anyhow::Result<()> {
    d.provider
        .post(
            &format!("/sandbox/users/{broke_wallet}/top-up"),
            serde_json::json!({"amount_fen": 5_000}),
        )
        .await?;
    let http = turnpike_client::tls::http_client(&d.ca, None)?;
    http.post(format!("{}/v1/riders/me/arrears/retry", d.public_base))
        .bearer_auth(&broke.token)
        .send()
        .await?
        .error_for_status()?;
    println!("  rider-broke tops up ¥50.00 and asks for a retry");
    let repaid = wait_for(Duration::from_secs(10), || async {
        Ok(rider_charges(&d.state, broke)
            .await?
            .iter()
            .all(|c| c.status == ChargeStatus::Captured))
    })
    .await?;
    anyhow::ensure!(repaid, "the repayment was expected to succeed");
    Ok(())
}

/// Flow B: toll exits paid at the booth with the wallet's payment code — a car (and the booth
/// repeating its request), a truck whose toll needs the driver's confirmation, and a driver whose
/// wallet cannot pay. Returns the car's answer and wallet, for the refund.
async fn toll_paid_at_the_booth(d: &Demo) -> anyhow::Result<(TapResponse, String)> {
    println!("— flow B, toll paid at the booth with the wallet's payment code (budget 8 s: pay → query → cancel)");
    let exit_booth_id = booth(&d.plazas[d.plazas.len() - 1], "out");
    let exit_booth = terminal_client(&d.terminal_base, &d.certs, &exit_booth_id)?;
    let exit_id = exit_booth_id.as_str();
    let (car_wallet, car_exit) =
        drive(d, &exit_booth_id, "car-1", VehicleClass::P1, "500.00", None).await?;
    let code = d.provider.payment_code(&car_wallet).await?;
    let car = payments::booth_exit(&exit_booth, exit_id, "car-1", &car_exit, &code).await?;
    let again = exit_booth.toll_exit_raw(&car_exit, &code).await?;
    println!(
        "  the booth repeats the same request: same answer, charged once ({})",
        serde_json::to_vec(&car)? == again.body
    );

    println!("  a 3-axle truck's toll needs the driver's confirmation in the wallet:");
    let (truck_wallet, truck_exit) = drive(
        d,
        &exit_booth_id,
        "truck-1",
        VehicleClass::T3,
        "2000.00",
        Some("50.00"),
    )
    .await?;
    let code = d.provider.payment_code(&truck_wallet).await?;
    let confirm = tokio::spawn(payments::confirm_in_wallet_after(
        d.state.clone(),
        d.provider.base.clone(),
        Duration::from_millis(1_500),
    ));
    payments::booth_exit(&exit_booth, exit_id, "truck-1", &truck_exit, &code).await?;
    confirm.await??;

    println!("  a driver whose wallet cannot pay, then pays with another wallet:");
    let (poor_wallet, poor_exit) =
        drive(d, &exit_booth_id, "car-2", VehicleClass::P1, "1.00", None).await?;
    let code = d.provider.payment_code(&poor_wallet).await?;
    payments::booth_exit(&exit_booth, exit_id, "car-2", &poor_exit, &code).await?;
    let other_wallet = d.provider.wallet("300.00", None).await?;
    let code = d.provider.payment_code(&other_wallet).await?;
    let seq = d.fleet.next_sequence(&exit_booth_id).await;
    let retry = TapRequest {
        sequence: seq,
        ..poor_exit.clone()
    };
    payments::booth_exit(&exit_booth, exit_id, "car-2", &retry, &code).await?;
    Ok((car, car_wallet))
}

/// A driver enrols and gets a wallet holding `balance` (payments above `confirm` wait for the
/// driver), enters at the first plaza and drives to the exit booth; returns the wallet and the
/// exit tap the booth will send.
async fn drive(
    d: &Demo,
    exit_booth_id: &str,
    who: &str,
    class: VehicleClass,
    balance: &str,
    confirm: Option<&str>,
) -> anyhow::Result<(String, TapRequest)> {
    let driver = RiderDevice::enrol(&d.public_base, &d.ca, &["toll"]).await?;
    let wallet = d.provider.wallet(balance, confirm).await?;
    d.tap(
        &booth(&d.plazas[0], "in"),
        who,
        Direction::Entry,
        driver.ride_code(now())?,
    )
    .await?;
    let seq = d.fleet.next_sequence(exit_booth_id).await;
    let tap = payments::toll_exit(seq, driver.ride_code(now())?, class);
    Ok((wallet, tap))
}

/// The operator refunds ¥1.00 of car-1's toll, sending the request twice: refunded once.
async fn refund(d: &Demo, car: &TapResponse, car_wallet: &str) -> anyhow::Result<()> {
    println!("— a refund: the operator refunds ¥1.00 of car-1's toll (sent twice, refunded once)");
    let car_charge = d
        .state
        .store
        .charges(None, Some(ChargeStatus::Captured), 1000)
        .await?
        .into_iter()
        .find(|c| c.journey_id.map(|j| j.to_string()) == car.journey_id)
        .context("car-1's toll charge")?;
    for _ in 0..2 {
        let a = d
            .admin
            .post(
                "/v1/admin/refunds",
                &serde_json::json!({"charge_id": car_charge.charge_id.to_string(), "amount_minor": 100,
                                    "reason": "demo: lane camera misread the class", "request_id": "demo-refund-1"}),
            )
            .await?;
        let r: serde_json::Value = a.json()?;
        println!(
            "  refund {} {}: {}",
            r["out_request_no"].as_str().unwrap_or("?"),
            payments::yuan(r["amount_minor"].as_i64().unwrap_or(0)),
            r["status"].as_str().unwrap_or("?")
        );
    }
    println!(
        "  car-1's wallet: ¥{} (¥500.00 − toll + ¥1.00)",
        d.provider.balance(car_wallet).await?
    );
    Ok(())
}

/// Flow C: a ticket bought at a ticket machine: the provider pre-creates the order, the wallet
/// scans the QR and pays, the provider notifies the gateway, the machine shows the ticket.
async fn ticket_by_qr(d: &Demo) -> anyhow::Result<()> {
    println!("— flow C, a ticket bought at a ticket machine: the provider pre-creates the order, the wallet scans the QR");
    let tvm_id = format!("{TICKET_MACHINE_PREFIX}{}", sanitize(&d.stops[0]));
    let tvm = terminal_client(&d.terminal_base, &d.certs, &tvm_id)?;
    let order = ticket_order(d, &tvm, &tvm_id).await?;
    let order_id = order["order_id"].as_str().context("order_id")?.to_string();
    let buyer = d.provider.wallet("50.00", None).await?;
    d.provider
        .post(
            "/sandbox/qr/pay",
            serde_json::json!({"qr_code": order["qr_payload"], "user_id": buyer}),
        )
        .await?;
    println!("  the rider's wallet scans and pays; the provider notifies the gateway (signed)");
    let mut paid = serde_json::Value::Null;
    for _ in 0..100 {
        paid = tvm
            .get(&format!("/v1/tickets/orders/{order_id}"))
            .await?
            .json()?;
        if paid["status"] == "paid" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  {tvm_id:<28} order {order_id}: {} — ticket {}",
        paid["status"].as_str().unwrap_or("?"),
        paid["ticket_code"].as_str().unwrap_or("-")
    );
    Ok(())
}

/// The ticket machine orders a ticket to station 10 and saves the order's QR (SVG and PNG).
async fn ticket_order(
    d: &Demo,
    tvm: &TerminalClient,
    tvm_id: &str,
) -> anyhow::Result<serde_json::Value> {
    let a = tvm
        .post_bytes(
            "/v1/tickets/orders",
            "application/json",
            serde_json::to_vec(
                &serde_json::json!({"destination_id": d.stops[10], "request_id": "demo-ticket-1"}),
            )?,
        )
        .await?;
    anyhow::ensure!(
        a.status == 201,
        "ticket order: {} {}",
        a.status,
        String::from_utf8_lossy(&a.body)
    );
    let order: serde_json::Value = a.json()?;
    let order_id = order["order_id"].as_str().context("order_id")?.to_string();
    let qr_dir = payments::qr_dir(&d.dir);
    std::fs::create_dir_all(&qr_dir)?;
    for ext in ["svg", "png"] {
        let image = tvm
            .get(&format!("/v1/tickets/orders/{order_id}/qr.{ext}"))
            .await?;
        anyhow::ensure!(image.status == 200, "QR {ext}: {}", image.status);
        std::fs::write(qr_dir.join(format!("ticket-{order_id}.{ext}")), &image.body)?;
    }
    println!(
        "  {tvm_id:<28} order {order_id}: {} → {}, {} {}; QR {} (saved as SVG and PNG in {})",
        d.stops[0],
        d.stops[10],
        order["amount"]["amount"].as_str().unwrap_or("?"),
        order["amount"]["currency"].as_str().unwrap_or(""),
        order["qr_payload"].as_str().unwrap_or("?"),
        qr_dir.display()
    );
    Ok(order)
}

/// Money at the end: charges by kind and status, the journal, and the provider's trades checked
/// against the ledger's captures.
async fn payments_summary(
    state: &gateway::AppState,
    provider: &payments::DemoProvider,
) -> anyhow::Result<()> {
    let _ = provider;
    let charges = state.store.charges(None, None, 100_000).await?;
    let mut by: std::collections::BTreeMap<(&str, &str), (usize, i64)> = Default::default();
    for c in &charges {
        let e = by.entry((c.kind.as_str(), c.status.as_str())).or_default();
        e.0 += 1;
        e.1 += c.amount_minor;
    }
    for ((kind, status), (n, total)) in by {
        println!(
            "  charges {kind:<7} {status:<10} {n:>5}  {:>12}",
            payments::yuan(total)
        );
    }
    let ledger = state.store.ledger_transactions().await?;
    let unbalanced = state.store.unbalanced_transactions().await?;
    println!(
        "  journal: {} transactions, {} unbalanced",
        ledger.len(),
        unbalanced
    );
    for b in state.store.ledger_balances().await? {
        println!(
            "    {:<18} {:<22} debit {:>12}  credit {:>12}",
            b.account,
            b.party,
            payments::yuan(b.debit_minor),
            payments::yuan(b.credit_minor)
        );
    }
    Ok(())
}

/// The nightly settlement of the demo day: the provider's bill (downloaded from the sandbox, in
/// GBK like the real one), each operator's export, and the gateway's ledger, reconciled and
/// stored with a statement per operator; then where to review it.
async fn settle_demo_day(
    state: &gateway::AppState,
    provider: &payments::DemoProvider,
    dir: &std::path::Path,
    temporary_dir: bool,
) -> anyhow::Result<()> {
    let day = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Shanghai")?)
        .date();
    println!("\nSettlement of {day} (three-way: gateway ledger, provider bill, operator exports)");
    let inputs = dir.join("settlement-inputs");
    std::fs::create_dir_all(&inputs)?;
    let bill = reqwest::get(format!(
        "{}/sandbox/bills/{}/{day}.csv?charset=GBK",
        provider.base,
        payments::APP_ID
    ))
    .await?
    .error_for_status()?
    .bytes()
    .await?;
    let bill_path = inputs.join(format!("provider-bill-{day}.csv"));
    std::fs::write(&bill_path, &bill)?;
    let charges = state.store.charges(None, None, 100_000).await?;
    let mut exports = Vec::new();
    for op in [METRO_OPERATOR, TOLL_OPERATOR] {
        let path = inputs.join(format!("{op}.csv"));
        std::fs::write(&path, payments::operator_export(&charges, op))?;
        exports.push((op.to_string(), path));
    }
    let store = settlement::store::Store::connect(state.config.database.url.expose(), 2).await?;
    let config = settlement::run::RunConfig {
        business_day: day,
        operator: None,
        gateway: settlement::run::GatewayInput::Database,
        provider_bills: vec![bill_path],
        operator_exports: exports,
        work_dir: dir.join("settlement-work"),
        out_dir: Some(dir.join("settlement-out")),
        operator_days: Vec::new(),
    };
    let report = settlement::run::run_day(&store, settlement::engine(), &config).await?;
    for op in &report.outcome.operators {
        let figure =
            |name: &str| payments::yuan(op.figure(name).map(|f| f.amount_minor).unwrap_or(0));
        let matched: u64 = op
            .class_counts
            .iter()
            .filter(|(c, _)| c == "matched")
            .map(|(_, n)| *n)
            .sum();
        println!(
            "  {:<14} gross {:>12}  refunds {:>10}  provider fees {:>8}  net payable {:>12}  matched {matched}, exceptions {}, journal balanced ({})",
            op.operator_id,
            figure("gross"),
            figure("refunds"),
            figure("provider_fees"),
            figure("net_payable"),
            op.exceptions.len(),
            op.journal_imbalance_minor() == 0
        );
        for e in op.exceptions.iter().take(3) {
            println!(
                "    exception {:<20} {:<28} {}",
                e.class, e.reference, e.detail
            );
        }
    }
    println!(
        "  statements, exceptions and payout files stored with run {} (and written to {})",
        report.run_id,
        dir.join("settlement-out").display()
    );
    store.close().await;
    let db = state.config.database.url.expose();
    if temporary_dir {
        println!("  to review it in the finance UI, run the demo with --dir DIR, then:");
    } else {
        println!("  review it in the finance UI:");
    }
    println!("    echo 'a long passphrase' | cargo run --release -p settlement -- --database '{db}' user add --name finance");
    println!("    cargo run --release -p settlement -- --database '{db}' serve --listen 127.0.0.1:8095 --nightly-at off");
    println!("    then open http://127.0.0.1:8095/ and log in as finance");
    Ok(())
}
