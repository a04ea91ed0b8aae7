//! An operator's export of its gate and booth transactions, `turnpike-operator-export v1`.
//!
//! ```text
//! # turnpike-operator-export v1
//! terminal_id,terminal_sequence,occurred_at,kind,amount_minor,currency
//! G0101,87,2026-01-02T07:41:10+08:00,entry,0,CNY
//! G0101,88,2026-01-02T08:04:05.123+08:00,exit,300,CNY
//! # end rows=2
//! ```
//!
//! One file per operator; the operator is named by whoever runs settlement, not by the file.
//! Rows with `amount_minor` 0 (entries, exits under a daily cap) are not money records: they are
//! counted, validated and otherwise left out of matching. Full rules in
//! `docs/settlement-formats.md`.

use std::path::{Path, PathBuf};

use super::gateway::{check_columns, strip_bom};
use super::scan::{self, Lined, RangeOut, Trailer};
use super::{
    currency_index, parse_minor, parse_rfc3339_ms, parse_u64, valid_id, InputError, InputErrorKind,
    Interner, LocalInterner, TermKey,
};
/// A lower bound on a row's length, for sizing the partitions.
const ROW_BYTES_MIN: u64 = 50;

use crate::day::{clamp_offset, DayWindow};

pub const VERSION_LINE: &str = "# turnpike-operator-export v1";
pub const COLUMNS: [&str; 6] = [
    "terminal_id",
    "terminal_sequence",
    "occurred_at",
    "kind",
    "amount_minor",
    "currency",
];

/// What the terminal recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TapKind {
    /// A metro entry (usually no money).
    Entry = 0,
    /// A metro exit: the fare.
    Exit = 1,
    /// A toll booth exit: the toll.
    TollExit = 2,
    /// A ticket sold at a ticket machine.
    Ticket = 3,
}

/// One operator money row, compact: 32 bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OpRec {
    pub seq: u64,
    pub amount: i64,
    pub terminal: u32,
    pub line: u32,
    /// Index of the operator file (which names the operator).
    pub file: u8,
    pub kind: u8,
    pub currency: u8,
    pub day_off: i16,
}

impl OpRec {
    pub(crate) fn term(&self) -> TermKey {
        TermKey {
            terminal: self.terminal,
            seq: self.seq,
        }
    }
}

impl Lined for OpRec {
    fn shift_line(&mut self, base: u32) {
        self.line = self.line.saturating_add(base);
    }
}

#[derive(Default)]
pub(crate) struct OpExtra {
    pub trailer: Trailer,
    /// Rows with amount 0: validated, counted, not matched.
    pub without_money: u64,
}

pub(crate) struct OpRead {
    /// [file][range]
    pub ranges: Vec<Vec<RangeOut<OpRec, OpExtra>>>,
}

pub(crate) fn read(
    paths: &[PathBuf],
    days: &[&DayWindow],
    terminals: &Interner,
    threads: usize,
    part_bits: u32,
) -> Result<OpRead, (Vec<InputError>, u64)> {
    let mut errors = Vec::new();
    let mut jobs = Vec::new();
    for (fi, path) in paths.iter().enumerate() {
        match check_head(path) {
            Ok((start, len)) => {
                for (s, e) in scan::ranges(start, len, threads) {
                    jobs.push((fi, s, e));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        let n = errors.len() as u64;
        return Err((errors, n));
    }
    let results = scan::run_ranges(&jobs, threads, |fi, s, e| {
        read_range(&paths[fi], fi as u8, s, e, days[fi], terminals, part_bits)
    });
    let mut ranges: Vec<Vec<RangeOut<OpRec, OpExtra>>> = paths.iter().map(|_| Vec::new()).collect();
    let mut total = 0;
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
        let (mut errs, n, firsts) = scan::fix_lines(&paths[fi], 2, outs);
        let trailers: Vec<&Trailer> = outs.iter().map(|o| &o.extra.trailer).collect();
        let before = errs.len();
        scan::check_trailer(&paths[fi], &trailers, &firsts, &mut errs);
        total += n + (errs.len() - before) as u64;
        errors.extend(errs);
    }
    if errors.is_empty() {
        Ok(OpRead { ranges })
    } else {
        Err((errors, total))
    }
}

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
        let reason = if first.starts_with(b"# turnpike-operator-export ") {
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

fn read_range(
    path: &Path,
    file: u8,
    start: u64,
    end: u64,
    day: &DayWindow,
    terminals: &Interner,
    part_bits: u32,
) -> std::io::Result<RangeOut<OpRec, OpExtra>> {
    let mut out: RangeOut<OpRec, OpExtra> =
        RangeOut::new(1 << part_bits, end - start, ROW_BYTES_MIN);
    let mut terms = LocalInterner::new(terminals);
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
        match parse_row(line, day, &mut terms) {
            Ok(Some(mut rec)) => {
                rec.line = r as u32;
                rec.file = file;
                out.parts[rec.term().partition(part_bits)].push(rec);
            }
            Ok(None) => out.extra.without_money += 1,
            Err((kind, reason)) => out.errors.push(r, kind, reason),
        }
    })?;
    out.lines = lines;
    Ok(out)
}

fn parse_row(
    line: &[u8],
    day: &DayWindow,
    terms: &mut LocalInterner<'_>,
) -> Result<Option<OpRec>, (InputErrorKind, String)> {
    use InputErrorKind::*;
    let mut c = [&b""[..]; 6];
    let n = scan::split_cells(line, &mut c);
    if n != 6 {
        if line.is_empty() {
            return Err((BadValue, "empty line".into()));
        }
        return Err((WrongColumns, format!("expected 6 cells, found {n}")));
    }
    let bad = |col: &str, why: &str| (BadValue, format!("{col}: {why}"));
    if !valid_id(c[0]) {
        return Err(bad(
            "terminal_id",
            "must be 1-64 characters of [A-Za-z0-9._:-]",
        ));
    }
    let seq =
        parse_u64(c[1]).ok_or_else(|| bad("terminal_sequence", "must be an unsigned integer"))?;
    let at_ms = parse_rfc3339_ms(c[2]).ok_or_else(|| {
        bad(
            "occurred_at",
            "must be RFC 3339 with seconds and an offset, e.g. 2026-01-02T08:04:05+08:00",
        )
    })?;
    let kind = match c[3] {
        b"entry" => TapKind::Entry,
        b"exit" => TapKind::Exit,
        b"toll_exit" => TapKind::TollExit,
        b"ticket" => TapKind::Ticket,
        _ => return Err(bad("kind", "must be entry, exit, toll_exit or ticket")),
    };
    let amount = parse_minor(c[4]).map_err(|(k, why)| (k, format!("amount_minor: {why}")))?;
    if amount < 0 {
        return Err(bad("amount_minor", "must not be negative"));
    }
    let currency =
        currency_index(c[5]).ok_or_else(|| bad("currency", "not a supported ISO 4217 code"))?;
    if amount == 0 {
        return Ok(None);
    }
    Ok(Some(OpRec {
        seq,
        amount,
        terminal: terms.id(c[0]),
        line: 0,
        file: 0,
        kind: kind as u8,
        currency,
        day_off: clamp_offset(day.offset_utc_ms(at_ms)),
    }))
}
