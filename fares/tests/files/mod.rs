//! Reading the shipped data files from disk. That is the tests' job: the crate itself does no
//! I/O (its loaders take each file's name and text), and its `clippy.toml` disallows the calls
//! this module makes.

#![allow(dead_code)] // each test crate uses the part it needs
#![allow(clippy::disallowed_methods)] // this module is where the tests' file I/O lives

use std::path::{Path, PathBuf};

/// `fares/data/<name>`: `demo-metro` or `demo-toll`.
pub fn data_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

/// The text of `<dir>/<name>`, or `None` when there is no such file.
pub fn read(dir: &Path, name: &str) -> Option<String> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("reading {}: {e}", path.display()),
    }
}

/// Those of `names` that `dir` holds, as `(file name, text)`: what `GtfsFeed::from_files` takes.
pub fn read_present(dir: &Path, names: &[&'static str]) -> Vec<(&'static str, String)> {
    names
        .iter()
        .filter_map(|name| Some((*name, read(dir, name)?)))
        .collect()
}
