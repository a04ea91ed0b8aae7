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
//! 4. Fail loudly if the class counts differ; write `target/bench-results/settlement_recon.json`.
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

    // DuckDB.
    let python = install_duckdb(&target);
    let script = dir.join("duckdb_recon.py");
    std::fs::write(&script, DUCKDB_SCRIPT).expect("writing the DuckDB script");
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

    let turnpike_s = tp["turnpike_s"].as_f64().expect("turnpike_s");
    let duckdb_s = dk["duckdb_s"].as_f64().expect("duckdb_s");
    let agree = tp["counts"] == dk["counts"];
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let result = json!({
        "rows": rows,
        "rows_read": tp["rows_read"],
        "input_bytes": dir_bytes(&dir),
        "turnpike_s": turnpike_s,
        "duckdb_s": duckdb_s,
        "speedup_vs_duckdb": duckdb_s / turnpike_s,
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

/// The same classification in SQL (decision table in docs/settlement-formats.md).
const DUCKDB_SCRIPT: &str = r#"
import json, resource, sys, time
import duckdb

d, day, tol = sys.argv[1], sys.argv[2], int(sys.argv[3])
con = duckdb.connect()
con.execute("SET threads=2")
t0 = time.perf_counter()
opts = "header=true, comment='#', delim=',', quote='', escape='', auto_detect=false"
con.execute(f"""
CREATE TEMP TABLE g AS SELECT
  CASE record_type WHEN 'refund' THEN 'R:' || out_request_no WHEN 'reversal' THEN 'V:' || out_trade_no
       ELSE 'P:' || out_trade_no END AS k,
  (record_type = 'payment' AND terminal_id IS NOT NULL) AS at_term,
  operator_id AS op, terminal_id AS term, terminal_sequence AS seq, kind, amount_minor AS amt,
  currency AS cur, business_day <> DATE '{day}' AS off
FROM read_csv('{d}/gateway.csv', {opts}, columns={{
  'record_type':'VARCHAR','operator_id':'VARCHAR','business_day':'DATE','out_trade_no':'VARCHAR',
  'provider_trade_no':'VARCHAR','out_request_no':'VARCHAR','terminal_id':'VARCHAR',
  'terminal_sequence':'UBIGINT','kind':'VARCHAR','amount_minor':'BIGINT','fee_minor':'BIGINT',
  'currency':'VARCHAR','occurred_at_ms':'BIGINT'}})
""")
cols = {f"c{i:02d}": "VARCHAR" for i in range(25)}
cols["c05"] = "TIMESTAMP"
cols["c12"] = "DECIMAL(18,2)"
cols["c22"] = "DECIMAL(18,2)"
colspec = "{" + ",".join(f"'{k}':'{v}'" for k, v in cols.items()) + "}"
con.execute(f"""
CREATE TEMP TABLE p AS SELECT
  CASE WHEN trim(c02, chr(9)) = '交易' THEN 'P:' || trim(c01, chr(9))
       WHEN coalesce(trim(c21, chr(9)), '') = '' THEN 'V:' || trim(c01, chr(9))
       ELSE 'R:' || trim(c21, chr(9)) END AS k,
  CAST(abs(c12) * 100 AS BIGINT) AS amt,
  NOT (c05 >= TIMESTAMP '{day} 00:00:00' AND c05 < TIMESTAMP '{day} 00:00:00' + INTERVAL 1 DAY) AS off
FROM read_csv('{d}/bill.csv', {opts}, columns={colspec})
""")
ocols = ("{'terminal_id':'VARCHAR','terminal_sequence':'UBIGINT','occurred_at':'TIMESTAMPTZ',"
         "'kind':'VARCHAR','amount_minor':'BIGINT','currency':'VARCHAR'}")
start = f"TIMESTAMPTZ '{day} 00:00:00+08:00'"
con.execute(f"""
CREATE TEMP TABLE o AS
SELECT op, terminal_id AS term, terminal_sequence AS seq, kind, amount_minor AS amt, currency AS cur,
  NOT (occurred_at >= {start} AND occurred_at < {start} + INTERVAL 1 DAY) AS off
FROM (
  SELECT 'hz-metro' AS op, * FROM read_csv('{d}/operator-hz-metro.csv', {opts}, columns={ocols})
  UNION ALL
  SELECT 'zj-expressway' AS op, * FROM read_csv('{d}/operator-zj-expressway.csv', {opts}, columns={ocols})
) WHERE amount_minor > 0
""")
load_s = time.perf_counter() - t0
rows = con.execute(f"""
WITH gd AS (
  SELECT k, count(*) AS n, arg_min({{'at_term': at_term, 'op': op, 'term': term, 'seq': seq, 'kind': kind,
         'amt': amt, 'cur': cur, 'off': off, 'rid': rowid}}, rowid) AS r
  FROM g GROUP BY k
), gdf AS (
  SELECT k, n, r.at_term AS at_term, r.op AS op, r.term AS term, r.seq AS seq, r.kind AS kind,
         r.amt AS amt, r.cur AS cur, r.off AS off, r.rid AS rid FROM gd
), gt AS (
  SELECT term, seq, min(rid) AS first_rid FROM gdf WHERE at_term GROUP BY term, seq
), pd AS (
  SELECT k, count(*) AS n, arg_min({{'amt': amt, 'off': off}}, rowid) AS r FROM p GROUP BY k
), od AS (
  SELECT term, seq, count(*) AS n,
         arg_min({{'op': op, 'kind': kind, 'amt': amt, 'cur': cur, 'off': off}}, rowid) AS r
  FROM o GROUP BY term, seq
), main AS (
  SELECT
    CASE
      WHEN gdf.at_term AND gdf.rid <> gt.first_rid THEN 'duplicate'
      WHEN gdf.off OR coalesce(pd.r.off, false) OR coalesce(od.r.off, false) THEN 'other_day'
      WHEN pd.k IS NULL THEN 'missing_at_provider'
      WHEN gdf.at_term AND od.term IS NULL THEN 'missing_at_operator'
      WHEN abs(gdf.amt - pd.r.amt) > {tol} OR gdf.cur <> 'CNY'
        OR (od.term IS NOT NULL AND (abs(gdf.amt - od.r.amt) > {tol} OR gdf.cur <> od.r.cur
            OR gdf.op <> od.r.op
            OR NOT (CASE gdf.kind WHEN 'metro' THEN od.r.kind IN ('entry', 'exit')
                                  WHEN 'toll' THEN od.r.kind = 'toll_exit'
                                  ELSE od.r.kind = 'ticket' END)))
        THEN 'amount_mismatch'
      ELSE 'matched'
    END AS class
  FROM gdf
  -- Only payments at a terminal have one (the export's rule), so plain equi-joins suffice.
  LEFT JOIN gt ON gdf.term = gt.term AND gdf.seq = gt.seq
  LEFT JOIN pd ON gdf.k = pd.k
  LEFT JOIN od ON gdf.term = od.term AND gdf.seq = od.seq
), orphans AS (
  SELECT CASE WHEN pd.r.off THEN 'other_day' ELSE 'missing_at_gateway' END AS class
  FROM pd ANTI JOIN gdf ON pd.k = gdf.k
  UNION ALL
  SELECT CASE WHEN od.r.off THEN 'other_day' ELSE 'missing_at_gateway' END AS class
  FROM od ANTI JOIN (SELECT term, seq FROM gdf WHERE at_term) t ON od.term = t.term AND od.seq = t.seq
), dups AS (
  SELECT 'duplicate' AS class, (SELECT coalesce(sum(n - 1), 0) FROM gdf) + (SELECT coalesce(sum(n - 1), 0) FROM pd)
       + (SELECT coalesce(sum(n - 1), 0) FROM od) AS c
)
SELECT class, count(*) AS c FROM (SELECT class FROM main UNION ALL SELECT class FROM orphans) GROUP BY class
UNION ALL SELECT class, c FROM dups
""").fetchall()
elapsed = time.perf_counter() - t0
counts = {c: 0 for c in ["matched", "amount_mismatch", "missing_at_provider", "missing_at_gateway",
                         "missing_at_operator", "duplicate", "other_day"]}
for cls, c in rows:
    counts[cls] += int(c)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"duckdb_s": elapsed, "duckdb_load_s": load_s, "counts": counts, "peak_rss_mib": peak}))
"#;
