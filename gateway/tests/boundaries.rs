//! Proves the crate boundaries ARCHITECTURE.md states: the production gateway links neither the
//! provider sandbox nor settlement (nor the demo), and the simulator speaks to a gateway without
//! linking it. Read from the manifests' normal `[dependencies]` (dev-dependencies may differ).

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
