//! Proves what ARCHITECTURE.md states about the crates and the metrics: the production gateway
//! links neither the provider sandbox nor settlement (nor the demo), the simulator speaks to a
//! gateway without linking it (read from the manifests' normal `[dependencies]`), and every
//! metric the gateway emits is documented.

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

/// Every `metrics::counter!`/`histogram!`/`gauge!` name in the gateway's sources.
fn emitted_metrics() -> Vec<String> {
    let mut names = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading the sources") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("a source file");
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
