//! The Arrow consumer as arrow's own [`RecordBatchReader`], and the builder
//! shortcuts from a ring to Arrow endpoints.

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};

use super::{ArrowShmError, CDataWriter, IpcReader, IpcWriter};
use crate::ring::{ConsumerBuilder, ProducerBuilder};

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
    /// [`ArrowShmError::NoSchema`] if the stream ends without one.
    pub fn new(mut reader: IpcReader) -> Result<BatchReader, ArrowShmError> {
        let mut pending = None;
        loop {
            if let Some(schema) = reader.schema() {
                return Ok(BatchReader {
                    inner: reader,
                    schema,
                    pending,
                });
            }
            match reader.load_schema_area() {
                Ok(()) => continue,
                Err(ArrowShmError::NoSchema) => {}
                Err(e) => return Err(e),
            }
            match reader.consumer_mut().recv()? {
                Some(lease) => pending = reader.decode(lease)?,
                None => return Err(ArrowShmError::NoSchema),
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
        let ring = self.ring().clone();
        let reader = IpcReader::new(&ring, self.create()?);
        // SAFETY: `skip` is only true if the caller called the unsafe
        // `skip_validation`, promising a trusted producer.
        Ok(unsafe { reader.with_skip_validation(skip) })
    }

    /// Joins the ring and waits for the stream's schema: an arrow
    /// [`RecordBatchReader`] (see [`BatchReader`]).
    pub fn record_batch_reader(self) -> Result<BatchReader, ArrowShmError> {
        BatchReader::new(self.ipc_reader()?)
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

    use super::super::{testdata, ArrowShmError};
    use crate::ring::Ring;

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
        let consumer = ring.consumer_builder();
        // Closed without a schema: NoSchema, not a hang.
        ring.producer().unwrap().close();
        assert!(matches!(
            consumer.record_batch_reader(),
            Err(ArrowShmError::NoSchema)
        ));

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
}
