//! The Arrow consumer as arrow's own [`RecordBatchReader`], and the builder
//! shortcuts from a ring to Arrow endpoints.

use std::time::{Duration, Instant};

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};

use super::{ArrowShmError, CDataWriter, IpcReader, IpcWriter};
use crate::ring::{ConsumerBuilder, ProducerBuilder, RecvError};

/// An [`IpcReader`] whose schema is known up front, so it implements
/// arrow's [`RecordBatchReader`] (an `Iterator` of
/// `Result<RecordBatch, ArrowError>`) and plugs into anything that takes
/// one (arrow-csv/json/parquet writers, DataFusion, …). Errors of the ring
/// are `ArrowError::ExternalError` wrapping an [`ArrowShmError`].
///
/// ```
/// use std::sync::Arc;
/// use alloy_shm::ring::Ring;
/// use arrow_array::{Int64Array, RecordBatch, RecordBatchReader};
///
/// let ring = Ring::anonymous_builder().slot_count(8).slot_size(4096).create()?;
/// let consumer = ring.consumer_builder();
/// let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)])?;
/// let mut writer = ring.producer_builder().ipc_writer(batch.schema())?;
/// writer.write(&batch)?;
/// let reader = consumer.record_batch_reader()?; // joins, waits for the schema
/// writer.write(&batch)?;
/// writer.close()?;
/// assert_eq!(reader.schema(), batch.schema());
/// let all: Vec<RecordBatch> = reader.collect::<Result<_, _>>()?;
/// assert_eq!(all, vec![batch]); // joined after the first batch: sees the second
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BatchReader {
    inner: IpcReader,
    schema: SchemaRef,
    /// A batch received while waiting for the schema.
    pending: Option<RecordBatch>,
}

impl BatchReader {
    /// Waits until `reader`'s schema is known: from the ring's schema area
    /// (a late joiner) or the stream's first message. Fails with
    /// [`ArrowShmError::NoSchema`] if the stream ends without one, and with
    /// `RingError::StreamEnded` if the consumer joined a stream that had
    /// already ended (start a new stream on the ring, then join again). Waits for
    /// ever while no producer publishes anything: use
    /// [`BatchReader::with_timeout`] when the producer may never come.
    pub fn new(reader: IpcReader) -> Result<BatchReader, ArrowShmError> {
        Self::wait(reader, None)
    }

    /// [`BatchReader::new`] giving up after `timeout` with
    /// [`ArrowShmError::SchemaTimeout`] (the reader, and with it the
    /// consumer, is dropped: join again to retry).
    pub fn with_timeout(
        reader: IpcReader,
        timeout: Duration,
    ) -> Result<BatchReader, ArrowShmError> {
        Self::wait(reader, Some(timeout))
    }

    fn wait(
        mut reader: IpcReader,
        timeout: Option<Duration>,
    ) -> Result<BatchReader, ArrowShmError> {
        let start = Instant::now();
        let mut pending = None;
        loop {
            if let Some(schema) = reader.schema() {
                return Ok(BatchReader {
                    inner: reader,
                    schema,
                    pending,
                });
            }
            // Messages first, then the schema area: a reader that joined an
            // ended stream is told so (`StreamEnded`) instead of taking the
            // ended stream's schema from the area (found by a new user).
            match reader.consumer_mut().try_recv() {
                Ok(Some(lease)) => {
                    pending = reader.decode(lease)?.or(pending);
                    continue;
                }
                Ok(None) => return Err(ArrowShmError::NoSchema),
                Err(RecvError::Empty) => {}
                Err(e) => return Err(e.into()),
            }
            match reader.load_schema_area() {
                Ok(()) => continue,
                Err(ArrowShmError::NoSchema) => {}
                Err(e) => return Err(e),
            }
            let got = match timeout {
                None => reader.consumer_mut().recv(),
                Some(t) => match t.checked_sub(start.elapsed()) {
                    Some(left) if !left.is_zero() => {
                        match reader.consumer_mut().recv_timeout(left) {
                            Err(RecvError::Timeout(_)) => Err(RecvError::Timeout(t)),
                            other => other,
                        }
                    }
                    _ => Err(RecvError::Timeout(t)),
                },
            };
            match got {
                Ok(Some(lease)) => pending = reader.decode(lease)?,
                Ok(None) => return Err(ArrowShmError::NoSchema),
                Err(RecvError::Timeout(t)) => return Err(ArrowShmError::SchemaTimeout(t)),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut IpcReader {
        &mut self.inner
    }

    /// Unwraps the reader.
    pub fn into_inner(self) -> IpcReader {
        self.inner
    }
}

impl Iterator for BatchReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(b) = self.pending.take() {
            return Some(Ok(b));
        }
        self.inner
            .next_batch()
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))
            .transpose()
    }
}

impl RecordBatchReader for BatchReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

impl ConsumerBuilder {
    /// Skips validating array contents in the Arrow readers this builder
    /// makes (see [`IpcReader::with_skip_validation`]); framing and buffer
    /// ranges are still checked.
    ///
    /// # Safety
    ///
    /// Only for a trusted producer: invalid data that is not validated can
    /// cause undefined behaviour when the arrays are read.
    pub unsafe fn skip_validation(self) -> Self {
        self.with_skip_validation(true)
    }

    /// Joins the ring and reads it as Arrow IPC (LAYOUT.md §8): zero-copy
    /// record batches.
    pub fn ipc_reader(self) -> Result<IpcReader, ArrowShmError> {
        let skip = self.skips_validation();
        let reader = IpcReader::new(self.create()?);
        // SAFETY: `skip` is only true if the caller called the unsafe
        // `skip_validation`, promising a trusted producer.
        Ok(unsafe { reader.with_skip_validation(skip) })
    }

    /// Joins the ring and waits for the stream's schema: an arrow
    /// [`RecordBatchReader`] (see [`BatchReader`]). Waits for ever while no
    /// producer publishes one; see
    /// [`record_batch_reader_timeout`](ConsumerBuilder::record_batch_reader_timeout).
    pub fn record_batch_reader(self) -> Result<BatchReader, ArrowShmError> {
        BatchReader::new(self.ipc_reader()?)
    }

    /// [`record_batch_reader`](ConsumerBuilder::record_batch_reader) giving
    /// up after `timeout` with [`ArrowShmError::SchemaTimeout`] when no
    /// schema is published in time (no producer attached, or one that has
    /// written nothing yet). The consumer leaves the ring on failure.
    ///
    /// ```
    /// use std::time::Duration;
    /// use alloy_shm::arrow::ArrowShmError;
    /// use alloy_shm::ring::Ring;
    ///
    /// let ring = Ring::anonymous_builder().slot_count(4).slot_size(4096).create()?;
    /// let got = ring.consumer_builder().record_batch_reader_timeout(Duration::from_millis(20));
    /// assert!(matches!(got, Err(ArrowShmError::SchemaTimeout(_)))); // nobody writes
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn record_batch_reader_timeout(
        self,
        timeout: Duration,
    ) -> Result<BatchReader, ArrowShmError> {
        BatchReader::with_timeout(self.ipc_reader()?, timeout)
    }
}

impl ProducerBuilder {
    /// Attaches the producer and writes record batches with `schema` as
    /// Arrow IPC (see [`IpcWriter`]).
    pub fn ipc_writer(self, schema: SchemaRef) -> Result<IpcWriter, ArrowShmError> {
        IpcWriter::new(self.create()?, schema)
    }

    /// Attaches the producer and writes record batches with `schema` in
    /// C-Data-offsets mode (see [`CDataWriter`]). A schema the mode does
    /// not carry is refused before the producer attaches.
    pub fn cdata_writer(self, schema: SchemaRef) -> Result<CDataWriter, ArrowShmError> {
        CDataWriter::check_schema(&schema)?;
        CDataWriter::new(self.create()?, schema)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int32Array, RecordBatch, RecordBatchReader};
    use arrow_schema::ArrowError;

    use super::super::ArrowShmError;
    use crate::ring::Ring;
    use alloy_testkit::testdata;

    #[test]
    fn implements_record_batch_reader_and_reports_ring_errors_as_external() {
        let ring = Ring::anonymous_builder()
            .slot_count(64)
            .slot_size(1 << 16)
            .create()
            .unwrap();
        let consumer = ring.consumer_builder();
        let batches: Vec<RecordBatch> = (0..20)
            .map(|i| testdata::batch(i, &[2, 9, 11], 30, 0, true))
            .collect();
        let mut w = ring
            .producer_builder()
            .ipc_writer(batches[0].schema())
            .unwrap();
        // Joined before anything was sent: the schema comes as the first
        // message, not from the schema area.
        let reader = std::thread::spawn(move || consumer.record_batch_reader().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(20));
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        let reader = reader.join().unwrap();
        fn takes_reader(r: impl RecordBatchReader) -> Vec<RecordBatch> {
            r.collect::<Result<_, ArrowError>>().unwrap()
        }
        assert_eq!(reader.schema(), batches[0].schema());
        assert_eq!(takes_reader(reader), batches);
    }

    #[test]
    fn a_stream_without_schema_and_a_dead_end_are_errors() {
        let ring = Ring::anonymous_builder()
            .slot_count(4)
            .slot_size(1024)
            .create()
            .unwrap();
        let joined = ring.consumer_builder().ipc_reader().unwrap();
        // Closed without a schema: NoSchema, not a hang.
        ring.producer().unwrap().close();
        let got = super::BatchReader::new(joined);
        assert!(matches!(got, Err(ArrowShmError::NoSchema)), "{got:?}");

        // A non-Arrow message in an Arrow stream surfaces as ExternalError.
        let ring = Ring::anonymous_builder()
            .slot_count(4)
            .slot_size(1024)
            .create()
            .unwrap();
        let batch =
            RecordBatch::try_from_iter([("n", Arc::new(Int32Array::from(vec![1])) as _)]).unwrap();
        let mut w = ring.producer_builder().ipc_writer(batch.schema()).unwrap();
        let joined = ring.consumer_builder().ipc_reader().unwrap();
        w.write(&batch).unwrap();
        let mut reader = super::BatchReader::new(joined).unwrap();
        w.producer_mut().send(b"not arrow", 0x7000).unwrap();
        assert_eq!(reader.next().unwrap().unwrap(), batch);
        let err = reader.next().unwrap().unwrap_err();
        let ArrowError::ExternalError(inner) = err else {
            panic!("expected ExternalError, got {err}")
        };
        assert!(
            matches!(
                inner.downcast_ref::<ArrowShmError>(),
                Some(ArrowShmError::UnknownFlags { flags: 0x7000, .. })
            ),
            "{inner}"
        );
    }

    /// A reader that joins after the stream ended (its schema still in the
    /// schema area) gets `StreamEnded`, not the ended stream's schema.
    #[test]
    fn joining_an_ended_stream_is_stream_ended_not_its_old_schema() {
        let ring = Ring::anonymous_builder()
            .slot_count(4)
            .slot_size(1024)
            .create()
            .unwrap();
        let batch =
            RecordBatch::try_from_iter([("n", Arc::new(Int32Array::from(vec![1])) as _)]).unwrap();
        let mut w = ring.producer_builder().ipc_writer(batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let got = ring
            .consumer_builder()
            .record_batch_reader_timeout(std::time::Duration::from_secs(2));
        assert!(
            matches!(
                got,
                Err(ArrowShmError::Ring(
                    crate::ring::RingError::StreamEnded { .. }
                ))
            ),
            "{got:?}"
        );
    }

    #[test]
    fn schema_wait_and_batch_wait_have_deadlines() {
        use std::time::{Duration, Instant};
        let ring = Ring::anonymous_builder()
            .slot_count(4)
            .slot_size(4096)
            .create()
            .unwrap();
        // No producer ever attaches: SchemaTimeout after the timeout, not a hang.
        let t = Instant::now();
        let got = ring
            .consumer_builder()
            .record_batch_reader_timeout(Duration::from_millis(50));
        assert!(
            matches!(got, Err(ArrowShmError::SchemaTimeout(d)) if d == Duration::from_millis(50)),
            "{got:?}"
        );
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
        let err = got.unwrap_err();
        assert!(err.is_timeout());
        assert!(err.to_string().contains("no schema within"));

        // A producer attached but silent: the same.
        let batch =
            RecordBatch::try_from_iter([("n", Arc::new(Int32Array::from(vec![7])) as _)]).unwrap();
        let mut w = ring.producer_builder().ipc_writer(batch.schema()).unwrap();
        let got = ring
            .consumer_builder()
            .record_batch_reader_timeout(Duration::from_millis(30));
        assert!(
            matches!(got, Err(ArrowShmError::SchemaTimeout(_))),
            "{got:?}"
        );

        // The schema comes in time: a reader, whose batches also have a deadline.
        let joined = ring.consumer_builder().ipc_reader().unwrap();
        let waiting = std::thread::spawn(move || {
            super::BatchReader::with_timeout(joined, Duration::from_secs(10))
        });
        std::thread::sleep(Duration::from_millis(30));
        w.write(&batch).unwrap();
        let mut reader = waiting.join().unwrap().unwrap();
        assert_eq!(reader.schema(), batch.schema());
        assert_eq!(reader.next().unwrap().unwrap(), batch);
        let inner = reader.get_mut();
        let got = inner.next_batch_timeout(Duration::from_millis(30));
        assert!(got.as_ref().is_err_and(|e| e.is_timeout()), "{got:?}");
        assert!(
            matches!(
                got,
                Err(ArrowShmError::Ring(crate::ring::RingError::Timeout(_)))
            ),
            "{got:?}"
        );
        // Still usable after the timeout.
        w.write(&batch).unwrap();
        assert_eq!(
            inner.next_batch_timeout(Duration::from_secs(5)).unwrap(),
            Some(batch)
        );
        w.close().unwrap();
        assert_eq!(
            inner.next_batch_timeout(Duration::from_secs(5)).unwrap(),
            None
        );
    }
}
