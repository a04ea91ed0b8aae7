//! What comes back from the provider: an answer body split into its signed text and signature,
//! a notification's parameters put in canonical order and verified, amounts in yuan. Must never
//! panic, and nothing unsigned verifies.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use turnpike_provider_wire::sign::{canonical_notification, Verifier};
use turnpike_provider_wire::{amount::parse_yuan, split_answer};

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        Verifier::from_text(include_str!(
            "../../provider-sandbox/dev-keys/platform-public.pem"
        ))
        .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for method in [
        "alipay.trade.pay",
        "alipay.trade.query",
        "alipay.trade.cancel",
    ] {
        if let Ok(answer) = split_answer(method, text) {
            if let Some(sign) = &answer.sign {
                assert!(!verifier().verify(&answer.inner_text, sign) || sign.len() > 100);
            }
        }
    }
    // A notification: `key=value` pairs, `&`-separated (already form-decoded).
    let params: Vec<(&str, &str)> = text
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let canonical = canonical_notification(params.iter().copied());
    let sign = params
        .iter()
        .find(|(k, _)| *k == "sign")
        .map(|(_, v)| *v)
        .unwrap_or("");
    let _ = verifier().verify(&canonical, sign);
    for (_, value) in &params {
        let _ = parse_yuan(value);
    }
});
