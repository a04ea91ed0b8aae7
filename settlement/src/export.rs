//! A business day's export for auditors: the operators' statements, every exception with its
//! resolution, and the audit trail, as one CSV document ([`to_csv`]) or an Excel workbook
//! ([`to_xlsx`]).
//!
//! The caller fills a [`DayExport`] from the store; this module only lays it out. Money stays
//! integer minor units (fen) in the data: both formats carry the exact minor amount and the
//! amount in yuan (CSV: text with two decimals; XLSX: a number formatted `#,##0.00`). Rows come
//! in a fixed order whatever order the caller gives — statements by operator and currency (their
//! figures as given), exceptions by operator, class, reference and key, the audit trail by
//! sequence number — so the same day exports the same bytes (CSV).
//!
//! Spreadsheet safety: a CSV text cell that a spreadsheet would read as a formula (one starting
//! with `=`, `+`, `-`, `@`, tab or carriage return, unless it is a plain number) is written with
//! a leading `'` (OWASP's advice against CSV injection). The workbook stores text as text, so
//! needs no such guard; text longer than a cell can hold (32 767 UTF-16 units) is cut, ending
//! in "…".

use std::borrow::Cow;

use anyhow::Context as _;
use rust_xlsxwriter::{Format, Workbook, Worksheet};

use crate::outputs::csv_row;

/// Everything exported for one business day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayExport {
    /// `YYYY-MM-DD`.
    pub business_day: String,
    pub statements: Vec<StatementExport>,
    pub exceptions: Vec<ExceptionExport>,
    pub audit: Vec<AuditExport>,
}

/// One operator's statement of the day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementExport {
    pub operator_id: String,
    /// ISO 4217, e.g. `CNY`.
    pub currency: String,
    /// `open` or `approved`.
    pub status: String,
    /// `(figure name, amount in minor units)` in the statement's order.
    pub figures: Vec<(String, i64)>,
}

/// One exception of the day and where it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExceptionExport {
    pub operator_id: String,
    pub class: String,
    pub reference: String,
    pub amount_minor: i64,
    pub currency: String,
    pub detail: String,
    pub key: String,
    /// `open`, or the resolution's action.
    pub state: String,
    /// Empty while open.
    pub resolved_by: String,
    pub note: String,
}

/// One entry of the day's audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditExport {
    pub seq: i64,
    pub actor: String,
    pub action: String,
    pub detail: String,
    /// Unix time in milliseconds.
    pub at_ms: i64,
}

/// The columns of [`to_csv`]. Every record has all of them; a section leaves empty the ones
/// that are not its own:
/// - `statement`: one record per figure — `operator_id`, `currency`, `status`
///   (`open`/`approved`), `figure`, `amount_minor`, `amount`.
/// - `exception`: `operator_id`, `currency`, `status` (`open` or the resolution's action),
///   `class`, `reference`, `key`, `amount_minor`, `amount`, `resolved_by`, `note`, `detail`.
/// - `audit`: `seq`, `at` (UTC, RFC 3339 with milliseconds), `actor`, `action`, `detail`.
pub const CSV_COLUMNS: [&str; 18] = [
    "section",
    "business_day",
    "operator_id",
    "currency",
    "status",
    "figure",
    "class",
    "reference",
    "key",
    "amount_minor",
    "amount",
    "resolved_by",
    "note",
    "detail",
    "seq",
    "at",
    "actor",
    "action",
];

/// The day as one CSV document (RFC 4180 quoting, `\n` line ends): a header of
/// [`CSV_COLUMNS`], then the statements, the exceptions and the audit trail, each record's
/// first column naming its section.
pub fn to_csv(day: &DayExport) -> String {
    // About 120 bytes a record is enough for most without reallocating.
    let records = day
        .statements
        .iter()
        .map(|s| s.figures.len())
        .sum::<usize>()
        + day.exceptions.len()
        + day.audit.len();
    let mut out = String::with_capacity(128 * (records + 1));
    out.push_str(&csv_row(&CSV_COLUMNS));
    let business_day = csv_text(&day.business_day);

    for s in sorted_statements(day) {
        let (op, cur, status) = (
            csv_text(&s.operator_id),
            csv_text(&s.currency),
            csv_text(&s.status),
        );
        for (figure, minor) in &s.figures {
            out.push_str(&csv_row(&[
                "statement",
                &business_day,
                &op,
                &cur,
                &status,
                &csv_text(figure),
                "",
                "",
                "",
                &minor.to_string(),
                &yuan(*minor),
                "",
                "",
                "",
                "",
                "",
                "",
                "",
            ]));
        }
    }
    for e in sorted_exceptions(day) {
        out.push_str(&csv_row(&[
            "exception",
            &business_day,
            &csv_text(&e.operator_id),
            &csv_text(&e.currency),
            &csv_text(&e.state),
            "",
            &csv_text(&e.class),
            &csv_text(&e.reference),
            &csv_text(&e.key),
            &e.amount_minor.to_string(),
            &yuan(e.amount_minor),
            &csv_text(&e.resolved_by),
            &csv_text(&e.note),
            &csv_text(&e.detail),
            "",
            "",
            "",
            "",
        ]));
    }
    for a in sorted_audit(day) {
        out.push_str(&csv_row(&[
            "audit",
            &business_day,
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            &csv_text(&a.detail),
            &a.seq.to_string(),
            &utc(a.at_ms),
            &csv_text(&a.actor),
            &csv_text(&a.action),
        ]));
    }
    out
}

/// The day as an Excel workbook (`.xlsx`): sheets Statements, Exceptions and Audit, each with a
/// bold, frozen header row, an autofilter over its table and column widths to fit. Amounts are
/// numbers — the exact minor units and the amount in yuan formatted `#,##0.00` (exact as a
/// display value for any amount below 2^53 fen); times are text (UTC, RFC 3339).
///
/// Fails only where Excel's own limits are passed (more than 1 048 575 rows in a sheet).
pub fn to_xlsx(day: &DayExport) -> anyhow::Result<Vec<u8>> {
    let mut book = Workbook::new();
    let formats = Formats {
        header: Format::new().set_bold(),
        yuan: Format::new().set_num_format("#,##0.00"),
        integer: Format::new().set_num_format("0"),
    };

    let mut sheet = Sheet::new(
        book.add_worksheet(),
        "Statements",
        &[
            ("Business day", Kind::Text),
            ("Operator", Kind::Text),
            ("Currency", Kind::Text),
            ("Status", Kind::Text),
            ("Figure", Kind::Text),
            ("Amount (minor)", Kind::Integer),
            ("Amount", Kind::Yuan),
        ],
        &formats,
    )?;
    for s in sorted_statements(day) {
        for (figure, minor) in &s.figures {
            sheet.row(&[
                Cell::Text(&day.business_day),
                Cell::Text(&s.operator_id),
                Cell::Text(&s.currency),
                Cell::Text(&s.status),
                Cell::Text(figure),
                Cell::Integer(*minor),
                Cell::Yuan(*minor),
            ])?;
        }
    }
    sheet.finish()?;

    let mut sheet = Sheet::new(
        book.add_worksheet(),
        "Exceptions",
        &[
            ("Business day", Kind::Text),
            ("Operator", Kind::Text),
            ("Class", Kind::Text),
            ("Reference", Kind::Text),
            ("Key", Kind::Text),
            ("Currency", Kind::Text),
            ("Amount (minor)", Kind::Integer),
            ("Amount", Kind::Yuan),
            ("State", Kind::Text),
            ("Resolved by", Kind::Text),
            ("Note", Kind::Text),
            ("Detail", Kind::Text),
        ],
        &formats,
    )?;
    for e in sorted_exceptions(day) {
        sheet.row(&[
            Cell::Text(&day.business_day),
            Cell::Text(&e.operator_id),
            Cell::Text(&e.class),
            Cell::Text(&e.reference),
            Cell::Text(&e.key),
            Cell::Text(&e.currency),
            Cell::Integer(e.amount_minor),
            Cell::Yuan(e.amount_minor),
            Cell::Text(&e.state),
            Cell::Text(&e.resolved_by),
            Cell::Text(&e.note),
            Cell::Text(&e.detail),
        ])?;
    }
    sheet.finish()?;

    let mut sheet = Sheet::new(
        book.add_worksheet(),
        "Audit",
        &[
            ("Seq", Kind::Integer),
            ("At (UTC)", Kind::Text),
            ("Actor", Kind::Text),
            ("Action", Kind::Text),
            ("Detail", Kind::Text),
        ],
        &formats,
    )?;
    for a in sorted_audit(day) {
        let at = utc(a.at_ms);
        sheet.row(&[
            Cell::Integer(a.seq),
            Cell::Text(&at),
            Cell::Text(&a.actor),
            Cell::Text(&a.action),
            Cell::Text(&a.detail),
        ])?;
    }
    sheet.finish()?;

    book.save_to_buffer().context("writing the workbook")
}

fn sorted_statements(day: &DayExport) -> Vec<&StatementExport> {
    let mut v: Vec<&StatementExport> = day.statements.iter().collect();
    v.sort_by(|a, b| (&a.operator_id, &a.currency).cmp(&(&b.operator_id, &b.currency)));
    v
}

fn sorted_exceptions(day: &DayExport) -> Vec<&ExceptionExport> {
    let mut v: Vec<&ExceptionExport> = day.exceptions.iter().collect();
    v.sort_by(|a, b| {
        (&a.operator_id, &a.class, &a.reference, &a.key).cmp(&(
            &b.operator_id,
            &b.class,
            &b.reference,
            &b.key,
        ))
    });
    v
}

fn sorted_audit(day: &DayExport) -> Vec<&AuditExport> {
    let mut v: Vec<&AuditExport> = day.audit.iter().collect();
    v.sort_by_key(|a| a.seq);
    v
}

/// Minor units as yuan with two decimals, exactly: `-123456` → `-1234.56`.
fn yuan(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let a = minor.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// Unix milliseconds as UTC RFC 3339 with milliseconds (`2026-01-02T03:04:05.678Z`); the
/// number itself if out of range.
fn utc(at_ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(at_ms) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => at_ms.to_string(),
    }
}

/// A text cell for the CSV, with a leading `'` if a spreadsheet would take it for a formula.
fn csv_text(s: &str) -> Cow<'_, str> {
    let risky = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && !is_plain_number(s) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// `-12`, `+3.50`: a sign, digits and at most one decimal point.
fn is_plain_number(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let mut parts = digits.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// Excel's limit on a cell's text, in UTF-16 units.
const MAX_CELL_TEXT: usize = 32_767;

/// Text cut to what a cell holds, ending in "…" when cut.
fn cell_text(s: &str) -> Cow<'_, str> {
    // UTF-8 is never shorter than UTF-16 in units, so short strings need no counting.
    if s.len() <= MAX_CELL_TEXT || s.encode_utf16().count() <= MAX_CELL_TEXT {
        return Cow::Borrowed(s);
    }
    let mut units = 0;
    let mut end = 0;
    for (i, c) in s.char_indices() {
        if units + c.len_utf16() > MAX_CELL_TEXT - 1 {
            break;
        }
        units += c.len_utf16();
        end = i + c.len_utf8();
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

struct Formats {
    header: Format,
    yuan: Format,
    integer: Format,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Yuan,
}

enum Cell<'a> {
    Text(&'a str),
    Integer(i64),
    /// Minor units, written as yuan.
    Yuan(i64),
}

/// A worksheet being filled: a header row, then rows; [`Sheet::finish`] sets the widths and
/// the autofilter.
struct Sheet<'a> {
    ws: &'a mut Worksheet,
    formats: &'a Formats,
    /// Per column: the widest text seen, in characters.
    widths: Vec<usize>,
    next_row: u32,
}

impl<'a> Sheet<'a> {
    fn new(
        ws: &'a mut Worksheet,
        name: &str,
        columns: &[(&str, Kind)],
        formats: &'a Formats,
    ) -> anyhow::Result<Self> {
        ws.set_name(name)?;
        for (col, (title, _)) in columns.iter().enumerate() {
            ws.write_string_with_format(0, col as u16, *title, &formats.header)?;
        }
        ws.set_freeze_panes(1, 0)?;
        let widths = columns
            .iter()
            .map(|(title, kind)| match kind {
                // Room for the autofilter's button next to the title.
                Kind::Text => title.chars().count() + 3,
                Kind::Integer | Kind::Yuan => (title.chars().count() + 3).max(14),
            })
            .collect();
        Ok(Sheet {
            ws,
            formats,
            widths,
            next_row: 1,
        })
    }

    fn row(&mut self, cells: &[Cell<'_>]) -> anyhow::Result<()> {
        let row = self.next_row;
        for (col, cell) in cells.iter().enumerate() {
            let c = col as u16;
            match cell {
                Cell::Text(s) => {
                    let s = cell_text(s);
                    // Characters, not bytes: Chinese text is 3 bytes a character.
                    let w = if s.is_ascii() {
                        s.len()
                    } else {
                        s.chars().count()
                    };
                    self.widths[col] = self.widths[col].max(w);
                    self.ws.write_string(row, c, s.as_ref())?;
                }
                Cell::Integer(v) => {
                    self.ws
                        .write_number_with_format(row, c, *v as f64, &self.formats.integer)?;
                }
                Cell::Yuan(minor) => {
                    self.ws.write_number_with_format(
                        row,
                        c,
                        *minor as f64 / 100.0,
                        &self.formats.yuan,
                    )?;
                }
            }
        }
        self.next_row += 1;
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        for (col, w) in self.widths.iter().enumerate() {
            self.ws
                .set_column_width(col as u16, (*w).min(60) as f64 + 1.0)?;
        }
        let last_col = self.widths.len().saturating_sub(1) as u16;
        self.ws.autofilter(0, 0, self.next_row - 1, last_col)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn sample() -> DayExport {
        DayExport {
            business_day: "2026-01-02".into(),
            statements: vec![
                StatementExport {
                    operator_id: "op-b".into(),
                    currency: "CNY".into(),
                    status: "open".into(),
                    figures: vec![("gross".into(), 100_000), ("net_payable".into(), -2_550)],
                },
                StatementExport {
                    operator_id: "op-a".into(),
                    currency: "CNY".into(),
                    status: "approved".into(),
                    figures: vec![("gross".into(), 123_456_789), ("fees".into(), 5)],
                },
            ],
            exceptions: vec![
                ExceptionExport {
                    operator_id: "op-b".into(),
                    class: "missing_at_provider".into(),
                    reference: "TXN-0002".into(),
                    amount_minor: 1_050,
                    currency: "CNY".into(),
                    detail: "gateway has it, bill does not".into(),
                    key: "k2".into(),
                    state: "open".into(),
                    ..Default::default()
                },
                ExceptionExport {
                    operator_id: "op-a".into(),
                    class: "amount_mismatch".into(),
                    reference: "TXN-0001".into(),
                    amount_minor: -99,
                    currency: "CNY".into(),
                    detail: "provider 1.00, gateway 0.01, \"rounded\"".into(),
                    key: "k1".into(),
                    state: "write_off".into(),
                    resolved_by: "张伟".into(),
                    note: "=HYPERLINK(\"http://x\")\nsecond line".into(),
                },
            ],
            audit: vec![
                AuditExport {
                    seq: 2,
                    actor: "alice".into(),
                    action: "approve".into(),
                    detail: "op-a".into(),
                    at_ms: 1_767_323_045_678,
                },
                AuditExport {
                    seq: 1,
                    actor: "bob".into(),
                    action: "resolve".into(),
                    detail: "k1, write_off".into(),
                    at_ms: 1_767_323_000_000,
                },
            ],
        }
    }

    fn records(csv_text: &str) -> Vec<Vec<String>> {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(csv_text.as_bytes());
        r.records()
            .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn csv_has_sections_in_a_fixed_order_with_both_amounts() {
        let day = sample();
        let csv_doc = to_csv(&day);
        let rows = records(&csv_doc);
        assert_eq!(rows[0], CSV_COLUMNS);
        assert!(rows.iter().all(|r| r.len() == CSV_COLUMNS.len()));
        let col = |name: &str| CSV_COLUMNS.iter().position(|c| *c == name).unwrap();
        let sections: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            sections,
            [
                "statement",
                "statement",
                "statement",
                "statement",
                "exception",
                "exception",
                "audit",
                "audit"
            ]
        );
        // Statements by operator, figures in their order.
        assert_eq!(rows[1][col("operator_id")], "op-a");
        assert_eq!(rows[1][col("status")], "approved");
        assert_eq!(rows[1][col("figure")], "gross");
        assert_eq!(rows[1][col("amount_minor")], "123456789");
        assert_eq!(rows[1][col("amount")], "1234567.89");
        assert_eq!(rows[2][col("amount")], "0.05");
        assert_eq!(rows[4][col("figure")], "net_payable");
        assert_eq!(rows[4][col("amount_minor")], "-2550");
        assert_eq!(rows[4][col("amount")], "-25.50");
        // Exceptions by operator; quoting round-trips; a formula is defused.
        let e = &rows[5];
        assert_eq!(e[col("reference")], "TXN-0001");
        assert_eq!(e[col("amount")], "-0.99");
        assert_eq!(e[col("status")], "write_off");
        assert_eq!(e[col("resolved_by")], "张伟");
        assert_eq!(e[col("detail")], "provider 1.00, gateway 0.01, \"rounded\"");
        assert_eq!(e[col("note")], "'=HYPERLINK(\"http://x\")\nsecond line");
        assert_eq!(rows[6][col("status")], "open");
        assert_eq!(rows[6][col("resolved_by")], "");
        // Audit by sequence, times in UTC.
        assert_eq!(rows[7][col("seq")], "1");
        assert_eq!(rows[7][col("at")], "2026-01-02T03:03:20.000Z");
        assert_eq!(rows[8][col("at")], "2026-01-02T03:04:05.678Z");
        assert_eq!(rows[8][col("actor")], "alice");
        assert_eq!(rows[8][col("business_day")], "2026-01-02");

        // Same day in another order: the same bytes.
        let mut shuffled = day.clone();
        shuffled.statements.reverse();
        shuffled.exceptions.reverse();
        shuffled.audit.reverse();
        assert_eq!(to_csv(&shuffled), csv_doc);
    }

    #[test]
    fn csv_text_defuses_formulas_but_not_numbers() {
        assert_eq!(csv_text("=1+1"), "'=1+1");
        assert_eq!(csv_text("+86 138"), "'+86 138");
        assert_eq!(
            csv_text("-2+3+cmd|' /C calc'!A0"),
            "'-2+3+cmd|' /C calc'!A0"
        );
        assert_eq!(csv_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_text("-12.50"), "-12.50");
        assert_eq!(csv_text("TXN-1"), "TXN-1");
        assert_eq!(csv_text(""), "");
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(-1), "-0.01");
        assert_eq!(yuan(i64::MIN), "-92233720368547758.08");
    }

    fn unzip(bytes: &[u8], name: &str) -> String {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut s = String::new();
        zip.by_name(name).unwrap().read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn xlsx_is_a_workbook_with_three_sheets() {
        let bytes = to_xlsx(&sample()).unwrap();
        assert!(bytes.starts_with(b"PK"));
        let workbook = unzip(&bytes, "xl/workbook.xml");
        let doc = roxmltree::Document::parse(&workbook).unwrap();
        let sheets: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("sheet"))
            .filter_map(|n| n.attribute("name"))
            .collect();
        assert_eq!(sheets, ["Statements", "Exceptions", "Audit"]);
        // The header is frozen and filtered.
        assert!(workbook.contains("_xlnm._FilterDatabase"));
        let exceptions = unzip(&bytes, "xl/worksheets/sheet2.xml");
        roxmltree::Document::parse(&exceptions).unwrap();
        assert!(exceptions.contains("state=\"frozen\""));
        assert!(exceptions.contains("<autoFilter ref=\"A1:L3\""));
        assert!(exceptions.contains("<v>-0.99</v>"), "{exceptions}");
        assert!(exceptions.contains("<v>-99</v>"));
        assert!(exceptions.contains("<cols>"));
        let statements = unzip(&bytes, "xl/worksheets/sheet1.xml");
        assert!(statements.contains("<v>1234567.89</v>"), "{statements}");
        // Text is in the shared strings, the note as text and not as a formula.
        let strings = unzip(&bytes, "xl/sharedStrings.xml");
        assert!(strings.contains("TXN-0001") && strings.contains("张伟"));
        assert!(strings.contains("=HYPERLINK"));
        assert!(!exceptions.contains("<f>"));
        let styles = unzip(&bytes, "xl/styles.xml");
        assert!(styles.contains("#,##0.00") && styles.contains("<b/>"));
        let audit = unzip(&bytes, "xl/worksheets/sheet3.xml");
        assert!(audit.contains("<autoFilter ref=\"A1:E3\""));

        // An empty day is still a workbook with its three headers.
        let empty = to_xlsx(&DayExport::default()).unwrap();
        assert!(unzip(&empty, "xl/workbook.xml").contains("name=\"Audit\""));
    }

    #[test]
    fn over_long_text_is_cut_to_what_a_cell_holds() {
        let long = "票".repeat(40_000);
        let cut = cell_text(&long);
        assert_eq!(cut.encode_utf16().count(), MAX_CELL_TEXT);
        assert!(cut.ends_with('…'));
        assert_eq!(cell_text("short"), "short");
        let mut day = sample();
        day.exceptions[0].detail = long;
        to_xlsx(&day).unwrap();
    }

    #[test]
    fn a_large_day_exports_every_exception() {
        const N: usize = 70_000;
        let mut day = sample();
        day.exceptions = (0..N)
            .map(|i| ExceptionExport {
                operator_id: format!("op-{}", i % 7),
                class: [
                    "missing_at_provider",
                    "amount_mismatch",
                    "missing_at_gateway",
                ][i % 3]
                    .into(),
                reference: format!("TXN-{i:08}"),
                amount_minor: (i as i64 * 37) % 100_000 - 5_000,
                currency: "CNY".into(),
                detail: "provider and gateway differ, see bill line".into(),
                key: format!("key-{i}"),
                state: if i % 4 == 0 { "accept" } else { "open" }.into(),
                resolved_by: if i % 4 == 0 { "alice" } else { "" }.into(),
                note: String::new(),
            })
            .collect();
        let csv_doc = to_csv(&day);
        assert_eq!(
            csv_doc
                .lines()
                .filter(|l| l.starts_with("exception,"))
                .count(),
            N
        );
        assert_eq!(records(&csv_doc).len(), 1 + 4 + N + 2);
        let bytes = to_xlsx(&day).unwrap();
        let sheet = unzip(&bytes, "xl/worksheets/sheet2.xml");
        assert!(sheet.contains(&format!("<autoFilter ref=\"A1:L{}\"", N + 1)));
    }
}
