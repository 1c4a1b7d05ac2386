//! The per-schema decode plan of the C-Data-offsets reader
//! ([`cdata_reader`](super::cdata_reader), LAYOUT.md §8.3): for a schema
//! whose columns are all flat (fixed-width primitives, fixed-size binary,
//! booleans, utf8/binary and their large forms, dictionaries of those with
//! integer keys), the schema's walk — each node's type, buffer count and
//! dictionary bit, which buffer holds validity, values or offsets — is
//! worked out once, and a batch is turned into typed arrays built directly
//! over slices of the slot (no `ArrayData`, no `make_array`, no per-batch
//! allocation beyond the arrays and the `RecordBatch`).
//!
//! The plan only ever *accepts*: whenever a batch does not match it or a
//! check fails, [`CDataPlan::decode`] returns `None` and the caller runs the
//! general walk, which refuses the message with its own error text (or
//! decodes what the plan does not cover: an empty offsets buffer of an empty
//! array, a misaligned buffer, …). So the plan must check at least what the
//! general walk does for the messages it accepts:
//!
//! - the header (`parse_header`), `n_columns`, and exactly the plan's node
//!   and buffer counts;
//! - per node: reserved bits, the dictionary bit, `n_buffers` and
//!   `n_children` of its type, `0 ≤ offset`, `0 ≤ null_count ≤ length`,
//!   `offset + length < 2^48`, a top node's `length` equal to the row count;
//! - per buffer entry: absent (`0, 0`) or a 64-aligned range of the data
//!   area; a validity bitmap of `⌈(offset + length) / 8⌉` bytes or more, no
//!   nulls without one; values / keys / offsets buffers long enough for
//!   `offset + length` elements and aligned for their native type;
//! - no nulls in a non-nullable field;
//! - with validation (the default): the null count equals the bitmap's,
//!   offsets start at 0 or more, never decrease and end inside the values,
//!   utf8 is valid UTF-8 split at character boundaries, and the keys of
//!   non-null dictionary slots are within the dictionary values.
//!
//! Without validation (the unsafe opt-in for trusted producers) the counts,
//! ranges, buffer lengths and alignment are still checked; the null count
//! is taken from the node and offsets, UTF-8 and keys are trusted, as the
//! general walk does.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, RecordBatch};
use arrow_buffer::bit_chunk_iterator::UnalignedBitChunk;
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer};
use arrow_schema::{DataType, SchemaRef};

use super::cdata_reader::{parse_header, ALIGN, BUFFER_SIZE, HEADER_SIZE, MAX_EXTENT, NODE_SIZE};
use super::decode_plan::{
    aligned, bytes_array, check_keys, check_offsets, dictionary, fixed, plain, Column, Key,
};
use crate::layout::{get_u32 as u32_at, get_u64 as u64_at};

/// One column of a flat schema.
#[derive(Debug, Clone)]
enum Flat {
    /// One node of a plain type (never `Column::Dict`).
    Plain(Column),
    /// A dictionary node (validity, keys) followed by its values' node.
    Dict { key: Key, values: Column },
}

/// Buffers a node of a plain column has (validity first).
fn buffers_of(c: &Column) -> u32 {
    match c {
        Column::Bytes { .. } => 3,
        _ => 2,
    }
}

/// A flat schema's C-Data-offsets decode plan (see the module docs).
#[derive(Debug)]
pub(crate) struct CDataPlan {
    schema: SchemaRef,
    columns: Vec<Flat>,
    nodes: u32,
    buffers: u32,
}

impl CDataPlan {
    /// The plan of `schema`, or `None` when a column is not flat (then
    /// every batch takes the general walk).
    pub(crate) fn new(schema: &SchemaRef) -> Option<CDataPlan> {
        let fields = schema.fields();
        if fields.is_empty() {
            return None;
        }
        let mut columns = Vec::with_capacity(fields.len());
        let (mut nodes, mut buffers) = (0u32, 0u32);
        for f in fields {
            let c = match f.data_type() {
                DataType::Dictionary(k, v) => Flat::Dict {
                    key: Key::of(k)?,
                    values: plain(v)?,
                },
                dt => Flat::Plain(plain(dt)?),
            };
            match &c {
                Flat::Plain(c) => {
                    nodes += 1;
                    buffers += buffers_of(c);
                }
                Flat::Dict { values, .. } => {
                    nodes += 2;
                    buffers += 2 + buffers_of(values);
                }
            }
            columns.push(c);
        }
        Some(CDataPlan {
            schema: Arc::clone(schema),
            columns,
            nodes,
            buffers,
        })
    }

    /// The batch of the C-Data-offsets message `whole` (one buffer owning
    /// the slot; every array is a slice of it), or `None` when the message
    /// does not fit the plan or fails a check: then the general walk
    /// decides (and names what is wrong).
    pub(crate) fn decode(&self, whole: &Buffer, validate: bool) -> Option<RecordBatch> {
        let h = parse_header(whole).ok()?;
        if h.n_columns as usize != self.columns.len()
            || h.n_nodes != self.nodes
            || h.n_buffers != self.buffers
        {
            return None;
        }
        // parse_header: row_count < 2^48, desc_off + desc_len == len with
        // desc_len exactly the nodes and buffer entries counted above.
        let rows = h.row_count as usize;
        let mut cur = Cursor {
            whole,
            pos: h.desc_off as usize,
            data_end: h.desc_off,
        };
        let mut columns = Vec::with_capacity(self.columns.len());
        for (col, field) in self.columns.iter().zip(self.schema.fields()) {
            let array = match col {
                Flat::Plain(c) => {
                    let node = cur.node(false, buffers_of(c))?;
                    if node.length != rows {
                        return None;
                    }
                    let nulls = cur.validity(&node, validate)?;
                    cur.plain(c, field.data_type(), &node, nulls, validate)?
                }
                Flat::Dict { key, values } => {
                    let node = cur.node(true, 2)?;
                    if node.length != rows {
                        return None;
                    }
                    let nulls = cur.validity(&node, validate)?;
                    let keys = cur.elements(&node, key.width(), 0)?;
                    let DataType::Dictionary(_, vt) = field.data_type() else {
                        unreachable!("planned as a dictionary");
                    };
                    let vnode = cur.node(false, buffers_of(values))?;
                    let vnulls = cur.validity(&vnode, validate)?;
                    let values = cur.plain(values, vt, &vnode, vnulls, validate)?;
                    if validate
                        && check_keys(&keys, *key, rows, nulls.as_ref(), values.len()).is_err()
                    {
                        return None;
                    }
                    dictionary(*key, keys, rows, nulls, values)
                }
            };
            // RecordBatch::try_new's rule, which the general walk applies.
            if !field.is_nullable() && array.null_count() > 0 {
                return None;
            }
            columns.push(array);
        }
        // SAFETY: one column per field, each built of the field's type
        // (the plan was made from it), `rows` long (every top node's length
        // was checked), and nulls only in nullable fields (checked above).
        Some(unsafe { RecordBatch::new_unchecked(Arc::clone(&self.schema), columns, rows) })
    }
}

/// A node record, its numbers checked and converted.
struct Node {
    length: usize,
    offset: usize,
    null_count: usize,
}

/// Reads the descriptor in order; the caller checked that it holds
/// exactly the plan's nodes and buffer entries.
struct Cursor<'a> {
    whole: &'a Buffer,
    pos: usize,
    data_end: u64,
}

impl Cursor<'_> {
    /// The next node, which must have the dictionary bit `dict`,
    /// `n_buffers` buffers and no children.
    fn node(&mut self, dict: bool, n_buffers: u32) -> Option<Node> {
        let b = self.whole.get(self.pos..self.pos + NODE_SIZE)?;
        self.pos += NODE_SIZE;
        let (length, null_count, offset) = (u64_at(b, 0), u64_at(b, 8), u64_at(b, 16));
        // The signed checks of the general walk (0 ≤ offset, 0 ≤ null_count
        // ≤ length, offset + length < 2^48) on unsigned values: each is
        // below 2^48, so a negative i64 fails too and the sum cannot wrap.
        if u32_at(b, 24) != n_buffers
            || u32_at(b, 28) != 0
            || u32_at(b, 32) != u32::from(dict)
            || u32_at(b, 36) != 0
            || length >= MAX_EXTENT
            || offset >= MAX_EXTENT
            || null_count > length
            || length + offset >= MAX_EXTENT
        {
            return None;
        }
        Some(Node {
            length: length as usize,
            offset: offset as usize,
            null_count: null_count as usize,
        })
    }

    /// The next buffer entry's payload range `(offset, length)`, `(0, 0)`
    /// if absent; `None` unless it is absent or a 64-aligned range of the
    /// data area.
    fn entry(&mut self) -> Option<(usize, usize)> {
        let b = self.whole.get(self.pos..self.pos + BUFFER_SIZE)?;
        self.pos += BUFFER_SIZE;
        let (off, len) = (u64_at(b, 0), u64_at(b, 8));
        if len == 0 {
            return (off == 0).then_some((0, 0));
        }
        let end = off.checked_add(len)?;
        if off % ALIGN != 0 || off < HEADER_SIZE as u64 || end > self.data_end {
            return None;
        }
        Some((off as usize, len as usize))
    }

    /// The next buffer entry as a slice of the payload (empty if absent).
    fn buffer(&mut self) -> Option<Buffer> {
        let (off, len) = self.entry()?;
        Some(self.whole.slice_with_length(off, len))
    }

    /// The node's validity buffer as its null buffer (`None` inside when
    /// it has no nulls); the outer `None` when the bitmap is too short,
    /// missing for nulls, or (validating) disagrees with the null count.
    /// The payload is sliced only for a bitmap that is used.
    fn validity(&mut self, node: &Node, validate: bool) -> Option<Option<NullBuffer>> {
        let (off, len) = self.entry()?;
        if len == 0 {
            return (node.null_count == 0).then_some(None);
        }
        if len < (node.offset + node.length).div_ceil(8) {
            return None;
        }
        if validate {
            let bitmap = &self.whole[off..off + len];
            let set = UnalignedBitChunk::new(bitmap, node.offset, node.length).count_ones();
            if node.length - set != node.null_count {
                return None;
            }
        }
        if node.null_count == 0 {
            // No nulls (validating, counted; trusted, the general walk
            // ignores the bitmap too): no slice of the payload needed.
            return Some(None);
        }
        let bits = BooleanBuffer::new(
            self.whole.slice_with_length(off, len),
            node.offset,
            node.length,
        );
        // SAFETY: validating, the count was just checked against the
        // bitmap; trusted, the reader opted out of validation for its
        // producer (`IpcReader::with_skip_validation` is unsafe) and the
        // general walk takes the node's count the same way. A wrong count
        // is a logic error, not a memory-safety one.
        Some(Some(unsafe {
            NullBuffer::new_unchecked(bits, node.null_count)
        }))
    }

    /// The next buffer's elements `offset .. offset + length + extra` of
    /// `width` bytes each, checked to be there and aligned to `width`
    /// (at most 16), cut to exactly those bytes.
    fn elements(&mut self, node: &Node, width: usize, extra: usize) -> Option<Buffer> {
        let b = self.buffer()?;
        let start = node.offset.checked_mul(width)?;
        let len = (node.length + extra).checked_mul(width)?;
        if b.len() < start.checked_add(len)? || !aligned(&b, width.min(16)) {
            return None;
        }
        Some(b.slice_with_length(start, len))
    }

    /// The array of a plain column of type `dt` from the rest of `node`'s
    /// buffers (validity already read into `nulls`).
    fn plain(
        &mut self,
        c: &Column,
        dt: &DataType,
        node: &Node,
        nulls: Option<NullBuffer>,
        validate: bool,
    ) -> Option<ArrayRef> {
        let rows = node.length;
        Some(match *c {
            Column::Fixed { width, align } => {
                let b = self.buffer()?;
                let start = node.offset.checked_mul(width)?;
                let len = rows.checked_mul(width)?;
                if b.len() < start.checked_add(len)? || !aligned(&b, align) {
                    return None;
                }
                fixed(dt, width, b.slice_with_length(start, len), rows, nulls)?.ok()?
            }
            Column::Bool => {
                let b = self.buffer()?;
                if b.len() < (node.offset + rows).div_ceil(8) {
                    return None;
                }
                Arc::new(BooleanArray::new(
                    BooleanBuffer::new(b, node.offset, rows),
                    nulls,
                ))
            }
            Column::Bytes { large, utf8 } => {
                let offsets = self.elements(node, if large { 8 } else { 4 }, 1)?;
                let values = self.buffer()?;
                if validate && check_offsets(&offsets, rows, large, &values, utf8).is_err() {
                    return None;
                }
                // SAFETY: `offsets` holds `rows + 1` aligned offsets
                // (`elements`). Validating, they start at 0 or more, never
                // decrease, end inside `values` and (utf8) split it into
                // valid UTF-8 strings (check_offsets); trusted, the reader
                // vouched for its producer (`with_skip_validation` is
                // unsafe), as for the general walk. `nulls` is `rows` bits.
                unsafe { bytes_array(large, utf8, offsets, rows, values, nulls) }
            }
            Column::Dict { .. } => return None,
        })
    }
}
