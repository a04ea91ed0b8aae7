//! The gateway's export, `turnpike-gateway-export v1`: one row per money record of the day.
//!
//! ```text
//! # turnpike-gateway-export v1
//! record_type,operator_id,business_day,out_trade_no,provider_trade_no,out_request_no,terminal_id,terminal_sequence,kind,amount_minor,fee_minor,currency,occurred_at_ms
//! payment,hz-metro,2026-01-02,M4711-1,2026010222001400001,,G0101,88,metro,300,2,CNY,1767312245000
//! refund,hz-metro,2026-01-02,M4711-1,2026010222001400001,R4711-9,,,metro,100,1,CNY,1767315845000
//! # end rows=2
//! ```
//!
//! UTF-8, `\n` or `\r\n`, no quoting (no cell may contain a comma or a quote). Full rules in
//! `docs/settlement-formats.md`.

use std::path::{Path, PathBuf};

use super::scan::{self, Lined, RangeOut, Trailer};
use super::{
    currency_index, parse_date, parse_minor, parse_u64, valid_id, InputError, InputErrorKind,
    Interner, Key, LocalInterner, Namespace,
};
/// A lower bound on a row's length, for sizing the partitions.
const ROW_BYTES_MIN: u64 = 100;

use crate::day::{clamp_offset, DayWindow};

/// The version line.
pub const VERSION_LINE: &str = "# turnpike-gateway-export v1";
/// The column header, in order.
pub const COLUMNS: [&str; 13] = [
    "record_type",
    "operator_id",
    "business_day",
    "out_trade_no",
    "provider_trade_no",
    "out_request_no",
    "terminal_id",
    "terminal_sequence",
    "kind",
    "amount_minor",
    "fee_minor",
    "currency",
    "occurred_at_ms",
];

/// What a gateway money record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordType {
    /// A captured charge attempt: money collected from the rider.
    Payment = 0,
    /// A refund (`out_request_no` = `R<charge>-<request>`).
    Refund = 1,
    /// A cancel that reversed a paid trade (the whole amount back).
    Reversal = 2,
}

/// The charge's kind, as in `charges.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeKind {
    Metro = 0,
    Toll = 1,
    Ticket = 2,
}

/// Sentinel for "no terminal" in records.
pub(crate) const NO_TERMINAL: u32 = u32::MAX;

/// One gateway row, compact: 56 bytes, no heap.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GwRec {
    pub key: Key,
    pub seq: u64,
    pub amount: i64,
    pub fee: i64,
    pub line: u32,
    pub terminal: u32,
    pub operator: u16,
    pub rtype: u8,
    pub kind: u8,
    pub currency: u8,
    pub file: u8,
    /// Business day relative to the settled day (0 = the day).
    pub day_off: i16,
}

impl Lined for GwRec {
    fn shift_line(&mut self, base: u32) {
        self.line = self.line.saturating_add(base);
    }
}

#[derive(Default)]
pub(crate) struct GwExtra {
    pub trailer: Trailer,
    /// Texts of keys that could not be packed, for reports.
    pub key_texts: Vec<(Key, Box<str>)>,
}

pub(crate) struct GwRead {
    /// [file][range]
    pub ranges: Vec<Vec<RangeOut<GwRec, GwExtra>>>,
}

/// Reads gateway export files; records are partitioned by trade key.
pub(crate) fn read(
    paths: &[PathBuf],
    day: &DayWindow,
    operators: &Interner,
    terminals: &Interner,
    threads: usize,
    part_bits: u32,
) -> Result<GwRead, (Vec<InputError>, u64)> {
    let mut errors = Vec::new();
    let mut jobs = Vec::new();
    let mut header_lines = Vec::new();
    for (fi, path) in paths.iter().enumerate() {
        match check_head(path) {
            Ok(data_start_len) => {
                let (start, len) = data_start_len;
                for (s, e) in scan::ranges(start, len, threads) {
                    jobs.push((fi, s, e));
                }
                header_lines.push(2);
            }
            Err(e) => {
                errors.push(e);
                header_lines.push(2);
            }
        }
    }
    if !errors.is_empty() {
        let n = errors.len() as u64;
        return Err((errors, n));
    }
    let results = scan::run_ranges(&jobs, threads, |fi, s, e| {
        read_range(
            &paths[fi], fi as u8, s, e, day, operators, terminals, part_bits,
        )
    });
    let mut ranges: Vec<Vec<RangeOut<GwRec, GwExtra>>> = paths.iter().map(|_| Vec::new()).collect();
    let mut total = 0u64;
    for ((fi, _, _), r) in jobs.iter().zip(results) {
        match r {
            Ok(out) => ranges[*fi].push(out),
            Err(e) => {
                errors.push(super::file_error(
                    &paths[*fi],
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
        let (mut errs, n, firsts) = scan::fix_lines(&paths[fi], header_lines[fi], outs);
        let trailers: Vec<&Trailer> = outs.iter().map(|o| &o.extra.trailer).collect();
        let before = errs.len();
        scan::check_trailer(&paths[fi], &trailers, &firsts, &mut errs);
        total += n + (errs.len() - before) as u64;
        errors.extend(errs);
    }
    if errors.is_empty() {
        Ok(GwRead { ranges })
    } else {
        Err((errors, total))
    }
}

/// Checks the version line and the column header; returns (offset of the first data byte, file
/// length).
fn check_head(path: &Path) -> Result<(u64, u64), InputError> {
    let (lines, ends, len) = scan::head_lines(path, 2).map_err(|e| {
        super::file_error(
            path,
            InputErrorKind::Unreadable,
            format!("cannot read: {e}"),
        )
    })?;
    let first = lines.first().map(|l| strip_bom(l)).unwrap_or_default();
    if first != VERSION_LINE.as_bytes() {
        let reason = if first.starts_with(b"# turnpike-gateway-export ") {
            format!(
                "unsupported version `{}`; this reader knows `{VERSION_LINE}`",
                String::from_utf8_lossy(first)
            )
        } else {
            format!("the first line must be `{VERSION_LINE}`")
        };
        return Err(super::line_error(
            path,
            1,
            InputErrorKind::BadVersion,
            reason,
        ));
    }
    let header = lines.get(1).map(Vec::as_slice).unwrap_or_default();
    check_columns(path, 2, header, &COLUMNS)?;
    Ok((ends[1], len))
}

pub(crate) fn strip_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line)
}

pub(crate) fn check_columns(
    path: &Path,
    line: u64,
    header: &[u8],
    want: &[&str],
) -> Result<(), InputError> {
    let found: Vec<&[u8]> = header.split(|&b| b == b',').collect();
    if found.len() == want.len() && found.iter().zip(want).all(|(f, w)| *f == w.as_bytes()) {
        return Ok(());
    }
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|w| !found.contains(&w.as_bytes()))
        .collect();
    let unknown: Vec<String> = found
        .iter()
        .filter(|f| !want.iter().any(|w| w.as_bytes() == **f))
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let reason = if missing.is_empty() && unknown.is_empty() {
        format!("columns are out of order; expected `{}`", want.join(","))
    } else {
        format!(
            "wrong column set: missing [{}], unknown [{}]; expected `{}`",
            missing.join(", "),
            unknown.join(", "),
            want.join(",")
        )
    };
    Err(super::line_error(
        path,
        line,
        InputErrorKind::WrongColumns,
        reason,
    ))
}

#[allow(clippy::too_many_arguments)]
fn read_range(
    path: &Path,
    file: u8,
    start: u64,
    end: u64,
    day: &DayWindow,
    operators: &Interner,
    terminals: &Interner,
    part_bits: u32,
) -> std::io::Result<RangeOut<GwRec, GwExtra>> {
    let mut out: RangeOut<GwRec, GwExtra> =
        RangeOut::new(1 << part_bits, end - start, ROW_BYTES_MIN);
    let mut ops = LocalInterner::new(operators);
    let mut terms = LocalInterner::new(terminals);
    // The day's own date text, so the common case is one comparison.
    let today = day.day().to_string();
    let mut rel = 0u64;
    let lines = scan::for_each_line(path, start, end, |line| {
        let r = rel;
        rel += 1;
        if line.first() == Some(&b'#') {
            match scan::parse_trailer(line) {
                Some(n) if out.extra.trailer.trailer.is_none() => out.extra.trailer.trailer = Some((r, n)),
                Some(_) => out.errors.push(r, InputErrorKind::BadTotals, "a second trailer"),
                None => out.errors.push(r, InputErrorKind::BadValue, "a comment line inside the data (only the `# end rows=<n>` trailer may follow the header)"),
            }
            return;
        }
        out.extra.trailer.rows += 1;
        if out.extra.trailer.trailer.is_some() {
            out.extra.trailer.rows_after = true;
        }
        match parse_row(line, &today, day, &mut ops, &mut terms) {
            Ok((mut rec, text)) => {
                rec.line = r as u32;
                rec.file = file;
                if let Some(t) = text {
                    out.extra.key_texts.push((rec.key, t));
                }
                out.parts[rec.key.partition(part_bits)].push(rec);
            }
            Err((kind, reason)) => out.errors.push(r, kind, reason),
        }
    })?;
    out.lines = lines;
    Ok(out)
}

type RowResult = Result<(GwRec, Option<Box<str>>), (InputErrorKind, String)>;

fn parse_row(
    line: &[u8],
    today: &str,
    day: &DayWindow,
    ops: &mut LocalInterner<'_>,
    terms: &mut LocalInterner<'_>,
) -> RowResult {
    use InputErrorKind::*;
    let mut c = [&b""[..]; 13];
    let n = scan::split_cells(line, &mut c);
    if n != 13 {
        if line.is_empty() {
            return Err((BadValue, "empty line".into()));
        }
        return Err((WrongColumns, format!("expected 13 cells, found {n}")));
    }
    let bad = |col: &str, why: &str| (BadValue, format!("{col}: {why}"));
    let rtype = match c[0] {
        b"payment" => RecordType::Payment,
        b"refund" => RecordType::Refund,
        b"reversal" => RecordType::Reversal,
        _ => return Err(bad("record_type", "must be payment, refund or reversal")),
    };
    if !valid_id(c[1]) {
        return Err(bad(
            "operator_id",
            "must be 1-64 characters of [A-Za-z0-9._:-]",
        ));
    }
    let day_off = if c[2] == today.as_bytes() {
        0
    } else {
        let d = parse_date(c[2]).ok_or_else(|| bad("business_day", "must be a date YYYY-MM-DD"))?;
        clamp_offset(day.offset_date(d))
    };
    let trade_no = c[3];
    if !valid_ref(trade_no) {
        return Err(bad(
            "out_trade_no",
            "must be 1-64 printable ASCII characters",
        ));
    }
    if !c[4].is_empty() && !valid_ref(c[4]) {
        return Err(bad(
            "provider_trade_no",
            "must be empty or 1-64 printable ASCII characters",
        ));
    }
    let request_no = c[5];
    let (ns, key_text) = match rtype {
        RecordType::Payment | RecordType::Reversal if !request_no.is_empty() => {
            return Err(bad("out_request_no", "only refunds have a request number"))
        }
        RecordType::Payment => (Namespace::Payment, trade_no),
        RecordType::Reversal => (Namespace::Reversal, trade_no),
        RecordType::Refund => {
            if !valid_ref(request_no) {
                return Err(bad(
                    "out_request_no",
                    "a refund needs its request number (1-64 printable ASCII characters)",
                ));
            }
            (Namespace::Refund, request_no)
        }
    };
    let (terminal, seq) = match (c[6].is_empty(), c[7].is_empty()) {
        (true, true) => (super::gateway::NO_TERMINAL, 0),
        (false, false) => {
            if rtype != RecordType::Payment {
                return Err(bad("terminal_id", "only payments have a terminal"));
            }
            if !valid_id(c[6]) {
                return Err(bad(
                    "terminal_id",
                    "must be 1-64 characters of [A-Za-z0-9._:-]",
                ));
            }
            let seq = parse_u64(c[7])
                .ok_or_else(|| bad("terminal_sequence", "must be an unsigned integer"))?;
            (terms.id(c[6]), seq)
        }
        _ => {
            return Err(bad(
                "terminal_id",
                "terminal_id and terminal_sequence are given together or not at all",
            ))
        }
    };
    let kind = match c[8] {
        b"metro" => ChargeKind::Metro,
        b"toll" => ChargeKind::Toll,
        b"ticket" => ChargeKind::Ticket,
        _ => return Err(bad("kind", "must be metro, toll or ticket")),
    };
    let amount = parse_minor(c[9]).map_err(|(k, why)| (k, format!("amount_minor: {why}")))?;
    if amount <= 0 {
        return Err(bad(
            "amount_minor",
            "must be positive (the record type gives the direction)",
        ));
    }
    let fee = parse_minor(c[10]).map_err(|(k, why)| (k, format!("fee_minor: {why}")))?;
    if fee < 0 || fee > amount {
        return Err(bad("fee_minor", "must be between 0 and the amount"));
    }
    let currency =
        currency_index(c[11]).ok_or_else(|| bad("currency", "not a supported ISO 4217 code"))?;
    let occurred = parse_minor(c[12]).map_err(|(k, why)| (k, format!("occurred_at_ms: {why}")))?;
    if occurred < 0 {
        return Err(bad("occurred_at_ms", "must be UTC Unix milliseconds"));
    }
    let operator = ops.id(c[1]);
    let operator =
        u16::try_from(operator).map_err(|_| bad("operator_id", "more than 65535 operators"))?;
    let (key, packed) = Key::new(ns, key_text);
    let text = (!packed).then(|| String::from_utf8_lossy(key_text).into());
    Ok((
        GwRec {
            key,
            seq,
            amount,
            fee,
            line: 0,
            terminal,
            operator,
            rtype: rtype as u8,
            kind: kind as u8,
            currency,
            file: 0,
            day_off,
        },
        text,
    ))
}

/// Trade and request numbers: 1–64 printable ASCII characters other than comma and quote.
pub(crate) fn valid_ref(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.iter()
            .all(|&b| (0x21..0x7f).contains(&b) && b != b',' && b != b'"')
}
