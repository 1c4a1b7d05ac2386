//! Consumer side of IPC mode: each lease becomes a [`RecordBatch`] whose
//! buffers point into the slot, kept alive (and the slot held) by the
//! buffers themselves.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, RefUnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::Buffer;
use arrow_data::UnsafeFlag;
use arrow_ipc::reader::{read_dictionary_impl, RecordBatchDecoder};
use arrow_ipc::MessageHeader;
use arrow_schema::SchemaRef;

use super::cdata_plan::CDataPlan;
use super::decode_plan::DecodePlan;
use super::frame::{self, Frame, VerifiedShape};
use super::{flags, ArrowShmError};
use crate::ring::{Consumer, Lease, Ring};

/// Owns a lease on behalf of the arrow buffers that point into its slot:
/// the slot is released when the last such buffer is dropped.
struct SlotOwner {
    _lease: Lease,
}

// A lease is a read-only view plus an atomic release on drop; a panic while
// it is borrowed cannot leave it in a broken state.
impl RefUnwindSafe for SlotOwner {}

/// Turns one lease into an arrow [`Buffer`] without copying.
pub(crate) fn lease_buffer(lease: Lease) -> Buffer {
    let len = lease.len();
    let ptr = NonNull::new(lease.as_ptr() as *mut u8).expect("slice pointers are non-null");
    // SAFETY: `ptr..ptr+len` is the lease's payload inside the mapping. The
    // owner Arc keeps the lease alive as long as the buffer (and every slice
    // of it) exists; the lease keeps the mapping mapped and, by the ring
    // protocol (LAYOUT.md §4 gate), the producer does not write this slot
    // until the lease is released. Arrow only reads through the pointer.
    unsafe { Buffer::from_custom_allocation(ptr, len, Arc::new(SlotOwner { _lease: lease })) }
}

/// Decodes Arrow IPC messages (LAYOUT.md §8) received on a ring into record
/// batches whose buffers live in the shared mapping: no byte is copied, and
/// each batch holds its slot until the batch (and every array sliced from
/// it) is dropped. Dictionaries are copied out of their slots, since the
/// reader keeps them for the rest of the stream.
///
/// Validation of the array contents is on; see
/// [`IpcReader::with_skip_validation`].
///
/// ```
/// use std::sync::Arc;
/// use alloy_shm::arrow::{IpcReader, IpcWriter};
/// use alloy_shm::ring::{Ring, RingConfig};
/// use arrow_array::{Int64Array, RecordBatch};
///
/// let ring = Ring::anonymous_builder().config(RingConfig { slot_count: 4, slot_size: 4096, ..Default::default() }).create()?;
/// let mut reader = IpcReader::new(ring.subscribe()?);
/// let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as _)])?;
/// let mut writer = IpcWriter::new(ring.producer()?, batch.schema())?;
/// writer.write(&batch)?;
/// writer.close()?;
/// let got = reader.next_batch()?.expect("one batch");
/// assert_eq!(got, batch);
/// assert!(reader.next_batch()?.is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct IpcReader {
    ring: Ring,
    consumer: Consumer,
    schema: Option<SchemaRef>,
    /// The schema's decode plan, when its columns are all flat.
    plan: Option<DecodePlan>,
    /// The schema's C-Data-offsets plan, when its columns are all flat.
    cdata_plan: Option<CDataPlan>,
    dictionaries: HashMap<i64, ArrayRef>,
    /// The last record batch message verified (see `frame::VerifiedShape`).
    shape: VerifiedShape,
    skip_validation: UnsafeFlag,
    copy: bool,
    bytes: u64,
}

impl std::fmt::Debug for IpcReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcReader")
            .field("consumer", &self.consumer)
            .field("schema", &self.schema)
            .field("dictionaries", &self.dictionaries.len())
            .finish()
    }
}

impl IpcReader {
    /// Reads the stream `consumer` receives (from the ring it joined; see
    /// also [`ConsumerBuilder::ipc_reader`](crate::ring::ConsumerBuilder::ipc_reader)).
    pub fn new(consumer: Consumer) -> IpcReader {
        IpcReader {
            ring: consumer.ring(),
            consumer,
            schema: None,
            plan: None,
            cdata_plan: None,
            dictionaries: HashMap::new(),
            shape: VerifiedShape::default(),
            skip_validation: UnsafeFlag::new(),
            copy: false,
            bytes: 0,
        }
    }

    /// Copies each batch out of its slot (one copy of the message, 64-byte
    /// aligned) and releases the slot at once, instead of reading it in
    /// place. Off by default.
    ///
    /// Turn it on when batches are kept: a batch read in place holds its
    /// slot until it is dropped, and the ring's producer cannot get more
    /// than `slot_count` messages ahead of the oldest held one. A consumer
    /// that keeps every batch (e.g. `collect()`s a stream longer than the
    /// ring) therefore stalls the stream; after the consumer's held-lease
    /// timeout its receive fails with [`RingError::RetentionStall`] naming
    /// the cause (see [`ConsumerBuilder::held_lease_timeout`]). To keep only
    /// some batches, read in place and [`copy_batch`](super::copy_batch)
    /// those.
    ///
    /// [`RingError::RetentionStall`]: crate::ring::RingError::RetentionStall
    /// [`ConsumerBuilder::held_lease_timeout`]: crate::ring::ConsumerBuilder::held_lease_timeout
    pub fn with_copy(mut self, copy: bool) -> IpcReader {
        self.copy = copy;
        self
    }

    /// The payload of `lease` as one arrow buffer: the slot itself (the
    /// buffer owns the lease), or with [`IpcReader::with_copy`] a copy (the
    /// lease is released here).
    fn payload(&self, lease: Lease) -> Buffer {
        if self.copy {
            // Buffer::from copies into a 64-byte aligned allocation.
            Buffer::from(lease.bytes())
        } else {
            lease_buffer(lease)
        }
    }

    /// Skips validating array contents (offsets within bounds, UTF-8, null
    /// counts). The framing and buffer ranges are still checked.
    ///
    /// # Safety
    ///
    /// Only for a trusted producer: invalid data that is not validated can
    /// cause undefined behaviour when the arrays are read.
    pub unsafe fn with_skip_validation(mut self, skip: bool) -> IpcReader {
        // SAFETY: the caller promises the producer writes valid data.
        unsafe { self.skip_validation.set(skip) };
        self
    }

    /// The stream's schema, once known (after the first message).
    pub fn schema(&self) -> Option<SchemaRef> {
        self.schema.clone()
    }

    /// Total payload bytes of the messages received so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes
    }

    /// The ring this reader's consumer is joined to.
    pub(crate) fn ring(&self) -> &Ring {
        &self.ring
    }

    /// The underlying consumer (e.g. to change its wait strategy).
    pub fn consumer_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Waits for the next record batch; `None` at end of stream. Schema and
    /// dictionary messages are consumed on the way. A dead producer ends the
    /// wait with [`RingError::ProducerGone`]; a live one that sends nothing
    /// is waited for without limit (see [`IpcReader::next_batch_timeout`]).
    ///
    /// [`RingError::ProducerGone`]: crate::ring::RingError::ProducerGone
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, ArrowShmError> {
        while let Some(lease) = self.consumer.recv()? {
            if let Some(batch) = self.decode(lease)? {
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    /// [`IpcReader::next_batch`] failing with [`RingError::Timeout`] when
    /// no record batch arrives within `timeout` (schema and dictionary
    /// messages received meanwhile are kept). The reader stays usable.
    ///
    /// [`RingError::Timeout`]: crate::ring::RingError::Timeout
    pub fn next_batch_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<RecordBatch>, ArrowShmError> {
        let start = std::time::Instant::now();
        loop {
            let left = timeout
                .checked_sub(start.elapsed())
                .ok_or(crate::ring::RingError::Timeout(timeout))?;
            let lease = match self.consumer.recv_timeout(left) {
                Ok(Some(lease)) => lease,
                Ok(None) => return Ok(None),
                Err(crate::ring::RecvError::Timeout(_)) => {
                    return Err(crate::ring::RingError::Timeout(timeout).into())
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(batch) = self.decode(lease)? {
                return Ok(Some(batch));
            }
        }
    }

    /// Decodes one received message: `Some(batch)` for a record batch,
    /// `None` for a schema or dictionary message (which update the reader's
    /// state). For callers that run their own receive loop.
    pub fn decode(&mut self, lease: Lease) -> Result<Option<RecordBatch>, ArrowShmError> {
        let seq = lease.seq();
        let slot = (seq % u64::from(self.ring.config().slot_count)) as usize;
        let flag = lease.flags();
        self.bytes += lease.len() as u64;
        if flag & !flags::ENCODING_MASK != 0 {
            return Err(ArrowShmError::UnknownFlags {
                seq,
                slot,
                flags: flag,
            });
        }
        let want = match flag {
            flags::IPC_SCHEMA => MessageHeader::Schema,
            flags::IPC_DICTIONARY_BATCH => MessageHeader::DictionaryBatch,
            flags::IPC_RECORD_BATCH => MessageHeader::RecordBatch,
            flags::CDATA_OFFSETS => {
                // LAYOUT.md §8.3: the batch is rebuilt over the slot.
                if self.schema.is_none() {
                    self.load_schema_area()?;
                }
                let schema = self.schema.clone().ok_or(ArrowShmError::NoSchema)?;
                let whole = self.payload(lease);
                return super::cdata_reader::decode_with(
                    &whole,
                    &schema,
                    self.cdata_plan.as_ref(),
                    seq,
                    slot,
                    &self.skip_validation,
                )
                .map(Some);
            }
            _ => {
                return Err(ArrowShmError::UnknownFlags {
                    seq,
                    slot,
                    flags: flag,
                })
            }
        };
        let corrupt = |reason: String| ArrowShmError::Corrupt { seq, slot, reason };
        if self.schema.is_none() && want != MessageHeader::Schema {
            // A late joiner: the schema message went by before we joined.
            self.load_schema_area()?;
        }
        // The whole payload as one arrow buffer owning the lease; batches
        // slice it, everything else drops it (releasing the slot) below.
        let whole = self.payload(lease);
        // A panic inside arrow-ipc on data the checks of `frame::parse` did
        // not catch is still reported as corruption of this message.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let frame = frame::parse_with(&whole, Some(&mut self.shape)).map_err(corrupt)?;
            if frame.message.header_type() != want {
                return Err(corrupt(format!(
                    "flag {flag} but the message header is {:?}",
                    frame.message.header_type()
                )));
            }
            let decode = |source| ArrowShmError::Decode { seq, slot, source };
            match want {
                MessageHeader::Schema => match self.install_schema(&frame) {
                    Ok(()) => Ok(None),
                    Err(SchemaIssue::Decode(e)) => Err(decode(e)),
                    Err(SchemaIssue::Changed) => Err(ArrowShmError::SchemaChanged { seq, slot }),
                },
                MessageHeader::DictionaryBatch => {
                    // Copied (Buffer::from aligns to 64): the reader keeps
                    // dictionaries for the whole stream, and a held lease
                    // would stall the ring.
                    let body = Buffer::from(&whole[frame.body.clone()]);
                    self.read_dictionary(&frame, &body).map_err(decode)?;
                    Ok(None)
                }
                _ => {
                    if let Some(plan) = &self.plan {
                        let batch = frame
                            .message
                            .header_as_record_batch()
                            .expect("checked by frame::parse");
                        let body = whole.slice_with_length(frame.body.start, frame.body.len());
                        let validate = !self.skip_validation.get();
                        if let Some(batch) = plan
                            .decode(&body, &batch, &self.dictionaries, validate)
                            .map_err(decode)?
                        {
                            return Ok(Some(batch));
                        }
                    }
                    let schema = self.schema.clone().ok_or(ArrowShmError::NoSchema)?;
                    read_batch_at(
                        &whole,
                        0,
                        &frame,
                        schema,
                        &self.dictionaries,
                        self.skip_validation.clone(),
                    )
                    .map(Some)
                    .map_err(decode)
                }
            }
        }));
        result.unwrap_or_else(|panic| {
            let what = crate::panic_message(&*panic);
            Err(ArrowShmError::Corrupt {
                seq,
                slot,
                reason: format!("decoder panicked: {what}"),
            })
        })
    }

    fn read_dictionary(
        &mut self,
        frame: &Frame<'_>,
        body: &Buffer,
    ) -> Result<(), arrow_schema::ArrowError> {
        let schema = self
            .schema
            .clone()
            .ok_or_else(|| arrow_schema::ArrowError::IpcError("dictionary before schema".into()))?;
        let dict = frame
            .message
            .header_as_dictionary_batch()
            .expect("checked by frame::parse");
        read_dictionary_impl(
            body,
            dict,
            &schema,
            &mut self.dictionaries,
            &frame.message.version(),
            true,
            self.skip_validation.clone(),
        )
    }

    /// Installs the schema of a schema message; a different schema after
    /// the first is refused (LAYOUT.md §8.2).
    fn install_schema(&mut self, frame: &Frame<'_>) -> Result<(), SchemaIssue> {
        let fb = frame.message.header_as_schema().ok_or_else(|| {
            SchemaIssue::Decode(arrow_schema::ArrowError::IpcError(
                "schema header missing".into(),
            ))
        })?;
        let schema = arrow_ipc::convert::try_fb_to_schema(fb).map_err(SchemaIssue::Decode)?;
        match &self.schema {
            Some(old) if **old != schema => Err(SchemaIssue::Changed),
            Some(_) => Ok(()),
            None => {
                let schema = Arc::new(schema);
                self.plan = DecodePlan::new(&schema);
                self.cdata_plan = CDataPlan::new(&schema);
                self.schema = Some(schema);
                Ok(())
            }
        }
    }

    /// Reads the schema from the ring's schema area (LAYOUT.md §9).
    pub(crate) fn load_schema_area(&mut self) -> Result<(), ArrowShmError> {
        let bytes = self.ring.schema()?.ok_or(ArrowShmError::NoSchema)?;
        let bad = |reason: String| ArrowShmError::CorruptSchema { reason };
        let frame = frame::parse(&bytes).map_err(bad)?;
        if frame.message.header_type() != MessageHeader::Schema {
            return Err(bad(format!(
                "schema area holds a {:?} message",
                frame.message.header_type()
            )));
        }
        self.install_schema(&frame).map_err(|e| match e {
            SchemaIssue::Decode(e) => bad(e.to_string()),
            SchemaIssue::Changed => bad("differs from the schema in use".into()),
        })
    }
}

/// Decodes the record batch message `frame`, parsed from `whole[at..]`, in
/// place: the batch's buffers are slices of `whole` (which owns the slot),
/// 64-byte alignment is required, never fixed by copying. Used by
/// [`IpcReader`] (`at` = 0) and by the request/reply channel, whose IPC
/// messages follow an envelope (LAYOUT.md §12.2).
pub(crate) fn read_batch_at(
    whole: &Buffer,
    at: usize,
    frame: &Frame<'_>,
    schema: SchemaRef,
    dictionaries: &HashMap<i64, ArrayRef>,
    skip_validation: UnsafeFlag,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let batch = frame
        .message
        .header_as_record_batch()
        .ok_or_else(|| arrow_schema::ArrowError::IpcError("not a record batch message".into()))?;
    let version = frame.message.version();
    let body = whole.slice_with_length(at + frame.body.start, frame.body.len());
    RecordBatchDecoder::try_new(&body, batch, schema, dictionaries, &version).and_then(|d| {
        d.with_require_alignment(true)
            .with_skip_validation(skip_validation)
            .read_record_batch()
    })
}

enum SchemaIssue {
    Decode(arrow_schema::ArrowError),
    Changed,
}

impl Iterator for IpcReader {
    type Item = Result<RecordBatch, ArrowShmError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}
