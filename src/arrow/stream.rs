//! A ring subscription as an Arrow C stream (`ArrowArrayStream`, the C
//! Stream interface every Arrow engine accepts: pyarrow, Polars, DuckDB,
//! DataFusion, Arrow C++ …).
//!
//! [`RingStream`] reads a consumer (broadcast or queue member, IPC or
//! C-Data-offsets messages: whatever [`IpcReader`] accepts) with a deadline
//! per batch and an optional interrupt check, and
//! [`RingStream::into_ffi`] exports it as arrow-rs's
//! [`FFI_ArrowArrayStream`]. The exported arrays point into the slots (no
//! copy); releasing an array (the engine's `release` callback) drops the
//! batch and with it the slot's lease. The `get_next` contract:
//!
//! | ring event | `get_next` |
//! |---|---|
//! | a record batch | `0`, the array (in the mapping) |
//! | end of stream (producer closed) | `0`, a released array (`release == NULL`) |
//! | dead producer, corrupt message, timeout, interrupt | a non-zero errno, `get_last_error` says which |
//!
//! Dictionary values are copies (the reader keeps them for the stream).

use std::ops::Range;
use std::time::{Duration, Instant};

use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};

use super::{mapped_range, ArrowShmError, IpcReader};
use crate::ring::{ConsumerBuilder, RecvError, RingError};

/// A check run while a receive waits (every [`RingStream::with_interrupt`]
/// interval): an `Err` ends the wait with [`ArrowShmError::Interrupted`].
pub type InterruptCheck = Box<dyn FnMut() -> Result<(), String> + Send>;

/// A ring subscription read as a stream of record batches, with a
/// deadline per batch and an interrupt check, exportable as an Arrow C
/// stream ([`RingStream::into_ffi`]).
///
/// ```
/// use std::sync::Arc;
/// use alloy_shm::ring::Ring;
/// use alloy_shm::arrow_array::{ffi_stream::RecordBatchStreamReader, Int64Array, RecordBatch};
///
/// let ring = Ring::anonymous_builder().slot_count(8).slot_size(1 << 16).create()?;
/// let stream = ring.consumer_builder().ring_stream()?; // joins now
/// let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)])?;
/// let mut writer = ring.producer_builder().ipc_writer(batch.schema())?;
/// writer.write(&batch)?;
/// writer.close()?;
/// // What an engine gets through the C Stream interface (here arrow-rs itself):
/// let ffi = stream.into_ffi()?; // waits for the schema
/// let reader = RecordBatchStreamReader::try_new(ffi)?;
/// let got: Vec<RecordBatch> = reader.collect::<Result<_, _>>()?;
/// assert_eq!(got, vec![batch]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RingStream {
    reader: IpcReader,
    pending: Option<RecordBatch>,
    timeout: Option<Duration>,
    interrupt: Option<(Duration, InterruptCheck)>,
}

impl std::fmt::Debug for RingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingStream")
            .field("reader", &self.reader)
            .field("timeout", &self.timeout)
            .field("interrupt_every", &self.interrupt.as_ref().map(|i| i.0))
            .finish()
    }
}

impl ConsumerBuilder {
    /// Joins the ring and reads it as a [`RingStream`] (no deadline, no
    /// interrupt check until set). The schema is waited for on first use.
    pub fn ring_stream(self) -> Result<RingStream, ArrowShmError> {
        Ok(RingStream::new(self.ipc_reader()?))
    }
}

impl RingStream {
    /// Reads what `reader` receives.
    pub fn new(reader: IpcReader) -> RingStream {
        RingStream {
            reader,
            pending: None,
            timeout: None,
            interrupt: None,
        }
    }

    /// How long one wait (for the schema, or for the next batch) may take
    /// before it fails with a timeout ([`ArrowShmError::is_timeout`]);
    /// `None` (the default) waits for ever. The stream stays usable after
    /// a timeout.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> RingStream {
        self.timeout = timeout;
        self
    }

    /// Sets the per-wait deadline of [`RingStream::with_timeout`] in place.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The per-wait deadline ([`RingStream::with_timeout`]).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Wakes every `every` while waiting and runs `check`; an `Err` ends the
    /// wait with [`ArrowShmError::Interrupted`] (the stream stays usable).
    /// The Python package checks for Ctrl-C this way.
    pub fn with_interrupt(
        mut self,
        every: Duration,
        check: impl FnMut() -> Result<(), String> + Send + 'static,
    ) -> RingStream {
        self.interrupt = Some((every, Box::new(check)));
        self
    }

    /// The wrapped reader.
    pub fn reader_mut(&mut self) -> &mut IpcReader {
        &mut self.reader
    }

    /// Leases this stream's consumer holds (batches not dropped yet,
    /// including those handed out through the C stream).
    pub fn leases_held(&mut self) -> usize {
        self.reader.consumer_mut().leases_held()
    }

    /// The address range of the ring's mapping: the buffers of batches
    /// read in place lie inside it.
    pub fn mapped_range(&self) -> Range<usize> {
        mapped_range(self.reader.ring())
    }

    /// The stream's schema, waiting for it as [`BatchReader::new`] does (from
    /// the ring's schema area for a late joiner, else the first message),
    /// within the deadline and interrupt check. Fails with
    /// [`ArrowShmError::NoSchema`] if the stream ends without one,
    /// `RingError::StreamEnded` when joined to an ended stream, and
    /// [`ArrowShmError::SchemaTimeout`] on the deadline.
    ///
    /// [`BatchReader::new`]: super::BatchReader::new
    pub fn schema(&mut self) -> Result<SchemaRef, ArrowShmError> {
        let start = Instant::now();
        loop {
            if let Some(schema) = self.reader.schema() {
                return Ok(schema);
            }
            // Messages first, then the schema area (a reader that joined an
            // ended stream gets `StreamEnded`, as in `BatchReader`).
            match self.reader.consumer_mut().try_recv() {
                Ok(Some(lease)) => {
                    self.pending = self.reader.decode(lease)?.or(self.pending.take());
                    continue;
                }
                Ok(None) => return Err(ArrowShmError::NoSchema),
                Err(RecvError::Empty) => {}
                Err(e) => return Err(e.into()),
            }
            match self.reader.load_schema_area() {
                Ok(()) => continue,
                Err(ArrowShmError::NoSchema) => {}
                Err(e) => return Err(e),
            }
            let got = match self.slice(start) {
                Slice::Forever => self.reader.consumer_mut().recv(),
                Slice::For(d) => self.reader.consumer_mut().recv_timeout(d),
                Slice::Expired(t) => return Err(ArrowShmError::SchemaTimeout(t)),
            };
            match got {
                Ok(Some(lease)) => self.pending = self.reader.decode(lease)?,
                Ok(None) => return Err(ArrowShmError::NoSchema),
                Err(RecvError::Timeout(_)) => self.check_interrupt()?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next record batch, read in place; `None` at end of stream. A
    /// dead producer is `Ring(ProducerGone)`, the deadline a timeout
    /// ([`ArrowShmError::is_timeout`]), a failed interrupt check
    /// [`ArrowShmError::Interrupted`].
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, ArrowShmError> {
        if let Some(b) = self.pending.take() {
            return Ok(Some(b));
        }
        let start = Instant::now();
        loop {
            let got = match self.slice(start) {
                Slice::Forever => return self.reader.next_batch(),
                Slice::For(d) => self.reader.next_batch_timeout(d),
                Slice::Expired(t) => return Err(RingError::Timeout(t).into()),
            };
            match got {
                Err(e) if e.is_timeout() => self.check_interrupt()?,
                other => return other,
            }
        }
    }

    /// Exports the stream as an Arrow C stream (waiting for the schema
    /// first, see [`RingStream::schema`]). Each `get_next` is one
    /// [`RingStream::next_batch`]; the arrays it hands out point into the
    /// mapping and hold their slot until released.
    pub fn into_ffi(mut self) -> Result<FFI_ArrowArrayStream, ArrowShmError> {
        let schema = self.schema()?;
        Ok(FFI_ArrowArrayStream::new(Box::new(Exported {
            stream: self,
            schema,
        })))
    }

    /// How long the next wait may take: the rest of the deadline, cut to
    /// the interrupt interval.
    fn slice(&self, start: Instant) -> Slice {
        let left = match self.timeout {
            None => None,
            Some(t) => match t.checked_sub(start.elapsed()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Slice::Expired(t),
            },
        };
        match (left, self.interrupt.as_ref().map(|i| i.0)) {
            (None, None) => Slice::Forever,
            (Some(d), None) | (None, Some(d)) => Slice::For(d),
            (Some(a), Some(b)) => Slice::For(a.min(b)),
        }
    }

    fn check_interrupt(&mut self) -> Result<(), ArrowShmError> {
        match self.interrupt.as_mut() {
            Some((_, check)) => check().map_err(ArrowShmError::Interrupted),
            None => Ok(()),
        }
    }
}

enum Slice {
    Forever,
    For(Duration),
    Expired(Duration),
}

impl Iterator for RingStream {
    type Item = Result<RecordBatch, ArrowShmError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

/// The stream once its schema is known: arrow's [`RecordBatchReader`],
/// which `FFI_ArrowArrayStream::new` exports.
struct Exported {
    stream: RingStream,
    schema: SchemaRef,
}

impl Iterator for Exported {
    type Item = Result<RecordBatch, ArrowError>;

    /// Called from the exported stream's C `get_next`: a panic here (an
    /// interrupt check, a bug) must not unwind into the foreign caller, which
    /// would abort the process; it becomes the stream's error instead.
    fn next(&mut self) -> Option<Self::Item> {
        let stream = &mut self.stream;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stream.next_batch()))
            .unwrap_or_else(|panic| {
                Err(ArrowShmError::Interrupted(format!(
                    "reading the ring panicked: {}",
                    crate::panic_message(&*panic)
                )))
            })
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))
            .transpose()
    }
}

impl RecordBatchReader for Exported {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
