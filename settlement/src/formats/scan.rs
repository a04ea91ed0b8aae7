//! Streaming a byte range of a file line by line, and cutting a line into cells.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{BLOCK_BYTES, LINE_BYTES_MAX};

/// Reads lines whose first byte lies in `[start, end)` of `path` and calls `f` with each (without
/// its `\n` or `\r\n`). A range that starts inside a line skips it: the range before owns it.
/// Returns the number of lines given to `f`.
pub(crate) fn for_each_line(
    path: &Path,
    start: u64,
    end: u64,
    mut f: impl FnMut(&[u8]),
) -> io::Result<u64> {
    for_each_line_while(path, start, end, |line| {
        f(line);
        true
    })
}

/// [`for_each_line`] that stops early, without reading further, when `f` returns `false`.
pub(crate) fn for_each_line_while(
    path: &Path,
    start: u64,
    end: u64,
    mut f: impl FnMut(&[u8]) -> bool,
) -> io::Result<u64> {
    let file = File::open(path)?;
    let mut buf = vec![0u8; BLOCK_BYTES];
    // Reading from start − 1 tells whether a line begins exactly at `start`.
    let mut pos = start.saturating_sub(1);
    let mut skip_partial = start > 0;
    let mut filled = 0usize;
    let mut eof = false;
    let mut lines = 0u64;
    loop {
        while filled < buf.len() && !eof {
            let n = file.read_at(&mut buf[filled..], pos + filled as u64)?;
            if n == 0 {
                eof = true;
            } else {
                filled += n;
            }
        }
        let mut i = 0usize;
        if skip_partial {
            match memchr::memchr(b'\n', &buf[..filled]) {
                Some(j) => {
                    i = j + 1;
                    skip_partial = false;
                }
                None if eof => return Ok(lines),
                None => {
                    pos += filled as u64;
                    filled = 0;
                    continue;
                }
            }
        }
        loop {
            if pos + i as u64 >= end {
                return Ok(lines);
            }
            match memchr::memchr(b'\n', &buf[i..filled]) {
                Some(j) => {
                    if j > LINE_BYTES_MAX {
                        return Err(too_long());
                    }
                    lines += 1;
                    if !f(strip_cr(&buf[i..i + j])) {
                        return Ok(lines);
                    }
                    i += j + 1;
                }
                None if eof => {
                    if i < filled {
                        if filled - i > LINE_BYTES_MAX {
                            return Err(too_long());
                        }
                        f(strip_cr(&buf[i..filled]));
                        lines += 1;
                    }
                    return Ok(lines);
                }
                None => break,
            }
        }
        if filled - i > LINE_BYTES_MAX {
            return Err(too_long());
        }
        buf.copy_within(i..filled, 0);
        pos += i as u64;
        filled -= i;
    }
}

fn too_long() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("a line is longer than {LINE_BYTES_MAX} bytes"),
    )
}

fn strip_cr(line: &[u8]) -> &[u8] {
    match line {
        [rest @ .., b'\r'] => rest,
        _ => line,
    }
}

/// The first lines of a file (at most `max` lines and 1 MiB), with the byte offset just after
/// each.
pub(crate) fn head_lines(path: &Path, max: usize) -> io::Result<(Vec<Vec<u8>>, Vec<u64>, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; (1 << 20).min(len as usize)];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    let mut lines = Vec::new();
    let mut ends = Vec::new();
    let mut i = 0;
    while lines.len() < max && i < filled {
        let j = memchr::memchr(b'\n', &buf[i..filled]).map_or(filled, |j| i + j);
        lines.push(strip_cr(&buf[i..j]).to_vec());
        ends.push((j + 1).min(filled) as u64);
        i = j + 1;
    }
    Ok((lines, ends, len))
}

/// Splits `[start, end)` into up to `parts` ranges of similar size (lines are assigned to ranges
/// by [`for_each_line`], so cut points need not fall on line boundaries).
pub(crate) fn ranges(start: u64, end: u64, parts: usize) -> Vec<(u64, u64)> {
    // Small files are not worth a thread each.
    const RANGE_BYTES_MIN: u64 = 4 << 20;
    let len = end.saturating_sub(start);
    let parts = (len / RANGE_BYTES_MIN).clamp(1, parts.max(1) as u64);
    (0..parts)
        .map(|k| (start + len * k / parts, start + len * (k + 1) / parts))
        .collect()
}

/// Cuts `line` at commas into `cells` (at most `N`); returns the number of cells the line has
/// (which may exceed `N`: the caller reports the wrong column count). Cells are not unquoted:
/// none of the formats quotes.
#[inline]
pub(crate) fn split_cells<'a, const N: usize>(line: &'a [u8], cells: &mut [&'a [u8]; N]) -> usize {
    let mut n = 0usize;
    let mut cell_start = 0usize;
    let mut push = |end: usize, n: &mut usize, cell_start: &mut usize| {
        if *n < N {
            cells[*n] = &line[*cell_start..end];
        }
        *n += 1;
        *cell_start = end + 1;
    };
    let mut i = 0usize;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of the x86_64 baseline; loads are unaligned and stay within
        // `line` (i + 16 <= len).
        unsafe {
            let comma = _mm_set1_epi8(b',' as i8);
            while i + 16 <= line.len() {
                let v = _mm_loadu_si128(line.as_ptr().add(i) as *const __m128i);
                let mut mask = _mm_movemask_epi8(_mm_cmpeq_epi8(v, comma)) as u32;
                while mask != 0 {
                    let at = i + mask.trailing_zeros() as usize;
                    push(at, &mut n, &mut cell_start);
                    mask &= mask - 1;
                }
                i += 16;
            }
        }
    }
    while i < line.len() {
        if line[i] == b',' {
            push(i, &mut n, &mut cell_start);
        }
        i += 1;
    }
    push(line.len(), &mut n, &mut cell_start);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves cells are cut at every comma, empty cells included, across 16-byte blocks.
    #[test]
    fn cells() {
        let line = b"a,,bbbbbbbbbbbbbbbbbbbbbbbb,c,dddddddddddddddddddd,";
        let mut cells = [&b""[..]; 8];
        let n = split_cells(line, &mut cells);
        assert_eq!(n, 6);
        assert_eq!(cells[0], b"a");
        assert_eq!(cells[1], b"");
        assert_eq!(cells[3], b"c");
        assert_eq!(cells[5], b"");
        let mut few = [&b""[..]; 2];
        assert_eq!(split_cells(line, &mut few), 6);
    }

    /// Proves that ranges cut anywhere give every line to exactly one range.
    #[test]
    fn ranges_own_each_line_once() {
        let dir = std::env::temp_dir().join(format!("settle-scan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lines.txt");
        let text: String = (0..1000).map(|i| format!("line{i}\r\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let len = text.len() as u64;
        for cut in [0u64, 1, 5, 6, 7, 8, 100, len - 1] {
            let mut seen = Vec::new();
            for (s, e) in [(0, cut), (cut, len)] {
                for_each_line(&path, s, e, |l| {
                    seen.push(String::from_utf8(l.to_vec()).unwrap())
                })
                .unwrap();
            }
            let want: Vec<String> = (0..1000).map(|i| format!("line{i}")).collect();
            assert_eq!(seen, want, "cut at {cut}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// What one reader thread made of one byte range.
pub(crate) struct RangeOut<R, X> {
    /// Records by partition, each in file order.
    pub parts: Vec<Vec<R>>,
    /// Lines in the range (data, comment and blank alike).
    pub lines: u64,
    pub errors: super::Errors,
    /// Format-specific facts about the range (footer lines, totals...).
    pub extra: X,
}

impl<R, X: Default> RangeOut<R, X> {
    /// Partitions sized for a range of `bytes` whose rows are about `row_bytes` long. Capacity
    /// never written costs address space, not memory, so the estimate errs on the large side
    /// (growing a vector would copy it).
    pub(crate) fn new(partitions: usize, bytes: u64, row_bytes: u64) -> Self {
        let per_part = (bytes / row_bytes.max(1) / partitions as u64) as usize;
        let capacity = if per_part < 64 {
            0
        } else {
            per_part + per_part / 4 + 64
        };
        RangeOut {
            parts: (0..partitions)
                .map(|_| Vec::with_capacity(capacity))
                .collect(),
            lines: 0,
            errors: super::Errors::default(),
            extra: X::default(),
        }
    }
}

/// A record whose line number is first relative to its range, then made absolute.
pub(crate) trait Lined {
    fn shift_line(&mut self, base: u32);
}

/// Runs `job(file, start, end)` for every range on `threads` threads; results in job order.
pub(crate) fn run_ranges<T: Send>(
    jobs: &[(usize, u64, u64)],
    threads: usize,
    job: impl Fn(usize, u64, u64) -> T + Sync,
) -> Vec<T> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(file, start, end)) = jobs.get(i) else {
                    break;
                };
                let out = job(file, start, end);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(out);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// Makes the records' and errors' line numbers absolute (1-based) for the ranges of one file,
/// whose first range starts after `header_lines` lines. Returns the errors and each range's
/// first line number.
pub(crate) fn fix_lines<R: Lined, X>(
    path: &Path,
    header_lines: u64,
    outs: &mut [RangeOut<R, X>],
) -> (Vec<super::InputError>, u64, Vec<u64>) {
    let mut base = header_lines;
    let mut errors = Vec::new();
    let mut total = 0;
    let mut bases = Vec::with_capacity(outs.len());
    for out in outs.iter_mut() {
        bases.push(base + 1);
        let shift = u32::try_from(base + 1).unwrap_or(u32::MAX);
        for part in &mut out.parts {
            for r in part.iter_mut() {
                r.shift_line(shift);
            }
        }
        for e in &out.errors.kept {
            if errors.len() < super::ERRORS_MAX_PER_FILE {
                errors.push(super::line_error(
                    path,
                    base + 1 + e.rel_line,
                    e.kind,
                    e.reason.clone(),
                ));
            }
        }
        total += out.errors.total;
        base += out.lines;
    }
    (errors, total, bases)
}

/// `# end rows=<n>`: the trailer of the exports, which makes a truncated file an error.
pub(crate) fn parse_trailer(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"# end rows=")?;
    if rest.len() > 1 && rest[0] == b'0' {
        return None;
    }
    super::parse_u64(rest)
}

/// Facts about comment lines inside the data of an export (only the trailer is allowed).
#[derive(Default)]
pub(crate) struct Trailer {
    /// Data rows seen (valid or not).
    pub rows: u64,
    /// (line within the range, the count it states)
    pub trailer: Option<(u64, u64)>,
    /// A data row came after the trailer in this range.
    pub rows_after: bool,
}

/// Checks one export file's trailer across its ranges: exactly one, last, stating the row count.
pub(crate) fn check_trailer(
    path: &Path,
    ranges: &[&Trailer],
    range_first_lines: &[u64],
    errors: &mut Vec<super::InputError>,
) {
    use super::InputErrorKind::BadTotals;
    let rows: u64 = ranges.iter().map(|t| t.rows).sum();
    let mut seen: Option<(u64, u64)> = None;
    for (k, t) in ranges.iter().enumerate() {
        let later_rows = ranges[k + 1..].iter().any(|t| t.rows > 0);
        if let Some((rel, n)) = t.trailer {
            let line = range_first_lines[k] + rel;
            if seen.is_some() {
                errors.push(super::line_error(path, line, BadTotals, "a second trailer"));
                continue;
            }
            seen = Some((line, n));
            if t.rows_after || later_rows {
                errors.push(super::line_error(
                    path,
                    line,
                    BadTotals,
                    "rows after the trailer",
                ));
            } else if n != rows {
                errors.push(super::line_error(
                    path,
                    line,
                    BadTotals,
                    format!("trailer states {n} rows, the file has {rows}"),
                ));
            }
        }
    }
    if seen.is_none() {
        errors.push(super::file_error(
            path,
            BadTotals,
            "no `# end rows=<n>` trailer: the file is truncated or not a complete export",
        ));
    }
}
