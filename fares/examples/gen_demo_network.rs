//! Regenerates the demo metro files in `fares/data/demo-metro/` from its `stations.csv`.
//!
//! Run after editing `stations.csv`: `cargo run -p turnpike-fares --example gen_demo_network`.
//! The demo tests fail while the shipped files differ from what this writes, so the GTFS feed,
//! the fare matrix and the distance rule cannot drift apart.

// A program beside the crate, not the crate: writing the files is its job (`clippy.toml`
// disallows file I/O in `fares` itself).
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/demo-metro");
    let stations = match std::fs::read_to_string(dir.join("stations.csv")) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("cannot read {}: {e}", dir.join("stations.csv").display());
            return ExitCode::FAILURE;
        }
    };
    let files = match turnpike_fares::demo::generate_demo_metro_files(&stations) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for (name, contents) in files {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, contents) {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
