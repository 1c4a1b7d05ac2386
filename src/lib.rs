//! Alloy: move Apache Arrow data between Go and Rust on one machine.
#![deny(unsafe_op_in_unsafe_fn)]

/// One-shot C ABI for Go (cgo): Arrow C Data Interface in, handler result out.
#[cfg(not(loom))]
pub mod ffi;
/// Named handlers the one-shot bridge calls, and the shared log format.
#[cfg(not(loom))]
pub mod oneshot;
