//! The demo world's names, which the demo, the simulator and the tests agree on: its two
//! operators, its fleet of terminals (named after the demo networks' stations and plazas), and
//! the merchant app id the demo's gateway has at the provider sandbox.

/// The demo's merchant app id at the provider sandbox.
pub const APP_ID: &str = "2021000000000001";

pub const METRO_OPERATOR: &str = "hz-metro";
pub const TOLL_OPERATOR: &str = "zj-expressway";

/// A station or plaza id as it appears in terminal ids (`gate-<id>-1`): anything but letters,
/// digits, `-` and `_` becomes `_`.
pub fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A station's ticket machine is `tvm-<station>` (its gates are `gate-<station>-<n>`).
pub const TICKET_MACHINE_PREFIX: &str = "tvm-";

/// Demo terminals: two gates and a ticket machine per metro station, one exit lane and one entry
/// lane per toll plaza.
pub fn demo_terminals() -> Vec<(String, &'static str, String)> {
    let mut out = Vec::new();
    for stop in turnpike_fares::demo_metro().stops() {
        for gate in 1..=2 {
            out.push((
                format!("gate-{}-{gate}", sanitize(&stop.id)),
                METRO_OPERATOR,
                stop.id.clone(),
            ));
        }
        out.push((
            format!("{TICKET_MACHINE_PREFIX}{}", sanitize(&stop.id)),
            METRO_OPERATOR,
            stop.id.clone(),
        ));
    }
    for plaza in turnpike_fares::demo_toll().plazas() {
        out.push((
            format!("booth-{}-in", sanitize(&plaza.id)),
            TOLL_OPERATOR,
            plaza.id.clone(),
        ));
        out.push((
            format!("booth-{}-out", sanitize(&plaza.id)),
            TOLL_OPERATOR,
            plaza.id.clone(),
        ));
    }
    out
}

pub fn demo_terminal_ids() -> Vec<String> {
    demo_terminals().into_iter().map(|(id, _, _)| id).collect()
}
