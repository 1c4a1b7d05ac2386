//! The direct encode plan writes the bytes arrow-ipc writes: every message
//! of a stream compared between `IpcWriter` with the plan and without it,
//! for every Arrow type (flat ones through the plan, the others through
//! arrow-ipc on both sides), nulls, sliced arrays, zero rows, buffers that
//! need padding and dictionaries that stay, change or grow.

use std::sync::Arc;

use alloy_testkit::testdata::{self, ALL_KINDS};
use arrow_array::types::{Int8Type, UInt16Type};
use arrow_array::{
    Array, BooleanArray, DictionaryArray, Int64Array, LargeBinaryArray, RecordBatch, StringArray,
};

use super::EncodePlan;
use crate::arrow::IpcWriter;
use crate::ring::{Ring, RingConfig};

/// Every message (payload, flags) of a stream of `batches`, written with
/// the plan on or off, and how many batches the plan wrote.
fn stream(
    batches: &[RecordBatch],
    direct: bool,
    deltas: bool,
    slot: u32,
) -> (Vec<(Vec<u8>, u32)>, u64) {
    let ring = Ring::anonymous_builder()
        .config(RingConfig {
            slot_count: 64,
            slot_size: slot,
            ..Default::default()
        })
        .create()
        .expect("ring");
    let mut raw = ring.subscribe().expect("subscribe");
    // Every slot first holds 0xAA bytes: padding the writer leaves
    // unwritten shows up as a difference.
    let mut producer = ring.producer().expect("producer");
    let dirt = vec![0xAA; producer.max_message_size()];
    for _ in 0..64 {
        producer.send(&dirt, 0).expect("send");
        drop(raw.recv().expect("recv"));
    }
    let mut w = IpcWriter::new(producer, batches[0].schema())
        .expect("writer")
        .with_direct_encode(direct)
        .with_dictionary_deltas(deltas);
    for b in batches {
        w.write(b).expect("write");
    }
    let direct_batches = w.direct_batches;
    w.close().expect("close");
    let mut out = Vec::new();
    while let Some(lease) = raw.recv().expect("recv") {
        out.push((lease.bytes().to_vec(), lease.flags()));
    }
    (out, direct_batches)
}

/// Compares the two streams of `batches`; returns how many batches the
/// plan wrote, or where the bytes differ.
fn compare(batches: &[RecordBatch], deltas: bool, slot: u32) -> Result<u64, String> {
    let (want, none) = stream(batches, false, deltas, slot);
    let (got, direct) = stream(batches, true, deltas, slot);
    assert_eq!(none, 0, "the plan was switched off");
    if want.len() != got.len() {
        return Err(format!(
            "{} messages, arrow-ipc wrote {}",
            got.len(),
            want.len()
        ));
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if g.1 != w.1 {
            return Err(format!(
                "message {i}: flags {:#x}, arrow-ipc {:#x}",
                g.1, w.1
            ));
        }
        if g.0 != w.0 {
            let at = g.0.iter().zip(&w.0).position(|(a, b)| a != b);
            return Err(format!(
                "message {i}: {} bytes, arrow-ipc {}; first difference at {at:?}",
                g.0.len(),
                w.0.len()
            ));
        }
    }
    Ok(direct)
}

/// Slices of one batch (so they share its dictionaries): rows that pad,
/// byte- and bit-shifted starts, one row, zero rows, the whole batch.
fn slices(b: &RecordBatch) -> Vec<RecordBatch> {
    [
        (0, 40),
        (0, 40),
        (8, 17),
        (16, 1),
        (3, 20),
        (5, 0),
        (64, 33),
    ]
    .iter()
    .map(|&(at, n)| b.slice(at, n))
    .chain([b.clone()])
    .collect()
}

#[test]
fn direct_encode_matches_arrow_ipc_for_every_type() {
    let mut failures = Vec::new();
    for kind in 0..ALL_KINDS {
        for nulls in [false, true] {
            let b = testdata::batch(kind + 7, &[kind], 100, 0, nulls);
            let flat = EncodePlan::new(&b.schema()).is_some();
            match compare(&slices(&b), false, 1 << 20) {
                Err(e) => failures.push(format!("kind {kind}, nulls {nulls}: {e}")),
                // Without nulls every slice but the empty one goes the
                // direct way; with nulls the bit-shifted one does not.
                Ok(direct) if flat && direct < 5 => failures.push(format!(
                    "kind {kind}, nulls {nulls}: flat, but only {direct} batches written directly"
                )),
                Ok(direct) if !flat && direct != 0 => failures.push(format!(
                    "kind {kind}: not flat, but {direct} batches written directly"
                )),
                Ok(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn direct_encode_matches_arrow_ipc_for_all_flat_types_in_one_batch() {
    let kinds: Vec<u64> = (0..ALL_KINDS)
        .filter(|&k| {
            let b = testdata::batch(1, &[k], 1, 0, false);
            EncodePlan::new(&b.schema()).is_some()
        })
        .collect();
    assert!(kinds.len() > 20, "flat kinds: {kinds:?}");
    for nulls in [false, true] {
        let b = testdata::batch(3, &kinds, 130, 0, nulls);
        let direct = compare(&slices(&b), false, 1 << 20).unwrap();
        assert!(direct >= 5, "only {direct} batches written directly");
    }
}

#[test]
fn direct_encode_matches_arrow_ipc_when_dictionaries_change_or_grow() {
    // Dictionaries of other key and value types, kept, then replaced.
    let keys =
        |n: i8| arrow_array::Int8Array::from_iter((0..50).map(|i| (i % 9 != 4).then_some(i % n)));
    let bin = Arc::new(LargeBinaryArray::from_iter_values([
        b"a".as_ref(),
        b"bc",
        b"",
        b"def",
    ]));
    let ints = Arc::new(Int64Array::from_iter_values([10, 20, 30]));
    let batch = |n: i8, values: Arc<LargeBinaryArray>| {
        let d1 = DictionaryArray::<Int8Type>::try_new(keys(n), values).unwrap();
        let d2 = DictionaryArray::<UInt16Type>::try_new(
            arrow_array::UInt16Array::from_iter_values((0..50).map(|i| i % 3)),
            ints.clone(),
        )
        .unwrap();
        let flags = BooleanArray::from_iter((0..50).map(|i| (i % 5 != 0).then_some(i % 2 == 0)));
        RecordBatch::try_from_iter([
            ("bin", Arc::new(d1) as _),
            ("int", Arc::new(d2) as _),
            ("flag", Arc::new(flags) as _),
        ])
        .unwrap()
    };
    let other = Arc::new(LargeBinaryArray::from_iter_values([
        b"x".as_ref(),
        b"yy",
        b"zzz",
        b"w",
    ]));
    let same_values = Arc::new(LargeBinaryArray::from_iter_values([
        b"a".as_ref(),
        b"bc",
        b"",
        b"def",
    ]));
    let batches = vec![
        batch(4, bin.clone()),
        batch(3, bin.clone()),
        batch(4, same_values), // equal values, another array: no dictionary message
        batch(4, other),       // replaced
        batch(2, bin.clone()), // back
        batch(4, bin.clone()).slice(8, 30),
    ];
    for deltas in [false, true] {
        let direct = compare(&batches, deltas, 1 << 20).unwrap();
        assert_eq!(direct, 3, "deltas {deltas}");
    }
    // A dictionary that grows (deltas when asked).
    let growing = testdata::growing_dictionary_batches(6);
    for deltas in [false, true] {
        compare(&growing, deltas, 1 << 20).unwrap();
    }
}

#[test]
fn direct_encode_matches_arrow_ipc_when_a_batch_is_split() {
    // 4 KiB slots: the 2,000-row batch is halved by arrow-ipc's path.
    let names = StringArray::from_iter((0..2000).map(|i| (i % 7 != 0).then(|| format!("n{i}"))));
    let b = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from_iter_values(0..2000)) as _),
        ("name", Arc::new(names) as _),
    ])
    .unwrap();
    let batches = vec![b.slice(0, 10), b.clone(), b.slice(1000, 64)];
    let direct = compare(&batches, false, 4096).unwrap();
    assert_eq!(direct, 1, "the last batch fits");
    assert!(b.column(1).null_count() > 0);
}

#[test]
fn buffer_copies_stream_only_where_the_ring_rotation_leaves_the_cache() {
    use crate::ring::slot_copy::{self, tests::streamed, Routine, NON_TEMPORAL_FROM};
    // One 1 MiB values buffer through the plan: streamed only where slots ×
    // 1 MiB is at least a quarter of the last-level cache (as
    // `Producer::send` decides), not in any ring as with `copy_to_slot`.
    let rows = NON_TEMPORAL_FROM / 8;
    let a = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 5));
    let batch = RecordBatch::try_from_iter([("v", Arc::new(a) as Arc<dyn Array>)]).expect("batch");
    for slots in [4, 16] {
        let ring = Ring::anonymous_builder()
            .config(RingConfig {
                slot_count: slots,
                slot_size: (NON_TEMPORAL_FROM + (64 << 10)) as u32,
                ..Default::default()
            })
            .create()
            .expect("ring");
        let mut reader = crate::arrow::IpcReader::new(ring.subscribe().expect("subscribe"));
        let producer = ring.producer().expect("producer");
        let mut w = IpcWriter::new(producer, batch.schema()).expect("writer");
        // The first batch of a schema goes through arrow-ipc (it gives the
        // plan its template); the second through the plan.
        w.write(&batch).expect("write");
        let before = streamed();
        w.write(&batch).expect("write");
        let copies = streamed() - before;
        assert_eq!(w.direct_batches, 1, "{slots} slots: written by the plan");
        w.close().expect("close");
        let want = slot_copy::ring_slot_routine(NON_TEMPORAL_FROM, slots);
        assert_eq!(
            copies,
            u64::from(want == Routine::Avx2NonTemporal),
            "{slots} slots: {want:?}"
        );
        for _ in 0..2 {
            let got = reader.next_batch().expect("read").expect("a batch");
            assert!(got == batch, "{slots} slots: batch differs");
        }
    }
}
