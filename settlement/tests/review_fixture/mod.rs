//! A small settlement day for the run, store and review-UI tests: input files with one or more
//! records of every class, a settlement store on SQLite or PostgreSQL, and a finance user.

#![allow(dead_code)]

/// Runs `async fn name(backend: &str)` as two tests, `name::sqlite` and `name::postgres`
/// (`#[macro_use] mod review_fixture;` in the test file).
#[allow(unused_macros)]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name("sqlite").await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name("postgres").await
            }
        }
    };
}

use std::path::{Path, PathBuf};

use settlement::run::{run_day, GatewayInput, RunConfig, RunReport};
use settlement::store::Store;
use turnpike_test_support::{PgDatabase, Scratch};

pub const DAY: &str = "2026-01-02";
pub const USER: &str = "fin.alice";
pub const PASSWORD: &str = "correct horse battery";
/// A second finance user: four-eyes approval (on by default) needs an approver who resolved
/// none of the statement's exceptions.
pub const APPROVER: &str = "fin.bob";

/// Fee at the default contract (60 bp, half-up).
pub fn fee(amount: i64) -> i64 {
    (amount * 60 * 2 + 10_000) / 20_000
}

fn pay(
    op: &str,
    day: &str,
    trade: &str,
    terminal: &str,
    seq: u64,
    kind: &str,
    amount: i64,
) -> String {
    let seq = if terminal.is_empty() {
        String::new()
    } else {
        seq.to_string()
    };
    format!(
        "payment,{op},{day},{trade},P{trade},,{terminal},{seq},{kind},{amount},{},CNY,1767312245000",
        fee(amount)
    )
}

pub fn gateway_export() -> String {
    let rows = [
        pay("hz-metro", DAY, "M1-1", "G1", 1, "metro", 300), // matched (+ refund)
        pay("hz-metro", DAY, "M2-1", "G1", 2, "metro", 500), // amount_mismatch (bill 450)
        pay("hz-metro", DAY, "M3-1", "G1", 3, "metro", 200), // missing_at_provider
        pay("hz-metro", DAY, "M4-1", "G1", 4, "metro", 400), // missing_at_operator
        pay("hz-metro", "2026-01-01", "M6-1", "G1", 6, "metro", 300), // other_day
        pay("hz-metro", DAY, "M7-1", "G1", 7, "metro", 600), // matched (+ operator duplicate)
        "refund,hz-metro,2026-01-02,M1-1,PM1-1,R1-1,,,metro,100,1,CNY,1767315845000".into(),
        pay("zj-expressway", DAY, "T5-1", "B1", 1, "toll", 1250), // matched
    ];
    let mut s = String::from("# turnpike-gateway-export v1\nrecord_type,operator_id,business_day,out_trade_no,provider_trade_no,out_request_no,terminal_id,terminal_sequence,kind,amount_minor,fee_minor,currency,occurred_at_ms\n");
    for r in &rows {
        s.push_str(r);
        s.push('\n');
    }
    s.push_str(&format!("# end rows={}\n", rows.len()));
    s
}

fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        fen.unsigned_abs() / 100,
        fen.unsigned_abs() % 100
    )
}

/// (trade?, out_trade_no, request no, amount fen signed, fee fen signed, operator)
fn bill_line(trade: bool, out: &str, req: &str, amount: i64, fee: i64, op: &str) -> String {
    let kind = if trade { "交易" } else { "退款" };
    let a = yuan(amount);
    let t = "2026-01-02 08:01:00";
    format!(
        "2026010222001{:015}\t,{out}\t,{kind}\t,票价,{t},{t},\t,\t,{op}\t,G1\t,159******12\t,{a},{a},0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,{req}\t,{},0.00,",
        out.len(),
        yuan(fee)
    )
}

pub fn bill() -> String {
    let rows = [
        (true, "M1-1", "", 300, -fee(300), "hz-metro"),
        (true, "M2-1", "", 450, -fee(450), "hz-metro"),
        (true, "M4-1", "", 400, -fee(400), "hz-metro"),
        (true, "M7-1", "", 600, -fee(600), "hz-metro"),
        (true, "M9-1", "", 250, -fee(250), "hz-metro"), // missing_at_gateway
        (false, "M1-1", "R1-1", -100, 1, "hz-metro"),
        (true, "T5-1", "", 1250, -fee(1250), "zj-expressway"),
    ];
    let mut lines = vec![
        "#支付宝业务明细查询".to_string(),
        "#账号：[20880000000000010156]".into(),
        "#起始日期：[2026年01月02日 00:00:00]   终止日期：[2026年01月03日 00:00:00]".into(),
        "#-----------------------------------------业务明细列表----------------------------------------".into(),
        "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注".into(),
    ];
    let (mut tn, mut tf, mut rn, mut rf) = (0, 0, 0, 0);
    for (trade, out, req, amount, fee, op) in rows {
        lines.push(bill_line(trade, out, req, amount, fee, op));
        if trade {
            tn += 1;
            tf += amount;
        } else {
            rn += 1;
            rf += amount;
        }
    }
    lines.push("#-----------------------------------------业务明细列表结束------------------------------------".into());
    lines.push(format!(
        "#交易合计：{tn}笔，商家实收共{}元，商家优惠共0.00元",
        yuan(tf)
    ));
    lines.push(format!(
        "#退款合计：{rn}笔，商家实收退款共{}元，商家优惠退款共0.00元",
        yuan(rf)
    ));
    lines.push("#导出时间：[2026年01月03日 09:00:00]".into());
    lines.join("\r\n") + "\r\n"
}

fn op_file(rows: &[&str]) -> String {
    let mut s = String::from("# turnpike-operator-export v1\nterminal_id,terminal_sequence,occurred_at,kind,amount_minor,currency\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s.push_str(&format!("# end rows={}\n", rows.len()));
    s
}

pub fn hz_metro_export() -> String {
    op_file(&[
        "G1,1,2026-01-02T08:00:00+08:00,exit,300,CNY",
        "G1,2,2026-01-02T08:00:00+08:00,exit,500,CNY",
        "G1,3,2026-01-02T08:00:00+08:00,exit,200,CNY",
        "G1,7,2026-01-02T08:00:00+08:00,exit,600,CNY",
        "G1,7,2026-01-02T08:00:00+08:00,exit,600,CNY", // duplicate
    ])
}

pub fn zj_expressway_export() -> String {
    op_file(&["B1,1,2026-01-02T08:00:00+08:00,toll_exit,1250,CNY"])
}

/// The day's input files in a scratch directory.
pub struct Inputs {
    pub dir: Scratch,
    pub gateway: PathBuf,
    pub bill: PathBuf,
    pub hz: PathBuf,
    pub zj: PathBuf,
}

impl Inputs {
    pub fn write() -> Inputs {
        let dir = Scratch::new("settlement-review");
        let w = |name: &str, body: String| {
            let p = dir.0.join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        Inputs {
            gateway: w("gateway.csv", gateway_export()),
            bill: w("bill.csv", bill()),
            hz: w("hz-metro.csv", hz_metro_export()),
            zj: w("zj-expressway.csv", zj_expressway_export()),
            dir,
        }
    }

    pub fn config(&self) -> RunConfig {
        RunConfig {
            business_day: DAY.parse().unwrap(),
            operator: None,
            gateway: GatewayInput::Files(vec![self.gateway.clone()]),
            provider_bills: vec![self.bill.clone()],
            operator_exports: vec![
                ("hz-metro".into(), self.hz.clone()),
                ("zj-expressway".into(), self.zj.clone()),
            ],
            work_dir: self.dir.0.join("work"),
            out_dir: None,
            operator_days: Vec::new(),
        }
    }

    pub async fn run(&self, store: &Store) -> anyhow::Result<RunReport> {
        run_day(store, settlement::engine(), &self.config()).await
    }
}

/// A settlement store on a fresh database of the backend, kept alive by the guard.
pub enum Guard {
    Sqlite(Scratch),
    Pg(PgDatabase),
}

pub async fn store(backend: &str) -> Option<(Store, Guard)> {
    match backend {
        "sqlite" => {
            let dir = Scratch::new("settlement-db");
            let url = format!(
                "sqlite://{}?mode=rwc",
                dir.0.join("settlement.db").display()
            );
            Some((Store::connect(&url, 4).await.unwrap(), Guard::Sqlite(dir)))
        }
        _ => {
            let db = PgDatabase::create().await?;
            let store = Store::connect(&db.url, 4).await.unwrap();
            Some((store, Guard::Pg(db)))
        }
    }
}

/// How many exceptions of an operator's day are open: what approving it must confirm.
pub async fn open_count(store: &Store, day: &str, operator: &str) -> usize {
    store
        .exceptions(&settlement::store::ExceptionFilter {
            business_day: Some(day.into()),
            operator_id: Some(operator.into()),
            class: None,
            state: Some("open".into()),
        })
        .await
        .unwrap()
        .len()
}

/// Approves an operator's day, confirming its open exceptions as the review UI does.
pub async fn approve(store: &Store, day: &str, operator: &str) -> bool {
    let open = open_count(store, day, operator).await;
    store
        .approve_operator(day, operator, APPROVER, open)
        .await
        .unwrap()
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
