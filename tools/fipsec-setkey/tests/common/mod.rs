//! Shared helpers of the integration tests: where the recorded PF_KEY
//! sessions live.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

/// `<workspace>/../shared/testdata/pfkey`, else `/work/shared/testdata/pfkey`.
pub fn testdata() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let local = manifest.join("../../../shared/testdata/pfkey");
    if local.join("setkey").is_dir() {
        return local;
    }
    PathBuf::from("/work/shared/testdata/pfkey")
}

/// Every setkey case directory, sorted by name.
pub fn setkey_cases() -> Vec<PathBuf> {
    let dir = testdata().join("setkey");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 30,
        "expected the recorded setkey cases in {}",
        dir.display()
    );
    cases
}
