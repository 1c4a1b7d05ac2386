//! Producer side of IPC mode: record batches encoded by arrow-ipc with
//! 64-byte alignment, one message per slot (LAYOUT.md §8).

use arrow_array::RecordBatch;
use arrow_ipc::writer::{
    write_message, DictionaryHandling, DictionaryTracker, EncodedData, IpcDataGenerator,
    IpcWriteContext, IpcWriteOptions,
};
use arrow_ipc::MetadataVersion;
use arrow_schema::SchemaRef;

use super::encode_plan::EncodePlan;
use super::frame::{padded_header_len, ALIGN};
use super::{flags, ArrowShmError};
use crate::ring::{Producer, RingError};

/// Writes record batches into a ring as Arrow IPC messages: the schema
/// (into the schema area and as the first message), dictionary batches when
/// they change, then one message per batch. [`IpcWriter::close`] ends the
/// stream.
///
/// Record batches of a flat schema (primitives, fixed-size binary,
/// booleans, utf8/binary and their large forms, dictionaries of those) are
/// written straight into the reserved slot by a per-schema plan: arrow-ipc's
/// message for the schema is kept as a template, patched per batch, and each
/// buffer is copied once, with the bytes arrow-ipc would produce. Other
/// schemas, empty batches, bitmaps at a bit offset that is not a multiple of
/// 8 and changed dictionaries go through arrow-ipc, which encodes into its
/// own buffer first; the writer then copies that into the slot.
pub struct IpcWriter {
    producer: Producer,
    schema: SchemaRef,
    generator: IpcDataGenerator,
    tracker: DictionaryTracker,
    context: IpcWriteContext,
    options: IpcWriteOptions,
    started: bool,
    bytes: u64,
    /// The direct encode plan, `None` for a schema it does not carry or
    /// when switched off.
    plan: Option<EncodePlan>,
    /// Record batches the plan wrote (the tests check it is used).
    pub(crate) direct_batches: u64,
}

impl std::fmt::Debug for IpcWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcWriter")
            .field("producer", &self.producer)
            .field("schema", &self.schema)
            .finish()
    }
}

impl IpcWriter {
    /// A writer of batches with `schema` through `producer`. Nothing is sent
    /// until the first [`write`](IpcWriter::write) (or `close`).
    pub fn new(producer: Producer, schema: SchemaRef) -> Result<IpcWriter, ArrowShmError> {
        let options = write_options()?;
        let plan = EncodePlan::new(&schema);
        Ok(IpcWriter {
            producer,
            schema,
            generator: IpcDataGenerator::default(),
            // Replacing a dictionary is allowed in a stream.
            tracker: DictionaryTracker::new(false),
            context: IpcWriteContext::default(),
            options,
            started: false,
            bytes: 0,
            plan,
            direct_batches: 0,
        })
    }

    /// Whether record batches of a flat schema are written straight into
    /// the slot (on by default, see [`IpcWriter`]); off, every message goes
    /// through arrow-ipc's encoder and is copied into the slot. The bytes
    /// are the same either way; the switch exists to compare the two.
    pub fn with_direct_encode(mut self, on: bool) -> IpcWriter {
        self.plan = if on {
            EncodePlan::new(&self.schema)
        } else {
            None
        };
        self
    }

    /// Sends a dictionary that only grew (its old values are a prefix of
    /// the new ones) as a delta dictionary batch with just the new values
    /// (LAYOUT.md §8.2), instead of the whole dictionary again. Off by
    /// default; readers in both languages apply deltas.
    pub fn with_dictionary_deltas(mut self, on: bool) -> IpcWriter {
        let handling = if on {
            DictionaryHandling::Delta
        } else {
            DictionaryHandling::Resend
        };
        self.options = self.options.with_dictionary_handling(handling);
        self
    }

    /// The stream's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Total payload bytes published so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes
    }

    /// The underlying producer.
    pub fn producer_mut(&mut self) -> &mut Producer {
        &mut self.producer
    }

    /// Sends `batch` (after the schema and any new dictionaries). A batch
    /// whose schema differs from the stream's is refused with
    /// [`ArrowShmError::SchemaMismatch`]. A batch whose message would not
    /// fit in a slot is split into row ranges that do (halved until each
    /// part fits), so one `write` may publish several record batches, as
    /// the Go `arrowshm.Writer` does; a single row that does not fit fails
    /// with [`RingError::MessageTooLarge`], as does a dictionary that does
    /// not fit (which fails the stream).
    ///
    /// A failed write (e.g. [`RingError::Full`] or [`RingError::Timeout`]
    /// from the producer's backpressure) leaves the writer usable: the
    /// caller may write again once readers have caught up, the same batch
    /// or another. A dictionary whose message could not be sent is sent
    /// (whole) with the next batch, so readers never see a batch that
    /// refers to a dictionary they did not get. Only a batch that was split
    /// may have been sent in part: the halves already published stay
    /// published, and writing the batch again repeats their rows.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowShmError> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(ArrowShmError::SchemaMismatch);
        }
        self.start()?;
        if let Some(plan) = &mut self.plan {
            if let Some(len) = plan.prepare(batch) {
                if len <= self.producer.max_message_size() {
                    let slots = self.producer.max_slots();
                    let mut slot = self.producer.reserve(len)?;
                    plan.write(batch, &mut slot[..len], slots);
                    slot.publish(len, flags::IPC_RECORD_BATCH)?;
                    self.bytes += len as u64;
                    self.direct_batches += 1;
                    return Ok(());
                }
            }
            // arrow-ipc's tracker decides about the dictionaries of this
            // batch; they are taken as sent once the write succeeded.
            plan.forget_dictionaries();
        }
        // The tracker keeps each dictionary column it sends, keys included,
        // for the rest of the stream: given copies, it holds no slot of a
        // batch read in place from another ring (a relay).
        let batch = super::detach_dictionaries(batch);
        self.write_split(&batch)?;
        if let Some(plan) = &mut self.plan {
            plan.remember_dictionaries(&batch);
        }
        Ok(())
    }

    /// Encodes and sends `batch`, halving it while its message is larger
    /// than a slot.
    fn write_split(&mut self, batch: &RecordBatch) -> Result<(), ArrowShmError> {
        let (dictionaries, encoded) = self
            .generator
            .encode(batch, &mut self.tracker, &self.options, &mut self.context)
            .map_err(ArrowShmError::Encode)?;
        // The tracker now counts these dictionaries as sent, so they go out
        // even when the batch itself is too large: its halves (which share
        // the dictionaries) must not lose a changed one.
        for d in dictionaries {
            if let Err(e) = self.send(d, flags::IPC_DICTIONARY_BATCH) {
                // Not sent after all (full ring, timeout, …): the tracker
                // must not say it was, or a later write of the same
                // dictionary would refer to one the readers never got.
                self.forget_sent_dictionaries();
                return Err(e);
            }
        }
        if batch.num_rows() > 0 {
            if let Some(plan) = &mut self.plan {
                if plan.needs_template() && !plan.set_template(&encoded.ipc_message) {
                    self.plan = None;
                }
            }
        }
        let max = self.producer.max_message_size();
        let len = message_len(&encoded);
        if len > max {
            let rows = batch.num_rows();
            if rows <= 1 {
                return Err(RingError::MessageTooLarge { len, max }.into());
            }
            let half = rows / 2;
            self.write_split(&batch.slice(0, half))?;
            return self.write_split(&batch.slice(half, rows - half));
        }
        self.send(encoded, flags::IPC_RECORD_BATCH)
    }

    /// Makes the tracker forget every dictionary it counts as sent, so the
    /// next batch sends each of its dictionaries again, whole (a reader
    /// replaces what it had). arrow-ipc's tracker cannot unlearn one
    /// dictionary, and `clear` would also drop the dictionary ids the schema
    /// assigned: a fresh tracker is given the same ids by numbering the
    /// schema again, as `start` did (the bytes are not sent again).
    fn forget_sent_dictionaries(&mut self) {
        self.tracker = DictionaryTracker::new(false);
        self.generator.schema_to_bytes_with_dictionary_tracker(
            &self.schema,
            &mut self.tracker,
            &self.options,
        );
    }

    /// Publishes the schema if not done yet (LAYOUT.md §8.2).
    fn start(&mut self) -> Result<(), ArrowShmError> {
        if self.started {
            return Ok(());
        }
        // A fresh tracker each attempt: numbering the schema appends its
        // dictionary ids to the tracker, so a retry after a failed send
        // would otherwise number them anew (1 instead of 0, …) while the
        // batches still take the first ids.
        let mut tracker = DictionaryTracker::new(false);
        self.bytes += publish_schema(
            &mut self.producer,
            &self.schema,
            &self.generator,
            &mut tracker,
            &self.options,
        )?;
        self.tracker = tracker;
        self.started = true;
        Ok(())
    }

    fn send(&mut self, encoded: EncodedData, flag: u32) -> Result<(), ArrowShmError> {
        let len = message_len(&encoded);
        let mut slot = self.producer.reserve(len)?;
        let (meta, body) = write_message(&mut slot[..len], encoded, &self.options)
            .map_err(ArrowShmError::Encode)?;
        debug_assert_eq!(meta + body, len);
        slot.publish(len, flag)?;
        self.bytes += len as u64;
        Ok(())
    }

    /// Sends the schema if no batch was written, then ends the stream. The
    /// stream is ended even when the schema cannot be sent (full ring,
    /// timeout): consumers see end-of-stream instead of waiting for ever,
    /// and the error is returned.
    pub fn close(mut self) -> Result<(), ArrowShmError> {
        let schema = self.start();
        self.producer.close();
        schema
    }
}

/// The IPC options of every message the writers encode: 64-byte
/// alignment, no legacy prefix, metadata version 5 (LAYOUT.md §8.1).
pub(crate) fn write_options() -> Result<IpcWriteOptions, ArrowShmError> {
    IpcWriteOptions::try_new(ALIGN, false, MetadataVersion::V5).map_err(ArrowShmError::Encode)
}

/// Encodes `schema` as a framed IPC schema message and publishes it
/// (LAYOUT.md §8.2): into the schema area for late joiners, then as the
/// stream's first message with flag `IPC_SCHEMA`. `tracker` assigns the
/// dictionary ids of the schema's dictionary fields. Returns the message's
/// length. Shared by [`IpcWriter`] and [`super::CDataWriter`].
pub(crate) fn publish_schema(
    producer: &mut Producer,
    schema: &SchemaRef,
    generator: &IpcDataGenerator,
    tracker: &mut DictionaryTracker,
    options: &IpcWriteOptions,
) -> Result<u64, ArrowShmError> {
    let encoded = generator.schema_to_bytes_with_dictionary_tracker(schema, tracker, options);
    let mut bytes = Vec::with_capacity(message_len(&encoded));
    write_message(&mut bytes, encoded, options).map_err(ArrowShmError::Encode)?;
    producer.set_schema(&bytes)?;
    producer.send(&bytes, flags::IPC_SCHEMA)?;
    Ok(bytes.len() as u64)
}

/// Length of the framed message: prefix and metadata padded to 64, body.
pub(crate) fn message_len(e: &EncodedData) -> usize {
    padded_header_len(e.ipc_message.len()) + e.arrow_data.len()
}

/// What a transfer moved: record batches, rows, ring messages and their
/// payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Record batches: read from the input (`send`; a batch split to fit
    /// the slots is still one) or received and written out (`recv`).
    pub batches: u64,
    /// Rows over all batches.
    pub rows: u64,
    /// Ring messages: the schema, dictionary batches, and every piece of a
    /// split batch count one each.
    pub messages: u64,
    /// Payload bytes of all messages (schema, dictionaries, batches).
    pub bytes: u64,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{{\"batches\":{},\"rows\":{},\"messages\":{},\"bytes\":{}}}",
            self.batches, self.rows, self.messages, self.bytes
        )
    }
}

/// Writes `batch`, halving it (recursively) when it does not fit in a slot.
pub fn write_split(w: &mut IpcWriter, batch: &RecordBatch) -> Result<(), ArrowShmError> {
    match w.write(batch) {
        Err(ArrowShmError::Ring(RingError::MessageTooLarge { .. })) if batch.num_rows() > 1 => {
            let half = batch.num_rows() / 2;
            write_split(w, &batch.slice(0, half))?;
            write_split(w, &batch.slice(half, batch.num_rows() - half))
        }
        other => other,
    }
}
