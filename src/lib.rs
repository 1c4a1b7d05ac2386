//! Alloy: move Apache Arrow data between Go and Rust on one machine.
//!
//! The streaming mode is a lock-free ring of slots in a shared-memory region
//! whose byte layout (`doc/LAYOUT.md`) both languages implement. A Go
//! program (`go/arrowshm`) or Rust writes record batches into slots; readers
//! get batches whose buffers point into the mapping:
//!
//! ```
//! use std::sync::Arc;
//! use alloy_shm::ring::Ring;
//! use arrow_array::{Int64Array, RecordBatch, RecordBatchReader, StringArray};
//!
//! # let name = format!("doc-crate-{}", std::process::id());
//! // Usually the consumer and the producer are two processes opening one name.
//! let ring = Ring::builder(&name).slot_count(8).slot_size(64 << 10).open_or_create()?;
//! let batch = RecordBatch::try_from_iter([
//!     ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
//!     ("name", Arc::new(StringArray::from(vec!["a", "b", "c"])) as _),
//! ])?;
//! let mut writer = ring.producer_builder().ipc_writer(batch.schema())?;
//! writer.write(&batch)?;                     // schema first, then the batch
//! let reader = ring.consumer_builder().record_batch_reader()?; // a late joiner: schema from the schema area
//! writer.write(&batch)?;
//! writer.close()?;                           // end of stream
//! assert_eq!(reader.schema(), batch.schema());
//! for got in reader {
//!     let got = got?;                        // zero-copy: arrays live in shared memory
//!     assert!(alloy_shm::arrow::in_mapping(&ring, &got));
//!     assert_eq!(got, batch);
//! }                                          // dropping a batch releases its slot
//! Ring::unlink(&name)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules, bottom up: [`layout`] (the bytes, no I/O), [`region`] (memfd or
//! `/dev/shm`), [`ring`] (producer, broadcast consumers and work-queue
//! groups over raw byte messages, builders, inspection), [`arrow`] (Arrow
//! IPC in slots, zero-copy readers), `aio` (tokio streams, feature `tokio`),
//! [`reqrep`] (request/reply over a pair of rings), `flight` (Arrow Flight
//! between machines, feature `flight`), and the one-shot cgo bridge
//! ([`ffi`], [`oneshot`]).
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
/// Arrow streams across machines over Arrow Flight (`serve-flight` gateway, `FlightWriter`).
#[cfg(all(feature = "flight", not(loom)))]
pub mod flight;
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
#[cfg(loom)]
#[path = "ring/redeliver.rs"]
#[allow(dead_code)]
mod redeliver_loom;
#[cfg(loom)]
#[path = "ring/seqlock.rs"]
#[allow(dead_code)]
mod seqlock_loom;
