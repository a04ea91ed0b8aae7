//! Settlement reconciliation benchmark: a day of journeys as the three input files, reconciled
//! by Turnpike and, as the baseline, by DuckDB doing the same classification in SQL on the same
//! files.
//!
//! `cargo bench -p benches --bench settlement_recon` (10 million journeys; set
//! `SETTLEMENT_BENCH_ROWS` to shrink it). Steps:
//! 1. Generate `target/bench-data/settlement-<rows>/` (gateway export, provider bill in UTF-8,
//!    two operator exports) with realistic discrepancies: ~0.1 % missing at each side, ~0.1 %
//!    amount mismatches, duplicates on each side, double charges, late items from the previous
//!    day, refunds, reversals and a few fee differences. Reused while the generator is unchanged.
//! 2. Reconcile in a child process of this binary (so generation does not inflate the peak RSS),
//!    timed around `settlement::reconcile`, peak RSS from `/proc/self/status` `VmHWM`.
//! 3. Install DuckDB (pinned) into `target/duckdb-venv` and run the same classification with
//!    `SET threads=2`, timed in Python around reading the CSVs and classifying.
//! 4. Time the whole `settlement run` (the release program, as a finance team runs it: read the
//!    three inputs, reconcile, store every result, write the operator files with `--out`) into
//!    a fresh PostgreSQL database and a fresh SQLite file: wall, CPU and peak RSS by
//!    `/usr/bin/time`, the whole machine's CPU from /proc/stat. On PostgreSQL it alternates with
//!    DuckDB's query, twice; `run_s` is the best PostgreSQL run's wall time and
//!    `speedup_vs_duckdb` is DuckDB's best time ÷ `run_s`. Then every review page of that day
//!    over HTTP.
//! 5. Fail loudly if the class counts differ; write `target/bench-results/settlement_recon.json`.
//!
//! The bill is UTF-8 because DuckDB reads GBK only through an extension it would download;
//! Turnpike's GBK path is the same code with another byte pattern for 交易/退款.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};

const DUCKDB_VERSION: &str = "1.4.4";
/// Bumped whenever the generated files change, so stale data is regenerated.
const GENERATOR_VERSION: u32 = 1;
const DAY: &str = "2026-01-02";
/// 2026-01-02T00:00:00+08:00 in UTC Unix milliseconds.
const DAY_START_MS: i64 = 1_767_283_200_000;
const DAY_MS: i64 = 86_400_000;
const TOLERANCE_MINOR: i64 = 0;

fn target_dir() -> PathBuf {
    // The bench executable lives in <target>/release/deps/.
    std::env::current_exe()
        .expect("current exe")
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn main() {
    if std::env::var_os("SETTLEMENT_BENCH_CHILD").is_some() {
        let dir = PathBuf::from(std::env::args().nth(1).expect("data dir"));
        child(&dir);
        return;
    }
    // `cargo bench` passes `--bench`; a filter that is not ours means "not this bench".
    if let Some(filter) = std::env::args().skip(1).find(|a| !a.starts_with('-')) {
        if !"settlement_recon".contains(&filter) {
            return;
        }
    }
    let rows: u64 = std::env::var("SETTLEMENT_BENCH_ROWS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(10_000_000);
    let target = target_dir();
    let dir = target.join("bench-data").join(format!("settlement-{rows}"));
    let started = Instant::now();
    let generated = generate(&dir, rows);
    println!(
        "data: {} ({:.1} s{})",
        dir.display(),
        started.elapsed().as_secs_f64(),
        if generated { "" } else { ", reused" }
    );

    // Turnpike, in a child process.
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .env("SETTLEMENT_BENCH_CHILD", "1")
        .arg(&dir)
        .output()
        .expect("running the reconciliation child");
    if !out.status.success() {
        panic!(
            "turnpike reconciliation failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tp: Value = serde_json::from_slice(&out.stdout).expect("child JSON");
    println!(
        "turnpike: {:.3} s, peak RSS {} MiB",
        tp["turnpike_s"].as_f64().unwrap_or(0.0),
        tp["peak_rss_mib"]
    );

    // The whole `settlement run` as a finance team runs it: inputs to stored results and the
    // operator files, on PostgreSQL and on SQLite.
    let settlement_bin = build_settlement(&target);
    let python = install_duckdb(&target);
    let script = dir.join("duckdb_recon.py");
    std::fs::write(&script, DUCKDB_SCRIPT).expect("writing the DuckDB script");
    let duckdb = || {
        let out = Command::new(&python)
            .arg(&script)
            .arg(&dir)
            .arg(DAY)
            .arg(TOLERANCE_MINOR.to_string())
            .output()
            .expect("running DuckDB");
        if !out.status.success() {
            panic!(
                "DuckDB run failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let dk: Value = serde_json::from_slice(&out.stdout).expect("DuckDB JSON");
        println!("duckdb:   {:.3} s", dk["duckdb_s"].as_f64().unwrap_or(0.0));
        dk
    };
    // Turnpike's run and DuckDB's query alternate, twice (each run into a fresh database), so
    // both meet the same moments of a shared, noisy machine; each side's best counts. The UI is
    // timed on the second run's day.
    let (first_pg, first_database) = run_settlement(&settlement_bin, &dir, "postgres");
    drop_database(&first_database);
    let mut duckdb_runs = vec![duckdb()];
    let (second_pg, pg_database) = run_settlement(&settlement_bin, &dir, "postgres");
    duckdb_runs.push(duckdb());
    // The review UI on that day: each page as a finance user opens it, over HTTP.
    let pages = time_pages(&settlement_bin, &pg_database);
    drop_database(&pg_database);
    let run_pg_walls = [first_pg["wall_s"].clone(), second_pg["wall_s"].clone()];
    let run_pg = if first_pg["wall_s"].as_f64() < second_pg["wall_s"].as_f64() {
        first_pg
    } else {
        second_pg
    };
    let (run_sqlite, _) = run_settlement(&settlement_bin, &dir, "sqlite");

    let duckdb_walls: Vec<f64> = duckdb_runs
        .iter()
        .map(|d| d["duckdb_s"].as_f64().expect("duckdb_s"))
        .collect();
    let dk = duckdb_runs
        .into_iter()
        .min_by(|a, b| {
            a["duckdb_s"]
                .as_f64()
                .unwrap_or(f64::MAX)
                .total_cmp(&b["duckdb_s"].as_f64().unwrap_or(f64::MAX))
        })
        .expect("two DuckDB runs");

    let turnpike_s = tp["turnpike_s"].as_f64().expect("turnpike_s");
    let duckdb_s = dk["duckdb_s"].as_f64().expect("duckdb_s");
    let agree = tp["counts"] == dk["counts"];
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let run_s = run_pg["wall_s"].as_f64().expect("run wall_s");
    let result = json!({
        "rows": rows,
        "rows_read": tp["rows_read"],
        "input_bytes": dir_bytes(&dir),
        "run_s": run_s,
        "run_peak_rss_mib": run_pg["peak_rss_mib"],
        "run_cpu_s": run_pg["cpu_s"],
        "run_machine_cpu_s": run_pg["machine_cpu_s"],
        "run_postgres": run_pg,
        "run_s_all": run_pg_walls,
        "duckdb_s_all": duckdb_walls,
        "run_sqlite_s": run_sqlite["wall_s"],
        "run_sqlite_peak_rss_mib": run_sqlite["peak_rss_mib"],
        "run_sqlite": run_sqlite,
        "speedup_vs_duckdb": duckdb_s / run_s,
        "ui_pages": pages,
        "ui_slowest_page_ms": pages.as_array().map(|a| a.iter().filter_map(|p| p["max_ms"].as_f64()).fold(0.0, f64::max)),
        "turnpike_s": turnpike_s,
        "core_speedup_vs_duckdb": duckdb_s / turnpike_s,
        "duckdb_s": duckdb_s,
        "peak_rss_mib": tp["peak_rss_mib"],
        "duckdb_load_s": dk["duckdb_load_s"],
        "duckdb_peak_rss_mib": dk["peak_rss_mib"],
        "counts_turnpike": tp["counts"],
        "counts_duckdb": dk["counts"],
        "counts_agree": agree,
        "fee_exceptions": tp["fee_exceptions"],
        "threads": 2,
        "duckdb_version": DUCKDB_VERSION,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "git_commit": commit,
    });
    let results = target.join("bench-results");
    std::fs::create_dir_all(&results).expect("creating bench-results");
    std::fs::write(
        results.join("settlement_recon.json"),
        serde_json::to_vec_pretty(&result).expect("JSON"),
    )
    .expect("writing settlement_recon.json");
    println!("{}", serde_json::to_string_pretty(&result).expect("JSON"));
    assert!(agree, "class counts differ between Turnpike and DuckDB");
}

/// Builds the `settlement` program (release) and returns its path.
fn build_settlement(target: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let ok = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "settlement",
            "--bin",
            "settlement",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cargo build --release -p settlement failed");
    target.join("release").join("settlement")
}

/// One `settlement run` of the bench's day into a fresh database of `backend`, with `--out`,
/// timed by `/usr/bin/time` (wall, CPU, peak RSS of the program; on PostgreSQL the server's
/// CPU is on top: `machine_cpu_s` is the whole machine's busy CPU during the run, from
/// /proc/stat). Returns the figures and the database's URL (a
/// PostgreSQL database is left for `time_pages`; `drop_database` removes it).
fn run_settlement(bin: &Path, dir: &Path, backend: &str) -> (Value, String) {
    let out_dir = dir.join(format!("out-{backend}"));
    let _ = std::fs::remove_dir_all(&out_dir);
    let database = match backend {
        "postgres" => {
            let name = format!("turnpike_bench_settlement_{}", std::process::id());
            psql(&format!("DROP DATABASE IF EXISTS {name}"));
            psql(&format!("CREATE DATABASE {name}"));
            format!("postgres://postgres@127.0.0.1:5432/{name}")
        }
        _ => {
            let path = dir.join("run.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            format!("sqlite://{}?mode=rwc", path.display())
        }
    };
    let machine_cpu_before = machine_cpu_s();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "TIME %e %U %S %M"])
        .arg(bin)
        .args(["run", "--date", DAY, "--database", &database])
        .arg("--gateway-export")
        .arg(dir.join("gateway.csv"))
        .arg("--provider-bill")
        .arg(dir.join("bill.csv"))
        .arg("--operator-export")
        .arg(format!(
            "hz-metro={}",
            dir.join("operator-hz-metro.csv").display()
        ))
        .arg("--operator-export")
        .arg(format!(
            "zj-expressway={}",
            dir.join("operator-zj-expressway.csv").display()
        ))
        .arg("--work-dir")
        .arg(dir.join("work"))
        .arg("--out")
        .arg(&out_dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running settlement run");
    let machine_cpu_s = machine_cpu_s() - machine_cpu_before;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "settlement run on {backend} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    let t: Vec<f64> = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("TIME "))
        .expect("/usr/bin/time's line")
        .split(' ')
        .map(|v| v.parse().expect("a number"))
        .collect();
    let stored_mib = match backend {
        "postgres" => {
            let name = format!("turnpike_bench_settlement_{}", std::process::id());
            psql_value(&format!("SELECT pg_database_size('{name}')")) / 1048576.0
        }
        _ => {
            ["run.db", "run.db-wal"]
                .iter()
                .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
                .map(|m| m.len() as f64)
                .sum::<f64>()
                / 1048576.0
        }
    };
    let result = json!({
        "wall_s": t[0],
        "cpu_s": t[1] + t[2],
        "user_s": t[1],
        "sys_s": t[2],
        "peak_rss_mib": t[3] / 1024.0,
        "machine_cpu_s": machine_cpu_s,
        "database_mib": stored_mib,
        "summary": String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>(),
    });
    println!(
        "settlement run ({backend}): {:.2} s, CPU {:.2} s, peak RSS {:.0} MiB, database {:.0} MiB",
        t[0],
        t[1] + t[2],
        t[3] / 1024.0,
        stored_mib
    );
    (result, database)
}

fn drop_database(url: &str) {
    if let Some(name) = url.strip_prefix("postgres://postgres@127.0.0.1:5432/") {
        psql(&format!("DROP DATABASE IF EXISTS {name}"));
    }
}

/// Serves the review UI (`settlement serve`, the release program) on the day just stored and
/// times each page a finance user opens — statement, drill-downs (first, middle and last
/// page), the exceptions queue (first page, sorted by amount, the next page by its cursor),
/// day and days — over HTTP on loopback, 7 times each after one warm-up: median and max
/// milliseconds (the server's time plus a loopback round trip) and the page's size.
fn time_pages(bin: &Path, database: &str) -> Value {
    const USER: &str = "fin.bench";
    const PASSWORD: &str = "bench password 123";
    let ok = Command::new(bin)
        .args(["user", "add", "--name", USER, "--database", database])
        .env("TURNPIKE_SETTLEMENT_PASSWORD", PASSWORD)
        .env("RUST_LOG", "warn")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "settlement user add failed");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = Command::new(bin)
        .args(["serve", "--database", database, "--nightly-at", "off"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("settlement serve");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async {
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("client");
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let login = loop {
            match client.get(format!("{base}/login")).send().await {
                Ok(r) => break r,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await
                }
                Err(e) => panic!("settlement serve did not answer: {e}"),
            }
        };
        let login_cookie = set_cookie(&login);
        let page = login.text().await.expect("login page");
        let csrf = between(&page, "name=\"csrf\" value=\"", "\"").expect("login csrf");
        let logged = client
            .post(format!("{base}/login"))
            .header("cookie", login_cookie)
            .form(&[("name", USER), ("password", PASSWORD), ("csrf", &csrf)])
            .send()
            .await
            .expect("login");
        assert_eq!(logged.status().as_u16(), 303, "login refused");
        let cookie = set_cookie(&logged);
        let get = |path: String| {
            let (client, base, cookie) = (client.clone(), base.clone(), cookie.clone());
            async move {
                let started = Instant::now();
                let r = client
                    .get(format!("{base}{path}"))
                    .header("cookie", cookie)
                    .send()
                    .await
                    .expect("GET");
                let status = r.status().as_u16();
                let body = r.text().await.expect("body");
                assert_eq!(status, 200, "GET {path}: {body}");
                (started.elapsed().as_secs_f64() * 1000.0, body)
            }
        };
        let statement = format!("/days/{DAY}/operators/hz-metro");
        let (_, first) = get(format!("{statement}/figures/gross")).await;
        let pages: u64 = between(&first, "page 1 of ", "<")
            .and_then(|n| n.trim().replace(',', "").parse().ok())
            .expect("the drill-down's page count");
        let (_, queue) = get(format!("/exceptions?day={DAY}&state=open")).await;
        let next = between(&queue, "id=\"next-page\" href=\"", "\"")
            .expect("a next page of exceptions")
            .replace("&amp;", "&");
        let paths = [
            ("statement", statement.clone()),
            (
                "drill-down gross, first page",
                format!("{statement}/figures/gross"),
            ),
            (
                "drill-down gross, middle page",
                format!("{statement}/figures/gross?page={}", pages / 2),
            ),
            (
                "drill-down gross, last page",
                format!("{statement}/figures/gross?page={pages}"),
            ),
            (
                "drill-down provider fees, last page",
                format!("{statement}/figures/provider_fees?page={pages}"),
            ),
            ("drill-down refunds", format!("{statement}/figures/refunds")),
            (
                "exceptions, open, first page",
                format!("/exceptions?day={DAY}&state=open"),
            ),
            (
                "exceptions, by amount",
                format!("/exceptions?day={DAY}&sort=amount"),
            ),
            ("exceptions, next page", next),
            ("exceptions, every day", "/exceptions".to_string()),
            ("day", format!("/days/{DAY}")),
            ("days", "/".to_string()),
        ];
        let mut out = Vec::new();
        for (name, path) in paths {
            get(path.clone()).await;
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..7 {
                let (ms, body) = get(path.clone()).await;
                times.push(ms);
                bytes = body.len();
            }
            times.sort_by(f64::total_cmp);
            println!(
                "  {name:<38} median {:>7.1} ms  max {:>7.1} ms  {bytes} bytes",
                times[3], times[6]
            );
            out.push(json!({
                "page": name, "path": path, "median_ms": times[3], "max_ms": times[6],
                "bytes": bytes,
            }));
        }
        Value::Array(out)
    });
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// The `name=value` part of a response's Set-Cookie headers, joined for a Cookie header.
fn set_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The text between the first `start` and the next `end`.
fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(text[from..from + len].to_string())
}

fn psql(sql: &str) {
    let ok = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-c", sql])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "psql -c {sql:?} failed");
}

fn psql_value(sql: &str) -> f64 {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-At", "-c", sql])
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0)
}

/// Busy CPU seconds of the whole machine so far (user + nice + system + irq + softirq of
/// /proc/stat's `cpu` line): a run's own CPU plus the database server's.
fn machine_cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq …
    [0, 1, 2, 5, 6]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<f64>()
        / 100.0
}

fn dir_bytes(dir: &Path) -> u64 {
    [
        "gateway.csv",
        "bill.csv",
        "operator-hz-metro.csv",
        "operator-zj-expressway.csv",
    ]
    .iter()
    .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
    .map(|m| m.len())
    .sum()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The child: reconcile and print JSON.
fn child(dir: &Path) {
    use settlement::*;
    let day: jiff::civil::Date = DAY.parse().expect("day");
    let mut config = ReconConfig::new(DayWindow::shanghai(day).expect("day window"));
    config.tolerance_minor = TOLERANCE_MINOR;
    config.threads = 2;
    let input = ReconInput {
        gateway: vec![dir.join("gateway.csv")],
        provider: vec![BillFile {
            path: dir.join("bill.csv"),
            encoding: None,
        }],
        operators: vec![
            OperatorFile {
                operator_id: "hz-metro".into(),
                path: dir.join("operator-hz-metro.csv"),
            },
            OperatorFile {
                operator_id: "zj-expressway".into(),
                path: dir.join("operator-zj-expressway.csv"),
            },
        ],
    };
    let started = Instant::now();
    let rec = reconcile(&input, &config).unwrap_or_else(|e| panic!("reconcile: {e}"));
    let turnpike_s = started.elapsed().as_secs_f64();
    let counts: serde_json::Map<String, Value> = Class::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), json!(rec.counts.get(*c))))
        .collect();
    let out = json!({
        "turnpike_s": turnpike_s,
        "peak_rss_mib": peak_rss_mib(),
        "rows_read": rec.rows,
        "counts": counts,
        "fee_exceptions": rec.fee_exceptions.len(),
        "operators": rec.operators.iter().map(|o| json!({
            "operator_id": o.operator_id, "currency": o.currency, "totals": o.totals,
        })).collect::<Vec<_>>(),
    });
    println!("{out}");
}

fn install_duckdb(target: &Path) -> PathBuf {
    let venv = target.join("duckdb-venv");
    let python = venv.join("bin/python");
    let have = Command::new(&python)
        .args([
            "-c",
            &format!(
                "import duckdb,sys; sys.exit(0 if duckdb.__version__ == '{DUCKDB_VERSION}' else 1)"
            ),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        let ok = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "python3 -m venv {} failed", venv.display());
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", &format!("duckdb=={DUCKDB_VERSION}")])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pip install duckdb=={DUCKDB_VERSION} failed");
    }
    python
}

// ---- the generator ----

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

fn push_i64(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(buf, v.unsigned_abs());
}

fn push_yuan(buf: &mut Vec<u8>, fen: i64) {
    if fen < 0 {
        buf.push(b'-');
    }
    let a = fen.unsigned_abs();
    push_u64(buf, a / 100);
    buf.push(b'.');
    buf.push(b'0' + (a % 100 / 10) as u8);
    buf.push(b'0' + (a % 10) as u8);
}

fn push2(buf: &mut Vec<u8>, v: i64) {
    buf.push(b'0' + (v / 10) as u8);
    buf.push(b'0' + (v % 10) as u8);
}

/// Local (Asia/Shanghai, UTC+8, no DST) civil date and time of a UTC instant.
fn civil(ms: i64) -> (i64, i64, i64, i64, i64, i64, i64) {
    let local_ms = ms + 8 * 3_600_000;
    let days = local_ms.div_euclid(DAY_MS);
    let in_day = local_ms.rem_euclid(DAY_MS);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (
        y,
        m,
        d,
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    )
}

fn push_date(buf: &mut Vec<u8>, ms: i64) {
    let (y, m, d, ..) = civil(ms);
    push_u64(buf, y as u64);
    buf.push(b'-');
    push2(buf, m);
    buf.push(b'-');
    push2(buf, d);
}

/// `2026-01-02 08:04:05` (the bill's local time).
fn push_local(buf: &mut Vec<u8>, ms: i64) {
    let (_, _, _, h, mi, s, _) = civil(ms);
    push_date(buf, ms);
    buf.push(b' ');
    push2(buf, h);
    buf.push(b':');
    push2(buf, mi);
    buf.push(b':');
    push2(buf, s);
}

/// `2026-01-02T08:04:05.123+08:00` (the operator export's time).
fn push_rfc3339(buf: &mut Vec<u8>, ms: i64) {
    let (_, _, _, h, mi, s, milli) = civil(ms);
    push_date(buf, ms);
    buf.push(b'T');
    push2(buf, h);
    buf.push(b':');
    push2(buf, mi);
    buf.push(b':');
    push2(buf, s);
    buf.push(b'.');
    buf.push(b'0' + (milli / 100) as u8);
    push2(buf, milli % 100);
    buf.extend_from_slice(b"+08:00");
}

fn fee(amount: i64) -> i64 {
    (amount * 60 + 5_000) / 10_000
}

struct Out {
    file: std::io::BufWriter<std::fs::File>,
    buf: Vec<u8>,
    rows: u64,
}

impl Out {
    fn create(path: &Path, head: &str) -> Out {
        let mut file = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(path).expect("creating data file"),
        );
        file.write_all(head.as_bytes()).expect("write");
        Out {
            file,
            buf: Vec::with_capacity(1 << 20),
            rows: 0,
        }
    }
    fn end_row(&mut self, crlf: bool) {
        self.buf
            .extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        self.rows += 1;
        if self.buf.len() > (1 << 20) - 512 {
            self.file.write_all(&self.buf).expect("write");
            self.buf.clear();
        }
    }
    fn finish(mut self, tail: &str) {
        self.file.write_all(&self.buf).expect("write");
        self.file.write_all(tail.as_bytes()).expect("write");
        self.file.flush().expect("flush");
    }
}

struct Journey {
    charge: u64,
    attempt: u32,
    kind: u8, // 0 metro, 1 toll, 2 ticket
    terminal: u32,
    seq: u64,
    amount: i64,
    tap_ms: i64,
    paid_ms: i64,
    business_day_ms: i64,
}

const TERMINAL_PREFIX: [&str; 3] = ["G", "L", "TM"];

fn terminal_name(buf: &mut Vec<u8>, kind: u8, t: u32) {
    buf.extend_from_slice(TERMINAL_PREFIX[kind as usize].as_bytes());
    push_u64(buf, 10_000 + t as u64);
}

fn gw_payment(o: &mut Out, j: &Journey) {
    let b = &mut o.buf;
    b.extend_from_slice(b"payment,");
    b.extend_from_slice(if j.kind == 1 {
        b"zj-expressway,"
    } else {
        b"hz-metro,"
    });
    push_date(b, j.business_day_ms);
    b.push(b',');
    b.push([b'M', b'T', b'K'][j.kind as usize]);
    push_u64(b, j.charge);
    b.push(b'-');
    push_u64(b, j.attempt as u64);
    b.extend_from_slice(b",2026010222001");
    push_u64(
        b,
        100_000_000_000_000 + j.charge % 900_000_000_000_000 + j.attempt as u64,
    );
    b.extend_from_slice(b",,");
    terminal_name(b, j.kind, j.terminal);
    b.push(b',');
    push_u64(b, j.seq);
    b.extend_from_slice([&b",metro,"[..], b",toll,", b",ticket,"][j.kind as usize]);
    push_i64(b, j.amount);
    b.push(b',');
    push_i64(b, fee(j.amount));
    b.extend_from_slice(b",CNY,");
    push_i64(b, j.paid_ms);
    o.end_row(false);
}

fn gw_refund(o: &mut Out, j: &Journey, reversal: bool, refund: i64, ms: i64) {
    let b = &mut o.buf;
    b.extend_from_slice(if reversal { b"reversal," } else { b"refund," });
    b.extend_from_slice(if j.kind == 1 {
        b"zj-expressway,"
    } else {
        b"hz-metro,"
    });
    push_date(b, j.business_day_ms);
    b.push(b',');
    b.push([b'M', b'T', b'K'][j.kind as usize]);
    push_u64(b, j.charge);
    b.push(b'-');
    push_u64(b, j.attempt as u64);
    b.extend_from_slice(b",2026010222001");
    push_u64(
        b,
        100_000_000_000_000 + j.charge % 900_000_000_000_000 + j.attempt as u64,
    );
    b.push(b',');
    if !reversal {
        b.push(b'R');
        push_u64(b, j.charge);
        b.extend_from_slice(b"-1");
    }
    b.extend_from_slice(b",,");
    b.extend_from_slice([&b",metro,"[..], b",toll,", b",ticket,"][j.kind as usize]);
    push_i64(b, refund);
    b.push(b',');
    push_i64(b, (fee(j.amount) * refund * 2 + j.amount) / (2 * j.amount));
    b.extend_from_slice(b",CNY,");
    push_i64(b, ms);
    o.end_row(false);
}

/// A bill row: `amount` and `fee` signed as the platform writes them.
#[allow(clippy::too_many_arguments)]
fn bill_row(
    o: &mut Out,
    j: &Journey,
    trade: bool,
    request_no: bool,
    amount: i64,
    fee_yuan: i64,
    ms: i64,
) {
    let b = &mut o.buf;
    b.extend_from_slice(b"2026010222001");
    push_u64(
        b,
        100_000_000_000_000 + j.charge % 900_000_000_000_000 + j.attempt as u64,
    );
    b.extend_from_slice(b"\t,");
    b.push([b'M', b'T', b'K'][j.kind as usize]);
    push_u64(b, j.charge);
    b.push(b'-');
    push_u64(b, j.attempt as u64);
    b.extend_from_slice(if trade {
        "\t,交易\t,".as_bytes()
    } else {
        "\t,退款\t,".as_bytes()
    });
    b.extend_from_slice(if j.kind == 1 {
        b"zj-expressway toll,"
    } else {
        b"hz-metro fare,"
    });
    push_local(b, j.paid_ms.min(ms));
    b.push(b',');
    push_local(b, ms);
    b.extend_from_slice(b",\t,\t,");
    b.extend_from_slice(if j.kind == 1 {
        b"zj-expressway\t,"
    } else {
        b"hz-metro\t,"
    });
    terminal_name(b, j.kind, j.terminal);
    b.extend_from_slice(b"\t,159******12\t,");
    push_yuan(b, amount);
    b.push(b',');
    push_yuan(b, amount);
    b.extend_from_slice(b",0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,");
    if request_no {
        b.push(b'R');
        push_u64(b, j.charge);
        b.extend_from_slice(b"-1");
    }
    b.extend_from_slice(b"\t,");
    push_yuan(b, fee_yuan);
    b.extend_from_slice(b",0.00,");
    o.end_row(true);
}

fn op_row(o: &mut Out, j: &Journey, amount: i64, ms: i64) {
    let b = &mut o.buf;
    terminal_name(b, j.kind, j.terminal);
    b.push(b',');
    push_u64(b, j.seq);
    b.push(b',');
    push_rfc3339(b, ms);
    b.extend_from_slice([&b",exit,"[..], b",toll_exit,", b",ticket,"][j.kind as usize]);
    push_i64(b, amount);
    b.extend_from_slice(b",CNY");
    o.end_row(false);
}

/// Writes the day's files unless they are already there for this generator version; returns
/// whether it generated.
fn generate(dir: &Path, rows: u64) -> bool {
    let marker = dir.join("generated");
    let stamp = format!("v{GENERATOR_VERSION} rows={rows}\n");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(stamp.as_str()) {
        return false;
    }
    std::fs::create_dir_all(dir).expect("creating bench data dir");
    let _ = std::fs::remove_file(&marker);
    let columns = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";
    let mut gw = Out::create(
        &dir.join("gateway.csv"),
        "# turnpike-gateway-export v1\nrecord_type,operator_id,business_day,out_trade_no,provider_trade_no,out_request_no,terminal_id,terminal_sequence,kind,amount_minor,fee_minor,currency,occurred_at_ms\n",
    );
    let mut bill = Out::create(
        &dir.join("bill.csv"),
        &format!(
            "#支付宝业务明细查询\r\n#账号：[20880000000000010156]\r\n#起始日期：[2026年01月02日 00:00:00]   终止日期：[2026年01月03日 00:00:00]\r\n#-----------------------------------------业务明细列表----------------------------------------\r\n{columns}\r\n"
        ),
    );
    let op_head = "# turnpike-operator-export v1\nterminal_id,terminal_sequence,occurred_at,kind,amount_minor,currency\n";
    let mut ops = [
        Out::create(&dir.join("operator-hz-metro.csv"), op_head),
        Out::create(&dir.join("operator-zj-expressway.csv"), op_head),
    ];
    let (mut trade_rows, mut trade_fen, mut refund_rows, mut refund_fen) = (0u64, 0i64, 0u64, 0i64);
    let mut rng = Rng(0x5e77_1e3e_47b1_2026);
    // Terminals: 4000 metro gates, 800 toll lanes, 200 ticket machines.
    const TERMINALS: [u32; 3] = [4000, 800, 200];
    let mut seqs: [Vec<u64>; 3] = TERMINALS.map(|n| vec![0u64; n as usize]);
    let slot_ms = (DAY_MS - 20 * 60_000) / rows as i64;
    for i in 0..rows {
        let kind_roll = rng.below(100);
        let kind = if kind_roll < 75 {
            0u8
        } else if kind_roll < 95 {
            1
        } else {
            2
        };
        let terminal = rng.below(TERMINALS[kind as usize] as u64) as u32;
        seqs[kind as usize][terminal as usize] += 1;
        let amount = match kind {
            0 | 2 => 200 + 100 * rng.below(8) as i64,
            _ => 500 + 50 * rng.below(600) as i64,
        };
        let tap_ms = DAY_START_MS + 60_000 + i as i64 * slot_ms;
        let mut j = Journey {
            charge: (rng.next() >> 1) | 1,
            attempt: 1,
            kind,
            terminal,
            seq: seqs[kind as usize][terminal as usize],
            amount,
            tap_ms,
            paid_ms: tap_ms + 1_000 + rng.below(120_000) as i64,
            business_day_ms: tap_ms,
        };
        let roll = rng.below(1_000_000);
        let (mut in_gw, mut in_bill, mut in_op) = (true, true, true);
        let (mut bill_amount, mut op_amount, mut bill_fee) = (amount, amount, fee(amount));
        let (mut gw_dup, mut bill_dup, mut op_dup, mut double) = (false, false, false, false);
        match roll {
            0..1000 => in_bill = false,
            1000..2000 => in_gw = false,
            2000..3000 => in_op = false,
            3000..3500 => bill_amount += 100,
            3500..4000 => op_amount += 100,
            4000..4200 => gw_dup = true,
            4200..4400 => bill_dup = true,
            4400..4600 => op_dup = true,
            4600..4650 => double = true,
            4650..5150 => {
                // Late: a journey of the previous day, paid after midnight.
                j.tap_ms = DAY_START_MS - 60_000 - rng.below(600_000) as i64;
                j.business_day_ms = j.tap_ms;
                j.paid_ms = DAY_START_MS + 1_000 + rng.below(600_000) as i64;
            }
            5150..5250 => bill_fee += 1,
            _ => {}
        }
        let op_file = if kind == 1 { 1 } else { 0 };
        if in_gw {
            gw_payment(&mut gw, &j);
            if gw_dup {
                gw_payment(&mut gw, &j);
            }
        }
        if in_bill {
            for _ in 0..if bill_dup { 2 } else { 1 } {
                bill_row(
                    &mut bill,
                    &j,
                    true,
                    false,
                    bill_amount,
                    -bill_fee,
                    j.paid_ms,
                );
                trade_rows += 1;
                trade_fen += bill_amount;
            }
        }
        if in_op {
            for _ in 0..if op_dup { 2 } else { 1 } {
                op_row(&mut ops[op_file], &j, op_amount, j.tap_ms);
            }
        }
        if double {
            // A second, successful attempt for the same tap: a double charge.
            let second = Journey {
                attempt: 2,
                paid_ms: j.paid_ms + 5_000,
                ..j
            };
            gw_payment(&mut gw, &second);
            bill_row(
                &mut bill,
                &second,
                true,
                false,
                amount,
                -fee(amount),
                second.paid_ms,
            );
            trade_rows += 1;
            trade_fen += amount;
        }
        if roll >= 10_000 && in_gw && in_bill {
            let r2 = rng.below(10_000);
            let refund_ms = j.paid_ms + 3_600_000;
            if r2 < 30 && refund_ms < DAY_START_MS + DAY_MS {
                let refund = amount / 2;
                let f = (fee(amount) * refund * 2 + amount) / (2 * amount);
                gw_refund(&mut gw, &j, false, refund, refund_ms);
                bill_row(&mut bill, &j, false, true, -refund, f, refund_ms);
                refund_rows += 1;
                refund_fen -= refund;
            } else if r2 < 31 && kind == 1 {
                let ms = j.paid_ms + 60_000;
                gw_refund(&mut gw, &j, true, amount, ms);
                bill_row(&mut bill, &j, false, false, -amount, fee(amount), ms);
                refund_rows += 1;
                refund_fen -= amount;
            }
        }
    }
    let gw_rows = gw.rows;
    gw.finish(&format!("# end rows={gw_rows}\n"));
    for o in ops {
        let n = o.rows;
        o.finish(&format!("# end rows={n}\n"));
    }
    let mut tail = Vec::new();
    tail.extend_from_slice("#-----------------------------------------业务明细列表结束------------------------------------\r\n#交易合计：".as_bytes());
    push_u64(&mut tail, trade_rows);
    tail.extend_from_slice("笔，商家实收共".as_bytes());
    push_yuan(&mut tail, trade_fen);
    tail.extend_from_slice("元，商家优惠共0.00元\r\n#退款合计：".as_bytes());
    push_u64(&mut tail, refund_rows);
    tail.extend_from_slice("笔，商家实收退款共".as_bytes());
    push_yuan(&mut tail, refund_fen);
    tail.extend_from_slice(
        "元，商家优惠退款共0.00元\r\n#导出时间：[2026年01月03日 09:00:00]\r\n".as_bytes(),
    );
    bill.finish(std::str::from_utf8(&tail).expect("UTF-8"));
    std::fs::write(&marker, stamp).expect("writing marker");
    true
}

/// The same classification in SQL (decision table in docs/settlement-formats.md); the query
/// and why it is the best we could write are in the script.
const DUCKDB_SCRIPT: &str = include_str!("settlement_recon_duckdb.py");
