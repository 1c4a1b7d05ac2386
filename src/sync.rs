//! Atomics used by the ring protocol: `std`'s normally, `loom`'s under
//! `--cfg loom` so the model checker can explore the protocol's interleavings.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
