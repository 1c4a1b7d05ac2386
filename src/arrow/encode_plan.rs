//! The per-schema encode plan of [`IpcWriter`](super::IpcWriter): for a
//! schema whose columns are all flat (the set the reader's decode plan
//! handles: fixed-width primitives, fixed-size binary, booleans,
//! utf8/binary and their large forms, dictionaries of those with integer
//! keys), a record batch message is written straight into the reserved
//! slot, without arrow-ipc's encoder and its intermediate `Vec`: one copy
//! of each buffer, no allocation per batch — except that a dictionary
//! column's values are compared with the last ones sent, as arrow-ipc's
//! tracker does (`ArrayData` equality: O(dictionary) and an allocation per
//! batch; the `Arc::ptr_eq` shortcut never hits today, because the writer
//! remembers the detached copy, not the caller's array).
//!
//! Every record batch message of such a schema has the same flatbuffer
//! metadata except for the numbers in it (row count, field nodes, buffer
//! offsets and lengths, body length), as long as the batch has rows. The
//! plan keeps one message arrow-ipc encoded for the schema as a template
//! and, per batch, copies it into the slot, patches those numbers and copies
//! each buffer to its 64-byte aligned place, zeroing the padding: the bytes
//! arrow-ipc's `IpcDataGenerator` and `write_message` produce for the same
//! batch (the tests compare both for every type). What the plan does not
//! reproduce goes through arrow-ipc as before: an empty batch (its
//! flatbuffer omits the zero length), a validity bitmap or boolean values
//! starting at a bit offset that is not a multiple of 8 (arrow-ipc shifts
//! them), and a dictionary column whose dictionary differs from the last
//! one sent (the dictionary message is arrow-ipc's).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{downcast_primitive_array, Array, ArrayRef, RecordBatch};
use arrow_buffer::bit_util;
use arrow_ipc::MessageHeader;
use arrow_schema::{DataType, SchemaRef};

use super::frame::{padded_header_len, ALIGN, CONTINUATION};
use crate::ring::slot_copy::copy_to_ring_slot;

/// How one column is laid out in the message.
#[derive(Debug, Clone, Copy)]
enum Column {
    /// Validity bitmap and values of `width` bytes each.
    Fixed { width: usize },
    /// Validity bitmap and bit-packed values.
    Bool,
    /// Validity bitmap, offsets (`i32` or, when `large`, `i64`), values.
    Bytes { large: bool },
    /// Validity bitmap and the keys (`width` bytes) of a dictionary.
    Dict { width: usize },
}

impl Column {
    /// Buffers of the column in the message.
    fn buffers(self) -> usize {
        match self {
            Column::Bytes { .. } => 3,
            _ => 2,
        }
    }
}

fn plain(dt: &DataType) -> Option<Column> {
    match dt {
        DataType::Boolean => Some(Column::Bool),
        DataType::Utf8 | DataType::Binary => Some(Column::Bytes { large: false }),
        DataType::LargeUtf8 | DataType::LargeBinary => Some(Column::Bytes { large: true }),
        DataType::FixedSizeBinary(w) if *w > 0 => Some(Column::Fixed { width: *w as usize }),
        dt if dt.is_primitive() => dt.primitive_width().map(|width| Column::Fixed { width }),
        _ => None,
    }
}

/// One buffer's bytes in the batch.
#[derive(Clone, Copy)]
enum Src<'a> {
    /// Not present in the message (length 0).
    Empty,
    /// Copied as they are.
    Bytes(&'a [u8]),
    /// Offsets, written minus the first so they start at 0 (arrow-ipc's
    /// `reencode_offsets`).
    Offsets32(&'a [i32]),
    /// The same with `i64` offsets.
    Offsets64(&'a [i64]),
}

impl Src<'_> {
    fn len(&self) -> usize {
        match self {
            Src::Empty => 0,
            Src::Bytes(b) => b.len(),
            Src::Offsets32(o) => 4 * o.len(),
            Src::Offsets64(o) => 8 * o.len(),
        }
    }

    /// Writes the buffer into `dst` (exactly `len()` bytes) in a slot of
    /// a ring of `slots` slots.
    fn write(&self, dst: &mut [u8], slots: u32) {
        match *self {
            Src::Empty => {}
            Src::Bytes(b) => copy_to_ring_slot(dst, b, slots),
            Src::Offsets32(o) => match o.first() {
                Some(0) | None => dst.copy_from_slice(arrow_buffer::ToByteSlice::to_byte_slice(o)),
                Some(&first) => {
                    for (d, v) in dst.chunks_exact_mut(4).zip(o) {
                        d.copy_from_slice(&(v - first).to_le_bytes());
                    }
                }
            },
            Src::Offsets64(o) => match o.first() {
                Some(0) | None => dst.copy_from_slice(arrow_buffer::ToByteSlice::to_byte_slice(o)),
                Some(&first) => {
                    for (d, v) in dst.chunks_exact_mut(8).zip(o) {
                        d.copy_from_slice(&(v - first).to_le_bytes());
                    }
                }
            },
        }
    }
}

/// Bytes `[bit_offset / 8, ..)` covering `bits` bits of `bytes`, as
/// arrow's `Buffer::bit_slice` returns them when the offset is a multiple
/// of 8; `None` for another offset (arrow-ipc shifts those bits).
fn bit_bytes(bytes: &[u8], bit_offset: usize, bits: usize) -> Option<&[u8]> {
    if bit_offset % 8 != 0 {
        return None;
    }
    let start = bit_offset / 8;
    bytes.get(start..start + bit_util::ceil(bits, 8))
}

/// The values of a fixed-width (primitive) column, `len * width` bytes.
fn fixed_values(a: &dyn Array, width: usize) -> Option<&[u8]> {
    let bytes: &[u8] = downcast_primitive_array!(
        a => a.values().inner().as_slice(),
        DataType::FixedSizeBinary(_) => a.as_fixed_size_binary().value_data(),
        _ => return None,
    );
    (bytes.len() == a.len().checked_mul(width)?).then_some(bytes)
}

/// The node (length, null count) and buffers of column `a`, as arrow-ipc's
/// `write_array_data` writes them; `None` when the plan does not reproduce
/// them.
fn column_sources(c: Column, a: &dyn Array) -> Option<((i64, i64), [Src<'_>; 3])> {
    let len = a.len();
    let nulls = a.null_count();
    let validity = match a.nulls() {
        Some(n) if nulls > 0 => Src::Bytes(bit_bytes(n.inner().values(), n.offset(), len)?),
        _ => Src::Empty,
    };
    let node = (len as i64, nulls as i64);
    let [b1, b2] = match c {
        Column::Fixed { width } => [Src::Bytes(fixed_values(a, width)?), Src::Empty],
        Column::Dict { width } => [
            Src::Bytes(fixed_values(a.as_any_dictionary_opt()?.keys(), width)?),
            Src::Empty,
        ],
        Column::Bool => {
            let v = a.as_boolean_opt()?.values();
            [
                Src::Bytes(bit_bytes(v.values(), v.offset(), len)?),
                Src::Empty,
            ]
        }
        Column::Bytes { large: false } => {
            let (offsets, values) = match a.data_type() {
                DataType::Utf8 => {
                    let s = a.as_string_opt::<i32>()?;
                    (s.value_offsets(), s.values().as_slice())
                }
                _ => {
                    let b = a.as_binary_opt::<i32>()?;
                    (b.value_offsets(), b.values().as_slice())
                }
            };
            let (first, last) = (*offsets.first()?, *offsets.last()?);
            let values = values.get(usize::try_from(first).ok()?..usize::try_from(last).ok()?)?;
            [Src::Offsets32(offsets), Src::Bytes(values)]
        }
        Column::Bytes { large: true } => {
            let (offsets, values) = match a.data_type() {
                DataType::LargeUtf8 => {
                    let s = a.as_string_opt::<i64>()?;
                    (s.value_offsets(), s.values().as_slice())
                }
                _ => {
                    let b = a.as_binary_opt::<i64>()?;
                    (b.value_offsets(), b.values().as_slice())
                }
            };
            let (first, last) = (*offsets.first()?, *offsets.last()?);
            let values = values.get(usize::try_from(first).ok()?..usize::try_from(last).ok()?)?;
            [Src::Offsets64(offsets), Src::Bytes(values)]
        }
    };
    Some((node, [validity, b1, b2]))
}

/// Where the numbers a batch changes lie in the template.
#[derive(Debug, Clone, Copy)]
struct Positions {
    body_len: usize,
    length: usize,
    nodes: usize,
    buffers: usize,
}

/// A schema's encode plan (see the module docs); `None` from
/// [`EncodePlan::new`] when some column needs arrow-ipc's encoder.
#[derive(Debug)]
pub(crate) struct EncodePlan {
    columns: Vec<Column>,
    buffers: usize,
    /// arrow-ipc's record batch message (flatbuffer) for this schema, once
    /// one non-empty batch went through arrow-ipc.
    template: Option<(Vec<u8>, Positions)>,
    /// Per dictionary column (`None` for the others and before the first
    /// dictionary message): the dictionary values last sent. A batch whose
    /// dictionaries all equal these needs no dictionary message.
    dictionaries: Vec<Option<ArrayRef>>,
    /// Per buffer of the current batch: body offset and length.
    layout: Vec<(usize, usize)>,
    /// Per column of the current batch: length and null count.
    nodes: Vec<(i64, i64)>,
    body_len: usize,
}

impl EncodePlan {
    /// The plan of `schema`, or `None` when a column is not flat.
    pub(crate) fn new(schema: &SchemaRef) -> Option<EncodePlan> {
        let mut columns = Vec::with_capacity(schema.fields().len());
        for f in schema.fields() {
            let c = match f.data_type() {
                DataType::Dictionary(k, v) => {
                    plain(v)?;
                    if !k.is_dictionary_key_type() {
                        return None;
                    }
                    Column::Dict {
                        width: k.primitive_width()?,
                    }
                }
                dt => plain(dt)?,
            };
            columns.push(c);
        }
        if columns.is_empty() {
            return None;
        }
        let buffers = columns.iter().map(|c| c.buffers()).sum();
        Some(EncodePlan {
            dictionaries: vec![None; columns.len()],
            layout: Vec::with_capacity(buffers),
            nodes: Vec::with_capacity(columns.len()),
            columns,
            buffers,
            template: None,
            body_len: 0,
        })
    }

    /// Whether the plan still needs a template.
    pub(crate) fn needs_template(&self) -> bool {
        self.template.is_none()
    }

    /// Takes `message`, arrow-ipc's flatbuffer of a record batch message of
    /// this schema with at least one row, as the template; false when it
    /// does not have the shape the plan patches (then the plan must not be
    /// used).
    pub(crate) fn set_template(&mut self, message: &[u8]) -> bool {
        let Some(pos) = self.positions(message) else {
            return false;
        };
        self.template = Some((message.to_vec(), pos));
        true
    }

    fn positions(&self, message: &[u8]) -> Option<Positions> {
        let m = arrow_ipc::root_as_message(message).ok()?;
        if m.header_type() != MessageHeader::RecordBatch || m.custom_metadata().is_some() {
            return None;
        }
        let rb = m.header_as_record_batch()?;
        if rb.compression().is_some() || rb.variadicBufferCounts().is_some() {
            return None;
        }
        let nodes = rb.nodes()?;
        let buffers = rb.buffers()?;
        if nodes.len() != self.columns.len() || buffers.len() != self.buffers {
            return None;
        }
        // A field at its default value is left out of the flatbuffer: the
        // template must hold both numbers (a batch with rows has a body).
        let body_len = m._tab.vtable().get(arrow_ipc::Message::VT_BODYLENGTH) as usize;
        let length = rb._tab.vtable().get(arrow_ipc::RecordBatch::VT_LENGTH) as usize;
        if body_len == 0 || length == 0 {
            return None;
        }
        let at = |p: *const u8| (p as usize).checked_sub(message.as_ptr() as usize);
        let pos = Positions {
            body_len: m._tab.loc() + body_len,
            length: rb._tab.loc() + length,
            nodes: at(nodes.bytes().as_ptr())?,
            buffers: at(buffers.bytes().as_ptr())?,
        };
        let fits = |p: usize, n: usize| p.checked_add(n).is_some_and(|end| end <= message.len());
        (fits(pos.body_len, 8)
            && fits(pos.length, 8)
            && fits(pos.nodes, 16 * self.columns.len())
            && fits(pos.buffers, 16 * self.buffers))
        .then_some(pos)
    }

    /// Forgets the dictionaries sent (before a batch goes through
    /// arrow-ipc, whose tracker then decides).
    pub(crate) fn forget_dictionaries(&mut self) {
        self.dictionaries.iter_mut().for_each(|d| *d = None);
    }

    /// Records the dictionaries of `batch`, which arrow-ipc's tracker has
    /// just seen (sent or found unchanged).
    pub(crate) fn remember_dictionaries(&mut self, batch: &RecordBatch) {
        for ((c, d), a) in self
            .columns
            .iter()
            .zip(&mut self.dictionaries)
            .zip(batch.columns())
        {
            if let (Column::Dict { .. }, Some(dict)) = (c, a.as_any_dictionary_opt()) {
                *d = Some(dict.values().clone());
            }
        }
    }

    /// Lays out `batch` and returns its message length, or `None` when it
    /// must go through arrow-ipc (no template yet, no rows, a buffer the
    /// plan does not reproduce, a dictionary that changed).
    pub(crate) fn prepare(&mut self, batch: &RecordBatch) -> Option<usize> {
        let (template, _) = self.template.as_ref()?;
        let rows = batch.num_rows();
        if rows == 0 || batch.num_columns() != self.columns.len() {
            return None;
        }
        self.layout.clear();
        self.nodes.clear();
        let mut cursor = 0;
        for ((&c, a), last) in self
            .columns
            .iter()
            .zip(batch.columns())
            .zip(&self.dictionaries)
        {
            if a.len() != rows {
                return None;
            }
            if let Column::Dict { .. } = c {
                // arrow-ipc's tracker would send this dictionary unless it
                // equals the last one (`compare_dictionaries`).
                let values = a.as_any_dictionary_opt()?.values();
                match last {
                    Some(last) if Arc::ptr_eq(last, values) || **last == **values => {}
                    _ => return None,
                }
            }
            let (node, srcs) = column_sources(c, a.as_ref())?;
            self.nodes.push(node);
            for s in &srcs[..c.buffers()] {
                let n = s.len();
                self.layout.push((cursor, n));
                cursor += n.next_multiple_of(ALIGN);
            }
        }
        self.body_len = cursor;
        Some(padded_header_len(template.len()) + cursor)
    }

    /// Writes the message of the batch just prepared into `dst` (exactly
    /// the length `prepare` returned), a slot of a ring of `slots` slots
    /// (which decides how buffers are copied: `copy_to_ring_slot`).
    pub(crate) fn write(&self, batch: &RecordBatch, dst: &mut [u8], slots: u32) {
        let (template, pos) = self.template.as_ref().expect("prepared with a template");
        let header = padded_header_len(template.len());
        debug_assert_eq!(dst.len(), header + self.body_len);
        let (head, body) = dst.split_at_mut(header);
        head[..4].copy_from_slice(&CONTINUATION);
        head[4..8].copy_from_slice(&((header - 8) as i32).to_le_bytes());
        let (meta, pad) = head[8..].split_at_mut(template.len());
        meta.copy_from_slice(template);
        pad.fill(0);
        let put = |meta: &mut [u8], at: usize, v: i64| {
            meta[at..at + 8].copy_from_slice(&v.to_le_bytes());
        };
        put(meta, pos.body_len, self.body_len as i64);
        put(meta, pos.length, batch.num_rows() as i64);
        for (i, &(len, nulls)) in self.nodes.iter().enumerate() {
            put(meta, pos.nodes + 16 * i, len);
            put(meta, pos.nodes + 16 * i + 8, nulls);
        }
        let mut b = 0;
        for (&c, a) in self.columns.iter().zip(batch.columns()) {
            let (_, srcs) = column_sources(c, a.as_ref()).expect("prepared");
            for s in &srcs[..c.buffers()] {
                let (at, len) = self.layout[b];
                put(meta, pos.buffers + 16 * b, at as i64);
                put(meta, pos.buffers + 16 * b + 8, len as i64);
                let (data, padding) = body[at..at + len.next_multiple_of(ALIGN)].split_at_mut(len);
                s.write(data, slots);
                padding.fill(0);
                b += 1;
            }
        }
    }
}

#[cfg(test)]
#[path = "encode_plan_tests.rs"]
mod tests;
