//! The settlement run end to end against a real database (SQLite and PostgreSQL): every class
//! stored as an exception, balanced journals, byte-identical re-runs, locking and reopening
//! with an audit trail, resolutions, and a failing run that writes nothing.

mod review_fixture;

use review_fixture::*;
use settlement::store::{ExceptionFilter, StoreError};

macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name("sqlite").await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name("postgres").await
            }
        }
    };
}

both_backends!(a_day_settles_with_every_class_and_reruns_byte_identically);
async fn a_day_settles_with_every_class_and_reruns_byte_identically(backend: &str) {
    // Proves: one run stores statement, exceptions (one per non-matched class) and outputs;
    // journals balance; a second run over the same inputs stores byte-identical outputs.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    let inputs = Inputs::write();
    let first = inputs.run(&store).await.unwrap();
    assert!(!first.same_as_previous);
    let classes: std::collections::BTreeSet<String> = store
        .exceptions(&ExceptionFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.class)
        .collect();
    for class in [
        "amount_mismatch",
        "missing_at_provider",
        "missing_at_gateway",
        "missing_at_operator",
        "duplicate",
        "other_day",
    ] {
        assert!(
            classes.contains(class),
            "no {class} exception in {classes:?}"
        );
    }
    let hz = first
        .outcome
        .operators
        .iter()
        .find(|o| o.operator_id == "hz-metro")
        .unwrap();
    assert_eq!(hz.journal_imbalance_minor(), 0);
    // Settled: M1 300 + M2 at the provider's 450 + M4 400 + M7 600; refund 100.
    let fig = |n: &str| hz.figure(n).unwrap().amount_minor;
    assert_eq!(fig("gross"), 300 + 450 + 400 + 600);
    assert_eq!(fig("refunds"), 100);
    let fees = fee(300) + fee(450) + fee(400) + fee(600) - 1;
    assert_eq!(fig("provider_fees"), fees);
    assert_eq!(fig("net_payable"), 1750 - 100 - fees);
    // Drill-down: the gross figure's records add up to it.
    let items = store.line_items(DAY, "hz-metro", "gross").await.unwrap();
    assert_eq!(
        items.iter().map(|i| i.amount_minor).sum::<i64>(),
        fig("gross")
    );
    assert!(items
        .iter()
        .any(|i| i.reference == "M2-1" && i.class == "amount_mismatch"));

    let second = inputs.run(&store).await.unwrap();
    assert!(
        second.same_as_previous,
        "a re-run over identical inputs must match"
    );
    assert_eq!(first.inputs_sha256, second.inputs_sha256);
    let a = store.run_outputs(first.run_id).await.unwrap();
    let b = store.run_outputs(second.run_id).await.unwrap();
    assert_eq!(a.len(), b.len());
    assert!(a.iter().any(|f| f.name == "hz-metro/statement.csv"));
    assert!(a.iter().any(|f| f.name == "hz-metro/payout.csv"));
    assert!(a.iter().any(|f| f.name == "exceptions.csv"));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.name, y.name);
        assert_eq!(
            x.body.as_bytes(),
            y.body.as_bytes(),
            "{} differs between runs",
            x.name
        );
    }
    let payout = &a
        .iter()
        .find(|f| f.name == "hz-metro/payout.csv")
        .unwrap()
        .body;
    assert!(payout.contains(&format!(
        "hz-metro,{DAY},{},CNY,TP-{DAY}-hz-metro",
        fig("net_payable")
    )));
}

both_backends!(an_approved_day_is_locked_until_reopened_with_a_reason);
async fn an_approved_day_is_locked_until_reopened_with_a_reason(backend: &str) {
    // Proves: approval locks the day against runs and resolutions; reopening needs a reason;
    // every step is in the audit trail; resolutions survive a re-run.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    let inputs = Inputs::write();
    inputs.run(&store).await.unwrap();
    let open = store.exceptions(&ExceptionFilter::default()).await.unwrap();
    let e = &open[0];
    assert!(matches!(
        store
            .resolve_exception(DAY, &e.key, "accept", "  ", None, USER)
            .await,
        Err(StoreError::EmptyNote)
    ));
    store
        .resolve_exception(DAY, &e.key, "write_off", "below threshold", None, USER)
        .await
        .unwrap();
    assert!(store.approve_day(DAY, USER).await.unwrap());
    assert_eq!(store.day_status(DAY).await.unwrap(), "approved");
    let err = inputs.run(&store).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("approved and locked"),
        "{err:#}"
    );
    assert!(matches!(
        store
            .resolve_exception(DAY, &e.key, "accept", "late", None, USER)
            .await,
        Err(StoreError::DayLocked(_))
    ));
    assert!(matches!(
        store.reopen_day(DAY, "ops", "").await,
        Err(StoreError::EmptyNote)
    ));
    assert!(store
        .reopen_day(DAY, "ops", "provider corrected its bill")
        .await
        .unwrap());
    inputs.run(&store).await.unwrap();
    let after = store
        .exceptions(&ExceptionFilter {
            state: Some("resolved".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "the resolution carries over a re-run");
    assert_eq!(after[0].key, e.key);
    let actions: Vec<String> = store
        .audit(DAY)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, ["run", "resolve", "approve", "reopen", "run"]);
}

both_backends!(an_unreadable_input_fails_clearly_and_writes_nothing);
async fn an_unreadable_input_fails_clearly_and_writes_nothing(backend: &str) {
    // Proves: a truncated operator export fails the run with file and reason, and stores nothing.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    let inputs = Inputs::write();
    let text = hz_metro_export();
    std::fs::write(&inputs.hz, text.replace("# end rows=5\n", "")).unwrap();
    let err = format!("{:#}", inputs.run(&store).await.unwrap_err());
    assert!(err.contains("hz-metro.csv"), "{err}");
    assert!(store.latest_run(DAY).await.unwrap().is_none());
    assert!(store.day_summaries().await.unwrap().is_empty());
    assert!(store.audit(DAY).await.unwrap().is_empty());
    // A missing file, too.
    std::fs::remove_file(&inputs.bill).unwrap();
    let err = format!("{:#}", inputs.run(&store).await.unwrap_err());
    assert!(err.contains("bill.csv"), "{err}");
    assert!(store.latest_run(DAY).await.unwrap().is_none());
}

both_backends!(a_run_for_one_operator_replaces_only_its_statement);
async fn a_run_for_one_operator_replaces_only_its_statement(backend: &str) {
    // Proves: `run --operator` stores that operator's statement and files and leaves the
    // others' current statement and files in place.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    let inputs = Inputs::write();
    inputs.run(&store).await.unwrap();
    let mut config = inputs.config();
    config.operator = Some("zj-expressway".into());
    let report = settlement::run::run_day(&store, settlement::engine(), &config)
        .await
        .unwrap();
    let ops: Vec<&str> = report
        .outcome
        .operators
        .iter()
        .map(|o| o.operator_id.as_str())
        .collect();
    assert_eq!(ops, ["zj-expressway"]);
    assert_eq!(
        store.statement(DAY, "hz-metro").await.unwrap().len(),
        settlement::outcome::FIGURES.len()
    );
    assert!(store
        .latest_output(DAY, "hz-metro/statement.csv")
        .await
        .unwrap()
        .is_some());
    let zj = store
        .latest_output(DAY, "zj-expressway/payout.csv")
        .await
        .unwrap()
        .unwrap();
    assert!(zj
        .body
        .contains(&format!("zj-expressway,{DAY},{},CNY", 1250 - fee(1250))));
}
