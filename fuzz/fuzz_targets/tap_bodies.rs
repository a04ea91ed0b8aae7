//! Tap and batch bodies as a gate sends them (JSON): decoding must never panic, and what
//! decodes re-encodes to something that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike_wire::api::{TapBatchRequest, TapRequest};

fuzz_target!(|data: &[u8]| {
    if let Ok(tap) = serde_json::from_slice::<TapRequest>(data) {
        let again: TapRequest = serde_json::from_slice(&serde_json::to_vec(&tap).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&tap).unwrap()
        );
    }
    if let Ok(batch) = serde_json::from_slice::<TapBatchRequest>(data) {
        let _ = serde_json::to_vec(&batch).unwrap();
    }
});
