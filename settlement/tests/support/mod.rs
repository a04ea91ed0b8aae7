//! Builders for small hand-made input files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use settlement::*;

pub const DAY: &str = "2026-01-02";

pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(name: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!(
            "settlement-test-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gateway export with version line, header, the rows and a correct trailer.
pub fn gateway_file(rows: &[String]) -> String {
    let mut s = String::from("# turnpike-gateway-export v1\nrecord_type,operator_id,business_day,out_trade_no,provider_trade_no,out_request_no,terminal_id,terminal_sequence,kind,amount_minor,fee_minor,currency,occurred_at_ms\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s.push_str(&format!("# end rows={}\n", rows.len()));
    s
}

/// A payment row: `pay("M1-1", "G1", 1, 300)` (hz-metro, metro, today, contract fee).
pub fn pay(trade: &str, terminal: &str, seq: u64, amount: i64) -> String {
    let (kind, op) = match trade.as_bytes()[0] {
        b'T' => ("toll", "zj-expressway"),
        b'K' => ("ticket", "hz-metro"),
        _ => ("metro", "hz-metro"),
    };
    let seq = if terminal.is_empty() {
        String::new()
    } else {
        seq.to_string()
    };
    format!(
        "payment,{op},{DAY},{trade},20260102{},,{terminal},{seq},{kind},{amount},{},CNY,1767312245000",
        trade.len(),
        FeeContract::default().fee_minor(amount)
    )
}

pub fn op_file(rows: &[String]) -> String {
    let mut s = String::from("# turnpike-operator-export v1\nterminal_id,terminal_sequence,occurred_at,kind,amount_minor,currency\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s.push_str(&format!("# end rows={}\n", rows.len()));
    s
}

/// An operator row at 08:00 local today.
pub fn tap(terminal: &str, seq: u64, kind: &str, amount: i64) -> String {
    format!("{terminal},{seq},{DAY}T08:00:00+08:00,{kind},{amount},CNY")
}

/// A bill row in the platform's layout. `amount_fen`/`fee_fen` are signed as the platform
/// writes them (交易: amount positive, fee negative; 退款: amount negative, fee positive).
pub struct BillRow<'a> {
    pub trade: bool,
    pub out_trade_no: &'a str,
    pub request_no: &'a str,
    pub amount_fen: i64,
    pub fee_fen: i64,
    pub finished: &'a str,
}

pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        fen.unsigned_abs() / 100,
        fen.unsigned_abs() % 100
    )
}

pub fn bill_line(r: &BillRow<'_>) -> String {
    let kind = if r.trade { "交易" } else { "退款" };
    let a = yuan(r.amount_fen);
    format!(
        "2026010222001{:015}\t,{}\t,{kind}\t,杭州地铁 票价,{},{},\t,\t,hz-metro\t,G1\t,159******12\t,{a},{a},0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,{}\t,{},0.00,",
        r.out_trade_no.len(),
        r.out_trade_no,
        r.finished,
        r.finished,
        r.request_no,
        yuan(r.fee_fen)
    )
}

/// A whole bill (UTF-8 text) with a correct footer, unless `footer` overrides the two total
/// lines.
pub fn bill_text(rows: &[BillRow<'_>], footer: Option<(&str, &str)>) -> String {
    let columns = "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注";
    let mut lines = vec![
        "#支付宝业务明细查询".to_string(),
        "#账号：[20880000000000010156]".into(),
        "#起始日期：[2026年01月02日 00:00:00]   终止日期：[2026年01月03日 00:00:00]".into(),
        "#-----------------------------------------业务明细列表----------------------------------------".into(),
        columns.into(),
    ];
    let (mut tn, mut tf, mut rn, mut rf) = (0, 0, 0, 0);
    for r in rows {
        lines.push(bill_line(r));
        if r.trade {
            tn += 1;
            tf += r.amount_fen;
        } else {
            rn += 1;
            rf += r.amount_fen;
        }
    }
    lines.push("#-----------------------------------------业务明细列表结束------------------------------------".into());
    match footer {
        Some((a, b)) => {
            lines.push(a.into());
            lines.push(b.into());
        }
        None => {
            lines.push(format!(
                "#交易合计：{tn}笔，商家实收共{}元，商家优惠共0.00元",
                yuan(tf)
            ));
            lines.push(format!(
                "#退款合计：{rn}笔，商家实收退款共{}元，商家优惠退款共0.00元",
                yuan(rf)
            ));
        }
    }
    lines.push("#导出时间：[2026年01月03日 09:00:00]".into());
    let mut s = lines.join("\r\n");
    s.push_str("\r\n");
    s
}

pub fn trade<'a>(out_trade_no: &'a str, amount_fen: i64) -> BillRow<'a> {
    BillRow {
        trade: true,
        out_trade_no,
        request_no: "",
        amount_fen,
        fee_fen: -FeeContract::default().fee_minor(amount_fen),
        finished: "2026-01-02 08:01:00",
    }
}

/// The platform's refund of `amount_fen` (positive) with its fee returned, at 09:00.
pub fn refund<'a>(
    out_trade_no: &'a str,
    request_no: &'a str,
    amount_fen: i64,
    fee_fen: i64,
) -> BillRow<'a> {
    BillRow {
        trade: false,
        out_trade_no,
        request_no,
        amount_fen: -amount_fen,
        fee_fen,
        finished: "2026-01-02 09:00:00",
    }
}

pub fn config() -> ReconConfig {
    ReconConfig::new(DayWindow::shanghai(DAY.parse().unwrap()).unwrap())
}

pub fn input(gateway: &Path, bill: &Path, ops: &[(&str, &Path)]) -> ReconInput {
    ReconInput {
        gateway: vec![gateway.to_path_buf()],
        provider: vec![BillFile {
            path: bill.to_path_buf(),
            encoding: None,
        }],
        operators: ops
            .iter()
            .map(|(id, p)| OperatorFile {
                operator_id: id.to_string(),
                path: p.to_path_buf(),
            })
            .collect(),
    }
}

/// Runs a reconciliation expected to fail and returns its input errors.
pub fn errors_of(input: &ReconInput) -> Vec<InputError> {
    match reconcile(input, &config()) {
        Ok(_) => panic!("the run should have failed"),
        Err(e) => {
            assert!(!e.input_errors().is_empty(), "not an input failure: {e}");
            e.input_errors().to_vec()
        }
    }
}
