//! The readers on bad input (every error kind, with file, line and reason) and on real bills
//! rendered by the provider sandbox's own code, in GBK and UTF-8.

mod support;

use provider_sandbox::bill::{self, BillInput, Charset};
use provider_sandbox::store::{ProductCode, RefundKind, RefundRow, TradeRow, TradeStatus};
use settlement::*;
use support::*;

/// A valid day: one metro payment everywhere.
fn valid(dir: &Dir) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    (
        dir.write("g.csv", gateway_file(&[pay("M1-1", "G1", 1, 300)])),
        dir.write("b.csv", bill_text(&[trade("M1-1", 300)], None)),
        dir.write("o.csv", op_file(&[tap("G1", 1, "exit", 300)])),
    )
}

fn one_error(errors: &[InputError]) -> &InputError {
    assert_eq!(errors.len(), 1, "{errors:#?}");
    &errors[0]
}

/// Proves the valid baseline of these tests reconciles (so each failure below is its edit's).
#[test]
fn baseline_is_valid() {
    let dir = Dir::new("baseline");
    let (g, b, o) = valid(&dir);
    let rec = reconcile(&input(&g, &b, &[("hz-metro", &o)]), &config()).unwrap();
    assert_eq!(rec.counts.get(Class::Matched), 1);
    assert_eq!(rec.files[1].encoding, Some(Encoding::Utf8));
}

/// Proves a wrong column set, a wrong version and a row with too few cells are reported with
/// file, line and reason, and the run returns nothing.
#[test]
fn wrong_columns_and_version() {
    let dir = Dir::new("columns");
    let (_, b, o) = valid(&dir);
    let text = gateway_file(&[pay("M1-1", "G1", 1, 300)]).replace(",fee_minor,", ",fee,");
    let g = dir.write("cols.csv", text);
    let e = errors_of(&input(&g, &b, &[("hz-metro", &o)]));
    let e = one_error(&e);
    assert_eq!(
        (e.file.as_path(), e.line, e.kind),
        (g.as_path(), Some(2), InputErrorKind::WrongColumns)
    );
    assert!(
        e.reason.contains("missing [fee_minor], unknown [fee]"),
        "{}",
        e.reason
    );

    let g = dir.write(
        "v2.csv",
        gateway_file(&[pay("M1-1", "G1", 1, 300)]).replace("export v1", "export v2"),
    );
    let e = errors_of(&input(&g, &b, &[("hz-metro", &o)]));
    let e = one_error(&e);
    assert_eq!((e.line, e.kind), (Some(1), InputErrorKind::BadVersion));
    assert!(e.reason.contains("unsupported version"), "{}", e.reason);

    let g = dir.write(
        "short.csv",
        gateway_file(&[pay("M1-1", "G1", 1, 300), "payment,hz-metro".into()]),
    );
    let e = errors_of(&input(&g, &b, &[("hz-metro", &o)]));
    let e = one_error(&e);
    assert_eq!((e.line, e.kind), (Some(4), InputErrorKind::WrongColumns));
    assert_eq!(e.reason, "expected 13 cells, found 2");

    let bad_bill = dir.write(
        "bcols.csv",
        bill_text(&[trade("M1-1", 300)], None).replace("分润（元）,", ""),
    );
    let g = dir.write("g2.csv", gateway_file(&[pay("M1-1", "G1", 1, 300)]));
    let e = errors_of(&input(&g, &bad_bill, &[("hz-metro", &o)]));
    let e = one_error(&e);
    assert_eq!((e.line, e.kind), (Some(5), InputErrorKind::WrongColumns));
    assert!(e.reason.contains("missing [分润（元）]"), "{}", e.reason);
}

/// Proves amounts with bad precision are errors in every format: a decimal point in the
/// exports' integer minor units, a third decimal in the bill's yuan.
#[test]
fn bad_precision() {
    let dir = Dir::new("precision");
    let (g, b, o) = valid(&dir);
    let g2 = dir.write(
        "g2.csv",
        gateway_file(&[pay("M1-1", "G1", 1, 300).replace(",300,", ",3.00,")]),
    );
    let e = errors_of(&input(&g2, &b, &[("hz-metro", &o)]));
    let e = one_error(&e);
    assert_eq!((e.line, e.kind), (Some(3), InputErrorKind::BadPrecision));
    assert!(e.reason.starts_with("amount_minor:"), "{}", e.reason);

    let b2 = dir.write(
        "b2.csv",
        bill_text(&[trade("M1-1", 300)], None).replace(",3.00,3.00,", ",3.001,3.001,"),
    );
    let e = errors_of(&input(&g, &b2, &[("hz-metro", &o)]));
    let e = one_error(&e);
    assert_eq!(
        (e.file.as_path(), e.line, e.kind),
        (b2.as_path(), Some(6), InputErrorKind::BadPrecision)
    );
    assert!(e.reason.contains("商家实收"), "{}", e.reason);

    let o2 = dir.write(
        "o2.csv",
        op_file(&[tap("G1", 1, "exit", 300).replace(",300,", ",300.5,")]),
    );
    let e = errors_of(&input(&g, &b, &[("hz-metro", &o2)]));
    assert_eq!(one_error(&e).kind, InputErrorKind::BadPrecision);
}

/// Proves every bad row is reported (not only the first), each with its own line.
#[test]
fn all_bad_rows_are_reported() {
    let dir = Dir::new("many");
    let (_, b, _) = valid(&dir);
    let o = dir.write(
        "o.csv",
        op_file(&[
            tap("G1", 1, "exit", 300),
            "G1,2,yesterday,exit,300,CNY".into(),
            tap("G1", 3, "swim", 300),
            tap("G1", 4, "exit", 300).replace("CNY", "XXX"),
            tap("", 5, "exit", 300),
        ]),
    );
    let g = dir.write("g.csv", gateway_file(&[pay("M1-1", "G1", 1, 300)]));
    let e = errors_of(&input(&g, &b, &[("hz-metro", &o)]));
    let lines: Vec<(Option<u64>, InputErrorKind)> = e.iter().map(|e| (e.line, e.kind)).collect();
    assert_eq!(
        lines,
        vec![
            (Some(4), InputErrorKind::BadValue),
            (Some(5), InputErrorKind::BadValue),
            (Some(6), InputErrorKind::BadValue),
            (Some(7), InputErrorKind::BadValue),
        ]
    );
    assert!(e[0].reason.starts_with("occurred_at:"), "{}", e[0].reason);
    assert!(e[1].reason.starts_with("kind:"), "{}", e[1].reason);
    assert!(e[2].reason.starts_with("currency:"), "{}", e[2].reason);
    assert!(e[3].reason.starts_with("terminal_id:"), "{}", e[3].reason);
}

/// Proves truncated files are errors: an export without its trailer or with a wrong count, a
/// bill without its footer or with totals that disagree with its rows.
#[test]
fn truncated_files() {
    let dir = Dir::new("truncated");
    let (g, b, o) = valid(&dir);
    let text = gateway_file(&[pay("M1-1", "G1", 1, 300)]);
    let cut = dir.write("cut.csv", text.replace("# end rows=1\n", ""));
    let e = errors_of(&input(&cut, &b, &[("hz-metro", &o)]));
    let e = one_error(&e);
    assert_eq!((e.line, e.kind), (None, InputErrorKind::BadTotals));
    assert!(e.reason.contains("trailer"), "{}", e.reason);

    let wrong = dir.write("wrong.csv", text.replace("rows=1", "rows=2"));
    let e = errors_of(&input(&wrong, &b, &[("hz-metro", &o)]));
    let e = one_error(&e);
    assert_eq!(
        (e.line, e.kind, e.reason.as_str()),
        (
            Some(4),
            InputErrorKind::BadTotals,
            "trailer states 2 rows, the file has 1"
        )
    );

    let full = bill_text(&[trade("M1-1", 300)], None);
    let footless = dir.write(
        "footless.csv",
        &full[..full
            .find("#-----------------------------------------业务明细列表结束")
            .unwrap()],
    );
    let e = errors_of(&input(&g, &footless, &[("hz-metro", &o)]));
    assert_eq!(e.len(), 2, "{e:#?}");
    assert!(e
        .iter()
        .all(|e| e.kind == InputErrorKind::BadTotals && e.line.is_none()));

    let lying = dir.write(
        "lying.csv",
        bill_text(
            &[trade("M1-1", 300)],
            Some((
                "#交易合计：1笔，商家实收共3.01元，商家优惠共0.00元",
                "#退款合计：0笔，商家实收退款共0.00元，商家优惠退款共0.00元",
            )),
        ),
    );
    let e = errors_of(&input(&g, &lying, &[("hz-metro", &o)]));
    let e = one_error(&e);
    assert_eq!((e.line, e.kind), (Some(8), InputErrorKind::BadTotals));
    assert_eq!(
        e.reason,
        "#交易合计 states 1 rows and 3.01 yuan, the rows add up to 1 and 3.00"
    );
}

/// Proves encodings: a bill declared GBK but written in UTF-8 is rejected at its header, a
/// UTF-8 row inside a GBK bill at its line, and a bill in neither at its header.
#[test]
fn wrong_encodings() {
    let dir = Dir::new("encodings");
    let (g, b, o) = valid(&dir);
    let mut inp = input(&g, &b, &[("hz-metro", &o)]);
    inp.provider[0].encoding = Some(Encoding::Gbk);
    let e = errors_of(&inp);
    let e = one_error(&e);
    assert_eq!((e.line, e.kind), (Some(5), InputErrorKind::BadEncoding));

    let text = bill_text(&[trade("M1-1", 300), trade("M2-1", 300)], None);
    let utf8_row = support::bill_line(&trade("M2-1", 300));
    let (gbk, _, _) = encoding_rs::GBK.encode(&text);
    let mut mixed = gbk.into_owned();
    let gbk_row = encoding_rs::GBK.encode(&utf8_row).0.into_owned();
    let at = mixed
        .windows(gbk_row.len())
        .position(|w| w == gbk_row.as_slice())
        .unwrap();
    mixed.splice(at..at + gbk_row.len(), utf8_row.bytes());
    let mixed = dir.write("mixed.csv", mixed);
    let g2 = dir.write(
        "g2.csv",
        gateway_file(&[pay("M1-1", "G1", 1, 300), pay("M2-1", "", 0, 300)]),
    );
    let e = errors_of(&input(&g2, &mixed, &[("hz-metro", &o)]));
    let e = one_error(&e);
    assert_eq!((e.line, e.kind), (Some(7), InputErrorKind::BadEncoding));
    assert_eq!(e.reason, "业务类型 is UTF-8 text in a GBK bill");

    let latin = dir.write("latin.csv", b"#x\r\n\xff\xfe\xfd,\xa0\r\n");
    let e = errors_of(&input(&g, &latin, &[("hz-metro", &o)]));
    assert_eq!(one_error(&e).kind, InputErrorKind::BadEncoding);
}

/// Proves the same content given twice (under two names), the same path twice and a missing
/// file are errors before anything is read.
#[test]
fn duplicate_and_unreadable_files() {
    let dir = Dir::new("dupfiles");
    let (g, b, o) = valid(&dir);
    let copy = dir.write("o-copy.csv", std::fs::read(&o).unwrap());
    let e = errors_of(&input(
        &g,
        &b,
        &[("hz-metro", &o), ("zj-expressway", &copy)],
    ));
    let e = one_error(&e);
    assert_eq!(
        (e.file.as_path(), e.kind),
        (copy.as_path(), InputErrorKind::DuplicateFile)
    );
    assert!(e.reason.contains("same content as"), "{}", e.reason);

    let e = errors_of(&input(&g, &b, &[("hz-metro", &o), ("zj-expressway", &o)]));
    assert_eq!(one_error(&e).kind, InputErrorKind::DuplicateFile);

    let missing = dir.0.join("nope.csv");
    let e = errors_of(&input(&g, &b, &[("hz-metro", &missing)]));
    let e = one_error(&e);
    assert_eq!(
        (e.file.as_path(), e.kind),
        (missing.as_path(), InputErrorKind::Unreadable)
    );
}

/// Proves a bill of another day is refused rather than reconciled as a day of missing rows.
#[test]
fn bill_of_another_day() {
    let dir = Dir::new("billday");
    let (g, _, o) = valid(&dir);
    let b = dir.write(
        "b.csv",
        bill_text(&[trade("M1-1", 300)], None).replace(
            "2026年01月02日 00:00:00]   终止",
            "2026年01月01日 00:00:00]   终止",
        ),
    );
    let e = errors_of(&input(&g, &b, &[("hz-metro", &o)]));
    let e = one_error(&e);
    assert_eq!((e.line, e.kind), (Some(3), InputErrorKind::BadValue));
    assert_eq!(
        e.reason,
        "the bill is for 2026-01-01, the run is for 2026-01-02"
    );
}

fn sandbox_trade(n: i64, out_trade_no: &str, total_fen: i64, paid_at_ms: i64) -> TradeRow {
    TradeRow {
        trade_no: format!("20260102220014{n:014}"),
        app_id: "2021000000000001".into(),
        out_trade_no: out_trade_no.into(),
        subject: "杭州地铁 票价, 龙翔桥→西湖文化广场".into(),
        total_fen,
        refunded_fen: 0,
        status: TradeStatus::TradeSuccess,
        buyer_user_id: Some("2088000000000001".into()),
        buyer_logon_id: Some("15900000012".into()),
        auth_code: None,
        cancel_action: None,
        created_at_ms: paid_at_ms - 1_000,
        paid_at_ms: Some(paid_at_ms),
        closed_at_ms: None,
        product_code: ProductCode::GeneralWithholding,
        notify_url: None,
        agreement_no: None,
        terminal_id: Some("G1".into()),
        store_id: None,
        operator_id: Some("hz-metro".into()),
        fee_fen: FeeContract::default().fee_minor(total_fen),
        qr_token: None,
        expires_at_ms: None,
        auto_confirm_at_ms: None,
        seller_id: Some("2088000000000001".into()),
    }
}

/// Proves bills rendered by the sandbox's own code, in GBK and in UTF-8, are read (encoding
/// detected), their refund and reversal rows matched, and their footers accepted.
#[test]
fn sandbox_bills_in_gbk_and_utf8() {
    let paid = 1_767_312_245_000; // 2026-01-02 08:04:05 +08:00
    let trades = vec![
        sandbox_trade(1, "M1-1", 300, paid),
        sandbox_trade(2, "T2-1", 1_250, paid + 60_000),
        sandbox_trade(3, "K3-1", 400, paid + 120_000),
    ];
    let refund = RefundRow {
        trade_no: trades[0].trade_no.clone(),
        out_request_no: "R1-7".into(),
        refund_fen: 100,
        refunded_total_fen: 100,
        reason: None,
        created_at_ms: paid + 3_600_000,
        kind: RefundKind::Refund,
        fee_fen: turnpike_provider_wire::fee::refund_fee(2, 300, 0, 100),
    };
    let reversal = RefundRow {
        trade_no: trades[1].trade_no.clone(),
        out_request_no: "T2-1".into(),
        refund_fen: 1_250,
        refunded_total_fen: 1_250,
        reason: None,
        created_at_ms: paid + 90_000,
        kind: RefundKind::Cancel,
        fee_fen: 8,
    };
    let text = bill::render(&BillInput {
        account: "20880000000000010156",
        date: DAY.parse().unwrap(),
        trades: &trades,
        refunds: &[(refund, trades[0].clone()), (reversal, trades[1].clone())],
        exported_at_ms: paid + 86_400_000,
    });
    let gw_rows = vec![
        pay("M1-1", "G1", 1, 300),
        pay("T2-1", "L1", 1, 1_250),
        pay("K3-1", "TM1", 1, 400),
        "refund,hz-metro,2026-01-02,M1-1,,R1-7,,,metro,100,1,CNY,1767315845000".into(),
        "reversal,zj-expressway,2026-01-02,T2-1,,,,,toll,1250,8,CNY,1767312335000".into(),
    ];
    for (charset, want) in [
        (Charset::Gbk, Encoding::Gbk),
        (Charset::Utf8, Encoding::Utf8),
    ] {
        let dir = Dir::new("sandbox-bill");
        let b = dir.write("bill.csv", bill::encode(&text, charset));
        let g = dir.write("g.csv", gateway_file(&gw_rows));
        let metro = dir.write(
            "m.csv",
            op_file(&[tap("G1", 1, "exit", 300), tap("TM1", 1, "ticket", 400)]),
        );
        let toll = dir.write("t.csv", op_file(&[tap("L1", 1, "toll_exit", 1_250)]));
        let rec = reconcile(
            &input(&g, &b, &[("hz-metro", &metro), ("zj-expressway", &toll)]),
            &config(),
        )
        .unwrap_or_else(|e| panic!("{charset:?}: {e}"));
        assert_eq!(rec.files[1].encoding, Some(want));
        assert_eq!(
            rec.counts.get(Class::Matched),
            5,
            "{charset:?}: {:#?}",
            rec.items
        );
        assert_eq!(rec.fee_exceptions, vec![], "{charset:?}");
        let toll_day = rec
            .operators
            .iter()
            .find(|o| o.operator_id.as_deref() == Some("zj-expressway"))
            .unwrap();
        assert_eq!(
            (
                toll_day.totals.gross_minor,
                toll_day.totals.refunds_minor,
                toll_day.totals.net_payable_minor
            ),
            (1_250, 1_250, 0)
        );
    }
}
