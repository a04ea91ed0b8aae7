//! Benchmarks live in `benches/benches/`; run them with `cargo bench -p benches`.

use std::path::{Path, PathBuf};

/// The target directory a bench executable was built in (it lives in `<target>/<profile>/deps/`):
/// where `bench-results/` goes.
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .expect("current exe")
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}
