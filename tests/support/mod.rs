//! What a test does when something it needs is missing (the Go CLI, root
//! for a second uid): one rule for every test crate that includes this
//! module (`mod support;`).
//!
//! Locally a missing prerequisite skips the test with a `SKIPPED` line on
//! stderr. Under CI (`CI` set) or with `ALLOY_REQUIRE_CROSS` set — which
//! `.ci/run` and the Makefile's test targets do — it fails the test
//! instead, so no test passes by not running.
#![allow(dead_code)] // each test crate uses the part it needs

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Whether a missing prerequisite is a failure: `CI` or
/// `ALLOY_REQUIRE_CROSS` is set to anything but empty, `0` or `false`.
pub fn required() -> bool {
    ["CI", "ALLOY_REQUIRE_CROSS"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !matches!(s.trim(), "" | "0" | "false")))
}

/// Reports that `test` cannot run because of `why`: panics when
/// [`required`], else prints a `SKIPPED` line. The caller returns after it.
pub fn skip(test: &str, why: &str) {
    if required() {
        panic!("{test} cannot run: {why} (CI / ALLOY_REQUIRE_CROSS is set, so this is a failure)");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// The Go CLI, `bin/alloy-go` at the repository root (built by `make
/// build`), or `None` after [`skip`] when it is missing.
pub fn go_cli(test: &str) -> Option<PathBuf> {
    let p = repo_root().join("bin/alloy-go");
    if p.is_file() {
        return Some(p);
    }
    skip(
        test,
        &format!("{} is missing (run make build)", p.display()),
    );
    None
}

/// The repository root (where `bin/` and `go/` are): the nearest directory
/// above the test crate's manifest that holds `go/go.mod` (this module is
/// shared by the root package and `crates/alloy-cli`).
pub fn repo_root() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| d.join("go/go.mod").is_file())
        .unwrap_or(manifest)
        .to_path_buf()
}

/// Polls `cond` every 2 ms until it holds; panics after 10 s naming `what`.
/// Tests wait for the condition they need, never for a fixed time.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}
