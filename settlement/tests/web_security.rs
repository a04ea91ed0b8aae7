//! The review UI against a hostile or careless client, over real HTTP on a real server and
//! database (SQLite and PostgreSQL): failed logins are throttled per name and per address
//! (without running argon2), password checks never stall the server, every response carries
//! the security headers, approving past open exceptions needs a current confirmation, and an
//! approved statement's exceptions can be worked without moving its money.

#[macro_use]
mod review_fixture;
mod web_client;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use review_fixture::*;
use settlement::auth::{self, Clock, ThrottleConfig, VerifyFn};
use settlement::store::{ExceptionFilter, ExceptionRow, Store};
use settlement::web::{LoginConfig, WebConfig};
use web_client::{hidden, Client, Reply, Server};

const BOB: &str = "fin.bob";
const BOB_PASSWORD: &str = "staple battery horse";
const HZ: &str = "hz-metro";

/// Argon2, counting how often it runs.
fn counting_verifier() -> (VerifyFn, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let verify: VerifyFn = Arc::new(move |password, phc| {
        counted.fetch_add(1, Ordering::SeqCst);
        auth::verify_password(password, phc)
    });
    (verify, calls)
}

fn config(throttle: ThrottleConfig, clock: Clock, verify: VerifyFn) -> WebConfig {
    WebConfig {
        cookie_secure: false,
        login: LoginConfig {
            throttle,
            clock,
            verify_password: verify,
            ..LoginConfig::default()
        },
    }
}

fn budgets(per_name: u32, per_address: u32) -> ThrottleConfig {
    ThrottleConfig {
        failures_burst_per_name: per_name,
        failures_burst_per_address: per_address,
        failure_refill_s: 60,
        ..ThrottleConfig::default()
    }
}

async fn add_users(store: &Store) {
    for (name, password) in [(USER, PASSWORD), (BOB, BOB_PASSWORD)] {
        store
            .upsert_user(name, &auth::hash_password(password).unwrap())
            .await
            .unwrap();
    }
}

/// A store with the fixture day settled and both users, or None when the backend is skipped.
async fn settled_store(backend: &str) -> Option<(Store, Guard, Inputs)> {
    let (store, guard) = store(backend).await?;
    let inputs = Inputs::write();
    inputs.run(&store).await.unwrap();
    add_users(&store).await;
    Some((store, guard, inputs))
}

fn another_address() -> std::net::IpAddr {
    "127.0.0.2".parse().unwrap()
}

fn assert_throttled(reply: &Reply, retry_after_s_max: u64) {
    assert_eq!(reply.status, 429, "{}", reply.body);
    let retry_after_s: u64 = reply.header("retry-after").parse().unwrap();
    assert!(
        (1..=retry_after_s_max).contains(&retry_after_s),
        "Retry-After {retry_after_s}"
    );
    assert!(
        reply.body.contains("Too many failed logins")
            && reply
                .body
                .contains(&format!("Try again in {retry_after_s} seconds")),
        "{}",
        reply.body
    );
}

both_backends!(a_name_out_of_failures_is_refused_even_with_the_right_password);
async fn a_name_out_of_failures_is_refused_even_with_the_right_password(backend: &str) {
    // Proves: after the per-name budget of failures, the next login of that name is 429 with
    // Retry-After even with the right password, and argon2 does not run for it; other users
    // (from another address, and from the same one) still log in; once the bucket refills (a
    // manual clock moved by the test, no sleeping) the user logs in again.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    add_users(&store).await;
    let clock = Clock::manual();
    let (verify, calls) = counting_verifier();
    let server = Server::start(store, config(budgets(3, 100), clock.clone(), verify)).await;
    let mut mallory = Client::new(&server.base);
    for _ in 0..3 {
        assert_eq!(mallory.login(USER, "guess guess guess").await.status, 401);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let refused = mallory.login(USER, PASSWORD).await;
    assert_throttled(&refused, 60);
    assert_eq!(refused.header("retry-after"), "60", "nothing has refilled");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "no password check once the budget is spent"
    );

    let mut bob = Client::from_address(&server.base, another_address());
    assert_eq!(bob.login(BOB, BOB_PASSWORD).await.status, 303);
    assert_eq!(bob.get("/").await.status, 200);
    let mut bob_here = Client::new(&server.base);
    assert_eq!(bob_here.login(BOB, BOB_PASSWORD).await.status, 303);

    clock.advance(Duration::from_secs(59));
    assert_throttled(&mallory.login(USER, PASSWORD).await, 1);
    clock.advance(Duration::from_secs(1));
    let mut alice = Client::new(&server.base);
    let ok = alice.login(USER, PASSWORD).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(alice.get("/").await.status, 200);
    server.stop().await;
}

both_backends!(failures_from_one_address_across_names_are_refused);
async fn failures_from_one_address_across_names_are_refused(backend: &str) {
    // Proves: spraying names from one address spends that address's budget although no name
    // ran out of its own; then even a right password from that address is 429, while the same
    // user from another address logs in.
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    add_users(&store).await;
    let (verify, calls) = counting_verifier();
    let server = Server::start(store, config(budgets(3, 4), Clock::manual(), verify)).await;
    let mut sprayer = Client::new(&server.base);
    for i in 0..4 {
        let name = format!("admin{i}");
        assert_eq!(sprayer.login(&name, "Winter2026!").await.status, 401);
    }
    assert_throttled(&sprayer.login("admin9", "Winter2026!").await, 60);
    assert_throttled(&sprayer.login(USER, PASSWORD).await, 60);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let mut alice = Client::from_address(&server.base, another_address());
    assert_eq!(alice.login(USER, PASSWORD).await.status, 303);
    server.stop().await;
}

#[test]
fn a_password_check_in_progress_does_not_stall_other_requests() {
    // Proves: password checks run off the async worker threads. The server runs on a
    // current_thread runtime — one thread for every request — and its password check is held
    // inside the verifier until the test lets it go; /healthz and the login page are answered
    // meanwhile, which is impossible if the check ran on that thread. Ordering facts, no
    // timings: the generous bound only turns a stalled server into a failure instead of a hang.
    // SQLite only: the point is the threads, not the storage.
    const STALL_BOUND: Duration = Duration::from_secs(60);
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let verify: VerifyFn = Arc::new(move |password, phc| {
        entered_tx.send(()).unwrap();
        let _ = release_rx.lock().unwrap().recv();
        auth::verify_password(password, phc)
    });
    let (base_tx, base_rx) = std::sync::mpsc::channel::<String>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (store, _guard) = store("sqlite").await.unwrap();
            add_users(&store).await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            base_tx
                .send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            let config = config(ThrottleConfig::default(), Clock::system(), verify);
            settlement::web::serve(listener, store, config, async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let base = base_rx.recv().unwrap();
    let client_runtime = tokio::runtime::Runtime::new().unwrap();
    client_runtime.block_on(async move {
        let login_base = base.clone();
        let login = tokio::spawn(async move {
            let mut alice = Client::new(&login_base);
            alice.login(USER, PASSWORD).await
        });
        tokio::task::spawn_blocking(move || entered_rx.recv_timeout(STALL_BOUND))
            .await
            .unwrap()
            .expect("the login reached its password check");
        // The check is now held: the server must still answer.
        let mut other = Client::new(&base);
        let health = tokio::time::timeout(STALL_BOUND, other.get("/healthz"))
            .await
            .expect("/healthz answered while a password check was running");
        assert_eq!((health.status, health.body.as_str()), (200, "ok"));
        let page = tokio::time::timeout(STALL_BOUND, other.get("/login"))
            .await
            .expect("the login page answered while a password check was running");
        assert_eq!(page.status, 200);
        assert!(!login.is_finished(), "the held login is still waiting");
        release_tx.send(()).unwrap();
        assert_eq!(login.await.unwrap().status, 303);
    });
    stop_tx.send(()).unwrap();
    server.join().unwrap();
}

const CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn assert_security_headers(what: &str, reply: &Reply) {
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(reply.header(name), value, "{name} of {what}");
    }
}

both_backends!(every_kind_of_response_carries_the_security_headers);
async fn every_kind_of_response_carries_the_security_headers(backend: &str) {
    // Proves: pages, the stylesheet, redirects, 401/403/404/413/429 answers and CSV and file
    // downloads all carry the CSP, X-Frame-Options, nosniff, no-store and Referrer-Policy.
    let Some((store, _guard, _inputs)) = settled_store(backend).await else {
        return;
    };
    let (verify, _) = counting_verifier();
    let server = Server::start(store, config(budgets(2, 100), Clock::manual(), verify)).await;
    let mut c = Client::new(&server.base);
    let check = |what: &str, reply: Reply, status: u16| {
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_security_headers(what, &reply);
    };
    check("login page", c.get("/login").await, 200);
    let css = c.get("/style.css").await;
    assert!(css.header("content-type").starts_with("text/css"));
    check("stylesheet", css, 200);
    check("redirect to login", c.get("/").await, 303);
    check("unknown path", c.get("/no/such/page").await, 404);
    check("health", c.get("/healthz").await, 200);
    check("wrong password", c.login(BOB, "not bob's").await, 401);
    check(
        "spent budget",
        {
            c.login(BOB, "not bob's either").await;
            c.login(BOB, BOB_PASSWORD).await
        },
        429,
    );
    let big = "x".repeat(64 * 1024);
    check(
        "oversized form",
        c.post(
            "/login",
            &[("name", &big), ("password", "p"), ("csrf", "c")],
        )
        .await,
        413,
    );
    check("login", c.login(USER, PASSWORD).await, 303);
    check("days page", c.get("/").await, 200);
    check("no such day", c.get("/days/not-a-day").await, 404);
    check(
        "forged CSRF",
        c.post("/logout", &[("csrf", "forged")]).await,
        403,
    );
    let csv = c.get("/exceptions.csv").await;
    assert!(csv.header("content-type").starts_with("text/csv"));
    check("CSV export", csv, 200);
    let file = c
        .get(&format!("/days/{DAY}/operators/{HZ}/files/statement.csv"))
        .await;
    assert!(file.header("content-disposition").starts_with("attachment"));
    check("statement download", file, 200);
    check(
        "missing file",
        c.get(&format!("/days/{DAY}/operators/{HZ}/files/nothing.csv"))
            .await,
        404,
    );
    server.stop().await;
}

async fn open_exceptions(store: &Store, operator: &str) -> Vec<ExceptionRow> {
    store
        .exceptions(&ExceptionFilter {
            business_day: Some(DAY.into()),
            operator_id: Some(operator.into()),
            class: None,
            state: Some("open".into()),
        })
        .await
        .unwrap()
}

async fn approvals(store: &Store) -> Vec<String> {
    store
        .audit(DAY)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "approve")
        .map(|a| a.detail)
        .collect()
}

/// A logged-in client and the session's CSRF token.
async fn logged_in(server: &Server) -> (Client, String) {
    let mut c = Client::new(&server.base);
    assert_eq!(c.login(USER, PASSWORD).await.status, 303);
    let csrf = c.get("/").await.csrf();
    (c, csrf)
}

both_backends!(approving_past_open_exceptions_needs_their_current_count);
async fn approving_past_open_exceptions_needs_their_current_count(backend: &str) {
    // Proves: approving a statement with open exceptions first answers a confirmation page
    // listing them (count, class, reference, amount, link) and approves nothing; a confirmation
    // with a stale count is refused (409) and approves nothing; the current count approves, and
    // the audit line records the count and the references. A statement without open
    // exceptions approves at once, as before.
    let Some((store, _guard, _inputs)) = settled_store(backend).await else {
        return;
    };
    let server = Server::start(store.clone(), WebConfig::default()).await;
    let (mut c, csrf) = logged_in(&server).await;
    let approve_path = format!("/days/{DAY}/operators/{HZ}/approve");
    let open = open_exceptions(&store, HZ).await;
    let n = open.len();
    assert!(n >= 4, "the fixture leaves several open: {n}");

    let page = c.post(&approve_path, &[("csrf", &csrf)]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&format!("{n} open exception(s)")));
    assert_eq!(page.body.matches("class=\"open-exception\"").count(), n);
    for e in &open {
        assert!(
            page.body
                .contains(&format!("href=\"/exceptions/{DAY}/{}\"", e.key)),
            "{}",
            e.reference
        );
        assert!(page.body.contains(&e.reference) && page.body.contains(&e.class));
    }
    assert_eq!(
        hidden(&page.body, "confirm_open_exceptions"),
        Some(n.to_string())
    );
    assert_eq!(store.operator_status(DAY, HZ).await.unwrap(), "open");
    assert!(approvals(&store).await.is_empty());

    // Someone resolves one meanwhile: the confirmation of n is stale.
    store
        .resolve_exception(DAY, &open[0].key, "chase_provider", "asked", None, BOB)
        .await
        .unwrap();
    let stale = c
        .post(
            &approve_path,
            &[("csrf", &csrf), ("confirm_open_exceptions", &n.to_string())],
        )
        .await;
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(stale.body.contains(&format!(
        "You confirmed {n} open exception(s), but they have changed since."
    )));
    assert_eq!(
        hidden(&stale.body, "confirm_open_exceptions"),
        Some((n - 1).to_string())
    );
    assert_eq!(store.operator_status(DAY, HZ).await.unwrap(), "open");
    assert!(approvals(&store).await.is_empty());

    let ok = c
        .post(
            &approve_path,
            &[
                ("csrf", &csrf),
                ("confirm_open_exceptions", &(n - 1).to_string()),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(store.operator_status(DAY, HZ).await.unwrap(), "approved");
    let audit = approvals(&store).await;
    assert_eq!(audit.len(), 1);
    assert!(
        audit[0].starts_with(&format!(
            "operator {HZ} with {} open exception(s), confirmed: ",
            n - 1
        )),
        "{}",
        audit[0]
    );
    for e in &open[1..] {
        assert!(audit[0].contains(&e.reference), "{}", audit[0]);
    }

    // zj-expressway has none open: one POST approves it.
    assert!(open_exceptions(&store, "zj-expressway").await.is_empty());
    let zj = c
        .post(
            &format!("/days/{DAY}/operators/zj-expressway/approve"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(zj.status, 303);
    assert_eq!(approvals(&store).await[1], "operator zj-expressway");
    assert_eq!(store.day_status(DAY).await.unwrap(), "approved");
    server.stop().await;
}

/// What an approval locks: the statement's figures and its current files.
async fn statement_snapshot(store: &Store) -> Vec<String> {
    let mut out: Vec<String> = store
        .statement(DAY, HZ)
        .await
        .unwrap()
        .into_iter()
        .map(|l| format!("{} {}", l.figure, l.amount_minor))
        .collect();
    for name in ["statement.json", "payout.csv"] {
        let file = store
            .latest_output(DAY, &format!("{HZ}/{name}"))
            .await
            .unwrap()
            .unwrap();
        out.push(file.body);
    }
    out
}

async fn exception(store: &Store, reference: &str) -> ExceptionRow {
    store
        .exceptions(&ExceptionFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.reference == reference && e.business_day == DAY)
        .unwrap()
}

async fn adjustments_minor(store: &Store) -> i64 {
    store
        .statement(DAY, HZ)
        .await
        .unwrap()
        .into_iter()
        .find(|l| l.figure == "adjustments")
        .unwrap()
        .amount_minor
}

both_backends!(an_approved_statements_exceptions_can_be_worked_but_not_its_money);
async fn an_approved_statements_exceptions_can_be_worked_but_not_its_money(backend: &str) {
    // Proves the rule for an approved statement's exceptions: accept (a resolution that leaves
    // the money as approved) is recorded and audited as such, statement and files unchanged;
    // adjust, and replacing a current adjustment, are refused with the precise message naming
    // `settlement reopen`, storing nothing; the page offers only what is allowed and says why;
    // after reopening, the adjustment goes through.
    let Some((store, _guard, _inputs)) = settled_store(backend).await else {
        return;
    };
    let server = Server::start(store.clone(), WebConfig::default()).await;
    let (mut c, csrf) = logged_in(&server).await;
    let m2 = exception(&store, "M2-1").await;
    let m3 = exception(&store, "M3-1").await;
    let path = |e: &ExceptionRow| format!("/exceptions/{DAY}/{}", e.key);
    let resolve = |action: &'static str, adjust: &'static str, note: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("action", action.to_string()),
            ("adjust", adjust.to_string()),
            ("note", note.to_string()),
        ]
    };
    async fn post(c: &mut Client, path: &str, form: Vec<(&'static str, String)>) -> Reply {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        c.post(path, &pairs).await
    }
    let adjusted = post(
        &mut c,
        &path(&m2),
        resolve("adjust", "0.50", "pay the difference"),
    )
    .await;
    assert_eq!(adjusted.status, 303, "{}", adjusted.body);
    assert!(approve(&store, DAY, HZ).await);
    let approved = statement_snapshot(&store).await;

    // The page offers the resolutions that keep the money, and says how to get the others.
    let page = c.get(&path(&m3)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"locked\""));
    assert!(page.body.contains(&format!(
        "settlement reopen --date {DAY} --operator {HZ} --reason …"
    )));
    for allowed in ["accept", "write_off", "chase_provider"] {
        assert!(page.body.contains(&format!("id=\"action-{allowed}\"")));
    }
    assert!(!page.body.contains("id=\"action-adjust\"") && !page.body.contains("name=\"adjust\""));

    // Accept: recorded, audited as on the approved statement, nothing of the statement moves.
    let accepted = post(&mut c, &path(&m3), resolve("accept", "", "below threshold")).await;
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    assert_eq!(
        exception(&store, "M3-1").await.resolution.as_deref(),
        Some("accept")
    );
    let last = store.audit(DAY).await.unwrap().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.detail),
        (
            "resolve",
            format!(
                "M3-1 (missing_at_provider): accept on the approved statement (unchanged): below threshold [exception {}]",
                m3.key
            )
        )
    );
    assert_eq!(statement_snapshot(&store).await, approved);

    // Adjust: refused with the precise message; nothing stored.
    let audit_len = store.audit(DAY).await.unwrap().len();
    let refused = post(&mut c, &path(&m3), resolve("adjust", "0.70", "credit")).await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    let message = format!(
        "the statement of {HZ} for {DAY} is approved: an adjust resolution would change its money; reopen it with `settlement reopen --date {DAY} --operator {HZ} --reason …` first (until then only accept, write off and chase provider are allowed, and not on an exception whose current resolution is an adjustment)"
    );
    assert!(refused.body.contains(&message), "{}", refused.body);
    assert_eq!(
        exception(&store, "M3-1").await.resolution.as_deref(),
        Some("accept")
    );
    assert_eq!(store.audit(DAY).await.unwrap().len(), audit_len);
    assert_eq!(statement_snapshot(&store).await, approved);

    // M2-1's adjustment is part of the approved money: no resolution may replace it now.
    let page = c.get(&path(&m2)).await;
    assert!(
        !page.body.contains("id=\"resolve\""),
        "no form: {}",
        page.body
    );
    assert!(page.body.contains("current resolution is an adjustment"));
    let refused = post(&mut c, &path(&m2), resolve("accept", "", "never mind")).await;
    assert_eq!(refused.status, 409);
    assert!(
        refused.body.contains(&format!(
            "the statement of {HZ} for {DAY} is approved: this exception's current resolution is an adjustment of it, and replacing it would change its money; reopen it with `settlement reopen --date {DAY} --operator {HZ} --reason …` first"
        )),
        "{}",
        refused.body
    );
    assert_eq!(adjustments_minor(&store).await, 50);
    assert_eq!(statement_snapshot(&store).await, approved);

    // Reopened, the adjustment goes through and the statement moves.
    assert!(store
        .reopen_operator(DAY, HZ, "ops", "provider sent a credit note")
        .await
        .unwrap());
    let adjusted = post(&mut c, &path(&m3), resolve("adjust", "0.70", "credit")).await;
    assert_eq!(adjusted.status, 303, "{}", adjusted.body);
    assert_eq!(adjustments_minor(&store).await, 50 + 70);
    server.stop().await;
}

both_backends!(a_day_exports_for_auditors_as_csv_and_xlsx_behind_the_login);
async fn a_day_exports_for_auditors_as_csv_and_xlsx_behind_the_login(backend: &str) {
    // Proves: the day's export (statements, exceptions with who resolved them, audit) comes
    // as CSV and as an XLSX workbook to a logged-in user only; another name is a 404.
    let Some((store, _guard, _inputs)) = settled_store(backend).await else {
        return;
    };
    let server = Server::start(store.clone(), WebConfig::default()).await;
    let mut anonymous = Client::new(&server.base);
    let refused = anonymous.get(&format!("/days/{DAY}/export.csv")).await;
    assert_eq!(refused.status, 303, "{}", refused.body);
    let (mut c, _) = logged_in(&server).await;
    let m3 = exception(&store, "M3-1").await;
    store
        .resolve_exception(DAY, &m3.key, "chase_provider", "ticket 42", None, USER)
        .await
        .unwrap();
    let csv = c.get(&format!("/days/{DAY}/export.csv")).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-disposition").contains(".csv"));
    let line = csv
        .body
        .lines()
        .find(|l| l.contains("M3-1"))
        .unwrap_or_else(|| panic!("{}", csv.body));
    assert!(line.starts_with("exception,") && line.contains("chase_provider"));
    assert!(line.contains(USER) && line.contains("ticket 42"), "{line}");
    assert!(csv
        .body
        .lines()
        .any(|l| l.starts_with("statement,") && l.contains("net_payable")));
    assert!(csv
        .body
        .lines()
        .any(|l| l.starts_with("audit,") && l.contains("resolve")));
    let xlsx = c.get(&format!("/days/{DAY}/export.xlsx")).await;
    assert_eq!(xlsx.status, 200);
    assert!(xlsx.header("content-type").contains("spreadsheetml"));
    assert!(xlsx.body.starts_with("PK"), "a zip container");
    // The records behind the figures stream as records.csv, each line led by its figure.
    let records = c
        .get(&format!("/days/{DAY}/operators/hz-metro/files/records.csv"))
        .await;
    assert_eq!(records.status, 200);
    assert!(records
        .body
        .starts_with("figure,reference,class,amount_minor,fee_minor,detail\n"));
    assert!(
        records
            .body
            .lines()
            .any(|l| l.starts_with("gross,M1-1,,300,")),
        "{}",
        records.body
    );
    assert_eq!(c.get(&format!("/days/{DAY}/export.pdf")).await.status, 404);
    assert_eq!(c.get("/days/2031-01-01/export.csv").await.status, 404);
    server.stop().await;
}

both_backends!(metrics_answer_without_a_login_and_give_counts_only);
async fn metrics_answer_without_a_login_and_give_counts_only(backend: &str) {
    // Proves: `/metrics` answers without a session, in Prometheus text, with the newest run, the
    // days by status and the newest day's items by class as stored — and nothing a finance page
    // would guard (no amounts, no references).
    let Some((store, _guard, _inputs)) = settled_store(backend).await else {
        return;
    };
    let (verify, _) = counting_verifier();
    let server = Server::start(store, config(budgets(2, 100), Clock::manual(), verify)).await;
    let mut c = Client::new(&server.base);
    let reply = c.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.header("content-type").starts_with("text/plain"));
    let sample = |series: &str| -> Option<f64> {
        reply
            .body
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    };
    assert_eq!(sample("settlement_db_up"), Some(1.0), "{}", reply.body);
    assert!(sample("settlement_last_run_finished_timestamp_seconds").is_some_and(|t| t > 1.7e9));
    assert!(sample("settlement_last_run_duration_seconds").is_some_and(|t| t >= 0.0));
    // The fixture's day, 2026-01-02, at 00:00 UTC.
    assert_eq!(
        sample("settlement_last_run_business_day_timestamp_seconds"),
        Some(1_767_312_000.0)
    );
    // The fixture settles 2026-01-02 and carries an item to the day before: two open days.
    assert_eq!(
        sample("settlement_days{status=\"open\"}"),
        Some(2.0),
        "{}",
        reply.body
    );
    assert!(
        sample(&format!(
            "settlement_newest_day_items{{operator=\"{HZ}\",class=\"matched\"}}"
        ))
        .is_some_and(|n| n >= 1.0),
        "{}",
        reply.body
    );
    assert_eq!(
        sample("settlement_nightly_runs_total{outcome=\"failed\"}"),
        Some(0.0)
    );
    for secret in ["CNY", "M1-1", "out_trade_no"] {
        assert!(!reply.body.contains(secret), "{secret} in {}", reply.body);
    }
}
