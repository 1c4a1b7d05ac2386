//! Arrow on top of the ring (LAYOUT.md §8). In **IPC mode** each slot holds
//! one Arrow IPC message laid out so that every buffer is 64-byte aligned;
//! [`IpcReader`] turns received messages into [`RecordBatch`]es whose arrays
//! point straight into the shared mapping (no copy), and [`IpcWriter`]
//! writes batches into slots. The Go package `arrowshm` speaks the same
//! format in both directions.
//!
//! ```
//! use std::sync::Arc;
//! use alloy_shm::arrow::{IpcReader, IpcWriter};
//! use alloy_shm::ring::{Ring, RingConfig};
//! use arrow_array::{cast::AsArray, types::Int64Type, Int64Array, RecordBatch, StringArray};
//!
//! let ring = Ring::anonymous_builder().config(RingConfig { slot_count: 8, slot_size: 1 << 16, ..Default::default() }).create()?;
//! let mut reader = IpcReader::new(ring.subscribe()?); // join before the producer starts
//! let batch = RecordBatch::try_from_iter([
//!     ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
//!     ("name", Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])) as _),
//! ])?;
//! let mut writer = IpcWriter::new(ring.producer()?, batch.schema())?;
//! writer.write(&batch)?;
//! writer.close()?;
//!
//! let got = reader.next_batch()?.expect("a batch");
//! let ids = got.column(0).as_primitive::<Int64Type>();
//! assert_eq!(ids.values().iter().sum::<i64>(), 6);
//! assert!(alloy_shm::arrow::in_mapping(&ring, &got)); // zero-copy
//! drop(got); // releases the slot
//! assert!(reader.next_batch()?.is_none()); // end of stream
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **C-Data-offsets mode** (flag 3, LAYOUT.md §8.3): [`CDataWriter`] (and
//! the Go `arrowshm.CDataWriter`) puts each batch's buffers into the slot and
//! appends a descriptor of the array tree with offsets instead of pointers;
//! [`IpcReader`] accepts these messages too and rebuilds the arrays over the
//! slot without a copy, checking every offset first (see
//! [`in_mapping_all`] for the zero-copy check, dictionaries included).

mod batch_reader;
mod cdata_plan;
pub(crate) mod cdata_reader;
mod cdata_writer;
mod decode_plan;
pub(crate) mod encode_plan;
pub(crate) mod frame;
mod owned;
pub(crate) mod reader;
mod stream;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod types_tests;
pub(crate) mod writer;

use arrow_array::{Array, RecordBatch};
use arrow_data::ArrayData;
use arrow_schema::ArrowError;
use thiserror::Error;

use crate::ring::{Ring, RingError};
pub use batch_reader::BatchReader;
pub use cdata_reader::in_mapping_all;
pub use cdata_writer::CDataWriter;
pub(crate) use owned::has_dictionary;
pub use owned::{copy_array, copy_batch, detach_dictionaries};
pub use reader::IpcReader;
pub use stream::{InterruptCheck, RingStream};
pub use writer::{write_split, IpcWriter, Summary};

/// Slot flag values of the Arrow layer (LAYOUT.md §8): bits 0–7 name the
/// encoding, bits 8–31 must be zero.
pub mod flags {
    /// Raw application bytes, not Arrow.
    pub const RAW: u32 = 0;
    /// One IPC message whose header is a `RecordBatch`.
    pub const IPC_RECORD_BATCH: u32 = 1;
    /// One IPC message whose header is a `DictionaryBatch`.
    pub const IPC_DICTIONARY_BATCH: u32 = 2;
    /// One record batch in C-Data-offsets mode (LAYOUT.md §8.3).
    pub const CDATA_OFFSETS: u32 = 3;
    /// One IPC message whose header is a `Schema`.
    pub const IPC_SCHEMA: u32 = 4;
    /// The bits that carry the encoding.
    pub const ENCODING_MASK: u32 = 0xFF;
}

/// Errors of the Arrow layer.
#[derive(Debug, Error)]
pub enum ArrowShmError {
    /// The ring refused an operation (full, too large, closed, …).
    #[error(transparent)]
    Ring(#[from] RingError),
    /// A received message breaks the slot format (LAYOUT.md §8.1).
    #[error("corrupt Arrow message in slot {slot} (sequence {seq}): {reason}")]
    Corrupt {
        /// Sequence number of the message.
        seq: u64,
        /// Slot index.
        slot: usize,
        /// What is wrong.
        reason: String,
    },
    /// A well-framed message that arrow-ipc could not decode (bad contents,
    /// misaligned buffer, missing dictionary, schema mismatch, …).
    #[error("cannot decode Arrow message in slot {slot} (sequence {seq}): {source}")]
    Decode {
        /// Sequence number of the message.
        seq: u64,
        /// Slot index.
        slot: usize,
        /// The decoder's error.
        #[source]
        source: ArrowError,
    },
    /// Flags outside LAYOUT.md §8 (or a raw message on an Arrow stream).
    #[error("slot {slot} (sequence {seq}) has flags {flags:#x}, not an Arrow IPC message")]
    UnknownFlags {
        /// Sequence number of the message.
        seq: u64,
        /// Slot index.
        slot: usize,
        /// The flags found.
        flags: u32,
    },
    /// No schema message was received and the schema area is empty.
    #[error("no schema: the stream has not published one")]
    NoSchema,
    /// No schema was published within the reader's timeout
    /// ([`ConsumerBuilder::record_batch_reader_timeout`],
    /// [`BatchReader::with_timeout`]): no producer attached, or it has not
    /// written yet.
    ///
    /// [`ConsumerBuilder::record_batch_reader_timeout`]: crate::ring::ConsumerBuilder::record_batch_reader_timeout
    #[error("no schema within {0:?}: no producer has started the stream")]
    SchemaTimeout(std::time::Duration),
    /// The schema area does not hold a valid schema message.
    #[error("corrupt schema area: {reason}")]
    CorruptSchema {
        /// What is wrong.
        reason: String,
    },
    /// The producer published a different schema mid-stream (refused).
    #[error("schema changed mid-stream at slot {slot} (sequence {seq})")]
    SchemaChanged {
        /// Sequence number of the schema message.
        seq: u64,
        /// Slot index.
        slot: usize,
    },
    /// A schema holds a type the C-Data-offsets mode does not carry
    /// ([`CDataWriter::check_schema`]).
    #[error("column {column:?}: {reason}")]
    UnsupportedType {
        /// Name of the column (top-level field) holding the type.
        column: String,
        /// Which type, and why.
        reason: String,
    },
    /// A batch given to the writer does not have the stream's schema.
    #[error("the batch's schema differs from the stream's schema")]
    SchemaMismatch,
    /// Encoding a batch failed.
    #[error("cannot encode Arrow data: {0}")]
    Encode(#[source] ArrowError),
    /// A wait was ended by the interrupt check of a
    /// [`RingStream`](RingStream::with_interrupt) (e.g. Ctrl-C in Python).
    #[error("interrupted: {0}")]
    Interrupted(String),
}

// Open, attach, send and receive errors become the `RingError` variant of
// the same name and text (`?` keeps matching as `ArrowShmError::Ring(…)`).
crate::ring::error::ring_errors_into!(ArrowShmError::Ring);

impl ArrowShmError {
    /// Whether this is a wait that ran out of time: the schema wait
    /// ([`ArrowShmError::SchemaTimeout`]) or a batch wait
    /// (`Ring(RingError::Timeout)`, e.g. from [`IpcReader::next_batch_timeout`]).
    /// One test for both shapes.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            ArrowShmError::SchemaTimeout(_) | ArrowShmError::Ring(RingError::Timeout(_))
        )
    }
}

/// The address range consumers of this process read the ring at (for
/// zero-copy checks): the read-only mapping made when the first consumer
/// attached, where the buffers of batches read in place lie.
pub fn mapped_range(ring: &Ring) -> std::ops::Range<usize> {
    let base = ring.region().read_base() as usize;
    base..base + ring.region().layout().total_size
}

/// Whether every buffer of `batch` (null buffers, data buffers and children,
/// recursively) lies inside the ring's mapping, i.e. was not copied. The
/// values of dictionary columns are not checked: readers copy dictionaries.
pub fn in_mapping(ring: &Ring, batch: &RecordBatch) -> bool {
    let range = mapped_range(ring);
    batch
        .columns()
        .iter()
        .all(|c| data_in(&c.to_data(), &range))
}

fn data_in(data: &ArrayData, range: &std::ops::Range<usize>) -> bool {
    let inside = |ptr: *const u8, len: usize| {
        let p = ptr as usize;
        len == 0 || (range.start <= p && p + len <= range.end)
    };
    data.buffers().iter().all(|b| inside(b.as_ptr(), b.len()))
        && data
            .nulls()
            .is_none_or(|n| inside(n.buffer().as_ptr(), n.buffer().len()))
        // Dictionary values are copied out of their slots (LAYOUT.md §8.2).
        && (matches!(data.data_type(), arrow_schema::DataType::Dictionary(..))
            || data.child_data().iter().all(|c| data_in(c, range)))
}
