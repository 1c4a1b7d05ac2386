//! Nothing to import: this crate carries Alloy's example programs and
//! benchmark peers (`examples/` at the repository root) as its examples, so
//! they build with only the dependencies they use. See its `Cargo.toml`.
#![deny(clippy::undocumented_unsafe_blocks)]
