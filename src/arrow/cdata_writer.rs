//! Producer side of the C-Data-offsets mode (LAYOUT.md §8.3): each record
//! batch goes into one slot as its buffers (each at a 64-byte aligned
//! payload offset) followed by a descriptor of its array tree, the C Data
//! Interface's `ArrowArray` fields with payload offsets in place of
//! pointers. [`super::cdata`] is the reader of the same format.
//!
//! The writer first *plans* a batch: it walks every column's `ArrayData`,
//! decides which bytes of which buffer go where, and so learns the exact
//! message length without touching the ring. Only a batch that fits is
//! given a slot, and its buffers are copied straight into it (one copy; no
//! intermediate payload buffer).
//!
//! Every node is written *normalized*: as if the array had been sliced to
//! its logical range, with `offset` 0. Fixed-width and bitmap buffers are
//! cut to exactly the elements of that range, offsets buffers are rebased to
//! start at 0 (their values or child array cut to the range they point
//! into), and struct, sparse union and fixed-size list children are sliced
//! like their parent. A small slice of a large batch therefore costs the
//! slice's bytes, not the parent's; a dense union's offsets are rebased per
//! child the same way. Exceptions: run-end encoded nodes keep their logical
//! `offset` (their children go whole), and the variadic data buffers of
//! view types and dictionary values go whole.

use arrow_array::cast::AsArray;
use arrow_array::{downcast_primitive_array, Array, RecordBatch};
use arrow_buffer::{bit_mask::set_bits, Buffer};
use arrow_data::{layout, ArrayData, BufferSpec};
use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator};
use arrow_schema::{ArrowError, DataType, Schema, SchemaRef, UnionFields, UnionMode};

use super::cdata_reader::{Node, BUFFER_SIZE, HEADER_SIZE, MAGIC, MAX_DEPTH, NODE_SIZE, VERSION};
use super::writer::{publish_schema, write_options};
use super::{flags, ArrowShmError};
use crate::ring::{Producer, RingError};

/// Buffers start at payload offsets that are multiples of this.
const ALIGN: usize = 64;

/// Writes record batches into a ring in C-Data-offsets mode (LAYOUT.md
/// §8.3, slot flag 3): the schema first, exactly as [`super::IpcWriter`]
/// sends it (into the schema area and as an `IPC_SCHEMA` message), then one
/// slot per batch holding the batch's buffers and a descriptor of its array
/// tree. Dictionary values travel inside every batch (there are no
/// dictionary messages). [`IpcReader`](super::IpcReader) reads these batches
/// in place, without a copy. [`CDataWriter::close`] ends the stream. Also
/// made by [`ProducerBuilder::cdata_writer`](crate::ring::ProducerBuilder::cdata_writer).
///
/// Each buffer is copied once, straight into the reserved slot. A batch is
/// never split: one that does not fit in a slot is refused with
/// [`RingError::MessageTooLarge`] and nothing is published.
///
/// **Types.** Every Arrow type arrow-rs holds is carried, list views
/// included (their offsets and sizes are cut to the node's range, the
/// child goes whole); only nesting deeper than the readers accept (64
/// levels) is refused by [`CDataWriter::new`] with
/// [`ArrowShmError::UnsupportedType`]. A field with
/// extension metadata (`ARROW:extension:name`) goes as its storage type;
/// the metadata travels in the schema message, so readers see the extension
/// name on the field.
///
/// ```
/// use std::sync::Arc;
/// use alloy_shm::arrow::{in_mapping_all, CDataWriter, IpcReader};
/// use alloy_shm::ring::Ring;
/// use arrow_array::{Int64Array, RecordBatch, StringArray};
///
/// let ring = Ring::anonymous_builder().slot_count(8).slot_size(1 << 16).create()?;
/// let mut reader = IpcReader::new(ring.subscribe()?);
/// let batch = RecordBatch::try_from_iter([
///     ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
///     ("name", Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])) as _),
/// ])?;
/// let mut writer = CDataWriter::new(ring.producer()?, batch.schema())?;
/// writer.write(&batch.slice(1, 2))?;
/// writer.close()?;
///
/// let got = reader.next_batch()?.expect("a batch");
/// assert_eq!(got, batch.slice(1, 2));
/// assert!(in_mapping_all(&ring, &got)); // read in place
/// drop(got);
/// assert!(reader.next_batch()?.is_none()); // end of stream
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CDataWriter {
    producer: Producer,
    schema: SchemaRef,
    started: bool,
    bytes: u64,
    /// Reused from batch to batch.
    plan: Plan,
}

impl std::fmt::Debug for CDataWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CDataWriter")
            .field("producer", &self.producer)
            .field("schema", &self.schema)
            .finish()
    }
}

impl CDataWriter {
    /// A writer of batches with `schema` through `producer`, or
    /// [`ArrowShmError::UnsupportedType`] (naming the column) when the
    /// schema holds a type the mode does not carry (see
    /// [`CDataWriter::check_schema`]). Nothing is sent until the first
    /// [`write`](CDataWriter::write) (or `close`).
    pub fn new(producer: Producer, schema: SchemaRef) -> Result<CDataWriter, ArrowShmError> {
        CDataWriter::check_schema(&schema)?;
        Ok(CDataWriter {
            producer,
            schema,
            started: false,
            bytes: 0,
            plan: Plan::default(),
        })
    }

    /// Whether the C-Data-offsets mode carries every column of `schema`:
    /// [`ArrowShmError::UnsupportedType`] naming the first column whose
    /// nesting is deeper than 64 levels (a dictionary's values count as one
    /// level).
    pub fn check_schema(schema: &Schema) -> Result<(), ArrowShmError> {
        for f in schema.fields() {
            check_type(f.data_type(), 1).map_err(|reason| ArrowShmError::UnsupportedType {
                column: f.name().clone(),
                reason,
            })?;
        }
        Ok(())
    }

    /// The stream's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Total payload bytes published so far (the schema message and every
    /// batch).
    pub fn bytes_sent(&self) -> u64 {
        self.bytes
    }

    /// The underlying producer.
    pub fn producer_mut(&mut self) -> &mut Producer {
        &mut self.producer
    }

    /// Sends `batch` (after the schema, the first time). A batch whose
    /// schema differs from the stream's is refused with
    /// [`ArrowShmError::SchemaMismatch`]; one whose message would not fit
    /// in a slot with [`RingError::MessageTooLarge`] (the mode does not
    /// split batches: send smaller ones). Either way nothing of the batch
    /// is published, and the size check happens before a slot is waited
    /// for (the first write may still wait for one to publish the schema,
    /// which is sent only once a batch passed that check).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowShmError> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(ArrowShmError::SchemaMismatch);
        }
        let result = self.write_planned(batch);
        // The plan holds references to the batch's buffers: drop them now
        // (they may pin another ring's slot), keeping the vectors' room.
        self.plan.clear();
        result
    }

    fn write_planned(&mut self, batch: &RecordBatch) -> Result<(), ArrowShmError> {
        self.plan.clear();
        for c in batch.columns() {
            // Flat columns straight from the typed array; the others (and
            // dictionaries) through their `ArrayData`, built per batch.
            match self.plan.flat_node(c.as_ref()) {
                Some(r) => r,
                None => self.plan.node(&c.to_data(), 1),
            }
            .map_err(|e| ArrowShmError::Encode(ArrowError::InvalidArgumentError(e)))?;
        }
        let len = self.plan.message_len();
        let max = self.producer.max_message_size();
        if len > max {
            return Err(RingError::MessageTooLarge { len, max }.into());
        }
        self.start()?;
        let slots = self.producer.max_slots();
        let mut slot = self.producer.reserve(len)?;
        self.plan.write(
            &mut slot[..len],
            batch.num_rows(),
            batch.num_columns(),
            slots,
        );
        slot.publish(len, flags::CDATA_OFFSETS)?;
        self.bytes += len as u64;
        Ok(())
    }

    /// Publishes the schema if not done yet (LAYOUT.md §8.2).
    fn start(&mut self) -> Result<(), ArrowShmError> {
        if self.started {
            return Ok(());
        }
        self.bytes += publish_schema(
            &mut self.producer,
            &self.schema,
            &IpcDataGenerator::default(),
            &mut DictionaryTracker::new(false),
            &write_options()?,
        )?;
        self.started = true;
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

/// Refuses a type the mode does not carry: nesting deeper than the
/// readers' limit. `depth` is the node depth of a
/// value of type `dt` (1 for a column).
fn check_type(dt: &DataType, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "arrays nested deeper than {MAX_DEPTH} levels are not supported in C-Data-offsets mode"
        ));
    }
    match dt {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => check_type(f.data_type(), depth + 1),
        DataType::Struct(fs) => fs
            .iter()
            .try_for_each(|f| check_type(f.data_type(), depth + 1)),
        DataType::Union(fs, _) => fs
            .iter()
            .try_for_each(|(_, f)| check_type(f.data_type(), depth + 1)),
        DataType::RunEndEncoded(r, v) => {
            check_type(r.data_type(), depth + 1)?;
            check_type(v.data_type(), depth + 1)
        }
        DataType::Dictionary(_, v) => check_type(v, depth + 1),
        _ => Ok(()),
    }
}

/// The values buffer (cut to the array's range) and value width of a
/// fixed-width primitive or fixed-size binary array.
fn fixed_values(a: &dyn Array) -> Option<(&Buffer, usize)> {
    let values: &Buffer = downcast_primitive_array!(
        a => a.values().inner(),
        DataType::FixedSizeBinary(_) => a.as_fixed_size_binary().values(),
        _ => return None,
    );
    let width = match a.data_type() {
        DataType::FixedSizeBinary(w) => usize::try_from(*w).ok()?,
        dt => dt.primitive_width()?,
    };
    Some((values, width))
}

/// What fills one present buffer of the data area.
enum Fill {
    /// The piece's bytes of `buf`, from byte `start`.
    Bytes { buf: Buffer, start: usize },
    /// `bits` bits of `buf` from bit `start`, written from bit 0.
    Bits {
        buf: Buffer,
        start: usize,
        bits: usize,
    },
    /// The `len / 4` offsets of a dense union from element `start` of
    /// `offsets`, each minus `base[type id]` (its child was cut to start
    /// there).
    UnionOffsets {
        ids: Buffer,
        offsets: Buffer,
        start: usize,
        base: Box<[i32; 128]>,
    },
    /// Offsets of `width` bytes (4 or 8) from element `start` of `buf`,
    /// each minus the first (so they start at 0). An empty `buf` (allowed
    /// for an empty array) writes one zero.
    Offsets {
        buf: Buffer,
        start: usize,
        width: usize,
    },
}

/// One present buffer: `len` bytes at payload offset `at`.
struct Piece {
    at: usize,
    len: usize,
    fill: Fill,
}

/// One record of the descriptor, in order.
enum Entry {
    Node(Node),
    Buffer { at: usize, len: usize },
}

/// The layout of one message: the descriptor's records and the data area's
/// pieces, both in pre-order.
#[derive(Default)]
struct Plan {
    entries: Vec<Entry>,
    pieces: Vec<Piece>,
    /// End of the data area so far.
    end: usize,
    nodes: usize,
    buffers: usize,
}

fn align(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// `data[at..at + n]` as a byte range of `buf`, checked.
fn range(buf: &Buffer, at: usize, n: usize, what: &str) -> Result<(), String> {
    match at.checked_add(n) {
        Some(end) if end <= buf.len() => Ok(()),
        _ => Err(format!(
            "{what}: bytes {at}..{at}+{n} are outside the {}-byte buffer",
            buf.len()
        )),
    }
}

/// Reads offset `i` (`width` bytes, little-endian) of `buf`.
fn offset_at(buf: &Buffer, i: usize, width: usize) -> i64 {
    let b = &buf[i * width..(i + 1) * width];
    if width == 4 {
        i64::from(i32::from_le_bytes(b.try_into().expect("4 bytes")))
    } else {
        i64::from_le_bytes(b.try_into().expect("8 bytes"))
    }
}

/// `d.slice(at, n)`, checked.
fn slice(d: &ArrayData, at: usize, n: usize) -> Result<ArrayData, String> {
    match at.checked_add(n) {
        Some(end) if end <= d.len() => {
            if at == 0 && n == d.len() {
                Ok(d.clone())
            } else {
                Ok(d.slice(at, n))
            }
        }
        _ => Err(format!(
            "child range {at}..{at}+{n} is outside the child's {} elements",
            d.len()
        )),
    }
}

impl Plan {
    fn clear(&mut self) {
        self.entries.clear();
        self.pieces.clear();
        self.end = HEADER_SIZE;
        self.nodes = 0;
        self.buffers = 0;
    }

    /// Payload offset of the descriptor.
    fn desc_off(&self) -> usize {
        align(self.end.max(HEADER_SIZE), 8)
    }

    fn desc_len(&self) -> usize {
        self.nodes * NODE_SIZE + self.buffers * BUFFER_SIZE
    }

    /// The exact length of the message.
    fn message_len(&self) -> usize {
        self.desc_off() + self.desc_len()
    }

    /// Appends an absent buffer entry (offset = length = 0).
    fn absent(&mut self) {
        self.buffers += 1;
        self.entries.push(Entry::Buffer { at: 0, len: 0 });
    }

    /// Appends a buffer entry of `len` bytes filled by `fill` (an absent
    /// entry when `len` is 0).
    fn buffer(&mut self, len: usize, fill: Fill) {
        if len == 0 {
            return self.absent();
        }
        self.buffers += 1;
        let at = align(self.end, ALIGN);
        self.end = at + len;
        self.entries.push(Entry::Buffer { at, len });
        self.pieces.push(Piece { at, len, fill });
    }

    /// `n` bytes of `buf` from byte `at`.
    fn bytes(&mut self, buf: &Buffer, at: usize, n: usize, what: &str) -> Result<(), String> {
        range(buf, at, n, what)?;
        self.buffer(
            n,
            Fill::Bytes {
                buf: buf.clone(),
                start: at,
            },
        );
        Ok(())
    }

    /// `bits` bits of the bitmap `buf` from bit `at`, moved to bit 0.
    fn bits(&mut self, buf: &Buffer, at: usize, bits: usize, what: &str) -> Result<(), String> {
        let bytes = bits.div_ceil(8);
        if at % 8 == 0 {
            return self.bytes(buf, at / 8, bytes, what);
        }
        range(buf, at / 8, (at % 8 + bits).div_ceil(8), what)?;
        self.buffer(
            bytes,
            Fill::Bits {
                buf: buf.clone(),
                start: at,
                bits,
            },
        );
        Ok(())
    }

    /// The `len + 1` offsets from element `off` of `buf`, rebased to 0;
    /// returns the range `first..last` of the original offsets (what the
    /// values buffer or child must keep).
    fn offsets(
        &mut self,
        buf: &Buffer,
        off: usize,
        len: usize,
        width: usize,
    ) -> Result<(usize, usize), String> {
        if buf.is_empty() && len == 0 {
            self.buffer(
                width,
                Fill::Offsets {
                    buf: buf.clone(),
                    start: 0,
                    width,
                },
            );
            return Ok((0, 0));
        }
        range(buf, off * width, (len + 1) * width, "offsets")?;
        let (first, last) = (offset_at(buf, off, width), offset_at(buf, off + len, width));
        if first < 0 || last < first {
            return Err(format!("offsets run from {first} to {last}"));
        }
        self.buffer(
            (len + 1) * width,
            Fill::Offsets {
                buf: buf.clone(),
                start: off,
                width,
            },
        );
        Ok((first as usize, last as usize))
    }

    /// The offsets of a dense union's `len` elements from `off`, each
    /// rebased to the start of the range its child's elements use in them;
    /// returns those ranges, in child order (what each child must keep).
    fn union_offsets(
        &mut self,
        ids: &Buffer,
        offsets: &Buffer,
        off: usize,
        len: usize,
        fields: &UnionFields,
    ) -> Result<Vec<(usize, usize)>, String> {
        range(ids, off, len, "type ids")?;
        range(offsets, off * 4, len * 4, "union offsets")?;
        let mut child_of = [usize::MAX; 128];
        for (k, (id, _)) in fields.iter().enumerate() {
            let id = usize::try_from(id).map_err(|_| format!("union type id {id}"))?;
            *child_of
                .get_mut(id)
                .ok_or_else(|| format!("union type id {id}"))? = k;
        }
        let mut ranges = vec![(usize::MAX, 0); fields.len()];
        for i in off..off + len {
            let id = ids[i] as usize;
            let k = *child_of
                .get(id)
                .filter(|&&k| k != usize::MAX)
                .ok_or_else(|| format!("element {i}: unknown union type id {}", ids[i] as i8))?;
            let o = offset_at(offsets, i, 4);
            let o = usize::try_from(o).map_err(|_| format!("element {i}: union offset {o}"))?;
            let r = &mut ranges[k];
            *r = (r.0.min(o), r.1.max(o + 1));
        }
        let mut base = Box::new([0i32; 128]);
        for (k, (id, _)) in fields.iter().enumerate() {
            let r = &mut ranges[k];
            if r.0 == usize::MAX {
                *r = (0, 0);
            }
            // r.0 is one of the i32 offsets read above (or 0).
            base[id as usize] = r.0 as i32;
        }
        self.buffer(
            len * 4,
            Fill::UnionOffsets {
                ids: ids.clone(),
                offsets: offsets.clone(),
                start: off,
                base,
            },
        );
        Ok(ranges)
    }

    /// Appends the node of column `a` (and its buffers) as [`Plan::node`]
    /// does for its `ArrayData`, without building that (an allocation
    /// per column per batch, and another for the type's layout), when `a`
    /// is flat: a fixed-width primitive, fixed-size binary, boolean,
    /// utf8/binary or their large forms. `None` for any other array.
    fn flat_node(&mut self, a: &dyn Array) -> Option<Result<(), String>> {
        // The typed arrays keep their buffers already cut to the array's
        // range (the boolean values as a bit offset): what `node` would
        // read at the `ArrayData`'s offset.
        let dt = a.data_type();
        let len = a.len();
        enum Values<'a> {
            Fixed(&'a Buffer, usize),
            Bits(&'a Buffer, usize),
            Bytes(&'a Buffer, &'a Buffer, usize),
        }
        let values = match dt {
            DataType::Boolean => {
                let b = a.as_boolean_opt()?.values();
                Values::Bits(b.inner(), b.offset())
            }
            DataType::Utf8 => {
                let s = a.as_string_opt::<i32>()?;
                Values::Bytes(s.offsets().inner().inner(), s.values(), 4)
            }
            DataType::Binary => {
                let s = a.as_binary_opt::<i32>()?;
                Values::Bytes(s.offsets().inner().inner(), s.values(), 4)
            }
            DataType::LargeUtf8 => {
                let s = a.as_string_opt::<i64>()?;
                Values::Bytes(s.offsets().inner().inner(), s.values(), 8)
            }
            DataType::LargeBinary => {
                let s = a.as_binary_opt::<i64>()?;
                Values::Bytes(s.offsets().inner().inner(), s.values(), 8)
            }
            _ => {
                let (buf, w) = fixed_values(a)?;
                Values::Fixed(buf, w)
            }
        };
        let index = self.entries.len();
        self.entries.push(Entry::Node(Node {
            length: len as i64,
            null_count: 0,
            offset: 0,
            n_buffers: 0,
            n_children: 0,
            flags: 0,
        }));
        self.nodes += 1;
        let first_buffer = self.buffers;
        let mut body = || -> Result<usize, String> {
            let null_count = match a.nulls().filter(|n| n.null_count() > 0) {
                Some(n) => {
                    self.bits(n.buffer(), n.offset(), len, "validity")?;
                    n.null_count()
                }
                None => {
                    self.absent();
                    0
                }
            };
            match values {
                Values::Fixed(buf, w) => self.bytes(buf, 0, len * w, "values")?,
                Values::Bits(buf, at) => self.bits(buf, at, len, "values")?,
                Values::Bytes(offsets, values, width) => {
                    let (first, last) = self.offsets(offsets, 0, len, width)?;
                    self.bytes(values, first, last - first, "values")?;
                }
            }
            Ok(null_count)
        };
        let null_count = match body() {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        let n_buffers = (self.buffers - first_buffer) as u32;
        if let Entry::Node(n) = &mut self.entries[index] {
            n.null_count = null_count as i64;
            n.n_buffers = n_buffers;
        }
        Some(Ok(()))
    }

    /// Appends the node of `d` (and its buffers), then its children's and
    /// dictionary's trees: LAYOUT.md §8.3's pre-order. `depth` is 1 for a
    /// column.
    fn node(&mut self, d: &ArrayData, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("arrays nested deeper than {MAX_DEPTH}"));
        }
        let dt = d.data_type();
        let (off, len) = (d.offset(), d.len());
        let is_dict = matches!(dt, DataType::Dictionary(..));
        let index = self.entries.len();
        self.entries.push(Entry::Node(Node {
            length: len as i64,
            null_count: 0,
            offset: 0,
            n_buffers: 0,
            n_children: 0,
            flags: u32::from(is_dict),
        }));
        self.nodes += 1;
        let first_buffer = self.buffers;
        let lay = layout(dt);
        let mut null_count = 0;
        if lay.can_contain_null_mask {
            // The bitmap is indexed by the node's offset (0): the bits are
            // moved there from the NullBuffer's own offset, which arrow-rs
            // keeps apart from the array's.
            match d.nulls().filter(|n| n.null_count() > 0) {
                Some(n) => {
                    null_count = n.null_count();
                    self.bits(n.buffer(), n.offset(), len, "validity")?;
                }
                None => self.absent(),
            }
        }
        let bufs = d.buffers();
        let need = |n: usize| {
            if bufs.len() < n {
                Err(format!("{dt}: {} buffers, needs {n}", bufs.len()))
            } else {
                Ok(())
            }
        };
        let kids = d.child_data();
        let kid = || kids.first().ok_or_else(|| format!("{dt}: no child array"));
        let mut node_offset = 0;
        // The children to write, sliced to this node's range where the
        // type indexes them by the node's offset.
        let mut children: Vec<ArrayData> = Vec::new();
        match dt {
            DataType::Null => null_count = len,
            DataType::Boolean => {
                need(1)?;
                self.bits(&bufs[0], off, len, "values")?;
            }
            DataType::Utf8 | DataType::Binary | DataType::LargeUtf8 | DataType::LargeBinary => {
                need(2)?;
                let width = if matches!(dt, DataType::Utf8 | DataType::Binary) {
                    4
                } else {
                    8
                };
                let (first, last) = self.offsets(&bufs[0], off, len, width)?;
                self.bytes(&bufs[1], first, last - first, "values")?;
            }
            DataType::Utf8View | DataType::BinaryView => {
                need(1)?;
                self.bytes(&bufs[0], off * 16, len * 16, "views")?;
                for b in &bufs[1..] {
                    self.bytes(b, 0, b.len(), "view data")?;
                }
            }
            DataType::List(_) | DataType::LargeList(_) | DataType::Map(..) => {
                need(1)?;
                let width = if matches!(dt, DataType::LargeList(_)) {
                    8
                } else {
                    4
                };
                let (first, last) = self.offsets(&bufs[0], off, len, width)?;
                children.push(slice(kid()?, first, last - first)?);
            }
            DataType::FixedSizeList(_, size) => {
                let size = usize::try_from(*size).map_err(|_| format!("{dt}: negative size"))?;
                children.push(slice(kid()?, off * size, len * size)?);
            }
            DataType::Struct(_) => {
                for k in kids {
                    children.push(slice(k, off, len)?);
                }
            }
            DataType::Union(_, mode) => {
                need(1)?;
                self.bytes(&bufs[0], off, len, "type ids")?;
                if *mode == UnionMode::Dense {
                    need(2)?;
                    let DataType::Union(fields, _) = dt else {
                        unreachable!("matched a union")
                    };
                    let ranges = self.union_offsets(&bufs[0], &bufs[1], off, len, fields)?;
                    for (k, (lo, hi)) in kids.iter().zip(ranges) {
                        children.push(slice(k, lo, hi - lo)?);
                    }
                } else {
                    for k in kids {
                        children.push(slice(k, off, len)?);
                    }
                }
            }
            DataType::RunEndEncoded(..) => {
                // The logical offset stays: cutting the runs would mean
                // rewriting the run ends.
                node_offset = off;
                children.extend(kids.iter().cloned());
            }
            DataType::Dictionary(k, _) => {
                need(1)?;
                let w = k
                    .primitive_width()
                    .ok_or_else(|| format!("{dt}: key type without a width"))?;
                self.bytes(&bufs[0], off * w, len * w, "keys")?;
                kid()?; // the values, written after the node's children
            }
            DataType::ListView(_) | DataType::LargeListView(_) => {
                // Views point anywhere into the child, in any order: the
                // offsets and sizes are cut to the node's range, the child
                // goes whole.
                need(2)?;
                let w = if matches!(dt, DataType::ListView(_)) {
                    4
                } else {
                    8
                };
                self.bytes(&bufs[0], off * w, len * w, "offsets")?;
                self.bytes(&bufs[1], off * w, len * w, "sizes")?;
                children.push(kid()?.clone());
            }
            _ => match lay.buffers.as_slice() {
                [BufferSpec::FixedWidth { byte_width, .. }] if kids.is_empty() => {
                    need(1)?;
                    self.bytes(&bufs[0], off * byte_width, len * byte_width, "values")?;
                }
                _ => return Err(format!("type {dt} is not supported")),
            },
        }
        let n_buffers = (self.buffers - first_buffer) as u32;
        if let Entry::Node(n) = &mut self.entries[index] {
            n.null_count = null_count as i64;
            n.offset = node_offset as i64;
            n.n_buffers = n_buffers;
            n.n_children = children.len() as u32;
        }
        for c in &children {
            self.node(c, depth + 1)?;
        }
        if is_dict {
            self.node(&kids[0], depth + 1)?;
        }
        Ok(())
    }

    /// Writes the whole message into `out` (exactly
    /// [`message_len`](Plan::message_len) bytes): header, data area with
    /// zeroed padding, descriptor. `out` is a slot of a ring of `slots`
    /// slots, which decides how buffers are copied (`copy_to_ring_slot`).
    fn write(&self, out: &mut [u8], rows: usize, columns: usize, slots: u32) {
        debug_assert_eq!(out.len(), self.message_len());
        let desc_off = self.desc_off();
        let mut pos = HEADER_SIZE;
        for p in &self.pieces {
            out[pos..p.at].fill(0);
            let dst = &mut out[p.at..p.at + p.len];
            match &p.fill {
                Fill::Bytes { buf, start } => crate::ring::slot_copy::copy_to_ring_slot(
                    dst,
                    &buf[*start..*start + p.len],
                    slots,
                ),
                Fill::Bits { buf, start, bits } => {
                    dst.fill(0); // set_bits ORs into the destination
                    set_bits(dst, buf, 0, *start, *bits);
                }
                Fill::UnionOffsets {
                    ids,
                    offsets,
                    start,
                    base,
                } => {
                    for (i, d) in dst.chunks_exact_mut(4).enumerate() {
                        let at = start + i;
                        let v = offset_at(offsets, at, 4) as i32 - base[ids[at] as usize];
                        d.copy_from_slice(&v.to_le_bytes());
                    }
                }
                Fill::Offsets { buf, start, width } => {
                    if buf.is_empty() {
                        dst.fill(0);
                    } else {
                        let first = offset_at(buf, *start, *width);
                        for (i, d) in dst.chunks_exact_mut(*width).enumerate() {
                            let v = offset_at(buf, start + i, *width) - first;
                            if *width == 4 {
                                d.copy_from_slice(&(v as i32).to_le_bytes());
                            } else {
                                d.copy_from_slice(&v.to_le_bytes());
                            }
                        }
                    }
                }
            }
            pos = p.at + p.len;
        }
        out[pos..desc_off].fill(0);
        let mut at = desc_off;
        for e in &self.entries {
            match e {
                Entry::Node(n) => {
                    let r = &mut out[at..at + NODE_SIZE];
                    r[0..8].copy_from_slice(&n.length.to_le_bytes());
                    r[8..16].copy_from_slice(&n.null_count.to_le_bytes());
                    r[16..24].copy_from_slice(&n.offset.to_le_bytes());
                    r[24..28].copy_from_slice(&n.n_buffers.to_le_bytes());
                    r[28..32].copy_from_slice(&n.n_children.to_le_bytes());
                    r[32..36].copy_from_slice(&n.flags.to_le_bytes());
                    r[36..40].fill(0);
                    at += NODE_SIZE;
                }
                Entry::Buffer { at: off, len } => {
                    out[at..at + 8].copy_from_slice(&(*off as u64).to_le_bytes());
                    out[at + 8..at + 16].copy_from_slice(&(*len as u64).to_le_bytes());
                    at += BUFFER_SIZE;
                }
            }
        }
        debug_assert_eq!(at, out.len());
        let h = &mut out[..HEADER_SIZE];
        h.fill(0);
        h[0..4].copy_from_slice(&MAGIC);
        h[4..6].copy_from_slice(&VERSION.to_le_bytes());
        h[6..8].copy_from_slice(&(HEADER_SIZE as u16).to_le_bytes());
        h[8..16].copy_from_slice(&(rows as u64).to_le_bytes());
        h[16..20].copy_from_slice(&(columns as u32).to_le_bytes());
        h[20..24].copy_from_slice(&(self.nodes as u32).to_le_bytes());
        h[24..28].copy_from_slice(&(self.buffers as u32).to_le_bytes());
        h[32..40].copy_from_slice(&(desc_off as u64).to_le_bytes());
        h[40..48].copy_from_slice(&(self.desc_len() as u64).to_le_bytes());
    }
}

/// Encodes `columns` (the arrays of one batch of `rows` rows) as a complete
/// flag-3 message in a new vector: the writer's format without a ring, for
/// tests of arrays a `RecordBatch` cannot hold as they are (non-zero
/// offsets on any type).
#[cfg(test)]
pub(crate) fn encode(columns: &[ArrayData], rows: usize) -> Result<Vec<u8>, String> {
    let mut plan = Plan::default();
    plan.clear();
    for c in columns {
        plan.node(c, 1)?;
    }
    let mut out = vec![0xAB; plan.message_len()]; // padding must be zeroed
    plan.write(&mut out, rows, columns.len(), 1);
    Ok(out)
}

#[cfg(test)]
#[path = "cdata_writer_tests.rs"]
mod tests;
