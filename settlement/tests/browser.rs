//! The finance review UI driven by headless Chromium (Debian's `chromium` + `chromium-driver`)
//! through WebDriver, with real clicks against the real server and a real database seeded by a
//! real settlement run: log in, open the day, drill into a statement figure, filter the
//! exceptions, resolve one (an empty note is refused), adjust another and see the statement
//! change and lead back to the resolution, approve each operator's statement (past open
//! exceptions only through the confirmation page listing them; the day locks when all are
//! approved), work an approved statement's exception (accept allowed, adjust not offered), see
//! the locks and the audit trail, export CSV — all under the UI's Content-Security-Policy, with
//! its stylesheet applied. Skipped when
//! chromedriver is missing, unless TURNPIKE_REQUIRE_BROWSER=1 (set by `.ci/run`), which makes
//! that a failure.

mod review_fixture;
mod web_client;

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use review_fixture::*;
use serde_json::json;

/// How long chromedriver gets to start answering.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a click may take to load the next page.
const NAVIGATION_TIMEOUT: Duration = Duration::from_secs(10);

fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            let name = candidates.first()?.rsplit('/').next()?;
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.exists())
            })
        })
}

/// chromedriver and chromium, or None (skip) unless the browser is required.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let driver = find_program(&["/usr/bin/chromedriver"]);
    let chromium = find_program(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
    match (driver, chromium) {
        (Some(d), Some(c)) => Some((d, c)),
        _ => {
            if std::env::var("TURNPIKE_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("the browser is required (TURNPIKE_REQUIRE_BROWSER=1) but chromium or chromedriver is missing: apt-get install chromium chromium-driver");
            }
            eprintln!("SKIPPED: chromium/chromedriver not installed");
            None
        }
    }
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_driver(driver: &PathBuf) -> (Driver, u16) {
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let deadline = Instant::now() + DRIVER_START_TIMEOUT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (Driver(child), port)
}

/// Saves the page as `target/settlement-<name>.png` (looked at by people, not asserted on).
async fn screenshot(c: &Client, name: &str) {
    let shot = c.screenshot().await.unwrap();
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/settlement-{name}.png"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, shot).unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Clicks something that loads a new page, and waits until the old page is gone and the new
/// one has loaded (a click returns before the navigation it starts has finished).
async fn click_nav(c: &Client, css: &str) {
    let old = c.find(Locator::Css("html")).await.unwrap();
    click(c, css).await;
    let deadline = Instant::now() + NAVIGATION_TIMEOUT;
    while old.text().await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "clicking {css} did not load a page"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    while c.execute("return document.readyState", vec![]).await.ok() != Some(json!("complete")) {
        assert!(
            Instant::now() < deadline,
            "the page after {css} did not finish loading"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn path(c: &Client) -> String {
    c.current_url().await.unwrap().path().to_string()
}

/// The page's stylesheet applied (the CSP allows `/style.css` and nothing inline): the header
/// has its colour and the page its font.
async fn assert_styled(c: &Client) {
    let header = c
        .execute(
            "return getComputedStyle(document.querySelector('header')).backgroundColor",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(header, json!("rgb(23, 50, 77)"), "the stylesheet applies");
}

/// An HTTP client outside the browser with the browser's cookies: the pages' CSP allows no
/// fetch() from them (`connect-src` falls back to `default-src 'none'`).
async fn outside_client(c: &Client, base: &str) -> web_client::Client {
    let mut outside = web_client::Client::new(base);
    for cookie in c.get_all_cookies().await.unwrap() {
        outside.set_cookie(cookie.name(), cookie.value());
    }
    outside
}

async fn review_flow(backend: &str) {
    let Some((driver_bin, chromium)) = browser() else {
        return;
    };
    let Some((store, _guard)) = store(backend).await else {
        return;
    };
    let inputs = Inputs::write();
    inputs.run(&store).await.expect("seeding run");
    for user in [USER, APPROVER] {
        store
            .upsert_user(user, &settlement::auth::hash_password(PASSWORD).unwrap())
            .await
            .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(settlement::web::serve(
        listener,
        store.clone(),
        settlement::web::WebConfig::default(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let (_driver, port) = start_driver(&driver_bin).await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1200,900", "--no-first-run", "--no-default-browser-check"],
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromedriver session");

    // Not logged in: the days page sends us to the login page; a wrong password is refused.
    c.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(path(&c).await, "/login");
    assert_styled(&c).await;
    fill(&c, "#name", USER).await;
    fill(&c, "#password", "wrong password").await;
    click_nav(&c, "#login").await;
    assert!(text(&c, "#login-error").await.contains("Wrong"));
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(&c, "#name", USER).await;
    fill(&c, "#password", PASSWORD).await;
    click_nav(&c, "#login").await;
    assert_eq!(path(&c).await, "/");
    // The days page opens with charts: money per operator, matched ratio, open exceptions.
    let charts = c
        .find_all(Locator::Css("#charts svg[role='img']"))
        .await
        .unwrap()
        .len();
    assert_eq!(charts, 4);
    assert!(text(&c, "#charts").await.contains("Not in our records"));
    screenshot(&c, &format!("days-{backend}")).await;
    let days = text(&c, "#days").await;
    assert!(
        days.contains(DAY) && days.contains("hz-metro") && days.contains("zj-expressway"),
        "{days}"
    );
    // Each operator's statement of the day has its own status.
    assert_eq!(text(&c, &format!("#status-{DAY}-hz-metro")).await, "open");
    assert_eq!(
        text(&c, &format!("#status-{DAY}-zj-expressway")).await,
        "open"
    );

    // The day, then hz-metro's statement, then the records behind its gross figure.
    click_nav(&c, &format!("#days a[href='/days/{DAY}']")).await;
    assert_eq!(text(&c, "#day-status").await, "open");
    click_nav(
        &c,
        &format!("#operators a[href='/days/{DAY}/operators/hz-metro']"),
    )
    .await;
    let statement = text(&c, "#statement").await;
    assert!(statement.contains("Net payable"), "{statement}");
    assert!(
        statement.contains("17.50 CNY"),
        "gross 1750 fen: {statement}"
    );
    let journal = text(&c, "#journal").await;
    assert!(
        journal.contains("payout") && journal.contains("operator_payout"),
        "{journal}"
    );
    screenshot(&c, &format!("statement-{backend}")).await;
    assert_styled(&c).await;
    // A page may not fetch (the CSP): the script's fetch of the CSV is refused by the browser.
    let fetched = c
        .execute(
            "return fetch('/exceptions.csv').then(() => 'fetched', () => 'refused')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fetched, json!("refused"));
    // The statement's CSV, through its link, with the browser's session.
    let href = c
        .find(Locator::Css("a[href$='/files/statement.csv']"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let csv = outside_client(&c, &base).await.get(&href).await;
    assert!(
        csv.body.contains("figure,net_payable,,,1640,CNY"),
        "{}",
        csv.body
    );
    click_nav(&c, "#figure-gross").await;
    assert_eq!(text(&c, "#figure-total").await, "17.50 CNY");
    let items = text(&c, "#items").await;
    assert!(
        items.contains("M2-1") && items.contains("Amounts differ"),
        "{items}"
    );
    assert!(
        items.contains("M4-1") && items.contains("Not in the operator's export"),
        "{items}"
    );

    // The exceptions queue, filtered to one class.
    c.goto(&format!("{base}/exceptions")).await.unwrap();
    let all = c
        .find_all(Locator::Css("tr.exception"))
        .await
        .unwrap()
        .len();
    assert!(all >= 6, "{all} exceptions");
    // Sorted on the server by the column's link: largest amount first.
    click_nav(&c, "th a.sort[href$='sort=amount']").await;
    let mut amounts = Vec::new();
    for cell in c
        .find_all(Locator::Css("tr.exception td.num"))
        .await
        .unwrap()
    {
        let t = cell.text().await.unwrap();
        let minor: i64 = t
            .trim_end_matches(" CNY")
            .replace([',', '.'], "")
            .parse()
            .unwrap_or_else(|_| panic!("an amount: {t}"));
        amounts.push(minor);
    }
    assert_eq!(amounts.len(), all);
    assert!(amounts.windows(2).all(|w| w[0] >= w[1]), "{amounts:?}");
    screenshot(&c, &format!("exceptions-{backend}")).await;
    c.goto(&format!("{base}/exceptions")).await.unwrap();
    c.find(Locator::Css("#class"))
        .await
        .unwrap()
        .select_by_value("missing_at_provider")
        .await
        .unwrap();
    click_nav(&c, "#filter").await;
    let rows = c.find_all(Locator::Css("tr.exception")).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].text().await.unwrap().contains("M3-1"));

    // Resolve it: an empty note is refused, then chase the provider with a note.
    click_nav(&c, "a.resolve-link").await;
    click(&c, "#action-chase_provider").await;
    click_nav(&c, "#submit-resolution").await;
    assert_eq!(text(&c, "#form-error").await, "A note is required.");
    assert_eq!(text(&c, "#exception-state").await, "open");
    click(&c, "#action-chase_provider").await;
    fill(&c, "#note", "Asked the provider about M3-1 (ticket 4711)").await;
    click_nav(&c, "#submit-resolution").await;
    assert_eq!(text(&c, "#exception-state").await, "chase_provider");
    assert!(text(&c, "#history").await.contains("ticket 4711"));

    // Adjust M2-1 (the provider paid 4.50 for a 5.00 fare): the statement moves by 0.50, and
    // its adjustment leads back to the resolution with its note and user.
    c.goto(&format!(
        "{base}/exceptions?day={DAY}&class=amount_mismatch"
    ))
    .await
    .unwrap();
    click_nav(&c, "a.resolve-link").await;
    click(&c, "#action-adjust").await;
    fill(
        &c,
        "#note",
        "Operator confirmed the 4.50 fare; pay the difference",
    )
    .await;
    click_nav(&c, "#submit-resolution").await;
    assert_eq!(
        text(&c, "#form-error").await,
        "An adjustment needs an amount."
    );
    click(&c, "#action-adjust").await;
    fill(&c, "#adjust", "0.50").await;
    fill(
        &c,
        "#note",
        "Operator confirmed the 4.50 fare; pay the difference",
    )
    .await;
    click_nav(&c, "#submit-resolution").await;
    assert_eq!(text(&c, "#exception-state").await, "adjust");
    c.goto(&format!("{base}/days/{DAY}/operators/hz-metro"))
        .await
        .unwrap();
    let statement = text(&c, "#statement").await;
    assert!(
        statement.contains("Adjustments") && statement.contains("0.50 CNY"),
        "{statement}"
    );
    assert!(
        statement.contains("16.90 CNY"),
        "net 1640 + 50: {statement}"
    );
    assert!(
        text(&c, "#journal")
            .await
            .contains("settlement_adjustments"),
        "the adjustment is journalled"
    );
    click_nav(&c, "#figure-adjustments").await;
    assert_eq!(text(&c, "#figure-total").await, "0.50 CNY");
    let items = text(&c, "#items").await;
    assert!(
        items.contains("M2-1")
            && items.contains("Adjustment by a resolution")
            && items.contains(USER),
        "{items}"
    );
    click_nav(&c, "a.exception-link").await;
    assert_eq!(text(&c, "#exception-state").await, "adjust");
    assert!(text(&c, "#history").await.contains("adjust 0.50 CNY"));

    // A POST with the session but without its CSRF token is refused.
    let forged = outside_client(&c, &base)
        .await
        .post(
            &format!("/days/{DAY}/operators/hz-metro/approve"),
            &[("csrf", "forged")],
        )
        .await;
    assert_eq!(forged.status, 403);

    // Four-eyes: the user who resolved its exceptions cannot approve hz-metro's statement; a
    // second finance user can.
    c.goto(&format!("{base}/days/{DAY}/operators/hz-metro"))
        .await
        .unwrap();
    click_nav(&c, "#approve").await;
    assert!(
        text(&c, "#error").await.contains("four-eyes"),
        "{}",
        c.source().await.unwrap()
    );
    assert_eq!(
        store.operator_status(DAY, "hz-metro").await.unwrap(),
        "open"
    );
    c.goto(&format!("{base}/")).await.unwrap();
    click_nav(&c, "#logout").await;
    c.goto(&format!("{base}/login")).await.unwrap();
    fill(&c, "#name", APPROVER).await;
    fill(&c, "#password", PASSWORD).await;
    click_nav(&c, "#login").await;
    // Approve hz-metro's statement: it has open exceptions, so a confirmation page lists them
    // first; confirmed, that operator's day is locked, the day is not yet.
    c.goto(&format!("{base}/days/{DAY}/operators/hz-metro"))
        .await
        .unwrap();
    click_nav(&c, "#approve").await;
    let open = open_count(&store, DAY, "hz-metro").await;
    assert!(open > 0);
    assert!(text(&c, "#open-count")
        .await
        .contains(&format!("{open} open exception(s)")));
    let listed = c
        .find_all(Locator::Css("tr.open-exception"))
        .await
        .unwrap()
        .len();
    assert_eq!(listed, open);
    assert!(text(&c, "#open-exceptions").await.contains("M4-1"));
    assert_eq!(
        store.operator_status(DAY, "hz-metro").await.unwrap(),
        "open"
    );
    click_nav(&c, "#confirm-approve").await;
    assert_eq!(path(&c).await, format!("/days/{DAY}/operators/hz-metro"));
    assert_eq!(text(&c, "#statement-status").await, "approved");
    assert!(text(&c, "#locked").await.contains("--operator hz-metro"));
    assert!(
        c.find(Locator::Css("#approve")).await.is_err(),
        "no approve button on an approved statement"
    );
    c.goto(&format!("{base}/days/{DAY}")).await.unwrap();
    assert_eq!(text(&c, "#day-status").await, "open");
    assert_eq!(text(&c, "#status-hz-metro").await, "approved");
    assert_eq!(text(&c, "#status-zj-expressway").await, "open");
    assert!(c.find(Locator::Css("#locked")).await.is_err());
    // An approved operator's exceptions can still be worked without moving its money: accept
    // is offered and recorded, adjust is not offered, and an adjusted one offers nothing.
    c.goto(&format!(
        "{base}/exceptions?day={DAY}&class=missing_at_provider"
    ))
    .await
    .unwrap();
    click_nav(&c, "a.resolve-link").await;
    assert!(text(&c, "#locked").await.contains("hz-metro"));
    assert!(text(&c, "#locked").await.contains("settlement reopen"));
    assert!(c.find(Locator::Css("#action-adjust")).await.is_err());
    click(&c, "#action-accept").await;
    fill(&c, "#note", "Provider confirmed M3-1 will not be billed").await;
    click_nav(&c, "#submit-resolution").await;
    assert_eq!(text(&c, "#exception-state").await, "accept");
    assert!(text(&c, "#history")
        .await
        .contains("accept: Provider confirmed M3-1 will not be billed"));
    let audited = store.audit(DAY).await.unwrap().pop().unwrap();
    assert!(
        audited.detail.starts_with(
            "M3-1 (missing_at_provider): accept on the approved statement (unchanged)"
        ),
        "{}",
        audited.detail
    );
    c.goto(&format!(
        "{base}/exceptions?day={DAY}&class=amount_mismatch"
    ))
    .await
    .unwrap();
    click_nav(&c, "a.resolve-link").await;
    assert!(c.find(Locator::Css("#resolve")).await.is_err());
    assert!(text(&c, "#locked")
        .await
        .contains("current resolution is an adjustment"));

    // Then zj-expressway's, from the day's list: the day is approved and locked, and the
    // audit trail has the resolutions and both approvals.
    c.goto(&format!("{base}/days/{DAY}")).await.unwrap();
    click_nav(
        &c,
        &format!("#operators a[href='/days/{DAY}/operators/zj-expressway']"),
    )
    .await;
    click_nav(&c, "#approve").await;
    assert_eq!(text(&c, "#statement-status").await, "approved");
    c.goto(&format!("{base}/days/{DAY}")).await.unwrap();
    assert_eq!(text(&c, "#day-status").await, "approved");
    assert!(text(&c, "#locked").await.contains("locked"));
    let audit = text(&c, "#audit").await;
    assert!(
        audit.contains("operator hz-metro")
            && audit.contains("operator zj-expressway")
            && audit.contains(USER),
        "{audit}"
    );
    assert!(
        audit.contains("chase_provider") && audit.contains("ticket 4711"),
        "{audit}"
    );
    assert!(audit.contains("adjust 50"), "{audit}");
    assert_eq!(store.day_status(DAY).await.unwrap(), "approved");
    c.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(
        text(&c, &format!("#status-{DAY}-zj-expressway")).await,
        "approved"
    );

    // Export the resolved exceptions as CSV (the link's own URL, with the browser's session).
    c.goto(&format!("{base}/exceptions?state=resolved"))
        .await
        .unwrap();
    let href = c
        .find(Locator::Css("#export-csv"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let csv = outside_client(&c, &base).await.get(&href).await.body;
    assert!(
        csv.starts_with("business_day,operator_id,class,reference"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.contains("missing_at_provider,M3-1,200,CNY,accept"),
        "{csv}"
    );
    assert!(csv.contains("amount_mismatch,M2-1,500,CNY,adjust"), "{csv}");

    // Log out: the pages ask for a login again.
    click_nav(&c, "#logout").await;
    c.goto(&format!("{base}/exceptions")).await.unwrap();
    assert_eq!(path(&c).await, "/login");

    c.close().await.unwrap();
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn review_flow_sqlite() {
    review_flow("sqlite").await
}

#[tokio::test]
async fn review_flow_postgres() {
    review_flow("postgres").await
}
