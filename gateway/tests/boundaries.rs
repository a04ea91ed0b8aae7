//! Proves what ARCHITECTURE.md states about the crates, the modules and the metrics: the
//! production gateway links neither the provider sandbox nor settlement (nor the demo), the
//! simulator speaks to a gateway without linking it (read from the manifests' normal
//! `[dependencies]`), only `store/` speaks SQL and reads SQLSTATE codes, only `provider/` speaks
//! the provider's wire format, and every metric the gateway emits is documented.

/// The package names in a manifest's `[dependencies]` table.
fn dependencies(manifest: &str) -> Vec<String> {
    let table: toml::Table = manifest.parse().expect("a valid Cargo.toml");
    table
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn the_gateway_links_no_sandbox_settlement_or_demo() {
    let deps = dependencies(include_str!("../Cargo.toml"));
    for forbidden in ["provider-sandbox", "settlement", "demo"] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "gateway depends on {forbidden}: {deps:?}"
        );
    }
}

#[test]
fn the_simulator_does_not_link_the_gateway() {
    let deps = dependencies(include_str!("../../terminal-sim/Cargo.toml"));
    assert!(!deps.iter().any(|d| d == "gateway"), "{deps:?}");
    let client = dependencies(include_str!("../../client/Cargo.toml"));
    assert!(!client.iter().any(|d| d == "gateway"), "{client:?}");
}

/// Every source file of the gateway: its path under `src/` and its text.
fn sources() -> Vec<(String, String)> {
    let files = files_under(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    )));
    assert!(files.len() > 20, "found only {} files", files.len());
    files
}

/// Every file under `root` (recursively): its path relative to `root`, with `/` separators, and
/// its text.
fn files_under(root: &std::path::Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading a directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).expect("a text file");
            files.push((name, text));
        }
    }
    files
}

/// The places in files outside `home` where any of `needles` occurs.
fn found_outside(home: &str, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, text) in sources() {
        if name.starts_with(home) {
            continue;
        }
        for needle in needles {
            for (line, _) in text.lines().enumerate().filter(|(_, l)| l.contains(needle)) {
                found.push(format!("src/{name}:{}: {needle}", line + 1));
            }
        }
    }
    found
}

#[test]
fn only_the_store_speaks_sql() {
    let found = found_outside(
        "store/",
        &[
            "sqlx::query",
            ".fetch_one(",
            ".fetch_all(",
            ".fetch_optional(",
            "as_database_error",
            "sqlx::Error::Protocol",
            "\"40001\"",
            "\"40P01\"",
            "\"23505\"",
        ],
    );
    assert!(found.is_empty(), "SQL outside store/: {found:#?}");
}

#[test]
fn only_the_provider_client_speaks_the_providers_format() {
    let found = found_outside(
        "provider/",
        &[
            "\"TRADE_",
            "\"WAIT_BUYER_PAY\"",
            "\"ACQ.",
            "\"alipay.",
            "\"notify_type\"",
            "\"notify_id\"",
            "\"trade_status\"",
            "\"dut_user_",
            "\"sub_code\"",
            "\"biz_content\"",
            "canonical_notification",
            "canonical_request",
        ],
    );
    assert!(
        found.is_empty(),
        "the provider's format outside provider/: {found:#?}"
    );
}

/// The tap rules are pure: `rules.rs` reaches no database, clock, file, network, task or
/// metric (it may name the network's types, which are data). Checked to fail with a planted
/// `crate::clock` use.
#[test]
fn the_tap_rules_do_no_io() {
    let (_, text) = sources()
        .into_iter()
        .find(|(path, _)| path == "rules.rs")
        .expect("gateway/src/rules.rs");
    let found: Vec<&str> = [
        "sqlx",
        "tokio",
        "async ",
        ".await",
        "std::fs",
        "std::net",
        "std::time",
        "SystemTime",
        "Instant",
        "crate::clock",
        "Clock",
        "now_ms",
        "metrics::",
        "tracing::",
        "crate::store",
    ]
    .into_iter()
    .filter(|needle| text.contains(needle))
    .collect();
    assert!(found.is_empty(), "I/O in the pure tap rules: {found:?}");
}

/// Every `metrics::counter!`/`histogram!`/`gauge!` name in the gateway's sources.
fn emitted_metrics() -> Vec<String> {
    let mut names = Vec::new();
    for (_, text) in sources() {
        {
            for kind in ["counter!(\"", "histogram!(\"", "gauge!(\""] {
                for (at, _) in text.match_indices(kind) {
                    let rest = &text[at + kind.len()..];
                    if let Some(end) = rest.find('"') {
                        names.push(rest[..end].to_string());
                    }
                }
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_emitted_metric_is_documented() {
    let architecture = include_str!("../../ARCHITECTURE.md");
    let names = emitted_metrics();
    assert!(names.len() > 10, "found only {names:?}");
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !architecture.contains(&format!("`{n}")))
        .collect();
    assert!(
        missing.is_empty(),
        "metrics missing from ARCHITECTURE.md: {missing:?}"
    );
}

/// The `charging` modules each module names through `super::<module>`.
fn charging_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let files = sources();
    let modules: Vec<String> = files
        .iter()
        .filter_map(|(name, _)| name.strip_prefix("charging/"))
        .filter_map(|f| f.strip_suffix(".rs"))
        .filter(|m| *m != "mod")
        .map(str::to_string)
        .collect();
    let mut graph = std::collections::BTreeMap::new();
    for (name, text) in &files {
        let Some(module) = name
            .strip_prefix("charging/")
            .and_then(|f| f.strip_suffix(".rs"))
        else {
            continue;
        };
        let uses: std::collections::BTreeSet<String> = modules
            .iter()
            .filter(|m| *m != module)
            .filter(|m| {
                text.contains(&format!("super::{m}::"))
                    || text.contains(&format!("super::{m};"))
                    || text.contains(&format!("super::{m}}}"))
                    || text.contains(&format!("use super::{m}"))
            })
            .cloned()
            .collect();
        graph.insert(module.to_string(), uses);
    }
    graph
}

/// The charging modules depend on each other in one direction only (flows → settle → the
/// shared rules in `mod.rs`), so each can be read without the ones that use it.
#[test]
fn charging_modules_have_no_cycles() {
    let graph = charging_graph();
    assert!(graph.len() >= 8, "{graph:?}");
    fn visit(
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|p| p == node) {
            panic!("a cycle: {:?} → {node}", &path[at..]);
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            visit(graph, next, path);
        }
        path.pop();
    }
    for node in graph.keys() {
        visit(&graph, node, &mut Vec::new());
    }
}

/// The SQL of every migration in a directory tree, comments removed.
fn migration_sql(dir: &std::path::Path) -> Vec<(String, String)> {
    files_under(dir)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".sql"))
        .map(|(name, text)| {
            let sql: String = text
                .lines()
                .map(|l| l.split("--").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            (format!("{}/{name}", dir.display()), sql)
        })
        .collect()
}

/// Money is integer minor units in storage, never a float (nor a decimal a driver might read
/// as one): no migration of the gateway, the sandbox or settlement declares such a column.
#[test]
fn no_stored_number_is_a_float() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut checked = 0;
    for crate_dir in ["gateway", "provider-sandbox", "settlement"] {
        for (path, sql) in migration_sql(&root.join(crate_dir).join("migrations")) {
            checked += 1;
            let upper = sql.to_ascii_uppercase();
            for word in upper.split(|c: char| !c.is_ascii_alphanumeric() && c != '_') {
                assert!(
                    !matches!(
                        word,
                        "REAL" | "FLOAT" | "FLOAT4" | "FLOAT8" | "DOUBLE" | "NUMERIC" | "DECIMAL"
                    ),
                    "{path} declares a {word} column"
                );
            }
        }
    }
    assert!(checked >= 10, "found {checked} migrations");
}

/// `turnpike-wire` is what every program agrees on: it depends on no crate of ours.
#[test]
fn wire_depends_on_nothing_of_ours() {
    let deps = dependencies(include_str!("../../wire/Cargo.toml"));
    let ours = [
        "gateway",
        "settlement",
        "provider-sandbox",
        "demo",
        "terminal-sim",
    ];
    for dep in &deps {
        assert!(
            !dep.starts_with("turnpike-") && !ours.contains(&dep.as_str()),
            "wire depends on {dep}"
        );
    }
}

/// No log line carries a ride code, a token, a payment code or a key: the fields and values of
/// every `tracing` macro call in the gateway are scanned for those names.
#[test]
fn logs_name_no_secret() {
    let forbidden = [
        "ride_code",
        "token",
        "auth_code",
        "payment_code",
        "private_key",
        "password",
    ];
    let mut calls = 0;
    for (name, text) in sources() {
        for (at, _) in text.match_indices("tracing::") {
            let call = &text[at..];
            let end = call.find(");").unwrap_or(call.len());
            let call = &call[..end];
            if !["info!", "warn!", "error!", "debug!", "trace!"]
                .iter()
                .any(|m| call.starts_with(&format!("tracing::{m}")))
            {
                continue;
            }
            calls += 1;
            // The fields and values, not the message text.
            let code: String = call.split('"').step_by(2).collect();
            for word in forbidden {
                assert!(
                    !code.contains(word),
                    "src/{name}: a log call names {word}: {call}"
                );
            }
        }
    }
    assert!(calls > 30, "found only {calls} log calls");
}
