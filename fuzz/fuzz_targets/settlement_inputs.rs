//! Settlement's readers on a day's files: the first byte picks which input the rest replaces —
//! the gateway export, the provider's bill, or an operator's export — beside valid files for
//! the other two; the reconciliation must return a result or input errors, never panic.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use settlement::{reconcile, BillFile, DayWindow, OperatorFile, ReconConfig, ReconInput};

const GATEWAY: &str = include_str!("../seeds/seed-gateway.csv");
const BILL: &str = include_str!("../seeds/seed-bill.csv");
const OPERATOR: &str = include_str!("../seeds/seed-operator.csv");

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("turnpike-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let dir = dir();
    let mut files: [&[u8]; 3] = [GATEWAY.as_bytes(), BILL.as_bytes(), OPERATOR.as_bytes()];
    files[which as usize % 3] = rest;
    let paths: Vec<PathBuf> = ["gateway.csv", "bill.csv", "operator.csv"]
        .iter()
        .zip(files)
        .map(|(name, body)| {
            let path = dir.join(name);
            std::fs::write(&path, body).unwrap();
            path
        })
        .collect();
    let input = ReconInput {
        gateway: vec![paths[0].clone()],
        provider: vec![BillFile {
            path: paths[1].clone(),
            encoding: None,
        }],
        operators: vec![OperatorFile {
            operator_id: "hz-metro".into(),
            path: paths[2].clone(),
        }],
    };
    let mut config = ReconConfig::new(DayWindow::shanghai("2026-01-02".parse().unwrap()).unwrap());
    config.threads = 1;
    let _ = reconcile(&input, &config);
});
