//! Encoding a record batch into a channel slot after its envelope, and
//! decoding one in place (LAYOUT.md §12.2).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_data::UnsafeFlag;
use arrow_ipc::reader::read_dictionary_impl;
use arrow_ipc::writer::{
    write_message, DictionaryTracker, EncodedData, IpcDataGenerator, IpcWriteContext,
    IpcWriteOptions,
};
use arrow_ipc::{MessageHeader, MetadataVersion};
use arrow_schema::SchemaRef;

use super::envelope::{Envelope, Kind, ENVELOPE_LEN};
use super::{ReqRepError, FLAG};
use crate::arrow::encode_plan::EncodePlan;
use crate::arrow::frame::{self, ALIGN};
use crate::arrow::has_dictionary;
use crate::arrow::reader::{lease_buffer, read_batch_at};
use crate::arrow::writer::message_len;
use crate::ring::{Lease, Producer, RingError};

/// A batch encoded for one message: the framed schema message, the
/// dictionary batch messages of its dictionary-encoded columns and the
/// record batch message (still to be framed into the slot).
pub(crate) struct Encoded {
    schema: Arc<Vec<u8>>,
    dictionaries: Vec<EncodedData>,
    batch: EncodedData,
}

impl Encoded {
    /// The envelope lengths `(schema_len, batch_len)`: the batch section
    /// holds the dictionary messages, then the record batch message.
    pub(crate) fn lens(&self) -> (usize, usize) {
        let dicts: usize = self.dictionaries.iter().map(message_len).sum();
        (self.schema.len(), dicts + message_len(&self.batch))
    }
}

/// A batch laid out by [`Encoder::plan`]: its framed schema message and the
/// length of its record batch message.
pub(crate) type Planned = (Arc<Vec<u8>>, usize);

/// Encodes batches with arrow-ipc (alignment 64), caching the framed schema
/// message of the last schema seen. For that schema, when it is flat and
/// has no dictionary column, it also keeps [`IpcWriter`]'s direct encode
/// plan (`crate::arrow::encode_plan`): [`Encoder::plan`] and
/// [`Encoder::publish_planned`] then write the record batch message
/// straight into the slot (one copy of each buffer, no arrow-ipc encode,
/// no intermediate `Vec`), the same bytes as `encode` + `publish`.
///
/// [`IpcWriter`]: crate::arrow::IpcWriter
pub(crate) struct Encoder {
    generator: IpcDataGenerator,
    options: IpcWriteOptions,
    last_schema: Option<(SchemaRef, Arc<Vec<u8>>)>,
    /// The direct plan of the last schema: `None` when the schema has
    /// columns it does not carry or dictionaries (which every message
    /// sends, so they go through arrow-ipc), or its template was refused.
    plan: Option<EncodePlan>,
}

impl Encoder {
    pub(crate) fn new() -> Encoder {
        Encoder {
            generator: IpcDataGenerator::default(),
            options: IpcWriteOptions::try_new(ALIGN, false, MetadataVersion::V5)
                .expect("alignment 64 and V5 are valid options"),
            last_schema: None,
            plan: None,
        }
    }

    /// The framed schema message of `schema` (cached for the last schema;
    /// a new one also gets its own direct plan).
    fn schema_message(&mut self, schema: &SchemaRef) -> Result<Arc<Vec<u8>>, ReqRepError> {
        if let Some((s, bytes)) = &self.last_schema {
            if Arc::ptr_eq(s, schema) || **s == **schema {
                return Ok(bytes.clone());
            }
        }
        let mut tracker = DictionaryTracker::new(false);
        let encoded = self.generator.schema_to_bytes_with_dictionary_tracker(
            schema,
            &mut tracker,
            &self.options,
        );
        let mut bytes = Vec::with_capacity(message_len(&encoded));
        write_message(&mut bytes, encoded, &self.options).map_err(ReqRepError::Encode)?;
        debug_assert_eq!(bytes.len() % ALIGN, 0);
        let bytes = Arc::new(bytes);
        self.last_schema = Some((schema.clone(), bytes.clone()));
        self.plan = if schema
            .fields()
            .iter()
            .any(|f| has_dictionary(f.data_type()))
        {
            None
        } else {
            EncodePlan::new(schema)
        };
        Ok(bytes)
    }

    /// Lays out `batch` for [`Encoder::publish_planned`]: its schema
    /// message and the length of its record batch message, or `None` when
    /// it goes through [`Encoder::encode`] (no plan for its schema, no
    /// template yet — the first encoded batch with rows gives it —, no
    /// rows, a bitmap at a bit offset). Only the last batch planned can be
    /// published.
    pub(crate) fn plan(&mut self, batch: &RecordBatch) -> Result<Option<Planned>, ReqRepError> {
        let schema = self.schema_message(&batch.schema())?;
        Ok(self
            .plan
            .as_mut()
            .and_then(|p| p.prepare(batch))
            .map(|len| (schema, len)))
    }

    /// Publishes `env` (its lengths filled in here), the schema message
    /// `schema` and the record batch message of `batch`, which
    /// [`Encoder::plan`] just laid out (`batch_len` bytes), written straight
    /// into the slot. Fails with [`RingError::MessageTooLarge`] before
    /// anything is written when it does not fit.
    pub(crate) fn publish_planned(
        &self,
        producer: &mut Producer,
        mut env: Envelope,
        schema: &[u8],
        batch_len: usize,
        batch: &RecordBatch,
    ) -> Result<u64, ReqRepError> {
        let plan = self
            .plan
            .as_ref()
            .expect("Encoder::plan laid the batch out");
        let len = ENVELOPE_LEN + schema.len() + batch_len;
        let max = producer.max_message_size();
        if len > max {
            return Err(RingError::MessageTooLarge { len, max }.into());
        }
        env.schema_len = schema.len() as u32;
        env.batch_len = batch_len as u32;
        env.text_len = 0;
        let slots = producer.max_slots();
        let mut slot = producer.reserve(len)?;
        env.write_to(&mut slot[..ENVELOPE_LEN]);
        let at = ENVELOPE_LEN + schema.len();
        slot[ENVELOPE_LEN..at].copy_from_slice(schema);
        plan.write(batch, &mut slot[at..len], slots);
        Ok(slot.publish(len, FLAG)?)
    }

    /// Encodes `batch`: its schema message, one dictionary batch message
    /// per dictionary of its dictionary-encoded columns (at any depth) and
    /// its record batch message (LAYOUT.md §12.2). Every message carries
    /// its own dictionaries: nothing is remembered between messages.
    pub(crate) fn encode(&mut self, batch: &RecordBatch) -> Result<Encoded, ReqRepError> {
        let schema = batch.schema();
        let schema_bytes = self.schema_message(&schema)?;
        // A fresh tracker: every dictionary of the batch is sent, whole
        // (never a delta), and the tracker keeps no array afterwards. It
        // learns the dictionary ids from the schema (as the schema message
        // numbers them).
        let mut tracker = DictionaryTracker::new(false);
        if schema
            .fields()
            .iter()
            .any(|f| has_dictionary(f.data_type()))
        {
            self.generator.schema_to_bytes_with_dictionary_tracker(
                &schema,
                &mut tracker,
                &self.options,
            );
        }
        let mut context = IpcWriteContext::default();
        let (dictionaries, batch_message) = self
            .generator
            .encode(batch, &mut tracker, &self.options, &mut context)
            .map_err(ReqRepError::Encode)?;
        if batch.num_rows() > 0 {
            if let Some(plan) = &mut self.plan {
                if plan.needs_template() && !plan.set_template(&batch_message.ipc_message) {
                    self.plan = None;
                }
            }
        }
        Ok(Encoded {
            schema: schema_bytes,
            dictionaries,
            batch: batch_message,
        })
    }

    /// Reserves a slot and publishes `env` (whose lengths are filled in
    /// here) followed by `enc`. Fails with [`RingError::MessageTooLarge`]
    /// before anything is written when it does not fit.
    pub(crate) fn publish(
        &self,
        producer: &mut Producer,
        mut env: Envelope,
        enc: Encoded,
    ) -> Result<u64, ReqRepError> {
        let (schema_len, batch_len) = enc.lens();
        let len = ENVELOPE_LEN + schema_len + batch_len;
        let max = producer.max_message_size();
        if len > max {
            return Err(RingError::MessageTooLarge { len, max }.into());
        }
        env.schema_len = schema_len as u32;
        env.batch_len = batch_len as u32;
        env.text_len = 0;
        let mut slot = producer.reserve(len)?;
        env.write_to(&mut slot[..ENVELOPE_LEN]);
        slot[ENVELOPE_LEN..ENVELOPE_LEN + schema_len].copy_from_slice(&enc.schema);
        let mut at = ENVELOPE_LEN + schema_len;
        for d in enc.dictionaries {
            // A multiple of 64 bytes (buffers padded to 64), so the next
            // message starts aligned.
            let n = message_len(&d);
            write_message(&mut slot[at..at + n], d, &self.options).map_err(ReqRepError::Encode)?;
            at += n;
        }
        write_message(&mut slot[at..len], enc.batch, &self.options).map_err(ReqRepError::Encode)?;
        Ok(slot.publish(len, FLAG)?)
    }
}

/// Publishes an `ERROR` message: `env` with `status` and `text` (cut at a
/// character boundary to fit the slot).
pub(crate) fn publish_error(
    producer: &mut Producer,
    mut env: Envelope,
    status: u32,
    text: &str,
) -> Result<u64, ReqRepError> {
    let room = producer.max_message_size().saturating_sub(ENVELOPE_LEN);
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text.as_bytes()[..end];
    env.kind = Kind::Error;
    env.status = status;
    env.schema_len = 0;
    env.batch_len = 0;
    env.text_len = text.len() as u32;
    let len = ENVELOPE_LEN + text.len();
    let mut slot = producer.reserve(len)?;
    env.write_to(&mut slot[..ENVELOPE_LEN]);
    slot[ENVELOPE_LEN..len].copy_from_slice(text);
    Ok(slot.publish(len, FLAG)?)
}

/// Reads and checks the envelope of a received channel message: its flags,
/// the envelope itself, its lengths against the slot, and its kind against
/// those expected on this ring.
pub(crate) fn read_envelope(lease: &Lease, expect: &[Kind]) -> Result<Envelope, ReqRepError> {
    if lease.flags() != FLAG {
        return Err(ReqRepError::BadMessage(format!(
            "message {} has slot flags {:#x}, not a request/reply message ({FLAG:#x})",
            lease.seq(),
            lease.flags()
        )));
    }
    let env = Envelope::parse(lease)?;
    env.check_len(lease.len())?;
    if !expect.contains(&env.kind) {
        return Err(ReqRepError::BadMessage(format!(
            "a {:?} message on a ring that carries {expect:?}",
            env.kind
        )));
    }
    Ok(env)
}

/// The payload of a received message.
pub(crate) enum Body {
    /// A request or reply batch (in place: it holds the slot).
    Batch(RecordBatch),
    /// An error reply.
    Error {
        /// §12.4 status.
        status: u32,
        /// The error text.
        text: String,
    },
}

/// Decodes message payloads in place, caching the last schema. Array
/// contents are always validated: the peer is another process.
pub(crate) struct Decoder {
    last_schema: Option<(Vec<u8>, SchemaRef)>,
}

impl Decoder {
    pub(crate) fn new() -> Decoder {
        Decoder { last_schema: None }
    }

    /// Decodes the payload of `lease`, whose envelope `env` was read by
    /// [`read_envelope`]. A batch points into the slot, which it holds.
    pub(crate) fn decode(&mut self, env: &Envelope, lease: Lease) -> Result<Body, ReqRepError> {
        if env.kind == Kind::Error {
            let text = &lease[ENVELOPE_LEN..ENVELOPE_LEN + env.text_len as usize];
            return Ok(Body::Error {
                status: env.status,
                text: String::from_utf8_lossy(text).into_owned(),
            });
        }
        let whole = lease_buffer(lease);
        // A panic inside arrow-ipc on data the frame checks did not catch is
        // reported as a bad message, like IpcReader does.
        std::panic::catch_unwind(AssertUnwindSafe(|| self.decode_batch(env, &whole)))
            .unwrap_or_else(|panic| {
                let what = crate::panic_message(&*panic);
                Err(ReqRepError::BadMessage(format!("decoder panicked: {what}")))
            })
    }

    fn decode_batch(&mut self, env: &Envelope, whole: &Buffer) -> Result<Body, ReqRepError> {
        let s_end = ENVELOPE_LEN + env.schema_len as usize;
        let b_end = s_end + env.batch_len as usize;
        let schema_bytes = &whole[ENVELOPE_LEN..s_end];
        let schema = match &self.last_schema {
            Some((bytes, schema)) if bytes.as_slice() == schema_bytes => schema.clone(),
            _ => {
                let f = frame::parse(schema_bytes)
                    .map_err(|e| ReqRepError::BadMessage(format!("schema message: {e}")))?;
                let fb = f
                    .message
                    .header_as_schema()
                    .filter(|_| f.message.header_type() == MessageHeader::Schema)
                    .ok_or_else(|| {
                        ReqRepError::BadMessage(format!(
                            "schema_len covers a {:?} message, not a schema",
                            f.message.header_type()
                        ))
                    })?;
                let schema = Arc::new(
                    arrow_ipc::convert::try_fb_to_schema(fb).map_err(ReqRepError::Decode)?,
                );
                self.last_schema = Some((schema_bytes.to_vec(), schema.clone()));
                schema
            }
        };
        // The batch section: dictionary batch messages, then the record
        // batch message, each starting 64-byte aligned (LAYOUT.md §12.2).
        let mut dictionaries = HashMap::new();
        let mut at = s_end;
        loop {
            let f = frame::parse(&whole[at..b_end])
                .map_err(|e| ReqRepError::BadMessage(format!("message at {at}: {e}")))?;
            match f.message.header_type() {
                MessageHeader::RecordBatch => {
                    if at + f.body.end != b_end {
                        return Err(ReqRepError::BadMessage(format!(
                            "{} bytes after the record batch message",
                            b_end - at - f.body.end
                        )));
                    }
                    let batch =
                        read_batch_at(whole, at, &f, schema, &dictionaries, UnsafeFlag::new())
                            .map_err(ReqRepError::Decode)?;
                    return Ok(Body::Batch(batch));
                }
                MessageHeader::DictionaryBatch => {
                    let dict = f
                        .message
                        .header_as_dictionary_batch()
                        .expect("checked by frame::parse");
                    if dict.isDelta() {
                        return Err(ReqRepError::BadMessage(
                            "a delta dictionary batch (channel messages carry whole dictionaries)"
                                .into(),
                        ));
                    }
                    // In place: the dictionary shares the slot the batch holds.
                    let body = whole.slice_with_length(at + f.body.start, f.body.len());
                    read_dictionary_impl(
                        &body,
                        dict,
                        &schema,
                        &mut dictionaries,
                        &f.message.version(),
                        true,
                        UnsafeFlag::new(),
                    )
                    .map_err(ReqRepError::Decode)?;
                    at += f.body.end;
                    if at % ALIGN != 0 {
                        return Err(ReqRepError::BadMessage(format!(
                            "a message ends at {at}, not on a {ALIGN}-byte boundary"
                        )));
                    }
                }
                other => {
                    return Err(ReqRepError::BadMessage(format!(
                        "batch_len covers a {other:?} message, not dictionaries and a record batch"
                    )))
                }
            }
        }
    }
}
