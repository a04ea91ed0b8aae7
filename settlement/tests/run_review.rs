//! The settlement run end to end against a real database (SQLite and PostgreSQL): every class
//! stored as an exception, balanced journals, byte-identical re-runs, locking and reopening
//! with an audit trail, resolutions, and a failing run that writes nothing.

#[macro_use]
mod review_fixture;

use review_fixture::*;
use settlement::store::{ExceptionFilter, Store, StoreError};

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
    // The payout instruction is a row, as payout.csv states it.
    let payouts = store.payouts(DAY).await.unwrap();
    assert!(
        payouts.contains(&(
            "hz-metro".to_string(),
            1750 - 100 - fees,
            "CNY".to_string(),
            format!("TP-{DAY}-hz-metro")
        )),
        "{payouts:?}"
    );
    // Drill-down: the gross figure's records add up to it.
    let mut items = Vec::new();
    for (figure, set) in store.record_sets(DAY, "hz-metro").await.unwrap() {
        if figure != "gross" {
            continue;
        }
        assert_eq!(set.amount_minor, fig("gross"));
        for no in 0..set.pages {
            let body = store
                .record_page(DAY, "hz-metro", "gross", no)
                .await
                .unwrap();
            items.extend(settlement::outcome::parse_record_page(&body.unwrap()));
        }
    }
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
    // Proves: approval locks the day against runs and resolutions that change its money;
    // reopening needs a reason; every step is in the audit trail; resolutions survive a re-run.
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
    let open =
        open_count(&store, DAY, "hz-metro").await + open_count(&store, DAY, "zj-expressway").await;
    // Four-eyes (on by default): who resolved an exception of a statement does not approve
    // it; the refusal changes nothing. Turned off for the operator, the same user may.
    let refused = store.approve_day(DAY, USER, open).await;
    assert!(
        matches!(&refused, Err(StoreError::FourEyes { operator, resolved: 1, .. }) if operator == "hz-metro"),
        "{refused:?}"
    );
    assert_eq!(store.day_status(DAY).await.unwrap(), "open");
    assert_eq!(
        store.operator_status(DAY, "zj-expressway").await.unwrap(),
        "open"
    );
    store.set_four_eyes("hz-metro", false, "ops").await.unwrap();
    assert!(store.approve_day(DAY, USER, open).await.unwrap());
    assert_eq!(store.day_status(DAY).await.unwrap(), "approved");
    let err = inputs.run(&store).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("approved and locked"),
        "{err:#}"
    );
    assert!(matches!(
        store
            .resolve_exception(DAY, &e.key, "adjust", "late", Some(1), USER)
            .await,
        Err(StoreError::ApprovedStatementChange { .. })
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

both_backends!(approval_confirms_the_open_exceptions_it_leaves);
async fn approval_confirms_the_open_exceptions_it_leaves(backend: &str) {
    // Proves: the store itself refuses to approve (an operator or a whole day) unless the
    // approval confirms the current number of open exceptions — 0 as well as a stale count —
    // changing nothing; the right count approves and the audit line records it with the
    // references.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    let inputs = Inputs::write();
    inputs.run(&store).await.unwrap();
    let hz = open_count(&store, DAY, "hz-metro").await;
    let zj = open_count(&store, DAY, "zj-expressway").await;
    assert!(hz > 0);
    for confirmed in [0, hz - 1, hz + 1] {
        match store
            .approve_operator(DAY, "hz-metro", USER, confirmed)
            .await
        {
            Err(StoreError::OpenExceptionsUnconfirmed {
                open, confirmed: c, ..
            }) => assert_eq!((open, c), (hz, confirmed)),
            other => panic!("approved with {confirmed} confirmed: {other:?}"),
        }
    }
    assert!(matches!(
        store.approve_day(DAY, USER, hz + zj - 1).await,
        Err(StoreError::OpenExceptionsUnconfirmed { .. })
    ));
    assert_eq!(
        store.operator_status(DAY, "hz-metro").await.unwrap(),
        "open"
    );
    assert_eq!(store.day_status(DAY).await.unwrap(), "open");
    let actions: Vec<String> = store
        .audit(DAY)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, ["run"]);

    assert!(store.approve_day(DAY, USER, hz + zj).await.unwrap());
    assert_eq!(store.day_status(DAY).await.unwrap(), "approved");
    let approval = store.audit(DAY).await.unwrap().pop().unwrap();
    assert_eq!(approval.action, "approve");
    assert!(
        approval.detail.starts_with(&format!(
            "operators hz-metro, zj-expressway with {} open exception(s), confirmed: ",
            hz + zj
        )) && approval.detail.contains("M4-1"),
        "{}",
        approval.detail
    );
}

both_backends!(an_approved_statement_takes_only_resolutions_that_keep_its_money);
async fn an_approved_statement_takes_only_resolutions_that_keep_its_money(backend: &str) {
    // Proves the store's rule for an approved statement's exceptions: accept, write off and
    // chase provider are recorded (audited as on the approved statement) and leave figures
    // and files byte for byte; adjust, and replacing a current adjustment, are refused with
    // the way out (`settlement reopen`) and store nothing; after reopening they go through.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    let inputs = Inputs::write();
    inputs.run(&store).await.unwrap();
    let key = |reference: &str| {
        let store = store.clone();
        let reference = reference.to_string();
        async move {
            store
                .exceptions(&ExceptionFilter::default())
                .await
                .unwrap()
                .into_iter()
                .find(|e| e.reference == reference)
                .unwrap()
                .key
        }
    };
    let (m2, m3, m4) = (key("M2-1").await, key("M3-1").await, key("M4-1").await);
    store
        .resolve_exception(DAY, &m2, "adjust", "pay the difference", Some(50), USER)
        .await
        .unwrap();
    assert!(approve(&store, DAY, "hz-metro").await);
    let files = |store: Store| async move {
        let mut out = Vec::new();
        for name in ["statement.csv", "statement.json", "payout.csv"] {
            let f = store
                .latest_output(DAY, &format!("hz-metro/{name}"))
                .await
                .unwrap()
                .unwrap();
            out.push(f.body);
        }
        out
    };
    let approved = files(store.clone()).await;
    for (k, action) in [(&m3, "chase_provider"), (&m3, "accept"), (&m4, "write_off")] {
        store
            .resolve_exception(DAY, k, action, "after approval", None, USER)
            .await
            .unwrap();
    }
    let last = store.audit(DAY).await.unwrap().pop().unwrap();
    assert_eq!(
        last.detail,
        format!(
            "M4-1 (missing_at_operator): write_off on the approved statement (unchanged): after approval [exception {m4}]"
        )
    );
    let audit_len = store.audit(DAY).await.unwrap().len();
    for (k, action, amount) in [(&m3, "adjust", Some(70)), (&m2, "accept", None)] {
        let err = store
            .resolve_exception(DAY, k, action, "change the money", amount, USER)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::ApprovedStatementChange { .. })
                && err.to_string().contains(&format!(
                    "`settlement reopen --date {DAY} --operator hz-metro --reason …` first"
                )),
            "{err}"
        );
    }
    assert_eq!(store.audit(DAY).await.unwrap().len(), audit_len);
    assert_eq!(files(store.clone()).await, approved);

    assert!(store
        .reopen_operator(DAY, "hz-metro", "ops", "credit note")
        .await
        .unwrap());
    store
        .resolve_exception(DAY, &m2, "accept", "the bill was right", None, USER)
        .await
        .unwrap();
    assert_ne!(
        files(store.clone()).await,
        approved,
        "the adjustment is gone"
    );
}
