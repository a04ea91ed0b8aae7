//! The daily trade bill (`bill_type=trade`, 业务明细) as the platform writes it: comment header
//! lines, the platform's 25 columns, one 交易 row per trade paid that Asia/Shanghai day, one 退款
//! row per refund made that day (cancel reversals included, with an empty request number), then
//! the footer with the totals.
//!
//! Cells the platform pads with a tab (trade and order numbers, type, store, operator, terminal,
//! counterparty, red-packet amount, refund request number) are padded the same way, so parsers
//! written against real bills work unchanged. Amounts are yuan with two places: 交易 rows
//! positive with the service fee negative (charged), 退款 rows negative with the fee share
//! positive (given back).
//!
//! Only committed money movements are read, so an aborted or refused call never shows up. The
//! real platform serves a zip of GBK CSVs from a short-lived URL; the sandbox serves the one
//! detail CSV, in GBK or UTF-8.

use jiff::civil::Date;

use crate::money::format_fen;
use crate::store::{RefundKind, RefundRow, TradeRow};
use crate::time::{api_time, shanghai};
use crate::trade::mask_logon_id;

/// The platform's column headers, in order.
pub use turnpike_provider_wire::BILL_COLUMNS as COLUMNS;

/// Most rows of each kind one bill holds; a sandbox day never gets near it.
pub const ROWS_MAX: i64 = 100_000;

pub struct BillInput<'a> {
    /// The merchant account shown in the header (the app's 2088… id with the platform's `0156`
    /// suffix).
    pub account: &'a str,
    pub date: Date,
    pub trades: &'a [TradeRow],
    pub refunds: &'a [(RefundRow, TradeRow)],
    pub exported_at_ms: i64,
}

/// `yyyy年MM月dd日 HH:mm:ss` of the platform's comment lines.
fn chinese_time(ms: i64) -> String {
    shanghai(ms, "%Y年%m月%d日 %H:%M:%S")
}

fn chinese_midnight(date: Date) -> String {
    format!(
        "{}年{:02}月{:02}日 00:00:00",
        date.year(),
        date.month(),
        date.day()
    )
}

/// A CSV cell: the platform writes no quotes, so commas and line breaks in free text (subject)
/// are replaced rather than quoted.
fn cell(text: &str) -> String {
    text.replace([',', '\r', '\n'], " ")
}

fn counterparty(t: &TradeRow) -> String {
    t.buyer_logon_id
        .as_deref()
        .map(mask_logon_id)
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn row(
    t: &TradeRow,
    kind: &str,
    finished_ms: i64,
    amount_fen: i64,
    request_no: &str,
    fee_fen: i64,
) -> String {
    let opt = |v: &Option<String>| cell(v.as_deref().unwrap_or(""));
    let cells = [
        format!("{}\t", t.trade_no),
        format!("{}\t", cell(&t.out_trade_no)),
        format!("{kind}\t"),
        cell(&t.subject),
        api_time(t.created_at_ms),
        api_time(finished_ms),
        format!("{}\t", opt(&t.store_id)),
        // The sandbox has no store names; the platform shows the name registered for store_id.
        "\t".to_string(),
        format!("{}\t", opt(&t.operator_id)),
        format!("{}\t", opt(&t.terminal_id)),
        format!("{}\t", counterparty(t)),
        format_fen(amount_fen),
        format_fen(amount_fen),
        "0.00".into(),
        "0.00".into(),
        "0.00".into(),
        "0.00".into(),
        "0.00".into(),
        String::new(),
        "0.00\t".into(),
        "0.00".into(),
        format!("{}\t", cell(request_no)),
        format_fen(fee_fen),
        "0.00".into(),
        String::new(),
    ];
    cells.join(",")
}

/// The bill's text (UTF-8; encode it for the wire with [`encode`]). Lines end with CRLF.
pub fn render(input: &BillInput<'_>) -> String {
    let mut lines = vec![
        "#支付宝业务明细查询".to_string(),
        format!("#账号：[{}]", input.account),
        format!(
            "#起始日期：[{}]   终止日期：[{}]",
            chinese_midnight(input.date),
            chinese_midnight(input.date.tomorrow().unwrap_or(input.date))
        ),
        "#-----------------------------------------业务明细列表----------------------------------------"
            .to_string(),
        COLUMNS.join(","),
    ];
    let mut trade_total = 0;
    for t in input.trades {
        let paid = t.paid_at_ms.unwrap_or(t.created_at_ms);
        lines.push(row(t, "交易", paid, t.total_fen, "", -t.fee_fen));
        trade_total += t.total_fen;
    }
    let mut refund_total = 0;
    for (r, t) in input.refunds {
        let request_no = match r.kind {
            RefundKind::Refund => r.out_request_no.as_str(),
            RefundKind::Cancel => "",
        };
        lines.push(row(
            t,
            "退款",
            r.created_at_ms,
            -r.refund_fen,
            request_no,
            r.fee_fen,
        ));
        refund_total += r.refund_fen;
    }
    lines.push(
        "#-----------------------------------------业务明细列表结束------------------------------------"
            .to_string(),
    );
    lines.push(format!(
        "#交易合计：{}笔，商家实收共{}元，商家优惠共0.00元",
        input.trades.len(),
        format_fen(trade_total)
    ));
    lines.push(format!(
        "#退款合计：{}笔，商家实收退款共{}元，商家优惠退款共0.00元",
        input.refunds.len(),
        format_fen(-refund_total)
    ));
    lines.push(format!(
        "#导出时间：[{}]",
        chinese_time(input.exported_at_ms)
    ));
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text
}

/// The charsets a bill can be fetched in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Gbk,
    Utf8,
}

impl Charset {
    pub fn parse(s: &str) -> Option<Charset> {
        if s.eq_ignore_ascii_case("gbk") {
            Some(Charset::Gbk)
        } else if s.eq_ignore_ascii_case("utf-8") || s.eq_ignore_ascii_case("utf8") {
            Some(Charset::Utf8)
        } else {
            None
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Charset::Gbk => "GBK",
            Charset::Utf8 => "UTF-8",
        }
    }
}

/// The bill's bytes in `charset`. Characters GBK cannot hold (emoji in a subject) become `?`,
/// as a GBK export does.
pub fn encode(text: &str, charset: Charset) -> Vec<u8> {
    match charset {
        Charset::Utf8 => text.as_bytes().to_vec(),
        Charset::Gbk => {
            let cleaned: String = text
                .chars()
                .map(|c| {
                    let mut buf = [0u8; 4];
                    let (_, _, unmappable) = encoding_rs::GBK.encode(c.encode_utf8(&mut buf));
                    if unmappable {
                        '?'
                    } else {
                        c
                    }
                })
                .collect();
            encoding_rs::GBK.encode(&cleaned).0.into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the GBK encoding of the header round-trips and differs from UTF-8.
    #[test]
    fn gbk_round_trip() {
        let text = format!("#支付宝业务明细查询\r\n{}\r\n", COLUMNS.join(","));
        let gbk = encode(&text, Charset::Gbk);
        assert_ne!(gbk, text.as_bytes());
        let (back, _, errors) = encoding_rs::GBK.decode(&gbk);
        assert!(!errors);
        assert_eq!(back, text);
        assert_eq!(encode("a😀b", Charset::Gbk), b"a?b");
    }
}
