//! SQL over a live ring: a ring subscription as an Apache DataFusion
//! streaming table (issue #16).
//!
//! [`ring_table`] turns a [`RingStream`] (a broadcast subscription or a
//! queue member, IPC or C-Data-offsets messages) into a DataFusion
//! [`StreamingTable`] with one partition; register it and query it with
//! SQL while the producer (Go, Rust, Python) is still writing. The query
//! reads each batch in place, in the slot, and drops it (giving the slot
//! back) when the plan is done with it. The table is bounded: it ends when
//! the producer closes the stream, so aggregates and sorts finish.
//!
//! No DataFusion release uses the library's arrow 60 (DataFusion 55.2 is on
//! arrow 59), so the batches cross through the Arrow C stream interface:
//! [`RingStream::into_ffi`] exports the stream with arrow 60 and arrow 59's
//! [`ArrowArrayStreamReader`] imports it ([`import`]). That is an ABI
//! hand-over of pointers, not a copy (the imported buffers are the slot's
//! bytes, and their release callback gives the lease back), and the
//! library keeps its arrow.
//!
//! Slots: the scan reads up to [`READ_AHEAD`] batches ahead of the plan,
//! plus the one it is handing over; whatever the plan's operators keep on
//! top of that (a sort keeps its whole input, an aggregate nothing) must fit
//! in the ring too, or the consumer fails with the retention-stall error
//! after its held-lease timeout (doc/README.md, "Holding batches").
//!
//! ```no_run
//! use alloy_shm::ring::Ring;
//! use datafusion::prelude::SessionContext;
//! use std::sync::Arc;
//!
//! # async fn run() -> datafusion::error::Result<()> {
//! let ring = Ring::open("trades").expect("open the ring");
//! let stream = ring.consumer_builder().ring_stream().expect("join the ring");
//! let ctx = SessionContext::new();
//! ctx.register_table("live", Arc::new(alloy_datafusion::ring_table(stream)?))?;
//! let df = ctx.sql("SELECT g, sum(x) FROM live GROUP BY g").await?;
//! df.show().await?;
//! # Ok(())
//! # }
//! ```
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

use std::sync::{Arc, Mutex};

use alloy_shm::arrow::RingStream;
use arrow59::datatypes::SchemaRef;
use arrow59::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use arrow59::record_batch::{RecordBatch, RecordBatchReader};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::{RecordBatchReceiverStream, RecordBatchStreamAdapter};
use datafusion::physical_plan::streaming::PartitionStream;

/// Batches a partition reads ahead of the plan (each holds its slot).
pub const READ_AHEAD: usize = 2;

/// Hands `stream` to arrow 59 (DataFusion's arrow) through the Arrow C
/// stream interface: the reader's batches are the ring's, in place; each
/// holds its slot's lease until dropped. Waits for the schema (within the
/// stream's timeout, [`RingStream::with_timeout`]).
pub fn import(stream: RingStream) -> Result<ArrowArrayStreamReader> {
    let mut exported = stream
        .into_ffi()
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let raw: *mut alloy_shm::arrow_array::ffi_stream::FFI_ArrowArrayStream = &mut exported;
    // SAFETY: both types are the C ABI's `struct ArrowArrayStream`
    // (#[repr(C)], the same four fields), so the pointer cast only renames
    // the type; `raw` points to a live, initialised stream, and `from_raw`
    // moves it out, leaving a released (empty) stream in `exported`, whose
    // drop then does nothing: the stream is released exactly once, by arrow 59.
    let moved = unsafe { FFI_ArrowArrayStream::from_raw(raw.cast::<FFI_ArrowArrayStream>()) };
    Ok(ArrowArrayStreamReader::try_new(moved)?)
}

/// One ring subscription as a DataFusion [`PartitionStream`]: the first
/// `execute` reads it (on a blocking task, since a receive waits); a ring
/// stream can be read once, so a later `execute` fails.
///
/// A query that stops early (`LIMIT`, an error) drops its end of the
/// channel; the blocking task sees that at its next batch and drops the
/// reader, which leaves the ring. Until then (a producer that sends
/// nothing more) it waits, up to the stream's deadline
/// ([`RingStream::with_timeout`]).
pub struct RingPartition {
    schema: SchemaRef,
    reader: Mutex<Option<ArrowArrayStreamReader>>,
}

impl std::fmt::Debug for RingPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingPartition")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl RingPartition {
    /// Reads `stream` (waits for the schema, see [`import`]).
    pub fn new(stream: RingStream) -> Result<RingPartition> {
        let reader = import(stream)?;
        Ok(RingPartition {
            schema: reader.schema(),
            reader: Mutex::new(Some(reader)),
        })
    }
}

impl PartitionStream for RingPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.reader.lock().map(|mut r| r.take());
        let Ok(Some(reader)) = taken else {
            let err = DataFusionError::Execution(
                "a ring stream is read once: this table was already queried".into(),
            );
            return Box::pin(RecordBatchStreamAdapter::new(
                self.schema.clone(),
                futures::stream::once(async move { Err::<RecordBatch, _>(err) }),
            ));
        };
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), READ_AHEAD);
        let tx = builder.tx();
        builder.spawn_blocking(move || {
            for batch in reader {
                // A closed channel: the query stopped (LIMIT, an error); the
                // reader's drop leaves the ring.
                if tx.blocking_send(batch.map_err(Into::into)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        builder.build()
    }
}

/// `stream` as a one-partition DataFusion table (bounded: it ends when the
/// producer closes the stream, so aggregates and sorts work on it).
pub fn ring_table(stream: RingStream) -> Result<StreamingTable> {
    let partition = RingPartition::new(stream)?;
    let schema = partition.schema.clone();
    StreamingTable::try_new(schema, vec![Arc::new(partition)])
}
