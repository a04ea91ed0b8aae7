//! Proves the rider app works as a phone uses it, in headless Chromium (Debian's `chromium` +
//! `chromium-driver`, through WebDriver) against a real gateway and provider sandbox on
//! loopback, over TLS the browser trusts (the test's dev CA in an NSS database of its own):
//! the app enrols by a click (WebCrypto key in IndexedDB); its ride-code builder reproduces the
//! published test vectors byte for byte and its signatures verify with the wire crate's
//! `Verifier`; the QR code is read back **from a screenshot** and tapped at a gate over mutual
//! TLS — approved; with the network cut (the public listener unreachable) the reloaded app
//! comes from its service worker and its code is approved at the exit gate; back online, the
//! journey shows its fare, the charge is captured from the wallet the app bound, a dispute
//! raised in the app is listed, decided by an operator, and the app shows the decision; a
//! deny-listing shows in the app with its reason while a gate refuses the code, and its lifting
//! shows too; the refund, the deny-listing and its lifting as in-app notifications; a receipt;
//! the app in Chinese; a credential near its end renewed when the app starts, its codes approved.
//! A second phone whose wallet cannot pay sees the failed payment as arrears and the
//! deny-listing (with notifications), tops up, repays in the app, and sees both cleared.
//!
//! axe-core (npm, pinned in `tests/browser/package-lock.json`, installed by the test with
//! `npm ci`) checks every view against WCAG 2.1 A/AA and its best practices, in English and
//! Chinese.
//!
//! Screenshots go to `target/rider-app-screens/<database>/*.png` (looked at by people). Skipped
//! when chromedriver, chromium or certutil (libnss3-tools) is missing, unless
//! TURNPIKE_REQUIRE_BROWSER=1 (set by `.ci/run`), which makes that a failure. Runs on SQLite
//! and on PostgreSQL (skipped without it unless TURNPIKE_REQUIRE_PG=1), one after the other.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use turnpike_tests::provider::PaidEnv;
use turnpike_tests::proxy::{Fault, FaultProxy};
use turnpike_tests::{demo_stops, gate, tap, Db};
use turnpike_wire::api::{Decision, Direction};
use turnpike_wire::ridecode::{DenyList, IssuerPublicKey, Verifier, VerifyPolicy};

/// How long chromedriver gets to start answering.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the app gets for anything it does after a click (enrolment, a list, a code).
const UI_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the capture worker gets to collect the journey's fare from the wallet.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(30);

/// The metro's daily cap in this test (CNY): more than the one journey's fare, so the app
/// shows what is left.
const DAILY_CAP: &str = "5.00";

const VECTORS_JSON: &str = include_str!("../../wire/testdata/ride-code-vectors.json");

/// The accessibility checker's npm project (axe-core, pinned with its lock file).
const AXE_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/browser");
/// What a successful install leaves behind: the lock file it installed.
const AXE_STAMP: &str = ".installed-lock.json";

/// axe-core's script, installed with `npm ci` into the target directory once per lock file.
/// None (the check skipped, with a message) when npm is unavailable, unless the browser is
/// required, which makes that a failure.
fn axe_script() -> Option<String> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rider-app-axe");
    let script = dir.join("node_modules/axe-core/axe.min.js");
    let result = (|| -> Result<String, String> {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let lock = std::fs::read(Path::new(AXE_SOURCE).join("package-lock.json"))
            .map_err(|e| e.to_string())?;
        if std::fs::read(dir.join(AXE_STAMP)).ok().as_deref() != Some(lock.as_slice())
            || !script.exists()
        {
            for file in ["package.json", "package-lock.json"] {
                std::fs::copy(Path::new(AXE_SOURCE).join(file), dir.join(file))
                    .map_err(|e| format!("copying {file}: {e}"))?;
            }
            let out = Command::new("npm")
                .current_dir(&dir)
                .args([
                    "ci",
                    "--no-audit",
                    "--no-fund",
                    "--ignore-scripts",
                    "--loglevel=error",
                ])
                .output()
                .map_err(|e| format!("running npm: {e}"))?;
            if !out.status.success() {
                return Err(format!("npm ci: {}", String::from_utf8_lossy(&out.stderr)));
            }
            std::fs::write(dir.join(AXE_STAMP), &lock).map_err(|e| e.to_string())?;
        }
        std::fs::read_to_string(&script).map_err(|e| e.to_string())
    })();
    match result {
        Ok(script) => Some(script),
        Err(why) if std::env::var("TURNPIKE_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("axe-core is required with the browser (TURNPIKE_REQUIRE_BROWSER=1): {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED the accessibility check: {why}");
            None
        }
    }
}

/// Runs axe-core on the page as it is (WCAG 2.1 A and AA rules and axe's best practices) and
/// fails on any violation, naming the rule and the elements.
async fn assert_accessible(c: &Client, axe: Option<&str>, view: &str) {
    let Some(axe) = axe else {
        return;
    };
    let loaded = c
        .execute("return typeof window.axe === 'object';", vec![])
        .await
        .unwrap();
    if loaded != true {
        // WebDriver's scripts are not subject to the page's CSP.
        c.execute(&format!("{axe}\nreturn true;"), vec![])
            .await
            .unwrap();
    }
    let violations = c
        .execute_async(
            r#"const done = arguments[0];
               axe.run(document, { runOnly: { type: 'tag',
                   values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } })
                 .then((r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact,
                     help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')) }))),
                       (e) => done([{ id: 'axe-error', help: String(e) }]));"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        violations,
        json!([]),
        "accessibility violations on the {view} view"
    );
}

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.exists())
    })
}

/// chromedriver, chromium and certutil, or None (skip) unless the browser is required.
fn browser() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let driver = find_program("chromedriver");
    let chromium = find_program("chromium").or_else(|| find_program("chromium-browser"));
    let certutil = find_program("certutil");
    match (driver, chromium, certutil) {
        (Some(d), Some(c), Some(u)) => Some((d, c, u)),
        _ => {
            if std::env::var("TURNPIKE_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!("the browser is required (TURNPIKE_REQUIRE_BROWSER=1) but chromium, chromedriver or certutil is missing: apt-get install chromium chromium-driver libnss3-tools");
            }
            eprintln!("SKIPPED: chromium/chromedriver/certutil not installed");
            None
        }
    }
}

/// A home directory whose NSS database trusts `ca` for TLS servers: Chromium on Linux reads
/// `$HOME/.pki/nssdb`, so the app's origin is a secure context with a valid certificate, as
/// service workers require (no `--ignore-certificate-errors`).
fn home_trusting(certutil: &Path, home: &Path, ca: &Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    let run = |args: &[&str]| {
        let out = Command::new(certutil).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["-d", &db_arg, "-N", "--empty-password"]);
    let ca = ca.to_str().unwrap();
    run(&[
        "-d",
        &db_arg,
        "-A",
        "-t",
        "C,,",
        "-n",
        "turnpike-test-ca",
        "-i",
        ca,
    ]);
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_driver(driver: &Path, home: &Path, log: &Path) -> (Driver, u16) {
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .arg(format!("--log-path={}", log.display()))
        .env("HOME", home)
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

tokio::task_local! {
    /// Where this run's screenshots go: `target/rider-app-screens/<database>/`.
    static SCREENS: PathBuf;
}

fn screens_dir() -> PathBuf {
    SCREENS.with(|dir| dir.clone())
}

/// One browser run at a time: two Chromiums and two gateways at once on a two-core machine
/// only make each slower and the timeouts tighter.
static ONE_BROWSER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Saves the viewport as `target/rider-app-screens/<name>.png` and returns the PNG.
async fn screenshot(c: &Client, name: &str) -> Vec<u8> {
    let shot = c.screenshot().await.unwrap();
    let dir = screens_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), &shot).unwrap();
    shot
}

/// Reads the one QR code in a screenshot as a gate's scanner would: its raw bytes, and the
/// symbol's version and error-correction level.
fn scan(png_bytes: &[u8]) -> (Vec<u8>, usize, u16) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a PNG frame");
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "8-bit screenshot");
    let channels = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    let (w, h) = (info.width as usize, info.height as usize);
    let grey = |x: usize, y: usize| -> u8 {
        let p = &buf[(y * w + x) * channels..];
        if channels >= 3 {
            ((u16::from(p[0]) * 3 + u16::from(p[1]) * 6 + u16::from(p[2])) / 10) as u8
        } else {
            p[0]
        }
    };
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, grey);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code on the screen");
    let mut bytes = Vec::new();
    let meta = grids[0].decode_to(&mut bytes).expect("the QR code decodes");
    (bytes, meta.version.0, meta.ecc_level)
}

/// Waits until `script` (a function body returning a value) returns something truthy; returns it.
async fn until(c: &Client, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + UI_TIMEOUT;
    loop {
        let v = c.execute(script, vec![]).await.unwrap();
        let truthy = match &v {
            Value::Null | Value::Bool(false) => false,
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the element `css` finds. The app re-renders lists when an answer arrives, so an
/// element found a moment ago may have been replaced: then it finds the new one and clicks that.
async fn click(c: &Client, css: &str) {
    let deadline = Instant::now() + UI_TIMEOUT;
    loop {
        let found = c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        match found.click().await {
            Ok(()) => return,
            Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("clicking {css}: {e}"),
        }
    }
}

/// Waits until the view `id` has no load in flight (the app marks it `aria-busy`).
async fn settled(c: &Client, id: &str) {
    let script =
        format!("return document.getElementById('{id}').getAttribute('aria-busy') !== 'true';");
    until(c, "the view to finish loading", &script).await;
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// The phone loses its network (the proxy in front of the public listener resets every
/// connection) and the page is reloaded: it must come from the service worker and start.
async fn reload_offline(c: &Client, network: &FaultProxy) {
    network.set(Fault::Reset);
    c.refresh().await.unwrap();
    until(
        c,
        "the app to start offline",
        "return document.body.dataset.ready;",
    )
    .await;
}

/// A code on screen generated after `after_ms`; its generation time.
async fn fresh_code(c: &Client, after_ms: u64) -> u64 {
    let script = format!(
        "const q = document.getElementById('qr'); \
         return q && !q.hidden && Number(q.dataset.generatedAt) > {after_ms} \
           ? Number(q.dataset.generatedAt) : null;"
    );
    until(c, "a fresh ride code", &script)
        .await
        .as_u64()
        .unwrap()
}

/// Screenshots the code view, scans the QR, checks its size rules; the 206 bytes.
async fn scan_screen(c: &Client, name: &str) -> Vec<u8> {
    let shot = screenshot(c, name).await;
    let (bytes, version, ecc_level) = scan(&shot);
    assert_eq!(bytes.len(), 206, "a ride code is 206 bytes");
    assert!(version <= 10, "QR version {version} is over 10");
    // Level M is 0b00 in the format bits rqrr reports.
    assert_eq!(ecc_level, 0, "error-correction level M");
    bytes
}

/// `a − b` of two decimal amounts with two places ("5.00" − "3.00" = "2.00"), in integer fen.
fn yuan_minus(a: &str, b: &str) -> String {
    let fen = |s: &str| -> i64 {
        let (whole, cents) = s.split_once('.').expect("two decimal places");
        whole.parse::<i64>().unwrap() * 100 + cents.parse::<i64>().unwrap()
    };
    let d = fen(a) - fen(b);
    format!("{}.{:02}", d / 100, d % 100)
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The app's ride-code module, run in the browser on the published vectors: bytes 0..142 it
/// builds from each vector's credential, time and nonce equal the vector's; it verifies the
/// vector's device signature over its signing input (and refuses a changed one); and a code it
/// signs with the vector's device key verifies with the wire crate's `Verifier`.
async fn check_vectors_in_browser(c: &Client) {
    let file: Value = serde_json::from_str(VECTORS_JSON).unwrap();
    let mut cases = Vec::new();
    for v in file["vectors"].as_array().unwrap() {
        let code = hex::decode(v["code_hex"].as_str().unwrap()).unwrap();
        // Vectors of a wrong length or version test the verifier, not the builder.
        if code.len() != 206 || code[0] != 1 {
            continue;
        }
        cases.push(json!({
            "name": v["name"],
            "credential_hex": hex::encode(&code[..126]),
            "generated_at_ms": u64::from_be_bytes(code[126..134].try_into().unwrap()).to_string(),
            "nonce": u64::from_be_bytes(code[134..142].try_into().unwrap()).to_string(),
        }));
    }
    assert!(cases.len() >= 10, "the vectors file has its codes");
    let signed_at_ms: u64 = file["decoded"]["generated_at_ms"].as_u64().unwrap() + 1_000;
    let script = r#"
        const [cases, valid, publicHex, pkcs8Hex, signedAt, done] = arguments;
        (async () => {
          const m = await import('/app/ridecode.js');
          const built = cases.map((k) => ({
            name: k.name,
            hex: m.toHex(m.unsignedCode(m.fromHex(k.credential_hex), BigInt(k.generated_at_ms), BigInt(k.nonce))),
          }));
          const ecdsa = { name: 'ECDSA', namedCurve: 'P-256' };
          const pub = await crypto.subtle.importKey('raw', m.fromHex(publicHex), ecdsa, false, ['verify']);
          const code = m.fromHex(valid);
          const verifies = await m.verifyCode(pub, code);
          const changed = code.slice();
          changed[205] ^= 1;
          const changedVerifies = await m.verifyCode(pub, changed);
          const priv = await crypto.subtle.importKey('pkcs8', m.fromHex(pkcs8Hex), ecdsa, false, ['sign']);
          const signed = await m.makeCode(priv, code.slice(0, 126), BigInt(signedAt));
          const prefix = m.toHex(m.RIDECODE_PREFIX);
          return { built, verifies, changedVerifies, signed: m.toHex(signed), prefix };
        })().then(done, (e) => done({ error: String(e) }));
    "#;
    let answer = c
        .execute_async(
            script,
            vec![
                Value::Array(cases.clone()),
                file["ride_code_hex"].clone(),
                file["device_public_key_uncompressed_hex"].clone(),
                file["device_pkcs8_hex"].clone(),
                json!(signed_at_ms),
            ],
        )
        .await
        .unwrap();
    assert!(answer.get("error").is_none(), "{answer}");
    for (case, built) in cases.iter().zip(answer["built"].as_array().unwrap()) {
        let vector = file["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == case["name"])
            .unwrap();
        assert_eq!(
            built["hex"].as_str().unwrap(),
            &vector["code_hex"].as_str().unwrap()[..284],
            "bytes 0..142 of vector {}",
            case["name"]
        );
    }
    assert_eq!(
        answer["prefix"],
        hex::encode(b"turnpike-ridecode-v1\0"),
        "the signing prefix"
    );
    assert_eq!(answer["verifies"], true, "the vector's signature verifies");
    assert_eq!(answer["changedVerifies"], false, "a changed code does not");
    let signed = hex::decode(answer["signed"].as_str().unwrap()).unwrap();
    let issuer = IssuerPublicKey::new(
        file["issuer_key_id"].as_u64().unwrap() as u16,
        &hex::decode(file["issuer_public_key_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let verifier = Verifier::new([issuer], VerifyPolicy::default()).unwrap();
    let verified = verifier.verify(&signed, signed_at_ms + 1_500, &DenyList::new());
    assert!(
        verified.is_ok(),
        "a code the app signed verifies: {verified:?}"
    );
}

async fn rider_app_in_chromium(db: Db) {
    let Some((driver_bin, chromium, certutil)) = browser() else {
        return;
    };
    // Tickets bought in the app learn of their payment from the gateway's own query (this
    // test's sandbox sends no notifications), soon.
    let tweak = |c: &mut gateway::config::Config| c.charging.ticket_query_after_ms = 500;
    let Some(p) = PaidEnv::start_custom(db, tweak, Some(DAILY_CAP)).await else {
        return;
    };
    let gw = &p.env.gw;
    // The browser reaches the public listener through a proxy the test can cut: the phone's
    // network. Gates keep their own link to the terminal listener.
    let public_port: u16 = gw.public_base.rsplit(':').next().unwrap().parse().unwrap();
    let network = FaultProxy::start(([127, 0, 0, 1], public_port).into())
        .await
        .unwrap();
    let app = format!("https://localhost:{}/app/", network.addr.port());

    let home = p.env.scratch.0.join("browser-home");
    home_trusting(&certutil, &home, &gw.ca());
    let (_driver, port) = start_driver(
        &driver_bin,
        &home,
        &p.env.scratch.0.join("chromedriver.log"),
    )
    .await;
    let c = session(port, &chromium).await;

    // Every file of the app is served with its type and the strict CSP (the whole test then
    // runs under it: an inline script or style would not run).
    let http = turnpike_client::tls::http_client(&gw.ca(), None).unwrap();
    for (path, content_type) in [
        ("/app/", "text/html; charset=utf-8"),
        ("/app/app.js", "text/javascript; charset=utf-8"),
        ("/app/sw.js", "text/javascript; charset=utf-8"),
        ("/app/manifest.webmanifest", "application/manifest+json"),
    ] {
        let r = http
            .get(format!("{}{path}", gw.public_base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(
            header("content-security-policy"),
            gateway::api::app::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert!(
            !header("content-security-policy").contains("unsafe"),
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    }

    // This run's screenshots only.
    let _ = std::fs::remove_dir_all(screens_dir());

    // Enrol by clicking.
    c.goto(&app).await.unwrap();
    until(
        &c,
        "the app to start",
        "return document.body.dataset.ready;",
    )
    .await;
    assert_eq!(
        c.execute("return document.body.dataset.view;", vec![])
            .await
            .unwrap(),
        "enrol"
    );
    screenshot(&c, "1-enrol").await;
    let axe = axe_script();
    let axe = axe.as_deref();
    assert_accessible(&c, axe, "set-up").await;
    click(&c, "#enrol").await;
    let first_at = fresh_code(&c, 0).await;
    // The key in IndexedDB is a non-extractable CryptoKey.
    let key = c
        .execute_async(
            r#"const done = arguments[0];
               const r = indexedDB.open('turnpike-rider');
               r.onsuccess = () => {
                 const g = r.result.transaction('kv').objectStore('kv').get('device');
                 g.onsuccess = () => done({
                   type: g.result.privateKey.type,
                   extractable: g.result.privateKey.extractable,
                   credential_len: g.result.credential.length,
                   rider: g.result.riderId,
                 });
               };"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(key["type"], "private");
    assert_eq!(
        key["extractable"], false,
        "the device key cannot be read out"
    );
    assert_eq!(key["credential_len"], 126);
    let rider_id = key["rider"].as_str().unwrap().to_string();

    check_vectors_in_browser(&c).await;

    // Bind the wallet through the app: the gateway's signing link, signed in the wallet.
    bind_wallet_in_app(&c, &app, &p, 10_000).await;
    screenshot(&c, "2-wallet-bound").await;
    assert_accessible(&c, axe, "wallet").await;

    // Show a code, scan it from the screen, tap in at a gate over mutual TLS.
    c.goto(&format!("{app}#code")).await.unwrap();
    until(
        &c,
        "the service worker to control the page",
        "return navigator.serviceWorker.controller ? navigator.serviceWorker.controller.state : null;",
    )
    .await;
    fresh_code(&c, first_at).await;
    let entry_code = scan_screen(&c, "3-code-online").await;
    assert_accessible(&c, axe, "ride code").await;
    assert_eq!(
        u64::from_be_bytes(entry_code[11..19].try_into().unwrap()).to_string(),
        rider_id,
        "the code names the enrolled rider"
    );
    let stops = demo_stops();
    let (from, to) = (&stops[0], &stops[3]);
    let entry = gw
        .terminal(&gate(from, 1))
        .tap(&tap(1, Direction::Entry, base64url(&entry_code)))
        .await
        .unwrap();
    assert_eq!(entry.decision, Decision::Approve, "{entry:?}");

    // The phone loses its network: the app reloads from its service worker, and its code
    // (credential and key from IndexedDB) gets through the exit gate.
    let offline_from = turnpike_tests::now_ms();
    reload_offline(&c, &network).await;
    let offline_at = fresh_code(&c, offline_from).await;
    let exit_code = scan_screen(&c, "4-code-offline").await;
    assert_eq!(
        u64::from_be_bytes(exit_code[126..134].try_into().unwrap()),
        offline_at,
        "the screen shows the code made offline"
    );
    let exit = gw
        .terminal(&gate(to, 1))
        .tap(&tap(2, Direction::Exit, base64url(&exit_code)))
        .await
        .unwrap();
    assert_eq!(exit.decision, Decision::Approve, "{exit:?}");
    let fare = exit.fare.expect("the exit prices the journey");
    // While offline the journeys view says so and still renders.
    c.goto(&format!("{app}#journeys")).await.unwrap();
    until(
        &c,
        "the offline notice",
        "return document.getElementById('net').classList.contains('offline');",
    )
    .await;
    screenshot(&c, "5-journeys-offline").await;

    // Back online: the journey with its fare, then its charge captured from the wallet.
    network.set(Fault::None);
    let expected_fare = format!("¥{}", fare.amount());
    let deadline = Instant::now() + CAPTURE_TIMEOUT;
    loop {
        click(&c, "#refresh-journeys").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ready = c
            .execute(
                "return !!document.querySelector('#journeys tr[data-status=closed] button.dispute');",
                vec![],
            )
            .await
            .unwrap();
        if ready == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no captured journey in the app: {}",
            text(&c, "#view-journeys").await
        );
    }
    let row = text(&c, "#journeys tr[data-status=closed]").await;
    assert!(row.contains(&expected_fare), "{row} shows {expected_fare}");
    assert!(row.contains(&format!("{from} → {to}")), "{row}");
    assert!(row.contains("paid"), "{row}");
    // Today's progress towards the metro's daily cap.
    let cap = text(&c, "#caps").await;
    let left = format!("¥{}", yuan_minus(DAILY_CAP, &fare.amount().to_string()));
    assert!(
        cap.contains(&format!("{expected_fare} of the ¥{DAILY_CAP} daily cap"))
            && cap.contains(&format!("{left} more at most")),
        "{cap}"
    );
    screenshot(&c, "6-journeys").await;

    // A dispute raised in the app, listed, decided by the operator, the decision shown.
    settled(&c, "view-journeys").await;
    click(&c, "#journeys button.dispute").await;
    let reason = c.find(Locator::Css("#dispute-reason")).await.unwrap();
    reason
        .send_keys("I tapped out at the wrong station by mistake")
        .await
        .unwrap();
    screenshot(&c, "7-dispute-form").await;
    click(&c, "#dispute-send").await;
    until(
        &c,
        "the dispute in the list",
        "return document.querySelector('#disputes li[data-status=open]');",
    )
    .await;
    assert!(text(&c, "#disputes")
        .await
        .contains("waiting for a decision"));
    let disputes = gw
        .admin
        .send(reqwest::Method::GET, "/v1/admin/disputes", None::<&Value>)
        .await
        .unwrap();
    let disputes: Value = disputes.json().unwrap();
    let dispute = disputes
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["rider_id"] == rider_id.as_str())
        .expect("the app's dispute reached the operator");
    assert_eq!(
        dispute["reason"],
        "I tapped out at the wrong station by mistake"
    );
    let decided = gw
        .admin
        .send(
            reqwest::Method::POST,
            &format!(
                "/v1/admin/disputes/{}/decision",
                dispute["dispute_id"].as_str().unwrap()
            ),
            Some(&json!({"approve": true, "note": "Refunded in full"})),
        )
        .await
        .unwrap();
    assert_eq!(
        decided.status,
        200,
        "{}",
        String::from_utf8_lossy(&decided.body)
    );
    click(&c, "#refresh-journeys").await;
    until(
        &c,
        "the decision in the app",
        "return document.querySelector('#disputes li[data-status=approved]');",
    )
    .await;
    let listed = text(&c, "#disputes").await;
    assert!(listed.contains("approved, refunded"), "{listed}");
    assert!(listed.contains("Refunded in full"), "{listed}");
    // The refund is also a notification.
    let notices = text(&c, "#notice-list").await;
    assert!(
        notices.contains(&format!("{expected_fare} refunded for your journey")),
        "{notices}"
    );
    screenshot(&c, "8-dispute-decided").await;
    assert_accessible(&c, axe, "journeys").await;

    // The operator deny-lists the rider: the app says gates refuse the code and why, and a gate
    // does refuse the code scanned from the screen; lifted, the app says gates accept it.
    let added = gw
        .admin
        .send(
            reqwest::Method::POST,
            "/v1/admin/deny-list",
            Some(&json!({"kind": "rider", "subject_id": rider_id, "reason": "phone reported stolen"})),
        )
        .await
        .unwrap();
    assert_eq!(
        added.status,
        201,
        "{}",
        String::from_utf8_lossy(&added.body)
    );
    c.goto(&format!("{app}#wallet")).await.unwrap();
    until(
        &c,
        "the refusal in the app",
        "return document.getElementById('deny-status').dataset.denied === 'true';",
    )
    .await;
    let said = text(&c, "#view-wallet").await;
    assert!(said.contains("Gates refuse your ride code"), "{said}");
    assert!(said.contains("phone reported stolen"), "{said}");
    let notices = text(&c, "#notice-list").await;
    assert!(
        notices.contains("Gates now refuse your ride code: phone reported stolen"),
        "{notices}"
    );
    screenshot(&c, "9-wallet-denied").await;
    assert_accessible(&c, axe, "wallet (denied)").await;
    // Gateway nodes reload the deny list every `taps.refresh_interval_ms` (200 ms in tests).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let before = turnpike_tests::now_ms();
    c.goto(&format!("{app}#code")).await.unwrap();
    fresh_code(&c, before).await;
    let warned = text(&c, "#code-warning").await;
    assert!(warned.contains("Gates refuse your ride code"), "{warned}");
    let denied_code = scan_screen(&c, "10-code-denied").await;
    let refused = gw
        .terminal(&gate(from, 2))
        .tap(&tap(3, Direction::Entry, base64url(&denied_code)))
        .await
        .unwrap();
    assert_eq!(refused.decision, Decision::Decline, "{refused:?}");
    assert_eq!(refused.reason.as_deref(), Some("rider_denied"));
    let lifted = gw
        .admin
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/admin/deny-list/rider/{rider_id}"),
            None::<&Value>,
        )
        .await
        .unwrap();
    assert_eq!(lifted.status, 204);
    c.goto(&format!("{app}#wallet")).await.unwrap();
    until(
        &c,
        "the lifting in the app",
        "return document.getElementById('deny-status').dataset.denied === 'false';",
    )
    .await;
    assert_eq!(
        text(&c, "#deny-status").await,
        "Gates accept your ride code."
    );
    let notices = text(&c, "#notice-list").await;
    assert!(
        notices.contains("Gates accept your ride code again."),
        "{notices}"
    );
    screenshot(&c, "10b-notifications").await;
    click(&c, "#dismiss-notices").await;
    until(
        &c,
        "the notifications dismissed",
        "return document.getElementById('notices').hidden;",
    )
    .await;

    // The receipt of the charge, and the app in Chinese.
    c.goto(&format!("{app}#journeys")).await.unwrap();
    settled(&c, "view-journeys").await;
    until(
        &c,
        "the journeys again",
        "return document.querySelector('#journeys a.receipt-link');",
    )
    .await;
    click(&c, "#journeys a.receipt-link").await;
    until(
        &c,
        "the receipt",
        "return document.querySelector('#receipt dd');",
    )
    .await;
    let receipt = text(&c, "#receipt").await;
    assert!(receipt.contains(&expected_fare), "{receipt}");
    screenshot(&c, "11-receipt").await;
    assert_accessible(&c, axe, "receipt").await;

    // Offline again: the reloaded app still shows the receipt and the journeys it last loaded,
    // saying they are what was last loaded.
    reload_offline(&c, &network).await;
    until(
        &c,
        "the receipt from the app's copy",
        "return document.querySelector('#receipt dd');",
    )
    .await;
    assert!(text(&c, "#receipt").await.contains(&expected_fare));
    c.goto(&format!("{app}#journeys")).await.unwrap();
    settled(&c, "view-journeys").await;
    let status = text(&c, "#journeys-status").await;
    assert!(
        status.starts_with("Offline: showing what was loaded at"),
        "{status}"
    );
    let row = text(&c, "#journeys tr[data-status=closed]").await;
    assert!(row.contains(&expected_fare), "{row}");
    screenshot(&c, "11b-journeys-offline-cached").await;
    network.set(Fault::None);
    c.back().await.unwrap();
    until(
        &c,
        "the receipt again",
        "return location.hash.startsWith('#receipt/') && document.querySelector('#receipt dd');",
    )
    .await;

    click(&c, "#lang").await;
    assert_eq!(
        c.execute("return document.documentElement.lang;", vec![])
            .await
            .unwrap(),
        "zh-CN"
    );
    assert_eq!(text(&c, "#receipt-h").await, "收据");
    c.goto(&format!("{app}#code")).await.unwrap();
    fresh_code(&c, 0).await;
    screenshot(&c, "12-code-zh").await;
    assert_accessible(&c, axe, "ride code (Chinese)").await;

    // A credential near its end is renewed for the same device key when the app starts online,
    // and the new one's codes are approved: make the stored one end in a minute, reload.
    let device = r#"const [change, done] = arguments;
        const r = indexedDB.open('turnpike-rider');
        r.onsuccess = () => {
          const store = r.result.transaction('kv', 'readwrite').objectStore('kv');
          const g = store.get('device');
          g.onsuccess = () => {
            const d = g.result;
            if (change) {
              d.validUntilS = Math.floor(Date.now() / 1000) + 60;
              store.put(d, 'device');
            }
            done({ credential_id: d.credentialId, valid_until_s: d.validUntilS });
          };
        };"#;
    let old = c.execute_async(device, vec![json!(true)]).await.unwrap();
    c.refresh().await.unwrap();
    until(
        &c,
        "the renewal",
        "return document.getElementById('credential-status').textContent;",
    )
    .await;
    let renewed_from = turnpike_tests::now_ms();
    let new = c.execute_async(device, vec![json!(false)]).await.unwrap();
    assert_ne!(
        new["credential_id"], old["credential_id"],
        "a new credential"
    );
    assert!(
        new["valid_until_s"].as_u64().unwrap() > old["valid_until_s"].as_u64().unwrap() + 3_600,
        "valid for longer: {old} → {new}"
    );
    let renewed_at = fresh_code(&c, renewed_from).await;
    let renewed = scan_screen(&c, "13-code-renewed").await;
    assert_eq!(
        u64::from_be_bytes(renewed[3..11].try_into().unwrap()).to_string(),
        new["credential_id"].as_str().unwrap(),
        "the code carries the new credential (made at {renewed_at})"
    );
    let entry = gw
        .terminal(&gate(to, 2))
        .tap(&tap(4, Direction::Entry, base64url(&renewed)))
        .await
        .unwrap();
    assert_eq!(entry.decision, Decision::Approve, "{entry:?}");

    c.close().await.unwrap();

    // Another phone, whose wallet cannot pay: arrears, deny-listing, repayment.
    let broke = session(port, &chromium).await;
    arrears_round_trip(&broke, &app, &p, axe).await;
    broke.close().await.unwrap();

    // A third phone: real name checked through the wallet, then a ticket bought in the app.
    let buyer = session(port, &chromium).await;
    real_name_and_ticket(&buyer, &app, &p, axe).await;
    buyer.close().await.unwrap();
}

/// The wallet's real-name state, as the app shows it (`data-real-name` of `css`).
async fn real_name_shown(c: &Client, css: &str, status: &str) {
    let script = format!("return document.querySelector('{css}').dataset.realName === '{status}';");
    until(c, &format!("real name {status}"), &script).await;
}

/// A phone whose wallet account is not real-name certified cannot buy a ticket in the app
/// (the button is off and the view says why); the rider checks the real name under Wallet
/// (typing the wallet's account), certifies in the wallet, checks again, and buys a ticket:
/// its payment QR, read from a screenshot, is the provider's, paid in a wallet, and the app
/// shows the ticket code.
async fn real_name_and_ticket(c: &Client, app: &str, p: &PaidEnv, axe: Option<&str>) {
    c.goto(app).await.unwrap();
    until(c, "the app to start", "return document.body.dataset.ready;").await;
    click(c, "#enrol").await;
    fresh_code(c, 0).await;
    let wallet_user = bind_wallet_in_app(c, app, p, 10_000).await;
    let (status, _) = p
        .sandbox
        .admin_post(
            &format!("/sandbox/users/{wallet_user}/real-name"),
            json!({ "real_name": false }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, wallet) = p
        .sandbox
        .admin_get(&format!("/sandbox/users/{wallet_user}"))
        .await;
    let logon = wallet["logon_id"].as_str().unwrap().to_string();

    c.goto(&format!("{app}#tickets")).await.unwrap();
    real_name_shown(c, "#tickets-real-name", "unchecked").await;
    settled(c, "view-tickets").await;
    assert_eq!(
        c.execute(
            "return document.getElementById('ticket-buy').disabled;",
            vec![]
        )
        .await
        .unwrap(),
        true
    );
    assert!(text(c, "#tickets-real-name")
        .await
        .contains("real-name certification"));
    screenshot(c, "40-tickets-need-real-name").await;
    assert_accessible(c, axe, "tickets (real name needed)").await;

    c.goto(&format!("{app}#wallet")).await.unwrap();
    real_name_shown(c, "#real-name-status", "unchecked").await;
    let check = |c: &Client| {
        let (c, logon) = (c.clone(), logon.clone());
        async move {
            let input = c.find(Locator::Css("#real-name-logon")).await.unwrap();
            input.clear().await.unwrap();
            input.send_keys(&logon).await.unwrap();
            click(&c, "#real-name-check").await;
        }
    };
    check(c).await;
    real_name_shown(c, "#real-name-status", "not_certified").await;
    assert!(text(c, "#real-name-status")
        .await
        .contains("has not passed"));
    screenshot(c, "41-real-name-not-certified").await;
    assert_accessible(c, axe, "wallet (real name not certified)").await;

    // Certified in the wallet, checked again.
    p.sandbox
        .admin_post(
            &format!("/sandbox/users/{wallet_user}/real-name"),
            json!({ "real_name": true }),
        )
        .await;
    check(c).await;
    real_name_shown(c, "#real-name-status", "certified").await;
    screenshot(c, "42-real-name-certified").await;

    // A ticket between the first and fourth stations.
    let stops = demo_stops();
    c.goto(&format!("{app}#tickets")).await.unwrap();
    real_name_shown(c, "#tickets-real-name", "certified").await;
    settled(c, "view-tickets").await;
    until(
        c,
        "the stations to choose from",
        "return document.getElementById('ticket-to').options.length > 3;",
    )
    .await;
    c.execute(
        "document.getElementById('ticket-from').value = arguments[0];          document.getElementById('ticket-to').value = arguments[1];",
        vec![json!(stops[0]), json!(stops[3])],
    )
    .await
    .unwrap();
    click(c, "#ticket-buy").await;
    let payload = until(
        c,
        "the ticket's payment code",
        "const pay = document.getElementById('ticket-pay');          return pay.hidden ? null : document.getElementById('ticket-qr').dataset.payload;",
    )
    .await;
    let payload = payload.as_str().unwrap().to_string();
    let shot = screenshot(c, "43-ticket-pay").await;
    let (scanned, _, _) = scan(&shot);
    assert_eq!(
        String::from_utf8(scanned).unwrap(),
        payload,
        "the QR on screen is the provider's"
    );
    assert_accessible(c, axe, "tickets (payment code)").await;

    // Any wallet pays it; the app shows the ticket code.
    let payer = p.sandbox.wallet(10_000, None).await;
    let (status, paid) = p
        .sandbox
        .admin_post(
            "/sandbox/qr/pay",
            json!({ "qr_code": payload, "user_id": payer }),
        )
        .await;
    assert_eq!(status, 200, "{paid}");
    until(
        c,
        "the ticket paid",
        "return document.getElementById('ticket-status').dataset.status === 'paid';",
    )
    .await;
    let said = text(c, "#ticket-status").await;
    assert!(said.contains("TK-"), "{said}");
    until(
        c,
        "the ticket listed as paid",
        "return document.querySelector('#tickets li[data-status=paid]');",
    )
    .await;
    screenshot(c, "44-ticket-paid").await;
    assert_accessible(c, axe, "tickets (paid)").await;

    click(c, "#lang").await;
    until(
        c,
        "the tickets view in Chinese",
        "return document.getElementById('tickets-h').textContent === '车票' \
           && document.querySelector('#tickets li[data-status=paid]').textContent.includes('已支付');",
    )
    .await;
    screenshot(c, "45-tickets-zh").await;
    assert_accessible(c, axe, "tickets (Chinese)").await;
}

/// Binds a sandbox wallet holding `balance_fen` the way a rider does in the app: Wallet, "Bind
/// a wallet", the gateway's signing link signed in the wallet, "Check again" until bound.
async fn bind_wallet_in_app(c: &Client, app: &str, p: &PaidEnv, balance_fen: i64) -> String {
    c.goto(&format!("{app}#wallet")).await.unwrap();
    until(
        c,
        "the wallet view",
        "return document.getElementById('wallet-status').dataset.wallet;",
    )
    .await;
    assert_eq!(
        text(c, "#wallet-status").await,
        "No wallet is bound. Journeys are paid from a bound wallet after each trip."
    );
    click(c, "#bind-wallet").await;
    let sign_url = until(
        c,
        "the signing link",
        "const a = document.getElementById('sign-link'); \
         return document.getElementById('sign-hint').hidden ? null : a.href;",
    )
    .await;
    let wallet_user = p.sandbox.wallet(balance_fen, None).await;
    let (status, agreement) = p
        .sandbox
        .sign_in_wallet(&wallet_user, sign_url.as_str().unwrap(), 10_000)
        .await;
    assert!(status == 200 || status == 201, "signing: {agreement}");
    refresh_until(
        c,
        "#refresh-wallet",
        "the wallet bound",
        "return document.getElementById('wallet-status').dataset.wallet === 'bound';",
    )
    .await;
    wallet_user
}

/// Clicks `button` every 300 ms until `script` returns true.
async fn refresh_until(c: &Client, button: &str, what: &str, script: &str) {
    let deadline = Instant::now() + CAPTURE_TIMEOUT;
    loop {
        click(c, button).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if c.execute(script, vec![]).await.unwrap() == true {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
    }
}

/// A new browser session (a fresh profile: its own IndexedDB and service worker).
async fn session(driver_port: u16, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=480,1000", "--no-first-run", "--no-default-browser-check",
                     "--lang=en-GB"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a chromedriver session")
}

/// A second phone whose wallet cannot pay its journey: the app shows the failed payment as
/// arrears with a notification, and the deny-listing with its reason; after the wallet is
/// topped up, "Repay now" collects it, and the app shows the repayment and the lifting.
async fn arrears_round_trip(c: &Client, app: &str, p: &PaidEnv, axe: Option<&str>) {
    let gw = &p.env.gw;
    c.goto(app).await.unwrap();
    until(c, "the app to start", "return document.body.dataset.ready;").await;
    click(c, "#enrol").await;
    fresh_code(c, 0).await;
    let wallet_user = bind_wallet_in_app(c, app, p, 100).await;
    let stops = demo_stops();
    let (from, to) = (&stops[0], &stops[3]);
    let before = turnpike_tests::now_ms();
    c.goto(&format!("{app}#code")).await.unwrap();
    fresh_code(c, before).await;
    let code = scan_screen(c, "20-broke-code").await;
    for (terminal, direction) in [
        (gate(from, 1), Direction::Entry),
        (gate(to, 1), Direction::Exit),
    ] {
        let answer = gw
            .terminal(&terminal)
            .tap(&tap(20, direction, base64url(&code)))
            .await
            .unwrap();
        assert_eq!(answer.decision, Decision::Approve, "{answer:?}");
    }
    c.goto(&format!("{app}#wallet")).await.unwrap();
    refresh_until(
        c,
        "#refresh-wallet",
        "the failed payment in the app",
        "return document.getElementById('arrears').dataset.owed === '1' \
           && document.getElementById('deny-status').dataset.denied === 'true';",
    )
    .await;
    let wallet = text(c, "#view-wallet").await;
    assert!(
        wallet.contains("You owe ¥3.00 from 1 failed payment(s)"),
        "{wallet}"
    );
    assert!(
        wallet.contains("a payment failed; it is lifted by itself once the arrears are paid"),
        "{wallet}"
    );
    let notices = text(c, "#notice-list").await;
    assert!(notices.contains("The payment of ¥3.00 for"), "{notices}");
    assert!(
        notices.contains("Gates now refuse your ride code: a payment failed"),
        "{notices}"
    );
    screenshot(c, "21-arrears").await;
    assert_accessible(c, axe, "wallet (arrears)").await;

    // Topped up in the wallet, then "Repay now".
    p.sandbox.top_up(&wallet_user, 1_000).await;
    click(c, "#repay").await;
    until(
        c,
        "the repayment requested",
        "return document.getElementById('arrears').textContent.includes('sent for collection again');",
    )
    .await;
    refresh_until(
        c,
        "#refresh-wallet",
        "the repayment in the app",
        "return document.getElementById('arrears').dataset.owed === '0' \
           && document.getElementById('deny-status').dataset.denied === 'false';",
    )
    .await;
    let notices = text(c, "#notice-list").await;
    assert!(notices.contains("went through"), "{notices}");
    assert!(
        notices.contains("Gates accept your ride code again."),
        "{notices}"
    );
    assert_eq!(p.sandbox.balance_fen(&wallet_user).await, 100 + 1_000 - 300);
    screenshot(c, "22-repaid").await;
}

async fn rider_app_in_chromium_on(db: Db) {
    let _one = ONE_BROWSER_AT_A_TIME.lock().await;
    let name = match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/rider-app-screens")
        .join(name);
    SCREENS.scope(dir, rider_app_in_chromium(db)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rider_app_in_chromium_sqlite() {
    rider_app_in_chromium_on(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rider_app_in_chromium_postgres() {
    rider_app_in_chromium_on(Db::Postgres).await;
}

/// Writes `(station, minute, entries, exits)` into `station_flow`, as weeks of taps would have.
async fn flow_history(gw: &turnpike_tests::TestGateway, rows: &[(&str, i64, i64, i64)]) {
    let counts: Vec<gateway::flow::FlowCount> = rows
        .iter()
        .map(
            |&(station, minute, entries, exits)| gateway::flow::FlowCount {
                operator_id: turnpike_client::demo::METRO_OPERATOR.to_string(),
                location_id: station.to_string(),
                minute,
                entries,
                exits,
            },
        )
        .collect();
    let mut tx = gw.state.store.begin().await.unwrap();
    gateway::store::flow::add(&mut tx, &counts, 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// The text of the element `css` finds, read in one script: the board re-renders with every
/// event, so an element WebDriver found may be gone when it asks for its text.
async fn live_text(c: &Client, css: &str) -> String {
    let script = format!(
        "const e = document.querySelector({}); return e ? e.innerText : null;",
        serde_json::to_string(css).unwrap()
    );
    match c.execute(&script, vec![]).await.unwrap() {
        Value::String(text) => text,
        other => panic!("no {css}: {other}"),
    }
}

/// Proves the station board and the operator's flow page as people use them, in Chromium:
/// the board opens on a phone that is not set up, shows each station's level against the usual
/// in words (and a meter), its entries and exits and its next train's delay, exactly as the
/// flow API answers; a tap at a gate shows on the open board by itself (the event stream); the
/// board in Chinese; with the network cut the reloaded board shows the last stations it saw and
/// says when they were current. The operator page lists the stations busiest first and draws a
/// station's last three hours (one point per minute) and its six-hour forecast with the API's
/// own values. axe-core finds nothing on either page, in English and Chinese.
async fn station_board_and_flow_page(db: Db) {
    use gateway::flow::{minute_of, WEEK_MINUTES};
    use turnpike_client::demo::METRO_OPERATOR;

    let Some((driver_bin, chromium, certutil)) = browser() else {
        return;
    };
    let Some(env) = turnpike_tests::Env::start_with(db, |c| {
        c.flow.stream_interval_ms = 300;
    })
    .await
    else {
        return;
    };
    let gw = &env.gw;
    let stops = demo_stops();
    let (busy, quiet) = (stops[0].as_str(), stops[1].as_str());

    // Four weeks of history: `busy` usually has 2 passages in this quarter hour, `quiet` 20; a
    // row five weeks back makes all four weeks count as history.
    let now = minute_of(turnpike_tests::now_ms() as i64);
    let mut rows = vec![(stops[3].as_str(), now - 5 * WEEK_MINUTES, 1, 0)];
    for k in 1..=4 {
        rows.push((busy, now - 5 - k * WEEK_MINUTES, 1, 1));
        rows.push((quiet, now - 3 - k * WEEK_MINUTES, 10, 10));
        // The next hours at `busy`, for its forecast.
        for h in 1..=3 {
            rows.push((busy, now + 60 * h - k * WEEK_MINUTES, 20 * h, 5 * h));
        }
    }
    flow_history(gw, &rows).await;
    // The operator's delay feed: the next train at `busy` is four minutes late.
    gw.state
        .store
        .put_stop_delays(
            METRO_OPERATOR,
            &[gateway::store::flow::StopDelay {
                stop_id: busy.to_string(),
                delay_s: 240,
                trip_id: None,
            }],
            turnpike_tests::now_ms() as i64,
        )
        .await
        .unwrap();
    // Three riders enter at `busy` now: 3 of a usual 2, 150 %.
    let entry = gw.terminal(&gate(busy, 1));
    let entry = &entry;
    let mut sequence = 0;
    let mut enter = move || {
        sequence += 1;
        let seq = sequence;
        async move {
            let rider = gw.rider().await;
            let answer = entry
                .tap(&tap(
                    seq,
                    Direction::Entry,
                    rider.ride_code(turnpike_tests::now_ms()).unwrap(),
                ))
                .await
                .unwrap();
            assert_eq!(answer.decision, Decision::Approve);
        }
    };
    for _ in 0..3 {
        enter().await;
    }

    let public_port: u16 = gw.public_base.rsplit(':').next().unwrap().parse().unwrap();
    let network = FaultProxy::start(([127, 0, 0, 1], public_port).into())
        .await
        .unwrap();
    let origin = format!("https://localhost:{}", network.addr.port());
    let home = env.scratch.0.join("browser-home");
    home_trusting(&certutil, &home, &gw.ca());
    let (_driver, port) =
        start_driver(&driver_bin, &home, &env.scratch.0.join("chromedriver.log")).await;
    let c = session(port, &chromium).await;
    let axe = axe_script();
    let axe = axe.as_deref();
    let _ = std::fs::remove_dir_all(screens_dir());

    // What the API says, to hold the pages to.
    let http = turnpike_client::tls::http_client(&gw.ca(), None).unwrap();
    let api = |path: String| {
        let http = http.clone();
        let base = gw.public_base.clone();
        async move {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.json::<Value>().await.unwrap()
        }
    };
    let operators = api("/v1/flow/operators".into()).await;
    assert!(
        operators["operators"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["operator_id"] == METRO_OPERATOR
                && o["mode"] == "metro"
                && o["stations"] == stops.len()),
        "{operators}"
    );
    let stations = api(format!("/v1/flow/stations?operator_id={METRO_OPERATOR}")).await;
    let name_of = |id: &str| -> String {
        stations["stations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["location_id"] == id)
            .unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let row = |id: &str, attr: &str| {
        format!("const r = document.querySelector('#stations tr[data-station=\"{id}\"]'); return r && r.dataset.{attr};")
    };

    // The board, on a phone that is not set up.
    c.goto(&format!("{origin}/app/#stations")).await.unwrap();
    until(
        &c,
        "the app to start",
        "return document.body.dataset.ready;",
    )
    .await;
    until(
        &c,
        "the live board",
        "return document.getElementById('stations-status').dataset.mode === 'live';",
    )
    .await;
    assert_eq!(
        until(&c, "busy's percent", &row(busy, "percent")).await,
        "150"
    );
    assert_eq!(
        until(&c, "quiet's percent", &row(quiet, "percent")).await,
        "0"
    );
    assert_eq!(
        until(&c, "a station usually empty", &row(&stops[2], "percent")).await,
        "null"
    );
    let busy_row = format!("#stations tr[data-station=\"{busy}\"]");
    let words = live_text(&c, &busy_row).await;
    for want in [
        name_of(busy).as_str(),
        "busier than usual",
        "150% of usual",
        "3 in\n0 out",
        "4 min late",
    ] {
        assert!(words.contains(want), "{want:?} not in {words:?}");
    }
    let words = live_text(&c, &format!("#stations tr[data-station=\"{quiet}\"]")).await;
    assert!(words.contains("quieter than usual"), "{words}");
    let words = live_text(&c, &format!("#stations tr[data-station=\"{}\"]", stops[2])).await;
    assert!(words.contains("usually empty at this time"), "{words}");
    screenshot(&c, "30-stations").await;
    assert_accessible(&c, axe, "station board").await;

    // A fourth rider enters: the open board follows by itself (200 %: much busier).
    enter().await;
    assert_eq!(until(&c, "the board to update", &format!(
        "const r = document.querySelector('#stations tr[data-station=\"{busy}\"]'); return r && r.dataset.entries === '4' && r.dataset.percent;"
    )).await, "200");
    assert!(live_text(&c, &busy_row)
        .await
        .contains("much busier than usual"));

    // In Chinese.
    click(&c, "#lang").await;
    let words = live_text(&c, &busy_row).await;
    assert!(
        words.contains("比平时挤很多") && words.contains("晚点 4 分钟"),
        "{words}"
    );
    screenshot(&c, "31-stations-zh").await;
    assert_accessible(&c, axe, "station board (Chinese)").await;
    click(&c, "#lang").await;

    // The network goes: the reloaded board comes from the phone, with the time it was current.
    until(
        &c,
        "the service worker",
        "return navigator.serviceWorker && navigator.serviceWorker.controller !== null || null;",
    )
    .await;
    reload_offline(&c, &network).await;
    until(
        &c,
        "the board from the phone",
        "return document.getElementById('stations-status').dataset.mode === 'cached';",
    )
    .await;
    assert_eq!(
        until(&c, "busy's last percent", &row(busy, "percent")).await,
        "200"
    );
    let status = live_text(&c, "#stations-status").await;
    assert!(
        status.starts_with("Offline: showing the stations as they were at"),
        "{status}"
    );
    screenshot(&c, "32-stations-offline").await;
    network.set(Fault::None);

    // The operator's page (on a desk's screen): busiest first, and one station's charts with
    // the API's values.
    c.set_window_size(1280, 1000).await.unwrap();
    c.goto(&format!("{origin}/flow/#{METRO_OPERATOR}/{busy}"))
        .await
        .unwrap();
    until(&c, "the flow page", "return document.body.dataset.ready;").await;
    until(
        &c,
        "the stations now",
        // `until` takes any number as an answer: 0 must be null to be waited out.
        "return document.querySelectorAll('#now-rows tr').length || null;",
    )
    .await;
    let order = c
        .execute(
            "return [...document.querySelectorAll('#now-rows tr')].map((r) => r.dataset.station);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(order[0], busy, "busiest first: {order}");
    assert_eq!(order.as_array().unwrap().len(), stops.len());
    until(
        &c,
        "the charts",
        "const d = document.getElementById('detail'); return !d.hidden && d.getAttribute('aria-busy') !== 'true' && document.querySelectorAll('#forecast-chart rect').length || null;",
    )
    .await;
    let drawn = c
        .execute(
            "return { points: [...document.querySelectorAll('#series-chart polyline')].map((p) => Number(p.dataset.points)), \
                      bars: [...document.querySelectorAll('#forecast-chart rect')].map((r) => Number(r.dataset.value)), \
                      title: document.getElementById('detail-h').textContent, \
                      summary: document.getElementById('series-summary').textContent };",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(drawn["points"], json!([180, 180]), "{drawn}");
    assert_eq!(drawn["title"], name_of(busy));
    let forecast = api(format!(
        "/v1/flow/stations/{busy}/forecast?operator_id={METRO_OPERATOR}&hours=6"
    ))
    .await;
    let want: Vec<f64> = forecast["hours"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| [h["entries"].as_f64().unwrap(), h["exits"].as_f64().unwrap()])
        .map(|v| (v * 10.0).round() / 10.0)
        .collect();
    assert_eq!(want.len(), 12);
    assert!(
        want.iter().any(|&v| v > 0.0),
        "a forecast from history: {want:?}"
    );
    let bars: Vec<f64> = drawn["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(bars, want, "{drawn}");
    let summary = drawn["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("4 entries and 0 exits in the last 180 minutes"),
        "{summary}"
    );
    screenshot(&c, "33-flow-page").await;
    c.execute(
        "document.getElementById('detail').scrollIntoView();",
        vec![],
    )
    .await
    .unwrap();
    screenshot(&c, "33-flow-page-charts").await;
    assert_accessible(&c, axe, "flow page").await;
    click(&c, "#lang").await;
    screenshot(&c, "34-flow-page-zh").await;
    assert_accessible(&c, axe, "flow page (Chinese)").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn station_board_and_flow_page_in_chromium_postgres() {
    let _one = ONE_BROWSER_AT_A_TIME.lock().await;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/rider-app-screens/flow");
    SCREENS
        .scope(dir, station_board_and_flow_page(Db::Postgres))
        .await;
}
