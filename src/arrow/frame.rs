//! The IPC-mode slot format (LAYOUT.md §8.1): parse and check one
//! encapsulated message before anything decodes it, so that damaged bytes
//! become an error instead of a panic deep inside arrow-ipc.

use std::ops::Range;

use arrow_ipc::{Message, MessageHeader};

/// The continuation marker that starts every message.
pub(crate) const CONTINUATION: [u8; 4] = [0xFF; 4];
/// Alignment of the body and of every buffer in it.
pub(crate) const ALIGN: usize = 64;

/// A checked message: its flatbuffer metadata and where its body lies in
/// the slot.
pub(crate) struct Frame<'a> {
    pub message: Message<'a>,
    pub body: Range<usize>,
}

/// Checks the framing, the flatbuffer and every buffer range of `bytes`
/// (one slot's payload). The error says what is wrong.
pub(crate) fn parse(bytes: &[u8]) -> Result<Frame<'_>, String> {
    parse_with(bytes, None)
}

/// The metadata of the last record batch message whose flatbuffer was
/// verified, and where the plain numbers in it lie (row count, body length,
/// the field nodes and buffer entries): a stream of one schema sends
/// record batch messages that differ in those numbers only (both
/// languages' writers patch one template per schema), and the flatbuffer
/// verifier, a good part of a small batch's decode, looks at everything
/// but them. A message of the same length that equals the verified one
/// outside those ranges therefore verifies the same, and is read without
/// verifying it again.
#[derive(Debug, Default, Clone)]
pub(crate) struct VerifiedShape {
    /// Messages read without verifying (the tests check it is used).
    pub(crate) hits: u64,
    meta: Vec<u8>,
    /// Sorted, disjoint byte ranges of `meta` holding plain numbers.
    numbers: Vec<Range<usize>>,
}

impl VerifiedShape {
    /// Whether `meta` equals the verified metadata outside its numbers.
    fn matches(&self, meta: &[u8]) -> bool {
        if meta.len() != self.meta.len() || self.meta.is_empty() {
            return false;
        }
        let mut at = 0;
        for r in &self.numbers {
            if meta[at..r.start] != self.meta[at..r.start] {
                return false;
            }
            at = r.end;
        }
        meta[at..] == self.meta[at..]
    }

    /// Remembers `message` (a verified record batch message over `meta`).
    fn learn(&mut self, meta: &[u8], message: &arrow_ipc::Message<'_>) {
        let Some(batch) = message.header_as_record_batch() else {
            return; // schema and dictionary messages keep the batch's shape
        };
        self.meta.clear();
        self.numbers.clear();
        // A scalar field of a table: `size` bytes at its vtable offset
        // (absent when it holds the default; then it is not there to vary).
        macro_rules! field {
            ($table:expr, $vt:expr, $size:expr) => {{
                let o = $table.vtable().get($vt) as usize;
                (o != 0).then(|| $table.loc() + o..$table.loc() + o + $size)
            }};
        }
        let within = |b: &[u8]| {
            let start = b.as_ptr() as usize - meta.as_ptr() as usize;
            start..start + b.len()
        };
        let mut numbers: Vec<Range<usize>> = [
            field!(message._tab, arrow_ipc::Message::VT_BODYLENGTH, 8),
            field!(batch._tab, arrow_ipc::RecordBatch::VT_LENGTH, 8),
            // Structs of two i64 each: no offsets inside.
            batch.nodes().map(|v| within(v.bytes())),
            batch.buffers().map(|v| within(v.bytes())),
        ]
        .into_iter()
        .flatten()
        .filter(|r| !r.is_empty())
        .collect();
        numbers.sort_by_key(|r| r.start);
        if numbers.windows(2).any(|w| w[0].end > w[1].start)
            || numbers.last().is_some_and(|r| r.end > meta.len())
        {
            return; // not the layout expected: verify every message
        }
        self.meta.extend_from_slice(meta);
        self.numbers = numbers;
    }
}

/// [`parse`], verifying the flatbuffer of a record batch message only when
/// its metadata differs from the one `shape` verified last outside the
/// numbers (see [`VerifiedShape`]); `shape` then learns this one.
pub(crate) fn parse_with<'a>(
    bytes: &'a [u8],
    shape: Option<&mut VerifiedShape>,
) -> Result<Frame<'a>, String> {
    if bytes.len() < 8 {
        return Err(format!(
            "message of {} bytes is shorter than its 8-byte prefix",
            bytes.len()
        ));
    }
    if bytes[..4] != CONTINUATION {
        return Err(format!(
            "missing continuation marker (found {:02x?})",
            &bytes[..4]
        ));
    }
    let meta_len = i32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let meta_end = usize::try_from(meta_len)
        .ok()
        .and_then(|m| m.checked_add(8))
        .filter(|&end| meta_len > 0 && end <= bytes.len())
        .ok_or_else(|| {
            format!(
                "metadata size {meta_len} does not fit the {}-byte message",
                bytes.len()
            )
        })?;
    if meta_end % 8 != 0 {
        return Err(format!("metadata ends at {meta_end}, not a multiple of 8"));
    }
    let meta = &bytes[8..meta_end];
    let message = match shape {
        Some(s) if s.matches(meta) => {
            s.hits += 1;
            // SAFETY: `meta` has the length of metadata the verifier accepted
            // and equal bytes wherever the verifier looks (offsets, vtables,
            // vector lengths, union types, strings); it differs only inside
            // i64 table fields and the contents of vectors of structs of i64s,
            // which the verifier does not interpret (VerifiedShape::learn).
            // Everything those numbers mean is checked below as for any message.
            unsafe { arrow_ipc::root_as_message_unchecked(meta) }
        }
        shape => {
            let message = arrow_ipc::root_as_message(meta)
                .map_err(|e| format!("invalid flatbuffer metadata: {e}"))?;
            if let Some(s) = shape {
                s.learn(meta, &message);
            }
            message
        }
    };
    let body_len = usize::try_from(message.bodyLength())
        .ok()
        .filter(|&b| b <= bytes.len() - meta_end)
        .ok_or_else(|| {
            format!(
                "body length {} exceeds the {} bytes after the metadata",
                message.bodyLength(),
                bytes.len() - meta_end
            )
        })?;
    let batch = match message.header_type() {
        MessageHeader::Schema => {
            if body_len != 0 {
                return Err(format!("schema message with a {body_len}-byte body"));
            }
            None
        }
        MessageHeader::RecordBatch => message.header_as_record_batch(),
        MessageHeader::DictionaryBatch => message
            .header_as_dictionary_batch()
            .map(|d| d.data().ok_or("dictionary batch without data"))
            .transpose()?,
        other => return Err(format!("unsupported message header {other:?}")),
    };
    if message.header_type() != MessageHeader::Schema {
        let batch = batch.ok_or("message header is missing")?;
        check_batch(&batch, body_len)?;
    }
    Ok(Frame {
        message,
        body: meta_end..meta_end + body_len,
    })
}

/// Buffer ranges inside the body and 64-byte aligned, non-negative
/// lengths, no compression.
fn check_batch(batch: &arrow_ipc::RecordBatch<'_>, body_len: usize) -> Result<(), String> {
    if batch.compression().is_some() {
        return Err("compressed bodies are not allowed in slots".into());
    }
    if batch.length() < 0 {
        return Err(format!("negative row count {}", batch.length()));
    }
    let nodes = batch.nodes().ok_or("record batch without field nodes")?;
    for (i, n) in nodes.iter().enumerate() {
        if n.length() < 0 || n.null_count() < 0 || n.null_count() > n.length() {
            return Err(format!(
                "field node {i}: length {}, null count {}",
                n.length(),
                n.null_count()
            ));
        }
    }
    let buffers = batch.buffers().ok_or("record batch without buffers")?;
    for (i, b) in buffers.iter().enumerate() {
        let end = (b.offset() >= 0 && b.length() >= 0)
            .then(|| b.offset().checked_add(b.length()))
            .flatten();
        if !matches!(end, Some(end) if end as u64 <= body_len as u64) {
            return Err(format!(
                "buffer {i} at offset {} with length {} lies outside the {body_len}-byte body",
                b.offset(),
                b.length()
            ));
        }
        // LAYOUT.md §8: every buffer starts 64-byte aligned. Checked here
        // because arrow's validation asserts (panics) on a misaligned
        // offsets buffer instead of returning an error.
        if b.offset() % 64 != 0 {
            return Err(format!(
                "buffer {i} at offset {} is not 64-byte aligned",
                b.offset()
            ));
        }
    }
    Ok(())
}

/// Bytes of prefix + metadata once padded so that the body starts on a
/// 64-byte boundary.
pub(crate) fn padded_header_len(meta_len: usize) -> usize {
    (8 + meta_len).div_ceil(ALIGN) * ALIGN
}
