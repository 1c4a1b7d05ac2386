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
    let message = arrow_ipc::root_as_message(&bytes[8..meta_end])
        .map_err(|e| format!("invalid flatbuffer metadata: {e}"))?;
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
