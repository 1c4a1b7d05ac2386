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
//! use alloy_shm::arrow_array::{Int64Array, RecordBatch, RecordBatchReader, StringArray};
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
//! Ring::remove(&name)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Concepts
//!
//! The same words name the same things in both languages (the Go packages
//! `ring` and `arrowshm` describe them too):
//!
//! - **Ring**: a shared-memory region ([`ring::Ring`]) that several
//!   processes map: a header, a table of consumers, a schema area and a
//!   fixed number of equal **slots**. It is a file under `/dev/shm`
//!   ([`ring::Ring::builder`], removed with [`ring::Ring::remove`]) or an
//!   anonymous sealed memfd ([`ring::Ring::anonymous_builder`]) whose
//!   descriptor is inherited or passed over a Unix socket.
//! - **Slot**: holds one message (at most `slot_size` bytes, never split
//!   across slots). Messages get increasing sequence numbers; message `n`
//!   lives in slot `n % slot_count`.
//! - **Producer**: the one writer of a ring ([`ring::Producer`], built by
//!   [`ring::Ring::producer_builder`]): it reserves a slot, writes in place
//!   and publishes; a second live producer is refused. [`arrow::IpcWriter`]
//!   writes record batches through one (a batch too large for a slot is
//!   split by rows).
//! - **Consumer** and **lease**: a consumer ([`ring::Consumer`], built by
//!   [`ring::Ring::consumer_builder`]) receives a [`ring::Lease`] per
//!   message: a read-only view of the slot, no copy. The slot is reused only
//!   once every lease on it is dropped. [`arrow::IpcReader`] turns leases
//!   into record batches whose arrays point into the slot and own the lease.
//! - **Broadcast vs queue**: a broadcast consumer
//!   ([`ring::ConsumerBuilder::broadcast`], the default) receives every
//!   message; members of one work-queue group
//!   ([`ring::ConsumerBuilder::queue`]) share the messages, each going to
//!   exactly one member (a dead member's messages are redelivered).
//! - **Back-pressure**: the producer never overwrites a message a consumer
//!   has not released: when the slowest consumer is a whole ring behind, its
//!   [`ring::Backpressure`] blocks (optionally with a timeout:
//!   [`ring::SendError::Timeout`]) or fails at once
//!   ([`ring::SendError::Full`]). A producer built with
//!   [`ring::ProducerBuilder::require_consumers`] refuses to publish into a
//!   ring nobody reads ([`ring::SendError::NoConsumers`]);
//!   [`ring::Producer::wait_for_consumers`] waits for them with a deadline.
//! - **Late join**: a consumer sees what is published after it joins (plus
//!   up to [`ring::ConsumerBuilder::history`] earlier messages). An Arrow
//!   reader that joins late reads the schema from the schema area; a
//!   dictionary it missed is sent again when it changes.
//! - **End of stream**: [`ring::Producer::close`] (or
//!   [`arrow::IpcWriter::close`]) ends the stream: consumers drain it and
//!   then get `Ok(None)`. A producer that dies instead is noticed within
//!   about 100 ms: [`ring::RecvError::ProducerGone`] after everything it
//!   published. An ended ring carries a new stream only if a producer asks
//!   for one ([`ring::ProducerBuilder::new_stream`]); otherwise attaching
//!   fails with [`ring::AttachError::StreamEnded`].
//! - **Holding batches**: a batch read in place holds its slot until it (and
//!   every array sliced from it) is dropped, and the producer cannot get more
//!   than `slot_count` messages ahead of the oldest held one. To keep batches,
//!   copy them: [`arrow::IpcReader::with_copy`] copies every batch (one copy,
//!   the slot released at once), [`arrow::copy_batch`] copies the ones you
//!   keep. A consumer stalled by its own leases gets
//!   [`ring::RecvError::RetentionStall`] after
//!   [`ring::ConsumerBuilder::held_lease_timeout`] instead of waiting for ever.
//!
//! # Deadlines
//!
//! Every wait has a bounded form: [`ring::Consumer::recv_timeout`],
//! [`arrow::IpcReader::next_batch_timeout`], the schema wait
//! [`ring::ConsumerBuilder::record_batch_reader_timeout`], the producer's
//! `Backpressure::Block { timeout }`, [`ring::Producer::wait_for_consumers`],
//! and per-call deadlines in [`reqrep`]. The async types of `aio` (feature
//! `tokio`: `AsyncIpcReader`, `AsyncIpcWriter`, `AsyncConsumer`,
//! `AsyncProducer`) are cancel-safe under `tokio::time::timeout` and fail
//! with the same error types as their sync counterparts.
//!
//! # Arrow versions
//!
//! The API takes and returns arrow-rs types (`RecordBatch`, `SchemaRef`,
//! `ArrowError`) of arrow-rs **60**. Use the crates re-exported here
//! ([`arrow_array`], [`arrow_schema`], [`arrow_buffer`], [`arrow_data`],
//! [`arrow_ipc`], and `arrow_flight` with feature `flight`) or pin the same
//! major version: types of another arrow-rs version do not match.
//!
//! # Modules
//!
//! Bottom up: [`layout`] (the bytes, no I/O), [`region`] (memfd or
//! `/dev/shm`), [`ring`] (producer, broadcast consumers and work-queue
//! groups over raw byte messages, builders, inspection), [`signal`]
//! (waiting), [`arrow`] (Arrow IPC and C-Data-offsets in slots, zero-copy
//! readers), `aio` (tokio streams and writers, feature `tokio`),
//! [`reqrep`] (request/reply over a pair of rings), `flight` (Arrow Flight
//! between machines, feature `flight`).
//!
//! The one-shot cgo bridge (Go calling a Rust handler with Arrow arrays
//! through the C Data Interface) is the crate `alloy-ffi`; the `alloy`
//! command-line tool is the crate `alloy-cli` (doc/README.md, "Crates and
//! packages").
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[cfg(all(feature = "tokio", not(loom)))]
pub mod aio;
#[cfg(not(loom))]
pub mod arrow;
#[cfg(all(feature = "flight", not(loom)))]
pub mod flight;
pub mod layout;
#[cfg(not(loom))]
pub mod region;
#[cfg(not(loom))]
pub mod reqrep;
#[cfg(not(loom))]
pub mod ring;
#[cfg(not(loom))]
pub mod signal;
mod sync;

/// The text of a caught panic's payload (`panic!("…")` gives a `&str` or a
/// `String`): how the decoders, the request/reply worker and the C ABI
/// (`alloy-ffi`) report a panic they caught instead of unwinding. Not part of
/// the transport API.
#[doc(hidden)]
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic with a non-string payload")
}

// The arrow-rs crates whose types the API takes and returns (arrow-rs 60),
// so users need not pin the same versions themselves.
#[cfg(not(loom))]
pub use arrow_array;
#[cfg(not(loom))]
pub use arrow_buffer;
#[cfg(not(loom))]
pub use arrow_data;
#[cfg(all(feature = "flight", not(loom)))]
pub use arrow_flight;
#[cfg(not(loom))]
pub use arrow_ipc;
#[cfg(not(loom))]
pub use arrow_schema;

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
