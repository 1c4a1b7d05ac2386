//! Test helpers shared by Alloy's test suites, benchmarks, examples and fuzz
//! targets, kept out of the `alloy-shm` library's public API (issue #15):
//!
//! - [`checked`]: the checked message format of `doc/TESTING.md` (also what
//!   `alloy produce --checked` / `alloy consume --checked` send and verify).
//! - [`testdata`]: deterministic random record batches over every Arrow type
//!   the encodings carry.
//!
//! It depends on arrow-rs only, never on `alloy-shm`, so the library's unit
//! tests can use it as a dev-dependency.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod checked;
pub mod testdata;
