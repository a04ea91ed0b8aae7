//! Reconciliation on small hand-made days: every class, tolerance, money and journal, and the
//! exactly-one-class property against a naive reference of the decision table.

mod support;

use std::collections::HashMap;

use proptest::prelude::*;
use settlement::*;
use support::*;

/// Proves each class is produced, with file and line of every member, on one small day.
#[test]
fn every_class_on_a_hand_made_day() {
    let dir = Dir::new("classes");
    let gw = dir.write(
        "gateway.csv",
        gateway_file(&[
            pay("M1-1", "G1", 1, 300),                            // line 3: matched
            pay("M2-1", "G1", 2, 300),                            // 4: amount mismatch
            pay("M3-1", "G1", 3, 300),                            // 5: missing at provider
            pay("M4-1", "G1", 4, 300),                            // 6: missing at operator
            pay("M7-1", "G1", 7, 300),                            // 7: matched
            pay("M7-1", "G1", 7, 300),                            // 8: duplicate
            pay("M8-1", "G1", 8, 300).replace(DAY, "2026-01-01"), // 9: other day (late)
            "refund,hz-metro,2026-01-02,M1-1,,R1-1,,,metro,100,1,CNY,1767315845000".into(), // 10
            pay("T9-1", "L1", 1, 1000),                           // 11: matched (toll)
            pay("K10-1", "", 0, 300),                             // 12: matched (no terminal)
            pay("M11-1", "G1", 11, 300),                          // 13: matched (+ provider dup)
            pay("M12-1", "G1", 12, 300),                          // 14: matched
            pay("M12-2", "G1", 12, 300),                          // 15: duplicate (double charge)
            pay("M13-1", "G1", 13, 300),                          // 16: matched (+ operator dup)
        ]),
    );
    let refund = refund("M1-1", "R1-1", 100, 1);
    let bill = dir.write(
        "bill.csv",
        bill_text(
            &[
                trade("M1-1", 300),  // line 6
                trade("M2-1", 350),  // 7
                trade("M4-1", 300),  // 8
                trade("M5-1", 300),  // 9: missing at gateway
                trade("M7-1", 300),  // 10
                trade("M8-1", 300),  // 11
                refund,              // 12
                trade("T9-1", 1000), // 13
                trade("K10-1", 300), // 14
                trade("M11-1", 300), // 15
                trade("M11-1", 300), // 16: duplicate
                trade("M12-1", 300), // 17
                trade("M12-2", 300), // 18
                trade("M13-1", 300), // 19
            ],
            None,
        ),
    );
    let metro = dir.write(
        "metro.csv",
        op_file(&[
            tap("G1", 1, "entry", 0), // line 3: no money
            tap("G1", 1, "exit", 300),
            tap("G1", 2, "exit", 300),
            tap("G1", 3, "exit", 300),
            tap("G1", 6, "exit", 300), // 7: missing at gateway
            tap("G1", 7, "exit", 300),
            tap("G1", 8, "exit", 300),
            "G1,9,2026-01-03T00:30:00+08:00,exit,300,CNY".into(), // 10: other day (early)
            tap("G1", 11, "exit", 300),
            tap("G1", 12, "exit", 300),
            tap("G1", 13, "exit", 300),
            tap("G1", 13, "exit", 300), // 14: duplicate
        ]),
    );
    let toll = dir.write("toll.csv", op_file(&[tap("L1", 1, "toll_exit", 1000)]));
    let rec = reconcile(
        &input(
            &gw,
            &bill,
            &[("hz-metro", &metro), ("zj-expressway", &toll)],
        ),
        &config(),
    )
    .unwrap();

    let counts: HashMap<&str, u64> = Class::ALL
        .iter()
        .map(|c| (c.as_str(), rec.counts.get(*c)))
        .collect();
    assert_eq!(counts["matched"], 8, "{:#?}", rec.items);
    assert_eq!(counts["amount_mismatch"], 1);
    assert_eq!(counts["missing_at_provider"], 1);
    assert_eq!(counts["missing_at_operator"], 1);
    assert_eq!(counts["missing_at_gateway"], 2);
    assert_eq!(counts["duplicate"], 4);
    assert_eq!(counts["other_day"], 2);
    assert_eq!(rec.rows.operator_without_money, 1);
    assert_eq!(
        (rec.rows.gateway, rec.rows.provider, rec.rows.operator),
        (14, 14, 12)
    );

    let item = |key: &str, class: Class| {
        rec.items
            .iter()
            .find(|i| i.key == key && i.class == class)
            .unwrap_or_else(|| panic!("no {class:?} item {key}: {:#?}", rec.items))
    };
    let at = |r: Option<RowRef>| r.map(|r| (rec.files[r.file].side, r.line));
    let m2 = item("M2-1", Class::AmountMismatch);
    assert_eq!(m2.mismatch, vec![MismatchReason::ProviderAmount]);
    assert_eq!(at(m2.gateway), Some((Side::Gateway, 4)));
    assert_eq!(at(m2.provider), Some((Side::Provider, 7)));
    assert_eq!(at(m2.operator), Some((Side::Operator, 5)));
    assert_eq!(
        at(item("M3-1", Class::MissingAtProvider).gateway),
        Some((Side::Gateway, 5))
    );
    assert_eq!(
        at(item("M4-1", Class::MissingAtOperator).provider),
        Some((Side::Provider, 8))
    );
    assert_eq!(
        at(item("M5-1", Class::MissingAtGateway).provider),
        Some((Side::Provider, 9))
    );
    assert_eq!(
        at(item("G1#6", Class::MissingAtGateway).operator),
        Some((Side::Operator, 7))
    );
    assert_eq!(
        at(item("M7-1", Class::Duplicate).gateway),
        Some((Side::Gateway, 8))
    );
    assert_eq!(
        at(item("M11-1", Class::Duplicate).provider),
        Some((Side::Provider, 16))
    );
    let double = item("M12-2", Class::Duplicate);
    assert_eq!(
        (at(double.gateway), at(double.provider)),
        (Some((Side::Gateway, 15)), Some((Side::Provider, 18)))
    );
    assert_eq!(
        at(item("G1#13", Class::Duplicate).operator),
        Some((Side::Operator, 14))
    );
    let late = item("M8-1", Class::OtherDay);
    assert_eq!(late.carried_to.as_deref(), Some("2026-01-01"));
    assert_eq!(at(late.operator), Some((Side::Operator, 9)));
    assert_eq!(
        item("G1#9", Class::OtherDay).carried_to.as_deref(),
        Some("2026-01-03")
    );
    assert!(rec.items.iter().all(|i| i.class != Class::Matched));

    // Money: settled = matched, amount mismatch (provider's amount), missing at operator.
    let metro_day = rec
        .operators
        .iter()
        .find(|o| o.operator_id.as_deref() == Some("hz-metro"))
        .unwrap();
    let t = &metro_day.totals;
    // M1 300, M2 350, M4 300, M7 300, K10 300, M11 300, M12-1 300, M13 300.
    assert_eq!(t.payments, 8);
    assert_eq!(t.gross_minor, 2450);
    assert_eq!(t.gross_tickets_minor, 300);
    assert_eq!(t.refunds_minor, 100);
    assert_eq!(t.fees_charged_minor, 7 * 2 + 2);
    assert_eq!(t.fees_returned_minor, 1);
    assert_eq!(t.net_payable_minor, 2450 - 100 - (16 - 1));
    assert_eq!(t.fee_exceptions, 0);
    metro_day.journal.check().unwrap();
    assert_eq!(
        metro_day.journal.net_minor(Account::ProviderClearing),
        t.net_payable_minor
    );
    assert_eq!(
        metro_day.journal.net_minor(Account::OperatorPayout),
        -t.net_payable_minor
    );
    let toll_day = rec
        .operators
        .iter()
        .find(|o| o.operator_id.as_deref() == Some("zj-expressway"))
        .unwrap();
    assert_eq!(
        (
            toll_day.totals.gross_tolls_minor,
            toll_day.totals.net_payable_minor
        ),
        (1000, 994)
    );
    assert_eq!(toll_day.counts.get(Class::Matched), 1);
}

/// Proves the amount tolerance: a 1-fen difference is a mismatch at 0 and a match at 1.
#[test]
fn tolerance() {
    let dir = Dir::new("tolerance");
    let gw = dir.write("g.csv", gateway_file(&[pay("M1-1", "G1", 1, 300)]));
    let bill = dir.write(
        "b.csv",
        bill_text(
            &[BillRow {
                fee_fen: -2,
                ..trade("M1-1", 301)
            }],
            None,
        ),
    );
    let ops = dir.write("o.csv", op_file(&[tap("G1", 1, "exit", 299)]));
    let inp = input(&gw, &bill, &[("hz-metro", &ops)]);
    let strict = reconcile(&inp, &config()).unwrap();
    assert_eq!(strict.counts.get(Class::AmountMismatch), 1);
    assert_eq!(
        strict.items[0].mismatch,
        vec![
            MismatchReason::ProviderAmount,
            MismatchReason::OperatorAmount
        ]
    );
    let mut loose = config();
    loose.tolerance_minor = 1;
    assert_eq!(
        reconcile(&inp, &loose).unwrap().counts.get(Class::Matched),
        1
    );
}

/// Proves kind and operator disagreements with the operator's row are mismatches, and a fee
/// off the contract is reported as a fee exception while the item still matches.
#[test]
fn kind_operator_and_fee_checks() {
    let dir = Dir::new("kinds");
    let gw = dir.write(
        "g.csv",
        gateway_file(&[pay("M1-1", "G1", 1, 300), pay("M2-1", "G2", 1, 300)]),
    );
    let bill = dir.write(
        "b.csv",
        bill_text(
            &[
                BillRow {
                    fee_fen: -3,
                    ..trade("M1-1", 300)
                },
                trade("M2-1", 300),
            ],
            None,
        ),
    );
    let metro = dir.write("m.csv", op_file(&[tap("G1", 1, "exit", 300)]));
    let other = dir.write("x.csv", op_file(&[tap("G2", 1, "toll_exit", 300)]));
    let rec = reconcile(
        &input(
            &gw,
            &bill,
            &[("hz-metro", &metro), ("zj-expressway", &other)],
        ),
        &config(),
    )
    .unwrap();
    assert_eq!(rec.counts.get(Class::Matched), 1);
    let m2 = &rec.items[0];
    assert_eq!(m2.key, "M2-1");
    assert_eq!(
        m2.mismatch,
        vec![MismatchReason::OperatorKind, MismatchReason::OperatorId]
    );
    assert_eq!(rec.fee_exceptions.len(), 1);
    let f = &rec.fee_exceptions[0];
    assert_eq!(
        (
            f.key.as_str(),
            f.fee_provider_minor,
            f.fee_expected_minor,
            f.fee_gateway_minor
        ),
        ("M1-1", 3, 2, 2)
    );
    let metro_day = rec
        .operators
        .iter()
        .find(|o| o.operator_id.as_deref() == Some("hz-metro"))
        .unwrap();
    assert_eq!(metro_day.totals.fee_exceptions, 1);
    assert_eq!(metro_day.totals.fees_charged_minor, 5);
    assert_eq!(metro_day.totals.fees_expected_minor, 4);
}

/// Proves fee rounding: half-up on payments (ties away from zero), the fixed part, and the pro
/// rata refund share.
#[test]
fn fee_rounding() {
    let c = FeeContract::default();
    for (amount, fee) in [
        (250, 2),
        (249, 1),
        (84, 1),
        (83, 0),
        (1, 0),
        (10_000, 60),
        (8_333, 50),
    ] {
        assert_eq!(c.fee_minor(amount), fee, "fee of {amount}");
    }
    let fixed = FeeContract {
        rate_bp: 38,
        fixed_minor: 10,
    };
    assert_eq!(fixed.fee_minor(1_000), 10 + 4); // 3.8 → 4
    assert_eq!(fixed.fee_minor(1_250), 10 + 5); // 4.75 → 5
    assert_eq!(turnpike_provider_wire::fee::refund_fee(2, 300, 0, 100), 1); // 0.67
    assert_eq!(turnpike_provider_wire::fee::refund_fee(3, 500, 0, 250), 2); // 1.5
    assert_eq!(turnpike_provider_wire::fee::refund_fee(3, 500, 0, 249), 1); // 1.494
    assert_eq!(turnpike_provider_wire::fee::refund_fee(5, 0, 0, 1), 0);
}

/// Proves the journal balances for any totals, and that a tampered journal fails loudly.
#[test]
fn journal_balance() {
    let mut t = Totals {
        payments: 3,
        gross_minor: 1_000,
        gross_fares_minor: 1_000,
        refunds: 1,
        refunds_minor: 300,
        fees_charged_minor: 6,
        fees_returned_minor: 2,
        ..Totals::default()
    };
    t.net_payable_minor = 1_000 - 300 - 4;
    let j = Journal::build("2026-01-02", "hz-metro", "CNY", &t);
    j.check().unwrap();
    assert_eq!(j.net_minor(Account::ProviderClearing), 696);
    assert_eq!(j.net_minor(Account::OperatorPayout), -696);
    // Refunds above the gross: the operator owes money back; still balanced.
    let mut neg = Totals {
        refunds_minor: 2_000,
        ..t.clone()
    };
    neg.net_payable_minor = 1_000 - 2_000 - 4;
    Journal::build("2026-01-02", "hz-metro", "CNY", &neg)
        .check()
        .unwrap();
    let mut bad = j.clone();
    bad.entries[0].lines[0].debit_minor += 1;
    let err = bad.check().unwrap_err();
    assert!(matches!(err, SettlementError::Unbalanced { .. }), "{err}");
    assert!(err.to_string().contains("does not balance"), "{err}");
}

// ---- exactly one class: the engine against a naive reference ----

#[derive(Debug, Clone)]
struct G {
    key: u8,
    seq: Option<u8>,
    amount: i64,
    late: bool,
}

#[derive(Debug, Clone)]
struct P {
    key: u8,
    amount: i64,
    next_day: bool,
}

#[derive(Debug, Clone)]
struct O {
    seq: u8,
    amount: i64,
    next_day: bool,
}

fn g_strategy() -> impl Strategy<Value = G> {
    (
        0u8..8,
        prop::option::weighted(0.8, 0u8..8),
        prop_oneof![9 => Just(300i64), 1 => Just(301)],
        prop::bool::weighted(0.1),
    )
        .prop_map(|(key, seq, amount, late)| G {
            key,
            seq,
            amount,
            late,
        })
}

fn p_strategy() -> impl Strategy<Value = P> {
    (
        0u8..8,
        prop_oneof![9 => Just(300i64), 1 => Just(302)],
        prop::bool::weighted(0.1),
    )
        .prop_map(|(key, amount, next_day)| P {
            key,
            amount,
            next_day,
        })
}

fn o_strategy() -> impl Strategy<Value = O> {
    (
        0u8..8,
        prop_oneof![9 => Just(300i64), 1 => Just(303)],
        prop::bool::weighted(0.1),
    )
        .prop_map(|(seq, amount, next_day)| O {
            seq,
            amount,
            next_day,
        })
}

/// The decision table, written as plainly as possible.
fn reference(g: &[G], p: &[P], o: &[O]) -> [u64; 7] {
    let mut c = [0u64; 7];
    let mut first_g: HashMap<u8, usize> = HashMap::new();
    for (i, r) in g.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(e) = first_g.entry(r.key) {
            e.insert(i);
        } else {
            c[Class::Duplicate as usize] += 1;
        }
    }
    let mut first_p: HashMap<u8, usize> = HashMap::new();
    for (i, r) in p.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(e) = first_p.entry(r.key) {
            e.insert(i);
        } else {
            c[Class::Duplicate as usize] += 1;
        }
    }
    let mut first_o: HashMap<u8, usize> = HashMap::new();
    for (i, r) in o.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(e) = first_o.entry(r.seq) {
            e.insert(i);
        } else {
            c[Class::Duplicate as usize] += 1;
        }
    }
    let mut firsts: Vec<usize> = first_g.values().copied().collect();
    firsts.sort();
    let mut charge_of_seq: HashMap<u8, usize> = HashMap::new();
    for &i in &firsts {
        let r = &g[i];
        let pr = first_p.get(&r.key).map(|&j| &p[j]);
        if let Some(seq) = r.seq {
            if charge_of_seq.contains_key(&seq) {
                c[Class::Duplicate as usize] += 1;
                continue;
            }
            charge_of_seq.insert(seq, i);
        }
        let or = r.seq.and_then(|s| first_o.get(&s)).map(|&j| &o[j]);
        let class = if r.late || pr.is_some_and(|p| p.next_day) || or.is_some_and(|o| o.next_day) {
            Class::OtherDay
        } else if pr.is_none() {
            Class::MissingAtProvider
        } else if r.seq.is_some() && or.is_none() {
            Class::MissingAtOperator
        } else if pr.unwrap().amount != r.amount || or.is_some_and(|o| o.amount != r.amount) {
            Class::AmountMismatch
        } else {
            Class::Matched
        };
        c[class as usize] += 1;
    }
    for (&key, &j) in &first_p {
        if !first_g.contains_key(&key) {
            c[if p[j].next_day {
                Class::OtherDay
            } else {
                Class::MissingAtGateway
            } as usize] += 1;
        }
    }
    let seqs_at_gateway: Vec<u8> = first_g.values().filter_map(|&i| g[i].seq).collect();
    for (&seq, &j) in &first_o {
        if !seqs_at_gateway.contains(&seq) {
            c[if o[j].next_day {
                Class::OtherDay
            } else {
                Class::MissingAtGateway
            } as usize] += 1;
        }
    }
    c
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Proves every row lands in exactly one item with exactly one class: the engine's counts
    /// equal a naive reference's, and the members of the reported items plus the matched items
    /// account for every row of every side.
    #[test]
    fn exactly_one_class(
        g in prop::collection::vec(g_strategy(), 0..14),
        p in prop::collection::vec(p_strategy(), 0..14),
        o in prop::collection::vec(o_strategy(), 0..14),
    ) {
        let dir = Dir::new("prop");
        let g_rows: Vec<String> = g.iter().map(|r| {
            let row = pay(&format!("M{}-1", r.key + 1), if r.seq.is_some() { "G1" } else { "" }, r.seq.unwrap_or(0) as u64, r.amount);
            if r.late { row.replace(DAY, "2026-01-01") } else { row }
        }).collect();
        let keys: Vec<String> = p.iter().map(|r| format!("M{}-1", r.key + 1)).collect();
        let b_rows: Vec<BillRow<'_>> = p.iter().zip(&keys).map(|(r, k)| BillRow {
            finished: if r.next_day { "2026-01-03 00:00:00" } else { "2026-01-02 23:59:59" },
            ..trade(k, r.amount)
        }).collect();
        let o_rows: Vec<String> = o.iter().map(|r| {
            let t = if r.next_day { "2026-01-01T23:59:59.999+08:00" } else { "2026-01-02T00:00:00+08:00" };
            format!("G1,{},{t},exit,{},CNY", r.seq, r.amount)
        }).collect();
        let gw = dir.write("g.csv", gateway_file(&g_rows));
        let bill = dir.write("b.csv", bill_text(&b_rows, None));
        let ops = dir.write("o.csv", op_file(&o_rows));
        let rec = reconcile(&input(&gw, &bill, &[("hz-metro", &ops)]), &config()).unwrap();
        prop_assert_eq!(rec.counts.0, reference(&g, &p, &o));
        // Accounting: each side's rows = members of reported items + members of matched items.
        let matched = rec.counts.get(Class::Matched);
        let with = |f: fn(&Item) -> bool| rec.items.iter().filter(|i| f(i)).count() as u64;
        prop_assert_eq!(rec.rows.gateway, with(|i| i.gateway.is_some()) + matched);
        prop_assert_eq!(rec.rows.provider, with(|i| i.provider.is_some()) + matched);
        let matched_at_terminal = g.iter().filter(|r| r.seq.is_some()).count() as u64;
        prop_assert!(rec.rows.operator >= with(|i| i.operator.is_some()));
        prop_assert!(rec.rows.operator - with(|i| i.operator.is_some()) <= matched.min(matched_at_terminal));
        prop_assert_eq!(rec.items.len() as u64 + matched, rec.counts.total());
        for op in &rec.operators {
            op.journal.check().unwrap();
        }
    }
}

/// Proves each operator's business day is its own: the same Shanghai wall-clock bill time and
/// the same instant in an operator's export fall on different business days for an operator
/// in Asia/Shanghai, one in Asia/Tokyo and one in Europe/Berlin.
#[test]
fn business_days_follow_each_operators_time_zone() {
    let dir = Dir::new("zones");
    let row = |op: &str, day: &str, trade: &str, terminal: &str, seq: u64, amount: i64| {
        format!(
            "payment,{op},{day},{trade},P{trade},,{terminal},{seq},metro,{amount},{},CNY,1767367800000",
            FeeContract::default().fee_minor(amount)
        )
    };
    let gw = dir.write(
        "gateway.csv",
        gateway_file(&[
            // 23:30 in Shanghai: the day itself for hz-metro.
            row("hz-metro", DAY, "M1-1", "G1", 1, 300),
            // 22:00 Shanghai = 23:00 Tokyo: still the day in Tokyo.
            row("tokyo-metro", DAY, "M4-1", "J1", 4, 300),
        ]),
    );
    let at = |trade: &'static str, finished: &'static str| BillRow {
        finished,
        ..trade_row(trade)
    };
    let mut bill = bill_text(
        &[
            at("M1-1", "2026-01-02 23:30:00"),
            at("M4-1", "2026-01-02 22:00:00"),
            // 23:30 Shanghai = 00:30 on 2026-01-03 in Tokyo; no gateway record on this day.
            at("N1-1", "2026-01-02 23:30:00"),
            // 06:30 Shanghai = 23:30 on 2026-01-01 in Berlin.
            at("B1-1", "2026-01-02 06:30:00"),
            // Same wall-clock time for hz-metro: its own day, a missing gateway record.
            at("H1-1", "2026-01-02 23:30:00"),
        ],
        None,
    );
    // The bill's 操作员 names the operator of each row.
    bill = bill
        .lines()
        .map(|l| {
            let op = if l.contains("M4-1\t") || l.contains("N1-1\t") {
                "tokyo-metro"
            } else if l.contains("B1-1\t") {
                "berlin-tram"
            } else {
                "hz-metro"
            };
            l.replace(",hz-metro\t,", &format!(",{op}\t,")) + "\r\n"
        })
        .collect();
    let bill = dir.write("bill.csv", bill);
    let hz = dir.write(
        "hz.csv",
        op_file(&["G1,1,2026-01-02T23:30:00+08:00,exit,300,CNY".into()]),
    );
    let tokyo = dir.write(
        "tokyo.csv",
        op_file(&[
            "J1,4,2026-01-02T23:00:00+09:00,exit,300,CNY".into(),
            // 23:50 Shanghai: 00:50 the next day in Tokyo; no gateway record.
            "J1,9,2026-01-02T23:50:00+08:00,exit,400,CNY".into(),
        ]),
    );
    let input = input(&gw, &bill, &[("hz-metro", &hz), ("tokyo-metro", &tokyo)]);
    let day: jiff::civil::Date = DAY.parse().unwrap();
    let midnight = jiff::civil::Time::midnight();
    let mut zoned = config();
    for (op, zone) in [
        ("tokyo-metro", "Asia/Tokyo"),
        ("berlin-tram", "Europe/Berlin"),
    ] {
        zoned
            .operator_days
            .insert(op.into(), DayWindow::named(day, zone, midnight).unwrap());
    }
    let rec = reconcile(&input, &zoned).unwrap();
    let find = |rec: &Reconciliation, key: &str| rec.items.iter().find(|i| i.key == key).cloned();
    let n1 = find(&rec, "N1-1").unwrap();
    assert_eq!(
        (n1.class, n1.carried_to.as_deref()),
        (Class::OtherDay, Some("2026-01-03"))
    );
    assert_eq!((n1.record, n1.provider_fee_minor), (RecordKind::Payment, 2));
    let b1 = find(&rec, "B1-1").unwrap();
    assert_eq!(
        (b1.class, b1.carried_to.as_deref()),
        (Class::OtherDay, Some("2026-01-01"))
    );
    let j9 = find(&rec, "J1#9").unwrap();
    assert_eq!(
        (j9.class, j9.carried_to.as_deref()),
        (Class::OtherDay, Some("2026-01-03"))
    );
    // Shanghai's operator: the same wall-clock time is its own day.
    assert_eq!(find(&rec, "H1-1").unwrap().class, Class::MissingAtGateway);
    assert!(
        find(&rec, "M1-1").is_none() && find(&rec, "M4-1").is_none(),
        "{:?}",
        rec.items
    );
    assert_eq!(rec.counts.get(Class::Matched), 2);

    // Everyone in Shanghai: the Tokyo and Berlin rows are this day's (nothing to carry).
    let rec = reconcile(&input, &config()).unwrap();
    for key in ["N1-1", "B1-1", "J1#9"] {
        assert_eq!(
            find(&rec, key).unwrap().class,
            Class::MissingAtGateway,
            "{key}"
        );
    }

    // A window of another date is a configuration error, not a silent mix of days.
    let mut wrong = config();
    wrong.operator_days.insert(
        "tokyo-metro".into(),
        DayWindow::named("2026-01-03".parse().unwrap(), "Asia/Tokyo", midnight).unwrap(),
    );
    let err = reconcile(&input, &wrong).unwrap_err().to_string();
    assert!(
        err.contains("tokyo-metro") && err.contains("2026-01-03"),
        "{err}"
    );
    assert!(DayWindow::named(day, "Mars/Olympus", midnight)
        .unwrap_err()
        .to_string()
        .contains("Mars/Olympus"));
}

fn trade_row(out_trade_no: &'static str) -> BillRow<'static> {
    trade(out_trade_no, 300)
}

/// Proves the records behind `gross` and `refunds` (what the drill-down and `records.csv`
/// show) label each gateway row with its own item's class — by row, so of a trade the gateway
/// booked twice only the settled booking is listed — and carry the money the figures count:
/// the provider's amount where the amounts differ, the provider's fee where the fees differ
/// (both on one row too), and that the pages add up to the figures.
#[test]
fn record_pages_carry_each_rows_class_and_the_providers_money() {
    use settlement::run::EngineInputs;
    let dir = Dir::new("record-pages");
    let contract = |amount| FeeContract::default().fee_minor(amount);
    let gw = dir.write(
        "gateway.csv",
        gateway_file(&[
            pay("M1-1", "G1", 1, 300), // matched
            pay("M2-1", "G1", 2, 300), // amount mismatch: settles at the provider's 350
            pay("M3-1", "G1", 3, 300), // matched, the provider charged a fee of 5
            pay("M4-1", "G1", 4, 300), // amount mismatch and a fee of 7
            pay("M1-1", "G1", 1, 300), // the same booking again: a duplicate, not a record
            "refund,hz-metro,2026-01-02,M1-1,,R1-1,,,metro,100,1,CNY,1767315845000".into(),
        ]),
    );
    let fee = |row: BillRow<'static>, fee_fen| BillRow { fee_fen, ..row };
    let bill = dir.write(
        "bill.csv",
        bill_text(
            &[
                trade("M1-1", 300),
                trade("M2-1", 350),
                fee(trade("M3-1", 300), -5),
                fee(trade("M4-1", 400), -7),
                refund("M1-1", "R1-1", 100, 1),
            ],
            None,
        ),
    );
    let metro = dir.write(
        "metro.csv",
        op_file(
            &(1..=4)
                .map(|s| tap("G1", s, "exit", 300))
                .collect::<Vec<_>>(),
        ),
    );
    let inputs = EngineInputs {
        business_day: DAY.parse().unwrap(),
        operator: None,
        gateway_exports: vec![gw],
        provider_bills: vec![bill],
        operator_exports: vec![("hz-metro".into(), metro)],
        fee_rates_bp: Vec::new(),
        operator_days: Default::default(),
    };
    let (outcome, records) = settlement::engine().settle(&inputs).unwrap();
    let mut pages = Vec::new();
    records
        .write(&mut |page| {
            pages.push(page);
            Ok(())
        })
        .unwrap();
    let lines = |figure: &str| -> Vec<String> {
        pages
            .iter()
            .filter(|p| p.figure == figure)
            .flat_map(|p| p.body.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    assert_eq!(
        lines("gross"),
        [
            format!("M1-1,,300,{},metro at G1#1", contract(300)),
            format!("M2-1,amount_mismatch,350,{},metro at G1#2", contract(300)),
            "M3-1,,300,5,metro at G1#3".to_string(),
            "M4-1,amount_mismatch,400,7,metro at G1#4".to_string(),
        ]
    );
    assert_eq!(lines("refunds"), ["R1-1,,100,-1,metro refund"]);
    // The pages add up to the figures they stand behind.
    let hz = outcome
        .operators
        .iter()
        .find(|o| o.operator_id == "hz-metro")
        .unwrap();
    let sum = |figure: &str| -> i64 {
        pages
            .iter()
            .filter(|p| p.figure == figure)
            .map(|p| p.amount_minor)
            .sum()
    };
    assert_eq!(sum("gross"), hz.figure("gross").unwrap().amount_minor);
    assert_eq!(sum("refunds"), hz.figure("refunds").unwrap().amount_minor);
}
