//! Alloy: move Apache Arrow data between Go and Rust on one machine.
//!
//! The streaming mode is a lock-free ring of slots in a shared-memory region
//! whose byte layout (`doc/LAYOUT.md`) both languages implement:
//!
//! ```
//! use alloy_shm::ring::{Ring, RingConfig};
//!
//! let ring = Ring::create_anonymous(&RingConfig { slot_count: 4, slot_size: 256, ..Default::default() })?;
//! let mut rx = ring.subscribe()?;
//! let mut tx = ring.producer()?;
//! let mut slot = tx.reserve(5)?;          // write in place, no copy
//! slot[..5].copy_from_slice(b"arrow");
//! slot.publish(5, 0)?;
//! let msg = rx.recv()?.unwrap();          // a view into shared memory
//! assert_eq!(&*msg, b"arrow");
//! # Ok::<(), alloy_shm::ring::RingError>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

/// Async endpoints on tokio (cargo feature `tokio`).
#[cfg(all(feature = "tokio", not(loom)))]
pub mod aio;
/// Arrow over the ring: IPC mode (LAYOUT.md §8).
#[cfg(not(loom))]
pub mod arrow;
#[doc(hidden)]
pub mod checked;
/// One-shot C ABI for Go (cgo): Arrow C Data Interface in, handler result out.
#[cfg(not(loom))]
pub mod ffi;
pub mod layout;
/// Named handlers the one-shot bridge calls, and the shared log format.
#[cfg(not(loom))]
pub mod oneshot;
#[cfg(not(loom))]
pub mod region;
/// Request/reply channel over a pair of rings (LAYOUT.md §12).
#[cfg(not(loom))]
pub mod reqrep;
#[cfg(not(loom))]
pub mod ring;
#[cfg(not(loom))]
pub mod signal;
mod sync;

#[cfg(loom)]
#[path = "ring/proto.rs"]
#[allow(dead_code)]
mod proto_loom;
