//! Statements beyond one day's inputs, on SQLite and PostgreSQL: `other_day` items carried to
//! the day they belong to as adjustments (exactly once, whichever day runs first or again; to
//! the source day when the target is approved), `adjust` resolutions that change statement,
//! journal and payout, approval per (day, operator), and an operator's own time zone.

#[macro_use]
mod review_fixture;

use std::path::PathBuf;

use review_fixture::*;
use settlement::run::{run_day, GatewayInput, OperatorDay, RunConfig, RunReport};
use settlement::store::{ExceptionFilter, Store, StoreError};
use turnpike_test_support::Scratch;

const D1: &str = "2026-01-01";
const D2: &str = "2026-01-02";
const HZ: &str = "hz-metro";

fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:02}",
        fen.unsigned_abs() / 100,
        fen.unsigned_abs() % 100
    )
}

/// A gateway export v1 of payment rows (op, charge's business day, trade, terminal, seq, amount).
fn gateway(rows: &[(&str, &str, &str, &str, u64, i64)]) -> String {
    let mut s = String::from("# turnpike-gateway-export v1\nrecord_type,operator_id,business_day,out_trade_no,provider_trade_no,out_request_no,terminal_id,terminal_sequence,kind,amount_minor,fee_minor,currency,occurred_at_ms\n");
    for (op, day, trade, terminal, seq, amount) in rows {
        s.push_str(&format!(
            "payment,{op},{day},{trade},P{trade},,{terminal},{seq},metro,{amount},{},CNY,1767312245000\n",
            fee(*amount)
        ));
    }
    s.push_str(&format!("# end rows={}\n", rows.len()));
    s
}

/// A provider bill of the given day: trades (out_trade_no, amount, 操作员, 完成时间).
fn bill(day: &str, trades: &[(&str, i64, &str, &str)]) -> String {
    let d: jiff::civil::Date = day.parse().unwrap();
    let next = d.tomorrow().unwrap();
    let cn = |d: jiff::civil::Date| format!("{}年{:02}月{:02}日", d.year(), d.month(), d.day());
    let mut lines = vec![
        "#支付宝业务明细查询".to_string(),
        "#账号：[20880000000000010156]".into(),
        format!("#起始日期：[{} 00:00:00]   终止日期：[{} 00:00:00]", cn(d), cn(next)),
        "#-----------------------------------------业务明细列表----------------------------------------".into(),
        "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注".into(),
    ];
    let mut total = 0;
    for (out, amount, op, t) in trades {
        let a = yuan(*amount);
        lines.push(format!(
            "2026010222001{:015}\t,{out}\t,交易\t,票价,{t},{t},\t,\t,{op}\t,G1\t,159******12\t,{a},{a},0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,\t,{},0.00,",
            out.len(),
            yuan(-fee(*amount))
        ));
        total += amount;
    }
    lines.push("#-----------------------------------------业务明细列表结束------------------------------------".into());
    lines.push(format!(
        "#交易合计：{}笔，商家实收共{}元，商家优惠共0.00元",
        trades.len(),
        yuan(total)
    ));
    lines.push("#退款合计：0笔，商家实收退款共0.00元，商家优惠退款共0.00元".into());
    lines.push(format!("#导出时间：[{} 09:00:00]", cn(next)));
    lines.join("\r\n") + "\r\n"
}

fn taps(rows: &[&str]) -> String {
    let mut s = String::from("# turnpike-operator-export v1\nterminal_id,terminal_sequence,occurred_at,kind,amount_minor,currency\n");
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s.push_str(&format!("# end rows={}\n", rows.len()));
    s
}

/// One day's three files for hz-metro in a scratch directory.
struct DayFiles {
    dir: Scratch,
    day: &'static str,
    gateway: PathBuf,
    bill: PathBuf,
    ops: Vec<(String, PathBuf)>,
    operator_days: Vec<OperatorDay>,
}

impl DayFiles {
    fn new(day: &'static str, gateway: String, bill: String, ops: &[(&str, String)]) -> DayFiles {
        let dir = Scratch::new(&format!("settlement-carry-{day}"));
        let w = |name: &str, body: &str| {
            let p = dir.0.join(name);
            std::fs::write(&p, body).unwrap();
            p
        };
        DayFiles {
            gateway: w("gateway.csv", &gateway),
            bill: w("bill.csv", &bill),
            ops: ops
                .iter()
                .map(|(id, body)| (id.to_string(), w(&format!("{id}.csv"), body)))
                .collect(),
            operator_days: Vec::new(),
            day,
            dir,
        }
    }

    fn config(&self, operator: Option<&str>) -> RunConfig {
        RunConfig {
            business_day: self.day.parse().unwrap(),
            operator: operator.map(str::to_string),
            gateway: GatewayInput::Files(vec![self.gateway.clone()]),
            provider_bills: vec![self.bill.clone()],
            operator_exports: self.ops.clone(),
            work_dir: self.dir.0.join("work"),
            out_dir: None,
            operator_days: self.operator_days.clone(),
        }
    }

    async fn run(&self, store: &Store) -> anyhow::Result<RunReport> {
        run_day(store, settlement::engine(), &self.config(None)).await
    }
}

/// Day 1: one matched payment. Day 2: one matched payment, and L1-1 — a charge of day 1
/// captured (and on the provider's bill) on day 2: an `other_day` item belonging to day 1
/// with the provider's 800 (fee 5).
fn two_days() -> (DayFiles, DayFiles) {
    let d1 = DayFiles::new(
        D1,
        gateway(&[(HZ, D1, "M2-1", "G1", 2, 500)]),
        bill(D1, &[("M2-1", 500, HZ, "2026-01-01 08:01:00")]),
        &[(HZ, taps(&["G1,2,2026-01-01T08:00:00+08:00,exit,500,CNY"]))],
    );
    let d2 = DayFiles::new(
        D2,
        gateway(&[
            (HZ, D2, "M1-1", "G1", 1, 300),
            (HZ, D1, "L1-1", "G1", 5, 800),
        ]),
        bill(
            D2,
            &[
                ("M1-1", 300, HZ, "2026-01-02 08:01:00"),
                ("L1-1", 800, HZ, "2026-01-02 08:05:00"),
            ],
        ),
        &[(
            HZ,
            taps(&[
                "G1,1,2026-01-02T08:00:00+08:00,exit,300,CNY",
                "G1,5,2026-01-01T23:50:00+08:00,exit,800,CNY",
            ]),
        )],
    );
    (d1, d2)
}

const CARRIED_NET: i64 = 800 - 5;

async fn figure(store: &Store, day: &str, op: &str, name: &str) -> i64 {
    store
        .statement(day, op)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.figure == name)
        .unwrap_or_else(|| panic!("no {name} in {op}'s statement of {day}"))
        .amount_minor
}

async fn current(store: &Store, day: &str, name: &str) -> String {
    store.latest_output(day, name).await.unwrap().unwrap().body
}

both_backends!(a_late_item_is_carried_to_its_day_exactly_once_whichever_runs_first);
async fn a_late_item_is_carried_to_its_day_exactly_once_whichever_runs_first(backend: &str) {
    // Proves: an other_day item waits for its day's run and is then an adjustment there; a day
    // settled before is recomposed at once; re-running either day never doubles it; journal
    // and payout follow.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    let (d1, d2) = two_days();
    // Day 2 first: L1-1 leaves day 2 and waits for day 1.
    let r2 = d2.run(&store).await.unwrap();
    let hz2 = &r2.outcome.operators[0];
    assert_eq!(hz2.carried_out.len(), 1);
    assert_eq!(hz2.carried_out[0].reference, "L1-1");
    assert_eq!(hz2.carried_out[0].belongs_to, D1);
    assert_eq!(hz2.carried_out[0].net_minor, CARRIED_NET);
    assert_eq!(figure(&store, D2, HZ, "adjustments").await, 0);
    assert_eq!(figure(&store, D2, HZ, "net_payable").await, 300 - fee(300));
    let waiting = store.carries_booked(D1, HZ).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert!(store.statement(D1, HZ).await.unwrap().is_empty());

    // Day 1 settles with the carried item as an adjustment.
    let r1 = d1.run(&store).await.unwrap();
    let hz1 = &r1.outcome.operators[0];
    let net1 = 500 - fee(500) + CARRIED_NET;
    assert_eq!(hz1.figure("adjustments").unwrap().amount_minor, CARRIED_NET);
    assert_eq!(hz1.figure("net_payable").unwrap().amount_minor, net1);
    assert_eq!(hz1.journal_imbalance_minor(), 0);
    assert!(hz1.journal.iter().any(|l| l.entry == "carried_items"
        && l.account == "provider_clearing"
        && l.debit_minor == CARRIED_NET));
    let items = store
        .line_items(D1, HZ, "adjustments", 0..u64::MAX)
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (
            items[0].reference.as_str(),
            items[0].class.as_str(),
            items[0].amount_minor
        ),
        ("L1-1", "carried_in", CARRIED_NET)
    );
    assert_eq!(items[0].source_day, D2);
    assert!(store
        .exceptions(&ExceptionFilter {
            business_day: Some(D2.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .any(|e| e.key == items[0].exception_key && e.class == "other_day"));
    assert!(current(&store, D1, "hz-metro/payout.csv")
        .await
        .contains(&format!("hz-metro,{D1},{net1},CNY")));
    assert!(current(&store, D1, "hz-metro/statement.csv")
        .await
        .contains(&format!("figure,adjustments,,,{CARRIED_NET},CNY")));

    // Re-running either day changes nothing: once, and byte-identical.
    let payout = current(&store, D1, "hz-metro/payout.csv").await;
    assert!(d2.run(&store).await.unwrap().same_as_previous);
    assert!(d1.run(&store).await.unwrap().same_as_previous);
    assert!(d2.run(&store).await.unwrap().same_as_previous);
    assert_eq!(figure(&store, D1, HZ, "adjustments").await, CARRIED_NET);
    assert_eq!(figure(&store, D2, HZ, "adjustments").await, 0);
    assert_eq!(current(&store, D1, "hz-metro/payout.csv").await, payout);

    // The other order, on a fresh database: day 1 first, then day 2 recomposes day 1's
    // statement (without a run of day 1), audited on day 1.
    let Some((store, _guard2)) = review_fixture::store(backend).await else {
        return;
    };
    d1.run(&store).await.unwrap();
    assert_eq!(figure(&store, D1, HZ, "adjustments").await, 0);
    d2.run(&store).await.unwrap();
    assert_eq!(figure(&store, D1, HZ, "adjustments").await, CARRIED_NET);
    assert_eq!(figure(&store, D1, HZ, "net_payable").await, net1);
    assert_eq!(current(&store, D1, "hz-metro/payout.csv").await, payout);
    let audit = store.audit(D1).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "carry" && a.detail.contains("L1-1")),
        "{audit:?}"
    );
    d2.run(&store).await.unwrap();
    d1.run(&store).await.unwrap();
    assert_eq!(figure(&store, D1, HZ, "adjustments").await, CARRIED_NET);
    assert_eq!(store.carries_booked(D1, HZ).await.unwrap().len(), 1);
}

both_backends!(a_carry_to_an_approved_day_is_booked_to_its_own_day);
async fn a_carry_to_an_approved_day_is_booked_to_its_own_day(backend: &str) {
    // Proves: an approved statement never changes: a new carried item for it is an adjustment
    // of the day that found it, and a run that would change an item already in an approved
    // statement is refused with the way out, storing nothing.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    let (d1, d2) = two_days();
    d1.run(&store).await.unwrap();
    assert!(approve(&store, D1, HZ).await);
    let payout1 = current(&store, D1, "hz-metro/payout.csv").await;
    d2.run(&store).await.unwrap();
    // The days page pages by day: newest first, then the days before the last one shown.
    assert_eq!(store.recent_days("", 1).await.unwrap(), [D2]);
    assert_eq!(store.recent_days(D2, 5).await.unwrap(), [D1]);
    assert!(store.recent_days(D1, 5).await.unwrap().is_empty());
    let d1_rows = store.day_summaries_between(D1, D1).await.unwrap();
    assert!(!d1_rows.is_empty() && d1_rows.iter().all(|r| r.business_day == D1));
    assert_eq!(figure(&store, D1, HZ, "adjustments").await, 0);
    assert_eq!(current(&store, D1, "hz-metro/payout.csv").await, payout1);
    assert_eq!(figure(&store, D2, HZ, "adjustments").await, CARRIED_NET);
    assert_eq!(
        figure(&store, D2, HZ, "net_payable").await,
        300 - fee(300) + CARRIED_NET
    );
    let items = store
        .line_items(D2, HZ, "adjustments", 0..u64::MAX)
        .await
        .unwrap();
    assert!(items[0].detail.contains("approved"), "{:?}", items[0]);
    assert!(d2.run(&store).await.unwrap().same_as_previous);

    // Booked into day 1 while it was open, then day 1 approved: day 2's inputs change.
    let Some((store, _guard2)) = review_fixture::store(backend).await else {
        return;
    };
    d1.run(&store).await.unwrap();
    d2.run(&store).await.unwrap();
    approve(&store, D1, HZ).await;
    let before = store.latest_run(D2).await.unwrap();
    std::fs::write(
        &d2.gateway,
        gateway(&[
            (HZ, D2, "M1-1", "G1", 1, 300),
            (HZ, D1, "L1-1", "G1", 5, 750),
        ]),
    )
    .unwrap();
    let err = format!("{:#}", d2.run(&store).await.unwrap_err());
    assert!(
        err.contains("L1-1") && err.contains("--date 2026-01-01 --operator hz-metro"),
        "{err}"
    );
    assert_eq!(store.latest_run(D2).await.unwrap(), before);
    assert_eq!(figure(&store, D1, HZ, "adjustments").await, CARRIED_NET);
    // Reopened, the change goes through to day 1.
    store
        .reopen_operator(D1, HZ, "ops", "gateway export corrected")
        .await
        .unwrap();
    d2.run(&store).await.unwrap();
    assert_eq!(store.carries_booked(D1, HZ).await.unwrap().len(), 1);
    assert_eq!(figure(&store, D1, HZ, "adjustments").await, CARRIED_NET);
}

both_backends!(an_adjust_resolution_changes_statement_journal_and_payout);
async fn an_adjust_resolution_changes_statement_journal_and_payout(backend: &str) {
    // Proves: adjust moves net payable, journal and payout, drills down to its resolution, is
    // replaced by a later resolution, and a re-run with the same inputs and resolutions
    // reproduces the outputs byte for byte.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    let inputs = Inputs::write();
    inputs.run(&store).await.unwrap();
    let base_net = figure(&store, DAY, HZ, "net_payable").await;
    let m2 = store
        .exceptions(&ExceptionFilter {
            class: Some("amount_mismatch".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.reference == "M2-1")
        .unwrap();
    assert!(matches!(
        store
            .resolve_exception(DAY, &m2.key, "adjust", "no amount", None, USER)
            .await,
        Err(StoreError::AdjustWithoutAmount)
    ));
    store
        .resolve_exception(
            DAY,
            &m2.key,
            "adjust",
            "operator's fare table was right",
            Some(50),
            USER,
        )
        .await
        .unwrap();
    assert_eq!(figure(&store, DAY, HZ, "adjustments").await, 50);
    assert_eq!(figure(&store, DAY, HZ, "net_payable").await, base_net + 50);
    let items = store
        .line_items(DAY, HZ, "adjustments", 0..u64::MAX)
        .await
        .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].class, "resolution_adjust");
    assert_eq!(
        (
            items[0].source_day.as_str(),
            items[0].exception_key.as_str()
        ),
        (DAY, m2.key.as_str())
    );
    assert!(items[0].detail.contains(USER) && items[0].detail.contains("fare table"));
    let json: serde_json::Value =
        serde_json::from_str(&current(&store, DAY, "hz-metro/statement.json").await).unwrap();
    let op: settlement::outcome::OperatorOutcome =
        serde_json::from_value(json["operator"].clone()).unwrap();
    assert_eq!(op.journal_imbalance_minor(), 0);
    assert!(op
        .journal
        .iter()
        .any(|l| l.entry == "resolution_adjustments"
            && l.account == "settlement_adjustments"
            && l.debit_minor == 50));
    assert!(current(&store, DAY, "hz-metro/payout.csv")
        .await
        .contains(&format!("hz-metro,{DAY},{},CNY", base_net + 50)));
    // zj-expressway's statement is untouched.
    assert_eq!(figure(&store, DAY, "zj-expressway", "adjustments").await, 0);

    // Re-runs reproduce the resolved outputs exactly.
    let resolved: Vec<String> = {
        let mut v = Vec::new();
        for n in [
            "statement.csv",
            "statement.json",
            "statement.html",
            "payout.csv",
        ] {
            v.push(current(&store, DAY, &format!("hz-metro/{n}")).await);
        }
        v
    };
    let first = inputs.run(&store).await.unwrap();
    let second = inputs.run(&store).await.unwrap();
    assert!(second.same_as_previous);
    assert_eq!(first.outputs_sha256, second.outputs_sha256);
    for (i, n) in [
        "statement.csv",
        "statement.json",
        "statement.html",
        "payout.csv",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            current(&store, DAY, &format!("hz-metro/{n}")).await,
            resolved[i],
            "{n}"
        );
    }

    // A later resolution replaces the adjustment.
    store
        .resolve_exception(
            DAY,
            &m2.key,
            "accept",
            "on second thought: the bill is right",
            None,
            USER,
        )
        .await
        .unwrap();
    assert_eq!(figure(&store, DAY, HZ, "adjustments").await, 0);
    assert_eq!(figure(&store, DAY, HZ, "net_payable").await, base_net);
    assert!(store
        .line_items(DAY, HZ, "adjustments", 0..u64::MAX)
        .await
        .unwrap()
        .is_empty());
}

both_backends!(approval_locks_one_operators_day);
async fn approval_locks_one_operators_day(backend: &str) {
    // Proves: approving an operator's statement locks that (day, operator) only; the day is
    // approved once all its operators are; reopening one needs a reason and is audited.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    let inputs = Inputs::write();
    inputs.run(&store).await.unwrap();
    assert!(approve(&store, DAY, HZ).await);
    assert!(!approve(&store, DAY, HZ).await);
    assert!(matches!(
        store.approve_operator(DAY, "nobody", USER, 0).await,
        Err(StoreError::NoSuchStatement)
    ));
    assert_eq!(store.operator_status(DAY, HZ).await.unwrap(), "approved");
    assert_eq!(store.day_status(DAY).await.unwrap(), "open");
    let statuses: Vec<(String, String)> = store
        .day_summaries()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.operator_id, s.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (HZ.to_string(), "approved".to_string()),
            ("zj-expressway".into(), "open".into())
        ]
    );
    // hz-metro is refused, alone or with the day; zj-expressway settles.
    let mut only_hz = inputs.config();
    only_hz.operator = Some(HZ.into());
    let err = format!(
        "{:#}",
        run_day(&store, settlement::engine(), &only_hz)
            .await
            .unwrap_err()
    );
    assert!(
        err.contains("approved and locked") && err.contains("--operator hz-metro"),
        "{err}"
    );
    let err = format!("{:#}", inputs.run(&store).await.unwrap_err());
    assert!(err.contains("hz-metro"), "{err}");
    let mut only_zj = inputs.config();
    only_zj.operator = Some("zj-expressway".into());
    run_day(&store, settlement::engine(), &only_zj)
        .await
        .unwrap();
    let hz_exception = store
        .exceptions(&ExceptionFilter {
            operator_id: Some(HZ.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    assert!(matches!(
        store
            .resolve_exception(DAY, &hz_exception.key, "adjust", "late", Some(1), USER)
            .await,
        Err(StoreError::ApprovedStatementChange { .. })
    ));
    // The last operator approves the day.
    assert!(approve(&store, DAY, "zj-expressway").await);
    assert_eq!(store.day_status(DAY).await.unwrap(), "approved");
    assert!(format!(
        "{:#}",
        run_day(&store, settlement::engine(), &only_zj)
            .await
            .unwrap_err()
    )
    .contains("approved and locked"));
    // Reopen one operator, with a reason.
    assert!(matches!(
        store.reopen_operator(DAY, HZ, "ops", " ").await,
        Err(StoreError::EmptyNote)
    ));
    assert!(store
        .reopen_operator(DAY, HZ, "ops", "provider corrected its bill")
        .await
        .unwrap());
    assert!(!store
        .reopen_operator(DAY, HZ, "ops", "again")
        .await
        .unwrap());
    assert_eq!(store.day_status(DAY).await.unwrap(), "open");
    assert_eq!(
        store.operator_status(DAY, "zj-expressway").await.unwrap(),
        "approved"
    );
    run_day(&store, settlement::engine(), &only_hz)
        .await
        .unwrap();
    let audit: Vec<(String, String)> = store
        .audit(DAY)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.action, a.detail))
        .collect();
    let actions: Vec<&str> = audit.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["run", "approve", "run", "approve", "reopen", "run"]
    );
    let open = open_count(&store, DAY, HZ).await;
    assert!(
        audit[1].1.starts_with(&format!(
            "operator hz-metro with {open} open exception(s), confirmed: "
        )),
        "{}",
        audit[1].1
    );
    assert_eq!(audit[4].1, "operator hz-metro: provider corrected its bill");
}

both_backends!(an_operator_in_tokyo_settles_its_own_day);
async fn an_operator_in_tokyo_settles_its_own_day(backend: &str) {
    // Proves: with an operator's zone given for the run (the CLI's --operator-tz), a payment
    // at 23:30 Shanghai time (00:30 the next day in Tokyo) leaves the Shanghai bill's day and
    // is an adjustment of the Tokyo operator's next day; a Shanghai operator's payment at the
    // same time stays on its day; a bad zone fails the run with the operator's name.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    const TK: &str = "tokyo-metro";
    let mut d2 = DayFiles::new(
        D2,
        gateway(&[
            (HZ, D2, "M1-1", "G1", 1, 300),
            (TK, "2026-01-03", "N1-1", "J1", 1, 400),
        ]),
        bill(
            D2,
            &[
                ("M1-1", 300, HZ, "2026-01-02 23:30:00"),
                ("N1-1", 400, TK, "2026-01-02 23:30:00"),
                // No gateway record on this day: in Tokyo it is the next day's.
                ("N9-1", 700, TK, "2026-01-02 23:40:00"),
            ],
        ),
        &[
            (HZ, taps(&["G1,1,2026-01-02T23:30:00+08:00,exit,300,CNY"])),
            (TK, taps(&["J1,1,2026-01-03T00:30:00+09:00,exit,400,CNY"])),
        ],
    );
    d2.operator_days = vec![OperatorDay {
        operator_id: TK.into(),
        time_zone: Some("Asia/Tokyo".into()),
        cutoff: None,
    }];
    let report = d2.run(&store).await.unwrap();
    let tk = report
        .outcome
        .operators
        .iter()
        .find(|o| o.operator_id == TK)
        .unwrap();
    let carried: Vec<(&str, &str, i64)> = tk
        .carried_out
        .iter()
        .map(|c| (c.reference.as_str(), c.belongs_to.as_str(), c.net_minor))
        .collect();
    assert!(
        carried.contains(&("N1-1", "2026-01-03", 400 - fee(400))),
        "{carried:?}"
    );
    assert!(
        carried.contains(&("N9-1", "2026-01-03", 700 - fee(700))),
        "{carried:?}"
    );
    assert_eq!(carried.len(), 2);
    let hz = report
        .outcome
        .operators
        .iter()
        .find(|o| o.operator_id == HZ)
        .unwrap();
    assert_eq!(hz.figure("gross").unwrap().amount_minor, 300);
    assert!(hz.exceptions.is_empty(), "{:?}", hz.exceptions);
    // Tokyo's next day: its statement receives the item.
    let d3 = DayFiles {
        operator_days: d2.operator_days.clone(),
        ..DayFiles::new(
            "2026-01-03",
            gateway(&[(TK, "2026-01-03", "N2-1", "J1", 2, 200)]),
            bill("2026-01-03", &[("N2-1", 200, TK, "2026-01-03 08:00:00")]),
            &[(TK, taps(&["J1,2,2026-01-03T09:00:00+09:00,exit,200,CNY"]))],
        )
    };
    d3.run(&store).await.unwrap();
    assert_eq!(
        figure(&store, "2026-01-03", TK, "adjustments").await,
        400 - fee(400) + 700 - fee(700)
    );
    // The same files with Tokyo taken as Shanghai: N9-1 is this day's, missing at the gateway.
    let Some((store, _guard2)) = review_fixture::store(backend).await else {
        return;
    };
    d2.operator_days.clear();
    let shanghai = d2.run(&store).await.unwrap();
    let tk = shanghai
        .outcome
        .operators
        .iter()
        .find(|o| o.operator_id == TK)
        .unwrap();
    assert!(tk.carried_out.iter().all(|c| c.reference != "N9-1"));
    assert!(tk
        .exceptions
        .iter()
        .any(|e| e.reference == "N9-1" && e.class == "missing_at_gateway"));
    // An unknown zone stops the run before anything is stored.
    d2.operator_days = vec![OperatorDay {
        operator_id: TK.into(),
        time_zone: Some("Asia/Atlantis".into()),
        cutoff: None,
    }];
    let before = store.latest_run(D2).await.unwrap();
    let err = format!("{:#}", d2.run(&store).await.unwrap_err());
    assert!(
        err.contains("tokyo-metro") && err.contains("Asia/Atlantis"),
        "{err}"
    );
    assert_eq!(store.latest_run(D2).await.unwrap(), before);
}
