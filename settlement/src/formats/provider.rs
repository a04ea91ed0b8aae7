//! The provider's daily trade bill (业务明细), as the platform and the sandbox write it.
//!
//! Comment lines starting with `#` before the column header (title, account, 起始日期/终止日期)
//! and after the rows (交易合计, 退款合计, 导出时间); the platform's 25 columns; GBK or UTF-8;
//! cells may end with a tab; no quoting. A 交易 row is a payment (amounts positive, 服务费
//! negative: charged), a 退款 row a refund or, with an empty 退款批次号/请求号, a cancel reversal
//! (amounts negative, 服务费 positive: given back). The footer's counts and sums are checked
//! against the rows, so a truncated or edited bill is an error.
//!
//! Splitting GBK bytes at `,` and `\n` is safe: GBK's trail bytes are all above 0x3F.

use std::path::{Path, PathBuf};

use super::gateway::{strip_bom, valid_ref};
use super::scan::{self, Lined, RangeOut};
use super::{
    parse_local_datetime, parse_yuan, valid_id, InputError, InputErrorKind, Interner, Key,
    LocalInterner, Namespace,
};
/// A lower bound on a row's length, for sizing the partitions.
const ROW_BYTES_MIN: u64 = 180;

use crate::day::{clamp_offset, DayWindow, Windows};

/// The platform's columns (shared with the sandbox, which writes them).
pub use turnpike_provider_wire::BILL_COLUMNS as COLUMNS;

const COL_TRADE_NO: usize = 0;
const COL_OUT_TRADE_NO: usize = 1;
const COL_TYPE: usize = 2;
const COL_FINISHED: usize = 5;
const COL_OPERATOR: usize = 8;
const COL_RECEIVED: usize = 12;
const COL_REQUEST_NO: usize = 21;
const COL_FEE: usize = 22;

/// How many comment lines may precede the column header.
const HEADER_LINES_MAX: usize = 32;

/// The bill's character encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Encoding {
    Utf8,
    Gbk,
}

impl Encoding {
    fn decode(self, bytes: &[u8]) -> Option<String> {
        match self {
            Encoding::Utf8 => std::str::from_utf8(bytes).ok().map(str::to_owned),
            Encoding::Gbk => encoding_rs::GBK
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|c| c.into_owned()),
        }
    }

    fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Encoding::Utf8 => text.as_bytes().to_vec(),
            Encoding::Gbk => encoding_rs::GBK.encode(text).0.into_owned(),
        }
    }

    fn other(self) -> Encoding {
        match self {
            Encoding::Utf8 => Encoding::Gbk,
            Encoding::Gbk => Encoding::Utf8,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Gbk => "GBK",
        }
    }
}

/// A bill to read: its path and, if known, its encoding (otherwise detected from the column
/// header, which differs in every byte of Chinese text between GBK and UTF-8).
#[derive(Debug, Clone)]
pub struct BillFile {
    pub path: PathBuf,
    pub encoding: Option<Encoding>,
}

/// One bill row, compact: 40 bytes. Amounts are positive fen in the row's direction: a
/// payment's amount and the fee charged, or a refund's amount and the fee given back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PvRec {
    pub key: Key,
    pub amount: i64,
    pub fee: i64,
    pub line: u32,
    /// The 操作员 cell when it names a known-format operator id, else `u16::MAX`.
    pub operator: u16,
    pub file: u8,
    pub day_off: i16,
}

impl Lined for PvRec {
    fn shift_line(&mut self, base: u32) {
        self.line = self.line.saturating_add(base);
    }
}

#[derive(Default)]
pub(crate) struct PvExtra {
    pub trade_rows: u64,
    pub trade_fen: i64,
    pub refund_rows: u64,
    /// Negative, as the footer states it.
    pub refund_fen: i64,
    /// Rows seen (valid or not).
    pub rows: u64,
    /// Comment lines after the header: (line within range, bytes).
    pub footer: Vec<(u64, Vec<u8>)>,
    /// A data row after a footer line in this range.
    pub rows_after_footer: bool,
    pub key_texts: Vec<(Key, Box<str>)>,
}

pub(crate) struct PvRead {
    pub ranges: Vec<Vec<RangeOut<PvRec, PvExtra>>>,
    pub encodings: Vec<Encoding>,
}

struct Head {
    data_start: u64,
    len: u64,
    header_lines: u64,
    encoding: Encoding,
}

pub(crate) fn read(
    bills: &[BillFile],
    days: Windows<'_>,
    operators: &Interner,
    threads: usize,
    part_bits: u32,
) -> Result<PvRead, (Vec<InputError>, u64)> {
    let mut errors = Vec::new();
    let mut heads = Vec::new();
    let mut jobs = Vec::new();
    for (fi, bill) in bills.iter().enumerate() {
        match check_head(bill, days.default) {
            Ok(h) => {
                for (s, e) in scan::ranges(h.data_start, h.len, threads) {
                    jobs.push((fi, s, e));
                }
                heads.push(h);
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        let n = errors.len() as u64;
        return Err((errors, n));
    }
    let types: Vec<[Vec<u8>; 2]> = [Encoding::Utf8, Encoding::Gbk]
        .iter()
        .map(|e| [e.encode("交易"), e.encode("退款")])
        .collect();
    let results = scan::run_ranges(&jobs, threads, |fi, s, e| {
        let enc = heads[fi].encoding;
        let (mine, other) = match enc {
            Encoding::Utf8 => (&types[0], &types[1]),
            Encoding::Gbk => (&types[1], &types[0]),
        };
        read_range(
            &bills[fi].path,
            fi as u8,
            s,
            e,
            enc,
            mine,
            other,
            days,
            operators,
            part_bits,
        )
    });
    let mut ranges: Vec<Vec<RangeOut<PvRec, PvExtra>>> = bills.iter().map(|_| Vec::new()).collect();
    let mut total = 0;
    for ((fi, _, _), r) in jobs.iter().zip(results) {
        match r {
            Ok(out) => ranges[*fi].push(out),
            Err(e) => {
                errors.push(super::file_error(
                    &bills[*fi].path,
                    InputErrorKind::Unreadable,
                    format!("cannot read: {e}"),
                ));
                total += 1;
            }
        }
    }
    if !errors.is_empty() {
        return Err((errors, total));
    }
    for (fi, outs) in ranges.iter_mut().enumerate() {
        let path = &bills[fi].path;
        let (mut errs, n, firsts) = scan::fix_lines(path, heads[fi].header_lines, outs);
        total += n;
        let had_row_errors = n > 0;
        let before = errs.len();
        check_footer(
            path,
            heads[fi].encoding,
            outs,
            &firsts,
            had_row_errors,
            &mut errs,
        );
        total += (errs.len() - before) as u64;
        errors.extend(errs);
    }
    if errors.is_empty() {
        Ok(PvRead {
            ranges,
            encodings: heads.iter().map(|h| h.encoding).collect(),
        })
    } else {
        Err((errors, total))
    }
}

fn check_head(bill: &BillFile, day: &DayWindow) -> Result<Head, InputError> {
    let path = &bill.path;
    let (lines, ends, len) = scan::head_lines(path, HEADER_LINES_MAX + 1).map_err(|e| {
        super::file_error(
            path,
            InputErrorKind::Unreadable,
            format!("cannot read: {e}"),
        )
    })?;
    let Some(hi) = lines.iter().enumerate().position(|(i, l)| {
        let l = if i == 0 { strip_bom(l) } else { l };
        !l.starts_with(b"#")
    }) else {
        return Err(super::file_error(
            path,
            InputErrorKind::WrongColumns,
            format!("no column header within the first {HEADER_LINES_MAX} lines"),
        ));
    };
    let header = if hi == 0 {
        strip_bom(&lines[0])
    } else {
        &lines[hi]
    };
    let want = COLUMNS.join(",");
    let line_no = hi as u64 + 1;
    let encoding = match bill.encoding {
        Some(enc) => match enc.decode(header) {
            None => {
                return Err(super::line_error(
                    path,
                    line_no,
                    InputErrorKind::BadEncoding,
                    format!(
                        "the column header is not valid {} (the bill was declared {})",
                        enc.label(),
                        enc.label()
                    ),
                ))
            }
            Some(text) if text != want => return Err(columns_error(path, line_no, &text)),
            Some(_) => enc,
        },
        None => {
            let utf8 = Encoding::Utf8.decode(header);
            let gbk = Encoding::Gbk.decode(header);
            if utf8.as_deref() == Some(want.as_str()) {
                Encoding::Utf8
            } else if gbk.as_deref() == Some(want.as_str()) {
                Encoding::Gbk
            } else if let Some(text) = utf8.or(gbk) {
                return Err(columns_error(path, line_no, &text));
            } else {
                return Err(super::line_error(
                    path,
                    line_no,
                    InputErrorKind::BadEncoding,
                    "the column header is neither UTF-8 nor GBK",
                ));
            }
        }
    };
    // The header's 起始日期 must be the settled day (a bill of another day is a wrong input,
    // not a day of "missing" rows).
    for (i, l) in lines[..hi].iter().enumerate() {
        let Some(text) = encoding.decode(if i == 0 { strip_bom(l) } else { l }) else {
            return Err(super::line_error(
                path,
                i as u64 + 1,
                InputErrorKind::BadEncoding,
                format!("not valid {}", encoding.label()),
            ));
        };
        if let Some(rest) = text.split("起始日期：[").nth(1) {
            let bill_day = chinese_date(rest);
            let want_day = format!("{}", day.day());
            if bill_day.as_deref() != Some(want_day.as_str()) {
                return Err(super::line_error(
                    path,
                    i as u64 + 1,
                    InputErrorKind::BadValue,
                    format!(
                        "the bill is for {}, the run is for {want_day}",
                        bill_day.unwrap_or_else(|| "an unreadable date".into())
                    ),
                ));
            }
        }
    }
    Ok(Head {
        data_start: ends[hi],
        len,
        header_lines: hi as u64 + 1,
        encoding,
    })
}

fn columns_error(path: &Path, line: u64, text: &str) -> InputError {
    let found: Vec<&str> = text.split(',').collect();
    let missing: Vec<&str> = COLUMNS
        .iter()
        .copied()
        .filter(|c| !found.contains(c))
        .collect();
    super::line_error(
        path,
        line,
        InputErrorKind::WrongColumns,
        format!(
            "not the bill's 25 columns: found {} columns, missing [{}]",
            found.len(),
            missing.join(", ")
        ),
    )
}

/// `2026年01月02日 00:00:00]` → `2026-01-02`.
fn chinese_date(s: &str) -> Option<String> {
    let (y, rest) = s.split_once('年')?;
    let (m, rest) = rest.split_once('月')?;
    let (d, _) = rest.split_once('日')?;
    let (y, m, d): (i32, u32, u32) = (y.trim().parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

#[allow(clippy::too_many_arguments)]
fn read_range(
    path: &Path,
    file: u8,
    start: u64,
    end: u64,
    enc: Encoding,
    types: &[Vec<u8>; 2],
    other_types: &[Vec<u8>; 2],
    days: Windows<'_>,
    operators: &Interner,
    part_bits: u32,
) -> std::io::Result<RangeOut<PvRec, PvExtra>> {
    use InputErrorKind::*;
    let mut out: RangeOut<PvRec, PvExtra> =
        RangeOut::new(1 << part_bits, end - start, ROW_BYTES_MIN);
    let mut ops = LocalInterner::new(operators);
    let mut rel = 0u64;
    let lines = scan::for_each_line(path, start, end, |line| {
        let r = rel;
        rel += 1;
        if line.first() == Some(&b'#') {
            out.extra.footer.push((r, line.to_vec()));
            return;
        }
        if line.is_empty() && !out.extra.footer.is_empty() {
            // Blank lines after the footer are tolerated; in the data they are errors.
            return;
        }
        out.extra.rows += 1;
        if !out.extra.footer.is_empty() {
            out.extra.rows_after_footer = true;
        }
        let mut c = [&b""[..]; 25];
        let n = scan::split_cells(line, &mut c);
        if n != 25 {
            let reason = if line.is_empty() {
                "empty line".to_string()
            } else {
                format!("expected 25 cells, found {n}")
            };
            out.errors.push(
                r,
                if line.is_empty() {
                    BadValue
                } else {
                    WrongColumns
                },
                reason,
            );
            return;
        }
        let cell = |i: usize| super::trim(c[i]);
        let kind = cell(COL_TYPE);
        let is_trade = if kind == types[0].as_slice() {
            true
        } else if kind == types[1].as_slice() {
            false
        } else {
            if kind == other_types[0].as_slice() || kind == other_types[1].as_slice() {
                out.errors.push(
                    r,
                    BadEncoding,
                    format!(
                        "业务类型 is {} text in a {} bill",
                        enc.other().label(),
                        enc.label()
                    ),
                );
            } else {
                out.errors
                    .push(r, BadValue, "业务类型 must be 交易 or 退款");
            }
            return;
        };
        let out_trade_no = cell(COL_OUT_TRADE_NO);
        if !valid_ref(out_trade_no) {
            out.errors.push(
                r,
                BadValue,
                "商户订单号: must be 1-64 printable ASCII characters",
            );
            return;
        }
        if !valid_ref(cell(COL_TRADE_NO)) {
            out.errors.push(
                r,
                BadValue,
                "支付宝交易号: must be 1-64 printable ASCII characters",
            );
            return;
        }
        let Some(finished) = parse_local_datetime(cell(COL_FINISHED)) else {
            out.errors
                .push(r, BadValue, "完成时间: must be yyyy-MM-dd HH:mm:ss");
            return;
        };
        let received = match parse_yuan(cell(COL_RECEIVED)) {
            Ok(v) => v,
            Err((k, why)) => {
                out.errors.push(r, k, format!("商家实收（元）: {why}"));
                return;
            }
        };
        let fee = match parse_yuan(cell(COL_FEE)) {
            Ok(v) => v,
            Err((k, why)) => {
                out.errors.push(r, k, format!("服务费（元）: {why}"));
                return;
            }
        };
        let request_no = cell(COL_REQUEST_NO);
        let (ns, key_text, amount, fee) = if is_trade {
            if received <= 0 || fee > 0 {
                out.errors.push(
                    r,
                    BadValue,
                    "a 交易 row has a positive amount and a fee of zero or less",
                );
                return;
            }
            if !request_no.is_empty() {
                out.errors
                    .push(r, BadValue, "a 交易 row has no 退款批次号/请求号");
                return;
            }
            out.extra.trade_rows += 1;
            out.extra.trade_fen += received;
            (Namespace::Payment, out_trade_no, received, -fee)
        } else {
            if received >= 0 || fee < 0 {
                out.errors.push(
                    r,
                    BadValue,
                    "a 退款 row has a negative amount and a fee of zero or more",
                );
                return;
            }
            out.extra.refund_rows += 1;
            out.extra.refund_fen += received;
            if request_no.is_empty() {
                (Namespace::Reversal, out_trade_no, -received, fee)
            } else if valid_ref(request_no) {
                (Namespace::Refund, request_no, -received, fee)
            } else {
                out.errors.push(
                    r,
                    BadValue,
                    "退款批次号/请求号: must be 1-64 printable ASCII characters",
                );
                return;
            }
        };
        let op_cell = cell(COL_OPERATOR);
        let operator = if valid_id(op_cell) {
            u16::try_from(ops.id(op_cell)).unwrap_or(u16::MAX)
        } else {
            u16::MAX
        };
        let (key, packed) = Key::new(ns, key_text);
        if !packed {
            out.extra
                .key_texts
                .push((key, String::from_utf8_lossy(key_text).into()));
        }
        let rec = PvRec {
            key,
            amount,
            fee,
            line: r as u32,
            operator,
            file,
            // The row's day in its operator's window (the 操作员 cell; the default without one).
            day_off: clamp_offset(days.of(op_cell).offset_bill_local(finished)),
        };
        out.parts[key.partition(part_bits)].push(rec);
    })?;
    out.lines = lines;
    Ok(out)
}

/// The footer: `#交易合计：N笔，商家实收共X元…` and `#退款合计：M笔，商家实收退款共-Y元…`, after
/// all rows, agreeing with them.
fn check_footer(
    path: &Path,
    enc: Encoding,
    outs: &[RangeOut<PvRec, PvExtra>],
    firsts: &[u64],
    had_row_errors: bool,
    errors: &mut Vec<InputError>,
) {
    use InputErrorKind::*;
    let (mut trade_rows, mut trade_fen, mut refund_rows, mut refund_fen) = (0u64, 0i64, 0u64, 0i64);
    let mut trades_line = None;
    let mut refunds_line = None;
    for (k, o) in outs.iter().enumerate() {
        trade_rows += o.extra.trade_rows;
        trade_fen += o.extra.trade_fen;
        refund_rows += o.extra.refund_rows;
        refund_fen += o.extra.refund_fen;
        let later_rows = outs[k + 1..].iter().any(|o| o.extra.rows > 0);
        if let Some((rel, _)) = o.extra.footer.first() {
            if o.extra.rows_after_footer || later_rows {
                errors.push(super::line_error(
                    path,
                    firsts[k] + rel,
                    BadTotals,
                    "rows after the footer",
                ));
            }
        }
        for (rel, bytes) in &o.extra.footer {
            let line = firsts[k] + rel;
            let Some(text) = enc.decode(bytes) else {
                errors.push(super::line_error(
                    path,
                    line,
                    BadEncoding,
                    format!("not valid {}", enc.label()),
                ));
                continue;
            };
            if let Some(rest) = text.strip_prefix("#交易合计：") {
                trades_line = Some((line, totals(rest, "商家实收共")));
            } else if let Some(rest) = text.strip_prefix("#退款合计：") {
                refunds_line = Some((line, totals(rest, "商家实收退款共")));
            }
        }
    }
    for (what, found, rows, fen) in [
        ("交易合计", trades_line, trade_rows, trade_fen),
        ("退款合计", refunds_line, refund_rows, refund_fen),
    ] {
        match found {
            None => errors.push(super::file_error(
                path,
                BadTotals,
                format!("the footer has no #{what} line: the bill is truncated or not the platform's layout"),
            )),
            Some((line, None)) => errors.push(super::line_error(path, line, BadTotals, format!("#{what} is not readable"))),
            Some((line, Some((n, sum)))) => {
                if !had_row_errors && (n != rows || sum != fen) {
                    errors.push(super::line_error(
                        path,
                        line,
                        BadTotals,
                        format!(
                            "#{what} states {n} rows and {} yuan, the rows add up to {rows} and {}",
                            fen_text(sum),
                            fen_text(fen)
                        ),
                    ));
                }
            }
        }
    }
}

/// `N笔，<label>X.XX元…` → (N, X in fen).
fn totals(rest: &str, label: &str) -> Option<(u64, i64)> {
    let (n, rest) = rest.split_once('笔')?;
    let n = n.trim().parse().ok()?;
    let (_, rest) = rest.split_once(label)?;
    let (amount, _) = rest.split_once('元')?;
    Some((n, parse_yuan(amount.trim().as_bytes()).ok()?))
}

fn fen_text(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        fen.unsigned_abs() / 100,
        fen.unsigned_abs() % 100
    )
}
