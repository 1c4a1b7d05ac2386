//! Every extended Arrow type (`testdata::KINDS..ALL_KINDS`) through the ring
//! in IPC mode, Rust → Rust: values equal, buffers in the mapping.

use super::{in_mapping, IpcReader, IpcWriter};
use crate::ring::Ring;
use alloy_testkit::testdata::{self, ALL_KINDS, KINDS};

/// Sends `batches` through a fresh ring; returns the received batches or
/// the first error, as text.
fn round_trip(batches: &[arrow_array::RecordBatch]) -> Result<(), String> {
    let ring = Ring::anonymous_builder()
        .slot_count(64)
        .slot_size(1 << 20)
        .create()
        .map_err(|e| e.to_string())?;
    let mut reader = IpcReader::new(ring.subscribe().map_err(|e| e.to_string())?);
    let mut w = IpcWriter::new(
        ring.producer().map_err(|e| e.to_string())?,
        batches[0].schema(),
    )
    .map_err(|e| e.to_string())?;
    for b in batches {
        w.write(b).map_err(|e| format!("write: {e}"))?;
    }
    w.close().map_err(|e| e.to_string())?;
    for (i, want) in batches.iter().enumerate() {
        let got = reader
            .next_batch()
            .map_err(|e| format!("read batch {i}: {e}"))?
            .ok_or_else(|| format!("stream ended before batch {i}"))?;
        if &got != want {
            return Err(format!("batch {i} differs:\n got {got:?}\nwant {want:?}"));
        }
        if !in_mapping(&ring, &got) {
            return Err(format!("batch {i} was copied out of the mapping"));
        }
    }
    match reader.next_batch() {
        Ok(None) => Ok(()),
        other => Err(format!("expected end of stream, got {other:?}")),
    }
}

#[test]
fn every_extended_type_round_trips_zero_copy() {
    let mut failures = Vec::new();
    for kind in KINDS..ALL_KINDS {
        for (nulls, offset) in [(false, 0), (true, 0), (true, 7)] {
            let batches: Vec<_> = (0..3)
                .map(|i| {
                    testdata::batch(
                        kind * 100 + i,
                        &[kind, 3],
                        40 + i as usize * 17,
                        offset,
                        nulls,
                    )
                })
                .collect();
            if let Err(e) = round_trip(&batches) {
                failures.push(format!(
                    "kind {kind} ({}), nulls {nulls}, offset {offset}: {e}",
                    batches[0].schema().field(0).data_type()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_types_in_one_batch_and_empty_batches() {
    let kinds: Vec<u64> = (0..ALL_KINDS).collect();
    let batches: Vec<_> = [(50, 0), (0, 0), (33, 5)]
        .iter()
        .enumerate()
        .map(|(i, &(rows, off))| testdata::batch(9 + i as u64, &kinds, rows, off, true))
        .collect();
    round_trip(&batches).unwrap();
}

/// Whether `bytes` (one IPC_DICTIONARY_BATCH slot) is a delta.
pub(crate) fn is_delta(bytes: &[u8]) -> bool {
    let buf = arrow_buffer::Buffer::from(bytes);
    let frame = super::frame::parse(&buf).expect("a valid frame");
    frame
        .message
        .header_as_dictionary_batch()
        .expect("a dictionary batch")
        .isDelta()
}

#[test]
fn delta_dictionaries_are_sent_when_asked_and_applied_by_the_reader() {
    use super::flags;
    for deltas in [false, true] {
        let ring = Ring::anonymous_builder()
            .slot_count(64)
            .slot_size(1 << 16)
            .create()
            .unwrap();
        let mut reader = IpcReader::new(ring.subscribe().unwrap());
        let mut raw = ring.subscribe().unwrap();
        let batches = testdata::growing_dictionary_batches(6);
        let mut w = IpcWriter::new(ring.producer().unwrap(), batches[0].schema())
            .unwrap()
            .with_dictionary_deltas(deltas);
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        for (i, want) in batches.iter().enumerate() {
            assert_eq!(&reader.next_batch().unwrap().unwrap(), want, "batch {i}");
        }
        assert!(reader.next_batch().unwrap().is_none());
        let mut delta_batches = 0;
        let mut dictionary_batches = 0;
        while let Some(l) = raw.recv().unwrap() {
            if l.flags() == flags::IPC_DICTIONARY_BATCH {
                dictionary_batches += 1;
                delta_batches += usize::from(is_delta(&l));
            }
        }
        // One dictionary per batch: the first whole, then replacements or
        // deltas.
        assert_eq!(dictionary_batches, 6);
        assert_eq!(delta_batches, if deltas { 5 } else { 0 }, "deltas {deltas}");
    }
}

/// A batch too large for a slot whose dictionary changed: the split halves
/// (write_split) must still be decoded with the new dictionary.
#[test]
fn a_split_batch_keeps_its_new_dictionary() {
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{DictionaryArray, Int32Array, Int64Array, RecordBatch, StringArray};
    let batch = |words: &[&str], rows: usize| {
        let values = Arc::new(StringArray::from_iter_values(words));
        let keys = Int32Array::from_iter_values((0..rows).map(|i| (i % words.len()) as i32));
        let dict = DictionaryArray::<Int32Type>::try_new(keys, values).unwrap();
        let pad = Int64Array::from_iter_values(0..rows as i64);
        RecordBatch::try_from_iter([("tag", Arc::new(dict) as _), ("pad", Arc::new(pad) as _)])
            .unwrap()
    };
    let small = batch(&["a", "b"], 10);
    // 2,000 rows of int64 padding do not fit in a 4 KiB slot; the dictionary does.
    let big = batch(&["c", "d", "e"], 2000);
    let ring = Ring::anonymous_builder()
        .slot_count(64)
        .slot_size(4096)
        .create()
        .unwrap();
    let mut reader = IpcReader::new(ring.subscribe().unwrap());
    let mut w = IpcWriter::new(ring.producer().unwrap(), small.schema()).unwrap();
    let sender = std::thread::spawn(move || {
        super::write_split(&mut w, &small).unwrap();
        super::write_split(&mut w, &big).unwrap();
        w.close().unwrap();
        (small, big)
    });
    let mut got = Vec::new();
    while let Some(b) = reader.next_batch().unwrap() {
        got.push(b);
    }
    let (small, big) = sender.join().unwrap();
    assert_eq!(got[0], small);
    assert!(got.len() > 2, "the big batch was split");
    let rejoined = arrow_select::concat::concat_batches(&big.schema(), &got[1..]).unwrap();
    assert_eq!(rejoined, big);
}
