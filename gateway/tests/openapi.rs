// Proves that docs/openapi.json is an OpenAPI 3.1 description of the gateway's three listeners that documents exactly the routes the routers register (checked against both a literal list and the router sources), every error code the API code can return, and every reason a tap can be declined for.

use std::collections::BTreeSet;

use serde_json::Value;

const SPEC: &str = include_str!("../../docs/openapi.json");

/// Listener names, as the servers' `x-listener` extension spells them.
const TERMINAL: &str = "terminal";
const PUBLIC: &str = "public";
const OPS: &str = "ops";

/// Every route the gateway registers, taken from the routers:
/// (listener, method, path, security scheme the operation must accept; `None` = unauthenticated).
const ROUTES: &[(&str, &str, &str, Option<&str>)] = &[
    // gateway/src/api/terminal.rs
    (TERMINAL, "post", "/v1/taps", Some("mutualTLS")),
    (TERMINAL, "post", "/v1/taps/batch", Some("mutualTLS")),
    (TERMINAL, "get", "/v1/terminal/keys", Some("mutualTLS")),
    (TERMINAL, "get", "/v1/terminal/deny-list", Some("mutualTLS")),
    (TERMINAL, "get", "/healthz", Some("mutualTLS")),
    // gateway/src/api/toll.rs
    (TERMINAL, "post", "/v1/toll/exits", Some("mutualTLS")),
    // gateway/src/api/tickets.rs (terminal_router)
    (TERMINAL, "post", "/v1/tickets/orders", Some("mutualTLS")),
    (
        TERMINAL,
        "get",
        "/v1/tickets/orders/{order_id}",
        Some("mutualTLS"),
    ),
    (
        TERMINAL,
        "get",
        "/v1/tickets/orders/{order_id}/qr.svg",
        Some("mutualTLS"),
    ),
    (
        TERMINAL,
        "get",
        "/v1/tickets/orders/{order_id}/qr.png",
        Some("mutualTLS"),
    ),
    // gateway/src/api/rider.rs
    (PUBLIC, "post", "/v1/riders", None),
    (
        PUBLIC,
        "post",
        "/v1/riders/me/credentials",
        Some("riderToken"),
    ),
    (PUBLIC, "get", "/v1/riders/me/journeys", Some("riderToken")),
    (PUBLIC, "get", "/v1/riders/me/deny-list", Some("riderToken")),
    (
        PUBLIC,
        "get",
        "/v1/riders/me/daily-caps",
        Some("riderToken"),
    ),
    // gateway/src/api/admin.rs
    (PUBLIC, "post", "/v1/admin/operators", Some("adminToken")),
    (PUBLIC, "get", "/v1/admin/operators", Some("adminToken")),
    (
        PUBLIC,
        "put",
        "/v1/admin/operators/{operator_id}/fares",
        Some("adminToken"),
    ),
    (PUBLIC, "post", "/v1/admin/terminals", Some("adminToken")),
    (PUBLIC, "get", "/v1/admin/terminals", Some("adminToken")),
    (
        PUBLIC,
        "post",
        "/v1/admin/terminals/{terminal_id}/revoke",
        Some("adminToken"),
    ),
    (
        PUBLIC,
        "post",
        "/v1/admin/terminals/{terminal_id}/reinstate",
        Some("adminToken"),
    ),
    (PUBLIC, "post", "/v1/admin/deny-list", Some("adminToken")),
    (PUBLIC, "get", "/v1/admin/deny-list", Some("adminToken")),
    (
        PUBLIC,
        "delete",
        "/v1/admin/deny-list/{kind}/{subject_id}",
        Some("adminToken"),
    ),
    (PUBLIC, "get", "/v1/admin/issuer-keys", Some("adminToken")),
    (
        PUBLIC,
        "post",
        "/v1/admin/issuer-keys/stage",
        Some("adminToken"),
    ),
    (
        PUBLIC,
        "post",
        "/v1/admin/issuer-keys/rotate",
        Some("adminToken"),
    ),
    // gateway/src/api/payments.rs (rider_router)
    (PUBLIC, "get", "/v1/riders/me/wallet", Some("riderToken")),
    (PUBLIC, "delete", "/v1/riders/me/wallet", Some("riderToken")),
    (
        PUBLIC,
        "post",
        "/v1/riders/me/wallet/signing",
        Some("riderToken"),
    ),
    (PUBLIC, "get", "/v1/riders/me/charges", Some("riderToken")),
    (
        PUBLIC,
        "post",
        "/v1/riders/me/arrears/retry",
        Some("riderToken"),
    ),
    (PUBLIC, "post", "/v1/riders/me/disputes", Some("riderToken")),
    (PUBLIC, "get", "/v1/riders/me/disputes", Some("riderToken")),
    (PUBLIC, "get", "/v1/riders/me/real-name", Some("riderToken")),
    (
        PUBLIC,
        "post",
        "/v1/riders/me/real-name",
        Some("riderToken"),
    ),
    // gateway/src/api/tickets.rs (rider_router)
    (PUBLIC, "post", "/v1/riders/me/tickets", Some("riderToken")),
    (PUBLIC, "get", "/v1/riders/me/tickets", Some("riderToken")),
    (
        PUBLIC,
        "get",
        "/v1/riders/me/tickets/{order_id}",
        Some("riderToken"),
    ),
    // gateway/src/api/payments.rs (admin_router)
    (PUBLIC, "get", "/v1/admin/charges", Some("adminToken")),
    (PUBLIC, "get", "/v1/admin/ledger", Some("adminToken")),
    (PUBLIC, "post", "/v1/admin/refunds", Some("adminToken")),
    (PUBLIC, "get", "/v1/admin/disputes", Some("adminToken")),
    (
        PUBLIC,
        "post",
        "/v1/admin/disputes/{dispute_id}/decision",
        Some("adminToken"),
    ),
    // gateway/src/api/tickets.rs (notify_router): authenticated by the provider's signature.
    (PUBLIC, "post", "/v1/provider/notify", None),
    // gateway/src/api/flow.rs: live passenger flow, public.
    (PUBLIC, "get", "/v1/flow/operators", None),
    (PUBLIC, "get", "/v1/flow/stations", None),
    (PUBLIC, "get", "/v1/flow/stations/{location_id}", None),
    (
        PUBLIC,
        "get",
        "/v1/flow/stations/{location_id}/forecast",
        None,
    ),
    (PUBLIC, "get", "/v1/flow/stream", None),
    (
        PUBLIC,
        "post",
        "/v1/admin/flow/trip-updates",
        Some("adminToken"),
    ),
    // gateway/src/api/app.rs: the rider app's files.
    (PUBLIC, "get", "/app/", None),
    (PUBLIC, "get", "/app/app.css", None),
    (PUBLIC, "get", "/app/app.js", None),
    (PUBLIC, "get", "/app/ridecode.js", None),
    (PUBLIC, "get", "/app/i18n.js", None),
    (PUBLIC, "get", "/app/dom.js", None),
    (PUBLIC, "get", "/app/flow.js", None),
    (PUBLIC, "get", "/app/qrcode-generator.mjs", None),
    (PUBLIC, "get", "/app/manifest.webmanifest", None),
    (PUBLIC, "get", "/app/icon.svg", None),
    (PUBLIC, "get", "/app/sw.js", None),
    (PUBLIC, "get", "/flow/", None),
    (PUBLIC, "get", "/flow/operator.js", None),
    (PUBLIC, "get", "/flow/operator.css", None),
    // gateway/src/api/ops.rs
    (OPS, "get", "/metrics", None),
    (OPS, "get", "/healthz", None),
    (OPS, "get", "/readyz", None),
];

/// The router sources and the listener each one is served on (see `Gateway::run_until`):
/// (file, the router function whose routes are meant, `None` = every route of the file,
/// listener, source).
const ROUTER_SOURCES: &[(&str, Option<&str>, &str, &str)] = &[
    (
        "src/api/terminal.rs",
        None,
        TERMINAL,
        include_str!("../src/api/terminal.rs"),
    ),
    (
        "src/api/rider.rs",
        None,
        PUBLIC,
        include_str!("../src/api/rider.rs"),
    ),
    (
        "src/api/admin.rs",
        None,
        PUBLIC,
        include_str!("../src/api/admin.rs"),
    ),
    (
        "src/api/toll.rs",
        None,
        TERMINAL,
        include_str!("../src/api/toll.rs"),
    ),
    (
        "src/api/payments.rs",
        None,
        PUBLIC,
        include_str!("../src/api/payments.rs"),
    ),
    (
        "src/api/tickets.rs",
        Some("terminal_router"),
        TERMINAL,
        include_str!("../src/api/tickets.rs"),
    ),
    (
        "src/api/tickets.rs",
        Some("rider_router"),
        PUBLIC,
        include_str!("../src/api/tickets.rs"),
    ),
    (
        "src/api/tickets.rs",
        Some("notify_router"),
        PUBLIC,
        include_str!("../src/api/tickets.rs"),
    ),
    (
        "src/api/flow.rs",
        None,
        PUBLIC,
        include_str!("../src/api/flow.rs"),
    ),
    (
        "src/api/app.rs",
        None,
        PUBLIC,
        include_str!("../src/api/app.rs"),
    ),
    (
        "src/api/ops.rs",
        None,
        OPS,
        include_str!("../src/api/ops.rs"),
    ),
];

/// Sources that turn requests into JSON error codes (ops.rs answers in plain text only).
const ERROR_SOURCES: &[(&str, &str)] = &[
    ("src/api/mod.rs", include_str!("../src/api/mod.rs")),
    (
        "src/api/terminal.rs",
        include_str!("../src/api/terminal.rs"),
    ),
    ("src/api/rider.rs", include_str!("../src/api/rider.rs")),
    ("src/api/admin.rs", include_str!("../src/api/admin.rs")),
    ("src/api/toll.rs", include_str!("../src/api/toll.rs")),
    (
        "src/api/payments.rs",
        include_str!("../src/api/payments.rs"),
    ),
    // Its notification endpoint answers in plain text (`success`/`fail`), not with codes.
    ("src/api/tickets.rs", include_str!("../src/api/tickets.rs")),
    ("src/api/flow.rs", include_str!("../src/api/flow.rs")),
    ("src/limits.rs", include_str!("../src/limits.rs")),
    ("src/error.rs", include_str!("../src/error.rs")),
];

const METHODS: &[&str] = &[
    "get", "post", "put", "delete", "patch", "head", "options", "trace",
];

fn spec() -> Value {
    serde_json::from_str(SPEC).expect("docs/openapi.json is valid JSON")
}

fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &spec["paths"][path][method];
    assert!(
        op.is_object(),
        "docs/openapi.json does not document {} {path}",
        method.to_uppercase()
    );
    op
}

/// The listeners a path is served on: its path-level servers, else the document's.
fn listeners_of(spec: &Value, path: &str) -> BTreeSet<String> {
    let servers = spec["paths"][path]["servers"]
        .as_array()
        .or_else(|| spec["servers"].as_array())
        .expect("servers is an array");
    servers
        .iter()
        .map(|s| {
            s["x-listener"]
                .as_str()
                .unwrap_or_else(|| panic!("a server of {path} has no x-listener"))
                .to_string()
        })
        .collect()
}

/// Every (method, path) the description documents.
fn documented_operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths is an object") {
        for method in METHODS {
            if item.get(*method).is_some() {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn is_openapi_3_1_with_the_three_listeners() {
    let spec = spec();
    let version = spec["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1."), "openapi is {version}, not 3.1");
    let servers = spec["servers"].as_array().expect("servers is an array");
    let listeners: Vec<&str> = servers
        .iter()
        .map(|s| {
            s["x-listener"]
                .as_str()
                .expect("each server has x-listener")
        })
        .collect();
    assert_eq!(listeners, [TERMINAL, PUBLIC, OPS]);
    for server in servers {
        let url = server["url"].as_str().expect("server url");
        let expected_scheme = if server["x-listener"] == OPS {
            "http://"
        } else {
            "https://"
        };
        assert!(url.starts_with(expected_scheme), "{url}");
    }
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["mutualTLS"]["type"], "mutualTLS");
    assert_eq!(schemes["riderToken"]["scheme"], "bearer");
    assert_eq!(schemes["adminToken"]["scheme"], "bearer");
}

#[test]
fn every_listed_route_is_documented_on_its_listener_with_its_security() {
    let spec = spec();
    for &(listener, method, path, security) in ROUTES {
        let op = operation(&spec, method, path);
        assert!(
            listeners_of(&spec, path).contains(listener),
            "{} {path} is not documented on the {listener} listener",
            method.to_uppercase()
        );
        let requirements = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} has no security array"));
        let accepts = |scheme: Option<&str>| {
            requirements.is_empty() && scheme.is_none()
                || requirements.iter().any(|r| match scheme {
                    Some(name) => r.get(name).is_some(),
                    None => r.as_object().is_some_and(|o| o.is_empty()),
                })
        };
        assert!(
            accepts(security),
            "{} {path}: security must accept {security:?}, is {requirements:?}",
            method.to_uppercase()
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents no success response"
        );
    }
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|&(_, m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let documented = documented_operations(&spec);
    let extra: Vec<_> = documented.difference(&listed).collect();
    assert!(
        extra.is_empty(),
        "documented but not registered by any router: {extra:?}"
    );
}

#[test]
fn router_sources_register_exactly_the_listed_routes() {
    let mut scanned = BTreeSet::new();
    // Per file: every route it registers, and those its listed router functions register.
    let mut by_file: std::collections::BTreeMap<&str, (BTreeSet<_>, BTreeSet<_>)> =
        Default::default();
    for &(file, router, listener, source) in ROUTER_SOURCES {
        assert!(
            !source.contains(".nest(") && !source.contains(".nest_service("),
            "{file} nests routers; teach this test the prefix"
        );
        let scope = match router {
            Some(name) => fn_body(source, name)
                .unwrap_or_else(|| panic!("no `fn {name}(…) {{ … }}` in {file}")),
            None => strip_comments(source),
        };
        let routes = routes_in(&scope);
        assert!(
            !routes.is_empty(),
            "no .route(…) found in {file} ({router:?})"
        );
        let (all, covered) = by_file.entry(file).or_default();
        all.extend(routes_in(source));
        for (method, path) in routes {
            covered.insert((method.clone(), path.clone()));
            scanned.insert((listener.to_string(), method, path));
        }
    }
    for (file, (all, covered)) in &by_file {
        let uncovered: Vec<_> = all.difference(covered).collect();
        assert!(
            uncovered.is_empty(),
            "{file} registers routes outside its listed router functions: {uncovered:?}"
        );
    }
    let listed: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|&(l, m, p, _)| (l.to_string(), m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = scanned.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&scanned).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "routers and ROUTES differ: registered but not listed {missing:?}; listed but not registered {stale:?}"
    );
    // The same comparison by path alone, against the description itself: axum's `{param}` path
    // syntax is OpenAPI's.
    let spec = spec();
    let scanned_paths: BTreeSet<String> = scanned.into_iter().map(|(_, _, p)| p).collect();
    let documented_paths: BTreeSet<String> = spec["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        scanned_paths, documented_paths,
        "paths in the routers vs docs/openapi.json"
    );
}

#[test]
fn every_decline_reason_is_in_the_tap_response_enum() {
    let spec = spec();
    let schemas = &spec["components"]["schemas"];
    let reason = &schemas["TapResponse"]["properties"]["reason"];
    let enum_of = |schema: &Value| -> BTreeSet<String> {
        schema["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .map(|v| v.as_str().expect("string enum").to_string())
            .collect()
    };
    let target = reason["allOf"][0]["$ref"]
        .as_str()
        .or_else(|| reason["$ref"].as_str());
    let documented = match target {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .expect("a local schema");
            enum_of(&schemas[name])
        }
        None => enum_of(reason),
    };

    // The reasons are enums (the ride-code checks' `RejectReason`, the rules' `TapDecline`),
    // listed together by `decline_reasons`.
    let known: BTreeSet<String> = turnpike_wire::api::decline_reasons()
        .map(str::to_string)
        .collect();
    for code in &known {
        assert!(
            documented.contains(code),
            "decline reason {code} is missing from TapResponse.reason"
        );
    }
    let stale: Vec<_> = documented.difference(&known).collect();
    assert!(
        stale.is_empty(),
        "documented decline reasons nothing produces: {stale:?}"
    );
}

/// The error codes of one error response (its schema must be an `ErrorBody` with a code enum).
fn error_codes(response: &Value, what: &str) -> Vec<String> {
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        return Vec::new();
    };
    assert_eq!(
        schema["allOf"][0]["$ref"], "#/components/schemas/ErrorBody",
        "{what} is not an ErrorBody"
    );
    let codes = schema["properties"]["error"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{what} lists no error codes"));
    codes
        .iter()
        .map(|c| c.as_str().expect("code").to_string())
        .collect()
}

#[test]
fn every_error_code_the_api_returns_is_documented() {
    let spec = spec();
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(op) = item.get(*method) else {
                continue;
            };
            for (status, response) in op["responses"].as_object().expect("responses") {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                documented.extend(error_codes(response, &format!("{method} {path} {status}")));
            }
        }
    }
    // Answers of no operation: the routers' fallbacks for unknown paths and wrong methods
    // (`api::with_json_fallbacks`) are reusable responses in components.
    for (name, response) in spec["components"]["responses"]
        .as_object()
        .expect("components.responses documents the fallback answers")
    {
        documented.extend(error_codes(
            response,
            &format!("components.responses.{name}"),
        ));
    }
    for &(file, source) in ERROR_SOURCES {
        let code = strip_comments(source);
        let mut found = literals_after(&code, "unprocessable(");
        found.extend(literals_after(&code, "bad_request("));
        // `unavailable("code", …)` (503); the input rules' `decimal_id("code", …)`,
        // `check_input("code", …)` and `check_reason("code", …)` (422).
        found.extend(literals_after(&code, "unavailable("));
        found.extend(literals_after(&code, "decimal_id("));
        found.extend(literals_after(&code, "check_input("));
        found.extend(literals_after(&code, "check_reason("));
        found.extend(literals_after(&code, "code: "));
        found.extend(status_code_pairs(&code));
        for error_code in found {
            assert!(
                documented.contains(&error_code),
                "error code {error_code} (from {file}) is not documented in any error response"
            );
        }
    }
}

#[test]
fn request_bodies_reject_unknown_fields() {
    // Every request type of the gateway is `#[serde(deny_unknown_fields)]`.
    let spec = spec();
    for (method, path) in documented_operations(&spec) {
        let op = &spec["paths"][&path][&method];
        let Some(body) = op.get("requestBody") else {
            continue;
        };
        // The provider's notifications are form-encoded parameters and an operator's
        // TripUpdates feed is GTFS-Realtime protobuf, not gateway request types.
        let Some(json) = body["content"].get("application/json") else {
            assert!(
                path == "/v1/provider/notify" || path == "/v1/admin/flow/trip-updates",
                "{method} {path}: request body is not JSON"
            );
            continue;
        };
        let target = json["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: request body is not a named schema"));
        let name = target.trim_start_matches("#/components/schemas/");
        assert_eq!(
            spec["components"]["schemas"][name]["additionalProperties"],
            Value::Bool(false),
            "{name} (request of {method} {path}) must say additionalProperties: false"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A small scanner for the router sources: good enough for `.route("…", get(h).post(h2))`.

/// The source without whole-line `//` comments.
fn strip_comments(source: &str) -> String {
    source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The source with every string literal's contents replaced by spaces (same byte offsets).
fn blank_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in code.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                out.push(c);
                continue;
            }
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        } else {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

/// The string literal at the start of `text` (after whitespace), and the text after it.
fn string_literal(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start();
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if escaped {
            value.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return Some((value, &body[i + 1..]));
        } else {
            value.push(c);
        }
    }
    None
}

/// Every string literal that directly follows `prefix` (whitespace allowed in between).
fn literals_after(code: &str, prefix: &str) -> Vec<String> {
    code.match_indices(prefix)
        .filter_map(|(at, _)| string_literal(&code[at + prefix.len()..]).map(|(s, _)| s))
        .collect()
}

/// The body (braces included) of `fn name(…) … { … }` in a source, comments stripped.
fn fn_body(source: &str, name: &str) -> Option<String> {
    let code = strip_comments(source);
    let blank = blank_strings(&code);
    let start = blank.find(&format!("fn {name}("))?;
    let open = start + blank[start..].find('{')?;
    let mut depth = 0;
    for (i, c) in blank[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return Some(code[open..=open + i].to_string());
        }
    }
    None
}

/// The codes of `(StatusCode::NAME, "code")` pairs (the fixed mapping in error.rs).
fn status_code_pairs(code: &str) -> Vec<String> {
    let prefix = "(StatusCode::";
    code.match_indices(prefix)
        // `plain(StatusCode::…, "fail")`: a plain-text body (the provider's notifications), no code.
        .filter(|(at, _)| !code[..*at].ends_with("plain"))
        .filter_map(|(at, _)| {
            let rest = &code[at + prefix.len()..];
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_uppercase() || c == '_');
            let rest = rest.strip_prefix(',')?;
            string_literal(rest).map(|(s, _)| s)
        })
        .collect()
}

/// (method, path) of every `.route("path", method(handler)…)` in a router source.
fn routes_in(source: &str) -> Vec<(String, String)> {
    let code = strip_comments(source);
    let blank = blank_strings(&code);
    let mut out = Vec::new();
    for (at, call) in blank.match_indices(".route(") {
        let start = at + call.len();
        let (path, _) = string_literal(&code[start..])
            .unwrap_or_else(|| panic!("`.route(` not followed by a path literal"));
        // The arguments of this `.route(…)` call, up to its closing parenthesis.
        let mut depth = 1;
        let mut end = start;
        for (i, c) in blank[start..].char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = start + i;
                break;
            }
        }
        assert!(end > start, "unbalanced .route(\"{path}\"");
        let args = &blank[start..end];
        let mut methods = Vec::new();
        for method in METHODS {
            let needle = format!("{method}(");
            for (i, _) in args.match_indices(&needle) {
                let before = args[..i].chars().next_back();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    methods.push(method.to_string());
                }
            }
        }
        assert!(
            !methods.is_empty(),
            "no method router (get(…), post(…), …) found in .route(\"{path}\", …)"
        );
        for method in methods {
            out.push((method, path.clone()));
        }
    }
    out
}
