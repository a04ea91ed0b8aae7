//! Wire compatibility with an official SDK: the Alipay Node.js SDK (`alipay-sdk`, pinned in
//! `tests/sdk/package.json` and `package-lock.json`) drives a real sandbox through pay, query,
//! refund, cancel and a user-paying trade, signing every request itself and verifying every
//! answer's signature itself (`tests/sdk/drive.mjs`). The test then checks the sandbox's own
//! state (trades, refunds, balances) against what the SDK was told.
//!
//! The SDK is installed once with `npm ci` into `<target>/tmp/sdk-node` and reused while the lock
//! file is unchanged. When Node.js or the install is unavailable the test is skipped with a
//! message, unless `TURNPIKE_REQUIRE_SDK=1` (set by `.ci/run`), which turns the skip into a
//! failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Db, Harness, Scratch, APP_ID};
use serde_json::{json, Value};

/// The committed SDK project: package.json, package-lock.json and the driver.
const SDK_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk");
const SDK_FILES: &[&str] = &["package.json", "package-lock.json"];
/// What a successful install leaves behind: the lock file it installed.
const INSTALLED_STAMP: &str = ".installed-lock.json";
/// A first install downloads about 12 MB; later runs reuse it.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// The driver makes about twenty calls against loopback; it takes about a second.
const DRIVE_TIMEOUT: Duration = Duration::from_secs(60);

fn sdk_required() -> bool {
    std::env::var("TURNPIKE_REQUIRE_SDK").as_deref() == Ok("1")
}

/// Where the SDK is installed: under the target directory, shared by every run.
fn sdk_env_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-node")
}

fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dev-keys")
}

/// What a bounded child process did.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with its output captured to files in `logs` (so a chatty child cannot block on a
/// full pipe), killing it when it outlives `timeout`.
fn run_bounded(
    mut cmd: Command,
    timeout: Duration,
    logs: &Path,
    tag: &str,
) -> Result<Finished, String> {
    let out_path = logs.join(format!("{tag}.stdout"));
    let err_path = logs.join(format!("{tag}.stderr"));
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let err = std::fs::File::create(&err_path).map_err(|e| e.to_string())?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("starting {tag}: {e}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{tag} did not finish within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Finished {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Makes sure the pinned SDK is installed in [`sdk_env_dir`]; returns the directory, or why not.
fn ensure_sdk(logs: &Path) -> Result<PathBuf, String> {
    let node = run_bounded(
        {
            let mut c = Command::new("node");
            c.arg("--version");
            c
        },
        Duration::from_secs(10),
        logs,
        "node-version",
    )
    .map_err(|e| format!("Node.js is not available: {e}"))?;
    if !node.status.success() {
        return Err(format!("`node --version` failed: {}", node.stderr));
    }
    let dir = sdk_env_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let lock = std::fs::read(Path::new(SDK_SOURCE).join("package-lock.json"))
        .map_err(|e| format!("reading the committed lock file: {e}"))?;
    let installed = std::fs::read(dir.join(INSTALLED_STAMP)).ok();
    let sdk_present = dir.join("node_modules/alipay-sdk/package.json").exists();
    if installed.as_deref() == Some(lock.as_slice()) && sdk_present {
        return Ok(dir);
    }
    let _ = std::fs::remove_file(dir.join(INSTALLED_STAMP));
    for file in SDK_FILES {
        std::fs::copy(Path::new(SDK_SOURCE).join(file), dir.join(file))
            .map_err(|e| format!("copying {file}: {e}"))?;
    }
    eprintln!(
        "installing the pinned alipay-sdk into {} (npm ci)",
        dir.display()
    );
    let mut npm = Command::new("npm");
    npm.current_dir(&dir).args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        "--loglevel=error",
    ]);
    let done = run_bounded(npm, INSTALL_TIMEOUT, logs, "npm-ci")?;
    if !done.status.success() {
        return Err(format!(
            "`npm ci` failed ({}):\n{}",
            done.status,
            tail(&done.stderr, 20)
        ));
    }
    std::fs::write(dir.join(INSTALLED_STAMP), &lock).map_err(|e| e.to_string())?;
    Ok(dir)
}

/// The version package.json pins.
fn pinned_sdk_version() -> String {
    let text = std::fs::read_to_string(Path::new(SDK_SOURCE).join("package.json")).unwrap();
    let package: Value = serde_json::from_str(&text).unwrap();
    package["dependencies"]["alipay-sdk"]
        .as_str()
        .expect("package.json pins alipay-sdk")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn official_node_sdk_drives_the_sandbox() {
    // Proves wire compatibility with the official Alipay Node.js SDK: its own request signing is
    // accepted, its own response-signature verification passes on every answer (and fails with
    // another platform key), and pay / query / refund / cancel / user-paying end in the state the
    // SDK was told about.
    let logs = Scratch::new("sdk-compat");
    let log_dir = logs.0.clone();
    let env_dir = match tokio::task::spawn_blocking(move || ensure_sdk(&log_dir))
        .await
        .unwrap()
    {
        Ok(dir) => dir,
        Err(why) => {
            if sdk_required() {
                panic!(
                    "the official SDK is required (TURNPIKE_REQUIRE_SDK=1) but unavailable: {why}"
                );
            }
            eprintln!(
                "\n*** SKIPPED sdk_compat: the official Alipay SDK is unavailable: {why}\n\
                 *** (set TURNPIKE_REQUIRE_SDK=1 to make this a failure)\n"
            );
            return;
        }
    };
    // The driver runs from the install directory so that its `import 'alipay-sdk'` resolves
    // there; it is copied on every run so edits to the committed script take effect.
    std::fs::copy(
        Path::new(SDK_SOURCE).join("drive.mjs"),
        env_dir.join("drive.mjs"),
    )
    .unwrap();

    let h = Harness::start(Db::Sqlite)
        .await
        .expect("SQLite always works");
    let buyer = h.create_user("100.00", None).await;
    let pay_code = h.issue_code(&buyer).await;
    let cancel_code = h.issue_code(&buyer).await;
    let patient = h.create_user("1000.00", Some("500.00")).await;
    let wait_code = h.issue_code(&patient).await;

    let mut node = Command::new("node");
    node.current_dir(&env_dir)
        .arg("drive.mjs")
        .args(["--gateway", &format!("{}/gateway.do", h.base_url)])
        .args(["--app-id", APP_ID])
        .arg("--app-private-key")
        .arg(keys_dir().join("app-private.pem"))
        .arg("--platform-public-key")
        .arg(keys_dir().join("platform-public.pem"))
        .args(["--pay-code", &pay_code])
        .args(["--cancel-code", &cancel_code])
        .args(["--wait-code", &wait_code])
        .args(["--prefix", "SDK_T"]);
    let log_dir = logs.0.clone();
    let started = Instant::now();
    let done = tokio::task::spawn_blocking(move || {
        run_bounded(node, DRIVE_TIMEOUT, &log_dir, "drive").expect("running the driver")
    })
    .await
    .unwrap();
    eprintln!("driver took {:?}", started.elapsed());
    let report: Value = serde_json::from_str(done.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "driver printed no JSON ({e}); status {}\nstdout:\n{}\nstderr:\n{}",
            done.status,
            done.stdout,
            tail(&done.stderr, 40)
        )
    });
    assert_eq!(
        report["mismatches"],
        json!([]),
        "the SDK saw answers that differ from the platform's:\n{report:#}\nstderr:\n{}",
        tail(&done.stderr, 40)
    );
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(done.status.success(), "driver exited {}", done.status);
    assert_eq!(report["sdk"]["name"], "alipay-sdk");
    assert_eq!(report["sdk"]["version"], pinned_sdk_version().as_str());

    // What the SDK was told, step by step.
    let steps = &report["steps"];
    for (step, code) in [
        ("pay", "10000"),
        ("query", "10000"),
        ("refund", "10000"),
        ("refund_repeat", "10000"),
        ("pay2", "10000"),
        ("cancel", "10000"),
        ("wait_pay", "10003"),
        ("wait_cancel", "10000"),
        ("refused_pay", "40004"),
        ("wrong_app_key", "40002"),
    ] {
        assert_eq!(steps[step]["code"], code, "{step}: {}", steps[step]);
    }
    assert_eq!(steps["pay"]["buyer_user_id"], buyer.as_str());
    assert_eq!(steps["wait_pay"]["buyer_user_id"], patient.as_str());
    assert_eq!(steps["query"]["trade_status"], "TRADE_SUCCESS");
    assert_eq!(steps["refund"]["fund_change"], "Y");
    assert_eq!(steps["refund_repeat"]["fund_change"], "N");
    assert_eq!(steps["cancel"]["action"], "refund");
    assert_eq!(steps["wait_query"]["trade_status"], "WAIT_BUYER_PAY");
    assert_eq!(steps["wait_cancel"]["action"], "close");
    assert_eq!(
        steps["refused_pay"]["sub_code"],
        "ACQ.PAYMENT_AUTH_CODE_INVALID"
    );
    assert_eq!(steps["wrong_app_key"]["sub_code"], "isv.invalid-signature");
    // Verification is really on: the SDK refused a correctly signed answer under another key.
    assert_eq!(steps["wrong_platform_key"]["rejected"], true, "{steps:#}");
    assert!(steps["wrong_platform_key"]["error"]
        .as_str()
        .unwrap()
        .contains("验签失败"));

    // The sandbox's own state agrees with what the SDK was told.
    let paid = h.trade(steps["pay"]["trade_no"].as_str().unwrap()).await;
    assert_eq!(paid["app_id"], APP_ID);
    assert_eq!(paid["out_trade_no"], "SDK_T_A");
    assert_eq!(paid["trade_status"], "TRADE_SUCCESS");
    assert_eq!(paid["total_amount"], "12.50");
    assert_eq!(paid["refunded_amount"], "2.50");
    // UTF-8 survived the SDK's form encoding and the signature check untouched.
    assert_eq!(paid["subject"], "G4 高速 12号出口 toll");
    let refunds = paid["refunds"].as_array().unwrap();
    assert_eq!(
        refunds.len(),
        1,
        "the repeated refund moved nothing: {paid}"
    );
    assert_eq!(refunds[0]["out_request_no"], "SDK_T_A-R1");
    assert_eq!(refunds[0]["refund_amount"], "2.50");
    assert_eq!(refunds[0]["reason"], "多收了 toll overcharge");

    let reversed = h.trade(steps["pay2"]["trade_no"].as_str().unwrap()).await;
    assert_eq!(reversed["trade_status"], "TRADE_CLOSED");
    assert_eq!(reversed["cancel_action"], "refund");
    assert_eq!(reversed["total_amount"], "7.00");

    let closed = h
        .trade(steps["wait_pay"]["trade_no"].as_str().unwrap())
        .await;
    assert_eq!(closed["trade_status"], "TRADE_CLOSED");
    assert_eq!(closed["cancel_action"], "close");
    assert_eq!(closed["paid_at_ms"], Value::Null);

    // 100.00 - 12.50 + 2.50 (refund) - 7.00 + 7.00 (reversal) = 90.00; the closed trade never
    // charged the patient buyer.
    assert_eq!(h.balance(&buyer).await, "90.00");
    assert_eq!(h.balance(&patient).await, "1000.00");
}
