//! The three input formats and their readers.
//!
//! - [`gateway`]: the gateway's export, `turnpike-gateway-export v1` (our format).
//! - [`provider`]: the provider's daily bill (业务明细), the platform's 25 columns, GBK or UTF-8.
//! - [`operator`]: an operator's own export of gate and booth transactions,
//!   `turnpike-operator-export v1` (our format).
//!
//! The layouts are documented in `docs/settlement-formats.md`. Every reader reports each problem
//! as an [`InputError`] with file, line and reason and never drops a row silently.
//!
//! The readers are built for a day of tens of millions of rows: files are streamed in
//! [`BLOCK_BYTES`] blocks (never held whole in memory), split into byte ranges read by separate
//! threads, cut into lines with `memchr` and into cells with a 16-byte compare, and turned into
//! fixed-size records with integer keys (trade numbers packed, terminal ids interned), so no
//! row allocates.

pub mod gateway;
pub mod operator;
pub mod provider;
pub(crate) mod scan;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::day::days_from_civil;
pub use crate::error::{InputError, InputErrorKind};

/// The read block: big enough that a `pread` costs nothing per row, small enough that two
/// threads' buffers are noise next to the records.
pub const BLOCK_BYTES: usize = 8 << 20;
/// The longest line any format may have. A longer one is an [`InputErrorKind::Unreadable`] file.
pub const LINE_BYTES_MAX: usize = 64 << 10;
/// Errors kept per file (all are counted); a file that is wrong throughout would otherwise
/// produce millions of identical messages.
pub const ERRORS_MAX_PER_FILE: usize = 100;
/// Longest id (operator, terminal) the exports may carry.
pub const ID_BYTES_MAX: usize = 64;

/// A trade or refund number as a fixed-size integer.
///
/// The gateway's numbers (`M<charge>_<attempt>`, `T…`, `K…`, `R<charge>-<request>`; trade
/// numbers before the provider's character rule was followed used `-` too) are packed exactly:
/// the high bit set, the namespace, the separator, the letter and the suffix in `hi`, the charge
/// id in `lo`. Any other text (a request id with letters, a foreign order number) is hashed with two
/// independent 64-bit functions into 120 bits, where an accidental collision among even a billion
/// keys has a probability below 2^-60; its text is kept aside for reports.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Key {
    hi: u64,
    lo: u64,
}

/// What a key identifies; the same number in two namespaces never matches.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Namespace {
    /// A payment, by `out_trade_no`.
    Payment = 1,
    /// A refund, by `out_request_no`.
    Refund = 2,
    /// A reversal (a cancel that refunded a paid trade), by `out_trade_no`.
    Reversal = 3,
}

const PACKED: u64 = 1 << 63;
/// Set in a packed key whose separator is `_` (clear: `-`).
const UNDERSCORE_BIT: u32 = 48;

impl Key {
    /// Packs or hashes `text` in `ns`. Returns whether the key was packed (if not, the caller
    /// keeps the text for reports).
    pub(crate) fn new(ns: Namespace, text: &[u8]) -> (Key, bool) {
        if let Some((letter, number, separator, suffix)) = pack_trade_no(text) {
            let underscore = u64::from(separator == b'_') << UNDERSCORE_BIT;
            let hi =
                PACKED | (ns as u64) << 56 | underscore | (letter as u64) << 32 | suffix as u64;
            return (Key { hi, lo: number }, true);
        }
        let h1 = hash_bytes(0x51_7c_c1_b7_27_22_0a_95, text);
        let h2 = hash_bytes(0x2d_35_8d_cc_aa_6c_78_a5, text);
        let hi = (ns as u64) << 56 | (h1 & 0x00ff_ffff_ffff_ffff);
        (Key { hi, lo: h2 }, false)
    }

    /// The key's [`Namespace`] as its number.
    pub(crate) fn namespace(&self) -> u8 {
        ((self.hi >> 56) & 0x7f) as u8
    }

    /// The text of a packed key; `None` for a hashed one.
    pub(crate) fn packed_text(&self) -> Option<String> {
        if self.hi & PACKED == 0 {
            return None;
        }
        let letter = ((self.hi >> 32) & 0xff) as u8 as char;
        let separator = if self.hi >> UNDERSCORE_BIT & 1 == 1 {
            '_'
        } else {
            '-'
        };
        let suffix = self.hi & 0xffff_ffff;
        Some(format!("{letter}{}{separator}{suffix}", self.lo))
    }

    pub(crate) fn partition(&self, bits: u32) -> usize {
        (mix64(self.hi ^ self.lo.rotate_left(29)) >> (64 - bits)) as usize
    }
}

/// `[A-Z]<u64>[-_]<u32>` without leading zeros (so that one number has one text): the letter,
/// the number, the separator and the suffix.
fn pack_trade_no(text: &[u8]) -> Option<(u8, u64, u8, u32)> {
    let (&letter, rest) = text.split_first()?;
    if !letter.is_ascii_uppercase() {
        return None;
    }
    let at = memchr::memchr2(b'-', b'_', rest)?;
    let number = canonical_u64(&rest[..at])?;
    let suffix = canonical_u64(&rest[at + 1..])?;
    Some((letter, number, rest[at], u32::try_from(suffix).ok()?))
}

fn canonical_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    parse_u64(digits)
}

/// A terminal (interned id) and its sequence number: the operator-side key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) struct TermKey {
    pub terminal: u32,
    pub seq: u64,
}

impl TermKey {
    pub(crate) fn partition(&self, bits: u32) -> usize {
        (mix64((self.terminal as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ self.seq)
            >> (64 - bits)) as usize
    }
}

/// The finaliser of MurmurHash3: a cheap, well-spread 64-bit mix.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = mix64(h ^ u64::from_le_bytes(word)).wrapping_add(seed);
    }
    mix64(h)
}

/// A hasher for keys that are already well mixed or small integers.
#[derive(Default)]
pub(crate) struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = hash_bytes(self.0, bytes);
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(31);
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64);
    }
    fn write_u128(&mut self, x: u128) {
        self.write_u64(x as u64);
        self.write_u64((x >> 64) as u64);
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<MixHasher>>;

/// Ids shared by every reader thread (operators, terminals): a global table behind a lock, and a
/// per-thread cache in front of it, so the lock is taken once per distinct id per thread.
#[derive(Default)]
pub(crate) struct Interner {
    inner: Mutex<InternerInner>,
}

#[derive(Default)]
struct InternerInner {
    ids: FastMap<Box<[u8]>, u32>,
    names: Vec<String>,
}

impl Interner {
    pub(crate) fn id(&self, name: &[u8]) -> u32 {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&id) = inner.ids.get(name) {
            return id;
        }
        let id = inner.names.len() as u32;
        inner.names.push(String::from_utf8_lossy(name).into_owned());
        inner.ids.insert(name.into(), id);
        id
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .names
            .clone()
    }
}

/// A thread's cache in front of an [`Interner`], no allocation per row. Ids of 4 to 15 bytes
/// (realistic terminal and operator ids) are packed into a `u128` and looked up first in a
/// direct-mapped cache (one multiply, one load), then in a map; others go to a byte-keyed map.
pub(crate) struct LocalInterner<'a> {
    global: &'a Interner,
    direct: Vec<(u128, u32)>,
    short: FastMap<u128, u32>,
    long: FastMap<Box<[u8]>, u32>,
}

#[inline]
fn read_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

#[inline]
fn read_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

/// Direct-mapped cache slots: a few thousand terminals per file mostly hit.
const DIRECT_BITS: u32 = 13;

impl<'a> LocalInterner<'a> {
    pub(crate) fn new(global: &'a Interner) -> Self {
        LocalInterner {
            global,
            // Packed ids always have a non-zero length byte, so 0 marks an empty slot.
            direct: vec![(0, 0); 1 << DIRECT_BITS],
            short: FastMap::default(),
            long: FastMap::default(),
        }
    }

    #[inline]
    pub(crate) fn id(&mut self, name: &[u8]) -> u32 {
        let len = name.len();
        if !(4..16).contains(&len) {
            return self.id_long(name);
        }
        // Two overlapping little-endian loads cover every byte; with the length in the top
        // byte the value identifies the id exactly (no byte-wise copy, no store-forwarding stall).
        let (lo, hi) = if len >= 8 {
            // Bytes 8..len are the top (len - 8) bytes of the last eight.
            let tail = if len > 8 {
                read_u64(&name[len - 8..]) >> ((16 - len) * 8)
            } else {
                0
            };
            (read_u64(&name[..8]), tail)
        } else {
            let a = read_u32(&name[..4]) as u64;
            let b = (read_u32(&name[len - 4..]) as u64) >> ((8 - len) * 8);
            (a | b << 32, 0)
        };
        let packed = (lo as u128) | ((hi | (len as u64) << 56) as u128) << 64;
        let slot = ((lo ^ hi.rotate_left(23) ^ len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            >> (64 - DIRECT_BITS)) as usize;
        let (k, id) = self.direct[slot];
        if k == packed {
            return id;
        }
        let id = match self.short.get(&packed) {
            Some(&id) => id,
            None => {
                let id = self.global.id(name);
                self.short.insert(packed, id);
                id
            }
        };
        self.direct[slot] = (packed, id);
        id
    }

    fn id_long(&mut self, name: &[u8]) -> u32 {
        if let Some(&id) = self.long.get(name) {
            return id;
        }
        let id = self.global.id(name);
        self.long.insert(name.into(), id);
        id
    }
}

/// An error found by a reader thread, before its line number is known in the whole file.
#[derive(Debug, Clone)]
pub(crate) struct RawError {
    /// 0-based line within the thread's range.
    pub rel_line: u64,
    pub kind: InputErrorKind,
    pub reason: String,
}

/// The errors of one range: the first [`ERRORS_MAX_PER_FILE`] kept, all counted.
#[derive(Debug, Default)]
pub(crate) struct Errors {
    pub kept: Vec<RawError>,
    pub total: u64,
}

impl Errors {
    pub(crate) fn push(&mut self, rel_line: u64, kind: InputErrorKind, reason: impl Into<String>) {
        self.total += 1;
        if self.kept.len() < ERRORS_MAX_PER_FILE {
            self.kept.push(RawError {
                rel_line,
                kind,
                reason: reason.into(),
            });
        }
    }
}

pub(crate) fn file_error(
    path: &Path,
    kind: InputErrorKind,
    reason: impl Into<String>,
) -> InputError {
    InputError {
        file: path.to_path_buf(),
        line: None,
        kind,
        reason: reason.into(),
    }
}

pub(crate) fn line_error(
    path: &Path,
    line: u64,
    kind: InputErrorKind,
    reason: impl Into<String>,
) -> InputError {
    InputError {
        file: path.to_path_buf(),
        line: Some(line),
        kind,
        reason: reason.into(),
    }
}

/// Rejects the same path twice and two files with identical content (compared byte for byte
/// when their sizes are equal): a file exported twice under two names must not be counted twice.
pub(crate) fn check_distinct_files(paths: &[PathBuf]) -> Result<(), Vec<InputError>> {
    use std::io::Read;
    let mut errors = Vec::new();
    let mut sizes = Vec::with_capacity(paths.len());
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_file() => sizes.push(Some(m.len())),
            Ok(_) => {
                errors.push(file_error(
                    p,
                    InputErrorKind::Unreadable,
                    "not a regular file",
                ));
                sizes.push(None);
            }
            Err(e) => {
                errors.push(file_error(
                    p,
                    InputErrorKind::Unreadable,
                    format!("cannot open: {e}"),
                ));
                sizes.push(None);
            }
        }
    }
    let same_content = |a: &Path, b: &Path| -> std::io::Result<bool> {
        let (mut fa, mut fb) = (std::fs::File::open(a)?, std::fs::File::open(b)?);
        let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
        loop {
            let na = read_full(&mut fa, &mut ba)?;
            let nb = read_full(&mut fb, &mut bb)?;
            if na != nb || ba[..na] != bb[..nb] {
                return Ok(false);
            }
            if na == 0 {
                return Ok(true);
            }
        }
    };
    fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
    for i in 0..paths.len() {
        for j in 0..i {
            let (Some(si), Some(sj)) = (sizes[i], sizes[j]) else {
                continue;
            };
            let same_path = match (paths[i].canonicalize(), paths[j].canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => paths[i] == paths[j],
            };
            if same_path {
                errors.push(file_error(
                    &paths[i],
                    InputErrorKind::DuplicateFile,
                    format!(
                        "the same file is given twice (also as {})",
                        paths[j].display()
                    ),
                ));
                break;
            }
            if si == sj {
                match same_content(&paths[i], &paths[j]) {
                    Ok(true) => {
                        errors.push(file_error(
                            &paths[i],
                            InputErrorKind::DuplicateFile,
                            format!("same content as {}", paths[j].display()),
                        ));
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => errors.push(file_error(
                        &paths[i],
                        InputErrorKind::Unreadable,
                        format!("cannot read: {e}"),
                    )),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

// ---- cell parsers: no allocation, exact, strict ----

/// Strips spaces and tabs around a cell (bills pad many cells with a trailing tab).
pub(crate) fn trim(cell: &[u8]) -> &[u8] {
    let mut s = cell;
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

pub(crate) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

/// An integer count of minor units, `-?[0-9]+`. A decimal point is a precision error, anything
/// else a value error.
pub(crate) fn parse_minor(cell: &[u8]) -> Result<i64, (InputErrorKind, &'static str)> {
    let (neg, digits) = match cell {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, cell),
    };
    if memchr::memchr(b'.', digits).is_some() {
        return Err((
            InputErrorKind::BadPrecision,
            "amounts are integer minor units (fen); a decimal point is not allowed",
        ));
    }
    let v = parse_u64(digits).ok_or((InputErrorKind::BadValue, "not an integer"))?;
    let v = i64::try_from(v).map_err(|_| (InputErrorKind::BadValue, "out of range"))?;
    Ok(if neg { -v } else { v })
}

/// A yuan amount with at most two decimals (`12`, `12.5`, `-0.03`) as fen.
pub(crate) fn parse_yuan(cell: &[u8]) -> Result<i64, (InputErrorKind, &'static str)> {
    let (neg, body) = match cell {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, cell),
    };
    let (int, frac) = match memchr::memchr(b'.', body) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let bad = (InputErrorKind::BadValue, "not a decimal amount");
    if int.is_empty() || int.len() > 15 {
        return Err(bad);
    }
    let mut fen = parse_u64(int).ok_or(bad)? as i64 * 100;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
            return Err(bad);
        }
        if frac.len() > 2 {
            return Err((
                InputErrorKind::BadPrecision,
                "more than 2 decimal places in a yuan amount",
            ));
        }
        let d = parse_u64(frac).ok_or(bad)? as i64;
        fen += if frac.len() == 1 { d * 10 } else { d };
    }
    Ok(if neg { -fen } else { fen })
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits_n(s: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as u32;
    }
    Some(v)
}

/// `YYYY-MM-DD` → days since the epoch.
pub(crate) fn parse_date(s: &[u8]) -> Option<i64> {
    if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let (y, m, d) = (
        digits_n(&s[0..4])? as i64,
        digits_n(&s[5..7])?,
        digits_n(&s[8..10])?,
    );
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// `HH:MM:SS` → seconds of the day.
fn parse_hms(s: &[u8]) -> Option<i64> {
    if s.len() != 8 || s[2] != b':' || s[5] != b':' {
        return None;
    }
    let (h, m, sec) = (
        digits_n(&s[0..2])?,
        digits_n(&s[3..5])?,
        digits_n(&s[6..8])?,
    );
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some((h * 3600 + m * 60 + sec) as i64)
}

/// `YYYY-MM-DD HH:MM:SS` (a wall-clock time, no zone) → seconds since the epoch of that
/// wall clock.
pub(crate) fn parse_local_datetime(s: &[u8]) -> Option<i64> {
    if s.len() != 19 || s[10] != b' ' {
        return None;
    }
    Some(parse_date(&s[..10])? * 86_400 + parse_hms(&s[11..])?)
}

/// RFC 3339 with seconds and an explicit offset: `2026-01-02T08:04:05Z`,
/// `2026-01-02T08:04:05.123+08:00` (up to 9 fraction digits; below a millisecond is
/// truncated) → UTC Unix milliseconds.
pub(crate) fn parse_rfc3339_ms(s: &[u8]) -> Option<i64> {
    if s.len() < 20 || !matches!(s[10], b'T' | b't') {
        return None;
    }
    let secs = parse_date(&s[..10])? * 86_400 + parse_hms(&s[11..19])?;
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let [b'.', tail @ ..] = rest {
        let n = tail.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let mut frac = digits_n(&tail[..n.min(3)])? as i64;
        for _ in n..3 {
            frac *= 10;
        }
        ms = frac;
        rest = &tail[n..];
    }
    let offset_s = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits_n(&[*h1, *h2])? as i64;
            let m = digits_n(&[*m1, *m2])? as i64;
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    Some((secs - offset_s) * 1000 + ms)
}

/// An id as the exports allow it: 1–64 bytes of `[A-Za-z0-9._:-]`.
pub(crate) fn valid_id(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= ID_BYTES_MAX
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The index of a currency code in [`turnpike_wire::Currency::ALL`].
pub(crate) fn currency_index(code: &[u8]) -> Option<u8> {
    if code == b"CNY" {
        return Some(0);
    }
    turnpike_wire::Currency::ALL
        .iter()
        .position(|c| c.code().as_bytes() == code)
        .map(|i| i as u8)
}

pub(crate) fn currency_of(index: u8) -> turnpike_wire::Currency {
    turnpike_wire::Currency::ALL[index as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves interning gives one id per distinct name, whatever its length.
    #[test]
    fn interner_is_exact() {
        let global = Interner::default();
        let mut local = LocalInterner::new(&global);
        let names: Vec<String> = (0..20)
            .flat_map(|len| ["a", "b", "ab"].map(|p| format!("{p}{}", "x".repeat(len))))
            .chain((0..3000).map(|i| format!("G{i}")))
            .collect();
        let ids: Vec<u32> = names.iter().map(|n| local.id(n.as_bytes())).collect();
        let again: Vec<u32> = names.iter().map(|n| local.id(n.as_bytes())).collect();
        assert_eq!(ids, again);
        let mut distinct = ids.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), names.len());
        assert_eq!(global.names()[ids[5] as usize], names[5]);
    }

    /// Proves the strict cell parsers accept exactly their documented syntax.
    #[test]
    fn parsers() {
        assert_eq!(parse_yuan(b"12.5"), Ok(1250));
        assert_eq!(parse_yuan(b"-0.03"), Ok(-3));
        assert_eq!(parse_yuan(b"7"), Ok(700));
        assert_eq!(
            parse_yuan(b"1.234").unwrap_err().0,
            InputErrorKind::BadPrecision
        );
        assert!(
            parse_yuan(b"1.").is_err() && parse_yuan(b"").is_err() && parse_yuan(b"1e3").is_err()
        );
        assert_eq!(parse_minor(b"-300"), Ok(-300));
        assert_eq!(
            parse_minor(b"3.00").unwrap_err().0,
            InputErrorKind::BadPrecision
        );
        assert_eq!(parse_date(b"1970-01-02"), Some(1));
        assert_eq!(parse_date(b"2026-02-29"), None);
        assert_eq!(parse_rfc3339_ms(b"1970-01-01T08:00:01.5+08:00"), Some(1500));
        assert_eq!(parse_rfc3339_ms(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_local_datetime(b"1970-01-02 00:00:01"), Some(86_401));
        let (k, packed) = Key::new(Namespace::Payment, b"M123-4");
        assert!(packed);
        assert_eq!(k.packed_text().as_deref(), Some("M123-4"));
        let (u, packed) = Key::new(Namespace::Payment, b"M123_4");
        assert!(packed);
        assert_eq!(u.packed_text().as_deref(), Some("M123_4"));
        assert_ne!(u, k, "M123_4 and M123-4 are different numbers");
        assert!(!Key::new(Namespace::Payment, b"M0123-4").1);
        assert_ne!(k, Key::new(Namespace::Refund, b"M123-4").0);
    }
}
