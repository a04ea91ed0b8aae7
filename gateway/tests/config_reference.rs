//! `docs/config.md` is generated from the code: every option of the gateway's configuration,
//! its default (from `Config::default()`), its unit (from its name's suffix) and its meaning
//! (the field's doc comment in `gateway/src/config.rs` or `gateway/src/provider/mod.rs`). The
//! test fails when the file is stale or an option has no doc comment; `TURNPIKE_BLESS=1 cargo
//! test -p gateway --test config_reference` rewrites the file.

use std::collections::BTreeMap;
use std::path::Path;

use gateway::config::Config;

/// `struct name → [(field, doc comment)]`, in source order, from a Rust source file.
fn documented_fields(source: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut doc: Vec<String> = Vec::new();
    for line in source.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("pub struct ") {
            current = rest.strip_suffix(" {").map(str::to_string);
            doc.clear();
            continue;
        }
        let Some(name) = &current else { continue };
        if t == "}" {
            current = None;
        } else if let Some(d) = t.strip_prefix("///") {
            doc.push(d.trim().to_string());
        } else if let Some(field) = t.strip_prefix("pub ").and_then(|f| f.split(':').next()) {
            out.entry(name.clone())
                .or_default()
                .push((field.to_string(), doc.join(" ")));
            doc.clear();
        } else if !t.starts_with("#[") && !t.is_empty() {
            doc.clear();
        }
    }
    out
}

fn unit(field: &str) -> &'static str {
    for (suffix, unit) in [
        ("_ms", "milliseconds"),
        ("_s", "seconds"),
        ("_minutes", "minutes"),
        ("_per_s", "per second"),
        ("_bp", "basis points"),
        ("_file", "path"),
        ("_dir", "path"),
    ] {
        if field.ends_with(suffix) {
            return if suffix == "_s" && field.ends_with("_per_s") {
                "per second"
            } else {
                unit
            };
        }
    }
    match field {
        "dir" => "path",
        "terminal" | "public" | "ops" => "address:port",
        "url" | "notify_url" => "URL",
        f if f.ends_with("_max") || f.ends_with("_burst") || f == "writers" => "count",
        _ => "",
    }
}

fn reference() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = documented_fields(&std::fs::read_to_string(root.join("src/config.rs")).unwrap());
    docs.extend(documented_fields(
        &std::fs::read_to_string(root.join("src/provider/mod.rs")).unwrap(),
    ));
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let sections: Vec<(String, String)> = docs["Config"]
        .iter()
        .map(|(field, _)| (field.clone(), String::new()))
        .collect();
    let config_src = std::fs::read_to_string(root.join("src/config.rs")).unwrap();
    let mut out = String::from(
        "# Gateway configuration reference\n\n\
         Generated from the code by `gateway/tests/config_reference.rs` (`TURNPIKE_BLESS=1 cargo test -p gateway --test config_reference`): do not edit by hand.\n\n\
         The gateway reads an optional TOML file (`gateway serve --config FILE`), then environment variables \
         `TURNPIKE_<SECTION>__<OPTION>` (e.g. `TURNPIKE_DATABASE__URL`, `TURNPIKE_TAPS__WRITERS=4`) over it. \
         An unknown option, a value of the wrong type or an out-of-range one stops the process before it binds a port, \
         naming the option (`invalid type: string \"x\", expected usize in taps.writers`). \
         A minimal production file is `deploy/gateway.toml`.\n",
    );
    for (section, _) in &sections {
        // The section's struct: the type named on its `pub section: Type,` line of `Config`.
        let ty = config_src
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(&format!("pub {section}: ")))
            .and_then(|t| t.trim_end_matches(',').rsplit("::").next())
            .unwrap_or_else(|| panic!("no type for section {section}"));
        let fields = docs
            .get(ty)
            .unwrap_or_else(|| panic!("no documented struct {ty}"));
        out.push_str(&format!("\n## `[{section}]`\n\n| option | default | unit | meaning |\n| --- | --- | --- | --- |\n"));
        for (field, doc) in fields {
            assert!(
                !doc.is_empty(),
                "{section}.{field} ({ty}) has no doc comment: say what it means"
            );
            let default = defaults
                .get(section)
                .and_then(|s| s.get(field))
                .map(|v| v.to_string())
                .unwrap_or_else(|| panic!("no default for {section}.{field}"));
            out.push_str(&format!(
                "| `{section}.{field}` | `{}` | {} | {} |\n",
                default.replace('|', "\\|"),
                unit(field),
                doc.replace('|', "\\|")
            ));
        }
    }
    out
}

#[test]
fn the_configuration_reference_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    let want = reference();
    if std::env::var_os("TURNPIKE_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/config.md is stale: TURNPIKE_BLESS=1 cargo test -p gateway --test config_reference"
    );
}
