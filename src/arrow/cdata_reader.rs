//! Consumer side of the C-Data-offsets mode (LAYOUT.md §8.3): a slot holds
//! a record batch's buffers followed by a descriptor of its array tree (the
//! C Data Interface's `ArrowArray` fields, with payload offsets instead of
//! pointers). [`decode`] checks every count, offset and length of the
//! descriptor against the payload and the stream's schema, then rebuilds
//! `ArrayData` over slices of the one buffer that owns the slot: no byte is
//! copied, and the slot is released when the last array is dropped.

use std::panic::AssertUnwindSafe;

use arrow_array::{make_array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_buffer::Buffer;
use arrow_data::{layout, ArrayData, ArrayDataBuilder, BufferSpec, UnsafeFlag};
use arrow_schema::{ArrowError, DataType, SchemaRef};

use super::cdata_plan::CDataPlan;
use super::ArrowShmError;

/// `magic` of the message header.
pub(crate) const MAGIC: [u8; 4] = *b"ALCD";
/// `version` of the message header.
pub(crate) const VERSION: u16 = 1;
/// Size of the message header; also where the data area starts.
pub(crate) const HEADER_SIZE: usize = 64;
/// Size of one node record of the descriptor.
pub(crate) const NODE_SIZE: usize = 40;
/// Size of one buffer entry of the descriptor.
pub(crate) const BUFFER_SIZE: usize = 16;
/// Deepest nesting a descriptor may describe.
pub(crate) const MAX_DEPTH: usize = 64;
/// Bound on a node's `offset + length`.
pub(crate) const MAX_EXTENT: u64 = 1 << 48;
/// Buffers start at multiples of this payload offset.
pub(crate) const ALIGN: u64 = 64;

/// Why a message was refused: its framing/descriptor (`Corrupt`) or its
/// array contents (`Decode`).
enum Issue {
    Corrupt(String),
    Decode(ArrowError),
}

impl From<String> for Issue {
    fn from(s: String) -> Issue {
        Issue::Corrupt(s)
    }
}

/// The message header (LAYOUT.md §8.3), parsed and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub row_count: u64,
    pub n_columns: u32,
    pub n_nodes: u32,
    pub n_buffers: u32,
    pub desc_off: u64,
    pub desc_len: u64,
}

/// One node record of the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Node {
    pub length: i64,
    pub null_count: i64,
    pub offset: i64,
    pub n_buffers: u32,
    pub n_children: u32,
    pub flags: u32,
}

use crate::layout::{get_u16 as u16_at, get_u32 as u32_at, get_u64 as u64_at};

/// Parses and checks the header of a `len`-byte payload.
pub(crate) fn parse_header(p: &[u8]) -> Result<Header, String> {
    if p.len() < HEADER_SIZE {
        return Err(format!(
            "C-Data-offsets message of {} bytes is shorter than its {HEADER_SIZE}-byte header",
            p.len()
        ));
    }
    if p[..4] != MAGIC {
        return Err(format!("bad C-Data-offsets magic {:02x?}", &p[..4]));
    }
    let (version, header_size) = (u16_at(p, 4), u16_at(p, 6));
    if version != VERSION || usize::from(header_size) != HEADER_SIZE {
        return Err(format!(
            "C-Data-offsets version {version} / header size {header_size}, expected {VERSION} / {HEADER_SIZE}"
        ));
    }
    if u32_at(p, 28) != 0 || p[48..64].iter().any(|&b| b != 0) {
        return Err("reserved header bytes are not zero".into());
    }
    let h = Header {
        row_count: u64_at(p, 8),
        n_columns: u32_at(p, 16),
        n_nodes: u32_at(p, 20),
        n_buffers: u32_at(p, 24),
        desc_off: u64_at(p, 32),
        desc_len: u64_at(p, 40),
    };
    let want_len =
        u64::from(h.n_nodes) * NODE_SIZE as u64 + u64::from(h.n_buffers) * BUFFER_SIZE as u64;
    if h.desc_len != want_len {
        return Err(format!(
            "descriptor length {} but {} nodes and {} buffers need {want_len}",
            h.desc_len, h.n_nodes, h.n_buffers
        ));
    }
    if h.desc_off % 8 != 0 || h.desc_off < HEADER_SIZE as u64 {
        return Err(format!(
            "descriptor offset {} is not a multiple of 8 ≥ 64",
            h.desc_off
        ));
    }
    if h.desc_off.checked_add(h.desc_len) != Some(p.len() as u64) {
        return Err(format!(
            "descriptor at {} with length {} does not end the {}-byte message",
            h.desc_off,
            h.desc_len,
            p.len()
        ));
    }
    if h.row_count >= MAX_EXTENT {
        return Err(format!("row count {} is too large", h.row_count));
    }
    Ok(h)
}

/// Reads the descriptor's nodes and buffer entries in order, counting them
/// against the header.
struct Walk<'a> {
    whole: &'a Buffer,
    header: Header,
    pos: usize,
    nodes: u32,
    buffers: u32,
    validate: bool,
}

impl Walk<'_> {
    fn node(&mut self) -> Result<Node, String> {
        if self.nodes == self.header.n_nodes {
            return Err(format!(
                "the descriptor's {} nodes are not enough for the schema",
                self.header.n_nodes
            ));
        }
        self.nodes += 1;
        let b = &self.whole[self.pos..self.pos + NODE_SIZE];
        self.pos += NODE_SIZE;
        let n = Node {
            length: u64_at(b, 0) as i64,
            null_count: u64_at(b, 8) as i64,
            offset: u64_at(b, 16) as i64,
            n_buffers: u32_at(b, 24),
            n_children: u32_at(b, 28),
            flags: u32_at(b, 32),
        };
        let i = self.nodes - 1;
        if u32_at(b, 36) != 0 || n.flags & !1 != 0 {
            return Err(format!(
                "node {i}: reserved bits set (flags {:#x})",
                n.flags
            ));
        }
        if n.length < 0 || n.offset < 0 || n.null_count < 0 || n.null_count > n.length {
            return Err(format!(
                "node {i}: length {}, offset {}, null count {}",
                n.length, n.offset, n.null_count
            ));
        }
        if (n.length as u64) + (n.offset as u64) >= MAX_EXTENT {
            return Err(format!(
                "node {i}: offset {} + length {} is too large",
                n.offset, n.length
            ));
        }
        Ok(n)
    }

    /// The next buffer entry as a slice of the payload (empty if absent).
    fn buffer(&mut self) -> Result<Buffer, String> {
        if self.buffers == self.header.n_buffers {
            return Err(format!(
                "the descriptor's {} buffers are not enough for its nodes",
                self.header.n_buffers
            ));
        }
        // Buffer entries follow their node, so they must fit before the
        // end; the header check made desc_len cover nodes + buffers.
        let i = self.buffers;
        self.buffers += 1;
        let b = &self.whole[self.pos..self.pos + BUFFER_SIZE];
        self.pos += BUFFER_SIZE;
        let (off, len) = (u64_at(b, 0), u64_at(b, 8));
        if len == 0 {
            if off != 0 {
                return Err(format!("buffer {i}: empty but at offset {off}"));
            }
            return Ok(self.whole.slice_with_length(0, 0));
        }
        let end = off.checked_add(len);
        if off % ALIGN != 0
            || off < HEADER_SIZE as u64
            || !matches!(end, Some(e) if e <= self.header.desc_off)
        {
            return Err(format!(
                "buffer {i} at offset {off} with length {len} is not a 64-aligned range of the data area (64..{})",
                self.header.desc_off
            ));
        }
        Ok(self.whole.slice_with_length(off as usize, len as usize))
    }

    /// Rebuilds the array of type `dt` from the next node (and its
    /// descendants).
    fn array(&mut self, dt: &DataType, depth: usize) -> Result<ArrayData, Issue> {
        if depth > MAX_DEPTH {
            return Err(Issue::Corrupt(format!(
                "arrays nested deeper than {MAX_DEPTH}"
            )));
        }
        let index = self.nodes;
        let node = self.node()?;
        let bad = |what: String| Issue::Corrupt(format!("node {index} ({dt}): {what}"));
        let is_dict = matches!(dt, DataType::Dictionary(..));
        if (node.flags & 1 == 1) != is_dict {
            return Err(bad(format!(
                "dictionary bit {} does not match the type",
                node.flags & 1
            )));
        }
        let lay = layout(dt);
        let want = usize::from(lay.can_contain_null_mask) + lay.buffers.len();
        let got = node.n_buffers as usize;
        if got < want || (!lay.variadic && got != want) {
            return Err(bad(format!("{got} buffers, the type has {want}")));
        }
        // Before anything is sized by it: a hostile count (view types
        // take any number) must not reserve gigabytes.
        let left = (self.header.n_buffers - self.buffers) as usize;
        if got > left {
            return Err(bad(format!(
                "{got} buffers, the descriptor has {left} left"
            )));
        }
        let child_types = child_types(dt);
        if node.n_children as usize != child_types.len() {
            return Err(bad(format!(
                "{} children, the type has {}",
                node.n_children,
                child_types.len()
            )));
        }
        let (len, offset) = (node.length as usize, node.offset as usize);
        let mut validity = None;
        if lay.can_contain_null_mask {
            let v = self.buffer()?;
            let need = (offset + len).div_ceil(8);
            if !v.is_empty() && v.len() < need {
                return Err(bad(format!(
                    "validity bitmap of {} bytes, needs {need}",
                    v.len()
                )));
            }
            if v.is_empty() && node.null_count != 0 {
                return Err(bad(format!(
                    "{} nulls but no validity bitmap",
                    node.null_count
                )));
            }
            validity = (!v.is_empty()).then_some(v);
        }
        let mut buffers = Vec::with_capacity(got);
        for i in 0..got - usize::from(lay.can_contain_null_mask) {
            let mut b = self.buffer()?;
            // arrow reinterprets fixed-width buffers as whole elements (and
            // asserts on a ragged tail): bytes past the last whole element
            // carry nothing, so they are cut off rather than refused.
            if let Some(BufferSpec::FixedWidth { byte_width, .. }) = lay.buffers.get(i) {
                let whole_len = b.len() - b.len() % byte_width;
                if whole_len != b.len() {
                    b = b.slice_with_length(0, whole_len);
                }
            }
            buffers.push(b);
        }
        let mut children = Vec::with_capacity(child_types.len() + 1);
        for t in &child_types {
            children.push(self.array(t, depth + 1)?);
        }
        if let DataType::Dictionary(_, values) = dt {
            children.push(self.array(values, depth + 1)?);
        }
        let mut b = ArrayDataBuilder::new(dt.clone())
            .len(len)
            .offset(offset)
            .buffers(buffers)
            .child_data(children);
        if self.validate {
            b = b.null_bit_buffer(validity);
        } else {
            // Trusted peer: take its null count instead of counting bits.
            if node.null_count > 0 {
                b = b
                    .null_bit_buffer(validity)
                    .null_count(node.null_count as usize);
            }
            // SAFETY: the reader opted out of validation for a trusted
            // producer (`IpcReader::with_skip_validation`, itself unsafe);
            // the descriptor's ranges were still checked to lie in the
            // payload, and the validity bitmap's size above.
            b = unsafe { b.skip_validation(true) };
        }
        let data = b.build().map_err(Issue::Decode)?;
        if self.validate && lay.can_contain_null_mask && data.null_count() as i64 != node.null_count
        {
            return Err(bad(format!(
                "null count {} but the bitmap has {} nulls",
                node.null_count,
                data.null_count()
            )));
        }
        Ok(data)
    }
}

/// The types of the child arrays a node of type `dt` has (dictionary
/// values excepted).
fn child_types(dt: &DataType) -> Vec<DataType> {
    match dt {
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::Map(f, _) => vec![f.data_type().clone()],
        DataType::Struct(fs) => fs.iter().map(|f| f.data_type().clone()).collect(),
        DataType::Union(fs, _) => fs.iter().map(|(_, f)| f.data_type().clone()).collect(),
        DataType::RunEndEncoded(r, v) => vec![r.data_type().clone(), v.data_type().clone()],
        _ => vec![],
    }
}

/// [`decode_with`] without a plan: the general walk alone.
#[cfg(test)]
pub(crate) fn decode(
    whole: &Buffer,
    schema: &SchemaRef,
    seq: u64,
    slot: usize,
    skip_validation: &UnsafeFlag,
) -> Result<RecordBatch, ArrowShmError> {
    decode_with(whole, schema, None, seq, slot, skip_validation)
}

/// Rebuilds the record batch of a flag-3 payload `whole` (one buffer owning
/// the slot) with the stream's `schema`. Every array is a slice of `whole`;
/// nothing is copied. Errors name the slot and sequence; a panic inside
/// arrow on data the checks did not catch is reported as corruption too.
///
/// The schema's `plan` (made from `schema`), when it has one, is tried
/// first: a batch it accepts is built directly; anything else (a shape it
/// does not cover, or any failed check) takes the general walk, which
/// produces the error.
pub(crate) fn decode_with(
    whole: &Buffer,
    schema: &SchemaRef,
    plan: Option<&CDataPlan>,
    seq: u64,
    slot: usize,
    skip_validation: &UnsafeFlag,
) -> Result<RecordBatch, ArrowShmError> {
    let validate = !skip_validation.get();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if let Some(batch) = plan.and_then(|p| p.decode(whole, validate)) {
            return Ok(batch);
        }
        decode_inner(whole, schema, validate)
    }));
    match result {
        Ok(Ok(batch)) => Ok(batch),
        Ok(Err(Issue::Corrupt(reason))) => Err(ArrowShmError::Corrupt { seq, slot, reason }),
        Ok(Err(Issue::Decode(source))) => Err(ArrowShmError::Decode { seq, slot, source }),
        Err(panic) => {
            let what = crate::panic_message(&*panic);
            Err(ArrowShmError::Corrupt {
                seq,
                slot,
                reason: format!("decoder panicked: {what}"),
            })
        }
    }
}

fn decode_inner(whole: &Buffer, schema: &SchemaRef, validate: bool) -> Result<RecordBatch, Issue> {
    let header = parse_header(whole)?;
    if header.n_columns as usize != schema.fields().len() {
        return Err(Issue::Corrupt(format!(
            "{} columns, the schema has {}",
            header.n_columns,
            schema.fields().len()
        )));
    }
    let mut walk = Walk {
        whole,
        header,
        pos: header.desc_off as usize,
        nodes: 0,
        buffers: 0,
        validate,
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        let data = walk.array(f.data_type(), 1)?;
        if data.len() as u64 != header.row_count {
            return Err(Issue::Corrupt(format!(
                "column {i} ({}) has {} rows, the batch {}",
                f.name(),
                data.len(),
                header.row_count
            )));
        }
        columns.push(make_array(data));
    }
    if walk.nodes != header.n_nodes || walk.buffers != header.n_buffers {
        return Err(Issue::Corrupt(format!(
            "the schema uses {} nodes and {} buffers, the descriptor has {} and {}",
            walk.nodes, walk.buffers, header.n_nodes, header.n_buffers
        )));
    }
    let options = RecordBatchOptions::new().with_row_count(Some(header.row_count as usize));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(Issue::Decode)
}

/// Whether every buffer of `batch`, dictionary values included, lies inside
/// the ring's mapping: the zero-copy check of C-Data-offsets mode, where
/// dictionaries travel in the slot too (see [`super::in_mapping`] for IPC
/// mode, whose readers copy dictionaries).
pub fn in_mapping_all(ring: &crate::ring::Ring, batch: &RecordBatch) -> bool {
    let range = &super::mapped_range(ring);
    fn data_in(d: &ArrayData, range: &std::ops::Range<usize>) -> bool {
        let inside = |ptr: *const u8, len: usize| {
            let p = ptr as usize;
            len == 0 || (range.start <= p && p + len <= range.end)
        };
        d.buffers().iter().all(|b| inside(b.as_ptr(), b.len()))
            && d.nulls()
                .is_none_or(|n| inside(n.buffer().as_ptr(), n.buffer().len()))
            && d.child_data().iter().all(|c| data_in(c, range))
    }
    batch.columns().iter().all(|c| data_in(&c.to_data(), range))
}

#[cfg(test)]
#[path = "cdata_reader_tests.rs"]
mod tests;
